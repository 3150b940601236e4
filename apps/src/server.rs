//! The application server's SIP side: one UDP socket on loopback that only
//! the node's proxy talks to. An INVITE for `sip:<app>@<this socket>` is
//! answered at once (200 with our SDP, retransmitted until the ACK, RFC 3261
//! §13.3.1.4), the application named by the Request-URI runs the call, and
//! the call ends with its BYE or ours. Re-INVITEs (hold) get the same
//! answer; SIP INFO keys count like RFC 4733 ones. A call the server
//! places itself (`originate`) is kept the same way once answered. A SUBSCRIBE for
//! `sip:mwi-<extension>@…` or `sip:blf-<extension>@…` is a phone watching
//! a box's lamp or an extension's calls (`subscriptions`).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use pbx_media::dtmf;
use pbx_sip_message::{Limits, Message, Method};
use pbx_store::audio_files::AudioFiles;
use pbx_store::{ConferenceRoomId, CustomerId, ExtensionId, IvrMenuId, Store};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::dialog::{self, Dialog};
use crate::media::{read_offer, CallEvent, CallMedia};

/// T1 and the end of retransmissions (RFC 3261 §17.1.1.1).
const T1: Duration = Duration::from_millis(500);
const T2: Duration = Duration::from_secs(4);
const GIVE_UP: Duration = Duration::from_secs(32);

/// Calls served at once; beyond, 503 (each holds a socket and up to a
/// longest message of audio).
pub const MAX_CALLS: usize = 500;

/// Where the application server listens and whom it trusts.
#[derive(Debug, Clone)]
pub struct AppConfig {
    /// The SIP socket (loopback; port 0 picks one).
    pub listen: SocketAddr,
    /// The proxy's SIP sockets: the only sources served. An unspecified
    /// address (0.0.0.0) stands for loopback.
    pub proxies: Vec<SocketAddr>,
    /// Where recordings go.
    pub audio: AudioFiles,
}

/// What a Request-URI asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum App {
    /// Leave a message for an extension.
    Voicemail(ExtensionId),
    /// An extension's own phone listening to its box (`*97`).
    Mailbox(ExtensionId),
    /// A phone of the customer listening to any of its boxes with the
    /// box's PIN (`*98`).
    MailboxLogin(CustomerId),
    /// A caller joining a conference room.
    Conference(ConferenceRoomId),
    /// A caller in an auto-attendant menu.
    Menu(IvrMenuId),
    /// A phone of the customer picking up a colleague's ringing call: any
    /// (`*8`) or this extension's (`**<number>`).
    Pickup(CustomerId, Option<ExtensionId>),
    /// The call picked up, handed over by the proxy (the token names the
    /// pickup waiting for it).
    PickedUp(u64),
}

impl App {
    /// The Request-URI user the proxy routes an application target with.
    pub fn user(&self) -> String {
        match self {
            App::Voicemail(e) => format!("vm-{}", e.0),
            App::Mailbox(e) => format!("vmbox-{}", e.0),
            App::MailboxLogin(c) => format!("vmlogin-{}", c.0),
            App::Conference(r) => format!("conf-{}", r.0),
            App::Menu(m) => format!("ivr-{}", m.0),
            App::Pickup(c, None) => format!("pickup-{}", c.0),
            App::Pickup(c, Some(e)) => format!("pickup-{}-{}", c.0, e.0),
            App::PickedUp(token) => format!("picked-{token}"),
        }
    }

