//! The exactly-once table (`faststream-bench eos`): what Kafka transactions cost.
//!
//! Throughput, on the main table's pipeline (consume an `Event`, format a greeting, publish
//! it) over pre-filled records, in one run:
//!
//! - the at-least-once faststream-rs pipeline (the main table's `fs-pipeline` case);
//! - the exactly-once faststream-rs pipeline (`SubscriberConfig::transactions`), at each
//!   commit interval;
//! - a hand-written transactional rdkafka pipeline doing the same work at the same interval:
//!   one thread polls the consumer and produces each output inside the open transaction; at
//!   the interval (or after [`TransactionCommits`]' 10,000 records, the bound faststream-rs
//!   applies too) it hands the next offsets to `send_offsets_to_transaction` with the
//!   consumer's group metadata, commits and begins the next transaction.
//!
//! A transactional row is done when the group's committed input offsets reach the end: those
//! commit with the outputs, so every output is then visible to a `read_committed` reader. The
//! at-least-once row is done, as in the main table, when the output holds every record.
//!
//! Latency, end to end as a `read_committed` reader downstream sees it: records published at
//! a steady rate into a relay app (input -> output, the `Event` unchanged), read from the
//! output by a raw rdkafka consumer with `isolation.level=read_committed`; at-least-once and
//! exactly-once at each commit interval.

use crate::cases::{
    consumer_config, fs_broker, greeting, latency_through, pipeline_step, raw_producer_config,
    wire_headers, CaseArgs,
};
use crate::cli::Cli;
use crate::kafka::{self, Event};
use crate::measure::{CaseResult, Mark};
use crate::rows::{latency_line, own_case, own_case_in, Row};
use faststream::{FastStream, SubscriberConfig, TransactionCommits};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message as _;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// How long a transactional call (init, send offsets, commit) of the raw pipeline may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a transactional row may take to commit every record before it counts as stuck.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(300);

/// A case of this table, from its name (`run_case` in `main.rs`).
pub(crate) enum Case {
    /// `eo-fs-pipeline-{ms}`: the exactly-once faststream-rs pipeline.
    FsPipeline(Duration),
    /// `eo-raw-pipeline-{ms}`: the hand-written transactional rdkafka pipeline.
    RawPipeline(Duration),
    /// `eo-fs-latency-{ms}` (`alo-fs-latency`: `None`): the relay's end-to-end latency.
    Latency(Option<Duration>),
}

impl Case {
    /// The case named `name`, if it is one of this table's.
    pub(crate) fn parse(name: &str) -> Option<Self> {
        if name == "alo-fs-latency" {
            return Some(Self::Latency(None));
        }
        let (kind, ms) = name.strip_prefix("eo-")?.rsplit_once('-')?;
        let interval = Duration::from_millis(ms.parse().ok()?);
        match kind {
            "fs-pipeline" => Some(Self::FsPipeline(interval)),
            "raw-pipeline" => Some(Self::RawPipeline(interval)),
            "fs-latency" => Some(Self::Latency(Some(interval))),
            _ => None,
        }
    }

    /// Runs the case in this process.
    pub(crate) async fn run(self, args: &CaseArgs) -> Result<CaseResult, String> {
        match self {
            Self::FsPipeline(interval) => fs_pipeline(args, interval).await,
            Self::RawPipeline(interval) => raw_pipeline(args, interval).await,
            Self::Latency(interval) => relay_latency(args, interval).await,
        }
    }
}

fn new_group() -> String {
    format!("bench-{}", uuid::Uuid::new_v4().simple())
}

/// Waits until `group` has committed every record of the case's input (checked every 10 ms).
async fn wait_committed(args: &CaseArgs, group: &str) -> Result<(), String> {
    let client: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &args.bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .map_err(|e| e.to_string())?;
    let mut partitions = TopicPartitionList::new();
    for p in 0..args.partitions {
        partitions.add_partition(&args.topic, p);
    }
    let target = args.messages as i64;
    tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        loop {
            let committed: i64 = client
                .committed_offsets(partitions.clone(), Duration::from_secs(5))
                .map(|list| {
                    list.elements()
                        .iter()
                        .filter_map(|e| match e.offset() {
                            Offset::Offset(o) => Some(o),
                            _ => None,
                        })
                        .sum()
                })
                .unwrap_or(0);
            if committed >= target {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "committed {committed} of {target} records in {DRAIN_TIMEOUT:?}"
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    })
    .await
    .map_err(|e| e.to_string())?
}

