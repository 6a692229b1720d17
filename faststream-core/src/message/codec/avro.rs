//! Avro's binary encoding (feature `avro`): the [`Avro`] codec (one schema), and
//! [`AvroReader`], the decoding it shares with a schema registry's Avro codec.
//!
//! A datum written with the schema it is read with is decoded straight into the handler's
//! type by `serde_avro_fast`, driven by the schema over the datum's bytes: no intermediate
//! value, strings borrowed where the target borrows them. A datum written with another schema
//! goes through apache-avro's schema resolution first (fields added with defaults, removed,
//! promoted), which builds apache-avro's own value. Encoding is apache-avro's.

use super::media::{media_type, AVRO_BINARY};
use super::seam::{deserialize_into, Codec, DecodeTarget, FormatSchema};
use crate::error::{DecodeError, EncodeError};
use std::fmt;
use std::io::BufRead;
use std::sync::Arc;

/// Avro's binary encoding (apache-avro) with one schema: derived from the Rust type
/// ([`Avro::of`], with `#[derive(apache_avro::AvroSchema)]`) or given ([`Avro::parse`]).
/// The record is the datum alone (no container file, no registry header: a schema registry's
/// codec frames it).
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
#[derive(Debug, Clone)]
pub struct Avro {
    reader: Arc<AvroReader>,
}

impl Avro {
    /// The codec for `T`, with the schema its `#[derive(AvroSchema)]` gives.
    pub fn of<T: apache_avro::AvroSchema>() -> Self {
        Self::with_schema(T::get_schema())
    }

    /// The codec for a schema given as Avro's JSON (`.avsc`).
    pub fn parse(schema: &str) -> Result<Self, crate::Error> {
        let invalid =
            |e: &dyn fmt::Display| crate::Error::config_msg(format!("invalid Avro schema: {e}"));
        let schema = apache_avro::Schema::parse_str(schema).map_err(|e| invalid(&e))?;
        let reader = AvroReader::new(schema);
        reader.datum().map_err(|e| invalid(&e))?;
        Ok(Self {
            reader: Arc::new(reader),
        })
    }

    /// The codec for a parsed schema.
    pub fn with_schema(schema: apache_avro::Schema) -> Self {
        Self {
            reader: Arc::new(AvroReader::new(schema)),
        }
    }

    /// The schema records are written and read with.
    pub fn avro_schema(&self) -> &apache_avro::Schema {
        self.reader.schema()
    }
}

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
        self.reader.decode(payload, target)
    }

    fn encode(&self, value: &dyn erased_serde::Serialize) -> Result<Vec<u8>, EncodeError> {
        encode_avro_datum(self.reader.schema(), value)
    }

    fn schema(&self) -> Option<FormatSchema> {
        Some(FormatSchema {
            content_type: AVRO_BINARY,
            schema_format: "application/vnd.apache.avro;version=1.9.0",
            schema: serde_json::to_value(self.reader.schema()).ok()?,
        })
    }
}

/// An Avro schema made ready, once, to read datums with: apache-avro's form of it (for
/// schema resolution and encoding) and `serde_avro_fast`'s graph of it (for decoding a datum
/// straight into the target type). What [`Avro`] and a schema registry's Avro codec decode
/// with (the registry's once per schema id).
///
/// ```
/// use faststream_core::codec::AvroReader;
///
/// let schema = apache_avro::Schema::parse_str(
///     r#"{"type":"record","name":"Ping","fields":[{"name":"seq","type":"long"}]}"#,
/// ).unwrap();
/// // Built once per schema (a registry codec keeps one per schema id), used for every record.
/// let reader = AvroReader::new(schema);
/// assert!(matches!(reader.schema(), apache_avro::Schema::Record(_)));
/// ```
pub struct AvroReader {
    schema: apache_avro::Schema,
    /// `serde_avro_fast`'s schema, parsed from apache-avro's JSON of the same schema; the
    /// reason when it does not parse (decoding then fails with it).
    datum: Result<serde_avro_fast::Schema, String>,
    /// Whether the schema refers to a named type by its name: resolving a datum written with
    /// it needs a map of its named types, which apache-avro would otherwise build every time.
    refers_by_name: bool,
}

impl fmt::Debug for AvroReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AvroReader")
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

