//! The customer's pages: dashboard (live), extensions with their devices and
//! forwarding, phone numbers, call history. A customer user reaches only its
//! own extension and calls: the store's scope decides, and a foreign id
//! answers the branded 404.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use pbx_store::call_records::{CallDirection, RecordFilter};
use pbx_store::devices::{Credentials, NewDevice};
use pbx_store::extensions::{ExtensionSettings, NewExtension};
use pbx_store::forwards::{Forward, ForwardCondition};
use pbx_store::statements::Period;
use pbx_store::{CustomerId, DeviceId, ExtensionId, Scope, StoreError};
use serde::Deserialize;
use serde_json::{json, Value};

use super::choices::{Choices, For};
use super::visit::{Confirm, Failure, Form, Visit};
use crate::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/customers/{id}", get(dashboard))
        .route("/customers/{id}/live", get(live))
        .route(
            "/customers/{id}/extensions",
            get(extensions).post(create_extension),
        )
        .route("/customers/{id}/numbers", get(numbers))
        .route("/numbers/{id}/destination", post(route_number))
        .route("/customers/{id}/calls", get(calls))
        .route("/extensions/{id}", get(extension).post(update_extension))
        .route("/extensions/{id}/delete", post(delete_extension))
        .route("/extensions/{id}/forwarding", post(set_forwarding))
        .route("/extensions/{id}/devices", post(add_device))
        .route("/devices/{id}/reset-secret", post(reset_secret))
        .route("/devices/{id}/delete", post(delete_device))
}

/// The customer whose admin pages are asked for: a customer user (or anyone
/// outside the customer's scope) gets the 404.
pub(super) async fn admin_customer(
    s: &AppState,
    visit: &Visit,
    id: i64,
) -> Result<pbx_store::customers::Customer, Failure> {
    let by = visit.principal()?;
    if !is_admin(visit) {
        return Err(Failure::NotFound);
    }
    Ok(s.store.customers().get(by, CustomerId(id)).await?)
}

/// Customer admins and the levels above manage extensions; a customer user
/// only looks after its own.
fn is_admin(visit: &Visit) -> bool {
    visit
        .session
        .as_ref()
        .is_some_and(|s| !matches!(s.principal.scope, Scope::Extension { .. }))
}

async fn dashboard(
    State(s): State<AppState>,
    visit: Visit,
    Path(id): Path<i64>,
) -> Result<Response, Failure> {
    dashboard_page(&s, &visit, CustomerId(id), Vec::new()).await
}

pub(super) async fn dashboard_page(
    s: &AppState,
    visit: &Visit,
    id: CustomerId,
    errors: Vec<String>,
) -> Result<Response, Failure> {
    let customer = admin_customer(s, visit, id.0).await?;
    let by = visit.principal()?;
    let live = live_view(s, visit, customer.id, &customer.time_zone).await?;
    let usage = month_usage(s, visit, customer.id, &customer.time_zone).await;
    let music = s
        .store
        .custom_audio()
        .music(by, customer.id)
        .await?
        .is_some();
    let page = json!({
        "customer": { "id": customer.id, "name": customer.name },
        "usage": usage,
        "live": live,
        "music": music,
        "can_change": !by.read_only,
    });
    let texts = visit.texts(s);
    visit.form_page(s, "dashboard", texts.get("dashboard"), page, errors)
}

/// The live part of the dashboard, re-fetched by the page's script when an
/// event says something changed.
async fn live(
    State(s): State<AppState>,
    visit: Visit,
    Path(id): Path<i64>,
) -> Result<Response, Failure> {
    let customer = admin_customer(&s, &visit, id).await?;
    let live = live_view(&s, &visit, customer.id, &customer.time_zone).await?;
    visit.fragment(&s, "dashboard_live", live)
}

