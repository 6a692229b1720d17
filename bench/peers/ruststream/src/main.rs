//! RustStream peer for faststream-bench: the drain and pipeline cases written against
//! `ruststream` + `ruststream-rdkafka`, printing one JSON result line on stdout.
//!
//! ```text
//! ruststream-peer --case drain|pipeline --bootstrap HOST:PORT --topic IN --output OUT \
//!     --partitions P --messages N [--workers W (pipeline only)] [--commit auto|tracked]
//! ruststream-peer --prefill --bootstrap HOST:PORT --topic IN [--output OUT] \
//!     --partitions P --messages N
//! ```
//!
//! Logs go to stderr only when `RUSTSTREAM_PEER_VERBOSE` is set.

use std::future::{Future, ready};
use std::num::NonZeroUsize;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError as RdKafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use ruststream_rdkafka::prelude::*;
use serde::Deserialize;
use tokio::sync::Notify;

/// The benchmark's input record.
#[derive(Debug, Deserialize)]
struct Event {
    user: String,
    user_id: i64,
    action: String,
    // Decoded like every peer does; no case reads it.
    #[allow(dead_code)]
    ts_us: i64,
    seq: u64,
}

/// Concurrent deliveries of the pipeline subscriber when `--workers` is not given
/// (`Workers::pool`). RustStream's own default is sequential dispatch, and each reply publish
/// awaits its delivery report before the input is acked, so sequential dispatch is bounded by
/// one produce round trip per record (about 160 records/s here); this many records in flight
/// is where throughput stopped improving on the development machine.
const DEFAULT_PIPELINE_WORKERS: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    Drain,
    Pipeline,
    Prefill,
}

#[derive(Debug)]
struct Args {
    case: Case,
    bootstrap: String,
    topic: String,
    output: String,
    partitions: i32,
    messages: u64,
    workers: NonZeroUsize,
    /// The drain's commit mode: RustStream's default `Commit::Auto` stores each offset as its
    /// record is handed over (at-most-once); `Commit::Tracked` stores it after the handler's
    /// ack (at-least-once, as faststream-rs). The pipeline is always `Tracked`.
    tracked_drain: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut case = None;
    let mut bootstrap = "127.0.0.1:9092".to_owned();
    let mut topic = None;
    let mut output = String::new();
    let mut partitions = None;
    let mut messages = None;
    let mut workers = NonZeroUsize::new(DEFAULT_PIPELINE_WORKERS).ok_or("zero default")?;
    let mut tracked_drain = false;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--prefill" {
            case = Some(Case::Prefill);
            continue;
        }
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {value}: {e}");
        match flag.as_str() {
            "--case" => {
                case = Some(match value.as_str() {
                    "drain" => Case::Drain,
                    "pipeline" => Case::Pipeline,
                    other => return Err(format!("unknown case {other}")),
                });
            }
            "--bootstrap" => bootstrap = value,
            "--topic" => topic = Some(value),
            "--output" => output = value,
            "--partitions" => partitions = Some(value.parse().map_err(|e| bad(&e))?),
            "--messages" => messages = Some(value.parse().map_err(|e| bad(&e))?),
            "--workers" => workers = value.parse().map_err(|e| bad(&e))?,
            "--commit" => {
                tracked_drain = match value.as_str() {
                    "auto" => false,
                    "tracked" => true,
                    other => return Err(format!("unknown commit mode {other}")),
                };
            }
            other => return Err(format!("unknown flag {other}")),
        }
    }
    let case = case.ok_or("--case drain|pipeline (or --prefill) is required")?;
    if case == Case::Pipeline && output.is_empty() {
        return Err("--output is required for the pipeline case".into());
    }
    Ok(Args {
        case,
        bootstrap,
        topic: topic.ok_or("--topic is required")?,
        output,
        partitions: partitions.ok_or("--partitions is required")?,
        messages: messages.ok_or("--messages is required")?,
        workers,
        tracked_drain,
    })
}

fn verbose() -> bool {
    std::env::var_os("RUSTSTREAM_PEER_VERBOSE").is_some()
}

macro_rules! log {
    ($($arg:tt)*) => {
        if verbose() {
            eprintln!("ruststream-peer: {}", format_args!($($arg)*));
        }
    };
}

// ---------------------------------------------------------------------------------------------
// Measurement
// ---------------------------------------------------------------------------------------------

/// CPU seconds (user + system) this process used so far.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes into the zeroed struct we pass; RUSAGE_SELF is valid.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// Peak resident set size (`VmHWM`) in KiB.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse().ok())
            })
        })
        .unwrap_or(0)
}

