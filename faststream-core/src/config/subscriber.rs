//! Subscriber and publisher declarations: what to consume, how to acknowledge, where to publish.

use crate::handler::Handler;
use std::sync::Arc;
use std::time::Duration;

pub use crate::handler::schema::SchemaFn;

pub use crate::policy::{AckPolicy, Backoff};

use super::batch::BatchConfig;
use crate::error::BoxError;
use crate::handler::pattern::TopicPattern;
use crate::handler::reply::Reply;
use crate::handler::service::BoxMessageService;
use crate::message::codec::{Codec, CodecRef, FormatSchema};
use crate::message::{Message, TopicPartition};
use crate::policy::{DeliveryPolicy, ErrorPolicy, PolicyLevel};
use tower::util::BoxCloneService;
use tower::{Layer, Service};

/// Where a consumer with no committed offset starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OffsetReset {
    /// From the oldest retained record (the default here: nothing published before the first
    /// start is missed).
    #[default]
    Earliest,
    /// From the next record produced after the consumer joined.
    Latest,
}

impl OffsetReset {
    /// The librdkafka / Kafka spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            OffsetReset::Earliest => "earliest",
            OffsetReset::Latest => "latest",
        }
    }
}

pub use crate::message::seek::StartFrom;

/// Which records of transactions a subscriber reads (Kafka's `isolation.level`).
///
/// Downstream of a producer that writes in transactions (an exactly-once app, or
/// [`Broker::begin_transaction`](crate::Broker::begin_transaction)), `ReadCommitted` is what
/// makes the transaction all or nothing for the reader: it sees a transaction's records only
/// once it committed, never those of an aborted one, and nothing behind a transaction still
/// open (the partition's last stable offset). Records written outside transactions are read
/// alike in both levels, only later behind an open transaction with `ReadCommitted`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IsolationLevel {
    /// Committed records only, up to the last stable offset (librdkafka's default, and so
    /// the default here).
    #[default]
    ReadCommitted,
    /// Every record as written, including those of open and aborted transactions (the Java
    /// client's default).
    ReadUncommitted,
}

impl IsolationLevel {
    /// The librdkafka / Kafka spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            IsolationLevel::ReadCommitted => "read_committed",
            IsolationLevel::ReadUncommitted => "read_uncommitted",
        }
    }
}

/// A topic a subscriber's return value is published to.
#[derive(Debug, Clone)]
pub struct PublisherConfig {
    /// Destination topic.
    pub topic: Arc<str>,
    /// Title for the AsyncAPI document.
    pub title: Option<String>,
    /// Description for the AsyncAPI document.
    pub description: Option<String>,
    /// Whether the AsyncAPI document lists it.
    pub include_in_schema: bool,
    /// Schema of what is published.
    pub schema: Option<SchemaFn>,
    /// A batch publisher: a returned sequence (`Vec<T>`, a tuple...) is published element by
    /// element, each its own record, instead of as one JSON array.
    pub batch: bool,
    /// The payload codec (FastStream's `encoder`); `None` inherits (a subscriber's, else
    /// JSON). A subscriber's return value is encoded once for all its publishers, with the
    /// codec of its first publisher that sets one ([`SubscriberConfig::reply_codec`]).
    pub codec: Option<CodecRef>,
    /// The payload's schema in a format of its own, for the AsyncAPI document (default: the
    /// codec's, else the JSON Schema of [`PublisherConfig::schema`]).
    pub payload_format: Option<FormatSchema>,
}

impl PublisherConfig {
    /// A publisher to `topic`.
    pub fn new(topic: impl Into<Arc<str>>) -> Self {
        Self {
            topic: topic.into(),
            title: None,
            description: None,
            include_in_schema: true,
            schema: None,
            batch: false,
            codec: None,
            payload_format: None,
        }
    }

    /// Documents the payload with a schema of its own format (a `.proto` file for
    /// `codec::Proto` (feature `protobuf`) records) in the AsyncAPI document.
    pub fn payload_format(mut self, format: FormatSchema) -> Self {
        self.payload_format = Some(format);
        self
    }

    /// Sets the payload codec of what is published here (see [`PublisherConfig::codec`]).
    pub fn codec(mut self, codec: impl Codec) -> Self {
        self.codec = Some(std::sync::Arc::new(codec));
        self
    }

    /// Makes it a batch publisher (FastStream's `publisher(..., batch=True)`): a handler
    /// returning a sequence publishes each element as its own record, in order; any other
    /// return value is published as one record.
    ///
    /// ```
    /// use faststream_core::{PublisherConfig, SubscriberConfig};
    /// // `split` returns `Vec<String>`: each line becomes one record on `lines`.
    /// let config = SubscriberConfig::new("split", ["documents"])
    ///     .publisher(PublisherConfig::new("lines").batch(true));
    /// assert!(config.publishers[0].batch);
    /// ```
    pub fn batch(mut self, batch: bool) -> Self {
        self.batch = batch;
        self
    }

    /// Sets the title (the channel's name in the AsyncAPI document).
    pub fn title(mut self, title: impl Into<String>) -> Self {
        self.title = Some(title.into());
        self
    }

    /// Sets the description for the AsyncAPI document.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }

    /// Whether the AsyncAPI document lists this publisher (default `true`).
    pub fn include_in_schema(mut self, include: bool) -> Self {
        self.include_in_schema = include;
        self
    }

    /// Sets the schema of what is published (default: any payload).
    pub fn schema(mut self, schema: SchemaFn) -> Self {
        self.schema = Some(schema);
        self
    }
}

/// A callback given the partitions a rebalance assigned or revoked.
pub type PartitionsCallback = Arc<dyn Fn(&[TopicPartition]) + Send + Sync>;

