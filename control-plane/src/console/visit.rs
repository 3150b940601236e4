//! One console request as the pages see it: the brand of its host, the
//! signed-in session (if it belongs here), the language; how pages are
//! rendered into the branded layout; and the failures a page can end in.

use std::ops::Deref;
use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Redirect, Response};
use chrono_tz::Tz;
use pbx_store::logins::Role;
use pbx_store::sessions::ActiveSession;
use pbx_store::{Principal, Scope, StoreError};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use super::i18n::{self, Format, Texts};
use super::look::{self, Look, Owner};
use crate::AppState;

/// A console request's context, cheap to clone.
#[derive(Clone)]
pub struct Visit(Arc<Inner>);

pub struct Inner {
    pub look: Arc<Look>,
    /// The session, only if it belongs to this host's brand.
    pub session: Option<ActiveSession>,
    pub lang: &'static str,
    /// Set when the language was picked with `?lang=` on this request.
    pub remember_language: Option<&'static str>,
    /// A known message key from `?done=` after a form was handled.
    pub flash: Option<&'static str>,
    /// Whether the browser sent a session cookie (expired or not).
    pub had_cookie: bool,
    /// The name of the customer a reseller admin is acting as.
    pub impersonating: Option<String>,
    /// `host[:port]` the brand was chosen by: links and the Origin check use it.
    pub authority: Option<String>,
    /// Accounts the signed-in administrator sees protected against a
    /// password guess right now (every page shows a banner while there are).
    pub protected_accounts: i64,
}

impl Deref for Visit {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// Messages a redirect may ask the next page to show.
const FLASHES: &[&str] = &[
    "saved",
    "recording_deleted",
    "greeting_saved",
    "music_saved",
    "extension_created",
    "extension_deleted",
    "device_deleted",
    "customer_created",
    "status_changed",
    "logo_saved",
    "reset_sent",
    "password_changed",
    "second_factor_enabled",
    "second_factor_disabled",
    "ring_group_created",
    "conference_room_created",
    "voicemail_deleted",
    "conference_room_deleted",
    "ivr_menu_created",
    "ivr_menu_deleted",
    "ring_group_deleted",
    "plan_created",
    "trunk_created",
    "trunk_deleted",
    "business_hours_created",
    "business_hours_deleted",
    "ban_lifted",
    "protection_lifted",
    "address_allowed",
    "address_removed",
];

impl Visit {
    /// The context of a request; `with_session` false for what is the same
    /// for everyone on a host (the brand's stylesheet and images).
    pub async fn resolve(
        s: &AppState,
        uri: &Uri,
        headers: &HeaderMap,
        with_session: bool,
    ) -> pbx_store::Result<Visit> {
        let authority = look::request_authority(uri, headers);
        let host = authority.as_deref().and_then(look::host_of);
        let look = s.console.looks.get(&s.store, host.as_deref()).await?;
        let cookie = crate::api::session::cookie(headers);
        let session = match cookie {
            Some(id) if with_session => s.store.sessions().resume(id).await?,
            _ => None,
        }
        .filter(|session| belongs(look.owner, &session.login));
        let query: Vec<(String, String)> = uri
            .query()
            .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        let param = |name: &str| {
            query
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let catalog = &s.console.catalog;
        let picked =
            param("lang").and_then(|l| catalog.languages().find(|t| t.code == l).map(|t| t.code));
        // A language picked on this request beats the saved setting.
        let lang = catalog.choose(
            picked.or(session.as_ref().and_then(|s| s.login.language.as_deref())),
            crate::api::session::named_cookie(headers, "lang"),
            headers
                .get(header::ACCEPT_LANGUAGE)
                .and_then(|v| v.to_str().ok()),
            &look.default_language,
        );
        let flash = param("done").and_then(|d| FLASHES.iter().find(|f| **f == d).copied());
        let impersonating = match session.as_ref().and_then(|s| s.acting_as.map(|c| (s, c))) {
            Some((session, customer)) => Some(
                s.store
                    .customers()
                    .get(&session.principal, customer)
                    .await?
                    .name,
            ),
            None => None,
        };
        let protected_accounts = match session.as_ref().map(|s| &s.principal) {
            Some(p) if !matches!(p.scope, Scope::Extension { .. }) => {
                s.store.account_protections().count_active(p).await?
            }
            _ => 0,
        };
        Ok(Visit(Arc::new(Inner {
            protected_accounts,
            look,
            session,
            lang,
            remember_language: picked,
            flash,
            had_cookie: cookie.is_some(),
            impersonating,
            authority,
        })))
    }

    /// The session, or the sign-in page.
    pub fn signed_in(&self) -> Result<&ActiveSession, Failure> {
        self.session.as_ref().ok_or(Failure::SignIn)
    }

    pub fn principal(&self) -> Result<&Principal, Failure> {
        Ok(&self.signed_in()?.principal)
    }

    pub fn texts<'c>(&self, s: &'c AppState) -> &'c Texts {
        s.console.catalog.texts(self.lang)
    }

