#!/usr/bin/env bash
# Starts throwaway PostgreSQL and NATS (JetStream) under .tenantry/test with
# `tenantry dev --services-only`, runs every test against them, and stops them.
set -euo pipefail
cd "$(dirname "$0")/.."

dir=.tenantry/test
pg_port=${TENANTRY_TEST_PG_PORT:-54339}
nats_port=${TENANTRY_TEST_NATS_PORT:-42239}

echo "==> building" >&2
cargo build --bin tenantry --quiet

mkdir -p "$dir"
rm -f "$dir/env"
target/debug/tenantry dev --services-only --fresh --dir "$dir" \
    --pg-port "$pg_port" --nats-port "$nats_port" >"$dir/services.out" 2>&1 &
services=$!
stop_services() {
    kill -TERM "$services" 2>/dev/null || true
    wait "$services" 2>/dev/null || true
}
trap stop_services EXIT

for _ in $(seq 1 600); do
    [ -f "$dir/env" ] && break
    if ! kill -0 "$services" 2>/dev/null; then
        echo "the test services did not start:" >&2
        cat "$dir/services.out" >&2
        exit 1
    fi
    sleep 0.1
done
[ -f "$dir/env" ] || { echo "the test services did not start in time" >&2; cat "$dir/services.out" >&2; exit 1; }
set -a
# shellcheck disable=SC1091
. "$dir/env"
set +a
echo "==> services up: $DATABASE_URL, $NATS_URL" >&2

echo "==> cargo test" >&2
log="$dir/cargo-test.log"
status=0
cargo test --workspace -- --test-threads "${TENANTRY_TEST_THREADS:-6}" 2>&1 | tee "$log" || status=$?
# One closing line for the whole run (cargo prints one per test binary, the last of which
# may be an empty doc-test binary).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