impl AvroReader {
    /// Prepares `schema` for reading.
    pub fn new(schema: apache_avro::Schema) -> Self {
        let datum = serde_json::to_string(&schema)
            .map_err(|e| e.to_string())
            .and_then(|json| {
                json.parse::<serde_avro_fast::Schema>()
                    .map_err(|e| e.to_string())
            });
        Self {
            refers_by_name: refers_by_name(&schema),
            schema,
            datum,
        }
    }

    /// The schema, as apache-avro parsed it.
    pub fn schema(&self) -> &apache_avro::Schema {
        &self.schema
    }

    /// The schema as the direct decoder reads it; why not, when it cannot.
    fn datum(&self) -> Result<&serde_avro_fast::Schema, &str> {
        self.datum.as_ref().map_err(String::as_str)
    }

    /// Decodes one datum (the whole of `payload`) written with this schema into `target`,
    /// without an intermediate value: a record into a struct's fields, a union with null
    /// into an `Option`, an enum symbol into a unit variant or a string, a `bytes` or `fixed`
    /// into a byte buffer, a logical type into its underlying type (a decimal into a string or
    /// a float). A datum that does not match the schema
    /// (truncated, a bad union index, bytes after it) is a decode error.
    pub fn decode<'de>(
        &self,
        payload: &'de [u8],
        target: &mut dyn DecodeTarget<'de>,
    ) -> Result<(), DecodeError> {
        let schema = self
            .datum()
            .map_err(|e| decode_error(format_args!("the schema is not supported: {e}")))?;
        let mut state = bounded(schema, payload);
        deserialize_into(target, state.deserializer())?;
        let mut rest = state.into_reader();
        trailing(rest.fill_buf().map_or(0, |rest| rest.len()))
    }

    /// Decodes one datum (the whole of `payload`) written with `writer` into `target`,
    /// resolved to this schema first (Avro's schema resolution: fields added with defaults,
    /// removed, promoted). A datum that does not resolve is a decode error. The caller checks
    /// that this schema can read `writer`'s ([`AvroReader::can_read`]): apache-avro's
    /// resolution also narrows a `long` into an `int`, which Avro does not allow.
    pub fn decode_resolved<'de>(
        &self,
        writer: &AvroReader,
        payload: &[u8],
        target: &mut dyn DecodeTarget<'de>,
    ) -> Result<(), DecodeError> {
        // apache-avro's decoder reserves room for as many items as a count in the datum
        // claims and recurses without a limit: a few hostile bytes could abort the process
        // (memory, or the stack). The direct decoder walks the datum with the writer's schema
        // first, under its limits: every count backed by bytes, at most 64 levels deep.
        if let Ok(schema) = writer.datum() {
            let mut state = bounded(schema, payload);
            <Walk as serde::Deserialize>::deserialize(state.deserializer())
                .map_err(decode_error)?;
        }
        let mut rest = payload;
        let value = if writer.refers_by_name {
            apache_avro::from_avro_datum(&writer.schema, &mut rest, Some(&self.schema))
        } else {
            apache_avro::from_avro_datum_reader_schemata(
                &writer.schema,
                Vec::new(),
                &mut rest,
                Some(&self.schema),
                Vec::new(),
            )
        }
        .map_err(decode_error)?;
        trailing(rest.len())?;
        // apache-avro's deserializer is private: its value becomes a tree the target reads.
        deserialize_into(target, avro_tree(value)?)
    }
}

impl AvroReader {
    /// Whether a datum written with `writer`'s schema can be read with this one under Avro's
    /// schema resolution rules; why not, when it cannot.
    pub fn can_read(&self, writer: &AvroReader) -> Result<(), String> {
        apache_avro::schema_compatibility::SchemaCompatibility::can_read(
            &writer.schema,
            &self.schema,
        )
        .map_err(|e| e.to_string())
    }
}

/// Items of one array or map that take no bytes (nulls, empty records) a datum may hold
/// beyond one per byte of it.
const FREE_ITEMS: usize = 1024;

