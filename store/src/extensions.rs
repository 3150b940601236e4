//! Extensions: the internal numbers of a customer's phone system. Billing
//! counts the days each one existed, so removal only marks it deleted.

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::audit::{self, Event};
use crate::changes::Change;
use crate::error::OnViolation;
use crate::principal::Level;
use crate::rows::{flag, flag_value};
use crate::validate::{self, Checker};
use crate::{CustomerId, ExtensionId, Millis, Principal, ResellerId, Result, Store, StoreError};

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Extension {
    pub id: ExtensionId,
    pub customer_id: CustomerId,
    pub reseller_id: ResellerId,
    pub number: String,
    pub display_name: String,
    pub dnd: bool,
    pub created_at: Millis,
    pub deleted_at: Option<Millis>,
    pub version: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewExtension {
    pub number: String,
    pub display_name: String,
}

/// What a customer user may change on their own extension, and an admin on any.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExtensionSettings {
    pub display_name: String,
    pub dnd: bool,
}

fn check_display_name(check: &mut Checker, name: &str) {
    check.check(
        name.chars().count() <= 100 && !name.chars().any(char::is_control),
        "display_name",
        "must be at most 100 characters",
    );
}

const COLUMNS: &str = "e.id, e.customer_id, c.reseller_id, e.number, e.display_name, e.dnd, e.created_at, e.deleted_at, e.version";

/// Joins customers so the caller's scope can be checked in the same query.
const SCOPED: &str = "FROM extensions e JOIN customers c ON c.id = e.customer_id \
    WHERE ($1 IS NULL OR c.reseller_id = $1) AND ($2 IS NULL OR e.customer_id = $2) AND ($3 IS NULL OR e.id = $3)";

fn from_row(row: &AnyRow) -> Result<Extension, sqlx::Error> {
    Ok(Extension {
        id: ExtensionId(row.try_get("id")?),
        customer_id: CustomerId(row.try_get("customer_id")?),
        reseller_id: ResellerId(row.try_get("reseller_id")?),
        number: row.try_get("number")?,
        display_name: row.try_get("display_name")?,
        dnd: flag(row, "dnd")?,
        created_at: row.try_get("created_at")?,
        deleted_at: row.try_get("deleted_at")?,
        version: row.try_get("version")?,
    })
}

pub struct Extensions<'s>(pub(crate) &'s Store);

