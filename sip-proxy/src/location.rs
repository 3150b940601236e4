//! Where each device can be reached (the RFC 3261 §10 location service):
//! bindings in memory, sharded by extension so calls and registrations of
//! different extensions never contend. Every change marks the device dirty;
//! [`Location::persist`] writes dirty devices to the store in batches, off the
//! SIP path, and puts them back in the dirty set if the database is away.
//!
//! Policy (who may register what, expiry rules) is the registrar's; this
//! module only keeps bindings.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use pbx_sip_message::{NameAddr, Uri};
use pbx_store::registrations::StoredBinding;
use pbx_store::{CustomerId, DeviceId, ExtensionId, Millis, Principal, ResellerId, Store};

use crate::transport::{Flow, Protocol};

/// One contact of one device. Kept compact (a registered phone should cost
/// well under a kilobyte): text as registered in boxed strings, the contact
/// parsed again when a request goes to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub reseller: ResellerId,
    pub customer: CustomerId,
    pub extension: ExtensionId,
    pub device: DeviceId,
    /// What identifies the binding across refreshes: instance-id (+ reg-id), or the contact URI.
    pub key: Box<str>,
    /// The Contact value as registered, without its `expires` parameter.
    pub contact: Box<str>,
    pub instance: Option<Box<str>>,
    pub reg_id: Option<u32>,
    pub q_milli: u16,
    /// Where the REGISTER came from.
    pub flow: Flow,
    pub call_id: Box<str>,
    pub cseq: u32,
    pub expires_at: Millis,
    pub user_agent: Option<Box<str>>,
    pub path: Box<[Box<str>]>,
    /// The expiry the database holds for this binding (None: not written yet).
    pub stored_expires_at: Option<Millis>,
    /// Not a phone's: a media application of this node (voicemail), which
    /// the proxy rings like a phone.
    pub application: bool,
}

/// Where and how requests to a binding go, from its contact.
#[derive(Debug, Clone)]
pub struct Target {
    /// The Contact URI, the Request-URI of requests to the binding.
    pub uri: Uri,
    /// Whether the contact cannot be reached at its own address: RFC 5626
    /// outbound was asked for, or the contact's address is not the one the
    /// REGISTER came from (the phone is behind NAT, or named itself by a
    /// host name we would have to resolve). Then only the registration's
    /// flow works.
    pub behind_nat: bool,
    /// The contact's own address (when it is an IP literal).
    pub addr: Option<SocketAddr>,
    /// The protocol requests to the binding use.
    pub protocol: Protocol,
}

impl Binding {
    /// The extension of an application binding that serves none (ids
    /// start at 1): a compact binding has no room for an Option.
    pub const NO_EXTENSION: ExtensionId = ExtensionId(0);

    /// The extension the binding rings, if any.
    pub fn extension(&self) -> Option<ExtensionId> {
        (self.extension != Binding::NO_EXTENSION).then_some(self.extension)
    }

    /// A target on this node's media application server: `user` at the
    /// end of `flow`, for `extension` if it serves one (a voicemail box; a
    /// conference room serves none: [`Binding::NO_EXTENSION`]). It never
    /// expires and is never stored.
    pub fn application(
        reseller: ResellerId,
        customer: CustomerId,
        extension: Option<ExtensionId>,
        user: &str,
        flow: Flow,
    ) -> Binding {
        let extension = extension.unwrap_or(Binding::NO_EXTENSION);
        let contact: Box<str> = format!("<sip:{user}@{}>", flow.remote).into();
        Binding {
            reseller,
            customer,
            extension,
            device: DeviceId(0),
            key: contact.clone(),
            contact,
            instance: None,
            reg_id: None,
            q_milli: 1000,
            flow,
            call_id: Box::default(),
            cseq: 0,
            expires_at: Millis::MAX,
            user_agent: None,
            path: Box::default(),
            stored_expires_at: None,
            application: true,
        }
    }

    /// Whether the stored copy is too stale to keep: new, moved, or its
    /// stored expiry more than a tenth of the interval short of the real one
    /// (so that after a restart no binding ends much earlier than its phone
    /// expects, without writing every refresh).
    fn needs_write(&self, now: Millis) -> bool {
        match self.stored_expires_at {
            None => true,
            Some(stored) => self.expires_at - stored > (self.expires_at - now).max(0) / 10,
        }
    }

