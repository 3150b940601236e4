//! Banned sources: written by the SIP node that decided, lifted by an
//! administrator, read back by every node.

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;

use super::{BanInForce, BanReason};
use crate::audit::{self, Event};
use crate::changes::Change;
use crate::net::Source;
use crate::principal::Level;
use crate::rows::enum_col;
use crate::{CustomerId, Millis, Principal, ResellerId, Result, Store, StoreError};

/// Rows are kept this long after their ban ended.
const KEEP_MS: Millis = 90 * 24 * 3600 * 1000;

/// One ban, as administrators see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SipBan {
    pub id: i64,
    /// An IPv4 address or an IPv6 /64.
    pub source: String,
    pub reason: BanReason,
    /// 1 for a first ban; each ban within a week of an earlier one lasts longer.
    pub level: u32,
    /// Wrong passwords that led to it (0 for scanners and floods).
    pub failures: u32,
    /// Whose accounts were guessed at (the last guess's), if anyone's.
    pub reseller_id: Option<ResellerId>,
    pub customer_id: Option<CustomerId>,
    /// The SIP node that decided.
    pub node_id: String,
    pub banned_at: Millis,
    pub until: Millis,
    pub lifted_at: Option<Millis>,
    pub lifted_by: Option<String>,
    /// Still in force.
    pub active: bool,
}

/// A ban a SIP node decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewBan {
    pub source: Source,
    pub reason: BanReason,
    pub level: u32,
    pub failures: u32,
    pub reseller: Option<ResellerId>,
    pub customer: Option<CustomerId>,
    pub node_id: String,
    pub banned_at: Millis,
    pub until: Millis,
}

const COLUMNS: &str = "id, source, reason, level, failures, reseller_id, customer_id, node_id, \
    banned_at, until, lifted_at, lifted_by";

fn from_row(row: &AnyRow, now: Millis) -> Result<SipBan, sqlx::Error> {
    let count = |name: &str| -> Result<u32, sqlx::Error> {
        Ok(u32::try_from(row.try_get::<i64, _>(name)?).unwrap_or(u32::MAX))
    };
    let until: Millis = row.try_get("until")?;
    let lifted_at: Option<Millis> = row.try_get("lifted_at")?;
    Ok(SipBan {
        id: row.try_get("id")?,
        source: row.try_get("source")?,
        reason: enum_col(row, "reason", BanReason::parse)?,
        level: count("level")?,
        failures: count("failures")?,
        reseller_id: row
            .try_get::<Option<i64>, _>("reseller_id")?
            .map(ResellerId),
        customer_id: row
            .try_get::<Option<i64>, _>("customer_id")?
            .map(CustomerId),
        node_id: row.try_get("node_id")?,
        banned_at: row.try_get("banned_at")?,
        until,
        lifted_at,
        lifted_by: row.try_get("lifted_by")?,
        active: lifted_at.is_none() && until > now,
    })
}

pub struct SipBans<'s>(pub(crate) &'s Store);

