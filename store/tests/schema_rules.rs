//! Each rule of the data model, broken on purpose: once through the store API
//! (a clear error) and once with raw SQL (the schema itself refuses), on both
//! engines.

use pbx_store::extensions::NewExtension;
use pbx_store::testing::{reseller_settings, TestDb, TwoTenants};
use pbx_store::{Principal, StoreError};

fn op() -> Principal {
    Principal::system()
}

async fn duplicate_extension_in_one_customer_is_refused(db: TestDb) {
    let t = TwoTenants::create(&db.store).await;
    let again = NewExtension {
        number: "101".into(),
        display_name: "Again".into(),
    };
    let err = db
        .store
        .extensions()
        .create(&op(), t.customer_a.id, &again)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Conflict(m) if m.contains("already has an extension")),
        "{err:?}"
    );
    let raw = format!(
        "INSERT INTO extensions (customer_id, number, display_name, created_at) VALUES ({}, '101', 'x', 1)",
        t.customer_a.id
    );
    assert!(
        db.execute(&raw).await.is_err(),
        "schema accepted a duplicate live extension"
    );
    // The same number in another customer is fine, and so is reusing the number
    // of a deleted extension.
    db.store
        .extensions()
        .delete(&op(), t.extension_a.id)
        .await
        .expect("delete");
    db.store
        .extensions()
        .create(&op(), t.customer_a.id, &again)
        .await
        .expect("reuse after delete");
}

async fn a_number_cannot_belong_to_two_customers(db: TestDb) {
    let t = TwoTenants::create(&db.store).await;
    let numbers = db.store.numbers();
    let n = numbers
        .create(&op(), "+4930123456", Some(t.reseller_x.id))
        .await
        .expect("number");
    let err = numbers
        .create(&op(), "+4930123456", Some(t.reseller_y.id))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    numbers
        .assign(&t.reseller_x_admin, n.id, t.customer_a.id)
        .await
        .expect("assign");
    // A second customer, even of the same reseller, is refused while the first holds it.
    let second = db
        .store
        .customers()
        .create(
            &op(),
            t.reseller_x.id,
            &pbx_store::customers::NewCustomer {
                name: "Second".into(),
                ..Default::default()
            },
        )
        .await
        .expect("second customer");
    let err = numbers
        .assign(&t.reseller_x_admin, n.id, second.id)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    // Reseller Y cannot even see the number.
    let err = numbers
        .assign(&t.reseller_y_admin, n.id, t.customer_b.id)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
    // Raw SQL: a duplicate E.164, and a second open assignment, are refused.
    assert!(db
        .execute("INSERT INTO phone_numbers (e164, created_at) VALUES ('+4930123456', 1)")
        .await
        .is_err());
    let raw = format!(
        "INSERT INTO number_assignments (number_id, reseller_id, customer_id, assigned_at) VALUES ({}, {}, {}, 1)",
        n.id, t.reseller_x.id, second.id
    );
    assert!(
        db.execute(&raw).await.is_err(),
        "schema accepted a second open assignment"
    );
    // Pointing the number at customer B (of another reseller) breaks the composite key.
    let raw = format!(
        "UPDATE phone_numbers SET customer_id = {} WHERE id = {}",
        t.customer_b.id, n.id
    );
    assert!(
        db.execute(&raw).await.is_err(),
        "schema accepted a number of reseller X held by reseller Y's customer"
    );
    // Released, it can go to the second customer; the history keeps both.
    numbers
        .release(&t.reseller_x_admin, n.id)
        .await
        .expect("release");
    let n = numbers
        .assign(&t.reseller_x_admin, n.id, second.id)
        .await
        .expect("reassign");
    assert_eq!(n.customer_id, Some(second.id));
}

async fn a_device_cannot_join_another_customers_extension(db: TestDb) {
    let t = TwoTenants::create(&db.store).await;
    // Through the API, customer A's admin cannot name B's extension at all.
    let new = pbx_store::devices::NewDevice {
        name: "Sneaky".into(),
        ..Default::default()
    };
    let err = db
        .store
        .devices()
        .create(&t.customer_a_admin, t.extension_b.id, &new)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
    // Raw SQL: a device row of customer A on extension B violates the composite key.
    let raw = format!(
        "INSERT INTO devices (customer_id, extension_id, name, sip_user, ha1_realm, ha1_md5, ha1_sha256, secret_enc, created_at) \
         VALUES ({}, {}, 'x', 'sneaky', 'r', '{}', '{}', 'v1:x', 1)",
        t.customer_a.id,
        t.extension_b.id,
        "0".repeat(32),
        "0".repeat(64)
    );
    assert!(
        db.execute(&raw).await.is_err(),
        "schema accepted a cross-tenant device"
    );
    // Moving an existing device across is refused too.
    let raw = format!(
        "UPDATE devices SET extension_id = {} WHERE id = {}",
        t.extension_b.id, t.device_a.id
    );
    assert!(
        db.execute(&raw).await.is_err(),
        "schema accepted moving a device across tenants"
    );
}

