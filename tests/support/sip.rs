//! SIP end-to-end helpers: a node seeded with two tenants, and SIPp runs
//! acting as the phones (Debian's sip-tester). Only 127.0.0.1 is ever a target.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use pbx_store::devices::NewDevice;
use pbx_store::extensions::NewExtension;
use pbx_store::testing::{TwoTenants, TEST_KEY};
use pbx_store::{Principal, Store, StoreConfig};

use super::{free_port, Node, TempDir};

/// SIP credentials of one device.
#[derive(Debug, Clone)]
pub struct Phone {
    pub user: String,
    pub password: String,
    pub domain: String,
}

/// What the seeded database holds: customer A (of reseller X) with
/// extensions 101, 102 (two devices: 102 and 102-2) and 103; customer B
/// (of reseller Y) with extension 101.
pub struct Seeded {
    pub a101: Phone,
    pub a102: Phone,
    pub a102b: Phone,
    pub a103: Phone,
    pub b101: Phone,
}

/// Whether SIPp can be used; with PBX_TEST_REQUIRE_SIPP=1 its absence is a failure.
pub fn sipp_available() -> bool {
    tool_available("sipp", "-v", "sip-tester")
}

/// Whether `command` runs (asked with `arg`); with PBX_TEST_REQUIRE_SIPP=1
/// (CI) its absence is a failure, else the test is skipped with a message
/// naming the Debian `package`.
pub fn tool_available(command: &str, arg: &str, package: &str) -> bool {
    let found = Command::new(command)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        if std::env::var("PBX_TEST_REQUIRE_SIPP").as_deref() == Ok("1") {
            panic!("PBX_TEST_REQUIRE_SIPP=1 but {command} is not installed (apt-get install {package})");
        }
        eprintln!("SKIPPED: {command} is not installed (apt-get install {package})");
    }
    found
}

/// A webhook of customer A for `events` at `url` (a private address: the
/// node refuses to call it, so its deliveries are only queued, to be
/// looked at); its id.
pub async fn customer_a_webhook(store: &Store, url: &str, events: &[&str]) -> i64 {
    let acme = customer_a(store).await;
    let new: pbx_store::webhooks::NewWebhook = serde_json::from_value(serde_json::json!({
        "url": url,
        "events": events,
        "customer_id": acme,
    }))
    .expect("webhook");
    let (created, _) = store
        .webhooks()
        .create(&Principal::system(), &new)
        .await
        .expect("webhook");
    created.id
}

pub fn secret_key_base64() -> String {
    base64::engine::general_purpose::STANDARD.encode(TEST_KEY)
}

/// Seeds the SQLite database a node on `data_dir` will use.
pub fn seed(data_dir: &Path) -> Seeded {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let url = format!("sqlite://{}?mode=rwc", data_dir.join("pbx.db").display());
        let store = Store::connect(&StoreConfig {
            database_url: url,
            max_connections: 2,
            secret_key: TEST_KEY,
        })
        .await
        .expect("open store");
        store.migrate().await.expect("migrate");
        let seeded = seed_store(&store).await;
        store.close().await;
        seeded
    })
}

/// Changes customer A's extensions in the database a node on `data_dir`
/// will use (before it starts): forwards as (extension, condition, target),
/// and do-not-disturb on the extensions listed.
pub fn configure_a(
    data_dir: &Path,
    forwards: &[(&str, pbx_store::forwards::ForwardCondition, &str)],
    dnd: &[&str],
) {
    use pbx_store::forwards::Forward;
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let url = format!("sqlite://{}?mode=rwc", data_dir.join("pbx.db").display());
        let store = Store::connect(&StoreConfig {
            database_url: url,
            max_connections: 2,
            secret_key: TEST_KEY,
        })
        .await
        .expect("open store");
        let sys = Principal::system();
        let acme = store
            .customers()
            .list(&sys, None)
            .await
            .expect("customers")
            .into_iter()
            .find(|c| c.name == "Acme")
            .expect("customer A");
        let extensions = store
            .extensions()
            .list(&sys, acme.id)
            .await
            .expect("extensions");
        let ext = |n: &str| {
            extensions
                .iter()
                .find(|e| e.number == n)
                .unwrap_or_else(|| panic!("extension {n}"))
        };
        let mut numbers: Vec<&str> = forwards.iter().map(|f| f.0).collect();
        numbers.dedup();
        for n in numbers {
            let set: Vec<Forward> = forwards
                .iter()
                .filter(|f| f.0 == n)
                .map(|f| Forward {
                    condition: f.1,
                    target: f.2.to_owned(),
                    // The shortest ringing time allowed, to keep tests short.
                    timeout_s: (f.1 == pbx_store::forwards::ForwardCondition::NoAnswer)
                        .then_some(5),
                    enabled: true,
                })
                .collect();
            store
                .forwards()
                .set(&sys, ext(n).id, &set)
                .await
                .expect("forwards");
        }
        for n in dnd {
            let e = ext(n);
            let settings = pbx_store::extensions::ExtensionSettings {
                display_name: e.display_name.clone(),
                dnd: true,
            };
            store
                .extensions()
                .update(&sys, e.id, None, &settings)
                .await
                .expect("dnd");
        }
        store.close().await;
    });
}

