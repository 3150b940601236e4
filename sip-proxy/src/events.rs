//! The internal event bus: what happened on the SIP side, for call records,
//! alerts, the console's live views and the API's event stream. Publishing
//! never blocks the SIP path. Call records and alerts each get their events
//! on a queue of their own, so that a registration storm never pushes a call
//! or an alert out; live subscribers share a bounded backlog, and one that
//! falls behind is told how much it missed (broadcast lag) and must
//! resynchronise.

use pbx_store::call_records::{CallDirection, Disposition};
use pbx_store::limits::Refusal;
use pbx_store::{CustomerId, DeviceId, ExtensionId, Millis, ResellerId, TrunkId};
use serde::Serialize;
use tokio::sync::{broadcast, mpsc};

use std::sync::Arc;

use crate::admission::Admission;
use crate::recorder::RecorderHandle;

/// How a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallOutcome {
    Answered,
    Busy,
    NoAnswer,
    Cancelled,
    Failed,
}

/// Who ended an answered call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HangupSide {
    Caller,
    Callee,
    System,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SipEvent {
    DeviceRegistered {
        reseller: ResellerId,
        customer: CustomerId,
        extension: ExtensionId,
        device: DeviceId,
        contact: String,
        expires_at: Millis,
    },
    DeviceUnregistered {
        reseller: ResellerId,
        customer: CustomerId,
        extension: ExtensionId,
        device: DeviceId,
        contact: String,
        /// "unregistered" (by the phone) or "expired".
        reason: &'static str,
    },
    CallStarted {
        reseller: ResellerId,
        customer: CustomerId,
        call_id: String,
        /// The caller's From tag: with the Call-ID, it names the call.
        caller_tag: String,
        caller: String,
        callee: String,
        caller_extension: Option<ExtensionId>,
        callee_extension: Option<ExtensionId>,
        caller_device: Option<DeviceId>,
        direction: CallDirection,
        /// The E.164 number called (without '+') when the call leaves the platform.
        destination: Option<String>,
        /// Refused without a transaction: the request's retransmissions are
        /// refused again and must not open a second record.
        stateless: bool,
        at: Millis,
    },
    CallAnswered {
        reseller: ResellerId,
        customer: CustomerId,
        call_id: String,
        caller_tag: String,
        callee_device: Option<DeviceId>,
        /// The extension whose device answered.
        callee_extension: Option<ExtensionId>,
        /// The carrier trunk the call went out on, for calls to the public network.
        trunk: Option<TrunkId>,
        at: Millis,
        /// Its recording, if it is recorded (internal: the audio's key).
        #[serde(skip)]
        recording: Option<pbx_store::call_recordings::NewRecording>,
    },
    CallEnded {
        reseller: ResellerId,
        customer: CustomerId,
        call_id: String,
        caller_tag: String,
        outcome: CallOutcome,
        sip_status: u16,
        hangup: Option<HangupSide>,
        /// Why the proxy ended the call when no BYE did (`session_expired`,
        /// `max_duration`).
        reason: Option<&'static str>,
        /// The trunk a call to the public network was last tried on (None:
        /// none, or as the answer said).
        trunk: Option<TrunkId>,
        /// When it ended: for calls the proxy ends, the last sign of life.
        at: Millis,
        /// What the relay saw of an anchored call's media.
        media: Option<Box<pbx_store::media::MediaFigures>>,
    },
    /// A forward of `by_extension` sends the call to a number outside: its
    /// outbound leg, billed to the customer, starts (its answer and end are
    /// the call's).
    CallForwardedOut {
        reseller: ResellerId,
        customer: CustomerId,
        call_id: String,
        caller_tag: String,
        by_extension: ExtensionId,
        /// The forward's target as configured.
        callee: String,
        /// The E.164 number (without '+').
        destination: String,
        at: Millis,
    },
    /// A carrier delivered a call for a number no customer holds (SIP 404).
    CallUnrouted {
        trunk: TrunkId,
        call_id: String,
        caller: String,
        /// The number as the carrier sent it.
        called: String,
        /// Where the carrier sent from.
        source: String,
        at: Millis,
    },
    /// A call was refused by a fraud or cost limit (SIP 403): an alert.
    LimitReached {
        reseller: ResellerId,
        customer: CustomerId,
        call_id: String,
        /// Which limit: `concurrent`, `attempts`, `spend`, `international`, `premium`.
        limit: Refusal,
        /// The E.164 number dialled (without '+').
        destination: String,
        at: Millis,
    },
    /// The abuse guard banned a source (operator's stream; the customer's
    /// too when its accounts were guessed at).
    SourceBanned {
        /// An IPv4 address or an IPv6 /64.
        source: String,
        reason: pbx_store::abuse::BanReason,
        level: u32,
        failures: u32,
        reseller: Option<ResellerId>,
        customer: Option<CustomerId>,
        until: Millis,
        at: Millis,
    },
    /// An account came under a password guess from many sources and is
    /// protected: until `until` it authenticates only from sources it
    /// registered from before.
    AccountProtected {
        reseller: ResellerId,
        customer: CustomerId,
        device: DeviceId,
        sip_user: String,
        failures: u32,
        sources: u32,
        until: Millis,
        at: Millis,
    },
    /// A call to the public network set off a toll-fraud alarm; `blocked`:
    /// it was refused (403), else it went on.
    TollFraudSuspected {
        reseller: ResellerId,
        customer: CustomerId,
        extension: Option<ExtensionId>,
        device: DeviceId,
        /// Where the device's INVITE came from (address and port).
        source: String,
        call_id: String,
        alarm: crate::fraud::Alarm,
        blocked: bool,
        /// The E.164 number dialled (without '+').
        destination: String,
        at: Millis,
    },
    /// A device called a country (a calling code) or premium-rate number
    /// for the first time: it is known from now on.
    DestinationLearned {
        reseller: ResellerId,
        customer: CustomerId,
        device: DeviceId,
        destination: String,
        at: Millis,
    },
    /// A call's record was stored and priced (look it up by `record_uid`).
    RecordRated {
        reseller: ResellerId,
        customer: CustomerId,
        call_id: String,
        record_uid: String,
        direction: CallDirection,
        disposition: Disposition,
        billable_ms: i64,
        at: Millis,
    },
}

