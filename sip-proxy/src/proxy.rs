//! The stateful proxy (RFC 3261 §16): it carries out the routing layer's
//! plans. An initial request gets its context, the call's record and media
//! anchoring, and a branch per target (a registered device's binding,
//! record-routed; or a carrier trunk, with the trunk's credentials when the
//! carrier challenges); when every branch failed it asks the routing layer
//! what next. In-dialog requests are only forwarded within dialogs this
//! proxy set up, to the other party's known flow. Responses are chosen per
//! §16.7, CANCEL per §16.10, Timer C per §16.8. SDP passes through the
//! media relay (`anchoring`) at each offer and answer.

use std::sync::{Arc, Mutex};

use pbx_sip_message::auth::DigestParams;
use pbx_sip_message::{Header, HeaderName, Message, Method, NameAddr, StartLine, StatusLine, Uri};

use pbx_media::Party;
use pbx_store::call_records::CallDirection;

use crate::anchoring;
use crate::carrier;
use crate::context::{Branch, CallSetup, Context, MediaLeg, TimerTarget};
use crate::core::{lock, Core};
use crate::dialogs::{CallInfo, Dialog, DialogKind, Direction, Peer};
use crate::directory::Tenant;
use crate::events::{CallOutcome, HangupSide, SipEvent};
use crate::routing::{self, failure_outcome, from_user, Next, Plan, Ringing, Routed};
use crate::stats::Stats;
use crate::transaction::{ClientKey, ClientTransaction, TimerKind};
use crate::transport::{Flow, Protocol};

/// Most devices one request forks to.
const MAX_BRANCHES: usize = 16;

fn creates_dialog(method: &Method) -> bool {
    matches!(method, Method::Invite | Method::Subscribe | Method::Refer)
}

/// Sets up the call (or other dialog) decided on: the context, its record
/// and the first branches.
pub fn start(core: &Core, routed: Routed) {
    let Routed { req, flow, plan } = routed;
    let Plan {
        tenant,
        caller,
        ringing,
        anchor: mut anchored,
        recording,
        anchor_required,
    } = plan;
    let tenant = &tenant;
    let method = req.method().cloned().unwrap_or(Method::Options);
    let caller_name = from_user(&req);
    let caller_contact = first_contact(&req);
    let key = (
        req.call_id().to_owned(),
        req.from().tag().unwrap_or_default(),
    );
    if method == Method::Invite && !core.admission.begin(&key) {
        // Another INVITE of a call in progress, on another branch: a merged
        // request (RFC 3261 §8.2.2.2); it must not touch that call.
        if let Ringing::Out { admitted, .. } = ringing {
            core.admission.abandon(admitted);
        }
        let resp = core.node.local_response(&req, 482, "Loop Detected", None);
        return core.node.reply_stateless(&req, flow, resp);
    }
    if anchored {
        match anchoring::admit(core, &key, &req, &flow) {
            Ok(()) => {
                if let Ringing::Phones { bindings, .. } = &ringing {
                    anchoring::music_for(core, &key, tenant, bindings);
                }
            }
            Err(e) if !anchor_required => {
                // Anchored only to be recorded: the call goes on, unrecorded.
                core.media.delete(&key);
                tracing::warn!(call_id = %key.0, customer = %tenant.customer, error = %e,
                    "a call to record could not be anchored: not recorded");
                anchored = false;
            }
            Err(e) => {
                core.media.delete(&key);
                if let Ringing::Out { admitted, .. } = ringing {
                    core.admission.abandon(admitted);
                }
                core.admission.ended(&key, pbx_store::now_ms());
                return routing::refuse_media(core, &req, flow, tenant, &caller, &e);
            }
        }
    }
    let Some(ctx) = core.new_context(req, flow) else {
        if let Ringing::Out { admitted, .. } = ringing {
            core.admission.abandon(admitted);
        }
        if method == Method::Invite {
            core.admission.ended(&key, pbx_store::now_ms());
        }
        if anchored {
            core.media.delete(&key);
        }
        return;
    };
    let mut c = lock(&ctx);
    if anchored {
        c.media = Some(MediaLeg {
            key: key.clone(),
            parties: None,
        });
    }
    if method == Method::Invite {
        if let Some(trying) = c
            .request
            .as_ref()
            .map(|r| core.node.local_response(r, 100, "Trying", None))
        {
            core.send_response(&ctx, &mut c, &trying);
        }
    }
    let (callee, callee_extension, direction, destination) = match &ringing {
        Ringing::Phones {
            callee, extension, ..
        } => {
            let destination = match caller.direction {
                CallDirection::Inbound => Some(callee.trim_start_matches('+').to_owned()),
                _ => None,
            };
            (
                callee.clone(),
                extension.as_ref().map(|e| e.id),
                caller.direction,
                destination,
            )
        }
        Ringing::Out {
            callee,
            leg,
            forwarded_by: None,
            ..
        } => (
            callee.clone(),
            None,
            CallDirection::Outbound,
            Some(leg.destination.e164.clone()),
        ),
        // Forwarded out: the call's own record is the one to the extension
        // that forwards; its outbound leg is announced after it.
        Ringing::Out {
            callee,
            forwarded_by: Some(by),
            ..
        } => {
            let destination = match caller.direction {
                CallDirection::Inbound => Some(callee.trim_start_matches('+').to_owned()),
                _ => None,
            };
            (callee.clone(), Some(by.id), caller.direction, destination)
        }
    };
    let caller_tag = c
        .request
        .as_ref()
        .and_then(|r| r.from().tag())
        .unwrap_or_default();
    if creates_dialog(&method) {
        c.call = Some(CallSetup {
            info: CallInfo {
                reseller: tenant.reseller,
                customer: tenant.customer,
                caller_extension: caller.extension,
                callee_extension,
                caller_device: caller.device,
                callee_device: None,
            },
            caller: caller_name.clone(),
            callee: callee.clone(),
            caller_contact,
            caller_tag: caller_tag.clone(),
            recording,
            started_at: pbx_store::now_ms(),
            passed: match &ringing {
                Ringing::Phones { passed, .. } => passed.clone(),
                Ringing::Out { .. } => Vec::new(),
            },
        });
    }
    if method == Method::Invite {
        core.calls_set_up
            .insert_new(c.call_key(), Arc::downgrade(&ctx));
        Stats::inc(&core.stats.calls_started);
        core.events.publish(SipEvent::CallStarted {
            reseller: tenant.reseller,
            customer: tenant.customer,
            call_id: c.key_call_id(),
            caller_tag: caller_tag.clone(),
            caller: caller_name,
            callee,
            caller_extension: caller.extension,
            callee_extension,
            caller_device: caller.device,
            direction,
            destination,
            stateless: false,
            at: pbx_store::now_ms(),
        });
    }
    match ringing {
        Ringing::Phones {
            bindings,
            ring_s,
            plan,
            ..
        } => {
            c.plan = plan;
            fork(core, &ctx, &mut c, tenant, &bindings);
            if method == Method::Invite {
                arm_ring_time(core, &ctx, &mut c, ring_s);
            }
        }
        Ringing::Out {
            leg,
            admitted,
            forwarded_by,
            ..
        } => {
            if let Some(by) = &forwarded_by {
                core.events.publish(SipEvent::CallForwardedOut {
                    reseller: tenant.reseller,
                    customer: tenant.customer,
                    call_id: c.key_call_id(),
                    caller_tag: caller_tag.clone(),
                    by_extension: by.id,
                    callee: leg.dialled.clone(),
                    destination: leg.destination.e164.clone(),
                    at: pbx_store::now_ms(),
                });
            }
            core.admission.open((c.key_call_id(), caller_tag), admitted);
            c.carrier = Some(*leg);
            if !next_trunk(core, &ctx, &mut c) {
                // Every trunk is at its channel limit.
                if let Some(busy) = c
                    .request
                    .as_ref()
                    .map(|r| core.node.local_response(r, 480, "All Trunks Busy", None))
                {
                    keep_best(&mut c, busy);
                }
                finish_if_all_final(core, &ctx, &mut c);
            }
        }
    }
    if c.branches.is_empty() && c.best.is_some() {
        // No branch could be sent (the relay had no ports for any).
        finish_if_all_final(core, &ctx, &mut c);
    }
    tracing::debug!(customer = %tenant.customer, branches = c.branches.len(), "request forked");
}

