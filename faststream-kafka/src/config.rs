//! Broker settings and how they become librdkafka client configurations.

use crate::context::KafkaContext;
use crate::security::{RedactedProperties, SaslMechanism, Security};
use faststream_asyncapi::{SecurityScheme, ServerInfo};
use faststream_core::{IsolationLevel, OffsetReset, SubscriberConfig};
use rdkafka::ClientConfig;

/// `transaction.timeout.ms` of transactional producers (see
/// [`BrokerSettings::transactional_producer_config`]).
pub(crate) const TRANSACTION_TIMEOUT_MS: &str = "15000";
/// Consumers' `fetch.queue.backoff.ms` (see [`BrokerSettings::consumer_config`]).
const FETCH_QUEUE_BACKOFF_MS: &str = "10";

/// Settings shared by the broker's producer and consumers.
#[derive(Clone)]
pub(crate) struct BrokerSettings {
    pub(crate) bootstrap_servers: String,
    pub(crate) client_id: String,
    pub(crate) auto_offset_reset: OffsetReset,
    /// Consumers' `isolation.level` unless a subscriber sets its own.
    pub(crate) isolation_level: IsolationLevel,
    /// The `transactional.id` of the producer of `begin_transaction`; `None`: a new one per
    /// handle.
    pub(crate) transactional_id: Option<String>,
    /// Typed security; raw `security.*`, `sasl.*`, `ssl.*` properties set with `set` win.
    pub(crate) security: Option<Security>,
    pub(crate) common: Vec<(String, String)>,
    pub(crate) producer: Vec<(String, String)>,
    pub(crate) consumer: Vec<(String, String)>,
    /// The topic replies to this handle's requests go to; `None`: `faststream-replies-{uuid}`.
    pub(crate) reply_topic: Option<String>,
    /// The instance part of exactly-once members' transactional ids; `None`: from the
    /// environment (see `member::instance_id`).
    pub(crate) instance_id: Option<String>,
}

impl BrokerSettings {
    pub(crate) fn new(bootstrap_servers: String) -> Self {
        Self {
            bootstrap_servers,
            client_id: "faststream".to_owned(),
            auto_offset_reset: OffsetReset::default(),
            isolation_level: IsolationLevel::default(),
            transactional_id: None,
            security: None,
            reply_topic: None,
            instance_id: None,
            common: Vec::new(),
            producer: Vec::new(),
            consumer: Vec::new(),
        }
    }

    fn base(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.bootstrap_servers)
            .set("client.id", &self.client_id);
        for (key, value) in self.security.iter().flat_map(Security::properties) {
            config.set(key, value);
        }
        for (key, value) in &self.common {
            config.set(key, value);
        }
        config
    }

    /// Producer defaults: idempotent (no duplicates or reordering from retries), a short
    /// linger so concurrent publishes batch, many in flight. User properties win.
    pub(crate) fn producer_config(&self) -> ClientConfig {
        let mut config = self.base();
        config
            .set("enable.idempotence", "true")
            // The connection state health reports comes from librdkafka's statistics.
            .set("statistics.interval.ms", crate::context::STATS_INTERVAL_MS)
            .set("linger.ms", "5")
            // Keys land where the Java client, aiokafka (FastStream's default backend) and the
            // in-memory TestBroker put them, not where librdkafka's CRC32 default would.
            .set("partitioner", "murmur2_random")
            .set("queue.buffering.max.messages", "1000000")
            .set("queue.buffering.max.kbytes", "1048576");
        for (key, value) in self.common.iter().chain(&self.producer) {
            config.set(key, value);
        }
        config
    }

    /// The producer of transactions outside handlers: the shared producer's settings, with
    /// `transactional.id` set and a 15 s `transaction.timeout.ms` (Kafka's default is 60 s):
    /// a process that dies with a transaction open holds `read_committed` readers of its
    /// partitions back until the broker aborts it after that timeout, unless a producer with
    /// the same id starts first; 15 s bounds the stall while leaving a commit of thousands of
    /// records plenty of time. User properties win.
    pub(crate) fn transactional_producer_config(&self, transactional_id: &str) -> ClientConfig {
        let mut config = self.producer_config();
        config
            .set("transactional.id", transactional_id)
            .set("transaction.timeout.ms", TRANSACTION_TIMEOUT_MS);
        for (key, value) in self.common.iter().chain(&self.producer) {
            config.set(key, value);
        }
        config
    }

    /// Consumer defaults for at-least-once: offsets are stored by the runtime only after a
    /// message is done (`enable.auto.offset.store=false`) and committed in the background
    /// every second (`enable.auto.commit=true`), never one synchronous commit per message.
    pub(crate) fn consumer_config(&self, sub: &SubscriberConfig) -> ClientConfig {
        let mut config = self.base();
        let reset = sub
            .backend
            .auto_offset_reset
            .unwrap_or(self.auto_offset_reset);
        config
            .set("group.id", sub.effective_group_id())
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "1000")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            // When the workers fall behind, the fetch loop stops taking records and
            // librdkafka's queue fills to `queued.min.messages`; librdkafka then postpones
            // every partition's next fetch by this long (1 s by default), so a backlog that
            // drains in 0.1 s left the subscriber idle for the rest of the second (seen as a
            // 0.6 s stall in the middle of the pipeline benchmark). 10 ms re-checks the queue
            // often enough to never starve a worker, at a cost of one look per partition.
            .set("fetch.queue.backoff.ms", FETCH_QUEUE_BACKOFF_MS)
            // Lag for health comes from librdkafka's statistics.
            .set("statistics.interval.ms", crate::context::STATS_INTERVAL_MS)
            // As the Java client does: subscribing creates a missing topic when the broker allows.
            .set("allow.auto.create.topics", "true")
            .set("auto.offset.reset", reset.as_str())
            .set(
                "isolation.level",
                sub.backend
                    .isolation_level
                    .unwrap_or(self.isolation_level)
                    .as_str(),
            );
        if sub.delivery.exactly_once.is_some() {
            // Offsets commit with the member's transactions only: the consumer never commits
            // (its own commit of an older stored offset would move the group back).
            config.set("enable.auto.commit", "false");
        }
        for (key, value) in self
            .common
            .iter()
            .chain(&self.consumer)
            .chain(&sub.backend.properties)
        {
            config.set(key, value);
        }
        config
    }
}

