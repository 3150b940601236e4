//! The live event stream over a real WebSocket (tokio-tungstenite as the
//! client): scoped by token, resumable with `since`, and slow clients closed
//! with their resume point.

mod support;

use std::time::Duration;

use futures_util::StreamExt;
use pbx_control_plane::api::events::{Tenant, CREDENTIAL_ENDED, SLOW_CLIENT};
use pbx_store::testing::TestDb;
use serde_json::{json, Value};
use support::{Api, Who};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn serve(api: &Api) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = api.router.clone();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    addr
}

async fn connect(
    addr: std::net::SocketAddr,
    token: Option<&str>,
    since: Option<u64>,
) -> Result<Socket, u16> {
    let query = since.map(|s| format!("?since={s}")).unwrap_or_default();
    let mut request = format!("ws://{addr}/api/v1/events{query}")
        .into_client_request()
        .unwrap();
    if let Some(token) = token {
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((socket, _)) => Ok(socket),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            Err(response.status().as_u16())
        }
        Err(e) => panic!("connect: {e}"),
    }
}

async fn next_json(socket: &mut Socket) -> Value {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(5), socket.next())
            .await
            .expect("an event within 5 s")
            .expect("open")
            .expect("message");
        match message {
            Message::Text(text) => return serde_json::from_str(&text).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
}

