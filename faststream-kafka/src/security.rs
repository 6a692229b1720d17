//! Typed security settings, mirroring FastStream's security classes (`BaseSecurity`,
//! `SASLPlaintext`, `SASLScram256`, `SASLScram512`, `SASLOAuthBearer`, `SASLGSSAPI`).
//!
//! A [`Security`] is handed to [`KafkaBroker::security`](crate::KafkaBroker::security). It
//! becomes librdkafka properties (`security.protocol`, `sasl.*`, `ssl.*`) on every client the
//! broker creates, and the AsyncAPI document's server protocol (`kafka` or `kafka-secure`) and
//! security scheme. Passwords, private keys and tokens are [`Secret`]s: their `Debug` output
//! is redacted, so neither a `{:?}` of the settings nor a log line shows them.
//!
//! ```
//! use faststream_kafka::{KafkaBroker, Security, Tls};
//!
//! // SCRAM-SHA-512 over TLS, trusting the cluster's own CA.
//! let broker = KafkaBroker::new("broker-1:9095")
//!     .security(Security::scram512("alice", "alice-secret").with_ssl(Tls::new().ca_file("ca.pem")));
//! assert!(!format!("{broker:?}").contains("alice-secret"));
//! ```

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// A password, private key or token: its `Debug` output is `Secret("***")`, and it has no
/// `Display`, so it never ends up in a log line by accident. [`Secret::expose`] gives the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret value itself (to hand it to the client configuration).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(\"***\")")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

/// Where a certificate comes from: a file, or PEM text.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pem {
    File(PathBuf),
    Text(String),
}

/// Where a private key comes from: a file, or PEM text (a secret).
#[derive(Debug, Clone, PartialEq, Eq)]
enum KeyPem {
    File(PathBuf),
    Text(Secret),
}

/// TLS settings (FastStream's `ssl_context`): which CAs to trust, an optional client
/// certificate (mutual TLS), and whether to verify the broker's certificate and host name.
///
/// `Tls::new()` trusts the system's CA store and verifies both, which is what managed clusters
/// (Confluent Cloud, MSK, Aiven) need.
///
/// ```
/// use faststream_kafka::Tls;
///
/// let mutual = Tls::new()
///     .ca_file("/etc/kafka/ca.pem")
///     .client_cert_files("/etc/kafka/client.pem", "/etc/kafka/client.key")
///     .key_password("changeit");
/// assert!(!format!("{mutual:?}").contains("changeit"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    ca: Option<Pem>,
    cert: Option<Pem>,
    key: Option<KeyPem>,
    key_password: Option<Secret>,
    verify_certificate: bool,
    verify_hostname: bool,
}

impl Default for Tls {
    fn default() -> Self {
        Self::new()
    }
}

impl Tls {
    /// Trust the system CA store; verify the broker's certificate and host name.
    pub fn new() -> Self {
        Self {
            ca: None,
            cert: None,
            key: None,
            key_password: None,
            verify_certificate: true,
            verify_hostname: true,
        }
    }

