//! Customers (tenants): a reseller's end customers, each with its own SIP
//! domain, extensions and devices.

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::audit::{self, Event};
use crate::changes::Change;
use crate::error::OnViolation;
use crate::principal::Level;
use crate::resellers::Status;
use crate::rows::enum_col;
use crate::secrets::DigestHa1;
use crate::validate::{self, Checker};
use crate::{CustomerId, Millis, PlanId, Principal, ResellerId, Result, Store, StoreError};

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Customer {
    pub id: CustomerId,
    pub reseller_id: ResellerId,
    pub name: String,
    pub sip_domain: String,
    pub status: Status,
    /// ISO 3166-1 alpha-2; decides how dialled national numbers are read.
    pub country: String,
    pub time_zone: String,
    pub language: String,
    pub retail_plan_id: Option<PlanId>,
    pub created_at: Millis,
    pub closed_at: Option<Millis>,
    pub version: i64,
}

/// A new customer; what is left out comes from its reseller.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewCustomer {
    pub name: String,
    /// Defaults to `<name as a DNS label>.<reseller's SIP domain suffix>`.
    pub sip_domain: Option<String>,
    pub country: Option<String>,
    pub time_zone: Option<String>,
    pub language: Option<String>,
    pub retail_plan_id: Option<PlanId>,
}

/// The changeable settings of a customer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CustomerSettings {
    pub name: String,
    pub sip_domain: String,
    pub country: String,
    pub time_zone: String,
    pub language: String,
    pub retail_plan_id: Option<PlanId>,
}

impl CustomerSettings {
    fn validate(&self) -> Result<()> {
        Checker::new()
            .text("name", &self.name, 200)
            .check(
                validate::is_domain(&self.sip_domain),
                "sip_domain",
                "must be a lower-case DNS name such as acme.voice.example.net",
            )
            .check(
                validate::is_country(&self.country),
                "country",
                "must be an ISO 3166 code such as DE",
            )
            .check(
                validate::is_time_zone(&self.time_zone),
                "time_zone",
                "must be an IANA time zone such as Europe/Berlin",
            )
            .check(
                validate::is_language(&self.language),
                "language",
                "must be en or de",
            )
            .finish()
    }
}

const COLUMNS: &str = "id, reseller_id, name, sip_domain, status, country, time_zone, language, \
    retail_plan_id, created_at, closed_at, version";

fn from_row(row: &AnyRow) -> Result<Customer, sqlx::Error> {
    Ok(Customer {
        id: CustomerId(row.try_get("id")?),
        reseller_id: ResellerId(row.try_get("reseller_id")?),
        name: row.try_get("name")?,
        sip_domain: row.try_get("sip_domain")?,
        status: enum_col(row, "status", Status::parse)?,
        country: row.try_get("country")?,
        time_zone: row.try_get("time_zone")?,
        language: row.try_get("language")?,
        retail_plan_id: row.try_get::<Option<i64>, _>("retail_plan_id")?.map(PlanId),
        created_at: row.try_get("created_at")?,
        closed_at: row.try_get("closed_at")?,
        version: row.try_get("version")?,
    })
}

const ON_WRITE: OnViolation<'static> = OnViolation {
    unique: "the SIP domain is already in use",
    foreign_key: "the price plan does not exist or is not one of the reseller's",
};

pub struct Customers<'s>(pub(crate) &'s Store);

