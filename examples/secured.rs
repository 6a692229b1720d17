//! The seed example on a secured cluster, Confluent Cloud style: SASL PLAIN with an API key
//! and secret over TLS (SASL_SSL), the broker's certificate checked against the system's CA
//! store (or `KAFKA_CA_FILE`), and zstd-compressed output.
//!
//! ```sh
//! KAFKA_BOOTSTRAP_SERVERS=pkc-xxxxx.europe-west1.gcp.confluent.cloud:9092 \
//! KAFKA_API_KEY=... KAFKA_API_SECRET=... cargo run --example secured
//! ```
use faststream::kafka::{KafkaBroker, Security, Tls};
use faststream::{publisher, subscriber, FastStream};

#[subscriber("in-topic")]
#[publisher("out-topic")]
async fn handle_msg(user: String, user_id: i64) -> String {
    format!("User: {user_id} - {user} registered")
}

#[tokio::main]
async fn main() -> faststream::Result<()> {
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    let tls = match std::env::var("KAFKA_CA_FILE") {
        Ok(ca) => Tls::new().ca_file(ca),
        Err(_) => Tls::new(),
    };
    let broker = KafkaBroker::new(var("KAFKA_BOOTSTRAP_SERVERS"))
        .security(Security::plain(var("KAFKA_API_KEY"), var("KAFKA_API_SECRET")).with_ssl(tls))
        .producer_set("compression.type", "zstd");
    // A wrong key or secret, or an untrusted certificate, ends startup at once with exit code 1
    // and one line naming the cause.
    FastStream::new(broker).include(handle_msg).cli().await
}
