//! The registry's REST API (Confluent's, as Confluent Schema Registry, Apicurio's
//! `/apis/ccompat/v7` and Redpanda serve it), with its caches: schemas by id for the life of
//! the process, latest versions for a time to live, registrations by subject and schema.

use faststream_core::codec::AvroReader;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::OnceCell;

/// The registry's media type, sent as `Accept` and `Content-Type`.
const MEDIA_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// Why a registry request failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The registry answered that the schema id, subject or version does not exist (404).
    #[error("not found in the schema registry: {0}")]
    NotFound(String),
    /// The registry refused the request for what it asked (4xx: an invalid or incompatible
    /// schema, a bad subject).
    #[error("the schema registry refused {what}: HTTP {status}: {message}")]
    Refused {
        /// What was asked.
        what: String,
        /// The HTTP status.
        status: u16,
        /// The registry's message.
        message: String,
    },
    /// The registry could not be reached or did not answer properly for now: a refused
    /// connection, a timeout, a 5xx, a 429, or refused credentials (401/403: a configuration
    /// to fix, never a fault of the records).
    #[error("the schema registry is unavailable: {0}")]
    Unavailable(String),
    /// The registry's answer or a schema it holds is not what this client understands.
    #[error("invalid schema registry answer: {0}")]
    Invalid(String),
}

impl RegistryError {
    /// Whether waiting may help: the registry is unreachable or failing, not the request.
    pub fn is_outage(&self) -> bool {
        matches!(self, RegistryError::Unavailable(_))
    }
}

/// A password, shown as `***` by `Debug`.
#[derive(Clone)]
struct Password(String);

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A schema's format, as the registry names it (`schemaType`; absent means Avro).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaType {
    /// Apache Avro.
    Avro,
    /// JSON Schema.
    Json,
    /// Protocol Buffers.
    Protobuf,
}

impl SchemaType {
    /// The registry's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            SchemaType::Avro => "AVRO",
            SchemaType::Json => "JSON",
            SchemaType::Protobuf => "PROTOBUF",
        }
    }

    fn parse(name: Option<&str>) -> Result<Self, RegistryError> {
        match name.unwrap_or("AVRO") {
            "AVRO" => Ok(SchemaType::Avro),
            "JSON" => Ok(SchemaType::Json),
            "PROTOBUF" => Ok(SchemaType::Protobuf),
            other => Err(RegistryError::Invalid(format!(
                "unknown schemaType `{other}`"
            ))),
        }
    }
}

/// A schema the registry holds under an id.
#[derive(Debug)]
pub struct RegisteredSchema {
    /// Its id (what framed records carry).
    pub id: u32,
    /// Its format.
    pub schema_type: SchemaType,
    /// Its text (Avro's JSON, a JSON Schema, a `.proto` file).
    pub schema: String,
    /// The schemas it imports (Confluent's schema references: a `.proto` file's imports).
    pub references: Vec<SchemaReference>,
    avro: OnceLock<Result<AvroReader, String>>,
}

impl RegisteredSchema {
    fn new(
        id: u32,
        schema_type: SchemaType,
        schema: String,
        references: Vec<SchemaReference>,
    ) -> Self {
        Self {
            id,
            schema_type,
            schema,
            references,
            avro: OnceLock::new(),
        }
    }

    /// The Avro schema, parsed once; an error when it is not Avro or does not parse.
    pub fn avro(&self) -> Result<&apache_avro::Schema, String> {
        self.avro_reader().map(AvroReader::schema)
    }

    /// The Avro schema made ready to read datums with, once; an error when it is not Avro or
    /// does not parse.
    pub fn avro_reader(&self) -> Result<&AvroReader, String> {
        if self.schema_type != SchemaType::Avro {
            return Err(format!(
                "schema {} is {}, not AVRO",
                self.id,
                self.schema_type.as_str()
            ));
        }
        self.avro
            .get_or_init(|| {
                apache_avro::Schema::parse_str(&self.schema)
                    .map(AvroReader::new)
                    .map_err(|e| format!("schema {} does not parse as Avro: {e}", self.id))
            })
            .as_ref()
            .map_err(Clone::clone)
    }
}

/// The latest version of a subject, as fetched at `fetched`.
#[derive(Debug, Clone)]
struct Latest {
    schema: Arc<RegisteredSchema>,
    fetched: Instant,
}

