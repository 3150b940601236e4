//! Webhooks: a reseller's or a customer's HTTPS endpoint that is told of
//! events (a call ended, a month's statement is ready), and the delivery log
//! that is also the retry queue.
//!
//! Deliveries are rows: enqueued in the transaction that makes the event true
//! (a call record stored), claimed by one node at a time with a lease, and
//! retried with backoff until delivered or given up. The same event is never
//! enqueued twice for a webhook (unique event key).

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::audit::{self, Event};
use crate::principal::Level;
use crate::rows::{enum_col, flag, text_enum};
use crate::secrets::random_token;
use crate::validate::Checker;
use crate::{CustomerId, Millis, Principal, ResellerId, Result, Scope, Store, StoreError};

text_enum!(
    /// What a webhook can be told of.
    WebhookEvent {
        CallEnded = "call_ended",
        StatementReady = "statement_ready",
        LimitReached = "limit_reached",
        AccountProtected = "account_protected",
        TollFraud = "toll_fraud"
    }
);
text_enum!(
    /// Where a delivery stands.
    DeliveryState { Pending = "pending", Delivered = "delivered", Failed = "failed" }
);

/// Webhooks one reseller or customer may have.
pub const MAX_PER_OWNER: i64 = 10;
/// Finished deliveries are kept this long in the log.
pub const LOG_RETENTION_MS: i64 = 30 * 24 * 3600 * 1000;
/// Attempts before a delivery is given up.
pub const MAX_ATTEMPTS: i64 = 10;
/// How long a claimed delivery is reserved for the node sending it.
const LEASE_MS: i64 = 60_000;

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Webhook {
    pub id: i64,
    pub reseller_id: ResellerId,
    /// None: the reseller's webhook, for all its customers.
    pub customer_id: Option<CustomerId>,
    pub url: String,
    pub events: Vec<WebhookEvent>,
    pub active: bool,
    pub created_at: Millis,
    pub version: i64,
}

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewWebhook {
    /// An `https://` URL.
    pub url: String,
    pub events: Vec<WebhookEvent>,
    /// The customer whose events it receives; absent for a reseller's webhook.
    pub customer_id: Option<CustomerId>,
    /// The reseller; a reseller's own token may leave it out.
    pub reseller_id: Option<ResellerId>,
}

/// One delivery of one event, as the log shows it.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Delivery {
    pub id: i64,
    pub webhook_id: i64,
    pub event_type: WebhookEvent,
    pub event_key: String,
    pub state: DeliveryState,
    pub attempts: i64,
    pub next_attempt_at: Millis,
    pub last_attempt_at: Option<Millis>,
    /// The HTTP status the endpoint answered last, if it answered.
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub delivered_at: Option<Millis>,
    pub created_at: Millis,
}

/// A delivery a node has claimed and must now send.
#[derive(Debug, Clone)]
pub struct Due {
    pub id: i64,
    /// The claim that holds it (see [`Webhooks::record_attempt`]).
    pub claim_token: String,
    pub webhook_id: i64,
    pub url: String,
    pub secret: String,
    pub event_type: WebhookEvent,
    pub payload: String,
    pub attempts: i64,
}

/// How an attempt went.
#[derive(Debug, Clone)]
pub enum Attempt {
    Delivered { status: u16 },
    Failed { status: Option<u16>, error: String },
}

const COLUMNS: &str =
    "w.id, w.reseller_id, w.customer_id, w.url, w.events, w.active, w.created_at, w.version";
/// $1 reseller scope, $2 customer scope.
const SCOPED: &str =
    "FROM webhooks w WHERE ($1 IS NULL OR w.reseller_id = $1) AND ($2 IS NULL OR w.customer_id = $2)";

fn parse_events(text: &str) -> Vec<WebhookEvent> {
    text.split(',').filter_map(WebhookEvent::parse).collect()
}

fn from_row(row: &AnyRow) -> Result<Webhook, sqlx::Error> {
    Ok(Webhook {
        id: row.try_get("id")?,
        reseller_id: ResellerId(row.try_get("reseller_id")?),
        customer_id: row
            .try_get::<Option<i64>, _>("customer_id")?
            .map(CustomerId),
        url: row.try_get("url")?,
        events: parse_events(&row.try_get::<String, _>("events")?),
        active: flag(row, "active")?,
        created_at: row.try_get("created_at")?,
        version: row.try_get("version")?,
    })
}

