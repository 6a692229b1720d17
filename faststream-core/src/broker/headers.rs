//! The headers a published record is written with, in FastStream's wire order.

use crate::message::record::Record;
use crate::message::{write_correlation_id, CONTENT_TYPE, CORRELATION_ID, CORRELATION_ID_LEN};
use bytes::Bytes;
use std::borrow::Cow;

/// The headers `record` is published with, in wire order: `content-type` (when the record has
/// one), then `correlation_id` (the record's own, else a new uuid4 written into `fresh_id`),
/// then the record's headers. Every backend writes records through it, so the order is the
/// same everywhere. It borrows and allocates nothing: a backend copies each header into its
/// own representation once.
///
/// ```
/// use faststream_core::broker::outgoing_headers;
/// use faststream_core::message::CORRELATION_ID_LEN;
/// use faststream_core::Record;
///
/// let mut record = Record::encode("t", &1).unwrap().correlation_id("cid");
/// record.headers.append("x-extra", "1");
/// let mut fresh_id = [0_u8; CORRELATION_ID_LEN];
/// let headers = outgoing_headers(&record, &mut fresh_id);
/// assert_eq!(headers.len(), 3);
/// let written: Vec<(&str, &[u8])> = headers.collect();
/// assert_eq!(
///     written,
///     [
///         ("content-type", &b"application/json"[..]),
///         ("correlation_id", b"cid"),
///         ("x-extra", b"1"),
///     ]
/// );
/// ```
pub fn outgoing_headers<'a>(
    record: &'a Record,
    fresh_id: &'a mut [u8; CORRELATION_ID_LEN],
) -> OutgoingHeaders<'a> {
    let correlation_id: &[u8] = match &record.correlation_id {
        Some(id) => id,
        None => write_correlation_id(fresh_id),
    };
    OutgoingHeaders {
        content_type: record.content_type,
        correlation_id: Some(correlation_id),
        rest: record.headers.entries().iter(),
    }
}

/// The headers of a record being published, in wire order, as (name, value) pairs; made by
/// [`outgoing_headers`]. Its [`len`](ExactSizeIterator::len) is the exact count, for
/// allocating once.
#[derive(Debug, Clone)]
pub struct OutgoingHeaders<'a> {
    content_type: Option<&'static str>,
    correlation_id: Option<&'a [u8]>,
    rest: std::slice::Iter<'a, (Cow<'static, str>, Bytes)>,
}

impl<'a> Iterator for OutgoingHeaders<'a> {
    type Item = (&'a str, &'a [u8]);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if let Some(content_type) = self.content_type.take() {
            return Some((CONTENT_TYPE, content_type.as_bytes()));
        }
        if let Some(correlation_id) = self.correlation_id.take() {
            return Some((CORRELATION_ID, correlation_id));
        }
        self.rest
            .next()
            .map(|(name, value)| (name.as_ref(), &value[..]))
    }

    #[inline]
    fn size_hint(&self) -> (usize, Option<usize>) {
        let len = usize::from(self.content_type.is_some())
            + usize::from(self.correlation_id.is_some())
            + self.rest.len();
        (len, Some(len))
    }
}

impl ExactSizeIterator for OutgoingHeaders<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_type_then_correlation_id_then_the_records_headers() {
        let mut record = Record::new("t", "x");
        record.headers.append("b", "2");
        record.headers.append("a", "1");
        record.headers.append(CORRELATION_ID, "theirs");
        record.content_type = Some("text/plain");
        record.correlation_id = Some(Bytes::from_static(b"cid"));
        let mut fresh = [0; CORRELATION_ID_LEN];
        let headers = outgoing_headers(&record, &mut fresh);
        assert_eq!(headers.len(), 5);
        let written: Vec<_> = headers.collect();
        assert_eq!(
            written,
            [
                (CONTENT_TYPE, &b"text/plain"[..]),
                (CORRELATION_ID, b"cid"),
                ("b", b"2"),
                ("a", b"1"),
                (CORRELATION_ID, b"theirs"),
            ]
        );
    }

    #[test]
    fn a_record_without_a_correlation_id_gets_a_new_one() {
        let record = Record::new("t", "x");
        let mut fresh = [0; CORRELATION_ID_LEN];
        let written: Vec<(String, Vec<u8>)> = outgoing_headers(&record, &mut fresh)
            .map(|(n, v)| (n.to_owned(), v.to_vec()))
            .collect();
        assert_eq!(written.len(), 1, "no content type: no content-type header");
        assert_eq!(written[0].0, CORRELATION_ID);
        let id = std::str::from_utf8(&written[0].1).unwrap();
        assert_eq!(uuid::Uuid::parse_str(id).unwrap().get_version_num(), 4);
        let mut other = [0; CORRELATION_ID_LEN];
        let again: Vec<_> = outgoing_headers(&record, &mut other).collect();
        assert_ne!(again[0].1, id.as_bytes(), "a new one each time");
    }
}
