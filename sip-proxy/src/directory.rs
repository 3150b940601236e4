//! The proxy's in-memory copy of who exists: each customer's SIP domain,
//! extensions and device credentials (digest HA1s only), numbering country,
//! time zones, business hours, limits and retail rates; and the platform's
//! carrier trunks and phone numbers ([`Carriers`]). The SIP path reads it
//! without ever waiting for the database; [`Directory::follow`] keeps it in
//! step with the store's change feed, one customer at a time.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use chrono_tz::Tz;
use pbx_store::business_hours::BusinessHours;
use pbx_store::changes::Change;
use pbx_store::directory::{CarrierTrunk, CustomerDirectory, RoutedNumber};
pub use pbx_store::forwards::{Forward, ForwardCondition};
use pbx_store::limits::Limits;
use pbx_store::net::Block;
use pbx_store::rating::RateRule;
use pbx_store::{
    BusinessHoursId, CustomerId, DeviceId, ExtensionId, Principal, ResellerId, Store, TrunkId,
};

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
    /// Its calls, made or answered, are recorded.
    pub record_calls: bool,
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
    /// Conference rooms by number.
    rooms: HashMap<String, pbx_store::ConferenceRoomId>,
    /// Whose numbering plan the phones dial in (ISO 3166).
    pub country: String,
    /// The customer's language (`en`, `de`): its callers' announcements.
    pub language: String,
    /// Its uploaded music on hold (a key in the audio store).
    pub music: Option<String>,
    /// The customer's time zone (business hours).
    pub time_zone: Tz,
    /// The reseller's (billing days, so spend limits).
    pub reseller_time_zone: Tz,
    pub limits: Limits,
    pub reseller_limits: Limits,
    /// The reseller's abuse thresholds.
    pub guard_settings: pbx_store::abuse::GuardSettings,
    /// The customer's toll-fraud alarms.
    pub fraud_alarms: pbx_store::fraud_alarms::FraudAlarms,
    /// Its media anchoring policy, if it or its reseller chose one.
    pub media_anchor: Option<pbx_store::media::AnchorMode>,
    /// What each device is known to call abroad or at premium rates.
    known_destinations: HashMap<DeviceId, Vec<String>>,
    pub retail_rates: Arc<Vec<RateRule>>,
    business_hours: HashMap<BusinessHoursId, BusinessHours>,
}

/// A stored time zone; an unreadable one (never written by the store) is UTC.
fn zone(name: &str) -> Tz {
    name.parse().unwrap_or(Tz::UTC)
}

