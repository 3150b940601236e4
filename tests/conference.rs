//! A conference room for real: customer A's room 800 has a PIN. Three
//! baresip softphones (101, 102 and 103), each sending its own tone as its
//! voice, dial 800, key the PIN (RFC 4733 events through baresip's
//! console) and meet: each hears the other two tones and not its own.
//! The time in the room is recorded like any call (a call record per
//! participant, answered, with its duration). Customer B's phone dialling
//! 800 does not reach A's room. On SQLite and on PostgreSQL.
//!
//! Needs baresip (Debian's baresip); skipped with a message otherwise,
//! unless CI requires it.

mod support;

use std::time::{Duration, Instant};

use pbx_store::call_records::{CallRecord, Disposition, RecordFilter};
use pbx_store::Store;
use support::audio::listen_tail;
use support::sip::{baresip, baresip_available, on_engine, Engine, Seeded};
use support::softphone::{established, heard, press, softphone};
use support::{Node, TempDir};

const PIN: &str = "2468";

/// Creates customer A's room 800 with [`PIN`] in `store`.
async fn room_800(store: &Store) {
    let sys = pbx_store::Principal::system();
    let acme = support::sip::customer_a(store).await;
    store
        .conference_rooms()
        .create(
            &sys,
            acme,
            &serde_json::from_value(serde_json::json!({
                "number": "800", "name": "Board room", "pin": PIN
            }))
            .expect("settings"),
        )
        .await
        .expect("room");
}

/// Customer A's answered calls to room 800, once `n` are stored (the
/// node writes records in the background).
async fn calls_to_800(store: &Store, n: usize) -> Vec<CallRecord> {
    let sys = pbx_store::Principal::system();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let all = store
            .call_records()
            .list(
                &sys,
                &RecordFilter {
                    limit: 100,
                    ..RecordFilter::default()
                },
            )
            .await
            .expect("records");
        let to_room: Vec<CallRecord> = all
            .into_iter()
            .filter(|r| r.call.callee == "800" && r.call.disposition == Disposition::Answered)
            .collect();
        if to_room.len() >= n || Instant::now() > deadline {
            return to_room;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The scenario, on the database the node at `dir` uses (`database_url`,
/// else its SQLite file), whose store is `store`.
fn three_phones_meet(dir: &TempDir, seeded: &Seeded, database_url: Option<&str>, store: &Store) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(room_800(store));
    let key = support::sip::secret_key_base64();
    let mut env = vec![
        ("PBX_SECRET_KEY", key.as_str()),
        ("PBX_SIP_DIGEST_ALGORITHMS", "MD5"),
    ];
    if let Some(url) = database_url {
        env.push(("PBX_DATABASE_URL", url));
    }
    let node = Node::start(dir.path(), &["serve"], &env);
    let home = TempDir::new("conference-phones");
    let phones = [
        (&seeded.a101, "101", 500.0),
        (&seeded.a102, "102", 700.0),
        (&seeded.a103, "103", 1100.0),
    ];
    let tones: Vec<f64> = phones.iter().map(|p| p.2).collect();
    let mut running = Vec::new();
    for (i, (phone, name, freq)) in phones.iter().enumerate() {
        let phone_dir = softphone(&home.path().join(name), phone, node.sip_port, *freq, true);
        // Everyone stays until the last has been in the room a while.
        let seconds = 34 - 4 * i as u32;
        let child = baresip(&phone_dir, seconds, &["/dial 800"]);
        assert!(
            established(&phone_dir, Duration::from_secs(15)),
            "{name} reached the room:\n{}",
            std::fs::read_to_string(phone_dir.join("log")).unwrap_or_default()
        );
        // The PIN, over the prompt asking for it.
        std::thread::sleep(Duration::from_millis(500));
        for key in PIN.chars().chain(['#']) {
            press(&phone_dir, key);
            std::thread::sleep(Duration::from_millis(300));
        }
        running.push((child, phone_dir));
        std::thread::sleep(Duration::from_secs(2));
    }
    for (child, _) in &mut running {
        let _ = child.wait();
    }
    // The last eight seconds, all three inside: the others' tones, not one's own.
    for ((_, phone_dir), (_, name, own)) in running.iter().zip(phones.iter()) {
        let heard = listen_tail(&heard(phone_dir), &tones, 8.0);
        let share = |f: f64| {
            heard
                .shares
                .iter()
                .find(|(t, _)| *t == f)
                .map_or(0.0, |(_, s)| *s)
        };
        assert!(heard.rms > 300.0, "{name} heard the room: {heard:?}");
        for other in tones.iter().filter(|f| **f != *own) {
            assert!(share(*other) > 0.2, "{name} hears {other} Hz: {heard:?}");
        }
        assert!(
            share(*own) < 0.02,
            "{name} does not hear itself ({own} Hz): {heard:?}"
        );
    }

    // Customer B's phone dialling 800 reaches nothing of A's.
    let intruder_dir = softphone(
        &home.path().join("b101"),
        &seeded.b101,
        node.sip_port,
        300.0,
        false,
    );
    let mut intruder = baresip(&intruder_dir, 8, &["/dial 800"]);
    let _ = intruder.wait();
    let log = std::fs::read_to_string(intruder_dir.join("log")).unwrap_or_default();
    assert!(
        !log.contains("Call established"),
        "B's phone must not reach A's room:\n{log}"
    );

    // Each participant's time in the room is a call record of its own.
    let records = rt.block_on(calls_to_800(store, 3));
    assert_eq!(records.len(), 3, "one record per participant: {records:?}");
    for r in &records {
        assert!(
            r.billable_ms >= 10_000,
            "time in the room is counted: {r:?}"
        );
    }
}

#[test]
fn three_phones_meet_in_a_room_and_each_hears_the_other_two() {
    if baresip_available() {
        on_engine(Engine::Sqlite, "conference", three_phones_meet);
    }
}

#[test]
fn three_phones_meet_in_a_room_on_postgres() {
    if baresip_available() {
        on_engine(Engine::Postgres, "conference", three_phones_meet);
    }
}
