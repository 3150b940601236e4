//! Resellers (the operator's) and customers (the resellers').

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json as JsonOut;
use pbx_store::customers::{Customer, CustomerSettings, NewCustomer};
use pbx_store::resellers::{Reseller, ResellerSettings, Status};
use pbx_store::{CustomerId, PlanId, ResellerId, Scope};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Caller;
use super::etag::{IfMatch, OptionalIfMatch, Tagged};
use super::input::{Json, Path, Query};
use super::page::{paginate, Page, PageQuery};
use super::problem::{ApiResult, Problem};
use super::Created;
use crate::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_resellers, create_reseller))
        .routes(routes!(get_reseller, update_reseller, delete_reseller))
        .routes(routes!(set_reseller_status))
        .routes(routes!(set_wholesale_plan))
        .routes(routes!(list_customers, create_customer))
        .routes(routes!(get_customer, update_customer))
        .routes(routes!(set_customer_status))
}

/// A customer sees its reseller's brand and settings, but not which of the
/// operator's price plans the reseller buys at.
fn as_seen_by(by: &pbx_store::Principal, mut r: Reseller) -> Reseller {
    if matches!(by.scope, Scope::Customer { .. } | Scope::Extension { .. }) {
        r.wholesale_plan_id = None;
    }
    r
}

/// A change of life-cycle state.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct StatusChange {
    pub status: Status,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct PlanChoice {
    /// None removes the plan.
    pub plan_id: Option<PlanId>,
}

/// Resellers the caller can see (the operator: all; a reseller: itself).
#[utoipa::path(get, path = "/api/v1/resellers", tag = "resellers", params(PageQuery),
    responses((status = 200, body = Page<Reseller>)))]
async fn list_resellers(
    State(s): State<AppState>,
    Caller(by): Caller,
    Query(q): Query<PageQuery>,
) -> ApiResult<JsonOut<Page<Reseller>>> {
    let all = s.store.resellers().list(&by).await?;
    let all = all.into_iter().map(|r| as_seen_by(&by, r)).collect();
    Ok(JsonOut(paginate(all, |r| r.id.0, &q)?))
}

/// Creates a reseller (operator only).
#[utoipa::path(post, path = "/api/v1/resellers", tag = "resellers", request_body = ResellerSettings,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a retried create safe")),
    responses((status = 201, body = Reseller, headers(("Location" = String), ("ETag" = String)))))]
async fn create_reseller(
    State(s): State<AppState>,
    Caller(by): Caller,
    Json(new): Json<ResellerSettings>,
) -> ApiResult<Created<Reseller>> {
    let r = s.store.resellers().create(&by, &new).await?;
    Ok(Created(format!("/api/v1/resellers/{}", r.id), r.version, r))
}

#[utoipa::path(get, path = "/api/v1/resellers/{id}", tag = "resellers",
    params(("id" = i64, Path)), responses((status = 200, body = Reseller, headers(("ETag" = String)))))]
async fn get_reseller(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
) -> ApiResult<Tagged<Reseller>> {
    let r = as_seen_by(&by, s.store.resellers().get(&by, ResellerId(id)).await?);
    Ok(Tagged(StatusCode::OK, r.version, r))
}

/// Replaces a reseller's settings and brand (the operator, or the reseller itself).
#[utoipa::path(put, path = "/api/v1/resellers/{id}", tag = "resellers", request_body = ResellerSettings,
    params(("id" = i64, Path), ("If-Match" = String, Header, description = "The ETag the change is based on")),
    responses((status = 200, body = Reseller, headers(("ETag" = String)))))]
async fn update_reseller(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
    IfMatch(version): IfMatch,
    Json(settings): Json<ResellerSettings>,
) -> ApiResult<Tagged<Reseller>> {
    let r = s
        .store
        .resellers()
        .update(&by, ResellerId(id), version, &settings)
        .await?;
    Ok(Tagged(StatusCode::OK, r.version, r))
}

/// Deletes a reseller that has no customers (operator only).
#[utoipa::path(delete, path = "/api/v1/resellers/{id}", tag = "resellers",
    params(("id" = i64, Path)), responses((status = 204)))]
async fn delete_reseller(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
) -> ApiResult<StatusCode> {
    s.store.resellers().delete(&by, ResellerId(id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Suspends, reactivates or closes a reseller (operator only).
#[utoipa::path(put, path = "/api/v1/resellers/{id}/status", tag = "resellers", request_body = StatusChange,
    params(("id" = i64, Path), ("If-Match" = Option<String>, Header, description = "The reseller's ETag")), responses((status = 200, body = Reseller, headers(("ETag" = String)))))]
async fn set_reseller_status(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
    if_match: OptionalIfMatch,
    Json(change): Json<StatusChange>,
) -> ApiResult<Tagged<Reseller>> {
    if if_match.0.is_some() {
        if_match.check(s.store.resellers().get(&by, ResellerId(id)).await?.version)?;
    }
    let r = s
        .store
        .resellers()
        .set_status(&by, ResellerId(id), change.status)
        .await?;
    Ok(Tagged(StatusCode::OK, r.version, r))
}

/// Chooses the operator's price plan the reseller is billed by (operator only).
#[utoipa::path(put, path = "/api/v1/resellers/{id}/wholesale-plan", tag = "resellers", request_body = PlanChoice,
    params(("id" = i64, Path)), responses((status = 200, body = Reseller, headers(("ETag" = String)))))]