/// A subscriber's rebalance callbacks (Kafka's `ConsumerRebalanceListener`, FastStream's
/// rebalance listeners). They run on the consumer's thread, so they should be quick.
#[derive(Clone, Default)]
pub struct RebalanceHooks {
    /// After partitions were assigned, before any of their records is handled.
    pub on_assign: Option<PartitionsCallback>,
    /// After the revoked partitions' in-flight work finished and its offsets were
    /// committed (also when the subscriber stops).
    pub on_revoke: Option<PartitionsCallback>,
}

impl RebalanceHooks {
    /// Calls `on_assign` with `partitions` (when any).
    pub fn assigned(&self, partitions: &[TopicPartition]) {
        if let (Some(hook), false) = (&self.on_assign, partitions.is_empty()) {
            hook(partitions);
        }
    }

    /// Calls `on_revoke` with `partitions` (when any).
    pub fn revoked(&self, partitions: &[TopicPartition]) {
        if let (Some(hook), false) = (&self.on_revoke, partitions.is_empty()) {
            hook(partitions);
        }
    }
}

impl std::fmt::Debug for RebalanceHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RebalanceHooks")
            .field("on_assign", &self.on_assign.is_some())
            .field("on_revoke", &self.on_revoke.is_some())
            .finish()
    }
}

/// The default of [`SubscriberConfig::max_buffer_bytes`]: 64 MiB.
pub const DEFAULT_MAX_BUFFER_BYTES: usize = 64 * 1024 * 1024;

/// The default of [`SubscriberConfig::max_pending_per_partition`]: 1,024 handled records per
/// partition waiting for their publishes.
///
/// Enough to keep the producer's batches full: at 1,024 the benchmark's six-partition
/// pipeline on a local broker (`linger.ms` 5) ran at 509,000-595,000 records/s on 2.5-2.8 s
/// of CPU per million records, above the multi-threaded raw rdkafka pipeline's
/// 454,000-500,000 (2.9-3.2 s) in the same rounds. A deeper allowance made it slower, not
/// faster: 2,048 gave 433,000-479,000 (3.2-3.6 s), 4,096 (the default before)
/// 339,000-510,000 (3.1-4.8 s): librdkafka's own producer code spent more CPU per record,
/// most likely on records gone cold in the caches while they waited. 512 ran dry
/// (371,000-409,000). A broker further away needs more in flight: about the records a
/// partition sends in one round trip plus the linger.
pub const DEFAULT_MAX_PENDING_PER_PARTITION: usize = 1024;

/// Everything about a subscriber except its handler: its name and publishers, and its
/// settings by concern, [`backend`](SubscriberConfig::backend) (what the broker sees),
/// [`delivery`](SubscriberConfig::delivery) (how messages are handled and acknowledged) and
/// [`docs`](SubscriberConfig::docs) (the AsyncAPI document). The builder methods set them all.
///
/// ```
/// use faststream_core::{SubscriberConfig, AckPolicy};
/// let config = SubscriberConfig::new("orders_handler", ["orders"])
///     .group_id("billing")
///     .ack_policy(AckPolicy::NackOnError)
///     .max_concurrency(8)
///     .title("Orders")
///     .publish_to("invoices");
/// assert_eq!(config.effective_group_id(), "billing");
/// assert_eq!(config.backend.topics, ["orders"]);
/// assert_eq!(config.delivery.ack_policy, Some(AckPolicy::NackOnError));
/// assert_eq!(config.delivery.max_concurrency, Some(8));
/// assert_eq!(config.docs.title.as_deref(), Some("Orders"));
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SubscriberConfig {
    /// Handler name (the function's name with the macro): used in logs, the default group id
    /// and the AsyncAPI document.
    pub name: String,
    /// Where the return value goes.
    pub publishers: Vec<PublisherConfig>,
    /// What the backend sees: topics, group, offsets, consumer properties, partitions,
    /// pattern, batching, rebalance callbacks.
    pub backend: SubscriberBackend,
    /// How messages are handled and acknowledged: policies, backoff, timeout, concurrency,
    /// buffers, layers.
    pub delivery: SubscriberDelivery,
    /// What the AsyncAPI document says about it.
    pub docs: SubscriberDocs,
    /// Its payload codec, and its routers' and app's.
    pub codec: SubscriberCodec,
}

/// The payload codec of a subscriber ([`SubscriberConfig::codec`]): its payloads decode, and
/// its return values encode, with the most specific one set: its own, else its routers'
/// (innermost first), else the app's, else FastStream's JSON (see [`crate::codec::seam`]).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct SubscriberCodec {
    /// The subscriber's own.
    pub own: Option<CodecRef>,
    /// The innermost router's that sets one.
    router: Option<CodecRef>,
    /// The app's.
    app: Option<CodecRef>,
    /// The codec its records' keys decode with ([`SubscriberConfig::key_codec`]); `None`:
    /// keys decode as JSON or text, as payloads do without a codec.
    pub key: Option<CodecRef>,
}

impl SubscriberCodec {
    /// The codec in effect; `None` is JSON.
    pub fn effective(&self) -> Option<&CodecRef> {
        self.own
            .as_ref()
            .or(self.router.as_ref())
            .or(self.app.as_ref())
    }

    /// Whether decoding may have to wait for something outside the process (a schema
    /// registry): its payload or key codec says so ([`Codec::may_wait`]), and the error
    /// policy then keeps each message to run it again after an outage.
    pub fn may_wait(&self) -> bool {
        self.effective()
            .into_iter()
            .chain(&self.key)
            .any(|codec| codec.may_wait())
    }

