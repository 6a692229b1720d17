//! What every rdkafka client of a broker reports back: fatal errors (which stop the app),
//! connection state and consumer lag (from librdkafka's statistics).
//!
//! librdkafka retries transient errors (a broker down, a connection reset) by itself, so
//! those are only logged and reflected in health. An error it cannot recover from (a fatal
//! idempotent-producer state, a fenced member, authentication refused) leaves a client that
//! runs but does nothing; it is raised through [`ClientHealth::raise`] so the app stops with
//! exit code 1 instead.

use faststream_core::broker::ConnectionHealth;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::ClientContext;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use tokio_util::sync::CancellationToken;

/// How often librdkafka emits statistics (connection state, lag) unless the user sets
/// `statistics.interval.ms`.
pub(crate) const STATS_INTERVAL_MS: &str = "1000";

/// The fatal-error signal and the producer's connection, shared by a broker's clients.
#[derive(Debug, Default)]
pub(crate) struct ClientHealth {
    fatal: CancellationToken,
    cause: OnceLock<String>,
    producer: Mutex<ConnectionHealth>,
    /// Woken on every producer error event.
    pub(crate) error_seen: tokio::sync::Notify,
}

impl ClientHealth {
    /// Records the first fatal error and wakes whoever waits for one.
    pub(crate) fn raise(&self, cause: String) {
        if self.cause.set(cause).is_ok() {
            self.fatal.cancel();
        }
    }

    /// Resolves with the first fatal error's cause: one raised by a client context, or the
    /// fatal state `producer_fatal` finds after an error event.
    pub(crate) async fn fatal(
        self: Arc<Self>,
        producer_fatal: impl Fn() -> Option<String> + Send,
    ) -> String {
        loop {
            let error_seen = self.error_seen.notified();
            tokio::pin!(error_seen);
            error_seen.as_mut().enable();
            if let Some(cause) = producer_fatal() {
                self.raise(format!("producer: {cause}"));
            }
            if let Some(cause) = self.cause.get() {
                return cause.clone();
            }
            tokio::select! {
                () = self.fatal.cancelled() => {}
                () = error_seen => {}
            }
        }
    }

    pub(crate) fn producer_connection(&self) -> ConnectionHealth {
        self.producer.lock().map(|c| c.clone()).unwrap_or_default()
    }

    fn set_producer_connection(&self, connection: ConnectionHealth) {
        if let Ok(mut slot) = self.producer.lock() {
            *slot = connection;
        }
    }
}

/// How a client error is handled.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ErrorClass {
    /// The client cannot recover: stop the app, naming the cause.
    Fatal(String),
    /// No broker answers; librdkafka keeps trying.
    Disconnected(String),
    /// Anything else librdkafka retries by itself.
    Transient,
}

/// Sorts a librdkafka error event. `reason` is librdkafka's description; for a fatal error
/// it names the underlying one.
pub(crate) fn classify(error: &KafkaError, reason: &str) -> ErrorClass {
    let code = match error {
        KafkaError::Global(code) => Some(*code),
        _ => error.rdkafka_error_code(),
    };
    match code {
        Some(RDKafkaErrorCode::Fatal) => ErrorClass::Fatal(reason.to_owned()),
        Some(
            RDKafkaErrorCode::Authentication
            | RDKafkaErrorCode::SaslAuthenticationFailed
            | RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::GroupAuthorizationFailed
            | RDKafkaErrorCode::ClusterAuthorizationFailed,
        ) => ErrorClass::Fatal(format!("authentication or authorization failed: {reason}")),
        Some(RDKafkaErrorCode::AllBrokersDown) => ErrorClass::Disconnected(reason.to_owned()),
        _ => ErrorClass::Transient,
    }
}

/// The parts of librdkafka's statistics JSON the framework reads.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Stats {
    #[serde(default)]
    brokers: HashMap<String, BrokerStats>,
    #[serde(default)]
    pub(crate) topics: HashMap<String, TopicStats>,
}

#[derive(Debug, Deserialize)]
struct BrokerStats {
    state: String,
    #[serde(default = "minus_one")]
    nodeid: i32,
}

