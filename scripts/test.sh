#!/usr/bin/env bash
# The whole test suite, from a fresh clone: starts a local Apache Kafka when none answers on
# 127.0.0.1:9092 (installing it from Maven Central on first use; with its secured listeners
# on 9094-9097 and a local Kerberos KDC on 9088 for the security tests) and a schema registry (Apicurio, scripts/registry-local.sh)
# on 8081, checks formatting and lints, runs every unit, doc, UI and integration test against
# the real broker, the benchmark smoke run, the quick chaos suite and the quickstart demo, the
# cost gate (instructions and allocations per record against raw rdkafka, and the traced
# pipeline's allocations against the plain one's, in a release build),
# and builds the quickstart with the `vendored` feature. A broker or registry this script
# started is stopped at the end.
#
# What does not depend on the main line runs beside it, each with a log in
# $CARGO_TARGET_DIR/ci/ (printed when it fails): the broker's start (or the pruning of old
# topics), the tools' install and the vendored build (own, kept target dir; lowest priority)
# from the start; the benchmark smoke run, chaos quick and quickstart (one after another)
# while the tests run. The test binaries run in parallel (scripts/run-tests.py). Everything
# is built before the tests start, so that the scripts' and tests' own cargo calls are
# no-ops rather than waiting on cargo's lock for each other.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
begin=$(date +%s)

# make, g++ and pkg-config (librdkafka's build), the dev packages of the system libraries
# librdkafka links, perl (the vendored OpenSSL build) and openssl (the broker's certificates).
scripts/system-deps.sh

# Incremental compilation writes each workspace crate's query cache as it builds it: work that
# only pays back on a rebuild after an edit, which a test run does not do. (A `cargo build`
# after this script rebuilds the workspace's own crates once, to make that cache.)
export CARGO_INCREMENTAL=0

target="${CARGO_TARGET_DIR:-target}"
logs="$target/ci"

# This workspace's crates: cleaned from target dirs kept across runs and checkouts (below and
# .ci/run's), because cargo's fingerprints of path crates built from another checkout could
# pass for fresh. The dependencies' artifacts are what such a dir is kept for.
own_crates=(-p faststream -p faststream-core -p faststream-macros -p faststream-asyncapi
  -p faststream-observe -p faststream-kafka -p faststream-registry)
workspace_crates=("${own_crates[@]}" -p faststream-integration-tests -p faststream-examples
  -p faststream-cli -p faststream-bench -p faststream-chaos)
