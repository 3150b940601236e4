#!/usr/bin/env bash
# The media relay against Debian's rtpengine (userspace forwarding, no
# kernel module), driven the same way in the same run: both over the ng
# control protocol (offer, answer, delete) by our load tool, which sends
# G.711 (20 ms, 172-byte packets) both ways on every call and measures
# loss, latency through the relay and jitter; each relay's CPU and memory
# come from /proc. Loopback only.
#
#   bench/media-vs-rtpengine.sh [CALLS...]      (default: 500 1000 2000 3000)
#
# Prints one JSON line per relay and step; summarise with
# bench/summarize-media.py < the output.
set -euo pipefail
cd "$(dirname "$0")/.."
steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(500 1000 2000 3000)
seconds=${SECONDS_PER_STEP:-15}
command -v rtpengine >/dev/null || { echo "rtpengine is not installed (apt-get install rtpengine)" >&2; exit 1; }
ulimit -n "$(ulimit -Hn)"
cargo build --release -q -p pbx --bin pbx
cargo build --release -q -p pbx-media --example rtpload
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

PBX_DATA_DIR="$work" target/release/pbx media-relay --ng-listen 127.0.0.1:2223 \
    --rtp-ports 20000-39999 --rtp-address 127.0.0.1 >"$work/pbx.log" 2>&1 &
pbx=$!; pids+=("$pbx")
rtpengine --config-file=none --table=-1 --interface=127.0.0.1 --listen-ng=127.0.0.1:2224 \
    --port-min=40000 --port-max=59999 --foreground --log-stderr --log-level=3 >"$work/rtpengine.log" 2>&1 &
rtpe=$!; pids+=("$rtpe")
sleep 2
for calls in "${steps[@]}"; do
    target/release/examples/rtpload --ng 127.0.0.1:2223 --pid "$pbx" --calls "$calls" --seconds "$seconds" --label pbx
    sleep 2
    target/release/examples/rtpload --ng 127.0.0.1:2224 --pid "$rtpe" --calls "$calls" --seconds "$seconds" --label rtpengine
    sleep 2
done
