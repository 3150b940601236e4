//! Calls the application server joins, with real phones. Auto-attendant
//! menus: a carrier's caller (baresip on
//! the carrier's address) reaches a number that leads to a menu, keys an
//! option the menu does not have (RFC 4733) and hears the menu's "not
//! valid" announcement, keys 1 and is put through to 102 (a baresip
//! answering by itself); the two hear each other through the application
//! server, and the caller's hang-up ends 102's call. A second caller keys
//! 2, for 103, who has no phone and forwards to voicemail: the call the
//! menu places comes back to the application server, which takes the
//! message. Pickup: 101 calls 102, whose desk phone (SIPp) rings; 103
//! dials `**102` and talks with 101, and 102's phone is cancelled.

mod support;

use std::path::Path;
use std::time::Duration;

use pbx_store::forwards::ForwardCondition;
use pbx_store::ivr_menus::{MenuOption, MenuSettings};
use pbx_store::numbers::Destination;
use pbx_store::Principal;
use support::audio::{listen, listen_tail, share_of_clip_heard};
use support::sip::{
    baresip, baresip_available, carriers_a, configure_a, customer_a, extension_a, open_seeded,
    register, route_number_a, seed, sipp_available, start_node, Sipp, TestTrunk, CARRIER_IP,
};
use support::softphone::{carrier_softphone, command, established, heard, press, softphone};
use support::TempDir;

const CALLER_HZ: f64 = 440.0;
const CALLEE_HZ: f64 = 1000.0;

/// Customer A's menu: 1 leads to 102, 2 to 103.
fn menu_to_102(dir: &Path) -> Destination {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let store = open_seeded(dir).await;
        let sys = Principal::system();
        let customer = customer_a(&store).await;
        let settings = MenuSettings {
            name: "Main".into(),
            timeout_s: 5,
            tries: 3,
            direct_dial: false,
            options: vec![
                MenuOption {
                    key: "1".into(),
                    destination: Destination::Extension(extension_a(&store, "102").await),
                },
                MenuOption {
                    key: "2".into(),
                    destination: Destination::Extension(extension_a(&store, "103").await),
                },
            ],
            on_timeout: None,
        };
        let menu = store
            .ivr_menus()
            .create(&sys, customer, &settings)
            .await
            .expect("menu");
        store.close().await;
        Destination::IvrMenu(menu.id)
    })
}

fn log_of(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("log")).unwrap_or_default()
}

/// The node's log lines of calls and the application server.
fn node_log(node: &support::Node) -> String {
    let lines = node.stdout.lock().map(|l| l.clone()).unwrap_or_default();
    let mut text = lines.join("\n");
    text.push_str(&node.stderr_text());
    text
}

