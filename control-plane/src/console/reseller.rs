//! The reseller admin's pages: its customers (create, suspend, reactivate,
//! close), each customer's usage and statement, limits and toll-fraud
//! alarms, and the brand editor with a live preview and logo upload.

use axum::extract::{Multipart, Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use pbx_store::customers::NewCustomer;
use pbx_store::fraud_alarms::{AlarmMode, FraudAlarms};
use pbx_store::media::{AnchorMode, MediaPolicy};
use pbx_store::resellers::{AssetKind, Brand, ResellerSettings, Status};
use pbx_store::statements::Period;
use pbx_store::{CustomerId, ResellerId, Scope};
use serde::Deserialize;
use serde_json::{json, Value};

use super::look::Owner;
use super::visit::{Failure, Form, Nothing, Visit};
use crate::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/customers", get(customers).post(create_customer))
        .route("/customers/{id}/status", post(set_status))
        .route("/customers/{id}/usage", get(usage))
        .route("/customers/{id}/plan", post(set_plan))
        .route("/customers/{id}/limits", post(set_limits))
        .route("/customers/{id}/fraud-alarms", post(set_fraud_alarms))
        .route("/customers/{id}/media-anchor", post(set_customer_anchor))
        .route("/media-anchor", post(set_reseller_anchor))
        .route("/customers/{id}/impersonate", post(impersonate))
        .route("/impersonation/end", post(end_impersonation))
        .route("/brand", get(brand).post(save_brand))
        .route("/brand/logo", post(upload_logo))
        .route("/brand/favicon", post(upload_favicon))
}

/// The reseller whose admin is signed in here; other roles see a 404.
fn reseller_of(visit: &Visit) -> Result<ResellerId, Failure> {
    let session = visit.signed_in()?;
    match (&session.principal.scope, visit.look.owner) {
        (Scope::Reseller { reseller }, Owner::Reseller(r)) if *reseller == r => Ok(r),
        _ => Err(Failure::NotFound),
    }
}

async fn customers(State(s): State<AppState>, visit: Visit) -> Result<Response, Failure> {
    let reseller = reseller_of(&visit)?;
    customers_page(&s, &visit, reseller, json!({}), Vec::new()).await
}

async fn customers_page(
    s: &AppState,
    visit: &Visit,
    reseller: ResellerId,
    form: Value,
    errors: Vec<String>,
) -> Result<Response, Failure> {
    let by = visit.principal()?;
    let texts = visit.texts(s);
    let list: Vec<Value> = s
        .store
        .customers()
        .list(by, Some(reseller))
        .await?
        .into_iter()
        .map(|c| {
            let actions: Vec<Value> = match c.status {
                Status::Active => vec![
                    json!({ "status": "suspended", "label": texts.get("suspend"), "style": "secondary" }),
                    json!({ "status": "closed", "label": texts.get("close"), "style": "danger" }),
                ],
                Status::Suspended => vec![
                    json!({ "status": "active", "label": texts.get("reactivate"), "style": "secondary" }),
                    json!({ "status": "closed", "label": texts.get("close"), "style": "danger" }),
                ],
                Status::Closed => Vec::new(),
            };
            json!({
                "id": c.id, "name": c.name, "sip_domain": c.sip_domain,
                "status": c.status.as_str(),
                "status_label": texts.get(&format!("status_{}", c.status.as_str())),
                "can_open": !by.read_only && c.status == Status::Active,
                "actions": if by.read_only { Vec::new() } else { actions },
            })
        })
        .collect();
    let policy = s.store.media_policy().reseller(by, reseller).await?;
    visit.form_page(
        s,
        "customers",
        texts.get("customers"),
        json!({
            "customers": list,
            "can_create": !by.read_only,
            "form": form,
            "anchor": anchor_choices(texts, policy.anchor, "anchor_platform_default"),
            "writable": !by.read_only,
        }),
        errors,
    )
}

#[derive(Deserialize)]
struct NewCustomerForm {
    #[serde(default)]
    name: String,
}

async fn create_customer(
    State(s): State<AppState>,
    visit: Visit,
    Form(form): Form<NewCustomerForm>,
) -> Result<Response, Failure> {
    let reseller = reseller_of(&visit)?;
    let by = visit.principal()?;
    let new = NewCustomer {
        name: form.name.trim().to_owned(),
        ..NewCustomer::default()
    };
    match s.store.customers().create(by, reseller, &new).await {
        Ok(_) => Ok(Redirect::to("/customers?done=customer_created").into_response()),
        Err(e) => {
            let errors = super::pages::field_messages(e)?;
            customers_page(&s, &visit, reseller, json!({ "name": new.name }), errors).await
        }
    }
}

