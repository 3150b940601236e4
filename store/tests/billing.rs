//! Call records, rating on both tiers, statements and re-rating, on both
//! engines, including the attacker's side of tenant isolation.

use chrono::TimeZone;
use chrono_tz::Tz;
use pbx_store::call_records::{
    CallDirection, Disposition, HangupSide, NewCallRecord, RecordFilter, RerateScope,
};
use pbx_store::customers::CustomerSettings;
use pbx_store::price_plans::PlanSettings;
use pbx_store::rating::RateRule;
use pbx_store::statements::{LineKind, Period, StatementKind};
use pbx_store::testing::{TestDb, TwoTenants};
use pbx_store::{Millis, Principal, StoreError};

fn berlin() -> Tz {
    "Europe/Berlin".parse().expect("tz")
}

fn at(y: i32, m: u32, d: u32, h: u32, min: u32) -> Millis {
    berlin()
        .with_ymd_and_hms(y, m, d, h, min, 0)
        .single()
        .expect("local time")
        .timestamp_millis()
}

fn rate(prefix: &str, description: &str, minute: i64, first: i64, next: i64) -> RateRule {
    RateRule {
        prefix: prefix.into(),
        description: description.into(),
        minute_micros: minute,
        connection_micros: 0,
        first_increment_s: first,
        next_increment_s: next,
        minimum_micros: 0,
    }
}

fn plan(name: &str, ext_month: i64, num_month: i64) -> PlanSettings {
    PlanSettings {
        name: name.into(),
        currency: "EUR".into(),
        extension_month_micros: ext_month,
        number_month_micros: num_month,
        internal_calls_free: true,
    }
}

fn call(t: &TwoTenants, uid: &str, invite_at: Millis, talk_ms: Option<i64>) -> NewCallRecord {
    let answer_at = talk_ms.map(|_| invite_at + 5_000);
    NewCallRecord {
        record_uid: uid.into(),
        call_id: format!("{uid}@test"),
        leg: 0,
        reseller_id: t.reseller_x.id,
        customer_id: t.customer_a.id,
        direction: CallDirection::Outbound,
        caller: "101".into(),
        callee: "+4915112345678".into(),
        caller_extension_id: Some(t.extension_a.id),
        callee_extension_id: None,
        caller_device_id: Some(t.device_a.id),
        callee_device_id: None,
        destination: Some("4915112345678".into()),
        trunk_id: None,
        invite_at,
        answer_at,
        end_at: answer_at.unwrap_or(invite_at + 3_000) + talk_ms.unwrap_or(0),
        disposition: if talk_ms.is_some() {
            Disposition::Answered
        } else {
            Disposition::Busy
        },
        sip_status: Some(if talk_ms.is_some() { 200 } else { 486 }),
        hangup_side: talk_ms.map(|_| HangupSide::Caller),
        end_reason: None,
        recovered: false,
        node_id: "node-test".into(),
        media: None,
        recording: None,
    }
}

/// Reseller X on a wholesale plan, its customer A on a retail plan.
async fn priced(db: &TestDb) -> TwoTenants {
    let t = TwoTenants::create(&db.store).await;
    let op = Principal::system();
    let plans = db.store.price_plans();
    let wholesale = plans
        .create(&op, None, &plan("Wholesale 2026", 2_000_000, 500_000))
        .await
        .expect("wholesale plan");
    plans
        .set_rates(
            &op,
            wholesale.id,
            &[
                rate("", "World", 100_000, 60, 60),
                rate("49", "Germany", 10_000, 60, 60),
                rate("4915", "Germany mobile", 60_000, 60, 1),
            ],
        )
        .await
        .expect("wholesale rates");
    db.store
        .resellers()
        .set_wholesale_plan(&op, t.reseller_x.id, Some(wholesale.id))
        .await
        .expect("assign wholesale");
    let retail = plans
        .create(
            &t.reseller_x_admin,
            Some(t.reseller_x.id),
            &plan("Business", 30_000_000, 1_000_000),
        )
        .await
        .expect("retail plan");
    plans
        .set_rates(
            &t.reseller_x_admin,
            retail.id,
            &[
                rate("49", "Deutschland", 19_000, 60, 60),
                rate("4915", "Deutschland mobil", 90_000, 60, 1),
            ],
        )
        .await
        .expect("retail rates");
    let c = &t.customer_a;
    db.store
        .customers()
        .update(
            &t.reseller_x_admin,
            c.id,
            None,
            &CustomerSettings {
                name: c.name.clone(),
                sip_domain: c.sip_domain.clone(),
                country: c.country.clone(),
                time_zone: c.time_zone.clone(),
                language: c.language.clone(),
                retail_plan_id: Some(retail.id),
            },
        )
        .await
        .expect("assign retail plan");
    t
}

