#!/usr/bin/env bash
# The quickstart demo: starts a local Kafka when none answers on 127.0.0.1:9092, runs the
# seed example app, sends {"user": "John", "user_id": 1} to in-topic and prints what the app
# published on out-topic, then stops the app with SIGTERM (graceful shutdown).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/system-deps.sh
target="${CARGO_TARGET_DIR:-target}"
mkdir -p "$target"
# The broker comes up (on a first run: its jars are fetched, then a JVM starts) while cargo
# builds, rather than before: on a fresh machine both take a while.
scripts/kafka-local.sh ensure > "$target/quickstart-kafka.log" 2>&1 &
kafka=$!
# Without the examples' default `observe` feature (metrics and tracing), which the quickstart
# does not use.
if ! cargo build --quiet -p faststream-examples --no-default-features --example quickstart \
  --example quickstart_client; then
  wait "$kafka" || true
  exit 1
fi
if ! wait "$kafka"; then cat "$target/quickstart-kafka.log" >&2; exit 1; fi
cat "$target/quickstart-kafka.log" >&2
target="$target/debug/examples"

echo "== starting the quickstart app (examples/quickstart.rs)"
"$target/quickstart" &
app=$!
trap 'kill -TERM "$app" 2>/dev/null || true' EXIT

echo "== sending the sample message"
"$target/quickstart_client"

echo "== stopping the app (SIGTERM)"
kill -TERM "$app"
wait "$app"
trap - EXIT
echo "== done: the app shut down cleanly"
