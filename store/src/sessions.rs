//! Console sessions: a browser's sign-in, carried in a cookie. The session id
//! is shown to the browser only; the database keeps its SHA-256. Each session
//! has a CSRF token that state-changing requests must echo.
//!
//! A session ends after [`IDLE_MS`] without use, [`ABSOLUTE_MS`] after it
//! began, at logout, or as soon as its login is disabled or its tenant is
//! suspended or closed.

use sqlx::Row;

use crate::audit::{self, Event};
use crate::logins::Login;
use crate::secrets::{random_token, sha256_hex};
use crate::{CustomerId, LoginId, Millis, Principal, Result, Scope, Store};

pub const IDLE_MS: i64 = 8 * 3600 * 1000;
pub const ABSOLUTE_MS: i64 = 7 * 24 * 3600 * 1000;
/// last_seen_at is refreshed at most this often.
const TOUCH_GRANULARITY_MS: i64 = 60_000;

/// A new session as the browser gets it.
#[derive(Debug, Clone)]
pub struct NewSession {
    /// The cookie value.
    pub id: String,
    pub csrf_token: String,
    pub expires_at: Millis,
    /// The login has a second factor: the session counts only once
    /// [`Sessions::prove`] accepted a code.
    pub needs_code: bool,
}

/// How long a session may wait for its second factor.
pub const CODE_WAIT_MS: i64 = 5 * 60 * 1000;
/// Wrong codes before a waiting session is ended.
const MAX_CODE_ATTEMPTS: i64 = 5;

/// What a second-factor code did to a waiting session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Proof {
    /// The session counts now, under a new id (the cookie's new value): the
    /// id known before the second step is worth nothing after it.
    Accepted {
        id: String,
    },
    Wrong,
    /// No such waiting session (expired, ended after too many wrong codes).
    Ended,
}

/// A session found from its cookie.
#[derive(Debug, Clone)]
pub struct ActiveSession {
    pub login: Login,
    /// The login's own scope, or the customer it acts as.
    pub principal: Principal,
    pub csrf_token: String,
    /// The customer a reseller admin is acting as (impersonation).
    pub acting_as: Option<CustomerId>,
}

pub struct Sessions<'s>(pub(crate) &'s Store);

