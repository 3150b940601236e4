//! Conference rooms: a number of the customer's that its phones dial to
//! meet, with an optional PIN and a most-participants limit. The room's
//! number shares the customer's dialling space with its extensions and
//! ring groups, so none of them may take another's number.
//!
//! The PIN is a secret the participants share (it is read out to them), so
//! it is kept as it is and shown to the customer's admins, like a meeting
//! passcode; it is never shown to anyone outside the customer's scope.

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::audit::{self, Event};
use crate::changes::Change;
use crate::error::OnViolation;
use crate::principal::Level;
use crate::validate::{self, Checker};
use crate::{
    ConferenceRoomId, CustomerId, Millis, Principal, ResellerId, Result, Store, StoreError,
};

/// The most participants a room may be set to.
pub const MAX_PARTICIPANTS: i64 = 50;

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConferenceRoom {
    pub id: ConferenceRoomId,
    pub customer_id: CustomerId,
    pub reseller_id: ResellerId,
    pub number: String,
    pub name: String,
    /// Digits the caller keys in before joining; None: no PIN.
    pub pin: Option<String>,
    pub max_participants: i64,
    pub created_at: Millis,
    pub version: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RoomSettings {
    /// Dialled like an extension number; must not be an extension's or a
    /// ring group's.
    pub number: String,
    pub name: String,
    /// 4 to 12 digits, or none.
    #[serde(default)]
    pub pin: Option<String>,
    /// 2 to 50; 10 when not given.
    #[serde(default = "default_max")]
    pub max_participants: i64,
}

fn default_max() -> i64 {
    10
}

const COLUMNS: &str = "r.id, r.customer_id, c.reseller_id, r.number, r.name, r.pin, \
    r.max_participants, r.created_at, r.version";
/// $1 reseller scope, $2 customer scope.
const SCOPED: &str = "FROM conference_rooms r JOIN customers c ON c.id = r.customer_id \
    WHERE r.deleted_at IS NULL AND ($1 IS NULL OR c.reseller_id = $1) AND ($2 IS NULL OR r.customer_id = $2)";

fn from_row(row: &AnyRow) -> Result<ConferenceRoom, sqlx::Error> {
    Ok(ConferenceRoom {
        id: ConferenceRoomId(row.try_get("id")?),
        customer_id: CustomerId(row.try_get("customer_id")?),
        reseller_id: ResellerId(row.try_get("reseller_id")?),
        number: row.try_get("number")?,
        name: row.try_get("name")?,
        pin: row.try_get("pin")?,
        max_participants: row.try_get("max_participants")?,
        created_at: row.try_get("created_at")?,
        version: row.try_get("version")?,
    })
}

/// Whether one of `customer`'s live rooms has `number` (extensions and
/// ring groups ask before taking a number).
pub(crate) async fn has_number(store: &Store, customer: CustomerId, number: &str) -> Result<bool> {
    let row = sqlx::query(
        "SELECT 1 AS one FROM conference_rooms WHERE customer_id = $1 AND number = $2 AND deleted_at IS NULL",
    )
    .bind(customer.0)
    .bind(number)
    .fetch_optional(store.pool())
    .await?;
    Ok(row.is_some())
}

pub struct ConferenceRooms<'s>(pub(crate) &'s Store);

