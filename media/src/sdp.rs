//! SDP (RFC 8866) as far as anchoring needs it, and the rewrite that makes
//! the other party send its media to the relay (RFC 3264 offer/answer).
//!
//! Only what anchoring must know is interpreted: the connection addresses,
//! each stream's port and transport, `a=rtcp`, `a=rtcp-mux`, the direction
//! attributes and the codec names. Every other line (codecs, `ptime`,
//! `fmtp`, attributes we have never heard of) is kept byte for byte, so
//! the two phones still negotiate with each other and not with us.

use std::net::IpAddr;

/// Why an SDP body cannot be anchored. `Malformed` is the sender's error
/// (SIP 400); `Unsupported` is well-formed but not something a relay can
/// carry (SIP 488).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SdpError {
    #[error("malformed SDP: {0}")]
    Malformed(String),
    #[error("unsupported SDP: {0}")]
    Unsupported(String),
}

impl SdpError {
    /// The SIP status that answers it.
    pub fn sip_status(&self) -> u16 {
        match self {
            SdpError::Malformed(_) => 400,
            SdpError::Unsupported(_) => 488,
        }
    }
}

/// Limits that keep a hostile body from costing much.
pub const MAX_SDP_BYTES: usize = 16 * 1024;
pub const MAX_STREAMS: usize = 8;
const MAX_LINES: usize = 512;

/// `a=sendrecv` and friends (RFC 3264 §5.1); sendrecv when absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    fn from_attribute(a: &str) -> Option<Direction> {
        match a {
            "sendrecv" => Some(Direction::SendRecv),
            "sendonly" => Some(Direction::SendOnly),
            "recvonly" => Some(Direction::RecvOnly),
            "inactive" => Some(Direction::Inactive),
            _ => None,
        }
    }

    /// The party holds the call (or was put on hold) in this direction.
    pub fn is_hold(self) -> bool {
        self != Direction::SendRecv
    }
}

/// One `m=` section as anchoring sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stream {
    pub media: String,
    /// 0: the stream is declined or disabled.
    pub port: u16,
    pub proto: String,
    /// Where the party receives RTP (media `c=`, else session `c=`); None
    /// for a name we do not resolve (the relay then learns by latching).
    pub address: Option<IpAddr>,
    /// Where it receives RTCP, if `a=rtcp` says (else port + 1).
    pub rtcp_port: Option<u16>,
    pub rtcp_address: Option<IpAddr>,
    pub rtcp_mux: bool,
    pub direction: Direction,
    /// The first format's codec name ("PCMU", "opus"), for call records.
    pub codec: Option<String>,
    /// Its RTP clock rate, for jitter.
    pub clock_rate: u32,
}

impl Stream {
    /// UDP-based RTP the relay can carry (RTP/AVP, RTP/SAVP, UDP/TLS/RTP/SAVPF…).
    pub fn relayable(&self) -> bool {
        let p = self.proto.to_ascii_uppercase();
        p.contains("RTP") && !p.contains("TCP") || p == "UDP"
    }
}

/// A parsed body: its lines (without line ends) and what they mean.
#[derive(Debug, Clone)]
pub struct Sdp {
    lines: Vec<String>,
    crlf: bool,
    /// Index in `lines` where each `m=` section starts.
    starts: Vec<usize>,
    pub streams: Vec<Stream>,
}

/// Where the relay wants one stream's media: its address and ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Anchor {
    pub address: IpAddr,
    pub rtp_port: u16,
    pub rtcp_port: u16,
}

const ICE_ATTRIBUTES: [&str; 9] = [
    "candidate",
    "ice-ufrag",
    "ice-pwd",
    "ice-options",
    "ice-lite",
    "ice-mismatch",
    "ice-pacing",
    "remote-candidates",
    "end-of-candidates",
];

/// An `a=rtpmap` line: payload type, encoding name, clock rate.
type Rtpmap = (u8, String, u32);

fn malformed(line: usize, what: &str) -> SdpError {
    SdpError::Malformed(format!("line {}: {what}", line + 1))
}