#[test]
fn a_caller_keys_through_a_menu_to_an_extension() {
    if !baresip_available() {
        return;
    }
    let dir = TempDir::new("ivr");
    let seeded = seed(dir.path());
    let trunk = TestTrunk::inbound_only();
    let limits = pbx_store::limits::Limits::default();
    let carriers = carriers_a(dir.path(), &[trunk], &limits);
    let menu = menu_to_102(dir.path());
    let language = language_of_a(dir.path());
    configure_a(
        dir.path(),
        &[("103", ForwardCondition::Unavailable, "voicemail")],
        &[],
    );
    route_number_a(dir.path(), &carriers, menu);
    let node = start_node(&dir, "MD5");
    let home = TempDir::new("ivr-phones");

    // 102 answers by itself.
    let callee_dir = softphone(
        &home.path().join("102"),
        &seeded.a102,
        node.sip_port,
        CALLEE_HZ,
        false,
    );
    let accounts = callee_dir.join("accounts");
    let account = std::fs::read_to_string(&accounts).expect("accounts");
    std::fs::write(
        &accounts,
        format!("{};answermode=auto\n", account.trim_end()),
    )
    .expect("accounts");
    let mut callee = baresip(&callee_dir, 60, &[]);
    let registered = support::wait_for_metric(
        &node,
        "pbx_sip_registered_contacts",
        1,
        Duration::from_secs(20),
    );
    assert!(registered >= 1, "102 registered");

    // The carrier's caller dials A's number: the menu answers.
    let caller_dir = carrier_softphone(
        &home.path().join("caller"),
        CARRIER_IP,
        "+4989123456",
        node.sip_port,
        CALLER_HZ,
    );
    let dial = format!("/dial sip:+49301234567@127.0.0.1:{}", node.sip_port);
    let mut caller = baresip(&caller_dir, 60, &[&dial]);
    assert!(
        established(&caller_dir, Duration::from_secs(20)),
        "the menu answered the carrier's call:\n{}",
        log_of(&caller_dir)
    );
    // During the greeting: 5, which the menu does not have; then, in the
    // greeting played again after "not valid", 1.
    std::thread::sleep(Duration::from_secs(2));
    press(&caller_dir, '5');
    std::thread::sleep(Duration::from_secs(5));
    press(&caller_dir, '1');
    assert!(
        established(&callee_dir, Duration::from_secs(20)),
        "the menu put the caller through to 102:\n{}\n{}\nnode:\n{}",
        log_of(&caller_dir),
        log_of(&callee_dir),
        node_log(&node)
    );
    // They talk, then the caller hangs up: 102's call ends with it.
    std::thread::sleep(Duration::from_secs(5));
    command(&caller_dir, "/hangup");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !log_of(&callee_dir).contains("terminated") && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = caller.kill();
    let _ = caller.wait();
    let _ = callee.kill();
    let _ = callee.wait();
    let callee_log = log_of(&callee_dir);
    assert!(
        callee_log.contains("terminated"),
        "the caller's hang-up reached 102:\n{callee_log}"
    );

    let prompts = pbx_apps::prompts::Prompts::for_language(&language);
    let invalid = share_of_clip_heard(&heard(&caller_dir), prompts.menu_invalid());
    assert!(
        invalid > 0.5,
        "the caller heard \"not valid\" ({invalid:.2} of it)\n{}",
        node_log(&node)
    );
    let greeting = share_of_clip_heard(&heard(&caller_dir), prompts.menu_default());
    assert!(
        greeting > 0.2,
        "the caller heard the greeting ({greeting:.2})"
    );
    let at_102 = listen(&heard(&callee_dir), &[CALLER_HZ, CALLEE_HZ]);
    assert!(at_102.has(CALLER_HZ), "102 heard the caller: {at_102:?}");
    let at_caller = listen_tail(&heard(&caller_dir), &[CALLER_HZ, CALLEE_HZ], 3.0);
    assert!(
        at_caller.has(CALLEE_HZ),
        "the caller heard 102: {at_caller:?}"
    );

    // Another caller keys 2: 103 has no phone and forwards to its box. The
    // menu's call comes back to the application server, which answers it
    // with 103's greeting; the caller leaves a message and hangs up.
    let second_dir = carrier_softphone(
        &home.path().join("second"),
        CARRIER_IP,
        "+4989654321",
        node.sip_port,
        CALLER_HZ,
    );
    let mut second = baresip(&second_dir, 60, &[&dial]);
    assert!(
        established(&second_dir, Duration::from_secs(20)),
        "the menu answered:\n{}",
        log_of(&second_dir)
    );
    std::thread::sleep(Duration::from_secs(2));
    press(&second_dir, '2');
    // The key, ringback, the box's greeting (about 10 s), the beep.
    let box_greeting = prompts.greeting();
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    while share_of_clip_heard(&heard(&second_dir), box_greeting) < 0.5
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(500));
    }
    let greeted = share_of_clip_heard(&heard(&second_dir), box_greeting);
    std::thread::sleep(Duration::from_secs(4));
    command(&second_dir, "/hangup");
    std::thread::sleep(Duration::from_secs(1));
    let _ = second.kill();
    let _ = second.wait();
    assert!(
        greeted > 0.5,
        "the caller heard 103's greeting ({greeted:.2}):\n{}\n{}",
        log_of(&second_dir),
        node_log(&node)
    );
    let messages = messages_of_103(dir.path());
    assert_eq!(messages, 1, "the caller's message is in 103's box");
}