async fn set_wholesale_plan(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
    Json(choice): Json<PlanChoice>,
) -> ApiResult<Tagged<Reseller>> {
    let resellers = s.store.resellers();
    resellers
        .set_wholesale_plan(&by, ResellerId(id), choice.plan_id)
        .await?;
    let r = resellers.get(&by, ResellerId(id)).await?;
    Ok(Tagged(StatusCode::OK, r.version, r))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CustomerQuery {
    /// Only this reseller's customers.
    pub reseller_id: Option<i64>,
    /// Items per page, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    #[param(pattern = "^[0-9]{1,18}$")]
    pub cursor: Option<String>,
}

/// Customers the caller can see.
#[utoipa::path(get, path = "/api/v1/customers", tag = "customers", params(CustomerQuery),
    responses((status = 200, body = Page<Customer>)))]
async fn list_customers(
    State(s): State<AppState>,
    Caller(by): Caller,
    Query(q): Query<CustomerQuery>,
) -> ApiResult<JsonOut<Page<Customer>>> {
    let all = s
        .store
        .customers()
        .list(&by, q.reseller_id.map(ResellerId))
        .await?;
    let page = PageQuery {
        limit: q.limit,
        cursor: q.cursor,
    };
    Ok(JsonOut(paginate(all, |c| c.id.0, &page)?))
}

/// A new customer: a reseller's token creates it under its reseller; the
/// operator names the reseller.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct CreateCustomer {
    pub reseller_id: Option<ResellerId>,
    #[serde(flatten)]
    pub customer: NewCustomer,
}

#[utoipa::path(post, path = "/api/v1/customers", tag = "customers", request_body = CreateCustomer,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a retried create safe")),
    responses((status = 201, body = Customer, headers(("Location" = String), ("ETag" = String)))))]
async fn create_customer(
    State(s): State<AppState>,
    Caller(by): Caller,
    Json(new): Json<CreateCustomer>,
) -> ApiResult<Created<Customer>> {
    let reseller = match (new.reseller_id, by.scope) {
        (Some(id), _) => id,
        (None, Scope::Reseller { reseller }) => reseller,
        (None, Scope::Operator) => {
            return Err(Problem::invalid(vec![pbx_store::FieldError::new(
                "reseller_id",
                "is required",
            )]))
        }
        (None, _) => return Err(Problem::forbidden("this needs a reseller's rights")),
    };
    let c = s
        .store
        .customers()
        .create(&by, reseller, &new.customer)
        .await?;
    Ok(Created(format!("/api/v1/customers/{}", c.id), c.version, c))
}

#[utoipa::path(get, path = "/api/v1/customers/{id}", tag = "customers",
    params(("id" = i64, Path)), responses((status = 200, body = Customer, headers(("ETag" = String)))))]
async fn get_customer(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
) -> ApiResult<Tagged<Customer>> {
    let c = s.store.customers().get(&by, CustomerId(id)).await?;
    Ok(Tagged(StatusCode::OK, c.version, c))
}

#[utoipa::path(put, path = "/api/v1/customers/{id}", tag = "customers", request_body = CustomerSettings,
    params(("id" = i64, Path), ("If-Match" = String, Header, description = "The ETag the change is based on")),
    responses((status = 200, body = Customer, headers(("ETag" = String)))))]
async fn update_customer(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
    IfMatch(version): IfMatch,
    Json(settings): Json<CustomerSettings>,
) -> ApiResult<Tagged<Customer>> {
    let c = s
        .store
        .customers()
        .update(&by, CustomerId(id), version, &settings)
        .await?;
    Ok(Tagged(StatusCode::OK, c.version, c))
}

/// Suspends (phones stop working), reactivates or closes a customer (its reseller or the operator).
#[utoipa::path(put, path = "/api/v1/customers/{id}/status", tag = "customers", request_body = StatusChange,
    params(("id" = i64, Path), ("If-Match" = Option<String>, Header, description = "The customer's ETag")), responses((status = 200, body = Customer, headers(("ETag" = String)))))]
async fn set_customer_status(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
    if_match: OptionalIfMatch,
    Json(change): Json<StatusChange>,
) -> ApiResult<Tagged<Customer>> {
    if if_match.0.is_some() {
        if_match.check(s.store.customers().get(&by, CustomerId(id)).await?.version)?;
    }
    let c = s
        .store
        .customers()
        .set_status(&by, CustomerId(id), change.status)
        .await?;
    Ok(Tagged(StatusCode::OK, c.version, c))
}
