//! The stateful proxy (RFC 3261 §16) between the extensions of one customer.
//!
//! Initial requests: the caller authenticates (407, realm = its customer's
//! domain); the Request-URI must name an extension of that same customer
//! (by number, at the customer's domain or this node's address); the request
//! forks in parallel to every registered device of the extension, record-
//! routed. In-dialog requests are only forwarded within dialogs this proxy set
//! up, to the other party's known flow. Responses are chosen per §16.7, CANCEL
//! per §16.10, Timer C per §16.8.

use std::sync::{Arc, Mutex};

use pbx_sip_message::auth::DigestParams;
use pbx_sip_message::{
    Header, HeaderName, Host, Message, Method, NameAddr, StartLine, StatusLine, Uri,
};

use std::collections::VecDeque;

use pbx_media::Party;
use pbx_store::call_records::CallDirection;
use pbx_store::trunks::Trunk;
use pbx_store::{DeviceId, ExtensionId};

use crate::admission::Admitted;
use crate::anchoring::{self, MediaLeg};
use crate::carrier::{self, CarrierLeg, Inbound};
use crate::context::{Branch, CallSetup, Context, Step, TimerTarget};
use crate::core::{lock, Core};
use crate::credentials::{self, Asker, Checked};
use crate::dialogs::{CallInfo, Dialog, DialogKind, Direction, Peer};
use crate::directory::{Carriers, Device, Extension, RingGroup, Tenant};
use crate::events::{CallOutcome, HangupSide, SipEvent};
use crate::location::Binding;
use crate::stats::Stats;
use crate::transaction::{ClientKey, ClientTransaction, TimerKind};
use crate::transport::{Flow, Protocol};

/// Most devices one request forks to.
const MAX_BRANCHES: usize = 16;

fn creates_dialog(method: &Method) -> bool {
    matches!(method, Method::Invite | Method::Subscribe | Method::Refer)
}

/// A request that is not for this node and has no To tag.
pub fn initial(core: &Core, req: Message, flow: Flow) {
    let method = req.method().cloned().unwrap_or(Method::Options);
    // A scheme this node can never route is refused before anything else
    // (RFC 3261 §8.2.2.1); tel: is a number a carrier trunk may take.
    if matches!(req.request_line().map(|r| &r.uri), Some(Uri::Other { .. })) {
        let resp = core.local_response(&req, 416, "Unsupported URI Scheme", None);
        return core.reply_stateless(&req, flow, resp);
    }
    let carriers = core.directory.carriers();
    // A request naming one of our customers' domains is a phone's, wherever
    // it comes from: it authenticates like any other.
    let from_customer = match req.from().uri.as_sip().map(|u| &u.host) {
        Some(Host::Name(name)) => core.directory.by_domain(name).is_some(),
        _ => false,
    };
    if !from_customer {
        let trunks = carriers.trunks_from(flow.remote.ip());
        if !trunks.is_empty() {
            return from_carrier(core, req, flow, &trunks, &carriers);
        }
    }
    let (tenant, device) = match authenticate(core, &req, flow) {
        Ok(found) => found,
        Err(Some(resp)) => return core.reply_stateless(&req, flow, *resp),
        Err(None) => return,
    };
    let caller = Caller {
        extension: Some(device.extension),
        device: Some(device.id),
        direction: CallDirection::Internal,
    };
    let refuse = |code: u16, reason: &str, callee: Option<&Extension>| {
        refuse_call(
            core,
            &req,
            flow,
            &tenant,
            &caller,
            Refused::internal(callee),
            code,
            reason,
        )
    };
    let dialled = carrier::dialled_user(&req).unwrap_or_default();
    // Emergency numbers go out first, whatever an extension is numbered.
    let emergency = method == Method::Invite && carrier::is_emergency(&dialled, &tenant);
    let target = if emergency {
        Target::Public
    } else {
        match target_extension(core, &req, &tenant) {
            Ok(e) => Target::Extension(e),
            Err((404, reason)) => {
                match ring_group_of(&req, &tenant).filter(|_| method == Method::Invite) {
                    Some(group) => Target::Group(group),
                    None if method == Method::Invite => Target::Public,
                    None => return refuse(404, reason, None),
                }
            }
            Err((code, reason)) => return refuse(code, reason, None),
        }
    };
    let now = pbx_store::now_ms();
    let ringing = match target {
        Target::Extension(dialled) if method == Method::Invite => {
            match ring_extension(core, &tenant, dialled, req.call_id(), now) {
                Ok(ringing) => ringing,
                Err((code, reason, at)) => return refuse(code, reason, Some(&at)),
            }
        }
        Target::Extension(dialled) => {
            // Other dialog-creating requests (SUBSCRIBE, REFER) reach the
            // extension's phones as they are: forwarding is for calls.
            let bindings = core.location.of_extension(dialled.id, now);
            if bindings.is_empty() {
                return refuse(480, "Temporarily Unavailable", Some(&dialled));
            }
            Ringing::phones(dialled.number.clone(), Some(dialled), bindings)
        }
        Target::Group(group) => match ring_group(core, &tenant, &group, now) {
            Some(ringing) => ringing,
            None => return refuse(480, "Temporarily Unavailable", None),
        },
        Target::Public => match call_out(
            core,
            &carriers,
            &tenant,
            &Placer {
                extension: caller.extension,
                device: caller.device.map(|d| (d, flow.remote)),
            },
            req.call_id(),
            &dialled,
            now,
        ) {
            Ok(ringing) => ringing,
            Err((code, reason, destination)) => {
                let refused = Refused {
                    callee: None,
                    destination: destination.as_deref(),
                    direction: CallDirection::Outbound,
                };
                return refuse_call(core, &req, flow, &tenant, &caller, refused, code, reason);
            }
        },
    };
    start(core, req, flow, &tenant, caller, ringing);
}

