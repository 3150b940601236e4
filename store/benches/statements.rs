//! Billing at scale, on each engine: how fast finished records are written
//! (rated, in the proxy's batches of 500), and a customer's and a reseller's
//! monthly statement over the 1,000,000 records written.
//!
//!     PBX_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test \
//!         cargo bench -p pbx-store --bench statements
//!
//! BENCH_RECORDS changes the number of records (default 1,000,000).

use std::time::Instant;

use pbx_store::call_records::{CallDirection, Disposition, NewCallRecord};
use pbx_store::price_plans::PlanSettings;
use pbx_store::rating::RateRule;
use pbx_store::statements::Period;
use pbx_store::testing::{TestDb, TwoTenants};
use pbx_store::{Engine, Principal};

fn rate(prefix: &str, minute: i64) -> RateRule {
    RateRule {
        prefix: prefix.into(),
        description: format!("prefix {prefix}"),
        minute_micros: minute,
        connection_micros: 0,
        first_increment_s: 60,
        next_increment_s: 1,
        minimum_micros: 0,
    }
}

async fn bench(engine: Engine, records: i64) {
    let Some(db) = TestDb::new(engine).await else {
        println!("{engine:?}: skipped (no server configured)");
        return;
    };
    let t = TwoTenants::create(&db.store).await;
    let sys = Principal::system();
    let settings = |name: &str| PlanSettings {
        name: name.into(),
        currency: "EUR".into(),
        extension_month_micros: 5_000_000,
        number_month_micros: 1_000_000,
        internal_calls_free: true,
    };
    let wholesale = db
        .store
        .price_plans()
        .create(&sys, None, &settings("W"))
        .await
        .expect("plan");
    let retail = db
        .store
        .price_plans()
        .create(&sys, Some(t.reseller_x.id), &settings("R"))
        .await
        .expect("plan");
    // Retail prices half as much again as wholesale.
    for (plan, scale) in [(wholesale.id, 2), (retail.id, 3)] {
        db.store
            .price_plans()
            .set_rates(
                &sys,
                plan,
                &[
                    rate("", 40_000 * scale),
                    rate("49", 5_000 * scale),
                    rate("4915", 30_000 * scale),
                ],
            )
            .await
            .expect("rates");
    }
    db.store
        .resellers()
        .set_wholesale_plan(&sys, t.reseller_x.id, Some(wholesale.id))
        .await
        .expect("assign");
    db.execute(&format!(
        "UPDATE customers SET retail_plan_id = {} WHERE id = {}",
        retail.id, t.customer_a.id
    ))
    .await
    .expect("assign retail");
    let (from, to) =
        pbx_store::rating::month_bounds(2026, 11, "Europe/Berlin".parse().expect("tz"))
            .expect("month");
    let step = (to - from) / records;
    // Written the way the proxy's writer writes them: rated, in batches of 500.
    let record = |i: i64| {
        let invite_at = from + i * step;
        let (direction, destination) = match i % 10 {
            0 => (CallDirection::Internal, None),
            1..=3 => (CallDirection::Outbound, Some("4930123456")),
            4..=8 => (CallDirection::Outbound, Some("4915112345678")),
            _ => (CallDirection::Outbound, Some("12125550100")),
        };
        NewCallRecord {
            record_uid: format!("bench-{i}"),
            call_id: format!("bench-{i}@bench"),
            leg: 0,
            reseller_id: t.reseller_x.id,
            customer_id: t.customer_a.id,
            direction,
            caller: "101".into(),
            callee: destination
                .map(|d| format!("+{d}"))
                .unwrap_or_else(|| "102".into()),
            caller_extension_id: Some(t.extension_a.id),
            callee_extension_id: None,
            caller_device_id: Some(t.device_a.id),
            callee_device_id: None,
            destination: destination.map(str::to_owned),
            trunk_id: None,
            invite_at,
            answer_at: Some(invite_at + 4_000),
            end_at: invite_at + 4_000 + (i % 600) * 1_000 + 1,
            disposition: Disposition::Answered,
            sip_status: Some(200),
            hangup_side: None,
            end_reason: None,
            recovered: false,
            node_id: "bench".into(),
            media: None,
            recording: None,
        }
    };
    let started = Instant::now();
    let mut i = 0;
    while i < records {
        let batch: Vec<NewCallRecord> = (i..(i + 500).min(records)).map(record).collect();
        db.store
            .call_records()
            .insert_batch(&sys, &batch)
            .await
            .expect("insert");
        i += 500;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{engine:?}: wrote {records} rated records in batches of 500 in {secs:.1} s: {:.0} records/s",
        records as f64 / secs
    );
    db.execute("ANALYZE").await.expect("analyze");

    let month = Period::Month {
        year: 2026,
        month: 11,
    };
    // A range that does not start on a quarter hour is summed from the
    // records themselves (their covering index), not from the usage table.
    let ragged = Period::Range { from: from + 1, to };
    for (name, run, period) in [
        ("customer monthly", true, month),
        ("reseller monthly", false, month),
        ("customer ragged-range", true, ragged),
    ] {
        let mut times = Vec::new();
        let mut net = 0;
        for _ in 0..5 {
            let started = Instant::now();
            let s = if run {
                db.store
                    .statements()
                    .customer(&t.customer_a_admin, t.customer_a.id, period)
                    .await
            } else {
                db.store
                    .statements()
                    .reseller(&t.reseller_x_admin, t.reseller_x.id, period)
                    .await
            }
            .expect("statement");
            times.push(started.elapsed().as_secs_f64() * 1000.0);
            net = s.net_micros;
        }
        times.sort_by(|a, b| a.total_cmp(b));
        println!(
            "{engine:?}: {name} statement over {records} records: median {:.0} ms (min {:.0}, max {:.0}), net {}",
            times[2],
            times[0],
            times[4],
            pbx_store::rating::format_amount(net, "EUR")
        );
    }
}

fn main() {
    // `cargo test --all-targets` runs this too (without `--bench`): then it is
    // a quick smoke run on a thousand records.
    let benching = std::env::args().any(|a| a == "--bench");
    let records: i64 = std::env::var("BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if benching { 1_000_000 } else { 1_000 });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        bench(Engine::Sqlite, records).await;
        bench(Engine::Postgres, records).await;
    });
}
