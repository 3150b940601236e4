#!/usr/bin/env bash
# Runs the shared SIPp harness (../shared/bench, or $SIP_BENCH) against
# `pbx serve` and against the Kamailio baseline configuration, in one run, on
# the same 10,000 users, and writes the figures and their ratios.
#
#   bench/sip-vs-kamailio.sh [PHASE...]
#
# Phases (default: all, in this order):
#   latency   200/s for 30 s with a loopback capture: exact per-hop latencies
#   cpu       fixed rates (REG_CPU_RATE, CALL_CPU_RATE) for 20 s: CPU per operation
#   max       highest rate with < 0.1 % failures (find_max.sh), REGISTER and calls
#   latency-high  the cpu phase's rates (80 % of Kamailio's sustainable
#             rates on this machine) for 20 s with a loopback capture: exact
#             per-hop latencies under load
#   memory    resident memory idle (after 200 phones registered: first-use
#             allocations count as idle) and after all USERS users registered once
#   storm     pbx only (not in the default): a fresh node, then every user's
#             phone registers at once (sip-proxy's register_storm example:
#             503s with Retry-After, the spread of granted expiries, memory)
#   trunk     pbx only (not in the default): calls to a number that leaves
#             through a carrier trunk (a SIPp carrier on 127.0.0.2:5190)
#             against calls between extensions, CALL_CPU_RATE for 20 s each:
#             CPU per call
#   overload  calls at 70 % of OVERLOAD_RATE (the sustainable rate) for 15 s,
#             then 3x OVERLOAD_RATE for 10 s, a pause of 8 s, then 70 % again:
#             does the server serve after an overload what it served before?
#   banned    pbx only (not in the default): a source on 127.0.0.78 banned as
#             a scanner, then flooding OPTIONS for 10 s: packets dropped per
#             second and per CPU-second of the server
#
# Servers: pbx (the abuse guard on, its per-source request budget raised,
#   since all 10,000 harness phones send from 127.0.0.1), pbx-unguarded (the
#   guard off: SERVERS="pbx pbx-unguarded kamailio" gives its cost in one
#   run), pbx-base (another build, PBX_BASE_BIN, set up as pbx: before and
#   after a change in one run), kamailio.
# Environment: SERVERS="pbx kamailio", OUT (results folder), PBX_BIN,
#   REG_CPU_RATE=5000, CALL_CPU_RATE=1000, REG_START=8000, CALL_START=1500,
#   STEP_DURATION=12, KAMAILIO_CHILDREN=4, OVERLOAD_RATE=2000, USERS=10000
#   (the phones of the memory and storm phases; every phase uses these users).
# Only loopback is used. Needs sip-tester, kamailio, kamailio-sqlite-modules,
# tcpdump, python3 (see ../shared/bench/README.md).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
HARNESS=${SIP_BENCH:-$(cd "$ROOT/../shared/bench" 2>/dev/null && pwd)}
OUT=${OUT:-$ROOT/bench-out/$(date -u +%Y%m%dT%H%M%SZ)}
PBX_BIN=${PBX_BIN:-$ROOT/target/release/pbx}
SERVERS=${SERVERS:-pbx kamailio}
PHASES=${*:-latency cpu max memory}
REG_CPU_RATE=${REG_CPU_RATE:-5000}
CALL_CPU_RATE=${CALL_CPU_RATE:-1000}
REG_START=${REG_START:-8000}
CALL_START=${CALL_START:-1500}
export STEP_DURATION=${STEP_DURATION:-12}
KAMAILIO_CHILDREN=${KAMAILIO_CHILDREN:-4}
OVERLOAD_RATE=${OVERLOAD_RATE:-2000}
USERS=${USERS:-10000}
DOMAIN=bench.example
PBX_PORT=5080
KAM_PORT=5060

export BENCH_VAR=$OUT/harness
DATA=$BENCH_VAR/data
mkdir -p "$DATA" "$OUT"
RESULTS=$OUT/results.txt
: >"$RESULTS"

log() { printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*" | tee -a "$OUT/bench.log" >&2; }

if [ ! -s "$DATA/users.csv" ]; then
	python3 "$HARNESS/tools/gen_users.py" --count "$USERS" --domain "$DOMAIN" --seed 42 \
		--csv "$DATA/users.csv" --sqlite "$DATA/users.sqlite"
fi

start_pbx() {
	local guard=$1 bin=${2:-$PBX_BIN} dir=$OUT/pbx-data
	if [ ! -s "$dir/pbx.db" ]; then
		mkdir -p "$dir"
		(cd "$ROOT" && cargo build --release -q -p pbx --example bench_seed)
		PBX_SECRET_KEY=$(cat "$OUT/key" 2>/dev/null || "$PBX_BIN" generate-secret-key | tee "$OUT/key") \
			"$ROOT/target/release/examples/bench_seed" "sqlite://$dir/pbx.db?mode=rwc" "$DATA/users.csv" "$DOMAIN" >&2
	fi
	# shellcheck disable=SC2086 # PBX_ENV: extra NAME=value words for the server
	env ${PBX_ENV:-} $guard PBX_SECRET_KEY="$(cat "$OUT/key")" PBX_DATA_DIR="$dir" PBX_LOG=warn \
		PBX_HTTP_LISTEN=127.0.0.1:18088 PBX_SIP_UDP=127.0.0.1:$PBX_PORT PBX_SIP_TCP= \
		PBX_SIP_DIGEST_ALGORITHMS=MD5 PBX_SIP_DIGEST_CHECK_URI=false PBX_NODE_ID=bench \
		"$bin" serve >"$OUT/pbx.out" 2>"$OUT/pbx.err" &
	local pid=$!
	for _ in $(seq 1 100); do
		grep -q ' running (' "$OUT/pbx.out" 2>/dev/null && break
		sleep 0.1
	done
	echo "$pid"
}

# Stops the pbx we started, by its PID, and waits for it to exit.
stop_pbx() {
	kill "$1" 2>/dev/null || true
	for _ in $(seq 1 100); do
		[ -d "/proc/$1" ] || return 0
		sleep 0.1
	done
	kill -9 "$1" 2>/dev/null || true
}

start_server() {
	case $1 in
	pbx) start_pbx "PBX_SIP_GUARD_REQUEST_RATE=1000000 PBX_SIP_GUARD_REQUEST_BURST=1000000" ;;
	pbx-unguarded) start_pbx PBX_SIP_GUARD=false ;;
	pbx-base) start_pbx "PBX_SIP_GUARD_REQUEST_RATE=1000000 PBX_SIP_GUARD_REQUEST_BURST=1000000" "$PBX_BASE_BIN" ;;
	kamailio)
		DATA_DIR=$DATA RUN_DIR=$OUT/kamailio "$HARNESS/kamailio/start.sh" -n "$KAMAILIO_CHILDREN" >&2
		cat "$OUT/kamailio/main.pid"
		;;
	esac
}

stop_server() {
	case $1 in
	pbx | pbx-unguarded | pbx-base) stop_pbx "$2" ;;
	kamailio) RUN_DIR=$OUT/kamailio "$HARNESS/kamailio/stop.sh" >&2 || true ;;
	esac
}

target() { [ "$1" = kamailio ] && echo "127.0.0.1:$KAM_PORT" || echo "127.0.0.1:$PBX_PORT"; }

