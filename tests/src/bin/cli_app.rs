//! An app with the built-in CLI for the CLI tests: consumes `CLI_IN` as group `CLI_GROUP` and
//! publishes `"{worker}:{payload}"` to `CLI_OUT`, where `worker` is the worker id the CLI hands
//! over (`FASTSTREAM_WORKER_ID`, `-` when unset). Kafka: `KAFKA_BOOTSTRAP_SERVERS`, else the
//! test broker. The startup hook prints the extra options it got.
use faststream::kafka::KafkaBroker;
use faststream::{FastStream, StartupOptions, State, SubscriberConfig};

#[tokio::main]
async fn main() -> faststream::Result<()> {
    let var = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    let servers = var(
        "KAFKA_BOOTSTRAP_SERVERS",
        &faststream_integration_tests::bootstrap(),
    );
    let config = SubscriberConfig::new("cli_app", [var("CLI_IN", "cli-in")])
        .group_id(var("CLI_GROUP", "cli-app"))
        .publish_to(var("CLI_OUT", "cli-out"));
    FastStream::new(KafkaBroker::new(servers))
        .subscriber(
            config,
            |options: State<StartupOptions>, body: String| async move {
                let worker = options
                    .worker_id()
                    .map_or_else(|| "-".to_owned(), |id| id.to_string());
                format!("{worker}:{body}")
            },
        )
        .on_startup_with(|options| async move {
            let extra: Vec<String> = options.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
            eprintln!("cli_app: options [{}]", extra.join(", "));
        })
        .after_startup(|| async { eprintln!("cli_app: started") })
        .cli()
        .await
}