/// Adds a ring group to customer A (before the node starts): `members` and
/// `no_answer` are extension numbers; members ring 5 s each.
pub fn ring_group_a(
    data_dir: &Path,
    number: &str,
    strategy: &str,
    members: &[&str],
    no_answer: Option<&str>,
) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let store = open_seeded(data_dir).await;
        let sys = Principal::system();
        let acme = customer_a(&store).await;
        let extensions = store
            .extensions()
            .list(&sys, acme)
            .await
            .expect("extensions");
        let id = |n: &str| {
            extensions
                .iter()
                .find(|e| e.number == n)
                .map(|e| e.id)
                .unwrap_or_else(|| panic!("extension {n}"))
        };
        let settings = serde_json::json!({
            "number": number, "name": "Group", "strategy": strategy, "member_timeout_s": 5,
            "members": members.iter().map(|m| id(m)).collect::<Vec<_>>(),
            "no_answer_extension_id": no_answer.map(id),
        });
        store
            .ring_groups()
            .create(
                &sys,
                acme,
                &serde_json::from_value(settings).expect("settings"),
            )
            .await
            .expect("ring group");
        store.close().await;
    });
}

/// The seeded SQLite store of a node's data directory.
pub async fn open_seeded(data_dir: &Path) -> Store {
    let url = format!("sqlite://{}?mode=rwc", data_dir.join("pbx.db").display());
    Store::connect(&StoreConfig {
        database_url: url,
        max_connections: 2,
        secret_key: TEST_KEY,
    })
    .await
    .expect("open store")
}

/// Customer A's id.
pub async fn customer_a(store: &Store) -> pbx_store::CustomerId {
    store
        .customers()
        .list(&Principal::system(), None)
        .await
        .expect("customers")
        .into_iter()
        .find(|c| c.name == "Acme")
        .expect("customer A")
        .id
}

/// Seeds any store (also PostgreSQL ones) with the two tenants.
pub async fn seed_store(store: &Store) -> Seeded {
    let t = TwoTenants::create(store).await;
    let sys = Principal::system();
    let ext = |n: &str| NewExtension {
        number: n.into(),
        display_name: format!("Ext {n}"),
    };
    let e102 = store
        .extensions()
        .create(&sys, t.customer_a.id, &ext("102"))
        .await
        .expect("102");
    let e103 = store
        .extensions()
        .create(&sys, t.customer_a.id, &ext("103"))
        .await
        .expect("103");
    let device = |name: &str| NewDevice {
        name: name.into(),
        ..NewDevice::default()
    };
    let (_, c102) = store
        .devices()
        .create(&sys, e102.id, &device("desk"))
        .await
        .expect("device");
    let (_, c102b) = store
        .devices()
        .create(&sys, e102.id, &device("mobile"))
        .await
        .expect("device");
    let (_, c103) = store
        .devices()
        .create(&sys, e103.id, &device("desk"))
        .await
        .expect("device");
    let phone = |c: pbx_store::devices::Credentials| Phone {
        user: c.sip_user,
        password: c.password,
        domain: c.sip_domain,
    };
    let a101 = store
        .devices()
        .credentials(&sys, t.device_a.id)
        .await
        .expect("a101");
    let b101 = store
        .devices()
        .credentials(&sys, t.device_b.id)
        .await
        .expect("b101");
    Seeded {
        a101: phone(a101),
        a102: phone(c102),
        a102b: phone(c102b),
        a103: phone(c103),
        b101: phone(b101),
    }
}

