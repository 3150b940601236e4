//! Toll-fraud alarms, on top of the hard limits (`limits`): what a call to
//! the public network sets off — a device calling abroad or a premium-rate
//! number it never called before, a burst of calls from one device, a call
//! abroad or at premium rates while the customer is closed — and whether
//! that only warns (an alert, the call goes on) or blocks (an alert, 403).
//!
//! Each device's destinations are learnt from its calls (a country calling
//! code for calls abroad, the whole number for premium-rate ones) and can be
//! approved ahead by an administrator, so that a blocking alarm lets a
//! known destination through. The SIP nodes hold both in their directory.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::audit::{self, Event};
use crate::changes::Change;
use crate::principal::Level;
use crate::rows::{enum_col, text_enum};
use crate::validate::Checker;
use crate::{BusinessHoursId, CustomerId, DeviceId, Millis, Principal, Result, Store, StoreError};

text_enum!(
    /// What an alarm does.
    AlarmMode { Off = "off", Warn = "warn", Block = "block" }
);

/// A customer's alarms; unset: warn on new destinations and bursts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FraudAlarms {
    /// A device calls a country, or a premium-rate number, it never called
    /// before (and nobody approved).
    pub new_destination: AlarmMode,
    /// A device places `burst_calls` calls to the public network within
    /// `burst_window_s` seconds.
    pub burst: AlarmMode,
    /// 2 to 10000.
    pub burst_calls: u32,
    /// 10 to 86400.
    pub burst_window_s: u32,
    /// A call abroad or at premium rates while `after_hours_rule_id` (one of
    /// the customer's business-hours rules) says closed.
    pub after_hours: AlarmMode,
    pub after_hours_rule_id: Option<BusinessHoursId>,
}

impl Default for FraudAlarms {
    fn default() -> Self {
        FraudAlarms {
            new_destination: AlarmMode::Warn,
            burst: AlarmMode::Warn,
            burst_calls: 10,
            burst_window_s: 120,
            after_hours: AlarmMode::Off,
            after_hours_rule_id: None,
        }
    }
}

/// A destination a device may call without the new-destination alarm.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KnownDestination {
    /// A country calling code (`44`) or a premium-rate number (`49900123456`), E.164 digits.
    pub destination: String,
    pub first_at: Millis,
    /// Who approved it ahead; None when a call taught it.
    pub approved_by: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApprovedDestination {
    /// A country calling code (`44`, `1`, `880`) or a whole premium-rate number, digits only.
    pub destination: String,
}

/// The key a destination is known by: a call abroad by its country
/// calling code, a premium-rate call by its whole number.
pub fn destination_key(e164: &str, class: crate::numbering::Class) -> Option<String> {
    use crate::numbering::Class;
    match class {
        Class::International => crate::numbering::calling_code(e164).map(str::to_owned),
        Class::Premium => Some(e164.to_owned()),
        Class::National | Class::Emergency => None,
    }
}

impl FraudAlarms {
    fn validate(&self) -> Result<()> {
        let mut check = Checker::new();
        check
            .check(
                (2..=10_000).contains(&self.burst_calls),
                "burst_calls",
                "must be 2 to 10000",
            )
            .check(
                (10..=86_400).contains(&self.burst_window_s),
                "burst_window_s",
                "must be 10 to 86400 seconds",
            )
            .check(
                self.after_hours == AlarmMode::Off || self.after_hours_rule_id.is_some(),
                "after_hours_rule_id",
                "name the business-hours rule that says when the customer is open",
            );
        check.finish()
    }
}

pub struct FraudAlarmSettings<'s>(pub(crate) &'s Store);

const COLUMNS: &str =
    "customer_id, new_destination, burst, burst_calls, burst_window_s, after_hours, after_hours_rule_id";

fn from_row(row: &sqlx::any::AnyRow) -> Result<FraudAlarms, sqlx::Error> {
    let count = |name: &str| -> Result<u32, sqlx::Error> {
        Ok(u32::try_from(row.try_get::<i64, _>(name)?).unwrap_or(u32::MAX))
    };
    Ok(FraudAlarms {
        new_destination: enum_col(row, "new_destination", AlarmMode::parse)?,
        burst: enum_col(row, "burst", AlarmMode::parse)?,
        burst_calls: count("burst_calls")?,
        burst_window_s: count("burst_window_s")?,
        after_hours: enum_col(row, "after_hours", AlarmMode::parse)?,
        after_hours_rule_id: row
            .try_get::<Option<i64>, _>("after_hours_rule_id")?
            .map(BusinessHoursId),
    })
}

