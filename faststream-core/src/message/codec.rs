//! Payload encoding and decoding, wire-compatible with FastStream.
//!
//! Decoding: JSON for typed payloads; `String` takes the raw UTF-8 text of a `text/plain`
//! (or unquoted) payload; `bytes::Bytes` takes the raw bytes; `Option<T>` is `None` for an empty
//! payload (a tombstone). Encoding: `String`/`&str` go out raw as `text/plain`, `bytes::Bytes`
//! raw as `application/octet-stream`, `()` and `None` publish nothing, everything else is JSON
//! with `content-type: application/json`.

pub use crate::error::{DecodeError, EncodeError};
use crate::message::{Message, CONTENT_TYPE};
use bytes::Bytes;
use serde::de::{self, DeserializeOwned, Visitor};
use serde::ser::{self, Impossible, Serialize};
use std::fmt;

/// Content type FastStream writes for JSON payloads.
pub const APPLICATION_JSON: &str = "application/json";
/// Content type FastStream writes for text payloads.
pub const TEXT_PLAIN: &str = "text/plain";
/// Content type for raw binary payloads.
pub const OCTET_STREAM: &str = "application/octet-stream";

/// Decodes `payload` into `T` (see the module docs for the rules).
///
/// `content_type` is the message's `content-type` header, when it has one: `text/plain` makes a
/// `String` take the payload as raw text even when it starts with a quote.
///
/// ```
/// use faststream_core::codec::decode;
/// #[derive(serde::Deserialize, Debug, PartialEq)]
/// struct User { name: String }
/// let user: User = decode(br#"{"name":"John"}"#, None).unwrap();
/// assert_eq!(user, User { name: "John".into() });
/// let text: String = decode(b"hello", None).unwrap();
/// assert_eq!(text, "hello");
/// let err = decode::<User>(br#"{"name":1}"#, None).unwrap_err();
/// assert_eq!(err.path, "name");
/// ```
pub fn decode<T: DeserializeOwned>(
    payload: &[u8],
    content_type: Option<&str>,
) -> Result<T, DecodeError> {
    let raw_text = content_type.is_some_and(|ct| ct.starts_with(TEXT_PLAIN));
    decode_from(
        || PayloadDeserializer { payload, raw_text },
        payload.is_empty(),
    )
}

/// Decodes a message's payload into `T`: [`decode`] for one record, [`decode_batch`] for a
/// batch subscriber's delivery.
pub fn decode_message<T: DeserializeOwned>(message: &Message) -> Result<T, DecodeError> {
    match &message.batch {
        Some(batch) => decode_batch(batch),
        None => decode(&message.payload, message.headers.get_str(CONTENT_TYPE)),
    }
}

/// Decodes a batch of records as a sequence (`Vec<T>`, `VecDeque<T>`...) whose element `i`
/// is record `i` decoded by the rules of [`decode`] (each with its own `content-type`). A
/// record that does not decode fails the whole batch, naming its index and offset.
///
/// ```
/// use faststream_core::{codec::decode_batch, Message};
/// let records = [r#"{"id":1}"#, "plain text"].map(|p| Message::new("t", p));
/// let values: Vec<serde_json::Value> = decode_batch(&records[..1]).unwrap();
/// assert_eq!(values, [serde_json::json!({"id": 1})]);
/// let texts: Vec<String> = decode_batch(&records[1..]).unwrap();
/// assert_eq!(texts, ["plain text"]);
/// let err = decode_batch::<Vec<i64>>(&records).unwrap_err();
/// assert_eq!(err.path, "[0]");
/// ```
pub fn decode_batch<T: DeserializeOwned>(records: &[Message]) -> Result<T, DecodeError> {
    decode_from(|| BatchDeserializer { records }, false)
}

/// Decodes with `make()`'s deserializer; on failure decodes again with path tracking to say
/// where it failed (the fast path pays nothing for it).
fn decode_from<'de, T, D>(make: impl Fn() -> D, empty: bool) -> Result<T, DecodeError>
where
    T: DeserializeOwned,
    D: de::Deserializer<'de, Error = serde_json::Error>,
{
    if let Ok(value) = T::deserialize(make()) {
        return Ok(value);
    }
    match serde_path_to_error::deserialize(make()) {
        Ok(value) => Ok(value),
        Err(err) => {
            let path = err.path().to_string();
            let inner = err.into_inner();
            let message = if empty {
                format!("empty payload: {inner}")
            } else {
                inner.to_string()
            };
            Err(DecodeError { path, message })
        }
    }
}