fn delivery_from_row(row: &AnyRow) -> Result<Delivery, sqlx::Error> {
    Ok(Delivery {
        id: row.try_get("id")?,
        webhook_id: row.try_get("webhook_id")?,
        event_type: enum_col(row, "event_type", WebhookEvent::parse)?,
        event_key: row.try_get("event_key")?,
        state: enum_col(row, "state", DeliveryState::parse)?,
        attempts: row.try_get("attempts")?,
        next_attempt_at: row.try_get("next_attempt_at")?,
        last_attempt_at: row.try_get("last_attempt_at")?,
        last_status: row.try_get("last_status")?,
        last_error: row.try_get("last_error")?,
        delivered_at: row.try_get("delivered_at")?,
        created_at: row.try_get("created_at")?,
    })
}

/// Syntax only: where the URL points is checked when it is called, since a
/// name can resolve elsewhere later.
fn check_url(check: &mut Checker, url: &str) {
    let host = url
        .strip_prefix("https://")
        .map(|rest| rest.split(['/', '?', '#']).next().unwrap_or(""));
    check.check(
        url.len() <= 2000
            && !url.chars().any(|c| c.is_whitespace() || c.is_control())
            && host.is_some_and(|h| !h.is_empty() && !h.contains('@')),
        "url",
        "must be an https:// URL without credentials",
    );
}

/// The wait before attempt `attempts + 1`: 10 s, 20 s, 40 s, … at most an hour.
pub fn backoff_ms(attempts: i64) -> i64 {
    let exp = attempts.clamp(0, 20) as u32;
    (10_000i64 << exp).min(3_600_000)
}

pub struct Webhooks<'s>(pub(crate) &'s Store);

