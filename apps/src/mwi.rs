//! Message waiting (RFC 3842): the lamp of a voicemail box on its phones.
//!
//! A phone that subscribes to its box (`SUBSCRIBE` with `Event:
//! message-summary`, routed here by the proxy as `sip:mwi-<extension>@…`
//! once it authenticated the phone as the box's own) holds a subscription
//! dialog (RFC 6665): it is told the state at once and at every change, in
//! that dialog, until it unsubscribes or lets the subscription expire.
//! Phones that do not subscribe, as many desk phones do not, get the same
//! NOTIFY unsolicited, addressed to the extension through the proxy, which
//! rings its registered phones but those that already subscribed.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pbx_sip_message::{Header, HeaderName, Message};
use pbx_store::{ExtensionId, Principal};

use crate::dialog::{self, new_branch, new_token, Dialog};
use crate::server::{reply, send_reliably, Inner};

/// A subscription nobody asked a length for lasts this long (RFC 3842
/// §7.1 suggests an hour)…
const DEFAULT_EXPIRES_S: u32 = 3600;
/// …and none lasts longer; a shorter one than this is refused with 423, so
/// a phone cannot make us notify it every second.
const MAX_EXPIRES_S: u32 = 3600;
const MIN_EXPIRES_S: u32 = 60;
/// Subscriptions held at once (each is a dialog of a few hundred bytes);
/// beyond, 503 and the phone is told unsolicited like one that never
/// subscribed.
const MAX_SUBSCRIPTIONS: usize = 50_000;
/// Subscriptions of one extension (its phones, each a few at most): one
/// phone cannot take the table for itself.
const MAX_PER_EXTENSION: usize = 16;

/// The lamps phones subscribed to, by the subscription's Call-ID.
#[derive(Default)]
pub(crate) struct Subscriptions {
    map: Mutex<HashMap<String, Subscription>>,
}

