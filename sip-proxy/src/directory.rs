//! The proxy's in-memory copy of who exists: each customer's SIP domain,
//! extensions and device credentials (digest HA1s only). The SIP path reads it
//! without ever waiting for the database; [`Directory::follow`] keeps it in
//! step with the store's change feed, one customer at a time.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use pbx_store::changes::Change;
use pbx_store::directory::CustomerDirectory;
pub use pbx_store::forwards::{Forward, ForwardCondition};
use pbx_store::{CustomerId, DeviceId, ExtensionId, Principal, ResellerId, Store};

#[derive(Debug)]
pub struct Device {
    pub id: DeviceId,
    pub extension: ExtensionId,
    pub sip_user: String,
    /// Whether the HA1s were computed for the customer's current domain
    /// (they are recomputed when it changes; until then the device cannot log in).
    pub realm_current: bool,
    pub ha1_md5: String,
    pub ha1_sha256: String,
}

#[derive(Debug)]
pub struct Extension {
    pub id: ExtensionId,
    pub number: String,
    pub display_name: String,
    pub dnd: bool,
    /// Enabled call forwards, at most one per condition.
    pub forwards: Vec<Forward>,
}

impl Extension {
    /// Where calls go under `condition`, if anywhere.
    pub fn forward(&self, condition: ForwardCondition) -> Option<&Forward> {
        self.forwards.iter().find(|f| f.condition == condition)
    }
}

/// A ring group as the SIP side sees it.
#[derive(Debug)]
pub struct RingGroup {
    pub id: pbx_store::RingGroupId,
    pub number: String,
    pub strategy: pbx_store::ring_groups::Strategy,
    pub member_timeout_s: i64,
    pub members: Vec<ExtensionId>,
    pub no_answer_extension: Option<ExtensionId>,
}

/// One customer as the SIP side sees it.
#[derive(Debug)]
pub struct Tenant {
    pub customer: CustomerId,
    pub reseller: ResellerId,
    pub domain: String,
    /// False when the customer or its reseller is suspended or closed.
    pub active: bool,
    /// Server/User-Agent for this customer's phones; None sends none.
    pub server_header: Option<String>,
    devices: HashMap<String, Arc<Device>>,
    device_ids: std::collections::HashSet<DeviceId>,
    extensions: HashMap<String, Arc<Extension>>,
    extensions_by_id: HashMap<ExtensionId, Arc<Extension>>,
    ring_groups: HashMap<String, Arc<RingGroup>>,
}

impl Tenant {
    fn from_store(d: CustomerDirectory) -> Tenant {
        let extensions: Vec<Arc<Extension>> = d
            .extensions
            .into_iter()
            .map(|e| {
                Arc::new(Extension {
                    id: e.id,
                    number: e.number,
                    display_name: e.display_name,
                    dnd: e.dnd,
                    forwards: e.forwards,
                })
            })
            .collect();
        Tenant {
            customer: d.customer_id,
            reseller: d.reseller_id,
            domain: d.sip_domain.to_ascii_lowercase(),
            active: d.active,
            server_header: d.server_header,
            device_ids: d.devices.iter().map(|dev| dev.id).collect(),
            devices: d
                .devices
                .into_iter()
                .map(|dev| {
                    let device = Device {
                        id: dev.id,
                        extension: dev.extension_id,
                        sip_user: dev.sip_user.clone(),
                        realm_current: dev.ha1_realm.eq_ignore_ascii_case(&d.sip_domain),
                        ha1_md5: dev.ha1_md5,
                        ha1_sha256: dev.ha1_sha256,
                    };
                    (dev.sip_user, Arc::new(device))
                })
                .collect(),
            extensions_by_id: extensions.iter().map(|e| (e.id, e.clone())).collect(),
            ring_groups: d
                .ring_groups
                .into_iter()
                .map(|g| {
                    let group = RingGroup {
                        id: g.id,
                        number: g.number.clone(),
                        strategy: g.strategy,
                        member_timeout_s: g.member_timeout_s,
                        members: g.members,
                        no_answer_extension: g.no_answer_extension,
                    };
                    (g.number, Arc::new(group))
                })
                .collect(),
            extensions: extensions
                .into_iter()
                .map(|e| (e.number.clone(), e))
                .collect(),
        }
    }