impl ConferenceRooms<'_> {
    /// The customer's rooms (its admins and above; users do not see PINs).
    pub async fn list(&self, by: &Principal, customer: CustomerId) -> Result<Vec<ConferenceRoom>> {
        by.may_read(Level::Customer)?;
        let customer = self.0.customers().get(by, customer).await?;
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} {SCOPED} AND r.customer_id = $3 ORDER BY r.number"
        ))
        .bind(by.scope.reseller_param())
        .bind(by.scope.customer_param())
        .bind(customer.id.0)
        .fetch_all(self.0.pool())
        .await?;
        Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
    }

    pub async fn get(&self, by: &Principal, id: ConferenceRoomId) -> Result<ConferenceRoom> {
        by.may_read(Level::Customer)?;
        let row = sqlx::query(&format!("SELECT {COLUMNS} {SCOPED} AND r.id = $3"))
            .bind(by.scope.reseller_param())
            .bind(by.scope.customer_param())
            .bind(id.0)
            .fetch_optional(self.0.pool())
            .await?
            .ok_or(StoreError::NotFound)?;
        Ok(from_row(&row)?)
    }

    /// Checks the settings, and that no extension or ring group of the
    /// customer has the number.
    async fn check(&self, by: &Principal, customer: CustomerId, s: &RoomSettings) -> Result<()> {
        let mut check = Checker::new();
        check
            .check(
                validate::is_digits(&s.number, 10),
                "number",
                "must be 1 to 10 digits",
            )
            .text("name", &s.name, 100)
            .check(
                s.pin
                    .as_deref()
                    .is_none_or(|p| validate::is_digits(p, 12) && p.len() >= 4),
                "pin",
                "must be 4 to 12 digits",
            )
            .check(
                (2..=MAX_PARTICIPANTS).contains(&s.max_participants),
                "max_participants",
                "must be 2 to 50",
            );
        check.finish()?;
        let extensions = self.0.extensions().list(by, customer).await?;
        let groups = self.0.ring_groups().list(by, customer).await?;
        let mut check = Checker::new();
        check
            .check(
                extensions.iter().all(|e| e.number != s.number),
                "number",
                "is an extension's number",
            )
            .check(
                groups.iter().all(|g| g.number != s.number),
                "number",
                "is a ring group's number",
            );
        check.finish()
    }

    pub async fn create(
        &self,
        by: &Principal,
        customer: CustomerId,
        s: &RoomSettings,
    ) -> Result<ConferenceRoom> {
        by.may_write(Level::Customer)?;
        let customer = self.0.customers().get(by, customer).await?;
        self.check(by, customer.id, s).await?;
        let mut tx = self.0.begin().await?;
        let row = sqlx::query(
            "INSERT INTO conference_rooms (customer_id, number, name, pin, max_participants, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(customer.id.0)
        .bind(&s.number)
        .bind(&s.name)
        .bind(s.pin.as_deref())
        .bind(s.max_participants)
        .bind(crate::now_ms())
        .fetch_one(tx.conn())
        .await
        .map_err(violation)?;
        let id = ConferenceRoomId(row.try_get("id")?);
        audit::record(
            &mut tx,
            by,
            Event {
                action: "create",
                object_type: "conference_room",
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
        id: ConferenceRoomId,
        if_version: Option<i64>,
        s: &RoomSettings,
    ) -> Result<ConferenceRoom> {
        by.may_write(Level::Customer)?;
        let current = self.get(by, id).await?;
        self.check(by, current.customer_id, s).await?;
        let mut tx = self.0.begin().await?;
        let done = sqlx::query(
            "UPDATE conference_rooms SET number = $1, name = $2, pin = $3, max_participants = $4, \
             version = version + 1 WHERE id = $5 AND version = $6 AND deleted_at IS NULL",
        )
        .bind(&s.number)
        .bind(&s.name)
        .bind(s.pin.as_deref())
        .bind(s.max_participants)
        .bind(id.0)
        .bind(if_version.unwrap_or(current.version))
        .execute(tx.conn())
        .await
        .map_err(violation)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::VersionMismatch);
        }
        audit::record(
            &mut tx,
            by,
            Event {
                action: "update",
                object_type: "conference_room",
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

    /// Removes a room; calls in it go on until they hang up.
    pub async fn delete(&self, by: &Principal, id: ConferenceRoomId) -> Result<()> {
        by.may_write(Level::Customer)?;
        let current = self.get(by, id).await?;
        let mut tx = self.0.begin().await?;
        // Numbers and rules that led to it lead nowhere now.
        crate::destinations::forget(&mut tx, crate::destinations::Removed::ConferenceRoom(id))
            .await?;
        sqlx::query(
            "UPDATE conference_rooms SET deleted_at = $1, version = version + 1 WHERE id = $2",
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
                object_type: "conference_room",
                object_id: Some(id.0),
                reseller: Some(current.reseller_id),
                customer: Some(current.customer_id),
                details: serde_json::json!({ "number": current.number }),
            },
        )
        .await?;
        tx.changed(Change::Customer {
            customer: current.customer_id,
        });
        tx.commit().await
    }
}

/// A number taken by another live room of the customer (the database's
/// unique index decides, also between nodes writing at once).
fn violation(e: sqlx::Error) -> StoreError {
    OnViolation {
        unique: "a conference room with this number exists",
        foreign_key: "the customer does not exist",
    }
    .map(e)
}

/// What the audit log keeps of the settings: not the PIN itself.
fn audit_details(s: &RoomSettings) -> serde_json::Value {
    serde_json::json!({
        "number": s.number,
        "name": s.name,
        "pin": s.pin.is_some(),
        "max_participants": s.max_participants,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{TestDb, TwoTenants};

    fn settings(number: &str, pin: Option<&str>) -> RoomSettings {
        RoomSettings {
            number: number.to_owned(),
            name: "Board room".to_owned(),
            pin: pin.map(str::to_owned),
            max_participants: 10,
        }
    }

    async fn scoped_validated_and_in_the_directory(db: TestDb) {
        let t = TwoTenants::create(&db.store).await;
        let rooms = db.store.conference_rooms();
        let sys = Principal::system();
        let room = rooms
            .create(
                &t.customer_a_admin,
                t.customer_a.id,
                &settings("800", Some("4711")),
            )
            .await
            .unwrap();
        assert_eq!(
            (room.pin.as_deref(), room.max_participants),
            (Some("4711"), 10)
        );
        assert_eq!(
            rooms
                .list(&t.reseller_x_admin, t.customer_a.id)
                .await
                .unwrap()
                .len(),
            1
        );
        // Another tenant finds nothing; a customer's user may not read PINs.
        assert!(matches!(
            rooms.get(&t.customer_b_admin, room.id).await,
            Err(StoreError::NotFound)
        ));
        assert!(matches!(
            rooms.list(&t.reseller_y_admin, t.customer_a.id).await,
            Err(StoreError::NotFound)
        ));
        assert!(matches!(
            rooms.get(&t.customer_a_user, room.id).await,
            Err(StoreError::Forbidden(_))
        ));
        assert!(matches!(
            rooms
                .update(&t.customer_b_admin, room.id, None, &settings("801", None))
                .await,
            Err(StoreError::NotFound)
        ));
        assert!(matches!(
            rooms.delete(&t.customer_b_admin, room.id).await,
            Err(StoreError::NotFound)
        ));
        // The extension's number, bad PINs and limits are refused.
        let ext = t.extension_a.number.as_str();
        for bad in [
            settings(ext, None),
            settings("8x", None),
            settings("801", Some("12")),
            settings("801", Some("12ab")),
            RoomSettings {
                max_participants: 1,
                ..settings("801", None)
            },
            RoomSettings {
                max_participants: 51,
                ..settings("801", None)
            },
            RoomSettings {
                name: String::new(),
                ..settings("801", None)
            },
        ] {
            assert!(
                matches!(
                    rooms
                        .create(&t.customer_a_admin, t.customer_a.id, &bad)
                        .await,
                    Err(StoreError::Invalid(_))
                ),
                "{bad:?}"
            );
        }
        assert!(matches!(
            rooms
                .create(&t.customer_a_admin, t.customer_a.id, &settings("800", None))
                .await,
            Err(StoreError::Conflict(_))
        ));
        // Customer B may have its own room 800.
        rooms
            .create(&t.customer_b_admin, t.customer_b.id, &settings("800", None))
            .await
            .unwrap();
        // Neither an extension nor a ring group can take the room's number.
        let taken = db
            .store
            .extensions()
            .create(
                &sys,
                t.customer_a.id,
                &serde_json::from_value(serde_json::json!({"number": "800", "display_name": ""}))
                    .unwrap(),
            )
            .await;
        assert!(matches!(taken, Err(StoreError::Conflict(_))), "{taken:?}");
        let group = db
            .store
            .ring_groups()
            .create(
                &t.customer_a_admin,
                t.customer_a.id,
                &serde_json::from_value(serde_json::json!({
                    "number": "800", "name": "G", "strategy": "simultaneous",
                    "members": [t.extension_a.id]
                }))
                .unwrap(),
            )
            .await;
        assert!(matches!(group, Err(StoreError::Invalid(_))), "{group:?}");
        let changed = rooms
            .update(
                &t.customer_a_admin,
                room.id,
                Some(room.version),
                &settings("810", None),
            )
            .await
            .unwrap();
        assert_eq!((changed.number.as_str(), changed.pin), ("810", None));
        assert!(matches!(
            rooms
                .update(
                    &t.customer_a_admin,
                    room.id,
                    Some(room.version),
                    &settings("811", None)
                )
                .await,
            Err(StoreError::VersionMismatch)
        ));
        let dir = db
            .store
            .directory()
            .customer(&sys, t.customer_a.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(dir.conference_rooms.len(), 1);
        assert_eq!(dir.conference_rooms[0].number, "810");
        rooms.delete(&t.customer_a_admin, room.id).await.unwrap();
        assert!(matches!(
            rooms.get(&t.customer_a_admin, room.id).await,
            Err(StoreError::NotFound)
        ));
        // Its number is free again.
        rooms
            .create(&t.customer_a_admin, t.customer_a.id, &settings("810", None))
            .await
            .unwrap();
    }

    crate::both_engines!(scoped_validated_and_in_the_directory);
}
