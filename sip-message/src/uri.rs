//! URIs: SIP and SIPS (RFC 3261 §19.1, §25.1) including IPv6 references
//! (RFC 5118), tel (RFC 3966), and any other absolute URI kept opaque so that
//! an unknown scheme can be carried through and answered 416 where it would
//! have to be routed.

use crate::params::Params;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Uri {
    Sip(SipUri),
    Tel(TelUri),
    /// Any other scheme: the scheme (lower-cased) and the rest, unparsed.
    Other {
        scheme: String,
        opaque: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    Name(String),
    V4(Ipv4Addr),
    V6(Ipv6Addr),
}

/// A `sip:` or `sips:` URI. Text parts keep their escapes as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipUri {
    pub secure: bool,
    pub user: Option<String>,
    pub password: Option<String>,
    pub host: Host,
    pub port: Option<u16>,
    /// URI parameters, each `name` or `name=value`, as received.
    pub params: Params,
    /// The `?…` part without the question mark.
    pub headers: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelUri {
    pub number: String,
    pub params: Params,
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b)
}

/// Checks `text` consists of unreserved characters, `extra`, and valid %XX escapes.
fn valid_escaped(text: &str, extra: &[u8]) -> bool {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            if i + 2 >= bytes.len()
                || !bytes[i + 1].is_ascii_hexdigit()
                || !bytes[i + 2].is_ascii_hexdigit()
            {
                return false;
            }
            i += 3;
        } else if is_unreserved(b) || extra.contains(&b) {
            i += 1;
        } else {
            return false;
        }
    }
    true
}

fn hex_value(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Resolves %XX escapes (bytes that do not form UTF-8 become U+FFFD).
pub(crate) fn unescape(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(hi), Some(lo)) = (hex_value(bytes[i + 1]), hex_value(bytes[i + 2])) {
                out.push(hi << 4 | lo);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

const USER_EXTRA: &[u8] = b"&=+$,;?/";
const PASSWORD_EXTRA: &[u8] = b"&=+$,";
const PARAM_EXTRA: &[u8] = b"[]/:&+$";
const HEADER_EXTRA: &[u8] = b"[]/?:+$=&";

fn is_scheme(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
}

impl Host {
    /// Parses a hostname, IPv4 address or bracketed IPv6 reference.
    pub fn parse(text: &str) -> Result<Host, &'static str> {
        if let Some(inner) = text.strip_prefix('[') {
            let inner = inner
                .strip_suffix(']')
                .ok_or("unterminated IPv6 reference")?;
            // RFC 5118 §4.10: tolerate the extra colon of an RFC 3261 ABNF bug
            // ("2001:db8:::192.0.2.1").
            return inner
                .parse()
                .or_else(|_| inner.replacen(":::", "::", 1).parse())
                .map(Host::V6)
                .map_err(|_| "bad IPv6 address");
        }
        if text.is_empty() {
            return Err("empty host");
        }
        if text.bytes().all(|b| b.is_ascii_digit() || b == b'.')
            && text.bytes().filter(|&b| b == b'.').count() == 3
        {
            return text.parse().map(Host::V4).map_err(|_| "bad IPv4 address");
        }
        let valid = text.split('.').enumerate().all(|(i, label)| {
            // A trailing dot (absolute name) leaves one empty last label.
            (label.is_empty() && i > 0 && text.ends_with('.'))
                || (!label.is_empty()
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !label.starts_with('-')
                    && !label.ends_with('-'))
        });
        if !valid {
            return Err("bad host name");
        }
        Ok(Host::Name(text.to_owned()))
    }

    /// The address, if the host is an IP literal.
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Host::V4(a) => Some(IpAddr::V4(*a)),
            Host::V6(a) => Some(IpAddr::V6(*a)),
            Host::Name(_) => None,
        }
    }

    /// Case-insensitive comparison with a domain name.
    pub fn is_name(&self, name: &str) -> bool {
        matches!(self, Host::Name(n) if n.trim_end_matches('.').eq_ignore_ascii_case(name))
    }
}