    /// A device by its SIP user name (case-sensitive, as digest usernames are).
    pub fn device(&self, sip_user: &str) -> Option<&Arc<Device>> {
        self.devices.get(sip_user)
    }

    /// Whether the device still exists (and so may keep its bindings).
    pub fn has_device(&self, id: DeviceId) -> bool {
        self.device_ids.contains(&id)
    }

    pub fn extension(&self, number: &str) -> Option<&Arc<Extension>> {
        self.extensions.get(number)
    }

    pub fn ring_group(&self, number: &str) -> Option<&Arc<RingGroup>> {
        self.ring_groups.get(number)
    }

    pub fn extension_by_id(&self, id: ExtensionId) -> Option<&Arc<Extension>> {
        self.extensions_by_id.get(&id)
    }

    /// The devices of one extension.
    pub fn devices_of(&self, extension: ExtensionId) -> impl Iterator<Item = &Arc<Device>> {
        self.devices
            .values()
            .filter(move |d| d.extension == extension)
    }
}

#[derive(Default)]
struct Snapshot {
    by_domain: HashMap<String, Arc<Tenant>>,
    by_customer: HashMap<CustomerId, Arc<Tenant>>,
}

/// All tenants, replaced copy-on-write so readers never wait for a reload.
#[derive(Default)]
pub struct Directory {
    snapshot: RwLock<Arc<Snapshot>>,
}

impl Directory {
    fn current(&self) -> Arc<Snapshot> {
        self.snapshot.read().map(|s| s.clone()).unwrap_or_default()
    }

    /// The tenant whose SIP domain is `domain` (any case).
    pub fn by_domain(&self, domain: &str) -> Option<Arc<Tenant>> {
        let snapshot = self.current();
        let domain = domain.trim_end_matches('.');
        if domain.bytes().any(|b| b.is_ascii_uppercase()) {
            snapshot
                .by_domain
                .get(&domain.to_ascii_lowercase())
                .cloned()
        } else {
            snapshot.by_domain.get(domain).cloned()
        }
    }

    pub fn by_customer(&self, customer: CustomerId) -> Option<Arc<Tenant>> {
        self.current().by_customer.get(&customer).cloned()
    }

    pub fn tenant_count(&self) -> usize {
        self.current().by_customer.len()
    }

    /// Replaces everything with what the store holds now.
    pub async fn load_all(&self, store: &Store) -> Result<(), pbx_store::StoreError> {
        let all = store.directory().all(&Principal::system()).await?;
        let mut snapshot = Snapshot::default();
        for d in all {
            let tenant = Arc::new(Tenant::from_store(d));
            snapshot
                .by_domain
                .insert(tenant.domain.clone(), tenant.clone());
            snapshot.by_customer.insert(tenant.customer, tenant);
        }
        if let Ok(mut s) = self.snapshot.write() {
            *s = Arc::new(snapshot);
        }
        Ok(())
    }

    /// Reloads one customer (or drops it if it no longer exists).
    pub async fn reload(
        &self,
        store: &Store,
        customer: CustomerId,
    ) -> Result<(), pbx_store::StoreError> {
        let fresh = store
            .directory()
            .customer(&Principal::system(), customer)
            .await?;
        self.replace(customer, fresh.map(Tenant::from_store));
        Ok(())
    }

    /// Installs `tenant` as customer `customer`'s entry (None removes it).
    pub fn replace(&self, customer: CustomerId, tenant: Option<Tenant>) {
        let Ok(mut guard) = self.snapshot.write() else {
            return;
        };
        let old = guard.clone();
        let mut by_domain = old.by_domain.clone();
        let mut by_customer = old.by_customer.clone();
        if let Some(previous) = by_customer.remove(&customer) {
            by_domain.remove(&previous.domain);
        }
        if let Some(t) = tenant {
            let t = Arc::new(t);
            by_domain.insert(t.domain.clone(), t.clone());
            by_customer.insert(customer, t);
        }
        *guard = Arc::new(Snapshot {
            by_domain,
            by_customer,
        });
    }

