#!/usr/bin/env bash
# A 3-node Apache Kafka KRaft cluster on loopback ports, for the chaos suite's leader-failure
# scenario. Each node is broker and controller in one JVM; the three controllers form the
# quorum, so one node can die and the cluster keeps a leader and an in-sync majority.
# It reuses the jar cache of scripts/kafka-local.sh (installed on first use) and never
# touches the broker on 127.0.0.1:9092.
#
#   scripts/kafka-cluster.sh start         format (first time) and start all nodes, wait until ready
#   scripts/kafka-cluster.sh stop          stop every node this script started (kill -9 after 30 s)
#   scripts/kafka-cluster.sh kill9 ID      kill -9 node ID (1..3)
#   scripts/kafka-cluster.sh start-node ID start one node again, wait until ready
#   scripts/kafka-cluster.sh bootstrap     print the bootstrap servers
#
# Environment: KAFKA_CLUSTER_HOME (data, logs, pids; default target/kafka-cluster in the repo),
# KAFKA_CLUSTER_PORT (29092: node i listens on PORT+i-1, its controller on PORT+100+i-1),
# KAFKA_VERSION and FASTSTREAM_KAFKA_CACHE as for kafka-local.sh.
set -euo pipefail

log() { echo "kafka-cluster: $*" >&2; }

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# repo, version, cache, libs, host, and the helpers both Kafka scripts use.
source "$here/kafka/common.sh"
home="${KAFKA_CLUSTER_HOME:-$repo/target/kafka-cluster}"
base="${KAFKA_CLUSTER_PORT:-29092}"
nodes=(1 2 3)
cluster_id="c8Yb2tX9QJ6sT0vW1kLm3A"

port_of() { echo $((base + $1 - 1)); }
controller_port_of() { echo $((base + 100 + $1 - 1)); }
node_home() { echo "$home/node$1"; }
pid_alive() { local f; f="$(node_home "$1")/kafka.pid"; [ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null; }

bootstrap() {
  local list=()
  for id in "${nodes[@]}"; do list+=("$host:$(port_of "$id")"); done
  (IFS=,; echo "${list[*]}")
}

write_config() {
  local id="$1" dir voters=()
  dir="$(node_home "$id")"
  for v in "${nodes[@]}"; do voters+=("$v@$host:$(controller_port_of "$v")"); done
  mkdir -p "$dir/data" "$dir/logs"
  cat > "$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=$id
controller.quorum.voters=$(IFS=,; echo "${voters[*]}")
listeners=PLAINTEXT://$host:$(port_of "$id"),CONTROLLER://$host:$(controller_port_of "$id")
advertised.listeners=PLAINTEXT://$host:$(port_of "$id")
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$dir/data
num.partitions=3
default.replication.factor=3
min.insync.replicas=2
$(kraft_common_properties 3 2)
PROPS
  write_log4j2 "$dir"
}

launch() {
  local id="$1" dir
  dir="$(node_home "$id")"
  if pid_alive "$id"; then log "node $id already running"; return 0; fi
  if open_on "$(port_of "$id")"; then log "port $(port_of "$id") is taken by something else"; exit 1; fi
  write_config "$id"
  # With controller.quorum.voters every node is formatted alike (no --standalone).
  format_storage "$dir" "$cluster_id"
  launch_node "$dir" 512m
  log "node $id starting on $host:$(port_of "$id") (pid $!)"
}

wait_ready() {
  local id dir
  for _ in $(seq 1 360); do
    local ready=1
    for id in "$@"; do
      dir="$(node_home "$id")"
      if ! pid_alive "$id"; then died_starting "node $id" "$dir"; fi
      node_started "$dir" && open_on "$(port_of "$id")" || ready=0
    done
    if [ "$ready" = 1 ]; then log "ready: $*"; return 0; fi
    sleep 0.5
  done
  log "timed out waiting for nodes $*; see $home/node*/logs/server.log"
  exit 1
}

start() {
  "$here/kafka-local.sh" install
  # All nodes at once: a controller quorum needs a majority before any broker is ready.
  for id in "${nodes[@]}"; do launch "$id"; done
  wait_ready "${nodes[@]}"
}

stop_node() {
  local id="$1" f
  f="$(node_home "$id")/kafka.pid"
  if ! pid_alive "$id"; then rm -f "$f"; return 0; fi
  stop_pid "$(cat "$f")"
  rm -f "$f"
  log "node $id stopped"
}

stop() {
  # Signal all first so the nodes shut down in parallel rather than one by one.
  for id in "${nodes[@]}"; do
    if pid_alive "$id"; then kill "$(cat "$(node_home "$id")/kafka.pid")" 2>/dev/null || true; fi
  done
  for id in "${nodes[@]}"; do stop_node "$id"; done
}

kill9() {
  local id="$1" f
  f="$(node_home "$id")/kafka.pid"
  pid_alive "$id" || { log "node $id is not running"; exit 1; }
  kill -9 "$(cat "$f")"
  rm -f "$f"
  log "node $id killed with SIGKILL"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  kill9) kill9 "${2:?node id}" ;;
  start-node) launch "${2:?node id}"; wait_ready "$2" ;;
  bootstrap) bootstrap ;;
  *) echo "usage: $0 start|stop|kill9 ID|start-node ID|bootstrap" >&2; exit 2 ;;
esac
