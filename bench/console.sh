#!/usr/bin/env bash
# Measures the branded console with wrk against a release `pbx serve --demo`
# on SQLite: requests per second and latency of the pages a customer admin
# opens most (each rendered per request: brand from the host name, session,
# templates), next to /healthz as the same-run yardstick; and what a first
# visit downloads. Loopback only; the node is stopped at the end.
#
#   bench/console.sh            # DURATION=15 CONNECTIONS=32
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PBX_BIN=${PBX_BIN:-$ROOT/target/release/pbx}
DURATION=${DURATION:-15}
CONNECTIONS=${CONNECTIONS:-32}
command -v wrk >/dev/null || { echo "bench/console.sh: needs wrk (apt-get install wrk)" >&2; exit 1; }
[ -x "$PBX_BIN" ] || { echo "bench/console.sh: build first: cargo build --release -p pbx" >&2; exit 1; }

dir=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
PBX_DATA_DIR="$dir" PBX_HTTP_LISTEN="127.0.0.1:$port" PBX_SIP_UDP="" PBX_SIP_TCP="" PBX_LOG=warn \
    "$PBX_BIN" serve --demo >"$dir/pbx.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 1 100); do
    curl -fs "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
    sleep 0.2
done
host="nordlicht.localhost:$port"
email=$(python3 -c "import json; print(json.load(open('$dir/demo.json'))['customer']['admin_login']['email'])")
password=$(python3 -c "import json; print(json.load(open('$dir/demo.json'))['customer']['admin_login']['password'])")
customer=$(python3 -c "import json; print(json.load(open('$dir/demo.json'))['customer']['id'])")
cookie=$(curl -s -o /dev/null -D - -H "Host: $host" -H "Origin: http://$host" \
    --data-urlencode "email=$email" --data-urlencode "password=$password" \
    "http://127.0.0.1:$port/login" | awk -F'[=;]' 'tolower($1) ~ /^set-cookie: __host-session/ {print $2}')
[ -n "$cookie" ] || { echo "bench/console.sh: sign-in failed" >&2; exit 1; }

printf 'first visit of the dashboard (bytes, uncompressed): '
total=0
for path in "/customers/$customer" /assets/console.css /assets/console.js /brand/theme.css /brand/logo /brand/favicon; do
    size=$(curl -s -o /dev/null -w '%{size_download}' -H "Host: $host" -H "Cookie: __Host-session=$cookie" "http://127.0.0.1:$port$path")
    printf '%s %s, ' "$path" "$size"
    total=$((total + size))
done
printf 'total %s\n' "$total"

for path in /healthz /login "/customers/$customer" "/customers/$customer/live" "/customers/$customer/extensions" "/customers/$customer/calls" /assets/console.css; do
    printf '%-32s ' "$path"
    wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency -H "Host: $host" -H "Cookie: __Host-session=$cookie" \
        "http://127.0.0.1:$port$path" |
        awk '/Requests\/sec/ {rps=$2} /^ +50%/ {p50=$2} /^ +99%/ {p99=$2} /Non-2xx/ {bad=$NF}
             END {printf "%10s req/s   p50 %8s   p99 %8s   non-2xx %s\n", rps, p50, p99, (bad==""?0:bad)}'
done
printf 'rss after the run: %s kB\n' "$(awk '/VmRSS/ {print $2}' /proc/$pid/status)"
