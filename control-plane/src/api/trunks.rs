//! Carrier trunks and their outbound routes: the operator's (for every
//! reseller) and each reseller's own. Customers have none.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json as JsonOut;
use pbx_store::trunks::{Route, Trunk, TrunkSettings};
use pbx_store::{ResellerId, TrunkId};
use serde::Deserialize;
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
        .routes(routes!(list_trunks, create_trunk))
        .routes(routes!(get_trunk, update_trunk, delete_trunk))
        .routes(routes!(get_routes, set_routes))
        .routes(routes!(unrouted_calls))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UnroutedQuery {
    /// Most calls returned (1 to 1000; 100 if absent).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
}

/// Calls carriers delivered for numbers nobody holds (answered 404), the
/// latest first: the operator's only (they are no customer's), kept 90 days.
#[utoipa::path(get, path = "/api/v1/unrouted-calls", tag = "trunks", params(UnroutedQuery),
    responses((status = 200, body = Vec<pbx_store::unrouted::UnroutedCall>)))]
async fn unrouted_calls(
    State(s): State<AppState>,
    Caller(by): Caller,
    Query(q): Query<UnroutedQuery>,
) -> ApiResult<JsonOut<Vec<pbx_store::unrouted::UnroutedCall>>> {
    if q.limit.is_some_and(|l| !(1..=1000).contains(&l)) {
        return Err(pbx_store::StoreError::invalid("limit", "must be 1 to 1000").into());
    }
    Ok(JsonOut(
        s.store
            .unrouted_calls()
            .list(&by, q.limit.unwrap_or(100))
            .await?,
    ))
}

#[utoipa::path(get, path = "/api/v1/trunks", tag = "trunks", params(PageQuery),
    responses((status = 200, body = Page<Trunk>)))]
async fn list_trunks(
    State(s): State<AppState>,
    Caller(by): Caller,
    Query(q): Query<PageQuery>,
) -> ApiResult<JsonOut<Page<Trunk>>> {
    let all = s.store.trunks().list(&by).await?;
    Ok(JsonOut(paginate(all, |t| t.id.0, &q)?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct OwnerQuery {
    /// The reseller whose own trunk this is; absent: the operator's trunk
    /// for every reseller (operator only).
    pub reseller_id: Option<i64>,
}

/// Creates a trunk. With `auth_mode` `register` the platform registers to
/// the carrier with `username` and `secret` (write-only); with `ip` the
/// carrier knows the platform's address and inbound calls are accepted from
/// `inbound_sources`.
#[utoipa::path(post, path = "/api/v1/trunks", tag = "trunks", request_body = TrunkSettings,
    params(OwnerQuery, ("Idempotency-Key" = Option<String>, Header, description = "Makes a retried create safe")),
    responses((status = 201, body = Trunk, headers(("Location" = String), ("ETag" = String)))))]
async fn create_trunk(
    State(s): State<AppState>,
    Caller(by): Caller,
    Query(owner): Query<OwnerQuery>,
    Json(settings): Json<TrunkSettings>,
) -> ApiResult<Created<Trunk>> {
    let owner = owner.reseller_id.map(ResellerId);
    let t = s.store.trunks().create(&by, owner, &settings).await?;
    Ok(Created(format!("/api/v1/trunks/{}", t.id), t.version, t))
}

#[utoipa::path(get, path = "/api/v1/trunks/{id}", tag = "trunks",
    params(("id" = i64, Path)), responses((status = 200, body = Trunk, headers(("ETag" = String)))))]
async fn get_trunk(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
) -> ApiResult<Tagged<Trunk>> {
    let t = s.store.trunks().get(&by, TrunkId(id)).await?;
    Ok(Tagged(StatusCode::OK, t.version, t))
}

/// Replaces a trunk's settings; a `secret` left out keeps the current one.
#[utoipa::path(put, path = "/api/v1/trunks/{id}", tag = "trunks", request_body = TrunkSettings,
    params(("id" = i64, Path), ("If-Match" = String, Header, description = "The ETag the change is based on")),
    responses((status = 200, body = Trunk, headers(("ETag" = String)))))]
async fn update_trunk(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
    IfMatch(version): IfMatch,
    Json(settings): Json<TrunkSettings>,
) -> ApiResult<Tagged<Trunk>> {
    let t = s
        .store
        .trunks()
        .update(&by, TrunkId(id), version, &settings)
        .await?;
    Ok(Tagged(StatusCode::OK, t.version, t))
}

#[utoipa::path(delete, path = "/api/v1/trunks/{id}", tag = "trunks",
    params(("id" = i64, Path)), responses((status = 204)))]
async fn delete_trunk(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
) -> ApiResult<StatusCode> {
    s.store.trunks().delete(&by, TrunkId(id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The destinations the trunk carries: prefixes of E.164 numbers (no `+`;
/// empty for every destination), longest first.
#[utoipa::path(get, path = "/api/v1/trunks/{id}/routes", tag = "trunks",
    params(("id" = i64, Path)), responses((status = 200, body = [Route])))]
async fn get_routes(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
) -> ApiResult<JsonOut<Vec<Route>>> {
    Ok(JsonOut(s.store.trunks().routes(&by, TrunkId(id)).await?))
}

/// Replaces the destinations the trunk carries. A call goes to the trunks
/// whose routes match its number, longest prefix first, then by route and
/// trunk priority; a trunk that times out or fails passes it to the next.
#[utoipa::path(put, path = "/api/v1/trunks/{id}/routes", tag = "trunks", request_body = [Route],
    params(("id" = i64, Path)), responses((status = 200, body = [Route])))]
async fn set_routes(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
    Json(routes): Json<Vec<Route>>,
) -> ApiResult<JsonOut<Vec<Route>>> {
    Ok(JsonOut(
        s.store
            .trunks()
            .set_routes(&by, TrunkId(id), &routes)
            .await?,
    ))
}
