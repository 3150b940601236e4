//! Who sends a request: its digest credentials checked in its customer's
//! realm (RFC 3261 §22), with the abuse guard counting the wrong ones and
//! holding back right ones it must not let through (a protected account
//! from an address it never registered from). The registrar (401 and
//! `Authorization`) and the proxy (407 and `Proxy-Authorization`) share it,
//! so both answer guesses alike and neither tells whether a user exists.

use std::sync::Arc;

use pbx_sip_message::auth::DigestParams;
use pbx_sip_message::{Header, HeaderName, Message};
use pbx_store::net::Source;

use crate::core::Core;
use crate::digest::{Ha1, Verdict};
use crate::directory::{Device, Tenant};
use crate::guard::Screen;
use crate::stats::Stats;
use crate::transport::Flow;

/// Which challenge a request gets: a registrar's or a proxy's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asker {
    /// 401 with `WWW-Authenticate`, answered in `Authorization`.
    Registrar,
    /// 407 with `Proxy-Authenticate`, answered in `Proxy-Authorization`.
    Proxy,
}

impl Asker {
    fn credentials_header(self) -> HeaderName {
        match self {
            Asker::Registrar => HeaderName::Authorization,
            Asker::Proxy => HeaderName::ProxyAuthorization,
        }
    }
}

/// What the credentials of a request come to.
pub enum Checked {
    /// They are `Device`'s.
    Device(Arc<Device>),
    /// Answer with a (fresh) challenge.
    Challenge { stale: bool },
    /// Answer nothing: the source is banned, or locked out of the account.
    Silence,
}

/// Checks `req`'s credentials for `tenant`'s realm.
pub fn check(core: &Core, req: &Message, flow: Flow, tenant: &Tenant, asker: Asker) -> Checked {
    let creds = req
        .values(&asker.credentials_header())
        .filter_map(|h| h.text().and_then(|t| DigestParams::parse(&t).ok()))
        .find(|c| c.is_digest() && c.get("realm") == Some(tenant.domain.as_str()));
    let ip = flow.remote.ip();
    let now = pbx_store::now_ms();
    let Some(creds) = creds else {
        return match core.guard.challenging(ip, tenant, now) {
            Screen::Pass => Checked::Challenge { stale: false },
            Screen::Drop => Checked::Silence,
        };
    };
    let user = creds.get("username").unwrap_or_default();
    if !core.guard.may_try(ip, tenant, user, now) {
        return Checked::Silence;
    }
    let method = req.cseq().method.as_str().to_owned();
    let request_uri = req
        .request_line()
        .map(|r| r.uri.clone())
        .unwrap_or_else(|| req.to().uri.clone());
    let verdict = core.auth.verify(
        &creds,
        (&method, &request_uri),
        &tenant.domain,
        Source::of(ip),
        |user| {
            tenant
                .device(user)
                .filter(|d| d.realm_current)
                .map(|d| Ha1 {
                    md5: &d.ha1_md5,
                    sha256: &d.ha1_sha256,
                })
        },
    );
    match verdict {
        Verdict::Valid(_) | Verdict::Stale => {
            let Some(device) = tenant.device(user).cloned() else {
                return Checked::Challenge { stale: false };
            };
            let accepted = match verdict {
                Verdict::Valid(_) => {
                    let registering = asker == Asker::Registrar;
                    core.guard
                        .right_digest(ip, tenant, device.id, registering, now)
                }
                _ => !core.guard.refuses(ip, tenant, device.id, now),
            };
            if !accepted {
                // Answered and counted like a wrong password.
                return wrong(core, flow, tenant, user, &method, Some(device.id), now);
            }
            match verdict {
                Verdict::Valid(algorithm) => {
                    core.stats.count_auth(algorithm);
                    Checked::Device(device)
                }
                _ => Checked::Challenge { stale: true },
            }
        }
        Verdict::Wrong => {
            let device = tenant.device(user).map(|d| d.id);
            wrong(core, flow, tenant, user, &method, device, now)
        }
        Verdict::Invalid => {
            Stats::inc(&core.stats.auth_failures);
            tracing::info!(customer = %tenant.customer, remote = %flow.remote,
                method = %method, "digest credentials that cannot verify");
            // Could never have succeeded: like no credentials at all.
            match core.guard.challenging(ip, tenant, now) {
                Screen::Pass => Checked::Challenge { stale: false },
                Screen::Drop => Checked::Silence,
            }
        }
    }
}

/// A challenge to `req` in `tenant`'s realm, to the source it came from.
pub fn challenge(
    core: &Core,
    req: &Message,
    flow: Flow,
    tenant: &Tenant,
    asker: Asker,
    stale: bool,
) -> Message {
    Stats::inc(&core.stats.challenges);
    let server = tenant.server_header.as_deref();
    let (mut resp, header) = match asker {
        Asker::Registrar => (
            core.node.local_response(req, 401, "Unauthorized", server),
            HeaderName::WwwAuthenticate,
        ),
        Asker::Proxy => (
            core.node
                .local_response(req, 407, "Proxy Authentication Required", server),
            HeaderName::ProxyAuthenticate,
        ),
    };
    for value in core.auth.challenge(
        &tenant.domain,
        stale,
        req.value_text(&HeaderName::UserAgent).as_deref(),
        Source::of(flow.remote.ip()),
    ) {
        resp.push(Header::new(header.clone(), value));
    }
    resp
}

/// A wrong digest (or a right one refused): counted, then challenged again
/// or, once the guard has had enough of the source, not answered at all.
fn wrong(
    core: &Core,
    flow: Flow,
    tenant: &Tenant,
    user: &str,
    method: &str,
    device: Option<pbx_store::DeviceId>,
    now: pbx_store::Millis,
) -> Checked {
    Stats::inc(&core.stats.auth_failures);
    tracing::info!(customer = %tenant.customer, remote = %flow.remote, user,
        method = %method, "wrong digest credentials");
    match core
        .guard
        .wrong_digest(flow.remote.ip(), tenant, user, device, now)
    {
        Screen::Pass => Checked::Challenge { stale: false },
        Screen::Drop => Checked::Silence,
    }
}
