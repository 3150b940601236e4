//! Registrations with carriers: for every enabled trunk that authenticates
//! by registration, this node registers as a client (RFC 3261 §10) with
//! digest, refreshes halfway through what the carrier granted, tries again a
//! minute after a failure, and reports how each stands (the store, for the
//! API and console; `/metrics`). Responses find their registration by the
//! Via branch of the REGISTER they answer.
//!
//! Each node registers on its own, with its own address as Contact: a
//! carrier that allows several bindings per account then reaches any node.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};

use pbx_sip_message::auth::DigestParams;
use pbx_sip_message::{Contact, Header, HeaderName, Host, Message, Method, NameAddr, SipUri, Uri};
use pbx_store::trunks::{AuthMode, Registration, RegistrationState, Transport, Trunk};
use pbx_store::{Millis, TrunkId};

use crate::core::Core;
use crate::directory::Carriers;
use crate::stats::Stats;
use crate::transport::Protocol;

/// How long after a failure (or no answer) a registration is tried again.
const RETRY_MS: Millis = 60_000;
/// Sends of one REGISTER over UDP before it counts as unanswered (0.5 s,
/// doubling: about 32 s in all, like Timer F).
const MAX_SENDS: u32 = 7;
const T1_MS: Millis = 500;

/// What a registration needs from its trunk.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Account {
    addr: SocketAddr,
    protocol: Protocol,
    username: String,
    secret: String,
    /// The domain registered at: the realm if given, else the carrier's host.
    domain: String,
    expires_s: i64,
}

impl Account {
    fn of(trunk: &Trunk, secret: Option<&str>) -> Option<Account> {
        if trunk.auth_mode != AuthMode::Register || !trunk.enabled {
            return None;
        }
        let protocol = match trunk.transport {
            Transport::Udp => Protocol::Udp,
            Transport::Tcp => Protocol::Tcp,
            Transport::Tls => return None,
        };
        let ip = trunk.host.parse::<std::net::IpAddr>().ok()?;
        Some(Account {
            addr: SocketAddr::new(ip, u16::try_from(trunk.port).ok()?),
            protocol,
            username: trunk.username.clone()?,
            secret: secret?.to_owned(),
            domain: trunk.realm.clone().unwrap_or_else(|| trunk.host.clone()),
            expires_s: trunk.register_expires_s,
        })
    }

    fn registrar_uri(&self) -> Uri {
        let mut uri = SipUri::new(None, Host::from(self.addr.ip()), Some(self.addr.port()));
        if self.protocol == Protocol::Tcp {
            uri.set_param("transport", Some("tcp"));
        }
        Uri::Sip(uri)
    }
}

/// A REGISTER waiting for its answer.
#[derive(Debug)]
struct Pending {
    branch: String,
    bytes: bytes::Bytes,
    sends: u32,
    last_sent: Millis,
    /// Whether it carried credentials (a second 401 then means wrong ones).
    authorised: bool,
}

/// The carrier's last challenge, answered in every REGISTER until it asks anew.
#[derive(Debug, Clone)]
struct Kept {
    params: DigestParams,
    /// It came as Proxy-Authenticate (407): answered in Proxy-Authorization.
    proxy: bool,
}

#[derive(Debug)]
struct Reg {
    account: Account,
    call_id: String,
    tag: String,
    cseq: u32,
    nc: u32,
    challenge: Option<Kept>,
    pending: Option<Pending>,
    next_at: Millis,
    /// The carrier's Min-Expires after a 423, if above what was configured.
    min_expires_s: i64,
    /// Challenges answered since the last final outcome (bounded: a carrier
    /// that challenges without end is a failure, not a loop).
    rounds: u32,
}

impl Reg {
    fn expires_s(&self) -> i64 {
        self.account.expires_s.max(self.min_expires_s)
    }
}

