//! A registration storm, as after a network outage: N phones register at
//! once (digest MD5, like the benchmark's SIPp phones), each answering its
//! 401, honouring a 503's Retry-After and retransmitting on silence
//! (RFC 3261 Timer E). Prints when the phones got through, what the server
//! answered, how long it asked them to wait, and how the expiries it granted
//! are spread (what the next refresh wave will look like).
//!
//!     cargo run --release -p pbx-sip-proxy --example register_storm -- \
//!         --server 127.0.0.1:5080 --users users.csv --domain bench.example --phones 10000
//!
//! `--users` is the benchmark's CSV (`user;password` lines, an optional
//! `SEQUENTIAL` first line). `--window-ms` spreads the first REGISTERs over
//! that many milliseconds (0: as fast as the sockets take them). Loopback
//! only: the server and the local address must be in 127.0.0.0/8 or ::1.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use md5::{Digest, Md5};
use pbx_sip_message::auth::DigestParams;
use pbx_sip_message::{HeaderName, Limits, Message};
use tokio::net::UdpSocket;
use tokio::sync::Mutex;

struct Args {
    server: SocketAddr,
    users: String,
    domain: String,
    phones: usize,
    sockets: usize,
    local: IpAddr,
    expires: u32,
    window_ms: u64,
    give_up: Duration,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        server: "127.0.0.1:5080".parse().map_err(|_| "address")?,
        users: String::new(),
        domain: "bench.example".into(),
        phones: 10_000,
        sockets: 100,
        local: "127.0.0.1".parse().map_err(|_| "address")?,
        expires: 3600,
        window_ms: 0,
        give_up: Duration::from_secs(120),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let bad = || format!("bad value for {flag}: {value}");
        match flag.as_str() {
            "--server" => a.server = value.parse().map_err(|_| bad())?,
            "--users" => a.users = value.clone(),
            "--domain" => a.domain = value.clone(),
            "--phones" => a.phones = value.parse().map_err(|_| bad())?,
            "--sockets" => a.sockets = value.parse().map_err(|_| bad())?,
            "--local-ip" => a.local = value.parse().map_err(|_| bad())?,
            "--expires" => a.expires = value.parse().map_err(|_| bad())?,
            "--window-ms" => a.window_ms = value.parse().map_err(|_| bad())?,
            "--give-up-s" => a.give_up = Duration::from_secs(value.parse().map_err(|_| bad())?),
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    if !a.server.ip().is_loopback() || !a.local.is_loopback() {
        return Err("only loopback addresses may be used".into());
    }
    if a.users.is_empty() {
        return Err("--users CSV is required".into());
    }
    Ok(a)
}

#[derive(Default, Clone)]
struct Phone {
    user: String,
    password: String,
    /// Which REGISTER attempt (a new Call-ID each after a 503).
    attempt: u32,
    cseq: u32,
    sent_at: Option<Instant>,
    /// Retransmissions of the pending request.
    resent: u32,
    /// The pending request, for retransmission.
    pending: Option<Bytes>,
    /// Not before this instant (Retry-After).
    wait_until: Option<Instant>,
    registered_at: Option<Duration>,
    granted: Option<u32>,
    failed: bool,
}

#[derive(Default)]
struct Tally {
    challenges: u64,
    ok: u64,
    unavailable: u64,
    other: BTreeMap<u16, u64>,
    retry_after: BTreeMap<u32, u64>,
    retransmissions: u64,
}

struct Storm {
    args: Args,
    start: Instant,
    phones: Mutex<Vec<Phone>>,
    tally: Mutex<Tally>,
    sockets: Vec<Arc<UdpSocket>>,
}

fn md5_hex(text: &str) -> String {
    Md5::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Storm {
    fn socket_of(&self, id: usize) -> &Arc<UdpSocket> {
        &self.sockets[id % self.sockets.len()]
    }

    fn request(&self, id: usize, p: &Phone, authorization: Option<String>) -> Bytes {
        let local = self
            .socket_of(id)
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::new(self.args.local, 0));
        let d = &self.args.domain;
        let auth = authorization
            .map(|a| format!("Authorization: {a}\r\n"))
            .unwrap_or_default();
        Bytes::from(format!(
            "REGISTER sip:{d} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKs{id}x{a}x{c};rport\r\nMax-Forwards: 70\r\nFrom: <sip:{u}@{d}>;tag=s{id}\r\nTo: <sip:{u}@{d}>\r\nCall-ID: storm-{id}-{a}\r\nCSeq: {c} REGISTER\r\nContact: <sip:{u}@{local}>\r\nExpires: {e}\r\n{auth}User-Agent: storm\r\nContent-Length: 0\r\n\r\n",
            u = p.user,
            a = p.attempt,
            c = p.cseq,
            e = self.args.expires,
        ))
    }

    async fn send(&self, id: usize, p: &mut Phone, authorization: Option<String>) {
        p.cseq += 1;
        let bytes = self.request(id, p, authorization);
        p.pending = Some(bytes.clone());
        p.sent_at = Some(Instant::now());
        p.resent = 0;
        let _ = self.socket_of(id).send_to(&bytes, self.args.server).await;
    }

    async fn on_response(&self, resp: Message) {
        let Some(id) = resp
            .call_id()
            .strip_prefix("storm-")
            .and_then(|r| r.split('-').next())
            .and_then(|n| n.parse::<usize>().ok())
        else {
            return;
        };
        let status = resp.status().unwrap_or(0);
        let mut phones = self.phones.lock().await;
        let Some(p) = phones.get_mut(id) else { return };
        let expected = format!("storm-{id}-{}", p.attempt);
        if resp.call_id() != expected || resp.cseq().seq != p.cseq || p.pending.is_none() {
            return; // a retransmitted answer, or one to an older attempt
        }
        let mut tally = self.tally.lock().await;
        match status {
            100..=199 => {}
            401 => {
                tally.challenges += 1;
                drop(tally);
                let challenge = resp
                    .values(&HeaderName::WwwAuthenticate)
                    .filter_map(|h| h.text().and_then(|t| DigestParams::parse(&t).ok()))
                    .find(|c| {
                        c.get("algorithm")
                            .is_none_or(|a| a.eq_ignore_ascii_case("MD5"))
                    });
                let Some(c) = challenge else {
                    p.failed = true;
                    p.pending = None;
                    return;
                };
                let realm = c.get("realm").unwrap_or_default();
                let nonce = c.get("nonce").unwrap_or_default();
                let uri = format!("sip:{}", self.args.domain);
                let ha1 = md5_hex(&format!("{}:{realm}:{}", p.user, p.password));
                let ha2 = md5_hex(&format!("REGISTER:{uri}"));
                let (response, qop) = if c.get("qop").is_some() {
                    (
                        md5_hex(&format!("{ha1}:{nonce}:00000001:c0ffee:auth:{ha2}")),
                        ", qop=auth, nc=00000001, cnonce=\"c0ffee\"",
                    )
                } else {
                    (md5_hex(&format!("{ha1}:{nonce}:{ha2}")), "")
                };
                let auth = format!(
                    "Digest username=\"{}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{response}\", algorithm=MD5{qop}",
                    p.user
                );
                self.send(id, p, Some(auth)).await;
            }
            200 => {
                tally.ok += 1;
                p.pending = None;
                p.registered_at = Some(self.start.elapsed());
                p.granted = resp
                    .values(&HeaderName::Contact)
                    .filter_map(|h| h.text())
                    .find_map(|t| {
                        t.split(';')
                            .find_map(|part| part.trim().strip_prefix("expires="))
                            .and_then(|v| v.trim().parse().ok())
                    });
            }
            503 => {
                tally.unavailable += 1;
                let wait = resp.value_text(&HeaderName::RetryAfter).and_then(|v| {
                    v.split(';')
                        .next()
                        .and_then(|s| s.trim().parse::<u32>().ok())
                });
                let wait_s = wait.unwrap_or(5);
                *tally.retry_after.entry(wait_s).or_default() += 1;
                p.pending = None;
                p.attempt += 1;
                p.cseq = 0;
                p.wait_until = Some(Instant::now() + Duration::from_secs(u64::from(wait_s)));
            }
            other => {
                *tally.other.entry(other).or_default() += 1;
                p.pending = None;
                p.failed = true;
            }
        }
    }

    /// Retransmissions (Timer E: 0.5 s doubling to 4 s, given up after 32 s)
    /// and the phones whose Retry-After is over.
    async fn tick(&self) {
        let now = Instant::now();
        let mut phones = self.phones.lock().await;
        for id in 0..phones.len() {
            let p = &mut phones[id];
            if p.failed || p.registered_at.is_some() {
                continue;
            }
            if let Some(until) = p.wait_until {
                if now >= until {
                    p.wait_until = None;
                    self.send(id, p, None).await;
                }
                continue;
            }
            let (Some(sent), Some(bytes)) = (p.sent_at, p.pending.clone()) else {
                continue;
            };
            let interval = Duration::from_millis((500u64 << p.resent.min(3)).min(4000));
            if now.duration_since(sent) >= interval {
                if p.resent >= 7 {
                    p.failed = true;
                    p.pending = None;
                    continue;
                }
                p.resent += 1;
                p.sent_at = Some(now);
                self.tally.lock().await.retransmissions += 1;
                let _ = self.socket_of(id).send_to(&bytes, self.args.server).await;
            }
        }
    }

    fn done(phones: &[Phone]) -> bool {
        phones.iter().all(|p| p.failed || p.registered_at.is_some())
    }
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i]
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), String> {
    let args = args()?;
    let csv = std::fs::read_to_string(&args.users).map_err(|e| format!("{}: {e}", args.users))?;
    let users: Vec<(String, String)> = csv
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("SEQUENTIAL"))
        .filter_map(|l| {
            let mut f = l.split(';');
            Some((f.next()?.to_owned(), f.next()?.to_owned()))
        })
        .collect();
    if users.len() < args.phones {
        return Err(format!(
            "{} users in the CSV, {} phones asked for",
            users.len(),
            args.phones
        ));
    }
    let mut sockets = Vec::new();
    for _ in 0..args.sockets.max(1) {
        let s = socket2::Socket::new(
            socket2::Domain::for_address(args.server),
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )
        .map_err(|e| e.to_string())?;
        let _ = s.set_recv_buffer_size(4 << 20);
        s.bind(&SocketAddr::new(args.local, 0).into())
            .map_err(|e| e.to_string())?;
        s.set_nonblocking(true).map_err(|e| e.to_string())?;
        let std: std::net::UdpSocket = s.into();
        sockets.push(Arc::new(
            UdpSocket::from_std(std).map_err(|e| e.to_string())?,
        ));
    }
    let phones = users
        .iter()
        .take(args.phones)
        .map(|(u, p)| Phone {
            user: u.clone(),
            password: p.clone(),
            ..Phone::default()
        })
        .collect();
    let storm = Arc::new(Storm {
        start: Instant::now(),
        phones: Mutex::new(phones),
        tally: Mutex::default(),
        sockets,
        args,
    });
    for socket in storm.sockets.clone() {
        let storm = storm.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            while let Ok((n, _)) = socket.recv_from(&mut buf).await {
                if let Ok(m) =
                    Message::parse_datagram(Bytes::copy_from_slice(&buf[..n]), &Limits::default())
                {
                    storm.on_response(m).await;
                }
            }
        });
    }
    // The first REGISTERs: all at once, or spread over the window.
    let n = storm.args.phones;
    let window = Duration::from_millis(storm.args.window_ms);
    for id in 0..n {
        if !window.is_zero() {
            let due = window.mul_f64(id as f64 / n as f64);
            let elapsed = storm.start.elapsed();
            if due > elapsed {
                tokio::time::sleep(due - elapsed).await;
            }
        }
        let mut phones = storm.phones.lock().await;
        let p = &mut phones[id];
        storm.send(id, p, None).await;
        drop(phones);
        if id % 256 == 0 {
            tokio::task::yield_now().await;
        }
    }
    let sent_all = storm.start.elapsed();
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        storm.tick().await;
        if Storm::done(&storm.phones.lock().await) || storm.start.elapsed() > storm.args.give_up {
            break;
        }
    }
    let phones = storm.phones.lock().await;
    let tally = storm.tally.lock().await;
    let mut times: Vec<Duration> = phones.iter().filter_map(|p| p.registered_at).collect();
    times.sort();
    let mut granted: Vec<u32> = phones.iter().filter_map(|p| p.granted).collect();
    granted.sort_unstable();
    let registered = times.len();
    println!(
        "phones={n} first_registers_sent_in_ms={} registered={registered} failed={} unfinished={}",
        sent_all.as_millis(),
        phones.iter().filter(|p| p.failed).count(),
        n - registered - phones.iter().filter(|p| p.failed).count()
    );
    println!(
        "registered_p50_ms={} registered_p90_ms={} registered_p99_ms={} registered_last_ms={}",
        percentile(&times, 0.5).as_millis(),
        percentile(&times, 0.9).as_millis(),
        percentile(&times, 0.99).as_millis(),
        times.last().copied().unwrap_or_default().as_millis()
    );
    println!(
        "answered_401={} answered_200={} answered_503={} answered_other={:?} retransmissions={}",
        tally.challenges, tally.ok, tally.unavailable, tally.other, tally.retransmissions
    );
    if !tally.retry_after.is_empty() {
        let waits: Vec<String> = tally
            .retry_after
            .iter()
            .map(|(s, c)| format!("{s}s:{c}"))
            .collect();
        println!("retry_after_s={}", waits.join(","));
    }
    if let (Some(min), Some(max)) = (granted.first(), granted.last()) {
        let pick = |q: f64| granted[((granted.len() - 1) as f64 * q).round() as usize];
        // The next refresh wave: how many phones come back in each minute.
        let mut per_minute: BTreeMap<u32, u64> = BTreeMap::new();
        for g in &granted {
            *per_minute.entry(g / 60).or_default() += 1;
        }
        let busiest = per_minute.values().max().copied().unwrap_or(0);
        let (p10, p50, p90, minutes) = (pick(0.1), pick(0.5), pick(0.9), per_minute.len());
        println!(
            "granted_min_s={min} granted_p10_s={p10} granted_p50_s={p50} granted_p90_s={p90} granted_max_s={max} refresh_minutes={minutes} busiest_refresh_minute={busiest}"
        );
    }
    Ok(())
}
