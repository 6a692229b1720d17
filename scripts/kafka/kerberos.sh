# Sourced by scripts/kafka-local.sh (not run): a test-only MIT Kerberos KDC for the broker's
# GSSAPI listener, with its own realm, configuration, database and keytabs in one folder
# (KRB below, `$FASTSTREAM_KAFKA_HOME/kerberos`), on a loopback port of its own. It needs no
# root: nothing of the system's Kerberos setup (/etc/krb5.conf, /var/lib/krb5kdc) is read or
# written. The caller defines `log` and `open_on`.
#
# KRB holds krb5.conf (clients: KRB5_CONFIG=KRB/krb5.conf; the broker's JVM:
# -Djava.security.krb5.conf), kdc.conf, the database (principal*, stash), the keytabs
# kafka.keytab (the broker, `kafka/127.0.0.1@FASTSTREAM.TEST`) and alice.keytab (the client,
# `alice@FASTSTREAM.TEST`), kdc.pid and kdc.log.
#
# The broker's principal names 127.0.0.1, the host librdkafka connects to: librdkafka asks
# for the service `sasl.kerberos.service.name` (kafka) on the host of the broker's address, and
# krb5.conf turns host-name canonicalisation (DNS and reverse DNS) off, so the client asks for
# `kafka/127.0.0.1` exactly.

kerberos_realm=FASTSTREAM.TEST
kerberos_service=kafka
# Test-only: the database's master password (the stash file holds it anyway).
kerberos_master_password="faststream-test-kdc"

# Writes KRB/krb5.conf and KRB/kdc.conf for a KDC on 127.0.0.1:PORT (every start: the port may
# have changed), and creates the realm's database and keytabs once.
kdc_prepare() {
  local krb="$1" port="$2"
  command -v krb5kdc >/dev/null && command -v kadmin.local >/dev/null \
    || { log "MIT Kerberos' KDC is required for the GSSAPI listener (scripts/system-deps.sh installs krb5-kdc, krb5-admin-server and krb5-user; or set KAFKA_SECURE=0)"; exit 1; }
  mkdir -p "$krb"
  cat > "$krb/krb5.conf" <<CONF
[libdefaults]
  default_realm = $kerberos_realm
  dns_lookup_realm = false
  dns_lookup_kdc = false
  dns_canonicalize_hostname = false
  rdns = false
  udp_preference_limit = 1
  ticket_lifetime = 24h
  renew_lifetime = 7d

[realms]
  $kerberos_realm = {
    kdc = 127.0.0.1:$port
  }

[domain_realm]
  127.0.0.1 = $kerberos_realm
  localhost = $kerberos_realm
CONF
  cat > "$krb/kdc.conf" <<CONF
[kdcdefaults]
  kdc_listen = 127.0.0.1:$port
  kdc_tcp_listen = 127.0.0.1:$port

[realms]
  $kerberos_realm = {
    database_name = $krb/principal
    key_stash_file = $krb/stash
    acl_file = $krb/kadm5.acl
    max_life = 24h
    max_renewable_life = 7d
    supported_enctypes = aes256-cts-hmac-sha1-96:normal aes128-cts-hmac-sha1-96:normal
  }

[logging]
  kdc = FILE:$krb/kdc.log
  default = FILE:$krb/kdc.log
CONF
  if [ -f "$krb/.complete" ]; then return 0; fi
  log "creating the Kerberos realm $kerberos_realm in $krb"
  rm -f "$krb"/principal* "$krb/stash" "$krb"/*.keytab
  : > "$krb/kadm5.acl"
  (
    export KRB5_CONFIG="$krb/krb5.conf" KRB5_KDC_PROFILE="$krb/kdc.conf"
    kdb5_util create -s -r "$kerberos_realm" -P "$kerberos_master_password"
    local principal keytab
    for entry in "$kerberos_service/127.0.0.1:kafka" "alice:alice"; do
      principal="${entry%%:*}" keytab="$krb/${entry##*:}.keytab"
      kadmin.local -r "$kerberos_realm" -q "addprinc -randkey $principal@$kerberos_realm"
      # -norandkey: export the key just made rather than a new one.
      kadmin.local -r "$kerberos_realm" -q "ktadd -norandkey -k $keytab $principal@$kerberos_realm"
    done
  ) >"$krb/setup.log" 2>&1 || { cat "$krb/setup.log" >&2; exit 1; }
  touch "$krb/.complete"
}

kdc_alive() { [ -f "$1/kdc.pid" ] && kill -0 "$(cat "$1/kdc.pid")" 2>/dev/null; }

# Starts the KDC of KRB (prepared by kdc_prepare) in the background unless it runs, and waits
# until it answers on its port.
kdc_start() {
  local krb="$1" port
  port="$(sed -n 's/^ *kdc_tcp_listen = 127.0.0.1:\([0-9]*\)$/\1/p' "$krb/kdc.conf")"
  if kdc_alive "$krb"; then
    if open_on "$port"; then return 0; fi
    # It runs on the port of an earlier kdc.conf (KAFKA_KDC_PORT changed).
    kdc_stop "$krb"
  fi
  if open_on "$port"; then log "something else answers on the KDC's port $port (KAFKA_KDC_PORT)"; exit 1; fi
  log "starting the Kerberos KDC of $kerberos_realm on 127.0.0.1:$port"
  KRB5_CONFIG="$krb/krb5.conf" KRB5_KDC_PROFILE="$krb/kdc.conf" \
    nohup krb5kdc -n -r "$kerberos_realm" >"$krb/kdc.stdout.log" 2>&1 &
  echo $! > "$krb/kdc.pid"
  for _ in $(seq 1 100); do
    if open_on "$port"; then return 0; fi
    if ! kdc_alive "$krb"; then
      log "the KDC exited during start; last lines of its logs:"
      tail -n 20 "$krb/kdc.stdout.log" "$krb/kdc.log" >&2 || true
      exit 1
    fi
    sleep 0.1
  done
  log "timed out waiting for the KDC; see $krb/kdc.log"
  exit 1
}

# Stops the KDC of KRB if it runs.
kdc_stop() {
  local krb="$1"
  if kdc_alive "$krb"; then stop_pid "$(cat "$krb/kdc.pid")"; log "stopped the KDC"; fi
  rm -f "$krb/kdc.pid"
}

# The broker's server.properties lines for LISTENER (lower case), which enables GSSAPI with the
# broker's keytab from KRB.
kerberos_listener_properties() {
  local listener="$1" krb="$2"
  cat <<PROPS
sasl.kerberos.service.name=$kerberos_service
listener.name.$listener.gssapi.sasl.jaas.config=com.sun.security.auth.module.Krb5LoginModule required useKeyTab=true storeKey=true keyTab="$krb/kafka.keytab" principal="$kerberos_service/127.0.0.1@$kerberos_realm";
PROPS
}
