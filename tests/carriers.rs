//! Calls to and from the public network: SIPp plays the carriers (a UAS for
//! outbound calls, a UAC for inbound ones) on 127.0.0.2, and the phones on
//! 127.0.0.1, against the real `pbx`. Trunks, numbers, limits and business
//! hours are configured in the store before the node starts.

mod support;

use std::time::Duration;

use pbx_store::call_records::{CallDirection, CallRecord, RecordFilter};
use pbx_store::limits::Limits;
use pbx_store::numbers::Destination;
use pbx_store::trunks::RegistrationState;
use support::sip::{
    carriers_a, extension_a, open_seeded, register, route_number_a, seed, sipp_available,
    start_node, CarrierWorld, Phone, Seeded, Sipp, SippProcess, TestTrunk, CARRIER_IP,
};
use support::{Node, TempDir};

fn target(node: &Node) -> String {
    format!("127.0.0.1:{}", node.sip_port)
}

/// Everything allowed: limits are not what most tests look at.
fn open_limits() -> Limits {
    Limits {
        allow_international: true,
        allow_premium: true,
        ..Limits::default()
    }
}

/// A carrier answering on a free port of 127.0.0.2 with `scenario`.
fn carrier(scenario: &str) -> Sipp {
    Sipp::new(scenario).local_ip(CARRIER_IP)
}

struct World {
    dir: TempDir,
    node: Node,
    seeded: Seeded,
    carriers: CarrierWorld,
}

/// Seeds the tenants, configures `trunks`, A's number (routed by `route`)
/// and A's `limits`, then starts a node.
fn world(
    tag: &str,
    trunks: &[TestTrunk<'_>],
    limits: &Limits,
    route: impl FnOnce(&TempDir) -> Option<Destination>,
) -> World {
    let dir = TempDir::new(tag);
    let seeded = seed(dir.path());
    let carriers = carriers_a(dir.path(), trunks, limits);
    if let Some(destination) = route(&dir) {
        route_number_a(dir.path(), &carriers, destination);
    }
    let node = start_node(&dir, "MD5");
    World {
        dir,
        node,
        seeded,
        carriers,
    }
}

fn to_extension(number: &'static str) -> impl FnOnce(&TempDir) -> Option<Destination> {
    move |dir| {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        rt.block_on(async {
            let store = open_seeded(dir.path()).await;
            let id = extension_a(&store, number).await;
            store.close().await;
            Some(Destination::Extension(id))
        })
    }
}

fn trunk<'a>(name: &'a str, port: u16, priority: i64) -> TestTrunk<'a> {
    TestTrunk {
        name,
        port,
        priority,
        prefixes: &[""],
        max_channels: None,
        register: None,
        credentials: None,
    }
}

fn call(node: &Node, caller: &Phone, dialled: &str, pause_ms: u32) -> support::sip::SippOutcome {
    Sipp::new("uac_call.xml")
        .phone(caller, &format!("{dialled}@{}", caller.domain))
        .key("callee", dialled)
        .key("callee_domain", &caller.domain)
        .arg("-d")
        .arg(&pause_ms.to_string())
        .run(&target(node))
}

fn expect_final(node: &Node, caller: &Phone, dialled: &str, code: u16) {
    let out = Sipp::new("uac_final.xml.in")
        .fill(&code.to_string())
        .phone(caller, &format!("{dialled}@{}", caller.domain))
        .key("callee", dialled)
        .key("callee_domain", &caller.domain)
        .run(&target(node));
    assert!(
        out.success,
        "expected {code} dialling {dialled}:\n{}",
        out.log
    );
}

/// The call records the node stored (it must have been stopped).
fn records(dir: &TempDir) -> Vec<CallRecord> {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let store = open_seeded(dir.path()).await;
        let filter = RecordFilter {
            limit: 50,
            ..Default::default()
        };
        let mut out = store
            .call_records()
            .list(&pbx_store::Principal::system(), &filter)
            .await
            .expect("records");
        store.close().await;
        out.sort_by_key(|r| r.call.invite_at);
        out
    })
}