#[derive(Debug, Deserialize)]
pub(crate) struct TopicStats {
    #[serde(default)]
    pub(crate) partitions: HashMap<String, PartitionStats>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct PartitionStats {
    pub(crate) partition: i32,
    #[serde(default = "minus_one_i64")]
    hi_offset: i64,
    #[serde(default = "minus_one_i64")]
    lo_offset: i64,
    /// The next offset to commit, as stored by the runtime (negative: none yet).
    #[serde(default = "minus_one_i64")]
    stored_offset: i64,
    #[serde(default = "minus_one_i64")]
    committed_offset: i64,
}

impl PartitionStats {
    /// Records after the last one finished here: from what the runtime stored, else the
    /// group's commit, else (nothing ever committed) the start of the log. `None` before
    /// librdkafka knows the high watermark.
    pub(crate) fn lag(&self) -> Option<i64> {
        if self.hi_offset < 0 {
            return None;
        }
        let done = [self.stored_offset, self.committed_offset, self.lo_offset]
            .into_iter()
            .find(|offset| *offset >= 0)?;
        Some((self.hi_offset - done).max(0))
    }
}

fn minus_one() -> i32 {
    -1
}

fn minus_one_i64() -> i64 {
    -1
}

impl Stats {
    pub(crate) fn parse(raw: &[u8]) -> Option<Self> {
        match serde_json::from_slice(raw) {
            Ok(stats) => Some(stats),
            Err(err) => {
                tracing::debug!("unreadable librdkafka statistics: {err}");
                None
            }
        }
    }

    /// Whether a real broker (not the bootstrap entry) has a connection up.
    pub(crate) fn connected(&self) -> bool {
        self.brokers
            .values()
            .any(|b| b.nodeid >= 0 && b.state == "UP")
    }
}

/// The producer's context: fatal errors and its connection state.
#[derive(Debug, Clone)]
pub(crate) struct ProducerContext {
    pub(crate) health: Arc<ClientHealth>,
}

impl ClientContext for ProducerContext {
    fn stats_raw(&self, statistics: &[u8]) {
        if let Some(stats) = Stats::parse(statistics) {
            let connected = stats.connected();
            let was = self.health.producer_connection();
            if connected != was.connected {
                if connected {
                    tracing::info!("producer connected to Kafka again");
                }
                self.health.set_producer_connection(ConnectionHealth {
                    connected,
                    error: (!connected).then(|| "no broker connection is up".to_owned()),
                });
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // An idempotent producer's fatal error arrives with its underlying code; whoever
        // waits in `KafkaBroker::fatal_error` asks the client whether it is now fatal.
        self.health.error_seen.notify_waiters();
        match classify(&error, reason) {
            ErrorClass::Fatal(cause) => self.health.raise(format!("producer: {cause}")),
            ErrorClass::Disconnected(reason) => {
                tracing::warn!("producer: no Kafka broker answers ({reason}); retrying");
                self.health.set_producer_connection(ConnectionHealth {
                    connected: false,
                    error: Some(reason),
                });
            }
            ErrorClass::Transient => tracing::warn!("producer: {error}: {reason}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_classified_by_code() {
        assert_eq!(
            classify(
                &KafkaError::Global(RDKafkaErrorCode::Fatal),
                "Fatal error: Broker: Producer fenced"
            ),
            ErrorClass::Fatal("Fatal error: Broker: Producer fenced".into())
        );
        assert!(matches!(
            classify(
                &KafkaError::Global(RDKafkaErrorCode::Authentication),
                "SASL authentication error"
            ),
            ErrorClass::Fatal(cause) if cause.contains("SASL authentication error")
        ));
        assert!(matches!(
            classify(
                &KafkaError::Global(RDKafkaErrorCode::AllBrokersDown),
                "1/1 brokers are down"
            ),
            ErrorClass::Disconnected(_)
        ));
        assert_eq!(
            classify(
                &KafkaError::Global(RDKafkaErrorCode::BrokerTransportFailure),
                "disconnected"
            ),
            ErrorClass::Transient
        );
    }

    #[test]
    fn statistics_give_connection_and_lag() {
        let raw = br#"{"name":"c","brokers":{
            "127.0.0.1:9092/bootstrap":{"state":"UP","nodeid":-1},
            "127.0.0.1:9092/1":{"state":"DOWN","nodeid":1}},
          "topics":{"t":{"partitions":{
            "0":{"partition":0,"hi_offset":10,"lo_offset":0,"stored_offset":3,"committed_offset":2},
            "1":{"partition":1,"hi_offset":10,"lo_offset":4,"stored_offset":-1001,"committed_offset":-1001},
            "2":{"partition":2,"hi_offset":-1,"lo_offset":-1,"stored_offset":-1001,"committed_offset":-1001},
            "-1":{"partition":-1}}}}}"#;
        let stats = Stats::parse(raw).expect("parses");
        assert!(!stats.connected());
        let lag = |p: &str| stats.topics["t"].partitions[p].lag();
        assert_eq!(lag("0"), Some(7));
        assert_eq!(
            lag("1"),
            Some(6),
            "nothing committed: from the start of the log"
        );
        assert_eq!(lag("2"), None);
        let up = br#"{"brokers":{"b/1":{"state":"UP","nodeid":1}}}"#;
        assert!(Stats::parse(up).expect("parses").connected());
    }
}
