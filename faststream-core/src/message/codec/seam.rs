//! The codec seam: a payload format other than FastStream's JSON/text/bytes, chosen per app,
//! router, subscriber or publisher ([`Codec`]).
//!
//! # How a codec is chosen
//!
//! Decoding follows the record first, as FastStream does: `text/plain` is text, and
//! `application/json` is JSON, whatever is configured. A record whose `content-type` the
//! configured codec claims ([`Codec::claims`], which also sees the payload, so a codec can
//! recognise a magic byte) goes to that codec; one whose `content-type` names a codec compiled
//! into the build (`application/msgpack`, `application/cbor`) goes to that one. A record with
//! no content type (or `application/octet-stream`, or one nobody claims) goes to the
//! configured codec, else to JSON. An empty payload (a tombstone) never reaches a codec:
//! `Option<T>` is `None`, as with JSON. Whatever the codec, `bytes::Bytes` takes the raw
//! payload.
//!
//! Encoding: `()`/`None` publish nothing, `String`/`&str` go out as `text/plain` and
//! `bytes::Bytes` as `application/octet-stream` (FastStream's rules, so a batch of `1` and
//! `"hi"` reads back as `[1, "hi"]` under any codec); everything else goes through the codec,
//! with its [`Codec::content_type`].
//!
//! # The default path pays nothing
//!
//! No codec configured means no codec value at all (`None`): decoding and encoding run the
//! JSON code that ran before the seam existed, without a dynamic call or an allocation more.
//! A configured codec costs one dynamic call per record, and serde's calls through
//! [`erased_serde`] (one dynamic call per value visited).
//!
//! # How a schema registry plugs in
//!
//! `faststream-registry` (the facade's `faststream::registry`, feature `registry`) is a
//! Confluent-compatible registry codec, a [`Codec`] like the others, wrapping a format:
//!
//! - **Recognised from the record**: Confluent's serializers write no `content-type`, so its
//!   [`Codec::claims`] looks at the payload: magic byte `0x00`, then a 4-byte big-endian
//!   schema id (then, for Protobuf, the message indexes: a zig-zag varint count and the
//!   indexes, `[0]` as the single byte `0`).
//! - **Schemas fetched by id, asynchronously, cached for the process**: [`Codec::prepare`]
//!   (given the payload, or the key under a key codec) returns `None` when the schema id is
//!   cached (the usual case: decoding stays synchronous and allocation-free in the seam), or
//!   a future that fetches it into the cache first. The extractor awaits that future before
//!   [`Codec::decode`] runs, so the handler still gets a typed value.
//! - **An outage is not bad data**: the future fails with [`DecodeFailure::Unavailable`]
//!   (a refused connection, a 5xx, a timeout), which the extractor turns into
//!   `ExtractError::PayloadUnavailable`, the one extraction error whose
//!   `ExtractError::is_transient` is true: the error policy makes the record wait (its
//!   partition paused) and run again, without counting an attempt and never dead-lettering
//!   it (`policy::is_outage`). A codec that can meet an outage says so ([`Codec::may_wait`]),
//!   so that its subscribers keep each message to run it again. An unknown id (404) or a
//!   writer schema that does not resolve fails with [`DecodeFailure::Invalid`]:
//!   `ExtractError::Payload`, a decode error handled by the error policy like a malformed
//!   JSON payload.
//! - **Keys as well as values**: a codec decodes bytes into any serde type, so the same trait
//!   decodes `Key<T>` under `SubscriberConfig::key_codec`.
//! - **Encoding** stays synchronous: the registry codec writes the magic byte, the schema id
//!   and the body from [`Codec::encode`], with an id resolved before the first publish
//!   (auto-registered, latest, or fixed) and cached.
//! - **Protobuf**, typed by prost rather than serde (`codec::Proto<T>`), goes through
//!   [`Codec::body`] (the message inside the frame, for a `Proto<T>` parameter) and
//!   [`Codec::frame`] (the frame around a published `Proto<T>`).

use crate::error::{DecodeError, EncodeError};
use futures::future::BoxFuture;
use serde::de::{self, DeserializeOwned, DeserializeSeed, Visitor};
use std::fmt;
use std::sync::Arc;

/// A shared codec, as configurations hold it.
pub type CodecRef = Arc<dyn Codec>;

