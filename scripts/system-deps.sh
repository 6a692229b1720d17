#!/usr/bin/env bash
# Installs the Debian packages the build and the local broker need when they are missing:
# perl (with its core modules) and make build the vendored OpenSSL, Cyrus SASL and MIT
# Kerberos that librdkafka's TLS and SASL use; openssl generates the local broker's test CA
# and certificates. Idempotent, and a no-op on a machine that has them.
set -euo pipefail

missing=()
perl -MIPC::Cmd -MFindBin -e1 2>/dev/null || missing+=(perl)
command -v make >/dev/null 2>&1 || missing+=(make)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
if [ "${#missing[@]}" -eq 0 ]; then exit 0; fi

echo "system-deps: installing ${missing[*]}" >&2
sudo_=()
if [ "$(id -u)" != 0 ]; then sudo_=(sudo); fi
"${sudo_[@]}" apt-get update -qq
"${sudo_[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