/// Deserializer over a batch of records: a sequence whose elements are the records' payloads.
struct BatchDeserializer<'de> {
    records: &'de [Message],
}

impl<'de> de::Deserializer<'de> for BatchDeserializer<'de> {
    type Error = serde_json::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_seq(RecordSeq {
            records: self.records.iter(),
        })
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_newtype_struct(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf unit
        unit_struct seq tuple tuple_struct map struct enum identifier ignored_any
    }
}

/// The records of a batch, one sequence element each.
struct RecordSeq<'de> {
    records: std::slice::Iter<'de, Message>,
}

impl<'de> de::SeqAccess<'de> for RecordSeq<'de> {
    type Error = serde_json::Error;

    fn next_element_seed<S: de::DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, Self::Error> {
        let Some(record) = self.records.next() else {
            return Ok(None);
        };
        let raw_text = record
            .headers
            .get_str(CONTENT_TYPE)
            .is_some_and(|ct| ct.starts_with(TEXT_PLAIN));
        let payload = PayloadDeserializer {
            payload: &record.payload,
            raw_text,
        };
        seed.deserialize(payload).map(Some).map_err(|err| {
            de::Error::custom(format_args!(
                "record {}[{}]@{}: {err}",
                record.topic, record.partition, record.offset
            ))
        })
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.records.len())
    }
}

/// Decodes a value that is absent (a missing key or header): `None` for an `Option`, an error
/// for anything else.
///
/// ```
/// use faststream_core::codec::decode_absent;
/// assert_eq!(decode_absent::<Option<String>>().unwrap(), None);
/// assert!(decode_absent::<String>().is_err());
/// ```
pub fn decode_absent<T: DeserializeOwned>() -> Result<T, DecodeError> {
    T::deserialize(AbsentDeserializer).map_err(|e| DecodeError {
        path: ".".into(),
        message: e.to_string(),
    })
}

/// Deserializer for "no value at all": only an `Option` accepts it.
struct AbsentDeserializer;

impl<'de> de::Deserializer<'de> for AbsentDeserializer {
    type Error = serde_json::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("value is absent"))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_none()
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf unit
        unit_struct newtype_struct seq tuple tuple_struct map struct enum identifier ignored_any
    }
}

/// Deserializer over a whole payload: JSON except where raw text or bytes are asked for.
struct PayloadDeserializer<'de> {
    payload: &'de [u8],
    raw_text: bool,
}

impl<'de> PayloadDeserializer<'de> {
    fn json<T>(
        self,
        f: impl FnOnce(
            &mut serde_json::Deserializer<serde_json::de::SliceRead<'de>>,
        ) -> Result<T, serde_json::Error>,
    ) -> Result<T, serde_json::Error> {
        let mut json = serde_json::Deserializer::from_slice(self.payload);
        let value = f(&mut json)?;
        json.end()?;
        Ok(value)
    }

    fn looks_like_json_string(&self) -> bool {
        !self.raw_text && self.payload.trim_ascii_start().first() == Some(&b'"')
    }
}

macro_rules! forward_to_json {
    ($($method:ident),* $(,)?) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
            self.json(|json| de::Deserializer::$method(json, visitor))
        }
    )*};
}

