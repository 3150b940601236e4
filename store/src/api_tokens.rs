//! API tokens for resellers' and customers' own systems: scoped to the
//! operator, one reseller or one customer, optionally read-only, with an
//! expiry; revocable. The token is shown once; only a SHA-256 of its secret
//! part is stored.
//!
//! Format: `pbx_<public id: 16 hex>_<secret: 43 base64url>`. The public id
//! finds the row; the secret proves possession.

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::audit::{self, Event};
use crate::principal::Level;
use crate::rows::{enum_col, flag, flag_value, text_enum};
use crate::secrets::{hex, random_token, sha256_hex};
use crate::validate::Checker;
use crate::{
    Actor, CustomerId, LoginId, Millis, Principal, ResellerId, Result, Scope, Store, StoreError,
    TokenId,
};

text_enum!(
    /// The level a token acts at.
    TokenLevel { Operator = "operator", Reseller = "reseller", Customer = "customer" }
);

const PREFIX: &str = "pbx_";
/// last_used_at is refreshed at most this often, so that using a token is not a write per request.
const LAST_USED_GRANULARITY_MS: i64 = 60_000;

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiToken {
    pub id: TokenId,
    pub public_id: String,
    pub name: String,
    pub level: TokenLevel,
    pub reseller_id: Option<ResellerId>,
    pub customer_id: Option<CustomerId>,
    pub read_only: bool,
    pub created_by_login_id: Option<LoginId>,
    pub created_at: Millis,
    pub expires_at: Option<Millis>,
    pub revoked_at: Option<Millis>,
    pub last_used_at: Option<Millis>,
}