async fn records_are_rated_on_both_tiers_and_written_once(db: TestDb) {
    let t = priced(&db).await;
    let sys = Principal::system();
    let start = at(2026, 11, 10, 9, 0);
    let mut internal = call(&t, "internal", start + 1_000, Some(30_000));
    internal.direction = CallDirection::Internal;
    internal.destination = None;
    let mut world = call(&t, "world", start + 2_000, Some(1_000));
    world.destination = Some("12125550100".into());
    let batch = vec![
        // 121 s to a German mobile: wholesale 60/1 → 121 s × 0.06 / 60 =
        // 0.121; retail 121 s × 0.09 / 60 = 0.1815.
        call(&t, "mobile", start, Some(121_000)),
        call(&t, "busy", start + 500, None),
        internal,
        // No retail rate for the USA: the call is stored unrated on that tier.
        world,
    ];
    let records = db.store.call_records();
    assert_eq!(records.insert_batch(&sys, &batch).await.expect("insert"), 4);
    // The same batch again (a retry after a lost commit) adds nothing.
    assert_eq!(records.insert_batch(&sys, &batch).await.expect("again"), 0);
    let all = records
        .list(
            &t.reseller_x_admin,
            &RecordFilter {
                limit: 100,
                ..Default::default()
            },
        )
        .await
        .expect("list");
    assert_eq!(all.len(), 4);
    let get = |uid: &str| {
        all.iter()
            .find(|r| r.call.record_uid == uid)
            .expect("record")
            .clone()
    };
    let mobile = get("mobile");
    assert_eq!(mobile.billable_ms, 121_000);
    let w = mobile.wholesale.expect("wholesale price");
    let r = mobile.retail.expect("retail price");
    assert_eq!(
        (w.prefix.as_deref(), w.micros),
        (Some("4915"), Some(121_000))
    );
    assert_eq!(
        (r.prefix.as_deref(), r.micros),
        (Some("4915"), Some(181_500))
    );
    assert_eq!(mobile.currency.as_deref(), Some("EUR"));
    let busy = get("busy");
    assert_eq!(busy.billable_ms, 0);
    assert_eq!(busy.retail.expect("retail").micros, Some(0));
    assert_eq!(get("internal").retail.expect("retail").micros, Some(0));
    let world = get("world");
    assert_eq!(world.wholesale.expect("w").micros, Some(100_000));
    assert_eq!(
        world.retail.expect("r").micros,
        None,
        "no retail rate: unrated"
    );

    // The customer sees its records at retail prices only; the other tenants
    // see none of them.
    let seen = records
        .list(
            &t.customer_a_admin,
            &RecordFilter {
                limit: 100,
                ..Default::default()
            },
        )
        .await
        .expect("customer list");
    assert_eq!(seen.len(), 4);
    assert!(seen.iter().all(|r| r.wholesale.is_none()));
    for other in [&t.reseller_y_admin, &t.customer_b_admin] {
        let none = records
            .list(
                other,
                &RecordFilter {
                    customer: Some(t.customer_a.id),
                    limit: 100,
                    ..Default::default()
                },
            )
            .await
            .expect("list");
        assert!(none.is_empty(), "another tenant must see no records");
    }
    // The usage the statements read counted each record once.
    let (from, to) = pbx_store::rating::month_bounds(2026, 11, berlin()).expect("month");
    let s = db
        .store
        .statements()
        .customer(&sys, t.customer_a.id, Period::Range { from, to })
        .await
        .expect("statement");
    let calls: i64 = s
        .lines
        .iter()
        .filter(|l| l.kind == LineKind::Calls)
        .map(|l| l.quantity)
        .sum();
    assert_eq!(calls, 3, "answered calls, each once: {:?}", s.lines);
    let unrated: i64 = s.lines.iter().map(|l| l.unrated).sum();
    assert_eq!(unrated, 1, "the call to the USA has no retail rate");
    // A range not on quarter hours is summed from the records themselves,
    // with the same result.
    let raw = db
        .store
        .statements()
        .customer(
            &sys,
            t.customer_a.id,
            Period::Range {
                from: from + 1,
                to: to - 1,
            },
        )
        .await
        .expect("statement");
    assert_eq!(raw.lines, s.lines);
    // Only the platform writes records.
    assert!(matches!(
        records.insert_batch(&t.reseller_x_admin, &batch).await,
        Err(StoreError::Forbidden(_))
    ));
}

