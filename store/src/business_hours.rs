//! Business hours: a customer's rule for where calls go while it is open and
//! where while it is closed — weekly opening intervals and holidays, read in
//! the customer's time zone. [`is_open`] is the rule itself, a pure function
//! of the moment (so tests and the proxy give it the clock they have).

use chrono::{Datelike, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::audit::{self, Event};
use crate::changes::Change;
use crate::destinations::{self, Destination, CLOSED, OPEN};
use crate::error::OnViolation;
use crate::principal::Level;
use crate::validate::Checker;
use crate::{
    BusinessHoursId, CustomerId, Millis, Principal, ResellerId, Result, Store, StoreError,
};

/// Opening time on one weekday: `day` 1 (Monday) to 7 (Sunday), `open` and
/// `close` as `HH:MM` local time, `close` after `open` (`24:00` for midnight).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Interval {
    pub day: u8,
    pub open: String,
    pub close: String,
}

/// A day closed all day, `YYYY-MM-DD` in the customer's calendar.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Holiday {
    pub date: String,
    #[serde(default)]
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BusinessHours {
    pub id: BusinessHoursId,
    pub customer_id: CustomerId,
    pub reseller_id: ResellerId,
    pub name: String,
    pub weekly: Vec<Interval>,
    pub holidays: Vec<Holiday>,
    /// Where calls go while open; None: nowhere (the caller hears 480).
    pub open_destination: Option<Destination>,
    /// Where calls go while closed.
    pub closed_destination: Option<Destination>,
    pub created_at: Millis,
    pub version: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BusinessHoursSettings {
    pub name: String,
    #[serde(default)]
    pub weekly: Vec<Interval>,
    #[serde(default)]
    pub holidays: Vec<Holiday>,
    #[serde(default)]
    pub open_destination: Option<Destination>,
    #[serde(default)]
    pub closed_destination: Option<Destination>,
}

/// Minutes after midnight of `HH:MM` (`24:00` is 1440).
fn minutes(text: &str) -> Option<u32> {
    let (h, m) = text.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    match (h, m) {
        (24, 0) => Some(1440),
        (0..=23, 0..=59) => Some(h * 60 + m),
        _ => None,
    }
}

/// Whether the rule is open at `at_ms` in `tz`: not on a holiday, and
/// inside one of that weekday's intervals (open ≤ now < close).
pub fn is_open(weekly: &[Interval], holidays: &[Holiday], tz: Tz, at_ms: Millis) -> bool {
    let Some(utc) = Utc.timestamp_millis_opt(at_ms).single() else {
        return false;
    };
    let local = utc.with_timezone(&tz);
    let today = local.date_naive().format("%Y-%m-%d").to_string();
    if holidays.iter().any(|h| h.date == today) {
        return false;
    }
    let day = local.weekday().number_from_monday() as u8;
    let now = local.time();
    let now_minutes = now.signed_duration_since(NaiveTime::MIN).num_minutes() as u32;
    weekly.iter().any(|i| {
        i.day == day
            && matches!(
                (minutes(&i.open), minutes(&i.close)),
                (Some(open), Some(close)) if open <= now_minutes && now_minutes < close
            )
    })
}

impl BusinessHoursSettings {
    fn validate(&self) -> Result<()> {
        let mut check = Checker::new();
        check.text("name", &self.name, 100);
        check.check(self.weekly.len() <= 50, "weekly", "at most 50 intervals");
        for (n, i) in self.weekly.iter().enumerate() {
            check.check(
                (1..=7).contains(&i.day),
                &format!("weekly[{n}].day"),
                "must be 1 (Monday) to 7 (Sunday)",
            );
            let valid =
                matches!((minutes(&i.open), minutes(&i.close)), (Some(o), Some(c)) if o < c);
            check.check(
                valid,
                &format!("weekly[{n}].close"),
                "open and close must be HH:MM with close after open (24:00 for midnight)",
            );
        }
        check.check(
            self.holidays.len() <= 400,
            "holidays",
            "at most 400 holidays",
        );
        for (n, h) in self.holidays.iter().enumerate() {
            check.check(
                h.date.len() == 10 && NaiveDate::parse_from_str(&h.date, "%Y-%m-%d").is_ok(),
                &format!("holidays[{n}].date"),
                "must be a date such as 2026-12-24",
            );
            check.check(
                h.name.chars().count() <= 100,
                &format!("holidays[{n}].name"),
                "must be at most 100 characters",
            );
        }
        check.finish()
    }
}

pub(crate) fn columns() -> String {
    format!(
        "b.id, b.customer_id, c.reseller_id, b.name, b.weekly, b.holidays, {}, {}, \
         b.created_at, b.version",
        OPEN.select("b"),
        CLOSED.select("b")
    )
}
/// $1 reseller scope, $2 customer scope; a customer's users see none (as ring groups).
const SCOPED: &str = "FROM business_hours b JOIN customers c ON c.id = b.customer_id \
    WHERE b.deleted_at IS NULL AND ($1 IS NULL OR c.reseller_id = $1) AND ($2 IS NULL OR b.customer_id = $2) \
    AND $3 IS NULL";

pub(crate) fn from_row(row: &AnyRow) -> Result<BusinessHours, sqlx::Error> {
    let weekly: String = row.try_get("weekly")?;
    let holidays: String = row.try_get("holidays")?;
    Ok(BusinessHours {
        id: BusinessHoursId(row.try_get("id")?),
        customer_id: CustomerId(row.try_get("customer_id")?),
        reseller_id: ResellerId(row.try_get("reseller_id")?),
        name: row.try_get("name")?,
        // Written by this module only; an unreadable value reads as empty.
        weekly: serde_json::from_str(&weekly).unwrap_or_default(),
        holidays: serde_json::from_str(&holidays).unwrap_or_default(),
        open_destination: OPEN.read(row)?,
        closed_destination: CLOSED.read(row)?,
        created_at: row.try_get("created_at")?,
        version: row.try_get("version")?,
    })
}

/// Binds a rule's settings as $1…$7, in the order insert and update name them.
fn bind_settings<'q>(
    query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    s: &'q BusinessHoursSettings,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    let mut query = query
        .bind(&s.name)
        .bind(serde_json::to_string(&s.weekly).unwrap_or_else(|_| "[]".into()))
        .bind(serde_json::to_string(&s.holidays).unwrap_or_else(|_| "[]".into()));
    let values = OPEN
        .values(s.open_destination)
        .into_iter()
        .chain(CLOSED.values(s.closed_destination));
    for value in values {
        query = query.bind(value);
    }
    query
}