/// How to reach a registry: its URL, credentials, TLS and time limits
/// ([`SchemaRegistry::builder`]).
#[derive(Debug, Clone)]
pub struct RegistryBuilder {
    url: String,
    user: Option<(String, Password)>,
    ca_pem: Option<Vec<u8>>,
    timeout: Duration,
    latest_ttl: Duration,
}

impl RegistryBuilder {
    /// HTTP basic authentication (Confluent Cloud's API key and secret). The password never
    /// shows in `Debug` output or logs.
    pub fn basic_auth(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.user = Some((user.into(), Password(password.into())));
        self
    }

    /// Trusts the CA certificate(s) in `pem` for an `https://` registry, besides the
    /// system's.
    pub fn ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.ca_pem = Some(pem.into());
        self
    }

    /// The time limit of one request (5 s by default); a request over it is an outage.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long a subject's latest version is cached (5 min by default). Schemas by id are
    /// cached for the life of the process: an id never changes its schema.
    pub fn latest_ttl(mut self, ttl: Duration) -> Self {
        self.latest_ttl = ttl;
        self
    }

    /// The client; fails when the CA certificate does not parse or TLS cannot start.
    pub fn build(self) -> Result<SchemaRegistry, RegistryError> {
        let mut http = reqwest::Client::builder()
            .timeout(self.timeout)
            .connect_timeout(self.timeout);
        if let Some(pem) = &self.ca_pem {
            for cert in reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| RegistryError::Invalid(format!("CA certificate: {e}")))?
            {
                http = http.add_root_certificate(cert);
            }
        }
        let http = http
            .build()
            .map_err(|e| RegistryError::Invalid(format!("HTTP client: {e}")))?;
        Ok(SchemaRegistry {
            inner: Arc::new(Inner {
                url: self.url.trim_end_matches('/').to_owned(),
                user: self.user,
                latest_ttl: self.latest_ttl,
                http,
                by_id: RwLock::default(),
                latest: RwLock::default(),
                registered: RwLock::default(),
                requests: AtomicU64::new(0),
            }),
        })
    }
}

/// A Confluent-compatible schema registry client with its caches; cheap to clone (clones
/// share the caches).
///
/// ```no_run
/// # async fn demo() -> Result<(), faststream_registry::RegistryError> {
/// use faststream_registry::SchemaRegistry;
/// let registry = SchemaRegistry::builder("https://registry.example.com")
///     .basic_auth("api-key", "api-secret")
///     .build()?;
/// let schema = registry.schema_by_id(1).await?;
/// println!("{}", schema.schema);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SchemaRegistry {
    inner: Arc<Inner>,
}

struct Inner {
    url: String,
    user: Option<(String, Password)>,
    latest_ttl: Duration,
    http: reqwest::Client,
    /// Every id asked for: one fetch each, shared by whoever asks while it runs; a failed
    /// fetch leaves its cell empty, so the next ask fetches again.
    by_id: RwLock<HashMap<u32, Arc<OnceCell<Arc<RegisteredSchema>>>>>,
    latest: RwLock<HashMap<String, Latest>>,
    registered: RwLock<HashMap<(String, String), u32>>,
    requests: AtomicU64,
}

impl fmt::Debug for SchemaRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SchemaRegistry")
            .field("url", &self.inner.url)
            .field("user", &self.inner.user)
            .field("requests", &self.requests())
            .finish_non_exhaustive()
    }
}

impl SchemaRegistry {
    /// A client of the registry at `url` (Confluent's API root, e.g.
    /// `http://127.0.0.1:8081/apis/ccompat/v7` for Apicurio), without credentials.
    pub fn new(url: impl Into<String>) -> Result<Self, RegistryError> {
        Self::builder(url).build()
    }

    /// A client of the registry at `url`, with credentials, TLS or time limits to set.
    pub fn builder(url: impl Into<String>) -> RegistryBuilder {
        RegistryBuilder {
            url: url.into(),
            user: None,
            ca_pem: None,
            timeout: Duration::from_secs(5),
            latest_ttl: Duration::from_secs(300),
        }
    }

    /// The API root this client talks to.
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// How long a subject's latest version is cached.
    pub fn latest_ttl(&self) -> std::time::Duration {
        self.inner.latest_ttl
    }

    /// How many HTTP requests this client (and its clones) made: what the cache saves.
    pub fn requests(&self) -> u64 {
        self.inner.requests.load(Ordering::Relaxed)
    }

