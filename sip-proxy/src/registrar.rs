//! REGISTER policy (RFC 3261 §10.3): which customer a REGISTER is for (from
//! its domain), digest authentication in the customer's realm, which
//! bindings a device may add, expiry rules (423, max, random spread), RFC 5626
//! instance-id and reg-id, and the 200 OK listing the bindings. Bindings are
//! kept by [`crate::location`].
//!
//! Every answer is sent without a server transaction: challenges and
//! refusals are idempotent, and a retransmitted REGISTER that already
//! succeeded is recognised by its Call-ID, CSeq and branch and gets the same
//! 200 again. That keeps memory proportional to devices, not to traffic.

use bytes::Bytes;
use pbx_sip_message::{Contact, Header, HeaderName, Message};
use pbx_store::{CustomerId, Millis};
use rand::Rng;

use crate::core::Core;
use crate::credentials::{self, Asker, Checked};
use crate::directory::Tenant;
use crate::events::SipEvent;
use crate::location::Binding;
use crate::sharded::ShardedMap;
use crate::stats::Stats;
use crate::transport::{Flow, Protocol};

/// The last successful REGISTER of a device, to answer its retransmissions.
#[derive(Clone)]
struct Completed {
    call_id: String,
    cseq: u32,
    branch: String,
    response: Bytes,
    at: tokio::time::Instant,
}

#[derive(Default)]
pub struct Registrar {
    completed: ShardedMap<(CustomerId, String), Completed>,
}

impl Registrar {
    /// Forgets answers older than `linger`: retransmissions stop after 64*T1.
    pub fn sweep(&self, linger: std::time::Duration) {
        let now = tokio::time::Instant::now();
        self.completed
            .retain_quietly(|c| now.duration_since(c.at) < linger);
    }

    pub fn handle(&self, core: &Core, req: Message, flow: Flow) {
        let reply = |resp: Message| core.node.reply_stateless(&req, flow, resp);
        let Some(ruri) = req.request_line().and_then(|r| r.uri.as_sip()) else {
            return reply(
                core.node
                    .local_response(&req, 416, "Unsupported URI Scheme", None),
            );
        };
        let Some(to) = req.to().uri.as_sip() else {
            return reply(
                core.node
                    .local_response(&req, 400, "To Is Not A SIP Address", None),
            );
        };
        // The customer comes from the domain; a REGISTER for a domain we do
        // not serve, or naming a domain in the Request-URI other than its To
        // domain, is refused without saying which domains exist.
        let tenant = match core.tenant_of_request(&req) {
            Some(t)
                if to.host.is_name(&t.domain)
                    && (ruri.host.is_name(&t.domain)
                        || core.node.is_us(&ruri.host, ruri.port, None)) =>
            {
                t
            }
            _ => return reply(core.node.local_response(&req, 403, "Forbidden", None)),
        };
        let server = tenant.server_header.as_deref();
        if !tenant.active {
            return reply(core.node.local_response(&req, 403, "Forbidden", server));
        }
        if let Some(unsupported) = core.node.unsupported(&req, &HeaderName::Require) {
            let mut resp = core.node.local_response(&req, 420, "Bad Extension", server);
            resp.push(Header::new(HeaderName::Unsupported, unsupported));
            return reply(resp);
        }
        let aor_user = to.user_unescaped().unwrap_or_default();
        let branch = req.top_via().branch().unwrap_or_default();
        let cache_key = (tenant.customer, aor_user.clone());
        if let Some(done) = self.completed.get(&cache_key) {
            if done.call_id == req.call_id() && done.cseq == req.cseq().seq && done.branch == branch
            {
                Stats::inc(&core.stats.retransmissions_absorbed);
                let target = crate::node::response_flow(req.top_via(), flow);
                return core.node.send(&target, done.response);
            }
        }

        // Authentication in the customer's realm.
        let device = match credentials::check(core, &req, flow, &tenant, Asker::Registrar) {
            Checked::Device(device) => device,
            Checked::Challenge { stale } => {
                return reply(credentials::challenge(
                    core,
                    &req,
                    flow,
                    &tenant,
                    Asker::Registrar,
                    stale,
                ))
            }
            Checked::Silence => return,
        };
        // A device registers its own address of record, nobody else's.
        if aor_user != device.sip_user {
            return reply(core.node.local_response(&req, 403, "Forbidden", server));
        }

        let now = pbx_store::now_ms();
        let update = match plan(core, &req, &tenant, device.extension, device.id, flow, now) {
            Ok(u) => u,
            Err((code, reason, extra)) => {
                let mut resp = core.node.local_response(&req, code, reason, server);
                if let Some(h) = extra {
                    resp.push(h);
                }
                return reply(resp);
            }
        };
        if let Some(bindings) = update.bindings.clone() {
            core.location
                .replace_device(device.extension, device.id, bindings);
        }
        let current = update.bindings.unwrap_or(update.before.clone());
        publish_changes(core, &tenant, &update.before, &current);
        Stats::inc(&core.stats.registrations);

        let mut resp = core.node.local_response(&req, 200, "OK", server);
        for b in &current {
            let remaining = ((b.expires_at - now).max(0) + 999) / 1000;
            resp.push(Header::new(
                HeaderName::Contact,
                format!("{};expires={remaining}", b.contact),
            ));
        }
        for path in req.values(&HeaderName::Path) {
            resp.push(path.clone());
        }
        resp.push(Header::new(HeaderName::Supported, "outbound, path"));
        if current.iter().any(|b| b.reg_id.is_some()) {
            resp.push(Header::new(HeaderName::Require, "outbound"));
        }
        let bytes = resp.to_bytes();
        self.completed.insert(
            cache_key,
            Completed {
                call_id: req.call_id().to_owned(),
                cseq: req.cseq().seq,
                branch,
                response: bytes.clone(),
                at: tokio::time::Instant::now(),
            },
        );
        let target = crate::node::response_flow(req.top_via(), flow);
        core.node.send(&target, bytes);
    }
}

