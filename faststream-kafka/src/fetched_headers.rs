//! A fetched record's headers, read from the record's header section.
//!
//! librdkafka parses a fetched record's headers on first access (`rd_kafka_message_headers`):
//! it allocates a reading buffer, builds a list of the headers and frees the buffer. That is
//! about 1,000 instructions per record, a tenth of the drain's cost per record, and it is the
//! same for a record without headers (whose header section is the one byte of its count).
//! rdkafka's header iterator also panics on a header name that is not UTF-8, which would
//! take the subscriber's fetch thread down on one bad record.
//!
//! [`read`] reads the header section itself, in a few dozen instructions. librdkafka keeps
//! that section in a private field of its message, at an offset mirrored here for the one
//! librdkafka version this crate builds ([`MIRRORED_VERSION`], checked at run time); linked
//! with any other version, or for a record whose headers librdkafka already parsed, headers
//! are read through librdkafka's public calls instead. Both ways, a name that is not UTF-8 is
//! read lossily and a malformed section delivers the record without headers, each with one
//! warning naming the record.

use crate::fetch_queue::Fetched;
use crate::record_bytes::RecordBytes;
use faststream_core::Headers;
use rdkafka::bindings as native;
use std::borrow::Cow;
use std::ffi::{c_int, c_void, CStr};
use std::sync::LazyLock;

/// The librdkafka version (`rd_kafka_version()`) whose message layout [`FetchedMessage`]
/// mirrors: 2.12.1, built by `rdkafka-sys` 4.10.
const MIRRORED_VERSION: c_int = 0x020c_01ff;

/// The leading fields of librdkafka's private `rd_kafka_msg_t` (`rdkafka_msg.h`) up to a
/// fetched record's header section (`rkm_u.consumer.binhdrs`). The offsets asserted below were
/// measured with `offsetof` against librdkafka 2.12.1's headers on x86-64.
#[repr(C)]
struct FetchedMessage {
    message: native::rd_kafka_message_t,
    queue_link: [*mut c_void; 2],
    flags: c_int,
    timestamp_type: c_int,
    timestamp: i64,
    /// The headers librdkafka parsed, once something asked it to (then the list is the truth).
    parsed: *mut native::rd_kafka_headers_t,
    status: c_int,
    broker_id: i32,
    /// The record's header section: its length, then where it starts in the fetch buffer.
    section_len: i32,
    section: *const u8,
}

#[cfg(target_pointer_width = "64")]
const _: () = {
    assert!(std::mem::size_of::<native::rd_kafka_message_t>() == 72);
    assert!(std::mem::offset_of!(FetchedMessage, parsed) == 104);
    assert!(std::mem::offset_of!(FetchedMessage, section_len) == 120);
    assert!(std::mem::offset_of!(FetchedMessage, section) == 128);
};

/// Whether the linked librdkafka is the one [`FetchedMessage`] mirrors.
fn layout_known() -> bool {
    static KNOWN: LazyLock<bool> = LazyLock::new(|| {
        // SAFETY: `rd_kafka_version` only returns a constant.
        cfg!(target_pointer_width = "64")
            && unsafe { native::rd_kafka_version() } == MIRRORED_VERSION
    });
    *KNOWN
}

/// The record's unparsed header section, when it can be read directly (see the module docs).
fn section(record: &impl Fetched) -> Option<&[u8]> {
    if !layout_known() {
        return None;
    }
    let message = record.native().cast::<FetchedMessage>().cast_const();
    // SAFETY: a consumed message is an `rd_kafka_msg_t`, whose leading fields `FetchedMessage`
    // mirrors for the linked version (`layout_known`). The section points into the fetch
    // buffer the message holds a reference to, so it lives as long as `record`.
    unsafe {
        if !std::ptr::addr_of!((*message).parsed).read().is_null() {
            return None;
        }
        let len = std::ptr::addr_of!((*message).section_len).read();
        let start = std::ptr::addr_of!((*message).section).read();
        Some(match usize::try_from(len) {
            Ok(len) if len > 0 && !start.is_null() => std::slice::from_raw_parts(start, len),
            _ => &[],
        })
    }
}

/// Why a header section could not be read.
#[derive(Debug, PartialEq, Eq)]
enum Malformed {
    /// The section ends inside a header.
    Truncated,
    /// A count or length out of range.
    BadLength(i64),
    /// librdkafka refused to parse the section.
    Refused,
}

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Truncated => f.write_str("the header section ends inside a header"),
            Self::BadLength(len) => write!(f, "a header count or length of {len}"),
            Self::Refused => f.write_str("librdkafka could not parse the header section"),
        }
    }
}

