//! Live events: registrations, calls, rated records and configuration
//! changes, over a WebSocket at `/api/v1/events`, scoped by the token like
//! the REST API; and the active-calls view built from the same events.
//!
//! Every event gets a sequence number and is kept for a retention window in
//! the [`EventHub`], so a client that reconnects with `?since=<last seq>` (or
//! `Last-Event-ID`) receives what it missed. Publishing is a push onto that
//! buffer and never waits for a client: a client that cannot keep up is
//! closed with code [`SLOW_CLIENT`] and resumes from its last sequence number.
//! Sequence numbers are per node.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Json as JsonOut;
use pbx_store::call_records::CallDirection;
use pbx_store::{CustomerId, DeviceId, ExtensionId, Millis, Principal, ResellerId, Scope};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Caller;
use super::input::Query;
use super::problem::{ApiResult, Problem};
use crate::AppState;

/// WebSocket close code for a client that fell behind.
pub const SLOW_CLIENT: u16 = 4001;
/// WebSocket close code when the token stops being valid.
pub const CREDENTIAL_ENDED: u16 = 4003;
/// How long one message may take to leave before the client counts as slow.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a connection is pinged and its token checked again.
const HEARTBEAT: Duration = Duration::from_secs(30);
/// Calls held in the active-calls view before stale ones are pruned.
const MAX_ACTIVE_CALLS: usize = 100_000;
/// Calls older than this (a week, the longest allowed call) are stale.
const ACTIVE_CALL_HORIZON_MS: i64 = 7 * 86_400_000;
/// Events sent per wake-up, so that one busy client does not hold the lock long.
const BATCH: usize = 256;

/// Whose event it is; None on both for the operator's own events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tenant {
    pub reseller: Option<ResellerId>,
    pub customer: Option<CustomerId>,
    /// For every subscriber (news about the stream itself, such as lost events).
    pub everyone: bool,
}

impl Tenant {
    pub fn customer(reseller: ResellerId, customer: CustomerId) -> Tenant {
        Tenant {
            reseller: Some(reseller),
            customer: Some(customer),
            everyone: false,
        }
    }

    pub fn everyone() -> Tenant {
        Tenant {
            everyone: true,
            ..Tenant::default()
        }
    }

    /// Whether a caller of `scope` may see it.
    fn visible_to(&self, scope: &Scope) -> bool {
        if self.everyone {
            return true;
        }
        match scope {
            Scope::Operator => true,
            Scope::Reseller { reseller } => self.reseller == Some(*reseller),
            Scope::Customer { customer, .. } => self.customer == Some(*customer),
            // A customer's users see their own extension only, which the
            // stream does not tell apart yet: nothing rather than too much.
            Scope::Extension { .. } => false,
        }
    }
}

#[derive(Debug)]
struct Stored {
    seq: u64,
    at: Millis,
    tenant: Tenant,
    json: Arc<str>,
}

/// A call in progress, as the active-calls view shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ActiveCall {
    pub reseller_id: ResellerId,
    pub customer_id: CustomerId,
    pub call_id: String,
    pub caller: String,
    pub callee: String,
    pub caller_extension_id: Option<ExtensionId>,
    pub callee_extension_id: Option<ExtensionId>,
    pub direction: CallDirection,
    pub started_at: Millis,
    pub answered_at: Option<Millis>,
}

#[derive(Debug, Default)]
struct Inner {
    next_seq: u64,
    events: VecDeque<Stored>,
    /// Keyed by customer, Call-ID and the caller's From tag: a phone of one
    /// tenant reusing another's Call-ID must not touch that tenant's call.
    calls: HashMap<(CustomerId, String, String), ActiveCall>,
    /// Registrations heard of on this node, by customer, device and contact:
    /// the expiry, or None once the phone unregistered. The database holds
    /// bindings a little behind (written in batches); live views lay this over it.
    bindings: HashMap<(CustomerId, DeviceId, String), HeardBinding>,
}

/// A registration as this node last heard of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeardBinding {
    pub extension_id: ExtensionId,
    pub heard_at: Millis,
    /// None once the binding ended.
    pub expires_at: Option<Millis>,
}

/// Bindings remembered before old ones are pruned.
const MAX_BINDINGS: usize = 200_000;

