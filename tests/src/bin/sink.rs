//! A small app for process-level tests (SIGTERM mid-stream, memory bound): consumes `SINK_IN`,
//! forwards each payload to `SINK_OUT`, taking `SINK_DELAY_MS` per message. Group:
//! `SINK_GROUP`. With `SINK_HEALTH_PORT` it serves its health on that port (through the app
//! command line's `--health-port`).
use faststream::kafka::KafkaBroker;
use faststream::{FastStream, SubscriberConfig};
use std::time::Duration;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} must be set"))
}

#[tokio::main]
async fn main() -> faststream::Result<()> {
    let delay = Duration::from_millis(env("SINK_DELAY_MS").parse().unwrap_or(0));
    let config = SubscriberConfig::new("sink", [env("SINK_IN")])
        .group_id(env("SINK_GROUP"))
        .publish_to(env("SINK_OUT"));
    let broker = KafkaBroker::new(faststream_integration_tests::bootstrap());
    let app = FastStream::new(broker)
        .graceful_timeout(Duration::from_secs(20))
        .subscriber(config, move |body: String| async move {
            tokio::time::sleep(delay).await;
            body
        })
        .after_startup(|| async { eprintln!("sink: started") });
    let mut args = vec!["sink".to_owned()];
    if let Ok(port) = std::env::var("SINK_HEALTH_PORT") {
        args.extend(["--health-port".to_owned(), port]);
    }
    app.cli_from(args)
        .await
        .map_err(|err| faststream::Error::config("the sink's command line failed", err))
}
