//! Carrier trunks and outbound routes: the SIP connections to carriers that
//! carry calls to and from the public network, and which trunks carry which
//! destinations. A trunk is the operator's (for every reseller) or one
//! reseller's own; the operator manages all, a reseller its own, customers
//! none. The secret of a registering trunk is kept encrypted and never read
//! back through this module's views.

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::audit::{self, Event};
use crate::changes::Change;
use crate::error::OnViolation;
use crate::numbering::NumberFormat;
use crate::principal::Level;
use crate::rows::{enum_col, flag, flag_value, text_enum};
use crate::validate::{self, Checker};
use crate::{Millis, Principal, ResellerId, Result, Scope, Store, StoreError, TrunkId};

text_enum!(
    /// How a trunk's SIP travels.
    Transport { Udp = "udp", Tcp = "tcp", Tls = "tls" }
);

text_enum!(
    /// How the carrier knows us: by our address, or by our registration.
    AuthMode { Ip = "ip", Register = "register" }
);

/// Routes a trunk may carry.
pub const MAX_ROUTES: usize = 500;

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Trunk {
    pub id: TrunkId,
    /// None: the operator's trunk, for every reseller.
    pub reseller_id: Option<ResellerId>,
    pub name: String,
    /// The carrier's SIP server: an IP literal or a DNS name (RFC 3263).
    pub host: String,
    pub port: i64,
    pub transport: Transport,
    pub auth_mode: AuthMode,
    /// Digest user for a registering trunk.
    pub username: Option<String>,
    pub realm: Option<String>,
    pub register_expires_s: i64,
    /// Address blocks inbound calls from this carrier come from.
    pub inbound_sources: Vec<String>,
    pub number_format: NumberFormat,
    /// The carrier's country (ISO 3166): what `national` numbers are national to.
    pub country: String,
    /// Calls at once on this trunk; None: no limit.
    pub max_channels: Option<i64>,
    /// Lower first among trunks of equal route.
    pub priority: i64,
    pub enabled: bool,
    /// How the SIP side's registration with the carrier stands (registering
    /// trunks only; None until a node tried).
    pub registration: Option<Registration>,
    pub created_at: Millis,
    pub version: i64,
}

text_enum!(
    /// Whether the carrier accepted the platform's registration.
    RegistrationState { Registered = "registered", Failed = "failed" }
);

/// A registering trunk's registration, as a SIP node last saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Registration {
    pub state: RegistrationState,
    /// The carrier's last answer (e.g. 200, 403), or 408 when it gave none.
    pub status: Option<i64>,
    /// Until when a registration holds.
    pub registered_until: Option<Millis>,
    /// When the node last tried.
    pub at: Millis,
}

/// A trunk as created or replaced.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TrunkSettings {
    pub name: String,
    pub host: String,
    #[serde(default = "default_port")]
    pub port: i64,
    #[serde(default = "default_transport")]
    pub transport: Transport,
    pub auth_mode: AuthMode,
    #[serde(default)]
    pub username: Option<String>,
    /// Write-only. On a replace, None keeps the current secret.
    #[serde(default, skip_serializing)]
    pub secret: Option<String>,
    #[serde(default)]
    pub realm: Option<String>,
    #[serde(default = "default_expires")]
    pub register_expires_s: i64,
    #[serde(default)]
    pub inbound_sources: Vec<String>,
    #[serde(default = "default_format")]
    pub number_format: NumberFormat,
    /// ISO 3166 country of the carrier; Germany if not given.
    #[serde(default = "default_country")]
    pub country: String,
    #[serde(default)]
    pub max_channels: Option<i64>,
    #[serde(default = "default_priority")]
    pub priority: i64,
    #[serde(default = "default_enabled")]
    pub enabled: bool,
}

