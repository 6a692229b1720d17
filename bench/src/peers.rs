//! Peer frameworks, measured on the same broker in the same run: FastStream for Python (with
//! its confluent-kafka and aiokafka backends) and RustStream. They are installed on demand into
//! `target/bench-peers/` (a Python venv from PyPI, a cargo project from crates.io); the
//! programs themselves are ours, in `bench/peers/`.

use crate::cli::Cli;
use crate::measure::{run_child, CaseResult};
use crate::rows::RUSTSTREAM_TRACKED_ROW;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

fn peers_dir() -> PathBuf {
    repo_root().join("target").join("bench-peers")
}

fn run_setup(command: &mut Command, what: &str) -> Result<(), String> {
    let status = command.status().map_err(|e| format!("{what}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed: {status}"))
    }
}

/// The venv's python, installing FastStream with both Kafka backends on first use.
fn python() -> Result<PathBuf, String> {
    let venv = peers_dir().join("venv");
    let python = venv.join("bin").join("python");
    if !python.exists() {
        run_setup(
            Command::new("python3").args(["-m", "venv"]).arg(&venv),
            "creating the Python venv",
        )?;
    }
    let marker = venv.join(".installed");
    if !marker.exists() {
        run_setup(
            Command::new(&python).args([
                "-m",
                "pip",
                "install",
                "-q",
                "faststream[kafka,confluent]==0.7.8",
            ]),
            "installing FastStream from PyPI",
        )?;
        std::fs::write(&marker, "ok").map_err(|e| e.to_string())?;
    }
    Ok(python)
}

/// The RustStream peer binary, built in release mode on first use.
fn ruststream_binary() -> Result<PathBuf, String> {
    let manifest = repo_root()
        .join("bench")
        .join("peers")
        .join("ruststream")
        .join("Cargo.toml");
    let target = peers_dir().join("ruststream-target");
    run_setup(
        Command::new("cargo")
            .args(["build", "--release", "--quiet", "--manifest-path"])
            .arg(&manifest)
            .arg("--target-dir")
            .arg(&target),
        "building the RustStream peer",
    )?;
    Ok(target.join("release").join("ruststream-peer"))
}

/// Runs every peer once for `run`, reporting each result through `record`.
pub(crate) fn run_all(
    cli: &Cli,
    runtime: &tokio::runtime::Runtime,
    input: &str,
    _bytes_per_msg: f64,
    python_input: &mut Option<String>,
    run: usize,
    record: &mut dyn FnMut(&'static str, &str, CaseResult),
) -> Result<(), String> {
    // The Python peers read a smaller topic of the same records.
    if python_input.is_none() {
        let topic = format!("bench-py-in-{}", uuid::Uuid::new_v4().simple());
        runtime.block_on(crate::kafka::create_topic(
            &cli.bootstrap,
            &topic,
            cli.partitions,
        ))?;
        crate::kafka::prefill(&cli.bootstrap, &topic, cli.partitions, cli.python_messages)?;
        *python_input = Some(topic);
    }
    let py_topic = python_input.clone().unwrap_or_default();
    let python = python()?;
    let script = repo_root()
        .join("bench")
        .join("peers")
        .join("faststream_py")
        .join("bench.py");
    for (backend, workers) in ["confluent", "aiokafka"]
        .into_iter()
        .flat_map(|backend| cli.py_workers.iter().map(move |&w| (backend, w)))
    {
        for section in ["drain", "pipeline"] {
            let output =
                crate::kafka::output_topic(runtime, &cli.bootstrap, section, cli.partitions)?;
            eprintln!(
                "bench: run {run}/{} {section} FastStream (Python, {backend}, max_workers={workers})",
                cli.runs
            );
            let mut command = Command::new(&python);
            command
                .arg(&script)
                .args([
                    "--backend",
                    backend,
                    "--case",
                    section,
                    "--bootstrap",
                    &cli.bootstrap,
                ])
                .args([
                    "--topic",
                    &py_topic,
                    "--output",
                    &output,
                    "--partitions",
                    &cli.partitions.to_string(),
                ])
                .args(["--messages", &cli.python_messages.to_string()])
                .args(["--workers", &workers.to_string()]);
            let result = run_child(command, &format!("FastStream {backend} {section}"))?;
            let client = if backend == "confluent" {
                "confluent-kafka"
            } else {
                "aiokafka"
            };
            // Its default (one handler at a time) keeps the row's historical name.
            let label = if workers <= 1 {
                format!("FastStream (Python, {client})")
            } else {
                format!("FastStream (Python, {client}, max_workers={workers})")
            };
            record(
                if section == "drain" {
                    "drain"
                } else {
                    "pipeline"
                },
                &label,
                result,
            );
        }
    }
    let binary = ruststream_binary()?;
    // Its drain at its default (`Commit::Auto`: each offset stored as its record is handed
    // over, at-most-once), and at the guarantee the faststream-rs drain gives (`Commit::Tracked`:
    // stored after the handler's ack). Its pipeline is always `Tracked`.
    for (section, commit, label) in [
        ("drain", "auto", "RustStream"),
        ("drain", "tracked", RUSTSTREAM_TRACKED_ROW),
        ("pipeline", "tracked", "RustStream"),
    ] {
        let output = crate::kafka::output_topic(runtime, &cli.bootstrap, section, cli.partitions)?;
        eprintln!("bench: run {run}/{} {section} {label}", cli.runs);
        let mut command = Command::new(&binary);
        command
            .args([
                "--case",
                section,
                "--bootstrap",
                &cli.bootstrap,
                "--topic",
                input,
                "--output",
                &output,
            ])
            .args([
                "--partitions",
                &cli.partitions.to_string(),
                "--messages",
                &cli.messages.to_string(),
                "--commit",
                commit,
            ]);
        let result = run_child(command, &format!("{label} {section}"))?;
        record(section, label, result);
    }
    Ok(())
}
