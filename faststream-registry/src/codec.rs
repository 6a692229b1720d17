//! The registry codecs: Avro and JSON Schema payloads (or keys) in Confluent's wire format,
//! as `faststream_core`'s [`Codec`]s.

use crate::client::{RegisteredSchema, RegistryError, SchemaRegistry, SchemaType};
use crate::protobuf::{self, ProtoFile};
use crate::subject::SubjectStrategy;
use crate::wire;
use faststream_core::codec::{
    deserialize_into, encode_avro_datum, erased_serde, AvroReader, Codec, DecodeError,
    DecodeFailure, DecodeTarget, EncodeError, FormatSchema, SchemaCheck,
};
use futures::future::BoxFuture;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

/// The `content-type` written with Avro records in the registry's wire format (Confluent's
/// serializers write none; a record without one is recognised by its magic byte).
pub const REGISTRY_AVRO: &str = "application/vnd.confluent.avro";
/// The `content-type` written with JSON records in the registry's wire format.
pub const REGISTRY_JSON: &str = "application/vnd.confluent.json";
/// The `content-type` written with Protobuf records in the registry's wire format.
pub const REGISTRY_PROTOBUF: &str = "application/vnd.confluent.protobuf";

/// Which schema a publishing codec writes with ([`RegistryCodec::publishing`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishMode {
    /// The codec's own schema, registered under the subject (or found there) once.
    AutoRegister,
    /// The subject's latest version, looked up again after the registry's `latest_ttl`.
    Latest,
    /// This schema id, as registered.
    Id(u32),
}

/// A payload (or key) codec for records in the schema registry's wire format: decodes any
/// record framed with a schema id (fetched once per id and cached; see the crate docs), and
/// publishes with a schema id resolved by [`RegistryCodec::publishing`].
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use faststream_registry::{PublishMode, RegistryCodec, SchemaRegistry};
/// #[derive(serde::Serialize, serde::Deserialize, apache_avro::AvroSchema)]
/// struct Order { id: i64, item: String }
///
/// let registry = SchemaRegistry::new("http://127.0.0.1:8081/apis/ccompat/v7")?;
/// // Decodes records written with any registered schema, resolved to Order's.
/// let read = RegistryCodec::avro_of::<Order>(&registry);
/// // Writes Order's schema, registered under `orders-value` once.
/// let write = RegistryCodec::avro_of::<Order>(&registry)
///     .publishing("orders", PublishMode::AutoRegister)
///     .await?;
/// # let _ = (read, write); Ok(()) }
/// ```
#[derive(Debug)]
pub struct RegistryCodec {
    registry: SchemaRegistry,
    format: Format,
    strategy: SubjectStrategy,
    key: bool,
    writer: Option<Writer>,
    /// Per writer schema id, whether it is the Avro reader schema itself: its records then
    /// decode straight into the target type, without resolution (apache-avro's walk of both
    /// schemas into its own value, allocating on every record); why its records cannot be
    /// read, when the reader schema cannot read it.
    resolves: RwLock<HashMap<u32, Result<bool, String>>>,
}

#[derive(Debug)]
enum Format {
    /// Avro, read with the record's writer schema and resolved to `reader` when set.
    Avro { reader: Option<Arc<AvroReader>> },
    /// JSON Schema; `schema` is what auto-registration registers.
    Json { schema: Option<serde_json::Value> },
    /// Protobuf, for `Proto<T>` parameters and return values: `proto` (a `.proto` file,
    /// with the files it imports) is what auto-registration registers, `indexes` where the
    /// message is in it, `message` its full name and `document` the text AsyncAPI shows
    /// (when derived from its descriptor).
    Protobuf {
        proto: Option<ProtoFile>,
        indexes: Vec<i32>,
        message: Option<String>,
        document: Option<String>,
    },
}

/// Where a codec publishes: its subject, mode, and the schema it writes with now.
#[derive(Debug)]
struct Writer {
    subject: String,
    mode: PublishMode,
    current: Arc<RwLock<Current>>,
    refreshing: Arc<AtomicBool>,
}

#[derive(Debug, Clone)]
struct Current {
    schema: Arc<RegisteredSchema>,
    fetched: Instant,
}

