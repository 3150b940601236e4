//! What the platform stores about calls' media: whether a customer's calls
//! are anchored (the policy a reseller or customer may set over the
//! node's default) and the media figures each call record keeps.

use serde::{Deserialize, Serialize};

use crate::audit::{self, Event};
use crate::changes::Change;
use crate::principal::Level;
use crate::{CustomerId, Principal, ResellerId, Result};

/// When a call's media goes through the platform's relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum AnchorMode {
    /// Every call.
    Always,
    /// Calls with a carrier, and calls where either phone is behind NAT.
    Nat,
    /// None: phones send media to each other (only on one network).
    Never,
}

impl AnchorMode {
    pub const ALL: [AnchorMode; 3] = [AnchorMode::Always, AnchorMode::Nat, AnchorMode::Never];

    pub fn as_str(self) -> &'static str {
        match self {
            AnchorMode::Always => "always",
            AnchorMode::Nat => "nat",
            AnchorMode::Never => "never",
        }
    }

    pub fn parse(s: &str) -> Option<AnchorMode> {
        match s {
            "always" => Some(AnchorMode::Always),
            "nat" => Some(AnchorMode::Nat),
            "never" => Some(AnchorMode::Never),
            _ => None,
        }
    }
}

/// What one party of a call sent through the relay.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MediaSide {
    pub packets: u64,
    pub bytes: u64,
    /// Packets lost on the way to the relay (from RTP sequence numbers).
    pub lost: u64,
    /// Interarrival jitter at the relay, in milliseconds.
    pub jitter_ms: u64,
    /// What the party's own RTCP reports said it lost and measured as
    /// jitter in what it received (None: it sent no report).
    pub rtcp_lost: Option<i64>,
    pub rtcp_jitter_ms: Option<u64>,
    /// The codec of its first stream ("PCMA", "opus").
    pub codec: Option<String>,
    /// Where its media came from (after NAT).
    pub address: Option<String>,
}

/// A call record's media figures: per party, for anchored calls.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MediaFigures {
    pub caller: Option<MediaSide>,
    pub callee: Option<MediaSide>,
}

/// Who chose a customer's anchoring: its own choice and its reseller's
/// (None: left to the next level up, finally the SIP node's default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MediaPolicy {
    pub anchor: Option<AnchorMode>,
}

/// Reading and setting the anchoring choice of resellers and customers.
pub struct MediaPolicyStore<'s>(pub(crate) &'s crate::Store);

impl MediaPolicyStore<'_> {
    /// A reseller's choice (the reseller, the operator).
    pub async fn reseller(&self, by: &Principal, id: ResellerId) -> Result<MediaPolicy> {
        let r = self.0.resellers().get(by, id).await?;
        self.read("resellers", r.id.0).await
    }

    /// A customer's own choice (its admins, its reseller, the operator).
    pub async fn customer(&self, by: &Principal, id: CustomerId) -> Result<MediaPolicy> {
        let c = self.0.customers().get(by, id).await?;
        self.read("customers", c.id.0).await
    }

    /// Sets a reseller's choice (the reseller, the operator): it costs
    /// relay capacity, so it is the reseller's to decide.
    pub async fn set_reseller(
        &self,
        by: &Principal,
        id: ResellerId,
        p: MediaPolicy,
    ) -> Result<MediaPolicy> {
        let r = self.0.resellers().get(by, id).await?;
        by.may_write(Level::Reseller)?;
        self.write(
            by,
            "resellers",
            r.id.0,
            Some(r.id),
            None,
            p,
            Change::Reseller { reseller: r.id },
        )
        .await
    }

    /// Sets a customer's choice (its reseller, the operator).
    pub async fn set_customer(
        &self,
        by: &Principal,
        id: CustomerId,
        p: MediaPolicy,
    ) -> Result<MediaPolicy> {
        let c = self.0.customers().get(by, id).await?;
        by.may_write(Level::Reseller)?;
        let change = Change::Customer { customer: c.id };
        self.write(
            by,
            "customers",
            c.id.0,
            Some(c.reseller_id),
            Some(c.id),
            p,
            change,
        )
        .await
    }

    async fn read(&self, table: &'static str, id: i64) -> Result<MediaPolicy> {
        let value: Option<String> =
            sqlx::query_scalar(&format!("SELECT media_anchor FROM {table} WHERE id = $1"))
                .bind(id)
                .fetch_one(self.0.pool())
                .await?;
        Ok(MediaPolicy {
            anchor: value.as_deref().and_then(AnchorMode::parse),
        })
    }

    #[allow(clippy::too_many_arguments)]
    async fn write(
        &self,
        by: &Principal,
        table: &'static str,
        id: i64,
        reseller: Option<ResellerId>,
        customer: Option<CustomerId>,
        p: MediaPolicy,
        change: Change,
    ) -> Result<MediaPolicy> {
        let mut tx = self.0.begin().await?;
        sqlx::query(&format!(
            "UPDATE {table} SET media_anchor = $1 WHERE id = $2"
        ))
        .bind(p.anchor.map(AnchorMode::as_str))
        .bind(id)
        .execute(tx.conn())
        .await?;
        audit::record(
            &mut tx,
            by,
            Event {
                action: "set_media_anchor",
                object_type: if customer.is_some() {
                    "customer"
                } else {
                    "reseller"
                },
                object_id: Some(id),
                reseller,
                customer,
                details: serde_json::to_value(p).unwrap_or_default(),
            },
        )
        .await?;
        tx.changed(change);
        tx.commit().await?;
        self.read(table, id).await
    }
}

impl crate::Store {
    pub fn media_policy(&self) -> MediaPolicyStore<'_> {
        MediaPolicyStore(self)
    }
}
