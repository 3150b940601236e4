//! Resellers: the operator's direct customers, each selling the platform under
//! its own brand to customers of its own.

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::audit::{self, Event};
use crate::changes::Change;
use crate::db::Tx;
use crate::error::OnViolation;
use crate::principal::Level;
use crate::rows::{enum_col, text_enum};
use crate::validate::{self, Checker};
use crate::{Millis, PlanId, Principal, ResellerId, Result, Store, StoreError};

text_enum!(
    /// Life cycle of a reseller or a customer.
    Status { Active = "active", Suspended = "suspended", Closed = "closed" }
);

/// What a reseller's customers see instead of the operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Brand {
    pub product_name: String,
    pub primary_color: String,
    pub accent_color: String,
    pub support_phone: Option<String>,
    pub support_email: Option<String>,
    pub support_url: Option<String>,
    pub login_text: Option<String>,
    pub email_sender_name: Option<String>,
    /// Server/User-Agent header value the reseller's phones see; None sends none.
    pub sip_server_header: Option<String>,
}

impl Brand {
    /// A plain brand carrying only a product name.
    pub fn named(product_name: &str) -> Brand {
        Brand {
            product_name: product_name.to_owned(),
            primary_color: "#1d4ed8".to_owned(),
            accent_color: "#0f766e".to_owned(),
            support_phone: None,
            support_email: None,
            support_url: None,
            login_text: None,
            email_sender_name: None,
            sip_server_header: None,
        }
    }