/// Sends the call on to the next trunk that has a channel free. False
/// when none is left.
fn next_trunk(core: &Core, ctx: &Arc<Mutex<Context>>, c: &mut Context) -> bool {
    let key = c.call_key();
    loop {
        let Some(leg) = c.carrier.as_mut() else {
            return false;
        };
        let Some(hop) = leg.hops.pop_front() else {
            return false;
        };
        // Emergency calls are not held back by a trunk's channel count.
        let emergency = leg.destination.class == pbx_store::numbering::Class::Emergency;
        let max = if emergency { None } else { hop.max_channels };
        let caller_id = leg.caller_id.clone();
        if !core.admission.use_trunk(&key, hop.trunk, max) {
            tracing::debug!(trunk = %hop.trunk, "trunk full: next one");
            continue;
        }
        if !send_to_hop(core, ctx, c, &hop, caller_id.as_deref(), None) {
            continue;
        }
        if let Some(leg) = c.carrier.as_mut() {
            leg.current = Some(hop);
            leg.challenge_answered = false;
        }
        return true;
    }
}

/// Sends the context's request to a trunk as a new branch, with
/// `credentials` (header and value) when answering the carrier's challenge.
fn send_to_hop(
    core: &Core,
    ctx: &Arc<Mutex<Context>>,
    c: &mut Context,
    hop: &carrier::Hop,
    caller_id: Option<&str>,
    credentials: Option<(HeaderName, String)>,
) -> bool {
    let Some(out_flow) = core.node.transports.flow_to(hop.protocol, hop.addr) else {
        return false;
    };
    let Some(mut fwd) = c.request.clone() else {
        return false;
    };
    fwd.remove_all(&HeaderName::Route);
    fwd.decrement_max_forwards();
    carrier::dress(&mut fwd, hop, caller_id);
    if let Some((name, value)) = credentials {
        fwd.push(Header::new(name, value));
    }
    for rr in core
        .node
        .record_route(&c.inbound, &out_flow)
        .into_iter()
        .rev()
    {
        fwd.insert_before(
            &HeaderName::RecordRoute,
            Header::new(HeaderName::RecordRoute, rr),
        );
    }
    if !add_branch(core, ctx, c, fwd, out_flow, None, None) {
        // No media ports for it: the next trunk, or the caller hears why.
        return false;
    }
    if let Some(b) = c.branches.last_mut() {
        b.trunk = Some(hop.trunk);
    }
    tracing::debug!(trunk = %hop.trunk, "call sent to a carrier");
    true
}

/// A carrier challenged the call (401/407): answered once per trunk with
/// the trunk's own user name and secret, in a new branch with the same
/// CSeq (RFC 3261 §8.1.3.5 asks for a higher one, which a proxy cannot give
/// without rewriting the caller's dialog; carriers match by branch). False
/// when the trunk has no credentials or already had its answer.
fn answer_trunk_challenge(
    core: &Core,
    ctx: &Arc<Mutex<Context>>,
    c: &mut Context,
    resp: &Message,
) -> bool {
    if c.cancelled || c.answered || !c.server.awaiting_final() {
        return false;
    }
    let Some(leg) = c.carrier.as_mut() else {
        return false;
    };
    let Some(hop) = leg.current.clone().filter(|_| !leg.challenge_answered) else {
        return false;
    };
    let Some((user, secret)) = hop.credentials.clone() else {
        return false;
    };
    let proxy = resp.status() == Some(407);
    let (asked, answer) = if proxy {
        (
            HeaderName::ProxyAuthenticate,
            HeaderName::ProxyAuthorization,
        )
    } else {
        (HeaderName::WwwAuthenticate, HeaderName::Authorization)
    };
    let Some(challenge) = resp
        .values(&asked)
        .filter_map(|h| h.text().and_then(|t| DigestParams::parse(&t).ok()))
        .find(|c| c.is_digest())
    else {
        return false;
    };
    let cnonce = pbx_store::secrets::random_token(8);
    let Some(value) = crate::digest::answer_challenge(
        &challenge,
        "INVITE",
        &hop.uri.to_string(),
        (&user, &secret),
        (1, &cnonce),
    ) else {
        return false;
    };
    leg.challenge_answered = true;
    let caller_id = leg.caller_id.clone();
    send_to_hop(
        core,
        ctx,
        c,
        &hop,
        caller_id.as_deref(),
        Some((answer, value)),
    )
}