/// Registered devices (the database's bindings, overlaid with what this node
/// heard since its last write) and calls in progress.
async fn live_view(
    s: &AppState,
    visit: &Visit,
    customer: CustomerId,
    zone: &str,
) -> Result<Value, Failure> {
    let by = visit.principal()?;
    let now = pbx_store::now_ms();
    let devices: HashMap<DeviceId, (String, ExtensionId)> = s
        .store
        .devices()
        .list_for_customer(by, customer)
        .await?
        .into_iter()
        .map(|d| (d.id, (d.name, d.extension_id)))
        .collect();
    let numbers: HashMap<ExtensionId, String> = s
        .store
        .extensions()
        .list(by, customer)
        .await?
        .into_iter()
        .map(|e| (e.id, e.number))
        .collect();
    let mut rows: HashMap<(DeviceId, String), (Option<String>, Option<String>)> = s
        .store
        .registrations()
        .for_customer(by, customer, now)
        .await?
        .into_iter()
        .map(|b| {
            let key = (b.device_id, contact_uri(&b.contact).to_owned());
            (key, (Some(b.source), b.user_agent))
        })
        .collect();
    for (device, contact, heard) in s.api.events.bindings_heard(customer) {
        let key = (device, contact_uri(&contact).to_owned());
        match heard.expires_at {
            Some(e) if e > now => {
                rows.entry(key).or_insert((None, None));
            }
            _ => {
                rows.remove(&key);
            }
        }
    }
    let mut registrations: Vec<Value> = rows
        .into_iter()
        .filter_map(|((device, contact), (source, agent))| {
            // A device deleted since it registered is not shown.
            let (name, extension) = devices.get(&device)?;
            let source = source.unwrap_or_else(|| host_of_contact(&contact));
            Some(json!({
                "extension": numbers.get(extension).cloned().unwrap_or_default(),
                "device": name,
                "source": source,
                "user_agent": agent,
            }))
        })
        .collect();
    registrations.sort_by(|a, b| a["extension"].as_str().cmp(&b["extension"].as_str()));
    let tz = visit.time_zone(zone);
    let format = visit.format();
    let texts = visit.texts(s);
    let calls: Vec<Value> = s
        .api
        .events
        .active_calls(&by.scope)
        .into_iter()
        .filter(|c| c.customer_id == customer)
        .map(|c| {
            json!({
                "caller": c.caller,
                "callee": c.callee,
                "since": format.date_time(c.answered_at.unwrap_or(c.started_at), tz),
                "state": texts.get(if c.answered_at.is_some() { "call_answered" } else { "call_ringing" }),
            })
        })
        .collect();
    Ok(json!({
        "registered_count": registrations.len(),
        "registrations": registrations,
        "calls_count": calls.len(),
        "calls": calls,
    }))
}

/// The URI of a Contact header value (`"Name" <uri>;params` or a bare URI):
/// the database keeps the whole value, registration events the URI alone.
fn contact_uri(contact: &str) -> &str {
    match contact.split_once('<') {
        Some((_, rest)) => rest.split('>').next().unwrap_or(rest),
        None => contact.split(';').next().unwrap_or(contact),
    }
}

/// The host part of a Contact URI, shown when the database has not yet
/// written the binding's source address.
fn host_of_contact(contact: &str) -> String {
    let rest = contact
        .trim_start_matches('<')
        .split_once(':')
        .map_or(contact, |(_, r)| r);
    let rest = rest.split_once('@').map_or(rest, |(_, r)| r);
    rest.split([';', '>']).next().unwrap_or("").to_owned()
}

/// This month's usage at retail prices, in the reseller's billing month.
async fn month_usage(
    s: &AppState,
    visit: &Visit,
    customer: CustomerId,
    zone: &str,
) -> Option<Value> {
    let by = visit.principal().ok()?;
    let tz = visit.time_zone(zone);
    let now = chrono::Utc::now().with_timezone(&tz);
    let period = Period::Month {
        year: chrono::Datelike::year(&now),
        month: chrono::Datelike::month(&now),
    };
    let statement = match s.store.statements().customer(by, customer, period).await {
        Ok(statement) => statement,
        Err(e) => {
            tracing::warn!(error = %e, customer = %customer, "dashboard usage unavailable");
            return None;
        }
    };
    let f = visit.format();
    let calls: i64 = statement.lines.iter().map(|l| l.quantity).sum();
    let ms: i64 = statement.lines.iter().map(|l| l.billable_ms).sum();
    Some(json!({
        "calls": calls,
        "minutes": f.minutes(ms),
        "net": f.money(statement.net_micros, &statement.currency),
        "gross": f.money(statement.gross_micros, &statement.currency),
        "period": statement.period_label,
    }))
}