impl SipEvent {
    /// Whether the alerts task acts on it (stores it, sends webhooks).
    pub fn is_alert(&self) -> bool {
        matches!(
            self,
            SipEvent::CallUnrouted { .. }
                | SipEvent::LimitReached { .. }
                | SipEvent::AccountProtected { .. }
                | SipEvent::TollFraudSuspected { .. }
                | SipEvent::DestinationLearned { .. }
        )
    }

    /// The event's type, as its `type` field names it.
    pub fn kind(&self) -> &'static str {
        match self {
            SipEvent::DeviceRegistered { .. } => "device_registered",
            SipEvent::DeviceUnregistered { .. } => "device_unregistered",
            SipEvent::CallStarted { .. } => "call_started",
            SipEvent::CallAnswered { .. } => "call_answered",
            SipEvent::CallEnded { .. } => "call_ended",
            SipEvent::RecordRated { .. } => "record_rated",
            SipEvent::LimitReached { .. } => "limit_reached",
            SipEvent::CallUnrouted { .. } => "call_unrouted",
            SipEvent::CallForwardedOut { .. } => "call_forwarded_out",
            SipEvent::SourceBanned { .. } => "source_banned",
            SipEvent::AccountProtected { .. } => "account_protected",
            SipEvent::TollFraudSuspected { .. } => "toll_fraud_suspected",
            SipEvent::DestinationLearned { .. } => "destination_learned",
        }
    }
}

#[cfg(test)]
mod kind_tests {
    #[test]
    fn kind_is_the_serialised_type() {
        let e = super::SipEvent::CallAnswered {
            reseller: pbx_store::ResellerId(1),
            customer: pbx_store::CustomerId(2),
            call_id: "c".into(),
            caller_tag: "t".into(),
            callee_device: None,
            callee_extension: None,
            trunk: None,
            at: 0,
            recording: None,
        };
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["type"], e.kind());
    }
}