impl Tenant {
    pub fn from_store(d: CustomerDirectory) -> Tenant {
        let extensions: Vec<Arc<Extension>> = d
            .extensions
            .into_iter()
            .map(|e| {
                Arc::new(Extension {
                    id: e.id,
                    number: e.number,
                    display_name: e.display_name,
                    dnd: e.dnd,
                    record_calls: e.record_calls,
                    forwards: e.forwards,
                })
            })
            .collect();
        Tenant {
            country: d.country,
            language: d.language,
            music: d.music_audio,
            time_zone: zone(&d.time_zone),
            reseller_time_zone: zone(&d.reseller_time_zone),
            limits: d.limits,
            reseller_limits: d.reseller_limits,
            guard_settings: d.guard_settings,
            fraud_alarms: d.fraud_alarms,
            media_anchor: d.media_anchor,
            known_destinations: d.known_destinations,
            retail_rates: d.retail_rates,
            business_hours: d.business_hours.into_iter().map(|b| (b.id, b)).collect(),
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
            rooms: d
                .conference_rooms
                .into_iter()
                .map(|r| (r.number, r.id))
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

    pub fn conference_room(&self, number: &str) -> Option<pbx_store::ConferenceRoomId> {
        self.rooms.get(number).copied()
    }

    /// Whether `room` is one of this customer's (live) rooms.
    pub fn has_room(&self, room: pbx_store::ConferenceRoomId) -> bool {
        self.rooms.values().any(|r| *r == room)
    }

    pub fn extension_by_id(&self, id: ExtensionId) -> Option<&Arc<Extension>> {
        self.extensions_by_id.get(&id)
    }

    pub fn ring_group_by_id(&self, id: pbx_store::RingGroupId) -> Option<&Arc<RingGroup>> {
        self.ring_groups.values().find(|g| g.id == id)
    }

    pub fn business_hours(&self, id: BusinessHoursId) -> Option<&BusinessHours> {
        self.business_hours.get(&id)
    }

    /// Whether business-hours rule `id` says open at `now` (None: no such rule).
    pub fn is_open(&self, id: BusinessHoursId, now: pbx_store::Millis) -> Option<bool> {
        let rule = self.business_hours.get(&id)?;
        Some(pbx_store::business_hours::is_open(
            &rule.weekly,
            &rule.holidays,
            self.time_zone,
            now,
        ))
    }

    /// Whether `device` is known to call `destination` (a calling code or a
    /// premium-rate number).
    pub fn knows_destination(&self, device: DeviceId, destination: &str) -> bool {
        self.known_destinations
            .get(&device)
            .is_some_and(|d| d.iter().any(|k| k == destination))
    }

    /// Sets what `device` is known to call (tests, tools).
    pub fn set_known_destinations(&mut self, device: DeviceId, destinations: Vec<String>) {
        self.known_destinations.insert(device, destinations);
    }

    /// The devices of one extension.
    pub fn devices_of(&self, extension: ExtensionId) -> impl Iterator<Item = &Arc<Device>> {
        self.devices
            .values()
            .filter(move |d| d.extension == extension)
    }
}

/// The platform's side towards the public network: carrier trunks and the
/// phone numbers customers hold.
#[derive(Debug, Default)]
pub struct Carriers {
    /// Every trunk with its routes (disabled ones too: inbound is matched by source).
    pub trunks: Vec<(pbx_store::trunks::Trunk, Vec<pbx_store::trunks::Route>)>,
    secrets: HashMap<TrunkId, String>,
    /// By E.164 digits (no `+`).
    numbers: HashMap<String, RoutedNumber>,
    /// The number routed straight to each extension: its caller ID.
    extension_numbers: HashMap<ExtensionId, String>,
    /// Each customer's first number: the caller ID of extensions without one.
    main_numbers: HashMap<CustomerId, String>,
    /// Where carriers send from (each trunk's host and source blocks, read
    /// once here, not on every request), with the trunk's index in `trunks`;
    /// the operator's trunks first.
    sources: Vec<(Block, usize)>,
}

impl Carriers {
    fn new(trunks: Vec<CarrierTrunk>, numbers: Vec<RoutedNumber>) -> Carriers {
        let mut out = Carriers::default();
        for t in trunks {
            if let Some(secret) = t.secret {
                out.secrets.insert(t.trunk.id, secret);
            }
            out.trunks.push((t.trunk, t.routes));
        }
        for (i, (t, _)) in out.trunks.iter().enumerate() {
            let host = t.host.parse::<std::net::IpAddr>().ok().map(Block::single);
            let blocks = t.inbound_sources.iter().filter_map(|b| Block::parse(b));
            out.sources
                .extend(host.into_iter().chain(blocks).map(|b| (b, i)));
        }
        let trunks = &out.trunks;
        out.sources.sort_by_key(|(_, i)| {
            let t = &trunks[*i].0;
            (t.reseller_id.is_some(), t.id)
        });
        for n in numbers {
            if let Some(pbx_store::numbers::Destination::Extension(e)) = n.destination {
                out.extension_numbers
                    .entry(e)
                    .or_insert_with(|| n.e164.clone());
            }
            let main = out
                .main_numbers
                .entry(n.customer)
                .or_insert_with(|| n.e164.clone());
            if n.e164 < *main {
                *main = n.e164.clone();
            }
            out.numbers.insert(n.e164.clone(), n);
        }
        out
    }

    /// The number a call arriving from a carrier is for.
    pub fn number(&self, e164: &str) -> Option<&RoutedNumber> {
        self.numbers.get(e164)
    }

    /// The caller ID (E.164 digits) of an extension: its own number, else
    /// its customer's first.
    pub fn caller_id(&self, customer: CustomerId, extension: Option<ExtensionId>) -> Option<&str> {
        extension
            .and_then(|e| self.extension_numbers.get(&e))
            .or_else(|| self.main_numbers.get(&customer))
            .map(String::as_str)
    }

    /// A registering trunk's secret.
    pub fn secret(&self, trunk: TrunkId) -> Option<&str> {
        self.secrets.get(&trunk).map(String::as_str)
    }

    /// Whether a carrier sends from `ip`.
    pub fn is_carrier(&self, ip: std::net::IpAddr) -> bool {
        self.sources.iter().any(|(block, _)| block.contains(ip))
    }

    /// The trunks whose carrier sends from `ip` (an address block it lists,
    /// or its host when that is an address): the operator's first, so that
    /// no reseller's trunk can stand in front of them.
    pub fn trunks_from(&self, ip: std::net::IpAddr) -> Vec<&pbx_store::trunks::Trunk> {
        let mut found: Vec<&pbx_store::trunks::Trunk> = Vec::new();
        for (block, i) in &self.sources {
            if block.contains(ip) {
                if let Some((t, _)) = self.trunks.get(*i) {
                    if !found.iter().any(|f| f.id == t.id) {
                        found.push(t);
                    }
                }
            }
        }
        found
    }
}

#[derive(Default)]
struct Snapshot {
    by_domain: HashMap<String, Arc<Tenant>>,
    by_customer: HashMap<CustomerId, Arc<Tenant>>,
    carriers: Arc<Carriers>,
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

    pub fn carriers(&self) -> Arc<Carriers> {
        self.current().carriers.clone()
    }

    /// Replaces everything with what the store holds now.
    pub async fn load_all(&self, store: &Store) -> Result<(), pbx_store::StoreError> {
        let all = store.directory().all(&Principal::system()).await?;
        let carriers = load_carriers(store).await?;
        let mut snapshot = Snapshot {
            carriers: Arc::new(carriers),
            ..Snapshot::default()
        };
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
            carriers: old.carriers.clone(),
        });
    }