impl Webhooks<'_> {
    pub async fn list(&self, by: &Principal) -> Result<Vec<Webhook>> {
        by.may_read(Level::Customer)?;
        let rows = sqlx::query(&format!("SELECT {COLUMNS} {SCOPED} ORDER BY w.id"))
            .bind(by.scope.reseller_param())
            .bind(by.scope.customer_param())
            .fetch_all(self.0.pool())
            .await?;
        Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
    }

    pub async fn get(&self, by: &Principal, id: i64) -> Result<Webhook> {
        by.may_read(Level::Customer)?;
        let row = sqlx::query(&format!("SELECT {COLUMNS} {SCOPED} AND w.id = $3"))
            .bind(by.scope.reseller_param())
            .bind(by.scope.customer_param())
            .bind(id)
            .fetch_optional(self.0.pool())
            .await?
            .ok_or(StoreError::NotFound)?;
        Ok(from_row(&row)?)
    }

    /// Creates a webhook and returns its signing secret, shown once.
    pub async fn create(&self, by: &Principal, new: &NewWebhook) -> Result<(Webhook, String)> {
        by.may_write(Level::Customer)?;
        let mut check = Checker::new();
        check_url(&mut check, &new.url);
        check.check(
            !new.events.is_empty(),
            "events",
            "must name at least one event",
        );
        check.finish()?;
        let (reseller, customer) = match (new.customer_id, new.reseller_id, by.scope) {
            (Some(id), _, _) => {
                let c = self.0.customers().get(by, id).await?;
                (c.reseller_id, Some(c.id))
            }
            (None, _, Scope::Customer { .. } | Scope::Extension { .. }) => {
                return Err(StoreError::invalid(
                    "customer_id",
                    "is required for a customer's webhook",
                ))
            }
            (None, Some(id), _) => {
                by.may_write(Level::Reseller)?;
                (self.0.resellers().get(by, id).await?.id, None)
            }
            (None, None, Scope::Reseller { reseller }) => (reseller, None),
            (None, None, Scope::Operator) => {
                return Err(StoreError::invalid(
                    "reseller_id",
                    "is required (or customer_id)",
                ))
            }
        };
        let owned: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM webhooks WHERE reseller_id = $1 \
             AND (($2 IS NULL AND customer_id IS NULL) OR customer_id = $2)",
        )
        .bind(reseller.0)
        .bind(customer.map(|c| c.0))
        .fetch_one(self.0.pool())
        .await?
        .try_get("n")?;
        if owned >= MAX_PER_OWNER {
            return Err(StoreError::Conflict(format!(
                "at most {MAX_PER_OWNER} webhooks each; delete one first"
            )));
        }
        let mut events: Vec<&str> = new.events.iter().map(|e| e.as_str()).collect();
        events.sort_unstable();
        events.dedup();
        let secret = format!("whsec_{}", random_token(32));
        let mut tx = self.0.begin().await?;
        let row = sqlx::query(
            "INSERT INTO webhooks (reseller_id, customer_id, url, events, secret_enc, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(reseller.0)
        .bind(customer.map(|c| c.0))
        .bind(&new.url)
        .bind(events.join(","))
        .bind(self.0.secrets().encrypt(&secret))
        .bind(crate::now_ms())
        .fetch_one(tx.conn())
        .await?;
        let id: i64 = row.try_get("id")?;
        audit::record(
            &mut tx,
            by,
            Event {
                action: "create",
                object_type: "webhook",
                object_id: Some(id),
                reseller: Some(reseller),
                customer,
                details: serde_json::json!({ "url": new.url, "events": events }),
            },
        )
        .await?;
        tx.commit().await?;
        Ok((self.get(by, id).await?, secret))
    }

    /// Removes a webhook and its delivery log.
    pub async fn delete(&self, by: &Principal, id: i64) -> Result<()> {
        by.may_write(Level::Customer)?;
        let hook = self.get(by, id).await?;
        let mut tx = self.0.begin().await?;
        sqlx::query("DELETE FROM webhooks WHERE id = $1")
            .bind(id)
            .execute(tx.conn())
            .await?;
        audit::record(
            &mut tx,
            by,
            Event {
                action: "delete",
                object_type: "webhook",
                object_id: Some(id),
                reseller: Some(hook.reseller_id),
                customer: hook.customer_id,
                details: serde_json::json!({ "url": hook.url }),
            },
        )
        .await?;
        tx.commit().await
    }

    /// The delivery log of a webhook, newest first.
    pub async fn deliveries(
        &self,
        by: &Principal,
        webhook: i64,
        before_id: Option<i64>,
        limit: u32,
    ) -> Result<Vec<Delivery>> {
        let hook = self.get(by, webhook).await?;
        let rows = sqlx::query(
            "SELECT id, webhook_id, event_type, event_key, state, attempts, next_attempt_at, \
             last_attempt_at, last_status, last_error, delivered_at, created_at \
             FROM webhook_deliveries WHERE webhook_id = $1 AND ($2 IS NULL OR id < $2) \
             ORDER BY id DESC LIMIT $3",
        )
        .bind(hook.id)
        .bind(before_id)
        .bind(i64::from(limit))
        .fetch_all(self.0.pool())
        .await?;
        Ok(rows
            .iter()
            .map(delivery_from_row)
            .collect::<Result<_, _>>()?)
    }

    /// Enqueues `event` for every active webhook of the customer and of its
    /// reseller that asked for it. Idempotent per (webhook, event, key).
    pub async fn enqueue(
        &self,
        by: &Principal,
        event: WebhookEvent,
        reseller: ResellerId,
        customer: Option<CustomerId>,
        key: &str,
        payload: &serde_json::Value,
    ) -> Result<u64> {
        by.may_write(Level::Operator)?;
        let mut conn = self.0.pool().acquire().await?;
        enqueue(&mut conn, event, reseller, customer, key, payload).await
    }

    /// Claims up to `limit` deliveries that are due, for this node, for a lease.
    pub async fn claim_due(&self, by: &Principal, now: Millis, limit: u32) -> Result<Vec<Due>> {
        by.may_write(Level::Operator)?;
        // The outer condition is evaluated again on each row it locks
        // (PostgreSQL), so two nodes never claim the same delivery.
        let claim = random_token(12);
        let rows = sqlx::query(
            "UPDATE webhook_deliveries SET next_attempt_at = $1, claim_token = $4 \
             WHERE state = 'pending' AND next_attempt_at <= $2 AND id IN \
             (SELECT d.id FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id \
              WHERE d.state = 'pending' AND d.next_attempt_at <= $2 AND w.active = 1 \
              ORDER BY d.next_attempt_at LIMIT $3) \
             RETURNING id, webhook_id, event_type, payload, attempts",
        )
        .bind(now + LEASE_MS)
        .bind(now)
        .bind(i64::from(limit))
        .bind(&claim)
        .fetch_all(self.0.pool())
        .await?;
        let mut due = Vec::with_capacity(rows.len());
        for row in rows {
            let id: i64 = row.try_get("id")?;
            let webhook_id: i64 = row.try_get("webhook_id")?;
            let Some(hook) = sqlx::query("SELECT url, secret_enc FROM webhooks WHERE id = $1")
                .bind(webhook_id)
                .fetch_optional(self.0.pool())
                .await?
            else {
                continue;
            };
            // One unreadable secret must not hold up the others.
            let secret = match self
                .0
                .secrets()
                .decrypt(&hook.try_get::<String, _>("secret_enc")?)
            {
                Ok(secret) => secret,
                Err(e) => {
                    tracing::error!(error = %e, webhook = webhook_id, "webhook secret unreadable; delivery skipped");
                    continue;
                }
            };
            due.push(Due {
                id,
                claim_token: claim.clone(),
                webhook_id,
                url: hook.try_get("url")?,
                secret,
                event_type: enum_col(&row, "event_type", WebhookEvent::parse)?,
                payload: row.try_get("payload")?,
                attempts: row.try_get("attempts")?,
            });
        }
        Ok(due)
    }

    /// Records how an attempt went: delivered, retried later, or given up.
    pub async fn record_attempt(
        &self,
        by: &Principal,
        delivery: &Due,
        attempt: &Attempt,
        now: Millis,
    ) -> Result<()> {
        by.may_write(Level::Operator)?;
        let attempts = delivery.attempts + 1;
        let (state, status, error, delivered_at, next) = match attempt {
            Attempt::Delivered { status } => (
                DeliveryState::Delivered,
                Some(i64::from(*status)),
                None,
                Some(now),
                now,
            ),
            Attempt::Failed { status, error } => (
                if attempts >= MAX_ATTEMPTS {
                    DeliveryState::Failed
                } else {
                    DeliveryState::Pending
                },
                status.map(i64::from),
                Some(error.chars().take(500).collect::<String>()),
                None,
                now + backoff_ms(delivery.attempts),
            ),
        };
        sqlx::query(
            "UPDATE webhook_deliveries SET state = $1, attempts = $2, last_attempt_at = $3, \
             last_status = $4, last_error = $5, delivered_at = $6, next_attempt_at = $7, claim_token = NULL \
             WHERE id = $8 AND claim_token = $9 AND state = 'pending'",
        )
        .bind(state.as_str())
        .bind(attempts)
        .bind(now)
        .bind(status)
        .bind(error)
        .bind(delivered_at)
        .bind(next)
        .bind(delivery.id)
        .bind(&delivery.claim_token)
        .execute(self.0.pool())
        .await?;
        Ok(())
    }

    /// Drops finished deliveries older than [`LOG_RETENTION_MS`].
    pub async fn forget_old(&self, by: &Principal, now: Millis) -> Result<u64> {
        by.may_write(Level::Operator)?;
        Ok(sqlx::query(
            "DELETE FROM webhook_deliveries WHERE created_at < $1 AND state <> 'pending'",
        )
        .bind(now - LOG_RETENTION_MS)
        .execute(self.0.pool())
        .await?
        .rows_affected())
    }

    /// Webhooks that asked for `event`, with their owners (for jobs that
    /// enqueue per customer, such as statements).
    pub async fn subscribed(&self, by: &Principal, event: WebhookEvent) -> Result<Vec<Webhook>> {
        by.may_read(Level::Operator)?;
        Ok(self
            .list(by)
            .await?
            .into_iter()
            .filter(|w| w.active && w.events.contains(&event))
            .collect())
    }
}

