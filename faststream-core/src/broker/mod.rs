//! The seam between the broker-agnostic runtime and a broker backend (Kafka, in-memory...).
//!
//! A backend consumes and feeds each assigned partition to a worker the runtime spawns
//! ([`PartitionWorkers`]); the worker keeps order, runs the handler, publishes through the
//! backend's [`Publish`], and reports finished offsets back through [`OffsetStore`] as a
//! contiguous watermark.
//!
//! # The backend kit
//!
//! What every backend does the same way, so that the in-memory `TestBroker` behaves as Kafka
//! by construction rather than by a copy kept in step by hand:
//! - supervision: [`WorkerSet`] stops a set of partition workers, waits up to a timeout, and
//!   aborts (and names) those that did not finish;
//! - where an explicitly assigned partition starts: [`StartFrom::resolve`](crate::StartFrom::resolve)
//!   into a [`StartPosition`];
//! - the order headers are written in on publish: [`outgoing_headers`];
//! - the queue from the backend to each partition worker: [`partition_queue`];
//! - the memory budget held around each record from fetch until its worker has it: [`Held`],
//!   releasing on drop what was not handed over;
//! - retry topics: a retry record's headers and when it is due ([`retry`]), the
//!   [`RetryTopic`]s the app asks a backend to create ([`Broker::create_retry_topics`]).

mod budget;
mod exactly_once;
mod headers;
mod queue;
pub mod retry;
mod start;
mod transaction;
mod workers;

pub use budget::{BufferBudget, Held};
pub(crate) use exactly_once::in_transaction;
pub use exactly_once::{refuse_request, ExactlyOnce, MemberTransactions, TransactionOffset};
pub use headers::{outgoing_headers, OutgoingHeaders};
pub use queue::{partition_queue, QueueReceiver, QueueSender, TryRecvError, TrySendError};
pub use retry::RetryTopic;
pub use start::StartPosition;
pub use transaction::{OpenTransaction, Transaction};
pub use workers::WorkerSet;

pub use crate::message::record::{Delivered, Record};

use crate::config::subscriber::SubscriberConfig;
use crate::error::{PublishError, Result};
pub use crate::health::{ConnectionHealth, PartitionHealth, SubscriptionHealth};
use crate::message::seek::SeekPartitions;
use crate::message::{Message, TopicPartition};
use futures::future::BoxFuture;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Publishes `records` as one batch: every record is handed to `publisher` before any
/// acknowledgement is awaited (so the producer sends them together), then every
/// acknowledgement is awaited. Returns where each record landed, in order; the first refusal
/// is the error (the other records may have been written).
pub async fn publish_batch<P: Publish>(
    publisher: &P,
    records: impl IntoIterator<Item = Record>,
) -> Result<Vec<Delivered>, PublishError> {
    let mut deliveries = Vec::new();
    for record in records {
        deliveries.push(publisher.enqueue(record).await?);
    }
    let mut delivered = Vec::with_capacity(deliveries.len());
    for delivery in deliveries {
        delivered.push(delivery.await?);
    }
    Ok(delivered)
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

    /// [`store`](OffsetStore::store), with `metadata` committed alongside (Kafka's offset
    /// commit metadata): a partition with lanes names there the records above `offset` it
    /// already finished, so that a restart skips them. A backend without metadata stores the
    /// offset alone.
    fn store_with_metadata(&self, partition: &TopicPartition, offset: i64, metadata: &str) {
        let _ = metadata;
        self.store(partition, offset);
    }

    /// The metadata committed with `partition`'s committed offset, if any. Read once when a
    /// partition with lanes starts; it may block for a round trip to the broker.
    fn committed_metadata(&self, partition: &TopicPartition) -> Option<String> {
        let _ = partition;
        None
    }
}

/// Spawns the runtime's worker for one assigned partition.
pub trait PartitionWorkers: Send + Sync {
    /// Starts consuming `messages` in order. When `stop` fires, the worker finishes the message
    /// in hand and the publishes in flight, stores their offsets, and ends.
    fn spawn(
        self: Arc<Self>,
        partition: TopicPartition,
        messages: QueueReceiver,
        offsets: Arc<dyn OffsetStore>,
        stop: CancellationToken,
    ) -> JoinHandle<()>;

    /// The subscriber's memory budget: the backend holds each record's bytes against it and
    /// stops fetching while it is full.
    fn buffer(&self) -> &Arc<BufferBudget>;

    /// An exactly-once subscriber's commit before a revoke completes, and at its stop: once
    /// the workers of the partitions going away finished (they stored their watermarks), the
    /// open transaction is committed at a barrier over the other workers, with every
    /// partition's watermark; or, if that fails, aborted and its partitions rewound. `None`
    /// for every other subscriber: the backend commits its stored offsets itself.
    fn commit_open_transaction(&self) -> Option<BoxFuture<'static, Result<()>>> {
        None
    }
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

    /// How to move this subscription's partitions ([`crate::seek`]), when the backend can.
    fn seeker(&self) -> Option<Arc<dyn SeekPartitions>> {
        None
    }

    /// What the backend knows of the subscription now: assignment, lag, failure.
    fn health(&self) -> SubscriptionHealth {
        SubscriptionHealth {
            joined: true,
            ..SubscriptionHealth::default()
        }
    }
}