    /// Trust the CA certificate(s) in this PEM file (`ssl.ca.location`).
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca = Some(Pem::File(path.into()));
        self
    }

    /// Trust the CA certificate(s) in this PEM text (`ssl.ca.pem`).
    pub fn ca_pem(mut self, pem: impl Into<String>) -> Self {
        self.ca = Some(Pem::Text(pem.into()));
        self
    }

    /// Present this client certificate and private key, as PEM files (`ssl.certificate.location`,
    /// `ssl.key.location`).
    pub fn client_cert_files(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.cert = Some(Pem::File(cert.into()));
        self.key = Some(KeyPem::File(key.into()));
        self
    }

    /// Present this client certificate and private key, as PEM text (`ssl.certificate.pem`,
    /// `ssl.key.pem`).
    pub fn client_cert_pem(mut self, cert: impl Into<String>, key: impl Into<Secret>) -> Self {
        self.cert = Some(Pem::Text(cert.into()));
        self.key = Some(KeyPem::Text(key.into()));
        self
    }

    /// The password of an encrypted private key (`ssl.key.password`).
    pub fn key_password(mut self, password: impl Into<Secret>) -> Self {
        self.key_password = Some(password.into());
        self
    }

    /// Accept any broker certificate and host name: encrypted, but not authenticated. For
    /// development clusters only (FastStream: an `ssl_context` with `CERT_NONE`).
    pub fn no_verify(mut self) -> Self {
        self.verify_certificate = false;
        self.verify_hostname = false;
        self
    }

    /// Verify the broker's certificate chain but not that it names the host connected to
    /// (`ssl.endpoint.identification.algorithm=none`).
    pub fn no_hostname_verification(mut self) -> Self {
        self.verify_hostname = false;
        self
    }

    /// Whether a client certificate is presented (mutual TLS).
    pub fn has_client_cert(&self) -> bool {
        self.cert.is_some()
    }

    fn properties(&self, out: &mut Vec<(&'static str, String)>) {
        match &self.ca {
            Some(Pem::File(path)) => out.push(("ssl.ca.location", path.display().to_string())),
            Some(Pem::Text(pem)) => out.push(("ssl.ca.pem", pem.clone())),
            None => {}
        }
        match &self.cert {
            Some(Pem::File(path)) => {
                out.push(("ssl.certificate.location", path.display().to_string()))
            }
            Some(Pem::Text(pem)) => out.push(("ssl.certificate.pem", pem.clone())),
            None => {}
        }
        match &self.key {
            Some(KeyPem::File(path)) => out.push(("ssl.key.location", path.display().to_string())),
            Some(KeyPem::Text(pem)) => out.push(("ssl.key.pem", pem.expose().to_owned())),
            None => {}
        }
        if let Some(password) = &self.key_password {
            out.push(("ssl.key.password", password.expose().to_owned()));
        }
        out.push((
            "enable.ssl.certificate.verification",
            self.verify_certificate.to_string(),
        ));
        out.push((
            "ssl.endpoint.identification.algorithm",
            if self.verify_hostname {
                "https"
            } else {
                "none"
            }
            .to_owned(),
        ));
    }
}

/// A SASL mechanism, as librdkafka's `sasl.mechanism` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SaslMechanism {
    /// `PLAIN`: user name and password, sent as they are (use TLS outside a test cluster).
    Plain,
    /// `SCRAM-SHA-256`.
    ScramSha256,
    /// `SCRAM-SHA-512`.
    ScramSha512,
    /// `OAUTHBEARER`, with tokens from a [`TokenProvider`].
    OAuthBearer,
    /// `GSSAPI` (Kerberos).
    Gssapi,
}

impl SaslMechanism {
    /// The librdkafka spelling, e.g. `SCRAM-SHA-512`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
            Self::OAuthBearer => "OAUTHBEARER",
            Self::Gssapi => "GSSAPI",
        }
    }
}

impl fmt::Display for SaslMechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An OAuth bearer token for SASL `OAUTHBEARER`, with the principal it names and when it
/// expires (librdkafka asks for a new one at 80 % of its lifetime).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthToken {
    /// The token (usually a JWT).
    pub token: Secret,
    /// The Kafka principal the token stands for.
    pub principal: String,
    /// When the token stops being valid.
    pub expires_at: SystemTime,
}

impl OAuthToken {
    /// A token for `principal` valid for `lifetime` from now.
    pub fn new(token: impl Into<Secret>, principal: impl Into<String>, lifetime: Duration) -> Self {
        Self {
            token: token.into(),
            principal: principal.into(),
            expires_at: SystemTime::now() + lifetime,
        }
    }
}

/// The error a [`TokenProvider`] returns.
pub type TokenError = Box<dyn std::error::Error + Send + Sync>;

