//! Ring groups: a number of the customer's that rings several extensions,
//! all at once (`simultaneous`) or one after another for `member_timeout_s`
//! each (`sequential`), and goes to `no_answer_extension_id` when nobody
//! answers. Members on do-not-disturb are skipped.

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::audit::{self, Event};
use crate::changes::Change;
use crate::error::OnViolation;
use crate::principal::Level;
use crate::rows::{enum_col, text_enum};
use crate::validate::{self, Checker};
use crate::{
    CustomerId, ExtensionId, Millis, Principal, ResellerId, Result, RingGroupId, Store, StoreError,
};

text_enum!(
    /// How members are rung.
    Strategy { Simultaneous = "simultaneous", Sequential = "sequential" }
);

/// Members a group may have.
pub const MAX_MEMBERS: usize = 50;

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RingGroup {
    pub id: RingGroupId,
    pub customer_id: CustomerId,
    pub reseller_id: ResellerId,
    pub number: String,
    pub name: String,
    pub strategy: Strategy,
    pub member_timeout_s: i64,
    /// Members in ringing order.
    pub members: Vec<ExtensionId>,
    pub no_answer_extension_id: Option<ExtensionId>,
    pub created_at: Millis,
    pub version: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RingGroupSettings {
    /// Dialled like an extension number; must not be one.
    pub number: String,
    pub name: String,
    pub strategy: Strategy,
    /// Ringing time per member (sequential) or for the group (simultaneous), 5–300 s.
    #[serde(default = "default_timeout")]
    pub member_timeout_s: i64,
    pub members: Vec<ExtensionId>,
    #[serde(default)]
    pub no_answer_extension_id: Option<ExtensionId>,
}

fn default_timeout() -> i64 {
    20
}

const COLUMNS: &str = "g.id, g.customer_id, c.reseller_id, g.number, g.name, g.strategy, \
    g.member_timeout_s, g.no_answer_extension_id, g.created_at, g.version";
/// $1 reseller scope, $2 customer scope; customers' users see none.
const SCOPED: &str = "FROM ring_groups g JOIN customers c ON c.id = g.customer_id \
    WHERE g.deleted_at IS NULL AND ($1 IS NULL OR c.reseller_id = $1) AND ($2 IS NULL OR g.customer_id = $2)";

fn from_row(row: &AnyRow) -> Result<RingGroup, sqlx::Error> {
    Ok(RingGroup {
        id: RingGroupId(row.try_get("id")?),
        customer_id: CustomerId(row.try_get("customer_id")?),
        reseller_id: ResellerId(row.try_get("reseller_id")?),
        number: row.try_get("number")?,
        name: row.try_get("name")?,
        strategy: enum_col(row, "strategy", Strategy::parse)?,
        member_timeout_s: row.try_get("member_timeout_s")?,
        members: Vec::new(),
        no_answer_extension_id: row
            .try_get::<Option<i64>, _>("no_answer_extension_id")?
            .map(ExtensionId),
        created_at: row.try_get("created_at")?,
        version: row.try_get("version")?,
    })
}

pub struct RingGroups<'s>(pub(crate) &'s Store);

