//! Registrations written behind the location service, on both engines.

use pbx_store::registrations::StoredBinding;
use pbx_store::testing::{TestDb, TwoTenants};
use pbx_store::{now_ms, DeviceId, Principal, StoreError};

fn binding(t: &TwoTenants, key: &str, node: &str, expires_at: i64) -> StoredBinding {
    StoredBinding {
        customer_id: t.customer_a.id,
        extension_id: t.extension_a.id,
        device_id: t.device_a.id,
        binding_key: key.into(),
        contact: format!("<sip:101@192.0.2.10:5060;k={key}>"),
        instance_id: None,
        reg_id: None,
        transport: "udp".into(),
        source: "192.0.2.10:5060".into(),
        local: "127.0.0.1:5060".into(),
        node_id: node.into(),
        path: None,
        call_id: "c".into(),
        cseq: 1,
        q_milli: 1000,
        user_agent: Some("phone".into()),
        expires_at,
        updated_at: now_ms(),
    }
}

async fn replace_load_and_expire(db: TestDb) {
    let t = TwoTenants::create(&db.store).await;
    let sys = Principal::system();
    let regs = db.store.registrations();
    let later = now_ms() + 60_000;
    regs.replace(
        &sys,
        &[t.device_a.id],
        &[binding(&t, "a", "n1", later), binding(&t, "b", "n1", later)],
    )
    .await
    .expect("replace");
    assert_eq!(
        regs.load_for_node(&sys, "n1", now_ms())
            .await
            .expect("load")
            .len(),
        2
    );
    assert!(regs
        .load_for_node(&sys, "n2", now_ms())
        .await
        .expect("load")
        .is_empty());
    // Replacing with one binding removes the other.
    regs.replace(&sys, &[t.device_a.id], &[binding(&t, "b", "n1", later)])
        .await
        .expect("replace");
    let loaded = regs
        .load_for_node(&sys, "n1", now_ms())
        .await
        .expect("load");
    assert_eq!(loaded.len(), 1);
    assert_eq!(
        loaded[0],
        binding(&t, "b", "n1", later).clone_with_updated(loaded[0].updated_at)
    );
    // A device that no longer exists does not fail the batch.
    regs.replace(
        &sys,
        &[t.device_a.id, DeviceId(999_999)],
        &[binding(&t, "c", "n1", now_ms() - 1)],
    )
    .await
    .expect("replace");
    assert!(
        regs.load_for_node(&sys, "n1", now_ms())
            .await
            .expect("load")
            .is_empty(),
        "expired ones are not loaded"
    );
    assert_eq!(
        regs.delete_expired(&sys, now_ms()).await.expect("delete"),
        1
    );
    // Tenants cannot write them, and see only their own.
    assert!(matches!(
        regs.replace(&t.customer_a_admin, &[t.device_a.id], &[])
            .await,
        Err(StoreError::Forbidden(_))
    ));
    regs.replace(&sys, &[t.device_a.id], &[binding(&t, "d", "n1", later)])
        .await
        .expect("replace");
    assert_eq!(
        regs.for_customer(&t.customer_a_admin, t.customer_a.id, now_ms())
            .await
            .expect("own")
            .len(),
        1
    );
    assert!(regs
        .for_customer(&t.customer_b_admin, t.customer_a.id, now_ms())
        .await
        .expect("other")
        .is_empty());
    assert!(regs
        .for_customer(&t.reseller_y_admin, t.customer_a.id, now_ms())
        .await
        .expect("other")
        .is_empty());
}

trait WithUpdated {
    fn clone_with_updated(&self, at: i64) -> Self;
}
impl WithUpdated for StoredBinding {
    fn clone_with_updated(&self, at: i64) -> Self {
        StoredBinding {
            updated_at: at,
            ..self.clone()
        }
    }
}

pbx_store::both_engines!(replace_load_and_expire);
