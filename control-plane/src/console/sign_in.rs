//! Signing in and out of the console. The same sessions as the API's
//! `/api/v1/session` (cookie `__Host-session`, HttpOnly, Secure,
//! SameSite=Strict), the same throttles, and one more rule: a login signs in
//! only on the host names of its own brand.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Extension;
use pbx_store::sessions::Proof;
use serde::Deserialize;
use serde_json::json;

use super::look::Owner;
use super::visit::{self, belongs, Failure, Form, Nothing, Visit};
use crate::AppState;

#[derive(Deserialize)]
pub struct Shown {
    expired: Option<String>,
}

pub async fn form(
    State(s): State<AppState>,
    visit: Visit,
    Query(q): Query<Shown>,
) -> Result<Response, Failure> {
    if let Some(session) = &visit.session {
        return Ok(Redirect::to(&visit::home_of(&session.principal.scope)).into_response());
    }
    let texts = visit.texts(&s);
    let error = q.expired.map(|_| texts.get("session_expired"));
    show(&s, &visit, StatusCode::OK, error, "")
}

fn show(
    s: &AppState,
    visit: &Visit,
    status: StatusCode,
    error: Option<&str>,
    email: &str,
) -> Result<Response, Failure> {
    let texts = visit.texts(s);
    visit.page_with_status(
        s,
        status,
        "login",
        texts.get("sign_in_title"),
        json!({
            "error": error,
            "email": email,
            "login_text": visit.look.login_text,
            "unconfigured": visit.look.owner == Owner::Nobody,
            "can_reset": s.console.mailer.is_some(),
        }),
    )
}

#[derive(Deserialize)]
pub struct Credentials {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
}

pub async fn submit(
    State(s): State<AppState>,
    visit: Visit,
    headers: HeaderMap,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    form: Result<axum::Form<Credentials>, axum::extract::rejection::FormRejection>,
) -> Result<Response, Failure> {
    let axum::Form(form) = form.map_err(|_| Failure::BadRequest)?;
    let texts = visit.texts(&s);
    let email = pbx_store::logins::normalize_email(&form.email);
    if visit.look.owner == Owner::Nobody || email.len() > 254 || form.password.len() > 256 {
        return show(
            &s,
            &visit,
            StatusCode::UNAUTHORIZED,
            Some(texts.get("sign_in_failed")),
            "",
        );
    }
    let throttled = s
        .api
        .admit_source(peer.map(|Extension(ConnectInfo(addr))| addr), &headers)
        .and_then(|()| s.api.login_limit.admit(&format!("login:{email}")));
    if throttled.is_err() {
        return show(
            &s,
            &visit,
            StatusCode::TOO_MANY_REQUESTS,
            Some(texts.get("sign_in_throttled")),
            &email,
        );
    }
    let login = {
        let _permit = s
            .api
            .login_gate
            .acquire()
            .await
            .map_err(|e| Failure::internal(&e))?;
        s.store
            .logins()
            .authenticate(&email, &form.password)
            .await?
    };
    // A login of another brand fails exactly like a wrong password: the
    // page must not tell which addresses exist elsewhere.
    let Some(login) = login.filter(|l| belongs(visit.look.owner, l)) else {
        return show(
            &s,
            &visit,
            StatusCode::UNAUTHORIZED,
            Some(texts.get("sign_in_failed")),
            &email,
        );
    };
    let Some(principal) = login.principal() else {
        return Err(Failure::Forbidden);
    };
    if !s.store.api_tokens().tenant_active(&principal.scope).await? {
        return show(
            &s,
            &visit,
            StatusCode::FORBIDDEN,
            Some(texts.get("sign_in_suspended")),
            &email,
        );
    }
    let session = s.store.sessions().start(&login).await?;
    tracing::info!(login = %login.id, role = login.role.as_str(), "console sign-in");
    // With a second factor the session waits for its code.
    let next = if session.needs_code {
        "/login/code".to_owned()
    } else {
        visit::home_of(&principal.scope)
    };
    let mut response = Redirect::to(&next).into_response();
    set_session_cookie(&mut response, &session.id);
    Ok(response)
}

pub(super) fn set_session_cookie(response: &mut Response, id: &str) {
    crate::api::session::set_cookie(response, id);
}

pub async fn code_form(
    State(s): State<AppState>,
    visit: Visit,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    let Some((_, csrf)) = waiting(&s, &visit, &headers).await? else {
        return Ok(Redirect::to("/login").into_response());
    };
    code_page(&s, &visit, StatusCode::OK, &csrf, None)
}

fn code_page(
    s: &AppState,
    visit: &Visit,
    status: StatusCode,
    csrf: &str,
    error: Option<&str>,
) -> Result<Response, Failure> {
    let texts = visit.texts(s);
    visit.page_with_status(
        s,
        status,
        "code",
        texts.get("code_title"),
        json!({ "csrf": csrf, "error": error }),
    )
}

/// The session waiting for its second factor, if it is this brand's.
async fn waiting(
    s: &AppState,
    visit: &Visit,
    headers: &HeaderMap,
) -> Result<Option<(pbx_store::logins::Login, String)>, Failure> {
    let Some(id) = crate::api::session::cookie(headers) else {
        return Ok(None);
    };
    Ok(s.store
        .sessions()
        .waiting(id)
        .await?
        .filter(|(login, _)| belongs(visit.look.owner, login)))
}

#[derive(Deserialize)]
pub struct CodeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    code: String,
}

pub async fn code(
    State(s): State<AppState>,
    visit: Visit,
    headers: HeaderMap,
    form: Result<axum::Form<CodeForm>, axum::extract::rejection::FormRejection>,
) -> Result<Response, Failure> {
    let axum::Form(form) = form.map_err(|_| Failure::BadRequest)?;
    let Some((login, csrf)) = waiting(&s, &visit, &headers).await? else {
        return Ok(Redirect::to("/login?expired=1").into_response());
    };
    if !crate::api::auth::constant_time_eq(form.csrf.as_bytes(), csrf.as_bytes()) {
        return Err(Failure::Csrf);
    }
    let id = crate::api::session::cookie(&headers).ok_or(Failure::SignIn)?;
    match s.store.sessions().prove(id, &form.code).await? {
        Proof::Accepted { id } => {
            let principal = login.principal().ok_or(Failure::Forbidden)?;
            tracing::info!(login = %login.id, "console sign-in with second factor");
            let mut response = Redirect::to(&visit::home_of(&principal.scope)).into_response();
            set_session_cookie(&mut response, &id);
            Ok(response)
        }
        Proof::Wrong => {
            let texts = visit.texts(&s);
            code_page(
                &s,
                &visit,
                StatusCode::UNAUTHORIZED,
                &csrf,
                Some(texts.get("code_wrong")),
            )
        }
        Proof::Ended => Ok(Redirect::to("/login?expired=1").into_response()),
    }
}

pub async fn sign_out(
    State(s): State<AppState>,
    headers: axum::http::HeaderMap,
    Form(Nothing {}): Form<Nothing>,
) -> Result<Response, Failure> {
    if let Some(id) = crate::api::session::cookie(&headers) {
        s.store.sessions().end(id).await?;
    }
    let mut response = Redirect::to("/login").into_response();
    crate::api::session::clear_cookie(&mut response);
    Ok(response)
}
