//! The multi-threaded raw rdkafka pipeline: the honest limit for the pipeline rows.
//!
//! Written the way one would by hand for throughput with the same at-least-once guarantee as
//! the single-threaded raw pipeline (`cases::raw_pipeline`):
//!
//! - the consumer's partition queues are split (`StreamConsumer::split_partition_queue`), one
//!   tokio task per input partition, so decoding and formatting run on every worker thread;
//! - records are produced with a `ThreadedProducer` whose delivery callback carries the input
//!   partition and offset in its opaque (a `usize`: no boxed future, no channel per record),
//!   so nothing waits for a delivery;
//! - each input partition keeps a FIFO of its in-flight offsets; a delivery marks its entry and
//!   pops the acknowledged prefix, so an offset becomes storable only when its output and every
//!   earlier one of that partition are acknowledged;
//! - a background task hands the storable offsets to librdkafka every 10 ms in one
//!   `store_offsets` call, and librdkafka's auto-commit commits them.
//!
//! The producer's configuration and the records it writes (payload, `content-type` and a uuid4
//! `correlation_id` header) are the single-threaded raw pipeline's.

use crate::cases::{consumer_config, greeting, wait_for_output, CaseArgs, CountFromAssignment};
use crate::kafka::Event;
use crate::measure::{CaseResult, Mark};
use futures::StreamExt;
use rdkafka::consumer::stream_consumer::StreamPartitionQueue;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message as _;
use rdkafka::producer::{BaseRecord, DeliveryResult, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// Bits of the delivery opaque that hold the input offset; the input partition's index sits
/// above them. 48 bits of offset are far more than a benchmark topic holds.
const OFFSET_BITS: u32 = 48;
const OFFSET_MASK: usize = (1 << OFFSET_BITS) - 1;

/// One input partition's in-flight records, oldest first.
#[derive(Default)]
struct Fifo {
    /// `(offset, acknowledged)`; offsets increase from front to back.
    in_flight: VecDeque<(i64, bool)>,
}

/// Per input partition: the FIFO, and the next offset to commit (-1 while none is storable).
struct PartitionTrack {
    fifo: Mutex<Fifo>,
    storable: AtomicI64,
}

/// Shared between the partition tasks, the producer's delivery callback and the offset task.
struct Tracks {
    partitions: Vec<PartitionTrack>,
    failed: AtomicBool,
}

impl Tracks {
    fn new(partitions: i32) -> Arc<Self> {
        Arc::new(Self {
            partitions: (0..partitions.max(0))
                .map(|_| PartitionTrack {
                    fifo: Mutex::default(),
                    storable: AtomicI64::new(-1),
                })
                .collect(),
            failed: AtomicBool::new(false),
        })
    }

    /// Records that `offset` of `partition` was sent (before its delivery can arrive).
    fn sent(&self, partition: usize, offset: i64) {
        if let Some(track) = self.partitions.get(partition) {
            if let Ok(mut fifo) = track.fifo.lock() {
                fifo.in_flight.push_back((offset, false));
            }
        }
    }

    /// Records the acknowledgement of `offset` of `partition`, and moves the partition's
    /// storable offset past the acknowledged prefix of its FIFO.
    fn acknowledged(&self, partition: usize, offset: i64) {
        let Some(track) = self.partitions.get(partition) else {
            return;
        };
        let Ok(mut fifo) = track.fifo.lock() else {
            return;
        };
        // Deliveries of one partition's records mostly arrive in order: look at the front first.
        let index = match fifo.in_flight.front() {
            Some((front, _)) if *front == offset => Some(0),
            _ => fifo
                .in_flight
                .binary_search_by_key(&offset, |(o, _)| *o)
                .ok(),
        };
        if let Some(entry) = index.and_then(|i| fifo.in_flight.get_mut(i)) {
            entry.1 = true;
        }
        let mut next = None;
        while let Some(&(front, true)) = fifo.in_flight.front() {
            next = Some(front + 1);
            fifo.in_flight.pop_front();
        }
        if let Some(next) = next {
            track.storable.store(next, Ordering::Release);
        }
    }
}

/// The producer's context: deliveries update the input partition's FIFO.
struct Deliveries(Arc<Tracks>);

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, opaque: usize) {
        if result.is_err() {
            // The case fails: an output that was not written must not have its input committed.
            self.0.failed.store(true, Ordering::Release);
            return;
        }
        self.0
            .acknowledged(opaque >> OFFSET_BITS, (opaque & OFFSET_MASK) as i64);
    }
}

/// Hands the storable offsets to librdkafka every 10 ms (its auto-commit commits them).
async fn store_offsets(
    consumer: Arc<StreamConsumer<CountFromAssignment>>,
    tracks: Arc<Tracks>,
    topic: String,
) -> Result<(), String> {
    let mut stored = vec![-1_i64; tracks.partitions.len()];
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    loop {
        tick.tick().await;
        let mut list = TopicPartitionList::new();
        for (partition, track) in tracks.partitions.iter().enumerate() {
            let next = track.storable.load(Ordering::Acquire);
            if next > stored[partition] {
                list.add_partition_offset(&topic, partition as i32, Offset::Offset(next))
                    .map_err(|e| e.to_string())?;
                stored[partition] = next;
            }
        }
        if list.count() > 0 {
            consumer.store_offsets(&list).map_err(|e| e.to_string())?;
        }
    }
}

