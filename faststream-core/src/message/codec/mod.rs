//! Payload encoding and decoding, wire-compatible with FastStream, and the seam for other
//! formats ([`Codec`]).
//!
//! Decoding: JSON for typed payloads; `String` takes the raw UTF-8 text of a `text/plain`
//! (or unquoted) payload, and so does any type that takes whatever comes (`serde_json::Value`):
//! a `text/plain` record is its text; `bytes::Bytes` takes the raw bytes; `Option<T>` is `None`
//! for an empty payload (a tombstone). Encoding: `String`/`&str` go out raw as `text/plain`,
//! `bytes::Bytes` raw as `application/octet-stream`, `()` and `None` publish nothing,
//! everything else is JSON with `content-type: application/json`.
//!
//! A configured [`Codec`] (MessagePack, CBOR, Avro behind features, or your own) takes the
//! place of JSON: see [`seam`] for how a record's codec is chosen and what it costs.

pub use crate::error::{DecodeError, EncodeError};
use crate::message::{Message, CONTENT_TYPE};
use bytes::Bytes;
/// The type-erased serde traits [`Codec::encode`] takes, for codecs of your own.
pub use erased_serde;
use serde::de::{self, DeserializeOwned, Visitor};
use serde::ser::{self, Impossible, Serialize};
use std::fmt;

#[cfg(feature = "avro")]
mod avro;
mod formats;
mod media;
#[cfg(feature = "protobuf")]
mod protobuf;
pub mod seam;
#[cfg(any(feature = "cbor", feature = "avro"))]
mod tree;

#[cfg(feature = "avro")]
pub use avro::{encode_avro_datum, Avro, AvroReader};
#[cfg(feature = "cbor")]
pub use formats::Cbor;
#[cfg(feature = "msgpack")]
pub use formats::MessagePack;
pub use media::{APPLICATION_CBOR, APPLICATION_MSGPACK, APPLICATION_PROTOBUF, AVRO_BINARY};
#[cfg(feature = "protobuf")]
pub use protobuf::Proto;
pub use seam::{
    decode_by, deserialize_into, Codec, CodecRef, DecodeFailure, DecodeTarget, FormatSchema,
    SchemaCheck,
};

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
    decode_with(payload, content_type, None)
}

/// Decodes `payload` into `T` with the codec the record and the configuration choose (see
/// [`seam`]): `codec` is the configured one, `None` for FastStream's JSON.
///
/// ```
/// use faststream_core::codec::decode_with;
/// let value: serde_json::Value = decode_with(b"hi", Some("text/plain"), None).unwrap();
/// assert_eq!(value, "hi");
/// ```
pub fn decode_with<T: DeserializeOwned>(
    payload: &[u8],
    content_type: Option<&str>,
    codec: Option<&dyn Codec>,
) -> Result<T, DecodeError> {
    match route(content_type, payload, codec) {
        Route::Builtin { raw_text } => decode_from(
            || Ok(PayloadDeserializer { payload, raw_text }),
            payload.is_empty(),
        ),
        Route::Codec(codec) => decode_off_the_json_path(codec, payload),
    }
}

/// [`decode_by`], kept out of line: the JSON path it sits beside stays as small, and as
/// inlined, as before the seam existed.
#[cold]
#[inline(never)]
fn decode_off_the_json_path<T: DeserializeOwned>(
    codec: &dyn Codec,
    payload: &[u8],
) -> Result<T, DecodeError> {
    decode_by(codec, payload)
}

/// How one record decodes.
enum Route<'c> {
    /// FastStream's rules: JSON, or the raw text of a `text/plain` record.
    Builtin { raw_text: bool },
    /// A codec's.
    Codec(&'c dyn Codec),
}