/// The INSERT [`bind_settings`] binds, then the customer and the time.
fn insert_sql() -> String {
    let names: Vec<&str> = OPEN.names().into_iter().chain(CLOSED.names()).collect();
    let places: Vec<String> = (4..4 + names.len()).map(|i| format!("${i}")).collect();
    let next = 4 + names.len();
    format!(
        "INSERT INTO business_hours (name, weekly, holidays, {}, customer_id, created_at) \
         VALUES ($1, $2, $3, {}, ${next}, ${}) RETURNING id",
        names.join(", "),
        places.join(", "),
        next + 1
    )
}

/// The UPDATE [`bind_settings`] binds, then the id and the version.
fn update_sql() -> String {
    let next = 4 + OPEN.names().len() + CLOSED.names().len();
    format!(
        "UPDATE business_hours SET name = $1, weekly = $2, holidays = $3, {}, {}, \
         version = version + 1 WHERE id = ${next} AND version = ${} AND deleted_at IS NULL",
        OPEN.assignments(4),
        CLOSED.assignments(4 + OPEN.names().len()),
        next + 1
    )
}

const ON_WRITE: OnViolation = OnViolation {
    unique: "",
    foreign_key: "a destination is not this customer's",
};

pub struct BusinessHoursRules<'s>(pub(crate) &'s Store);