impl Extensions<'_> {
    /// A customer's live extensions in number order (for a customer user: its own).
    pub async fn list(&self, by: &Principal, customer: CustomerId) -> Result<Vec<Extension>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} {SCOPED} AND e.customer_id = $4 AND e.deleted_at IS NULL \
             ORDER BY length(e.number), e.number"
        ))
        .bind(by.scope.reseller_param())
        .bind(by.scope.customer_param())
        .bind(by.scope.extension_param())
        .bind(customer.0)
        .fetch_all(self.0.pool())
        .await?;
        Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
    }

    /// One extension (also a deleted one, for history), if the caller can see it.
    pub async fn get(&self, by: &Principal, id: ExtensionId) -> Result<Extension> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} {SCOPED} AND e.id = $4"))
            .bind(by.scope.reseller_param())
            .bind(by.scope.customer_param())
            .bind(by.scope.extension_param())
            .bind(id.0)
            .fetch_optional(self.0.pool())
            .await?
            .ok_or(StoreError::NotFound)?;
        Ok(from_row(&row)?)
    }

    /// A live extension, if the caller can see it.
    pub(crate) async fn get_live(&self, by: &Principal, id: ExtensionId) -> Result<Extension> {
        let ext = self.get(by, id).await?;
        if ext.deleted_at.is_some() {
            return Err(StoreError::NotFound);
        }
        Ok(ext)
    }

    pub async fn create(
        &self,
        by: &Principal,
        customer: CustomerId,
        new: &NewExtension,
    ) -> Result<Extension> {
        by.may_write(Level::Customer)?;
        let owner = self.0.customers().get(by, customer).await?;
        let mut check = Checker::new();
        check.check(
            validate::is_digits(&new.number, 10),
            "number",
            "must be 1 to 10 digits",
        );
        check_display_name(&mut check, &new.display_name);
        check.finish()?;
        // A ring group's number dialled would otherwise reach the extension.
        let taken = sqlx::query(
            "SELECT 1 AS one FROM ring_groups WHERE customer_id = $1 AND number = $2 AND deleted_at IS NULL",
        )
        .bind(customer.0)
        .bind(&new.number)
        .fetch_optional(self.0.pool())
        .await?;
        if taken.is_some() {
            return Err(StoreError::Conflict(
                "a ring group has this number".to_owned(),
            ));
        }
        if crate::conference_rooms::has_number(self.0, customer, &new.number).await? {
            return Err(StoreError::Conflict(
                "a conference room has this number".to_owned(),
            ));
        }
        let mut tx = self.0.begin().await?;
        let row = sqlx::query(
            "INSERT INTO extensions (customer_id, number, display_name, created_at) VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(customer.0)
        .bind(&new.number)
        .bind(&new.display_name)
        .bind(crate::now_ms())
        .fetch_one(tx.conn())
        .await
        .map_err(|e| {
            OnViolation {
                unique: "the customer already has an extension with this number",
                foreign_key: "the customer does not exist",
            }
            .map(e)
        })?;
        let id = ExtensionId(row.try_get("id")?);
        audit::record(
            &mut tx,
            by,
            Event {
                action: "create",
                object_type: "extension",
                object_id: Some(id.0),
                reseller: Some(owner.reseller_id),
                customer: Some(customer),
                details: serde_json::to_value(new).unwrap_or_default(),
            },
        )
        .await?;
        tx.changed(Change::Customer { customer });
        tx.commit().await?;
        self.get(by, id).await
    }

    /// Changes display name and do-not-disturb. A customer user may do this for
    /// its own extension.
    pub async fn update(
        &self,
        by: &Principal,
        id: ExtensionId,
        if_version: Option<i64>,
        settings: &ExtensionSettings,
    ) -> Result<Extension> {
        let current = self.get_live(by, id).await?;
        if by.read_only {
            return Err(StoreError::Forbidden("this credential is read-only"));
        }
        let mut check = Checker::new();
        check_display_name(&mut check, &settings.display_name);
        check.finish()?;
        let mut tx = self.0.begin().await?;
        let done = sqlx::query(
            "UPDATE extensions SET display_name = $1, dnd = $2, version = version + 1 \
             WHERE id = $3 AND version = $4 AND deleted_at IS NULL",
        )
        .bind(&settings.display_name)
        .bind(flag_value(settings.dnd))
        .bind(id.0)
        .bind(if_version.unwrap_or(current.version))
        .execute(tx.conn())
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::VersionMismatch);
        }
        audit::record(
            &mut tx,
            by,
            Event {
                action: "update",
                object_type: "extension",
                object_id: Some(id.0),
                reseller: Some(current.reseller_id),
                customer: Some(current.customer_id),
                details: serde_json::to_value(settings).unwrap_or_default(),
            },
        )
        .await?;
        tx.changed(Change::Customer {
            customer: current.customer_id,
        });
        tx.commit().await?;
        self.get(by, id).await
    }

    /// Removes an extension: its devices (and so their registrations) go, the
    /// extension row stays, marked deleted, for billing history.
    pub async fn delete(&self, by: &Principal, id: ExtensionId) -> Result<()> {
        by.may_write(Level::Customer)?;
        let current = self.get_live(by, id).await?;
        let mut tx = self.0.begin().await?;
        sqlx::query("DELETE FROM devices WHERE extension_id = $1")
            .bind(id.0)
            .execute(tx.conn())
            .await?;
        sqlx::query("DELETE FROM ring_group_members WHERE extension_id = $1")
            .bind(id.0)
            .execute(tx.conn())
            .await?;
        sqlx::query("DELETE FROM call_forwards WHERE extension_id = $1")
            .bind(id.0)
            .execute(tx.conn())
            .await?;
        sqlx::query("DELETE FROM logins WHERE extension_id = $1")
            .bind(id.0)
            .execute(tx.conn())
            .await?;
        // Numbers and business-hours rules that rang it (or its box) now
        // lead nowhere for that state.
        crate::destinations::forget(&mut tx, crate::destinations::Removed::Extension(id)).await?;
        sqlx::query("UPDATE ring_groups SET no_answer_extension_id = NULL, version = version + 1 WHERE no_answer_extension_id = $1")
            .bind(id.0)
            .execute(tx.conn())
            .await?;
        sqlx::query("UPDATE extensions SET deleted_at = $1, version = version + 1 WHERE id = $2")
            .bind(crate::now_ms().max(current.created_at))
            .bind(id.0)
            .execute(tx.conn())
            .await?;
        audit::record(
            &mut tx,
            by,
            Event {
                action: "delete",
                object_type: "extension",
                object_id: Some(id.0),
                reseller: Some(current.reseller_id),
                customer: Some(current.customer_id),
                details: serde_json::json!({ "number": current.number }),
            },
        )
        .await?;
        tx.changed(Change::Customer {
            customer: current.customer_id,
        });
        tx.changed(Change::Numbers);
        tx.commit().await
    }
}