impl RegistryCodec {
    /// Avro records, each read with its own writer schema (what the serde type then takes).
    pub fn avro(registry: &SchemaRegistry) -> Self {
        Self::with_format(registry, Format::Avro { reader: None })
    }

    /// Avro records resolved to `T`'s schema (`#[derive(apache_avro::AvroSchema)]`): a record
    /// written with an older or newer version reads as `T`'s version (fields added with
    /// defaults, removed, promoted); one that does not resolve is a decode error. Publishing
    /// writes `T`'s schema.
    pub fn avro_of<T: apache_avro::AvroSchema>(registry: &SchemaRegistry) -> Self {
        Self::avro(registry).reader_schema(T::get_schema())
    }

    /// Sets the Avro reader schema (see [`RegistryCodec::avro_of`]).
    pub fn reader_schema(mut self, schema: apache_avro::Schema) -> Self {
        if let Format::Avro { reader } = &mut self.format {
            *reader = Some(Arc::new(AvroReader::new(schema)));
        }
        self
    }

    /// JSON records (Python's `JSONSerializer`), decoded into the handler's type.
    pub fn json(registry: &SchemaRegistry) -> Self {
        Self::with_format(registry, Format::Json { schema: None })
    }

    /// JSON records with `T`'s JSON Schema (schemars), which publishing registers.
    pub fn json_of<T: schemars::JsonSchema>(registry: &SchemaRegistry) -> Self {
        let schema = serde_json::to_value(schemars::schema_for!(T)).ok();
        Self::with_format(registry, Format::Json { schema })
    }

    /// Protobuf records for `codec::Proto<T>` parameters and return values (prost
    /// messages): the frame (schema id and message indexes) is checked and taken off before
    /// prost decodes, and put on when a `Proto<T>` is published through this codec.
    pub fn protobuf(registry: &SchemaRegistry) -> Self {
        Self::with_format(
            registry,
            Format::Protobuf {
                proto: None,
                indexes: vec![0],
                message: None,
                document: None,
            },
        )
    }

    /// Protobuf records of `T`, whose schema comes from its descriptor
    /// (`prost_reflect::ReflectMessage`: prost-reflect's derive, or its build integration),
    /// as Confluent's serializers derive it: publishing registers `T`'s file as `.proto`
    /// text, each file it imports first under a subject named after the import path (as a
    /// schema reference; well-known `google/protobuf/*` types left out, registries know
    /// them), and frames records with `T`'s message indexes in its file. `T`'s full name is
    /// the record name of the subject strategies.
    ///
    /// The AsyncAPI document shows `T` alone, with the types it uses, imported ones inlined:
    /// the official parser documents one message of a text and loads no imports.
    ///
    /// Fails when the file cannot be written as `.proto` text (a group declared by an
    /// extension).
    ///
    /// ```no_run
    /// use faststream_registry::prost_reflect::ReflectMessage;
    /// use faststream_registry::{PublishMode, RegistryCodec, SchemaRegistry};
    ///
    /// // `Ping`: generated by prost-build with prost-reflect-build (or derived).
    /// async fn pings<Ping: ReflectMessage + Default>() -> Result<RegistryCodec, Box<dyn std::error::Error>> {
    ///     let registry = SchemaRegistry::new("http://127.0.0.1:8081/apis/ccompat/v7")?;
    ///     // Registers Ping's file (and its imports) under `pings-value` once.
    ///     Ok(RegistryCodec::protobuf_of::<Ping>(&registry)?
    ///         .publishing("pings", PublishMode::AutoRegister)
    ///         .await?)
    /// }
    /// ```
    #[cfg(feature = "protobuf-reflect")]
    pub fn protobuf_of<T: prost_reflect::ReflectMessage + Default>(
        registry: &SchemaRegistry,
    ) -> Result<Self, RegistryError> {
        Self::protobuf_descriptor(registry, &T::default().descriptor())
    }

