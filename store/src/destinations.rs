//! Where a call to a phone number (or a business-hours rule in one state,
//! or an option of an auto-attendant menu) goes: the [`Destination`] kinds,
//! the columns that hold one in a row (one column per kind, at most one
//! set), whether a destination is the customer's own, and forgetting a
//! removed extension, group, rule, room or menu wherever it was a
//! destination.

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::db::Tx;
use crate::{
    BusinessHoursId, ConferenceRoomId, CustomerId, ExtensionId, IvrMenuId, Principal, Result,
    RingGroupId, Store, StoreError,
};

/// Where calls to a number go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum Destination {
    Extension(ExtensionId),
    RingGroup(RingGroupId),
    /// Open or closed, the rule's own destination (numbers only).
    BusinessHours(BusinessHoursId),
    /// A conference room of the customer.
    ConferenceRoom(ConferenceRoomId),
    /// An extension's voicemail box, without ringing its phones.
    Voicemail(ExtensionId),
    /// An auto-attendant menu of the customer.
    IvrMenu(IvrMenuId),
}

/// The columns of a table that hold one destination.
pub(crate) struct Slots {
    table: &'static str,
    extension: &'static str,
    ring_group: &'static str,
    /// None where a rule cannot be a destination (in a rule).
    business_hours: Option<&'static str>,
    room: &'static str,
    voicemail: &'static str,
    menu: &'static str,
}

/// A phone number's destination.
pub(crate) const NUMBER: Slots = Slots {
    table: "phone_numbers",
    extension: "dest_extension_id",
    ring_group: "dest_ring_group_id",
    business_hours: Some("dest_business_hours_id"),
    room: "dest_conference_room_id",
    voicemail: "dest_voicemail_id",
    menu: "dest_ivr_menu_id",
};
/// A business-hours rule's destination while open, and while closed.
pub(crate) const OPEN: Slots = Slots {
    table: "business_hours",
    extension: "open_extension_id",
    ring_group: "open_ring_group_id",
    business_hours: None,
    room: "open_conference_room_id",
    voicemail: "open_voicemail_id",
    menu: "open_ivr_menu_id",
};
pub(crate) const CLOSED: Slots = Slots {
    table: "business_hours",
    extension: "closed_extension_id",
    ring_group: "closed_ring_group_id",
    business_hours: None,
    room: "closed_conference_room_id",
    voicemail: "closed_voicemail_id",
    menu: "closed_ivr_menu_id",
};
/// A menu option's destination.
pub(crate) const OPTION: Slots = Slots {
    table: "ivr_menu_options",
    extension: "extension_id",
    ring_group: "ring_group_id",
    business_hours: None,
    room: "conference_room_id",
    voicemail: "voicemail_id",
    menu: "ivr_menu_id",
};
/// Every place a destination is kept.
const ALL: [&Slots; 4] = [&NUMBER, &OPEN, &CLOSED, &OPTION];

