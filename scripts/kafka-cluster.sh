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

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
version="${KAFKA_VERSION:-4.1.1}"
cache="${FASTSTREAM_KAFKA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/faststream-rs/kafka-$version}"
home="${KAFKA_CLUSTER_HOME:-$repo/target/kafka-cluster}"
base="${KAFKA_CLUSTER_PORT:-29092}"
libs="$cache/libs"
host=127.0.0.1
nodes=(1 2 3)
cluster_id="c8Yb2tX9QJ6sT0vW1kLm3A"

log() { echo "kafka-cluster: $*" >&2; }
port_of() { echo $((base + $1 - 1)); }
controller_port_of() { echo $((base + 100 + $1 - 1)); }
port_open() { (exec 3<>"/dev/tcp/$host/$1") 2>/dev/null; }
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
offsets.topic.replication.factor=3
offsets.topic.num.partitions=5
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=3
share.coordinator.state.topic.min.isr=2
share.coordinator.state.topic.num.partitions=1
group.initial.rebalance.delay.ms=0
log.cleaner.dedupe.buffer.size=2097152
log.initial.task.delay.ms=100
log.delete.delay.ms=1000
num.network.threads=2
background.threads=2
PROPS
  cat > "$dir/log4j2.properties" <<PROPS
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = $dir/logs/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.apache.name = org.apache
logger.apache.level = WARN
PROPS
}

launch() {
  local id="$1" dir
  dir="$(node_home "$id")"
  if pid_alive "$id"; then log "node $id already running"; return 0; fi
  if port_open "$(port_of "$id")"; then log "port $(port_of "$id") is taken by something else"; exit 1; fi
  write_config "$id"
  # With controller.quorum.voters every node is formatted alike (no --standalone).
  java -cp "$libs/*" kafka.tools.StorageTool format -t "$cluster_id" \
    -c "$dir/server.properties" --ignore-formatted >"$dir/logs/format.log" 2>&1 \
    || { cat "$dir/logs/format.log" >&2; exit 1; }
  : > "$dir/logs/server.log"
  nohup java -Xms128m -Xmx512m -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -Djava.awt.headless=true -Dlog4j2.configurationFile="$dir/log4j2.properties" \
    -cp "$libs/*" kafka.Kafka "$dir/server.properties" >"$dir/logs/stdout.log" 2>&1 &
  echo $! > "$dir/kafka.pid"
  log "node $id starting on $host:$(port_of "$id") (pid $!)"
}

wait_ready() {
  local id dir
  for _ in $(seq 1 360); do
    local ready=1
    for id in "$@"; do
      dir="$(node_home "$id")"
      if ! pid_alive "$id"; then
        log "node $id exited during start; last lines of its logs:"
        tail -n 30 "$dir/logs/stdout.log" "$dir/logs/server.log" >&2 || true
        exit 1
      fi
      grep -q "Kafka Server started" "$dir/logs/server.log" 2>/dev/null && port_open "$(port_of "$id")" || ready=0
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
  local id="$1" pid f
  f="$(node_home "$id")/kafka.pid"
  if ! pid_alive "$id"; then rm -f "$f"; return 0; fi
  pid="$(cat "$f")"
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null
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
