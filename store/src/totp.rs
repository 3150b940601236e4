//! The optional second factor of reseller and operator admins: time-based
//! one-time passwords (RFC 6238: HMAC-SHA-1, 6 digits, 30-second steps), as
//! every authenticator app computes them. The secret is kept encrypted with
//! the installation's key; each time step is accepted once per login, and a
//! code from the step before or after counts (clock drift).

use hmac::{Hmac, Mac};
use rand::RngCore;
use sqlx::Row;

use crate::audit::{self, Event};
use crate::logins::Role;
use crate::{Actor, LoginId, Principal, Result, Store, StoreError};

const STEP_S: i64 = 30;
const DIGITS: u32 = 6;
const SECRET_BYTES: usize = 20;
/// Wrong codes in a row before a login's codes are refused for a while.
const MAX_FAILURES: i64 = 10;
/// How long codes are refused after that (at most ten guesses per quarter hour).
const LOCK_MS: i64 = 15 * 60 * 1000;

/// The code for `secret` at time step `step` (RFC 6238 §4, RFC 4226 §5.3).
pub fn code(secret: &[u8], step: i64) -> u32 {
    let Ok(mut mac) = Hmac::<sha1::Sha1>::new_from_slice(secret) else {
        return u32::MAX;
    };
    mac.update(&step.to_be_bytes());
    let hash = mac.finalize().into_bytes();
    let offset = usize::from(hash[hash.len() - 1] & 0x0f);
    let binary = u32::from_be_bytes([
        hash[offset] & 0x7f,
        hash[offset + 1],
        hash[offset + 2],
        hash[offset + 3],
    ]);
    binary % 10u32.pow(DIGITS)
}

/// The time step of a moment in milliseconds.
pub fn step_at(now_ms: i64) -> i64 {
    now_ms.div_euclid(1000 * STEP_S)
}

/// RFC 4648 base32 without padding, as authenticator apps take secrets.
pub fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::new();
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

/// Decodes base32 (case and spaces ignored); None if it is not base32.
pub fn from_base32(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let (mut buffer, mut bits) = (0u32, 0u32);
    for c in text.chars().filter(|c| !c.is_whitespace() && *c != '=') {
        let value = match c.to_ascii_uppercase() {
            c @ 'A'..='Z' => c as u32 - 'A' as u32,
            c @ '2'..='7' => c as u32 - '2' as u32 + 26,
            _ => return None,
        };
        buffer = (buffer << 5) | value;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
        }
    }
    Some(out)
}

/// A new secret to enrol, in base32.
pub fn new_secret() -> String {
    let mut bytes = [0u8; SECRET_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base32(&bytes)
}

/// Which step, if any, `given` is the code of around `now_ms` (±1 step).
fn matching_step(secret: &[u8], given: &str, now_ms: i64) -> Option<i64> {
    let given = given.trim().replace(' ', "");
    if given.len() != DIGITS as usize || !given.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let value: u32 = given.parse().ok()?;
    let now = step_at(now_ms);
    (now - 1..=now + 1).find(|&step| code(secret, step) == value)
}

pub struct Totp<'s>(pub(crate) &'s Store);

