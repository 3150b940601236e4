//! What the SIP proxy holds in memory: every customer's SIP domain, live
//! extensions and device credentials (HA1s only), its numbering country and
//! time zone, business-hours rules, call limits and retail rates; and,
//! platform-wide, the carrier trunks with their routes and the phone numbers
//! with their destinations. Loaded whole at start and per customer when
//! [`crate::changes::Change::Customer`] says it changed (trunks and numbers
//! on their own changes).

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;
use sqlx::Row;

use crate::abuse::GuardSettings;
use crate::business_hours::BusinessHours;
use crate::fraud_alarms::FraudAlarms;
use crate::limits::Limits;
use crate::numbers::Destination;
use crate::rating::RateRule;
use crate::trunks::{Route, Trunk};

use crate::principal::Level;
use crate::resellers::Status;
use crate::rows::{enum_col, flag};
use crate::{
    CustomerId, DeviceId, ExtensionId, NumberId, PlanId, Principal, ResellerId, Result, Store,
};

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
    pub conference_rooms: Vec<DirectoryRoom>,
    /// ISO 3166 country whose numbering plan the customer's phones dial in.
    pub country: String,
    /// The customer's language (`en`, `de`): what its callers hear.
    pub language: String,
    /// Its uploaded music on hold (a key in the audio store); None: the platform's tune.
    pub music_audio: Option<String>,
    /// The customer's time zone (business hours).
    pub time_zone: String,
    /// The reseller's time zone (its billing days, for spend limits).
    pub reseller_time_zone: String,
    pub limits: Limits,
    /// The reseller's limits, over all its customers.
    pub reseller_limits: Limits,
    /// The reseller's abuse thresholds (None: the SIP nodes' defaults).
    pub guard_settings: GuardSettings,
    /// The customer's toll-fraud alarms.
    pub fraud_alarms: FraudAlarms,
    /// Whether its calls' media is anchored: the customer's choice, else
    /// its reseller's (None: the SIP node's default).
    pub media_anchor: Option<crate::media::AnchorMode>,
    /// What each of its devices is known to call abroad or at premium rates.
    pub known_destinations: HashMap<DeviceId, Vec<String>>,
    pub business_hours: Vec<BusinessHours>,
    /// The customer's retail rates (empty without a retail plan); shared
    /// between the customers of one plan.
    #[serde(skip)]
    pub retail_rates: Arc<Vec<RateRule>>,
}

impl CustomerDirectory {
    /// A customer with nothing in it yet: German numbering, Berlin time,
    /// default limits, no retail rates (tests and tools fill in the rest).
    pub fn empty(customer_id: CustomerId, reseller_id: ResellerId, sip_domain: &str) -> Self {
        CustomerDirectory {
            customer_id,
            reseller_id,
            sip_domain: sip_domain.to_owned(),
            active: true,
            server_header: None,
            extensions: Vec::new(),
            devices: Vec::new(),
            ring_groups: Vec::new(),
            conference_rooms: Vec::new(),
            country: "DE".into(),
            language: "de".into(),
            music_audio: None,
            time_zone: "Europe/Berlin".into(),
            reseller_time_zone: "Europe/Berlin".into(),
            limits: Limits::default(),
            reseller_limits: Limits::unlimited(),
            guard_settings: GuardSettings::default(),
            fraud_alarms: FraudAlarms::default(),
            media_anchor: None,
            known_destinations: HashMap::new(),
            business_hours: Vec::new(),
            retail_rates: Arc::default(),
        }
    }
}

/// A carrier trunk as the proxy uses it.
#[derive(Debug, Clone)]
pub struct CarrierTrunk {
    pub trunk: Trunk,
    pub routes: Vec<Route>,
    /// The registration secret, decrypted (registering trunks only).
    pub secret: Option<String>,
}

/// A phone number assigned to a customer, and where its calls go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutedNumber {
    pub id: NumberId,
    /// Digits without `+`.
    pub e164: String,
    pub customer: CustomerId,
    /// None: assigned but not routed yet (calls get 480).
    pub destination: Option<Destination>,
    /// Its incoming calls are recorded.
    pub record_calls: bool,
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

