//! Price plans and their rate tables: the operator's wholesale plans (what a
//! reseller pays) and each reseller's retail plans (what its customers pay).
//! The rules that turn a plan into prices live in [`crate::rating`].
//!
//! Who sees what: the operator sees every plan; a reseller its own retail
//! plans and the wholesale plan it is billed on; a customer its retail plan.
//! Wholesale plans are written by the operator only, retail plans by their
//! reseller (or the operator).

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::audit::{self, Event};
use crate::changes::Change;
use crate::error::OnViolation;
use crate::principal::Level;
use crate::rating::RateRule;
use crate::rows::{enum_col, flag, flag_value, text_enum};
use crate::{Millis, PlanId, Principal, ResellerId, Result, Scope, Store, StoreError};

text_enum!(
    /// Whose price a plan is.
    Tier { Wholesale = "wholesale", Retail = "retail" }
);

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PricePlan {
    pub id: PlanId,
    /// None for the operator's wholesale plans.
    pub reseller_id: Option<ResellerId>,
    pub tier: Tier,
    pub name: String,
    pub currency: String,
    /// Monthly price of one extension (seat), prorated by day.
    pub extension_month_micros: i64,
    /// Monthly price of one phone number, prorated by day.
    pub number_month_micros: i64,
    pub internal_calls_free: bool,
    pub created_at: Millis,
    pub version: i64,
}

/// What a plan is created or changed with.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PlanSettings {
    pub name: String,
    pub currency: String,
    pub extension_month_micros: i64,
    pub number_month_micros: i64,
    pub internal_calls_free: bool,
}

const COLUMNS: &str = "p.id, p.reseller_id, p.tier, p.name, p.currency, p.extension_month_micros, \
    p.number_month_micros, p.internal_calls_free, p.created_at, p.version";
/// $1 reseller scope, $2 customer scope (see the module comment).
const SCOPED: &str = "FROM price_plans p WHERE \
    ($1 IS NULL OR p.reseller_id = $1 OR p.id = (SELECT wholesale_plan_id FROM resellers WHERE id = $1)) \
    AND ($2 IS NULL OR p.id = (SELECT retail_plan_id FROM customers WHERE id = $2))";

fn from_row(row: &AnyRow) -> Result<PricePlan, sqlx::Error> {
    Ok(PricePlan {
        id: PlanId(row.try_get("id")?),
        reseller_id: row
            .try_get::<Option<i64>, _>("reseller_id")?
            .map(ResellerId),
        tier: enum_col(row, "tier", Tier::parse)?,
        name: row.try_get("name")?,
        currency: row.try_get("currency")?,
        extension_month_micros: row.try_get("extension_month_micros")?,
        number_month_micros: row.try_get("number_month_micros")?,
        internal_calls_free: flag(row, "internal_calls_free")?,
        created_at: row.try_get("created_at")?,
        version: row.try_get("version")?,
    })
}

pub(crate) fn rate_from_row(row: &AnyRow) -> Result<RateRule, sqlx::Error> {
    Ok(RateRule {
        prefix: row.try_get("prefix")?,
        description: row.try_get("description")?,
        minute_micros: row.try_get("minute_micros")?,
        connection_micros: row.try_get("connection_micros")?,
        first_increment_s: row.try_get("first_increment_s")?,
        next_increment_s: row.try_get("next_increment_s")?,
        minimum_micros: row.try_get("minimum_micros")?,
    })
}

