//! Call records from real calls (SIPp phones through the real `pbx`), on
//! SQLite and PostgreSQL: each disposition, durations, and exactly-once
//! writing across a SIGKILL of the node and an outage of the database.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use pbx_store::call_records::{CallRecord, Disposition, HangupSide, RecordFilter};
use pbx_store::testing::{TestDb, TEST_KEY};
use pbx_store::{Principal, Store, StoreConfig};
use support::sip::{register, seed_store, sipp_available, Phone, Seeded, Sipp, SippProcess};
use support::{Node, TempDir};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn target(node: &Node) -> String {
    format!("127.0.0.1:{}", node.sip_port)
}

async fn open(url: &str) -> Store {
    let store = Store::connect(&StoreConfig {
        database_url: url.to_owned(),
        max_connections: 2,
        secret_key: TEST_KEY,
    })
    .await
    .expect("open store");
    store.migrate().await.expect("migrate");
    store
}

async fn all_records(url: &str) -> Vec<CallRecord> {
    let store = open(url).await;
    let records = store
        .call_records()
        .list(
            &Principal::system(),
            &RecordFilter {
                limit: 1000,
                ..RecordFilter::default()
            },
        )
        .await
        .expect("list records");
    store.close().await;
    records
}

/// Waits until `n` records are stored (the writer works in the background).
fn wait_for_records(rt: &tokio::runtime::Runtime, url: &str, n: usize) -> Vec<CallRecord> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let records = rt.block_on(all_records(url));
        if records.len() >= n || Instant::now() > deadline {
            return records;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn start(dir: &Path, database_url: Option<&str>) -> Node {
    start_with(dir, database_url, &[])
}

fn start_with(dir: &Path, database_url: Option<&str>, extra: &[(&str, &str)]) -> Node {
    let key = support::sip::secret_key_base64();
    let mut env = vec![
        ("PBX_SECRET_KEY", key.as_str()),
        ("PBX_SIP_DIGEST_ALGORITHMS", "MD5"),
    ];
    if let Some(url) = database_url {
        env.push(("PBX_DATABASE_URL", url));
    }
    env.extend_from_slice(extra);
    Node::start(dir, &["serve"], &env)
}

fn uas(node: &Node, phone: &Phone, scenario: &str, calls: u32) -> SippProcess {
    let uas = Sipp::new(scenario)
        .arg("-m")
        .arg(&calls.to_string())
        .spawn(&target(node));
    let reg = register(node, phone, uas.port(), "u1");
    assert!(reg.success, "registration failed:\n{}", reg.log);
    uas
}

fn caller(_node: &Node, from: &Phone, callee: &str, scenario: &str) -> Sipp {
    Sipp::new(scenario)
        .phone(from, &format!("{callee}@{}", from.domain))
        .key("callee", callee)
        .key("callee_domain", &from.domain)
        .arg("-d")
        .arg("2000")
}

fn final_answer(node: &Node, from: &Phone, callee: &str, code: u16) {
    let out = Sipp::new("uac_final.xml.in")
        .fill(&code.to_string())
        .phone(from, &format!("{callee}@{}", from.domain))
        .key("callee", callee)
        .key("callee_domain", &from.domain)
        .run(&target(node));
    assert!(
        out.success,
        "expected {code} calling {callee}:\n{}",
        out.log
    );
}

/// Answered, busy, not answered, cancelled and failed calls, each recorded
/// once with the right disposition, status and duration.
fn dispositions(database_url: Option<&str>, seeded: &Seeded, dir: &TempDir) {
    let rt = runtime();
    let node = start(dir.path(), database_url);
    let url = database_url
        .map(str::to_owned)
        .unwrap_or_else(|| format!("sqlite://{}?mode=rwc", dir.path().join("pbx.db").display()));
    let s = seeded;
    // One registration of 102; each scenario's phone listens on its port in turn.
    let phone_port = support::free_port();
    let reg = register(&node, &s.a102, phone_port, "u1");
    assert!(reg.success, "registration failed:\n{}", reg.log);
    let phone = |scenario: &str| {
        Sipp::new(scenario)
            .arg("-m")
            .arg("1")
            .arg("-p")
            .arg(&phone_port.to_string())
            .spawn(&target(&node))
    };
    // Answered, held for 2 s, hung up by the caller.
    let callee = phone("uas_answer.xml");
    std::thread::sleep(Duration::from_millis(200));
    let began = pbx_store::now_ms();
    let out = caller(&node, &s.a101, "102", "uac_call.xml").run(&target(&node));
    let ended = pbx_store::now_ms();
    assert!(out.success, "answered call failed:\n{}", out.log);
    assert!(callee.finish(Duration::from_secs(10)).success);
    // Busy (486 from the phone), cancelled while ringing.
    let busy = phone("uas_busy.xml");
    std::thread::sleep(Duration::from_millis(200));
    final_answer(&node, &s.a101, "102", 486);
    assert!(busy.finish(Duration::from_secs(10)).success);
    let ringing = phone("uas_ring.xml");
    std::thread::sleep(Duration::from_millis(200));
    let out = caller(&node, &s.a101, "102", "uac_cancel.xml").run(&target(&node));
    assert!(out.success, "cancel failed:\n{}", out.log);
    assert!(ringing.finish(Duration::from_secs(10)).success);
    // Not answered: 103 has no phone registered (480); failed: no such extension.
    final_answer(&node, &s.a101, "103", 480);
    final_answer(&node, &s.a101, "999", 404);

    let records = wait_for_records(&rt, &url, 5);
    assert_eq!(records.len(), 5, "{records:#?}");
    let mut uids: Vec<_> = records.iter().map(|r| r.call.record_uid.clone()).collect();
    uids.sort();
    uids.dedup();
    assert_eq!(uids.len(), 5, "record uids are unique");
    // Newest first: failed, no answer, cancelled, busy, answered.
    let by = |d: Disposition| -> Vec<&CallRecord> {
        records.iter().filter(|r| r.call.disposition == d).collect()
    };
    let answered = by(Disposition::Answered);
    assert_eq!(answered.len(), 1, "{records:#?}");
    let a = answered[0];
    assert_eq!(a.call.sip_status, Some(200));
    assert_eq!(a.call.hangup_side, Some(HangupSide::Caller));
    assert_eq!(
        (a.call.caller.as_str(), a.call.callee.as_str()),
        (s.a101.user.as_str(), "102")
    );
    assert!(a.call.callee_device_id.is_some());
    // SIPp holds the call 2 s after the ACK; allow for a slow machine.
    assert!(
        (1_900..=6_000).contains(&a.billable_ms),
        "billable {} ms",
        a.billable_ms
    );
    assert!(a.call.invite_at >= began - 1_000 && a.call.end_at <= ended + 1_000);
    assert_eq!(
        a.billable_ms,
        a.call.end_at - a.call.answer_at.expect("answered")
    );
    let expect = |d: Disposition, status: u16| {
        let found = by(d);
        assert_eq!(found.len(), 1, "{d:?}: {records:#?}");
        assert_eq!(found[0].call.sip_status, Some(status), "{d:?}");
        assert_eq!(found[0].billable_ms, 0, "{d:?}");
        assert!(found[0].call.answer_at.is_none(), "{d:?}");
    };
    expect(Disposition::Busy, 486);
    expect(Disposition::Cancelled, 487);
    expect(Disposition::NoAnswer, 480);
    expect(Disposition::Failed, 404);
    assert!(records.iter().all(|r| !r.call.recovered));
    assert!(node.stop().success());
}

#[test]
fn real_calls_are_recorded_with_their_disposition_on_sqlite() {
    if !sipp_available() {
        return;
    }
    let dir = TempDir::new("cdr-sqlite");
    let seeded = support::sip::seed(dir.path());
    dispositions(None, &seeded, &dir);
}

#[test]
fn real_calls_are_recorded_with_their_disposition_on_postgres() {
    if !sipp_available() {
        return;
    }
    let Some(_) = support::postgres_url() else {
        return;
    };
    let rt = runtime();
    let Some(db) = rt.block_on(TestDb::postgres()) else {
        return;
    };
    let seeded = rt.block_on(seed_store(&db.store));
    let dir = TempDir::new("cdr-postgres");
    dispositions(Some(&db.url), &seeded, &dir);
    drop(rt);
}

/// Polls the node's metrics until `name` reaches `value`.
fn wait_metric(node: &Node, name: &str, value: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = support::http_get(node.http, "localhost", "/metrics")
            .map(|r| r.text())
            .unwrap_or_default();
        let current = text
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0);
        if current >= value as f64 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name} did not reach {value}:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn calls_in_progress_when_the_node_is_killed_are_recorded_once_with_a_bounded_duration() {
    if !sipp_available() {
        return;
    }
    let rt = runtime();
    let dir = TempDir::new("cdr-kill");
    let s = support::sip::seed(dir.path());
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("pbx.db").display());
    let node = start(dir.path(), None);
    let callee = uas(&node, &s.a102, "uas_answer.xml", 3);
    // Three calls held for a minute, far beyond the kill.
    let callers = caller(&node, &s.a101, "102", "uac_call.xml")
        .arg("-m")
        .arg("3")
        .arg("-l")
        .arg("3")
        .arg("-d")
        .arg("60000")
        .spawn(&target(&node));
    wait_metric(&node, "pbx_sip_calls_answered_total", 3);
    let answered = pbx_store::now_ms();
    // Past at least one journal beat (2 s) while the calls are up.
    std::thread::sleep(Duration::from_millis(4_500));
    let killed = pbx_store::now_ms();
    node.signal("KILL");
    let mut node = node;
    node.wait(Duration::from_secs(10));
    drop(callers);
    drop(callee);
    assert!(
        rt.block_on(all_records(&url)).is_empty(),
        "nothing stored before the kill"
    );

    let node = start(dir.path(), None);
    let records = wait_for_records(&rt, &url, 3);
    assert_eq!(records.len(), 3, "{records:#?}");
    for r in &records {
        assert!(r.call.recovered, "{r:#?}");
        assert_eq!(r.call.disposition, Disposition::Answered);
        assert_eq!(r.call.end_reason.as_deref(), Some("node_restart"));
        let answer = r.call.answer_at.expect("answer");
        assert!(answer <= answered + 1_000);
        // Ends at the last beat before the kill: after the answer, not after the kill.
        assert!(
            r.call.end_at <= killed,
            "ended {} after the kill at {killed}",
            r.call.end_at
        );
        // Beats come every 2 s and the kill came 4.5 s after the answer: the
        // last one fell well into the call, even on a loaded machine.
        assert!(
            r.billable_ms >= 1_000,
            "at least one beat into the call: {}",
            r.billable_ms
        );
    }
    // A second restart must not add or change anything.
    assert!(node.stop().success());
    let node = start(dir.path(), None);
    std::thread::sleep(Duration::from_millis(1_500));
    let again = rt.block_on(all_records(&url));
    assert_eq!(again.len(), 3);
    assert!(node.stop().success());
}

