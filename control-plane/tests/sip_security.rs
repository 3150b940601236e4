//! The SIP abuse defence over the API, on SQLite and PostgreSQL: bans the
//! SIP nodes stored, seen and lifted only by whom they concern; the allow
//! list; account protections; a reseller's thresholds. Tried from the
//! attacker's side: another reseller's and another customer's tokens get
//! 404 for everything of A, and nonsense gets problem+json.

mod support;

use pbx_store::abuse::{BanReason, NewBan, NewProtection};
use pbx_store::net::Source;
use pbx_store::testing::TestDb;
use pbx_store::Principal;
use serde_json::json;
use support::{Api, Who};

const HOUR: i64 = 3_600_000;

async fn a_ban_about_customer_a(api: &Api) -> i64 {
    let now = pbx_store::now_ms();
    api.db
        .store
        .sip_bans()
        .record(
            &Principal::system(),
            &NewBan {
                source: Source::parse("192.0.2.66").expect("source"),
                reason: BanReason::AuthFailures,
                level: 1,
                failures: 5,
                reseller: Some(api.t.reseller_x.id),
                customer: Some(api.t.customer_a.id),
                node_id: "sip-1".into(),
                banned_at: now,
                until: now + HOUR,
            },
        )
        .await
        .expect("ban")
}

async fn bans_are_listed_and_lifted_by_whom_they_concern(db: TestDb) {
    let api = Api::new(db).await;
    let id = a_ban_about_customer_a(&api).await;
    for who in [Who::Operator, Who::ResellerX, Who::CustomerA] {
        let list = api.get(who, "/api/v1/sip-bans").await;
        assert_eq!(list.status, 200, "{who:?}");
        let bans = list.json();
        assert_eq!(bans[0]["source"], "192.0.2.66", "{who:?}");
        assert_eq!(bans[0]["reason"], "auth_failures");
        assert_eq!(bans[0]["active"], true);
    }
    for who in [Who::ResellerY, Who::CustomerB] {
        assert_eq!(
            api.get(who, "/api/v1/sip-bans").await.json(),
            json!([]),
            "{who:?}"
        );
        assert_eq!(
            api.get(who, &format!("/api/v1/sip-bans/{id}")).await.status,
            404
        );
        let lift = api
            .post(who, &format!("/api/v1/sip-bans/{id}/lift"), &json!({}))
            .await;
        assert_eq!(lift.status, 404, "{who:?}");
        assert_eq!(
            lift.header("content-type"),
            Some("application/problem+json")
        );
    }
    assert_eq!(
        api.post(
            Who::CustomerAReadOnly,
            &format!("/api/v1/sip-bans/{id}/lift"),
            &json!({})
        )
        .await
        .status,
        403
    );
    assert_eq!(
        api.get(Who::Anonymous, "/api/v1/sip-bans").await.status,
        401
    );
    assert_eq!(
        api.get(Who::Operator, "/api/v1/sip-bans?limit=0")
            .await
            .status,
        422
    );
    assert_eq!(
        api.get(Who::Operator, "/api/v1/sip-bans?active=perhaps")
            .await
            .status,
        400
    );
    let lifted = api
        .post(
            Who::CustomerA,
            &format!("/api/v1/sip-bans/{id}/lift"),
            &json!({}),
        )
        .await;
    assert_eq!(lifted.status, 200, "{}", lifted.text());
    assert_eq!(lifted.json()["active"], false);
    let again = api
        .post(
            Who::CustomerA,
            &format!("/api/v1/sip-bans/{id}/lift"),
            &json!({}),
        )
        .await;
    assert_eq!(again.status, 409);
    assert_eq!(
        api.get(Who::Operator, "/api/v1/sip-bans").await.json(),
        json!([])
    );
    let history = api
        .get(Who::Operator, "/api/v1/sip-bans?active=false")
        .await
        .json();
    assert_eq!(history[0]["id"], id);
    assert!(history[0]["lifted_by"]
        .as_str()
        .is_some_and(|b| b.starts_with("token:")));
}

