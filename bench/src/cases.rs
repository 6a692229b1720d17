//! The measured programs. Each runs in its own child process (clean CPU and RSS numbers) and
//! prints one [`CaseResult`] JSON line.
//!
//! `raw-*` cases are plain rdkafka written as well as rdkafka allows (the limit);
//! `fs-*` cases do the same work through faststream.

use crate::kafka::{metadata_client, now_us, records_in, Event};
use crate::measure::{quantile, CaseResult, Mark};
use faststream::codec::MessagePack;
use faststream::kafka::KafkaBroker;
use faststream::{Broker, FastStream, Headers, Key, Meta, Record, State, SubscriberConfig};
use futures::FutureExt;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers as _, Message as _, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::ClientContext;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::sync::Notify;

/// Parameters of one case run.
#[derive(Debug, Clone)]
pub struct CaseArgs {
    pub bootstrap: String,
    pub topic: String,
    pub output: String,
    pub partitions: i32,
    pub messages: u64,
    pub rate: u64,
    pub seconds: u64,
}

pub(crate) fn consumer_config(args: &CaseArgs) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &args.bootstrap)
        .set(
            "group.id",
            format!("bench-{}", uuid::Uuid::new_v4().simple()),
        )
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        // faststream-rs's consumer default. With librdkafka's (1 s), a drain that reads slower
        // than librdkafka fetches fills the queue to `queued.min.messages` (100,000 records),
        // every partition's next fetch waits a second, and the reader idles once it emptied
        // the queue: raw rdkafka drained 248,146 records/s with the default and 1,076,816 with
        // this (300,000 records, median of 3 runs, minutes apart).
        .set("fetch.queue.backoff.ms", "10");
    config
}

/// The raw pipelines' producer (one thread and multi-threaded alike): idempotent, with
/// faststream's `linger.ms`.
pub(crate) fn raw_producer_config(args: &CaseArgs) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &args.bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000");
    config
}

/// The headers faststream writes on a published record, which the raw pipelines write too:
/// `content-type` and a fresh uuid4 `correlation_id` (formatted on the stack).
pub(crate) fn wire_headers() -> OwnedHeaders {
    let mut id = [0_u8; uuid::fmt::Hyphenated::LENGTH];
    let id = uuid::Uuid::new_v4()
        .hyphenated()
        .encode_lower(&mut id)
        .as_bytes();
    OwnedHeaders::new_with_capacity(2)
        .insert(Header {
            key: "content-type",
            value: Some("text/plain"),
        })
        .insert(Header {
            key: "correlation_id",
            value: Some(id),
        })
}

/// The raw cases' consumer context: under callgrind, counting starts when the partitions are
/// assigned (see [`counted_from_assignment`]).
pub(crate) struct CountFromAssignment;

impl ClientContext for CountFromAssignment {}

impl ConsumerContext for CountFromAssignment {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(_) = rebalance {
            crate::callgrind::zero_stats();
        }
    }
}

/// Under callgrind, zeroes the counts when the subscriber's partitions are assigned, as
/// [`CountFromAssignment`] does for the raw cases: the cost gate counts from there to the
/// last record ([`Mark::finish`]), not the start-up and group join before it. Not from the
/// first record: by then librdkafka has fetched and parsed a part of the topic that depends
/// on how its threads interleaved (the whole first fetch, or a part of it), which moved the
/// count per record by up to 4 %.
pub(crate) fn counted_from_assignment(config: SubscriberConfig) -> SubscriberConfig {
    config.on_assign(|_| crate::callgrind::zero_stats())
}

/// Raw drain: one `BaseConsumer` polled in a tight loop, each record decoded into `Event`.
pub fn raw_drain(args: &CaseArgs) -> Result<CaseResult, String> {
    raw_drain_reading(args, false)
}

/// Raw rdkafka's drain that also reads each record's `content-type` header, as a consumer of
/// FastStream's records must to pick the decoder: what librdkafka's header parsing costs
/// (`case raw-drain-headers`; not a row of the table, a measurement for the profile).
pub fn raw_drain_headers(args: &CaseArgs) -> Result<CaseResult, String> {
    raw_drain_reading(args, true)
}

fn raw_drain_reading(args: &CaseArgs, read_headers: bool) -> Result<CaseResult, String> {
    let consumer: BaseConsumer<CountFromAssignment> = consumer_config(args)
        .set("enable.auto.commit", "false")
        .create_with_context(CountFromAssignment)
        .map_err(|e| e.to_string())?;
    consumer
        .subscribe(&[&args.topic])
        .map_err(|e| e.to_string())?;
    let mut seen = 0_u64;
    let mut start = None;
    let mut checksum = 0_u64;
    while seen < args.messages {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                if read_headers {
                    std::hint::black_box(content_type(&message));
                }
                let event: Event = serde_json::from_slice(message.payload().unwrap_or_default())
                    .map_err(|e| e.to_string())?;
                checksum = checksum.wrapping_add(event.seq);
                start.get_or_insert_with(Mark::now);
                seen += 1;
            }
            Some(Err(err)) => return Err(err.to_string()),
            None => {}
        }
    }
    std::hint::black_box(checksum);
    Ok(start.ok_or("no records")?.finish(seen))
}

