//! Forgotten passwords: a sign-in page link asks for an e-mail, the mail (in
//! the host's brand) carries a one-hour link, the link sets a new password.
//! Offered only when an SMTP relay is configured. The answer never tells
//! whether an address has an account, and only logins of this host's brand
//! get mail here.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Extension;
use serde::Deserialize;
use serde_json::json;

use super::visit::{belongs, Failure, Visit};
use crate::mail::Letter;
use crate::AppState;

fn mailer(s: &AppState) -> Result<&crate::mail::Mailer, Failure> {
    s.console.mailer.as_ref().ok_or(Failure::NotFound)
}

pub async fn forgot_form(State(s): State<AppState>, visit: Visit) -> Result<Response, Failure> {
    mailer(&s)?;
    let texts = visit.texts(&s);
    visit.page(&s, "forgot", texts.get("forgot_title"), json!({}))
}

#[derive(Deserialize)]
pub struct Forgot {
    #[serde(default)]
    email: String,
}

pub async fn forgot(
    State(s): State<AppState>,
    visit: Visit,
    headers: HeaderMap,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    form: Result<axum::Form<Forgot>, axum::extract::rejection::FormRejection>,
) -> Result<Response, Failure> {
    mailer(&s)?;
    let axum::Form(form) = form.map_err(|_| Failure::BadRequest)?;
    let email = pbx_store::logins::normalize_email(&form.email);
    let throttled = s
        .api
        .admit_source(peer.map(|Extension(ConnectInfo(addr))| addr), &headers)
        .and_then(|()| s.api.login_limit.admit(&format!("reset:{email}")));
    let texts = visit.texts(&s);
    if throttled.is_err() {
        return visit.page_with_status(
            &s,
            StatusCode::TOO_MANY_REQUESTS,
            "forgot",
            texts.get("forgot_title"),
            json!({ "error": texts.get("sign_in_throttled") }),
        );
    }
    if email.len() <= 254 {
        send_link(&s, &visit, email);
    }
    Ok(Redirect::to("/login?done=reset_sent").into_response())
}

/// Makes and mails the link on a task of its own: the answer's timing must
/// not tell whether an address has an account here. The link names the host
/// the brand was chosen by (never another header of the request's).
fn send_link(s: &AppState, visit: &Visit, email: String) {
    let Some(authority) = visit.authority.clone() else {
        return;
    };
    let Some(host) = super::look::host_of(&authority) else {
        return;
    };
    let local = host == "localhost" || host.ends_with(".localhost");
    // Local names have no certificates and keep their port (development);
    // everything else is linked as served to the public: TLS on its usual
    // port, whatever port this request reached the node on.
    let (scheme, authority) = if local {
        ("http", authority)
    } else {
        ("https", host.clone())
    };
    let look = visit.look.clone();
    let state = s.clone();
    tokio::spawn(async move {
        let Some(mailer) = state.console.mailer.as_ref() else {
            return;
        };
        let owner = look.owner;
        let made = state
            .store
            .password_resets()
            .create(&email, |login| belongs(owner, login))
            .await;
        let (login, token) = match made {
            Ok(Some(made)) => made,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "password reset not made");
                return;
            }
        };
        let link = format!("{scheme}://{authority}/password/reset?token={token}");
        let lang = state.console.catalog.choose(
            login.language.as_deref(),
            None,
            None,
            &look.default_language,
        );
        let texts = state.console.catalog.texts(lang);
        let product = look.product_name.clone();
        let sender = look
            .email_sender_name
            .clone()
            .unwrap_or_else(|| product.clone());
        let subject = texts
            .get("mail_reset_subject")
            .replace("{product}", &product);
        let text = texts
            .get("mail_reset_body")
            .replace("{product}", &product)
            .replace("{link}", &link);
        let letter = Letter {
            to: &login.email,
            sender_name: &sender,
            console_host: &host,
            subject: &subject,
            text,
            attachment: None,
        };
        if let Err(e) = mailer.send(letter).await {
            tracing::warn!(error = %e, login = %login.id, "password reset mail not sent");
        }
    });
}

#[derive(Deserialize)]
pub struct TokenQuery {
    #[serde(default)]
    token: String,
}

pub async fn reset_form(
    State(s): State<AppState>,
    visit: Visit,
    Query(q): Query<TokenQuery>,
) -> Result<Response, Failure> {
    mailer(&s)?;
    let valid = s
        .store
        .password_resets()
        .check(&q.token)
        .await?
        .is_some_and(|login| belongs(visit.look.owner, &login));
    reset_page(&s, &visit, &q.token, valid, None)
}

fn reset_page(
    s: &AppState,
    visit: &Visit,
    token: &str,
    valid: bool,
    error: Option<String>,
) -> Result<Response, Failure> {
    let texts = visit.texts(s);
    let status = match (valid, &error) {
        (false, _) => StatusCode::NOT_FOUND,
        (true, Some(_)) => StatusCode::UNPROCESSABLE_ENTITY,
        (true, None) => StatusCode::OK,
    };
    let mut response = visit.page_with_status(
        s,
        status,
        "reset",
        texts.get("reset_title"),
        json!({ "token": token, "valid": valid, "error": error }),
    )?;
    // The token must not leak through the Referer of anything this page loads.
    response.headers_mut().insert(
        header::REFERRER_POLICY,
        header::HeaderValue::from_static("no-referrer"),
    );
    Ok(response)
}

#[derive(Deserialize)]
pub struct NewPassword {
    #[serde(default)]
    token: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    password_again: String,
}

pub async fn reset(
    State(s): State<AppState>,
    visit: Visit,
    form: Result<axum::Form<NewPassword>, axum::extract::rejection::FormRejection>,
) -> Result<Response, Failure> {
    mailer(&s)?;
    let axum::Form(form) = form.map_err(|_| Failure::BadRequest)?;
    let texts = visit.texts(&s);
    let resets = s.store.password_resets();
    let valid = resets
        .check(&form.token)
        .await?
        .is_some_and(|login| belongs(visit.look.owner, &login));
    if !valid {
        return reset_page(&s, &visit, "", false, None);
    }
    if form.password != form.password_again {
        let error = texts.get("passwords_differ").to_owned();
        return reset_page(&s, &visit, &form.token, true, Some(error));
    }
    match resets.redeem(&form.token, &form.password).await {
        Ok(login) => {
            tracing::info!(login = %login.id, "password reset by e-mail link");
            Ok(Redirect::to("/login?done=password_changed").into_response())
        }
        Err(pbx_store::StoreError::Invalid(fields)) => {
            let error = fields
                .into_iter()
                .map(|f| f.message)
                .collect::<Vec<_>>()
                .join("; ");
            reset_page(&s, &visit, &form.token, true, Some(error))
        }
        Err(pbx_store::StoreError::NotFound) => reset_page(&s, &visit, "", false, None),
        Err(e) => Err(e.into()),
    }
}
