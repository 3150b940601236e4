//! The PBX's decisions: where an initial request goes. It authenticates
//! the caller (or knows a carrier by its address), reads what was dialled
//! (an extension, a ring group, a number on the public network, an emergency
//! number), follows the forwards that apply before ringing, admits calls to
//! the public network against the customer's limits and toll-fraud alarms,
//! chooses the carrier trunks, and decides whether the media is anchored.
//! The result is a [`Plan`]: who places the call, who it is for, and the
//! targets and steps that ring — or a refusal, answered and recorded here.
//! When every branch of a call fails, [`after_failure`] says what next (the
//! next trunk, a ring group's next members, a busy or no-answer forward).
//!
//! The proxy carries plans out: it rings the targets it is given and
//! records whom (the call's extension, the forwards passed), but decides
//! nothing about extensions, groups or forwards. New kinds of destination
//! (voicemail, IVR, conference) are new targets decided here.

use std::collections::VecDeque;
use std::sync::Arc;

use pbx_sip_message::{HeaderName, Host, Message, Method, NameAddr, Uri};
use pbx_store::call_records::CallDirection;
use pbx_store::trunks::Trunk;
use pbx_store::{DeviceId, ExtensionId};

use crate::admission::Admitted;
use crate::anchoring;
use crate::carrier::{self, CarrierLeg, Inbound};
use crate::context::{Context, Step};
use crate::core::Core;
use crate::credentials::{self, Asker, Checked};
use crate::directory::{Carriers, Device, Extension, RingGroup, Tenant};
use crate::events::{CallOutcome, SipEvent};
use crate::location::Binding;
use crate::stats::Stats;
use crate::transport::Flow;

/// An initial request and what to do with it: the proxy's to carry out.
pub struct Routed {
    pub req: Message,
    pub flow: Flow,
    pub plan: Plan,
}

/// Who places a call, who it is for, where it rings, and how.
pub struct Plan {
    pub tenant: Arc<Tenant>,
    pub caller: Caller,
    pub ringing: Ringing,
    /// The call's media goes through the relay (INVITEs only).
    pub anchor: bool,
    /// Whether it is recorded (its media is then anchored).
    pub recording: crate::recording::Policy,
    /// The anchoring policy itself wants the relay (not only a recording
    /// that may happen): a call the relay cannot take is then refused.
    pub anchor_required: bool,
}

impl Routed {
    fn new(
        req: Message,
        flow: Flow,
        tenant: Arc<Tenant>,
        caller: Caller,
        ringing: Ringing,
        core: &Core,
        number_records: bool,
    ) -> Routed {
        let invite = req.method() == Some(&Method::Invite);
        let recording = if invite {
            crate::recording::at_routing(&tenant, &caller, &ringing, number_records)
        } else {
            crate::recording::Policy::default()
        };
        // Only the relay can record: a call that may be recorded is anchored.
        let anchor_required = invite && anchor(core, &tenant, &req, &flow, &caller, &ringing);
        let anchor = anchor_required || (invite && recording.maybe);
        Routed {
            req,
            flow,
            plan: Plan {
                tenant,
                caller,
                ringing,
                anchor,
                recording,
                anchor_required,
            },
        }
    }
}

