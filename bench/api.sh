#!/usr/bin/env bash
# Measures the REST API with wrk against a release `pbx serve --demo`, on
# SQLite and (if PBX_BENCH_POSTGRES_URL names a server whose user may create
# databases) on PostgreSQL: requests per second and latency percentiles of
# typical reads, each next to /healthz (one trivial query, no token) as the
# same-run yardstick. Loopback only; the node is stopped at the end.
#
#   bench/api.sh            # DURATION=15 CONNECTIONS=32
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PBX_BIN=${PBX_BIN:-$ROOT/target/release/pbx}
DURATION=${DURATION:-15}
CONNECTIONS=${CONNECTIONS:-32}
command -v wrk >/dev/null || { echo "bench/api.sh: needs wrk (apt-get install wrk)" >&2; exit 1; }
[ -x "$PBX_BIN" ] || { echo "bench/api.sh: build first: cargo build --release -p pbx" >&2; exit 1; }

run_engine() {
    local engine=$1 url=$2
    local dir port pid token
    dir=$(mktemp -d)
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    local env=(PBX_DATA_DIR="$dir" PBX_HTTP_LISTEN="127.0.0.1:$port" PBX_SIP_UDP="" PBX_SIP_TCP=""
        PBX_API_RATE_LIMIT=1000000 PBX_API_RATE_BURST=1000000 PBX_LOG=warn)
    if [ -n "$url" ]; then
        env+=(PBX_DATABASE_URL="$url" PBX_SECRET_KEY="$("$PBX_BIN" generate-secret-key)")
    fi
    env "${env[@]}" "$PBX_BIN" serve --demo >"$dir/pbx.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 100); do
        curl -fs "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
        sleep 0.2
    done
    token=$(env "${env[@]}" "$PBX_BIN" admin create-token --customer 1 --name bench 2>/dev/null)
    # Some call records to list.
    for path in /healthz "/api/v1/customers/1/extensions" "/api/v1/call-records?limit=50" "/api/v1/customers/1/statement?month=2026-11"; do
        local auth=()
        [ "$path" = /healthz ] || auth=(-H "Authorization: Bearer $token")
        printf '%-10s %-45s ' "$engine" "$path"
        wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency "${auth[@]}" "http://127.0.0.1:$port$path" |
            awk '/Requests\/sec/ {rps=$2} /^ +50%/ {p50=$2} /^ +99%/ {p99=$2} /Non-2xx/ {bad=$NF}
                 END {printf "%10s req/s   p50 %8s   p99 %8s   non-2xx %s\n", rps, p50, p99, (bad==""?0:bad)}'
    done
    printf '%-10s rss after the run: %s kB\n' "$engine" "$(awk '/VmRSS/ {print $2}' /proc/$pid/status)"
    kill "$pid"; wait "$pid" 2>/dev/null || true
    rm -rf "$dir"
}

run_engine sqlite ""
if [ -n "${PBX_BENCH_POSTGRES_URL:-}" ]; then
    db="pbx_bench_api_$$"
    psql -q "$PBX_BENCH_POSTGRES_URL" -c "CREATE DATABASE $db"
    run_engine postgres "${PBX_BENCH_POSTGRES_URL%/*}/$db"
    psql -q "$PBX_BENCH_POSTGRES_URL" -c "DROP DATABASE $db WITH (FORCE)"
fi