/// Wall and CPU clocks at the start of the measured section.
#[derive(Debug, Clone, Copy)]
struct Mark {
    wall: Instant,
    cpu: f64,
}

impl Mark {
    fn now() -> Self {
        Self {
            wall: Instant::now(),
            cpu: cpu_seconds(),
        }
    }

    /// The result line of the section from this mark to now.
    fn finish(&self, messages: u64) -> String {
        let seconds = self.wall.elapsed().as_secs_f64();
        let cpu = cpu_seconds() - self.cpu;
        format!(
            "{{\"messages\":{messages},\"seconds\":{seconds},\"cpu_seconds\":{cpu},\
             \"peak_rss_kib\":{},\"latency_ms\":null}}",
            peak_rss_kib()
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Handlers
// ---------------------------------------------------------------------------------------------

/// Counts handled records and wakes `main` when the last one was handled; records when the first
/// one arrived (stderr diagnostics only).
#[derive(Debug)]
struct Progress {
    target: u64,
    seen: AtomicU64,
    first: std::sync::OnceLock<Instant>,
    done: Notify,
}

impl Progress {
    fn record(&self) {
        self.first.get_or_init(Instant::now);
        if self.seen.fetch_add(1, Ordering::Relaxed) + 1 == self.target {
            self.done.notify_one();
        }
    }
}

/// The drain handler: decode into `Event`, count.
struct Drain(Arc<Progress>);

impl Handle<Event> for Drain {
    fn handle(
        &self,
        event: &Event,
        _outs: &(),
        _ctx: &mut Context<'_>,
    ) -> impl Future<Output = Result<(), HandlerOutcome>> {
        std::hint::black_box(event.seq);
        self.0.record();
        ready(Ok(()))
    }
}

/// The pipeline handler: the reply is published to the output topic, and under
/// `Commit::Tracked` the input is acked once that publish was acknowledged.
struct Greet(Arc<Progress>);

impl Handle<Event, String> for Greet {
    fn handle(
        &self,
        event: &Event,
        _outs: &(),
        _ctx: &mut Context<'_>,
    ) -> impl Future<Output = Result<String, HandlerOutcome>> {
        self.0.record();
        ready(Ok(format!(
            "User: {} - {} {}",
            event.user_id, event.user, event.action
        )))
    }
}

// ---------------------------------------------------------------------------------------------
// Cases
// ---------------------------------------------------------------------------------------------

fn unique_group() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("ruststream-bench-{}-{nanos}", std::process::id())
}

fn broker(args: &Args) -> KafkaBroker {
    // The consumers' fetch backoff that faststream-rs and the raw rdkafka rows use (librdkafka's
    // default of 1 s idles a reader whose queue was full; see BENCHMARKS.md). The producer
    // ignores the property.
    KafkaBroker::new([args.bootstrap.clone()]).config("fetch.queue.backoff.ms", "10")
}

fn source(args: &Args) -> KafkaTopic {
    let group = unique_group();
    log!("consumer group {group}");
    KafkaTopic::new(args.topic.clone())
        .group(group)
        .start(StartOffset::Earliest)
}

fn drain_app(args: &Args, progress: &Arc<Progress>) -> impl App {
    let source = if args.tracked_drain {
        source(args).commit(Commit::Tracked)
    } else {
        source(args)
    };
    let sub = subscriber(source, Drain(Arc::clone(progress))).build();
    RustStream::new(AppInfo::new("ruststream-peer-drain", "0.1.0"))
        .with_broker(broker(args), |b| {
            b.include(sub);
        })
}

fn pipeline_app(args: &Args, progress: &Arc<Progress>) -> impl App {
    // At-least-once as RustStream offers it: the input offset is stored only after the reply
    // was acknowledged (Commit::Tracked), by an idempotent producer that every in-sync replica
    // confirms (the `kafka_publishing_durability` example).
    let broker = broker(args)
        .producer_config("acks", "all")
        .producer_config("enable.idempotence", "true");
    let sub = subscriber(
        source(args).commit(Commit::Tracked),
        Greet(Arc::clone(progress)),
    )
    .workers(args.workers)
    .reply()
    .to(args.output.clone())
    .build();
    RustStream::new(AppInfo::new("ruststream-peer-pipeline", "0.1.0")).with_broker(broker, |b| {
        b.include(sub).out_reply(Publish::default());
    })
}

/// Records in `topic` over `partitions`: the sum of the high watermarks.
fn records_in(client: &BaseConsumer, topic: &str, partitions: i32) -> i64 {
    (0..partitions)
        .map(|p| {
            client
                .fetch_watermarks(topic, p, Duration::from_secs(5))
                .map(|(_, high)| high)
                .unwrap_or(0)
        })
        .sum()
}

fn metadata_client(bootstrap: &str) -> Result<BaseConsumer, String> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .map_err(|e| e.to_string())
}

/// Waits until the output topic holds `messages` records, checking every 10 ms.
async fn wait_for_output(args: &Args) -> Result<(), String> {
    let client = metadata_client(&args.bootstrap)?;
    let (output, partitions) = (args.output.clone(), args.partitions);
    let target = i64::try_from(args.messages).map_err(|e| e.to_string())?;
    tokio::task::spawn_blocking(move || {
        while records_in(&client, &output, partitions) < target {
            std::thread::sleep(Duration::from_millis(10));
        }
    })
    .await
    .map_err(|e| e.to_string())
}

async fn run_case(args: &Args) -> Result<String, String> {
    let progress = Arc::new(Progress {
        target: args.messages,
        seen: AtomicU64::new(0),
        first: std::sync::OnceLock::new(),
        done: Notify::new(),
    });
    // The clock starts just before the app starts: group join and assignment are measured.
    let mark = Mark::now();
    let running = match args.case {
        Case::Drain => drain_app(args, &progress).start().await,
        Case::Pipeline => pipeline_app(args, &progress).start().await,
        Case::Prefill => return Err("not a measured case".into()),
    }
    .map_err(|e| format!("starting the app: {e}"))?;
    log!("app started after {:?}", mark.wall.elapsed());
    match args.case {
        Case::Pipeline => wait_for_output(args).await?,
        _ => progress.done.notified().await,
    }
    let result = mark.finish(args.messages);
    if let Some(first) = progress.first.get() {
        log!(
            "first record handled {:?} after the start; handled {} records",
            first.duration_since(mark.wall),
            progress.seen.load(Ordering::Relaxed)
        );
    }
    match tokio::time::timeout(Duration::from_secs(30), running.shutdown()).await {
        Ok(Ok(())) => log!("app shut down"),
        Ok(Err(err)) => log!("shutdown failed: {err}"),
        Err(_) => log!("shutdown timed out"),
    }
    Ok(result)
}

// ---------------------------------------------------------------------------------------------
// Prefill (for testing the peer by hand; the orchestrator fills the topics itself)
// ---------------------------------------------------------------------------------------------

async fn create_topic(bootstrap: &str, name: &str, partitions: i32) -> Result<(), String> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .map_err(|e| e.to_string())?;
    let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for result in admin
        .create_topics([&topic], &options)
        .await
        .map_err(|e| e.to_string())?
    {
        result.map_err(|(topic, code)| format!("creating {topic}: {code}"))?;
    }
    Ok(())
}

