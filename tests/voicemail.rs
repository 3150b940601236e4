//! Voicemail for real: extension 102's phone rings and nobody answers, so
//! after five seconds the call goes to 102's voicemail box (its no-answer
//! forward). The caller is a baresip softphone sending a 440 Hz tone; it
//! hears the greeting (102's own, uploaded) and the tone, and speaks (its tone) until it hangs
//! up. Then: the message is in the box with the caller's tone in its
//! recording (through the API), the desk phone's lamp is told (an RFC 3842
//! NOTIFY: one new message), the box's address gets an e-mail in the
//! reseller's brand with the recording attached, 102's other phone (SIPp)
//! that subscribed to its lamp (RFC 6665) is told in its subscription only, another customer's token
//! finds nothing of it, hearing the message turns the lamp off, and 102's
//! colleague's phone dials *98 and hears it with the box's PIN (after a
//! wrong one), 102's softphone dials *97, hears the message and deletes it with a key: the
//! recording is gone and the lamp says so.
//!
//! Needs baresip and SIPp (Debian's baresip and sip-tester); skipped with a
//! message otherwise, unless CI requires them.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pbx_store::forwards::ForwardCondition;
use support::audio::listen;
use support::sip::{
    baresip, baresip_available, configure_a, register, seed, sipp_available, Phone, Sipp,
};
use support::softphone::{heard, press, softphone};
use support::{create_token, http_get_bearer, http_request_bearer, TempDir};

/// What the desk phone of 102 received: every request, in order.
struct DeskPhone {
    port: u16,
    requests: Arc<Mutex<Vec<String>>>,
}

/// A phone that rings and never answers: 180 to an INVITE, 200 and 487 to
/// a CANCEL, 200 to anything else (the NOTIFYs of its lamp).
fn desk_phone() -> DeskPhone {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("desk phone");
    let port = socket.local_addr().expect("addr").port();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let kept = requests.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 65536];
        let mut invite: Option<String> = None;
        while let Ok((n, from)) = socket.recv_from(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            let Some(first) = text.lines().next() else {
                continue;
            };
            if first.starts_with("SIP/2.0") {
                continue;
            }
            kept.lock().expect("requests").push(text.clone());
            let method = first.split(' ').next().unwrap_or_default().to_owned();
            let answer = |code: &str, req: &str| response(req, code);
            let replies = match method.as_str() {
                "INVITE" => {
                    invite = Some(text.clone());
                    vec![answer("180 Ringing", &text)]
                }
                "CANCEL" => {
                    let mut r = vec![answer("200 OK", &text)];
                    if let Some(inv) = &invite {
                        r.push(answer("487 Request Terminated", inv));
                    }
                    r
                }
                "ACK" => Vec::new(),
                _ => vec![answer("200 OK", &text)],
            };
            for r in replies {
                let _ = socket.send_to(r.as_bytes(), from);
            }
        }
    });
    DeskPhone { port, requests }
}