/// Sends the context's request to each of `bindings` (a branch each).
fn fork(
    core: &Core,
    ctx: &Arc<Mutex<Context>>,
    c: &mut Context,
    tenant: &Tenant,
    bindings: &[crate::location::Binding],
) {
    let Some(mut template) = c.request.clone() else {
        return;
    };
    let method = c.method.clone();
    let inbound = c.inbound;
    // Pre-loaded routes from a phone are not honoured: calls go where the
    // customer's configuration says, nowhere else.
    template.remove_all(&HeaderName::Route);
    remove_own_credentials(&mut template, &tenant.domain);
    let from_carrier = c
        .call
        .as_ref()
        .is_some_and(|call| call.info.caller_device.is_none());
    carrier::screen_identity(&mut template, from_carrier);
    template.decrement_max_forwards();
    for binding in bindings.iter().take(MAX_BRANCHES) {
        let Some(target) = binding.target() else {
            continue;
        };
        let out_flow = binding_flow(core, binding, &target);
        let mut fwd = template.clone();
        fwd.set_request_uri(target.uri);
        for route in &binding.path {
            fwd.push(Header::new(HeaderName::Route, route.to_string()));
        }
        if creates_dialog(&method) {
            for rr in core
                .node
                .record_route(&inbound, &out_flow)
                .into_iter()
                .rev()
            {
                fwd.insert_before(
                    &HeaderName::RecordRoute,
                    Header::new(HeaderName::RecordRoute, rr),
                );
            }
        }
        add_branch(
            core,
            ctx,
            c,
            fwd,
            out_flow,
            binding.extension(),
            (!binding.application).then_some(binding.device),
        );
    }
}

/// Lets the phones ring for `seconds` (if any) before the call goes on.
fn arm_ring_time(core: &Core, ctx: &Arc<Mutex<Context>>, c: &mut Context, seconds: Option<u64>) {
    c.no_answer_at = None;
    if let Some(seconds) = seconds {
        let delay = std::time::Duration::from_secs(seconds);
        c.no_answer_at = Some(tokio::time::Instant::now() + delay);
        core.arm(ctx, TimerTarget::NoAnswer, vec![(TimerKind::C, delay)]);
    }
}

/// The no-answer time ran out: the ringing phones are cancelled, and when
/// their answers are in, the call goes on to the forward's target.
pub fn on_no_answer(core: &Core, ctx: &Arc<Mutex<Context>>) {
    let mut c = lock(ctx);
    let due = c
        .no_answer_at
        .is_some_and(|at| tokio::time::Instant::now() + std::time::Duration::from_millis(50) >= at);
    if !due
        || c.answered
        || c.cancelled
        || c.no_answer
        || c.call.is_none()
        || !c.server.awaiting_final()
    {
        return;
    }
    c.no_answer = true;
    c.no_answer_at = None;
    for idx in 0..c.branches.len() {
        cancel_branch(core, ctx, &mut c, idx);
    }
    finish_if_all_final(core, ctx, &mut c);
}

/// A colleague picks up the call `key` while it rings phones: they are
/// cancelled and the call goes to the application server as `user` (which
/// joins it to the colleague's call). False when the call is not ringing
/// phones of ours any more (answered, ended, gone out to a carrier).
pub fn pick_up(core: &Core, key: &crate::admission::CallKey, user: &str) -> bool {
    let Some(ctx) = core.calls_set_up.get(key).and_then(|w| w.upgrade()) else {
        return false;
    };
    let mut c = lock(&ctx);
    if c.answered
        || c.cancelled
        || c.carrier.is_some()
        || c.pickup.is_some()
        || !c.server.awaiting_final()
    {
        return false;
    }
    let Some(call) = c.call.as_ref() else {
        return false;
    };
    let binding = core
        .directory
        .by_customer(call.info.customer)
        .and_then(|tenant| core.application_binding(&tenant, None, user));
    let Some(binding) = binding else {
        return false;
    };
    c.pickup = Some(binding);
    c.no_answer_at = None;
    for idx in 0..c.branches.len() {
        cancel_branch(core, &ctx, &mut c, idx);
    }
    finish_if_all_final(core, &ctx, &mut c);
    true
}

fn remove_own_credentials(req: &mut Message, realm: &str) {
    let keep: Vec<Header> = req
        .values(&HeaderName::ProxyAuthorization)
        .filter(|h| {
            h.text()
                .and_then(|t| DigestParams::parse(&t).ok())
                .is_none_or(|c| c.get("realm") != Some(realm))
        })
        .cloned()
        .collect();
    req.remove_all(&HeaderName::ProxyAuthorization);
    for h in keep {
        req.push(h);
    }
}

/// Sends `fwd` down `out_flow` as a new branch of the context.
#[allow(clippy::too_many_arguments)]
fn add_branch(
    core: &Core,
    ctx: &Arc<Mutex<Context>>,
    c: &mut Context,
    mut fwd: Message,
    out_flow: Flow,
    extension: Option<pbx_store::ExtensionId>,
    device: Option<pbx_store::DeviceId>,
) -> bool {
    let idx = c.branches.len();
    if let Some(leg) = c.media.clone() {
        let parties = leg
            .parties
            .unwrap_or((Party::Caller, Party::Callee(idx as u32)));
        let source = c.inbound.remote.ip();
        if let Err(e) = anchoring::pass(core, &leg.key, parties, &mut fwd, source, &out_flow) {
            tracing::warn!(call_id = %leg.key.0, error = %e, "media not anchored: branch not sent");
            if let Some(req) = c.request.as_ref() {
                let mut resp =
                    core.node
                        .local_response(req, e.sip_status(), "Media Not Anchored", None);
                anchoring::warning(&mut resp, &e);
                keep_best(c, resp);
            }
            return false;
        }
    }
    let branch = core.node.new_branch();
    fwd.push_via(core.node.our_via(&out_flow, &branch));
    let method = c.method.clone();
    let invite = method == Method::Invite;
    let mut tx = ClientTransaction::new(
        invite,
        out_flow.protocol.is_reliable(),
        fwd.to_bytes(),
        &core.config.timers,
    );
    let out = tx.start(&core.config.timers);
    let key = ClientKey { branch, method };
    core.client_txns
        .insert(key.clone(), (Arc::downgrade(ctx), idx));
    let timer_c = invite.then(|| tokio::time::Instant::now() + core.config.timers.timer_c);
    c.branches.push(Branch {
        key,
        request: Some(fwd),
        flow: out_flow,
        tx,
        final_status: None,
        timer_c,
        cancel_wanted: false,
        cancel: None,
        ack: None,
        extension,
        device,
        trunk: None,
        reached: false,
    });
    if let Some(bytes) = out.send {
        core.node.send(&out_flow, bytes);
    }
    core.arm(ctx, TimerTarget::Branch(idx), out.arm);
    if invite {
        core.arm(
            ctx,
            TimerTarget::Branch(idx),
            vec![(TimerKind::C, core.config.timers.timer_c)],
        );
    }
    true
}