/// The most headers a section may declare (librdkafka's bound too).
const MOST_HEADERS: i64 = 100_000;

/// Reads one zigzag varint (Kafka's record encoding) off the front of `bytes`.
fn varint(bytes: &mut &[u8]) -> Result<i64, Malformed> {
    let mut value = 0_u64;
    for (index, byte) in bytes.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * index);
        if byte & 0x80 == 0 {
            *bytes = &bytes[index + 1..];
            return Ok((value >> 1) as i64 ^ -((value & 1) as i64));
        }
    }
    Err(Malformed::Truncated)
}

/// Takes `len` bytes off the front of `bytes`.
fn take<'a>(bytes: &mut &'a [u8], len: i64) -> Result<&'a [u8], Malformed> {
    let len = usize::try_from(len).map_err(|_| Malformed::BadLength(len))?;
    if len > bytes.len() {
        return Err(Malformed::Truncated);
    }
    let (taken, rest) = bytes.split_at(len);
    *bytes = rest;
    Ok(taken)
}

/// Calls `each` with every header of a header section, in order: its name and its value
/// (`None` for a null value). A section of no bytes has no headers.
fn parse_section(
    mut section: &[u8],
    mut each: impl FnMut(usize, &[u8], Option<&[u8]>),
) -> Result<(), Malformed> {
    if section.is_empty() {
        return Ok(());
    }
    let count = varint(&mut section)?;
    if count > MOST_HEADERS {
        return Err(Malformed::BadLength(count));
    }
    let count = usize::try_from(count).unwrap_or(0);
    for _ in 0..count {
        let name_len = varint(&mut section)?;
        let name = take(&mut section, name_len)?;
        let value = match varint(&mut section)? {
            -1 => None,
            len => Some(take(&mut section, len)?),
        };
        each(count, name, value);
    }
    Ok(())
}

/// Calls `each` with every header of `record` as librdkafka parses them.
fn parse_native(
    record: &impl Fetched,
    mut each: impl FnMut(usize, &[u8], Option<&[u8]>),
) -> Result<(), Malformed> {
    let mut list = std::ptr::null_mut();
    // SAFETY: `record` is a live message; the list it gives is owned by the message.
    let err = unsafe { native::rd_kafka_message_headers(record.native(), &mut list) };
    match err {
        native::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR => {}
        native::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR__NOENT => return Ok(()),
        _ => return Err(Malformed::Refused),
    }
    // SAFETY: `list` is the message's live header list.
    let count = unsafe { native::rd_kafka_header_cnt(list) };
    for index in 0..count {
        let (mut name, mut value, mut len) = (std::ptr::null(), std::ptr::null(), 0);
        // SAFETY: as above; `index` is below the list's count, and the name and value it
        // gives live as long as the list.
        unsafe {
            if native::rd_kafka_header_get_all(list, index, &mut name, &mut value, &mut len)
                != native::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
            {
                return Err(Malformed::Refused);
            }
            let value = (!value.is_null()).then(|| std::slice::from_raw_parts(value.cast(), len));
            each(count, CStr::from_ptr(name).to_bytes(), value);
        }
    }
    Ok(())
}

/// Appends one header, its value copied by `bytes` (a null value as empty); returns the name
/// as read when it is not UTF-8.
fn append(
    headers: &mut Headers,
    bytes: &mut RecordBytes,
    name: &[u8],
    value: Option<&[u8]>,
) -> Option<String> {
    let name = String::from_utf8_lossy(name);
    headers.append_read(&name, bytes.copy(value.unwrap_or_default()));
    match name {
        Cow::Owned(lossy) => Some(lossy),
        Cow::Borrowed(_) => None,
    }
}

