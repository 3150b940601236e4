//! Busy lamps (RFC 4235 dialog event package): which calls an extension
//! is in, for colleagues' phones that watch it (a BLF key). The proxy tells
//! this server each call's start (who calls, which extension it is for),
//! answer (which extension's phone took it) and end; a watched extension's
//! subscribers get a `dialog-info` NOTIFY whenever its calls change:
//! `early` while it rings or calls out and nobody answered, `confirmed`
//! while it talks, none when idle. Calls ringing in a ring group are not
//! reported per member.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pbx_store::ExtensionId;

use crate::server::Inner;
use crate::subscriptions::{notify_all, Package, Snapshot};

/// What the proxy tells about a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallEvent {
    Started {
        /// What names the call (its Call-ID and caller's tag).
        key: String,
        caller: Option<ExtensionId>,
        callee: Option<ExtensionId>,
    },
    Answered {
        key: String,
        /// The extension whose phone answered; None when no phone of ours
        /// did (voicemail or another application, a carrier): the
        /// extension the call was for is not talking then.
        callee: Option<ExtensionId>,
    },
    Ended {
        key: String,
    },
}

/// Calls followed at once; beyond, the oldest are forgotten (an end that
/// never came must not keep a lamp lit forever, nor memory).
const MAX_CALLS: usize = 100_000;
/// A call that rang this long without an answer, or was answered this
/// long ago, is taken as ended (its end was lost): swept every
/// [`SWEEP_EVERY`] starts.
const RINGING_AT_MOST: Duration = Duration::from_secs(5 * 60);
const TALKING_AT_MOST: Duration = Duration::from_secs(24 * 3600);
const SWEEP_EVERY: u64 = 256;

#[derive(Debug, Clone)]
struct Call {
    caller: Option<ExtensionId>,
    callee: Option<ExtensionId>,
    answered: bool,
    since: Instant,
    /// A short id for dialog-info (not the Call-ID: it is nobody's business).
    id: u64,
}

/// The calls in progress that involve extensions.
#[derive(Default)]
pub struct Lines {
    calls: Mutex<HashMap<String, Call>>,
    next_id: Mutex<u64>,
}

