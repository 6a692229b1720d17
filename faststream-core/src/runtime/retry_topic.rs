//! Retry records: what a failed message becomes on its next retry topic, and where a message
//! first came from (kept across retry topics, for the next retry and the dead letter). Pure,
//! so the worker only enqueues what this yields.

use crate::broker::retry::{
    now_ms, RETRY_ATTEMPT, RETRY_DUE_AT, RETRY_HEADERS, RETRY_ORIGINAL_OFFSET,
    RETRY_ORIGINAL_PARTITION, RETRY_ORIGINAL_TOPIC,
};
use crate::broker::Record;
use crate::message::{Headers, Message, CORRELATION_ID};
use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

/// Where a message was first read: its own position, or for a record of a retry topic the
/// one its `retry-original-*` headers name.
pub(crate) struct Provenance<'a> {
    pub(crate) topic: Cow<'a, str>,
    pub(crate) partition: Cow<'a, str>,
    pub(crate) offset: Cow<'a, str>,
    /// Which delivery of it `message` is: 1 for the original.
    pub(crate) delivery: u32,
}

impl<'a> Provenance<'a> {
    pub(crate) fn of(message: &'a Message) -> Self {
        let original = |name: &str| message.headers.get_str(name).map(Cow::Borrowed);
        match original(RETRY_ORIGINAL_TOPIC) {
            Some(topic) => Self {
                topic,
                partition: original(RETRY_ORIGINAL_PARTITION).unwrap_or_default(),
                offset: original(RETRY_ORIGINAL_OFFSET).unwrap_or_default(),
                delivery: delivery_of(message),
            },
            None => Self {
                topic: Cow::Borrowed(&message.topic),
                partition: Cow::Owned(message.partition.to_string()),
                offset: Cow::Owned(message.offset.to_string()),
                delivery: 1,
            },
        }
    }
}

/// Which delivery of its record `message` is: a retry record's `retry-attempt`, 1 for an
/// original.
pub(crate) fn delivery_of(message: &Message) -> u32 {
    if !message.headers.contains(RETRY_ORIGINAL_TOPIC) {
        return 1;
    }
    message
        .headers
        .get_str(RETRY_ATTEMPT)
        .and_then(|n| n.parse().ok())
        .unwrap_or(1)
        .max(1)
}

/// The headers of `message` a record derived from it keeps: all but its correlation id (the
/// record carries it itself) and the retry headers (rewritten).
pub(crate) fn kept_headers(message: &Message, room: usize) -> Headers {
    let mut headers = Headers::with_capacity(message.headers.len() + room);
    for (name, value) in message.headers.iter() {
        if name != CORRELATION_ID && !RETRY_HEADERS.contains(&name) {
            headers.append(name, value.clone());
        }
    }
    headers
}

/// `message` copied to `topic` with `headers` (built from [`kept_headers`]): its key, payload
/// and correlation id (its `content-type` travels with the headers). The producer's clock
/// stamps it unless the caller keeps the original timestamp.
pub(crate) fn copy_to(message: &Message, topic: &str, headers: Headers) -> Record {
    Record {
        topic: Arc::from(topic),
        payload: Some(message.payload.clone()),
        key: message.key.clone(),
        content_type: None,
        correlation_id: message.headers.get(CORRELATION_ID).cloned(),
        headers,
        // By key, as the source topic's partitioner placed it.
        partition: None,
        timestamp: None,
    }
}

/// The record `message` becomes on the retry topic `topic`, due `delay` from now: its key,
/// payload, headers, correlation id and timestamp, plus the next attempt's number, its due
/// time and the original position.
pub(crate) fn retry_record(message: &Message, topic: &str, delay: Duration) -> Record {
    let origin = Provenance::of(message);
    let mut headers = kept_headers(message, 5);
    headers.insert(RETRY_ATTEMPT, (origin.delivery + 1).to_string());
    // One millisecond more: the clock's milliseconds are rounded down, and a retry must
    // never come before its delay has passed.
    let delay_ms = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
    let due_at = now_ms().saturating_add(delay_ms).saturating_add(1);
    headers.insert(RETRY_DUE_AT, due_at.to_string());
    headers.insert(RETRY_ORIGINAL_TOPIC, origin.topic.into_owned());
    headers.insert(RETRY_ORIGINAL_PARTITION, origin.partition.into_owned());
    headers.insert(RETRY_ORIGINAL_OFFSET, origin.offset.into_owned());
    Record {
        timestamp: message.timestamp,
        ..copy_to(message, topic, headers)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::broker::retry::parse_due_at;

    /// A failed record of `orders`[2] at `offset`, with a key, a timestamp and headers (its
    /// content type, correlation id and a `trace`).
    pub(crate) fn failed(offset: i64) -> Message {
        let mut message = Message::new("orders", format!("{{\"n\":{offset}}}"));
        message.partition = 2;
        message.offset = offset;
        message.timestamp = Some(1_700_000_000_000);
        message.key = Some("k".into());
        message.headers.append("content-type", "application/json");
        message.headers.append(CORRELATION_ID, "c-1");
        message.headers.append("trace", "t");
        message
    }

    fn header<'a>(record: &'a Record, name: &str) -> Option<&'a str> {
        record.headers.get_str(name)
    }

    #[test]
    fn a_retry_record_keeps_the_record_and_names_its_origin_and_due_time() {
        let before = now_ms();
        let record = retry_record(&failed(41), "orders-g-retry-1000", Duration::from_secs(1));
        assert_eq!(&*record.topic, "orders-g-retry-1000");
        assert_eq!(record.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(record.timestamp, Some(1_700_000_000_000));
        assert_eq!(record.correlation_id.as_deref(), Some(&b"c-1"[..]));
        assert_eq!(header(&record, "trace"), Some("t"));
        assert_eq!(header(&record, "content-type"), Some("application/json"));
        assert_eq!(header(&record, RETRY_ATTEMPT), Some("2"));
        assert_eq!(header(&record, RETRY_ORIGINAL_TOPIC), Some("orders"));
        assert_eq!(header(&record, RETRY_ORIGINAL_PARTITION), Some("2"));
        assert_eq!(header(&record, RETRY_ORIGINAL_OFFSET), Some("41"));
        let due = parse_due_at(record.headers.get(RETRY_DUE_AT).unwrap()).unwrap();
        assert!(due > before + 1000 && due <= now_ms() + 1001, "{due}");
    }

    #[test]
    fn a_second_retry_keeps_the_original_position_and_counts_on() {
        let first = retry_record(&failed(41), "orders-g-retry-1000", Duration::ZERO);
        // As read back from the retry topic.
        let mut again = Message::new("orders-g-retry-1000", "{\"n\":1}");
        again.partition = 0;
        again.offset = 7;
        again.headers = first.headers.clone();
        let origin = Provenance::of(&again);
        assert_eq!(
            (&*origin.topic, &*origin.offset, origin.delivery),
            ("orders", "41", 2)
        );
        let second = retry_record(&again, "orders-g-retry-2000", Duration::ZERO);
        assert_eq!(header(&second, RETRY_ATTEMPT), Some("3"));
        assert_eq!(header(&second, RETRY_ORIGINAL_TOPIC), Some("orders"));
        assert_eq!(header(&second, RETRY_ORIGINAL_OFFSET), Some("41"));
        let attempts = second
            .headers
            .iter()
            .filter(|(name, _)| *name == RETRY_ATTEMPT)
            .count();
        assert_eq!(attempts, 1, "the old retry headers are replaced");
    }
}