fn default_port() -> i64 {
    5060
}
fn default_transport() -> Transport {
    Transport::Udp
}
fn default_expires() -> i64 {
    600
}
fn default_format() -> NumberFormat {
    NumberFormat::E164Plus
}
fn default_country() -> String {
    "DE".into()
}
fn default_priority() -> i64 {
    100
}
fn default_enabled() -> bool {
    true
}

/// Which destinations a trunk carries: a prefix of E.164 digits (empty: all).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Route {
    pub prefix: String,
    /// Lower first among routes of equal prefix length.
    #[serde(default = "default_priority")]
    pub priority: i64,
}

/// Whether `text` is an address or a block of a carrier's size
/// (`192.0.2.0/24`): at most a /16 (IPv4) or a /32 (IPv6). Whatever comes
/// from these addresses is taken for the carrier's, without a password, so
/// a wider block would take phones for carriers.
fn is_block(text: &str) -> bool {
    crate::net::Block::parse(text).is_some_and(|b| b.prefix() >= if b.is_ipv4() { 16 } else { 32 })
}

impl TrunkSettings {
    fn validate(&self, creating: bool) -> Result<()> {
        let mut check = Checker::new();
        check
            .text("name", &self.name, 100)
            // The SIP side reaches carriers at an address: DNS names
            // (RFC 3263) are not resolved yet, and are refused rather than
            // kept and silently never used.
            .check(
                self.host.parse::<std::net::IpAddr>().is_ok(),
                "host",
                "must be an IP address (carriers' DNS names are not resolved yet)",
            )
            .check(
                self.transport != Transport::Tls,
                "transport",
                "tls is not supported yet: use udp or tcp",
            )
            .check(
                (1..=65_535).contains(&self.port),
                "port",
                "must be 1 to 65535",
            )
            .check(
                (60..=86_400).contains(&self.register_expires_s),
                "register_expires_s",
                "must be 60 to 86400",
            )
            .check(
                self.max_channels.is_none_or(|m| (1..=100_000).contains(&m)),
                "max_channels",
                "must be 1 to 100000",
            )
            .check(
                (0..=1_000_000).contains(&self.priority),
                "priority",
                "must be 0 to 1000000",
            )
            .check(
                self.inbound_sources.len() <= 50
                    && self.inbound_sources.iter().all(|b| is_block(b)),
                "inbound_sources",
                "must be up to 50 addresses or blocks such as 192.0.2.0/24 (at most /16, IPv6 /32)",
            )
            .check(
                validate::is_country(&self.country),
                "country",
                "must be an ISO 3166 country code such as DE",
            )
            .optional_text("username", self.username.as_deref(), 100)
            .optional_text("realm", self.realm.as_deref(), 253);
        check.check(
            self.secret
                .as_deref()
                .is_none_or(|s| !s.is_empty() && s.len() <= 200),
            "secret",
            "must be 1 to 200 characters",
        );
        if self.auth_mode == AuthMode::Register {
            check.check(
                self.username.as_deref().is_some_and(|u| !u.is_empty()),
                "username",
                "a registering trunk needs a user name",
            );
            if creating {
                check.check(
                    self.secret
                        .as_deref()
                        .is_some_and(|s| !s.is_empty() && s.len() <= 200),
                    "secret",
                    "a registering trunk needs a secret",
                );
            }
        }
        check.finish()
    }
}

const COLUMNS: &str = "id, reseller_id, name, host, port, transport, auth_mode, username, realm, \
    register_expires_s, inbound_sources, number_format, country, max_channels, priority, enabled, \
    registration_state, registration_status, registered_until, registration_at, created_at, version";
/// $1 reseller scope: a reseller sees its own trunks only.
const SCOPED: &str = "FROM trunks WHERE ($1 IS NULL OR reseller_id = $1)";