/// The record's last `content-type` header: what a consumer of FastStream's records reads to
/// pick the decoder.
fn content_type(message: &impl rdkafka::message::Message) -> Option<&[u8]> {
    message.headers().and_then(|headers| {
        headers
            .iter()
            .filter(|h| h.key == "content-type")
            .last()
            .and_then(|h| h.value)
    })
}

/// Raw rdkafka's drain with each partition read by a tokio task of its own from its own
/// librdkafka queue (`split_partition_queue`), the shape of the multi-threaded raw pipeline:
/// what reading the partitions in parallel costs against one polling loop. With
/// `read_headers`, each record's `content-type` is read too. `case raw-drain-split` and
/// `raw-drain-split-headers`: measurements for issue 21's notes, not rows of the table.
pub async fn raw_drain_split(args: &CaseArgs, read_headers: bool) -> Result<CaseResult, String> {
    use futures::StreamExt as _;
    let consumer: Arc<rdkafka::consumer::StreamConsumer<CountFromAssignment>> = Arc::new(
        consumer_config(args)
            .set("enable.auto.commit", "false")
            .create_with_context(CountFromAssignment)
            .map_err(|e| e.to_string())?,
    );
    consumer
        .subscribe(&[&args.topic])
        .map_err(|e| e.to_string())?;
    let progress = Progress::new(args.messages);
    let mut tasks = tokio::task::JoinSet::new();
    // Every partition is split before the main queue is first polled, so that none of their
    // records is delivered through it.
    for partition in 0..args.partitions {
        let queue = consumer
            .split_partition_queue(&args.topic, partition)
            .ok_or_else(|| format!("cannot split partition {partition}"))?;
        let progress = Arc::clone(&progress);
        tasks.spawn(async move {
            let mut stream = queue.stream();
            while let Some(message) = stream.next().await {
                let message = message.map_err(|e| e.to_string())?;
                if read_headers {
                    std::hint::black_box(content_type(&message));
                }
                let event: Event = serde_json::from_slice(message.payload().unwrap_or_default())
                    .map_err(|e| e.to_string())?;
                std::hint::black_box(event.seq);
                progress.record();
            }
            Ok(())
        });
    }
    tasks.spawn(crate::kafka::serve_main_queue(Arc::clone(&consumer)));
    tokio::select! {
        () = progress.done.notified() => {}
        Some(ended) = tasks.join_next() => return Err(crate::kafka::why_ended(ended)),
    }
    let result = progress
        .start
        .get()
        .ok_or("no records")?
        .finish(args.messages);
    tasks.abort_all();
    Ok(result)
}

/// Counts handled records and wakes the case when the last one arrived.
pub(crate) struct Progress {
    target: u64,
    seen: AtomicU64,
    start: OnceLock<Mark>,
    done: Notify,
}

impl Progress {
    pub(crate) fn new(target: u64) -> Arc<Self> {
        Arc::new(Self {
            target,
            seen: AtomicU64::new(0),
            start: OnceLock::new(),
            done: Notify::new(),
        })
    }

    pub(crate) fn record(&self) {
        self.record_many(1);
    }

    fn record_many(&self, records: u64) {
        self.start.get_or_init(Mark::now);
        let before = self.seen.fetch_add(records, Ordering::Relaxed);
        if before < self.target && before + records >= self.target {
            self.done.notify_one();
        }
    }
}

pub(crate) fn fs_broker(args: &CaseArgs) -> KafkaBroker {
    let mut broker = KafkaBroker::new(args.bootstrap.clone());
    // The cost gate runs cases under valgrind, about 50 times slower: work that follows the
    // clock (statistics every second, the background commit every second) would be counted
    // 50 times over against the records. It sets these to intervals no run reaches.
    if let Ok(value) = std::env::var("FASTSTREAM_BENCH_STATISTICS_MS") {
        broker = broker.set("statistics.interval.ms", value);
    }
    if let Ok(value) = std::env::var("FASTSTREAM_BENCH_COMMIT_MS") {
        broker = broker.consumer_set("auto.commit.interval.ms", value);
    }
    broker
}

/// Runs a drain app until its subscriber has seen every record, and measures from the first.
pub(crate) async fn drain_until_done(
    app: FastStream<KafkaBroker>,
    progress: &Progress,
) -> Result<CaseResult, String> {
    let app = app.start().await.map_err(|e| e.to_string())?;
    progress.done.notified().await;
    let result = progress
        .start
        .get()
        .ok_or("no records")?
        .finish(progress.seen.load(Ordering::Relaxed));
    app.shutdown().await.map_err(|e| e.to_string())?;
    Ok(result)
}

/// faststream drain: a subscriber taking the same `Event`.
pub async fn fs_drain(args: &CaseArgs) -> Result<CaseResult, String> {
    drain_events(args, drain_config(args, "drain")).await
}

/// A drain subscriber on the case's topic, in a group of its own.
pub(crate) fn drain_config(args: &CaseArgs, name: &str) -> SubscriberConfig {
    counted_from_assignment(
        SubscriberConfig::new(name, [args.topic.as_str()])
            .group_id(format!("bench-{}", uuid::Uuid::new_v4().simple())),
    )
}

