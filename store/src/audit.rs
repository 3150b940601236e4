//! The audit log: who changed what and when. Every write of a store module
//! appends its entry in the same transaction as the change itself.

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::db::Tx;
use crate::{Actor, CustomerId, Millis, Principal, ResellerId, Result, Store};

/// One entry of the audit log.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEntry {
    pub id: i64,
    pub at: Millis,
    pub actor: String,
    pub reseller_id: Option<ResellerId>,
    pub customer_id: Option<CustomerId>,
    pub action: String,
    pub object_type: String,
    pub object_id: Option<i64>,
    pub details: serde_json::Value,
}

/// What a write did, for the log.
pub(crate) struct Event<'a> {
    pub action: &'a str,
    pub object_type: &'a str,
    pub object_id: Option<i64>,
    /// Whose scope the entry belongs to.
    pub reseller: Option<ResellerId>,
    pub customer: Option<CustomerId>,
    pub details: serde_json::Value,
}

pub(crate) async fn record(tx: &mut Tx<'_>, by: &Principal, event: Event<'_>) -> Result<()> {
    let (login_id, token_id) = match &by.actor {
        Actor::Login { id, .. } => (Some(id.0), None),
        Actor::Token { id, .. } => (None, Some(id.0)),
        Actor::Cli | Actor::System => (None, None),
    };
    sqlx::query(
        "INSERT INTO audit_log (at, actor, actor_login_id, actor_token_id, reseller_id, \
         customer_id, action, object_type, object_id, details) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(crate::now_ms())
    .bind(by.actor.label())
    .bind(login_id)
    .bind(token_id)
    .bind(event.reseller.map(|r| r.0))
    .bind(event.customer.map(|c| c.0))
    .bind(event.action)
    .bind(event.object_type)
    .bind(event.object_id)
    .bind(event.details.to_string())
    .execute(tx.conn())
    .await?;
    Ok(())
}

/// Reads the audit log within a caller's scope.
pub struct Audit<'s>(pub(crate) &'s Store);

impl Audit<'_> {
    /// The newest entries first, at most `limit`, older than `before_id` if given.
    /// A reseller sees its own entries and its customers'; a customer its own.
    pub async fn list(
        &self,
        by: &Principal,
        before_id: Option<i64>,
        limit: i64,
    ) -> Result<Vec<AuditEntry>> {
        by.may_read(crate::principal::Level::Customer)?;
        let rows = sqlx::query(
            "SELECT id, at, actor, reseller_id, customer_id, action, object_type, object_id, details \
             FROM audit_log \
             WHERE ($1 IS NULL OR reseller_id = $1) AND ($2 IS NULL OR customer_id = $2) \
               AND ($3 IS NULL OR id < $3) \
             ORDER BY id DESC LIMIT $4",
        )
        .bind(by.scope.reseller_param())
        .bind(by.scope.customer_param())
        .bind(before_id)
        .bind(limit.clamp(1, 1000))
        .fetch_all(self.0.pool())
        .await?;
        rows.iter()
            .map(entry)
            .collect::<Result<_, _>>()
            .map_err(Into::into)
    }
}

fn entry(row: &AnyRow) -> Result<AuditEntry, sqlx::Error> {
    let details: String = row.try_get("details")?;
    Ok(AuditEntry {
        id: row.try_get("id")?,
        at: row.try_get("at")?,
        actor: row.try_get("actor")?,
        reseller_id: row
            .try_get::<Option<i64>, _>("reseller_id")?
            .map(ResellerId),
        customer_id: row
            .try_get::<Option<i64>, _>("customer_id")?
            .map(CustomerId),
        action: row.try_get("action")?,
        object_type: row.try_get("object_type")?,
        object_id: row.try_get("object_id")?,
        details: serde_json::from_str(&details).unwrap_or(serde_json::Value::Null),
    })
}