impl<'de> de::Deserializer<'de> for PayloadDeserializer<'de> {
    type Error = serde_json::Error;

    forward_to_json!(
        deserialize_any,
        deserialize_bool,
        deserialize_i8,
        deserialize_i16,
        deserialize_i32,
        deserialize_i64,
        deserialize_i128,
        deserialize_u8,
        deserialize_u16,
        deserialize_u32,
        deserialize_u64,
        deserialize_u128,
        deserialize_f32,
        deserialize_f64,
        deserialize_char,
        deserialize_unit,
        deserialize_seq,
        deserialize_map,
        deserialize_identifier,
        deserialize_ignored_any,
    );

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        if self.looks_like_json_string() {
            return self.json(|json| de::Deserializer::deserialize_str(json, visitor));
        }
        match std::str::from_utf8(self.payload) {
            Ok(text) => visitor.visit_borrowed_str(text),
            Err(err) => Err(de::Error::custom(format_args!(
                "payload is not valid UTF-8 text: {err}"
            ))),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_borrowed_bytes(self.payload)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_borrowed_bytes(self.payload)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        if self.payload.is_empty() {
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.json(|json| de::Deserializer::deserialize_unit_struct(json, name, visitor))
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        // A newtype is transparent on the wire, so `struct UserId(String)` takes raw text too.
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.json(|json| de::Deserializer::deserialize_tuple(json, len, visitor))
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.json(|json| de::Deserializer::deserialize_tuple_struct(json, name, len, visitor))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.json(|json| de::Deserializer::deserialize_struct(json, name, fields, visitor))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.json(|json| de::Deserializer::deserialize_enum(json, name, variants, visitor))
    }
}

/// Splits an encoded sequence into its elements, each encoded by the rules of [`encode`], for a
/// batch publisher: a JSON array gives one payload per element (a string element as raw
/// `text/plain` text, anything else as JSON, sharing the array's buffer); anything else is not
/// a sequence (`None`).
///
/// ```
/// use faststream_core::codec::{split_sequence, encode, Encoded};
/// let Encoded::Body { payload, content_type } = encode(&vec!["a", "b"]).unwrap() else {
///     unreachable!()
/// };
/// let parts = split_sequence(&payload, content_type).unwrap();
/// assert_eq!(parts[0], ("a".into(), "text/plain"));
/// assert_eq!(split_sequence(&"just text".into(), "text/plain"), None);
/// ```
pub fn split_sequence(payload: &Bytes, content_type: &str) -> Option<Vec<(Bytes, &'static str)>> {
    if content_type != APPLICATION_JSON || payload.trim_ascii_start().first() != Some(&b'[') {
        return None;
    }
    let elements: Vec<&serde_json::value::RawValue> = serde_json::from_slice(payload).ok()?;
    let parts = elements
        .into_iter()
        .map(|element| {
            let raw = element.get();
            match serde_json::from_str::<String>(raw) {
                Ok(text) => (Bytes::from(text), TEXT_PLAIN),
                _ => (payload.slice_ref(raw.as_bytes()), APPLICATION_JSON),
            }
        })
        .collect();
    Some(parts)
}

/// An encoded payload, ready to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Encoded {
    /// Nothing to publish (`()` or `None`).
    Nothing,
    /// A body and the content type to announce in the `content-type` header.
    Body {
        /// The payload bytes.
        payload: Bytes,
        /// `application/json`, `text/plain` or `application/octet-stream`.
        content_type: &'static str,
    },
    /// The value was a `Result::Err`: a handler error, with its JSON rendering as the message.
    Failed(String),
}

/// Encodes a value by FastStream's rules (see the module docs).
///
/// ```
/// use faststream_core::codec::{encode, Encoded};
/// assert_eq!(
///     encode(&"hi").unwrap(),
///     Encoded::Body { payload: "hi".into(), content_type: "text/plain" }
/// );
/// assert_eq!(encode(&()).unwrap(), Encoded::Nothing);
/// let json = encode(&serde_json::json!({"a": 1})).unwrap();
/// assert_eq!(json, Encoded::Body { payload: r#"{"a":1}"#.into(), content_type: "application/json" });
/// ```
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Encoded, EncodeError> {
    match value.serialize(TopLevelProbe) {
        Ok(Probed::Nothing) => Ok(Encoded::Nothing),
        Ok(Probed::Text(text)) => Ok(Encoded::Body {
            payload: Bytes::from(text),
            content_type: TEXT_PLAIN,
        }),
        Ok(Probed::Binary(bytes)) => Ok(Encoded::Body {
            payload: Bytes::from(bytes),
            content_type: OCTET_STREAM,
        }),
        Ok(Probed::Json(json)) => Ok(Encoded::Body {
            payload: Bytes::from(json),
            content_type: APPLICATION_JSON,
        }),
        Ok(Probed::Failed(message)) => Ok(Encoded::Failed(message)),
        Err(ProbeError::Json) => {
            let json = serde_json::to_vec(value).map_err(|e| EncodeError(e.to_string()))?;
            Ok(Encoded::Body {
                payload: Bytes::from(json),
                content_type: APPLICATION_JSON,
            })
        }
        Err(ProbeError::Custom(message)) => Err(EncodeError(message)),
    }
}