/// This node's registrations, one per registering trunk.
#[derive(Default)]
pub struct TrunkRegistrations {
    regs: Mutex<HashMap<TrunkId, Reg>>,
    /// What changed since the store was last told.
    reports: Mutex<Vec<(TrunkId, Registration)>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl TrunkRegistrations {
    /// Follows the trunks as configured: new registering trunks are
    /// registered at once, changed ones anew, removed ones forgotten.
    pub fn sync(&self, carriers: &Carriers, now: Millis) {
        let wanted: HashMap<TrunkId, Account> = carriers
            .trunks
            .iter()
            .filter_map(|(t, _)| Some((t.id, Account::of(t, carriers.secret(t.id))?)))
            .collect();
        let mut regs = lock(&self.regs);
        regs.retain(|id, r| wanted.get(id) == Some(&r.account));
        for (id, account) in wanted {
            regs.entry(id).or_insert_with(|| Reg {
                account,
                call_id: format!("{}@trunk", pbx_store::secrets::random_token(12)),
                tag: pbx_store::secrets::random_token(8),
                cseq: 0,
                nc: 0,
                challenge: None,
                pending: None,
                next_at: now,
                min_expires_s: 0,
                rounds: 0,
            });
        }
    }

    /// Sends what is due: new registrations and refreshes, and UDP
    /// retransmissions of those not answered yet.
    pub fn tick(&self, core: &Core, now: Millis) {
        let mut regs = lock(&self.regs);
        for (id, reg) in regs.iter_mut() {
            if let Some(p) = reg.pending.as_mut() {
                let reliable = reg.account.protocol.is_reliable();
                let elapsed = now - p.last_sent;
                // UDP: resent at 0.5 s, 1 s, 2 s…; TCP: sent once, given 32 s.
                let wait = if reliable {
                    32_000
                } else {
                    T1_MS << p.sends.saturating_sub(1).min(6)
                };
                if elapsed < wait {
                    continue;
                }
                if reliable || p.sends >= MAX_SENDS {
                    reg.pending = None;
                    reg.challenge = None;
                    reg.next_at = now + RETRY_MS;
                    self.report(*id, failed(Some(408), now));
                    Stats::inc(&core.stats.trunk_registration_failures);
                    tracing::warn!(trunk = %id, "carrier did not answer the registration");
                    continue;
                }
                p.sends += 1;
                p.last_sent = now;
                let bytes = p.bytes.clone();
                send(core, &reg.account, bytes);
                continue;
            }
            if now >= reg.next_at {
                reg.rounds = 0;
                let auth = reg.challenge.clone();
                if !register(core, reg, auth.as_ref(), now) {
                    // The kept challenge cannot be answered: ask afresh.
                    reg.challenge = None;
                    register(core, reg, None, now);
                }
            }
        }
    }

    /// A response that may answer one of our REGISTERs (from the carrier's
    /// address); false if it does not.
    pub fn on_response(&self, core: &Core, resp: &Message, from: SocketAddr) -> bool {
        if resp.cseq().method != Method::Register {
            return false;
        }
        let Some(branch) = resp.top_via().branch() else {
            return false;
        };
        let mut regs = lock(&self.regs);
        let Some((id, reg)) = regs.iter_mut().find(|(_, r)| {
            r.pending.as_ref().is_some_and(|p| p.branch == branch)
                && r.account.addr.ip() == from.ip()
        }) else {
            return false;
        };
        let id = *id;
        let status = resp.status().unwrap_or(500);
        if status < 200 {
            return true;
        }
        let authorised = reg.pending.take().is_some_and(|p| p.authorised);
        let now = pbx_store::now_ms();
        match status {
            200..=299 => {
                let granted = granted_seconds(resp, &reg.account.username, reg.expires_s()).max(1);
                let until = now + granted * 1000;
                // Refresh halfway (time enough for a lost answer or two), but
                // never more often than every half minute.
                reg.next_at = now + (granted * 500).max(30_000);
                reg.rounds = 0;
                Stats::inc(&core.stats.trunk_registrations);
                tracing::info!(trunk = %id, expires_s = granted, "registered with the carrier");
                self.report(
                    id,
                    Registration {
                        state: RegistrationState::Registered,
                        status: Some(i64::from(status)),
                        registered_until: Some(until),
                        at: now,
                    },
                );
            }
            401 | 407 => {
                let proxy = status == 407;
                let name = if proxy {
                    HeaderName::ProxyAuthenticate
                } else {
                    HeaderName::WwwAuthenticate
                };
                let challenge = resp
                    .values(&name)
                    .filter_map(|h| h.text().and_then(|t| DigestParams::parse(&t).ok()))
                    .find(|c| c.is_digest());
                let stale = challenge
                    .as_ref()
                    .and_then(|c| c.get("stale"))
                    .is_some_and(|s| s.eq_ignore_ascii_case("true"));
                reg.rounds += 1;
                match challenge {
                    // Credentials refused (not merely a fresh nonce): wrong
                    // user name or secret; tried again later. So are
                    // challenges without end.
                    Some(_) if (authorised && !stale) || reg.rounds > 3 => {
                        self.fail(core, id, reg, status, now)
                    }
                    Some(params) => {
                        reg.nc = 0;
                        let kept = Kept { params, proxy };
                        reg.challenge = Some(kept.clone());
                        if !register(core, reg, Some(&kept), now) {
                            // A challenge we cannot answer (algorithm, qop).
                            reg.pending = None;
                            self.fail(core, id, reg, status, now);
                        }
                    }
                    None => self.fail(core, id, reg, status, now),
                }
            }
            423 => {
                // Interval too brief: the carrier's minimum, at once.
                let min = resp
                    .value_text(&HeaderName::MinExpires)
                    .and_then(|t| t.trim().parse::<i64>().ok())
                    .filter(|m| (1..=86_400).contains(m));
                match min {
                    Some(m) if m > reg.expires_s() => {
                        reg.min_expires_s = m;
                        let auth = reg.challenge.clone();
                        if !register(core, reg, auth.as_ref(), now) {
                            self.fail(core, id, reg, status, now);
                        }
                    }
                    _ => self.fail(core, id, reg, status, now),
                }
            }
            _ => self.fail(core, id, reg, status, now),
        }
        true
    }

    fn fail(&self, core: &Core, id: TrunkId, reg: &mut Reg, status: u16, now: Millis) {
        reg.next_at = now + RETRY_MS;
        // The next try starts afresh: an old nonce would only fail again.
        reg.challenge = None;
        reg.pending = None;
        Stats::inc(&core.stats.trunk_registration_failures);
        tracing::warn!(trunk = %id, status, "carrier refused the registration");
        self.report(id, failed(Some(status), now));
    }

    fn report(&self, id: TrunkId, registration: Registration) {
        lock(&self.reports).push((id, registration));
    }

    /// What changed since the last call (for the store).
    pub fn take_reports(&self) -> Vec<(TrunkId, Registration)> {
        std::mem::take(&mut *lock(&self.reports))
    }
}

fn failed(status: Option<u16>, now: Millis) -> Registration {
    Registration {
        state: RegistrationState::Failed,
        status: status.map(i64::from),
        registered_until: None,
        at: now,
    }
}

/// The seconds the carrier granted: our Contact's `expires`, else the
/// Expires header, else what was asked.
fn granted_seconds(resp: &Message, username: &str, asked_s: i64) -> i64 {
    let from_contact = resp.contacts().ok().and_then(|cs| {
        cs.into_iter().find_map(|c| match c {
            Contact::Addr(a) => {
                let ours = a
                    .uri
                    .as_sip()
                    .and_then(|u| u.user_unescaped())
                    .is_some_and(|u| u == username);
                ours.then(|| a.params.get("expires").and_then(|v| v.parse::<i64>().ok()))
                    .flatten()
            }
            Contact::Star => None,
        })
    });
    from_contact
        .or_else(|| resp.expires().and_then(Result::ok).map(i64::from))
        .unwrap_or(asked_s)
        .min(asked_s.max(60))
}

/// Sends a (new) REGISTER, with credentials when a challenge is known.
/// False when a challenge was given that cannot be answered.
fn register(core: &Core, reg: &mut Reg, challenge: Option<&Kept>, now: Millis) -> bool {
    let Some(flow) = core
        .node
        .transports
        .flow_to(reg.account.protocol, reg.account.addr)
    else {
        return true;
    };
    reg.cseq += 1;
    let branch = core.node.new_branch();
    let via = core.node.our_via(&flow, &branch);
    let aor = NameAddr::new(Uri::Sip(SipUri::new(
        Some(&reg.account.username),
        Host::Name(reg.account.domain.clone()),
        None,
    )));
    let mut from = aor.clone();
    from.params.set("tag", Some(&reg.tag));
    let uri = reg.account.registrar_uri();
    let mut req = Message::request(
        Method::Register,
        uri.clone(),
        via,
        from,
        aor,
        &reg.call_id,
        reg.cseq,
    );
    let (host, port) = core.node.advertised(&flow);
    let mut contact = SipUri::new(Some(&reg.account.username), host, Some(port));
    if reg.account.protocol == Protocol::Tcp {
        contact.set_param("transport", Some("tcp"));
    }
    req.push(Header::new(HeaderName::Contact, format!("<{contact}>")));
    req.push(Header::new(
        HeaderName::Expires,
        reg.expires_s().to_string(),
    ));
    let authorised = match challenge {
        Some(c) => {
            reg.nc += 1;
            let cnonce = pbx_store::secrets::random_token(8);
            let value = crate::digest::answer_challenge(
                &c.params,
                "REGISTER",
                &uri.to_string(),
                (&reg.account.username, &reg.account.secret),
                (reg.nc, &cnonce),
            );
            let name = if c.proxy {
                HeaderName::ProxyAuthorization
            } else {
                HeaderName::Authorization
            };
            match value {
                Some(v) => {
                    req.push(Header::new(name, v));
                    true
                }
                None => return false,
            }
        }
        None => false,
    };
    let bytes = req.to_bytes();
    reg.pending = Some(Pending {
        branch,
        bytes: bytes.clone(),
        sends: 1,
        last_sent: now,
        authorised,
    });
    send(core, &reg.account, bytes);
    true
}

fn send(core: &Core, account: &Account, bytes: bytes::Bytes) {
    if let Some(flow) = core.node.transports.flow_to(account.protocol, account.addr) {
        core.node.send(&flow, bytes);
    }
}
