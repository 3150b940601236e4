//! `/healthz`: is this process up, and can it reach its database.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/healthz", get(healthz))
}

#[derive(Serialize)]
struct Health<'a> {
    status: &'a str,
    database: &'a str,
    node: &'a str,
}

/// 200 when the database answers, 503 when it does not (load balancers take
/// the node out; the SIP proxy keeps serving from memory meanwhile).
async fn healthz(State(state): State<AppState>) -> Response {
    let reachable = state.store.ping().await;
    let (code, database) = match &reachable {
        Ok(()) => (StatusCode::OK, "ok"),
        Err(e) => {
            tracing::warn!(error = %e, "health check: database unreachable");
            (StatusCode::SERVICE_UNAVAILABLE, "unreachable")
        }
    };
    let status = if reachable.is_ok() { "ok" } else { "degraded" };
    let body = Health {
        status,
        database,
        node: &state.node_id,
    };
    (code, [("cache-control", "no-store")], Json(body)).into_response()
}
