#!/usr/bin/env bash
# Installs the PostgreSQL server and nats-server from the distribution's packages when they
# are missing. Nothing is downloaded from anywhere else.
set -euo pipefail

missing=()
if [ -z "${TENANTRY_PG_BIN:-}" ] && ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    missing+=(postgresql)
fi
if ! command -v nats-server >/dev/null 2>&1 && [ ! -x /usr/sbin/nats-server ]; then
    missing+=(nats-server)
fi
# Rust links through the C toolchain, and some crates (ring) compile C.
if ! command -v cc >/dev/null 2>&1; then
    missing+=(gcc libc6-dev)
fi
if ! command -v runuser >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then
    missing+=(util-linux)
fi
[ ${#missing[@]} -eq 0 ] && exit 0

echo "installing ${missing[*]} from the distribution's packages" >&2
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