/// Gives the OAuth bearer tokens for SASL `OAUTHBEARER` (FastStream's `SASLOAuthBearer`).
///
/// librdkafka calls it from its own threads when a client starts and again before the token
/// expires, on every client the broker creates (producer, consumers, admin and reader
/// clients). It may block (e.g. on an HTTP call to the identity provider) but not on the tokio
/// runtime. A closure `Fn() -> Result<OAuthToken, E>` is a provider.
///
/// ```
/// use faststream_kafka::{KafkaBroker, OAuthToken, Security, Tls};
/// use std::time::Duration;
///
/// let broker = KafkaBroker::new("broker:9093").security(
///     Security::oauthbearer(|| -> Result<OAuthToken, std::io::Error> {
///         // Fetch a token from the identity provider here.
///         Ok(OAuthToken::new("eyJhbGciOi...", "service-a", Duration::from_secs(3600)))
///     })
///     .with_ssl(Tls::new()),
/// );
/// ```
pub trait TokenProvider: Send + Sync + 'static {
    /// A fresh token, or why there is none (the client retries, and reports the error).
    fn token(&self) -> Result<OAuthToken, TokenError>;
}

impl<F, E> TokenProvider for F
where
    F: Fn() -> Result<OAuthToken, E> + Send + Sync + 'static,
    E: Into<TokenError>,
{
    fn token(&self) -> Result<OAuthToken, TokenError> {
        self().map_err(Into::into)
    }
}

/// How clients authenticate.
#[derive(Clone)]
enum Auth {
    None,
    Password {
        mechanism: SaslMechanism,
        username: String,
        password: Secret,
    },
    OAuthBearer(Arc<dyn TokenProvider>),
    Gssapi {
        service_name: String,
        principal: Option<String>,
        keytab: Option<PathBuf>,
    },
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::None => f.write_str("None"),
            Self::Password {
                mechanism,
                username,
                password,
            } => f
                .debug_struct("Password")
                .field("mechanism", mechanism)
                .field("username", username)
                .field("password", password)
                .finish(),
            Self::OAuthBearer(_) => f.write_str("OAuthBearer(<token provider>)"),
            Self::Gssapi {
                service_name,
                principal,
                keytab,
            } => f
                .debug_struct("Gssapi")
                .field("service_name", service_name)
                .field("principal", principal)
                .field("keytab", keytab)
                .finish(),
        }
    }
}

/// How the broker's clients connect: plaintext, TLS, SASL, or SASL over TLS.
///
/// | FastStream | here | `security.protocol` |
/// |---|---|---|
/// | none | [`Security::plaintext`] | `PLAINTEXT` |
/// | `BaseSecurity(ssl_context)` | [`Security::ssl`] | `SSL` |
/// | `SASLPlaintext(user, pw)` | [`Security::plain`] | `SASL_PLAINTEXT` |
/// | `SASLScram256` / `SASLScram512` | [`Security::scram256`] / [`Security::scram512`] | `SASL_PLAINTEXT` |
/// | `SASLOAuthBearer` | [`Security::oauthbearer`] | `SASL_PLAINTEXT` |
/// | `SASLGSSAPI` | [`Security::gssapi`] (Kerberos) | `SASL_PLAINTEXT` |
/// | any SASL with `ssl_context` | `.with_ssl(Tls)` | `SASL_SSL` |
///
/// ```
/// use faststream_kafka::{Security, Tls};
///
/// let confluent = Security::plain("API_KEY", "API_SECRET").with_ssl(Tls::new());
/// assert_eq!(confluent.protocol(), "SASL_SSL");
/// assert_eq!(Security::ssl(Tls::new().ca_file("ca.pem")).protocol(), "SSL");
/// assert_eq!(Security::scram256("u", "p").protocol(), "SASL_PLAINTEXT");
/// assert!(!format!("{confluent:?}").contains("API_SECRET"));
/// ```
#[derive(Debug, Clone)]
pub struct Security {
    auth: Auth,
    tls: Option<Tls>,
}

