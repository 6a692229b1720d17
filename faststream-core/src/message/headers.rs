//! Record headers in wire order, and the header names FastStream writes.

use bytes::Bytes;

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

    /// All headers in wire order, as a slice (for iterators that must be named).
    pub(crate) fn entries(&self) -> &[(String, Bytes)] {
        &self.entries
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
