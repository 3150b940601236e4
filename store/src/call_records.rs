//! Call records: one row per call leg, written in idempotent batches and
//! priced on both tiers as they are written.
//!
//! Each record carries a `record_uid` the proxy node chose before it spooled
//! the record, so a batch written twice (a retry after a lost commit, a replay
//! of the spool after a crash) inserts each record once: `ON CONFLICT
//! (record_uid) DO NOTHING`.
//!
//! Prices are computed here, with [`crate::rating`], from the reseller's
//! wholesale plan and the customer's retail plan as they are at write time;
//! [`CallRecords::rerate`] prices a past period again after a plan was
//! corrected. Customers never see wholesale prices.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::principal::Level;
use crate::rating::{self, RateRule};
use crate::rows::{enum_col, flag, flag_value, placeholders, text_enum};
use crate::usage::{Share, Usage};
use crate::webhooks::{self, WebhookEvent};
use crate::{
    CustomerId, DeviceId, ExtensionId, Millis, PlanId, Principal, ResellerId, Result, Scope, Store,
    StoreError, TrunkId,
};

text_enum!(
    /// Which way a call went, seen from the customer.
    CallDirection { Internal = "internal", Outbound = "outbound", Inbound = "inbound" }
);
text_enum!(
    /// How a call ended.
    Disposition {
        Answered = "answered",
        Busy = "busy",
        NoAnswer = "no_answer",
        Cancelled = "cancelled",
        Failed = "failed",
    }
);
text_enum!(
    /// Who ended an answered call.
    HangupSide { Caller = "caller", Callee = "callee", System = "system" }
);

/// A finished call leg as a proxy node reports it, before rating.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewCallRecord {
    pub record_uid: String,
    pub call_id: String,
    pub leg: i64,
    pub reseller_id: ResellerId,
    pub customer_id: CustomerId,
    pub direction: CallDirection,
    pub caller: String,
    pub callee: String,
    pub caller_extension_id: Option<ExtensionId>,
    pub callee_extension_id: Option<ExtensionId>,
    pub caller_device_id: Option<DeviceId>,
    pub callee_device_id: Option<DeviceId>,
    /// The E.164 number called, without '+', for calls that left the platform.
    pub destination: Option<String>,
    pub trunk_id: Option<TrunkId>,
    pub invite_at: Millis,
    pub answer_at: Option<Millis>,
    pub end_at: Millis,
    pub disposition: Disposition,
    pub sip_status: Option<u16>,
    pub hangup_side: Option<HangupSide>,
    /// Why the proxy ended it, when it was not a BYE (`session_expired`, …).
    pub end_reason: Option<String>,
    /// Closed by crash recovery rather than by the call's own end.
    pub recovered: bool,
    pub node_id: String,
    /// What the media relay saw (anchored calls only).
    #[serde(default)]
    pub media: Option<crate::media::MediaFigures>,
    /// The call's recording, if it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording: Option<crate::call_recordings::NewRecording>,
}

impl NewCallRecord {
    /// Milliseconds from answer to end; 0 for unanswered calls.
    pub fn billable_ms(&self) -> i64 {
        match self.answer_at {
            Some(answer) if self.disposition == Disposition::Answered => {
                (self.end_at - answer).max(0)
            }
            _ => 0,
        }
    }
}

/// A price on one tier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Price {
    pub plan_id: PlanId,
    /// The rate prefix that matched; None when no rate applied (free or unrated).
    pub prefix: Option<String>,
    /// None when the call needed a rate and the plan has none for it.
    pub micros: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CallRecord {
    pub id: i64,
    #[serde(flatten)]
    pub call: NewCallRecord,
    pub billable_ms: i64,
    pub currency: Option<String>,
    /// The operator's price to the reseller (hidden from customers).
    pub wholesale: Option<Price>,
    /// The reseller's price to the customer.
    pub retail: Option<Price>,
    pub rated_at: Option<Millis>,
}