/// The address of a `c=` value ("IN IP4 192.0.2.1", "IN IP6 ::1",
/// multicast "/ttl" suffixes ignored). Ok(None) for a domain name.
fn connection(value: &str, n: usize) -> Result<Option<IpAddr>, SdpError> {
    let mut parts = value.split_ascii_whitespace();
    let (Some(net), Some(kind), Some(addr), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed(n, "c= needs <nettype> <addrtype> <address>"));
    };
    if net != "IN" {
        return Err(SdpError::Unsupported(format!("network type {net}")));
    }
    if kind != "IP4" && kind != "IP6" {
        return Err(SdpError::Unsupported(format!("address type {kind}")));
    }
    let addr = addr.split('/').next().unwrap_or(addr);
    match addr.parse::<IpAddr>() {
        Ok(ip) if ip.is_ipv4() == (kind == "IP4") => Ok(Some(ip)),
        Ok(_) => Err(malformed(n, "address does not match its type")),
        Err(_)
            if addr
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-') =>
        {
            Ok(None)
        }
        Err(_) => Err(malformed(n, "bad connection address")),
    }
}

fn static_codec(pt: u8) -> Option<(&'static str, u32)> {
    Some(match pt {
        0 => ("PCMU", 8000),
        3 => ("GSM", 8000),
        4 => ("G723", 8000),
        8 => ("PCMA", 8000),
        9 => ("G722", 8000),
        18 => ("G729", 8000),
        _ => return None,
    })
}

impl Sdp {
    pub fn parse(body: &[u8]) -> Result<Sdp, SdpError> {
        if body.len() > MAX_SDP_BYTES {
            return Err(SdpError::Unsupported(format!(
                "body larger than {MAX_SDP_BYTES} bytes"
            )));
        }
        let text =
            std::str::from_utf8(body).map_err(|_| SdpError::Malformed("not UTF-8 text".into()))?;
        let crlf = text.contains("\r\n");
        let mut lines: Vec<String> = Vec::new();
        for raw in text.split('\n') {
            let line = raw.strip_suffix('\r').unwrap_or(raw);
            if line.is_empty() {
                continue;
            }
            if lines.len() == MAX_LINES {
                return Err(SdpError::Unsupported("too many lines".into()));
            }
            lines.push(line.to_owned());
        }
        let mut sdp = Sdp {
            lines,
            crlf,
            starts: Vec::new(),
            streams: Vec::new(),
        };
        sdp.interpret()?;
        Ok(sdp)
    }

