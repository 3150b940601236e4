//! Call recording: which of a customer's extensions and numbers have their
//! calls recorded, how long the customer keeps recordings, and the
//! recordings. Off by default (in Germany the parties must consent; they
//! hear an announcement before anything is recorded). The SIP node's relay
//! writes the audio into the [`AudioFiles`](crate::audio_files) store; the
//! recording's row is written with its call's record, in the same
//! transaction, so a recording is never listed without its call nor lost
//! when the call's record survives a crash. Customer administrators (and
//! those above them) list, hear and delete recordings; a customer's user
//! those of its own extension's calls. Recordings past the retention are
//! removed by the control plane's sweeper ([`CallRecordings::expired`]).

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::audit::{self, Event};
use crate::call_records::NewCallRecord;
use crate::changes::Change;
use crate::principal::Level;
use crate::validate::Checker;
use crate::{
    CustomerId, ExtensionId, Millis, NumberId, Principal, ResellerId, Result, Store, StoreError,
};

pub const DEFAULT_RETENTION_DAYS: u32 = 90;
/// Recordings shorter than this are not listed.
const SHORTEST_MS: Millis = 1000;
const DAY_MS: i64 = 86_400_000;

/// A customer's recording policy: whose calls are recorded and how long
/// the recordings are kept.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RecordingPolicy {
    /// Days a recording is kept (1-3650), counted from the call's end.
    pub retention_days: u32,
    /// Extensions whose calls (made or answered) are recorded.
    pub extensions: Vec<ExtensionId>,
    /// Phone numbers whose incoming calls are recorded.
    pub numbers: Vec<NumberId>,
}

/// One recorded call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CallRecording {
    pub id: i64,
    pub reseller_id: ResellerId,
    pub customer_id: CustomerId,
    /// The Call-ID of the call (its record carries the same).
    pub call_id: String,
    pub caller: String,
    pub callee: String,
    pub caller_extension_id: Option<ExtensionId>,
    pub callee_extension_id: Option<ExtensionId>,
    /// When recording began (after the announcement), ms since the epoch.
    pub started_at: Millis,
    pub duration_ms: i64,
}

/// The recording of a call, as its record carries it to the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewRecording {
    /// The key of its audio in the audio store.
    pub audio: String,
    pub started_at: Millis,
}

const COLUMNS: &str = "r.id, r.reseller_id, r.customer_id, r.call_id, r.caller, r.callee, \
    r.caller_extension_id, r.callee_extension_id, r.started_at, r.duration_ms, r.audio";

/// Recordings the caller's scope may see ($1 reseller, $2 customer, $3 the
/// extension of a customer's user: calls it made or answered).
const SCOPED: &str = "FROM call_recordings r \
    WHERE ($1 IS NULL OR r.reseller_id = $1) AND ($2 IS NULL OR r.customer_id = $2) \
    AND ($3 IS NULL OR r.caller_extension_id = $3 OR r.callee_extension_id = $3)";

fn from_row(row: &AnyRow) -> Result<(CallRecording, String), sqlx::Error> {
    Ok((
        CallRecording {
            id: row.try_get("id")?,
            reseller_id: ResellerId(row.try_get("reseller_id")?),
            customer_id: CustomerId(row.try_get("customer_id")?),
            call_id: row.try_get("call_id")?,
            caller: row.try_get("caller")?,
            callee: row.try_get("callee")?,
            caller_extension_id: row
                .try_get::<Option<i64>, _>("caller_extension_id")?
                .map(ExtensionId),
            callee_extension_id: row
                .try_get::<Option<i64>, _>("callee_extension_id")?
                .map(ExtensionId),
            started_at: row.try_get("started_at")?,
            duration_ms: row.try_get("duration_ms")?,
        },
        row.try_get("audio")?,
    ))
}

