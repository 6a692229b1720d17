//! Apache Kafka backend of faststream-rs, on rdkafka (librdkafka) and tokio.
//!
//! [`KafkaBroker`] holds the connection settings and one shared idempotent producer; each
//! subscriber gets its own consumer (one group member) whose partitions are processed
//! concurrently, in order within a partition, with at-least-once commits.
//!
//! Everything rdkafka lives here, and only here: this crate implements the runtime's broker
//! seam (`faststream_core::Broker`, `Publish`) and describes its server to the AsyncAPI
//! generator (`faststream_asyncapi::DescribeServer`). It must never depend on the facade, the
//! macros, a CLI or an HTTP crate, and it holds no handler logic: order, progress, ack policies
//! and middleware belong to the runtime.
//!
//! Publishing goes through the [`Broker`] trait's methods, the same on every broker:
//!
//! ```no_run
//! use faststream_kafka::KafkaBroker;
//! use faststream_core::{Broker, Record};
//! use std::time::Duration;
//! # async fn demo() -> faststream_core::Result<()> {
//! let broker = KafkaBroker::new("localhost:9092").client_id("billing");
//! let delivered = broker
//!     .publish_record(Record::encode("in-topic", &serde_json::json!({"user": "John", "user_id": 1}))?.key("john"))
//!     .await?;
//! println!("partition {} offset {}", delivered.partition, delivered.offset);
//! // A request: the reply of whoever answers on `reply_to`, a Rust or a Python subscriber.
//! let squared: i64 = broker.request_as(Record::encode("square", &7)?, Duration::from_secs(5)).await?;
//! # Ok(()) }
//! ```
#![doc(test(attr(deny(warnings), allow(dead_code, unused_variables))))]

mod admin;
mod config;
mod consumer;
mod context;
mod due_gate;
mod error;
mod fetch_queue;
mod fetched_headers;
mod member;
mod partition_map;
mod produce;
mod producer;
mod record_bytes;
mod replay;
mod request;
pub mod security;
#[cfg(feature = "test-hooks")]
mod test_hooks;
mod transaction;

pub use context::KafkaContext;
pub use error::classify;
pub use producer::{DeliverySlot, KafkaDelivery, KafkaProducer, KafkaPublisher};
pub use rdkafka;
pub use security::{OAuthToken, SaslMechanism, Secret, Security, Tls, TokenProvider};

use config::BrokerSettings;
use faststream_asyncapi::{DescribeServer, ServerInfo};
use faststream_core::broker::{
    ExactlyOnce, PartitionWorkers, ReplayReport, RetryTopic, SubscribeOptions, Subscription,
    Transaction,
};
use faststream_core::{
    Broker, Error, ErrorClass, IsolationLevel, OffsetReset, Publish, Record, Result,
    SubscriberConfig,
};
use rdkafka::producer::Producer;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// An Apache Kafka cluster: bootstrap servers, client settings, and a shared producer.
///
/// Any librdkafka property can be passed through with [`KafkaBroker::set`] (producer and
/// consumers), [`KafkaBroker::producer_set`] or [`KafkaBroker::consumer_set`]. Defaults:
/// client id `faststream`, idempotent producer with `linger.ms=5`, consumers with
/// `auto.offset.reset=earliest`, offsets committed in the background after processing, and
/// `fetch.queue.backoff.ms=10` (librdkafka's 1 s left a caught-up subscriber idle for up to a
/// second after its queue had been full).
/// A subscriber's consumer group is its `group_id`, or the handler's name when unset.
#[derive(Clone)]
pub struct KafkaBroker {
    settings: Arc<BrokerSettings>,
    producer: Arc<OnceLock<KafkaPublisher>>,
    /// Fatal errors and connection state, reported by every client of this handle.
    health: Arc<context::ClientHealth>,
    /// Set up by the first request.
    replies: Arc<tokio::sync::OnceCell<request::ReplyReader>>,
    /// The producer of `begin_transaction`, created by the first transaction.
    transactions: transaction::TransactionalSlot,
    /// Exactly-once members created as the app starts, each taken by its subscriber's
    /// `subscribe` (which binds its consumer to it).
    members: Arc<std::sync::Mutex<std::collections::HashMap<String, Arc<member::KafkaMember>>>>,
}

