//! Record headers in wire order, and the header names FastStream writes.

use bytes::Bytes;
use std::borrow::Cow;
use thin_vec::ThinVec;

/// Header carrying the id that ties a reply (or any derived message) to its origin.
pub const CORRELATION_ID: &str = "correlation_id";
/// Header naming the topic a reply to this message should be published to.
pub const REPLY_TO: &str = "reply_to";
/// Header naming the payload's encoding, as FastStream writes it.
pub const CONTENT_TYPE: &str = "content-type";

/// Header names nearly every record read carries: FastStream's own and the W3C trace
/// context. [`Headers::append_read`] stores these without allocating.
const COMMON_NAMES: [&str; 5] = [
    CONTENT_TYPE,
    CORRELATION_ID,
    REPLY_TO,
    "traceparent",
    "tracestate",
];

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
    /// A common name is borrowed (see [`Headers::append_read`]), any other owned.
    entries: ThinVec<(Cow<'static, str>, Bytes)>,
}

impl Headers {
    /// No headers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Room for `capacity` headers without reallocating.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            entries: ThinVec::with_capacity(capacity),
        }
    }

    /// Appends a header; an existing one with the same name is kept (Kafka semantics).
    pub fn append(&mut self, name: impl Into<String>, value: impl Into<Bytes>) {
        self.entries.push((Cow::Owned(name.into()), value.into()));
    }

    /// Appends a header read from a record: a name FastStream writes on every record
    /// (`content-type`, `correlation_id`, `reply_to`) or a W3C trace context one is stored
    /// without a copy; any other name is copied.
    ///
    /// ```
    /// use faststream_core::Headers;
    /// let mut headers = Headers::new();
    /// headers.append_read("content-type", "application/json".into());
    /// headers.append_read("x-tenant", "acme".into());
    /// assert_eq!(headers.get_str("content-type"), Some("application/json"));
    /// assert_eq!(headers.get_str("x-tenant"), Some("acme"));
    /// ```
    pub fn append_read(&mut self, name: &str, value: Bytes) {
        let name = match COMMON_NAMES.iter().find(|common| **common == name) {
            Some(common) => Cow::Borrowed(*common),
            None => Cow::Owned(name.to_owned()),
        };
        self.entries.push((name, value));
    }

    /// Sets a header, replacing every existing header of that name.
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<Bytes>) {
        self.set(Cow::Owned(name.into()), value.into());
    }

    /// [`Headers::insert`] for a name known at compile time: the name is not copied.
    ///
    /// ```
    /// use faststream_core::Headers;
    /// let mut headers = Headers::new();
    /// headers.append("traceparent", "old");
    /// headers.insert_static("traceparent", "new");
    /// assert_eq!(headers.get_str("traceparent"), Some("new"));
    /// assert_eq!(headers.len(), 1);
    /// ```
    pub fn insert_static(&mut self, name: &'static str, value: impl Into<Bytes>) {
        self.set(Cow::Borrowed(name), value.into());
    }

    /// [`Headers::insert_static`] with a copy of `value`, written over the memory of the value
    /// it replaces when it can (that header is the only one of its name and the last, its
    /// value has the same length and is held nowhere else): a header rewritten at each hop,
    /// such as the trace context, then costs no allocation.
    ///
    /// ```
    /// use faststream_core::Headers;
    /// let mut headers = Headers::new();
    /// headers.insert_static_copy("traceparent", b"00-aa-01");
    /// headers.insert_static_copy("traceparent", b"00-bb-01");
    /// assert_eq!(headers.get_str("traceparent"), Some("00-bb-01"));
    /// assert_eq!(headers.len(), 1);
    /// ```
    pub fn insert_static_copy(&mut self, name: &'static str, value: &[u8]) {
        let first = self.position(name);
        if let Some(index) = first.filter(|index| index + 1 == self.entries.len()) {
            let old = &mut self.entries[index].1;
            if old.len() == value.len() {
                match std::mem::take(old).try_into_mut() {
                    Ok(mut unshared) => {
                        unshared.copy_from_slice(value);
                        *old = unshared.freeze();
                        return;
                    }
                    Err(shared) => *old = shared,
                }
            }
        }
        self.set_found(first, Cow::Borrowed(name), Bytes::copy_from_slice(value));
    }

    /// Removes every header named `name` and appends `name: value`. A header set again (a
    /// trace context rewritten at each hop) is usually the only one of its name and the last:
    /// it is then replaced where it is, which ends the same, without a pass that moves
    /// entries.
    fn set(&mut self, name: Cow<'static, str>, value: Bytes) {
        self.set_found(self.position(&name), name, value);
    }

    /// [`Headers::set`] once the first header named `name` was looked for (`first`).
    fn set_found(&mut self, first: Option<usize>, name: Cow<'static, str>, value: Bytes) {
        match first {
            Some(index) if index + 1 == self.entries.len() => self.entries[index] = (name, value),
            Some(_) => {
                self.entries.retain(|(n, _)| *n != name);
                self.entries.push((name, value));
            }
            None => self.entries.push((name, value)),
        }
    }

    /// Where the first header named `name` is.
    fn position(&self, name: &str) -> Option<usize> {
        self.entries.iter().position(|(n, _)| n == name)
    }

    /// Removes every header named `name`.
    ///
    /// ```
    /// use faststream_core::Headers;
    /// let mut headers: Headers = [("a", "1"), ("b", "2"), ("a", "3")].into_iter().collect();
    /// headers.remove("a");
    /// assert_eq!(headers.iter().map(|(n, _)| n).collect::<Vec<_>>(), ["b"]);
    /// ```
    pub fn remove(&mut self, name: &str) {
        // Most removals find nothing: a scan, not a retaining pass, for those.
        if self.contains(name) {
            self.entries.retain(|(n, _)| n != name);
        }
    }

    /// Removes every header named `name` and returns the last one's value.
    ///
    /// ```
    /// use faststream_core::Headers;
    /// let mut headers = Headers::from_iter([("id", "a"), ("x", "1"), ("id", "b")]);
    /// assert_eq!(headers.take("id").as_deref(), Some(&b"b"[..]));
    /// assert_eq!(headers.len(), 1);
    /// assert_eq!(headers.take("id"), None);
    /// ```
    pub fn take(&mut self, name: &str) -> Option<bytes::Bytes> {
        let last = self.get(name)?.clone();
        self.entries.retain(|(n, _)| n != name);
        Some(last)
    }

    /// The last value of the header `name`, as bytes.
    // Inlined down to the empty check: most records carry no headers, and the runtime asks
    // for a few by name per record (a call each, issue 21's profile).
    #[inline]
    pub fn get(&self, name: &str) -> Option<&Bytes> {
        if self.entries.is_empty() {
            return None;
        }
        self.find_last(name)
    }

    fn find_last(&self, name: &str) -> Option<&Bytes> {
        self.entries
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
    }

    /// The last value of the header `name`, when it is valid UTF-8.
    #[inline]
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Whether a header of that name is present.
    #[inline]
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// All headers in wire order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Bytes)> {
        self.entries.iter().map(|(n, v)| (n.as_ref(), v))
    }

    /// All headers in wire order, as a slice (for iterators that must be named).
    pub(crate) fn entries(&self) -> &[(Cow<'static, str>, Bytes)] {
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
                .map(|(n, v)| (Cow::Owned(n.into()), v.into()))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_names_read_from_a_record_are_not_copied() {
        let mut headers = Headers::new();
        headers.append_read(CONTENT_TYPE, Bytes::from_static(b"application/json"));
        headers.append_read("traceparent", Bytes::from_static(b"00-ab-cd-01"));
        headers.append_read("x-tenant", Bytes::from_static(b"acme"));
        let borrowed: Vec<bool> = headers
            .entries()
            .iter()
            .map(|(name, _)| matches!(name, Cow::Borrowed(_)))
            .collect();
        assert_eq!(borrowed, [true, true, false]);
        let read: Vec<(&str, &[u8])> = headers.iter().map(|(n, v)| (n, &v[..])).collect();
        assert_eq!(
            read,
            [
                ("content-type", &b"application/json"[..]),
                ("traceparent", &b"00-ab-cd-01"[..]),
                ("x-tenant", &b"acme"[..]),
            ]
        );
    }

    #[test]
    fn setting_a_header_again_ends_as_removing_it_and_appending() {
        let pairs = |h: &Headers| -> Vec<(String, Vec<u8>)> {
            h.iter().map(|(n, v)| (n.to_owned(), v.to_vec())).collect()
        };
        // The last and only one of its name: replaced where it is.
        let mut last: Headers = [("a", "1"), ("t", "old")].into_iter().collect();
        last.insert_static("t", "new");
        assert_eq!(
            pairs(&last),
            [("a".into(), b"1".to_vec()), ("t".into(), b"new".to_vec())]
        );
        // Not last, or repeated: every one removed, the new one appended.
        let mut inner: Headers = [("t", "old"), ("a", "1")].into_iter().collect();
        inner.insert("t", "new");
        assert_eq!(
            pairs(&inner),
            [("a".into(), b"1".to_vec()), ("t".into(), b"new".to_vec())]
        );
        let mut repeated: Headers = [("t", "1"), ("a", "2"), ("t", "3")].into_iter().collect();
        repeated.insert_static("t", "new");
        assert_eq!(
            pairs(&repeated),
            [("a".into(), b"2".to_vec()), ("t".into(), b"new".to_vec())]
        );
        let mut absent = Headers::new();
        absent.remove("t");
        absent.insert("t", "new");
        assert_eq!(pairs(&absent), [("t".into(), b"new".to_vec())]);
    }

    #[test]
    fn a_copied_value_reuses_the_memory_it_replaces_only_when_nothing_else_holds_it() {
        let mut headers = Headers::new();
        headers.insert_static_copy("t", b"first");
        let before = headers.get("t").map(|v| v.as_ptr());
        headers.insert_static_copy("t", b"again");
        assert_eq!(headers.get("t").map(|v| v.as_ptr()), before, "written over");
        assert_eq!(headers.get_str("t"), Some("again"));
        let kept = headers.get("t").cloned();
        headers.insert_static_copy("t", b"third");
        assert_eq!(
            kept.as_deref(),
            Some(&b"again"[..]),
            "a value held elsewhere is left alone"
        );
        assert_eq!(headers.get_str("t"), Some("third"));
        headers.insert_static_copy("t", b"longer value");
        headers.append("x", "1");
        headers.insert_static_copy("t", b"short");
        let all: Vec<(&str, &[u8])> = headers.iter().map(|(n, v)| (n, &v[..])).collect();
        assert_eq!(all, [("x", &b"1"[..]), ("t", b"short")]);
    }

    #[test]
    fn a_read_header_equals_an_appended_one() {
        let mut read = Headers::new();
        read.append_read(CORRELATION_ID, Bytes::from_static(b"id-1"));
        let mut appended = Headers::new();
        appended.append(CORRELATION_ID, "id-1");
        assert_eq!(read, appended);
        read.insert(CORRELATION_ID, "id-2");
        assert_eq!(read.get_str(CORRELATION_ID), Some("id-2"));
        assert_eq!(read.len(), 1);
    }
}