async fn extensions(
    State(s): State<AppState>,
    visit: Visit,
    Path(id): Path<i64>,
) -> Result<Response, Failure> {
    let customer = admin_customer(&s, &visit, id).await?;
    extensions_page(&s, &visit, customer.id, json!({}), Vec::new()).await
}

async fn extensions_page(
    s: &AppState,
    visit: &Visit,
    customer: CustomerId,
    form: Value,
    errors: Vec<String>,
) -> Result<Response, Failure> {
    let by = visit.principal()?;
    let mut per_extension: HashMap<ExtensionId, usize> = HashMap::new();
    for d in s.store.devices().list_for_customer(by, customer).await? {
        *per_extension.entry(d.extension_id).or_default() += 1;
    }
    let list: Vec<Value> = s
        .store
        .extensions()
        .list(by, customer)
        .await?
        .into_iter()
        .filter(|e| e.deleted_at.is_none())
        .map(|e| {
            json!({
                "id": e.id, "number": e.number, "display_name": e.display_name, "dnd": e.dnd,
                "devices": per_extension.get(&e.id).copied().unwrap_or(0),
            })
        })
        .collect();
    let texts = visit.texts(s);
    visit.form_page(
        s,
        "extensions",
        texts.get("extensions"),
        json!({
            "customer_id": customer,
            "extensions": list,
            "can_create": !by.read_only,
            "form": form,
        }),
        errors,
    )
}

#[derive(Deserialize)]
struct NewExtensionForm {
    #[serde(default)]
    number: String,
    #[serde(default)]
    display_name: String,
    with_device: Option<String>,
}

async fn create_extension(
    State(s): State<AppState>,
    visit: Visit,
    Path(id): Path<i64>,
    Form(form): Form<NewExtensionForm>,
) -> Result<Response, Failure> {
    let by = visit.principal()?;
    let customer = CustomerId(id);
    let new = NewExtension {
        number: form.number.trim().to_owned(),
        display_name: form.display_name.trim().to_owned(),
    };
    let created = match s.store.extensions().create(by, customer, &new).await {
        Ok(e) => e,
        Err(e) => {
            let errors = field_messages(e)?;
            let kept = json!({ "number": new.number, "display_name": new.display_name });
            return extensions_page(&s, &visit, customer, kept, errors).await;
        }
    };
    if form.with_device.is_some() {
        let name = if created.display_name.is_empty() {
            created.number.clone()
        } else {
            created.display_name.clone()
        };
        let device = NewDevice {
            name,
            sip_user: None,
            secret: None,
        };
        let (device, credentials) = s.store.devices().create(by, created.id, &device).await?;
        return credentials_page(&s, &visit, &device, &credentials);
    }
    Ok(Redirect::to(&format!(
        "/extensions/{}?done=extension_created",
        created.id
    ))
    .into_response())
}

/// Turns a store's validation error into messages for the form; anything
/// else fails the page.
pub(super) fn field_messages(e: StoreError) -> Result<Vec<String>, Failure> {
    match e {
        StoreError::Invalid(fields) => Ok(fields
            .into_iter()
            .map(|f| format!("{}: {}", f.field, f.message))
            .collect()),
        StoreError::Conflict(message) | StoreError::InUse(message) => Ok(vec![message]),
        other => Err(other.into()),
    }
}

async fn extension(
    State(s): State<AppState>,
    visit: Visit,
    Path(id): Path<i64>,
) -> Result<Response, Failure> {
    extension_page(&s, &visit, ExtensionId(id), Vec::new()).await
}