#[derive(Deserialize)]
struct StatusForm {
    status: String,
}

async fn set_status(
    State(s): State<AppState>,
    visit: Visit,
    Path(id): Path<i64>,
    Form(form): Form<StatusForm>,
) -> Result<Response, Failure> {
    reseller_of(&visit)?;
    let by = visit.principal()?;
    let status = Status::parse(&form.status).ok_or(Failure::BadRequest)?;
    s.store
        .customers()
        .set_status(by, CustomerId(id), status)
        .await?;
    Ok(Redirect::to("/customers?done=status_changed").into_response())
}

/// Opens a customer's console as that customer: the session acts in the
/// customer's scope (every page shows a banner) until the admin goes back.
async fn impersonate(
    State(s): State<AppState>,
    visit: Visit,
    headers: axum::http::HeaderMap,
    Path(id): Path<i64>,
    Form(Nothing {}): Form<Nothing>,
) -> Result<Response, Failure> {
    reseller_of(&visit)?;
    let by = visit.principal()?;
    let cookie = crate::api::session::cookie(&headers).ok_or(Failure::SignIn)?;
    let customer = CustomerId(id);
    let fresh = s
        .store
        .sessions()
        .act_as(cookie, by, Some(customer))
        .await?;
    tracing::info!(customer = %customer, "reseller admin opened a customer's console");
    let mut response = Redirect::to(&format!("/customers/{customer}")).into_response();
    super::sign_in::set_session_cookie(&mut response, &fresh);
    Ok(response)
}

async fn end_impersonation(
    State(s): State<AppState>,
    visit: Visit,
    headers: axum::http::HeaderMap,
    Form(Nothing {}): Form<Nothing>,
) -> Result<Response, Failure> {
    let session = visit.signed_in()?;
    let own = session.login.principal().ok_or(Failure::Forbidden)?;
    let cookie = crate::api::session::cookie(&headers).ok_or(Failure::SignIn)?;
    let fresh = s.store.sessions().act_as(cookie, &own, None).await?;
    let mut response = Redirect::to("/customers").into_response();
    super::sign_in::set_session_cookie(&mut response, &fresh);
    Ok(response)
}

#[derive(Deserialize)]
struct MonthQuery {
    month: Option<String>,
}

async fn usage(
    State(s): State<AppState>,
    visit: Visit,
    Path(id): Path<i64>,
    Query(q): Query<MonthQuery>,
) -> Result<Response, Failure> {
    let reseller = reseller_of(&visit)?;
    let by = visit.principal()?;
    let customer = s.store.customers().get(by, CustomerId(id)).await?;
    let r = s.store.resellers().get(by, reseller).await?;
    let tz = visit.time_zone(&r.time_zone);
    let (year, month) = match q.month.as_deref().and_then(parse_month) {
        Some(ym) => ym,
        None => {
            let now = chrono::Utc::now().with_timezone(&tz);
            (chrono::Datelike::year(&now), chrono::Datelike::month(&now))
        }
    };
    let statement = s
        .store
        .statements()
        .customer(by, customer.id, Period::Month { year, month })
        .await?;
    let f = visit.format();
    let lines: Vec<Value> = statement
        .lines
        .iter()
        .map(|l| {
            json!({
                "description": l.description,
                "quantity": l.quantity,
                "minutes": f.minutes(l.billable_ms),
                "amount": f.money(l.amount_micros, &statement.currency),
            })
        })
        .collect();
    let plans: Vec<Value> = s
        .store
        .price_plans()
        .list(by)
        .await?
        .into_iter()
        .filter(|p| p.reseller_id == Some(reseller))
        .map(|p| json!({ "id": p.id, "name": p.name, "selected": Some(p.id) == customer.retail_plan_id }))
        .collect();
    let limits = s.store.call_limits().for_customer(by, customer.id).await?;
    let alarms = s.store.fraud_alarms().get(by, customer.id).await?;
    let rules: Vec<Value> = s
        .store
        .business_hours()
        .list(by, customer.id)
        .await?
        .into_iter()
        .map(|r| json!({ "id": r.id, "name": r.name, "selected": Some(r.id) == alarms.after_hours_rule_id }))
        .collect();
    let anchor = s.store.media_policy().customer(by, customer.id).await?;
    let texts = visit.texts(&s);
    let modes = |chosen: AlarmMode| -> Vec<Value> {
        AlarmMode::ALL
            .iter()
            .map(|m| {
                json!({
                    "value": m.as_str(),
                    "label": texts.get(&format!("alarm_{}", m.as_str())),
                    "selected": *m == chosen,
                })
            })
            .collect()
    };
    visit.page(
        &s,
        "usage",
        texts.get("usage"),
        json!({
            "limits": {
                "max_concurrent_outbound": limits.max_concurrent_outbound,
                "max_attempts_per_minute": limits.max_attempts_per_minute,
                "spend": limits.max_spend_per_day_micros.map(super::plans::decimal),
                "allow_international": limits.allow_international,
                "allow_premium": limits.allow_premium,
            },
            "alarms": {
                "new_destination": modes(alarms.new_destination),
                "burst": modes(alarms.burst),
                "burst_calls": alarms.burst_calls,
                "burst_window_s": alarms.burst_window_s,
                "after_hours": modes(alarms.after_hours),
                "rules": rules,
            },
            "plans": plans,
            "anchor": anchor_choices(texts, anchor.anchor, "anchor_reseller_default"),
            "writable": !by.read_only,
            "customer": { "id": customer.id, "name": customer.name },
            "month": format!("{year:04}-{month:02}"),
            "lines": lines,
            "net": f.money(statement.net_micros, &statement.currency),
            "vat_rate": f.percent(statement.vat_rate_bp),
            "vat": f.money(statement.vat_micros, &statement.currency),
            "gross": f.money(statement.gross_micros, &statement.currency),
        }),
    )
}

