//! Change notification: tells every node of the platform that configuration
//! changed, so that in-memory copies (the SIP proxy's directory, console brand
//! caches) are refreshed at once.
//!
//! On PostgreSQL a change is sent with `pg_notify` inside the writing
//! transaction, so it is delivered exactly when the change commits, to every
//! node (including the writer) through `LISTEN`. On SQLite there is one
//! process, and the change goes through an in-process channel after commit.
//! A subscriber that falls behind, or a lost `LISTEN` connection, yields
//! [`Change::Resync`]: reload everything.

use serde::{Deserialize, Serialize};
use std::sync::{Arc, OnceLock};
use tokio::sync::broadcast;

use crate::{CustomerId, ExtensionId, ResellerId};

/// PostgreSQL channel the changes travel on.
pub(crate) const CHANNEL: &str = "pbx_changes";
const CAPACITY: usize = 1024;

/// What changed, as coarse as the caches need.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    /// A customer, or anything of it the SIP proxy holds: extensions, devices,
    /// credentials, forwarding, ring groups.
    Customer { customer: CustomerId },
    /// A reseller's settings or brand.
    Reseller { reseller: ResellerId },
    /// Phone numbers and their routing.
    Numbers,
    /// Carrier trunks and outbound routes.
    Trunks,
    /// Price plans and rates.
    PricePlans,
    /// SIP bans, the allow list or account protections (the abuse guard).
    Guard,
    /// The messages of an extension's voicemail box (its phones' lamps).
    Voicemail { extension: ExtensionId },
    /// Something may have been missed: reload everything.
    Resync,
}

/// The receiving end every node subscribes to.
#[derive(Clone)]
pub struct ChangeFeed {
    sender: broadcast::Sender<Change>,
    /// PostgreSQL URL to LISTEN on; None in single-process (SQLite) mode.
    listen_url: Option<Arc<str>>,
    listener_started: Arc<OnceLock<()>>,
}

impl std::fmt::Debug for ChangeFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeFeed")
            .field("distributed", &self.listen_url.is_some())
            .finish()
    }
}

impl ChangeFeed {
    pub(crate) fn local() -> Self {
        ChangeFeed {
            sender: broadcast::channel(CAPACITY).0,
            listen_url: None,
            listener_started: Arc::new(OnceLock::new()),
        }
    }

    pub(crate) fn postgres(url: &str) -> Self {
        ChangeFeed {
            listen_url: Some(url.into()),
            ..ChangeFeed::local()
        }
    }

    /// True when changes travel through the database (several nodes).
    pub(crate) fn is_distributed(&self) -> bool {
        self.listen_url.is_some()
    }

    /// Receives every change committed from now on. Must be called inside a
    /// tokio runtime (on PostgreSQL the first call starts the listener).
    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        let receiver = self.sender.subscribe();
        if let Some(url) = &self.listen_url {
            self.listener_started.get_or_init(|| {
                tokio::spawn(listen(url.clone(), self.sender.clone()));
            });
        }
        receiver
    }

    /// Delivers changes to this process's subscribers (single-process mode).
    pub(crate) fn publish_local(&self, changes: &[Change]) {
        for change in changes {
            // No subscriber is not an error: nobody caches anything yet.
            let _ = self.sender.send(change.clone());
        }
    }
}

async fn listen(url: Arc<str>, sender: broadcast::Sender<Change>) {
    let mut backoff = std::time::Duration::from_millis(200);
    loop {
        match sqlx::postgres::PgListener::connect(&url).await {
            Ok(mut listener) => {
                if let Err(e) = listener.listen(CHANNEL).await {
                    tracing::warn!(error = %e, "LISTEN for configuration changes failed");
                } else {
                    backoff = std::time::Duration::from_millis(200);
                    // Whatever happened while we were not listening is unknown.
                    let _ = sender.send(Change::Resync);
                    loop {
                        match listener.try_recv().await {
                            Ok(Some(n)) => match serde_json::from_str::<Change>(n.payload()) {
                                Ok(change) => {
                                    let _ = sender.send(change);
                                }
                                Err(e) => {
                                    tracing::warn!(error = %e, "unreadable change notification")
                                }
                            },
                            // The connection was lost; notifications may be missed.
                            Ok(None) => {
                                let _ = sender.send(Change::Resync);
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "change listener failed; reconnecting");
                                break;
                            }
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot connect the change listener"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(std::time::Duration::from_secs(10));
    }
}