/// Who places a call: a device of the customer, or a carrier (inbound).
struct Caller {
    extension: Option<ExtensionId>,
    device: Option<DeviceId>,
    direction: CallDirection,
}

/// Where an initial request goes, once decided.
enum Ringing {
    /// Phones: an extension's (after its forwards), or a ring group's first
    /// step's, with the steps after it.
    Phones {
        callee: String,
        extension: Option<Arc<Extension>>,
        bindings: Vec<Binding>,
        ring_s: Option<u64>,
        plan: VecDeque<Step>,
        passed: Vec<ExtensionId>,
    },
    /// A carrier trunk, then the next ones on failure.
    Out {
        callee: String,
        leg: Box<CarrierLeg>,
        admitted: Admitted,
        /// The extension whose forward sends the call out (the call's own
        /// record stays with it; the outbound leg is recorded apart).
        forwarded_by: Option<Arc<Extension>>,
    },
}

impl Ringing {
    fn phones(callee: String, extension: Option<Arc<Extension>>, bindings: Vec<Binding>) -> Self {
        Ringing::Phones {
            callee,
            extension,
            bindings,
            ring_s: None,
            plan: VecDeque::new(),
            passed: Vec::new(),
        }
    }

    fn set_callee(&mut self, to: String) {
        match self {
            Ringing::Phones { callee, .. } | Ringing::Out { callee, .. } => *callee = to,
        }
    }
}

/// An extension rung for a call, after the forwards that apply before
/// ringing; or why not, and at which extension.
fn ring_extension(
    core: &Core,
    tenant: &Tenant,
    dialled: Arc<Extension>,
    call_id: &str,
    now: pbx_store::Millis,
) -> Result<Ringing, Refusal> {
    let mut passed = Vec::new();
    let (extension, bindings) =
        match follow_forwards(core, tenant, dialled.clone(), &mut passed, now)? {
            Reached::Phones(extension, bindings) => (extension, bindings),
            Reached::Out { by, target } => {
                let carriers = core.directory.carriers();
                return match call_out(
                    core,
                    &carriers,
                    tenant,
                    &Placer::forward(by.id),
                    call_id,
                    &target,
                    now,
                ) {
                    Ok(Ringing::Out { leg, admitted, .. }) => Ok(Ringing::Out {
                        callee: by.number.clone(),
                        leg,
                        admitted,
                        forwarded_by: Some(by),
                    }),
                    // No route, or a limit: to the caller, the extension
                    // is not reachable now.
                    _ => Err((480, "Temporarily Unavailable", by)),
                };
            }
        };
    if bindings.is_empty() {
        return Err((480, "Temporarily Unavailable", extension));
    }
    if extension.id != dialled.id {
        tracing::debug!(customer = %tenant.customer, from = %dialled.number, to = %extension.number, "call forwarded");
    }
    Ok(Ringing::Phones {
        callee: extension.number.clone(),
        ring_s: no_answer_seconds(&extension),
        extension: Some(extension),
        bindings,
        plan: VecDeque::new(),
        passed,
    })
}

/// A ring group's first members with phones to ring, and the steps after.
fn ring_group(
    core: &Core,
    tenant: &Tenant,
    group: &RingGroup,
    now: pbx_store::Millis,
) -> Option<Ringing> {
    let mut plan = group_plan(group);
    let (bindings, ring_s) = next_step(core, tenant, &mut plan, now)?;
    Some(Ringing::Phones {
        callee: group.number.clone(),
        extension: None,
        bindings,
        ring_s,
        plan,
        passed: Vec::new(),
    })
}

/// Who places a call to the public network.
struct Placer {
    extension: Option<ExtensionId>,
    /// The device dialling, and where its request came from; None for a
    /// forward (no device dials it, so no toll-fraud alarm looks at it).
    device: Option<(DeviceId, std::net::SocketAddr)>,
}

impl Placer {
    fn forward(by: ExtensionId) -> Placer {
        Placer {
            extension: Some(by),
            device: None,
        }
    }
}

