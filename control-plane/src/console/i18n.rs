//! The console's languages: texts per language from the theme's catalogues,
//! the choice of language for a request, and how dates, durations and money
//! are written in each.

use std::collections::HashMap;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde_json::Value;

/// Texts of one language, ready to hand to a template as `t`.
#[derive(Debug)]
pub struct Texts {
    pub code: &'static str,
    pub name: String,
    pub table: Value,
}

impl Texts {
    /// One text; the key itself if it is missing (never happens for keys a
    /// test has checked, and is visible rather than blank if it does).
    pub fn get<'a>(&'a self, key: &'a str) -> &'a str {
        self.table.get(key).and_then(Value::as_str).unwrap_or(key)
    }
}

/// All languages of the console.
#[derive(Debug)]
pub struct Catalog {
    languages: Vec<Texts>,
}

#[derive(Debug, thiserror::Error)]
#[error("texts of language {code}: {message}")]
pub struct CatalogError {
    code: &'static str,
    message: String,
}

impl Catalog {
    pub fn load(sources: &[(&'static str, &'static str)]) -> Result<Catalog, CatalogError> {
        let mut languages = Vec::new();
        for (code, toml_text) in sources {
            let table: toml::Table = toml::from_str(toml_text).map_err(|e| CatalogError {
                code,
                message: e.to_string(),
            })?;
            let map: serde_json::Map<String, Value> = table
                .into_iter()
                .map(|(k, v)| (k, Value::String(v.as_str().unwrap_or_default().to_owned())))
                .collect();
            let name = map
                .get("language_name")
                .and_then(Value::as_str)
                .unwrap_or(code)
                .to_owned();
            languages.push(Texts {
                code,
                name,
                table: Value::Object(map),
            });
        }
        if languages.is_empty() {
            return Err(CatalogError {
                code: "-",
                message: "no language".into(),
            });
        }
        Ok(Catalog { languages })
    }

    /// The texts of `code`, or of the fallback language.
    pub fn texts(&self, code: &str) -> &Texts {
        self.languages
            .iter()
            .find(|t| t.code == code)
            .unwrap_or(&self.languages[0])
    }

    pub fn languages(&self) -> impl Iterator<Item = &Texts> {
        self.languages.iter()
    }

    fn knows(&self, code: &str) -> Option<&'static str> {
        self.languages
            .iter()
            .find(|t| t.code.eq_ignore_ascii_case(code))
            .map(|t| t.code)
    }

    /// The language for a request: the signed-in user's setting, then the
    /// browser's explicit choice (`lang` cookie), then its Accept-Language,
    /// then the reseller's default.
    pub fn choose(
        &self,
        user: Option<&str>,
        cookie: Option<&str>,
        accept_language: Option<&str>,
        default: &str,
    ) -> &'static str {
        if let Some(code) = user.and_then(|c| self.knows(c)) {
            return code;
        }
        if let Some(code) = cookie.and_then(|c| self.knows(c)) {
            return code;
        }
        if let Some(code) = accept_language.and_then(|h| self.best_of_accept_language(h)) {
            return code;
        }
        self.knows(default).unwrap_or(self.languages[0].code)
    }

    /// The best language of an Accept-Language header (RFC 9110 §12.5.4),
    /// matched on the primary subtag.
    fn best_of_accept_language(&self, header: &str) -> Option<&'static str> {
        let mut best: Option<(u16, &'static str)> = None;
        for item in header.split(',').take(20) {
            let mut parts = item.split(';');
            let tag = parts.next().unwrap_or("").trim();
            let q = parts
                .find_map(|p| p.trim().strip_prefix("q="))
                .map_or(1000, parse_q);
            let primary = tag.split('-').next().unwrap_or("");
            if q == 0 {
                continue;
            }
            if let Some(code) = self.knows(primary) {
                if best.is_none_or(|(bq, _)| q > bq) {
                    best = Some((q, code));
                }
            }
        }
        best.map(|(_, code)| code)
    }
}

/// A quality value in thousandths; malformed ones count as 0.
fn parse_q(text: &str) -> u16 {
    let text = text.trim();
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    let int: u16 = match int {
        "0" => 0,
        "1" => 1,
        _ => return 0,
    };
    let mut thousandths = 0u16;
    for (i, c) in frac.chars().take(3).enumerate() {
        let Some(d) = c.to_digit(10) else { return 0 };
        thousandths += d as u16 * [100, 10, 1][i];
    }
    (int * 1000 + thousandths).min(1000)
}

/// How one language writes numbers and times.
#[derive(Debug, Clone, Copy)]
pub struct Format {
    german: bool,
}

impl Format {
    pub fn for_language(code: &str) -> Format {
        Format {
            german: code == "de",
        }
    }

    /// A moment in the customer's time zone, to the minute.
    pub fn date_time(&self, at_ms: i64, tz: Tz) -> String {
        let Some(utc) = DateTime::<Utc>::from_timestamp_millis(at_ms) else {
            return String::new();
        };
        let local = tz.from_utc_datetime(&utc.naive_utc());
        if self.german {
            local.format("%d.%m.%Y %H:%M").to_string()
        } else {
            local.format("%Y-%m-%d %H:%M").to_string()
        }
    }

