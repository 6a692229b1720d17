//! Error policies: what happens to a message whose handling failed.
//!
//! A failure is a decode or extraction error, the handler's error, a panic, a timeout, or one
//! of its output records finally refused by the broker. The policy retries it a bounded number
//! of times, with exponential backoff and jitter, pausing only its partition (the consumer
//! keeps polling), and after the last attempt sends it to a dead-letter topic, skips it, or
//! stops its partition. Errors that cannot get better by retrying go straight to that final
//! outcome: decode and extraction errors, and errors the handler wraps in [`Permanent`].
//! An outage of something a record needs before it can decode (a schema registry out of
//! reach: [`is_outage`]) is neither: the record waits, its partition paused, and runs again
//! every [`OUTAGE_RETRY`] until it decodes, without counting an attempt, and never reaches the
//! final outcome (an outage is not bad data, so it is never dead-lettered or skipped).
//! [`ErrorPolicy::retry_topics`] retries without blocking the partition instead: through retry
//! topics the app reads itself, each record waiting there until its delay passed.
//!
//! FastStream's ack policies are presets of this (see [`ErrorPolicy::preset`]). Each
//! subscriber resolves its failure handling once, at start: the most specific level (the
//! subscriber, its routers, the app) that sets an error policy or an ack policy with a preset
//! wins (see [`DeliveryPolicy::resolve`](super::DeliveryPolicy::resolve)).
//!
//! ```
//! use faststream_core::{ErrorPolicy, SubscriberConfig};
//!
//! // Three attempts, then the record goes to `orders-dlt` with its provenance headers.
//! let config = SubscriberConfig::new("orders", ["orders"])
//!     .error_policy(ErrorPolicy::retry(3).then_dead_letter());
//! ```

use super::ack::{AckPolicy, Backoff};
use crate::error::{BoxError, HandlerPanicked, HandlerTimedOut, Nacked, Rejected};
use crate::handler::extract::ExtractError;
use std::time::Duration;

/// What happens to a failed message: bounded retries, then a final outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorPolicy {
    /// Attempts in all, the first included; `None` retries until it succeeds.
    pub max_attempts: Option<u32>,
    /// Delay before each retry: doubling from `initial`, capped at `max`.
    pub backoff: Backoff,
    /// Whether each delay is randomized (between half and all of it), so many partitions
    /// failing together do not retry in lockstep.
    pub jitter: bool,
    /// What happens after the last attempt, and at once for errors that are not retried.
    pub exhausted: Exhausted,
    /// Delays of the retry topics a failed message goes through, in order, before its final
    /// outcome (see [`ErrorPolicy::retry_topics`]); empty: none.
    pub retry_topics: Vec<Duration>,
    /// Only a nack through the `Ack` extractor is retried (the `Manual` preset): other
    /// errors go to the final outcome at once.
    only_nacks: bool,
    /// Its subscriber decodes with a codec that can meet an outage ([`is_outage`]), so every
    /// message is kept until it is done, to run it again.
    outages: bool,
}

/// How long a record waits before it runs again after an outage ([`is_outage`]); jittered
/// between half and all of it, so the partitions waiting on one registry do not ask together.
pub const OUTAGE_RETRY: Duration = Duration::from_secs(1);

/// The final outcome of a message that failed for good.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Exhausted {
    /// Log it and move on: its offset is committed.
    Skip,
    /// Publish it to a dead-letter topic (`{topic}-dlt` unless named) with its key, payload,
    /// headers and provenance headers; its offset is committed once the broker acknowledged
    /// the dead letter.
    DeadLetter {
        /// The dead-letter topic; `None` for `{topic}-dlt`.
        topic: Option<String>,
    },
    /// Stop consuming its partition: its offset and everything after it stay uncommitted
    /// until the app restarts (or the partition moves to another member).
    Stop,
}

impl Default for ErrorPolicy {
    /// [`ErrorPolicy::preset`] of the default ack policy: one attempt, then skip.
    fn default() -> Self {
        Self::preset(AckPolicy::default(), Backoff::default())
    }
}

impl ErrorPolicy {
    /// At most `max_attempts` attempts (at least 1) with the default backoff (100 ms doubling
    /// up to 10 s, with jitter), then skip; choose the final outcome with `then_*`.
    pub fn retry(max_attempts: u32) -> Self {
        Self {
            max_attempts: Some(max_attempts.max(1)),
            backoff: Backoff::default(),
            jitter: true,
            exhausted: Exhausted::Skip,
            retry_topics: Vec::new(),
            only_nacks: false,
            outages: false,
        }
    }