/// A call to the public network: the number read by the customer's plan,
/// the trunks that carry it, the limits that admit it and the toll-fraud
/// alarms it may set off. A refusal names the number when it was one.
fn call_out(
    core: &Core,
    carriers: &Carriers,
    tenant: &Tenant,
    placer: &Placer,
    call_id: &str,
    dialled: &str,
    now: pbx_store::Millis,
) -> Result<Ringing, (u16, &'static str, Option<String>)> {
    let destination = match carrier::read_dialled(dialled, tenant) {
        None => return Err((404, "Not Found", None)),
        Some(Err((code, reason))) => return Err((code, reason, None)),
        Some(Ok(d)) => d,
    };
    let hops = carrier::hops(carriers, tenant, &destination);
    if hops.is_empty() {
        return Err((404, "No Route", Some(destination.e164)));
    }
    let admitted = match core
        .admission
        .admit(tenant, destination.class, &destination.e164, now)
    {
        Ok(admitted) => admitted,
        Err(limit) => {
            tracing::warn!(customer = %tenant.customer, destination = %destination.e164,
                limit = %limit, "outbound call refused by a limit");
            Stats::inc(&core.stats.limit_refusals);
            core.events.publish(SipEvent::LimitReached {
                reseller: tenant.reseller,
                customer: tenant.customer,
                call_id: call_id.to_owned(),
                limit,
                destination: destination.e164.clone(),
                at: now,
            });
            return Err((403, "Forbidden", Some(destination.e164)));
        }
    };
    if let Some((device, source)) = placer.device {
        let verdict = core.fraud.check(tenant, device, &destination, now);
        for alarm in &verdict.alarms {
            tracing::warn!(customer = %tenant.customer, device = %device, %source,
                destination = %destination.e164, alarm = alarm.as_str(), blocked = verdict.block,
                "toll-fraud alarm");
            Stats::inc(&core.stats.fraud_alarms);
            core.events.publish(SipEvent::TollFraudSuspected {
                reseller: tenant.reseller,
                customer: tenant.customer,
                extension: placer.extension,
                device,
                source: source.to_string(),
                call_id: call_id.to_owned(),
                alarm: *alarm,
                blocked: verdict.block,
                destination: destination.e164.clone(),
                at: now,
            });
        }
        if verdict.block {
            core.admission.abandon(admitted);
            return Err((403, "Forbidden", Some(destination.e164)));
        }
        if let Some(key) = verdict.learn {
            core.events.publish(SipEvent::DestinationLearned {
                reseller: tenant.reseller,
                customer: tenant.customer,
                device,
                destination: key,
                at: now,
            });
        }
    }
    let caller_id = carriers
        .caller_id(tenant.customer, placer.extension)
        .map(str::to_owned);
    Ok(Ringing::Out {
        callee: dialled.to_owned(),
        leg: Box::new(CarrierLeg {
            dialled: dialled.to_owned(),
            destination,
            caller_id,
            hops: hops.into(),
            current: None,
            challenge_answered: false,
        }),
        admitted,
        forwarded_by: None,
    })
}

/// A request from a carrier's address: a call for one of the customers'
/// numbers (no digest: the carrier is known by where it sends from).
fn from_carrier(core: &Core, req: Message, flow: Flow, trunks: &[&Trunk], carriers: &Carriers) {
    let method = req.method().cloned().unwrap_or(Method::Options);
    let reply = |code: u16, reason: &str| {
        core.reply_stateless(&req, flow, core.local_response(&req, code, reason, None))
    };
    match method {
        Method::Invite => {}
        // Carriers ask whether we are up.
        Method::Options => return reply(200, "OK"),
        Method::Ack => return,
        _ => return reply(405, "Method Not Allowed"),
    }
    let found = trunks.iter().find_map(|trunk| {
        let (called, routed) = carrier::called_number(&req, trunk, carriers)?;
        let tenant = core.directory.by_customer(routed.customer)?;
        // A reseller's own trunk carries calls for its own customers only.
        let allowed = trunk.reseller_id.is_none_or(|r| r == tenant.reseller);
        allowed.then_some((called, routed, tenant))
    });
    let Some((called, routed, tenant)) = found else {
        if let Some(trunk) = trunks.first() {
            unrouted(core, &req, flow, trunk);
        }
        return reply(404, "Not Found");
    };
    let caller = Caller {
        extension: None,
        device: None,
        direction: CallDirection::Inbound,
    };
    let refuse = |code: u16, reason: &str, callee: Option<&Extension>| {
        let refused = Refused {
            callee,
            destination: Some(&called),
            direction: CallDirection::Inbound,
        };
        refuse_call(core, &req, flow, &tenant, &caller, refused, code, reason)
    };
    if !tenant.active {
        return refuse(480, "Temporarily Unavailable", None);
    }
    let now = pbx_store::now_ms();
    let mut ringing = match carrier::inbound_destination(routed.destination, &tenant, now) {
        Inbound::Extension(id) => {
            let Some(extension) = tenant.extension_by_id(id).cloned() else {
                return refuse(480, "Temporarily Unavailable", None);
            };
            match ring_extension(core, &tenant, extension, req.call_id(), now) {
                Ok(ringing) => ringing,
                Err((code, reason, at)) => return refuse(code, reason, Some(&at)),
            }
        }
        Inbound::Group(id) => {
            let ringing = tenant
                .ring_group_by_id(id)
                .and_then(|g| ring_group(core, &tenant, g, now));
            match ringing {
                Some(ringing) => ringing,
                None => return refuse(480, "Temporarily Unavailable", None),
            }
        }
        Inbound::Nowhere => return refuse(480, "Temporarily Unavailable", None),
    };
    // The call's record names the number called, not the extension.
    ringing.set_callee(format!("+{called}"));
    start(core, req, flow, &tenant, caller, ringing);
}

/// Notes a call a carrier sent for a number nobody holds (answered 404).
fn unrouted(core: &Core, req: &Message, flow: Flow, trunk: &Trunk) {
    Stats::inc(&core.stats.unrouted_calls);
    tracing::info!(trunk = %trunk.id, call_id = %req.call_id(), called = ?carrier::dialled_user(req),
        "call from a carrier for a number nobody holds");
    core.events.publish(SipEvent::CallUnrouted {
        trunk: trunk.id,
        call_id: req.call_id().to_owned(),
        caller: from_user(req),
        called: carrier::dialled_user(req).unwrap_or_default(),
        source: flow.remote.to_string(),
        at: pbx_store::now_ms(),
    });
}

