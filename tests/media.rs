//! Media anchoring for real: softphones (baresip) in two customer offices,
//! each behind its own masquerading NAT router (network namespaces and
//! nftables), call each other through the platform in a third namespace.
//! Each phone sends its own tone; the recording of what the other phone
//! heard must hold it. With anchoring turned off, the same call carries no
//! audio: the phones' SDP names private addresses nobody can reach, which
//! is why the platform anchors.
//!
//! Needs root (network namespaces), baresip and nft (Debian's baresip and
//! nftables); skipped with a message otherwise, unless CI requires them.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use support::audio::{listen, write_tone};
use support::sip::{
    baresip_available, baresip_in, carriers_a, secret_key_base64, seed, sipp_available, Sipp,
    TestTrunk, CARRIER_IP,
};
use support::softphone::heard;
use support::{metric, Node, TempDir};

/// Network namespaces this test made; removed when dropped.
struct Lab {
    tag: String,
    made: Vec<String>,
}

/// One customer office: a phone's namespace behind a router's.
struct Office {
    /// The namespace phones run in.
    phone_ns: String,
    /// The phone's (private) address.
    phone_ip: String,
    /// The platform's address as this office reaches it.
    platform_ip: String,
}

fn sh(netns: Option<&str>, script: &str) {
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, "sh", "-ec", script]);
            c
        }
        None => {
            let mut c = Command::new("sh");
            c.args(["-ec", script]);
            c
        }
    };
    let out = cmd.output().expect("run sh");
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Lab {
    fn new() -> Lab {
        Lab {
            tag: format!("pbx{}", std::process::id()),
            made: Vec::new(),
        }
    }

    fn netns(&mut self, name: &str) -> String {
        let ns = format!("{}{name}", self.tag);
        sh(None, &format!("ip netns add {ns}"));
        self.made.push(ns.clone());
        sh(Some(&ns), "ip link set lo up");
        ns
    }

    /// Office `n`: phones on 192.168.n.0/24 behind a router that
    /// masquerades them as 10.0.n.2; the platform is 10.0.n.1 (this
    /// namespace). Nothing routes 192.168.n.0/24 anywhere else.
    fn office(&mut self, n: u8) -> Office {
        let router = self.netns(&format!("r{n}"));
        let phone = self.netns(&format!("o{n}"));
        sh(
            None,
            &format!(
                "ip link add isp{n} type veth peer name wan netns {router}\n\
                 ip addr add 10.0.{n}.1/24 dev isp{n}\nip link set isp{n} up"
            ),
        );
        sh(
            Some(&router),
            &format!(
                "ip addr add 10.0.{n}.2/24 dev wan\nip link set wan up\n\
                 ip link add lan type veth peer name eth0 netns {phone}\n\
                 ip addr add 192.168.{n}.1/24 dev lan\nip link set lan up\n\
                 ip route add default via 10.0.{n}.1\n\
                 sysctl -qw net.ipv4.ip_forward=1\n\
                 nft add table ip nat\n\
                 nft add chain ip nat post '{{ type nat hook postrouting priority 100 ; }}'\n\
                 nft add rule ip nat post oifname wan masquerade"
            ),
        );
        sh(
            Some(&phone),
            &format!(
                "ip addr add 192.168.{n}.10/24 dev eth0\nip link set eth0 up\n\
                 ip route add default via 192.168.{n}.1"
            ),
        );
        Office {
            phone_ns: phone,
            phone_ip: format!("192.168.{n}.10"),
            platform_ip: format!("10.0.{n}.1"),
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in self.made.drain(..).rev() {
            let _ = Command::new("ip").args(["netns", "del", &ns]).status();
        }
    }
}

fn tools_available() -> bool {
    if !baresip_available() {
        return false;
    }
    let nft = Command::new("nft").arg("--version").output().is_ok();
    if !nft {
        assert!(
            std::env::var("PBX_TEST_REQUIRE_NETNS").as_deref() != Ok("1"),
            "nft is not installed (apt-get install nftables)"
        );
        eprintln!("SKIPPED: nft is not installed (apt-get install nftables)");
    }
    nft
}

/// A baresip phone in an office for one demo extension, sending `tone` Hz;
/// its sndfile module records what it decodes to `dump-…-dec.wav`.
fn office_phone(
    home: &Path,
    office: &Office,
    ext: &serde_json::Value,
    sip_port: u16,
    tone: f64,
) -> PathBuf {
    let number = ext["number"].as_str().expect("number");
    let dir = home.join(number);
    std::fs::create_dir_all(&dir).expect("phone dir");
    write_tone(&dir.join("tone.wav"), tone, 30);
    std::fs::write(
        dir.join("config"),
        format!(
            "sip_listen {ip}:5060\nnet_interface {ip}\nmodule_path /usr/lib/baresip/modules\n\
             module g711.so\nmodule aufile.so\nmodule sndfile.so\nmodule_app account.so\nmodule_app menu.so\n\
             snd_path {dir}\naudio_source aufile,{tone}\n\
             audio_alert aufile,{alert}\nrtp_ports 40000-40999\n",
            ip = office.phone_ip,
            dir = dir.display(),
            tone = dir.join("tone.wav").display(),
            alert = dir.join("alert.wav").display(),
        ),
    )
    .expect("baresip config");
    std::fs::write(
        dir.join("accounts"),
        format!(
            "<sip:{number}@{domain}>;auth_pass={password};outbound=\"sip:{proxy}:{sip_port}\";regint=600;answermode=auto\n",
            domain = ext["sip_domain"].as_str().expect("domain"),
            password = ext["password"].as_str().expect("password"),
            proxy = office.platform_ip,
        ),
    )
    .expect("baresip account");
    dir
}

struct CallResult {
    caller_heard: support::audio::Heard,
    callee_heard: support::audio::Heard,
    caller_log: String,
    callee_log: String,
    relayed: u64,
}

/// 101 in office 1 calls 102 in office 2 on a fresh node with `mode`.
fn call_between_offices(o1: &Office, o2: &Office, mode: &str) -> CallResult {
    let dir = TempDir::new("media-nat");
    let port = support::free_port();
    let listen_on = format!("0.0.0.0:{port}");
    let mut node = Node::start_on(
        dir.path(),
        &["serve", "--demo"],
        &[
            ("PBX_SIP_UDP", listen_on.as_str()),
            ("PBX_SIP_TCP", listen_on.as_str()),
            ("PBX_MEDIA_ANCHOR", mode),
            ("PBX_RTP_PORTS", "30000-30099"),
        ],
        port,
    );
    let demo: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("demo.json")).expect("demo.json"),
    )
    .expect("demo json");
    let home = TempDir::new("media-nat-phones");
    let caller_dir = office_phone(home.path(), o1, &demo["extensions"][0], port, 440.0);
    let callee_dir = office_phone(home.path(), o2, &demo["extensions"][1], port, 1000.0);
    let mut callee = baresip_in(Some(&o2.phone_ns), &callee_dir, 16, &[]);
    let deadline = Instant::now() + Duration::from_secs(15);
    while metric(&node, "pbx_sip_registered_contacts") < 1 {
        assert!(
            Instant::now() < deadline,
            "the callee did not register from behind its NAT"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut caller = baresip_in(Some(&o1.phone_ns), &caller_dir, 10, &["/dial 102"]);
    let _ = caller.wait();
    let _ = callee.wait();
    let relayed = metric(&node, "pbx_media_packets_total");
    node.signal("TERM");
    assert!(node.wait(Duration::from_secs(30)).success());
    CallResult {
        caller_heard: listen(&heard(&caller_dir), &[440.0, 1000.0]),
        callee_heard: listen(&heard(&callee_dir), &[440.0, 1000.0]),
        caller_log: std::fs::read_to_string(caller_dir.join("log")).unwrap_or_default(),
        callee_log: std::fs::read_to_string(callee_dir.join("log")).unwrap_or_default(),
        relayed,
    }
}

#[test]
fn phones_behind_nat_hear_each_other_only_when_media_is_anchored() {
    if !tools_available()
        || !support::in_private_netns(
            "phones_behind_nat_hear_each_other_only_when_media_is_anchored",
        )
    {
        return;
    }
    let mut lab = Lab::new();
    let o1 = lab.office(1);
    let o2 = lab.office(2);

    // The default policy (nat) sees private addresses in the phones'
    // Contact and SDP and anchors the call.
    let anchored = call_between_offices(&o1, &o2, "nat");
    eprintln!(
        "anchored: caller heard {:?}, callee heard {:?}, {} packets relayed",
        anchored.caller_heard, anchored.callee_heard, anchored.relayed
    );
    assert!(
        anchored.caller_log.contains("Call established")
            && anchored.callee_log.contains("Call established"),
        "the call was answered:\n{}\n{}",
        anchored.caller_log,
        anchored.callee_log
    );
    assert!(
        anchored.caller_heard.has(1000.0),
        "the caller hears the callee's 1000 Hz: {:?}",
        anchored.caller_heard
    );
    assert!(
        anchored.callee_heard.has(440.0),
        "the callee hears the caller's 440 Hz: {:?}",
        anchored.callee_heard
    );
    assert!(
        anchored.relayed > 200,
        "relayed {} packets",
        anchored.relayed
    );

    // The same call without anchoring: signalling works, audio does not.
    let direct = call_between_offices(&o1, &o2, "never");
    eprintln!(
        "never: caller heard {:?}, callee heard {:?}",
        direct.caller_heard, direct.callee_heard
    );
    assert!(
        direct.caller_log.contains("Call established"),
        "{}",
        direct.caller_log
    );
    assert!(
        !direct.caller_heard.has(1000.0) && !direct.callee_heard.has(440.0),
        "no audio crosses two NATs unanchored: {:?} {:?}",
        direct.caller_heard,
        direct.callee_heard
    );
    assert_eq!(direct.relayed, 0);
}

/// A phone behind NAT calls a number outside: the call leaves through a
/// trunk to a carrier (SIPp, echoing the RTP it gets) in the data centre.
/// The carrier sees only the platform's address in the SDP, and the phone
/// hears its own tone come back through the carrier: audio both ways.
#[test]
fn a_phone_behind_nat_calls_out_and_the_carrier_sees_only_the_platform() {
    if !tools_available()
        || !sipp_available()
        || !support::in_private_netns(
            "a_phone_behind_nat_calls_out_and_the_carrier_sees_only_the_platform",
        )
    {
        return;
    }
    let mut lab = Lab::new();
    let o1 = lab.office(1);
    let dir = TempDir::new("media-carrier");
    let seeded = seed(dir.path());
    let carrier = Sipp::new("uas_answer.xml")
        .local_ip(CARRIER_IP)
        .arg("-m")
        .arg("1")
        .arg("-rtp_echo");
    carriers_a(
        dir.path(),
        &[TestTrunk {
            name: "Carrier",
            port: carrier.port,
            priority: 10,
            prefixes: &[""],
            max_channels: None,
            register: None,
            credentials: None,
        }],
        &pbx_store::limits::Limits {
            allow_international: true,
            allow_premium: true,
            ..Default::default()
        },
    );
    let port = support::free_port();
    let listen_on = format!("0.0.0.0:{port}");
    let key = secret_key_base64();
    let node = Node::start_on(
        dir.path(),
        &["serve"],
        &[
            ("PBX_SECRET_KEY", key.as_str()),
            ("PBX_SIP_DIGEST_ALGORITHMS", "MD5"),
            ("PBX_SIP_UDP", listen_on.as_str()),
            ("PBX_SIP_TCP", listen_on.as_str()),
        ],
        port,
    );
    let carrier = carrier.spawn(&format!("127.0.0.1:{port}"));
    let a101 = &seeded.a101;
    let ext = serde_json::json!({"number": a101.user, "sip_domain": a101.domain, "password": a101.password});
    let home = TempDir::new("media-carrier-phone");
    let phone_dir = office_phone(home.path(), &o1, &ext, port, 440.0);
    let mut phone = baresip_in(Some(&o1.phone_ns), &phone_dir, 9, &["/dial 0307654321"]);
    let _ = phone.wait();
    let carrier = carrier.finish(Duration::from_secs(15));
    let log = std::fs::read_to_string(phone_dir.join("log")).unwrap_or_default();
    assert!(
        carrier.success,
        "the carrier's call:\n{}\nphone:\n{log}",
        carrier.log
    );
    // Its SDP (o= and c=) names the platform; the phone's own Via stays in
    // the header (RFC 3261 proxies keep Vias), which is not where media goes.
    let sdp_lines: Vec<&str> = carrier
        .log
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("c=") || l.starts_with("o="))
        .collect();
    assert!(
        sdp_lines.contains(&"c=IN IP4 127.0.0.1")
            && sdp_lines.iter().all(|l| !l.contains("192.168.")),
        "the carrier's SDP names only the platform: {sdp_lines:?}"
    );
    let heard = listen(&heard(&phone_dir), &[440.0, 1000.0]);
    eprintln!("through the carrier: the phone heard {heard:?}");
    assert!(
        heard.has(440.0),
        "the phone hears its tone echoed by the carrier: {heard:?}\n{log}"
    );
    assert!(metric(&node, "pbx_media_packets_total") > 200);
    assert!(node.stop().success());
}
