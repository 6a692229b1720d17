//! The serde codecs shipped behind cargo features: MessagePack (`msgpack`), CBOR (`cbor`) and
//! Avro (`avro`). Protobuf is typed by `prost` rather than serde: see
//! `codec::Proto` (feature `protobuf`).

#[cfg(any(feature = "msgpack", feature = "avro"))]
use super::media::media_type;
#[cfg(feature = "cbor")]
use super::media::APPLICATION_CBOR;
#[cfg(feature = "msgpack")]
use super::media::APPLICATION_MSGPACK;
#[cfg(feature = "avro")]
use super::media::AVRO_BINARY;
#[cfg(any(feature = "msgpack", feature = "cbor", feature = "avro"))]
use super::seam::{deserialize_into, Codec, DecodeTarget};
#[cfg(any(feature = "msgpack", feature = "cbor", feature = "avro"))]
use crate::error::{DecodeError, EncodeError};

/// The codec a `content-type` names for certain, among those compiled in that need no
/// configuration (Avro needs a schema, so it is only ever configured).
pub(super) fn known(media: &str) -> Option<&'static dyn super::Codec> {
    #[cfg(feature = "msgpack")]
    if is_msgpack(media) {
        return Some(&MessagePack);
    }
    #[cfg(feature = "cbor")]
    if media == APPLICATION_CBOR {
        return Some(&Cbor);
    }
    let _ = media;
    None
}

/// Whether a media type is MessagePack's, under any of the names in use.
#[cfg(feature = "msgpack")]
fn is_msgpack(media: &str) -> bool {
    matches!(
        media,
        APPLICATION_MSGPACK | "application/vnd.msgpack" | "application/x-msgpack"
    )
}

#[cfg(any(feature = "msgpack", feature = "cbor", feature = "avro"))]
fn encode_error(codec: &str, err: impl std::fmt::Display) -> EncodeError {
    EncodeError(format!("{codec}: {err}"))
}

#[cfg(any(feature = "cbor", feature = "avro"))]
fn decode_error(err: impl std::fmt::Display) -> DecodeError {
    DecodeError {
        path: ".".into(),
        message: err.to_string(),
    }
}

/// MessagePack (rmp-serde). Structs are written as maps with their field names, as
/// Python's `msgpack.packb` of a dict is; a struct written as an array reads back too.
///
/// ```
/// use faststream_core::codec::{decode_by, encode_with, Encoded, MessagePack};
/// #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
/// struct Order { id: u32, item: String }
/// let order = Order { id: 7, item: "tea".into() };
/// let Encoded::Body { payload, content_type } = encode_with(&order, Some(&MessagePack)).unwrap() else {
///     unreachable!()
/// };
/// assert_eq!(content_type, "application/msgpack");
/// assert_eq!(decode_by::<Order>(&MessagePack, &payload).unwrap(), order);
/// ```
#[cfg(feature = "msgpack")]
#[derive(Debug, Clone, Copy, Default)]
pub struct MessagePack;

#[cfg(feature = "msgpack")]
impl Codec for MessagePack {
    fn name(&self) -> &'static str {
        "msgpack"
    }

    fn content_type(&self) -> &'static str {
        APPLICATION_MSGPACK
    }

    fn claims(&self, content_type: Option<&str>, _payload: &[u8]) -> bool {
        content_type.is_some_and(|ct| is_msgpack(media_type(ct)))
    }

    fn decode<'de>(
        &self,
        payload: &'de [u8],
        target: &mut dyn DecodeTarget<'de>,
    ) -> Result<(), DecodeError> {
        let mut rest = payload;
        deserialize_into(target, &mut rmp_serde::Deserializer::new(&mut rest))?;
        if !rest.is_empty() {
            let rest = rest.len();
            return Err(DecodeError {
                path: ".".into(),
                message: format!("{rest} trailing bytes after the value"),
            });
        }
        Ok(())
    }

    fn encode(&self, value: &dyn erased_serde::Serialize) -> Result<Vec<u8>, EncodeError> {
        rmp_serde::to_vec_named(value).map_err(|e| encode_error(self.name(), e))
    }
}

/// CBOR (ciborium, RFC 8949).
///
/// ```
/// use faststream_core::codec::{decode_by, encode_with, Cbor, Encoded};
/// let Encoded::Body { payload, content_type } = encode_with(&vec![1, 2, 3], Some(&Cbor)).unwrap() else {
///     unreachable!()
/// };
/// assert_eq!(content_type, "application/cbor");
/// assert_eq!(decode_by::<Vec<u8>>(&Cbor, &payload).unwrap(), [1, 2, 3]);
/// ```
#[cfg(feature = "cbor")]
#[derive(Debug, Clone, Copy, Default)]
pub struct Cbor;

