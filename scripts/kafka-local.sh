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
#   scripts/kafka-local.sh prune     delete the topics nobody created or wrote for an hour
#
# Disk: tests, benchmarks and demos create uniquely named topics and read them back within
# minutes, so the broker keeps data for an hour (log.retention.ms, in kafka/common.sh), and
# `prune` (run after each start and by scripts/test.sh) deletes the topics that nothing created
# or wrote in the last KAFKA_PRUNE_MINUTES (60; 0 disables): without it a long-lived machine
# collected thousands of topics, and the broker's start spent a minute loading them.
#
# Secured listeners (on by default; KAFKA_SECURE=0 leaves only PLAINTEXT), for the security
# tests: SSL on 9094, SASL_SSL with SCRAM-SHA-512 on 9095, SASL_PLAINTEXT with PLAIN and
# OAUTHBEARER (unsecured JWTs, test only) on 9096, and SASL_PLAINTEXT with GSSAPI (Kerberos)
# and SCRAM-SHA-256 on 9097. A CA, the broker's certificate (for 127.0.0.1 and localhost) and
# a client certificate are generated with openssl into $FASTSTREAM_KAFKA_HOME/tls (CA:
# tls/ca.pem). Users: SCRAM-SHA-512 and SCRAM-SHA-256 `alice`/`alice-secret` (created when the
# storage is formatted), PLAIN `alice`/`alice-secret` and `bob`/`bob-secret`, and the Kerberos
# principal `alice@FASTSTREAM.TEST` (keytab $FASTSTREAM_KAFKA_HOME/kerberos/alice.keytab, client
# configuration kerberos/krb5.conf) of a test-only MIT KDC on 127.0.0.1:9088 that `start`
# starts before the broker and `stop` stops after it (scripts/kafka/kerberos.sh).
#
# Environment: KAFKA_VERSION (4.1.1), FASTSTREAM_KAFKA_CACHE (jar cache),
# FASTSTREAM_KAFKA_HOME (data, logs, pid; default target/kafka-local in the repo),
# KAFKA_PORT (9092), KAFKA_CONTROLLER_PORT (9093), KAFKA_SSL_PORT (9094),
# KAFKA_SASL_SSL_PORT (9095), KAFKA_SASL_PLAINTEXT_PORT (9096), KAFKA_KERBEROS_PORT (9097),
# KAFKA_KDC_PORT (9088), KAFKA_SECURE (1), KAFKA_PRUNE_MINUTES (60).
set -euo pipefail

log() { echo "kafka-local: $*" >&2; }

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# repo, version, cache, libs, host, and the helpers both Kafka scripts use.
source "$here/kafka/common.sh"
# The test KDC: kdc_prepare, kdc_start, kdc_stop, kerberos_listener_properties.
source "$here/kafka/kerberos.sh"
home="${FASTSTREAM_KAFKA_HOME:-$repo/target/kafka-local}"
port="${KAFKA_PORT:-9092}"
controller_port="${KAFKA_CONTROLLER_PORT:-9093}"
ssl_port="${KAFKA_SSL_PORT:-9094}"
sasl_ssl_port="${KAFKA_SASL_SSL_PORT:-9095}"
sasl_plain_port="${KAFKA_SASL_PLAINTEXT_PORT:-9096}"
kerberos_port="${KAFKA_KERBEROS_PORT:-9097}"
kdc_port="${KAFKA_KDC_PORT:-9088}"
secure="${KAFKA_SECURE:-1}"
tls="$home/tls"
krb="$home/kerberos"
# The SCRAM credentials the storage is formatted with (see `start`).
scram_users=("SCRAM-SHA-512=[name=alice,password=alice-secret]"
  "SCRAM-SHA-256=[name=alice,password=alice-secret]")
# Test-only secrets of the local broker (the security tests use the same defaults).
store_pass="faststream-test"
cluster_id="5L6g3nShT-eMCtK--X86sw"
# Where the home of the broker last started on this port is written.
pointer="$(dirname "$cache")/broker-$port.home"

port_open() { open_on "$port"; }
secured_ports() { echo "$ssl_port" "$sasl_ssl_port" "$sasl_plain_port" "$kerberos_port"; }
# The secured ports nothing answers on, e.g. `9097` for a broker an older script started.
closed_secured_ports() {
  local p
  for p in $(secured_ports); do open_on "$p" || echo "$p"; done
}
secure_open() { [ -z "$(closed_secured_ports)" ]; }

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