    pub fn parse(user: &str) -> Option<App> {
        let id = |rest: &str| rest.parse::<i64>().ok().map(ExtensionId);
        if let Some(rest) = user.strip_prefix("vm-") {
            return id(rest).map(App::Voicemail);
        }
        if let Some(rest) = user.strip_prefix("vmlogin-") {
            return rest
                .parse::<i64>()
                .ok()
                .map(|c| App::MailboxLogin(CustomerId(c)));
        }
        if let Some(rest) = user.strip_prefix("pickup-") {
            let (customer, extension) = match rest.split_once('-') {
                Some((c, e)) => (c, Some(ExtensionId(e.parse().ok()?))),
                None => (rest, None),
            };
            return Some(App::Pickup(CustomerId(customer.parse().ok()?), extension));
        }
        if let Some(rest) = user.strip_prefix("picked-") {
            return rest.parse().ok().map(App::PickedUp);
        }
        if let Some(rest) = user.strip_prefix("ivr-") {
            return rest.parse::<i64>().ok().map(|m| App::Menu(IvrMenuId(m)));
        }
        if let Some(rest) = user.strip_prefix("conf-") {
            return rest
                .parse::<i64>()
                .ok()
                .map(|r| App::Conference(ConferenceRoomId(r)));
        }
        id(user.strip_prefix("vmbox-")?).map(App::Mailbox)
    }
}

/// How the server asks the proxy to hand over the call (Call-ID, caller's
/// tag) ringing at phones, to ring this server as the given user instead;
/// false when it no longer rings.
pub type PickUp = Arc<dyn Fn(&str, &str, &str) -> bool + Send + Sync>;

/// One call the server holds.
struct Call {
    dialog: Mutex<Dialog>,
    /// The proxy socket the INVITE came from: where our requests of the
    /// call go (its Record-Route may name a host we cannot resolve).
    proxy: SocketAddr,
    /// Our 200 OK, for retransmitted INVITEs and until the ACK.
    answer: Mutex<Bytes>,
    acked: tokio::sync::watch::Sender<bool>,
    events: mpsc::Sender<CallEvent>,
    media: Arc<CallMedia>,
    session: u64,
    version: Mutex<u64>,
    /// A call we placed: the ACK of its 2xx, sent again for each copy of
    /// the 2xx (ours was lost).
    ack: Option<Bytes>,
}

pub(crate) struct Inner {
    pub socket: UdpSocket,
    pub local: SocketAddr,
    pub config: AppConfig,
    pub store: Store,
    pub rooms: Arc<crate::conference::Rooms>,
    pub subscriptions: crate::subscriptions::Subscriptions,
    pub logins: crate::mailbox::Logins,
    pub lines: crate::blf::Lines,
    calls: Mutex<HashMap<String, Arc<Call>>>,
    /// Calls we placed and that were answered, by Call-ID. Apart from the
    /// calls we answered: a call we place may come back to us with its
    /// Call-ID (the extension forwards to voicemail).
    placed: Mutex<HashMap<String, Arc<Call>>>,
    /// Pickups waiting for the call they asked the proxy for, by token.
    pub(crate) picked: Mutex<HashMap<u64, tokio::sync::oneshot::Sender<crate::Run>>>,
    /// Asks the proxy to hand a ringing call over (set by the node).
    pub(crate) pickup: std::sync::OnceLock<PickUp>,
    /// Calls we are placing, by Call-ID: where their answers go.
    pub(crate) placing: Mutex<HashMap<String, mpsc::Sender<Message>>>,
}

