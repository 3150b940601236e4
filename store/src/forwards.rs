//! Call forwarding per extension: always, when busy (or on do-not-disturb),
//! after ringing unanswered, and when no phone is registered. A target is an
//! extension number of the same customer, an external number (reached
//! through a carrier trunk), or `voicemail` (the extension's own box). A
//! customer's user may set its own extension's.

use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::audit::{self, Event};
use crate::changes::Change;
use crate::rows::{enum_col, flag, flag_value, text_enum};
use crate::validate::Checker;
use crate::{ExtensionId, Principal, Result, Store, StoreError};

text_enum!(
    /// When a forward applies.
    ForwardCondition {
        Always = "always",
        Busy = "busy",
        NoAnswer = "no_answer",
        Unavailable = "unavailable",
    }
);

/// The target that sends a call to the extension's own voicemail box.
pub const VOICEMAIL: &str = "voicemail";

/// Ringing time before a no-answer forward, when none is given.
pub const DEFAULT_NO_ANSWER_S: i64 = 20;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Forward {
    pub condition: ForwardCondition,
    /// An extension number, or an external number (digits, `+` first).
    pub target: String,
    /// Seconds of ringing before `no_answer` applies (5–300, default 20).
    #[serde(default)]
    pub timeout_s: Option<i64>,
    #[serde(default = "enabled")]
    pub enabled: bool,
}

fn enabled() -> bool {
    true
}

pub struct Forwards<'s>(pub(crate) &'s Store);