/// Drains with `config`'s subscriber taking each record as an `Event`.
pub(crate) async fn drain_events(
    args: &CaseArgs,
    config: SubscriberConfig,
) -> Result<CaseResult, String> {
    let progress = Progress::new(args.messages);
    let app = FastStream::new(fs_broker(args))
        .with_state(Arc::clone(&progress))
        .subscriber(
            config,
            |progress: State<Arc<Progress>>, event: Event| async move {
                std::hint::black_box(event.seq);
                progress.record();
            },
        );
    drain_until_done(app, &progress).await
}

/// The extractor-drain row's handler: four extractors, then the same `Event` payload as
/// [`fs_drain`]'s, last (a plain async fn, not `#[subscriber]`). It folds every extracted value
/// into a checksum, so none of them is optimised away, and counts the record.
async fn drain_extract_handler(
    key: Key<Option<String>>,
    headers: Headers,
    meta: Meta,
    progress: State<Arc<Progress>>,
    event: Event,
) {
    let lengths = key.0.map_or(0, |k| k.len())
        + headers
            .iter()
            .map(|(n, v)| n.len() + v.len())
            .sum::<usize>()
        + meta.topic.len()
        + meta.correlation_id.map_or(0, |c| c.len());
    let checksum = event
        .seq
        .wrapping_add(lengths as u64)
        .wrapping_add(meta.partition as u64)
        .wrapping_add(meta.offset as u64)
        .wrapping_add(meta.timestamp.unwrap_or_default() as u64);
    std::hint::black_box(checksum);
    progress.record();
}

/// faststream drain with extractors: [`fs_drain`] with a handler that also takes the record's
/// key, headers and metadata ([`drain_extract_handler`]).
pub async fn fs_drain_extract(args: &CaseArgs) -> Result<CaseResult, String> {
    let progress = Progress::new(args.messages);
    let app = FastStream::new(fs_broker(args))
        .with_state(Arc::clone(&progress))
        .subscriber(
            SubscriberConfig::new("drain_extract", [args.topic.as_str()])
                .group_id(format!("bench-{}", uuid::Uuid::new_v4().simple())),
            drain_extract_handler,
        );
    drain_until_done(app, &progress).await
}

/// faststream drain of MessagePack records: [`fs_drain`] with the subscriber's codec set to
/// MessagePack (the records carry no content type, as a producer of another stack writes them).
pub async fn fs_drain_msgpack(args: &CaseArgs) -> Result<CaseResult, String> {
    drain_events(args, drain_config(args, "drain_msgpack").codec(MessagePack)).await
}

/// Records per batch in the batch-drain row.
pub const DRAIN_BATCH: usize = 500;

/// faststream batch drain: a batch subscriber taking `Vec<Event>`, up to [`DRAIN_BATCH`]
/// records per call.
pub async fn fs_drain_batch(args: &CaseArgs) -> Result<CaseResult, String> {
    let progress = Progress::new(args.messages);
    let app = FastStream::new(fs_broker(args))
        .with_state(Arc::clone(&progress))
        .subscriber(
            SubscriberConfig::new("drain_batch", [args.topic.as_str()])
                .group_id(format!("bench-{}", uuid::Uuid::new_v4().simple()))
                .batch(DRAIN_BATCH, Duration::from_millis(20)),
            |progress: State<Arc<Progress>>, events: Vec<Event>| async move {
                let checksum = events.iter().fold(0_u64, |sum, e| sum.wrapping_add(e.seq));
                std::hint::black_box(checksum);
                progress.record_many(events.len() as u64);
            },
        );
    drain_until_done(app, &progress).await
}

pub(crate) fn greeting(event: &Event) -> String {
    format!("User: {} - {} {}", event.user_id, event.user, event.action)
}

/// Waits until `output` holds `messages` records, checking every 10 ms from a thread.
pub(crate) async fn wait_for_output(args: &CaseArgs) -> Result<(), String> {
    let client = metadata_client(&args.bootstrap)?;
    let (output, partitions, target) = (args.output.clone(), args.partitions, args.messages as i64);
    tokio::task::spawn_blocking(move || {
        while records_in(&client, &output, partitions) < target {
            std::thread::sleep(Duration::from_millis(10));
        }
    })
    .await
    .map_err(|e| e.to_string())
}

