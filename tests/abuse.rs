//! The SIP abuse defence against the real `pbx` and real attack tools:
//! SIPVicious' svcrack guessing a password, svwar enumerating extensions and
//! svmap scanning, a password guess spread over many addresses, and a flood
//! of INVITEs. Each attacker gets a handful of answers at most, is banned
//! (or the account protected), and the phones of the customer go on working.
//! On PostgreSQL, a ban one node decides holds on another within a second.
//!
//! The tools write foreign names into their messages, so each test with
//! them runs in a private network namespace (only loopback up). svcrack and svwar bind
//! to every address, so a [`Relay`] gives each attacker its own source
//! address on 127/8 and counts what the node answered.

mod support;

use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pbx_store::abuse::{BanReason, SipBan};
use pbx_store::Principal;
use support::sip::{open_seeded, register, secret_key_base64, seed, sipp_available, Phone, Sipp};
use support::{in_private_netns, Node, TempDir};

/// Whether SIPVicious is installed; with PBX_TEST_REQUIRE_SIPP=1 its absence is a failure.
fn sipvicious_available() -> bool {
    support::sip::tool_available("svcrack", "--version", "sipvicious")
}

fn start(dir: &TempDir, env: &[(&str, &str)]) -> Node {
    let key = secret_key_base64();
    let mut all = vec![
        ("PBX_SECRET_KEY", key.as_str()),
        // MD5 first, as for phones that speak nothing else: svcrack 0.3.3
        // cannot answer a SHA-256 challenge.
        ("PBX_SIP_DIGEST_ALGORITHMS", "MD5,SHA-256"),
    ];
    all.extend_from_slice(env);
    Node::start(dir.path(), &["serve"], &all)
}

fn metrics(node: &Node) -> String {
    support::http_get(node.http, "localhost", "/metrics")
        .expect("metrics")
        .text()
}

/// The value of an unlabelled metric.
fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0)
}

/// The bans the node stored (read while it runs: SQLite allows it).
fn bans(dir: &TempDir) -> Vec<SipBan> {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let store = open_seeded(dir.path()).await;
        let bans = store
            .sip_bans()
            .list(&Principal::system(), true, 100)
            .await
            .expect("bans");
        store.close().await;
        bans
    })
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One answer the node sent an attacker: status code and the To user.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Answer {
    code: u16,
    to_user: String,
}

fn answer(data: &[u8]) -> Option<Answer> {
    let text = std::str::from_utf8(data).ok()?;
    let code = text.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()?;
    let to = text.lines().find(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("to:") || l.starts_with("t:")
    })?;
    let user = to.split("sip:").nth(1)?.split('@').next()?.to_owned();
    Some(Answer {
        code,
        to_user: user,
    })
}

