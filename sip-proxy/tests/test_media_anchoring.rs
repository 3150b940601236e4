//! Media anchoring seen from the phones, on loopback with real sockets:
//! every offer and answer the proxy passes names the relay, and RTP sent
//! to the relay reaches the other party (early media, forks, late offers,
//! hold, a phone's new address, strangers, exhaustion, silence).

mod support;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use pbx_sip_message::{HeaderName, Message};
use pbx_store::media::AnchorMode;
use support::{caller_request, config, next_request, next_status, respond_sdp, start, Ua, ACME};
use tokio::net::UdpSocket;

fn anchored(first_port: u16, pairs: u16) -> pbx_sip_proxy::SipConfig {
    let mut c = config();
    c.media.anchor = AnchorMode::Always;
    c.media.relay.bind_v4 = std::net::Ipv4Addr::LOCALHOST;
    c.media.relay.ports = (first_port, first_port + pairs * 2 - 1);
    c
}

fn sdp(port: u16, direction: &str) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 8 101\r\na=rtpmap:101 telephone-event/8000\r\na=ptime:20\r\na={direction}\r\n"
    )
}

/// Where a message's SDP asks for media.
fn media_of(m: &Message) -> SocketAddr {
    let sdp = pbx_media::sdp::Sdp::parse(&m.body).expect("SDP body");
    let s = &sdp.streams[0];
    SocketAddr::new(s.address.expect("address"), s.port)
}

fn body(m: &Message) -> String {
    String::from_utf8_lossy(&m.body).into_owned()
}

async fn rtp_socket(ip: &str) -> UdpSocket {
    UdpSocket::bind((ip.parse::<IpAddr>().expect("ip"), 0))
        .await
        .expect("bind rtp")
}

fn rtp(seq: u16, fill: u8) -> Vec<u8> {
    let mut p = vec![0x80, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, fill];
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&[fill; 160]);
    p
}

/// Sends a few packets from `from` to `relay` and says whether `to` got them.
async fn flows(from: &UdpSocket, relay: SocketAddr, to: &UdpSocket, fill: u8) -> bool {
    for seq in 0..5u16 {
        from.send_to(&rtp(seq, fill), relay)
            .await
            .expect("send rtp");
    }
    let mut buf = [0u8; 2048];
    // Other packets (music on hold) may come meanwhile: a bounded look.
    for _ in 0..200 {
        match tokio::time::timeout(Duration::from_millis(500), to.recv_from(&mut buf)).await {
            Ok(Ok((n, _))) if buf[..n].len() > 12 && buf[12] == fill => return true,
            Ok(Ok(_)) => continue,
            _ => return false,
        }
    }
    false
}

/// Whether `at` hears the relay's music on hold: G.711 A-law frames (the
/// call's codec) that are not one byte repeated, as test packets are.
async fn hears_music(at: &UdpSocket) -> bool {
    let mut buf = [0u8; 2048];
    for _ in 0..100 {
        match tokio::time::timeout(Duration::from_millis(500), at.recv_from(&mut buf)).await {
            Ok(Ok((n, _))) if n == 172 && buf[1] & 0x7f == 8 => {
                let payload = &buf[12..n];
                if payload.iter().any(|b| *b != payload[0]) {
                    return true;
                }
            }
            Ok(Ok(_)) => continue,
            _ => return false,
        }
    }
    false
}

async fn ack(caller: &Ua, ok: &Message, body: &str) {
    let head = caller_request(caller, ok, "ACK", ok.cseq().seq, &caller.branch());
    caller.send(&head, body).await;
}

async fn phones(node: &support::Node) -> (Ua, Ua) {
    let caller = Ua::new(node.udp, "101", "pw-101-xxxxxx", ACME).await;
    let callee = Ua::new(node.udp, "103", "pw-103-xxxxxx", ACME).await;
    assert_eq!(callee.register_here(3600).await.status(), Some(200));
    (caller, callee)
}