    /// The contact, parsed (it was valid when registered).
    pub fn name_addr(&self) -> Option<NameAddr> {
        NameAddr::parse(&self.contact).ok()
    }

    /// The contact URI as text (for events and logs).
    pub fn uri_text(&self) -> String {
        self.name_addr()
            .map(|n| n.uri.to_string())
            .unwrap_or_else(|| self.contact.to_string())
    }

    /// Where requests to this binding go.
    pub fn target(&self) -> Option<Target> {
        let uri = self.name_addr()?.uri;
        let Some(sip) = uri.as_sip() else {
            return Some(Target {
                uri,
                behind_nat: true,
                addr: None,
                protocol: self.flow.protocol,
            });
        };
        let behind_nat = self.reg_id.is_some()
            || sip.param("ob").is_some()
            || sip.host.ip() != Some(self.flow.remote.ip());
        let port = sip.port.unwrap_or(if sip.secure { 5061 } else { 5060 });
        let addr = sip.host.ip().map(|ip| SocketAddr::new(ip, port));
        let protocol = match sip.transport() {
            Some(t) if t == "tcp" => Protocol::Tcp,
            Some(t) if t == "udp" => Protocol::Udp,
            _ => self.flow.protocol,
        };
        Some(Target {
            uri,
            behind_nat,
            addr,
            protocol,
        })
    }
}

const SHARDS: usize = 64;

/// All bindings of this node.
pub struct Location {
    shards: Vec<Mutex<HashMap<ExtensionId, Vec<Binding>>>>,
    dirty: Mutex<HashMap<DeviceId, ExtensionId>>,
    count: AtomicUsize,
    /// One write at a time: a flush at shutdown must wait for the periodic
    /// write in flight, or the bindings that write took could be lost when
    /// its task is stopped.
    writing: tokio::sync::Mutex<()>,
}