impl Default for Security {
    fn default() -> Self {
        Self::plaintext()
    }
}

impl Security {
    /// No encryption, no authentication (`PLAINTEXT`, the default).
    pub fn plaintext() -> Self {
        Self {
            auth: Auth::None,
            tls: None,
        }
    }

    /// TLS without SASL (`SSL`): the broker is authenticated by its certificate, the client by
    /// its certificate when `tls` has one.
    pub fn ssl(tls: Tls) -> Self {
        Self {
            auth: Auth::None,
            tls: Some(tls),
        }
    }

    fn password(mechanism: SaslMechanism, username: String, password: Secret) -> Self {
        Self {
            auth: Auth::Password {
                mechanism,
                username,
                password,
            },
            tls: None,
        }
    }

    /// SASL `PLAIN` with a user name and password (Confluent Cloud: API key and secret).
    pub fn plain(username: impl Into<String>, password: impl Into<Secret>) -> Self {
        Self::password(SaslMechanism::Plain, username.into(), password.into())
    }

    /// SASL `SCRAM-SHA-256`.
    pub fn scram256(username: impl Into<String>, password: impl Into<Secret>) -> Self {
        Self::password(SaslMechanism::ScramSha256, username.into(), password.into())
    }

    /// SASL `SCRAM-SHA-512`.
    pub fn scram512(username: impl Into<String>, password: impl Into<Secret>) -> Self {
        Self::password(SaslMechanism::ScramSha512, username.into(), password.into())
    }

    /// SASL `OAUTHBEARER`, tokens from `provider` (see [`TokenProvider`]).
    pub fn oauthbearer(provider: impl TokenProvider) -> Self {
        Self {
            auth: Auth::OAuthBearer(Arc::new(provider)),
            tls: None,
        }
    }

    /// SASL `GSSAPI` (Kerberos) for the brokers' `service_name` (usually `kafka`), with the
    /// ticket already in the Kerberos credential cache (`kinit` run outside the app, or a
    /// sidecar that renews it); [`Security::kerberos_keytab`] logs in from a keytab instead.
    /// The Kerberos configuration and the credential cache come from the usual places
    /// (`/etc/krb5.conf` or `KRB5_CONFIG`; `KRB5CCNAME`), and the brokers' principals are
    /// `service_name/HOST@REALM`, HOST as each broker advertises itself.
    pub fn gssapi(service_name: impl Into<String>) -> Self {
        Self {
            auth: Auth::Gssapi {
                service_name: service_name.into(),
                principal: None,
                keytab: None,
            },
            tls: None,
        }
    }

    /// For [`Security::gssapi`]: the client's principal and keytab
    /// (`sasl.kerberos.principal`, `sasl.kerberos.keytab`); librdkafka then logs in and
    /// renews the ticket with the `kinit` command (MIT Kerberos' `kinit` must be installed).
    /// Ignored by other mechanisms.
    pub fn kerberos_keytab(
        mut self,
        principal: impl Into<String>,
        keytab: impl Into<PathBuf>,
    ) -> Self {
        if let Auth::Gssapi {
            principal: p,
            keytab: k,
            ..
        } = &mut self.auth
        {
            *p = Some(principal.into());
            *k = Some(keytab.into());
        }
        self
    }

    /// Runs the connection over TLS: SASL becomes `SASL_SSL`, plaintext becomes `SSL`.
    pub fn with_ssl(mut self, tls: Tls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// librdkafka's `security.protocol`: `PLAINTEXT`, `SSL`, `SASL_PLAINTEXT` or `SASL_SSL`.
    pub fn protocol(&self) -> &'static str {
        match (&self.auth, self.tls.is_some()) {
            (Auth::None, false) => "PLAINTEXT",
            (Auth::None, true) => "SSL",
            (_, false) => "SASL_PLAINTEXT",
            (_, true) => "SASL_SSL",
        }
    }