    fn check(&self, check: &mut Checker) {
        check
            .text("product_name", &self.product_name, 100)
            .check(
                validate::is_color(&self.primary_color),
                "primary_color",
                "must be a colour like #1d4ed8",
            )
            .check(
                validate::is_color(&self.accent_color),
                "accent_color",
                "must be a colour like #0f766e",
            )
            .optional_text("support_phone", self.support_phone.as_deref(), 50)
            .optional_text("support_email", self.support_email.as_deref(), 254)
            .optional_text("support_url", self.support_url.as_deref(), 500)
            .optional_text("login_text", self.login_text.as_deref(), 1000)
            .optional_text("email_sender_name", self.email_sender_name.as_deref(), 100)
            .optional_text("sip_server_header", self.sip_server_header.as_deref(), 100);
        if let Some(url) = &self.support_url {
            check.check(
                url.starts_with("https://") || url.starts_with("http://"),
                "support_url",
                "must be an http(s) URL",
            );
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Reseller {
    pub id: ResellerId,
    pub name: String,
    pub status: Status,
    pub time_zone: String,
    pub currency: String,
    /// VAT in basis points: 1900 = 19 %.
    pub vat_rate_bp: i64,
    pub sip_domain_suffix: String,
    pub default_language: String,
    pub wholesale_plan_id: Option<PlanId>,
    pub brand: Brand,
    pub console_hosts: Vec<String>,
    pub created_at: Millis,
    pub closed_at: Option<Millis>,
    pub version: i64,
}

/// The settings of a reseller, as created or replaced.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ResellerSettings {
    pub name: String,
    pub time_zone: String,
    pub currency: String,
    pub vat_rate_bp: i64,
    pub sip_domain_suffix: String,
    pub default_language: String,
    pub brand: Brand,
    pub console_hosts: Vec<String>,
}

impl ResellerSettings {
    fn validate(&self) -> Result<()> {
        let mut check = Checker::new();
        check
            .text("name", &self.name, 200)
            .check(
                validate::is_time_zone(&self.time_zone),
                "time_zone",
                "must be an IANA time zone such as Europe/Berlin",
            )
            .check(
                validate::is_currency(&self.currency),
                "currency",
                "must be an ISO 4217 code such as EUR",
            )
            .check(
                (0..=10_000).contains(&self.vat_rate_bp),
                "vat_rate_bp",
                "must be 0 to 10000 basis points",
            )
            .check(
                validate::is_domain(&self.sip_domain_suffix),
                "sip_domain_suffix",
                "must be a lower-case DNS name such as voice.example.net",
            )
            .check(
                validate::is_language(&self.default_language),
                "default_language",
                "must be en or de",
            );
        for host in &self.console_hosts {
            check.check(
                validate::is_host(host),
                "console_hosts",
                "must be lower-case host names",
            );
        }
        self.brand.check(&mut check);
        check.finish()
    }
}

const COLUMNS: &str = "id, name, status, time_zone, currency, vat_rate_bp, sip_domain_suffix, \
    default_language, wholesale_plan_id, product_name, primary_color, accent_color, support_phone, \
    support_email, support_url, login_text, email_sender_name, sip_server_header, created_at, \
    closed_at, version";

fn from_row(row: &AnyRow) -> Result<Reseller, sqlx::Error> {
    Ok(Reseller {
        id: ResellerId(row.try_get("id")?),
        name: row.try_get("name")?,
        status: enum_col(row, "status", Status::parse)?,
        time_zone: row.try_get("time_zone")?,
        currency: row.try_get("currency")?,
        vat_rate_bp: row.try_get("vat_rate_bp")?,
        sip_domain_suffix: row.try_get("sip_domain_suffix")?,
        default_language: row.try_get("default_language")?,
        wholesale_plan_id: row
            .try_get::<Option<i64>, _>("wholesale_plan_id")?
            .map(PlanId),
        brand: Brand {
            product_name: row.try_get("product_name")?,
            primary_color: row.try_get("primary_color")?,
            accent_color: row.try_get("accent_color")?,
            support_phone: row.try_get("support_phone")?,
            support_email: row.try_get("support_email")?,
            support_url: row.try_get("support_url")?,
            login_text: row.try_get("login_text")?,
            email_sender_name: row.try_get("email_sender_name")?,
            sip_server_header: row.try_get("sip_server_header")?,
        },
        console_hosts: Vec::new(),
        created_at: row.try_get("created_at")?,
        closed_at: row.try_get("closed_at")?,
        version: row.try_get("version")?,
    })
}

const UNIQUE: &str = "the name, SIP domain suffix or a console host name is already in use";

pub struct Resellers<'s>(pub(crate) &'s Store);

impl Resellers<'_> {
    /// The resellers the caller can see: all for the operator, its own for a reseller.
    pub async fn list(&self, by: &Principal) -> Result<Vec<Reseller>> {
        by.may_read(Level::Reseller)?;
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM resellers WHERE ($1 IS NULL OR id = $1) ORDER BY name"
        ))
        .bind(by.scope.reseller_param())
        .fetch_all(self.0.pool())
        .await?;
        let mut resellers = rows.iter().map(from_row).collect::<Result<Vec<_>, _>>()?;
        let hosts = sqlx::query(
            "SELECT host, reseller_id FROM console_hosts WHERE reseller_id IS NOT NULL ORDER BY host",
        )
        .fetch_all(self.0.pool())
        .await?;
        for row in &hosts {
            let id = ResellerId(row.try_get("reseller_id")?);
            if let Some(r) = resellers.iter_mut().find(|r| r.id == id) {
                r.console_hosts.push(row.try_get("host")?);
            }
        }
        Ok(resellers)
    }

    /// One reseller, if the caller can see it. Customers see their own reseller.
    pub async fn get(&self, by: &Principal, id: ResellerId) -> Result<Reseller> {
        if by.scope.reseller().is_some_and(|own| own != id) {
            return Err(StoreError::NotFound);
        }
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM resellers WHERE id = $1"))
            .bind(id.0)
            .fetch_optional(self.0.pool())
            .await?
            .ok_or(StoreError::NotFound)?;
        let mut reseller = from_row(&row)?;
        reseller.console_hosts =
            sqlx::query("SELECT host FROM console_hosts WHERE reseller_id = $1 ORDER BY host")
                .bind(id.0)
                .fetch_all(self.0.pool())
                .await?
                .iter()
                .map(|r| r.try_get("host"))
                .collect::<Result<_, _>>()?;
        Ok(reseller)
    }

    pub async fn create(&self, by: &Principal, new: &ResellerSettings) -> Result<Reseller> {
        by.may_write(Level::Operator)?;
        new.validate()?;
        let mut tx = self.0.begin().await?;
        let row = sqlx::query(
            "INSERT INTO resellers (name, status, time_zone, currency, vat_rate_bp, sip_domain_suffix, \
             default_language, product_name, primary_color, accent_color, support_phone, support_email, \
             support_url, login_text, email_sender_name, sip_server_header, created_at) \
             VALUES ($1, 'active', $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) \
             RETURNING id",
        )
        .bind(&new.name)
        .bind(&new.time_zone)
        .bind(&new.currency)
        .bind(new.vat_rate_bp)
        .bind(&new.sip_domain_suffix)
        .bind(&new.default_language)
        .bind(&new.brand.product_name)
        .bind(&new.brand.primary_color)
        .bind(&new.brand.accent_color)
        .bind(&new.brand.support_phone)
        .bind(&new.brand.support_email)
        .bind(&new.brand.support_url)
        .bind(&new.brand.login_text)
        .bind(&new.brand.email_sender_name)
        .bind(&new.brand.sip_server_header)
        .bind(crate::now_ms())
        .fetch_one(tx.conn())
        .await
        .map_err(|e| OnViolation { unique: UNIQUE, foreign_key: "" }.map(e))?;
        let id = ResellerId(row.try_get("id")?);
        set_hosts(&mut tx, id, &new.console_hosts).await?;
        audit::record(
            &mut tx,
            by,
            Event {
                action: "create",
                object_type: "reseller",
                object_id: Some(id.0),
                reseller: Some(id),
                customer: None,
                details: serde_json::to_value(new).unwrap_or_default(),
            },
        )
        .await?;
        tx.changed(Change::Reseller { reseller: id });
        tx.commit().await?;
        self.get(by, id).await
    }

    /// Replaces a reseller's settings. The operator may change everything; a
    /// reseller admin only its brand and console hosts.
    pub async fn update(
        &self,
        by: &Principal,
        id: ResellerId,
        if_version: Option<i64>,
        settings: &ResellerSettings,
    ) -> Result<Reseller> {
        let current = self.get(by, id).await?;
        by.may_write(Level::Reseller)?;
        if by.scope.reseller().is_some() {
            let unchanged = current.name == settings.name
                && current.time_zone == settings.time_zone
                && current.currency == settings.currency
                && current.vat_rate_bp == settings.vat_rate_bp
                && current.sip_domain_suffix == settings.sip_domain_suffix;
            if !unchanged {
                return Err(StoreError::Forbidden(
                    "only the operator changes a reseller's name, time zone, currency, VAT or SIP domain",
                ));
            }
        }
        settings.validate()?;
        let mut tx = self.0.begin().await?;
        let done = sqlx::query(
            "UPDATE resellers SET name = $1, time_zone = $2, currency = $3, vat_rate_bp = $4, \
             sip_domain_suffix = $5, default_language = $6, product_name = $7, primary_color = $8, \
             accent_color = $9, support_phone = $10, support_email = $11, support_url = $12, \
             login_text = $13, email_sender_name = $14, sip_server_header = $15, version = version + 1 \
             WHERE id = $16 AND version = $17",
        )
        .bind(&settings.name)
        .bind(&settings.time_zone)
        .bind(&settings.currency)
        .bind(settings.vat_rate_bp)
        .bind(&settings.sip_domain_suffix)
        .bind(&settings.default_language)
        .bind(&settings.brand.product_name)
        .bind(&settings.brand.primary_color)
        .bind(&settings.brand.accent_color)
        .bind(&settings.brand.support_phone)
        .bind(&settings.brand.support_email)
        .bind(&settings.brand.support_url)
        .bind(&settings.brand.login_text)
        .bind(&settings.brand.email_sender_name)
        .bind(&settings.brand.sip_server_header)
        .bind(id.0)
        .bind(if_version.unwrap_or(current.version))
        .execute(tx.conn())
        .await
        .map_err(|e| OnViolation { unique: UNIQUE, foreign_key: "" }.map(e))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::VersionMismatch);
        }
        set_hosts(&mut tx, id, &settings.console_hosts).await?;
        audit::record(
            &mut tx,
            by,
            Event {
                action: "update",
                object_type: "reseller",
                object_id: Some(id.0),
                reseller: Some(id),
                customer: None,
                details: serde_json::to_value(settings).unwrap_or_default(),
            },
        )
        .await?;
        tx.changed(Change::Reseller { reseller: id });
        tx.commit().await?;
        self.get(by, id).await
    }

    /// Suspends, reactivates or closes a reseller (operator only).
    pub async fn set_status(
        &self,
        by: &Principal,
        id: ResellerId,
        status: Status,
    ) -> Result<Reseller> {
        by.may_write(Level::Operator)?;
        let mut tx = self.0.begin().await?;
        let closed_at = (status == Status::Closed).then(crate::now_ms);
        let done = sqlx::query(
            "UPDATE resellers SET status = $1, closed_at = $2, version = version + 1 WHERE id = $3",
        )
        .bind(status.as_str())
        .bind(closed_at)
        .bind(id.0)
        .execute(tx.conn())
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        audit::record(
            &mut tx,
            by,
            Event {
                action: "set_status",
                object_type: "reseller",
                object_id: Some(id.0),
                reseller: Some(id),
                customer: None,
                details: serde_json::json!({ "status": status }),
            },
        )
        .await?;
        tx.changed(Change::Reseller { reseller: id });
        tx.commit().await?;
        self.get(by, id).await
    }

    /// Sets the operator's wholesale price plan for a reseller.
    pub async fn set_wholesale_plan(
        &self,
        by: &Principal,
        id: ResellerId,
        plan: Option<PlanId>,
    ) -> Result<()> {
        by.may_write(Level::Operator)?;
        let mut tx = self.0.begin().await?;
        let done = sqlx::query(
            "UPDATE resellers SET wholesale_plan_id = $1, version = version + 1 WHERE id = $2 \
             AND ($1 IS NULL OR EXISTS (SELECT 1 FROM price_plans WHERE id = $1 AND tier = 'wholesale'))",
        )
        .bind(plan.map(|p| p.0))
        .bind(id.0)
        .execute(tx.conn())
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        audit::record(
            &mut tx,
            by,
            Event {
                action: "set_wholesale_plan",
                object_type: "reseller",
                object_id: Some(id.0),
                reseller: Some(id),
                customer: None,
                details: serde_json::json!({ "plan_id": plan }),
            },
        )
        .await?;
        tx.changed(Change::PricePlans);
        tx.commit().await
    }

    /// Deletes a reseller. Refused while it still has customers (the schema
    /// says so too): close it instead to keep its history.
    pub async fn delete(&self, by: &Principal, id: ResellerId) -> Result<()> {
        by.may_write(Level::Operator)?;
        let mut tx = self.0.begin().await?;
        let done = sqlx::query("DELETE FROM resellers WHERE id = $1")
            .bind(id.0)
            .execute(tx.conn())
            .await
            .map_err(|e| {
                OnViolation {
                    unique: "",
                    foreign_key: "the reseller still has customers, numbers or trunks",
                }
                .map(e)
            })?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        audit::record(
            &mut tx,
            by,
            Event {
                action: "delete",
                object_type: "reseller",
                object_id: Some(id.0),
                reseller: Some(id),
                customer: None,
                details: serde_json::Value::Null,
            },
        )
        .await?;
        tx.changed(Change::Reseller { reseller: id });
        tx.commit().await
    }
}