/// Raw pipeline: consume, decode, format, produce to the output topic; an input offset is
/// stored only once its output was acknowledged, in order per partition (at-least-once).
/// With `same_output`, each record also carries the headers faststream writes for FastStream
/// compatibility (`content-type` and a fresh uuid4 `correlation_id`), so both produce the same
/// records; without, the output is the bare payload (the absolute limit).
pub async fn raw_pipeline(args: &CaseArgs, same_output: bool) -> Result<CaseResult, String> {
    let consumer: Arc<BaseConsumer<CountFromAssignment>> = Arc::new(
        consumer_config(args)
            .set("enable.auto.commit", "true")
            .set("enable.auto.offset.store", "false")
            .create_with_context(CountFromAssignment)
            .map_err(|e| e.to_string())?,
    );
    let producer: FutureProducer = raw_producer_config(args)
        .create()
        .map_err(|e| e.to_string())?;
    consumer
        .subscribe(&[&args.topic])
        .map_err(|e| e.to_string())?;
    let waiter = tokio::spawn({
        let args = args.clone();
        async move { wait_for_output(&args).await }
    });
    let topic = args.topic.clone();
    let output = args.output.clone();
    let target = args.messages;
    let start = tokio::task::spawn_blocking(move || -> Result<Mark, String> {
        let mut pending: HashMap<i32, VecDeque<(i64, DeliveryFuture)>> = HashMap::new();
        let mut seen = 0_u64;
        let mut start = None;
        let mut outstanding = 0_usize;
        while seen < target || outstanding > 0 {
            if seen < target {
                if let Some(result) =
                    consumer.poll(Duration::from_millis(if outstanding > 0 { 0 } else { 100 }))
                {
                    let message = result.map_err(|e| e.to_string())?;
                    start.get_or_insert_with(Mark::now);
                    let event: Event =
                        serde_json::from_slice(message.payload().unwrap_or_default())
                            .map_err(|e| e.to_string())?;
                    let text = greeting(&event);
                    let mut record = FutureRecord::<(), str>::to(&output).payload(&text);
                    if same_output {
                        record = record.headers(wire_headers());
                    }
                    let delivery = loop {
                        match producer.send_result(record) {
                            Ok(delivery) => break delivery,
                            Err((
                                KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull),
                                back,
                            )) => {
                                record = back;
                                std::thread::sleep(Duration::from_micros(200));
                            }
                            Err((err, _)) => return Err(err.to_string()),
                        }
                    };
                    pending
                        .entry(message.partition())
                        .or_default()
                        .push_back((message.offset(), delivery));
                    outstanding += 1;
                    seen += 1;
                }
            } else {
                std::thread::sleep(Duration::from_millis(1));
            }
            // Store the offsets whose outputs were acknowledged, in order per partition.
            for (partition, queue) in pending.iter_mut() {
                let mut done = None;
                while let Some((offset, delivery)) = queue.front_mut() {
                    match delivery.now_or_never() {
                        Some(Ok(Ok(_))) => {
                            done = Some(*offset);
                            queue.pop_front();
                            outstanding -= 1;
                        }
                        Some(_) => return Err("a publish failed".into()),
                        None => break,
                    }
                }
                if let Some(offset) = done {
                    consumer
                        .store_offset(&topic, *partition, offset)
                        .map_err(|e| e.to_string())?;
                }
            }
        }
        start.ok_or_else(|| "no records".to_owned())
    })
    .await
    .map_err(|e| e.to_string())??;
    waiter.await.map_err(|e| e.to_string())??;
    Ok(start.finish(args.messages))
}

/// What the faststream pipeline records besides its work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observe {
    /// Nothing: the plain pipeline.
    Nothing,
    /// FastStream's Prometheus metrics on both sides.
    Metrics,
    /// OpenTelemetry `process` and `send` spans, batched to an exporter that drops them
    /// (the SDK's whole cost without the network). Every span must reach the exporter: the
    /// case fails otherwise (see [`SPAN_QUEUE`]).
    Tracing,
    /// [`Observe::Tracing`] with 1 % of traces sampled (parent-based, by trace id ratio): what
    /// the otel module's docs advise for high-rate topics.
    TracingSampled,
}

/// Spans the batch processor queues for its export thread. The SDK's default
/// (`OTEL_BSP_MAX_QUEUE_SIZE`, 2,048) overflowed at this benchmark's rates, and the spans that
/// did not fit were dropped: 8-16 % of them in 300,000-record runs, so the row measured less
/// than tracing every message. 16,384 was enough there; this leaves room (23-40 MB more
/// resident than the default in those runs).
const SPAN_QUEUE: usize = 65_536;

/// An exporter that drops every batch, counting the spans it was given.
#[derive(Debug)]
struct DiscardSpans(Arc<std::sync::atomic::AtomicU64>);

impl opentelemetry_sdk::trace::SpanExporter for DiscardSpans {
    async fn export(
        &self,
        batch: Vec<opentelemetry_sdk::trace::SpanData>,
    ) -> opentelemetry_sdk::error::OTelSdkResult {
        self.0
            .fetch_add(batch.len() as u64, std::sync::atomic::Ordering::Relaxed);
        std::hint::black_box(batch);
        Ok(())
    }
}

