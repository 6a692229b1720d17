//! How a batch subscriber groups records.

use std::time::Duration;

/// How a batch subscriber groups records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchConfig {
    /// At most this many records per batch (at least 1).
    pub max_records: usize,
    /// How long a batch waits for more records after its first one arrived. Zero: a batch is
    /// whatever is queued when its first record arrives.
    pub timeout: Duration,
}

impl BatchConfig {
    /// FastStream's default batch timeout (`batch_timeout_ms=200`).
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(200);
}