impl Webhooks<'_> {
    /// Enqueues `statement_ready` for the last closed month (in each
    /// reseller's time zone): each customer's statement, and the reseller's
    /// own for reseller webhooks. Safe to run as often as wanted: each
    /// statement is announced once per webhook.
    pub async fn enqueue_statements(&self, by: &Principal, now: Millis) -> Result<u64> {
        by.may_write(Level::Operator)?;
        let mut enqueued = 0;
        for hook in self.subscribed(by, WebhookEvent::StatementReady).await? {
            let reseller = self.0.resellers().get(by, hook.reseller_id).await?;
            let Ok(tz) = reseller.time_zone.parse::<chrono_tz::Tz>() else {
                continue;
            };
            let period = last_closed_month(now, tz);
            let customers = match hook.customer_id {
                Some(c) => vec![c],
                None => self
                    .0
                    .customers()
                    .list(by, Some(reseller.id))
                    .await?
                    .into_iter()
                    .map(|c| c.id)
                    .collect(),
            };
            let mut conn = self.0.pool().acquire().await?;
            for customer in customers {
                let payload = serde_json::json!({
                    "type": WebhookEvent::StatementReady,
                    "reseller_id": reseller.id,
                    "customer_id": customer,
                    "period": period,
                    "statement": format!("/api/v1/customers/{customer}/statement?month={period}"),
                });
                let key = format!("customer:{customer}:{period}");
                enqueued += enqueue(
                    &mut conn,
                    WebhookEvent::StatementReady,
                    reseller.id,
                    Some(customer),
                    &key,
                    &payload,
                )
                .await?;
            }
            if hook.customer_id.is_none() {
                let payload = serde_json::json!({
                    "type": WebhookEvent::StatementReady,
                    "reseller_id": reseller.id,
                    "period": period,
                    "statement": format!("/api/v1/resellers/{}/statement?month={period}", reseller.id),
                });
                let key = format!("reseller:{}:{period}", reseller.id);
                enqueued += enqueue(
                    &mut conn,
                    WebhookEvent::StatementReady,
                    reseller.id,
                    None,
                    &key,
                    &payload,
                )
                .await?;
            }
        }
        Ok(enqueued)
    }
}