fn fill(args: &Args) -> Result<(), String> {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &args.bootstrap)
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .map_err(|e| e.to_string())?;
    let partitions = u64::try_from(args.partitions.max(1)).map_err(|e| e.to_string())?;
    for seq in 0..args.messages {
        let user_id = seq % 1_000_000;
        let payload = format!(
            "{{\"user\":\"user-{user_id:06}\",\"user_id\":{user_id},\"action\":\"registered\",\
             \"ts_us\":0,\"seq\":{seq}}}"
        );
        let partition = i32::try_from(seq % partitions).map_err(|e| e.to_string())?;
        let mut record: BaseRecord<'_, (), str> = BaseRecord::to(&args.topic)
            .payload(payload.as_str())
            .partition(partition);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((RdKafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((err, _)) => return Err(err.to_string()),
            }
        }
    }
    producer
        .flush(Duration::from_secs(120))
        .map_err(|e| e.to_string())
}

async fn prefill(args: &Args) -> Result<(), String> {
    create_topic(&args.bootstrap, &args.topic, args.partitions).await?;
    if !args.output.is_empty() {
        create_topic(&args.bootstrap, &args.output, args.partitions).await?;
    }
    fill(args)?;
    eprintln!(
        "ruststream-peer: {} holds {} records",
        args.topic,
        records_in(&metadata_client(&args.bootstrap)?, &args.topic, args.partitions)
    );
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(err) => {
            eprintln!("ruststream-peer: {err}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("ruststream-peer: tokio runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        if args.case == Case::Prefill {
            prefill(&args).await.map(|()| None)
        } else {
            run_case(&args).await.map(Some)
        }
    });
    match outcome {
        Ok(line) => {
            if let Some(line) = line {
                println!("{line}");
            }
            // librdkafka handles were closed by the app's shutdown; do not wait on stragglers.
            runtime.shutdown_timeout(Duration::from_secs(1));
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("ruststream-peer: {err}");
            ExitCode::FAILURE
        }
    }
}