impl Customers<'_> {
    /// The customers the caller can see, optionally of one reseller only.
    pub async fn list(
        &self,
        by: &Principal,
        reseller: Option<ResellerId>,
    ) -> Result<Vec<Customer>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM customers \
             WHERE ($1 IS NULL OR reseller_id = $1) AND ($2 IS NULL OR id = $2) AND ($3 IS NULL OR reseller_id = $3) \
             ORDER BY name, id"
        ))
        .bind(by.scope.reseller_param())
        .bind(by.scope.customer_param())
        .bind(reseller.map(|r| r.0))
        .fetch_all(self.0.pool())
        .await?;
        Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
    }

    /// One customer, if the caller can see it.
    pub async fn get(&self, by: &Principal, id: CustomerId) -> Result<Customer> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM customers WHERE id = $1 AND ($2 IS NULL OR reseller_id = $2) AND ($3 IS NULL OR id = $3)"
        ))
        .bind(id.0)
        .bind(by.scope.reseller_param())
        .bind(by.scope.customer_param())
        .fetch_optional(self.0.pool())
        .await?
        .ok_or(StoreError::NotFound)?;
        Ok(from_row(&row)?)
    }

    /// Creates a customer of `reseller` (the caller's own, unless the operator).
    pub async fn create(
        &self,
        by: &Principal,
        reseller: ResellerId,
        new: &NewCustomer,
    ) -> Result<Customer> {
        by.may_write(Level::Reseller)?;
        let owner = self.0.resellers().get(by, reseller).await?;
        let settings = CustomerSettings {
            sip_domain: new.sip_domain.clone().unwrap_or_else(|| {
                format!("{}.{}", validate::slug(&new.name), owner.sip_domain_suffix)
            }),
            name: new.name.clone(),
            country: new.country.clone().unwrap_or_else(|| "DE".to_owned()),
            time_zone: new
                .time_zone
                .clone()
                .unwrap_or_else(|| owner.time_zone.clone()),
            language: new
                .language
                .clone()
                .unwrap_or_else(|| owner.default_language.clone()),
            retail_plan_id: new.retail_plan_id,
        };
        settings.validate()?;
        let mut tx = self.0.begin().await?;
        let row = sqlx::query(
            "INSERT INTO customers (reseller_id, name, sip_domain, status, country, time_zone, language, \
             retail_plan_id, created_at) VALUES ($1, $2, $3, 'active', $4, $5, $6, $7, $8) RETURNING id",
        )
        .bind(reseller.0)
        .bind(&settings.name)
        .bind(&settings.sip_domain)
        .bind(&settings.country)
        .bind(&settings.time_zone)
        .bind(&settings.language)
        .bind(settings.retail_plan_id.map(|p| p.0))
        .bind(crate::now_ms())
        .fetch_one(tx.conn())
        .await
        .map_err(|e| ON_WRITE.map(e))?;
        let id = CustomerId(row.try_get("id")?);
        audit::record(
            &mut tx,
            by,
            Event {
                action: "create",
                object_type: "customer",
                object_id: Some(id.0),
                reseller: Some(reseller),
                customer: Some(id),
                details: serde_json::to_value(&settings).unwrap_or_default(),
            },
        )
        .await?;
        tx.changed(Change::Customer { customer: id });
        tx.commit().await?;
        self.get(by, id).await
    }

    /// Replaces a customer's settings (reseller admin or operator). A new SIP
    /// domain is a new digest realm: every device's HA1 is recomputed.
    pub async fn update(
        &self,
        by: &Principal,
        id: CustomerId,
        if_version: Option<i64>,
        settings: &CustomerSettings,
    ) -> Result<Customer> {
        let current = self.get(by, id).await?;
        by.may_write(Level::Reseller)?;
        settings.validate()?;
        let mut tx = self.0.begin().await?;
        let done = sqlx::query(
            "UPDATE customers SET name = $1, sip_domain = $2, country = $3, time_zone = $4, language = $5, \
             retail_plan_id = $6, version = version + 1 WHERE id = $7 AND version = $8",
        )
        .bind(&settings.name)
        .bind(&settings.sip_domain)
        .bind(&settings.country)
        .bind(&settings.time_zone)
        .bind(&settings.language)
        .bind(settings.retail_plan_id.map(|p| p.0))
        .bind(id.0)
        .bind(if_version.unwrap_or(current.version))
        .execute(tx.conn())
        .await
        .map_err(|e| ON_WRITE.map(e))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::VersionMismatch);
        }
        if settings.sip_domain != current.sip_domain {
            let devices =
                sqlx::query("SELECT id, sip_user, secret_enc FROM devices WHERE customer_id = $1")
                    .bind(id.0)
                    .fetch_all(tx.conn())
                    .await?;
            for device in &devices {
                let user: String = device.try_get("sip_user")?;
                let secret = self
                    .0
                    .secrets()
                    .decrypt(&device.try_get::<String, _>("secret_enc")?)?;
                let ha1 = DigestHa1::compute(&user, &settings.sip_domain, &secret);
                sqlx::query("UPDATE devices SET ha1_realm = $1, ha1_md5 = $2, ha1_sha256 = $3 WHERE id = $4")
                    .bind(&settings.sip_domain)
                    .bind(&ha1.md5)
                    .bind(&ha1.sha256)
                    .bind(device.try_get::<i64, _>("id")?)
                    .execute(tx.conn())
                    .await?;
            }
        }
        audit::record(
            &mut tx,
            by,
            Event {
                action: "update",
                object_type: "customer",
                object_id: Some(id.0),
                reseller: Some(current.reseller_id),
                customer: Some(id),
                details: serde_json::to_value(settings).unwrap_or_default(),
            },
        )
        .await?;
        tx.changed(Change::Customer { customer: id });
        tx.commit().await?;
        self.get(by, id).await
    }

    /// Suspends, reactivates or closes a customer. A suspended or closed
    /// customer's phones can no longer register or call.
    pub async fn set_status(
        &self,
        by: &Principal,
        id: CustomerId,
        status: Status,
    ) -> Result<Customer> {
        let current = self.get(by, id).await?;
        by.may_write(Level::Reseller)?;
        if current.status == Status::Closed && status != Status::Closed {
            return Err(StoreError::invalid(
                "status",
                "a closed customer cannot be reopened",
            ));
        }
        let mut tx = self.0.begin().await?;
        let closed_at = match status {
            Status::Closed => Some(current.closed_at.unwrap_or_else(crate::now_ms)),
            _ => None,
        };
        sqlx::query(
            "UPDATE customers SET status = $1, closed_at = $2, version = version + 1 WHERE id = $3",
        )
        .bind(status.as_str())
        .bind(closed_at)
        .bind(id.0)
        .execute(tx.conn())
        .await?;
        if status == Status::Closed {
            // Seats stop being billed the moment the customer closes.
            let now = closed_at.unwrap_or_else(crate::now_ms);
            sqlx::query("UPDATE extensions SET deleted_at = $1 WHERE customer_id = $2 AND deleted_at IS NULL")
                .bind(now)
                .bind(id.0)
                .execute(tx.conn())
                .await?;
            sqlx::query("UPDATE number_assignments SET released_at = $1 WHERE customer_id = $2 AND released_at IS NULL")
                .bind(now)
                .bind(id.0)
                .execute(tx.conn())
                .await?;
            sqlx::query(&format!(
                "UPDATE phone_numbers SET customer_id = NULL, {}, version = version + 1 \
                 WHERE customer_id = $1",
                crate::destinations::NUMBER.nulls()
            ))
            .bind(id.0)
            .execute(tx.conn())
            .await?;
            tx.changed(Change::Numbers);
        }
        audit::record(
            &mut tx,
            by,
            Event {
                action: "set_status",
                object_type: "customer",
                object_id: Some(id.0),
                reseller: Some(current.reseller_id),
                customer: Some(id),
                details: serde_json::json!({ "status": status }),
            },
        )
        .await?;
        tx.changed(Change::Customer { customer: id });
        tx.commit().await?;
        self.get(by, id).await
    }
}
