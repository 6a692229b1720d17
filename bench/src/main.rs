//! faststream-rs benchmark: faststream against raw rdkafka (and, with `--peers`, FastStream for
//! Python and RustStream) on the same local Kafka, in one run, printed as one table.
//!
//! Every measurement runs in its own child process (so CPU time and peak RSS are its own),
//! is repeated `--runs` times, and is reported as the median with the min-max spread.
//! Claims are ratios between rows of the same run, never absolute numbers across runs.

mod callgrind;
mod cases;
mod cli;
mod codecs;
mod eos;
mod gate;
mod kafka;
mod lanes;
mod measure;
mod peers;
mod raw_mt;
mod rows;
mod sweep;

use cases::CaseArgs;
use clap::Parser;
use cli::{Cli, Sub};
use measure::CaseResult;
use rows::{
    own_case, Row, BATCH_ROW, EXTRACT_ROW, METRICS_ROW, MSGPACK_ROW, MT_ROW, OTEL_SPANS_ROW,
    SAMPLED_TRACING_ROW, TRACING_ROW,
};

/// Counts heap allocations (see `measure::CountingAlloc`) for the allocations-per-record column.
#[global_allocator]
static ALLOCATOR: measure::CountingAlloc = measure::CountingAlloc;

fn main() {
    let mut cli = Cli::parse();
    cli.partitions = cli.partition_counts.first().copied().unwrap_or(6);
    let outcome = match &cli.command {
        Some(Sub::Case {
            name,
            topic,
            output,
            partitions,
            messages,
            rate,
            seconds,
        }) => {
            let args = CaseArgs {
                bootstrap: cli.bootstrap.clone(),
                topic: topic.clone(),
                output: output.clone(),
                partitions: *partitions,
                messages: *messages,
                rate: *rate,
                seconds: *seconds,
            };
            run_case(name, &args).map(|result| {
                println!("{}", serde_json::to_string(&result).unwrap_or_default());
            })
        }
        Some(Sub::Gate {
            small,
            large,
            repeat,
            keep_profiles,
        }) => gate::run(
            &cli.bootstrap,
            gate::Sizes {
                small: *small,
                large: *large,
                repeat: *repeat,
                partitions: cli.partitions,
            },
            keep_profiles.as_deref(),
        ),
        Some(Sub::Lanes { records, runs }) => lanes::run(&cli, *records, *runs),
        Some(Sub::Eos {
            records,
            runs,
            intervals,
            rate,
            latency_seconds,
        }) => eos::run(
            &cli,
            &eos::Settings {
                records: *records,
                runs: *runs,
                intervals: intervals.clone(),
                rate: *rate,
                seconds: *latency_seconds,
            },
        ),
        Some(Sub::Codecs { records, runs }) => codecs::run(&cli, *records, *runs),
        None => orchestrate(&cli),
    };
    if let Err(err) = outcome {
        eprintln!("faststream-bench: {err}");
        std::process::exit(1);
    }
}

fn run_case(name: &str, args: &CaseArgs) -> Result<CaseResult, String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        match name {
            "raw-drain" => cases::raw_drain(args),
            "raw-drain-headers" => cases::raw_drain_headers(args),
            "raw-drain-split" => cases::raw_drain_split(args, false).await,
            "raw-drain-split-headers" => cases::raw_drain_split(args, true).await,
            "fs-drain" => cases::fs_drain(args).await,
            "fs-drain-batch" => cases::fs_drain_batch(args).await,
            "fs-drain-extract" => cases::fs_drain_extract(args).await,
            "fs-drain-msgpack" => cases::fs_drain_msgpack(args).await,
            "fs-drain-registry-avro" => codecs::fs_drain_registry_avro(args).await,
            "raw-pipeline" => cases::raw_pipeline(args, true).await,
            "raw-pipeline-mt" => raw_mt::raw_pipeline_mt(args).await,
            "raw-pipeline-bare" => cases::raw_pipeline(args, false).await,
            "fs-pipeline" => cases::fs_pipeline(args, cases::Observe::Nothing).await,
            "fs-pipeline-metrics" => cases::fs_pipeline(args, cases::Observe::Metrics).await,
            "fs-pipeline-tracing" => cases::fs_pipeline(args, cases::Observe::Tracing).await,
            "fs-pipeline-tracing-sampled" => {
                cases::fs_pipeline(args, cases::Observe::TracingSampled).await
            }
            "otel-spans" => cases::otel_spans(args),
            "raw-latency" => cases::raw_latency(args).await,
            "fs-latency" => cases::fs_latency(args).await,
            "fs-rpc" => cases::fs_rpc(args).await,
            "fs-idle" => cases::fs_idle(args).await,
            other => match other.strip_prefix("fs-lanes-").map(str::parse::<usize>) {
                Some(Ok(lanes)) => lanes::fs_lanes(args, lanes).await,
                _ => match eos::Case::parse(other) {
                    Some(case) => case.run(args).await,
                    None => Err(format!("unknown case {other}")),
                },
            },
        }
    })
}