/// Which records to list.
#[derive(Debug, Clone, Default)]
pub struct RecordFilter {
    pub from: Option<Millis>,
    pub to: Option<Millis>,
    pub customer: Option<CustomerId>,
    pub extension: Option<ExtensionId>,
    pub direction: Option<CallDirection>,
    /// Cursor: only records with a smaller id (newest first).
    pub before_id: Option<i64>,
    pub limit: u32,
}

/// Which records to price again.
#[derive(Debug, Clone, Copy)]
pub struct RerateScope {
    pub reseller: Option<ResellerId>,
    pub customer: Option<CustomerId>,
    pub from: Millis,
    pub to: Millis,
}

const ARITY: usize = 34;
/// Rows per INSERT (SQLite takes at most 32,766 parameters).
const CHUNK: usize = 32;

const COLUMNS: &str = "id, record_uid, call_id, leg, reseller_id, customer_id, direction, caller, \
    callee, caller_extension_id, callee_extension_id, caller_device_id, callee_device_id, \
    destination, trunk_id, invite_at, answer_at, end_at, billable_ms, disposition, sip_status, \
    hangup_side, end_reason, recovered, node_id, currency, wholesale_plan_id, wholesale_prefix, \
    wholesale_micros, retail_plan_id, retail_prefix, retail_micros, rated_at, media";

fn opt_id<T>(row: &AnyRow, col: &str, make: fn(i64) -> T) -> Result<Option<T>, sqlx::Error> {
    Ok(row.try_get::<Option<i64>, _>(col)?.map(make))
}

fn price_from_row(row: &AnyRow, tier: &str) -> Result<Option<Price>, sqlx::Error> {
    let Some(plan) = row.try_get::<Option<i64>, _>(format!("{tier}_plan_id").as_str())? else {
        return Ok(None);
    };
    Ok(Some(Price {
        plan_id: PlanId(plan),
        prefix: row.try_get(format!("{tier}_prefix").as_str())?,
        micros: row.try_get(format!("{tier}_micros").as_str())?,
    }))
}

fn from_row(row: &AnyRow, show_wholesale: bool) -> Result<CallRecord, sqlx::Error> {
    let hangup: Option<String> = row.try_get("hangup_side")?;
    let status: Option<i64> = row.try_get("sip_status")?;
    Ok(CallRecord {
        id: row.try_get("id")?,
        call: NewCallRecord {
            record_uid: row.try_get("record_uid")?,
            call_id: row.try_get("call_id")?,
            leg: row.try_get("leg")?,
            reseller_id: ResellerId(row.try_get("reseller_id")?),
            customer_id: CustomerId(row.try_get("customer_id")?),
            direction: enum_col(row, "direction", CallDirection::parse)?,
            caller: row.try_get("caller")?,
            callee: row.try_get("callee")?,
            caller_extension_id: opt_id(row, "caller_extension_id", ExtensionId)?,
            callee_extension_id: opt_id(row, "callee_extension_id", ExtensionId)?,
            caller_device_id: opt_id(row, "caller_device_id", DeviceId)?,
            callee_device_id: opt_id(row, "callee_device_id", DeviceId)?,
            destination: row.try_get("destination")?,
            trunk_id: opt_id(row, "trunk_id", TrunkId)?,
            invite_at: row.try_get("invite_at")?,
            answer_at: row.try_get("answer_at")?,
            end_at: row.try_get("end_at")?,
            disposition: enum_col(row, "disposition", Disposition::parse)?,
            sip_status: status.and_then(|s| u16::try_from(s).ok()),
            hangup_side: hangup.as_deref().and_then(HangupSide::parse),
            end_reason: row.try_get("end_reason")?,
            recovered: flag(row, "recovered")?,
            node_id: row.try_get("node_id")?,
            media: row
                .try_get::<Option<String>, _>("media")?
                .and_then(|m| serde_json::from_str(&m).ok()),
            // Recordings are listed on their own (`call_recordings`).
            recording: None,
        },
        billable_ms: row.try_get("billable_ms")?,
        currency: row.try_get("currency")?,
        wholesale: if show_wholesale {
            price_from_row(row, "wholesale")?
        } else {
            None
        },
        retail: price_from_row(row, "retail")?,
        rated_at: row.try_get("rated_at")?,
    })
}