/// Events a live subscriber may fall behind by before it is told it lagged.
/// Small on purpose: the backlog keeps the newest events alive (and the
/// broadcast allocates every slot up front), and the live views are fed by
/// tasks that keep up.
const LIVE_BACKLOG: usize = 4096;

/// Alert events waiting for the alerts task; beyond it (a flood the alerts
/// task would throttle anyway) they are dropped and counted.
pub const ALERT_QUEUE: usize = 4096;

/// Publishes events to whoever listens, call events to the call recorder,
/// which must never miss one (its channel is not lossy), and alert events to
/// the alerts task.
#[derive(Clone)]
pub struct EventBus {
    sender: broadcast::Sender<Arc<SipEvent>>,
    recorder: Option<RecorderHandle>,
    admission: Option<Arc<Admission>>,
    alerts: Option<mpsc::Sender<Arc<SipEvent>>>,
    alerts_dropped: Arc<std::sync::atomic::AtomicU64>,
}

impl Default for EventBus {
    fn default() -> Self {
        EventBus {
            sender: broadcast::channel(LIVE_BACKLOG).0,
            recorder: None,
            admission: None,
            alerts: None,
            alerts_dropped: Arc::default(),
        }
    }
}

impl EventBus {
    /// The same bus, also feeding the call recorder (which may itself
    /// publish on the bus it was started with).
    pub fn with_recorder(self, recorder: RecorderHandle) -> EventBus {
        EventBus {
            recorder: Some(recorder),
            ..self
        }
    }

    /// The same bus, also telling `admission` when outbound calls are
    /// answered and end (so every end gives back what the call held).
    pub fn with_admission(self, admission: Arc<Admission>) -> EventBus {
        EventBus {
            admission: Some(admission),
            ..self
        }
    }

    /// The same bus, also queueing alert events ([`SipEvent::is_alert`]) for
    /// the alerts task.
    pub fn with_alerts(self, alerts: mpsc::Sender<Arc<SipEvent>>) -> EventBus {
        EventBus {
            alerts: Some(alerts),
            ..self
        }
    }

    /// Alert events dropped because the alerts task was that far behind.
    pub fn alerts_dropped(&self) -> u64 {
        self.alerts_dropped
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn publish(&self, event: SipEvent) {
        if let Some(admission) = &self.admission {
            match &event {
                SipEvent::CallStarted {
                    call_id,
                    caller_tag,
                    caller_extension: Some(extension),
                    stateless: false,
                    ..
                } => admission.joined(&(call_id.clone(), caller_tag.clone()), *extension),
                SipEvent::CallAnswered {
                    call_id,
                    caller_tag,
                    callee_extension,
                    at,
                    ..
                } => {
                    let key = (call_id.clone(), caller_tag.clone());
                    admission.answered(&key, *at);
                    if let Some(extension) = callee_extension {
                        admission.joined(&key, *extension);
                    }
                }
                SipEvent::CallEnded {
                    call_id,
                    caller_tag,
                    at,
                    ..
                } => admission.ended(&(call_id.clone(), caller_tag.clone()), *at),
                _ => {}
            }
        }
        if let Some(recorder) = &self.recorder {
            if matches!(
                event,
                SipEvent::CallStarted { .. }
                    | SipEvent::CallForwardedOut { .. }
                    | SipEvent::CallAnswered { .. }
                    | SipEvent::CallEnded { .. }
            ) {
                recorder.event(event.clone());
            }
        }
        let event = Arc::new(event);
        if let Some(alerts) = &self.alerts {
            if event.is_alert() && alerts.try_send(event.clone()).is_err() {
                let dropped = self
                    .alerts_dropped
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if dropped.is_multiple_of(1000) {
                    tracing::warn!(
                        dropped = dropped + 1,
                        "alert events dropped: the alerts task is behind"
                    );
                }
            }
        }
        // No subscriber is fine: nobody is interested yet.
        let _ = self.sender.send(event);
    }

    pub fn recorder(&self) -> Option<&RecorderHandle> {
        self.recorder.as_ref()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<SipEvent>> {
        self.sender.subscribe()
    }
}
