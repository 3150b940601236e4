//! Rating: what a call, a seat or a number costs, in exact integer money.
//!
//! The rules, as a reseller reads them:
//! - **Money** is counted in micro-units of the plan's currency (1 EUR =
//!   1,000,000) and never in floating point. Per-minute prices, connection
//!   fees and minimum charges are given in micro-units too.
//! - **A call's price** comes from the rate with the longest prefix matching
//!   its destination number (E.164 without `+`; the empty prefix is the
//!   default rate). Unanswered calls cost nothing. An answered call's length
//!   is rounded up to whole seconds, then billed in increments: the first
//!   increment is charged in full, then each further increment started (60/60
//!   bills whole minutes, 60/1 the first minute then per second, 1/1 per
//!   second, 30/6 half a minute then six-second steps). The price is
//!   connection fee + billed seconds × price per minute ÷ 60, rounded to the
//!   nearest micro-unit (halves up), and at least the minimum charge.
//! - **Internal calls** between extensions of one customer are free when the
//!   plan says so (the default).
//! - **Seats and numbers** have a monthly price, prorated by day: an extension
//!   or number is billed for every calendar day (in the reseller's time zone)
//!   on which it existed for any time, at monthly price × days ÷ days in that
//!   month. A seat created on the 20th of a 30-day month and kept costs 11/30
//!   of the monthly price; one created and deleted on the same day costs one day.
//! - **Amounts on statements** are rounded to the currency's minor unit (cents)
//!   per line, halves up; the net total is the sum of the rounded lines, VAT is
//!   net × rate rounded the same way, and gross = net + VAT.

use chrono::{Datelike, NaiveDate, TimeZone};
use chrono_tz::Tz;

use crate::Millis;

/// Micro-units in one unit of a currency.
pub const MICROS: i64 = 1_000_000;

/// One row of a rate table, as rating needs it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RateRule {
    pub prefix: String,
    pub description: String,
    pub minute_micros: i64,
    pub connection_micros: i64,
    pub first_increment_s: i64,
    pub next_increment_s: i64,
    pub minimum_micros: i64,
}

/// The rate with the longest prefix of `number` (digits of an E.164 number
/// without `+`), if any.
pub fn best_rate<'r>(rates: &'r [RateRule], number: &str) -> Option<&'r RateRule> {
    rates
        .iter()
        .filter(|r| number.starts_with(r.prefix.as_str()))
        .max_by_key(|r| r.prefix.len())
}

/// Seconds billed for a call of `billable_ms` under first/next increments.
pub fn billed_seconds(billable_ms: i64, first_increment_s: i64, next_increment_s: i64) -> i64 {
    if billable_ms <= 0 {
        return 0;
    }
    let seconds = (billable_ms + 999) / 1000;
    let first = first_increment_s.max(1);
    let next = next_increment_s.max(1);
    if seconds <= first {
        first
    } else {
        first + (seconds - first + next - 1) / next * next
    }
}

/// `numerator / denominator` rounded to the nearest integer, halves away from zero.
pub fn div_round(numerator: i128, denominator: i128) -> i128 {
    if denominator == 0 {
        return 0;
    }
    let (n, d) = if denominator < 0 {
        (-numerator, -denominator)
    } else {
        (numerator, denominator)
    };
    if n >= 0 {
        (n + d / 2) / d
    } else {
        -((-n + d / 2) / d)
    }
}

/// The price of an answered call of `billable_ms` under `rate`, in micro-units.
pub fn call_price(rate: &RateRule, billable_ms: i64) -> i64 {
    if billable_ms <= 0 {
        return 0;
    }
    let seconds = billed_seconds(billable_ms, rate.first_increment_s, rate.next_increment_s);
    let usage = div_round(i128::from(seconds) * i128::from(rate.minute_micros), 60);
    let price = i128::from(rate.connection_micros) + usage;
    i64::try_from(price.max(i128::from(rate.minimum_micros))).unwrap_or(i64::MAX)
}

