//! AsyncAPI documents of faststream-rs apps: 3.0.0 (the default) or 2.6.0, named as Python's
//! FastStream names things, plus [`page`], an offline HTML page of a document, and (feature
//! `serve`) [`serve`], the small HTTP server behind `docs serve`.
//!
//! This crate is tooling, not runtime: it reads an app's subscriber configurations
//! ([`SubscriberConfig`]) and what its broker says about itself ([`DescribeServer`]). It must
//! never depend on a broker backend (rdkafka), on a CLI crate, or be a dependency of
//! `faststream-core`.
//!
//! - Server `development`: the broker's hosts, `protocol` (`kafka`, `kafka-secure` with SSL),
//!   `protocolVersion: auto`, security schemes from the SASL settings.
//! - A subscriber's channel is `"{topic}:{HandlerName}"` (the handler's name in CamelCase) with
//!   its operation `"{channel}Subscribe"` (receive) and message `"{channel}:SubscribeMessage"`;
//!   a publisher's channel and operation are `"{topic}:Publisher"` (send), its message
//!   `"{topic}:Publisher:Message"`.
//! - A payload that is not a named type is the schema `"{HandlerName}:Message:Payload"`; named
//!   types (structs, enums) keep their names; everything lives under `components/schemas` and
//!   every `$ref` points there.
//!
//! ```
//! use faststream_asyncapi::{self as asyncapi, AppInfo, AsyncApiVersion, ServerInfo};
//! use faststream_core::SubscriberConfig;
//! use std::sync::Arc;
//!
//! let subscribers = [Arc::new(SubscriberConfig::new("handle_msg", ["in-topic"]).publish_to("out-topic"))];
//! let doc = asyncapi::document(
//!     &AppInfo::default(),
//!     &ServerInfo::new(["localhost:9092"], "kafka"),
//!     &subscribers,
//!     AsyncApiVersion::V3_0_0,
//! );
//! assert_eq!(doc["channels"]["in-topic:HandleMsg"]["address"], "in-topic");
//! assert_eq!(doc["operations"]["out-topic:Publisher"]["action"], "send");
//! ```
#![doc(test(attr(deny(warnings), allow(dead_code, unused_variables))))]

pub mod page;
#[cfg(feature = "serve")]
pub mod serve;

use faststream_core::codec::{CodecRef, FormatSchema};
use faststream_core::subscriber::{PublisherConfig, SchemaFn, SubscriberConfig};
use schemars::r#gen::{SchemaGenerator, SchemaSettings};
use serde_json::{json, Map, Value};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

/// Where components live in the generated documents.
pub const SCHEMAS_PATH: &str = "#/components/schemas/";

/// The Kafka bindings version written in channel and operation bindings.
pub const KAFKA_BINDING_VERSION: &str = "0.4.0";

/// The name of the (only) server of a document, as in FastStream.
pub const SERVER_NAME: &str = "development";

/// Errors while producing or writing a document.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AsyncApiError {
    /// A version string that is neither `3.0.0` nor `2.6.0`.
    #[error("unsupported AsyncAPI version `{0}` (expected `3.0.0` or `2.6.0`)")]
    UnknownVersion(String),
    /// The document could not be written as JSON.
    #[error("cannot write the document as JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The document could not be written as YAML.
    #[error("cannot write the document as YAML: {0}")]
    Yaml(#[from] serde_norway::Error),
    /// Writing the file failed.
    #[error("cannot write `{path}`: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Which AsyncAPI specification version to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AsyncApiVersion {
    /// AsyncAPI 3.0.0 (the default, as in FastStream).
    #[default]
    V3_0_0,
    /// AsyncAPI 2.6.0.
    V2_6_0,
}

impl AsyncApiVersion {
    /// `"3.0.0"` or `"2.6.0"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            AsyncApiVersion::V3_0_0 => "3.0.0",
            AsyncApiVersion::V2_6_0 => "2.6.0",
        }
    }
}

impl fmt::Display for AsyncApiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AsyncApiVersion {
    type Err = AsyncApiError;

