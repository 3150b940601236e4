//! The API's live event stream watching a real call: SIPp phones register
//! and call through the real `pbx`, and a WebSocket client (tokio-tungstenite)
//! holding a reseller's token sees the call's events in order, while another
//! tenant's token sees none of them; a reconnect with the last sequence
//! number receives what was missed. The tokens come from `pbx admin
//! create-token`, as an operator would make them.

mod support;

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use support::sip::{register, seed, sipp_available, start_node, Sipp};
use support::TempDir;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(node: &support::Node, token: &str, since: Option<u64>) -> Socket {
    let query = since.map(|s| format!("?since={s}")).unwrap_or_default();
    let mut request = format!("ws://{}/api/v1/events{query}", node.http)
        .into_client_request()
        .expect("request");
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header"),
    );
    tokio_tungstenite::connect_async(request)
        .await
        .expect("connect to the event stream")
        .0
}

/// The next event, or None when none arrives within `wait`.
async fn next_event(socket: &mut Socket, wait: Duration) -> Option<Value> {
    loop {
        let message = tokio::time::timeout(wait, socket.next())
            .await
            .ok()??
            .ok()?;
        if let Message::Text(text) = message {
            return serde_json::from_str(&text).ok();
        }
    }
}

/// Events up to and including the first `record_rated` of `call_id`.
async fn until_rated(socket: &mut Socket, call_id: &str) -> Vec<Value> {
    let mut seen = Vec::new();
    while let Some(event) = next_event(socket, Duration::from_secs(15)).await {
        let done = event["type"] == "record_rated" && event["data"]["call_id"] == call_id;
        seen.push(event);
        if done {
            return seen;
        }
    }
    panic!("no record_rated for {call_id}; saw {seen:#?}");
}

#[test]
fn a_resellers_event_stream_follows_a_real_call_and_resumes() {
    if !sipp_available() {
        return;
    }
    let dir = TempDir::new("api-events");
    let s = seed(dir.path());
    // The fixture's first reseller (X) and the other reseller's customer (B).
    let reseller_x = support::create_token(&dir, &["--reseller", "1", "--name", "crm"]);
    let customer_b = support::create_token(&dir, &["--customer", "2", "--read-only"]);
    let node = start_node(&dir, "MD5");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let mut x = rt.block_on(connect(&node, &reseller_x, None));
    let mut b = rt.block_on(connect(&node, &customer_b, None));
    let hello = rt.block_on(next_event(&mut x, Duration::from_secs(5)));
    assert_eq!(hello.expect("hello")["type"], "hello");
    rt.block_on(next_event(&mut b, Duration::from_secs(5)))
        .expect("hello");

    let target = format!("127.0.0.1:{}", node.sip_port);
    let uas = Sipp::new("uas_answer.xml")
        .arg("-m")
        .arg("1")
        .spawn(&target);
    let reg = register(&node, &s.a102, uas.port(), "u1");
    assert!(reg.success, "{}", reg.log);
    let call_id = format!("api-events-{}", std::process::id());
    let out = Sipp::new("uac_call.xml")
        .phone(&s.a101, &format!("102@{}", s.a101.domain))
        .key("callee", "102")
        .key("callee_domain", &s.a101.domain)
        .arg("-cid_str")
        .arg(&call_id)
        .arg("-d")
        .arg("300")
        .run(&target);
    assert!(out.success, "{}", out.log);
    assert!(uas.finish(Duration::from_secs(10)).success);

    let events = rt.block_on(until_rated(&mut x, &call_id));
    let types: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    let of_call: Vec<&str> = events
        .iter()
        .filter(|e| e["data"]["call_id"] == call_id.as_str())
        .filter_map(|e| e["type"].as_str())
        .collect();
    assert_eq!(
        of_call,
        vec![
            "call_started",
            "call_answered",
            "call_ended",
            "record_rated"
        ],
        "all: {types:?}"
    );
    assert_eq!(types.first(), Some(&"device_registered"), "{types:?}");
    let seqs: Vec<u64> = events.iter().filter_map(|e| e["seq"].as_u64()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    for e in &events {
        assert_eq!(e["data"]["reseller"], 1, "{e}");
        assert_eq!(e["data"]["customer"], 1, "{e}");
    }
    let ended = events
        .iter()
        .find(|e| e["type"] == "call_ended")
        .expect("ended");
    assert_eq!(ended["data"]["outcome"], "answered");

    // The other reseller's customer heard nothing of it.
    let leaked = rt.block_on(next_event(&mut b, Duration::from_millis(500)));
    assert!(leaked.is_none(), "customer B saw {leaked:?}");

    // Reconnecting after the registration event replays the call's events.
    drop(x);
    let mut again = rt.block_on(connect(&node, &reseller_x, Some(seqs[0])));
    rt.block_on(next_event(&mut again, Duration::from_secs(5)))
        .expect("hello");
    let replayed = rt.block_on(until_rated(&mut again, &call_id));
    assert_eq!(
        replayed
            .iter()
            .filter_map(|e| e["seq"].as_u64())
            .collect::<Vec<_>>(),
        seqs[1..].to_vec()
    );
}
