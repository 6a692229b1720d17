//! The chaos suite's tools, driven by `scripts/chaos.sh`: topic set-up, pre-filling input
//! with sequence numbers, the faststream app under test, waiting for progress, and
//! verification of what came out (lost, duplicated, dead letters and their headers).
//!
//! Every record carries its sequence number as text: `"{seq}"`, `"{seq}:poison"` (the app's
//! handler fails on it) or `"{seq}:big"` (the app's output is larger than the output topic
//! accepts). The same rule (`kind`) decides which records are special when filling and when
//! verifying, so the verifier knows what to expect without reading the input. Scenario 14's
//! records carry the same in Avro, in the schema registry's wire format (`avro`).

mod app;
mod avro;
mod error;
mod marks;
mod tools;

use clap::{Parser, Subcommand};
use error::BoxError;
use marks::Marks;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "faststream-chaos",
    about = "Tools of the chaos suite (scripts/chaos.sh)"
)]
struct Cli {
    /// Kafka bootstrap servers.
    #[arg(long, global = true, default_value = "127.0.0.1:9092")]
    bootstrap: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Creates a topic and waits until every partition has a leader.
    Create {
        #[arg(long)]
        topic: String,
        #[arg(long, default_value_t = 4)]
        partitions: i32,
        #[arg(long, default_value_t = 1)]
        replication: i32,
        /// Topic configs, `key=value` (e.g. `max.message.bytes=2000`).
        #[arg(long = "config")]
        configs: Vec<String>,
    },
    /// Produces records from..count round-robin over the topic's partitions (seq % partitions),
    /// so record `seq` sits at offset `seq / partitions` (a second fill continues the first).
    Fill {
        #[arg(long)]
        topic: String,
        /// The first sequence number.
        #[arg(long, default_value_t = 0)]
        from: u64,
        #[arg(long)]
        count: u64,
        /// Avro in the registry's wire format, with these schema versions and ids in turn
        /// (`v1=7,v2=8`, as `register` prints them) instead of text.
        #[arg(long)]
        avro: Option<avro::Writers>,
        #[command(flatten)]
        marks: Marks,
    },
    /// Registers the Avro record's versions under a subject of the schema registry at
    /// `--registry` (Confluent's API) and prints `v1=ID v2=ID v3=ID`.
    Register {
        #[arg(long)]
        registry: String,
        #[arg(long)]
        subject: String,
    },
    /// Runs the app under test until SIGTERM/SIGINT: input -> output with the same sequence
    /// number, under the given error policy.
    App(app::AppArgs),
    /// Prints the number of records in a topic (sum of its partitions' end offsets).
    Count {
        #[arg(long)]
        topic: String,
    },
    /// Waits until a topic holds at least `at_least` records.
    WaitCount {
        #[arg(long)]
        topic: String,
        #[arg(long)]
        at_least: i64,
        #[arg(long, default_value_t = 120)]
        timeout: u64,
    },
    /// Prints a group's committed offsets on a topic: `sum p0,p1,...` (-1 where none).
    Committed {
        #[arg(long)]
        group: String,
        #[arg(long)]
        topic: String,
    },
    /// Waits until a group's committed offset on every partition of a topic is its end
    /// offset (none for an empty partition), or the target given with `--target P=OFFSET`
    /// for that partition.
    WaitCommitted {
        #[arg(long)]
        group: String,
        #[arg(long)]
        topic: String,
        #[arg(long = "target")]
        targets: Vec<String>,
        #[arg(long, default_value_t = 120)]
        timeout: u64,
    },
    /// Prints the broker id leading a partition.
    Leader {
        #[arg(long)]
        topic: String,
        #[arg(long, default_value_t = 0)]
        partition: i32,
    },
    /// Prints the broker id coordinating a consumer group.
    GroupCoordinator {
        #[arg(long)]
        group: String,
    },
    /// Waits until a `read_committed` reader starting at the topic's end reads a new record,
    /// and prints the seconds it took since `--since` (e.g. the moment the app was killed).
    WaitVisible {
        #[arg(long)]
        topic: String,
        /// Seconds since the epoch the wait is measured from (default: now).
        #[arg(long)]
        since: Option<f64>,
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
    /// Reads the output (and dead-letter) topic to its end as a `read_committed` reader and
    /// prints
    /// `in= out= distinct= lost= dup= dlt= dlt_bad= unexpected=`.
    Verify(tools::VerifyArgs),
}

fn parse_pairs<'a>(pairs: &'a [String], what: &str) -> Result<Vec<(&'a str, &'a str)>, BoxError> {
    pairs
        .iter()
        .map(|pair| {
            pair.split_once('=')
                .ok_or_else(|| format!("{what} `{pair}` is not key=value").into())
        })
        .collect()
}