async fn nothing_more(socket: &mut Socket) {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(300);
    while let Ok(more) = tokio::time::timeout_at(deadline, socket.next()).await {
        match more {
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
}

async fn scoped_and_resumable(db: TestDb) {
    let api = Api::new(db).await;
    let addr = serve(&api).await;
    let t = &api.t;
    let a = Tenant::customer(t.reseller_x.id, t.customer_a.id);
    let b = Tenant::customer(t.reseller_y.id, t.customer_b.id);

    assert_eq!(connect(addr, None, None).await.err(), Some(401));
    let mut x = connect(addr, api.token(Who::ResellerX), None)
        .await
        .unwrap();
    let mut cb = connect(addr, api.token(Who::CustomerB), None)
        .await
        .unwrap();
    assert_eq!(next_json(&mut x).await["type"], "hello");
    assert_eq!(next_json(&mut cb).await["type"], "hello");
    for (tenant, n) in [(a, 1), (b, 2), (a, 3)] {
        api.hub
            .publish(tenant, "call_started", 0, json!({ "n": n }));
    }
    let first = next_json(&mut x).await;
    assert_eq!(first["data"]["n"], 1);
    let last_seen = first["seq"].as_u64().unwrap();
    assert_eq!(next_json(&mut x).await["data"]["n"], 3);
    nothing_more(&mut x).await;
    assert_eq!(next_json(&mut cb).await["data"]["n"], 2);
    nothing_more(&mut cb).await;

    // Disconnected after the first event: a reconnect with its seq gets the rest.
    drop(x);
    api.hub.publish(a, "call_ended", 0, json!({ "n": 4 }));
    let mut again = connect(addr, api.token(Who::ResellerX), Some(last_seen))
        .await
        .unwrap();
    assert_eq!(next_json(&mut again).await["type"], "hello");
    assert_eq!(next_json(&mut again).await["data"]["n"], 3);
    assert_eq!(next_json(&mut again).await["data"]["n"], 4);
    nothing_more(&mut again).await;
    // The operator sees everything.
    let mut op = connect(addr, api.token(Who::Operator), Some(0))
        .await
        .unwrap();
    next_json(&mut op).await;
    for n in 1..=4 {
        assert_eq!(next_json(&mut op).await["data"]["n"], n);
    }
}

async fn resume_beyond_retention_reports_a_gap(db: TestDb) {
    let api = Api::new(db).await;
    let addr = serve(&api).await;
    let a = Tenant::customer(api.t.reseller_x.id, api.t.customer_a.id);
    // The hub holds 1000 events; 1100 push the first 100 out.
    for n in 0..1100 {
        api.hub.publish(a, "test", 0, json!({ "n": n }));
    }
    let mut ca = connect(addr, api.token(Who::CustomerA), Some(1))
        .await
        .unwrap();
    assert_eq!(next_json(&mut ca).await["type"], "hello");
    let gap = next_json(&mut ca).await;
    assert_eq!(gap["type"], "gap");
    assert_eq!(gap["oldest"], 101);
    assert_eq!(next_json(&mut ca).await["seq"], 101);
}

async fn a_client_that_falls_behind_is_closed_with_its_resume_point(db: TestDb) {
    let api = Api::new(db).await;
    let addr = serve(&api).await;
    let a = Tenant::customer(api.t.reseller_x.id, api.t.customer_a.id);
    let mut ca = connect(addr, api.token(Who::CustomerA), None)
        .await
        .unwrap();
    assert_eq!(next_json(&mut ca).await["type"], "hello");
    // More than the hub holds, published before the server can send any:
    // the client's position is gone while it is connected.
    for n in 0..5000 {
        api.hub
            .publish(a, "test", 0, json!({ "n": n, "pad": "x".repeat(200) }));
    }
    let mut closed = None;
    while let Ok(Some(message)) = tokio::time::timeout(Duration::from_secs(10), ca.next()).await {
        match message {
            Ok(Message::Close(frame)) => {
                closed = frame;
                break;
            }
            Ok(_) => continue,
            Err(_) => break,
        }
    }
    let frame = closed.expect("a close frame");
    assert_eq!(u16::from(frame.code), SLOW_CLIENT);
    assert!(frame.reason.contains("since="), "{}", frame.reason);
}

async fn a_revoked_token_loses_its_stream(db: TestDb) {
    let api = Api::new(db).await;
    let addr = serve(&api).await;
    let a = api.t.customer_a.id;
    let made = api
        .post(
            Who::CustomerA,
            "/api/v1/tokens",
            &json!({"name": "dashboard", "level": "customer", "customer_id": a}),
        )
        .await
        .json();
    let mut socket = connect(addr, made["secret"].as_str(), None).await.unwrap();
    assert_eq!(next_json(&mut socket).await["type"], "hello");
    let id = made["token"]["id"].as_i64().unwrap();
    assert_eq!(
        api.delete(Who::CustomerA, &format!("/api/v1/tokens/{id}"))
            .await
            .status,
        200
    );
    let mut code = None;
    while let Ok(Some(message)) = tokio::time::timeout(Duration::from_secs(5), socket.next()).await
    {
        match message {
            Ok(Message::Close(frame)) => {
                code = frame.map(|f| u16::from(f.code));
                break;
            }
            Ok(_) => continue,
            Err(_) => break,
        }
    }
    assert_eq!(code, Some(CREDENTIAL_ENDED));
}

async fn a_session_stream_needs_its_own_origin_and_ends_with_the_session(db: TestDb) {
    let api = Api::new(db).await;
    let addr = serve(&api).await;
    let signed_in = api
        .send(
            Who::Anonymous,
            axum::http::Method::POST,
            "/api/v1/session",
            Some(&json!({"email": "admin@acme.test", "password": "a long enough password"})),
            &[],
        )
        .await;
    let cookie = signed_in
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let csrf = signed_in.json()["csrf_token"].as_str().unwrap().to_owned();
    let open = |origin: &'static str| {
        let cookie = cookie.clone();
        async move {
            let mut request = format!("ws://{addr}/api/v1/events")
                .into_client_request()
                .unwrap();
            request
                .headers_mut()
                .insert("cookie", cookie.parse().unwrap());
            if !origin.is_empty() {
                let origin = origin.replace("{addr}", &addr.to_string());
                request
                    .headers_mut()
                    .insert("origin", origin.parse().unwrap());
            }
            tokio_tungstenite::connect_async(request).await
        }
    };
    // Another site's page, or no Origin at all, is refused.
    for origin in ["http://evil.test", ""] {
        match open(origin).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 403),
            other => panic!("{origin}: {:?}", other.map(|_| ())),
        }
    }
    let (mut socket, _) = open("http://{addr}").await.unwrap();
    assert_eq!(next_json(&mut socket).await["type"], "hello");
    // Signing out ends the stream too.
    let out = api
        .send(
            Who::Anonymous,
            axum::http::Method::DELETE,
            "/api/v1/session",
            None,
            &[("cookie", cookie.as_str()), ("x-csrf-token", csrf.as_str())],
        )
        .await;
    assert_eq!(out.status, 204);
    let mut code = None;
    while let Ok(Some(message)) = tokio::time::timeout(Duration::from_secs(5), socket.next()).await
    {
        match message {
            Ok(Message::Close(frame)) => {
                code = frame.map(|f| u16::from(f.code));
                break;
            }
            Ok(_) => continue,
            Err(_) => break,
        }
    }
    assert_eq!(code, Some(CREDENTIAL_ENDED));
}

pbx_store::both_engines!(
    a_session_stream_needs_its_own_origin_and_ends_with_the_session,
    a_revoked_token_loses_its_stream,
    scoped_and_resumable,
    resume_beyond_retention_reports_a_gap,
    a_client_that_falls_behind_is_closed_with_its_resume_point,
);