/// The running application server.
#[derive(Clone)]
pub struct AppServer {
    inner: Arc<Inner>,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl AppServer {
    /// Binds the socket and starts serving.
    pub async fn start(config: AppConfig, store: Store) -> std::io::Result<AppServer> {
        let socket = UdpSocket::bind(config.listen).await?;
        let inner = Arc::new(Inner {
            local: socket.local_addr()?,
            socket,
            config,
            store,
            rooms: Arc::default(),
            subscriptions: Default::default(),
            logins: Default::default(),
            lines: Default::default(),
            calls: Mutex::new(HashMap::new()),
            placed: Mutex::new(HashMap::new()),
            picked: Mutex::new(HashMap::new()),
            pickup: std::sync::OnceLock::new(),
            placing: Mutex::new(HashMap::new()),
        });
        let weak = Arc::downgrade(&inner);
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65_536];
            loop {
                let Some(inner) = weak.upgrade() else { return };
                let got =
                    tokio::time::timeout(Duration::from_secs(1), inner.socket.recv_from(&mut buf))
                        .await;
                match got {
                    Ok(Ok((n, from))) => {
                        let data = Bytes::copy_from_slice(&buf[..n]);
                        on_datagram(&inner, data, from).await;
                    }
                    Ok(Err(e)) => tracing::debug!(error = %e, "application server receive error"),
                    Err(_) => {}
                }
            }
        });
        tokio::spawn(follow_boxes(Arc::downgrade(&inner)));
        Ok(AppServer { inner })
    }

    /// The SIP address the proxy routes applications to.
    pub fn address(&self) -> SocketAddr {
        self.inner.local
    }

    /// Calls in progress (those we answered and those we placed).
    pub fn calls(&self) -> usize {
        lock(&self.inner.calls).len() + lock(&self.inner.placed).len()
    }

    /// How ringing calls are handed over for a pickup (the node's proxy).
    pub fn set_pickup(&self, pickup: PickUp) {
        let _ = self.inner.pickup.set(pickup);
    }

    /// Lamp subscriptions held.
    pub fn subscriptions(&self) -> usize {
        self.inner.subscriptions.len()
    }

    /// Takes a call's start, answer or end from the proxy: the busy lamps
    /// of the extensions in it follow.
    pub async fn call_event(&self, event: &crate::blf::CallEvent) {
        crate::blf::on_call(&self.inner, event).await;
    }

    /// The proxy's call events were lost: busy lamps go out.
    pub async fn calls_lost(&self) {
        crate::blf::on_lost(&self.inner).await;
    }

    /// Tells the phones of `extension` how many voicemail messages wait.
    pub async fn message_waiting(&self, extension: ExtensionId) {
        crate::mwi::notify(&self.inner, extension).await;
    }
}

/// Phones' lamps follow their boxes wherever a message was heard or
/// deleted (the console, the API, another node).
async fn follow_boxes(inner: std::sync::Weak<Inner>) {
    let Some(mut changes) = inner.upgrade().map(|i| i.store.changes().subscribe()) else {
        return;
    };
    loop {
        let change = tokio::time::timeout(Duration::from_secs(5), changes.recv()).await;
        let Some(inner) = inner.upgrade() else { return };
        match change {
            Ok(Ok(pbx_store::changes::Change::Voicemail { extension })) => {
                crate::mwi::notify(&inner, extension).await;
            }
            Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) => return,
            _ => {}
        }
    }
}

fn trusted(config: &AppConfig, from: SocketAddr) -> bool {
    config.proxies.iter().any(|p| {
        p.port() == from.port()
            && (p.ip() == from.ip() || (p.ip().is_unspecified() && from.ip().is_loopback()))
    })
}

async fn on_datagram(inner: &Arc<Inner>, data: Bytes, from: SocketAddr) {
    if !trusted(&inner.config, from) {
        tracing::debug!(%from, "application server: not from the proxy, dropped");
        return;
    }
    let Ok(msg) = Message::parse_datagram(data, &Limits::default()) else {
        return;
    };
    if msg.is_request() {
        on_request(inner, msg, from).await;
        return;
    }
    let placing = lock(&inner.placing).get(msg.call_id()).cloned();
    if let Some(answers) = placing {
        // A full queue drops a copy: the proxy sends final answers again.
        let _ = answers.try_send(msg);
    } else if msg.cseq().method == Method::Invite && msg.status().is_some_and(|s| s < 300) {
        let call = lock(&inner.placed).get(msg.call_id()).cloned();
        if let Some(call) = call {
            another_answer(inner, &call, &msg, from).await;
        }
    } else if msg.cseq().method == Method::Notify
        && msg.status().is_some_and(|s| s == 481 || s == 408)
    {
        // A phone that no longer knows its subscription (481), or does not
        // answer (408), ends it (RFC 6665 §4.2.2, RFC 5057); other refusals
        // leave it to its next refresh.
        crate::subscriptions::forget(inner, msg.call_id());
    }
    // Other answers (to our BYE) need nothing: those requests are sent a
    // few times and forgotten (see `send_reliably`).
}

