//! The SIP side of the platform: transports, the RFC 3261 transaction layer,
//! the registrar with digest authentication, and the stateful proxy that
//! connects the extensions of one customer, sealed from every other customer.
//!
//! Layers, bottom up, each using only those below it: `transport`
//! (UDP/TCP flows) → `node` (this node's identity and addresses, sending,
//! local and stateless responses) → `core` (what the handlers share: request
//! contexts, transaction tables, timers, and the services below) → the
//! handlers: `registrar`, `routing` (the PBX's decisions: a request becomes a
//! plan of targets and steps, or a refusal), `proxy` (RFC 3261 §16 carrying
//! out plans, with `anchoring` hooking SDP into the media relay),
//! `trunk_registration` → `dispatch` (parses, screens, matches transactions
//! and hands each message and timer to its handler). Beside them:
//! `directory` (who exists, in memory), `location` (where devices are),
//! `digest` (authentication mechanics), `dialogs` (calls in progress) and
//! `events` (what happened, for call records and live views);
//! `recorder` turns call events into call records, exactly once, through the
//! node's durable `journal`; `recording` decides which calls the relay
//! records. Abuse: `guard` (wrong-password accounting, bans
//! dropped before parsing, account protection, scanner and flood defence,
//! shared with the other nodes through the store), `credentials` (the one
//! digest check the registrar and the proxy share), `admission` (hard fraud
//! and cost limits) and `fraud` (toll-fraud alarms at call setup); `alerts`
//! stores and sends what they report.
//! The SIP path never waits for the database: the directory follows the
//! store's change feed, and registrations are written behind, in batches.

#![forbid(unsafe_code)]

pub mod admission;
mod alerts;
pub mod anchoring;
mod carrier;
pub mod config;
mod context;
pub mod core;
mod credentials;
pub mod dialogs;
pub mod digest;
pub mod directory;
mod dispatch;
pub mod events;
pub mod fraud;
pub mod guard;
pub mod journal;
pub mod location;
pub mod node;
mod proxy;
pub mod recorder;
pub mod recording;
pub mod registrar;
mod routing;
mod sharded;
pub mod stats;
pub mod timer;
pub mod transaction;
pub mod transport;
mod trunk_registration;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use pbx_store::{Principal, Store};

pub use config::{RegistrationPolicy, SipConfig};
pub use events::{EventBus, SipEvent};

use crate::core::Core;
use crate::directory::Directory;
use crate::dispatch::Dispatcher;
use crate::events::HangupSide;
use crate::location::Location;
use crate::recorder::RecorderConfig;
use crate::stats::Stats;
use crate::transport::{Inbound, Transports};