/// `2026-10` when `now` is in November 2026 in `tz`.
fn last_closed_month(now: Millis, tz: chrono_tz::Tz) -> String {
    use chrono::{Datelike, TimeZone};
    let local = tz
        .timestamp_millis_opt(now)
        .earliest()
        .map(|t| (t.year(), t.month()))
        .unwrap_or((1970, 2));
    let (year, month) = if local.1 == 1 {
        (local.0 - 1, 12)
    } else {
        (local.0, local.1 - 1)
    };
    format!("{year:04}-{month:02}")
}

/// Enqueues on `conn` (inside the caller's transaction, when there is one).
pub(crate) async fn enqueue(
    conn: &mut AnyConnection,
    event: WebhookEvent,
    reseller: ResellerId,
    customer: Option<CustomerId>,
    key: &str,
    payload: &serde_json::Value,
) -> Result<u64> {
    let now = crate::now_ms();
    let pattern = format!("%{}%", event.as_str());
    Ok(sqlx::query(
        "INSERT INTO webhook_deliveries (webhook_id, event_type, event_key, payload, next_attempt_at, created_at) \
         SELECT w.id, $1, $2, $3, $4, $4 FROM webhooks w \
         WHERE w.active = 1 AND w.reseller_id = $5 AND (w.customer_id IS NULL OR w.customer_id = $6) \
         AND w.events LIKE $7 \
         AND EXISTS (SELECT 1 FROM resellers r WHERE r.id = w.reseller_id AND r.status = 'active') \
         AND (w.customer_id IS NULL OR EXISTS \
              (SELECT 1 FROM customers c WHERE c.id = w.customer_id AND c.status = 'active')) \
         ON CONFLICT (webhook_id, event_type, event_key) DO NOTHING",
    )
    .bind(event.as_str())
    .bind(key)
    .bind(payload.to_string())
    .bind(now)
    .bind(reseller.0)
    .bind(customer.map(|c| c.0))
    .bind(pattern)
    .execute(conn)
    .await?
    .rows_affected())
}

