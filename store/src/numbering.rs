//! Numbering plans: what a dialled string means for a customer in a given
//! country, and how an E.164 number is written for a carrier trunk. Germany
//! first (`0…` national, `00…` international, `+…`, 110/112), with the
//! neighbouring plans of the same shape beside it; a country not listed here
//! dials only `+…`, `00…` and 112.
//!
//! Everything here is a pure function: the proxy calls it at call setup,
//! without the database.

use serde::{Deserialize, Serialize};

/// A country's dialling conventions (ITU-T E.164 / national plans).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// ISO 3166-1 alpha-2.
    pub country: &'static str,
    /// The country calling code, digits.
    pub calling_code: &'static str,
    /// Dialled before a national significant number ("trunk prefix").
    pub trunk_prefix: &'static str,
    /// Dialled before a country calling code.
    pub international_prefix: &'static str,
    /// Short numbers reaching emergency services.
    pub emergency: &'static [&'static str],
    /// National significant number prefixes of premium-rate and mass-calling
    /// services: off until a customer is allowed them.
    pub premium: &'static [&'static str],
}

/// The plans known; 112 reaches emergency services everywhere.
pub const PLANS: &[Plan] = &[
    Plan {
        country: "DE",
        calling_code: "49",
        trunk_prefix: "0",
        international_prefix: "00",
        emergency: &["110", "112"],
        // 0900 premium rate, 0137 mass calling (televoting), 0138 likewise.
        premium: &["900", "137", "138"],
    },
    Plan {
        country: "AT",
        calling_code: "43",
        trunk_prefix: "0",
        international_prefix: "00",
        emergency: &["112", "122", "133", "144", "140", "141"],
        premium: &["900", "901", "930", "931", "939"],
    },
    Plan {
        country: "CH",
        calling_code: "41",
        trunk_prefix: "0",
        international_prefix: "00",
        emergency: &["112", "117", "118", "144", "143", "147"],
        premium: &["900", "901", "906"],
    },
    Plan {
        country: "NL",
        calling_code: "31",
        trunk_prefix: "0",
        international_prefix: "00",
        emergency: &["112"],
        premium: &["900", "906", "909"],
    },
    Plan {
        country: "GB",
        calling_code: "44",
        trunk_prefix: "0",
        international_prefix: "00",
        emergency: &["999", "112"],
        premium: &["9", "118"],
    },
];

/// The plan of a country, if it is one of [`PLANS`].
pub fn plan(country: &str) -> Option<&'static Plan> {
    PLANS
        .iter()
        .find(|p| p.country.eq_ignore_ascii_case(country))
}

/// What kind of destination a number is, for limits and permissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    /// Emergency services: always routed, never limited.
    Emergency,
    /// A number in the customer's own country.
    National,
    /// Premium-rate or mass-calling: off unless allowed.
    Premium,
    /// Another country: off unless allowed.
    International,
}

/// A dialled string read as a public-network destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// Digits of the E.164 number without `+` (for emergency calls: the
    /// country code and the short number, e.g. `49112`, for records).
    pub e164: String,
    pub class: Class,
    /// For emergency calls, the short number as dialled: what a carrier is
    /// sent, whatever its number format.
    pub emergency_code: Option<String>,
}

/// Why a dialled string is not a number we can route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NumberError {
    /// Not digits (after an optional `+`), or empty.
    #[error("not a phone number")]
    NotANumber,
    /// Too short to be complete (SIP 484 Address Incomplete).
    #[error("incomplete number")]
    Incomplete,
    /// Longer than E.164 allows (15 digits).
    #[error("number too long")]
    TooLong,
    /// A local number without area code, which the platform cannot complete.
    #[error("dial the area code too")]
    NeedsAreaCode,
}

/// Shortest E.164 number accepted (country code and subscriber number).
const MIN_E164: usize = 7;
const MAX_E164: usize = 15;