impl From<IpAddr> for Host {
    fn from(ip: IpAddr) -> Host {
        match ip {
            IpAddr::V4(a) => Host::V4(a),
            IpAddr::V6(a) => Host::V6(a),
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(n) => f.write_str(n),
            Host::V4(a) => write!(f, "{a}"),
            Host::V6(a) => write!(f, "[{a}]"),
        }
    }
}

/// Splits `host[:port]`, IPv6 references included.
pub(crate) fn parse_hostport(text: &str) -> Result<(Host, Option<u16>), &'static str> {
    let (host, port) = if text.starts_with('[') {
        let end = text.find(']').ok_or("unterminated IPv6 reference")?;
        let (h, rest) = text.split_at(end + 1);
        match rest {
            "" => (h, None),
            _ => (
                h,
                Some(
                    rest.strip_prefix(':')
                        .ok_or("garbage after IPv6 reference")?,
                ),
            ),
        }
    } else {
        match text.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (text, None),
        }
    };
    let port = match port {
        None => None,
        Some(p) if !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => {
            Some(p.parse::<u16>().map_err(|_| "port out of range")?)
        }
        Some(_) => return Err("bad port"),
    };
    Ok((Host::parse(host)?, port))
}

fn parse_uri_params(text: &str) -> Result<Params, &'static str> {
    let mut out = Params::with_capacity(text.len() + 1);
    for part in text.split(';') {
        let (name, value) = match part.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (part, None),
        };
        if name.is_empty() || !valid_escaped(name, PARAM_EXTRA) {
            return Err("bad URI parameter");
        }
        if let Some(v) = value {
            if !valid_escaped(v, PARAM_EXTRA) {
                return Err("bad URI parameter value");
            }
        }
        out.push(name, value);
    }
    Ok(out)
}

impl SipUri {
    fn parse(secure: bool, rest: &str) -> Result<SipUri, &'static str> {
        let (userinfo, hostpart) = match rest.find('@') {
            Some(i) => (Some(&rest[..i]), &rest[i + 1..]),
            None => (None, rest),
        };
        if hostpart.contains('@') {
            return Err("more than one '@'");
        }
        let (user, password) = match userinfo {
            None => (None, None),
            Some(info) => {
                // The password is after the first ':' that is not part of the user.
                let (u, p) = match info.split_once(':') {
                    Some((u, p)) => (u, Some(p)),
                    None => (info, None),
                };
                if u.is_empty() || !valid_escaped(u, USER_EXTRA) {
                    return Err("bad user part");
                }
                if let Some(p) = p {
                    if !valid_escaped(p, PASSWORD_EXTRA) {
                        return Err("bad password");
                    }
                }
                (Some(u.to_owned()), p.map(str::to_owned))
            }
        };
        let (before_headers, headers) = match hostpart.split_once('?') {
            Some((b, h)) => (b, Some(h)),
            None => (hostpart, None),
        };
        let (hostport, params) = match before_headers.split_once(';') {
            Some((h, p)) => (h, Some(p)),
            None => (before_headers, None),
        };
        let (host, port) = parse_hostport(hostport)?;
        let params = match params {
            Some(p) => parse_uri_params(p)?,
            None => Params::new(),
        };
        if let Some(h) = headers {
            let ok = h.split('&').all(|pair| {
                pair.split_once('=').is_some_and(|(n, v)| {
                    !n.is_empty()
                        && valid_escaped(n, HEADER_EXTRA)
                        && valid_escaped(v, HEADER_EXTRA)
                })
            });
            if !ok {
                return Err("bad URI headers");
            }
        }
        Ok(SipUri {
            secure,
            user,
            password,
            host,
            port,
            params,
            headers: headers.map(str::to_owned),
        })
    }

    /// A plain `sip:` URI for a host and port.
    pub fn new(user: Option<&str>, host: Host, port: Option<u16>) -> SipUri {
        SipUri {
            secure: false,
            user: user.map(str::to_owned),
            password: None,
            host,
            port,
            params: Params::new(),
            headers: None,
        }
    }

    /// The user part with escapes resolved (`%40` → `@`).
    pub fn user_unescaped(&self) -> Option<String> {
        self.user.as_deref().map(unescape)
    }

    /// The value of URI parameter `name` (case-insensitive name).
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        self.params.get_raw(name)
    }

    /// Sets URI parameter `name` to `value`, last in the list.
    pub fn set_param(&mut self, name: &str, value: Option<&str>) {
        self.params.remove(name);
        self.params.push(name, value);
    }

    /// The `transport` parameter, lower-cased.
    pub fn transport(&self) -> Option<String> {
        self.param("transport")
            .flatten()
            .map(|t| t.to_ascii_lowercase())
    }
}

