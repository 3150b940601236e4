//! Call usage: answered calls summed per customer, 15-minute UTC interval of
//! their INVITE, direction and the rate prefix that priced them on each tier
//! (table `call_usage`). It is written in the same transaction as the call
//! records it sums and rebuilt from them when they are re-rated, so it always
//! equals grouping the records; statements read it instead of the records
//! when their period starts and ends on a 15-minute mark (every calendar month
//! in every time zone does).

use std::collections::HashMap;

use sqlx::{AnyConnection, Row};

use crate::{Millis, Result};

/// The summing interval: every time zone's offset is a multiple of it.
pub(crate) const BUCKET_MS: Millis = 15 * 60_000;

/// Stands for "no rate applied" in the prefix columns (which are keys).
const NO_PREFIX: &str = "-";

pub(crate) fn bucket(at: Millis) -> Millis {
    at.div_euclid(BUCKET_MS) * BUCKET_MS
}

/// True when [from, to) is made of whole intervals.
pub(crate) fn aligned(from: Millis, to: Millis) -> bool {
    from.rem_euclid(BUCKET_MS) == 0 && to.rem_euclid(BUCKET_MS) == 0
}

/// The stored form of an optional prefix, and back.
pub(crate) fn prefix_key(prefix: Option<&str>) -> &str {
    prefix.unwrap_or(NO_PREFIX)
}

pub(crate) fn prefix_from_key(key: String) -> Option<String> {
    (key != NO_PREFIX).then_some(key)
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    reseller: i64,
    customer: i64,
    bucket: Millis,
    direction: String,
    wholesale_prefix: String,
    retail_prefix: String,
}

#[derive(Debug, Clone, Copy, Default)]
struct Sum {
    calls: i64,
    billable_ms: i64,
    wholesale_micros: i64,
    retail_micros: i64,
    wholesale_unrated: i64,
    retail_unrated: i64,
}

/// One answered call's share of the usage.
pub(crate) struct Share<'a> {
    pub reseller: i64,
    pub customer: i64,
    pub invite_at: Millis,
    pub direction: &'a str,
    pub billable_ms: i64,
    pub wholesale_prefix: Option<&'a str>,
    pub wholesale_micros: Option<i64>,
    pub retail_prefix: Option<&'a str>,
    pub retail_micros: Option<i64>,
}

/// Usage to be added, summed in memory first.
#[derive(Default)]
pub(crate) struct Usage {
    sums: HashMap<Key, Sum>,
}

impl Usage {
    pub fn add(&mut self, share: Share<'_>) {
        if share.billable_ms <= 0 {
            return;
        }
        let key = Key {
            reseller: share.reseller,
            customer: share.customer,
            bucket: bucket(share.invite_at),
            direction: share.direction.to_owned(),
            wholesale_prefix: prefix_key(share.wholesale_prefix).to_owned(),
            retail_prefix: prefix_key(share.retail_prefix).to_owned(),
        };
        let sum = self.sums.entry(key).or_default();
        sum.calls += 1;
        sum.billable_ms += share.billable_ms;
        sum.wholesale_micros += share.wholesale_micros.unwrap_or(0);
        sum.retail_micros += share.retail_micros.unwrap_or(0);
        sum.wholesale_unrated += i64::from(share.wholesale_micros.is_none());
        sum.retail_unrated += i64::from(share.retail_micros.is_none());
    }

