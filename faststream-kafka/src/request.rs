//! Request/reply on Kafka: one reply topic per broker handle, read by one thread that every
//! request shares; a reply finds its request by correlation id.

use crate::admin::{self, SETUP_TIMEOUT};
use crate::config::BrokerSettings;
use crate::consumer::to_message;
use crate::context::KafkaContext;
use crate::error;
use crate::record_bytes::RecordBytes;
use faststream_core::message::CORRELATION_ID;
use faststream_core::{Error, ErrorClass, Message, Result};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message as _;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;

/// Requests waiting for their reply, by correlation id.
type Pending = Mutex<HashMap<String, oneshot::Sender<Message>>>;

/// The reply topic and the thread reading it. Dropping it stops the thread.
pub(crate) struct ReplyReader {
    topic: Arc<str>,
    pending: Arc<Pending>,
    stop: Arc<AtomicBool>,
}

impl Drop for ReplyReader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

impl ReplyReader {
    /// Creates `topic` if it is missing (one partition, the cluster's default replication),
    /// starts reading it from its current end, and returns once reading is set up, so no
    /// reply to a request sent afterwards can be missed.
    pub(crate) async fn start(settings: &BrokerSettings, topic: String) -> Result<Self> {
        admin::create_reply_topic(settings, &topic).await?;
        let context = settings.context();
        let consumer: BaseConsumer<KafkaContext> = settings
            .reader_config()
            .create_with_context(context.clone())
            .map_err(|err| error::config(format!("cannot create the reader of `{topic}`"), err))?;
        let name = topic.clone();
        let consumer = tokio::task::spawn_blocking(move || {
            context.prime_oauth_token(consumer.client());
            assign_at_end(consumer, &name)
        })
        .await
        .map_err(|err| error::task_failed("reply reader set-up failed", err))??;
        let topic: Arc<str> = Arc::from(topic);
        let pending: Arc<Pending> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (thread_topic, thread_pending, thread_stop) =
            (Arc::clone(&topic), Arc::clone(&pending), Arc::clone(&stop));
        std::thread::Builder::new()
            .name("fs-replies".into())
            .spawn(move || read_replies(&consumer, &thread_topic, &thread_pending, &thread_stop))
            .map_err(Error::Io)?;
        Ok(Self {
            topic,
            pending,
            stop,
        })
    }

    /// The reply topic.
    pub(crate) fn topic(&self) -> &Arc<str> {
        &self.topic
    }

    /// Waits for the reply with `correlation_id` (register before sending the request).
    pub(crate) fn expect(&self, correlation_id: &str) -> oneshot::Receiver<Message> {
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(correlation_id.to_owned(), tx);
        rx
    }

    /// Stops waiting for `correlation_id` (timed out or failed to send).
    pub(crate) fn forget(&self, correlation_id: &str) {
        lock(&self.pending).remove(correlation_id);
    }
}

fn lock(pending: &Pending) -> std::sync::MutexGuard<'_, HashMap<String, oneshot::Sender<Message>>> {
    // A poisoned lock only means a panic elsewhere; the map stays consistent.
    pending
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Assigns every partition of `topic` at its current end.
fn assign_at_end(
    consumer: BaseConsumer<KafkaContext>,
    topic: &str,
) -> Result<BaseConsumer<KafkaContext>> {
    let deadline = std::time::Instant::now() + SETUP_TIMEOUT;
    // A topic just created may take a moment to show its partitions with leaders.
    let partitions = loop {
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(5))
            .map_err(|err| error::broker(format!("cannot read the metadata of `{topic}`"), err))?;
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .filter(|t| t.name() == topic && t.error().is_none())
            .flat_map(|t| {
                t.partitions()
                    .iter()
                    .filter(|p| p.leader() >= 0)
                    .map(|p| p.id())
            })
            .collect();
        if !partitions.is_empty() {
            break partitions;
        }
        if std::time::Instant::now() > deadline {
            return Err(Error::broker_msg(
                format!("the reply topic `{topic}` has no partitions"),
                ErrorClass::Retriable,
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut assignment = TopicPartitionList::new();
    for partition in partitions {
        let (_, high) = consumer
            .fetch_watermarks(topic, partition, Duration::from_secs(10))
            .map_err(|err| error::broker(format!("cannot read the end of `{topic}`"), err))?;
        assignment
            .add_partition_offset(topic, partition, Offset::Offset(high))
            .map_err(|err| error::broker(format!("cannot assign a partition of `{topic}`"), err))?;
    }
    consumer
        .assign(&assignment)
        .map_err(|err| error::broker(format!("cannot read `{topic}`"), err))?;
    Ok(consumer)
}

fn read_replies(
    consumer: &BaseConsumer<KafkaContext>,
    topic: &Arc<str>,
    pending: &Pending,
    stop: &AtomicBool,
) {
    while !stop.load(Ordering::Acquire) {
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Err(err)) => tracing::warn!("reading replies from `{topic}`: {err}"),
            Some(Ok(record)) => {
                let reply = to_message(topic, &record, &mut RecordBytes::detached());
                let id = reply.headers.get_str(CORRELATION_ID).map(str::to_owned);
                let waiter = id.as_deref().and_then(|id| lock(pending).remove(id));
                match waiter {
                    // The requester may have given up meanwhile: nothing to do then.
                    Some(waiter) => drop(waiter.send(reply)),
                    None => tracing::debug!(
                        "reply {topic}[{}]@{} matches no waiting request ({id:?})",
                        record.partition(),
                        record.offset()
                    ),
                }
            }
        }
    }
}
