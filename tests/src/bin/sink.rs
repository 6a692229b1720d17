//! A small app for process-level tests (SIGTERM mid-stream): consumes `SINK_IN`, forwards each
//! payload to `SINK_OUT`, taking `SINK_DELAY_MS` per message. Group: `SINK_GROUP`.
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
    FastStream::new(broker)
        .graceful_timeout(Duration::from_secs(20))
        .subscriber(config, move |body: String| async move {
            tokio::time::sleep(delay).await;
            body
        })
        .after_startup(|| async { eprintln!("sink: started") })
        .run()
        .await
}