#[cfg(feature = "cbor")]
impl Codec for Cbor {
    fn name(&self) -> &'static str {
        "cbor"
    }

    fn content_type(&self) -> &'static str {
        APPLICATION_CBOR
    }

    fn decode<'de>(
        &self,
        payload: &'de [u8],
        target: &mut dyn DecodeTarget<'de>,
    ) -> Result<(), DecodeError> {
        // ciborium's deserializer is private: it builds a tree, the target reads the tree.
        let tree: super::tree::Tree = ciborium::from_reader(payload).map_err(decode_error)?;
        deserialize_into(target, tree)
    }

    fn encode(&self, value: &dyn erased_serde::Serialize) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::new();
        ciborium::into_writer(value, &mut out).map_err(|e| encode_error(self.name(), e))?;
        Ok(out)
    }
}

/// Avro's binary encoding (apache-avro) with one schema: derived from the Rust type
/// ([`Avro::of`], with `#[derive(apache_avro::AvroSchema)]`) or given ([`Avro::parse`]).
/// The record is the datum alone (no container file, no registry header: the registry's
/// framing is the next step).
///
/// ```
/// use apache_avro::AvroSchema;
/// use faststream_core::codec::{decode_by, encode_with, Avro, Codec, Encoded};
/// #[derive(serde::Serialize, serde::Deserialize, AvroSchema, Debug, PartialEq)]
/// struct Order { id: i64, item: String, note: Option<String> }
/// let avro = Avro::of::<Order>();
/// let order = Order { id: 7, item: "tea".into(), note: None };
/// let Encoded::Body { payload, content_type } = encode_with(&order, Some(&avro)).unwrap() else {
///     unreachable!()
/// };
/// assert_eq!(content_type, "avro/binary");
/// assert_eq!(decode_by::<Order>(&avro, &payload).unwrap(), order);
/// assert_eq!(avro.schema().unwrap().schema["name"], "Order");
/// ```
#[cfg(feature = "avro")]
#[derive(Debug, Clone)]
pub struct Avro {
    schema: std::sync::Arc<apache_avro::Schema>,
}

#[cfg(feature = "avro")]
impl Avro {
    /// The codec for `T`, with the schema its `#[derive(AvroSchema)]` gives.
    pub fn of<T: apache_avro::AvroSchema>() -> Self {
        Self::with_schema(T::get_schema())
    }

    /// The codec for a schema given as Avro's JSON (`.avsc`).
    pub fn parse(schema: &str) -> Result<Self, crate::Error> {
        apache_avro::Schema::parse_str(schema)
            .map(Self::with_schema)
            .map_err(|e| crate::Error::config_msg(format!("invalid Avro schema: {e}")))
    }

    /// The codec for a parsed schema.
    pub fn with_schema(schema: apache_avro::Schema) -> Self {
        Self {
            schema: std::sync::Arc::new(schema),
        }
    }

    /// The schema records are written and read with.
    pub fn avro_schema(&self) -> &apache_avro::Schema {
        &self.schema
    }
}

#[cfg(feature = "avro")]
impl Codec for Avro {
    fn name(&self) -> &'static str {
        "avro"
    }

    fn content_type(&self) -> &'static str {
        AVRO_BINARY
    }

    fn claims(&self, content_type: Option<&str>, _payload: &[u8]) -> bool {
        content_type.is_some_and(|ct| matches!(media_type(ct), AVRO_BINARY | "application/avro"))
    }

    fn decode<'de>(
        &self,
        payload: &'de [u8],
        target: &mut dyn DecodeTarget<'de>,
    ) -> Result<(), DecodeError> {
        decode_avro_datum(&self.schema, None, payload, target)
    }

    fn encode(&self, value: &dyn erased_serde::Serialize) -> Result<Vec<u8>, EncodeError> {
        encode_avro_datum(&self.schema, value)
    }

    fn schema(&self) -> Option<super::seam::FormatSchema> {
        Some(super::seam::FormatSchema {
            content_type: AVRO_BINARY,
            schema_format: "application/vnd.apache.avro;version=1.9.0",
            schema: serde_json::to_value(&*self.schema).ok()?,
        })
    }
}