    /// [`RegistryCodec::protobuf_of`] from a message descriptor.
    #[cfg(feature = "protobuf-reflect")]
    pub fn protobuf_descriptor(
        registry: &SchemaRegistry,
        message: &prost_reflect::MessageDescriptor,
    ) -> Result<Self, RegistryError> {
        let proto = crate::reflect::proto_file(&message.parent_file()).map_err(|e| {
            RegistryError::Invalid(format!("the .proto file of {}: {e}", message.full_name()))
        })?;
        Ok(Self::with_format(
            registry,
            Format::Protobuf {
                proto: Some(proto),
                indexes: crate::reflect::message_indexes(message),
                message: Some(message.full_name().to_owned()),
                document: crate::reflect::document(message).ok(),
            },
        ))
    }

    /// The `.proto` file (its text) publishing registers, for a Protobuf codec. With feature
    /// `protobuf-reflect`, the AsyncAPI document shows the message at
    /// [`message_indexes`](RegistryCodec::message_indexes) alone, with the types it uses
    /// (the text is compiled for this; it may import Google's well-known types only).
    pub fn proto_schema(mut self, proto: impl Into<String>) -> Self {
        if let Format::Protobuf { proto: own, .. } = &mut self.format {
            *own = Some(ProtoFile::text(proto.into()));
        }
        self
    }

    /// Where the published message is in its `.proto` file, for a Protobuf codec: `[0]` (the
    /// default) is its first top-level message, `[1, 0]` the first message nested in the
    /// second.
    pub fn message_indexes(mut self, indexes: &[i32]) -> Self {
        if let Format::Protobuf { indexes: own, .. } = &mut self.format {
            *own = indexes.to_vec();
        }
        self
    }

    fn with_format(registry: &SchemaRegistry, format: Format) -> Self {
        Self {
            registry: registry.clone(),
            format,
            strategy: SubjectStrategy::default(),
            key: false,
            writer: None,
            resolves: RwLock::default(),
        }
    }