/// The node's recent events and calls in progress.
#[derive(Debug)]
pub struct EventHub {
    inner: Mutex<Inner>,
    latest: watch::Sender<u64>,
    capacity: usize,
    retention_ms: i64,
    heartbeat: Duration,
}

/// What a client asked for is older than the buffer holds.
#[derive(Debug, PartialEq, Eq)]
struct Gap {
    /// The oldest sequence number still held.
    oldest: u64,
}

impl EventHub {
    /// Keeps at most `capacity` events, none older than `retention`.
    pub fn new(capacity: usize, retention: Duration) -> EventHub {
        EventHub {
            inner: Mutex::new(Inner {
                next_seq: 1,
                ..Inner::default()
            }),
            latest: watch::channel(0).0,
            capacity: capacity.max(1),
            retention_ms: i64::try_from(retention.as_millis()).unwrap_or(i64::MAX),
            heartbeat: HEARTBEAT,
        }
    }

    /// Pings connections (and checks their tokens again) every `heartbeat`
    /// instead of every 30 s.
    pub fn with_heartbeat(mut self, heartbeat: Duration) -> EventHub {
        self.heartbeat = heartbeat.max(Duration::from_millis(10));
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Publishes one event of `kind` with its `data`; returns its sequence number.
    pub fn publish(&self, tenant: Tenant, kind: &str, at: Millis, data: serde_json::Value) -> u64 {
        self.publish_json(tenant, kind, at, &data.to_string())
    }

    /// Publishes an event whose data is already JSON (an object), so that
    /// the SIP events are serialised once, outside the lock.
    pub fn publish_json(&self, tenant: Tenant, kind: &str, at: Millis, data: &str) -> u64 {
        // `kind` is one of our own snake_case names: nothing to escape.
        let tail = format!(",\"type\":\"{kind}\",\"at\":{at},\"data\":{data}}}");
        let seq = {
            let mut inner = self.lock();
            let seq = inner.next_seq;
            inner.next_seq += 1;
            let json = format!("{{\"seq\":{seq}{tail}");
            inner.events.push_back(Stored {
                seq,
                at: pbx_store::now_ms(),
                tenant,
                json: json.into(),
            });
            let horizon = pbx_store::now_ms().saturating_sub(self.retention_ms);
            while inner.events.len() > self.capacity
                || inner.events.front().is_some_and(|e| e.at < horizon)
            {
                inner.events.pop_front();
            }
            seq
        };
        self.latest.send_replace(seq);
        seq
    }

    /// The newest sequence number published (0 before the first).
    pub fn latest(&self) -> u64 {
        *self.latest.borrow()
    }

    /// Events after `after` that `scope` may see, at most `max`, and the
    /// sequence number the next call should continue after.
    fn since(&self, after: u64, scope: &Scope, max: usize) -> Result<(Vec<Arc<str>>, u64), Gap> {
        let inner = self.lock();
        let oldest = inner.events.front().map_or(inner.next_seq, |e| e.seq);
        // Behind the buffer, or ahead of this node (it restarted, or the
        // client resumes on another node): either way events may be missed.
        if after.saturating_add(1) < oldest || after >= inner.next_seq {
            return Err(Gap { oldest });
        }
        let start = inner.events.partition_point(|e| e.seq <= after);
        let mut out = Vec::new();
        let mut cursor = after;
        for e in inner.events.iter().skip(start) {
            if out.len() == max {
                break;
            }
            cursor = e.seq;
            if e.tenant.visible_to(scope) {
                out.push(e.json.clone());
            }
        }
        Ok((out, cursor))
    }

    pub fn call_started(&self, call: ActiveCall, caller_tag: String) {
        let key = (call.customer_id, call.call_id.clone(), caller_tag);
        let mut inner = self.lock();
        // Calls whose end was never heard of (a lagging relay) do not pile up.
        if inner.calls.len() >= MAX_ACTIVE_CALLS {
            let horizon = call.started_at.saturating_sub(ACTIVE_CALL_HORIZON_MS);
            inner.calls.retain(|_, c| c.started_at > horizon);
        }
        inner.calls.insert(key, call);
    }

    pub fn call_answered(&self, customer: CustomerId, call_id: &str, caller_tag: &str, at: Millis) {
        let key = (customer, call_id.to_owned(), caller_tag.to_owned());
        if let Some(call) = self.lock().calls.get_mut(&key) {
            call.answered_at.get_or_insert(at);
        }
    }

    pub fn call_ended(&self, customer: CustomerId, call_id: &str, caller_tag: &str) {
        let key = (customer, call_id.to_owned(), caller_tag.to_owned());
        self.lock().calls.remove(&key);
    }

    /// Notes a registration (expires_at Some) or its end (None).
    pub fn binding_heard(
        &self,
        customer: CustomerId,
        device: DeviceId,
        contact: &str,
        binding: HeardBinding,
    ) {
        let mut inner = self.lock();
        if inner.bindings.len() >= MAX_BINDINGS {
            let now = binding.heard_at;
            inner
                .bindings
                .retain(|_, b| b.expires_at.is_some_and(|e| e > now));
        }
        inner
            .bindings
            .insert((customer, device, contact.to_owned()), binding);
    }

    /// What this node heard of one customer's registrations: (device,
    /// contact, binding).
    pub fn bindings_heard(&self, customer: CustomerId) -> Vec<(DeviceId, String, HeardBinding)> {
        self.lock()
            .bindings
            .iter()
            .filter(|((c, _, _), _)| *c == customer)
            .map(|((_, d, contact), b)| (*d, contact.clone(), b.clone()))
            .collect()
    }

    /// Calls in progress on this node that `scope` may see, oldest first.
    pub fn active_calls(&self, scope: &Scope) -> Vec<ActiveCall> {
        let mut calls: Vec<ActiveCall> = self
            .lock()
            .calls
            .values()
            .filter(|c| Tenant::customer(c.reseller_id, c.customer_id).visible_to(scope))
            .cloned()
            .collect();
        calls.sort_by(|a, b| (a.started_at, &a.call_id).cmp(&(b.started_at, &b.call_id)));
        calls
    }
}

/// Publishes configuration changes (from any node, through the store's
/// change feed) as `config_changed` events. Runs until the feed closes.
pub async fn follow_changes(store: pbx_store::Store, hub: Arc<EventHub>) {
    use pbx_store::changes::Change;
    use tokio::sync::broadcast::error::RecvError;
    let mut changes = store.changes().subscribe();
    loop {
        let change = match changes.recv().await {
            Ok(change) => change,
            Err(RecvError::Lagged(_)) => Change::Resync,
            Err(RecvError::Closed) => return,
        };
        let tenant = match &change {
            Change::Customer { customer } => {
                match store.customers().get(&Principal::system(), *customer).await {
                    Ok(c) => Tenant::customer(c.reseller_id, c.id),
                    // Gone already, or the database is away: the operator still hears of it.
                    Err(_) => Tenant::default(),
                }
            }
            Change::Reseller { reseller } => Tenant {
                reseller: Some(*reseller),
                ..Tenant::default()
            },
            // Anything may have changed: every client should reload.
            Change::Resync => Tenant::everyone(),
            Change::Numbers | Change::Trunks | Change::PricePlans | Change::Guard => {
                Tenant::default()
            }
            // A box's messages are not configuration.
            Change::Voicemail { .. } => continue,
        };
        let data = serde_json::to_value(&change).unwrap_or_default();
        hub.publish(tenant, "config_changed", pbx_store::now_ms(), data);
    }
}

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(active_calls))
        .routes(routes!(events))
}