/// The exactly-once faststream-rs pipeline: the main table's, committing every `interval`.
async fn fs_pipeline(args: &CaseArgs, interval: Duration) -> Result<CaseResult, String> {
    let start: Arc<OnceLock<Mark>> = Arc::default();
    let group = new_group();
    let app = FastStream::new(fs_broker(args).instance_id("bench"))
        .with_state(Arc::clone(&start))
        .subscriber(
            SubscriberConfig::new("pipeline", [args.topic.as_str()])
                .group_id(group.as_str())
                .publish_to(args.output.as_str())
                .transactions(TransactionCommits::every(interval)),
            pipeline_step,
        )
        .start()
        .await
        .map_err(|e| e.to_string())?;
    wait_committed(args, &group).await?;
    let result = start.get().ok_or("no records")?.finish(args.messages);
    app.shutdown().await.map_err(|e| e.to_string())?;
    Ok(result)
}

/// The hand-written transactional rdkafka pipeline (see the module docs).
async fn raw_pipeline(args: &CaseArgs, interval: Duration) -> Result<CaseResult, String> {
    let group = new_group();
    let consumer: BaseConsumer = consumer_config(args)
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .create()
        .map_err(|e| e.to_string())?;
    // Polled by this loop (see the wait before each commit).
    let producer: BaseProducer = raw_producer_config(args)
        .set("transactional.id", format!("{group}-raw"))
        .create()
        .map_err(|e| e.to_string())?;
    consumer
        .subscribe(&[&args.topic])
        .map_err(|e| e.to_string())?;
    let waiter = tokio::spawn({
        let (args, group) = (args.clone(), group.clone());
        async move { wait_committed(&args, &group).await }
    });
    let (topic, output, target) = (args.topic.clone(), args.output.clone(), args.messages);
    let partitions = args.partitions.max(0) as usize;
    let max_records = TransactionCommits::every(interval).max_records;
    let start = tokio::task::spawn_blocking(move || -> Result<Mark, String> {
        let fail = |e: KafkaError| e.to_string();
        producer.init_transactions(CALL_TIMEOUT).map_err(fail)?;
        producer.begin_transaction().map_err(fail)?;
        // The next offset to commit per input partition (-1: nothing handled yet).
        let mut next = vec![-1_i64; partitions];
        let (mut seen, mut open) = (0_u64, 0_usize);
        let mut start = None;
        let mut opened = Instant::now();
        while seen < target || open > 0 {
            let due = interval.saturating_sub(opened.elapsed());
            if seen < target {
                let wait = if open > 0 {
                    due
                } else {
                    Duration::from_millis(100)
                };
                if let Some(result) = consumer.poll(wait.min(Duration::from_millis(100))) {
                    let message = result.map_err(fail)?;
                    start.get_or_insert_with(Mark::now);
                    let event: Event =
                        serde_json::from_slice(message.payload().unwrap_or_default())
                            .map_err(|e| e.to_string())?;
                    let text = greeting(&event);
                    let mut record = BaseRecord::<(), str>::to(&output)
                        .payload(&text)
                        .headers(wire_headers());
                    loop {
                        match producer.send(record) {
                            Ok(()) => break,
                            Err((
                                KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull),
                                back,
                            )) => {
                                record = back;
                                producer.poll(Duration::from_micros(200));
                            }
                            Err((err, _)) => return Err(err.to_string()),
                        }
                    }
                    if let Some(slot) = next.get_mut(message.partition() as usize) {
                        *slot = message.offset() + 1;
                    }
                    open += 1;
                    seen += 1;
                }
            } else {
                std::thread::sleep(due);
            }
            if open > 0 && (opened.elapsed() >= interval || open >= max_records) {
                let mut offsets = TopicPartitionList::new();
                for (partition, offset) in next.iter().enumerate().filter(|(_, o)| **o >= 0) {
                    offsets
                        .add_partition_offset(&topic, partition as i32, Offset::Offset(*offset))
                        .map_err(fail)?;
                }
                // Every delivery first, in 1 ms polls: `commit_transaction` flushes too, but
                // rdkafka's flush polls in steps of 100 ms and does not wake for a delivery
                // report, which cost each commit 100 ms (measured, with a `ThreadedProducer` and
                // a `BaseProducer` alike). faststream-rs's barrier awaits its deliveries too.
                while producer.in_flight_count() > 0 {
                    producer.poll(Duration::from_millis(1));
                }
                let metadata = consumer.group_metadata().ok_or("no group metadata")?;
                producer
                    .send_offsets_to_transaction(&offsets, &metadata, CALL_TIMEOUT)
                    .map_err(fail)?;
                producer.commit_transaction(CALL_TIMEOUT).map_err(fail)?;
                producer.begin_transaction().map_err(fail)?;
                open = 0;
                opened = Instant::now();
            }
        }
        start.ok_or_else(|| "no records".to_owned())
    })
    .await
    .map_err(|e| e.to_string())??;
    waiter.await.map_err(|e| e.to_string())??;
    Ok(start.finish(args.messages))
}