    /// Retries without blocking the partition: a failed message is republished to the retry
    /// topic of the first delay, `{topic}-{group}-retry-{delay in ms}` (see
    /// [`ErrorPolicy::retry_topic`]), and its partition goes on at once. The app creates and
    /// consumes those topics itself, with the same handler, group and policy; a record there
    /// waits (its partition paused) until its delay passed, then runs again, and on failure
    /// moves to the next delay's topic. After the last one, the final outcome applies: choose
    /// it with `then_*` (skip by default).
    ///
    /// Each delivery is one attempt: in-partition retries would hold up the records behind
    /// it, which is what retry topics avoid. Errors that are not retried (decode errors,
    /// [`Permanent`]) take the final outcome at once. Not for batch subscribers, topic
    /// patterns or explicit partitions (the subscriber does not start).
    ///
    /// ```
    /// use faststream_core::{ErrorPolicy, SubscriberConfig};
    /// use std::time::Duration;
    ///
    /// let delays = [1, 10, 60].map(Duration::from_secs);
    /// let config = SubscriberConfig::new("orders", ["orders"])
    ///     .group_id("billing")
    ///     .error_policy(ErrorPolicy::retry_topics(delays).then_dead_letter());
    /// let policy = config.delivery_policy().failure;
    /// assert_eq!(
    ///     policy.retry_topic("orders", "billing", Duration::from_secs(10)),
    ///     "orders-billing-retry-10000"
    /// );
    /// ```
    pub fn retry_topics(delays: impl IntoIterator<Item = Duration>) -> Self {
        Self {
            jitter: false,
            retry_topics: delays.into_iter().collect(),
            ..Self::retry(1)
        }
    }

    /// The retry topic of `delay` for records of `topic` failed in `group`:
    /// `{topic}-{group}-retry-{delay in ms}`. Named by the group, so two groups reading one
    /// topic never run each other's failures again.
    pub fn retry_topic(&self, topic: &str, group: &str, delay: Duration) -> String {
        format!("{topic}-{group}-retry-{}", delay.as_millis())
    }

    /// The retry topics of records of `topic` failed in `group`, one per distinct delay.
    pub fn retry_topic_names(&self, topic: &str, group: &str) -> Vec<String> {
        let mut names: Vec<String> = Vec::with_capacity(self.retry_topics.len());
        for delay in &self.retry_topics {
            let name = self.retry_topic(topic, group, *delay);
            if !names.contains(&name) {
                names.push(name);
            }
        }
        names
    }

    /// The delay of the retry topic a message on its `delivery`-th delivery (1 for the
    /// original) moves to after failing with `error`; `None` when it takes the final outcome
    /// (no retry topic left, or an error that is not retried).
    pub(crate) fn next_retry_topic(&self, delivery: u32, error: &BoxError) -> Option<Duration> {
        if error.is::<Rejected>() || !is_retriable(error) {
            return None;
        }
        let index = usize::try_from(delivery.max(1) - 1).ok()?;
        self.retry_topics.get(index).copied()
    }

    /// Retries until the message succeeds (errors that are not retriable still go to the
    /// final outcome).
    pub fn retry_forever() -> Self {
        Self {
            max_attempts: None,
            ..Self::retry(1)
        }
    }

    /// The preset of a FastStream ack policy:
    ///
    /// | ack policy | attempts | then |
    /// |---|---|---|
    /// | `AckAfter` (default) | 1 | skip |
    /// | `NackOnError` | unlimited, with `backoff` | skip (only non-retriable errors get there) |
    /// | `RejectOnError` | 1 | skip |
    /// | `AckFirst` | 1 | skip (the offset was committed before the handler ran) |
    /// | `Manual` | a nack retries, unlimited; other errors are not retried | skip |
    pub fn preset(policy: AckPolicy, backoff: Backoff) -> Self {
        let base = Self {
            backoff,
            jitter: false,
            ..Self::retry(1)
        };
        match policy {
            AckPolicy::NackOnError => Self {
                max_attempts: None,
                ..base
            },
            AckPolicy::Manual => Self {
                max_attempts: None,
                only_nacks: true,
                ..base
            },
            _ => base,
        }
    }

    /// Sends the message to its dead-letter topic (`{topic}-dlt`) after the last attempt.
    pub fn then_dead_letter(mut self) -> Self {
        self.exhausted = Exhausted::DeadLetter { topic: None };
        self
    }

    /// Sends the message to `topic` after the last attempt.
    pub fn then_dead_letter_to(mut self, topic: impl Into<String>) -> Self {
        self.exhausted = Exhausted::DeadLetter {
            topic: Some(topic.into()),
        };
        self
    }

