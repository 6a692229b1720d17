//! Testing apps without Kafka: [`TestBroker`], an in-memory broker that runs the very same
//! handlers with the very same runtime (partition workers, ack policies, retries, middleware),
//! and assertions that wait for asynchronous handling (feature `testing`).
//!
//! # Writing the app for both brokers
//!
//! A subscriber's pipeline is built for one broker type, so the app is written once, generic
//! over the broker, and `main` and the tests each pick theirs:
//!
//! ```
//! use faststream::testing::TestBroker;
//! use faststream::{publisher, subscriber, Broker, FastStream};
//! use serde_json::json;
//!
//! #[subscriber("in-topic")]
//! #[publisher("out-topic")]
//! async fn handle_msg(user: String, user_id: i64) -> String {
//!     format!("User: {user_id} - {user} registered")
//! }
//!
//! /// The app, on any broker: `main` runs `app(KafkaBroker::new(..))`.
//! fn app<B: Broker>(broker: B) -> FastStream<B> {
//!     FastStream::new(broker).include(handle_msg)
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> faststream::Result<()> {
//! let test = TestBroker::start(app(TestBroker::new())).await?;
//! test.publish(json!({"user": "John", "user_id": 1}), "in-topic").await?;
//! test.calls("handle_msg").assert_called_once_with(json!({"user": "John", "user_id": 1})).await;
//! test.published("out-topic").assert_one("User: 1 - John registered").await;
//! test.shutdown().await
//! # }
//! ```
//!
//! Assertions are `async`: each waits (up to [`TestBroker::timeout`], 5 s by default) for the
//! handling it expects, so tests need no sleeps.
//!
//! Publishing is the [`Broker`] trait's, with the same signatures as on `KafkaBroker`:
//! `publish(value, topic)`, `publish_record(record)`, `publish_batch(records)`,
//! `publish_nowait`, `flush`, and `request(record, timeout)` / `request_as`, answered by the
//! app's subscribers through `reply_to` in memory too:
//!
//! ```
//! use faststream::testing::TestBroker;
//! use faststream::{Broker, FastStream, Record, SubscriberConfig};
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> faststream::Result<()> {
//! let app = FastStream::new(TestBroker::new())
//!     .subscriber(SubscriberConfig::new("square", ["square"]), |n: i64| async move { n * n });
//! let test = TestBroker::start(app).await?;
//! let squared: i64 = test.request_as(Record::encode("square", &7)?, Duration::from_secs(5)).await?;
//! assert_eq!(squared, 49);
//! test.shutdown().await
//! # }
//! ```
//!
//! # In memory, or on real Kafka
//!
//! [`TestBroker::from_env`] is in memory unless `FASTSTREAM_TEST_REAL=1`; then it is
//! [`TestBroker::real`] on `FASTSTREAM_TEST_KAFKA` (default `127.0.0.1:9092`), and the same
//! test body runs on Kafka (feature `kafka`): publishes go to Kafka, `published(topic)` reads
//! the real topic from its beginning (so give tests their own topics), `calls()` records what
//! the handlers ran, and consumer groups, offsets and rebalances are Kafka's own.
//!
//! What the in-memory broker keeps of Kafka:
//! - topics of partitions (created on first use with [`TestBroker::default_partitions`], 1 by
//!   default, or by [`TestBroker::create_topic`]), append-only logs with offsets;
//! - a key's partition is Kafka's (`toPositive(murmur2(key)) % partitions`, see
//!   [`partition_for_key`]); keyless records go round robin; an explicit partition is kept;
//! - headers as the Kafka publisher writes them: `content-type` first, `correlation_id` (a new
//!   uuid4 when none), then the record's own; the producer's clock as timestamp when unset;
//! - consumer groups: every group gets every record; a topic's partitions are spread over a
//!   group's subscriptions; offsets stored by the runtime are the group's committed offsets, so
//!   a subscription that restarts in the same group resumes after them; `auto_offset_reset`;
//! - order per partition, the runtime's partition workers fed through the same channel as on
//!   Kafka, so every ack policy, retry and middleware behaves the same;
//! - transactions: records of an open transaction are held back from `read_committed`
//!   readers (the last stable offset), those of an aborted one never delivered to them, end
//!   markers take offsets; an exactly-once subscriber's offsets commit with its transaction,
//!   and a producer whose transactional id another one registered ([`TestBroker::fence`]) is
//!   fenced;
//! - a topic's `max.message.bytes` ([`TestBroker::create_topic_with`]): a record over it, as a
//!   record batch of its own, is refused at delivery as Kafka refuses it, to the byte (a
//!   test runs both ways to keep it so).
//!
//! What it does not model: replication, retention, other topic configs (refused when given),
//! consumer lag, fetch sizes, a batch of small records refused whole with a large one,
//! zombie fencing by group generation (KIP-447), and time spent in network round trips.
mod memory;
mod partitioner;
mod payload;
#[cfg(feature = "kafka")]
mod real;
mod record;

pub use partitioner::{murmur2, partition_for_key};
pub use payload::decode;
pub use record::Call;

use crate::asyncapi::{DescribeServer, ServerInfo};
use crate::FastStream;
use faststream_core::broker::{PartitionWorkers, SubscribeOptions, Subscription};
use faststream_core::{
    Broker, Delivered, Message, OffsetReset, Publish, PublishError, Record, Result, RunningApp,
    SubscriberConfig,
};
use memory::Cluster;
use record::{CallLog, RecordCalls};
use serde::Serialize;
use serde_json::Value;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

/// The environment variable that makes [`TestBroker::from_env`] use real Kafka.
pub const REAL_ENV: &str = "FASTSTREAM_TEST_REAL";

enum Backend {
    Memory(Arc<Cluster>),
    #[cfg(feature = "kafka")]
    Real(real::Real),
}

/// A broker for tests: in memory ([`TestBroker::new`]) or on real Kafka
/// ([`TestBroker::real`]), with the same API either way. Clones share one broker.
///
/// See the [module docs](self) for an example and what it keeps of Kafka.
#[derive(Clone)]
pub struct TestBroker {
    backend: Arc<Backend>,
    calls: CallLog,
    timeout: Duration,
}

impl std::fmt::Debug for TestBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestBroker")
            .field("real", &self.is_real())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Default for TestBroker {
    fn default() -> Self {
        Self::new()
    }
}

impl TestBroker {
    /// An in-memory broker: topics get one partition unless created otherwise, consumers
    /// without a committed offset start from the earliest record.
    pub fn new() -> Self {
        Self::memory(1, OffsetReset::Earliest)
    }

    fn memory(partitions: i32, reset: OffsetReset) -> Self {
        Self {
            backend: Arc::new(Backend::Memory(Arc::new(Cluster::new(partitions, reset)))),
            calls: CallLog::default(),
            timeout: Duration::from_secs(5),
        }
    }

    /// An in-memory broker whose topics get `partitions` partitions when created on first use.
    pub fn default_partitions(partitions: i32) -> Self {
        Self::memory(partitions, OffsetReset::Earliest)
    }

    /// Where consumers without a committed offset start (default earliest); a subscriber's
    /// own `auto_offset_reset` wins. In memory only; call before cloning.
    #[cfg_attr(not(feature = "kafka"), allow(irrefutable_let_patterns))]
    pub fn auto_offset_reset(mut self, reset: OffsetReset) -> Self {
        if let Backend::Memory(cluster) = &*self.backend {
            let partitions = cluster.default_partitions();
            self.backend = Arc::new(Backend::Memory(Arc::new(Cluster::new(partitions, reset))));
        }
        self
    }

    /// A test broker on a real Kafka cluster: the same API, Kafka's behaviour. Its producer
    /// uses librdkafka's `murmur2_random` partitioner, so keys land where Java clients (and
    /// the in-memory broker) put them.
    ///
    /// ```no_run
    /// # async fn demo() -> faststream::Result<()> {
    /// use faststream::testing::TestBroker;
    /// let broker = TestBroker::real("127.0.0.1:9092");
    /// broker.create_topic("orders-test-1", 3).await?;
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "kafka")]
    pub fn real(bootstrap_servers: impl Into<String>) -> Self {
        Self {
            backend: Arc::new(Backend::Real(real::Real::new(bootstrap_servers.into()))),
            calls: CallLog::default(),
            timeout: Duration::from_secs(30),
        }
    }

    /// In memory, unless the environment variable `FASTSTREAM_TEST_REAL` is `1` or `true`:
    /// then [`TestBroker::real`] on `FASTSTREAM_TEST_KAFKA` (default `127.0.0.1:9092`).
    /// Without the `kafka` feature, always in memory.
    pub fn from_env() -> Self {
        let real = std::env::var(REAL_ENV)
            .map(|v| matches!(v.as_str(), "1" | "true" | "yes"))
            .unwrap_or(false);
        #[cfg(feature = "kafka")]
        if real {
            let servers = std::env::var("FASTSTREAM_TEST_KAFKA")
                .unwrap_or_else(|_| "127.0.0.1:9092".to_owned());
            return Self::real(servers);
        }
        let _ = real;
        Self::new()
    }

    /// How long assertions wait for what they expect (default 5 s in memory, 30 s on Kafka).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Whether this broker is real Kafka.
    pub fn is_real(&self) -> bool {
        !matches!(&*self.backend, Backend::Memory(_))
    }

    /// Starts `app` (built on this broker, or a clone of it) with every subscriber's calls
    /// recorded for [`TestBroker::calls`]. The returned [`TestApp`] derefs to the broker.
    pub async fn start(app: FastStream<TestBroker>) -> Result<TestApp> {
        let broker = app.broker().clone();
        let log = Arc::clone(&broker.calls);
        let app = app.layer_for(move |config: &SubscriberConfig| RecordCalls {
            log: Arc::clone(&log),
            name: Arc::from(config.name.as_str()),
        });
        let running = app.start().await?;
        Ok(TestApp {
            broker,
            running: Some(running),
        })
    }

    /// Creates `topic` with `partitions` partitions (on Kafka: through the admin API, waiting
    /// until every partition has a leader). Fine when it exists with that many partitions.
    pub async fn create_topic(&self, topic: &str, partitions: i32) -> Result<()> {
        match &*self.backend {
            Backend::Memory(cluster) => cluster.create_topic(topic, partitions),
            #[cfg(feature = "kafka")]
            Backend::Real(real) => real.create_topic(topic, partitions).await,
        }
    }

    /// Creates `topic` with `partitions` partitions and topic `configs`, by Kafka's names and
    /// values (e.g. `("max.message.bytes", "2000")`), which apply when the topic is created.
    /// Fine when it exists with that many partitions.
    ///
    /// In memory, only `max.message.bytes` is modelled: a record larger than that, sized as
    /// Kafka's record batch of one (its key, value and headers with their lengths, and the
    /// batch's 61-byte header), is refused at delivery with an
    /// [`Abortable`](crate::ErrorClass::Abortable) error, as Kafka refuses it. (On Kafka
    /// a batch of small records sent with a large one is refused whole; in memory each record
    /// is checked alone.) Any other config is an error there, so that a test never passes on
    /// a setting memory ignores.
    ///
    /// ```
    /// use faststream::testing::TestBroker;
    /// use faststream::{Broker, Record};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let broker = TestBroker::new();
    /// broker.create_topic_with("small", 1, &[("max.message.bytes", "2000")]).await.unwrap();
    /// let refused = broker.publish_record(Record::new("small", "x".repeat(5000))).await;
    /// let error = refused.expect_err("over max.message.bytes");
    /// assert_eq!(error.class(), faststream::ErrorClass::Abortable);
    /// assert!(broker.publish_record(Record::new("small", "fits")).await.is_ok());
    /// assert!(broker.create_topic_with("other", 1, &[("cleanup.policy", "compact")]).await.is_err());
    /// # }
    /// ```
    pub async fn create_topic_with(
        &self,
        topic: &str,
        partitions: i32,
        configs: &[(&str, &str)],
    ) -> Result<()> {
        match &*self.backend {
            Backend::Memory(cluster) => cluster.create_topic_with(topic, partitions, configs),
            #[cfg(feature = "kafka")]
            Backend::Real(real) => real.create_topic_with(topic, partitions, configs).await,
        }
    }

    /// What was written to `topic` (by handlers, by the test, by anyone), for assertions.
    ///
    /// ```
    /// use faststream::testing::TestBroker;
    /// use faststream::{Broker, FastStream, Key, Record, Response, SubscriberConfig};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> faststream::Result<()> {
    /// let app = FastStream::new(TestBroker::new()).subscriber(
    ///     SubscriberConfig::new("greet", ["users"]).publish_to("greetings"),
    ///     |key: Key<String>, name: String| async move {
    ///         Response::new(format!("hello {name}")).key(key.0).header("x-lang", "en")
    ///     },
    /// );
    /// let test = TestBroker::start(app).await?;
    /// test.publish_record(Record::encode("users", "Ann")?.key("u-1")).await?;
    /// let greeting = test.published("greetings").assert_one("hello Ann").await;
    /// assert_eq!(greeting.key.as_deref(), Some(&b"u-1"[..]));
    /// assert_eq!(greeting.headers.get_str("x-lang"), Some("en"));
    /// test.shutdown().await
    /// # }
    /// ```
    pub fn published(&self, topic: impl Into<String>) -> Published {
        Published {
            broker: self.clone(),
            topic: topic.into(),
        }
    }

    /// The calls of the subscriber named `subscriber` (the handler's name, or the name given
    /// to `SubscriberConfig::new`), for assertions.
    pub fn calls(&self, subscriber: impl Into<String>) -> Calls {
        Calls {
            broker: self.clone(),
            subscriber: subscriber.into(),
        }
    }

    /// The offset `group` will read next from `topic`'s `partition` (Kafka's committed offset),
    /// when it committed one.
    pub async fn committed(&self, group: &str, topic: &str, partition: i32) -> Option<i64> {
        match &*self.backend {
            Backend::Memory(cluster) => cluster.committed(group, topic, partition),
            #[cfg(feature = "kafka")]
            Backend::Real(real) => real.committed(group, topic, partition).await,
        }
    }

    /// The `transactional.id` the exactly-once subscriber `config` gets from this broker.
    pub fn transactional_id(&self, config: &SubscriberConfig) -> String {
        match &*self.backend {
            Backend::Memory(_) => memory::member_transactional_id(config),
            #[cfg(feature = "kafka")]
            Backend::Real(real) => real.kafka.member_transactional_id(config),
        }
    }

    /// Starts a producer with `transactional_id` (Kafka's `init_transactions`), as a second
    /// instance with the same id would: it fences the producer that had the id, whose open
    /// transaction is aborted and whose next commit fails.
    pub async fn fence(&self, transactional_id: &str) -> Result<()> {
        match &*self.backend {
            Backend::Memory(cluster) => {
                cluster.init_producer(transactional_id);
                Ok(())
            }
            #[cfg(feature = "kafka")]
            Backend::Real(real) => real.kafka.fence(transactional_id).await,
        }
    }

    /// Every record of `topic` now, partition by partition in offset order.
    pub async fn records(&self, topic: &str) -> Vec<Message> {
        match &*self.backend {
            Backend::Memory(cluster) => cluster.records(topic),
            #[cfg(feature = "kafka")]
            Backend::Real(real) => real.records(topic).await,
        }
    }

    fn recorded_calls(&self, subscriber: &str) -> Vec<Call> {
        self.calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(subscriber)
            .cloned()
            .unwrap_or_default()
    }

    /// Polls `probe` until it returns `Some`, or panics with `what` and the last state after
    /// the timeout.
    async fn wait<T, S, F, Fut>(&self, what: impl Fn() -> String, mut probe: F) -> T
    where
        S: std::fmt::Debug,
        F: FnMut() -> Fut,
        Fut: Future<Output = std::result::Result<T, S>>,
    {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let pause = if self.is_real() { 50 } else { 5 };
        loop {
            let state = match probe().await {
                Ok(found) => return found,
                Err(state) => state,
            };
            if tokio::time::Instant::now() >= deadline {
                panic!("{} (waited {:?}); found: {state:#?}", what(), self.timeout);
            }
            tokio::time::sleep(Duration::from_millis(pause)).await;
        }
    }
}

