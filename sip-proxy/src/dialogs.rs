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
    /// Its From/To as it appears in the dialog (with the tag), for requests
    /// the proxy itself sends into the dialog.
    pub addr: Option<pbx_sip_message::NameAddr>,
    /// The highest CSeq it sent in the dialog.
    pub cseq: u32,
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
    /// When the dialog was confirmed (the call answered).
    pub confirmed_at: Option<Millis>,
    /// The last request or 2xx seen in it: the last sign of life.
    pub last_activity: Millis,
    /// RFC 4028 session interval agreed in the last 2xx, if any.
    pub session_expires_ms: Option<Millis>,
    /// The callee branch the relay anchors this call's media for (None:
    /// not anchored).
    pub media: Option<u32>,
}

/// Why the proxy ended a dialog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// No session refresh within the RFC 4028 session interval.
    SessionExpired,
    /// The call reached the configured maximum duration.
    MaxDuration,
    /// An early dialog or a subscription left idle.
    Idle,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::SessionExpired => "session_expired",
            EndReason::MaxDuration => "max_duration",
            EndReason::Idle => "idle",
        }
    }
}

/// How long an early (unconfirmed) dialog may stay without news: longer than
/// any INVITE transaction (timer C is 3 minutes).
const EARLY_IDLE_MS: Millis = 5 * 60_000;

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
        let session = dialog.session_expires_ms;
        let confirmed_at = dialog.confirmed_at;
        let existing = self.map.update(&key, |d| {
            if confirmed && !d.confirmed {
                d.confirmed_at = confirmed_at;
                d.session_expires_ms = session;
            }
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

    /// Records activity, and the new remote target and CSeq of the side that
    /// sent a request (`from_tag`).
    pub fn touch(
        &self,
        call_id: &str,
        from_tag: &str,
        to_tag: &str,
        now: Millis,
        sender_contact: Option<Uri>,
        sender_cseq: Option<u32>,
    ) {
        self.map
            .update(&DialogKey::new(call_id, from_tag, to_tag), |d| {
                d.last_activity = now;
                let sender = if d.caller.tag == from_tag {
                    &mut d.caller
                } else {
                    &mut d.callee
                };
                if let Some(contact) = sender_contact {
                    sender.contact = Some(contact);
                }
                if let Some(cseq) = sender_cseq {
                    sender.cseq = sender.cseq.max(cseq);
                }
            });
    }

    pub fn remove(&self, call_id: &str, tag_a: &str, tag_b: &str) -> Option<Dialog> {
        self.map.remove(&DialogKey::new(call_id, tag_a, tag_b))
    }

    /// Removes the answered call with this Call-ID and caller tag (whatever
    /// the callee's tag). A scan: for the rare call the proxy ends itself.
    pub fn remove_call(&self, call_id: &str, caller_tag: &str) -> Option<Dialog> {
        self.map
            .retain(|d| {
                !(d.kind == DialogKind::Invite
                    && d.confirmed
                    && d.call_id == call_id
                    && d.caller.tag == caller_tag)
            })
            .into_iter()
            .next()
    }

    /// Notes a session refresh answered with `session_expires_ms` (a 2xx to
    /// a re-INVITE or UPDATE carrying Session-Expires).
    pub fn refresh_session(
        &self,
        call_id: &str,
        tag_a: &str,
        tag_b: &str,
        session_expires_ms: Option<Millis>,
    ) {
        if let Some(interval) = session_expires_ms {
            self.map
                .update(&DialogKey::new(call_id, tag_a, tag_b), |d| {
                    d.session_expires_ms = Some(interval);
                });
        }
    }

    /// Removes the dialogs that ended without a BYE at `now` and returns each
    /// with the instant its call ended and why: a call whose session was not
    /// refreshed ended at its last sign of life; a call that reached
    /// `max_call_ms` ended at that length.
    pub fn sweep(&self, now: Millis, max_call_ms: Millis) -> Vec<(Dialog, Millis, EndReason)> {
        let judge = |d: &Dialog| -> Option<(Millis, EndReason)> {
            match (d.kind, d.confirmed) {
                (DialogKind::Invite, true) => {
                    let answered = d.confirmed_at.unwrap_or(d.created_at);
                    if let Some(interval) = d.session_expires_ms {
                        if now > d.last_activity.saturating_add(interval) {
                            return Some((d.last_activity, EndReason::SessionExpired));
                        }
                    }
                    let limit = answered.saturating_add(max_call_ms);
                    (now >= limit).then_some((limit, EndReason::MaxDuration))
                }
                (DialogKind::Invite, false) => (now - d.last_activity > EARLY_IDLE_MS)
                    .then_some((d.last_activity, EndReason::Idle)),
                (DialogKind::Other, _) => (now - d.last_activity > max_call_ms)
                    .then_some((d.last_activity, EndReason::Idle)),
            }
        };
        self.map
            .retain(|d| judge(d).is_none())
            .into_iter()
            .filter_map(|d| judge(&d).map(|(at, why)| (d, at, why)))
            .collect()
    }
}

/// The session interval a message's Session-Expires header names (RFC 4028
/// §4: delta-seconds, then parameters), if any and sane.
pub fn session_expires_ms(msg: &pbx_sip_message::Message) -> Option<Millis> {
    let value = msg.value_text(&pbx_sip_message::HeaderName::SessionExpires)?;
    let seconds: u32 = value.split(';').next()?.trim().parse().ok()?;
    // RFC 4028 requires at least 90 s; refuse nonsense rather than end calls early.
    (seconds >= 90).then_some(Millis::from(seconds) * 1000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::Protocol;
    use pbx_store::{CustomerId, ResellerId};

    fn dialog(call_id: &str, confirmed_at: Millis, session: Option<Millis>) -> Dialog {
        let flow = Flow {
            protocol: Protocol::Udp,
            local: ([127, 0, 0, 1], 5060).into(),
            remote: ([127, 0, 0, 1], 5070).into(),
            conn: None,
        };
        let peer = |tag: &str| Peer {
            tag: tag.into(),
            addr: None,
            cseq: 1,
            flow,
            contact: None,
        };
        Dialog {
            call_id: call_id.into(),
            caller: peer("a"),
            callee: peer("b"),
            kind: DialogKind::Invite,
            confirmed: true,
            call: CallInfo {
                reseller: ResellerId(1),
                customer: CustomerId(1),
                caller_extension: None,
                callee_extension: None,
                caller_device: None,
                callee_device: None,
            },
            created_at: confirmed_at - 3_000,
            confirmed_at: Some(confirmed_at),
            last_activity: confirmed_at,
            session_expires_ms: session,
            media: None,
        }
    }

    #[test]
    fn rfc4028_an_unrefreshed_session_ends_at_its_last_sign_of_life() {
        let dialogs = Dialogs::default();
        dialogs.upsert(dialog("st", 10_000, Some(90_000)));
        // A refresh (re-INVITE) at 50 s moves the deadline to 140 s.
        dialogs.touch("st", "a", "b", 50_000, None, Some(2));
        assert!(dialogs.sweep(139_000, 3_600_000).is_empty());
        let ended = dialogs.sweep(140_001, 3_600_000);
        assert_eq!(ended.len(), 1);
        let (d, at, why) = &ended[0];
        assert_eq!(
            (d.call_id.as_str(), *at, *why),
            ("st", 50_000, EndReason::SessionExpired)
        );
        assert!(dialogs.is_empty());
    }

    #[test]
    fn a_call_is_ended_and_billed_at_the_maximum_duration() {
        let dialogs = Dialogs::default();
        dialogs.upsert(dialog("long", 10_000, None));
        assert!(dialogs.sweep(10_000 + 59_999, 60_000).is_empty());
        let ended = dialogs.sweep(10_000 + 61_000, 60_000);
        assert_eq!(ended.len(), 1);
        assert_eq!((ended[0].1, ended[0].2), (70_000, EndReason::MaxDuration));
    }

    #[test]
    fn session_expires_is_read_with_parameters_and_nonsense_ignored() {
        let msg = |value: &str| {
            let text = format!(
                "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK1\r\nFrom: <sip:a@x>;tag=1\r\n\
                 To: <sip:b@x>;tag=2\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nSession-Expires: {value}\r\nContent-Length: 0\r\n\r\n"
            );
            pbx_sip_message::Message::parse_datagram(text.into_bytes().into(), &Default::default())
                .expect("parse")
        };
        assert_eq!(
            session_expires_ms(&msg("1800;refresher=uac")),
            Some(1_800_000)
        );
        assert_eq!(
            session_expires_ms(&msg("30")),
            None,
            "below the RFC 4028 minimum"
        );
        assert_eq!(session_expires_ms(&msg("soon")), None);
    }
}