/// The relay app (input -> output, the `Event` unchanged; exactly-once committing every
/// `interval`, or at-least-once) and a `read_committed` reader of its output.
async fn relay_latency(args: &CaseArgs, interval: Option<Duration>) -> Result<CaseResult, String> {
    let mut config = SubscriberConfig::new("relay", [args.topic.as_str()])
        .group_id(new_group())
        .publish_to(args.output.as_str());
    if let Some(interval) = interval {
        config = config.transactions(TransactionCommits::every(interval));
    }
    let broker = fs_broker(args)
        .instance_id("bench")
        .consumer_set("fetch.wait.max.ms", "100");
    let app = FastStream::new(broker)
        .subscriber(config, |event: Event| async move { event })
        .start()
        .await
        .map_err(|e| e.to_string())?;
    let reader: BaseConsumer = consumer_config(args)
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("fetch.wait.max.ms", "100")
        .create()
        .map_err(|e| e.to_string())?;
    reader
        .subscribe(&[&args.output])
        .map_err(|e| e.to_string())?;
    let result = latency_through(args, reader).await;
    app.shutdown().await.map_err(|e| e.to_string())?;
    result
}

/// The table's settings (`faststream-bench eos`).
pub(crate) struct Settings {
    /// Records pre-filled for the throughput rows.
    pub(crate) records: u64,
    /// Repetitions of every row.
    pub(crate) runs: usize,
    /// Commit intervals, ms.
    pub(crate) intervals: Vec<u64>,
    /// Records per second of the latency rows.
    pub(crate) rate: u64,
    /// Seconds of traffic per latency row.
    pub(crate) seconds: u64,
}

/// The throughput rows: `(case, label)`, the at-least-once row first.
fn throughput_rows(intervals: &[u64]) -> Vec<(String, String)> {
    let mut rows = vec![(
        "fs-pipeline".to_owned(),
        "at-least-once, faststream-rs".to_owned(),
    )];
    for ms in intervals {
        rows.push((
            format!("eo-fs-pipeline-{ms}"),
            format!("exactly-once, faststream-rs, commit every {ms} ms"),
        ));
        rows.push((
            format!("eo-raw-pipeline-{ms}"),
            format!("hand-written transactional rdkafka, commit every {ms} ms"),
        ));
    }
    rows
}

/// The latency rows: `(case, label)`.
fn latency_rows(intervals: &[u64]) -> Vec<(String, String)> {
    let mut rows = vec![(
        "alo-fs-latency".to_owned(),
        "at-least-once (no transactions)".to_owned(),
    )];
    for ms in intervals {
        rows.push((
            format!("eo-fs-latency-{ms}"),
            format!("exactly-once, commit every {ms} ms"),
        ));
    }
    rows
}

fn empty_rows(cases: &[(String, String)], section: &'static str, bytes: f64) -> Vec<Row> {
    cases
        .iter()
        .map(|(_, label)| Row {
            section,
            name: label.clone(),
            results: Vec::new(),
            payload_bytes_per_msg: bytes,
        })
        .collect()
}