fn from_row(row: &AnyRow) -> Result<Trunk, sqlx::Error> {
    let sources: String = row.try_get("inbound_sources")?;
    Ok(Trunk {
        id: TrunkId(row.try_get("id")?),
        reseller_id: row
            .try_get::<Option<i64>, _>("reseller_id")?
            .map(ResellerId),
        name: row.try_get("name")?,
        host: row.try_get("host")?,
        port: row.try_get("port")?,
        transport: enum_col(row, "transport", Transport::parse)?,
        auth_mode: enum_col(row, "auth_mode", AuthMode::parse)?,
        username: row.try_get("username")?,
        realm: row.try_get("realm")?,
        register_expires_s: row.try_get("register_expires_s")?,
        inbound_sources: sources
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        number_format: enum_col(row, "number_format", NumberFormat::parse)?,
        country: row.try_get("country")?,
        max_channels: row.try_get("max_channels")?,
        priority: row.try_get("priority")?,
        enabled: flag(row, "enabled")?,
        registration: match row.try_get::<Option<String>, _>("registration_state")? {
            Some(state) => Some(Registration {
                state: RegistrationState::parse(&state).unwrap_or(RegistrationState::Failed),
                status: row.try_get("registration_status")?,
                registered_until: row.try_get("registered_until")?,
                at: row
                    .try_get::<Option<i64>, _>("registration_at")?
                    .unwrap_or(0),
            }),
            None => None,
        },
        created_at: row.try_get("created_at")?,
        version: row.try_get("version")?,
    })
}

/// Binds a trunk's settings as $1…$15, in the order both the insert and
/// the update name them.
fn bind_settings<'q>(
    query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    s: &'q TrunkSettings,
    secret: Option<String>,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    query
        .bind(&s.name)
        .bind(&s.host)
        .bind(s.port)
        .bind(s.transport.as_str())
        .bind(s.auth_mode.as_str())
        .bind(&s.username)
        .bind(secret)
        .bind(&s.realm)
        .bind(s.register_expires_s)
        .bind(s.inbound_sources.join(","))
        .bind(s.number_format.as_str())
        .bind(s.max_channels)
        .bind(s.priority)
        .bind(flag_value(s.enabled))
        .bind(&s.country)
}

/// Who may write trunks of `owner`: the operator for all, a reseller for its own.
fn may_manage(by: &Principal, owner: Option<ResellerId>) -> Result<()> {
    match (owner, &by.scope) {
        (_, Scope::Operator) => by.may_write(Level::Operator),
        (Some(r), Scope::Reseller { reseller }) if *reseller == r => by.may_write(Level::Reseller),
        (None, Scope::Reseller { .. }) => Err(StoreError::Forbidden(
            "only the operator manages the platform's trunks",
        )),
        _ => Err(StoreError::NotFound),
    }
}

const ON_WRITE: OnViolation = OnViolation {
    unique: "a route with this prefix exists on the trunk",
    foreign_key: "the reseller does not exist",
};

pub struct Trunks<'s>(pub(crate) &'s Store);