    /// Skips the message after the last attempt (the default).
    pub fn then_skip(mut self) -> Self {
        self.exhausted = Exhausted::Skip;
        self
    }

    /// Stops its partition after the last attempt.
    pub fn then_stop(mut self) -> Self {
        self.exhausted = Exhausted::Stop;
        self
    }

    /// Sets the backoff between attempts.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Randomizes each delay between half and all of it (on by default for
    /// [`ErrorPolicy::retry`]).
    pub fn jitter(mut self, jitter: bool) -> Self {
        self.jitter = jitter;
        self
    }

    /// The dead-letter topic of a message read from `topic`, if the policy has one.
    pub fn dead_letter_topic(&self, topic: &str) -> Option<String> {
        match &self.exhausted {
            Exhausted::DeadLetter { topic: Some(named) } => Some(named.clone()),
            Exhausted::DeadLetter { topic: None } => Some(format!("{topic}-dlt")),
            _ => None,
        }
    }

    /// The same policy for a subscriber whose codec can meet an outage
    /// ([`Codec::may_wait`](crate::codec::Codec::may_wait)): its messages are kept until they
    /// are done, so that one waiting out an outage can run again.
    pub(crate) fn expecting_outages(mut self, outages: bool) -> Self {
        self.outages = outages;
        self
    }

    /// Whether a failure may need the message again (a retry, a dead letter, an outage), so
    /// the worker keeps a copy of each message until it is done.
    #[inline]
    pub(crate) fn needs_message(&self) -> bool {
        self.outages
            || self.max_attempts != Some(1)
            || self.exhausted != Exhausted::Skip
            || self.only_nacks
            || !self.retry_topics.is_empty()
    }

    /// What to do after attempt number `attempt` failed with `error`.
    pub(crate) fn decide(&self, attempt: u32, error: &BoxError) -> Decision {
        if error.is::<Rejected>() {
            return Decision::Reject;
        }
        if is_outage(error) {
            return Decision::Wait(jittered(OUTAGE_RETRY));
        }
        let retriable = if self.only_nacks {
            error.is::<Nacked>()
        } else {
            is_retriable(error)
        };
        let more = self.max_attempts.is_none_or(|max| attempt < max);
        if retriable && more {
            Decision::Retry(self.delay(attempt))
        } else {
            Decision::Exhausted
        }
    }

    /// The delay before retry number `attempt` (1-based).
    fn delay(&self, attempt: u32) -> Duration {
        let full = self.backoff.delay(attempt);
        if !self.jitter || full.is_zero() {
            return full;
        }
        jittered(full)
    }
}

/// Equal jitter: half of `full`, plus a random part of the other half.
fn jittered(full: Duration) -> Duration {
    let half = full / 2;
    let random = (uuid::Uuid::new_v4().as_u128() % 1_000_000) as u32;
    half + half.mul_f64(f64::from(random) / 1_000_000.0)
}

/// One line for logs, e.g. `up to 3 attempts (backoff 100ms to 10s, jittered), then dead
/// letter to {topic}-dlt`.
///
/// ```
/// use faststream_core::ErrorPolicy;
/// assert_eq!(ErrorPolicy::default().to_string(), "1 attempt, then skip");
/// assert_eq!(
///     ErrorPolicy::retry(3).jitter(false).then_dead_letter_to("failed").to_string(),
///     "up to 3 attempts (backoff 100ms to 10s), then dead letter to failed"
/// );
/// let delays = [1, 10].map(std::time::Duration::from_secs);
/// assert_eq!(
///     ErrorPolicy::retry_topics(delays).then_dead_letter().to_string(),
///     "1 attempt, then retry topics after 1s, 10s, then dead letter to {topic}-dlt"
/// );
/// ```
impl std::fmt::Display for ErrorPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.only_nacks, self.max_attempts) {
            (true, _) => f.write_str("nacks retried until acked, other errors not retried")?,
            (false, Some(1)) => f.write_str("1 attempt")?,
            (false, Some(max)) => write!(f, "up to {max} attempts")?,
            (false, None) => f.write_str("retried until it succeeds")?,
        }
        if self.max_attempts != Some(1) || self.only_nacks {
            let jitter = if self.jitter { ", jittered" } else { "" };
            write!(
                f,
                " (backoff {:?} to {:?}{jitter})",
                self.backoff.initial, self.backoff.max
            )?;
        }
        if !self.retry_topics.is_empty() {
            f.write_str(", then retry topics after")?;
            for (index, delay) in self.retry_topics.iter().enumerate() {
                let comma = if index == 0 { "" } else { "," };
                write!(f, "{comma} {delay:?}")?;
            }
        }
        match &self.exhausted {
            Exhausted::Skip => f.write_str(", then skip"),
            Exhausted::DeadLetter { topic: Some(topic) } => {
                write!(f, ", then dead letter to {topic}")
            }
            Exhausted::DeadLetter { topic: None } => {
                f.write_str(", then dead letter to {topic}-dlt")
            }
            Exhausted::Stop => f.write_str(", then stop the partition"),
        }
    }
}