    /// Adds the sums to the stored usage.
    pub async fn save(self, conn: &mut AnyConnection) -> Result<()> {
        for (k, s) in self.sums {
            sqlx::query(
                "INSERT INTO call_usage (reseller_id, customer_id, bucket, direction, \
                 wholesale_prefix, retail_prefix, calls, billable_ms, wholesale_micros, \
                 retail_micros, wholesale_unrated, retail_unrated) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
                 ON CONFLICT (customer_id, bucket, direction, wholesale_prefix, retail_prefix) \
                 DO UPDATE SET calls = call_usage.calls + excluded.calls, \
                 billable_ms = call_usage.billable_ms + excluded.billable_ms, \
                 wholesale_micros = call_usage.wholesale_micros + excluded.wholesale_micros, \
                 retail_micros = call_usage.retail_micros + excluded.retail_micros, \
                 wholesale_unrated = call_usage.wholesale_unrated + excluded.wholesale_unrated, \
                 retail_unrated = call_usage.retail_unrated + excluded.retail_unrated",
            )
            .bind(k.reseller)
            .bind(k.customer)
            .bind(k.bucket)
            .bind(k.direction)
            .bind(k.wholesale_prefix)
            .bind(k.retail_prefix)
            .bind(s.calls)
            .bind(s.billable_ms)
            .bind(s.wholesale_micros)
            .bind(s.retail_micros)
            .bind(s.wholesale_unrated)
            .bind(s.retail_unrated)
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }
}

/// Recomputes the usage of the intervals covering [from, to) from the
/// records, for one reseller and/or customer (None: all).
pub(crate) async fn rebuild(
    conn: &mut AnyConnection,
    reseller: Option<i64>,
    customer: Option<i64>,
    from: Millis,
    to: Millis,
) -> Result<()> {
    let start = bucket(from);
    let end = bucket(to.saturating_sub(1)) + BUCKET_MS;
    sqlx::query(
        "DELETE FROM call_usage WHERE ($1 IS NULL OR reseller_id = $1) \
         AND ($2 IS NULL OR customer_id = $2) AND bucket >= $3 AND bucket < $4",
    )
    .bind(reseller)
    .bind(customer)
    .bind(start)
    .bind(end)
    .execute(&mut *conn)
    .await?;
    let rows = sqlx::query(
        "SELECT reseller_id, customer_id, invite_at, direction, billable_ms, wholesale_prefix, \
         wholesale_micros, retail_prefix, retail_micros FROM call_records \
         WHERE ($1 IS NULL OR reseller_id = $1) AND ($2 IS NULL OR customer_id = $2) \
         AND invite_at >= $3 AND invite_at < $4 AND billable_ms > 0",
    )
    .bind(reseller)
    .bind(customer)
    .bind(start)
    .bind(end)
    .fetch_all(&mut *conn)
    .await?;
    let mut usage = Usage::default();
    for row in &rows {
        let direction: String = row.try_get("direction")?;
        let wholesale_prefix: Option<String> = row.try_get("wholesale_prefix")?;
        let retail_prefix: Option<String> = row.try_get("retail_prefix")?;
        usage.add(Share {
            reseller: row.try_get("reseller_id")?,
            customer: row.try_get("customer_id")?,
            invite_at: row.try_get("invite_at")?,
            direction: &direction,
            billable_ms: row.try_get("billable_ms")?,
            wholesale_prefix: wholesale_prefix.as_deref(),
            wholesale_micros: row.try_get("wholesale_micros")?,
            retail_prefix: retail_prefix.as_deref(),
            retail_micros: row.try_get("retail_micros")?,
        });
    }
    usage.save(conn).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_are_quarter_hours_in_utc() {
        assert_eq!(bucket(0), 0);
        assert_eq!(bucket(BUCKET_MS - 1), 0);
        assert_eq!(bucket(BUCKET_MS), BUCKET_MS);
        assert_eq!(bucket(-1), -BUCKET_MS);
        assert!(aligned(0, 4 * BUCKET_MS));
        assert!(!aligned(1, 4 * BUCKET_MS));
        // Kathmandu (UTC+5:45) midnight is on a quarter hour in UTC.
        let tz: chrono_tz::Tz = "Asia/Kathmandu".parse().expect("tz");
        let (from, to) = crate::rating::month_bounds(2026, 11, tz).expect("month");
        assert!(aligned(from, to));
    }
}