fn finished(process: SippProcess, what: &str) -> String {
    let out = process.finish(Duration::from_secs(15));
    assert!(out.success, "{what}:\n{}", out.log);
    out.log
}

#[test]
fn a_call_to_a_german_number_leaves_through_the_trunk_with_the_callers_number() {
    if !sipp_available() {
        return;
    }
    let uas = carrier("uas_answer.xml").arg("-m").arg("1");
    let w = world(
        "out",
        &[trunk("Carrier", uas.port, 10)],
        &open_limits(),
        to_extension("101"),
    );
    let uas = uas.spawn(&target(&w.node));
    let out = call(&w.node, &w.seeded.a101, "0307654321", 300);
    assert!(out.success, "{}", out.log);
    let carrier_log = finished(uas, "the carrier");
    // Dialled nationally, sent as E.164 with '+', the extension's own
    // number as its identity; the phone's credentials stay with us.
    assert!(
        carrier_log.contains("INVITE sip:+49307654321@127.0.0.2:"),
        "{carrier_log}"
    );
    assert!(
        carrier_log.contains("P-Asserted-Identity: <sip:+49301234567@127.0.0.2;user=phone>"),
        "{carrier_log}"
    );
    assert!(
        !carrier_log.contains("Proxy-Authorization"),
        "{carrier_log}"
    );
    assert!(w.node.stop().success());
    let records = records(&w.dir);
    assert_eq!(records.len(), 1, "{records:#?}");
    let r = &records[0];
    assert_eq!(r.call.direction, CallDirection::Outbound);
    assert_eq!(r.call.destination.as_deref(), Some("49307654321"));
    assert_eq!(r.call.trunk_id, Some(w.carriers.trunks[0]));
    assert!(r.call.answer_at.is_some());
    // Rated at A's retail plan: 6 ct a minute, per second.
    let retail = r.retail.as_ref().expect("rated");
    assert_eq!(retail.prefix.as_deref(), Some("49"));
    let seconds = (r.billable_ms + 999) / 1000;
    assert_eq!(retail.micros, Some(seconds * 1_000));
}

/// Two trunks for every number: the first (priority 10) answers `first`
/// (such as "503 Service Unavailable"), the second (priority 20) answers.
fn two_trunks(tag: &str, first: &str) -> (World, SippProcess, SippProcess) {
    two_trunks_with("uas_final.xml.in", tag, first)
}

/// As [`two_trunks`], the first trunk playing `scenario` (a template).
fn two_trunks_with(scenario: &str, tag: &str, first: &str) -> (World, SippProcess, SippProcess) {
    let one = carrier(scenario).fill(first).arg("-m").arg("1");
    let two = carrier("uas_answer.xml").arg("-m").arg("1");
    let w = world(
        tag,
        &[trunk("First", one.port, 10), trunk("Second", two.port, 20)],
        &open_limits(),
        |_| None,
    );
    let one = one.spawn(&target(&w.node));
    let two = two.spawn(&target(&w.node));
    (w, one, two)
}

#[test]
fn a_failing_trunk_hands_the_call_to_the_next_but_a_busy_callee_does_not() {
    if !sipp_available() {
        return;
    }
    // A carrier's challenge the trunk cannot answer (no credentials) is a
    // failure of that trunk, never passed to the phone.
    for failure in [
        "503 Service Unavailable",
        "408 Request Timeout",
        "401 Unauthorized",
    ] {
        let (w, first, second) = two_trunks("failover", failure);
        let out = call(&w.node, &w.seeded.a101, "+49891234567", 200);
        assert!(out.success, "after {failure}:\n{}", out.log);
        finished(first, "the first trunk");
        finished(second, "the second trunk");
        assert!(w.node.stop().success());
        let records = records(&w.dir);
        assert_eq!(records.len(), 1, "{records:#?}");
        assert_eq!(
            records[0].call.trunk_id,
            Some(w.carriers.trunks[1]),
            "the trunk finally used"
        );
    }
    for (scenario, answer) in [
        ("uas_final.xml.in", "486 Busy Here"),
        ("uas_final.xml.in", "603 Decline"),
        ("uas_final.xml.in", "404 Not Found"),
        // Once the callee rang, another trunk would ring it again.
        ("uas_ring_final.xml.in", "503 Service Unavailable"),
    ] {
        let (w, first, second) = two_trunks_with(scenario, "no-failover", answer);
        let code: u16 = answer[..3].parse().expect("code");
        // A 503 from downstream reaches the caller as 500 (RFC 3261 §16.7).
        let code = if code == 503 { 500 } else { code };
        expect_final(&w.node, &w.seeded.a101, "+49891234567", code);
        finished(first, "the first trunk");
        drop(w.node);
        let untouched = second.finish(Duration::from_millis(500));
        assert!(
            !untouched.log.contains("INVITE sip:"),
            "{answer} must not go to the next trunk:\n{}",
            untouched.log
        );
    }
}