async fn the_allow_list_is_the_operators_and_each_customers_own(db: TestDb) {
    let api = Api::new(db).await;
    let a = api.t.customer_a.id.0;
    let office = api
        .post(
            Who::CustomerA,
            "/api/v1/sip-allow-list",
            &json!({"block": "198.51.100.7", "note": "Office Berlin", "customer_id": a}),
        )
        .await;
    assert_eq!(office.status, 201, "{}", office.text());
    assert_eq!(office.json()["block"], "198.51.100.7/32");
    let office_id = office.json()["id"].as_i64().expect("id");
    // Nobody else may put addresses on customer A's list or the platform's.
    for who in [Who::ResellerY, Who::CustomerB] {
        let forged = api
            .post(
                who,
                "/api/v1/sip-allow-list",
                &json!({"block": "203.0.113.9", "customer_id": a}),
            )
            .await;
        assert_eq!(forged.status, 404, "{who:?}");
        assert_eq!(
            api.delete(who, &format!("/api/v1/sip-allow-list/{office_id}"))
                .await
                .status,
            404
        );
        assert_eq!(
            api.get(who, "/api/v1/sip-allow-list").await.json(),
            json!([])
        );
    }
    for who in [Who::ResellerX, Who::CustomerA] {
        let platform = api
            .post(
                who,
                "/api/v1/sip-allow-list",
                &json!({"block": "0.0.0.0/0"}),
            )
            .await;
        assert_eq!(platform.status, 403, "{who:?}");
    }
    let wide = api
        .post(
            Who::CustomerA,
            "/api/v1/sip-allow-list",
            &json!({"block": "10.0.0.0/8", "customer_id": a}),
        )
        .await;
    assert_eq!(wide.status, 422);
    assert_eq!(wide.json()["errors"][0]["field"], "block");
    let junk = api
        .post(
            Who::Operator,
            "/api/v1/sip-allow-list",
            &json!({"block": "example.net"}),
        )
        .await;
    assert_eq!(junk.status, 422);
    let monitoring = api
        .post(
            Who::Operator,
            "/api/v1/sip-allow-list",
            &json!({"block": "192.0.2.0/28", "note": "Nagios"}),
        )
        .await;
    assert_eq!(monitoring.status, 201);
    assert_eq!(
        api.get(Who::Operator, "/api/v1/sip-allow-list")
            .await
            .json()
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    assert_eq!(
        api.get(Who::ResellerX, "/api/v1/sip-allow-list")
            .await
            .json()
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    assert_eq!(
        api.delete(
            Who::ResellerX,
            &format!("/api/v1/sip-allow-list/{office_id}")
        )
        .await
        .status,
        204
    );
}

async fn protections_are_shown_to_the_customer_and_lifted(db: TestDb) {
    let api = Api::new(db).await;
    let now = pbx_store::now_ms();
    let id = api
        .db
        .store
        .account_protections()
        .record(
            &Principal::system(),
            &NewProtection {
                reseller: api.t.reseller_x.id,
                customer: api.t.customer_a.id,
                device: api.t.device_a.id,
                sip_user: api.t.device_a.sip_user.clone(),
                failures: 14,
                sources: 14,
                node_id: "sip-1".into(),
                since: now,
                until: now + HOUR,
            },
        )
        .await
        .expect("store")
        .expect("device");
    let a = api.t.customer_a.id.0;
    let seen = api
        .get(
            Who::ResellerX,
            &format!("/api/v1/account-protections?customer_id={a}"),
        )
        .await;
    assert_eq!(seen.status, 200);
    assert_eq!(seen.json()[0]["device_id"], api.t.device_a.id.0);
    assert_eq!(seen.json()[0]["failures"], 14);
    assert_eq!(
        api.get(
            Who::ResellerY,
            &format!("/api/v1/account-protections?customer_id={a}")
        )
        .await
        .status,
        404
    );
    assert_eq!(
        api.get(Who::CustomerB, "/api/v1/account-protections")
            .await
            .json(),
        json!([])
    );
    assert_eq!(
        api.post(
            Who::CustomerB,
            &format!("/api/v1/account-protections/{id}/lift"),
            &json!({})
        )
        .await
        .status,
        404
    );
    let lifted = api
        .post(
            Who::CustomerA,
            &format!("/api/v1/account-protections/{id}/lift"),
            &json!({}),
        )
        .await;
    assert_eq!(lifted.status, 200, "{}", lifted.text());
    assert_eq!(lifted.json()["active"], false);
    assert_eq!(
        api.get(Who::CustomerA, "/api/v1/account-protections")
            .await
            .json(),
        json!([])
    );
}

async fn resellers_tune_their_thresholds(db: TestDb) {
    let api = Api::new(db).await;
    let x = api.t.reseller_x.id.0;
    let uri = format!("/api/v1/resellers/{x}/sip-guard");
    assert_eq!(
        api.get(Who::ResellerX, &uri).await.json(),
        json!({"auth_failures": null, "account_failures": null})
    );
    let set = api
        .put(
            Who::ResellerX,
            &uri,
            &json!({"auth_failures": 3, "account_failures": null}),
        )
        .await;
    assert_eq!(set.status, 200, "{}", set.text());
    assert_eq!(set.json()["auth_failures"], 3);
    let bad = api
        .put(Who::Operator, &uri, &json!({"auth_failures": 1}))
        .await;
    assert_eq!(bad.status, 422);
    assert_eq!(bad.json()["errors"][0]["field"], "auth_failures");
    for who in [Who::ResellerY, Who::CustomerB] {
        assert_eq!(api.get(who, &uri).await.status, 404, "{who:?}");
        assert_eq!(
            api.put(who, &uri, &json!({"auth_failures": 100}))
                .await
                .status,
            404,
            "{who:?}"
        );
    }
    assert_eq!(
        api.put(Who::CustomerA, &uri, &json!({"auth_failures": 100}))
            .await
            .status,
        403
    );
}

async fn resellers_set_toll_fraud_alarms_and_admins_approve_destinations(db: TestDb) {
    let api = Api::new(db).await;
    let a = api.t.customer_a.id.0;
    let uri = format!("/api/v1/customers/{a}/fraud-alarms");
    let defaults = api.get(Who::CustomerA, &uri).await;
    assert_eq!(defaults.status, 200, "{}", defaults.text());
    assert_eq!(defaults.json()["new_destination"], "warn");
    assert_eq!(defaults.json()["burst_calls"], 10);
    let strict = json!({
        "new_destination": "block", "burst": "block", "burst_calls": 5,
        "burst_window_s": 60, "after_hours": "off", "after_hours_rule_id": null
    });
    // The customer whose phones might be taken over cannot loosen them;
    // other tenants do not see the customer at all.
    assert_eq!(api.put(Who::CustomerA, &uri, &strict).await.status, 403);
    for who in [Who::ResellerY, Who::CustomerB] {
        assert_eq!(api.get(who, &uri).await.status, 404, "{who:?}");
        assert_eq!(api.put(who, &uri, &strict).await.status, 404, "{who:?}");
    }
    let set = api.put(Who::ResellerX, &uri, &strict).await;
    assert_eq!(set.status, 200, "{}", set.text());
    assert_eq!(api.get(Who::CustomerA, &uri).await.json(), strict);
    let mut bad = strict.clone();
    bad["after_hours"] = json!("block");
    let refused = api.put(Who::Operator, &uri, &bad).await;
    assert_eq!(refused.status, 422);
    assert_eq!(refused.json()["errors"][0]["field"], "after_hours_rule_id");
    bad["after_hours"] = json!("sometimes");
    assert_eq!(api.put(Who::Operator, &uri, &bad).await.status, 422);

    let device = api.t.device_a.id.0;
    let known = format!("/api/v1/devices/{device}/known-destinations");
    assert_eq!(api.get(Who::CustomerA, &known).await.json(), json!([]));
    let approved = api
        .post(Who::CustomerA, &known, &json!({"destination": "44"}))
        .await;
    assert_eq!(approved.status, 200, "{}", approved.text());
    assert_eq!(approved.json()[0]["destination"], "44");
    assert!(approved.json()[0]["approved_by"].is_string());
    let nonsense = api
        .post(Who::CustomerA, &known, &json!({"destination": "+44 20"}))
        .await;
    assert_eq!(nonsense.status, 422);
    for who in [Who::ResellerY, Who::CustomerB] {
        assert_eq!(api.get(who, &known).await.status, 404, "{who:?}");
        assert_eq!(
            api.post(who, &known, &json!({"destination": "882"}))
                .await
                .status,
            404,
            "{who:?}"
        );
    }
}

/// Anchoring choices: the reseller's for its customers, a customer's own
/// (set by its reseller), both seen by the directory the SIP nodes load.
async fn resellers_choose_media_anchoring(db: TestDb) {
    let api = Api::new(db).await;
    let x = api.t.reseller_x.id.0;
    let a = api.t.customer_a.id.0;
    let of_x = format!("/api/v1/resellers/{x}/media-anchor");
    let of_a = format!("/api/v1/customers/{a}/media-anchor");
    assert_eq!(
        api.get(Who::ResellerX, &of_x).await.json(),
        json!({"anchor": null})
    );
    let set = api
        .put(Who::ResellerX, &of_x, &json!({"anchor": "always"}))
        .await;
    assert_eq!(set.status, 200, "{}", set.text());
    assert_eq!(set.json()["anchor"], "always");
    let dir = |store: pbx_store::Store, id| async move {
        store
            .directory()
            .customer(&Principal::system(), id)
            .await
            .expect("directory")
            .and_then(|d| d.media_anchor)
    };
    use pbx_store::media::AnchorMode;
    assert_eq!(
        dir(api.db.store.clone(), api.t.customer_a.id).await,
        Some(AnchorMode::Always)
    );
    let own = api
        .put(Who::ResellerX, &of_a, &json!({"anchor": "never"}))
        .await;
    assert_eq!(own.status, 200, "{}", own.text());
    assert_eq!(
        api.get(Who::CustomerA, &of_a).await.json(),
        json!({"anchor": "never"})
    );
    assert_eq!(
        dir(api.db.store.clone(), api.t.customer_a.id).await,
        Some(AnchorMode::Never)
    );
    // The customer may look, not choose (relay capacity is its reseller's to spend).
    assert_eq!(
        api.put(Who::CustomerA, &of_a, &json!({"anchor": "always"}))
            .await
            .status,
        403
    );
    let nonsense = api
        .put(Who::Operator, &of_a, &json!({"anchor": "sometimes"}))
        .await;
    assert_eq!(nonsense.status, 422, "{}", nonsense.text());
    for who in [Who::ResellerY, Who::CustomerB] {
        for uri in [&of_x, &of_a] {
            assert_eq!(api.get(who, uri).await.status, 404, "{who:?} {uri}");
            assert_eq!(
                api.put(who, uri, &json!({"anchor": null})).await.status,
                404,
                "{who:?} {uri}"
            );
        }
    }
}

pbx_store::both_engines!(
    resellers_choose_media_anchoring,
    resellers_set_toll_fraud_alarms_and_admins_approve_destinations,
    bans_are_listed_and_lifted_by_whom_they_concern,
    the_allow_list_is_the_operators_and_each_customers_own,
    protections_are_shown_to_the_customer_and_lifted,
    resellers_tune_their_thresholds,
);
