//! `Idempotency-Key` on creates: a client that lost the answer to a POST can
//! send it again with the same key and get the first answer back instead of
//! a second object. The keys live in the database, so a retry that reaches
//! another node is answered the same.

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use pbx_store::idempotency::{Claim, StoredResponse};

use super::auth::Caller;
use super::input::MAX_BODY;
use super::problem::Problem;
use crate::AppState;

pub const HEADER: &str = "idempotency-key";
/// Answers too large to keep are not kept (the key is released).
const MAX_KEPT_RESPONSE: usize = 256 * 1024;
/// Response headers a replay repeats.
const REPLAYED_HEADERS: [HeaderName; 3] = [header::LOCATION, header::ETAG, header::CONTENT_TYPE];

pub async fn idempotent(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if req.method() != Method::POST {
        return next.run(req).await;
    }
    let Some(key) = req.headers().get(HEADER) else {
        return next.run(req).await;
    };
    let Ok(key) = key.to_str().map(str::to_owned) else {
        return Problem::bad_request("Idempotency-Key must be visible ASCII")
            .field("Idempotency-Key", "must be visible ASCII")
            .into_response();
    };
    let Some(Caller(principal)) = req.extensions().get::<Caller>().cloned() else {
        return Problem::unauthorized().into_response();
    };
    let (parts, body) = req.into_parts();
    let Ok(bytes) = to_bytes(body, MAX_BODY).await else {
        return Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-large",
            "The body is too large",
        )
        .into_response();
    };
    let mut request = format!("{} {}\n", parts.method, parts.uri).into_bytes();
    request.extend_from_slice(&bytes);
    let keys = state.store.idempotency();
    match keys.claim(&principal, &key, &request).await {
        Err(e) => return Problem::from(e).into_response(),
        Ok(Claim::Mismatch) => {
            return Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency-key-reused",
                "Idempotency-Key reused",
            )
            .detail("this key was used for a different request")
            .field("Idempotency-Key", "was used for a different request")
            .into_response()
        }
        Ok(Claim::InProgress) => {
            return Problem::new(
                StatusCode::CONFLICT,
                "idempotency-key-in-progress",
                "A request with this key is still running",
            )
            .detail("retry when it has finished")
            .into_response()
        }
        Ok(Claim::Replay(stored)) => return replay(stored),
        Ok(Claim::Fresh) => {}
    }
    // The request runs to its end on a task of its own, so that a client
    // hanging up mid-request cannot leave the key claimed but unanswered.
    let run = tokio::spawn(next.run(Request::from_parts(parts, Body::from(bytes))));
    let response = match run.await {
        Ok(response) => response,
        Err(e) => {
            let _ = keys.release(&principal, &key).await;
            return Problem::internal(&e).into_response();
        }
    };
    let (parts, body) = response.into_parts();
    let bytes = match to_bytes(body, MAX_KEPT_RESPONSE).await {
        Ok(b) => b,
        Err(e) => {
            let _ = keys.release(&principal, &key).await;
            return Problem::internal(&e).into_response();
        }
    };
    if parts.status.is_success() {
        let headers: serde_json::Map<String, serde_json::Value> = REPLAYED_HEADERS
            .iter()
            .filter_map(|name| {
                let v = parts.headers.get(name)?.to_str().ok()?;
                Some((name.as_str().to_owned(), v.into()))
            })
            .collect();
        let stored = StoredResponse {
            status: parts.status.as_u16(),
            headers: serde_json::Value::Object(headers).to_string(),
            body: String::from_utf8_lossy(&bytes).into_owned(),
        };
        if let Err(e) = keys.complete(&principal, &key, &stored).await {
            tracing::warn!(error = %e, "idempotency key not kept");
        }
    } else if let Err(e) = keys.release(&principal, &key).await {
        tracing::warn!(error = %e, "idempotency key not released");
    }
    Response::from_parts(parts, Body::from(bytes))
}

fn replay(stored: StoredResponse) -> Response {
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    let mut response = (status, stored.body).into_response();
    let headers: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&stored.headers).unwrap_or_default();
    for (name, value) in headers {
        if let (Ok(name), Some(Ok(value))) = (
            HeaderName::try_from(name),
            value.as_str().map(HeaderValue::from_str),
        ) {
            response.headers_mut().insert(name, value);
        }
    }
    let headers = response.headers_mut();
    headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    // Some answers carry a secret shown once (a token, a SIP password).
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