    pub fn format(&self) -> Format {
        Format::for_language(self.lang)
    }

    /// Refuses a state-changing request sent from another site: its Origin
    /// (or, failing that, Fetch metadata) must name this host. Together with
    /// SameSite=Strict cookies and per-session CSRF tokens in forms.
    pub fn check_origin(&self, headers: &HeaderMap) -> Result<(), Failure> {
        if headers
            .get("sec-fetch-site")
            .is_some_and(|v| v.as_bytes() == b"cross-site")
        {
            return Err(Failure::Csrf);
        }
        let Some(origin) = headers.get(header::ORIGIN) else {
            return Ok(());
        };
        let origin_authority = origin
            .to_str()
            .ok()
            .and_then(|o| o.parse::<Uri>().ok())
            .and_then(|u| u.authority().map(|a| a.as_str().to_ascii_lowercase()));
        if origin_authority.is_some() && origin_authority == self.authority {
            Ok(())
        } else {
            Err(Failure::Csrf)
        }
    }

    /// Renders `template` with `page` into the layout.
    pub fn page(
        &self,
        s: &AppState,
        template: &str,
        title: &str,
        page: Value,
    ) -> Result<Response, Failure> {
        self.page_with_status(s, StatusCode::OK, template, title, page)
    }

    pub fn page_with_status(
        &self,
        s: &AppState,
        status: StatusCode,
        template: &str,
        title: &str,
        page: Value,
    ) -> Result<Response, Failure> {
        let texts = self.texts(s);
        let mut context = self.context(s, texts);
        context["page"] = page;
        context["title"] = Value::from(title);
        let content = s
            .console
            .render(template, &context)
            .map_err(|e| Failure::internal(&e))?;
        context["content"] = Value::from(content);
        let html = s
            .console
            .render("layout", &context)
            .map_err(|e| Failure::internal(&e))?;
        Ok((status, Html(html)).into_response())
    }

    /// A page with a form: 422 with the form's messages when there are any.
    pub fn form_page(
        &self,
        s: &AppState,
        template: &str,
        title: &str,
        mut page: Value,
        errors: Vec<String>,
    ) -> Result<Response, Failure> {
        let status = if errors.is_empty() {
            StatusCode::OK
        } else {
            StatusCode::UNPROCESSABLE_ENTITY
        };
        page["errors"] = Value::from(errors);
        self.page_with_status(s, status, template, title, page)
    }

    /// Renders a template alone (a fragment a live view swaps in).
    pub fn fragment(&self, s: &AppState, template: &str, data: Value) -> Result<Response, Failure> {
        let texts = self.texts(s);
        let mut context = self.context(s, texts);
        context["live"] = data;
        let html = s
            .console
            .render(template, &context)
            .map_err(|e| Failure::internal(&e))?;
        Ok(Html(html).into_response())
    }

    fn context(&self, s: &AppState, texts: &Texts) -> Value {
        let user = self.session.as_ref().map(|session| {
            let login = &session.login;
            json!({
                "email": login.email,
                "display_name": if login.display_name.is_empty() { &login.email } else { &login.display_name },
                "role_label": texts.get(&format!("role_{}", login.role.as_str())),
            })
        });
        json!({
            "lang": self.lang,
            "t": texts.table,
            "look": *self.look,
            "user": user,
            "csrf": self.session.as_ref().map(|s| s.csrf_token.as_str()),
            "nav": self.nav(texts),
            "flash": self.flash.map(|f| texts.get(f)),
            "languages": i18n::switcher(&s.console.catalog, self.lang),
            "impersonating": self.impersonating,
            "protected_accounts": self.protected_accounts,
        })
    }