/// What a REGISTER changes: the device's bindings before, and after (None
/// for a query that changes nothing).
struct Update {
    before: Vec<Binding>,
    bindings: Option<Vec<Binding>>,
}

type Refusal = (u16, &'static str, Option<Header>);

fn plan(
    core: &Core,
    req: &Message,
    tenant: &Tenant,
    extension: pbx_store::ExtensionId,
    device: pbx_store::DeviceId,
    flow: Flow,
    now: Millis,
) -> Result<Update, Refusal> {
    let policy = &core.config.registration;
    let before = core.location.of_device(extension, device, now);
    let contacts = req
        .contacts()
        .map_err(|_| (400, "Malformed Contact", None))?;
    if contacts.is_empty() {
        return Ok(Update {
            before,
            bindings: None,
        });
    }
    let header_expires = match req.expires() {
        Some(Ok(v)) => Some(v),
        // An unreadable Expires counts as absent (RFC 4475 §3.1.2.4 allows the default).
        Some(Err(_)) | None => None,
    };
    let call_id = req.call_id();
    let cseq = req.cseq().seq;
    // RFC 3261 §10.3 step 7: an older or repeated CSeq of the same Call-ID
    // must not overwrite a binding.
    let out_of_order = |b: &Binding| &*b.call_id == call_id && cseq <= b.cseq;

    if contacts.iter().any(|c| matches!(c, Contact::Star)) {
        if contacts.len() != 1 || header_expires != Some(0) {
            return Err((400, "Contact * Needs Expires: 0", None));
        }
        if before.iter().any(out_of_order) {
            return Err((500, "Out Of Order CSeq", None));
        }
        return Ok(Update {
            before,
            bindings: Some(Vec::new()),
        });
    }

    let outbound = req
        .option_tags(&HeaderName::Supported)
        .iter()
        .any(|t| t.eq_ignore_ascii_case("outbound"));
    let path: Box<[Box<str>]> = req
        .values(&HeaderName::Path)
        .filter_map(|h| h.text().map(|t| t.into()))
        .collect();
    let user_agent: Option<Box<str>> = req.value_text(&HeaderName::UserAgent).map(|u| u.into());
    let mut next = before.clone();
    for contact in contacts {
        let Contact::Addr(mut addr) = contact else {
            continue;
        };
        let Some(sip) = addr.uri.as_sip() else {
            return Err((400, "Contact Must Be A SIP URI", None));
        };
        // A binding pointing back at this node would make every call loop.
        let protocol = if sip.transport().as_deref() == Some("tcp") {
            Protocol::Tcp
        } else {
            Protocol::Udp
        };
        if core.node.is_us(&sip.host, sip.port, Some(protocol)) {
            return Err((403, "Contact Points To The Server", None));
        }
        let requested = match addr.params.get("expires") {
            Some(v) => v
                .trim()
                .parse::<u64>()
                .map(|v| v.min(u32::MAX as u64) as u32)
                .unwrap_or(policy.default_expires),
            None => header_expires.unwrap_or(policy.default_expires),
        };
        if requested > 0 && requested < policy.min_expires {
            let min = Header::new(HeaderName::MinExpires, policy.min_expires.to_string());
            return Err((423, "Interval Too Brief", Some(min)));
        }
        let instance = addr.params.get("+sip.instance").map(|i| i.into_owned());
        let reg_id = addr
            .params
            .get("reg-id")
            .and_then(|r| r.parse::<u32>().ok());
        let uri_ob = addr.uri.as_sip().is_some_and(|u| u.param("ob").is_some());
        let reg_id = reg_id.filter(|_| instance.is_some() && (outbound || uri_ob));
        let q_milli = addr
            .params
            .get("q")
            .and_then(|q| parse_q(&q))
            .unwrap_or(1000);
        addr.params.remove("expires");
        let key: Box<str> = match (&instance, reg_id) {
            (Some(i), Some(r)) => format!("{i}#{r}").into(),
            (Some(i), None) => i.as_str().into(),
            (None, _) => addr.uri.to_string().into(),
        };
        if let Some(old) = next.iter().find(|b| b.key == key) {
            if out_of_order(old) {
                return Err((500, "Out Of Order CSeq", None));
            }
        }
        next.retain(|b| b.key != key);
        if requested == 0 {
            continue;
        }
        let granted = spread(
            requested.min(policy.max_expires),
            policy.expiry_spread_percent,
            policy.min_expires,
        );
        next.push(Binding {
            reseller: tenant.reseller,
            customer: tenant.customer,
            extension,
            device,
            key,
            contact: addr.to_string().into(),
            instance: instance.map(Into::into),
            reg_id,
            q_milli,
            flow,
            call_id: call_id.into(),
            cseq,
            expires_at: now + i64::from(granted) * 1000,
            user_agent: user_agent.clone(),
            path: path.clone(),
            stored_expires_at: None,
            application: false,
        });
    }
    if next.len() > policy.max_contacts_per_device {
        return Err((403, "Too Many Contacts", None));
    }
    Ok(Update {
        before,
        bindings: Some(next),
    })
}

/// A granted expiry shortened by a random part of up to `percent`, never
/// below `floor`.
fn spread(expires: u32, percent: u32, floor: u32) -> u32 {
    let max_cut = expires.saturating_mul(percent) / 100;
    if max_cut == 0 {
        return expires;
    }
    let cut = rand::thread_rng().gen_range(0..=max_cut);
    (expires - cut).max(floor.min(expires))
}

/// `q` as thousandths (RFC 3261 `qvalue`).
fn parse_q(text: &str) -> Option<u16> {
    let value: f64 = text.trim().parse().ok()?;
    (0.0..=1.0)
        .contains(&value)
        .then(|| (value * 1000.0).round() as u16)
}

fn publish_changes(core: &Core, tenant: &Tenant, before: &[Binding], after: &[Binding]) {
    for b in after {
        let fresh = before
            .iter()
            .find(|o| o.key == b.key)
            .is_none_or(|o| o.flow != b.flow || o.contact != b.contact);
        if fresh {
            core.events.publish(SipEvent::DeviceRegistered {
                reseller: tenant.reseller,
                customer: tenant.customer,
                extension: b.extension,
                device: b.device,
                contact: b.uri_text(),
                expires_at: b.expires_at,
            });
        }
    }
    for b in before
        .iter()
        .filter(|o| !after.iter().any(|n| n.key == o.key))
    {
        core.events.publish(SipEvent::DeviceUnregistered {
            reseller: tenant.reseller,
            customer: tenant.customer,
            extension: b.extension,
            device: b.device,
            contact: b.uri_text(),
            reason: "unregistered",
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_stays_within_bounds() {
        for _ in 0..1000 {
            let g = spread(3600, 10, 60);
            assert!((3240..=3600).contains(&g), "{g}");
        }
        assert_eq!(spread(60, 10, 60), 60);
        assert_eq!(spread(5, 10, 60), 5, "never raised above the request");
    }

    #[test]
    fn q_values() {
        assert_eq!(parse_q("0.5"), Some(500));
        assert_eq!(parse_q("1"), Some(1000));
        assert_eq!(parse_q("1.5"), None);
        assert_eq!(parse_q("x"), None);
    }
}
