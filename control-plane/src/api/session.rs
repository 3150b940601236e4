//! Console sessions over the API: sign in with e-mail and password, get a
//! `__Host-session` cookie (HttpOnly, Secure, SameSite=Strict) and a CSRF
//! token that every state-changing request must echo in `X-CSRF-Token`.
//! The session then acts exactly like an API token of the login's scope.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use axum::Json as JsonOut;
use pbx_store::logins::Login;
use pbx_store::Millis;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Caller;
use super::input::Json;
use super::problem::{ApiResult, Problem};
use crate::AppState;

pub const COOKIE: &str = "__Host-session";
pub const CSRF_HEADER: &str = "x-csrf-token";

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(sign_in, current, sign_out))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct SignIn {
    pub email: String,
    pub password: String,
    /// The authenticator app's current code, for logins with a second factor.
    #[serde(default)]
    pub code: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SessionInfo {
    pub login: Login,
    /// Echo in `X-CSRF-Token` on POST, PUT and DELETE.
    pub csrf_token: String,
    pub expires_at: Option<Millis>,
}

/// Signs in (no token needed). Wrong e-mail or password, or a disabled login,
/// answer alike (401); repeated failures for one e-mail are slowed (429).
#[utoipa::path(post, path = "/api/v1/session", tag = "session", request_body = SignIn,
    security(()), responses((status = 201, body = SessionInfo, headers(("Set-Cookie" = String)))))]
async fn sign_in(
    State(s): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    Json(form): Json<SignIn>,
) -> ApiResult<Response> {
    let email = pbx_store::logins::normalize_email(&form.email);
    // Per address tried and per source, so that neither guessing one
    // password nor spraying many addresses goes fast.
    let peer = peer.map(|Extension(ConnectInfo(addr))| addr);
    if let Err(retry_after_s) = s.api.admit_source(peer, &headers) {
        return Err(Problem::too_many_requests(retry_after_s));
    }
    if let Err(retry_after_s) = s.api.login_limit.admit(&format!("login:{email}")) {
        return Err(Problem::too_many_requests(retry_after_s));
    }
    let _permit = s
        .api
        .login_gate
        .acquire()
        .await
        .map_err(|e| Problem::internal(&e))?;
    let login = s
        .store
        .logins()
        .authenticate(&email, &form.password)
        .await?
        .ok_or_else(|| {
            Problem::new(StatusCode::UNAUTHORIZED, "sign-in-failed", "Sign-in failed")
                .detail("the e-mail address or the password is wrong")
        })?;
    let Some(principal) = login.principal() else {
        return Err(Problem::forbidden("this login has no scope"));
    };
    if !s.store.api_tokens().tenant_active(&principal.scope).await? {
        return Err(Problem::forbidden("this account is suspended"));
    }
    let session = s
        .store
        .sessions()
        .start_with_code(&login, form.code.as_deref())
        .await?
        .ok_or_else(|| {
            Problem::new(
                StatusCode::UNAUTHORIZED,
                "second-factor",
                "Second factor needed",
            )
            .detail("this login needs the current code of its authenticator app in `code`")
        })?;
    let body = SessionInfo {
        login,
        csrf_token: session.csrf_token,
        expires_at: Some(session.expires_at),
    };
    let mut response = (StatusCode::CREATED, JsonOut(body)).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    set_cookie(&mut response, &session.id);
    Ok(response)
}

/// The signed-in login and its CSRF token.
#[utoipa::path(get, path = "/api/v1/session", tag = "session",
    responses((status = 200, body = SessionInfo)))]
async fn current(
    State(s): State<AppState>,
    Caller(_): Caller,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let Some(id) = cookie(&headers) else {
        return Err(Problem::not_found().detail("this credential is not a session"));
    };
    let session = s
        .store
        .sessions()
        .resume(id)
        .await?
        .ok_or_else(Problem::unauthorized)?;
    let body = SessionInfo {
        login: session.login,
        csrf_token: session.csrf_token,
        expires_at: None,
    };
    let mut response = JsonOut(body).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// Signs out: the session ends and the cookie is cleared.
#[utoipa::path(delete, path = "/api/v1/session", tag = "session", responses((status = 204)))]
async fn sign_out(
    State(s): State<AppState>,
    Caller(_): Caller,
    headers: HeaderMap,
) -> ApiResult<Response> {
    if let Some(id) = cookie(&headers) {
        s.store.sessions().end(id).await?;
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    clear_cookie(&mut response);
    Ok(response)
}

/// Gives the browser a session cookie (the API's sign-in and the console's).
pub fn set_cookie(response: &mut Response, id: &str) {
    let cookie = format!(
        "{COOKIE}={id}; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age={}",
        pbx_store::sessions::ABSOLUTE_MS / 1000
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
}

/// Makes the browser forget its session cookie.
pub fn clear_cookie(response: &mut Response) {
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "__Host-session=; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=0",
        ),
    );
}

/// The session id in the request's cookies, if any.
pub fn cookie(headers: &HeaderMap) -> Option<&str> {
    named_cookie(headers, COOKIE)
}

/// The value of one cookie in the request's Cookie headers.
pub fn named_cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, value)| value)
}