/// A running SIP node.
pub struct SipProxy {
    dispatcher: Arc<Dispatcher>,
    /// None for a node without storage (tests of the SIP layers alone).
    store: Option<Store>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl SipProxy {
    /// Binds the sockets, loads the directory and this node's stored
    /// registrations, and starts serving. Errors name what failed.
    pub async fn start(config: SipConfig, store: Store) -> Result<SipProxy, String> {
        let directory = Arc::new(Directory::default());
        directory
            .load_all(&store)
            .await
            .map_err(|e| format!("cannot load the SIP directory: {e}"))?;
        let location = Arc::new(Location::default());
        let stored = store
            .registrations()
            .load_for_node(&Principal::system(), &config.node_id, pbx_store::now_ms())
            .await
            .map_err(|e| format!("cannot load stored registrations: {e}"))?;
        // Where the restored phones registered from: known, trusted sources.
        let registered_from: Vec<(pbx_store::DeviceId, std::net::IpAddr)> = stored
            .iter()
            .filter_map(|s| {
                s.source
                    .parse::<SocketAddr>()
                    .ok()
                    .map(|a| (s.device_id, a.ip()))
            })
            .collect();
        if !stored.is_empty() {
            location.restore(stored, |customer| {
                directory.by_customer(customer).map(|t| t.reseller)
            });
            tracing::info!(bindings = location.len(), "registrations restored");
        }
        let mut recorder_config = RecorderConfig::new(config.spool_dir.clone(), &config.node_id);
        recorder_config.max_call_duration = config.max_call_duration;
        let (alerts_tx, alerts_rx) = tokio::sync::mpsc::channel(events::ALERT_QUEUE);
        let events = EventBus::default().with_alerts(alerts_tx);
        let (recorder, recorder_tasks) =
            recorder::start(recorder_config, store.clone(), events.clone())
                .map_err(|e| format!("cannot open the call-record spool: {e}"))?;
        let mut proxy = SipProxy::serve(
            config,
            directory.clone(),
            location,
            Some(store.clone()),
            events.with_recorder(recorder),
        )
        .await?;
        proxy.tasks.extend(recorder_tasks);
        let now = pbx_store::now_ms();
        for (device, ip) in registered_from {
            proxy.dispatcher.core.guard.restored(device, ip, now);
        }
        guard::sync::load(&proxy.dispatcher.core, &store)
            .await
            .map_err(|e| format!("cannot load the SIP bans and allow list: {e}"))?;
        proxy.tasks.push(tokio::spawn(guard::sync::follow(
            proxy.dispatcher.core.clone(),
            store.clone(),
        )));
        proxy.tasks.push(tokio::spawn(alerts::keep(
            alerts_rx,
            store.clone(),
            proxy.dispatcher.core.config.node_id.clone(),
        )));
        proxy.tasks.push(tokio::spawn(directory.follow(store)));
        Ok(proxy)
    }

    /// A node serving `directory` with no database behind it: nothing is
    /// persisted. For testing the SIP layers on their own.
    pub async fn start_without_store(
        config: SipConfig,
        directory: Arc<Directory>,
    ) -> Result<SipProxy, String> {
        SipProxy::serve(
            config,
            directory,
            Arc::new(Location::default()),
            None,
            EventBus::default(),
        )
        .await
    }

    async fn serve(
        config: SipConfig,
        directory: Arc<Directory>,
        location: Arc<Location>,
        store: Option<Store>,
        events: EventBus,
    ) -> Result<SipProxy, String> {
        let transports = Arc::new(Transports::bind(config.transports.clone()).await?);
        let core = Arc::new(Core::new(
            config,
            transports.clone(),
            directory,
            location,
            Arc::new(Stats::default()),
            events,
        ));
        let dispatcher = Arc::new(Dispatcher::new(core.clone()));
        transports.start(dispatcher.clone() as Arc<dyn Inbound>)?;
        let mut tasks = Vec::new();
        let timers = dispatcher.clone();
        tasks.push(tokio::spawn(async move {
            let fire = timers.clone();
            timers
                .core
                .timers
                .run(move |item| fire.on_timer(item))
                .await;
        }));
        tasks.push(tokio::spawn(housekeeping(
            dispatcher.clone(),
            store.clone(),
        )));
        Ok(SipProxy {
            dispatcher,
            store,
            tasks,
        })
    }

    /// Where this node's media application server listens: voicemail
    /// forwards ring it, and its requests (MWI) are trusted.
    pub fn set_applications(&self, at: SocketAddr) {
        let _ = self.dispatcher.core.applications.set(at);
    }

    /// How a colleague picks up the call (Call-ID, caller's tag) ringing
    /// at phones: they are cancelled and the call rings the application
    /// server as the user given; false when it is not ringing any more. For
    /// the application server to keep (it does not keep the proxy alive).
    pub fn pick_up_handle(&self) -> impl Fn(&str, &str, &str) -> bool + Send + Sync + 'static {
        let dispatcher = Arc::downgrade(&self.dispatcher);
        move |call_id, caller_tag, user| {
            let key = (call_id.to_owned(), caller_tag.to_owned());
            dispatcher
                .upgrade()
                .is_some_and(|d| proxy::pick_up(&d.core, &key, user))
        }
    }