/// Consumes one input partition: decode, format, send, and track the offset.
async fn partition_task(
    queue: StreamPartitionQueue<CountFromAssignment>,
    producer: Arc<ThreadedProducer<Deliveries>>,
    tracks: Arc<Tracks>,
    start: Arc<OnceLock<Mark>>,
    output: String,
    index: usize,
) -> Result<(), String> {
    // One stream for the task's life: a stream registers a waker slot when created.
    let mut stream = queue.stream();
    while let Some(message) = stream.next().await {
        let message = message.map_err(|e| e.to_string())?;
        start.get_or_init(Mark::now);
        let event: Event = serde_json::from_slice(message.payload().unwrap_or_default())
            .map_err(|e| e.to_string())?;
        let offset = message.offset();
        // The record is copied out by librdkafka on send; release the input message first.
        drop(message);
        let text = greeting(&event);
        let headers = crate::cases::wire_headers();
        // Tracked before sending: the delivery may arrive before `send` returns.
        tracks.sent(index, offset);
        let mut record = BaseRecord::<(), str, usize>::with_opaque_to(
            &output,
            (index << OFFSET_BITS) | (offset as usize & OFFSET_MASK),
        )
        .payload(&text)
        .headers(headers);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err((err, _)) => return Err(err.to_string()),
            }
        }
    }
    Ok(())
}

/// Runs the multi-threaded raw pipeline until the output topic holds every record.
pub async fn raw_pipeline_mt(args: &CaseArgs) -> Result<CaseResult, String> {
    // Under callgrind, counted from the assignment, as the other cases (`CountFromAssignment`).
    let consumer: Arc<StreamConsumer<CountFromAssignment>> = Arc::new(
        consumer_config(args)
            .set("enable.auto.commit", "true")
            .set("enable.auto.offset.store", "false")
            .create_with_context(CountFromAssignment)
            .map_err(|e| e.to_string())?,
    );
    let tracks = Tracks::new(args.partitions);
    // The same producer configuration as the single-threaded raw pipeline.
    let producer: Arc<ThreadedProducer<Deliveries>> = Arc::new(
        crate::cases::raw_producer_config(args)
            .create_with_context(Deliveries(Arc::clone(&tracks)))
            .map_err(|e| e.to_string())?,
    );
    consumer
        .subscribe(&[&args.topic])
        .map_err(|e| e.to_string())?;
    let start: Arc<OnceLock<Mark>> = Arc::default();
    let mut tasks = tokio::task::JoinSet::new();
    // Split every partition before the main queue is first polled, so that no record of a
    // split partition is delivered through the main queue.
    for partition in 0..args.partitions {
        let queue = consumer
            .split_partition_queue(&args.topic, partition)
            .ok_or_else(|| format!("cannot split partition {partition}"))?;
        tasks.spawn(partition_task(
            queue,
            Arc::clone(&producer),
            Arc::clone(&tracks),
            Arc::clone(&start),
            args.output.clone(),
            partition as usize,
        ));
    }
    tasks.spawn(crate::kafka::serve_main_queue(Arc::clone(&consumer)));
    tasks.spawn(store_offsets(
        Arc::clone(&consumer),
        Arc::clone(&tracks),
        args.topic.clone(),
    ));
    tokio::select! {
        waited = wait_for_output(args) => waited?,
        Some(ended) = tasks.join_next() => return Err(crate::kafka::why_ended(ended)),
    }
    let result = start.get().ok_or("no records")?.finish(args.messages);
    if tracks.failed.load(Ordering::Acquire) {
        return Err("a publish failed".into());
    }
    // Outside the measured section: the guarantee is checked, not assumed. Every input offset
    // must become storable, and once committed the group's offsets are the input's ends.
    let check = Arc::clone(&consumer);
    let (topic, partitions) = (args.topic.clone(), args.partitions);
    tokio::task::spawn_blocking(move || committed_to_end(&check, &tracks, &topic, partitions))
        .await
        .map_err(|e| e.to_string())??;
    tasks.abort_all();
    Ok(result)
}

/// Waits (up to 10 s) until every partition's storable offset reaches its high watermark,
/// commits synchronously, and checks the committed offsets.
fn committed_to_end(
    consumer: &StreamConsumer<CountFromAssignment>,
    tracks: &Tracks,
    topic: &str,
    partitions: i32,
) -> Result<(), String> {
    let mut ends = Vec::new();
    for partition in 0..partitions {
        let (_, high) = consumer
            .fetch_watermarks(topic, partition, Duration::from_secs(5))
            .map_err(|e| e.to_string())?;
        ends.push(high);
    }
    let reached = || {
        tracks
            .partitions
            .iter()
            .zip(&ends)
            .all(|(track, &end)| track.storable.load(Ordering::Acquire) >= end)
    };
    for _ in 0..200 {
        if reached() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if !reached() {
        return Err("not every input offset became storable".into());
    }
    // The offset task stores within 10 ms of an offset becoming storable.
    std::thread::sleep(Duration::from_millis(50));
    match consumer.commit_consumer_state(CommitMode::Sync) {
        // Auto-commit got there first: nothing stored is left to commit.
        Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
        Err(err) => return Err(err.to_string()),
    }
    let committed = consumer
        .committed(Duration::from_secs(5))
        .map_err(|e| e.to_string())?;
    for (partition, &end) in ends.iter().enumerate() {
        let offset = committed
            .find_partition(topic, partition as i32)
            .map(|e| e.offset());
        if offset != Some(Offset::Offset(end)) {
            return Err(format!(
                "partition {partition}: committed {offset:?}, expected {end}"
            ));
        }
    }
    Ok(())
}
