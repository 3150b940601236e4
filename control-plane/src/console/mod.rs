//! The branded console: server-rendered pages for operator, reseller and
//! customer logins, over the same store calls (and so the same tenant rules)
//! as the REST API. The brand comes from the request's host name ([`look`]);
//! templates and texts come from the theme crate (`pbx-branding`).
//!
//! Every console request passes [`prepare`]: it finds the brand, the signed-in
//! session (only if that session belongs to this host's brand), the language,
//! and afterwards turns a handler's [`Failure`] into a branded error page and
//! adds the security headers (a CSP without inline script, no framing).

mod account;
mod choices;
mod groups;
mod hours;
pub mod i18n;
pub mod look;
mod menus;
mod operator;
mod pages;
mod password;
mod plans;
mod recordings;
mod reseller;
mod rooms;
mod security;
mod sign_in;
mod trunks;
mod uploads;
mod visit;
mod voicemail;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use handlebars::Handlebars;

use crate::AppState;
pub use visit::{Failure, Visit};

/// Templates and texts, loaded once.
pub struct Console {
    templates: Handlebars<'static>,
    pub catalog: i18n::Catalog,
    /// The address phones send SIP to (host:port), shown with their
    /// credentials; None where phones find it from the SIP domain (DNS).
    pub phone_proxy: Option<String>,
    /// Sends password-reset mail; None when no SMTP relay is configured.
    pub mailer: Option<crate::mail::Mailer>,
    pub looks: look::LookCache,
}

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("console template {0}: {1}")]
    Template(&'static str, Box<handlebars::TemplateError>),
    #[error(transparent)]
    Texts(#[from] i18n::CatalogError),
}

impl Console {
    /// The theme compiled into the binary.
    pub fn new(
        phone_proxy: Option<String>,
        mail: Option<&crate::mail::MailConfig>,
    ) -> Result<Console, SetupError> {
        let mut templates = Handlebars::new();
        templates.set_strict_mode(false);
        for (name, source) in pbx_branding::TEMPLATES {
            templates
                .register_template_string(name, source)
                .map_err(|e| SetupError::Template(name, Box::new(e)))?;
        }
        Ok(Console {
            templates,
            catalog: i18n::Catalog::load(pbx_branding::LOCALES)?,
            phone_proxy,
            mailer: mail.map(crate::mail::Mailer::new),
            looks: look::LookCache::default(),
        })
    }

    pub(crate) fn render(
        &self,
        name: &str,
        context: &serde_json::Value,
    ) -> Result<String, handlebars::RenderError> {
        self.templates.render(name, context)
    }
}

/// All console routes. Paths the console does not know get its branded 404.
pub fn router(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/", get(home))
        .route("/login", get(sign_in::form).post(sign_in::submit))
        .route("/login/code", get(sign_in::code_form).post(sign_in::code))
        .route("/logout", post(sign_in::sign_out))
        .route(
            "/password/forgot",
            get(password::forgot_form).post(password::forgot),
        )
        .route(
            "/password/reset",
            get(password::reset_form).post(password::reset),
        )
        .route("/assets/{name}", get(static_asset))
        .route("/brand/theme.css", get(look::theme_css))
        .route("/brand/logo", get(look::logo))
        .route("/brand/favicon", get(look::favicon))
        .route("/favicon.ico", get(look::favicon))
        .merge(pages::routes())
        .merge(reseller::routes())
        .merge(operator::routes())
        .merge(account::routes())
        .merge(groups::routes())
        .merge(rooms::routes())
        .merge(menus::routes())
        .merge(voicemail::routes())
        .merge(recordings::routes())
        .merge(uploads::routes())
        .merge(hours::routes())
        .merge(plans::routes())
        .merge(trunks::routes())
        .merge(security::routes())
        .fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_FORM_BODY))
        .layer(axum::middleware::from_fn_with_state(state.clone(), prepare))
}

/// Largest form or upload accepted (a logo is at most 512 KiB).
pub const MAX_FORM_BODY: usize = 768 * 1024;

async fn not_found() -> Failure {
    Failure::NotFound
}

/// Where each role starts.
async fn home(visit: Visit) -> Result<Redirect, Failure> {
    let session = visit.signed_in()?;
    Ok(Redirect::to(&visit::home_of(&session.principal.scope)))
}

async fn static_asset(axum::extract::Path(name): axum::extract::Path<String>) -> Response {
    let Some(asset) = pbx_branding::ASSETS.iter().find(|a| a.name == name) else {
        return (StatusCode::NOT_FOUND, "not found\n").into_response();
    };
    (
        [
            (header::CONTENT_TYPE, asset.content_type),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        asset.body,
    )
        .into_response()
}

/// A QR code of `text` as base64 SVG, for an `<img src="data:…">`.
pub(crate) fn qr_svg_base64(text: &str) -> Result<String, Failure> {
    use base64::Engine;
    let qr = qrcode::QrCode::new(text.as_bytes()).map_err(|e| Failure::internal(&e))?;
    let svg = qr
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(240, 240)
        .build();
    Ok(base64::engine::general_purpose::STANDARD.encode(svg))
}

/// The policy for every console response: scripts only from our own files,
/// nothing inline, no framing, forms only to ourselves.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' data: blob:; media-src 'self'; connect-src 'self'; form-action 'self'; \
    frame-ancestors 'none'; base-uri 'none'";

/// Finds brand, session and language; renders failures as branded pages;
/// adds the security headers.
async fn prepare(State(s): State<AppState>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path();
    // The theme's files are the same for every host and person: no brand,
    // no session to look up.
    let theme_file = path
        .strip_prefix("/assets/")
        .is_some_and(|name| pbx_branding::ASSETS.iter().any(|a| a.name == name));
    if theme_file {
        return secure(next.run(req).await, false);
    }
    let brand_file = matches!(
        path,
        "/brand/theme.css" | "/brand/logo" | "/brand/favicon" | "/favicon.ico"
    );
    let personal = !(brand_file && matches!(*req.method(), Method::GET | Method::HEAD));
    let visit = match Visit::resolve(&s, req.uri(), req.headers(), personal).await {
        Ok(visit) => visit,
        Err(e) => {
            // Without the database there is no brand to show: a bare page
            // naming no one is the only safe answer.
            let reference = visit::log_internal(&e);
            return secure(
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                    format!("Service unavailable ({reference})\n"),
                )
                    .into_response(),
                true,
            );
        }
    };
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        if let Err(failure) = visit.check_origin(req.headers()) {
            return secure(visit.failure_page(&s, failure), true);
        }
    }
    req.extensions_mut().insert(visit.clone());
    req.extensions_mut().insert(visit.look.clone());
    let mut response = next.run(req).await;
    if let Some(failure) = response.extensions_mut().remove::<Failure>() {
        response = visit.failure_page(&s, failure);
    }
    // Everything made for a person (pages, fragments, exports, redirects)
    // stays out of caches; only the brand's files are shared.
    let mut response = secure(response, personal);
    // A language picked from the switcher is remembered by the browser.
    if let Some(lang) = visit.remember_language {
        if let Ok(v) = HeaderValue::from_str(&format!(
            "lang={lang}; Path=/; Secure; SameSite=Lax; Max-Age=31536000"
        )) {
            response.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    response
}

fn secure(mut response: Response, private: bool) -> Response {
    let h = response.headers_mut();
    h.entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(CSP));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.entry(header::REFERRER_POLICY)
        .or_insert(HeaderValue::from_static("same-origin"));
    if private {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}