async fn a_reseller_with_customers_cannot_be_deleted(db: TestDb) {
    let t = TwoTenants::create(&db.store).await;
    let err = db
        .store
        .resellers()
        .delete(&op(), t.reseller_x.id)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::InUse(m) if m.contains("customers")),
        "{err:?}"
    );
    let raw = format!("DELETE FROM resellers WHERE id = {}", t.reseller_x.id);
    assert!(
        db.execute(&raw).await.is_err(),
        "schema deleted a reseller with customers"
    );
    // Only the operator may delete resellers at all.
    let err = db
        .store
        .resellers()
        .delete(&t.reseller_x_admin, t.reseller_x.id)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Forbidden(_)), "{err:?}");
    // A reseller without customers can go.
    let empty = db
        .store
        .resellers()
        .create(&op(), &reseller_settings("Empty"))
        .await
        .expect("create");
    db.store
        .resellers()
        .delete(&op(), empty.id)
        .await
        .expect("delete empty reseller");
}

async fn login_roles_must_match_their_scope(db: TestDb) {
    let t = TwoTenants::create(&db.store).await;
    // A customer admin row without a customer, and a customer user of customer A
    // pointing at B's extension, are refused by the schema.
    let raw = format!(
        "INSERT INTO logins (email, password_hash, role, reseller_id, created_at, password_changed_at) \
         VALUES ('bad@x.test', 'h', 'customer_admin', {}, 1, 1)",
        t.reseller_x.id
    );
    assert!(db.execute(&raw).await.is_err());
    let raw = format!(
        "INSERT INTO logins (email, password_hash, role, reseller_id, customer_id, extension_id, created_at, password_changed_at) \
         VALUES ('bad2@x.test', 'h', 'customer_user', {}, {}, {}, 1, 1)",
        t.reseller_x.id, t.customer_a.id, t.extension_b.id
    );
    assert!(db.execute(&raw).await.is_err());
    // A login naming reseller Y with customer A (of X) breaks the composite key.
    let raw = format!(
        "INSERT INTO logins (email, password_hash, role, reseller_id, customer_id, created_at, password_changed_at) \
         VALUES ('bad3@x.test', 'h', 'customer_admin', {}, {}, 1, 1)",
        t.reseller_y.id, t.customer_a.id
    );
    assert!(db.execute(&raw).await.is_err());
}

async fn closed_flags_and_values_are_checked(db: TestDb) {
    let t = TwoTenants::create(&db.store).await;
    for raw in [
        format!(
            "UPDATE customers SET status = 'closed' WHERE id = {}",
            t.customer_a.id
        ),
        format!(
            "UPDATE customers SET status = 'deleted' WHERE id = {}",
            t.customer_a.id
        ),
        format!(
            "UPDATE extensions SET number = '10a' WHERE id = {}",
            t.extension_a.id
        ),
        format!(
            "UPDATE resellers SET vat_rate_bp = 10001 WHERE id = {}",
            t.reseller_x.id
        ),
        format!(
            "UPDATE resellers SET primary_color = 'red' WHERE id = {}",
            t.reseller_x.id
        ),
        format!(
            "UPDATE extensions SET dnd = 2 WHERE id = {}",
            t.extension_a.id
        ),
        "INSERT INTO phone_numbers (e164, created_at) VALUES ('+0301', 1)".to_owned(),
        "INSERT INTO phone_numbers (e164, created_at) VALUES ('4930123', 1)".to_owned(),
    ] {
        assert!(db.execute(&raw).await.is_err(), "schema accepted: {raw}");
    }
}

pbx_store::both_engines!(
    duplicate_extension_in_one_customer_is_refused,
    a_number_cannot_belong_to_two_customers,
    a_device_cannot_join_another_customers_extension,
    a_reseller_with_customers_cannot_be_deleted,
    login_roles_must_match_their_scope,
    closed_flags_and_values_are_checked,
);