    /// The schema of `id`, when it was fetched already (no request, no allocation).
    pub fn cached(&self, id: u32) -> Option<Arc<RegisteredSchema>> {
        let by_id = self.inner.by_id.read().unwrap_or_else(|e| e.into_inner());
        by_id.get(&id).and_then(|cell| cell.get().cloned())
    }

    /// The schema of `id`: from the cache, or fetched once (concurrent asks share the
    /// fetch) and cached for the life of the process.
    pub async fn schema_by_id(&self, id: u32) -> Result<Arc<RegisteredSchema>, RegistryError> {
        let cell = {
            let mut by_id = self.inner.by_id.write().unwrap_or_else(|e| e.into_inner());
            Arc::clone(by_id.entry(id).or_default())
        };
        cell.get_or_try_init(|| async {
            let body: SchemaBody = self
                .get(&format!("/schemas/ids/{id}"), &format!("schema id {id}"))
                .await?;
            let schema_type = SchemaType::parse(body.schema_type.as_deref())?;
            Ok(Arc::new(RegisteredSchema::new(
                id,
                schema_type,
                body.schema,
                body.references,
            )))
        })
        .await
        .cloned()
    }

    /// The latest version of `subject`, cached for the builder's `latest_ttl`.
    pub async fn latest(&self, subject: &str) -> Result<Arc<RegisteredSchema>, RegistryError> {
        if let Some(latest) = self.fresh_latest(subject) {
            return Ok(latest);
        }
        let body: VersionBody = self
            .get(
                &format!("/subjects/{}/versions/latest", encode_path(subject)),
                &format!("the latest version of subject `{subject}`"),
            )
            .await?;
        let schema_type = SchemaType::parse(body.schema_type.as_deref())?;
        let schema = self.remember(body.id, schema_type, body.schema, body.references);
        let mut latest = self.inner.latest.write().unwrap_or_else(|e| e.into_inner());
        latest.insert(
            subject.to_owned(),
            Latest {
                schema: Arc::clone(&schema),
                fetched: Instant::now(),
            },
        );
        Ok(schema)
    }

    fn fresh_latest(&self, subject: &str) -> Option<Arc<RegisteredSchema>> {
        let latest = self.inner.latest.read().unwrap_or_else(|e| e.into_inner());
        latest
            .get(subject)
            .filter(|l| l.fetched.elapsed() < self.inner.latest_ttl)
            .map(|l| Arc::clone(&l.schema))
    }

    /// Registers `schema` under `subject` (or finds it registered there) and returns its id;
    /// cached, so a schema is registered once per process.
    pub async fn register(
        &self,
        subject: &str,
        schema_type: SchemaType,
        schema: &str,
    ) -> Result<u32, RegistryError> {
        self.register_with_references(subject, schema_type, schema, &[])
            .await
    }