/// Sets up the call (or other dialog) decided on: the context, its record
/// and the first branches.
fn start(core: &Core, req: Message, flow: Flow, tenant: &Tenant, caller: Caller, ringing: Ringing) {
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
        let resp = core.local_response(&req, 482, "Loop Detected", None);
        return core.reply_stateless(&req, flow, resp);
    }
    let anchored = method == Method::Invite && anchor(core, tenant, &req, &flow, &caller, &ringing);
    if anchored {
        if let Err(e) = anchoring::admit(core, &key, &req, &flow) {
            core.media.delete(&key);
            if let Ringing::Out { admitted, .. } = ringing {
                core.admission.abandon(admitted);
            }
            core.admission.ended(&key, pbx_store::now_ms());
            return refuse_media(core, &req, flow, tenant, &caller, &e);
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
            .map(|r| core.local_response(r, 100, "Trying", None))
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
            started_at: pbx_store::now_ms(),
            passed: match &ringing {
                Ringing::Phones { passed, .. } => passed.clone(),
                Ringing::Out { .. } => Vec::new(),
            },
        });
    }
    if method == Method::Invite {
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
                    .map(|r| core.local_response(r, 480, "All Trunks Busy", None))
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

/// Whether a new call's media goes through the relay: the customer's (or
/// its reseller's, or the node's) policy, given whether a carrier takes
/// part and whether a phone is behind NAT.
fn anchor(
    core: &Core,
    tenant: &Tenant,
    req: &Message,
    flow: &Flow,
    caller: &Caller,
    ringing: &Ringing,
) -> bool {
    let mode = tenant.media_anchor.unwrap_or(core.config.media.anchor);
    let carrier = caller.device.is_none() || matches!(ringing, Ringing::Out { .. });
    let nat = || {
        anchoring::sender_behind_nat(req, flow.remote.ip())
            || match ringing {
                Ringing::Phones { bindings, .. } => {
                    bindings.iter().any(anchoring::binding_behind_nat)
                }
                Ringing::Out { .. } => false,
            }
    };
    anchoring::wanted(
        mode,
        carrier,
        mode == pbx_store::media::AnchorMode::Nat && nat(),
    )
}

/// Refuses a call whose media the relay cannot carry: its SDP (400, 488)
/// or no free ports (503), with a Warning that says which, and a record.
fn refuse_media(
    core: &Core,
    req: &Message,
    flow: Flow,
    tenant: &Tenant,
    caller: &Caller,
    e: &pbx_media::MediaError,
) {
    let code = e.sip_status();
    let reason = match code {
        503 => "Media Ports Exhausted",
        488 => "Not Acceptable Here",
        _ => "Bad Session Description",
    };
    tracing::warn!(call_id = %req.call_id(), customer = %tenant.customer, error = %e, "call refused: media");
    let refused = Refused {
        callee: None,
        destination: None,
        direction: caller.direction,
    };
    record_refused(core, req, tenant, caller, &refused, code);
    let mut resp = core.local_response(req, code, reason, tenant.server_header.as_deref());
    anchoring::warning(&mut resp, e);
    core.reply_stateless(req, flow, resp);
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
    let Some(out_flow) = core.transports.flow_to(hop.protocol, hop.addr) else {
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
    for rr in core.record_route(&c.inbound, &out_flow).into_iter().rev() {
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

/// What a refused call is recorded as.
struct Refused<'a> {
    callee: Option<&'a Extension>,
    /// The number, for calls to or from the public network.
    destination: Option<&'a str>,
    direction: CallDirection,
}

impl<'a> Refused<'a> {
    fn internal(callee: Option<&'a Extension>) -> Self {
        Refused {
            callee,
            destination: None,
            direction: CallDirection::Internal,
        }
    }
}

/// Answers a request the proxy will not route; a refused call still gets
/// its record (a retransmission of the INVITE, refused again, is
/// recognised by the recorder).
#[allow(clippy::too_many_arguments)]
fn refuse_call(
    core: &Core,
    req: &Message,
    flow: Flow,
    tenant: &Tenant,
    caller: &Caller,
    refused: Refused<'_>,
    code: u16,
    reason: &str,
) {
    if req.method() == Some(&Method::Invite) {
        record_refused(core, req, tenant, caller, &refused, code);
    }
    let resp = core.local_response(req, code, reason, tenant.server_header.as_deref());
    core.reply_stateless(req, flow, resp);
}

/// Reports a call the proxy refused before ringing anyone: a start and, at
/// once, its end.
fn record_refused(
    core: &Core,
    req: &Message,
    tenant: &Tenant,
    caller: &Caller,
    refused: &Refused<'_>,
    code: u16,
) {
    let now = pbx_store::now_ms();
    // Its own key (tag and branch): a refused request must never end a call
    // in progress that shares its Call-ID and From tag; its retransmissions
    // keep the branch, so they are still known as the same.
    let caller_tag = format!(
        "{};{}",
        req.from().tag().unwrap_or_default(),
        req.top_via().branch().unwrap_or_default()
    );
    let dialled = carrier::dialled_user(req).unwrap_or_default();
    core.events.publish(SipEvent::CallStarted {
        reseller: tenant.reseller,
        customer: tenant.customer,
        call_id: req.call_id().to_owned(),
        caller_tag: caller_tag.clone(),
        caller: from_user(req),
        callee: refused.callee.map(|e| e.number.clone()).unwrap_or(dialled),
        caller_extension: caller.extension,
        callee_extension: refused.callee.map(|e| e.id),
        caller_device: caller.device,
        direction: refused.direction,
        destination: refused.destination.map(str::to_owned),
        stateless: true,
        at: now,
    });
    core.events.publish(SipEvent::CallEnded {
        reseller: tenant.reseller,
        customer: tenant.customer,
        call_id: req.call_id().to_owned(),
        caller_tag,
        outcome: failure_outcome(code),
        sip_status: code,
        hangup: None,
        reason: None,
        trunk: None,
        at: now,
        media: None,
    });
}

/// An authentication's refusal: the response, or None to say nothing (the
/// abuse guard dropped the request).
type Unauthenticated = Option<Box<Message>>;

/// The caller's customer and device, or why not.
fn authenticate(
    core: &Core,
    req: &Message,
    flow: Flow,
) -> Result<(Arc<Tenant>, Arc<Device>), Unauthenticated> {
    let forbidden =
        |server: Option<&str>| Some(Box::new(core.local_response(req, 403, "Forbidden", server)));
    let Some(from) = req.from().uri.as_sip() else {
        return Err(forbidden(None));
    };
    let tenant = match &from.host {
        Host::Name(name) => core.directory.by_domain(name),
        _ => None,
    };
    let Some(tenant) = tenant else {
        // Neither a customer of this platform nor a carrier: not relaying.
        return Err(forbidden(None));
    };
    let server = tenant.server_header.as_deref();
    if !tenant.active {
        return Err(forbidden(server));
    }
    let device = match credentials::check(core, req, flow, &tenant, Asker::Proxy) {
        Checked::Device(device) => device,
        Checked::Challenge { stale } => {
            return Err(Some(Box::new(credentials::challenge(
                core,
                req,
                flow,
                &tenant,
                Asker::Proxy,
                stale,
            ))))
        }
        Checked::Silence => return Err(None),
    };
    // A device calls as itself.
    if from.user_unescaped().as_deref() != Some(device.sip_user.as_str()) {
        return Err(forbidden(server));
    }
    Ok((tenant, device))
}

/// The extension a request is for, within the caller's own customer only.
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
        let out_flow = binding_flow(core, binding);
        let mut fwd = template.clone();
        fwd.set_request_uri(binding.uri().clone());
        for route in &binding.path {
            fwd.push(Header::new(HeaderName::Route, route.clone()));
        }
        if creates_dialog(&method) {
            for rr in core.record_route(&inbound, &out_flow).into_iter().rev() {
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
            Some(binding.extension),
            Some(binding.device),
        );
    }
}

/// The ringing time of `extension`'s no-answer forward, if it has one.
fn no_answer_seconds(extension: &crate::directory::Extension) -> Option<u64> {
    use crate::directory::ForwardCondition;
    extension.forward(ForwardCondition::NoAnswer).map(|f| {
        f.timeout_s
            .unwrap_or(pbx_store::forwards::DEFAULT_NO_ANSWER_S)
            .clamp(1, 300) as u64
    })
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

/// What a call dialled at: an extension, a ring group, or a number on the
/// public network.
enum Target {
    Extension(Arc<Extension>),
    Group(Arc<RingGroup>),
    Public,
}

/// The ring group the Request-URI's user names, if any (the domain was
/// checked by [`target_extension`] already).
fn ring_group_of(req: &Message, tenant: &Tenant) -> Option<Arc<crate::directory::RingGroup>> {
    let user = req
        .request_line()
        .and_then(|r| r.uri.as_sip())
        .and_then(|u| u.user_unescaped())?;
    tenant.ring_group(&user).cloned()
}

/// A group's members as steps: all at once, or one after another; then its
/// no-answer extension.
fn group_plan(group: &crate::directory::RingGroup) -> std::collections::VecDeque<Step> {
    use pbx_store::ring_groups::Strategy;
    let ring_s = Some(group.member_timeout_s.clamp(1, 300) as u64);
    let mut plan: std::collections::VecDeque<Step> = match group.strategy {
        Strategy::Simultaneous => [Step {
            members: group.members.clone(),
            ring_s,
        }]
        .into(),
        Strategy::Sequential => group
            .members
            .iter()
            .map(|m| Step {
                members: vec![*m],
                ring_s,
            })
            .collect(),
    };
    if let Some(ext) = group.no_answer_extension {
        plan.push_back(Step {
            members: vec![ext],
            ring_s: None,
        });
    }
    plan
}

/// Takes steps off `plan` until one has phones to ring (members on
/// do-not-disturb, in a call already, or with nothing registered are passed
/// over).
fn next_step(
    core: &Core,
    tenant: &Tenant,
    plan: &mut std::collections::VecDeque<Step>,
    now: pbx_store::Millis,
) -> Option<(Vec<crate::location::Binding>, Option<u64>)> {
    while let Some(step) = plan.pop_front() {
        let bindings: Vec<crate::location::Binding> = step
            .members
            .iter()
            .filter_map(|id| tenant.extension_by_id(*id))
            .filter(|e| !e.dnd && !core.admission.in_call(e.id))
            .flat_map(|e| core.location.of_extension(e.id, now))
            .collect();
        if !bindings.is_empty() {
            return Some((bindings, step.ring_s));
        }
    }
    None
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

/// After every phone of the ringing extension has failed: follows its busy
/// forward (486, 600, 603) or no-answer forward (no answer in time, 408,
/// 480) to the next extension, and rings that instead. False when there is
/// nothing to follow (or it would loop): the failure goes to the caller.
fn forward_on_failure(core: &Core, ctx: &Arc<Mutex<Context>>, c: &mut Context) -> bool {
    use crate::directory::ForwardCondition;
    if c.cancelled || c.method != Method::Invite {
        return false;
    }
    let Some(call) = c.call.as_ref() else {
        return false;
    };
    if c.carrier.is_some() {
        // A trunk that timed out or failed: the next one. A callee that is
        // busy, unknown or declines is the answer, whatever trunk asks.
        let code = c.best.as_ref().and_then(|b| b.status()).unwrap_or(0);
        // Once the callee rang, another trunk would ring it again.
        let reached = c.branches.last().is_some_and(|b| b.reached);
        // A carrier that takes our answer to its challenge (sent with the
        // same CSeq) for a merged request failed too.
        let answered_challenge =
            c.carrier.as_ref().is_some_and(|l| l.challenge_answered) && matches!(code, 400 | 482);
        if reached || (code != 408 && !(500..600).contains(&code) && !answered_challenge) {
            return false;
        }
        if !next_trunk(core, ctx, c) {
            return false;
        }
        Stats::inc(&core.stats.trunk_failovers);
        tracing::info!(status = code, "trunk failed: trying the next one");
        c.best = None;
        return c.pending_branches() > 0;
    }
    if !c.plan.is_empty() {
        // A ring group: whatever the failure, the next members' turn.
        let Some(tenant) = core.directory.by_customer(call.info.customer) else {
            return false;
        };
        let mut plan = std::mem::take(&mut c.plan);
        let Some((bindings, ring_s)) = next_step(core, &tenant, &mut plan, pbx_store::now_ms())
        else {
            return false;
        };
        c.plan = plan;
        c.best = None;
        c.no_answer = false;
        fork(core, ctx, c, &tenant, &bindings);
        arm_ring_time(core, ctx, c, ring_s);
        return c.pending_branches() > 0;
    }
    let code = c.best.as_ref().and_then(|b| b.status()).unwrap_or(0);
    let condition = if c.no_answer || matches!(code, 408 | 480) {
        ForwardCondition::NoAnswer
    } else if matches!(code, 486 | 600 | 603) {
        ForwardCondition::Busy
    } else {
        return false;
    };
    let Some(tenant) = core.directory.by_customer(call.info.customer) else {
        return false;
    };
    let Some(current) = call
        .info
        .callee_extension
        .and_then(|id| tenant.extension_by_id(id))
        .cloned()
    else {
        return false;
    };
    let Some(forward) = current.forward(condition) else {
        return false;
    };
    let now = pbx_store::now_ms();
    let next = match forward_target(&tenant, &core.directory.carriers(), &forward.target) {
        ForwardTarget::Extension(next) => next,
        ForwardTarget::Number => {
            let target = forward.target.clone();
            return forward_out_after_ringing(core, ctx, c, &tenant, &current, &target, now);
        }
        ForwardTarget::DeadEnd(..) => return false,
    };
    let mut passed = call.passed.clone();
    if passed.contains(&next.id) || passed.len() > MAX_FORWARDS {
        return false;
    }
    let (extension, bindings) = match follow_forwards(core, &tenant, next, &mut passed, now) {
        Ok(Reached::Phones(extension, bindings)) if !bindings.is_empty() => (extension, bindings),
        Ok(Reached::Out { by, target }) => {
            return forward_out_after_ringing(core, ctx, c, &tenant, &by, &target, now);
        }
        _ => return false,
    };
    tracing::debug!(customer = %tenant.customer, from = %current.number, to = %extension.number,
        condition = condition.as_str(), "call forwarded after ringing");
    if let Some(call) = c.call.as_mut() {
        call.info.callee_extension = Some(extension.id);
        call.passed = passed;
    }
    c.best = None;
    c.no_answer = false;
    let ring_s = no_answer_seconds(&extension);
    fork(core, ctx, c, &tenant, &bindings);
    arm_ring_time(core, ctx, c, ring_s);
    c.pending_branches() > 0
}

/// After ringing, `by`'s forward sends the call to a number outside: the
/// call becomes one to the public network (admitted against the customer's
/// limits, its outbound leg recorded apart). False when it cannot go: the
/// failure so far goes to the caller.
fn forward_out_after_ringing(
    core: &Core,
    ctx: &Arc<Mutex<Context>>,
    c: &mut Context,
    tenant: &Tenant,
    by: &Arc<Extension>,
    target: &str,
    now: pbx_store::Millis,
) -> bool {
    let key = c.call_key();
    let carriers = core.directory.carriers();
    let Ok(Ringing::Out { leg, admitted, .. }) = call_out(
        core,
        &carriers,
        tenant,
        &Placer::forward(by.id),
        &key.0,
        target,
        now,
    ) else {
        return false;
    };
    core.admission.open(key.clone(), admitted);
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
        callee: target.to_owned(),
        destination,
        at: now,
    });
    tracing::debug!(customer = %tenant.customer, from = %by.number, "call forwarded out after ringing");
    c.best = None;
    c.no_answer = false;
    c.no_answer_at = None;
    c.pending_branches() > 0
}

/// Most forwards followed for one call before it counts as a loop.
const MAX_FORWARDS: usize = 5;

type Refusal = (u16, &'static str, Arc<crate::directory::Extension>);
/// Where forwards lead before ringing.
enum Reached {
    /// The extension that rings, and where its phones are.
    Phones(Arc<Extension>, Vec<Binding>),
    /// A number outside, which `by` forwards to.
    Out { by: Arc<Extension>, target: String },
}

/// What a forward's target is: another extension of the customer, a number
/// on the public network, or neither (a dead end: 480; a loop: 482).
enum ForwardTarget {
    Extension(Arc<Extension>),
    Number,
    DeadEnd(u16, &'static str),
}

fn forward_target(tenant: &Tenant, carriers: &Carriers, target: &str) -> ForwardTarget {
    if let Some(next) = tenant.extension(target) {
        return ForwardTarget::Extension(next.clone());
    }
    match carrier::read_dialled(target, tenant) {
        // Emergency services are called, not forwarded to.
        Some(Ok(d)) if d.class == pbx_store::numbering::Class::Emergency => {
            ForwardTarget::DeadEnd(480, "Temporarily Unavailable")
        }
        // A number on this platform would come back in through the carrier
        // and might be forwarded back out again: a loop that costs on every
        // turn, which no header survives carriers to stop.
        Some(Ok(d)) if carriers.number(&d.e164).is_some() => {
            ForwardTarget::DeadEnd(482, "Loop Detected")
        }
        Some(Ok(_)) => ForwardTarget::Number,
        _ => ForwardTarget::DeadEnd(480, "Temporarily Unavailable"),
    }
}

/// Follows the dialled extension's forwards that can be decided before
/// ringing: always, busy (do-not-disturb), and unavailable (no phone
/// registered). Returns the extension to ring and its bindings, the number
/// outside the call is forwarded to, or why the call is refused. A target
/// that leads back to an extension already passed is a loop (482).
fn follow_forwards(
    core: &Core,
    tenant: &Tenant,
    dialled: Arc<crate::directory::Extension>,
    passed: &mut Vec<ExtensionId>,
    now: pbx_store::Millis,
) -> Result<Reached, Refusal> {
    use crate::directory::ForwardCondition;
    let mut current = dialled;
    if !passed.contains(&current.id) {
        passed.push(current.id);
    }
    loop {
        let bindings = core.location.of_extension(current.id, now);
        let forward = if let Some(f) = current.forward(ForwardCondition::Always) {
            Some(f)
        } else if current.dnd {
            match current.forward(ForwardCondition::Busy) {
                Some(f) => Some(f),
                None => return Err((486, "Busy Here", current)),
            }
        } else if bindings.is_empty() {
            match current.forward(ForwardCondition::Unavailable) {
                Some(f) => Some(f),
                None => return Err((480, "Temporarily Unavailable", current)),
            }
        } else {
            None
        };
        let Some(forward) = forward else {
            return Ok(Reached::Phones(current, bindings));
        };
        let next = match forward_target(tenant, &core.directory.carriers(), &forward.target) {
            ForwardTarget::Extension(next) => next,
            ForwardTarget::Number => {
                return Ok(Reached::Out {
                    target: forward.target.clone(),
                    by: current,
                })
            }
            ForwardTarget::DeadEnd(code, reason) => return Err((code, reason, current)),
        };
        if passed.contains(&next.id) || passed.len() > MAX_FORWARDS {
            return Err((482, "Loop Detected", current));
        }
        passed.push(next.id);
        current = next;
    }
}

fn target_extension(
    core: &Core,
    req: &Message,
    tenant: &Tenant,
) -> Result<Arc<crate::directory::Extension>, (u16, &'static str)> {
    let uri = match req.request_line().map(|r| &r.uri) {
        Some(Uri::Sip(u)) => u,
        // A telephone number: for a carrier, if anything.
        Some(Uri::Tel(_)) => return Err((404, "Not Found")),
        _ => return Err((416, "Unsupported URI Scheme")),
    };
    let ours = uri.host.is_name(&tenant.domain) || core.is_us(&uri.host, uri.port, None);
    if !ours {
        // Another customer's domain or somewhere else entirely: same answer.
        return Err((403, "Forbidden"));
    }
    let user = uri.user_unescaped().ok_or((404, "Not Found"))?;
    tenant.extension(&user).cloned().ok_or((404, "Not Found"))
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

impl Context {
    fn key_call_id(&self) -> String {
        self.request
            .as_ref()
            .map(|r| r.call_id().to_owned())
            .unwrap_or_default()
    }

    /// The call's key in events and admission: its Call-ID and the caller's
    /// From tag as the INVITE had it.
    fn call_key(&self) -> crate::admission::CallKey {
        let tag = match &self.call {
            Some(call) => call.caller_tag.clone(),
            None => self
                .request
                .as_ref()
                .and_then(|r| r.from().tag())
                .unwrap_or_default(),
        };
        (self.key_call_id(), tag)
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
                let mut resp = core.local_response(req, e.sip_status(), "Media Not Anchored", None);
                anchoring::warning(&mut resp, &e);
                keep_best(c, resp);
            }
            return false;
        }
    }
    let branch = core.new_branch();
    fwd.push_via(core.our_via(&out_flow, &branch));
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
        core.send(&out_flow, bytes);
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
fn binding_flow(core: &Core, binding: &crate::location::Binding) -> Flow {
    let connected = binding.flow.protocol.is_reliable()
        && binding
            .flow
            .conn
            .is_some_and(|id| core.transports.tcp.is_open(id));
    if connected || binding.behind_nat() {
        return binding.flow;
    }
    binding
        .contact_addr()
        .and_then(|a| core.transports.flow_to(binding.protocol(), a))
        .unwrap_or(binding.flow)
}

/// How to reach a party: down its flow, or at its contact when that is the
/// address its messages came from (no NAT in between).
fn reach(core: &Core, flow: &Flow, contact: Option<&Uri>) -> Flow {
    if flow.protocol.is_reliable() && flow.conn.is_some_and(|id| core.transports.tcp.is_open(id)) {
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
            core.transports.flow_to(protocol, addr).unwrap_or(*flow)
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
            Some(Some(route)) if core.is_our_route(&route.uri) => {
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
        return core.reply_stateless(
            &req,
            flow,
            core.local_response(&req, 400, "Malformed Route", None),
        );
    }
    let (Some(from_tag), Some(to_tag)) = (req.from().tag(), req.to().tag()) else {
        return core.reply_stateless(
            &req,
            flow,
            core.local_response(&req, 481, "Call/Transaction Does Not Exist", None),
        );
    };
    let Some((dialog, direction)) = core.dialogs.find(req.call_id(), &from_tag, &to_tag) else {
        return core.reply_stateless(
            &req,
            flow,
            core.local_response(&req, 481, "Call/Transaction Does Not Exist", None),
        );
    };
    if req.has(&HeaderName::Route) {
        // Our dialogs have no other proxy in their route set.
        return core.reply_stateless(
            &req,
            flow,
            core.local_response(&req, 403, "Forbidden", None),
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
        return core.reply_stateless(
            &req,
            flow,
            core.local_response(&req, 403, "Forbidden", None),
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
            .map(|r| core.local_response(r, 100, "Trying", None))
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
        let via = core.our_via(&flow, &core.new_branch());
        let bye = Message::request(
            Method::Bye,
            uri,
            via,
            from,
            to,
            &dialog.call_id,
            from_peer.cseq.saturating_add(1),
        );
        core.send(&flow, bye.to_bytes());
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
        &core.node_token[..8],
        &pbx_store::secrets::sha256_hex(&incoming)[..16]
    );
    ack.push_via(core.our_via(&out_flow, &branch));
    core.send(&out_flow, ack.to_bytes());
}

/// CANCEL (§9.2, §16.10): answered here, then applied to the INVITE's branches.
pub fn on_cancel(core: &Core, cancel: Message, flow: Flow) {
    let key = crate::transaction::ServerKey::cancelled_invite(&cancel);
    let Some(ctx) = core.server_txns.get(&key) else {
        return core.reply_stateless(
            &cancel,
            flow,
            core.local_response(&cancel, 481, "Call/Transaction Does Not Exist", None),
        );
    };
    // Answering CANCEL is idempotent, so its retransmissions need no transaction.
    core.reply_stateless(&cancel, flow, core.local_response(&cancel, 200, "OK", None));
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
        core.send(&flow, bytes);
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
            core.send(&flow, ack);
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
        if let (Some(call), Some(tag)) = (c.call.clone(), resp.to().tag()) {
            let mut call = call;
            call.info.callee_device = device;
            let mut dialog = new_dialog(c.inbound, &call, &resp, branch_flow, tag, true, &c.method);
            // The first 2xx wins the media; a second fork's answer (or a
            // retransmission) must not take it away from the call.
            if let (Some(leg), false) = (&c.media, c.answered) {
                dialog.media = Some(idx as u32);
                core.media.choose(&leg.key, idx as u32);
                core.media.established(&leg.key);
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
        pass_response(core, c, idx, &mut up, &branch_flow);
        if up.pop_via() {
            if c.server.awaiting_final()
                || c.server.state() == crate::transaction::ServerState::Accepted
            {
                core.send_response(ctx, c, &up);
            } else {
                // A 2xx after we already answered the caller (e.g. cancelled
                // before any provisional): still forward it, statelessly (§16.7 step 5).
                let flow = c.reply_flow;
                core.send(&flow, up.to_bytes());
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
        .is_some_and(|b| b.contains(&core.node_token[..8]));
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
    if let Some(flow) = core.transports.flow_to(protocol, addr) {
        core.send(&flow, resp.to_bytes());
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
            core.send(&flow, bytes);
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
        core.send(&flow, bytes);
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

/// Sends the best final response upstream once every branch has one (and
/// no 2xx went up).
fn finish_if_all_final(core: &Core, ctx: &Arc<Mutex<Context>>, c: &mut Context) {
    if c.pending_branches() > 0 || c.answered || !c.server.awaiting_final() {
        return;
    }
    if forward_on_failure(core, ctx, c) {
        return;
    }
    let Some(mut best) = c.best.take() else {
        return;
    };
    if !best.pop_via() {
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
    if best.status() == Some(503) {
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

fn failure_outcome(code: u16) -> CallOutcome {
    match code {
        486 | 600 | 603 => CallOutcome::Busy,
        408 | 480 => CallOutcome::NoAnswer,
        487 => CallOutcome::Cancelled,
        _ => CallOutcome::Failed,
    }
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

/// The user part of a request's From URI (a phone's user name, a carrier's number).
fn from_user(req: &Message) -> String {
    req.from()
        .uri
        .as_sip()
        .and_then(|u| u.user_unescaped())
        .unwrap_or_default()
}

/// The URI of a message's first Contact, if it has one.
fn first_contact(m: &Message) -> Option<Uri> {
    match m.contacts().ok()?.into_iter().next() {
        Some(pbx_sip_message::Contact::Addr(a)) => Some(a.uri),
        _ => None,
    }
}
