//! Fraud and cost limits: a customer's (set by its reseller or the
//! operator) and a reseller's over all its customers (set by the operator);
//! a customer's toll-fraud alarms, and the destinations each device is
//! known to call.

use axum::extract::State;
use axum::Json as JsonOut;
use pbx_store::fraud_alarms::{ApprovedDestination, FraudAlarms, KnownDestination};
use pbx_store::limits::Limits;
use pbx_store::{CustomerId, DeviceId, ResellerId};
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
        .routes(routes!(fraud_alarms, set_fraud_alarms))
        .routes(routes!(known_destinations, approve_destination))
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

/// The customer's toll-fraud alarms; unset: a device calling a country or a
/// premium-rate number it never called before warns, and so do 10 calls to
/// the public network from one device within 120 seconds. A warning is a
/// `toll_fraud` webhook and a `toll_fraud_suspected` live event; a blocking
/// alarm also refuses the call (403).
#[utoipa::path(get, path = "/api/v1/customers/{id}/fraud-alarms", tag = "customers",
    params(("id" = i64, Path)), responses((status = 200, body = FraudAlarms)))]
async fn fraud_alarms(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
) -> ApiResult<JsonOut<FraudAlarms>> {
    Ok(JsonOut(
        s.store.fraud_alarms().get(&by, CustomerId(id)).await?,
    ))
}

/// Sets the customer's toll-fraud alarms (its reseller or the operator):
/// each of `off`, `warn` or `block`. The after-hours alarm names one of the
/// customer's business-hours rules.
#[utoipa::path(put, path = "/api/v1/customers/{id}/fraud-alarms", tag = "customers",
    request_body = FraudAlarms, params(("id" = i64, Path)),
    responses((status = 200, body = FraudAlarms)))]
async fn set_fraud_alarms(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
    Json(alarms): Json<FraudAlarms>,
) -> ApiResult<JsonOut<FraudAlarms>> {
    Ok(JsonOut(
        s.store
            .fraud_alarms()
            .set(&by, CustomerId(id), &alarms)
            .await?,
    ))
}

/// The destinations the device may call without the new-destination alarm:
/// country calling codes and premium-rate numbers it called before, and
/// those an administrator approved.
#[utoipa::path(get, path = "/api/v1/devices/{id}/known-destinations", tag = "devices",
    params(("id" = i64, Path)), responses((status = 200, body = Vec<KnownDestination>)))]
async fn known_destinations(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
) -> ApiResult<JsonOut<Vec<KnownDestination>>> {
    Ok(JsonOut(
        s.store.fraud_alarms().known(&by, DeviceId(id)).await?,
    ))
}

/// Approves a destination ahead of the device's first call to it (the
/// customer's administrators, its reseller, the operator); answers the
/// device's known destinations.
#[utoipa::path(post, path = "/api/v1/devices/{id}/known-destinations", tag = "devices",
    request_body = ApprovedDestination, params(("id" = i64, Path)),
    responses((status = 200, body = Vec<KnownDestination>)))]
async fn approve_destination(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
    Json(approved): Json<ApprovedDestination>,
) -> ApiResult<JsonOut<Vec<KnownDestination>>> {
    Ok(JsonOut(
        s.store
            .fraud_alarms()
            .approve(&by, DeviceId(id), &approved.destination)
            .await?,
    ))
}