    /// [`SchemaRegistry::register`] for a schema that imports others (a `.proto` file's
    /// imports): each as a [`SchemaReference`] to a version registered under its own subject.
    pub async fn register_with_references(
        &self,
        subject: &str,
        schema_type: SchemaType,
        schema: &str,
        references: &[SchemaReference],
    ) -> Result<u32, RegistryError> {
        let key = (subject.to_owned(), schema.to_owned());
        if let Some(id) = self
            .inner
            .registered
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok(*id);
        }
        let body: IdBody = self
            .post_schema(
                &format!("/subjects/{}/versions", encode_path(subject)),
                &format!("registering a schema under subject `{subject}`"),
                schema_type,
                schema,
                references,
            )
            .await?;
        self.remember(body.id, schema_type, schema.to_owned(), references.to_vec());
        self.inner
            .registered
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, body.id);
        Ok(body.id)
    }

    /// The version number `schema` has under `subject` (`POST /subjects/{subject}`), which a
    /// [`SchemaReference`] to it names.
    pub async fn version_of(
        &self,
        subject: &str,
        schema_type: SchemaType,
        schema: &str,
        references: &[SchemaReference],
    ) -> Result<u32, RegistryError> {
        let body: VersionBody = self
            .post_schema(
                &format!("/subjects/{}", encode_path(subject)),
                &format!("the version of a schema under subject `{subject}`"),
                schema_type,
                schema,
                references,
            )
            .await?;
        Ok(body.version)
    }

    /// The registry's own verdict on `schema` as the next version of `subject`, under the
    /// subject's compatibility level (`POST /compatibility/subjects/{subject}/versions/latest
    /// ?verbose=true`): whether it is compatible, and the registry's messages (Confluent's
    /// name the field; Apicurio sends none).
    pub async fn check_compatibility(
        &self,
        subject: &str,
        schema_type: SchemaType,
        schema: &str,
        references: &[SchemaReference],
    ) -> Result<Compatibility, RegistryError> {
        self.post_schema(
            &format!(
                "/compatibility/subjects/{}/versions/latest?verbose=true",
                encode_path(subject)
            ),
            &format!("the compatibility check of subject `{subject}`"),
            schema_type,
            schema,
            references,
        )
        .await
    }

    /// The compatibility level that holds for `subject` (its own, else the registry's
    /// default): `BACKWARD`, `FULL_TRANSITIVE`, `NONE`...
    pub async fn compatibility_level(&self, subject: &str) -> Result<String, RegistryError> {
        let body: ConfigBody = self
            .get(
                &format!("/config/{}?defaultToGlobal=true", encode_path(subject)),
                &format!("the compatibility level of subject `{subject}`"),
            )
            .await?;
        Ok(body.compatibility_level)
    }

    /// Sets `subject`'s compatibility level (`BACKWARD`, `FULL_TRANSITIVE`, `NONE`...):
    /// Apicurio enforces compatibility only on subjects that have one.
    pub async fn set_compatibility_level(
        &self,
        subject: &str,
        level: &str,
    ) -> Result<(), RegistryError> {
        let request = self
            .request(
                reqwest::Method::PUT,
                &format!("/config/{}", encode_path(subject)),
            )
            .header(reqwest::header::CONTENT_TYPE, MEDIA_TYPE)
            .body(serde_json::json!({ "compatibility": level }).to_string());
        let what = format!("setting the compatibility level of subject `{subject}`");
        let _: serde_json::Value = self.send(request, &what).await?;
        Ok(())
    }

    /// Puts a schema learnt from another answer into the by-id cache.
    fn remember(
        &self,
        id: u32,
        schema_type: SchemaType,
        schema: String,
        references: Vec<SchemaReference>,
    ) -> Arc<RegisteredSchema> {
        let mut by_id = self.inner.by_id.write().unwrap_or_else(|e| e.into_inner());
        let cell = by_id.entry(id).or_default();
        if let Some(known) = cell.get() {
            return Arc::clone(known);
        }
        let schema = Arc::new(RegisteredSchema::new(id, schema_type, schema, references));
        // A fetch of the same id racing this one sets the same schema.
        let _ = cell.set(Arc::clone(&schema));
        schema
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut request = self
            .inner
            .http
            .request(method, format!("{}{path}", self.inner.url))
            .header(reqwest::header::ACCEPT, MEDIA_TYPE);
        if let Some((user, password)) = &self.inner.user {
            request = request.basic_auth(user, Some(&password.0));
        }
        request
    }

    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        what: &str,
    ) -> Result<T, RegistryError> {
        self.send(self.request(reqwest::Method::GET, path), what)
            .await
    }

    /// POSTs a schema to `path`: `schemaType` unless Avro (the default), `references` when
    /// it has any.
    async fn post_schema<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        what: &str,
        schema_type: SchemaType,
        schema: &str,
        references: &[SchemaReference],
    ) -> Result<T, RegistryError> {
        let mut body = serde_json::json!({ "schema": schema });
        if schema_type != SchemaType::Avro {
            body["schemaType"] = schema_type.as_str().into();
        }
        if !references.is_empty() {
            body["references"] = serde_json::json!(references);
        }
        let request = self
            .request(reqwest::Method::POST, path)
            .header(reqwest::header::CONTENT_TYPE, MEDIA_TYPE)
            .body(body.to_string());
        self.send(request, what).await
    }

    async fn send<T: serde::de::DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        what: &str,
    ) -> Result<T, RegistryError> {
        self.inner.requests.fetch_add(1, Ordering::Relaxed);
        let unavailable = |e: reqwest::Error| {
            // reqwest's error names the URL, never the credentials (they are a header).
            RegistryError::Unavailable(format!("{what} at {}: {e}", self.inner.url))
        };
        let response = request.send().await.map_err(unavailable)?;
        let status = response.status();
        let body = response.bytes().await.map_err(unavailable)?;
        if status.is_success() {
            return serde_json::from_slice(&body)
                .map_err(|e| RegistryError::Invalid(format!("{what}: {e}")));
        }
        let message = serde_json::from_slice::<ErrorBody>(&body)
            .map(|e| e.message)
            .unwrap_or_else(|_| String::from_utf8_lossy(&body).into_owned());
        let code = status.as_u16();
        Err(match code {
            404 => RegistryError::NotFound(format!("{what}: {message}")),
            401 | 403 | 408 | 429 | 500..=599 => RegistryError::Unavailable(format!(
                "{what} at {}: HTTP {code}: {message}",
                self.inner.url
            )),
            _ => RegistryError::Refused {
                what: what.to_owned(),
                status: code,
                message,
            },
        })
    }
}