    fn interpret(&mut self) -> Result<(), SdpError> {
        if self.lines.first().map(String::as_str) != Some("v=0") {
            return Err(SdpError::Malformed("must begin with v=0".into()));
        }
        let mut session_addr: Option<Option<IpAddr>> = None;
        let mut session_dir = Direction::SendRecv;
        let mut streams: Vec<(Stream, Option<Option<IpAddr>>, Option<Direction>)> = Vec::new();
        // Per stream: its first payload type and its rtpmap lines.
        let mut rtpmaps: Vec<(Option<u8>, Vec<Rtpmap>)> = Vec::new();
        for (n, line) in self.lines.iter().enumerate() {
            let b = line.as_bytes();
            if b.len() < 2 || b[1] != b'=' || !b[0].is_ascii_lowercase() {
                return Err(malformed(n, "not <type>=<value>"));
            }
            let value = &line[2..];
            match b[0] {
                b'm' => {
                    if streams.len() == MAX_STREAMS {
                        return Err(SdpError::Unsupported("too many media streams".into()));
                    }
                    let mut parts = value.split_ascii_whitespace();
                    let (Some(media), Some(port), Some(proto)) =
                        (parts.next(), parts.next(), parts.next())
                    else {
                        return Err(malformed(n, "m= needs <media> <port> <proto> <fmt>"));
                    };
                    let first_fmt = parts.next();
                    let port_text = port.split('/').next().unwrap_or(port);
                    let port: u16 = port_text
                        .parse()
                        .map_err(|_| malformed(n, "bad media port"))?;
                    let static_pt = first_fmt.and_then(|f| f.parse::<u8>().ok());
                    let (codec, clock_rate) = static_pt
                        .and_then(static_codec)
                        .map(|(c, r)| (Some(c.to_owned()), r))
                        .unwrap_or((None, 8000));
                    self.starts.push(n);
                    streams.push((
                        Stream {
                            media: media.to_owned(),
                            port,
                            proto: proto.to_owned(),
                            address: None,
                            rtcp_port: None,
                            rtcp_address: None,
                            rtcp_mux: false,
                            direction: Direction::SendRecv,
                            codec,
                            clock_rate,
                        },
                        None,
                        None,
                    ));
                    rtpmaps.push((static_pt, Vec::new()));
                }
                b'c' => {
                    let addr = connection(value, n)?;
                    match streams.last_mut() {
                        Some(s) => s.1 = Some(addr),
                        None => session_addr = Some(addr),
                    }
                }
                b'a' => {
                    let (name, arg) = match value.split_once(':') {
                        Some((k, v)) => (k, Some(v)),
                        None => (value, None),
                    };
                    if let Some(d) = Direction::from_attribute(name) {
                        match streams.last_mut() {
                            Some(s) => s.2 = Some(d),
                            None => session_dir = d,
                        }
                        continue;
                    }
                    let Some(s) = streams.last_mut() else {
                        continue;
                    };
                    match (name, arg) {
                        ("rtcp-mux", _) => s.0.rtcp_mux = true,
                        ("rtcp", Some(arg)) => {
                            let mut parts = arg.split_ascii_whitespace();
                            let port = parts
                                .next()
                                .and_then(|p| p.parse::<u16>().ok())
                                .ok_or_else(|| malformed(n, "bad a=rtcp port"))?;
                            s.0.rtcp_port = Some(port);
                            let rest: Vec<&str> = parts.collect();
                            if !rest.is_empty() {
                                s.0.rtcp_address = connection(&rest.join(" "), n)?;
                            }
                        }
                        ("rtpmap", Some(arg)) => {
                            let mut parts = arg.split_ascii_whitespace();
                            let pt = parts.next().and_then(|p| p.parse::<u8>().ok());
                            let enc = parts.next().unwrap_or_default();
                            let mut enc = enc.split('/');
                            let name = enc.next().unwrap_or_default().to_owned();
                            let rate = enc.next().and_then(|r| r.parse::<u32>().ok()).unwrap_or(0);
                            if let (Some(pt), Some((_, maps))) = (pt, rtpmaps.last_mut()) {
                                maps.push((pt, name, rate));
                            }
                        }
                        _ => {}
                    }
                }
                _ => {}
            }
        }
        if streams.is_empty() {
            // An SDP with no streams is legal but gives a relay nothing to do.
            self.streams = Vec::new();
            return Ok(());
        }
        for (i, ((mut stream, addr, dir), maps)) in streams.into_iter().zip(rtpmaps).enumerate() {
            let addr = match (addr, session_addr) {
                (Some(a), _) => a,
                (None, Some(a)) => a,
                (None, None) if stream.port == 0 => None,
                (None, None) => {
                    return Err(SdpError::Malformed(format!(
                        "stream {} has no connection address",
                        i + 1
                    )))
                }
            };
            stream.address = addr;
            stream.direction = dir.unwrap_or(session_dir);
            // RFC 2543 hold: c=0.0.0.0.
            if addr.is_some_and(|a| a.is_unspecified()) {
                stream.direction = Direction::Inactive;
            }
            // The first format's rtpmap (a dynamic type, or a static one re-mapped).
            let (first, maps) = maps;
            if let Some((_, name, rate)) = maps.iter().find(|(pt, _, _)| Some(*pt) == first) {
                stream.codec = Some(name.clone());
                if *rate > 0 {
                    stream.clock_rate = *rate;
                }
            }
            self.streams.push(stream);
        }
        Ok(())
    }

