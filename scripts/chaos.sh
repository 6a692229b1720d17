#!/usr/bin/env bash
# The chaos suite (issue 8, item 6): a faststream app (chaos/, binary faststream-chaos) reads
# pre-filled records carrying a sequence number and publishes each one again; the suite kills
# and restarts the app and brokers mid-stream, then reads the output and dead-letter topics to
# their end and counts records in, out, lost and duplicated. One table row per scenario, exit
# code 1 if any scenario fails.
#
#   scripts/chaos.sh                 all 15 scenarios, N records each (default 100000)
#   scripts/chaos.sh --quick         small N, scenarios 1 2 3 5 6 9 10 (the CI variant)
#   scripts/chaos.sh --quick-part 1  the quick run's first half (1 2 5 6), or 2 (3 9 10): CI
#                                    runs both at once, each half about half the wall time
#   scripts/chaos.sh --only 3        one scenario (repeat or comma-separate for more)
#   scripts/chaos.sh --count 20000   another N
#
# Scenarios 10-13 run the app exactly-once and verify with a read_committed reader.
# Scenario 14 runs the app on Avro through a schema registry and stops the registry for 10 s:
# its own Apicurio Registry (scripts/registry-local.sh, KafkaSQL storage on the broker on 9092,
# so schemas survive the restart) on 127.0.0.1:18081, TLS 18082, management 18083
# (CHAOS_REGISTRY_PORT; the tests' registry on 8081 is never touched). It takes 2-3 minutes
# whatever N (two registry starts of 20-40 s each on a loaded machine, and the outage), so
# --quick leaves it out.
# Scenarios 1, 2, 4, 5, 6, 8, 10, 11, 12, 14 use the broker on 127.0.0.1:9092 (started with kafka-local.sh
# when none answers, and stopped again). Scenarios 3, 7 and 13 kill brokers, so they run their
# own: a single node on 19092 (controller 19093; CHAOS_SINGLE_PORT; below Linux's ephemeral
# port range 32768-60999, where a client connection's local end can hold the port: 39092 made
# scenario 3's broker fail to bind once) and a 3-node cluster on
# 29092-29094 (controllers 29192-29194; CHAOS_CLUSTER_PORT); the
# broker on 9092 is never stopped. Each scenario uses fresh uuid-named topics and groups.
# Logs: target/chaos/<run>/. Environment: CHAOS_DELAY_US (handler work per record),
# CHAOS_PROFILE (debug or release build of the tool), CHAOS_LIBRDKAFKA_DEBUG (librdkafka debug
# contexts for the app, e.g. cgrp,fetch), CARGO_TARGET_DIR.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo="$(pwd)"

count=100000
quick=0
part=""
only=()
# The quick run, in two halves of about the same wall time (the broker outage of scenario 3
# alone is as long as 1, 2, 5 and 6 together).
quick_parts=("1 2 5 6" "3 9 10")
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1; count=4000 ;;
    --quick-part) quick=1; count=4000; part="$2"; shift ;;
    --only) only+=(${2//,/ }); shift ;;
    --count) count="$2"; shift ;;
    -h|--help) sed -n '2,31p' "$0"; exit 0 ;;
    *) echo "chaos: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
if [ ${#only[@]} -eq 0 ]; then
  case "$quick:$part" in
    1:) only=(${quick_parts[0]} ${quick_parts[1]}) ;;
    1:1 | 1:2) only=(${quick_parts[$((part - 1))]}) ;;
    1:*) echo "chaos: --quick-part is 1 or 2" >&2; exit 2 ;;
    *) only=(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15) ;;
  esac
fi
# Handler work per record: long enough that a run can be interrupted mid-stream.
delay_us="${CHAOS_DELAY_US:-$([ "$quick" = 1 ] && echo 4000 || echo 1000)}"
profile="${CHAOS_PROFILE:-debug}"
target_dir="${CARGO_TARGET_DIR:-$repo/target}"
# The pid tells apart two runs started in the same second (CI runs the two quick halves at once).
run_dir="$repo/target/chaos/$(date -u +%Y%m%dT%H%M%SZ)-$$"
mkdir -p "$run_dir"
table="$run_dir/table.md"
shared=127.0.0.1:9092
single_port="${CHAOS_SINGLE_PORT:-19092}"
single=127.0.0.1:$single_port
cluster_port="${CHAOS_CLUSTER_PORT:-29092}"
single_home="$run_dir/kafka-single"
cluster_home="$run_dir/kafka-cluster"
# Scenario 14's schema registry: its own ports (the tests use 8081, 8444 and 9001).
registry_port="${CHAOS_REGISTRY_PORT:-18081}"
registry_home="$run_dir/registry"
started_shared=0
app_pids=()
failed=0