/// A subject in a URL path: the characters a subject may hold that a path may not, escaped.
fn encode_path(subject: &str) -> String {
    let mut out = String::with_capacity(subject.len());
    for byte in subject.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[derive(serde::Deserialize)]
struct SchemaBody {
    schema: String,
    #[serde(rename = "schemaType")]
    schema_type: Option<String>,
    #[serde(default)]
    references: Vec<SchemaReference>,
}

/// A schema another one imports (Confluent's schema references): `name` as the importing
/// schema spells it (a `.proto` import path), found at `version` of `subject`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SchemaReference {
    /// The import's name in the importing schema.
    pub name: String,
    /// The subject it is registered under.
    pub subject: String,
    /// Its version there.
    pub version: u32,
}

#[derive(serde::Deserialize)]
struct VersionBody {
    id: u32,
    #[serde(default)]
    version: u32,
    schema: String,
    #[serde(rename = "schemaType")]
    schema_type: Option<String>,
    #[serde(default)]
    references: Vec<SchemaReference>,
}

#[derive(serde::Deserialize)]
struct IdBody {
    id: u32,
}

/// The registry's verdict on a schema ([`SchemaRegistry::check_compatibility`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct Compatibility {
    /// Whether the schema may be the subject's next version.
    pub is_compatible: bool,
    /// Why not, in the registry's words (empty when it gives none).
    #[serde(default)]
    pub messages: Vec<String>,
}

#[derive(serde::Deserialize)]
struct ConfigBody {
    #[serde(rename = "compatibilityLevel")]
    compatibility_level: String,
}

#[derive(serde::Deserialize)]
struct ErrorBody {
    message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_never_shows_in_debug_output() {
        let builder = SchemaRegistry::builder("http://127.0.0.1:1").basic_auth("key", "hunter2");
        let registry = builder.clone().build().unwrap();
        for shown in [format!("{builder:?}"), format!("{registry:?}")] {
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(shown.contains("***") && shown.contains("key"), "{shown}");
        }
    }

    #[test]
    fn subjects_are_escaped_in_paths() {
        assert_eq!(encode_path("orders-value"), "orders-value");
        assert_eq!(encode_path("a/b c"), "a%2Fb%20c");
    }

    #[tokio::test]
    async fn basic_auth_goes_in_a_header_and_the_password_never_in_an_error() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/apis/ccompat/v7", listener.local_addr().unwrap());
        // A listener that records the request and refuses the credentials.
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = vec![0; 4096];
            let read = socket.read(&mut request).await.unwrap();
            let body = r#"{"error_code":40101,"message":"bad credentials"}"#;
            let answer = format!(
                "HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            socket.write_all(answer.as_bytes()).await.unwrap();
            String::from_utf8_lossy(&request[..read]).into_owned()
        });
        let registry = SchemaRegistry::builder(url)
            .basic_auth("user", "s3cret")
            .build()
            .unwrap();
        let err = registry.schema_by_id(3).await.unwrap_err();
        let request = server.await.unwrap().to_ascii_lowercase();
        assert!(
            request.starts_with("get /apis/ccompat/v7/schemas/ids/3 "),
            "{request}"
        );
        // base64("user:s3cret")
        assert!(
            request.contains("authorization: basic dxnlcjpzm2nyzxq="),
            "{request}"
        );
        assert!(
            err.is_outage(),
            "refused credentials are fixed by configuration, not by dead-lettering: {err}"
        );
        for shown in [err.to_string(), format!("{err:?}"), format!("{registry:?}")] {
            assert!(!shown.contains("s3cret"), "{shown}");
        }
        assert!(err.to_string().contains("401"), "{err}");
    }

    #[tokio::test]
    async fn a_refused_connection_is_an_outage() {
        // Port 1 on the loopback: nothing listens there.
        let registry = SchemaRegistry::builder("http://127.0.0.1:1")
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        let err = registry.schema_by_id(1).await.unwrap_err();
        assert!(err.is_outage(), "{err}");
        assert!(registry.cached(1).is_none(), "a failure is not cached");
        assert_eq!(registry.requests(), 1);
    }
}