/// Where requests to a registered contact go: down the registration's own
/// connection while it is open, down its flow when the phone is behind NAT,
/// else to the contact's address.
fn binding_flow(
    core: &Core,
    binding: &crate::location::Binding,
    target: &crate::location::Target,
) -> Flow {
    let connected = binding.flow.protocol.is_reliable()
        && binding
            .flow
            .conn
            .is_some_and(|id| core.node.transports.tcp.is_open(id));
    if connected || target.behind_nat {
        return binding.flow;
    }
    target
        .addr
        .and_then(|a| core.node.transports.flow_to(target.protocol, a))
        .unwrap_or(binding.flow)
}

/// How to reach a party: down its flow, or at its contact when that is the
/// address its messages came from (no NAT in between).
fn reach(core: &Core, flow: &Flow, contact: Option<&Uri>) -> Flow {
    if flow.protocol.is_reliable()
        && flow
            .conn
            .is_some_and(|id| core.node.transports.tcp.is_open(id))
    {
        return *flow;
    }
    let Some(sip) = contact.and_then(Uri::as_sip) else {
        return *flow;
    };
    let protocol = match sip.transport().as_deref() {
        Some("tcp") => Protocol::Tcp,
        Some("udp") => Protocol::Udp,
        _ => flow.protocol,
    };
    match sip.host.ip() {
        Some(ip) if ip == flow.remote.ip() && sip.param("ob").is_none() => {
            let addr = std::net::SocketAddr::new(ip, sip.port.unwrap_or(5060));
            core.node
                .transports
                .flow_to(protocol, addr)
                .unwrap_or(*flow)
        }
        _ => *flow,
    }
}

/// Removes the Route values this node put at the top (one or two).
fn strip_own_routes(core: &Core, req: &mut Message) -> Result<(), ()> {
    loop {
        let top = req
            .values(&HeaderName::Route)
            .next()
            .map(|h| h.text().and_then(|t| NameAddr::parse(&t).ok()));
        match top {
            Some(Some(route)) if core.node.is_our_route(&route.uri) => {
                req.remove_first(&HeaderName::Route);
            }
            Some(None) => return Err(()),
            _ => return Ok(()),
        }
    }
}

/// A request with a To tag: only forwarded inside a dialog this proxy set up.
pub fn in_dialog(core: &Core, mut req: Message, flow: Flow) {
    let method = req.method().cloned().unwrap_or(Method::Options);
    if strip_own_routes(core, &mut req).is_err() {
        return core.node.reply_stateless(
            &req,
            flow,
            core.node.local_response(&req, 400, "Malformed Route", None),
        );
    }
    let (Some(from_tag), Some(to_tag)) = (req.from().tag(), req.to().tag()) else {
        return core.node.reply_stateless(
            &req,
            flow,
            core.node
                .local_response(&req, 481, "Call/Transaction Does Not Exist", None),
        );
    };
    let Some((dialog, direction)) = core.dialogs.find(req.call_id(), &from_tag, &to_tag) else {
        return core.node.reply_stateless(
            &req,
            flow,
            core.node
                .local_response(&req, 481, "Call/Transaction Does Not Exist", None),
        );
    };
    if req.has(&HeaderName::Route) {
        // Our dialogs have no other proxy in their route set.
        return core.node.reply_stateless(
            &req,
            flow,
            core.node.local_response(&req, 403, "Forbidden", None),
        );
    }
    let peer = match direction {
        Direction::Downstream => &dialog.callee,
        Direction::Upstream => &dialog.caller,
    };
    let peer_device = match direction {
        Direction::Downstream => dialog.call.callee_device,
        Direction::Upstream => dialog.call.caller_device,
    };
    if method == Method::Refer && peer_device.is_none() {
        // A transfer asked of a carrier would place a call nobody admits
        // or records.
        return core.node.reply_stateless(
            &req,
            flow,
            core.node.local_response(&req, 403, "Forbidden", None),
        );
    }
    let out_flow = reach(core, &peer.flow, peer.contact.as_ref());
    let sender_contact = first_contact(&req);
    core.dialogs.touch(
        req.call_id(),
        &from_tag,
        &to_tag,
        pbx_store::now_ms(),
        sender_contact,
        Some(req.cseq().seq),
    );
    let Some(ctx) = core.new_context(req, flow) else {
        return;
    };
    let mut c = lock(&ctx);
    if let Some(b) = dialog.media {
        c.media = Some(MediaLeg {
            key: (dialog.call_id.clone(), dialog.caller.tag.clone()),
            parties: Some(parties(direction, b)),
        });
    }
    c.in_dialog = Some((from_tag, to_tag));
    if method == Method::Invite {
        if let Some(trying) = c
            .request
            .as_ref()
            .map(|r| core.node.local_response(r, 100, "Trying", None))
        {
            core.send_response(&ctx, &mut c, &trying);
        }
    }
    let Some(mut fwd) = c.request.clone() else {
        return;
    };
    fwd.decrement_max_forwards();
    add_branch(core, &ctx, &mut c, fwd, out_flow, None, None);
    if c.branches.is_empty() {
        // Its SDP could not be anchored: the sender hears why.
        finish_if_all_final(core, &ctx, &mut c);
    }
}

/// Who sends and who receives a request in an anchored dialog.
fn parties(direction: Direction, branch: u32) -> (Party, Party) {
    match direction {
        Direction::Downstream => (Party::Caller, Party::Callee(branch)),
        Direction::Upstream => (Party::Callee(branch), Party::Caller),
    }
}

/// The SDP of a response on its way back up: from the request's receiver
/// (branch `idx` for the initial INVITE) to its sender.
fn pass_response(core: &Core, c: &Context, idx: usize, resp: &mut Message, from: &Flow) {
    let Some(leg) = &c.media else { return };
    let parties = match leg.parties {
        Some((sender, receiver)) => (receiver, sender),
        None => (Party::Callee(idx as u32), Party::Caller),
    };
    if let Err(e) = anchoring::pass(core, &leg.key, parties, resp, from.remote.ip(), &c.inbound) {
        // A response cannot be refused; its media may not flow.
        tracing::warn!(call_id = %leg.key.0, error = %e, "answer not anchored");
    }
}

