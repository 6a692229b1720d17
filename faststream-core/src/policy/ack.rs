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
    /// The handler decides through the `Ack` extractor (ack, nack, reject), before it returns
    /// or later from another task. No decision means not committed: the partition's
    /// committed offset holds at the first undecided record, and an `Ack` dropped undecided
    /// leaves its record uncommitted, to come again after a restart or rebalance.
    Manual,
    /// A failing handler's message is rejected: logged and committed, never retried (on Kafka
    /// the same outcome as `AckAfter`; kept for FastStream's vocabulary).
    RejectOnError,
}

impl AckPolicy {
    /// When this policy commits a message's offset: its half of the subscriber's
    /// [`DeliveryPolicy`](super::DeliveryPolicy).
    ///
    /// ```
    /// use faststream_core::policy::{AckPolicy, CommitTiming};
    /// assert_eq!(AckPolicy::NackOnError.commit_timing(), CommitTiming::AfterHandler);
    /// assert_eq!(AckPolicy::AckFirst.commit_timing(), CommitTiming::BeforeHandler);
    /// assert_eq!(AckPolicy::Manual.commit_timing(), CommitTiming::ByHandler);
    /// ```
    pub fn commit_timing(self) -> CommitTiming {
        match self {
            AckPolicy::AckFirst => CommitTiming::BeforeHandler,
            AckPolicy::Manual => CommitTiming::ByHandler,
            AckPolicy::AckAfter | AckPolicy::NackOnError | AckPolicy::RejectOnError => {
                CommitTiming::AfterHandler
            }
        }
    }

    /// Whether this policy also says what happens to a failed message (`AckAfter`,
    /// `NackOnError`, `RejectOnError`), so that its preset
    /// ([`ErrorPolicy::preset`](super::ErrorPolicy::preset)) overrides a less specific error
    /// policy. `AckFirst` and `Manual` only set the commit timing: the failure handling is
    /// inherited, and their preset applies only when no level sets one.
    pub fn sets_failure_handling(self) -> bool {
        !matches!(self, AckPolicy::AckFirst | AckPolicy::Manual)
    }
}

/// When a consumed message's offset counts as done, relative to its handler: the commit half
/// of a subscriber's [`DeliveryPolicy`](super::DeliveryPolicy), from the most specific
/// [`AckPolicy`] set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CommitTiming {
    /// Once the handler finished and its publishes were acknowledged (at-least-once; every
    /// ack policy but `AckFirst` and `Manual`, and the default).
    #[default]
    AfterHandler,
    /// As soon as the message is taken for handling, before its handler runs
    /// (at-most-once; `AckFirst`).
    BeforeHandler,
    /// When the handler decides through the `Ack` extractor, during or after its call;
    /// undecided is never committed (`Manual`).
    ByHandler,
}

impl std::fmt::Display for CommitTiming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CommitTiming::AfterHandler => "commit after the handler",
            CommitTiming::BeforeHandler => "commit before the handler",
            CommitTiming::ByHandler => "commit by the handler",
        })
    }
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
