//! The rdkafka client context of the broker's own clients (producer, admin and reader
//! clients; each subscriber's consumer context delegates its token refresh and logs here
//! too), and what the clients report back for health.
//!
//! It does three things librdkafka's default context does not:
//! - Fatal errors and health: librdkafka retries transient errors (a broker down, a
//!   connection reset) by itself, so those are only logged and reflected in health. An error
//!   it cannot recover from (a fatal idempotent-producer state, a fenced member,
//!   authentication refused) leaves a client that runs but does nothing; it is raised through
//!   [`ClientHealth::raise`] so the app stops with exit code 1 instead. The producer's
//!   connection state comes from librdkafka's statistics.
//! - SASL `OAUTHBEARER`: it asks the broker's [`TokenProvider`] for tokens
//!   (`ClientContext::generate_oauth_token`), and can set the first token at once on a client
//!   nobody polls yet ([`KafkaContext::prime_oauth_token`]).
//! - Startup failure detection: librdkafka retries a failed authentication or TLS handshake
//!   forever, reporting it only to the error callback. The context records those errors, so
//!   the startup ping ends at the first one with an error naming the cause instead of waiting
//!   in silence.

use crate::security::TokenProvider;
use faststream_core::broker::ConnectionHealth;
use rdkafka::client::{Client, OAuthToken};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::ClientContext;
use serde::Deserialize;
use std::collections::HashMap;
use std::ffi::CString;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::sync::{Arc, Mutex};
use std::time::UNIX_EPOCH;
use tokio_util::sync::CancellationToken;

/// The context of the clients a [`KafkaBroker`](crate::KafkaBroker) creates: OAuth bearer
/// tokens from the configured [`TokenProvider`], librdkafka's logs and errors into `tracing`,
/// and authentication and TLS failures recorded for the startup check.
#[derive(Clone, Default)]
pub struct KafkaContext {
    oauth: Option<Arc<dyn TokenProvider>>,
    state: Arc<State>,
    /// The producer's: fatal errors and connection state for the app's health.
    health: Option<Arc<ClientHealth>>,
}

#[derive(Default)]
struct State {
    /// Startup checks (pings) in progress: connection failures are theirs to report.
    checking: AtomicUsize,
    /// A startup check already reported an authentication or TLS failure.
    reported: AtomicBool,
    /// The first authentication or TLS failure seen.
    failure: Mutex<Option<String>>,
    /// The last error librdkafka reported.
    last_error: Mutex<Option<String>>,
}

impl std::fmt::Debug for KafkaContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaContext")
            .field("oauth", &self.oauth.as_ref().map(|_| "<token provider>"))
            .finish_non_exhaustive()
    }
}

fn lock(slot: &Mutex<Option<String>>) -> std::sync::MutexGuard<'_, Option<String>> {
    // A poisoned lock only means a panic elsewhere; an Option stays consistent.
    slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Why a connection failed, when it is a failure retrying will not cure: authentication
/// (bad credentials, a mechanism the broker does not enable) or TLS (an untrusted or
/// mismatching certificate).
fn auth_failure(error: &KafkaError, reason: &str) -> Option<String> {
    let reason = reason.trim();
    match error.rdkafka_error_code()? {
        RDKafkaErrorCode::Authentication
        | RDKafkaErrorCode::SaslAuthenticationFailed
        | RDKafkaErrorCode::IllegalSASLState => Some(format!("authentication failed: {reason}")),
        RDKafkaErrorCode::UnsupportedSASLMechanism => Some(format!(
            "SASL mechanism not enabled on the broker: {reason}"
        )),
        RDKafkaErrorCode::SSL => Some(format!("TLS handshake failed: {reason}")),
        _ => None,
    }
}

/// Whether `error` says a broker cannot be reached (what follows a failed handshake).
fn connection_error(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::AllBrokersDown
                | RDKafkaErrorCode::BrokerTransportFailure
                | RDKafkaErrorCode::Resolve
        )
    )
}

impl KafkaContext {
    /// A context whose clients get OAuth bearer tokens from `oauth`, if any.
    pub(crate) fn new(oauth: Option<Arc<dyn TokenProvider>>) -> Self {
        Self {
            oauth,
            state: Arc::default(),
            health: None,
        }
    }

    /// The same context reporting fatal errors and the connection state to `health` (the
    /// producer's).
    pub(crate) fn with_health(mut self, health: Arc<ClientHealth>) -> Self {
        self.health = Some(health);
        self
    }