/// faststream pipeline: the seed example's shape with the same `Event`, with `observe`.
pub async fn fs_pipeline(args: &CaseArgs, observe: Observe) -> Result<CaseResult, String> {
    use opentelemetry::trace::TracerProvider as _;
    let start: Arc<OnceLock<Mark>> = Arc::default();
    let mut app = FastStream::new(fs_broker(args));
    // Nothing is built for what is not measured: the plain row runs the plain pipeline.
    let mut metrics = None;
    let mut provider = None;
    let exported = Arc::<std::sync::atomic::AtomicU64>::default();
    match observe {
        Observe::Nothing => {}
        Observe::Metrics => {
            let recorded = faststream::observe::metrics::Metrics::new("bench");
            app = app.metrics(&recorded);
            metrics = Some(recorded);
        }
        Observe::Tracing | Observe::TracingSampled => {
            use opentelemetry_sdk::trace::Sampler;
            let sampler = match observe {
                Observe::TracingSampled => {
                    Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(0.01)))
                }
                _ => Sampler::AlwaysOn,
            };
            let spans = discarding_provider(sampler, &exported);
            app = app.otel(&faststream::observe::otel::Otel::new(spans.tracer("bench")));
            provider = Some(spans);
        }
    }
    let app = app
        .with_state(Arc::clone(&start))
        .subscriber(
            counted_from_assignment(
                SubscriberConfig::new("pipeline", [args.topic.as_str()])
                    .group_id(format!("bench-{}", uuid::Uuid::new_v4().simple()))
                    .publish_to(args.output.as_str()),
            ),
            pipeline_step,
        )
        .start()
        .await
        .map_err(|e| e.to_string())?;
    wait_for_output(args).await?;
    let result = start.get().ok_or("no records")?.finish(args.messages);
    app.shutdown().await.map_err(|e| e.to_string())?;
    if metrics.is_some_and(|m| !m.render().contains("status=\"acked\"")) {
        return Err("the metrics recorded nothing".to_owned());
    }
    if let Some(provider) = provider {
        // Shutting down exports what is still queued.
        let _ = provider.shutdown();
        let exported = exported.load(std::sync::atomic::Ordering::Relaxed);
        eprintln!(
            "bench: the exporter was given {exported} spans for {} records",
            args.messages
        );
        // A `process` and a `send` span per record (more if a record ran twice).
        if observe == Observe::Tracing && exported < 2 * args.messages {
            return Err(format!(
                "the exporter was given {exported} spans, fewer than 2 per record ({}): the \
                 batch processor dropped some",
                2 * args.messages
            ));
        }
    }
    Ok(result)
}

/// A tracer provider that batches every span it records to [`DiscardSpans`] (counting them
/// into `exported`), through the SDK's batch processor with room for [`SPAN_QUEUE`] spans.
fn discarding_provider(
    sampler: opentelemetry_sdk::trace::Sampler,
    exported: &Arc<AtomicU64>,
) -> opentelemetry_sdk::trace::SdkTracerProvider {
    let processor =
        opentelemetry_sdk::trace::BatchSpanProcessor::builder(DiscardSpans(Arc::clone(exported)))
            .with_batch_config(
                opentelemetry_sdk::trace::BatchConfigBuilder::default()
                    .with_max_queue_size(SPAN_QUEUE)
                    .build(),
            )
            .build();
    opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_sampler(sampler)
        .with_span_processor(processor)
        .build()
}

/// The OpenTelemetry SDK alone, with no Kafka and none of faststream: for each of
/// `args.messages` records, a `process` span and its child `send` span, with the names, kinds
/// and attributes faststream's layers give them, started and ended on two threads (the
/// pipeline's two workers) and batched to [`DiscardSpans`] as in `fs-pipeline-tracing`.
/// What two spans per record cost before any of faststream's work: the floor of what the
/// tracing row adds to the plain pipeline. The CPU time counts the export thread's work up
/// to the provider's shutdown, which exports what is still queued.
///
/// Unpaced, the two threads outran the export thread and the processor dropped more than
/// half the spans, which is cheaper than exporting them; so a thread waits while more than
/// half the queue is not yet exported (by its own count of spans times the threads).
pub fn otel_spans(args: &CaseArgs) -> Result<CaseResult, String> {
    use opentelemetry::trace::{
        Span as _, SpanBuilder, SpanKind, TraceContextExt as _, Tracer as _, TracerProvider as _,
    };
    use opentelemetry::{Context, KeyValue};
    const WORKERS: u64 = 2;
    let exported = Arc::<AtomicU64>::default();
    let provider = discarding_provider(opentelemetry_sdk::trace::Sampler::AlwaysOn, &exported);
    let tracer = provider.tracer("bench");
    let common = |operation: &'static str| {
        [
            KeyValue::new("messaging.system", "kafka"),
            KeyValue::new("messaging.operation.type", operation),
            KeyValue::new("messaging.destination.name", "bench-topic"),
            KeyValue::new("messaging.destination.partition.id", "3"),
        ]
    };
    let start = Mark::now();
    std::thread::scope(|threads| {
        for worker in 0..WORKERS {
            let (tracer, common, exported) = (&tracer, &common, &exported);
            threads.spawn(move || {
                for (made, offset) in (worker..args.messages)
                    .step_by(WORKERS as usize)
                    .enumerate()
                {
                    if made % 256 == 0 {
                        let backlog = |made: usize| {
                            (2 * WORKERS * made as u64)
                                .saturating_sub(exported.load(Ordering::Relaxed))
                        };
                        // Bounded: an export thread that stopped fails the count below
                        // instead of hanging the case.
                        let deadline = std::time::Instant::now() + Duration::from_secs(30);
                        while backlog(made) > SPAN_QUEUE as u64 / 2
                            && std::time::Instant::now() < deadline
                        {
                            std::thread::sleep(Duration::from_micros(200));
                        }
                    }
                    let mut attributes = Vec::with_capacity(10);
                    attributes.extend(common("process"));
                    attributes.extend([
                        KeyValue::new("messaging.consumer.group.name", "bench-group"),
                        KeyValue::new("messaging.kafka.offset", offset as i64),
                        KeyValue::new("messaging.message.body.size", 90_i64),
                    ]);
                    let process = SpanBuilder {
                        name: "process bench-topic".into(),
                        span_kind: Some(SpanKind::Consumer),
                        attributes: Some(attributes),
                        ..SpanBuilder::default()
                    };
                    let root = Context::new();
                    let cx = root.with_span(tracer.build_with_context(process, &root));
                    let mut attributes = Vec::with_capacity(10);
                    attributes.extend(common("send"));
                    attributes.push(KeyValue::new("messaging.message.body.size", 40_i64));
                    let send = SpanBuilder {
                        name: "send bench-out".into(),
                        span_kind: Some(SpanKind::Producer),
                        attributes: Some(attributes),
                        ..SpanBuilder::default()
                    };
                    tracer.build_with_context(send, &cx).end();
                    cx.span().end();
                }
            });
        }
    });
    provider.shutdown().map_err(|e| e.to_string())?;
    let result = start.finish(args.messages);
    let exported = exported.load(Ordering::Relaxed);
    if exported != 2 * args.messages {
        return Err(format!(
            "the exporter was given {exported} spans, not 2 per record ({})",
            2 * args.messages
        ));
    }
    Ok(result)
}

