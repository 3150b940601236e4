//! Carries the SIP proxy's events into the API's event hub: the live event
//! stream and the active-calls view. The proxy's bus drops events for a
//! subscriber that falls behind rather than wait; if this relay ever does,
//! the stream says so with an `events_lost` event.

use std::sync::Arc;

use pbx_control_plane::api::events::{ActiveCall, EventHub, HeardBinding, Tenant};
use pbx_sip_proxy::SipEvent;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::broadcast::Receiver;

pub async fn relay(mut events: Receiver<Arc<SipEvent>>, hub: Arc<EventHub>) {
    loop {
        let first = events.recv().await;
        let mut next = Some(first);
        while let Some(got) = next.take() {
            match got {
                Ok(event) => forward(&hub, &event),
                Err(RecvError::Lagged(missed)) => lost(&hub, missed),
                Err(RecvError::Closed) => return,
            }
            next = match events.try_recv() {
                Ok(event) => Some(Ok(event)),
                Err(TryRecvError::Lagged(missed)) => Some(Err(RecvError::Lagged(missed))),
                Err(TryRecvError::Closed) => Some(Err(RecvError::Closed)),
                Err(TryRecvError::Empty) => None,
            };
        }
        // Let events gather: the SIP threads then publish without waking
        // this task each time (live views do not need the millisecond).
        tokio::time::sleep(GATHER).await;
    }
}

/// How long events gather between two turns of the relay.
const GATHER: std::time::Duration = std::time::Duration::from_millis(20);

fn lost(hub: &EventHub, missed: u64) {
    tracing::warn!(missed, "live event relay fell behind the SIP proxy");
    hub.publish(
        Tenant::everyone(),
        "events_lost",
        pbx_store::now_ms(),
        serde_json::json!({ "count": missed }),
    );
}

fn forward(hub: &EventHub, event: &SipEvent) {
    let now = pbx_store::now_ms();
    let (tenant, at) = match event {
        SipEvent::DeviceRegistered {
            reseller,
            customer,
            extension,
            device,
            contact,
            expires_at,
        } => {
            let heard = HeardBinding {
                extension_id: *extension,
                heard_at: now,
                expires_at: Some(*expires_at),
            };
            hub.binding_heard(*customer, *device, contact, heard);
            (Tenant::customer(*reseller, *customer), now)
        }
        SipEvent::DeviceUnregistered {
            reseller,
            customer,
            extension,
            device,
            contact,
            ..
        } => {
            let heard = HeardBinding {
                extension_id: *extension,
                heard_at: now,
                expires_at: None,
            };
            hub.binding_heard(*customer, *device, contact, heard);
            (Tenant::customer(*reseller, *customer), now)
        }
        SipEvent::CallStarted {
            reseller,
            customer,
            call_id,
            caller_tag,
            caller,
            callee,
            caller_extension,
            callee_extension,
            direction,
            at,
            ..
        } => {
            hub.call_started(
                ActiveCall {
                    reseller_id: *reseller,
                    customer_id: *customer,
                    call_id: call_id.clone(),
                    caller: caller.clone(),
                    callee: callee.clone(),
                    caller_extension_id: *caller_extension,
                    callee_extension_id: *callee_extension,
                    direction: *direction,
                    started_at: *at,
                    answered_at: None,
                },
                caller_tag.clone(),
            );
            (Tenant::customer(*reseller, *customer), *at)
        }
        SipEvent::CallAnswered {
            reseller,
            customer,
            call_id,
            caller_tag,
            at,
            ..
        } => {
            hub.call_answered(*customer, call_id, caller_tag, *at);
            (Tenant::customer(*reseller, *customer), *at)
        }
        SipEvent::CallEnded {
            reseller,
            customer,
            call_id,
            caller_tag,
            at,
            ..
        } => {
            hub.call_ended(*customer, call_id, caller_tag);
            (Tenant::customer(*reseller, *customer), *at)
        }
        SipEvent::RecordRated {
            reseller,
            customer,
            at,
            ..
        }
        | SipEvent::LimitReached {
            reseller,
            customer,
            at,
            ..
        }
        | SipEvent::CallForwardedOut {
            reseller,
            customer,
            at,
            ..
        } => (Tenant::customer(*reseller, *customer), *at),
        SipEvent::AccountProtected {
            reseller,
            customer,
            at,
            ..
        }
        | SipEvent::TollFraudSuspected {
            reseller,
            customer,
            at,
            ..
        }
        | SipEvent::DestinationLearned {
            reseller,
            customer,
            at,
            ..
        } => (Tenant::customer(*reseller, *customer), *at),
        // The operator's own: a carrier's call for no customer.
        SipEvent::CallUnrouted { at, .. } => (Tenant::default(), *at),
        // The operator's, and the tenant's whose accounts were guessed at.
        SipEvent::SourceBanned {
            reseller,
            customer,
            at,
            ..
        } => (
            Tenant {
                reseller: *reseller,
                customer: *customer,
                everyone: false,
            },
            *at,
        ),
    };
    // Once, and outside the hub's lock: the event as it is (its own `type`
    // included) becomes the stream event's `data`.
    let Ok(data) = serde_json::to_string(event) else {
        return;
    };
    hub.publish_json(tenant, event.kind(), at, &data);
}