/// A response to `req` (its Via, From, To with a tag, Call-ID, CSeq).
fn response(req: &str, status: &str) -> String {
    let mut out = format!("SIP/2.0 {status}\r\n");
    for line in req.lines() {
        let name = line
            .split(':')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        match name.as_str() {
            "via" | "v" | "from" | "f" | "call-id" | "i" | "cseq" => {
                out.push_str(line.trim_end());
                out.push_str("\r\n");
            }
            "to" | "t" => {
                out.push_str(line.trim_end());
                if !line.contains("tag=") {
                    out.push_str(";tag=desk");
                }
                out.push_str("\r\n");
            }
            _ => {}
        }
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    out
}

impl DeskPhone {
    /// The message-summary NOTIFYs received so far.
    fn lamp(&self) -> Vec<String> {
        self.requests
            .lock()
            .expect("requests")
            .iter()
            .filter(|r| r.starts_with("NOTIFY") && r.contains("message-summary"))
            .cloned()
            .collect()
    }

    fn wait_lamp(&self, count: usize, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let lamp = self.lamp();
            if lamp.len() >= count || Instant::now() > deadline {
                return lamp;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// An SMTP server keeping what it is sent (one thread per connection).
struct MailSink {
    addr: SocketAddr,
    mails: Arc<Mutex<Vec<String>>>,
}

fn mail_sink() -> MailSink {
    let listener = TcpListener::bind("127.0.0.1:0").expect("smtp");
    let addr = listener.local_addr().expect("addr");
    let mails = Arc::new(Mutex::new(Vec::new()));
    let kept = mails.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let kept = kept.clone();
            std::thread::spawn(move || {
                let mut write = match stream.try_clone() {
                    Ok(w) => w,
                    Err(_) => return,
                };
                let _ = write.write_all(b"220 sink ESMTP\r\n");
                let mut data: Option<String> = None;
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if let Some(body) = data.as_mut() {
                        if line == "." {
                            kept.lock().expect("mails").push(std::mem::take(body));
                            data = None;
                            let _ = write.write_all(b"250 kept\r\n");
                        } else {
                            body.push_str(&line);
                            body.push('\n');
                        }
                        continue;
                    }
                    let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
                    let answer: &[u8] = match verb.as_str() {
                        "EHLO" | "HELO" => b"250 sink\r\n",
                        "DATA" => {
                            data = Some(String::new());
                            b"354 go on\r\n"
                        }
                        "QUIT" => {
                            let _ = write.write_all(b"221 bye\r\n");
                            return;
                        }
                        _ => b"250 OK\r\n",
                    };
                    let _ = write.write_all(answer);
                }
            });
        }
    });
    MailSink { addr, mails }
}

/// The base64 attachment of a mail, decoded.
fn attachment(mail: &str) -> Option<Vec<u8>> {
    let start = mail.find("Content-Transfer-Encoding: base64")?;
    let body = &mail[start..];
    let body = &body[body.find("\n\n")? + 2..];
    let text: String = body
        .lines()
        .take_while(|l| !l.starts_with("--"))
        .collect::<Vec<_>>()
        .concat();
    base64_decode(text.trim())
}

fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let bytes: Vec<u8> = text.bytes().filter(|&b| b != b'=').collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= value(c)? << (18 - 6 * i);
        }
        out.push((n >> 16) as u8);
        if chunk.len() > 2 {
            out.push((n >> 8) as u8);
        }
        if chunk.len() > 3 {
            out.push(n as u8);
        }
    }
    Some(out)
}

/// baresip as 101: sends a 440 Hz tone, records what it hears.
fn caller_phone(home: &Path, phone: &Phone, sip_port: u16) -> PathBuf {
    softphone(&home.join("101"), phone, sip_port, 440.0, false)
}

/// baresip as 102's softphone: records what it hears, and takes keys on a
/// UDP console (its `cons` module) to send as RFC 4733 events.
fn listener_phone(home: &Path, phone: &Phone, sip_port: u16) -> PathBuf {
    softphone(&home.join("102"), phone, sip_port, 3000.0, true)
}

/// The tone 102's uploaded greeting is.
const GREETING_HZ: f64 = 1300.0;

