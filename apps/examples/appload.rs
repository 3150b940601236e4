//! What the media applications cost, against a relayed call, in one run
//! and one process: the relay, the recordings (voicemail) and the
//! conference rooms each run alone on a tokio runtime thread of their own,
//! fed by phones on another thread (G.711, a packet every 20 ms), and the
//! CPU each workload's thread used (and the relay's recorder thread's,
//! where the recorded calls are written) is read from /proc. Prints one JSON
//! line per workload: CPU per session (relayed call, relayed call recorded
//! by the relay, voicemail recording, conference participant, a caller
//! joined by an auto attendant to the call it placed) in µs per
//! second of audio, the ratio to a relayed call, and frames lost at the
//! phones. Loopback only.
//!
//! cargo run --release -p pbx-apps --example appload -- \
//!     --calls 200 --recordings 200 --rooms 20 --room-size 10 --bridges 200 --seconds 15

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pbx_apps::bridge;
use pbx_apps::conference::{Door, Rooms};
use pbx_apps::media::{CallMedia, Offer};
use pbx_media::g711::Law;
use pbx_media::rtp::{self, RtpHeader};
use pbx_media::{Party, Relay, RelayConfig};
use pbx_store::ConferenceRoomId;
use tokio::net::UdpSocket;

struct Args {
    calls: usize,
    recordings: usize,
    rooms: usize,
    room_size: usize,
    bridges: usize,
    seconds: u64,
}

fn args() -> Args {
    let mut a = Args {
        calls: 200,
        recordings: 200,
        rooms: 20,
        room_size: 10,
        bridges: 200,
        seconds: 15,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v: usize = it.next().unwrap_or_default().parse().expect("a number");
        match k.as_str() {
            "--calls" => a.calls = v,
            "--recordings" => a.recordings = v,
            "--rooms" => a.rooms = v,
            "--room-size" => a.room_size = v,
            "--bridges" => a.bridges = v,
            "--seconds" => a.seconds = v as u64,
            _ => panic!("unknown option {k}"),
        }
    }
    a
}

/// CPU time this thread used so far, in ms.
fn thread_cpu_ms() -> u64 {
    cpu_ms_of(std::path::Path::new("/proc/thread-self"))
}

/// CPU time the thread at `task` (a /proc directory) used so far, in ms
/// (utime + stime, 10 ms ticks).
fn cpu_ms_of(task: &std::path::Path) -> u64 {
    let stat = std::fs::read_to_string(task.join("stat")).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or_default();
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = f.get(11).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
    ticks * 10
}

/// CPU time the relay's recorder thread used so far, in ms (0 before any
/// recording started it): the recorded calls' writing happens there.
fn recorder_cpu_ms() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    for task in tasks.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim() == "recorder" {
            return cpu_ms_of(&task.path());
        }
    }
    0
}

const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

/// A phone: sends a frame every 20 ms to `to` (set once known), counts
/// what it receives.
struct Phone {
    socket: Arc<UdpSocket>,
    received: Arc<AtomicU64>,
}

/// A phone, its socket on the phones' runtime (`ph`).
async fn phone(ph: &tokio::runtime::Handle) -> Phone {
    let socket = ph
        .spawn(async { UdpSocket::bind((IP, 0)).await })
        .await
        .expect("phones runtime")
        .expect("phone socket");
    Phone {
        socket: Arc::new(socket),
        received: Arc::new(AtomicU64::new(0)),
    }
}

impl Phone {
    fn addr(&self) -> SocketAddr {
        self.socket.local_addr().expect("addr")
    }

