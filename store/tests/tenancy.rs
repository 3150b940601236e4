//! Tenant isolation from the attacker's side, and the behaviour around it
//! (tokens, versions, credentials, change notification), on both engines.

use std::time::Duration;

use pbx_store::api_tokens::{NewToken, TokenLevel};
use pbx_store::changes::Change;
use pbx_store::customers::CustomerSettings;
use pbx_store::devices::NewDevice;
use pbx_store::extensions::{ExtensionSettings, NewExtension};
use pbx_store::resellers::Status;
use pbx_store::secrets::DigestHa1;
use pbx_store::testing::{TestDb, TwoTenants};
use pbx_store::{Principal, StoreError};

fn not_found<T: std::fmt::Debug>(r: Result<T, StoreError>) {
    assert!(
        matches!(r, Err(StoreError::NotFound)),
        "expected NotFound, got {r:?}"
    );
}

async fn reseller_cannot_read_another_resellers_customer(db: TestDb) {
    let t = TwoTenants::create(&db.store).await;
    let s = &db.store;
    not_found(
        s.customers()
            .get(&t.reseller_x_admin, t.customer_b.id)
            .await,
    );
    let seen = s
        .customers()
        .list(&t.reseller_x_admin, None)
        .await
        .expect("list");
    assert_eq!(
        seen.iter().map(|c| c.id).collect::<Vec<_>>(),
        vec![t.customer_a.id]
    );
    let seen = s
        .customers()
        .list(&t.reseller_x_admin, Some(t.reseller_y.id))
        .await
        .expect("list");
    assert!(
        seen.is_empty(),
        "filtering by another reseller must show nothing"
    );
    not_found(
        s.resellers()
            .get(&t.reseller_x_admin, t.reseller_y.id)
            .await,
    );
    assert_eq!(
        s.resellers()
            .list(&t.reseller_x_admin)
            .await
            .expect("list")
            .len(),
        1
    );
    not_found(
        s.extensions()
            .get(&t.reseller_x_admin, t.extension_b.id)
            .await,
    );
    not_found(s.devices().get(&t.reseller_x_admin, t.device_b.id).await);
    not_found(
        s.devices()
            .credentials(&t.reseller_x_admin, t.device_b.id)
            .await,
    );
    // Writing into the other reseller is the same "not found".
    let new = pbx_store::customers::NewCustomer {
        name: "Intruder".into(),
        ..Default::default()
    };
    not_found(
        s.customers()
            .create(&t.reseller_x_admin, t.reseller_y.id, &new)
            .await,
    );
    not_found(
        s.customers()
            .set_status(&t.reseller_x_admin, t.customer_b.id, Status::Suspended)
            .await,
    );
    let ext = NewExtension {
        number: "555".into(),
        display_name: "x".into(),
    };
    not_found(
        s.extensions()
            .create(&t.reseller_x_admin, t.customer_b.id, &ext)
            .await,
    );
}

async fn customer_admin_is_sealed_in_its_customer(db: TestDb) {
    let t = TwoTenants::create(&db.store).await;
    let s = &db.store;
    let a = &t.customer_a_admin;
    not_found(s.customers().get(a, t.customer_b.id).await);
    assert!(s
        .extensions()
        .list(a, t.customer_b.id)
        .await
        .expect("list")
        .is_empty());
    not_found(s.extensions().delete(a, t.extension_b.id).await);
    not_found(s.devices().reset_secret(a, t.device_b.id, None).await);
    not_found(s.devices().delete(a, t.device_b.id).await);
    not_found(s.logins().find_by_email(a, "admin@bolt.test").await);
    // Its own reseller's settings are readable (for branding), not writable.
    let own = s
        .resellers()
        .get(a, t.reseller_x.id)
        .await
        .expect("own reseller");
    let mut settings = pbx_store::testing::reseller_settings("Reseller X");
    settings.brand.product_name = "Hijacked".into();
    settings.console_hosts = own.console_hosts.clone();
    let err = s
        .resellers()
        .update(a, t.reseller_x.id, None, &settings)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Forbidden(_)), "{err:?}");
    // A customer admin cannot raise a login above its level.
    let err = s
        .logins()
        .create(
            a,
            &pbx_store::logins::NewLogin {
                email: "evil@acme.test".into(),
                password: "a long enough password".into(),
                role: pbx_store::logins::Role::ResellerAdmin,
                reseller_id: Some(t.reseller_x.id),
                customer_id: None,
                extension_id: None,
                display_name: String::new(),
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Forbidden(_)), "{err:?}");
}

