//! The dispatcher: every received message passes through here. It parses,
//! stamps the top Via with where the request really came from (RFC 3581),
//! screens the source (abuse guard), matches transactions (absorbing
//! retransmissions), sheds load when the transaction table is full, and
//! hands each request, response and timer to the handler that owns it: the
//! registrar, the routing layer and the proxy, the carrier registrations.
//! It is the top of the SIP layers: nothing below it knows it exists.

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use pbx_sip_message::{Header, HeaderName, Message, Method, ParseError};

use crate::context::TimerTarget;
use crate::core::{lock, Core, TimerItem};
use crate::guard::Screen;
use crate::node::{response_flow, ALLOW};
use crate::registrar::Registrar;
use crate::stats::Stats;
use crate::transaction::{ClientKey, ServerKey};
use crate::transport::{Flow, Inbound};
use crate::trunk_registration::TrunkRegistrations;

/// Seconds a phone whose REGISTER is refused for overload is asked to wait
/// (Retry-After), drawn anew for each refusal.
const RETRY_AFTER_S: std::ops::RangeInclusive<u32> = 10..=40;

pub struct Dispatcher {
    pub core: Arc<Core>,
    pub registrar: Registrar,
    /// This node's registrations with carriers.
    pub trunk_registrations: TrunkRegistrations,
}

impl Dispatcher {
    pub fn new(core: Arc<Core>) -> Dispatcher {
        Dispatcher {
            core,
            registrar: Registrar::default(),
            trunk_registrations: TrunkRegistrations::default(),
        }
    }

    // ----- receiving -----

    fn on_bytes(&self, data: Bytes, flow: Flow, stream: bool) {
        // Keep-alives over UDP (CRLF) carry no message.
        if data.iter().all(|b| b.is_ascii_whitespace()) {
            return;
        }
        let limits = &self.core.config.transports.limits;
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
        Stats::inc(&self.core.stats.malformed);
        tracing::debug!(remote = %flow.remote, error = %error, "malformed SIP message");
        if let Some(response) =
            Message::error_response(data, error, &self.core.config.transports.limits)
        {
            // Parse the response back to find where it goes (rport/received).
            let target =
                Message::parse_datagram(response.clone(), &self.core.config.transports.limits)
                    .map(|r| {
                        let mut via = r.top_via().clone();
                        via.stamp_source(flow.remote);
                        response_flow(&via, flow)
                    })
                    .unwrap_or(flow);
            self.core.node.send(&target, response);
        }
    }

    fn on_request(&self, mut req: Message, flow: Flow) {
        Stats::inc(&self.core.stats.received_requests);
        req.stamp_source(flow.remote);
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
        let screened = self.core.guard.screen(
            flow.remote.ip(),
            user_agent.as_deref(),
            new_request,
            pbx_store::now_ms(),
            || self.core.customer_named(&req),
            || self.core.directory.carriers().is_carrier(flow.remote.ip()),
        );
        if screened == Screen::Drop {
            return;
        }
        match method {
            Method::Ack => return self.on_ack(req, flow),
            Method::Cancel => return crate::proxy::on_cancel(&self.core, req, flow),
            _ => {}
        }
        let key = ServerKey::of(&req);
        if let Some(ctx) = self.core.server_txns.get(&key) {
            Stats::inc(&self.core.stats.retransmissions_absorbed);
            let c = lock(&ctx);
            if let Some(bytes) = c.server.on_retransmission().resend {
                self.core.node.send(&c.reply_flow, bytes);
            }
            return;
        }
        if self.sheds(&req, &method, new_request, flow) {
            // Overloaded: refuse new work cheaply instead of queueing it, so
            // that calls in progress are served.
            Stats::inc(&self.core.stats.shed);
            let mut resp = self
                .core
                .node
                .local_response(&req, 503, "Service Unavailable", None);
            if method == Method::Register {
                // A phone waits this long before it registers again (and
                // sends nothing else meanwhile, RFC 3261 §21.5.4): drawn
                // anew each time, so a registration storm comes back spread
                // out. Other requests get none: their clients must not stop
                // sending BYEs of calls in progress.
                let wait = rand::Rng::gen_range(&mut rand::thread_rng(), RETRY_AFTER_S);
                resp.push(Header::new(HeaderName::RetryAfter, wait.to_string()));
            }
            self.core.node.reply_stateless(&req, flow, resp);
            return;
        }
        if let Some(unsupported) = self.core.node.unsupported(&req, &HeaderName::ProxyRequire) {
            let mut resp = self
                .core
                .node
                .local_response(&req, 420, "Bad Extension", None);
            resp.push(Header::new(HeaderName::Unsupported, unsupported));
            return self.core.node.reply_stateless(&req, flow, resp);
        }
        if self.core.node.looped(&req) {
            let resp = self
                .core
                .node
                .local_response(&req, 482, "Loop Detected", None);
            return self.core.node.reply_stateless(&req, flow, resp);
        }
        if req.max_forwards() == Some(0) {
            if method == Method::Options && self.core.addressed_to_us(&req) {
                return self.reply_options(&req, flow);
            }
            let resp = self
                .core
                .node
                .local_response(&req, 483, "Too Many Hops", None);
            return self.core.node.reply_stateless(&req, flow, resp);
        }
        match method {
            Method::Register => self.registrar.handle(&self.core, req, flow),
            _ if req.to().tag().is_some() => crate::proxy::in_dialog(&self.core, req, flow),
            Method::Options if self.core.addressed_to_us(&req) => self.reply_options(&req, flow),
            _ if self.core.addressed_to_us(&req) => self.reply_not_served(&req, flow, &method),
            _ => {
                if let Some(routed) = crate::routing::route(&self.core, req, flow) {
                    crate::proxy::start(&self.core, routed);
                }
            }
        }
    }