    /// A router's codec, unless an inner router set one (routers are applied inside out).
    pub(crate) fn inherit_router(&mut self, codec: Option<&CodecRef>) {
        if self.router.is_none() {
            self.router = codec.cloned();
        }
    }

    /// The app's codec (replacing an earlier one: the app's setters apply to subscribers
    /// added before them too).
    pub(crate) fn inherit_app(&mut self, codec: Option<&CodecRef>) {
        self.app = codec.cloned();
    }
}

/// What the backend sees of a subscriber ([`SubscriberConfig::backend`]).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SubscriberBackend {
    /// Topics consumed.
    pub topics: Vec<String>,
    /// Consumer group; defaults to [`SubscriberConfig::name`].
    pub group_id: Option<String>,
    /// Start position without a committed offset; the broker's default when `None`.
    pub auto_offset_reset: Option<OffsetReset>,
    /// Which records of transactions it reads; the broker's default when `None`.
    pub isolation_level: Option<IsolationLevel>,
    /// Extra consumer properties for this subscriber (librdkafka names for Kafka).
    pub properties: Vec<(String, String)>,
    /// Explicit partitions to read, without joining the group's rebalancing (the group id
    /// still names where offsets are committed). Empty: subscribe to the topics as a group
    /// member.
    pub assignment: Vec<TopicPartition>,
    /// Where explicitly assigned partitions start.
    pub start_from: StartFrom,
    /// The topic pattern the subscriber reads (its `topics` then hold the pattern's regex).
    pub pattern: Option<Arc<TopicPattern>>,
    /// Makes it a batch subscriber: the handler gets each partition's records in batches
    /// (see [`SubscriberConfig::batch`]).
    pub batch: Option<BatchConfig>,
    /// Callbacks on partition assignment and revocation.
    pub rebalance: RebalanceHooks,
    /// Retry topics consumed besides `topics`, each partition held back (paused) until its
    /// head record is due (its [`retry-due-at`](crate::broker::retry::RETRY_DUE_AT) header).
    /// Filled by the app when the subscriber starts, from its
    /// [`ErrorPolicy::retry_topics`]; empty otherwise.
    pub retry_topics: Vec<String>,
}

/// How a subscriber's messages are handled and acknowledged
/// ([`SubscriberConfig::delivery`]).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SubscriberDelivery {
    /// The subscriber's own acknowledgement policy; `None` inherits its routers' or the app's
    /// (see [`SubscriberConfig::delivery_policy`]). Setting the field or calling
    /// [`SubscriberConfig::ack_policy`] is the same.
    pub ack_policy: Option<AckPolicy>,
    /// The subscriber's own failure handling, over every ack policy; `None` inherits (see
    /// [`SubscriberConfig::delivery_policy`]).
    pub error_policy: Option<ErrorPolicy>,
    /// Backoff between redeliveries (`NackOnError`, manual nack).
    pub backoff: Backoff,
    /// How long one handler call may take before it counts as failed (off by default).
    pub handler_timeout: Option<Duration>,
    /// At most this many handler calls run at once across this subscriber's partitions
    /// (order within a partition is kept regardless). Unbounded when `None`.
    pub max_concurrency: Option<usize>,
    /// At most this many processed messages per partition may wait for their publishes to be
    /// acknowledged before the partition stops taking new ones. Default
    /// [`DEFAULT_MAX_PENDING_PER_PARTITION`] (1,024).
    pub max_pending_per_partition: usize,
    /// Concurrent key-ordered lanes per partition (see [`SubscriberConfig::lanes`]); 1, the
    /// default, handles a partition's records one after another.
    pub lanes: usize,
    /// Exactly-once: the subscriber's outputs and input offsets commit in one transaction
    /// (see [`SubscriberConfig::exactly_once`]); `None`, the default, is at-least-once.
    pub exactly_once: Option<TransactionCommits>,
    /// At most about this many bytes of consumed records (payload, key and headers) are held
    /// in memory across the subscriber's partitions: waiting to be handled, being handled, or
    /// waiting for their publishes. Past it the backend fetches nothing more until some are
    /// finished. Default [`DEFAULT_MAX_BUFFER_BYTES`] (64 MiB).
    pub max_buffer_bytes: usize,
    /// Ignore an incoming `reply_to`: the return value goes to the publishers only.
    pub no_reply: bool,
    /// The subscriber's own middleware layers, inside the app's (first added is outermost).
    pub layers: Vec<HandlerLayer>,
    /// The policies of the routers it was included through, inner first.
    router_policies: Vec<PolicyLevel>,
    /// The app's default policies, once it is in an app.
    app_policies: PolicyLevel,
}

/// When an exactly-once subscriber commits its transaction
/// ([`SubscriberConfig::transactions`]): whichever bound comes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct TransactionCommits {
    /// At most this long between two commits while records flow (Kafka Streams'
    /// `commit.interval.ms`). Default 100 ms: Confluent measured about 3 % producer overhead
    /// at that interval; shorter intervals lower a `read_committed` reader's latency and
    /// throughput, longer ones the reverse.
    pub interval: Duration,
    /// A commit comes sooner once about this many records were handled since the last one.
    /// Default 10 000.
    pub max_records: usize,
}

impl Default for TransactionCommits {
    fn default() -> Self {
        Self::every(Duration::from_millis(100))
    }
}

impl TransactionCommits {
    /// Commits every `interval` (at least 1 ms), or after 10 000 records.
    pub fn every(interval: Duration) -> Self {
        Self {
            interval: interval.max(Duration::from_millis(1)),
            max_records: 10_000,
        }
    }

    /// Commits after about `records` records (at least 1) at the latest.
    pub fn max_records(mut self, records: usize) -> Self {
        self.max_records = records.max(1);
        self
    }
}