/// Ends a call the proxy decided to end (its maximum duration): a BYE to
/// each party, sent once and without a transaction. A BYE lost on UDP leaves
/// that phone to notice by itself (its session refresh gets 481).
pub fn hang_up(core: &Core, dialog: &Dialog) {
    for (to_peer, from_peer) in [
        (&dialog.callee, &dialog.caller),
        (&dialog.caller, &dialog.callee),
    ] {
        let (Some(uri), Some(from), Some(to)) = (
            to_peer.contact.clone(),
            from_peer.addr.clone(),
            to_peer.addr.clone(),
        ) else {
            continue;
        };
        let flow = reach(core, &to_peer.flow, Some(&uri));
        let via = core.node.our_via(&flow, &core.node.new_branch());
        let bye = Message::request(
            Method::Bye,
            uri,
            via,
            from,
            to,
            &dialog.call_id,
            from_peer.cseq.saturating_add(1),
        );
        core.node.send(&flow, bye.to_bytes());
    }
}

/// An ACK for a 2xx: end to end, forwarded without a transaction.
pub fn forward_ack(core: &Core, mut ack: Message, flow: Flow) {
    if strip_own_routes(core, &mut ack).is_err() {
        return;
    }
    let (Some(from_tag), Some(to_tag)) = (ack.from().tag(), ack.to().tag()) else {
        return;
    };
    let Some((dialog, direction)) = core.dialogs.find(ack.call_id(), &from_tag, &to_tag) else {
        return;
    };
    let peer = match direction {
        Direction::Downstream => &dialog.callee,
        Direction::Upstream => &dialog.caller,
    };
    let out_flow = reach(core, &peer.flow, peer.contact.as_ref());
    if let Some(b) = dialog.media {
        // A late offer's answer rides on the ACK.
        let key = (dialog.call_id.clone(), dialog.caller.tag.clone());
        if let Err(e) = anchoring::pass(
            core,
            &key,
            parties(direction, b),
            &mut ack,
            flow.remote.ip(),
            &out_flow,
        ) {
            tracing::warn!(call_id = %key.0, error = %e, "ACK's answer not anchored");
        }
    }
    ack.decrement_max_forwards();
    // Stateless forwarding still needs a unique branch (§16.11): derive it
    // from the incoming one so retransmitted ACKs keep theirs.
    let incoming = ack.top_via().branch().unwrap_or_default();
    let branch = format!(
        "{}{}a{}",
        pbx_sip_message::VIA_BRANCH_COOKIE,
        &core.node.node_token[..8],
        &pbx_store::secrets::sha256_hex(&incoming)[..16]
    );
    ack.push_via(core.node.our_via(&out_flow, &branch));
    core.node.send(&out_flow, ack.to_bytes());
}

/// CANCEL (§9.2, §16.10): answered here, then applied to the INVITE's branches.
pub fn on_cancel(core: &Core, cancel: Message, flow: Flow) {
    let key = crate::transaction::ServerKey::cancelled_invite(&cancel);
    let Some(ctx) = core.server_txns.get(&key) else {
        return core.node.reply_stateless(
            &cancel,
            flow,
            core.node
                .local_response(&cancel, 481, "Call/Transaction Does Not Exist", None),
        );
    };
    // Answering CANCEL is idempotent, so its retransmissions need no transaction.
    core.node.reply_stateless(
        &cancel,
        flow,
        core.node.local_response(&cancel, 200, "OK", None),
    );
    let mut c = lock(&ctx);
    if c.cancelled || !c.server.awaiting_final() {
        return;
    }
    c.cancelled = true;
    for idx in 0..c.branches.len() {
        cancel_branch(core, &ctx, &mut c, idx);
    }
    finish_if_all_final(core, &ctx, &mut c);
}

/// Cancels one pending branch: CANCEL if a provisional response came, else
/// the branch counts as 487 now and is cancelled if a provisional comes later.
fn cancel_branch(core: &Core, ctx: &Arc<Mutex<Context>>, c: &mut Context, idx: usize) {
    let Some(b) = c.branches.get_mut(idx) else {
        return;
    };
    if b.final_status.is_some() || b.cancel.is_some() {
        return;
    }
    if b.tx.may_cancel() {
        send_cancel(core, ctx, c, idx);
    } else {
        b.cancel_wanted = true;
        if let Some(req) = &b.request {
            let local = Message::response(req, 487, "Request Terminated", None);
            b.final_status = Some(487);
            keep_best(c, local);
        }
    }
}

fn send_cancel(core: &Core, ctx: &Arc<Mutex<Context>>, c: &mut Context, idx: usize) {
    let Some(b) = c.branches.get_mut(idx) else {
        return;
    };
    let Some(req) = &b.request else { return };
    let Some(uri) = req.request_line().map(|r| r.uri.clone()) else {
        return;
    };
    let mut cancel = Message::request(
        Method::Cancel,
        uri,
        req.top_via().clone(),
        req.from().clone(),
        req.to().clone(),
        req.call_id(),
        req.cseq().seq,
    );
    for route in req.values(&HeaderName::Route) {
        cancel.push(route.clone());
    }
    let key = ClientKey {
        branch: b.key.branch.clone(),
        method: Method::Cancel,
    };
    let mut tx = ClientTransaction::new(
        false,
        b.flow.protocol.is_reliable(),
        cancel.to_bytes(),
        &core.config.timers,
    );
    let out = tx.start(&core.config.timers);
    let flow = b.flow;
    b.cancel = Some((key.clone(), tx));
    b.cancel_wanted = false;
    core.client_txns.insert(key, (Arc::downgrade(ctx), idx));
    if let Some(bytes) = out.send {
        core.node.send(&flow, bytes);
    }
    core.arm(ctx, TimerTarget::Cancel(idx), out.arm);
}

/// The hop-by-hop ACK for a non-2xx final response on a branch (§17.1.1.3).
fn build_ack(req: &Message, resp: &Message) -> Option<Message> {
    let uri = req.request_line()?.uri.clone();
    let mut ack = Message::request(
        Method::Ack,
        uri,
        req.top_via().clone(),
        req.from().clone(),
        resp.to().clone(),
        req.call_id(),
        req.cseq().seq,
    );
    for route in req.values(&HeaderName::Route) {
        ack.push(route.clone());
    }
    Some(ack)
}