/// A PostgreSQL server of the test's own, in a scratch directory, so that
/// stopping it disturbs no other test.
struct OwnPostgres {
    dir: PathBuf,
    port: u16,
    bin: PathBuf,
    as_postgres: bool,
}

impl OwnPostgres {
    fn start() -> Option<OwnPostgres> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .flatten()
            .map(|e| e.path().join("bin"))
            .find(|p| p.join("initdb").exists())?;
        let dir = std::env::temp_dir().join(format!("pbx-own-pg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).ok()?;
        // PostgreSQL refuses to run as root: run it as the postgres user then.
        let as_postgres = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false);
        if as_postgres {
            Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .status()
                .ok()?;
        }
        let pg = OwnPostgres {
            dir,
            port: support::free_port(),
            bin,
            as_postgres,
        };
        let data = pg.dir.join("data");
        let ok = pg
            .run(
                "initdb",
                &[
                    "-A",
                    "trust",
                    "-U",
                    "postgres",
                    "-D",
                    &data.display().to_string(),
                ],
            )
            .success();
        if !ok {
            return None;
        }
        pg.pg_ctl_start();
        Some(pg)
    }

    fn run(&self, tool: &str, args: &[&str]) -> std::process::ExitStatus {
        let program = self.bin.join(tool);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=postgres", "--regid=postgres", "--clear-groups"])
                .arg(&program);
            c
        } else {
            Command::new(&program)
        };
        cmd.args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("run a PostgreSQL tool")
    }

    fn pg_ctl_start(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.display()
        );
        let status = self.run(
            "pg_ctl",
            &[
                "-D",
                &self.dir.join("data").display().to_string(),
                "-l",
                &self.dir.join("log").display().to_string(),
                "-o",
                &options,
                "-w",
                "start",
            ],
        );
        assert!(status.success(), "own PostgreSQL did not start");
    }

    fn stop(&self) {
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.dir.join("data").display().to_string(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn records_made_while_postgres_is_down_are_written_once_when_it_returns() {
    if !sipp_available() {
        return;
    }
    let Some(pg) = OwnPostgres::start() else {
        assert!(
            std::env::var("PBX_TEST_REQUIRE_POSTGRES").as_deref() != Ok("1"),
            "PBX_TEST_REQUIRE_POSTGRES=1 but no PostgreSQL server could be initialised (initdb)"
        );
        eprintln!("SKIPPED: no PostgreSQL server binaries (initdb) to start a private instance");
        return;
    };
    let rt = runtime();
    let url = pg.url();
    let s = rt.block_on(async {
        let store = open(&url).await;
        let s = seed_store(&store).await;
        store.close().await;
        s
    });
    let dir = TempDir::new("cdr-outage");
    let node = start(dir.path(), Some(&url));
    let callee = uas(&node, &s.a102, "uas_answer.xml", 4);
    let out = caller(&node, &s.a101, "102", "uac_call.xml")
        .arg("-d")
        .arg("200")
        .run(&target(&node));
    assert!(out.success, "{}", out.log);
    assert_eq!(wait_for_records(&rt, &url, 1).len(), 1);

    // The database goes away; the phones keep calling.
    pg.stop();
    let out = caller(&node, &s.a101, "102", "uac_call.xml")
        .arg("-m")
        .arg("3")
        .arg("-d")
        .arg("200")
        .spawn(&target(&node))
        .finish(Duration::from_secs(60));
    assert!(
        out.success,
        "calls while the database is down:\n{}",
        out.log
    );
    final_answer(&node, &s.a101, "999", 404);
    // The writer fails, backs off and spools what it could not write.
    let spool = dir.path().join("spool").join("call-records.journal");
    let spooled = || std::fs::metadata(&spool).map(|m| m.len()).unwrap_or(0) > 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !spooled() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(spooled(), "records are spooled");

    pg.pg_ctl_start();
    let records = wait_for_records(&rt, &url, 5);
    assert_eq!(records.len(), 5, "{records:#?}");
    let mut call_ids: Vec<_> = records.iter().map(|r| r.call.call_id.clone()).collect();
    call_ids.sort();
    call_ids.dedup();
    assert_eq!(call_ids.len(), 5, "each call once");
    assert_eq!(
        records
            .iter()
            .filter(|r| r.call.disposition == Disposition::Answered)
            .count(),
        4
    );
    assert!(callee.finish(Duration::from_secs(10)).success);
    assert!(node.stop().success());
    // Nothing more arrives later (no replay doubles a record).
    assert_eq!(rt.block_on(all_records(&url)).len(), 5);
}

#[test]
fn a_call_reaching_the_maximum_duration_is_hung_up_and_billed_exactly_that_long() {
    if !sipp_available() {
        return;
    }
    let rt = runtime();
    let dir = TempDir::new("cdr-max");
    let s = support::sip::seed(dir.path());
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("pbx.db").display());
    let node = start_with(dir.path(), None, &[("PBX_SIP_MAX_CALL_DURATION", "10")]);
    let callee = uas(&node, &s.a102, "uas_answer.xml", 1);
    // The caller would hold the call for a minute.
    let caller = caller(&node, &s.a101, "102", "uac_call.xml")
        .arg("-d")
        .arg("60000")
        .spawn(&target(&node));
    // The proxy's BYE ends the callee's scenario well before the minute.
    let uas = callee.finish(Duration::from_secs(30));
    assert!(
        uas.success,
        "the callee got no BYE from the proxy:\n{}",
        uas.log
    );
    drop(caller);
    let records = wait_for_records(&rt, &url, 1);
    assert_eq!(records.len(), 1, "{records:#?}");
    let r = &records[0];
    assert_eq!(r.call.disposition, Disposition::Answered);
    assert_eq!(r.call.end_reason.as_deref(), Some("max_duration"));
    assert_eq!(r.call.hangup_side, Some(HangupSide::System));
    assert_eq!(r.billable_ms, 10_000, "billed exactly the maximum");
    assert!(node.stop().success());
}