/// `value` as the JSON a handler's payload decodes to (a `String` is a JSON string, as a
/// `text/plain` payload decodes).
fn expected_json(value: impl Serialize) -> Value {
    serde_json::to_value(value).expect("the expected value serializes to JSON")
}

/// The records of one topic, for assertions (from [`TestBroker::published`]).
#[derive(Debug, Clone)]
pub struct Published {
    broker: TestBroker,
    topic: String,
}

impl Published {
    /// The records now, without waiting.
    pub async fn records(&self) -> Vec<Message> {
        self.broker.records(&self.topic).await
    }

    /// Waits until at least `n` records are there; returns all of them.
    pub async fn wait_for(&self, n: usize) -> Vec<Message> {
        let topic = &self.topic;
        self.broker
            .wait(
                || format!("expected at least {n} records on `{topic}`"),
                || async move {
                    let records = self.records().await;
                    if records.len() >= n {
                        Ok(records)
                    } else {
                        Err(summarize(&records))
                    }
                },
            )
            .await
    }

    /// Waits until exactly `n` records are there (fails at once on more); returns them.
    pub async fn assert_count(&self, n: usize) -> Vec<Message> {
        let records = self.wait_for(n).await;
        assert_eq!(
            records.len(),
            n,
            "expected {n} records on `{}`, found: {:#?}",
            self.topic,
            summarize(&records)
        );
        records
    }

