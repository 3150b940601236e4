//! The platform operator: its name and the host names of its own console.
//! There is exactly one operator per installation.

use serde::Serialize;
use sqlx::Row;

use crate::audit::{self, Event};
use crate::principal::Level;
use crate::validate::{self, Checker};
use crate::{Millis, Principal, Result, Store};

#[derive(Debug, Clone, Serialize)]
pub struct Operator {
    pub name: String,
    pub console_hosts: Vec<String>,
    pub created_at: Millis,
}

pub struct Operators<'s>(pub(crate) &'s Store);

impl Operators<'_> {
    /// The operator, if the installation has been set up.
    pub async fn get(&self, by: &Principal) -> Result<Option<Operator>> {
        by.may_read(Level::Operator)?;
        let Some(row) = sqlx::query("SELECT name, created_at FROM operator WHERE id = 1")
            .fetch_optional(self.0.pool())
            .await?
        else {
            return Ok(None);
        };
        let hosts =
            sqlx::query("SELECT host FROM console_hosts WHERE reseller_id IS NULL ORDER BY host")
                .fetch_all(self.0.pool())
                .await?
                .iter()
                .map(|r| r.try_get::<String, _>("host"))
                .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(Operator {
            name: row.try_get("name")?,
            console_hosts: hosts,
            created_at: row.try_get("created_at")?,
        }))
    }

    /// Names the operator (first set-up) or renames it, and sets its console hosts.
    pub async fn set(&self, by: &Principal, name: &str, console_hosts: &[String]) -> Result<()> {
        by.may_write(Level::Operator)?;
        let mut check = Checker::new();
        check.text("name", name, 200);
        for host in console_hosts {
            check.check(
                validate::is_host(host),
                "console_hosts",
                "must be lower-case host names",
            );
        }
        check.finish()?;
        let mut tx = self.0.begin().await?;
        sqlx::query(
            "INSERT INTO operator (id, name, created_at) VALUES (1, $1, $2) \
             ON CONFLICT (id) DO UPDATE SET name = excluded.name",
        )
        .bind(name)
        .bind(crate::now_ms())
        .execute(tx.conn())
        .await?;
        sqlx::query("DELETE FROM console_hosts WHERE reseller_id IS NULL")
            .execute(tx.conn())
            .await?;
        for host in console_hosts {
            sqlx::query("INSERT INTO console_hosts (host, reseller_id) VALUES ($1, NULL)")
                .bind(host)
                .execute(tx.conn())
                .await
                .map_err(|e| {
                    crate::error::OnViolation {
                        unique: "a console host name is already in use",
                        foreign_key: "",
                    }
                    .map(e)
                })?;
        }
        audit::record(
            &mut tx,
            by,
            Event {
                action: "update",
                object_type: "operator",
                object_id: None,
                reseller: None,
                customer: None,
                details: serde_json::json!({ "name": name, "console_hosts": console_hosts }),
            },
        )
        .await?;
        // Every node's console shows the operator's name and hosts from a cache.
        tx.changed(crate::changes::Change::Resync);
        tx.commit().await
    }
}

/// Whose console a host name shows: the operator's, a reseller's, or nobody's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostOwner {
    Operator,
    Reseller(crate::ResellerId),
}

impl Store {
    /// Finds whose brand a console host name shows. Public: used before login.
    pub async fn console_host_owner(&self, host: &str) -> Result<Option<HostOwner>> {
        let host = host.to_ascii_lowercase();
        let row = sqlx::query("SELECT reseller_id FROM console_hosts WHERE host = $1")
            .bind(&host)
            .fetch_optional(self.pool())
            .await?;
        Ok(match row {
            None => None,
            Some(row) => Some(match row.try_get::<Option<i64>, _>("reseller_id")? {
                None => HostOwner::Operator,
                Some(id) => HostOwner::Reseller(crate::ResellerId(id)),
            }),
        })
    }
}