#[derive(Deserialize)]
struct PlanChoice {
    #[serde(default)]
    plan: String,
}

/// Puts a customer on one of the reseller's retail plans (or none).
async fn set_plan(
    State(s): State<AppState>,
    visit: Visit,
    Path(id): Path<i64>,
    Form(form): Form<PlanChoice>,
) -> Result<Response, Failure> {
    let reseller = reseller_of(&visit)?;
    let by = visit.principal()?;
    let plan = match form.plan.trim() {
        "" => None,
        text => {
            let id = pbx_store::PlanId(text.parse().map_err(|_| Failure::BadRequest)?);
            // Only the reseller's own retail plans (it also sees its wholesale one).
            let plan = s.store.price_plans().get(by, id).await?;
            if plan.reseller_id != Some(reseller) {
                return Err(Failure::NotFound);
            }
            Some(plan.id)
        }
    };
    let c = s.store.customers().get(by, CustomerId(id)).await?;
    let settings = pbx_store::customers::CustomerSettings {
        name: c.name,
        sip_domain: c.sip_domain,
        country: c.country,
        time_zone: c.time_zone,
        language: c.language,
        retail_plan_id: plan,
    };
    s.store
        .customers()
        .update(by, c.id, Some(c.version), &settings)
        .await?;
    Ok(Redirect::to(&format!("/customers/{}/usage?done=saved", c.id)).into_response())
}

#[derive(Deserialize)]
struct LimitsForm {
    #[serde(default)]
    max_concurrent_outbound: String,
    #[serde(default)]
    max_attempts_per_minute: String,
    #[serde(default)]
    max_spend_per_day: String,
    allow_international: Option<String>,
    allow_premium: Option<String>,
}

/// Sets a customer's fraud and cost limits (empty fields: no limit).
async fn set_limits(
    State(s): State<AppState>,
    visit: Visit,
    Path(id): Path<i64>,
    Form(form): Form<LimitsForm>,
) -> Result<Response, Failure> {
    reseller_of(&visit)?;
    let by = visit.principal()?;
    let count = |text: &str| -> Result<Option<u32>, Failure> {
        match text.trim() {
            "" => Ok(None),
            t => t.parse().map(Some).map_err(|_| Failure::BadRequest),
        }
    };
    let spend = match form.max_spend_per_day.trim() {
        "" => None,
        t => Some(super::plans::parse_decimal(t).ok_or(Failure::BadRequest)?),
    };
    let limits = pbx_store::limits::Limits {
        max_concurrent_outbound: count(&form.max_concurrent_outbound)?,
        max_attempts_per_minute: count(&form.max_attempts_per_minute)?,
        max_spend_per_day_micros: spend,
        allow_international: form.allow_international.is_some(),
        allow_premium: form.allow_premium.is_some(),
    };
    s.store
        .call_limits()
        .set_for_customer(by, CustomerId(id), &limits)
        .await?;
    Ok(Redirect::to(&format!("/customers/{id}/usage?done=saved")).into_response())
}