fn validate_settings(s: &PlanSettings) -> Result<()> {
    let mut errors = Vec::new();
    if s.name.trim().is_empty() || s.name.chars().count() > 200 {
        errors.push(crate::FieldError::new(
            "name",
            "must be 1 to 200 characters",
        ));
    }
    if s.currency.len() != 3 || !s.currency.chars().all(|c| c.is_ascii_uppercase()) {
        errors.push(crate::FieldError::new(
            "currency",
            "must be an ISO 4217 code such as EUR",
        ));
    }
    for (field, value) in [
        ("extension_month_micros", s.extension_month_micros),
        ("number_month_micros", s.number_month_micros),
    ] {
        if value < 0 {
            errors.push(crate::FieldError::new(field, "must not be negative"));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(StoreError::Invalid(errors))
    }
}

fn validate_rates(rates: &[RateRule]) -> Result<()> {
    let mut errors = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, r) in rates.iter().enumerate() {
        let field = |name: &str| format!("rates[{i}].{name}");
        if r.prefix.len() > 15 || !r.prefix.bytes().all(|b| b.is_ascii_digit()) {
            errors.push(crate::FieldError::new(
                field("prefix"),
                "must be up to 15 digits of an E.164 number without '+' (empty: every destination)",
            ));
        }
        if !seen.insert(r.prefix.as_str()) {
            errors.push(crate::FieldError::new(field("prefix"), "appears twice"));
        }
        if r.description.chars().count() > 200 {
            errors.push(crate::FieldError::new(
                field("description"),
                "must be at most 200 characters",
            ));
        }
        for (name, value) in [
            ("minute_micros", r.minute_micros),
            ("connection_micros", r.connection_micros),
            ("minimum_micros", r.minimum_micros),
        ] {
            if value < 0 {
                errors.push(crate::FieldError::new(field(name), "must not be negative"));
            }
        }
        for (name, value) in [
            ("first_increment_s", r.first_increment_s),
            ("next_increment_s", r.next_increment_s),
        ] {
            if !(1..=3600).contains(&value) {
                errors.push(crate::FieldError::new(
                    field(name),
                    "must be 1 to 3600 seconds",
                ));
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(StoreError::Invalid(errors))
    }
}

/// May `by` change plans owned by `owner` (None: wholesale)?
fn may_manage(by: &Principal, owner: Option<ResellerId>) -> Result<()> {
    match owner {
        None => by.may_write(Level::Operator),
        Some(reseller) => {
            by.may_write(Level::Reseller)?;
            match by.scope {
                Scope::Operator => Ok(()),
                Scope::Reseller { reseller: own } if own == reseller => Ok(()),
                _ => Err(StoreError::NotFound),
            }
        }
    }
}

pub struct PricePlans<'s>(pub(crate) &'s Store);

impl PricePlans<'_> {
    pub async fn list(&self, by: &Principal) -> Result<Vec<PricePlan>> {
        by.may_read(Level::Customer)?;
        let rows = sqlx::query(&format!("SELECT {COLUMNS} {SCOPED} ORDER BY p.id"))
            .bind(by.scope.reseller_param())
            .bind(by.scope.customer_param())
            .fetch_all(self.0.pool())
            .await?;
        Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
    }

    pub async fn get(&self, by: &Principal, id: PlanId) -> Result<PricePlan> {
        by.may_read(Level::Customer)?;
        let row = sqlx::query(&format!("SELECT {COLUMNS} {SCOPED} AND p.id = $3"))
            .bind(by.scope.reseller_param())
            .bind(by.scope.customer_param())
            .bind(id.0)
            .fetch_optional(self.0.pool())
            .await?
            .ok_or(StoreError::NotFound)?;
        Ok(from_row(&row)?)
    }

    /// Creates a plan: a wholesale plan when `owner` is None (operator only),
    /// else a retail plan of that reseller.
    pub async fn create(
        &self,
        by: &Principal,
        owner: Option<ResellerId>,
        settings: &PlanSettings,
    ) -> Result<PricePlan> {
        may_manage(by, owner)?;
        validate_settings(settings)?;
        let tier = if owner.is_some() {
            Tier::Retail
        } else {
            Tier::Wholesale
        };
        let mut tx = self.0.begin().await?;
        let row = sqlx::query(
            "INSERT INTO price_plans (reseller_id, tier, name, currency, extension_month_micros, \
             number_month_micros, internal_calls_free, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
        )
        .bind(owner.map(|r| r.0))
        .bind(tier.as_str())
        .bind(settings.name.trim())
        .bind(&settings.currency)
        .bind(settings.extension_month_micros)
        .bind(settings.number_month_micros)
        .bind(flag_value(settings.internal_calls_free))
        .bind(crate::now_ms())
        .fetch_one(tx.conn())
        .await
        .map_err(|e| {
            OnViolation {
                unique: "a price plan with this name already exists",
                foreign_key: "the reseller does not exist",
            }
            .map(e)
        })?;
        let id = PlanId(row.try_get("id")?);
        audit::record(
            &mut tx,
            by,
            Event {
                action: "create",
                object_type: "price_plan",
                object_id: Some(id.0),
                reseller: owner,
                customer: None,
                details: serde_json::json!({ "name": settings.name, "tier": tier.as_str() }),
            },
        )
        .await?;
        tx.changed(Change::PricePlans);
        tx.commit().await?;
        self.get(by, id).await
    }

    /// Replaces a plan's rate table. Records already rated keep their prices
    /// until the period is re-rated ([`crate::call_records::CallRecords::rerate`]).
    pub async fn set_rates(&self, by: &Principal, plan: PlanId, rates: &[RateRule]) -> Result<()> {
        let current = self.get(by, plan).await?;
        may_manage(by, current.reseller_id)?;
        validate_rates(rates)?;
        let mut tx = self.0.begin().await?;
        sqlx::query("DELETE FROM rates WHERE plan_id = $1")
            .bind(plan.0)
            .execute(tx.conn())
            .await?;
        for r in rates {
            sqlx::query(
                "INSERT INTO rates (plan_id, prefix, description, minute_micros, connection_micros, \
                 first_increment_s, next_increment_s, minimum_micros) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(plan.0)
            .bind(&r.prefix)
            .bind(&r.description)
            .bind(r.minute_micros)
            .bind(r.connection_micros)
            .bind(r.first_increment_s)
            .bind(r.next_increment_s)
            .bind(r.minimum_micros)
            .execute(tx.conn())
            .await?;
        }
        sqlx::query("UPDATE price_plans SET version = version + 1 WHERE id = $1")
            .bind(plan.0)
            .execute(tx.conn())
            .await?;
        audit::record(
            &mut tx,
            by,
            Event {
                action: "set_rates",
                object_type: "price_plan",
                object_id: Some(plan.0),
                reseller: current.reseller_id,
                customer: None,
                details: serde_json::json!({ "rates": rates.len() }),
            },
        )
        .await?;
        tx.changed(Change::PricePlans);
        tx.commit().await
    }

    /// A plan's rate table, ordered by prefix.
    pub async fn rates(&self, by: &Principal, plan: PlanId) -> Result<Vec<RateRule>> {
        self.get(by, plan).await?;
        let rows = sqlx::query(
            "SELECT prefix, description, minute_micros, connection_micros, first_increment_s, \
             next_increment_s, minimum_micros FROM rates WHERE plan_id = $1 ORDER BY prefix",
        )
        .bind(plan.0)
        .fetch_all(self.0.pool())
        .await?;
        Ok(rows.iter().map(rate_from_row).collect::<Result<_, _>>()?)
    }
}
