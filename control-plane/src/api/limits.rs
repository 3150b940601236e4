//! Fraud and cost limits: a customer's (set by its reseller or the
//! operator) and a reseller's over all its customers (set by the operator).

use axum::extract::State;
use axum::Json as JsonOut;
use pbx_store::limits::Limits;
use pbx_store::{CustomerId, ResellerId};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Caller;
use super::input::{Json, Path};
use super::problem::ApiResult;
use crate::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(customer_limits, set_customer_limits))
        .routes(routes!(reseller_limits, set_reseller_limits))
}

/// The customer's limits; unset: no limits, international and premium-rate
/// destinations off. Emergency calls are never limited.
#[utoipa::path(get, path = "/api/v1/customers/{id}/limits", tag = "customers",
    params(("id" = i64, Path)), responses((status = 200, body = Limits)))]
async fn customer_limits(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
) -> ApiResult<JsonOut<Limits>> {
    Ok(JsonOut(
        s.store
            .call_limits()
            .for_customer(&by, CustomerId(id))
            .await?,
    ))
}

/// Sets the customer's limits (its reseller or the operator): outbound
/// calls at once, call attempts per minute, spend per day at retail prices
/// (millionths of the currency), and whether international and premium-rate
/// destinations are allowed.
#[utoipa::path(put, path = "/api/v1/customers/{id}/limits", tag = "customers", request_body = Limits,
    params(("id" = i64, Path)), responses((status = 200, body = Limits)))]
async fn set_customer_limits(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
    Json(limits): Json<Limits>,
) -> ApiResult<JsonOut<Limits>> {
    Ok(JsonOut(
        s.store
            .call_limits()
            .set_for_customer(&by, CustomerId(id), &limits)
            .await?,
    ))
}

/// The reseller's limits over all its customers together.
#[utoipa::path(get, path = "/api/v1/resellers/{id}/limits", tag = "resellers",
    params(("id" = i64, Path)), responses((status = 200, body = Limits)))]
async fn reseller_limits(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
) -> ApiResult<JsonOut<Limits>> {
    Ok(JsonOut(
        s.store
            .call_limits()
            .for_reseller(&by, ResellerId(id))
            .await?,
    ))
}

/// Sets the reseller's limits (the operator only).
#[utoipa::path(put, path = "/api/v1/resellers/{id}/limits", tag = "resellers", request_body = Limits,
    params(("id" = i64, Path)), responses((status = 200, body = Limits)))]
async fn set_reseller_limits(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
    Json(limits): Json<Limits>,
) -> ApiResult<JsonOut<Limits>> {
    Ok(JsonOut(
        s.store
            .call_limits()
            .set_for_reseller(&by, ResellerId(id), &limits)
            .await?,
    ))
}