/// Writes the recordings of the records just stored (`inserted` holds
/// their uids: a record stored before brings its recording no second time).
pub(crate) async fn insert_with_records(
    conn: &mut sqlx::AnyConnection,
    records: &[NewCallRecord],
    inserted: &std::collections::HashSet<String>,
) -> Result<()> {
    for r in records {
        let Some(rec) = &r.recording else { continue };
        // A call that ended during (or just after) the announcement
        // recorded nothing worth keeping.
        if !inserted.contains(&r.record_uid) || r.end_at - rec.started_at < SHORTEST_MS {
            continue;
        }
        sqlx::query(
            "INSERT INTO call_recordings (record_uid, call_id, reseller_id, customer_id, caller, callee, \
             caller_extension_id, callee_extension_id, started_at, duration_ms, audio) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
             ON CONFLICT (record_uid) DO NOTHING",
        )
        .bind(&r.record_uid)
        .bind(crate::validate::clip(&r.call_id, 256))
        .bind(r.reseller_id.0)
        .bind(r.customer_id.0)
        .bind(&r.caller)
        .bind(&r.callee)
        .bind(r.caller_extension_id.map(|e| e.0))
        .bind(r.callee_extension_id.map(|e| e.0))
        .bind(rec.started_at)
        .bind((r.end_at - rec.started_at).max(0))
        .bind(&rec.audio)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

pub struct CallRecordings<'s>(pub(crate) &'s Store);

impl CallRecordings<'_> {
    /// A customer's policy (what its administrators see and set).
    pub async fn policy(&self, by: &Principal, customer: CustomerId) -> Result<RecordingPolicy> {
        by.may_read(Level::Customer)?;
        self.0.customers().get(by, customer).await?;
        let pool = self.0.pool();
        let retention = sqlx::query("SELECT recording_retention_days FROM customers WHERE id = $1")
            .bind(customer.0)
            .fetch_one(pool)
            .await?
            .try_get::<i64, _>("recording_retention_days")?;
        let extensions = sqlx::query(
            "SELECT id FROM extensions WHERE customer_id = $1 AND record_calls = 1 \
             AND deleted_at IS NULL ORDER BY id",
        )
        .bind(customer.0)
        .fetch_all(pool)
        .await?
        .iter()
        .map(|r| r.try_get("id").map(ExtensionId))
        .collect::<Result<_, _>>()?;
        let numbers = sqlx::query(
            "SELECT id FROM phone_numbers WHERE customer_id = $1 AND record_calls = 1 ORDER BY id",
        )
        .bind(customer.0)
        .fetch_all(pool)
        .await?
        .iter()
        .map(|r| r.try_get("id").map(NumberId))
        .collect::<Result<_, _>>()?;
        Ok(RecordingPolicy {
            retention_days: u32::try_from(retention).unwrap_or(DEFAULT_RETENTION_DAYS),
            extensions,
            numbers,
        })
    }

    /// Replaces a customer's policy (its administrators and those above).
    /// Every extension and number named must be the customer's.
    pub async fn set_policy(
        &self,
        by: &Principal,
        customer: CustomerId,
        policy: &RecordingPolicy,
    ) -> Result<RecordingPolicy> {
        by.may_write(Level::Customer)?;
        let owner = self.0.customers().get(by, customer).await?;
        let mut check = Checker::new();
        check
            .check(
                (1..=3650).contains(&policy.retention_days),
                "retention_days",
                "must be 1 to 3650 days",
            )
            .check(
                policy.extensions.len() <= 10_000,
                "extensions",
                "must name at most 10000 extensions",
            )
            .check(
                policy.numbers.len() <= 10_000,
                "numbers",
                "must name at most 10000 numbers",
            );
        check.finish()?;
        let mut tx = self.0.begin().await?;
        sqlx::query("UPDATE customers SET recording_retention_days = $1 WHERE id = $2")
            .bind(i64::from(policy.retention_days))
            .bind(customer.0)
            .execute(tx.conn())
            .await?;
        sqlx::query("UPDATE extensions SET record_calls = 0 WHERE customer_id = $1")
            .bind(customer.0)
            .execute(tx.conn())
            .await?;
        sqlx::query("UPDATE phone_numbers SET record_calls = 0 WHERE customer_id = $1")
            .bind(customer.0)
            .execute(tx.conn())
            .await?;
        let mut check = Checker::new();
        for e in &policy.extensions {
            let done = sqlx::query(
                "UPDATE extensions SET record_calls = 1 \
                 WHERE id = $1 AND customer_id = $2 AND deleted_at IS NULL",
            )
            .bind(e.0)
            .bind(customer.0)
            .execute(tx.conn())
            .await?;
            check.check(
                done.rows_affected() == 1,
                "extensions",
                "must be extensions of this customer",
            );
        }
        for n in &policy.numbers {
            let done = sqlx::query(
                "UPDATE phone_numbers SET record_calls = 1 WHERE id = $1 AND customer_id = $2",
            )
            .bind(n.0)
            .bind(customer.0)
            .execute(tx.conn())
            .await?;
            check.check(
                done.rows_affected() == 1,
                "numbers",
                "must be numbers assigned to this customer",
            );
        }
        // Nothing is written when one of them is not the customer's.
        check.finish()?;
        audit::record(
            &mut tx,
            by,
            Event {
                action: "set_recording_policy",
                object_type: "customer",
                object_id: Some(customer.0),
                reseller: Some(owner.reseller_id),
                customer: Some(customer),
                details: serde_json::to_value(policy).unwrap_or_default(),
            },
        )
        .await?;
        tx.changed(Change::Customer { customer });
        tx.changed(Change::Numbers);
        tx.commit().await?;
        self.policy(by, customer).await
    }

    /// A customer's recordings, newest first: at most `limit`, those
    /// stored before recording `before` (a page's cursor) if given.
    pub async fn list(
        &self,
        by: &Principal,
        customer: CustomerId,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<CallRecording>> {
        self.0.customers().get(by, customer).await?;
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} {SCOPED} AND r.customer_id = $4 AND ($5 IS NULL OR r.id < $5) \
             ORDER BY r.id DESC LIMIT $6"
        ))
        .bind(by.scope.reseller_param())
        .bind(by.scope.customer_param())
        .bind(by.scope.extension_param())
        .bind(customer.0)
        .bind(before)
        .bind(i64::from(limit.clamp(1, 1001)))
        .fetch_all(self.0.pool())
        .await?;
        rows.iter()
            .map(|r| Ok(from_row(r)?.0))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// One recording and the key of its audio.
    pub async fn get(&self, by: &Principal, id: i64) -> Result<(CallRecording, String)> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} {SCOPED} AND r.id = $4"))
            .bind(by.scope.reseller_param())
            .bind(by.scope.customer_param())
            .bind(by.scope.extension_param())
            .bind(id)
            .fetch_optional(self.0.pool())
            .await?
            .ok_or(StoreError::NotFound)?;
        Ok(from_row(&row)?)
    }

    /// Deletes a recording (the customer's administrators and above);
    /// returns its audio key, for the audio to go too.
    pub async fn delete(&self, by: &Principal, id: i64) -> Result<String> {
        by.may_write(Level::Customer)?;
        let (r, audio) = self.get(by, id).await?;
        let mut tx = self.0.begin().await?;
        sqlx::query("DELETE FROM call_recordings WHERE id = $1")
            .bind(r.id)
            .execute(tx.conn())
            .await?;
        audit::record(
            &mut tx,
            by,
            Event {
                action: "delete_call_recording",
                object_type: "call_recording",
                object_id: Some(r.id),
                reseller: Some(r.reseller_id),
                customer: Some(r.customer_id),
                details: serde_json::json!({
                    "call_id": r.call_id,
                    "started_at": r.started_at,
                }),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(audio)
    }

    /// Removes up to `limit` recordings whose customer's retention has run
    /// out by `now` (the system only); returns their audio keys, for the
    /// files to go too.
    pub async fn remove_expired(
        &self,
        by: &Principal,
        now: Millis,
        limit: u32,
    ) -> Result<Vec<String>> {
        by.may_write(Level::Operator)?;
        let mut tx = self.0.begin().await?;
        let rows = sqlx::query(
            "SELECT r.id, r.audio FROM call_recordings r JOIN customers c ON c.id = r.customer_id \
             WHERE r.started_at + r.duration_ms + c.recording_retention_days * $2 < $1 \
             ORDER BY r.started_at LIMIT $3",
        )
        .bind(now)
        .bind(DAY_MS)
        .bind(i64::from(limit.max(1)))
        .fetch_all(tx.conn())
        .await?;
        let mut keys = Vec::with_capacity(rows.len());
        for row in &rows {
            let id: i64 = row.try_get("id")?;
            sqlx::query("DELETE FROM call_recordings WHERE id = $1")
                .bind(id)
                .execute(tx.conn())
                .await?;
            keys.push(row.try_get("audio")?);
        }
        tx.commit().await?;
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{answered_call, TestDb, TwoTenants};

    async fn policy_records_and_retention(db: TestDb) {
        let t = TwoTenants::create(&db.store).await;
        let rec = db.store.call_recordings();
        let sys = Principal::system();
        let a = t.customer_a.id;
        // Off by default, 90 days.
        let p = rec.policy(&t.customer_a_admin, a).await.unwrap();
        assert_eq!(
            p,
            RecordingPolicy {
                retention_days: DEFAULT_RETENTION_DAYS,
                ..Default::default()
            }
        );
        let wanted = RecordingPolicy {
            retention_days: 7,
            extensions: vec![t.extension_a.id],
            numbers: vec![],
        };
        assert_eq!(
            rec.set_policy(&t.customer_a_admin, a, &wanted)
                .await
                .unwrap(),
            wanted
        );
        let dir = db
            .store
            .directory()
            .customer(&sys, a)
            .await
            .unwrap()
            .unwrap();
        assert!(dir.extensions.iter().any(|e| e.record_calls));
        // Another customer's extension, a bad retention, a user or another
        // tenant: refused, and nothing changes.
        for bad in [
            RecordingPolicy {
                retention_days: 7,
                extensions: vec![t.extension_a.id, t.extension_b.id],
                numbers: vec![],
            },
            RecordingPolicy {
                retention_days: 0,
                ..Default::default()
            },
        ] {
            assert!(matches!(
                rec.set_policy(&t.customer_a_admin, a, &bad).await,
                Err(StoreError::Invalid(_))
            ));
        }
        assert!(matches!(
            rec.set_policy(&t.customer_a_user, a, &RecordingPolicy::default())
                .await,
            Err(StoreError::Forbidden(_))
        ));
        assert!(matches!(
            rec.set_policy(&t.customer_b_admin, a, &RecordingPolicy::default())
                .await,
            Err(StoreError::NotFound)
        ));
        assert_eq!(rec.policy(&t.customer_a_admin, a).await.unwrap(), wanted);

        // A recorded call's row comes with its record, once.
        let day = DAY_MS;
        let start = 1_000 * day;
        let mut call = answered_call("rec-1", t.reseller_x.id, a, start, 60_000);
        call.caller_extension_id = Some(t.extension_a.id);
        call.recording = Some(NewRecording {
            audio: "recordings/1/a.wav".into(),
            started_at: start + 4_000,
        });
        let records = db.store.call_records();
        records.insert_batch(&sys, &[call.clone()]).await.unwrap();
        records.insert_batch(&sys, &[call.clone()]).await.unwrap();
        let list = rec.list(&t.customer_a_admin, a, None, 50).await.unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].duration_ms, call.end_at - (start + 4_000));
        // The extension's own user sees it; other tenants do not.
        assert_eq!(
            rec.list(&t.customer_a_user, a, None, 50)
                .await
                .unwrap()
                .len(),
            1
        );
        assert!(matches!(
            rec.get(&t.customer_b_admin, list[0].id).await,
            Err(StoreError::NotFound)
        ));
        assert!(matches!(
            rec.delete(&t.reseller_y_admin, list[0].id).await,
            Err(StoreError::NotFound)
        ));
        assert!(matches!(
            rec.delete(&t.customer_a_user, list[0].id).await,
            Err(StoreError::Forbidden(_))
        ));
        // Kept 7 days after the call's end, then removed.
        let end = call.end_at;
        assert!(rec
            .remove_expired(&sys, end + 7 * day - 1, 100)
            .await
            .unwrap()
            .is_empty());
        assert_eq!(
            rec.remove_expired(&sys, end + 7 * day + 1, 100)
                .await
                .unwrap(),
            vec!["recordings/1/a.wav".to_owned()]
        );
        assert!(rec
            .list(&t.customer_a_admin, a, None, 50)
            .await
            .unwrap()
            .is_empty());
    }

    crate::both_engines!(policy_records_and_retention);
}