/// A message broker: what an app consumes from, and the one publishing API of every broker
/// (`KafkaBroker`, the testing `TestBroker`, yours), with the same signatures on each.
///
/// Publishing, from anywhere (a `main`, a test, a handler holding a clone of the broker):
/// - [`publish`](Broker::publish) a value to a topic (Python FastStream's
///   `broker.publish(message, topic)`), [`publish_record`](Broker::publish_record) a
///   [`Record`] (key, headers, partition...), [`publish_batch`](Broker::publish_batch);
/// - [`publish_nowait`](Broker::publish_nowait) and [`flush`](Broker::flush) for throughput;
/// - [`request`](Broker::request) and [`request_as`](Broker::request_as) for RPC over
///   `reply_to`, each with its timeout.
///
/// These are provided methods (over [`Broker::publisher`] and [`Broker::request`]): a backend
/// implements [`publisher`](Broker::publisher), [`subscribe`](Broker::subscribe) and
/// [`ping`](Broker::ping), and `request` when it can read replies. Bring the trait into scope
/// to call them (`use faststream::Broker;`).
///
/// ```no_run
/// use faststream_core::{Broker, Record};
/// use std::time::Duration;
///
/// // Works the same on `KafkaBroker` and `TestBroker`.
/// async fn client(broker: impl Broker) -> faststream_core::Result<()> {
///     broker.publish(serde_json::json!({"user": "John", "user_id": 1}), "users").await?;
///     let landed = broker.publish_record(Record::encode("users", "Ann")?.key("u-2")).await?;
///     println!("partition {} offset {}", landed.partition, landed.offset);
///     broker.publish_batch((0..3).map(|i| Record::new("numbers", i.to_string()))).await?;
///     let squared: i64 = broker.request_as(Record::encode("square", &7)?, Duration::from_secs(5)).await?;
///     Ok(())
/// }
/// ```
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

    /// Whether the backend's producer reaches the broker now.
    fn connection(&self) -> ConnectionHealth {
        ConnectionHealth::default()
    }

    /// Resolves when the backend hit an error it cannot recover from (an authentication
    /// failure, a fatal idempotent-producer state...), with its cause: the app must stop.
    /// Never resolves by default.
    fn fatal_error(&self) -> BoxFuture<'static, String> {
        Box::pin(futures::future::pending())
    }

    /// Checks that the broker answers, naming the address tried when it does not.
    fn ping(&self, timeout: Duration) -> impl Future<Output = Result<()>> + Send;

    /// Publishes `value` to `topic`, encoded as handlers' return values are (FastStream's rules:
    /// `String` as text, `bytes::Bytes` raw, the rest JSON), and waits for the broker's
    /// acknowledgement: where it landed. A `correlation_id` header (a new uuid) is written.
    fn publish(
        &self,
        value: impl serde::Serialize,
        topic: impl Into<Arc<str>>,
    ) -> impl Future<Output = Result<Delivered>> + Send {
        // Encoded before the future, so the value need not be `Send`.
        let record = Record::encode(topic, &value);
        async move { self.publish_record(record?).await }
    }

    /// Publishes `record` (key, headers, partition, correlation id, `reply_to`...) and waits
    /// for the broker's acknowledgement: where it landed. A `correlation_id` header (a new
    /// uuid unless set) is always written.
    fn publish_record(&self, record: Record) -> impl Future<Output = Result<Delivered>> + Send {
        async move {
            let delivery = self.publisher()?.enqueue(record).await?;
            Ok(delivery.await?)
        }
    }

    /// Publishes `records` as one batch (FastStream's `publish_batch`): all are handed to the
    /// producer before any acknowledgement is awaited, then every acknowledgement is awaited.
    /// Where each landed, in order; the first refusal is the error (the other records may
    /// have been written).
    fn publish_batch(
        &self,
        records: impl IntoIterator<Item = Record>,
    ) -> impl Future<Output = Result<Vec<Delivered>>> + Send {
        // Collected first, so the caller's iterator need not be `Send`.
        let records: Vec<Record> = records.into_iter().collect();
        async move { Ok(publish_batch(&self.publisher()?, records).await?) }
    }

    /// Hands `record` to the producer without waiting for its acknowledgement (for
    /// throughput); call [`Broker::flush`] before exiting, or a refusal goes unseen.
    fn publish_nowait(&self, record: Record) -> impl Future<Output = Result<()>> + Send {
        async move {
            drop(self.publisher()?.enqueue(record).await?);
            Ok(())
        }
    }

    /// Waits until every record handed to the producer was acknowledged, or `timeout` passed.
    fn flush(&self, timeout: Duration) -> impl Future<Output = Result<()>> + Send {
        async move { Ok(self.publisher()?.flush(timeout).await?) }
    }

    /// Begins a transaction outside handlers: records published through it are visible to
    /// `read_committed` readers all at once when it commits, and never if it aborts (see
    /// [`Transaction`]). The broker runs one transaction at a time: this waits while another
    /// is open. Backends without transactions answer an error.
    fn begin_transaction(&self) -> impl Future<Output = Result<Transaction>> + Send {
        async move { Err(crate::Error::config_msg("this broker has no transactions")) }
    }

    /// The transactional producer of the exactly-once subscriber `config`
    /// ([`SubscriberConfig::exactly_once`]): one per group member. The app calls this once
    /// per such subscriber as it starts, before [`Broker::subscribe`], which then binds the
    /// member's consumer to it (Kafka: its group metadata, for the offsets each transaction
    /// commits). Backends without transactions answer an error.
    fn exactly_once(
        &self,
        config: &SubscriberConfig,
    ) -> impl Future<Output = Result<ExactlyOnce<Self::Publisher>>> + Send {
        let name = config.name.clone();
        async move {
            Err(crate::Error::config_msg(format!(
                "subscriber `{name}` cannot be exactly-once: this broker has no transactions"
            )))
        }
    }

    /// Publishes `records` in one transaction: all of them, or (on an error) none. Where each
    /// landed, in order.
    fn publish_transaction(
        &self,
        records: impl IntoIterator<Item = Record>,
    ) -> impl Future<Output = Result<Vec<Delivered>>> + Send {
        // Collected first, so the caller's iterator need not be `Send`.
        let records: Vec<Record> = records.into_iter().collect();
        async move {
            let mut tx = self.begin_transaction().await?;
            for record in records {
                if let Err(err) = tx.publish_record(record).await {
                    // Whether the abort works or not, the refusal is the error to report.
                    let _ = tx.abort().await;
                    return Err(err);
                }
            }
            tx.commit().await
        }
    }

    /// [`Broker::request`], with the reply's payload decoded into `T` by FastStream's rules
    /// (its `content-type`).
    fn request_as<T: serde::de::DeserializeOwned>(
        &self,
        record: Record,
        timeout: Duration,
    ) -> impl Future<Output = Result<T>> + Send {
        async move {
            let reply = self.request(record, timeout).await?;
            let content_type = reply.headers.get_str(crate::message::CONTENT_TYPE);
            Ok(crate::message::codec::decode(&reply.payload, content_type)?)
        }
    }

    /// Publishes `record` as a request and waits up to `timeout` for its reply: the record
    /// gets a new correlation id and a `reply_to` header naming the backend's reply topic,
    /// and the reply is the first record there with the same correlation id (FastStream's
    /// headers, so a Python FastStream subscriber and a Rust `#[subscriber]` both answer).
    /// Concurrent requests share one reply reader. Backends without a reply topic answer an
    /// error; on timeout, [`Error::RequestTimeout`](crate::Error::RequestTimeout).
    fn request(
        &self,
        record: Record,
        timeout: Duration,
    ) -> impl Future<Output = Result<Message>> + Send {
        let _ = timeout;
        async move {
            Err(crate::Error::config_msg(format!(
                "this broker cannot send requests (to `{}`)",
                record.topic
            )))
        }
    }

    /// Creates the retry topics of a subscriber with
    /// [`ErrorPolicy::retry_topics`](crate::ErrorPolicy::retry_topics) where they are missing:
    /// each with as many partitions as its source topic and a retention of
    /// [`RetryTopic::retention`]. Called by the app before the subscriber starts. Backends
    /// without topic administration answer an error.
    fn create_retry_topics(
        &self,
        topics: &[RetryTopic],
    ) -> impl Future<Output = Result<()>> + Send {
        let names: Vec<String> = topics.iter().map(|t| t.name.clone()).collect();
        async move {
            Err(crate::Error::config_msg(format!(
                "this broker cannot create the retry topics {names:?}"
            )))
        }
    }

    /// Replays the dead-letter topic `topic`: every record in it now is published again to
    /// the topic its `dlt-original-topic` header names, with its key, payload, correlation id
    /// and original headers (the `dlt-*` ones removed). With `dry_run` nothing is published,
    /// only counted. Backends that cannot read a topic this way answer an error.
    fn replay_dead_letters(
        &self,
        topic: &str,
        dry_run: bool,
    ) -> impl Future<Output = Result<ReplayReport>> + Send {
        let topic = topic.to_owned();
        let _ = dry_run;
        async move {
            Err(crate::Error::config_msg(format!(
                "this broker cannot replay the dead-letter topic `{topic}`"
            )))
        }
    }
}

/// What a dead-letter replay did (or, dry, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// Records published again (or that would be), by destination topic.
    pub replayed: std::collections::BTreeMap<String, u64>,
    /// Records without a `dlt-original-topic` header, left alone.
    pub skipped: u64,
}

impl ReplayReport {
    /// Records published again, in all.
    pub fn total(&self) -> u64 {
        self.replayed.values().sum()
    }
}

/// The header naming a dead letter's original topic.
pub const DLT_ORIGINAL_TOPIC: &str = "dlt-original-topic";
/// The prefix of the provenance headers a dead letter gets (dropped on replay).
pub const DLT_HEADER_PREFIX: &str = "dlt-";
