//! The brand a request is shown in, chosen from its host name: a reseller's
//! console host shows that reseller's brand, the operator's host the
//! operator's, and any other host a neutral look with no name at all. Also
//! serves the brand's stylesheet of colours, logo and favicon.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use pbx_store::operator::HostOwner;
use pbx_store::resellers::{AssetKind, Brand};
use pbx_store::{Principal, ResellerId, Store};
use serde::Serialize;
use std::sync::Arc;

use crate::AppState;

/// Whose console a host shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    Operator,
    Reseller(ResellerId),
    /// A host nobody has claimed: nothing can be signed in to here.
    Nobody,
}

/// What a page needs of its brand.
#[derive(Debug, Clone, Serialize)]
pub struct Look {
    #[serde(skip)]
    pub owner: Owner,
    pub product_name: String,
    pub primary_color: String,
    pub accent_color: String,
    pub support_phone: Option<String>,
    pub support_email: Option<String>,
    pub support_url: Option<String>,
    pub login_text: Option<String>,
    /// Changes with every edit of the brand: cache-busts its stylesheet and images.
    pub version: i64,
    #[serde(skip)]
    pub email_sender_name: Option<String>,
    #[serde(skip)]
    pub default_language: String,
    #[serde(skip)]
    pub time_zone: String,
}

impl Look {
    fn plain(owner: Owner, product_name: String) -> Look {
        let brand = Brand::named(&product_name);
        Look {
            owner,
            product_name,
            primary_color: brand.primary_color,
            accent_color: brand.accent_color,
            support_phone: None,
            support_email: None,
            support_url: None,
            login_text: None,
            email_sender_name: None,
            version: 0,
            default_language: "en".into(),
            time_zone: "UTC".into(),
        }
    }
}

/// The authority (`host[:port]`) a request was sent to, lower-case: the
/// request line's if it names one, else the Host header. Only characters a
/// host name, an IP literal and a port are made of; anything else is no host.
pub fn request_authority(uri: &Uri, headers: &HeaderMap) -> Option<String> {
    let raw = match uri.authority() {
        Some(a) => a.as_str().to_owned(),
        None => headers.get(header::HOST)?.to_str().ok()?.to_owned(),
    };
    let raw = raw.rsplit('@').next().unwrap_or("").to_ascii_lowercase();
    let clean = !raw.is_empty()
        && raw.len() <= 260
        && raw
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c));
    clean.then_some(raw)
}

/// The host of an authority, without its port or a trailing dot.
pub fn host_of(authority: &str) -> Option<String> {
    let host = if authority.starts_with('[') {
        authority.split_inclusive(']').next().unwrap_or("")
    } else {
        authority.rsplit_once(':').map_or(authority, |(h, _)| h)
    };
    let host = host.trim_end_matches('.');
    (!host.is_empty() && host.len() <= 253).then(|| host.to_owned())
}

/// The host a request was sent to, lower-case and without its port.
pub fn request_host(uri: &Uri, headers: &HeaderMap) -> Option<String> {
    host_of(&request_authority(uri, headers)?)
}

/// The look for a host. Errors of the database are passed on: a page must
/// not fall back to some other brand because the database was away.
pub async fn for_host(store: &Store, host: Option<&str>) -> pbx_store::Result<Look> {
    let Some(host) = host else {
        return Ok(Look::plain(Owner::Nobody, String::new()));
    };
    let system = Principal::system();
    match store.console_host_owner(host).await? {
        None => Ok(Look::plain(Owner::Nobody, String::new())),
        Some(HostOwner::Operator) => {
            let name = store
                .operator()
                .get(&system)
                .await?
                .map(|o| o.name)
                .unwrap_or_default();
            Ok(Look::plain(Owner::Operator, name))
        }
        Some(HostOwner::Reseller(id)) => {
            let reseller = store.resellers().get(&system, id).await?;
            let b = reseller.brand;
            Ok(Look {
                owner: Owner::Reseller(id),
                product_name: b.product_name,
                primary_color: b.primary_color,
                accent_color: b.accent_color,
                support_phone: b.support_phone,
                support_email: b.support_email,
                support_url: b.support_url,
                login_text: b.login_text,
                email_sender_name: b.email_sender_name,
                version: reseller.version,
                default_language: reseller.default_language,
                time_zone: reseller.time_zone,
            })
        }
    }
}

/// Looks by host name, so that a page does not ask the database whose host
/// it is on every request. Entries live [`LOOK_TTL`] at most and are dropped
/// at once when a brand or console host changes ([`follow_changes`], and the
/// brand editor itself on this node).
#[derive(Debug, Default)]
pub struct LookCache {
    entries: std::sync::Mutex<std::collections::HashMap<String, (Arc<Look>, std::time::Instant)>>,
    /// Bumped by every clear: a look read before a clear is not kept after it.
    generation: std::sync::atomic::AtomicU64,
}

/// How long a look is kept without a change being heard of (the bound for
/// a node that missed one).
pub const LOOK_TTL: std::time::Duration = std::time::Duration::from_secs(30);
/// Hosts remembered at most (every request may name a host of its own).
const MAX_LOOKS: usize = 10_000;

