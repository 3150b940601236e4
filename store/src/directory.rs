//! What the SIP proxy holds in memory: every customer's SIP domain, live
//! extensions and device credentials (HA1s only). Loaded whole at start and
//! per customer when [`crate::changes::Change::Customer`] says it changed.

use serde::Serialize;
use sqlx::Row;

use crate::principal::Level;
use crate::resellers::Status;
use crate::rows::{enum_col, flag};
use crate::{CustomerId, DeviceId, ExtensionId, Principal, ResellerId, Result, Store};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CustomerDirectory {
    pub customer_id: CustomerId,
    pub reseller_id: ResellerId,
    pub sip_domain: String,
    /// False when the customer or its reseller is suspended or closed.
    pub active: bool,
    /// Server/User-Agent header for this customer's phones; None sends none.
    pub server_header: Option<String>,
    pub extensions: Vec<DirectoryExtension>,
    pub devices: Vec<DirectoryDevice>,
    pub ring_groups: Vec<DirectoryRingGroup>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DirectoryRingGroup {
    pub id: crate::RingGroupId,
    pub number: String,
    pub strategy: crate::ring_groups::Strategy,
    pub member_timeout_s: i64,
    /// In ringing order.
    pub members: Vec<ExtensionId>,
    pub no_answer_extension: Option<ExtensionId>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DirectoryExtension {
    pub id: ExtensionId,
    pub number: String,
    pub display_name: String,
    pub dnd: bool,
    /// Enabled forwards only.
    pub forwards: Vec<crate::forwards::Forward>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DirectoryDevice {
    pub id: DeviceId,
    pub extension_id: ExtensionId,
    pub sip_user: String,
    /// The realm the HA1s were computed for.
    pub ha1_realm: String,
    pub ha1_md5: String,
    pub ha1_sha256: String,
}

pub struct Directory<'s>(pub(crate) &'s Store);

impl Directory<'_> {
    /// Every customer's directory (platform-internal: operator scope only).
    pub async fn all(&self, by: &Principal) -> Result<Vec<CustomerDirectory>> {
        self.load(by, None).await
    }

    /// One customer's directory, or None if the customer no longer exists.
    pub async fn customer(
        &self,
        by: &Principal,
        id: CustomerId,
    ) -> Result<Option<CustomerDirectory>> {
        Ok(self.load(by, Some(id)).await?.into_iter().next())
    }

    async fn load(
        &self,
        by: &Principal,
        only: Option<CustomerId>,
    ) -> Result<Vec<CustomerDirectory>> {
        by.may_read(Level::Operator)?;
        let only = only.map(|c| c.0);
        let pool = self.0.pool();
        let customers = sqlx::query(
            "SELECT c.id, c.reseller_id, c.sip_domain, c.status, r.status AS reseller_status, r.sip_server_header \
             FROM customers c JOIN resellers r ON r.id = c.reseller_id \
             WHERE ($1 IS NULL OR c.id = $1) ORDER BY c.id",
        )
        .bind(only)
        .fetch_all(pool)
        .await?;
        let mut out = Vec::with_capacity(customers.len());
        for row in &customers {
            let status = enum_col(row, "status", Status::parse)?;
            let reseller_status = enum_col(row, "reseller_status", Status::parse)?;
            out.push(CustomerDirectory {
                customer_id: CustomerId(row.try_get("id")?),
                reseller_id: ResellerId(row.try_get("reseller_id")?),
                sip_domain: row.try_get("sip_domain")?,
                active: status == Status::Active && reseller_status == Status::Active,
                server_header: row.try_get("sip_server_header")?,
                extensions: Vec::new(),
                devices: Vec::new(),
                ring_groups: Vec::new(),
            });
        }
        let index = |out: &[CustomerDirectory], id: i64| {
            out.binary_search_by_key(&id, |c| c.customer_id.0).ok()
        };
        let extensions = sqlx::query(
            "SELECT id, customer_id, number, display_name, dnd FROM extensions \
             WHERE deleted_at IS NULL AND ($1 IS NULL OR customer_id = $1) ORDER BY id",
        )
        .bind(only)
        .fetch_all(pool)
        .await?;
        for row in &extensions {
            if let Some(i) = index(&out, row.try_get("customer_id")?) {
                out[i].extensions.push(DirectoryExtension {
                    id: ExtensionId(row.try_get("id")?),
                    number: row.try_get("number")?,
                    display_name: row.try_get("display_name")?,
                    dnd: flag(row, "dnd")?,
                    forwards: Vec::new(),
                });
            }
        }
        let groups = sqlx::query(
            "SELECT id, customer_id, number, strategy, member_timeout_s, no_answer_extension_id \
             FROM ring_groups WHERE deleted_at IS NULL AND ($1 IS NULL OR customer_id = $1) ORDER BY id",
        )
        .bind(only)
        .fetch_all(pool)
        .await?;
        for row in &groups {
            if let Some(i) = index(&out, row.try_get("customer_id")?) {
                out[i].ring_groups.push(DirectoryRingGroup {
                    id: crate::RingGroupId(row.try_get("id")?),
                    number: row.try_get("number")?,
                    strategy: enum_col(row, "strategy", crate::ring_groups::Strategy::parse)?,
                    member_timeout_s: row.try_get("member_timeout_s")?,
                    members: Vec::new(),
                    no_answer_extension: row
                        .try_get::<Option<i64>, _>("no_answer_extension_id")?
                        .map(ExtensionId),
                });
            }
        }
        let members = sqlx::query(
            "SELECT m.customer_id, m.ring_group_id, m.extension_id FROM ring_group_members m \
             JOIN ring_groups g ON g.id = m.ring_group_id \
             WHERE g.deleted_at IS NULL AND ($1 IS NULL OR m.customer_id = $1) \
             ORDER BY m.ring_group_id, m.position",
        )
        .bind(only)
        .fetch_all(pool)
        .await?;
        for row in &members {
            let Some(i) = index(&out, row.try_get("customer_id")?) else {
                continue;
            };
            let group: i64 = row.try_get("ring_group_id")?;
            if let Some(g) = out[i].ring_groups.iter_mut().find(|g| g.id.0 == group) {
                g.members.push(ExtensionId(row.try_get("extension_id")?));
            }
        }
        let forwards = sqlx::query(
            "SELECT f.customer_id, f.extension_id, f.condition, f.target, f.timeout_s \
             FROM call_forwards f JOIN extensions e ON e.id = f.extension_id \
             WHERE f.enabled = 1 AND e.deleted_at IS NULL AND ($1 IS NULL OR f.customer_id = $1) \
             ORDER BY f.extension_id, f.condition",
        )
        .bind(only)
        .fetch_all(pool)
        .await?;
        for row in &forwards {
            let Some(i) = index(&out, row.try_get("customer_id")?) else {
                continue;
            };
            let extension = ExtensionId(row.try_get("extension_id")?);
            if let Some(ext) = out[i].extensions.iter_mut().find(|e| e.id == extension) {
                ext.forwards.push(crate::forwards::Forward {
                    condition: enum_col(
                        row,
                        "condition",
                        crate::forwards::ForwardCondition::parse,
                    )?,
                    target: row.try_get("target")?,
                    timeout_s: row.try_get("timeout_s")?,
                    enabled: true,
                });
            }
        }
        let devices = sqlx::query(
            "SELECT d.id, d.customer_id, d.extension_id, d.sip_user, d.ha1_realm, d.ha1_md5, d.ha1_sha256 \
             FROM devices d JOIN extensions e ON e.id = d.extension_id \
             WHERE e.deleted_at IS NULL AND ($1 IS NULL OR d.customer_id = $1) ORDER BY d.id",
        )
        .bind(only)
        .fetch_all(pool)
        .await?;
        for row in &devices {
            if let Some(i) = index(&out, row.try_get("customer_id")?) {
                out[i].devices.push(DirectoryDevice {
                    id: DeviceId(row.try_get("id")?),
                    extension_id: ExtensionId(row.try_get("extension_id")?),
                    sip_user: row.try_get("sip_user")?,
                    ha1_realm: row.try_get("ha1_realm")?,
                    ha1_md5: row.try_get("ha1_md5")?,
                    ha1_sha256: row.try_get("ha1_sha256")?,
                });
            }
        }
        Ok(out)
    }
}
