//! `( name-addr / addr-spec ) *( SEMI generic-param )`: the value form of
//! From, To, Contact, Route, Record-Route, Path and Refer-To (RFC 3261 §20, §25.1).

use std::fmt;

use crate::params::Params;
use crate::scan::{is_token_char, unquote, Cursor};
use crate::uri::Uri;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    /// The display name as received: tokens, or a quoted string with its quotes.
    pub display: Option<String>,
    pub uri: Uri,
    /// Header parameters (tag, expires, q, +sip.instance, lr on Route is a URI param).
    pub params: Params,
    /// Whether the URI was (and will be printed) in angle brackets.
    pub angle: bool,
}

impl NameAddr {
    pub fn new(uri: Uri) -> NameAddr {
        NameAddr {
            display: None,
            uri,
            params: Params::new(),
            angle: true,
        }
    }

    /// Parses one value (the header list has already been split at commas).
    pub fn parse(text: &str) -> Result<NameAddr, &'static str> {
        let mut c = Cursor::new(text);
        c.skip_ws();
        let mut display = None;
        let angle;
        let uri_text;
        if c.peek() == Some(b'"') {
            let q = c.quoted_string().ok_or("unterminated display name")?;
            display = Some(q.to_owned());
            c.skip_ws();
            if !c.eat(b'<') {
                return Err("display name without <URI>");
            }
            uri_text = take_angle_uri(&mut c)?;
            angle = true;
        } else if text.contains('<') {
            let before = c.take_while(|b| b != b'<');
            let name = before.trim_matches(|ch| ch == ' ' || ch == '\t');
            if !name.is_empty() {
                let ok = name
                    .split([' ', '\t'])
                    .filter(|w| !w.is_empty())
                    .all(|w| w.bytes().all(is_token_char));
                if !ok {
                    return Err("display name is neither tokens nor a quoted string");
                }
                display = Some(name.to_owned());
            }
            c.eat(b'<');
            uri_text = take_angle_uri(&mut c)?;
            angle = true;
        } else {
            // addr-spec: the URI ends at the first ';' (its parameters belong to the header).
            uri_text = c.take_while(|b| b != b';' && b != b' ' && b != b'\t');
            if uri_text.contains(['?', ',']) {
                return Err("a URI with headers or commas must be enclosed in <>");
            }
            angle = false;
        }
        let uri = Uri::parse(uri_text)?;
        let params = Params::parse(&mut c)?;
        c.skip_ws();
        if !c.is_empty() {
            return Err("unexpected text after the address");
        }
        Ok(NameAddr {
            display,
            uri,
            params,
            angle,
        })
    }

    /// The display name without quotes.
    pub fn display_name(&self) -> Option<String> {
        self.display.as_deref().map(|d| {
            if d.starts_with('"') {
                unquote(d)
            } else {
                d.to_owned()
            }
        })
    }

    pub fn tag(&self) -> Option<String> {
        self.params.get("tag").map(std::borrow::Cow::into_owned)
    }
}

/// The URI between `<` (already consumed) and `>`, with no whitespace inside.
fn take_angle_uri<'a>(c: &mut Cursor<'a>) -> Result<&'a str, &'static str> {
    let uri = c.take_while(|b| b != b'>');
    if !c.eat(b'>') {
        return Err("unterminated <URI>");
    }
    if uri.is_empty() || uri.bytes().any(|b| b == b' ' || b == b'\t') {
        return Err("whitespace inside <URI>");
    }
    Ok(uri)
}

impl NameAddr {
    /// Appends the value's text.
    pub fn write_to(&self, out: &mut String) {
        if let Some(d) = &self.display {
            out.push_str(d);
            out.push(' ');
        }
        if self.angle || self.display.is_some() {
            out.push('<');
            self.uri.write_to(out);
            out.push('>');
        } else {
            self.uri.write_to(out);
        }
        self.params.write_to(out);
    }
}

impl fmt::Display for NameAddr {
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
    fn forms_parse_and_round_trip() {
        for text in [
            r#""Alice Liddell" <sip:alice@wonderland.example>;tag=1928301774"#,
            "Bob <sips:bob@biloxi.example.com>;tag=a6c85cf",
            "<sip:carol@chicago.example.com>",
            "sip:+12125551212@phone2net.example.com;tag=887s",
            r#"<sip:alice@pc33.atlanta.example.com;transport=tcp>;+sip.instance="<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>";reg-id=1;expires=3600"#,
            r#""caller"<sip:caller@example.com>;tag=323"#,
            "<nobodyknowsthisscheme:totallyopaque>;tag=x",
            "<sip:[2001:db8::10]:5070;lr>",
            r#""\"quoted\" name" <sip:q@example.com>"#,
        ] {
            let a = NameAddr::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            let again =
                NameAddr::parse(&a.to_string()).unwrap_or_else(|e| panic!("reparse {a}: {e}"));
            assert_eq!(a, again, "{text}");
        }
        let a = NameAddr::parse("sip:u@h;tag=abc;expires=60").expect("addr-spec");
        assert_eq!(a.tag().as_deref(), Some("abc"));
        assert!(
            a.uri.as_sip().is_some_and(|u| u.params.is_empty()),
            "params belong to the header"
        );
        let a = NameAddr::parse(r#""\"quoted\" name" <sip:q@example.com>"#).expect("quoted");
        assert_eq!(a.display_name().as_deref(), Some(r#""quoted" name"#));
    }

    #[test]
    fn malformed_values_are_refused() {
        for text in [
            r#""unterminated <sip:a@b>"#,
            "<sip:a@b",
            "< sip:a@b >",
            "Bell, Alexander <sip:a@b>",
            "Bell@ <sip:a@b>",
            "sip:a@b?x=y",
            "<sip:a@b> trailing",
            "",
        ] {
            assert!(NameAddr::parse(text).is_err(), "accepted {text:?}");
        }
    }
}