/// A payload format: decodes a record's bytes into any serde type and encodes any serde value,
/// through one object-safe trait (see the [module docs](self) for how it is chosen).
///
/// A codec over a serde format library is a few lines:
///
/// ```
/// use faststream_core::codec::{deserialize_into, erased_serde, Codec, DecodeTarget};
/// use faststream_core::error::{DecodeError, EncodeError};
///
/// /// JSON again, under a content type of its own.
/// #[derive(Debug)]
/// struct VendorJson;
///
/// impl Codec for VendorJson {
///     fn name(&self) -> &'static str { "vendor-json" }
///     fn content_type(&self) -> &'static str { "application/vnd.acme+json" }
///     fn decode<'de>(&self, payload: &'de [u8], target: &mut dyn DecodeTarget<'de>) -> Result<(), DecodeError> {
///         deserialize_into(target, &mut serde_json::Deserializer::from_slice(payload))
///     }
///     fn encode(&self, value: &dyn erased_serde::Serialize) -> Result<Vec<u8>, EncodeError> {
///         serde_json::to_vec(value).map_err(|e| EncodeError(e.to_string()))
///     }
/// }
///
/// let codec = VendorJson;
/// let n: i64 = faststream_core::codec::decode_by(&codec, b"42").unwrap();
/// assert_eq!(n, 42);
/// ```
pub trait Codec: Send + Sync + fmt::Debug + 'static {
    /// A short name for logs and errors (`msgpack`, `cbor`, `avro`...).
    fn name(&self) -> &'static str;

    /// The `content-type` written on publish and recognised on decode.
    fn content_type(&self) -> &'static str;

    /// Whether a record with this `content-type` (and payload) is this codec's: by default,
    /// its content type equals [`Codec::content_type`] (parameters such as `;charset` aside).
    fn claims(&self, content_type: Option<&str>, payload: &[u8]) -> bool {
        let _ = payload;
        content_type.is_some_and(|ct| super::media::media_type(ct) == self.content_type())
    }

    /// Decodes `payload` into `target`: hands [`deserialize_into`] the format's deserializer.
    fn decode<'de>(
        &self,
        payload: &'de [u8],
        target: &mut dyn DecodeTarget<'de>,
    ) -> Result<(), DecodeError>;

    /// Encodes `value` (a structured value: text, bytes and nothing never get here).
    fn encode(&self, value: &dyn erased_serde::Serialize) -> Result<Vec<u8>, EncodeError>;

    /// What must happen before `payload` (a record's payload, or its key under a key codec)
    /// can be decoded, when something must (a schema fetched by id): `None` (the default)
    /// decodes now. The handler's call waits for the future, then decodes.
    fn prepare(&self, payload: &[u8]) -> Option<BoxFuture<'static, Result<(), DecodeFailure>>> {
        let _ = payload;
        None
    }

    /// The format's own bytes inside a payload this codec frames (a schema registry's magic
    /// byte, schema id and Protobuf message indexes taken off): what a `codec::Proto<T>`
    /// parameter decodes, after [`Codec::prepare`]. The payload itself by default.
    fn body<'p>(&self, payload: &'p [u8]) -> Result<&'p [u8], DecodeError> {
        Ok(payload)
    }

    /// The payload that frames `body`, the format's own bytes (a `codec::Proto<T>`'s), as
    /// this codec publishes it; `None` (the default) publishes the body as it is.
    fn frame(&self, body: &[u8]) -> Option<Result<Vec<u8>, EncodeError>> {
        let _ = body;
        None
    }

    /// Whether [`Codec::prepare`] can fail with [`DecodeFailure::Unavailable`] (it fetches
    /// from outside the process). Its subscribers then keep each message until it is done, so
    /// that one waiting out an outage can run again; `false` by default.
    fn may_wait(&self) -> bool {
        false
    }

    /// The payload schema the AsyncAPI document shows for this format, when it is not the
    /// JSON Schema derived from the Rust type (Avro's own schema, a `.proto` file).
    fn schema(&self) -> Option<FormatSchema> {
        None
    }

    /// Checks this codec's schema for records on `topic` against what governs it outside the
    /// process (a schema registry's latest version of the subject, under the subject's
    /// compatibility level): what `schema check` runs before a deploy. `None` (the default):
    /// nothing outside governs the format, or the codec has no schema of its own to check.
    fn check_schema(&self, topic: &str) -> Option<BoxFuture<'static, Result<SchemaCheck, String>>> {
        let _ = topic;
        None
    }
}