    /// A fresh token for librdkafka.
    pub(crate) fn oauth_token(&self) -> Result<OAuthToken, Box<dyn std::error::Error>> {
        let provider = self
            .oauth
            .as_ref()
            .ok_or("SASL OAUTHBEARER needs a token provider: use Security::oauthbearer")?;
        let token = provider
            .token()
            .map_err(|err| -> Box<dyn std::error::Error> {
                format!("the OAuth token provider failed: {err}").into()
            })?;
        let lifetime_ms = token
            .expires_at
            .duration_since(UNIX_EPOCH)
            .ok()
            .and_then(|d| i64::try_from(d.as_millis()).ok())
            .ok_or("the OAuth token's expiry is before 1970")?;
        Ok(OAuthToken {
            token: token.token.expose().to_owned(),
            principal_name: token.principal,
            lifetime_ms,
        })
    }

    /// Sets the first OAuth bearer token on `client` now, when SASL `OAUTHBEARER` is
    /// configured. librdkafka asks for it through an event that only a poll serves; an admin
    /// client is never polled that way, and a reader fetches metadata before its first poll,
    /// so both would wait for a token forever. Later refreshes go through the event as usual
    /// where the client is polled. Blocks for as long as the token provider does.
    pub(crate) fn prime_oauth_token<C: ClientContext>(&self, client: &Client<C>) {
        if self.oauth.is_none() {
            return;
        }
        let token = match self.oauth_token() {
            Ok(token) => token,
            Err(err) => {
                tracing::warn!("no OAuth token for a new client: {err}");
                return;
            }
        };
        let (Ok(value), Ok(principal)) = (
            CString::new(token.token),
            CString::new(token.principal_name),
        ) else {
            tracing::warn!("the OAuth token or principal contains a NUL byte; not set");
            return;
        };
        let mut errstr = [0 as std::ffi::c_char; 512];
        // SAFETY: `client` owns a live rd_kafka_t; every pointer passed is valid for the call
        // (the strings are NUL-terminated and outlive it, the error buffer's size is given),
        // and librdkafka copies what it keeps.
        let code = unsafe {
            rdkafka::bindings::rd_kafka_oauthbearer_set_token(
                client.native_ptr(),
                value.as_ptr(),
                token.lifetime_ms,
                principal.as_ptr(),
                std::ptr::null_mut(),
                0,
                errstr.as_mut_ptr(),
                errstr.len(),
            )
        };
        if code != rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            // SAFETY: librdkafka wrote a NUL-terminated message into the buffer (zeroed
            // beforehand, so it is terminated even if it wrote nothing).
            let message = unsafe { std::ffi::CStr::from_ptr(errstr.as_ptr()) };
            tracing::warn!(
                "librdkafka refused the OAuth token: {}",
                message.to_string_lossy()
            );
        }
    }

    /// Starts a startup check: until [`KafkaContext::end_check`], connection failures are
    /// logged at debug level only, the check reports them.
    /// A failure seen before the check does not end it early: librdkafka keeps retrying, so
    /// a failure that still holds shows again within the check.
    pub(crate) fn begin_check(&self) {
        self.state.checking.fetch_add(1, Ordering::AcqRel);
        lock(&self.state.failure).take();
    }

    /// Ends a startup check; `reported` when it returned an authentication or TLS failure.
    /// Until a later check succeeds, connection errors are then logged at debug level only:
    /// the caller has the error, and librdkafka repeats it until the client is dropped.
    pub(crate) fn end_check(&self, reported: bool) {
        // In this order, so an error arriving in between is quiet either way.
        self.state.reported.store(reported, Ordering::Release);
        self.state.checking.fetch_sub(1, Ordering::AcqRel);
    }

    /// Whether both are the context of the same client (clones share their state).
    pub(crate) fn same_client(&self, other: &KafkaContext) -> bool {
        Arc::ptr_eq(&self.state, &other.state)
    }

    /// The first authentication or TLS failure seen, if any.
    pub(crate) fn failure(&self) -> Option<String> {
        lock(&self.state.failure).clone()
    }

    /// The last error librdkafka reported, if any.
    pub(crate) fn last_error(&self) -> Option<String> {
        lock(&self.state.last_error).clone()
    }

    fn quiet(&self) -> bool {
        self.state.checking.load(Ordering::Acquire) > 0
            || self.state.reported.load(Ordering::Acquire)
    }
}