case "$(realpath -m "$target")/" in
  "$(pwd)"/*) ;;
  *)
    # A target dir outside this checkout (.ci/run's kept one): last run's logs go, and so does
    # the whole dir once it outgrows FASTSTREAM_KEPT_TARGET_MAX_GB (default 40; dependencies
    # that Cargo.lock no longer names pile up in it).
    rm -rf "$logs" "$target/test-logs"
    if [ -d "$target" ] && [ "$(du -s --block-size=1G "$target" | cut -f1)" -gt "${FASTSTREAM_KEPT_TARGET_MAX_GB:-40}" ]; then
      echo "test.sh: $target is over ${FASTSTREAM_KEPT_TARGET_MAX_GB:-40} GB: emptied"
      rm -rf "$target"
    fi
    cargo clean --quiet "${workspace_crates[@]}"
    ;;
esac
mkdir -p "$logs"

step() { echo; echo "==== $* ($(date -u +%H:%M:%S), $(($(date +%s) - begin)) s)"; }

# Background jobs by name: `background NAME CMD...` starts one with its output in
# $logs/NAME.log; `finish NAME` waits for it and fails the run, printing the log, if it failed.
declare -A job_pid
background() {
  local name="$1"
  shift
  "$@" >"$logs/$name.log" 2>&1 &
  job_pid[$name]=$!
  echo "  $name: started beside the main line (log: $logs/$name.log)"
}
finish() {
  local name="$1"
  if wait "${job_pid[$name]}"; then
    echo "  $name: ok ($(($(date +%s) - begin)) s)"
  else
    echo "  $name: FAILED; its log ($logs/$name.log):"
    cat "$logs/$name.log"
    exit 1
  fi
}

started_kafka=0
started_registry=0
cleanup() {
  # Background jobs still running when the run fails would outlive it.
  for pid in "${job_pid[@]}"; do kill "$pid" 2>/dev/null || true; done
  if [ "$started_kafka" = 1 ]; then scripts/kafka-local.sh stop; fi
  if [ "$started_registry" = 1 ]; then scripts/registry-local.sh stop; fi
}
trap cleanup EXIT

step "local Kafka, tools, and the vendored build, beside the main line"
if ! (exec 3<>/dev/tcp/127.0.0.1/9092) 2>/dev/null; then
  # Installs the jars on first use and starts the broker while cargo builds.
  started_kafka=1
  background kafka scripts/kafka-local.sh start
else
  # Reuses the running broker; warns when it lacks the secured listeners (the security tests
  # then fail saying how to restart it). Its certificates are where it was started from.
  scripts/kafka-local.sh ensure
  FASTSTREAM_KAFKA_HOME="$(scripts/kafka-local.sh home)"
  export FASTSTREAM_KAFKA_HOME
  # Deletes the topics earlier runs left (idle for an hour), so the broker's data stays small.
  background kafka scripts/kafka-local.sh prune
fi

# The schema registry (Apicurio, Confluent's API on 8081, TLS on 8444) for tests/tests/registry.rs: installed
# from Maven Central on first use and started beside the main line, like the broker.
if ! (exec 3<>/dev/tcp/127.0.0.1/8081) 2>/dev/null; then
  started_registry=1
  background registry scripts/registry-local.sh start
else
  # Reuses the running registry; its CA (for the TLS test) is where it was started from.
  FASTSTREAM_REGISTRY_HOME="$(scripts/registry-local.sh home)"
  export FASTSTREAM_REGISTRY_HOME
  background registry scripts/registry-local.sh ensure
fi

# Chromium (Debian) for the docs page test, @asyncapi/parser (npm) for the validator.
tools() {
  if ! command -v chromium >/dev/null 2>&1; then
    local sudo_=()
    if [ "$(id -u)" != 0 ]; then sudo_=(sudo); fi
    "${sudo_[@]}" apt-get update -qq
    "${sudo_[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  fi
  chromium --version
  npm ci --prefix tools/asyncapi-validate --no-audit --no-fund --loglevel=error
}
background tools tools

# The `vendored` feature (OpenSSL, Cyrus SASL, MIT Kerberos, zlib and zstd from source,
# linked statically) keeps building and linking: the quickstart example with it, at the lowest
# CPU priority so that it uses what the tests leave idle. Its target dir is kept across runs
# and checkouts (FASTSTREAM_VENDORED_TARGET_DIR, default ~/.cache/faststream-rs/vendored-target):
# its C libraries change only with Cargo.lock, and building them (OpenSSL, Kerberos, SASL and
# librdkafka) takes minutes of CPU, which a fresh target dir would pay on every run.
# This workspace's own crates are cleaned first: cargo's fingerprints of path crates built
# from another checkout could pass for fresh.
vendored_target="${FASTSTREAM_VENDORED_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/faststream-rs/vendored-target}"
vendored() {
  cargo clean --quiet --target-dir "$vendored_target" "${own_crates[@]}" -p faststream-examples
  nice -n 19 cargo build --quiet -p faststream-examples --example quickstart --features vendored \
    --target-dir "$vendored_target"
}
background vendored vendored

# The cost gate (BENCHMARKS.md, "Where the CPU per record goes"): instructions per record under
# callgrind and allocations per record, faststream-rs against raw rdkafka (and with tracing on
# against without), which only mean something in a release build. That build has its own
# target dir, kept across runs like the vendored one (FASTSTREAM_RELEASE_TARGET_DIR, default
# ~/.cache/faststream-rs/release-target):
# a cold release build of every dependency is minutes of CPU, the workspace's own crates a
# minute. They are cleaned first, for the same reason as above. It runs once the broker
# answers (the build takes longer than the broker's start).
release_target="${FASTSTREAM_RELEASE_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/faststream-rs/release-target}"
cost_gate() {
  cargo clean --quiet --release --target-dir "$release_target" "${own_crates[@]}" -p faststream-bench
  nice -n 10 cargo build --quiet --release -p faststream-bench --target-dir "$release_target"
  local waited=0
  until (exec 3<>/dev/tcp/127.0.0.1/9092) 2>/dev/null; do
    if [ "$waited" -ge 300 ]; then echo "cost gate: no broker on 127.0.0.1:9092 after 300 s"; return 1; fi
    sleep 1
    waited=$((waited + 1))
  done
  "$release_target/release/faststream-bench" gate
}
background cost_gate cost_gate

step "import circles (scripts/check-imports.py: files of each crate, and crates)"
python3 scripts/check-imports.py

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, warnings are errors), and the feature variants"
cargo clippy --workspace --all-targets -- -D warnings
# The facade without Kafka.
cargo clippy -p faststream --no-default-features --features testing -- -D warnings
# The workspace build unifies the integration tests' `test-hooks`: lint the Kafka backend without it.
cargo clippy -p faststream-kafka --all-targets -- -D warnings
# OTLP export is in no workspace member's features: lint it on its own.
cargo clippy -p faststream-observe --all-features --all-targets -- -D warnings
cargo clippy -p faststream --features otlp -- -D warnings

step "cargo doc (no broken or private intra-doc links; every feature but vendored)"
# Not --all-features: that would build the vendored C libraries in this target dir as well.
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet --features \
  faststream/testing,faststream/metrics,faststream/otlp,faststream/registry,faststream-kafka/test-hooks,faststream-observe/otlp,faststream-observe/metrics,faststream-asyncapi/serve

# Everything the runs below build, built first and one after another (cargo's lock on the
# target dir serializes builds anyway): then, while the tests run, the scripts' own cargo
# builds are no-ops and do not hold the lock that the CLI tests' builds wait for. A `-p`
# build resolves features for that package alone, so each of these is a build of its own.
step "builds: the benchmark, chaos tool and quickstart, then the test binaries"
cargo build --quiet -p faststream-bench
cargo build --quiet -p faststream-chaos
cargo build --quiet -p faststream-examples --no-default-features --example quickstart --example quickstart_client
# Last, so that the binaries in target/debug are the workspace build's when the tests start.
cargo test --quiet --workspace --no-run

step "waiting for the broker, the registry and the tools"
finish kafka
finish registry
finish tools

# Beside the tests, on the same broker: the benchmark smoke runs and the quickstart one after
# another (they print tables), and the two halves of chaos quick at once (their apps mostly
# sleep: the handler's work per record is a timer), each with its own log.
smokes() {
  echo "== benchmark smoke run (tiny N, no peers: keeps the benchmark from rotting)"
  BENCH_PROFILE=debug scripts/bench.sh --messages 2000 --runs 1 --rates 200 --latency-seconds 1 --rpc-requests 100
  echo "== exactly-once benchmark smoke run (faststream-bench eos, tiny N, about 8 s: keeps it from rotting; BENCHMARKS.md)"
  BENCH_PROFILE=debug scripts/bench.sh eos --records 2000 --runs 1 --intervals 100 --rate 200 --latency-seconds 1
  echo "== quickstart demo"
  scripts/quickstart.sh | tee "$logs/quickstart-output.log"
  grep -q "received from out-topic: User: 1 - John registered" "$logs/quickstart-output.log"
}
step "benchmark smoke run, quickstart, and chaos quick (app kill -9 and SIGTERM, broker outage, poison records, refused publish, kill -9 with lanes, exactly-once kill -9; RELIABILITY.md), beside the tests"
background smokes smokes
background chaos_1 scripts/chaos.sh --quick-part 1
background chaos_2 scripts/chaos.sh --quick-part 2

step "tests (unit, doc, UI and integration tests against Kafka at 127.0.0.1:9092; binaries in parallel)"
scripts/run-tests.py

step "TestBroker's one-switch test on Kafka (FASTSTREAM_TEST_REAL=1)"
# `--workspace`, not `-p`: features resolved as for the build above, so nothing is rebuilt.
FASTSTREAM_TEST_REAL=1 cargo test --workspace --test harness -- --exact testing::seed_example_from_env

step "waiting for the benchmark smoke run, the quickstart and chaos quick"
finish smokes
tail -n 30 "$logs/smokes.log"
finish chaos_1
finish chaos_2
# The two halves' tables.
grep -h '^|' "$logs/chaos_1.log" "$logs/chaos_2.log"

step "waiting for the cost gate"
finish cost_gate
tail -n 16 "$logs/cost_gate.log"

step "waiting for the vendored build"
finish vendored

step "all checks passed ($(($(date +%s) - begin)) s)"