    /// Waits for exactly one record, whose decoded payload (see [`decode`]) equals `expected`
    /// encoded as JSON; returns it (for its key, headers...).
    pub async fn assert_one(&self, expected: impl Serialize) -> Message {
        let record = self.assert_count(1).await.remove(0);
        assert_eq!(
            decode(&record),
            expected_json(expected),
            "the record on `{}`",
            self.topic
        );
        record
    }

    /// Waits for a record whose decoded payload equals `expected`; returns it.
    pub async fn assert_any(&self, expected: impl Serialize) -> Message {
        let expected = expected_json(expected);
        let topic = &self.topic;
        self.broker
            .wait(
                || format!("expected a record {expected} on `{topic}`"),
                || {
                    let expected = &expected;
                    async move {
                        let records = self.records().await;
                        match records.iter().find(|r| decode(r) == *expected) {
                            Some(found) => Ok(found.clone()),
                            None => Err(summarize(&records)),
                        }
                    }
                },
            )
            .await
    }

    /// The decoded payloads now, in partition and offset order.
    pub async fn payloads(&self) -> Vec<Value> {
        self.records().await.iter().map(decode).collect()
    }
}

/// What a failed assertion prints of records.
fn summarize(records: &[Message]) -> Vec<String> {
    records
        .iter()
        .map(|r| {
            format!(
                "[{}]@{} key={:?} {}",
                r.partition,
                r.offset,
                r.key_for_log(),
                decode(r)
            )
        })
        .collect()
}