async fn set_hosts(tx: &mut Tx<'_>, id: ResellerId, hosts: &[String]) -> Result<()> {
    sqlx::query("DELETE FROM console_hosts WHERE reseller_id = $1")
        .bind(id.0)
        .execute(tx.conn())
        .await?;
    for host in hosts {
        sqlx::query("INSERT INTO console_hosts (host, reseller_id) VALUES ($1, $2)")
            .bind(host)
            .bind(id.0)
            .execute(tx.conn())
            .await
            .map_err(|e| {
                OnViolation {
                    unique: "a console host name is already in use",
                    foreign_key: "",
                }
                .map(e)
            })?;
    }
    Ok(())
}

text_enum!(
    /// The images a brand can carry.
    AssetKind { Logo = "logo", Favicon = "favicon" }
);

/// An image of a reseller's brand.
#[derive(Debug, Clone)]
pub struct BrandAsset {
    pub content_type: &'static str,
    pub data: Vec<u8>,
    /// SHA-256 of the data, hex: a strong ETag.
    pub sha256: String,
    pub updated_at: Millis,
}

/// Largest logo or favicon accepted.
pub const MAX_ASSET_BYTES: usize = 512 * 1024;

/// The image type of `data` from its first bytes (never from a name or a
/// client's claim), or None if it is not an image we serve.
pub fn sniff_image(data: &[u8]) -> Option<&'static str> {
    if data.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if data.starts_with(b"\xff\xd8\xff") {
        Some("image/jpeg")
    } else if data.len() >= 12 && &data[..4] == b"RIFF" && &data[8..12] == b"WEBP" {
        Some("image/webp")
    } else if data.starts_with(b"\x00\x00\x01\x00") {
        Some("image/x-icon")
    } else if is_svg(data) {
        Some("image/svg+xml")
    } else {
        None
    }
}

