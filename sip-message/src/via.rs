//! One Via value (RFC 3261 §20.42, §18.2.1; rport RFC 3581; IPv6 RFC 5118).

use std::fmt;
use std::net::IpAddr;

use crate::params::Params;
use crate::scan::Cursor;
use crate::uri::{parse_hostport, Host};

/// The branch prefix that marks RFC 3261 transaction identifiers.
pub const VIA_BRANCH_COOKIE: &str = "z9hG4bK";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    /// Protocol name and version as received (normally "SIP" and "2.0").
    pub protocol: String,
    pub version: String,
    /// Transport, upper-cased: UDP, TCP, TLS, SCTP, WS, WSS or any other token.
    pub transport: String,
    pub host: Host,
    pub port: Option<u16>,
    pub params: Params,
}

impl Via {
    pub fn parse(text: &str) -> Result<Via, &'static str> {
        let mut c = Cursor::new(text);
        c.skip_ws();
        let protocol = c.token().ok_or("no protocol name")?.to_owned();
        if !c.eat_sep(b'/') {
            return Err("no '/' after the protocol name");
        }
        let version = c.token().ok_or("no protocol version")?.to_owned();
        if !c.eat_sep(b'/') {
            return Err("no '/' after the version");
        }
        let transport = c.token().ok_or("no transport")?.to_ascii_uppercase();
        if !c.skip_ws() {
            return Err("no space before sent-by");
        }
        let sent_by = c.take_while(|b| !matches!(b, b';' | b' ' | b'\t' | b'('));
        let (host, port) = parse_hostport(sent_by)?;
        let params = Params::parse(&mut c)?;
        c.skip_ws();
        // A trailing comment is allowed by the grammar of RFC 2543 Vias.
        if c.peek() == Some(b'(') {
            c.take_while(|_| true);
        }
        if !c.is_empty() {
            return Err("unexpected text after the Via parameters");
        }
        Ok(Via {
            protocol,
            version,
            transport,
            host,
            port,
            params,
        })
    }

    /// A Via for a request this element sends.
    pub fn new(transport: &str, host: Host, port: Option<u16>, branch: &str) -> Via {
        let mut params = Params::new();
        params.set("branch", Some(branch));
        Via {
            protocol: "SIP".into(),
            version: "2.0".into(),
            transport: transport.to_ascii_uppercase(),
            host,
            port,
            params,
        }
    }

    pub fn branch(&self) -> Option<String> {
        self.params.get("branch").map(std::borrow::Cow::into_owned)
    }

    /// True for an RFC 3261 branch (magic cookie), so the branch alone
    /// identifies the transaction.
    pub fn has_rfc3261_branch(&self) -> bool {
        self.params
            .get_raw("branch")
            .flatten()
            .is_some_and(|b| b.starts_with(VIA_BRANCH_COOKIE))
    }

    /// The `received` address, brackets around IPv6 optional (RFC 5118 §4.5).
    pub fn received(&self) -> Option<IpAddr> {
        let r = self.params.get("received")?;
        r.trim_start_matches('[').trim_end_matches(']').parse().ok()
    }

    /// `rport`: None if absent, Some(None) if present without a value.
    pub fn rport(&self) -> Option<Option<u16>> {
        self.params
            .get_raw("rport")
            .map(|v| v.and_then(|p| p.parse().ok()))
    }

    /// RFC 3261 §18.2.1 and RFC 3581 §4: records where the request really came
    /// from, so that responses go back there.
    pub fn stamp_source(&mut self, source: std::net::SocketAddr) {
        if self.host.ip() != Some(source.ip()) || self.rport().is_some() {
            // Unbracketed, as RFC 3261 grammar has it; we accept both.
            let mut ip = String::with_capacity(15);
            crate::uri::write_ip(source.ip(), &mut ip);
            self.params.set("received", Some(&ip));
        }
        if self.rport().is_some() {
            let mut port = String::with_capacity(5);
            crate::uri::write_u64(source.port().into(), &mut port);
            self.params.set("rport", Some(&port));
        }
    }
}

impl Via {
    /// Appends the Via as header text. Written out by hand: Vias are printed
    /// for every forwarded request, and the formatting machinery is slow.
    pub fn write_to(&self, out: &mut String) {
        out.push_str(&self.protocol);
        out.push('/');
        out.push_str(&self.version);
        out.push('/');
        out.push_str(&self.transport);
        out.push(' ');
        crate::uri::write_host(&self.host, out);
        if let Some(p) = self.port {
            out.push(':');
            crate::uri::write_u64(p.into(), out);
        }
        self.params.write_to(out);
    }
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::with_capacity(64);
        self.write_to(&mut out);
        f.write_str(&out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vias_parse_with_odd_spacing_and_round_trip() {
        let v = Via::parse("SIP  /   2.0  /  UDP  192.0.2.2:5060 ; branch = z9hG4bK3 ;rport")
            .expect("spaced Via");
        assert_eq!(v.transport, "UDP");
        assert_eq!(v.port, Some(5060));
        assert_eq!(v.branch().as_deref(), Some("z9hG4bK3"));
        assert!(v.has_rfc3261_branch());
        assert_eq!(v.rport(), Some(None));
        for text in [
            "SIP/2.0/TCP client.atlanta.example.com:5060;branch=z9hG4bK74b43",
            "SIP/2.0/UDP [2001:db8::9:1];branch=z9hG4bKas3-111;received=[2001:db8::9:255]",
            "SIP/2.0/UDP [2001:db8::9:1]:6050;branch=z9hG4bKas3-111;received=2001:db8::9:255",
            "SIP/2.0/SCTP 192.0.2.1;branch=z9hG4bK1;maddr=224.0.0.1;ttl=16",
            "SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bKhjhs8ass877",
            "SIP/2.0/UNKNOWN x.example;branch=z9hG4bKx",
        ] {
            let v = Via::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(Via::parse(&v.to_string()).as_ref(), Ok(&v), "{text}");
        }
        let v = Via::parse("SIP/2.0/UDP [2001:db8::9:1];received=[2001:db8::9:255]").expect("v6");
        assert_eq!(v.received(), Some("2001:db8::9:255".parse().expect("ip")));
        let v =
            Via::parse("SIP/2.0/UDP [2001:db8::9:1];received=2001:db8::9:255").expect("v6 bare");
        assert_eq!(v.received(), Some("2001:db8::9:255".parse().expect("ip")));
    }

    #[test]
    fn source_is_stamped_per_rfc_3581() {
        let src: std::net::SocketAddr = "198.51.100.7:34567".parse().expect("addr");
        let mut v = Via::parse("SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKa;rport").expect("via");
        v.stamp_source(src);
        assert_eq!(
            v.to_string(),
            "SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKa;rport=34567;received=198.51.100.7"
        );
        let mut v = Via::parse("SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bKa").expect("via");
        v.stamp_source("198.51.100.7:5060".parse().expect("addr"));
        assert!(!v.params.has("received"), "same address needs no received");
    }

    #[test]
    fn malformed_vias_are_refused() {
        for text in [
            "SIP/2.0 host",
            "SIP/2.0/UDP",
            "SIP/2.0/UDP host:port",
            "SIP/2.0/UDP host;=x",
            "SIP/2.0/UDPhost",
        ] {
            assert!(Via::parse(text).is_err(), "accepted {text}");
        }
    }
}