pub(crate) async fn reply(inner: &Inner, bytes: Bytes, to: SocketAddr) {
    let _ = inner.socket.send_to(&bytes, to).await;
}

/// Another 2xx of a call we placed: a copy of the one we took (our ACK
/// was lost: it goes again), or a second phone's of a forked call, which
/// is acknowledged and hung up (RFC 3261 §13.2.2.4).
async fn another_answer(inner: &Arc<Inner>, call: &Call, answer: &Message, from: SocketAddr) {
    let (ours, local) = {
        let d = lock(&call.dialog);
        (d.remote_tag() == answer.to().tag(), d.local.clone())
    };
    if ours {
        if let Some(ack) = call.ack.clone() {
            reply(inner, ack, from).await;
        }
        return;
    }
    let Some(mut stray) = Dialog::from_answer(answer, &local) else {
        return;
    };
    if let Some((ack, _)) = stray.ack(inner.local) {
        reply(inner, ack, from).await;
    }
    if let Some((bye, _)) = stray.request("BYE", inner.local) {
        send_reliably(inner, bye, from).await;
    }
}

/// The call a request is for. A request of a call we placed names our
/// From tag as its To tag; the same Call-ID may also be a call we
/// answered (our placed call come back to us).
fn call_of(inner: &Inner, req: &Message) -> Option<Arc<Call>> {
    if let Some(tag) = req.to().tag() {
        let placed = lock(&inner.placed).get(req.call_id()).cloned();
        if let Some(call) = placed {
            if lock(&call.dialog).local_tag().as_deref() == Some(tag.as_str()) {
                return Some(call);
            }
        }
    }
    lock(&inner.calls).get(req.call_id()).cloned()
}

async fn on_request(inner: &Arc<Inner>, req: Message, from: SocketAddr) {
    let method = req.method().cloned().unwrap_or(Method::Options);
    let call = call_of(inner, &req);
    match (method, call) {
        (Method::Subscribe, _) => {
            // Its answer reads the store: calls' requests do not wait for it.
            tokio::spawn(crate::subscriptions::on_subscribe(inner.clone(), req, from));
        }
        (Method::Invite, None) if req.to().tag().is_none() => new_call(inner, req, from).await,
        (Method::Invite, Some(call)) if req.to().tag().is_none() => {
            // A retransmission of the INVITE we answered.
            let answer = lock(&call.answer).clone();
            reply(inner, answer, from).await;
        }
        (Method::Invite, Some(call)) => {
            // A re-INVITE (hold, a new address): the same media, answered again.
            if let Some(offer) = read_offer(&req.body) {
                call.media.reoffer(&offer);
            }
            let version = {
                let mut v = lock(&call.version);
                *v += 1;
                *v
            };
            let tag = req.to().tag();
            let ok = dialog::answer(
                &req,
                200,
                "OK",
                tag.as_deref(),
                Some(inner.local),
                Some(call.media.answer_sdp(call.session, version)),
            );
            reply(inner, ok, from).await;
        }
        (Method::Ack, Some(call)) => {
            let _ = call.acked.send(true);
        }
        (Method::Ack, None) => {}
        (Method::Bye, call) => {
            let ok = match call {
                Some(_) => dialog::answer(&req, 200, "OK", None, None, None),
                None => no_such_call(&req),
            };
            reply(inner, ok, from).await;
            if let Some(call) = call {
                let _ = call.events.try_send(CallEvent::Hangup);
                forget(inner, &call);
            }
        }
        (Method::Cancel, call) => {
            // Answered at once, so there is nothing left to cancel.
            let answer = match call {
                Some(_) => dialog::answer(&req, 200, "OK", None, None, None),
                None => no_such_call(&req),
            };
            reply(inner, answer, from).await;
        }
        (Method::Info, Some(call)) => {
            let key = std::str::from_utf8(&req.body)
                .ok()
                .and_then(dtmf::key_of_info);
            if let Some(key) = key {
                let _ = call.events.try_send(CallEvent::Key(key));
            }
            reply(
                inner,
                dialog::answer(&req, 200, "OK", None, None, None),
                from,
            )
            .await;
        }
        (Method::Options, _) => {
            reply(
                inner,
                dialog::answer(&req, 200, "OK", None, None, None),
                from,
            )
            .await;
        }
        (_, None) => {
            reply(inner, no_such_call(&req), from).await;
        }
        (_, Some(_)) => {
            let nope = dialog::answer(&req, 501, "Not Implemented", None, None, None);
            reply(inner, nope, from).await;
        }
    }
}

