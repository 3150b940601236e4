//! The SIP security page of administrators: accounts protected against a
//! password guess (and lifting a protection), banned addresses (and
//! lifting a ban), and the allow list — a customer's office addresses, or
//! the operator's own. Each sees what the store lets it: the operator all,
//! a reseller its customers', a customer admin its own.

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use pbx_store::abuse::NewAllowedSource;
use pbx_store::{CustomerId, Scope};
use serde::Deserialize;
use serde_json::{json, Value};

use super::pages::field_messages;
use super::visit::{Failure, Form, Visit};
use crate::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/security", get(security))
        .route("/security/allow", post(allow))
        .route("/security/allow/{id}/remove", post(remove_allowed))
        .route("/security/bans/{id}/lift", post(lift_ban))
        .route("/security/protections/{id}/lift", post(lift_protection))
}

/// Administrators only (a customer's users have no SIP security to manage).
fn admin(visit: &Visit) -> Result<&pbx_store::Principal, Failure> {
    let by = visit.principal()?;
    match by.scope {
        Scope::Extension { .. } => Err(Failure::NotFound),
        _ => Ok(by),
    }
}

async fn security(State(s): State<AppState>, visit: Visit) -> Result<Response, Failure> {
    page(&s, &visit, json!({}), Vec::new()).await
}

async fn page(
    s: &AppState,
    visit: &Visit,
    form: Value,
    errors: Vec<String>,
) -> Result<Response, Failure> {
    let by = admin(visit)?;
    let texts = visit.texts(s);
    let format = visit.format();
    let customers: Vec<pbx_store::customers::Customer> = match by.scope {
        Scope::Customer { customer, .. } => vec![s.store.customers().get(by, customer).await?],
        _ => s.store.customers().list(by, None).await?,
    };
    let names: HashMap<CustomerId, &str> =
        customers.iter().map(|c| (c.id, c.name.as_str())).collect();
    let zones: HashMap<CustomerId, chrono_tz::Tz> = customers
        .iter()
        .map(|c| (c.id, visit.time_zone(&c.time_zone)))
        .collect();
    let own_zone = match by.scope {
        Scope::Customer { customer, .. } => zones.get(&customer).copied(),
        _ => None,
    }
    .unwrap_or_else(|| visit.time_zone(&visit.look.time_zone));
    let zone_of =
        |c: Option<CustomerId>| c.and_then(|c| zones.get(&c).copied()).unwrap_or(own_zone);
    let name_of = |c: Option<CustomerId>| c.and_then(|c| names.get(&c).copied()).unwrap_or("");
    let writable = !by.read_only;
    let protections: Vec<Value> = s
        .store
        .account_protections()
        .list(by, None, true, 100)
        .await?
        .into_iter()
        .map(|p| {
            json!({
                "id": p.id,
                "sip_user": p.sip_user,
                "customer": name_of(Some(p.customer_id)),
                "failures": p.failures,
                "sources": p.sources,
                "since": format.date_time(p.since, zone_of(Some(p.customer_id))),
                "until": format.date_time(p.until, zone_of(Some(p.customer_id))),
            })
        })
        .collect();
    let bans: Vec<Value> = s
        .store
        .sip_bans()
        .list(by, true, 200)
        .await?
        .into_iter()
        .map(|b| {
            json!({
                "id": b.id,
                "source": b.source,
                "reason": texts.get(&format!("ban_reason_{}", b.reason.as_str())),
                "level": b.level,
                "failures": b.failures,
                "customer": name_of(b.customer_id),
                "until": format.date_time(b.until, zone_of(b.customer_id)),
            })
        })
        .collect();
    let allowed: Vec<Value> = s
        .store
        .sip_allow_list()
        .list(by)
        .await?
        .into_iter()
        .map(|a| {
            json!({
                "id": a.id,
                "block": a.block,
                "note": a.note,
                "customer": if a.customer_id.is_some() { name_of(a.customer_id) } else { texts.get("whole_platform") },
            })
        })
        .collect();
    // A customer's admins see the toll-fraud alarms its reseller set (and
    // whom to ask to change them).
    let alarms = match by.scope {
        Scope::Customer { customer, .. } => {
            let a = s.store.fraud_alarms().get(by, customer).await?;
            let mode = |m: pbx_store::fraud_alarms::AlarmMode| {
                texts.get(&format!("alarm_{}", m.as_str())).to_owned()
            };
            json!({
                "new_destination": mode(a.new_destination),
                "burst": mode(a.burst),
                "burst_calls": a.burst_calls,
                "burst_window_s": a.burst_window_s,
                "after_hours": mode(a.after_hours),
            })
        }
        _ => Value::Null,
    };
    // Who an entry may be for: the customer admin its own customer; a
    // reseller one of its customers; the operator also the platform.
    let choices: Vec<Value> = match by.scope {
        Scope::Customer { .. } => Vec::new(),
        _ => customers
            .iter()
            .map(|c| json!({ "id": c.id, "name": c.name }))
            .collect(),
    };
    visit.form_page(
        s,
        "security",
        texts.get("sip_security"),
        json!({
            "protections": protections,
            "bans": bans,
            "allowed": allowed,
            "alarms": alarms,
            "choices": choices,
            "operator": matches!(by.scope, Scope::Operator),
            "customer_admin": matches!(by.scope, Scope::Customer { .. }),
            "writable": writable,
            "form": form,
        }),
        errors,
    )
}