impl SipBans<'_> {
    /// Stores a node's ban (the system), with its audit entry, and tells
    /// every node; forgets rows long over.
    pub async fn record(&self, by: &Principal, ban: &NewBan) -> Result<i64> {
        by.may_write(Level::Operator)?;
        let mut tx = self.0.begin().await?;
        let row = sqlx::query(
            "INSERT INTO sip_bans (source, reason, level, failures, reseller_id, customer_id, node_id, \
             banned_at, until) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
        )
        .bind(ban.source.to_string())
        .bind(ban.reason.as_str())
        .bind(i64::from(ban.level))
        .bind(i64::from(ban.failures))
        .bind(ban.reseller.map(|r| r.0))
        .bind(ban.customer.map(|c| c.0))
        .bind(crate::validate::clip(&ban.node_id, 100))
        .bind(ban.banned_at)
        .bind(ban.until)
        .fetch_one(tx.conn())
        .await?;
        let id: i64 = row.try_get("id")?;
        audit::record(
            &mut tx,
            by,
            Event {
                action: "ban_sip_source",
                object_type: "sip_ban",
                object_id: Some(id),
                reseller: ban.reseller,
                customer: ban.customer,
                details: serde_json::json!({
                    "source": ban.source.to_string(),
                    "reason": ban.reason,
                    "level": ban.level,
                    "failures": ban.failures,
                    "until": ban.until,
                    "node_id": ban.node_id,
                }),
            },
        )
        .await?;
        sqlx::query("DELETE FROM sip_bans WHERE until < $1")
            .bind(ban.banned_at - KEEP_MS)
            .execute(tx.conn())
            .await?;
        tx.changed(Change::Guard);
        tx.commit().await?;
        Ok(id)
    }

    /// The newest first, at most `limit`; only those in force when
    /// `active_only`. The operator sees all; a reseller the bans of sources
    /// that guessed at its customers' accounts; a customer its own.
    pub async fn list(&self, by: &Principal, active_only: bool, limit: i64) -> Result<Vec<SipBan>> {
        by.may_read(Level::Customer)?;
        let now = crate::now_ms();
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM sip_bans \
             WHERE ($1 IS NULL OR reseller_id = $1) AND ($2 IS NULL OR customer_id = $2) \
               AND ($3 = 0 OR (lifted_at IS NULL AND until > $4)) \
             ORDER BY id DESC LIMIT $5"
        ))
        .bind(by.scope.reseller_param())
        .bind(by.scope.customer_param())
        .bind(i64::from(active_only))
        .bind(now)
        .bind(limit.clamp(1, 1000))
        .fetch_all(self.0.pool())
        .await?;
        rows.iter()
            .map(|r| from_row(r, now))
            .collect::<Result<_, _>>()
            .map_err(Into::into)
    }

    pub async fn get(&self, by: &Principal, id: i64) -> Result<SipBan> {
        by.may_read(Level::Customer)?;
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM sip_bans WHERE id = $1 \
             AND ($2 IS NULL OR reseller_id = $2) AND ($3 IS NULL OR customer_id = $3)"
        ))
        .bind(id)
        .bind(by.scope.reseller_param())
        .bind(by.scope.customer_param())
        .fetch_optional(self.0.pool())
        .await?
        .ok_or(StoreError::NotFound)?;
        Ok(from_row(&row, crate::now_ms())?)
    }

    /// Lifts a ban in force: the source is answered again on every node at
    /// once, and its next ban starts at the first step. The operator may
    /// lift any; a reseller or customer administrator the bans they see.
    pub async fn lift(&self, by: &Principal, id: i64) -> Result<SipBan> {
        let ban = self.get(by, id).await?;
        by.may_write(Level::Customer)?;
        if !ban.active {
            return Err(StoreError::Conflict("the ban is no longer in force".into()));
        }
        let now = crate::now_ms();
        let mut tx = self.0.begin().await?;
        sqlx::query("UPDATE sip_bans SET lifted_at = $1, lifted_by = $2 WHERE id = $3 AND lifted_at IS NULL")
            .bind(now)
            .bind(by.actor.label())
            .bind(id)
            .execute(tx.conn())
            .await?;
        audit::record(
            &mut tx,
            by,
            Event {
                action: "lift_sip_ban",
                object_type: "sip_ban",
                object_id: Some(id),
                reseller: ban.reseller_id,
                customer: ban.customer_id,
                details: serde_json::json!({ "source": ban.source }),
            },
        )
        .await?;
        tx.changed(Change::Guard);
        tx.commit().await?;
        self.get(by, id).await
    }

    /// Bans not lifted that ended after `now - escalation` (the system).
    pub(crate) async fn for_nodes(
        &self,
        by: &Principal,
        now: Millis,
        escalation: Millis,
    ) -> Result<Vec<BanInForce>> {
        by.may_read(Level::Operator)?;
        let rows = sqlx::query(
            "SELECT source, banned_at, until, level FROM sip_bans \
             WHERE lifted_at IS NULL AND until > $1 ORDER BY id",
        )
        .bind(now - escalation)
        .fetch_all(self.0.pool())
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let text: String = row.try_get("source")?;
            let Some(source) = Source::parse(&text) else {
                tracing::warn!(source = %text, "unreadable banned source skipped");
                continue;
            };
            out.push(BanInForce {
                source,
                banned_at: row.try_get("banned_at")?,
                until: row.try_get("until")?,
                level: u32::try_from(row.try_get::<i64, _>("level")?).unwrap_or(1),
            });
        }
        Ok(out)
    }
}