    /// The subject name strategy publishing uses ([`SubjectStrategy::TopicName`] by default).
    pub fn subject_strategy(mut self, strategy: SubjectStrategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// A codec for record keys: subjects `{topic}-key` under the topic name strategy. Give
    /// it to `SubscriberConfig::key_codec`, and encode keys with [`Codec::encode`].
    pub fn for_keys(mut self) -> Self {
        self.key = true;
        self
    }

    /// The registry it uses.
    pub fn registry(&self) -> &SchemaRegistry {
        &self.registry
    }

    /// The record name the subject strategies use: the Avro schema's full name, the JSON
    /// Schema's `title`, or the Protobuf message's full name.
    fn record_name(&self) -> Option<String> {
        match &self.format {
            Format::Avro { reader } => match reader.as_deref()?.schema() {
                apache_avro::Schema::Record(record) => Some(record.name.fullname(None)),
                _ => None,
            },
            Format::Json { schema } => schema.as_ref()?["title"].as_str().map(str::to_owned),
            Format::Protobuf { message, .. } => message.clone(),
        }
    }

    /// The subject publishing to `topic` uses.
    pub fn subject(&self, topic: &str) -> Result<String, RegistryError> {
        let record = self.record_name();
        self.strategy
            .subject(topic, record.as_deref(), self.key)
            .ok_or_else(|| {
                RegistryError::Invalid(format!(
                    "the {:?} strategy needs a record name: give the codec a schema (avro_of, json_of, protobuf_of)",
                    self.strategy
                ))
            })
    }

    /// The same codec, publishing to `topic` with the schema `mode` says, resolved now (one
    /// registry request at most) so that encoding never waits.
    pub async fn publishing(
        mut self,
        topic: &str,
        mode: PublishMode,
    ) -> Result<Self, RegistryError> {
        let subject = self.subject(topic)?;
        let schema = match mode {
            PublishMode::Id(id) => self.registry.schema_by_id(id).await?,
            PublishMode::Latest => self.registry.latest(&subject).await?,
            PublishMode::AutoRegister => {
                let (schema_type, text) = self.own_schema()?;
                let references =
                    protobuf::references(&self.registry, self.own_imports(), true).await?;
                let id = self
                    .registry
                    .register_with_references(&subject, schema_type, &text, &references)
                    .await?;
                self.registry.schema_by_id(id).await?
            }
        };
        self.check_writer(&schema)?;
        self.writer = Some(Writer {
            subject,
            mode,
            current: Arc::new(RwLock::new(Current {
                schema,
                fetched: Instant::now(),
            })),
            refreshing: Arc::default(),
        });
        Ok(self)
    }

    /// The schema this codec registers: its own.
    fn own_schema(&self) -> Result<(SchemaType, String), RegistryError> {
        let missing = || {
            RegistryError::Invalid(
                "auto-registration needs the codec's own schema (avro_of, reader_schema, json_of, protobuf_of, proto_schema)"
                    .into(),
            )
        };
        match &self.format {
            Format::Avro { reader } => {
                let schema = reader.as_deref().ok_or_else(missing)?;
                let text = serde_json::to_string(schema.schema())
                    .map_err(|e| RegistryError::Invalid(format!("Avro schema: {e}")))?;
                Ok((SchemaType::Avro, text))
            }
            Format::Json { schema } => {
                let schema = schema.as_ref().ok_or_else(missing)?;
                Ok((SchemaType::Json, schema.to_string()))
            }
            Format::Protobuf { proto, .. } => {
                let proto = proto.as_ref().ok_or_else(missing)?;
                Ok((SchemaType::Protobuf, proto.text.clone()))
            }
        }
    }

    /// The files the codec's own schema imports (a Protobuf file's), which the registry
    /// holds as its references.
    fn own_imports(&self) -> &[ProtoFile] {
        match &self.format {
            Format::Protobuf {
                proto: Some(proto), ..
            } => &proto.imports,
            _ => &[],
        }
    }

    /// The registry's name for the codec's format.
    fn schema_type(&self) -> SchemaType {
        match self.format {
            Format::Avro { .. } => SchemaType::Avro,
            Format::Json { .. } => SchemaType::Json,
            Format::Protobuf { .. } => SchemaType::Protobuf,
        }
    }

    /// Fails when `schema` is not of the codec's format.
    fn check_writer(&self, schema: &RegisteredSchema) -> Result<(), RegistryError> {
        match &self.format {
            Format::Avro { .. } => schema.avro().map(|_| ()).map_err(RegistryError::Invalid),
            _ => same_type(schema, self.schema_type()).map_err(RegistryError::Invalid),
        }
    }

    /// Whether records of writer schema `id` must be resolved to `reader`: unless it is the
    /// same schema (Avro's parsing canonical form), worked out once per id. Why not, when
    /// Avro's resolution rules do not let `reader` read `writer` (a field without a default
    /// added, a type changed other than by promotion): apache-avro's resolution would still
    /// narrow a `long` into an `int`, silently.
    fn needs_resolution(
        &self,
        id: u32,
        writer: &AvroReader,
        reader: &AvroReader,
    ) -> Result<bool, String> {
        if let Some(known) = self
            .resolves
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
        {
            return known.clone();
        }
        let needed = if writer.schema() == reader.schema() {
            Ok(false)
        } else {
            reader
                .can_read(writer)
                .map(|()| true)
                .map_err(|why| format!("the reader schema cannot read it: {why}"))
        };
        self.resolves
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, needed.clone());
        needed
    }

