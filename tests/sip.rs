//! Desk phones (SIPp) registering to the real `pbx` and calling each other:
//! ringing and answer, CANCEL, busy, not registered, unknown extension,
//! forking to two devices, re-INVITE, TCP, a restart, a busy lamp, and
//! cross-tenant attempts refused.

mod support;

use std::time::Duration;

use pbx_store::forwards::ForwardCondition;
use support::sip::{baresip, baresip_available, linphone_available};
use support::sip::{
    configure_a, register, ring_group_a, seed, sipp_available, start_node, Phone, Sipp,
};
use support::{metric, wait_for_metric, TempDir};

/// A node with the two tenants seeded (MD5 only: SIPp computes no SHA-256).
fn world(tag: &str) -> (TempDir, support::Node, support::sip::Seeded) {
    let dir = TempDir::new(tag);
    let seeded = seed(dir.path());
    let node = start_node(&dir, "MD5");
    (dir, node, seeded)
}

fn target(node: &support::Node) -> String {
    format!("127.0.0.1:{}", node.sip_port)
}

/// A UAS phone for `phone`, registered with its contact on the UAS port.
fn answering_phone(
    node: &support::Node,
    phone: &Phone,
    scenario: &str,
) -> support::sip::SippProcess {
    let uas = Sipp::new(scenario).arg("-m").arg("1").spawn(&target(node));
    let reg = register(node, phone, uas.port(), "u1");
    assert!(
        reg.success,
        "registration of {} failed:\n{}",
        phone.user, reg.log
    );
    uas
}

fn call(
    node: &support::Node,
    caller: &Phone,
    callee: &str,
    scenario: &str,
) -> support::sip::SippOutcome {
    Sipp::new(scenario)
        .phone(caller, &format!("{callee}@{}", caller.domain))
        .key("callee", callee)
        .key("callee_domain", &caller.domain)
        .arg("-d")
        .arg("300")
        .run(&target(node))
}

fn expect_final(node: &support::Node, caller: &Phone, callee: &str, code: u16) {
    let out = Sipp::new("uac_final.xml.in")
        .fill(&code.to_string())
        .phone(caller, &format!("{callee}@{}", caller.domain))
        .key("callee", callee)
        .key("callee_domain", &caller.domain)
        .run(&target(node));
    assert!(
        out.success,
        "expected {code} calling {callee}:\n{}",
        out.log
    );
}

#[test]
fn two_extensions_register_and_call_with_ringing_answer_and_bye() {
    if !sipp_available() {
        return;
    }
    let (_dir, node, s) = world("call");
    let callee = answering_phone(&node, &s.a102, "uas_answer.xml");
    let out = call(&node, &s.a101, "102", "uac_call.xml");
    assert!(out.success, "call failed:\n{}", out.log);
    assert_eq!(
        out.received_statuses(),
        vec![407, 100, 180, 200, 200],
        "407, then 100/180/200 for the INVITE, 200 for BYE"
    );
    let uas = callee.finish(Duration::from_secs(10));
    assert!(uas.success, "callee side:\n{}", uas.log);
    // Record-Route made the ACK and BYE come through the proxy.
    assert!(
        uas.log.contains("Record-Route: <sip:127.0.0.1:"),
        "{}",
        uas.log
    );
    let metrics = support::http_get(node.http, "localhost", "/metrics")
        .expect("metrics")
        .text();
    assert!(
        metrics.contains("pbx_sip_calls_answered_total 1"),
        "{metrics}"
    );
}

/// 103's busy-lamp key for 102 (RFC 4235): idle, then talking while 101
/// calls 102, then idle again; its subscription ends when it unsubscribes.
/// Another customer's extension cannot be watched.
#[test]
fn a_busy_lamp_follows_a_colleagues_call() {
    if !sipp_available() {
        return;
    }
    let (_dir, node, s) = world("busy-lamp");
    let lamp = Sipp::new("blf_subscribe.xml")
        .phone(&s.a103, &format!("102@{}", s.a103.domain))
        .key("callee", "102")
        .arg("-timeout")
        .arg("60")
        .arg("-m")
        .arg("1")
        .spawn(&target(&node));
    let callee = answering_phone(&node, &s.a102, "uas_answer.xml");
    // The subscription stands before the call starts.
    if wait_for_metric(&node, "pbx_app_subscriptions", 1, Duration::from_secs(30)) != 1 {
        let log = lamp.finish(Duration::from_secs(1)).log;
        panic!("the busy-lamp subscription did not stand:\n{log}");
    }
    let out = Sipp::new("uac_call.xml")
        .phone(&s.a101, &format!("102@{}", s.a101.domain))
        .key("callee", "102")
        .key("callee_domain", &s.a101.domain)
        .arg("-d")
        .arg("2000")
        .run(&target(&node));
    assert!(out.success, "call failed:\n{}", out.log);
    assert!(callee.finish(Duration::from_secs(10)).success);
    let watched = lamp.finish(Duration::from_secs(20));
    assert!(watched.success, "the busy lamp:\n{}", watched.log);
    assert!(
        watched.log.contains("application/dialog-info+xml"),
        "{}",
        watched.log
    );
}

