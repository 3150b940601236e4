//! Matching messages to transactions (RFC 3261 §17.1.3 and §17.2.3).

use pbx_sip_message::{Message, Method};

/// Identifies a server transaction: the request's top Via branch and sent-by
/// (or, for RFC 2543 requests without the magic cookie, the fields §17.2.3
/// lists), and the method, with ACK standing for the INVITE it acknowledges.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServerKey {
    id: String,
    sent_by: String,
    method: Method,
}

impl ServerKey {
    /// The key of the transaction `request` belongs to.
    pub fn of(request: &Message) -> ServerKey {
        let method = match request.method() {
            Some(Method::Ack) | None => Method::Invite,
            Some(m) => m.clone(),
        };
        ServerKey::with_method(request, method)
    }

    /// The key of the INVITE transaction a CANCEL refers to (§9.2).
    pub fn cancelled_invite(cancel: &Message) -> ServerKey {
        ServerKey::with_method(cancel, Method::Invite)
    }

    fn with_method(request: &Message, method: Method) -> ServerKey {
        let via = request.top_via();
        let sent_by = match via.port {
            Some(p) => format!("{}:{p}", via.host),
            None => via.host.to_string(),
        };
        let id = if via.has_rfc3261_branch() {
            via.branch().unwrap_or_default()
        } else {
            // RFC 2543: the INVITE has no To tag yet, and ACK and CANCEL must
            // match it, so the To tag only counts for other methods.
            let ruri = request
                .request_line()
                .map(|r| r.uri.to_string())
                .unwrap_or_default();
            let to_tag = match method {
                Method::Invite | Method::Cancel => String::new(),
                _ => request.to().tag().unwrap_or_default(),
            };
            format!(
                "2543|{ruri}|{}|{to_tag}|{}|{}|{}",
                request.from().tag().unwrap_or_default(),
                request.call_id(),
                request.cseq().seq,
                via.branch().unwrap_or_default()
            )
        };
        ServerKey {
            id,
            sent_by,
            method,
        }
    }
}

/// Identifies a client transaction: the branch this element chose and the
/// CSeq method (a CANCEL shares its INVITE's branch).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientKey {
    pub branch: String,
    pub method: Method,
}

impl ClientKey {
    /// The key a response belongs to.
    pub fn of_response(response: &Message) -> Option<ClientKey> {
        Some(ClientKey {
            branch: response.top_via().branch()?,
            method: response.cseq().method.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use pbx_sip_message::Limits;

    fn msg(text: &str) -> Message {
        Message::parse_datagram(Bytes::from(text.replace('\n', "\r\n")), &Limits::default())
            .expect("parses")
    }

    const INVITE: &str = "INVITE sip:b@h SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc\nFrom: <sip:a@h>;tag=1\nTo: <sip:b@h>\nCall-ID: c\nCSeq: 7 INVITE\nContent-Length: 0\n\n";

    #[test]
    fn ack_and_cancel_find_their_invite() {
        let invite = msg(INVITE);
        let ack = msg(&INVITE
            .replace("INVITE sip", "ACK sip")
            .replace("7 INVITE", "7 ACK")
            .replace("To: <sip:b@h>", "To: <sip:b@h>;tag=t"));
        let cancel = msg(&INVITE
            .replace("INVITE sip", "CANCEL sip")
            .replace("7 INVITE", "7 CANCEL"));
        assert_eq!(ServerKey::of(&invite), ServerKey::of(&ack));
        assert_ne!(ServerKey::of(&invite), ServerKey::of(&cancel));
        assert_eq!(ServerKey::of(&invite), ServerKey::cancelled_invite(&cancel));
        let other_host = msg(&INVITE.replace("192.0.2.1:5060", "192.0.2.2:5060"));
        assert_ne!(ServerKey::of(&invite), ServerKey::of(&other_host));
    }

    #[test]
    fn rfc2543_requests_match_by_their_fields() {
        let old = INVITE.replace(";branch=z9hG4bKabc", "");
        let invite = msg(&old);
        let ack = msg(&old
            .replace("INVITE sip", "ACK sip")
            .replace("7 INVITE", "7 ACK")
            .replace("To: <sip:b@h>", "To: <sip:b@h>;tag=t"));
        assert_eq!(ServerKey::of(&invite), ServerKey::of(&ack));
        let next = msg(&old.replace("7 INVITE", "8 INVITE"));
        assert_ne!(ServerKey::of(&invite), ServerKey::of(&next));
    }
}