/// What the top level of a value is, when it is not plain JSON.
enum Probed {
    Nothing,
    Text(String),
    Binary(Vec<u8>),
    Json(Vec<u8>),
    Failed(String),
}

#[derive(Debug)]
enum ProbeError {
    /// The value is ordinary JSON: encode it with serde_json.
    Json,
    Custom(String),
}

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeError::Json => f.write_str("json value"),
            ProbeError::Custom(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for ProbeError {}

impl ser::Error for ProbeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        ProbeError::Custom(msg.to_string())
    }
}

/// Looks only at the top of a value: text, bytes, nothing, `Result::Err`, or "plain JSON".
/// Compound values return at once, so probing costs one call before serde_json runs.
struct TopLevelProbe;

macro_rules! probe_is_json {
    ($($method:ident($($arg:ty),*)),* $(,)?) => {$(
        fn $method(self, $(_: $arg),*) -> Result<Probed, ProbeError> { Err(ProbeError::Json) }
    )*};
}

impl ser::Serializer for TopLevelProbe {
    type Ok = Probed;
    type Error = ProbeError;
    type SerializeSeq = Impossible<Probed, ProbeError>;
    type SerializeTuple = Impossible<Probed, ProbeError>;
    type SerializeTupleStruct = Impossible<Probed, ProbeError>;
    type SerializeTupleVariant = Impossible<Probed, ProbeError>;
    type SerializeMap = Impossible<Probed, ProbeError>;
    type SerializeStruct = Impossible<Probed, ProbeError>;
    type SerializeStructVariant = Impossible<Probed, ProbeError>;

    probe_is_json!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_i128(i128),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_u128(u128),
        serialize_f32(f32),
        serialize_f64(f64),
        serialize_char(char),
        serialize_unit_struct(&'static str),
        serialize_unit_variant(&'static str, u32, &'static str),
    );

    fn serialize_str(self, v: &str) -> Result<Probed, ProbeError> {
        Ok(Probed::Text(v.to_owned()))
    }

    fn serialize_bytes(self, v: &[u8]) -> Result<Probed, ProbeError> {
        Ok(Probed::Binary(v.to_vec()))
    }

