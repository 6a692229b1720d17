#!/usr/bin/env bash
# Installs the Debian packages the build and the local broker need when they are missing.
# Idempotent: a no-op (no apt-get at all) on a machine that has them all.
#
# - cmake, make, g++ and pkg-config: rdkafka-sys builds librdkafka from source with CMake (a C
#   library, plus its C++ wrapper, which the build also compiles), at -O0 in debug builds.
#   Debian's librdkafka-dev cannot be used: bookworm ships 2.0.2, rdkafka-sys 4.10 needs 2.12.1.
# - libssl-dev, libcurl4-openssl-dev, libsasl2-dev, zlib1g-dev, libzstd-dev: the system's
#   OpenSSL (TLS, SCRAM, OAUTHBEARER), libcurl (OAUTHBEARER's OIDC token requests; librdkafka's
#   CMake build needs it), Cyrus SASL (GSSAPI), zlib and zstd that librdkafka links by default,
#   so a cold build compiles none of them (the `vendored` cargo feature builds them from source).
# - libsasl2-modules-gssapi-mit: Cyrus SASL's GSSAPI mechanism on MIT Kerberos, loaded at run
#   time when a client uses `sasl.mechanism=GSSAPI` (building needs no Kerberos headers).
# - krb5-kdc, krb5-admin-server (kdb5_util, kadmin.local) and krb5-user (kinit, klist): the
#   local broker's test-only Kerberos KDC (scripts/kafka/kerberos.sh) and the GSSAPI tests'
#   client side; librdkafka runs `kinit` to log in from a keytab.
# - perl with its core modules: the `vendored` feature's OpenSSL build (CI builds it).
# - openssl: generates the local broker's test CA and certificates.
# - valgrind: the cost gate of .ci/run counts instructions per record with callgrind.
set -euo pipefail

packages=(cmake make g++ pkg-config libssl-dev libcurl4-openssl-dev libsasl2-dev zlib1g-dev libzstd-dev
  libsasl2-modules-gssapi-mit krb5-kdc krb5-admin-server krb5-user perl openssl valgrind)

if ! command -v dpkg-query >/dev/null 2>&1; then
  # Not Debian: say what is needed rather than guess another package manager's names.
  echo "system-deps: not a Debian system; make sure these (or their equivalents) are" \
    "installed: ${packages[*]}" >&2
  exit 0
fi

missing=()
for package in "${packages[@]}"; do
  # `${Status}` ends in "installed" only for an installed package (not removed or half-done).
  status="$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null || true)"
  [ "${status##* }" = installed ] || missing+=("$package")
done
# The vendored OpenSSL build needs perl's full core modules, not only perl-base.
perl -MIPC::Cmd -MFindBin -e1 2>/dev/null || missing+=(perl)
if [ "${#missing[@]}" -eq 0 ]; then exit 0; fi

echo "system-deps: installing ${missing[*]}" >&2
sudo_=()
if [ "$(id -u)" != 0 ]; then sudo_=(sudo); fi
# A fresh machine's package lists may be empty or stale: update them first.
"${sudo_[@]}" apt-get update -qq
"${sudo_[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
  "${missing[@]}" >/dev/null