/// What the worker does with a failed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Run it again after this delay.
    Retry(Duration),
    /// Run it again after this delay, as the same attempt: it met an outage ([`is_outage`]).
    Wait(Duration),
    /// Apply [`ErrorPolicy::exhausted`].
    Exhausted,
    /// Rejected through the `Ack` extractor: skip it, never dead-letter it.
    Reject,
}

/// An error the handler says cannot get better by retrying: the message goes straight to the
/// policy's final outcome (e.g. the dead-letter topic).
///
/// ```
/// use faststream_core::policy::Permanent;
///
/// async fn charge(amount: i64) -> Result<(), Permanent> {
///     if amount < 0 {
///         return Err(Permanent::new(format!("negative amount {amount}")));
///     }
///     Ok(())
/// }
/// ```
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct Permanent(pub BoxError);

impl Permanent {
    /// Marks `error` as not retriable.
    pub fn new(error: impl Into<BoxError>) -> Self {
        Self(error.into())
    }
}

/// An error the handler says is worth retrying even where the framework would not (e.g. a
/// custom extractor's rejection that a later attempt may pass).
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct Transient(pub BoxError);

impl Transient {
    /// Marks `error` as retriable.
    pub fn new(error: impl Into<BoxError>) -> Self {
        Self(error.into())
    }
}

/// Whether retrying may help: not for decode and extraction errors or [`Permanent`] ones,
/// unless wrapped in [`Transient`]; always for an outage ([`is_outage`]).
pub fn is_retriable(error: &BoxError) -> bool {
    if error.is::<Transient>() || is_outage(error) {
        return true;
    }
    !(error.is::<ExtractError>() || error.is::<Permanent>())
}

/// Whether `error` is an outage of something the message needs before it can be handled (a
/// schema registry out of reach: an extraction error whose
/// [`ExtractError::is_transient`] is true), rather than a fault of the message or the handler.
pub fn is_outage(error: &BoxError) -> bool {
    error
        .downcast_ref::<ExtractError>()
        .is_some_and(ExtractError::is_transient)
}