    fn serialize_none(self) -> Result<Probed, ProbeError> {
        Ok(Probed::Nothing)
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<Probed, ProbeError> {
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result<Probed, ProbeError> {
        Ok(Probed::Nothing)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<Probed, ProbeError> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<Probed, ProbeError> {
        // serde writes `Result` as the enum `Result { Ok(T), Err(E) }`.
        match (name, variant) {
            ("Result", "Ok") => match value.serialize(TopLevelProbe) {
                Err(ProbeError::Json) => serde_json::to_vec(value)
                    .map(Probed::Json)
                    .map_err(|e| ProbeError::Custom(e.to_string())),
                other => other,
            },
            ("Result", "Err") => {
                let message = match value.serialize(TopLevelProbe) {
                    Ok(Probed::Text(text)) => text,
                    _ => serde_json::to_string(value)
                        .map_err(|e| ProbeError::Custom(e.to_string()))?,
                };
                Ok(Probed::Failed(message))
            }
            _ => Err(ProbeError::Json),
        }
    }

    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, ProbeError> {
        Err(ProbeError::Json)
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, ProbeError> {
        Err(ProbeError::Json)
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, ProbeError> {
        Err(ProbeError::Json)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, ProbeError> {
        Err(ProbeError::Json)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, ProbeError> {
        Err(ProbeError::Json)
    }
    fn serialize_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStruct, ProbeError> {
        Err(ProbeError::Json)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, ProbeError> {
        Err(ProbeError::Json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

    #[derive(Debug, Deserialize, Serialize, PartialEq)]
    struct User {
        user: String,
        user_id: i64,
        nick: Option<String>,
    }

    #[test]
    fn decodes_json_struct_and_reports_paths() {
        let user: User = decode(br#"{"user":"John","user_id":1}"#, None).unwrap();
        assert_eq!(user.user, "John");
        assert_eq!(user.nick, None);
        let err = decode::<User>(br#"{"user":"John","user_id":"x"}"#, None).unwrap_err();
        assert_eq!(err.path, "user_id");
        assert!(err.message.contains("invalid type"), "{}", err.message);
        let err = decode::<User>(br#"{"user":"John"}"#, None).unwrap_err();
        assert!(
            err.message.contains("missing field `user_id`"),
            "{}",
            err.message
        );
    }

    #[test]
    fn malformed_and_empty_payloads_are_errors() {
        let err = decode::<User>(b"{not json", None).unwrap_err();
        assert!(
            err.message.contains("key must be a string"),
            "{}",
            err.message
        );
        let err = decode::<User>(b"", None).unwrap_err();
        assert!(err.message.starts_with("empty payload"), "{}", err.message);
        let err = decode::<User>(br#"{"user":"a","user_id":1} trailing"#, None).unwrap_err();
        assert!(err.message.contains("trailing"), "{}", err.message);
    }

    #[test]
    fn strings_take_raw_text_unless_json_quoted() {
        assert_eq!(decode::<String>(b"plain text", None).unwrap(), "plain text");
        assert_eq!(decode::<String>(br#""quoted""#, None).unwrap(), "quoted");
        assert_eq!(
            decode::<String>(br#""quoted""#, Some("text/plain")).unwrap(),
            "\"quoted\""
        );
        let err = decode::<String>(&[0xff, 0xfe], None).unwrap_err();
        assert!(err.message.contains("UTF-8"), "{}", err.message);
    }

    #[test]
    fn bytes_take_raw_payload_and_option_is_none_when_empty() {
        let raw: Bytes = decode(&[0, 159, 146, 150], None).unwrap();
        assert_eq!(&raw[..], &[0, 159, 146, 150]);
        assert_eq!(decode::<Option<User>>(b"", None).unwrap(), None);
        assert_eq!(decode::<i64>(b"42", None).unwrap(), 42);
    }

    #[test]
    fn encodes_by_faststream_rules() {
        assert_eq!(
            encode(&String::from("x")).unwrap(),
            Encoded::Body {
                payload: "x".into(),
                content_type: TEXT_PLAIN
            }
        );
        assert_eq!(encode(&Option::<String>::None).unwrap(), Encoded::Nothing);
        assert_eq!(
            encode(&Bytes::from_static(b"\x00\x01")).unwrap(),
            Encoded::Body {
                payload: Bytes::from_static(b"\x00\x01"),
                content_type: OCTET_STREAM
            }
        );
        let user = User {
            user: "J".into(),
            user_id: 1,
            nick: None,
        };
        assert_eq!(
            encode(&user).unwrap(),
            Encoded::Body {
                payload: r#"{"user":"J","user_id":1,"nick":null}"#.into(),
                content_type: APPLICATION_JSON
            }
        );
        assert_eq!(
            encode(&7_i32).unwrap(),
            Encoded::Body {
                payload: "7".into(),
                content_type: APPLICATION_JSON
            }
        );
    }

    #[test]
    fn serializable_results_split_into_body_and_failure() {
        let ok: Result<String, String> = Ok("fine".into());
        assert_eq!(
            encode(&ok).unwrap(),
            Encoded::Body {
                payload: "fine".into(),
                content_type: TEXT_PLAIN
            }
        );
        let ok: Result<User, String> = Ok(User {
            user: "J".into(),
            user_id: 2,
            nick: None,
        });
        assert_eq!(
            encode(&ok).unwrap(),
            Encoded::Body {
                payload: r#"{"user":"J","user_id":2,"nick":null}"#.into(),
                content_type: APPLICATION_JSON
            }
        );
        let err: Result<String, String> = Err("boom".into());
        assert_eq!(encode(&err).unwrap(), Encoded::Failed("boom".into()));
    }
}
