//! Load for a media relay driven over rtpengine's ng protocol (ours in
//! `pbx media-relay`, or rtpengine itself): N calls set up with offer and
//! answer, each sending G.711 packets every 20 ms in both directions for a
//! while; prints loss, one-way latency through the relay (p50/p99), jitter,
//! and the relay process's CPU and memory from /proc.
//!
//! cargo run --release -p pbx-media --example rtpload -- \
//!     --ng 127.0.0.1:2223 --pid PID --calls 1000 --seconds 20

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pbx_media::ng::{decode, encode, Value};
use tokio::net::UdpSocket;

struct Args {
    ng: SocketAddr,
    pid: u32,
    calls: usize,
    seconds: u64,
    label: String,
}

fn args() -> Args {
    let mut a = Args {
        ng: SocketAddr::from(([127, 0, 0, 1], 2223)),
        pid: 0,
        calls: 100,
        seconds: 20,
        label: "relay".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().unwrap_or_default();
        match k.as_str() {
            "--ng" => a.ng = v.parse().expect("--ng ADDR"),
            "--pid" => a.pid = v.parse().expect("--pid PID"),
            "--calls" => a.calls = v.parse().expect("--calls N"),
            "--seconds" => a.seconds = v.parse().expect("--seconds S"),
            "--label" => a.label = v,
            _ => panic!("unknown option {k}"),
        }
    }
    a
}

/// utime + stime of a process, in clock ticks, and its RSS in kB.
fn proc_stats(pid: u32) -> (u64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or_default();
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = f.get(11).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    (ticks, rss)
}

struct Ng {
    sock: UdpSocket,
    n: AtomicU64,
}

impl Ng {
    async fn call(&self, pairs: &[(&str, &str)]) -> Value {
        let mut d = std::collections::BTreeMap::new();
        for (k, v) in pairs {
            d.insert(k.as_bytes().to_vec(), Value::Bytes(v.as_bytes().to_vec()));
        }
        let cookie = format!(
            "{}-{}",
            std::process::id(),
            self.n.fetch_add(1, Ordering::Relaxed)
        );
        let mut out = format!("{cookie} ").into_bytes();
        encode(&Value::Dict(d), &mut out);
        let mut buf = vec![0u8; 65536];
        for _ in 0..5 {
            self.sock.send(&out).await.expect("ng send");
            if let Ok(Ok(n)) =
                tokio::time::timeout(Duration::from_secs(2), self.sock.recv(&mut buf)).await
            {
                let msg = &buf[..n];
                if let Some(sp) = msg.iter().position(|&b| b == b' ') {
                    if &msg[..sp] == cookie.as_bytes() {
                        return decode(&msg[sp + 1..]).expect("ng reply");
                    }
                }
            }
        }
        panic!("no ng reply");
    }
}

fn sdp_port(v: &Value) -> SocketAddr {
    let Value::Dict(d) = v else { panic!("reply") };
    let Some(Value::Bytes(sdp)) = d.get(b"sdp".as_slice()) else {
        panic!("no sdp in reply: {v:?}")
    };
    let s = pbx_media::sdp::Sdp::parse(sdp).expect("sdp");
    SocketAddr::new(s.streams[0].address.expect("addr"), s.streams[0].port)
}

fn offer(port: u16) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {port} RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\na=ptime:20\r\na=sendrecv\r\n"
    )
}

/// Latency histogram: 10 µs buckets up to 200 ms.
struct Stats {
    sent: AtomicU64,
    received: AtomicU64,
    buckets: Vec<AtomicU64>,
    jitter_us_sum: AtomicU64,
    jitter_n: AtomicU64,
}

const BUCKET_US: u64 = 10;

impl Stats {
    fn new() -> Stats {
        Stats {
            sent: AtomicU64::new(0),
            received: AtomicU64::new(0),
            buckets: (0..20_000).map(|_| AtomicU64::new(0)).collect(),
            jitter_us_sum: AtomicU64::new(0),
            jitter_n: AtomicU64::new(0),
        }
    }

    fn percentile(&self, p: f64) -> f64 {
        let total: u64 = self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum();
        let want = (total as f64 * p).ceil() as u64;
        let mut seen = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            seen += b.load(Ordering::Relaxed);
            if seen >= want && want > 0 {
                return (i as u64 * BUCKET_US) as f64 / 1000.0;
            }
        }
        f64::NAN
    }
}

fn packet(seq: u16, sent_us: u64) -> [u8; 172] {
    let mut p = [0xd5u8; 172];
    p[0] = 0x80;
    p[1] = 8;
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p[8..12].copy_from_slice(&0x5eed_u32.to_be_bytes());
    p[12..20].copy_from_slice(&sent_us.to_be_bytes());
    p
}

/// The measuring window, [start, end) in µs since the epoch (0: not yet).
struct Window {
    start: AtomicU64,
    end: AtomicU64,
}

impl Window {
    fn holds(&self, t: u64) -> bool {
        let start = self.start.load(Ordering::Relaxed);
        start != 0 && t >= start && t < self.end.load(Ordering::Relaxed)
    }
}