#[test]
fn a_missed_call_leaves_a_message_that_lights_the_lamp_is_mailed_heard_and_deleted() {
    if !baresip_available() || !sipp_available() {
        return;
    }
    let dir = TempDir::new("voicemail");
    let seeded = seed(dir.path());
    configure_a(
        dir.path(),
        &[("102", ForwardCondition::NoAnswer, "voicemail")],
        &[],
    );
    // 102's box mails its messages.
    let (customer, other, ext102) = {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        rt.block_on(async {
            let store = support::sip::open_seeded(dir.path()).await;
            let sys = pbx_store::Principal::system();
            let a = support::sip::customer_a(&store).await;
            let b = store
                .customers()
                .list(&sys, None)
                .await
                .expect("customers")
                .into_iter()
                .find(|c| c.id != a)
                .expect("customer B")
                .id;
            let ext = store
                .extensions()
                .list(&sys, a)
                .await
                .expect("extensions")
                .into_iter()
                .find(|e| e.number == "102")
                .expect("102");
            let settings = pbx_store::voicemail::BoxSettings {
                email: Some("ann@acme.test".into()),
                ..Default::default()
            };
            store
                .voicemail()
                .set_box(&sys, ext.id, &settings)
                .await
                .expect("box");
            // 102's own greeting (uploaded, as the API keeps it): a tone.
            let greeting =
                pbx_media::audio::Clip::new(pbx_media::audio::tone(GREETING_HZ, 2000, 0.3));
            let key = "greetings/test/102.wav";
            pbx_store::audio_files::AudioFiles::new(dir.path().join("audio"))
                .write(key, &greeting.to_wav())
                .expect("greeting file");
            store
                .custom_audio()
                .set_greeting(&sys, ext.id, Some(key))
                .await
                .expect("greeting");
            store.close().await;
            (a, b, ext.id)
        })
    };
    let sink = mail_sink();
    let key = support::sip::secret_key_base64();
    let relay = sink.addr.to_string();
    let node = support::Node::start(
        dir.path(),
        &["serve"],
        &[
            ("PBX_SECRET_KEY", key.as_str()),
            ("PBX_SIP_DIGEST_ALGORITHMS", "MD5"),
            ("PBX_SMTP_RELAY", relay.as_str()),
        ],
    );
    let desk = desk_phone();
    let registered = register(&node, &seeded.a102, desk.port, "u1");
    assert!(registered.success, "102's desk phone registers");
    // 102's other phone (SIPp) subscribes to its lamp: it is told in its
    // subscription (and registers once the call rang, so that it is not
    // rung itself).
    let watcher = Sipp::new("mwi_subscribe.xml")
        .phone(&seeded.a102, &format!("102@{}", seeded.a102.domain))
        .arg("-timeout")
        .arg("120")
        .arg("-m")
        .arg("1")
        .spawn(&format!("127.0.0.1:{}", node.sip_port));

    let home = TempDir::new("voicemail-caller");
    let caller_dir = caller_phone(home.path(), &seeded.a101, node.sip_port);
    // Five seconds of ringing, the greeting, the tone, a few seconds said.
    let mut caller = baresip(&caller_dir, 30, &["/dial 102"]);
    let _ = caller.wait();
    let caller_log = std::fs::read_to_string(caller_dir.join("log")).unwrap_or_default();
    assert!(
        caller_log.contains("Call established"),
        "voicemail answered the caller:\n{caller_log}"
    );
    let rang = desk
        .requests
        .lock()
        .expect("requests")
        .iter()
        .any(|r| r.starts_with("INVITE"));
    assert!(rang, "the desk phone rang first");

    // The caller heard 102's own greeting and the tone (1 kHz).
    let greeting = listen(&heard(&caller_dir), &[1000.0, 440.0, GREETING_HZ]);
    assert!(
        greeting
            .shares
            .iter()
            .any(|(f, s)| *f == GREETING_HZ && *s > 0.2),
        "the caller heard the uploaded greeting: {greeting:?}"
    );
    assert!(
        greeting.rms > 300.0,
        "the caller heard something: {greeting:?}"
    );
    assert!(
        greeting
            .shares
            .iter()
            .any(|(f, s)| *f == 1000.0 && *s > 0.01),
        "the caller heard the tone before the recording: {greeting:?}"
    );

    // The message, through the API.
    let token = create_token(&dir, &["--customer", &customer.0.to_string()]);
    let list_path = format!("/api/v1/extensions/{}/voicemail/messages", ext102.0);
    let deadline = Instant::now() + Duration::from_secs(15);
    let messages = loop {
        let r = http_get_bearer(node.http, &list_path, &token).expect("list");
        assert_eq!(r.status, 200, "{}", r.text());
        let list: serde_json::Value = serde_json::from_str(&r.text()).expect("json");
        if list.as_array().is_some_and(|a| !a.is_empty()) || Instant::now() > deadline {
            break list;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(messages.as_array().map(Vec::len), Some(1), "{messages}");
    let message = &messages[0];
    assert_eq!(message["caller"], "101");
    assert!(message["heard_at"].is_null());
    assert!(
        message["duration_ms"].as_i64().unwrap_or(0) >= 2000,
        "the caller spoke for seconds: {message}"
    );
    let id = message["id"].as_i64().expect("id");
    let audio = http_get_bearer(
        node.http,
        &format!("/api/v1/voicemail/messages/{id}/audio"),
        &token,
    )
    .expect("audio");
    assert_eq!(audio.status, 200);
    assert_eq!(audio.header("content-type"), Some("audio/wav"));
    let recording = home.path().join("message.wav");
    std::fs::write(&recording, &audio.body).expect("save");
    let said = listen(&recording, &[440.0, 1000.0]);
    assert!(
        said.has(440.0),
        "the message holds the caller's tone: {said:?}"
    );

    // The desk phone's lamp: one new message.
    let lamp = desk.wait_lamp(1, Duration::from_secs(10));
    let last = lamp
        .last()
        .expect("a message-summary NOTIFY reached the desk phone");
    assert!(last.contains("Messages-Waiting: yes"), "{last}");
    assert!(last.contains("Voice-Message: 1/0"), "{last}");

    // The e-mail, in the reseller's brand, with the recording.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mail = loop {
        if let Some(m) = sink.mails.lock().expect("mails").first().cloned() {
            break m;
        }
        assert!(Instant::now() < deadline, "no voicemail e-mail");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(mail.contains("To: ann@acme.test"), "{mail}");
    assert!(
        mail.contains("Reseller X Phone"),
        "sent in the reseller's brand:\n{mail}"
    );
    let wav = attachment(&mail).expect("the recording is attached");
    let mailed = home.path().join("mailed.wav");
    std::fs::write(&mailed, wav).expect("save");
    assert!(listen(&mailed, &[440.0, 1000.0]).has(440.0));

    // Another customer's token finds nothing of it.
    let intruder = create_token(&dir, &["--customer", &other.0.to_string()]);
    for path in [
        format!("/api/v1/voicemail/messages/{id}"),
        format!("/api/v1/voicemail/messages/{id}/audio"),
        list_path.clone(),
    ] {
        let r = http_get_bearer(node.http, &path, &intruder).expect("get");
        assert_eq!(r.status, 404, "{path}: {}", r.text());
    }
    for (method, body) in [("PATCH", Some(r#"{"heard": true}"#)), ("DELETE", None)] {
        let path = format!("/api/v1/voicemail/messages/{id}");
        let r = http_request_bearer(node.http, method, &path, body, &intruder).expect("req");
        assert_eq!(r.status, 404, "{method} {path}: {}", r.text());
    }

    // Registered now, the watching phone is one of 102's phones: the lamp
    // is still told to it in its subscription only.
    let registered = register(&node, &seeded.a102, watcher.port(), "u1");
    assert!(registered.success, "102's watching phone registers");

    // Heard in the console or the API: the lamp goes off.
    let heard_it = http_request_bearer(
        node.http,
        "PATCH",
        &format!("/api/v1/voicemail/messages/{id}"),
        Some(r#"{"heard": true}"#),
        &token,
    )
    .expect("patch");
    assert_eq!(heard_it.status, 200, "{}", heard_it.text());
    let lamp = desk.wait_lamp(2, Duration::from_secs(10));
    let last = lamp.last().expect("notify");
    assert!(last.contains("Messages-Waiting: no"), "{last}");
    assert!(last.contains("Voice-Message: 0/1"), "{last}");
    // The watching phone saw the lamp go on and off in its subscription,
    // then ended it; no unsolicited NOTIFY (a Call-ID of its own) reached it.
    let watched = watcher.finish(Duration::from_secs(30));
    assert!(watched.success, "the subscription:\n{}", watched.log);
    assert!(
        !watched.log.contains("@mwi"),
        "a subscribed phone was also told unsolicited:\n{}",
        watched.log
    );

    // 102's box gets a PIN (through the API): 101's phone dials *98, keys
    // the box and a wrong PIN, is told so, keys the right one and hears
    // the message.
    let pin = http_request_bearer(
        node.http,
        "PUT",
        &format!("/api/v1/extensions/{}/voicemail", ext102.0),
        Some(r#"{"email": "ann@acme.test", "pin": "4321"}"#),
        &token,
    )
    .expect("put");
    assert_eq!(pin.status, 200, "{}", pin.text());
    assert!(pin.text().contains(r#""has_pin":true"#), "{}", pin.text());
    assert!(!pin.text().contains("4321"), "the PIN is never shown");
    let colleague_dir = softphone(
        &home.path().join("101-any"),
        &seeded.a101,
        node.sip_port,
        3000.0,
        true,
    );
    let mut colleague = baresip(&colleague_dir, 60, &["/dial *98"]);
    wait_established(&colleague_dir.join("log"));
    std::thread::sleep(Duration::from_secs(1));
    keys(&colleague_dir, "102#");
    std::thread::sleep(Duration::from_secs(1));
    keys(&colleague_dir, "0000#");
    // "That mailbox number or PIN is not correct", then the number again.
    std::thread::sleep(Duration::from_secs(5));
    keys(&colleague_dir, "102#");
    std::thread::sleep(Duration::from_secs(1));
    keys(&colleague_dir, "4321#");
    // "You have no new messages", then the (heard) message.
    std::thread::sleep(Duration::from_secs(10));
    let _ = colleague.kill();
    let _ = colleague.wait();
    let colleague_log = std::fs::read_to_string(colleague_dir.join("log")).unwrap_or_default();
    let played = listen(&heard(&colleague_dir), &[440.0, 1000.0]);
    assert!(
        played.has(440.0),
        "*98 with the box's PIN played its message: {played:?}\n{colleague_log}"
    );

    // 102's softphone dials *97, hears the message and deletes it with 7
    // (an RFC 4733 key, pressed through baresip's UDP console).
    let listener_dir = listener_phone(home.path(), &seeded.a102b, node.sip_port);
    let mut listener = baresip(&listener_dir, 40, &["/dial *97"]);
    let log = listener_dir.join("log");
    wait_established(&log);
    // "You have no new messages" (about 2 s), then the message plays.
    std::thread::sleep(Duration::from_secs(6));
    press(&listener_dir, '7');
    let lamp = desk.wait_lamp(3, Duration::from_secs(15));
    let last = lamp.last().expect("notify");
    assert!(
        last.contains("Voice-Message: 0/0"),
        "deleted from the phone: {last}"
    );
    // After "no more messages, goodbye", voicemail hangs up: its BYE
    // reaches the phone through the proxy.
    let deadline = Instant::now() + Duration::from_secs(25);
    let listener_log = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("terminated") || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let _ = listener.kill();
    let _ = listener.wait();
    assert!(
        listener_log.contains("terminated"),
        "voicemail hung up on the phone:\n{listener_log}"
    );
    let played = listen(&heard(&listener_dir), &[440.0, 1000.0]);
    assert!(
        played.has(440.0),
        "the phone heard the caller's message: {played:?}\n{listener_log}"
    );
    let r = http_get_bearer(node.http, &list_path, &token).expect("list");
    assert_eq!(r.text().trim(), "[]");
    let left: Vec<_> = walk(&dir.path().join("audio").join("voicemail"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "wav"))
        .collect();
    assert!(left.is_empty(), "recordings left behind: {left:?}");
    node.stop();
}

/// Waits until the softphone whose log is `log` has its call answered.
fn wait_established(log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(log)
        .unwrap_or_default()
        .contains("Call established")
    {
        assert!(Instant::now() < deadline, "the call was not answered");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Keys `text` on the softphone in `dir`, one RFC 4733 event at a time.
fn keys(dir: &Path, text: &str) {
    for key in text.chars() {
        press(dir, key);
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = entry.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