    /// The schema of a framed payload's id, fetched by [`Codec::prepare`], and the rest.
    fn fetched<'p>(
        &self,
        payload: &'p [u8],
    ) -> Result<(Arc<RegisteredSchema>, &'p [u8]), DecodeError> {
        let (id, body) = wire::split(payload)?;
        let schema = self.registry.cached(id).ok_or_else(|| {
            decode_error(format!("schema id {id} was not fetched from the registry"))
        })?;
        Ok((schema, body))
    }

    /// The schema publishing writes with now; an error for a codec that only decodes.
    fn writer_schema(&self) -> Result<Arc<RegisteredSchema>, EncodeError> {
        let writer = self.writer.as_ref().ok_or_else(|| {
            EncodeError(format!(
                "{}: this codec only decodes; `publishing(topic, mode).await` sets where it publishes",
                self.name()
            ))
        })?;
        Ok(self.current(writer))
    }

    /// The schema encoding writes with now. Under [`PublishMode::Latest`], a look-up older
    /// than the registry's `latest_ttl` starts a new one in the background; the current
    /// schema is used until it lands (and for another `latest_ttl` when it fails).
    fn current(&self, writer: &Writer) -> Arc<RegisteredSchema> {
        let current = writer
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if writer.mode == PublishMode::Latest
            && current.fetched.elapsed() >= self.registry.latest_ttl()
            && !writer.refreshing.swap(true, Ordering::AcqRel)
        {
            self.refresh_latest(writer);
        }
        current.schema
    }

    fn refresh_latest(&self, writer: &Writer) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            writer.refreshing.store(false, Ordering::Release);
            return;
        };
        let registry = self.registry.clone();
        let subject = writer.subject.clone();
        let current = Arc::clone(&writer.current);
        let refreshing = Arc::clone(&writer.refreshing);
        runtime.spawn(async move {
            let latest = registry.latest(&subject).await;
            let mut current = current.write().unwrap_or_else(|e| e.into_inner());
            current.fetched = Instant::now();
            match latest {
                Ok(schema) => current.schema = schema,
                Err(err) => tracing::warn!(
                    "schema registry: the latest schema of `{subject}` could not be looked up again (the previous one is used): {err}"
                ),
            }
            refreshing.store(false, Ordering::Release);
        });
    }
}

