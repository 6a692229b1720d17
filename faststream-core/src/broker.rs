//! The seam between the broker-agnostic runtime and a broker backend (Kafka, in-memory...).
//!
//! A backend consumes and feeds each assigned partition to a worker the runtime spawns
//! ([`PartitionWorkers`]); the worker keeps order, runs the handler, publishes through the
//! backend's [`Publish`], and reports finished offsets back through [`OffsetStore`] as a
//! contiguous watermark.

use crate::error::{PublishError, Result};
use crate::message::{Headers, Message, TopicPartition};
use crate::subscriber::SubscriberConfig;
use bytes::Bytes;
use futures::future::BoxFuture;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A record to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Destination topic.
    pub topic: Arc<str>,
    /// Payload; `None` publishes a tombstone.
    pub payload: Option<Bytes>,
    /// Record key.
    pub key: Option<Bytes>,
    /// `content-type` header value, written first.
    pub content_type: Option<&'static str>,
    /// `correlation_id` header value.
    pub correlation_id: Option<Bytes>,
    /// Further headers.
    pub headers: Headers,
    /// Target partition; the partitioner chooses when `None`.
    pub partition: Option<i32>,
    /// Timestamp in milliseconds since the Unix epoch; the producer's clock when `None`.
    pub timestamp: Option<i64>,
}

impl Record {
    /// A record for `topic` with `payload` and nothing else set.
    pub fn new(topic: impl Into<Arc<str>>, payload: impl Into<Bytes>) -> Self {
        Self {
            topic: topic.into(),
            payload: Some(payload.into()),
            key: None,
            content_type: None,
            correlation_id: None,
            headers: Headers::new(),
            partition: None,
            timestamp: None,
        }
    }

    /// A record whose payload is `value` encoded by FastStream's rules (text, raw bytes or JSON),
    /// with the matching `content-type`.
    ///
    /// ```
    /// use faststream_core::Record;
    /// let record = Record::encode("users", &serde_json::json!({"user": "John", "user_id": 1})).unwrap();
    /// assert_eq!(record.content_type, Some("application/json"));
    /// assert_eq!(record.payload.as_deref(), Some(&br#"{"user":"John","user_id":1}"#[..]));
    /// ```
    pub fn encode<T: serde::Serialize + ?Sized>(
        topic: impl Into<Arc<str>>,
        value: &T,
    ) -> Result<Self> {
        let mut record = Self::new(topic, Bytes::new());
        match crate::codec::encode(value)? {
            crate::codec::Encoded::Body {
                payload,
                content_type,
            } => {
                record.payload = Some(payload);
                record.content_type = Some(content_type);
            }
            crate::codec::Encoded::Nothing => record.payload = None,
            crate::codec::Encoded::Failed(message) => {
                return Err(crate::codec::EncodeError(format!(
                    "cannot publish an Err value: {message}"
                ))
                .into())
            }
        }
        Ok(record)
    }

    /// Sets the key.
    pub fn key(mut self, key: impl Into<Bytes>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.headers.append(name, value);
        self
    }

    /// Sends to this partition.
    pub fn partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }

    /// Sets the timestamp (milliseconds since the Unix epoch).
    pub fn timestamp(mut self, timestamp: i64) -> Self {
        self.timestamp = Some(timestamp);
        self
    }

    /// Sets the correlation id (a new uuid is written when none is set).
    pub fn correlation_id(mut self, id: impl Into<Bytes>) -> Self {
        self.correlation_id = Some(id.into());
        self
    }

    /// Asks the consumer to publish its reply to `topic` (the `reply_to` header).
    pub fn reply_to(mut self, topic: impl Into<Bytes>) -> Self {
        self.headers.insert(crate::message::REPLY_TO, topic);
        self
    }
}

/// Where a published record landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// Topic.
    pub topic: Arc<str>,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
}

/// Publishing side of a backend: one shared producer, many sends in flight.
pub trait Publish: Clone + Send + Sync + 'static {
    /// Resolves when the broker acknowledged (or finally refused) one record.
    type Delivery: Future<Output = Result<Delivered, PublishError>> + Send + Unpin + 'static;

    /// Hands `record` to the producer. Waits only while the producer's queue is full; the
    /// returned future tracks the acknowledgement.
    fn enqueue(
        &self,
        record: Record,
    ) -> impl Future<Output = Result<Self::Delivery, PublishError>> + Send;

    /// Waits until every enqueued record was acknowledged, or `timeout` passed.
    fn flush(&self, timeout: Duration) -> impl Future<Output = Result<(), PublishError>> + Send;
}

/// Records that a partition's messages up to and including `offset` are done, so the
/// backend may commit past them.
pub trait OffsetStore: Send + Sync {
    /// Everything in `partition` up to `offset` (inclusive) was processed.
    fn store(&self, partition: &TopicPartition, offset: i64);
}

/// Spawns the runtime's worker for one assigned partition.
pub trait PartitionWorkers: Send + Sync {
    /// Starts consuming `messages` in order. When `stop` fires, the worker finishes the message
    /// in hand and the publishes in flight, stores their offsets, and ends.
    fn spawn(
        self: Arc<Self>,
        partition: TopicPartition,
        messages: mpsc::Receiver<Message>,
        offsets: Arc<dyn OffsetStore>,
        stop: CancellationToken,
    ) -> JoinHandle<()>;
}

/// How a subscription is stopped, handed to [`Broker::subscribe`].
#[derive(Debug, Clone)]
pub struct SubscribeOptions {
    /// Fires when the app shuts down: stop fetching, stop the partition workers (each
    /// finishes the message in hand and its publishes), commit, leave the group. A child of
    /// the app's root token; partition workers' tokens are children of it.
    pub stop: CancellationToken,
    /// How long the workers get to finish once `stop` fired, before they are cancelled.
    pub graceful_timeout: Duration,
    /// How long a revoke waits for the revoked partitions' workers before cancelling them.
    pub rebalance_timeout: Duration,
}

/// A running subscription, stopped through its [`SubscribeOptions::stop`] token.
pub trait Subscription: Send {
    /// Resolves once the subscription stopped after its token fired: workers finished (or
    /// were cancelled after the graceful timeout), finished offsets committed, group left.
    fn finished(self: Box<Self>) -> BoxFuture<'static, ()>;
}

/// A message broker backend.
pub trait Broker: Send + Sync + 'static {
    /// The backend's publisher.
    type Publisher: Publish;

    /// The shared publisher (created on first use).
    fn publisher(&self) -> Result<Self::Publisher>;

    /// Starts consuming for one subscriber, feeding partitions to `workers`, until
    /// `options.stop` fires.
    fn subscribe(
        &self,
        config: Arc<SubscriberConfig>,
        workers: Arc<dyn PartitionWorkers>,
        options: SubscribeOptions,
    ) -> impl Future<Output = Result<Box<dyn Subscription>>> + Send;

    /// Checks that the broker answers, naming the address tried when it does not.
    fn ping(&self, timeout: Duration) -> impl Future<Output = Result<()>> + Send;
}