struct Subscription {
    extension: ExtensionId,
    dialog: Dialog,
    /// The proxy socket it came through: where its NOTIFYs go.
    proxy: SocketAddr,
    expires_at: Instant,
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

/// The extension a Request-URI user `mwi-<id>` names.
pub fn parse_user(user: &str) -> Option<ExtensionId> {
    user.strip_prefix("mwi-")?
        .parse::<i64>()
        .ok()
        .map(ExtensionId)
}

/// The body a phone reads: whether messages wait, and how many.
pub fn summary(account: &str, new: u32, heard: u32) -> String {
    format!(
        "Messages-Waiting: {}\r\nMessage-Account: {account}\r\nVoice-Message: {new}/{heard} (0/0)\r\n",
        if new > 0 { "yes" } else { "no" }
    )
}

/// What a SUBSCRIBE asks of us, or the answer refusing it.
#[derive(Debug, PartialEq, Eq)]
enum Asked {
    /// Subscribe or refresh for this many seconds (0: unsubscribe, or
    /// fetch the state once).
    For(u32),
    Refused(u16, &'static str),
}

/// Reads the Event and Expires of a SUBSCRIBE (RFC 6665 §4.1.2.1, §4.2.1.1).
fn asked(req: &Message) -> Asked {
    let event = req.value_text(&HeaderName::Event).unwrap_or_default();
    let package = event.split(';').next().unwrap_or_default().trim();
    if !package.eq_ignore_ascii_case("message-summary") {
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

/// Answers a SUBSCRIBE (new, refreshing or ending a subscription), then
/// tells the phone the box's state in the subscription's dialog.
pub(crate) async fn on_subscribe(inner: &Arc<Inner>, req: Message, from: SocketAddr) {
    let expires = match asked(&req) {
        Asked::For(n) => n,
        Asked::Refused(code, reason) => {
            let mut resp = dialog::answer_message(&req, code, reason, None, None, None);
            match code {
                489 => resp.push(Header::new(HeaderName::AllowEvents, "message-summary")),
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
        Some(tag) => refresh(inner, &req, &tag, expires),
    };
    let (extension, mut dlg) = match accepted {
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
        expires,
        "message-summary subscription"
    );
    // The state at once (RFC 6665 §4.2.1.2), also when it ends.
    let Some((_, body)) = box_state(inner, extension).await else {
        return;
    };
    let state = match expires {
        0 => "terminated;reason=timeout".to_owned(),
        n => format!("active;expires={n}"),
    };
    // A refresh or the first NOTIFY: the dialog's CSeq moves on in the map.
    let notify = match expires {
        0 => notify_request(&mut dlg, inner.local, &state, &body),
        _ => {
            let mut map = lock(&inner.subscriptions.map);
            map.get_mut(req.call_id())
                .and_then(|s| notify_request(&mut s.dialog, inner.local, &state, &body))
        }
    };
    if let Some(bytes) = notify {
        send_reliably(inner, bytes, from).await;
    }
}

/// A new subscription (kept unless it only fetches the state).
fn subscribe(
    inner: &Inner,
    req: &Message,
    from: SocketAddr,
    expires: u32,
) -> Result<(ExtensionId, Dialog), (u16, &'static str)> {
    let extension = req
        .request_line()
        .and_then(|r| r.uri.as_sip())
        .and_then(|u| u.user.as_deref())
        .and_then(parse_user)
        .ok_or((404, "Not Found"))?;
    let now = Instant::now();
    let mut map = lock(&inner.subscriptions.map);
    if let Some(held) = map.get_mut(req.call_id()) {
        // The same SUBSCRIBE again (our answer was lost): the same dialog.
        // Another phone's Call-ID is not this one's to take over.
        if held.dialog.remote_tag() != req.from().tag() || held.extension != extension {
            return Err((481, "Subscription Does Not Exist"));
        }
        return renew(&mut map, req.call_id(), expires, now);
    }
    let dlg = Dialog::from_invite(req, &new_token()).ok_or((400, "Bad Request"))?;
    if expires == 0 {
        return Ok((extension, dlg));
    }
    if map.len() >= MAX_SUBSCRIPTIONS {
        map.retain(|_, s| s.expires_at > now);
        if map.len() >= MAX_SUBSCRIPTIONS {
            tracing::warn!(
                subscriptions = MAX_SUBSCRIPTIONS,
                "message-summary subscriptions full: refused"
            );
            return Err((503, "Service Unavailable"));
        }
    }
    let of_extension = map
        .values()
        .filter(|s| s.extension == extension && s.expires_at > now)
        .count();
    if of_extension >= MAX_PER_EXTENSION {
        tracing::warn!(
            extension = extension.0,
            "too many message-summary subscriptions for one extension: refused"
        );
        return Err((503, "Service Unavailable"));
    }
    map.insert(
        req.call_id().to_owned(),
        Subscription {
            extension,
            dialog: dlg.clone(),
            proxy: from,
            expires_at: now + Duration::from_secs(u64::from(expires)),
        },
    );
    Ok((extension, dlg))
}

/// A SUBSCRIBE in a subscription's dialog: its new length, or its end.
fn refresh(
    inner: &Inner,
    req: &Message,
    tag: &str,
    expires: u32,
) -> Result<(ExtensionId, Dialog), (u16, &'static str)> {
    let now = Instant::now();
    let mut map = lock(&inner.subscriptions.map);
    // Only the dialog's own parties: a made-up Call-ID or tag finds nothing.
    let ours = map.get(req.call_id()).is_some_and(|s| {
        s.expires_at > now
            && s.dialog.local_tag().as_deref() == Some(tag)
            && s.dialog.remote_tag() == req.from().tag()
    });
    if !ours {
        return Err((481, "Subscription Does Not Exist"));
    }
    renew(&mut map, req.call_id(), expires, now)
}

/// A held subscription's new length, or its end (0).
fn renew(
    map: &mut HashMap<String, Subscription>,
    call_id: &str,
    expires: u32,
    now: Instant,
) -> Result<(ExtensionId, Dialog), (u16, &'static str)> {
    const GONE: (u16, &str) = (481, "Subscription Does Not Exist");
    if expires == 0 {
        let gone = map.remove(call_id).ok_or(GONE)?;
        return Ok((gone.extension, gone.dialog));
    }
    let s = map.get_mut(call_id).ok_or(GONE)?;
    s.expires_at = now + Duration::from_secs(u64::from(expires));
    Ok((s.extension, s.dialog.clone()))
}

/// Ends a subscription its phone no longer knows.
pub(crate) fn forget(inner: &Inner, call_id: &str) {
    if lock(&inner.subscriptions.map).remove(call_id).is_some() {
        tracing::debug!(
            call_id,
            "message-summary subscription refused by the phone: ended"
        );
    }
}

/// A NOTIFY in a subscription's dialog.
fn notify_request(
    dlg: &mut Dialog,
    via: SocketAddr,
    state: &str,
    body: &str,
) -> Option<bytes::Bytes> {
    let headers = format!(
        "Event: message-summary\r\nSubscription-State: {state}\r\n\
Content-Type: application/simple-message-summary\r\n"
    );
    dlg.request_with("NOTIFY", via, &headers, body)
        .map(|(bytes, _)| bytes)
}

/// The extension's address and the summary of its box now.
async fn box_state(inner: &Inner, extension: ExtensionId) -> Option<(String, String)> {
    let sys = Principal::system();
    let ext = inner.store.extensions().get(&sys, extension).await.ok()?;
    let (Ok(customer), Ok(counts)) = (
        inner.store.customers().get(&sys, ext.customer_id).await,
        inner.store.voicemail().counts(&sys, extension).await,
    ) else {
        return None;
    };
    let aor = format!("sip:{}@{}", ext.number, customer.sip_domain);
    let body = summary(&aor, counts.new, counts.heard);
    Some((aor, body))
}

/// Tells every phone of `extension` the state of its box: in their
/// subscriptions, and unsolicited to the others.
pub(crate) async fn notify(inner: &Arc<Inner>, extension: ExtensionId) {
    let Some((aor, body)) = box_state(inner, extension).await else {
        return;
    };
    let now = Instant::now();
    let mut subscribed = Vec::new();
    let mut in_dialogs = Vec::new();
    {
        let mut map = lock(&inner.subscriptions.map);
        map.retain(|_, s| s.expires_at > now);
        for s in map.values_mut().filter(|s| s.extension == extension) {
            let left = s.expires_at.saturating_duration_since(now).as_secs().max(1);
            let state = format!("active;expires={left}");
            subscribed.push(s.dialog.remote_target.to_string());
            if let Some(bytes) = notify_request(&mut s.dialog, inner.local, &state, &body) {
                in_dialogs.push((bytes, s.proxy));
            }
        }
    }
    for (bytes, proxy) in in_dialogs {
        send_reliably(inner, bytes, proxy).await;
    }
    let Some(proxy) = inner.proxy() else {
        return;
    };
    let mut text = format!(
        "NOTIFY {aor} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch={branch}\r\nMax-Forwards: 70\r\n\
From: <{aor}>;tag={tag}\r\nTo: <{aor}>\r\nCall-ID: {call}@mwi\r\nCSeq: 1 NOTIFY\r\n\
Event: message-summary\r\nSubscription-State: active;expires=3600\r\n\
Content-Type: application/simple-message-summary\r\n",
        local = inner.local,
        branch = new_branch(),
        tag = new_token(),
        call = new_token(),
    );
    for contact in &subscribed {
        let name = HeaderName::LampSubscribed;
        text.push_str(&format!("{}: <{contact}>\r\n", name.as_str()));
    }
    text.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    tracing::debug!(
        extension = extension.0,
        subscribed = subscribed.len(),
        "message waiting notified"
    );
    send_reliably(inner, text.into(), proxy).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_says_what_waits() {
        assert_eq!(
            summary("sip:101@a.test", 2, 1),
            "Messages-Waiting: yes\r\nMessage-Account: sip:101@a.test\r\nVoice-Message: 2/1 (0/0)\r\n"
        );
        assert!(summary("sip:101@a.test", 0, 3).starts_with("Messages-Waiting: no"));
    }

    fn subscribe_with(headers: &str) -> Message {
        let raw = format!(
            "SUBSCRIBE sip:mwi-7@127.0.0.1:5099 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKs1\r\n\
From: <sip:101@acme.test>;tag=p1\r\nTo: <sip:101@acme.test>\r\nCall-ID: sub-1\r\nCSeq: 1 SUBSCRIBE\r\n\
Contact: <sip:101@192.0.2.10:5062>\r\n{headers}Content-Length: 0\r\n\r\n"
        );
        Message::parse_datagram(bytes::Bytes::from(raw), &Default::default()).expect("subscribe")
    }

    #[test]
    fn a_subscribe_is_read_for_its_event_and_length() {
        let ask = |h: &str| asked(&subscribe_with(h));
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
        assert_eq!(ask("Event: presence\r\n"), Asked::Refused(489, "Bad Event"));
        assert_eq!(ask(""), Asked::Refused(489, "Bad Event"));
    }

    #[test]
    fn a_notify_in_the_subscription_carries_the_state_and_moves_the_cseq() {
        let mut dlg = Dialog::from_invite(&subscribe_with(""), "ours").expect("dialog");
        let via = "127.0.0.1:5099".parse().expect("addr");
        let body = summary("sip:101@acme.test", 1, 0);
        let first = notify_request(&mut dlg, via, "active;expires=60", &body).expect("notify");
        let second = notify_request(&mut dlg, via, "active;expires=59", &body).expect("notify");
        let m = Message::parse_datagram(second, &Default::default()).expect("a valid NOTIFY");
        assert_eq!(m.cseq().seq, 2);
        assert_eq!(m.from().tag().as_deref(), Some("ours"));
        assert_eq!(m.to().tag().as_deref(), Some("p1"));
        assert_eq!(
            m.value_text(&HeaderName::SubscriptionState).as_deref(),
            Some("active;expires=59")
        );
        assert_eq!(&m.body[..], body.as_bytes());
        assert!(Message::parse_datagram(first, &Default::default()).is_ok());
        assert_eq!(parse_user("mwi-7"), Some(ExtensionId(7)));
        assert_eq!(parse_user("mwi-"), None);
        assert_eq!(parse_user("vm-7"), None);
    }
}