impl LookCache {
    pub async fn get(&self, store: &Store, host: Option<&str>) -> pbx_store::Result<Arc<Look>> {
        use std::sync::atomic::Ordering;
        let key = host.unwrap_or("").to_owned();
        if let Some((look, at)) = self.lock().get(&key) {
            if at.elapsed() < LOOK_TTL {
                return Ok(look.clone());
            }
        }
        let generation = self.generation.load(Ordering::SeqCst);
        let look = Arc::new(for_host(store, host).await?);
        // Hosts nobody owns are not kept: made-up names must not crowd out
        // the real ones.
        if look.owner != Owner::Nobody {
            let mut entries = self.lock();
            if self.generation.load(Ordering::SeqCst) == generation {
                if entries.len() >= MAX_LOOKS {
                    entries.clear();
                }
                entries.insert(key, (look.clone(), std::time::Instant::now()));
            }
        }
        Ok(look)
    }

    pub fn clear(&self) {
        let mut entries = self.lock();
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        entries.clear();
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, (Arc<Look>, std::time::Instant)>>
    {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Drops cached looks whenever a reseller (brand, console hosts) or the
/// operator changes, on this node or another. Runs until the feed closes.
pub async fn follow_changes(store: Store, console: Arc<super::Console>) {
    use pbx_store::changes::Change;
    use tokio::sync::broadcast::error::RecvError;
    let mut changes = store.changes().subscribe();
    loop {
        match changes.recv().await {
            Ok(Change::Reseller { .. } | Change::Resync) | Err(RecvError::Lagged(_)) => {
                console.looks.clear()
            }
            Ok(_) => {}
            Err(RecvError::Closed) => return,
        }
    }
}

/// The brand's colours as CSS custom properties. Colours are validated as
/// `#rrggbb` when stored, so nothing else can end up in the stylesheet.
pub async fn theme_css(Extension(look): Extension<Arc<Look>>) -> Response {
    let (primary, accent) = (
        safe_color(&look.primary_color),
        safe_color(&look.accent_color),
    );
    let css = format!(
        ":root{{--primary:{primary};--accent:{accent};--on-primary:{};--on-accent:{};}}\n",
        text_on(primary),
        text_on(accent)
    );
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        css,
    )
        .into_response()
}

/// Black or white text, whichever contrasts more with `background`
/// (WCAG 2 relative luminance): a reseller's light colour still gets
/// readable buttons.
fn text_on(background: &str) -> &'static str {
    let channel = |i: usize| {
        let v = f64::from(u8::from_str_radix(&background[i..i + 2], 16).unwrap_or(0)) / 255.0;
        if v <= 0.040_45 {
            v / 12.92
        } else {
            ((v + 0.055) / 1.055).powf(2.4)
        }
    };
    let luminance = 0.2126 * channel(1) + 0.7152 * channel(3) + 0.0722 * channel(5);
    // Contrast with white (1.05 / (L + 0.05)) against black ((L + 0.05) / 0.05).
    if 1.05 / (luminance + 0.05) >= (luminance + 0.05) / 0.05 {
        "#ffffff"
    } else {
        "#111827"
    }
}

fn safe_color(c: &str) -> &str {
    let ok = c.len() == 7 && c.starts_with('#') && c[1..].chars().all(|ch| ch.is_ascii_hexdigit());
    if ok {
        c
    } else {
        "#4b5563"
    }
}

pub async fn logo(State(s): State<AppState>, Extension(look): Extension<Arc<Look>>) -> Response {
    image(
        &s.store,
        &look,
        AssetKind::Logo,
        pbx_branding::DEFAULT_LOGO_SVG,
    )
    .await
}

pub async fn favicon(State(s): State<AppState>, Extension(look): Extension<Arc<Look>>) -> Response {
    image(
        &s.store,
        &look,
        AssetKind::Favicon,
        pbx_branding::DEFAULT_FAVICON_SVG,
    )
    .await
}

/// A brand image, or the neutral default. SVG is served so that it cannot
/// run anything even when opened on its own (the store also refuses SVG with
/// scripts): a sandboxing CSP, and no sniffing.
async fn image(store: &Store, look: &Look, kind: AssetKind, default: &'static [u8]) -> Response {
    let asset = match look.owner {
        Owner::Reseller(id) => match store.brand_asset(id, kind).await {
            Ok(asset) => asset,
            Err(e) => {
                tracing::error!(error = %e, "brand image unavailable");
                return StatusCode::SERVICE_UNAVAILABLE.into_response();
            }
        },
        _ => None,
    };
    let (content_type, body) = match asset {
        Some(a) => (a.content_type, a.data),
        None => ("image/svg+xml", default.to_vec()),
    };
    let mut response = body.into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; sandbox"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_on_a_brand_colour_is_readable() {
        assert_eq!(text_on("#1d4ed8"), "#ffffff");
        assert_eq!(text_on("#000000"), "#ffffff");
        assert_eq!(text_on("#ffff00"), "#111827");
        assert_eq!(text_on("#f5f5f5"), "#111827");
    }

    #[test]
    fn host_is_taken_without_port_and_case() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::HOST, HeaderValue::from_str(v).expect("header"));
            request_host(&Uri::from_static("/"), &m)
        };
        assert_eq!(
            h("Console.Example:8080").as_deref(),
            Some("console.example")
        );
        assert_eq!(h("console.example.").as_deref(), Some("console.example"));
        assert_eq!(h("[::1]:80").as_deref(), Some("[::1]"));
        assert_eq!(h(":80"), None);
        assert_eq!(h("evil.example/x"), None);
        assert_eq!(h("a b"), None);
        assert_eq!(
            request_host(&Uri::from_static("http://a.example/x"), &HeaderMap::new()).as_deref(),
            Some("a.example")
        );
    }
}