/// Calls in progress now.
#[utoipa::path(get, path = "/api/v1/calls/active", tag = "live",
    responses((status = 200, body = [ActiveCall])))]
async fn active_calls(
    State(s): State<AppState>,
    Caller(by): Caller,
) -> ApiResult<JsonOut<Vec<ActiveCall>>> {
    Ok(JsonOut(s.api.events.active_calls(&by.scope)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Resume after this sequence number (the `seq` of the last event
    /// received). Absent: only events from now on.
    #[param(minimum = 0)]
    pub since: Option<i64>,
}

/// The live event stream (WebSocket). Each text message is one event:
/// `{"seq":N,"type":"call_started","at":ms,"data":{…}}`. Types:
/// device_registered, device_unregistered, call_started, call_answered,
/// call_forwarded_out (a forward sends a call to a number outside: its
/// outbound leg starts), call_ended, record_rated, limit_reached (an
/// outbound call refused by a
/// fraud or cost limit), call_unrouted (operator only: a carrier's call for
/// a number nobody holds), config_changed. The first message is
/// `{"type":"hello","seq":<latest>}`; `{"type":"gap","oldest":N}` says that
/// events before N are no longer held (reload through the REST API).
#[utoipa::path(get, path = "/api/v1/events", tag = "live", params(EventsQuery,
        ("Last-Event-ID" = Option<i64>, Header, minimum = 0, description = "Same as since")),
    responses((status = 101, description = "Switching to the WebSocket protocol")))]
