//! Phones' subscriptions (RFC 6665) to what this server knows about an
//! extension: its voicemail box (`message-summary`, RFC 3842: the lamp) and
//! its calls (`dialog`, RFC 4235: a colleague's busy lamp). The proxy
//! routes a SUBSCRIBE here as `sip:mwi-<extension>@…` or
//! `sip:blf-<extension>@…` once it authenticated the phone and checked it
//! may watch that extension. A subscription is a dialog: the state is told
//! at once and at every change in a NOTIFY, until the phone unsubscribes,
//! lets it expire, or refuses a NOTIFY.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use pbx_sip_message::{Header, HeaderName, Message};
use pbx_store::ExtensionId;

use crate::dialog::{self, new_token, Dialog};
use crate::server::{reply, retransmit, send_now, send_reliably, Inner};

/// A subscription nobody asked a length for lasts this long (RFC 3842
/// §7.1 suggests an hour)…
const DEFAULT_EXPIRES_S: u32 = 3600;
/// …and none lasts longer; a shorter one than this is refused with 423, so
/// a phone cannot make us notify it every second.
const MAX_EXPIRES_S: u32 = 3600;
const MIN_EXPIRES_S: u32 = 60;
/// How long after its 200 a subscription's first (or last) NOTIFY goes.
const AFTER_ANSWER: Duration = Duration::from_millis(100);
/// Subscriptions held at once (each is a dialog of a few hundred bytes).
const MAX_SUBSCRIPTIONS: usize = 50_000;
/// Subscriptions to one extension's state of one kind (its phones, its
/// colleagues' busy-lamp keys), and of one subscriber (a phone's keys, a
/// sidecar's): one phone cannot take the table, nor a colleague's slots.
const MAX_PER_EXTENSION: usize = 256;
const MAX_PER_SUBSCRIBER: usize = 128;

/// What a subscription watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Package {
    /// The extension's voicemail box.
    MessageSummary,
    /// The extension's calls.
    Dialog,
}

impl Package {
    /// The Event header's package name.
    pub fn event(self) -> &'static str {
        match self {
            Package::MessageSummary => "message-summary",
            Package::Dialog => "dialog",
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Package::MessageSummary => "application/simple-message-summary",
            Package::Dialog => "application/dialog-info+xml",
        }
    }

    fn prefix(self) -> &'static str {
        match self {
            Package::MessageSummary => "mwi-",
            Package::Dialog => "blf-",
        }
    }

    /// The Request-URI user the proxy routes a subscription with.
    pub fn user(self, extension: ExtensionId) -> String {
        format!("{}{}", self.prefix(), extension.0)
    }

    /// The package and extension a Request-URI user names.
    pub fn target(user: &str) -> Option<(Package, ExtensionId)> {
        [Package::MessageSummary, Package::Dialog]
            .into_iter()
            .find_map(|p| {
                let id = user.strip_prefix(p.prefix())?.parse::<i64>().ok()?;
                Some((p, ExtensionId(id)))
            })
    }
}

/// The subscriptions held, by their Call-ID.
#[derive(Default)]
pub(crate) struct Subscriptions {
    map: Mutex<HashMap<String, Subscription>>,
}

