//! Accounts protected against a password guess from many sources: written
//! by the SIP node that saw the guesses, shown to the customer's and the
//! reseller's administrators (who may lift it), told to them by e-mail once.

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;

use super::ProtectionInForce;
use crate::audit::{self, Event};
use crate::changes::Change;
use crate::principal::Level;
use crate::{CustomerId, DeviceId, Millis, Principal, ResellerId, Result, Store, StoreError};

/// A claimed e-mail not confirmed sent by then may be claimed again.
const NOTIFY_LEASE_MS: Millis = 5 * 60_000;
/// Rows are kept this long after the protection ended.
const KEEP_MS: Millis = 90 * 24 * 3600 * 1000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AccountProtection {
    pub id: i64,
    pub reseller_id: ResellerId,
    pub customer_id: CustomerId,
    pub device_id: DeviceId,
    /// The device's SIP user name (the account guessed at).
    pub sip_user: String,
    /// Wrong passwords seen, and from how many addresses.
    pub failures: u32,
    pub sources: u32,
    pub since: Millis,
    pub until: Millis,
    pub lifted_at: Option<Millis>,
    pub lifted_by: Option<String>,
    /// Still in force.
    pub active: bool,
}

/// A protection a SIP node decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewProtection {
    pub reseller: ResellerId,
    pub customer: CustomerId,
    pub device: DeviceId,
    pub sip_user: String,
    pub failures: u32,
    pub sources: u32,
    pub node_id: String,
    pub since: Millis,
    pub until: Millis,
}

const COLUMNS: &str =
    "id, reseller_id, customer_id, device_id, sip_user, failures, sources, since, \
    until, lifted_at, lifted_by";

fn from_row(row: &AnyRow, now: Millis) -> Result<AccountProtection, sqlx::Error> {
    let count = |name: &str| -> Result<u32, sqlx::Error> {
        Ok(u32::try_from(row.try_get::<i64, _>(name)?).unwrap_or(u32::MAX))
    };
    let until: Millis = row.try_get("until")?;
    let lifted_at: Option<Millis> = row.try_get("lifted_at")?;
    Ok(AccountProtection {
        id: row.try_get("id")?,
        reseller_id: ResellerId(row.try_get("reseller_id")?),
        customer_id: CustomerId(row.try_get("customer_id")?),
        device_id: DeviceId(row.try_get("device_id")?),
        sip_user: row.try_get("sip_user")?,
        failures: count("failures")?,
        sources: count("sources")?,
        since: row.try_get("since")?,
        until,
        lifted_at,
        lifted_by: row.try_get("lifted_by")?,
        active: lifted_at.is_none() && until > now,
    })
}

pub struct AccountProtections<'s>(pub(crate) &'s Store);

