//! The signed-in admin's own security settings: the optional second factor
//! (TOTP) of reseller and operator admins. The key is shown with a QR code
//! naming the brand of the host it was set up on, never the operator's
//! (unless this is the operator's own console).

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use pbx_store::Scope;
use serde::Deserialize;
use serde_json::json;

use super::visit::{Failure, Form, Visit};
use crate::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/account", get(account))
        .route("/account/totp", post(enable))
        .route("/account/totp/off", post(disable))
        .route("/account/language", post(set_language))
}

/// Reseller and operator admins only, acting as themselves.
fn admin_only(visit: &Visit) -> Result<(), Failure> {
    let session = visit.signed_in()?;
    match session.principal.scope {
        Scope::Reseller { .. } | Scope::Operator if session.acting_as.is_none() => Ok(()),
        _ => Err(Failure::NotFound),
    }
}

async fn account(State(s): State<AppState>, visit: Visit) -> Result<Response, Failure> {
    account_page(&s, &visit, Vec::new(), None).await
}

/// The page; after a wrong code, with the key the app was just set up with.
async fn account_page(
    s: &AppState,
    visit: &Visit,
    errors: Vec<String>,
    key: Option<&str>,
) -> Result<Response, Failure> {
    admin_only(visit)?;
    let session = visit.signed_in()?;
    let enabled = s.store.totp().enabled(session.login.id).await?;
    let texts = visit.texts(s);
    let mut page = json!({ "enabled": enabled });
    if !enabled {
        let secret = key
            .filter(|k| pbx_store::totp::from_base32(k).is_some_and(|b| b.len() >= 16))
            .map_or_else(pbx_store::totp::new_secret, str::to_owned);
        let issuer = if visit.look.product_name.is_empty() {
            "Console".to_owned()
        } else {
            visit.look.product_name.clone()
        };
        let enc = |t: &str| form_urlencoded::byte_serialize(t.as_bytes()).collect::<String>();
        let uri = format!(
            "otpauth://totp/{}:{}?secret={secret}&issuer={}&algorithm=SHA1&digits=6&period=30",
            enc(&issuer),
            enc(&session.login.email),
            enc(&issuer)
        );
        page["secret"] = json!(secret);
        page["qr_svg_base64"] = json!(super::qr_svg_base64(&uri)?);
    }
    let mut response = visit.form_page(s, "account", texts.get("security"), page, errors)?;
    response.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    Ok(response)
}

#[derive(Deserialize)]
struct Enrol {
    #[serde(default)]
    secret: String,
    #[serde(default)]
    code: String,
}

/// After the second factor changed, the login's other sessions end: one
/// that was taken over must not outlive the change.
async fn end_other_sessions(
    s: &AppState,
    visit: &Visit,
    headers: &HeaderMap,
) -> Result<(), Failure> {
    let session = visit.signed_in()?;
    let keep = crate::api::session::cookie(headers).unwrap_or("");
    s.store
        .sessions()
        .end_others(session.login.id, keep)
        .await?;
    Ok(())
}

async fn enable(
    State(s): State<AppState>,
    visit: Visit,
    headers: HeaderMap,
    Form(form): Form<Enrol>,
) -> Result<Response, Failure> {
    admin_only(&visit)?;
    let by = visit.principal()?;
    match s.store.totp().enable(by, &form.secret, &form.code).await {
        Ok(()) => {
            end_other_sessions(&s, &visit, &headers).await?;
            Ok(Redirect::to("/account?done=second_factor_enabled").into_response())
        }
        Err(pbx_store::StoreError::Invalid(_)) => {
            let error = visit.texts(&s).get("code_wrong").to_owned();
            account_page(&s, &visit, vec![error], Some(&form.secret)).await
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
struct Code {
    #[serde(default)]
    code: String,
}

async fn disable(
    State(s): State<AppState>,
    visit: Visit,
    headers: HeaderMap,
    Form(form): Form<Code>,
) -> Result<Response, Failure> {
    admin_only(&visit)?;
    let by = visit.principal()?;
    match s.store.totp().disable(by, &form.code).await {
        Ok(()) => {
            end_other_sessions(&s, &visit, &headers).await?;
            Ok(Redirect::to("/account?done=second_factor_disabled").into_response())
        }
        Err(pbx_store::StoreError::Invalid(_)) => {
            let error = visit.texts(&s).get("code_wrong").to_owned();
            account_page(&s, &visit, vec![error], None).await
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
struct Language {
    #[serde(default)]
    language: String,
}

/// Any signed-in person saves the language they picked at the page foot.
async fn set_language(
    State(s): State<AppState>,
    visit: Visit,
    headers: HeaderMap,
    Form(form): Form<Language>,
) -> Result<Response, Failure> {
    let session = visit.signed_in()?;
    let own = session.login.principal().ok_or(Failure::Forbidden)?;
    let language = s
        .console
        .catalog
        .languages()
        .find(|t| t.code == form.language)
        .map(|t| t.code)
        .ok_or(Failure::BadRequest)?;
    s.store.logins().set_language(&own, Some(language)).await?;
    // Back where the person was, if that was a page of this console.
    let back = headers
        .get(axum::http::header::REFERER)
        .and_then(|r| r.to_str().ok())
        .and_then(|r| r.parse::<axum::http::Uri>().ok())
        .filter(|u| u.authority().map(|a| a.as_str()) == visit.authority.as_deref())
        .map(|u| u.path().to_owned())
        // Only a path of this site: `//host` or `/\host` would leave it.
        .filter(|p| p.starts_with('/') && !p[1..].starts_with(['/', '\\']))
        .unwrap_or_else(|| "/".to_owned());
    Ok(Redirect::to(&back).into_response())
}