fn is_destination(text: &str) -> bool {
    (1..=15).contains(&text.len())
        && text.bytes().all(|b| b.is_ascii_digit())
        && !text.starts_with('0')
}

impl FraudAlarmSettings<'_> {
    /// A customer's alarms (its admins, its reseller, the operator).
    pub async fn get(&self, by: &Principal, customer: CustomerId) -> Result<FraudAlarms> {
        by.may_read(Level::Customer)?;
        let c = self.0.customers().get(by, customer).await?;
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM fraud_alarms WHERE customer_id = $1"
        ))
        .bind(c.id.0)
        .fetch_optional(self.0.pool())
        .await?;
        Ok(match row {
            Some(row) => from_row(&row)?,
            None => FraudAlarms::default(),
        })
    }

    /// Sets a customer's alarms: its reseller or the operator (the customer
    /// is the one they protect against, should its phones be taken over).
    pub async fn set(
        &self,
        by: &Principal,
        customer: CustomerId,
        alarms: &FraudAlarms,
    ) -> Result<FraudAlarms> {
        let c = self.0.customers().get(by, customer).await?;
        by.may_write(Level::Reseller)?;
        alarms.validate()?;
        let mut tx = self.0.begin().await?;
        if let Some(rule) = alarms.after_hours_rule_id {
            let ours = sqlx::query(
                "SELECT 1 AS one FROM business_hours WHERE id = $1 AND customer_id = $2 AND deleted_at IS NULL",
            )
            .bind(rule.0)
            .bind(c.id.0)
            .fetch_optional(tx.conn())
            .await?
            .is_some();
            if !ours {
                return Err(StoreError::invalid(
                    "after_hours_rule_id",
                    "is not a business-hours rule of this customer",
                ));
            }
        }
        sqlx::query(
            "INSERT INTO fraud_alarms (customer_id, new_destination, burst, burst_calls, burst_window_s, \
             after_hours, after_hours_rule_id) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (customer_id) DO UPDATE SET new_destination = excluded.new_destination, \
             burst = excluded.burst, burst_calls = excluded.burst_calls, \
             burst_window_s = excluded.burst_window_s, after_hours = excluded.after_hours, \
             after_hours_rule_id = excluded.after_hours_rule_id, version = fraud_alarms.version + 1",
        )
        .bind(c.id.0)
        .bind(alarms.new_destination.as_str())
        .bind(alarms.burst.as_str())
        .bind(i64::from(alarms.burst_calls))
        .bind(i64::from(alarms.burst_window_s))
        .bind(alarms.after_hours.as_str())
        .bind(alarms.after_hours_rule_id.map(|r| r.0))
        .execute(tx.conn())
        .await?;
        audit::record(
            &mut tx,
            by,
            Event {
                action: "set_fraud_alarms",
                object_type: "customer",
                object_id: Some(c.id.0),
                reseller: Some(c.reseller_id),
                customer: Some(c.id),
                details: serde_json::to_value(alarms).unwrap_or_default(),
            },
        )
        .await?;
        tx.changed(Change::Customer { customer: c.id });
        tx.commit().await?;
        self.get(by, customer).await
    }

    /// The destinations a device is known to call.
    pub async fn known(&self, by: &Principal, device: DeviceId) -> Result<Vec<KnownDestination>> {
        let d = self.0.devices().get(by, device).await?;
        let rows = sqlx::query(
            "SELECT destination, first_at, approved_by FROM device_destinations \
             WHERE device_id = $1 ORDER BY destination",
        )
        .bind(d.id.0)
        .fetch_all(self.0.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(KnownDestination {
                    destination: row.try_get("destination")?,
                    first_at: row.try_get("first_at")?,
                    approved_by: row.try_get("approved_by")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    /// Approves a destination for a device ahead of its first call (the
    /// customer's administrators, its reseller, the operator).
    pub async fn approve(
        &self,
        by: &Principal,
        device: DeviceId,
        destination: &str,
    ) -> Result<Vec<KnownDestination>> {
        let d = self.0.devices().get(by, device).await?;
        by.may_write(Level::Customer)?;
        if !is_destination(destination) {
            return Err(StoreError::invalid(
                "destination",
                "must be a country calling code or a whole number, as E.164 digits (no 0 or + in front)",
            ));
        }
        let mut tx = self.0.begin().await?;
        sqlx::query(
            "INSERT INTO device_destinations (device_id, customer_id, destination, first_at, approved_by) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (device_id, destination) DO NOTHING",
        )
        .bind(d.id.0)
        .bind(d.customer_id.0)
        .bind(destination)
        .bind(crate::now_ms())
        .bind(by.actor.label())
        .execute(tx.conn())
        .await?;
        let customer = self.0.customers().get(by, d.customer_id).await?;
        audit::record(
            &mut tx,
            by,
            Event {
                action: "approve_destination",
                object_type: "device",
                object_id: Some(d.id.0),
                reseller: Some(customer.reseller_id),
                customer: Some(customer.id),
                details: serde_json::json!({ "destination": destination }),
            },
        )
        .await?;
        tx.changed(Change::Customer {
            customer: d.customer_id,
        });
        tx.commit().await?;
        self.known(by, device).await
    }

    /// A destination a device called for the first time (the system, from
    /// the SIP side). A device deleted meanwhile is skipped.
    pub async fn learn(
        &self,
        by: &Principal,
        customer: CustomerId,
        device: DeviceId,
        destination: &str,
        at: Millis,
    ) -> Result<()> {
        by.may_write(Level::Operator)?;
        if !is_destination(destination) {
            return Err(StoreError::invalid("destination", "must be E.164 digits"));
        }
        let mut tx = self.0.begin().await?;
        let added = sqlx::query(
            "INSERT INTO device_destinations (device_id, customer_id, destination, first_at) \
             SELECT id, customer_id, $3, $4 FROM devices WHERE id = $1 AND customer_id = $2 \
             ON CONFLICT (device_id, destination) DO NOTHING",
        )
        .bind(device.0)
        .bind(customer.0)
        .bind(destination)
        .bind(at)
        .execute(tx.conn())
        .await?
        .rows_affected();
        if added > 0 {
            tx.changed(Change::Customer { customer });
        }
        tx.commit().await
    }

    /// Every customer's alarms that were set, and every device's known
    /// destinations (the directory, for the SIP nodes).
    pub(crate) async fn for_directory(
        &self,
        only: Option<i64>,
    ) -> Result<(
        HashMap<CustomerId, FraudAlarms>,
        HashMap<DeviceId, Vec<String>>,
    )> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM fraud_alarms WHERE ($1 IS NULL OR customer_id = $1)"
        ))
        .bind(only)
        .fetch_all(self.0.pool())
        .await?;
        let mut alarms = HashMap::new();
        for row in &rows {
            alarms.insert(CustomerId(row.try_get("customer_id")?), from_row(row)?);
        }
        let rows = sqlx::query(
            "SELECT device_id, destination FROM device_destinations \
             WHERE ($1 IS NULL OR customer_id = $1) ORDER BY device_id",
        )
        .bind(only)
        .fetch_all(self.0.pool())
        .await?;
        let mut known: HashMap<DeviceId, Vec<String>> = HashMap::new();
        for row in &rows {
            known
                .entry(DeviceId(row.try_get("device_id")?))
                .or_default()
                .push(row.try_get("destination")?);
        }
        Ok((alarms, known))
    }
}