fn is_svg(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    let mut rest = text.trim_start_matches('\u{feff}').trim_start();
    // Skip an XML declaration and comments before the root element.
    loop {
        if let Some(after) = rest.strip_prefix("<?xml") {
            rest = after.split_once("?>").map_or("", |(_, r)| r).trim_start();
        } else if let Some(after) = rest.strip_prefix("<!--") {
            rest = after.split_once("-->").map_or("", |(_, r)| r).trim_start();
        } else {
            break;
        }
    }
    rest.starts_with("<svg")
}

/// Refuses SVG content that could run script or load anything when the image
/// is opened on its own. Refusing is safer than rewriting: a reseller whose
/// logo is refused can export a plain one.
fn check_svg(data: &[u8]) -> Result<()> {
    let text = String::from_utf8_lossy(data).to_ascii_lowercase();
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    const FORBIDDEN: &[&str] = &[
        "<script",
        "javascript:",
        "<foreignobject",
        "<iframe",
        "<embed",
        "<object",
        "<!entity",
        "<!doctype",
        "href=\"http",
        "href='http",
        "href=\"//",
        "href='//",
        "url(http",
        "url(//",
        "@import",
        "data:text",
        "<use",
        "<animate",
        "<set",
        "<handler",
        "<listener",
    ];
    let event_handler = has_event_handler(&text);
    if event_handler || FORBIDDEN.iter().any(|f| compact.contains(f)) {
        return Err(StoreError::invalid(
            "image",
            "SVG with scripts, event handlers, embedded documents or external references is not accepted",
        ));
    }
    Ok(())
}