/// Digits after the decimal point for a currency (ISO 4217); 2 unless known otherwise.
pub fn minor_unit_digits(currency: &str) -> u32 {
    match currency {
        "JPY" | "KRW" | "ISK" | "CLP" | "VND" | "XAF" | "XOF" | "HUF" => 0,
        "BHD" | "KWD" | "OMR" | "JOD" | "TND" | "LYD" | "IQD" => 3,
        _ => 2,
    }
}

/// Micro-units rounded to the currency's minor unit (halves up), still in micro-units.
pub fn round_to_minor(micros: i64, currency: &str) -> i64 {
    let step = 10_i128.pow(6 - minor_unit_digits(currency));
    let rounded = div_round(i128::from(micros), step) * step;
    i64::try_from(rounded).unwrap_or(i64::MAX)
}

/// VAT on a net amount (both in micro-units, already rounded to the minor
/// unit), for a rate in basis points, rounded to the minor unit.
pub fn vat(net_micros: i64, vat_rate_bp: i64, currency: &str) -> i64 {
    let raw = div_round(i128::from(net_micros) * i128::from(vat_rate_bp), 10_000);
    round_to_minor(i64::try_from(raw).unwrap_or(i64::MAX), currency)
}

/// Formats micro-units as a decimal amount with the currency's minor digits
/// (the value must already be rounded to them), e.g. `12.30`.
pub fn format_amount(micros: i64, currency: &str) -> String {
    let digits = minor_unit_digits(currency);
    let minor = div_round(i128::from(micros), 10_i128.pow(6 - digits));
    let sign = if minor < 0 { "-" } else { "" };
    let minor = minor.abs();
    let scale = 10_i128.pow(digits);
    if digits == 0 {
        format!("{sign}{minor}")
    } else {
        format!(
            "{sign}{}.{:0width$}",
            minor / scale,
            minor % scale,
            width = digits as usize
        )
    }
}

/// Formats micro-units exactly, with six decimals: `0.038317`.
pub fn format_micros(micros: i64) -> String {
    let sign = if micros < 0 { "-" } else { "" };
    let m = micros.unsigned_abs();
    format!("{sign}{}.{:06}", m / 1_000_000, m % 1_000_000)
}

/// A local calendar day.
pub type Day = NaiveDate;

/// The local day (in `tz`) of an instant.
pub fn local_day(at: Millis, tz: Tz) -> Day {
    tz.timestamp_millis_opt(at)
        .single()
        .or_else(|| tz.timestamp_millis_opt(at).earliest())
        .map(|t| t.date_naive())
        .unwrap_or_default()
}

/// The UTC instant at which local day `day` begins in `tz`.
pub fn day_start(day: Day, tz: Tz) -> Millis {
    let midnight = day.and_hms_opt(0, 0, 0).unwrap_or_default();
    // A day may begin inside a DST gap somewhere; then it begins at the
    // first valid local time after it.
    let mut candidate = midnight;
    for _ in 0..4 {
        if let Some(t) = tz.from_local_datetime(&candidate).earliest() {
            return t.timestamp_millis();
        }
        candidate += chrono::Duration::minutes(30);
    }
    midnight.and_utc().timestamp_millis()
}

/// The UTC instants bounding calendar month `year-month` in `tz`: [start, end).
pub fn month_bounds(year: i32, month: u32, tz: Tz) -> Option<(Millis, Millis)> {
    let first = NaiveDate::from_ymd_opt(year, month, 1)?;
    let next = if month == 12 {
        NaiveDate::from_ymd_opt(year + 1, 1, 1)?
    } else {
        NaiveDate::from_ymd_opt(year, month + 1, 1)?
    };
    Some((day_start(first, tz), day_start(next, tz)))
}

