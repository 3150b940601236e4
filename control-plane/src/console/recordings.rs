//! Call recording in the console: the customer's recorded calls, played in
//! the browser and deleted here, and (for its administrators) the policy:
//! whose calls are recorded and how long recordings are kept. A customer's
//! user sees the recordings of its own extension's calls; the store's scope
//! decides, as for the API.

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use pbx_store::call_recordings::RecordingPolicy;
use pbx_store::{CustomerId, ExtensionId, NumberId, Principal, Scope};
use serde_json::{json, Value};

use super::pages::field_messages;
use super::visit::{Failure, Form, Nothing, Visit};
use crate::recordings::Recording;
use crate::AppState;

/// Recordings a page lists at most (the API pages through all of them).
const LISTED: u32 = 200;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/customers/{id}/recordings", get(page).post(set_policy))
        .route("/call-recordings/{id}/audio", get(audio))
        .route("/call-recordings/{id}/delete", post(delete))
}

fn is_admin(by: &Principal) -> bool {
    !matches!(by.scope, Scope::Extension { .. })
}

async fn page(
    State(s): State<AppState>,
    visit: Visit,
    Path(id): Path<i64>,
) -> Result<Response, Failure> {
    render(&s, &visit, CustomerId(id), None, Vec::new()).await
}

/// The page; `asked` is a policy the form sent back with `errors`.
async fn render(
    s: &AppState,
    visit: &Visit,
    customer: CustomerId,
    asked: Option<&RecordingPolicy>,
    errors: Vec<String>,
) -> Result<Response, Failure> {
    let by = visit.principal()?;
    let customer = s.store.customers().get(by, customer).await?;
    let tz = visit.time_zone(&customer.time_zone);
    let format = visit.format();
    let admin = is_admin(by);
    let recordings: Vec<Value> = s
        .store
        .call_recordings()
        .list(by, customer.id, None, LISTED)
        .await?
        .iter()
        .map(|r| {
            json!({
                "id": r.id,
                "started": format.date_time(r.started_at, tz),
                "caller": r.caller,
                "callee": r.callee,
                "seconds": (r.duration_ms + 500) / 1000,
            })
        })
        .collect();
    let mut page = json!({
        "customer_id": customer.id,
        "recordings": recordings,
        "admin": admin,
        "can_change": admin && !by.read_only,
    });
    if admin {
        let stored = s.store.call_recordings().policy(by, customer.id).await?;
        let policy = asked.unwrap_or(&stored);
        let extensions: Vec<Value> = s
            .store
            .extensions()
            .list(by, customer.id)
            .await?
            .iter()
            .map(|e| {
                json!({
                    "id": e.id, "number": e.number, "name": e.display_name,
                    "on": policy.extensions.contains(&e.id),
                })
            })
            .collect();
        let numbers: Vec<Value> = s
            .store
            .numbers()
            .list(by)
            .await?
            .iter()
            .filter(|n| n.customer_id == Some(customer.id))
            .map(|n| json!({ "id": n.id, "number": n.e164, "on": policy.numbers.contains(&n.id) }))
            .collect();
        page["policy"] = json!({
            "retention_days": policy.retention_days,
            "extensions": extensions,
            "numbers": numbers,
        });
    }
    let texts = visit.texts(s);
    visit.form_page(s, "recordings", texts.get("call_recording"), page, errors)
}

/// The policy a form asks for: `retention_days`, and a ticked box
/// `ext_<id>` per recorded extension and `num_<id>` per recorded number.
fn policy_of(form: &HashMap<String, String>) -> Result<RecordingPolicy, Vec<String>> {
    let days = form.get("retention_days").map_or("", |d| d.trim());
    let retention_days = days
        .parse()
        .map_err(|_| vec![format!("retention_days: {days}")])?;
    let ids = |prefix: &str| -> Vec<i64> {
        let mut ids: Vec<i64> = form
            .keys()
            .filter_map(|k| k.strip_prefix(prefix)?.parse().ok())
            .collect();
        ids.sort_unstable();
        ids
    };
    Ok(RecordingPolicy {
        retention_days,
        extensions: ids("ext_").into_iter().map(ExtensionId).collect(),
        numbers: ids("num_").into_iter().map(NumberId).collect(),
    })
}

async fn set_policy(
    State(s): State<AppState>,
    visit: Visit,
    Path(id): Path<i64>,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, Failure> {
    let by = visit.principal()?;
    if !is_admin(by) {
        return Err(Failure::NotFound);
    }
    let customer = CustomerId(id);
    let policy = match policy_of(&form) {
        Ok(p) => p,
        Err(errors) => return render(&s, &visit, customer, None, errors).await,
    };
    match s
        .store
        .call_recordings()
        .set_policy(by, customer, &policy)
        .await
    {
        Ok(_) => {
            Ok(Redirect::to(&format!("/customers/{id}/recordings?done=saved")).into_response())
        }
        Err(e) => {
            let errors = field_messages(e)?;
            render(&s, &visit, customer, Some(&policy), errors).await
        }
    }
}

/// A recording's audio, for the page's player.
async fn audio(
    State(s): State<AppState>,
    visit: Visit,
    Path(id): Path<i64>,
) -> Result<Response, Failure> {
    let by = visit.principal()?;
    match crate::recordings::of_call(&s, by, id).await? {
        Recording::Found(bytes) => Ok(crate::recordings::wav(bytes)),
        Recording::Missing => Err(Failure::NotFound),
    }
}

/// Deletes a recording and its audio; back to the list.
async fn delete(
    State(s): State<AppState>,
    visit: Visit,
    Path(id): Path<i64>,
    Form(_): Form<Nothing>,
) -> Result<Response, Failure> {
    let by = visit.principal()?;
    let (recording, _) = s.store.call_recordings().get(by, id).await?;
    let key = s.store.call_recordings().delete(by, id).await?;
    crate::recordings::remove(&s, key, "call recording", id).await;
    Ok(Redirect::to(&format!(
        "/customers/{}/recordings?done=recording_deleted",
        recording.customer_id
    ))
    .into_response())
}
