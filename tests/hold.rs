//! Music on hold for real: baresip as 101 (its voice a 440 Hz tone) calls
//! 102, a Linphone console phone that answers and records what it hears;
//! the media is anchored. 101 puts the call on hold (baresip's re-INVITE
//! with `a=sendonly`), and 102 hears the platform's tune (its notes, not
//! 101's tone) until 101 resumes; then 102 hears 101 again. When customer
//! A has uploaded its own music, 102 hears that instead. (Linphone is
//! the held phone because baresip 1.0 stops recording what it hears at a
//! re-INVITE.)
//!
//! Needs baresip and linphonec (Debian's baresip, linphone-cli); skipped
//! with a message otherwise, unless CI requires them.

mod support;

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use pbx_media::music::DEFAULT_NOTES;
use support::audio::listen_span;
use support::sip::{baresip, baresip_available, linphone_available, secret_key_base64, seed};
use support::softphone::{command, softphone};
use support::{metric, Node, TempDir};

/// Waits until the log of baresip in `dir` says `what`.
fn logged(dir: &Path, what: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        let log = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
        if log.contains(what) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// Waits until `done`.
fn wait_for(within: Duration, done: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// Linphone's console phone as `phone`: answers calls by itself, its voice
/// a tone of `freq` Hz, what it hears recorded to `dir/heard.wav`.
fn linphone(
    dir: &Path,
    phone: &support::sip::Phone,
    sip_port: u16,
    freq: f64,
) -> std::process::Child {
    let rc = support::sip::linphone_config(
        dir,
        phone,
        sip_port,
        "[rtp]\naudio_rtp_port=41000-41999\n[net]\nnat_policy_ref=\n",
    );
    let tone = dir.join("tone.wav");
    support::audio::write_tone(&tone, freq, 60);
    let mut child = std::process::Command::new("linphonec")
        .arg("-a")
        .arg("-c")
        .arg(&rc)
        .env("HOME", dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::fs::File::create(dir.join("log")).expect("log"))
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start linphonec");
    if let Some(stdin) = child.stdin.as_mut() {
        let commands = format!(
            "soundcard use files\nplay {}\nrecord {}\n",
            tone.display(),
            dir.join("heard.wav").display()
        );
        let _ = stdin.write_all(commands.as_bytes());
    }
    child
}

/// The tone customer A uploads as its own music on hold.
const OWN_MUSIC_HZ: f64 = 1700.0;

#[test]
fn a_held_phone_hears_music_until_the_call_is_resumed() {
    held_call(false);
}

#[test]
fn a_held_phone_hears_its_customers_own_music() {
    held_call(true);
}

/// Uploads (as the API keeps it: converted, in the audio store) a tone as
/// customer A's music on hold.
fn upload_music(data_dir: &Path) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let store = support::sip::open_seeded(data_dir).await;
        let acme = support::sip::customer_a(&store).await;
        let key = "music/test/own.wav";
        let clip = pbx_media::audio::Clip::new(pbx_media::audio::tone(OWN_MUSIC_HZ, 3000, 0.3));
        pbx_store::audio_files::AudioFiles::new(data_dir.join("audio"))
            .write(key, &clip.to_wav())
            .expect("music file");
        store
            .custom_audio()
            .set_music(&pbx_store::Principal::system(), acme, Some(key))
            .await
            .expect("music");
        store.close().await;
    });
}

fn held_call(own_music: bool) {
    if !baresip_available() || !linphone_available() {
        return;
    }
    let dir = TempDir::new(if own_music { "hold-own" } else { "hold" });
    let seeded = seed(dir.path());
    if own_music {
        upload_music(dir.path());
    }
    let key = secret_key_base64();
    let node = Node::start(
        dir.path(),
        &["serve"],
        &[
            ("PBX_SECRET_KEY", key.as_str()),
            ("PBX_SIP_DIGEST_ALGORITHMS", "MD5"),
            ("PBX_MEDIA_ANCHOR", "always"),
        ],
    );
    let home = TempDir::new("hold-phones");
    let callee = home.path().join("102");
    let mut callee_run = linphone(&callee, &seeded.a102, node.sip_port, 3000.0);
    assert!(
        wait_for(Duration::from_secs(15), || metric(
            &node,
            "pbx_sip_registrations_total"
        ) >= 1),
        "102 (linphone) registered"
    );
    let caller = softphone(
        &home.path().join("101"),
        &seeded.a101,
        node.sip_port,
        440.0,
        true,
    );
    let mut caller_run = baresip(&caller, 30, &["/dial 102"]);
    assert!(
        logged(&caller, "Call established", Duration::from_secs(15)),
        "the call was answered:\n{}",
        std::fs::read_to_string(caller.join("log")).unwrap_or_default()
    );
    // 102's recording starts about now: 5 s talking, 10 s held, then resumed.
    std::thread::sleep(Duration::from_secs(5));
    command(&caller, "/hold");
    std::thread::sleep(Duration::from_secs(10));
    command(&caller, "/resume");
    let _ = caller_run.wait();
    if let Some(stdin) = callee_run.stdin.as_mut() {
        let _ = stdin.write_all(b"quit\n");
    }
    std::thread::sleep(Duration::from_secs(1));
    let _ = callee_run.kill();
    let _ = callee_run.wait();
    let mut tones = vec![440.0];
    if own_music {
        tones.push(OWN_MUSIC_HZ);
    } else {
        tones.extend(DEFAULT_NOTES);
    }
    let recording = callee.join("heard.wav");
    let music_share = |h: &support::audio::Heard| -> f64 {
        h.shares
            .iter()
            .filter(|(f, _)| *f != 440.0)
            .map(|(_, s)| s)
            .sum()
    };
    let voice_share = |h: &support::audio::Heard| -> f64 {
        h.shares
            .iter()
            .find(|(f, _)| *f == 440.0)
            .map_or(0.0, |(_, s)| *s)
    };
    let before = listen_span(&recording, &tones, 1.0, 4.0);
    assert!(
        voice_share(&before) > 0.5,
        "102 heard 101 before the hold: {before:?}"
    );
    let held = listen_span(&recording, &tones, 8.0, 13.0);
    assert!(held.rms > 300.0, "102 heard something while held: {held:?}");
    assert!(
        music_share(&held) > 0.5 && voice_share(&held) < 0.05,
        "102 heard the music, not 101, while held: {held:?}"
    );
    let after = listen_span(&recording, &tones, 19.0, 23.0);
    assert!(
        voice_share(&after) > 0.5,
        "102 heard 101 again once resumed: {after:?}"
    );
}