#[tokio::test]
async fn early_media_answer_hold_and_resume_all_pass_the_relay() {
    let node = start(anchored(42000, 50)).await;
    let relay = node.proxy.core().media.clone();
    let (caller, callee) = phones(&node).await;
    let a = rtp_socket("127.0.0.1").await;
    let b = rtp_socket("127.0.0.1").await;
    let a_port = a.local_addr().unwrap().port();
    let b_port = b.local_addr().unwrap().port();
    caller.invite_with("103", &sdp(a_port, "sendrecv")).await;
    let invite = next_request(&callee, "INVITE").await;
    let to_b = media_of(&invite);
    assert!(
        (42000..42100).contains(&to_b.port()),
        "offer names the relay: {}",
        body(&invite)
    );
    assert!(body(&invite).contains("a=rtpmap:101 telephone-event/8000\r\na=ptime:20\r\n"));
    // 183 with early media: the caller hears the callee before the answer.
    respond_sdp(&callee, &invite, 183, "cal", &sdp(b_port, "sendrecv")).await;
    let early = next_status(&caller, 183).await;
    let to_a = media_of(&early);
    assert_ne!(to_a.port(), b_port);
    assert!(
        flows(&b, to_b, &a, 0xb1).await,
        "early media reaches the caller"
    );
    respond_sdp(&callee, &invite, 200, "cal", &sdp(b_port, "sendrecv")).await;
    let ok = next_status(&caller, 200).await;
    assert_eq!(
        media_of(&ok),
        to_a,
        "the answer keeps the early media's port"
    );
    ack(&caller, &ok, "").await;
    assert!(flows(&a, to_a, &b, 0xa1).await, "caller to callee");
    assert!(flows(&b, to_b, &a, 0xb2).await, "callee to caller");

    // A hold the callee rejects changes nothing: no music, audio flows.
    let head = caller_request(&caller, &ok, "INVITE", 3, &caller.branch());
    caller.send(&head, &sdp(a_port, "sendonly")).await;
    let rejected = next_request(&callee, "INVITE").await;
    callee
        .respond(&rejected, 488, "Not Acceptable Here", None)
        .await;
    next_status(&caller, 488).await;
    assert!(
        flows(&a, to_a, &b, 0xa4).await,
        "a rejected hold leaves the audio as it was"
    );

    // Hold: the caller's re-INVITE says sendonly; the direction passes.
    let head = caller_request(&caller, &ok, "INVITE", 4, &caller.branch());
    caller.send(&head, &sdp(a_port, "sendonly")).await;
    let reinvite = next_request(&callee, "INVITE").await;
    assert!(body(&reinvite).contains("a=sendonly"));
    assert_eq!(media_of(&reinvite), to_b);
    respond_sdp(&callee, &reinvite, 200, "cal", &sdp(b_port, "recvonly")).await;
    let held = next_status(&caller, 200).await;
    assert!(body(&held).contains("a=recvonly"));
    assert_eq!(media_of(&held), to_a);
    ack(&caller, &held, "").await;
    // The held callee hears music on hold, not what the holding caller sends.
    assert!(hears_music(&b).await, "music on hold");
    assert!(
        !flows(&a, to_a, &b, 0xa2).await,
        "the holding phone's audio is replaced"
    );
    let replaced = relay
        .stats()
        .replaced_by_music
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(replaced, 5, "and counted");

    // Resume from a new address (the phone changed networks): the relay
    // follows the re-INVITE.
    let a2 = rtp_socket("127.0.0.1").await;
    let head = caller_request(&caller, &ok, "INVITE", 5, &caller.branch());
    caller
        .send(&head, &sdp(a2.local_addr().unwrap().port(), "sendrecv"))
        .await;
    let resume = next_request(&callee, "INVITE").await;
    respond_sdp(&callee, &resume, 200, "cal", &sdp(b_port, "sendrecv")).await;
    let resumed = next_status(&caller, 200).await;
    ack(&caller, &resumed, "").await;
    assert!(
        flows(&a2, to_a, &b, 0xa3).await,
        "the moved caller is heard"
    );
    assert!(
        flows(&b, to_b, &a2, 0xb3).await,
        "and hears at its new address"
    );
    assert_eq!(relay.active_calls(), 1);

    // BYE frees every port.
    let head = caller_request(&caller, &ok, "BYE", 6, &caller.branch());
    caller.send(&head, "").await;
    let bye = next_request(&callee, "BYE").await;
    callee.respond(&bye, 200, "OK", None).await;
    next_status(&caller, 200).await;
    assert_eq!(relay.active_calls(), 0);
    assert_eq!(relay.ports_in_use(), 0);
}