/// The direct decoder over `payload`, with at most as many items in one array or map as the
/// payload has bytes (or [`FREE_ITEMS`], if more). An item of a byte or more cannot be more;
/// a longer run of items of no bytes is refused rather than run through: the crate's own
/// limit, a billion items, would let a record of a few bytes hold a worker for minutes or
/// fill the memory.
fn bounded<'s, 'p>(
    schema: &'s serde_avro_fast::Schema,
    payload: &'p [u8],
) -> serde_avro_fast::de::DeserializerState<'s, serde_avro_fast::de::read::SliceRead<'p>> {
    let mut config = serde_avro_fast::de::DeserializerConfig::new(schema);
    config.max_seq_size = payload.len().max(FREE_ITEMS);
    serde_avro_fast::de::DeserializerState::with_config(
        serde_avro_fast::de::read::SliceRead::new(payload),
        config,
    )
}

/// Reads every value of a datum and keeps nothing. Not `serde::de::IgnoredAny`, which may skip
/// a block of an array by its byte size without reading the counts inside it.
struct Walk;

impl<'de> serde::Deserialize<'de> for Walk {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(Walk)
    }
}

impl<'de> serde::de::Visitor<'de> for Walk {
    type Value = Walk;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an Avro datum")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Walk, E> {
        Ok(Walk)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Walk, E> {
        Ok(Walk)
    }
    fn visit_i128<E>(self, _: i128) -> Result<Walk, E> {
        Ok(Walk)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Walk, E> {
        Ok(Walk)
    }
    fn visit_u128<E>(self, _: u128) -> Result<Walk, E> {
        Ok(Walk)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Walk, E> {
        Ok(Walk)
    }
    fn visit_str<E>(self, _: &str) -> Result<Walk, E> {
        Ok(Walk)
    }
    fn visit_bytes<E>(self, _: &[u8]) -> Result<Walk, E> {
        Ok(Walk)
    }
    fn visit_none<E>(self) -> Result<Walk, E> {
        Ok(Walk)
    }
    fn visit_unit<E>(self) -> Result<Walk, E> {
        Ok(Walk)
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, inner: D) -> Result<Walk, D::Error> {
        <Walk as serde::Deserialize>::deserialize(inner)
    }
    fn visit_newtype_struct<D: serde::Deserializer<'de>>(self, inner: D) -> Result<Walk, D::Error> {
        <Walk as serde::Deserialize>::deserialize(inner)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut items: A) -> Result<Walk, A::Error> {
        while items.next_element::<Walk>()?.is_some() {}
        Ok(Walk)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut entries: A) -> Result<Walk, A::Error> {
        while entries.next_entry::<Walk, Walk>()?.is_some() {}
        Ok(Walk)
    }
}

/// Fails when a datum left `rest` bytes unread.
fn trailing(rest: usize) -> Result<(), DecodeError> {
    if rest == 0 {
        return Ok(());
    }
    Err(decode_error(format_args!(
        "{rest} trailing bytes after the datum"
    )))
}

/// Whether `schema` refers to a named type by its name somewhere (`Schema::Ref`).
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

/// The tree of a resolved Avro value, as apache-avro's deserializer visits it, with its
/// strings and byte buffers moved rather than copied (`apache_avro::from_value` copies each,
/// the field names of every record included).
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
pub fn encode_avro_datum(
    schema: &apache_avro::Schema,
    value: &dyn erased_serde::Serialize,
) -> Result<Vec<u8>, EncodeError> {
    let value = apache_avro::to_value(value)
        .and_then(|v| v.resolve(schema))
        .map_err(|e| EncodeError(format!("avro: {e}")))?;
    apache_avro::to_avro_datum(schema, value).map_err(|e| EncodeError(format!("avro: {e}")))
}

fn decode_error(err: impl fmt::Display) -> DecodeError {
    DecodeError {
        path: ".".into(),
        message: err.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::decode_by;
    use apache_avro::types::Value;
    use serde::Deserialize;
    use std::collections::BTreeMap;

    /// A record with a field of every Avro type the direct decoder reads, logical types
    /// included; `status` refers to `Status` by name.
    const EVERYTHING: &str = r#"{"type":"record","name":"Everything","namespace":"test","fields":[
        {"name":"nothing","type":"null"},
        {"name":"flag","type":"boolean"},
        {"name":"small","type":"int"},
        {"name":"big","type":"long"},
        {"name":"ratio","type":"float"},
        {"name":"precise","type":"double"},
        {"name":"blob","type":"bytes"},
        {"name":"name","type":"string"},
        {"name":"inner","type":{"type":"record","name":"Inner","fields":[
            {"name":"label","type":"string"},
            {"name":"tags","type":{"type":"array","items":"string"}}]}},
        {"name":"nick","type":["null","string"]},
        {"name":"absent","type":["null","string"]},
        {"name":"choice","type":["null","long","string"]},
        {"name":"colour","type":{"type":"enum","name":"Colour","symbols":["RED","GREEN"]}},
        {"name":"colour_name","type":"Colour"},
        {"name":"scores","type":{"type":"array","items":"long"}},
        {"name":"counts","type":{"type":"map","values":"int"}},
        {"name":"id","type":{"type":"fixed","name":"Id","size":4}},
        {"name":"day","type":{"type":"int","logicalType":"date"}},
        {"name":"at","type":{"type":"long","logicalType":"timestamp-millis"}},
        {"name":"at_us","type":{"type":"long","logicalType":"timestamp-micros"}},
        {"name":"key","type":{"type":"string","logicalType":"uuid"}},
        {"name":"price","type":{"type":"bytes","logicalType":"decimal","precision":10,"scale":2}},
        {"name":"price_text","type":{"type":"bytes","logicalType":"decimal","precision":10,"scale":2}}]}"#;