    /// Parses `3.0.0` / `3.0` / `3` or `2.6.0` / `2.6` / `2`.
    ///
    /// ```
    /// use faststream_asyncapi::AsyncApiVersion;
    /// assert_eq!("2.6.0".parse::<AsyncApiVersion>().unwrap(), AsyncApiVersion::V2_6_0);
    /// assert!("1.0".parse::<AsyncApiVersion>().is_err());
    /// ```
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "3.0.0" | "3.0" | "3" => Ok(AsyncApiVersion::V3_0_0),
            "2.6.0" | "2.6" | "2" => Ok(AsyncApiVersion::V2_6_0),
            other => Err(AsyncApiError::UnknownVersion(other.to_owned())),
        }
    }
}

/// Contact information of the app's maintainers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Contact {
    /// Person or organisation.
    pub name: String,
    /// A URL about them.
    pub url: Option<String>,
    /// An email address.
    pub email: Option<String>,
}

impl Contact {
    /// A contact called `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ..Self::default()
        }
    }

    /// Sets the URL.
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(url.into());
        self
    }

    /// Sets the email address.
    pub fn email(mut self, email: impl Into<String>) -> Self {
        self.email = Some(email.into());
        self
    }
}

/// The license of the API.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct License {
    /// License name, e.g. `Apache 2.0`.
    pub name: String,
    /// URL of the license text.
    pub url: Option<String>,
}

impl License {
    /// A license called `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            url: None,
        }
    }

    /// Sets the URL.
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(url.into());
        self
    }
}

/// A tag grouping the app in catalogs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tag {
    /// Tag name.
    pub name: String,
    /// What it means.
    pub description: Option<String>,
}

impl Tag {
    /// A tag called `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            description: None,
        }
    }

    /// Sets the description.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }
}

/// A link to further documentation.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExternalDocs {
    /// Where.
    pub url: String,
    /// What is there.
    pub description: Option<String>,
}

impl ExternalDocs {
    /// Documentation at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            description: None,
        }
    }

    /// Sets the description.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }
}

/// The app's `info` section: title (default `FastStream`), version (default `0.1.0`) and the
/// optional description, contact, license, tags and external docs.
///
/// ```
/// use faststream_asyncapi::{AppInfo, Contact, License, Tag};
/// let info = AppInfo::default()
///     .title("Billing")
///     .version("1.2.0")
///     .description("Turns orders into invoices.")
///     .contact(Contact::new("Billing team").email("billing@example.com"))
///     .license(License::new("MIT"))
///     .tag(Tag::new("billing"));
/// assert_eq!(info.title, "Billing");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppInfo {
    /// Title (default `FastStream`).
    pub title: String,
    /// API version (default `0.1.0`).
    pub version: String,
    /// What the app does (CommonMark allowed).
    pub description: Option<String>,
    /// Terms of service URL.
    pub terms_of_service: Option<String>,
    /// Maintainers.
    pub contact: Option<Contact>,
    /// License.
    pub license: Option<License>,
    /// Tags.
    pub tags: Vec<Tag>,
    /// Further documentation.
    pub external_docs: Option<ExternalDocs>,
    /// The application's identifier (a URI; 2.6.0 documents only): `urn:{title}` in kebab
    /// case when unset.
    pub id: Option<String>,
}

impl Default for AppInfo {
    fn default() -> Self {
        Self {
            title: "FastStream".to_owned(),
            version: "0.1.0".to_owned(),
            description: None,
            terms_of_service: None,
            contact: None,
            license: None,
            tags: Vec::new(),
            external_docs: None,
            id: None,
        }
    }
}

impl AppInfo {
    /// Sets the title.
    pub fn title(mut self, title: impl Into<String>) -> Self {
        self.title = title.into();
        self
    }

    /// Sets the version.
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = version.into();
        self
    }

    /// Sets the description.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }

    /// Sets the terms of service URL.
    pub fn terms_of_service(mut self, url: impl Into<String>) -> Self {
        self.terms_of_service = Some(url.into());
        self
    }

    /// Sets the contact.
    pub fn contact(mut self, contact: Contact) -> Self {
        self.contact = Some(contact);
        self
    }

    /// Sets the license.
    pub fn license(mut self, license: License) -> Self {
        self.license = Some(license);
        self
    }

    /// Adds a tag.
    pub fn tag(mut self, tag: Tag) -> Self {
        self.tags.push(tag);
        self
    }

    /// Sets the external documentation link.
    pub fn external_docs(mut self, docs: ExternalDocs) -> Self {
        self.external_docs = Some(docs);
        self
    }

    /// Sets the application's identifier URI (the `id` of 2.6.0 documents).
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// The identifier: the one set, else `urn:` and the title in kebab case.
    ///
    /// ```
    /// let info = faststream_asyncapi::AppInfo::default().title("Shop billing!");
    /// assert_eq!(info.identifier(), "urn:shop-billing");
    /// ```
    pub fn identifier(&self) -> String {
        if let Some(id) = &self.id {
            return id.clone();
        }
        let slug = self
            .title
            .split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|part| !part.is_empty())
            .map(str::to_ascii_lowercase)
            .collect::<Vec<_>>()
            .join("-");
        format!("urn:{}", if slug.is_empty() { "faststream" } else { &slug })
    }
}