/// A plan as rating needs it.
#[derive(Debug, Clone)]
pub(crate) struct PlanRates {
    pub id: PlanId,
    pub internal_calls_free: bool,
    pub rates: Vec<RateRule>,
}

/// What a call costs under `plan`, or None when no plan applies.
pub(crate) fn price(
    plan: Option<&PlanRates>,
    direction: CallDirection,
    destination: Option<&str>,
    billable_ms: i64,
) -> Option<Price> {
    let plan = plan?;
    let free = |prefix: Option<String>| Price {
        plan_id: plan.id,
        prefix,
        micros: Some(0),
    };
    if billable_ms <= 0 || direction == CallDirection::Inbound {
        // Unanswered calls cost nothing; inbound calls are paid for by the
        // number's monthly price.
        return Some(free(None));
    }
    if direction == CallDirection::Internal && plan.internal_calls_free {
        return Some(free(None));
    }
    // Internal calls that are not free are rated by the default rate ("").
    let number = if direction == CallDirection::Internal {
        ""
    } else {
        destination.unwrap_or("")
    };
    match rating::best_rate(&plan.rates, number) {
        Some(rate) => Some(Price {
            plan_id: plan.id,
            prefix: Some(rate.prefix.clone()),
            micros: Some(rating::call_price(rate, billable_ms)),
        }),
        None => Some(Price {
            plan_id: plan.id,
            prefix: None,
            micros: None,
        }),
    }
}

/// Plans looked up once per batch: which plan each reseller and customer is
/// on, and each plan's rates.
#[derive(Default)]
pub(crate) struct PlanCache {
    reseller_plan: HashMap<ResellerId, (Option<PlanId>, String)>,
    customer_plan: HashMap<CustomerId, Option<PlanId>>,
    plans: HashMap<PlanId, PlanRates>,
}

impl PlanCache {
    async fn plan(&mut self, conn: &mut AnyConnection, id: PlanId) -> Result<&PlanRates> {
        if let std::collections::hash_map::Entry::Vacant(slot) = self.plans.entry(id) {
            let row = sqlx::query("SELECT internal_calls_free FROM price_plans WHERE id = $1")
                .bind(id.0)
                .fetch_one(&mut *conn)
                .await?;
            let rates = sqlx::query(
                "SELECT prefix, description, minute_micros, connection_micros, first_increment_s, \
                 next_increment_s, minimum_micros FROM rates WHERE plan_id = $1",
            )
            .bind(id.0)
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(crate::price_plans::rate_from_row)
            .collect::<Result<Vec<_>, _>>()?;
            slot.insert(PlanRates {
                id,
                internal_calls_free: flag(&row, "internal_calls_free")?,
                rates,
            });
        }
        self.plans.get(&id).ok_or(StoreError::NotFound)
    }

    /// The wholesale plan and currency of a reseller.
    async fn reseller(
        &mut self,
        conn: &mut AnyConnection,
        id: ResellerId,
    ) -> Result<(Option<PlanId>, String)> {
        if let Some(found) = self.reseller_plan.get(&id) {
            return Ok(found.clone());
        }
        let row = sqlx::query("SELECT wholesale_plan_id, currency FROM resellers WHERE id = $1")
            .bind(id.0)
            .fetch_optional(&mut *conn)
            .await?;
        let found = match row {
            Some(row) => (
                opt_id(&row, "wholesale_plan_id", PlanId)?,
                row.try_get("currency")?,
            ),
            None => (None, String::new()),
        };
        self.reseller_plan.insert(id, found.clone());
        Ok(found)
    }

    async fn customer(
        &mut self,
        conn: &mut AnyConnection,
        id: CustomerId,
    ) -> Result<Option<PlanId>> {
        if let Some(found) = self.customer_plan.get(&id) {
            return Ok(*found);
        }
        let plan = sqlx::query("SELECT retail_plan_id FROM customers WHERE id = $1")
            .bind(id.0)
            .fetch_optional(&mut *conn)
            .await?
            .map(|row| opt_id(&row, "retail_plan_id", PlanId))
            .transpose()?
            .flatten();
        self.customer_plan.insert(id, plan);
        Ok(plan)
    }

