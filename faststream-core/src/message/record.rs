//! What is published: a [`Record`] going to the producer, and where it landed ([`Delivered`]).

use crate::error::Result;
use crate::message::codec::{self, Codec, EncodeError, Encoded};
use crate::message::Headers;
use bytes::Bytes;
use std::sync::Arc;

/// A record to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Destination topic.
    pub topic: Arc<str>,
    /// Payload; `None` publishes a tombstone.
    pub payload: Option<Bytes>,
    /// Record key.
    pub key: Option<Bytes>,
    /// `content-type` header value, written first.
    pub content_type: Option<&'static str>,
    /// `correlation_id` header value.
    pub correlation_id: Option<Bytes>,
    /// Further headers.
    pub headers: Headers,
    /// Target partition; the partitioner chooses when `None`.
    pub partition: Option<i32>,
    /// Timestamp in milliseconds since the Unix epoch; the producer's clock when `None`.
    pub timestamp: Option<i64>,
}

impl Record {
    /// A record for `topic` with `payload` and nothing else set.
    pub fn new(topic: impl Into<Arc<str>>, payload: impl Into<Bytes>) -> Self {
        Self {
            topic: topic.into(),
            payload: Some(payload.into()),
            key: None,
            content_type: None,
            correlation_id: None,
            headers: Headers::new(),
            partition: None,
            timestamp: None,
        }
    }

    /// A record whose payload is `value` encoded by FastStream's rules (text, raw bytes or JSON),
    /// with the matching `content-type`.
    ///
    /// ```
    /// use faststream_core::Record;
    /// let record = Record::encode("users", &serde_json::json!({"user": "John", "user_id": 1})).unwrap();
    /// assert_eq!(record.content_type, Some("application/json"));
    /// assert_eq!(record.payload.as_deref(), Some(&br#"{"user":"John","user_id":1}"#[..]));
    /// ```
    pub fn encode<T: serde::Serialize + ?Sized>(
        topic: impl Into<Arc<str>>,
        value: &T,
    ) -> Result<Self> {
        Self::encode_with(topic, value, None)
    }

    /// A record whose payload is `value` encoded with `codec` (JSON when `None`; text, bytes
    /// and nothing as [`Record::encode`] makes them), with the codec's `content-type`.
    ///
    /// ```
    /// # #[cfg(feature = "msgpack")] {
    /// use faststream_core::{codec::MessagePack, Record};
    /// let record = Record::encode_with("users", &serde_json::json!({"id": 1}), Some(&MessagePack)).unwrap();
    /// assert_eq!(record.content_type, Some("application/msgpack"));
    /// # }
    /// ```
    pub fn encode_with<T: serde::Serialize + ?Sized>(
        topic: impl Into<Arc<str>>,
        value: &T,
        codec: Option<&dyn Codec>,
    ) -> Result<Self> {
        let mut record = Self::new(topic, Bytes::new());
        match codec::encode_with(value, codec)? {
            Encoded::Body {
                payload,
                content_type,
            } => {
                record.payload = Some(payload);
                record.content_type = Some(content_type);
            }
            Encoded::Nothing => record.payload = None,
            Encoded::Failed(message) => {
                return Err(EncodeError(format!("cannot publish an Err value: {message}")).into())
            }
        }
        Ok(record)
    }

    /// Sets the key.
    pub fn key(mut self, key: impl Into<Bytes>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Sets the header `name`, replacing any header of that name set before (as every other
    /// setter here replaces). To send a name several times, as Kafka allows, use
    /// [`Record::append_header`].
    ///
    /// ```
    /// use faststream_core::Record;
    /// let record = Record::new("orders", "{}")
    ///     .header("source", "web")
    ///     .header("source", "billing")
    ///     .append_header("hop", "a")
    ///     .append_header("hop", "b");
    /// let headers: Vec<_> = record.headers.iter().map(|(n, v)| (n, &v[..])).collect();
    /// assert_eq!(headers, [("source", &b"billing"[..]), ("hop", b"a"), ("hop", b"b")]);
    /// ```
    pub fn header(mut self, name: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.headers.insert(name, value);
        self
    }

    /// Adds a header, keeping those of the same name set before (Kafka allows repeated
    /// names; a reader's [`Headers::get`] sees the last).
    pub fn append_header(mut self, name: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.headers.append(name, value);
        self
    }

    /// Sends to this partition.
    pub fn partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }

    /// Sets the timestamp (milliseconds since the Unix epoch).
    pub fn timestamp(mut self, timestamp: i64) -> Self {
        self.timestamp = Some(timestamp);
        self
    }

    /// Sets the correlation id (a new uuid is written when none is set).
    pub fn correlation_id(mut self, id: impl Into<Bytes>) -> Self {
        self.correlation_id = Some(id.into());
        self
    }

    /// Asks the consumer to publish its reply to `topic` (the `reply_to` header).
    pub fn reply_to(mut self, topic: impl Into<Bytes>) -> Self {
        self.headers.insert(crate::message::REPLY_TO, topic);
        self
    }
}

/// Where a published record landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// Topic.
    pub topic: Arc<str>,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
}
