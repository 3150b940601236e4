//! Devices: the phones and softphones of an extension, each with SIP
//! credentials of its own. The password is kept as digest HA1s for the
//! customer's realm and, encrypted, for provisioning (see [`crate::secrets`]).

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::audit::{self, Event};
use crate::changes::Change;
use crate::db::Tx;
use crate::error::OnViolation;
use crate::principal::Level;
use crate::secrets::{generate_password, DigestHa1};
use crate::validate::{self, Checker};
use crate::{
    CustomerId, DeviceId, ExtensionId, Millis, Principal, ResellerId, Result, Store, StoreError,
};

/// Length of generated SIP passwords (about 117 bits).
pub const SECRET_LEN: usize = 20;

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Device {
    pub id: DeviceId,
    pub customer_id: CustomerId,
    pub reseller_id: ResellerId,
    pub extension_id: ExtensionId,
    pub name: String,
    pub sip_user: String,
    /// The customer's SIP domain: also the digest realm.
    pub sip_domain: String,
    pub created_at: Millis,
    pub version: i64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewDevice {
    pub name: String,
    /// Defaults to the extension number, or `<number>-<n>` when that is taken.
    pub sip_user: Option<String>,
    /// Defaults to a generated password; given ones need 12 characters or more.
    pub secret: Option<String>,
}

/// A device's SIP credentials, as a phone is provisioned with them.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Credentials {
    pub sip_user: String,
    pub sip_domain: String,
    pub password: String,
}

const COLUMNS: &str = "d.id, d.customer_id, c.reseller_id, d.extension_id, d.name, d.sip_user, \
    c.sip_domain, d.created_at, d.version";
const SCOPED: &str = "FROM devices d JOIN customers c ON c.id = d.customer_id \
    WHERE ($1 IS NULL OR c.reseller_id = $1) AND ($2 IS NULL OR d.customer_id = $2) AND ($3 IS NULL OR d.extension_id = $3)";

fn from_row(row: &AnyRow) -> Result<Device, sqlx::Error> {
    Ok(Device {
        id: DeviceId(row.try_get("id")?),
        customer_id: CustomerId(row.try_get("customer_id")?),
        reseller_id: ResellerId(row.try_get("reseller_id")?),
        extension_id: ExtensionId(row.try_get("extension_id")?),
        name: row.try_get("name")?,
        sip_user: row.try_get("sip_user")?,
        sip_domain: row.try_get("sip_domain")?,
        created_at: row.try_get("created_at")?,
        version: row.try_get("version")?,
    })
}

pub struct Devices<'s>(pub(crate) &'s Store);

