//! Payloads as tests compare them: decoded to JSON the way FastStream encodes them.

use faststream_core::codec::decode_with;
use faststream_core::message::CONTENT_TYPE;
use faststream_core::Message;
use serde_json::Value;

/// The payload of `message` decoded the way FastStream encodes it: JSON for
/// `application/json`, a string for `text/plain`, the format of a codec compiled in for its
/// content type (`application/msgpack`, `application/cbor`); otherwise JSON when it parses,
/// else a string (lossy UTF-8). An empty payload is `null`. A batch subscriber's delivery is the array of
/// its records, each decoded so.
pub fn decode(message: &Message) -> Value {
    if let Some(batch) = message.batch() {
        return Value::Array(batch.iter().map(decode).collect());
    }
    if message.payload.is_empty() {
        return Value::Null;
    }
    let text = || Value::String(String::from_utf8_lossy(&message.payload).into_owned());
    let content_type = message.headers.get_str(CONTENT_TYPE);
    decode_with(&message.payload, content_type, None).unwrap_or_else(|_| text())
}
