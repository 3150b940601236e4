//! What the platform stores about calls' media: whether a customer's calls
//! are anchored (the policy a reseller or customer may set over the
//! node's default) and the media figures each call record keeps.

use serde::{Deserialize, Serialize};

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
