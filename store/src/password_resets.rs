//! Password resets by e-mail: a login asks for a link, the link's token
//! sets a new password once. Only a SHA-256 of the token is kept; a token
//! lives an hour, and a new password ends the login's sessions.

use sqlx::Row;

use crate::logins::Login;
use crate::secrets::{random_token, sha256_hex};
use crate::{LoginId, Millis, Principal, Result, Store, StoreError};

/// How long a reset link works.
pub const VALID_MS: Millis = 3_600_000;
/// Unused links a login keeps at once; a new one retires the oldest.
const MAX_OPEN: i64 = 3;

pub struct PasswordResets<'s>(pub(crate) &'s Store);

impl PasswordResets<'_> {
    /// A reset token for the enabled login with this e-mail address if
    /// `allowed` accepts it (the console asks whether the login belongs to
    /// the brand it was asked on), or None. The caller mails it and answers
    /// alike in every case.
    pub async fn create(
        &self,
        email: &str,
        allowed: impl FnOnce(&Login) -> bool,
    ) -> Result<Option<(Login, String)>> {
        let login = match self
            .0
            .logins()
            .find_by_email(&Principal::system(), email)
            .await
        {
            Ok(login) if !login.disabled && allowed(&login) => login,
            Ok(_) | Err(StoreError::NotFound) => return Ok(None),
            Err(e) => return Err(e),
        };
        let now = crate::now_ms();
        sqlx::query("DELETE FROM password_resets WHERE expires_at <= $1")
            .bind(now)
            .execute(self.0.pool())
            .await?;
        let open: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM password_resets WHERE login_id = $1 AND used_at IS NULL",
        )
        .bind(login.id.0)
        .fetch_one(self.0.pool())
        .await?
        .try_get("n")?;
        if open >= MAX_OPEN {
            // Nobody can use up a login's links by asking often: the oldest goes.
            sqlx::query(
                "DELETE FROM password_resets WHERE token_sha256 IN (SELECT token_sha256 \
                 FROM password_resets WHERE login_id = $1 AND used_at IS NULL \
                 ORDER BY created_at LIMIT $2)",
            )
            .bind(login.id.0)
            .bind(open - MAX_OPEN + 1)
            .execute(self.0.pool())
            .await?;
        }
        let token = random_token(32);
        sqlx::query(
            "INSERT INTO password_resets (token_sha256, login_id, created_at, expires_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(sha256_hex(&token))
        .bind(login.id.0)
        .bind(now)
        .bind(now + VALID_MS)
        .execute(self.0.pool())
        .await?;
        Ok(Some((login, token)))
    }

    /// The login a token may reset, if it is valid and unused.
    pub async fn check(&self, token: &str) -> Result<Option<Login>> {
        if token.is_empty() || token.len() > 100 {
            return Ok(None);
        }
        let row = sqlx::query(
            "SELECT login_id FROM password_resets \
             WHERE token_sha256 = $1 AND used_at IS NULL AND expires_at > $2",
        )
        .bind(sha256_hex(token))
        .bind(crate::now_ms())
        .fetch_optional(self.0.pool())
        .await?;
        let Some(row) = row else { return Ok(None) };
        let id = LoginId(row.try_get("login_id")?);
        match self.0.logins().get(&Principal::system(), id).await {
            Ok(login) if !login.disabled => Ok(Some(login)),
            Ok(_) | Err(StoreError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Sets the new password with a valid token and uses the token up (with
    /// every other open link of the login). NotFound for a bad token.
    pub async fn redeem(&self, token: &str, password: &str) -> Result<Login> {
        let login = self.check(token).await?.ok_or(StoreError::NotFound)?;
        let as_itself = login.principal().ok_or(StoreError::NotFound)?;
        // Claimed first, so that two uses of one link cannot both pass.
        let claimed = sqlx::query(
            "UPDATE password_resets SET used_at = $1 WHERE token_sha256 = $2 AND used_at IS NULL",
        )
        .bind(crate::now_ms())
        .bind(sha256_hex(token))
        .execute(self.0.pool())
        .await?
        .rows_affected();
        if claimed != 1 {
            return Err(StoreError::NotFound);
        }
        if let Err(e) = self
            .0
            .logins()
            .set_password(&as_itself, login.id, password)
            .await
        {
            // A password the rules refuse does not cost the link.
            sqlx::query("UPDATE password_resets SET used_at = NULL WHERE token_sha256 = $1")
                .bind(sha256_hex(token))
                .execute(self.0.pool())
                .await?;
            return Err(e);
        }
        sqlx::query(
            "UPDATE password_resets SET used_at = $1 WHERE login_id = $2 AND used_at IS NULL",
        )
        .bind(crate::now_ms())
        .bind(login.id.0)
        .execute(self.0.pool())
        .await?;
        Ok(login)
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{TestDb, TwoTenants};
    use crate::StoreError;

    async fn a_reset_link_works_once_and_within_its_hour(db: TestDb) {
        let _t = TwoTenants::create(&db.store).await;
        let resets = db.store.password_resets();
        let any = |_: &crate::logins::Login| true;
        assert!(resets
            .create("nobody@nowhere.test", any)
            .await
            .unwrap()
            .is_none());
        assert!(resets
            .create("admin@acme.test", |_| false)
            .await
            .unwrap()
            .is_none());
        let (login, token) = resets
            .create("Admin@Acme.test", any)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(login.email, "admin@acme.test");
        // The token itself is not stored.
        let stored = db
            .count(&format!(
                "SELECT COUNT(*) AS n FROM password_resets WHERE token_sha256 = '{token}'"
            ))
            .await;
        assert_eq!(stored, 0);
        // A password the rules refuse keeps the link usable.
        let short = resets.redeem(&token, "short").await;
        assert!(matches!(short, Err(StoreError::Invalid(_))), "{short:?}");
        let session = db.store.sessions().start(&login).await.unwrap();
        resets
            .redeem(&token, "a brand new passphrase")
            .await
            .unwrap();
        assert!(db
            .store
            .logins()
            .authenticate("admin@acme.test", "a brand new passphrase")
            .await
            .unwrap()
            .is_some());
        assert!(db
            .store
            .logins()
            .authenticate("admin@acme.test", "a long enough password")
            .await
            .unwrap()
            .is_none());
        assert!(
            db.store
                .sessions()
                .resume(&session.id)
                .await
                .unwrap()
                .is_none(),
            "a new password ends the sessions"
        );
        let again = resets.redeem(&token, "yet another passphrase").await;
        assert!(matches!(again, Err(StoreError::NotFound)));
        // Expired links do nothing; at most three open links per login, the
        // newest ones.
        let (_, old) = resets
            .create("admin@acme.test", any)
            .await
            .unwrap()
            .unwrap();
        db.execute(&format!(
            "UPDATE password_resets SET expires_at = expires_at - {}",
            super::VALID_MS
        ))
        .await
        .unwrap();
        assert!(resets.check(&old).await.unwrap().is_none());
        let mut tokens = Vec::new();
        for _ in 0..4 {
            let (_, token) = resets.create("user@acme.test", any).await.unwrap().unwrap();
            tokens.push(token);
        }
        assert!(
            resets.check(&tokens[0]).await.unwrap().is_none(),
            "the oldest retired"
        );
        for token in &tokens[1..] {
            assert!(resets.check(token).await.unwrap().is_some());
        }
        // A password set another way makes open links worthless.
        let user = resets.check(&tokens[3]).await.unwrap().unwrap();
        db.store
            .logins()
            .set_password(
                &crate::Principal::system(),
                user.id,
                "changed elsewhere 123",
            )
            .await
            .unwrap();
        assert!(resets.check(&tokens[3]).await.unwrap().is_none());
    }

    crate::both_engines!(a_reset_link_works_once_and_within_its_hour);
}