/// True if some attribute's name is `on…` (onload, onclick, …), however spaced.
fn has_event_handler(lower: &str) -> bool {
    let bytes = lower.as_bytes();
    (0..bytes.len().saturating_sub(2)).any(|i| {
        let after_separator = i > 0
            && matches!(
                bytes[i - 1],
                b' ' | b'\t' | b'\n' | b'\r' | b'/' | b'"' | b'\''
            );
        if !after_separator || &bytes[i..i + 2] != b"on" {
            return false;
        }
        let mut j = i + 2;
        let name_start = j;
        while j < bytes.len() && bytes[j].is_ascii_alphabetic() {
            j += 1;
        }
        while j < bytes.len() && bytes[j].is_ascii_whitespace() {
            j += 1;
        }
        j > name_start && bytes.get(j) == Some(&b'=')
    })
}

impl Resellers<'_> {
    /// Sets a brand image; its type comes from its content.
    pub async fn set_asset(
        &self,
        by: &Principal,
        id: ResellerId,
        kind: AssetKind,
        data: &[u8],
    ) -> Result<()> {
        self.get(by, id).await?;
        by.may_write(Level::Reseller)?;
        if data.is_empty() || data.len() > MAX_ASSET_BYTES {
            return Err(StoreError::invalid(
                "image",
                format!("must be 1 byte to {} KiB", MAX_ASSET_BYTES / 1024),
            ));
        }
        let content_type = sniff_image(data).ok_or_else(|| {
            StoreError::invalid("image", "must be a PNG, JPEG, WebP, ICO or SVG image")
        })?;
        if content_type == "image/svg+xml" {
            check_svg(data)?;
        }
        let sha = crate::secrets::hex(&<sha2::Sha256 as sha2::Digest>::digest(data));
        let mut tx = self.0.begin().await?;
        sqlx::query(
            "INSERT INTO brand_assets (reseller_id, kind, content_type, data, sha256, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (reseller_id, kind) DO UPDATE SET \
             content_type = excluded.content_type, data = excluded.data, sha256 = excluded.sha256, \
             updated_at = excluded.updated_at",
        )
        .bind(id.0)
        .bind(kind.as_str())
        .bind(content_type)
        .bind(data)
        .bind(&sha)
        .bind(crate::now_ms())
        .execute(tx.conn())
        .await?;
        audit::record(
            &mut tx,
            by,
            Event {
                action: "set_asset",
                object_type: "reseller",
                object_id: Some(id.0),
                reseller: Some(id),
                customer: None,
                details: serde_json::json!({ "kind": kind, "content_type": content_type, "bytes": data.len(), "sha256": sha }),
            },
        )
        .await?;
        tx.changed(Change::Reseller { reseller: id });
        tx.commit().await
    }
}