log() { echo "chaos: $*" >&2; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

# restart_steps LOG LINE KILLED_AT: in seconds after the kill, when the app restarted after
# it reached each step of its start, read from its log after line LINE: the process up, its
# subscriber started (after an exactly-once subscriber's producer registered its id), its
# partitions assigned. Says which step a slow restart waited in.
restart_steps() {
  local log_file="$1" from="$2" killed_at="$3" out="" step label pattern line stamp restarted
  restarted="$(tail -n +"$((from + 1))" "$log_file" | sed 's/\x1b\[[0-9;]*m//g')"
  for step in "up:chaos app starting" "subscriber:consuming \[" "assigned:partitions assigned"; do
    label="${step%%:*}"; pattern="${step#*:}"
    line="$(grep -m1 -- "$pattern" <<<"$restarted")"
    if stamp="$(date -d "${line%% *}" +%s.%N 2>/dev/null)" && [ -n "$line" ]; then
      out+="$label $(elapsed "$killed_at" "$stamp"), "
    else
      out+="$label ?, "
    fi
  done
  echo "${out%, } s"
}

cleanup() {
  local pid
  for pid in "${app_pids[@]}"; do kill -9 "$pid" 2>/dev/null; done
  if [ -f "$single_home/kafka.pid" ]; then
    FASTSTREAM_KAFKA_HOME="$single_home" KAFKA_PORT="$single_port" KAFKA_CONTROLLER_PORT=$((single_port + 1)) KAFKA_SECURE=0 \
      scripts/kafka-local.sh stop >/dev/null 2>&1
  fi
  if [ -d "$cluster_home" ]; then
    KAFKA_CLUSTER_HOME="$cluster_home" KAFKA_CLUSTER_PORT="$cluster_port" scripts/kafka-cluster.sh stop >/dev/null 2>&1
  fi
  if [ -f "$registry_home/registry.pid" ]; then chaos_registry stop >/dev/null 2>&1; fi
  if [ "$started_shared" = 1 ]; then scripts/kafka-local.sh stop; fi
  # Broker data of the scenario brokers is disposable; logs stay.
  rm -rf "$single_home/data" "$cluster_home"/node*/data
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "building faststream-chaos ($profile)"
build_flags=(-p faststream-chaos -q)
[ "$profile" = release ] && build_flags+=(--release)
cargo build "${build_flags[@]}" || exit 1
bin="$target_dir/$profile/faststream-chaos"

if ! (exec 3<>/dev/tcp/127.0.0.1/9092) 2>/dev/null; then
  scripts/kafka-local.sh start && started_shared=1 || exit 1
fi

# tool BOOTSTRAP ARGS...: the chaos tool with its logs in the run's tool.log.
tool() { local b="$1"; shift; "$bin" --bootstrap "$b" "$@" 2>>"$run_dir/tool.log"; }

# fresh NAME: new topic and group names in $in, $out, $dlt, $group.
fresh() {
  local id; id="$(cat /proc/sys/kernel/random/uuid | tr -d -)"
  in="chaos-$1-in-$id"; out="chaos-$1-out-$id"; dlt="$in-dlt"; group="chaos-$1-$id"
}

# topics BOOTSTRAP PARTITIONS REPLICATION [OUTPUT CONFIGS...]: creates $in, $out, $dlt.
topics() {
  local b="$1" p="$2" r="$3"; shift 3
  local extra=()
  [ "$r" -gt 1 ] && extra=(--config min.insync.replicas=2)
  tool "$b" create --topic "$in" --partitions "$p" --replication "$r" "${extra[@]}" &&
    tool "$b" create --topic "$out" --partitions "$p" --replication "$r" "${extra[@]}" "$@" &&
    tool "$b" create --topic "$dlt" --partitions 1 --replication "$r" "${extra[@]}"
}

# start_app BOOTSTRAP LOGNAME ARGS...: starts the app in the background; its pid in $app_pid.
start_app() {
  local b="$1" name="$2"; shift 2
  "$bin" --bootstrap "$b" app --input "$in" --output "$out" --group "$group" \
    --delay-us "$delay_us" "$@" >>"$run_dir/$name.log" 2>&1 &
  app_pid=$!
  app_pids+=("$app_pid")
}

# stop_app PID: SIGTERM, wait (at most 60 s); returns the app's exit code (137 if killed).
stop_app() {
  local pid="$1"
  kill -TERM "$pid" 2>/dev/null
  for _ in $(seq 1 600); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then log "app $pid ignored SIGTERM for 60 s"; kill -9 "$pid"; fi
  wait "$pid" 2>/dev/null
}

kill9_app() { kill -9 "$1" 2>/dev/null; wait "$1" 2>/dev/null; true; }

# timeout for draining all N records
drain_timeout() { echo $((120 + count * delay_us / 1000000 * 3)); }

wait_done() { tool "$1" wait-committed --group "$group" --topic "$in" --timeout "$(drain_timeout)"; }
wait_out() { tool "$1" wait-count --topic "$out" --at-least "$2" --timeout "$(drain_timeout)"; }
committed_sum() { tool "$1" committed --group "$group" --topic "$in" | cut -d' ' -f1; }

# field LINE KEY: the value of KEY=... in a verify line.
field() { tr ' ' '\n' <<<"$1" | sed -n "s/^$2=//p"; }

echo "| scenario | in | out | dead letters | lost | duplicated | extra | result |" | tee "$table"
echo "|---|---|---|---|---|---|---|---|" | tee -a "$table"

# row NAME VERIFY_LINE EXTRA PASS(0/1)
row() {
  local name="$1" v="$2" extra="$3" ok="$4" result=PASS
  [ "$ok" = 1 ] || { result=FAIL; failed=1; }
  printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$name" "$(field "$v" in)" "$(field "$v" out)" \
    "$(field "$v" dlt)" "$(field "$v" lost)" "$(field "$v" dup)" "$extra" "$result" | tee -a "$table"
}

verify() { local b="$1"; shift; tool "$b" verify --input "$in" --output "$out" --count "$count" --group "$group" "$@"; }

# The app is mid-stream when its group has committed less than the whole input.
mid_stream() { before_end "$(committed_sum "$1")"; }
# before_end COMMITTED: whether a committed sum is short of the whole input.
before_end() { [ -n "$1" ] && [ "$1" -lt "$count" ]; }

# kill_three_times NAME LABEL EXTRA APP_ARGS...: the app killed with SIGKILL three times
# mid-stream, restarted after each kill, then run to the end; 0 lost. With --exactly-once in
# APP_ARGS also 0 duplicated, and after each kill new output visible to a read_committed
# reader within 20 s.
kill_three_times() {
  local name="$1" label="$2" extra="$3"; shift 3
  local exactly=0; [[ " $* " == *" --exactly-once "* ]] && exactly=1
  fresh "$name"
  topics $shared 4 1 && tool $shared fill --topic "$in" --count "$count" || return 1
  local kills=() visible=() steps=() ok=1 rate=0 k killed_at reader from
  start_app $shared "$name-app" "$@"
  for k in 1 2 3; do
    # Each kill waits for fresh progress: output grows by a fifth of N per round, and by a
    # tenth of N at least since the restart.
    local target=$((count * k / 5))
    [ "$k" -gt 1 ] && [ $((kills[-1] + count / 10)) -gt "$target" ] && target=$((kills[-1] + count / 10))
    wait_out $shared "$target" || return 1
    if [ "$k" = 1 ]; then
      # The app's rate over one second before the first kill: the duplicates compare as
      # seconds of work.
      local c0 t0 c1 t1
      c0="$(tool $shared count --topic "$out")"; t0="$(now)"; sleep 1
      c1="$(tool $shared count --topic "$out")"; t1="$(now)"
      rate="$(awk -v a="$c0" -v b="$c1" -v s="$t0" -v e="$t1" 'BEGIN { printf "%.0f", (b - a) / (e - s) }')"
    fi
    kill9_app "$app_pid"; killed_at="$(date +%s.%N)"
    # How far the input was committed: the kill must come before the end. Exactly-once: it is
    # also how far the outputs got (with the input); else the output's records say that.
    local committed; committed="$(committed_sum $shared)"
    before_end "$committed" || { log "scenario $name: kill $k came after the end"; ok=0; }
    if [ "$exactly" = 1 ]; then kills+=("$committed"); else kills+=("$(tool $shared count --topic "$out")"); fi
    log "scenario $name: kill $k: suite's reads took $(elapsed "$killed_at" "$(now)") s"
    # A read_committed reader starting at the output's end: how long until the restarted app's
    # output is visible again (an open transaction of the killed app holds the end back).
    tool $shared wait-visible --topic "$out" --since "$killed_at" --timeout 60 >"$run_dir/$name-visible" &
    reader=$!
    from="$(wc -l <"$run_dir/$name-app.log")"
    start_app $shared "$name-app" "$@"
    wait "$reader" || { log "scenario $name: no new output after kill $k"; ok=0; }
    visible+=("$(cat "$run_dir/$name-visible")")
    steps+=("kill $k: $(restart_steps "$run_dir/$name-app.log" "$from" "$killed_at")")
    log "scenario $name: ${steps[-1]}; new output visible ${visible[-1]:-?} s after the kill"
  done
  wait_done $shared || return 1
  stop_app "$app_pid"
  local v; v="$(verify $shared)"
  [ "$(field "$v" lost)" = 0 ] && [ "$(field "$v" unexpected)" = 0 ] || ok=0
  local per_kill; per_kill="$(awk -v d="$(field "$v" dup)" -v r="$rate" 'BEGIN { if (r > 0) printf "%.2f", d / 3 / r; else print "?" }')"
  local seen="new output visible $(IFS=/; echo "${visible[*]}") s after each kill"
  if [ "$exactly" = 1 ]; then
    [ "$(field "$v" dup)" = 0 ] || ok=0
    local s slow=0; for s in "${visible[@]}"; do awk -v s="$s" 'BEGIN { exit !(s != "" && s <= 20) }' || slow=1; done
    # A slow restart: which step of the restarts it waited in.
    [ "$slow" = 1 ] && { ok=0; seen+=" (restarts: $(IFS=';'; echo "${steps[*]}"))"; }
    row "$label" "$v" "killed at committed in=$(IFS=/; echo "${kills[*]}"); $seen; $(aborted_line $shared)$extra" $ok
  else
    row "$label" "$v" "killed at out=$(IFS=/; echo "${kills[*]}"); ${rate} records/s, duplicates ${per_kill} s of work per kill; $seen$extra" $ok
  fi
}

# aborted_line BOOTSTRAP: what a read_uncommitted reader finds in the output besides the
# committed records: the aborted transactions' records, which a read_committed reader skips.
aborted_line() {
  local u; u="$(verify "$1" --read-uncommitted)"
  echo "a read_uncommitted reader sees $(field "$u" out) records, $(field "$u" dup) duplicated (aborted transactions)"
}

scenario_1() { kill_three_times s1 "1. kill -9 app x3, restart" ""; }

# Scenario 9: scenario 1 with 16 key-ordered lanes per partition, each record's work 16 times longer
# (about the same nominal throughput; RELIABILITY.md compares the duplicates per second of
# work). The records lanes finished above the committed offset are in the commit's metadata,
# and a restart skips them.
scenario_9() {
  local delay_us=$((delay_us * 16))
  kill_three_times s9 "9. kill -9 app x3 with lanes = 16, restart" \
    "; lanes = 16, handler work ${delay_us} us" --lanes 16
}

# sigterm_restart NAME LABEL APP_ARGS...: SIGTERM mid-stream, then a restart; 0 lost,
# 0 duplicated, exit code 0 both times.
sigterm_restart() {
  local name="$1" label="$2"; shift 2
  fresh "$name"
  topics $shared 4 1 && tool $shared fill --topic "$in" --count "$count" || return 1
  local ok=1 code1 code2
  start_app $shared "$name-app" "$@"
  wait_out $shared $((count / 3)) || return 1
  stop_app "$app_pid"; code1=$?
  mid_stream $shared || { log "scenario $name: SIGTERM came after the end"; ok=0; }
  start_app $shared "$name-app" "$@"
  wait_done $shared || return 1
  stop_app "$app_pid"; code2=$?
  local v; v="$(verify $shared)"
  [ "$(field "$v" lost)" = 0 ] && [ "$(field "$v" dup)" = 0 ] && [ "$(field "$v" unexpected)" = 0 ] &&
    [ "$code1" = 0 ] && [ "$code2" = 0 ] || ok=0
  row "$label" "$v" "exit codes $code1, $code2" $ok
}

scenario_2() { sigterm_restart s2 "2. SIGTERM app, restart"; }

single_broker() {
  FASTSTREAM_KAFKA_HOME="$single_home" KAFKA_PORT="$single_port" KAFKA_CONTROLLER_PORT=$((single_port + 1)) KAFKA_SECURE=0 \
    scripts/kafka-local.sh "$1" 2>>"$run_dir/kafka-single.log"
}

port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

scenario_3() {
  # kafka-local.sh reuses whatever answers on its port: this scenario must own its broker.
  if port_taken "$single_port" || port_taken $((single_port + 1)); then
    log "scenario 3: port $single_port or $((single_port + 1)) is taken; set CHAOS_SINGLE_PORT"; return 1
  fi
  single_broker start || return 1
  fresh s3
  topics $single 4 1 && tool $single fill --topic "$in" --count "$count" || return 1
  local ok=1 pid
  # librdkafka's default session timeout (45 s): the group membership outlives a 10 s outage.
  start_app $single s3-app --session-timeout-ms 45000; pid=$app_pid
  wait_out $single $((count / 4)) || return 1
  # The output before the outage, counted before the kill: the app keeps handling what it
  # fetched while the broker is down, and its producer delivers all of that the moment the
  # broker is back, so a count taken after the restart can already be the whole output (and
  # waiting for one more record would wait forever).
  local before; before="$(tool $single count --topic "$out")"
  kill -9 "$(cat "$single_home/kafka.pid")" && rm -f "$single_home/kafka.pid"
  local killed_at; killed_at="$(now)"
  sleep 10   # the outage itself, not a synchronisation
  kill -0 "$pid" 2>/dev/null || { log "scenario 3: the app died during the outage"; ok=0; }
  single_broker start || return 1
  local up; up="$(now)"
  wait_out $single $((before + 1)) || return 1
  local resumed; resumed="$(now)"
  wait_done $single || return 1
  kill -0 "$pid" 2>/dev/null || { log "scenario 3: the app is gone"; ok=0; }
  stop_app "$pid"
  local v; v="$(verify $single)"
  [ "$(field "$v" lost)" = 0 ] && [ "$(field "$v" unexpected)" = 0 ] || ok=0
  [ "$before" -lt "$count" ] || { log "scenario 3: the outage came after the end"; ok=0; }
  row "3. kill -9 broker 10 s, restart" "$v" "app stayed up; output resumed $(elapsed "$up" "$resumed") s after the broker was back ($(elapsed "$killed_at" "$resumed") s after the kill)" $ok
  single_broker stop
}

# Waits until the app log NAME shows N "partitions assigned" lines (group joined).
wait_assigned() {
  local name="$1" n="$2"
  for _ in $(seq 1 300); do
    [ "$(grep -c "partitions assigned" "$run_dir/$name.log" 2>/dev/null)" -ge "$n" ] && return 0
    sleep 0.1
  done
  log "no assignment in $name.log"; return 1
}

scenario_4() {
  # 4a: a graceful leave alone. The three members join before any input exists.
  fresh s4a
  topics $shared 6 1 || return 1
  local a b c ok=1 code
  start_app $shared s4a-app1; a=$app_pid; wait_assigned s4a-app1 1 || return 1
  start_app $shared s4a-app2; b=$app_pid; wait_assigned s4a-app2 1 || return 1
  start_app $shared s4a-app3; c=$app_pid; wait_assigned s4a-app3 1 || return 1
  tool $shared fill --topic "$in" --count "$count" || return 1
  wait_out $shared $((count / 3)) || return 1
  stop_app "$a"; code=$?
  mid_stream $shared || { log "scenario 4a: the leave came after the end"; ok=0; }
  wait_done $shared || return 1
  stop_app "$b"; stop_app "$c"
  local v; v="$(verify $shared)"
  [ "$(field "$v" lost)" = 0 ] && [ "$(field "$v" dup)" = 0 ] && [ "$(field "$v" unexpected)" = 0 ] && [ "$code" = 0 ] || ok=0
  row "4a. 3 instances, graceful leave" "$v" "leaver's exit code $code" $ok

  # 4b: a join and a kill -9 (duplicates allowed: the killed member's uncommitted work).
  fresh s4b
  topics $shared 6 1 && tool $shared fill --topic "$in" --count "$count" || return 1
  ok=1
  start_app $shared s4b-app1; a=$app_pid
  start_app $shared s4b-app2; b=$app_pid
  wait_out $shared $((count / 4)) || return 1
  local joined killed
  joined="$(tool $shared count --topic "$out")"
  start_app $shared s4b-app3; c=$app_pid
  wait_assigned s4b-app3 1 || return 1
  wait_out $shared $((count / 2)) || return 1
  kill9_app "$a"
  killed="$(tool $shared count --topic "$out")"
  mid_stream $shared || { log "scenario 4b: the kill came after the end"; ok=0; }
  wait_done $shared || return 1
  stop_app "$b"; stop_app "$c"
  v="$(verify $shared)"
  [ "$(field "$v" lost)" = 0 ] && [ "$(field "$v" unexpected)" = 0 ] || ok=0
  row "4b. 3 instances, join + kill -9" "$v" "joined at out=$joined, killed at out=$killed" $ok
}

scenario_5() {
  fresh s5
  topics $shared 4 1 && tool $shared fill --topic "$in" --count "$count" --poison-every 100 || return 1
  local ok=1
  start_app $shared s5-app --attempts 3 --then dlt --backoff-ms 5
  wait_done $shared || return 1
  stop_app "$app_pid"
  local v; v="$(verify $shared --dlt "$dlt" --dlt-attempts 3 --poison-every 100)"
  local poison=$(( (count + 50) / 100 ))
  [ "$(field "$v" lost)" = 0 ] && [ "$(field "$v" unexpected)" = 0 ] && [ "$(field "$v" dlt_bad)" = 0 ] &&
    [ "$(field "$v" dlt)" -ge "$poison" ] || ok=0
  row "5. 1% poison, 3 attempts, DLT" "$v" "$(field "$v" dlt) dead letters, $(field "$v" dlt_bad) with wrong or missing headers" $ok
}

scenario_6() {
  fresh s6
  # One record (seq N/2) makes a 5,000-byte output; the output topic takes 2,000 bytes.
  topics $shared 2 1 --config max.message.bytes=2000 &&
    tool $shared fill --topic "$in" --count "$count" --big-every "$count" || return 1
  local big=$((count / 2)) ok=1
  local part=$((big % 2)) offset=$((big / 2))
  # Phase 1, policy "2 attempts then stop": the refused record's offset stays uncommitted.
  # batch.size 1000: librdkafka refuses whole batches over the topic's limit (see RELIABILITY.md).
  start_app $shared s6-app --attempts 2 --then stop --batch-bytes 1000
  tool $shared wait-committed --group "$group" --topic "$in" --target "$part=$offset" \
    --timeout "$(drain_timeout)" || return 1
  stop_app "$app_pid"
  # Read after the graceful shutdown's final commit: it too must leave the record uncommitted.
  local held; held="$(tool $shared committed --group "$group" --topic "$in")"
  local held_offset; held_offset="$(cut -d' ' -f2 <<<"$held" | cut -d, -f$((part + 1)))"
  [ "$held_offset" = "$offset" ] || { log "scenario 6: committed $held, expected $part=$offset"; ok=0; }
  # Phase 2, policy "2 attempts then dead letter": the record ends in the DLT, all committed.
  start_app $shared s6-app --attempts 2 --then dlt --batch-bytes 1000
  wait_done $shared || return 1
  stop_app "$app_pid"
  local v; v="$(verify $shared --dlt "$dlt" --big-every "$count")"
  [ "$(field "$v" lost)" = 0 ] && [ "$(field "$v" unexpected)" = 0 ] && [ "$(field "$v" dlt_bad)" = 0 ] &&
    [ "$(field "$v" dlt)" -ge 1 ] || ok=0
  row "6. refused publish (5 kB > max.message.bytes 2 kB)" "$v" "then_stop held partition $part at offset $offset, the refused record; then_dead_letter sent it to the DLT" $ok
}

cluster() {
  KAFKA_CLUSTER_HOME="$cluster_home" KAFKA_CLUSTER_PORT="$cluster_port" scripts/kafka-cluster.sh "$@" \
    2>>"$run_dir/kafka-cluster.log"
}

# leader_kill NAME LABEL VICTIM APP_ARGS...: on the 3-node cluster, a broker killed with
# SIGKILL mid-stream: VICTIM `output` is the one leading output partition 0, `group` the one
# coordinating the app's consumer group; 0 lost (with --exactly-once also 0 duplicated).
leader_kill() {
  local name="$1" label="$2" victim="$3"; shift 3
  local exactly=0; [[ " $* " == *" --exactly-once "* ]] && exactly=1
  cluster start || return 1
  local b; b="$(cluster bootstrap)"
  fresh "$name"
  topics "$b" 3 3 && tool "$b" fill --topic "$in" --count "$count" || return 1
  local ok=1
  # librdkafka's default session timeout (45 s): a broker failure is no reason to leave the group.
  start_app "$b" "$name-app" --session-timeout-ms 45000 "$@"
  wait_out "$b" $((count / 4)) || return 1
  local leader what
  case "$victim" in
    output) leader="$(tool "$b" leader --topic "$out" --partition 0)"; what="leader of output[0]" ;;
    group) leader="$(tool "$b" group-coordinator --group "$group")"; what="coordinator of the app's group" ;;
  esac
  [ -n "$leader" ] || return 1
  local killed_at before; killed_at="$(now)"
  cluster kill9 "$leader" || return 1
  before="$(tool "$b" count --topic "$out")"
  # New output after the kill: visible to a read_committed reader (end offsets alone would
  # count an exactly-once app's aborted records too).
  local visible; visible="$(tool "$b" wait-visible --topic "$out" --since "$killed_at" --timeout "$(drain_timeout)")" || return 1
  wait_done "$b" || return 1
  # The graceful stop after the fault exits at once, with 0 (a call librdkafka never returned
  # from once kept the exactly-once app from exiting).
  local code=0; stop_app "$app_pid" || code=$?
  [ "$code" = 0 ] || { log "scenario $name: the app's exit code after SIGTERM was $code"; ok=0; }
  local v; v="$(verify "$b")"
  [ "$(field "$v" lost)" = 0 ] && [ "$(field "$v" unexpected)" = 0 ] || ok=0
  [ "$before" -lt "$count" ] || { log "scenario $name: the kill came after the end"; ok=0; }
  local extra="killed node $leader ($what); output resumed $visible s later; exit code $code after SIGTERM"
  if [ "$exactly" = 1 ]; then
    [ "$(field "$v" dup)" = 0 ] || ok=0
    extra="$extra; $(aborted_line "$b")"
  fi
  row "$label" "$v" "$extra" $ok
  cluster stop
}

