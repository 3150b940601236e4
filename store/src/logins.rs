//! Console logins: people who sign in to the console, each with one role
//! scoped to its level (operator, one reseller, one customer, or one
//! extension of a customer). Passwords are kept as argon2id hashes.

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::audit::{self, Event};
use crate::error::OnViolation;
use crate::principal::Level;
use crate::rows::{enum_col, flag, flag_value, text_enum};
use crate::secrets::{dummy_hash, hash_password, verify_password};
use crate::validate::{self, Checker};
use crate::{
    Actor, CustomerId, ExtensionId, LoginId, Millis, Principal, ResellerId, Result, Scope, Store,
    StoreError,
};

text_enum!(
    /// What a login may do, and at which level.
    Role {
        OperatorAdmin = "operator_admin",
        ResellerAdmin = "reseller_admin",
        CustomerAdmin = "customer_admin",
        CustomerUser = "customer_user",
    }
);

/// Shortest console password accepted.
pub const MIN_PASSWORD_LEN: usize = 10;

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Login {
    pub id: LoginId,
    pub email: String,
    pub role: Role,
    pub reseller_id: Option<ResellerId>,
    pub customer_id: Option<CustomerId>,
    pub extension_id: Option<ExtensionId>,
    pub display_name: String,
    pub language: Option<String>,
    pub disabled: bool,
    pub created_at: Millis,
    pub last_login_at: Option<Millis>,
    pub version: i64,
}

impl Login {
    /// The scope this login works in. None only for a row that breaks the
    /// schema's role check, which the schema itself prevents.
    pub fn scope(&self) -> Option<Scope> {
        Some(match self.role {
            Role::OperatorAdmin => Scope::Operator,
            Role::ResellerAdmin => Scope::Reseller {
                reseller: self.reseller_id?,
            },
            Role::CustomerAdmin => Scope::Customer {
                reseller: self.reseller_id?,
                customer: self.customer_id?,
            },
            Role::CustomerUser => Scope::Extension {
                reseller: self.reseller_id?,
                customer: self.customer_id?,
                extension: self.extension_id?,
            },
        })
    }

    /// The principal a signed-in login acts as.
    pub fn principal(&self) -> Option<Principal> {
        Some(Principal::new(
            self.scope()?,
            Actor::Login {
                id: self.id,
                email: self.email.clone(),
            },
        ))
    }
}

/// A new login. The scope ids the role needs must be given: a reseller for a
/// reseller admin, a customer for a customer admin, an extension for a customer user.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewLogin {
    pub email: String,
    #[serde(skip_serializing)]
    pub password: String,
    pub role: Role,
    pub reseller_id: Option<ResellerId>,
    pub customer_id: Option<CustomerId>,
    pub extension_id: Option<ExtensionId>,
    #[serde(default)]
    pub display_name: String,
}

const COLUMNS: &str =
    "id, email, role, reseller_id, customer_id, extension_id, display_name, language, \
    disabled, created_at, last_login_at, version";
const SCOPED: &str =
    "FROM logins WHERE ($1 IS NULL OR reseller_id = $1) AND ($2 IS NULL OR customer_id = $2) \
    AND ($3 IS NULL OR extension_id = $3)";

fn from_row(row: &AnyRow) -> Result<Login, sqlx::Error> {
    Ok(Login {
        id: LoginId(row.try_get("id")?),
        email: row.try_get("email")?,
        role: enum_col(row, "role", Role::parse)?,
        reseller_id: row
            .try_get::<Option<i64>, _>("reseller_id")?
            .map(ResellerId),
        customer_id: row
            .try_get::<Option<i64>, _>("customer_id")?
            .map(CustomerId),
        extension_id: row
            .try_get::<Option<i64>, _>("extension_id")?
            .map(ExtensionId),
        display_name: row.try_get("display_name")?,
        language: row.try_get("language")?,
        disabled: flag(row, "disabled")?,
        created_at: row.try_get("created_at")?,
        last_login_at: row.try_get("last_login_at")?,
        version: row.try_get("version")?,
    })
}

fn check_password(check: &mut Checker, password: &str) {
    check.check(
        password.chars().count() >= MIN_PASSWORD_LEN && password.len() <= 256,
        "password",
        &format!("must be at least {MIN_PASSWORD_LEN} characters"),
    );
}

/// Normalises an e-mail address for lookup and storage.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

pub struct Logins<'s>(pub(crate) &'s Store);