    /// The SASL mechanism, if any.
    pub fn mechanism(&self) -> Option<SaslMechanism> {
        match &self.auth {
            Auth::None => None,
            Auth::Password { mechanism, .. } => Some(*mechanism),
            Auth::OAuthBearer(_) => Some(SaslMechanism::OAuthBearer),
            Auth::Gssapi { .. } => Some(SaslMechanism::Gssapi),
        }
    }

    /// The TLS settings, if the connection uses TLS.
    pub fn tls(&self) -> Option<&Tls> {
        self.tls.as_ref()
    }

    /// The token provider of [`Security::oauthbearer`].
    pub(crate) fn token_provider(&self) -> Option<Arc<dyn TokenProvider>> {
        match &self.auth {
            Auth::OAuthBearer(provider) => Some(Arc::clone(provider)),
            _ => None,
        }
    }

    /// The librdkafka properties this security sets (secret values included: never log them).
    pub(crate) fn properties(&self) -> Vec<(&'static str, String)> {
        let mut out = vec![("security.protocol", self.protocol().to_owned())];
        if let Some(mechanism) = self.mechanism() {
            out.push(("sasl.mechanism", mechanism.as_str().to_owned()));
        }
        match &self.auth {
            Auth::None | Auth::OAuthBearer(_) => {}
            Auth::Password {
                username, password, ..
            } => {
                out.push(("sasl.username", username.clone()));
                out.push(("sasl.password", password.expose().to_owned()));
            }
            Auth::Gssapi {
                service_name,
                principal,
                keytab,
            } => {
                out.push(("sasl.kerberos.service.name", service_name.clone()));
                if let Some(principal) = principal {
                    out.push(("sasl.kerberos.principal", principal.clone()));
                }
                match keytab {
                    Some(keytab) => {
                        out.push(("sasl.kerberos.keytab", keytab.display().to_string()))
                    }
                    // No keytab: the credential cache has the ticket; librdkafka must not run
                    // its `kinit -t <keytab>` renewal.
                    None => out.push(("sasl.kerberos.min.time.before.relogin", "0".to_owned())),
                }
            }
        }
        if let Some(tls) = &self.tls {
            tls.properties(&mut out);
        }
        out
    }
}

/// Whether a librdkafka property holds a secret whose value must never be shown.
pub(crate) fn is_sensitive(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key.contains("password")
        || key.contains("secret")
        || key.contains("jaas")
        || key.contains("token")
        || key == "ssl.key.pem"
        || key == "sasl.oauthbearer.config"
}

/// Formats librdkafka properties with sensitive values replaced by `***`.
pub(crate) struct RedactedProperties<'a>(pub(crate) &'a [(String, String)]);