# A CA, the broker's certificate (PKCS#12, for 127.0.0.1 and localhost) and a client
# certificate, all signed by the CA; made once per home.
make_certificates() {
  if [ -f "$tls/.complete" ]; then return 0; fi
  command -v openssl >/dev/null || { log "openssl is required for the secured listeners (or set KAFKA_SECURE=0)"; exit 1; }
  log "generating a test CA and certificates in $tls"
  rm -rf "$tls" && mkdir -p "$tls"
  (
    cd "$tls"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=faststream-rs local test CA" \
      -keyout ca.key -out ca.pem
    for name in broker client; do
      openssl req -newkey rsa:2048 -nodes -subj "/CN=$name" -keyout "$name.key" -out "$name.csr"
      printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > "$name.ext"
      openssl x509 -req -in "$name.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 3650 \
        -extfile "$name.ext" -out "$name.pem"
    done
    openssl pkcs12 -export -in broker.pem -inkey broker.key -certfile ca.pem -name broker \
      -passout "pass:$store_pass" -out broker.p12
  ) >"$home/logs/tls.log" 2>&1 || { cat "$home/logs/tls.log" >&2; exit 1; }
  touch "$tls/.complete"
}

write_config() {
  mkdir -p "$home/data" "$home/logs"
  local listeners="PLAINTEXT://$host:$port,CONTROLLER://$host:$controller_port"
  local advertised="PLAINTEXT://$host:$port"
  local protocols="CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
  if [ "$secure" = 1 ]; then
    local secured="SSL://$host:$ssl_port,SASL_SSL://$host:$sasl_ssl_port,SASL_PLAINTEXT://$host:$sasl_plain_port,KERBEROS://$host:$kerberos_port"
    listeners="$listeners,$secured"
    advertised="$advertised,$secured"
    protocols="$protocols,SSL:SSL,SASL_SSL:SASL_SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,KERBEROS:SASL_PLAINTEXT"
  fi
  cat > "$home/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$host:$controller_port
listeners=$listeners
advertised.listeners=$advertised
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=$protocols
log.dirs=$home/data
num.partitions=1
$(kraft_common_properties 1 1)
PROPS
  if [ "$secure" = 1 ]; then
    cat >> "$home/server.properties" <<PROPS
ssl.keystore.type=PKCS12
ssl.keystore.location=$tls/broker.p12
ssl.keystore.password=$store_pass
ssl.key.password=$store_pass
ssl.truststore.type=PEM
ssl.truststore.location=$tls/ca.pem
listener.name.ssl.ssl.client.auth=requested
listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_plaintext.sasl.enabled.mechanisms=PLAIN,OAUTHBEARER
listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_alice="alice-secret" user_bob="bob-secret";
listener.name.sasl_plaintext.oauthbearer.sasl.jaas.config=org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required unsecuredLoginStringClaim_sub="broker";
listener.name.kerberos.sasl.enabled.mechanisms=GSSAPI,SCRAM-SHA-256
listener.name.kerberos.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
$(kerberos_listener_properties kerberos "$krb")
PROPS
  fi
  write_log4j2 "$home"
}

pid_alive() { [ -f "$home/kafka.pid" ] && kill -0 "$(cat "$home/kafka.pid")" 2>/dev/null; }

start() {
  if port_open; then log "something already answers on $host:$port"; ensure_kdc; check_secure; return 0; fi
  install
  mkdir -p "$home/logs"
  local format_args=() jvm_args=()
  if [ "$secure" = 1 ]; then
    make_certificates
    # The broker logs in to the KDC from its keytab when it starts.
    kdc_prepare "$krb" "$kdc_port"
    kdc_start "$krb"
    jvm_args=("-Djava.security.krb5.conf=$krb/krb5.conf")
    # SCRAM users are created when the storage is formatted: storage formatted without these
    # (an earlier start with KAFKA_SECURE=0, or by a script with fewer users) is formatted
    # again. .scram-users lists the users it was formatted with.
    local users; users="$(printf '%s\n' "${scram_users[@]}")"
    if [ -f "$home/data/meta.properties" ] \
      && [ "$(cat "$home/data/.scram-users" 2>/dev/null)" != "$users" ]; then
      log "re-formatting $home/data to add the SCRAM users"
      rm -rf "$home/data"
    fi
    for user in "${scram_users[@]}"; do format_args+=(--add-scram "$user"); done
  fi
  write_config
  format_storage "$home" "$cluster_id" "${format_args[@]}"
  if [ "$secure" = 1 ]; then echo "$users" > "$home/data/.scram-users"; fi
  log "starting Kafka $version on $host:$port$([ "$secure" = 1 ] && echo ", SSL $ssl_port, SASL_SSL $sasl_ssl_port, SASL_PLAINTEXT $sasl_plain_port, Kerberos $kerberos_port") (files in $home)"
  launch_node "$home" 768m -XX:+ExplicitGCInvokesConcurrent "${jvm_args[@]}"
  # Lets another checkout that reuses this broker find its certificates (`home`).
  mkdir -p "$(dirname "$pointer")" && echo "$home" > "$pointer"
  for _ in $(seq 1 240); do
    if node_started "$home" && port_open \
      && { [ "$secure" != 1 ] || secure_open; }; then
      log "ready (pid $(cat "$home/kafka.pid"))"
      prune
      return 0
    fi
    if ! pid_alive; then died_starting "the broker" "$home"; fi
    sleep 0.5
  done
  log "timed out waiting for the broker; see $home/logs/server.log"
  exit 1
}