pub(super) async fn extension_page(
    s: &AppState,
    visit: &Visit,
    id: ExtensionId,
    errors: Vec<String>,
) -> Result<Response, Failure> {
    let by = visit.principal()?;
    let ext = s.store.extensions().get(by, id).await?;
    if ext.deleted_at.is_some() {
        return Err(Failure::NotFound);
    }
    let devices = s.store.devices().list(by, ext.id).await?;
    let forwards = s.store.forwards().get(by, ext.id).await?;
    let texts = visit.texts(s);
    let conditions = [
        (ForwardCondition::Always, "forward_always"),
        (ForwardCondition::Busy, "forward_busy"),
        (ForwardCondition::NoAnswer, "forward_no_answer"),
        (ForwardCondition::Unavailable, "forward_unavailable"),
    ];
    let forward_rows: Vec<Value> = conditions
        .iter()
        .map(|(condition, label)| {
            let set = forwards
                .iter()
                .find(|f| f.condition == *condition && f.enabled);
            json!({
                "condition": condition.as_str(),
                "label": texts.get(label),
                "target": set.map(|f| f.target.clone()),
                "has_timeout": *condition == ForwardCondition::NoAnswer,
                "ring_time_s": set.and_then(|f| f.timeout_s).unwrap_or(pbx_store::forwards::DEFAULT_NO_ANSWER_S),
            })
        })
        .collect();
    // Messages are shown in the customer's time; its own users may read it.
    let zone = s
        .store
        .customers()
        .get(by, ext.customer_id)
        .await?
        .time_zone;
    let voicemail = super::voicemail::listed(s, visit, ext.id, &zone).await?;
    let greeting = s.store.custom_audio().greeting(by, ext.id).await?.is_some();
    let mailbox = s.store.voicemail().get_box(by, ext.id).await?;
    let title = format!("{} {}", texts.get("extension"), ext.number);
    visit.form_page(
        s,
        "extension",
        &title,
        json!({
            "extension": ext,
            "devices": devices,
            "forwards": forward_rows,
            "voicemail": voicemail,
            "greeting": greeting,
            "mailbox": mailbox,
            "can_change": !by.read_only,
            "can_admin": is_admin(visit) && !by.read_only,
        }),
        errors,
    )
}

#[derive(Deserialize)]
struct ExtensionForm {
    #[serde(default)]
    display_name: String,
    dnd: Option<String>,
    version: Option<i64>,
}

async fn update_extension(
    State(s): State<AppState>,
    visit: Visit,
    Path(id): Path<i64>,
    Form(form): Form<ExtensionForm>,
) -> Result<Response, Failure> {
    let by = visit.principal()?;
    let settings = ExtensionSettings {
        display_name: form.display_name.trim().to_owned(),
        dnd: form.dnd.is_some(),
    };
    match s
        .store
        .extensions()
        .update(by, ExtensionId(id), form.version, &settings)
        .await
    {
        Ok(_) => Ok(Redirect::to(&format!("/extensions/{id}?done=saved")).into_response()),
        Err(e) => {
            let errors = field_messages(e)?;
            extension_page(&s, &visit, ExtensionId(id), errors).await
        }
    }
}

async fn delete_extension(
    State(s): State<AppState>,
    visit: Visit,
    Path(id): Path<i64>,
    Form(form): Form<Confirm>,
) -> Result<Response, Failure> {
    let by = visit.principal()?;
    if !is_admin(&visit) {
        return Err(Failure::Forbidden);
    }
    form.required()?;
    let ext = s.store.extensions().get(by, ExtensionId(id)).await?;
    s.store.extensions().delete(by, ext.id).await?;
    Ok(Redirect::to(&format!(
        "/customers/{}/extensions?done=extension_deleted",
        ext.customer_id
    ))
    .into_response())
}

#[derive(Deserialize)]
struct ForwardingForm {
    always: Option<String>,
    busy: Option<String>,
    no_answer: Option<String>,
    unavailable: Option<String>,
    ring_time_s: Option<String>,
}

async fn set_forwarding(
    State(s): State<AppState>,
    visit: Visit,
    Path(id): Path<i64>,
    Form(form): Form<ForwardingForm>,
) -> Result<Response, Failure> {
    let by = visit.principal()?;
    let timeout = match form.ring_time_s.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(t) => Some(t.parse::<i64>().map_err(|_| Failure::BadRequest)?),
    };
    let mut forwards = Vec::new();
    for (condition, target) in [
        (ForwardCondition::Always, &form.always),
        (ForwardCondition::Busy, &form.busy),
        (ForwardCondition::NoAnswer, &form.no_answer),
        (ForwardCondition::Unavailable, &form.unavailable),
    ] {
        let Some(target) = target.as_deref().map(str::trim).filter(|t| !t.is_empty()) else {
            continue;
        };
        forwards.push(Forward {
            condition,
            target: target.to_owned(),
            timeout_s: (condition == ForwardCondition::NoAnswer)
                .then_some(timeout)
                .flatten(),
            enabled: true,
        });
    }
    match s.store.forwards().set(by, ExtensionId(id), &forwards).await {
        Ok(_) => Ok(Redirect::to(&format!("/extensions/{id}?done=saved")).into_response()),
        Err(e) => {
            let errors = field_messages(e)?;
            extension_page(&s, &visit, ExtensionId(id), errors).await
        }
    }
}

