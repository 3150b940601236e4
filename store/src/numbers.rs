//! Public phone numbers (DIDs): unique platform-wide, held by the operator's
//! pool or a reseller, assigned to at most one customer at a time, and routed to
//! one of that customer's destinations. Assignments are kept as history because
//! a number is billed for the days a customer held it.

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::audit::{self, Event};
use crate::changes::Change;
use crate::error::OnViolation;
use crate::principal::Level;
use crate::validate;
use crate::{CustomerId, Millis, NumberId, Principal, ResellerId, Result, Store, StoreError};

pub use crate::destinations::Destination;
use crate::destinations::{self, NUMBER};

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PhoneNumber {
    pub id: NumberId,
    pub e164: String,
    pub reseller_id: Option<ResellerId>,
    pub customer_id: Option<CustomerId>,
    pub destination: Option<Destination>,
    /// Its incoming calls are recorded (the customer's recording policy).
    pub record_calls: bool,
    pub created_at: Millis,
    pub version: i64,
}

fn columns() -> String {
    format!(
        "n.id, n.e164, n.reseller_id, n.customer_id, {}, n.record_calls, n.created_at, n.version",
        NUMBER.select("n")
    )
}
/// A reseller sees the numbers it holds; a customer the ones assigned to it.
const SCOPED: &str = "FROM phone_numbers n \
    WHERE ($1 IS NULL OR n.reseller_id = $1) AND ($2 IS NULL OR n.customer_id = $2)";

fn from_row(row: &AnyRow) -> Result<PhoneNumber, sqlx::Error> {
    Ok(PhoneNumber {
        id: NumberId(row.try_get("id")?),
        e164: row.try_get("e164")?,
        reseller_id: row
            .try_get::<Option<i64>, _>("reseller_id")?
            .map(ResellerId),
        customer_id: row
            .try_get::<Option<i64>, _>("customer_id")?
            .map(CustomerId),
        destination: NUMBER.read(row)?,
        record_calls: crate::rows::flag(row, "record_calls")?,
        created_at: row.try_get("created_at")?,
        version: row.try_get("version")?,
    })
}

pub struct Numbers<'s>(pub(crate) &'s Store);