/// The pipelines' handler: marks the first record, formats the greeting it publishes.
pub(crate) async fn pipeline_step(start: State<Arc<OnceLock<Mark>>>, event: Event) -> String {
    start.get_or_init(Mark::now);
    greeting(&event)
}

/// Extra client properties for the latency cases from the environment variable `var`
/// (`key=value,key=value`): how a hypothesis about a setting is measured without a rebuild
/// (`BENCH_LATENCY_CONSUMER`, `BENCH_LATENCY_PRODUCER`).
fn latency_properties(var: &str) -> Vec<(String, String)> {
    std::env::var(var)
        .unwrap_or_default()
        .split(',')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// The latency producer's context: librdkafka's log lines go to stderr with a wall-clock
/// timestamp (ms), so that `BENCH_LATENCY_PRODUCER=debug=broker,topic,metadata,msg` shows
/// where a producer's first milliseconds go. Without `debug` librdkafka logs only problems.
pub(crate) struct StderrLog;

impl rdkafka::ClientContext for StderrLog {
    fn log(&self, _level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        eprintln!("{:.3} {fac} {message}", now_us() as f64 / 1000.0);
    }
}

/// The latency cases' producer type.
type LatencyProducer = FutureProducer<StderrLog>;

/// The latency cases' producer: raw rdkafka with `linger.ms=0`.
fn latency_producer(args: &CaseArgs) -> Result<LatencyProducer, String> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &args.bootstrap)
        .set("linger.ms", "0");
    for (key, value) in latency_properties("BENCH_LATENCY_PRODUCER") {
        if key == "debug" {
            // rdkafka passes librdkafka the `log` crate's level, which is off here.
            config.set_log_level(rdkafka::config::RDKafkaLogLevel::Debug);
        }
        config.set(key, value);
    }
    config
        .create_with_context(StderrLog)
        .map_err(|e| e.to_string())
}

/// With `BENCH_LATENCY_FRESH_PRODUCER=1`, a new producer for the measured records, as the
/// benchmark had before (to measure what that cost); otherwise `warmed`.
fn fresh_for_comparison(
    args: &CaseArgs,
    warmed: LatencyProducer,
) -> Result<LatencyProducer, String> {
    if std::env::var_os("BENCH_LATENCY_FRESH_PRODUCER").is_some_and(|v| v == "1") {
        latency_producer(args)
    } else {
        Ok(warmed)
    }
}

/// Publishes `rate` records per second for `seconds` with `producer` (the latency-tuned one
/// that sent the warm-up records, so it is connected and knows the partition's leader); each
/// record carries its send time.
async fn send_paced(args: &CaseArgs, producer: &LatencyProducer) -> Result<u64, String> {
    // Send in 1 ms ticks: rate/1000 records per tick (at least one tick per record below 1k/s).
    let per_tick = (args.rate / 1000).max(1);
    let tick = Duration::from_micros(1_000_000 * per_tick / args.rate.max(1));
    let total = args.rate * args.seconds;
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut sent = 0;
    let mut deliveries = Vec::with_capacity(total as usize);
    while sent < total {
        interval.tick().await;
        for _ in 0..per_tick.min(total - sent) {
            let payload =
                serde_json::to_vec(&Event::new(sent, now_us())).map_err(|e| e.to_string())?;
            let record = FutureRecord::<(), [u8]>::to(&args.topic).payload(&payload[..]);
            match producer.send_result(record) {
                Ok(delivery) => deliveries.push(delivery),
                Err((err, _)) => return Err(err.to_string()),
            }
            sent += 1;
        }
    }
    for delivery in deliveries {
        let _ = delivery.await;
    }
    Ok(sent)
}

/// One latency sample: the record's sequence number and latency; for the dump, also its send
/// time (µs since the epoch) and the Kafka timestamp it arrived with (ms; the broker's append
/// time on a topic with `message.timestamp.type=LogAppendTime`), 0 where there is none.
#[derive(Debug, Clone, Copy)]
struct Sample {
    seq: u64,
    ms: f64,
    sent_us: i64,
    kafka_ms: i64,
}