impl Slots {
    /// The column names, in the order of [`Slots::values`].
    pub fn names(&self) -> Vec<&'static str> {
        let mut names = vec![self.extension, self.ring_group];
        names.extend(self.business_hours);
        names.extend([self.room, self.voicemail, self.menu]);
        names
    }

    /// The names prefixed with a table alias (`n.`), for a SELECT list.
    pub fn select(&self, alias: &str) -> String {
        self.names()
            .iter()
            .map(|n| format!("{alias}.{n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `col = $first, col = $first+1, …`, for an UPDATE binding
    /// [`Slots::values`] in order.
    pub fn assignments(&self, first: usize) -> String {
        self.names()
            .iter()
            .enumerate()
            .map(|(i, n)| format!("{n} = ${}", first + i))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `col = NULL, …`: no destination.
    pub fn nulls(&self) -> String {
        self.names()
            .iter()
            .map(|n| format!("{n} = NULL"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// A condition that holds when the destination bound from parameter
    /// `$first` on (as [`Slots::values`]) is still a live one of the
    /// customer bound as `$customer` (every kind: a composite foreign key
    /// does not see a soft delete): checked in the statement that writes
    /// it, so a removal between the check and the write loses.
    pub fn still_theirs(&self, first: usize, customer: usize) -> String {
        let mut checks = vec![("extensions", first), ("ring_groups", first + 1)];
        let mut at = first + 2;
        if self.business_hours.is_some() {
            checks.push(("business_hours", at));
            at += 1;
        }
        checks.push(("conference_rooms", at));
        checks.push(("extensions", at + 1));
        checks.push(("ivr_menus", at + 2));
        checks
            .iter()
            .map(|(table, p)| {
                format!(
                    "(${p} IS NULL OR EXISTS (SELECT 1 FROM {table} WHERE id = ${p} \
                     AND customer_id = ${customer} AND deleted_at IS NULL))"
                )
            })
            .collect::<Vec<_>>()
            .join(" AND ")
    }

    /// The destination's id in its column, None in the others.
    pub fn values(&self, d: Option<Destination>) -> Vec<Option<i64>> {
        let of = |kind: usize| -> Option<i64> {
            match (kind, d?) {
                (0, Destination::Extension(e)) => Some(e.0),
                (1, Destination::RingGroup(g)) => Some(g.0),
                (2, Destination::BusinessHours(h)) => Some(h.0),
                (3, Destination::ConferenceRoom(r)) => Some(r.0),
                (4, Destination::Voicemail(e)) => Some(e.0),
                (5, Destination::IvrMenu(m)) => Some(m.0),
                _ => None,
            }
        };
        let mut values = vec![of(0), of(1)];
        if self.business_hours.is_some() {
            values.push(of(2));
        }
        values.extend([of(3), of(4), of(5)]);
        values
    }

    /// The destination a row holds.
    pub fn read(&self, row: &AnyRow) -> Result<Option<Destination>, sqlx::Error> {
        let id = |col: &str| row.try_get::<Option<i64>, _>(col);
        if let Some(e) = id(self.extension)? {
            return Ok(Some(Destination::Extension(ExtensionId(e))));
        }
        if let Some(g) = id(self.ring_group)? {
            return Ok(Some(Destination::RingGroup(RingGroupId(g))));
        }
        if let Some(col) = self.business_hours {
            if let Some(h) = id(col)? {
                return Ok(Some(Destination::BusinessHours(BusinessHoursId(h))));
            }
        }
        if let Some(r) = id(self.room)? {
            return Ok(Some(Destination::ConferenceRoom(ConferenceRoomId(r))));
        }
        if let Some(e) = id(self.voicemail)? {
            return Ok(Some(Destination::Voicemail(ExtensionId(e))));
        }
        Ok(id(self.menu)?.map(|m| Destination::IvrMenu(IvrMenuId(m))))
    }
}

/// Whether `d` is a live destination of `customer` (a rule is one only
/// where `rules` says so: a rule never leads to a rule).
pub(crate) async fn belongs(
    store: &Store,
    by: &Principal,
    customer: CustomerId,
    d: Destination,
    rules: bool,
) -> Result<bool> {
    let found = match d {
        Destination::Extension(e) | Destination::Voicemail(e) => store
            .extensions()
            .get(by, e)
            .await
            .map(|x| x.customer_id == customer && x.deleted_at.is_none()),
        Destination::RingGroup(g) => store
            .ring_groups()
            .get(by, g)
            .await
            .map(|x| x.customer_id == customer),
        Destination::BusinessHours(_) if !rules => return Ok(false),
        Destination::BusinessHours(h) => store
            .business_hours()
            .get(by, h)
            .await
            .map(|x| x.customer_id == customer),
        Destination::ConferenceRoom(r) => store
            .conference_rooms()
            .get(by, r)
            .await
            .map(|x| x.customer_id == customer),
        Destination::IvrMenu(m) => store
            .ivr_menus()
            .get(by, m)
            .await
            .map(|x| x.customer_id == customer),
    };
    match found {
        Ok(ok) => Ok(ok),
        Err(StoreError::NotFound) => Ok(false),
        Err(e) => Err(e),
    }
}

/// What was removed, to be no number's or rule's destination any more.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Removed {
    /// Its phones and its box.
    Extension(ExtensionId),
    RingGroup(RingGroupId),
    BusinessHours(BusinessHoursId),
    ConferenceRoom(ConferenceRoomId),
    IvrMenu(IvrMenuId),
}

/// Clears `removed` wherever it is a destination, in the transaction that
/// removes it.
pub(crate) async fn forget(tx: &mut Tx<'_>, removed: Removed) -> Result<()> {
    let (columns, id): (Vec<(&str, &str)>, i64) = match removed {
        Removed::Extension(e) => (
            ALL.iter()
                .flat_map(|s| [(s.table, s.extension), (s.table, s.voicemail)])
                .collect(),
            e.0,
        ),
        Removed::RingGroup(g) => (ALL.iter().map(|s| (s.table, s.ring_group)).collect(), g.0),
        Removed::BusinessHours(h) => (
            ALL.iter()
                .filter_map(|s| Some((s.table, s.business_hours?)))
                .collect(),
            h.0,
        ),
        Removed::ConferenceRoom(r) => (ALL.iter().map(|s| (s.table, s.room)).collect(), r.0),
        Removed::IvrMenu(m) => (ALL.iter().map(|s| (s.table, s.menu)).collect(), m.0),
    };
    for (table, column) in columns {
        // Options have no version of their own: their menu's changes (a
        // client holding the menu's old ETag must not overwrite it).
        let bump = if table == OPTION.table {
            sqlx::query(&format!(
                "UPDATE ivr_menus SET version = version + 1 WHERE id IN \
                 (SELECT menu_id FROM ivr_menu_options WHERE {column} = $1)"
            ))
            .bind(id)
            .execute(tx.conn())
            .await?;
            ""
        } else {
            ", version = version + 1"
        };
        sqlx::query(&format!(
            "UPDATE {table} SET {column} = NULL{bump} WHERE {column} = $1"
        ))
        .bind(id)
        .execute(tx.conn())
        .await?;
    }
    // The proxies' number routes follow.
    tx.changed(crate::changes::Change::Numbers);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::business_hours::BusinessHoursSettings;
    use crate::conference_rooms::RoomSettings;
    use crate::testing::{TestDb, TwoTenants};

    async fn numbers_and_rules_lead_to_rooms_and_boxes_of_their_own_customer(db: TestDb) {
        let t = TwoTenants::create(&db.store).await;
        let sys = Principal::system();
        let admin = &t.customer_a_admin;
        let numbers = db.store.numbers();
        let number = numbers
            .create(&sys, "+4930555111", Some(t.reseller_x.id))
            .await
            .expect("number");
        numbers
            .assign(&sys, number.id, t.customer_a.id)
            .await
            .expect("assigned");
        let room = |customer, number: &'static str| {
            let store = db.store.clone();
            async move {
                let settings = RoomSettings {
                    number: number.into(),
                    name: "Meeting".into(),
                    pin: None,
                    max_participants: 10,
                };
                store
                    .conference_rooms()
                    .create(&Principal::system(), customer, &settings)
                    .await
                    .expect("room")
            }
        };
        let ours = room(t.customer_a.id, "800").await;
        let theirs = room(t.customer_b.id, "800").await;
        for d in [
            Destination::ConferenceRoom(ours.id),
            Destination::Voicemail(t.extension_a.id),
        ] {
            let routed = numbers
                .set_destination(admin, number.id, Some(d))
                .await
                .expect("routed");
            assert_eq!(routed.destination, Some(d));
        }
        for d in [
            Destination::ConferenceRoom(theirs.id),
            Destination::Voicemail(t.extension_b.id),
        ] {
            assert!(
                matches!(
                    numbers.set_destination(admin, number.id, Some(d)).await,
                    Err(StoreError::Invalid(_))
                ),
                "{d:?} is another customer's"
            );
        }
        // A rule: closed, the room; open, the box.
        let rule = db
            .store
            .business_hours()
            .create(
                admin,
                t.customer_a.id,
                &BusinessHoursSettings {
                    name: "Office".into(),
                    weekly: Vec::new(),
                    holidays: Vec::new(),
                    open_destination: Some(Destination::Voicemail(t.extension_a.id)),
                    closed_destination: Some(Destination::ConferenceRoom(ours.id)),
                },
            )
            .await
            .expect("rule");
        assert_eq!(
            rule.open_destination,
            Some(Destination::Voicemail(t.extension_a.id))
        );
        assert_eq!(
            rule.closed_destination,
            Some(Destination::ConferenceRoom(ours.id))
        );
        // The room removed: the rule's closed state leads nowhere; the
        // extension removed: the number (its box) neither.
        db.store
            .conference_rooms()
            .delete(admin, ours.id)
            .await
            .expect("room deleted");
        let rule = db
            .store
            .business_hours()
            .get(admin, rule.id)
            .await
            .expect("rule");
        assert_eq!(rule.closed_destination, None);
        assert!(rule.open_destination.is_some());
        db.store
            .extensions()
            .delete(admin, t.extension_a.id)
            .await
            .expect("extension deleted");
        assert_eq!(
            numbers
                .get(&sys, number.id)
                .await
                .expect("number")
                .destination,
            None
        );
        let rule = db
            .store
            .business_hours()
            .get(admin, rule.id)
            .await
            .expect("rule");
        assert_eq!(rule.open_destination, None);
    }

    crate::both_engines!(numbers_and_rules_lead_to_rooms_and_boxes_of_their_own_customer);

    #[test]
    fn each_kind_has_its_column() {
        let all = [
            Destination::Extension(ExtensionId(1)),
            Destination::RingGroup(RingGroupId(2)),
            Destination::BusinessHours(BusinessHoursId(3)),
            Destination::ConferenceRoom(ConferenceRoomId(4)),
            Destination::Voicemail(ExtensionId(5)),
            Destination::IvrMenu(IvrMenuId(6)),
        ];
        for (i, d) in all.into_iter().enumerate() {
            let values = NUMBER.values(Some(d));
            assert_eq!(values.len(), NUMBER.names().len());
            assert_eq!(values.iter().flatten().count(), 1, "{d:?}");
            assert_eq!(values[i], Some(i as i64 + 1), "{d:?}");
        }
        assert_eq!(
            OPEN.values(Some(all[2])),
            vec![None; 5],
            "no rule in a rule"
        );
        assert_eq!(
            OPEN.assignments(4),
            "open_extension_id = $4, open_ring_group_id = $5, open_conference_room_id = $6, \
             open_voicemail_id = $7, open_ivr_menu_id = $8"
        );
        let check = NUMBER.still_theirs(2, 7);
        for (p, table) in [
            (2, "extensions"),
            (3, "ring_groups"),
            (4, "business_hours"),
            (5, "conference_rooms"),
            (6, "extensions"),
            (7, "ivr_menus"),
        ] {
            assert!(check.contains(&format!(
                "(${p} IS NULL OR EXISTS (SELECT 1 FROM {table} WHERE id = ${p}"
            )));
        }
        let json = serde_json::to_string(&all[4]).expect("json");
        assert_eq!(json, r#"{"kind":"voicemail","id":5}"#);
    }
}