/// `record`'s headers, their values copied by `bytes` (a null value reads as empty). A name
/// that is not UTF-8 is read lossily, and a malformed header section gives no headers; each
/// is logged once, naming the record.
pub(crate) fn read(record: &impl Fetched, bytes: &mut RecordBytes) -> Headers {
    let direct = section(record);
    if matches!(direct, Some([] | [0])) {
        // No headers (a zero count): the common case, answered before any set-up.
        return Headers::new();
    }
    let mut headers = Headers::new();
    let mut bad_name = None;
    let mut add = |count: usize, name: &[u8], value: Option<&[u8]>| {
        if headers.is_empty() {
            headers = Headers::with_capacity(count);
        }
        if let Some(lossy) = append(&mut headers, bytes, name, value) {
            bad_name.get_or_insert(lossy);
        }
    };
    let parsed = match direct {
        Some(section) => parse_section(section, &mut add),
        None => parse_native(record, &mut add),
    };
    if let Err(malformed) = parsed {
        tracing::warn!(
            "record {}[{}]@{} delivered without headers: {malformed}",
            record.topic_name(),
            record.partition(),
            record.offset()
        );
        return Headers::new();
    }
    if let Some(name) = bad_name {
        tracing::warn!(
            "record {}[{}]@{}: a header name is not UTF-8, read as {name:?}",
            record.topic_name(),
            record.partition(),
            record.offset()
        );
    }
    #[cfg(debug_assertions)]
    if direct.is_some() {
        // Tests run debug builds: every record they read checks the direct reading against
        // librdkafka's own parse.
        let mut native = Headers::new();
        let mut detached = RecordBytes::detached();
        if parse_native(record, |_, name, value| {
            append(&mut native, &mut detached, name, value);
        })
        .is_ok()
            // librdkafka's names end at a NUL byte; these are read whole.
            && !headers.iter().any(|(name, _)| name.contains('\0'))
        {
            debug_assert!(native == headers, "{native:?} != {headers:?}");
        }
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A header section as Kafka's record format writes it.
    fn section_of(headers: &[(&[u8], Option<&[u8]>)]) -> Vec<u8> {
        fn put(out: &mut Vec<u8>, value: i64) {
            let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
            loop {
                let byte = (zigzag & 0x7f) as u8;
                zigzag >>= 7;
                if zigzag == 0 {
                    out.push(byte);
                    return;
                }
                out.push(byte | 0x80);
            }
        }
        let mut out = Vec::new();
        put(&mut out, headers.len() as i64);
        for (name, value) in headers {
            put(&mut out, name.len() as i64);
            out.extend_from_slice(name);
            match value {
                None => put(&mut out, -1),
                Some(value) => {
                    put(&mut out, value.len() as i64);
                    out.extend_from_slice(value);
                }
            }
        }
        out
    }

    /// Headers as read: names and values (`None` for a null value).
    type Pairs = Vec<(Vec<u8>, Option<Vec<u8>>)>;

    fn parsed(section: &[u8]) -> Result<Pairs, Malformed> {
        let mut out = Vec::new();
        parse_section(section, |_, name, value| {
            out.push((name.to_vec(), value.map(<[u8]>::to_vec)));
        })?;
        Ok(out)
    }

    #[test]
    fn the_linked_librdkafka_is_the_mirrored_one() {
        // Fails when rdkafka-sys brings another librdkafka: check `FetchedMessage` against its
        // `rdkafka_msg.h`, then update `MIRRORED_VERSION`.
        assert!(layout_known());
    }

    #[test]
    fn headers_are_read_in_order_with_null_empty_and_long_values() {
        let long = vec![7_u8; 300];
        let headers: [(&[u8], Option<&[u8]>); 5] = [
            (b"content-type", Some(b"application/json")),
            (b"empty", Some(b"")),
            (b"null", None),
            (b"content-type", Some(&long)),
            (b"", Some(b"unnamed")),
        ];
        let expected: Vec<_> = headers
            .iter()
            .map(|(n, v)| (n.to_vec(), v.map(<[u8]>::to_vec)))
            .collect();
        assert_eq!(parsed(&section_of(&headers)), Ok(expected));
    }

    #[test]
    fn no_headers_is_a_zero_count_or_no_section() {
        assert_eq!(parsed(&section_of(&[])), Ok(vec![]));
        assert_eq!(parsed(&[]), Ok(vec![]));
    }

    #[test]
    fn malformed_sections_are_refused() {
        let whole = section_of(&[(b"name", Some(b"value"))]);
        for cut in 1..whole.len() {
            assert_eq!(
                parsed(&whole[..cut]),
                Err(Malformed::Truncated),
                "cut at {cut}"
            );
        }
        // A negative name length, a value length below -1, too many headers, an endless varint.
        assert_eq!(parsed(&[2, 1]), Err(Malformed::BadLength(-1)));
        assert_eq!(parsed(&[2, 0, 3]), Err(Malformed::BadLength(-2)));
        assert_eq!(
            parsed(&[0xc2, 0x9a, 0x0c]),
            Err(Malformed::BadLength(100_001))
        );
        assert_eq!(parsed(&[0xff; 11]), Err(Malformed::Truncated));
    }
}