/// What the AsyncAPI document says about a subscriber ([`SubscriberConfig::docs`]).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SubscriberDocs {
    /// Title (the channel's name).
    pub title: Option<String>,
    /// Description (the handler's doc comment with the macro).
    pub description: Option<String>,
    /// Whether the document lists it.
    pub include_in_schema: bool,
    /// Schema of the payload.
    pub payload_schema: Option<SchemaFn>,
    /// Schemas of the payloads of a subscriber with several handlers (a
    /// [`Filtered`](crate::filter::Filtered) handler): documented as a `oneOf`. Used when
    /// `payload_schema` is `None`.
    pub payload_one_of: Vec<SchemaFn>,
    /// The payload's schema in a format of its own (default: the codec's, else the JSON
    /// Schema above).
    pub payload_format: Option<FormatSchema>,
}

impl SubscriberConfig {
    /// A subscriber called `name` on `topics`.
    pub fn new<I, S>(name: impl Into<String>, topics: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            name: name.into(),
            publishers: Vec::new(),
            backend: SubscriberBackend {
                topics: topics.into_iter().map(Into::into).collect(),
                group_id: None,
                auto_offset_reset: None,
                isolation_level: None,
                properties: Vec::new(),
                assignment: Vec::new(),
                start_from: StartFrom::Committed,
                pattern: None,
                batch: None,
                rebalance: RebalanceHooks::default(),
                retry_topics: Vec::new(),
            },
            delivery: SubscriberDelivery {
                ack_policy: None,
                error_policy: None,
                backoff: Backoff::default(),
                handler_timeout: None,
                max_concurrency: None,
                max_pending_per_partition: DEFAULT_MAX_PENDING_PER_PARTITION,
                lanes: 1,
                exactly_once: None,
                max_buffer_bytes: DEFAULT_MAX_BUFFER_BYTES,
                no_reply: false,
                layers: Vec::new(),
                router_policies: Vec::new(),
                app_policies: PolicyLevel::default(),
            },
            docs: SubscriberDocs {
                title: None,
                description: None,
                include_in_schema: true,
                payload_schema: None,
                payload_one_of: Vec::new(),
                payload_format: None,
            },
            codec: SubscriberCodec::default(),
        }
    }

    /// Sets the subscriber's payload codec (FastStream's `decoder`/`encoder`): its payloads
    /// decode with it unless the record's `content-type` says otherwise, and its return values
    /// encode with it (see [`crate::codec::seam`]). Routers and the app set defaults.
    ///
    /// ```
    /// use faststream_core::codec::{Codec, DecodeTarget};
    /// use faststream_core::error::{DecodeError, EncodeError};
    /// # #[derive(Debug)] struct MyFormat;
    /// # impl Codec for MyFormat {
    /// #     fn name(&self) -> &'static str { "mine" }
    /// #     fn content_type(&self) -> &'static str { "application/x-mine" }
    /// #     fn decode<'de>(&self, _: &'de [u8], _: &mut dyn DecodeTarget<'de>) -> Result<(), DecodeError> { unimplemented!() }
    /// #     fn encode(&self, _: &dyn erased_serde::Serialize) -> Result<Vec<u8>, EncodeError> { unimplemented!() }
    /// # }
    /// let config = faststream_core::SubscriberConfig::new("orders", ["orders"]).codec(MyFormat);
    /// assert_eq!(config.codec.effective().unwrap().content_type(), "application/x-mine");
    /// ```
    pub fn codec(mut self, codec: impl Codec) -> Self {
        self.codec.own = Some(Arc::new(codec));
        self
    }

    /// Documents the payload with a schema of its own format (a `.proto` file for
    /// `codec::Proto` (feature `protobuf`) payloads) in the AsyncAPI document.
    ///
    /// ```
    /// use faststream_core::{codec::FormatSchema, SubscriberConfig};
    /// let config = SubscriberConfig::new("pong", ["pings"])
    ///     .payload_format(FormatSchema::protobuf("syntax = \"proto3\"; message Ping { uint64 seq = 1; }"));
    /// assert!(config.docs.payload_format.is_some());
    /// ```
    pub fn payload_format(mut self, format: FormatSchema) -> Self {
        self.docs.payload_format = Some(format);
        self
    }

    /// Sets the codec its records' keys decode with (`Key<T>` parameters), e.g. a schema
    /// registry's key codec; without one, keys decode as JSON or text.
    ///
    /// ```
    /// use faststream_core::codec::{Codec, DecodeTarget};
    /// # #[derive(Debug)] struct MyFormat;
    /// # impl Codec for MyFormat {
    /// #     fn name(&self) -> &'static str { "mine" }
    /// #     fn content_type(&self) -> &'static str { "application/x-mine" }
    /// #     fn decode<'de>(&self, _: &'de [u8], _: &mut dyn DecodeTarget<'de>) -> Result<(), faststream_core::codec::DecodeError> { unimplemented!() }
    /// #     fn encode(&self, _: &dyn faststream_core::codec::erased_serde::Serialize) -> Result<Vec<u8>, faststream_core::codec::EncodeError> { unimplemented!() }
    /// # }
    /// let config = faststream_core::SubscriberConfig::new("orders", ["orders"]).key_codec(MyFormat);
    /// assert_eq!(config.codec.key.unwrap().name(), "mine");
    /// ```
    pub fn key_codec(mut self, codec: impl Codec) -> Self {
        self.codec.key = Some(Arc::new(codec));
        self
    }

    /// The codec its return value is encoded with: its first publisher's that sets one (an
    /// Avro reply has a schema of its own), else its own codec ([`SubscriberCodec::effective`]);
    /// `None` is JSON.
    pub fn reply_codec(&self) -> Option<&CodecRef> {
        self.publishers
            .iter()
            .find_map(|publisher| publisher.codec.as_ref())
            .or(self.codec.effective())
    }

    /// Makes it a batch subscriber (FastStream's `batch=True`): the handler gets each
    /// partition's records in batches of at most `max_records`, each delivered once full or
    /// `timeout` after its first record arrived. A `Vec<T>` payload parameter decodes every
    /// record; the [`Batch`](crate::batch::Batch) extractor gives each record's metadata.
    /// Offsets advance only after the whole batch is done; see [`crate::batch`] for failures.
    ///
    /// ```
    /// use faststream_core::SubscriberConfig;
    /// use std::time::Duration;
    /// let config = SubscriberConfig::new("store_orders", ["orders"])
    ///     .batch(500, Duration::from_millis(200));
    /// assert_eq!(config.backend.batch.map(|b| b.max_records), Some(500));
    /// ```
    pub fn batch(mut self, max_records: usize, timeout: Duration) -> Self {
        self.backend.batch = Some(BatchConfig {
            max_records: max_records.max(1),
            timeout,
        });
        self
    }

    /// Its delivery policy: commit timing and failure handling, each from the most specific
    /// level that sets it (this subscriber, then the routers it was included through, inner
    /// first, then the app it is in); see [`DeliveryPolicy::resolve`] for the rules. Resolved
    /// once when the subscriber starts, and printed in its start line.
    ///
    /// ```
    /// use faststream_core::{AckPolicy, App, CommitTiming, ErrorPolicy, Exhausted, SubscriberConfig};
    /// # fn app<B: faststream_core::Broker>(broker: B) -> App<B> {
    /// let app = App::new(broker)
    ///     .error_policy(ErrorPolicy::retry(3).then_dead_letter())
    ///     .subscriber(
    ///         SubscriberConfig::new("flaky", ["flaky"]).ack_policy(AckPolicy::NackOnError),
    ///         |n: i64| async move { n },
    ///     )
    ///     .subscriber(
    ///         SubscriberConfig::new("manual", ["manual"]).ack_policy(AckPolicy::Manual),
    ///         |n: i64| async move { n },
    ///     );
    /// // The subscriber's own NackOnError wins over the app's error policy...
    /// assert_eq!(app.subscribers()[0].delivery_policy().failure.max_attempts, None);
    /// // ...and Manual sets only the commit timing: the app's dead letter stays.
    /// let manual = app.subscribers()[1].delivery_policy();
    /// assert_eq!(manual.commit, CommitTiming::ByHandler);
    /// assert_eq!(manual.failure.exhausted, Exhausted::DeadLetter { topic: None });
    /// # app
    /// # }
    /// ```
    pub fn delivery_policy(&self) -> DeliveryPolicy {
        let own = PolicyLevel {
            ack_policy: self.delivery.ack_policy,
            error_policy: self.delivery.error_policy.clone(),
        };
        let levels: Vec<PolicyLevel> = std::iter::once(own)
            .chain(self.delivery.router_policies.iter().cloned())
            .chain(std::iter::once(self.delivery.app_policies.clone()))
            .collect();
        DeliveryPolicy::resolve(&levels, self.delivery.backoff)
    }

    /// Adds the default policies of a router it is included through (each router adds its
    /// own as it is included, so inner routers come first).
    pub(crate) fn inherit_router_policies(&mut self, router: &PolicyLevel) {
        if !router.is_empty() {
            self.delivery.router_policies.push(router.clone());
        }
    }

    /// Sets the default policies of the app it is in (replacing earlier ones: the app's
    /// setters apply to subscribers added before them too).
    pub(crate) fn inherit_app_policies(&mut self, app: &PolicyLevel) {
        self.delivery.app_policies = app.clone();
    }

    /// Documents the payloads of a handler with several branches (see
    /// [`Handler::payload_schemas`]) unless the configuration already names its payload.
    pub(crate) fn describe_handler<H: Handler<T>, T>(&mut self, handler: &H) {
        if self.docs.payload_schema.is_none() && self.docs.payload_one_of.is_empty() {
            self.docs.payload_one_of = handler.payload_schemas();
        }
    }

    /// Documents the payload as one of `schemas` (a subscriber with several handlers, each
    /// decoding its own payload type); a [`Filtered`](crate::filter::Filtered) handler fills
    /// this in by itself.
    pub fn payload_one_of(mut self, schemas: impl IntoIterator<Item = SchemaFn>) -> Self {
        self.docs.payload_one_of = schemas.into_iter().collect();
        self
    }

    /// Puts `prefix` in front of every subscribed topic, explicitly assigned partition's
    /// topic, pattern template and publisher topic (a [`Router`](crate::router::Router)'s
    /// prefix).
    pub(crate) fn prefix_topics(&mut self, prefix: &str) {
        if prefix.is_empty() {
            return;
        }
        match &self.backend.pattern {
            Some(pattern) => {
                let pattern = pattern.prefixed(prefix);
                self.backend.topics = vec![pattern.regex()];
                self.backend.pattern = Some(Arc::new(pattern));
            }
            None => {
                for topic in &mut self.backend.topics {
                    topic.insert_str(0, prefix);
                }
            }
        }
        for assigned in &mut self.backend.assignment {
            assigned.topic = format!("{prefix}{}", assigned.topic).into();
        }
        for publisher in &mut self.publishers {
            publisher.topic = format!("{prefix}{}", publisher.topic).into();
        }
    }

    /// Reads every topic matching `template` (FastStream's `pattern=`): literal text and
    /// `{name}` parameters, each one or more characters, which handlers take with the
    /// [`Path`](crate::pattern::Path) extractor. A template starting with `^` is a regular
    /// expression instead, whose named groups are the parameters (an invalid one keeps the
    /// app from starting). Replaces the topics given to `new`. On Kafka, matching topics
    /// created later are picked up at librdkafka's next metadata refresh
    /// (`topic.metadata.refresh.interval.ms`).
    ///
    /// ```
    /// use faststream_core::SubscriberConfig;
    ///
    /// let config = SubscriberConfig::new("orders", Vec::<String>::new()).pattern("orders-{region}");
    /// assert_eq!(config.backend.topics, [r"^orders-(.+)$"]);
    /// let config = SubscriberConfig::new("all_orders", Vec::<String>::new()).pattern("^orders-.*");
    /// assert_eq!(config.backend.topics, ["^orders-.*"]);
    /// ```
    pub fn pattern(mut self, template: impl Into<String>) -> Self {
        let pattern = TopicPattern::new(template);
        self.backend.topics = vec![pattern.regex()];
        self.backend.pattern = Some(Arc::new(pattern));
        self
    }

    /// Reads these partitions of each of the subscriber's topics, assigned explicitly rather
    /// than by the group (FastStream's `partitions=[...]`): no rebalancing, so several
    /// instances may read the same partitions. Offsets are still committed under the group
    /// id, so a restart resumes where it stopped (see [`SubscriberConfig::start_from`]).
    ///
    /// ```
    /// use faststream_core::{StartFrom, SubscriberConfig};
    ///
    /// let audit = SubscriberConfig::new("audit", ["orders"])
    ///     .partitions([0, 1])
    ///     .start_from(StartFrom::Earliest);
    /// assert_eq!(audit.backend.assignment.len(), 2);
    /// ```
    pub fn partitions(mut self, partitions: impl IntoIterator<Item = i32>) -> Self {
        let partitions: Vec<i32> = partitions.into_iter().collect();
        self.backend.assignment = self
            .backend
            .topics
            .iter()
            .flat_map(|topic| {
                partitions
                    .iter()
                    .map(move |p| TopicPartition::new(topic.as_str(), *p))
            })
            .collect();
        self
    }

    /// Where explicitly assigned partitions start (default: the committed offset).
    pub fn start_from(mut self, start: StartFrom) -> Self {
        self.backend.start_from = start;
        self
    }

    /// Calls `hook` with the partitions each rebalance assigns to this subscriber, before
    /// any of their records is handled.
    ///
    /// ```
    /// use faststream_core::SubscriberConfig;
    ///
    /// let config = SubscriberConfig::new("orders", ["orders"])
    ///     .on_assign(|partitions| println!("now consuming {partitions:?}"))
    ///     .on_revoke(|partitions| println!("handed over {partitions:?}"));
    /// ```
    pub fn on_assign(mut self, hook: impl Fn(&[TopicPartition]) + Send + Sync + 'static) -> Self {
        self.backend.rebalance.on_assign = Some(Arc::new(hook));
        self
    }

    /// Calls `hook` with the partitions each rebalance revokes from this subscriber (and all
    /// of them when it stops), once their in-flight work finished and was committed.
    pub fn on_revoke(mut self, hook: impl Fn(&[TopicPartition]) + Send + Sync + 'static) -> Self {
        self.backend.rebalance.on_revoke = Some(Arc::new(hook));
        self
    }

    /// Sets what happens to a failed message: bounded retries, then a dead-letter topic, a
    /// skip or a stop (see [`crate::policy`]). It wins over every ack policy and over the
    /// routers' and the app's error policies.
    pub fn error_policy(mut self, policy: ErrorPolicy) -> Self {
        self.delivery.error_policy = Some(policy);
        self
    }

    /// Ignores an incoming `reply_to` header (FastStream's `no_reply=True`): the return value
    /// goes to the subscriber's publishers only.
    pub fn no_reply(mut self, no_reply: bool) -> Self {
        self.delivery.no_reply = no_reply;
        self
    }

    /// Fails a handler call that takes longer than `limit` (the message then follows the ack
    /// policy like any failure). Off by default.
    pub fn handler_timeout(mut self, limit: Duration) -> Self {
        self.delivery.handler_timeout = Some(limit);
        self
    }

    /// Wraps this subscriber's handler pipeline in `layer` (a tower layer over
    /// [`BoxMessageService`]); see [`crate::middleware`]. Layers added first are outermost,
    /// and all of them sit inside the app's layers.
    ///
    /// ```
    /// use faststream_core::SubscriberConfig;
    /// use faststream_core::middleware::BoxError;
    /// use tower::util::MapErrLayer;
    ///
    /// let config = SubscriberConfig::new("orders", ["orders"])
    ///     .layer(MapErrLayer::new(|err: BoxError| -> BoxError { format!("orders: {err}").into() }));
    /// assert_eq!(config.delivery.layers.len(), 1);
    /// ```
    pub fn layer<L>(mut self, layer: L) -> Self
    where
        L: MessageLayer + Send + Sync + 'static,
    {
        self.delivery.layers.push(HandlerLayer::new(layer));
        self
    }

    /// Sets the consumer group.
    pub fn group_id(mut self, group_id: impl Into<String>) -> Self {
        self.backend.group_id = Some(group_id.into());
        self
    }

    /// Sets the acknowledgement policy. A policy set here wins over a router's and the app's
    /// ([`Router::ack_policy`](crate::Router::ack_policy),
    /// [`App::ack_policy`](crate::App::ack_policy)), and `AckAfter`, `NackOnError` and
    /// `RejectOnError` also over their error policies; see
    /// [`SubscriberConfig::delivery_policy`].
    pub fn ack_policy(mut self, policy: AckPolicy) -> Self {
        self.delivery.ack_policy = Some(policy);
        self
    }

    /// Sets where to start without a committed offset.
    pub fn auto_offset_reset(mut self, reset: OffsetReset) -> Self {
        self.backend.auto_offset_reset = Some(reset);
        self
    }

    /// Sets which records of transactions it reads (see [`IsolationLevel`]); the broker's
    /// default otherwise (`ReadCommitted` unless the broker says else).
    pub fn isolation_level(mut self, level: IsolationLevel) -> Self {
        self.backend.isolation_level = Some(level);
        self
    }

    /// Bounds the bytes of consumed records held in memory (see
    /// [`SubscriberConfig::max_buffer_bytes`]).
    pub fn max_buffer_bytes(mut self, bytes: usize) -> Self {
        self.delivery.max_buffer_bytes = bytes.max(1);
        self
    }

    /// Lets at most `records` handled records per partition wait for their publishes (see
    /// [`SubscriberDelivery::max_pending_per_partition`]); a partition takes no new record past
    /// it. Raise it when the broker is far away: a partition needs about the records it sends
    /// in one round trip plus the producer's `linger.ms` in flight to keep sending.
    ///
    /// ```
    /// use faststream_core::SubscriberConfig;
    ///
    /// let config = SubscriberConfig::new("orders", ["orders"]).max_pending_per_partition(4096);
    /// assert_eq!(config.delivery.max_pending_per_partition, 4096);
    /// ```
    pub fn max_pending_per_partition(mut self, records: usize) -> Self {
        self.delivery.max_pending_per_partition = records.max(1);
        self
    }

    /// Bounds concurrent handler calls across partitions.
    pub fn max_concurrency(mut self, limit: usize) -> Self {
        self.delivery.max_concurrency = Some(limit.max(1));
        self
    }

    /// Handles each partition's records in `n` concurrent lanes (1, the default: one after
    /// another). A record goes to the lane of a hash of its key, so records with the same key
    /// keep their order while different keys run side by side: a handler waiting 2 ms on I/O
    /// no longer caps a partition at 500 records/s. Keyless records all go to one lane (lane
    /// 0), in order among themselves.
    ///
    /// What it keeps: per-key order; offsets committed only below the first record some lane
    /// has not finished (the partition's one progress tracker sees every record); the error
    /// policy per record, retries waiting inside their lane without holding up the others;
    /// `max_concurrency`, the memory budget and dead letters as without lanes. What it gives
    /// up: order between different keys, and after a crash the records above the committed
    /// offset that other lanes had finished run again (as on any restart, more of them). A
    /// lane whose queue is full (a hot key) holds back the partition's intake. A batch
    /// subscriber cannot have lanes: the app refuses to start (a batch is a run of
    /// consecutive records, which lanes would split).
    ///
    /// ```
    /// use faststream_core::SubscriberConfig;
    /// let config = SubscriberConfig::new("orders", ["orders"]).lanes(16);
    /// assert_eq!(config.delivery.lanes, 16);
    /// ```
    pub fn lanes(mut self, n: usize) -> Self {
        self.delivery.lanes = n.max(1);
        self
    }

    /// Makes the subscriber exactly-once (Kafka transactions, KIP-447): everything its
    /// handler causes through the runtime (the return value's publishes, replies, dead
    /// letters, retry-topic records) is written in one transaction together with the input
    /// offsets, so a `read_committed` reader sees each output once, whatever crashes.
    ///
    /// How: the member's partitions share one transactional producer. Every
    /// [`interval`](TransactionCommits::interval) (or after
    /// [`max_records`](TransactionCommits::max_records)), dispatching stops, every worker
    /// finishes its handler and publishes, the watermarks go to the transaction and it
    /// commits; then dispatching resumes. A failed commit aborts, and every partition of the
    /// transaction is rewound to its last committed offset and handled again. A revoke
    /// commits first. Retries with a backoff wait between transactions, never inside one.
    ///
    /// What it does not cover: side effects outside Kafka (a database write runs again when
    /// its transaction aborts), and publishes a handler makes through a broker handle of its
    /// own (use the return value or `#[publisher]`). [`Broker::request`](crate::Broker::request)
    /// inside such a handler is refused: its reply could not be read before the commit.
    /// Manual acknowledgement is refused at start. With [`lanes`](Self::lanes), every lane
    /// reaches the barrier before its partition's watermark is taken. Readers downstream must use
    /// [`IsolationLevel::ReadCommitted`] (the default).
    ///
    /// ```
    /// use faststream_core::SubscriberConfig;
    /// use std::time::Duration;
    /// let config = SubscriberConfig::new("payments", ["payments"]).exactly_once(true);
    /// assert_eq!(config.delivery.exactly_once.unwrap().interval, Duration::from_millis(100));
    /// ```
    pub fn exactly_once(mut self, on: bool) -> Self {
        self.delivery.exactly_once = on.then(TransactionCommits::default);
        self
    }

    /// Makes the subscriber exactly-once ([`SubscriberConfig::exactly_once`]), committing
    /// with `commits`' bounds.
    ///
    /// ```
    /// use faststream_core::{SubscriberConfig, TransactionCommits};
    /// use std::time::Duration;
    /// let config = SubscriberConfig::new("payments", ["payments"])
    ///     .transactions(TransactionCommits::every(Duration::from_millis(500)).max_records(2_000));
    /// assert_eq!(config.delivery.exactly_once.unwrap().max_records, 2_000);
    /// ```
    pub fn transactions(mut self, commits: TransactionCommits) -> Self {
        self.delivery.exactly_once = Some(commits);
        self
    }

    /// Sets the redelivery backoff.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.delivery.backoff = backoff;
        self
    }

    /// Publishes the return value to `topic` too.
    pub fn publish_to(mut self, topic: impl Into<Arc<str>>) -> Self {
        self.publishers.push(PublisherConfig::new(topic));
        self
    }

    /// Adds a publisher with its documentation.
    pub fn publisher(mut self, publisher: PublisherConfig) -> Self {
        self.publishers.push(publisher);
        self
    }

    /// Sets a consumer property for this subscriber only.
    pub fn property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.backend.properties.push((key.into(), value.into()));
        self
    }

    /// Sets the documentation description.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.docs.description = Some(description.into());
        self
    }

    /// Sets the title (the channel's name in the AsyncAPI document).
    pub fn title(mut self, title: impl Into<String>) -> Self {
        self.docs.title = Some(title.into());
        self
    }

    /// Whether the AsyncAPI document lists this subscriber and its publishers (default `true`).
    pub fn include_in_schema(mut self, include: bool) -> Self {
        self.docs.include_in_schema = include;
        self
    }

    /// Sets the payload's schema, e.g. `|g| g.subschema_for::<Order>()`.
    pub fn payload_schema(mut self, schema: SchemaFn) -> Self {
        self.docs.payload_schema = Some(schema);
        self
    }

    /// The consumer group in use: `group_id`, or the subscriber's name.
    pub fn effective_group_id(&self) -> &str {
        self.backend.group_id.as_deref().unwrap_or(&self.name)
    }
}