scenario_7() { leader_kill s7 "7. 3 brokers (RF 3, min ISR 2), leader kill -9" output; }

scenario_8() {
  fresh s8
  topics $shared 4 1 && tool $shared fill --topic "$in" --count "$count" --poison-every 100 || return 1
  # The app's retry topics (it creates them): poison records wait 2 s, then 4 s, then go to
  # the dead letters; the kills come while some wait.
  local retry1="$in-$group-retry-2000" retry2="$in-$group-retry-4000"
  local waiting=() ok=1 k w
  for k in 1 2 3; do
    start_app $shared s8-app --retry-topics-ms 2000,4000 --then dlt
    wait_out $shared $((count * k / 5)) || return 1
    # Records that entered the retry topics and have not reached the dead letters yet.
    w=$(( $(tool $shared count --topic "$retry1") - $(tool $shared count --topic "$dlt") ))
    kill9_app "$app_pid"
    mid_stream $shared || { log "scenario 8: kill $k came after the end"; ok=0; }
    [ "$w" -gt 0 ] || { log "scenario 8: kill $k came with no record waiting in a retry topic"; ok=0; }
    waiting+=("$w")
  done
  start_app $shared s8-app --retry-topics-ms 2000,4000 --then dlt
  # Input, then each retry topic committed to its end: every retry record acknowledged before
  # its input was committed, so the next topic's end is final once the one before is done.
  wait_done $shared || return 1
  for t in "$retry1" "$retry2"; do
    tool $shared wait-committed --group "$group" --topic "$t" --timeout "$(drain_timeout)" || return 1
  done
  stop_app "$app_pid"
  local v; v="$(verify $shared --dlt "$dlt" --dlt-attempts 3 --poison-every 100)"
  local poison=$(( (count + 50) / 100 ))
  [ "$(field "$v" lost)" = 0 ] && [ "$(field "$v" unexpected)" = 0 ] && [ "$(field "$v" dlt_bad)" = 0 ] &&
    [ "$(field "$v" dlt)" -ge "$poison" ] || ok=0
  row "8. kill -9 x3 while records wait in retry topics (1% poison, retry 2 s, 4 s, DLT)" "$v" "waiting at each kill: $(IFS=/; echo "${waiting[*]}"); $(field "$v" dlt) dead letters, $(field "$v" dlt_bad) with wrong or missing headers" $ok
}