async fn receive(sock: Arc<UdpSocket>, stats: Arc<Stats>, epoch: Instant, window: Arc<Window>) {
    let mut buf = [0u8; 2048];
    let mut last_transit: Option<i64> = None;
    loop {
        let Ok(n) = sock.recv(&mut buf).await else {
            continue;
        };
        if n < 20 {
            continue;
        }
        let now = epoch.elapsed().as_micros() as u64;
        let sent = u64::from_be_bytes(buf[12..20].try_into().unwrap_or_default());
        if !window.holds(sent) {
            continue;
        }
        stats.received.fetch_add(1, Ordering::Relaxed);
        let lat = now.saturating_sub(sent);
        let i = ((lat / BUCKET_US) as usize).min(stats.buckets.len() - 1);
        stats.buckets[i].fetch_add(1, Ordering::Relaxed);
        let transit = lat as i64;
        if let Some(l) = last_transit {
            stats
                .jitter_us_sum
                .fetch_add((transit - l).unsigned_abs(), Ordering::Relaxed);
            stats.jitter_n.fetch_add(1, Ordering::Relaxed);
        }
        last_transit = Some(transit);
    }
}

#[tokio::main]
async fn main() {
    let a = args();
    let ngsock = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    ngsock.connect(a.ng).await.expect("connect ng");
    let ng = Ng {
        sock: ngsock,
        n: AtomicU64::new(0),
    };
    let (_, rss_before) = proc_stats(a.pid);
    let epoch = Instant::now();
    let stats = Arc::new(Stats::new());
    let window = Arc::new(Window {
        start: AtomicU64::new(0),
        end: AtomicU64::new(u64::MAX),
    });
    let mut legs = Vec::with_capacity(a.calls);
    for i in 0..a.calls {
        let sa = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind a"));
        let sb = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind b"));
        let call_id = format!("load-{}-{i}", std::process::id());
        let off = ng
            .call(&[
                ("command", "offer"),
                ("call-id", &call_id),
                ("from-tag", "a"),
                ("sdp", &offer(sa.local_addr().expect("addr").port())),
                ("replace", "origin"),
            ])
            .await;
        let to_b = sdp_port(&off);
        let ans = ng
            .call(&[
                ("command", "answer"),
                ("call-id", &call_id),
                ("from-tag", "a"),
                ("to-tag", "b"),
                ("sdp", &offer(sb.local_addr().expect("addr").port())),
            ])
            .await;
        let to_a = sdp_port(&ans);
        sa.connect(to_a).await.expect("connect a");
        sb.connect(to_b).await.expect("connect b");
        tokio::spawn(receive(sa.clone(), stats.clone(), epoch, window.clone()));
        tokio::spawn(receive(sb.clone(), stats.clone(), epoch, window.clone()));
        legs.push((call_id, sa, sb));
    }
    // Each call sends on its own phase of the 20 ms period.
    for (i, (_, sa, sb)) in legs.iter().enumerate() {
        let (sa, sb, stats) = (sa.clone(), sb.clone(), stats.clone());
        let phase = Duration::from_micros((i as u64 * 20_000 / a.calls.max(1) as u64) % 20_000);
        let window = window.clone();
        tokio::spawn(async move {
            tokio::time::sleep(phase).await;
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            let mut seq: u16 = 0;
            loop {
                tick.tick().await;
                let now = epoch.elapsed().as_micros() as u64;
                let p = packet(seq, now);
                let counted = window.holds(now);
                for s in [&sa, &sb] {
                    if s.send(&p).await.is_ok() && counted {
                        stats.sent.fetch_add(1, Ordering::Relaxed);
                    }
                }
                seq = seq.wrapping_add(1);
            }
        });
    }
    // Two seconds to settle (latching), then measure.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (cpu0, rss_loaded) = proc_stats(a.pid);
    let t0 = Instant::now();
    window
        .start
        .store(epoch.elapsed().as_micros() as u64, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(a.seconds)).await;
    window
        .end
        .store(epoch.elapsed().as_micros() as u64, Ordering::Relaxed);
    let (cpu1, _) = proc_stats(a.pid);
    let wall = t0.elapsed().as_secs_f64();
    // Packets in flight at the end are not losses: wait for them.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = stats.sent.load(Ordering::Relaxed);
    let received = stats.received.load(Ordering::Relaxed);
    let ticks = 100.0; // USER_HZ
    let cpu = (cpu1 - cpu0) as f64 / ticks;
    let streams = (a.calls * 2) as f64;
    let lost = sent.saturating_sub(received) as f64 / sent.max(1) as f64 * 100.0;
    let jitter = stats.jitter_us_sum.load(Ordering::Relaxed) as f64
        / stats.jitter_n.load(Ordering::Relaxed).max(1) as f64
        / 1000.0;
    println!(
        "{{\"relay\":\"{}\",\"calls\":{},\"packets_per_s\":{:.0},\"loss_percent\":{:.4},\"latency_p50_ms\":{:.3},\"latency_p99_ms\":{:.3},\"jitter_ms\":{:.3},\"cpu_percent\":{:.1},\"cpu_us_per_stream_s\":{:.2},\"packets_per_cpu_s\":{:.0},\"rss_kb_per_call\":{:.1}}}",
        a.label,
        a.calls,
        sent as f64 / wall,
        lost,
        stats.percentile(0.5),
        stats.percentile(0.99),
        jitter,
        cpu / wall * 100.0,
        cpu / wall / streams * 1e6,
        if cpu > 0.0 { received as f64 / cpu } else { f64::NAN },
        rss_loaded.saturating_sub(rss_before) as f64 / a.calls.max(1) as f64,
    );
    for (call_id, _, _) in &legs {
        ng.call(&[
            ("command", "delete"),
            ("call-id", call_id),
            ("from-tag", "a"),
        ])
        .await;
    }
}