fn no_such_call(req: &Message) -> Bytes {
    dialog::answer(
        req,
        481,
        "Call/Transaction Does Not Exist",
        None,
        None,
        None,
    )
}

async fn new_call(inner: &Arc<Inner>, req: Message, from: SocketAddr) {
    let app = req
        .request_line()
        .and_then(|r| r.uri.as_sip())
        .and_then(|u| u.user.as_deref())
        .and_then(App::parse);
    let Some(app) = app else {
        let nope = dialog::answer(
            &req,
            404,
            "Not Found",
            Some(&dialog::new_token()),
            None,
            None,
        );
        return reply(inner, nope, from).await;
    };
    let Some(offer) = read_offer(&req.body) else {
        let nope = dialog::answer(
            &req,
            488,
            "Not Acceptable Here",
            Some(&dialog::new_token()),
            None,
            None,
        );
        return reply(inner, nope, from).await;
    };
    let tag = dialog::new_token();
    if let App::PickedUp(token) = app {
        if !lock(&inner.picked).contains_key(&token) {
            let gone = dialog::answer(&req, 480, "Temporarily Unavailable", Some(&tag), None, None);
            return reply(inner, gone, from).await;
        }
    }
    if lock(&inner.calls).len() >= MAX_CALLS {
        tracing::warn!(calls = MAX_CALLS, "application server full: call refused");
        let busy = dialog::answer(&req, 503, "Service Unavailable", Some(&tag), None, None);
        return reply(inner, busy, from).await;
    }
    let Some(dlg) = Dialog::from_invite(&req, &tag) else {
        let nope = dialog::answer(&req, 400, "Bad Request", Some(&tag), None, None);
        return reply(inner, nope, from).await;
    };
    let (events_tx, events_rx) = mpsc::channel(32);
    let ip: IpAddr = inner.local.ip();
    let media = match CallMedia::open(ip, &offer, events_tx.clone()).await {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(error = %e, "application server: no media socket");
            let nope = dialog::answer(&req, 503, "Service Unavailable", Some(&tag), None, None);
            return reply(inner, nope, from).await;
        }
    };
    let session = rand::random::<u32>() as u64;
    let ok = dialog::answer(
        &req,
        200,
        "OK",
        Some(&tag),
        Some(inner.local),
        Some(media.answer_sdp(session, 1)),
    );
    let (acked, acked_rx) = tokio::sync::watch::channel(false);
    let call = Arc::new(Call {
        dialog: Mutex::new(dlg),
        proxy: from,
        answer: Mutex::new(ok.clone()),
        acked,
        events: events_tx,
        media: media.clone(),
        session,
        version: Mutex::new(1),
        ack: None,
    });
    lock(&inner.calls).insert(req.call_id().to_owned(), call.clone());
    reply(inner, ok.clone(), from).await;
    // The 200 goes again until the ACK comes (UDP), or the call is given up.
    let retransmit = {
        let inner = inner.clone();
        let mut acked = acked_rx.clone();
        async move {
            let mut wait = T1;
            let mut waited = Duration::ZERO;
            while waited < GIVE_UP {
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = acked.wait_for(|a| *a) => return true,
                }
                if *acked.borrow() {
                    return true;
                }
                waited += wait;
                wait = (wait * 2).min(T2);
                reply(&inner, ok.clone(), from).await;
            }
            false
        }
    };
    let caller = req
        .from()
        .uri
        .as_sip()
        .and_then(|u| u.user_unescaped())
        .unwrap_or_default();
    let run = crate::Run {
        inner: inner.clone(),
        media,
        events: events_rx,
        caller,
        call_id: req.call_id().to_owned(),
    };
    let inner = inner.clone();
    tokio::spawn(async move {
        if !retransmit.await {
            tracing::info!(call_id = %run.call_id, "application call never acknowledged; ended");
            hang_up(&inner, &run.call_id).await;
            return;
        }
        let call_id = run.call_id.clone();
        if let App::PickedUp(token) = app {
            // The pickup that asked for it runs it from now on.
            let waiting = lock(&inner.picked).remove(&token);
            let unwanted = match waiting {
                Some(pickup) => pickup.send(run).err(),
                None => Some(run),
            };
            if unwanted.is_some() {
                hang_up(&inner, &call_id).await;
            }
            return;
        }
        let hung_up = match app {
            App::Voicemail(extension) => crate::voicemail::deposit(run, extension).await,
            App::Mailbox(extension) => crate::mailbox::listen(run, extension).await,
            App::MailboxLogin(customer) => crate::mailbox::login(run, customer).await,
            App::Conference(room) => crate::conference::join(run, room).await,
            App::Menu(menu) => crate::ivr::answer(run, menu).await,
            App::Pickup(customer, extension) => {
                crate::pickup::answer(run, customer, extension).await
            }
            // Handed over above.
            App::PickedUp(_) => true,
        };
        if !hung_up {
            hang_up(&inner, &call_id).await;
        }
        end(&inner, &call_id);
    });
}