    /// A duration from whole milliseconds, as h:mm:ss (seconds rounded down).
    pub fn duration(&self, ms: i64) -> String {
        let s = ms.max(0) / 1000;
        if s >= 3600 {
            format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
        } else {
            format!("{}:{:02}", s / 60, s % 60)
        }
    }

    /// Minutes with one decimal, from whole milliseconds (rounded down).
    pub fn minutes(&self, ms: i64) -> String {
        let tenths = ms.max(0) / 6000;
        let sep = if self.german { ',' } else { '.' };
        format!("{}{sep}{}", group(tenths / 10, self.german), tenths % 10)
    }

    /// An amount in millionths of the currency's unit, to the cent (half up,
    /// as on statements), with the currency's sign where it has a common one.
    pub fn money(&self, micros: i64, currency: &str) -> String {
        let negative = micros < 0;
        let cents = (micros.unsigned_abs() + 5_000) / 10_000;
        let sep = if self.german { ',' } else { '.' };
        let number = format!(
            "{}{}{sep}{:02}",
            if negative { "-" } else { "" },
            group((cents / 100) as i64, self.german),
            cents % 100
        );
        let symbol = match currency {
            "EUR" => "€",
            "USD" => "$",
            "GBP" => "£",
            "CHF" => "CHF",
            other => other,
        };
        if self.german {
            format!("{number}\u{a0}{symbol}")
        } else if symbol.len() > 2 && !symbol.starts_with(['€', '$', '£']) {
            format!("{symbol}\u{a0}{number}")
        } else {
            format!("{symbol}{number}")
        }
    }

    /// A whole number with the language's thousands grouping.
    pub fn count(&self, n: i64) -> String {
        group(n, self.german)
    }

    /// A rate in basis points as a percentage: 1900 → "19 %" / "19%".
    pub fn percent(&self, bp: i64) -> String {
        let whole = bp / 100;
        let rest = bp % 100;
        let number = if rest == 0 {
            whole.to_string()
        } else {
            format!("{whole}{}{rest:02}", if self.german { ',' } else { '.' })
        };
        if self.german {
            format!("{number}\u{a0}%")
        } else {
            format!("{number}%")
        }
    }
}

/// Thousands grouping: 1234567 → 1.234.567 (de) / 1,234,567 (en).
fn group(n: i64, german: bool) -> String {
    let digits = n.unsigned_abs().to_string();
    let sep = if german { '.' } else { ',' };
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(sep);
        }
        out.push(c);
    }
    if n < 0 {
        out.insert(0, '-');
    }
    out
}

/// Language names for the switcher, with the current one marked.
pub fn switcher(catalog: &Catalog, current: &str) -> Vec<HashMap<&'static str, Value>> {
    catalog
        .languages()
        .map(|t| {
            HashMap::from([
                ("code", Value::from(t.code)),
                ("name", Value::from(t.name.clone())),
                ("current", Value::from(t.code == current)),
            ])
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Catalog {
        Catalog::load(pbx_branding::LOCALES).expect("theme texts load")
    }

    #[test]
    fn language_follows_user_then_cookie_then_browser_then_reseller() {
        let c = catalog();
        assert_eq!(c.choose(Some("de"), Some("en"), Some("en"), "en"), "de");
        assert_eq!(c.choose(None, Some("de"), Some("en"), "en"), "de");
        assert_eq!(
            c.choose(None, None, Some("fr-FR, de;q=0.8, en;q=0.5"), "en"),
            "de"
        );
        assert_eq!(c.choose(None, None, Some("de;q=0, en-GB"), "de"), "en");
        assert_eq!(c.choose(None, None, Some("fr, it"), "de"), "de");
        assert_eq!(
            c.choose(Some("xx"), Some("<script>"), Some(";;;,q=x"), "zz"),
            "en"
        );
    }

    #[test]
    fn money_is_written_per_language_and_rounded_half_up_to_cents() {
        let de = Format::for_language("de");
        let en = Format::for_language("en");
        assert_eq!(de.money(1_234_565_000, "EUR"), "1.234,57\u{a0}€");
        assert_eq!(en.money(1_234_565_000, "EUR"), "€1,234.57");
        assert_eq!(en.money(4_999, "EUR"), "€0.00");
        assert_eq!(de.money(-15_000, "EUR"), "-0,02\u{a0}€");
        assert_eq!(en.money(100_000_000, "PLN"), "PLN\u{a0}100.00");
        assert_eq!(de.percent(1900), "19\u{a0}%");
        assert_eq!(en.percent(750), "7.50%");
    }

    #[test]
    fn times_are_local_to_the_customer() {
        let tz: Tz = "Europe/Berlin".parse().expect("zone");
        // 2026-07-01 10:30 UTC is 12:30 in Berlin (summer time).
        let at = 1_782_901_800_000;
        assert_eq!(
            Format::for_language("de").date_time(at, tz),
            "01.07.2026 12:30"
        );
        assert_eq!(
            Format::for_language("en").date_time(at, tz),
            "2026-07-01 12:30"
        );
        assert_eq!(Format::for_language("en").duration(3_725_999), "1:02:05");
        assert_eq!(Format::for_language("de").minutes(90_000), "1,5");
    }
}
