//! The internal event bus: what happened on the SIP side, for call records,
//! the console's live views and the API's event stream. Publishing never
//! blocks the SIP path; a subscriber that falls behind is told how much it
//! missed (broadcast lag) and must resynchronise.

use pbx_store::{CustomerId, DeviceId, ExtensionId, Millis, ResellerId};
use serde::Serialize;
use tokio::sync::broadcast;

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
        caller: String,
        callee: String,
        caller_extension: Option<ExtensionId>,
        callee_extension: Option<ExtensionId>,
        caller_device: Option<DeviceId>,
        at: Millis,
    },
    CallAnswered {
        reseller: ResellerId,
        customer: CustomerId,
        call_id: String,
        callee_device: Option<DeviceId>,
        at: Millis,
    },
    CallEnded {
        reseller: ResellerId,
        customer: CustomerId,
        call_id: String,
        outcome: CallOutcome,
        sip_status: u16,
        hangup: Option<HangupSide>,
        at: Millis,
    },
}

/// Publishes events to whoever listens.
#[derive(Clone)]
pub struct EventBus {
    sender: broadcast::Sender<SipEvent>,
}

impl Default for EventBus {
    fn default() -> Self {
        EventBus {
            sender: broadcast::channel(65_536).0,
        }
    }
}

impl EventBus {
    pub fn publish(&self, event: SipEvent) {
        // No subscriber is fine: nobody is interested yet.
        let _ = self.sender.send(event);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<SipEvent> {
        self.sender.subscribe()
    }
}