    /// The body with the relay's address and ports in place of the
    /// party's: `o=` and every `c=` name the relay, each relayed stream's
    /// port is the relay's, `a=rtcp` follows, ICE is dropped (towards plain
    /// SIP phones the relay is the only candidate). Streams the relay
    /// cannot carry are declined (port 0). `anchors[i]` is stream i's.
    pub fn rewrite(&self, anchors: &[Option<Anchor>]) -> Vec<u8> {
        let Some(main) = anchors.iter().flatten().next().copied() else {
            return self.to_bytes();
        };
        let kind = |ip: IpAddr| if ip.is_ipv4() { "IP4" } else { "IP6" };
        let mut out: Vec<String> = Vec::with_capacity(self.lines.len() + 2);
        let mut stream: Option<usize> = None;
        // Each stream names its own address (a session-level c= may belong
        // to another family than this stream's anchor), in its place: after
        // the m= line and any i= line (RFC 8866 §5 order).
        let mut pending_c: Option<String> = None;
        for (n, line) in self.lines.iter().enumerate() {
            let b = line.as_bytes();
            if pending_c.is_some() && b[0] != b'i' && !self.starts.contains(&n) {
                if b[0] == b'c' {
                    out.extend(pending_c.take());
                    continue;
                }
                out.extend(pending_c.take());
            }
            if let Some(i) = self.starts.iter().position(|&s| s == n) {
                out.extend(pending_c.take());
                stream = Some(i);
                let anchor = anchors.get(i).copied().flatten();
                let mut parts: Vec<&str> = line[2..].split_ascii_whitespace().collect();
                let port = match (anchor, self.streams[i].port) {
                    (Some(a), p) if p != 0 => a.rtp_port.to_string(),
                    _ => "0".to_owned(),
                };
                if parts.len() > 1 {
                    parts[1] = &port;
                }
                out.push(format!("m={}", parts.join(" ")));
                let at = anchor.map_or(main.address, |a| a.address);
                pending_c = Some(format!("c=IN {} {}", kind(at), at));
                continue;
            }
            match (b[0], stream) {
                (b'o', None) => {
                    let mut parts: Vec<&str> = line[2..].split_ascii_whitespace().collect();
                    if parts.len() == 6 {
                        let addr = main.address.to_string();
                        parts[4] = kind(main.address);
                        parts[5] = &addr;
                        out.push(format!("o={}", parts.join(" ")));
                    } else {
                        out.push(line.clone());
                    }
                }
                (b'c', None) => out.push(format!("c=IN {} {}", kind(main.address), main.address)),
                (b'a', s) => {
                    let value = &line[2..];
                    let name = value.split(':').next().unwrap_or(value);
                    if ICE_ATTRIBUTES.contains(&name) {
                        continue;
                    }
                    if name == "rtcp" {
                        if let Some(a) = s.and_then(|i| anchors.get(i).copied().flatten()) {
                            out.push(format!(
                                "a=rtcp:{} IN {} {}",
                                a.rtcp_port,
                                kind(a.address),
                                a.address
                            ));
                        }
                        continue;
                    }
                    out.push(line.clone());
                }
                _ => out.push(line.clone()),
            }
        }
        out.extend(pending_c.take());
        self.join(&out)
    }

    fn join(&self, lines: &[String]) -> Vec<u8> {
        let eol = if self.crlf { "\r\n" } else { "\n" };
        let mut out = String::with_capacity(lines.iter().map(|l| l.len() + 2).sum());
        for l in lines {
            out.push_str(l);
            out.push_str(eol);
        }
        out.into_bytes()
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        self.join(&self.lines)
    }

    /// The direction of the first stream that carries media.
    pub fn direction(&self) -> Option<Direction> {
        self.streams
            .iter()
            .find(|s| s.port != 0)
            .map(|s| s.direction)
    }

    /// Says `direction` for every stream, in place of what the party said
    /// (music on hold: the held party is told it receives).
    pub fn set_direction(&mut self, direction: Direction) {
        let name = match direction {
            Direction::SendRecv => "a=sendrecv",
            Direction::SendOnly => "a=sendonly",
            Direction::RecvOnly => "a=recvonly",
            Direction::Inactive => "a=inactive",
        };
        let mut lines = Vec::with_capacity(self.lines.len() + self.starts.len());
        let mut starts = Vec::with_capacity(self.starts.len());
        let mut in_media = false;
        for (n, line) in self.lines.iter().enumerate() {
            if self.starts.contains(&n) {
                if in_media {
                    lines.push(name.to_owned());
                }
                in_media = true;
                starts.push(lines.len());
            }
            let attribute = line.strip_prefix("a=").unwrap_or_default();
            if Direction::from_attribute(attribute).is_none() {
                lines.push(line.clone());
            }
        }
        if in_media {
            lines.push(name.to_owned());
        }
        self.lines = lines;
        self.starts = starts;
        for stream in &mut self.streams {
            stream.direction = direction;
        }
    }

