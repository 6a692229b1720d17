//! The sweep table: the drain and pipeline rows that payload size and partition count move,
//! measured for every `--payload-sizes` x `--partitions` cell in the same run as the main table.

use crate::cli::Cli;
use crate::kafka::{self, Event};
use crate::rows::{own_case_in, Row, MT_ROW};

/// The rows of a cell: both raw pipelines (the multi-threaded one is the baseline), the raw
/// drain, and faststream-rs's drain and pipeline.
const CASES: [(&str, &str, &str); 5] = [
    ("drain", "raw-drain", "raw rdkafka"),
    ("drain", "fs-drain", "faststream-rs"),
    ("pipeline", "raw-pipeline-mt", MT_ROW),
    ("pipeline", "raw-pipeline", "raw rdkafka"),
    ("pipeline", "fs-pipeline", "faststream-rs"),
];

/// A cell writes at most about this many payload bytes.
const CELL_BYTES: u64 = 1_000_000_000;

/// One cell's measured rows.
pub(crate) struct Cell {
    /// The requested payload size, `None` for the plain records.
    size: Option<usize>,
    partitions: i32,
    rows: Vec<Row>,
}

/// The benchmark's record padded to `size` bytes of JSON with a `pad` field, which every
/// decoder here (serde's default, pydantic's default) skips as an unknown field: the decode
/// still scans it, the handler sees the same `Event`.
#[derive(serde::Serialize)]
struct Padded<'a> {
    #[serde(flatten)]
    event: &'a Event,
    pad: &'a str,
}

fn padded(seq: u64, size: Option<usize>, filler: &str) -> Result<Vec<u8>, String> {
    let event = Event::new(seq, 0);
    let Some(size) = size else {
        return serde_json::to_vec(&event).map_err(|e| e.to_string());
    };
    let bare = serde_json::to_vec(&Padded {
        event: &event,
        pad: "",
    })
    .map_err(|e| e.to_string())?;
    let pad = size.saturating_sub(bare.len()).min(filler.len());
    serde_json::to_vec(&Padded {
        event: &event,
        pad: &filler[..pad],
    })
    .map_err(|e| e.to_string())
}

/// Writes `count` records of `size` bytes round-robin over `partitions`; returns the payload
/// bytes written.
fn prefill(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    count: u64,
    size: Option<usize>,
) -> Result<u64, String> {
    let filler = "x".repeat(size.unwrap_or(0));
    kafka::prefill_with(bootstrap, topic, partitions, count, |seq| {
        padded(seq, size, &filler)
    })
}

/// Whether the command asked for a sweep.
pub(crate) fn wanted(cli: &Cli) -> bool {
    !cli.payload_sizes.is_empty() || cli.partition_counts.len() > 1
}

/// Measures every cell, `--runs` times each, the cases taking turns within a run.
pub(crate) fn run(cli: &Cli, runtime: &tokio::runtime::Runtime) -> Result<Vec<Cell>, String> {
    let sizes: Vec<Option<usize>> = if cli.payload_sizes.is_empty() {
        vec![None]
    } else {
        cli.payload_sizes.iter().map(|&s| Some(s)).collect()
    };
    let mut cells = Vec::new();
    for &partitions in &cli.partition_counts {
        for &size in &sizes {
            let messages = cli
                .sweep_messages
                .min(CELL_BYTES / size.unwrap_or(100).max(1) as u64)
                .max(1);
            let input = format!("bench-sweep-{}", uuid::Uuid::new_v4().simple());
            eprintln!(
                "bench: sweep cell {} B x {partitions} partitions: writing {messages} records",
                size.map_or_else(|| "plain".to_owned(), |s| s.to_string())
            );
            runtime.block_on(kafka::create_topic(&cli.bootstrap, &input, partitions))?;
            let bytes = prefill(&cli.bootstrap, &input, partitions, messages, size)?;
            let mut rows: Vec<Row> = CASES
                .iter()
                .map(|&(section, _, name)| Row {
                    section,
                    name: name.to_owned(),
                    results: Vec::new(),
                    payload_bytes_per_msg: bytes as f64 / messages as f64,
                })
                .collect();
            for run in 1..=cli.runs {
                for (row, &(section, case, name)) in rows.iter_mut().zip(CASES.iter()) {
                    let output = kafka::output_topic(runtime, &cli.bootstrap, section, partitions)?;
                    eprintln!(
                        "bench: sweep run {run}/{} {section} {name} ({} B, {partitions} partitions)",
                        cli.runs,
                        bytes / messages
                    );
                    row.results.push(own_case_in(
                        cli, case, &input, &output, partitions, messages, 0, 0,
                    )?);
                }
            }
            cells.push(Cell {
                size,
                partitions,
                rows,
            });
        }
    }
    Ok(cells)
}

/// The sweep table, one row per cell and implementation; ratios against the cell's raw rows
/// (the drain's raw rdkafka, the pipeline's multi-threaded raw rdkafka).
pub(crate) fn render(cli: &Cli, cells: &[Cell]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nSweep: {} runs per cell, at most {} records per cell (at most ~1 GB of payload)\n",
        cli.runs, cli.sweep_messages
    );
    let _ = writeln!(out, "| payload B | partitions | measurement | implementation | msg/s (median) | spread (min-max msg/s) | MB/s | CPU µs/record | allocs/record | ratio |");
    let _ = writeln!(out, "|---:|---:|---|---|---:|---:|---:|---:|---:|---:|");
    for cell in cells {
        for section in ["drain", "pipeline"] {
            let baseline = if section == "drain" {
                "raw rdkafka"
            } else {
                MT_ROW
            };
            let limit = cell
                .rows
                .iter()
                .find(|r| r.section == section && r.name == baseline)
                .map(Row::median_rate);
            for row in cell.rows.iter().filter(|r| r.section == section) {
                let rate = row.median_rate();
                let rates = row.rates();
                let ratio = if row.name == baseline {
                    "1.00 (limit)".to_owned()
                } else {
                    limit
                        .map(|l| format!("{:.2} of the limit", rate / l))
                        .unwrap_or_default()
                };
                let allocations = row
                    .allocations_per_record()
                    .map_or_else(|| "-".to_owned(), |a| format!("{a:.2}"));
                let _ = writeln!(
                    out,
                    "| {:.0}{} | {} | {section} | {} | {rate:.0} | {:.0}-{:.0} | {:.1} | {:.2} | {allocations} | {ratio} |",
                    row.payload_bytes_per_msg,
                    if cell.size.is_none() { " (plain)" } else { "" },
                    cell.partitions,
                    row.name,
                    rates.first().copied().unwrap_or(0.0),
                    rates.last().copied().unwrap_or(0.0),
                    rate * row.payload_bytes_per_msg / 1e6,
                    row.cpu_us_per_record(),
                );
            }
        }
    }
    out
}