impl Sample {
    fn new(seq: u64, sent_us: i64, kafka_ms: Option<i64>) -> Self {
        Self {
            seq,
            ms: (now_us() - sent_us) as f64 / 1000.0,
            sent_us,
            kafka_ms: kafka_ms.unwrap_or_default(),
        }
    }
}

/// Percentiles of the samples. With `BENCH_LATENCY_DUMP=<file>` the samples are also appended
/// to that file, one `seq latency_ms send_to_timestamp_ms timestamp_to_receive_ms sent_at_s` line each:
/// where in a run the slow records fall, and on which side of the broker's timestamp their
/// time went, is what tells one stall from another.
fn latency_result(samples: Vec<Sample>, mark: Mark) -> CaseResult {
    if let Some(path) = std::env::var_os("BENCH_LATENCY_DUMP") {
        use std::io::Write as _;
        let lines: String = samples
            .iter()
            .map(|s| {
                let received_ms = s.sent_us as f64 / 1000.0 + s.ms;
                format!(
                    "{} {:.3} {:.3} {:.3} {:.3}\n",
                    s.seq,
                    s.ms,
                    s.kafka_ms as f64 - s.sent_us as f64 / 1000.0,
                    received_ms - s.kafka_ms as f64,
                    s.sent_us as f64 / 1e6
                )
            })
            .collect();
        if let Ok(mut file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = file.write_all(lines.as_bytes());
        }
    }
    let mut latencies_ms: Vec<f64> = samples.into_iter().map(|s| s.ms).collect();
    latencies_ms.sort_by(|a, b| a.total_cmp(b));
    let mut result = mark.finish(latencies_ms.len() as u64);
    result.latency_ms = Some([
        quantile(&latencies_ms, 0.5),
        quantile(&latencies_ms, 0.99),
        quantile(&latencies_ms, 0.999),
    ]);
    result
}

/// The sequence number of warm-up records, which are not measured.
const WARM_UP: u64 = u64::MAX;

/// How long one request of the request/reply case waits for its reply (the client's former
/// default).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Sends a warm-up record every 100 ms until the consumer side saw one: the consumer owns its
/// partitions and fetches, so what follows is measured in steady state.
///
/// The same producer then sends the measured records: a producer created after the warm-up
/// spent its first ~50 ms connecting and fetching the topic's metadata, and the ~50 records
/// queued meanwhile were the whole of the old p99.9 of ~45 ms (see BENCHMARKS.md).
async fn warm_up(
    args: &CaseArgs,
    producer: &LatencyProducer,
    warmed: &std::sync::atomic::AtomicBool,
) -> Result<(), String> {
    let payload = serde_json::to_vec(&Event::new(WARM_UP, now_us())).map_err(|e| e.to_string())?;
    for _ in 0..600 {
        if warmed.load(Ordering::Acquire) {
            return Ok(());
        }
        let record = FutureRecord::<(), [u8]>::to(&args.topic).payload(&payload[..]);
        producer
            .send(record, Duration::from_secs(5))
            .await
            .map_err(|(e, _)| e.to_string())?;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err("the consumer never saw a warm-up record".into())
}

/// Raw latency: a `BaseConsumer` thread records publish-to-receive time.
pub async fn raw_latency(args: &CaseArgs) -> Result<CaseResult, String> {
    let mut config = consumer_config(args);
    config
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "100");
    for (key, value) in latency_properties("BENCH_LATENCY_CONSUMER") {
        config.set(key, value);
    }
    let consumer: BaseConsumer = config.create().map_err(|e| e.to_string())?;
    consumer
        .subscribe(&[&args.topic])
        .map_err(|e| e.to_string())?;
    latency_through(args, consumer).await
}

/// Publishes paced `Event`s to the case's topic (after a warm-up) and returns the latencies
/// `consumer` sees: it reads them (or records carrying the same `Event`s) from whatever topic
/// it subscribed to, on a thread of its own.
pub(crate) async fn latency_through(
    args: &CaseArgs,
    consumer: BaseConsumer,
) -> Result<CaseResult, String> {
    let total = args.rate * args.seconds;
    let warmed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let receiver = std::thread::spawn({
        let warmed = Arc::clone(&warmed);
        move || {
            let mut latencies = Vec::with_capacity(total as usize);
            while (latencies.len() as u64) < total {
                if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
                    if let Ok(event) =
                        serde_json::from_slice::<Event>(message.payload().unwrap_or_default())
                    {
                        if event.seq == WARM_UP {
                            warmed.store(true, Ordering::Release);
                        } else {
                            latencies.push(Sample::new(
                                event.seq,
                                event.ts_us,
                                message.timestamp().to_millis(),
                            ));
                        }
                    }
                }
            }
            latencies
        }
    });
    let producer = latency_producer(args)?;
    warm_up(args, &producer, &warmed).await?;
    let producer = fresh_for_comparison(args, producer)?;
    let mark = Mark::now();
    send_paced(args, &producer).await?;
    let latencies = tokio::task::spawn_blocking(move || receiver.join().unwrap_or_default())
        .await
        .map_err(|e| e.to_string())?;
    Ok(latency_result(latencies, mark))
}