/// How many messages 103's box holds (once the deposit is written).
fn messages_of_103(dir: &Path) -> usize {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let store = open_seeded(dir).await;
        let ext = extension_a(&store, "103").await;
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let n = store
                .voicemail()
                .list(&Principal::system(), ext)
                .await
                .map(|l| l.len())
                .unwrap_or(0);
            if n > 0 || std::time::Instant::now() > deadline {
                store.close().await;
                return n;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    })
}

#[test]
fn a_colleague_picks_up_a_ringing_call() {
    if !baresip_available() || !sipp_available() {
        return;
    }
    let dir = TempDir::new("pickup");
    let seeded = seed(dir.path());
    let node = start_node(&dir, "MD5");
    let home = TempDir::new("pickup-phones");
    let target = format!("127.0.0.1:{}", node.sip_port);

    // 102's desk phone rings and never answers: it expects a CANCEL.
    let desk = Sipp::new("uas_ring.xml").arg("-m").arg("1").spawn(&target);
    assert!(register(&node, &seeded.a102, desk.port(), "u1").success);

    // 101 calls 102.
    let caller_dir = softphone(
        &home.path().join("101"),
        &seeded.a101,
        node.sip_port,
        CALLER_HZ,
        true,
    );
    let mut caller = baresip(&caller_dir, 60, &["/dial 102"]);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !log_of(&caller_dir).contains("180 Ringing") && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }

    // 103 picks it up.
    let picker_dir = softphone(
        &home.path().join("103"),
        &seeded.a103,
        node.sip_port,
        CALLEE_HZ,
        false,
    );
    let mut picker = baresip(&picker_dir, 60, &["/dial **102"]);
    assert!(
        established(&picker_dir, Duration::from_secs(20)),
        "103's pickup answered:\n{}",
        log_of(&picker_dir)
    );
    assert!(
        established(&caller_dir, Duration::from_secs(20)),
        "101's call was taken:\n{}\nnode:\n{}",
        log_of(&caller_dir),
        node_log(&node)
    );
    let rang = desk.finish(Duration::from_secs(20));
    assert!(rang.success, "102's phone was cancelled:\n{}", rang.log);

    // They talk; 101 hangs up, and 103's call ends with it.
    std::thread::sleep(Duration::from_secs(4));
    command(&caller_dir, "/hangup");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !log_of(&picker_dir).contains("terminated") && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    for p in [&mut caller, &mut picker] {
        let _ = p.kill();
        let _ = p.wait();
    }
    assert!(
        log_of(&picker_dir).contains("terminated"),
        "101's hang-up reached 103:\n{}",
        log_of(&picker_dir)
    );
    let at_103 = listen_tail(&heard(&picker_dir), &[CALLER_HZ, CALLEE_HZ], 2.0);
    assert!(at_103.has(CALLER_HZ), "103 heard 101: {at_103:?}");
    let at_101 = listen_tail(&heard(&caller_dir), &[CALLER_HZ, CALLEE_HZ], 2.0);
    assert!(at_101.has(CALLEE_HZ), "101 heard 103: {at_101:?}");

    // Nothing rings now: *8 hears so, and the server hangs up.
    let again_dir = softphone(
        &home.path().join("103-again"),
        &seeded.a103,
        node.sip_port,
        CALLEE_HZ,
        false,
    );
    let mut again = baresip(&again_dir, 30, &["/dial *8"]);
    assert!(established(&again_dir, Duration::from_secs(20)));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !log_of(&again_dir).contains("terminated") && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = again.kill();
    let _ = again.wait();
    assert!(
        log_of(&again_dir).contains("terminated"),
        "*8 with nothing ringing was hung up:\n{}",
        log_of(&again_dir)
    );
    let prompts = pbx_apps::prompts::Prompts::for_language(&language_of_a(dir.path()));
    let told = share_of_clip_heard(&heard(&again_dir), prompts.pickup_none());
    assert!(
        told > 0.5,
        "103 heard there is nothing to pick up ({told:.2})"
    );
}

/// Customer A's language.
fn language_of_a(dir: &Path) -> String {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let store = open_seeded(dir).await;
        let customer = customer_a(&store).await;
        let language = store
            .customers()
            .get(&Principal::system(), customer)
            .await
            .expect("A")
            .language;
        store.close().await;
        language
    })
}