impl Totp<'_> {
    /// Whether a login has a second factor.
    pub async fn enabled(&self, login: LoginId) -> Result<bool> {
        let row = sqlx::query("SELECT totp_secret_enc FROM logins WHERE id = $1")
            .bind(login.0)
            .fetch_optional(self.0.pool())
            .await?
            .ok_or(StoreError::NotFound)?;
        Ok(row
            .try_get::<Option<String>, _>("totp_secret_enc")?
            .is_some())
    }

    /// Turns the second factor on for the caller's own login, once the
    /// caller has shown a valid code of `secret` (the app is set up). A
    /// factor already on is not replaced: it must be turned off (with its
    /// code) first.
    pub async fn enable(&self, by: &Principal, secret: &str, given: &str) -> Result<()> {
        let login = self.own_admin_login(by).await?;
        if self.enabled(login).await? {
            return Err(StoreError::Conflict(
                "a second factor is already on; turn it off with its code first".into(),
            ));
        }
        let bytes = from_base32(secret)
            .filter(|b| b.len() >= 16)
            .ok_or_else(|| StoreError::invalid("secret", "is not a valid secret"))?;
        let step = matching_step(&bytes, given, crate::now_ms())
            .ok_or_else(|| StoreError::invalid("code", "is not the app's current code"))?;
        let mut tx = self.0.begin().await?;
        sqlx::query(
            "UPDATE logins SET totp_secret_enc = $1, totp_last_step = $2, totp_failures = 0, \
             totp_locked_until = NULL, version = version + 1 WHERE id = $3",
        )
        .bind(self.0.secrets().encrypt(&base32(&bytes)))
        .bind(step)
        .bind(login.0)
        .execute(tx.conn())
        .await?;
        self.log(&mut tx, by, login, "enable_totp").await?;
        tx.commit().await
    }

    /// Turns it off again; needs a current code.
    pub async fn disable(&self, by: &Principal, given: &str) -> Result<()> {
        let login = self.own_admin_login(by).await?;
        if !self.verify(login, given).await? {
            return Err(StoreError::invalid("code", "is not the app's current code"));
        }
        let mut tx = self.0.begin().await?;
        sqlx::query(
            "UPDATE logins SET totp_secret_enc = NULL, totp_last_step = NULL, version = version + 1 WHERE id = $1",
        )
        .bind(login.0)
        .execute(tx.conn())
        .await?;
        self.log(&mut tx, by, login, "disable_totp").await?;
        tx.commit().await
    }

    /// Checks a code for a login; a step's code is accepted only once, and
    /// at most ten codes are tried per quarter hour: each attempt is claimed
    /// (counted, and the lock set at the tenth) before the code is looked
    /// at, so parallel guesses cannot slip past the limit.
    pub async fn verify(&self, login: LoginId, given: &str) -> Result<bool> {
        let now = crate::now_ms();
        let claimed = sqlx::query(
            "UPDATE logins SET \
             totp_failures = CASE WHEN totp_failures + 1 >= $2 THEN 0 ELSE totp_failures + 1 END, \
             totp_locked_until = CASE WHEN totp_failures + 1 >= $2 THEN $3 ELSE totp_locked_until END \
             WHERE id = $1 AND totp_secret_enc IS NOT NULL \
             AND (totp_locked_until IS NULL OR totp_locked_until <= $4)",
        )
        .bind(login.0)
        .bind(MAX_FAILURES)
        .bind(now + LOCK_MS)
        .bind(now)
        .execute(self.0.pool())
        .await?
        .rows_affected();
        if claimed != 1 {
            return Ok(false);
        }
        let row = sqlx::query("SELECT totp_secret_enc FROM logins WHERE id = $1")
            .bind(login.0)
            .fetch_optional(self.0.pool())
            .await?
            .ok_or(StoreError::NotFound)?;
        let Some(sealed) = row.try_get::<Option<String>, _>("totp_secret_enc")? else {
            return Ok(false);
        };
        // A secret that does not decode fails closed (an empty key's codes
        // would be anyone's to compute).
        let secret = from_base32(&self.0.secrets().decrypt(&sealed)?)
            .filter(|b| b.len() >= 16)
            .ok_or(StoreError::Crypto)?;
        let Some(step) = matching_step(&secret, given, now) else {
            return Ok(false);
        };
        // The step is claimed too: the same code (or an older one) cannot
        // pass twice. A right code clears the count of wrong ones.
        let accepted = sqlx::query(
            "UPDATE logins SET totp_last_step = $1, totp_failures = 0, totp_locked_until = NULL \
             WHERE id = $2 AND (totp_last_step IS NULL OR totp_last_step < $1)",
        )
        .bind(step)
        .bind(login.0)
        .execute(self.0.pool())
        .await?
        .rows_affected();
        if accepted == 1 {
            return Ok(true);
        }
        Ok(false)
    }

    /// The caller's own login, if it is a reseller or operator admin: the
    /// second factor is theirs to set, nobody else's.
    async fn own_admin_login(&self, by: &Principal) -> Result<LoginId> {
        let Actor::Login { id, .. } = &by.actor else {
            return Err(StoreError::Forbidden(
                "only a signed-in person sets a second factor",
            ));
        };
        let login = self.0.logins().get(&Principal::system(), *id).await?;
        if !matches!(login.role, Role::ResellerAdmin | Role::OperatorAdmin) {
            return Err(StoreError::Forbidden(
                "a second factor is for reseller and operator admins",
            ));
        }
        Ok(login.id)
    }

    async fn log(
        &self,
        tx: &mut crate::db::Tx<'_>,
        by: &Principal,
        login: LoginId,
        action: &str,
    ) -> Result<()> {
        audit::record(
            tx,
            by,
            Event {
                action,
                object_type: "login",
                object_id: Some(login.0),
                reseller: by.scope.reseller(),
                customer: None,
                details: serde_json::json!({}),
            },
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{TestDb, TwoTenants};

    #[test]
    fn codes_match_the_rfc_6238_test_vectors() {
        // RFC 6238 Appendix B, SHA-1 seed, last 6 of the 8 digits given there.
        let seed = b"12345678901234567890";
        for (time_s, expected) in [
            (59, 94_287_082u32),
            (1_111_111_109, 7_081_804),
            (1_111_111_111, 14_050_471),
            (1_234_567_890, 89_005_924),
            (2_000_000_000, 69_279_037),
        ] {
            assert_eq!(
                code(seed, time_s / 30),
                expected % 1_000_000,
                "T = {time_s}"
            );
        }
    }

    #[test]
    fn base32_round_trips() {
        assert_eq!(base32(b"foobar"), "MZXW6YTBOI");
        assert_eq!(from_base32("mzxw 6ytb oi").as_deref(), Some(&b"foobar"[..]));
        assert_eq!(from_base32("not base32!"), None);
        let secret = new_secret();
        assert_eq!(from_base32(&secret).map(|b| b.len()), Some(SECRET_BYTES));
    }

    #[test]
    fn codes_of_the_neighbouring_steps_count() {
        let secret = b"12345678901234567890";
        let now = 1_111_111_111_000;
        let previous = format!("{:06}", code(secret, step_at(now) - 1));
        assert_eq!(
            matching_step(secret, &previous, now),
            Some(step_at(now) - 1)
        );
        let old = format!("{:06}", code(secret, step_at(now) - 3));
        assert_eq!(matching_step(secret, &old, now), None);
        assert_eq!(matching_step(secret, "12345", now), None);
        assert_eq!(matching_step(secret, "abcdef", now), None);
    }

    async fn admins_enrol_and_each_code_counts_once(db: TestDb) {
        let t = TwoTenants::create(&db.store).await;
        let totp = db.store.totp();
        let secret = new_secret();
        let bytes = from_base32(&secret).expect("base32");
        let now_code = || format!("{:06}", code(&bytes, step_at(crate::now_ms())));
        // Customer admins have no second factor; a wrong code enrols nothing.
        let refused = totp.enable(&t.customer_a_admin, &secret, &now_code()).await;
        assert!(
            matches!(refused, Err(StoreError::Forbidden(_))),
            "{refused:?}"
        );
        let wrong = totp.enable(&t.reseller_x_admin, &secret, "000000").await;
        let x = match &t.reseller_x_admin.actor {
            Actor::Login { id, .. } => *id,
            _ => panic!("a login"),
        };
        if now_code() != "000000" {
            assert!(matches!(wrong, Err(StoreError::Invalid(_))), "{wrong:?}");
            assert!(!totp.enabled(x).await.unwrap());
        }
        totp.enable(&t.reseller_x_admin, &secret, &now_code())
            .await
            .unwrap();
        assert!(totp.enabled(x).await.unwrap());
        // The code used to enrol is spent; so is any code once used.
        assert!(!totp.verify(x, &now_code()).await.unwrap());
        let next = format!("{:06}", code(&bytes, step_at(crate::now_ms()) + 1));
        assert!(totp.verify(x, &next).await.unwrap());
        assert!(!totp.verify(x, &next).await.unwrap(), "replayed");
        // A factor already on is not replaced without its code.
        let other = new_secret();
        let other_bytes = from_base32(&other).expect("base32");
        let other_code = format!("{:06}", code(&other_bytes, step_at(crate::now_ms())));
        let replaced = totp.enable(&t.reseller_x_admin, &other, &other_code).await;
        assert!(
            matches!(replaced, Err(StoreError::Conflict(_))),
            "{replaced:?}"
        );
        // Ten wrong codes lock codes out, right ones included.
        for _ in 0..10 {
            assert!(!totp.verify(x, "00000x").await.unwrap());
        }
        let later = format!("{:06}", code(&bytes, step_at(crate::now_ms()) + 1));
        db.execute("UPDATE logins SET totp_last_step = 0")
            .await
            .unwrap();
        assert!(!totp.verify(x, &later).await.unwrap(), "locked");
        db.execute("UPDATE logins SET totp_locked_until = 1")
            .await
            .unwrap();
        assert!(
            totp.verify(x, &later).await.unwrap(),
            "unlocked after the wait"
        );
        // The secret is stored encrypted, not as given.
        let plain = db
            .count(&format!(
                "SELECT COUNT(*) AS n FROM logins WHERE totp_secret_enc LIKE '%{secret}%'"
            ))
            .await;
        assert_eq!(plain, 0);
    }

    crate::both_engines!(admins_enrol_and_each_code_counts_once);
}