/// faststream latency: a subscriber records publish-to-handler time.
pub async fn fs_latency(args: &CaseArgs) -> Result<CaseResult, String> {
    type Latencies = Arc<Mutex<Vec<Sample>>>;
    let latencies: Latencies = Arc::new(Mutex::new(Vec::with_capacity(
        (args.rate * args.seconds) as usize,
    )));
    let progress = Progress::new(args.rate * args.seconds);
    let warmed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut broker = fs_broker(args).consumer_set("fetch.wait.max.ms", "100");
    for (key, value) in latency_properties("BENCH_LATENCY_CONSUMER") {
        broker = broker.consumer_set(key, value);
    }
    let app = FastStream::new(broker)
        .with_state(Arc::clone(&latencies))
        .with_state(Arc::clone(&progress))
        .with_state(Arc::clone(&warmed))
        .subscriber(
            SubscriberConfig::new("latency", [args.topic.as_str()])
                .group_id(format!("bench-{}", uuid::Uuid::new_v4().simple())),
            |latencies: State<Latencies>,
             progress: State<Arc<Progress>>,
             warmed: State<Arc<std::sync::atomic::AtomicBool>>,
             meta: Meta,
             event: Event| async move {
                if event.seq == WARM_UP {
                    warmed.store(true, Ordering::Release);
                } else {
                    latencies
                        .lock()
                        .map(|mut l| l.push(Sample::new(event.seq, event.ts_us, meta.timestamp)))
                        .ok();
                    progress.record();
                }
            },
        )
        .start()
        .await
        .map_err(|e| e.to_string())?;
    let producer = latency_producer(args)?;
    warm_up(args, &producer, &warmed).await?;
    let producer = fresh_for_comparison(args, producer)?;
    let mark = Mark::now();
    send_paced(args, &producer).await?;
    tokio::time::timeout(
        Duration::from_secs(args.seconds + 30),
        progress.done.notified(),
    )
    .await
    .map_err(|_| "not every record arrived".to_owned())?;
    let result = latency_result(
        std::mem::take(&mut *latencies.lock().map_err(|e| e.to_string())?),
        mark,
    );
    app.shutdown().await.map_err(|e| e.to_string())?;
    Ok(result)
}

/// Request/reply round trips, one after another: a faststream-rs subscriber answers each
/// request through `reply_to`, and `KafkaBroker::request` waits for the reply. Both sides
/// publish with `linger.ms=0` (a request is one record; batching would only add delay).
pub async fn fs_rpc(args: &CaseArgs) -> Result<CaseResult, String> {
    let low_latency = || {
        fs_broker(args)
            .producer_set("linger.ms", "0")
            .consumer_set("fetch.wait.max.ms", "10")
    };
    let responder = FastStream::new(low_latency())
        .subscriber(
            SubscriberConfig::new("echo", [args.topic.as_str()])
                .group_id(format!("bench-{}", uuid::Uuid::new_v4().simple())),
            |n: u64| async move { n },
        )
        .start()
        .await
        .map_err(|e| e.to_string())?;
    let client = low_latency();
    // Warm-up: the responder owns its partition and the reply reader is set up.
    for n in 0..20_u64 {
        let record = Record::encode(args.topic.as_str(), &n).map_err(|e| e.to_string())?;
        let _: u64 = client
            .request_as(record, REQUEST_TIMEOUT)
            .await
            .map_err(|e| e.to_string())?;
    }
    let mut latencies = Vec::with_capacity(args.messages as usize);
    let mark = Mark::now();
    for n in 0..args.messages {
        let record = Record::encode(args.topic.as_str(), &n).map_err(|e| e.to_string())?;
        let sent = std::time::Instant::now();
        let echoed: u64 = client
            .request_as(record, REQUEST_TIMEOUT)
            .await
            .map_err(|e| e.to_string())?;
        latencies.push(Sample {
            seq: n,
            ms: sent.elapsed().as_secs_f64() * 1000.0,
            sent_us: 0,
            kafka_ms: 0,
        });
        if echoed != n {
            return Err(format!("request {n} got the reply {echoed}"));
        }
    }
    let result = latency_result(latencies, mark);
    responder.shutdown().await.map_err(|e| e.to_string())?;
    Ok(result)
}

/// An idle app: one subscriber, nothing to consume; reports resident memory after a pause.
pub async fn fs_idle(args: &CaseArgs) -> Result<CaseResult, String> {
    let app = FastStream::new(fs_broker(args))
        .subscriber(
            SubscriberConfig::new("idle", [args.topic.as_str()])
                .group_id(format!("bench-{}", uuid::Uuid::new_v4().simple())),
            |_event: Event| async move {},
        )
        .start()
        .await
        .map_err(|e| e.to_string())?;
    tokio::time::sleep(Duration::from_secs(args.seconds.max(1))).await;
    let mut result = Mark::now().finish(0);
    result.peak_rss_kib = crate::measure::status_kib("VmRSS:");
    app.shutdown().await.map_err(|e| e.to_string())?;
    Ok(result)
}