#[derive(Deserialize)]
struct DeviceForm {
    #[serde(default)]
    name: String,
}

async fn add_device(
    State(s): State<AppState>,
    visit: Visit,
    Path(id): Path<i64>,
    Form(form): Form<DeviceForm>,
) -> Result<Response, Failure> {
    let by = visit.principal()?;
    if !is_admin(&visit) {
        return Err(Failure::Forbidden);
    }
    let new = NewDevice {
        name: form.name.trim().to_owned(),
        sip_user: None,
        secret: None,
    };
    match s.store.devices().create(by, ExtensionId(id), &new).await {
        Ok((device, credentials)) => credentials_page(&s, &visit, &device, &credentials),
        Err(e) => {
            let errors = field_messages(e)?;
            extension_page(&s, &visit, ExtensionId(id), errors).await
        }
    }
}

async fn reset_secret(
    State(s): State<AppState>,
    visit: Visit,
    Path(id): Path<i64>,
    Form(_): Form<Empty>,
) -> Result<Response, Failure> {
    let by = visit.principal()?;
    let device = s.store.devices().get(by, DeviceId(id)).await?;
    let credentials = s.store.devices().reset_secret(by, device.id, None).await?;
    credentials_page(&s, &visit, &device, &credentials)
}

#[derive(Deserialize)]
struct Empty {}

async fn delete_device(
    State(s): State<AppState>,
    visit: Visit,
    Path(id): Path<i64>,
    Form(_): Form<Empty>,
) -> Result<Response, Failure> {
    let by = visit.principal()?;
    if !is_admin(&visit) {
        return Err(Failure::Forbidden);
    }
    let device = s.store.devices().get(by, DeviceId(id)).await?;
    s.store.devices().delete(by, device.id).await?;
    Ok(Redirect::to(&format!(
        "/extensions/{}?done=device_deleted",
        device.extension_id
    ))
    .into_response())
}

/// The one page that shows a SIP password: never cached, and with a QR code
/// a mobile softphone can scan.
fn credentials_page(
    s: &AppState,
    visit: &Visit,
    device: &pbx_store::devices::Device,
    credentials: &Credentials,
) -> Result<Response, Failure> {
    let account = format!(
        "sip:{}:{}@{}",
        credentials.sip_user, credentials.password, credentials.sip_domain
    );
    let texts = visit.texts(s);
    let mut response = visit.page(
        s,
        "credentials",
        texts.get("credentials_title"),
        json!({
            "device": device,
            "credentials": credentials,
            "proxy": s.console.phone_proxy,
            "qr_svg_base64": super::qr_svg_base64(&account)?,
        }),
    )?;
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    Ok(response)
}

async fn numbers(
    State(s): State<AppState>,
    visit: Visit,
    Path(id): Path<i64>,
) -> Result<Response, Failure> {
    let customer = admin_customer(&s, &visit, id).await?;
    let by = visit.principal()?;
    let texts = visit.texts(&s);
    let choices = Choices::of(&s, &visit, customer.id, For::Number).await?;
    let list: Vec<Value> = s
        .store
        .numbers()
        .list(by)
        .await?
        .into_iter()
        .filter(|n| n.customer_id == Some(customer.id))
        .map(|n| {
            let select = choices.select(texts, n.destination, texts.get("not_routed"));
            json!({ "id": n.id, "number": n.e164, "select": select })
        })
        .collect();
    visit.page(
        &s,
        "numbers",
        texts.get("phone_numbers"),
        json!({ "numbers": list }),
    )
}

#[derive(Deserialize)]
struct RoutingForm {
    #[serde(default)]
    destination: String,
}