impl Devices<'_> {
    /// The devices of one extension.
    pub async fn list(&self, by: &Principal, extension: ExtensionId) -> Result<Vec<Device>> {
        // A deleted extension has no devices to list: it is gone (404), not empty.
        self.0.extensions().get_live(by, extension).await?;
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} {SCOPED} AND d.extension_id = $4 ORDER BY d.id"
        ))
        .bind(by.scope.reseller_param())
        .bind(by.scope.customer_param())
        .bind(by.scope.extension_param())
        .bind(extension.0)
        .fetch_all(self.0.pool())
        .await?;
        Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
    }

    /// All devices of a customer.
    pub async fn list_for_customer(
        &self,
        by: &Principal,
        customer: CustomerId,
    ) -> Result<Vec<Device>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} {SCOPED} AND d.customer_id = $4 ORDER BY d.id"
        ))
        .bind(by.scope.reseller_param())
        .bind(by.scope.customer_param())
        .bind(by.scope.extension_param())
        .bind(customer.0)
        .fetch_all(self.0.pool())
        .await?;
        Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
    }

    pub async fn get(&self, by: &Principal, id: DeviceId) -> Result<Device> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} {SCOPED} AND d.id = $4"))
            .bind(by.scope.reseller_param())
            .bind(by.scope.customer_param())
            .bind(by.scope.extension_param())
            .bind(id.0)
            .fetch_optional(self.0.pool())
            .await?
            .ok_or(StoreError::NotFound)?;
        Ok(from_row(&row)?)
    }

    /// Adds a device to a live extension; returns it with its credentials,
    /// which are shown once.
    pub async fn create(
        &self,
        by: &Principal,
        extension: ExtensionId,
        new: &NewDevice,
    ) -> Result<(Device, Credentials)> {
        by.may_write(Level::Customer)?;
        let ext = self.0.extensions().get_live(by, extension).await?;
        let customer = self.0.customers().get(by, ext.customer_id).await?;
        let secret = new
            .secret
            .clone()
            .unwrap_or_else(|| generate_password(SECRET_LEN));
        let mut check = Checker::new();
        check.text("name", &new.name, 100);
        if let Some(user) = &new.sip_user {
            check.check(
                validate::is_sip_user(user),
                "sip_user",
                "must be 1 to 64 letters, digits, '.', '_' or '-'",
            );
        }
        check_secret(&mut check, &secret);
        check.finish()?;
        let mut tx = self.0.begin().await?;
        let sip_user = match &new.sip_user {
            Some(user) => user.clone(),
            None => free_sip_user(&mut tx, ext.customer_id, &ext.number).await?,
        };
        let ha1 = DigestHa1::compute(&sip_user, &customer.sip_domain, &secret);
        let row = sqlx::query(
            "INSERT INTO devices (customer_id, extension_id, name, sip_user, ha1_realm, ha1_md5, ha1_sha256, \
             secret_enc, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
        )
        .bind(ext.customer_id.0)
        .bind(extension.0)
        .bind(&new.name)
        .bind(&sip_user)
        .bind(&customer.sip_domain)
        .bind(&ha1.md5)
        .bind(&ha1.sha256)
        .bind(self.0.secrets().encrypt(&secret))
        .bind(crate::now_ms())
        .fetch_one(tx.conn())
        .await
        .map_err(|e| {
            OnViolation {
                unique: "the SIP user name is already in use in this customer",
                foreign_key: "the extension does not belong to the customer",
            }
            .map(e)
        })?;
        let id = DeviceId(row.try_get("id")?);
        audit::record(
            &mut tx,
            by,
            Event {
                action: "create",
                object_type: "device",
                object_id: Some(id.0),
                reseller: Some(customer.reseller_id),
                customer: Some(customer.id),
                details: serde_json::json!({ "name": new.name, "sip_user": sip_user, "extension_id": extension }),
            },
        )
        .await?;
        tx.changed(Change::Customer {
            customer: customer.id,
        });
        tx.commit().await?;
        let device = self.get(by, id).await?;
        let credentials = Credentials {
            sip_user,
            sip_domain: customer.sip_domain,
            password: secret,
        };
        Ok((device, credentials))
    }

    /// Replaces a device's SIP password with a fresh one (or `secret`) and
    /// returns it, shown once. A customer user may reset its own devices.
    pub async fn reset_secret(
        &self,
        by: &Principal,
        id: DeviceId,
        secret: Option<&str>,
    ) -> Result<Credentials> {
        let device = self.get(by, id).await?;
        if by.read_only {
            return Err(StoreError::Forbidden("this credential is read-only"));
        }
        let secret = secret
            .map(str::to_owned)
            .unwrap_or_else(|| generate_password(SECRET_LEN));
        let mut check = Checker::new();
        check_secret(&mut check, &secret);
        check.finish()?;
        let ha1 = DigestHa1::compute(&device.sip_user, &device.sip_domain, &secret);
        let mut tx = self.0.begin().await?;
        sqlx::query(
            "UPDATE devices SET ha1_realm = $1, ha1_md5 = $2, ha1_sha256 = $3, secret_enc = $4, \
             version = version + 1 WHERE id = $5",
        )
        .bind(&device.sip_domain)
        .bind(&ha1.md5)
        .bind(&ha1.sha256)
        .bind(self.0.secrets().encrypt(&secret))
        .bind(id.0)
        .execute(tx.conn())
        .await?;
        audit::record(
            &mut tx,
            by,
            Event {
                action: "reset_secret",
                object_type: "device",
                object_id: Some(id.0),
                reseller: Some(device.reseller_id),
                customer: Some(device.customer_id),
                details: serde_json::json!({ "sip_user": device.sip_user }),
            },
        )
        .await?;
        tx.changed(Change::Customer {
            customer: device.customer_id,
        });
        tx.commit().await?;
        Ok(Credentials {
            sip_user: device.sip_user,
            sip_domain: device.sip_domain,
            password: secret,
        })
    }

    /// The device's current credentials, for provisioning a phone.
    pub async fn credentials(&self, by: &Principal, id: DeviceId) -> Result<Credentials> {
        let device = self.get(by, id).await?;
        let row = sqlx::query("SELECT secret_enc FROM devices WHERE id = $1")
            .bind(id.0)
            .fetch_optional(self.0.pool())
            .await?
            .ok_or(StoreError::NotFound)?;
        let password = self
            .0
            .secrets()
            .decrypt(&row.try_get::<String, _>("secret_enc")?)?;
        Ok(Credentials {
            sip_user: device.sip_user,
            sip_domain: device.sip_domain,
            password,
        })
    }

    pub async fn delete(&self, by: &Principal, id: DeviceId) -> Result<()> {
        by.may_write(Level::Customer)?;
        let device = self.get(by, id).await?;
        let mut tx = self.0.begin().await?;
        sqlx::query("DELETE FROM devices WHERE id = $1")
            .bind(id.0)
            .execute(tx.conn())
            .await?;
        audit::record(
            &mut tx,
            by,
            Event {
                action: "delete",
                object_type: "device",
                object_id: Some(id.0),
                reseller: Some(device.reseller_id),
                customer: Some(device.customer_id),
                details: serde_json::json!({ "sip_user": device.sip_user }),
            },
        )
        .await?;
        tx.changed(Change::Customer {
            customer: device.customer_id,
        });
        tx.commit().await
    }
}

fn check_secret(check: &mut Checker, secret: &str) {
    check.check(
        secret.len() >= 12 && secret.len() <= 128 && secret.bytes().all(|b| b.is_ascii_graphic()),
        "secret",
        "must be 12 to 128 printable ASCII characters without spaces",
    );
}

/// The extension number if no device of the customer uses it as SIP user yet,
/// else the first free `<number>-<n>`.
async fn free_sip_user(tx: &mut Tx<'_>, customer: CustomerId, number: &str) -> Result<String> {
    let taken: Vec<String> = sqlx::query("SELECT sip_user FROM devices WHERE customer_id = $1 AND (sip_user = $2 OR sip_user LIKE $3)")
        .bind(customer.0)
        .bind(number)
        .bind(format!("{number}-%"))
        .fetch_all(tx.conn())
        .await?
        .iter()
        .map(|r| r.try_get("sip_user"))
        .collect::<Result<_, _>>()?;
    let free = std::iter::once(number.to_owned())
        .chain((2..).map(|n| format!("{number}-{n}")))
        .find(|candidate| !taken.contains(candidate));
    Ok(free.unwrap_or_else(|| number.to_owned()))
}