/// Reads what a phone of a customer in `country` dialled. Visual separators
/// (space, `-`, `.`, `/`, parentheses) are ignored.
pub fn read_dialled(dialled: &str, country: &str) -> Result<Destination, NumberError> {
    let home = plan(country);
    // "+49 (0)30 …" is how numbers are printed: the (0) is not dialled.
    let cleaned: String = dialled
        .replace("(0)", "")
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '.' | '/' | '(' | ')'))
        .collect();
    let (plus, digits) = match cleaned.strip_prefix('+') {
        Some(rest) => (true, rest),
        None => (false, cleaned.as_str()),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(NumberError::NotANumber);
    }
    // Emergency short numbers, exactly as dialled.
    if !plus {
        let emergency = home.map_or(&["112"][..], |p| p.emergency);
        if digits == "112" || emergency.contains(&digits) {
            let cc = home.map_or("", |p| p.calling_code);
            return Ok(Destination {
                e164: format!("{cc}{digits}"),
                class: Class::Emergency,
                emergency_code: Some(digits.to_owned()),
            });
        }
    }
    let e164 = if plus {
        digits.to_owned()
    } else if let Some(rest) = home
        .map(|p| p.international_prefix)
        .or(Some("00"))
        .and_then(|prefix| digits.strip_prefix(prefix))
    {
        rest.to_owned()
    } else if let Some((p, rest)) =
        home.and_then(|p| digits.strip_prefix(p.trunk_prefix).map(|r| (p, r)))
    {
        if rest.len() < 4 {
            return Err(NumberError::Incomplete);
        }
        format!("{}{rest}", p.calling_code)
    } else {
        return Err(NumberError::NeedsAreaCode);
    };
    if e164.len() > MAX_E164 {
        return Err(NumberError::TooLong);
    }
    if e164.len() < MIN_E164 || e164.starts_with('0') {
        return Err(NumberError::Incomplete);
    }
    // A trunk prefix right after a country code ("+49 030…") is a mistake
    // that a national-format trunk would turn into another country's number.
    let known = PLANS.iter().find(|p| e164.starts_with(p.calling_code));
    if known.is_some_and(|p| e164[p.calling_code.len()..].starts_with(p.trunk_prefix)) {
        return Err(NumberError::NotANumber);
    }
    Ok(Destination {
        class: classify(&e164, home),
        e164,
        emergency_code: None,
    })
}

/// The country calling code an E.164 number (digits, no `+`) starts with
/// (ITU-T E.164 assignments: 1 and 7 are one digit, the two-digit codes are
/// listed, all others have three), or None for too short a number.
pub fn calling_code(e164: &str) -> Option<&str> {
    const TWO: &[&str] = &[
        "20", "27", "30", "31", "32", "33", "34", "36", "39", "40", "41", "43", "44", "45", "46",
        "47", "48", "49", "51", "52", "53", "54", "55", "56", "57", "58", "60", "61", "62", "63",
        "64", "65", "66", "81", "82", "84", "86", "90", "91", "92", "93", "94", "95", "98",
    ];
    if !e164.bytes().all(|b| b.is_ascii_digit()) || e164.len() < 4 || e164.starts_with('0') {
        return None;
    }
    let len = if e164.starts_with('1') || e164.starts_with('7') {
        1
    } else if TWO.contains(&&e164[..2]) {
        2
    } else {
        3
    };
    e164.get(..len)
}

/// The class of an E.164 number (digits, no `+`) for a customer at `home`.
pub fn classify(e164: &str, home: Option<&Plan>) -> Class {
    let Some(home) = home else {
        return Class::International;
    };
    match e164.strip_prefix(home.calling_code) {
        Some(national) if home.premium.iter().any(|p| national.starts_with(p)) => Class::Premium,
        Some(_) => Class::National,
        None => Class::International,
    }
}

/// How a trunk wants numbers written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum NumberFormat {
    /// `+4930123456`
    E164Plus,
    /// `4930123456`
    E164,
    /// `030123456` at home, `0044…` abroad (the trunk's country's way).
    National,
}