impl Store {
    /// A reseller's brand image. Public: logos show on login pages.
    pub async fn brand_asset(
        &self,
        reseller: ResellerId,
        kind: AssetKind,
    ) -> Result<Option<BrandAsset>> {
        let row = sqlx::query("SELECT content_type, data, sha256, updated_at FROM brand_assets WHERE reseller_id = $1 AND kind = $2")
            .bind(reseller.0)
            .bind(kind.as_str())
            .fetch_optional(self.pool())
            .await?;
        let Some(row) = row else { return Ok(None) };
        let data: Vec<u8> = row.try_get("data")?;
        // The stored type is re-derived from the bytes, never trusted as text.
        let Some(content_type) = sniff_image(&data) else {
            return Ok(None);
        };
        Ok(Some(BrandAsset {
            content_type,
            data,
            sha256: row.try_get("sha256")?,
            updated_at: row.try_get("updated_at")?,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_recognised_by_content() {
        assert_eq!(sniff_image(b"\x89PNG\r\n\x1a\nrest"), Some("image/png"));
        assert_eq!(sniff_image(b"\xff\xd8\xff\xe0"), Some("image/jpeg"));
        assert_eq!(sniff_image(b"RIFF\0\0\0\0WEBPVP8 "), Some("image/webp"));
        assert_eq!(
            sniff_image(b"<?xml version=\"1.0\"?>\n<!-- x --><svg></svg>"),
            Some("image/svg+xml")
        );
        assert_eq!(sniff_image(b"<html><svg></svg></html>"), None);
        assert_eq!(sniff_image(b"GIF89a"), None);
    }

    #[test]
    fn unsafe_svg_is_refused() {
        assert!(check_svg(crate::testing_assets::SAFE_SVG).is_ok());
        for bad in [
            "<svg><script>alert(1)</script></svg>",
            "<svg onload=\"alert(1)\"></svg>",
            "<svg><rect ONCLICK = 'x'/></svg>",
            "<svg><a href=\"javascript:alert(1)\"><text>x</text></a></svg>",
            "<svg><foreignObject><iframe/></foreignObject></svg>",
            "<svg><image href=\"https://tracker.example/x.png\"/></svg>",
            "<!DOCTYPE svg [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><svg>&x;</svg>",
            "<svg><style>@import url(//evil.example/x.css);</style></svg>",
            "<svg><use href=\"#a\"/></svg>",
        ] {
            assert!(check_svg(bad.as_bytes()).is_err(), "accepted: {bad}");
        }
    }
}