/// Whether a call's end must have been lost.
fn stale(c: &Call) -> bool {
    let age = c.since.elapsed();
    if c.answered {
        age > TALKING_AT_MOST
    } else {
        age > RINGING_AT_MOST
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// How one of an extension's calls stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line {
    pub id: u64,
    /// It placed the call (else it is called).
    pub initiator: bool,
    pub confirmed: bool,
}

impl Lines {
    /// The call that has rung longest at one of `extensions` unanswered
    /// (not one they place), by its key (`<Call-ID>;<caller's tag>`).
    pub fn ringing(&self, extensions: &[ExtensionId]) -> Option<String> {
        let calls = lock(&self.calls);
        calls
            .iter()
            .filter(|(_, c)| !c.answered && c.callee.is_some_and(|e| extensions.contains(&e)))
            .filter(|(_, c)| !stale(c))
            .min_by_key(|(_, c)| c.since)
            .map(|(key, _)| key.clone())
    }

    /// Takes one event; returns the extensions whose lines changed.
    pub fn apply(&self, event: &CallEvent) -> Vec<ExtensionId> {
        let mut calls = lock(&self.calls);
        let touched = |c: &Call| c.caller.into_iter().chain(c.callee).collect::<Vec<_>>();
        match event {
            CallEvent::Started {
                key,
                caller,
                callee,
            } => {
                if caller.is_none() && callee.is_none() {
                    return Vec::new();
                }
                let id = {
                    let mut next = lock(&self.next_id);
                    *next += 1;
                    *next
                };
                let mut changed = Vec::new();
                if id.is_multiple_of(SWEEP_EVERY) || calls.len() >= MAX_CALLS {
                    calls.retain(|_, c| {
                        let keep = !stale(c);
                        if !keep {
                            changed.extend(c.caller.into_iter().chain(c.callee));
                        }
                        keep
                    });
                    if calls.len() >= MAX_CALLS {
                        changed.extend(calls.drain().flat_map(|(_, c)| touched(&c)));
                    }
                }
                let call = Call {
                    caller: *caller,
                    callee: *callee,
                    answered: false,
                    since: Instant::now(),
                    id,
                };
                changed.extend(touched(&call));
                calls.insert(key.clone(), call);
                changed.sort_by_key(|e| e.0);
                changed.dedup();
                changed
            }
            CallEvent::Answered { key, callee } => {
                let Some(call) = calls.get_mut(key) else {
                    return Vec::new();
                };
                // A forward, a group or voicemail: the one that answered is
                // the one talking (the dialled one rings no more).
                let before = touched(call);
                call.answered = true;
                call.since = Instant::now();
                call.callee = *callee;
                let mut changed = before;
                changed.extend(touched(call));
                changed.sort_by_key(|e| e.0);
                changed.dedup();
                changed
            }
            CallEvent::Ended { key } => calls.remove(key).map(|c| touched(&c)).unwrap_or_default(),
        }
    }

    /// Forgets every call (the proxy's events were lost: what is lit may be
    /// wrong); returns the extensions whose lamps go out.
    pub fn reset(&self) -> Vec<ExtensionId> {
        let mut changed: Vec<ExtensionId> = lock(&self.calls)
            .drain()
            .flat_map(|(_, c)| c.caller.into_iter().chain(c.callee))
            .collect();
        changed.sort_by_key(|e| e.0);
        changed.dedup();
        changed
    }

    /// The calls `extension` is in now.
    pub fn of(&self, extension: ExtensionId) -> Vec<Line> {
        let calls = lock(&self.calls);
        let mut lines: Vec<Line> = calls
            .values()
            .filter_map(|c| {
                let initiator = c.caller == Some(extension);
                (initiator || c.callee == Some(extension)).then_some(Line {
                    id: c.id,
                    initiator,
                    confirmed: c.answered,
                })
            })
            .collect();
        lines.sort_by_key(|l| l.id);
        lines
    }
}

/// An extension's calls as its watchers are told them.
pub(crate) struct Calls {
    pub lines: Vec<Line>,
}

impl Calls {
    /// The `application/dialog-info+xml` document (RFC 4235 §4), full
    /// state of `entity` (the address watched), as the `version`th NOTIFY
    /// of a subscription.
    pub fn dialog_info(&self, entity: &str, version: u32) -> String {
        let mut xml = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n\
<dialog-info xmlns=\"urn:ietf:params:xml:ns:dialog-info\" version=\"{version}\" state=\"full\" entity=\"{}\">\r\n",
            escape(entity)
        );
        for line in &self.lines {
            xml.push_str(&format!(
                "<dialog id=\"{}\" direction=\"{}\"><state>{}</state></dialog>\r\n",
                line.id,
                if line.initiator {
                    "initiator"
                } else {
                    "recipient"
                },
                if line.confirmed { "confirmed" } else { "early" }
            ));
        }
        xml.push_str("</dialog-info>\r\n");
        xml
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `extension`'s calls now (from memory: a call's events never wait on
/// the store).
pub(crate) fn calls_of(inner: &Inner, extension: ExtensionId) -> Snapshot {
    Snapshot::Calls(Calls {
        lines: inner.lines.of(extension),
    })
}

/// Takes a call event from the proxy and tells the watchers of the
/// extensions it changed.
pub(crate) async fn on_call(inner: &Arc<Inner>, event: &CallEvent) {
    tell(inner, inner.lines.apply(event)).await;
}

/// Events were lost: every lamp goes out (the next events light them
/// again) rather than staying lit for calls long ended.
pub(crate) async fn on_lost(inner: &Arc<Inner>) {
    tell(inner, inner.lines.reset()).await;
}

/// Tells the watchers of `changed` their calls now.
async fn tell(inner: &Arc<Inner>, changed: Vec<ExtensionId>) {
    for extension in changed {
        let calls = calls_of(inner, extension);
        notify_all(inner, Package::Dialog, extension, calls).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: ExtensionId = ExtensionId(1);
    const B: ExtensionId = ExtensionId(2);
    const C: ExtensionId = ExtensionId(3);

    #[test]
    fn a_call_rings_then_talks_then_ends() {
        let lines = Lines::default();
        let started = CallEvent::Started {
            key: "k1".into(),
            caller: Some(A),
            callee: Some(B),
        };
        assert_eq!(lines.apply(&started), vec![A, B]);
        let b = lines.of(B);
        assert_eq!(b.len(), 1);
        assert!(!b[0].initiator && !b[0].confirmed, "B rings");
        assert!(lines.of(A)[0].initiator);
        assert!(lines.of(C).is_empty());
        // B forwards to C, and C answers: B is free again.
        let answered = CallEvent::Answered {
            key: "k1".into(),
            callee: Some(C),
        };
        assert_eq!(lines.apply(&answered), vec![A, B, C]);
        assert!(lines.of(B).is_empty());
        assert!(lines.of(C)[0].confirmed);
        assert_eq!(
            lines.apply(&CallEvent::Ended { key: "k1".into() }),
            vec![A, C]
        );
        assert!(lines.of(A).is_empty() && lines.of(C).is_empty());
        // Ends of calls never seen, and calls of nobody, change nothing.
        assert!(lines
            .apply(&CallEvent::Ended { key: "k9".into() })
            .is_empty());
        let outside = CallEvent::Started {
            key: "k2".into(),
            caller: None,
            callee: None,
        };
        assert!(lines.apply(&outside).is_empty());
        // Voicemail answers a call for B: B is not talking.
        let to_b = CallEvent::Started {
            key: "k3".into(),
            caller: Some(A),
            callee: Some(B),
        };
        lines.apply(&to_b);
        let voicemail = CallEvent::Answered {
            key: "k3".into(),
            callee: None,
        };
        assert_eq!(lines.apply(&voicemail), vec![A, B]);
        assert!(lines.of(B).is_empty());
        assert!(lines.of(A)[0].confirmed);
        assert_eq!(lines.reset(), vec![A]);
        assert!(lines.of(A).is_empty());
    }

    #[test]
    fn the_document_lists_each_call_with_its_state() {
        let calls = Calls {
            lines: vec![Line {
                id: 7,
                initiator: false,
                confirmed: true,
            }],
        };
        let xml = calls.dialog_info("sip:102@acme.test", 3);
        assert!(xml.contains("version=\"3\" state=\"full\" entity=\"sip:102@acme.test\""));
        assert!(xml.contains(
            "<dialog id=\"7\" direction=\"recipient\"><state>confirmed</state></dialog>"
        ));
        let idle = Calls { lines: Vec::new() };
        let xml = idle.dialog_info("sip:<x>@a&b", 0);
        assert!(!xml.contains("<dialog "));
        assert!(xml.contains("entity=\"sip:&lt;x&gt;@a&amp;b\""));
    }
}
