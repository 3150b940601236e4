//! Auto-attendant menus (IVR): a greeting that asks callers to key an
//! option, each of `0`–`9`, `*` and `#` leading to one of the customer's
//! destinations, and where a caller goes who keys nothing. The greeting
//! itself is uploaded like other audio (`/ivr-menus/{id}/greeting`, in
//! [`super::uploads`]).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json as JsonOut;
use pbx_store::ivr_menus::{IvrMenu, MenuSettings};
use pbx_store::{CustomerId, IvrMenuId};
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
        .routes(routes!(list_menus, create_menu))
        .routes(routes!(get_menu, update_menu, delete_menu))
}

#[utoipa::path(get, path = "/api/v1/customers/{id}/ivr-menus", tag = "ivr-menus",
    params(("id" = i64, Path), PageQuery), responses((status = 200, body = Page<IvrMenu>)))]
async fn list_menus(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
    Query(q): Query<PageQuery>,
) -> ApiResult<JsonOut<Page<IvrMenu>>> {
    let all = s.store.ivr_menus().list(&by, CustomerId(id)).await?;
    Ok(JsonOut(paginate(all, |m| m.id.0, &q)?))
}

/// Creates a menu: each option's key (`0`–`9`, `*`, `#`) leads to an
/// extension, ring group, conference room, voicemail box or another menu
/// of the customer; a caller who keys nothing for `timeout_s` hears the
/// greeting again, `tries` times in all, then goes to `on_timeout` (or is
/// said goodbye to). With `direct_dial`, callers may key an extension's
/// number. A number leads to the menu once it is its destination.
#[utoipa::path(post, path = "/api/v1/customers/{id}/ivr-menus", tag = "ivr-menus", request_body = MenuSettings,
    params(("id" = i64, Path), ("Idempotency-Key" = Option<String>, Header, description = "Makes a retried create safe")),
    responses((status = 201, body = IvrMenu, headers(("Location" = String), ("ETag" = String)))))]
async fn create_menu(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
    Json(settings): Json<MenuSettings>,
) -> ApiResult<Created<IvrMenu>> {
    let m = s
        .store
        .ivr_menus()
        .create(&by, CustomerId(id), &settings)
        .await?;
    Ok(Created(format!("/api/v1/ivr-menus/{}", m.id), m.version, m))
}

#[utoipa::path(get, path = "/api/v1/ivr-menus/{id}", tag = "ivr-menus",
    params(("id" = i64, Path)), responses((status = 200, body = IvrMenu, headers(("ETag" = String)))))]
async fn get_menu(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
) -> ApiResult<Tagged<IvrMenu>> {
    let m = s.store.ivr_menus().get(&by, IvrMenuId(id)).await?;
    Ok(Tagged(StatusCode::OK, m.version, m))
}

/// Replaces a menu's settings and all its options at once (an option not
/// given is gone). The greeting stays.
#[utoipa::path(put, path = "/api/v1/ivr-menus/{id}", tag = "ivr-menus", request_body = MenuSettings,
    params(("id" = i64, Path), ("If-Match" = String, Header, description = "The ETag the change is based on")),
    responses((status = 200, body = IvrMenu, headers(("ETag" = String)))))]
async fn update_menu(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
    IfMatch(version): IfMatch,
    Json(settings): Json<MenuSettings>,
) -> ApiResult<Tagged<IvrMenu>> {
    let m = s
        .store
        .ivr_menus()
        .update(&by, IvrMenuId(id), version, &settings)
        .await?;
    Ok(Tagged(StatusCode::OK, m.version, m))
}

/// Deletes a menu with its greeting; numbers, rules and options that led
/// to it lead nowhere now; callers in it finish.
#[utoipa::path(delete, path = "/api/v1/ivr-menus/{id}", tag = "ivr-menus",
    params(("id" = i64, Path)), responses((status = 204)))]
async fn delete_menu(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
) -> ApiResult<StatusCode> {
    crate::uploads::delete_menu(&s, &by, IvrMenuId(id)).await?;
    Ok(StatusCode::NO_CONTENT)
}