# Scenarios 10-13: the exactly-once app (--exactly-once: outputs and input offsets in one
# transaction every 100 ms), each instance with its own FASTSTREAM_INSTANCE_ID (the
# transactional id is {group}-{instance}); a read_committed reader must find every input
# record's output once: 0 lost, 0 duplicated.
eo=(--exactly-once --commit-interval-ms 100)

scenario_10() {
  FASTSTREAM_INSTANCE_ID=solo kill_three_times s10 "10. exactly-once: kill -9 app x3, restart" "" "${eo[@]}"
}

scenario_11() {
  FASTSTREAM_INSTANCE_ID=solo sigterm_restart s11 "11. exactly-once: SIGTERM app, restart" "${eo[@]}"
}

# Scenario 12: three exactly-once instances: two run, a third joins (its rebalance commits the
# open transactions before the revoke), one is killed with SIGKILL and restarted under its
# instance id (fencing the dead one and aborting its open transaction), one leaves gracefully.
scenario_12() {
  fresh s12
  topics $shared 6 1 && tool $shared fill --topic "$in" --count "$count" || return 1
  local a b c ok=1 code killed_at reader at=()
  FASTSTREAM_INSTANCE_ID=a start_app $shared s12-app-a "${eo[@]}"; a=$app_pid
  FASTSTREAM_INSTANCE_ID=b start_app $shared s12-app-b "${eo[@]}"; b=$app_pid
  wait_out $shared $((count / 5)) || return 1
  at+=("join at in=$(committed_sum $shared)")
  FASTSTREAM_INSTANCE_ID=c start_app $shared s12-app-c "${eo[@]}"; c=$app_pid
  wait_assigned s12-app-c 1 || return 1
  wait_out $shared $((count * 2 / 5)) || return 1
  at+=("kill -9 of a at in=$(committed_sum $shared)")
  kill9_app "$a"; killed_at="$(now)"
  tool $shared wait-visible --topic "$out" --since "$killed_at" --timeout 60 >"$run_dir/s12-visible" &
  reader=$!
  FASTSTREAM_INSTANCE_ID=a start_app $shared s12-app-a "${eo[@]}"; a=$app_pid
  wait "$reader" || { log "scenario 12: no new output after the kill"; ok=0; }
  wait_out $shared $((count * 3 / 5)) || return 1
  at+=("leave of b at in=$(committed_sum $shared)")
  stop_app "$b"; code=$?
  mid_stream $shared || { log "scenario 12: the leave came after the end"; ok=0; }
  wait_done $shared || return 1
  stop_app "$a"; stop_app "$c"
  local v; v="$(verify $shared)"
  [ "$(field "$v" lost)" = 0 ] && [ "$(field "$v" dup)" = 0 ] && [ "$(field "$v" unexpected)" = 0 ] &&
    [ "$code" = 0 ] || ok=0
  local seen; seen="$(cat "$run_dir/s12-visible")"
  awk -v s="$seen" 'BEGIN { exit !(s != "" && s <= 20) }' || ok=0
  row "12. exactly-once: 3 instances, join, kill -9 + restart, graceful leave" "$v" \
    "$(IFS=,; echo "${at[*]}"); new output visible $seen s after the kill; leaver's exit code $code; $(aborted_line $shared)" $ok
}