#[derive(Deserialize)]
struct AllowForm {
    #[serde(default)]
    block: String,
    #[serde(default)]
    note: String,
    /// A customer's id, or empty for the operator's platform-wide entry.
    #[serde(default)]
    customer: String,
}

async fn allow(
    State(s): State<AppState>,
    visit: Visit,
    Form(form): Form<AllowForm>,
) -> Result<Response, Failure> {
    let by = admin(&visit)?;
    let customer = match by.scope {
        Scope::Customer { customer, .. } => Some(customer),
        _ if form.customer.trim().is_empty() => None,
        _ => Some(CustomerId(
            form.customer
                .trim()
                .parse()
                .map_err(|_| Failure::BadRequest)?,
        )),
    };
    let new = NewAllowedSource {
        block: form.block.clone(),
        note: form.note.clone(),
        customer_id: customer,
    };
    match s.store.sip_allow_list().add(by, &new).await {
        Ok(_) => Ok(Redirect::to("/security?done=address_allowed").into_response()),
        Err(e) => {
            let errors = field_messages(e)?;
            let kept = json!({ "block": form.block, "note": form.note, "customer": form.customer });
            page(&s, &visit, kept, errors).await
        }
    }
}

async fn remove_allowed(
    State(s): State<AppState>,
    visit: Visit,
    Path(id): Path<i64>,
    Form(_): Form<Value>,
) -> Result<Response, Failure> {
    s.store.sip_allow_list().remove(admin(&visit)?, id).await?;
    Ok(Redirect::to("/security?done=address_removed").into_response())
}

async fn lift_ban(
    State(s): State<AppState>,
    visit: Visit,
    Path(id): Path<i64>,
    Form(_): Form<Value>,
) -> Result<Response, Failure> {
    match s.store.sip_bans().lift(admin(&visit)?, id).await {
        // Over already: nothing left to do either way.
        Ok(_) | Err(pbx_store::StoreError::Conflict(_)) => {
            Ok(Redirect::to("/security?done=ban_lifted").into_response())
        }
        Err(e) => Err(e.into()),
    }
}

async fn lift_protection(
    State(s): State<AppState>,
    visit: Visit,
    Path(id): Path<i64>,
    Form(_): Form<Value>,
) -> Result<Response, Failure> {
    match s.store.account_protections().lift(admin(&visit)?, id).await {
        Ok(_) | Err(pbx_store::StoreError::Conflict(_)) => {
            Ok(Redirect::to("/security?done=protection_lifted").into_response())
        }
        Err(e) => Err(e.into()),
    }
}