/// Keeps a call we placed (answered, acknowledged) like the calls we
/// answered: its BYE, re-INVITEs and keys come to `events`; `session` is
/// our SDP's session id.
pub(crate) fn adopt(
    inner: &Inner,
    dialog: Dialog,
    proxy: SocketAddr,
    media: Arc<CallMedia>,
    events: mpsc::Sender<CallEvent>,
    (ack, session): (Bytes, u64),
) {
    let (acked, _) = tokio::sync::watch::channel(true);
    let call_id = dialog.call_id.clone();
    let call = Arc::new(Call {
        dialog: Mutex::new(dialog),
        proxy,
        answer: Mutex::new(Bytes::new()),
        acked,
        events,
        media,
        session,
        version: Mutex::new(1),
        ack: Some(ack),
    });
    lock(&inner.placed).insert(call_id, call);
}

/// Forgets a call we answered (its media closes with the last handle).
fn end(inner: &Inner, call_id: &str) {
    lock(&inner.calls).remove(call_id);
}

/// Forgets `call`, answered or placed by us.
fn forget(inner: &Inner, call: &Arc<Call>) {
    let call_id = lock(&call.dialog).call_id.clone();
    for map in [&inner.calls, &inner.placed] {
        let mut map = lock(map);
        if map.get(&call_id).is_some_and(|c| Arc::ptr_eq(c, call)) {
            map.remove(&call_id);
        }
    }
}

/// Ends a call we answered from our side: BYE along the recorded route.
pub(crate) async fn hang_up(inner: &Arc<Inner>, call_id: &str) {
    let call = lock(&inner.calls).get(call_id).cloned();
    if let Some(call) = call {
        bye(inner, &call).await;
    }
}

/// Ends a call we placed from our side.
pub(crate) async fn hang_up_placed(inner: &Arc<Inner>, call_id: &str) {
    let call = lock(&inner.placed).get(call_id).cloned();
    if let Some(call) = call {
        bye(inner, &call).await;
    }
}

