//! What the node answers to requests for itself, to malformed input, and on
//! TCP framing edges.

mod support;

use std::time::Duration;

use pbx_sip_message::HeaderName;
use support::{config, start, Ua, ACME};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn options(ua: &Ua, uri: &str, max_forwards: u32) -> String {
    format!(
        "OPTIONS {uri} SIP/2.0\nVia: SIP/2.0/UDP {};branch={};rport\nMax-Forwards: {max_forwards}\nFrom: <sip:101@{ACME}>;tag=o1\nTo: <{uri}>\nCall-ID: opt-{}\nCSeq: 1 OPTIONS",
        ua.local,
        ua.branch(),
        ua.next()
    )
}

#[tokio::test]
async fn options_to_the_proxy_is_a_keepalive_answered_without_auth() {
    let node = start(config()).await;
    let ua = Ua::new(node.udp, "101", "x", ACME).await;
    for uri in [format!("sip:{ACME}"), format!("sip:{}", node.udp)] {
        ua.send(&options(&ua, &uri, 70), "").await;
        let resp = ua.recv().await;
        assert_eq!(resp.status(), Some(200), "{uri}");
        assert!(resp
            .value_text(&HeaderName::Allow)
            .is_some_and(|a| a.contains("INVITE")));
        assert!(!resp.has(&HeaderName::Server), "no product name in Server");
    }
    // Max-Forwards 0 to the proxy itself is still answered (RFC 3261 §16.3 step 3).
    ua.send(&options(&ua, &format!("sip:{ACME}"), 0), "").await;
    assert_eq!(ua.recv().await.status(), Some(200));
}

#[tokio::test]
async fn max_forwards_zero_for_someone_else_is_483() {
    let node = start(config()).await;
    let ua = Ua::new(node.udp, "101", "x", ACME).await;
    ua.send(&options(&ua, &format!("sip:102@{ACME}"), 0), "")
        .await;
    assert_eq!(ua.recv().await.status(), Some(483));
}

#[tokio::test]
async fn methods_the_proxy_does_not_serve_get_501_405_or_484() {
    let node = start(config()).await;
    let ua = Ua::new(node.udp, "101", "x", ACME).await;
    for (method, code) in [("FOO", 501), ("PUBLISH", 405), ("INVITE", 484)] {
        let head = options(&ua, &format!("sip:{ACME}"), 70).replace("OPTIONS", method);
        ua.send(&head, "").await;
        let resp = ua.recv().await;
        assert_eq!(resp.status(), Some(code), "{method}");
        assert!(resp.has(&HeaderName::Allow));
    }
}

#[tokio::test]
async fn other_versions_get_505_and_unroutable_schemes_416() {
    let node = start(config()).await;
    let caller = Ua::new(node.udp, "101", "pw-101-xxxxxx", ACME).await;
    let head = options(&caller, &format!("sip:{ACME}"), 70).replacen("SIP/2.0", "SIP/3.0", 1);
    caller.send(&head, "").await;
    assert_eq!(caller.recv().await.status(), Some(505));
    // An authenticated call to a tel: URI is a number for a carrier: this
    // node has no trunk, so there is no route (404).
    let uri = "tel:+4930123456";
    let head = |cseq: u32, auth: &str| {
        format!(
            "INVITE {uri} SIP/2.0\nVia: SIP/2.0/UDP {};branch=z9hG4bKtel{cseq};rport\nMax-Forwards: 70\nFrom: <sip:101@{ACME}>;tag=t1\nTo: <{uri}>\nCall-ID: tel-1\nCSeq: {cseq} INVITE\n{auth}",
            caller.local
        )
    };
    caller.send(&head(1, ""), support::SDP).await;
    let challenge = caller.final_or_provisional().await;
    assert_eq!(challenge.status(), Some(407));
    let auth = caller.answer(&challenge, &HeaderName::ProxyAuthenticate, "INVITE", uri);
    caller
        .send(
            &head(2, &format!("Proxy-Authorization: {auth}\n")),
            support::SDP,
        )
        .await;
    let refused = caller.final_or_provisional().await;
    assert_eq!(refused.status(), Some(404));
    assert!(
        matches!(&refused.start, pbx_sip_message::StartLine::Response(s) if s.reason == "No Route"),
        "{refused:?}"
    );
    // A scheme nothing here can route: 416 before anything else.
    let im = "INVITE im:alice@example.net SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKim1\nMax-Forwards: 70\nFrom: <sip:101@acme>;tag=t2\nTo: <im:alice@example.net>\nCall-ID: im-1\nCSeq: 1 INVITE\n";
    caller
        .send(&im.replace("127.0.0.1:9", &caller.local.to_string()), "")
        .await;
    assert_eq!(caller.final_or_provisional().await.status(), Some(416));
}

