#!/usr/bin/env bash
# Installs and runs a real single-node Apache Kafka (KRaft: broker and controller in one JVM)
# on 127.0.0.1:9092, for demos, tests and benchmarks. No Docker: the jars come from Maven
# Central through the machine's Maven and are cached, so later runs start offline.
#
#   scripts/kafka-local.sh install   fetch the jars into the cache (idempotent)
#   scripts/kafka-local.sh start     install if needed, format storage, start, wait until ready
#   scripts/kafka-local.sh ensure    start only when nothing answers on 127.0.0.1:9092
#   scripts/kafka-local.sh stop      stop the broker this script started
#   scripts/kafka-local.sh status    say whether a broker answers and where its files are
#
# Environment: KAFKA_VERSION (4.1.1), FASTSTREAM_KAFKA_CACHE (jar cache),
# FASTSTREAM_KAFKA_HOME (data, logs, pid; default target/kafka-local in the repo),
# KAFKA_PORT (9092) and KAFKA_CONTROLLER_PORT (9093) for a second broker beside the usual one.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
version="${KAFKA_VERSION:-4.1.1}"
cache="${FASTSTREAM_KAFKA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/faststream-rs/kafka-$version}"
home="${FASTSTREAM_KAFKA_HOME:-$repo/target/kafka-local}"
libs="$cache/libs"
host=127.0.0.1
port="${KAFKA_PORT:-9092}"
controller_port="${KAFKA_CONTROLLER_PORT:-9093}"
cluster_id="5L6g3nShT-eMCtK--X86sw"

log() { echo "kafka-local: $*" >&2; }

port_open() { (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; }

install() {
  if [ -f "$libs/.complete" ]; then return 0; fi
  command -v mvn >/dev/null || { log "Maven (mvn) is required to fetch Kafka $version from Maven Central"; exit 1; }
  command -v java >/dev/null || { log "a Java runtime (17+) is required"; exit 1; }
  log "fetching Apache Kafka $version jars from Maven Central into $libs"
  rm -rf "$libs" && mkdir -p "$libs"
  mvn -B -q -f "$here/kafka/pom.xml" -Dkafka.version="$version" \
    org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$libs"
  ls "$libs"/kafka_2.13-*.jar >/dev/null
  touch "$libs/.complete"
  log "installed $(ls "$libs" | wc -l) jars"
}

write_config() {
  mkdir -p "$home/data" "$home/logs"
  cat > "$home/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$host:$controller_port
listeners=PLAINTEXT://$host:$port,CONTROLLER://$host:$controller_port
advertised.listeners=PLAINTEXT://$host:$port
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$home/data
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=5
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
share.coordinator.state.topic.num.partitions=1
group.initial.rebalance.delay.ms=0
log.cleaner.dedupe.buffer.size=2097152
log.initial.task.delay.ms=100
log.delete.delay.ms=1000
num.network.threads=2
background.threads=2
PROPS
  cat > "$home/log4j2.properties" <<PROPS
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = $home/logs/server.log
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

pid_alive() { [ -f "$home/kafka.pid" ] && kill -0 "$(cat "$home/kafka.pid")" 2>/dev/null; }

start() {
  if port_open; then log "something already answers on $host:$port"; return 0; fi
  install
  write_config
  java -cp "$libs/*" kafka.tools.StorageTool format -t "$cluster_id" \
    -c "$home/server.properties" --ignore-formatted >"$home/logs/format.log" 2>&1 \
    || { cat "$home/logs/format.log" >&2; exit 1; }
  : > "$home/logs/server.log"
  log "starting Kafka $version on $host:$port (files in $home)"
  nohup java -Xms128m -Xmx768m -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$home/log4j2.properties" \
    -cp "$libs/*" kafka.Kafka "$home/server.properties" >"$home/logs/stdout.log" 2>&1 &
  echo $! > "$home/kafka.pid"
  for _ in $(seq 1 240); do
    if grep -q "Kafka Server started" "$home/logs/server.log" 2>/dev/null && port_open; then
      log "ready (pid $(cat "$home/kafka.pid"))"
      return 0
    fi
    if ! pid_alive; then
      log "the broker exited during start; last lines of its logs:"
      tail -n 30 "$home/logs/stdout.log" "$home/logs/server.log" >&2 || true
      exit 1
    fi
    sleep 0.5
  done
  log "timed out waiting for the broker; see $home/logs/server.log"
  exit 1
}

stop() {
  if ! pid_alive; then log "no broker started by this script is running"; rm -f "$home/kafka.pid"; return 0; fi
  local pid; pid="$(cat "$home/kafka.pid")"
  kill "$pid"
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
  rm -f "$home/kafka.pid"
  log "stopped"
}

status() {
  if port_open; then echo "kafka: answering on $host:$port"; else echo "kafka: nothing on $host:$port"; fi
  if pid_alive; then echo "pid: $(cat "$home/kafka.pid") (started by this script)"; fi
  echo "jars: $libs $([ -f "$libs/.complete" ] && echo installed || echo 'not installed')"
  echo "home: $home"
  port_open
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  ensure) if port_open; then log "reusing the broker on $host:$port"; else start; fi ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 install|start|ensure|stop|status" >&2; exit 2 ;;
esac