/// What [`Codec::check_schema`] found: where the schema is governed, and what breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaCheck {
    /// Where the schema is governed (a registry subject, e.g. `orders-value`).
    pub subject: String,
    /// The subject's compatibility level (`BACKWARD`...), when the registry says.
    pub level: Option<String>,
    /// One line per incompatibility, naming the field; empty when compatible.
    pub problems: Vec<String>,
}

/// A payload schema in a format of its own (Avro, Protobuf), for AsyncAPI's multi-format
/// schema object: a [`Codec::schema`], or given to
/// [`SubscriberConfig::payload_format`](crate::SubscriberConfig::payload_format) and
/// [`PublisherConfig::payload_format`](crate::PublisherConfig::payload_format).
#[derive(Debug, Clone, PartialEq)]
pub struct FormatSchema {
    /// The records' `content-type`.
    pub content_type: &'static str,
    /// AsyncAPI's `schemaFormat` (`application/vnd.apache.avro;version=1.9.0`...).
    pub schema_format: &'static str,
    /// The schema itself: a JSON document (Avro) or a string (a `.proto` file).
    pub schema: serde_json::Value,
}

impl FormatSchema {
    /// A Protobuf payload described by a `.proto` file's text (its messages and their
    /// fields), as `codec::Proto` (feature `protobuf`) records carry it.
    ///
    /// ```
    /// use faststream_core::codec::FormatSchema;
    /// let schema = FormatSchema::protobuf("syntax = \"proto3\"; message Ping { uint64 seq = 1; }");
    /// assert_eq!(schema.schema_format, "application/vnd.google.protobuf;version=3");
    /// assert_eq!(schema.content_type, "application/protobuf");
    /// ```
    pub fn protobuf(proto: &str) -> Self {
        Self {
            content_type: super::media::APPLICATION_PROTOBUF,
            schema_format: "application/vnd.google.protobuf;version=3",
            schema: serde_json::Value::String(proto.to_owned()),
        }
    }
}

/// Why a codec could not get ready to decode a record.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DecodeFailure {
    /// The record cannot decode, now or later (an unknown schema id): bad data.
    #[error(transparent)]
    Invalid(DecodeError),
    /// What decoding needs is unreachable for now (a registry outage): try again later.
    #[error("{0}")]
    Unavailable(String),
}

/// Where a codec's deserializer delivers: the typed value a handler asked for.
pub trait DecodeTarget<'de> {
    /// Deserializes the target's value from `deserializer`.
    fn deserialize(
        &mut self,
        deserializer: &mut dyn erased_serde::Deserializer<'de>,
    ) -> Result<(), erased_serde::Error>;
}

/// Runs `deserializer` into `target`: what a [`Codec::decode`] calls with its format's
/// deserializer. Errors keep the format's message; the path is added by the caller.
pub fn deserialize_into<'de, D>(
    target: &mut dyn DecodeTarget<'de>,
    deserializer: D,
) -> Result<(), DecodeError>
where
    D: de::Deserializer<'de>,
{
    let mut erased = <dyn erased_serde::Deserializer<'de>>::erase(deserializer);
    target.deserialize(&mut erased).map_err(|err| DecodeError {
        path: ".".into(),
        message: err.to_string(),
    })
}

/// Decodes `payload` into `T` with `codec` (see the [module docs](self) for the rules that
/// hold under every codec); on failure, decodes again to say where (`path`).
pub fn decode_by<T: DeserializeOwned>(codec: &dyn Codec, payload: &[u8]) -> Result<T, DecodeError> {
    // Byte buffers take the payload as it is, even where the codec would reject it first.
    if let Ok(raw) = T::deserialize(RawOnly(payload)) {
        return Ok(raw);
    }
    let mut target = Typed::<T> {
        payload,
        track: false,
        value: None,
        path: None,
    };
    if codec.decode(payload, &mut target).is_ok() {
        if let Some(value) = target.value {
            return Ok(value);
        }
    }
    target.track = true;
    let failure = match codec.decode(payload, &mut target) {
        Ok(()) => match target.value {
            Some(value) => return Ok(value),
            None => DecodeError {
                path: ".".into(),
                message: "the codec decoded nothing".into(),
            },
        },
        Err(err) => err,
    };
    Err(DecodeError {
        path: target.path.unwrap_or(failure.path),
        message: format!("{}: {}", codec.name(), failure.message),
    })
}