    /// Applies every change from the store, for as long as the node runs.
    pub async fn follow(self: Arc<Self>, store: Store) {
        let mut changes = store.changes().subscribe();
        loop {
            let change = changes.recv().await;
            let result = match change {
                Ok(Change::Customer { customer }) => self.reload(&store, customer).await,
                // A reseller's status and SIP header show in all its customers.
                Ok(Change::Reseller { .. })
                | Ok(Change::Resync)
                | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    self.load_all(&store).await
                }
                Ok(_) => Ok(()),
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            };
            if let Err(e) = result {
                // The old copy keeps serving; the next change or resync retries.
                tracing::warn!(error = %e, "directory refresh failed");
            }
        }
    }
}

impl Tenant {
    /// A tenant built by hand (tests, tools): `extensions` are (number, [(sip_user, password)]).
    pub fn build(
        customer: CustomerId,
        reseller: ResellerId,
        domain: &str,
        extensions: &[(&str, &[(&str, &str)])],
    ) -> Tenant {
        let mut dir = CustomerDirectory {
            customer_id: customer,
            reseller_id: reseller,
            sip_domain: domain.to_owned(),
            active: true,
            server_header: None,
            extensions: Vec::new(),
            devices: Vec::new(),
            ring_groups: Vec::new(),
        };
        for (i, (number, devices)) in extensions.iter().enumerate() {
            let ext = ExtensionId(customer.0 * 1000 + i as i64);
            dir.extensions
                .push(pbx_store::directory::DirectoryExtension {
                    id: ext,
                    number: (*number).to_owned(),
                    display_name: format!("Extension {number}"),
                    dnd: false,
                    forwards: Vec::new(),
                });
            for (j, (user, password)) in devices.iter().enumerate() {
                let ha1 = pbx_store::secrets::DigestHa1::compute(user, domain, password);
                dir.devices.push(pbx_store::directory::DirectoryDevice {
                    id: DeviceId(ext.0 * 100 + j as i64),
                    extension_id: ext,
                    sip_user: (*user).to_owned(),
                    ha1_realm: domain.to_owned(),
                    ha1_md5: ha1.md5,
                    ha1_sha256: ha1.sha256,
                });
            }
        }
        Tenant::from_store(dir)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A tenant for unit tests: extension 101 with device "101", password "secret".
    pub fn tenant(customer: i64, domain: &str) -> Tenant {
        let ha1 = pbx_store::secrets::DigestHa1::compute("101", domain, "secret");
        Tenant::from_store(CustomerDirectory {
            customer_id: CustomerId(customer),
            reseller_id: ResellerId(1),
            sip_domain: domain.to_owned(),
            active: true,
            server_header: None,
            extensions: vec![pbx_store::directory::DirectoryExtension {
                id: ExtensionId(customer * 100 + 1),
                number: "101".into(),
                display_name: "One".into(),
                dnd: false,
                forwards: Vec::new(),
            }],
            ring_groups: Vec::new(),
            devices: vec![pbx_store::directory::DirectoryDevice {
                id: DeviceId(customer * 100 + 1),
                extension_id: ExtensionId(customer * 100 + 1),
                sip_user: "101".into(),
                ha1_realm: domain.to_owned(),
                ha1_md5: ha1.md5,
                ha1_sha256: ha1.sha256,
            }],
        })
    }

    #[test]
    fn lookups_by_domain_ignore_case_and_follow_renames() {
        let dir = Directory::default();
        dir.replace(CustomerId(1), Some(tenant(1, "acme.example")));
        assert!(dir.by_domain("ACME.Example").is_some());
        assert!(dir.by_domain("acme.example.").is_some());
        dir.replace(CustomerId(1), Some(tenant(1, "renamed.example")));
        assert!(dir.by_domain("acme.example").is_none());
        let t = dir.by_domain("renamed.example").expect("renamed");
        assert_eq!(t.device("101").map(|d| d.extension), Some(ExtensionId(101)));
        dir.replace(CustomerId(1), None);
        assert_eq!(dir.tenant_count(), 0);
    }
}
