//! `;name=value` parameter lists of header values (RFC 3261 §25.1
//! `generic-param`): names compare case-insensitively, values keep their
//! spelling (quoted ones with their quotes) so they print as received.

use std::fmt;

use crate::scan::{is_token_char, unquote, Cursor};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(Vec<(String, Option<String>)>);

/// Characters of an unquoted parameter value: a token, or a host
/// (including an IPv6 reference with its brackets and colons).
fn is_value_char(b: u8) -> bool {
    is_token_char(b) || matches!(b, b':' | b'[' | b']')
}

impl Params {
    pub fn new() -> Self {
        Params(Vec::new())
    }

    /// Parses `*( SEMI generic-param )` from the cursor; stops before the
    /// first byte that cannot continue the list.
    pub(crate) fn parse(c: &mut Cursor<'_>) -> Result<Params, &'static str> {
        let mut list = Vec::new();
        while c.eat_sep(b';') {
            let name = c.token().ok_or("parameter without a name")?;
            let value = if c.eat_sep(b'=') {
                if c.peek() == Some(b'"') {
                    Some(
                        c.quoted_string()
                            .ok_or("unterminated quoted parameter")?
                            .to_owned(),
                    )
                } else {
                    let v = c.take_while(is_value_char);
                    if v.is_empty() {
                        return Err("parameter without a value after '='");
                    }
                    Some(v.to_owned())
                }
            } else {
                None
            };
            list.push((name.to_owned(), value));
        }
        Ok(Params(list))
    }

    /// The raw value (quotes kept) of the first parameter named `name`;
    /// `Some(None)` for a parameter present without a value.
    pub fn get_raw(&self, name: &str) -> Option<Option<&str>> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref())
    }

    /// The value of `name` with quotes removed.
    pub fn get(&self, name: &str) -> Option<String> {
        self.get_raw(name).flatten().map(|v| {
            if v.starts_with('"') {
                unquote(v)
            } else {
                v.to_owned()
            }
        })
    }

    pub fn has(&self, name: &str) -> bool {
        self.get_raw(name).is_some()
    }

    /// Sets `name` (replacing an existing one in place) to `value`.
    pub fn set(&mut self, name: &str, value: Option<&str>) {
        let value = value.map(str::to_owned);
        match self
            .0
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            Some(slot) => slot.1 = value,
            None => self.0.push((name.to_owned(), value)),
        }
    }

    pub fn remove(&mut self, name: &str) {
        self.0.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, Option<&str>)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_deref()))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Params {
    /// Appends `;name=value…` to `out`.
    pub fn write_to(&self, out: &mut String) {
        for (name, value) in &self.0 {
            out.push(';');
            out.push_str(name);
            if let Some(v) = value {
                out.push('=');
                out.push_str(v);
            }
        }
    }
}

impl fmt::Display for Params {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        self.write_to(&mut out);
        f.write_str(&out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_unchanged() {
        let text = r#";tag=abc ; +sip.instance="<urn:uuid:00000000-0000-1000-8000-000A95A0E128>";reg-id=1;lr;received=[2001:db8::9]"#;
        let mut c = Cursor::new(text);
        let p = Params::parse(&mut c).expect("params");
        assert!(c.is_empty());
        assert_eq!(p.get("TAG").as_deref(), Some("abc"));
        assert_eq!(
            p.get("+sip.instance").as_deref(),
            Some("<urn:uuid:00000000-0000-1000-8000-000A95A0E128>")
        );
        assert_eq!(p.get_raw("lr"), Some(None));
        assert_eq!(p.get("received").as_deref(), Some("[2001:db8::9]"));
        let printed = p.to_string();
        let again = Params::parse(&mut Cursor::new(&printed)).expect("reparse");
        assert_eq!(p, again);
    }

    #[test]
    fn refuses_broken_lists() {
        assert!(Params::parse(&mut Cursor::new(";=x")).is_err());
        assert!(Params::parse(&mut Cursor::new(";a=")).is_err());
        assert!(Params::parse(&mut Cursor::new(";a=\"open")).is_err());
    }
}