impl Store {
    pub fn fraud_alarms(&self) -> FraudAlarmSettings<'_> {
        FraudAlarmSettings(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::business_hours::BusinessHoursSettings;
    use crate::testing::{TestDb, TwoTenants};

    fn rule(name: &str) -> BusinessHoursSettings {
        BusinessHoursSettings {
            name: name.into(),
            weekly: Vec::new(),
            holidays: Vec::new(),
            open_destination: None,
            closed_destination: None,
        }
    }

    async fn resellers_set_alarms_for_their_own_customers(db: TestDb) {
        let t = TwoTenants::create(&db.store).await;
        let alarms = db.store.fraud_alarms();
        let a = t.customer_a.id;
        assert_eq!(
            alarms.get(&t.customer_a_admin, a).await.unwrap(),
            FraudAlarms::default()
        );
        let closed_a = db
            .store
            .business_hours()
            .create(&t.customer_a_admin, a, &rule("Office"))
            .await
            .unwrap();
        let closed_b = db
            .store
            .business_hours()
            .create(&t.customer_b_admin, t.customer_b.id, &rule("Office"))
            .await
            .unwrap();
        let strict = FraudAlarms {
            new_destination: AlarmMode::Block,
            after_hours: AlarmMode::Block,
            after_hours_rule_id: Some(closed_a.id),
            ..FraudAlarms::default()
        };
        // The customer cannot loosen what protects it from its own phones;
        // another reseller does not see the customer at all.
        assert!(matches!(
            alarms.set(&t.customer_a_admin, a, &strict).await,
            Err(StoreError::Forbidden(_))
        ));
        assert!(matches!(
            alarms.set(&t.reseller_y_admin, a, &strict).await,
            Err(StoreError::NotFound)
        ));
        assert!(matches!(
            alarms.get(&t.customer_b_admin, a).await,
            Err(StoreError::NotFound)
        ));
        // Another customer's rule, nonsense counts and a rule-less
        // after-hours alarm are refused.
        for bad in [
            FraudAlarms {
                after_hours_rule_id: Some(closed_b.id),
                ..strict
            },
            FraudAlarms {
                burst_calls: 1,
                ..strict
            },
            FraudAlarms {
                after_hours_rule_id: None,
                ..strict
            },
        ] {
            assert!(matches!(
                alarms.set(&t.reseller_x_admin, a, &bad).await,
                Err(StoreError::Invalid(_))
            ));
        }
        assert_eq!(
            alarms.set(&t.reseller_x_admin, a, &strict).await.unwrap(),
            strict
        );
        assert_eq!(alarms.get(&t.customer_a_admin, a).await.unwrap(), strict);
        let dir = db
            .store
            .directory()
            .customer(&Principal::system(), a)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(dir.fraud_alarms, strict);
    }

    async fn destinations_are_learnt_or_approved_per_device(db: TestDb) {
        let t = TwoTenants::create(&db.store).await;
        let alarms = db.store.fraud_alarms();
        let sys = Principal::system();
        let (a, da) = (t.customer_a.id, t.device_a.id);
        alarms.learn(&sys, a, da, "44", 1_000).await.unwrap();
        // Twice is once; a device of another customer is not learnt into A.
        alarms.learn(&sys, a, da, "44", 2_000).await.unwrap();
        alarms
            .learn(&sys, a, t.device_b.id, "1", 2_000)
            .await
            .unwrap();
        assert!(alarms
            .learn(&t.reseller_x_admin, a, da, "1", 0)
            .await
            .is_err());
        assert!(matches!(
            alarms.approve(&t.customer_b_admin, da, "880").await,
            Err(StoreError::NotFound)
        ));
        for bad in ["", "+44", "044", "4x", "1234567890123456"] {
            assert!(matches!(
                alarms.approve(&t.customer_a_admin, da, bad).await,
                Err(StoreError::Invalid(_))
            ));
        }
        let known = alarms
            .approve(&t.customer_a_admin, da, "880")
            .await
            .unwrap();
        assert_eq!(
            known
                .iter()
                .map(|k| (k.destination.as_str(), k.first_at, k.approved_by.is_some()))
                .collect::<Vec<_>>()[..1],
            [("44", 1_000, false)]
        );
        assert_eq!(known[1].destination, "880");
        assert!(known[1].approved_by.is_some());
        assert!(alarms.known(&t.customer_b_admin, da).await.is_err());
        assert!(alarms.known(&sys, t.device_b.id).await.unwrap().is_empty());
        let dir = db
            .store
            .directory()
            .customer(&sys, a)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            dir.known_destinations.get(&da),
            Some(&vec!["44".to_owned(), "880".to_owned()])
        );
    }

    crate::both_engines!(
        resellers_set_alarms_for_their_own_customers,
        destinations_are_learnt_or_approved_per_device,
    );
}