/// Decodes one Avro datum (the whole of `payload`) written with `writer` into `target`,
/// resolved to `reader` first when given (Avro's schema resolution: fields added with
/// defaults, removed, promoted). What [`Avro`] and a schema registry's Avro codec decode with.
#[cfg(feature = "avro")]
pub fn decode_avro_datum<'de>(
    writer: &apache_avro::Schema,
    reader: Option<&apache_avro::Schema>,
    payload: &[u8],
    target: &mut dyn DecodeTarget<'de>,
) -> Result<(), DecodeError> {
    let mut rest = payload;
    // `from_avro_datum` collects the writer's named types into a map on every call, which
    // only a schema that refers to one by name needs.
    let value = if refers_by_name(writer) {
        apache_avro::from_avro_datum(writer, &mut rest, reader)
    } else {
        apache_avro::from_avro_datum_reader_schemata(
            writer,
            Vec::new(),
            &mut rest,
            reader,
            Vec::new(),
        )
    }
    .map_err(decode_error)?;
    if !rest.is_empty() {
        return Err(decode_error(format_args!(
            "{} trailing bytes after the datum",
            rest.len()
        )));
    }
    // apache-avro's deserializer is private: its value becomes a tree the target reads.
    deserialize_into(target, avro_tree(value)?)
}

/// Whether `schema` refers to a named type by its name somewhere (`Schema::Ref`).
#[cfg(feature = "avro")]
fn refers_by_name(schema: &apache_avro::Schema) -> bool {
    use apache_avro::Schema;
    match schema {
        Schema::Ref { .. } => true,
        Schema::Array(array) => refers_by_name(&array.items),
        Schema::Map(map) => refers_by_name(&map.types),
        Schema::Union(union) => union.variants().iter().any(refers_by_name),
        Schema::Record(record) => record.fields.iter().any(|f| refers_by_name(&f.schema)),
        _ => false,
    }
}

/// The tree of an Avro value, as apache-avro's deserializer visits it, with its strings and
/// byte buffers moved rather than copied (`apache_avro::from_value` copies each, the field
/// names of every record included).
#[cfg(feature = "avro")]
fn avro_tree(value: apache_avro::types::Value) -> Result<super::tree::Tree, DecodeError> {
    use super::tree::Tree;
    use apache_avro::types::Value;
    Ok(match value {
        Value::Null => Tree::Unit,
        Value::Boolean(b) => Tree::Bool(b),
        Value::Int(i) | Value::Date(i) | Value::TimeMillis(i) => Tree::I64(i.into()),
        Value::Long(i)
        | Value::TimeMicros(i)
        | Value::TimestampMillis(i)
        | Value::TimestampMicros(i)
        | Value::TimestampNanos(i)
        | Value::LocalTimestampMillis(i)
        | Value::LocalTimestampMicros(i)
        | Value::LocalTimestampNanos(i) => Tree::I64(i),
        Value::Float(f) => Tree::F64(f.into()),
        Value::Double(d) => Tree::F64(d),
        Value::String(s) | Value::Enum(_, s) => Tree::String(s),
        Value::Bytes(bytes) | Value::Fixed(_, bytes) => Tree::Bytes(bytes),
        Value::Union(_, inner) => avro_tree(*inner)?,
        Value::Array(items) => {
            Tree::Seq(items.into_iter().map(avro_tree).collect::<Result<_, _>>()?)
        }
        Value::Record(fields) => Tree::Map(
            fields
                .into_iter()
                .map(|(name, value)| Ok((Tree::String(name), avro_tree(value)?)))
                .collect::<Result<_, DecodeError>>()?,
        ),
        Value::Map(entries) => Tree::Map(
            entries
                .into_iter()
                .map(|(key, value)| Ok((Tree::String(key), avro_tree(value)?)))
                .collect::<Result<_, DecodeError>>()?,
        ),
        // Decimals, durations and uuids as apache-avro's deserializer presents them.
        other => apache_avro::from_value(&other).map_err(decode_error)?,
    })
}

/// Encodes `value` as one Avro datum of `schema` (the value resolved to the schema first, so
/// a Rust `i32` fills a `long`). What [`Avro`] and a schema registry's Avro codec encode with.
#[cfg(feature = "avro")]
pub fn encode_avro_datum(
    schema: &apache_avro::Schema,
    value: &dyn erased_serde::Serialize,
) -> Result<Vec<u8>, EncodeError> {
    let value = apache_avro::to_value(value)
        .and_then(|v| v.resolve(schema))
        .map_err(|e| encode_error("avro", e))?;
    apache_avro::to_avro_datum(schema, value).map_err(|e| encode_error("avro", e))
}