/// The engines a scenario with storage runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

/// Runs `scenario` on a node directory (tagged `tag`) whose store is seeded
/// with the two tenants on `engine`: the directory, the seeded phones, the
/// database URL to give the node (None: its SQLite file) and the store.
/// On PostgreSQL, skipped (with a message) when no server is configured.
pub fn on_engine(
    engine: Engine,
    tag: &str,
    scenario: impl FnOnce(&TempDir, &Seeded, Option<&str>, &Store),
) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    match engine {
        Engine::Sqlite => {
            let dir = TempDir::new(tag);
            let seeded = seed(dir.path());
            let store = rt.block_on(open_seeded(dir.path()));
            scenario(&dir, &seeded, None, &store);
            rt.block_on(store.close());
        }
        Engine::Postgres => {
            if super::postgres_url().is_none() {
                return;
            }
            let Some(db) = rt.block_on(pbx_store::testing::TestDb::postgres()) else {
                return;
            };
            let seeded = rt.block_on(seed_store(&db.store));
            let dir = TempDir::new(&format!("{tag}-postgres"));
            scenario(&dir, &seeded, Some(&db.url), &db.store);
            drop(db);
        }
    }
}

/// A node serving the seeded tenants, offering `algorithms` (SIPp only does MD5).
pub fn start_node(dir: &TempDir, algorithms: &str) -> Node {
    let key = secret_key_base64();
    Node::start(
        dir.path(),
        &["serve"],
        &[
            ("PBX_SECRET_KEY", key.as_str()),
            ("PBX_SIP_DIGEST_ALGORITHMS", algorithms),
        ],
    )
}

/// One SIPp run.
pub struct Sipp {
    scenario: PathBuf,
    args: Vec<String>,
    workdir: TempDir,
    pub port: u16,
}

impl Sipp {
    /// `scenario` names a file in tests/sipp/ (or a `.in` template filled by `fill`).
    pub fn new(scenario: &str) -> Sipp {
        let source = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/sipp")
            .join(scenario);
        let workdir = TempDir::new("sipp");
        let name = scenario.trim_end_matches(".in");
        let scenario = workdir.path().join(name);
        std::fs::copy(&source, &scenario).unwrap_or_else(|e| panic!("{}: {e}", source.display()));
        let port = free_port();
        let args = vec![
            "-i".into(),
            "127.0.0.1".into(),
            "-p".into(),
            port.to_string(),
            "-cp".into(),
            free_port().to_string(),
            "-mp".into(),
            free_port().to_string(),
            "-nostdin".into(),
            "-trace_msg".into(),
            "-trace_err".into(),
            "-timeout".into(),
            "30".into(),
            "-timeout_error".into(),
        ];
        Sipp {
            scenario,
            args,
            workdir,
            port,
        }
    }

    /// Replaces `EXPECTED` in a template scenario.
    pub fn fill(self, expected: &str) -> Sipp {
        let text = std::fs::read_to_string(&self.scenario).expect("scenario");
        std::fs::write(&self.scenario, text.replace("EXPECTED", expected)).expect("write scenario");
        self
    }

    /// Puts a file in SIPp's working directory (audio it streams).
    pub fn with_file(self, name: &str, bytes: &[u8]) -> Sipp {
        std::fs::write(self.workdir.path().join(name), bytes).expect("sipp file");
        self
    }

    pub fn key(mut self, name: &str, value: &str) -> Sipp {
        self.args.extend(["-key".into(), name.into(), value.into()]);
        self
    }

    /// Listens and sends from `ip` (a loopback address) instead of 127.0.0.1.
    pub fn local_ip(mut self, ip: &str) -> Sipp {
        if let Some(i) = self.args.iter().position(|a| a == "-i") {
            self.args[i + 1] = ip.into();
        }
        self
    }

