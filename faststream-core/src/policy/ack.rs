//! When an offset counts as done, and how long a failing message waits before it runs again.

use std::time::Duration;

/// When a consumed message's offset counts as done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum AckPolicy {
    /// At-least-once (the default): the offset is committed after the handler finished and
    /// Kafka answered for each of its publishes. A failing handler, or a publish Kafka finally
    /// refused (after the producer's own retries), is logged as the message's failure and the
    /// stream moves on; use `NackOnError` to retry such a message instead.
    #[default]
    AckAfter,
    /// At-least-once with redelivery: a failing handler (or failed publish) runs again on the
    /// same message after a backoff, pausing only its partition, until it succeeds.
    NackOnError,
    /// At-most-once: the offset is stored before the handler runs.
    AckFirst,
    /// The handler decides through the `Ack` extractor (ack, nack, reject); undecided counts
    /// as ack once the handler returns.
    Manual,
    /// A failing handler's message is rejected: logged and committed, never retried (on Kafka
    /// the same outcome as `AckAfter`; kept for FastStream's vocabulary).
    RejectOnError,
}

/// Exponential backoff between redeliveries of a failing message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay before the first redelivery.
    pub initial: Duration,
    /// Upper bound of the delay.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(10),
        }
    }
}

impl Backoff {
    /// Delay before redelivery number `attempt` (1-based): doubling, capped at `max`.
    ///
    /// ```
    /// use std::time::Duration;
    /// let b = faststream_core::Backoff { initial: Duration::from_millis(100), max: Duration::from_secs(1) };
    /// assert_eq!(b.delay(1), Duration::from_millis(100));
    /// assert_eq!(b.delay(3), Duration::from_millis(400));
    /// assert_eq!(b.delay(30), Duration::from_secs(1));
    /// ```
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 1_u32
            .checked_shl(attempt.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }
}