impl Default for Location {
    fn default() -> Self {
        Location {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            dirty: Mutex::new(HashMap::new()),
            count: AtomicUsize::new(0),
            writing: tokio::sync::Mutex::new(()),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Location {
    fn shard(&self, extension: ExtensionId) -> &Mutex<HashMap<ExtensionId, Vec<Binding>>> {
        &self.shards[(extension.0 as u64 as usize) % SHARDS]
    }

    /// Bindings right now.
    pub fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Unexpired bindings of every device of an extension, best q first.
    pub fn of_extension(&self, extension: ExtensionId, now: Millis) -> Vec<Binding> {
        let mut out: Vec<Binding> = lock(self.shard(extension))
            .get(&extension)
            .map(|v| v.iter().filter(|b| b.expires_at > now).cloned().collect())
            .unwrap_or_default();
        out.sort_by_key(|b| std::cmp::Reverse(b.q_milli));
        out
    }

    /// Unexpired bindings of one device.
    pub fn of_device(&self, extension: ExtensionId, device: DeviceId, now: Millis) -> Vec<Binding> {
        lock(self.shard(extension))
            .get(&extension)
            .map(|v| {
                v.iter()
                    .filter(|b| b.device == device && b.expires_at > now)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Makes `bindings` the device's whole set. A refresh that changes
    /// nothing but the expiry a little is not written to the store.
    pub fn replace_device(
        &self,
        extension: ExtensionId,
        device: DeviceId,
        mut bindings: Vec<Binding>,
    ) {
        let now = pbx_store::now_ms();
        let material = {
            let mut shard = lock(self.shard(extension));
            let list = shard.entry(extension).or_default();
            let old: Vec<Binding> = list
                .iter()
                .filter(|b| b.device == device)
                .cloned()
                .collect();
            for b in &mut bindings {
                let same = old
                    .iter()
                    .find(|o| o.key == b.key && o.contact == b.contact && o.flow == b.flow);
                b.stored_expires_at = same.and_then(|o| o.stored_expires_at);
            }
            let changed_keys = old.len() != bindings.len()
                || old.iter().any(|o| !bindings.iter().any(|b| b.key == o.key));
            let material = changed_keys || bindings.iter().any(|b| b.needs_write(now));
            list.retain(|b| b.device != device);
            let (removed, added) = (old.len(), bindings.len());
            // Exactly what is needed: most extensions hold one or two bindings,
            // and a Vec's default growth would keep room for four.
            list.reserve_exact(added);
            list.extend(bindings);
            if list.is_empty() {
                shard.remove(&extension);
            }
            self.count.fetch_add(added, Ordering::Relaxed);
            self.count.fetch_sub(removed, Ordering::Relaxed);
            material
        };
        if material {
            lock(&self.dirty).insert(device, extension);
        }
    }

    /// Removes and returns bindings that expired at `now`.
    pub fn sweep(&self, now: Millis) -> Vec<Binding> {
        self.remove_where(|b| b.expires_at <= now)
    }

    /// Drops every binding of devices that no longer exist (or whose customer
    /// is no longer active), keeping the rest.
    pub fn retain_devices(&self, keep: impl Fn(&Binding) -> bool) -> Vec<Binding> {
        self.remove_where(|b| !keep(b))
    }

    /// Removes and returns the bindings `gone` picks, marking their devices
    /// dirty. Lists are changed in place: rebuilding them would leave each
    /// with room for four bindings where most hold one.
    fn remove_where(&self, gone: impl Fn(&Binding) -> bool) -> Vec<Binding> {
        let mut removed = Vec::new();
        for shard in &self.shards {
            let mut shard = lock(shard);
            shard.retain(|_, list| {
                removed.extend(list.extract_if(.., |b| gone(b)));
                if list.capacity() > list.len() * 2 {
                    list.shrink_to_fit();
                }
                !list.is_empty()
            });
        }
        self.count.fetch_sub(removed.len(), Ordering::Relaxed);
        let mut dirty = lock(&self.dirty);
        for b in &removed {
            dirty.insert(b.device, b.extension);
        }
        removed
    }

    /// Loads what the store kept for this node (after a restart).
    pub fn restore(
        &self,
        stored: Vec<StoredBinding>,
        reseller_of: impl Fn(CustomerId) -> Option<ResellerId>,
    ) {
        let mut by_device: HashMap<(ExtensionId, DeviceId), Vec<Binding>> = HashMap::new();
        for s in stored {
            let Some(b) = from_stored(&s, &reseller_of) else {
                continue;
            };
            by_device
                .entry((b.extension, b.device))
                .or_default()
                .push(b);
        }
        for ((extension, device), bindings) in by_device {
            let mut shard = lock(self.shard(extension));
            let list = shard.entry(extension).or_default();
            list.retain(|b| b.device != device);
            self.count.fetch_add(bindings.len(), Ordering::Relaxed);
            list.reserve_exact(bindings.len());
            list.extend(bindings);
        }
    }

    /// Forgets which devices changed (a node without storage has nowhere to write them).
    pub fn clear_dirty(&self) {
        lock(&self.dirty).clear();
    }

    /// Writes every dirty device's bindings to the store. On failure the
    /// devices stay dirty and the next call tries again.
    pub async fn persist(
        &self,
        store: &Store,
        node_id: &str,
    ) -> Result<usize, pbx_store::StoreError> {
        let _writing = self.writing.lock().await;
        let dirty: Vec<(DeviceId, ExtensionId)> = lock(&self.dirty).drain().collect();
        if dirty.is_empty() {
            return Ok(0);
        }
        let mut rows = Vec::new();
        let devices: Vec<DeviceId> = dirty.iter().map(|(d, _)| *d).collect();
        let wanted: HashSet<DeviceId> = devices.iter().copied().collect();
        let extensions: HashSet<ExtensionId> = dirty.iter().map(|(_, e)| *e).collect();
        for extension in extensions {
            if let Some(list) = lock(self.shard(extension)).get(&extension) {
                rows.extend(
                    list.iter()
                        .filter(|b| wanted.contains(&b.device))
                        .map(|b| to_stored(b, node_id)),
                );
            }
        }
        match store
            .registrations()
            .replace(&Principal::system(), &devices, &rows)
            .await
        {
            Ok(()) => {
                self.written(&rows);
                Ok(devices.len())
            }
            Err(e) => {
                let mut d = lock(&self.dirty);
                for (device, extension) in dirty {
                    d.entry(device).or_insert(extension);
                }
                Err(e)
            }
        }
    }

    /// Remembers what the store now holds, so that refreshes that change
    /// little are not written again (without it, every refresh of a phone
    /// registered since the start was written).
    fn written(&self, rows: &[StoredBinding]) {
        for row in rows {
            let mut shard = lock(self.shard(row.extension_id));
            let Some(list) = shard.get_mut(&row.extension_id) else {
                continue;
            };
            for b in list
                .iter_mut()
                .filter(|b| b.device == row.device_id && *b.key == *row.binding_key)
            {
                // A binding that moved meanwhile is dirty again and written
                // anew; its stored expiry is only a hint for refreshes.
                b.stored_expires_at = Some(row.expires_at);
            }
        }
    }
}

fn to_stored(b: &Binding, node_id: &str) -> StoredBinding {
    StoredBinding {
        customer_id: b.customer,
        extension_id: b.extension,
        device_id: b.device,
        binding_key: b.key.to_string(),
        contact: b.contact.to_string(),
        instance_id: b.instance.as_deref().map(str::to_owned),
        reg_id: b.reg_id.map(i64::from),
        transport: b.flow.protocol.name().to_owned(),
        source: b.flow.remote.to_string(),
        local: b.flow.local.to_string(),
        node_id: node_id.to_owned(),
        path: (!b.path.is_empty()).then(|| b.path.join(",")),
        call_id: b.call_id.to_string(),
        cseq: i64::from(b.cseq),
        q_milli: i64::from(b.q_milli),
        user_agent: b.user_agent.as_deref().map(str::to_owned),
        expires_at: b.expires_at,
        updated_at: pbx_store::now_ms(),
    }
}

fn from_stored(
    s: &StoredBinding,
    reseller_of: &impl Fn(CustomerId) -> Option<ResellerId>,
) -> Option<Binding> {
    let protocol = match s.transport.as_str() {
        "udp" => Protocol::Udp,
        "tcp" => Protocol::Tcp,
        _ => return None,
    };
    Some(Binding {
        reseller: reseller_of(s.customer_id)?,
        customer: s.customer_id,
        extension: s.extension_id,
        device: s.device_id,
        key: s.binding_key.as_str().into(),
        contact: NameAddr::parse(&s.contact).ok()?.to_string().into(),
        instance: s.instance_id.as_deref().map(Into::into),
        reg_id: s.reg_id.and_then(|r| u32::try_from(r).ok()),
        q_milli: u16::try_from(s.q_milli).unwrap_or(1000),
        flow: Flow {
            protocol,
            local: s.local.parse().ok()?,
            remote: s.source.parse().ok()?,
            conn: None,
        },
        call_id: s.call_id.as_str().into(),
        cseq: u32::try_from(s.cseq).unwrap_or(0),
        expires_at: s.expires_at,
        user_agent: s.user_agent.as_deref().map(Into::into),
        path: s
            .path
            .as_deref()
            .map(|p| p.split(',').map(Into::into).collect())
            .unwrap_or_default(),
        stored_expires_at: Some(s.expires_at),
        application: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn binding(device: i64, contact: &str, source: &str, expires_at: Millis) -> Binding {
        Binding {
            reseller: ResellerId(1),
            customer: CustomerId(1),
            extension: ExtensionId(10),
            device: DeviceId(device),
            key: contact.into(),
            contact: NameAddr::parse(contact)
                .expect("contact")
                .to_string()
                .into(),
            instance: None,
            reg_id: None,
            q_milli: 1000,
            flow: Flow {
                protocol: Protocol::Udp,
                local: "127.0.0.1:5060".parse().expect("addr"),
                remote: source.parse().expect("addr"),
                conn: None,
            },
            call_id: "c".into(),
            cseq: 1,
            expires_at,
            user_agent: None,
            path: Box::default(),
            stored_expires_at: None,
            application: false,
        }
    }

    #[test]
    fn nat_is_detected_from_the_contact_address() {
        let target = |b: Binding| b.target().expect("target");
        let direct = target(binding(1, "<sip:101@192.0.2.5:5062>", "192.0.2.5:5060", 10));
        assert!(!direct.behind_nat, "same IP: the contact's port is used");
        assert_eq!(direct.addr, Some("192.0.2.5:5062".parse().expect("addr")));
        assert_eq!(direct.uri.to_string(), "sip:101@192.0.2.5:5062");
        let natted = target(binding(
            1,
            "<sip:101@10.0.0.5:5060>",
            "198.51.100.9:40000",
            10,
        ));
        assert!(
            natted.behind_nat,
            "private contact behind NAT goes down the flow"
        );
        let named = target(binding(
            1,
            "<sip:101@phone.example.net>",
            "198.51.100.9:5060",
            10,
        ));
        assert!(named.behind_nat, "a host name is never resolved");
        let ob = target(binding(
            1,
            "<sip:101@192.0.2.5:5062;ob>",
            "192.0.2.5:5062",
            10,
        ));
        assert!(ob.behind_nat);
        let tcp = target(binding(
            1,
            "<sip:101@192.0.2.5;transport=tcp>",
            "192.0.2.5:5060",
            10,
        ));
        assert_eq!(tcp.protocol, Protocol::Tcp);
    }

    #[test]
    fn replace_sweep_and_dirty_tracking() {
        let loc = Location::default();
        loc.replace_device(
            ExtensionId(10),
            DeviceId(1),
            vec![
                binding(1, "<sip:a@192.0.2.1>", "192.0.2.1:5060", 100),
                binding(1, "<sip:b@192.0.2.1>", "192.0.2.1:5060", 300),
            ],
        );
        loc.replace_device(
            ExtensionId(10),
            DeviceId(2),
            vec![binding(2, "<sip:c@192.0.2.2>", "192.0.2.2:5060", 300)],
        );
        assert_eq!(loc.len(), 3);
        assert_eq!(loc.of_extension(ExtensionId(10), 0).len(), 3);
        assert_eq!(
            loc.of_device(ExtensionId(10), DeviceId(1), 200).len(),
            1,
            "expired ones are not returned"
        );
        let gone = loc.sweep(200);
        assert_eq!(gone.len(), 1);
        assert_eq!(loc.len(), 2);
        loc.replace_device(ExtensionId(10), DeviceId(1), Vec::new());
        assert_eq!(loc.len(), 1);
        assert_eq!(lock(&loc.dirty).len(), 2);
    }

    /// A phone that refreshes its registration, unchanged, is written once,
    /// not at every refresh (the stored expiry is remembered after a write).
    async fn an_unchanged_refresh_is_not_written_again(db: pbx_store::testing::TestDb) {
        let t = pbx_store::testing::TwoTenants::create(&db.store).await;
        let loc = Location::default();
        let now = pbx_store::now_ms();
        let phone = |expires_at: Millis| {
            let mut b = binding(
                t.device_a.id.0,
                "<sip:a@192.0.2.1>",
                "192.0.2.1:5060",
                expires_at,
            );
            b.customer = t.customer_a.id;
            b.extension = t.extension_a.id;
            vec![b]
        };
        loc.replace_device(t.extension_a.id, t.device_a.id, phone(now + 3_600_000));
        assert_eq!(loc.persist(&db.store, "n1").await.expect("persist"), 1);
        // Refreshed a minute later: the stored expiry is close enough.
        loc.replace_device(t.extension_a.id, t.device_a.id, phone(now + 3_660_000));
        assert_eq!(loc.persist(&db.store, "n1").await.expect("persist"), 0);
        // Refreshed much later: written again, once.
        loc.replace_device(t.extension_a.id, t.device_a.id, phone(now + 7_200_000));
        assert_eq!(loc.persist(&db.store, "n1").await.expect("persist"), 1);
        loc.replace_device(t.extension_a.id, t.device_a.id, phone(now + 7_210_000));
        assert_eq!(loc.persist(&db.store, "n1").await.expect("persist"), 0);
        let stored = db
            .store
            .registrations()
            .load_for_node(&Principal::system(), "n1", now)
            .await
            .expect("load");
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].expires_at, now + 7_200_000);
    }

    pbx_store::both_engines!(an_unchanged_refresh_is_not_written_again);
}