scenario_13() {
  FASTSTREAM_INSTANCE_ID=solo leader_kill s13 "13. exactly-once: 3 brokers (RF 3, min ISR 2), leader kill -9" output "${eo[@]}"
}

# Scenario 15: the exactly-once app on the 3-node cluster, the broker coordinating its
# consumer group killed with SIGKILL mid-stream: its commits send their offsets to that
# coordinator, and librdkafka can wait for a dead one forever (confluentinc/librdkafka#5456):
# the member gives up on a hung commit, replaces its producer and rewinds.
scenario_15() {
  FASTSTREAM_INSTANCE_ID=solo leader_kill s15 "15. exactly-once: 3 brokers, group coordinator kill -9" group "${eo[@]}"
}

# chaos_registry start|stop: scenario 14's Apicurio Registry on $registry_port (TLS and
# management on the next two ports), its schemas in the Kafka journal topic $journal on the
# shared broker, so they survive a restart.
chaos_registry() {
  FASTSTREAM_REGISTRY_HOME="$registry_home" REGISTRY_PORT="$registry_port" \
    REGISTRY_TLS_PORT=$((registry_port + 1)) REGISTRY_MANAGEMENT_PORT=$((registry_port + 2)) \
    REGISTRY_STORAGE=kafkasql REGISTRY_KAFKASQL_BOOTSTRAP=$shared REGISTRY_KAFKASQL_TOPIC="${journal:-}" \
    scripts/registry-local.sh "$1" 2>>"$run_dir/registry.log"
}