/// A topic name from the environment variable `var`, else `default` (when it is unset,
/// empty, or not UTF-8): what `#[subscriber(env = "VAR", default = "topic")]` reads when the
/// subscriber is registered.
///
/// ```
/// use faststream_core::subscriber::topic_from_env;
/// assert_eq!(topic_from_env("FASTSTREAM_DOC_UNSET_TOPIC", "orders"), "orders");
/// ```
pub fn topic_from_env(var: &str, default: &str) -> String {
    match std::env::var(var) {
        Ok(value) if !value.trim().is_empty() => value,
        Ok(_) | Err(std::env::VarError::NotPresent) => default.to_owned(),
        Err(std::env::VarError::NotUnicode(_)) => {
            tracing::warn!("`{var}` is not valid UTF-8; using the topic `{default}`");
            default.to_owned()
        }
    }
}

/// Receives subscribers: implemented by the app and by [`Router`](crate::router::Router); used
/// by [`IntoSubscriber`].
pub trait Registry {
    /// Adds a subscriber.
    fn add_subscriber<H, T>(&mut self, config: SubscriberConfig, handler: H)
    where
        H: Handler<T>,
        T: Send + 'static;
}

/// Something that can register itself as a subscriber: what `#[subscriber]` generates. Without
/// the macro, use `FastStream::subscriber(config, handler)`.
pub trait IntoSubscriber {
    /// Registers the subscriber (config and handler) with `registry`.
    fn register<R: Registry>(self, registry: &mut R);
}