#[derive(Deserialize)]
struct AlarmsForm {
    new_destination: String,
    burst: String,
    burst_calls: String,
    burst_window_s: String,
    after_hours: String,
    #[serde(default)]
    after_hours_rule: String,
}

/// Sets a customer's toll-fraud alarms.
async fn set_fraud_alarms(
    State(s): State<AppState>,
    visit: Visit,
    Path(id): Path<i64>,
    Form(form): Form<AlarmsForm>,
) -> Result<Response, Failure> {
    reseller_of(&visit)?;
    let by = visit.principal()?;
    let mode = |text: &str| AlarmMode::parse(text.trim()).ok_or(Failure::BadRequest);
    let number = |text: &str| text.trim().parse::<u32>().map_err(|_| Failure::BadRequest);
    let rule = match form.after_hours_rule.trim() {
        "" => None,
        t => Some(pbx_store::BusinessHoursId(
            t.parse().map_err(|_| Failure::BadRequest)?,
        )),
    };
    let alarms = FraudAlarms {
        new_destination: mode(&form.new_destination)?,
        burst: mode(&form.burst)?,
        burst_calls: number(&form.burst_calls)?,
        burst_window_s: number(&form.burst_window_s)?,
        after_hours: mode(&form.after_hours)?,
        after_hours_rule_id: rule,
    };
    s.store
        .fraud_alarms()
        .set(by, CustomerId(id), &alarms)
        .await?;
    Ok(Redirect::to(&format!("/customers/{id}/usage?done=saved")).into_response())
}

/// The choices of a media anchoring select: left to the level above
/// (`inherit` names it), or one of the modes; the current one selected.
fn anchor_choices(
    texts: &super::i18n::Texts,
    chosen: Option<AnchorMode>,
    inherit: &str,
) -> Vec<Value> {
    std::iter::once(
        json!({ "value": "", "label": texts.get(inherit), "selected": chosen.is_none() }),
    )
    .chain(AnchorMode::ALL.iter().map(|m| {
        json!({
            "value": m.as_str(),
            "label": texts.get(&format!("anchor_{}", m.as_str())),
            "selected": Some(*m) == chosen,
        })
    }))
    .collect()
}

#[derive(Deserialize)]
struct AnchorForm {
    #[serde(default)]
    anchor: String,
}

impl AnchorForm {
    /// The choice: empty leaves it to the level above; anything else that
    /// is not a mode is refused.
    fn policy(&self) -> Result<MediaPolicy, Failure> {
        let anchor = match self.anchor.trim() {
            "" => None,
            text => Some(AnchorMode::parse(text).ok_or(Failure::BadRequest)?),
        };
        Ok(MediaPolicy { anchor })
    }
}

/// Sets whether a customer's calls go through the media relay.
async fn set_customer_anchor(
    State(s): State<AppState>,
    visit: Visit,
    Path(id): Path<i64>,
    Form(form): Form<AnchorForm>,
) -> Result<Response, Failure> {
    reseller_of(&visit)?;
    let by = visit.principal()?;
    s.store
        .media_policy()
        .set_customer(by, CustomerId(id), form.policy()?)
        .await?;
    Ok(Redirect::to(&format!("/customers/{id}/usage?done=saved")).into_response())
}

/// Sets the reseller's default for its customers' media.
async fn set_reseller_anchor(
    State(s): State<AppState>,
    visit: Visit,
    Form(form): Form<AnchorForm>,
) -> Result<Response, Failure> {
    let reseller = reseller_of(&visit)?;
    let by = visit.principal()?;
    s.store
        .media_policy()
        .set_reseller(by, reseller, form.policy()?)
        .await?;
    Ok(Redirect::to("/customers?done=saved").into_response())
}

pub(super) fn parse_month(text: &str) -> Option<(i32, u32)> {
    let (y, m) = text.split_once('-')?;
    let (year, month): (i32, u32) = (y.parse().ok()?, m.parse().ok()?);
    ((1970..=9999).contains(&year) && (1..=12).contains(&month)).then_some((year, month))
}