/// Chooses a record's decoding (the rules are in [`seam`]'s docs). The default path (no
/// codec configured, a JSON or text record) is two prefix comparisons.
#[inline]
fn route<'c>(
    content_type: Option<&str>,
    payload: &[u8],
    configured: Option<&'c dyn Codec>,
) -> Route<'c> {
    let builtin = Route::Builtin { raw_text: false };
    let Some(content_type) = content_type else {
        return match configured {
            Some(codec) if !payload.is_empty() => Route::Codec(codec),
            _ => builtin,
        };
    };
    if content_type.starts_with(TEXT_PLAIN) {
        return Route::Builtin { raw_text: true };
    }
    if content_type.starts_with(APPLICATION_JSON) || payload.is_empty() {
        return builtin;
    }
    if let Some(codec) = configured.filter(|c| c.claims(Some(content_type), payload)) {
        return Route::Codec(codec);
    }
    if let Some(codec) = formats::known(media::media_type(content_type)) {
        return Route::Codec(codec);
    }
    configured.map_or(builtin, Route::Codec)
}

/// Decodes a message's payload into `T`: [`decode`] for one record, [`decode_batch`] for a
/// batch subscriber's delivery.
pub fn decode_message<T: DeserializeOwned>(message: &Message) -> Result<T, DecodeError> {
    decode_message_with(message, None)
}