/// Routes one of the customer's numbers (its admins; the store checks that
/// the number and the destination are the customer's).
async fn route_number(
    State(s): State<AppState>,
    visit: Visit,
    Path(id): Path<i64>,
    Form(form): Form<RoutingForm>,
) -> Result<Response, Failure> {
    if !is_admin(&visit) {
        return Err(Failure::Forbidden);
    }
    let by = visit.principal()?;
    let destination = super::choices::parse(&form.destination).map_err(|()| Failure::BadRequest)?;
    let number = s
        .store
        .numbers()
        .set_destination(by, pbx_store::NumberId(id), destination)
        .await?;
    let customer = number.customer_id.ok_or(Failure::NotFound)?;
    Ok(Redirect::to(&format!("/customers/{}/numbers?done=saved", customer.0)).into_response())
}

#[derive(Deserialize)]
struct CallFilter {
    from: Option<String>,
    to: Option<String>,
    direction: Option<String>,
    before: Option<i64>,
    format: Option<String>,
}

/// Rows shown per page of the call history; the CSV export takes up to 1000.
const CALLS_PER_PAGE: u32 = 50;

async fn calls(
    State(s): State<AppState>,
    visit: Visit,
    Path(id): Path<i64>,
    Query(q): Query<CallFilter>,
) -> Result<Response, Failure> {
    let by = visit.principal()?;
    let customer = s.store.customers().get(by, CustomerId(id)).await?;
    let tz = visit.time_zone(&customer.time_zone);
    let day = |text: &Option<String>, next: bool| -> Result<Option<i64>, Failure> {
        let Some(text) = text.as_deref().filter(|t| !t.is_empty()) else {
            return Ok(None);
        };
        let date =
            chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| Failure::BadRequest)?;
        let date = if next {
            date.succ_opt().ok_or(Failure::BadRequest)?
        } else {
            date
        };
        let start = date.and_hms_opt(0, 0, 0).ok_or(Failure::BadRequest)?;
        let local = chrono::TimeZone::from_local_datetime(&tz, &start)
            .earliest()
            .ok_or(Failure::BadRequest)?;
        Ok(Some(local.timestamp_millis()))
    };
    let direction = match q.direction.as_deref() {
        None | Some("") => None,
        Some(d) => Some(CallDirection::parse(d).ok_or(Failure::BadRequest)?),
    };
    let csv = q.format.as_deref() == Some("csv");
    let filter = RecordFilter {
        from: day(&q.from, false)?,
        to: day(&q.to, true)?,
        customer: Some(customer.id),
        extension: None,
        direction,
        before_id: q.before,
        limit: if csv { 1000 } else { CALLS_PER_PAGE },
    };
    let records = s.store.call_records().list(by, &filter).await?;
    let texts = visit.texts(&s);
    let format = visit.format();
    let direction_label =
        |d: CallDirection| texts.get(&format!("direction_{}", d.as_str())).to_owned();
    if csv {
        let mut out = String::from(
            "time,caller,callee,direction,duration_ms,price_micros,currency,\
             caller_codec,caller_packets,caller_lost_packets,caller_jitter_ms,\
             callee_codec,callee_packets,callee_lost_packets,callee_jitter_ms\n",
        );
        for r in &records {
            out.push_str(&format!(
                "{},{},{},{},{},{},{},{},{}\n",
                csv_field(&format.date_time(r.call.invite_at, tz)),
                csv_field(&r.call.caller),
                csv_field(&r.call.callee),
                r.call.direction.as_str(),
                r.billable_ms,
                r.retail
                    .as_ref()
                    .and_then(|p| p.micros)
                    .map(|m| m.to_string())
                    .unwrap_or_default(),
                r.currency.clone().unwrap_or_default(),
                media_csv(r.call.media.as_ref().and_then(|m| m.caller.as_ref())),
                media_csv(r.call.media.as_ref().and_then(|m| m.callee.as_ref())),
            ));
        }
        return Ok((
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"calls.csv\"",
                ),
            ],
            out,
        )
            .into_response());
    }
    let rows: Vec<Value> = records
        .iter()
        .map(|r| {
            let price = match (r.retail.as_ref().and_then(|p| p.micros), &r.currency) {
                (Some(m), Some(c)) => format.money(m, c),
                _ => String::new(),
            };
            json!({
                "time": format.date_time(r.call.invite_at, tz),
                "caller": r.call.caller,
                "callee": r.call.callee,
                "direction": direction_label(r.call.direction),
                "duration": format.duration(r.billable_ms),
                "price": price,
                "media": r.call.media.as_ref().map(|m| {
                    [("caller", &m.caller), ("callee", &m.callee)]
                        .into_iter()
                        .filter_map(|(side, figures)| {
                            figures.as_ref().map(|f| media_cell(&format, texts, side, f))
                        })
                        .collect::<Vec<Value>>()
                }),
                "relayed": r.call.media.is_some(),
            })
        })
        .collect();
    let keep = |extra: &[(&str, String)]| {
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("from", &q.from),
            ("to", &q.to),
            ("direction", &q.direction),
        ] {
            if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
                query.append_pair(k, v);
            }
        }
        for (k, v) in extra {
            query.append_pair(k, v);
        }
        format!("/customers/{}/calls?{}", customer.id, query.finish())
    };
    let next_href = (records.len() == CALLS_PER_PAGE as usize)
        .then(|| {
            records
                .last()
                .map(|r| keep(&[("before", r.id.to_string())]))
        })
        .flatten();
    let directions: Vec<Value> = [CallDirection::Inbound, CallDirection::Outbound, CallDirection::Internal]
        .into_iter()
        .map(|d| json!({ "value": d.as_str(), "label": direction_label(d), "selected": Some(d) == direction }))
        .collect();
    visit.page(
        &s,
        "calls",
        texts.get("call_history"),
        json!({
            "calls": rows,
            "filter": { "from": q.from, "to": q.to },
            "directions": directions,
            "csv_href": keep(&[("format", "csv".into())]),
            "next_href": next_href,
        }),
    )
}

