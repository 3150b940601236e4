//! Business hours: a customer's rule for where calls go while open and
//! while closed, in the customer's time zone.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json as JsonOut;
use pbx_store::business_hours::{BusinessHours, BusinessHoursSettings};
use pbx_store::numbers::Destination;
use pbx_store::{BusinessHoursId, CustomerId, Millis};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Caller;
use super::etag::{IfMatch, Tagged};
use super::input::{Json, Path, Query};
use super::page::{paginate, Page, PageQuery};
use super::problem::ApiResult;
use super::Created;
use crate::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_rules, create_rule))
        .routes(routes!(get_rule, update_rule, delete_rule))
        .routes(routes!(rule_state))
}

#[utoipa::path(get, path = "/api/v1/customers/{id}/business-hours", tag = "business-hours",
    params(("id" = i64, Path), PageQuery), responses((status = 200, body = Page<BusinessHours>)))]
async fn list_rules(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
    Query(q): Query<PageQuery>,
) -> ApiResult<JsonOut<Page<BusinessHours>>> {
    let all = s.store.business_hours().list(&by, CustomerId(id)).await?;
    Ok(JsonOut(paginate(all, |r| r.id.0, &q)?))
}

/// Creates a rule: `weekly` opening intervals (`day` 1 = Monday … 7,
/// `open`/`close` as `HH:MM`, `24:00` for midnight), `holidays` closed all
/// day (`YYYY-MM-DD`), an `open_destination` and a `closed_destination`
/// (an extension or ring group of the customer).
#[utoipa::path(post, path = "/api/v1/customers/{id}/business-hours", tag = "business-hours", request_body = BusinessHoursSettings,
    params(("id" = i64, Path), ("Idempotency-Key" = Option<String>, Header, description = "Makes a retried create safe")),
    responses((status = 201, body = BusinessHours, headers(("Location" = String), ("ETag" = String)))))]
async fn create_rule(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
    Json(settings): Json<BusinessHoursSettings>,
) -> ApiResult<Created<BusinessHours>> {
    let r = s
        .store
        .business_hours()
        .create(&by, CustomerId(id), &settings)
        .await?;
    Ok(Created(
        format!("/api/v1/business-hours/{}", r.id),
        r.version,
        r,
    ))
}

#[utoipa::path(get, path = "/api/v1/business-hours/{id}", tag = "business-hours",
    params(("id" = i64, Path)), responses((status = 200, body = BusinessHours, headers(("ETag" = String)))))]
async fn get_rule(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
) -> ApiResult<Tagged<BusinessHours>> {
    let r = s
        .store
        .business_hours()
        .get(&by, BusinessHoursId(id))
        .await?;
    Ok(Tagged(StatusCode::OK, r.version, r))
}

#[utoipa::path(put, path = "/api/v1/business-hours/{id}", tag = "business-hours", request_body = BusinessHoursSettings,
    params(("id" = i64, Path), ("If-Match" = String, Header, description = "The ETag the change is based on")),
    responses((status = 200, body = BusinessHours, headers(("ETag" = String)))))]
async fn update_rule(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
    IfMatch(version): IfMatch,
    Json(settings): Json<BusinessHoursSettings>,
) -> ApiResult<Tagged<BusinessHours>> {
    let r = s
        .store
        .business_hours()
        .update(&by, BusinessHoursId(id), version, &settings)
        .await?;
    Ok(Tagged(StatusCode::OK, r.version, r))
}

#[utoipa::path(delete, path = "/api/v1/business-hours/{id}", tag = "business-hours",
    params(("id" = i64, Path)), responses((status = 204)))]
async fn delete_rule(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
) -> ApiResult<StatusCode> {
    s.store
        .business_hours()
        .delete(&by, BusinessHoursId(id))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct StateQuery {
    /// The moment to evaluate, milliseconds since 1970 (UTC); default now.
    pub at: Option<Millis>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RuleState {
    pub at: Millis,
    pub open: bool,
    /// Where a call would go at that moment.
    pub destination: Option<Destination>,
}

/// Whether the rule is open at a moment (now by default) and where a call
/// would go: to check a rule before relying on it.
#[utoipa::path(get, path = "/api/v1/business-hours/{id}/state", tag = "business-hours",
    params(("id" = i64, Path), StateQuery), responses((status = 200, body = RuleState)))]
async fn rule_state(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
    Query(q): Query<StateQuery>,
) -> ApiResult<JsonOut<RuleState>> {
    let at = q.at.unwrap_or_else(pbx_store::now_ms);
    let (open, destination) = s
        .store
        .business_hours()
        .state_at(&by, BusinessHoursId(id), at)
        .await?;
    Ok(JsonOut(RuleState {
        at,
        open,
        destination,
    }))
}