#[test]
fn limits_refuse_the_call_beyond_them_and_never_an_emergency_call() {
    if !sipp_available() {
        return;
    }
    let uas = carrier("uas_answer.xml").arg("-m").arg("2");
    let limits = Limits {
        max_concurrent_outbound: Some(1),
        ..Limits::default()
    };
    // The customer's endpoint asked to hear of limits (a private address:
    // the node refuses to call it, the deliveries are only queued).
    let hook = std::rc::Rc::new(std::cell::Cell::new(0));
    let hook_id = hook.clone();
    let w = world(
        "limits",
        &[trunk("Carrier", uas.port, 10)],
        &limits,
        move |dir| {
            let rt = tokio::runtime::Runtime::new().expect("runtime");
            rt.block_on(async {
                let store = open_seeded(dir.path()).await;
                let id = support::sip::customer_a_webhook(
                    &store,
                    "https://127.0.0.1:9/alerts",
                    &["limit_reached"],
                )
                .await;
                hook_id.set(id);
                store.close().await;
            });
            None
        },
    );
    let uas = uas.spawn(&target(&w.node));
    // One call in progress (talking for four seconds)…
    let talking = Sipp::new("uac_call.xml")
        .phone(
            &w.seeded.a101,
            &format!("030111222@{}", w.seeded.a101.domain),
        )
        .key("callee", "030111222")
        .key("callee_domain", &w.seeded.a101.domain)
        .arg("-d")
        .arg("4000")
        .arg("-m")
        .arg("1")
        .spawn(&target(&w.node));
    std::thread::sleep(Duration::from_millis(1500));
    // …so the next one is refused, from another phone of the customer too;
    for phone in [&w.seeded.a102, &w.seeded.a101] {
        expect_final(&w.node, phone, "030333444", 403);
    }
    // calls abroad are off until the reseller allows them;
    expect_final(&w.node, &w.seeded.a103, "00442079460000", 403);
    // the emergency number still goes through.
    let out = call(&w.node, &w.seeded.a103, "112", 200);
    assert!(out.success, "emergency call:\n{}", out.log);
    assert!(talking.finish(Duration::from_secs(15)).success);
    let carrier_log = finished(uas, "the carrier");
    assert!(
        carrier_log.contains("INVITE sip:112@127.0.0.2:"),
        "{carrier_log}"
    );
    let metrics = support::http_get(w.node.http, "localhost", "/metrics")
        .expect("metrics")
        .text();
    assert!(
        metrics.contains("pbx_sip_limit_refusals_total 3"),
        "{metrics}"
    );
    assert!(w.node.stop().success());
    let records = records(&w.dir);
    let refused: Vec<_> = records
        .iter()
        .filter(|r| r.call.sip_status == Some(403))
        .collect();
    assert_eq!(refused.len(), 3, "{records:#?}");
    assert!(refused
        .iter()
        .all(|r| r.call.direction == CallDirection::Outbound));
    // One alert per limit (and minute): concurrent calls, international.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let kinds = rt.block_on(async {
        let store = open_seeded(w.dir.path()).await;
        let deliveries = store
            .webhooks()
            .deliveries(&pbx_store::Principal::system(), hook.get(), None, 10)
            .await
            .expect("deliveries");
        store.close().await;
        let mut kinds: Vec<String> = deliveries
            .iter()
            .map(|d| d.event_key.split(':').nth(1).unwrap_or("").to_owned())
            .collect();
        kinds.sort();
        kinds
    });
    assert_eq!(kinds, ["concurrent", "international"]);
}

