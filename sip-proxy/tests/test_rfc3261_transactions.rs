//! The transaction layer (RFC 3261 §17, RFC 6026) seen from the phones,
//! with paused time: each test pins one scenario of the RFC.

mod support;

use std::time::Duration;

use tokio::time::Instant;

use support::{
    caller_request, config_on_paused_time, next_request, next_status, respond_sdp, start, Ua, ACME,
    SDP,
};

async fn caller_and_callee(node: &support::Node) -> (Ua, Ua) {
    let caller = Ua::new(node.udp, "101", "pw-101-xxxxxx", ACME).await;
    let callee = Ua::new(node.udp, "102", "pw-102-xxxxxx", ACME).await;
    assert_eq!(callee.register_here(3600).await.status(), Some(200));
    (caller, callee)
}

/// Seconds since `start`, rounded to tenths.
fn at(start: Instant) -> f64 {
    (start.elapsed().as_millis() as f64 / 100.0).round() / 10.0
}

#[tokio::test(start_paused = true)]
async fn test_invite_retransmission_absorbed_by_server_transaction() {
    let node = start(config_on_paused_time()).await;
    let (caller, callee) = caller_and_callee(&node).await;
    let (_, _, head) = caller.invite("102").await;
    let invite = callee.recv().await;
    callee.respond(&invite, 180, "Ringing", Some("cal1")).await;
    assert_eq!(caller.final_or_provisional().await.status(), Some(180));
    // The caller retransmits its INVITE: it gets the last provisional again
    // and the callee sees no second INVITE.
    caller.send(&head, SDP).await;
    assert_eq!(caller.recv().await.status(), Some(180));
    assert!(
        callee.recv_within(Duration::from_secs(10)).await.is_none(),
        "a retransmission was forwarded"
    );
}

#[tokio::test(start_paused = true)]
async fn test_invite_client_timer_a_doubles_and_timer_b_gives_408() {
    let node = start(config_on_paused_time()).await;
    let (caller, callee) = caller_and_callee(&node).await;
    caller.invite("102").await;
    let start_at = Instant::now();
    let mut copies = Vec::new();
    while let Some(m) = callee.recv_within(Duration::from_secs(40)).await {
        if m.method().is_some() {
            copies.push(at(start_at));
        }
    }
    assert_eq!(
        copies,
        vec![0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5],
        "Timer A: T1, doubling"
    );
    let timeout = caller.final_or_provisional().await;
    assert_eq!(
        timeout.status(),
        Some(408),
        "Timer B: 64*T1 without any response"
    );
}

#[tokio::test(start_paused = true)]
async fn test_non2xx_is_acked_hop_by_hop_and_retransmitted_until_the_callers_ack() {
    let node = start(config_on_paused_time()).await;
    let (caller, callee) = caller_and_callee(&node).await;
    caller.invite("102").await;
    let invite = callee.recv().await;
    callee
        .respond(&invite, 486, "Busy Here", Some("busy1"))
        .await;
    let ack = callee.recv().await;
    assert_eq!(ack.method(), Some(&pbx_sip_message::Method::Ack));
    assert_eq!(
        ack.top_via().branch(),
        invite.top_via().branch(),
        "the ACK for a non-2xx belongs to the INVITE transaction"
    );
    let start_at = Instant::now();
    let mut copies = Vec::new();
    while let Some(m) = caller.recv_within(Duration::from_secs(40)).await {
        if m.status() == Some(486) {
            copies.push(at(start_at));
        }
    }
    // Timer G from T1 doubling up to T2, until Timer H (64*T1) gives up.
    assert_eq!(&copies[..6], &[0.0, 0.5, 1.5, 3.5, 7.5, 11.5]);
    assert!(copies.last().is_some_and(|&t| t <= 32.0), "{copies:?}");
}

#[tokio::test(start_paused = true)]
async fn test_ack_stops_response_retransmissions() {
    let node = start(config_on_paused_time()).await;
    let (caller, callee) = caller_and_callee(&node).await;
    let (call_id, branch, _) = caller.invite("102").await;
    let invite = callee.recv().await;
    callee.respond(&invite, 603, "Decline", Some("dec1")).await;
    let resp = caller.final_or_provisional().await;
    assert_eq!(resp.status(), Some(603));
    let ack = format!(
        "ACK sip:102@{ACME} SIP/2.0\nVia: SIP/2.0/UDP {};branch={branch};rport\nMax-Forwards: 70\nFrom: <sip:101@{ACME}>;tag=c{}\nTo: {}\nCall-ID: {call_id}\nCSeq: 2 ACK",
        caller.local,
        caller.local.port(),
        resp.value_text(&pbx_sip_message::HeaderName::To).unwrap_or_default()
    );
    caller.send(&ack, "").await;
    let more = caller.recv_within(Duration::from_secs(40)).await;
    assert!(
        more.is_none()
            || more.as_ref().is_some_and(|m| m.status() == Some(603))
                && caller.recv_within(Duration::from_secs(40)).await.is_none()
    );
}

#[tokio::test(start_paused = true)]
async fn test_timer_c_cancels_a_branch_that_rings_too_long() {
    let node = start(config_on_paused_time()).await;
    let (caller, callee) = caller_and_callee(&node).await;
    caller.invite("102").await;
    let invite = callee.recv().await;
    callee.respond(&invite, 180, "Ringing", Some("ring1")).await;
    let start_at = Instant::now();
    let cancel = callee
        .recv_within(Duration::from_secs(400))
        .await
        .expect("a CANCEL");
    assert_eq!(cancel.method(), Some(&pbx_sip_message::Method::Cancel));
    assert!(
        at(start_at) >= 180.0,
        "Timer C is more than three minutes: {}",
        at(start_at)
    );
    callee.respond(&cancel, 200, "OK", None).await;
    callee
        .respond(&invite, 487, "Request Terminated", Some("ring1"))
        .await;
    let mut finals = Vec::new();
    while let Some(m) = caller.recv_within(Duration::from_secs(5)).await {
        finals.extend(m.status());
    }
    assert!(finals.contains(&487), "{finals:?}");
}

