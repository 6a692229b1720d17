//! The message envelope every handler sees, independent of the broker that delivered it, and
//! the batch a batch subscriber's message stands for (the two types hold each other).

use super::headers::{Headers, CORRELATION_ID, REPLY_TO};
use bytes::Bytes;
pub use http::Extensions;
use std::ops::Deref;
use std::sync::Arc;

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
///
/// It is 128 bytes, the most the compiler still moves without a call to `memcpy`: a record
/// moves a dozen times between the fetch and the handler (issue 21's drain profile). So its
/// headers are one pointer, and the batch a batch subscriber's message stands for is kept in
/// its [`extensions`](Message::extensions) (see [`Message::batch`]).
#[derive(Clone)]
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
    /// Typed values a layer attached for the handler to take with
    /// [`Extension<T>`](crate::extract::Extension) (empty, and unallocated, until one does),
    /// and a batch subscriber's [`Batch`] (a layer that removes it leaves the message without
    /// its records).
    pub extensions: Extensions,
}

// Past 128 bytes, every move of a record is a call to `memcpy` (see above).
const _: () = assert!(std::mem::size_of::<Message>() <= 128);

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message")
            .field("topic", &self.topic)
            .field("partition", &self.partition)
            .field("offset", &self.offset)
            .field("timestamp", &self.timestamp)
            .field("key", &self.key)
            .field("payload", &self.payload)
            .field("headers", &self.headers)
            .field("batch", &self.batch())
            .finish_non_exhaustive()
    }
}

/// Two messages are equal when their records are: the extensions layers attached are not
/// part of the record (and hold values that need not be comparable).
impl PartialEq for Message {
    fn eq(&self, other: &Self) -> bool {
        self.topic == other.topic
            && self.partition == other.partition
            && self.offset == other.offset
            && self.timestamp == other.timestamp
            && self.key == other.key
            && self.payload == other.payload
            && self.headers == other.headers
            && self.batch() == other.batch()
    }
}

impl Eq for Message {}

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
            extensions: Extensions::new(),
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
    // Inlined down to the record without headers or extensions (most records): counted twice
    // per record, held then dispatched, a call each (issue 21's profile).
    #[inline]
    pub fn held_bytes(&self) -> usize {
        let own = self.payload.len() + self.key.as_ref().map_or(0, Bytes::len);
        if self.headers.is_empty() && self.extensions.is_empty() {
            return own;
        }
        self.held_bytes_of_batch_or_headers(own)
    }

    /// [`Message::held_bytes`] of a batch, or of a record with headers (`own`: its payload
    /// and key).
    fn held_bytes_of_batch_or_headers(&self, own: usize) -> usize {
        if let Some(batch) = self.batch() {
            return batch.held_bytes();
        }
        let headers: usize = self
            .headers
            .iter()
            .map(|(name, value)| name.len() + value.len())
            .sum();
        own + headers
    }

    /// Set only on a batch subscriber's delivery: the records the batch is made of (the
    /// message's own payload, key and headers are then empty; see [`Message::batch_of`]).
    // Inlined down to the record without extensions (most records): the worker asks per
    // record.
    #[inline]
    pub fn batch(&self) -> Option<&Batch> {
        if self.extensions.is_empty() {
            return None;
        }
        self.extensions.get::<Batch>()
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

/// The records of one batch delivery, in offset order, all from one partition (never empty).
///
/// Take it as a handler parameter to see each record's offset, key and headers next to the
/// decoded payloads:
///
/// ```
/// use faststream_core::batch::Batch;
/// async fn store(amounts: Vec<i64>, batch: Batch) {
///     for (amount, record) in amounts.iter().zip(batch.iter()) {
///         println!("{amount} from {}[{}]@{}", record.topic, record.partition, record.offset);
///     }
/// }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch(Arc<[Message]>);

impl Batch {
    /// The records.
    pub fn records(&self) -> &[Message] {
        &self.0
    }

    /// The first record's offset.
    pub fn first_offset(&self) -> i64 {
        self.0.first().map_or(0, |m| m.offset)
    }

    /// The last record's offset.
    pub fn last_offset(&self) -> i64 {
        self.0.last().map_or(0, |m| m.offset)
    }

    /// The records from `index` on, as a batch message (`None` when none are left).
    pub(crate) fn rest_from(&self, index: usize) -> Option<Message> {
        let rest = self.0.get(index..).filter(|rest| !rest.is_empty())?;
        Message::batch_of(rest.to_vec())
    }

    /// The bytes its records hold against the subscriber's budget.
    pub(crate) fn held_bytes(&self) -> usize {
        self.0.iter().map(Message::held_bytes).sum()
    }
}

impl Deref for Batch {
    type Target = [Message];

    fn deref(&self) -> &[Message] {
        &self.0
    }
}

impl Message {
    /// One message standing for a batch of `records` of one partition (in offset order):
    /// its topic and partition are theirs, its offset and timestamp the last record's (where
    /// the batch's progress is counted), its headers the first record's (as FastStream's batch
    /// parser takes them: the batch's correlation id and `reply_to` are its first record's, so
    /// what the handler publishes carries that correlation id), its payload and key empty.
    /// `None` when `records` is empty.
    ///
    /// ```
    /// use faststream_core::Message;
    /// let records = (3..6).map(|offset| {
    ///     let mut m = Message::new("orders", offset.to_string());
    ///     m.offset = offset;
    ///     m
    /// });
    /// let batch = Message::batch_of(records.collect()).unwrap();
    /// assert_eq!(batch.offset, 5);
    /// assert_eq!(batch.batch().map(|b| b.len()), Some(3));
    /// ```
    pub fn batch_of(records: Vec<Message>) -> Option<Message> {
        let first = records.first()?;
        let headers = first.headers.clone();
        let last = records.last()?;
        let mut message = Message {
            topic: Arc::clone(&last.topic),
            partition: last.partition,
            offset: last.offset,
            timestamp: last.timestamp,
            key: None,
            payload: bytes::Bytes::new(),
            headers,
            extensions: Extensions::new(),
        };
        message.extensions.insert(Batch(records.into()));
        Some(message)
    }

    /// The records it stands for: a batch's records, else the message itself.
    pub fn records(&self) -> &[Message] {
        match self.batch() {
            Some(batch) => batch.records(),
            None => std::slice::from_ref(self),
        }
    }

    /// Where the message is, for log lines: `topic[partition]@offset`, or
    /// `topic[partition]@first..=last` for a batch.
    pub fn position(&self) -> Position<'_> {
        Position(self)
    }
}

/// A message's place in its partition, as log lines name it (see [`Message::position`]).
#[derive(Debug, Clone, Copy)]
pub struct Position<'a>(&'a Message);

impl std::fmt::Display for Position<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let m = self.0;
        match m.batch() {
            Some(batch) if batch.len() > 1 => write!(
                f,
                "{}[{}]@{}..={}",
                m.topic,
                m.partition,
                batch.first_offset(),
                batch.last_offset()
            ),
            _ => write!(f, "{}[{}]@{}", m.topic, m.partition, m.offset),
        }
    }
}
