//! What the SIP side tells the operator and the tenants beyond call records:
//! calls carriers sent for numbers nobody holds (kept for the operator),
//! outbound calls refused by a fraud or cost limit (a `limit_reached`
//! webhook to the reseller's and the customer's endpoints that asked for
//! it), accounts protected against a distributed password guess (an
//! `account_protected` webhook), calls that look like toll fraud (a
//! `toll_fraud` webhook, once per device, alarm and minute) and the
//! destinations devices call for the first time (stored, so that every node
//! knows them). Best effort: while the database is away
//! they are only logged.
//!
//! Both are bounded: an unrouted Call-ID is kept once (retransmissions) and
//! at most twenty a second (a flood from a carrier's address, or one
//! spoofing it, shows in `/metrics` but is not written); a limit alerts once
//! per customer, limit and minute.

use std::collections::HashMap;
use std::sync::Arc;

use pbx_store::webhooks::WebhookEvent;
use pbx_store::{Millis, Principal, Store};
use tokio::sync::mpsc::Receiver;

use crate::SipEvent;

const UNROUTED_PER_SECOND: u32 = 20;
/// Call-IDs remembered (and alerts keys) at most.
const REMEMBERED: usize = 10_000;

/// Acts on the alert events of the node's bus ([`SipEvent::is_alert`]).
pub async fn keep(mut events: Receiver<Arc<SipEvent>>, store: Store, node_id: String) {
    let mut unrouted = Unrouted::default();
    let mut alerted: HashMap<String, Millis> = HashMap::new();
    while let Some(event) = events.recv().await {
        match Arc::unwrap_or_clone(event) {
            SipEvent::CallUnrouted {
                trunk,
                call_id,
                caller,
                called,
                source,
                at,
            } => {
                if !unrouted.admit(&call_id, at) {
                    continue;
                }
                let call = pbx_store::unrouted::UnroutedCall {
                    trunk_id: Some(trunk),
                    call_id,
                    caller,
                    called,
                    source,
                    sip_status: 404,
                    node_id: node_id.clone(),
                    at,
                };
                if let Err(e) = store
                    .unrouted_calls()
                    .record(&Principal::system(), &call)
                    .await
                {
                    tracing::warn!(error = %e, call_id = %call.call_id, "unrouted call not stored");
                }
            }
            SipEvent::LimitReached {
                reseller,
                customer,
                call_id,
                limit,
                destination,
                at,
            } => {
                let limit_name = serde_json::to_value(limit)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                let key = format!("{customer}:{limit_name}:{}", at / 60_000);
                alerted.retain(|_, t| at - *t < 120_000);
                if alerted.len() >= REMEMBERED || alerted.insert(key.clone(), at).is_some() {
                    continue;
                }
                let payload = serde_json::json!({
                    "type": "limit_reached",
                    "reseller_id": reseller,
                    "customer_id": customer,
                    "limit": limit_name,
                    "destination": destination,
                    "call_id": call_id,
                    "at": at,
                });
                notify(
                    &store,
                    WebhookEvent::LimitReached,
                    reseller,
                    customer,
                    &key,
                    &payload,
                )
                .await;
            }
            SipEvent::AccountProtected {
                reseller,
                customer,
                device,
                sip_user,
                failures,
                sources,
                until,
                at,
            } => {
                let payload = serde_json::json!({
                    "type": "account_protected",
                    "reseller_id": reseller,
                    "customer_id": customer,
                    "device_id": device,
                    "sip_user": sip_user,
                    "failures": failures,
                    "sources": sources,
                    "until": until,
                    "at": at,
                });
                let key = format!("{device}:{at}");
                notify(
                    &store,
                    WebhookEvent::AccountProtected,
                    reseller,
                    customer,
                    &key,
                    &payload,
                )
                .await;
            }
            SipEvent::TollFraudSuspected {
                reseller,
                customer,
                extension,
                device,
                source,
                call_id,
                alarm,
                blocked,
                destination,
                at,
            } => {
                let key = format!("{customer}:{device}:{}:{}", alarm.as_str(), at / 60_000);
                alerted.retain(|_, t| at - *t < 120_000);
                if alerted.len() >= REMEMBERED || alerted.insert(key.clone(), at).is_some() {
                    continue;
                }
                tracing::warn!(
                    reseller = reseller.0,
                    customer = customer.0,
                    device = device.0,
                    call_id = %call_id,
                    alarm = alarm.as_str(),
                    blocked,
                    %destination,
                    "toll fraud suspected"
                );
                let payload = serde_json::json!({
                    "type": "toll_fraud",
                    "reseller_id": reseller,
                    "customer_id": customer,
                    "extension_id": extension,
                    "device_id": device,
                    "source": source,
                    "alarm": alarm.as_str(),
                    "blocked": blocked,
                    "destination": destination,
                    "call_id": call_id,
                    "at": at,
                });
                notify(
                    &store,
                    WebhookEvent::TollFraud,
                    reseller,
                    customer,
                    &key,
                    &payload,
                )
                .await;
            }
            SipEvent::DestinationLearned {
                customer,
                device,
                destination,
                at,
                ..
            } => {
                if let Err(e) = store
                    .fraud_alarms()
                    .learn(&Principal::system(), customer, device, &destination, at)
                    .await
                {
                    tracing::warn!(error = %e, customer = customer.0, device = device.0, "known destination not stored");
                }
            }
            _ => {}
        }
    }
}

/// Queues `payload` for the reseller's and the customer's webhooks of `event`.
async fn notify(
    store: &Store,
    event: WebhookEvent,
    reseller: pbx_store::ResellerId,
    customer: pbx_store::CustomerId,
    key: &str,
    payload: &serde_json::Value,
) {
    match store
        .webhooks()
        .enqueue(
            &Principal::system(),
            event,
            reseller,
            Some(customer),
            key,
            payload,
        )
        .await
    {
        Ok(queued) => tracing::debug!(customer = %customer, event = %event, queued, "alert queued"),
        Err(e) => {
            tracing::warn!(error = %e, customer = %customer, event = %event, "alert not queued")
        }
    }
}

/// Which unrouted calls are written.
#[derive(Default)]
struct Unrouted {
    seen: HashMap<String, Millis>,
    second: Millis,
    this_second: u32,
}

impl Unrouted {
    fn admit(&mut self, call_id: &str, at: Millis) -> bool {
        self.seen.retain(|_, t| at - *t < 64_000);
        if self.seen.len() >= REMEMBERED || self.seen.insert(call_id.to_owned(), at).is_some() {
            return false;
        }
        if at / 1000 != self.second {
            self.second = at / 1000;
            self.this_second = 0;
        }
        self.this_second += 1;
        self.this_second <= UNROUTED_PER_SECOND
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unrouted_calls_are_kept_once_and_at_most_twenty_a_second() {
        let mut u = Unrouted::default();
        assert!(u.admit("a", 1_000));
        assert!(!u.admit("a", 1_500), "a retransmission");
        let kept = (0..50).filter(|n| u.admit(&format!("c{n}"), 2_000)).count();
        assert_eq!(kept, 20);
        assert!(u.admit("later", 3_000), "the next second");
        assert!(u.admit("a", 70_000), "forgotten after a minute");
    }
}
