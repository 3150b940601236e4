//! A reseller's abuse thresholds, where it wants them stricter or looser
//! than the SIP nodes' defaults (within bounds that keep guessing hard).

use sqlx::Row;

use super::GuardSettings;
use crate::audit::{self, Event};
use crate::changes::Change;
use crate::principal::Level;
use crate::validate::Checker;
use crate::{Principal, ResellerId, Result, Store};

pub struct GuardSettingsStore<'s>(pub(crate) &'s Store);

impl GuardSettings {
    fn validate(&self) -> Result<()> {
        let mut check = Checker::new();
        check
            .check(
                self.auth_failures
                    .is_none_or(|n| (3..=super::MAX_AUTH_FAILURES).contains(&n)),
                "auth_failures",
                "must be 3 to 20",
            )
            .check(
                self.account_failures
                    .is_none_or(|n| (5..=super::MAX_ACCOUNT_FAILURES).contains(&n)),
                "account_failures",
                "must be 5 to 250",
            );
        check.finish()
    }
}

fn count(row: &sqlx::any::AnyRow, name: &str) -> Result<Option<u32>, sqlx::Error> {
    Ok(row
        .try_get::<Option<i64>, _>(name)?
        .map(|v| u32::try_from(v).unwrap_or(u32::MAX)))
}

impl GuardSettingsStore<'_> {
    /// A reseller's thresholds (the reseller, the operator).
    pub async fn get(&self, by: &Principal, reseller: ResellerId) -> Result<GuardSettings> {
        let r = self.0.resellers().get(by, reseller).await?;
        by.may_read(Level::Reseller)?;
        let row = sqlx::query(
            "SELECT auth_failures, account_failures FROM sip_guard_settings WHERE reseller_id = $1",
        )
        .bind(r.id.0)
        .fetch_optional(self.0.pool())
        .await?;
        Ok(match row {
            Some(row) => GuardSettings {
                auth_failures: count(&row, "auth_failures")?,
                account_failures: count(&row, "account_failures")?,
            },
            None => GuardSettings::default(),
        })
    }

    /// Sets a reseller's thresholds (the reseller, the operator).
    pub async fn set(
        &self,
        by: &Principal,
        reseller: ResellerId,
        settings: &GuardSettings,
    ) -> Result<GuardSettings> {
        let r = self.0.resellers().get(by, reseller).await?;
        by.may_write(Level::Reseller)?;
        settings.validate()?;
        let mut tx = self.0.begin().await?;
        sqlx::query(
            "INSERT INTO sip_guard_settings (reseller_id, auth_failures, account_failures) VALUES ($1, $2, $3) \
             ON CONFLICT (reseller_id) DO UPDATE SET auth_failures = excluded.auth_failures, \
             account_failures = excluded.account_failures, version = sip_guard_settings.version + 1",
        )
        .bind(r.id.0)
        .bind(settings.auth_failures.map(i64::from))
        .bind(settings.account_failures.map(i64::from))
        .execute(tx.conn())
        .await?;
        audit::record(
            &mut tx,
            by,
            Event {
                action: "set_sip_guard_settings",
                object_type: "reseller",
                object_id: Some(r.id.0),
                reseller: Some(r.id),
                customer: None,
                details: serde_json::to_value(settings).unwrap_or_default(),
            },
        )
        .await?;
        tx.changed(Change::Reseller { reseller: r.id });
        tx.commit().await?;
        self.get(by, reseller).await
    }

    /// Every reseller's that has any (the system, for the directory).
    pub(crate) async fn all(&self) -> Result<std::collections::HashMap<ResellerId, GuardSettings>> {
        let rows = sqlx::query(
            "SELECT reseller_id, auth_failures, account_failures FROM sip_guard_settings",
        )
        .fetch_all(self.0.pool())
        .await?;
        let mut out = std::collections::HashMap::new();
        for row in &rows {
            out.insert(
                ResellerId(row.try_get("reseller_id")?),
                GuardSettings {
                    auth_failures: count(row, "auth_failures")?,
                    account_failures: count(row, "account_failures")?,
                },
            );
        }
        Ok(out)
    }
}