    /// The node's audio store and recording announcement: without them,
    /// calls are not recorded and held parties hear the node's tune.
    pub fn set_audio(&self, audio: core::NodeAudio) {
        let _ = self.dispatcher.core.audio.set(audio);
    }

    /// The node's internals, for tests that look inside.
    pub fn core(&self) -> &Arc<Core> {
        &self.dispatcher.core
    }

    /// The node's registrar, for tests that look inside.
    pub fn registrar(&self) -> &registrar::Registrar {
        &self.dispatcher.registrar
    }

    pub fn udp_addrs(&self) -> Vec<SocketAddr> {
        self.dispatcher.core.node.transports.udp_addrs()
    }

    pub fn tcp_addrs(&self) -> Vec<SocketAddr> {
        self.dispatcher.core.node.transports.tcp_addrs()
    }

    /// Events of this node (registrations, calls).
    pub fn events(&self) -> &EventBus {
        &self.dispatcher.core.events
    }

    /// Counters and gauges for `/metrics`: (name, help, kind, value).
    pub fn metrics(&self) -> Vec<(String, &'static str, &'static str, u64)> {
        let mut out: Vec<(String, &'static str, &'static str, u64)> = self
            .dispatcher
            .core
            .stats
            .snapshot()
            .into_iter()
            .map(|(name, help, value)| (format!("pbx_sip_{name}_total"), help, "counter", value))
            .collect();
        let gauges = [
            (
                "pbx_sip_registered_contacts",
                "Contacts registered on this node.",
                self.dispatcher.core.location.len(),
            ),
            (
                "pbx_sip_transactions",
                "Server transactions in progress.",
                self.dispatcher.core.server_txns.len(),
            ),
            (
                "pbx_sip_client_transactions",
                "Client transactions in progress.",
                self.dispatcher.core.client_txns.len(),
            ),
            (
                "pbx_sip_dialogs",
                "Dialogs (calls and subscriptions) in progress.",
                self.dispatcher.core.dialogs.len(),
            ),
            (
                "pbx_sip_tcp_connections",
                "Open SIP TCP connections.",
                self.dispatcher.core.node.transports.tcp.open_connections(),
            ),
            (
                "pbx_sip_timers",
                "Timers waiting.",
                self.dispatcher.core.timers.len(),
            ),
            (
                "pbx_sip_banned_sources",
                "Sources this node drops (banned).",
                self.dispatcher.core.guard.banned(),
            ),
            (
                "pbx_sip_protected_accounts",
                "Accounts protected against a distributed password guess.",
                self.dispatcher.core.guard.protected(),
            ),
            (
                "pbx_sip_guard_sources",
                "Sources the abuse guard keeps a record of.",
                self.dispatcher.core.guard.tracked(),
            ),
        ];
        out.extend(
            gauges
                .into_iter()
                .map(|(n, h, v)| (n.to_owned(), h, "gauge", v as u64)),
        );
        let media = &self.dispatcher.core.media;
        let m = media.stats();
        let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        out.extend([
            (
                "pbx_media_relays".to_owned(),
                "Calls whose media this node relays.",
                "gauge",
                media.active_calls() as u64,
            ),
            (
                "pbx_sip_alerts_dropped_total".to_owned(),
                "Alert events dropped because the alerts task was behind.",
                "counter",
                self.dispatcher.core.events.alerts_dropped(),
            ),
            (
                "pbx_media_ports".to_owned(),
                "Relay ports in use.",
                "gauge",
                media.ports_in_use() as u64,
            ),
            (
                "pbx_media_packets_total".to_owned(),
                "RTP and RTCP packets relayed.",
                "counter",
                load(&m.forwarded_packets),
            ),
            (
                "pbx_media_bytes_total".to_owned(),
                "Bytes relayed.",
                "counter",
                load(&m.forwarded_bytes),
            ),
            (
                "pbx_media_dropped_garbage_total".to_owned(),
                "Datagrams on relay ports that were not RTP/RTCP.",
                "counter",
                load(&m.dropped_garbage),
            ),
            (
                "pbx_media_dropped_stranger_total".to_owned(),
                "Packets from addresses that are not the call's parties.",
                "counter",
                load(&m.dropped_stranger),
            ),
            (
                "pbx_media_dropped_no_route_total".to_owned(),
                "Packets with nobody to send them to yet (before an answer, a losing fork).",
                "counter",
                load(&m.dropped_no_route),
            ),
            (
                "pbx_media_dropped_oversize_total".to_owned(),
                "Datagrams larger than the relay carries.",
                "counter",
                load(&m.dropped_oversize),
            ),
            (
                "pbx_media_send_errors_total".to_owned(),
                "Packets the relay could not send.",
                "counter",
                load(&m.send_errors),
            ),
            (
                "pbx_media_ports_exhausted_total".to_owned(),
                "Calls refused (503) for want of relay ports.",
                "counter",
                load(&m.ports_exhausted),
            ),
            (
                "pbx_media_timeouts_total".to_owned(),
                "Calls ended because their media stopped.",
                "counter",
                load(&m.timeouts),
            ),
            (
                "pbx_media_replaced_by_music_total".to_owned(),
                "Packets of a holding phone not sent on: the held party heard music on hold.",
                "counter",
                load(&m.replaced_by_music),
            ),
            (
                "pbx_media_replaced_by_announcement_total".to_owned(),
                "Packets not sent on while both parties heard that their call is recorded.",
                "counter",
                load(&m.replaced_by_announcement),
            ),
            (
                "pbx_media_recordings_total".to_owned(),
                "Calls whose recording began.",
                "counter",
                load(&m.recordings_started),
            ),
            (
                "pbx_media_recording_errors_total".to_owned(),
                "Recordings that could not be made or stopped early (a file not written).",
                "counter",
                load(&m.recording_errors),
            ),
            (
                "pbx_media_recording_dropped_packets_total".to_owned(),
                "Packets a recording's writer was too far behind to take.",
                "counter",
                load(&m.recording_dropped_packets),
            ),
        ]);
        out
    }

