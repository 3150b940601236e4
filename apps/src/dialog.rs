//! The user-agent side of one call (RFC 3261 §12): the dialog the
//! application server's answer created (or the answer to a call it
//! placed), and the requests it sends in it (BYE; NOTIFY in a lamp's
//! subscription; the ACK of a call it placed) along the route the proxy
//! recorded. Also the out-of-dialog requests it sends itself (unsolicited
//! MWI NOTIFY) and its answers to requests.

use std::net::SocketAddr;

use bytes::Bytes;
use pbx_sip_message::{Header, HeaderName, Message, Uri};

/// One dialog (a call's, or a subscription's), as the application server
/// holds it: as the UAS mostly, as the UAC for a call it placed.
#[derive(Debug, Clone)]
pub struct Dialog {
    pub call_id: String,
    /// Our side: the To of the INVITE, with our tag.
    pub local: String,
    /// Their side: the From of the INVITE, with its tag.
    pub remote: String,
    /// Where in-dialog requests go: the INVITE's Contact.
    pub remote_target: Uri,
    /// The Record-Route values of the INVITE, in order (RFC 3261 §12.1.1).
    pub route_set: Vec<String>,
    pub local_cseq: u32,
}

impl Dialog {
    /// The dialog an answer to `invite` (or a SUBSCRIBE) creates, with our
    /// tag `tag`.
    pub fn from_invite(invite: &Message, tag: &str) -> Option<Dialog> {
        let target = invite.contacts().ok()?.into_iter().find_map(|c| match c {
            pbx_sip_message::Contact::Addr(a) => Some(a.uri),
            pbx_sip_message::Contact::Star => None,
        })?;
        let mut local = invite.to().clone();
        local.params.set("tag", Some(tag));
        Some(Dialog {
            call_id: invite.call_id().to_owned(),
            local: local.to_string(),
            remote: invite.from().to_string(),
            remote_target: target,
            route_set: invite
                .values(&HeaderName::RecordRoute)
                .filter_map(|h| h.text().map(|t| t.trim().to_owned()))
                .collect(),
            local_cseq: 0,
        })
    }

    /// The dialog a 2xx to an INVITE we sent creates (RFC 3261 §12.1.2):
    /// `local` is our From (with our tag); the route is the 2xx's
    /// Record-Route reversed; the next request's CSeq follows the INVITE's.
    pub fn from_answer(answer: &Message, local: &str) -> Option<Dialog> {
        let target = answer.contacts().ok()?.into_iter().find_map(|c| match c {
            pbx_sip_message::Contact::Addr(a) => Some(a.uri),
            pbx_sip_message::Contact::Star => None,
        })?;
        let mut route_set: Vec<String> = answer
            .values(&HeaderName::RecordRoute)
            .filter_map(|h| h.text().map(|t| t.trim().to_owned()))
            .collect();
        route_set.reverse();
        Some(Dialog {
            call_id: answer.call_id().to_owned(),
            local: local.to_owned(),
            remote: answer.to().to_string(),
            remote_target: target,
            route_set,
            local_cseq: answer.cseq().seq,
        })
    }

    /// The ACK of the 2xx that made the dialog: the INVITE's CSeq, a new
    /// branch (RFC 3261 §13.2.2.4).
    pub fn ack(&self, via: SocketAddr) -> Option<(Bytes, SocketAddr)> {
        self.build("ACK", self.local_cseq, via, "", "")
    }

    /// A request in the dialog (`BYE`), from `via` (our socket), and where
    /// to send it: the first hop of the route set, else the remote target.
    /// None when that is not an IP address (no DNS here).
    pub fn request(&mut self, method: &str, via: SocketAddr) -> Option<(Bytes, SocketAddr)> {
        self.request_with(method, via, "", "")
    }

    /// Our tag in the dialog.
    pub fn local_tag(&self) -> Option<String> {
        tag_of(&self.local)
    }

    /// The peer's tag in the dialog.
    pub fn remote_tag(&self) -> Option<String> {
        tag_of(&self.remote)
    }

