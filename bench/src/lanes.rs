//! The lanes table (`faststream-bench lanes`): one partition, a handler awaiting a 2 ms sleep
//! (a database or HTTP call), records with distinct keys, handled with `lanes = 1, 4, 16, 64`,
//! next to the plain subscriber (no `lanes` setting) with the same handler, plus a skewed-key
//! row (half the records on one key).

use crate::cases::{drain_config, drain_until_done, fs_broker, CaseArgs, Progress};
use crate::cli::Cli;
use crate::kafka::{self, Event};
use crate::measure::CaseResult;
use crate::rows::{own_case_in, Row};
use faststream::{FastStream, State};
use std::sync::Arc;
use std::time::Duration;

/// What the handler awaits per record.
const HANDLER_WAIT: Duration = Duration::from_millis(2);

/// The measured rows: the case name's lane count (0: no `lanes` setting), whether the topic
/// is the skewed one, and the row's label.
const ROWS: [(usize, bool, &str); 7] = [
    (0, false, "plain subscriber (no `lanes`)"),
    (1, false, "lanes = 1"),
    (4, false, "lanes = 4"),
    (16, false, "lanes = 16"),
    (64, false, "lanes = 64"),
    (16, true, "lanes = 16, half the records on one key"),
    (64, true, "lanes = 64, half the records on one key"),
];

/// The case: `fs-lanes-N` handles the topic with `lanes = N` (`N = 0`: without the setting).
pub(crate) async fn fs_lanes(args: &CaseArgs, lanes: usize) -> Result<CaseResult, String> {
    let progress = Progress::new(args.messages);
    let mut config = drain_config(args, "lanes");
    if lanes > 0 {
        config = config.lanes(lanes);
    }
    let app = FastStream::new(fs_broker(args))
        .with_state(Arc::clone(&progress))
        .subscriber(
            config,
            |progress: State<Arc<Progress>>, event: Event| async move {
                std::hint::black_box(event.seq);
                tokio::time::sleep(HANDLER_WAIT).await;
                progress.record();
            },
        );
    drain_until_done(app, &progress).await
}

/// Writes `count` records to the one partition of `topic`, record `seq` keyed `key(seq)`.
fn prefill(
    bootstrap: &str,
    topic: &str,
    count: u64,
    key: impl Fn(u64) -> String,
) -> Result<u64, String> {
    kafka::prefill_keyed(
        bootstrap,
        topic,
        1,
        count,
        |seq| serde_json::to_vec(&Event::new(seq, 0)).map_err(|e| e.to_string()),
        |seq| Some(key(seq)),
    )
}

/// Measures every row `runs` times (the rows taking turns within a run) and prints the table.
pub(crate) fn run(cli: &Cli, records: u64, runs: usize) -> Result<(), String> {
    kafka::ping(&cli.bootstrap)?;
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    let id = uuid::Uuid::new_v4().simple().to_string();
    let (uniform, skewed) = (
        format!("bench-lanes-{id}"),
        format!("bench-lanes-skew-{id}"),
    );
    for topic in [&uniform, &skewed] {
        runtime.block_on(kafka::create_topic(&cli.bootstrap, topic, 1))?;
    }
    eprintln!("bench: writing {records} records with distinct keys to {uniform}, and to {skewed} half on one key");
    let bytes = prefill(&cli.bootstrap, &uniform, records, |seq| {
        format!("key-{seq}")
    })?;
    prefill(&cli.bootstrap, &skewed, records, |seq| {
        if seq % 2 == 0 {
            "hot".to_owned()
        } else {
            format!("key-{seq}")
        }
    })?;
    let mut rows: Vec<Row> = ROWS
        .iter()
        .map(|&(_, _, label)| Row {
            section: "lanes",
            name: label.to_owned(),
            results: Vec::new(),
            payload_bytes_per_msg: bytes as f64 / records as f64,
        })
        .collect();
    for run in 1..=runs {
        for (row, &(lanes, skew, label)) in rows.iter_mut().zip(ROWS.iter()) {
            eprintln!("bench: run {run}/{runs} {label}");
            let topic = if skew { &skewed } else { &uniform };
            let case = format!("fs-lanes-{lanes}");
            row.results
                .push(own_case_in(cli, &case, topic, "", 1, records, 0, 0)?);
        }
    }
    let table = render(records, runs, &rows);
    println!("{table}");
    if let Some(path) = &cli.markdown {
        std::fs::write(path, &table).map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    Ok(())
}

fn render(records: u64, runs: usize, rows: &[Row]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "faststream-bench lanes: {records} records x {runs} runs, 1 partition, handler awaiting {} ms, {records} distinct keys (skewed rows: half the records on one key)\n",
        HANDLER_WAIT.as_millis()
    );
    let _ = writeln!(out, "| subscriber | msg/s (median) | spread (min-max msg/s) | CPU µs/record | allocs/record | vs lanes = 1 |");
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|");
    let one = rows
        .iter()
        .find(|r| r.name == "lanes = 1")
        .map(Row::median_rate);
    for row in rows {
        let ratio = one.map_or_else(String::new, |one| {
            format!("{:.1}x", row.median_rate() / one)
        });
        let _ = writeln!(
            out,
            "| {} | {} | {:.2} | {} | {ratio} |",
            row.name,
            row.rate_cells(),
            row.cpu_us_per_record(),
            row.allocations_cell(),
        );
    }
    out
}