    /// The navigation of the signed-in role, with the current page marked
    /// by the caller's path prefix.
    fn nav(&self, texts: &Texts) -> Vec<Value> {
        let Some(session) = &self.session else {
            return Vec::new();
        };
        let items: Vec<(String, &str)> = match session.principal.scope {
            Scope::Customer { customer: c, .. } => vec![
                (format!("/customers/{c}"), "dashboard"),
                (format!("/customers/{c}/extensions"), "extensions"),
                (format!("/customers/{c}/ring-groups"), "ring_groups"),
                (
                    format!("/customers/{c}/conference-rooms"),
                    "conference_rooms",
                ),
                (format!("/customers/{c}/ivr-menus"), "ivr_menus"),
                (format!("/customers/{c}/business-hours"), "business_hours"),
                (format!("/customers/{c}/numbers"), "phone_numbers"),
                (format!("/customers/{c}/calls"), "call_history"),
                (format!("/customers/{c}/recordings"), "call_recording"),
                ("/security".to_owned(), "sip_security"),
            ],
            Scope::Extension {
                customer: c,
                extension: e,
                ..
            } => vec![
                (format!("/extensions/{e}"), "my_extension"),
                (format!("/customers/{c}/calls"), "call_history"),
                (format!("/customers/{c}/recordings"), "call_recording"),
            ],
            Scope::Reseller { .. } => vec![
                ("/customers".to_owned(), "customers"),
                ("/plans".to_owned(), "price_plans"),
                ("/trunks".to_owned(), "trunks"),
                ("/brand".to_owned(), "branding"),
                ("/security".to_owned(), "sip_security"),
                ("/account".to_owned(), "security"),
            ],
            Scope::Operator => vec![
                ("/resellers".to_owned(), "resellers"),
                ("/plans".to_owned(), "price_plans"),
                ("/trunks".to_owned(), "trunks"),
                ("/health".to_owned(), "platform_health"),
                ("/security".to_owned(), "sip_security"),
                ("/account".to_owned(), "security"),
            ],
        };
        items
            .into_iter()
            .map(|(href, key)| json!({ "href": href, "label": texts.get(key) }))
            .collect()
    }