impl std::fmt::Debug for KafkaBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaBroker")
            .field("bootstrap_servers", &self.settings.bootstrap_servers)
            .field("client_id", &self.settings.client_id)
            .field("security", &self.settings.security)
            .finish_non_exhaustive()
    }
}

impl KafkaBroker {
    /// A broker reached through `bootstrap_servers` (`host:port[,host:port...]`).
    pub fn new(bootstrap_servers: impl Into<String>) -> Self {
        Self {
            settings: Arc::new(BrokerSettings::new(bootstrap_servers.into())),
            producer: Arc::new(OnceLock::new()),
            health: Arc::default(),
            replies: Arc::new(tokio::sync::OnceCell::new()),
            transactions: Arc::default(),
            members: Arc::default(),
        }
    }

    fn settings_mut(&mut self) -> &mut BrokerSettings {
        Arc::make_mut(&mut self.settings)
    }

    /// Sets the client id reported to Kafka (default `faststream`).
    pub fn client_id(mut self, client_id: impl Into<String>) -> Self {
        self.settings_mut().client_id = client_id.into();
        self
    }

    /// Where consumers without a committed offset start (default earliest).
    pub fn auto_offset_reset(mut self, reset: OffsetReset) -> Self {
        self.settings_mut().auto_offset_reset = reset;
        self
    }

    /// Which records of transactions subscribers read, unless they set their own
    /// ([`SubscriberConfig::isolation_level`]); default `ReadCommitted`, librdkafka's.
    pub fn isolation_level(mut self, level: IsolationLevel) -> Self {
        self.settings_mut().isolation_level = level;
        self
    }

    /// The `transactional.id` of the producer [`Broker::begin_transaction`] uses. Default:
    /// `{client id}-tx-{uuid}`, new for each producer, so two instances never fence each other.
    /// A stable id (one per instance, never shared by two running at once) lets a restarted
    /// instance abort the transaction its predecessor left open at once, instead of after the
    /// 15 s `transaction.timeout.ms` during which `read_committed` readers of its partitions
    /// wait.
    pub fn transactional_id(mut self, id: impl Into<String>) -> Self {
        self.settings_mut().transactional_id = Some(id.into());
        self
    }

    /// The instance part of the transactional ids of this handle's exactly-once subscribers
    /// (`{group}-{subscriber}-{instance}`, see [`SubscriberConfig::exactly_once`]). Default:
    /// `FASTSTREAM_INSTANCE_ID`, else the host name. It must stay the same across restarts
    /// (a restarted instance then aborts what its predecessor left open at once) and differ
    /// between instances running at once (two with one id fence each other).
    ///
    /// ```
    /// let broker = faststream_kafka::KafkaBroker::new("localhost:9092").instance_id("billing-2");
    /// ```
    pub fn instance_id(mut self, id: impl Into<String>) -> Self {
        self.settings_mut().instance_id = Some(id.into());
        self
    }

    /// The `transactional.id` of the exactly-once subscriber `config` on this handle:
    /// `{group}-{subscriber}-{instance}`, the subscriber's name left out when it is the
    /// group's (see [`KafkaBroker::instance_id`]).
    pub fn member_transactional_id(&self, config: &SubscriberConfig) -> String {
        let group = config.effective_group_id();
        let instance = member::instance_id(self.settings.instance_id.as_deref());
        if group == config.name {
            format!("{group}-{instance}")
        } else {
            format!("{group}-{}-{instance}", config.name)
        }
    }

    /// Starts a transactional producer with `transactional_id` and registers it
    /// (`init_transactions`), as a second instance with that id would: the producer that had
    /// the id is fenced and its open transaction aborted. For tests of fencing.
    pub async fn fence(&self, transactional_id: &str) -> Result<()> {
        let producer: KafkaProducer = self
            .settings
            .transactional_producer_config(transactional_id)
            .create_with_context(self.settings.context())
            .map_err(|err| error::config("cannot create the fencing producer", err))?;
        transaction::blocking(
            "cannot initialize transactions",
            transaction::CALL_TIMEOUT + transaction::CALL_GRACE,
            move || producer.init_transactions(transaction::CALL_TIMEOUT),
        )
        .await
    }