/// Measures every row `settings.runs` times (the rows taking turns within a run) and prints
/// the tables.
pub(crate) fn run(cli: &Cli, settings: &Settings) -> Result<(), String> {
    kafka::ping(&cli.bootstrap)?;
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    let input = format!("bench-eos-in-{}", uuid::Uuid::new_v4().simple());
    runtime.block_on(kafka::create_topic(&cli.bootstrap, &input, cli.partitions))?;
    eprintln!(
        "bench: writing {} records to {input} ({} partitions)",
        settings.records, cli.partitions
    );
    let bytes = kafka::prefill(&cli.bootstrap, &input, cli.partitions, settings.records)?;
    let bytes = bytes as f64 / settings.records as f64;
    let throughput = throughput_rows(&settings.intervals);
    let latency = latency_rows(&settings.intervals);
    let mut rows = empty_rows(&throughput, "throughput", bytes);
    let mut latency_results = empty_rows(&latency, "latency", bytes);
    for run in 1..=settings.runs {
        for (row, (case, label)) in rows.iter_mut().zip(&throughput) {
            eprintln!("bench: run {run}/{} {label}", settings.runs);
            let output = kafka::output_topic(&runtime, &cli.bootstrap, "pipeline", cli.partitions)?;
            row.results.push(own_case(
                cli,
                case,
                &input,
                &output,
                settings.records,
                0,
                0,
            )?);
        }
        for (row, (case, label)) in latency_results.iter_mut().zip(&latency) {
            eprintln!("bench: run {run}/{} latency {label}", settings.runs);
            let id = uuid::Uuid::new_v4().simple();
            let (topic, output) = (format!("bench-lat-{id}"), format!("bench-lat-out-{id}"));
            for name in [&topic, &output] {
                runtime.block_on(kafka::create_topic(&cli.bootstrap, name, 1))?;
            }
            row.results.push(own_case_in(
                cli,
                case,
                &topic,
                &output,
                1,
                0,
                settings.rate,
                settings.seconds,
            )?);
        }
    }
    let table = render(cli, settings, &rows, &latency_results);
    println!("{table}");
    if let Some(path) = &cli.markdown {
        std::fs::write(path, &table).map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    Ok(())
}

/// `met` or `missed` for a ratio against its target.
fn status(ratio: f64, target: f64) -> &'static str {
    if ratio >= target {
        "met"
    } else {
        "missed"
    }
}

fn render(cli: &Cli, settings: &Settings, rows: &[Row], latency: &[Row]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "faststream-bench eos: {} records x {} runs, {} partitions; latency: {} records/s for {} s, 1 partition\n",
        settings.records, settings.runs, cli.partitions, settings.rate, settings.seconds
    );
    let _ = writeln!(out, "| pipeline | msg/s (median) | spread (min-max msg/s) | CPU µs/record | allocs/record | vs at-least-once | vs hand-written, same interval |");
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|");
    let rate_of = |label: &str| rows.iter().find(|r| r.name == label).map(Row::median_rate);
    let at_least_once = rows.first().map(Row::median_rate);
    for row in rows {
        let rate = row.median_rate();
        let vs_alo = at_least_once.map_or_else(String::new, |a| format!("{:.2}", rate / a));
        let hand_written = row
            .name
            .strip_prefix("exactly-once, faststream-rs")
            .and_then(|tail| rate_of(&format!("hand-written transactional rdkafka{tail}")))
            .map_or_else(String::new, |h| format!("{:.2}", rate / h));
        let _ = writeln!(
            out,
            "| {} | {} | {:.2} | {} | {vs_alo} | {hand_written} |",
            row.name,
            row.rate_cells(),
            row.cpu_us_per_record(),
            row.allocations_cell(),
        );
    }
    let at_100 = rate_of("exactly-once, faststream-rs, commit every 100 ms");
    let raw_100 = rate_of("hand-written transactional rdkafka, commit every 100 ms");
    if let (Some(eo), Some(alo), Some(raw)) = (at_100, at_least_once, raw_100) {
        let _ = writeln!(
            out,
            "\nTargets at 100 ms: exactly-once {:.2}x at-least-once (target 0.8: {}), {:.2}x the hand-written transactional pipeline (target 0.9: {})",
            eo / alo,
            status(eo / alo, 0.8),
            eo / raw,
            status(eo / raw, 0.9)
        );
    }
    let _ = writeln!(
        out,
        "\n| publish to visible output (read_committed reader) | p50 ms | p99 ms | p99.9 ms | spread of p99 (min-max) |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|");
    for row in latency {
        let _ = writeln!(out, "{}", latency_line(row));
    }
    out
}