impl ApiToken {
    fn scope(&self) -> Option<Scope> {
        Some(match self.level {
            TokenLevel::Operator => Scope::Operator,
            TokenLevel::Reseller => Scope::Reseller {
                reseller: self.reseller_id?,
            },
            TokenLevel::Customer => Scope::Customer {
                reseller: self.reseller_id?,
                customer: self.customer_id?,
            },
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewToken {
    pub name: String,
    pub level: TokenLevel,
    /// Required for reseller tokens; derived from the customer for customer tokens.
    pub reseller_id: Option<ResellerId>,
    pub customer_id: Option<CustomerId>,
    #[serde(default)]
    pub read_only: bool,
    pub expires_at: Option<Millis>,
}

const COLUMNS: &str =
    "id, public_id, name, level, reseller_id, customer_id, read_only, created_by_login_id, \
    created_at, expires_at, revoked_at, last_used_at";
const SCOPED: &str =
    "FROM api_tokens WHERE ($1 IS NULL OR reseller_id = $1) AND ($2 IS NULL OR customer_id = $2)";

fn from_row(row: &AnyRow) -> Result<ApiToken, sqlx::Error> {
    Ok(ApiToken {
        id: TokenId(row.try_get("id")?),
        public_id: row.try_get("public_id")?,
        name: row.try_get("name")?,
        level: enum_col(row, "level", TokenLevel::parse)?,
        reseller_id: row
            .try_get::<Option<i64>, _>("reseller_id")?
            .map(ResellerId),
        customer_id: row
            .try_get::<Option<i64>, _>("customer_id")?
            .map(CustomerId),
        read_only: flag(row, "read_only")?,
        created_by_login_id: row
            .try_get::<Option<i64>, _>("created_by_login_id")?
            .map(LoginId),
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        revoked_at: row.try_get("revoked_at")?,
        last_used_at: row.try_get("last_used_at")?,
    })
}

pub struct ApiTokens<'s>(pub(crate) &'s Store);

impl ApiTokens<'_> {
    pub async fn list(&self, by: &Principal) -> Result<Vec<ApiToken>> {
        by.may_read(Level::Customer)?;
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} {SCOPED} ORDER BY created_at DESC, id DESC"
        ))
        .bind(by.scope.reseller_param())
        .bind(by.scope.customer_param())
        .fetch_all(self.0.pool())
        .await?;
        Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
    }

    pub async fn get(&self, by: &Principal, id: TokenId) -> Result<ApiToken> {
        by.may_read(Level::Customer)?;
        let row = sqlx::query(&format!("SELECT {COLUMNS} {SCOPED} AND id = $3"))
            .bind(by.scope.reseller_param())
            .bind(by.scope.customer_param())
            .bind(id.0)
            .fetch_optional(self.0.pool())
            .await?
            .ok_or(StoreError::NotFound)?;
        Ok(from_row(&row)?)
    }

    /// Creates a token no wider than the caller's scope (and read-only if the
    /// caller is). Returns the token text, shown once.
    pub async fn create(&self, by: &Principal, new: &NewToken) -> Result<(ApiToken, String)> {
        by.may_write(Level::Customer)?;
        let mut check = Checker::new();
        check.text("name", &new.name, 100);
        if let Some(expiry) = new.expires_at {
            check.check(
                expiry > crate::now_ms(),
                "expires_at",
                "must be in the future",
            );
        }
        check.finish()?;
        let (reseller, customer) = match new.level {
            TokenLevel::Operator => {
                by.may_write(Level::Operator)?;
                (None, None)
            }
            TokenLevel::Reseller => {
                by.may_write(Level::Reseller)?;
                let id = new.reseller_id.ok_or_else(|| {
                    StoreError::invalid("reseller_id", "is required for a reseller token")
                })?;
                (Some(self.0.resellers().get(by, id).await?.id), None)
            }
            TokenLevel::Customer => {
                let id = new.customer_id.ok_or_else(|| {
                    StoreError::invalid("customer_id", "is required for a customer token")
                })?;
                let customer = self.0.customers().get(by, id).await?;
                (Some(customer.reseller_id), Some(customer.id))
            }
        };
        let public_id = {
            let mut bytes = [0u8; 8];
            rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
            hex(&bytes)
        };
        let secret = random_token(32);
        let login = match &by.actor {
            Actor::Login { id, .. } => Some(id.0),
            _ => None,
        };
        // A token made with a token lives no longer than its maker.
        let (parent, expires_at) = match &by.actor {
            Actor::Token { id, .. } => {
                let parent = self.get(by, *id).await?;
                let expires_at = match (new.expires_at, parent.expires_at) {
                    (Some(mine), Some(theirs)) if mine > theirs => {
                        return Err(StoreError::invalid(
                            "expires_at",
                            "must not be later than the expiry of the token making it",
                        ))
                    }
                    (mine, theirs) => mine.or(theirs),
                };
                (Some(parent.id.0), expires_at)
            }
            _ => (None, new.expires_at),
        };
        let read_only = new.read_only || by.read_only;
        let mut tx = self.0.begin().await?;
        let row = sqlx::query(
            "INSERT INTO api_tokens (public_id, secret_sha256, name, level, reseller_id, customer_id, read_only, \
             created_by_login_id, created_at, expires_at, parent_token_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
        )
        .bind(&public_id)
        .bind(sha256_hex(&secret))
        .bind(&new.name)
        .bind(new.level.as_str())
        .bind(reseller.map(|r| r.0))
        .bind(customer.map(|c| c.0))
        .bind(flag_value(read_only))
        .bind(login)
        .bind(crate::now_ms())
        .bind(expires_at)
        .bind(parent)
        .fetch_one(tx.conn())
        .await?;
        let id = TokenId(row.try_get("id")?);
        audit::record(
            &mut tx,
            by,
            Event {
                action: "create",
                object_type: "api_token",
                object_id: Some(id.0),
                reseller,
                customer,
                details: serde_json::json!({ "name": new.name, "level": new.level, "read_only": read_only, "public_id": public_id }),
            },
        )
        .await?;
        tx.commit().await?;
        let token = self.get(by, id).await?;
        Ok((token, format!("{PREFIX}{public_id}_{secret}")))
    }

    pub async fn revoke(&self, by: &Principal, id: TokenId) -> Result<ApiToken> {
        by.may_write(Level::Customer)?;
        let token = self.get(by, id).await?;
        let mut tx = self.0.begin().await?;
        // The token and every token made with it, and with those, …
        sqlx::query(
            "WITH RECURSIVE made(id) AS (SELECT id FROM api_tokens WHERE id = $2 \
             UNION SELECT t.id FROM api_tokens t JOIN made ON t.parent_token_id = made.id) \
             UPDATE api_tokens SET revoked_at = $1 WHERE id IN (SELECT id FROM made) AND revoked_at IS NULL",
        )
        .bind(crate::now_ms())
        .bind(id.0)
        .execute(tx.conn())
        .await?;
        audit::record(
            &mut tx,
            by,
            Event {
                action: "revoke",
                object_type: "api_token",
                object_id: Some(id.0),
                reseller: token.reseller_id,
                customer: token.customer_id,
                details: serde_json::json!({ "public_id": token.public_id }),
            },
        )
        .await?;
        tx.commit().await?;
        self.get(by, id).await
    }

    /// The principal a presented token acts as; None for anything malformed,
    /// unknown, wrong, revoked or expired (all alike to the caller).
    pub async fn authenticate(&self, presented: &str) -> Result<Option<Principal>> {
        let Some((public_id, secret)) = presented
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split_once('_'))
        else {
            return Ok(None);
        };
        if public_id.len() != 16 || !public_id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        let Some(row) = sqlx::query(&format!(
            "SELECT {COLUMNS}, secret_sha256 FROM api_tokens WHERE public_id = $1"
        ))
        .bind(public_id)
        .fetch_optional(self.0.pool())
        .await?
        else {
            return Ok(None);
        };
        let token = from_row(&row)?;
        let stored: String = row.try_get("secret_sha256")?;
        let now = crate::now_ms();
        if !constant_time_eq(sha256_hex(secret).as_bytes(), stored.as_bytes())
            || !self.usable(&token, now).await?
        {
            return Ok(None);
        }
        if token
            .last_used_at
            .is_none_or(|t| now - t >= LAST_USED_GRANULARITY_MS)
        {
            sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE id = $2")
                .bind(now)
                .bind(token.id.0)
                .execute(self.0.pool())
                .await?;
        }
        let Some(scope) = token.scope() else {
            return Ok(None);
        };
        Ok(Some(Principal {
            scope,
            actor: Actor::Token {
                id: token.id,
                public_id: token.public_id.clone(),
            },
            read_only: token.read_only,
        }))
    }
}