#[test]
fn caller_cancels_while_it_rings() {
    if !sipp_available() {
        return;
    }
    let (_dir, node, s) = world("cancel");
    let callee = answering_phone(&node, &s.a102, "uas_ring.xml");
    let out = call(&node, &s.a101, "102", "uac_cancel.xml");
    let uas = callee.finish(Duration::from_secs(10));
    assert!(
        out.success,
        "cancel failed:\n{}\ncallee:\n{}",
        out.log, uas.log
    );
    assert!(uas.success, "callee saw no CANCEL:\n{}", uas.log);
}

#[test]
fn busy_not_registered_and_unknown_extension() {
    if !sipp_available() {
        return;
    }
    let (_dir, node, s) = world("fail");
    let callee = answering_phone(&node, &s.a102, "uas_busy.xml");
    expect_final(&node, &s.a101, "102", 486);
    assert!(callee.finish(Duration::from_secs(10)).success);
    expect_final(&node, &s.a101, "103", 480);
    expect_final(&node, &s.a101, "999", 404);
}

/// A node with customer A's extensions configured before it starts.
fn world_with(
    tag: &str,
    forwards: &[(&str, ForwardCondition, &str)],
    dnd: &[&str],
) -> (TempDir, support::Node, support::sip::Seeded) {
    let dir = TempDir::new(tag);
    let seeded = seed(dir.path());
    configure_a(dir.path(), forwards, dnd);
    let node = start_node(&dir, "MD5");
    (dir, node, seeded)
}

#[test]
fn calls_follow_forwarding_always_on_dnd_and_when_unregistered() {
    if !sipp_available() {
        return;
    }
    use ForwardCondition::*;
    // 102 forwards everything to 103, where a phone answers.
    let (_dir, node, s) = world_with("fwd-always", &[("102", Always, "103")], &[]);
    let desk = answering_phone(&node, &s.a103, "uas_answer.xml");
    let out = call(&node, &s.a101, "102", "uac_call.xml");
    assert!(out.success, "{}", out.log);
    assert!(desk.finish(Duration::from_secs(10)).success);
    drop(node);

    // 102 is on do-not-disturb and forwards busy calls to 103.
    let (_dir, node, s) = world_with("fwd-dnd", &[("102", Busy, "103")], &["102"]);
    let desk = answering_phone(&node, &s.a103, "uas_answer.xml");
    // 102's own phone is registered, and must not ring.
    let own = Sipp::new("uas_answer.xml")
        .arg("-m")
        .arg("1")
        .spawn(&target(&node));
    assert!(register(&node, &s.a102, own.port(), "u2").success);
    let out = call(&node, &s.a101, "102", "uac_call.xml");
    assert!(out.success, "{}", out.log);
    assert!(desk.finish(Duration::from_secs(10)).success);
    drop(own);
    drop(node);

    // Nobody is registered at 102: the call goes to 103.
    let (_dir, node, s) = world_with("fwd-unreg", &[("102", Unavailable, "103")], &[]);
    let desk = answering_phone(&node, &s.a103, "uas_answer.xml");
    let out = call(&node, &s.a101, "102", "uac_call.xml");
    assert!(out.success, "{}", out.log);
    assert!(desk.finish(Duration::from_secs(10)).success);
}

