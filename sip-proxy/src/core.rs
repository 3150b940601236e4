//! What every SIP handler shares: this node ([`Node`]), the directory and
//! the location service, authentication and the abuse guard, calls in
//! progress, events, limits and the media relay; and the request contexts
//! with their transaction tables and timers. The handlers (registrar,
//! routing, proxy, carrier registrations) build on it; the dispatcher above
//! them feeds it.

use std::sync::{Arc, Mutex, MutexGuard, Weak};

use pbx_sip_message::{Host, Message, Method, Uri};

use crate::admission::Admission;
use crate::config::SipConfig;
use crate::context::{Context, TimerTarget};
use crate::dialogs::Dialogs;
use crate::digest::DigestAuth;
use crate::directory::Directory;
use crate::events::EventBus;
use crate::guard::Guard;
use crate::location::Location;
use crate::node::{response_flow, Node};
use crate::sharded::ShardedMap;
use crate::stats::Stats;
use crate::timer::TimerQueue;
use crate::transaction::{ClientKey, ServerKey, ServerTransaction, TimerKind};
use crate::transport::{Flow, Transports};

/// A timer of a context.
pub struct TimerItem {
    pub ctx: Weak<Mutex<Context>>,
    pub target: TimerTarget,
    pub kind: TimerKind,
}

pub struct Core {
    pub config: SipConfig,
    /// Identity, addresses and the way out.
    pub node: Node,
    pub directory: Arc<Directory>,
    pub location: Arc<Location>,
    pub auth: DigestAuth,
    /// Password guessers, scanners and floods.
    pub guard: Guard,
    /// Toll-fraud alarms of calls to the public network.
    pub fraud: crate::fraud::FraudWatch,
    pub dialogs: Dialogs,
    pub events: EventBus,
    /// Outbound calls' limits and trunk channels on this node.
    pub admission: Arc<Admission>,
    pub stats: Arc<Stats>,
    /// The media relay calls are anchored on.
    pub media: pbx_media::Relay,
    pub server_txns: ShardedMap<ServerKey, Arc<Mutex<Context>>>,
    pub client_txns: ShardedMap<ClientKey, (Weak<Mutex<Context>>, usize)>,
    /// Calls being set up, by call key (Call-ID, caller's tag): what a
    /// colleague's pickup finds.
    pub calls_set_up: ShardedMap<crate::admission::CallKey, Weak<Mutex<Context>>>,
    pub timers: TimerQueue<TimerItem>,
    /// This node's media application server (voicemail), once it runs:
    /// calls go to it as to a phone, and its requests are trusted.
    pub applications: std::sync::OnceLock<std::net::SocketAddr>,
    /// The node's audio store (recordings, customers' music), once given.
    pub audio: std::sync::OnceLock<NodeAudio>,
}

/// The announcement in a language (`de`, `en`…): 8 kHz samples.
pub type Announcement = Box<dyn Fn(&str) -> Arc<[i16]> + Send + Sync>;

/// The audio a node works with beside its calls: the audio store (call
/// recordings go there, customers' uploaded music is read from there) and
/// what both parties hear before a call is recorded, by the customer's
/// language.
pub struct NodeAudio {
    pub files: pbx_store::audio_files::AudioFiles,
    pub recording_announcement: Announcement,
}

pub fn lock(ctx: &Mutex<Context>) -> MutexGuard<'_, Context> {
    ctx.lock().unwrap_or_else(|p| p.into_inner())
}

impl Core {
    pub fn new(
        config: SipConfig,
        transports: Arc<Transports>,
        directory: Arc<Directory>,
        location: Arc<Location>,
        stats: Arc<Stats>,
        events: EventBus,
    ) -> Core {
        let auth = DigestAuth::new(&config.secret, config.digest.clone());
        let admission = Arc::new(Admission::default());
        let events = events.with_admission(admission.clone());
        let guard = Guard::new(config.guard.clone(), stats.clone());
        Core {
            guard,
            fraud: crate::fraud::FraudWatch::default(),
            admission,
            auth,
            node: Node::new(&config, transports, stats.clone()),
            directory,
            location,
            dialogs: Dialogs::default(),
            events,
            stats,
            media: pbx_media::Relay::new(config.media.relay.clone()),
            server_txns: ShardedMap::default(),
            client_txns: ShardedMap::default(),
            calls_set_up: ShardedMap::default(),
            timers: TimerQueue::default(),
            applications: std::sync::OnceLock::new(),
            audio: std::sync::OnceLock::new(),
            config,
        }
    }

    /// Sends a response through the context's server transaction.
    pub fn send_response(&self, ctx: &Arc<Mutex<Context>>, c: &mut Context, resp: &Message) {
        let code = resp.status().unwrap_or(500);
        let bytes = resp.to_bytes();
        let (ok, out) = c.server.on_send(code, bytes.clone(), &self.config.timers);
        if ok {
            self.node.send(&c.reply_flow, bytes);
            self.arm(ctx, TimerTarget::Server, out.arm);
        }
        if code >= 200 && c.server.is_invite() && code >= 300 {
            // Nothing but the response bytes is needed until the ACK.
            c.request = None;
        }
    }