    /// Installs a new set of trunks and numbers.
    pub fn replace_carriers(&self, carriers: Carriers) {
        let Ok(mut guard) = self.snapshot.write() else {
            return;
        };
        let old = guard.clone();
        *guard = Arc::new(Snapshot {
            by_domain: old.by_domain.clone(),
            by_customer: old.by_customer.clone(),
            carriers: Arc::new(carriers),
        });
    }

    /// Applies every change from the store, for as long as the node runs.
    pub async fn follow(self: Arc<Self>, store: Store) {
        let mut changes = store.changes().subscribe();
        loop {
            let change = changes.recv().await;
            let result = match change {
                Ok(Change::Customer { customer }) => self.reload(&store, customer).await,
                // The abuse guard and the application server (voicemail)
                // follow their own changes.
                Ok(Change::Guard) | Ok(Change::Voicemail { .. }) => Ok(()),
                Ok(Change::Trunks) | Ok(Change::Numbers) => match load_carriers(&store).await {
                    Ok(carriers) => {
                        self.replace_carriers(carriers);
                        Ok(())
                    }
                    Err(e) => Err(e),
                },
                // A reseller's status and SIP header show in all its
                // customers; price plans in the rates each customer holds.
                Ok(Change::Reseller { .. })
                | Ok(Change::PricePlans)
                | Ok(Change::Resync)
                | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    self.load_all(&store).await
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            };
            if let Err(e) = result {
                // The old copy keeps serving; the next change or resync retries.
                tracing::warn!(error = %e, "directory refresh failed");
            }
        }
    }
}

