//! Idempotency keys for API creates: the first request with a key runs and its
//! answer is kept; a retry with the same key and the same request gets that
//! answer again; the same key with a different request is refused.
//!
//! Keys belong to the credential that sent them (two tokens may use the same
//! key), and are forgotten after [`RETENTION_MS`]. Kept answers are encrypted
//! like other secrets: a create's answer can carry a SIP password shown once.

use sqlx::Row;

use crate::{Principal, Result, Store, StoreError};

/// How long an answer is kept for replay.
pub const RETENTION_MS: i64 = 24 * 3600 * 1000;

/// A kept answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    pub status: u16,
    /// Response headers worth replaying (Location, ETag), as a JSON object.
    pub headers: String,
    pub body: String,
}

/// What to do with a request that carries a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The key is new and now held by this request: run it, then
    /// [`Idempotency::complete`] or [`Idempotency::release`].
    Fresh,
    /// The same request ran before: answer this.
    Replay(StoredResponse),
    /// The key was used for a different request.
    Mismatch,
    /// The first request with this key has not finished yet.
    InProgress,
}

pub struct Idempotency<'s>(pub(crate) &'s Store);

fn credential(by: &Principal) -> String {
    by.actor.label()
}

impl Idempotency<'_> {
    /// Claims `key` for `request` (its method, target and body). Only a keyed
    /// hash of the request is kept: bodies can hold passwords.
    pub async fn claim(&self, by: &Principal, key: &str, request: &[u8]) -> Result<Claim> {
        let request_sha256 = self.0.secrets().keyed_hash(request);
        if key.is_empty() || key.len() > 255 || key.bytes().any(|b| !(0x21..0x7f).contains(&b)) {
            return Err(StoreError::invalid(
                "Idempotency-Key",
                "must be 1 to 255 visible ASCII characters",
            ));
        }
        let now = crate::now_ms();
        let cred = credential(by);
        sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1")
            .bind(now - RETENTION_MS)
            .execute(self.0.pool())
            .await?;
        let inserted = sqlx::query(
            "INSERT INTO idempotency_keys (credential, idem_key, request_sha256, status, created_at) \
             VALUES ($1, $2, $3, 0, $4) ON CONFLICT (credential, idem_key) DO NOTHING",
        )
        .bind(&cred)
        .bind(key)
        .bind(&request_sha256)
        .bind(now)
        .execute(self.0.pool())
        .await?
        .rows_affected();
        if inserted == 1 {
            return Ok(Claim::Fresh);
        }
        let Some(row) = sqlx::query(
            "SELECT request_sha256, status, headers, body FROM idempotency_keys \
             WHERE credential = $1 AND idem_key = $2",
        )
        .bind(&cred)
        .bind(key)
        .fetch_optional(self.0.pool())
        .await?
        else {
            // Released between our INSERT and SELECT: the caller may retry.
            return Ok(Claim::InProgress);
        };
        let stored_hash: String = row.try_get("request_sha256")?;
        if stored_hash != request_sha256 {
            return Ok(Claim::Mismatch);
        }
        let status: i64 = row.try_get("status")?;
        if status == 0 {
            return Ok(Claim::InProgress);
        }
        let body: String = row.try_get("body")?;
        Ok(Claim::Replay(StoredResponse {
            status: u16::try_from(status).unwrap_or(500),
            headers: row.try_get("headers")?,
            body: self.0.secrets().decrypt(&body)?,
        }))
    }

    /// Keeps the answer to a claimed key.
    pub async fn complete(
        &self,
        by: &Principal,
        key: &str,
        response: &StoredResponse,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE idempotency_keys SET status = $1, headers = $2, body = $3 \
             WHERE credential = $4 AND idem_key = $5",
        )
        .bind(i64::from(response.status))
        .bind(&response.headers)
        .bind(self.0.secrets().encrypt(&response.body))
        .bind(credential(by))
        .bind(key)
        .execute(self.0.pool())
        .await?;
        Ok(())
    }

    /// Gives a claimed key up (the request failed), so that a retry runs again.
    pub async fn release(&self, by: &Principal, key: &str) -> Result<()> {
        sqlx::query(
            "DELETE FROM idempotency_keys WHERE credential = $1 AND idem_key = $2 AND status = 0",
        )
        .bind(credential(by))
        .bind(key)
        .execute(self.0.pool())
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestDb;
    use crate::{Actor, Scope, TokenId};

    fn token(n: i64) -> Principal {
        Principal::new(
            Scope::Operator,
            Actor::Token {
                id: TokenId(n),
                public_id: format!("{n:016x}"),
            },
        )
    }

    async fn replays_and_refuses_reuse(db: TestDb) {
        let keys = db.store.idempotency();
        let (a, b) = (token(1), token(2));
        let hash = b"POST /x\n{}".as_slice();
        assert_eq!(keys.claim(&a, "k1", hash).await.unwrap(), Claim::Fresh);
        assert_eq!(keys.claim(&a, "k1", hash).await.unwrap(), Claim::InProgress);
        // Another credential's key space is its own.
        assert_eq!(keys.claim(&b, "k1", hash).await.unwrap(), Claim::Fresh);
        let answer = StoredResponse {
            status: 201,
            headers: r#"{"location":"/x/1"}"#.to_owned(),
            body: "{}".to_owned(),
        };
        keys.complete(&a, "k1", &answer).await.unwrap();
        assert_eq!(
            db.count("SELECT COUNT(*) AS n FROM idempotency_keys WHERE body = '{}'")
                .await,
            0,
            "kept answers are encrypted"
        );
        assert_eq!(
            keys.claim(&a, "k1", hash).await.unwrap(),
            Claim::Replay(answer)
        );
        assert_eq!(
            keys.claim(&a, "k1", b"POST /x\n{\"other\":1}")
                .await
                .unwrap(),
            Claim::Mismatch
        );
        // A released key runs again.
        keys.release(&b, "k1").await.unwrap();
        assert_eq!(keys.claim(&b, "k1", hash).await.unwrap(), Claim::Fresh);
        assert!(matches!(
            keys.claim(&a, "bad key", hash).await,
            Err(StoreError::Invalid(_))
        ));
        assert!(matches!(
            keys.claim(&a, &"k".repeat(256), hash).await,
            Err(StoreError::Invalid(_))
        ));
    }

    crate::both_engines!(replays_and_refuses_reuse);
}