impl Codec for RegistryCodec {
    fn name(&self) -> &'static str {
        match self.format {
            Format::Avro { .. } => "registry-avro",
            Format::Json { .. } => "registry-json",
            Format::Protobuf { .. } => "registry-protobuf",
        }
    }

    fn content_type(&self) -> &'static str {
        match self.format {
            Format::Avro { .. } => REGISTRY_AVRO,
            Format::Json { .. } => REGISTRY_JSON,
            Format::Protobuf { .. } => REGISTRY_PROTOBUF,
        }
    }

    /// A record is this codec's when it is framed (magic byte 0 and a schema id), with its
    /// content type or none.
    fn claims(&self, content_type: Option<&str>, payload: &[u8]) -> bool {
        wire::schema_id(payload).is_some()
            && content_type.is_none_or(|ct| ct.starts_with(self.content_type()))
    }

    fn decode<'de>(
        &self,
        payload: &'de [u8],
        target: &mut dyn DecodeTarget<'de>,
    ) -> Result<(), DecodeError> {
        let (schema, body) = self.fetched(payload)?;
        match &self.format {
            Format::Avro { reader } => {
                let writer = schema.avro_reader().map_err(decode_error)?;
                match reader.as_deref() {
                    Some(reader) => match self.needs_resolution(schema.id, writer, reader) {
                        Ok(true) => reader.decode_resolved(writer, body, target),
                        Ok(false) => writer.decode(body, target),
                        Err(why) => Err(decode_error(why)),
                    },
                    None => writer.decode(body, target),
                }
                .map_err(|err| decode_error(format!("schema id {}: {}", schema.id, err.message)))
            }
            Format::Json { .. } => {
                same_type(&schema, SchemaType::Json).map_err(decode_error)?;
                let mut json = serde_json::Deserializer::from_slice(body);
                deserialize_into(target, &mut json)?;
                json.end().map_err(|e| decode_error(e.to_string()))
            }
            Format::Protobuf { .. } => Err(decode_error(
                "Protobuf records decode into `codec::Proto<T>` parameters (prost messages)",
            )),
        }
    }

    /// A Protobuf record's message bytes: the schema id (of a Protobuf schema) and the
    /// message indexes taken off.
    fn body<'p>(&self, payload: &'p [u8]) -> Result<&'p [u8], DecodeError> {
        let (schema, rest) = self.fetched(payload)?;
        same_type(&schema, SchemaType::Protobuf).map_err(decode_error)?;
        let (_indexes, body) = wire::read_indexes(rest)?;
        Ok(body)
    }

    /// A `Proto<T>`'s bytes framed with the schema id and the message indexes.
    fn frame(&self, body: &[u8]) -> Option<Result<Vec<u8>, EncodeError>> {
        let Format::Protobuf { indexes, .. } = &self.format else {
            return None;
        };
        Some(self.writer_schema().map(|schema| {
            let mut framed = wire::frame(schema.id, &[]);
            wire::write_indexes(&mut framed, indexes);
            framed.extend_from_slice(body);
            framed
        }))
    }

    fn encode(&self, value: &dyn erased_serde::Serialize) -> Result<Vec<u8>, EncodeError> {
        let schema = self.writer_schema()?;
        let body = match &self.format {
            Format::Avro { .. } => {
                let avro = schema.avro().map_err(EncodeError)?;
                encode_avro_datum(avro, value)?
            }
            Format::Json { .. } => serde_json::to_vec(value)
                .map_err(|e| EncodeError(format!("{}: {e}", self.name())))?,
            Format::Protobuf { .. } => {
                return Err(EncodeError(
                    "registry-protobuf: publish a `codec::Proto<T>` (a prost message)".into(),
                ))
            }
        };
        Ok(wire::frame(schema.id, &body))
    }

    /// `None` when the record's schema id is cached (or the record is not framed: decoding
    /// says so); else the fetch of its schema, an outage being
    /// [`DecodeFailure::Unavailable`] and an unknown id [`DecodeFailure::Invalid`].
    fn prepare(&self, payload: &[u8]) -> Option<BoxFuture<'static, Result<(), DecodeFailure>>> {
        let id = wire::schema_id(payload)?;
        if self.registry.cached(id).is_some() {
            return None;
        }
        let registry = self.registry.clone();
        Some(Box::pin(async move {
            match registry.schema_by_id(id).await {
                Ok(_) => Ok(()),
                Err(err) if err.is_outage() => Err(DecodeFailure::Unavailable(err.to_string())),
                Err(err) => Err(DecodeFailure::Invalid(decode_error(err.to_string()))),
            }
        }))
    }

    fn may_wait(&self) -> bool {
        true
    }

    /// The codec's own schema (`avro_of`, `json_of`, `protobuf_of`, `proto_schema`) against its subject's
    /// latest version (the publishing subject, else `topic`'s under the strategy); `None`
    /// for a codec that reads any writer schema and has none of its own.
    fn check_schema(&self, topic: &str) -> Option<BoxFuture<'static, Result<SchemaCheck, String>>> {
        let (schema_type, schema) = self.own_schema().ok()?;
        let subject = match &self.writer {
            Some(writer) => Ok(writer.subject.clone()),
            None => self.subject(topic).map_err(|e| e.to_string()),
        };
        let registry = self.registry.clone();
        let imports = self.own_imports().to_vec();
        Some(Box::pin(async move {
            let subject = subject?;
            let references = protobuf::references(&registry, &imports, false)
                .await
                .map_err(|e| format!("the imports of `{subject}`'s schema: {e}"))?;
            crate::check::check(&registry, subject, schema_type, schema, &references).await
        }))
    }

    fn schema(&self) -> Option<FormatSchema> {
        match &self.format {
            Format::Avro {
                reader: Some(reader),
            } => Some(FormatSchema {
                content_type: REGISTRY_AVRO,
                schema_format: "application/vnd.apache.avro;version=1.9.0",
                schema: serde_json::to_value(reader.schema()).ok()?,
            }),
            // The message alone (see `reflect::render::render_document`): AsyncAPI's parser
            // documents one message of a text, and loads no imports.
            Format::Protobuf {
                proto: Some(proto),
                indexes,
                document,
                ..
            } => {
                let text = document
                    .clone()
                    .or_else(|| document_of_text(&proto.text, indexes))
                    .unwrap_or_else(|| proto.text.clone());
                Some(FormatSchema {
                    content_type: REGISTRY_PROTOBUF,
                    ..FormatSchema::protobuf(&text)
                })
            }
            _ => None,
        }
    }
}

/// The `.proto` text AsyncAPI shows for the message at `indexes` of a file given as text:
/// compiled with feature `protobuf-reflect`, else the text as given.
fn document_of_text(text: &str, indexes: &[i32]) -> Option<String> {
    #[cfg(feature = "protobuf-reflect")]
    return crate::reflect::document_of_text(text, indexes);
    #[cfg(not(feature = "protobuf-reflect"))]
    {
        let _ = (text, indexes);
        None
    }
}

