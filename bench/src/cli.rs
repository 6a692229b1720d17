//! The command line of the benchmark.

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "faststream-bench",
    about = "Benchmark faststream-rs against raw rdkafka and its peers on a local Kafka"
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Option<Sub>,
    /// Kafka bootstrap servers.
    #[arg(long, default_value = "127.0.0.1:9092", global = true)]
    pub(crate) bootstrap: String,
    /// Records pre-filled for the drain and pipeline measurements.
    #[arg(long, default_value_t = 1_000_000)]
    pub(crate) messages: u64,
    /// Partitions of the benchmark topics. The main table uses the first; with more than one
    /// (e.g. `6,48`), the sweep table covers each.
    #[arg(long = "partitions", value_delimiter = ',', default_values_t = [6_i32])]
    pub(crate) partition_counts: Vec<i32>,
    /// The main table's partition count (the first of `--partitions`), set after parsing.
    #[arg(skip)]
    pub(crate) partitions: i32,
    /// Payload sizes in bytes for the sweep table (e.g. `100,1024,16384`): each record is the
    /// benchmark's JSON `Event` plus a `pad` string field that brings it to that size. Empty
    /// (the default) sweeps only the plain ~80-byte records, and only when `--partitions` lists
    /// more than one count.
    #[arg(long, value_delimiter = ',')]
    pub(crate) payload_sizes: Vec<usize>,
    /// Records per sweep cell, at most; large payloads get fewer so that a cell writes at most
    /// about 1 GB (`16384` bytes: 61,035 records).
    #[arg(long, default_value_t = 200_000)]
    pub(crate) sweep_messages: u64,
    /// FastStream (Python) `max_workers` settings measured with `--peers` (1 is its default,
    /// sequential handling); each setting is a row.
    #[arg(long, value_delimiter = ',', default_values_t = [1_u32])]
    pub(crate) py_workers: Vec<u32>,
    /// Repetitions of every measurement (median and spread are reported).
    #[arg(long, default_value_t = 3)]
    pub(crate) runs: usize,
    /// Publish rates for the latency measurement, records per second.
    #[arg(long, value_delimiter = ',', default_values_t = [1000_u64, 10000, 50000])]
    pub(crate) rates: Vec<u64>,
    /// Seconds of traffic per latency measurement.
    #[arg(long, default_value_t = 10)]
    pub(crate) latency_seconds: u64,
    /// Sequential request/reply round trips per run (0 skips the measurement).
    #[arg(long, default_value_t = 2000)]
    pub(crate) rpc_requests: u64,
    /// Also measure FastStream (Python) and RustStream, installed into target/bench-peers.
    #[arg(long)]
    pub(crate) peers: bool,
    /// Records for the Python peers (they are ~100x slower; their rate is what is compared).
    #[arg(long, default_value_t = 100_000)]
    pub(crate) python_messages: u64,
    /// Write the table (markdown) to this file as well.
    #[arg(long)]
    pub(crate) markdown: Option<std::path::PathBuf>,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Sub {
    /// The cost gate of `.ci/run`: instructions (callgrind) and allocations per record,
    /// faststream-rs against raw rdkafka, checked against fixed limits (see `gate.rs`).
    Gate {
        /// Records of the smaller of the two pre-filled topics.
        #[arg(long, default_value_t = 10_000)]
        small: u64,
        /// Records of the larger one (the cost per record is the difference over the two).
        #[arg(long, default_value_t = 30_000)]
        large: u64,
        /// Callgrind runs per case and size; the fewest instructions count.
        #[arg(long, default_value_t = 2)]
        repeat: usize,
        /// Keep the callgrind profiles in this directory (for `callgrind_annotate`), named
        /// `CASE-RECORDS-RUN.callgrind`; by default they are deleted with the run.
        #[arg(long)]
        keep_profiles: Option<std::path::PathBuf>,
    },
    /// The lanes table: one partition, a handler awaiting 2 ms, distinct keys, with
    /// `lanes = 1, 4, 16, 64`, the plain subscriber, and skewed keys (see `lanes.rs`).
    Lanes {
        /// Records per topic (each with its own key; the skewed topic has half on one key).
        #[arg(long, default_value_t = 10_000)]
        records: u64,
        /// Repetitions of every row.
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// The exactly-once table: the exactly-once pipeline, the at-least-once one and a
    /// hand-written transactional rdkafka one, at each commit interval, and the end-to-end
    /// latency a `read_committed` reader sees (see `eos.rs`).
    Eos {
        /// Records pre-filled for the throughput rows.
        #[arg(long, default_value_t = 1_000_000)]
        records: u64,
        /// Repetitions of every row.
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Commit intervals in milliseconds.
        #[arg(long, value_delimiter = ',', default_values_t = [10_u64, 100, 1000])]
        intervals: Vec<u64>,
        /// Records per second of the latency rows.
        #[arg(long, default_value_t = 1000)]
        rate: u64,
        /// Seconds of traffic per latency row.
        #[arg(long, default_value_t = 5)]
        latency_seconds: u64,
    },
    /// The codecs table: drains of the same events as JSON, MessagePack and registry Avro
    /// (Confluent's wire format, schema ids cached) beside raw rdkafka, with the registry's
    /// request count (see `codecs.rs`; needs `scripts/registry-local.sh ensure`).
    Codecs {
        /// Records per topic.
        #[arg(long, default_value_t = 300_000)]
        records: u64,
        /// Repetitions of every row.
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// Runs one measured case in this process (used by the orchestrator).
    #[command(hide = true)]
    Case {
        name: String,
        #[arg(long)]
        topic: String,
        #[arg(long, default_value = "")]
        output: String,
        #[arg(long)]
        partitions: i32,
        #[arg(long)]
        messages: u64,
        #[arg(long, default_value_t = 0)]
        rate: u64,
        #[arg(long, default_value_t = 0)]
        seconds: u64,
    },
}