    /// The branded page for a failure.
    pub fn failure_page(&self, s: &AppState, failure: Failure) -> Response {
        let (status, heading, message) = match &failure {
            Failure::SignIn => {
                let to = if self.had_cookie {
                    "/login?expired=1"
                } else {
                    "/login"
                };
                return Redirect::to(to).into_response();
            }
            Failure::NotFound => (StatusCode::NOT_FOUND, "not_found_title", "not_found_text"),
            Failure::Forbidden => (StatusCode::FORBIDDEN, "forbidden_title", "forbidden_text"),
            Failure::BadRequest => (
                StatusCode::BAD_REQUEST,
                "bad_request_title",
                "bad_request_text",
            ),
            Failure::Csrf => (
                StatusCode::FORBIDDEN,
                "bad_request_title",
                "csrf_failed_text",
            ),
            Failure::Conflict => (StatusCode::CONFLICT, "conflict_title", "conflict_text"),
            Failure::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "error_title",
                "error_text",
            ),
        };
        let texts = self.texts(s);
        let reference = match &failure {
            Failure::Internal(r) => Some(r.clone()),
            _ => None,
        };
        let page = json!({
            "heading": texts.get(heading),
            "message": texts.get(message),
            "reference": reference,
        });
        match self.page_with_status(s, status, "error", texts.get(heading), page) {
            Ok(response) => response,
            // The error page itself failed: a bare answer that names no one.
            Err(_) => (status, "error\n").into_response(),
        }
    }

    /// The customer's or reseller's time zone for showing times.
    pub fn time_zone(&self, zone: &str) -> Tz {
        zone.parse().unwrap_or(chrono_tz::UTC)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Visit {
    type Rejection = Failure;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Failure> {
        parts
            .extensions
            .get::<Visit>()
            .cloned()
            .ok_or_else(|| Failure::Internal("no console context".into()))
    }
}

/// A session may be used only on the hosts of its own brand: a reseller's
/// customer never sees another brand, and nobody's session works on a host
/// nobody owns.
pub fn belongs(owner: Owner, login: &pbx_store::logins::Login) -> bool {
    match owner {
        Owner::Operator => login.role == Role::OperatorAdmin,
        Owner::Reseller(r) => login.role != Role::OperatorAdmin && login.reseller_id == Some(r),
        Owner::Nobody => false,
    }
}

/// Where a signed-in session starts: by the scope it acts in.
pub fn home_of(scope: &Scope) -> String {
    match *scope {
        Scope::Customer { customer, .. } => format!("/customers/{customer}"),
        Scope::Extension { extension, .. } => format!("/extensions/{extension}"),
        Scope::Reseller { .. } => "/customers".into(),
        Scope::Operator => "/resellers".into(),
    }
}

/// A form that deletes something: its "yes" box must be ticked.
#[derive(Debug, serde::Deserialize)]
pub struct Confirm {
    confirm: Option<String>,
}

impl Confirm {
    /// The box was ticked (browsers enforce it; a bare POST is a bad request).
    pub fn required(&self) -> Result<(), Failure> {
        match self.confirm {
            Some(_) => Ok(()),
            None => Err(Failure::BadRequest),
        }
    }
}

/// How a console request can fail; rendered as a branded page by the
/// console's middleware, which knows the brand and language.
#[derive(Debug, Clone)]
pub enum Failure {
    /// Not signed in here (or the session ended): go to the sign-in page.
    SignIn,
    NotFound,
    Forbidden,
    BadRequest,
    /// A form without this session's token, or from another site.
    Csrf,
    Conflict,
    /// Logged with this reference, which the page shows.
    Internal(String),
}

impl Failure {
    pub fn internal(error: &dyn std::fmt::Display) -> Failure {
        Failure::Internal(log_internal(error))
    }
}

/// Logs an internal error and returns the reference a page shows for it.
pub fn log_internal(error: &dyn std::fmt::Display) -> String {
    let id = pbx_store::secrets::random_token(8);
    tracing::error!(error = %error, error_id = %id, "console request failed");
    id
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let mut response = StatusCode::INTERNAL_SERVER_ERROR.into_response();
        response.extensions_mut().insert(self);
        response
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Failure {
        match e {
            StoreError::NotFound => Failure::NotFound,
            StoreError::Forbidden(_) => Failure::Forbidden,
            StoreError::Invalid(_) => Failure::BadRequest,
            StoreError::VersionMismatch | StoreError::Conflict(_) | StoreError::InUse(_) => {
                Failure::Conflict
            }
            other => Failure::internal(&other),
        }
    }
}

/// The file field `file` of an upload form whose `csrf` field (which must
/// come first) matched the session's token.
pub async fn uploaded_file(
    visit: &Visit,
    mut upload: axum::extract::Multipart,
    file: &str,
) -> Result<axum::body::Bytes, Failure> {
    let session = visit.signed_in()?;
    let mut csrf_ok = false;
    let mut found = None;
    while let Some(field) = upload.next_field().await.map_err(|_| Failure::BadRequest)? {
        match field.name() {
            Some("csrf") => {
                let value = field.text().await.map_err(|_| Failure::BadRequest)?;
                csrf_ok = crate::api::auth::constant_time_eq(
                    value.as_bytes(),
                    session.csrf_token.as_bytes(),
                );
            }
            Some(name) if csrf_ok && name == file => {
                found = Some(field.bytes().await.map_err(|_| Failure::BadRequest)?);
            }
            _ => return Err(Failure::Csrf),
        }
    }
    if !csrf_ok {
        return Err(Failure::Csrf);
    }
    found.ok_or(Failure::BadRequest)
}

/// A form with nothing but its CSRF token (a button's POST).
#[derive(Deserialize)]
pub struct Nothing {}

/// A submitted form whose `csrf` field matched the session's token. Every
/// console POST takes one (sign-in excepted: it has no session yet).
pub struct Form<T>(pub T);

#[derive(Deserialize)]
struct Token {
    #[serde(default)]
    csrf: String,
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Form<T> {
    type Rejection = Failure;

    async fn from_request(req: Request, state: &S) -> Result<Self, Failure> {
        let (mut parts, body) = req.into_parts();
        let visit = Visit::from_request_parts(&mut parts, state).await?;
        let session = visit.signed_in()?;
        let is_form = parts.headers.get(header::CONTENT_TYPE).is_some_and(|v| {
            v.as_bytes()
                .starts_with(b"application/x-www-form-urlencoded")
        });
        if !is_form {
            return Err(Failure::BadRequest);
        }
        let bytes = axum::body::to_bytes(body, super::MAX_FORM_BODY)
            .await
            .map_err(|_| Failure::BadRequest)?;
        let token: Token = serde_urlencoded::from_bytes(&bytes).map_err(|_| Failure::BadRequest)?;
        if !crate::api::auth::constant_time_eq(token.csrf.as_bytes(), session.csrf_token.as_bytes())
        {
            return Err(Failure::Csrf);
        }
        let value = serde_urlencoded::from_bytes(&bytes).map_err(|_| Failure::BadRequest)?;
        Ok(Form(value))
    }
}