/// Fails, saying so, when `schema` is not of type `expected`.
fn same_type(schema: &RegisteredSchema, expected: SchemaType) -> Result<(), String> {
    if schema.schema_type == expected {
        return Ok(());
    }
    Err(format!(
        "schema id {} is {}, not {}",
        schema.id,
        schema.schema_type.as_str(),
        expected.as_str()
    ))
}

fn decode_error(message: impl Into<String>) -> DecodeError {
    DecodeError {
        path: ".".into(),
        message: message.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(
        Debug, serde::Serialize, serde::Deserialize, apache_avro::AvroSchema, schemars::JsonSchema,
    )]
    struct Order {
        id: i64,
    }

    fn offline() -> SchemaRegistry {
        SchemaRegistry::new("http://127.0.0.1:1").unwrap()
    }

    #[test]
    fn framed_records_are_claimed_with_their_content_type_or_none() {
        let codec = RegistryCodec::avro_of::<Order>(&offline());
        let framed = wire::frame(7, &[2]);
        assert!(codec.claims(None, &framed));
        assert!(codec.claims(Some(REGISTRY_AVRO), &framed));
        assert!(!codec.claims(Some("application/msgpack"), &framed));
        assert!(!codec.claims(None, b"{\"id\":1}"), "not framed");
        assert!(codec.may_wait(), "a registry can be down");
    }

    #[test]
    fn an_unfetched_id_must_be_prepared_and_an_unframed_record_is_a_decode_error() {
        let codec = RegistryCodec::avro_of::<Order>(&offline());
        assert!(
            codec.prepare(&wire::frame(7, &[2])).is_some(),
            "fetch first"
        );
        assert!(
            codec.prepare(b"{}").is_none(),
            "nothing to fetch: decoding says why"
        );
        let err = faststream_core::codec::decode_by::<Order>(&codec, b"{}").unwrap_err();
        assert!(err.message.contains("wire format"), "{}", err.message);
        let err =
            faststream_core::codec::decode_by::<Order>(&codec, &wire::frame(7, &[2])).unwrap_err();
        assert!(err.message.contains("schema id 7"), "{}", err.message);
    }

    #[test]
    fn a_codec_that_was_not_given_a_subject_only_decodes() {
        let codec = RegistryCodec::json(&offline());
        let err = codec.encode(&Order { id: 1 }).unwrap_err();
        assert!(err.0.contains("publishing(topic, mode)"), "{}", err.0);
        let strategy =
            RegistryCodec::json(&offline()).subject_strategy(SubjectStrategy::RecordName);
        assert!(
            strategy.subject("orders").is_err(),
            "RecordName needs a schema"
        );
        let named = RegistryCodec::json_of::<Order>(&offline())
            .subject_strategy(SubjectStrategy::RecordName);
        assert_eq!(named.subject("orders").unwrap(), "Order");
        let key = RegistryCodec::avro_of::<Order>(&offline()).for_keys();
        assert_eq!(key.subject("orders").unwrap(), "orders-key");
    }

    #[cfg(feature = "protobuf-reflect")]
    #[test]
    fn a_protobuf_codec_from_a_descriptor_has_its_schema_indexes_and_record_name() {
        let pool = prost_reflect::DescriptorPool::global();
        let message = pool
            .get_message_by_name("google.protobuf.DescriptorProto.ExtensionRange")
            .unwrap();
        let codec = RegistryCodec::protobuf_descriptor(&offline(), &message)
            .unwrap()
            .subject_strategy(SubjectStrategy::TopicRecordName);
        assert_eq!(
            codec.subject("t").unwrap(),
            "t-google.protobuf.DescriptorProto.ExtensionRange"
        );
        let (schema_type, text) = codec.own_schema().unwrap();
        assert_eq!(schema_type, SchemaType::Protobuf);
        assert!(
            text.starts_with("syntax = \"proto2\";\npackage google.protobuf;\n"),
            "{text}"
        );
        assert!(
            codec.own_imports().is_empty(),
            "descriptor.proto imports nothing"
        );
        let Format::Protobuf { indexes, .. } = &codec.format else {
            panic!("a Protobuf codec");
        };
        assert_eq!(
            indexes,
            &[2, 0],
            "DescriptorProto is the file's third message"
        );
    }
}