    /// [`Dialog::request`] with more header lines (each ending in CRLF;
    /// Content-Type among them when `body` is not empty) and a body.
    pub fn request_with(
        &mut self,
        method: &str,
        via: SocketAddr,
        headers: &str,
        body: &str,
    ) -> Option<(Bytes, SocketAddr)> {
        self.local_cseq += 1;
        self.build(method, self.local_cseq, via, headers, body)
    }

    fn build(
        &self,
        method: &str,
        cseq: u32,
        via: SocketAddr,
        headers: &str,
        body: &str,
    ) -> Option<(Bytes, SocketAddr)> {
        let first_hop = match self.route_set.first() {
            Some(route) => uri_of(route)?,
            None => self.remote_target.clone(),
        };
        let to = hop_address(&first_hop)?;
        let mut text = format!(
            "{method} {} SIP/2.0\r\nVia: SIP/2.0/UDP {via};branch={}\r\nMax-Forwards: 70\r\n",
            self.remote_target,
            new_branch()
        );
        for route in &self.route_set {
            text.push_str(&format!("Route: {route}\r\n"));
        }
        text.push_str(&format!(
            "From: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {} {method}\r\n{headers}Content-Length: {}\r\n\r\n{body}",
            self.local,
            self.remote,
            self.call_id,
            cseq,
            body.len()
        ));
        Some((Bytes::from(text), to))
    }
}

/// The tag of a From or To value.
fn tag_of(value: &str) -> Option<String> {
    pbx_sip_message::NameAddr::parse(value).ok()?.tag()
}

/// The URI inside a name-addr such as a Route value.
fn uri_of(value: &str) -> Option<Uri> {
    pbx_sip_message::NameAddr::parse(value).ok().map(|n| n.uri)
}

/// The address a SIP URI with an IP literal names.
pub fn hop_address(uri: &Uri) -> Option<SocketAddr> {
    let sip = uri.as_sip()?;
    let ip = sip.host.ip()?;
    Some(SocketAddr::new(ip, sip.port.unwrap_or(5060)))
}

/// A new RFC 3261 branch.
pub fn new_branch() -> String {
    format!("z9hG4bKapp{:016x}", rand::random::<u64>())
}

/// A new tag or Call-ID part.
pub fn new_token() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// An answer to `req`: `code`, our tag on the To (when given, or a new one
/// outside a dialog), the
/// Record-Route of the request copied (2xx to an INVITE, §12.1.1), a
/// Contact and a body when given.
pub fn answer(
    req: &Message,
    code: u16,
    reason: &str,
    tag: Option<&str>,
    contact: Option<SocketAddr>,
    sdp: Option<String>,
) -> Bytes {
    answer_message(req, code, reason, tag, contact, sdp).to_bytes()
}