impl NumberFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            NumberFormat::E164Plus => "e164_plus",
            NumberFormat::E164 => "e164",
            NumberFormat::National => "national",
        }
    }

    pub fn parse(text: &str) -> Option<NumberFormat> {
        match text {
            "e164_plus" => Some(NumberFormat::E164Plus),
            "e164" => Some(NumberFormat::E164),
            "national" => Some(NumberFormat::National),
            _ => None,
        }
    }
}

/// Writes a destination as a trunk in `trunk_country` wants it. Emergency
/// calls go as the short number itself in every format: carriers route them
/// by the caller's location, and `+49112` is no number.
pub fn for_trunk(destination: &Destination, format: NumberFormat, trunk_country: &str) -> String {
    let home = plan(trunk_country);
    if let Some(code) = &destination.emergency_code {
        return code.clone();
    }
    match format {
        NumberFormat::E164Plus => format!("+{}", destination.e164),
        NumberFormat::E164 => destination.e164.clone(),
        NumberFormat::National => match home {
            Some(p) => match destination.e164.strip_prefix(p.calling_code) {
                Some(national) => format!("{}{national}", p.trunk_prefix),
                None => format!("{}{}", p.international_prefix, destination.e164),
            },
            None => format!("+{}", destination.e164),
        },
    }
}

