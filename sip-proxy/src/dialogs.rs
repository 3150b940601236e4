//! Dialogs this proxy set up (RFC 3261 §12), keyed by Call-ID and both tags.
//!
//! Knowing them lets the proxy (1) send in-dialog requests down the flow each
//! party is really reachable on (NAT), (2) refuse in-dialog requests for
//! dialogs it never set up (481), so a phone cannot use a made-up To tag and
//! Request-URI to reach another tenant's phone through us, and (3) tell the
//! call-record observer when a call was answered and who hung up.

use pbx_sip_message::Uri;
use pbx_store::{CustomerId, DeviceId, ExtensionId, Millis, ResellerId};

use crate::sharded::ShardedMap;
use crate::transport::Flow;

/// One party of a dialog.
#[derive(Debug, Clone)]
pub struct Peer {
    pub tag: String,
    /// How we reach it: the flow its messages came on.
    pub flow: Flow,
    /// Its remote target (Contact), updated by target refreshes.
    pub contact: Option<Uri>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialogKind {
    /// An INVITE session: a call.
    Invite,
    /// SUBSCRIBE/REFER usages.
    Other,
}

/// What the call records need to know about the call a dialog carries.
#[derive(Debug, Clone)]
pub struct CallInfo {
    pub reseller: ResellerId,
    pub customer: CustomerId,
    pub caller_extension: Option<ExtensionId>,
    pub callee_extension: Option<ExtensionId>,
    pub caller_device: Option<DeviceId>,
    pub callee_device: Option<DeviceId>,
}

#[derive(Debug, Clone)]
pub struct Dialog {
    pub call_id: String,
    /// The party that sent the dialog-creating request.
    pub caller: Peer,
    /// The party that answered it.
    pub callee: Peer,
    pub kind: DialogKind,
    /// False while only a provisional response created it (early dialog).
    pub confirmed: bool,
    pub call: CallInfo,
    pub created_at: Millis,
    pub last_activity: Millis,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DialogKey {
    call_id: String,
    low: String,
    high: String,
}

impl DialogKey {
    pub fn new(call_id: &str, tag_a: &str, tag_b: &str) -> DialogKey {
        let (low, high) = if tag_a <= tag_b {
            (tag_a, tag_b)
        } else {
            (tag_b, tag_a)
        };
        DialogKey {
            call_id: call_id.to_owned(),
            low: low.to_owned(),
            high: high.to_owned(),
        }
    }
}

/// Which way an in-dialog request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the caller to the callee.
    Downstream,
    /// From the callee back to the caller.
    Upstream,
}

#[derive(Default)]
pub struct Dialogs {
    map: ShardedMap<DialogKey, Dialog>,
}

impl Dialogs {
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds a dialog, or confirms an early one with the same key.
    pub fn upsert(&self, dialog: Dialog) {
        let key = DialogKey::new(&dialog.call_id, &dialog.caller.tag, &dialog.callee.tag);
        let confirmed = dialog.confirmed;
        let existing = self.map.update(&key, |d| {
            d.confirmed |= confirmed;
            d.callee.flow = dialog.callee.flow;
            if dialog.callee.contact.is_some() {
                d.callee.contact.clone_from(&dialog.callee.contact);
            }
        });
        if existing.is_none() {
            self.map.insert(key, dialog);
        }
    }

    /// The dialog a request with these tags belongs to, and its direction.
    pub fn find(&self, call_id: &str, from_tag: &str, to_tag: &str) -> Option<(Dialog, Direction)> {
        let dialog = self.map.get(&DialogKey::new(call_id, from_tag, to_tag))?;
        let direction = if dialog.caller.tag == from_tag && dialog.callee.tag == to_tag {
            Direction::Downstream
        } else {
            Direction::Upstream
        };
        Some((dialog, direction))
    }

    /// Records activity and a new remote target of the side that sent a request.
    pub fn touch(
        &self,
        call_id: &str,
        from_tag: &str,
        to_tag: &str,
        now: Millis,
        sender_contact: Option<Uri>,
    ) {
        self.map
            .update(&DialogKey::new(call_id, from_tag, to_tag), |d| {
                d.last_activity = now;
                if let Some(contact) = sender_contact {
                    if d.caller.tag == from_tag {
                        d.caller.contact = Some(contact);
                    } else {
                        d.callee.contact = Some(contact);
                    }
                }
            });
    }

    pub fn remove(&self, call_id: &str, tag_a: &str, tag_b: &str) -> Option<Dialog> {
        self.map.remove(&DialogKey::new(call_id, tag_a, tag_b))
    }

    /// Removes dialogs idle since before `cutoff` (calls without a BYE, early
    /// dialogs left behind); returns them.
    pub fn expire(&self, cutoff: Millis) -> Vec<Dialog> {
        self.map.retain(|d| d.last_activity >= cutoff)
    }
}