/// A security scheme a server requires, e.g. SASL/SCRAM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityScheme {
    /// Key under `components/securitySchemes`, e.g. `scram512`.
    pub name: String,
    /// The AsyncAPI scheme type: `userPassword`, `scramSha256`, `scramSha512`, `gssapi`,
    /// `oauth2`, `X509`, `plain`...
    pub kind: String,
    /// Free text.
    pub description: Option<String>,
}

impl SecurityScheme {
    /// A scheme stored as `name` of AsyncAPI type `kind`.
    pub fn new(name: impl Into<String>, kind: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            kind: kind.into(),
            description: None,
        }
    }

    fn to_json(&self) -> Value {
        let mut scheme = json!({ "type": self.kind });
        if self.kind == "oauth2" {
            scheme["flows"] = json!({});
        }
        if let Some(description) = &self.description {
            scheme["description"] = json!(description);
        }
        scheme
    }
}

/// How a broker describes itself to the document, separately from the runtime's `Broker`
/// trait: a backend implements it so its app's document has a `servers` section.
pub trait DescribeServer {
    /// The server the document names `development`: hosts, protocol, security.
    fn server_info(&self) -> ServerInfo;
}

/// What a broker tells the document about itself: the `development` server.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServerInfo {
    /// `host:port` of each bootstrap server.
    pub hosts: Vec<String>,
    /// `kafka`, or `kafka-secure` over TLS.
    pub protocol: String,
    /// The protocol version; `auto` for Kafka.
    pub protocol_version: String,
    /// Free text.
    pub description: Option<String>,
    /// Security schemes the server requires.
    pub security: Vec<SecurityScheme>,
}

impl ServerInfo {
    /// A server on `hosts` speaking `protocol`, protocol version `auto`.
    pub fn new<I, S>(hosts: I, protocol: impl Into<String>) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            hosts: hosts.into_iter().map(Into::into).collect(),
            protocol: protocol.into(),
            protocol_version: "auto".to_owned(),
            description: None,
            security: Vec::new(),
        }
    }

    /// Adds a required security scheme.
    pub fn security(mut self, scheme: SecurityScheme) -> Self {
        self.security.push(scheme);
        self
    }
}

/// `handle_msg` -> `HandleMsg`, as FastStream names handlers in documents.
///
/// ```
/// assert_eq!(faststream_asyncapi::camel_case("handle_msg"), "HandleMsg");
/// ```
pub fn camel_case(name: &str) -> String {
    name.split(['_', '-', ' '])
        .filter(|part| !part.is_empty())
        .map(capitalized)
        .collect()
}

/// `user_id` -> `User Id`: the title pydantic (and so FastStream) gives a field.
fn field_title(name: &str) -> String {
    name.split('_')
        .filter(|part| !part.is_empty())
        .map(capitalized)
        .collect::<Vec<_>>()
        .join(" ")
}