/// [`decode_message`] with a configured codec (see [`decode_with`]).
pub fn decode_message_with<T: DeserializeOwned>(
    message: &Message,
    codec: Option<&dyn Codec>,
) -> Result<T, DecodeError> {
    match message.batch() {
        Some(batch) => decode_batch_with(batch, codec),
        None => decode_with(
            &message.payload,
            message.headers.get_str(CONTENT_TYPE),
            codec,
        ),
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
    decode_batch_with(records, None)
}

/// [`decode_batch`] with a configured codec: each record decodes as [`decode_with`] says.
pub fn decode_batch_with<T: DeserializeOwned>(
    records: &[Message],
    codec: Option<&dyn Codec>,
) -> Result<T, DecodeError> {
    decode_from(|| Ok(BatchDeserializer { records, codec }), false)
}

/// Decodes with `make()`'s deserializer; on failure decodes again with path tracking to say
/// where it failed (the fast path pays nothing for it).
fn decode_from<'de, T, D>(
    make: impl Fn() -> Result<D, DecodeError>,
    empty: bool,
) -> Result<T, DecodeError>
where
    T: DeserializeOwned,
    D: de::Deserializer<'de, Error = serde_json::Error>,
{
    if let Ok(value) = T::deserialize(make()?) {
        return Ok(value);
    }
    match serde_path_to_error::deserialize(make()?) {
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
struct BatchDeserializer<'de, 'c> {
    records: &'de [Message],
    codec: Option<&'c dyn Codec>,
}

impl<'de> de::Deserializer<'de> for BatchDeserializer<'de, '_> {
    type Error = serde_json::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_seq(RecordSeq {
            records: self.records.iter(),
            codec: self.codec,
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
struct RecordSeq<'de, 'c> {
    records: std::slice::Iter<'de, Message>,
    codec: Option<&'c dyn Codec>,
}

impl<'de> de::SeqAccess<'de> for RecordSeq<'de, '_> {
    type Error = serde_json::Error;

    fn next_element_seed<S: de::DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, Self::Error> {
        let Some(record) = self.records.next() else {
            return Ok(None);
        };
        let located = |err: &dyn fmt::Display| {
            de::Error::custom(format_args!(
                "record {}[{}]@{}: {err}",
                record.topic, record.partition, record.offset
            ))
        };
        let payload = &record.payload[..];
        match route(record.headers.get_str(CONTENT_TYPE), payload, self.codec) {
            Route::Builtin { raw_text } => seed
                .deserialize(PayloadDeserializer { payload, raw_text })
                .map(Some)
                .map_err(|err| located(&err)),
            Route::Codec(codec) => {
                let mut target = seam::Seeded {
                    payload,
                    seed: Some(seed),
                    value: None,
                };
                codec
                    .decode(payload, &mut target)
                    .map_err(|err| located(&format_args!("{}: {}", codec.name(), err.message)))?;
                match target.value {
                    Some(value) => Ok(Some(value)),
                    None => Err(located(&"the codec decoded nothing")),
                }
            }
        }
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
    );

    /// A self-describing type (`serde_json::Value`) takes a `text/plain` record as its text,
    /// as FastStream's handler gets it; anything else is JSON.
    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        if self.raw_text {
            return self.deserialize_str(visitor);
        }
        self.json(|json| de::Deserializer::deserialize_any(json, visitor))
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        if self.raw_text {
            return visitor.visit_unit();
        }
        self.json(|json| de::Deserializer::deserialize_ignored_any(json, visitor))
    }

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
    encode_with(value, None)
}

/// Encodes a value by FastStream's rules, structured values with `codec` (JSON when `None`):
/// text, bytes and nothing stay what [`encode`] makes of them under every codec.
///
/// ```
/// use faststream_core::codec::{encode_with, Encoded};
/// assert_eq!(
///     encode_with(&"hi", None).unwrap(),
///     Encoded::Body { payload: "hi".into(), content_type: "text/plain" }
/// );
/// ```
pub fn encode_with<T: Serialize + ?Sized>(
    value: &T,
    codec: Option<&dyn Codec>,
) -> Result<Encoded, EncodeError> {
    match value.serialize(TopLevelProbe { codec }) {
        Ok(Probed::Nothing) => Ok(Encoded::Nothing),
        Ok(Probed::Text(text)) => Ok(Encoded::Body {
            payload: Bytes::from(text),
            content_type: TEXT_PLAIN,
        }),
        Ok(Probed::Binary(bytes)) => Ok(Encoded::Body {
            payload: Bytes::from(bytes),
            content_type: OCTET_STREAM,
        }),
        Ok(Probed::Structured(payload, content_type)) => Ok(Encoded::Body {
            payload: Bytes::from(payload),
            content_type,
        }),
        Ok(Probed::Failed(message)) => Ok(Encoded::Failed(message)),
        Err(ProbeError::Json) => {
            let (payload, content_type) = encode_structured(value, codec)?;
            Ok(Encoded::Body {
                payload: Bytes::from(payload),
                content_type,
            })
        }
        Err(ProbeError::Custom(message)) => Err(EncodeError(message)),
    }
}

/// A structured value's bytes and content type: JSON, or the codec's.
fn encode_structured<T: Serialize + ?Sized>(
    value: &T,
    codec: Option<&dyn Codec>,
) -> Result<(Vec<u8>, &'static str), EncodeError> {
    match codec {
        None => serde_json::to_vec(value)
            .map(|json| (json, APPLICATION_JSON))
            .map_err(|e| EncodeError(e.to_string())),
        Some(codec) => codec
            .encode(&seam::Lend(value))
            .map(|payload| (payload, codec.content_type())),
    }
}

/// What the top level of a value is, when it is not plain JSON.
enum Probed {
    Nothing,
    Text(String),
    Binary(Vec<u8>),
    Structured(Vec<u8>, &'static str),
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
#[derive(Clone, Copy)]
struct TopLevelProbe<'c> {
    /// Encodes a `Result::Ok`'s structured value.
    codec: Option<&'c dyn Codec>,
}

macro_rules! probe_is_json {
    ($($method:ident($($arg:ty),*)),* $(,)?) => {$(
        fn $method(self, $(_: $arg),*) -> Result<Probed, ProbeError> { Err(ProbeError::Json) }
    )*};
}

impl ser::Serializer for TopLevelProbe<'_> {
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
            ("Result", "Ok") => match value.serialize(self) {
                Err(ProbeError::Json) => encode_structured(value, self.codec)
                    .map(|(payload, content_type)| Probed::Structured(payload, content_type))
                    .map_err(|e| ProbeError::Custom(e.0)),
                other => other,
            },
            ("Result", "Err") => {
                let message = match value.serialize(self) {
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

    #[test]
    fn text_plain_is_text_for_self_describing_types() {
        let value: serde_json::Value = decode(b"hi", Some("text/plain")).unwrap();
        assert_eq!(value, serde_json::json!("hi"));
        let value: serde_json::Value = decode(b"42", Some("text/plain; charset=utf-8")).unwrap();
        assert_eq!(value, serde_json::json!("42"), "text stays text");
        assert_eq!(decode::<i64>(b"42", Some("text/plain")).unwrap(), 42);
        let value: serde_json::Value = decode(b"42", None).unwrap();
        assert_eq!(value, serde_json::json!(42), "no content type: JSON");
    }

    #[test]
    fn a_batch_of_a_number_and_text_reads_as_values() {
        // FastStream's rule: `publish_batch(1, "hi")` into `list[Any]` gives `[1, "hi"]`.
        let records: Vec<Message> = [body_of(&1, None), body_of(&"hi", None)]
            .into_iter()
            .map(|(payload, content_type)| {
                let mut message = Message::new("t", payload);
                message.headers.insert(CONTENT_TYPE, content_type);
                message
            })
            .collect();
        let values: Vec<serde_json::Value> = decode_batch(&records).unwrap();
        assert_eq!(values, [serde_json::json!(1), serde_json::json!("hi")]);
    }

    /// The body of an encoded value, which the tests know has one.
    fn body_of<T: Serialize + ?Sized>(
        value: &T,
        codec: Option<&dyn Codec>,
    ) -> (Bytes, &'static str) {
        match encode_with(value, codec).unwrap() {
            Encoded::Body {
                payload,
                content_type,
            } => (payload, content_type),
            other => panic!("no body: {other:?}"),
        }
    }

    /// A codec that is JSON behind a `V`, under its own content type.
    #[derive(Debug)]
    struct Vendor;

    impl Codec for Vendor {
        fn name(&self) -> &'static str {
            "vendor"
        }
        fn content_type(&self) -> &'static str {
            "application/x-vendor"
        }
        fn decode<'de>(
            &self,
            payload: &'de [u8],
            target: &mut dyn DecodeTarget<'de>,
        ) -> Result<(), DecodeError> {
            let json = payload.strip_prefix(b"V").ok_or_else(|| DecodeError {
                path: ".".into(),
                message: "no V in front".into(),
            })?;
            deserialize_into(target, &mut serde_json::Deserializer::from_slice(json))
        }
        fn encode(&self, value: &dyn erased_serde::Serialize) -> Result<Vec<u8>, EncodeError> {
            let mut out = b"V".to_vec();
            serde_json::to_writer(&mut out, value).map_err(|e| EncodeError(e.to_string()))?;
            Ok(out)
        }
    }

    #[test]
    fn a_configured_codec_encodes_structures_but_not_text_bytes_or_nothing() {
        let codec: Option<&dyn Codec> = Some(&Vendor);
        assert_eq!(
            encode_with(&serde_json::json!({"a": 1}), codec).unwrap(),
            Encoded::Body {
                payload: r#"V{"a":1}"#.into(),
                content_type: "application/x-vendor"
            }
        );
        let ok: Result<Vec<i32>, String> = Ok(vec![1]);
        assert_eq!(
            encode_with(&ok, codec).unwrap(),
            Encoded::Body {
                payload: "V[1]".into(),
                content_type: "application/x-vendor"
            }
        );
        assert_eq!(
            encode_with(&"hi", codec).unwrap(),
            Encoded::Body {
                payload: "hi".into(),
                content_type: TEXT_PLAIN
            }
        );
        assert_eq!(encode_with(&(), codec).unwrap(), Encoded::Nothing);
    }

    #[test]
    fn the_record_chooses_before_the_configuration() {
        let codec: Option<&dyn Codec> = Some(&Vendor);
        let user = br#"{"user":"J","user_id":1,"nick":null}"#;
        // No content type: the configured codec.
        let err = decode_with::<User>(user, None, codec).unwrap_err();
        assert_eq!(err.message, "vendor: no V in front");
        // JSON and text records are FastStream's, whatever is configured.
        let decoded: User = decode_with(user, Some(APPLICATION_JSON), codec).unwrap();
        assert_eq!(decoded.user_id, 1);
        let text: serde_json::Value = decode_with(b"hi", Some(TEXT_PLAIN), codec).unwrap();
        assert_eq!(text, "hi");
        // The codec's own content type, an unknown one: the codec.
        for content_type in ["application/x-vendor", "application/x-unknown"] {
            let n: i64 = decode_with(b"V7", Some(content_type), codec).unwrap();
            assert_eq!(n, 7);
        }
        // A tombstone never reaches the codec; bytes are the raw payload.
        assert_eq!(decode_with::<Option<User>>(b"", None, codec).unwrap(), None);
        let raw: Bytes = decode_with(b"\x00\x01", None, codec).unwrap();
        assert_eq!(&raw[..], b"\x00\x01");
    }

    #[test]
    fn codec_errors_name_the_codec_and_the_path() {
        let err = decode_by::<User>(&Vendor, br#"V{"user":"J","user_id":"x"}"#).unwrap_err();
        assert_eq!(err.path, "user_id");
        assert!(
            err.message.starts_with("vendor: invalid type"),
            "{}",
            err.message
        );
    }

    #[cfg(feature = "msgpack")]
    #[test]
    fn messagepack_round_trips_typed_values_in_single_and_batch_reads() {
        let user = User {
            user: "J".into(),
            user_id: 3,
            nick: Some("jo".into()),
        };
        let (payload, content_type) = body_of(&user, Some(&MessagePack));
        assert_eq!(content_type, APPLICATION_MSGPACK);
        // Known by its content type even without configuration.
        assert_eq!(decode::<User>(&payload, Some(content_type)).unwrap(), user);
        let mut message = Message::new("t", payload.clone());
        message.headers.insert(CONTENT_TYPE, content_type);
        let batch: Vec<User> = decode_batch(std::slice::from_ref(&message)).unwrap();
        assert_eq!(batch, [user]);
        let err = decode_by::<User>(&MessagePack, &payload[..payload.len() - 1]).unwrap_err();
        assert!(err.message.starts_with("msgpack: "), "{}", err.message);
        let err = decode_by::<i64>(&MessagePack, &payload).unwrap_err();
        assert_eq!(err.message, "msgpack: wrong msgpack marker FixMap(3)");
    }

    #[cfg(feature = "cbor")]
    #[test]
    fn cbor_round_trips_typed_values() {
        let user = User {
            user: "J".into(),
            user_id: -3,
            nick: None,
        };
        let (payload, _) = body_of(&user, Some(&Cbor));
        assert_eq!(
            decode::<User>(&payload, Some(APPLICATION_CBOR)).unwrap(),
            user
        );
        let err = decode_by::<User>(&Cbor, &[0xa1, 0x64]).unwrap_err();
        assert!(err.message.starts_with("cbor: "), "{}", err.message);
    }

    #[cfg(feature = "avro")]
    #[test]
    fn avro_round_trips_with_a_given_schema_and_rejects_what_does_not_fit() {
        let avro = Avro::parse(
            r#"{"type":"record","name":"User","fields":[
                {"name":"user","type":"string"},
                {"name":"user_id","type":"long"},
                {"name":"nick","type":["null","string"],"default":null}]}"#,
        )
        .unwrap();
        let user = User {
            user: "J".into(),
            user_id: 9,
            nick: Some("jo".into()),
        };
        let (payload, content_type) = body_of(&user, Some(&avro));
        assert_eq!(content_type, AVRO_BINARY);
        assert_eq!(
            decode_with::<User>(&payload, None, Some(&avro)).unwrap(),
            user
        );
        let err = decode_by::<User>(&avro, &payload[..2]).unwrap_err();
        assert!(err.message.starts_with("avro: "), "{}", err.message);
        assert!(
            encode_with(&7, Some(&avro)).is_err(),
            "7 is not a User record"
        );
    }

    #[cfg(feature = "avro")]
    #[test]
    fn avro_schemas_that_name_a_type_twice_decode() {
        #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
        struct Point {
            x: i64,
        }
        #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
        struct Line {
            from: Point,
            to: Point,
        }
        // `to` refers to `Point` by name (a `Schema::Ref`), which the decoder must resolve.
        let avro = Avro::parse(
            r#"{"type":"record","name":"Line","fields":[
                {"name":"from","type":{"type":"record","name":"Point","fields":[{"name":"x","type":"long"}]}},
                {"name":"to","type":"Point"}]}"#,
        )
        .unwrap();
        let line = Line {
            from: Point { x: 1 },
            to: Point { x: 2 },
        };
        let (payload, _) = body_of(&line, Some(&avro));
        assert_eq!(decode_by::<Line>(&avro, &payload).unwrap(), line);
    }
}