    /// The topic replies to this handle's [`request`](Broker::request)s go to (created with
    /// one partition when missing). Default: `faststream-replies-{uuid}`, new for each handle,
    /// so two instances never read each other's replies.
    pub fn reply_topic(mut self, topic: impl Into<String>) -> Self {
        self.settings_mut().reply_topic = Some(topic.into());
        self
    }

    /// How every client of this broker connects and authenticates: TLS, SASL (PLAIN,
    /// SCRAM-SHA-256/512, OAUTHBEARER), or both. It sets `security.protocol` and the `sasl.*`
    /// and `ssl.*` properties (a raw property set with [`KafkaBroker::set`] still wins), and
    /// the AsyncAPI server's protocol and security scheme.
    ///
    /// ```
    /// use faststream_kafka::{KafkaBroker, Security, Tls};
    ///
    /// // Confluent Cloud: SASL PLAIN with an API key over TLS, the system's CA store.
    /// let cloud = KafkaBroker::new("pkc-xxxxx.eu-west-1.aws.confluent.cloud:9092")
    ///     .security(Security::plain("API_KEY", "API_SECRET").with_ssl(Tls::new()));
    ///
    /// // An on-premise cluster: SCRAM-SHA-512 over TLS with the cluster's own CA.
    /// let onprem = KafkaBroker::new("kafka-1:9095,kafka-2:9095")
    ///     .security(Security::scram512("billing", "s3cret").with_ssl(Tls::new().ca_file("/etc/kafka/ca.pem")));
    ///
    /// // Mutual TLS.
    /// let mtls = KafkaBroker::new("kafka-1:9094").security(Security::ssl(
    ///     Tls::new()
    ///         .ca_file("/etc/kafka/ca.pem")
    ///         .client_cert_files("/etc/kafka/client.pem", "/etc/kafka/client.key"),
    /// ));
    /// assert!(!format!("{onprem:?}").contains("s3cret"));
    /// ```
    pub fn security(mut self, security: Security) -> Self {
        self.settings_mut().security = Some(security);
        self
    }

    /// Sets a librdkafka property on the producer and every consumer.
    pub fn set(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings_mut().common.push((key.into(), value.into()));
        self
    }

    /// Sets a librdkafka property on the producer only.
    pub fn producer_set(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings_mut()
            .producer
            .push((key.into(), value.into()));
        self
    }

    /// Sets a librdkafka property on consumers only.
    pub fn consumer_set(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings_mut()
            .consumer
            .push((key.into(), value.into()));
        self
    }

    /// The bootstrap servers.
    pub fn bootstrap_servers(&self) -> &str {
        &self.settings.bootstrap_servers
    }

    fn shared_publisher(&self) -> Result<KafkaPublisher> {
        match self.producer.get() {
            Some(publisher) => Ok(publisher.clone()),
            None => self.create_shared_publisher(|_| {}),
        }
    }

    /// The shared publisher with a startup check begun on its context
    /// ([`KafkaContext::begin_check`]); the caller ends it.
    fn shared_publisher_checked(&self) -> Result<KafkaPublisher> {
        if let Some(publisher) = self.producer.get() {
            publisher.context().begin_check();
            return Ok(publisher.clone());
        }
        // librdkafka connects as soon as the producer exists: a TLS or authentication failure
        // can arrive before this function returns, and must already count as the check's.
        self.create_shared_publisher(KafkaContext::begin_check)
    }

    /// Creates the shared publisher, `prepare` running on its context first; a publisher
    /// created meanwhile by another caller wins, and `prepare` then runs on its context.
    fn create_shared_publisher(&self, prepare: impl Fn(&KafkaContext)) -> Result<KafkaPublisher> {
        let context = self
            .settings
            .context()
            .with_health(Arc::clone(&self.health));
        prepare(&context);
        let producer: KafkaProducer = self
            .settings
            .producer_config()
            .create_with_context(context.clone())
            .map_err(|err| error::config("cannot create the producer", err))?;
        let shared = self
            .producer
            .get_or_init(|| KafkaPublisher::new(producer, context.clone()));
        if !shared.context().same_client(&context) {
            prepare(shared.context());
        }
        Ok(shared.clone())
    }

