//! Calls carriers delivered for numbers no customer holds: refused with 404
//! by the proxy and kept here for the operator, who alone may read them
//! (they belong to no customer, so they cannot be call records).

use serde::Serialize;
use sqlx::Row;

use crate::principal::Level;
use crate::{Millis, Principal, Result, Store, TrunkId};

/// Rows kept; older ones are removed as new ones come.
const KEEP_DAYS: i64 = 90;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UnroutedCall {
    pub trunk_id: Option<TrunkId>,
    pub call_id: String,
    pub caller: String,
    /// The number as the carrier sent it.
    pub called: String,
    /// The carrier's address.
    pub source: String,
    pub sip_status: i64,
    pub node_id: String,
    pub at: Millis,
}

pub struct UnroutedCalls<'s>(pub(crate) &'s Store);

impl UnroutedCalls<'_> {
    /// Keeps one (the SIP side, as the system), and forgets rows past
    /// [`KEEP_DAYS`].
    pub async fn record(&self, by: &Principal, call: &UnroutedCall) -> Result<()> {
        by.may_write(Level::Operator)?;
        let mut tx = self.0.begin().await?;
        sqlx::query(
            "INSERT INTO unrouted_calls (trunk_id, call_id, caller, called, source, sip_status, node_id, at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(call.trunk_id.map(|t| t.0))
        .bind(crate::validate::clip(&call.call_id, 200))
        .bind(crate::validate::clip(&call.caller, 100))
        .bind(crate::validate::clip(&call.called, 100))
        .bind(&call.source)
        .bind(call.sip_status)
        .bind(&call.node_id)
        .bind(call.at)
        .execute(tx.conn())
        .await?;
        sqlx::query("DELETE FROM unrouted_calls WHERE at < $1")
            .bind(call.at - KEEP_DAYS * 86_400_000)
            .execute(tx.conn())
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The latest first, at most `limit` (operator only).
    pub async fn list(&self, by: &Principal, limit: i64) -> Result<Vec<UnroutedCall>> {
        by.may_read(Level::Operator)?;
        if !matches!(by.scope, crate::Scope::Operator) {
            return Err(crate::StoreError::NotFound);
        }
        let rows = sqlx::query(
            "SELECT trunk_id, call_id, caller, called, source, sip_status, node_id, at \
             FROM unrouted_calls ORDER BY at DESC, id DESC LIMIT $1",
        )
        .bind(limit.clamp(1, 1000))
        .fetch_all(self.0.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(UnroutedCall {
                    trunk_id: row.try_get::<Option<i64>, _>("trunk_id")?.map(TrunkId),
                    call_id: row.try_get("call_id")?,
                    caller: row.try_get("caller")?,
                    called: row.try_get("called")?,
                    source: row.try_get("source")?,
                    sip_status: row.try_get("sip_status")?,
                    node_id: row.try_get("node_id")?,
                    at: row.try_get("at")?,
                })
            })
            .collect::<std::result::Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{TestDb, TwoTenants};

    async fn only_the_operator_reads_unrouted_calls(db: TestDb) {
        let t = TwoTenants::create(&db.store).await;
        let sys = Principal::system();
        let call = UnroutedCall {
            trunk_id: None,
            call_id: "x@carrier".into(),
            caller: "+4989123".into(),
            called: "+49301111111".into(),
            source: "127.0.0.2:5060".into(),
            sip_status: 404,
            node_id: "n1".into(),
            at: crate::now_ms(),
        };
        db.store.unrouted_calls().record(&sys, &call).await.unwrap();
        assert!(db
            .store
            .unrouted_calls()
            .record(&t.reseller_x_admin, &call)
            .await
            .is_err());
        assert_eq!(
            db.store.unrouted_calls().list(&sys, 10).await.unwrap(),
            vec![call]
        );
        for by in [&t.reseller_x_admin, &t.customer_a_admin] {
            assert!(db.store.unrouted_calls().list(by, 10).await.is_err());
        }
    }

    crate::both_engines!(only_the_operator_reads_unrouted_calls);
}