/// `user` -> `User`: `part` with its first character upper-cased.
fn capitalized(part: &str) -> String {
    let mut chars = part.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// Escapes one JSON pointer token (`~` and `/`).
fn pointer_token(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

fn reference(path: &str, name: &str) -> Value {
    json!({ "$ref": format!("{path}{}", pointer_token(name)) })
}

/// The AsyncAPI document of `subscribers` (and their publishers) on `server`.
///
/// The facade's `FastStream::asyncapi` calls this with the app's own values.
pub fn document(
    info: &AppInfo,
    server: &ServerInfo,
    subscribers: &[Arc<SubscriberConfig>],
    version: AsyncApiVersion,
) -> Value {
    document_with_publishers(info, server, subscribers, &[], version)
}

/// [`document`], plus the app's publisher objects (`faststream_core::Publisher`), each a
/// publisher channel like a `#[publisher]`.
pub fn document_with_publishers(
    info: &AppInfo,
    server: &ServerInfo,
    subscribers: &[Arc<SubscriberConfig>],
    publishers: &[PublisherConfig],
    version: AsyncApiVersion,
) -> Value {
    let mut builder = Builder::new(version, !server.hosts.is_empty());
    for publisher in publishers.iter().filter(|p| p.include_in_schema) {
        builder.publisher(publisher, None);
    }
    for sub in subscribers.iter().filter(|s| s.docs.include_in_schema) {
        builder.subscriber(sub);
        for publisher in sub.publishers.iter().filter(|p| p.include_in_schema) {
            builder.publisher(publisher, sub.reply_codec());
        }
        for publisher in dead_letter_publishers(sub) {
            builder.publisher(&publisher, None);
        }
        if let Some((reader, publishers)) = retry_topic_channels(sub) {
            builder.subscriber(&reader);
            for publisher in &publishers {
                builder.publisher(publisher, None);
            }
        }
    }
    builder.finish(info, server)
}

/// The dead-letter topics a subscriber's failure handling publishes to (as resolved from its
/// own, its routers' and its app's policies), as publishers of the original payload.
fn dead_letter_publishers(sub: &SubscriberConfig) -> Vec<PublisherConfig> {
    let policy = sub.delivery_policy().failure;
    // A pattern subscriber's dead letters go to `{its topic}-dlt`: named by the template.
    let sources: Vec<&str> = match &sub.backend.pattern {
        Some(pattern) => vec![pattern.template()],
        None => sub.backend.topics.iter().map(String::as_str).collect(),
    };
    let mut topics: Vec<String> = sources
        .into_iter()
        .filter_map(|topic| policy.dead_letter_topic(topic))
        .collect();
    topics.dedup();
    topics
        .into_iter()
        .map(|topic| {
            let mut publisher = PublisherConfig::new(topic.as_str()).description(format!(
                "Dead letters of `{}`: messages that failed for good, with their original key, \
                 payload and headers plus `dlt-*` provenance headers.",
                sub.name
            ));
            publisher.schema = sub.docs.payload_schema;
            publisher.payload_format = sub.docs.payload_format.clone();
            publisher.codec = sub.codec.effective().cloned();
            publisher
        })
        .collect()
}

/// The retry topics of a subscriber with `ErrorPolicy::retry_topics` (as resolved from its
/// own, its routers' and its app's policies): read by the subscriber itself (its handler and
/// group, so the same subscribe operation on those channels) and written by it, with the
/// original payload.
fn retry_topic_channels(
    sub: &SubscriberConfig,
) -> Option<(SubscriberConfig, Vec<PublisherConfig>)> {
    let policy = sub.delivery_policy().failure;
    if policy.retry_topics.is_empty() || sub.backend.pattern.is_some() {
        return None;
    }
    let group = sub.effective_group_id();
    let topics: Vec<String> = sub
        .backend
        .topics
        .iter()
        .flat_map(|topic| policy.retry_topic_names(topic, group))
        .collect();
    let description = format!(
        "Retries of `{}`: its failed messages, with their original key, payload and headers          plus `retry-*` headers (attempt, due time, original topic, partition and offset),          each read again once due.",
        sub.name
    );
    let mut reader = sub.clone();
    reader.backend.topics = topics.clone();
    reader.docs.title = None;
    reader.docs.description = Some(description.clone());
    let publishers = topics
        .iter()
        .map(|topic| {
            let mut publisher =
                PublisherConfig::new(topic.as_str()).description(description.clone());
            publisher.schema = sub.docs.payload_schema;
            publisher
        })
        .collect();
    Some((reader, publishers))
}

/// The document as YAML.
///
/// ```
/// let yaml = faststream_asyncapi::to_yaml(&serde_json::json!({"asyncapi": "3.0.0"})).unwrap();
/// assert_eq!(yaml.trim(), "asyncapi: 3.0.0");
/// ```
pub fn to_yaml(document: &Value) -> Result<String, AsyncApiError> {
    Ok(serde_norway::to_string(document)?)
}

/// The document as pretty-printed JSON.
pub fn to_json(document: &Value) -> Result<String, AsyncApiError> {
    Ok(serde_json::to_string_pretty(document)?)
}

/// Writes `document` to `path` as YAML (`yaml`) or pretty JSON, creating parent directories.
pub fn write(document: &Value, path: &Path, yaml: bool) -> Result<(), AsyncApiError> {
    let text = if yaml {
        to_yaml(document)?
    } else {
        to_json(document)? + "\n"
    };
    let io = |source| AsyncApiError::Io {
        path: path.to_owned(),
        source,
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    std::fs::write(path, text).map_err(io)
}

/// Reads an AsyncAPI document from `text`: JSON when `json`, else YAML (JSON is YAML too).
pub fn parse(text: &str, json: bool) -> Result<Value, String> {
    if json {
        serde_json::from_str(text).map_err(|e| e.to_string())
    } else {
        serde_norway::from_str(text).map_err(|e| e.to_string())
    }
}

struct Builder {
    version: AsyncApiVersion,
    has_server: bool,
    generator: SchemaGenerator,
    channels: Map<String, Value>,
    operations: Map<String, Value>,
    messages: Map<String, Value>,
    schemas: Map<String, Value>,
}

impl Builder {
    fn new(version: AsyncApiVersion, has_server: bool) -> Self {
        let generator = SchemaSettings::draft07()
            .with(|s| {
                s.definitions_path = SCHEMAS_PATH.to_owned();
                s.meta_schema = None;
            })
            .into_generator();
        Self {
            version,
            has_server,
            generator,
            channels: Map::new(),
            operations: Map::new(),
            messages: Map::new(),
            schemas: Map::new(),
        }
    }

    /// The payload: a `$ref` to a named type, or to `name` holding the inline schema.
    fn payload(&mut self, schema: Option<SchemaFn>, name: &str) -> Value {
        let mut value = match schema {
            Some(schema) => {
                serde_json::to_value(schema(&mut self.generator)).unwrap_or_else(|_| json!({}))
            }
            None => json!({}),
        };
        if let Some(object) = value.as_object() {
            if object.len() == 1 && object.contains_key("$ref") {
                return value;
            }
        } else {
            // A boolean schema (`true`: anything).
            value = json!({});
        }
        if value.get("title").is_none() {
            value["title"] = json!(name);
        }
        self.schemas.insert(name.to_owned(), value);
        reference(SCHEMAS_PATH, name)
    }

    /// The payload of a subscriber with several handlers (filters): a schema `name` that is
    /// `oneOf` the handlers' payloads, as FastStream documents them.
    fn payload_one_of(&mut self, schemas: &[SchemaFn], name: &str) -> Value {
        let alternatives: Vec<Value> = schemas
            .iter()
            .enumerate()
            .map(|(index, schema)| self.payload(Some(*schema), &format!("{name}:{index}")))
            .collect();
        self.schemas.insert(
            name.to_owned(),
            json!({ "title": name, "oneOf": alternatives }),
        );
        reference(SCHEMAS_PATH, name)
    }

    fn message(&mut self, name: &str, payload: Value, encoding: &Encoding) -> Value {
        let mut message = json!({
            "title": name,
            "name": name,
            "correlationId": { "location": "$message.header#/correlation_id" },
            "payload": payload,
        });
        if self.version == AsyncApiVersion::V2_6_0 {
            message["messageId"] = json!(name);
        }
        match (&encoding.format, self.version) {
            // A schema of its own format: AsyncAPI 3's multi-format schema object, or 2.6's
            // message-level `schemaFormat` over the schema itself.
            (Some(format), AsyncApiVersion::V3_0_0) => {
                message["payload"] =
                    json!({ "schemaFormat": format.schema_format, "schema": format.schema });
            }
            (Some(format), AsyncApiVersion::V2_6_0) => {
                message["schemaFormat"] = json!(format.schema_format);
                message["payload"] = format.schema.clone();
            }
            (None, _) => {}
        }
        if let Some(content_type) = encoding.content_type {
            message["contentType"] = json!(content_type);
        } else if self.payload_is_text(&message["payload"]) {
            message["contentType"] = json!("text/plain");
        }
        self.messages.insert(name.to_owned(), message);
        reference("#/components/messages/", name)
    }

    /// Whether a payload is a plain string (published and consumed as `text/plain`).
    fn payload_is_text(&self, payload: &Value) -> bool {
        payload
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix(SCHEMAS_PATH))
            .and_then(|name| self.schemas.get(name))
            .and_then(|s| s.get("type"))
            .is_some_and(|t| t == "string")
    }

    fn channel_bindings(topic: &str) -> Value {
        json!({ "kafka": { "topic": topic, "bindingVersion": KAFKA_BINDING_VERSION } })
    }

    fn operation_bindings(group_id: &str) -> Value {
        json!({ "kafka": {
            "groupId": { "type": "string", "enum": [group_id] },
            "bindingVersion": KAFKA_BINDING_VERSION,
        } })
    }

    fn channel(
        &self,
        topic: &str,
        title: Option<&str>,
        description: Option<&str>,
        message_key: &str,
        message: Value,
    ) -> Value {
        let mut channel = Map::new();
        match self.version {
            AsyncApiVersion::V3_0_0 => {
                channel.insert("address".into(), json!(topic));
                if let Some(parameters) = address_parameters(topic) {
                    channel.insert("parameters".into(), parameters);
                }
                if let Some(title) = title {
                    channel.insert("title".into(), json!(title));
                }
                if let Some(description) = description {
                    channel.insert("description".into(), json!(description));
                }
                if self.has_server {
                    channel.insert(
                        "servers".into(),
                        json!([reference("#/servers/", SERVER_NAME)]),
                    );
                }
                channel.insert("messages".into(), json!({ message_key: message }));
            }
            AsyncApiVersion::V2_6_0 => {
                if let Some(description) = description {
                    channel.insert("description".into(), json!(description));
                }
                if let Some(Value::Object(parameters)) = address_parameters(topic) {
                    // 2.6 parameters carry a schema: path parameters are text.
                    let with_schema: Map<String, Value> = parameters
                        .into_iter()
                        .map(|(name, mut parameter)| {
                            parameter["schema"] = json!({ "type": "string" });
                            (name, parameter)
                        })
                        .collect();
                    channel.insert("parameters".into(), Value::Object(with_schema));
                }
                if self.has_server {
                    channel.insert("servers".into(), json!([SERVER_NAME]));
                }
            }
        }
        channel.insert("bindings".into(), Self::channel_bindings(topic));
        Value::Object(channel)
    }

    fn subscriber(&mut self, sub: &SubscriberConfig) {
        let encoding = Encoding::of(sub.docs.payload_format.as_ref(), sub.codec.effective());
        let handler = camel_case(&sub.name);
        let payload_name = format!("{handler}:Message:Payload");
        let payload = match (sub.docs.payload_schema, sub.docs.payload_one_of.as_slice()) {
            // The format's own schema takes the JSON Schema's place (see `message`).
            _ if encoding.format.is_some() => Value::Null,
            (None, alternatives) if !alternatives.is_empty() => {
                self.payload_one_of(alternatives, &payload_name)
            }
            (schema, _) => self.payload(schema, &payload_name),
        };
        // A pattern subscriber's channel is its template, with its parameters.
        let topics: Vec<&str> = match &sub.backend.pattern {
            Some(pattern) => vec![pattern.template()],
            None => sub.backend.topics.iter().map(String::as_str).collect(),
        };
        let single = topics.len() == 1;
        for topic in topics {
            let channel_name = match &sub.docs.title {
                Some(title) if single => title.clone(),
                Some(title) => format!("{topic}:{title}"),
                // A template's braces stay in the address, not in the channel's name.
                None => format!("{}:{handler}", topic.replace(['{', '}'], "")),
            };
            let bindings = Self::operation_bindings(sub.effective_group_id());
            match self.version {
                AsyncApiVersion::V3_0_0 => {
                    let message = self.message(
                        &format!("{channel_name}:SubscribeMessage"),
                        payload.clone(),
                        &encoding,
                    );
                    let channel = self.channel(
                        topic,
                        sub.docs.title.as_deref(),
                        sub.docs.description.as_deref(),
                        "SubscribeMessage",
                        message,
                    );
                    self.channels.insert(channel_name.clone(), channel);
                    let token = pointer_token(&channel_name);
                    let mut operation = json!({
                        "action": "receive",
                        "channel": { "$ref": format!("#/channels/{token}") },
                        "messages": [{ "$ref": format!("#/channels/{token}/messages/SubscribeMessage") }],
                        "bindings": bindings,
                    });
                    if let Some(description) = &sub.docs.description {
                        operation["description"] = json!(description);
                    }
                    self.operations
                        .insert(format!("{channel_name}Subscribe"), operation);
                }
                AsyncApiVersion::V2_6_0 => {
                    let message = self.message(
                        &format!("{channel_name}:Message"),
                        payload.clone(),
                        &encoding,
                    );
                    let mut channel = self.channel(
                        topic,
                        sub.docs.title.as_deref(),
                        sub.docs.description.as_deref(),
                        "",
                        Value::Null,
                    );
                    let mut operation = json!({
                        "operationId": format!("{channel_name}Subscribe"),
                        "message": message,
                        "bindings": bindings,
                    });
                    if let Some(description) = &sub.docs.description {
                        operation["description"] = json!(description);
                    }
                    channel["subscribe"] = operation;
                    self.channels.insert(channel_name, channel);
                }
            }
        }
    }

    /// A publisher channel; `inherited` is the codec it publishes with when it sets none
    /// itself (a subscriber's reply codec).
    fn publisher(&mut self, publisher: &PublisherConfig, inherited: Option<&CodecRef>) {
        let encoding = Encoding::of(
            publisher.payload_format.as_ref(),
            publisher.codec.as_ref().or(inherited),
        );
        let topic: &str = &publisher.topic;
        let channel_name = publisher
            .title
            .clone()
            .unwrap_or_else(|| format!("{}:Publisher", topic.replace(['{', '}'], "")));
        if self.channels.contains_key(&channel_name) {
            // Several subscribers publish to this topic: documented once.
            return;
        }
        let payload = match encoding.format {
            Some(_) => Value::Null,
            None => self.payload(publisher.schema, &format!("{channel_name}:Message:Payload")),
        };
        let message = self.message(&format!("{channel_name}:Message"), payload, &encoding);
        let description = publisher.description.as_deref();
        match self.version {
            AsyncApiVersion::V3_0_0 => {
                let channel = self.channel(
                    topic,
                    publisher.title.as_deref(),
                    description,
                    "Message",
                    message,
                );
                self.channels.insert(channel_name.clone(), channel);
                let token = pointer_token(&channel_name);
                let mut operation = json!({
                    "action": "send",
                    "channel": { "$ref": format!("#/channels/{token}") },
                    "messages": [{ "$ref": format!("#/channels/{token}/messages/Message") }],
                });
                if let Some(description) = description {
                    operation["description"] = json!(description);
                }
                self.operations.insert(channel_name, operation);
            }
            AsyncApiVersion::V2_6_0 => {
                let mut channel = self.channel(
                    topic,
                    publisher.title.as_deref(),
                    description,
                    "",
                    Value::Null,
                );
                let mut operation = json!({
                    "operationId": channel_name.clone(),
                    "message": message,
                });
                if let Some(description) = description {
                    operation["description"] = json!(description);
                }
                channel["publish"] = operation;
                self.channels.insert(channel_name, channel);
            }
        }
    }

    fn finish(mut self, info: &AppInfo, server: &ServerInfo) -> Value {
        for (name, schema) in self.generator.definitions() {
            if let Ok(value) = serde_json::to_value(schema) {
                self.schemas.entry(name.clone()).or_insert(value);
            }
        }
        for schema in self.schemas.values_mut() {
            add_field_titles(schema);
        }
        let v3 = self.version == AsyncApiVersion::V3_0_0;
        let mut doc = Map::new();
        doc.insert("asyncapi".into(), json!(self.version.as_str()));
        doc.insert("info".into(), info_json(info, v3));
        if !v3 {
            doc.insert("id".into(), json!(info.identifier()));
            if !info.tags.is_empty() {
                doc.insert("tags".into(), tags_json(&info.tags));
            }
            if let Some(docs) = &info.external_docs {
                doc.insert("externalDocs".into(), external_docs_json(docs));
            }
        }
        doc.insert("defaultContentType".into(), json!("application/json"));
        if self.has_server {
            doc.insert(
                "servers".into(),
                json!({ SERVER_NAME: server_json(server, v3) }),
            );
        }
        doc.insert("channels".into(), Value::Object(self.channels));
        if v3 {
            doc.insert("operations".into(), Value::Object(self.operations));
        }
        let mut components = Map::new();
        if !self.messages.is_empty() {
            components.insert("messages".into(), Value::Object(self.messages));
        }
        if !self.schemas.is_empty() {
            components.insert("schemas".into(), Value::Object(self.schemas));
        }
        if !server.security.is_empty() && self.has_server {
            let schemes = server
                .security
                .iter()
                .map(|s| (s.name.clone(), s.to_json()))
                .collect();
            components.insert("securitySchemes".into(), Value::Object(schemes));
        }
        if !components.is_empty() {
            doc.insert("components".into(), Value::Object(components));
        }
        Value::Object(doc)
    }
}

/// How a channel's messages are encoded, as the document says it: their content type and, for
/// formats with schemas of their own, that schema.
struct Encoding {
    content_type: Option<&'static str>,
    format: Option<FormatSchema>,
}

impl Encoding {
    /// From a schema given in the configuration, else the codec's: JSON when neither.
    fn of(given: Option<&FormatSchema>, codec: Option<&CodecRef>) -> Self {
        let format = given.cloned().or_else(|| codec.and_then(|c| c.schema()));
        let content_type = format
            .as_ref()
            .map(|f| f.content_type)
            .or_else(|| codec.map(|c| c.content_type()));
        Self {
            content_type,
            format,
        }
    }
}

/// Gives every property of every object schema a title (`user_id` -> `User Id`), as pydantic
/// does, unless it has one or is a bare `$ref`.
fn add_field_titles(schema: &mut Value) {
    match schema {
        Value::Object(object) => {
            if let Some(Value::Object(properties)) = object.get_mut("properties") {
                for (name, property) in properties.iter_mut() {
                    if let Value::Object(p) = property {
                        if !p.contains_key("title") && !p.contains_key("$ref") {
                            p.insert("title".into(), json!(field_title(name)));
                        }
                    }
                }
            }
            for value in object.values_mut() {
                add_field_titles(value);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(add_field_titles),
        _ => {}
    }
}

fn tags_json(tags: &[Tag]) -> Value {
    tags.iter()
        .map(|tag| {
            let mut t = json!({ "name": tag.name });
            if let Some(description) = &tag.description {
                t["description"] = json!(description);
            }
            t
        })
        .collect()
}

fn external_docs_json(docs: &ExternalDocs) -> Value {
    let mut d = json!({ "url": docs.url });
    if let Some(description) = &docs.description {
        d["description"] = json!(description);
    }
    d
}

fn info_json(info: &AppInfo, v3: bool) -> Value {
    let mut out = json!({ "title": info.title, "version": info.version });
    if let Some(description) = &info.description {
        out["description"] = json!(description);
    }
    if let Some(terms) = &info.terms_of_service {
        out["termsOfService"] = json!(terms);
    }
    if let Some(contact) = &info.contact {
        let mut c = json!({ "name": contact.name });
        if let Some(url) = &contact.url {
            c["url"] = json!(url);
        }
        if let Some(email) = &contact.email {
            c["email"] = json!(email);
        }
        out["contact"] = c;
    }
    if let Some(license) = &info.license {
        let mut l = json!({ "name": license.name });
        if let Some(url) = &license.url {
            l["url"] = json!(url);
        }
        out["license"] = l;
    }
    if v3 {
        if !info.tags.is_empty() {
            out["tags"] = tags_json(&info.tags);
        }
        if let Some(docs) = &info.external_docs {
            out["externalDocs"] = external_docs_json(docs);
        }
    }
    out
}

fn server_json(server: &ServerInfo, v3: bool) -> Value {
    let hosts = server.hosts.join(",");
    let mut out = if v3 {
        json!({ "host": hosts, "protocol": server.protocol })
    } else {
        json!({ "url": hosts, "protocol": server.protocol })
    };
    if !server.protocol_version.is_empty() {
        out["protocolVersion"] = json!(server.protocol_version);
    }
    if let Some(description) = &server.description {
        out["description"] = json!(description);
    }
    if !server.security.is_empty() {
        out["security"] = if v3 {
            server
                .security
                .iter()
                .map(|s| reference("#/components/securitySchemes/", &s.name))
                .collect()
        } else {
            server
                .security
                .iter()
                .map(|s| json!({ s.name.clone(): [] }))
                .collect()
        };
    }
    out
}

#[cfg(test)]
mod tests;

/// The parameters of a channel address such as `orders-{region}` (`None` without any).
fn address_parameters(address: &str) -> Option<Value> {
    let mut parameters = Map::new();
    let mut rest = address;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        let name = &rest[open + 1..open + close];
        parameters.insert(
            name.to_owned(),
            json!({ "description": format!("The `{name}` part of the topic name.") }),
        );
        rest = &rest[open + close + 1..];
    }
    (!parameters.is_empty()).then_some(Value::Object(parameters))
}