#[test]
fn a_carrier_call_to_a_number_rings_its_extension_and_an_unknown_number_gets_404() {
    if !sipp_available() {
        return;
    }
    let w = inbound_world("inbound", to_extension("102"));
    let desk = Sipp::new("uas_answer.xml")
        .arg("-m")
        .arg("1")
        .spawn(&target(&w.node));
    assert!(register(&w.node, &w.seeded.a102, desk.port(), "u1").success);
    let out = carrier("carrier_call.xml")
        .key("callee", "+49301234567")
        .run(&target(&w.node));
    assert!(out.success, "{}", out.log);
    assert!(desk.finish(Duration::from_secs(10)).success);
    let out = carrier("carrier_final.xml.in")
        .fill("404")
        .key("callee", "+49309999999")
        .run(&target(&w.node));
    assert!(out.success, "{}", out.log);
    assert!(w.node.stop().success());
    let records = records(&w.dir);
    assert_eq!(records.len(), 1, "{records:#?}");
    let r = &records[0];
    assert_eq!(r.call.direction, CallDirection::Inbound);
    assert_eq!(r.call.callee, "+49301234567");
    assert!(r.call.answer_at.is_some());
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let store = open_seeded(w.dir.path()).await;
        assert_eq!(
            r.call.callee_extension_id,
            Some(extension_a(&store, "102").await)
        );
        let unrouted = store
            .unrouted_calls()
            .list(&pbx_store::Principal::system(), 10)
            .await
            .expect("unrouted");
        assert_eq!(unrouted.len(), 1, "{unrouted:#?}");
        assert_eq!(unrouted[0].called, "+49309999999");
        assert_eq!(unrouted[0].trunk_id, Some(w.carriers.trunks[0]));
        store.close().await;
    });
}

/// A world whose only trunk is a carrier that never answers (calls come
/// in from it), with A's number routed by `route`.
fn inbound_world(tag: &str, route: impl FnOnce(&TempDir) -> Option<Destination>) -> World {
    let idle = carrier("uas_answer.xml");
    world(
        tag,
        &[trunk("Carrier", idle.port, 10)],
        &open_limits(),
        route,
    )
}

/// Routes A's number to conference room 800 (made here) or to 102's box.
fn to_application(room: bool) -> impl FnOnce(&TempDir) -> Option<Destination> {
    move |dir| {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        rt.block_on(async {
            let store = open_seeded(dir.path()).await;
            let sys = pbx_store::Principal::system();
            let destination = if room {
                let customer = support::sip::customer_a(&store).await;
                let settings = pbx_store::conference_rooms::RoomSettings {
                    number: "800".into(),
                    name: "Lobby".into(),
                    pin: None,
                    max_participants: 10,
                };
                let room = store
                    .conference_rooms()
                    .create(&sys, customer, &settings)
                    .await
                    .expect("room");
                Destination::ConferenceRoom(room.id)
            } else {
                Destination::Voicemail(extension_a(&store, "102").await)
            };
            store.close().await;
            Some(destination)
        })
    }
}

#[test]
fn a_number_can_lead_to_a_conference_room_or_straight_to_a_voicemail_box() {
    if !sipp_available() {
        return;
    }
    for room in [true, false] {
        let w = inbound_world("to-application", to_application(room));
        // 102's phone is registered, and never rings: the box answers.
        let desk = Sipp::new("uas_answer.xml")
            .arg("-m")
            .arg("1")
            .spawn(&target(&w.node));
        assert!(register(&w.node, &w.seeded.a102, desk.port(), "u1").success);
        let out = carrier("carrier_call.xml")
            .key("callee", "+49301234567")
            .run(&target(&w.node));
        assert!(
            out.success,
            "room={room}: answered by the application\n{}",
            out.log
        );
        let untouched = desk.finish(Duration::from_millis(300));
        assert!(
            !untouched.log.contains("INVITE sip:"),
            "room={room}: 102's phone rang:\n{}",
            untouched.log
        );
        assert!(w.node.stop().success());
        let records = records(&w.dir);
        assert_eq!(records.len(), 1, "room={room}: {records:#?}");
        let r = &records[0];
        assert_eq!(r.call.direction, CallDirection::Inbound);
        assert_eq!(r.call.callee, "+49301234567");
        assert!(r.call.answer_at.is_some(), "room={room}");
    }
}

