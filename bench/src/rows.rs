//! The rows of the tables: a measured case run in a child process of this binary, repeated,
//! and reduced to medians. Shared by the main table (`main.rs`) and the sweep (`sweep.rs`).

use crate::cli::Cli;
use crate::measure::{self, run_child, CaseResult};
use std::process::Command;

pub(crate) fn own_case(
    cli: &Cli,
    name: &str,
    topic: &str,
    output: &str,
    messages: u64,
    rate: u64,
    seconds: u64,
) -> Result<CaseResult, String> {
    own_case_in(
        cli,
        name,
        topic,
        output,
        cli.partitions,
        messages,
        rate,
        seconds,
    )
}

/// [`own_case`] on topics of `partitions` partitions (the sweep's cells).
#[allow(clippy::too_many_arguments)]
pub(crate) fn own_case_in(
    cli: &Cli,
    name: &str,
    topic: &str,
    output: &str,
    partitions: i32,
    messages: u64,
    rate: u64,
    seconds: u64,
) -> Result<CaseResult, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut command = Command::new(exe);
    command
        .args([
            "case",
            name,
            "--topic",
            topic,
            "--output",
            output,
            "--bootstrap",
            &cli.bootstrap,
        ])
        .args([
            "--partitions",
            &partitions.to_string(),
            "--messages",
            &messages.to_string(),
        ])
        .args([
            "--rate",
            &rate.to_string(),
            "--seconds",
            &seconds.to_string(),
        ])
        .env("FASTSTREAM_LOG", "warn");
    run_child(command, name)
}

/// One row of the table: a measurement repeated `runs` times.
#[derive(Debug, Default)]
pub(crate) struct Row {
    pub(crate) section: &'static str,
    pub(crate) name: String,
    pub(crate) results: Vec<CaseResult>,
    pub(crate) payload_bytes_per_msg: f64,
}

impl Row {
    pub(crate) fn rates(&self) -> Vec<f64> {
        let mut rates: Vec<f64> = self
            .results
            .iter()
            .map(|r| r.messages as f64 / r.seconds)
            .collect();
        rates.sort_by(|a, b| a.total_cmp(b));
        rates
    }
    pub(crate) fn median_rate(&self) -> f64 {
        median(&self.rates())
    }
    pub(crate) fn median_of(&self, f: impl Fn(&CaseResult) -> f64) -> f64 {
        let mut values: Vec<f64> = self.results.iter().map(f).collect();
        values.sort_by(|a, b| a.total_cmp(b));
        median(&values)
    }
    /// Median over the runs of user+system CPU microseconds per record.
    pub(crate) fn cpu_us_per_record(&self) -> f64 {
        self.median_of(|r| r.cpu_seconds * 1e6 / r.messages as f64)
    }
    /// Median over the runs of heap allocations per record, `None` when a run did not count
    /// them (the peers, which are separate programs).
    pub(crate) fn allocations_per_record(&self) -> Option<f64> {
        let mut values = self
            .results
            .iter()
            .map(|r| r.allocations.map(|a| a as f64 / r.messages as f64))
            .collect::<Option<Vec<f64>>>()?;
        values.sort_by(|a, b| a.total_cmp(b));
        Some(median(&values)).filter(|m| !m.is_nan())
    }

    /// The `msg/s (median) | spread (min-max msg/s)` cells.
    pub(crate) fn rate_cells(&self) -> String {
        let rates = self.rates();
        format!(
            "{:.0} | {:.0}-{:.0}",
            self.median_rate(),
            rates.first().copied().unwrap_or(0.0),
            rates.last().copied().unwrap_or(0.0)
        )
    }

    /// The `allocs/record` cell: `-` where a run did not count them.
    pub(crate) fn allocations_cell(&self) -> String {
        self.allocations_per_record()
            .map_or_else(|| "-".to_owned(), |a| format!("{a:.2}"))
    }
}

pub(crate) fn median(sorted: &[f64]) -> f64 {
    measure::quantile(sorted, 0.5)
}

/// The drain row of a batch subscriber.
pub(crate) const BATCH_ROW: &str = "faststream-rs, batches of 500 (`Vec<Event>`)";
/// The drain row whose handler takes four extractors before the payload.
pub(crate) const EXTRACT_ROW: &str =
    "faststream-rs, 4 extractors (`Key`, `Headers`, `Meta`, `State`) + payload";
/// The drain row whose records are MessagePack, decoded by the subscriber's codec.
pub(crate) const MSGPACK_ROW: &str = "faststream-rs, MessagePack codec (`Event`)";
/// The pipeline's baseline: the multi-threaded raw rdkafka pipeline (`raw_mt`).
pub(crate) const MT_ROW: &str = "raw rdkafka, multi-threaded";
/// RustStream's drain at the faststream-rs drain's guarantee: offsets stored after the
/// handler's ack (`Commit::Tracked`), where its default stores them on hand-over.
pub(crate) const RUSTSTREAM_TRACKED_ROW: &str = "RustStream, `Commit::Tracked` (at-least-once)";
/// The pipeline row with FastStream's Prometheus metrics recorded.
pub(crate) const METRICS_ROW: &str = "faststream-rs, metrics enabled";
/// The pipeline row with OpenTelemetry spans recorded.
pub(crate) const TRACING_ROW: &str = "faststream-rs, tracing enabled";
/// The pipeline row with OpenTelemetry spans for 1 % of the traces.
pub(crate) const SAMPLED_TRACING_ROW: &str = "faststream-rs, tracing, 1 % sampled";
/// The OpenTelemetry SDK's two spans per record with nothing else (`cases::otel_spans`): the
/// floor of what the tracing row adds.
pub(crate) const OTEL_SPANS_ROW: &str =
    "OpenTelemetry SDK alone: a `process` and a `send` span per record, no Kafka";

/// A latency table's line for `row`: `| name | p50 | p99 | p99.9 | min-max of p99 |`, the
/// percentiles the medians over the runs.
pub(crate) fn latency_line(row: &Row) -> String {
    let pick = |i: usize| row.median_of(|r| r.latency_ms.map_or(f64::NAN, |l| l[i]));
    let mut p99: Vec<f64> = row
        .results
        .iter()
        .filter_map(|r| r.latency_ms.map(|l| l[1]))
        .collect();
    p99.sort_by(|a, b| a.total_cmp(b));
    format!(
        "| {} | {:.2} | {:.2} | {:.2} | {:.2}-{:.2} |",
        row.name,
        pick(0),
        pick(1),
        pick(2),
        p99.first().copied().unwrap_or(f64::NAN),
        p99.last().copied().unwrap_or(f64::NAN)
    )
}
