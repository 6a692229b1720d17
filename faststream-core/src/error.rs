//! Errors of the framework itself (as opposed to a handler's own errors).

use std::fmt;
use std::time::Duration;

/// The error type of faststream operations.
///
/// Broker, configuration and fatal errors keep the error that caused them as their
/// [`source`](std::error::Error::source) (an rdkafka error, a task's `JoinError`...), and every
/// error has a [class](Error::class) that says how to handle it.
///
/// ```
/// use faststream_core::error::{Error, ErrorClass};
/// use std::error::Error as _;
///
/// let cause = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
/// let err = Error::broker("cannot reach `orders`", ErrorClass::Retriable, cause);
/// assert_eq!(err.to_string(), "broker error: cannot reach `orders`: refused");
/// assert_eq!(err.class(), ErrorClass::Retriable);
/// assert!(err.source().is_some_and(|cause| cause.is::<std::io::Error>()));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The broker could not be reached or refused a request.
    #[error("broker error: {context}{}", CausedBy(.source))]
    Broker {
        /// What was being done, e.g. "cannot create topic `orders`".
        context: String,
        /// How to handle the error: the broker client's classification.
        class: ErrorClass,
        /// The broker client's error, when there is one.
        #[source]
        source: Option<BoxError>,
    },
    /// A configuration value is missing or invalid (class [`ErrorClass::Fatal`]).
    #[error("configuration error: {context}{}", CausedBy(.source))]
    Config {
        /// What is wrong, e.g. "cannot create the producer".
        context: String,
        /// The error that shows it, when there is one.
        #[source]
        source: Option<BoxError>,
    },
    /// Publishing a record failed.
    #[error(transparent)]
    Publish(#[from] PublishError),
    /// A payload could not be decoded.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A value could not be encoded.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// A lifecycle hook failed.
    #[error("{hook} hook failed: {source}")]
    Hook {
        /// Which hook (`on_startup`, ...).
        hook: &'static str,
        /// What it returned.
        source: BoxError,
    },
    /// A request got no reply in time.
    #[error("no reply on `{reply_topic}` to the request sent to `{topic}` with correlation id `{correlation_id}` within {timeout:?}")]
    RequestTimeout {
        /// Where the request went.
        topic: String,
        /// Where the reply was expected.
        reply_topic: String,
        /// The request's correlation id.
        correlation_id: String,
        /// How long it waited.
        timeout: std::time::Duration,
    },
    /// The broker client hit an error it cannot recover from (authentication refused, a
    /// fatal idempotent-producer state...): the app stopped.
    #[error("fatal broker error: {context}{}", CausedBy(.source))]
    Fatal {
        /// What happened, e.g. "producer: Broker: Producer fenced".
        context: String,
        /// The broker client's error, when there is one.
        #[source]
        source: Option<BoxError>,
    },
    /// A seek named a partition its subscriber does not own: never assigned to it, or
    /// revoked (the seek waited for a rebalance in progress to end). Nothing was moved.
    #[error(
        "subscriber `{subscriber}` cannot seek {partition}: it does not own it (it owns {owned:?})"
    )]
    NotOwned {
        /// The subscriber asked to seek.
        subscriber: String,
        /// The partition it does not own, e.g. `orders[3]`.
        partition: String,
        /// What it owns now.
        owned: Vec<String>,
    },
    /// An I/O error (signals, files).
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// How an error is handled, in the three classes of Kafka's clients (KIP-1050).
///
/// ```
/// use faststream_core::error::{Error, ErrorClass};
///
/// fn should_retry(err: &Error) -> bool {
///     err.class() == ErrorClass::Retriable
/// }
/// assert!(!should_retry(&Error::config_msg("`bootstrap.servers` is empty")));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// Transient: the same operation may succeed if tried again (a broker is down, a
    /// request timed out, a leader is moving).
    Retriable,
    /// The operation failed for good but the client is still usable: a transaction in
    /// progress must be aborted (then its work may run again in a new one); outside a
    /// transaction, the operation is given up.
    Abortable,
    /// Trying again cannot help: the client is unusable (fenced, fatal idempotent-producer
    /// state, authentication refused) or the configuration is wrong. The app stops.
    Fatal,
}

impl Error {
    /// A broker error: `context` says what was being done, `source` (the broker client's
    /// error) why it failed, `class` how to handle it.
    pub fn broker(
        context: impl Into<String>,
        class: ErrorClass,
        source: impl Into<BoxError>,
    ) -> Self {
        Self::Broker {
            context: context.into(),
            class,
            source: Some(source.into()),
        }
    }