impl AccountProtections<'_> {
    /// Stores a node's protection (the system), with its audit entry, and
    /// tells every node. A device deleted meanwhile is skipped (Ok(None)).
    pub async fn record(&self, by: &Principal, p: &NewProtection) -> Result<Option<i64>> {
        by.may_write(Level::Operator)?;
        let mut tx = self.0.begin().await?;
        let exists = sqlx::query("SELECT 1 AS one FROM devices WHERE id = $1 AND customer_id = $2")
            .bind(p.device.0)
            .bind(p.customer.0)
            .fetch_optional(tx.conn())
            .await?
            .is_some();
        if !exists {
            return Ok(None);
        }
        let row = sqlx::query(
            "INSERT INTO sip_account_protections (reseller_id, customer_id, device_id, sip_user, \
             failures, sources, node_id, since, until) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
        )
        .bind(p.reseller.0)
        .bind(p.customer.0)
        .bind(p.device.0)
        .bind(crate::validate::clip(&p.sip_user, 64))
        .bind(i64::from(p.failures))
        .bind(i64::from(p.sources))
        .bind(crate::validate::clip(&p.node_id, 100))
        .bind(p.since)
        .bind(p.until)
        .fetch_one(tx.conn())
        .await?;
        let id: i64 = row.try_get("id")?;
        audit::record(
            &mut tx,
            by,
            Event {
                action: "protect_sip_account",
                object_type: "device",
                object_id: Some(p.device.0),
                reseller: Some(p.reseller),
                customer: Some(p.customer),
                details: serde_json::json!({
                    "protection_id": id,
                    "sip_user": p.sip_user,
                    "failures": p.failures,
                    "sources": p.sources,
                    "until": p.until,
                }),
            },
        )
        .await?;
        sqlx::query("DELETE FROM sip_account_protections WHERE until < $1")
            .bind(p.since - KEEP_MS)
            .execute(tx.conn())
            .await?;
        tx.changed(Change::Guard);
        tx.commit().await?;
        Ok(Some(id))
    }

    /// The newest first, at most `limit`; only those in force when
    /// `active_only`; of one customer when `customer` is given. Scoped: a
    /// reseller sees its customers', a customer its own.
    pub async fn list(
        &self,
        by: &Principal,
        customer: Option<CustomerId>,
        active_only: bool,
        limit: i64,
    ) -> Result<Vec<AccountProtection>> {
        by.may_read(Level::Customer)?;
        if let Some(c) = customer {
            self.0.customers().get(by, c).await?;
        }
        let now = crate::now_ms();
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM sip_account_protections \
             WHERE ($1 IS NULL OR reseller_id = $1) AND ($2 IS NULL OR customer_id = $2) \
               AND ($3 IS NULL OR customer_id = $3) \
               AND ($4 = 0 OR (lifted_at IS NULL AND until > $5)) \
             ORDER BY id DESC LIMIT $6"
        ))
        .bind(by.scope.reseller_param())
        .bind(by.scope.customer_param())
        .bind(customer.map(|c| c.0))
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

    /// How many protections in force the caller sees (the console's banner).
    pub async fn count_active(&self, by: &Principal) -> Result<i64> {
        by.may_read(Level::Customer)?;
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM sip_account_protections \
             WHERE ($1 IS NULL OR reseller_id = $1) AND ($2 IS NULL OR customer_id = $2) \
               AND lifted_at IS NULL AND until > $3",
        )
        .bind(by.scope.reseller_param())
        .bind(by.scope.customer_param())
        .bind(crate::now_ms())
        .fetch_one(self.0.pool())
        .await?;
        Ok(row.try_get("n")?)
    }

    pub async fn get(&self, by: &Principal, id: i64) -> Result<AccountProtection> {
        by.may_read(Level::Customer)?;
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM sip_account_protections WHERE id = $1 \
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

    /// Ends a protection early (the customer's administrators, its
    /// reseller, the operator): the account registers from anywhere again.
    pub async fn lift(&self, by: &Principal, id: i64) -> Result<AccountProtection> {
        let p = self.get(by, id).await?;
        by.may_write(Level::Customer)?;
        if !p.active {
            return Err(StoreError::Conflict(
                "the protection is no longer in force".into(),
            ));
        }
        let mut tx = self.0.begin().await?;
        sqlx::query(
            "UPDATE sip_account_protections SET lifted_at = $1, lifted_by = $2 \
             WHERE id = $3 AND lifted_at IS NULL",
        )
        .bind(crate::now_ms())
        .bind(by.actor.label())
        .bind(id)
        .execute(tx.conn())
        .await?;
        audit::record(
            &mut tx,
            by,
            Event {
                action: "lift_sip_account_protection",
                object_type: "device",
                object_id: Some(p.device_id.0),
                reseller: Some(p.reseller_id),
                customer: Some(p.customer_id),
                details: serde_json::json!({ "protection_id": id, "sip_user": p.sip_user }),
            },
        )
        .await?;
        tx.changed(Change::Guard);
        tx.commit().await?;
        self.get(by, id).await
    }

    /// Protections in force (the system, for the SIP nodes).
    pub(crate) async fn for_nodes(
        &self,
        by: &Principal,
        now: Millis,
    ) -> Result<Vec<ProtectionInForce>> {
        by.may_read(Level::Operator)?;
        let rows = sqlx::query(
            "SELECT device_id, customer_id, sip_user, until FROM sip_account_protections \
             WHERE lifted_at IS NULL AND until > $1 ORDER BY id",
        )
        .bind(now)
        .fetch_all(self.0.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(ProtectionInForce {
                    device: DeviceId(row.try_get("device_id")?),
                    customer: CustomerId(row.try_get("customer_id")?),
                    sip_user: row.try_get("sip_user")?,
                    until: row.try_get("until")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    /// Claims protections in force whose e-mail has not gone out (the
    /// system): each is claimed by one node at a time, for a few minutes.
    pub async fn claim_unnotified(
        &self,
        by: &Principal,
        now: Millis,
    ) -> Result<Vec<AccountProtection>> {
        by.may_write(Level::Operator)?;
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM sip_account_protections \
             WHERE notified_at IS NULL AND lifted_at IS NULL AND until > $1 \
               AND (notify_claimed_at IS NULL OR notify_claimed_at < $2) ORDER BY id LIMIT 20"
        ))
        .bind(now)
        .bind(now - NOTIFY_LEASE_MS)
        .fetch_all(self.0.pool())
        .await?;
        let mut claimed = Vec::new();
        for row in &rows {
            let p = from_row(row, now)?;
            let won = sqlx::query(
                "UPDATE sip_account_protections SET notify_claimed_at = $1 \
                 WHERE id = $2 AND notified_at IS NULL AND (notify_claimed_at IS NULL OR notify_claimed_at < $3)",
            )
            .bind(now)
            .bind(p.id)
            .bind(now - NOTIFY_LEASE_MS)
            .execute(self.0.pool())
            .await?
            .rows_affected()
                == 1;
            if won {
                claimed.push(p);
            }
        }
        Ok(claimed)
    }

    /// The e-mail of a claimed protection went out (or there was nobody to tell).
    pub async fn notified(&self, by: &Principal, id: i64, now: Millis) -> Result<()> {
        by.may_write(Level::Operator)?;
        sqlx::query("UPDATE sip_account_protections SET notified_at = $1 WHERE id = $2")
            .bind(now)
            .bind(id)
            .execute(self.0.pool())
            .await?;
        Ok(())
    }
}
