#!/usr/bin/env bash
# The whole test suite, from a fresh clone: starts a local Apache Kafka when none answers on
# 127.0.0.1:9092 (installing it from Maven Central on first use; with its secured listeners
# on 9094-9096 for the security tests), checks formatting and
# lints, runs every unit, doc, UI and integration test against the real broker, then runs
# the quickstart demo. A broker this script started is stopped at the end.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# perl and make (the vendored OpenSSL, Cyrus SASL and Kerberos builds) and openssl (the broker's test certificates).
scripts/system-deps.sh

started_kafka=0
if ! (exec 3<>/dev/tcp/127.0.0.1/9092) 2>/dev/null; then
  scripts/kafka-local.sh start
  started_kafka=1
else
  # Reuses the running broker; warns when it lacks the secured listeners (the security tests
  # then fail saying how to restart it). Its certificates are where it was started from.
  scripts/kafka-local.sh ensure
  FASTSTREAM_KAFKA_HOME="$(scripts/kafka-local.sh home)"
  export FASTSTREAM_KAFKA_HOME
fi
cleanup() { if [ "$started_kafka" = 1 ]; then scripts/kafka-local.sh stop; fi; }
trap cleanup EXIT

step() { echo; echo "==== $* ($(date -u +%H:%M:%S))"; }

step "tools: Chromium (Debian) for the docs page test, @asyncapi/parser (npm) for the validator"
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq chromium >/dev/null
  else
    sudo apt-get update -qq && sudo apt-get install -y -qq chromium >/dev/null
  fi
fi
chromium --version
npm ci --prefix tools/asyncapi-validate --no-audit --no-fund --loglevel=error

step "import circles (scripts/check-imports.py: files of each crate, and crates)"
python3 scripts/check-imports.py

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo doc (no broken or private intra-doc links)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --all-features --quiet

step "cargo test (unit, doc, UI and integration tests against Kafka at 127.0.0.1:9092)"
cargo test --workspace --no-fail-fast

step "TestBroker's one-switch test on Kafka (FASTSTREAM_TEST_REAL=1), and the facade without Kafka"
FASTSTREAM_TEST_REAL=1 cargo test -p faststream-integration-tests --test testing seed_example_from_env
cargo clippy -p faststream --no-default-features --features testing -- -D warnings
# The workspace build unifies the integration tests' `test-hooks`: lint the Kafka backend without it.
cargo clippy -p faststream-kafka --all-targets -- -D warnings
# OTLP export is in no workspace member's features: lint it on its own.
cargo clippy -p faststream-observe --all-features --all-targets -- -D warnings
cargo clippy -p faststream --features otlp -- -D warnings

step "benchmark smoke run (tiny N, no peers: keeps the benchmark from rotting)"
BENCH_PROFILE=debug scripts/bench.sh --messages 2000 --runs 1 --rates 200 --latency-seconds 1 --rpc-requests 100

step "chaos quick (app kill -9 and SIGTERM, broker outage, poison records, refused publish; RELIABILITY.md)"
scripts/chaos.sh --quick

step "quickstart demo"
scripts/quickstart.sh | tee target/quickstart.log
grep -q "received from out-topic: User: 1 - John registered" target/quickstart.log

step "all checks passed"