/// A response arrived on a branch (or on the CANCEL of a branch).
pub fn on_branch_response(
    core: &Core,
    ctx: &Arc<Mutex<Context>>,
    idx: usize,
    resp: Message,
    _flow: Flow,
) {
    let Some(status) = resp.status() else { return };
    let t = core.config.timers;
    let mut c = lock(ctx);
    if resp.cseq().method == Method::Cancel {
        if let Some((_, tx)) = c.branches.get_mut(idx).and_then(|b| b.cancel.as_mut()) {
            let out = tx.on_response(status, &t);
            core.arm(ctx, TimerTarget::Cancel(idx), out.arm);
        }
        return core.finish_if_done(&mut c);
    }
    let Some(b) = c.branches.get_mut(idx) else {
        return;
    };
    let out = b.tx.on_response(status, &t);
    core.arm(ctx, TimerTarget::Branch(idx), out.arm);
    if out.send_ack {
        if b.ack.is_none() {
            b.ack = b
                .request
                .as_ref()
                .and_then(|r| build_ack(r, &resp))
                .map(|a| a.to_bytes());
            b.request = None;
        }
        if let Some(ack) = b.ack.clone() {
            let flow = b.flow;
            core.node.send(&flow, ack);
        }
    }
    if !out.pass_up {
        return core.finish_if_done(&mut c);
    }
    if status < 200 {
        on_provisional(core, ctx, &mut c, idx, resp);
    } else {
        branch_final(core, ctx, &mut c, idx, resp);
    }
    core.finish_if_done(&mut c);
}

fn on_provisional(
    core: &Core,
    ctx: &Arc<Mutex<Context>>,
    c: &mut Context,
    idx: usize,
    resp: Message,
) {
    let status = resp.status().unwrap_or(100);
    let Some(b) = c.branches.get_mut(idx) else {
        return;
    };
    if b.tx.may_cancel() {
        // Timer C starts over with every provisional response (§16.7 step 2).
        b.timer_c = Some(tokio::time::Instant::now() + core.config.timers.timer_c);
        core.arm(
            ctx,
            TimerTarget::Branch(idx),
            vec![(TimerKind::C, core.config.timers.timer_c)],
        );
    }
    if b.cancel_wanted && b.tx.may_cancel() {
        send_cancel(core, ctx, c, idx);
    }
    if status == 100 {
        return;
    }
    // Ringing (180), forwarded (181), queued (182): the callee was reached.
    // A 183 (early media, often the carrier's own announcement) is not.
    if (180..=182).contains(&status) {
        c.branches[idx].reached = true;
    }
    let flow = c.branches[idx].flow;
    if let (Some(call), Some(tag)) = (&c.call, resp.to().tag()) {
        if !c.early.contains(&tag) {
            c.early.push(tag.clone());
            let mut dialog = new_dialog(c.inbound, call, &resp, flow, tag, false, &c.method);
            dialog.media = c.media.as_ref().map(|_| idx as u32);
            core.dialogs.upsert(dialog);
        }
    }
    let mut up = resp;
    pass_response(core, c, idx, &mut up, &flow);
    if up.pop_via() && c.branches[idx].final_status.is_none() {
        core.send_response(ctx, c, &up);
    }
}

fn new_dialog(
    inbound: Flow,
    call: &CallSetup,
    resp: &Message,
    callee_flow: Flow,
    callee_tag: String,
    confirmed: bool,
    method: &Method,
) -> Dialog {
    let now = pbx_store::now_ms();
    let contact = first_contact(resp);
    Dialog {
        call_id: resp.call_id().to_owned(),
        caller: Peer {
            tag: resp.from().tag().unwrap_or_default(),
            addr: Some(resp.from().clone()),
            cseq: resp.cseq().seq,
            flow: inbound,
            contact: call.caller_contact.clone(),
        },
        callee: Peer {
            tag: callee_tag,
            addr: Some(resp.to().clone()),
            cseq: 0,
            flow: callee_flow,
            contact,
        },
        kind: if *method == Method::Invite {
            DialogKind::Invite
        } else {
            DialogKind::Other
        },
        confirmed,
        call: call.info.clone(),
        created_at: now,
        confirmed_at: confirmed.then_some(now),
        last_activity: now,
        session_expires_ms: if confirmed {
            crate::dialogs::session_expires_ms(resp)
        } else {
            None
        },
        media: None,
    }
}

/// A final response on a branch: 2xx goes up at once; others wait for the best.
fn branch_final(
    core: &Core,
    ctx: &Arc<Mutex<Context>>,
    c: &mut Context,
    idx: usize,
    resp: Message,
) {
    let mut resp = resp;
    let mut status = resp.status().unwrap_or(500);
    let challenged = matches!(status, 401 | 407)
        && c.branches
            .get(idx)
            .is_some_and(|b| b.trunk.is_some() && b.final_status.is_none());
    if challenged {
        // A carrier that challenges calls gets the trunk's credentials; its
        // challenge never reaches the phone (whose answer would hand the
        // carrier the phone's password). Unanswerable: the trunk failed.
        if answer_trunk_challenge(core, ctx, c, &resp) {
            if let Some(b) = c.branches.get_mut(idx) {
                b.final_status = Some(status);
                b.timer_c = None;
            }
            return;
        }
        resp.start = StartLine::Response(StatusLine {
            code: 503,
            reason: "Carrier Challenged The Call".into(),
        });
        resp.remove_all(&HeaderName::WwwAuthenticate);
        resp.remove_all(&HeaderName::ProxyAuthenticate);
        status = 503;
    }
    let Some(b) = c.branches.get_mut(idx) else {
        return;
    };
    let already_final = b.final_status.is_some();
    b.final_status = Some(status);
    b.timer_c = None;
    let branch_flow = b.flow;
    let device = b.device;
    let answering_extension = b.extension;
    let trunk = b.trunk;
    if (200..300).contains(&status) {
        b.request = None;
        // The answer's SDP first: the relay knows both parties' codecs
        // when the call is established (a recording needs them).
        pass_response(core, c, idx, &mut resp, &branch_flow);
        if let (Some(call), Some(tag)) = (c.call.clone(), resp.to().tag()) {
            let mut call = call;
            call.info.callee_device = device;
            let mut dialog = new_dialog(c.inbound, &call, &resp, branch_flow, tag, true, &c.method);
            // The first 2xx wins the media; a second fork's answer (or a
            // retransmission) must not take it away from the call.
            let mut recorded = None;
            if let (Some(leg), false) = (&c.media, c.answered) {
                dialog.media = Some(idx as u32);
                core.media.choose(&leg.key, idx as u32);
                core.media.established(&leg.key);
                if let Some(tenant) = core.directory.by_customer(call.info.customer) {
                    recorded = crate::recording::begin(
                        core,
                        &tenant,
                        call.recording,
                        &leg.key,
                        answering_extension,
                    );
                }
            }
            // The record's answer time is the dialog's, to the millisecond:
            // the maximum duration is counted from it and billed exactly.
            let answered_at = dialog.confirmed_at.unwrap_or_else(pbx_store::now_ms);
            core.dialogs.upsert(dialog);
            if !c.answered && c.method == Method::Invite {
                Stats::inc(&core.stats.calls_answered);
                core.events.publish(SipEvent::CallAnswered {
                    reseller: call.info.reseller,
                    customer: call.info.customer,
                    call_id: resp.call_id().to_owned(),
                    caller_tag: call.caller_tag.clone(),
                    callee_device: device,
                    callee_extension: answering_extension,
                    trunk,
                    at: answered_at,
                    recording: recorded,
                });
            }
        }
        if let Some((from_tag, to_tag)) = c.in_dialog.clone() {
            if c.method == Method::Bye {
                end_dialog(core, resp.call_id(), &from_tag, &to_tag);
            } else {
                let contact = first_contact(&resp);
                // The responder refreshes its target: it is the request's To party.
                core.dialogs.touch(
                    resp.call_id(),
                    &to_tag,
                    &from_tag,
                    pbx_store::now_ms(),
                    contact,
                    None,
                );
                if matches!(c.method, Method::Invite | Method::Update) {
                    core.dialogs.refresh_session(
                        resp.call_id(),
                        &from_tag,
                        &to_tag,
                        crate::dialogs::session_expires_ms(&resp),
                    );
                }
            }
        }
        let first = !c.answered;
        c.answered = true;
        if first && c.method == Method::Invite {
            for other in 0..c.branches.len() {
                if other != idx {
                    cancel_branch(core, ctx, c, other);
                }
            }
        }
        let mut up = resp;
        if up.pop_via() {
            if c.server.awaiting_final()
                || c.server.state() == crate::transaction::ServerState::Accepted
            {
                core.send_response(ctx, c, &up);
            } else {
                // A 2xx after we already answered the caller (e.g. cancelled
                // before any provisional): still forward it, statelessly (§16.7 step 5).
                let flow = c.reply_flow;
                core.node.send(&flow, up.to_bytes());
            }
        }
        c.request = None;
        return;
    }
    if already_final {
        return;
    }
    if let (Some(leg), true) = (&c.media, c.call.is_some()) {
        core.media.remove_branch(&leg.key, idx as u32);
    }
    if status >= 600 && c.method == Method::Invite {
        for other in 0..c.branches.len() {
            if other != idx {
                cancel_branch(core, ctx, c, other);
            }
        }
    }
    keep_best(c, resp);
    finish_if_all_final(core, ctx, c);
}

