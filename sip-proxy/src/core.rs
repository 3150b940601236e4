//! The SIP core: every received message passes through here. It parses,
//! stamps the top Via with where the request really came from (RFC 3581),
//! matches transactions (absorbing retransmissions), sheds load when the
//! transaction table is full, and hands new requests to the registrar or the
//! proxy. It also owns the transaction tables and the timers that drive them,
//! and knows this node's own addresses (for Via and Record-Route).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use bytes::Bytes;
use pbx_sip_message::{Header, HeaderName, Host, Message, Method, NameAddr, ParseError, Uri, Via};

use crate::admission::Admission;
use crate::config::SipConfig;
use crate::context::{Context, TimerTarget};
use crate::dialogs::Dialogs;
use crate::digest::DigestAuth;
use crate::directory::Directory;
use crate::events::EventBus;
use crate::guard::{Guard, Screen};
use crate::location::Location;
use crate::registrar::Registrar;
use crate::sharded::ShardedMap;
use crate::stats::Stats;
use crate::timer::TimerQueue;
use crate::transaction::{ClientKey, ServerKey, ServerTransaction, TimerKind};
use crate::transport::{Flow, Inbound, Protocol, Transports};
use crate::trunk_registration::TrunkRegistrations;

/// A timer of a context.
pub struct TimerItem {
    pub ctx: Weak<Mutex<Context>>,
    pub target: TimerTarget,
    pub kind: TimerKind,
}