/// What one party sent through the media relay, for the call history: the
/// codec, packets, the share lost on the way (from RTP sequence numbers) and
/// the jitter the relay measured.
fn media_cell(
    format: &super::i18n::Format,
    texts: &super::i18n::Texts,
    side: &str,
    f: &pbx_store::media::MediaSide,
) -> Value {
    let expected = f.packets.saturating_add(f.lost);
    // Basis points, rounded half up; nothing expected is nothing lost.
    let lost_bp = f
        .lost
        .saturating_mul(10_000)
        .saturating_add(expected / 2)
        .checked_div(expected)
        .unwrap_or(0);
    json!({
        "side": texts.get(&format!("media_{side}")),
        "codec": f.codec.clone().unwrap_or_default(),
        "packets": format.count(i64::try_from(f.packets).unwrap_or(i64::MAX)),
        "lost": format.percent(i64::try_from(lost_bp).unwrap_or(i64::MAX)),
        "jitter_ms": f.jitter_ms,
    })
}

/// One party's media figures as CSV columns (empty when not relayed).
fn media_csv(side: Option<&pbx_store::media::MediaSide>) -> String {
    match side {
        Some(f) => format!(
            "{},{},{},{}",
            csv_field(f.codec.as_deref().unwrap_or_default()),
            f.packets,
            f.lost,
            f.jitter_ms
        ),
        None => ",,,".to_owned(),
    }
}

/// A CSV field, quoted when needed; a leading formula sign is defused so a
/// spreadsheet does not run a caller-chosen name as a formula.
fn csv_field(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@', '\t', '\r'])
        && !text[1..].chars().all(|c| c.is_ascii_digit())
    {
        format!("'{text}")
    } else {
        text.to_owned()
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contacts_compare_by_their_uri() {
        assert_eq!(
            contact_uri("<sip:150@127.0.0.1:5099;transport=udp>;expires=60"),
            "sip:150@127.0.0.1:5099;transport=udp"
        );
        assert_eq!(contact_uri("\"Desk\" <sip:150@h>"), "sip:150@h");
        assert_eq!(contact_uri("sip:150@h;expires=60"), "sip:150@h");
        assert_eq!(
            host_of_contact("<sip:150@10.0.0.7:5062;ob>"),
            "10.0.0.7:5062"
        );
    }

    #[test]
    fn csv_fields_are_quoted_and_formulas_defused() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_field("+4930123"), "+4930123");
        assert_eq!(csv_field("-"), "-");
        assert_eq!(csv_field("\t=1+1"), "'\t=1+1");
    }
}