/// A tower layer over the handler pipeline: what `App::layer`, `Router::layer`,
/// `SubscriberConfig::layer` and their `layer_for` forms take. Implemented for every
/// `tower::Layer<BoxMessageService>` whose service turns a [`Message`] into a [`Reply`] (errors
/// are [`BoxError`]) and is `Clone` and `Send`, with a `Send` future: one bound in place of
/// three.
///
/// ```
/// use faststream_core::middleware::{BoxError, MessageLayer};
/// use tower::util::MapErrLayer;
///
/// fn named<L: MessageLayer>(layer: L) -> L { layer }
/// let _ = named(MapErrLayer::new(|err: BoxError| -> BoxError { format!("orders: {err}").into() }));
/// ```
pub trait MessageLayer {
    /// Wraps `inner` in this layer, type-erased again.
    fn wrap(&self, inner: BoxMessageService) -> BoxMessageService;
}

impl<L> MessageLayer for L
where
    L: Layer<BoxMessageService>,
    L::Service: Service<Message, Response = Reply, Error = BoxError> + Clone + Send + 'static,
    <L::Service as Service<Message>>::Future: Send + 'static,
{
    fn wrap(&self, inner: BoxMessageService) -> BoxMessageService {
        BoxCloneService::new(self.layer(inner))
    }
}