#[test]
fn calls_follow_forwarding_when_busy_and_unanswered_after_ringing() {
    if !sipp_available() {
        return;
    }
    use ForwardCondition::*;
    // 102's phone answers busy: the call goes on to 103.
    let (_dir, node, s) = world_with("fwd-busy", &[("102", Busy, "103")], &[]);
    let busy = answering_phone(&node, &s.a102, "uas_busy.xml");
    let desk = answering_phone(&node, &s.a103, "uas_answer.xml");
    let out = call(&node, &s.a101, "102", "uac_call.xml");
    assert!(out.success, "{}", out.log);
    assert!(busy.finish(Duration::from_secs(10)).success);
    assert!(desk.finish(Duration::from_secs(10)).success);
    drop(node);

    // 102 rings for its 5 seconds, is cancelled, and 103 answers.
    let (_dir, node, s) = world_with("fwd-noanswer", &[("102", NoAnswer, "103")], &[]);
    let ringing = answering_phone(&node, &s.a102, "uas_ring.xml");
    let desk = answering_phone(&node, &s.a103, "uas_answer.xml");
    let started = std::time::Instant::now();
    let out = call(&node, &s.a101, "102", "uac_call.xml");
    assert!(out.success, "{}", out.log);
    assert!(
        started.elapsed() >= Duration::from_secs(5),
        "rang its full time first"
    );
    let rang = ringing.finish(Duration::from_secs(10));
    assert!(rang.success, "102 was not cancelled:\n{}", rang.log);
    assert!(desk.finish(Duration::from_secs(10)).success);
}

#[test]
fn a_simultaneous_ring_group_rings_all_and_records_who_answered() {
    if !sipp_available() {
        return;
    }
    let dir = TempDir::new("group-all");
    let s = seed(dir.path());
    ring_group_a(dir.path(), "200", "simultaneous", &["102", "103"], None);
    let node = start_node(&dir, "MD5");
    let ringing = answering_phone(&node, &s.a102, "uas_ring.xml");
    let desk = answering_phone(&node, &s.a103, "uas_answer.xml");
    let out = call(&node, &s.a101, "200", "uac_call.xml");
    assert!(out.success, "{}", out.log);
    assert!(desk.finish(Duration::from_secs(10)).success);
    let rang = ringing.finish(Duration::from_secs(10));
    assert!(
        rang.success,
        "102 rang too and was cancelled:\n{}",
        rang.log
    );
    assert!(node.stop().success());
    // The record names the group dialled and the extension that answered.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let store = support::sip::open_seeded(dir.path()).await;
        let sys = pbx_store::Principal::system();
        let acme = support::sip::customer_a(&store).await;
        let e103 = store
            .extensions()
            .list(&sys, acme)
            .await
            .unwrap()
            .into_iter()
            .find(|e| e.number == "103")
            .unwrap();
        let filter = pbx_store::call_records::RecordFilter {
            limit: 10,
            ..Default::default()
        };
        let records = store.call_records().list(&sys, &filter).await.unwrap();
        assert_eq!(records.len(), 1, "{records:#?}");
        assert_eq!(records[0].call.callee, "200");
        assert_eq!(records[0].call.callee_extension_id, Some(e103.id));
        store.close().await;
    });
}

#[test]
fn a_sequential_ring_group_moves_on_and_skips_do_not_disturb() {
    if !sipp_available() {
        return;
    }
    // 102 rings its 5 seconds, then 103 answers.
    let dir = TempDir::new("group-seq");
    let s = seed(dir.path());
    ring_group_a(dir.path(), "201", "sequential", &["102", "103"], None);
    let node = start_node(&dir, "MD5");
    let ringing = answering_phone(&node, &s.a102, "uas_ring.xml");
    let desk = answering_phone(&node, &s.a103, "uas_answer.xml");
    let started = std::time::Instant::now();
    let out = call(&node, &s.a101, "201", "uac_call.xml");
    assert!(out.success, "{}", out.log);
    assert!(started.elapsed() >= Duration::from_secs(5));
    assert!(ringing.finish(Duration::from_secs(10)).success);
    assert!(desk.finish(Duration::from_secs(10)).success);
    drop(node);

    // 102 is on do-not-disturb and is passed over; nobody else is a member,
    // so the no-answer extension 103 rings at once.
    let dir = TempDir::new("group-dnd");
    let s = seed(dir.path());
    ring_group_a(dir.path(), "202", "sequential", &["102"], Some("103"));
    configure_a(dir.path(), &[], &["102"]);
    let node = start_node(&dir, "MD5");
    let own = Sipp::new("uas_answer.xml")
        .arg("-m")
        .arg("1")
        .spawn(&target(&node));
    assert!(register(&node, &s.a102, own.port(), "u2").success);
    let desk = answering_phone(&node, &s.a103, "uas_answer.xml");
    let started = std::time::Instant::now();
    let out = call(&node, &s.a101, "202", "uac_call.xml");
    assert!(out.success, "{}", out.log);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "103 rang at once"
    );
    assert!(desk.finish(Duration::from_secs(10)).success);
    drop(own);
    drop(node);

    // Nobody answers anywhere: the caller hears 480, not 487.
    let dir = TempDir::new("group-none");
    let s = seed(dir.path());
    ring_group_a(dir.path(), "203", "simultaneous", &["102"], None);
    let node = start_node(&dir, "MD5");
    let ringing = answering_phone(&node, &s.a102, "uas_ring.xml");
    expect_final(&node, &s.a101, "203", 480);
    assert!(ringing.finish(Duration::from_secs(10)).success);
}