    pub fn arg(mut self, a: &str) -> Sipp {
        self.args.push(a.into());
        self
    }

    /// The phone's identity and credentials, and its digest uri.
    pub fn phone(self, p: &Phone, digest_uri: &str) -> Sipp {
        self.key("user", &p.user)
            .key("domain", &p.domain)
            .arg("-au")
            .arg(&p.user)
            .arg("-ap")
            .arg(&p.password)
            .arg("-auth_uri")
            .arg(digest_uri)
    }

    fn command(&self, target: &str) -> Command {
        let mut cmd = Command::new("sipp");
        cmd.current_dir(self.workdir.path())
            .arg("-sf")
            .arg(&self.scenario)
            .args(&self.args)
            .arg(target)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        cmd
    }

    /// Runs one call (`-m 1`) against `target` and waits for the outcome.
    pub fn run(self, target: &str) -> SippOutcome {
        let mut child = self.arg("-m").arg("1").spawn_raw(target);
        let status = wait(&mut child.child, Duration::from_secs(60));
        SippOutcome {
            success: status == Some(0),
            log: child.messages(),
        }
    }

    /// Starts SIPp in the background (a phone waiting for calls).
    pub fn spawn(self, target: &str) -> SippProcess {
        self.spawn_raw(target)
    }

    fn spawn_raw(self, target: &str) -> SippProcess {
        let child = self.command(target).spawn().expect("start sipp");
        SippProcess { child, sipp: self }
    }
}

fn wait(child: &mut Child, timeout: Duration) -> Option<i32> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub struct SippOutcome {
    pub success: bool,
    /// The message trace, for assertions and failure reports.
    pub log: String,
}

impl SippOutcome {
    /// Status codes of the responses SIPp received, in order.
    pub fn received_statuses(&self) -> Vec<u16> {
        let mut out = Vec::new();
        let mut lines = self.log.lines();
        while let Some(line) = lines.next() {
            if line.contains("message received") {
                let first = lines
                    .by_ref()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or_default();
                if let Some(code) = first
                    .strip_prefix("SIP/2.0 ")
                    .and_then(|r| r.get(..3))
                    .and_then(|c| c.parse().ok())
                {
                    out.push(code);
                }
            }
        }
        out
    }
}

/// A SIPp process, stopped by PID when dropped.
pub struct SippProcess {
    child: Child,
    sipp: Sipp,
}

impl SippProcess {
    pub fn port(&self) -> u16 {
        self.sipp.port
    }

    /// Waits for the scenario to end (for UAS processes given `-m 1`).
    pub fn finish(mut self, timeout: Duration) -> SippOutcome {
        let status = wait(&mut self.child, timeout);
        SippOutcome {
            success: status == Some(0),
            log: self.messages(),
        }
    }

    fn messages(&self) -> String {
        let mut text = String::new();
        if let Ok(entries) = std::fs::read_dir(self.sipp.workdir.path()) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.ends_with("_messages.log") || name.ends_with("_errors.log") {
                    text.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
                }
            }
        }
        text
    }
}

impl Drop for SippProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Registers `phone` with its contact at `contact_port`; true on 200.
pub fn register(node: &Node, phone: &Phone, contact_port: u16, transport: &str) -> SippOutcome {
    Sipp::new("register.xml")
        .phone(phone, &phone.domain)
        .key("contact_port", &contact_port.to_string())
        .key("expires", "3600")
        .arg("-t")
        .arg(transport)
        .run(&format!("127.0.0.1:{}", node.sip_port))
}

/// The carrier side of a test: SIPp on another loopback address, so that
/// the node tells it from the phones (all on 127.0.0.1) by where it sends from.
pub const CARRIER_IP: &str = "127.0.0.2";

/// One carrier trunk for customer A's reseller's platform: SIPp listening at
/// `port` on [`CARRIER_IP`], carrying `prefixes` (E.164 digits).
pub struct TestTrunk<'a> {
    pub name: &'a str,
    pub port: u16,
    pub priority: i64,
    pub prefixes: &'a [&'a str],
    pub max_channels: Option<i64>,
    /// Registers with the carrier as this user and secret (realm
    /// `carrier.test`) instead of being known by address.
    pub register: Option<(&'a str, &'a str)>,
    /// Known by address, but with this user and secret for a carrier that
    /// challenges calls.
    pub credentials: Option<(&'a str, &'a str)>,
}

