//! Media anchoring as the proxy sees it: whether a call's media goes
//! through the relay (the policy), and the few calls the proxy makes into
//! the relay while a call's offers and answers pass (`pbx_media::Relay`:
//! reserve, update at each offer and answer, choose, delete). Nothing here touches a packet.

use std::net::IpAddr;

use pbx_media::{CallKey, MediaError, MediaReport, Party};
use pbx_sip_message::{Header, HeaderName, Message};
use pbx_store::media::{AnchorMode, MediaFigures, MediaSide};

use crate::core::Core;
use crate::location::Binding;
use crate::transport::Flow;

/// The body of a message if it is SDP.
fn sdp_of(m: &Message) -> Option<&[u8]> {
    if m.body.is_empty() {
        return None;
    }
    let ct = m.value_text(&HeaderName::ContentType)?;
    let mime = ct.split(';').next().unwrap_or_default().trim();
    mime.eq_ignore_ascii_case("application/sdp")
        .then_some(&m.body[..])
}

fn differs(source: IpAddr, written: Option<IpAddr>) -> bool {
    written.is_some_and(|ip| ip != source && !ip.is_unspecified())
}

/// A request's sender is behind NAT when what it writes about itself
/// (Via sent-by, Contact, SDP connection address) is not where it came from.
pub fn sender_behind_nat(req: &Message, source: IpAddr) -> bool {
    let via = req.top_via().host.ip();
    let contact = match req.contacts().ok().and_then(|c| c.into_iter().next()) {
        Some(pbx_sip_message::Contact::Addr(a)) => a.uri.as_sip().and_then(|u| u.host.ip()),
        _ => None,
    };
    let sdp = sdp_of(req)
        .and_then(|b| pbx_media::sdp::Sdp::parse(b).ok())
        .and_then(|s| s.streams.iter().find_map(|s| s.address));
    differs(source, via) || differs(source, contact) || differs(source, sdp)
}

/// A registered phone is behind NAT when its Contact is not where its
/// REGISTER came from.
pub fn binding_behind_nat(b: &Binding) -> bool {
    let contact = b
        .name_addr()
        .and_then(|n| n.uri.as_sip().and_then(|u| u.host.ip()));
    differs(b.flow.remote.ip(), contact)
}

/// Whether a new call is anchored: the customer's choice, else its
/// reseller's, else the node's; carriers' calls unless `never`.
pub fn wanted(mode: AnchorMode, carrier: bool, behind_nat: bool) -> bool {
    match mode {
        AnchorMode::Always => true,
        AnchorMode::Nat => carrier || behind_nat,
        AnchorMode::Never => false,
    }
}

/// The address our media has toward the party at the other end of `flow`.
fn media_ip(core: &Core, flow: &Flow) -> IpAddr {
    // This node's application server reaches us on loopback, whatever the
    // node advertises to the world.
    if core.from_application(flow) {
        return core.node.local_ip_for(flow);
    }
    match core.node.advertised(flow).0.ip() {
        Some(ip) if ip.is_ipv4() == flow.remote.is_ipv4() => ip,
        _ => core.node.local_ip_for(flow),
    }
}

/// Checks a new call's offer and takes the caller's relay ports, before
/// anything rings. The error answers the INVITE.
pub fn admit(core: &Core, key: &CallKey, req: &Message, flow: &Flow) -> Result<(), MediaError> {
    if let Some(body) = sdp_of(req) {
        pbx_media::sdp::Sdp::parse(body)?;
    }
    core.media.reserve(key, Party::Caller, media_ip(core, flow))
}

/// Anchors a call that rang phones unanchored before it rings an
/// application: the caller's ports are taken now. False when the relay has
/// none or the offer is unreadable: the application is not rung then.
pub fn anchor_now(core: &Core, c: &mut crate::context::Context) -> bool {
    let key = c.call_key();
    let Some(req) = c.request.as_ref() else {
        return false;
    };
    if let Err(e) = admit(core, &key, req, &c.inbound) {
        tracing::warn!(error = %e, "a call to an application could not be anchored");
        core.media.delete(&key);
        return false;
    }
    c.media = Some(crate::context::MediaLeg { key, parties: None });
    true
}

/// Music on hold for a call of `tenant` about to ring `bindings`: none
/// when an application answers it (a conference must not hear one
/// participant's music; voicemail records nothing of it), else the
/// customer's uploaded music if it has some (read when a hold starts).
pub fn music_for(
    core: &Core,
    key: &CallKey,
    tenant: &crate::directory::Tenant,
    bindings: &[crate::location::Binding],
) {
    if bindings.iter().any(|b| b.application) {
        core.media.set_music(key, None);
        return;
    }
    let file = tenant
        .music
        .as_deref()
        .zip(core.audio.get())
        .and_then(|(music, audio)| audio.files.path(music).ok());
    if let Some(path) = file {
        core.media.set_music_file(key, path);
    }
}

/// Rewrites `m`'s SDP (if any) on its way from `from` (whose signalling
/// came from `source`) to `to` (reached on `toward`).
pub fn pass(
    core: &Core,
    key: &CallKey,
    (from, to): (Party, Party),
    m: &mut Message,
    source: IpAddr,
    toward: &Flow,
) -> Result<(), MediaError> {
    let Some(body) = sdp_of(m) else {
        return Ok(());
    };
    let rewritten = core
        .media
        .update(key, from, to, body, source, media_ip(core, toward))?;
    m.body = rewritten.into();
    Ok(())
}

/// The Warning (RFC 3261 §20.43) that says why a call's media was refused.
pub fn warning(resp: &mut Message, e: &MediaError) {
    let text = e.to_string().replace('"', "'");
    resp.push(Header::new(
        HeaderName::Warning,
        format!("399 pbx \"{text}\""),
    ));
}

/// The call ended: its ports are freed and its figures returned for the record.
pub fn end(core: &Core, call_id: &str, caller_tag: &str) -> Option<Box<MediaFigures>> {
    let report = core
        .media
        .delete(&(call_id.to_owned(), caller_tag.to_owned()))?;
    Some(Box::new(figures(report)))
}

fn figures(r: MediaReport) -> MediaFigures {
    let side = |s: pbx_media::SideReport| MediaSide {
        packets: s.packets,
        bytes: s.bytes,
        lost: s.lost,
        jitter_ms: s.jitter_ms,
        rtcp_lost: s.rtcp_lost,
        rtcp_jitter_ms: s.rtcp_jitter_ms,
        codec: s.codec,
        address: s.address,
    };
    MediaFigures {
        caller: r.caller.map(side),
        callee: r.callee.map(side),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy() {
        assert!(wanted(AnchorMode::Always, false, false));
        assert!(wanted(AnchorMode::Nat, true, false));
        assert!(wanted(AnchorMode::Nat, false, true));
        assert!(!wanted(AnchorMode::Nat, false, false));
        assert!(!wanted(AnchorMode::Never, true, true));
    }

    #[test]
    fn nat_is_what_a_phone_writes_against_where_it_sends_from() {
        let raw = "INVITE sip:102@a.example SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.168.1.10:5060;branch=z9hG4bK1\r\n\
From: <sip:101@a.example>;tag=1\r\nTo: <sip:102@a.example>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\
Contact: <sip:101@192.168.1.10:5060>\r\nContent-Length: 0\r\n\r\n";
        let m =
            Message::parse_datagram(raw.as_bytes().to_vec().into(), &Default::default()).unwrap();
        assert!(sender_behind_nat(&m, "10.0.0.11".parse().unwrap()));
        assert!(!sender_behind_nat(&m, "192.168.1.10".parse().unwrap()));
    }
}
