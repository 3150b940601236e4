//! The allow list: addresses the SIP nodes never ban. The operator's
//! entries (its monitoring, a carrier that probes) are exempt from every
//! check, platform-wide; a customer's entries (its office's fixed address,
//! set by the customer's administrator or its reseller) are never banned for
//! what they do to that customer's accounts, and count as known sources
//! while one of its accounts is protected.

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::audit::{self, Event};
use crate::changes::Change;
use crate::net::Block;
use crate::principal::Level;
use crate::validate::Checker;
use crate::{CustomerId, Millis, Principal, ResellerId, Result, Scope, Store, StoreError};

/// Entries one customer may have.
const MAX_PER_CUSTOMER: i64 = 20;
/// Entries the operator may have.
const MAX_OPERATOR: i64 = 1000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AllowedSource {
    pub id: i64,
    /// An address or block, e.g. `203.0.113.7/32` or `2001:db8:5::/48`.
    pub block: String,
    pub note: String,
    /// None: the operator's entry, exempt from every check.
    pub customer_id: Option<CustomerId>,
    pub reseller_id: Option<ResellerId>,
    pub created_at: Millis,
}

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewAllowedSource {
    /// An address or block. A customer's is at most a /24 (IPv4) or a /48
    /// (IPv6): an office, not a network.
    pub block: String,
    #[serde(default)]
    pub note: String,
    /// The customer whose office it is; absent for the operator's own entry.
    pub customer_id: Option<CustomerId>,
}

const COLUMNS: &str = "id, block, note, customer_id, reseller_id, created_at";

fn from_row(row: &AnyRow) -> Result<AllowedSource, sqlx::Error> {
    Ok(AllowedSource {
        id: row.try_get("id")?,
        block: row.try_get("block")?,
        note: row.try_get("note")?,
        customer_id: row
            .try_get::<Option<i64>, _>("customer_id")?
            .map(CustomerId),
        reseller_id: row
            .try_get::<Option<i64>, _>("reseller_id")?
            .map(ResellerId),
        created_at: row.try_get("created_at")?,
    })
}

pub struct AllowList<'s>(pub(crate) &'s Store);