impl TestTrunk<'static> {
    /// A carrier that only sends calls in (known by its address; nothing
    /// listens on its port).
    pub fn inbound_only() -> TestTrunk<'static> {
        TestTrunk {
            name: "Carrier",
            port: super::free_port(),
            priority: 10,
            prefixes: &[""],
            max_channels: None,
            register: None,
            credentials: None,
        }
    }
}

/// What a carrier test sets up before the node starts: trunks, customer A's
/// number +49 30 1234567 routed to `number_destination`, A's limits, and a
/// retail plan for A at 6 ct a minute to Germany (per second).
pub struct CarrierWorld {
    pub trunks: Vec<pbx_store::TrunkId>,
    pub number: pbx_store::NumberId,
}

pub fn carriers_a(
    data_dir: &Path,
    trunks: &[TestTrunk<'_>],
    limits: &pbx_store::limits::Limits,
) -> CarrierWorld {
    use pbx_store::numbering::NumberFormat;
    use pbx_store::trunks::{AuthMode, Route, Transport, TrunkSettings};
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let store = open_seeded(data_dir).await;
        let sys = Principal::system();
        let acme = customer_a(&store).await;
        let customer = store.customers().get(&sys, acme).await.expect("A");
        let mut ids = Vec::new();
        for t in trunks {
            let trunk = store
                .trunks()
                .create(
                    &sys,
                    None,
                    &TrunkSettings {
                        name: t.name.into(),
                        host: CARRIER_IP.into(),
                        port: i64::from(t.port),
                        transport: Transport::Udp,
                        auth_mode: if t.register.is_some() {
                            AuthMode::Register
                        } else {
                            AuthMode::Ip
                        },
                        username: t.register.or(t.credentials).map(|r| r.0.into()),
                        secret: t.register.or(t.credentials).map(|r| r.1.into()),
                        realm: t.register.or(t.credentials).map(|_| "carrier.test".into()),
                        register_expires_s: 120,
                        inbound_sources: vec![format!("{CARRIER_IP}/32")],
                        number_format: NumberFormat::E164Plus,
                        country: "DE".into(),
                        max_channels: t.max_channels,
                        priority: t.priority,
                        enabled: true,
                    },
                )
                .await
                .expect("trunk");
            let routes: Vec<Route> = t
                .prefixes
                .iter()
                .map(|p| Route {
                    prefix: (*p).into(),
                    priority: 100,
                })
                .collect();
            store
                .trunks()
                .set_routes(&sys, trunk.id, &routes)
                .await
                .expect("routes");
            ids.push(trunk.id);
        }
        let number = store
            .numbers()
            .create(&sys, "+49301234567", Some(customer.reseller_id))
            .await
            .expect("number");
        store
            .numbers()
            .assign(&sys, number.id, acme)
            .await
            .expect("assign");
        store
            .call_limits()
            .set_for_customer(&sys, acme, limits)
            .await
            .expect("limits");
        let plan = store
            .price_plans()
            .create(
                &sys,
                Some(customer.reseller_id),
                &pbx_store::price_plans::PlanSettings {
                    name: "Retail".into(),
                    currency: "EUR".into(),
                    extension_month_micros: 0,
                    number_month_micros: 0,
                    internal_calls_free: true,
                },
            )
            .await
            .expect("plan");
        store
            .price_plans()
            .set_rates(
                &sys,
                plan.id,
                &[pbx_store::rating::RateRule {
                    prefix: "49".into(),
                    description: "Germany".into(),
                    minute_micros: 60_000,
                    connection_micros: 0,
                    first_increment_s: 1,
                    next_increment_s: 1,
                    minimum_micros: 0,
                }],
            )
            .await
            .expect("rates");
        let settings = pbx_store::customers::CustomerSettings {
            name: customer.name.clone(),
            sip_domain: customer.sip_domain.clone(),
            country: customer.country.clone(),
            time_zone: customer.time_zone.clone(),
            language: customer.language.clone(),
            retail_plan_id: Some(plan.id),
        };
        store
            .customers()
            .update(&sys, acme, None, &settings)
            .await
            .expect("retail plan");
        store.close().await;
        CarrierWorld {
            trunks: ids,
            number: number.id,
        }
    })
}