/// A short, stable name for the kind of `error`, for the `dlt-exception-type` header and
/// logs: the framework's error types by name, `HandlerError` for the handler's own (a label
/// kept on the wire for DLT readers and dashboards; the Rust type is [`BoxError`]).
pub fn error_type(error: &BoxError) -> &'static str {
    if let Some(extract) = error.downcast_ref::<ExtractError>() {
        return match extract {
            ExtractError::Payload(_) => "DecodeError",
            ExtractError::PayloadUnavailable(_) => "PayloadUnavailable",
            ExtractError::Key(_) => "KeyDecodeError",
            ExtractError::MissingHeader(_) => "MissingHeader",
            ExtractError::BadHeader { .. } => "BadHeader",
            ExtractError::MissingState(_) => "MissingState",
            ExtractError::NoHandler { .. } => "NoMatchingHandler",
            _ => "ExtractError",
        };
    }
    if error.is::<HandlerPanicked>() {
        "HandlerPanicked"
    } else if error.is::<HandlerTimedOut>() {
        "HandlerTimedOut"
    } else if error.is::<crate::error::PublishError>() {
        "PublishRefused"
    } else if error.is::<Nacked>() {
        "Nacked"
    } else if error.is::<Permanent>() {
        "Permanent"
    } else {
        "HandlerError"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::codec::DecodeError;

    fn handler_error() -> BoxError {
        std::io::Error::other("db down").into()
    }

    #[test]
    fn bounded_retries_then_the_final_outcome() {
        let policy = ErrorPolicy::retry(3).jitter(false).then_dead_letter();
        assert_eq!(
            policy.decide(1, &handler_error()),
            Decision::Retry(Duration::from_millis(100))
        );
        assert_eq!(
            policy.decide(2, &handler_error()),
            Decision::Retry(Duration::from_millis(200))
        );
        assert_eq!(policy.decide(3, &handler_error()), Decision::Exhausted);
        assert_eq!(
            policy.dead_letter_topic("orders").as_deref(),
            Some("orders-dlt")
        );
    }

    #[test]
    fn decode_errors_and_permanent_ones_are_not_retried() {
        let policy = ErrorPolicy::retry_forever();
        let decode: BoxError = Box::new(ExtractError::Payload(DecodeError {
            path: ".".into(),
            message: "bad".into(),
        }));
        assert_eq!(policy.decide(1, &decode), Decision::Exhausted);
        assert_eq!(error_type(&decode), "DecodeError");
        let permanent: BoxError = Box::new(Permanent::new("no such user"));
        assert_eq!(policy.decide(1, &permanent), Decision::Exhausted);
        let transient: BoxError = Box::new(Transient::new("try later"));
        assert!(matches!(policy.decide(1, &transient), Decision::Retry(_)));
        assert!(matches!(
            policy.decide(40, &handler_error()),
            Decision::Retry(_)
        ));
    }

    #[test]
    fn an_outage_waits_without_counting_an_attempt_and_never_reaches_the_final_outcome() {
        let outage: BoxError = Box::new(ExtractError::PayloadUnavailable("registry down".into()));
        assert!(is_outage(&outage) && is_retriable(&outage));
        for policy in [
            ErrorPolicy::retry(1).then_dead_letter(),
            ErrorPolicy::retry(3).then_dead_letter(),
            ErrorPolicy::preset(AckPolicy::Manual, Backoff::default()),
        ] {
            for attempt in [1, 3, 50] {
                let Decision::Wait(delay) = policy.decide(attempt, &outage) else {
                    panic!("{policy}: an outage at attempt {attempt} must wait")
                };
                assert!(
                    delay >= OUTAGE_RETRY / 2 && delay <= OUTAGE_RETRY,
                    "{delay:?}"
                );
            }
        }
        let plain = ErrorPolicy::default();
        assert!(!plain.needs_message());
        assert!(
            plain.expecting_outages(true).needs_message(),
            "a message waiting out an outage is kept to run again"
        );
        let bad: BoxError = Box::new(ExtractError::Payload(DecodeError {
            path: ".".into(),
            message: "unknown schema id 7".into(),
        }));
        assert!(!is_outage(&bad));
        assert_eq!(ErrorPolicy::retry(3).decide(1, &bad), Decision::Exhausted);
    }

    #[test]
    fn jitter_stays_between_half_and_all_of_the_delay() {
        let policy = ErrorPolicy::retry(10);
        for attempt in 1..6 {
            let Decision::Retry(delay) = policy.decide(attempt, &handler_error()) else {
                panic!("retried")
            };
            let full = policy.backoff.delay(attempt);
            assert!(delay >= full / 2 && delay <= full, "{delay:?} of {full:?}");
        }
    }

    #[test]
    fn retry_topics_take_each_delay_in_turn_then_the_final_outcome() {
        let delays = [1, 2].map(Duration::from_secs);
        let policy = ErrorPolicy::retry_topics(delays).then_dead_letter();
        assert!(policy.needs_message());
        assert_eq!(
            policy.decide(1, &handler_error()),
            Decision::Exhausted,
            "one attempt per delivery: no in-partition retry"
        );
        assert_eq!(
            policy.next_retry_topic(1, &handler_error()),
            Some(delays[0])
        );
        assert_eq!(
            policy.next_retry_topic(2, &handler_error()),
            Some(delays[1])
        );
        assert_eq!(policy.next_retry_topic(3, &handler_error()), None, "last");
        let permanent: BoxError = Box::new(Permanent::new("no such user"));
        assert_eq!(policy.next_retry_topic(1, &permanent), None);
        let rejected: BoxError = Box::new(Rejected);
        assert_eq!(policy.next_retry_topic(1, &rejected), None);
        assert_eq!(
            ErrorPolicy::retry(3).next_retry_topic(1, &handler_error()),
            None
        );
        let twice = ErrorPolicy::retry_topics([delays[0], delays[0], delays[1]]);
        assert_eq!(
            twice.retry_topic_names("orders", "billing"),
            ["orders-billing-retry-1000", "orders-billing-retry-2000"]
        );
    }

    #[test]
    fn presets_keep_the_ack_policies_meaning() {
        assert_eq!(ErrorPolicy::default().max_attempts, Some(1));
        assert!(!ErrorPolicy::default().needs_message());
        let nack = ErrorPolicy::preset(AckPolicy::NackOnError, Backoff::default());
        assert_eq!(nack.max_attempts, None);
        assert_eq!(nack.exhausted, Exhausted::Skip);
        assert!(nack.needs_message());
    }
}