#[tokio::test]
async fn a_late_offer_is_answered_in_the_ack() {
    let node = start(anchored(42200, 20)).await;
    let (caller, callee) = phones(&node).await;
    let a = rtp_socket("127.0.0.1").await;
    let b = rtp_socket("127.0.0.1").await;
    caller.invite_with("103", "").await;
    let invite = next_request(&callee, "INVITE").await;
    assert!(invite.body.is_empty());
    respond_sdp(
        &callee,
        &invite,
        200,
        "late",
        &sdp(b.local_addr().unwrap().port(), "sendrecv"),
    )
    .await;
    let ok = next_status(&caller, 200).await;
    let to_a = media_of(&ok);
    assert!((42200..42240).contains(&to_a.port()), "{}", body(&ok));
    ack(
        &caller,
        &ok,
        &sdp(a.local_addr().unwrap().port(), "sendrecv"),
    )
    .await;
    let ack_in = next_request(&callee, "ACK").await;
    let to_b = media_of(&ack_in);
    assert!((42200..42240).contains(&to_b.port()), "{}", body(&ack_in));
    assert!(flows(&a, to_a, &b, 0x11).await);
    assert!(flows(&b, to_b, &a, 0x22).await);
}

#[tokio::test]
async fn a_forked_call_answered_by_the_second_device_keeps_only_its_media() {
    let node = start(anchored(42300, 20)).await;
    let relay = node.proxy.core().media.clone();
    let caller = Ua::new(node.udp, "101", "pw-101-xxxxxx", ACME).await;
    let first = Ua::new(node.udp, "102", "pw-102-xxxxxx", ACME).await;
    let second = Ua::new(node.udp, "102-2", "pw-1022-xxxxx", ACME).await;
    assert_eq!(first.register_here(3600).await.status(), Some(200));
    assert_eq!(second.register_here(3600).await.status(), Some(200));
    let a = rtp_socket("127.0.0.1").await;
    let b1 = rtp_socket("127.0.0.1").await;
    let b2 = rtp_socket("127.0.0.1").await;
    caller
        .invite_with("102", &sdp(a.local_addr().unwrap().port(), "sendrecv"))
        .await;
    let inv1 = next_request(&first, "INVITE").await;
    let inv2 = next_request(&second, "INVITE").await;
    let (to_b1, to_b2) = (media_of(&inv1), media_of(&inv2));
    assert_ne!(to_b1, to_b2, "one relay leg per branch");
    respond_sdp(
        &first,
        &inv1,
        183,
        "one",
        &sdp(b1.local_addr().unwrap().port(), "sendrecv"),
    )
    .await;
    next_status(&caller, 183).await;
    respond_sdp(
        &second,
        &inv2,
        200,
        "two",
        &sdp(b2.local_addr().unwrap().port(), "sendrecv"),
    )
    .await;
    let ok = next_status(&caller, 200).await;
    let to_a = media_of(&ok);
    ack(&caller, &ok, "").await;
    // The first device is cancelled; its early media no longer reaches anyone.
    let cancel = next_request(&first, "CANCEL").await;
    first.respond(&cancel, 200, "OK", None).await;
    first
        .respond(&inv1, 487, "Request Terminated", Some("one"))
        .await;
    assert!(
        flows(&a, to_a, &b2, 0x31).await,
        "the winner hears the caller"
    );
    assert!(
        flows(&b2, to_b2, &a, 0x32).await,
        "the caller hears the winner"
    );
    assert!(
        !flows(&b1, to_b1, &a, 0x33).await,
        "the loser's port is closed"
    );
    // Caller face and the winner's: two pairs, four ports.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(relay.ports_in_use(), 4);
}

