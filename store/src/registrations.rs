//! SIP registrations as stored behind the proxy's in-memory location service:
//! written in batches, off the SIP path, and read back when a proxy node
//! restarts. Platform-internal: only the operator scope (the proxy itself)
//! reads or writes them; tenants see registrations through the proxy's events
//! and the API's read views.

use sqlx::any::AnyRow;
use sqlx::Row;

use crate::principal::Level;
use crate::rows::{param_list, placeholders};
use crate::{CustomerId, DeviceId, ExtensionId, Millis, Principal, Result, Store, StoreError};

/// One binding of one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBinding {
    pub customer_id: CustomerId,
    pub extension_id: ExtensionId,
    pub device_id: DeviceId,
    pub binding_key: String,
    pub contact: String,
    pub instance_id: Option<String>,
    pub reg_id: Option<i64>,
    pub transport: String,
    pub source: String,
    pub local: String,
    pub node_id: String,
    pub path: Option<String>,
    pub call_id: String,
    pub cseq: i64,
    pub q_milli: i64,
    pub user_agent: Option<String>,
    pub expires_at: Millis,
    pub updated_at: Millis,
}

const COLUMNS: &str =
    "customer_id, extension_id, device_id, binding_key, contact, instance_id, reg_id, transport, \
    source, local, node_id, path, call_id, cseq, q_milli, user_agent, expires_at, updated_at";
const ARITY: usize = 18;
/// Rows per statement (SQLite takes at most 32,766 parameters).
const CHUNK: usize = 64;

fn from_row(row: &AnyRow) -> Result<StoredBinding, sqlx::Error> {
    Ok(StoredBinding {
        customer_id: CustomerId(row.try_get("customer_id")?),
        extension_id: ExtensionId(row.try_get("extension_id")?),
        device_id: DeviceId(row.try_get("device_id")?),
        binding_key: row.try_get("binding_key")?,
        contact: row.try_get("contact")?,
        instance_id: row.try_get("instance_id")?,
        reg_id: row.try_get("reg_id")?,
        transport: row.try_get("transport")?,
        source: row.try_get("source")?,
        local: row.try_get("local")?,
        node_id: row.try_get("node_id")?,
        path: row.try_get("path")?,
        call_id: row.try_get("call_id")?,
        cseq: row.try_get("cseq")?,
        q_milli: row.try_get("q_milli")?,
        user_agent: row.try_get("user_agent")?,
        expires_at: row.try_get("expires_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

pub struct Registrations<'s>(pub(crate) &'s Store);

impl Registrations<'_> {
    /// Makes the stored bindings of `devices` exactly `bindings` (which must
    /// all belong to those devices). Devices deleted meanwhile are skipped.
    pub async fn replace(
        &self,
        by: &Principal,
        devices: &[DeviceId],
        bindings: &[StoredBinding],
    ) -> Result<()> {
        by.may_write(Level::Operator)?;
        if devices.is_empty() {
            return Ok(());
        }
        let mut tx = self.0.begin().await?;
        for chunk in devices.chunks(CHUNK) {
            let sql = format!(
                "DELETE FROM registrations WHERE device_id IN ({})",
                param_list(self.0.engine(), 1, chunk.len())
            );
            let mut q = sqlx::query(&sql);
            for d in chunk {
                q = q.bind(d.0);
            }
            q.execute(tx.conn()).await?;
        }
        // Only devices that still exist: a device deleted while its phone was
        // registering must not fail the whole batch.
        let mut live = std::collections::HashSet::new();
        for chunk in devices.chunks(CHUNK) {
            let sql = format!(
                "SELECT id FROM devices WHERE id IN ({})",
                param_list(self.0.engine(), 1, chunk.len())
            );
            let mut q = sqlx::query(&sql);
            for d in chunk {
                q = q.bind(d.0);
            }
            for row in q.fetch_all(tx.conn()).await? {
                live.insert(row.try_get::<i64, _>("id")?);
            }
        }
        let rows: Vec<&StoredBinding> = bindings
            .iter()
            .filter(|b| live.contains(&b.device_id.0))
            .collect();
        for chunk in rows.chunks(CHUNK) {
            let sql = format!(
                "INSERT INTO registrations ({COLUMNS}) VALUES {}",
                placeholders(self.0.engine(), chunk.len(), ARITY)
            );
            let mut q = sqlx::query(&sql);
            for b in chunk {
                q = q
                    .bind(b.customer_id.0)
                    .bind(b.extension_id.0)
                    .bind(b.device_id.0)
                    .bind(&b.binding_key)
                    .bind(&b.contact)
                    .bind(&b.instance_id)
                    .bind(b.reg_id)
                    .bind(&b.transport)
                    .bind(&b.source)
                    .bind(&b.local)
                    .bind(&b.node_id)
                    .bind(&b.path)
                    .bind(&b.call_id)
                    .bind(b.cseq)
                    .bind(b.q_milli)
                    .bind(&b.user_agent)
                    .bind(b.expires_at)
                    .bind(b.updated_at);
            }
            q.execute(tx.conn()).await?;
        }
        tx.commit().await
    }

    /// The unexpired bindings a node holds (what it serves after a restart).
    pub async fn load_for_node(
        &self,
        by: &Principal,
        node_id: &str,
        now: Millis,
    ) -> Result<Vec<StoredBinding>> {
        by.may_read(Level::Operator)?;
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM registrations WHERE node_id = $1 AND expires_at > $2 ORDER BY device_id, binding_key"
        ))
        .bind(node_id)
        .bind(now)
        .fetch_all(self.0.pool())
        .await?;
        rows.iter()
            .map(from_row)
            .collect::<Result<_, _>>()
            .map_err(StoreError::from)
    }

    /// Every unexpired binding of one customer (for read views).
    pub async fn for_customer(
        &self,
        by: &Principal,
        customer: CustomerId,
        now: Millis,
    ) -> Result<Vec<StoredBinding>> {
        if by.scope.customer().is_some_and(|c| c != customer) {
            return Ok(Vec::new());
        }
        by.may_read(Level::Customer)?;
        let rows = sqlx::query(&format!(
            "SELECT r.{} FROM registrations r JOIN customers c ON c.id = r.customer_id \
             WHERE r.customer_id = $1 AND r.expires_at > $2 AND ($3 IS NULL OR c.reseller_id = $3) ORDER BY r.device_id",
            COLUMNS.replace(", ", ", r.")
        ))
        .bind(customer.0)
        .bind(now)
        .bind(by.scope.reseller_param())
        .fetch_all(self.0.pool())
        .await?;
        rows.iter()
            .map(from_row)
            .collect::<Result<_, _>>()
            .map_err(StoreError::from)
    }

    /// Removes bindings that expired before `now`.
    pub async fn delete_expired(&self, by: &Principal, now: Millis) -> Result<u64> {
        by.may_write(Level::Operator)?;
        Ok(
            sqlx::query("DELETE FROM registrations WHERE expires_at <= $1")
                .bind(now)
                .execute(self.0.pool())
                .await?
                .rows_affected(),
        )
    }
}