/// Whether any active webhook of these resellers wants `event`: lets hot
/// paths skip enqueueing entirely when nobody listens.
pub(crate) async fn anyone_listens(
    conn: &mut AnyConnection,
    event: WebhookEvent,
    resellers: &[i64],
) -> Result<bool> {
    let pattern = format!("%{}%", event.as_str());
    for reseller in resellers {
        let found = sqlx::query(
            "SELECT 1 AS one FROM webhooks WHERE active = 1 AND reseller_id = $1 AND events LIKE $2 LIMIT 1",
        )
        .bind(reseller)
        .bind(&pattern)
        .fetch_optional(&mut *conn)
        .await?;
        if found.is_some() {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{TestDb, TwoTenants};

    fn record(uid: &str, t: &TwoTenants, of_b: bool) -> crate::call_records::NewCallRecord {
        let (reseller, customer) = if of_b {
            (t.reseller_y.id, t.customer_b.id)
        } else {
            (t.reseller_x.id, t.customer_a.id)
        };
        crate::testing::answered_call(uid, reseller, customer, 1_790_000_000_000, 60_000)
    }

    fn hook(url: &str, events: &[WebhookEvent]) -> NewWebhook {
        NewWebhook {
            url: url.to_owned(),
            events: events.to_vec(),
            customer_id: None,
            reseller_id: None,
        }
    }

    async fn scoped_queued_once_and_retried(db: TestDb) {
        let t = TwoTenants::create(&db.store).await;
        let hooks = db.store.webhooks();
        let sys = Principal::system();
        let (x_hook, secret) = hooks
            .create(
                &t.reseller_x_admin,
                &hook("https://crm.x.test/calls", &[WebhookEvent::CallEnded]),
            )
            .await
            .unwrap();
        assert!(secret.starts_with("whsec_"));
        assert_eq!(x_hook.customer_id, None);
        let mut for_a = hook(
            "https://acme.test/hook",
            &[WebhookEvent::CallEnded, WebhookEvent::StatementReady],
        );
        for_a.customer_id = Some(t.customer_a.id);
        let (a_hook, _) = hooks.create(&t.customer_a_admin, &for_a).await.unwrap();
        // Validation and scope, from the attacker's side.
        assert!(matches!(
            hooks
                .create(
                    &t.reseller_x_admin,
                    &hook("http://plain.test/", &[WebhookEvent::CallEnded])
                )
                .await,
            Err(StoreError::Invalid(_))
        ));
        assert!(matches!(
            hooks
                .create(
                    &t.reseller_x_admin,
                    &hook("https://user:pw@x.test/", &[WebhookEvent::CallEnded])
                )
                .await,
            Err(StoreError::Invalid(_))
        ));
        let mut into_b = hook("https://evil.test/", &[WebhookEvent::CallEnded]);
        into_b.customer_id = Some(t.customer_b.id);
        assert!(matches!(
            hooks.create(&t.reseller_x_admin, &into_b).await,
            Err(StoreError::NotFound)
        ));
        assert!(matches!(
            hooks.get(&t.reseller_y_admin, x_hook.id).await,
            Err(StoreError::NotFound)
        ));
        assert!(matches!(
            hooks.get(&t.customer_b_admin, a_hook.id).await,
            Err(StoreError::NotFound)
        ));
        assert!(hooks.list(&t.customer_b_admin).await.unwrap().is_empty());
        assert_eq!(hooks.list(&t.customer_a_admin).await.unwrap().len(), 1);
        assert!(matches!(
            hooks.delete(&t.customer_a_admin, x_hook.id).await,
            Err(StoreError::NotFound)
        ));

        // Stored calls are queued once for both webhooks; B's call for neither.
        let batch = [record("r1", &t, false), record("r2", &t, true)];
        db.store
            .call_records()
            .insert_batch(&sys, &batch)
            .await
            .unwrap();
        db.store
            .call_records()
            .insert_batch(&sys, &batch)
            .await
            .unwrap();
        assert_eq!(
            hooks
                .deliveries(&t.reseller_x_admin, x_hook.id, None, 10)
                .await
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            hooks
                .deliveries(&t.customer_a_admin, a_hook.id, None, 10)
                .await
                .unwrap()
                .len(),
            1
        );
        assert!(matches!(
            hooks
                .deliveries(&t.customer_b_admin, a_hook.id, None, 10)
                .await,
            Err(StoreError::NotFound)
        ));

        // Claimed once (leased), retried with backoff, then delivered.
        let now = crate::now_ms();
        let due = hooks.claim_due(&sys, now, 10).await.unwrap();
        assert_eq!(due.len(), 2);
        assert!(
            hooks.claim_due(&sys, now, 10).await.unwrap().is_empty(),
            "leased"
        );
        let first = &due[0];
        assert!(first.payload.contains("\"call_ended\""));
        hooks
            .record_attempt(
                &sys,
                first,
                &Attempt::Failed {
                    status: Some(500),
                    error: "HTTP 500".into(),
                },
                now,
            )
            .await
            .unwrap();
        let log = hooks
            .deliveries(&sys, first.webhook_id, None, 10)
            .await
            .unwrap();
        assert_eq!(log[0].state, DeliveryState::Pending);
        assert_eq!(log[0].attempts, 1);
        assert_eq!(log[0].next_attempt_at, now + backoff_ms(0));
        let again = hooks
            .claim_due(&sys, now + backoff_ms(0), 10)
            .await
            .unwrap();
        assert_eq!(again.len(), 1);
        hooks
            .record_attempt(&sys, &again[0], &Attempt::Delivered { status: 204 }, now)
            .await
            .unwrap();
        let log = hooks
            .deliveries(&sys, first.webhook_id, None, 10)
            .await
            .unwrap();
        assert_eq!(log[0].state, DeliveryState::Delivered);
        assert_eq!(log[0].attempts, 2);
        // Given up after the last attempt.
        let mut last = due[1].clone();
        last.attempts = MAX_ATTEMPTS - 1;
        assert_eq!(last.claim_token, due[0].claim_token);
        hooks
            .record_attempt(
                &sys,
                &last,
                &Attempt::Failed {
                    status: None,
                    error: "timeout".into(),
                },
                now,
            )
            .await
            .unwrap();
        let log = hooks
            .deliveries(&sys, last.webhook_id, None, 10)
            .await
            .unwrap();
        assert_eq!(log[0].state, DeliveryState::Failed);

        // Statements are announced once per month and webhook.
        let mut x_statements = hook(
            "https://crm.x.test/statements",
            &[WebhookEvent::StatementReady],
        );
        x_statements.reseller_id = Some(t.reseller_x.id);
        let (xs, _) = hooks.create(&sys, &x_statements).await.unwrap();
        let nov_15 = 1_794_787_200_000; // 2026-11-16 00:00 UTC
        let queued = hooks.enqueue_statements(&sys, nov_15).await.unwrap();
        assert_eq!(
            queued, 3,
            "A's statement for A's webhook and X's, and X's own"
        );
        assert_eq!(hooks.enqueue_statements(&sys, nov_15).await.unwrap(), 0);
        let log = hooks.deliveries(&sys, xs.id, None, 10).await.unwrap();
        let keys: Vec<&str> = log.iter().map(|d| d.event_key.as_str()).collect();
        assert!(
            keys.contains(&format!("customer:{}:2026-10", t.customer_a.id).as_str()),
            "{keys:?}"
        );
        assert!(
            keys.contains(&format!("reseller:{}:2026-10", t.reseller_x.id).as_str()),
            "{keys:?}"
        );
    }

    async fn each_owner_has_a_few_webhooks_at_most(db: TestDb) {
        let t = TwoTenants::create(&db.store).await;
        let hooks = db.store.webhooks();
        let mut new = hook("https://acme.test/", &[WebhookEvent::CallEnded]);
        new.customer_id = Some(t.customer_a.id);
        for _ in 0..MAX_PER_OWNER {
            hooks.create(&t.customer_a_admin, &new).await.unwrap();
        }
        assert!(matches!(
            hooks.create(&t.customer_a_admin, &new).await,
            Err(StoreError::Conflict(_))
        ));
        // The reseller's own allowance is separate.
        hooks
            .create(
                &t.reseller_x_admin,
                &hook("https://x.test/", &[WebhookEvent::CallEnded]),
            )
            .await
            .unwrap();
    }

    #[test]
    fn backoff_doubles_up_to_an_hour() {
        assert_eq!(backoff_ms(0), 10_000);
        assert_eq!(backoff_ms(1), 20_000);
        assert_eq!(backoff_ms(9), 3_600_000);
        assert_eq!(backoff_ms(i64::MAX), 3_600_000);
        let berlin: chrono_tz::Tz = "Europe/Berlin".parse().unwrap();
        // 2026-01-01 00:30 in Berlin is still December 2025 in UTC.
        assert_eq!(last_closed_month(1_767_223_800_000, berlin), "2025-12");
    }

    crate::both_engines!(
        scoped_queued_once_and_retried,
        each_owner_has_a_few_webhooks_at_most
    );
}
