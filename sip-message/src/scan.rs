//! A cursor over header text (already unfolded: folding became spaces) with
//! the lexical pieces of RFC 3261 §25.1: tokens, quoted strings, separators.

/// `token` characters (RFC 3261 §25.1).
pub(crate) fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token_char)
}

#[derive(Debug, Clone)]
pub(crate) struct Cursor<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(text: &'a str) -> Self {
        Cursor { text, pos: 0 }
    }

    pub fn rest(&self) -> &'a str {
        &self.text[self.pos..]
    }

    pub fn is_empty(&self) -> bool {
        self.pos >= self.text.len()
    }

    pub fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    /// Skips spaces and tabs; returns whether any were skipped.
    pub fn skip_ws(&mut self) -> bool {
        let start = self.pos;
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
        self.pos > start
    }

    /// Consumes `c` if it is next.
    pub fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// `SWS c SWS`: consumes `c` with optional whitespace around it.
    pub fn eat_sep(&mut self, c: u8) -> bool {
        let save = self.pos;
        self.skip_ws();
        if self.eat(c) {
            self.skip_ws();
            true
        } else {
            self.pos = save;
            false
        }
    }

    /// The longest run of bytes satisfying `pred` (may be empty).
    pub fn take_while(&mut self, pred: impl Fn(u8) -> bool) -> &'a str {
        let start = self.pos;
        let bytes = self.text.as_bytes();
        while self.pos < bytes.len() && pred(bytes[self.pos]) {
            self.pos += 1;
        }
        // Predicates only ever stop on ASCII, so this is a char boundary;
        // fall back to the whole rest otherwise.
        self.text.get(start..self.pos).unwrap_or("")
    }

    pub fn token(&mut self) -> Option<&'a str> {
        let t = self.take_while(is_token_char);
        (!t.is_empty()).then_some(t)
    }

    /// A quoted string including its quotes, or None if not at one or unterminated.
    pub fn quoted_string(&mut self) -> Option<&'a str> {
        let bytes = self.text.as_bytes();
        if bytes.get(self.pos) != Some(&b'"') {
            return None;
        }
        let start = self.pos;
        let mut i = self.pos + 1;
        while i < bytes.len() {
            match bytes[i] {
                b'\\' => i += 2,
                b'"' => {
                    self.pos = i + 1;
                    return self.text.get(start..self.pos);
                }
                _ => i += 1,
            }
        }
        None
    }
}

/// The content of a quoted string (quotes removed, quoted-pairs resolved).
pub(crate) fn unquote(quoted: &str) -> String {
    let inner = quoted
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(quoted);
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(next) = chars.next() {
                out.push(next);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A string as a quoted-string.
pub(crate) fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Splits a header value at top-level commas: not inside quotes or `<…>`.
pub(crate) fn split_commas(text: &str) -> Vec<&str> {
    let bytes = text.as_bytes();
    let mut parts = Vec::new();
    let (mut start, mut i) = (0, 0);
    let (mut in_quotes, mut in_angle) = (false, false);
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if in_quotes => i += 1,
            b'"' if !in_angle => in_quotes = !in_quotes,
            b'<' if !in_quotes => in_angle = true,
            b'>' if !in_quotes => in_angle = false,
            b',' if !in_quotes && !in_angle => {
                parts.push(text[start..i].trim_matches(|c| c == ' ' || c == '\t'));
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    parts.push(text[start.min(text.len())..].trim_matches(|c| c == ' ' || c == '\t'));
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_strings_and_escapes() {
        let mut c = Cursor::new(r#""a \"b\" c" rest"#);
        let q = c.quoted_string().expect("quoted");
        assert_eq!(unquote(q), r#"a "b" c"#);
        assert_eq!(c.rest(), " rest");
        assert!(Cursor::new(r#""unterminated"#).quoted_string().is_none());
        assert_eq!(quote(r#"x"y\"#), r#""x\"y\\""#);
    }

    #[test]
    fn commas_inside_quotes_and_angles_do_not_split() {
        let parts = split_commas(r#""Doe, John" <sip:a@b;x=1>, <sip:c@d?h=1,2>,sip:e@f"#);
        assert_eq!(
            parts,
            vec![r#""Doe, John" <sip:a@b;x=1>"#, "<sip:c@d?h=1,2>", "sip:e@f"]
        );
    }
}