async fn customer_user_sees_only_its_own_extension(db: TestDb) {
    let t = TwoTenants::create(&db.store).await;
    let s = &db.store;
    let admin = Principal::system();
    let other = s
        .extensions()
        .create(
            &admin,
            t.customer_a.id,
            &NewExtension {
                number: "102".into(),
                display_name: "Other".into(),
            },
        )
        .await
        .expect("second extension");
    let (other_device, _) = s
        .devices()
        .create(
            &admin,
            other.id,
            &NewDevice {
                name: "Other".into(),
                ..Default::default()
            },
        )
        .await
        .expect("device");
    let u = &t.customer_a_user;
    let listed = s.extensions().list(u, t.customer_a.id).await.expect("list");
    assert_eq!(
        listed.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![t.extension_a.id]
    );
    not_found(s.extensions().get(u, other.id).await);
    not_found(s.devices().credentials(u, other_device.id).await);
    // Its own do-not-disturb and device password are its to change.
    let updated = s
        .extensions()
        .update(
            u,
            t.extension_a.id,
            None,
            &ExtensionSettings {
                display_name: "Me".into(),
                dnd: true,
            },
        )
        .await
        .expect("own dnd");
    assert!(updated.dnd);
    let creds = s
        .devices()
        .reset_secret(u, t.device_a.id, None)
        .await
        .expect("own reset");
    assert_eq!(
        s.devices()
            .credentials(u, t.device_a.id)
            .await
            .expect("read")
            .password,
        creds.password
    );
    // Administration is not.
    let err = s
        .extensions()
        .create(
            u,
            t.customer_a.id,
            &NewExtension {
                number: "199".into(),
                display_name: "x".into(),
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Forbidden(_)), "{err:?}");
    assert!(matches!(
        s.audit().list(u, None, 10).await,
        Err(StoreError::Forbidden(_))
    ));
}

async fn tokens_carry_scope_and_limits(db: TestDb) {
    let t = TwoTenants::create(&db.store).await;
    let tokens = db.store.api_tokens();
    let new = |level, reseller, customer, read_only| NewToken {
        name: "integration".into(),
        level,
        reseller_id: reseller,
        customer_id: customer,
        read_only,
        expires_at: None,
    };
    let (_, text) = tokens
        .create(
            &t.reseller_x_admin,
            &new(TokenLevel::Reseller, Some(t.reseller_x.id), None, false),
        )
        .await
        .expect("reseller token");
    let p = tokens
        .authenticate(&text)
        .await
        .expect("auth")
        .expect("valid token");
    assert_eq!(
        p.scope,
        pbx_store::Scope::Reseller {
            reseller: t.reseller_x.id
        }
    );
    not_found(db.store.customers().get(&p, t.customer_b.id).await);
    // Tampered, truncated and foreign-format tokens are all just invalid.
    for bad in [
        format!("{text}x"),
        text[..text.len() - 1].to_owned(),
        "Bearer nonsense".into(),
        "pbx__".into(),
        String::new(),
    ] {
        assert!(
            tokens.authenticate(&bad).await.expect("auth").is_none(),
            "{bad:?}"
        );
    }
    // Wider than the creator, or in another tenant: refused.
    let err = tokens
        .create(
            &t.reseller_x_admin,
            &new(TokenLevel::Operator, None, None, false),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Forbidden(_)), "{err:?}");
    not_found(
        tokens
            .create(
                &t.customer_a_admin,
                &new(TokenLevel::Customer, None, Some(t.customer_b.id), false),
            )
            .await,
    );
    // Read-only tokens cannot write.
    let (ro, ro_text) = tokens
        .create(
            &t.customer_a_admin,
            &new(TokenLevel::Customer, None, Some(t.customer_a.id), true),
        )
        .await
        .expect("read-only token");
    let rp = tokens
        .authenticate(&ro_text)
        .await
        .expect("auth")
        .expect("valid");
    assert!(rp.read_only);
    let err = db
        .store
        .extensions()
        .create(
            &rp,
            t.customer_a.id,
            &NewExtension {
                number: "300".into(),
                display_name: "x".into(),
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Forbidden(_)), "{err:?}");
    // Revoked: gone. Reseller Y cannot revoke or see X's tokens.
    not_found(tokens.revoke(&t.reseller_y_admin, ro.id).await);
    tokens
        .revoke(&t.customer_a_admin, ro.id)
        .await
        .expect("revoke");
    assert!(tokens.authenticate(&ro_text).await.expect("auth").is_none());
    assert!(tokens
        .list(&t.reseller_y_admin)
        .await
        .expect("list")
        .is_empty());
}

async fn stale_versions_are_refused(db: TestDb) {
    let t = TwoTenants::create(&db.store).await;
    let s = &db.store;
    let settings = ExtensionSettings {
        display_name: "One".into(),
        dnd: false,
    };
    let v = t.extension_a.version;
    s.extensions()
        .update(&t.customer_a_admin, t.extension_a.id, Some(v), &settings)
        .await
        .expect("first writer");
    let err = s
        .extensions()
        .update(&t.customer_a_admin, t.extension_a.id, Some(v), &settings)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::VersionMismatch), "{err:?}");
}