fn orchestrate(cli: &Cli) -> Result<(), String> {
    kafka::ping(&cli.bootstrap)?;
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    let id = uuid::Uuid::new_v4().simple().to_string();
    let input = format!("bench-in-{id}");
    eprintln!(
        "bench: creating {input} ({} partitions) and writing {} records",
        cli.partitions, cli.messages
    );
    runtime.block_on(kafka::create_topic(&cli.bootstrap, &input, cli.partitions))?;
    let bytes = kafka::prefill(&cli.bootstrap, &input, cli.partitions, cli.messages)?;
    let bytes_per_msg = bytes as f64 / cli.messages as f64;
    eprintln!("bench: {bytes} payload bytes ({bytes_per_msg:.0} per record)");
    // The same events in MessagePack, for the codec's drain row.
    let msgpack_input = format!("bench-in-msgpack-{id}");
    runtime.block_on(kafka::create_topic(
        &cli.bootstrap,
        &msgpack_input,
        cli.partitions,
    ))?;
    let msgpack_bytes =
        kafka::prefill_msgpack(&cli.bootstrap, &msgpack_input, cli.partitions, cli.messages)?;
    let msgpack_bytes_per_msg = msgpack_bytes as f64 / cli.messages as f64;

    let mut rows: Vec<Row> = Vec::new();
    let row = |rows: &mut Vec<Row>, section: &'static str, name: &str| -> usize {
        if let Some(i) = rows
            .iter()
            .position(|r| r.section == section && r.name == name)
        {
            return i;
        }
        rows.push(Row {
            section,
            name: name.to_owned(),
            results: Vec::new(),
            payload_bytes_per_msg: bytes_per_msg,
        });
        rows.len() - 1
    };
    let mut python_input = None;
    for run in 1..=cli.runs {
        for (section, case, label) in [
            ("drain", "raw-drain", "raw rdkafka"),
            ("drain", "fs-drain", "faststream-rs"),
            ("drain", "fs-drain-batch", BATCH_ROW),
            ("drain", "fs-drain-extract", EXTRACT_ROW),
            ("drain", "fs-drain-msgpack", MSGPACK_ROW),
            ("pipeline", "raw-pipeline-mt", MT_ROW),
            ("pipeline", "raw-pipeline-bare", "raw rdkafka, payload only"),
            ("pipeline", "raw-pipeline", "raw rdkafka"),
            ("pipeline", "fs-pipeline", "faststream-rs"),
            ("pipeline", "fs-pipeline-metrics", METRICS_ROW),
            ("pipeline", "fs-pipeline-tracing", TRACING_ROW),
            (
                "pipeline",
                "fs-pipeline-tracing-sampled",
                SAMPLED_TRACING_ROW,
            ),
            ("pipeline", "otel-spans", OTEL_SPANS_ROW),
        ] {
            let output = kafka::output_topic(&runtime, &cli.bootstrap, section, cli.partitions)?;
            eprintln!("bench: run {run}/{} {section} {label}", cli.runs);
            let source = if label == MSGPACK_ROW {
                &msgpack_input
            } else {
                &input
            };
            let result = own_case(cli, case, source, &output, cli.messages, 0, 0)?;
            let i = row(&mut rows, section, label);
            if label == MSGPACK_ROW {
                rows[i].payload_bytes_per_msg = msgpack_bytes_per_msg;
            }
            // Spans only: no records move.
            if label == OTEL_SPANS_ROW {
                rows[i].payload_bytes_per_msg = 0.0;
            }
            rows[i].results.push(result);
        }
        if cli.peers {
            peers::run_all(
                cli,
                &runtime,
                &input,
                bytes_per_msg,
                &mut python_input,
                run,
                &mut |section, label, result| {
                    let i = row(&mut rows, section, label);
                    rows[i].results.push(result);
                },
            )?;
        }
    }
    for &rate in &cli.rates {
        for (case, label) in [
            ("raw-latency", "raw rdkafka"),
            ("fs-latency", "faststream-rs"),
        ] {
            for run in 1..=cli.runs {
                let topic = format!("bench-lat-{}", uuid::Uuid::new_v4().simple());
                runtime.block_on(kafka::create_topic(&cli.bootstrap, &topic, 1))?;
                eprintln!("bench: run {run}/{} latency {label} at {rate}/s", cli.runs);
                let result = own_case(cli, case, &topic, "", 0, rate, cli.latency_seconds)?;
                let section: &'static str = if rate == cli.rates[0] {
                    "latency-1"
                } else {
                    "latency-2"
                };
                let i = row(&mut rows, section, &format!("{label} @ {rate}/s"));
                rows[i].results.push(result);
            }
        }
    }
    if cli.rpc_requests > 0 {
        for run in 1..=cli.runs {
            let topic = format!("bench-rpc-{}", uuid::Uuid::new_v4().simple());
            runtime.block_on(kafka::create_topic(&cli.bootstrap, &topic, 1))?;
            eprintln!("bench: run {run}/{} request/reply faststream-rs", cli.runs);
            let result = own_case(cli, "fs-rpc", &topic, "", cli.rpc_requests, 0, 0)?;
            let i = row(&mut rows, "rpc", "faststream-rs");
            rows[i].results.push(result);
        }
    }
    let cells = if sweep::wanted(cli) {
        sweep::run(cli, &runtime)?
    } else {
        Vec::new()
    };
    let idle_topic = format!("bench-idle-{}", uuid::Uuid::new_v4().simple());
    runtime.block_on(kafka::create_topic(&cli.bootstrap, &idle_topic, 1))?;
    let idle = own_case(cli, "fs-idle", &idle_topic, "", 0, 0, 3)?;

    let mut table = render(cli, &rows, &idle);
    if !cells.is_empty() {
        table.push_str(&sweep::render(cli, &cells));
    }
    println!("{table}");
    if let Some(path) = &cli.markdown {
        std::fs::write(path, &table).map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    Ok(())
}