async fn run(cli: Cli) -> Result<(), BoxError> {
    let bootstrap = cli.bootstrap.as_str();
    match cli.command {
        Command::Create {
            topic,
            partitions,
            replication,
            configs,
        } => {
            let configs = parse_pairs(&configs, "config")?;
            tools::create_topic(bootstrap, &topic, partitions, replication, &configs).await
        }
        Command::Fill {
            topic,
            from,
            count,
            avro,
            marks,
        } => tools::fill(bootstrap, &topic, from, count, marks, avro.as_ref()).await,
        Command::Register { registry, subject } => avro::register(&registry, &subject).await,
        Command::App(args) => app::run(bootstrap, args).await,
        Command::Count { topic } => {
            // Retried: right after a broker dies, partitions it led have no leader for a while.
            let mut total = 0;
            tools::wait_until(Duration::from_secs(60), "end offsets", || {
                total = tools::end_offsets(bootstrap, &topic)?.iter().sum::<i64>();
                Ok(true)
            })
            .await?;
            println!("{total}");
            Ok(())
        }
        Command::WaitCount {
            topic,
            at_least,
            timeout,
        } => {
            tools::wait_until(Duration::from_secs(timeout), "records", || {
                Ok(tools::end_offsets(bootstrap, &topic)?.iter().sum::<i64>() >= at_least)
            })
            .await
        }
        Command::Committed { group, topic } => {
            // A broker starved by a loaded machine can time a request out (a cold `.ci/run`
            // saw two 10 s metadata timeouts in a row): retried, as the waits retry, rather
            // than reported as no commit at all.
            let mut committed = Vec::new();
            tools::wait_until(Duration::from_secs(60), "committed offsets", || {
                committed = tools::committed(bootstrap, &group, &topic)?;
                Ok(true)
            })
            .await?;
            let sum: i64 = committed.iter().filter(|o| **o > 0).sum();
            let list: Vec<String> = committed.iter().map(i64::to_string).collect();
            println!("{sum} {}", list.join(","));
            Ok(())
        }
        Command::WaitCommitted {
            group,
            topic,
            targets,
            timeout,
        } => {
            let mut wanted = tools::end_offsets(bootstrap, &topic)?;
            for (partition, offset) in parse_pairs(&targets, "target")? {
                let partition: usize = partition.parse()?;
                let slot = wanted
                    .get_mut(partition)
                    .ok_or_else(|| format!("{topic} has no partition {partition}"))?;
                *slot = offset.parse()?;
            }
            let what = format!("group {group} to commit {wanted:?} on {topic}");
            tools::wait_until(Duration::from_secs(timeout), &what, || {
                let committed = tools::committed(bootstrap, &group, &topic)?;
                // A partition that never held a record has nothing to commit.
                let done = |(c, w): (&i64, &i64)| c == w || (*w == 0 && *c < 0);
                Ok(committed.len() == wanted.len() && committed.iter().zip(&wanted).all(done))
            })
            .await
        }
        Command::Leader { topic, partition } => {
            println!("{}", tools::leader(bootstrap, &topic, partition)?);
            Ok(())
        }
        Command::GroupCoordinator { group } => {
            println!("{}", tools::group_coordinator(bootstrap, &group)?);
            Ok(())
        }
        Command::WaitVisible {
            topic,
            since,
            timeout,
        } => tools::wait_visible(bootstrap, &topic, since, Duration::from_secs(timeout)).await,
        Command::Verify(args) => tools::verify(bootstrap, args).await,
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    faststream::logging::init_from_env();
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err}");
            ExitCode::FAILURE
        }
    }
}
