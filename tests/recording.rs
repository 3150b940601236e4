//! Call recording for real: customer A records extension 102's calls.
//! baresip as 101 (its voice a 500 Hz tone) calls 102 (a baresip that
//! answers, its voice 1100 Hz); the node anchors the call for it (the
//! node's anchoring policy alone would not), both phones hear that the call
//! is recorded, and then talk. The recording is stored with the call's
//! record: a stereo WAV, the caller's tone left and the callee's right,
//! starting after the announcement. A call between 101 and 103 (whose
//! calls are not recorded) leaves no recording. On SQLite and PostgreSQL.
//! A carrier's call (SIPp streaming a tone) to a number A records is
//! recorded whoever answers.
//!
//! Needs baresip (Debian's baresip); skipped with a message otherwise,
//! unless CI requires it.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pbx_store::call_recordings::{CallRecording, RecordingPolicy};
use pbx_store::{Principal, Store};
use support::audio::{listen_channel, listen_span, read_channel};
use support::sip::{baresip, baresip_available, on_engine, Engine, Seeded};
use support::softphone::{established, heard, softphone};
use support::{metric, Node, TempDir};

const CALLER_HZ: f64 = 500.0;
const CALLEE_HZ: f64 = 1100.0;

/// Records the calls of customer A's extension 102.
async fn record_102(store: &Store) {
    let sys = Principal::system();
    let acme = support::sip::customer_a(store).await;
    let e102 = store
        .extensions()
        .list(&sys, acme)
        .await
        .expect("extensions")
        .into_iter()
        .find(|e| e.number == "102")
        .expect("102");
    store
        .call_recordings()
        .set_policy(
            &sys,
            acme,
            &RecordingPolicy {
                retention_days: 30,
                extensions: vec![e102.id],
                numbers: vec![],
            },
        )
        .await
        .expect("policy");
}