fn kafka_version() -> String {
    std::env::var("KAFKA_VERSION").unwrap_or_else(|_| "4.1.1".to_owned())
}

fn render(cli: &Cli, rows: &[Row], idle: &CaseResult) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let _ = writeln!(
        out,
        "faststream-bench: {} records x {} runs, {} partitions, Apache Kafka {} (single KRaft node on loopback), {cores} cores\n",
        cli.messages, cli.runs, cli.partitions, kafka_version()
    );
    let _ = writeln!(out, "| measurement | implementation | msg/s (median) | spread (min-max msg/s) | MB/s | CPU s | CPU µs/record | allocs/record | peak RSS MB | ratio |");
    let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for section in ["drain", "pipeline"] {
        // The pipeline's limit is the multi-threaded raw pipeline when it ran; the
        // single-threaded one ("raw rdkafka") is then a second row.
        let single = rows
            .iter()
            .find(|r| r.section == section && r.name == "raw rdkafka")
            .map(Row::median_rate);
        let raw = rows
            .iter()
            .find(|r| r.section == section && r.name == MT_ROW)
            .map(Row::median_rate)
            .or(single);
        let ours_row = rows
            .iter()
            .find(|r| r.section == section && r.name == "faststream-rs");
        let ours = ours_row.map(Row::median_rate);
        for row in rows.iter().filter(|r| r.section == section) {
            let rate = row.median_rate();
            let rates = row.rates();
            let ratio = match row.name.as_str() {
                MT_ROW => "1.00 (limit)".to_owned(),
                "raw rdkafka" if raw != single => raw
                    .map(|r| format!("{:.2} of the multi-threaded", rate / r))
                    .unwrap_or_default(),
                "raw rdkafka" => "1.00 (limit)".to_owned(),
                "raw rdkafka, payload only" => match (single, ours) {
                    (Some(r), Some(o)) => format!(
                        "{:.2} of raw, one thread; faststream-rs {:.2} of this",
                        rate / r,
                        o / rate
                    ),
                    _ => String::new(),
                },
                "faststream-rs" | BATCH_ROW => raw
                    .map(|r| format!("{:.2} of raw", rate / r))
                    .unwrap_or_default(),
                // What tracing would cost if faststream added nothing to the SDK's spans.
                OTEL_SPANS_ROW => ours_row
                    .map(|o| {
                        let plain = o.cpu_us_per_record();
                        format!(
                            "the plain pipeline's CPU plus this: {:.2}x",
                            (plain + row.cpu_us_per_record()) / plain
                        )
                    })
                    .unwrap_or_default(),
                EXTRACT_ROW | MSGPACK_ROW | METRICS_ROW | TRACING_ROW | SAMPLED_TRACING_ROW => ours
                    .map(|o| format!("{:.2} of faststream-rs", rate / o))
                    .unwrap_or_default(),
                _ => ours
                    .map(|o| format!("faststream-rs is {:.1}x", o / rate))
                    .unwrap_or_default(),
            };
            let allocations = row
                .allocations_per_record()
                .map_or_else(|| "-".to_owned(), |a| format!("{a:.2}"));
            let _ = writeln!(
                out,
                "| {section} | {} | {:.0} | {:.0}-{:.0} | {:.1} | {:.2} | {:.2} | {allocations} | {:.1} | {ratio} |",
                row.name,
                rate,
                rates.first().copied().unwrap_or(0.0),
                rates.last().copied().unwrap_or(0.0),
                rate * row.payload_bytes_per_msg / 1e6,
                row.median_of(|r| r.cpu_seconds),
                row.cpu_us_per_record(),
                row.median_of(|r| r.peak_rss_kib as f64) / 1024.0,
            );
        }
    }
    let _ = writeln!(
        out,
        "\n| latency (publish to handler) | p50 ms | p99 ms | p99.9 ms | spread of p99 (min-max) |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|");
    for row in rows.iter().filter(|r| r.section.starts_with("latency")) {
        let _ = writeln!(out, "{}", rows::latency_line(row));
    }
    if let Some(row) = rows.iter().find(|r| r.section == "rpc") {
        let pick = |i: usize| row.median_of(|r| r.latency_ms.map_or(f64::NAN, |l| l[i]));
        let _ = writeln!(
            out,
            "\n| request/reply round trip (sequential, one partition) | p50 ms | p99 ms | round trips/s (median) | spread (min-max /s) |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|");
        let rates = row.rates();
        let _ = writeln!(
            out,
            "| {} | {:.2} | {:.2} | {:.0} | {:.0}-{:.0} |",
            row.name,
            pick(0),
            pick(1),
            row.median_rate(),
            rates.first().copied().unwrap_or(0.0),
            rates.last().copied().unwrap_or(0.0),
        );
        let _ = writeln!(
            out,
            "| FastStream (Python), its own echo ping-pong figure (not measured here) | | | 585-642 at 0.5 CPU; 1,400-2,100 uncapped | |"
        );
    }
    let _ = writeln!(
        out,
        "\nIdle app (one subscriber, nothing to consume) resident memory: {:.1} MB",
        idle.peak_rss_kib as f64 / 1024.0
    );
    out
}