/// The calls of one subscriber, for assertions (from [`TestBroker::calls`]).
#[derive(Debug, Clone)]
pub struct Calls {
    broker: TestBroker,
    subscriber: String,
}

impl Calls {
    /// The calls so far, without waiting.
    pub fn all(&self) -> Vec<Call> {
        self.broker.recorded_calls(&self.subscriber)
    }

    /// Waits until at least `n` calls finished; returns all calls.
    pub async fn wait_for(&self, n: usize) -> Vec<Call> {
        let name = &self.subscriber;
        self.broker
            .wait(
                || format!("expected at least {n} finished calls of `{name}`"),
                || async move {
                    let calls = self.all();
                    if calls.iter().filter(|c| c.outcome.is_some()).count() >= n {
                        Ok(calls)
                    } else {
                        Err(calls
                            .iter()
                            .map(|c| (c.json(), c.outcome.clone()))
                            .collect::<Vec<_>>())
                    }
                },
            )
            .await
    }

    /// Waits until exactly `n` calls finished (fails at once on more); returns them.
    pub async fn assert_called(&self, n: usize) -> Vec<Call> {
        let calls = self.wait_for(n).await;
        assert_eq!(
            calls.len(),
            n,
            "expected {n} calls of `{}`, found: {:#?}",
            self.subscriber,
            calls.iter().map(Call::json).collect::<Vec<_>>()
        );
        calls
    }