impl ApiTokens<'_> {
    /// Whether a token found earlier still works: not revoked, not expired,
    /// and its reseller and customer neither suspended nor closed.
    pub async fn still_usable(&self, id: TokenId) -> Result<bool> {
        let Some(row) = sqlx::query(&format!("SELECT {COLUMNS} FROM api_tokens WHERE id = $1"))
            .bind(id.0)
            .fetch_optional(self.0.pool())
            .await?
        else {
            return Ok(false);
        };
        self.usable(&from_row(&row)?, crate::now_ms()).await
    }

    async fn usable(&self, token: &ApiToken, now: Millis) -> Result<bool> {
        if token.revoked_at.is_some() || token.expires_at.is_some_and(|e| e <= now) {
            return Ok(false);
        }
        match token.scope() {
            Some(scope) => self.tenant_active(&scope).await,
            None => Ok(false),
        }
    }

    /// Whether the reseller and customer of `scope` are neither suspended
    /// nor closed (credentials of such tenants stop working).
    pub async fn tenant_active(&self, scope: &Scope) -> Result<bool> {
        if *scope == Scope::Operator {
            return Ok(true);
        }
        let row = sqlx::query(
            "SELECT (SELECT status FROM resellers WHERE id = $1) AS reseller_status, \
             (SELECT status FROM customers WHERE id = $2) AS customer_status",
        )
        .bind(scope.reseller_param())
        .bind(scope.customer_param())
        .fetch_one(self.0.pool())
        .await?;
        let active = |col: &str| -> Result<bool, sqlx::Error> {
            Ok(row
                .try_get::<Option<String>, _>(col)?
                .is_none_or(|s| s == "active"))
        };
        Ok(active("reseller_status")? && active("customer_status")?)
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