async fn statements_prorate_seats_and_group_calls_in_the_resellers_month(db: TestDb) {
    let t = priced(&db).await;
    let sys = Principal::system();
    // Extension A existed since October; a second one is created on the 20th
    // of November and a third created on the 10th and deleted on the 12th.
    db.execute(&format!(
        "UPDATE extensions SET created_at = {} WHERE id = {}",
        at(2026, 10, 1, 8, 0),
        t.extension_a.id
    ))
    .await
    .expect("backdate");
    let ext = |n: &str| pbx_store::extensions::NewExtension {
        number: n.into(),
        display_name: n.into(),
    };
    let late = db
        .store
        .extensions()
        .create(&sys, t.customer_a.id, &ext("102"))
        .await
        .expect("ext 102");
    let short = db
        .store
        .extensions()
        .create(&sys, t.customer_a.id, &ext("103"))
        .await
        .expect("ext 103");
    db.execute(&format!(
        "UPDATE extensions SET created_at = {} WHERE id = {}",
        at(2026, 11, 20, 15, 0),
        late.id
    ))
    .await
    .expect("set created");
    db.execute(&format!(
        "UPDATE extensions SET created_at = {}, deleted_at = {} WHERE id = {}",
        at(2026, 11, 10, 9, 0),
        at(2026, 11, 12, 17, 0),
        short.id
    ))
    .await
    .expect("set deleted");
    // Calls: one on the last evening of November (Berlin), one 30 minutes
    // after midnight on 1 December Berlin time (still 30 November in UTC),
    // and one across midnight at the month's end, billed in November.
    let mut across = call(&t, "across", at(2026, 11, 30, 23, 50), Some(20 * 60_000));
    across.destination = Some("4930123456".into());
    let batch = vec![
        call(&t, "nov", at(2026, 11, 30, 22, 0), Some(60_000)),
        call(&t, "dec", at(2026, 12, 1, 0, 30), Some(60_000)),
        across,
    ];
    db.store
        .call_records()
        .insert_batch(&sys, &batch)
        .await
        .expect("insert");

    let s = db
        .store
        .statements()
        .customer(
            &t.customer_a_admin,
            t.customer_a.id,
            Period::Month {
                year: 2026,
                month: 11,
            },
        )
        .await
        .expect("customer statement");
    assert_eq!(s.kind, StatementKind::Customer);
    assert_eq!(s.issuer.product_name.as_deref(), Some("Reseller X Phone"));
    assert_eq!(s.period_label, "2026-11");
    let seats: Vec<_> = s
        .lines
        .iter()
        .filter(|l| l.kind == LineKind::Seats)
        .collect();
    assert_eq!(seats.len(), 1);
    // 30 days + 11 days (20th–30th) + 3 days (10th–12th) = 44 extension-days
    // at 30.00 per 30-day month = 44.00.
    assert_eq!(seats[0].quantity, 44);
    assert_eq!(seats[0].amount_micros, 44_000_000);
    let calls: Vec<_> = s
        .lines
        .iter()
        .filter(|l| l.kind == LineKind::Calls)
        .collect();
    assert_eq!(calls.len(), 2, "{calls:?}");
    // Fixed line (prefix 49): 20 minutes × 0.019 = 0.38.
    let fixed = calls
        .iter()
        .find(|l| l.description.contains("(+49)"))
        .expect("fixed line");
    assert_eq!((fixed.quantity, fixed.amount_micros), (1, 380_000));
    // Mobile (4915): only the 30 November call; 60 s × 0.09 = 0.09.
    let mobile = calls
        .iter()
        .find(|l| l.description.contains("mobil"))
        .expect("mobile line");
    assert_eq!((mobile.quantity, mobile.amount_micros), (1, 90_000));
    assert_eq!(s.net_micros, 44_000_000 + 380_000 + 90_000);
    assert_eq!(s.vat_micros, 8_450_000, "19 % of 44.47 = 8.4493 → 8.45");
    assert_eq!(s.gross_micros, s.net_micros + s.vat_micros);

    // The same month for the reseller, at wholesale prices: 44 days at 2.00
    // per 30 days = 2.933… → 2.93; calls at wholesale rates.
    let r = db
        .store
        .statements()
        .reseller(
            &t.reseller_x_admin,
            t.reseller_x.id,
            Period::Month {
                year: 2026,
                month: 11,
            },
        )
        .await
        .expect("reseller statement");
    let seats: Vec<_> = r
        .lines
        .iter()
        .filter(|l| l.kind == LineKind::Seats)
        .collect();
    assert_eq!(seats[0].quantity, 44);
    assert_eq!(seats[0].amount_micros, 2_930_000);
    assert!(seats[0].description.contains("Acme"));
    let wholesale_calls: i64 = r
        .lines
        .iter()
        .filter(|l| l.kind == LineKind::Calls)
        .map(|l| l.amount_micros)
        .sum();
    // 20 min × 0.01 = 0.20; mobile 60 s × 0.06 = 0.06.
    assert_eq!(wholesale_calls, 260_000);

    // Exports: the customer's copy names only its reseller's brand.
    let csv = s.to_csv();
    assert!(csv.contains("44.00"), "{csv}");
    assert!(csv.contains("gross,,,,52.92,EUR"), "{csv}");
    let detail = db
        .store
        .statements()
        .call_detail(&t.customer_a_admin, &s)
        .await
        .expect("detail");
    assert_eq!(detail.len(), 2);
    let detail_csv = s.detail_csv(&detail);
    assert!(!detail_csv.contains("wholesale"));
    let json = s.to_json();
    assert_eq!(json["gross"], "52.92");

    // Attackers: another reseller and another customer get NotFound; a
    // customer cannot read its reseller's statement.
    let month = Period::Month {
        year: 2026,
        month: 11,
    };
    for other in [&t.reseller_y_admin, &t.customer_b_admin] {
        assert!(matches!(
            db.store
                .statements()
                .customer(other, t.customer_a.id, month)
                .await,
            Err(StoreError::NotFound)
        ));
    }
    assert!(matches!(
        db.store
            .statements()
            .reseller(&t.reseller_y_admin, t.reseller_x.id, month)
            .await,
        Err(StoreError::NotFound)
    ));
    assert!(db
        .store
        .statements()
        .reseller(&t.customer_a_admin, t.reseller_x.id, month)
        .await
        .is_err());
}