struct Subscription {
    package: Package,
    extension: ExtensionId,
    dialog: Dialog,
    /// The proxy socket it came through: where its NOTIFYs go.
    proxy: SocketAddr,
    expires_at: Instant,
    /// NOTIFYs sent in it (dialog-info counts them, RFC 4235 §4.1).
    sent: u32,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Subscriptions {
    /// Subscriptions held now (expired ones are forgotten on the way).
    pub fn len(&self) -> usize {
        let now = Instant::now();
        let mut map = lock(&self.map);
        map.retain(|_, s| s.expires_at > now);
        map.len()
    }
}

/// An extension's state as a NOTIFY tells it; dialog-info also says which
/// NOTIFY of the subscription it is.
pub(crate) enum Snapshot {
    Summary(String),
    Calls(crate::blf::Calls),
}

impl Snapshot {
    /// The NOTIFY body in the subscription `dialog` after `sent` NOTIFYs.
    fn body(&self, dialog: &Dialog, sent: u32) -> String {
        match self {
            Snapshot::Summary(text) => text.clone(),
            // The entity is the address the phone subscribed to.
            Snapshot::Calls(calls) => {
                let watched = pbx_sip_message::NameAddr::parse(&dialog.local)
                    .map(|n| n.uri.to_string())
                    .unwrap_or_default();
                calls.dialog_info(&watched, sent)
            }
        }
    }
}

async fn snapshot(inner: &Inner, package: Package, extension: ExtensionId) -> Option<Snapshot> {
    match package {
        Package::MessageSummary => crate::mwi::box_state(inner, extension)
            .await
            .map(|(_, body)| Snapshot::Summary(body)),
        Package::Dialog => Some(crate::blf::calls_of(inner, extension)),
    }
}

/// What a SUBSCRIBE asks of us, or the answer refusing it.
#[derive(Debug, PartialEq, Eq)]
enum Asked {
    /// Subscribe or refresh for this many seconds (0: unsubscribe, or
    /// fetch the state once).
    For(u32),
    Refused(u16, &'static str),
}

/// Reads the Event and Expires of a SUBSCRIBE for `package` (RFC 6665
/// §4.1.2.1, §4.2.1.1).
fn asked(req: &Message, package: Package) -> Asked {
    let event = req.value_text(&HeaderName::Event).unwrap_or_default();
    let named = event.split(';').next().unwrap_or_default().trim();
    if !named.eq_ignore_ascii_case(package.event()) {
        return Asked::Refused(489, "Bad Event");
    }
    let expires = match req.value_text(&HeaderName::Expires) {
        None => DEFAULT_EXPIRES_S,
        Some(text) => match text.trim().parse::<u64>() {
            Ok(n) => n.min(u64::from(MAX_EXPIRES_S)) as u32,
            Err(_) => return Asked::Refused(400, "Bad Expires"),
        },
    };
    if expires != 0 && expires < MIN_EXPIRES_S {
        return Asked::Refused(423, "Interval Too Brief");
    }
    Asked::For(expires)
}

/// The package a SUBSCRIBE is for: the Request-URI's of a new one, the
/// subscription's of a refresh.
fn package_of(inner: &Inner, req: &Message) -> Option<Package> {
    if req.to().tag().is_some() {
        return lock(&inner.subscriptions.map)
            .get(req.call_id())
            .map(|s| s.package);
    }
    let user = req
        .request_line()
        .and_then(|r| r.uri.as_sip())
        .and_then(|u| u.user.as_deref())?;
    Package::target(user).map(|(p, _)| p)
}

/// Answers a SUBSCRIBE (new, refreshing or ending a subscription), then
/// tells the phone the state in the subscription's dialog.
pub(crate) async fn on_subscribe(inner: Arc<Inner>, req: Message, from: SocketAddr) {
    let inner = &inner;
    let Some(package) = package_of(inner, &req) else {
        let (code, reason) = match req.to().tag() {
            Some(_) => (481, "Subscription Does Not Exist"),
            None => (404, "Not Found"),
        };
        let resp = dialog::answer(&req, code, reason, None, None, None);
        return reply(inner, resp, from).await;
    };
    let expires = match asked(&req, package) {
        Asked::For(n) => n,
        Asked::Refused(code, reason) => {
            let mut resp = dialog::answer_message(&req, code, reason, None, None, None);
            match code {
                489 => resp.push(Header::new(HeaderName::AllowEvents, package.event())),
                423 => resp.push(Header::new(
                    HeaderName::MinExpires,
                    MIN_EXPIRES_S.to_string(),
                )),
                _ => {}
            }
            return reply(inner, resp.to_bytes(), from).await;
        }
    };
    let accepted = match req.to().tag() {
        None => subscribe(inner, &req, from, expires),
        Some(tag) => refresh(inner, &req, from, &tag, expires),
    };
    let (extension, mut dlg, sent) = match accepted {
        Ok(found) => found,
        Err((code, reason)) => {
            let resp = dialog::answer(&req, code, reason, None, None, None);
            return reply(inner, resp, from).await;
        }
    };
    let tag = dlg.local_tag();
    let mut ok = dialog::answer_message(&req, 200, "OK", tag.as_deref(), Some(inner.local), None);
    ok.push(Header::new(HeaderName::Expires, expires.to_string()));
    reply(inner, ok.to_bytes(), from).await;
    tracing::debug!(
        extension = extension.0,
        call_id = %req.call_id(),
        package = package.event(),
        expires,
        "subscription"
    );
    // The state at once (RFC 6665 §4.2.1.2), also when it ends; a moment
    // after the 200, though: the proxy handles each message on its own, so
    // a NOTIFY sent at once may overtake the 200, and phones that do not
    // expect that (RFC 6665 §4.1.2.4 says they should) refuse it with 481,
    // which would end the subscription.
    tokio::time::sleep(AFTER_ANSWER).await;
    let Some(now) = snapshot(inner, package, extension).await else {
        return;
    };
    let notify = match expires {
        0 => {
            let body = now.body(&dlg, sent);
            notify_request(
                &mut dlg,
                inner.local,
                package,
                "terminated;reason=timeout",
                &body,
            )
        }
        n => {
            // Sent under the lock that numbers it: NOTIFYs of a
            // subscription leave in the order of their CSeq.
            let mut map = lock(&inner.subscriptions.map);
            map.get_mut(req.call_id()).and_then(|s| {
                let body = now.body(&s.dialog, s.sent);
                s.sent += 1;
                let state = format!("active;expires={n}");
                let bytes = notify_request(&mut s.dialog, inner.local, package, &state, &body)?;
                send_now(inner, &bytes, from);
                Some(bytes)
            })
        }
    };
    match (expires, notify) {
        (0, Some(bytes)) => send_reliably(inner, bytes, from).await,
        (_, Some(bytes)) => retransmit(inner, bytes, from),
        (_, None) => {}
    }
}

/// The subscription's extension, its dialog, and the NOTIFYs sent in it.
type Accepted = Result<(ExtensionId, Dialog, u32), (u16, &'static str)>;
const GONE: (u16, &str) = (481, "Subscription Does Not Exist");

/// A new subscription (kept unless it only fetches the state).
fn subscribe(inner: &Inner, req: &Message, from: SocketAddr, expires: u32) -> Accepted {
    let (package, extension) = req
        .request_line()
        .and_then(|r| r.uri.as_sip())
        .and_then(|u| u.user.as_deref())
        .and_then(Package::target)
        .ok_or((404, "Not Found"))?;
    let now = Instant::now();
    let mut map = lock(&inner.subscriptions.map);
    if let Some(held) = map.get(req.call_id()).filter(|s| s.expires_at > now) {
        // The same SUBSCRIBE again (our answer was lost): the same dialog.
        // Another phone's Call-ID is not this one's to take over.
        if held.dialog.remote_tag() != req.from().tag()
            || held.extension != extension
            || held.package != package
        {
            return Err(GONE);
        }
        return renew(&mut map, req, from, expires, now);
    }
    let dlg = Dialog::from_invite(req, &new_token()).ok_or((400, "Bad Request"))?;
    if expires == 0 {
        return Ok((extension, dlg, 0));
    }
    if map.len() >= MAX_SUBSCRIPTIONS {
        map.retain(|_, s| s.expires_at > now);
        if map.len() >= MAX_SUBSCRIPTIONS {
            tracing::warn!(
                subscriptions = MAX_SUBSCRIPTIONS,
                "subscriptions full: refused"
            );
            return Err((503, "Service Unavailable"));
        }
    }
    let watching = map
        .values()
        .filter(|s| s.extension == extension && s.package == package && s.expires_at > now)
        .count();
    let subscriber = &dlg.remote;
    let of_subscriber = || {
        map.values()
            .filter(|s| s.expires_at > now && same_party(&s.dialog.remote, subscriber))
            .count()
    };
    if watching >= MAX_PER_EXTENSION || of_subscriber() >= MAX_PER_SUBSCRIBER {
        tracing::warn!(
            extension = extension.0,
            package = package.event(),
            "too many subscriptions to one extension or of one phone: refused"
        );
        return Err((503, "Service Unavailable"));
    }
    map.insert(
        req.call_id().to_owned(),
        Subscription {
            package,
            extension,
            dialog: dlg.clone(),
            proxy: from,
            expires_at: now + Duration::from_secs(u64::from(expires)),
            sent: 0,
        },
    );
    Ok((extension, dlg, 0))
}

/// Whether two From values (with their tags) name the same party.
fn same_party(a: &str, b: &str) -> bool {
    let uri = |v: &str| pbx_sip_message::NameAddr::parse(v).map(|n| n.uri.to_string());
    matches!((uri(a), uri(b)), (Ok(x), Ok(y)) if x == y)
}

/// A SUBSCRIBE in a subscription's dialog: its new length, or its end.
fn refresh(inner: &Inner, req: &Message, from: SocketAddr, tag: &str, expires: u32) -> Accepted {
    let now = Instant::now();
    let mut map = lock(&inner.subscriptions.map);
    // Only the dialog's own parties: a made-up Call-ID or tag finds nothing.
    let ours = map.get(req.call_id()).is_some_and(|s| {
        s.expires_at > now
            && s.dialog.local_tag().as_deref() == Some(tag)
            && s.dialog.remote_tag() == req.from().tag()
    });
    if !ours {
        return Err(GONE);
    }
    renew(&mut map, req, from, expires, now)
}

/// A held subscription's new length, or its end (0). A refresh is a
/// target refresh (RFC 6665 §4.1.2.1): a phone that moved is told where
/// it is now.
fn renew(
    map: &mut HashMap<String, Subscription>,
    req: &Message,
    from: SocketAddr,
    expires: u32,
    now: Instant,
) -> Accepted {
    let call_id = req.call_id();
    if expires == 0 {
        let gone = map.remove(call_id).ok_or(GONE)?;
        return Ok((gone.extension, gone.dialog, gone.sent));
    }
    let s = map.get_mut(call_id).ok_or(GONE)?;
    s.expires_at = now + Duration::from_secs(u64::from(expires));
    s.proxy = from;
    let moved = req.contacts().ok().and_then(|c| {
        c.into_iter().find_map(|c| match c {
            pbx_sip_message::Contact::Addr(a) => Some(a.uri),
            pbx_sip_message::Contact::Star => None,
        })
    });
    if let Some(target) = moved {
        s.dialog.remote_target = target;
    }
    Ok((s.extension, s.dialog.clone(), s.sent))
}

/// Ends a subscription its phone no longer knows.
pub(crate) fn forget(inner: &Inner, call_id: &str) {
    if lock(&inner.subscriptions.map).remove(call_id).is_some() {
        tracing::debug!(call_id, "subscription refused by the phone: ended");
    }
}

/// A NOTIFY in a subscription's dialog.
fn notify_request(
    dlg: &mut Dialog,
    via: SocketAddr,
    package: Package,
    state: &str,
    body: &str,
) -> Option<Bytes> {
    // A NOTIFY names our Contact (it refreshes the dialog's target).
    let headers = format!(
        "Contact: <sip:app@{via}>\r\nEvent: {}\r\nSubscription-State: {state}\r\nContent-Type: {}\r\n",
        package.event(),
        package.content_type()
    );
    dlg.request_with("NOTIFY", via, &headers, body)
        .map(|(bytes, _)| bytes)
}

/// Tells the subscribers to `package` of `extension` its state now
/// (`state`); returns the contacts (remote targets) told.
pub(crate) async fn notify_all(
    inner: &Arc<Inner>,
    package: Package,
    extension: ExtensionId,
    state: Snapshot,
) -> Vec<String> {
    let now = Instant::now();
    let mut told = Vec::new();
    let mut sends = Vec::new();
    {
        // Numbered and sent under one lock: a subscription's NOTIFYs leave
        // in the order of their CSeq (and versions), whoever sends them.
        let mut map = lock(&inner.subscriptions.map);
        map.retain(|_, s| s.expires_at > now);
        let watching = map
            .values_mut()
            .filter(|s| s.package == package && s.extension == extension);
        for s in watching {
            let left = s.expires_at.saturating_duration_since(now).as_secs().max(1);
            let body = state.body(&s.dialog, s.sent);
            s.sent += 1;
            let header = format!("active;expires={left}");
            told.push(s.dialog.remote_target.to_string());
            if let Some(bytes) = notify_request(&mut s.dialog, inner.local, package, &header, &body)
            {
                send_now(inner, &bytes, s.proxy);
                sends.push((bytes, s.proxy));
            }
        }
    }
    for (bytes, proxy) in sends {
        retransmit(inner, bytes, proxy);
    }
    told
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subscribe_with(headers: &str) -> Message {
        let raw = format!(
            "SUBSCRIBE sip:mwi-7@127.0.0.1:5099 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKs1\r\n\
From: <sip:101@acme.test>;tag=p1\r\nTo: <sip:101@acme.test>\r\nCall-ID: sub-1\r\nCSeq: 1 SUBSCRIBE\r\n\
Contact: <sip:101@192.0.2.10:5062>\r\n{headers}Content-Length: 0\r\n\r\n"
        );
        Message::parse_datagram(Bytes::from(raw), &Default::default()).expect("subscribe")
    }

    #[test]
    fn a_subscribe_is_read_for_its_event_and_length() {
        let ask = |h: &str| asked(&subscribe_with(h), Package::MessageSummary);
        assert_eq!(ask("Event: message-summary\r\n"), Asked::For(3600));
        assert_eq!(
            ask("Event: message-summary\r\nExpires: 600\r\n"),
            Asked::For(600)
        );
        assert_eq!(
            ask("Event: Message-Summary;id=1\r\nExpires: 0\r\n"),
            Asked::For(0)
        );
        // Longer than we keep: granted our longest.
        assert_eq!(
            ask("Event: message-summary\r\nExpires: 4294967296\r\n"),
            Asked::For(MAX_EXPIRES_S)
        );
        assert_eq!(
            ask("Event: message-summary\r\nExpires: 5\r\n"),
            Asked::Refused(423, "Interval Too Brief")
        );
        assert_eq!(
            ask("Event: message-summary\r\nExpires: soon\r\n"),
            Asked::Refused(400, "Bad Expires")
        );
        assert_eq!(ask("Event: dialog\r\n"), Asked::Refused(489, "Bad Event"));
        assert_eq!(ask(""), Asked::Refused(489, "Bad Event"));
        let dialog = asked(&subscribe_with("Event: dialog\r\n"), Package::Dialog);
        assert_eq!(dialog, Asked::For(3600));
    }

    #[test]
    fn a_notify_in_the_subscription_carries_the_state_and_moves_the_cseq() {
        let mut dlg = Dialog::from_invite(&subscribe_with(""), "ours").expect("dialog");
        let via = "127.0.0.1:5099".parse().expect("addr");
        let body = crate::mwi::summary("sip:101@acme.test", 1, 0);
        let p = Package::MessageSummary;
        let first = notify_request(&mut dlg, via, p, "active;expires=60", &body).expect("notify");
        let second = notify_request(&mut dlg, via, p, "active;expires=59", &body).expect("notify");
        let m = Message::parse_datagram(second, &Default::default()).expect("a valid NOTIFY");
        assert_eq!(m.cseq().seq, 2);
        assert_eq!(m.from().tag().as_deref(), Some("ours"));
        assert_eq!(m.to().tag().as_deref(), Some("p1"));
        assert_eq!(
            m.value_text(&HeaderName::SubscriptionState).as_deref(),
            Some("active;expires=59")
        );
        assert_eq!(
            m.value_text(&HeaderName::Event).as_deref(),
            Some("message-summary")
        );
        assert_eq!(&m.body[..], body.as_bytes());
        assert!(Message::parse_datagram(first, &Default::default()).is_ok());
    }

    #[test]
    fn request_users_name_the_package_and_extension() {
        for p in [Package::MessageSummary, Package::Dialog] {
            let user = p.user(ExtensionId(7));
            assert_eq!(Package::target(&user), Some((p, ExtensionId(7))));
        }
        assert_eq!(Package::target("mwi-"), None);
        assert_eq!(Package::target("blf-x"), None);
        assert_eq!(Package::target("vm-7"), None);
    }
}
