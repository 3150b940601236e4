//! Who may use the platform: console logins and API tokens. A token's text is
//! shown once, when it is created.

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json as JsonOut;
use pbx_store::api_tokens::{ApiToken, NewToken};
use pbx_store::logins::{Login, NewLogin};
use pbx_store::{LoginId, TokenId};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Caller;
use super::etag::Tagged;
use super::input::{Json, Path, Query};
use super::page::{paginate, Page, PageQuery};
use super::problem::ApiResult;
use super::Created;
use crate::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_logins, create_login))
        .routes(routes!(get_login))
        .routes(routes!(set_login_disabled))
        .routes(routes!(list_tokens, create_token))
        .routes(routes!(get_token, revoke_token))
}

#[utoipa::path(get, path = "/api/v1/logins", tag = "logins", params(PageQuery),
    responses((status = 200, body = Page<Login>)))]
async fn list_logins(
    State(s): State<AppState>,
    Caller(by): Caller,
    Query(q): Query<PageQuery>,
) -> ApiResult<JsonOut<Page<Login>>> {
    let all = s.store.logins().list(&by).await?;
    Ok(JsonOut(paginate(all, |l| l.id.0, &q)?))
}

/// Creates a console login at the caller's level or below.
#[utoipa::path(post, path = "/api/v1/logins", tag = "logins", request_body = NewLogin,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a retried create safe")),
    responses((status = 201, body = Login, headers(("Location" = String), ("ETag" = String)))))]
async fn create_login(
    State(s): State<AppState>,
    Caller(by): Caller,
    Json(new): Json<NewLogin>,
) -> ApiResult<Created<Login>> {
    let l = s.store.logins().create(&by, &new).await?;
    Ok(Created(format!("/api/v1/logins/{}", l.id), l.version, l))
}

#[utoipa::path(get, path = "/api/v1/logins/{id}", tag = "logins",
    params(("id" = i64, Path)), responses((status = 200, body = Login, headers(("ETag" = String)))))]
async fn get_login(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
) -> ApiResult<Tagged<Login>> {
    let l = s.store.logins().get(&by, LoginId(id)).await?;
    Ok(Tagged(StatusCode::OK, l.version, l))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct Disabled {
    pub disabled: bool,
}

/// Disables or re-enables a login (a disabled login cannot sign in).
#[utoipa::path(put, path = "/api/v1/logins/{id}/disabled", tag = "logins", request_body = Disabled,
    params(("id" = i64, Path)), responses((status = 200, body = Login, headers(("ETag" = String)))))]
async fn set_login_disabled(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
    Json(d): Json<Disabled>,
) -> ApiResult<Tagged<Login>> {
    let l = s
        .store
        .logins()
        .set_disabled(&by, LoginId(id), d.disabled)
        .await?;
    Ok(Tagged(StatusCode::OK, l.version, l))
}

#[utoipa::path(get, path = "/api/v1/tokens", tag = "tokens", params(PageQuery),
    responses((status = 200, body = Page<ApiToken>)))]
async fn list_tokens(
    State(s): State<AppState>,
    Caller(by): Caller,
    Query(q): Query<PageQuery>,
) -> ApiResult<JsonOut<Page<ApiToken>>> {
    let all = s.store.api_tokens().list(&by).await?;
    Ok(JsonOut(paginate(all, |t| t.id.0, &q)?))
}

/// A new token and its text, which is shown only here.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedToken {
    pub token: ApiToken,
    /// Send as `Authorization: Bearer <secret>`.
    pub secret: String,
}

/// Creates a token no wider than the caller's own scope.
#[utoipa::path(post, path = "/api/v1/tokens", tag = "tokens", request_body = NewToken,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a retried create safe")),
    responses((status = 201, body = CreatedToken, headers(("Location" = String)))))]
async fn create_token(
    State(s): State<AppState>,
    Caller(by): Caller,
    Json(new): Json<NewToken>,
) -> ApiResult<Response> {
    let (token, secret) = s.store.api_tokens().create(&by, &new).await?;
    let location = format!("/api/v1/tokens/{}", token.id);
    let mut response =
        (StatusCode::CREATED, JsonOut(CreatedToken { token, secret })).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(&location) {
        headers.insert(header::LOCATION, v);
    }
    Ok(response)
}

#[utoipa::path(get, path = "/api/v1/tokens/{id}", tag = "tokens",
    params(("id" = i64, Path)), responses((status = 200, body = ApiToken)))]
async fn get_token(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
) -> ApiResult<JsonOut<ApiToken>> {
    Ok(JsonOut(s.store.api_tokens().get(&by, TokenId(id)).await?))
}

/// Revokes a token at once; it stays listed with its revocation time.
#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "tokens",
    params(("id" = i64, Path)), responses((status = 200, body = ApiToken)))]
async fn revoke_token(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
) -> ApiResult<JsonOut<ApiToken>> {
    Ok(JsonOut(
        s.store.api_tokens().revoke(&by, TokenId(id)).await?,
    ))
}