/// A response no transaction knows: only a 2xx to INVITE is forwarded
/// (statelessly, §16.7), and only if it carries our Via on top.
pub fn on_stray_response(core: &Core, mut resp: Message) {
    let ours = resp
        .top_via()
        .branch()
        .is_some_and(|b| b.contains(&core.node.node_token[..8]));
    let success = resp.status().is_some_and(|s| (200..300).contains(&s));
    if !ours || !success || resp.cseq().method != Method::Invite || !resp.pop_via() {
        return;
    }
    let via = resp.top_via().clone();
    let ip = via.received().or(via.host.ip());
    let port = match via.rport() {
        Some(Some(p)) => Some(p),
        _ => via.port,
    };
    let Some(ip) = ip else { return };
    let addr = std::net::SocketAddr::new(ip, port.unwrap_or(5060));
    let protocol = if via.transport == "TCP" {
        Protocol::Tcp
    } else {
        Protocol::Udp
    };
    if let Some(flow) = core.node.transports.flow_to(protocol, addr) {
        core.node.send(&flow, resp.to_bytes());
    }
}

/// A timer of a branch, or of its CANCEL, fired.
pub fn on_branch_timer(
    core: &Core,
    ctx: &Arc<Mutex<Context>>,
    target: TimerTarget,
    idx: usize,
    kind: TimerKind,
) {
    let t = core.config.timers;
    let mut c = lock(ctx);
    if target == TimerTarget::Cancel(idx) {
        let Some((key, tx)) = c.branches.get_mut(idx).and_then(|b| b.cancel.as_mut()) else {
            return;
        };
        let out = tx.on_timer(kind, &t);
        let key = key.clone();
        if let Some(bytes) = out.send {
            let flow = c.branches[idx].flow;
            core.node.send(&flow, bytes);
        }
        core.arm(ctx, target, out.arm);
        if out.terminated {
            core.client_txns.remove(&key);
        }
        return core.finish_if_done(&mut c);
    }
    let Some(b) = c.branches.get_mut(idx) else {
        return;
    };
    if kind == TimerKind::C {
        // §16.8: cancel a branch that rang too long; give up on a silent one.
        let due = b.timer_c.is_some_and(|d| d <= tokio::time::Instant::now());
        if due && b.final_status.is_none() {
            b.timer_c = None;
            if b.tx.may_cancel() {
                send_cancel(core, ctx, &mut c, idx);
            } else if let Some(req) = b.request.clone() {
                let timeout = Message::response(&req, 408, "Request Timeout", None);
                branch_final(core, ctx, &mut c, idx, timeout);
            }
        }
        return core.finish_if_done(&mut c);
    }
    let out = b.tx.on_timer(kind, &t);
    let flow = b.flow;
    if let Some(bytes) = out.send {
        core.node.send(&flow, bytes);
    }
    core.arm(ctx, target, out.arm);
    if out.timed_out {
        if let Some(req) = c.branches[idx].request.clone() {
            let timeout = Message::response(&req, 408, "Request Timeout", None);
            branch_final(core, ctx, &mut c, idx, timeout);
        }
    }
    if out.terminated {
        let key = c.branches[idx].key.clone();
        core.client_txns.remove(&key);
        c.branches[idx].request = None;
    }
    core.finish_if_done(&mut c);
}

/// Keeps `resp` if it beats the best final response so far (§16.7 step 6):
/// 6xx first, then the lowest class; within a class a real answer beats a
/// timeout.
fn keep_best(c: &mut Context, resp: Message) {
    let rank = |m: &Message| {
        let code = m.status().unwrap_or(500);
        let class = if code >= 600 { 0 } else { code / 100 };
        (class, u16::from(code == 408 || code == 487))
    };
    let better = match &c.best {
        None => true,
        Some(best) => rank(&resp) < rank(best),
    };
    if better {
        c.best = Some(resp);
    }
}

