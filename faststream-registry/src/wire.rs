//! Confluent's wire format: the magic byte `0`, the schema id as 4 bytes big-endian, for
//! Protobuf the message indexes (a zig-zag varint count, then each index as a zig-zag
//! varint; `[0]`, the first message of the file, as the single byte `0`), then the body.

use faststream_core::codec::DecodeError;

/// The first byte of every framed record.
pub const MAGIC: u8 = 0;

/// The bytes before the body: the magic byte and the schema id.
pub const HEADER_LEN: usize = 5;

/// The schema id of a framed payload, or `None` when it is not framed (too short, or another
/// first byte).
///
/// ```
/// use faststream_registry::wire::schema_id;
/// assert_eq!(schema_id(&[0, 0, 0, 1, 2, b'x']), Some(258));
/// assert_eq!(schema_id(b"{\"id\":1}"), None);
/// ```
pub fn schema_id(payload: &[u8]) -> Option<u32> {
    match payload {
        [MAGIC, a, b, c, d, ..] => Some(u32::from_be_bytes([*a, *b, *c, *d])),
        _ => None,
    }
}

/// The schema id and the rest of a framed payload; an error naming what is wrong otherwise.
pub fn split(payload: &[u8]) -> Result<(u32, &[u8]), DecodeError> {
    match schema_id(payload) {
        Some(id) => Ok((id, &payload[HEADER_LEN..])),
        None => Err(DecodeError {
            path: ".".into(),
            message: format!(
                "not in the schema registry's wire format (magic byte 0 and a 4-byte schema id): {} bytes starting {:?}",
                payload.len(),
                &payload[..payload.len().min(HEADER_LEN)]
            ),
        }),
    }
}

/// Writes the magic byte and `id`, then `body`.
///
/// ```
/// use faststream_registry::wire::frame;
/// assert_eq!(frame(258, b"x"), [0, 0, 0, 1, 2, b'x']);
/// ```
pub fn frame(id: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.push(MAGIC);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// Appends Protobuf message indexes: `[0]` as the single byte `0`, else their count and each
/// index, as zig-zag varints.
///
/// ```
/// use faststream_registry::wire::{read_indexes, write_indexes};
/// let mut out = Vec::new();
/// write_indexes(&mut out, &[0]);
/// assert_eq!(out, [0]);
/// out.clear();
/// write_indexes(&mut out, &[1, 0]);
/// assert_eq!(out, [4, 2, 0]);
/// assert_eq!(read_indexes(&out).unwrap(), (vec![1, 0], &[][..]));
/// ```
pub fn write_indexes(out: &mut Vec<u8>, indexes: &[i32]) {
    if indexes == [0] {
        out.push(0);
        return;
    }
    write_zigzag(out, i64::try_from(indexes.len()).unwrap_or(i64::MAX));
    for index in indexes {
        write_zigzag(out, i64::from(*index));
    }
}

/// Reads Protobuf message indexes from the start of `bytes` (the single byte `0` is `[0]`);
/// returns them and the rest.
pub fn read_indexes(bytes: &[u8]) -> Result<(Vec<i32>, &[u8]), DecodeError> {
    let (count, mut rest) = read_zigzag(bytes)?;
    if count == 0 {
        return Ok((vec![0], rest));
    }
    let count = usize::try_from(count)
        .ok()
        .filter(|n| *n <= rest.len())
        .ok_or_else(|| wire_error(format!("bad message index count {count}")))?;
    let mut indexes = Vec::with_capacity(count);
    for _ in 0..count {
        let (index, after) = read_zigzag(rest)?;
        indexes.push(
            i32::try_from(index).map_err(|_| wire_error(format!("bad message index {index}")))?,
        );
        rest = after;
    }
    Ok((indexes, rest))
}

fn write_zigzag(out: &mut Vec<u8>, value: i64) {
    let mut n = ((value << 1) ^ (value >> 63)) as u64;
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn read_zigzag(bytes: &[u8]) -> Result<(i64, &[u8]), DecodeError> {
    let mut n: u64 = 0;
    for (i, byte) in bytes.iter().enumerate().take(10) {
        n |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            let value = ((n >> 1) as i64) ^ -((n & 1) as i64);
            return Ok((value, &bytes[i + 1..]));
        }
    }
    Err(wire_error("truncated varint in the message indexes".into()))
}

fn wire_error(message: String) -> DecodeError {
    DecodeError {
        path: ".".into(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_back_into_id_and_body() {
        let framed = frame(0x0102_0304, b"body");
        assert_eq!(framed[..5], [0, 1, 2, 3, 4]);
        assert_eq!(split(&framed).unwrap(), (0x0102_0304, &b"body"[..]));
        let err = split(b"{\"a\":1}").unwrap_err();
        assert!(err.message.contains("wire format"), "{}", err.message);
        assert!(split(&[0, 0, 1]).is_err(), "too short");
    }

    #[test]
    fn message_indexes_are_zigzag_varints_and_the_first_message_is_one_zero_byte() {
        let cases: [(&[i32], &[u8]); 4] = [
            (&[0], &[0]),
            (&[1], &[2, 2]),
            (&[2, 1], &[4, 4, 2]),
            (&[70], &[2, 0x8c, 0x01]),
        ];
        for (indexes, bytes) in cases {
            let mut out = Vec::new();
            write_indexes(&mut out, indexes);
            assert_eq!(out, bytes, "{indexes:?}");
            out.extend_from_slice(b"rest");
            let (read, rest) = read_indexes(&out).unwrap();
            assert_eq!((read.as_slice(), rest), (indexes, &b"rest"[..]));
        }
        assert!(read_indexes(&[0x80]).is_err(), "truncated");
        assert!(read_indexes(&[10, 2]).is_err(), "more indexes than bytes");
    }
}
