//! Carries the SIP proxy's call events to the application server, whose
//! busy lamps (RFC 4235) follow each extension's calls. Only the start,
//! answer and end of calls are passed on; a relay that falls behind the
//! proxy's bus puts every lamp out (and says so in the log) rather than
//! leave lamps lit for calls whose end it missed.

use std::sync::Arc;

use pbx_apps::blf::CallEvent;
use pbx_apps::AppServer;
use pbx_sip_proxy::SipEvent;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::broadcast::Receiver;

/// What the lamps need of a proxy event, if anything.
fn call_event(event: &SipEvent) -> Option<CallEvent> {
    let key = |call_id: &str, tag: &str| format!("{call_id};{tag}");
    match event {
        SipEvent::CallStarted {
            call_id,
            caller_tag,
            caller_extension,
            callee_extension,
            stateless,
            ..
        } if !stateless => Some(CallEvent::Started {
            key: key(call_id, caller_tag),
            caller: *caller_extension,
            callee: *callee_extension,
        }),
        SipEvent::CallAnswered {
            call_id,
            caller_tag,
            callee_extension,
            callee_device,
            ..
        } => Some(CallEvent::Answered {
            key: key(call_id, caller_tag),
            // Answered by no phone (voicemail, a room): nobody talks here.
            callee: callee_device.and(*callee_extension),
        }),
        SipEvent::CallEnded {
            call_id,
            caller_tag,
            ..
        } => Some(CallEvent::Ended {
            key: key(call_id, caller_tag),
        }),
        _ => None,
    }
}

pub async fn follow(mut events: Receiver<Arc<SipEvent>>, apps: AppServer) {
    loop {
        match events.recv().await {
            Ok(event) => {
                if let Some(call) = call_event(&event) {
                    apps.call_event(&call).await;
                }
            }
            Err(RecvError::Lagged(missed)) => {
                tracing::warn!(
                    missed,
                    "busy lamps fell behind the SIP proxy's events: all put out"
                );
                apps.calls_lost().await;
            }
            Err(RecvError::Closed) => return,
        }
    }
}
