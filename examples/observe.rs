//! Metrics, tracing and the access log on the quickstart handler.
//!
//! ```sh
//! cargo run --example observe -- --health-port 8080
//! curl -s localhost:8080/metrics | grep faststream_received
//! ```
//!
//! The app records FastStream's Prometheus metrics (served on `/metrics` by the app's HTTP
//! server beside the health probes), traces every message with the global OpenTelemetry
//! tracer provider (a no-op until one is installed, e.g. by `run --otel` with the `otlp`
//! feature), and writes the access log at INFO.

use faststream::kafka::KafkaBroker;
use faststream::observe::metrics::Metrics;
use faststream::observe::otel::Otel;
use faststream::observe::Level;
use faststream::{publisher, subscriber, FastStream};

#[subscriber("in-topic")]
#[publisher("out-topic")]
async fn handle_msg(user: String, user_id: i64) -> String {
    format!("User: {user_id} - {user} registered")
}

/// The app, observed: metrics into `metrics`, spans to the global tracer, access log at INFO.
pub fn app(broker: KafkaBroker, metrics: &Metrics) -> FastStream<KafkaBroker> {
    FastStream::new(broker)
        .include(handle_msg)
        .metrics(metrics)
        .otel(&Otel::global())
        .access_log(Level::INFO)
}

#[tokio::main]
async fn main() -> faststream::Result<()> {
    let bootstrap =
        std::env::var("KAFKA_BOOTSTRAP_SERVERS").unwrap_or_else(|_| "localhost:9092".to_owned());
    app(
        KafkaBroker::new(bootstrap),
        &Metrics::new("observe-example"),
    )
    .cli()
    .await
}
