//! Topic set-up for the benchmark: creation, pre-filling, and counting records.

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message as _;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use std::sync::Arc;
use std::time::Duration;

/// The benchmark's record: about 100 bytes of JSON.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct Event {
    /// User name.
    pub user: String,
    /// User id.
    pub user_id: i64,
    /// What happened.
    pub action: String,
    /// Send time, microseconds since the Unix epoch (latency cases).
    pub ts_us: i64,
    /// Sequence number.
    pub seq: u64,
}

impl Event {
    /// The `seq`-th record.
    pub fn new(seq: u64, ts_us: i64) -> Self {
        Self {
            user: format!("user-{:06}", seq % 1_000_000),
            user_id: (seq % 1_000_000) as i64,
            action: "registered".to_owned(),
            ts_us,
            seq,
        }
    }
}

/// Microseconds since the Unix epoch.
pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or_default()
}

/// Creates a topic with `partitions` partitions.
pub async fn create_topic(bootstrap: &str, name: &str, partitions: i32) -> Result<(), String> {
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

/// A fresh output topic name for a measurement; created (with `partitions` partitions) only for
/// pipelines, the measurements that write to it.
pub fn output_topic(
    runtime: &tokio::runtime::Runtime,
    bootstrap: &str,
    section: &str,
    partitions: i32,
) -> Result<String, String> {
    let output = format!("bench-out-{}", uuid::Uuid::new_v4().simple());
    if section == "pipeline" {
        runtime.block_on(create_topic(bootstrap, &output, partitions))?;
    }
    Ok(output)
}

/// Writes `count` records round-robin over `partitions` as fast as the producer allows.
/// Returns the payload bytes written.
pub fn prefill(bootstrap: &str, topic: &str, partitions: i32, count: u64) -> Result<u64, String> {
    prefill_with(bootstrap, topic, partitions, count, |seq| {
        serde_json::to_vec(&Event::new(seq, 0)).map_err(|e| e.to_string())
    })
}

/// [`prefill`] with the same events in MessagePack (maps with field names, as the
/// `MessagePack` codec writes them), for the MessagePack drain row.
pub fn prefill_msgpack(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    count: u64,
) -> Result<u64, String> {
    prefill_with(bootstrap, topic, partitions, count, |seq| {
        rmp_serde::to_vec_named(&Event::new(seq, 0)).map_err(|e| e.to_string())
    })
}

/// [`prefill`] with the payload of record `seq` made by `payload` (the sweep pads records).
pub fn prefill_with(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    count: u64,
    payload: impl FnMut(u64) -> Result<Vec<u8>, String>,
) -> Result<u64, String> {
    prefill_keyed(bootstrap, topic, partitions, count, payload, |_| None)
}

/// [`prefill_with`], record `seq` keyed `key(seq)` (the lanes table's distinct and skewed keys).
pub fn prefill_keyed(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    count: u64,
    mut payload: impl FnMut(u64) -> Result<Vec<u8>, String>,
    key: impl Fn(u64) -> Option<String>,
) -> Result<u64, String> {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "1000000")
        .set("compression.type", "none")
        .create()
        .map_err(|e| e.to_string())?;
    let mut bytes = 0;
    for seq in 0..count {
        let payload = payload(seq)?;
        bytes += payload.len() as u64;
        let partition = (seq % partitions as u64) as i32;
        let key = key(seq);
        let mut record: BaseRecord<'_, str, [u8]> = BaseRecord::to(topic)
            .payload(&payload[..])
            .partition(partition);
        if let Some(key) = &key {
            record = record.key(key.as_str());
        }
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((err, _)) => return Err(err.to_string()),
            }
        }
    }
    // Large sweep cells write up to a gigabyte.
    producer
        .flush(Duration::from_secs(300))
        .map_err(|e| e.to_string())?;
    Ok(bytes)
}

/// Records written to `topic` so far (sum of high watermarks).
pub fn records_in(consumer: &BaseConsumer, topic: &str, partitions: i32) -> i64 {
    (0..partitions)
        .map(|p| {
            consumer
                .fetch_watermarks(topic, p, Duration::from_secs(5))
                .map(|(_, high)| high)
                .unwrap_or(0)
        })
        .sum()
}

/// A consumer used only for metadata and watermark queries.
pub fn metadata_client(bootstrap: &str) -> Result<BaseConsumer, String> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .map_err(|e| e.to_string())
}

/// Checks the broker answers; returns its version string when it can tell.
pub fn ping(bootstrap: &str) -> Result<(), String> {
    let client = metadata_client(bootstrap)?;
    client
        .fetch_metadata(None, Duration::from_secs(10))
        .map(|_| ())
        .map_err(|e| format!("cannot reach Kafka at {bootstrap}: {e}"))
}

/// Polls a consumer's main queue, which serves the group's events (rebalances, commits) once
/// every partition was split from it: a record arriving there is of a partition that was not
/// split, which the cases' topics do not have, and fails the case.
pub(crate) async fn serve_main_queue<C: ConsumerContext + 'static>(
    consumer: Arc<StreamConsumer<C>>,
) -> Result<(), String> {
    let message = consumer.recv().await.map_err(|e| e.to_string())?;
    Err(format!(
        "a record of partition {} reached the main queue",
        message.partition()
    ))
}

/// Why a task of a case's task set ended before the case did: a partition's or the main
/// queue's task never ends while the case runs.
pub(crate) fn why_ended(ended: Result<Result<(), String>, tokio::task::JoinError>) -> String {
    match ended {
        Ok(Err(err)) => err,
        Ok(Ok(())) => "a partition task ended".to_owned(),
        Err(err) => err.to_string(),
    }
}