impl std::fmt::Debug for BrokerSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerSettings")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("client_id", &self.client_id)
            .field("auto_offset_reset", &self.auto_offset_reset)
            .field("security", &self.security)
            .field("common", &RedactedProperties(&self.common))
            .field("producer", &RedactedProperties(&self.producer))
            .field("consumer", &RedactedProperties(&self.consumer))
            .field("reply_topic", &self.reply_topic)
            .finish()
    }
}

impl BrokerSettings {
    /// A client context for one new client: OAuth tokens from the typed security's provider.
    pub(crate) fn context(&self) -> KafkaContext {
        KafkaContext::new(self.security.as_ref().and_then(Security::token_provider))
    }

    /// An admin client (topic creation).
    pub(crate) fn admin_config(&self) -> ClientConfig {
        self.base()
    }

    /// A consumer that reads assigned partitions and commits nothing (for tools such as the
    /// dead-letter replay).
    pub(crate) fn reader_config(&self) -> ClientConfig {
        let mut config = self.base();
        config
            .set("group.id", "faststream-reader")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false");
        for (key, value) in self.common.iter().chain(&self.consumer) {
            config.set(key, value);
        }
        config
    }

    /// The last value set for `key` (case-insensitive): consumer and producer properties win
    /// over common ones, as in the client configurations.
    fn property(&self, key: &str) -> Option<String> {
        let raw = self
            .common
            .iter()
            .chain(&self.producer)
            .chain(&self.consumer)
            .filter(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.clone())
            .next_back();
        raw.or_else(|| {
            self.security.as_ref().and_then(|security| {
                security
                    .properties()
                    .into_iter()
                    .filter(|(k, _)| k.eq_ignore_ascii_case(key))
                    .map(|(_, v)| v)
                    .next_back()
            })
        })
    }

