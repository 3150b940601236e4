//! An API router over a fresh database with the two-tenant fixture and one
//! API token per role: operator, reseller X, reseller Y, customer A (of X),
//! customer B (of Y).

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use pbx_control_plane::api::auth::RateLimit;
use pbx_control_plane::api::events::EventHub;
use pbx_control_plane::api::ApiState;
use pbx_control_plane::{metrics, AppState};
use pbx_store::api_tokens::{NewToken, TokenLevel};
use pbx_store::testing::{TestDb, TwoTenants};
use pbx_store::Principal;
use serde_json::Value;
use tower::ServiceExt;

/// The five callers of the authorisation matrix, in its column order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    Operator,
    ResellerX,
    ResellerY,
    CustomerA,
    CustomerB,
    /// Customer A's read-only token.
    CustomerAReadOnly,
    Anonymous,
}

pub const MATRIX: [Who; 5] = [
    Who::Operator,
    Who::ResellerX,
    Who::ResellerY,
    Who::CustomerA,
    Who::CustomerB,
];

pub struct Api {
    pub db: TestDb,
    pub t: TwoTenants,
    pub router: Router,
    pub hub: Arc<EventHub>,
    pub state: AppState,
    tokens: Vec<(Who, String)>,
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub bytes: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes).unwrap_or(Value::Null)
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
}

async fn token(
    db: &TestDb,
    level: TokenLevel,
    reseller: Option<i64>,
    customer: Option<i64>,
    read_only: bool,
) -> String {
    let new = NewToken {
        name: format!("{level:?} token"),
        level,
        reseller_id: reseller.map(pbx_store::ResellerId),
        customer_id: customer.map(pbx_store::CustomerId),
        read_only,
        expires_at: None,
    };
    db.store
        .api_tokens()
        .create(&Principal::system(), &new)
        .await
        .expect("token")
        .1
}

impl Api {
    pub async fn new(db: TestDb) -> Api {
        Api::with_limit(db, RateLimit::new(100_000, 100_000)).await
    }

    pub async fn with_limit(db: TestDb, limit: RateLimit) -> Api {
        let t = TwoTenants::create(&db.store).await;
        let (x, y) = (t.reseller_x.id.0, t.reseller_y.id.0);
        let (a, b) = (t.customer_a.id.0, t.customer_b.id.0);
        let tokens = vec![
            (
                Who::Operator,
                token(&db, TokenLevel::Operator, None, None, false).await,
            ),
            (
                Who::ResellerX,
                token(&db, TokenLevel::Reseller, Some(x), None, false).await,
            ),
            (
                Who::ResellerY,
                token(&db, TokenLevel::Reseller, Some(y), None, false).await,
            ),
            (
                Who::CustomerA,
                token(&db, TokenLevel::Customer, None, Some(a), false).await,
            ),
            (
                Who::CustomerB,
                token(&db, TokenLevel::Customer, None, Some(b), false).await,
            ),
            (
                Who::CustomerAReadOnly,
                token(&db, TokenLevel::Customer, None, Some(a), true).await,
            ),
        ];
        let hub = Arc::new(
            EventHub::new(1000, Duration::from_secs(600))
                .with_heartbeat(Duration::from_millis(200)),
        );
        let state = AppState {
            store: db.store.clone(),
            metrics: Arc::new(metrics::Registry::default()),
            node_id: "test".into(),
            api: Arc::new(ApiState::new(limit, hub.clone())),
            console: Arc::new(pbx_control_plane::console::Console::new(None, None).expect("theme")),
            audio: pbx_store::audio_files::AudioFiles::new(
                std::env::temp_dir().join(format!("pbx-api-audio-{}", std::process::id())),
            ),
        };
        let router = pbx_control_plane::router(state.clone());
        Api {
            db,
            t,
            router,
            hub,
            state,
            tokens,
        }
    }

    pub fn token(&self, who: Who) -> Option<&str> {
        self.tokens
            .iter()
            .find(|(w, _)| *w == who)
            .map(|(_, t)| t.as_str())
    }

    pub async fn send(
        &self,
        who: Who,
        method: Method,
        uri: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut all: Vec<(&str, &str)> = headers.to_vec();
        if body.is_some() {
            all.push(("content-type", "application/json"));
        }
        let body = body.map(|v| v.to_string().into_bytes());
        self.send_raw(who, method, uri, body, &all).await
    }

    /// A request with `body` as it is (its type among `headers`).
    pub async fn send_raw(
        &self,
        who: Who,
        method: Method,
        uri: &str,
        body: Option<Vec<u8>>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(token) = self.token(who) {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let body = match body {
            Some(v) => Body::from(v),
            None => Body::empty(),
        };
        let response = self
            .router
            .clone()
            .oneshot(req.body(body).expect("request"))
            .await
            .expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes()
            .to_vec();
        Answer {
            status,
            headers,
            bytes,
        }
    }

    pub async fn get(&self, who: Who, uri: &str) -> Answer {
        self.send(who, Method::GET, uri, None, &[]).await
    }

    pub async fn post(&self, who: Who, uri: &str, body: &Value) -> Answer {
        self.send(who, Method::POST, uri, Some(body), &[]).await
    }

    pub async fn put(&self, who: Who, uri: &str, body: &Value) -> Answer {
        self.send(who, Method::PUT, uri, Some(body), &[("if-match", "*")])
            .await
    }

    pub async fn delete(&self, who: Who, uri: &str) -> Answer {
        self.send(who, Method::DELETE, uri, None, &[]).await
    }
}
