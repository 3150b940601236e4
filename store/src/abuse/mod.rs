//! SIP abuse defence, as stored: the sources banned by any SIP node (why,
//! for how long, who lifted them), the allow list (the operator's,
//! platform-wide, and each customer's office addresses), the accounts
//! protected against a distributed password guess, and each reseller's
//! thresholds where they differ from the nodes' defaults.
//!
//! The SIP nodes decide, in memory; this is what makes one node's decision
//! hold on every node within moments ([`crate::changes::Change::Guard`]) and
//! survive a restart. Tenants see what concerns them: a reseller the bans of
//! sources that guessed at its customers' accounts, a customer its own.

mod allow;
mod bans;
mod protections;
mod settings;

use serde::{Deserialize, Serialize};

use crate::rows::text_enum;
use crate::{CustomerId, DeviceId, Millis, Principal, Result, Store};

pub use allow::{AllowList, AllowedSource, NewAllowedSource};
pub use bans::{NewBan, SipBan, SipBans};
pub use protections::{AccountProtection, AccountProtections, NewProtection};
pub use settings::GuardSettingsStore;

text_enum!(
    /// Why a source was banned.
    BanReason {
        AuthFailures = "auth_failures",
        Scanner = "scanner",
        Enumeration = "enumeration",
        Flood = "flood"
    }
);

/// A reseller's own thresholds; None: the SIP nodes' defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GuardSettings {
    /// Wrong passwords from one address within the window before it is
    /// banned (3 to 20; the nodes' default is 5 within 10 minutes).
    pub auth_failures: Option<u32>,
    /// Wrong passwords for one account, from at least three addresses within the hour,
    /// before the account is protected (5 to 250; the default is 10).
    pub account_failures: Option<u32>,
}

/// The most wrong passwords from one address a node or reseller may allow
/// before a ban (a node keeps three times this many per address).
pub const MAX_AUTH_FAILURES: u32 = 20;
/// The most wrong passwords for one account before it is protected (a node
/// keeps this many per account).
pub const MAX_ACCOUNT_FAILURES: u32 = 250;

/// A ban as the SIP nodes need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BanInForce {
    pub source: crate::net::Source,
    pub banned_at: Millis,
    pub until: Millis,
    pub level: u32,
}

/// A protection as the SIP nodes need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtectionInForce {
    pub device: DeviceId,
    pub customer: CustomerId,
    pub sip_user: String,
    pub until: Millis,
}

/// Everything the SIP nodes enforce, as the store holds it.
#[derive(Debug, Clone, Default)]
pub struct GuardState {
    /// Bans not lifted that ended within the escalation window (so also
    /// those in force).
    pub bans: Vec<BanInForce>,
    pub protections: Vec<ProtectionInForce>,
    /// The operator's blocks (customer None) and customers' offices.
    pub allowed: Vec<(Option<CustomerId>, crate::net::Block)>,
}

/// The SIP nodes' view of the abuse defence.
pub struct Guard<'s>(pub(crate) &'s Store);

impl Guard<'_> {
    /// What is in force at `now` (platform-internal: the system only).
    pub async fn state(
        &self,
        by: &Principal,
        now: Millis,
        escalation: Millis,
    ) -> Result<GuardState> {
        Ok(GuardState {
            bans: self.0.sip_bans().for_nodes(by, now, escalation).await?,
            protections: self.0.account_protections().for_nodes(by, now).await?,
            allowed: self.0.sip_allow_list().for_nodes(by).await?,
        })
    }
}