async fn events(
    State(s): State<AppState>,
    Caller(by): Caller,
    Query(q): Query<EventsQuery>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> ApiResult<Response> {
    let last_event_id = match headers.get("last-event-id") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|v| v.trim().parse::<i64>().ok())
                .and_then(|v| u64::try_from(v).ok())
                .ok_or_else(|| {
                    Problem::bad_request("Last-Event-ID must be a sequence number")
                        .field("Last-Event-ID", "must be a sequence number")
                })?,
        ),
    };
    let since = match q.since {
        Some(s) => Some(u64::try_from(s).map_err(|_| {
            Problem::bad_request("since must not be negative").field("since", "must be 0 or more")
        })?),
        None => last_event_id,
    };
    // A browser's session cookie goes with any page's WebSocket, so a stream
    // opened with one must come from a page of the same origin.
    let session = match super::auth::bearer(&headers) {
        Some(_) => None,
        None => super::session::cookie(&headers).map(str::to_owned),
    };
    if session.is_some() && !same_origin(&headers) {
        return Err(Problem::forbidden(
            "a session's event stream must be opened from a page of the same origin",
        ));
    }
    let Ok(ws) = ws else {
        return Err(Problem::new(
            axum::http::StatusCode::UPGRADE_REQUIRED,
            "websocket-required",
            "This is a WebSocket endpoint",
        ));
    };
    let hub = s.api.events.clone();
    let store = s.store.clone();
    // Clients have nothing to send but control frames: small limits.
    Ok(ws
        .max_message_size(4096)
        .max_frame_size(4096)
        .on_upgrade(move |socket| stream(socket, hub, store, by, session, since)))
}

async fn stream(
    mut socket: WebSocket,
    hub: Arc<EventHub>,
    store: pbx_store::Store,
    by: Principal,
    session: Option<String>,
    since: Option<u64>,
) {
    let mut latest = hub.latest.subscribe();
    let mut cursor = since.unwrap_or_else(|| hub.latest());
    let hello = serde_json::json!({ "type": "hello", "seq": hub.latest() }).to_string();
    if send(&mut socket, Message::Text(hello.into()))
        .await
        .is_err()
    {
        return;
    }
    let mut ping = tokio::time::interval(hub.heartbeat);
    ping.tick().await;
    loop {
        loop {
            match hub.since(cursor, &by.scope, BATCH) {
                Ok((events, next)) => {
                    for json in events {
                        if send(&mut socket, Message::Text(json.as_ref().into()))
                            .await
                            .is_err()
                        {
                            close(
                                socket,
                                SLOW_CLIENT,
                                &format!("too slow: resume with since={cursor}"),
                            )
                            .await;
                            return;
                        }
                    }
                    let done = next == cursor;
                    cursor = next;
                    if done {
                        break;
                    }
                }
                Err(Gap { oldest }) if since.is_some_and(|s| s == cursor) => {
                    // The client asked for more than is held: say so once, then go on.
                    let gap = serde_json::json!({ "type": "gap", "oldest": oldest }).to_string();
                    if send(&mut socket, Message::Text(gap.into())).await.is_err() {
                        return;
                    }
                    cursor = oldest.saturating_sub(1);
                }
                Err(Gap { .. }) => {
                    // Fell behind while connected: the buffer moved past us.
                    close(
                        socket,
                        SLOW_CLIENT,
                        &format!("too slow: resume with since={cursor}"),
                    )
                    .await;
                    return;
                }
            }
        }
        tokio::select! {
            changed = latest.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            _ = ping.tick() => {
                // A token revoked or expired, or a tenant suspended, ends the stream too.
                let ended = match (&session, &by.actor) {
                    (Some(id), _) => matches!(store.sessions().resume(id).await, Ok(None)),
                    (None, pbx_store::Actor::Token { id, .. }) => {
                        matches!(store.api_tokens().still_usable(*id).await, Ok(false))
                    }
                    _ => false,
                };
                if ended {
                    close(socket, CREDENTIAL_ENDED, "the credential is no longer valid").await;
                    return;
                }
                if send(&mut socket, Message::Ping(Vec::new().into())).await.is_err() {
                    return;
                }
            }
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                // Clients have nothing to say; pongs and the like are ignored.
                Some(Ok(_)) => {}
            },
        }
    }
}