    #[derive(Debug, PartialEq, Deserialize)]
    struct Inner {
        label: String,
        tags: Vec<String>,
    }

    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(rename_all = "UPPERCASE")]
    enum Colour {
        Red,
        Green,
    }

    #[derive(Debug, PartialEq, Deserialize)]
    struct Everything {
        nothing: (),
        flag: bool,
        small: i32,
        big: i64,
        ratio: f32,
        precise: f64,
        blob: bytes::Bytes,
        name: String,
        inner: Inner,
        nick: Option<String>,
        absent: Option<String>,
        choice: serde_json::Value,
        colour: Colour,
        colour_name: String,
        scores: Vec<i64>,
        counts: BTreeMap<String, i32>,
        id: bytes::Bytes,
        day: i32,
        at: i64,
        at_us: i64,
        key: uuid::Uuid,
        price: f64,
        price_text: String,
    }

    const KEY: &str = "67e55044-10b1-426f-9247-bb680e5fe0c8";

    /// `Everything` as apache-avro's own value, with `choice` as union branch `choice`.
    fn everything(choice: (u32, Value)) -> Value {
        let text = |s: &str| Value::String(s.into());
        let field = |name: &str, value| (name.to_owned(), value);
        Value::Record(vec![
            field("nothing", Value::Null),
            field("flag", Value::Boolean(true)),
            field("small", Value::Int(-7)),
            field("big", Value::Long(1 << 40)),
            field("ratio", Value::Float(0.5)),
            field("precise", Value::Double(-2.25)),
            field("blob", Value::Bytes(vec![0, 1, 255])),
            field("name", text("Ann é")),
            field(
                "inner",
                Value::Record(vec![
                    field("label", text("in")),
                    field("tags", Value::Array(vec![text("a"), text("b")])),
                ]),
            ),
            field("nick", Value::Union(1, Box::new(text("annie")))),
            field("absent", Value::Union(0, Box::new(Value::Null))),
            field("choice", Value::Union(choice.0, Box::new(choice.1))),
            field("colour", Value::Enum(1, "GREEN".into())),
            field("colour_name", Value::Enum(0, "RED".into())),
            field(
                "scores",
                Value::Array(vec![Value::Long(3), Value::Long(-4)]),
            ),
            field(
                "counts",
                Value::Map([("x".to_owned(), Value::Int(1))].into_iter().collect()),
            ),
            field("id", Value::Fixed(4, vec![9, 8, 7, 6])),
            field("day", Value::Date(19_000)),
            field("at", Value::TimestampMillis(1_700_000_000_000)),
            field("at_us", Value::TimestampMicros(-5)),
            field("key", Value::Uuid(KEY.parse().unwrap())),
            // 12.34 at scale 2: the unscaled 1234, big-endian two's complement.
            field("price", Value::Decimal(vec![0x04, 0xd2].into())),
            field("price_text", Value::Decimal(vec![0xfb, 0x2e].into())),
        ])
    }

    /// `value` written by apache-avro's encoder: the oracle.
    fn written(value: Value) -> Vec<u8> {
        let schema = apache_avro::Schema::parse_str(EVERYTHING).unwrap();
        apache_avro::to_avro_datum(&schema, value).unwrap()
    }

    fn avro() -> Avro {
        Avro::parse(EVERYTHING).unwrap()
    }

    #[test]
    fn every_avro_type_decodes_straight_into_the_target_as_apache_avro_wrote_it() {
        let payload = written(everything((1, Value::Long(42))));
        let decoded = decode_by::<Everything>(&avro(), &payload).unwrap();
        assert_eq!(
            decoded,
            Everything {
                nothing: (),
                flag: true,
                small: -7,
                big: 1 << 40,
                ratio: 0.5,
                precise: -2.25,
                blob: bytes::Bytes::from_static(&[0, 1, 255]),
                name: "Ann é".into(),
                inner: Inner {
                    label: "in".into(),
                    tags: vec!["a".into(), "b".into()],
                },
                nick: Some("annie".into()),
                absent: None,
                choice: serde_json::json!(42),
                colour: Colour::Green,
                colour_name: "RED".into(),
                scores: vec![3, -4],
                counts: [("x".to_owned(), 1)].into_iter().collect(),
                id: bytes::Bytes::from_static(&[9, 8, 7, 6]),
                day: 19_000,
                at: 1_700_000_000_000,
                at_us: -5,
                key: KEY.parse().unwrap(),
                price: 12.34,
                price_text: "-12.34".into(),
            }
        );
        // The union's other branches: null, and a string.
        for (branch, expected) in [
            ((0, Value::Null), serde_json::Value::Null),
            ((2, Value::String("s".into())), serde_json::json!("s")),
        ] {
            let decoded = decode_by::<Everything>(&avro(), &written(everything(branch))).unwrap();
            assert_eq!(decoded.choice, expected);
        }
    }

    #[test]
    fn self_describing_targets_take_what_they_name_and_skip_the_rest() {
        /// Some fields, as self-describing values; the others are skipped.
        #[derive(Debug, Deserialize)]
        struct Picked {
            inner: serde_json::Value,
            nick: serde_json::Value,
            absent: serde_json::Value,
            colour: serde_json::Value,
            counts: serde_json::Value,
            choice: serde_json::Value,
            price_text: serde_json::Value,
        }
        let payload = written(everything((2, Value::String("s".into()))));
        let picked = decode_by::<Picked>(&avro(), &payload).unwrap();
        assert_eq!(
            picked.inner,
            serde_json::json!({"label": "in", "tags": ["a", "b"]})
        );
        assert_eq!(picked.nick, "annie");
        assert_eq!(picked.absent, serde_json::Value::Null);
        assert_eq!(picked.colour, "GREEN");
        assert_eq!(picked.counts, serde_json::json!({"x": 1}));
        assert_eq!(picked.choice, "s");
        assert_eq!(picked.price_text, "-12.34");
    }

    #[test]
    fn a_union_fills_the_rust_enum_variant_named_after_its_branch_type() {
        #[derive(Debug, PartialEq, Deserialize)]
        enum Choice {
            Long(i64),
            String(String),
        }
        #[derive(Debug, PartialEq, Deserialize)]
        struct Picked {
            choice: Option<Choice>,
        }
        for (branch, expected) in [
            ((0, Value::Null), None),
            ((1, Value::Long(42)), Some(Choice::Long(42))),
            (
                (2, Value::String("s".into())),
                Some(Choice::String("s".into())),
            ),
        ] {
            let payload = written(everything(branch));
            let picked = decode_by::<Picked>(&avro(), &payload).unwrap();
            assert_eq!(picked.choice, expected);
        }
    }

    #[test]
    fn a_schema_the_direct_decoder_cannot_read_is_refused_or_a_decode_error() {
        // A record that always contains itself: apache-avro parses it, no datum can end.
        let endless = r#"{"type":"record","name":"Loop","fields":[{"name":"next","type":"Loop"}]}"#;
        let schema = apache_avro::Schema::parse_str(endless).unwrap();
        assert!(Avro::parse(endless).is_err(), "refused when given");
        let mut target = Target::<serde_json::Value>(None);
        let err = AvroReader::new(schema)
            .decode(&[0], &mut target)
            .unwrap_err();
        assert!(
            err.message.starts_with("the schema is not supported"),
            "{}",
            err.message
        );
    }

    /// A target of any type, borrowing from the payload where `T` does.
    struct Target<T>(Option<T>);

    impl<'de, T: Deserialize<'de>> DecodeTarget<'de> for Target<T> {
        fn deserialize(
            &mut self,
            deserializer: &mut dyn erased_serde::Deserializer<'de>,
        ) -> Result<(), erased_serde::Error> {
            self.0 = Some(erased_serde::deserialize(deserializer)?);
            Ok(())
        }
    }

    #[derive(Deserialize)]
    struct Borrowed<'a> {
        name: &'a str,
    }

    #[test]
    fn strings_are_borrowed_from_the_payload_where_the_target_borrows() {
        let schema = r#"{"type":"record","name":"B","fields":[{"name":"name","type":"string"}]}"#;
        let reader = AvroReader::new(apache_avro::Schema::parse_str(schema).unwrap());
        let payload = [6, b'a', b'b', b'c'];
        let mut target = Target::<Borrowed<'_>>(None);
        reader.decode(&payload, &mut target).unwrap();
        let name = target.0.unwrap().name;
        assert_eq!(name, "abc");
        assert_eq!(name.as_ptr(), payload[1..].as_ptr(), "not a copy");
    }

    #[test]
    fn a_datum_that_does_not_match_is_a_decode_error_never_a_panic() {
        let payload = written(everything((1, Value::Long(42))));
        // Cut anywhere: every prefix is short of a field.
        for end in 0..payload.len() {
            let err = decode_by::<Everything>(&avro(), &payload[..end]).unwrap_err();
            assert!(err.message.starts_with("avro: "), "{}", err.message);
        }
        let mut longer = payload.clone();
        longer.push(0);
        let err = decode_by::<Everything>(&avro(), &longer).unwrap_err();
        assert_eq!(err.message, "avro: 1 trailing bytes after the datum");

        let union =
            r#"{"type":"record","name":"U","fields":[{"name":"nick","type":["null","string"]}]}"#;
        let union = Avro::parse(union).unwrap();
        // Branch 5 (zig-zag 10) of a union of two.
        let err = decode_by::<serde_json::Value>(&union, &[10]).unwrap_err();
        assert!(err.message.contains("discriminant"), "{}", err.message);
        // A negative string length, and a string that is not UTF-8.
        let err = decode_by::<serde_json::Value>(&union, &[2, 1]).unwrap_err();
        assert!(err.message.starts_with("avro: "), "{}", err.message);
        let err = decode_by::<serde_json::Value>(&union, &[2, 2, 0xff]).unwrap_err();
        assert!(err.message.contains("utf-8"), "{}", err.message);

        let colour = r#"{"type":"enum","name":"Colour","symbols":["RED","GREEN"]}"#;
        let err = decode_by::<String>(&Avro::parse(colour).unwrap(), &[4]).unwrap_err();
        assert!(err.message.starts_with("avro: "), "{}", err.message);

        // The datum is fine, the target is not: its path is named.
        #[derive(Debug, Deserialize)]
        struct Wrong {
            #[allow(dead_code)]
            name: i64,
        }
        let err = decode_by::<Wrong>(&avro(), &payload).unwrap_err();
        assert_eq!(err.path, "name");
        assert!(err.message.contains("invalid type"), "{}", err.message);
    }

    #[test]
    fn a_datum_of_another_schema_is_resolved_to_the_reader_schema() {
        let v1 = r#"{"type":"record","name":"Order","fields":[{"name":"id","type":"int"}]}"#;
        let v2 = r#"{"type":"record","name":"Order","fields":[{"name":"id","type":"long"},
            {"name":"note","type":"string","default":"none"}]}"#;
        let [v1, v2] =
            [v1, v2].map(|s| AvroReader::new(apache_avro::Schema::parse_str(s).unwrap()));
        #[derive(Debug, PartialEq, Deserialize)]
        struct Order {
            id: i64,
            note: String,
        }
        let payload = apache_avro::to_avro_datum(
            v1.schema(),
            Value::Record(vec![("id".into(), Value::Int(3))]),
        )
        .unwrap();
        let mut target = Target(None);
        v2.decode_resolved(&v1, &payload, &mut target).unwrap();
        let expected = Order {
            id: 3,
            note: "none".into(),
        };
        assert_eq!(target.0, Some(expected));
        // Without resolution, the v1 datum is short of v2's fields.
        let mut target = Target::<Order>(None);
        assert!(v2.decode(&payload, &mut target).is_err());
        assert_eq!(v2.can_read(&v1), Ok(()));
        // v2 written, v1 read: a long cannot be read as an int (apache-avro's resolution
        // would narrow it, 2^32 + 4 read as 4), so the pair is refused.
        assert!(v1.can_read(&v2).is_err());
        // A v2 whose id stays an int: the note is dropped.
        let v2_int = r#"{"type":"record","name":"Order","fields":[{"name":"id","type":"int"},
            {"name":"note","type":"string","default":"none"}]}"#;
        let v2_int = AvroReader::new(apache_avro::Schema::parse_str(v2_int).unwrap());
        assert_eq!(v1.can_read(&v2_int), Ok(()));
        let payload = apache_avro::to_avro_datum(
            v2_int.schema(),
            Value::Record(vec![
                ("id".into(), Value::Int(4)),
                ("note".into(), Value::String("n".into())),
            ]),
        )
        .unwrap();
        #[derive(Debug, PartialEq, Deserialize)]
        struct OrderV1 {
            id: i32,
        }
        let mut target = Target(None);
        v1.decode_resolved(&v2_int, &payload, &mut target).unwrap();
        assert_eq!(target.0, Some(OrderV1 { id: 4 }));
    }

    /// A zig-zag varint of `n`.
    fn varint(n: i64) -> Vec<u8> {
        let mut z = ((n << 1) ^ (n >> 63)) as u64;
        let mut out = Vec::new();
        loop {
            let byte = (z & 0x7f) as u8;
            z >>= 7;
            if z == 0 {
                out.push(byte);
                return out;
            }
            out.push(byte | 0x80);
        }
    }

    #[test]
    fn hostile_counts_and_depths_are_decode_errors_not_aborts() {
        let reader =
            |schema: &str| AvroReader::new(apache_avro::Schema::parse_str(schema).unwrap());
        // A block claiming half a billion ints, in 5 bytes: resolving it (int to long) made
        // apache-avro reserve 28 GB and abort the process.
        let ints = reader(r#"{"type":"array","items":"int"}"#);
        let longs = reader(r#"{"type":"array","items":"long"}"#);
        assert_eq!(longs.can_read(&ints), Ok(()));
        let claim = varint(500_000_000);
        let err = longs
            .decode_resolved(&ints, &claim, &mut Target::<serde_json::Value>(None))
            .unwrap_err();
        assert!(err.message.contains("max sequence size"), "{}", err.message);
        // The same for a map.
        let map_ints = reader(r#"{"type":"map","values":"int"}"#);
        let map_longs = reader(r#"{"type":"map","values":"long"}"#);
        let err = map_longs
            .decode_resolved(&map_ints, &claim, &mut Target::<serde_json::Value>(None))
            .unwrap_err();
        assert!(err.message.contains("max sequence size"), "{}", err.message);
        // Nulls take no bytes: a billion of them in 5 bytes held a worker for minutes.
        let nulls = reader(r#"{"type":"array","items":"null"}"#);
        let mut claim = varint(1_000_000_000);
        claim.push(0);
        let err = nulls
            .decode(&claim, &mut Target::<serde_json::Value>(None))
            .unwrap_err();
        assert!(err.message.contains("max sequence size"), "{}", err.message);
        // Up to `FREE_ITEMS` of them are read.
        let mut many = varint(FREE_ITEMS as i64);
        many.push(0);
        let mut target = Target::<Vec<()>>(None);
        nulls.decode(&many, &mut target).unwrap();
        assert_eq!(target.0.map(|v| v.len()), Some(FREE_ITEMS));
        let mut more = varint(FREE_ITEMS as i64 + 1);
        more.push(0);
        assert!(nulls.decode(&more, &mut Target::<Vec<()>>(None)).is_err());
        // A recursive record nested 100,000 deep overflowed apache-avro's stack.
        let list = r#"{"type":"record","name":"N","fields":[{"name":"next","type":["null","N"]}]}"#;
        let [list, list_again] = [list, list].map(reader);
        let deep = vec![2; 100_000];
        for result in [
            list.decode(&deep, &mut Target::<serde_json::Value>(None)),
            list_again.decode_resolved(&list, &deep, &mut Target::<serde_json::Value>(None)),
        ] {
            let err = result.unwrap_err();
            assert!(err.message.contains("recursivity limit"), "{}", err.message);
        }
    }
}
