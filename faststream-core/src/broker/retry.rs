//! Retry topics as a backend sees them: the headers a retry record carries, when its head
//! record is due, and the topics the app asks a backend to create.
//!
//! A subscriber with [`ErrorPolicy::retry_topics`](crate::ErrorPolicy::retry_topics) also
//! consumes its retry topics ([`SubscriberBackend::retry_topics`]). A backend holds back each
//! partition of those whose head record is not due yet (the Kafka consumer pauses it and
//! resumes it on a timer), so the worker only ever gets due records and never sleeps.
//!
//! [`SubscriberBackend::retry_topics`]: crate::config::subscriber::SubscriberBackend::retry_topics

use crate::message::Headers;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Which delivery of the record this is: 2 for the first retry (the original was 1).
pub const RETRY_ATTEMPT: &str = "retry-attempt";
/// When the record is due, in milliseconds since the Unix epoch.
pub const RETRY_DUE_AT: &str = "retry-due-at";
/// The topic the record was first read from.
pub const RETRY_ORIGINAL_TOPIC: &str = "retry-original-topic";
/// Its partition there.
pub const RETRY_ORIGINAL_PARTITION: &str = "retry-original-partition";
/// Its offset there.
pub const RETRY_ORIGINAL_OFFSET: &str = "retry-original-offset";
/// Every header above (a record moving on, or dead-lettered, drops the old ones).
pub const RETRY_HEADERS: [&str; 5] = [
    RETRY_ATTEMPT,
    RETRY_DUE_AT,
    RETRY_ORIGINAL_TOPIC,
    RETRY_ORIGINAL_PARTITION,
    RETRY_ORIGINAL_OFFSET,
];

/// A retry topic the app needs before its subscriber starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryTopic {
    /// The topic whose failed records it holds: it gets as many partitions.
    pub source: String,
    /// Its name, `{source}-{group}-retry-{delay in ms}`.
    pub name: String,
    /// How long it keeps records: longer than the policy's longest delay.
    pub retention: Duration,
}

/// How long until a record due at `due_at_ms` (milliseconds since the Unix epoch) is due;
/// `None` when it is due now.
///
/// ```
/// use faststream_core::broker::retry::wait_until_due;
/// use std::time::Duration;
/// assert_eq!(wait_until_due(0), None, "long due");
/// let soon = faststream_core::broker::retry::now_ms() + 60_000;
/// assert!(wait_until_due(soon).is_some_and(|wait| wait <= Duration::from_secs(60)));
/// ```
pub fn wait_until_due(due_at_ms: i64) -> Option<Duration> {
    let wait = due_at_ms.saturating_sub(now_ms());
    (wait > 0).then(|| Duration::from_millis(wait as u64))
}

/// The `retry-due-at` header's value, when it is a number.
pub fn parse_due_at(value: &[u8]) -> Option<i64> {
    std::str::from_utf8(value).ok()?.trim().parse().ok()
}

/// How long until the record with `headers` is due; `None` when it is due, or carries no
/// (readable) `retry-due-at` header.
pub fn not_due_for(headers: &Headers) -> Option<Duration> {
    wait_until_due(parse_due_at(headers.get(RETRY_DUE_AT)?)?)
}

/// The wall clock in milliseconds since the Unix epoch (due times cross processes, so they
/// are wall-clock times).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_is_held_until_its_due_time() {
        let mut headers = Headers::new();
        assert_eq!(not_due_for(&headers), None, "not a retry record");
        headers.insert(RETRY_DUE_AT, (now_ms() + 5_000).to_string());
        let wait = not_due_for(&headers).expect("due in 5 s");
        assert!(wait > Duration::from_secs(4) && wait <= Duration::from_secs(5));
        headers.insert(RETRY_DUE_AT, (now_ms() - 1).to_string());
        assert_eq!(not_due_for(&headers), None, "overdue");
        headers.insert(RETRY_DUE_AT, "soon");
        assert_eq!(not_due_for(&headers), None, "unreadable: not held");
    }
}