#[tokio::test(start_paused = true)]
async fn test_non_invite_timer_e_caps_at_t2_and_timer_f_gives_408() {
    let node = start(config_on_paused_time()).await;
    let (caller, callee) = caller_and_callee(&node).await;
    caller.request("MESSAGE", "102", "hello").await;
    let start_at = Instant::now();
    let mut copies = Vec::new();
    while let Some(m) = callee.recv_within(Duration::from_secs(40)).await {
        if m.method().is_some() {
            copies.push(at(start_at));
        }
    }
    assert_eq!(
        &copies[..7],
        &[0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5],
        "Timer E doubles up to T2"
    );
    assert_eq!(caller.recv().await.status(), Some(408), "Timer F");
}

#[tokio::test(start_paused = true)]
async fn test_cancel_before_any_provisional_gets_487_at_once() {
    let node = start(config_on_paused_time()).await;
    let (caller, callee) = caller_and_callee(&node).await;
    let (_, _, head) = caller.invite("102").await;
    callee.recv().await;
    caller.cancel(&head).await;
    let mut statuses = Vec::new();
    while statuses.len() < 2 {
        let m = caller
            .recv_within(Duration::from_secs(2))
            .await
            .expect("responses to CANCEL and INVITE");
        if m.status() != Some(100) {
            statuses.extend(m.status());
        }
    }
    statuses.sort_unstable();
    assert_eq!(statuses, vec![200, 487]);
}

#[tokio::test(start_paused = true)]
async fn test_overload_sheds_new_requests_tells_phones_spread_retry_times_and_serves_dialogs() {
    let mut cfg = config_on_paused_time();
    cfg.max_transactions = 100;
    let node = start(cfg).await;
    let (caller, callee) = caller_and_callee(&node).await;
    // A call in progress before the node fills up.
    caller.invite("102").await;
    let invite = next_request(&callee, "INVITE").await;
    respond_sdp(&callee, &invite, 200, "in-progress", "").await;
    let ok = next_status(&caller, 200).await;
    caller
        .send(
            &caller_request(&caller, &ok, "ACK", ok.cseq().seq, &caller.branch()),
            "",
        )
        .await;
    // One challenge, then 150 authenticated MESSAGEs reusing the nonce (nc 1..150)
    // to a callee that never answers, so every transaction stays open.
    let uri = format!("sip:102@{ACME}");
    let head = |n: u32, auth: &str| {
        format!(
            "MESSAGE {uri} SIP/2.0\nVia: SIP/2.0/UDP {};branch=z9hG4bKload{n};rport\nMax-Forwards: 70\nFrom: <sip:101@{ACME}>;tag=l{n}\nTo: <{uri}>\nCall-ID: load-{n}\nCSeq: 1 MESSAGE\n{auth}",
            caller.local
        )
    };
    caller.send(&head(0, ""), "x").await;
    let challenge = caller.recv().await;
    let c = challenge
        .values(&pbx_sip_message::HeaderName::ProxyAuthenticate)
        .find_map(|h| {
            h.text()
                .and_then(|t| pbx_sip_message::auth::DigestParams::parse(&t).ok())
        })
        .expect("challenge");
    for n in 1..=150u32 {
        let auth = caller.answer_challenge(&c, "MESSAGE", &uri, n);
        caller
            .send(&head(n, &format!("Proxy-Authorization: {auth}\n")), "x")
            .await;
    }
    let mut shed = 0;
    while let Some(m) = caller.recv_within(Duration::from_millis(200)).await {
        if m.status() == Some(503) {
            // No Retry-After: it would tell the client to send nothing at
            // all for that long, BYEs of its calls included.
            assert!(m
                .value_text(&pbx_sip_message::HeaderName::RetryAfter)
                .is_none());
            shed += 1;
        }
    }
    assert!(
        (40..=60).contains(&shed),
        "about 50 of 150 refused with 503, got {shed}"
    );
    // Phones registering meanwhile are told to come back at spread times.
    let mut waits = std::collections::BTreeSet::new();
    for n in 0..20 {
        let contact = format!("Contact: <sip:101@{}>\n", caller.local);
        caller
            .send(
                &caller.register_head(&format!("storm-{n}"), 1, &contact, Some(60), ""),
                "",
            )
            .await;
        let refused = next_status(&caller, 503).await;
        let wait: u32 = refused
            .value_text(&pbx_sip_message::HeaderName::RetryAfter)
            .and_then(|v| v.parse().ok())
            .expect("Retry-After");
        assert!((10..=40).contains(&wait), "Retry-After {wait}");
        waits.insert(wait);
    }
    assert!(waits.len() >= 5, "the waits are spread: {waits:?}");
    // The table is still full of the MESSAGEs nobody answers: a new call is
    // refused, and the call in progress is still hung up.
    caller.send(&head(999, ""), "x").await;
    let refused = next_status(&caller, 503).await;
    assert_eq!(refused.call_id(), "load-999");
    let bye = caller_request(&caller, &ok, "BYE", ok.cseq().seq + 1, &caller.branch());
    caller.send(&bye, "").await;
    let got = next_request(&callee, "BYE").await;
    assert_eq!(got.call_id(), ok.call_id());
    callee.respond(&got, 200, "OK", None).await;
    assert_eq!(next_status(&caller, 200).await.call_id(), ok.call_id());
}