async fn brand(State(s): State<AppState>, visit: Visit) -> Result<Response, Failure> {
    let reseller = reseller_of(&visit)?;
    let by = visit.principal()?;
    let r = s.store.resellers().get(by, reseller).await?;
    brand_page(
        &s,
        &visit,
        &r.brand,
        &r.console_hosts,
        r.version,
        Vec::new(),
    )
}

fn brand_page(
    s: &AppState,
    visit: &Visit,
    brand: &Brand,
    hosts: &[String],
    version: i64,
    errors: Vec<String>,
) -> Result<Response, Failure> {
    let texts = visit.texts(s);
    visit.form_page(
        s,
        "brand",
        texts.get("branding"),
        json!({ "brand": brand, "console_hosts": hosts.join(", "), "version": version }),
        errors,
    )
}

#[derive(Deserialize)]
struct BrandForm {
    version: Option<i64>,
    #[serde(default)]
    product_name: String,
    #[serde(default)]
    primary_color: String,
    #[serde(default)]
    accent_color: String,
    support_phone: Option<String>,
    support_email: Option<String>,
    support_url: Option<String>,
    login_text: Option<String>,
    email_sender_name: Option<String>,
    sip_server_header: Option<String>,
    #[serde(default)]
    console_hosts: String,
}

fn optional(text: Option<String>) -> Option<String> {
    text.map(|t| t.trim().to_owned()).filter(|t| !t.is_empty())
}

async fn save_brand(
    State(s): State<AppState>,
    visit: Visit,
    Form(form): Form<BrandForm>,
) -> Result<Response, Failure> {
    let reseller = reseller_of(&visit)?;
    let by = visit.principal()?;
    let current = s.store.resellers().get(by, reseller).await?;
    let brand = Brand {
        product_name: form.product_name.trim().to_owned(),
        primary_color: form.primary_color.trim().to_ascii_lowercase(),
        accent_color: form.accent_color.trim().to_ascii_lowercase(),
        support_phone: optional(form.support_phone),
        support_email: optional(form.support_email),
        support_url: optional(form.support_url),
        login_text: optional(form.login_text),
        email_sender_name: optional(form.email_sender_name),
        sip_server_header: optional(form.sip_server_header),
    };
    let hosts: Vec<String> = form
        .console_hosts
        .split([',', ' ', '\n'])
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| !h.is_empty())
        .collect();
    let settings = ResellerSettings {
        name: current.name.clone(),
        time_zone: current.time_zone.clone(),
        currency: current.currency.clone(),
        vat_rate_bp: current.vat_rate_bp,
        sip_domain_suffix: current.sip_domain_suffix.clone(),
        default_language: current.default_language.clone(),
        brand: brand.clone(),
        console_hosts: hosts.clone(),
    };
    match s
        .store
        .resellers()
        .update(by, reseller, form.version, &settings)
        .await
    {
        Ok(_) => {
            // This node shows the new brand at once; others when they hear of it.
            s.console.looks.clear();
            Ok(Redirect::to("/brand?done=saved").into_response())
        }
        Err(e) => {
            let errors = super::pages::field_messages(e)?;
            brand_page(&s, &visit, &brand, &hosts, current.version, errors)
        }
    }
}

async fn upload_logo(
    State(s): State<AppState>,
    visit: Visit,
    upload: Multipart,
) -> Result<Response, Failure> {
    upload_image(&s, &visit, upload, AssetKind::Logo).await
}

async fn upload_favicon(
    State(s): State<AppState>,
    visit: Visit,
    upload: Multipart,
) -> Result<Response, Failure> {
    upload_image(&s, &visit, upload, AssetKind::Favicon).await
}

/// Takes the form's `image` (after its `csrf` field). The image's type is
/// decided by the store from its bytes.
async fn upload_image(
    s: &AppState,
    visit: &Visit,
    upload: Multipart,
    kind: AssetKind,
) -> Result<Response, Failure> {
    let reseller = reseller_of(visit)?;
    let session = visit.signed_in()?;
    let image = super::visit::uploaded_file(visit, upload, "image").await?;
    match s
        .store
        .resellers()
        .set_asset(&session.principal, reseller, kind, &image)
        .await
    {
        Ok(()) => {
            s.console.looks.clear();
            Ok(Redirect::to("/brand?done=logo_saved").into_response())
        }
        Err(e) => {
            let errors = super::pages::field_messages(e)?;
            let r = s
                .store
                .resellers()
                .get(&session.principal, reseller)
                .await?;
            brand_page(s, visit, &r.brand, &r.console_hosts, r.version, errors)
        }
    }
}