    /// Waits for exactly one finished call; returns it.
    pub async fn assert_called_once(&self) -> Call {
        self.assert_called(1).await.remove(0)
    }

    /// Waits for exactly one finished call, whose decoded payload equals `expected` as JSON.
    pub async fn assert_called_once_with(&self, expected: impl Serialize) -> Call {
        let call = self.assert_called_once().await;
        assert_eq!(
            call.json(),
            expected_json(expected),
            "the call of `{}`",
            self.subscriber
        );
        call
    }

    /// Fails when the subscriber was called (now, without waiting).
    pub fn assert_not_called(&self) {
        let calls = self.all();
        assert!(
            calls.is_empty(),
            "expected no calls of `{}`, found {:#?}",
            self.subscriber,
            calls.iter().map(Call::json).collect::<Vec<_>>()
        );
    }
}

/// A started app on a [`TestBroker`]; derefs to the broker (`publish`, `published`, `calls`).
/// Shut it down with [`TestApp::shutdown`] to run the shutdown path (commits, hooks); dropping
/// it cancels the app without waiting.
#[derive(Debug)]
pub struct TestApp {
    broker: TestBroker,
    running: Option<RunningApp<TestBroker>>,
}

impl std::ops::Deref for TestApp {
    type Target = TestBroker;
    fn deref(&self) -> &TestBroker {
        &self.broker
    }
}