    /// Every stream that carries media holds (is not sendrecv), or none does any more.
    pub fn is_hold(&self) -> bool {
        let live: Vec<&Stream> = self.streams.iter().filter(|s| s.port != 0).collect();
        !live.is_empty() && live.iter().all(|s| s.direction.is_hold())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\n\
o=alice 2890844526 2890844526 IN IP4 192.168.1.10\r\n\
s=-\r\n\
c=IN IP4 192.168.1.10\r\n\
t=0 0\r\n\
m=audio 49170 RTP/AVP 0 8 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=ptime:20\r\n\
a=x-unknown-thing:keep me\r\n\
a=rtcp:49171\r\n\
a=candidate:1 1 UDP 2130706431 192.168.1.10 49170 typ host\r\n\
a=ice-ufrag:abcd\r\n\
a=sendrecv\r\n";

    fn anchor(port: u16) -> Anchor {
        Anchor {
            address: "203.0.113.5".parse().unwrap(),
            rtp_port: port,
            rtcp_port: port + 1,
        }
    }

    #[test]
    fn parses_what_anchoring_needs() {
        let sdp = Sdp::parse(OFFER.as_bytes()).unwrap();
        assert_eq!(sdp.streams.len(), 1);
        let s = &sdp.streams[0];
        assert_eq!(s.port, 49170);
        assert_eq!(s.address, Some("192.168.1.10".parse().unwrap()));
        assert_eq!(s.rtcp_port, Some(49171));
        assert_eq!(s.codec.as_deref(), Some("PCMU"));
        assert_eq!(s.clock_rate, 8000);
        assert_eq!(s.direction, Direction::SendRecv);
        assert!(s.relayable());
        assert!(!sdp.is_hold());
    }

    #[test]
    fn rewrite_names_only_the_relay_and_keeps_the_rest() {
        let sdp = Sdp::parse(OFFER.as_bytes()).unwrap();
        let out = String::from_utf8(sdp.rewrite(&[Some(anchor(30000))])).unwrap();
        assert!(!out.contains("192.168.1.10"), "{out}");
        assert!(out.contains("o=alice 2890844526 2890844526 IN IP4 203.0.113.5\r\n"));
        assert!(out.contains("m=audio 30000 RTP/AVP 0 8 101\r\nc=IN IP4 203.0.113.5\r\n"));
        assert!(out.contains("a=rtcp:30001 IN IP4 203.0.113.5\r\n"));
        for kept in [
            "a=rtpmap:101 telephone-event/8000\r\n",
            "a=fmtp:101 0-16\r\n",
            "a=ptime:20\r\n",
            "a=x-unknown-thing:keep me\r\n",
            "a=sendrecv\r\n",
        ] {
            assert!(out.contains(kept), "{kept} lost: {out}");
        }
        assert!(!out.contains("candidate") && !out.contains("ice-ufrag"));
        // The rewritten body parses and says the same about its stream.
        let again = Sdp::parse(out.as_bytes()).unwrap();
        assert_eq!(again.streams[0].port, 30000);
        assert_eq!(again.streams[0].codec.as_deref(), Some("PCMU"));
    }

    #[test]
    fn hold_and_old_style_hold() {
        let held = OFFER.replace("a=sendrecv", "a=sendonly");
        let sdp = Sdp::parse(held.as_bytes()).unwrap();
        assert_eq!(sdp.streams[0].direction, Direction::SendOnly);
        assert!(sdp.is_hold());
        let old = OFFER.replace("c=IN IP4 192.168.1.10", "c=IN IP4 0.0.0.0");
        assert!(Sdp::parse(old.as_bytes()).unwrap().is_hold());
        let session = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\na=inactive\r\nm=audio 4000 RTP/AVP 8\r\n";
        let sdp = Sdp::parse(session.as_bytes()).unwrap();
        assert_eq!(sdp.streams[0].direction, Direction::Inactive);
        assert_eq!(sdp.streams[0].codec.as_deref(), Some("PCMA"));
    }

    #[test]
    fn a_direction_is_said_once_per_stream() {
        let body =
            "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\na=inactive\r\n\
m=audio 4000 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\na=inactive\r\nm=video 0 RTP/AVP 96\r\n";
        let mut sdp = Sdp::parse(body.as_bytes()).unwrap();
        sdp.set_direction(Direction::SendOnly);
        let text = String::from_utf8(sdp.to_bytes()).unwrap();
        assert_eq!(text.matches("a=sendonly").count(), 2, "{text}");
        assert!(!text.contains("a=inactive"), "{text}");
        let again = Sdp::parse(text.as_bytes()).unwrap();
        assert_eq!(again.direction(), Some(Direction::SendOnly));
        assert_eq!(again.streams[0].codec.as_deref(), Some("PCMA"));
        assert!(
            text.contains(
                "m=audio 4000 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\na=sendonly\r\nm=video"
            ),
            "{text}"
        );
    }

    #[test]
    fn dynamic_codec_ipv6_mux_and_declined_streams() {
        let body = "v=0\no=- 1 1 IN IP6 2001:db8::1\ns=-\nt=0 0\n\
m=audio 5004 RTP/SAVPF 111 0\nc=IN IP6 2001:db8::1\na=rtpmap:111 opus/48000/2\na=rtcp-mux\n\
m=video 0 RTP/AVP 96\n\
m=message 7394 TCP/MSRP *\nc=IN IP6 2001:db8::1\n";
        let sdp = Sdp::parse(body.as_bytes()).unwrap();
        assert_eq!(sdp.streams.len(), 3);
        assert_eq!(sdp.streams[0].codec.as_deref(), Some("opus"));
        assert_eq!(sdp.streams[0].clock_rate, 48000);
        assert!(sdp.streams[0].rtcp_mux);
        assert_eq!(sdp.streams[1].port, 0);
        assert!(!sdp.streams[2].relayable());
        let out = String::from_utf8(sdp.rewrite(&[Some(anchor(30010)), None, None])).unwrap();
        assert!(!out.contains('\r'), "line ends kept as sent");
        assert!(out.contains("m=audio 30010 RTP/SAVPF 111 0\nc=IN IP4 203.0.113.5\n"));
        assert!(out.contains("m=video 0 RTP/AVP 96\n"));
        assert!(
            out.contains("m=message 0 TCP/MSRP *\n"),
            "TCP media is declined: {out}"
        );
        assert!(out.contains("a=rtcp-mux\n"));
        assert!(!out.contains("2001:db8::1"));
    }

    #[test]
    fn bad_bodies_get_a_clear_error() {
        let cases: &[(&[u8], u16)] = &[
            (b"", 400),
            (b"hello", 400),
            (b"v=1\r\n", 400),
            (b"v=0\r\nm=audio\r\n", 400),
            (
                b"v=0\r\nm=audio 99999 RTP/AVP 0\r\nc=IN IP4 10.0.0.1\r\n",
                400,
            ),
            (b"v=0\r\nm=audio 4000 RTP/AVP 0\r\n", 400),
            (b"v=0\r\nc=IN IP4\r\nm=audio 4000 RTP/AVP 0\r\n", 400),
            (
                b"v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 4000 RTP/AVP 0\r\na=rtcp:x\r\n",
                400,
            ),
            (
                b"v=0\r\nc=IN IP6 10.0.0.1\r\nm=audio 4000 RTP/AVP 0\r\n",
                400,
            ),
            (b"v=0\r\nc=ATM NSAP x\r\nm=audio 4000 RTP/AVP 0\r\n", 488),
            (
                b"v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 4000 RTP/AVP 0\r\n\xff=\r\n",
                400,
            ),
            (b"v=0\r\n=x\r\n", 400),
        ];
        for (body, status) in cases {
            let err = Sdp::parse(body).unwrap_err();
            assert_eq!(
                err.sip_status(),
                *status,
                "{:?}: {err}",
                String::from_utf8_lossy(body)
            );
        }
        let mut many = String::from("v=0\r\nc=IN IP4 10.0.0.1\r\n");
        for _ in 0..=MAX_STREAMS {
            many.push_str("m=audio 4000 RTP/AVP 0\r\n");
        }
        assert_eq!(Sdp::parse(many.as_bytes()).unwrap_err().sip_status(), 488);
        let huge = vec![b'a'; MAX_SDP_BYTES + 1];
        assert_eq!(Sdp::parse(&huge).unwrap_err().sip_status(), 488);
    }

    #[test]
    fn a_domain_name_is_learnt_by_latching() {
        let body = "v=0\r\no=- 1 1 IN IP4 media.example.net\r\ns=-\r\nc=IN IP4 media.example.net\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
        let sdp = Sdp::parse(body.as_bytes()).unwrap();
        assert_eq!(sdp.streams[0].address, None);
        let out = String::from_utf8(sdp.rewrite(&[Some(anchor(30020))])).unwrap();
        assert!(!out.contains("example.net"));
    }

    #[test]
    fn odd_spacing_and_media_titles_keep_the_order_rfc_8866_asks() {
        let body = "v=0\r\no=- 1  1 IN IP4 10.0.0.1\r\ns=-\r\nt=0 0\r\n\
m=audio  4000 RTP/AVP 0\r\ni=voice\r\nc=IN IP4 10.0.0.1\r\na=sendrecv\r\n\
m=video 0 RTP/AVP 96\r\nc=IN IP4 10.0.0.1\r\n";
        let sdp = Sdp::parse(body.as_bytes()).unwrap();
        let out = String::from_utf8(sdp.rewrite(&[Some(anchor(30050)), None])).unwrap();
        assert!(
            out.contains(
                "m=audio 30050 RTP/AVP 0\r\ni=voice\r\nc=IN IP4 203.0.113.5\r\na=sendrecv\r\n"
            ),
            "{out}"
        );
        assert!(
            out.contains("m=video 0 RTP/AVP 96\r\nc=IN IP4 203.0.113.5\r\n"),
            "{out}"
        );
        assert!(out.contains("o=- 1 1 IN IP4 203.0.113.5\r\n"), "{out}");
        assert!(!out.contains("10.0.0.1"));
    }

    /// Every truncation and many one-byte corruptions of a real offer:
    /// never a panic, and what parses rewrites into a body that parses
    /// again with as many streams (the fuzz target `sdp` goes further).
    #[test]
    fn corrupted_offers_never_panic_and_rewrite_cleanly() {
        let base = OFFER.as_bytes();
        let mut bodies: Vec<Vec<u8>> = (0..base.len()).map(|n| base[..n].to_vec()).collect();
        for i in 0..base.len() {
            for b in [
                b' ', b'=', b'\r', b'\n', b'/', b':', b'0', b'9', b'a', b'm', 0xff,
            ] {
                let mut m = base.to_vec();
                m[i] = b;
                bodies.push(m);
            }
        }
        for body in bodies {
            let Ok(sdp) = Sdp::parse(&body) else { continue };
            let anchors: Vec<Option<Anchor>> =
                sdp.streams.iter().map(|_| Some(anchor(30040))).collect();
            let out = sdp.rewrite(&anchors);
            let again = Sdp::parse(&out).unwrap_or_else(|e| {
                panic!(
                    "{e}: {:?} -> {:?}",
                    String::from_utf8_lossy(&body),
                    String::from_utf8_lossy(&out)
                )
            });
            assert_eq!(again.streams.len(), sdp.streams.len());
        }
    }

    /// The SDP bodies of RFC 4475's torture messages that carry one.
    #[test]
    fn rfc4475_bodies() {
        let bodies = [
            // 3.1.1.1 wsinv, 3.1.1.3 esc01 and most others
            "v=0\r\no=mhandley 29739 7272939 IN IP4 192.0.2.3\r\ns=-\r\nc=IN IP4 192.0.2.3\r\nt=0 0\r\nm=audio 49217 RTP/AVP 0 12\r\nm=video 3227 RTP/AVP 31\r\na=rtpmap:31 LPC\r\n",
            // 3.1.1.13 lwsstart / 3.3.15 sdp01 (unknown media)
            "v=0\r\no=mhandley 29739 7272939 IN IP4 192.0.2.5\r\ns=-\r\nc=IN IP4 192.0.2.5\r\nt=0 0\r\nm=audio 49217 RTP/AVP 0\r\n",
            // 3.1.2.6 (IPv6) and 3.4.2 v6 SDP
            "v=0\r\no=assistant 971731711378798081 0 IN IP6 2001:db8::1\r\ns=Live Broadcast\r\nc=IN IP6 2001:db8::1\r\nt=0 0\r\nm=audio 49217 RTP/AVP 0\r\n",
        ];
        for b in bodies {
            let sdp = Sdp::parse(b.as_bytes()).unwrap();
            let anchors: Vec<Option<Anchor>> =
                sdp.streams.iter().map(|_| Some(anchor(30030))).collect();
            let out = String::from_utf8(sdp.rewrite(&anchors)).unwrap();
            assert!(
                !out.contains("192.0.2.") && !out.contains("2001:db8"),
                "{out}"
            );
        }
        // 3.1.2.11 mcl01 style: a body that is not SDP at all.
        assert!(Sdp::parse(b"This is not SDP").is_err());
    }
}
