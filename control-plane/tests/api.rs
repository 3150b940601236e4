//! The REST API driven as its users do, on SQLite and PostgreSQL: every
//! endpoint across the authorisation matrix (operator / reseller X /
//! reseller Y / customer of X / customer of Y), validation, not-found, the
//! conventions (problem+json, ETag/If-Match, Idempotency-Key, cursors, rate
//! limits), and the OpenAPI document against the routes.

mod support;

use axum::http::Method;
use pbx_control_plane::api::auth::RateLimit;
use pbx_store::testing::TestDb;
use pbx_store::Principal;
use serde_json::{json, Value};
use support::{Api, Who, MATRIX};

/// One row of the matrix: a request and the status each caller gets.
struct Row {
    method: Method,
    uri: String,
    body: Option<Value>,
    expect: [u16; 5],
}

fn row(method: Method, uri: String, body: Option<Value>, expect: [u16; 5]) -> Row {
    Row {
        method,
        uri,
        body,
        expect,
    }
}

async fn run_matrix(api: &Api, rows: Vec<Row>) {
    let mut wrong = Vec::new();
    for r in rows {
        for (who, expected) in MATRIX.iter().zip(r.expect) {
            let headers: &[(&str, &str)] = if r.method == Method::PUT {
                &[("if-match", "*")]
            } else {
                &[]
            };
            // Creates must not collide between callers: each gets its own number.
            let body = r.body.as_ref().map(|b| {
                let text = b.to_string().replace("{who}", &format!("{}", *who as u8));
                serde_json::from_str::<Value>(&text).expect("json")
            });
            let answer = api
                .send(*who, r.method.clone(), &r.uri, body.as_ref(), headers)
                .await;
            if answer.status.as_u16() != expected {
                wrong.push(format!(
                    "{} {} as {who:?}: {} (expected {expected}) {}",
                    r.method,
                    r.uri,
                    answer.status,
                    answer.text()
                ));
            }
            if !answer.status.is_success() {
                assert_eq!(
                    answer.header("content-type"),
                    Some("application/problem+json"),
                    "{} {} as {who:?}",
                    r.method,
                    r.uri
                );
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

async fn authorisation_matrix(db: TestDb) {
    let api = Api::new(db).await;
    let t = &api.t;
    let sys = Principal::system();
    let (x, a) = (t.reseller_x.id, t.customer_a.id);
    let (ext, dev) = (t.extension_a.id, t.device_a.id);
    // Objects of customer A that the rows below refer to.
    let number = api
        .db
        .store
        .numbers()
        .create(&sys, "+4930111222", Some(x))
        .await
        .unwrap();
    api.db
        .store
        .numbers()
        .assign(&sys, number.id, a)
        .await
        .unwrap();
    let login = api
        .db
        .store
        .logins()
        .find_by_email(&sys, "admin@acme.test")
        .await
        .unwrap();
    let tokens = api.db.store.api_tokens().list(&sys).await.unwrap();
    let token_a = tokens
        .iter()
        .find(|tk| tk.customer_id == Some(a) && !tk.read_only)
        .unwrap();
    let plan = api
        .db
        .store
        .price_plans()
        .create(
            &sys,
            Some(x),
            &serde_json::from_value(json!({"name": "Retail", "currency": "EUR",
                "extension_month_micros": 5_000_000, "number_month_micros": 1_000_000,
                "internal_calls_free": true}))
            .unwrap(),
        )
        .await
        .unwrap();
    let customer = api.db.store.customers().get(&sys, a).await.unwrap();
    let mut settings = serde_json::to_value(&customer).unwrap();
    settings["retail_plan_id"] = json!(plan.id);
    let reseller = serde_json::to_value(&t.reseller_x).unwrap();
    let group = api
        .db
        .store
        .ring_groups()
        .create(
            &sys,
            a,
            &serde_json::from_value(json!({"number": "600", "name": "Support", "strategy": "sequential", "members": [ext]})).unwrap(),
        )
        .await
        .unwrap();
    let room = api
        .db
        .store
        .conference_rooms()
        .create(
            &sys,
            a,
            &serde_json::from_value(json!({"number": "800", "name": "Board", "pin": "4711"}))
                .unwrap(),
        )
        .await
        .unwrap();
    let menu = api
        .db
        .store
        .ivr_menus()
        .create(
            &sys,
            a,
            &serde_json::from_value(json!({"name": "Main",
                "options": [{"key": "1", "destination": {"kind": "extension", "id": ext}}]}))
            .unwrap(),
        )
        .await
        .unwrap();
    let rule = api
        .db
        .store
        .business_hours()
        .create(
            &sys,
            a,
            &serde_json::from_value(
                json!({"name": "Office", "weekly": [{"day": 1, "open": "08:00", "close": "17:00"}],
                "open_destination": {"kind": "extension", "id": ext}}),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    let trunk = api
        .db
        .store
        .trunks()
        .create(
            &sys,
            Some(x),
            &serde_json::from_value(
                json!({"name": "X carrier", "host": "127.0.0.1", "auth_mode": "ip"}),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    let (reseller_hook, _) = api
        .db
        .store
        .webhooks()
        .create(
            &sys,
            &serde_json::from_value(
                json!({"url": "https://crm.x.test/", "events": ["call_ended"], "reseller_id": x}),
            )
            .unwrap(),
        )
        .await
        .unwrap();

    // A recorded call of customer A, with its audio.
    let audio = pbx_store::audio_files::AudioFiles::new_key("recordings/matrix", "wav");
    api.state.audio.write(&audio, b"RIFF").unwrap();
    let mut call = pbx_store::testing::answered_call("matrix-rec", x, a, 1_000_000, 5_000);
    call.recording = Some(pbx_store::call_recordings::NewRecording {
        audio,
        started_at: 1_003_000,
    });
    api.db
        .store
        .call_records()
        .insert_batch(&sys, &[call])
        .await
        .unwrap();
    let recording = api
        .db
        .store
        .call_recordings()
        .list(&sys, a, None, 1)
        .await
        .unwrap()[0]
        .id;

    use Method as M;
    // Operator-only changes answer 403 to everyone else, whatever the id:
    // the same answer for every id is no existence oracle either.
    let ok = [200, 200, 404, 200, 404];
    let rows = vec![
        row(
            M::GET,
            format!("/api/v1/resellers/{x}"),
            None,
            [200, 200, 404, 200, 404],
        ),
        row(
            M::PUT,
            format!("/api/v1/resellers/{x}"),
            Some(reseller.clone()),
            [200, 200, 404, 403, 404],
        ),
        row(
            M::PUT,
            format!("/api/v1/resellers/{x}/status"),
            Some(json!({"status": "active"})),
            [200, 403, 403, 403, 403],
        ),
        row(
            M::PUT,
            format!("/api/v1/resellers/{x}/wholesale-plan"),
            Some(json!({"plan_id": null})),
            [200, 403, 403, 403, 403],
        ),
        row(M::GET, format!("/api/v1/customers/{a}"), None, ok),
        row(
            M::PUT,
            format!("/api/v1/customers/{a}"),
            Some(settings),
            [200, 200, 404, 403, 404],
        ),
        row(
            M::PUT,
            format!("/api/v1/customers/{a}/status"),
            Some(json!({"status": "active"})),
            [200, 200, 404, 403, 404],
        ),
        row(
            M::GET,
            format!("/api/v1/customers/{a}/extensions"),
            None,
            ok,
        ),
        row(
            M::POST,
            format!("/api/v1/customers/{a}/extensions"),
            Some(json!({"number": "20{who}", "display_name": "New"})),
            [201, 201, 404, 201, 404],
        ),
        row(M::GET, format!("/api/v1/extensions/{ext}"), None, ok),
        row(
            M::PUT,
            format!("/api/v1/extensions/{ext}"),
            Some(json!({"display_name": "Desk", "dnd": false})),
            ok,
        ),
        row(
            M::GET,
            format!("/api/v1/extensions/{ext}/devices"),
            None,
            ok,
        ),
        row(
            M::POST,
            format!("/api/v1/extensions/{ext}/devices"),
            Some(json!({"name": "Softphone {who}"})),
            [201, 201, 404, 201, 404],
        ),
        row(M::GET, format!("/api/v1/customers/{a}/devices"), None, ok),
        row(M::GET, format!("/api/v1/devices/{dev}"), None, ok),
        row(
            M::POST,
            format!("/api/v1/devices/{dev}/reset-secret"),
            Some(json!({})),
            ok,
        ),
        row(
            M::GET,
            format!("/api/v1/customers/{a}/registrations"),
            None,
            ok,
        ),
        row(
            M::GET,
            format!("/api/v1/customers/{a}/statement?month=2026-11"),
            None,
            ok,
        ),
        row(
            M::GET,
            format!("/api/v1/customers/{a}/statement?month=2026-11&format=csv"),
            None,
            ok,
        ),
        row(
            M::GET,
            format!("/api/v1/resellers/{x}/statement?month=2026-11"),
            None,
            [200, 200, 404, 403, 403],
        ),
        row(M::GET, format!("/api/v1/numbers/{}", number.id), None, ok),
        row(
            M::PUT,
            format!("/api/v1/numbers/{}/destination", number.id),
            Some(json!({"destination": {"kind": "extension", "id": ext}})),
            ok,
        ),
        row(M::GET, format!("/api/v1/logins/{}", login.id), None, ok),
        row(
            M::PUT,
            format!("/api/v1/logins/{}/disabled", login.id),
            Some(json!({"disabled": false})),
            ok,
        ),
        row(M::GET, format!("/api/v1/tokens/{}", token_a.id), None, ok),
        row(M::GET, format!("/api/v1/price-plans/{}", plan.id), None, ok),
        row(
            M::GET,
            format!("/api/v1/price-plans/{}/rates", plan.id),
            None,
            ok,
        ),
        row(
            M::PUT,
            format!("/api/v1/price-plans/{}/rates", plan.id),
            Some(
                json!([{"prefix": "49", "description": "Germany", "minute_micros": 10000,
                "connection_micros": 0, "first_increment_s": 60, "next_increment_s": 60, "minimum_micros": 0}]),
            ),
            [200, 200, 404, 403, 404],
        ),
        // Creates ("{who}" keeps each caller's object apart).
        row(
            M::POST,
            "/api/v1/resellers".into(),
            Some({
                let mut r =
                    serde_json::to_value(pbx_store::testing::reseller_settings("Reseller Z"))
                        .unwrap();
                r["name"] = json!("Reseller Z{who}");
                r["sip_domain_suffix"] = json!("voice.z{who}.test");
                r["console_hosts"] = json!(["console.z{who}.test"]);
                r
            }),
            [201, 403, 403, 403, 403],
        ),
        row(
            M::POST,
            "/api/v1/customers".into(),
            Some(json!({"name": "New {who}", "reseller_id": x})),
            [201, 201, 404, 403, 403],
        ),
        row(
            M::POST,
            "/api/v1/numbers".into(),
            Some(json!({"e164": "+4930999{who}00", "reseller_id": x})),
            [201, 403, 403, 403, 403],
        ),
        row(
            M::POST,
            "/api/v1/price-plans".into(),
            Some(json!({"name": "Plan {who}", "currency": "EUR",
            "extension_month_micros": 0, "number_month_micros": 0, "internal_calls_free": true})),
            [201, 201, 201, 403, 403],
        ),
        row(
            M::POST,
            "/api/v1/logins".into(),
            Some(json!({"email": "user{who}@acme.test",
            "password": "a long enough password", "role": "customer_user", "customer_id": a, "extension_id": ext})),
            [201, 201, 404, 201, 404],
        ),
        row(
            M::POST,
            "/api/v1/tokens".into(),
            Some(json!({"name": "t{who}", "level": "customer", "customer_id": a})),
            [201, 201, 404, 201, 404],
        ),
        row(
            M::POST,
            "/api/v1/webhooks".into(),
            Some(
                json!({"url": "https://h{who}.test/", "events": ["call_ended"],
            "customer_id": a}),
            ),
            [201, 201, 404, 201, 404],
        ),
        row(
            M::GET,
            format!("/api/v1/webhooks/{}", reseller_hook.id),
            None,
            [200, 200, 404, 404, 404],
        ),
        row(
            M::GET,
            format!("/api/v1/webhooks/{}/deliveries", reseller_hook.id),
            None,
            [200, 200, 404, 404, 404],
        ),
        row(
            M::GET,
            format!("/api/v1/customers/{a}/ring-groups"),
            None,
            ok,
        ),
        row(
            M::POST,
            format!("/api/v1/customers/{a}/ring-groups"),
            Some(
                json!({"number": "5{who}0", "name": "Sales", "strategy": "simultaneous", "members": [ext]}),
            ),
            [201, 201, 404, 201, 404],
        ),
        row(
            M::GET,
            format!("/api/v1/ring-groups/{}", group.id),
            None,
            ok,
        ),
        row(
            M::PUT,
            format!("/api/v1/ring-groups/{}", group.id),
            Some(
                json!({"number": "600", "name": "Support", "strategy": "sequential", "members": [ext]}),
            ),
            ok,
        ),
        row(
            M::GET,
            format!("/api/v1/customers/{a}/conference-rooms"),
            None,
            ok,
        ),
        row(
            M::POST,
            format!("/api/v1/customers/{a}/conference-rooms"),
            Some(json!({"number": "8{who}1", "name": "Room", "pin": "1234"})),
            [201, 201, 404, 201, 404],
        ),
        row(
            M::GET,
            format!("/api/v1/conference-rooms/{}", room.id),
            None,
            ok,
        ),
        row(
            M::PUT,
            format!("/api/v1/conference-rooms/{}", room.id),
            Some(json!({"number": "800", "name": "Board", "max_participants": 20})),
            ok,
        ),
        row(M::GET, format!("/api/v1/customers/{a}/ivr-menus"), None, ok),
        row(
            M::POST,
            format!("/api/v1/customers/{a}/ivr-menus"),
            Some(
                json!({"name": "Menu {who}", "options": [{"key": "#", "destination": {"kind": "voicemail", "id": ext}}]}),
            ),
            [201, 201, 404, 201, 404],
        ),
        row(M::GET, format!("/api/v1/ivr-menus/{}", menu.id), None, ok),
        row(
            M::PUT,
            format!("/api/v1/ivr-menus/{}", menu.id),
            Some(json!({"name": "Main", "tries": 2,
                "options": [{"key": "1", "destination": {"kind": "extension", "id": ext}}]})),
            ok,
        ),
        row(
            M::GET,
            format!("/api/v1/ivr-menus/{}/greeting", menu.id),
            None,
            [404, 404, 404, 404, 404],
        ),
        row(
            M::GET,
            format!("/api/v1/customers/{a}/business-hours"),
            None,
            ok,
        ),
        row(
            M::GET,
            format!("/api/v1/customers/{a}/call-recording"),
            None,
            ok,
        ),
        row(
            M::PUT,
            format!("/api/v1/customers/{a}/call-recording"),
            Some(json!({"retention_days": 30, "extensions": [ext], "numbers": [number.id]})),
            ok,
        ),
        row(
            M::GET,
            format!("/api/v1/customers/{a}/call-recordings"),
            None,
            ok,
        ),
        row(
            M::GET,
            format!("/api/v1/call-recordings/{recording}"),
            None,
            ok,
        ),
        row(
            M::GET,
            format!("/api/v1/call-recordings/{recording}/audio"),
            None,
            ok,
        ),
        row(
            M::POST,
            format!("/api/v1/customers/{a}/business-hours"),
            Some(json!({"name": "Hours {who}", "holidays": [{"date": "2026-12-24"}]})),
            [201, 201, 404, 201, 404],
        ),
        row(
            M::GET,
            format!("/api/v1/business-hours/{}", rule.id),
            None,
            ok,
        ),
        row(
            M::PUT,
            format!("/api/v1/business-hours/{}", rule.id),
            Some(
                json!({"name": "Office", "weekly": [{"day": 2, "open": "09:00", "close": "18:00"}]}),
            ),
            ok,
        ),
        row(
            M::GET,
            format!("/api/v1/business-hours/{}/state?at=1795000000000", rule.id),
            None,
            ok,
        ),
        // Limits: set from above only.
        row(M::GET, format!("/api/v1/customers/{a}/limits"), None, ok),
        row(
            M::PUT,
            format!("/api/v1/customers/{a}/limits"),
            Some(json!({"max_concurrent_outbound": 5, "allow_international": true})),
            [200, 200, 404, 403, 404],
        ),
        row(
            M::GET,
            format!("/api/v1/resellers/{x}/limits"),
            None,
            [200, 200, 404, 403, 404],
        ),
        row(
            M::PUT,
            format!("/api/v1/resellers/{x}/limits"),
            Some(json!({"max_spend_per_day_micros": 100000000})),
            [200, 403, 403, 403, 403],
        ),
        // Trunks: the operator's and each reseller's own; customers none.
        row(
            M::GET,
            "/api/v1/trunks".into(),
            None,
            [200, 200, 200, 403, 403],
        ),
        row(
            M::POST,
            format!("/api/v1/trunks?reseller_id={x}"),
            Some(json!({"name": "Carrier {who}", "host": "127.0.0.1", "auth_mode": "ip"})),
            [201, 201, 404, 404, 404],
        ),
        row(
            M::GET,
            format!("/api/v1/trunks/{}", trunk.id),
            None,
            [200, 200, 404, 403, 403],
        ),
        row(
            M::PUT,
            format!("/api/v1/trunks/{}", trunk.id),
            Some(
                json!({"name": "X carrier", "host": "127.0.0.2", "auth_mode": "ip", "priority": 5}),
            ),
            [200, 200, 404, 403, 403],
        ),
        row(
            M::PUT,
            format!("/api/v1/trunks/{}/routes", trunk.id),
            Some(json!([{"prefix": "49"}, {"prefix": "", "priority": 200}])),
            [200, 200, 404, 403, 403],
        ),
        row(
            M::GET,
            format!("/api/v1/trunks/{}/routes", trunk.id),
            None,
            [200, 200, 404, 403, 403],
        ),
        // Calls for numbers nobody holds: the operator's alone.
        row(
            M::GET,
            "/api/v1/unrouted-calls?limit=5".into(),
            None,
            [200, 403, 403, 403, 403],
        ),
        row(
            M::GET,
            "/api/v1/unrouted-calls?limit=0".into(),
            None,
            [422, 422, 422, 422, 422],
        ),
        // Scope-filtered read views: everyone gets an answer of their own.
        row(
            M::GET,
            "/api/v1/calls/active".into(),
            None,
            [200, 200, 200, 200, 200],
        ),
        row(
            M::GET,
            format!("/api/v1/call-records?customer_id={a}"),
            None,
            [200, 200, 200, 200, 200],
        ),
    ];
    run_matrix(&api, rows).await;

    // Deletes, each on an object of its own.
    let mut deletes = Vec::new();
    for who in MATRIX {
        let e = api
            .db
            .store
            .extensions()
            .create(
                &sys,
                a,
                &serde_json::from_value(
                    json!({"number": format!("30{}", who as u8), "display_name": ""}),
                )
                .unwrap(),
            )
            .await
            .unwrap();
        let (d, _) = api
            .db
            .store
            .devices()
            .create(
                &sys,
                ext,
                &serde_json::from_value(json!({"name": format!("gone {}", who as u8)})).unwrap(),
            )
            .await
            .unwrap();
        deletes.push((who, e.id, d.id));
    }
    for (who, e, d) in deletes {
        let expect = if matches!(who, Who::ResellerY | Who::CustomerB) {
            404
        } else {
            204
        };
        assert_eq!(
            api.delete(who, &format!("/api/v1/extensions/{e}"))
                .await
                .status,
            expect,
            "{who:?}"
        );
        // A deleted extension's devices are gone with it: 404, not an empty list.
        assert_eq!(
            api.get(who, &format!("/api/v1/extensions/{e}/devices"))
                .await
                .status,
            404,
            "{who:?}"
        );
        assert_eq!(
            api.delete(who, &format!("/api/v1/devices/{d}"))
                .await
                .status,
            expect,
            "{who:?}"
        );
    }
    // Per caller, on objects of their own: assigning and releasing numbers,
    // deleting webhooks and resellers.
    for who in MATRIX {
        let n = who as u8;
        let numbers = api.db.store.numbers();
        let free = numbers
            .create(&sys, &format!("+4940555{n}01"), Some(x))
            .await
            .unwrap();
        let held = numbers
            .create(&sys, &format!("+4940555{n}02"), Some(x))
            .await
            .unwrap();
        numbers.assign(&sys, held.id, a).await.unwrap();
        let assign = api
            .put(
                who,
                &format!("/api/v1/numbers/{}/customer", free.id),
                &json!({"customer_id": a}),
            )
            .await;
        let release = api
            .delete(who, &format!("/api/v1/numbers/{}/customer", held.id))
            .await;
        let (hook, _) = api
            .db
            .store
            .webhooks()
            .create(&sys, &serde_json::from_value(json!({"url": format!("https://d{n}.test/"), "events": ["call_ended"], "customer_id": a})).unwrap())
            .await
            .unwrap();
        let drop_hook = api
            .delete(who, &format!("/api/v1/webhooks/{}", hook.id))
            .await;
        let spare = api
            .db
            .store
            .resellers()
            .create(
                &sys,
                &pbx_store::testing::reseller_settings(&format!("Spare {n}")),
            )
            .await
            .unwrap();
        let drop_reseller = api
            .delete(who, &format!("/api/v1/resellers/{}", spare.id))
            .await;
        let expected = match who {
            Who::Operator | Who::ResellerX => [200, 200, 204],
            // Number assignment is a reseller's: a uniform 403 below, whatever the id.
            Who::CustomerA => [403, 403, 204],
            Who::CustomerB => [403, 403, 404],
            _ => [404, 404, 404],
        };
        assert_eq!(
            [
                assign.status.as_u16(),
                release.status.as_u16(),
                drop_hook.status.as_u16()
            ],
            expected,
            "{who:?}: {} {} {}",
            assign.text(),
            release.text(),
            drop_hook.text()
        );
        let reseller_expected = if who == Who::Operator { 204 } else { 403 };
        assert_eq!(
            drop_reseller.status.as_u16(),
            reseller_expected,
            "{who:?}: {}",
            drop_reseller.text()
        );
    }

    // Another tenant's token cannot be revoked; one's own can.
    assert_eq!(
        api.delete(Who::CustomerB, &format!("/api/v1/tokens/{}", token_a.id))
            .await
            .status,
        404
    );
}

async fn lists_show_only_the_callers_tenant(db: TestDb) {
    let api = Api::new(db).await;
    let t = &api.t;
    let ids = |v: &Value, key: &str| -> Vec<i64> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i[key].as_i64().unwrap())
            .collect()
    };
    let all = api.get(Who::Operator, "/api/v1/customers").await.json();
    assert_eq!(ids(&all, "id").len(), 2);
    let x = api.get(Who::ResellerX, "/api/v1/customers").await.json();
    assert_eq!(ids(&x, "id"), vec![t.customer_a.id.0]);
    let b = api.get(Who::CustomerB, "/api/v1/customers").await.json();
    assert_eq!(ids(&b, "id"), vec![t.customer_b.id.0]);
    let resellers = api.get(Who::ResellerY, "/api/v1/resellers").await.json();
    assert_eq!(ids(&resellers, "id"), vec![t.reseller_y.id.0]);
    // A customer sees its reseller, but not what the reseller buys at.
    let plan = api
        .db
        .store
        .price_plans()
        .create(
            &pbx_store::Principal::system(),
            None,
            &serde_json::from_value(json!({"name": "Wholesale", "currency": "EUR",
                "extension_month_micros": 0, "number_month_micros": 0, "internal_calls_free": true}))
            .unwrap(),
        )
        .await
        .unwrap();
    api.db
        .store
        .resellers()
        .set_wholesale_plan(
            &pbx_store::Principal::system(),
            t.reseller_x.id,
            Some(plan.id),
        )
        .await
        .unwrap();
    let seen = api
        .get(
            Who::CustomerA,
            &format!("/api/v1/resellers/{}", t.reseller_x.id),
        )
        .await
        .json();
    assert!(seen["wholesale_plan_id"].is_null(), "{seen}");
    let listed = api.get(Who::CustomerA, "/api/v1/resellers").await.json();
    assert!(listed["items"][0]["wholesale_plan_id"].is_null());
    let own = api
        .get(
            Who::ResellerX,
            &format!("/api/v1/resellers/{}", t.reseller_x.id),
        )
        .await
        .json();
    assert_eq!(own["wholesale_plan_id"], json!(plan.id));
    // Asking for the other reseller's customers by filter gives nothing.
    let other = api
        .get(
            Who::ResellerY,
            &format!("/api/v1/customers?reseller_id={}", t.reseller_x.id),
        )
        .await
        .json();
    assert!(ids(&other, "id").is_empty());
    let tokens = api.get(Who::CustomerA, "/api/v1/tokens").await.json();
    assert!(tokens["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|tk| tk["customer_id"] == json!(t.customer_a.id.0)));
    let logins = api.get(Who::ResellerX, "/api/v1/logins").await.json();
    for l in logins["items"].as_array().unwrap() {
        assert_ne!(l["email"], "admin@bolt.test");
        assert_ne!(l["email"], "y@reseller-y.test");
    }
}

async fn validation_errors_name_the_field(db: TestDb) {
    let api = Api::new(db).await;
    let a = api.t.customer_a.id;
    let cases: Vec<(Who, Method, String, Value, u16, &str)> = vec![
        (
            Who::CustomerA,
            Method::POST,
            format!("/api/v1/customers/{a}/extensions"),
            json!({"number": "", "display_name": "x"}),
            422,
            "number",
        ),
        (
            Who::CustomerA,
            Method::POST,
            format!("/api/v1/customers/{a}/extensions"),
            json!({"number": "205", "display_name": 5}),
            422,
            "display_name",
        ),
        (
            Who::ResellerX,
            Method::POST,
            "/api/v1/customers".into(),
            json!({"name": ""}),
            422,
            "name",
        ),
        (
            Who::Operator,
            Method::POST,
            "/api/v1/customers".into(),
            json!({"name": "No reseller"}),
            422,
            "reseller_id",
        ),
        (
            Who::Operator,
            Method::POST,
            "/api/v1/resellers".into(),
            json!({"name": "R"}),
            422,
            "",
        ),
        (
            Who::Operator,
            Method::POST,
            "/api/v1/numbers".into(),
            json!({"e164": "0301234"}),
            422,
            "e164",
        ),
        (
            Who::ResellerX,
            Method::POST,
            "/api/v1/tokens".into(),
            json!({"name": "t", "level": "reseller"}),
            422,
            "reseller_id",
        ),
        (
            Who::CustomerA,
            Method::POST,
            "/api/v1/logins".into(),
            json!({"email": "new@acme.test", "password": "short", "role": "customer_admin", "customer_id": a}),
            422,
            "password",
        ),
        (
            Who::ResellerX,
            Method::POST,
            "/api/v1/price-plans".into(),
            json!({"name": "P", "currency": "EURO", "extension_month_micros": 0, "number_month_micros": 0, "internal_calls_free": true}),
            422,
            "currency",
        ),
    ];
    for (who, method, uri, body, status, field) in cases {
        let answer = api.send(who, method.clone(), &uri, Some(&body), &[]).await;
        assert_eq!(
            answer.status.as_u16(),
            status,
            "{method} {uri} {body}: {}",
            answer.text()
        );
        assert_eq!(
            answer.header("content-type"),
            Some("application/problem+json")
        );
        let problem = answer.json();
        assert_eq!(problem["status"], json!(status));
        if !field.is_empty() {
            let fields: Vec<&str> = problem["errors"]
                .as_array()
                .unwrap_or_else(|| panic!("errors in {problem}"))
                .iter()
                .map(|e| e["field"].as_str().unwrap())
                .collect();
            assert!(
                fields.iter().any(|f| f.contains(field))
                    || problem["errors"].to_string().contains(field),
                "{uri}: {field} not in {problem}"
            );
        }
    }
    // A PUT with a bad time zone names it.
    let mut settings = serde_json::to_value(&api.t.customer_a).unwrap();
    settings["time_zone"] = json!("Mars/Olympus");
    let answer = api
        .put(Who::ResellerX, &format!("/api/v1/customers/{a}"), &settings)
        .await;
    assert_eq!(answer.status, 422);
    assert_eq!(answer.json()["errors"][0]["field"], "time_zone");

    // Malformed bodies, wrong media types, bad query strings and ids.
    let uri = format!("/api/v1/customers/{a}/extensions");
    let raw = |ct: &'static str, body: &'static str| {
        let api = &api;
        let uri = uri.clone();
        async move {
            let mut req = axum::http::Request::builder()
                .method(Method::POST)
                .uri(uri)
                .header(
                    "authorization",
                    format!("Bearer {}", api.token(Who::CustomerA).unwrap()),
                );
            if !ct.is_empty() {
                req = req.header("content-type", ct);
            }
            use tower::ServiceExt;
            api.router
                .clone()
                .oneshot(req.body(axum::body::Body::from(body)).unwrap())
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(raw("application/json", "{\"number\":").await, 400);
    assert_eq!(raw("text/plain", "{}").await, 415);
    assert_eq!(raw("", "{}").await, 415);
    assert_eq!(raw("application/json", "[1,2]").await, 422);
    for (q, status) in [
        ("/api/v1/call-records?limit=0", 422),
        ("/api/v1/call-records?limit=x", 400),
        ("/api/v1/call-records?direction=sideways", 400),
        ("/api/v1/call-records?cursor=zzz", 422),
        ("/api/v1/customers/abc", 400),
        ("/api/v1/customers/99999999", 404),
        ("/api/v1/extensions/99999999", 404),
        ("/api/v1/devices/99999999", 404),
        ("/api/v1/numbers/99999999", 404),
        ("/api/v1/price-plans/99999999", 404),
        ("/api/v1/tokens/99999999", 404),
        ("/api/v1/logins/99999999", 404),
        ("/api/v1/resellers/99999999", 404),
        ("/api/v1/customers/1/statement", 422),
        ("/api/v1/customers/1/statement?month=2026-13", 422),
    ] {
        let answer = api.get(Who::Operator, q).await;
        assert_eq!(answer.status.as_u16(), status, "{q}: {}", answer.text());
        assert_eq!(
            answer.header("content-type"),
            Some("application/problem+json"),
            "{q}"
        );
    }
    let missing = api.get(Who::Operator, "/api/v1/nothing-here").await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["type"], "urn:pbx:problem:no-route");
}

async fn authentication_and_read_only(db: TestDb) {
    let api = Api::new(db).await;
    let a = api.t.customer_a.id;
    let anonymous = api.get(Who::Anonymous, "/api/v1/customers").await;
    assert_eq!(anonymous.status, 401);
    assert!(anonymous
        .header("www-authenticate")
        .unwrap()
        .starts_with("Bearer"));
    for bad in [
        "Bearer nope",
        "Bearer pbx_0123456789abcdef_wrong",
        "Basic dXNlcjpwYXNz",
        "Bearer",
    ] {
        let answer = api
            .send(
                Who::Anonymous,
                Method::GET,
                "/api/v1/customers",
                None,
                &[("authorization", bad)],
            )
            .await;
        assert_eq!(answer.status, 401, "{bad}");
    }
    // The document needs no token.
    assert_eq!(
        api.get(Who::Anonymous, "/api/v1/openapi.json").await.status,
        200
    );
    // Read-only tokens read but never write.
    assert_eq!(
        api.get(
            Who::CustomerAReadOnly,
            &format!("/api/v1/customers/{a}/extensions")
        )
        .await
        .status,
        200
    );
    let write = api
        .post(
            Who::CustomerAReadOnly,
            &format!("/api/v1/customers/{a}/extensions"),
            &json!({"number": "250", "display_name": ""}),
        )
        .await;
    assert_eq!(write.status, 403);
    // A revoked token stops working at once.
    let created = api
        .post(
            Who::CustomerA,
            "/api/v1/tokens",
            &json!({"name": "script", "level": "customer", "customer_id": a}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text());
    assert_eq!(created.header("cache-control"), Some("no-store"));
    let body = created.json();
    let secret = body["secret"].as_str().unwrap().to_owned();
    let auth = format!("Bearer {secret}");
    let headers = [("authorization", auth.as_str())];
    assert_eq!(
        api.send(
            Who::Anonymous,
            Method::GET,
            "/api/v1/customers",
            None,
            &headers
        )
        .await
        .status,
        200
    );
    let id = body["token"]["id"].as_i64().unwrap();
    assert_eq!(
        api.delete(Who::CustomerA, &format!("/api/v1/tokens/{id}"))
            .await
            .status,
        200
    );
    assert_eq!(
        api.send(
            Who::Anonymous,
            Method::GET,
            "/api/v1/customers",
            None,
            &headers
        )
        .await
        .status,
        401
    );
    // A customer cannot mint a wider token.
    let wider = api
        .post(
            Who::CustomerA,
            "/api/v1/tokens",
            &json!({"name": "x", "level": "reseller", "reseller_id": api.t.reseller_x.id}),
        )
        .await;
    assert_eq!(wider.status, 403);
}

async fn token_lifetimes_follow_their_maker_and_tenant(db: TestDb) {
    let api = Api::new(db).await;
    let a = api.t.customer_a.id;
    let in_an_hour = pbx_store::now_ms() + 3_600_000;
    let made = api
        .post(Who::CustomerA, "/api/v1/tokens", &json!({"name": "parent", "level": "customer", "customer_id": a, "expires_at": in_an_hour}))
        .await
        .json();
    let parent = made["secret"].as_str().unwrap().to_owned();
    let parent_auth = format!("Bearer {parent}");
    let as_parent = [("authorization", parent_auth.as_str())];
    let child = api
        .send(
            Who::Anonymous,
            Method::POST,
            "/api/v1/tokens",
            Some(&json!({"name": "child", "level": "customer", "customer_id": a})),
            &as_parent,
        )
        .await;
    assert_eq!(child.status, 201, "{}", child.text());
    let child = child.json();
    assert_eq!(
        child["token"]["expires_at"],
        json!(in_an_hour),
        "a child never outlives its maker"
    );
    let later = api
        .send(Who::Anonymous, Method::POST, "/api/v1/tokens",
            Some(&json!({"name": "later", "level": "customer", "customer_id": a, "expires_at": in_an_hour + 1})), &as_parent)
        .await;
    assert_eq!(later.status, 422);
    // Revoking the maker revokes what it made.
    let parent_id = made["token"]["id"].as_i64().unwrap();
    assert_eq!(
        api.delete(Who::CustomerA, &format!("/api/v1/tokens/{parent_id}"))
            .await
            .status,
        200
    );
    let child_id = child["token"]["id"].as_i64().unwrap();
    assert!(!api
        .get(Who::CustomerA, &format!("/api/v1/tokens/{child_id}"))
        .await
        .json()["revoked_at"]
        .is_null());
    let child_auth = format!("Bearer {}", child["secret"].as_str().unwrap());
    let as_child = [("authorization", child_auth.as_str())];
    assert_eq!(
        api.send(
            Who::Anonymous,
            Method::GET,
            "/api/v1/customers",
            None,
            &as_child
        )
        .await
        .status,
        401
    );

    // A suspended customer's tokens stop working until it is reactivated.
    let status = format!("/api/v1/customers/{a}/status");
    assert_eq!(
        api.put(Who::ResellerX, &status, &json!({"status": "suspended"}))
            .await
            .status,
        200
    );
    assert_eq!(
        api.get(Who::CustomerA, "/api/v1/customers").await.status,
        401
    );
    assert_eq!(
        api.get(Who::ResellerX, "/api/v1/customers").await.status,
        200
    );
    assert_eq!(
        api.put(Who::ResellerX, &status, &json!({"status": "active"}))
            .await
            .status,
        200
    );
    assert_eq!(
        api.get(Who::CustomerA, "/api/v1/customers").await.status,
        200
    );
}

async fn console_sessions_sign_in_with_csrf_and_throttling(db: TestDb) {
    let api = Api::new(db).await;
    let a = api.t.customer_a.id;
    let sign_in = |email: &str, password: &str| json!({"email": email, "password": password});
    let wrong = api
        .send(
            Who::Anonymous,
            Method::POST,
            "/api/v1/session",
            Some(&sign_in("admin@acme.test", "wrong password!")),
            &[],
        )
        .await;
    assert_eq!(wrong.status, 401);
    let unknown = api
        .send(
            Who::Anonymous,
            Method::POST,
            "/api/v1/session",
            Some(&sign_in("nobody@acme.test", "wrong password!")),
            &[],
        )
        .await;
    assert_eq!(
        unknown.json()["type"],
        wrong.json()["type"],
        "no e-mail oracle"
    );
    let ok = api
        .send(
            Who::Anonymous,
            Method::POST,
            "/api/v1/session",
            Some(&sign_in("Admin@Acme.test", "a long enough password")),
            &[],
        )
        .await;
    assert_eq!(ok.status, 201, "{}", ok.text());
    let cookie = ok.header("set-cookie").unwrap().to_owned();
    for flag in [
        "__Host-session=",
        "HttpOnly",
        "Secure",
        "SameSite=Strict",
        "Path=/",
    ] {
        assert!(cookie.contains(flag), "{cookie}");
    }
    let session = cookie.split(';').next().unwrap().to_owned();
    let csrf = ok.json()["csrf_token"].as_str().unwrap().to_owned();
    let with_cookie = [("cookie", session.as_str())];
    // The session sees what its login may see, and nothing else.
    let mine = api
        .send(
            Who::Anonymous,
            Method::GET,
            "/api/v1/customers",
            None,
            &with_cookie,
        )
        .await;
    assert_eq!(mine.status, 200);
    assert_eq!(mine.json()["items"].as_array().unwrap().len(), 1);
    let other = format!("/api/v1/customers/{}", api.t.customer_b.id);
    assert_eq!(
        api.send(Who::Anonymous, Method::GET, &other, None, &with_cookie)
            .await
            .status,
        404
    );
    let me = api
        .send(
            Who::Anonymous,
            Method::GET,
            "/api/v1/session",
            None,
            &with_cookie,
        )
        .await;
    assert_eq!(me.json()["login"]["email"], "admin@acme.test");
    // Changes need the CSRF token.
    let uri = format!("/api/v1/customers/{a}/extensions");
    let body = json!({"number": "270", "display_name": "Via console"});
    let forged = api
        .send(
            Who::Anonymous,
            Method::POST,
            &uri,
            Some(&body),
            &with_cookie,
        )
        .await;
    assert_eq!(forged.status, 403);
    let bad_token = [("cookie", session.as_str()), ("x-csrf-token", "guess")];
    assert_eq!(
        api.send(Who::Anonymous, Method::POST, &uri, Some(&body), &bad_token)
            .await
            .status,
        403
    );
    let with_csrf = [
        ("cookie", session.as_str()),
        ("x-csrf-token", csrf.as_str()),
    ];
    assert_eq!(
        api.send(Who::Anonymous, Method::POST, &uri, Some(&body), &with_csrf)
            .await
            .status,
        201
    );
    // Signing out ends the session.
    let out = api
        .send(
            Who::Anonymous,
            Method::DELETE,
            "/api/v1/session",
            None,
            &with_csrf,
        )
        .await;
    assert_eq!(out.status, 204);
    assert!(out.header("set-cookie").unwrap().contains("Max-Age=0"));
    assert_eq!(
        api.send(
            Who::Anonymous,
            Method::GET,
            "/api/v1/customers",
            None,
            &with_cookie
        )
        .await
        .status,
        401
    );
    // Guessing is slowed down: ten tries, then 429 with Retry-After.
    let mut statuses = Vec::new();
    for _ in 0..12 {
        statuses.push(
            api.send(
                Who::Anonymous,
                Method::POST,
                "/api/v1/session",
                Some(&sign_in("user@acme.test", "guess guess")),
                &[],
            )
            .await,
        );
    }
    assert!(statuses[..10].iter().all(|r| r.status == 401));
    assert_eq!(statuses[11].status, 429);
    assert!(statuses[11].header("retry-after").is_some());
}

async fn etags_stop_lost_updates(db: TestDb) {
    let api = Api::new(db).await;
    let uri = format!("/api/v1/extensions/{}", api.t.extension_a.id);
    let first = api.get(Who::CustomerA, &uri).await;
    let etag = first.header("etag").unwrap().to_owned();
    let change = json!({"display_name": "Reception", "dnd": false});
    let missing = api
        .send(Who::CustomerA, Method::PUT, &uri, Some(&change), &[])
        .await;
    assert_eq!(missing.status, 428);
    let bad = api
        .send(
            Who::CustomerA,
            Method::PUT,
            &uri,
            Some(&change),
            &[("if-match", "v1")],
        )
        .await;
    assert_eq!(bad.status, 400);
    let done = api
        .send(
            Who::CustomerA,
            Method::PUT,
            &uri,
            Some(&change),
            &[("if-match", &etag)],
        )
        .await;
    assert_eq!(done.status, 200);
    let new_etag = done.header("etag").unwrap().to_owned();
    assert_ne!(new_etag, etag);
    assert_eq!(done.json()["display_name"], "Reception");
    // The second admin, still holding the first ETag, is stopped.
    let stale = api
        .send(
            Who::ResellerX,
            Method::PUT,
            &uri,
            Some(&json!({"display_name": "Lobby", "dnd": true})),
            &[("if-match", &etag)],
        )
        .await;
    assert_eq!(stale.status, 412);
    assert_eq!(
        api.get(Who::CustomerA, &uri).await.json()["display_name"],
        "Reception"
    );
    // Actions take If-Match when it is sent: a stale one is refused.
    let customer = format!("/api/v1/customers/{}", api.t.customer_a.id);
    let etag = api
        .get(Who::ResellerX, &customer)
        .await
        .header("etag")
        .unwrap()
        .to_owned();
    let status = format!("{customer}/status");
    let active = json!({"status": "active"});
    let ok = api
        .send(
            Who::ResellerX,
            Method::PUT,
            &status,
            Some(&active),
            &[("if-match", &etag)],
        )
        .await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    let again = api
        .send(
            Who::ResellerX,
            Method::PUT,
            &status,
            Some(&active),
            &[("if-match", &etag)],
        )
        .await;
    assert_eq!(again.status, 412, "the first change made the ETag stale");
    let plan = api
        .post(
            Who::ResellerX,
            "/api/v1/price-plans",
            &json!({"name": "P", "currency": "EUR",
            "extension_month_micros": 0, "number_month_micros": 0, "internal_calls_free": true}),
        )
        .await;
    let plan_etag = plan.header("etag").unwrap().to_owned();
    let rates = format!("/api/v1/price-plans/{}/rates", plan.json()["id"]);
    let table = json!([{"prefix": "49", "description": "Germany", "minute_micros": 10000,
        "connection_micros": 0, "first_increment_s": 60, "next_increment_s": 60, "minimum_micros": 0}]);
    let first = api
        .send(
            Who::ResellerX,
            Method::PUT,
            &rates,
            Some(&table),
            &[("if-match", &plan_etag)],
        )
        .await;
    assert_eq!(first.status, 200, "{}", first.text());
    let second = api
        .send(
            Who::ResellerX,
            Method::PUT,
            &rates,
            Some(&table),
            &[("if-match", &plan_etag)],
        )
        .await;
    assert_eq!(second.status, 412);
}

async fn idempotency_keys_make_creates_safe(db: TestDb) {
    let api = Api::new(db).await;
    let uri = format!("/api/v1/customers/{}/extensions", api.t.customer_a.id);
    let body = json!({"number": "260", "display_name": "Once"});
    let key = [("idempotency-key", "create-260")];
    let first = api
        .send(Who::CustomerA, Method::POST, &uri, Some(&body), &key)
        .await;
    assert_eq!(first.status, 201);
    let again = api
        .send(Who::CustomerA, Method::POST, &uri, Some(&body), &key)
        .await;
    assert_eq!(again.status, 201);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.json(), first.json());
    assert_eq!(again.header("location"), first.header("location"));
    let list = api.get(Who::CustomerA, &uri).await.json();
    let count = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["number"] == "260")
        .count();
    assert_eq!(count, 1);
    // The same key for another request is refused.
    let other = api
        .send(
            Who::CustomerA,
            Method::POST,
            &uri,
            Some(&json!({"number": "261", "display_name": ""})),
            &key,
        )
        .await;
    assert_eq!(other.status, 422);
    // A failed request does not use the key up.
    let key2 = [("idempotency-key", "create-bad")];
    let bad = json!({"number": "", "display_name": ""});
    assert_eq!(
        api.send(Who::CustomerA, Method::POST, &uri, Some(&bad), &key2)
            .await
            .status,
        422
    );
    assert_eq!(
        api.send(Who::CustomerA, Method::POST, &uri, Some(&bad), &key2)
            .await
            .status,
        422
    );
    // A device's password shown once is replayed to the same caller only.
    let devices = format!("/api/v1/extensions/{}/devices", api.t.extension_a.id);
    let key3 = [("idempotency-key", "dev-1")];
    let d1 = api
        .send(
            Who::CustomerA,
            Method::POST,
            &devices,
            Some(&json!({"name": "Phone"})),
            &key3,
        )
        .await;
    let d2 = api
        .send(
            Who::CustomerA,
            Method::POST,
            &devices,
            Some(&json!({"name": "Phone"})),
            &key3,
        )
        .await;
    assert_eq!(
        d1.json()["credentials"]["password"],
        d2.json()["credentials"]["password"]
    );
    let d3 = api
        .send(
            Who::ResellerX,
            Method::POST,
            &devices,
            Some(&json!({"name": "Phone"})),
            &key3,
        )
        .await;
    assert_eq!(d3.status, 201);
    assert_ne!(d3.json()["device"]["id"], d1.json()["device"]["id"]);
}

async fn cursors_walk_lists_and_records(db: TestDb) {
    let api = Api::new(db).await;
    let t = &api.t;
    let sys = Principal::system();
    for n in 0..5 {
        api.db
            .store
            .extensions()
            .create(
                &sys,
                t.customer_a.id,
                &serde_json::from_value(json!({"number": format!("4{n}0"), "display_name": ""}))
                    .unwrap(),
            )
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut uri = format!("/api/v1/customers/{}/extensions?limit=2", t.customer_a.id);
    loop {
        let page = api.get(Who::CustomerA, &uri).await.json();
        for e in page["items"].as_array().unwrap() {
            seen.push(e["id"].as_i64().unwrap());
        }
        match page["next_cursor"].as_str() {
            Some(c) => {
                uri = format!(
                    "/api/v1/customers/{}/extensions?limit=2&cursor={c}",
                    t.customer_a.id
                )
            }
            None => break,
        }
    }
    assert_eq!(seen.len(), 6);
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, seen);

    // Call records: each tenant sees its own, customers without wholesale prices.
    let record = |uid: &str,
                  reseller: &pbx_store::resellers::Reseller,
                  customer: &pbx_store::customers::Customer,
                  at: i64| {
        pbx_store::testing::answered_call(uid, reseller.id, customer.id, at, 60_000)
    };
    let base = 1_790_000_000_000;
    let mut records = Vec::new();
    for i in 0..5 {
        records.push(record(
            &format!("a{i}"),
            &t.reseller_x,
            &t.customer_a,
            base + i * 100_000,
        ));
    }
    records.push(record("b0", &t.reseller_y, &t.customer_b, base));
    api.db
        .store
        .call_records()
        .insert_batch(&sys, &records)
        .await
        .unwrap();
    let mut uids = Vec::new();
    let mut uri = "/api/v1/call-records?limit=2".to_owned();
    loop {
        let page = api.get(Who::CustomerA, &uri).await;
        assert_eq!(page.status, 200, "{}", page.text());
        let page = page.json();
        for r in page["items"].as_array().unwrap() {
            uids.push(r["record_uid"].as_str().unwrap().to_owned());
            assert!(
                r["wholesale"].is_null(),
                "customers never see wholesale prices: {r}"
            );
        }
        match page["next_cursor"].as_str() {
            Some(c) => uri = format!("/api/v1/call-records?limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(uids, vec!["a4", "a3", "a2", "a1", "a0"]);
    let b = api.get(Who::CustomerB, "/api/v1/call-records").await.json();
    assert_eq!(b["items"].as_array().unwrap().len(), 1);
    let ranged = api
        .get(
            Who::ResellerX,
            &format!(
                "/api/v1/call-records?from={}&to={}",
                base + 100_000,
                base + 300_000
            ),
        )
        .await
        .json();
    assert_eq!(ranged["items"].as_array().unwrap().len(), 2);
    // The customer's statement as CSV is a download.
    let csv = api
        .get(
            Who::CustomerA,
            &format!(
                "/api/v1/customers/{}/statement?from={base}&to={}&format=calls.csv",
                t.customer_a.id,
                base + 1_000_000
            ),
        )
        .await;
    assert_eq!(csv.status, 200);
    assert!(csv.header("content-type").unwrap().starts_with("text/csv"));
    assert!(csv
        .header("content-disposition")
        .unwrap()
        .contains("attachment"));
    assert_eq!(csv.text().lines().count(), 6, "{}", csv.text());
}

async fn rate_limits_answer_429(db: TestDb) {
    let api = Api::with_limit(db, RateLimit::new(1, 3)).await;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(api.get(Who::CustomerA, "/api/v1/customers").await);
    }
    assert!(statuses[..3].iter().all(|a| a.status == 200));
    let limited = &statuses[3];
    assert_eq!(limited.status, 429);
    assert_eq!(limited.header("retry-after"), Some("1"));
    assert_eq!(
        limited.header("content-type"),
        Some("application/problem+json")
    );
    // Another credential has its own allowance.
    assert_eq!(
        api.get(Who::CustomerB, "/api/v1/customers").await.status,
        200
    );
}

/// A 16-bit PCM WAV file of a `freq` Hz tone.
fn wav(rate: u32, channels: u16, seconds: f64, freq: f64) -> Vec<u8> {
    let frames = (f64::from(rate) * seconds) as u32;
    let data = frames * u32::from(channels) * 2;
    let mut w = Vec::new();
    w.extend_from_slice(b"RIFF");
    w.extend_from_slice(&(36 + data).to_le_bytes());
    w.extend_from_slice(b"WAVEfmt ");
    w.extend_from_slice(&16u32.to_le_bytes());
    w.extend_from_slice(&1u16.to_le_bytes());
    w.extend_from_slice(&channels.to_le_bytes());
    w.extend_from_slice(&rate.to_le_bytes());
    w.extend_from_slice(&(rate * u32::from(channels) * 2).to_le_bytes());
    w.extend_from_slice(&(channels * 2).to_le_bytes());
    w.extend_from_slice(&16u16.to_le_bytes());
    w.extend_from_slice(b"data");
    w.extend_from_slice(&data.to_le_bytes());
    for i in 0..frames {
        let t = f64::from(i) / f64::from(rate);
        let v = ((2.0 * std::f64::consts::PI * freq * t).sin() * 12_000.0) as i16;
        for _ in 0..channels {
            w.extend_from_slice(&v.to_le_bytes());
        }
    }
    w
}

async fn uploads_are_converted_checked_and_sealed(db: TestDb) {
    let api = Api::new(db).await;
    let (a, ext) = (api.t.customer_a.id, api.t.extension_a.id);
    let greeting = format!("/api/v1/extensions/{ext}/voicemail/greeting");
    let music = format!("/api/v1/customers/{a}/music-on-hold");
    let put = |who, uri: &str, body: Vec<u8>, kind: &'static str| {
        let uri = uri.to_owned();
        let api = &api;
        async move {
            api.send_raw(
                who,
                Method::PUT,
                &uri,
                Some(body),
                &[("content-type", kind)],
            )
            .await
        }
    };
    // Nothing uploaded: the platform's audio.
    assert_eq!(api.get(Who::CustomerA, &greeting).await.status, 404);
    // CD-quality stereo, two seconds: kept as 8 kHz mono.
    let cd = wav(44_100, 2, 2.0, 440.0);
    let answer = put(Who::CustomerA, &greeting, cd.clone(), "audio/wav").await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.json()["duration_ms"], 2000);
    let kept = api.get(Who::CustomerA, &greeting).await;
    assert_eq!(kept.status, 200);
    assert_eq!(kept.header("content-type"), Some("audio/wav"));
    let clip = pbx_media::audio::Clip::from_wav(&kept.bytes, 10).expect("a WAV");
    assert_eq!(clip.samples().len(), 16_000);
    assert!(pbx_media::audio::tone_power(clip.samples(), 440.0) > 1e6);
    let first = api
        .db
        .store
        .custom_audio()
        .greeting(&Principal::system(), ext)
        .await
        .unwrap()
        .expect("a key");
    // Bad uploads: refused with a problem, and nothing changes.
    for (body, kind, status) in [
        (b"hello".to_vec(), "text/plain", 415),
        (b"RIFF....WAVEjunk".to_vec(), "audio/wav", 422),
        (Vec::new(), "audio/wav", 422),
        (wav(8000, 1, 301.0, 440.0), "audio/wav", 422),
        (wav(8000, 1, 0.0, 440.0), "audio/wav", 422),
        (vec![0u8; 17 << 20], "audio/wav", 413),
    ] {
        let answer = put(Who::CustomerA, &greeting, body, kind).await;
        assert_eq!(answer.status, status, "{kind}: {}", answer.text());
        assert_eq!(
            answer.header("content-type"),
            Some("application/problem+json")
        );
        if status == 422 {
            assert_eq!(
                answer.json()["errors"][0]["field"],
                "audio",
                "{}",
                answer.text()
            );
        }
    }
    // Another tenant reaches nothing; a customer's user sets no music.
    for who in [Who::CustomerB, Who::ResellerY] {
        assert_eq!(
            put(who, &greeting, cd.clone(), "audio/wav").await.status,
            404
        );
        assert_eq!(put(who, &music, cd.clone(), "audio/wav").await.status, 404);
        assert_eq!(api.get(who, &greeting).await.status, 404);
        assert_eq!(api.delete(who, &music).await.status, 404);
    }
    // A new greeting replaces the old one, whose file goes.
    let answer = put(
        Who::ResellerX,
        &greeting,
        wav(16_000, 1, 1.0, 300.0),
        "audio/x-wav",
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert!(
        api.state.audio.read(&first).is_err(),
        "the replaced file is gone"
    );
    // Music: the admins'.
    assert_eq!(
        put(Who::CustomerA, &music, cd.clone(), "audio/wav")
            .await
            .status,
        200
    );
    assert_eq!(api.get(Who::CustomerA, &music).await.status, 200);
    assert_eq!(api.delete(Who::CustomerA, &music).await.status, 204);
    assert_eq!(api.get(Who::CustomerA, &music).await.status, 404);
    assert_eq!(api.delete(Who::CustomerA, &greeting).await.status, 204);
    assert_eq!(api.get(Who::CustomerA, &greeting).await.status, 404);
}

/// Menus through the API: options lead only to the customer's own
/// destinations, another customer reaches nothing of them, ETags stop lost
/// updates, a number leads to a menu, and the greeting is uploaded,
/// replaced and removed with the menu.
async fn ivr_menus_are_sealed_to_their_customer(db: TestDb) {
    let api = Api::new(db).await;
    let t = &api.t;
    let (a, b) = (t.customer_a.id, t.customer_b.id);
    let (ext_a, ext_b) = (t.extension_a.id, t.extension_b.id);
    let list = format!("/api/v1/customers/{a}/ivr-menus");
    let to = |kind: &str, id: i64| json!({"kind": kind, "id": id});
    let created = api
        .post(
            Who::CustomerA,
            &list,
            &json!({"name": "Reception", "timeout_s": 4, "direct_dial": true,
                "options": [{"key": "#", "destination": to("voicemail", ext_a.0)},
                            {"key": "1", "destination": to("extension", ext_a.0)}],
                "on_timeout": to("extension", ext_a.0)}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text());
    let menu = created.json();
    let id = menu["id"].as_i64().unwrap();
    let uri = format!("/api/v1/ivr-menus/{id}");
    assert_eq!(created.header("location"), Some(uri.as_str()));
    assert_eq!(menu["tries"], 3, "the default");
    assert_eq!(menu["has_greeting"], false);
    assert!(menu.get("greeting_audio").is_none());
    assert_eq!(menu["options"][0]["key"], "1", "digits first");
    assert_eq!(menu["on_timeout"], to("extension", ext_a.0));
    let listed = api.get(Who::CustomerA, &list).await.json();
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);

    // Bad settings name their field; another customer's extension is not
    // a destination of A's menu.
    for (body, field) in [
        (
            json!({"name": "X", "options": [{"key": "12", "destination": to("extension", ext_a.0)}]}),
            "options",
        ),
        (
            json!({"name": "X", "options": [{"key": "2", "destination": to("extension", ext_b.0)}]}),
            "options",
        ),
        (
            json!({"name": "X", "on_timeout": to("voicemail", ext_b.0)}),
            "on_timeout",
        ),
        (json!({"name": "X", "tries": 9}), "tries"),
        (json!({"name": ""}), "name"),
    ] {
        let refused = api.post(Who::CustomerA, &list, &body).await;
        assert_eq!(refused.status, 422, "{body}: {}", refused.text());
        assert_eq!(
            refused.json()["errors"][0]["field"],
            field,
            "{}",
            refused.text()
        );
    }
    let itself = api
        .put(
            Who::CustomerA,
            &uri,
            &json!({"name": "Reception", "options": [{"key": "9", "destination": to("ivr_menu", id)}]}),
        )
        .await;
    assert_eq!(itself.status, 422, "{}", itself.text());

    // Customer B's admin: A's menu is not there, and B's own menu cannot
    // lead to A's extension or to A's menu.
    let mine = json!({"name": "Mine"});
    assert_eq!(api.get(Who::CustomerB, &uri).await.status, 404);
    assert_eq!(api.get(Who::CustomerB, &list).await.status, 404);
    assert_eq!(api.put(Who::CustomerB, &uri, &mine).await.status, 404);
    assert_eq!(api.post(Who::CustomerB, &list, &mine).await.status, 404);
    assert_eq!(api.delete(Who::CustomerB, &uri).await.status, 404);
    assert_eq!(api.get(Who::ResellerY, &uri).await.status, 404);
    let theirs = format!("/api/v1/customers/{b}/ivr-menus");
    for destination in [to("extension", ext_a.0), to("ivr_menu", id)] {
        let refused = api
            .post(
                Who::CustomerB,
                &theirs,
                &json!({"name": "Mine", "options": [{"key": "1", "destination": destination}]}),
            )
            .await;
        assert_eq!(refused.status, 422, "{}", refused.text());
    }
    let own_b = api
        .post(Who::CustomerB, &theirs, &json!({"name": "Mine", "options": [{"key": "1", "destination": to("extension", ext_b.0)}]}))
        .await;
    assert_eq!(own_b.status, 201, "{}", own_b.text());

    // ETags: a change based on a stale one is stopped.
    let etag = api
        .get(Who::CustomerA, &uri)
        .await
        .header("etag")
        .unwrap()
        .to_owned();
    let change = json!({"name": "Reception", "tries": 2,
        "options": [{"key": "0", "destination": to("extension", ext_a.0)}]});
    let done = api
        .send(
            Who::CustomerA,
            Method::PUT,
            &uri,
            Some(&change),
            &[("if-match", &etag)],
        )
        .await;
    assert_eq!(done.status, 200, "{}", done.text());
    assert_eq!(done.json()["options"].as_array().unwrap().len(), 1);
    assert_eq!(
        done.json()["on_timeout"],
        Value::Null,
        "an option not given is gone"
    );
    let stale = api
        .send(
            Who::ResellerX,
            Method::PUT,
            &uri,
            Some(&change),
            &[("if-match", &etag)],
        )
        .await;
    assert_eq!(stale.status, 412);

    // A number of A's leads to the menu; B cannot point its own at it.
    let sys = Principal::system();
    let number = api
        .db
        .store
        .numbers()
        .create(&sys, "+4930777000", Some(t.reseller_x.id))
        .await
        .unwrap();
    api.db
        .store
        .numbers()
        .assign(&sys, number.id, a)
        .await
        .unwrap();
    let routing = format!("/api/v1/numbers/{}/destination", number.id);
    let routed = api
        .put(
            Who::CustomerA,
            &routing,
            &json!({"destination": to("ivr_menu", id)}),
        )
        .await;
    assert_eq!(routed.status, 200, "{}", routed.text());
    assert_eq!(routed.json()["destination"], to("ivr_menu", id));
    let number_b = api
        .db
        .store
        .numbers()
        .create(&sys, "+4930777001", Some(t.reseller_y.id))
        .await
        .unwrap();
    api.db
        .store
        .numbers()
        .assign(&sys, number_b.id, b)
        .await
        .unwrap();
    let refused = api
        .put(
            Who::CustomerB,
            &format!("/api/v1/numbers/{}/destination", number_b.id),
            &json!({"destination": to("ivr_menu", id)}),
        )
        .await;
    assert!(
        matches!(refused.status.as_u16(), 404 | 422),
        "{}",
        refused.text()
    );

    // The greeting: uploaded, kept as 8 kHz, replaced, gone with the menu.
    let greeting = format!("{uri}/greeting");
    let put_wav = |who, body: Vec<u8>| {
        let greeting = greeting.clone();
        let api = &api;
        async move {
            api.send_raw(
                who,
                Method::PUT,
                &greeting,
                Some(body),
                &[("content-type", "audio/wav")],
            )
            .await
        }
    };
    assert_eq!(api.get(Who::CustomerA, &greeting).await.status, 404);
    let saved = put_wav(Who::CustomerA, wav(16_000, 1, 1.0, 440.0)).await;
    assert_eq!(saved.status, 200, "{}", saved.text());
    assert_eq!(saved.json()["duration_ms"], 1000);
    let kept = api.get(Who::CustomerA, &greeting).await;
    assert_eq!(kept.header("content-type"), Some("audio/wav"));
    let clip = pbx_media::audio::Clip::from_wav(&kept.bytes, 10).expect("a WAV");
    assert_eq!(clip.samples().len(), 8_000);
    assert_eq!(
        api.get(Who::CustomerA, &uri).await.json()["has_greeting"],
        true
    );
    let key = |api: &Api| {
        let store = api.db.store.clone();
        async move {
            store
                .ivr_menus()
                .get(&Principal::system(), pbx_store::IvrMenuId(id))
                .await
                .unwrap()
                .greeting_audio
                .expect("a key")
        }
    };
    let first = key(&api).await;
    assert_eq!(
        put_wav(Who::CustomerB, wav(8000, 1, 1.0, 440.0))
            .await
            .status,
        404
    );
    assert_eq!(api.get(Who::CustomerB, &greeting).await.status, 404);
    assert_eq!(api.delete(Who::CustomerB, &greeting).await.status, 404);
    let refused = put_wav(Who::CustomerA, b"RIFF....WAVEjunk".to_vec()).await;
    assert_eq!(refused.status, 422);
    assert_eq!(refused.json()["errors"][0]["field"], "audio");
    let replaced = put_wav(Who::ResellerX, wav(8000, 1, 0.5, 300.0)).await;
    assert_eq!(replaced.status, 200, "{}", replaced.text());
    assert!(
        api.state.audio.read(&first).is_err(),
        "the replaced file is gone"
    );
    let second = key(&api).await;
    assert_eq!(api.delete(Who::CustomerA, &greeting).await.status, 204);
    assert_eq!(api.get(Who::CustomerA, &greeting).await.status, 404);
    assert!(api.state.audio.read(&second).is_err());
    assert_eq!(
        put_wav(Who::CustomerA, wav(8000, 1, 0.5, 300.0))
            .await
            .status,
        200
    );
    let third = key(&api).await;

    // Deleted: gone with its greeting, and the number leads nowhere.
    assert_eq!(api.delete(Who::CustomerA, &uri).await.status, 204);
    assert_eq!(api.get(Who::CustomerA, &uri).await.status, 404);
    assert!(
        api.state.audio.read(&third).is_err(),
        "the greeting went with the menu"
    );
    let number = api
        .get(Who::CustomerA, &format!("/api/v1/numbers/{}", number.id))
        .await;
    assert_eq!(number.json()["destination"], Value::Null);
}

pbx_store::both_engines!(
    ivr_menus_are_sealed_to_their_customer,
    uploads_are_converted_checked_and_sealed,
    authorisation_matrix,
    lists_show_only_the_callers_tenant,
    validation_errors_name_the_field,
    authentication_and_read_only,
    token_lifetimes_follow_their_maker_and_tenant,
    console_sessions_sign_in_with_csrf_and_throttling,
    etags_stop_lost_updates,
    idempotency_keys_make_creates_safe,
    cursors_walk_lists_and_records,
    rate_limits_answer_429,
);