    async fn request_within(
        &self,
        mut record: Record,
        timeout: Duration,
    ) -> Result<faststream_core::Message> {
        let replies = self
            .replies
            .get_or_try_init(|| {
                let topic = self.settings.reply_topic.clone().unwrap_or_else(|| {
                    format!("faststream-replies-{}", uuid::Uuid::new_v4().simple())
                });
                request::ReplyReader::start(&self.settings, topic)
            })
            .await?;
        let correlation_id = uuid::Uuid::new_v4().hyphenated().to_string();
        let topic = record.topic.to_string();
        record.correlation_id = Some(correlation_id.clone().into());
        record = record.reply_to(replies.topic().to_string());
        let reply = replies.expect(&correlation_id);
        let delivery = match self.shared_publisher()?.enqueue(record).await {
            Ok(delivery) => delivery,
            Err(err) => {
                replies.forget(&correlation_id);
                return Err(err.into());
            }
        };
        if let Err(err) = delivery.await {
            replies.forget(&correlation_id);
            return Err(err.into());
        }
        match tokio::time::timeout(timeout, reply).await {
            Ok(Ok(message)) => Ok(message),
            _ => {
                replies.forget(&correlation_id);
                Err(Error::RequestTimeout {
                    topic,
                    reply_topic: replies.topic().to_string(),
                    correlation_id,
                    timeout,
                })
            }
        }
    }
}

impl DescribeServer for KafkaBroker {
    /// The bootstrap servers, `kafka` (or `kafka-secure` when `security.protocol` is `SSL` or
    /// `SASL_SSL`) and the SASL mechanism as a security scheme.
    fn server_info(&self) -> ServerInfo {
        self.settings.server_info()
    }
}

/// How long one metadata request of the startup check may take before the check looks for
/// a recorded authentication or TLS failure.
const PING_STEP: Duration = Duration::from_millis(250);

/// One metadata request naming no topic: the brokers answer with themselves and the topics
/// this client already knows (none at start), which is all the startup check needs. rdkafka's
/// `fetch_metadata(None)` asks for every topic of the cluster instead: on a cluster of
/// thousands of topics that is a large response parsed at every start (on the test broker of
/// this project, tens of millions of instructions, and under valgrind a 250 ms step that
/// timed out and was asked again).
fn broker_metadata<C: rdkafka::ClientContext>(
    client: &rdkafka::client::Client<C>,
    timeout: Duration,
) -> rdkafka::error::KafkaResult<()> {
    use rdkafka::bindings as rd;
    let mut metadata: *const rd::rd_kafka_metadata_t = std::ptr::null();
    let millis = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: the client's handle is live for the call; `all_topics = 0` with no topic handle
    // asks for the locally known topics only; on success librdkafka hands over `metadata`,
    // which is destroyed right away.
    let code = unsafe {
        rd::rd_kafka_metadata(
            client.native_ptr(),
            0,
            std::ptr::null_mut(),
            &mut metadata,
            millis,
        )
    };
    if code != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
        return Err(rdkafka::error::KafkaError::MetadataFetch(code.into()));
    }
    if !metadata.is_null() {
        // SAFETY: `metadata` came from the successful `rd_kafka_metadata` above, once.
        unsafe { rd::rd_kafka_metadata_destroy(metadata) };
    }
    Ok(())
}