pub fn days_in_month(day: Day) -> i64 {
    let (y, m) = (day.year(), day.month());
    let next = if m == 12 {
        NaiveDate::from_ymd_opt(y + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(y, m + 1, 1)
    };
    let first = NaiveDate::from_ymd_opt(y, m, 1);
    match (first, next) {
        (Some(a), Some(b)) => (b - a).num_days(),
        _ => 30,
    }
}

/// What a thing that existed from `created` to `deleted` (None: still) costs
/// within the period [from, to), at `monthly_micros` per month, prorated by
/// local day in `tz`. Returns (days billed, micro-units).
pub fn prorate(
    created: Millis,
    deleted: Option<Millis>,
    from: Millis,
    to: Millis,
    monthly_micros: i64,
    tz: Tz,
) -> (i64, i64) {
    let start = created.max(from);
    let end = deleted.unwrap_or(i64::MAX).min(to);
    if end <= start || to <= from {
        return (0, 0);
    }
    // Days from the first day it existed in the period to the last day it
    // existed (the day containing end - 1 ms), both included.
    let first = local_day(start, tz);
    let last = local_day(end - 1, tz);
    let mut days = 0;
    let mut amount: i128 = 0;
    let mut day = first;
    while day <= last {
        // Group the days by month: each month has its own length.
        let in_month = days_in_month(day);
        let month_end =
            NaiveDate::from_ymd_opt(day.year(), day.month(), in_month as u32).unwrap_or(day);
        let segment_end = month_end.min(last);
        let n = (segment_end - day).num_days() + 1;
        days += n;
        amount += div_round(
            i128::from(monthly_micros) * i128::from(n),
            i128::from(in_month),
        );
        day = match segment_end.succ_opt() {
            Some(d) => d,
            None => break,
        };
    }
    (days, i64::try_from(amount).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(prefix: &str, minute: i64, first: i64, next: i64) -> RateRule {
        RateRule {
            prefix: prefix.into(),
            description: prefix.into(),
            minute_micros: minute,
            connection_micros: 0,
            first_increment_s: first,
            next_increment_s: next,
            minimum_micros: 0,
        }
    }

    #[test]
    fn increments() {
        // 60/60: whole minutes.
        assert_eq!(billed_seconds(1, 60, 60), 60);
        assert_eq!(billed_seconds(60_000, 60, 60), 60);
        assert_eq!(billed_seconds(60_001, 60, 60), 120);
        // 60/1: first minute, then per second.
        assert_eq!(billed_seconds(61_000, 60, 1), 61);
        assert_eq!(billed_seconds(61_001, 60, 1), 62);
        // 1/1: per second, part-seconds rounded up.
        assert_eq!(billed_seconds(1_001, 1, 1), 2);
        // 30/6.
        assert_eq!(billed_seconds(29_000, 30, 6), 30);
        assert_eq!(billed_seconds(31_000, 30, 6), 36);
        assert_eq!(billed_seconds(36_001, 30, 6), 42);
        assert_eq!(billed_seconds(0, 60, 60), 0);
    }

    #[test]
    fn longest_prefix_wins() {
        let rates = vec![
            rate("", 100, 60, 60),
            rate("49", 200, 60, 60),
            rate("4915", 900, 60, 60),
            rate("491", 500, 60, 60),
        ];
        assert_eq!(
            best_rate(&rates, "4915123456").map(|r| r.prefix.as_str()),
            Some("4915")
        );
        assert_eq!(
            best_rate(&rates, "4930123456").map(|r| r.prefix.as_str()),
            Some("49")
        );
        assert_eq!(
            best_rate(&rates, "4412345").map(|r| r.prefix.as_str()),
            Some("")
        );
        assert_eq!(best_rate(&rates[1..], "4412345"), None);
    }

    #[test]
    fn call_prices_with_fees_minimums_and_rounding() {
        // 1.9 ct per minute, 60/1, 2:01 → 121 s → 121 × 19,000 / 60 = 38,316.67 → 38,317.
        let r = rate("49", 19_000, 60, 1);
        assert_eq!(call_price(&r, 121_000), 38_317);
        let with_fee = RateRule {
            connection_micros: 50_000,
            minimum_micros: 100_000,
            ..r.clone()
        };
        assert_eq!(call_price(&with_fee, 1_000), 100_000, "minimum charge");
        assert_eq!(call_price(&with_fee, 600_000), 50_000 + 190_000);
        assert_eq!(
            call_price(&with_fee, 0),
            0,
            "unanswered is free, no connection fee"
        );
    }

    #[test]
    fn money_rounds_halves_up_to_the_minor_unit() {
        assert_eq!(round_to_minor(1_234_999, "EUR"), 1_230_000);
        assert_eq!(round_to_minor(1_235_000, "EUR"), 1_240_000);
        assert_eq!(round_to_minor(1_499_999, "JPY"), 1_000_000);
        assert_eq!(round_to_minor(1_500_000, "JPY"), 2_000_000);
        assert_eq!(round_to_minor(1_234_500, "KWD"), 1_235_000);
        assert_eq!(vat(10_000_000, 1900, "EUR"), 1_900_000);
        assert_eq!(
            vat(10_050_000, 1900, "EUR"),
            1_910_000,
            "1.9095 rounds to 1.91"
        );
        assert_eq!(format_amount(12_300_000, "EUR"), "12.30");
        assert_eq!(format_amount(-50_000, "EUR"), "-0.05");
        assert_eq!(format_amount(7_000_000, "JPY"), "7");
        assert_eq!(format_amount(1_235_000, "KWD"), "1.235");
    }

    fn berlin() -> Tz {
        "Europe/Berlin".parse().expect("tz")
    }

    fn at(y: i32, m: u32, d: u32, h: u32, tz: Tz) -> Millis {
        tz.with_ymd_and_hms(y, m, d, h, 0, 0)
            .single()
            .expect("time")
            .timestamp_millis()
    }

    #[test]
    fn month_bounds_follow_the_resellers_time_zone() {
        let (from, to) = month_bounds(2026, 11, berlin()).expect("month");
        // November in Berlin is UTC+1: it starts at 23:00 UTC on 31 October.
        assert_eq!(
            from,
            chrono::Utc
                .with_ymd_and_hms(2026, 10, 31, 23, 0, 0)
                .single()
                .expect("t")
                .timestamp_millis()
        );
        assert_eq!(
            to,
            chrono::Utc
                .with_ymd_and_hms(2026, 11, 30, 23, 0, 0)
                .single()
                .expect("t")
                .timestamp_millis()
        );
        // March 2026 holds the switch to summer time: 31 days, 743 hours.
        let (from, to) = month_bounds(2026, 3, berlin()).expect("month");
        assert_eq!((to - from) / 3_600_000, 743);
    }

    #[test]
    fn a_seat_created_on_the_20th_costs_11_30_of_a_30_day_month() {
        let tz = berlin();
        let (from, to) = month_bounds(2026, 11, tz).expect("month");
        let created = at(2026, 11, 20, 15, tz);
        let (days, amount) = prorate(created, None, from, to, 30_000_000, tz);
        assert_eq!(days, 11);
        assert_eq!(amount, 11_000_000);
        // Created and deleted mid-month: both days count.
        let (days, _) = prorate(
            at(2026, 11, 10, 9, tz),
            Some(at(2026, 11, 12, 9, tz)),
            from,
            to,
            30_000_000,
            tz,
        );
        assert_eq!(days, 3);
        // Same day: one day.
        let (days, _) = prorate(
            at(2026, 11, 10, 9, tz),
            Some(at(2026, 11, 10, 10, tz)),
            from,
            to,
            30_000_000,
            tz,
        );
        assert_eq!(days, 1);
        // Existed all month: exactly the monthly price.
        let (days, amount) = prorate(0, None, from, to, 30_000_000, tz);
        assert_eq!((days, amount), (30, 30_000_000));
    }

    #[test]
    fn days_are_local_days_at_month_ends_and_across_months() {
        let tz = berlin();
        // Created at 23:30 UTC on 31 October = 00:30 on 1 November in Berlin:
        // nothing in October, the whole of November.
        let created = chrono::Utc
            .with_ymd_and_hms(2026, 10, 31, 23, 30, 0)
            .single()
            .expect("t")
            .timestamp_millis();
        let (oct_from, oct_to) = month_bounds(2026, 10, tz).expect("month");
        assert_eq!(
            prorate(created, None, oct_from, oct_to, 31_000_000, tz),
            (0, 0)
        );
        // A range over two months prorates each month by its own length.
        let (from, _) = month_bounds(2026, 10, tz).expect("month");
        let (_, to) = month_bounds(2026, 11, tz).expect("month");
        let c = at(2026, 10, 30, 12, tz);
        let (days, amount) = prorate(c, None, from, to, 3_100_000, tz);
        assert_eq!(days, 2 + 30);
        assert_eq!(amount, 200_000 + 3_100_000);
    }
}