/// [`answer`] before it is printed, for headers of its own.
pub fn answer_message(
    req: &Message,
    code: u16,
    reason: &str,
    tag: Option<&str>,
    contact: Option<SocketAddr>,
    sdp: Option<String>,
) -> Message {
    // A request outside a dialog gets a tag of ours (§8.2.6.2).
    let own;
    let tag = match tag {
        None if req.to().tag().is_none() => {
            own = new_token();
            Some(own.as_str())
        }
        t => t,
    };
    let mut resp = Message::response(req, code, reason, tag);
    if (200..300).contains(&code) {
        for rr in req.values(&HeaderName::RecordRoute) {
            resp.push(rr.clone());
        }
    }
    if let Some(c) = contact {
        resp.push(Header::new(HeaderName::Contact, format!("<sip:app@{c}>")));
    }
    resp.push(Header::new(
        HeaderName::Allow,
        "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, SUBSCRIBE",
    ));
    if let Some(body) = sdp {
        resp.push(Header::new(HeaderName::ContentType, "application/sdp"));
        resp.body = Bytes::from(body);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invite() -> Message {
        let raw = "INVITE sip:vm-7@127.0.0.1:5099 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKp1\r\n\
Record-Route: <sip:127.0.0.1:5060;lr;r=abc>\r\n\
From: \"Ann\" <sip:101@acme.test>;tag=caller1\r\nTo: <sip:102@acme.test>\r\nCall-ID: call-1\r\nCSeq: 2 INVITE\r\n\
Contact: <sip:101@192.0.2.10:5062>\r\nContent-Length: 0\r\n\r\n";
        Message::parse_datagram(Bytes::from(raw), &Default::default()).expect("invite")
    }

    #[test]
    fn a_bye_follows_the_recorded_route_with_swapped_parties() {
        let mut d = Dialog::from_invite(&invite(), "apptag").expect("dialog");
        let (bye, to) = d
            .request("BYE", "127.0.0.1:5099".parse().expect("addr"))
            .expect("bye");
        assert_eq!(to, "127.0.0.1:5060".parse::<SocketAddr>().expect("addr"));
        let m = Message::parse_datagram(bye, &Default::default()).expect("a valid BYE");
        assert_eq!(
            m.request_line().map(|r| r.uri.to_string()).as_deref(),
            Some("sip:101@192.0.2.10:5062")
        );
        assert_eq!(m.from().tag().as_deref(), Some("apptag"));
        assert_eq!(m.to().tag().as_deref(), Some("caller1"));
        assert_eq!(m.cseq().seq, 1);
        assert_eq!(
            m.value_text(&HeaderName::Route).as_deref(),
            Some("<sip:127.0.0.1:5060;lr;r=abc>")
        );
    }

    #[test]
    fn a_placed_calls_dialog_follows_the_reversed_record_route() {
        let raw = "SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bKapp1\r\n\
Record-Route: <sip:127.0.0.1:5060;lr;r=in>\r\n\
Record-Route: <sip:127.0.0.1:5060;lr;r=out>\r\n\
From: <sip:+4930@acme.test>;tag=ours\r\nTo: <sip:102@acme.test>;tag=theirs\r\nCall-ID: placed-1\r\nCSeq: 1 INVITE\r\n\
Contact: <sip:102@192.0.2.10:5062>\r\nContent-Length: 0\r\n\r\n";
        let ok = Message::parse_datagram(Bytes::from(raw), &Default::default()).expect("200");
        let mut d = Dialog::from_answer(&ok, "<sip:+4930@acme.test>;tag=ours").expect("dialog");
        let via = "127.0.0.1:5099".parse().expect("addr");
        let (ack, to) = d.ack(via).expect("ack");
        assert_eq!(to, "127.0.0.1:5060".parse::<SocketAddr>().expect("addr"));
        let ack = Message::parse_datagram(ack, &Default::default()).expect("a valid ACK");
        assert_eq!(
            (ack.cseq().seq, ack.cseq().method.clone()),
            (1, pbx_sip_message::Method::Ack)
        );
        let routes: Vec<String> = ack
            .values(&HeaderName::Route)
            .filter_map(|h| h.text().map(|t| t.to_string()))
            .collect();
        assert_eq!(
            routes,
            [
                "<sip:127.0.0.1:5060;lr;r=out>",
                "<sip:127.0.0.1:5060;lr;r=in>"
            ]
        );
        let (bye, _) = d.request("BYE", via).expect("bye");
        let bye = Message::parse_datagram(bye, &Default::default()).expect("a valid BYE");
        assert_eq!(bye.cseq().seq, 2);
        assert_eq!(bye.from().tag().as_deref(), Some("ours"));
        assert_eq!(bye.to().tag().as_deref(), Some("theirs"));
    }

    #[test]
    fn the_answer_copies_the_record_route_and_carries_the_sdp() {
        let ok = answer(
            &invite(),
            200,
            "OK",
            Some("apptag"),
            Some("127.0.0.1:5099".parse().expect("addr")),
            Some("v=0\r\n".into()),
        );
        let m = Message::parse_datagram(ok, &Default::default()).expect("a valid 200");
        assert_eq!(m.to().tag().as_deref(), Some("apptag"));
        assert!(m.value_text(&HeaderName::RecordRoute).is_some());
        assert_eq!(&m.body[..], b"v=0\r\n");
    }
}