impl Uri {
    /// Parses an absolute URI as it appears in a Request-URI or inside `<…>`.
    pub fn parse(text: &str) -> Result<Uri, &'static str> {
        let (scheme, rest) = text.split_once(':').ok_or("no scheme")?;
        if !is_scheme(scheme) {
            return Err("bad scheme");
        }
        if rest
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control() || b"<>\"".contains(&b))
        {
            return Err("characters not allowed in a URI");
        }
        let scheme_lc = scheme.to_ascii_lowercase();
        match scheme_lc.as_str() {
            "sip" => Ok(Uri::Sip(SipUri::parse(false, rest)?)),
            "sips" => Ok(Uri::Sip(SipUri::parse(true, rest)?)),
            "tel" => {
                let mut parts = rest.split(';');
                let number = parts.next().unwrap_or_default();
                let valid = !number.is_empty()
                    && number
                        .bytes()
                        .all(|b| b.is_ascii_hexdigit() || b"+-.()*#".contains(&b));
                if !valid {
                    return Err("bad telephone number");
                }
                let params = match rest.split_once(';') {
                    Some((_, p)) => parse_uri_params(p)?,
                    None => Params::new(),
                };
                Ok(Uri::Tel(TelUri {
                    number: number.to_owned(),
                    params,
                }))
            }
            _ => {
                if rest.is_empty() {
                    return Err("empty URI");
                }
                Ok(Uri::Other {
                    scheme: scheme_lc,
                    opaque: rest.to_owned(),
                })
            }
        }
    }

    pub fn as_sip(&self) -> Option<&SipUri> {
        match self {
            Uri::Sip(u) => Some(u),
            _ => None,
        }
    }

    pub fn as_sip_mut(&mut self) -> Option<&mut SipUri> {
        match self {
            Uri::Sip(u) => Some(u),
            _ => None,
        }
    }

    pub fn scheme(&self) -> &str {
        match self {
            Uri::Sip(u) if u.secure => "sips",
            Uri::Sip(_) => "sip",
            Uri::Tel(_) => "tel",
            Uri::Other { scheme, .. } => scheme,
        }
    }
}

/// Decimal digits of `n`, appended.
pub(crate) fn write_u64(mut n: u64, out: &mut String) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &d in &digits[i..] {
        out.push(d as char);
    }
}

/// An address as text (IPv6 without brackets).
pub(crate) fn write_ip(ip: IpAddr, out: &mut String) {
    match ip {
        IpAddr::V4(a) => {
            for (i, octet) in a.octets().iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                write_u64((*octet).into(), out);
            }
        }
        IpAddr::V6(a) => out.push_str(&a.to_string()),
    }
}

/// A host as it appears in a URI or Via (IPv6 in brackets).
pub(crate) fn write_host(host: &Host, out: &mut String) {
    match host {
        Host::Name(n) => out.push_str(n),
        Host::V4(a) => write_ip(IpAddr::V4(*a), out),
        Host::V6(a) => {
            out.push('[');
            out.push_str(&a.to_string());
            out.push(']');
        }
    }
}

impl SipUri {
    /// Appends the URI's text.
    pub fn write_to(&self, out: &mut String) {
        out.push_str(if self.secure { "sips:" } else { "sip:" });
        if let Some(user) = &self.user {
            out.push_str(user);
            if let Some(p) = &self.password {
                out.push(':');
                out.push_str(p);
            }
            out.push('@');
        }
        write_host(&self.host, out);
        if let Some(port) = self.port {
            out.push(':');
            write_u64(port.into(), out);
        }
        self.params.write_to(out);
        if let Some(h) = &self.headers {
            out.push('?');
            out.push_str(h);
        }
    }
}

