//! The rdkafka client context of the broker's own clients (producer, admin and reader
//! clients; each subscriber's consumer context delegates its token refresh here too).
//!
//! It does two things librdkafka's default context does not:
//! - SASL `OAUTHBEARER`: it asks the broker's [`TokenProvider`] for tokens
//!   (`ClientContext::generate_oauth_token`), and can set the first token at once on a client
//!   nobody polls yet ([`KafkaContext::prime_oauth_token`]).
//! - Startup failure detection: librdkafka retries a failed authentication or TLS handshake
//!   forever, reporting it only to the error callback. The context records those errors, so
//!   the startup ping ends at the first one with an error naming the cause instead of waiting
//!   in silence.

use crate::security::TokenProvider;
use rdkafka::client::{Client, OAuthToken};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::ClientContext;
use std::ffi::CString;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::UNIX_EPOCH;

/// The context of the clients a [`KafkaBroker`](crate::KafkaBroker) creates: OAuth bearer
/// tokens from the configured [`TokenProvider`], librdkafka's logs and errors into `tracing`,
/// and authentication and TLS failures recorded for the startup check.
#[derive(Clone, Default)]
pub struct KafkaContext {
    oauth: Option<Arc<dyn TokenProvider>>,
    state: Arc<State>,
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
        }
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
        // A connection failure (`FAIL`) during a startup check is the check's to report, once.
        let level = if fac == "FAIL" && self.quiet() {
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

    fn error(&self, error: KafkaError, reason: &str) {
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
}