impl Numbers<'_> {
    pub async fn list(&self, by: &Principal) -> Result<Vec<PhoneNumber>> {
        by.may_read(Level::Customer)?;
        let rows = sqlx::query(&format!("SELECT {} {SCOPED} ORDER BY n.e164", columns()))
            .bind(by.scope.reseller_param())
            .bind(by.scope.customer_param())
            .fetch_all(self.0.pool())
            .await?;
        Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
    }

    pub async fn get(&self, by: &Principal, id: NumberId) -> Result<PhoneNumber> {
        by.may_read(Level::Customer)?;
        let row = sqlx::query(&format!("SELECT {} {SCOPED} AND n.id = $3", columns()))
            .bind(by.scope.reseller_param())
            .bind(by.scope.customer_param())
            .bind(id.0)
            .fetch_optional(self.0.pool())
            .await?
            .ok_or(StoreError::NotFound)?;
        Ok(from_row(&row)?)
    }

    /// Adds a number to the platform (operator only), in the operator's pool or
    /// held by a reseller.
    pub async fn create(
        &self,
        by: &Principal,
        e164: &str,
        reseller: Option<ResellerId>,
    ) -> Result<PhoneNumber> {
        by.may_write(Level::Operator)?;
        if !validate::is_e164(e164) {
            return Err(StoreError::invalid(
                "e164",
                "must be an E.164 number such as +4930123456",
            ));
        }
        let mut tx = self.0.begin().await?;
        let row = sqlx::query("INSERT INTO phone_numbers (e164, reseller_id, created_at) VALUES ($1, $2, $3) RETURNING id")
            .bind(e164)
            .bind(reseller.map(|r| r.0))
            .bind(crate::now_ms())
            .fetch_one(tx.conn())
            .await
            .map_err(|e| {
                OnViolation {
                    unique: "the number already exists on the platform",
                    foreign_key: "the reseller does not exist",
                }
                .map(e)
            })?;
        let id = NumberId(row.try_get("id")?);
        audit::record(
            &mut tx,
            by,
            Event {
                action: "create",
                object_type: "phone_number",
                object_id: Some(id.0),
                reseller,
                customer: None,
                details: serde_json::json!({ "e164": e164 }),
            },
        )
        .await?;
        tx.changed(Change::Numbers);
        tx.commit().await?;
        self.get(by, id).await
    }

    /// Assigns a number its reseller holds to one of the reseller's customers.
    /// A number already assigned must be released first.
    pub async fn assign(
        &self,
        by: &Principal,
        id: NumberId,
        customer: CustomerId,
    ) -> Result<PhoneNumber> {
        by.may_write(Level::Reseller)?;
        let number = self.get(by, id).await?;
        let owner = self.0.customers().get(by, customer).await?;
        if number.reseller_id != Some(owner.reseller_id) {
            return Err(StoreError::invalid(
                "customer_id",
                "the number is not held by the customer's reseller",
            ));
        }
        let now = crate::now_ms();
        let mut tx = self.0.begin().await?;
        let on_assign = OnViolation {
            unique: "the number is already assigned to a customer",
            foreign_key: "the customer does not belong to the number's reseller",
        };
        // The open-assignment index refuses a second holder even if two
        // assignments race.
        sqlx::query(
            "INSERT INTO number_assignments (number_id, reseller_id, customer_id, assigned_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(id.0)
        .bind(owner.reseller_id.0)
        .bind(customer.0)
        .bind(now)
        .execute(tx.conn())
        .await
        .map_err(|e| on_assign.map(e))?;
        sqlx::query("UPDATE phone_numbers SET customer_id = $1, version = version + 1 WHERE id = $2 AND customer_id IS NULL")
            .bind(customer.0)
            .bind(id.0)
            .execute(tx.conn())
            .await
            .map_err(|e| on_assign.map(e))?;
        audit::record(
            &mut tx,
            by,
            Event {
                action: "assign",
                object_type: "phone_number",
                object_id: Some(id.0),
                reseller: Some(owner.reseller_id),
                customer: Some(customer),
                details: serde_json::json!({ "e164": number.e164 }),
            },
        )
        .await?;
        tx.changed(Change::Numbers);
        tx.commit().await?;
        self.get(by, id).await
    }

    /// Takes a number back from its customer; its billing stops now.
    pub async fn release(&self, by: &Principal, id: NumberId) -> Result<PhoneNumber> {
        by.may_write(Level::Reseller)?;
        let number = self.get(by, id).await?;
        let Some(customer) = number.customer_id else {
            return Ok(number);
        };
        let mut tx = self.0.begin().await?;
        sqlx::query("UPDATE number_assignments SET released_at = $1 WHERE number_id = $2 AND released_at IS NULL")
            .bind(crate::now_ms())
            .bind(id.0)
            .execute(tx.conn())
            .await?;
        sqlx::query(&format!(
            "UPDATE phone_numbers SET customer_id = NULL, {}, record_calls = 0, \
             version = version + 1 WHERE id = $1",
            NUMBER.nulls()
        ))
        .bind(id.0)
        .execute(tx.conn())
        .await?;
        audit::record(
            &mut tx,
            by,
            Event {
                action: "release",
                object_type: "phone_number",
                object_id: Some(id.0),
                reseller: number.reseller_id,
                customer: Some(customer),
                details: serde_json::json!({ "e164": number.e164 }),
            },
        )
        .await?;
        tx.changed(Change::Numbers);
        tx.commit().await?;
        self.get(by, id).await
    }

    /// Routes an assigned number to one of its customer's extensions or ring
    /// groups (customer admin and above).
    pub async fn set_destination(
        &self,
        by: &Principal,
        id: NumberId,
        destination: Option<Destination>,
    ) -> Result<PhoneNumber> {
        by.may_write(Level::Customer)?;
        let number = self.get(by, id).await?;
        let Some(customer) = number.customer_id else {
            return Err(StoreError::invalid(
                "destination",
                "the number is not assigned to a customer",
            ));
        };
        if let Some(d) = destination {
            if !destinations::belongs(self.0, by, customer, d, true).await? {
                return Err(StoreError::invalid(
                    "destination",
                    "the destination does not exist in this customer",
                ));
            }
        }
        let mut tx = self.0.begin().await?;
        // The composite foreign keys (extension, group) also refuse a
        // destination of another customer.
        let values = NUMBER.values(destination);
        let customer_param = 2 + values.len();
        let sql = format!(
            "UPDATE phone_numbers SET {}, version = version + 1 WHERE id = $1 AND {}",
            NUMBER.assignments(2),
            NUMBER.still_theirs(2, customer_param)
        );
        let mut query = sqlx::query(&sql).bind(id.0);
        for value in values {
            query = query.bind(value);
        }
        let done = query
            .bind(customer.0)
            .execute(tx.conn())
            .await
            .map_err(|e| {
                OnViolation {
                    unique: "",
                    foreign_key: "the destination does not exist in this customer",
                }
                .map(e)
            })?;
        if done.rows_affected() == 0 {
            return Err(StoreError::invalid(
                "destination",
                "the destination does not exist in this customer",
            ));
        }
        audit::record(
            &mut tx,
            by,
            Event {
                action: "set_destination",
                object_type: "phone_number",
                object_id: Some(id.0),
                reseller: number.reseller_id,
                customer: Some(customer),
                details: serde_json::json!({ "destination": destination }),
            },
        )
        .await?;
        tx.changed(Change::Numbers);
        tx.commit().await?;
        self.get(by, id).await
    }
}
