//! FastStream's seed example: `{"user": "John", "user_id": 1}` on `in-topic` becomes
//! `User: 1 - John registered` on `out-topic`.
//!
//! Run with `cargo run --example quickstart` (Kafka on localhost:9092; `scripts/quickstart.sh`
//! starts one and sends a sample message).
use faststream::kafka::KafkaBroker;
use faststream::{publisher, subscriber, FastStream};

/// Greets newly registered users.
#[subscriber("in-topic")]
#[publisher("out-topic")]
async fn handle_msg(user: String, user_id: i64) -> String {
    format!("User: {user_id} - {user} registered")
}

/// The app on `broker` (also what its AsyncAPI document describes).
pub fn app(broker: KafkaBroker) -> FastStream<KafkaBroker> {
    FastStream::new(broker).include(handle_msg)
}

#[tokio::main]
async fn main() -> faststream::Result<()> {
    let servers =
        std::env::var("KAFKA_BOOTSTRAP_SERVERS").unwrap_or_else(|_| "localhost:9092".into());
    // The app's CLI: no arguments runs it; `--help` lists `docs gen`, `docs serve`, `publish`.
    app(KafkaBroker::new(servers)).cli().await
}