impl AllowList<'_> {
    /// The entries the caller may see: the operator all, a reseller its
    /// customers', a customer its own.
    pub async fn list(&self, by: &Principal) -> Result<Vec<AllowedSource>> {
        by.may_read(Level::Customer)?;
        let operator = matches!(by.scope, Scope::Operator);
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM sip_allowed_sources \
             WHERE ($1 = 1 OR customer_id IS NOT NULL) \
               AND ($2 IS NULL OR reseller_id = $2) AND ($3 IS NULL OR customer_id = $3) \
             ORDER BY id"
        ))
        .bind(i64::from(operator))
        .bind(by.scope.reseller_param())
        .bind(by.scope.customer_param())
        .fetch_all(self.0.pool())
        .await?;
        rows.iter()
            .map(from_row)
            .collect::<Result<_, _>>()
            .map_err(Into::into)
    }

    async fn get(&self, by: &Principal, id: i64) -> Result<AllowedSource> {
        self.list(by)
            .await?
            .into_iter()
            .find(|a| a.id == id)
            .ok_or(StoreError::NotFound)
    }

    /// Adds an entry: the operator's own (no customer) or a customer's (its
    /// administrators, its reseller, the operator).
    pub async fn add(&self, by: &Principal, new: &NewAllowedSource) -> Result<AllowedSource> {
        let (customer, reseller) = match new.customer_id {
            Some(c) => {
                let c = self.0.customers().get(by, c).await?;
                by.may_write(Level::Customer)?;
                (Some(c.id), Some(c.reseller_id))
            }
            None => {
                by.may_write(Level::Operator)?;
                (None, None)
            }
        };
        let block = Block::parse(&new.block);
        let mut check = Checker::new();
        check
            .check(
                block.is_some(),
                "block",
                "must be an IP address or a block such as 203.0.113.0/24",
            )
            .check(
                customer.is_none()
                    || block.is_none_or(|b| b.prefix() >= if b.is_ipv4() { 24 } else { 48 }),
                "block",
                "a customer's entry is at most a /24 (IPv4) or a /48 (IPv6)",
            );
        if !new.note.trim().is_empty() {
            check.text("note", new.note.trim(), 200);
        }
        check.finish()?;
        let Some(block) = block else {
            return Err(StoreError::invalid(
                "block",
                "must be an IP address or block",
            ));
        };
        let mut tx = self.0.begin().await?;
        let row = sqlx::query(
            "SELECT COUNT(*) AS n, SUM(CASE WHEN block = $2 THEN 1 ELSE 0 END) AS same \
             FROM sip_allowed_sources WHERE (customer_id = $1 OR ($1 IS NULL AND customer_id IS NULL))",
        )
        .bind(customer.map(|c| c.0))
        .bind(block.to_string())
        .fetch_one(tx.conn())
        .await?;
        let n: i64 = row.try_get("n")?;
        let same: Option<i64> = row.try_get("same")?;
        if same.unwrap_or(0) > 0 {
            return Err(StoreError::Conflict(
                "this block is on the list already".into(),
            ));
        }
        if n >= if customer.is_some() {
            MAX_PER_CUSTOMER
        } else {
            MAX_OPERATOR
        } {
            return Err(StoreError::Conflict("the allow list is full".into()));
        }
        let row = sqlx::query(
            "INSERT INTO sip_allowed_sources (reseller_id, customer_id, block, note, created_at) \
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(reseller.map(|r| r.0))
        .bind(customer.map(|c| c.0))
        .bind(block.to_string())
        .bind(new.note.trim())
        .bind(crate::now_ms())
        .fetch_one(tx.conn())
        .await?;
        let id: i64 = row.try_get("id")?;
        // Bans of addresses now allowed end with it (a customer's entry ends
        // the bans about that customer's accounts).
        let now = crate::now_ms();
        let active = sqlx::query(
            "SELECT id, source FROM sip_bans WHERE lifted_at IS NULL AND until > $1              AND ($2 IS NULL OR customer_id = $2)",
        )
        .bind(now)
        .bind(customer.map(|c| c.0))
        .fetch_all(tx.conn())
        .await?;
        for ban in &active {
            let source: String = ban.try_get("source")?;
            let covered = crate::net::Source::parse(&source)
                .is_some_and(|s| block.contains(s.block().network()));
            if covered {
                sqlx::query("UPDATE sip_bans SET lifted_at = $1, lifted_by = $2 WHERE id = $3")
                    .bind(now)
                    .bind(by.actor.label())
                    .bind(ban.try_get::<i64, _>("id")?)
                    .execute(tx.conn())
                    .await?;
            }
        }
        audit::record(
            &mut tx,
            by,
            Event {
                action: "allow_sip_source",
                object_type: "sip_allowed_source",
                object_id: Some(id),
                reseller,
                customer,
                details: serde_json::json!({ "block": block.to_string(), "note": new.note.trim() }),
            },
        )
        .await?;
        tx.changed(Change::Guard);
        tx.commit().await?;
        self.get(by, id).await
    }

    /// Removes an entry the caller may see (customers' entries: their
    /// administrators, their reseller; the operator's: the operator).
    pub async fn remove(&self, by: &Principal, id: i64) -> Result<()> {
        let entry = self.get(by, id).await?;
        by.may_write(if entry.customer_id.is_some() {
            Level::Customer
        } else {
            Level::Operator
        })?;
        let mut tx = self.0.begin().await?;
        sqlx::query("DELETE FROM sip_allowed_sources WHERE id = $1")
            .bind(id)
            .execute(tx.conn())
            .await?;
        audit::record(
            &mut tx,
            by,
            Event {
                action: "remove_allowed_sip_source",
                object_type: "sip_allowed_source",
                object_id: Some(id),
                reseller: entry.reseller_id,
                customer: entry.customer_id,
                details: serde_json::json!({ "block": entry.block }),
            },
        )
        .await?;
        tx.changed(Change::Guard);
        tx.commit().await
    }

    /// Every entry (the system, for the SIP nodes).
    pub(crate) async fn for_nodes(
        &self,
        by: &Principal,
    ) -> Result<Vec<(Option<CustomerId>, Block)>> {
        by.may_read(Level::Operator)?;
        let rows = sqlx::query("SELECT customer_id, block FROM sip_allowed_sources ORDER BY id")
            .fetch_all(self.0.pool())
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let text: String = row.try_get("block")?;
            if let Some(block) = Block::parse(&text) {
                out.push((
                    row.try_get::<Option<i64>, _>("customer_id")?
                        .map(CustomerId),
                    block,
                ));
            }
        }
        Ok(out)
    }
}