impl Sessions<'_> {
    /// Starts a session for a login that has just proved its password. With
    /// a second factor, the session waits for a code (see [`Sessions::prove`]).
    pub async fn start(&self, login: &Login) -> Result<NewSession> {
        let needs_code = self.0.totp().enabled(login.id).await?;
        self.insert(login, needs_code).await
    }

    /// Starts a session with the login's second-factor code given at once
    /// (the API's sign-in); None if the code is missing or wrong.
    pub async fn start_with_code(
        &self,
        login: &Login,
        code: Option<&str>,
    ) -> Result<Option<NewSession>> {
        if self.0.totp().enabled(login.id).await? {
            let Some(code) = code else { return Ok(None) };
            if !self.0.totp().verify(login.id, code).await? {
                return Ok(None);
            }
        }
        self.insert(login, false).await.map(Some)
    }

    async fn insert(&self, login: &Login, needs_code: bool) -> Result<NewSession> {
        let now = crate::now_ms();
        let id = random_token(32);
        let csrf_token = random_token(24);
        // Housekeeping on the way: expired sessions are of no use to anyone.
        sqlx::query("DELETE FROM sessions WHERE expires_at <= $1 OR last_seen_at <= $2")
            .bind(now)
            .bind(now - IDLE_MS)
            .execute(self.0.pool())
            .await?;
        let expires_at = now
            + if needs_code {
                CODE_WAIT_MS
            } else {
                ABSOLUTE_MS
            };
        sqlx::query(
            "INSERT INTO sessions (id_sha256, login_id, csrf_token, created_at, last_seen_at, expires_at, mfa_pending) \
             VALUES ($1, $2, $3, $4, $4, $5, $6)",
        )
        .bind(sha256_hex(&id))
        .bind(login.id.0)
        .bind(&csrf_token)
        .bind(now)
        .bind(expires_at)
        .bind(i64::from(needs_code))
        .execute(self.0.pool())
        .await?;
        Ok(NewSession {
            id,
            csrf_token,
            expires_at,
            needs_code,
        })
    }

    /// The login and CSRF token of a session still waiting for its code.
    pub async fn waiting(&self, id: &str) -> Result<Option<(Login, String)>> {
        if id.is_empty() || id.len() > 100 {
            return Ok(None);
        }
        let Some(row) = sqlx::query(
            "SELECT login_id, csrf_token FROM sessions \
             WHERE id_sha256 = $1 AND mfa_pending = 1 AND expires_at > $2",
        )
        .bind(sha256_hex(id))
        .bind(crate::now_ms())
        .fetch_optional(self.0.pool())
        .await?
        else {
            return Ok(None);
        };
        let login_id = LoginId(row.try_get("login_id")?);
        match self.0.logins().get(&Principal::system(), login_id).await {
            Ok(login) if !login.disabled => Ok(Some((login, row.try_get("csrf_token")?))),
            Ok(_) | Err(crate::StoreError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Checks the second-factor code of a waiting session; accepted, the
    /// session counts from now on. Each attempt is claimed before the code
    /// is looked at, so parallel guesses cannot pass the limit.
    pub async fn prove(&self, id: &str, code: &str) -> Result<Proof> {
        let Some((login, _)) = self.waiting(id).await? else {
            return Ok(Proof::Ended);
        };
        let claimed = sqlx::query(
            "UPDATE sessions SET mfa_attempts = mfa_attempts + 1 \
             WHERE id_sha256 = $1 AND mfa_pending = 1 AND mfa_attempts < $2",
        )
        .bind(sha256_hex(id))
        .bind(MAX_CODE_ATTEMPTS)
        .execute(self.0.pool())
        .await?
        .rows_affected();
        if claimed != 1 {
            self.end(id).await?;
            return Ok(Proof::Ended);
        }
        if self.0.totp().verify(login.id, code).await? {
            let now = crate::now_ms();
            let fresh = random_token(32);
            let moved = sqlx::query(
                "UPDATE sessions SET id_sha256 = $1, mfa_pending = 0, last_seen_at = $2, expires_at = $3 \
                 WHERE id_sha256 = $4 AND mfa_pending = 1",
            )
            .bind(sha256_hex(&fresh))
            .bind(now)
            .bind(now + ABSOLUTE_MS)
            .bind(sha256_hex(id))
            .execute(self.0.pool())
            .await?
            .rows_affected();
            return Ok(if moved == 1 {
                Proof::Accepted { id: fresh }
            } else {
                Proof::Ended
            });
        }
        let used: i64 = sqlx::query("SELECT mfa_attempts FROM sessions WHERE id_sha256 = $1")
            .bind(sha256_hex(id))
            .fetch_optional(self.0.pool())
            .await?
            .map(|row| row.try_get("mfa_attempts"))
            .transpose()?
            .unwrap_or(MAX_CODE_ATTEMPTS);
        if used >= MAX_CODE_ATTEMPTS {
            self.end(id).await?;
            return Ok(Proof::Ended);
        }
        Ok(Proof::Wrong)
    }

    /// Ends every other session of a login (after its second factor changed).
    pub async fn end_others(&self, login: LoginId, keep: &str) -> Result<()> {
        sqlx::query("DELETE FROM sessions WHERE login_id = $1 AND id_sha256 <> $2")
            .bind(login.0)
            .bind(sha256_hex(keep))
            .execute(self.0.pool())
            .await?;
        Ok(())
    }

    /// The session a cookie names, if it is still valid.
    pub async fn resume(&self, id: &str) -> Result<Option<ActiveSession>> {
        if id.is_empty() || id.len() > 100 {
            return Ok(None);
        }
        let now = crate::now_ms();
        let Some(row) = sqlx::query(
            "SELECT login_id, csrf_token, last_seen_at, expires_at, acting_customer_id \
             FROM sessions WHERE id_sha256 = $1 AND mfa_pending = 0",
        )
        .bind(sha256_hex(id))
        .fetch_optional(self.0.pool())
        .await?
        else {
            return Ok(None);
        };
        let last_seen: Millis = row.try_get("last_seen_at")?;
        let expires: Millis = row.try_get("expires_at")?;
        if expires <= now || last_seen + IDLE_MS <= now {
            return Ok(None);
        }
        let login_id = LoginId(row.try_get("login_id")?);
        let login = match self.0.logins().get(&Principal::system(), login_id).await {
            Ok(login) => login,
            Err(crate::StoreError::NotFound) => return Ok(None),
            Err(e) => return Err(e),
        };
        let Some(own) = login.principal() else {
            return Ok(None);
        };
        if login.disabled || !self.0.api_tokens().tenant_active(&own.scope).await? {
            return Ok(None);
        }
        let acting: Option<i64> = row.try_get("acting_customer_id")?;
        let (principal, acting_as) = match acting.map(CustomerId) {
            Some(customer) => match self.acting_principal(&own, customer).await? {
                Some(p) => (p, Some(customer)),
                // No longer this reseller's (or no longer active): back to
                // its own scope for good, not silently again on reactivation.
                None => {
                    sqlx::query(
                        "UPDATE sessions SET acting_customer_id = NULL WHERE id_sha256 = $1",
                    )
                    .bind(sha256_hex(id))
                    .execute(self.0.pool())
                    .await?;
                    (own, None)
                }
            },
            None => (own, None),
        };
        if now - last_seen >= TOUCH_GRANULARITY_MS {
            sqlx::query("UPDATE sessions SET last_seen_at = $1 WHERE id_sha256 = $2")
                .bind(now)
                .bind(sha256_hex(id))
                .execute(self.0.pool())
                .await?;
        }
        Ok(Some(ActiveSession {
            login,
            principal,
            csrf_token: row.try_get("csrf_token")?,
            acting_as,
        }))
    }

    /// The principal a reseller admin acts with inside one of its customers:
    /// the customer's scope, the admin's own identity (so the audit log names
    /// who really did it).
    async fn acting_principal(
        &self,
        own: &Principal,
        customer: CustomerId,
    ) -> Result<Option<Principal>> {
        let Scope::Reseller { reseller } = own.scope else {
            return Ok(None);
        };
        let c = match self.0.customers().get(own, customer).await {
            Ok(c) => c,
            Err(crate::StoreError::NotFound) => return Ok(None),
            Err(e) => return Err(e),
        };
        let scope = Scope::Customer {
            reseller,
            customer: c.id,
        };
        if !self.0.api_tokens().tenant_active(&scope).await? {
            return Ok(None);
        }
        Ok(Some(Principal::new(scope, own.actor.clone())))
    }

    /// Lets a reseller admin's session act as one of its customers (Some),
    /// or return to its own scope (None). Both are written to the audit log.
    /// The session continues under a new id (returned: the cookie's new
    /// value), as at every change of what a session may do.
    pub async fn act_as(
        &self,
        id: &str,
        by: &Principal,
        customer: Option<CustomerId>,
    ) -> Result<String> {
        let Scope::Reseller { reseller } = by.scope else {
            return Err(crate::StoreError::Forbidden(
                "only a reseller admin can open a customer's console",
            ));
        };
        if !matches!(by.actor, crate::Actor::Login { .. }) {
            return Err(crate::StoreError::Forbidden(
                "only a signed-in person can act as a customer",
            ));
        }
        let (action, target) = match customer {
            Some(c) => ("impersonate", Some(self.0.customers().get(by, c).await?.id)),
            None => ("impersonate_end", None),
        };
        let mut tx = self.0.begin().await?;
        let before: Option<i64> =
            sqlx::query("SELECT acting_customer_id FROM sessions WHERE id_sha256 = $1")
                .bind(sha256_hex(id))
                .fetch_optional(tx.conn())
                .await?
                .ok_or(crate::StoreError::NotFound)?
                .try_get("acting_customer_id")?;
        let fresh = random_token(32);
        sqlx::query(
            "UPDATE sessions SET acting_customer_id = $1, id_sha256 = $2 WHERE id_sha256 = $3",
        )
        .bind(target.map(|c| c.0))
        .bind(sha256_hex(&fresh))
        .bind(sha256_hex(id))
        .execute(tx.conn())
        .await?;
        let logged = target.or(before.map(CustomerId));
        audit::record(
            &mut tx,
            by,
            Event {
                action,
                object_type: "customer",
                object_id: logged.map(|c| c.0),
                reseller: Some(reseller),
                customer: logged,
                details: serde_json::json!({}),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(fresh)
    }

    /// Drops sessions that can no longer be resumed.
    pub async fn forget_expired(&self, now: Millis) -> Result<u64> {
        Ok(
            sqlx::query("DELETE FROM sessions WHERE expires_at <= $1 OR last_seen_at <= $2")
                .bind(now)
                .bind(now - IDLE_MS)
                .execute(self.0.pool())
                .await?
                .rows_affected(),
        )
    }

    /// Ends a session (logout).
    pub async fn end(&self, id: &str) -> Result<()> {
        sqlx::query("DELETE FROM sessions WHERE id_sha256 = $1")
            .bind(sha256_hex(id))
            .execute(self.0.pool())
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{TestDb, TwoTenants};
    use crate::Principal;

    async fn sessions_live_until_logout_or_suspension(db: TestDb) {
        let t = TwoTenants::create(&db.store).await;
        let sys = Principal::system();
        let login = db
            .store
            .logins()
            .authenticate("admin@acme.test", "a long enough password")
            .await
            .unwrap()
            .unwrap();
        let sessions = db.store.sessions();
        let s = sessions.start(&login).await.unwrap();
        let active = sessions.resume(&s.id).await.unwrap().unwrap();
        assert_eq!(active.principal.scope, t.customer_a_admin.scope);
        assert_eq!(active.csrf_token, s.csrf_token);
        assert!(sessions.resume("not-a-session").await.unwrap().is_none());
        assert_eq!(
            db.count(
                "SELECT COUNT(*) AS n FROM sessions WHERE id_sha256 LIKE '%' AND csrf_token <> ''"
            )
            .await,
            1
        );
        // The cookie value itself is nowhere in the database.
        let stored = db
            .count(&format!(
                "SELECT COUNT(*) AS n FROM sessions WHERE id_sha256 = '{}'",
                s.id
            ))
            .await;
        assert_eq!(stored, 0);
        // A suspended customer's sessions stop working; reactivated, they work again.
        db.store
            .customers()
            .set_status(&sys, t.customer_a.id, crate::resellers::Status::Suspended)
            .await
            .unwrap();
        assert!(sessions.resume(&s.id).await.unwrap().is_none());
        db.store
            .customers()
            .set_status(&sys, t.customer_a.id, crate::resellers::Status::Active)
            .await
            .unwrap();
        assert!(sessions.resume(&s.id).await.unwrap().is_some());
        // A disabled login's too.
        db.store
            .logins()
            .set_disabled(&sys, login.id, true)
            .await
            .unwrap();
        assert!(sessions.resume(&s.id).await.unwrap().is_none());
        db.store
            .logins()
            .set_disabled(&sys, login.id, false)
            .await
            .unwrap();
        sessions.end(&s.id).await.unwrap();
        assert!(sessions.resume(&s.id).await.unwrap().is_none());
        // Idle sessions end.
        let s2 = sessions.start(&login).await.unwrap();
        db.execute(&format!(
            "UPDATE sessions SET last_seen_at = last_seen_at - {} ",
            super::IDLE_MS
        ))
        .await
        .unwrap();
        assert!(sessions.resume(&s2.id).await.unwrap().is_none());
    }

    async fn a_reseller_admin_acts_as_its_own_customers_only(db: TestDb) {
        let t = TwoTenants::create(&db.store).await;
        let sessions = db.store.sessions();
        let login = |email: &'static str| {
            let store = db.store.clone();
            async move {
                store
                    .logins()
                    .authenticate(email, "a long enough password")
                    .await
                    .unwrap()
                    .unwrap()
            }
        };
        let x = login("x@reseller-x.test").await;
        let s = sessions.start(&x).await.unwrap();
        let own = sessions.resume(&s.id).await.unwrap().unwrap();
        assert_eq!(own.acting_as, None);
        // Customer B is reseller Y's: as good as absent for X.
        let refused = sessions
            .act_as(&s.id, &own.principal, Some(t.customer_b.id))
            .await;
        assert!(
            matches!(refused, Err(crate::StoreError::NotFound)),
            "{refused:?}"
        );
        let id = sessions
            .act_as(&s.id, &own.principal, Some(t.customer_a.id))
            .await
            .unwrap();
        assert!(
            sessions.resume(&s.id).await.unwrap().is_none(),
            "the id before is worth nothing"
        );
        let acting = sessions.resume(&id).await.unwrap().unwrap();
        assert_eq!(acting.acting_as, Some(t.customer_a.id));
        assert_eq!(acting.principal.scope, t.customer_a_admin.scope);
        assert_eq!(acting.principal.actor.label(), own.principal.actor.label());
        // A customer admin cannot act as anyone.
        let a = login("admin@acme.test").await;
        let sa = sessions.start(&a).await.unwrap();
        let customer = sessions.resume(&sa.id).await.unwrap().unwrap();
        let refused = sessions
            .act_as(&sa.id, &customer.principal, Some(t.customer_a.id))
            .await;
        assert!(
            matches!(refused, Err(crate::StoreError::Forbidden(_))),
            "{refused:?}"
        );
        // Suspending the customer ends the acting, not the reseller's session.
        let sys = Principal::system();
        db.store
            .customers()
            .set_status(&sys, t.customer_a.id, crate::resellers::Status::Suspended)
            .await
            .unwrap();
        let back = sessions.resume(&id).await.unwrap().unwrap();
        assert_eq!(back.acting_as, None);
        assert_eq!(back.principal.scope, own.principal.scope);
        let id = sessions.act_as(&id, &own.principal, None).await.unwrap();
        let logged = db
            .count(&format!(
                "SELECT COUNT(*) AS n FROM audit_log WHERE action IN ('impersonate', 'impersonate_end') \
                 AND actor_login_id = {}",
                x.id
            ))
            .await;
        assert_eq!(logged, 2, "start and end are audit-logged");
        // Reactivating the customer does not bring the acting back.
        db.store
            .customers()
            .set_status(&sys, t.customer_a.id, crate::resellers::Status::Active)
            .await
            .unwrap();
        let after = sessions.resume(&id).await.unwrap().unwrap();
        assert_eq!(after.acting_as, None);
    }

    async fn a_second_factor_holds_the_session_until_its_code(db: TestDb) {
        use crate::totp::{code, from_base32, new_secret, step_at};
        let t = TwoTenants::create(&db.store).await;
        let secret = new_secret();
        let bytes = from_base32(&secret).unwrap();
        let at = |offset: i64| format!("{:06}", code(&bytes, step_at(crate::now_ms()) + offset));
        db.store
            .totp()
            .enable(&t.reseller_x_admin, &secret, &at(-1))
            .await
            .unwrap();
        let login = db
            .store
            .logins()
            .authenticate("x@reseller-x.test", "a long enough password")
            .await
            .unwrap()
            .unwrap();
        let sessions = db.store.sessions();
        let s = sessions.start(&login).await.unwrap();
        assert!(s.needs_code);
        assert!(
            sessions.resume(&s.id).await.unwrap().is_none(),
            "not before the code"
        );
        assert!(sessions.waiting(&s.id).await.unwrap().is_some());
        assert_eq!(
            sessions.prove(&s.id, "99999x").await.unwrap(),
            super::Proof::Wrong
        );
        let super::Proof::Accepted { id } = sessions.prove(&s.id, &at(0)).await.unwrap() else {
            panic!("the code is accepted");
        };
        assert!(sessions.resume(&id).await.unwrap().is_some());
        assert!(
            sessions.resume(&s.id).await.unwrap().is_none(),
            "the id known before the second step is worth nothing after it"
        );
        assert!(sessions.waiting(&s.id).await.unwrap().is_none());
        // Five wrong codes end a waiting session.
        let s2 = sessions.start(&login).await.unwrap();
        for _ in 0..4 {
            assert_eq!(
                sessions.prove(&s2.id, "000000x").await.unwrap(),
                super::Proof::Wrong
            );
        }
        assert_eq!(
            sessions.prove(&s2.id, "000000x").await.unwrap(),
            super::Proof::Ended
        );
        assert_eq!(
            sessions.prove(&s2.id, &at(1)).await.unwrap(),
            super::Proof::Ended
        );
        // The API's sign-in takes the code at once.
        assert!(sessions
            .start_with_code(&login, None)
            .await
            .unwrap()
            .is_none());
        let direct = sessions
            .start_with_code(&login, Some(&at(1)))
            .await
            .unwrap()
            .expect("a session");
        assert!(!direct.needs_code);
        assert!(sessions.resume(&direct.id).await.unwrap().is_some());
    }

    crate::both_engines!(
        a_second_factor_holds_the_session_until_its_code,
        sessions_live_until_logout_or_suspension,
        a_reseller_admin_acts_as_its_own_customers_only
    );
}