impl Logins<'_> {
    pub async fn list(&self, by: &Principal) -> Result<Vec<Login>> {
        by.may_read(Level::Customer)?;
        let rows = sqlx::query(&format!("SELECT {COLUMNS} {SCOPED} ORDER BY email"))
            .bind(by.scope.reseller_param())
            .bind(by.scope.customer_param())
            .bind(by.scope.extension_param())
            .fetch_all(self.0.pool())
            .await?;
        Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
    }

    pub async fn get(&self, by: &Principal, id: LoginId) -> Result<Login> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} {SCOPED} AND id = $4"))
            .bind(by.scope.reseller_param())
            .bind(by.scope.customer_param())
            .bind(by.scope.extension_param())
            .bind(id.0)
            .fetch_optional(self.0.pool())
            .await?
            .ok_or(StoreError::NotFound)?;
        Ok(from_row(&row)?)
    }

    /// Creates a login at or below the caller's own level, inside its scope.
    pub async fn create(&self, by: &Principal, new: &NewLogin) -> Result<Login> {
        let email = normalize_email(&new.email);
        let mut check = Checker::new();
        check.check(
            validate::is_email(&email),
            "email",
            "must be an e-mail address",
        );
        check_password(&mut check, &new.password);
        check.check(
            new.display_name.chars().count() <= 100,
            "display_name",
            "must be at most 100 characters",
        );
        check.finish()?;
        // Resolve the target scope through the store so that ids outside the
        // caller's scope are simply not found.
        let (reseller, customer, extension) = match new.role {
            Role::OperatorAdmin => {
                by.may_write(Level::Operator)?;
                (None, None, None)
            }
            Role::ResellerAdmin => {
                by.may_write(Level::Reseller)?;
                let id = new.reseller_id.ok_or_else(|| {
                    StoreError::invalid("reseller_id", "is required for this role")
                })?;
                let reseller = self.0.resellers().get(by, id).await?;
                (Some(reseller.id), None, None)
            }
            Role::CustomerAdmin | Role::CustomerUser => {
                by.may_write(Level::Customer)?;
                let id = new.customer_id.ok_or_else(|| {
                    StoreError::invalid("customer_id", "is required for this role")
                })?;
                let customer = self.0.customers().get(by, id).await?;
                let extension = if new.role == Role::CustomerUser {
                    let id = new.extension_id.ok_or_else(|| {
                        StoreError::invalid("extension_id", "is required for this role")
                    })?;
                    let ext = self.0.extensions().get_live(by, id).await?;
                    if ext.customer_id != customer.id {
                        return Err(StoreError::NotFound);
                    }
                    Some(ext.id)
                } else {
                    None
                };
                (Some(customer.reseller_id), Some(customer.id), extension)
            }
        };
        let now = crate::now_ms();
        let mut tx = self.0.begin().await?;
        let row = sqlx::query(
            "INSERT INTO logins (email, password_hash, role, reseller_id, customer_id, extension_id, display_name, \
             created_at, password_changed_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) RETURNING id",
        )
        .bind(&email)
        .bind(hash_password(&new.password))
        .bind(new.role.as_str())
        .bind(reseller.map(|r| r.0))
        .bind(customer.map(|c| c.0))
        .bind(extension.map(|e| e.0))
        .bind(&new.display_name)
        .bind(now)
        .fetch_one(tx.conn())
        .await
        .map_err(|e| {
            OnViolation {
                unique: "a login with this e-mail address already exists",
                foreign_key: "the login's customer or extension does not match",
            }
            .map(e)
        })?;
        let id = LoginId(row.try_get("id")?);
        audit::record(
            &mut tx,
            by,
            Event {
                action: "create",
                object_type: "login",
                object_id: Some(id.0),
                reseller,
                customer,
                details: serde_json::json!({ "email": email, "role": new.role }),
            },
        )
        .await?;
        tx.commit().await?;
        self.get(by, id).await
    }

    /// Sets a new password for a login in the caller's scope.
    pub async fn set_password(&self, by: &Principal, id: LoginId, password: &str) -> Result<()> {
        let login = self.get(by, id).await?;
        let own = matches!(&by.actor, Actor::Login { id: me, .. } if *me == id);
        if !own {
            by.may_write(Level::Customer)?;
        }
        let mut check = Checker::new();
        check_password(&mut check, password);
        check.finish()?;
        let mut tx = self.0.begin().await?;
        sqlx::query(
            "UPDATE logins SET password_hash = $1, password_changed_at = $2, failed_logins = 0, version = version + 1 WHERE id = $3",
        )
        .bind(hash_password(password))
        .bind(crate::now_ms())
        .bind(id.0)
        .execute(tx.conn())
        .await?;
        // A new password signs the login out everywhere, and makes reset
        // links mailed before it worthless.
        sqlx::query("DELETE FROM sessions WHERE login_id = $1")
            .bind(id.0)
            .execute(tx.conn())
            .await?;
        sqlx::query("DELETE FROM password_resets WHERE login_id = $1 AND used_at IS NULL")
            .bind(id.0)
            .execute(tx.conn())
            .await?;
        audit::record(
            &mut tx,
            by,
            Event {
                action: "set_password",
                object_type: "login",
                object_id: Some(id.0),
                reseller: login.reseller_id,
                customer: login.customer_id,
                details: serde_json::json!({ "email": login.email }),
            },
        )
        .await?;
        tx.commit().await
    }

    /// Saves the console language a signed-in person chose for themselves
    /// (None: follow the browser).
    pub async fn set_language(&self, by: &Principal, language: Option<&str>) -> Result<()> {
        let Actor::Login { id, .. } = &by.actor else {
            return Err(StoreError::Forbidden(
                "only a signed-in person has a language",
            ));
        };
        if language.is_some_and(|l| !matches!(l, "en" | "de")) {
            return Err(StoreError::invalid("language", "must be en or de"));
        }
        sqlx::query("UPDATE logins SET language = $1, version = version + 1 WHERE id = $2")
            .bind(language)
            .bind(id.0)
            .execute(self.0.pool())
            .await?;
        Ok(())
    }

    /// Finds a login by e-mail within the caller's scope.
    pub async fn find_by_email(&self, by: &Principal, email: &str) -> Result<Login> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} {SCOPED} AND email = $4"))
            .bind(by.scope.reseller_param())
            .bind(by.scope.customer_param())
            .bind(by.scope.extension_param())
            .bind(normalize_email(email))
            .fetch_optional(self.0.pool())
            .await?
            .ok_or(StoreError::NotFound)?;
        Ok(from_row(&row)?)
    }

    /// Enables or disables a login.
    pub async fn set_disabled(&self, by: &Principal, id: LoginId, disabled: bool) -> Result<Login> {
        by.may_write(Level::Customer)?;
        let login = self.get(by, id).await?;
        let mut tx = self.0.begin().await?;
        sqlx::query("UPDATE logins SET disabled = $1, version = version + 1 WHERE id = $2")
            .bind(flag_value(disabled))
            .bind(id.0)
            .execute(tx.conn())
            .await?;
        audit::record(
            &mut tx,
            by,
            Event {
                action: if disabled { "disable" } else { "enable" },
                object_type: "login",
                object_id: Some(id.0),
                reseller: login.reseller_id,
                customer: login.customer_id,
                details: serde_json::json!({ "email": login.email }),
            },
        )
        .await?;
        tx.commit().await?;
        self.get(by, id).await
    }

    /// Checks an e-mail and password. Unknown e-mail, wrong password and a
    /// disabled login all give None, after the same amount of hashing work.
    pub async fn authenticate(&self, email: &str, password: &str) -> Result<Option<Login>> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS}, password_hash FROM logins WHERE email = $1"
        ))
        .bind(normalize_email(email))
        .fetch_optional(self.0.pool())
        .await?;
        let Some(row) = row else {
            verify_password(password, dummy_hash());
            return Ok(None);
        };
        let login = from_row(&row)?;
        let hash: String = row.try_get("password_hash")?;
        if !verify_password(password, &hash) || login.disabled {
            sqlx::query("UPDATE logins SET failed_logins = failed_logins + 1 WHERE id = $1")
                .bind(login.id.0)
                .execute(self.0.pool())
                .await?;
            return Ok(None);
        }
        sqlx::query("UPDATE logins SET last_login_at = $1, failed_logins = 0 WHERE id = $2")
            .bind(crate::now_ms())
            .bind(login.id.0)
            .execute(self.0.pool())
            .await?;
        Ok(Some(login))
    }

    /// Number of operator administrators (zero on a fresh installation).
    pub async fn count_operator_admins(&self) -> Result<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM logins WHERE role = 'operator_admin'")
            .fetch_one(self.0.pool())
            .await?;
        Ok(row.try_get("n")?)
    }
}