    /// Writes pending registrations and finished call records to the store;
    /// called on shutdown. Calls still in progress stay in the journal and
    /// are closed as recovered by the next start.
    pub async fn flush(&self) {
        let Some(store) = &self.store else { return };
        if let Some(recorder) = self.dispatcher.core.events.recorder() {
            if !recorder.flush(Duration::from_secs(5)).await {
                tracing::warn!("call records not all written at shutdown; they stay spooled for the next start");
            }
        }
        guard::sync::flush(&self.dispatcher.core, store).await;
        for attempt in 0..3 {
            match self
                .dispatcher
                .core
                .location
                .persist(store, &self.dispatcher.core.config.node_id)
                .await
            {
                Ok(_) => return,
                Err(e) => {
                    tracing::warn!(error = %e, attempt, "could not write registrations");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }

    /// Stops the node's background work after flushing registrations.
    /// Ends every call's media (the node stops): recordings in progress
    /// are finished, so their files play to the end.
    pub async fn close_media(&self) {
        let recording = self.dispatcher.core.media.stats();
        let started = recording
            .recordings_started
            .load(std::sync::atomic::Ordering::Relaxed);
        self.dispatcher.core.media.clear();
        if started > 0 {
            // The writers notice at their next tick (100 ms).
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    pub async fn shutdown(self) {
        self.dispatcher.core.node.transports.stop_receiving();
        self.flush().await;
        for task in &self.tasks {
            task.abort();
        }
        // Every relay port is closed with the node (the calls' records are
        // closed by crash recovery at the next start, as for a crash).
        self.dispatcher.core.media.clear();
    }
}

/// Ends an answered call the proxy decided to end (no BYE came): a BYE
/// to both parties when `hang_up`, and the end of its record at `ended_at`.
fn end_call(
    core: &Core,
    d: dialogs::Dialog,
    ended_at: pbx_store::Millis,
    reason: &'static str,
    hang_up: bool,
) {
    if hang_up {
        proxy::hang_up(core, &d);
    }
    tracing::info!(call_id = %d.call_id, customer = %d.call.customer, reason, "call ended by the proxy");
    let media = anchoring::end(core, &d.call_id, &d.caller.tag);
    core.events.publish(SipEvent::CallEnded {
        reseller: d.call.reseller,
        customer: d.call.customer,
        call_id: d.call_id,
        caller_tag: d.caller.tag,
        outcome: events::CallOutcome::Answered,
        sip_status: 200,
        hangup: Some(HangupSide::System),
        reason: Some(reason),
        trunk: None,
        at: ended_at,
        media,
    });
}

/// Expiry of bindings and dialogs, removal of bindings whose device is gone,
/// and the batched writing of registrations.
async fn housekeeping(dispatcher: Arc<Dispatcher>, store: Option<Store>) {
    let core = dispatcher.core.clone();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut n: u64 = 0;
    loop {
        tick.tick().await;
        n += 1;
        let now = pbx_store::now_ms();
        if n.is_multiple_of(4) {
            dispatcher
                .trunk_registrations
                .sync(&core.directory.carriers(), now);
            let max_call =
                i64::try_from(core.config.max_call_duration.as_millis()).unwrap_or(i64::MAX);
            core.admission.sweep(now, max_call);
            core.guard.sweep(now);
            core.fraud.sweep(now);
        }
        dispatcher.trunk_registrations.tick(&core, now);
        guard::sync::publish(&core, store.as_ref());
        let reports = dispatcher.trunk_registrations.take_reports();
        if let (Some(store), false) = (&store, reports.is_empty()) {
            let store = store.clone();
            tokio::spawn(async move {
                for (trunk, registration) in reports {
                    if let Err(e) = store
                        .trunks()
                        .set_registration(&Principal::system(), trunk, &registration)
                        .await
                    {
                        tracing::warn!(error = %e, trunk = %trunk, "trunk registration state not stored");
                    }
                }
            });
        }
        if n.is_multiple_of(4) {
            let now = pbx_store::now_ms();
            for b in core.location.sweep(now) {
                core.events.publish(SipEvent::DeviceUnregistered {
                    reseller: b.reseller,
                    customer: b.customer,
                    extension: b.extension,
                    device: b.device,
                    contact: b.uri_text(),
                    reason: "expired",
                });
            }
            let directory = &core.directory;
            for b in core.location.retain_devices(|b| {
                directory
                    .by_customer(b.customer)
                    .is_some_and(|t| t.active && t.has_device(b.device))
            }) {
                core.events.publish(SipEvent::DeviceUnregistered {
                    reseller: b.reseller,
                    customer: b.customer,
                    extension: b.extension,
                    device: b.device,
                    contact: b.uri_text(),
                    reason: "removed",
                });
            }
            dispatcher.registrar.sweep(core.config.timers.t1x64());
            let max_call =
                i64::try_from(core.config.max_call_duration.as_millis()).unwrap_or(i64::MAX);
            for (d, ended_at, why) in core.dialogs.sweep(now, max_call) {
                if d.kind == dialogs::DialogKind::Invite && d.confirmed {
                    let hang_up = why == dialogs::EndReason::MaxDuration;
                    end_call(&core, d, ended_at, why.as_str(), hang_up);
                }
            }
            // Calls whose media stopped: ended, and billed to the last packet.
            for idle in core.media.idle() {
                match core.dialogs.remove_call(&idle.call.0, &idle.call.1) {
                    Some(d) => end_call(&core, d, idle.last_packet_ms, "media_timeout", true),
                    None => {
                        core.media.delete(&idle.call);
                    }
                }
            }
        }
        match &store {
            Some(store) => {
                if let Err(e) = core.location.persist(store, &core.config.node_id).await {
                    tracing::warn!(error = %e, "registrations not written yet; will retry");
                }
            }
            None => core.location.clear_dirty(),
        }
    }
}