/// The target of [`decode_by`]: a `T`, with the error's path tracked on the second run.
struct Typed<'p, T> {
    payload: &'p [u8],
    track: bool,
    value: Option<T>,
    path: Option<String>,
}

impl<'de, T: DeserializeOwned> DecodeTarget<'de> for Typed<'de, T> {
    fn deserialize(
        &mut self,
        deserializer: &mut dyn erased_serde::Deserializer<'de>,
    ) -> Result<(), erased_serde::Error> {
        let top = TopLevel {
            payload: self.payload,
            inner: deserializer,
        };
        if !self.track {
            self.value = Some(T::deserialize(top)?);
            return Ok(());
        }
        match serde_path_to_error::deserialize(top) {
            Ok(value) => {
                self.value = Some(value);
                Ok(())
            }
            Err(err) => {
                self.path = Some(err.path().to_string());
                Err(err.into_inner())
            }
        }
    }
}

/// The target of one record of a batch: an element of the handler's sequence.
pub(super) struct Seeded<'de, S: DeserializeSeed<'de>> {
    pub(super) payload: &'de [u8],
    pub(super) seed: Option<S>,
    pub(super) value: Option<S::Value>,
}

impl<'de, S: DeserializeSeed<'de>> DecodeTarget<'de> for Seeded<'de, S> {
    fn deserialize(
        &mut self,
        deserializer: &mut dyn erased_serde::Deserializer<'de>,
    ) -> Result<(), erased_serde::Error> {
        let seed = self
            .seed
            .take()
            .ok_or_else(|| de::Error::custom("the record was decoded twice"))?;
        self.value = Some(seed.deserialize(TopLevel {
            payload: self.payload,
            inner: deserializer,
        })?);
        Ok(())
    }
}

/// The top of a payload under a codec: `bytes::Bytes` (and other byte buffers) take the raw
/// payload, a newtype stays at the top; everything else is the codec's.
struct TopLevel<'a, 'de> {
    payload: &'de [u8],
    inner: &'a mut dyn erased_serde::Deserializer<'de>,
}

macro_rules! forward_to_codec {
    ($($method:ident),* $(,)?) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
            de::Deserializer::$method(self.inner, visitor)
        }
    )*};
}

impl<'de> de::Deserializer<'de> for TopLevel<'_, 'de> {
    type Error = erased_serde::Error;

    forward_to_codec!(
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
        deserialize_str,
        deserialize_string,
        deserialize_option,
        deserialize_unit,
        deserialize_seq,
        deserialize_map,
        deserialize_identifier,
        deserialize_ignored_any,
    );

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_borrowed_bytes(self.payload)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_borrowed_bytes(self.payload)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.inner.deserialize_unit_struct(name, visitor)
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.inner.deserialize_tuple(len, visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.inner.deserialize_tuple_struct(name, len, visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.inner.deserialize_struct(name, fields, visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.inner.deserialize_enum(name, variants, visitor)
    }
}

/// A deserializer that gives only raw bytes: `bytes::Bytes` (or a newtype or `Option` of
/// one) takes the payload; every other type fails at once, allocating nothing.
struct RawOnly<'de>(&'de [u8]);

/// The refusal of [`RawOnly`]: the type wants more than raw bytes.
#[derive(Debug)]
struct NotRaw;

impl fmt::Display for NotRaw {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not a byte buffer")
    }
}

impl std::error::Error for NotRaw {}

impl de::Error for NotRaw {
    fn custom<M: fmt::Display>(_message: M) -> Self {
        NotRaw
    }
}

impl<'de> de::Deserializer<'de> for RawOnly<'de> {
    type Error = NotRaw;

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, NotRaw> {
        Err(NotRaw)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, NotRaw> {
        visitor.visit_borrowed_bytes(self.0)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, NotRaw> {
        visitor.visit_borrowed_bytes(self.0)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, NotRaw> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, NotRaw> {
        visitor.visit_newtype_struct(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string unit unit_struct
        seq tuple tuple_struct map struct enum identifier ignored_any
    }
}

/// Lends a possibly unsized value to a codec as a sized one (`&dyn erased_serde::Serialize`
/// needs a sized referent).
pub(super) struct Lend<'a, T: ?Sized>(pub(super) &'a T);

impl<T: serde::Serialize + ?Sized> serde::Serialize for Lend<'_, T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}
