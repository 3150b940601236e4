//! Call recording as the proxy sees it: whose calls are recorded (the
//! customer's policy: an extension's calls, made or answered, and the
//! calls to a number), and starting the relay's recording when such a call
//! is answered. Decided in two steps: when a call is routed, whether it may
//! be recorded (its media must then go through the relay from the start);
//! when it is answered, whether it is (a ring group's member that records
//! may not be the one who answers). The audio goes to the node's audio
//! store ([`NodeAudio`](crate::core::NodeAudio)) under
//! `recordings/<customer>/`; the recording reaches the store with the
//! call's record.

use pbx_media::CallKey;
use pbx_store::audio_files::AudioFiles;
use pbx_store::call_recordings::NewRecording;
use pbx_store::ExtensionId;

use crate::core::Core;
use crate::directory::Tenant;
use crate::routing::{Caller, Ringing};

/// Whether a routed call is recorded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Policy {
    /// Whoever answers (the caller's extension records, or the number called does).
    pub always: bool,
    /// Some extension it may reach records its calls.
    pub maybe: bool,
}

/// The policy of a call as it is routed: `number_records` says whether
/// the number it came in on records its calls.
pub fn at_routing(
    tenant: &Tenant,
    caller: &Caller,
    ringing: &Ringing,
    number_records: bool,
) -> Policy {
    let records = |id: ExtensionId| tenant.extension_by_id(id).is_some_and(|e| e.record_calls);
    // A call an extension forwards to the public network is still its call.
    let forwarder_records = matches!(ringing,
        Ringing::Out { forwarded_by: Some(e), .. } if e.record_calls);
    let always = number_records || forwarder_records || caller.extension.is_some_and(records);
    let maybe = always
        || match ringing {
            Ringing::Phones {
                extension,
                bindings,
                plan,
                ..
            } => {
                extension.as_ref().is_some_and(|e| e.record_calls)
                    || rings_a_recorder(tenant, bindings)
                    || plan
                        .iter()
                        .any(|step| step.members.iter().copied().any(records))
            }
            Ringing::Out { .. } => false,
        };
    Policy { always, maybe }
}

/// Whether one of `bindings` (phones about to ring) is of an extension
/// that records its calls: the call must then be anchored.
pub fn rings_a_recorder(tenant: &Tenant, bindings: &[crate::location::Binding]) -> bool {
    bindings.iter().any(|b| {
        !b.application
            && tenant
                .extension_by_id(b.extension)
                .is_some_and(|e| e.record_calls)
    })
}

/// Starts recording a call just answered by `answering` (an extension, if
/// one answered), if its policy says so. None when it is not recorded, or
/// cannot be (no audio store on this node, SRTP or another codec, a file
/// that cannot be made): the call goes on either way.
pub fn begin(
    core: &Core,
    tenant: &Tenant,
    policy: Policy,
    key: &CallKey,
    answering: Option<ExtensionId>,
) -> Option<NewRecording> {
    let wanted = policy.always
        || answering
            .and_then(|id| tenant.extension_by_id(id))
            .is_some_and(|e| e.record_calls);
    if !wanted {
        return None;
    }
    let Some(rec) = core.audio.get() else {
        tracing::warn!(customer = %tenant.customer, call_id = %key.0,
            "a call to record, but this node has no audio store: not recorded");
        return None;
    };
    let audio = AudioFiles::new_key(&format!("recordings/{}", tenant.customer.0), "wav");
    let path = rec.files.path(&audio).ok()?;
    let announcement = (rec.recording_announcement)(&tenant.language);
    match core.media.record(key, &path, Some(announcement)) {
        Ok(announcement_ms) => Some(NewRecording {
            audio,
            started_at: pbx_store::now_ms() + i64::try_from(announcement_ms).unwrap_or(0),
        }),
        Err(e) => {
            tracing::warn!(customer = %tenant.customer, call_id = %key.0, error = %e,
                "a call to record could not be recorded");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::Step;
    use pbx_store::call_records::CallDirection;
    use pbx_store::directory::{CustomerDirectory, DirectoryExtension};
    use pbx_store::{CustomerId, ResellerId};

    /// Customer 1 with extensions 101 (records its calls) and 102 (does not).
    fn tenant() -> Tenant {
        let mut d = CustomerDirectory::empty(CustomerId(1), ResellerId(1), "acme.test");
        for (id, number, record_calls) in [(1, "101", true), (2, "102", false)] {
            d.extensions.push(DirectoryExtension {
                id: ExtensionId(id),
                number: number.into(),
                display_name: number.into(),
                dnd: false,
                record_calls,
                forwards: Vec::new(),
            });
        }
        Tenant::from_store(d)
    }

    fn caller(extension: Option<i64>) -> Caller {
        Caller {
            extension: extension.map(ExtensionId),
            device: None,
            direction: CallDirection::Internal,
        }
    }

    fn ringing(t: &Tenant, extension: Option<i64>, then: &[i64]) -> Ringing {
        Ringing::Phones {
            callee: "x".into(),
            extension: extension.and_then(|e| t.extension_by_id(ExtensionId(e)).cloned()),
            bindings: Vec::new(),
            ring_s: None,
            plan: then
                .iter()
                .map(|e| Step {
                    members: vec![ExtensionId(*e)],
                    ring_s: None,
                })
                .collect(),
            passed: Vec::new(),
        }
    }

    #[test]
    fn whose_calls_are_recorded() {
        let t = tenant();
        let (yes, no) = (Some(1), Some(2));
        let policy = |c, r, number| at_routing(&t, &caller(c), &r, number);
        // 101 calling: recorded whoever answers.
        let p = policy(yes, ringing(&t, no, &[]), false);
        assert_eq!((p.always, p.maybe), (true, true));
        // 102 calling 101: anchored, recorded if 101 answers.
        let p = policy(no, ringing(&t, yes, &[]), false);
        assert_eq!((p.always, p.maybe), (false, true));
        // 101 only later in a ring group's plan: the same.
        let p = policy(no, ringing(&t, None, &[2, 1]), false);
        assert_eq!((p.always, p.maybe), (false, true));
        // Nobody records: nothing (the node's own anchoring applies).
        assert_eq!(policy(no, ringing(&t, no, &[2]), false), Policy::default());
        // A recording number: always, from a carrier (no caller extension).
        let p = policy(None, ringing(&t, no, &[]), true);
        assert_eq!((p.always, p.maybe), (true, true));
    }
}