/// Forwards UDP from a tool on 127.0.0.1 to the node, sending from `from`,
/// and the node's answers back; keeps every answer.
struct Relay {
    port: u16,
    answers: Arc<Mutex<Vec<Answer>>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Relay {
    fn start(from: &str, node: &Node) -> Relay {
        let front = UdpSocket::bind("127.0.0.1:0").expect("relay front");
        let back = UdpSocket::bind(format!("{from}:0")).expect("relay back");
        back.connect(("127.0.0.1", node.sip_port)).expect("connect");
        for s in [&front, &back] {
            s.set_read_timeout(Some(Duration::from_millis(100)))
                .expect("timeout");
        }
        let port = front.local_addr().expect("addr").port();
        let client: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
        let answers: Arc<Mutex<Vec<Answer>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (front2, back2) = (
            front.try_clone().expect("clone"),
            back.try_clone().expect("clone"),
        );
        let up = {
            let (client, stop) = (client.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 65_536];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok((n, peer)) = front.recv_from(&mut buf) {
                        *client.lock().expect("lock") = Some(peer);
                        let _ = back.send(&buf[..n]);
                    }
                }
            })
        };
        let down = {
            let (answers, stop) = (answers.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 65_536];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(n) = back2.recv(&mut buf) {
                        if let Some(a) = answer(&buf[..n]) {
                            answers.lock().expect("lock").push(a);
                        }
                        if let Some(peer) = *client.lock().expect("lock") {
                            let _ = front2.send_to(&buf[..n], peer);
                        }
                    }
                }
            })
        };
        Relay {
            port,
            answers,
            stop,
            threads: vec![up, down],
        }
    }

    fn answers(&self) -> Vec<Answer> {
        self.answers.lock().expect("lock").clone()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// svwar looking for extensions 100 to 130 of `domain` with `method`,
/// from its own address `from`; the relay (with the answers) and its output.
fn svwar(node: &Node, from: &str, method: &str, domain: &str) -> (Relay, String) {
    let relay = Relay::start(from, node);
    let port = relay.port.to_string();
    let out = sipvicious(
        "svwar",
        &[
            "-e100-130",
            "-m",
            method,
            "--force",
            "--domain",
            domain,
            "-p",
            &port,
            "--maximumtime",
            "3",
            "127.0.0.1",
        ],
    );
    (relay, out)
}

/// Runs a SIPVicious tool to its end (or kills it after a minute); its output.
fn sipvicious(tool: &str, args: &[&str]) -> String {
    let mut child = Command::new(tool)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{tool}: {e}"));
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let out = child.wait_with_output().expect("output");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// An answer without what differs in every answer (tags, nonces, Call-ID,
/// branch, the To user): what an enumerator could tell extensions apart by.
fn shape(data: &[u8]) -> String {
    let text = String::from_utf8_lossy(data);
    text.lines()
        .map(|line| {
            let lower = line.to_ascii_lowercase();
            if ["via:", "from:", "to:", "call-id:"]
                .iter()
                .any(|h| lower.starts_with(h))
            {
                line.split(':').next().unwrap_or_default().to_owned()
            } else {
                line.split("nonce=").next().unwrap_or_default().to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A REGISTER without credentials for `user` of `domain`, sent from `local`.
fn unauthenticated_register(user: &str, domain: &str, local: SocketAddr) -> String {
    format!(
        "REGISTER sip:{domain} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch=z9hG4bKreg{user}{n};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:{user}@{domain}>;tag=r{user}\r\n\
         To: <sip:{user}@{domain}>\r\n\
         Call-ID: reg-{user}-{n}@{local}\r\n\
         CSeq: 1 REGISTER\r\n\
         Contact: <sip:{user}@{local}>\r\n\
         Content-Length: 0\r\n\r\n",
        n = pbx_store::now_ms()
    )
}

/// Whether the node at `port` answers a REGISTER sent from `socket`.
fn answers_from(socket: &UdpSocket, port: u16, user: &str, domain: &str) -> bool {
    let local = socket.local_addr().expect("addr");
    let register = unauthenticated_register(user, domain, local);
    let _ = socket.send_to(register.as_bytes(), ("127.0.0.1", port));
    let _ = socket.set_read_timeout(Some(Duration::from_millis(500)));
    let mut buf = [0u8; 4096];
    socket.recv(&mut buf).is_ok()
}

fn ban_of<'a>(bans: &'a [SipBan], source: &str) -> Option<&'a SipBan> {
    bans.iter().find(|b| b.source == source)
}

/// A phone of the customer still registers and calls another one.
fn phones_still_work(node: &Node, caller: &Phone, callee: &Phone) {
    let target = format!("127.0.0.1:{}", node.sip_port);
    let uas = Sipp::new("uas_answer.xml")
        .arg("-m")
        .arg("1")
        .spawn(&target);
    let registered = register(node, callee, uas.port(), "u1");
    assert!(registered.success, "{}", registered.log);
    let number = callee.user.trim_end_matches("-2");
    let out = Sipp::new("uac_call.xml")
        .phone(caller, &format!("{number}@{}", caller.domain))
        .key("callee", number)
        .key("callee_domain", &caller.domain)
        .arg("-d")
        .arg("100")
        .run(&target);
    let answered = uas.finish(Duration::from_secs(10));
    assert!(out.success, "call:\n{}\ncallee:\n{}", out.log, answered.log);
}

#[test]
fn svcrack_gets_five_wrong_guesses_then_silence_and_a_ban() {
    if !in_private_netns("svcrack_gets_five_wrong_guesses_then_silence_and_a_ban")
        || !sipp_available()
        || !sipvicious_available()
    {
        return;
    }
    let dir = TempDir::new("svcrack");
    let seeded = seed(dir.path());
    // Scanner User-Agents let through, so that the password guess itself
    // is what is stopped (svcrack says it is "friendly-scanner").
    let node = start(&dir, &[("PBX_SIP_SCANNER_USER_AGENTS", "")]);
    let relay = Relay::start("127.0.0.66", &node);
    let victim = &seeded.a103;
    let dictionary = dir.path().join("passwords.txt");
    let mut words: Vec<String> = (1..=20).map(|i| format!("guess{i:02}")).collect();
    words.push(victim.password.clone());
    std::fs::write(&dictionary, words.join("\n") + "\n").expect("dictionary");
    let port = relay.port.to_string();
    let out = sipvicious(
        "svcrack",
        &[
            "-u",
            &victim.user,
            "-d",
            dictionary.to_str().expect("path"),
            "--domain",
            &victim.domain,
            "-p",
            &port,
            "--maximumtime",
            "5",
            "127.0.0.1",
        ],
    );
    let answers = relay.answers();
    let challenges = answers.iter().filter(|a| a.code == 401).count();
    // The first challenge, then one per wrong guess until the fifth.
    assert!(
        (2..=6).contains(&challenges),
        "{challenges} challenges: {answers:?}\n{out}"
    );
    assert!(answers.iter().all(|a| a.code == 401), "{answers:?}");
    assert!(!out.contains(&victim.password), "svcrack found it:\n{out}");
    let bans = bans(&dir);
    let ban = ban_of(&bans, "127.0.0.66").expect("the guesser is banned");
    assert_eq!(ban.reason, BanReason::AuthFailures);
    assert_eq!(ban.customer_id, Some(banned_customer(&dir)));
    // The reseller whose customer was guessed at sees the ban in the API.
    let token = support::create_token(&dir, &["--reseller", "1", "--name", "noc"]);
    let listed = support::http_get_bearer(node.http, "/api/v1/sip-bans", &token).expect("bans");
    assert_eq!(listed.status, 200, "{}", listed.text());
    let listed: serde_json::Value = serde_json::from_str(&listed.text()).expect("json");
    assert_eq!(listed[0]["source"], "127.0.0.66", "{listed}");
    assert_eq!(listed[0]["reason"], "auth_failures");
    let m = metrics(&node);
    assert_eq!(metric(&m, "pbx_sip_banned_sources"), 1, "{m}");
    assert!(metric(&m, "pbx_sip_guard_dropped_total") >= 10, "{m}");
    assert_eq!(metric(&m, "pbx_sip_registrations_total"), 0, "{m}");
    // The customer's own phones, from another address, work on.
    phones_still_work(&node, &seeded.a101, &seeded.a102);
    assert!(node.stop().success());
}

fn banned_customer(dir: &TempDir) -> pbx_store::CustomerId {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let store = open_seeded(dir.path()).await;
        let id = support::sip::customer_a(&store).await;
        store.close().await;
        id
    })
}

#[test]
fn svmap_and_svwar_learn_nothing_and_are_banned() {
    if !in_private_netns("svmap_and_svwar_learn_nothing_and_are_banned")
        || !sipp_available()
        || !sipvicious_available()
    {
        return;
    }
    let dir = TempDir::new("svwar");
    let seeded = seed(dir.path());
    let node = start(&dir, &[]);
    let domain = seeded.a101.domain.clone();

    // svmap (OPTIONS, "friendly-scanner"): not one answer, and a ban.
    let relay = Relay::start("127.0.0.67", &node);
    let port = relay.port.to_string();
    let out = sipvicious("svmap", &["-p", &port, "127.0.0.1"]);
    assert!(relay.answers().is_empty(), "{:?}\n{out}", relay.answers());
    drop(relay);
    wait_for("the scanner's ban", || {
        ban_of(&bans(&dir), "127.0.0.67").is_some_and(|b| b.reason == BanReason::Scanner)
    });

    // Monitoring's OPTIONS to the node itself is answered, naming no
    // product or version.
    let monitor = UdpSocket::bind("127.0.0.75:0").expect("bind");
    monitor
        .set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let local = monitor.local_addr().expect("addr");
    let ping = format!(
        "OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch=z9hG4bKping;rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:monitor@127.0.0.75>;tag=m1\r\n\
         To: <sip:127.0.0.1:{port}>\r\n\
         Call-ID: ping@127.0.0.75\r\n\
         CSeq: 1 OPTIONS\r\n\
         User-Agent: Nagios check_sip\r\n\
         Content-Length: 0\r\n\r\n",
        port = node.sip_port
    );
    monitor
        .send_to(ping.as_bytes(), ("127.0.0.1", node.sip_port))
        .expect("send");
    let mut buf = [0u8; 4096];
    let n = monitor.recv(&mut buf).expect("OPTIONS answered");
    let pong = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
    assert!(pong.starts_with("sip/2.0 200"), "{pong}");
    for telling in ["\nserver:", "\nuser-agent:", "pbx", "rust"] {
        assert!(!pong.contains(telling), "{telling} in {pong}");
    }

    // svwar: every method answers the same nothing.
    for (from, method) in [
        ("127.0.0.68", "REGISTER"),
        ("127.0.0.69", "INVITE"),
        ("127.0.0.72", "OPTIONS"),
    ] {
        let (relay, out) = svwar(&node, from, method, &domain);
        assert!(
            relay.answers().is_empty(),
            "{method}: {:?}",
            relay.answers()
        );
        assert!(
            !out.contains("| 101"),
            "{method} found an extension:\n{out}"
        );
        wait_for("svwar's ban", || {
            ban_of(&bans(&dir), from).is_some_and(|b| b.reason == BanReason::Scanner)
        });
    }

    // With scanners' names let through, svwar hears the same challenge for
    // an extension that exists and one that does not, and gives up.
    drop(node);
    let node = start(&dir, &[("PBX_SIP_SCANNER_USER_AGENTS", "")]);
    for (from, method) in [
        ("127.0.0.70", "REGISTER"),
        ("127.0.0.73", "INVITE"),
        ("127.0.0.74", "OPTIONS"),
    ] {
        let (relay, out) = svwar(&node, from, method, &domain);
        let answers = relay.answers();
        // Its made-up extension gets the same challenge as the first real
        // looking one, so it finds nothing.
        assert!(answers.len() >= 2, "{method}: {answers:?}");
        assert!(
            answers.iter().all(|a| a.code == answers[0].code),
            "{method}: {answers:?}"
        );
        assert!(out.contains("found nothing"), "{method}:\n{out}");
    }

    // A patient enumerator (a few lines of any language) asking for 300
    // extensions one by one: the same 401 whether the extension exists or
    // not, until it has had too many challenges it never answered.
    let enumerator = UdpSocket::bind("127.0.0.71:0").expect("bind");
    enumerator
        .connect(("127.0.0.1", node.sip_port))
        .expect("connect");
    enumerator
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let local = enumerator.local_addr().expect("addr");
    let mut heard = Vec::new();
    let mut silent = 0;
    for user in 100..400 {
        // Twenty unanswered in a row: it is shut out.
        if silent == 20 {
            break;
        }
        let register = unauthenticated_register(&user.to_string(), &domain, local);
        let _ = enumerator.send(register.as_bytes());
        let mut buf = [0u8; 4096];
        match enumerator.recv(&mut buf) {
            Ok(n) => {
                silent = 0;
                heard.push((user, shape(&buf[..n])));
            }
            Err(_) => silent += 1,
        }
    }
    assert!((50..=110).contains(&heard.len()), "{} answers", heard.len());
    let of = |u: u32| heard.iter().find(|(n, _)| *n == u).map(|(_, s)| s.clone());
    assert!(
        of(101).is_some_and(|s| s.starts_with("SIP/2.0 401")),
        "{heard:?}"
    );
    assert_eq!(
        of(101),
        of(100),
        "an extension that exists answers differently"
    );
    assert_eq!(of(103), of(140));
    wait_for("the enumerator's ban", || {
        ban_of(&bans(&dir), "127.0.0.71").is_some_and(|b| b.reason == BanReason::Enumeration)
    });
    phones_still_work(&node, &seeded.a101, &seeded.a102);
    assert!(node.stop().success());
}

#[test]
fn a_guess_from_many_addresses_protects_the_account() {
    if !in_private_netns("a_guess_from_many_addresses_protects_the_account") || !sipp_available() {
        return;
    }
    let dir = TempDir::new("distributed");
    let seeded = seed(dir.path());
    // The customer's endpoint for protections (a private address: the
    // deliveries are only queued, to be looked at).
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let hook = rt.block_on(async {
        let store = open_seeded(dir.path()).await;
        let id = support::sip::customer_a_webhook(
            &store,
            "https://127.0.0.1:9/security",
            &["account_protected"],
        )
        .await;
        store.close().await;
        id
    });
    let node = start(&dir, &[]);
    let target = format!("127.0.0.1:{}", node.sip_port);
    let victim = &seeded.a102;
    // The office's phone registered before the guessing starts.
    let office = Sipp::new("uas_answer.xml")
        .arg("-m")
        .arg("1")
        .spawn(&target);
    assert!(register(&node, victim, office.port(), "u1").success);

    // One wrong password from each of 20 addresses: none of them is
    // banned (one failure each), but the account is protected.
    let wrong = Phone {
        password: "not-the-password".into(),
        ..victim.clone()
    };
    for i in 0..20 {
        let from = format!("127.0.1.{}", 10 + i);
        let out = Sipp::new("register.xml")
            .local_ip(&from)
            .phone(&wrong, &wrong.domain)
            .key("contact_port", "5060")
            .key("expires", "60")
            .run(&target);
        assert!(!out.success, "a wrong password registered from {from}");
    }
    let m = metrics(&node);
    assert_eq!(metric(&m, "pbx_sip_protected_accounts"), 1, "{m}");
    assert_eq!(metric(&m, "pbx_sip_banned_sources"), 0, "{m}");
    // The right password from yet another address is refused the same way;
    let out = Sipp::new("register.xml")
        .local_ip("127.0.1.200")
        .phone(victim, &victim.domain)
        .key("contact_port", "5060")
        .key("expires", "60")
        .run(&target);
    assert!(!out.success, "registered from a new address:\n{}", out.log);
    let statuses = out.received_statuses();
    assert!(
        !statuses.is_empty() && statuses.iter().all(|c| *c == 401),
        "{statuses:?}"
    );
    // the office's phone refreshes its binding and takes a call.
    assert!(register(&node, victim, office.port(), "u1").success);
    let out = Sipp::new("uac_call.xml")
        .phone(&seeded.a101, &format!("102@{}", seeded.a101.domain))
        .key("callee", "102")
        .key("callee_domain", &seeded.a101.domain)
        .arg("-d")
        .arg("100")
        .run(&target);
    assert!(out.success, "{}", out.log);
    assert!(office.finish(Duration::from_secs(10)).success);
    assert!(node.stop().success());

    // Stored once, for the customer to see and lift, and told by webhook.
    rt.block_on(async {
        let store = open_seeded(dir.path()).await;
        let a = support::sip::customer_a(&store).await;
        let protections = store
            .account_protections()
            .list(&Principal::system(), Some(a), true, 10)
            .await
            .expect("protections");
        assert_eq!(protections.len(), 1, "{protections:?}");
        assert_eq!(protections[0].sip_user, victim.user);
        assert!(protections[0].sources >= 10, "{protections:?}");
        let deliveries = store
            .webhooks()
            .deliveries(&Principal::system(), hook, None, 10)
            .await
            .expect("deliveries");
        assert_eq!(deliveries.len(), 1, "{deliveries:?}");
        store.close().await;
    });
}

#[test]
fn a_flood_of_invites_is_banned_while_calls_go_on() {
    if !in_private_netns("a_flood_of_invites_is_banned_while_calls_go_on") || !sipp_available() {
        return;
    }
    let dir = TempDir::new("flood");
    let seeded = seed(dir.path());
    let node = start(&dir, &[]);
    let rss_before = rss_kib(node.pid());
    let flood = UdpSocket::bind("127.0.0.71:0").expect("bind");
    flood
        .connect(("127.0.0.1", node.sip_port))
        .expect("connect");
    let local = flood.local_addr().expect("addr");
    let domain = &seeded.a101.domain;
    for i in 0..10_000 {
        let invite = format!(
            "INVITE sip:102@{domain} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {local};branch=z9hG4bKflood{i};rport\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:101@{domain}>;tag=f{i}\r\n\
             To: <sip:102@{domain}>\r\n\
             Call-ID: flood-{i}@{local}\r\n\
             CSeq: 1 INVITE\r\n\
             Contact: <sip:101@{local}>\r\n\
             Content-Length: 0\r\n\r\n"
        );
        let _ = flood.send(invite.as_bytes());
    }
    // Whatever the node answered before the ban, it is far less than sent.
    flood
        .set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    let mut answered = 0;
    let mut buf = [0u8; 4096];
    while flood.recv(&mut buf).is_ok() {
        answered += 1;
    }
    assert!(answered <= 4_000, "{answered} answers to the flood");
    // A stranger's INVITEs are challenged: whichever comes first, too many
    // challenges never answered or too many requests, bans it.
    let mut reason = None;
    wait_for("the flood's ban", || {
        reason = ban_of(&bans(&dir), "127.0.0.71").map(|b| b.reason);
        reason.is_some()
    });
    assert!(
        matches!(reason, Some(BanReason::Flood | BanReason::Enumeration)),
        "{reason:?}"
    );
    phones_still_work(&node, &seeded.a101, &seeded.a102);
    let m = metrics(&node);
    assert!(metric(&m, "pbx_sip_guard_dropped_total") >= 5_000, "{m}");
    assert!(metric(&m, "pbx_sip_guard_sources") < 100, "{m}");
    let rss_after = rss_kib(node.pid());
    // A ban and a few thousand refused transactions, not a leak.
    assert!(
        rss_after < rss_before + 64 * 1024,
        "{rss_before} KiB before, {rss_after} KiB after"
    );
    eprintln!("flood: {answered} answers of 10000; RSS {rss_before} -> {rss_after} KiB");
    assert!(node.stop().success());
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

#[test]
fn a_ban_on_one_node_holds_on_the_other_within_seconds() {
    // Only our own messages, naming only loopback addresses: no namespace
    // needed, and PostgreSQL stays reachable.
    if !sipp_available() {
        return;
    }
    let Some(_) = support::postgres_url() else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let Some(db) = rt.block_on(pbx_store::testing::TestDb::postgres()) else {
        return;
    };
    let seeded = rt.block_on(support::sip::seed_store(&db.store));
    let (dir_a, dir_b) = (TempDir::new("ban-a"), TempDir::new("ban-b"));
    let node_a = start(
        &dir_a,
        &[
            ("PBX_DATABASE_URL", db.url.as_str()),
            ("PBX_NODE_ID", "sip-a"),
        ],
    );
    let node_b = start(
        &dir_b,
        &[
            ("PBX_DATABASE_URL", db.url.as_str()),
            ("PBX_NODE_ID", "sip-b"),
        ],
    );
    let victim = &seeded.a103;
    let guesser = UdpSocket::bind("127.0.0.76:0").expect("bind");
    assert!(answers_from(
        &guesser,
        node_b.sip_port,
        &victim.user,
        &victim.domain
    ));
    // Five wrong passwords at node A…
    let wrong = Phone {
        password: "not-the-password".into(),
        ..victim.clone()
    };
    for _ in 0..5 {
        let out = Sipp::new("register.xml")
            .local_ip("127.0.0.76")
            .phone(&wrong, &wrong.domain)
            .key("contact_port", "5060")
            .key("expires", "60")
            // The fifth is not answered at all.
            .arg("-timeout")
            .arg("3")
            .run(&format!("127.0.0.1:{}", node_a.sip_port));
        assert!(!out.success);
    }
    // …and node B stops answering that address within seconds, while it
    // answers everyone else.
    let banned_at = Instant::now();
    wait_for("node B to drop the banned address", || {
        !answers_from(&guesser, node_b.sip_port, &victim.user, &victim.domain)
    });
    eprintln!("ban held on the other node after {:?}", banned_at.elapsed());
    let other = UdpSocket::bind("127.0.0.77:0").expect("bind");
    assert!(answers_from(
        &other,
        node_b.sip_port,
        &victim.user,
        &victim.domain
    ));
    let m = metrics(&node_b);
    assert_eq!(metric(&m, "pbx_sip_banned_sources"), 1, "{m}");
    let bans = rt
        .block_on(db.store.sip_bans().list(&Principal::system(), true, 10))
        .expect("bans");
    assert_eq!(bans.len(), 1, "{bans:?}");
    assert_eq!(bans[0].node_id, "sip-a");
    assert!(node_a.stop().success());
    assert!(node_b.stop().success());
}