async fn ping_until(publisher: &KafkaPublisher, servers: &str, timeout: Duration) -> Result<()> {
    let context = publisher.context();
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let step = deadline
            .saturating_duration_since(std::time::Instant::now())
            .min(PING_STEP);
        let producer = publisher.producer().clone();
        let fetched = tokio::task::spawn_blocking(move || broker_metadata(producer.client(), step))
            .await
            .map_err(|err| error::task_failed("metadata request task failed", err))?;
        let err = match fetched {
            Ok(_) => return Ok(()),
            Err(err) => err,
        };
        if let Some(failure) = context.failure() {
            return Err(Error::broker(
                format!("cannot connect to Kafka at {servers}"),
                ErrorClass::Fatal,
                failure,
            ));
        }
        if std::time::Instant::now() >= deadline {
            let class = classify(&err);
            // librdkafka's last error event says why better than the request's timeout.
            let cause: faststream_core::error::BoxError = match context.last_error() {
                Some(last) => last.into(),
                None => Box::new(err),
            };
            return Err(Error::broker(
                format!("cannot reach Kafka at {servers} within {timeout:?}"),
                class,
                cause,
            ));
        }
    }
}

impl Broker for KafkaBroker {
    type Publisher = KafkaPublisher;

    fn publisher(&self) -> Result<KafkaPublisher> {
        self.shared_publisher()
    }

    async fn subscribe(
        &self,
        config: Arc<SubscriberConfig>,
        workers: Arc<dyn PartitionWorkers>,
        options: SubscribeOptions,
    ) -> Result<Box<dyn Subscription>> {
        let member = self
            .members
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(&config.name);
        consumer::subscribe(
            &self.settings,
            config,
            workers,
            options,
            Arc::clone(&self.health),
            member,
        )
    }

    /// One transactional producer per exactly-once subscriber (see the `member` module docs
    /// for its `transactional.id`).
    async fn exactly_once(&self, config: &SubscriberConfig) -> Result<ExactlyOnce<KafkaPublisher>> {
        let id = self.member_transactional_id(config);
        let producer_config = self.settings.transactional_producer_config(&id);
        let (member, publisher) =
            member::KafkaMember::start(id, producer_config, self.settings.context()).await?;
        self.members
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(config.name.clone(), Arc::clone(&member));
        Ok(ExactlyOnce {
            publisher,
            transactions: member,
        })
    }

    /// Concurrent requests of this handle share one reply reader on its
    /// [`reply_topic`](KafkaBroker::reply_topic), started by the first request.
    async fn begin_transaction(&self) -> Result<Transaction> {
        let id = self.settings.transactional_id.clone().unwrap_or_else(|| {
            format!(
                "{}-tx-{}",
                self.settings.client_id,
                uuid::Uuid::new_v4().simple()
            )
        });
        // Not reporting to the app's health: a fenced transactional producer is replaced by
        // the next transaction, it does not stop the app.
        transaction::begin(
            &self.transactions,
            self.settings.transactional_producer_config(&id),
            self.settings.context(),
        )
        .await
    }

    async fn request(&self, record: Record, timeout: Duration) -> Result<faststream_core::Message> {
        faststream_core::broker::refuse_request()?;
        self.request_within(record, timeout).await
    }

    async fn create_retry_topics(&self, topics: &[RetryTopic]) -> Result<()> {
        admin::create_retry_topics(&self.settings, topics).await
    }

    async fn replay_dead_letters(&self, topic: &str, dry_run: bool) -> Result<ReplayReport> {
        replay::replay(&self.settings, self.shared_publisher()?, topic, dry_run).await
    }

    fn connection(&self) -> faststream_core::broker::ConnectionHealth {
        self.health.producer_connection()
    }

    fn fatal_error(&self) -> futures::future::BoxFuture<'static, String> {
        let producer = Arc::clone(&self.producer);
        Box::pin(Arc::clone(&self.health).fatal(move || {
            let (_, reason) = producer.get()?.producer().client().fatal_error()?;
            Some(reason)
        }))
    }

    /// Fetches the cluster's metadata. An authentication or TLS failure (bad credentials, a
    /// mechanism the broker does not enable, an untrusted certificate) ends the wait at once
    /// with an error naming it: librdkafka itself would retry it silently forever.
    async fn ping(&self, timeout: Duration) -> Result<()> {
        let publisher = self.shared_publisher_checked()?;
        let context = publisher.context().clone();
        let result = ping_until(&publisher, &self.settings.bootstrap_servers, timeout).await;
        context.end_check(result.is_err() && context.failure().is_some());
        result
    }
}