pub struct Core {
    pub config: SipConfig,
    pub transports: Arc<Transports>,
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
    /// This node's registrations with carriers.
    pub trunk_registrations: TrunkRegistrations,
    pub stats: Arc<Stats>,
    /// The media relay calls are anchored on.
    pub media: pbx_media::Relay,
    pub registrar: Registrar,
    pub server_txns: ShardedMap<ServerKey, Arc<Mutex<Context>>>,
    pub client_txns: ShardedMap<ClientKey, (Weak<Mutex<Context>>, usize)>,
    pub timers: TimerQueue<TimerItem>,
    /// To tag of responses sent without a transaction (their ACKs are dropped).
    pub sl_tag: String,
    /// Marks this node's Record-Route entries (`;r=` parameter).
    pub node_token: String,
    /// How every branch this node creates starts.
    branch_prefix: String,
    branch_counter: AtomicU64,
    local_ips: Mutex<HashMap<IpAddr, IpAddr>>,
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
        let token = pbx_store::secrets::sha256_hex(&format!(
            "{}:{}",
            config.node_id,
            pbx_store::secrets::hex(&config.secret)
        ));
        let auth = DigestAuth::new(&config.secret, config.digest.clone());
        let admission = Arc::new(Admission::default());
        let events = events.with_admission(admission.clone());
        let guard = Guard::new(config.guard.clone(), stats.clone());
        Core {
            guard,
            fraud: crate::fraud::FraudWatch::default(),
            admission,
            trunk_registrations: TrunkRegistrations::default(),
            auth,
            transports,
            directory,
            location,
            dialogs: Dialogs::default(),
            events,
            stats,
            media: pbx_media::Relay::new(config.media.relay.clone()),
            registrar: Registrar::default(),
            server_txns: ShardedMap::default(),
            client_txns: ShardedMap::default(),
            timers: TimerQueue::default(),
            sl_tag: format!("sl{}", &token[..10]),
            node_token: token[..12].to_owned(),
            branch_prefix: format!("{}{}", pbx_sip_message::VIA_BRANCH_COOKIE, &token[..8]),
            branch_counter: AtomicU64::new(rand::random::<u32>() as u64),
            local_ips: Mutex::new(HashMap::new()),
            config,
        }
    }

    // ----- receiving -----

    fn on_bytes(&self, data: Bytes, flow: Flow, stream: bool) {
        // Keep-alives over UDP (CRLF) carry no message.
        if data.iter().all(|b| b.is_ascii_whitespace()) {
            return;
        }
        let limits = &self.config.transports.limits;
        let parsed = if stream {
            Message::parse_stream(data.clone(), limits)
        } else {
            Message::parse_datagram(data.clone(), limits)
        };
        match parsed {
            Ok(msg) if msg.is_request() => self.on_request(msg, flow),
            Ok(msg) => self.on_response(msg, flow),
            Err(e) => self.on_malformed(&data, &e, flow),
        }
    }

    fn on_malformed(&self, data: &Bytes, error: &ParseError, flow: Flow) {
        Stats::inc(&self.stats.malformed);
        tracing::debug!(remote = %flow.remote, error = %error, "malformed SIP message");
        if let Some(response) = Message::error_response(data, error, &self.config.transports.limits)
        {
            // Parse the response back to find where it goes (rport/received).
            let target = Message::parse_datagram(response.clone(), &self.config.transports.limits)
                .map(|r| {
                    let mut via = r.top_via().clone();
                    via.stamp_source(flow.remote);
                    response_flow(&via, flow)
                })
                .unwrap_or(flow);
            self.send(&target, response);
        }
    }

    fn on_request(&self, mut req: Message, flow: Flow) {
        Stats::inc(&self.stats.received_requests);
        let mut via = req.top_via().clone();
        via.stamp_source(flow.remote);
        req.set_top_via(via);
        let Some(method) = req.method().cloned() else {
            return;
        };
        let _span =
            tracing::debug_span!("request", call_id = %req.call_id(), method = %method).entered();
        // Outside any dialog, a request costs its source's budget; ACK and
        // CANCEL belong to a transaction already paid for. A REGISTER is
        // never in a dialog, whatever its To header says.
        let new_request = method == Method::Register
            || (req.to().tag().is_none() && !matches!(method, Method::Ack | Method::Cancel));
        let user_agent = req.value_text(&HeaderName::UserAgent);
        let screened = self.guard.screen(
            flow.remote.ip(),
            user_agent.as_deref(),
            new_request,
            pbx_store::now_ms(),
            || self.customer_named(&req),
            || self.directory.carriers().is_carrier(flow.remote.ip()),
        );
        if screened == Screen::Drop {
            return;
        }
        match method {
            Method::Ack => return self.on_ack(req, flow),
            Method::Cancel => return crate::proxy::on_cancel(self, req, flow),
            _ => {}
        }
        let key = ServerKey::of(&req);
        if let Some(ctx) = self.server_txns.get(&key) {
            Stats::inc(&self.stats.retransmissions_absorbed);
            let c = lock(&ctx);
            if let Some(bytes) = c.server.on_retransmission().resend {
                self.send(&c.reply_flow, bytes);
            }
            return;
        }
        if self.server_txns.len() >= self.config.max_transactions {
            // Overloaded: refuse new work cheaply instead of queueing it.
            Stats::inc(&self.stats.shed);
            let mut resp = self.local_response(&req, 503, "Service Unavailable", None);
            resp.push(Header::new(HeaderName::RetryAfter, "5"));
            self.reply_stateless(&req, flow, resp);
            return;
        }
        if let Some(unsupported) = self.unsupported(&req, &HeaderName::ProxyRequire) {
            let mut resp = self.local_response(&req, 420, "Bad Extension", None);
            resp.push(Header::new(HeaderName::Unsupported, unsupported));
            return self.reply_stateless(&req, flow, resp);
        }
        if self.looped(&req) {
            let resp = self.local_response(&req, 482, "Loop Detected", None);
            return self.reply_stateless(&req, flow, resp);
        }
        if req.max_forwards() == Some(0) {
            if method == Method::Options && self.addressed_to_us(&req) {
                return self.reply_options(&req, flow);
            }
            let resp = self.local_response(&req, 483, "Too Many Hops", None);
            return self.reply_stateless(&req, flow, resp);
        }
        match method {
            Method::Register => self.registrar.handle(self, req, flow),
            _ if req.to().tag().is_some() => crate::proxy::in_dialog(self, req, flow),
            Method::Options if self.addressed_to_us(&req) => self.reply_options(&req, flow),
            _ if self.addressed_to_us(&req) => self.reply_not_served(&req, flow, &method),
            _ => crate::proxy::initial(self, req, flow),
        }
    }

    fn on_ack(&self, ack: Message, flow: Flow) {
        let key = ServerKey::of(&ack);
        if let Some(ctx) = self.server_txns.get(&key) {
            let mut c = lock(&ctx);
            if c.server.state() == crate::transaction::ServerState::Completed {
                // The hop-by-hop ACK of our non-2xx final response.
                let out = c.server.on_ack(&self.config.timers);
                self.arm(&ctx, TimerTarget::Server, out.arm);
                return;
            }
            if c.server.state() == crate::transaction::ServerState::Confirmed {
                return;
            }
        }
        if ack.to().tag().as_deref() == Some(self.sl_tag.as_str()) {
            return;
        }
        crate::proxy::forward_ack(self, ack, flow);
    }

    fn on_response(&self, resp: Message, flow: Flow) {
        Stats::inc(&self.stats.received_responses);
        let Some(key) = ClientKey::of_response(&resp) else {
            return;
        };
        match self
            .client_txns
            .get(&key)
            .and_then(|(w, i)| w.upgrade().map(|c| (c, i)))
        {
            Some((ctx, idx)) => crate::proxy::on_branch_response(self, &ctx, idx, resp, flow),
            None if self
                .trunk_registrations
                .on_response(self, &resp, flow.remote) => {}
            None => crate::proxy::on_stray_response(self, resp),
        }
    }

    pub fn on_timer(&self, item: TimerItem) {
        let Some(ctx) = item.ctx.upgrade() else {
            return;
        };
        match item.target {
            TimerTarget::Server => {
                let mut c = lock(&ctx);
                let out = c.server.on_timer(item.kind, &self.config.timers);
                if let Some(bytes) = out.resend {
                    self.send(&c.reply_flow, bytes);
                }
                self.arm(&ctx, TimerTarget::Server, out.arm);
                if out.terminated {
                    self.finish_if_done(&mut c);
                }
            }
            TimerTarget::Branch(i) | TimerTarget::Cancel(i) => {
                crate::proxy::on_branch_timer(self, &ctx, item.target, i, item.kind)
            }
            TimerTarget::NoAnswer => crate::proxy::on_no_answer(self, &ctx),
        }
    }

    // ----- sending -----

    pub fn send(&self, flow: &Flow, data: Bytes) {
        match self.transports.send(flow, data) {
            Ok(()) => Stats::inc(&self.stats.sent),
            Err(e) => {
                Stats::inc(&self.stats.send_errors);
                tracing::debug!(remote = %flow.remote, error = %e, "send failed");
            }
        }
    }

    /// Sends a response through the context's server transaction.
    pub fn send_response(&self, ctx: &Arc<Mutex<Context>>, c: &mut Context, resp: &Message) {
        let code = resp.status().unwrap_or(500);
        let bytes = resp.to_bytes();
        let (ok, out) = c.server.on_send(code, bytes.clone(), &self.config.timers);
        if ok {
            self.send(&c.reply_flow, bytes);
            self.arm(ctx, TimerTarget::Server, out.arm);
        }
        if code >= 200 && c.server.is_invite() && code >= 300 {
            // Nothing but the response bytes is needed until the ACK.
            c.request = None;
        }
    }

    /// Sends a response with no transaction (challenges, errors a
    /// retransmission may safely trigger again).
    pub fn reply_stateless(&self, req: &Message, flow: Flow, resp: Message) {
        let target = response_flow(req.top_via(), flow);
        self.send(&target, resp.to_bytes());
    }

    /// A response to `req` from this node, with the tenant's Server header if
    /// it has one (never a product name by default).
    pub fn local_response(
        &self,
        req: &Message,
        code: u16,
        reason: &str,
        server_header: Option<&str>,
    ) -> Message {
        let tag = (code > 100).then_some(self.sl_tag.as_str());
        let mut resp = Message::response(req, code, reason, tag);
        if let Some(server) = server_header.or(self.config.server_header.as_deref()) {
            resp.push(Header::new(HeaderName::Server, server.to_owned()));
        }
        resp
    }

    fn reply_options(&self, req: &Message, flow: Flow) {
        let server = self
            .tenant_of_request(req)
            .and_then(|t| t.server_header.clone());
        let mut resp = self.local_response(req, 200, "OK", server.as_deref());
        resp.push(Header::new(HeaderName::Allow, ALLOW));
        resp.push(Header::new(HeaderName::Supported, "outbound, path"));
        resp.push(Header::new(HeaderName::Accept, "application/sdp"));
        self.reply_stateless(req, flow, resp);
    }

    /// A request for this node itself that it does not serve (RFC 3261 §8.2.1).
    fn reply_not_served(&self, req: &Message, flow: Flow, method: &Method) {
        let server = self
            .tenant_of_request(req)
            .and_then(|t| t.server_header.clone());
        let (code, reason) = match method {
            Method::Extension(_) => (501, "Not Implemented"),
            Method::Invite => (484, "Address Incomplete"),
            _ => (405, "Method Not Allowed"),
        };
        let mut resp = self.local_response(req, code, reason, server.as_deref());
        resp.push(Header::new(HeaderName::Allow, ALLOW));
        self.reply_stateless(req, flow, resp);
    }

    /// True when a request comes back carrying one of this node's own Vias
    /// (RFC 3261 §16.3 step 4). This proxy never routes through itself, so
    /// any such request is a loop, e.g. a contact registered to point here.
    fn looped(&self, req: &Message) -> bool {
        let marker = self.branch_prefix.as_bytes();
        req.values(&HeaderName::Via)
            .any(|h| h.value.windows(marker.len()).any(|w| w == marker))
    }

    /// The first option tag of `header` this node does not support, if any.
    pub fn unsupported(&self, req: &Message, header: &HeaderName) -> Option<String> {
        let unknown: Vec<String> = req
            .option_tags(header)
            .into_iter()
            .filter(|t| !SUPPORTED.iter().any(|s| t.eq_ignore_ascii_case(s)))
            .collect();
        (!unknown.is_empty()).then(|| unknown.join(", "))
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
        for b in &c.branches {
            self.client_txns.remove(&b.key);
            if let Some((key, _)) = &b.cancel {
                self.client_txns.remove(key);
            }
        }
    }

    // ----- addresses -----

    /// A fresh RFC 3261 branch.
    pub fn new_branch(&self) -> String {
        let n = self.branch_counter.fetch_add(1, Ordering::Relaxed);
        format!(
            "{}{}.{n:x}",
            pbx_sip_message::VIA_BRANCH_COOKIE,
            &self.node_token[..8]
        )
    }

    /// The host and port this node is reached at on a flow.
    pub fn advertised(&self, flow: &Flow) -> (Host, u16) {
        let listen_port = match flow.protocol {
            Protocol::Udp => flow.local.port(),
            Protocol::Tcp => self
                .transports
                .tcp_addrs()
                .iter()
                .find(|a| a.is_ipv4() == flow.remote.is_ipv4())
                .map(|a| a.port())
                .unwrap_or(flow.local.port()),
        };
        if let Some(adv) = &self.config.advertise {
            if let Ok((host, port)) = split_advertise(adv) {
                return (host, port.unwrap_or(listen_port));
            }
        }
        let ip = if flow.local.ip().is_unspecified() {
            self.local_ip_toward(flow.remote.ip())
        } else {
            flow.local.ip()
        };
        (Host::from(ip), listen_port)
    }

    /// Our own address on a flow (the kernel's choice toward its peer when
    /// the socket listens on all addresses).
    pub fn local_ip_for(&self, flow: &Flow) -> IpAddr {
        if flow.local.ip().is_unspecified() {
            self.local_ip_toward(flow.remote.ip())
        } else {
            flow.local.ip()
        }
    }

    /// The local address the kernel uses toward `remote` (no packet is sent).
    fn local_ip_toward(&self, remote: IpAddr) -> IpAddr {
        if let Some(ip) = self
            .local_ips
            .lock()
            .ok()
            .and_then(|m| m.get(&remote).copied())
        {
            return ip;
        }
        let unspecified: SocketAddr = if remote.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let ip = std::net::UdpSocket::bind(unspecified)
            .and_then(|s| s.connect((remote, 9)).map(|()| s))
            .and_then(|s| s.local_addr())
            .map(|a| a.ip())
            .unwrap_or(unspecified.ip());
        if let Ok(mut m) = self.local_ips.lock() {
            if m.len() > 10_000 {
                m.clear();
            }
            m.insert(remote, ip);
        }
        ip
    }

    /// The Via this node puts on a request it sends down `flow`.
    pub fn our_via(&self, flow: &Flow, branch: &str) -> Via {
        let (host, port) = self.advertised(flow);
        let mut via = Via::new(flow.protocol.via_name(), host, Some(port), branch);
        via.params.set("rport", None);
        via
    }

    /// This node's Record-Route / Route URI on `flow`.
    pub fn route_uri(&self, flow: &Flow) -> Uri {
        let (host, port) = self.advertised(flow);
        let mut uri = pbx_sip_message::SipUri::new(None, host, Some(port));
        if flow.protocol == Protocol::Tcp {
            uri.set_param("transport", Some("tcp"));
        }
        uri.set_param("lr", None);
        uri.set_param("r", Some(&self.node_token));
        Uri::Sip(uri)
    }

    /// Record-Route values for a request arriving on `inbound` and leaving on
    /// `outbound`: two when the sides differ (RFC 5658), so each side gets
    /// the address it can reach.
    pub fn record_route(&self, inbound: &Flow, outbound: &Flow) -> Vec<String> {
        let out_uri = self.route_uri(outbound);
        let in_uri = self.route_uri(inbound);
        if out_uri == in_uri {
            vec![NameAddr::new(out_uri).to_string()]
        } else {
            vec![
                NameAddr::new(out_uri).to_string(),
                NameAddr::new(in_uri).to_string(),
            ]
        }
    }

    /// True for a Route/Record-Route URI this node put there.
    pub fn is_our_route(&self, uri: &Uri) -> bool {
        uri.as_sip().and_then(|u| u.param("r").flatten()) == Some(self.node_token.as_str())
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
                self.directory.by_domain(name).is_some()
                    || self
                        .config
                        .advertise
                        .as_deref()
                        .is_some_and(|a| split_advertise(a).is_ok_and(|(h, _)| h.is_name(name)))
            }
            _ => self.is_us(&uri.host, uri.port, None),
        }
    }

    /// Whether `host:port` (port 5060 when absent) is one of this node's
    /// listening sockets for `protocol` (any protocol when None), or its
    /// advertised address.
    pub fn is_us(&self, host: &Host, port: Option<u16>, protocol: Option<Protocol>) -> bool {
        let port = port.unwrap_or(5060);
        if let Some(adv) = self.config.advertise.as_deref() {
            if let Ok((h, p)) = split_advertise(adv) {
                let adv_port = p.or_else(|| self.transports.udp_addrs().first().map(|a| a.port()));
                if &h == host && adv_port == Some(port) {
                    return true;
                }
            }
        }
        let Some(ip) = host.ip() else { return false };
        let learned = |ip: IpAddr| {
            self.local_ips
                .lock()
                .map(|m| m.values().any(|v| *v == ip))
                .unwrap_or(false)
        };
        let udp = if protocol == Some(Protocol::Tcp) {
            Vec::new()
        } else {
            self.transports.udp_addrs()
        };
        let tcp = if protocol == Some(Protocol::Udp) {
            Vec::new()
        } else {
            self.transports.tcp_addrs()
        };
        udp.into_iter().chain(tcp).any(|a| {
            a.port() == port
                && (a.ip() == ip || (a.ip().is_unspecified() && (ip.is_loopback() || learned(ip))))
        })
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

impl Inbound for Core {
    fn admits(&self, remote: IpAddr) -> bool {
        !self.guard.drops(remote, pbx_store::now_ms(), || {
            self.directory.carriers().is_carrier(remote)
        })
    }

    fn on_datagram(&self, data: Bytes, flow: Flow) {
        self.on_bytes(data, flow, false);
    }

    fn on_stream_message(&self, data: Bytes, flow: Flow) {
        self.on_bytes(data, flow, true);
    }

    fn on_stream_error(&self, error: &ParseError, data: Bytes, flow: Flow) {
        self.on_malformed(&data, error, flow);
    }
}

/// Methods this node handles or forwards.
pub const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS, REGISTER, UPDATE, PRACK, INFO, MESSAGE, REFER, SUBSCRIBE, NOTIFY";
/// Option tags this node supports (RFC 5626 outbound, RFC 3327 path).
pub const SUPPORTED: &[&str] = &["outbound", "path"];

/// Where responses to a request go (RFC 3261 §18.2.2 with RFC 3581): the
/// connection it came on, or the received address and rport. Never a name
/// that would need DNS: `received` is stamped whenever sent-by is not the
/// source address.
pub fn response_flow(via: &Via, flow: Flow) -> Flow {
    if flow.protocol.is_reliable() {
        return flow;
    }
    let ip = via.received().or(via.host.ip()).unwrap_or(flow.remote.ip());
    let port = match via.rport() {
        Some(Some(p)) => p,
        _ => via.port.unwrap_or(5060),
    };
    Flow {
        remote: SocketAddr::new(ip, port),
        ..flow
    }
}

/// Splits the advertised address into host and optional port.
pub fn split_advertise(text: &str) -> Result<(Host, Option<u16>), &'static str> {
    if text.starts_with('[') || text.matches(':').count() <= 1 {
        let (h, p) = pbx_sip_message::Uri::parse(&format!("sip:{text}"))
            .ok()
            .and_then(|u| u.as_sip().map(|s| (s.host.clone(), s.port)))
            .ok_or("bad advertised address")?;
        Ok((h, p))
    } else {
        // A bare IPv6 address.
        text.parse::<IpAddr>()
            .map(|ip| (Host::from(ip), None))
            .map_err(|_| "bad advertised address")
    }
}
