//! The error type of the chaos tools.

/// A boxed error: this is a binary, and its errors end as one line on stderr.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