impl Forwards<'_> {
    /// The extension's forwards (its own user, its customer's admins, above).
    pub async fn get(&self, by: &Principal, extension: ExtensionId) -> Result<Vec<Forward>> {
        let ext = self.0.extensions().get_live(by, extension).await?;
        let rows = sqlx::query(
            "SELECT condition, target, timeout_s, enabled FROM call_forwards \
             WHERE extension_id = $1 ORDER BY condition",
        )
        .bind(ext.id.0)
        .fetch_all(self.0.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(Forward {
                    condition: enum_col(row, "condition", ForwardCondition::parse)?,
                    target: row.try_get("target")?,
                    timeout_s: row.try_get("timeout_s")?,
                    enabled: flag(row, "enabled")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// Replaces the extension's forwards (at most one per condition).
    pub async fn set(
        &self,
        by: &Principal,
        extension: ExtensionId,
        forwards: &[Forward],
    ) -> Result<Vec<Forward>> {
        let ext = self.0.extensions().get_live(by, extension).await?;
        if by.read_only {
            return Err(StoreError::Forbidden("this credential is read-only"));
        }
        let mut check = Checker::new();
        for (i, f) in forwards.iter().enumerate() {
            let field = |name: &str| format!("[{i}].{name}");
            let digits = f.target.strip_prefix('+').unwrap_or(&f.target);
            check.check(
                f.target == VOICEMAIL
                    || ((1..=32).contains(&f.target.len())
                        && !digits.is_empty()
                        && digits.bytes().all(|b| b.is_ascii_digit())),
                &field("target"),
                "must be an extension number, a phone number (digits, + first) or \"voicemail\"",
            );
            check.check(
                f.target != ext.number,
                &field("target"),
                "must not be the extension itself",
            );
            check.check(
                f.timeout_s.is_none_or(|t| (5..=300).contains(&t))
                    && (f.timeout_s.is_none() || f.condition == ForwardCondition::NoAnswer),
                &field("timeout_s"),
                "is 5 to 300 seconds, and only for no_answer",
            );
            check.check(
                forwards[..i].iter().all(|g| g.condition != f.condition),
                &field("condition"),
                "appears twice",
            );
        }
        check.finish()?;
        let mut tx = self.0.begin().await?;
        sqlx::query("DELETE FROM call_forwards WHERE extension_id = $1")
            .bind(ext.id.0)
            .execute(tx.conn())
            .await?;
        for f in forwards {
            let timeout = match f.condition {
                ForwardCondition::NoAnswer => Some(f.timeout_s.unwrap_or(DEFAULT_NO_ANSWER_S)),
                _ => None,
            };
            sqlx::query(
                "INSERT INTO call_forwards (extension_id, customer_id, condition, target, timeout_s, enabled) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(ext.id.0)
            .bind(ext.customer_id.0)
            .bind(f.condition.as_str())
            .bind(&f.target)
            .bind(timeout)
            .bind(flag_value(f.enabled))
            .execute(tx.conn())
            .await?;
        }
        sqlx::query("UPDATE extensions SET version = version + 1 WHERE id = $1")
            .bind(ext.id.0)
            .execute(tx.conn())
            .await?;
        audit::record(
            &mut tx,
            by,
            Event {
                action: "set_forwarding",
                object_type: "extension",
                object_id: Some(ext.id.0),
                reseller: Some(ext.reseller_id),
                customer: Some(ext.customer_id),
                details: serde_json::to_value(forwards).unwrap_or_default(),
            },
        )
        .await?;
        tx.changed(Change::Customer {
            customer: ext.customer_id,
        });
        tx.commit().await?;
        self.get(by, extension).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{TestDb, TwoTenants};

    fn fwd(condition: ForwardCondition, target: &str) -> Forward {
        Forward {
            condition,
            target: target.to_owned(),
            timeout_s: None,
            enabled: true,
        }
    }

    async fn users_set_their_own_and_nobody_elses(db: TestDb) {
        let t = TwoTenants::create(&db.store).await;
        let forwards = db.store.forwards();
        let set = [
            fwd(ForwardCondition::Always, "102"),
            fwd(ForwardCondition::NoAnswer, "+4930123456"),
        ];
        let saved = forwards
            .set(&t.customer_a_user, t.extension_a.id, &set)
            .await
            .unwrap();
        assert_eq!(saved.len(), 2);
        let no_answer = saved
            .iter()
            .find(|f| f.condition == ForwardCondition::NoAnswer)
            .unwrap();
        assert_eq!(no_answer.timeout_s, Some(DEFAULT_NO_ANSWER_S));
        assert_eq!(
            forwards
                .get(&t.customer_a_admin, t.extension_a.id)
                .await
                .unwrap(),
            saved
        );
        // Another tenant, from either side, sees nothing.
        assert!(matches!(
            forwards.get(&t.customer_b_admin, t.extension_a.id).await,
            Err(StoreError::NotFound)
        ));
        assert!(matches!(
            forwards
                .set(&t.reseller_y_admin, t.extension_a.id, &[])
                .await,
            Err(StoreError::NotFound)
        ));
        assert!(matches!(
            forwards
                .set(&t.customer_a_user, t.extension_b.id, &[])
                .await,
            Err(StoreError::NotFound)
        ));
        // Validation.
        for bad in [
            vec![fwd(ForwardCondition::Always, "101")],
            vec![fwd(ForwardCondition::Always, "12a")],
            vec![fwd(ForwardCondition::Busy, "+")],
            vec![
                fwd(ForwardCondition::Busy, "102"),
                fwd(ForwardCondition::Busy, "103"),
            ],
            vec![Forward {
                timeout_s: Some(2),
                ..fwd(ForwardCondition::NoAnswer, "102")
            }],
            vec![Forward {
                timeout_s: Some(30),
                ..fwd(ForwardCondition::Busy, "102")
            }],
        ] {
            assert!(
                matches!(
                    forwards
                        .set(&t.customer_a_admin, t.extension_a.id, &bad)
                        .await,
                    Err(StoreError::Invalid(_))
                ),
                "{bad:?}"
            );
        }
        // The directory carries the enabled ones to the proxy.
        let dir = db
            .store
            .directory()
            .customer(&Principal::system(), t.customer_a.id)
            .await
            .unwrap()
            .unwrap();
        let ext = dir
            .extensions
            .iter()
            .find(|e| e.id == t.extension_a.id)
            .unwrap();
        assert_eq!(ext.forwards.len(), 2);
        forwards
            .set(&t.customer_a_admin, t.extension_a.id, &[])
            .await
            .unwrap();
        assert!(forwards
            .get(&t.customer_a_user, t.extension_a.id)
            .await
            .unwrap()
            .is_empty());
    }

    crate::both_engines!(users_set_their_own_and_nobody_elses);
}