impl TestApp {
    /// The broker (also reachable through deref).
    pub fn broker(&self) -> &TestBroker {
        &self.broker
    }

    /// The running app (health, subscribers added or removed at runtime).
    pub fn running(&mut self) -> Result<&mut RunningApp<TestBroker>> {
        self.running
            .as_mut()
            .ok_or_else(|| faststream_core::Error::config_msg("the app was shut down"))
    }

    /// Adds a subscriber while the app runs ([`RunningApp::subscribe`]); its calls are
    /// recorded like the others'.
    pub async fn subscribe<H, T>(&mut self, config: SubscriberConfig, handler: H) -> Result<()>
    where
        H: faststream_core::Handler<T>,
        T: Send + 'static,
    {
        self.running()?.subscribe(config, handler).await
    }

    /// Stops one subscriber while the others run ([`RunningApp::unsubscribe`]).
    pub async fn unsubscribe(&mut self, name: &str) -> Result<()> {
        self.running()?.unsubscribe(name).await
    }

    /// Moves a running subscriber's partitions ([`RunningApp::seek`]): on the in-memory
    /// broker as on Kafka, in-flight work is dropped, the sought offset is committed, and the
    /// next record handled is the one sought.
    ///
    /// ```
    /// use faststream::seek::Seek;
    /// use faststream::testing::TestBroker;
    /// use faststream::{Broker, FastStream, StartFrom, SubscriberConfig};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let app = FastStream::new(TestBroker::new())
    ///     .subscriber(SubscriberConfig::new("audit", ["orders"]), |order: i64| async move {});
    /// let mut test = TestBroker::start(app).await.unwrap();
    /// for order in 0..3 {
    ///     test.publish(order, "orders").await.unwrap();
    /// }
    /// test.calls("audit").wait_for(3).await;
    /// let sought = test.seek("audit", Seek::all(StartFrom::Earliest)).await.unwrap();
    /// assert_eq!(sought[0].offset, 0);
    /// test.calls("audit").wait_for(6).await; // all three again
    /// test.shutdown().await.unwrap();
    /// # }
    /// ```
    pub async fn seek(
        &mut self,
        name: &str,
        seek: faststream_core::seek::Seek,
    ) -> Result<Vec<faststream_core::seek::Sought>> {
        self.running()?.seek(name, seek).await
    }

