//! The guard and the store: this node's decisions written (and announced
//! on the event bus), every node's decisions and the administrators' unbans,
//! lifted protections and allow lists read back whenever the store says
//! they changed. Writes are retried while the database is away; the node
//! enforces its own decisions meanwhile.

use std::sync::Arc;
use std::time::Duration;

use pbx_store::abuse::{NewBan, NewProtection};
use pbx_store::changes::Change;
use pbx_store::{Principal, Store};
use tokio::sync::broadcast::error::RecvError;

use super::Report;
use crate::core::Core;
use crate::events::SipEvent;

/// Loads what is in force into the node's guard.
pub async fn load(core: &Core, store: &Store) -> pbx_store::Result<()> {
    let now = pbx_store::now_ms();
    let state = store
        .guard()
        .state(
            &Principal::system(),
            now,
            core.guard.config().escalation_window,
        )
        .await?;
    core.guard.load(state, now);
    Ok(())
}

/// Reloads on every change of bans, allow lists or protections; several
/// changes close together cost one reload.
pub async fn follow(core: Arc<Core>, store: Store) {
    let mut changes = store.changes().subscribe();
    // Whatever changed before the subscription is in this load.
    if let Err(e) = load(&core, &store).await {
        tracing::warn!(error = %e, "abuse guard not reloaded; the next change retries");
    }
    loop {
        match changes.recv().await {
            Ok(Change::Guard | Change::Resync) | Err(RecvError::Lagged(_)) => {}
            Ok(_) => continue,
            Err(RecvError::Closed) => return,
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        while changes.try_recv().is_ok() {}
        if let Err(e) = load(&core, &store).await {
            tracing::warn!(error = %e, "abuse guard not reloaded; the next change retries");
        }
    }
}

/// Announces the guard's new decisions on the event bus and writes them
/// to the store; those that could not be written are kept for the next call.
pub fn publish(core: &Arc<Core>, store: Option<&Store>) {
    let mut reports = core.guard.take_reports();
    for report in &reports {
        core.events.publish(event(report));
    }
    let Some(store) = store else { return };
    reports.extend(core.guard.take_retries());
    if reports.is_empty() {
        return;
    }
    let (core, store) = (core.clone(), store.clone());
    tokio::spawn(async move {
        let mut unwritten = Vec::new();
        for report in reports {
            if let Err(e) = write(&core, &store, &report).await {
                tracing::warn!(error = %e, "abuse guard decision not stored yet; will retry");
                unwritten.push(report);
            }
        }
        if !unwritten.is_empty() {
            tokio::time::sleep(Duration::from_secs(2)).await;
            core.guard.requeue(unwritten);
        }
    });
}

/// Writes the decisions not stored yet, waiting for them (at shutdown: a
/// ban or protection decided just before must hold on the other nodes).
pub async fn flush(core: &Arc<Core>, store: &Store) {
    let mut reports = core.guard.take_reports();
    for report in &reports {
        core.events.publish(event(report));
    }
    reports.extend(core.guard.take_retries());
    for report in reports {
        if let Err(e) = write(core, store, &report).await {
            tracing::warn!(error = %e, "abuse guard decision not stored at shutdown");
        }
    }
}

fn event(report: &Report) -> SipEvent {
    match report {
        Report::Banned {
            source,
            reason,
            level,
            at,
            until,
            failures,
            reseller,
            customer,
        } => SipEvent::SourceBanned {
            source: source.to_string(),
            reason: *reason,
            level: *level,
            failures: *failures,
            reseller: *reseller,
            customer: *customer,
            until: *until,
            at: *at,
        },
        Report::Protected {
            device,
            customer,
            reseller,
            sip_user,
            failures,
            sources,
            at,
            until,
        } => SipEvent::AccountProtected {
            reseller: *reseller,
            customer: *customer,
            device: *device,
            sip_user: sip_user.clone(),
            failures: *failures,
            sources: *sources,
            until: *until,
            at: *at,
        },
    }
}

async fn write(core: &Core, store: &Store, report: &Report) -> pbx_store::Result<()> {
    let system = Principal::system();
    let node_id = core.config.node_id.clone();
    match report {
        Report::Banned {
            source,
            reason,
            level,
            at,
            until,
            failures,
            reseller,
            customer,
        } => {
            store
                .sip_bans()
                .record(
                    &system,
                    &NewBan {
                        source: *source,
                        reason: *reason,
                        level: *level,
                        failures: *failures,
                        reseller: *reseller,
                        customer: *customer,
                        node_id,
                        banned_at: *at,
                        until: *until,
                    },
                )
                .await?;
            core.guard.ban_stored(*source);
        }
        Report::Protected {
            device,
            customer,
            reseller,
            sip_user,
            failures,
            sources,
            at,
            until,
        } => {
            store
                .account_protections()
                .record(
                    &system,
                    &NewProtection {
                        reseller: *reseller,
                        customer: *customer,
                        device: *device,
                        sip_user: sip_user.clone(),
                        failures: *failures,
                        sources: *sources,
                        node_id,
                        since: *at,
                        until: *until,
                    },
                )
                .await?;
            core.guard.protection_stored(*device);
        }
    }
    Ok(())
}