#[test]
fn a_ring_group_passes_over_a_member_who_is_in_a_call() {
    if !sipp_available() {
        return;
    }
    let dir = TempDir::new("group-busy");
    let s = seed(dir.path());
    ring_group_a(dir.path(), "204", "simultaneous", &["102", "103"], None);
    let node = start_node(&dir, "MD5");
    // 102's desk phone is talking to 101 (four seconds)…
    let far_end = answering_phone(&node, &s.a101, "uas_answer.xml");
    let talking = Sipp::new("uac_call.xml")
        .phone(&s.a102, &format!("101@{}", s.a102.domain))
        .key("callee", "101")
        .key("callee_domain", &s.a102.domain)
        .arg("-d")
        .arg("4000")
        .arg("-m")
        .arg("1")
        .spawn(&target(&node));
    // …so its mobile is not rung by the group; 103 answers. (101, talking
    // to 102, calls the group from another phone.)
    let mobile = answering_phone(&node, &s.a102b, "uas_answer.xml");
    let desk = answering_phone(&node, &s.a103, "uas_answer.xml");
    std::thread::sleep(Duration::from_millis(1000));
    let started = std::time::Instant::now();
    let out = call(&node, &s.a101, "204", "uac_call.xml");
    assert!(out.success, "{}", out.log);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "103 rang at once"
    );
    assert!(desk.finish(Duration::from_secs(10)).success);
    let untouched = mobile.finish(Duration::from_millis(300));
    assert!(
        !untouched.log.contains("INVITE sip:"),
        "the busy member rang:\n{}",
        untouched.log
    );
    assert!(talking.finish(Duration::from_secs(15)).success);
    assert!(far_end.finish(Duration::from_secs(10)).success);
}

#[test]
fn forwarding_loops_and_dead_ends_are_refused() {
    if !sipp_available() {
        return;
    }
    use ForwardCondition::*;
    let (_dir, node, s) = world_with(
        "fwd-loop",
        &[
            ("102", Always, "103"),
            ("103", Always, "102"),
            ("101", Unavailable, "+4930123456"),
        ],
        &[],
    );
    expect_final(&node, &s.a103, "102", 482);
    // An external target needs a carrier trunk: none here, so unavailable.
    expect_final(&node, &s.a102, "101", 480);
}

#[test]
fn a_call_forks_to_both_devices_and_the_other_is_cancelled() {
    if !sipp_available() {
        return;
    }
    let (_dir, node, s) = world("fork");
    let desk = answering_phone(&node, &s.a102, "uas_answer.xml");
    let mobile = answering_phone(&node, &s.a102b, "uas_ring.xml");
    let out = call(&node, &s.a101, "102", "uac_call.xml");
    assert!(out.success, "call failed:\n{}", out.log);
    assert!(
        desk.finish(Duration::from_secs(10)).success,
        "desk did not answer"
    );
    let mobile = mobile.finish(Duration::from_secs(10));
    assert!(
        mobile.success,
        "the ringing device was not cancelled:\n{}",
        mobile.log
    );
}

#[test]
fn an_in_dialog_reinvite_passes_through() {
    if !sipp_available() {
        return;
    }
    let (_dir, node, s) = world("reinvite");
    let callee = answering_phone(&node, &s.a102, "uas_answer.xml");
    let out = call(&node, &s.a101, "102", "uac_reinvite.xml");
    assert!(out.success, "re-INVITE call failed:\n{}", out.log);
    let uas = callee.finish(Duration::from_secs(10));
    assert!(uas.success, "{}", uas.log);
    assert_eq!(
        uas.log.matches("INVITE sip:").count(),
        2,
        "the callee got the re-INVITE"
    );
}