# Says so when a broker answers on the plaintext port without the secured listeners.
check_secure() {
  local closed; closed="$(closed_secured_ports | tr '\n' ' ')"
  if [ "$secure" = 1 ] && [ -n "$closed" ]; then
    log "WARNING: the broker on $host:$port has no secured listener on ${closed% };"
    log "  the security tests will fail. Restart it: scripts/kafka-local.sh stop && scripts/kafka-local.sh start"
  fi
}

# Starts the KDC of the running broker (its home's kerberos/) again if it is not running, so
# that Kerberos clients get tickets: the broker itself needs it only when it starts.
ensure_kdc() {
  local running_krb; running_krb="$(running_home)/kerberos"
  if [ "$secure" = 1 ] && [ -f "$running_krb/.complete" ]; then kdc_start "$running_krb"; fi
}

stop() {
  if ! pid_alive; then
    log "no broker started by this script is running"
    rm -f "$home/kafka.pid"
  else
    stop_pid "$(cat "$home/kafka.pid")"
    rm -f "$home/kafka.pid"
    log "stopped"
  fi
  kdc_stop "$krb"
}

status() {
  if port_open; then echo "kafka: answering on $host:$port"; else echo "kafka: nothing on $host:$port"; fi
  if [ "$secure" = 1 ]; then
    for p in $(secured_ports); do
      if open_on "$p"; then echo "secured listener: answering on $host:$p"; else echo "secured listener: nothing on $host:$p"; fi
    done
    echo "CA: $tls/ca.pem"
    if open_on "$kdc_port"; then echo "KDC: answering on $host:$kdc_port"; else echo "KDC: nothing on $host:$kdc_port"; fi
    echo "Kerberos: KRB5_CONFIG=$krb/krb5.conf, client keytab $krb/alice.keytab"
  fi
  if pid_alive; then echo "pid: $(cat "$home/kafka.pid") (started by this script)"; fi
  echo "jars: $libs $([ -f "$libs/.complete" ] && echo installed || echo 'not installed')"
  echo "home: $home"
  port_open
}

# The home (files, tls/) of the broker answering on the port: this checkout's when it started
# it, else the one the last start on this port recorded.
running_home() {
  if pid_alive; then echo "$home"; return 0; fi
  if [ -f "$pointer" ]; then
    local other; other="$(cat "$pointer")"
    if [ -f "$other/kafka.pid" ] && kill -0 "$(cat "$other/kafka.pid")" 2>/dev/null; then
      echo "$other"; return 0
    fi
  fi
  echo "$home"
}

# Deletes the topics of the broker answering on the port (its data in `running_home`) that
# were created more than KAFKA_PRUNE_MINUTES ago and have no data written since: a partition's
# partition.metadata is written once, when the topic is created, and a non-empty *.log file's
# time is its last write. Internal topics (`__*`) are kept.
prune() {
  local minutes="${KAFKA_PRUNE_MINUTES:-60}"
  if [ "$minutes" = 0 ] || ! port_open; then return 0; fi
  local data; data="$(running_home)/data"
  if [ ! -d "$data" ]; then return 0; fi
  local partitions='.*/[^_/][^/]*-[0-9]+' # TOPIC-N (not TOPIC-N.ID-delete, not __*)
  local all fresh stale
  all="$(find "$data" -mindepth 1 -maxdepth 1 -type d -regextype posix-extended -regex "$partitions" \
    -printf '%f\n' | sed 's/-[0-9]*$//' | sort -u)"
  fresh="$({
    find "$data" -mindepth 2 -maxdepth 2 -name partition.metadata -mmin "-$minutes"
    find "$data" -mindepth 2 -maxdepth 2 -name '*.log' -size +0 -mmin "-$minutes"
  } | sed -E 's|/[^/]*$||; s|.*/||; s/-[0-9]+$//' | sort -u)"
  stale="$(comm -23 <(printf '%s\n' "$all") <(printf '%s\n' "$fresh") | sed '/^$/d')"
  if [ -z "$stale" ]; then return 0; fi
  if [ ! -f "$libs/.complete" ]; then log "prune: no Kafka jars in $libs (install first)"; return 0; fi
  log "pruning $(printf '%s\n' "$stale" | wc -l) topics idle for over $minutes minutes"
  # Java's source launcher runs the one-file tool on the broker's own jars: no build step.
  printf '%s\n' "$stale" | java -cp "$libs/*" "$here/kafka/DeleteTopics.java" "$host:$port" \
    || log "WARNING: pruning failed (see above); the topics stay"
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  ensure) if port_open; then log "reusing the broker on $host:$port"; ensure_kdc; check_secure; else start; fi ;;
  stop) stop ;;
  status) status ;;
  home) running_home ;;
  prune) prune ;;
  *) echo "usage: $0 install|start|ensure|stop|status|home|prune" >&2; exit 2 ;;
esac
