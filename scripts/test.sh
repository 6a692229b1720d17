#!/usr/bin/env bash
# The whole test suite, from a fresh clone: starts a local Apache Kafka when none answers on
# 127.0.0.1:9092 (installing it from Maven Central on first use), checks formatting and
# lints, runs every unit, doc, UI and integration test against the real broker, then runs
# the quickstart demo. A broker this script started is stopped at the end.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

started_kafka=0
if ! (exec 3<>/dev/tcp/127.0.0.1/9092) 2>/dev/null; then
  scripts/kafka-local.sh start
  started_kafka=1
fi
cleanup() { if [ "$started_kafka" = 1 ]; then scripts/kafka-local.sh stop; fi; }
trap cleanup EXIT

step() { echo; echo "==== $* ($(date -u +%H:%M:%S))"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo test (unit, doc, UI and integration tests against Kafka at 127.0.0.1:9092)"
cargo test --workspace --no-fail-fast

step "quickstart demo"
scripts/quickstart.sh | tee target/quickstart.log
grep -q "received from out-topic: User: 1 - John registered" target/quickstart.log

step "all checks passed"