#[test]
fn phones_on_tcp_register_and_call() {
    if !sipp_available() {
        return;
    }
    let (_dir, node, s) = world("tcp");
    let uas = Sipp::new("uas_answer.xml")
        .arg("-m")
        .arg("1")
        .arg("-t")
        .arg("t1")
        .spawn(&target(&node));
    std::thread::sleep(Duration::from_millis(300));
    let reg = register(&node, &s.a102, uas.port(), "t1");
    assert!(reg.success, "{}", reg.log);
    let out = Sipp::new("uac_call.xml")
        .phone(&s.a101, &format!("102@{}", s.a101.domain))
        .key("callee", "102")
        .key("callee_domain", &s.a101.domain)
        .arg("-t")
        .arg("t1")
        .arg("-d")
        .arg("200")
        .run(&target(&node));
    assert!(out.success, "{}", out.log);
    assert!(uas.finish(Duration::from_secs(10)).success);
}

#[test]
fn registrations_survive_a_restart() {
    if !sipp_available() {
        return;
    }
    let (dir, node, s) = world("restart");
    let uas_port = support::free_port();
    let reg = register(&node, &s.a102, uas_port, "u1");
    assert!(reg.success, "{}", reg.log);
    let sip_port = node.sip_port;
    assert!(node.stop().success());
    // Same SIP port again: the stored binding points at the same flow.
    let key = support::sip::secret_key_base64();
    let node = support::Node::start_on(
        dir.path(),
        &["serve"],
        &[
            ("PBX_SECRET_KEY", key.as_str()),
            ("PBX_SIP_DIGEST_ALGORITHMS", "MD5"),
        ],
        sip_port,
    );
    let uas = Sipp::new("uas_answer.xml")
        .arg("-m")
        .arg("1")
        .arg("-p")
        .arg(&uas_port.to_string())
        .spawn(&target(&node));
    std::thread::sleep(Duration::from_millis(200));
    let out = call(&node, &s.a101, "102", "uac_call.xml");
    assert!(out.success, "call after restart failed:\n{}", out.log);
    assert!(uas.finish(Duration::from_secs(10)).success);
}

#[test]
fn tenants_cannot_reach_each_other() {
    if !sipp_available() {
        return;
    }
    let (_dir, node, s) = world("isolation");
    let other = answering_phone(&node, &s.b101, "uas_answer.xml");
    // A's device calling B's extension by B's domain: refused, B's phone never rings.
    let out = Sipp::new("uac_final.xml.in")
        .fill("403")
        .phone(&s.a101, &format!("101@{}", s.b101.domain))
        .key("callee", "101")
        .key("callee_domain", &s.b101.domain)
        .run(&target(&node));
    assert!(out.success, "{}", out.log);
    // A's credentials in B's domain: the digest never verifies there.
    let stolen = Phone {
        domain: s.b101.domain.clone(),
        ..s.a101.clone()
    };
    let reg = register(&node, &stolen, support::free_port(), "u1");
    assert!(!reg.success, "A's device registered into B:\n{}", reg.log);
    assert!(
        reg.received_statuses().iter().all(|&c| c == 401),
        "{:?}",
        reg.received_statuses()
    );
    // A device registering another device's address of record in its own tenant.
    let impostor = Phone {
        user: s.a102.user.clone(),
        ..s.a101.clone()
    };
    let out = Sipp::new("register.xml")
        .key("user", &impostor.user)
        .key("domain", &impostor.domain)
        .arg("-au")
        .arg(&s.a101.user)
        .arg("-ap")
        .arg(&s.a101.password)
        .arg("-auth_uri")
        .arg(&impostor.domain)
        .key("contact_port", "5999")
        .key("expires", "60")
        .run(&target(&node));
    assert!(!out.success);
    assert!(
        out.received_statuses().contains(&403),
        "{:?}",
        out.received_statuses()
    );
    drop(other);
}