/// Routes customer A's number (before the node starts).
pub fn route_number_a(data_dir: &Path, world: &CarrierWorld, to: pbx_store::numbers::Destination) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let store = open_seeded(data_dir).await;
        store
            .numbers()
            .set_destination(&Principal::system(), world.number, Some(to))
            .await
            .expect("destination");
        store.close().await;
    });
}

/// Customer A's extension `number`'s id.
pub async fn extension_a(store: &Store, number: &str) -> pbx_store::ExtensionId {
    let acme = customer_a(store).await;
    store
        .extensions()
        .list(&Principal::system(), acme)
        .await
        .expect("extensions")
        .into_iter()
        .find(|e| e.number == number)
        .unwrap_or_else(|| panic!("extension {number}"))
        .id
}

/// Whether linphonec can be used; with PBX_TEST_REQUIRE_LINPHONE=1 its absence is a failure.
pub fn linphone_available() -> bool {
    let found = std::process::Command::new("linphonec")
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok();
    if !found {
        if std::env::var("PBX_TEST_REQUIRE_LINPHONE").as_deref() == Ok("1") {
            panic!("PBX_TEST_REQUIRE_LINPHONE=1 but linphonec is not installed (apt-get install linphone-cli)");
        }
        eprintln!("SKIPPED: linphonec is not installed (apt-get install linphone-cli)");
    }
    found
}

/// A Linphone configuration in `home` (its HOME, with the data folder it
/// needs) for `phone` registering through the node at `sip_port`, with
/// `extra` sections; returns the configuration file.
pub fn linphone_config(home: &Path, phone: &Phone, sip_port: u16, extra: &str) -> PathBuf {
    std::fs::create_dir_all(home.join(".local/share/linphone")).expect("linphone data dir");
    let rc = home.join("linphonerc");
    std::fs::write(
        &rc,
        format!(
            "[sip]\nsip_port={port}\nsip_tcp_port=0\ndefault_proxy=0\n{extra}\
             [proxy_0]\nreg_proxy=<sip:127.0.0.1:{sip_port};transport=udp>\n\
             reg_identity=sip:{user}@{domain}\nreg_expires=600\nreg_sendregister=1\n\
             [auth_info_0]\nusername={user}\npasswd={password}\nrealm={domain}\ndomain={domain}\n",
            port = free_port(),
            user = phone.user,
            password = phone.password,
            domain = phone.domain,
        ),
    )
    .expect("linphonerc");
    rc
}

/// Whether baresip can be used; with PBX_TEST_REQUIRE_BARESIP=1 its absence is a failure.
pub fn baresip_available() -> bool {
    let found = std::process::Command::new("baresip")
        .arg("-h")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok();
    if !found {
        if std::env::var("PBX_TEST_REQUIRE_BARESIP").as_deref() == Ok("1") {
            panic!(
                "PBX_TEST_REQUIRE_BARESIP=1 but baresip is not installed (apt-get install baresip)"
            );
        }
        eprintln!("SKIPPED: baresip is not installed (apt-get install baresip)");
    }
    found
}

/// Runs baresip on the configuration in `dir` for `seconds`, executing
/// `commands` at start; its output goes to `dir/log`.
pub fn baresip(dir: &std::path::Path, seconds: u32, commands: &[&str]) -> std::process::Child {
    baresip_in(None, dir, seconds, commands)
}

/// Like [`baresip`], inside network namespace `netns` (ip netns exec).
pub fn baresip_in(
    netns: Option<&str>,
    dir: &std::path::Path,
    seconds: u32,
    commands: &[&str],
) -> std::process::Child {
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = std::process::Command::new("ip");
            c.args(["netns", "exec", ns, "baresip"]);
            c
        }
        None => std::process::Command::new("baresip"),
    };
    cmd.arg("-f").arg(dir).arg("-t").arg(seconds.to_string());
    for c in commands {
        cmd.arg("-e").arg(c);
    }
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(dir.join("log")).expect("log"))
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start baresip")
}