    /// A broker error with no underlying error (e.g. an answer that lacks a topic).
    pub fn broker_msg(context: impl Into<String>, class: ErrorClass) -> Self {
        Self::Broker {
            context: context.into(),
            class,
            source: None,
        }
    }

    /// A configuration error: `context` says what is wrong, `source` shows it.
    pub fn config(context: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self::Config {
            context: context.into(),
            source: Some(source.into()),
        }
    }

    /// A configuration error with no underlying error.
    pub fn config_msg(context: impl Into<String>) -> Self {
        Self::Config {
            context: context.into(),
            source: None,
        }
    }

    /// A fatal broker error: `context` says what happened, `source` is the client's error.
    pub fn fatal(context: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self::Fatal {
            context: context.into(),
            source: Some(source.into()),
        }
    }

    /// A fatal broker error with no underlying error.
    pub fn fatal_msg(context: impl Into<String>) -> Self {
        Self::Fatal {
            context: context.into(),
            source: None,
        }
    }

    /// How to handle this error.
    ///
    /// A [`Broker`](Error::Broker) error has the class its backend gave it; configuration,
    /// fatal and hook errors are [`Fatal`](ErrorClass::Fatal); a payload that cannot be
    /// decoded or encoded is [`Abortable`](ErrorClass::Abortable); a publish that failed
    /// (after the client's own retries) has the class its backend gave it
    /// ([`PublishError::class`]); a request that timed out and an interrupted or
    /// timed-out I/O call are [`Retriable`](ErrorClass::Retriable), other I/O errors
    /// [`Fatal`](ErrorClass::Fatal).
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Broker { class, .. } => *class,
            Self::Config { .. } | Self::Fatal { .. } | Self::Hook { .. } => ErrorClass::Fatal,
            Self::Decode(_) | Self::Encode(_) | Self::NotOwned { .. } => ErrorClass::Abortable,
            Self::Publish(publish) => publish.class,
            Self::RequestTimeout { .. } => ErrorClass::Retriable,
            Self::Io(err) => match err.kind() {
                std::io::ErrorKind::Interrupted
                | std::io::ErrorKind::WouldBlock
                | std::io::ErrorKind::TimedOut => ErrorClass::Retriable,
                _ => ErrorClass::Fatal,
            },
        }
    }
}

/// Displays `: {cause}` after an error's context, or nothing when there is no cause.
struct CausedBy<'a>(&'a Option<BoxError>);

impl fmt::Display for CausedBy<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(cause) => write!(f, ": {cause}"),
            None => Ok(()),
        }
    }
}

/// Result with the framework's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Any error, boxed: what handlers and hooks may return, and the error type of the handler
/// pipeline (tower's `BoxError`, so tower layers fit). Layers tell errors apart by
/// downcasting, e.g. `err.is::<HandlerPanicked>()`.
///
/// ```
/// use faststream_core::BoxError;
///
/// async fn handler(amount: i64) -> Result<String, BoxError> {
///     if amount < 0 {
///         return Err(format!("negative amount {amount}").into());
///     }
///     let doubled: i64 = "2".parse::<i64>()? * amount; // any std error converts with `?`
///     Ok(doubled.to_string())
/// }
/// ```
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Publishing a record failed: it was not accepted, or the broker did not acknowledge it.
///
/// ```
/// use faststream_core::{ErrorClass, PublishError};
///
/// let refused = PublishError::new("orders", "the record is too large");
/// assert_eq!(refused.class, ErrorClass::Retriable);
/// let fenced = PublishError::new("orders", "fenced").with_class(ErrorClass::Fatal);
/// assert!(fenced.to_string().starts_with("publishing to `orders` failed"));
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[error("publishing to `{topic}` failed: {message}")]
pub struct PublishError {
    /// The destination topic.
    pub topic: String,
    /// The broker client's description of the failure.
    pub message: String,
    /// How the client classed the failure: [`Fatal`](ErrorClass::Fatal) when the producer
    /// is unusable (fenced by a newer one with its transactional id),
    /// [`Abortable`](ErrorClass::Abortable) when the record is refused for good (too large,
    /// invalid), [`Retriable`](ErrorClass::Retriable) otherwise. An exactly-once subscriber
    /// aborts its transaction at once on a fatal one, and on any refused delivery inside it,
    /// rather than retrying into a transaction that cannot commit.
    pub class: ErrorClass,
}

