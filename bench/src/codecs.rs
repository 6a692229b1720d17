//! The codecs table (`faststream-bench codecs`): the same events drained as JSON (no codec),
//! as MessagePack (`SubscriberConfig::codec(MessagePack)`) and as Avro in Confluent's wire
//! format through the schema registry codec (one schema id, fetched once and cached), beside
//! raw rdkafka, in one run; with the registry's HTTP request count of each Avro drain.
//!
//! The registry is `FASTSTREAM_BENCH_REGISTRY` (default the local Apicurio of
//! `scripts/registry-local.sh`).

use crate::cases::{drain_config, drain_events, CaseArgs};
use crate::cli::Cli;
use crate::kafka::{self, Event};
use crate::measure::CaseResult;
use crate::rows::{own_case, Row};
use faststream::codec::Codec;
use faststream::registry::{PublishMode, RegistryCodec, SchemaRegistry};

/// The registry the Avro rows use.
const REGISTRY_ENV: &str = "FASTSTREAM_BENCH_REGISTRY";
const LOCAL_REGISTRY: &str = "http://127.0.0.1:8081/apis/ccompat/v7";

/// [`Event`]'s Avro schema (Avro has no unsigned long: `seq` is a long).
const EVENT_AVRO: &str = r#"{"type":"record","name":"Event","namespace":"bench","fields":[
    {"name":"user","type":"string"},{"name":"user_id","type":"long"},
    {"name":"action","type":"string"},{"name":"ts_us","type":"long"},{"name":"seq","type":"long"}]}"#;

/// The rows: case, label, and which pre-filled topic it drains.
const ROWS: [(&str, &str, Input); 4] = [
    ("raw-drain", "raw rdkafka (JSON)", Input::Json),
    ("fs-drain", "faststream-rs, JSON (no codec)", Input::Json),
    (
        "fs-drain-msgpack",
        "faststream-rs, MessagePack codec",
        Input::MessagePack,
    ),
    (
        "fs-drain-registry-avro",
        "faststream-rs, registry Avro codec (cached id)",
        Input::Avro,
    ),
];

#[derive(Clone, Copy, PartialEq)]
enum Input {
    Json,
    MessagePack,
    Avro,
}

fn registry() -> Result<SchemaRegistry, String> {
    let url = std::env::var(REGISTRY_ENV).unwrap_or_else(|_| LOCAL_REGISTRY.to_owned());
    SchemaRegistry::new(url).map_err(|e| e.to_string())
}

fn event_schema() -> Result<apache_avro::Schema, String> {
    apache_avro::Schema::parse_str(EVENT_AVRO).map_err(|e| e.to_string())
}

/// The case: the drain of [`Event`]s framed with a registry schema id, decoded by the registry
/// Avro codec with `Event`'s schema as the reader's; its result carries the registry requests
/// this process made.
pub(crate) async fn fs_drain_registry_avro(args: &CaseArgs) -> Result<CaseResult, String> {
    let registry = registry()?;
    let codec = RegistryCodec::avro(&registry).reader_schema(event_schema()?);
    let config = drain_config(args, "drain_registry_avro").codec(codec);
    let mut result = drain_events(args, config).await?;
    result.registry_requests = Some(registry.requests());
    Ok(result)
}

/// Pre-fills the three topics, measures every row `runs` times (the rows taking turns within
/// a run), and prints the table.
pub(crate) fn run(cli: &Cli, records: u64, runs: usize) -> Result<(), String> {
    kafka::ping(&cli.bootstrap)?;
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    let id = uuid::Uuid::new_v4().simple().to_string();
    let topic = |input: Input| match input {
        Input::Json => format!("bench-codecs-json-{id}"),
        Input::MessagePack => format!("bench-codecs-msgpack-{id}"),
        Input::Avro => format!("bench-codecs-avro-{id}"),
    };
    let inputs = [Input::Json, Input::MessagePack, Input::Avro];
    for input in inputs {
        runtime.block_on(kafka::create_topic(
            &cli.bootstrap,
            &topic(input),
            cli.partitions,
        ))?;
    }
    eprintln!("bench: writing {records} records to each of the JSON, MessagePack and registry Avro topics");
    let avro = runtime
        .block_on(
            RegistryCodec::avro(&registry()?)
                .reader_schema(event_schema()?)
                .publishing(&topic(Input::Avro), PublishMode::AutoRegister),
        )
        .map_err(|e| {
            format!("the schema registry (start it: scripts/registry-local.sh ensure): {e}")
        })?;
    let bytes = |input: Input| -> Result<f64, String> {
        let written = match input {
            Input::Json => kafka::prefill(&cli.bootstrap, &topic(input), cli.partitions, records),
            Input::MessagePack => {
                kafka::prefill_msgpack(&cli.bootstrap, &topic(input), cli.partitions, records)
            }
            Input::Avro => kafka::prefill_with(
                &cli.bootstrap,
                &topic(input),
                cli.partitions,
                records,
                |seq| avro.encode(&Event::new(seq, 0)).map_err(|e| e.to_string()),
            ),
        }?;
        Ok(written as f64 / records as f64)
    };
    let per_record = [
        bytes(Input::Json)?,
        bytes(Input::MessagePack)?,
        bytes(Input::Avro)?,
    ];
    let mut rows: Vec<Row> = ROWS
        .iter()
        .map(|&(_, label, input)| Row {
            section: "drain",
            name: label.to_owned(),
            results: Vec::new(),
            payload_bytes_per_msg: per_record[inputs.iter().position(|i| *i == input).unwrap_or(0)],
        })
        .collect();
    for run in 1..=runs {
        for (row, &(case, label, input)) in rows.iter_mut().zip(ROWS.iter()) {
            eprintln!("bench: run {run}/{runs} {label}");
            row.results
                .push(own_case(cli, case, &topic(input), "", records, 0, 0)?);
        }
    }
    let table = render(cli, records, runs, &rows);
    println!("{table}");
    if let Some(path) = &cli.markdown {
        std::fs::write(path, &table).map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    Ok(())
}

fn render(cli: &Cli, records: u64, runs: usize, rows: &[Row]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "faststream-bench codecs: {records} records x {runs} runs, {} partitions, the same events in each format\n",
        cli.partitions
    );
    let _ = writeln!(out, "| drain | bytes/record | msg/s (median) | spread (min-max msg/s) | CPU µs/record | allocs/record | peak RSS MB | CPU vs JSON | registry requests |");
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let json = rows
        .iter()
        .find(|r| r.name == ROWS[1].1)
        .map(Row::cpu_us_per_record);
    for row in rows {
        let rates = row.rates();
        let allocations = row
            .allocations_per_record()
            .map_or_else(|| "-".to_owned(), |a| format!("{a:.2}"));
        let cpu = row.cpu_us_per_record();
        let versus = json.map_or_else(String::new, |json| format!("{:.2}x", cpu / json));
        let requests: Vec<String> = row
            .results
            .iter()
            .filter_map(|r| r.registry_requests.map(|n| n.to_string()))
            .collect();
        let requests = if requests.is_empty() {
            "-".to_owned()
        } else {
            format!("{} (per run)", requests.join(", "))
        };
        let _ = writeln!(
            out,
            "| {} | {:.0} | {:.0} | {:.0}-{:.0} | {cpu:.2} | {allocations} | {:.1} | {versus} | {requests} |",
            row.name,
            row.payload_bytes_per_msg,
            row.median_rate(),
            rates.first().copied().unwrap_or(0.0),
            rates.last().copied().unwrap_or(0.0),
            row.median_of(|r| r.peak_rss_kib as f64) / 1024.0,
        );
    }
    out
}