impl BusinessHoursRules<'_> {
    pub async fn list(&self, by: &Principal, customer: CustomerId) -> Result<Vec<BusinessHours>> {
        let customer = self.0.customers().get(by, customer).await?;
        let rows = sqlx::query(&format!(
            "SELECT {} {SCOPED} AND b.customer_id = $4 ORDER BY b.id",
            columns()
        ))
        .bind(by.scope.reseller_param())
        .bind(by.scope.customer_param())
        .bind(by.scope.extension_param())
        .bind(customer.id.0)
        .fetch_all(self.0.pool())
        .await?;
        Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
    }

    pub async fn get(&self, by: &Principal, id: BusinessHoursId) -> Result<BusinessHours> {
        let row = sqlx::query(&format!("SELECT {} {SCOPED} AND b.id = $4", columns()))
            .bind(by.scope.reseller_param())
            .bind(by.scope.customer_param())
            .bind(by.scope.extension_param())
            .bind(id.0)
            .fetch_optional(self.0.pool())
            .await?
            .ok_or(StoreError::NotFound)?;
        Ok(from_row(&row)?)
    }

    /// Checks that destinations are live extensions or groups of the customer.
    async fn check_destinations(
        &self,
        by: &Principal,
        customer: CustomerId,
        s: &BusinessHoursSettings,
    ) -> Result<()> {
        for (field, d) in [
            ("open_destination", s.open_destination),
            ("closed_destination", s.closed_destination),
        ] {
            let ok = match d {
                None => true,
                // A rule does not lead to another rule.
                Some(d) => destinations::belongs(self.0, by, customer, d, false).await?,
            };
            if !ok {
                return Err(StoreError::invalid(
                    field,
                    "must be an extension, ring group, conference room or voicemail box of this customer",
                ));
            }
        }
        Ok(())
    }

    pub async fn create(
        &self,
        by: &Principal,
        customer: CustomerId,
        s: &BusinessHoursSettings,
    ) -> Result<BusinessHours> {
        by.may_write(Level::Customer)?;
        let customer = self.0.customers().get(by, customer).await?;
        s.validate()?;
        self.check_destinations(by, customer.id, s).await?;
        let mut tx = self.0.begin().await?;
        let row = bind_settings(sqlx::query(&insert_sql()), s)
            .bind(customer.id.0)
            .bind(crate::now_ms())
            .fetch_one(tx.conn())
            .await
            .map_err(|e| ON_WRITE.map(e))?;
        let id = BusinessHoursId(row.try_get("id")?);
        self.log(
            &mut tx,
            by,
            "create",
            id,
            customer.reseller_id,
            customer.id,
            s,
        )
        .await?;
        tx.changed(Change::Customer {
            customer: customer.id,
        });
        tx.commit().await?;
        self.get(by, id).await
    }

    pub async fn update(
        &self,
        by: &Principal,
        id: BusinessHoursId,
        if_version: Option<i64>,
        s: &BusinessHoursSettings,
    ) -> Result<BusinessHours> {
        by.may_write(Level::Customer)?;
        let current = self.get(by, id).await?;
        s.validate()?;
        self.check_destinations(by, current.customer_id, s).await?;
        let mut tx = self.0.begin().await?;
        let done = bind_settings(sqlx::query(&update_sql()), s)
            .bind(id.0)
            .bind(if_version.unwrap_or(current.version))
            .execute(tx.conn())
            .await
            .map_err(|e| ON_WRITE.map(e))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::VersionMismatch);
        }
        self.log(
            &mut tx,
            by,
            "update",
            id,
            current.reseller_id,
            current.customer_id,
            s,
        )
        .await?;
        tx.changed(Change::Customer {
            customer: current.customer_id,
        });
        tx.commit().await?;
        self.get(by, id).await
    }

    /// Removes a rule; numbers routed to it lose their destination.
    pub async fn delete(&self, by: &Principal, id: BusinessHoursId) -> Result<()> {
        by.may_write(Level::Customer)?;
        let current = self.get(by, id).await?;
        let mut tx = self.0.begin().await?;
        destinations::forget(&mut tx, destinations::Removed::BusinessHours(id)).await?;
        sqlx::query(
            "UPDATE business_hours SET deleted_at = $1, version = version + 1 WHERE id = $2",
        )
        .bind(crate::now_ms())
        .bind(id.0)
        .execute(tx.conn())
        .await?;
        audit::record(
            &mut tx,
            by,
            Event {
                action: "delete",
                object_type: "business_hours",
                object_id: Some(id.0),
                reseller: Some(current.reseller_id),
                customer: Some(current.customer_id),
                details: serde_json::json!({ "name": current.name }),
            },
        )
        .await?;
        tx.changed(Change::Customer {
            customer: current.customer_id,
        });
        tx.commit().await
    }

    /// Whether the rule is open at `at_ms`, in its customer's time zone, and
    /// where a call would go then.
    pub async fn state_at(
        &self,
        by: &Principal,
        id: BusinessHoursId,
        at_ms: Millis,
    ) -> Result<(bool, Option<Destination>)> {
        let rule = self.get(by, id).await?;
        let customer = self.0.customers().get(by, rule.customer_id).await?;
        let tz: Tz = customer.time_zone.parse().unwrap_or(chrono_tz::UTC);
        let open = is_open(&rule.weekly, &rule.holidays, tz, at_ms);
        let goes_to = if open {
            rule.open_destination
        } else {
            rule.closed_destination
        };
        Ok((open, goes_to))
    }

    #[allow(clippy::too_many_arguments)]
    async fn log(
        &self,
        tx: &mut crate::db::Tx<'_>,
        by: &Principal,
        action: &str,
        id: BusinessHoursId,
        reseller: ResellerId,
        customer: CustomerId,
        s: &BusinessHoursSettings,
    ) -> Result<()> {
        audit::record(
            tx,
            by,
            Event {
                action,
                object_type: "business_hours",
                object_id: Some(id.0),
                reseller: Some(reseller),
                customer: Some(customer),
                details: serde_json::to_value(s).unwrap_or_default(),
            },
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{TestDb, TwoTenants};

    fn office() -> Vec<Interval> {
        (1..=5)
            .map(|day| Interval {
                day,
                open: "08:00".into(),
                close: "17:30".into(),
            })
            .collect()
    }

    fn at(text: &str, tz: Tz) -> Millis {
        let local = chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M").expect("time");
        tz.from_local_datetime(&local)
            .single()
            .expect("unambiguous")
            .timestamp_millis()
    }

    #[test]
    fn open_on_weekdays_in_the_customers_zone_and_closed_on_holidays() {
        let berlin: Tz = "Europe/Berlin".parse().expect("zone");
        let christmas = vec![Holiday {
            date: "2026-12-24".into(),
            name: "Heiligabend".into(),
        }];
        let weekly = office();
        // Friday 27 Nov 2026.
        assert!(is_open(
            &weekly,
            &christmas,
            berlin,
            at("2026-11-27 08:00", berlin)
        ));
        assert!(is_open(
            &weekly,
            &christmas,
            berlin,
            at("2026-11-27 17:29", berlin)
        ));
        assert!(!is_open(
            &weekly,
            &christmas,
            berlin,
            at("2026-11-27 17:30", berlin)
        ));
        assert!(!is_open(
            &weekly,
            &christmas,
            berlin,
            at("2026-11-27 07:59", berlin)
        ));
        // Saturday, and Christmas Eve (a Thursday).
        assert!(!is_open(
            &weekly,
            &christmas,
            berlin,
            at("2026-11-28 10:00", berlin)
        ));
        assert!(!is_open(
            &weekly,
            &christmas,
            berlin,
            at("2026-12-24 10:00", berlin)
        ));
        assert!(is_open(
            &weekly,
            &christmas,
            berlin,
            at("2026-12-23 10:00", berlin)
        ));
        // 07:30 UTC on a summer Monday is 09:30 in Berlin (open), 08:30 in
        // London (open), 03:30 in New York (closed): the zone decides.
        let utc = at("2026-07-06 07:30", chrono_tz::UTC);
        assert!(is_open(&weekly, &[], berlin, utc));
        assert!(!is_open(
            &weekly,
            &[],
            "America/New_York".parse().expect("zone"),
            utc
        ));
        // Around midnight: 24:00 closes at the end of the day.
        let late = vec![Interval {
            day: 5,
            open: "20:00".into(),
            close: "24:00".into(),
        }];
        assert!(is_open(&late, &[], berlin, at("2026-11-27 23:59", berlin)));
        assert!(!is_open(&late, &[], berlin, at("2026-11-28 00:00", berlin)));
    }

    async fn rules_are_the_customers_and_point_at_its_own_destinations(db: TestDb) {
        let t = TwoTenants::create(&db.store).await;
        let rules = db.store.business_hours();
        let settings = BusinessHoursSettings {
            name: "Office".into(),
            weekly: office(),
            holidays: vec![Holiday {
                date: "2026-12-24".into(),
                name: String::new(),
            }],
            open_destination: Some(Destination::Extension(t.extension_a.id)),
            closed_destination: None,
        };
        // B's extension is not A's destination; bad times are named.
        let mut foreign = settings.clone();
        foreign.closed_destination = Some(Destination::Extension(t.extension_b.id));
        assert!(matches!(
            rules
                .create(&t.customer_a_admin, t.customer_a.id, &foreign)
                .await,
            Err(StoreError::Invalid(_))
        ));
        let mut bad = settings.clone();
        bad.weekly.push(Interval {
            day: 8,
            open: "18:00".into(),
            close: "09:00".into(),
        });
        bad.holidays.push(Holiday {
            date: "2026-02-30".into(),
            name: String::new(),
        });
        let Err(StoreError::Invalid(fields)) = rules
            .create(&t.customer_a_admin, t.customer_a.id, &bad)
            .await
        else {
            panic!("refused");
        };
        assert_eq!(fields.len(), 3, "{fields:?}");
        let rule = rules
            .create(&t.customer_a_admin, t.customer_a.id, &settings)
            .await
            .unwrap();
        // Another customer's admin, another reseller and the customer's own
        // user do not see it.
        for outsider in [&t.customer_b_admin, &t.reseller_y_admin, &t.customer_a_user] {
            assert!(rules.get(outsider, rule.id).await.is_err());
        }
        assert_eq!(
            rules
                .list(&t.reseller_x_admin, t.customer_a.id)
                .await
                .unwrap()
                .len(),
            1
        );
        let berlin: Tz = "Europe/Berlin".parse().expect("zone");
        let (open, goes) = rules
            .state_at(&t.customer_a_admin, rule.id, at("2026-11-27 10:00", berlin))
            .await
            .unwrap();
        assert!(open);
        assert_eq!(goes, Some(Destination::Extension(t.extension_a.id)));
        let (open, goes) = rules
            .state_at(&t.customer_a_admin, rule.id, at("2026-12-24 10:00", berlin))
            .await
            .unwrap();
        assert!(!open);
        assert_eq!(goes, None);
        let stale = rules
            .update(
                &t.customer_a_admin,
                rule.id,
                Some(rule.version + 1),
                &settings,
            )
            .await;
        assert!(matches!(stale, Err(StoreError::VersionMismatch)));
        // A number of the customer routes to the rule; not another customer's.
        let sys = Principal::system();
        let number = db
            .store
            .numbers()
            .create(&sys, "+4930555000", Some(t.reseller_x.id))
            .await
            .unwrap();
        db.store
            .numbers()
            .assign(&sys, number.id, t.customer_a.id)
            .await
            .unwrap();
        let routed = db
            .store
            .numbers()
            .set_destination(
                &t.customer_a_admin,
                number.id,
                Some(Destination::BusinessHours(rule.id)),
            )
            .await
            .unwrap();
        assert_eq!(
            routed.destination,
            Some(Destination::BusinessHours(rule.id))
        );
        let b_rule = rules
            .create(
                &t.customer_b_admin,
                t.customer_b.id,
                &BusinessHoursSettings {
                    name: "B".into(),
                    weekly: Vec::new(),
                    holidays: Vec::new(),
                    open_destination: None,
                    closed_destination: None,
                },
            )
            .await
            .unwrap();
        assert!(db
            .store
            .numbers()
            .set_destination(&sys, number.id, Some(Destination::BusinessHours(b_rule.id)))
            .await
            .is_err());
        // Released, the number forgets the rule (its next customer must not
        // reach this one's).
        db.store.numbers().release(&sys, number.id).await.unwrap();
        assert_eq!(
            db.store
                .numbers()
                .get(&sys, number.id)
                .await
                .unwrap()
                .destination,
            None
        );
        db.store
            .numbers()
            .assign(&sys, number.id, t.customer_a.id)
            .await
            .unwrap();
        db.store
            .numbers()
            .set_destination(
                &t.customer_a_admin,
                number.id,
                Some(Destination::BusinessHours(rule.id)),
            )
            .await
            .unwrap();
        // A deleted extension is no rule's destination any more.
        let spare = db
            .store
            .extensions()
            .create(
                &t.customer_a_admin,
                t.customer_a.id,
                &crate::extensions::NewExtension {
                    number: "150".into(),
                    display_name: String::new(),
                },
            )
            .await
            .unwrap();
        let mut with_spare = settings.clone();
        with_spare.closed_destination = Some(Destination::Extension(spare.id));
        let current = rules.get(&t.customer_a_admin, rule.id).await.unwrap();
        rules
            .update(
                &t.customer_a_admin,
                rule.id,
                Some(current.version),
                &with_spare,
            )
            .await
            .unwrap();
        db.store
            .extensions()
            .delete(&t.customer_a_admin, spare.id)
            .await
            .unwrap();
        assert_eq!(
            rules
                .get(&t.customer_a_admin, rule.id)
                .await
                .unwrap()
                .closed_destination,
            None
        );
        // A rule does not lead to a rule.
        let mut chained = settings.clone();
        chained.closed_destination = Some(Destination::BusinessHours(rule.id));
        assert!(matches!(
            rules
                .create(&t.customer_a_admin, t.customer_a.id, &chained)
                .await,
            Err(StoreError::Invalid(_))
        ));
        rules.delete(&t.customer_a_admin, rule.id).await.unwrap();
        assert!(matches!(
            rules.get(&t.customer_a_admin, rule.id).await,
            Err(StoreError::NotFound)
        ));
        let after = db.store.numbers().get(&sys, number.id).await.unwrap();
        assert_eq!(
            after.destination, None,
            "a deleted rule's numbers lose their destination"
        );
    }

    crate::both_engines!(rules_are_the_customers_and_point_at_its_own_destinations);
}