impl PublishError {
    /// A refused publish to `topic`, of class [`Retriable`](ErrorClass::Retriable).
    pub fn new(topic: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            topic: topic.into(),
            message: message.into(),
            class: ErrorClass::Retriable,
        }
    }

    /// The same failure, of class `class`.
    #[must_use]
    pub fn with_class(mut self, class: ErrorClass) -> Self {
        self.class = class;
        self
    }
}

/// A payload that could not be decoded into the handler's type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (at `{path}`)")]
pub struct DecodeError {
    /// Where in the document decoding failed, serde style (`user.id`, `.` for the root).
    pub path: String,
    /// What went wrong.
    pub message: String,
}

/// A value that could not be encoded (serde refused it, e.g. a map with non-string keys).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("could not encode the payload: {0}")]
pub struct EncodeError(pub String);

/// A message was nacked through the `Ack` extractor: run it again after the backoff.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("nacked by its handler")]
pub struct Nacked;

/// A message was rejected through the `Ack` extractor: skip it.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("rejected by its handler")]
pub struct Rejected;

/// The handler (or an extractor) panicked.
#[derive(Debug, Clone, thiserror::Error)]
#[error("handler panicked: {0}")]
pub struct HandlerPanicked(pub String);

impl HandlerPanicked {
    /// The error of a caught panic, its payload as text.
    ///
    /// ```
    /// use faststream_core::middleware::HandlerPanicked;
    /// let panic = std::panic::catch_unwind(|| panic!("bad input")).unwrap_err();
    /// assert_eq!(HandlerPanicked::from_payload(&*panic).0, "bad input");
    /// ```
    pub fn from_payload(panic: &(dyn std::any::Any + Send)) -> Self {
        let text = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "non-string panic payload".to_owned());
        Self(text)
    }
}

/// The handler did not finish within the subscriber's `handler_timeout`.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("handler timed out after {0:?}")]
pub struct HandlerTimedOut(pub Duration);

/// A batch handler's error naming the record that failed: the records before it are done,
/// the failed one follows the error policy alone, and the ones after it come again as the
/// next batch.
///
/// ```
/// use faststream_core::batch::BatchFailed;
/// async fn store(amounts: Vec<i64>) -> Result<(), BatchFailed> {
///     for (index, amount) in amounts.iter().enumerate() {
///         if *amount < 0 {
///             return Err(BatchFailed::at(index, format!("negative amount {amount}")));
///         }
///     }
///     Ok(())
/// }
/// ```
#[derive(Debug, thiserror::Error)]
#[error("record {index} of the batch failed: {source}")]
pub struct BatchFailed {
    /// The failed record's index in the batch.
    pub index: usize,
    /// Why it failed.
    #[source]
    pub source: BoxError,
}

impl BatchFailed {
    /// Record `index` of the batch failed because of `error`.
    pub fn at(index: usize, error: impl Into<BoxError>) -> Self {
        Self {
            index,
            source: error.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn display_names_the_context_then_the_cause() {
        let cause = std::io::Error::other("refused");
        let err = Error::config("cannot create the producer", cause);
        assert_eq!(
            err.to_string(),
            "configuration error: cannot create the producer: refused"
        );
        assert!(err.source().is_some_and(|s| s.is::<std::io::Error>()));
        let err = Error::fatal_msg("producer: fenced");
        assert_eq!(err.to_string(), "fatal broker error: producer: fenced");
        assert!(err.source().is_none());
    }

    #[test]
    fn every_error_has_a_class() {
        let timed_out = std::io::Error::from(std::io::ErrorKind::TimedOut);
        let cases = [
            (
                Error::broker_msg("moving", ErrorClass::Retriable),
                ErrorClass::Retriable,
            ),
            (
                Error::broker("refused", ErrorClass::Abortable, "too large"),
                ErrorClass::Abortable,
            ),
            (Error::config_msg("no servers"), ErrorClass::Fatal),
            (Error::fatal_msg("fenced"), ErrorClass::Fatal),
            (
                Error::Encode(EncodeError("map key".into())),
                ErrorClass::Abortable,
            ),
            (Error::Io(timed_out), ErrorClass::Retriable),
            (
                Error::Io(std::io::Error::from(std::io::ErrorKind::PermissionDenied)),
                ErrorClass::Fatal,
            ),
        ];
        for (err, class) in cases {
            assert_eq!(err.class(), class, "{err}");
        }
    }
}
