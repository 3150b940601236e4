//! `;name=value` parameter lists of header values (RFC 3261 §25.1
//! `generic-param`): names compare case-insensitively, values keep their
//! spelling (quoted ones with their quotes) so they print as received.

use std::borrow::Cow;
use std::fmt;

use crate::scan::{is_token_char, unquote, Cursor};

/// A parameter list, kept as the text it prints as (`;name=value;name…`)
/// with the place of each name and value in it: parsing, cloning and
/// reading cost one or two allocations, not two per parameter (a Via of a
/// request went through a dozen).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    text: String,
    spans: Vec<Span>,
}

/// Byte ranges of one parameter in `Params::text`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    name: (u32, u32),
    value: Option<(u32, u32)>,
}

impl Span {
    /// The whole `;name[=value]` range.
    fn whole(&self) -> (u32, u32) {
        (self.name.0 - 1, self.value.map_or(self.name.1, |v| v.1))
    }
}

/// Characters of an unquoted parameter value: a token, or a host
/// (including an IPv6 reference with its brackets and colons).
fn is_value_char(b: u8) -> bool {
    is_token_char(b) || matches!(b, b':' | b'[' | b']')
}

fn offset(n: usize) -> u32 {
    // Header lines are limited far below 4 GB before anything is parsed.
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl Params {
    pub fn new() -> Self {
        Params::default()
    }

    /// An empty list with room for `bytes` of text (and four parameters).
    pub(crate) fn with_capacity(bytes: usize) -> Self {
        Params {
            text: String::with_capacity(bytes),
            spans: Vec::with_capacity(4),
        }
    }

    /// Parses `*( SEMI generic-param )` from the cursor; stops before the
    /// first byte that cannot continue the list.
    pub(crate) fn parse(c: &mut Cursor<'_>) -> Result<Params, &'static str> {
        let mut p = Params::default();
        while c.eat_sep(b';') {
            if p.spans.is_empty() {
                // At most the rest of the value: one allocation each.
                p.text.reserve(c.rest().len() + 1);
                p.spans.reserve(4);
            }
            let name = c.token().ok_or("parameter without a name")?;
            let value = if c.eat_sep(b'=') {
                if c.peek() == Some(b'"') {
                    Some(c.quoted_string().ok_or("unterminated quoted parameter")?)
                } else {
                    let v = c.take_while(is_value_char);
                    if v.is_empty() {
                        return Err("parameter without a value after '='");
                    }
                    Some(v)
                }
            } else {
                None
            };
            p.push(name, value);
        }
        Ok(p)
    }

    pub(crate) fn push(&mut self, name: &str, value: Option<&str>) {
        self.text.push(';');
        let start = offset(self.text.len());
        self.text.push_str(name);
        let name = (start, offset(self.text.len()));
        let value = value.map(|v| {
            self.text.push('=');
            let start = offset(self.text.len());
            self.text.push_str(v);
            (start, offset(self.text.len()))
        });
        self.spans.push(Span { name, value });
    }

    fn slice(&self, (start, end): (u32, u32)) -> &str {
        self.text
            .get(start as usize..end as usize)
            .unwrap_or_default()
    }

    fn find(&self, name: &str) -> Option<usize> {
        self.spans
            .iter()
            .position(|s| self.slice(s.name).eq_ignore_ascii_case(name))
    }

    /// Replaces `range` of the text by `with`, moving the spans after it.
    fn splice(&mut self, (start, end): (u32, u32), with: &str) {
        self.text.replace_range(start as usize..end as usize, with);
        let grow = i64::from(offset(with.len())) - i64::from(end - start);
        // Every name and value after the range starts past its end (a ';'
        // comes first); one that ends where the range starts stays put.
        let moved = |at: u32| {
            if at > end {
                (i64::from(at) + grow) as u32
            } else {
                at
            }
        };
        for s in &mut self.spans {
            s.name = (moved(s.name.0), moved(s.name.1));
            s.value = s.value.map(|(a, b)| (moved(a), moved(b)));
        }
    }

    /// The raw value (quotes kept) of the first parameter named `name`;
    /// `Some(None)` for a parameter present without a value.
    pub fn get_raw(&self, name: &str) -> Option<Option<&str>> {
        let i = self.find(name)?;
        Some(self.spans[i].value.map(|v| self.slice(v)))
    }

    /// The value of `name` with quotes removed.
    pub fn get(&self, name: &str) -> Option<Cow<'_, str>> {
        self.get_raw(name).flatten().map(|v| {
            if v.starts_with('"') {
                Cow::Owned(unquote(v))
            } else {
                Cow::Borrowed(v)
            }
        })
    }

    pub fn has(&self, name: &str) -> bool {
        self.find(name).is_some()
    }

    /// Sets `name` (replacing an existing one in place) to `value`.
    pub fn set(&mut self, name: &str, value: Option<&str>) {
        let Some(i) = self.find(name) else {
            return self.push(name, value);
        };
        let span = self.spans[i];
        let (from, to) = match span.value {
            Some(v) => (v.0 - 1, v.1),
            None => (span.name.1, span.name.1),
        };
        let with = value.map(|v| format!("={v}")).unwrap_or_default();
        self.splice((from, to), &with);
        self.spans[i].value = value.map(|v| (from + 1, from + 1 + offset(v.len())));
    }

    pub fn remove(&mut self, name: &str) {
        while let Some(i) = self.find(name) {
            let whole = self.spans[i].whole();
            self.spans.remove(i);
            self.splice(whole, "");
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, Option<&str>)> {
        self.spans
            .iter()
            .map(|s| (self.slice(s.name), s.value.map(|v| self.slice(v))))
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Appends `;name=value…` to `out`.
    pub fn write_to(&self, out: &mut String) {
        out.push_str(&self.text);
    }
}

impl fmt::Display for Params {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
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
    fn set_and_remove_keep_the_others_in_place() {
        let mut p =
            Params::parse(&mut Cursor::new(";branch=z9hG4bK1;rport;x=\"q v\"")).expect("params");
        p.set("rport", Some("5060"));
        p.set("received", Some("192.0.2.1"));
        p.set("BRANCH", Some("z9hG4bKlonger"));
        assert_eq!(
            p.to_string(),
            ";branch=z9hG4bKlonger;rport=5060;x=\"q v\";received=192.0.2.1"
        );
        assert_eq!(p.get("x").as_deref(), Some("q v"));
        p.set("rport", None);
        assert_eq!(p.get_raw("rport"), Some(None));
        p.remove("x");
        assert_eq!(
            p.to_string(),
            ";branch=z9hG4bKlonger;rport;received=192.0.2.1"
        );
        assert_eq!(p.get("received").as_deref(), Some("192.0.2.1"));
        let pairs: Vec<_> = p.iter().collect();
        assert_eq!(
            pairs,
            vec![
                ("branch", Some("z9hG4bKlonger")),
                ("rport", None),
                ("received", Some("192.0.2.1"))
            ]
        );
        p.remove("branch");
        p.remove("rport");
        p.remove("received");
        assert!(p.is_empty());
        assert_eq!(p.to_string(), "");
    }

    #[test]
    fn refuses_broken_lists() {
        assert!(Params::parse(&mut Cursor::new(";=x")).is_err());
        assert!(Params::parse(&mut Cursor::new(";a=")).is_err());
        assert!(Params::parse(&mut Cursor::new(";a=\"open")).is_err());
    }
}
