//! Errors of the framework itself (as opposed to a handler's own errors).

use crate::codec::{DecodeError, EncodeError};

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

/// An error returned by user code: handlers and hooks.
pub type HandlerError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Publishing a record failed: it was not accepted, or the broker did not acknowledge it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("publishing to `{topic}` failed: {message}")]
pub struct PublishError {
    /// The destination topic.
    pub topic: String,
    /// The broker client's description of the failure.
    pub message: String,
}