    /// Talks to `to` for `seconds` and counts what comes back (on the
    /// phones' runtime).
    fn run(&self, to: SocketAddr, seconds: u64, rt: &tokio::runtime::Handle) {
        let socket = self.socket.clone();
        let received = self.received.clone();
        rt.spawn(async move {
            let mut buf = [0u8; 2048];
            loop {
                if socket.recv_from(&mut buf).await.is_ok() {
                    received.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        let socket = self.socket.clone();
        rt.spawn(async move {
            let voice = pbx_media::audio::tone(440.0, 1000, 0.3);
            let mut payload = Vec::new();
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            let ssrc = rand_u32();
            for i in 0..seconds * 50 {
                tick.tick().await;
                let at = (i as usize % 50) * 160;
                payload.clear();
                Law::Mu.encode_into(&voice[at..at + 160], &mut payload);
                let h = RtpHeader {
                    payload_type: 0,
                    sequence: i as u16,
                    timestamp: (i * 160) as u32,
                    ssrc,
                };
                let _ = socket.send_to(&rtp::packet(&h, i == 0, &payload), to).await;
            }
        });
    }
}

fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish() as u32
}

fn sdp(port: u16) -> Vec<u8> {
    format!("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\na=sendrecv\r\n")
        .into_bytes()
}

fn port_of(sdp: &[u8]) -> u16 {
    let text = String::from_utf8_lossy(sdp);
    text.lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .expect("relay port")
}

/// Workload threads are named in order (`workload-0`…), for profilers.
static NEXT: AtomicU64 = AtomicU64::new(0);

/// What one workload cost.
struct Outcome {
    cpu_ms: u64,
    sessions: usize,
    expected: u64,
    received: u64,
}

/// Runs `setup` on a runtime thread of its own for `seconds` (plus the
/// setup), with the phones on `phones`; returns its CPU and the phones'
/// counts.
fn workload<F, Fut>(seconds: u64, phones: tokio::runtime::Handle, setup: F) -> Outcome
where
    F: FnOnce(tokio::runtime::Handle) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = (Vec<Phone>, u64, Box<dyn std::any::Any + Send>)>,
{
    std::thread::Builder::new()
        .name(format!("workload-{}", NEXT.fetch_add(1, Ordering::Relaxed)))
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let (list, expected, keep) = setup(phones).await;
                // Warm-up past the set-up, then the measured stretch.
                tokio::time::sleep(Duration::from_secs(1)).await;
                let before: u64 = list
                    .iter()
                    .map(|p| p.received.load(Ordering::Relaxed))
                    .sum();
                // The workload's thread, and the relay's recorder (idle
                // unless this workload records).
                let cpu = thread_cpu_ms() + recorder_cpu_ms();
                tokio::time::sleep(Duration::from_secs(seconds)).await;
                let cpu_ms = (thread_cpu_ms() + recorder_cpu_ms()).saturating_sub(cpu);
                let after: u64 = list
                    .iter()
                    .map(|p| p.received.load(Ordering::Relaxed))
                    .sum();
                drop(keep);
                Outcome {
                    cpu_ms,
                    sessions: list.len(),
                    expected: expected * seconds * 50,
                    received: after - before,
                }
            })
        })
        .expect("workload thread")
        .join()
        .expect("workload")
}

fn report(label: &str, o: &Outcome, per: usize, seconds: u64, relayed: Option<f64>) -> f64 {
    let us = o.cpu_ms as f64 * 1000.0 / per.max(1) as f64 / seconds as f64;
    let lost = o.expected.saturating_sub(o.received) as f64 / o.expected.max(1) as f64 * 100.0;
    let ratio = relayed.map_or(1.0, |r| us / r.max(1e-9));
    println!(
        "{{\"workload\":\"{label}\",\"sessions\":{per},\"phones\":{},\"cpu_ms\":{},\"cpu_us_per_session_second\":{us:.1},\"ratio_to_relayed_call\":{ratio:.2},\"frames_lost_pct\":{lost:.3}}}",
        o.sessions, o.cpu_ms
    );
    us
}

/// `calls` calls of two phones each through a relay, talking for `talk`
/// seconds; each recorded into `record` (a directory) if given.
async fn relayed_calls(
    ph: tokio::runtime::Handle,
    calls: usize,
    talk: u64,
    record: Option<std::path::PathBuf>,
) -> (Vec<Phone>, u64, Box<dyn std::any::Any + Send>) {
    let relay = Relay::new(RelayConfig {
        ports: (30000, 39999),
        bind_v4: std::net::Ipv4Addr::LOCALHOST,
        music_on_hold: false,
        ..RelayConfig::default()
    });
    let mut list = Vec::new();
    for c in 0..calls {
        let key = (format!("call-{c}"), "tag".to_owned());
        let (x, y) = (phone(&ph).await, phone(&ph).await);
        relay.reserve(&key, Party::Caller, IP).expect("reserve");
        let to_y = relay
            .update(
                &key,
                Party::Caller,
                Party::Callee(0),
                &sdp(x.addr().port()),
                IP,
                IP,
            )
            .expect("offer");
        let to_x = relay
            .update(
                &key,
                Party::Callee(0),
                Party::Caller,
                &sdp(y.addr().port()),
                IP,
                IP,
            )
            .expect("answer");
        relay.choose(&key, 0);
        relay.established(&key);
        if let Some(dir) = &record {
            relay
                .record(&key, &dir.join(format!("{c}.wav")), None)
                .expect("recording");
        }
        x.run(SocketAddr::new(IP, port_of(&to_x)), talk, &ph);
        y.run(SocketAddr::new(IP, port_of(&to_y)), talk, &ph);
        list.push(x);
        list.push(y);
    }
    let expected = list.len() as u64;
    (
        list,
        expected,
        Box::new(relay) as Box<dyn std::any::Any + Send>,
    )
}