/// A conference room as the proxy routes to it (the application server
/// reads its PIN and limit when a caller arrives).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DirectoryRoom {
    pub id: crate::ConferenceRoomId,
    pub number: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DirectoryExtension {
    pub id: ExtensionId,
    pub number: String,
    pub display_name: String,
    pub dnd: bool,
    /// Its calls are recorded (the customer's recording policy).
    pub record_calls: bool,
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
            "SELECT c.id, c.reseller_id, c.sip_domain, c.status, c.country, c.language, c.music_audio, c.time_zone, c.retail_plan_id, \
             r.status AS reseller_status, r.sip_server_header, r.time_zone AS reseller_time_zone, \
             COALESCE(c.media_anchor, r.media_anchor) AS media_anchor \
             FROM customers c JOIN resellers r ON r.id = c.reseller_id \
             WHERE ($1 IS NULL OR c.id = $1) ORDER BY c.id",
        )
        .bind(only)
        .fetch_all(pool)
        .await?;
        let rates = self.retail_rates(only).await?;
        let limits = self.limits(only).await?;
        let guard_settings = self.0.guard_settings().all().await?;
        let (mut alarms, mut known) = self.0.fraud_alarms().for_directory(only).await?;
        let mut out = Vec::with_capacity(customers.len());
        for row in &customers {
            let status = enum_col(row, "status", Status::parse)?;
            let reseller_status = enum_col(row, "reseller_status", Status::parse)?;
            let id = CustomerId(row.try_get("id")?);
            let reseller = ResellerId(row.try_get("reseller_id")?);
            let plan = row.try_get::<Option<i64>, _>("retail_plan_id")?.map(PlanId);
            out.push(CustomerDirectory {
                country: row.try_get("country")?,
                language: row.try_get("language")?,
                music_audio: row.try_get("music_audio")?,
                time_zone: row.try_get("time_zone")?,
                reseller_time_zone: row.try_get("reseller_time_zone")?,
                limits: limits.customers.get(&id).cloned().unwrap_or_default(),
                reseller_limits: limits
                    .resellers
                    .get(&reseller)
                    .cloned()
                    .unwrap_or_else(Limits::unlimited),
                guard_settings: guard_settings.get(&reseller).copied().unwrap_or_default(),
                fraud_alarms: alarms.remove(&id).unwrap_or_default(),
                media_anchor: row
                    .try_get::<Option<String>, _>("media_anchor")?
                    .as_deref()
                    .and_then(crate::media::AnchorMode::parse),
                known_destinations: HashMap::new(),
                business_hours: Vec::new(),
                retail_rates: plan
                    .and_then(|p| rates.get(&p).cloned())
                    .unwrap_or_default(),
                customer_id: CustomerId(row.try_get("id")?),
                reseller_id: ResellerId(row.try_get("reseller_id")?),
                sip_domain: row.try_get("sip_domain")?,
                active: status == Status::Active && reseller_status == Status::Active,
                server_header: row.try_get("sip_server_header")?,
                extensions: Vec::new(),
                devices: Vec::new(),
                ring_groups: Vec::new(),
                conference_rooms: Vec::new(),
            });
        }
        let index = |out: &[CustomerDirectory], id: i64| {
            out.binary_search_by_key(&id, |c| c.customer_id.0).ok()
        };
        let extensions = sqlx::query(
            "SELECT id, customer_id, number, display_name, dnd, record_calls FROM extensions \
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
                    record_calls: flag(row, "record_calls")?,
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
        let rooms = sqlx::query(
            "SELECT id, customer_id, number FROM conference_rooms \
             WHERE deleted_at IS NULL AND ($1 IS NULL OR customer_id = $1) ORDER BY id",
        )
        .bind(only)
        .fetch_all(pool)
        .await?;
        for row in &rooms {
            if let Some(i) = index(&out, row.try_get("customer_id")?) {
                out[i].conference_rooms.push(DirectoryRoom {
                    id: crate::ConferenceRoomId(row.try_get("id")?),
                    number: row.try_get("number")?,
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
        let rules = sqlx::query(&format!(
            "SELECT {} FROM business_hours b JOIN customers c ON c.id = b.customer_id \
             WHERE b.deleted_at IS NULL AND ($1 IS NULL OR b.customer_id = $1) ORDER BY b.id",
            crate::business_hours::columns()
        ))
        .bind(only)
        .fetch_all(pool)
        .await?;
        for row in &rules {
            let rule = crate::business_hours::from_row(row)?;
            if let Some(i) = index(&out, rule.customer_id.0) {
                out[i].business_hours.push(rule);
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
                let device = DeviceId(row.try_get("id")?);
                if let Some(destinations) = known.remove(&device) {
                    out[i].known_destinations.insert(device, destinations);
                }
            }
        }
        Ok(out)
    }

    /// The retail plans' rates of every customer (or of one), by plan.
    async fn retail_rates(&self, only: Option<i64>) -> Result<HashMap<PlanId, Arc<Vec<RateRule>>>> {
        let rows = sqlx::query(
            "SELECT plan_id, prefix, description, minute_micros, connection_micros, first_increment_s, \
             next_increment_s, minimum_micros FROM rates WHERE plan_id IN \
             (SELECT retail_plan_id FROM customers WHERE $1 IS NULL OR id = $1) ORDER BY plan_id, prefix",
        )
        .bind(only)
        .fetch_all(self.0.pool())
        .await?;
        let mut plans: HashMap<PlanId, Vec<RateRule>> = HashMap::new();
        for row in &rows {
            plans
                .entry(PlanId(row.try_get("plan_id")?))
                .or_default()
                .push(crate::price_plans::rate_from_row(row)?);
        }
        Ok(plans.into_iter().map(|(k, v)| (k, Arc::new(v))).collect())
    }

    /// The limits set for every customer and reseller (or for one customer
    /// and its reseller).
    async fn limits(&self, only: Option<i64>) -> Result<SetLimits> {
        let rows = sqlx::query(&format!(
            "SELECT customer_id, reseller_id, {} FROM call_limits WHERE $1 IS NULL OR customer_id = $1 \
             OR reseller_id = (SELECT reseller_id FROM customers WHERE id = $1)",
            crate::limits::COLUMNS
        ))
        .bind(only)
        .fetch_all(self.0.pool())
        .await?;
        let mut out = SetLimits::default();
        for row in &rows {
            let limits = crate::limits::from_row(row)?;
            if let Some(c) = row.try_get::<Option<i64>, _>("customer_id")? {
                out.customers.insert(CustomerId(c), limits);
            } else if let Some(r) = row.try_get::<Option<i64>, _>("reseller_id")? {
                out.resellers.insert(ResellerId(r), limits);
            }
        }
        Ok(out)
    }

    /// Every trunk with its routes (platform-internal: operator scope only).
    pub async fn trunks(&self, by: &Principal) -> Result<Vec<CarrierTrunk>> {
        by.may_read(Level::Operator)?;
        let trunks = self.0.trunks().list(by).await?;
        let mut out = Vec::with_capacity(trunks.len());
        for trunk in trunks {
            let routes = self.0.trunks().routes(by, trunk.id).await?;
            let secret = self.0.trunks().secret(by, trunk.id).await?;
            out.push(CarrierTrunk {
                trunk,
                routes,
                secret,
            });
        }
        Ok(out)
    }

    /// Every phone number assigned to a customer (operator scope only).
    pub async fn numbers(&self, by: &Principal) -> Result<Vec<RoutedNumber>> {
        by.may_read(Level::Operator)?;
        Ok(self
            .0
            .numbers()
            .list(by)
            .await?
            .into_iter()
            .filter_map(|n| {
                Some(RoutedNumber {
                    id: n.id,
                    e164: n.e164.trim_start_matches('+').to_owned(),
                    customer: n.customer_id?,
                    destination: n.destination,
                    record_calls: n.record_calls,
                })
            })
            .collect())
    }
}

/// The limits set, by owner.
#[derive(Default)]
struct SetLimits {
    customers: HashMap<CustomerId, Limits>,
    resellers: HashMap<ResellerId, Limits>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{TestDb, TwoTenants};

    async fn one_customer_reads_with_its_own_and_its_resellers_limits(db: TestDb) {
        let t = TwoTenants::create(&db.store).await;
        let sys = Principal::system();
        let customer = Limits {
            max_concurrent_outbound: Some(3),
            ..Limits::default()
        };
        let reseller = Limits {
            max_spend_per_day_micros: Some(5_000_000),
            ..Limits::unlimited()
        };
        let limits = db.store.call_limits();
        limits
            .set_for_customer(&sys, t.customer_a.id, &customer)
            .await
            .unwrap();
        limits
            .set_for_reseller(&sys, t.reseller_x.id, &reseller)
            .await
            .unwrap();
        let a = db
            .store
            .directory()
            .customer(&sys, t.customer_a.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((a.limits, a.reseller_limits), (customer, reseller));
        // B (another reseller's) has none set: the defaults.
        let b = db
            .store
            .directory()
            .customer(&sys, t.customer_b.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (b.limits, b.reseller_limits),
            (Limits::default(), Limits::unlimited())
        );
        // The whole load agrees.
        let all = db.store.directory().all(&sys).await.unwrap();
        let a_again = all
            .iter()
            .find(|c| c.customer_id == t.customer_a.id)
            .unwrap();
        assert_eq!(a_again.limits.max_concurrent_outbound, Some(3));
        assert!(db
            .store
            .directory()
            .customer(&t.reseller_x_admin, t.customer_a.id)
            .await
            .is_err());
    }

    crate::both_engines!(one_customer_reads_with_its_own_and_its_resellers_limits);
}
