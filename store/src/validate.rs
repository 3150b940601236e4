//! Input rules checked before SQL, so a user gets a message per field instead
//! of a constraint name. The schema enforces the same rules again.

use crate::FieldError;

/// Collects field errors of one input.
#[derive(Default)]
pub(crate) struct Checker {
    errors: Vec<FieldError>,
}

impl Checker {
    pub fn new() -> Self {
        Checker::default()
    }

    pub fn check(&mut self, ok: bool, field: &str, message: &str) -> &mut Self {
        if !ok {
            self.errors.push(FieldError::new(field, message));
        }
        self
    }

    pub fn text(&mut self, field: &str, value: &str, max: usize) -> &mut Self {
        let len = value.chars().count();
        let ok = len >= 1 && len <= max && value.trim() == value && !has_control(value);
        self.check(
            ok,
            field,
            &format!("must be 1 to {max} characters, without leading or trailing spaces"),
        )
    }

    pub fn optional_text(&mut self, field: &str, value: Option<&str>, max: usize) -> &mut Self {
        match value {
            Some(v) => self.text(field, v, max),
            None => self,
        }
    }

    pub fn finish(&mut self) -> Result<(), crate::StoreError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(crate::StoreError::Invalid(std::mem::take(&mut self.errors)))
        }
    }
}

fn has_control(value: &str) -> bool {
    value.chars().any(char::is_control)
}

pub(crate) fn is_time_zone(value: &str) -> bool {
    value.parse::<chrono_tz::Tz>().is_ok()
}

pub(crate) fn is_currency(value: &str) -> bool {
    value.len() == 3 && value.bytes().all(|b| b.is_ascii_uppercase())
}

pub(crate) fn is_country(value: &str) -> bool {
    value.len() == 2 && value.bytes().all(|b| b.is_ascii_uppercase())
}

pub(crate) fn is_language(value: &str) -> bool {
    matches!(value, "en" | "de")
}

pub(crate) fn is_color(value: &str) -> bool {
    value.len() == 7
        && value.starts_with('#')
        && value[1..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A DNS name in lower case (letters, digits, hyphens; dot-separated labels).
pub(crate) fn is_domain(value: &str) -> bool {
    value.len() >= 3
        && value.len() <= 253
        && value.split('.').count() >= 2
        && value.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

/// A host name for the console: a domain, or a single label such as `localhost`.
pub(crate) fn is_host(value: &str) -> bool {
    is_domain(value)
        || (!value.is_empty()
            && value.len() <= 63
            && value
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'))
}

/// Digits only, 1 to `max` of them.
pub(crate) fn is_digits(value: &str, max: usize) -> bool {
    !value.is_empty() && value.len() <= max && value.bytes().all(|b| b.is_ascii_digit())
}

/// `+` followed by 3 to 15 digits, not starting with 0 (ITU-T E.164).
pub(crate) fn is_e164(value: &str) -> bool {
    value
        .strip_prefix('+')
        .is_some_and(|d| d.len() >= 3 && d.len() <= 15 && !d.starts_with('0') && is_digits(d, 15))
}

/// A SIP user name we hand out: safe in a URI without escaping.
pub(crate) fn is_sip_user(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 64
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

pub(crate) fn is_email(value: &str) -> bool {
    let Some((local, domain)) = value.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && value.len() <= 254
        && value == value.to_lowercase()
        && !value.chars().any(|c| c.is_whitespace() || c.is_control())
        && is_host(domain)
}

/// A name turned into a DNS label: lower case, letters and digits, hyphens between.
pub(crate) fn slug(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars().flat_map(char::to_lowercase) {
        let c = match c {
            'ä' => "ae",
            'ö' => "oe",
            'ü' => "ue",
            'ß' => "ss",
            c if c.is_ascii_alphanumeric() => {
                out.push(c);
                continue;
            }
            _ => "-",
        };
        out.push_str(c);
    }
    let parts: Vec<&str> = out.split('-').filter(|p| !p.is_empty()).collect();
    let mut slug = parts.join("-");
    slug.truncate(40);
    let slug = slug.trim_end_matches('-').to_owned();
    if slug.is_empty() {
        "customer".to_owned()
    } else {
        slug
    }
}

/// At most `max` characters of `text` (foreign text kept for the record).
pub(crate) fn clip(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e164_rules() {
        assert!(is_e164("+4930123456"));
        assert!(!is_e164("4930123456"));
        assert!(!is_e164("+0301234"));
        assert!(!is_e164("+49 30"));
        assert!(!is_e164("+1234567890123456"));
    }

    #[test]
    fn domains_and_hosts() {
        assert!(is_domain("acme.voice.example"));
        assert!(!is_domain("Acme.example"));
        assert!(!is_domain("localhost"));
        assert!(is_host("localhost"));
        assert!(!is_domain("a..b"));
        assert!(!is_domain("-a.b"));
    }

    #[test]
    fn slugs_are_dns_labels() {
        assert_eq!(slug("Müller & Söhne GmbH"), "mueller-soehne-gmbh");
        assert_eq!(slug("  ***  "), "customer");
        assert!(is_domain(&format!("{}.example", slug("ACME Corp."))));
    }

    #[test]
    fn text_rejects_controls_and_padding() {
        assert!(Checker::new().text("name", "ok", 10).finish().is_ok());
        assert!(Checker::new().text("name", " padded", 10).finish().is_err());
        assert!(Checker::new().text("name", "nul\0", 10).finish().is_err());
        assert!(Checker::new().text("name", "", 10).finish().is_err());
        assert!(Checker::new()
            .text("name", "x".repeat(11).as_str(), 10)
            .finish()
            .is_err());
    }
}