/// Routes A's number to a business-hours rule: 102 while open, 103 while
/// closed; `closed_today` makes today (and tomorrow, in case the test runs
/// across midnight) holidays, else the rule is open around the clock.
fn business_hours_rule(closed_today: bool) -> impl FnOnce(&TempDir) -> Option<Destination> {
    move |dir| {
        use pbx_store::business_hours::{BusinessHoursSettings, Holiday, Interval};
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        rt.block_on(async {
            let store = open_seeded(dir.path()).await;
            let sys = pbx_store::Principal::system();
            let acme = support::sip::customer_a(&store).await;
            let customer = store.customers().get(&sys, acme).await.expect("A");
            let tz: chrono_tz::Tz = customer.time_zone.parse().expect("zone");
            let today = pbx_store::rating::local_day(pbx_store::now_ms(), tz);
            let holidays = if closed_today {
                [today, today.succ_opt().expect("tomorrow")]
                    .iter()
                    .map(|d| Holiday {
                        date: d.format("%Y-%m-%d").to_string(),
                        name: "Test".into(),
                    })
                    .collect()
            } else {
                Vec::new()
            };
            let rule = store
                .business_hours()
                .create(
                    &sys,
                    acme,
                    &BusinessHoursSettings {
                        name: "Office".into(),
                        weekly: (1..=7)
                            .map(|day| Interval {
                                day,
                                open: "00:00".into(),
                                close: "24:00".into(),
                            })
                            .collect(),
                        holidays,
                        open_destination: Some(Destination::Extension(
                            extension_a(&store, "102").await,
                        )),
                        closed_destination: Some(Destination::Extension(
                            extension_a(&store, "103").await,
                        )),
                    },
                )
                .await
                .expect("rule");
            store.close().await;
            Some(Destination::BusinessHours(rule.id))
        })
    }
}

#[test]
fn a_number_with_business_hours_rings_the_open_or_the_closed_destination() {
    if !sipp_available() {
        return;
    }
    for closed in [false, true] {
        let w = inbound_world("hours", business_hours_rule(closed));
        let (answering, silent) = if closed {
            (&w.seeded.a103, &w.seeded.a102)
        } else {
            (&w.seeded.a102, &w.seeded.a103)
        };
        let phone = Sipp::new("uas_answer.xml")
            .arg("-m")
            .arg("1")
            .spawn(&target(&w.node));
        assert!(register(&w.node, answering, phone.port(), "u1").success);
        let other = Sipp::new("uas_answer.xml")
            .arg("-m")
            .arg("1")
            .spawn(&target(&w.node));
        assert!(register(&w.node, silent, other.port(), "u2").success);
        let out = carrier("carrier_call.xml")
            .key("callee", "+49301234567")
            .run(&target(&w.node));
        assert!(out.success, "closed={closed}:\n{}", out.log);
        assert!(phone.finish(Duration::from_secs(10)).success);
        let untouched = other.finish(Duration::from_millis(300));
        assert!(
            !untouched.log.contains("INVITE sip:"),
            "closed={closed}: the other destination rang:\n{}",
            untouched.log
        );
    }
}

