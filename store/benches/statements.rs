//! Billing at scale, on each engine: a customer's and a reseller's monthly
//! statement over 1,000,000 call records, and how fast finished records are
//! written (rated, in the proxy's batches of 500).
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
    for plan in [wholesale.id, retail.id] {
        db.store
            .price_plans()
            .set_rates(
                &sys,
                plan,
                &[rate("", 100_000), rate("49", 20_000), rate("4915", 90_000)],
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
    // Generated in the database: the seeding is not what is measured.
    let started = Instant::now();
    db.execute(&format!(
        "WITH RECURSIVE n(i) AS (SELECT CAST(1 AS BIGINT) UNION ALL SELECT i + 1 FROM n WHERE i < {records}) \
         INSERT INTO call_records (record_uid, call_id, leg, reseller_id, customer_id, direction, \
         caller, callee, destination, invite_at, answer_at, end_at, billable_ms, disposition, \
         sip_status, node_id, currency, wholesale_plan_id, wholesale_prefix, wholesale_micros, \
         retail_plan_id, retail_prefix, retail_micros, rated_at) \
         SELECT 'bench-' || i, 'call-' || i, 0, {r}, {c}, \
         CASE WHEN i % 10 = 0 THEN 'internal' ELSE 'outbound' END, '101', '+4915112345', \
         '4915112345', {from} + i * {step}, {from} + i * {step} + 4000, \
         {from} + i * {step} + 4000 + (i % 600) * 1000, (i % 600) * 1000, 'answered', 200, \
         'bench', 'EUR', {w}, CASE WHEN i % 3 = 0 THEN '49' WHEN i % 3 = 1 THEN '4915' ELSE '' END, \
         (i % 600) * 300, {rp}, CASE WHEN i % 3 = 0 THEN '49' WHEN i % 3 = 1 THEN '4915' ELSE '' END, \
         (i % 600) * 1500, 0 FROM n",
        r = t.reseller_x.id,
        c = t.customer_a.id,
        w = wholesale.id,
        rp = retail.id,
    ))
    .await
    .expect("seed records");
    db.execute("ANALYZE").await.expect("analyze");
    println!(
        "{engine:?}: {records} records seeded in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let month = Period::Month {
        year: 2026,
        month: 11,
    };
    for (name, run) in [("customer", true), ("reseller", false)] {
        let mut times = Vec::new();
        let mut net = 0;
        for _ in 0..5 {
            let started = Instant::now();
            let s = if run {
                db.store
                    .statements()
                    .customer(&t.customer_a_admin, t.customer_a.id, month)
                    .await
            } else {
                db.store
                    .statements()
                    .reseller(&t.reseller_x_admin, t.reseller_x.id, month)
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

    // Writing: the proxy's writer sends batches of up to 500 finished records.
    let n = if records >= 100_000 { 20_000 } else { 1_000 };
    let batch: Vec<NewCallRecord> = (0..n)
        .map(|i| NewCallRecord {
            record_uid: format!("w-{i}"),
            call_id: format!("w-{i}@bench"),
            leg: 0,
            reseller_id: t.reseller_x.id,
            customer_id: t.customer_a.id,
            direction: CallDirection::Outbound,
            caller: "101".into(),
            callee: "+4930123456".into(),
            caller_extension_id: Some(t.extension_a.id),
            callee_extension_id: None,
            caller_device_id: Some(t.device_a.id),
            callee_device_id: None,
            destination: Some("4930123456".into()),
            trunk_id: None,
            invite_at: from + i,
            answer_at: Some(from + i + 3_000),
            end_at: from + i + 63_000,
            disposition: Disposition::Answered,
            sip_status: Some(200),
            hangup_side: None,
            end_reason: None,
            recovered: false,
            node_id: "bench".into(),
        })
        .collect();
    let started = Instant::now();
    for chunk in batch.chunks(500) {
        db.store
            .call_records()
            .insert_batch(&sys, chunk)
            .await
            .expect("insert");
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{engine:?}: wrote {n} rated records in batches of 500: {:.0} records/s",
        n as f64 / secs
    );
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
