//! The text of HTTP digest authentication in SIP (RFC 3261 §22, RFC 7616,
//! RFC 8760): reading credentials from Authorization / Proxy-Authorization,
//! and writing challenges for WWW-Authenticate / Proxy-Authenticate. The
//! cryptography lives with the registrar and proxy.

use std::fmt::Write as _;

use crate::scan::{quote, unquote, Cursor};

/// A scheme and its `name=value` parameters, names lower-cased, values
/// unquoted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestParams {
    pub scheme: String,
    params: Vec<(String, String)>,
}

impl DigestParams {
    pub fn parse(text: &str) -> Result<DigestParams, &'static str> {
        let mut c = Cursor::new(text.trim());
        let scheme = c.token().ok_or("no scheme")?.to_owned();
        let mut params = Vec::new();
        if !c.skip_ws() && !c.is_empty() {
            return Err("no space after the scheme");
        }
        loop {
            c.skip_ws();
            if c.is_empty() {
                break;
            }
            let name = c
                .token()
                .ok_or("parameter name expected")?
                .to_ascii_lowercase();
            if !c.eat_sep(b'=') {
                return Err("'=' expected");
            }
            let value = if c.peek() == Some(b'"') {
                unquote(c.quoted_string().ok_or("unterminated quoted value")?)
            } else {
                c.token().ok_or("value expected")?.to_owned()
            };
            if params.iter().any(|(n, _)| n == &name) {
                return Err("parameter given twice");
            }
            params.push((name, value));
            if !c.eat_sep(b',') {
                c.skip_ws();
                if !c.is_empty() {
                    return Err("',' expected between parameters");
                }
                break;
            }
        }
        Ok(DigestParams { scheme, params })
    }

    pub fn is_digest(&self) -> bool {
        self.scheme.eq_ignore_ascii_case("Digest")
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A digest challenge (RFC 7616 §3.3).
#[derive(Debug, Clone)]
pub struct Challenge<'a> {
    pub realm: &'a str,
    pub nonce: &'a str,
    pub opaque: Option<&'a str>,
    /// "MD5" or "SHA-256" (RFC 8760 spelling).
    pub algorithm: &'a str,
    pub stale: bool,
}

impl Challenge<'_> {
    /// The header value, with `qop="auth"`.
    pub fn to_header_value(&self) -> String {
        let mut out = format!(
            "Digest realm={}, nonce={}, algorithm={}, qop=\"auth\"",
            quote(self.realm),
            quote(self.nonce),
            self.algorithm
        );
        if let Some(o) = self.opaque {
            let _ = write!(out, ", opaque={}", quote(o));
        }
        if self.stale {
            out.push_str(", stale=true");
        }
        out
    }
}

/// Digest credentials this side sends as a client (RFC 7616 §3.4), e.g.
/// when the platform registers with a carrier.
#[derive(Debug, Clone)]
pub struct Credentials<'a> {
    pub username: &'a str,
    pub realm: &'a str,
    pub nonce: &'a str,
    pub uri: &'a str,
    pub response: &'a str,
    pub algorithm: &'a str,
    pub opaque: Option<&'a str>,
    /// `qop=auth` with its nonce count (8 hex digits) and client nonce.
    pub qop_auth: Option<(&'a str, &'a str)>,
}

impl Credentials<'_> {
    pub fn to_header_value(&self) -> String {
        let mut out = format!(
            "Digest username={}, realm={}, nonce={}, uri={}, response={}, algorithm={}",
            quote(self.username),
            quote(self.realm),
            quote(self.nonce),
            quote(self.uri),
            quote(self.response),
            self.algorithm
        );
        if let Some((nc, cnonce)) = self.qop_auth {
            let _ = write!(out, ", qop=auth, nc={nc}, cnonce={}", quote(cnonce));
        }
        if let Some(o) = self.opaque {
            let _ = write!(out, ", opaque={}", quote(o));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_credentials_in_any_layout() {
        let text = r#"Digest username="bob", realm="biloxi.example.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
            uri="sip:bob@biloxi.example.com", qop=auth, nc=00000001,cnonce="0a4f113b",
            response="6629fae49393a05397450978507c4ef1", opaque="5ccc069c403ebaf9f0171e9517f40e41", algorithm=SHA-256"#
            .replace('\n', " ");
        let p = DigestParams::parse(&text).expect("parses");
        assert!(p.is_digest());
        assert_eq!(p.get("username"), Some("bob"));
        assert_eq!(p.get("nc"), Some("00000001"));
        assert_eq!(p.get("algorithm"), Some("SHA-256"));
        assert_eq!(p.get("uri"), Some("sip:bob@biloxi.example.com"));
    }

    #[test]
    fn refuses_broken_credentials() {
        for text in [
            "Digest username=",
            r#"Digest username="open"#,
            "Digest a=b c=d",
            r#"Digest username="a", username="b""#,
            "",
        ] {
            assert!(DigestParams::parse(text).is_err(), "accepted {text:?}");
        }
        let unknown =
            DigestParams::parse(r#"NoOneKnowsThisScheme opaque-data=here"#).expect("other scheme");
        assert!(!unknown.is_digest());
    }

    #[test]
    fn challenges_round_trip() {
        let c = Challenge {
            realm: "acme.example",
            nonce: "abc",
            opaque: Some("o"),
            algorithm: "SHA-256",
            stale: true,
        };
        let text = c.to_header_value();
        let p = DigestParams::parse(&text).expect("parses");
        assert_eq!(p.get("realm"), Some("acme.example"));
        assert_eq!(p.get("qop"), Some("auth"));
        assert_eq!(p.get("stale"), Some("true"));
    }
}
