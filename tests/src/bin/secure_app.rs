//! The seed app on a secured listener, configured from the environment, for the tests of
//! startup failures (bad credentials, untrusted CA, wrong mechanism): consumes `APP_IN` as
//! group `APP_GROUP` and publishes `User: {user_id} - {user} registered` to `APP_OUT`.
//!
//! It also runs the GSSAPI (Kerberos) round trip: Kerberos' settings (`KRB5_CONFIG`, the
//! credential cache `KRB5CCNAME`) are the process's environment, which a test sets for a child
//! process only.
//!
//! `SECURE_BOOTSTRAP` (servers), `SECURE_MECHANISM` (`PLAIN`, `SCRAM-SHA-256`,
//! `SCRAM-SHA-512`, `GSSAPI`; unset: no SASL), `SECURE_USER`, `SECURE_PASSWORD` (PLAIN and
//! SCRAM), `SECURE_KERBEROS_SERVICE` (GSSAPI: the brokers' service name, default `kafka`),
//! `SECURE_KERBEROS_PRINCIPAL` and `SECURE_KERBEROS_KEYTAB` (GSSAPI: log in from this keytab;
//! unset: the ticket in the credential cache), `SECURE_TLS=1` (TLS), `SECURE_CA` (a CA file;
//! unset: the system's trust store).
use faststream::kafka::{KafkaBroker, Security, Tls};
use faststream::{FastStream, SubscriberConfig};

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn security() -> Security {
    let user = var("SECURE_USER").unwrap_or_default();
    let password = var("SECURE_PASSWORD").unwrap_or_default();
    let security = match var("SECURE_MECHANISM").as_deref() {
        None => Security::plaintext(),
        Some("PLAIN") => Security::plain(user, password),
        Some("SCRAM-SHA-256") => Security::scram256(user, password),
        Some("SCRAM-SHA-512") => Security::scram512(user, password),
        Some("GSSAPI") => {
            let gssapi =
                Security::gssapi(var("SECURE_KERBEROS_SERVICE").unwrap_or_else(|| "kafka".into()));
            match (
                var("SECURE_KERBEROS_PRINCIPAL"),
                var("SECURE_KERBEROS_KEYTAB"),
            ) {
                (Some(principal), Some(keytab)) => gssapi.kerberos_keytab(principal, keytab),
                _ => gssapi,
            }
        }
        Some(other) => {
            eprintln!("error: unknown SECURE_MECHANISM {other}");
            std::process::exit(2)
        }
    };
    if var("SECURE_TLS").as_deref() != Some("1") {
        return security;
    }
    let tls = match var("SECURE_CA") {
        Some(ca) => Tls::new().ca_file(ca),
        None => Tls::new(),
    };
    security.with_ssl(tls)
}

#[tokio::main]
async fn main() -> faststream::Result<()> {
    let servers = var("SECURE_BOOTSTRAP").unwrap_or_else(faststream_integration_tests::bootstrap);
    let topic = |name: &str, default: &str| var(name).unwrap_or_else(|| default.to_owned());
    let config = SubscriberConfig::new("secure_app", [topic("APP_IN", "in-topic")])
        .group_id(topic("APP_GROUP", "secure-app"))
        .publish_to(topic("APP_OUT", "out-topic"));
    FastStream::new(KafkaBroker::new(servers).security(security()))
        .subscriber(config, |body: serde_json::Value| async move {
            format!(
                "User: {} - {} registered",
                body["user_id"],
                body["user"].as_str().unwrap_or_default()
            )
        })
        .after_startup(|| async { eprintln!("secure_app: started") })
        .cli()
        .await
}
