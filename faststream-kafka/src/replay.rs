//! Replaying a dead-letter topic into the topics its records came from.

use crate::config::BrokerSettings;
use crate::context::KafkaContext;
use crate::error;
use crate::fetched_headers;
use crate::producer::KafkaPublisher;
use crate::record_bytes::RecordBytes;
use bytes::Bytes;
use faststream_core::broker::{ReplayReport, DLT_HEADER_PREFIX, DLT_ORIGINAL_TOPIC};
use faststream_core::message::CORRELATION_ID;
use faststream_core::{Error, ErrorClass, Headers, Publish, Record, Result};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message as _;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// A reader of the dead-letter topic.
type Reader = BaseConsumer<KafkaContext>;

/// How long the replay waits for the broker at each step.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Reads `topic` from the beginning up to its end as of now (no consumer group, nothing
/// committed) and publishes each dead letter to its original topic, unless `dry_run`.
pub(crate) async fn replay(
    settings: &BrokerSettings,
    publisher: KafkaPublisher,
    topic: &str,
    dry_run: bool,
) -> Result<ReplayReport> {
    let context = settings.context();
    let consumer: Reader = settings
        .reader_config()
        .create_with_context(context.clone())
        .map_err(|err| error::config(format!("cannot create a reader of `{topic}`"), err))?;
    let owned = topic.to_owned();
    let (consumer, ends) = tokio::task::spawn_blocking(move || {
        context.prime_oauth_token(consumer.client());
        assign_to_end(consumer, &owned)
    })
    .await
    .map_err(|err| error::task_failed("replay task failed", err))??;
    let mut report = ReplayReport::default();
    let mut deliveries = Vec::new();
    let ends: HashMap<i32, i64> = ends.into_iter().collect();
    let mut remaining: HashMap<i32, i64> = ends
        .iter()
        .filter(|(_, end)| **end > 0)
        .map(|(p, e)| (*p, *e))
        .collect();
    let deadline = Instant::now() + TIMEOUT;
    while !remaining.is_empty() {
        if Instant::now() > deadline {
            return Err(Error::broker_msg(
                format!(
                    "reading `{topic}` timed out with {remaining:?} records' worth of offsets left"
                ),
                ErrorClass::Retriable,
            ));
        }
        let record = match consumer.poll(Duration::from_millis(100)) {
            None => continue,
            Some(Err(err)) => return Err(error::broker(format!("reading `{topic}`"), err)),
            Some(Ok(record)) => record,
        };
        let partition = record.partition();
        if ends
            .get(&partition)
            .is_none_or(|end| record.offset() >= *end)
        {
            // Written after the replay started: not part of this replay.
            continue;
        }
        if let Some(end) = remaining.get(&partition) {
            if record.offset() + 1 >= *end {
                remaining.remove(&partition);
            }
        }
        let mut original = None;
        let mut correlation_id = None;
        let mut headers = Headers::new();
        for (name, value) in fetched_headers::read(&record, &mut RecordBytes::detached()).iter() {
            if name == DLT_ORIGINAL_TOPIC {
                original = String::from_utf8(value.to_vec()).ok();
            } else if name == CORRELATION_ID {
                correlation_id = Some(value.clone());
            } else if !name.starts_with(DLT_HEADER_PREFIX) {
                headers.append(name, value.clone());
            }
        }
        let Some(original) = original.filter(|t| !t.is_empty()) else {
            report.skipped += 1;
            continue;
        };
        *report.replayed.entry(original.clone()).or_default() += 1;
        if dry_run {
            continue;
        }
        let replayed = Record {
            topic: original.into(),
            payload: Some(Bytes::copy_from_slice(record.payload().unwrap_or_default())),
            key: record.key().map(Bytes::copy_from_slice),
            content_type: None,
            correlation_id,
            headers,
            partition: None,
            timestamp: None,
        };
        deliveries.push(publisher.enqueue(replayed).await?);
    }
    for delivery in deliveries {
        delivery.await?;
    }
    Ok(report)
}

/// Assigns every partition of `topic` from its start; returns each partition's end offset.
fn assign_to_end(consumer: Reader, topic: &str) -> Result<(Reader, Vec<(i32, i64)>)> {
    let metadata = consumer
        .fetch_metadata(Some(topic), TIMEOUT)
        .map_err(|err| error::broker(format!("cannot read the metadata of `{topic}`"), err))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        return Err(Error::config_msg(format!(
            "no topic `{topic}` on the broker"
        )));
    }
    let mut assignment = TopicPartitionList::new();
    let mut ends = Vec::with_capacity(partitions.len());
    for partition in partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, partition, TIMEOUT)
            .map_err(|err| error::broker(format!("cannot read the end of `{topic}`"), err))?;
        assignment
            .add_partition_offset(topic, partition, Offset::Offset(low))
            .map_err(|err| error::broker(format!("cannot assign a partition of `{topic}`"), err))?;
        ends.push((partition, if high > low { high } else { 0 }));
    }
    consumer
        .assign(&assignment)
        .map_err(|err| error::broker(format!("cannot read `{topic}`"), err))?;
    Ok((consumer, ends))
}