impl Trunks<'_> {
    /// The trunks the caller manages (customers: none).
    pub async fn list(&self, by: &Principal) -> Result<Vec<Trunk>> {
        by.may_read(Level::Reseller)?;
        let rows = sqlx::query(&format!("SELECT {COLUMNS} {SCOPED} ORDER BY priority, id"))
            .bind(by.scope.reseller_param())
            .fetch_all(self.0.pool())
            .await?;
        Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
    }

    pub async fn get(&self, by: &Principal, id: TrunkId) -> Result<Trunk> {
        by.may_read(Level::Reseller)?;
        let row = sqlx::query(&format!("SELECT {COLUMNS} {SCOPED} AND id = $2"))
            .bind(by.scope.reseller_param())
            .bind(id.0)
            .fetch_optional(self.0.pool())
            .await?
            .ok_or(StoreError::NotFound)?;
        Ok(from_row(&row)?)
    }

    /// Creates a trunk: the operator's when `owner` is None, else that reseller's.
    pub async fn create(
        &self,
        by: &Principal,
        owner: Option<ResellerId>,
        s: &TrunkSettings,
    ) -> Result<Trunk> {
        may_manage(by, owner)?;
        s.validate(true)?;
        let secret = s.secret.as_deref().map(|x| self.0.secrets().encrypt(x));
        let mut tx = self.0.begin().await?;
        let row = bind_settings(
            sqlx::query(
                "INSERT INTO trunks (name, host, port, transport, auth_mode, username, secret_enc, realm, \
                 register_expires_s, inbound_sources, number_format, max_channels, priority, enabled, \
                 country, reseller_id, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) RETURNING id",
            ),
            s,
            secret,
        )
        .bind(owner.map(|r| r.0))
        .bind(crate::now_ms())
        .fetch_one(tx.conn())
        .await
        .map_err(|e| ON_WRITE.map(e))?;
        let id = TrunkId(row.try_get("id")?);
        self.log(
            &mut tx,
            by,
            "create",
            id,
            owner,
            serde_json::to_value(s).unwrap_or_default(),
        )
        .await?;
        tx.changed(Change::Trunks);
        tx.commit().await?;
        self.get(by, id).await
    }

    /// A registering trunk's secret, decrypted: for the SIP side, which
    /// registers with it (operator scope only; never shown in any view).
    pub async fn secret(&self, by: &Principal, id: TrunkId) -> Result<Option<String>> {
        by.may_read(Level::Operator)?;
        let row = sqlx::query("SELECT secret_enc FROM trunks WHERE id = $1")
            .bind(id.0)
            .fetch_optional(self.0.pool())
            .await?
            .ok_or(StoreError::NotFound)?;
        let stored: Option<String> = row.try_get("secret_enc")?;
        stored.map(|s| self.0.secrets().decrypt(&s)).transpose()
    }

    /// Notes how the registration with the carrier stands (the SIP side, as
    /// the system). Not a change of settings: no version, no change event.
    pub async fn set_registration(
        &self,
        by: &Principal,
        id: TrunkId,
        registration: &Registration,
    ) -> Result<()> {
        by.may_write(Level::Operator)?;
        sqlx::query(
            "UPDATE trunks SET registration_state = $1, registration_status = $2, registered_until = $3, \
             registration_at = $4 WHERE id = $5",
        )
        .bind(registration.state.as_str())
        .bind(registration.status)
        .bind(registration.registered_until)
        .bind(registration.at)
        .bind(id.0)
        .execute(self.0.pool())
        .await?;
        Ok(())
    }

    /// Replaces a trunk's settings (its secret only when one is given).
    pub async fn update(
        &self,
        by: &Principal,
        id: TrunkId,
        if_version: Option<i64>,
        s: &TrunkSettings,
    ) -> Result<Trunk> {
        let current = self.get(by, id).await?;
        may_manage(by, current.reseller_id)?;
        s.validate(false)?;
        let had_secret: Option<String> = sqlx::query("SELECT secret_enc FROM trunks WHERE id = $1")
            .bind(id.0)
            .fetch_one(self.0.pool())
            .await?
            .try_get("secret_enc")?;
        let secret = match &s.secret {
            Some(x) => Some(self.0.secrets().encrypt(x)),
            None => had_secret,
        };
        if s.auth_mode == AuthMode::Register && secret.is_none() {
            return Err(StoreError::invalid(
                "secret",
                "a registering trunk needs a secret",
            ));
        }
        let mut tx = self.0.begin().await?;
        let done = bind_settings(
            sqlx::query(
                "UPDATE trunks SET name = $1, host = $2, port = $3, transport = $4, auth_mode = $5, \
                 username = $6, secret_enc = $7, realm = $8, register_expires_s = $9, inbound_sources = $10, \
                 number_format = $11, max_channels = $12, priority = $13, enabled = $14, \
                 country = $15, version = version + 1 WHERE id = $16 AND version = $17",
            ),
            s,
            secret,
        )
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
            serde_json::to_value(s).unwrap_or_default(),
        )
        .await?;
        tx.changed(Change::Trunks);
        tx.commit().await?;
        self.get(by, id).await
    }

    /// Removes a trunk and its routes. Call records keep its id.
    pub async fn delete(&self, by: &Principal, id: TrunkId) -> Result<()> {
        let current = self.get(by, id).await?;
        may_manage(by, current.reseller_id)?;
        let mut tx = self.0.begin().await?;
        sqlx::query("DELETE FROM outbound_routes WHERE trunk_id = $1")
            .bind(id.0)
            .execute(tx.conn())
            .await?;
        sqlx::query("DELETE FROM trunks WHERE id = $1")
            .bind(id.0)
            .execute(tx.conn())
            .await
            .map_err(|e| {
                OnViolation {
                    unique: "",
                    foreign_key: "the trunk is still referred to",
                }
                .map(e)
            })?;
        self.log(
            &mut tx,
            by,
            "delete",
            id,
            current.reseller_id,
            serde_json::json!({ "name": current.name }),
        )
        .await?;
        tx.changed(Change::Trunks);
        tx.commit().await
    }

    /// The destinations a trunk carries, longest prefix first.
    pub async fn routes(&self, by: &Principal, id: TrunkId) -> Result<Vec<Route>> {
        let trunk = self.get(by, id).await?;
        let rows = sqlx::query(
            "SELECT prefix, priority FROM outbound_routes WHERE trunk_id = $1 ORDER BY prefix, priority",
        )
        .bind(trunk.id.0)
        .fetch_all(self.0.pool())
        .await?;
        let mut routes = rows
            .iter()
            .map(|r| {
                Ok(Route {
                    prefix: r.try_get("prefix")?,
                    priority: r.try_get("priority")?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        routes.sort_by(|a, b| {
            b.prefix
                .len()
                .cmp(&a.prefix.len())
                .then(a.prefix.cmp(&b.prefix))
        });
        Ok(routes)
    }

    /// Replaces the destinations a trunk carries.
    pub async fn set_routes(
        &self,
        by: &Principal,
        id: TrunkId,
        routes: &[Route],
    ) -> Result<Vec<Route>> {
        let trunk = self.get(by, id).await?;
        may_manage(by, trunk.reseller_id)?;
        let mut check = Checker::new();
        check.check(
            routes.len() <= MAX_ROUTES,
            "routes",
            "at most 500 routes per trunk",
        );
        for (i, r) in routes.iter().enumerate() {
            check.check(
                r.prefix.len() <= 15 && r.prefix.bytes().all(|b| b.is_ascii_digit()),
                &format!("[{i}].prefix"),
                "must be up to 15 digits of an E.164 number (no +); empty for every destination",
            );
            check.check(
                (0..=1_000_000).contains(&r.priority),
                &format!("[{i}].priority"),
                "must be 0 to 1000000",
            );
        }
        check.finish()?;
        let mut tx = self.0.begin().await?;
        sqlx::query("DELETE FROM outbound_routes WHERE trunk_id = $1")
            .bind(id.0)
            .execute(tx.conn())
            .await?;
        for r in routes {
            sqlx::query(
                "INSERT INTO outbound_routes (trunk_id, prefix, priority) VALUES ($1, $2, $3)",
            )
            .bind(id.0)
            .bind(&r.prefix)
            .bind(r.priority)
            .execute(tx.conn())
            .await
            .map_err(|e| ON_WRITE.map(e))?;
        }
        self.log(
            &mut tx,
            by,
            "set_routes",
            id,
            trunk.reseller_id,
            serde_json::to_value(routes).unwrap_or_default(),
        )
        .await?;
        tx.changed(Change::Trunks);
        tx.commit().await?;
        self.routes(by, id).await
    }

    async fn log(
        &self,
        tx: &mut crate::db::Tx<'_>,
        by: &Principal,
        action: &str,
        id: TrunkId,
        owner: Option<ResellerId>,
        details: serde_json::Value,
    ) -> Result<()> {
        audit::record(
            tx,
            by,
            Event {
                action,
                object_type: "trunk",
                object_id: Some(id.0),
                reseller: owner,
                customer: None,
                details,
            },
        )
        .await
    }
}

/// The trunks to try for an E.164 number, in order: routes with the longest
/// matching prefix first, then by route priority, then by trunk priority;
/// each trunk once, disabled ones left out. Failover walks this list.
pub fn candidates<'t>(
    trunks: impl IntoIterator<Item = &'t (Trunk, Vec<Route>)>,
    e164: &str,
) -> Vec<&'t Trunk> {
    let mut matches: Vec<(usize, i64, i64, &Trunk)> = trunks
        .into_iter()
        .filter(|(t, _)| t.enabled)
        .flat_map(|(t, routes)| {
            routes
                .iter()
                .filter(|r| e164.starts_with(r.prefix.as_str()))
                .map(move |r| (r.prefix.len(), r.priority, t.priority, t))
        })
        .collect();
    matches.sort_by(|a, b| {
        b.0.cmp(&a.0)
            .then(a.1.cmp(&b.1))
            .then(a.2.cmp(&b.2))
            .then(a.3.id.cmp(&b.3.id))
    });
    let mut seen = Vec::new();
    let mut out = Vec::new();
    for (_, _, _, t) in matches {
        if !seen.contains(&t.id) {
            seen.push(t.id);
            out.push(t);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{TestDb, TwoTenants};

    fn settings(name: &str, host: &str, priority: i64) -> TrunkSettings {
        TrunkSettings {
            name: name.into(),
            host: host.into(),
            port: 5060,
            transport: Transport::Udp,
            auth_mode: AuthMode::Ip,
            username: None,
            secret: None,
            realm: None,
            register_expires_s: 600,
            inbound_sources: vec!["192.0.2.0/24".into()],
            number_format: NumberFormat::E164Plus,
            country: "DE".into(),
            max_channels: Some(30),
            priority,
            enabled: true,
        }
    }

    fn route(prefix: &str, priority: i64) -> Route {
        Route {
            prefix: prefix.into(),
            priority,
        }
    }

    async fn trunks_belong_to_the_operator_or_one_reseller(db: TestDb) {
        let t = TwoTenants::create(&db.store).await;
        let sys = Principal::system();
        let trunks = db.store.trunks();
        let platform = trunks
            .create(&sys, None, &settings("Carrier A", "127.0.0.1", 10))
            .await
            .unwrap();
        let own = trunks
            .create(
                &t.reseller_x_admin,
                Some(t.reseller_x.id),
                &settings("X's carrier", "192.0.2.20", 20),
            )
            .await
            .unwrap();
        // Resellers see their own only; Y cannot touch X's; nobody below writes.
        let seen: Vec<TrunkId> = trunks
            .list(&t.reseller_x_admin)
            .await
            .unwrap()
            .iter()
            .map(|t| t.id)
            .collect();
        assert_eq!(seen, vec![own.id]);
        assert!(trunks.list(&t.reseller_y_admin).await.unwrap().is_empty());
        assert!(matches!(
            trunks.get(&t.reseller_y_admin, own.id).await,
            Err(StoreError::NotFound)
        ));
        assert!(matches!(
            trunks
                .create(
                    &t.reseller_y_admin,
                    Some(t.reseller_x.id),
                    &settings("n", "127.0.0.2", 1)
                )
                .await,
            Err(StoreError::NotFound)
        ));
        assert!(matches!(
            trunks
                .create(&t.reseller_x_admin, None, &settings("n", "127.0.0.2", 1))
                .await,
            Err(StoreError::Forbidden(_))
        ));
        assert!(matches!(
            trunks.list(&t.customer_a_admin).await,
            Err(StoreError::Forbidden(_))
        ));
        assert_eq!(trunks.list(&sys).await.unwrap().len(), 2);

        // A registering trunk needs credentials; its secret is kept, not shown.
        let mut reg = settings("Registering", "127.0.0.3", 30);
        reg.auth_mode = AuthMode::Register;
        reg.username = Some("pbx".into());
        let refused = trunks.create(&sys, None, &reg).await;
        assert!(
            matches!(refused, Err(StoreError::Invalid(_))),
            "{refused:?}"
        );
        reg.secret = Some("carrier secret".into());
        let registering = trunks.create(&sys, None, &reg).await.unwrap();
        reg.secret = None;
        reg.name = "Registering, renamed".into();
        let renamed = trunks
            .update(&sys, registering.id, Some(registering.version), &reg)
            .await
            .unwrap();
        assert_eq!(renamed.name, "Registering, renamed");
        let stale = trunks
            .update(&sys, registering.id, Some(registering.version), &reg)
            .await;
        assert!(matches!(stale, Err(StoreError::VersionMismatch)));
        let plain = db
            .count("SELECT COUNT(*) AS n FROM trunks WHERE secret_enc LIKE '%carrier secret%'")
            .await;
        assert_eq!(plain, 0, "the secret is stored encrypted");
        assert_eq!(
            db.count("SELECT COUNT(*) AS n FROM trunks WHERE secret_enc IS NOT NULL")
                .await,
            1,
            "kept across a replace without one"
        );

        // Hostile settings are refused by field.
        let mut bad = settings("", "not a host!", 1);
        bad.inbound_sources = vec!["10.0.0.0/99".into()];
        bad.port = 0;
        let Err(StoreError::Invalid(fields)) = trunks.create(&sys, None, &bad).await else {
            panic!("refused");
        };
        let names: Vec<&str> = fields.iter().map(|f| f.field.as_str()).collect();
        for field in ["name", "host", "port", "inbound_sources"] {
            assert!(names.contains(&field), "{names:?}");
        }

        // A block so wide that phones would pass for the carrier.
        for wide in ["0.0.0.0/0", "10.0.0.0/8", "2001:db8::/16"] {
            let mut open = settings("Wide", "127.0.0.1", 1);
            open.inbound_sources = vec![wide.into()];
            assert!(
                matches!(
                    trunks.create(&sys, None, &open).await,
                    Err(StoreError::Invalid(_))
                ),
                "{wide}"
            );
        }

        // Routes, and the order failover walks.
        trunks
            .set_routes(&sys, platform.id, &[route("49", 100), route("", 100)])
            .await
            .unwrap();
        trunks
            .set_routes(&sys, registering.id, &[route("4930", 100), route("49", 50)])
            .await
            .unwrap();
        assert!(matches!(
            trunks
                .set_routes(&sys, platform.id, &[route("+49", 1)])
                .await,
            Err(StoreError::Invalid(_))
        ));
        assert!(matches!(
            trunks
                .set_routes(&t.reseller_y_admin, own.id, &[route("1", 1)])
                .await,
            Err(StoreError::NotFound)
        ));
        let mut table = Vec::new();
        for trunk in trunks.list(&sys).await.unwrap() {
            let routes = trunks.routes(&sys, trunk.id).await.unwrap();
            table.push((trunk, routes));
        }
        let order = |number: &str| -> Vec<String> {
            candidates(&table, number)
                .iter()
                .map(|t| t.name.clone())
                .collect()
        };
        assert_eq!(
            order("49301234567"),
            vec!["Registering, renamed", "Carrier A"]
        );
        assert_eq!(
            order("49891234567"),
            vec!["Registering, renamed", "Carrier A"],
            "route priority 50 before 100"
        );
        assert_eq!(order("12125550100"), vec!["Carrier A"], "the default route");
        trunks.delete(&sys, platform.id).await.unwrap();
        assert!(matches!(
            trunks.get(&sys, platform.id).await,
            Err(StoreError::NotFound)
        ));
    }

    crate::both_engines!(trunks_belong_to_the_operator_or_one_reseller);
}