/// Reads a number a carrier delivered (in whatever format its trunk uses)
/// as E.164 digits without `+`; None if it is not a number.
pub fn read_from_trunk(
    delivered: &str,
    format: NumberFormat,
    trunk_country: &str,
) -> Option<String> {
    let digits = delivered.trim();
    let e164 = match digits.strip_prefix('+') {
        Some(rest) => rest.to_owned(),
        None => match format {
            NumberFormat::E164Plus | NumberFormat::E164 => digits.to_owned(),
            NumberFormat::National => {
                let p = plan(trunk_country)?;
                if let Some(rest) = digits.strip_prefix(p.international_prefix) {
                    rest.to_owned()
                } else if let Some(rest) = digits.strip_prefix(p.trunk_prefix) {
                    format!("{}{rest}", p.calling_code)
                } else {
                    return None;
                }
            }
        },
    };
    let valid = (MIN_E164..=MAX_E164).contains(&e164.len())
        && e164.bytes().all(|b| b.is_ascii_digit())
        && !e164.starts_with('0');
    valid.then_some(e164)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calling_codes_are_one_two_or_three_digits() {
        assert_eq!(calling_code("12125550100"), Some("1"));
        assert_eq!(calling_code("74951234567"), Some("7"));
        assert_eq!(calling_code("442071234567"), Some("44"));
        assert_eq!(calling_code("4930123456"), Some("49"));
        assert_eq!(calling_code("8801712345678"), Some("880"));
        assert_eq!(calling_code("3531234567"), Some("353"), "Ireland, not 35");
        assert_eq!(
            calling_code("88216123456"),
            Some("882"),
            "international networks"
        );
        assert_eq!(calling_code("49"), None);
        assert_eq!(calling_code("0301234"), None);
        assert_eq!(calling_code("44x"), None);
    }

    fn read(dialled: &str) -> Result<(String, Class), NumberError> {
        read_dialled(dialled, "DE").map(|d| (d.e164, d.class))
    }

    #[test]
    fn german_dialling_reads_to_e164() {
        assert_eq!(
            read("030 1234567"),
            Ok(("49301234567".into(), Class::National))
        );
        assert_eq!(
            read("0171-2345678"),
            Ok(("491712345678".into(), Class::National))
        );
        assert_eq!(
            read("+49 (30) 1234567"),
            Ok(("49301234567".into(), Class::National))
        );
        assert_eq!(
            read("+49 (0)30 1234567"),
            Ok(("49301234567".into(), Class::National))
        );
        assert_eq!(
            read("0049 (0)30 1234567"),
            Ok(("49301234567".into(), Class::National))
        );
        // A trunk prefix after the country code would become Greece (+30).
        assert_eq!(read("+49 030 1234567"), Err(NumberError::NotANumber));
        assert_eq!(
            read("004930123456"),
            Ok(("4930123456".into(), Class::National))
        );
        assert_eq!(
            read("0044 20 7946 0000"),
            Ok(("442079460000".into(), Class::International))
        );
        assert_eq!(
            read("+1 212 555 0100"),
            Ok(("12125550100".into(), Class::International))
        );
        assert_eq!(
            read("0900 1234567"),
            Ok(("499001234567".into(), Class::Premium))
        );
        assert_eq!(
            read("01377 123456"),
            Ok(("491377123456".into(), Class::Premium))
        );
    }

    #[test]
    fn emergency_numbers_are_recognised_exactly() {
        assert_eq!(read("110"), Ok(("49110".into(), Class::Emergency)));
        assert_eq!(read("112"), Ok(("49112".into(), Class::Emergency)));
        // Not emergency when part of a longer number.
        assert_eq!(read("1120"), Err(NumberError::NeedsAreaCode));
        // 112 works in every country, even one without a plan here.
        assert_eq!(
            read_dialled("112", "FR").map(|d| d.class),
            Ok(Class::Emergency)
        );
        assert_eq!(
            read_dialled("144", "CH").map(|d| d.e164),
            Ok("41144".into())
        );
    }

    #[test]
    fn malformed_and_incomplete_numbers_are_refused() {
        assert_eq!(read(""), Err(NumberError::NotANumber));
        assert_eq!(read("+"), Err(NumberError::NotANumber));
        assert_eq!(read("030*123"), Err(NumberError::NotANumber));
        assert_eq!(read("0301"), Err(NumberError::Incomplete));
        assert_eq!(read("00"), Err(NumberError::Incomplete));
        assert_eq!(read("0049"), Err(NumberError::Incomplete));
        assert_eq!(read("+0301234567"), Err(NumberError::Incomplete));
        assert_eq!(read("1234567"), Err(NumberError::NeedsAreaCode));
        assert_eq!(read("+4930123456789012"), Err(NumberError::TooLong));
        assert_eq!(
            read("١٢٣"),
            Err(NumberError::NotANumber),
            "only ASCII digits"
        );
    }

    #[test]
    fn numbers_are_written_as_each_trunk_wants() {
        let berlin = read_dialled("030 1234567", "DE").expect("number");
        let london = read_dialled("+44 20 7946 0000", "DE").expect("number");
        let emergency = read_dialled("112", "DE").expect("number");
        assert_eq!(
            for_trunk(&berlin, NumberFormat::E164Plus, "DE"),
            "+49301234567"
        );
        assert_eq!(for_trunk(&berlin, NumberFormat::E164, "DE"), "49301234567");
        assert_eq!(
            for_trunk(&berlin, NumberFormat::National, "DE"),
            "0301234567"
        );
        assert_eq!(
            for_trunk(&london, NumberFormat::National, "DE"),
            "00442079460000"
        );
        assert_eq!(for_trunk(&emergency, NumberFormat::National, "DE"), "112");
        assert_eq!(for_trunk(&emergency, NumberFormat::E164Plus, "DE"), "112");
        let austrian = read_dialled("133", "AT").expect("number");
        assert_eq!(for_trunk(&austrian, NumberFormat::National, "DE"), "133");
        for format in [
            NumberFormat::E164Plus,
            NumberFormat::E164,
            NumberFormat::National,
        ] {
            for d in [&berlin, &london] {
                let written = for_trunk(d, format, "DE");
                assert_eq!(
                    read_from_trunk(&written, format, "DE").as_deref(),
                    Some(d.e164.as_str())
                );
            }
            assert_eq!(NumberFormat::parse(format.as_str()), Some(format));
        }
        assert_eq!(read_from_trunk("12345", NumberFormat::National, "DE"), None);
        assert_eq!(
            read_from_trunk("+49abc", NumberFormat::E164Plus, "DE"),
            None
        );
    }
}