impl Store {
    pub fn guard(&self) -> Guard<'_> {
        Guard(self)
    }
    pub fn sip_bans(&self) -> SipBans<'_> {
        SipBans(self)
    }
    pub fn sip_allow_list(&self) -> AllowList<'_> {
        AllowList(self)
    }
    pub fn account_protections(&self) -> AccountProtections<'_> {
        AccountProtections(self)
    }
    pub fn guard_settings(&self) -> GuardSettingsStore<'_> {
        GuardSettingsStore(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::{Block, Source};
    use crate::testing::{TestDb, TwoTenants};
    use crate::StoreError;

    const HOUR: Millis = 3_600_000;

    fn ban(source: &str, t: &TwoTenants, at: Millis) -> NewBan {
        NewBan {
            source: Source::parse(source).expect("source"),
            reason: BanReason::AuthFailures,
            level: 1,
            failures: 5,
            reseller: Some(t.reseller_x.id),
            customer: Some(t.customer_a.id),
            node_id: "n1".into(),
            banned_at: at,
            until: at + HOUR,
        }
    }

    async fn bans_are_seen_and_lifted_only_by_those_they_concern(db: TestDb) {
        let t = TwoTenants::create(&db.store).await;
        let sys = Principal::system();
        let now = crate::now_ms();
        let guessing_a = db
            .store
            .sip_bans()
            .record(&sys, &ban("192.0.2.1", &t, now))
            .await
            .unwrap();
        let scanner = db
            .store
            .sip_bans()
            .record(
                &sys,
                &NewBan {
                    reason: BanReason::Scanner,
                    reseller: None,
                    customer: None,
                    failures: 0,
                    ..ban("2001:db8:1:2::/64", &t, now)
                },
            )
            .await
            .unwrap();
        // Nobody but the system writes bans.
        assert!(db
            .store
            .sip_bans()
            .record(&t.reseller_x_admin, &ban("192.0.2.9", &t, now))
            .await
            .is_err());
        // The operator sees both; reseller X and customer A the one about A;
        // reseller Y and customer B nothing.
        assert_eq!(
            db.store
                .sip_bans()
                .list(&sys, true, 10)
                .await
                .unwrap()
                .len(),
            2
        );
        for by in [&t.reseller_x_admin, &t.customer_a_admin] {
            let seen = db.store.sip_bans().list(by, true, 10).await.unwrap();
            assert_eq!(
                seen.iter().map(|b| b.id).collect::<Vec<_>>(),
                vec![guessing_a]
            );
        }
        for by in [&t.reseller_y_admin, &t.customer_b_admin] {
            assert!(db
                .store
                .sip_bans()
                .list(by, false, 10)
                .await
                .unwrap()
                .is_empty());
            assert!(matches!(
                db.store.sip_bans().lift(by, guessing_a).await,
                Err(StoreError::NotFound)
            ));
        }
        assert!(
            db.store
                .sip_bans()
                .lift(&t.customer_a_user, guessing_a)
                .await
                .is_err(),
            "users may not"
        );
        assert!(matches!(
            db.store.sip_bans().lift(&t.reseller_x_admin, scanner).await,
            Err(StoreError::NotFound)
        ));
        // The nodes see both, the IPv6 one as its /64.
        let state = db
            .store
            .guard()
            .state(&sys, now, 7 * 24 * HOUR)
            .await
            .unwrap();
        assert_eq!(state.bans.len(), 2);
        assert!(state
            .bans
            .iter()
            .any(|b| b.source == Source::parse("2001:db8:1:2::9").unwrap()));
        // The customer lifts its ban: gone for the nodes, kept as history.
        let lifted = db
            .store
            .sip_bans()
            .lift(&t.customer_a_admin, guessing_a)
            .await
            .unwrap();
        assert!(
            !lifted.active
                && lifted
                    .lifted_by
                    .as_deref()
                    .is_some_and(|b| b.contains("login:"))
        );
        assert!(matches!(
            db.store
                .sip_bans()
                .lift(&t.customer_a_admin, guessing_a)
                .await,
            Err(StoreError::Conflict(_))
        ));
        let state = db
            .store
            .guard()
            .state(&sys, now, 7 * 24 * HOUR)
            .await
            .unwrap();
        assert_eq!(state.bans.len(), 1);
        assert_eq!(
            db.store
                .sip_bans()
                .list(&t.customer_a_admin, false, 10)
                .await
                .unwrap()
                .len(),
            1
        );
        assert!(db
            .store
            .sip_bans()
            .list(&t.customer_a_admin, true, 10)
            .await
            .unwrap()
            .is_empty());
        // Each ban and lift is in the audit log of whom it concerns.
        let audit = db
            .store
            .audit()
            .list(&t.customer_a_admin, None, 20)
            .await
            .unwrap();
        let actions: Vec<&str> = audit.iter().map(|a| a.action.as_str()).collect();
        assert!(
            actions.contains(&"ban_sip_source") && actions.contains(&"lift_sip_ban"),
            "{actions:?}"
        );
        // Bans long over are not the nodes' business, but count for escalation within the window.
        let old = db
            .store
            .sip_bans()
            .record(&sys, &ban("192.0.2.3", &t, now - 3 * HOUR))
            .await
            .unwrap();
        let state = db
            .store
            .guard()
            .state(&sys, now, 7 * 24 * HOUR)
            .await
            .unwrap();
        assert!(state
            .bans
            .iter()
            .any(|b| b.until < now && b.source == Source::parse("192.0.2.3").unwrap()));
        assert!(!db.store.sip_bans().get(&sys, old).await.unwrap().active);
    }

    async fn allow_lists_are_the_operators_and_each_customers_own(db: TestDb) {
        let t = TwoTenants::create(&db.store).await;
        let sys = Principal::system();
        let entry = |block: &str, customer: Option<CustomerId>| NewAllowedSource {
            block: block.into(),
            note: "office".into(),
            customer_id: customer,
        };
        let operators = db
            .store
            .sip_allow_list()
            .add(&sys, &entry("192.0.2.0/24", None))
            .await
            .unwrap();
        assert_eq!(operators.block, "192.0.2.0/24");
        // Only the operator has platform-wide entries.
        for by in [&t.reseller_x_admin, &t.customer_a_admin] {
            assert!(db
                .store
                .sip_allow_list()
                .add(by, &entry("198.51.100.1", None))
                .await
                .is_err());
        }
        let office = db
            .store
            .sip_allow_list()
            .add(
                &t.customer_a_admin,
                &entry("198.51.100.7", Some(t.customer_a.id)),
            )
            .await
            .unwrap();
        assert_eq!(office.block, "198.51.100.7/32");
        assert_eq!(office.reseller_id, Some(t.reseller_x.id));
        // A customer's entry is an office, not a network; nobody else's customer.
        let too_wide = db
            .store
            .sip_allow_list()
            .add(
                &t.customer_a_admin,
                &entry("10.0.0.0/8", Some(t.customer_a.id)),
            )
            .await;
        assert!(matches!(too_wide, Err(StoreError::Invalid(_))));
        assert!(matches!(
            db.store
                .sip_allow_list()
                .add(
                    &t.reseller_y_admin,
                    &entry("198.51.100.8", Some(t.customer_a.id))
                )
                .await,
            Err(StoreError::NotFound)
        ));
        assert!(matches!(
            db.store
                .sip_allow_list()
                .add(
                    &t.customer_a_admin,
                    &entry("not an address", Some(t.customer_a.id))
                )
                .await,
            Err(StoreError::Invalid(_))
        ));
        assert!(matches!(
            db.store
                .sip_allow_list()
                .add(
                    &t.reseller_x_admin,
                    &entry("198.51.100.7", Some(t.customer_a.id))
                )
                .await,
            Err(StoreError::Conflict(_))
        ));
        // Who sees what.
        assert_eq!(db.store.sip_allow_list().list(&sys).await.unwrap().len(), 2);
        let ids = |v: Vec<AllowedSource>| v.into_iter().map(|a| a.id).collect::<Vec<_>>();
        assert_eq!(
            ids(db
                .store
                .sip_allow_list()
                .list(&t.reseller_x_admin)
                .await
                .unwrap()),
            vec![office.id]
        );
        assert_eq!(
            ids(db
                .store
                .sip_allow_list()
                .list(&t.customer_a_admin)
                .await
                .unwrap()),
            vec![office.id]
        );
        assert!(db
            .store
            .sip_allow_list()
            .list(&t.reseller_y_admin)
            .await
            .unwrap()
            .is_empty());
        assert!(db
            .store
            .sip_allow_list()
            .list(&t.customer_b_admin)
            .await
            .unwrap()
            .is_empty());
        assert!(matches!(
            db.store
                .sip_allow_list()
                .remove(&t.customer_b_admin, office.id)
                .await,
            Err(StoreError::NotFound)
        ));
        assert!(matches!(
            db.store
                .sip_allow_list()
                .remove(&t.reseller_x_admin, operators.id)
                .await,
            Err(StoreError::NotFound)
        ));
        // The nodes get both.
        let state = db
            .store
            .guard()
            .state(&sys, crate::now_ms(), HOUR)
            .await
            .unwrap();
        assert_eq!(
            state.allowed,
            vec![
                (None, Block::parse("192.0.2.0/24").unwrap()),
                (Some(t.customer_a.id), Block::parse("198.51.100.7").unwrap())
            ]
        );
        // Allowing an address ends its bans about that customer.
        let now = crate::now_ms();
        let banned = db
            .store
            .sip_bans()
            .record(
                &sys,
                &NewBan {
                    source: Source::parse("198.51.100.9").unwrap(),
                    reason: BanReason::AuthFailures,
                    level: 1,
                    failures: 5,
                    reseller: Some(t.reseller_x.id),
                    customer: Some(t.customer_a.id),
                    node_id: "n1".into(),
                    banned_at: now,
                    until: now + HOUR,
                },
            )
            .await
            .unwrap();
        db.store
            .sip_allow_list()
            .add(
                &t.customer_a_admin,
                &entry("198.51.100.0/24", Some(t.customer_a.id)),
            )
            .await
            .unwrap();
        assert!(!db.store.sip_bans().get(&sys, banned).await.unwrap().active);
        db.store
            .sip_allow_list()
            .remove(&t.reseller_x_admin, office.id)
            .await
            .unwrap();
        assert_eq!(db.store.sip_allow_list().list(&sys).await.unwrap().len(), 2);
    }

    async fn protections_are_told_once_and_lifted_by_the_customer(db: TestDb) {
        let t = TwoTenants::create(&db.store).await;
        let sys = Principal::system();
        let now = crate::now_ms();
        let new = NewProtection {
            reseller: t.reseller_x.id,
            customer: t.customer_a.id,
            device: t.device_a.id,
            sip_user: t.device_a.sip_user.clone(),
            failures: 12,
            sources: 12,
            node_id: "n1".into(),
            since: now,
            until: now + HOUR,
        };
        let id = db
            .store
            .account_protections()
            .record(&sys, &new)
            .await
            .unwrap()
            .expect("stored");
        // A device of another customer under this customer's name is not stored.
        let forged = NewProtection {
            device: t.device_b.id,
            ..new.clone()
        };
        assert_eq!(
            db.store
                .account_protections()
                .record(&sys, &forged)
                .await
                .unwrap(),
            None
        );
        let state = db.store.guard().state(&sys, now, HOUR).await.unwrap();
        assert_eq!(state.protections.len(), 1);
        assert_eq!(state.protections[0].device, t.device_a.id);
        // Claimed for e-mail by one node only.
        let first = db
            .store
            .account_protections()
            .claim_unnotified(&sys, now)
            .await
            .unwrap();
        assert_eq!(first.iter().map(|p| p.id).collect::<Vec<_>>(), vec![id]);
        assert!(db
            .store
            .account_protections()
            .claim_unnotified(&sys, now)
            .await
            .unwrap()
            .is_empty());
        db.store
            .account_protections()
            .notified(&sys, id, now)
            .await
            .unwrap();
        assert!(db
            .store
            .account_protections()
            .claim_unnotified(&sys, now + 10 * 60_000)
            .await
            .unwrap()
            .is_empty());
        // Seen by its customer and reseller, nobody else.
        for by in [&t.customer_a_admin, &t.reseller_x_admin] {
            assert_eq!(
                db.store
                    .account_protections()
                    .list(by, None, true, 10)
                    .await
                    .unwrap()
                    .len(),
                1
            );
        }
        for by in [&t.customer_b_admin, &t.reseller_y_admin] {
            assert!(db
                .store
                .account_protections()
                .list(by, None, false, 10)
                .await
                .unwrap()
                .is_empty());
            assert!(db.store.account_protections().lift(by, id).await.is_err());
        }
        assert!(db
            .store
            .account_protections()
            .list(&t.reseller_y_admin, Some(t.customer_a.id), false, 10)
            .await
            .is_err());
        let lifted = db
            .store
            .account_protections()
            .lift(&t.customer_a_admin, id)
            .await
            .unwrap();
        assert!(!lifted.active);
        assert!(db
            .store
            .guard()
            .state(&sys, now, HOUR)
            .await
            .unwrap()
            .protections
            .is_empty());
    }

    async fn resellers_set_their_own_thresholds_within_bounds(db: TestDb) {
        let t = TwoTenants::create(&db.store).await;
        let settings = GuardSettings {
            auth_failures: Some(3),
            account_failures: Some(50),
        };
        assert_eq!(
            db.store
                .guard_settings()
                .set(&t.reseller_x_admin, t.reseller_x.id, &settings)
                .await
                .unwrap(),
            settings
        );
        // Beyond what a node keeps, a threshold would never be reached.
        for bad in [
            GuardSettings {
                auth_failures: Some(1),
                account_failures: None,
            },
            GuardSettings {
                auth_failures: Some(MAX_AUTH_FAILURES + 1),
                account_failures: None,
            },
            GuardSettings {
                auth_failures: None,
                account_failures: Some(MAX_ACCOUNT_FAILURES + 1),
            },
        ] {
            assert!(matches!(
                db.store
                    .guard_settings()
                    .set(&t.reseller_x_admin, t.reseller_x.id, &bad)
                    .await,
                Err(StoreError::Invalid(_))
            ));
        }
        assert!(db
            .store
            .guard_settings()
            .set(&t.reseller_y_admin, t.reseller_x.id, &settings)
            .await
            .is_err());
        assert!(db
            .store
            .guard_settings()
            .set(&t.customer_a_admin, t.reseller_x.id, &settings)
            .await
            .is_err());
        assert!(db
            .store
            .guard_settings()
            .get(&t.reseller_y_admin, t.reseller_x.id)
            .await
            .is_err());
        // The SIP directory carries the reseller's thresholds to its customers.
        let sys = Principal::system();
        let a = db
            .store
            .directory()
            .customer(&sys, t.customer_a.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(a.guard_settings, settings);
        let b = db
            .store
            .directory()
            .customer(&sys, t.customer_b.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(b.guard_settings, GuardSettings::default());
    }

    crate::both_engines!(
        bans_are_seen_and_lifted_only_by_those_they_concern,
        allow_lists_are_the_operators_and_each_customers_own,
        protections_are_told_once_and_lifted_by_the_customer,
        resellers_set_their_own_thresholds_within_bounds,
    );
}