    /// Adds a subscriber whose messages are pulled ([`RunningApp::pull`]): `get_one` and a
    /// stream of [`Pulled`](faststream_core::pull::Pulled) values; its calls are recorded
    /// like the others' (each ends when the puller acked or nacked its message).
    ///
    /// ```
    /// use faststream::testing::TestBroker;
    /// use faststream::{Broker, FastStream, SubscriberConfig};
    /// use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let mut test = TestBroker::start(FastStream::new(TestBroker::new())).await.unwrap();
    /// let mut numbers = test.pull::<i64>(SubscriberConfig::new("numbers", ["numbers"])).await.unwrap();
    /// test.publish(7, "numbers").await.unwrap();
    /// let seven = numbers.get_one(Duration::from_secs(5)).await.unwrap();
    /// assert_eq!((*seven, seven.message().offset), (7, 0));
    /// seven.ack();
    /// test.close_pull(numbers).await.unwrap();
    /// assert_eq!(test.committed("numbers", "numbers", 0).await, Some(1)); // the group is the name
    /// test.shutdown().await.unwrap();
    /// # }
    /// ```
    pub async fn pull<T>(&mut self, config: SubscriberConfig) -> Result<faststream_core::Pull<T>>
    where
        T: serde::de::DeserializeOwned + Send + 'static,
    {
        self.running()?.pull(config).await
    }

    /// Stops a pull's subscriber ([`Pull::close`](faststream_core::pull::Pull::close)).
    pub async fn close_pull<T>(&mut self, pull: faststream_core::Pull<T>) -> Result<()> {
        pull.close(self.running()?).await
    }

    /// Graceful shutdown: `on_shutdown` hooks, workers finish and commit, the group is left,
    /// `after_shutdown` hooks.
    pub async fn shutdown(mut self) -> Result<()> {
        match self.running.take() {
            Some(running) => running.shutdown().await,
            None => Ok(()),
        }
    }
}

/// The test broker's publisher.
#[derive(Clone)]
pub enum TestPublisher {
    /// Appends to the in-memory logs.
    Memory(MemoryPublisher),
    /// Kafka's publisher.
    #[cfg(feature = "kafka")]
    Kafka(crate::kafka::KafkaPublisher),
}

impl std::fmt::Debug for TestPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Memory(_) => f.write_str("TestPublisher::Memory"),
            #[cfg(feature = "kafka")]
            Self::Kafka(publisher) => publisher.fmt(f),
        }
    }
}

/// Appends records to the in-memory logs (an exactly-once member's: in its open
/// transaction).
#[derive(Clone)]
pub struct MemoryPublisher {
    cluster: Arc<Cluster>,
    member: Option<Arc<memory::MemoryMember>>,
}

impl std::fmt::Debug for MemoryPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MemoryPublisher")
    }
}

/// The acknowledgement of one record published through a [`TestPublisher`].
#[derive(Debug)]
pub enum TestDelivery {
    /// In memory: appended already.
    Memory(Option<std::result::Result<Delivered, PublishError>>),
    /// Kafka's acknowledgement.
    #[cfg(feature = "kafka")]
    Kafka(crate::kafka::KafkaDelivery),
}

impl Future for TestDelivery {
    type Output = std::result::Result<Delivered, PublishError>;

    #[cfg_attr(not(feature = "kafka"), allow(unused_variables))]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Self::Memory(outcome) => Poll::Ready(outcome.take().expect("polled after completion")),
            #[cfg(feature = "kafka")]
            Self::Kafka(delivery) => Pin::new(delivery).poll(cx),
        }
    }
}

impl Publish for TestPublisher {
    type Delivery = TestDelivery;

    async fn enqueue(&self, record: Record) -> std::result::Result<TestDelivery, PublishError> {
        match self {
            Self::Memory(MemoryPublisher { cluster, member }) => {
                let appended = match member {
                    None => cluster.append(record),
                    Some(member) => member.send(record),
                };
                Ok(TestDelivery::Memory(Some(appended)))
            }
            #[cfg(feature = "kafka")]
            Self::Kafka(publisher) => publisher.enqueue(record).await.map(TestDelivery::Kafka),
        }
    }