    /// The AsyncAPI server: bootstrap hosts, `kafka` or `kafka-secure` (SSL, SASL_SSL), and
    /// the SASL mechanism as a security scheme (`X509` for a TLS client certificate).
    pub(crate) fn server_info(&self) -> ServerInfo {
        let hosts = self
            .bootstrap_servers
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty());
        let protocol = self
            .property("security.protocol")
            .unwrap_or_else(|| "plaintext".to_owned())
            .to_ascii_lowercase();
        let secure = matches!(protocol.as_str(), "ssl" | "sasl_ssl");
        let mut info = ServerInfo::new(hosts, if secure { "kafka-secure" } else { "kafka" });
        if protocol.starts_with("sasl_") {
            let mechanism = self
                .property("sasl.mechanisms")
                .or_else(|| self.property("sasl.mechanism"))
                .unwrap_or_else(|| SaslMechanism::Gssapi.as_str().to_owned())
                .to_ascii_uppercase();
            let (name, kind) = match mechanism.as_str() {
                "PLAIN" => ("user-password", "userPassword"),
                "SCRAM-SHA-256" => ("scram256", "scramSha256"),
                "SCRAM-SHA-512" => ("scram512", "scramSha512"),
                "OAUTHBEARER" => ("oauthbearer", "oauth2"),
                _ => ("gssapi", "gssapi"),
            };
            info = info.security(SecurityScheme::new(name, kind));
        }
        let client_cert = self.property("ssl.certificate.location").is_some()
            || self.property("ssl.certificate.pem").is_some();
        if secure && client_cert {
            info = info.security(SecurityScheme::new("x509", "X509"));
        }
        info
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumer_defaults_are_at_least_once_and_overridable() {
        let mut settings = BrokerSettings::new("h:1".into());
        settings
            .consumer
            .push(("session.timeout.ms".into(), "6000".into()));
        let sub = SubscriberConfig::new("handle", ["t"]).property("auto.commit.interval.ms", "250");
        let config = settings.consumer_config(&sub);
        assert_eq!(config.get("group.id"), Some("handle"));
        assert_eq!(config.get("enable.auto.offset.store"), Some("false"));
        assert_eq!(config.get("enable.auto.commit"), Some("true"));
        assert_eq!(config.get("auto.offset.reset"), Some("earliest"));
        assert_eq!(config.get("session.timeout.ms"), Some("6000"));
        assert_eq!(config.get("auto.commit.interval.ms"), Some("250"));
        // Not librdkafka's 1 s: a full fetch queue would otherwise idle a caught-up worker.
        assert_eq!(config.get("fetch.queue.backoff.ms"), Some("10"));
        let sub = sub.property("fetch.queue.backoff.ms", "500");
        assert_eq!(
            settings.consumer_config(&sub).get("fetch.queue.backoff.ms"),
            Some("500")
        );
    }

    /// `KafkaBroker::set` is for "the producer and every consumer": it must win over the
    /// defaults of both (it used to be applied first, and the defaults overrode it).
    #[test]
    fn common_properties_win_over_the_client_defaults() {
        let mut settings = BrokerSettings::new("h:1".into());
        settings
            .common
            .push(("statistics.interval.ms".into(), "60000".into()));
        settings.common.push(("linger.ms".into(), "0".into()));
        settings
            .common
            .push(("enable.auto.commit".into(), "false".into()));
        let producer = settings.producer_config();
        assert_eq!(producer.get("statistics.interval.ms"), Some("60000"));
        assert_eq!(producer.get("linger.ms"), Some("0"));
        let consumer = settings.consumer_config(&SubscriberConfig::new("h", ["t"]));
        assert_eq!(consumer.get("statistics.interval.ms"), Some("60000"));
        assert_eq!(consumer.get("enable.auto.commit"), Some("false"));
        // A client-specific property still wins over a common one.
        settings.producer.push(("linger.ms".into(), "7".into()));
        assert_eq!(settings.producer_config().get("linger.ms"), Some("7"));
    }

    #[test]
    fn isolation_level_comes_from_the_subscriber_then_the_broker() {
        let mut settings = BrokerSettings::new("h:1".into());
        let plain = SubscriberConfig::new("a", ["t"]);
        let dirty =
            SubscriberConfig::new("b", ["t"]).isolation_level(IsolationLevel::ReadUncommitted);
        assert_eq!(
            settings.consumer_config(&plain).get("isolation.level"),
            Some("read_committed")
        );
        assert_eq!(
            settings.consumer_config(&dirty).get("isolation.level"),
            Some("read_uncommitted")
        );
        settings.isolation_level = IsolationLevel::ReadUncommitted;
        assert_eq!(
            settings.consumer_config(&plain).get("isolation.level"),
            Some("read_uncommitted")
        );
        let clean =
            SubscriberConfig::new("c", ["t"]).isolation_level(IsolationLevel::ReadCommitted);
        assert_eq!(
            settings.consumer_config(&clean).get("isolation.level"),
            Some("read_committed")
        );
    }

    #[test]
    fn the_transactional_producer_has_its_id_and_a_short_timeout() {
        let mut settings = BrokerSettings::new("h:1".into());
        let config = settings.transactional_producer_config("billing-tx");
        assert_eq!(config.get("transactional.id"), Some("billing-tx"));
        assert_eq!(config.get("transaction.timeout.ms"), Some("15000"));
        assert_eq!(config.get("enable.idempotence"), Some("true"));
        settings
            .producer
            .push(("transaction.timeout.ms".into(), "30000".into()));
        let config = settings.transactional_producer_config("billing-tx");
        assert_eq!(
            config.get("transaction.timeout.ms"),
            Some("30000"),
            "the user's wins"
        );
    }

