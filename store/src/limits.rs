//! Fraud and cost protection at call setup: per customer and per reseller,
//! limits on outbound calls at once, call attempts per minute and spend per
//! day at retail prices, and which destination classes are allowed at all.
//! Emergency calls are never refused here.
//!
//! Spend is counted in the customer's reseller's day, and every call in
//! progress *reserves* an amount against it (its rate for
//! [`RESERVED_MINUTES`] minutes) until its real cost is known: thirty calls
//! started at once cannot each pass on the credit that is left for one.
//!
//! The accounting is a pure state machine over one node's calls ([`Ledger`]:
//! the proxy holds one per customer and one per reseller); the limits
//! themselves are kept here too ([`CallLimits`]): a reseller sets its
//! customers', the operator a reseller's.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::audit::{self, Event};
use crate::changes::Change;
use crate::numbering::Class;
use crate::principal::Level;
use crate::rows::{flag, flag_value};
use crate::validate::Checker;
use crate::{CustomerId, Millis, Principal, ResellerId, Result, Store};

/// Minutes of its rate each call in progress holds against the daily limit.
pub const RESERVED_MINUTES: i64 = 10;
/// Highest per-minute rate counted (a thousand in the currency): bounds the
/// arithmetic whatever a rate table says.
const MAX_RATE_MICROS: i64 = 1_000_000_000;
const MINUTE_MS: Millis = 60_000;

/// What a customer or reseller may do; None: no limit.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Limits {
    pub max_concurrent_outbound: Option<u32>,
    pub max_attempts_per_minute: Option<u32>,
    /// Millionths of the currency, at retail prices.
    pub max_spend_per_day_micros: Option<i64>,
    #[serde(default)]
    pub allow_international: bool,
    #[serde(default)]
    pub allow_premium: bool,
}

/// Why a call is refused (SIP 403 with an event saying which).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    #[error("too many outbound calls at once")]
    Concurrent,
    #[error("too many call attempts per minute")]
    Attempts,
    #[error("the daily spending limit is reached")]
    Spend,
    #[error("international calls are not enabled")]
    International,
    #[error("premium-rate numbers are not enabled")]
    Premium,
}

/// One customer's (or reseller's) calls on this node.
#[derive(Debug, Default)]
pub struct Ledger {
    active: u32,
    attempts: VecDeque<Millis>,
    /// The day (index in the reseller's calendar) `spent` and `reserved` are for.
    day: i64,
    spent_micros: i64,
    reserved_micros: i64,
}

/// A call admitted: what it holds, to give back when it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hold {
    pub reserved_micros: i64,
    pub counted: bool,
}

impl Ledger {
    /// Admits a call of `class` whose rate is `minute_micros`, at `now` on
    /// `day` (the caller's billing day), or says why not. Emergency calls
    /// always pass and hold nothing.
    pub fn admit(
        &mut self,
        limits: &Limits,
        class: Class,
        minute_micros: i64,
        now: Millis,
        day: i64,
    ) -> Result<Hold, Refusal> {
        if class == Class::Emergency {
            return Ok(Hold {
                reserved_micros: 0,
                counted: false,
            });
        }
        if day != self.day {
            // A new day: nothing spent yet, but calls still running keep
            // their reservations (they are paid when they end).
            self.day = day;
            self.spent_micros = 0;
        }
        while self.attempts.front().is_some_and(|t| *t <= now - MINUTE_MS) {
            self.attempts.pop_front();
        }
        if limits
            .max_attempts_per_minute
            .is_some_and(|max| self.attempts.len() as u32 >= max)
        {
            return Err(Refusal::Attempts);
        }
        // An attempt counts even when a later limit refuses it (probing
        // forbidden destinations is rate-limited too).
        self.attempts.push_back(now);
        match class {
            Class::International if !limits.allow_international => {
                return Err(Refusal::International)
            }
            Class::Premium if !limits.allow_premium => return Err(Refusal::Premium),
            _ => {}
        }
        if limits
            .max_concurrent_outbound
            .is_some_and(|max| self.active >= max)
        {
            return Err(Refusal::Concurrent);
        }
        let minute = minute_micros.clamp(0, MAX_RATE_MICROS);
        let reserve = minute * RESERVED_MINUTES;
        if let Some(max) = limits.max_spend_per_day_micros {
            let committed = self.spent_micros.saturating_add(self.reserved_micros);
            // A call must fit at least its first minute beside what is held.
            if committed.saturating_add(minute) > max {
                return Err(Refusal::Spend);
            }
        }
        self.active += 1;
        self.reserved_micros = self.reserved_micros.saturating_add(reserve);
        Ok(Hold {
            reserved_micros: reserve,
            counted: true,
        })
    }

