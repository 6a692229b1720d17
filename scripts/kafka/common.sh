# Shared by scripts/kafka-local.sh and scripts/kafka-cluster.sh (sourced, not run): the jar
# cache, the loopback probe, the parts of a KRaft node's configuration they have in common,
# and formatting, launching and stopping one node. The caller sets `here` (its scripts/
# folder) and defines `log` before sourcing this file.
#
# A node's files live in one folder: server.properties, log4j2.properties, kafka.pid, data/
# and logs/ (format.log, server.log, stdout.log).

repo="$(cd "$here/.." && pwd)"
version="${KAFKA_VERSION:-4.1.1}"
cache="${FASTSTREAM_KAFKA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/faststream-rs/kafka-$version}"
libs="$cache/libs"
host=127.0.0.1

# Whether something accepts connections on $host:PORT.
open_on() { (exec 3<>"/dev/tcp/$host/$1") 2>/dev/null; }

# The server.properties lines every node has, after its listeners, log.dirs and partition
# settings: internal topics replicated REPLICAS times with MIN_ISR in sync, small thread pools
# and delays for tests, and a small disk: data is kept for an hour (nothing reads a test topic
# later), checked every minute, in segments of 64 MB so that retention can delete a large
# benchmark topic part by part (Kafka also deletes an expired active segment), and a start
# loads many partitions with 4 threads.
kraft_common_properties() {
  local replicas="$1" min_isr="$2"
  cat <<PROPS
offsets.topic.replication.factor=$replicas
offsets.topic.num.partitions=5
transaction.state.log.replication.factor=$replicas
transaction.state.log.min.isr=$min_isr
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=$replicas
share.coordinator.state.topic.min.isr=$min_isr
share.coordinator.state.topic.num.partitions=1
group.initial.rebalance.delay.ms=0
log.cleaner.dedupe.buffer.size=2097152
log.initial.task.delay.ms=100
log.delete.delay.ms=1000
log.retention.ms=3600000
log.retention.check.interval.ms=60000
log.segment.bytes=67108864
num.recovery.threads.per.data.dir=4
num.network.threads=2
background.threads=2
PROPS
}

# Writes DIR/log4j2.properties: the node's log goes to DIR/logs/server.log.
write_log4j2() {
  local dir="$1"
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

# Formats the storage of the node in DIR as cluster CLUSTER_ID (a formatted one is kept),
# passing any further arguments to the StorageTool; exits with its output on failure.
format_storage() {
  local dir="$1" cluster_id="$2"
  shift 2
  java -cp "$libs/*" kafka.tools.StorageTool format -t "$cluster_id" \
    -c "$dir/server.properties" --ignore-formatted "$@" >"$dir/logs/format.log" 2>&1 \
    || { cat "$dir/logs/format.log" >&2; exit 1; }
}

# Starts the node in DIR in the background with at most HEAP of heap (e.g. 512m) and any
# further JVM options, on an empty server.log, and writes its pid to DIR/kafka.pid (`$!` is
# that pid after).
launch_node() {
  local dir="$1" heap="$2"
  shift 2
  : > "$dir/logs/server.log"
  nohup java -Xms128m "-Xmx$heap" -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 "$@" \
    -Djava.awt.headless=true -Dlog4j2.configurationFile="$dir/log4j2.properties" \
    -cp "$libs/*" kafka.Kafka "$dir/server.properties" >"$dir/logs/stdout.log" 2>&1 &
  echo $! > "$dir/kafka.pid"
}

# Whether the node in DIR has logged that it started.
node_started() { grep -q "Kafka Server started" "$1/logs/server.log" 2>/dev/null; }

# Says that WHAT exited during its start, with the last lines of the logs in DIR, and exits.
died_starting() {
  local what="$1" dir="$2"
  log "$what exited during start; last lines of its logs:"
  tail -n 30 "$dir/logs/stdout.log" "$dir/logs/server.log" >&2 || true
  exit 1
}

# Stops process PID: SIGTERM, then SIGKILL when it still runs after 30 s.
stop_pid() {
  local pid="$1"
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid" 2>/dev/null || true; fi
}
