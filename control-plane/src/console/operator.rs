//! The operator admin's pages: resellers with their statements, and the
//! platform's health. Reachable only on the operator's own console hosts.

use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use pbx_store::Scope;
use serde_json::{json, Value};

use super::look::Owner;
use super::visit::{Failure, Visit};
use crate::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/resellers", get(resellers))
        .route("/health", get(health))
}

fn operator_only(visit: &Visit) -> Result<(), Failure> {
    let session = visit.signed_in()?;
    if session.principal.scope == Scope::Operator && visit.look.owner == Owner::Operator {
        Ok(())
    } else {
        Err(Failure::NotFound)
    }
}

async fn resellers(State(s): State<AppState>, visit: Visit) -> Result<Response, Failure> {
    operator_only(&visit)?;
    let by = visit.principal()?;
    let texts = visit.texts(&s);
    let now = chrono::Utc::now();
    let month = now.format("%Y-%m").to_string();
    let list: Vec<Value> = s
        .store
        .resellers()
        .list(by)
        .await?
        .into_iter()
        .map(|r| {
            json!({
                "id": r.id, "name": r.name, "product_name": r.brand.product_name,
                "hosts": r.console_hosts.join(", "),
                "status": r.status.as_str(),
                "status_label": texts.get(&format!("status_{}", r.status.as_str())),
            })
        })
        .collect();
    visit.page(
        &s,
        "resellers",
        texts.get("resellers"),
        json!({ "resellers": list, "month": month }),
    )
}

async fn health(State(s): State<AppState>, visit: Visit) -> Result<Response, Failure> {
    operator_only(&visit)?;
    let by = visit.principal()?;
    let texts = visit.texts(&s);
    let database = match s.store.ping().await {
        Ok(()) => "ok".to_owned(),
        Err(e) => format!("{e}"),
    };
    let resellers = s.store.resellers().list(by).await?.len();
    let calls = s.api.events.active_calls(&by.scope).len();
    visit.page(
        &s,
        "health",
        texts.get("platform_health"),
        json!({ "node": *s.node_id, "database": database, "calls": calls, "resellers": resellers }),
    )
}