    /// Ends a call admitted with `hold`, which cost `cost_micros` (0 if it
    /// was never answered).
    pub fn release(&mut self, hold: Hold, cost_micros: i64) {
        if !hold.counted {
            return;
        }
        self.active = self.active.saturating_sub(1);
        self.reserved_micros = (self.reserved_micros - hold.reserved_micros).max(0);
        // Paid on the day the call ends (a call across midnight counts there).
        self.spent_micros = self.spent_micros.saturating_add(cost_micros.max(0));
    }

    pub fn active(&self) -> u32 {
        self.active
    }

    /// Spent and held today.
    pub fn committed_micros(&self) -> i64 {
        self.spent_micros + self.reserved_micros
    }
}

impl Limits {
    fn validate(&self) -> Result<()> {
        let mut check = Checker::new();
        check
            .check(
                self.max_concurrent_outbound.is_none_or(|m| m <= 100_000),
                "max_concurrent_outbound",
                "must be at most 100000",
            )
            .check(
                self.max_attempts_per_minute.is_none_or(|m| m <= 100_000),
                "max_attempts_per_minute",
                "must be at most 100000",
            )
            .check(
                self.max_spend_per_day_micros
                    .is_none_or(|m| (0..=1_000_000_000_000).contains(&m)),
                "max_spend_per_day_micros",
                "must be 0 to 1000000000000 (a million in the currency)",
            );
        check.finish()
    }
}

/// The columns [`from_row`] reads.
pub(crate) const COLUMNS: &str = "max_concurrent_outbound, max_attempts_per_minute, \
    max_spend_per_day_micros, allow_international, allow_premium";

pub(crate) fn from_row(row: &sqlx::any::AnyRow) -> Result<Limits, sqlx::Error> {
    let count = |name: &str| -> Result<Option<u32>, sqlx::Error> {
        Ok(row
            .try_get::<Option<i64>, _>(name)?
            .map(|v| u32::try_from(v).unwrap_or(u32::MAX)))
    };
    Ok(Limits {
        max_concurrent_outbound: count("max_concurrent_outbound")?,
        max_attempts_per_minute: count("max_attempts_per_minute")?,
        max_spend_per_day_micros: row.try_get("max_spend_per_day_micros")?,
        allow_international: flag(row, "allow_international")?,
        allow_premium: flag(row, "allow_premium")?,
    })
}

impl Limits {
    /// No limit at all: what a reseller the operator set nothing for has
    /// (a customer without a setting has [`Limits::default`]: international
    /// and premium-rate destinations off).
    pub fn unlimited() -> Limits {
        Limits {
            allow_international: true,
            allow_premium: true,
            ..Limits::default()
        }
    }
}

/// Whose limits: a reseller's (for all its customers together) or a customer's.
#[derive(Debug, Clone, Copy)]
enum Owner {
    Reseller(ResellerId),
    Customer(CustomerId),
}

impl Owner {
    /// What applies while nothing was set: a reseller is not limited, a
    /// customer may not call abroad or premium-rate numbers.
    fn default_limits(self) -> Limits {
        match self {
            Owner::Reseller(_) => Limits::unlimited(),
            Owner::Customer(_) => Limits::default(),
        }
    }

    fn column(self) -> (&'static str, i64) {
        match self {
            Owner::Reseller(r) => ("reseller_id", r.0),
            Owner::Customer(c) => ("customer_id", c.0),
        }
    }
}

pub struct CallLimits<'s>(pub(crate) &'s Store);

