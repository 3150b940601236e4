//! The proxy never waits on the database, yet follows it: configuration
//! changes reach the in-memory directory at once (in-process on SQLite,
//! LISTEN/NOTIFY on PostgreSQL), and registration events go out on the bus.

mod support;

use std::time::{Duration, Instant};

use pbx_sip_proxy::{SipEvent, SipProxy};
use pbx_store::devices::NewDevice;
use pbx_store::extensions::NewExtension;
use pbx_store::testing::{TestDb, TwoTenants, TEST_KEY};
use pbx_store::Principal;
use support::Ua;

async fn register_until(ua: &Ua, want: u16, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let status = ua.register_here(600).await.status();
        if status == Some(want) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "still {status:?} after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn a_new_extension_registers_within_a_second_and_a_removed_device_is_refused(db: TestDb) {
    let t = TwoTenants::create(&db.store).await;
    let mut config = support::config();
    config.secret = TEST_KEY;
    let proxy = SipProxy::start(config, db.store.clone())
        .await
        .expect("start");
    let mut events = proxy.events().subscribe();
    let udp = proxy.udp_addrs()[0];
    let sys = Principal::system();
    let ext = db
        .store
        .extensions()
        .create(
            &sys,
            t.customer_a.id,
            &NewExtension {
                number: "150".into(),
                display_name: "New".into(),
            },
        )
        .await
        .expect("extension");
    let (device, creds) = db
        .store
        .devices()
        .create(
            &sys,
            ext.id,
            &NewDevice {
                name: "New phone".into(),
                ..NewDevice::default()
            },
        )
        .await
        .expect("device");
    let ua = Ua::new(udp, &creds.sip_user, &creds.password, &creds.sip_domain).await;
    let took = register_until(&ua, 200, Duration::from_secs(1)).await;
    eprintln!("new device registered {took:?} after it was created");
    let registered = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            if let Ok(SipEvent::DeviceRegistered {
                device: d,
                customer,
                ..
            }) = events.recv().await.as_deref()
            {
                if *d == device.id {
                    return *customer;
                }
            }
        }
    })
    .await
    .expect("a registration event");
    assert_eq!(registered, t.customer_a.id);

    db.store
        .devices()
        .delete(&sys, device.id)
        .await
        .expect("delete device");
    register_until(&ua, 401, Duration::from_secs(1)).await;
    // Its binding goes too, so calls no longer reach it.
    let removed = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            if let Ok(SipEvent::DeviceUnregistered {
                device: d, reason, ..
            }) = events.recv().await.as_deref()
            {
                if *d == device.id {
                    return *reason;
                }
            }
        }
    })
    .await
    .expect("an unregistration event");
    assert_eq!(removed, "removed");
    proxy.shutdown().await;
}

async fn registrations_are_written_behind_and_reloaded(db: TestDb) {
    let t = TwoTenants::create(&db.store).await;
    let mut config = support::config();
    config.secret = TEST_KEY;
    let proxy = SipProxy::start(config.clone(), db.store.clone())
        .await
        .expect("start");
    let creds = db
        .store
        .devices()
        .credentials(&Principal::system(), t.device_a.id)
        .await
        .expect("creds");
    let ua = Ua::new(
        proxy.udp_addrs()[0],
        &creds.sip_user,
        &creds.password,
        &creds.sip_domain,
    )
    .await;
    assert_eq!(ua.register_here(600).await.status(), Some(200));
    proxy.shutdown().await;
    let stored = db
        .store
        .registrations()
        .load_for_node(&Principal::system(), &config.node_id, pbx_store::now_ms())
        .await
        .expect("load");
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].device_id, t.device_a.id);
    let again = SipProxy::start(config, db.store.clone())
        .await
        .expect("restart");
    let restored = again
        .metrics()
        .into_iter()
        .find(|m| m.0 == "pbx_sip_registered_contacts")
        .map(|m| m.3);
    assert_eq!(restored, Some(1));
    again.shutdown().await;
}

pbx_store::both_engines!(
    a_new_extension_registers_within_a_second_and_a_removed_device_is_refused,
    registrations_are_written_behind_and_reloaded,
);