    #[cfg_attr(not(feature = "kafka"), allow(unused_variables))]
    async fn flush(&self, timeout: Duration) -> std::result::Result<(), PublishError> {
        match self {
            Self::Memory(_) => Ok(()),
            #[cfg(feature = "kafka")]
            Self::Kafka(publisher) => publisher.flush(timeout).await,
        }
    }
}

impl Broker for TestBroker {
    type Publisher = TestPublisher;

    fn publisher(&self) -> Result<TestPublisher> {
        match &*self.backend {
            Backend::Memory(cluster) => Ok(TestPublisher::Memory(MemoryPublisher {
                cluster: Arc::clone(cluster),
                member: None,
            })),
            #[cfg(feature = "kafka")]
            Backend::Real(real) => Ok(TestPublisher::Kafka(real.kafka.publisher()?)),
        }
    }

    async fn subscribe(
        &self,
        config: Arc<SubscriberConfig>,
        workers: Arc<dyn PartitionWorkers>,
        options: SubscribeOptions,
    ) -> Result<Box<dyn Subscription>> {
        match &*self.backend {
            Backend::Memory(cluster) => cluster.subscribe(config, workers, options).await,
            #[cfg(feature = "kafka")]
            Backend::Real(real) => real.kafka.subscribe(config, workers, options).await,
        }
    }

    /// In memory, the reply topic is `faststream-test-replies`; on Kafka, the Kafka broker's.
    async fn begin_transaction(&self) -> Result<faststream_core::broker::Transaction> {
        match &*self.backend {
            Backend::Memory(cluster) => Ok(cluster.begin_transaction().await),
            #[cfg(feature = "kafka")]
            Backend::Real(real) => real.kafka.begin_transaction().await,
        }
    }

    /// In memory, the transactional id is `{group}-{subscriber}-memory`.
    async fn exactly_once(
        &self,
        config: &SubscriberConfig,
    ) -> Result<faststream_core::broker::ExactlyOnce<TestPublisher>> {
        match &*self.backend {
            Backend::Memory(cluster) => {
                let member = cluster.exactly_once(config)?;
                Ok(faststream_core::broker::ExactlyOnce {
                    publisher: TestPublisher::Memory(MemoryPublisher {
                        cluster: Arc::clone(cluster),
                        member: Some(Arc::clone(&member)),
                    }),
                    transactions: member,
                })
            }
            #[cfg(feature = "kafka")]
            Backend::Real(real) => {
                let member = real.kafka.exactly_once(config).await?;
                Ok(faststream_core::broker::ExactlyOnce {
                    publisher: TestPublisher::Kafka(member.publisher),
                    transactions: member.transactions,
                })
            }
        }
    }

    async fn request(&self, record: Record, timeout: Duration) -> Result<Message> {
        faststream_core::broker::refuse_request()?;
        match &*self.backend {
            Backend::Memory(cluster) => cluster.request(record, timeout).await,
            #[cfg(feature = "kafka")]
            Backend::Real(real) => real.kafka.request(record, timeout).await,
        }
    }

    async fn create_retry_topics(
        &self,
        topics: &[faststream_core::broker::RetryTopic],
    ) -> Result<()> {
        match &*self.backend {
            Backend::Memory(cluster) => cluster.create_retry_topics(topics),
            #[cfg(feature = "kafka")]
            Backend::Real(real) => real.kafka.create_retry_topics(topics).await,
        }
    }

    #[cfg_attr(not(feature = "kafka"), allow(unused_variables))]
    async fn ping(&self, timeout: Duration) -> Result<()> {
        match &*self.backend {
            Backend::Memory(_) => Ok(()),
            #[cfg(feature = "kafka")]
            Backend::Real(real) => real.kafka.ping(timeout).await,
        }
    }
}

impl DescribeServer for TestBroker {
    /// In memory: host `memory`, protocol `kafka`; on Kafka, Kafka's description.
    fn server_info(&self) -> ServerInfo {
        match &*self.backend {
            Backend::Memory(_) => ServerInfo::new(["memory"], "kafka"),
            #[cfg(feature = "kafka")]
            Backend::Real(real) => real.kafka.server_info(),
        }
    }
}
