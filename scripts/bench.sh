#!/usr/bin/env bash
# The benchmark: faststream-rs against raw rdkafka (and with --peers, FastStream for Python and
# RustStream) on a local Apache Kafka, in one run, printed as one table (also written to
# target/bench/latest.md). Starts the local Kafka when none answers on 127.0.0.1:9092.
#
#   scripts/bench.sh                 # 1,000,000 records, 3 runs, no peers
#   scripts/bench.sh --peers         # the same, plus FastStream (Python) and RustStream
#   scripts/bench.sh --messages 2000 --runs 1 --rates 200 --latency-seconds 1   # smoke run
#   scripts/bench.sh --payload-sizes 100,1024,16384 --partitions 6,48   # plus the sweep table
#
# Every option: cargo run --release -p faststream-bench -- --help
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/kafka-local.sh ensure
profile="${BENCH_PROFILE:-release}"
if [ "$profile" = release ]; then
  cargo build --quiet --release -p faststream-bench
else
  cargo build --quiet -p faststream-bench
fi
mkdir -p target/bench
# Where cargo put it: CARGO_TARGET_DIR when set (as CI's fresh-clone runs do).
"${CARGO_TARGET_DIR:-target}/$profile/faststream-bench" --markdown target/bench/latest.md "$@"