#[tokio::test]
async fn malformed_requests_get_400_or_are_dropped_and_the_node_keeps_working() {
    let node = start(config()).await;
    let ua = Ua::new(node.udp, "101", "pw-101-xxxxxx", ACME).await;
    // CSeq method mismatch: answerable, 400 with a reason.
    let bad = options(&ua, &format!("sip:{ACME}"), 70).replace("CSeq: 1 OPTIONS", "CSeq: 1 INVITE");
    ua.send(&bad, "").await;
    let resp = ua.recv().await;
    assert_eq!(resp.status(), Some(400));
    // Junk of every kind: dropped or answered, never fatal.
    let junk: Vec<Vec<u8>> = vec![
        b"\x00\x01\x02\x03garbage".to_vec(),
        b"INVITE\r\n\r\n".to_vec(),
        b"NOT A SIP MESSAGE AT ALL".to_vec(),
        format!(
            "{}\r\nContent-Length: 999\r\n\r\nshort",
            options(&ua, &format!("sip:{ACME}"), 70).replace('\n', "\r\n")
        )
        .into_bytes(),
        format!(
            "{}\r\nX: {}\r\nContent-Length: 0\r\n\r\n",
            options(&ua, &format!("sip:{ACME}"), 70).replace('\n', "\r\n"),
            "y".repeat(64_000)
        )
        .into_bytes(),
        vec![0xff; 2000],
    ];
    for j in &junk {
        ua.send_raw(j).await;
    }
    while ua.recv_within(Duration::from_millis(300)).await.is_some() {}
    // Still registering after all that.
    assert_eq!(ua.register_here(600).await.status(), Some(200));
}