    #[test]
    fn producer_is_idempotent_by_default() {
        let mut settings = BrokerSettings::new("h:1".into());
        assert_eq!(
            settings.producer_config().get("enable.idempotence"),
            Some("true")
        );
        settings.producer.push(("linger.ms".into(), "0".into()));
        assert_eq!(settings.producer_config().get("linger.ms"), Some("0"));
        assert_eq!(
            settings.producer_config().get("statistics.interval.ms"),
            Some("1000")
        );
        assert_eq!(
            settings.producer_config().get("bootstrap.servers"),
            Some("h:1")
        );
    }

    #[test]
    fn server_info_follows_security_settings() {
        let mut settings = BrokerSettings::new("a:9092, b:9092".into());
        let plain = settings.server_info();
        assert_eq!(plain.hosts, ["a:9092", "b:9092"]);
        assert_eq!(plain.protocol, "kafka");
        assert_eq!(plain.protocol_version, "auto");
        assert!(plain.security.is_empty());

        settings
            .common
            .push(("security.protocol".into(), "SASL_SSL".into()));
        settings
            .producer
            .push(("sasl.mechanism".into(), "SCRAM-SHA-512".into()));
        let secure = settings.server_info();
        assert_eq!(secure.protocol, "kafka-secure");
        assert_eq!(secure.security.len(), 1);
        assert_eq!(secure.security[0].name, "scram512");
        assert_eq!(secure.security[0].kind, "scramSha512");

        let mut ssl = BrokerSettings::new("h:1".into());
        ssl.consumer
            .push(("security.protocol".into(), "ssl".into()));
        assert_eq!(ssl.server_info().protocol, "kafka-secure");
        assert!(ssl.server_info().security.is_empty());
    }

    #[test]
    fn typed_security_feeds_client_configs_and_the_document() {
        use crate::security::{Security, Tls};
        let mut settings = BrokerSettings::new("h:9095".into());
        settings.security =
            Some(Security::scram512("alice", "pa55-word").with_ssl(Tls::new().ca_file("/ca.pem")));
        for config in [
            settings.producer_config(),
            settings.consumer_config(&SubscriberConfig::new("s", ["t"])),
            settings.admin_config(),
            settings.reader_config(),
        ] {
            assert_eq!(config.get("security.protocol"), Some("SASL_SSL"));
            assert_eq!(config.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
            assert_eq!(config.get("sasl.password"), Some("pa55-word"));
            assert_eq!(config.get("ssl.ca.location"), Some("/ca.pem"));
        }
        let info = settings.server_info();
        assert_eq!(info.protocol, "kafka-secure");
        assert_eq!(info.security.len(), 1);
        assert_eq!(info.security[0].kind, "scramSha512");

        // A raw property still wins over the typed one.
        settings
            .common
            .push(("sasl.mechanism".into(), "PLAIN".into()));
        assert_eq!(
            settings.producer_config().get("sasl.mechanism"),
            Some("PLAIN")
        );
        assert_eq!(settings.server_info().security[0].kind, "userPassword");

        let mut mtls = BrokerSettings::new("h:9094".into());
        mtls.security = Some(Security::ssl(
            Tls::new().client_cert_files("client.pem", "client.key"),
        ));
        let info = mtls.server_info();
        assert_eq!(info.protocol, "kafka-secure");
        assert_eq!(info.security.len(), 1);
        assert_eq!(info.security[0].kind, "X509");

        let oauth = BrokerSettings {
            security: Some(Security::oauthbearer(
                || -> Result<crate::OAuthToken, std::io::Error> {
                    Err(std::io::Error::other("unused"))
                },
            )),
            ..BrokerSettings::new("h:1".into())
        };
        assert_eq!(oauth.server_info().protocol, "kafka");
        assert_eq!(oauth.server_info().security[0].kind, "oauth2");
    }

    #[test]
    fn settings_and_broker_debug_hide_secrets() {
        use crate::security::{Security, Tls};
        let broker = crate::KafkaBroker::new("h:1")
            .security(
                Security::plain("alice", "pa55-word")
                    .with_ssl(Tls::new().client_cert_pem("CERT", "PRIVATE-KEY-BODY")),
            )
            .set("sasl.password", "raw-pa55")
            .producer_set("ssl.key.password", "key-pass")
            .consumer_set("sasl.oauthbearer.client.secret", "client-s3cret");
        let shown = format!("{broker:?} {:?}", broker.settings);
        for secret in [
            "pa55-word",
            "PRIVATE-KEY-BODY",
            "raw-pa55",
            "key-pass",
            "client-s3cret",
        ] {
            assert!(!shown.contains(secret), "{secret} shown in {shown}");
        }
        assert!(shown.contains("alice"), "{shown}");
        assert!(shown.contains("sasl.password"), "{shown}");
    }
}