async fn a_new_sip_domain_recomputes_every_ha1(db: TestDb) {
    let t = TwoTenants::create(&db.store).await;
    let s = &db.store;
    let creds = s
        .devices()
        .credentials(&t.customer_a_admin, t.device_a.id)
        .await
        .expect("credentials");
    let c = &t.customer_a;
    let settings = CustomerSettings {
        name: c.name.clone(),
        sip_domain: "renamed.voice.reseller-x.test".into(),
        country: c.country.clone(),
        time_zone: c.time_zone.clone(),
        language: c.language.clone(),
        retail_plan_id: None,
    };
    s.customers()
        .update(&t.reseller_x_admin, c.id, None, &settings)
        .await
        .expect("rename domain");
    let dir = s
        .directory()
        .customer(&Principal::system(), c.id)
        .await
        .expect("load")
        .expect("exists");
    let device = &dir.devices[0];
    assert_eq!(device.ha1_realm, settings.sip_domain);
    let expected = DigestHa1::compute(&creds.sip_user, &settings.sip_domain, &creds.password);
    assert_eq!(
        (device.ha1_md5.as_str(), device.ha1_sha256.as_str()),
        (expected.md5.as_str(), expected.sha256.as_str())
    );
    // The secret itself is not stored in clear anywhere in the row.
    let raw = format!(
        "SELECT COUNT(*) AS n FROM devices WHERE secret_enc LIKE '%{0}%' OR ha1_md5 LIKE '%{0}%'",
        creds.password
    );
    assert_eq!(db.count(&raw).await, 0);
}

async fn directory_follows_status_and_changes_are_announced(db: TestDb) {
    let t = TwoTenants::create(&db.store).await;
    let s = &db.store;
    let mut changes = s.changes().subscribe();
    // On PostgreSQL the listener connects asynchronously; give it its first
    // Resync before counting on notifications.
    if s.engine() == pbx_store::Engine::Postgres {
        let first = tokio::time::timeout(Duration::from_secs(10), changes.recv())
            .await
            .expect("listener up");
        assert_eq!(first.expect("recv"), Change::Resync);
    }
    s.customers()
        .set_status(&t.reseller_y_admin, t.customer_b.id, Status::Suspended)
        .await
        .expect("suspend");
    let got = tokio::time::timeout(Duration::from_secs(10), changes.recv())
        .await
        .expect("change arrives")
        .expect("recv");
    assert_eq!(
        got,
        Change::Customer {
            customer: t.customer_b.id
        }
    );
    let all = s
        .directory()
        .all(&Principal::system())
        .await
        .expect("directory");
    let b = all
        .iter()
        .find(|c| c.customer_id == t.customer_b.id)
        .expect("B listed");
    assert!(!b.active);
    let a = all
        .iter()
        .find(|c| c.customer_id == t.customer_a.id)
        .expect("A listed");
    assert!(a.active);
    assert_eq!(a.devices.len(), 1);
    assert_eq!(a.extensions[0].number, "101");
    // The directory is the platform's, not a tenant's.
    assert!(matches!(
        s.directory().all(&t.reseller_x_admin).await,
        Err(StoreError::Forbidden(_))
    ));
}

async fn audit_log_is_scoped(db: TestDb) {
    let t = TwoTenants::create(&db.store).await;
    let s = &db.store;
    s.devices()
        .reset_secret(&t.customer_a_admin, t.device_a.id, None)
        .await
        .expect("reset");
    let x = s
        .audit()
        .list(&t.reseller_x_admin, None, 100)
        .await
        .expect("audit");
    assert!(x
        .iter()
        .any(|e| e.action == "reset_secret" && e.actor == "login:admin@acme.test"));
    assert!(x.iter().all(|e| e.reseller_id == Some(t.reseller_x.id)));
    let y = s
        .audit()
        .list(&t.reseller_y_admin, None, 100)
        .await
        .expect("audit");
    assert!(y.iter().all(|e| e.reseller_id == Some(t.reseller_y.id)));
    assert!(!y.iter().any(|e| e.action == "reset_secret"));
}

async fn console_passwords_verify_and_fail_alike(db: TestDb) {
    let _t = TwoTenants::create(&db.store).await;
    let logins = db.store.logins();
    let ok = logins
        .authenticate("ADMIN@acme.test ", "a long enough password")
        .await
        .expect("auth");
    assert_eq!(ok.expect("valid").email, "admin@acme.test");
    assert!(logins
        .authenticate("admin@acme.test", "wrong")
        .await
        .expect("auth")
        .is_none());
    assert!(logins
        .authenticate("nobody@acme.test", "a long enough password")
        .await
        .expect("auth")
        .is_none());
}

pbx_store::both_engines!(
    reseller_cannot_read_another_resellers_customer,
    customer_admin_is_sealed_in_its_customer,
    customer_user_sees_only_its_own_extension,
    tokens_carry_scope_and_limits,
    stale_versions_are_refused,
    a_new_sip_domain_recomputes_every_ha1,
    directory_follows_status_and_changes_are_announced,
    audit_log_is_scoped,
    console_passwords_verify_and_fail_alike,
);