impl Uri {
    /// Appends the URI's text.
    pub fn write_to(&self, out: &mut String) {
        match self {
            Uri::Sip(u) => u.write_to(out),
            Uri::Tel(t) => {
                out.push_str("tel:");
                out.push_str(&t.number);
                t.params.write_to(out);
            }
            Uri::Other { scheme, opaque } => {
                out.push_str(scheme);
                out.push(':');
                out.push_str(opaque);
            }
        }
    }
}

impl fmt::Display for SipUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::with_capacity(48);
        self.write_to(&mut out);
        f.write_str(&out)
    }
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::with_capacity(48);
        self.write_to(&mut out);
        f.write_str(&out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sip(text: &str) -> SipUri {
        match Uri::parse(text) {
            Ok(Uri::Sip(u)) => u,
            other => panic!("{text}: {other:?}"),
        }
    }

    #[test]
    fn sip_uris_round_trip() {
        for text in [
            "sip:alice@atlanta.example.com",
            "sip:alice:secretword@atlanta.example.com;transport=tcp",
            "sips:alice@atlanta.example.com?subject=project%20x&priority=urgent",
            "sip:+1-212-555-1212:1234@gateway.example.com;user=phone",
            "sip:atlanta.example.com;method=REGISTER?to=alice%40atlanta.example.com",
            "sip:alice;day=tuesday@atlanta.example.com",
            "sip:[2001:db8::10]:5070;lr",
            "sip:user@192.0.2.1:5060",
            "SIP:UPPER@Example.COM",
        ] {
            let parsed = Uri::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            let printed = parsed.to_string();
            assert_eq!(Uri::parse(&printed).as_ref(), Ok(&parsed), "{text}");
        }
    }

    #[test]
    fn parts_are_found() {
        let u = sip("sip:user;par=u%40example.net@example.com");
        assert_eq!(u.user.as_deref(), Some("user;par=u%40example.net"));
        assert_eq!(
            u.user_unescaped().as_deref(),
            Some("user;par=u@example.net")
        );
        assert!(u.host.is_name("EXAMPLE.com"));
        let u = sip("sip:[2001:db8::10]:5070;transport=TCP;lr");
        assert_eq!(u.host, Host::V6("2001:db8::10".parse().expect("v6")));
        assert_eq!(u.port, Some(5070));
        assert_eq!(u.transport().as_deref(), Some("tcp"));
        assert_eq!(u.param("lr"), Some(None));
        assert_eq!(
            sip("sip:%61lice@a.b").user_unescaped().as_deref(),
            Some("alice")
        );
        assert_eq!(
            sip("sip:null-%00-null@a.b").user_unescaped().as_deref(),
            Some("null-\0-null")
        );
    }

    #[test]
    fn bad_uris_are_refused() {
        for text in [
            "sip:user@2001:db8::10",
            "sip:user@[2001:db8::10",
            "sip:user@host:99999",
            "sip:user@host:12a",
            "sip:us er@host",
            "sip:@host",
            "sip:a@b@c",
            "sip:user@-bad-.example",
            "sip:user@host;=x",
            "sip:user@host?noequals",
            "sip:user@ho%zzst",
            "sip:us%zzer@host",
            "<sip:user@host>",
            "noscheme",
            "1bad:x",
            "sip:",
        ] {
            assert!(Uri::parse(text).is_err(), "accepted {text}");
        }
    }

    #[test]
    fn tel_and_unknown_schemes() {
        match Uri::parse("tel:+1-201-555-0123;phone-context=example.com") {
            Ok(Uri::Tel(t)) => {
                assert_eq!(t.number, "+1-201-555-0123");
                assert_eq!(t.params.iter().next().map(|p| p.0), Some("phone-context"));
            }
            other => panic!("{other:?}"),
        }
        let u = Uri::parse("nobodyKnowsThisScheme:totallyopaque").expect("opaque");
        assert_eq!(u.scheme(), "nobodyknowsthisscheme");
        assert_eq!(u.to_string(), "nobodyknowsthisscheme:totallyopaque");
    }
}