/// Carries out what the routing layer says a call does after every branch
/// failed. True when new branches are ringing.
fn go_on(core: &Core, ctx: &Arc<Mutex<Context>>, c: &mut Context) -> bool {
    let Some(next) = routing::after_failure(core, c) else {
        return false;
    };
    match next {
        Next::Trunk => {
            if !next_trunk(core, ctx, c) {
                return false;
            }
            Stats::inc(&core.stats.trunk_failovers);
            tracing::info!("trunk failed: trying the next one");
            c.best = None;
        }
        Next::Phones {
            tenant,
            bindings,
            ring_s,
            steps,
            forwarded,
        } => {
            let application = bindings.iter().any(|b| b.application);
            let wanted = application || crate::recording::rings_a_recorder(&tenant, &bindings);
            if c.media.is_none() && wanted {
                let anchored = anchoring::anchor_now(core, c);
                if !anchored && application {
                    // The application is on loopback: unanchored it could
                    // not face the caller. The call ends with the failure
                    // it had. (A phone that records rings unrecorded.)
                    return false;
                }
            }
            if let Some(leg) = &c.media {
                anchoring::music_for(core, &leg.key, &tenant, &bindings);
            }
            c.plan = steps;
            c.pickup = None;
            if let (Some((extension, passed)), Some(call)) = (forwarded, c.call.as_mut()) {
                call.info.callee_extension = Some(extension);
                call.passed = passed;
            }
            c.no_answer = false;
            c.best = None;
            fork(core, ctx, c, &tenant, &bindings);
            arm_ring_time(core, ctx, c, ring_s);
        }
        Next::Out {
            tenant,
            by,
            target,
            leg,
            admitted,
        } => {
            let key = c.call_key();
            core.admission.open(key.clone(), admitted);
            // An extension that records its calls forwards them recorded.
            if by.record_calls {
                if let Some(call) = c.call.as_mut() {
                    call.recording.always = true;
                }
                if c.media.is_none() {
                    anchoring::anchor_now(core, c);
                }
            }
            let destination = leg.destination.e164.clone();
            c.carrier = Some(*leg);
            if !next_trunk(core, ctx, c) {
                // Every trunk full: the call ends with what the phones said.
                c.carrier = None;
                core.admission.drop_outbound(&key);
                return false;
            }
            core.events.publish(SipEvent::CallForwardedOut {
                reseller: tenant.reseller,
                customer: tenant.customer,
                call_id: key.0,
                caller_tag: key.1,
                by_extension: by.id,
                callee: target,
                destination,
                at: pbx_store::now_ms(),
            });
            tracing::debug!(customer = %tenant.customer, from = %by.number, "call forwarded out after ringing");
            c.best = None;
            c.no_answer = false;
            c.no_answer_at = None;
        }
    }
    c.pending_branches() > 0
}

/// Sends the best final response upstream once every branch has one (and
/// no 2xx went up).
fn finish_if_all_final(core: &Core, ctx: &Arc<Mutex<Context>>, c: &mut Context) {
    if c.pending_branches() > 0 || c.answered || !c.server.awaiting_final() {
        return;
    }
    if go_on(core, ctx, c) {
        return;
    }
    let Some(mut best) = c.best.take() else {
        return;
    };
    // This node's own answer (a branch it could not send, all trunks busy)
    // was built from the request as received: its Vias are the caller's
    // already, and its 503 (no media ports) is ours to give.
    let local = best.to().tag().as_deref() == Some(core.node.sl_tag.as_str());
    if !local && !best.pop_via() {
        // The response lost the upstream Vias downstream (a broken UAS); the
        // caller still gets a final answer, built from our copy of its request.
        let Some(request) = c.request.as_ref() else {
            return;
        };
        let code = best.status().unwrap_or(500);
        let reason = match &best.start {
            StartLine::Response(s) => s.reason.clone(),
            StartLine::Request(_) => String::new(),
        };
        best = Message::response(request, code, &reason, best.to().tag().as_deref());
    }
    if best.status() == Some(503) && !local {
        // §16.7 step 6: a 503 from downstream must not make the caller avoid us.
        best.start = StartLine::Response(StatusLine {
            code: 500,
            reason: "Server Internal Error".into(),
        });
        best.remove_all(&HeaderName::RetryAfter);
    }
    if c.no_answer {
        // The phones were cancelled by us for ringing too long, with nothing
        // left to try: the caller hears "unavailable", not "terminated".
        if let Some(request) = c.request.as_ref() {
            best = Message::response(
                request,
                480,
                "Temporarily Unavailable",
                best.to().tag().as_deref(),
            );
        }
    }
    let code = best.status().unwrap_or(500);
    if c.in_dialog.is_some() && matches!(c.method, Method::Invite | Method::Update) {
        // A rejected re-INVITE or UPDATE changed nothing of the media.
        if let Some(leg) = &c.media {
            core.media.offer_rejected(&leg.key);
        }
    }
    core.send_response(ctx, c, &best);
    if let Some(call) = c.call.take() {
        let caller_tag = call.caller_tag.clone();
        for tag in std::mem::take(&mut c.early) {
            core.dialogs.remove(best.call_id(), &caller_tag, &tag);
        }
        core.events.publish(SipEvent::CallEnded {
            reseller: call.info.reseller,
            customer: call.info.customer,
            call_id: best.call_id().to_owned(),
            caller_tag,
            outcome: failure_outcome(code),
            sip_status: code,
            hangup: None,
            reason: None,
            trunk: c.branches.last().and_then(|b| b.trunk),
            at: pbx_store::now_ms(),
            media: anchoring::end(core, best.call_id(), &call.caller_tag),
        });
    }
    if let Some((from_tag, to_tag)) = c.in_dialog.clone() {
        if c.method == Method::Bye {
            end_dialog(core, best.call_id(), &from_tag, &to_tag);
        }
    }
    c.request = None;
}

/// Removes a dialog after its BYE and reports the end of its call.
fn end_dialog(core: &Core, call_id: &str, from_tag: &str, to_tag: &str) {
    let Some(dialog) = core.dialogs.remove(call_id, from_tag, to_tag) else {
        return;
    };
    if dialog.kind == DialogKind::Invite {
        let hangup = if dialog.caller.tag == from_tag {
            HangupSide::Caller
        } else {
            HangupSide::Callee
        };
        core.events.publish(SipEvent::CallEnded {
            reseller: dialog.call.reseller,
            customer: dialog.call.customer,
            call_id: call_id.to_owned(),
            caller_tag: dialog.caller.tag.clone(),
            outcome: CallOutcome::Answered,
            sip_status: 200,
            hangup: Some(hangup),
            reason: None,
            trunk: None,
            at: pbx_store::now_ms(),
            // A dialog that does not hold the call's media (a second fork's)
            // leaves it to the one that does.
            media: dialog
                .media
                .and_then(|_| anchoring::end(core, call_id, &dialog.caller.tag)),
        });
    }
}

/// The URI of a message's first Contact, if it has one.
fn first_contact(m: &Message) -> Option<Uri> {
    match m.contacts().ok()?.into_iter().next() {
        Some(pbx_sip_message::Contact::Addr(a)) => Some(a.uri),
        _ => None,
    }
}