# Scenario 14: the app reads Avro through the schema registry (RegistryCodec) and publishes
# each record on; the registry is stopped mid-stream for 10 s and started again. The input
# carries three schema ids: the first quarter v1 and v2 (cached by the app before the stop),
# the rest v2 and v3, written while the registry is down by a producer that knows their ids
# (as one that cached them keeps writing): v3 is an id the app has never seen, so it must ask
# the registry for it during the outage. Its records wait, their partitions paused, and run
# again once the registry answers: 0 lost, 0 dead letters (under 3 attempts then DLT), the app
# up throughout, and its log shows the waits.
scenario_14() {
  local p
  for p in "$registry_port" $((registry_port + 1)) $((registry_port + 2)); do
    if port_taken "$p"; then log "scenario 14: port $p is taken; set CHAOS_REGISTRY_PORT"; return 1; fi
  done
  fresh s14
  local journal="$in-registry" url="http://127.0.0.1:$registry_port/apis/ccompat/v7" partitions=4
  chaos_registry start || return 1
  topics $shared $partitions 1 || return 1
  local ids; ids="$(tool $shared register --registry "$url" --subject "$in-value")" || return 1
  local first=$((count / 4)) ok=1 pid alive="app stayed up"
  tool $shared fill --topic "$in" --count "$first" --avro "v1=$(field "$ids" v1),v2=$(field "$ids" v2)" || return 1
  start_app $shared s14-app --registry "$url" --attempts 3 --then dlt --backoff-ms 5; pid=$app_pid
  wait_out $shared $((count / 5)) || return 1
  chaos_registry stop || return 1
  local stopped; stopped="$(now)"
  local stopped_at; stopped_at="$(tool $shared count --topic "$out")"
  tool $shared fill --topic "$in" --from "$first" --count "$count" \
    --avro "v2=$(field "$ids" v2),v3=$(field "$ids" v3)" || return 1
  # The outage itself (10 s from the stop), not a synchronisation.
  sleep "$(awk -v s="$stopped" -v n="$(now)" 'BEGIN { d = 10 - (n - s); print (d > 0 ? d : 0) }')"
  kill -0 "$pid" 2>/dev/null || { log "scenario 14: the app died during the outage"; alive="app died"; ok=0; }
  local before; before="$(tool $shared count --topic "$out")"
  local restart; restart="$(now)"
  chaos_registry start || return 1
  local up; up="$(now)"
  # Records waited for the registry: output grows again once it answers (not fatal, so that
  # an app that dead-lettered them still gets its row).
  local resumed="$up" resumed_in="never"
  if tool $shared wait-count --topic "$out" --at-least $((before + 1)) --timeout 60; then
    resumed="$(now)"; resumed_in="$(elapsed "$up" "$resumed") s"
  else
    log "scenario 14: no new output within 60 s of the registry's restart"; ok=0
  fi
  wait_done $shared || return 1
  kill -0 "$pid" 2>/dev/null || { log "scenario 14: the app is gone"; alive="app died"; ok=0; }
  stop_app "$pid"
  chaos_registry stop
  local v; v="$(verify $shared --dlt "$dlt")"
  # The outage was hit: records waited for the registry (the worker's wait line).
  local wait_lines waits waited_on
  wait_lines="$(grep "and runs again, its partition paused" "$run_dir/s14-app.log")"
  waits="$(grep -c . <<<"$wait_lines")"
  waited_on="$(grep -o "$in\[[0-9]*\]" <<<"$wait_lines" | sort -u | wc -l)"
  [ "$waits" -gt 0 ] || { log "scenario 14: no record waited for the registry: the outage was not hit"; ok=0; }
  # About one wait a second per partition (each jittered between 0.5 and 1 s), not a loop.
  local waited; waited="$(elapsed "$stopped" "$resumed")"
  awk -v w="$waits" -v p="$partitions" -v s="$waited" 'BEGIN { exit !(w <= p * 2 * (s + 2)) }' ||
    { log "scenario 14: $waits waits in $waited s: more than 2 a second per partition"; ok=0; }
  [ "$before" -lt "$count" ] || { log "scenario 14: the outage came after the end"; ok=0; }
  [ "$(field "$v" lost)" = 0 ] && [ "$(field "$v" unexpected)" = 0 ] && [ "$(field "$v" dlt)" = 0 ] || ok=0
  row "14. registry stopped 10 s, restarted" "$v" "stopped at out=$stopped_at, restarted at out=$before; down $(elapsed "$stopped" "$up") s (10 s stopped, $(elapsed "$restart" "$up") s starting); $waits waits for the registry on $waited_on partitions in $waited s; output resumed $resumed_in after it answered; $alive" $ok
}

started="$(now)"
log "N=$count, handler work ${delay_us} us/record, logs in $run_dir"
for s in "${only[@]}"; do
  t0="$(now)"
  if ! "scenario_$s"; then
    printf '| %s | %s | | | | | scenario error, see %s | FAIL |\n' "$s" "$count" "$run_dir" | tee -a "$table"
    failed=1
  fi
  # Apps left by a scenario that failed half-way.
  for pid in "${app_pids[@]}"; do kill -9 "$pid" 2>/dev/null; done
  app_pids=()
  log "scenario $s took $(elapsed "$t0" "$(now)") s"
done
log "all done in $(elapsed "$started" "$(now)") s; table in $table"
exit "$failed"