#[tokio::test]
async fn strangers_spraying_the_port_range_never_reach_the_phones() {
    let node = start(anchored(42400, 10)).await;
    let relay = node.proxy.core().media.clone();
    let (caller, callee) = phones(&node).await;
    let a = rtp_socket("127.0.0.1").await;
    let b = rtp_socket("127.0.0.1").await;
    caller
        .invite_with("103", &sdp(a.local_addr().unwrap().port(), "sendrecv"))
        .await;
    let invite = next_request(&callee, "INVITE").await;
    let to_b = media_of(&invite);
    respond_sdp(
        &callee,
        &invite,
        200,
        "h",
        &sdp(b.local_addr().unwrap().port(), "sendrecv"),
    )
    .await;
    let ok = next_status(&caller, 200).await;
    let to_a = media_of(&ok);
    ack(&caller, &ok, "").await;
    // A stranger on another address sprays every port of the range, first
    // (before the phones latch) and again during the call.
    let stranger = rtp_socket("127.0.0.77").await;
    for port in 42400..42420u16 {
        stranger
            .send_to(&rtp(1, 0xee), ("127.0.0.1", port))
            .await
            .expect("spray");
    }
    assert!(flows(&a, to_a, &b, 0x41).await);
    assert!(flows(&b, to_b, &a, 0x42).await);
    for port in 42400..42420u16 {
        stranger
            .send_to(&rtp(2, 0xee), ("127.0.0.1", port))
            .await
            .expect("spray");
    }
    let mut buf = [0u8; 2048];
    for sock in [&a, &b] {
        while let Ok(Ok((n, _))) =
            tokio::time::timeout(Duration::from_millis(300), sock.recv_from(&mut buf)).await
        {
            assert_ne!(
                buf[..n].get(12),
                Some(&0xee),
                "a stranger's packet reached a phone"
            );
        }
    }
    // Two sprays over two RTP ports in use (RTP sent to the RTCP ports is
    // dropped as garbage before anyone asks whose it is).
    use std::sync::atomic::Ordering;
    assert!(relay.stats().dropped_stranger.load(Ordering::Relaxed) >= 4);
    assert!(flows(&a, to_a, &b, 0x43).await, "the call goes on");
}

#[tokio::test]
async fn bad_sdp_gets_400_or_488_with_a_warning_and_exhaustion_503() {
    let node = start(anchored(42500, 2)).await;
    let (caller, callee) = phones(&node).await;
    for (offer, status) in [
        ("v=0\r\nm=audio x RTP/AVP 0\r\n", 400),
        ("v=0\r\nc=ATM NSAP x\r\nm=audio 4000 RTP/AVP 0\r\n", 488),
    ] {
        caller.invite_with("103", offer).await;
        let resp = next_status(&caller, status).await;
        assert!(resp
            .value_text(&HeaderName::Warning)
            .is_some_and(|w| w.starts_with("399 ")));
    }
    // Two pairs: one call takes both; the next gets 503 and the first
    // keeps its audio.
    let a = rtp_socket("127.0.0.1").await;
    let b = rtp_socket("127.0.0.1").await;
    caller
        .invite_with("103", &sdp(a.local_addr().unwrap().port(), "sendrecv"))
        .await;
    let invite = next_request(&callee, "INVITE").await;
    let to_b = media_of(&invite);
    respond_sdp(
        &callee,
        &invite,
        200,
        "x",
        &sdp(b.local_addr().unwrap().port(), "sendrecv"),
    )
    .await;
    let ok = next_status(&caller, 200).await;
    let to_a = media_of(&ok);
    ack(&caller, &ok, "").await;
    let other = Ua::new(node.udp, "102", "pw-102-xxxxxx", ACME).await;
    other.invite_with("103", &sdp(5000, "sendrecv")).await;
    let refused = next_status(&other, 503).await;
    assert!(refused.value_text(&HeaderName::Warning).is_some());
    assert!(flows(&a, to_a, &b, 0x51).await);
    assert!(flows(&b, to_b, &a, 0x52).await);
    use std::sync::atomic::Ordering;
    assert_eq!(
        node.proxy
            .core()
            .media
            .stats()
            .ports_exhausted
            .load(Ordering::Relaxed),
        1
    );
}

/// Ports run out between the caller's side and the callee's: the caller
/// hears this node's 503 with its Warning (not a downstream 503 turned into
/// 500), and nothing is left behind.
#[tokio::test]
async fn ports_running_out_for_the_callee_answer_503_with_a_warning() {
    let node = start(anchored(42700, 1)).await;
    let (caller, _callee) = phones(&node).await;
    caller.invite_with("103", &sdp(5000, "sendrecv")).await;
    let refused = next_status(&caller, 503).await;
    assert!(refused
        .value_text(&HeaderName::Warning)
        .is_some_and(|w| w.starts_with("399 ")));
    let mut vias = refused.values(&HeaderName::Via);
    assert!(
        vias.next().is_some() && vias.next().is_none(),
        "the caller's own Via only"
    );
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(node.proxy.core().media.active_calls(), 0);
    assert_eq!(node.proxy.core().media.ports_in_use(), 0);
}