fn main() {
    let a = args();
    let seconds = a.seconds;
    let phones_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("phones runtime");
    let handle = phones_rt.handle().clone();
    std::thread::spawn(move || phones_rt.block_on(std::future::pending::<()>()));
    let talk = seconds + 3;

    // Relayed calls: two phones each, through the relay.
    let calls = a.calls;
    let relay = workload(seconds, handle.clone(), move |ph| {
        relayed_calls(ph, calls, talk, None)
    });
    let per_call = report("relayed_call", &relay, calls, seconds, None);

    // The same calls recorded by the relay (both sides to a WAV file each).
    let dir = std::env::temp_dir().join(format!("appload-{}", std::process::id()));
    let files = dir.clone();
    let recorded = workload(seconds, handle.clone(), move |ph| {
        relayed_calls(ph, calls, talk, Some(files))
    });
    report("recorded_call", &recorded, calls, seconds, Some(per_call));
    let _ = std::fs::remove_dir_all(&dir);

    // Recordings: what voicemail does while a caller speaks.
    let recordings = a.recordings;
    let rec = workload(seconds, handle.clone(), move |ph| async move {
        let mut list = Vec::new();
        let mut keep = Vec::new();
        for _ in 0..recordings {
            let p = phone(&ph).await;
            let (tx, mut rx) = tokio::sync::mpsc::channel(16);
            let offer = Offer {
                address: p.addr(),
                law: Law::Mu,
                dtmf: None,
            };
            let media = CallMedia::open(IP, &offer, tx).await.expect("media");
            p.run(media.local(), talk, &ph);
            let m = media.clone();
            tokio::spawn(async move {
                let _ = m.record(Duration::from_secs(talk), &mut rx, '#').await;
            });
            keep.push(media);
            list.push(p);
        }
        // Each phone hears the recording's silence frames.
        let expected = list.len() as u64;
        (
            list,
            expected,
            Box::new(keep) as Box<dyn std::any::Any + Send>,
        )
    });
    report(
        "voicemail_recording",
        &rec,
        recordings,
        seconds,
        Some(per_call),
    );

    // Conference rooms.
    let (rooms_n, size) = (a.rooms, a.room_size);
    let conf = workload(seconds, handle.clone(), move |ph| async move {
        let rooms = Arc::new(Rooms::default());
        let mut list = Vec::new();
        let mut keep = Vec::new();
        for r in 0..rooms_n {
            for _ in 0..size {
                let p = phone(&ph).await;
                let (tx, rx) = tokio::sync::mpsc::channel(16);
                let offer = Offer {
                    address: p.addr(),
                    law: Law::Mu,
                    dtmf: None,
                };
                let media = CallMedia::open(IP, &offer, tx).await.expect("media");
                let door = rooms.enter(ConferenceRoomId(r as i64 + 1), size, media.clone());
                assert!(matches!(door, Door::In(_)), "room full");
                p.run(media.local(), talk, &ph);
                keep.push((media, rx));
                list.push(p);
            }
        }
        let expected = list.len() as u64;
        (
            list,
            expected,
            Box::new((rooms, keep)) as Box<dyn std::any::Any + Send>,
        )
    });
    report(
        "conference_participant",
        &conf,
        rooms_n * size,
        seconds,
        Some(per_call),
    );

    // Auto-attendant transfers: the caller's call and the one placed for
    // it, joined at the application server (decoded, through the jitter
    // buffers, encoded again). On a node both legs also pass the relay.
    let bridges = a.bridges;
    let joined = workload(seconds, handle.clone(), move |ph| async move {
        let mut list = Vec::new();
        let mut keep = Vec::new();
        for _ in 0..bridges {
            let mut legs = Vec::new();
            for _ in 0..2 {
                let p = phone(&ph).await;
                let (tx, rx) = tokio::sync::mpsc::channel(16);
                let offer = Offer {
                    address: p.addr(),
                    law: Law::Mu,
                    dtmf: None,
                };
                let media = CallMedia::open(IP, &offer, tx.clone())
                    .await
                    .expect("media");
                p.run(media.local(), talk, &ph);
                list.push(p);
                legs.push((media, rx, tx));
            }
            let (Some((b, mut b_rx, b_tx)), Some((a, mut a_rx, a_tx))) = (legs.pop(), legs.pop())
            else {
                continue;
            };
            tokio::spawn(async move {
                bridge::join((&a, &mut a_rx), (&b, &mut b_rx)).await;
            });
            keep.push((a_tx, b_tx));
        }
        let expected = list.len() as u64;
        (
            list,
            expected,
            Box::new(keep) as Box<dyn std::any::Any + Send>,
        )
    });
    report(
        "menu_transfer_bridge",
        &joined,
        bridges,
        seconds,
        Some(per_call),
    );
}