# Resident memory of a process and its children, in kB (PSS: shared pages split).
pss_kb() {
	local total=0 p
	for p in $1 $(pgrep -P "$1" 2>/dev/null || true); do
		local v
		v=$(awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup" 2>/dev/null || echo 0)
		total=$((total + ${v:-0}))
	done
	echo "$total"
}

record() { echo "$1 $2" | tee -a "$RESULTS" >&2; }

# CPU ticks (user + system) of a process and its children.
ticks() {
	local total=0 p
	for p in $1 $(pgrep -P "$1" 2>/dev/null || true); do
		local v
		v=$(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)
		total=$((total + ${v:-0}))
	done
	echo "$total"
}

# The trunk phase: a carrier trunk to SIPp on 127.0.0.2:5190 (through the
# API, with an operator token), then every caller of the harness dials a
# German number that leaves through it. Prints a RESULT-like line.
trunk_calls() {
	local pid=$1 dir=$OUT/runs/pbx-trunk api=http://127.0.0.1:18088/api/v1
	mkdir -p "$dir"
	local token
	token=$(PBX_SECRET_KEY="$(cat "$OUT/key")" PBX_DATA_DIR="$OUT/pbx-data" \
		"$PBX_BIN" admin create-token --name bench-trunk)
	local trunk
	trunk=$(curl -sf -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
		-d '{"name":"Bench carrier","host":"127.0.0.2","port":5190,"auth_mode":"ip"}' "$api/trunks" |
		python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
	curl -sf -X PUT -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
		-d '[{"prefix":""}]' "$api/trunks/$trunk/routes" >/dev/null
	sleep 1
	{ echo SEQUENTIAL; tail -n +2 "$DATA/users.csv" | awk -F';' '{print $1 ";" $2 ";0301234567"}'; } \
		>"$dir/calls.csv"
	local n=$((CALL_CPU_RATE * 20))
	(cd "$dir" && exec sipp -sf "$HARNESS/sipp/uas.xml" -i 127.0.0.2 -p 5190 -nostdin \
		>uas.stdout 2>&1) &
	local carrier=$!
	sleep 1
	local t0 s0 t1 s1 rc=0
	t0=$(ticks "$pid"); s0=$(date +%s.%N)
	(cd "$dir" && sipp -sf "$HARNESS/sipp/uac_call.xml" -inf calls.csv -key domain "$DOMAIN" \
		-i 127.0.0.1 -p 5150 -d 1000 -r "$CALL_CPU_RATE" -rp 1000 -m "$n" -l $((CALL_CPU_RATE * 12)) \
		-nostdin -recv_timeout 10000 -timeout 90 -trace_stat -stf stat.csv "127.0.0.1:$PBX_PORT" \
		>uac.stdout 2>&1) || rc=$?
	t1=$(ticks "$pid"); s1=$(date +%s.%N)
	kill "$carrier" 2>/dev/null || true
	wait "$carrier" 2>/dev/null || true
	local ok failed
	column() { awk -F';' -v name="$1" 'NR == 1 {for (i = 1; i <= NF; i++) if ($i == name) c = i} END {print (c ? $c : "?")}' "$dir"/*stat.csv; }
	ok=$(column 'SuccessfulCall(C)')
	failed=$(column 'FailedCall(C)')
	awk -v t0="$t0" -v t1="$t1" -v s0="$s0" -v s1="$s1" -v hz="$(getconf CLK_TCK)" \
		-v rate="$CALL_CPU_RATE" -v n="$n" -v rc="$rc" -v ok="$ok" -v failed="$failed" \
		'BEGIN {cpu = (t1 - t0) / hz / (s1 - s0) * 100;
			printf "RESULT pbx trunk scen=call-out rate=%d calls=%d ok=%s failed=%s sipp_rc=%d server_cpu%%=%.1f\n",
			rate, n, ok, failed, rc, cpu}'
}

# The first WARM_PHONES users register (100 a second): work on every
# thread of the server, after which it holds what it holds when idle.
WARM_PHONES=200
warm_up() {
	local csv=$OUT/warm-users.csv
	head -n $((WARM_PHONES + 1)) "$DATA/users.csv" >"$csv"
	SERVER_PID=$1 TAG=warm-up OUT_DIR=$OUT/runs/warm-up-$2 \
		"$HARNESS/run.sh" reg "$3" $DOMAIN "$csv" 100 $((WARM_PHONES / 100)) >/dev/null 2>&1 || true
	sleep 5
}

# A counter of the pbx's /metrics.
pbx_metric() {
	curl -sf http://127.0.0.1:18088/metrics | awk -v name="$1" '$1 == name {print $2}'
}

# The banned phase: one OPTIONS as "friendly-scanner" bans 127.0.0.78, then
# a Python sender floods from it for 10 s. Prints a RESULT-like line.
banned_flood() {
	local pid=$1 sent d0 d1 t0 t1 s0 s1
	python3 - "$PBX_PORT" <<-'EOF' >/dev/null
		import socket, sys
		s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
		s.bind(("127.0.0.78", 0))
		s.sendto(b"OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.78:5070;branch=z9hG4bKscan\r\n"
		         b"From: <sip:100@127.0.0.78>;tag=1\r\nTo: <sip:100@127.0.0.1>\r\nCall-ID: scan\r\n"
		         b"CSeq: 1 OPTIONS\r\nUser-Agent: friendly-scanner\r\nContent-Length: 0\r\n\r\n",
		         ("127.0.0.1", int(sys.argv[1])))
	EOF
	sleep 1
	d0=$(pbx_metric pbx_sip_guard_dropped_total)
	t0=$(ticks "$pid"); s0=$(date +%s.%N)
	sent=$(python3 - "$PBX_PORT" <<-'EOF'
		import socket, sys, time
		s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
		s.bind(("127.0.0.78", 0))
		target = ("127.0.0.1", int(sys.argv[1]))
		packet = (b"INVITE sip:100@bench.example SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.78:5070;branch=z9hG4bKflood\r\n"
		          b"From: <sip:100@bench.example>;tag=1\r\nTo: <sip:101@bench.example>\r\nCall-ID: flood\r\n"
		          b"CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n")
		sent, end = 0, time.monotonic() + 10
		while time.monotonic() < end:
		    for _ in range(1000):
		        try:
		            s.sendto(packet, target)
		            sent += 1
		        except OSError:
		            pass
		print(sent)
	EOF
	)
	sleep 1
	t1=$(ticks "$pid"); s1=$(date +%s.%N)
	d1=$(pbx_metric pbx_sip_guard_dropped_total)
	awk -v t0="$t0" -v t1="$t1" -v s0="$s0" -v s1="$s1" -v hz="$(getconf CLK_TCK)" \
		-v d0="$d0" -v d1="$d1" -v sent="$sent" \
		'BEGIN {cpu_s = (t1 - t0) / hz; dropped = d1 - d0;
			printf "RESULT pbx banned sent=%d dropped=%d dropped_per_s=%.0f server_cpu%%=%.1f dropped_per_cpu_s=%.0f\n",
			sent, dropped, dropped / 10, cpu_s / (s1 - s0) * 100, (cpu_s > 0 ? dropped / cpu_s : 0)}'
}

for server in $SERVERS; do
	pid=$(start_server "$server")
	log "$server started (pid $pid)"
	t=$(target "$server")
	for phase in $PHASES; do
		case $phase in
		latency)
			for scen in reg call; do
				line=$(SERVER_PID=$pid PCAP=1 TAG="$server latency" OUT_DIR=$OUT/runs/$server-$scen-latency \
					"$HARNESS/run.sh" $scen "$t" $DOMAIN "$DATA/users.csv" 200 30 | grep '^RESULT')
				record "$server latency-$scen" "$line"
				sleep 5
			done
			;;
		latency-high)
			line=$(SERVER_PID=$pid PCAP=1 TAG="$server latency-high" OUT_DIR=$OUT/runs/$server-reg-latency-high \
				"$HARNESS/run.sh" reg "$t" $DOMAIN "$DATA/users.csv" "$REG_CPU_RATE" 20 | grep '^RESULT')
			record "$server latency-high-reg" "$line"
			sleep 8
			line=$(SERVER_PID=$pid PCAP=1 TAG="$server latency-high" OUT_DIR=$OUT/runs/$server-call-latency-high \
				"$HARNESS/run.sh" call "$t" $DOMAIN "$DATA/users.csv" "$CALL_CPU_RATE" 20 | grep '^RESULT')
			record "$server latency-high-call" "$line"
			sleep 8
			;;
		storm)
			[ "$server" = kamailio ] && continue
			stop_server "$server" "$pid"
			sleep 2
			sqlite3 "$OUT/pbx-data/pbx.db" "DELETE FROM registrations;"
			pid=$(start_server "$server")
			sleep 2
			idle=$(pss_kb "$pid")
			(cd "$ROOT" && cargo build --release -q -p pbx-sip-proxy --example register_storm)
			peak=$idle
			"$ROOT/target/release/examples/register_storm" --server "127.0.0.1:$PBX_PORT" \
				--users "$DATA/users.csv" --domain $DOMAIN --phones "$USERS" >"$OUT/storm.txt" &
			storm=$!
			while [ -d "/proc/$storm" ]; do
				now=$(pss_kb "$pid")
				[ "$now" -gt "$peak" ] && peak=$now
				sleep 0.5
			done
			wait "$storm" || true
			record "$server storm" "idle_pss_kb=$idle peak_pss_kb=$peak shed=$(pbx_metric pbx_sip_shed_total) $(tr '\n' ' ' <"$OUT/storm.txt")"
			;;
		cpu)
			line=$(SERVER_PID=$pid TAG="$server cpu" OUT_DIR=$OUT/runs/$server-reg-cpu \
				"$HARNESS/run.sh" reg "$t" $DOMAIN "$DATA/users.csv" "$REG_CPU_RATE" 20 | grep '^RESULT')
			record "$server cpu-reg" "$line"
			sleep 8
			line=$(SERVER_PID=$pid TAG="$server cpu" OUT_DIR=$OUT/runs/$server-call-cpu \
				"$HARNESS/run.sh" call "$t" $DOMAIN "$DATA/users.csv" "$CALL_CPU_RATE" 20 | grep '^RESULT')
			record "$server cpu-call" "$line"
			sleep 8
			;;
		max)
			SERVER_PID=$pid START=$REG_START "$HARNESS/find_max.sh" reg "$t" $DOMAIN "$DATA/users.csv" \
				>"$OUT/$server-max-reg.txt" 2>&1 || true
			record "$server max-reg" "$(grep '^MAX' "$OUT/$server-max-reg.txt" | tail -1)"
			SERVER_PID=$pid START=$CALL_START "$HARNESS/find_max.sh" call "$t" $DOMAIN "$DATA/users.csv" \
				>"$OUT/$server-max-call.txt" 2>&1 || true
			record "$server max-call" "$(grep '^MAX' "$OUT/$server-max-call.txt" | tail -1)"
			;;
		overload)
			low=$((OVERLOAD_RATE * 7 / 10))
			for step in before:$low:15 over:$((OVERLOAD_RATE * 3)):10 after:$low:15; do
				IFS=: read -r name rate secs <<<"$step"
				line=$(SERVER_PID=$pid TAG="$server overload-$name" OUT_DIR=$OUT/runs/$server-overload-$name \
					"$HARNESS/run.sh" call "$t" $DOMAIN "$DATA/users.csv" "$rate" "$secs" | grep '^RESULT' || true)
				record "$server overload-$name" "$line"
				sleep 8
			done
			;;
		banned)
			[ "$server" = pbx ] || continue
			record "$server banned" "$(banned_flood "$pid")"
			;;
		trunk)
			[ "$server" = pbx ] || continue
			line=$(SERVER_PID=$pid TAG="$server trunk" OUT_DIR=$OUT/runs/$server-call-internal \
				"$HARNESS/run.sh" call "$t" $DOMAIN "$DATA/users.csv" "$CALL_CPU_RATE" 20 | grep '^RESULT')
			record "$server trunk-internal" "$line"
			sleep 8
			record "$server trunk-out" "$(trunk_calls "$pid")"
			sleep 8
			;;
		memory)
			# A fresh server with no registrations (Kamailio's usrloc starts
			# empty too), then every user registered once.
			stop_server "$server" "$pid"
			sleep 2
			if [ "$server" != kamailio ]; then
				sqlite3 "$OUT/pbx-data/pbx.db" "DELETE FROM registrations;"
			fi
			pid=$(start_server "$server")
			# Idle is measured after WARM_PHONES phones registered: mimalloc
			# gives back the pages of the start (loading the directory) only
			# when its threads allocate again, so right after the start the
			# node holds memory it is about to return (up to 40 MB more).
			warm_up "$pid" "$server" "$t"
			idle=$(pss_kb "$pid")
			line=$(SERVER_PID=$pid TAG="$server memory" OUT_DIR=$OUT/runs/$server-memory \
				"$HARNESS/run.sh" reg "$t" $DOMAIN "$DATA/users.csv" 2000 $((USERS / 2000)) | grep '^RESULT')
			sleep 3
			full=$(pss_kb "$pid")
			# After the 32 s in which retransmissions are still answered from memory.
			sleep 35
			settled=$(pss_kb "$pid")
			record "$server memory" "idle_pss_kb=$idle registered_pss_kb=$full settled_pss_kb=$settled phones=$((USERS - WARM_PHONES)) $line"
			;;
		esac
	done
	stop_server "$server" "$pid"
	log "$server stopped"
	sleep 5
done

python3 "$HERE/summarize.py" "$RESULTS" | tee "$OUT/summary.md"
log "results in $OUT"