/// A request that is not for this node and has no To tag.
pub fn route(core: &Core, req: Message, flow: Flow) -> Option<Routed> {
    let method = req.method().cloned().unwrap_or(Method::Options);
    // A scheme this node can never route is refused before anything else
    // (RFC 3261 §8.2.2.1); tel: is a number a carrier trunk may take.
    if matches!(req.request_line().map(|r| &r.uri), Some(Uri::Other { .. })) {
        let resp = core
            .node
            .local_response(&req, 416, "Unsupported URI Scheme", None);
        core.node.reply_stateless(&req, flow, resp);
        return None;
    }
    if core.from_application(&flow) {
        return from_application(core, req, flow);
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
        Err(Some(resp)) => {
            core.node.reply_stateless(&req, flow, *resp);
            return None;
        }
        Err(None) => return None,
    };
    let caller = Caller {
        extension: Some(device.extension),
        device: Some(device.id),
        direction: CallDirection::Internal,
    };
    let refuse = |code: u16, reason: &str, callee: Option<&Extension>| -> Option<Routed> {
        refuse_call(
            core,
            &req,
            flow,
            &tenant,
            &caller,
            Refused::internal(callee),
            code,
            reason,
        );
        None
    };
    let dialled = carrier::dialled_user(&req).unwrap_or_default();
    // Emergency numbers go out first, whatever an extension is numbered.
    let emergency = method == Method::Invite && carrier::is_emergency(&dialled, &tenant);
    let target = if emergency {
        Target::Public
    } else if method == Method::Invite && dialled == MAILBOX_CODE {
        Target::Mailbox
    } else if method == Method::Invite && dialled == ANY_MAILBOX_CODE {
        Target::AnyMailbox
    } else if method == Method::Invite && dialled == GROUP_PICKUP_CODE {
        Target::Pickup(None)
    } else if let Some(number) = dialled
        .strip_prefix(PICKUP_PREFIX)
        .filter(|_| method == Method::Invite)
    {
        match tenant.extension(number) {
            Some(e) => Target::Pickup(Some(e.clone())),
            None => return refuse(404, "Not Found", None),
        }
    } else if method == Method::Subscribe && is_event(&req, "message-summary") {
        Target::Lamp
    } else if method == Method::Subscribe && is_event(&req, "dialog") {
        Target::BusyLamp
    } else {
        match target_extension(core, &req, &tenant) {
            Ok(e) => Target::Extension(e),
            Err((404, reason)) => {
                let invite = method == Method::Invite;
                let group = ring_group_of(&req, &tenant).filter(|_| invite);
                let room = tenant.conference_room(&dialled).filter(|_| invite);
                match (group, room) {
                    (Some(group), _) => Target::Group(group),
                    (None, Some(room)) => Target::Room(dialled.clone(), room),
                    (None, None) if invite => Target::Public,
                    (None, None) => return refuse(404, reason, None),
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
        Target::Mailbox => {
            // The box of the extension whose device authenticated: the
            // device's password is the box's.
            let own = tenant.extension_by_id(device.extension);
            let binding = own.and_then(|e| {
                core.application_binding(&tenant, Some(e.id), &format!("vmbox-{}", e.id.0))
            });
            match binding {
                Some(b) => Ringing::phones(MAILBOX_CODE.to_owned(), None, vec![b]),
                None => return refuse(480, "Temporarily Unavailable", None),
            }
        }
        Target::BusyLamp => {
            // A colleague's calls (a BLF key): any extension of the
            // caller's own customer.
            let watched = match target_extension(core, &req, &tenant) {
                Ok(e) => e,
                Err((code, reason)) => return refuse(code, reason, None),
            };
            let user = format!("blf-{}", watched.id.0);
            match core.application_binding(&tenant, Some(watched.id), &user) {
                Some(b) => Ringing::phones(dialled.clone(), None, vec![b]),
                None => return refuse(480, "Temporarily Unavailable", None),
            }
        }
        Target::AnyMailbox => {
            // Which box, the caller says to the application with the
            // box's PIN: any box of its own customer.
            let user = format!("vmlogin-{}", tenant.customer.0);
            match core.application_binding(&tenant, None, &user) {
                Some(b) => Ringing::phones(ANY_MAILBOX_CODE.to_owned(), None, vec![b]),
                None => return refuse(480, "Temporarily Unavailable", None),
            }
        }
        Target::Lamp => {
            // A phone watches its own box (RFC 3842), named by its own
            // address or the voicemail code; another extension's box is
            // not its to watch.
            let named = target_extension(core, &req, &tenant).ok().map(|e| e.id);
            if dialled != MAILBOX_CODE && named != Some(device.extension) {
                return refuse(403, "Forbidden", None);
            }
            let own = tenant.extension_by_id(device.extension);
            let binding = own.and_then(|e| {
                core.application_binding(&tenant, Some(e.id), &format!("mwi-{}", e.id.0))
            });
            match binding {
                Some(b) => Ringing::phones(dialled.clone(), None, vec![b]),
                None => return refuse(480, "Temporarily Unavailable", None),
            }
        }
        Target::Pickup(watched) => {
            // The application server finds the ringing call and joins it
            // to this one.
            let user = match &watched {
                Some(e) => format!("pickup-{}-{}", tenant.customer.0, e.id.0),
                None => format!("pickup-{}", tenant.customer.0),
            };
            match core.application_binding(&tenant, None, &user) {
                Some(b) => Ringing::phones(dialled.clone(), None, vec![b]),
                None => return refuse(480, "Temporarily Unavailable", None),
            }
        }
        Target::Room(number, room) => {
            let binding = core.application_binding(&tenant, None, &format!("conf-{}", room.0));
            match binding {
                Some(b) => Ringing::phones(number, None, vec![b]),
                None => return refuse(480, "Temporarily Unavailable", None),
            }
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
                refuse_call(core, &req, flow, &tenant, &caller, refused, code, reason);
                return None;
            }
        },
    };
    Some(Routed::new(req, flow, tenant, caller, ringing, core, false))
}

/// A request of this node's application server: trusted, not
/// authenticated. A call it places for a caller it answered (an auto
/// attendant's transfer), or a message-waiting NOTIFY for an extension's
/// phones. The NOTIFY skips the phones it names as subscribed (they are
/// told in their subscriptions).
fn from_application(core: &Core, mut req: Message, flow: Flow) -> Option<Routed> {
    let tenant = core.tenant_of_request(&req);
    if req.method() == Some(&Method::Invite) {
        return match tenant {
            Some(tenant) => application_call(core, req, flow, tenant),
            None => {
                let resp = core.node.local_response(&req, 404, "Not Found", None);
                core.node.reply_stateless(&req, flow, resp);
                None
            }
        };
    }
    let target = tenant
        .as_ref()
        .and_then(|t| target_extension(core, &req, t).ok());
    let (Some(tenant), Some(extension)) = (tenant, target) else {
        let resp = core.node.local_response(&req, 404, "Not Found", None);
        core.node.reply_stateless(&req, flow, resp);
        return None;
    };
    // It may tell lamps, nothing else (no calls, no messages to phones).
    let mwi = req.method() == Some(&Method::Notify) && is_event(&req, "message-summary");
    if !mwi {
        let resp = core.node.local_response(&req, 403, "Forbidden", None);
        core.node.reply_stateless(&req, flow, resp);
        return None;
    }
    let mut bindings = core
        .location
        .of_extension(extension.id, pbx_store::now_ms());
    if bindings.is_empty() {
        let resp = core
            .node
            .local_response(&req, 480, "Temporarily Unavailable", None);
        core.node.reply_stateless(&req, flow, resp);
        return None;
    }
    let subscribed: Vec<String> = req
        .values(&HeaderName::LampSubscribed)
        .filter_map(|h| h.text())
        .filter_map(|t| NameAddr::parse(t.trim()).ok())
        .map(|n| n.uri.to_string())
        .collect();
    req.remove_all(&HeaderName::LampSubscribed);
    bindings.retain(|b| {
        let contact = NameAddr::parse(&b.contact).map(|n| n.uri.to_string());
        !contact.is_ok_and(|c| subscribed.contains(&c))
    });
    if bindings.is_empty() {
        // Every phone of it was told in its own subscription.
        let resp = core.node.local_response(&req, 200, "OK", None);
        core.node.reply_stateless(&req, flow, resp);
        return None;
    }
    let caller = Caller {
        extension: None,
        device: None,
        direction: CallDirection::Internal,
    };
    let ringing = Ringing::phones(extension.number.clone(), Some(extension), bindings);
    Some(Routed::new(req, flow, tenant, caller, ringing, core, false))
}

/// A call the application server places for a caller it answered: to an
/// extension of the customer the Request-URI names (after its forwards,
/// like any call to it) or to a ring group of it; never straight out.
fn application_call(core: &Core, req: Message, flow: Flow, tenant: Arc<Tenant>) -> Option<Routed> {
    let caller = Caller {
        extension: None,
        device: None,
        direction: CallDirection::Internal,
    };
    let refuse = |code: u16, reason: &str, callee: Option<&Extension>| -> Option<Routed> {
        let refused = Refused::internal(callee);
        refuse_call(core, &req, flow, &tenant, &caller, refused, code, reason);
        None
    };
    let now = pbx_store::now_ms();
    let ringing = match target_extension(core, &req, &tenant) {
        Ok(extension) => match ring_extension(core, &tenant, extension, req.call_id(), now) {
            Ok(ringing) => ringing,
            Err((code, reason, at)) => return refuse(code, reason, Some(&at)),
        },
        Err((404, reason)) => match ring_group_of(&req, &tenant) {
            Some(group) => match ring_group(core, &tenant, &group, now) {
                Some(ringing) => ringing,
                None => return refuse(480, "Temporarily Unavailable", None),
            },
            None => return refuse(404, reason, None),
        },
        Err((code, reason)) => return refuse(code, reason, None),
    };
    Some(Routed::new(req, flow, tenant, caller, ringing, core, false))
}

/// Who places a call: a device of the customer, or a carrier (inbound).
pub struct Caller {
    pub extension: Option<ExtensionId>,
    pub device: Option<DeviceId>,
    pub direction: CallDirection,
}

/// Where an initial request goes, once decided.
pub enum Ringing {
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
fn from_carrier(
    core: &Core,
    req: Message,
    flow: Flow,
    trunks: &[&Trunk],
    carriers: &Carriers,
) -> Option<Routed> {
    let method = req.method().cloned().unwrap_or(Method::Options);
    let reply = |code: u16, reason: &str| -> Option<Routed> {
        let resp = core.node.local_response(&req, code, reason, None);
        core.node.reply_stateless(&req, flow, resp);
        None
    };
    match method {
        Method::Invite => {}
        // Carriers ask whether we are up.
        Method::Options => return reply(200, "OK"),
        Method::Ack => return None,
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
    let refuse = |code: u16, reason: &str, callee: Option<&Extension>| -> Option<Routed> {
        let refused = Refused {
            callee,
            destination: Some(&called),
            direction: CallDirection::Inbound,
        };
        refuse_call(core, &req, flow, &tenant, &caller, refused, code, reason);
        None
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
        Inbound::Room(room) => {
            let binding = tenant
                .has_room(room)
                .then(|| core.application_binding(&tenant, None, &format!("conf-{}", room.0)));
            match binding.flatten() {
                Some(b) => Ringing::phones(format!("+{called}"), None, vec![b]),
                None => return refuse(480, "Temporarily Unavailable", None),
            }
        }
        Inbound::Voicemail(id) => {
            let Some(extension) = tenant.extension_by_id(id).cloned() else {
                return refuse(480, "Temporarily Unavailable", None);
            };
            match voicemail_of(core, &tenant, &extension) {
                Some(b) => Ringing::phones(extension.number.clone(), Some(extension), vec![b]),
                None => return refuse(480, "Temporarily Unavailable", Some(&extension)),
            }
        }
        Inbound::Menu(menu) => {
            // The application reads the menu (and refuses one that is not
            // there any more).
            let binding = core.application_binding(&tenant, None, &format!("ivr-{}", menu.0));
            match binding {
                Some(b) => Ringing::phones(format!("+{called}"), None, vec![b]),
                None => return refuse(480, "Temporarily Unavailable", None),
            }
        }
        Inbound::Nowhere => return refuse(480, "Temporarily Unavailable", None),
    };
    // The call's record names the number called, not the extension.
    ringing.set_callee(format!("+{called}"));
    Some(Routed::new(
        req,
        flow,
        tenant,
        caller,
        ringing,
        core,
        routed.record_calls,
    ))
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
    // An application listens on loopback: only the relay can face the
    // phones it calls, or the caller who calls it.
    if core.from_application(flow) {
        return true;
    }
    if let Ringing::Phones { bindings, .. } = ringing {
        if bindings.iter().any(|b| b.application) {
            return true;
        }
    }
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
pub fn refuse_media(
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
    let mut resp = core
        .node
        .local_response(req, code, reason, tenant.server_header.as_deref());
    anchoring::warning(&mut resp, e);
    core.node.reply_stateless(req, flow, resp);
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
    let resp = core
        .node
        .local_response(req, code, reason, tenant.server_header.as_deref());
    core.node.reply_stateless(req, flow, resp);
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
    let forbidden = |server: Option<&str>| {
        Some(Box::new(core.node.local_response(
            req,
            403,
            "Forbidden",
            server,
        )))
    };
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

/// The ringing time of `extension`'s no-answer forward, if it has one.
fn no_answer_seconds(extension: &crate::directory::Extension) -> Option<u64> {
    use crate::directory::ForwardCondition;
    extension.forward(ForwardCondition::NoAnswer).map(|f| {
        f.timeout_s
            .unwrap_or(pbx_store::forwards::DEFAULT_NO_ANSWER_S)
            .clamp(1, 300) as u64
    })
}

/// What a call dialled at: an extension, a ring group, a conference room,
/// or a number on the public network.
enum Target {
    Extension(Arc<Extension>),
    Group(Arc<RingGroup>),
    /// A conference room's number, and the room.
    Room(String, pbx_store::ConferenceRoomId),
    Public,
    /// The caller's own voicemail box ([`MAILBOX_CODE`]).
    Mailbox,
    /// Any box of the caller's customer, opened with its PIN
    /// ([`ANY_MAILBOX_CODE`]).
    AnyMailbox,
    /// A subscription to the lamp of the caller's own box.
    Lamp,
    /// A subscription to an extension's calls (RFC 4235).
    BusyLamp,
    /// Picking up a call ringing at a colleague: any (`*8`), or this
    /// extension's (`**<number>`).
    Pickup(Option<Arc<Extension>>),
}

/// Whether a request is of the event package `package` (its Event header).
fn is_event(req: &Message, package: &str) -> bool {
    req.value_text(&HeaderName::Event)
        .unwrap_or_default()
        .split(';')
        .next()
        .is_some_and(|e| e.trim().eq_ignore_ascii_case(package))
}

/// What a phone dials to listen to its extension's voicemail box.
pub const MAILBOX_CODE: &str = "*97";
/// What a phone dials to listen to any box of its customer (with the
/// box's PIN).
pub const ANY_MAILBOX_CODE: &str = "*98";
/// What a phone dials to pick up a call ringing at any colleague of its
/// customer; `**` and an extension's number picks up that extension's.
pub const GROUP_PICKUP_CODE: &str = "*8";
pub const PICKUP_PREFIX: &str = "**";

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

/// What a call does next when every branch failed (the proxy carries it out).
pub enum Next {
    /// Its next carrier trunk: the one that failed did not reach the callee.
    Trunk,
    /// Phones to ring now: a ring group's next step (with the steps left
    /// after it), or the extension a busy or no-answer forward leads to.
    Phones {
        tenant: Arc<Tenant>,
        bindings: Vec<Binding>,
        ring_s: Option<u64>,
        steps: VecDeque<Step>,
        /// Set for a forward: the extension now rung, and every extension
        /// the call passed on its way there.
        forwarded: Option<(ExtensionId, Vec<ExtensionId>)>,
    },
    /// Out to a number on the public network, which `by` forwards to: the
    /// call, admitted against the customer's limits, becomes an outbound one
    /// (its outbound leg recorded apart).
    Out {
        tenant: Arc<Tenant>,
        by: Arc<Extension>,
        target: String,
        leg: Box<CarrierLeg>,
        admitted: Admitted,
    },
}

/// After every branch of a call has failed: the carrier's next trunk (a
/// trunk that timed out or failed), a ring group's next members, the
/// ringing extension's busy forward (486, 600, 603) or no-answer forward (no
/// answer in time, 408, 480). None when there is nothing to follow (or it
/// would loop): the failure goes to the caller.
pub fn after_failure(core: &Core, c: &Context) -> Option<Next> {
    use crate::directory::ForwardCondition;
    if c.cancelled || c.method != Method::Invite {
        return None;
    }
    let call = c.call.as_ref()?;
    if let Some(binding) = &c.pickup {
        // A colleague picked it up: the application server takes it.
        return Some(Next::Phones {
            tenant: core.directory.by_customer(call.info.customer)?,
            bindings: vec![binding.clone()],
            ring_s: None,
            steps: std::collections::VecDeque::new(),
            forwarded: None,
        });
    }
    let code = c.best.as_ref().and_then(|b| b.status()).unwrap_or(0);
    if let Some(leg) = &c.carrier {
        // A callee that is busy, unknown or declines is the answer,
        // whatever trunk asks; once the callee rang, another trunk would
        // ring it again.
        let reached = c.branches.last().is_some_and(|b| b.reached);
        // A carrier that takes our answer to its challenge (sent with the
        // same CSeq) for a merged request failed too.
        let answered_challenge = leg.challenge_answered && matches!(code, 400 | 482);
        if reached || (code != 408 && !(500..600).contains(&code) && !answered_challenge) {
            return None;
        }
        tracing::debug!(status = code, "trunk failed");
        return Some(Next::Trunk);
    }
    let tenant = core.directory.by_customer(call.info.customer)?;
    if !c.plan.is_empty() {
        // A ring group: whatever the failure, the next members' turn.
        let mut steps = c.plan.clone();
        let (bindings, ring_s) = next_step(core, &tenant, &mut steps, pbx_store::now_ms())?;
        return Some(Next::Phones {
            tenant,
            bindings,
            ring_s,
            steps,
            forwarded: None,
        });
    }
    let condition = if c.no_answer || matches!(code, 408 | 480) {
        ForwardCondition::NoAnswer
    } else if matches!(code, 486 | 600 | 603) {
        ForwardCondition::Busy
    } else {
        return None;
    };
    let current = call
        .info
        .callee_extension
        .and_then(|id| tenant.extension_by_id(id))
        .cloned()?;
    let forward = current.forward(condition)?;
    let now = pbx_store::now_ms();
    let next = match forward_target(&tenant, &core.directory.carriers(), &forward.target) {
        ForwardTarget::Extension(next) => next,
        ForwardTarget::Number => {
            let target = forward.target.clone();
            return forward_out(core, &c.call_key().0, tenant, current, target, now);
        }
        ForwardTarget::Voicemail => {
            let binding = voicemail_of(core, &tenant, &current)?;
            tracing::debug!(customer = %tenant.customer, extension = %current.number,
                condition = condition.as_str(), "call to voicemail after ringing");
            return Some(Next::Phones {
                tenant,
                bindings: vec![binding],
                ring_s: None,
                steps: VecDeque::new(),
                forwarded: Some((current.id, call.passed.clone())),
            });
        }
        ForwardTarget::DeadEnd(..) => return None,
    };
    let mut passed = call.passed.clone();
    if passed.contains(&next.id) || passed.len() > MAX_FORWARDS {
        return None;
    }
    let (extension, bindings) = match follow_forwards(core, &tenant, next, &mut passed, now) {
        Ok(Reached::Phones(extension, bindings)) if !bindings.is_empty() => (extension, bindings),
        Ok(Reached::Out { by, target }) => {
            return forward_out(core, &c.call_key().0, tenant, by, target, now);
        }
        _ => return None,
    };
    tracing::debug!(customer = %tenant.customer, from = %current.number, to = %extension.number,
        condition = condition.as_str(), "call forwarded after ringing");
    Some(Next::Phones {
        tenant,
        bindings,
        ring_s: no_answer_seconds(&extension),
        steps: VecDeque::new(),
        forwarded: Some((extension.id, passed)),
    })
}

/// After ringing, `by`'s forward sends the call to a number outside. None
/// when it cannot go (no route, a limit): the failure so far goes to the
/// caller.
fn forward_out(
    core: &Core,
    call_id: &str,
    tenant: Arc<Tenant>,
    by: Arc<Extension>,
    target: String,
    now: pbx_store::Millis,
) -> Option<Next> {
    let carriers = core.directory.carriers();
    let placer = Placer::forward(by.id);
    let Ok(Ringing::Out { leg, admitted, .. }) =
        call_out(core, &carriers, &tenant, &placer, call_id, &target, now)
    else {
        return None;
    };
    Some(Next::Out {
        tenant,
        by,
        target,
        leg,
        admitted,
    })
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
    /// The forwarding extension's own voicemail box.
    Voicemail,
    DeadEnd(u16, &'static str),
}

/// The forward target that leads to the extension's voicemail box.
pub const VOICEMAIL: &str = pbx_store::forwards::VOICEMAIL;

fn forward_target(tenant: &Tenant, carriers: &Carriers, target: &str) -> ForwardTarget {
    if target.eq_ignore_ascii_case(VOICEMAIL) {
        return ForwardTarget::Voicemail;
    }
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

/// The target that rings `extension`'s voicemail box on this node's
/// application server (`vm-<extension id>`, the user it answers to); None
/// when no application server runs.
fn voicemail_of(core: &Core, tenant: &Tenant, extension: &Extension) -> Option<Binding> {
    core.application_binding(
        tenant,
        Some(extension.id),
        &format!("vm-{}", extension.id.0),
    )
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
            ForwardTarget::Voicemail => {
                return match voicemail_of(core, tenant, &current) {
                    Some(b) => Ok(Reached::Phones(current, vec![b])),
                    None => Err((480, "Temporarily Unavailable", current)),
                };
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

/// The extension a request is for, within the caller's own customer only.
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
    let ours = uri.host.is_name(&tenant.domain) || core.node.is_us(&uri.host, uri.port, None);
    if !ours {
        // Another customer's domain or somewhere else entirely: same answer.
        return Err((403, "Forbidden"));
    }
    let user = uri.user_unescaped().ok_or((404, "Not Found"))?;
    tenant.extension(&user).cloned().ok_or((404, "Not Found"))
}

pub fn failure_outcome(code: u16) -> CallOutcome {
    match code {
        486 | 600 | 603 => CallOutcome::Busy,
        408 | 480 => CallOutcome::NoAnswer,
        487 => CallOutcome::Cancelled,
        _ => CallOutcome::Failed,
    }
}

/// The user part of a request's From URI (a phone's user name, a carrier's number).
pub fn from_user(req: &Message) -> String {
    req.from()
        .uri
        .as_sip()
        .and_then(|u| u.user_unescaped())
        .unwrap_or_default()
}