    // ----- contexts and timers -----

    /// Creates and registers a context for a request handled statefully;
    /// None if a context for it already exists (a retransmission raced us).
    pub fn new_context(&self, req: Message, flow: Flow) -> Option<Arc<Mutex<Context>>> {
        let key = ServerKey::of(&req);
        let method = req.method().cloned().unwrap_or(Method::Options);
        let invite = method == Method::Invite;
        let ctx = Arc::new(Mutex::new(Context {
            key: key.clone(),
            method,
            reply_flow: response_flow(req.top_via(), flow),
            request: Some(req),
            inbound: flow,
            server: ServerTransaction::new(
                invite,
                flow.protocol.is_reliable(),
                &self.config.timers,
            ),
            branches: Vec::new(),
            best: None,
            answered: false,
            cancelled: false,
            call: None,
            in_dialog: None,
            early: Vec::new(),
            finished: false,
            no_answer: false,
            no_answer_at: None,
            plan: std::collections::VecDeque::new(),
            carrier: None,
            media: None,
            pickup: None,
        }));
        self.server_txns.insert_new(key, ctx.clone()).then_some(ctx)
    }

    pub fn arm(
        &self,
        ctx: &Arc<Mutex<Context>>,
        target: TimerTarget,
        timers: Vec<(TimerKind, std::time::Duration)>,
    ) {
        for (kind, delay) in timers {
            self.timers.schedule(
                delay,
                TimerItem {
                    ctx: Arc::downgrade(ctx),
                    target,
                    kind,
                },
            );
        }
    }

    /// Removes a context from the tables once nothing is left to wait for.
    pub fn finish_if_done(&self, c: &mut Context) {
        if c.finished || !c.is_done() {
            return;
        }
        c.finished = true;
        self.server_txns.remove(&c.key);
        if c.call.is_some() && c.method == pbx_sip_message::Method::Invite {
            self.calls_set_up.remove(&c.call_key());
        }
        for b in &c.branches {
            self.client_txns.remove(&b.key);
            if let Some((key, _)) = &b.cancel {
                self.client_txns.remove(key);
            }
        }
    }

    /// Whether `flow` comes from this node's application server.
    pub fn from_application(&self, flow: &Flow) -> bool {
        flow.protocol == crate::transport::Protocol::Udp
            && self.applications.get() == Some(&flow.remote)
    }

    /// A target for application `user` (e.g. `extension`'s voicemail, a
    /// conference room), None when no application server runs.
    pub fn application_binding(
        &self,
        tenant: &crate::directory::Tenant,
        extension: Option<pbx_store::ExtensionId>,
        user: &str,
    ) -> Option<crate::location::Binding> {
        let at = *self.applications.get()?;
        let flow = self
            .node
            .transports
            .flow_to(crate::transport::Protocol::Udp, at)?;
        Some(crate::location::Binding::application(
            tenant.reseller,
            tenant.customer,
            extension,
            user,
            flow,
        ))
    }

    /// True if the Request-URI names this node itself (no user, our address
    /// or one of the served domains), i.e. the request is for the proxy.
    pub fn addressed_to_us(&self, req: &Message) -> bool {
        let Some(uri) = req.request_line().and_then(|r| r.uri.as_sip()) else {
            return false;
        };
        if uri.user.is_some() {
            return false;
        }
        match &uri.host {
            Host::Name(name) => {
                self.directory.by_domain(name).is_some() || self.node.advertises_name(name)
            }
            _ => self.node.is_us(&uri.host, uri.port, None),
        }
    }

    /// The customer a request names: a REGISTER's To domain, any other's
    /// From domain (the caller's).
    pub fn customer_named(&self, req: &Message) -> Option<pbx_store::CustomerId> {
        let uri = if req.method() == Some(&Method::Register) {
            &req.to().uri
        } else {
            &req.from().uri
        };
        match uri.as_sip().map(|u| &u.host) {
            Some(Host::Name(name)) => self.directory.by_domain(name).map(|t| t.customer),
            _ => None,
        }
    }

    /// The tenant a request is for, from its Request-URI or (when that names
    /// this node by address) its To domain.
    pub fn tenant_of_request(&self, req: &Message) -> Option<Arc<crate::directory::Tenant>> {
        let uri = req.request_line()?.uri.as_sip()?;
        match &uri.host {
            Host::Name(name) => self.directory.by_domain(name),
            _ => match &req.to().uri {
                Uri::Sip(to) => match &to.host {
                    Host::Name(name) => self.directory.by_domain(name),
                    _ => None,
                },
                _ => None,
            },
        }
    }
}