#[test]
fn a_registering_trunk_registers_with_digest_and_reports_how_it_stands() {
    if !sipp_available() {
        return;
    }
    for (password, expected) in [
        ("carrier-secret", RegistrationState::Registered),
        ("another-secret", RegistrationState::Failed),
    ] {
        let registrar = carrier("carrier_registrar.xml.in")
            .fill(password)
            .arg("-m")
            .arg("1");
        let mut t = trunk("Registering carrier", registrar.port, 10);
        t.register = Some(("pbx-trunk", "carrier-secret"));
        let w = world("register", &[t], &open_limits(), |_| None);
        let registrar = registrar.spawn(&target(&w.node));
        let log = finished(registrar, "the carrier's registrar");
        assert!(log.contains("REGISTER sip:127.0.0.2:"), "{log}");
        assert!(
            log.contains(r#"Authorization: Digest username="pbx-trunk", realm="carrier.test""#),
            "{log}"
        );
        // The state reaches the store (and so the API and console).
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let registration = rt.block_on(async {
            let store = open_seeded(w.dir.path()).await;
            let mut seen = None;
            for _ in 0..50 {
                let trunk = store
                    .trunks()
                    .get(&pbx_store::Principal::system(), w.carriers.trunks[0])
                    .await
                    .expect("trunk");
                if trunk.registration.is_some() {
                    seen = trunk.registration;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            store.close().await;
            seen.expect("a registration state")
        });
        assert_eq!(registration.state, expected, "{registration:?}");
        match expected {
            RegistrationState::Registered => {
                assert_eq!(registration.status, Some(200));
                let until = registration.registered_until.expect("until");
                assert!(until > registration.at + 100_000, "{registration:?}");
            }
            RegistrationState::Failed => assert_eq!(registration.status, Some(403)),
        }
        let metrics = support::http_get(w.node.http, "localhost", "/metrics")
            .expect("metrics")
            .text();
        let counter = match expected {
            RegistrationState::Registered => "pbx_sip_trunk_registrations_total 1",
            RegistrationState::Failed => "pbx_sip_trunk_registration_failures_total 1",
        };
        assert!(metrics.contains(counter), "{metrics}");
    }
}

/// Customer A's records of one call, leg by leg.
fn legs(records: &[CallRecord]) -> (Vec<&CallRecord>, Vec<&CallRecord>) {
    records.iter().partition(|r| r.call.leg == 0)
}

#[test]
fn forwards_to_a_number_outside_leave_through_the_trunk_billed_to_the_forwarding_customer() {
    if !sipp_available() {
        return;
    }
    use pbx_store::forwards::ForwardCondition::{Always, Busy};
    // Before ringing (always), after ringing (busy), and a carrier's call
    // to the customer's number that the extension forwards back out.
    for case in ["always", "busy", "inbound"] {
        let uas = carrier("uas_answer.xml").arg("-m").arg("1");
        let condition = if case == "busy" { Busy } else { Always };
        let w = world(
            "fwd-out",
            &[trunk("Carrier", uas.port, 10)],
            &open_limits(),
            move |dir| {
                support::sip::configure_a(dir.path(), &[("102", condition, "01711234567")], &[]);
                to_extension("102")(dir)
            },
        );
        let uas = uas.spawn(&target(&w.node));
        let busy = (case == "busy").then(|| {
            let phone = Sipp::new("uas_busy.xml")
                .arg("-m")
                .arg("1")
                .spawn(&target(&w.node));
            assert!(register(&w.node, &w.seeded.a102, phone.port(), "u1").success);
            phone
        });
        let out = if case == "inbound" {
            carrier("carrier_call.xml")
                .key("callee", "+49301234567")
                .run(&target(&w.node))
        } else {
            call(&w.node, &w.seeded.a101, "102", 300)
        };
        assert!(out.success, "{case}:\n{}", out.log);
        if let Some(phone) = busy {
            finished(phone, "102's busy phone");
        }
        let carrier_log = finished(uas, "the carrier");
        assert!(
            carrier_log.contains("INVITE sip:+491711234567@127.0.0.2:"),
            "{case}:\n{carrier_log}"
        );
        // 102 has no number of its own: the customer's goes out.
        assert!(
            carrier_log.contains("P-Asserted-Identity: <sip:+49301234567@127.0.0.2;user=phone>"),
            "{case}:\n{carrier_log}"
        );
        assert!(w.node.stop().success());
        let records = records(&w.dir);
        let (calls, out_legs) = legs(&records);
        assert_eq!(
            (calls.len(), out_legs.len()),
            (1, 1),
            "{case}: {records:#?}"
        );
        let (call, leg) = (calls[0], out_legs[0]);
        assert_eq!(call.call.call_id, leg.call.call_id);
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let e102 = rt.block_on(async {
            let store = open_seeded(w.dir.path()).await;
            let id = extension_a(&store, "102").await;
            store.close().await;
            id
        });
        let expected = if case == "inbound" {
            CallDirection::Inbound
        } else {
            CallDirection::Internal
        };
        assert_eq!(call.call.direction, expected, "{case}");
        assert_eq!(call.call.callee_extension_id, Some(e102));
        assert_eq!(call.call.trunk_id, None);
        assert_eq!(leg.call.direction, CallDirection::Outbound);
        assert_eq!(leg.call.caller_extension_id, Some(e102), "who forwarded");
        assert_eq!(leg.call.destination.as_deref(), Some("491711234567"));
        assert_eq!(leg.call.trunk_id, Some(w.carriers.trunks[0]));
        assert!(leg.call.answer_at.is_some() && call.call.answer_at.is_some());
        // The outbound leg is billed to A at its retail rate.
        let retail = leg.retail.as_ref().expect("rated");
        assert_eq!(retail.prefix.as_deref(), Some("49"));
        assert_eq!(retail.micros, Some((leg.billable_ms + 999) / 1000 * 1_000));
    }
}

#[test]
fn attempts_spend_and_premium_numbers_are_limited_too() {
    if !sipp_available() {
        return;
    }
    // Two attempts a minute: the third is refused.
    let uas = carrier("uas_answer.xml").arg("-m").arg("2");
    let attempts = Limits {
        max_attempts_per_minute: Some(2),
        ..Limits::default()
    };
    let w = world(
        "attempts",
        &[trunk("Carrier", uas.port, 10)],
        &attempts,
        |_| None,
    );
    let uas = uas.spawn(&target(&w.node));
    for _ in 0..2 {
        let out = call(&w.node, &w.seeded.a101, "0307654321", 100);
        assert!(out.success, "{}", out.log);
    }
    expect_final(&w.node, &w.seeded.a101, "0307654321", 403);
    finished(uas, "the carrier");
    drop(w);

    // Five cents a day at six cents a minute: not even the first minute
    // fits; premium-rate numbers are off until allowed; 112 goes through.
    let uas = carrier("uas_answer.xml").arg("-m").arg("1");
    let spend = Limits {
        max_spend_per_day_micros: Some(50_000),
        ..Limits::default()
    };
    let w = world("spend", &[trunk("Carrier", uas.port, 10)], &spend, |_| None);
    let uas = uas.spawn(&target(&w.node));
    expect_final(&w.node, &w.seeded.a101, "0307654321", 403);
    expect_final(&w.node, &w.seeded.a102, "09001234567", 403);
    let out = call(&w.node, &w.seeded.a101, "112", 100);
    assert!(out.success, "{}", out.log);
    let log = finished(uas, "the carrier");
    assert!(!log.contains("INVITE sip:+49"), "{log}");
}

#[test]
fn a_carrier_that_challenges_calls_gets_the_trunks_credentials_never_the_phones() {
    if !sipp_available() {
        return;
    }
    for (password, outcome) in [("carrier-secret", 200), ("another-secret", 403)] {
        let uas = carrier("carrier_challenge.xml.in")
            .fill(password)
            .arg("-m")
            .arg("1");
        let mut t = trunk("Challenging carrier", uas.port, 10);
        t.credentials = Some(("pbx-trunk", "carrier-secret"));
        let w = world("challenge", &[t], &open_limits(), |_| None);
        let uas = uas.spawn(&target(&w.node));
        if outcome == 200 {
            let out = call(&w.node, &w.seeded.a101, "0307654321", 100);
            assert!(out.success, "{}", out.log);
            // The phone saw its own 407 only (from us), never the carrier's.
            assert!(!out.log.contains("carrier.test"), "{}", out.log);
        } else {
            // The carrier's refusal of our answer reaches the caller.
            expect_final(&w.node, &w.seeded.a101, "0307654321", 403);
        }
        let log = finished(uas, "the challenging carrier");
        assert!(
            log.contains(r#"Authorization: Digest username="pbx-trunk", realm="carrier.test""#),
            "{log}"
        );
        let phone_realm = format!("realm=\"{}\"", w.seeded.a101.domain);
        assert!(!log.contains(&phone_realm), "no phone credentials: {log}");
    }
}

#[test]
fn toll_fraud_alarms_warn_learn_and_block() {
    if !sipp_available() {
        return;
    }
    let uas = carrier("uas_answer.xml").arg("-m").arg("3");
    // A new country only warns (and is learnt); a third call within a
    // minute from one device is refused. Toll-fraud alerts go to the
    // customer's endpoint (a private address: only queued).
    let hook = std::rc::Rc::new(std::cell::Cell::new(0));
    let hook_id = hook.clone();
    let w = world(
        "fraud",
        &[trunk("Carrier", uas.port, 10)],
        &open_limits(),
        move |dir| {
            let rt = tokio::runtime::Runtime::new().expect("runtime");
            rt.block_on(async {
                let store = open_seeded(dir.path()).await;
                let sys = pbx_store::Principal::system();
                let acme = support::sip::customer_a(&store).await;
                let alarms = pbx_store::fraud_alarms::FraudAlarms {
                    burst: pbx_store::fraud_alarms::AlarmMode::Block,
                    burst_calls: 3,
                    burst_window_s: 60,
                    ..Default::default()
                };
                store
                    .fraud_alarms()
                    .set(&sys, acme, &alarms)
                    .await
                    .expect("alarms");
                let id = support::sip::customer_a_webhook(
                    &store,
                    "https://127.0.0.1:9/alerts",
                    &["toll_fraud"],
                )
                .await;
                hook_id.set(id);
                store.close().await;
            });
            None
        },
    );
    let uas = uas.spawn(&target(&w.node));
    // London twice: the first call warns, the second is a known country.
    for _ in 0..2 {
        let out = call(&w.node, &w.seeded.a101, "00442079460000", 100);
        assert!(out.success, "{}", out.log);
    }
    // The third call of the minute is refused, another phone's goes on.
    expect_final(&w.node, &w.seeded.a101, "0307654321", 403);
    let out = call(&w.node, &w.seeded.a102, "0307654321", 100);
    assert!(out.success, "{}", out.log);
    finished(uas, "the carrier");
    let metrics = support::http_get(w.node.http, "localhost", "/metrics")
        .expect("metrics")
        .text();
    assert!(
        metrics.contains("pbx_sip_fraud_alarms_total 2"),
        "{metrics}"
    );
    assert!(w.node.stop().success());

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (kinds, known) = rt.block_on(async {
        let store = open_seeded(w.dir.path()).await;
        let sys = pbx_store::Principal::system();
        let deliveries = store
            .webhooks()
            .deliveries(&sys, hook.get(), None, 10)
            .await
            .expect("deliveries");
        let acme = support::sip::customer_a(&store).await;
        let device = store
            .devices()
            .list_for_customer(&sys, acme)
            .await
            .expect("devices")
            .into_iter()
            .find(|d| d.sip_user == w.seeded.a101.user)
            .expect("101's device");
        let known = store
            .fraud_alarms()
            .known(&sys, device.id)
            .await
            .expect("known");
        store.close().await;
        let mut kinds: Vec<String> = deliveries
            .iter()
            .map(|d| d.event_key.split(':').nth(2).unwrap_or("").to_owned())
            .collect();
        kinds.sort();
        (kinds, known)
    });
    assert_eq!(kinds, ["burst", "new_destination"]);
    assert_eq!(known.len(), 1, "{known:?}");
    assert_eq!(known[0].destination, "44");
    assert_eq!(known[0].approved_by, None);
    // The refused call has its record.
    let refused = records(&w.dir)
        .into_iter()
        .filter(|r| r.call.sip_status == Some(403))
        .count();
    assert_eq!(refused, 1);
}