impl ClientContext for KafkaContext {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        // A connection failure (`FAIL`) during a startup check is the check's to report, once;
        // so is Cyrus SASL's own line on a failed GSSAPI handshake (`LIBSASL`), whose cause the
        // failure repeats.
        let level = if matches!(fac, "FAIL" | "LIBSASL") && self.quiet() {
            RDKafkaLogLevel::Debug
        } else {
            level
        };
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(target: "librdkafka", "librdkafka: {fac} {message}")
            }
            RDKafkaLogLevel::Warning => {
                tracing::warn!(target: "librdkafka", "librdkafka: {fac} {message}")
            }
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", "librdkafka: {fac} {message}")
            }
            RDKafkaLogLevel::Debug => {
                tracing::debug!(target: "librdkafka", "librdkafka: {fac} {message}")
            }
        }
    }

    fn stats_raw(&self, statistics: &[u8]) {
        let (Some(health), Some(stats)) = (&self.health, Stats::parse(statistics)) else {
            return;
        };
        let connected = stats.connected();
        if connected != health.producer_connection().connected {
            if connected {
                tracing::info!("producer connected to Kafka again");
            }
            health.set_producer_connection(ConnectionHealth {
                connected,
                error: (!connected).then(|| "no broker connection is up".to_owned()),
            });
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if let Some(health) = &self.health {
            // An idempotent producer's fatal error arrives with its underlying code; whoever
            // waits in `KafkaBroker::fatal_error` asks the client whether it is now fatal.
            health.error_seen.notify_waiters();
            match classify(&error, reason) {
                ErrorClass::Fatal(cause) => health.raise(format!("producer: {cause}")),
                ErrorClass::Disconnected(reason) => {
                    health.set_producer_connection(ConnectionHealth {
                        connected: false,
                        error: Some(reason),
                    });
                }
                ErrorClass::Transient => {}
            }
        }
        // "All broker connections are down" follows the error that says why: keep that one.
        let summary = error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown);
        let mut last = lock(&self.state.last_error);
        if !summary || last.is_none() {
            *last = Some(reason.trim().to_owned());
        }
        drop(last);
        let failure = auth_failure(&error, reason);
        let repeat = (failure.is_some() || connection_error(&error))
            && self.state.reported.load(Ordering::Acquire);
        if let Some(failure) = failure {
            lock(&self.state.failure).get_or_insert(failure);
        }
        if self.state.checking.load(Ordering::Acquire) > 0 || repeat {
            tracing::debug!(target: "librdkafka", "librdkafka: {error}: {reason}");
        } else {
            tracing::error!(target: "librdkafka", "librdkafka: {error}: {reason}");
        }
    }

    fn generate_oauth_token(
        &self,
        _oauthbearer_config: Option<&str>,
    ) -> Result<OAuthToken, Box<dyn std::error::Error>> {
        self.oauth_token()
    }
}

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

    pub(crate) fn set_producer_connection(&self, connection: ConnectionHealth) {
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
        Some(code) if crate::error::denied(code) => {
            ErrorClass::Fatal(format!("authentication or authorization failed: {reason}"))
        }
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

/// The reader clients (reply reader, dead-letter replay) consume with no rebalance handling.
impl ConsumerContext for KafkaContext {}

/// Milliseconds since the Unix epoch of `time` (0 before it).
#[cfg(test)]
fn epoch_ms(time: std::time::SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::OAuthToken as Token;
    use std::time::Duration;

    #[test]
    fn tokens_come_from_the_provider() {
        let context = KafkaContext::new(Some(Arc::new(|| -> Result<Token, std::io::Error> {
            Ok(Token::new("t0k", "alice", Duration::from_secs(60)))
        })));
        let token = context.oauth_token().expect("a token");
        assert_eq!(token.token, "t0k");
        assert_eq!(token.principal_name, "alice");
        let now = epoch_ms(std::time::SystemTime::now());
        assert!((now + 50_000..=now + 61_000).contains(&token.lifetime_ms));

        let failing = KafkaContext::new(Some(Arc::new(|| -> Result<Token, std::io::Error> {
            Err(std::io::Error::other("idp down"))
        })));
        let err = match failing.oauth_token() {
            Ok(_) => panic!("a token from a failing provider"),
            Err(err) => err.to_string(),
        };
        assert!(err.contains("idp down"), "{err}");
        assert!(KafkaContext::default().oauth_token().is_err());
    }

    #[test]
    fn authentication_and_tls_errors_are_startup_failures() {
        let context = KafkaContext::default();
        context.error(
            KafkaError::Global(RDKafkaErrorCode::BrokerTransportFailure),
            "127.0.0.1:1/bootstrap: Connect failed",
        );
        assert_eq!(context.failure(), None);
        assert!(context
            .last_error()
            .is_some_and(|e| e.contains("Connect failed")));
        context.error(
            KafkaError::Global(RDKafkaErrorCode::Authentication),
            "SASL authentication error: invalid credentials",
        );
        context.error(
            KafkaError::Global(RDKafkaErrorCode::SSL),
            "SSL handshake failed",
        );
        assert_eq!(
            context.failure().as_deref(),
            Some("authentication failed: SASL authentication error: invalid credentials")
        );
        // A new check starts afresh.
        context.begin_check();
        assert_eq!(context.failure(), None);
        context.error(
            KafkaError::Global(RDKafkaErrorCode::SSL),
            "SSL handshake failed",
        );
        context.end_check(true);
        assert_eq!(
            context.failure().as_deref(),
            Some("TLS handshake failed: SSL handshake failed")
        );
    }

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