/// A user layer over the type-erased handler pipeline, stored until the subscriber starts;
/// it may be built from the subscriber's configuration ([`HandlerLayer::per_subscriber`]).
#[derive(Clone)]
pub struct HandlerLayer(Arc<WrapFn>);

/// Wraps the pipeline of the subscriber it is given.
type WrapFn = dyn Fn(&SubscriberConfig, BoxMessageService) -> BoxMessageService + Send + Sync;

impl std::fmt::Debug for HandlerLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HandlerLayer")
    }
}

impl HandlerLayer {
    /// Type-erases `layer`, the same for every subscriber.
    pub fn new<L>(layer: L) -> Self
    where
        L: MessageLayer + Send + Sync + 'static,
    {
        Self(Arc::new(move |_config, inner| layer.wrap(inner)))
    }

    /// A layer built for each subscriber from its configuration (its name, topics, group...),
    /// e.g. to label what it records with the subscriber's name.
    pub fn per_subscriber<F, L>(make: F) -> Self
    where
        F: Fn(&SubscriberConfig) -> L + Send + Sync + 'static,
        L: MessageLayer,
    {
        Self(Arc::new(move |config, inner| make(config).wrap(inner)))
    }

    /// Wraps `inner`, the pipeline of the subscriber `config` describes.
    pub fn apply(&self, config: &SubscriberConfig, inner: BoxMessageService) -> BoxMessageService {
        (self.0)(config, inner)
    }
}