#[tokio::test]
async fn tcp_answers_a_crlf_ping_with_a_pong_and_frames_by_content_length() {
    let node = start(config()).await;
    let mut tcp = tokio::net::TcpStream::connect(node.tcp)
        .await
        .expect("connect");
    tcp.write_all(b"\r\n\r\n").await.expect("ping");
    let mut pong = [0u8; 2];
    tokio::time::timeout(Duration::from_secs(5), tcp.read_exact(&mut pong))
        .await
        .expect("pong in time")
        .expect("read");
    assert_eq!(&pong, b"\r\n");
    // A message split across writes is reassembled.
    let local = tcp.local_addr().expect("addr");
    let msg = format!(
        "OPTIONS sip:{ACME} SIP/2.0\r\nVia: SIP/2.0/TCP {local};branch=z9hG4bKtcp1\r\nMax-Forwards: 70\r\nFrom: <sip:101@{ACME}>;tag=t\r\nTo: <sip:{ACME}>\r\nCall-ID: tcp-1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    );
    let (a, b) = msg.split_at(40);
    tcp.write_all(a.as_bytes()).await.expect("write");
    tokio::time::sleep(Duration::from_millis(50)).await;
    tcp.write_all(b.as_bytes()).await.expect("write");
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
        .await
        .expect("answer")
        .expect("read");
    assert!(
        buf[..n].starts_with(b"SIP/2.0 200 OK\r\n"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    // Without Content-Length a stream cannot be framed: 400, then the connection closes.
    let no_length = msg
        .replace("Content-Length: 0\r\n", "")
        .replace("tcp-1", "tcp-2");
    tcp.write_all(no_length.as_bytes()).await.expect("write");
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut rest))
        .await
        .expect("closed")
        .expect("read");
    assert!(
        String::from_utf8_lossy(&rest).starts_with("SIP/2.0 400"),
        "{}",
        String::from_utf8_lossy(&rest)
    );
}

#[tokio::test]
async fn ipv6_phones_register_and_are_answered() {
    let mut cfg = config();
    cfg.transports.udp = vec!["[::1]:0".parse().expect("addr")];
    cfg.transports.tcp = vec!["[::1]:0".parse().expect("addr")];
    let node = start(cfg).await;
    assert!(node.udp.is_ipv6());
    let ua = Ua::new(node.udp, "101", "pw-101-xxxxxx", ACME).await;
    ua.send(&options(&ua, &format!("sip:{ACME}"), 70), "").await;
    let resp = ua.recv().await;
    assert_eq!(resp.status(), Some(200));
    let ok = ua.register_here(600).await;
    assert_eq!(ok.status(), Some(200));
    assert!(
        support::bindings(&ok)[0].0.contains("[::1]"),
        "{:?}",
        support::bindings(&ok)
    );
}

#[tokio::test]
async fn a_request_that_comes_back_is_a_loop_482() {
    let node = start(config()).await;
    let phone = Ua::new(node.udp, "102", "pw-102-xxxxxx", ACME).await;
    // Registering the server's own address as contact is refused.
    let own = format!("Contact: <sip:102@{}>\n", node.udp);
    assert_eq!(
        phone.register(&own, Some(600), "").await.status(),
        Some(403)
    );
    // A request carrying one of the node's Vias has been here before.
    let marker = node.proxy.core().node.new_branch();
    // It sits below the sender's own Via, as when a request comes round again.
    let head = options(&phone, &format!("sip:103@{ACME}"), 70);
    let (first, rest) = head.split_once("\nMax-Forwards").expect("via line first");
    let looped = format!(
        "{first}\nVia: SIP/2.0/UDP {};branch={marker}\nMax-Forwards{rest}",
        node.udp
    );
    phone.send(&looped, "").await;
    assert_eq!(phone.recv().await.status(), Some(482));
}

/// A lamp subscription (RFC 3842) is for the phone's own box, by its own
/// address or the voicemail code: another extension's box is refused, and
/// with no application server on the node the own one is unavailable. It
/// is never forked back to the phone's own registrations. A busy lamp
/// (RFC 4235) watches any extension of the phone's own customer.
#[tokio::test]
async fn a_phone_subscribes_only_to_its_own_boxs_lamp() {
    let node = start(config()).await;
    let ua = Ua::new(node.udp, "101", "pw-101-xxxxxx", ACME).await;
    assert_eq!(ua.register_here(3600).await.status(), Some(200));
    let event = "Event: message-summary\nExpires: 600\n";
    for (callee, code) in [("102", 403), ("101", 480), ("*97", 480)] {
        ua.request_with("SUBSCRIBE", callee, event, "").await;
        let resp = ua.recv().await;
        assert_eq!(resp.status(), Some(code), "SUBSCRIBE {callee}");
    }
    // A colleague's calls (a busy lamp) may be watched; an extension the
    // customer does not have cannot.
    let event = "Event: dialog\nExpires: 600\n";
    for (callee, code) in [("102", 480), ("999", 404)] {
        ua.request_with("SUBSCRIBE", callee, event, "").await;
        let resp = ua.recv().await;
        assert_eq!(resp.status(), Some(code), "SUBSCRIBE dialog {callee}");
    }
    assert!(
        ua.recv_within(Duration::from_millis(300)).await.is_none(),
        "nothing was forked to the phones"
    );
}