    /// Wholesale and retail price and the currency of one call.
    pub async fn rate(
        &mut self,
        conn: &mut AnyConnection,
        reseller: ResellerId,
        customer: CustomerId,
        direction: CallDirection,
        destination: Option<&str>,
        billable_ms: i64,
    ) -> Result<(Option<Price>, Option<Price>, String)> {
        let (wholesale_plan, currency) = self.reseller(conn, reseller).await?;
        let retail_plan = self.customer(conn, customer).await?;
        let wholesale = match wholesale_plan {
            Some(p) => price(
                Some(self.plan(conn, p).await?),
                direction,
                destination,
                billable_ms,
            ),
            None => None,
        };
        let retail = match retail_plan {
            Some(p) => price(
                Some(self.plan(conn, p).await?),
                direction,
                destination,
                billable_ms,
            ),
            None => None,
        };
        Ok((wholesale, retail, currency))
    }
}

pub struct CallRecords<'s>(pub(crate) &'s Store);

impl CallRecords<'_> {
    /// Writes finished records, rated, in one transaction. Records whose
    /// `record_uid` is already stored are skipped; returns how many were new.
    /// Only the platform itself (a proxy node) writes records.
    pub async fn insert_batch(&self, by: &Principal, records: &[NewCallRecord]) -> Result<u64> {
        by.may_write(Level::Operator)?;
        if records.is_empty() {
            return Ok(0);
        }
        let now = crate::now_ms();
        let mut tx = self.0.begin().await?;
        let mut cache = PlanCache::default();
        let mut priced = Vec::with_capacity(records.len());
        for r in records {
            priced.push(
                cache
                    .rate(
                        tx.conn(),
                        r.reseller_id,
                        r.customer_id,
                        r.direction,
                        r.destination.as_deref(),
                        r.billable_ms(),
                    )
                    .await?,
            );
        }
        let mut inserted = std::collections::HashSet::new();
        let rows: Vec<_> = records.iter().zip(priced).collect();
        for chunk in rows.chunks(CHUNK) {
            let sql = format!(
                "INSERT INTO call_records ({}) VALUES {} ON CONFLICT (record_uid) DO NOTHING \
                 RETURNING record_uid",
                COLUMNS.trim_start_matches("id, "),
                placeholders(self.0.engine(), chunk.len(), ARITY - 1)
            );
            let mut q = sqlx::query(&sql);
            for (r, (wholesale, retail, currency)) in chunk {
                let status = r.sip_status.map(i64::from);
                q = q
                    .bind(&r.record_uid)
                    .bind(&r.call_id)
                    .bind(r.leg)
                    .bind(r.reseller_id.0)
                    .bind(r.customer_id.0)
                    .bind(r.direction.as_str())
                    .bind(&r.caller)
                    .bind(&r.callee)
                    .bind(r.caller_extension_id.map(|e| e.0))
                    .bind(r.callee_extension_id.map(|e| e.0))
                    .bind(r.caller_device_id.map(|d| d.0))
                    .bind(r.callee_device_id.map(|d| d.0))
                    .bind(&r.destination)
                    .bind(r.trunk_id.map(|t| t.0))
                    .bind(r.invite_at)
                    .bind(r.answer_at)
                    .bind(r.end_at.max(r.invite_at))
                    .bind(r.billable_ms())
                    .bind(r.disposition.as_str())
                    .bind(status)
                    .bind(r.hangup_side.map(|h| h.as_str()))
                    .bind(&r.end_reason)
                    .bind(flag_value(r.recovered))
                    .bind(&r.node_id)
                    .bind(if currency.is_empty() {
                        None
                    } else {
                        Some(currency.clone())
                    })
                    .bind(wholesale.as_ref().map(|p| p.plan_id.0))
                    .bind(wholesale.as_ref().and_then(|p| p.prefix.clone()))
                    .bind(wholesale.as_ref().and_then(|p| p.micros))
                    .bind(retail.as_ref().map(|p| p.plan_id.0))
                    .bind(retail.as_ref().and_then(|p| p.prefix.clone()))
                    .bind(retail.as_ref().and_then(|p| p.micros))
                    .bind(now)
                    .bind(r.media.as_ref().and_then(|m| serde_json::to_string(m).ok()));
            }
            for row in q.fetch_all(tx.conn()).await? {
                inserted.insert(row.try_get::<String, _>("record_uid")?);
            }
        }
        // Webhooks hear of each call once, in the transaction that stores it.
        let mut resellers: Vec<i64> = rows
            .iter()
            .filter(|(r, _)| inserted.contains(&r.record_uid))
            .map(|(r, _)| r.reseller_id.0)
            .collect();
        resellers.sort_unstable();
        resellers.dedup();
        if webhooks::anyone_listens(tx.conn(), WebhookEvent::CallEnded, &resellers).await? {
            for (r, (_, retail, currency)) in &rows {
                if inserted.contains(&r.record_uid) {
                    // Where a recording's audio is kept is the platform's
                    // business; the recordings API serves it.
                    let mut record = serde_json::to_value(r).unwrap_or_default();
                    if let Some(fields) = record.as_object_mut() {
                        fields.remove("recording");
                    }
                    let payload = serde_json::json!({
                        "type": WebhookEvent::CallEnded,
                        "record": record,
                        "billable_ms": r.billable_ms(),
                        "currency": currency,
                        "retail": retail,
                    });
                    webhooks::enqueue(
                        tx.conn(),
                        WebhookEvent::CallEnded,
                        r.reseller_id,
                        Some(r.customer_id),
                        &r.record_uid,
                        &payload,
                    )
                    .await?;
                }
            }
        }
        // Only records new to the database add to the usage.
        let mut usage = Usage::default();
        for (r, (wholesale, retail, _)) in &rows {
            if inserted.contains(&r.record_uid) {
                usage.add(Share {
                    reseller: r.reseller_id.0,
                    customer: r.customer_id.0,
                    invite_at: r.invite_at,
                    direction: r.direction.as_str(),
                    billable_ms: r.billable_ms(),
                    wholesale_prefix: wholesale.as_ref().and_then(|p| p.prefix.as_deref()),
                    wholesale_micros: wholesale.as_ref().and_then(|p| p.micros),
                    retail_prefix: retail.as_ref().and_then(|p| p.prefix.as_deref()),
                    retail_micros: retail.as_ref().and_then(|p| p.micros),
                });
            }
        }
        usage.save(tx.conn()).await?;
        crate::call_recordings::insert_with_records(tx.conn(), records, &inserted).await?;
        tx.commit().await?;
        Ok(inserted.len() as u64)
    }

    /// Records visible to `by`, newest first. A customer user sees the calls
    /// of its own extension; customers never see wholesale prices.
    pub async fn list(&self, by: &Principal, filter: &RecordFilter) -> Result<Vec<CallRecord>> {
        let show_wholesale = matches!(by.scope, Scope::Operator | Scope::Reseller { .. });
        let extension = by.scope.extension().or(filter.extension);
        let limit = i64::from(filter.limit.clamp(1, 1000));
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM call_records WHERE \
             ($1 IS NULL OR reseller_id = $1) AND ($2 IS NULL OR customer_id = $2) \
             AND ($3 IS NULL OR customer_id = $3) \
             AND ($4 IS NULL OR caller_extension_id = $4 OR callee_extension_id = $4) \
             AND ($5 IS NULL OR invite_at >= $5) AND ($6 IS NULL OR invite_at < $6) \
             AND ($7 IS NULL OR direction = $7) AND ($8 IS NULL OR id < $8) \
             ORDER BY id DESC LIMIT $9"
        ))
        .bind(by.scope.reseller_param())
        .bind(by.scope.customer_param())
        .bind(filter.customer.map(|c| c.0))
        .bind(extension.map(|e| e.0))
        .bind(filter.from)
        .bind(filter.to)
        .bind(filter.direction.map(|d| d.as_str()))
        .bind(filter.before_id)
        .bind(limit)
        .fetch_all(self.0.pool())
        .await?;
        Ok(rows
            .iter()
            .map(|r| from_row(r, show_wholesale))
            .collect::<Result<_, _>>()?)
    }

    /// Prices the records of a period again with the plans as they are now
    /// (after a rate was corrected). The operator re-rates both tiers; a
    /// reseller only its own retail prices. Returns how many records changed.
    pub async fn rerate(&self, by: &Principal, scope: RerateScope) -> Result<u64> {
        by.may_write(Level::Reseller)?;
        let wholesale_too = by.scope == Scope::Operator;
        let reseller = by.scope.reseller().or(scope.reseller);
        let mut tx = self.0.begin().await?;
        let rows = sqlx::query(
            "SELECT id, reseller_id, customer_id, direction, destination, billable_ms, \
             wholesale_plan_id, wholesale_prefix, wholesale_micros, retail_plan_id, retail_prefix, \
             retail_micros FROM call_records WHERE ($1 IS NULL OR reseller_id = $1) \
             AND ($2 IS NULL OR customer_id = $2) AND invite_at >= $3 AND invite_at < $4",
        )
        .bind(reseller.map(|r| r.0))
        .bind(scope.customer.map(|c| c.0))
        .bind(scope.from)
        .bind(scope.to)
        .fetch_all(tx.conn())
        .await?;
        let mut cache = PlanCache::default();
        let now = crate::now_ms();
        let mut changed = 0;
        for row in &rows {
            let id: i64 = row.try_get("id")?;
            let direction = enum_col(row, "direction", CallDirection::parse)?;
            let destination: Option<String> = row.try_get("destination")?;
            let (wholesale, retail, _) = cache
                .rate(
                    tx.conn(),
                    ResellerId(row.try_get("reseller_id")?),
                    CustomerId(row.try_get("customer_id")?),
                    direction,
                    destination.as_deref(),
                    row.try_get("billable_ms")?,
                )
                .await?;
            let old_wholesale = price_from_row(row, "wholesale")?;
            let old_retail = price_from_row(row, "retail")?;
            let wholesale = if wholesale_too {
                wholesale
            } else {
                old_wholesale.clone()
            };
            if wholesale == old_wholesale && retail == old_retail {
                continue;
            }
            sqlx::query(
                "UPDATE call_records SET wholesale_plan_id = $1, wholesale_prefix = $2, \
                 wholesale_micros = $3, retail_plan_id = $4, retail_prefix = $5, retail_micros = $6, \
                 rated_at = $7 WHERE id = $8",
            )
            .bind(wholesale.as_ref().map(|p| p.plan_id.0))
            .bind(wholesale.as_ref().and_then(|p| p.prefix.clone()))
            .bind(wholesale.as_ref().and_then(|p| p.micros))
            .bind(retail.as_ref().map(|p| p.plan_id.0))
            .bind(retail.as_ref().and_then(|p| p.prefix.clone()))
            .bind(retail.as_ref().and_then(|p| p.micros))
            .bind(now)
            .bind(id)
            .execute(tx.conn())
            .await?;
            changed += 1;
        }
        if changed > 0 {
            crate::usage::rebuild(
                tx.conn(),
                reseller.map(|r| r.0),
                scope.customer.map(|c| c.0),
                scope.from,
                scope.to,
            )
            .await?;
        }
        crate::audit::record(
            &mut tx,
            by,
            crate::audit::Event {
                action: "rerate",
                object_type: "call_records",
                object_id: None,
                reseller,
                customer: scope.customer,
                details: serde_json::json!({ "from": scope.from, "to": scope.to, "changed": changed }),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(changed)
    }

    /// Whether a record with this uid is stored (the proxy's recovery uses it).
    pub async fn exists(&self, by: &Principal, record_uid: &str) -> Result<bool> {
        by.may_read(Level::Operator)?;
        Ok(
            sqlx::query("SELECT 1 FROM call_records WHERE record_uid = $1")
                .bind(record_uid)
                .fetch_optional(self.0.pool())
                .await?
                .is_some(),
        )
    }
}