async fn rerating_after_a_correction_changes_the_statement_reproducibly(db: TestDb) {
    let t = priced(&db).await;
    let sys = Principal::system();
    let when = at(2026, 11, 5, 10, 0);
    db.store
        .call_records()
        .insert_batch(&sys, &[call(&t, "m1", when, Some(120_000))])
        .await
        .expect("insert");
    let month = Period::Month {
        year: 2026,
        month: 11,
    };
    let calls_total = |s: &pbx_store::statements::Statement| -> i64 {
        s.lines
            .iter()
            .filter(|l| l.kind == LineKind::Calls)
            .map(|l| l.amount_micros)
            .sum()
    };
    let before = db
        .store
        .statements()
        .customer(&t.reseller_x_admin, t.customer_a.id, month)
        .await
        .expect("statement");
    assert_eq!(calls_total(&before), 180_000);
    // The reseller corrects its mobile rate from 9 to 5 cents.
    let plan = db
        .store
        .customers()
        .get(&sys, t.customer_a.id)
        .await
        .expect("customer")
        .retail_plan_id
        .expect("plan");
    db.store
        .price_plans()
        .set_rates(
            &t.reseller_x_admin,
            plan,
            &[rate("4915", "Deutschland mobil", 50_000, 60, 1)],
        )
        .await
        .expect("correct");
    let unchanged = db
        .store
        .statements()
        .customer(&t.reseller_x_admin, t.customer_a.id, month)
        .await
        .expect("statement");
    assert_eq!(
        calls_total(&unchanged),
        180_000,
        "stored prices hold until re-rated"
    );
    let (from, to) = (before.from, before.to);
    let scope = RerateScope {
        reseller: None,
        customer: Some(t.customer_a.id),
        from,
        to,
    };
    // Another reseller cannot touch these records; a customer cannot re-rate.
    assert_eq!(
        db.store
            .call_records()
            .rerate(&t.reseller_y_admin, scope)
            .await
            .expect("foreign rerate"),
        0
    );
    assert!(db
        .store
        .call_records()
        .rerate(&t.customer_a_admin, scope)
        .await
        .is_err());
    assert_eq!(
        db.store
            .call_records()
            .rerate(&t.reseller_x_admin, scope)
            .await
            .expect("rerate"),
        1
    );
    let after = db
        .store
        .statements()
        .customer(&t.reseller_x_admin, t.customer_a.id, month)
        .await
        .expect("statement");
    assert_eq!(calls_total(&after), 100_000);
    // A reseller's re-rating leaves the operator's wholesale price alone.
    let rec = db
        .store
        .call_records()
        .list(
            &sys,
            &RecordFilter {
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .expect("list");
    assert_eq!(
        rec[0].wholesale.as_ref().and_then(|p| p.micros),
        Some(120_000)
    );
    // Rating again without a change changes nothing: statements are reproducible.
    assert_eq!(
        db.store
            .call_records()
            .rerate(&t.reseller_x_admin, scope)
            .await
            .expect("rerate"),
        0
    );
    let again = db
        .store
        .statements()
        .customer(&t.reseller_x_admin, t.customer_a.id, month)
        .await
        .expect("statement");
    assert_eq!(again.lines, after.lines);
}

async fn plans_are_scoped_and_validated(db: TestDb) {
    let t = priced(&db).await;
    let plans = db.store.price_plans();
    // A reseller cannot create wholesale plans or plans of another reseller.
    assert!(plans
        .create(&t.reseller_x_admin, None, &plan("Cheap", 0, 0))
        .await
        .is_err());
    assert!(plans
        .create(
            &t.reseller_y_admin,
            Some(t.reseller_x.id),
            &plan("Foreign", 0, 0)
        )
        .await
        .is_err());
    // Reseller Y sees none of X's plans; the customer sees its retail plan only.
    let y_sees = plans.list(&t.reseller_y_admin).await.expect("list");
    assert!(y_sees.is_empty(), "{y_sees:?}");
    let a_sees = plans.list(&t.customer_a_admin).await.expect("list");
    assert_eq!(a_sees.len(), 1);
    assert_eq!(a_sees[0].name, "Business");
    // X sees its retail plan and the wholesale plan it is billed on.
    assert_eq!(
        plans.list(&t.reseller_x_admin).await.expect("list").len(),
        2
    );
    // Bad rates are refused with the field named.
    let plan_id = a_sees[0].id;
    let err = plans
        .set_rates(
            &t.reseller_x_admin,
            plan_id,
            &[rate("49x", "bad", -1, 0, 60)],
        )
        .await
        .expect_err("invalid");
    let text = err.to_string();
    assert!(
        text.contains("rates[0].prefix") && text.contains("rates[0].minute_micros"),
        "{text}"
    );
    assert!(text.contains("rates[0].first_increment_s"), "{text}");
}

pbx_store::both_engines!(
    records_are_rated_on_both_tiers_and_written_once,
    statements_prorate_seats_and_group_calls_in_the_resellers_month,
    rerating_after_a_correction_changes_the_statement_reproducibly,
    plans_are_scoped_and_validated,
);
