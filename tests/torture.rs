//! Foreign and hostile messages against the running server: the RFC 4475 and
//! RFC 5118 torture messages, then a batch of junk (truncated, garbage start
//! lines, bad Content-Length, binary, oversized headers), over UDP and TCP.
//! Each is answered as its RFC expects or dropped; the server never stops,
//! and a normal SIPp call placed afterwards works.
//!
//! These messages name foreign hosts (example.com, 192.0.2.x), so the test
//! runs inside a private network namespace: it re-executes itself under
//! `unshare --net` with only loopback up, and no packet can leave.

mod support;

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::path::PathBuf;
use std::time::Duration;

use support::sip::{register, seed, sipp_available, start_node, Sipp};
use support::{in_private_netns, TempDir};

fn corpus() -> Vec<(String, Vec<u8>)> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../sip-message/tests/torture");
    let mut out = Vec::new();
    for rfc in ["rfc4475", "rfc5118"] {
        let mut files: Vec<_> = std::fs::read_dir(root.join(rfc))
            .expect("corpus")
            .flatten()
            .map(|e| e.path())
            .collect();
        files.sort();
        for f in files {
            let name = format!(
                "{rfc}/{}",
                f.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            );
            out.push((name, std::fs::read(&f).expect("read")));
        }
    }
    out
}

/// The port the message's top Via names (responses go there without rport).
fn via_port(data: &[u8]) -> u16 {
    let text = String::from_utf8_lossy(data);
    text.lines()
        .skip(1)
        .take_while(|l| !l.is_empty())
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            let name = name.trim();
            (name.eq_ignore_ascii_case("via") || name.eq_ignore_ascii_case("v"))
                .then(|| value.split(',').next().unwrap_or(value).to_owned())
        })
        .and_then(|v| pbx_sip_message::Via::parse(&v).ok())
        .map(|v| v.port.unwrap_or(5060))
        .unwrap_or(0)
}

/// The status of the first response to `data` over UDP, if any within `wait`,
/// sent from the port its Via names (the network namespace has them all free).
fn udp_answer(target: &str, data: &[u8], wait: Duration) -> Option<u16> {
    let port = via_port(data);
    let sock = UdpSocket::bind(("127.0.0.1", port))
        .or_else(|_| UdpSocket::bind("127.0.0.1:0"))
        .expect("bind");
    sock.set_read_timeout(Some(wait)).expect("timeout");
    sock.send_to(data, target).expect("send");
    let mut buf = vec![0u8; 65536];
    let (n, _) = sock.recv_from(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf[..n]);
    text.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()
}

#[test]
fn torture_messages_and_junk_never_stop_the_server() {
    if !in_private_netns("torture_messages_and_junk_never_stop_the_server") || !sipp_available() {
        return;
    }
    let dir = TempDir::new("torture");
    let seeded = seed(dir.path());
    let node = start_node(&dir, "MD5");
    let target = format!("127.0.0.1:{}", node.sip_port);

    // Outcomes the RFCs call for, where this server is the element that decides.
    let expected: &[(&str, Option<u16>)] = &[
        ("rfc4475/badvers.dat", Some(505)),
        ("rfc4475/mismatch01.dat", Some(400)),
        ("rfc4475/mismatch02.dat", Some(400)),
        ("rfc4475/multi01.dat", Some(400)),
        ("rfc4475/mcl01.dat", Some(400)),
        ("rfc4475/clerr.dat", Some(400)),
        ("rfc4475/ncl.dat", Some(400)),
        ("rfc4475/unkscm.dat", Some(416)),
        ("rfc4475/novelsc.dat", Some(416)),
        ("rfc4475/bext01.dat", Some(420)),
        ("rfc4475/zeromf.dat", Some(483)),
        ("rfc4475/insuf.dat", None),
        // Responses nobody asked for are dropped, never answered.
        ("rfc4475/bigcode.dat", None),
        ("rfc4475/scalarlg.dat", None),
        ("rfc4475/bcast.dat", None),
        ("rfc4475/noreason.dat", None),
        ("rfc4475/unreason.dat", None),
        ("rfc5118/ipv6-bad.dat", Some(400)),
    ];
    let mut report = Vec::new();
    for (name, data) in corpus() {
        let got = udp_answer(&target, &data, Duration::from_millis(500));
        report.push(format!("{name}: {got:?}"));
        if let Some((_, want)) = expected.iter().find(|(n, _)| *n == name) {
            assert_eq!(got, *want, "{name}");
        }
        if let Some(code) = got {
            assert!(code >= 400 || code == 200, "{name} got {code}");
        }
    }
    eprintln!("torture outcomes:\n{}", report.join("\n"));

    // Junk over UDP.
    let junk: Vec<Vec<u8>> = vec![
        b"INVITE sip:102@acme SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:1;branch=z9hG4bKx\r\n".to_vec(),
        b"GARBAGE START LINE\r\nVia: x\r\n\r\n".to_vec(),
        b"OPTIONS sip:x SIP/2.0\r\nContent-Length: banana\r\n\r\n".to_vec(),
        (0..4000u32).map(|i| (i * 7919 % 251) as u8).collect(),
        format!(
            "OPTIONS sip:x SIP/2.0\r\n{}\r\n",
            "X-Long: y\r\n".repeat(500)
        )
        .into_bytes(),
        format!("OPTIONS sip:x SIP/2.0\r\nX: {}\r\n\r\n", "z".repeat(20_000)).into_bytes(),
        b"\r\n\r\n".to_vec(),
        Vec::new(),
    ];
    for j in &junk {
        let got = udp_answer(&target, j, Duration::from_millis(300));
        assert!(got.is_none_or(|c| c >= 400), "junk answered {got:?}");
    }
    // The same over TCP: each on its own connection, which is answered or closed.
    for (_, data) in corpus()
        .into_iter()
        .take(25)
        .chain(junk.iter().map(|j| (String::new(), j.clone())))
    {
        let Ok(mut tcp) = TcpStream::connect(&target) else {
            continue;
        };
        let _ = tcp.set_read_timeout(Some(Duration::from_millis(300)));
        let _ = tcp.write_all(&data);
        let mut sink = [0u8; 4096];
        let _ = tcp.read(&mut sink);
    }

    // Still serving: health, and a normal call.
    let health = support::http_get(node.http, "localhost", "/healthz").expect("health");
    assert_eq!(health.status, 200);
    let callee = Sipp::new("uas_answer.xml")
        .arg("-m")
        .arg("1")
        .spawn(&target);
    assert!(register(&node, &seeded.a102, callee.port(), "u1").success);
    let out = Sipp::new("uac_call.xml")
        .phone(&seeded.a101, &format!("102@{}", seeded.a101.domain))
        .key("callee", "102")
        .key("callee_domain", &seeded.a101.domain)
        .arg("-d")
        .arg("100")
        .run(&target);
    let uas = callee.finish(Duration::from_secs(10));
    assert!(
        out.success,
        "a call after the torture failed:\n{}\ncallee:\n{}\nserver log:\n{}",
        out.log,
        uas.log,
        node.stderr_text()
    );
    assert!(uas.success);
    let metrics = support::http_get(node.http, "localhost", "/metrics")
        .expect("metrics")
        .text();
    assert!(metrics.contains("pbx_sip_malformed_total"), "{metrics}");
    assert!(node.stop().success(), "the server shut down cleanly");
}