/// Customer A's recordings once `n` are stored (records are written in
/// the background), or what there is after a while.
async fn recordings(store: &Store, n: usize) -> Vec<(CallRecording, String)> {
    let sys = Principal::system();
    let acme = support::sip::customer_a(store).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let list = store
            .call_recordings()
            .list(&sys, acme, None, 100)
            .await
            .expect("recordings");
        if list.len() >= n || Instant::now() > deadline {
            let mut out = Vec::new();
            for r in list {
                out.push(store.call_recordings().get(&sys, r.id).await.expect("get"));
            }
            return out;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// A baresip for `phone` that answers calls by itself, its voice the
/// callee's tone, running for `seconds`.
fn answering_softphone(
    dir: &Path,
    phone: &support::sip::Phone,
    node: &Node,
    seconds: u32,
) -> (PathBuf, std::process::Child) {
    let callee_dir = softphone(dir, phone, node.sip_port, CALLEE_HZ, false);
    let accounts = callee_dir.join("accounts");
    let account = std::fs::read_to_string(&accounts).expect("accounts");
    std::fs::write(
        &accounts,
        format!("{};answermode=auto\n", account.trim_end()),
    )
    .expect("accounts");
    let run = baresip(&callee_dir, seconds, &[]);
    (callee_dir, run)
}

/// 101 calls `callee` (a baresip answering by itself) for `seconds`.
fn call(home: &Path, node: &Node, seeded: &Seeded, callee: &str, seconds: u32) -> [PathBuf; 2] {
    let (phone, name) = match callee {
        "102" => (&seeded.a102, "102"),
        _ => (&seeded.a103, "103"),
    };
    let (callee_dir, mut callee_run) = answering_softphone(
        &home.join(format!("{name}-answers")),
        phone,
        node,
        seconds + 10,
    );
    // Its registration first.
    std::thread::sleep(Duration::from_secs(2));
    let caller_dir = softphone(
        &home.join(format!("101-calls-{name}")),
        &seeded.a101,
        node.sip_port,
        CALLER_HZ,
        false,
    );
    let mut caller_run = baresip(&caller_dir, seconds, &[&format!("/dial {callee}")]);
    assert!(
        established(&caller_dir, Duration::from_secs(15)),
        "101 reached {callee}:\n{}",
        std::fs::read_to_string(caller_dir.join("log")).unwrap_or_default()
    );
    let _ = caller_run.wait();
    let _ = callee_run.kill();
    let _ = callee_run.wait();
    [caller_dir, callee_dir]
}

fn a_recorded_call(dir: &TempDir, seeded: &Seeded, database_url: Option<&str>, store: &Store) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(record_102(store));
    let key = support::sip::secret_key_base64();
    // The node anchors only calls behind NAT: recording must anchor by itself.
    let mut env = vec![
        ("PBX_SECRET_KEY", key.as_str()),
        ("PBX_SIP_DIGEST_ALGORITHMS", "MD5"),
        ("PBX_MEDIA_ANCHOR", "nat"),
    ];
    if let Some(url) = database_url {
        env.push(("PBX_DATABASE_URL", url));
    }
    let node = Node::start(dir.path(), &["serve"], &env);
    let home = TempDir::new("recording-phones");
    let [caller_dir, callee_dir] = call(home.path(), &node, seeded, "102", 14);

    let found = rt.block_on(recordings(store, 1));
    assert_eq!(
        found.len(),
        1,
        "one recording: {found:?}\n{}",
        node.stdout_text()
            .lines()
            .chain(node.stderr_text().lines())
            .filter(|l| l.contains("record") || l.contains("WARN"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let (rec, audio) = &found[0];
    assert_eq!((rec.caller.as_str(), rec.callee.as_str()), ("101", "102"));
    assert!(
        (5_000..14_000).contains(&rec.duration_ms),
        "recorded from after the announcement to the end: {rec:?}"
    );
    let file = dir.path().join("audio").join(audio);
    let tones = [CALLER_HZ, CALLEE_HZ];
    let (_, rate, channels) = read_channel(&file, 0).expect("a WAV file");
    assert_eq!((rate, channels), (8000, 2));
    let left = listen_channel(&file, 0, &tones);
    let right = listen_channel(&file, 1, &tones);
    assert!(left.has(CALLER_HZ), "the caller's side, left: {left:?}");
    assert!(right.has(CALLEE_HZ), "the callee's side, right: {right:?}");
    let share = |h: &support::audio::Heard, f: f64| {
        h.shares
            .iter()
            .find(|(t, _)| *t == f)
            .map_or(0.0, |(_, s)| *s)
    };
    assert!(share(&left, CALLEE_HZ) < 0.05 && share(&right, CALLER_HZ) < 0.05);
    // Both phones heard the announcement first: speech, neither tone.
    for (who, phone) in [("101", &caller_dir), ("102", &callee_dir)] {
        let first = listen_span(&heard(phone), &tones, 0.3, 1.5);
        assert!(
            first.rms > 300.0 && share(&first, CALLER_HZ) + share(&first, CALLEE_HZ) < 0.2,
            "{who} heard the announcement: {first:?}"
        );
    }

    // 103's calls are not recorded.
    call(home.path(), &node, seeded, "103", 5);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(rt.block_on(recordings(store, 2)).len(), 1, "no recording");
    assert_eq!(metric(&node, "pbx_media_recordings_total"), 1);
    assert_eq!(metric(&node, "pbx_media_recording_errors_total"), 0);
}

/// `seconds` of a `hz` tone as SIPp streams it: a G.711 u-law WAV file.
fn ulaw_tone(hz: f64, seconds: u32) -> Vec<u8> {
    let mut data = Vec::new();
    pbx_media::g711::Law::Mu
        .encode_into(&pbx_media::audio::tone(hz, seconds * 1000, 0.3), &mut data);
    let mut wav = Vec::with_capacity(44 + data.len());
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    // PCM header of format 7 (u-law), mono, 8 kHz, 8 bits.
    for (value, bytes) in [
        (16u32, 4),
        (7, 2),
        (1, 2),
        (8000, 4),
        (8000, 4),
        (1, 2),
        (8, 2),
    ] {
        wav.extend_from_slice(&value.to_le_bytes()[..bytes]);
    }
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&(data.len() as u32).to_le_bytes());
    wav.extend_from_slice(&data);
    wav
}

/// The carrier's voice in the number test.
const CARRIER_HZ: f64 = 700.0;

/// A carrier's call to a number customer A records, answered by 103
/// (whose own calls are not recorded): recorded all the same, the
/// carrier's side (SIPp streaming a 700 Hz tone) left, 103's right.
#[test]
fn a_call_to_a_recorded_number_is_recorded_whoever_answers() {
    if !baresip_available() || !support::sip::sipp_available() {
        return;
    }
    use pbx_store::numbers::Destination;
    use support::sip::{carriers_a, route_number_a, TestTrunk, CARRIER_IP};
    let dir = TempDir::new("recorded-number");
    let seeded = support::sip::seed(dir.path());
    let limits = pbx_store::limits::Limits::default();
    let trunk = TestTrunk::inbound_only();
    let world = carriers_a(dir.path(), &[trunk], &limits);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let store = rt.block_on(support::sip::open_seeded(dir.path()));
    let e103 = rt.block_on(support::sip::extension_a(&store, "103"));
    route_number_a(dir.path(), &world, Destination::Extension(e103));
    rt.block_on(async {
        let acme = support::sip::customer_a(&store).await;
        let policy = RecordingPolicy {
            retention_days: 30,
            extensions: vec![],
            numbers: vec![world.number],
        };
        store
            .call_recordings()
            .set_policy(&Principal::system(), acme, &policy)
            .await
            .expect("policy");
    });
    let key = support::sip::secret_key_base64();
    let env = [
        ("PBX_SECRET_KEY", key.as_str()),
        ("PBX_SIP_DIGEST_ALGORITHMS", "MD5"),
        ("PBX_MEDIA_ANCHOR", "nat"),
    ];
    let node = Node::start(dir.path(), &["serve"], &env);
    let home = TempDir::new("recorded-number-phone");
    let (_, mut callee) = answering_softphone(&home.path().join("103"), &seeded.a103, &node, 30);
    std::thread::sleep(Duration::from_secs(2));
    let out = support::sip::Sipp::new("carrier_call_rtp.xml")
        .local_ip(CARRIER_IP)
        .with_file("tone.pcmu.wav", &ulaw_tone(CARRIER_HZ, 20))
        .key("callee", "+49301234567")
        .arg("-d")
        .arg("10000")
        .run(&format!("127.0.0.1:{}", node.sip_port));
    let _ = callee.kill();
    let _ = callee.wait();
    assert!(out.success, "the carrier's call:\n{}", out.log);
    let found = rt.block_on(recordings(&store, 1));
    assert_eq!(found.len(), 1, "the number's call is recorded: {found:?}");
    let (rec, audio) = &found[0];
    assert_eq!(rec.callee, "+49301234567");
    let file = dir.path().join("audio").join(audio);
    let tones = [CARRIER_HZ, CALLEE_HZ];
    let left = listen_channel(&file, 0, &tones);
    let right = listen_channel(&file, 1, &tones);
    assert!(left.has(CARRIER_HZ), "the carrier's side, left: {left:?}");
    assert!(right.has(CALLEE_HZ), "103's side, right: {right:?}");
    rt.block_on(store.close());
}

#[test]
fn a_recorded_call_holds_both_sides_after_the_announcement() {
    if baresip_available() {
        on_engine(Engine::Sqlite, "recording", a_recorded_call);
    }
}

#[test]
fn a_recorded_call_on_postgres() {
    if baresip_available() {
        on_engine(Engine::Postgres, "recording", a_recorded_call);
    }
}