impl CallLimits<'_> {
    /// A customer's limits (its admins, its reseller, the operator).
    pub async fn for_customer(&self, by: &Principal, customer: CustomerId) -> Result<Limits> {
        by.may_read(Level::Customer)?;
        let c = self.0.customers().get(by, customer).await?;
        self.read(Owner::Customer(c.id)).await
    }

    /// Sets a customer's limits: its reseller or the operator, never the
    /// customer itself.
    pub async fn set_for_customer(
        &self,
        by: &Principal,
        customer: CustomerId,
        limits: &Limits,
    ) -> Result<Limits> {
        let c = self.0.customers().get(by, customer).await?;
        by.may_write(Level::Reseller)?;
        self.write(by, Owner::Customer(c.id), Some(c.reseller_id), limits)
            .await
    }

    /// A reseller's limits, over all its customers (the reseller, the operator).
    pub async fn for_reseller(&self, by: &Principal, reseller: ResellerId) -> Result<Limits> {
        let r = self.0.resellers().get(by, reseller).await?;
        by.may_read(Level::Reseller)?;
        self.read(Owner::Reseller(r.id)).await
    }

    /// Sets a reseller's limits (the operator only).
    pub async fn set_for_reseller(
        &self,
        by: &Principal,
        reseller: ResellerId,
        limits: &Limits,
    ) -> Result<Limits> {
        by.may_write(Level::Operator)?;
        let r = self.0.resellers().get(by, reseller).await?;
        self.write(by, Owner::Reseller(r.id), Some(r.id), limits)
            .await
    }

    async fn read(&self, owner: Owner) -> Result<Limits> {
        let (column, id) = owner.column();
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM call_limits WHERE {column} = $1"
        ))
        .bind(id)
        .fetch_optional(self.0.pool())
        .await?;
        match row {
            Some(row) => Ok(from_row(&row)?),
            None => Ok(owner.default_limits()),
        }
    }

    async fn write(
        &self,
        by: &Principal,
        owner: Owner,
        reseller: Option<ResellerId>,
        limits: &Limits,
    ) -> Result<Limits> {
        limits.validate()?;
        let (column, id) = owner.column();
        let mut tx = self.0.begin().await?;
        sqlx::query(&format!(
            "INSERT INTO call_limits ({column}, max_concurrent_outbound, max_attempts_per_minute, \
             max_spend_per_day_micros, allow_international, allow_premium) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT ({column}) DO UPDATE SET max_concurrent_outbound = excluded.max_concurrent_outbound, \
             max_attempts_per_minute = excluded.max_attempts_per_minute, \
             max_spend_per_day_micros = excluded.max_spend_per_day_micros, \
             allow_international = excluded.allow_international, allow_premium = excluded.allow_premium, \
             version = call_limits.version + 1"
        ))
        .bind(id)
        .bind(limits.max_concurrent_outbound.map(i64::from))
        .bind(limits.max_attempts_per_minute.map(i64::from))
        .bind(limits.max_spend_per_day_micros)
        .bind(flag_value(limits.allow_international))
        .bind(flag_value(limits.allow_premium))
        .execute(tx.conn())
        .await?;
        let customer = match owner {
            Owner::Customer(c) => Some(c),
            Owner::Reseller(_) => None,
        };
        audit::record(
            &mut tx,
            by,
            Event {
                action: "set_limits",
                object_type: if customer.is_some() {
                    "customer"
                } else {
                    "reseller"
                },
                object_id: Some(id),
                reseller,
                customer,
                details: serde_json::to_value(limits).unwrap_or_default(),
            },
        )
        .await?;
        tx.changed(match customer {
            Some(customer) => Change::Customer { customer },
            None => Change::Resync,
        });
        tx.commit().await?;
        self.read(owner).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CENT: i64 = 10_000;

    #[test]
    fn the_n_plus_first_concurrent_call_is_refused_and_emergency_always_passes() {
        let limits = Limits {
            max_concurrent_outbound: Some(2),
            ..Limits::default()
        };
        let mut ledger = Ledger::default();
        let a = ledger
            .admit(&limits, Class::National, CENT, 0, 1)
            .expect("first");
        ledger
            .admit(&limits, Class::National, CENT, 1, 1)
            .expect("second");
        assert_eq!(
            ledger.admit(&limits, Class::National, CENT, 2, 1),
            Err(Refusal::Concurrent)
        );
        assert!(ledger.admit(&limits, Class::Emergency, CENT, 3, 1).is_ok());
        ledger.release(a, 0);
        assert!(ledger.admit(&limits, Class::National, CENT, 4, 1).is_ok());
    }

    #[test]
    fn attempts_are_counted_per_sliding_minute() {
        let limits = Limits {
            max_attempts_per_minute: Some(3),
            ..Limits::default()
        };
        let mut ledger = Ledger::default();
        for t in 0..3 {
            let hold = ledger
                .admit(&limits, Class::National, 0, t * 1000, 1)
                .expect("within");
            ledger.release(hold, 0);
        }
        assert_eq!(
            ledger.admit(&limits, Class::National, 0, 59_999, 1),
            Err(Refusal::Attempts)
        );
        assert!(
            ledger.admit(&limits, Class::National, 0, 60_000, 1).is_ok(),
            "the first attempt left the minute"
        );
    }

    #[test]
    fn parallel_calls_cannot_share_the_credit_left_for_one() {
        // 1 € a day; calls at 5 ct a minute reserve 50 ct each.
        let limits = Limits {
            max_spend_per_day_micros: Some(100 * CENT),
            ..Limits::default()
        };
        let mut ledger = Ledger::default();
        let admitted: Vec<Hold> = (0..30)
            .filter_map(|t| ledger.admit(&limits, Class::National, 5 * CENT, t, 7).ok())
            .collect();
        assert_eq!(
            admitted.len(),
            2,
            "two reservations of 50 ct fill 1 €, not thirty calls"
        );
        assert_eq!(
            ledger.admit(&limits, Class::National, 5 * CENT, 40, 7),
            Err(Refusal::Spend)
        );
        // A call ends having cost 20 ct: 30 ct of its reservation come back.
        ledger.release(admitted[0], 20 * CENT);
        assert_eq!(ledger.committed_micros(), 70 * CENT);
        assert!(ledger
            .admit(&limits, Class::National, 5 * CENT, 50, 7)
            .is_ok());
        // A new day starts with nothing spent, but calls still running
        // across midnight keep their reservations and are paid on the day
        // they end.
        assert_eq!(
            ledger.admit(&limits, Class::National, 5 * CENT, 60, 8),
            Err(Refusal::Spend)
        );
        ledger.release(admitted[1], 30 * CENT);
        assert_eq!(ledger.committed_micros(), 80 * CENT);
        assert!(ledger
            .admit(&limits, Class::National, 5 * CENT, 61, 8)
            .is_ok());
        assert_eq!(ledger.committed_micros(), 130 * CENT);
        // Emergency calls pass even now.
        let full = Limits {
            max_spend_per_day_micros: Some(0),
            max_concurrent_outbound: Some(0),
            max_attempts_per_minute: Some(0),
            ..Limits::default()
        };
        assert!(ledger
            .admit(&full, Class::Emergency, 5 * CENT, 70, 8)
            .is_ok());
    }

    async fn limits_are_set_from_above_only(db: crate::testing::TestDb) {
        let t = crate::testing::TwoTenants::create(&db.store).await;
        let limits = db.store.call_limits();
        let sys = Principal::system();
        assert_eq!(
            limits
                .for_customer(&t.customer_a_admin, t.customer_a.id)
                .await
                .unwrap(),
            Limits::default(),
            "none set: no limits, international and premium off"
        );
        let set = Limits {
            max_concurrent_outbound: Some(4),
            max_attempts_per_minute: Some(20),
            max_spend_per_day_micros: Some(50_000_000),
            allow_international: true,
            allow_premium: false,
        };
        // The customer cannot lift its own limits; another reseller cannot touch them.
        assert!(limits
            .set_for_customer(&t.customer_a_admin, t.customer_a.id, &set)
            .await
            .is_err());
        assert!(matches!(
            limits
                .set_for_customer(&t.reseller_y_admin, t.customer_a.id, &set)
                .await,
            Err(crate::StoreError::NotFound)
        ));
        assert_eq!(
            limits
                .set_for_customer(&t.reseller_x_admin, t.customer_a.id, &set)
                .await
                .unwrap(),
            set
        );
        let mut tighter = set.clone();
        tighter.max_concurrent_outbound = Some(1);
        limits
            .set_for_customer(&t.reseller_x_admin, t.customer_a.id, &tighter)
            .await
            .unwrap();
        assert_eq!(
            limits
                .for_customer(&t.customer_a_admin, t.customer_a.id)
                .await
                .unwrap(),
            tighter
        );
        assert_eq!(
            limits
                .for_customer(&t.customer_b_admin, t.customer_b.id)
                .await
                .unwrap(),
            Limits::default(),
            "B's are its own"
        );
        assert_eq!(
            limits
                .for_reseller(&t.reseller_x_admin, t.reseller_x.id)
                .await
                .unwrap(),
            Limits::unlimited(),
            "none set for a reseller: nothing limited at its level"
        );
        // Resellers' own limits are the operator's to set.
        assert!(limits
            .set_for_reseller(&t.reseller_x_admin, t.reseller_x.id, &set)
            .await
            .is_err());
        limits
            .set_for_reseller(&sys, t.reseller_x.id, &set)
            .await
            .unwrap();
        assert_eq!(
            limits
                .for_reseller(&t.reseller_x_admin, t.reseller_x.id)
                .await
                .unwrap(),
            set
        );
        assert!(limits
            .for_reseller(&t.reseller_y_admin, t.reseller_x.id)
            .await
            .is_err());
        let mut wild = set.clone();
        wild.max_spend_per_day_micros = Some(-1);
        assert!(matches!(
            limits.set_for_customer(&sys, t.customer_a.id, &wild).await,
            Err(crate::StoreError::Invalid(_))
        ));
    }

    crate::both_engines!(limits_are_set_from_above_only);

    #[test]
    fn international_and_premium_are_off_until_allowed() {
        let mut ledger = Ledger::default();
        let closed = Limits::default();
        assert_eq!(
            ledger.admit(&closed, Class::International, 0, 0, 1),
            Err(Refusal::International)
        );
        assert_eq!(
            ledger.admit(&closed, Class::Premium, 0, 0, 1),
            Err(Refusal::Premium)
        );
        let open = Limits {
            allow_international: true,
            allow_premium: true,
            ..Limits::default()
        };
        assert!(ledger.admit(&open, Class::International, 0, 0, 1).is_ok());
        assert!(ledger.admit(&open, Class::Premium, 0, 0, 1).is_ok());
    }
}