#[tokio::test]
async fn silence_ends_the_call_with_a_bye_to_both_phones() {
    let mut c = anchored(42600, 10);
    c.media.relay.timeout = Duration::from_secs(2);
    let node = start(c).await;
    let (caller, callee) = phones(&node).await;
    let a = rtp_socket("127.0.0.1").await;
    let b = rtp_socket("127.0.0.1").await;
    caller
        .invite_with("103", &sdp(a.local_addr().unwrap().port(), "sendrecv"))
        .await;
    let invite = next_request(&callee, "INVITE").await;
    respond_sdp(
        &callee,
        &invite,
        200,
        "q",
        &sdp(b.local_addr().unwrap().port(), "sendrecv"),
    )
    .await;
    let ok = next_status(&caller, 200).await;
    let to_a = media_of(&ok);
    ack(&caller, &ok, "").await;
    let mut events = node.proxy.events().subscribe();
    assert!(flows(&a, to_a, &b, 0x61).await);
    // Nobody sends any more: both phones get a BYE after the timeout.
    let bye_a = tokio::time::timeout(Duration::from_secs(6), next_request(&caller, "BYE"))
        .await
        .expect("the caller gets a BYE");
    let bye_b = tokio::time::timeout(Duration::from_secs(2), next_request(&callee, "BYE"))
        .await
        .expect("the callee gets a BYE");
    assert_eq!(bye_a.call_id(), bye_b.call_id());
    loop {
        let e = tokio::time::timeout(Duration::from_secs(2), events.recv())
            .await
            .expect("call_ended")
            .expect("event");
        if let pbx_sip_proxy::SipEvent::CallEnded { reason, media, .. } =
            std::sync::Arc::unwrap_or_clone(e)
        {
            assert_eq!(reason, Some("media_timeout"));
            let media = *media.expect("media figures");
            assert_eq!(media.caller.expect("caller").packets, 5);
            assert_eq!(media.callee.expect("callee").codec.as_deref(), Some("PCMA"));
            break;
        }
    }
    assert_eq!(node.proxy.core().media.active_calls(), 0);
}

#[tokio::test]
async fn when_both_devices_answer_the_first_answer_keeps_the_media() {
    let node = start(anchored(42700, 20)).await;
    let caller = Ua::new(node.udp, "101", "pw-101-xxxxxx", ACME).await;
    let first = Ua::new(node.udp, "102", "pw-102-xxxxxx", ACME).await;
    let second = Ua::new(node.udp, "102-2", "pw-1022-xxxxx", ACME).await;
    assert_eq!(first.register_here(3600).await.status(), Some(200));
    assert_eq!(second.register_here(3600).await.status(), Some(200));
    let a = rtp_socket("127.0.0.1").await;
    let b1 = rtp_socket("127.0.0.1").await;
    let b2 = rtp_socket("127.0.0.1").await;
    caller
        .invite_with("102", &sdp(a.local_addr().unwrap().port(), "sendrecv"))
        .await;
    let inv1 = next_request(&first, "INVITE").await;
    let inv2 = next_request(&second, "INVITE").await;
    let to_b2 = media_of(&inv2);
    respond_sdp(
        &second,
        &inv2,
        200,
        "two",
        &sdp(b2.local_addr().unwrap().port(), "sendrecv"),
    )
    .await;
    let ok = next_status(&caller, 200).await;
    let to_a = media_of(&ok);
    ack(&caller, &ok, "").await;
    // The other device answers too, before it hears of the CANCEL.
    respond_sdp(
        &first,
        &inv1,
        200,
        "one",
        &sdp(b1.local_addr().unwrap().port(), "sendrecv"),
    )
    .await;
    next_status(&caller, 200).await;
    assert!(
        flows(&a, to_a, &b2, 0x71).await,
        "the first answer keeps the caller's audio"
    );
    assert!(flows(&b2, to_b2, &a, 0x72).await);
    assert_eq!(node.proxy.core().media.active_calls(), 1);
}