/// Whether `Origin` names the host the request was sent to.
fn same_origin(headers: &HeaderMap) -> bool {
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|v| v.to_str().ok());
    let origin = headers
        .get(axum::http::header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .and_then(|o| o.split_once("://").map(|(_, rest)| rest));
    matches!((host, origin), (Some(h), Some(o)) if h.eq_ignore_ascii_case(o))
}

async fn send(socket: &mut WebSocket, message: Message) -> Result<(), ()> {
    match tokio::time::timeout(SEND_TIMEOUT, socket.send(message)).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}

async fn close(mut socket: WebSocket, code: u16, reason: &str) {
    let frame = CloseFrame {
        code,
        reason: reason.to_owned().into(),
    };
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        socket.send(Message::Close(Some(frame))),
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reseller(n: i64) -> Scope {
        Scope::Reseller {
            reseller: ResellerId(n),
        }
    }

    #[test]
    fn scopes_events_and_resumes_after_a_sequence_number() {
        let hub = EventHub::new(4, Duration::from_secs(600));
        let x = Tenant::customer(ResellerId(1), CustomerId(10));
        let y = Tenant::customer(ResellerId(2), CustomerId(20));
        assert!(Tenant::everyone().visible_to(&reseller(7)));
        for (tenant, n) in [(x, 1), (y, 2), (x, 3)] {
            hub.publish(tenant, "test", 0, serde_json::json!({ "n": n }));
        }
        let (seen, cursor) = hub.since(0, &reseller(1), 10).unwrap();
        assert_eq!(seen.len(), 2);
        assert!(seen[0].contains("\"n\":1") && seen[1].contains("\"n\":3"));
        assert_eq!(cursor, 3);
        let customer_y = Scope::Customer {
            reseller: ResellerId(2),
            customer: CustomerId(20),
        };
        let (seen, _) = hub.since(0, &customer_y, 10).unwrap();
        assert_eq!(seen.len(), 1);
        // The operator's own events reach only the operator.
        hub.publish(
            Tenant::default(),
            "config_changed",
            0,
            serde_json::json!({}),
        );
        assert!(hub.since(3, &reseller(1), 10).unwrap().0.is_empty());
        assert_eq!(hub.since(3, &Scope::Operator, 10).unwrap().0.len(), 1);
        // Beyond capacity the oldest go, and asking for them is a gap.
        hub.publish(x, "test", 0, serde_json::json!({}));
        assert_eq!(hub.since(0, &Scope::Operator, 10), Err(Gap { oldest: 2 }));
        assert!(hub.since(1, &Scope::Operator, 10).is_ok());
    }

    #[test]
    fn tracks_calls_in_progress_per_tenant() {
        let hub = EventHub::new(10, Duration::from_secs(600));
        let call = |id: &str, reseller: i64| ActiveCall {
            reseller_id: ResellerId(reseller),
            customer_id: CustomerId(reseller * 10),
            call_id: id.to_owned(),
            caller: "101".into(),
            callee: "102".into(),
            caller_extension_id: None,
            callee_extension_id: None,
            direction: CallDirection::Internal,
            started_at: 1,
            answered_at: None,
        };
        hub.call_started(call("a", 1), "t".into());
        hub.call_started(call("b", 2), "t".into());
        hub.call_answered(CustomerId(10), "a", "t", 5);
        // Another customer's phone naming the same Call-ID and tag changes nothing.
        hub.call_ended(CustomerId(20), "a", "t");
        let seen = hub.active_calls(&reseller(1));
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].answered_at, Some(5));
        hub.call_ended(CustomerId(10), "a", "t");
        assert!(hub.active_calls(&reseller(1)).is_empty());
        assert_eq!(hub.active_calls(&Scope::Operator).len(), 1);
    }
}
