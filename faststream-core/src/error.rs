//! Errors of the framework itself (as opposed to a handler's own errors).

use std::time::Duration;

/// The error type of faststream operations.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The broker could not be reached or refused a request.
    #[error("broker error: {0}")]
    Broker(String),
    /// A configuration value is missing or invalid.
    #[error("configuration error: {0}")]
    Config(String),
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
        source: HandlerError,
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
    #[error("fatal broker error: {0}")]
    Fatal(String),
    /// An I/O error (signals, files).
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Result with the framework's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The error type of the handler pipeline: any error, boxed (tower's convention). Layers tell
/// errors apart by downcasting, e.g. `err.is::<HandlerPanicked>()`.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// An error returned by user code: handlers and hooks (the same type as [`BoxError`]).
pub type HandlerError = BoxError;

/// Publishing a record failed: it was not accepted, or the broker did not acknowledge it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("publishing to `{topic}` failed: {message}")]
pub struct PublishError {
    /// The destination topic.
    pub topic: String,
    /// The broker client's description of the failure.
    pub message: String,
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
