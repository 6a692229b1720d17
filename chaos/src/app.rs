//! The app under test: a plain faststream app reading the input topic and publishing each
//! record's sequence number to the output topic, under a configurable error policy,
//! at-least-once or exactly-once; its input text, or Avro through the schema registry.

use crate::avro::{self, ChaosRecord};
use crate::error::BoxError;
use faststream::kafka::KafkaBroker;
use faststream::registry::{RegistryCodec, SchemaRegistry};
use faststream::{
    Backoff, ErrorPolicy, FastStream, Message, Response, State, SubscriberConfig,
    TransactionCommits,
};
use std::time::Duration;

/// What happens after the last attempt.
#[derive(clap::ValueEnum, Debug, Clone, Copy)]
pub enum Then {
    /// Publish to `{input}-dlt`.
    Dlt,
    /// Stop the partition, offset uncommitted.
    Stop,
    /// Log and commit.
    Skip,
}

#[derive(clap::Args, Debug)]
pub struct AppArgs {
    #[arg(long)]
    input: String,
    #[arg(long)]
    output: String,
    #[arg(long)]
    group: String,
    /// Attempts in all; without it the default policy (`AckAfter`) applies.
    #[arg(long)]
    attempts: Option<u32>,
    #[arg(long, value_enum, default_value = "dlt")]
    then: Then,
    /// First retry delay in milliseconds (doubling, at most 10 times this).
    #[arg(long, default_value_t = 20)]
    backoff_ms: u64,
    /// Retries without blocking instead of `--attempts`: through retry topics with these
    /// delays in milliseconds (comma-separated), one attempt per delivery, then `--then`.
    #[arg(long, value_delimiter = ',')]
    retry_topics_ms: Vec<u64>,
    /// Work per record, in microseconds, so a run lasts long enough to be interrupted.
    #[arg(long, default_value_t = 0)]
    delay_us: u64,
    /// Payload size of the output of a `big` record.
    #[arg(long, default_value_t = 5000)]
    big_bytes: usize,
    /// Consumer `session.timeout.ms`. The suite uses the broker's minimum (6 s) so a member
    /// killed with SIGKILL loses its partitions in seconds instead of librdkafka's 45 s.
    #[arg(long, default_value_t = 6000)]
    session_timeout_ms: u64,
    /// Producer `batch.size`. A topic's `max.message.bytes` limits whole batches, and
    /// librdkafka does not split a refused batch: for an output topic with a small limit, keep
    /// batches under it so only a record that is too large by itself is refused.
    #[arg(long)]
    batch_bytes: Option<u64>,
    /// Key-ordered lanes per partition (`SubscriberConfig::lanes`); 1 handles each
    /// partition's records one after another.
    #[arg(long, default_value_t = 1)]
    lanes: usize,
    /// Exactly-once (`SubscriberConfig::transactions`): outputs and input offsets commit in
    /// one transaction every `--commit-interval-ms`. The transactional id's instance part comes
    /// from `FASTSTREAM_INSTANCE_ID`.
    #[arg(long)]
    exactly_once: bool,
    /// The exactly-once commit interval in milliseconds.
    #[arg(long, default_value_t = 100)]
    commit_interval_ms: u64,
    /// Avro input in the registry's wire format, decoded by `RegistryCodec` with the schema
    /// registry at this URL (Confluent's API); without it the input is text.
    #[arg(long)]
    registry: Option<String>,
}

/// The handler's settings, shared as state.
struct Settings {
    delay: Duration,
    big_bytes: usize,
}

type Reply = Result<Response<String>, faststream::middleware::BoxError>;

/// Input `"{seq}"` gives output `"{seq}"` keyed by seq; `"{seq}:poison"` fails;
/// `"{seq}:big"` gives `"{seq}:xxxx..."` of `big_bytes` bytes.
async fn handle(message: Message, settings: State<Settings>) -> Reply {
    let text = std::str::from_utf8(&message.payload)?;
    let (seq, tag) = text.split_once(':').unwrap_or((text, ""));
    respond(seq, tag, &settings).await
}

/// [`handle`] for an Avro record: its `seq` and `tag` fields.
async fn handle_avro(settings: State<Settings>, record: ChaosRecord) -> Reply {
    respond(&record.seq.to_string(), &record.tag, &settings).await
}

async fn respond(seq: &str, tag: &str, settings: &Settings) -> Reply {
    if !settings.delay.is_zero() {
        tokio::time::sleep(settings.delay).await;
    }
    let body = match tag {
        "poison" => return Err(format!("poison record {seq}").into()),
        "big" => format!("{seq}:{}", "x".repeat(settings.big_bytes)),
        _ => seq.to_owned(),
    };
    Ok(Response::new(body).key(seq.to_owned()))
}

pub async fn run(bootstrap: &str, args: AppArgs) -> Result<(), BoxError> {
    let mut config = SubscriberConfig::new("chaos", [args.input.as_str()])
        .group_id(args.group.as_str())
        .publish_to(args.output.as_str())
        .lanes(args.lanes);
    if args.exactly_once {
        let interval = Duration::from_millis(args.commit_interval_ms);
        config = config.transactions(TransactionCommits::every(interval));
    }
    let policy = if args.retry_topics_ms.is_empty() {
        args.attempts.map(|attempts| {
            let initial = Duration::from_millis(args.backoff_ms);
            ErrorPolicy::retry(attempts).backoff(Backoff {
                initial,
                max: initial * 10,
            })
        })
    } else {
        let delays = args
            .retry_topics_ms
            .iter()
            .copied()
            .map(Duration::from_millis);
        Some(ErrorPolicy::retry_topics(delays))
    };
    if let Some(policy) = policy {
        config = config.error_policy(match args.then {
            Then::Dlt => policy.then_dead_letter(),
            Then::Stop => policy.then_stop(),
            Then::Skip => policy.then_skip(),
        });
    }
    let settings = Settings {
        delay: Duration::from_micros(args.delay_us),
        big_bytes: args.big_bytes,
    };
    tracing::info!(input = %args.input, output = %args.output, group = %args.group, exactly_once = args.exactly_once, "chaos app starting");
    let broker = KafkaBroker::new(bootstrap)
        .consumer_set("session.timeout.ms", args.session_timeout_ms.to_string())
        .consumer_set(
            "heartbeat.interval.ms",
            (args.session_timeout_ms / 3).to_string(),
        );
    let broker = match args.batch_bytes {
        Some(bytes) => broker.producer_set("batch.size", bytes.to_string()),
        None => broker,
    };
    // librdkafka's own debug contexts (e.g. `cgrp,fetch,msg`) for chasing a stall: its
    // lines reach the app's log through `tracing` at debug level.
    let broker = match std::env::var("CHAOS_LIBRDKAFKA_DEBUG") {
        Ok(contexts) if !contexts.trim().is_empty() => broker.set("debug", contexts.trim()),
        _ => broker,
    };
    let app = FastStream::new(broker).with_state(settings);
    let app = match &args.registry {
        Some(url) => {
            let registry = SchemaRegistry::new(url.as_str())?;
            let codec = RegistryCodec::avro(&registry).reader_schema(avro::reader_schema()?);
            app.subscriber(config.codec(codec), handle_avro)
        }
        None => app.subscriber(config, handle),
    };
    app.run().await?;
    tracing::info!("chaos app stopped cleanly");
    Ok(())
}
