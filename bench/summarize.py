#!/usr/bin/env python3
"""Turns bench/sip-vs-kamailio.sh results into a markdown table of pbx vs
Kamailio figures and their ratios (measured in the same run)."""

import re
import sys


def fields(text):
    return dict(re.findall(r"(\S+?)=(\S+)", text))


def num(v):
    try:
        return float(v.rstrip("/s"))
    except (TypeError, ValueError, AttributeError):
        return None


def pair(v):
    """'p50/p99' -> (p50, p99)."""
    if not v or "/" not in v:
        return (None, None)
    a, b = v.split("/", 1)
    return (num(a), num(b))


def main(path):
    data = {}
    for line in open(path):
        parts = line.split(" ", 2)
        if len(parts) < 3:
            continue
        server, metric, rest = parts
        data.setdefault(server, {})[metric] = fields(rest)

    rows = []
    # A second pbx build in the same run (before a change): its column.
    base = "pbx-base" in data

    def row(label, pbx, kam, better="higher", unit="", before=None):
        ratio = None
        if pbx is not None and kam not in (None, 0):
            ratio = pbx / kam
        fmt = lambda x: "n/a" if x is None else (f"{x:,.0f}" if abs(x) >= 100 else f"{x:,.1f}")
        r = "n/a" if ratio is None else f"{ratio:.2f}x"
        first = f" {fmt(before)}{unit} |" if base else ""
        rows.append(f"| {label} |{first} {fmt(pbx)}{unit} | {fmt(kam)}{unit} | {r} ({better} is better) |")

    g = lambda s, m, k: data.get(s, {}).get(m, {}).get(k)
    row("max REGISTER/s (<0.1% failures)", num(g("pbx", "max-reg", "max_rate")), num(g("kamailio", "max-reg", "max_rate")))
    row("max calls/s (<0.1% failures)", num(g("pbx", "max-call", "max_rate")), num(g("kamailio", "max-call", "max_rate")))
    for metric, key, label in [
        ("latency-reg", "register->401_us(p50/p99)", "REGISTER -> 401"),
        ("latency-reg", "register->200_us(p50/p99)", "authorized REGISTER -> 200"),
        ("latency-call", "invite->407_us(p50/p99)", "INVITE -> 407"),
        ("latency-call", "invite_fwd_us(p50/p99)", "authorized INVITE in -> out"),
        ("latency-call", "200_fwd_us(p50/p99)", "200 in -> out"),
        ("latency-call", "bye_fwd_us(p50/p99)", "BYE in -> out"),
    ]:
        for phase, rate in [("latency", "200/s"), ("latency-high", "the cpu phase's rate")]:
            m = metric.replace("latency", phase)
            p = pair(g("pbx", m, key))
            k = pair(g("kamailio", m, key))
            b = pair(g("pbx-base", m, key))
            if p == (None, None) and k == (None, None):
                continue
            row(f"{label} p50 at {rate}", p[0], k[0], "lower", " us", b[0])
            row(f"{label} p99 at {rate}", p[1], k[1], "lower", " us", b[1])
    for metric, label in [("cpu-reg", "registration"), ("cpu-call", "call")]:
        def per_op(server):
            cpu = num(g(server, metric, "server_cpu%"))
            rate = num(g(server, metric, "achieved"))
            return None if not cpu or not rate else cpu / 100.0 * 1e6 / rate
        pr = g("pbx", metric, "rate")
        row(f"server CPU per {label} at {pr}/s", per_op("pbx"), per_op("kamailio"), "lower", " us", per_op("pbx-base"))
        row(f"server CPU % at {pr}/s", num(g("pbx", metric, "server_cpu%")), num(g("kamailio", metric, "server_cpu%")), "lower",
            "", num(g("pbx-base", metric, "server_cpu%")))
        row(f"failures at {pr}/s (%)", num(g("pbx", metric, "fail%")), num(g("kamailio", metric, "fail%")), "lower",
            "", num(g("pbx-base", metric, "fail%")))
    kb = lambda s, k: None if num(g(s, "memory", k)) is None else num(g(s, "memory", k)) / 1024
    row("memory idle (PSS, MB; after 200 phones registered)", kb("pbx", "idle_pss_kb"), kb("kamailio", "idle_pss_kb"), "lower",
        "", kb("pbx-base", "idle_pss_kb"))
    row("memory with every phone registered (PSS, MB)", kb("pbx", "registered_pss_kb"), kb("kamailio", "registered_pss_kb"), "lower",
        "", kb("pbx-base", "registered_pss_kb"))
    row("same, 35 s later (PSS, MB)", kb("pbx", "settled_pss_kb"), kb("kamailio", "settled_pss_kb"), "lower",
        "", kb("pbx-base", "settled_pss_kb"))
    phones = lambda s: num(g(s, "memory", "phones"))

    def per_phone(server):
        idle, settled, n = num(g(server, "memory", "idle_pss_kb")), num(g(server, "memory", "settled_pss_kb")), phones(server)
        return None if idle is None or settled is None or not n else (settled - idle) * 1024 / n
    row("memory per registered phone over the idle node (B)", per_phone("pbx"), per_phone("kamailio"), "lower",
        "", per_phone("pbx-base"))
    for phase in ("overload-before", "overload-over", "overload-after"):
        for key, label in (("fail%", "failed (%)"), ("achieved", "calls completed per second"),
                           ("server_cpu%", "server CPU %")):
            row(f"{phase}: {label}", num(g("pbx", phase, key)), num(g("kamailio", phase, key)),
                "lower" if key != "achieved" else "higher", "", num(g("pbx-base", phase, key)))

    if base:
        print("| measurement | pbx before | pbx | Kamailio 5.6 | ratio pbx/Kamailio |")
        print("| --- | --- | --- | --- | --- |")
    else:
        print("| measurement | pbx | Kamailio 5.6 | ratio pbx/Kamailio |")
        print("| --- | --- | --- | --- |")
    print("\n".join(rows))

    # The abuse guard's cost: pbx with it on against off, same run.
    if "pbx-unguarded" in data:
        print()
        print("| CPU per operation | guard on | guard off | ratio on/off |")
        print("| --- | --- | --- | --- |")
        for metric, label in [("cpu-reg", "registration"), ("cpu-call", "call")]:
            def per_op(server):
                cpu = num(g(server, metric, "server_cpu%"))
                rate = num(g(server, metric, "achieved"))
                return None if not cpu or not rate else cpu / 100.0 * 1e6 / rate
            on, off = per_op("pbx"), per_op("pbx-unguarded")
            r = "n/a" if not on or not off else f"{on / off:.2f}x"
            f = lambda x: "n/a" if x is None else f"{x:,.1f} us"
            print(f"| {label} at {g('pbx', metric, 'rate')}/s | {f(on)} | {f(off)} | {r} |")
    if g("pbx", "banned", "dropped") is not None:
        b = lambda k: g("pbx", "banned", k)
        print()
        print(f"Banned source flooding for 10 s: {b('sent')} packets sent, {b('dropped')} dropped "
              f"({b('dropped_per_s')}/s) at {b('server_cpu%')} % server CPU: "
              f"{b('dropped_per_cpu_s')} packets per CPU-second.")


    if g("pbx", "storm", "phones") is not None:
        st = data["pbx"]["storm"]
        print()
        print(f"Registration storm: {st.get('phones')} phones registering at once "
              f"(first REGISTERs sent in {st.get('first_registers_sent_in_ms')} ms): "
              f"{st.get('registered')} registered, {st.get('failed')} failed, "
              f"{st.get('answered_503')} answered 503 with Retry-After, "
              f"{st.get('retransmissions')} retransmissions; registered after "
              f"p50 {st.get('registered_p50_ms')} ms, p90 {st.get('registered_p90_ms')} ms, "
              f"last {st.get('registered_last_ms')} ms; granted expiries "
              f"{st.get('granted_min_s')}-{st.get('granted_max_s')} s over {st.get('refresh_minutes')} "
              f"minutes (busiest minute {st.get('busiest_refresh_minute')} refreshes); "
              f"PSS {st.get('idle_pss_kb')} kB idle, {st.get('peak_pss_kb')} kB at the peak.")


if __name__ == "__main__":
    main(sys.argv[1])
