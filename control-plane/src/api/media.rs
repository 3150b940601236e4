//! Media anchoring choices: whether a reseller's or a customer's calls go
//! through the platform's media relay (`always`, `nat`, `never`; null: the
//! level above decides, finally the SIP node's `--media-anchor`). The SIP
//! nodes follow a change within moments.

use axum::extract::State;
use axum::Json as JsonOut;
use pbx_store::media::MediaPolicy;
use pbx_store::{CustomerId, ResellerId};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Caller;
use super::input::{Json, Path};
use super::problem::ApiResult;
use crate::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(reseller_policy, set_reseller_policy))
        .routes(routes!(customer_policy, set_customer_policy))
}

/// The reseller's choice for its customers' calls.
#[utoipa::path(get, path = "/api/v1/resellers/{id}/media-anchor", tag = "media",
    params(("id" = i64, Path)), responses((status = 200, body = MediaPolicy)))]
async fn reseller_policy(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
) -> ApiResult<JsonOut<MediaPolicy>> {
    Ok(JsonOut(
        s.store.media_policy().reseller(&by, ResellerId(id)).await?,
    ))
}

/// Sets it (the reseller, the operator).
#[utoipa::path(put, path = "/api/v1/resellers/{id}/media-anchor", tag = "media",
    request_body = MediaPolicy, params(("id" = i64, Path)),
    responses((status = 200, body = MediaPolicy)))]
async fn set_reseller_policy(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
    Json(p): Json<MediaPolicy>,
) -> ApiResult<JsonOut<MediaPolicy>> {
    Ok(JsonOut(
        s.store
            .media_policy()
            .set_reseller(&by, ResellerId(id), p)
            .await?,
    ))
}

/// The customer's own choice (over its reseller's).
#[utoipa::path(get, path = "/api/v1/customers/{id}/media-anchor", tag = "media",
    params(("id" = i64, Path)), responses((status = 200, body = MediaPolicy)))]
async fn customer_policy(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
) -> ApiResult<JsonOut<MediaPolicy>> {
    Ok(JsonOut(
        s.store.media_policy().customer(&by, CustomerId(id)).await?,
    ))
}

/// Sets it (the customer's reseller, the operator).
#[utoipa::path(put, path = "/api/v1/customers/{id}/media-anchor", tag = "media",
    request_body = MediaPolicy, params(("id" = i64, Path)),
    responses((status = 200, body = MediaPolicy)))]
async fn set_customer_policy(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
    Json(p): Json<MediaPolicy>,
) -> ApiResult<JsonOut<MediaPolicy>> {
    Ok(JsonOut(
        s.store
            .media_policy()
            .set_customer(&by, CustomerId(id), p)
            .await?,
    ))
}
