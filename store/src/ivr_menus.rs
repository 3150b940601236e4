//! Auto-attendant menus (IVR): a customer's greeting that asks callers to
//! key an option, each key (`0`–`9`, `*`, `#`) leading to a destination
//! like a number's (an extension, a ring group, a room, a voicemail box or
//! another menu), and where a caller goes who keys nothing valid after the
//! menu's tries. With direct dialling on, a caller may also key any
//! extension's number. Numbers, business-hours rules and other menus lead
//! to a menu; the application server plays it.
//!
//! A menu's options are written with the menu, all at once, each checked
//! to be the customer's own in the statement that writes it.

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::audit::{self, Event};
use crate::changes::Change;
use crate::db::Tx;
use crate::destinations::{self, Destination, OPTION};
use crate::error::OnViolation;
use crate::principal::Level;
use crate::validate::Checker;
use crate::{CustomerId, IvrMenuId, Millis, Principal, ResellerId, Result, Store, StoreError};

/// The keys an option may have.
pub const KEYS: &str = "0123456789*#";
/// The key under which the destination after the last try is kept.
const TIMEOUT_KEY: &str = "timeout";
/// Menus a customer may have.
pub const MAX_MENUS: usize = 100;

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IvrMenu {
    pub id: IvrMenuId,
    pub customer_id: CustomerId,
    pub reseller_id: ResellerId,
    pub name: String,
    /// Whether the customer uploaded a greeting (else the platform's
    /// default, in the customer's language, is played).
    pub has_greeting: bool,
    #[serde(skip)]
    pub greeting_audio: Option<String>,
    pub timeout_s: i64,
    pub tries: i64,
    pub direct_dial: bool,
    /// In key order; an option whose destination was removed is gone.
    pub options: Vec<MenuOption>,
    pub on_timeout: Option<Destination>,
    pub created_at: Millis,
    pub version: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct MenuOption {
    /// One of `0`–`9`, `*`, `#`.
    pub key: String,
    pub destination: Destination,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct MenuSettings {
    pub name: String,
    /// Seconds to wait for a key after the greeting: 1 to 30, 5 when not
    /// given.
    #[serde(default = "default_timeout")]
    pub timeout_s: i64,
    /// How often the greeting is played before the caller goes to
    /// `on_timeout` (or is said goodbye to): 1 to 5, 3 when not given.
    #[serde(default = "default_tries")]
    pub tries: i64,
    /// Whether callers may key an extension's number.
    #[serde(default)]
    pub direct_dial: bool,
    #[serde(default)]
    pub options: Vec<MenuOption>,
    #[serde(default)]
    pub on_timeout: Option<Destination>,
}

fn default_timeout() -> i64 {
    5
}

fn default_tries() -> i64 {
    3
}

const COLUMNS: &str = "m.id, m.customer_id, c.reseller_id, m.name, m.greeting_audio, \
    m.timeout_s, m.tries, m.direct_dial, m.created_at, m.version";
/// $1 reseller scope, $2 customer scope.
const SCOPED: &str = "FROM ivr_menus m JOIN customers c ON c.id = m.customer_id \
    WHERE m.deleted_at IS NULL AND ($1 IS NULL OR c.reseller_id = $1) AND ($2 IS NULL OR m.customer_id = $2)";

fn from_row(row: &AnyRow) -> Result<IvrMenu, sqlx::Error> {
    let greeting_audio: Option<String> = row.try_get("greeting_audio")?;
    Ok(IvrMenu {
        id: IvrMenuId(row.try_get("id")?),
        customer_id: CustomerId(row.try_get("customer_id")?),
        reseller_id: ResellerId(row.try_get("reseller_id")?),
        name: row.try_get("name")?,
        has_greeting: greeting_audio.is_some(),
        greeting_audio,
        timeout_s: row.try_get("timeout_s")?,
        tries: row.try_get("tries")?,
        direct_dial: crate::rows::flag(row, "direct_dial")?,
        options: Vec::new(),
        on_timeout: None,
        created_at: row.try_get("created_at")?,
        version: row.try_get("version")?,
    })
}

pub struct IvrMenus<'s>(pub(crate) &'s Store);

impl IvrMenus<'_> {
    /// The customer's menus, by name.
    pub async fn list(&self, by: &Principal, customer: CustomerId) -> Result<Vec<IvrMenu>> {
        by.may_read(Level::Customer)?;
        let customer = self.0.customers().get(by, customer).await?;
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} {SCOPED} AND m.customer_id = $3 ORDER BY m.name, m.id"
        ))
        .bind(by.scope.reseller_param())
        .bind(by.scope.customer_param())
        .bind(customer.id.0)
        .fetch_all(self.0.pool())
        .await?;
        let mut menus = rows.iter().map(from_row).collect::<Result<Vec<_>, _>>()?;
        // The options of all of them in one query.
        self.read_options(
            &mut menus,
            "menu_id IN (SELECT id FROM ivr_menus WHERE customer_id = $1 AND deleted_at IS NULL)",
            customer.id.0,
        )
        .await?;
        Ok(menus)
    }

    pub async fn get(&self, by: &Principal, id: IvrMenuId) -> Result<IvrMenu> {
        by.may_read(Level::Customer)?;
        let row = sqlx::query(&format!("SELECT {COLUMNS} {SCOPED} AND m.id = $3"))
            .bind(by.scope.reseller_param())
            .bind(by.scope.customer_param())
            .bind(id.0)
            .fetch_optional(self.0.pool())
            .await?
            .ok_or(StoreError::NotFound)?;
        let mut menus = vec![from_row(&row)?];
        self.read_options(&mut menus, "menu_id = $1", id.0).await?;
        Ok(menus.remove(0))
    }

    /// Reads into `menus` their options: those of `filter` (one `$1`,
    /// bound to `value`).
    async fn read_options(&self, menus: &mut [IvrMenu], filter: &str, value: i64) -> Result<()> {
        let rows = sqlx::query(&format!(
            "SELECT menu_id, key, {} FROM ivr_menu_options WHERE {filter}",
            OPTION.names().join(", ")
        ))
        .bind(value)
        .fetch_all(self.0.pool())
        .await?;
        for row in &rows {
            let id = IvrMenuId(row.try_get("menu_id")?);
            let key: String = row.try_get("key")?;
            let (Some(destination), Some(menu)) =
                (OPTION.read(row)?, menus.iter_mut().find(|m| m.id == id))
            else {
                continue;
            };
            if key == TIMEOUT_KEY {
                menu.on_timeout = Some(destination);
            } else {
                menu.options.push(MenuOption { key, destination });
            }
        }
        // Digits first (in byte order '#' and '*' come before them), as
        // callers read them: 1, 2, …
        for menu in menus {
            menu.options
                .sort_by_key(|o| (!o.key.starts_with(char::is_numeric), o.key.clone()));
        }
        Ok(())
    }

    /// Checks the settings, and that each destination is the customer's
    /// (a menu may lead to another menu, not to itself).
    async fn check(
        &self,
        by: &Principal,
        customer: CustomerId,
        this: Option<IvrMenuId>,
        s: &MenuSettings,
    ) -> Result<()> {
        let mut check = Checker::new();
        check
            .text("name", &s.name, 100)
            .check(
                (1..=30).contains(&s.timeout_s),
                "timeout_s",
                "must be 1 to 30",
            )
            .check((1..=5).contains(&s.tries), "tries", "must be 1 to 5")
            .check(
                s.options
                    .iter()
                    .all(|o| o.key.len() == 1 && KEYS.contains(o.key.as_str())),
                "options",
                "each key must be one of 0-9, * and #",
            );
        let mut keys: Vec<&str> = s.options.iter().map(|o| o.key.as_str()).collect();
        keys.sort_unstable();
        keys.dedup();
        check.check(
            keys.len() == s.options.len(),
            "options",
            "a key may lead to one destination only",
        );
        let to_itself = |d: &Destination| this.is_some_and(|m| *d == Destination::IvrMenu(m));
        check.check(
            !s.options.iter().map(|o| &o.destination).any(to_itself)
                && !s.on_timeout.as_ref().is_some_and(to_itself),
            "options",
            "a menu cannot lead to itself",
        );
        check.finish()?;
        for (field, d) in s
            .options
            .iter()
            .map(|o| ("options", o.destination))
            .chain(s.on_timeout.map(|d| ("on_timeout", d)))
        {
            if !destinations::belongs(self.0, by, customer, d, false).await? {
                return Err(StoreError::invalid(
                    field,
                    "the destination does not exist in this customer",
                ));
            }
        }
        Ok(())
    }

    pub async fn create(
        &self,
        by: &Principal,
        customer: CustomerId,
        s: &MenuSettings,
    ) -> Result<IvrMenu> {
        by.may_write(Level::Customer)?;
        let customer = self.0.customers().get(by, customer).await?;
        self.check(by, customer.id, None, s).await?;
        let count = sqlx::query(
            "SELECT COUNT(*) AS n FROM ivr_menus WHERE customer_id = $1 AND deleted_at IS NULL",
        )
        .bind(customer.id.0)
        .fetch_one(self.0.pool())
        .await?
        .try_get::<i64, _>("n")?;
        if count as usize >= MAX_MENUS {
            return Err(StoreError::invalid(
                "name",
                "the customer has as many menus as it may have (100)",
            ));
        }
        let mut tx = self.0.begin().await?;
        let row = sqlx::query(
            "INSERT INTO ivr_menus (customer_id, name, timeout_s, tries, direct_dial, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(customer.id.0)
        .bind(&s.name)
        .bind(s.timeout_s)
        .bind(s.tries)
        .bind(crate::rows::flag_value(s.direct_dial))
        .bind(crate::now_ms())
        .fetch_one(tx.conn())
        .await
        .map_err(violation)?;
        let id = IvrMenuId(row.try_get("id")?);
        write_options(&mut tx, id, customer.id, s).await?;
        audit::record(
            &mut tx,
            by,
            Event {
                action: "create",
                object_type: "ivr_menu",
                object_id: Some(id.0),
                reseller: Some(customer.reseller_id),
                customer: Some(customer.id),
                details: audit_details(s),
            },
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
        id: IvrMenuId,
        if_version: Option<i64>,
        s: &MenuSettings,
    ) -> Result<IvrMenu> {
        by.may_write(Level::Customer)?;
        let current = self.get(by, id).await?;
        self.check(by, current.customer_id, Some(id), s).await?;
        let mut tx = self.0.begin().await?;
        let done = sqlx::query(
            "UPDATE ivr_menus SET name = $1, timeout_s = $2, tries = $3, direct_dial = $4, \
             version = version + 1 WHERE id = $5 AND version = $6 AND deleted_at IS NULL",
        )
        .bind(&s.name)
        .bind(s.timeout_s)
        .bind(s.tries)
        .bind(crate::rows::flag_value(s.direct_dial))
        .bind(id.0)
        .bind(if_version.unwrap_or(current.version))
        .execute(tx.conn())
        .await
        .map_err(violation)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::VersionMismatch);
        }
        sqlx::query("DELETE FROM ivr_menu_options WHERE menu_id = $1")
            .bind(id.0)
            .execute(tx.conn())
            .await?;
        write_options(&mut tx, id, current.customer_id, s).await?;
        audit::record(
            &mut tx,
            by,
            Event {
                action: "update",
                object_type: "ivr_menu",
                object_id: Some(id.0),
                reseller: Some(current.reseller_id),
                customer: Some(current.customer_id),
                details: audit_details(s),
            },
        )
        .await?;
        tx.changed(Change::Customer {
            customer: current.customer_id,
        });
        tx.commit().await?;
        self.get(by, id).await
    }

    /// Removes a menu; numbers, rules and menus that led to it lead
    /// nowhere now; callers in it finish.
    pub async fn delete(&self, by: &Principal, id: IvrMenuId) -> Result<()> {
        by.may_write(Level::Customer)?;
        let current = self.get(by, id).await?;
        let mut tx = self.0.begin().await?;
        destinations::forget(&mut tx, destinations::Removed::IvrMenu(id)).await?;
        sqlx::query("UPDATE ivr_menus SET deleted_at = $1, version = version + 1 WHERE id = $2")
            .bind(crate::now_ms())
            .bind(id.0)
            .execute(tx.conn())
            .await?;
        audit::record(
            &mut tx,
            by,
            Event {
                action: "delete",
                object_type: "ivr_menu",
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

    /// Sets (or with None removes) a menu's uploaded greeting; returns the
    /// key it replaced, for its file to go.
    pub async fn set_greeting(
        &self,
        by: &Principal,
        id: IvrMenuId,
        audio: Option<&str>,
    ) -> Result<Option<String>> {
        by.may_write(Level::Customer)?;
        let current = self.get(by, id).await?;
        let mut tx = self.0.begin().await?;
        // Read in the transaction: of two uploads at once, each hands back
        // the key it really replaced.
        let before: Option<String> =
            sqlx::query("SELECT greeting_audio FROM ivr_menus WHERE id = $1")
                .bind(id.0)
                .fetch_one(tx.conn())
                .await?
                .try_get("greeting_audio")?;
        sqlx::query(
            "UPDATE ivr_menus SET greeting_audio = $1, version = version + 1 WHERE id = $2",
        )
        .bind(audio)
        .bind(id.0)
        .execute(tx.conn())
        .await?;
        audit::record(
            &mut tx,
            by,
            Event {
                action: "update",
                object_type: "ivr_menu_greeting",
                object_id: Some(id.0),
                reseller: Some(current.reseller_id),
                customer: Some(current.customer_id),
                details: serde_json::json!({ "greeting": audio.is_some() }),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(before)
    }
}

/// Writes a menu's options, each only if its destination is still a live
/// one of the customer (else the whole write fails).
async fn write_options(
    tx: &mut Tx<'_>,
    menu: IvrMenuId,
    customer: CustomerId,
    s: &MenuSettings,
) -> Result<()> {
    let options = s
        .options
        .iter()
        .map(|o| (o.key.as_str(), o.destination))
        .chain(s.on_timeout.map(|d| (TIMEOUT_KEY, d)));
    let names = OPTION.names();
    let params: Vec<String> = (0..names.len()).map(|i| format!("${}", i + 3)).collect();
    let customer_param = 3 + names.len();
    let sql = format!(
        "INSERT INTO ivr_menu_options (menu_id, key, {}) SELECT $1, $2, {} WHERE {}",
        names.join(", "),
        params.join(", "),
        OPTION.still_theirs(3, customer_param)
    );
    for (key, destination) in options {
        let mut query = sqlx::query(&sql).bind(menu.0).bind(key);
        for value in OPTION.values(Some(destination)) {
            query = query.bind(value);
        }
        let done = query.bind(customer.0).execute(tx.conn()).await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::invalid(
                "options",
                "the destination does not exist in this customer",
            ));
        }
    }
    Ok(())
}

fn violation(e: sqlx::Error) -> StoreError {
    OnViolation {
        unique: "",
        foreign_key: "the customer does not exist",
    }
    .map(e)
}

fn audit_details(s: &MenuSettings) -> serde_json::Value {
    serde_json::json!({
        "name": s.name,
        "timeout_s": s.timeout_s,
        "tries": s.tries,
        "direct_dial": s.direct_dial,
        "options": s.options,
        "on_timeout": s.on_timeout,
    })
}

/// Whether `key` may be an option's key (for forms that build settings).
pub fn is_key(key: &str) -> bool {
    key.len() == 1 && KEYS.contains(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{TestDb, TwoTenants};

    fn settings(options: Vec<MenuOption>) -> MenuSettings {
        MenuSettings {
            name: "Main".into(),
            timeout_s: 5,
            tries: 3,
            direct_dial: true,
            options,
            on_timeout: None,
        }
    }

    async fn a_menu_leads_to_its_own_customers_destinations(db: TestDb) {
        let t = TwoTenants::create(&db.store).await;
        let menus = db.store.ivr_menus();
        let admin = &t.customer_a_admin;
        let sales = MenuOption {
            key: "1".into(),
            destination: Destination::Extension(t.extension_a.id),
        };
        let boxed = MenuOption {
            key: "#".into(),
            destination: Destination::Voicemail(t.extension_a.id),
        };
        let mut s = settings(vec![boxed.clone(), sales.clone()]);
        s.on_timeout = Some(Destination::Extension(t.extension_a.id));
        let menu = menus
            .create(admin, t.customer_a.id, &s)
            .await
            .expect("menu");
        assert_eq!(menu.options, vec![sales.clone(), boxed.clone()]);
        assert_eq!(
            menu.on_timeout,
            Some(Destination::Extension(t.extension_a.id))
        );
        assert!(!menu.has_greeting);

        // Another customer's extension, a bad key, a key twice, itself.
        let theirs = MenuOption {
            key: "2".into(),
            destination: Destination::Extension(t.extension_b.id),
        };
        let bad_key = MenuOption {
            key: "12".into(),
            destination: Destination::Extension(t.extension_a.id),
        };
        let itself = MenuOption {
            key: "9".into(),
            destination: Destination::IvrMenu(menu.id),
        };
        for options in [
            vec![theirs],
            vec![bad_key],
            vec![sales.clone(), sales.clone()],
        ] {
            assert!(matches!(
                menus
                    .create(admin, t.customer_a.id, &settings(options))
                    .await,
                Err(StoreError::Invalid(_))
            ));
        }
        assert!(matches!(
            menus
                .update(admin, menu.id, None, &settings(vec![itself]))
                .await,
            Err(StoreError::Invalid(_))
        ));
        // Customer B's admin neither sees nor changes it.
        assert!(matches!(
            menus.get(&t.customer_b_admin, menu.id).await,
            Err(StoreError::NotFound)
        ));
        assert!(matches!(
            menus.delete(&t.customer_b_admin, menu.id).await,
            Err(StoreError::NotFound)
        ));

        // A submenu; the number leads to the main menu.
        let sub = menus
            .create(admin, t.customer_a.id, &settings(vec![sales.clone()]))
            .await
            .expect("submenu");
        let updated = menus
            .update(
                admin,
                menu.id,
                Some(menu.version),
                &settings(vec![
                    sales.clone(),
                    MenuOption {
                        key: "0".into(),
                        destination: Destination::IvrMenu(sub.id),
                    },
                ]),
            )
            .await
            .expect("updated");
        assert_eq!(updated.options.len(), 2);
        assert_eq!(updated.on_timeout, None);
        assert!(matches!(
            menus
                .update(admin, menu.id, Some(menu.version), &settings(vec![]))
                .await,
            Err(StoreError::VersionMismatch)
        ));
        let sys = Principal::system();
        let numbers = db.store.numbers();
        let number = numbers
            .create(&sys, "+4930555999", Some(t.reseller_x.id))
            .await
            .expect("number");
        numbers
            .assign(&sys, number.id, t.customer_a.id)
            .await
            .expect("assigned");
        numbers
            .set_destination(admin, number.id, Some(Destination::IvrMenu(menu.id)))
            .await
            .expect("routed");
        assert!(matches!(
            numbers
                .set_destination(
                    &t.customer_b_admin,
                    number.id,
                    Some(Destination::IvrMenu(menu.id))
                )
                .await,
            Err(StoreError::NotFound | StoreError::Invalid(_))
        ));

        // The submenu removed: the option to it goes; the menu removed:
        // the number leads nowhere.
        menus.delete(admin, sub.id).await.expect("deleted");
        let menu = menus.get(admin, menu.id).await.expect("menu");
        assert_eq!(menu.options, vec![sales]);
        assert_eq!(
            menu.version,
            updated.version + 1,
            "a lost option is a change"
        );
        menus.delete(admin, menu.id).await.expect("deleted");
        assert_eq!(
            numbers
                .get(&sys, number.id)
                .await
                .expect("number")
                .destination,
            None
        );
        assert!(menus
            .list(admin, t.customer_a.id)
            .await
            .expect("list")
            .is_empty());
    }

    async fn a_greeting_replaced_hands_back_the_old_key(db: TestDb) {
        let t = TwoTenants::create(&db.store).await;
        let menus = db.store.ivr_menus();
        let admin = &t.customer_a_admin;
        let menu = menus
            .create(admin, t.customer_a.id, &settings(vec![]))
            .await
            .expect("menu");
        assert_eq!(
            menus
                .set_greeting(admin, menu.id, Some("a.wav"))
                .await
                .expect("set"),
            None
        );
        assert_eq!(
            menus
                .set_greeting(admin, menu.id, Some("b.wav"))
                .await
                .expect("set"),
            Some("a.wav".into())
        );
        let menu = menus.get(admin, menu.id).await.expect("menu");
        assert!(menu.has_greeting);
        assert_eq!(menu.greeting_audio.as_deref(), Some("b.wav"));
        assert!(matches!(
            menus.set_greeting(&t.customer_b_admin, menu.id, None).await,
            Err(StoreError::NotFound)
        ));
    }

    crate::both_engines!(
        a_menu_leads_to_its_own_customers_destinations,
        a_greeting_replaced_hands_back_the_old_key
    );

    #[test]
    fn keys() {
        assert!(is_key("0") && is_key("#") && is_key("*"));
        assert!(!is_key("") && !is_key("10") && !is_key("a"));
    }
}