async fn bye(inner: &Arc<Inner>, call: &Arc<Call>) {
    let request = lock(&call.dialog).request("BYE", inner.local);
    if let Some((bye, _)) = request {
        send_reliably(inner, bye, call.proxy).await;
    }
    forget(inner, call);
}

/// Sends a request a few times (T1, doubling): the proxy absorbs the
/// copies once it answered; nothing waits for the answer.
pub(crate) async fn send_reliably(inner: &Arc<Inner>, bytes: Bytes, to: SocketAddr) {
    reply(inner, bytes.clone(), to).await;
    retransmit(inner, bytes, to);
}

/// Sends a request now, without waiting (a full socket buffer drops it:
/// its copies follow), so that requests sent in order leave in order.
pub(crate) fn send_now(inner: &Inner, bytes: &Bytes, to: SocketAddr) {
    let _ = inner.socket.try_send_to(bytes, to);
}

/// The copies of a request sent once (see [`send_reliably`]).
pub(crate) fn retransmit(inner: &Arc<Inner>, bytes: Bytes, to: SocketAddr) {
    let inner = inner.clone();
    tokio::spawn(async move {
        let mut wait = T1;
        for _ in 0..3 {
            tokio::time::sleep(wait).await;
            reply(&inner, bytes.clone(), to).await;
            wait *= 2;
        }
    });
}

impl Inner {
    /// Where the proxy is, for requests outside any dialog (MWI).
    pub(crate) fn proxy(&self) -> Option<SocketAddr> {
        // The proxy socket of our own family (we are bound to one loopback).
        let ours = |p: &&SocketAddr| p.is_ipv4() == self.local.is_ipv4();
        let p = self.config.proxies.iter().find(ours)?;
        Some(if p.ip().is_unspecified() {
            SocketAddr::new(self.local.ip(), p.port())
        } else {
            *p
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn application_users_round_trip() {
        let app = App::Voicemail(ExtensionId(42));
        assert_eq!(app.user(), "vm-42");
        assert_eq!(App::parse("vm-42"), Some(app));
        assert_eq!(App::parse("vm-x"), None);
        let own = App::Mailbox(ExtensionId(7));
        assert_eq!(own.user(), "vmbox-7");
        assert_eq!(App::parse("vmbox-7"), Some(own));
        assert_eq!(App::parse("vmbox-"), None);
        let login = App::MailboxLogin(CustomerId(5));
        assert_eq!(login.user(), "vmlogin-5");
        assert_eq!(App::parse("vmlogin-5"), Some(login));
        let room = App::Conference(ConferenceRoomId(3));
        assert_eq!(room.user(), "conf-3");
        assert_eq!(App::parse("conf-3"), Some(room));
        assert_eq!(App::parse("conf-"), None);
        for app in [
            App::Pickup(CustomerId(4), None),
            App::Pickup(CustomerId(4), Some(ExtensionId(12))),
            App::PickedUp(77),
        ] {
            assert_eq!(App::parse(&app.user()), Some(app));
        }
        assert_eq!(App::parse("pickup-x"), None);
        let menu = App::Menu(IvrMenuId(9));
        assert_eq!(menu.user(), "ivr-9");
        assert_eq!(App::parse("ivr-9"), Some(menu));
        assert_eq!(App::parse("101"), None);
    }

    #[test]
    fn only_the_proxy_is_trusted() {
        let config = AppConfig {
            listen: "127.0.0.1:0".parse().expect("addr"),
            proxies: vec!["0.0.0.0:5060".parse().expect("addr")],
            audio: AudioFiles::new("/nonexistent"),
        };
        assert!(trusted(&config, "127.0.0.1:5060".parse().expect("addr")));
        assert!(!trusted(&config, "127.0.0.1:5061".parse().expect("addr")));
        assert!(!trusted(&config, "192.0.2.1:5060".parse().expect("addr")));
    }
}
