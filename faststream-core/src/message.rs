//! The message envelope every handler sees, independent of the broker that delivered it.

use bytes::Bytes;
use std::sync::Arc;

/// Header carrying the id that ties a reply (or any derived message) to its origin.
pub const CORRELATION_ID: &str = "correlation_id";
/// Header naming the topic a reply to this message should be published to.
pub const REPLY_TO: &str = "reply_to";
/// Header naming the payload's encoding, as FastStream writes it.
pub const CONTENT_TYPE: &str = "content-type";

/// Length of a correlation id as FastStream writes it (a hyphenated uuid).
pub const CORRELATION_ID_LEN: usize = uuid::fmt::Hyphenated::LENGTH;

/// Writes a new correlation id (a uuid4 in hyphenated form, as FastStream writes it) into
/// `buf` and returns it: no allocation, for the per-publish path.
///
/// ```
/// use faststream_core::message::{write_correlation_id, CORRELATION_ID_LEN};
/// let mut buf = [0_u8; CORRELATION_ID_LEN];
/// let id = write_correlation_id(&mut buf);
/// assert_eq!(id.len(), 36);
/// assert_eq!(id[8], b'-');
/// ```
pub fn write_correlation_id(buf: &mut [u8; CORRELATION_ID_LEN]) -> &[u8] {
    uuid::Uuid::new_v4()
        .hyphenated()
        .encode_lower(buf)
        .as_bytes()
}

/// Message headers in wire order. Kafka allows repeated names; [`Headers::get`] returns the last.
///
/// ```
/// use faststream_core::Headers;
/// let mut headers = Headers::new();
/// headers.insert("trace", "abc");
/// assert_eq!(headers.get_str("trace"), Some("abc"));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Headers {
    entries: Vec<(String, Bytes)>,
}

impl Headers {
    /// No headers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Room for `capacity` headers without reallocating.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            entries: Vec::with_capacity(capacity),
        }
    }

    /// Appends a header; an existing one with the same name is kept (Kafka semantics).
    pub fn append(&mut self, name: impl Into<String>, value: impl Into<Bytes>) {
        self.entries.push((name.into(), value.into()));
    }

    /// Sets a header, replacing every existing header of that name.
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<Bytes>) {
        let name = name.into();
        self.entries.retain(|(n, _)| *n != name);
        self.entries.push((name, value.into()));
    }

    /// The last value of the header `name`, as bytes.
    pub fn get(&self, name: &str) -> Option<&Bytes> {
        self.entries
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
    }

    /// The last value of the header `name`, when it is valid UTF-8.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Whether a header of that name is present.
    pub fn contains(&self, name: &str) -> bool {
        self.entries.iter().any(|(n, _)| n == name)
    }

    /// All headers in wire order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Bytes)> {
        self.entries.iter().map(|(n, v)| (n.as_str(), v))
    }

    /// Number of headers.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no headers.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl<N: Into<String>, V: Into<Bytes>> FromIterator<(N, V)> for Headers {
    fn from_iter<I: IntoIterator<Item = (N, V)>>(iter: I) -> Self {
        Self {
            entries: iter
                .into_iter()
                .map(|(n, v)| (n.into(), v.into()))
                .collect(),
        }
    }
}

/// A topic and one of its partitions.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    /// Topic name.
    pub topic: Arc<str>,
    /// Partition number.
    pub partition: i32,
}

impl TopicPartition {
    /// A topic-partition pair.
    pub fn new(topic: impl Into<Arc<str>>, partition: i32) -> Self {
        Self {
            topic: topic.into(),
            partition,
        }
    }
}

impl std::fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}[{}]", self.topic, self.partition)
    }
}

/// One consumed record: payload, key, headers and where it came from.
///
/// Handlers usually take typed pieces of it through extractors; taking `Message` itself gives
/// the raw record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Topic the record was read from (shared by all records of a partition).
    pub topic: Arc<str>,
    /// Partition the record was read from.
    pub partition: i32,
    /// Offset of the record in its partition.
    pub offset: i64,
    /// Producer or log-append timestamp, milliseconds since the Unix epoch.
    pub timestamp: Option<i64>,
    /// Record key.
    pub key: Option<Bytes>,
    /// Record value; empty for a tombstone.
    pub payload: Bytes,
    /// Record headers.
    pub headers: Headers,
    /// Set only on a batch subscriber's delivery: the records the batch is made of (the
    /// message's own payload, key and headers are then empty; see [`Message::batch_of`]).
    pub batch: Option<crate::batch::Batch>,
}

impl Message {
    /// A record on `topic` with `payload`, at partition 0 offset 0: handy in tests.
    pub fn new(topic: impl Into<Arc<str>>, payload: impl Into<Bytes>) -> Self {
        Self {
            topic: topic.into(),
            partition: 0,
            offset: 0,
            timestamp: None,
            key: None,
            payload: payload.into(),
            headers: Headers::new(),
            batch: None,
        }
    }

    /// The `correlation_id` header, when present and UTF-8.
    pub fn correlation_id(&self) -> Option<&str> {
        self.headers.get_str(CORRELATION_ID)
    }

    /// The `reply_to` header, when present, UTF-8 and not empty.
    pub fn reply_to(&self) -> Option<&str> {
        self.headers.get_str(REPLY_TO).filter(|t| !t.is_empty())
    }

    /// Roughly the memory the record holds: payload, key, and header names and values. What
    /// the subscriber's [`crate::broker::BufferBudget`] counts.
    pub fn held_bytes(&self) -> usize {
        if let Some(batch) = &self.batch {
            return batch.held_bytes();
        }
        let headers: usize = self
            .headers
            .iter()
            .map(|(name, value)| name.len() + value.len())
            .sum();
        self.payload.len() + self.key.as_ref().map_or(0, Bytes::len) + headers
    }

    /// FastStream's message id: `"{offset}-{timestamp}"`.
    pub fn message_id(&self) -> String {
        format!("{}-{}", self.offset, self.timestamp.unwrap_or_default())
    }

    /// The key as UTF-8 text, for log lines; `None` when absent, lossy when binary.
    pub fn key_for_log(&self) -> Option<std::borrow::Cow<'_, str>> {
        self.key.as_deref().map(String::from_utf8_lossy)
    }
}