impl fmt::Debug for RedactedProperties<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (key, value) in self.0 {
            if is_sensitive(key) {
                map.entry(key, &"***");
            } else {
                map.entry(key, value);
            }
        }
        map.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRETS: &[&str] = &["pa55-word", "PRIVATE-KEY-BODY", "key-pass", "tok3n"];

    fn every_config() -> Vec<Security> {
        let token = || -> Result<OAuthToken, std::io::Error> {
            Ok(OAuthToken::new("tok3n", "alice", Duration::from_secs(60)))
        };
        let mutual = Tls::new()
            .ca_pem("-----BEGIN CERTIFICATE-----CA-----END CERTIFICATE-----")
            .client_cert_pem(
                "-----BEGIN CERTIFICATE-----C-----END CERTIFICATE-----",
                "-----BEGIN PRIVATE KEY-----PRIVATE-KEY-BODY-----END PRIVATE KEY-----",
            )
            .key_password("key-pass");
        vec![
            Security::plaintext(),
            Security::ssl(Tls::new().ca_file("ca.pem")),
            Security::ssl(mutual.clone()),
            Security::ssl(Tls::new().no_verify()),
            Security::plain("alice", "pa55-word"),
            Security::plain("alice", "pa55-word").with_ssl(mutual.clone()),
            Security::scram256("alice", "pa55-word"),
            Security::scram512("alice", "pa55-word").with_ssl(Tls::new()),
            Security::oauthbearer(token),
            Security::oauthbearer(token).with_ssl(mutual),
            Security::gssapi("kafka").kerberos_keytab("alice@EXAMPLE", "/etc/alice.keytab"),
        ]
    }

    #[test]
    fn debug_output_never_shows_a_secret() {
        for security in every_config() {
            let shown = format!("{security:?} {:#?}", security);
            for secret in SECRETS {
                assert!(!shown.contains(secret), "{secret} shown in {shown}");
            }
            if security
                .mechanism()
                .is_some_and(|m| m != SaslMechanism::Gssapi)
            {
                assert!(shown.contains("alice") || shown.contains("OAuthBearer"));
            }
        }
        let token = OAuthToken::new("tok3n", "alice", Duration::from_secs(1));
        assert!(!format!("{token:?}").contains("tok3n"));
        assert_eq!(format!("{:?}", Secret::new("x")), "Secret(\"***\")");
    }

    #[test]
    fn redacted_properties_hide_sensitive_values() {
        let props: Vec<(String, String)> = [
            ("sasl.password", "pa55-word"),
            ("ssl.key.pem", "PRIVATE-KEY-BODY"),
            ("ssl.key.password", "key-pass"),
            ("sasl.oauthbearer.config", "tok3n"),
            ("sasl.oauthbearer.client.secret", "tok3n"),
            ("linger.ms", "5"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let shown = format!("{:?}", RedactedProperties(&props));
        for secret in SECRETS {
            assert!(!shown.contains(secret), "{secret} shown in {shown}");
        }
        assert!(shown.contains("\"linger.ms\": \"5\""), "{shown}");
    }

    fn property<'a>(props: &'a [(&'static str, String)], key: &str) -> Option<&'a str> {
        props
            .iter()
            .rev()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn maps_to_librdkafka_properties() {
        let scram = Security::scram512("alice", "pa55-word")
            .with_ssl(Tls::new().ca_file("/tmp/ca.pem"))
            .properties();
        assert_eq!(property(&scram, "security.protocol"), Some("SASL_SSL"));
        assert_eq!(property(&scram, "sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(property(&scram, "sasl.username"), Some("alice"));
        assert_eq!(property(&scram, "sasl.password"), Some("pa55-word"));
        assert_eq!(property(&scram, "ssl.ca.location"), Some("/tmp/ca.pem"));
        assert_eq!(
            property(&scram, "enable.ssl.certificate.verification"),
            Some("true")
        );
        assert_eq!(
            property(&scram, "ssl.endpoint.identification.algorithm"),
            Some("https")
        );

        let insecure = Security::ssl(Tls::new().no_verify()).properties();
        assert_eq!(property(&insecure, "security.protocol"), Some("SSL"));
        assert_eq!(property(&insecure, "sasl.mechanism"), None);
        assert_eq!(
            property(&insecure, "enable.ssl.certificate.verification"),
            Some("false")
        );
        assert_eq!(
            property(&insecure, "ssl.endpoint.identification.algorithm"),
            Some("none")
        );

        let mutual = Security::ssl(
            Tls::new()
                .client_cert_files("c.pem", "c.key")
                .key_password("key-pass"),
        )
        .properties();
        assert_eq!(property(&mutual, "ssl.certificate.location"), Some("c.pem"));
        assert_eq!(property(&mutual, "ssl.key.location"), Some("c.key"));
        assert_eq!(property(&mutual, "ssl.key.password"), Some("key-pass"));

        let oauth = Security::oauthbearer(|| -> Result<OAuthToken, std::io::Error> {
            Err(std::io::Error::other("no token"))
        });
        assert!(oauth.token_provider().is_some());
        let props = oauth.properties();
        assert_eq!(
            property(&props, "security.protocol"),
            Some("SASL_PLAINTEXT")
        );
        assert_eq!(property(&props, "sasl.mechanism"), Some("OAUTHBEARER"));
        assert_eq!(property(&props, "sasl.password"), None);

        assert_eq!(
            property(&Security::plaintext().properties(), "security.protocol"),
            Some("PLAINTEXT")
        );
        let gssapi = Security::gssapi("kafka").properties();
        assert_eq!(property(&gssapi, "sasl.mechanism"), Some("GSSAPI"));
        assert_eq!(
            property(&gssapi, "sasl.kerberos.service.name"),
            Some("kafka")
        );
        assert_eq!(
            property(&gssapi, "sasl.kerberos.min.time.before.relogin"),
            Some("0")
        );
        let keytab = Security::gssapi("kafka")
            .kerberos_keytab("alice@EXAMPLE.COM", "/etc/alice.keytab")
            .with_ssl(Tls::new())
            .properties();
        assert_eq!(property(&keytab, "security.protocol"), Some("SASL_SSL"));
        assert_eq!(
            property(&keytab, "sasl.kerberos.principal"),
            Some("alice@EXAMPLE.COM")
        );
        assert_eq!(
            property(&keytab, "sasl.kerberos.keytab"),
            Some("/etc/alice.keytab")
        );
        assert_eq!(
            property(&keytab, "sasl.kerberos.min.time.before.relogin"),
            None
        );
    }

    /// Every mechanism and TLS is compiled into librdkafka: creating a client validates the
    /// configuration, and fails for a mechanism or protocol the build lacks.
    #[test]
    fn every_mechanism_and_codec_is_compiled_in() {
        use rdkafka::producer::BaseProducer;
        let token = || -> Result<OAuthToken, std::io::Error> {
            Ok(OAuthToken::new("t", "alice", Duration::from_secs(60)))
        };
        for security in [
            Security::ssl(Tls::new()),
            Security::plain("u", "p").with_ssl(Tls::new()),
            Security::scram256("u", "p"),
            Security::scram512("u", "p").with_ssl(Tls::new()),
            Security::oauthbearer(token),
            Security::gssapi("kafka"),
            Security::gssapi("kafka").kerberos_keytab("alice@EXAMPLE.COM", "/etc/alice.keytab"),
        ] {
            let mut config = rdkafka::ClientConfig::new();
            config.set("bootstrap.servers", "127.0.0.1:1");
            for (key, value) in security.properties() {
                config.set(key, value);
            }
            for codec in ["gzip", "snappy", "lz4", "zstd"] {
                config.set("compression.type", codec);
                let created: Result<BaseProducer, _> = config.create();
                if let Err(err) = created {
                    panic!(
                        "{} {:?} with {codec}: {err}",
                        security.protocol(),
                        security.mechanism()
                    );
                }
            }
        }
    }

    /// librdkafka's own OIDC token client (raw properties, `sasl.oauthbearer.method=oidc`) is
    /// compiled in too: it needs libcurl, which the CMake build links. Without it, librdkafka
    /// refuses the configuration ("OAuth/OIDC depends on libcurl and OpenSSL").
    #[test]
    fn oidc_token_requests_are_compiled_in() {
        use rdkafka::producer::BaseProducer;
        let created: Result<BaseProducer, _> = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", "127.0.0.1:1")
            .set("security.protocol", "sasl_plaintext")
            .set("sasl.mechanism", "OAUTHBEARER")
            .set("sasl.oauthbearer.method", "oidc")
            .set("sasl.oauthbearer.client.id", "app")
            .set("sasl.oauthbearer.client.secret", "secret")
            .set(
                "sasl.oauthbearer.token.endpoint.url",
                "http://127.0.0.1:1/token",
            )
            .create();
        if let Err(err) = created {
            panic!("OIDC: {err}");
        }
    }
}