impl RingGroups<'_> {
    pub async fn list(&self, by: &Principal, customer: CustomerId) -> Result<Vec<RingGroup>> {
        by.may_read(Level::Customer)?;
        let customer = self.0.customers().get(by, customer).await?;
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} {SCOPED} AND g.customer_id = $3 ORDER BY g.id"
        ))
        .bind(by.scope.reseller_param())
        .bind(by.scope.customer_param())
        .bind(customer.id.0)
        .fetch_all(self.0.pool())
        .await?;
        let mut groups = rows.iter().map(from_row).collect::<Result<Vec<_>, _>>()?;
        for g in &mut groups {
            g.members = self.members(g.id).await?;
        }
        Ok(groups)
    }

    pub async fn get(&self, by: &Principal, id: RingGroupId) -> Result<RingGroup> {
        by.may_read(Level::Customer)?;
        let row = sqlx::query(&format!("SELECT {COLUMNS} {SCOPED} AND g.id = $3"))
            .bind(by.scope.reseller_param())
            .bind(by.scope.customer_param())
            .bind(id.0)
            .fetch_optional(self.0.pool())
            .await?
            .ok_or(StoreError::NotFound)?;
        let mut group = from_row(&row)?;
        group.members = self.members(group.id).await?;
        Ok(group)
    }

    async fn members(&self, id: RingGroupId) -> Result<Vec<ExtensionId>> {
        let rows = sqlx::query(
            "SELECT extension_id FROM ring_group_members WHERE ring_group_id = $1 ORDER BY position",
        )
        .bind(id.0)
        .fetch_all(self.0.pool())
        .await?;
        rows.iter()
            .map(|r| Ok(ExtensionId(r.try_get("extension_id")?)))
            .collect()
    }

    /// Checks the settings against the customer's extensions.
    async fn check(
        &self,
        by: &Principal,
        customer: CustomerId,
        s: &RingGroupSettings,
    ) -> Result<()> {
        let mut check = Checker::new();
        check
            .check(
                validate::is_digits(&s.number, 10),
                "number",
                "must be 1 to 10 digits",
            )
            .text("name", &s.name, 100)
            .check(
                (5..=300).contains(&s.member_timeout_s),
                "member_timeout_s",
                "must be 5 to 300 seconds",
            )
            .check(
                !s.members.is_empty() && s.members.len() <= MAX_MEMBERS,
                "members",
                "must list 1 to 50 extensions",
            );
        for (i, m) in s.members.iter().enumerate() {
            check.check(
                !s.members[..i].contains(m),
                "members",
                "lists an extension twice",
            );
        }
        check.finish()?;
        let extensions = self.0.extensions().list(by, customer).await?;
        let known = |id: &ExtensionId| extensions.iter().any(|e| e.id == *id);
        let mut check = Checker::new();
        check
            .check(
                s.members.iter().all(known),
                "members",
                "must be extensions of this customer",
            )
            .check(
                s.no_answer_extension_id.as_ref().is_none_or(known),
                "no_answer_extension_id",
                "must be an extension of this customer",
            )
            .check(
                extensions.iter().all(|e| e.number != s.number),
                "number",
                "is an extension's number",
            )
            .check(
                !crate::conference_rooms::has_number(self.0, customer, &s.number).await?,
                "number",
                "is a conference room's number",
            );
        check.finish()
    }

    pub async fn create(
        &self,
        by: &Principal,
        customer: CustomerId,
        s: &RingGroupSettings,
    ) -> Result<RingGroup> {
        by.may_write(Level::Customer)?;
        let customer = self.0.customers().get(by, customer).await?;
        self.check(by, customer.id, s).await?;
        let mut tx = self.0.begin().await?;
        let row = sqlx::query(
            "INSERT INTO ring_groups (customer_id, number, name, strategy, member_timeout_s, \
             no_answer_extension_id, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(customer.id.0)
        .bind(&s.number)
        .bind(&s.name)
        .bind(s.strategy.as_str())
        .bind(s.member_timeout_s)
        .bind(s.no_answer_extension_id.map(|e| e.0))
        .bind(crate::now_ms())
        .fetch_one(tx.conn())
        .await
        .map_err(|e| {
            OnViolation {
                unique: "a ring group with this number exists",
                foreign_key: "an extension named is not this customer's",
            }
            .map(e)
        })?;
        let id = RingGroupId(row.try_get("id")?);
        write_members(&mut tx, id, customer.id, &s.members).await?;
        audit::record(
            &mut tx,
            by,
            Event {
                action: "create",
                object_type: "ring_group",
                object_id: Some(id.0),
                reseller: Some(customer.reseller_id),
                customer: Some(customer.id),
                details: serde_json::to_value(s).unwrap_or_default(),
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
        id: RingGroupId,
        if_version: Option<i64>,
        s: &RingGroupSettings,
    ) -> Result<RingGroup> {
        by.may_write(Level::Customer)?;
        let current = self.get(by, id).await?;
        self.check(by, current.customer_id, s).await?;
        let mut tx = self.0.begin().await?;
        let done = sqlx::query(
            "UPDATE ring_groups SET number = $1, name = $2, strategy = $3, member_timeout_s = $4, \
             no_answer_extension_id = $5, version = version + 1 WHERE id = $6 AND version = $7 AND deleted_at IS NULL",
        )
        .bind(&s.number)
        .bind(&s.name)
        .bind(s.strategy.as_str())
        .bind(s.member_timeout_s)
        .bind(s.no_answer_extension_id.map(|e| e.0))
        .bind(id.0)
        .bind(if_version.unwrap_or(current.version))
        .execute(tx.conn())
        .await
        .map_err(|e| {
            OnViolation {
                unique: "a ring group with this number exists",
                foreign_key: "an extension named is not this customer's",
            }
            .map(e)
        })?;
        if done.rows_affected() == 0 {
            return Err(StoreError::VersionMismatch);
        }
        sqlx::query("DELETE FROM ring_group_members WHERE ring_group_id = $1")
            .bind(id.0)
            .execute(tx.conn())
            .await?;
        write_members(&mut tx, id, current.customer_id, &s.members).await?;
        audit::record(
            &mut tx,
            by,
            Event {
                action: "update",
                object_type: "ring_group",
                object_id: Some(id.0),
                reseller: Some(current.reseller_id),
                customer: Some(current.customer_id),
                details: serde_json::to_value(s).unwrap_or_default(),
            },
        )
        .await?;
        tx.changed(Change::Customer {
            customer: current.customer_id,
        });
        tx.commit().await?;
        self.get(by, id).await
    }

    /// Removes a group; numbers routed to it lose their destination.
    pub async fn delete(&self, by: &Principal, id: RingGroupId) -> Result<()> {
        by.may_write(Level::Customer)?;
        let current = self.get(by, id).await?;
        let mut tx = self.0.begin().await?;
        crate::destinations::forget(&mut tx, crate::destinations::Removed::RingGroup(id)).await?;
        sqlx::query("DELETE FROM ring_group_members WHERE ring_group_id = $1")
            .bind(id.0)
            .execute(tx.conn())
            .await?;
        sqlx::query("UPDATE ring_groups SET deleted_at = $1, version = version + 1 WHERE id = $2")
            .bind(crate::now_ms())
            .bind(id.0)
            .execute(tx.conn())
            .await?;
        audit::record(
            &mut tx,
            by,
            Event {
                action: "delete",
                object_type: "ring_group",
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

async fn write_members(
    tx: &mut crate::db::Tx<'_>,
    id: RingGroupId,
    customer: CustomerId,
    members: &[ExtensionId],
) -> Result<()> {
    for (position, m) in members.iter().enumerate() {
        sqlx::query(
            "INSERT INTO ring_group_members (ring_group_id, customer_id, extension_id, position) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(id.0)
        .bind(customer.0)
        .bind(m.0)
        .bind(position as i64)
        .execute(tx.conn())
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{TestDb, TwoTenants};

    fn settings(number: &str, members: Vec<ExtensionId>) -> RingGroupSettings {
        RingGroupSettings {
            number: number.to_owned(),
            name: "Sales".to_owned(),
            strategy: Strategy::Sequential,
            member_timeout_s: 15,
            members,
            no_answer_extension_id: None,
        }
    }

    async fn scoped_validated_and_kept_in_order(db: TestDb) {
        let t = TwoTenants::create(&db.store).await;
        let groups = db.store.ring_groups();
        let sys = Principal::system();
        let e2 = db
            .store
            .extensions()
            .create(
                &sys,
                t.customer_a.id,
                &serde_json::from_value(serde_json::json!({"number": "102", "display_name": ""}))
                    .unwrap(),
            )
            .await
            .unwrap();
        let g = groups
            .create(
                &t.customer_a_admin,
                t.customer_a.id,
                &settings("200", vec![e2.id, t.extension_a.id]),
            )
            .await
            .unwrap();
        assert_eq!(g.members, vec![e2.id, t.extension_a.id]);
        assert_eq!(
            groups
                .list(&t.reseller_x_admin, t.customer_a.id)
                .await
                .unwrap()
                .len(),
            1
        );
        // Other tenants: not found; customer users: not theirs to see.
        assert!(matches!(
            groups.get(&t.customer_b_admin, g.id).await,
            Err(StoreError::NotFound)
        ));
        assert!(matches!(
            groups.list(&t.reseller_y_admin, t.customer_a.id).await,
            Err(StoreError::NotFound)
        ));
        assert!(matches!(
            groups.get(&t.customer_a_user, g.id).await,
            Err(StoreError::Forbidden(_))
        ));
        // Another customer's extension cannot be a member.
        assert!(matches!(
            groups
                .create(
                    &t.customer_a_admin,
                    t.customer_a.id,
                    &settings("201", vec![t.extension_b.id])
                )
                .await,
            Err(StoreError::Invalid(_))
        ));
        for bad in [
            settings("101", vec![e2.id]),
            settings("2x", vec![e2.id]),
            settings("202", vec![]),
            settings("203", vec![e2.id, e2.id]),
            RingGroupSettings {
                member_timeout_s: 2,
                ..settings("204", vec![e2.id])
            },
        ] {
            assert!(
                matches!(
                    groups
                        .create(&t.customer_a_admin, t.customer_a.id, &bad)
                        .await,
                    Err(StoreError::Invalid(_))
                ),
                "{bad:?}"
            );
        }
        assert!(matches!(
            groups
                .create(
                    &t.customer_a_admin,
                    t.customer_a.id,
                    &settings("200", vec![e2.id])
                )
                .await,
            Err(StoreError::Conflict(_))
        ));
        let changed = groups
            .update(
                &t.customer_a_admin,
                g.id,
                Some(g.version),
                &RingGroupSettings {
                    strategy: Strategy::Simultaneous,
                    no_answer_extension_id: Some(e2.id),
                    ..settings("200", vec![t.extension_a.id])
                },
            )
            .await
            .unwrap();
        assert_eq!(changed.members, vec![t.extension_a.id]);
        assert!(matches!(
            groups
                .update(
                    &t.customer_a_admin,
                    g.id,
                    Some(g.version),
                    &settings("200", vec![e2.id])
                )
                .await,
            Err(StoreError::VersionMismatch)
        ));
        // An extension cannot take a ring group's number either.
        assert!(matches!(
            db.store
                .extensions()
                .create(
                    &sys,
                    t.customer_a.id,
                    &serde_json::from_value(
                        serde_json::json!({"number": "200", "display_name": ""})
                    )
                    .unwrap()
                )
                .await,
            Err(StoreError::Conflict(_))
        ));
        // The directory carries it to the proxy.
        let dir = db
            .store
            .directory()
            .customer(&sys, t.customer_a.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(dir.ring_groups.len(), 1);
        assert_eq!(dir.ring_groups[0].members, vec![t.extension_a.id]);
        groups.delete(&t.customer_a_admin, g.id).await.unwrap();
        assert!(matches!(
            groups.get(&t.customer_a_admin, g.id).await,
            Err(StoreError::NotFound)
        ));
        let dir = db
            .store
            .directory()
            .customer(&sys, t.customer_a.id)
            .await
            .unwrap()
            .unwrap();
        assert!(dir.ring_groups.is_empty());
    }

    crate::both_engines!(scoped_validated_and_kept_in_order);
}
