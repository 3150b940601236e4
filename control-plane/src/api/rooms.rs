//! Conference rooms: a number where a customer's phones meet (with a PIN
//! if it has one).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json as JsonOut;
use pbx_store::conference_rooms::{ConferenceRoom, RoomSettings};
use pbx_store::{ConferenceRoomId, CustomerId};
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
        .routes(routes!(list_rooms, create_room))
        .routes(routes!(get_room, update_room, delete_room))
}

#[utoipa::path(get, path = "/api/v1/customers/{id}/conference-rooms", tag = "conference-rooms",
    params(("id" = i64, Path), PageQuery), responses((status = 200, body = Page<ConferenceRoom>)))]
async fn list_rooms(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
    Query(q): Query<PageQuery>,
) -> ApiResult<JsonOut<Page<ConferenceRoom>>> {
    let all = s.store.conference_rooms().list(&by, CustomerId(id)).await?;
    Ok(JsonOut(paginate(all, |r| r.id.0, &q)?))
}

/// Creates a conference room: its number is dialled like an extension's
/// (and must not be one, nor a ring group's); with a `pin`, callers key it
/// in followed by `#` (three tries); `max_participants` are let in at once.
#[utoipa::path(post, path = "/api/v1/customers/{id}/conference-rooms", tag = "conference-rooms", request_body = RoomSettings,
    params(("id" = i64, Path), ("Idempotency-Key" = Option<String>, Header, description = "Makes a retried create safe")),
    responses((status = 201, body = ConferenceRoom, headers(("Location" = String), ("ETag" = String)))))]
async fn create_room(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
    Json(settings): Json<RoomSettings>,
) -> ApiResult<Created<ConferenceRoom>> {
    let r = s
        .store
        .conference_rooms()
        .create(&by, CustomerId(id), &settings)
        .await?;
    Ok(Created(
        format!("/api/v1/conference-rooms/{}", r.id),
        r.version,
        r,
    ))
}

#[utoipa::path(get, path = "/api/v1/conference-rooms/{id}", tag = "conference-rooms",
    params(("id" = i64, Path)), responses((status = 200, body = ConferenceRoom, headers(("ETag" = String)))))]
async fn get_room(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
) -> ApiResult<Tagged<ConferenceRoom>> {
    let r = s
        .store
        .conference_rooms()
        .get(&by, ConferenceRoomId(id))
        .await?;
    Ok(Tagged(StatusCode::OK, r.version, r))
}

#[utoipa::path(put, path = "/api/v1/conference-rooms/{id}", tag = "conference-rooms", request_body = RoomSettings,
    params(("id" = i64, Path), ("If-Match" = String, Header, description = "The ETag the change is based on")),
    responses((status = 200, body = ConferenceRoom, headers(("ETag" = String)))))]
async fn update_room(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
    IfMatch(version): IfMatch,
    Json(settings): Json<RoomSettings>,
) -> ApiResult<Tagged<ConferenceRoom>> {
    let r = s
        .store
        .conference_rooms()
        .update(&by, ConferenceRoomId(id), version, &settings)
        .await?;
    Ok(Tagged(StatusCode::OK, r.version, r))
}

/// Deletes a room; calls in it go on until they hang up.
#[utoipa::path(delete, path = "/api/v1/conference-rooms/{id}", tag = "conference-rooms",
    params(("id" = i64, Path)), responses((status = 204)))]
async fn delete_room(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
) -> ApiResult<StatusCode> {
    s.store
        .conference_rooms()
        .delete(&by, ConferenceRoomId(id))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