async fn load_carriers(store: &Store) -> Result<Carriers, pbx_store::StoreError> {
    let sys = Principal::system();
    let directory = store.directory();
    Ok(Carriers::new(
        directory.trunks(&sys).await?,
        directory.numbers(&sys).await?,
    ))
}

impl Tenant {
    /// A tenant built by hand (tests, tools): `extensions` are (number, [(sip_user, password)]).
    pub fn build(
        customer: CustomerId,
        reseller: ResellerId,
        domain: &str,
        extensions: &[(&str, &[(&str, &str)])],
    ) -> Tenant {
        let mut dir = CustomerDirectory::empty(customer, reseller, domain);
        for (i, (number, devices)) in extensions.iter().enumerate() {
            let ext = ExtensionId(customer.0 * 1000 + i as i64);
            dir.extensions
                .push(pbx_store::directory::DirectoryExtension {
                    id: ext,
                    number: (*number).to_owned(),
                    display_name: format!("Extension {number}"),
                    dnd: false,
                    record_calls: false,
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
            extensions: vec![pbx_store::directory::DirectoryExtension {
                id: ExtensionId(customer * 100 + 1),
                number: "101".into(),
                display_name: "One".into(),
                dnd: false,
                record_calls: false,
                forwards: Vec::new(),
            }],
            devices: vec![pbx_store::directory::DirectoryDevice {
                id: DeviceId(customer * 100 + 1),
                extension_id: ExtensionId(customer * 100 + 1),
                sip_user: "101".into(),
                ha1_realm: domain.to_owned(),
                ha1_md5: ha1.md5,
                ha1_sha256: ha1.sha256,
            }],
            ..CustomerDirectory::empty(CustomerId(customer), ResellerId(1), domain)
        })
    }

    #[test]
    fn carriers_are_found_by_source_address_the_operators_first() {
        let trunk = |id: i64, reseller: Option<i64>, host: &str, sources: &[&str]| CarrierTrunk {
            trunk: pbx_store::trunks::Trunk {
                id: TrunkId(id),
                reseller_id: reseller.map(ResellerId),
                name: format!("T{id}"),
                host: host.into(),
                port: 5060,
                transport: pbx_store::trunks::Transport::Udp,
                auth_mode: pbx_store::trunks::AuthMode::Ip,
                username: None,
                realm: None,
                register_expires_s: 600,
                inbound_sources: sources.iter().map(|s| (*s).to_owned()).collect(),
                number_format: pbx_store::numbering::NumberFormat::E164Plus,
                country: "DE".into(),
                max_channels: None,
                priority: 1,
                enabled: true,
                registration: None,
                created_at: 0,
                version: 1,
            },
            routes: Vec::new(),
            secret: None,
        };
        let carriers = Carriers::new(
            vec![
                // A reseller's trunk claiming the operator's carrier's block.
                trunk(1, Some(7), "192.0.2.9", &["198.51.100.0/24"]),
                trunk(2, None, "192.0.2.10", &["198.51.100.0/24", "2001:db8::/32"]),
            ],
            Vec::new(),
        );
        let ids = |ip: &str| -> Vec<i64> {
            carriers
                .trunks_from(ip.parse().unwrap())
                .iter()
                .map(|t| t.id.0)
                .collect()
        };
        assert_eq!(ids("198.51.100.77"), vec![2, 1]);
        assert_eq!(ids("192.0.2.9"), vec![1]);
        assert_eq!(ids("2001:db8:1::5"), vec![2]);
        assert!(ids("203.0.113.1").is_empty());
        assert_eq!(
            ids("::ffff:198.51.100.77"),
            vec![2, 1],
            "an IPv4-mapped address is the IPv4 address"
        );
        assert!(
            ids("64:ff9b::c633:644d").is_empty(),
            "no other mixing of families"
        );
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
