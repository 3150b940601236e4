//! Ring groups: a number that rings several of a customer's extensions.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json as JsonOut;
use pbx_store::ring_groups::{RingGroup, RingGroupSettings};
use pbx_store::{CustomerId, RingGroupId};
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
        .routes(routes!(list_groups, create_group))
        .routes(routes!(get_group, update_group, delete_group))
}

#[utoipa::path(get, path = "/api/v1/customers/{id}/ring-groups", tag = "ring-groups",
    params(("id" = i64, Path), PageQuery), responses((status = 200, body = Page<RingGroup>)))]
async fn list_groups(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
    Query(q): Query<PageQuery>,
) -> ApiResult<JsonOut<Page<RingGroup>>> {
    let all = s.store.ring_groups().list(&by, CustomerId(id)).await?;
    Ok(JsonOut(paginate(all, |g| g.id.0, &q)?))
}

/// Creates a ring group: `simultaneous` rings every member at once,
/// `sequential` one after another for `member_timeout_s` each; members on
/// do-not-disturb are passed over; `no_answer_extension_id` rings last.
#[utoipa::path(post, path = "/api/v1/customers/{id}/ring-groups", tag = "ring-groups", request_body = RingGroupSettings,
    params(("id" = i64, Path), ("Idempotency-Key" = Option<String>, Header, description = "Makes a retried create safe")),
    responses((status = 201, body = RingGroup, headers(("Location" = String), ("ETag" = String)))))]
async fn create_group(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
    Json(settings): Json<RingGroupSettings>,
) -> ApiResult<Created<RingGroup>> {
    let g = s
        .store
        .ring_groups()
        .create(&by, CustomerId(id), &settings)
        .await?;
    Ok(Created(
        format!("/api/v1/ring-groups/{}", g.id),
        g.version,
        g,
    ))
}

#[utoipa::path(get, path = "/api/v1/ring-groups/{id}", tag = "ring-groups",
    params(("id" = i64, Path)), responses((status = 200, body = RingGroup, headers(("ETag" = String)))))]
async fn get_group(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
) -> ApiResult<Tagged<RingGroup>> {
    let g = s.store.ring_groups().get(&by, RingGroupId(id)).await?;
    Ok(Tagged(StatusCode::OK, g.version, g))
}

#[utoipa::path(put, path = "/api/v1/ring-groups/{id}", tag = "ring-groups", request_body = RingGroupSettings,
    params(("id" = i64, Path), ("If-Match" = String, Header, description = "The ETag the change is based on")),
    responses((status = 200, body = RingGroup, headers(("ETag" = String)))))]
async fn update_group(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
    IfMatch(version): IfMatch,
    Json(settings): Json<RingGroupSettings>,
) -> ApiResult<Tagged<RingGroup>> {
    let g = s
        .store
        .ring_groups()
        .update(&by, RingGroupId(id), version, &settings)
        .await?;
    Ok(Tagged(StatusCode::OK, g.version, g))
}

/// Deletes a ring group; numbers routed to it lose their destination.
#[utoipa::path(delete, path = "/api/v1/ring-groups/{id}", tag = "ring-groups",
    params(("id" = i64, Path)), responses((status = 204)))]
async fn delete_group(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
) -> ApiResult<StatusCode> {
    s.store.ring_groups().delete(&by, RingGroupId(id)).await?;
    Ok(StatusCode::NO_CONTENT)
}