    /// Whether a request is refused for overload: new work (a REGISTER,
    /// a request outside a dialog) when the transaction table is full or a
    /// UDP receiver has fallen behind; work in dialogs (BYE, re-INVITE) only
    /// beyond a quarter more, the hard limit on memory. Carriers' requests
    /// and OPTIONS pings to this node are refused only when the table is
    /// full: a carrier that sees 503s takes the trunk out of service.
    fn sheds(&self, req: &Message, method: &Method, new_request: bool, flow: Flow) -> bool {
        let max = self.core.config.max_transactions;
        let open = self.core.server_txns.len();
        if !new_request {
            return open >= max.saturating_add(max / 4);
        }
        if open >= max {
            return true;
        }
        self.core.node.transports.behind()
            && !(*method == Method::Options && self.core.addressed_to_us(req))
            && !self.core.directory.carriers().is_carrier(flow.remote.ip())
    }

    fn on_ack(&self, ack: Message, flow: Flow) {
        let key = ServerKey::of(&ack);
        if let Some(ctx) = self.core.server_txns.get(&key) {
            let mut c = lock(&ctx);
            if c.server.state() == crate::transaction::ServerState::Completed {
                // The hop-by-hop ACK of our non-2xx final response.
                let out = c.server.on_ack(&self.core.config.timers);
                self.core.arm(&ctx, TimerTarget::Server, out.arm);
                return;
            }
            if c.server.state() == crate::transaction::ServerState::Confirmed {
                return;
            }
        }
        if ack.to().tag().as_deref() == Some(self.core.node.sl_tag.as_str()) {
            return;
        }
        crate::proxy::forward_ack(&self.core, ack, flow);
    }

    fn on_response(&self, resp: Message, flow: Flow) {
        Stats::inc(&self.core.stats.received_responses);
        let Some(key) = ClientKey::of_response(&resp) else {
            return;
        };
        match self
            .core
            .client_txns
            .get(&key)
            .and_then(|(w, i)| w.upgrade().map(|c| (c, i)))
        {
            Some((ctx, idx)) => crate::proxy::on_branch_response(&self.core, &ctx, idx, resp, flow),
            None if self
                .trunk_registrations
                .on_response(&self.core, &resp, flow.remote) => {}
            None => crate::proxy::on_stray_response(&self.core, resp),
        }
    }

    pub fn on_timer(&self, item: TimerItem) {
        let Some(ctx) = item.ctx.upgrade() else {
            return;
        };
        match item.target {
            TimerTarget::Server => {
                let mut c = lock(&ctx);
                let out = c.server.on_timer(item.kind, &self.core.config.timers);
                if let Some(bytes) = out.resend {
                    self.core.node.send(&c.reply_flow, bytes);
                }
                self.core.arm(&ctx, TimerTarget::Server, out.arm);
                if out.terminated {
                    self.core.finish_if_done(&mut c);
                }
            }
            TimerTarget::Branch(i) | TimerTarget::Cancel(i) => {
                crate::proxy::on_branch_timer(&self.core, &ctx, item.target, i, item.kind)
            }
            TimerTarget::NoAnswer => crate::proxy::on_no_answer(&self.core, &ctx),
        }
    }

    fn reply_options(&self, req: &Message, flow: Flow) {
        let server = self
            .core
            .tenant_of_request(req)
            .and_then(|t| t.server_header.clone());
        let mut resp = self
            .core
            .node
            .local_response(req, 200, "OK", server.as_deref());
        resp.push(Header::new(HeaderName::Allow, ALLOW));
        resp.push(Header::new(HeaderName::Supported, "outbound, path"));
        resp.push(Header::new(HeaderName::Accept, "application/sdp"));
        self.core.node.reply_stateless(req, flow, resp);
    }

    /// A request for this node itself that it does not serve (RFC 3261 §8.2.1).
    fn reply_not_served(&self, req: &Message, flow: Flow, method: &Method) {
        let server = self
            .core
            .tenant_of_request(req)
            .and_then(|t| t.server_header.clone());
        let (code, reason) = match method {
            Method::Extension(_) => (501, "Not Implemented"),
            Method::Invite => (484, "Address Incomplete"),
            _ => (405, "Method Not Allowed"),
        };
        let mut resp = self
            .core
            .node
            .local_response(req, code, reason, server.as_deref());
        resp.push(Header::new(HeaderName::Allow, ALLOW));
        self.core.node.reply_stateless(req, flow, resp);
    }
}

impl Inbound for Dispatcher {
    fn admits(&self, remote: IpAddr) -> bool {
        !self.core.guard.drops(remote, pbx_store::now_ms(), || {
            self.core.directory.carriers().is_carrier(remote)
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