/// Linphone (belle-sip) is a softphone that answers SHA-256 challenges:
/// against the default offer (SHA-256 first, MD5 second) it must register
/// with SHA-256.
#[test]
fn a_linphone_softphone_registers_with_sha256_digest() {
    if !linphone_available() {
        return;
    }
    use std::io::Write;
    let dir = TempDir::new("linphone");
    let s = seed(dir.path());
    let node = start_node(&dir, "SHA-256,MD5");
    let home = TempDir::new("linphone-home");
    let rc = support::sip::linphone_config(home.path(), &s.a101, node.sip_port, "");
    let mut phone = std::process::Command::new("linphonec")
        .arg("-c")
        .arg(&rc)
        .env("HOME", home.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start linphonec");
    wait_for_metric(
        &node,
        "pbx_sip_auth_sha256_total",
        1,
        Duration::from_secs(20),
    );
    if let Some(stdin) = phone.stdin.as_mut() {
        let _ = stdin.write_all(b"quit\n");
    }
    let _ = phone.kill();
    let _ = phone.wait();
    assert!(
        metric(&node, "pbx_sip_auth_sha256_total") >= 1,
        "no SHA-256 authentication"
    );
    assert!(
        metric(&node, "pbx_sip_registrations_total") >= 1,
        "no registration"
    );
    assert_eq!(metric(&node, "pbx_sip_auth_failures_total"), 0);
}

/// A baresip phone for one demo extension: configuration in its own folder,
/// loopback only, answering calls by itself, audio from a file.
fn baresip_phone(
    home: &std::path::Path,
    ext: &serde_json::Value,
    proxy: &str,
) -> std::path::PathBuf {
    let number = ext["number"].as_str().expect("number");
    let dir = home.join(number);
    std::fs::create_dir_all(&dir).expect("phone dir");
    // baresip also binds the next port (TLS): leave a gap between phones.
    let port = support::free_port();
    std::fs::write(
        dir.join("config"),
        format!(
            "sip_listen 127.0.0.1:{port}\nnet_interface 127.0.0.1\nmodule_path /usr/lib/baresip/modules\n\
             module g711.so\nmodule aufile.so\nmodule_app account.so\nmodule_app menu.so\n\
             audio_player aufile,{out}\naudio_source aufile,/usr/share/baresip/callwaiting.wav\n\
             audio_alert aufile,{alert}\nrtp_ports 40000-40999\n",
            out = dir.join("out.wav").display(),
            alert = dir.join("alert.wav").display(),
        ),
    )
    .expect("baresip config");
    std::fs::write(
        dir.join("accounts"),
        format!(
            "<sip:{number}@{domain}>;auth_pass={password};outbound=\"sip:{proxy}\";regint=600;answermode=auto\n",
            domain = ext["sip_domain"].as_str().expect("domain"),
            password = ext["password"].as_str().expect("password"),
        ),
    )
    .expect("baresip account");
    dir
}

/// The README's first call, for real: two baresip softphones take the
/// credentials `pbx serve --demo` printed (also in demo.json), register
/// (baresip 1.x answers MD5 only: it is offered MD5 alone), and one calls the
/// other, which answers; audio flows between them and the call is recorded.
#[test]
fn baresip_softphones_register_and_call_each_other_with_the_demo_credentials() {
    if !baresip_available() {
        return;
    }
    let dir = TempDir::new("baresip");
    let mut node = support::Node::start(dir.path(), &["serve", "--demo"], &[]);
    let demo: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("demo.json")).expect("demo.json"),
    )
    .expect("demo json");
    let printed = node.stdout_text();
    let ext = |i: usize| demo["extensions"][i].clone();
    for i in 0..2 {
        assert!(
            printed.contains(ext(i)["password"].as_str().expect("password")),
            "the banner prints each softphone's password"
        );
    }
    let proxy = format!("127.0.0.1:{}", node.sip_port);
    let home = TempDir::new("baresip-home");
    let callee_dir = baresip_phone(home.path(), &ext(1), &proxy);
    let caller_dir = baresip_phone(home.path(), &ext(0), &proxy);
    let mut callee = baresip(&callee_dir, 25, &[]);
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while metric(&node, "pbx_sip_registered_contacts") < 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the callee did not register"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut caller = baresip(&caller_dir, 8, &["/dial 102"]);
    let _ = caller.wait();
    let _ = callee.kill();
    let _ = callee.wait();
    let caller_log = std::fs::read_to_string(caller_dir.join("log")).unwrap_or_default();
    let callee_log = std::fs::read_to_string(callee_dir.join("log")).unwrap_or_default();
    assert!(
        caller_log.contains("200 OK () [1 binding]"),
        "the caller registered:\n{caller_log}"
    );
    assert!(
        callee_log.contains("Call established: sip:101@"),
        "the callee answered:\n{callee_log}"
    );
    assert!(
        caller_log.contains("Call established: sip:102@"),
        "the caller saw the answer:\n{caller_log}"
    );
    assert!(metric(&node, "pbx_sip_calls_answered_total") >= 1);
    node.signal("TERM");
    assert!(node.wait(Duration::from_secs(30)).success());
}
