//! What a SIP node is told at start.

use std::time::Duration;

use crate::digest::DigestConfig;
use crate::guard::GuardConfig;
use crate::transaction::TimerConfig;
use crate::transport::TransportConfig;

/// Registration rules (RFC 3261 §10.3).
#[derive(Debug, Clone)]
pub struct RegistrationPolicy {
    /// Shorter requested expiries get 423 Interval Too Brief.
    pub min_expires: u32,
    /// Longer requested expiries are shortened to this.
    pub max_expires: u32,
    /// Used when the REGISTER names no expiry.
    pub default_expires: u32,
    /// Granted expiries are shortened by a random 0..this percent, so that
    /// phones registered together do not all come back together.
    pub expiry_spread_percent: u32,
    pub max_contacts_per_device: usize,
}

impl Default for RegistrationPolicy {
    fn default() -> Self {
        RegistrationPolicy {
            min_expires: 60,
            max_expires: 3600,
            default_expires: 3600,
            expiry_spread_percent: 10,
            max_contacts_per_device: 10,
        }
    }
}

#[derive(Debug, Clone)]
pub struct SipConfig {
    pub transports: TransportConfig,
    /// Host or host:port put in Via and Record-Route instead of the socket's address.
    pub advertise: Option<String>,
    pub node_id: String,
    /// The platform secret (nonce keys, route tokens).
    pub secret: [u8; 32],
    pub timers: TimerConfig,
    pub digest: DigestConfig,
    pub registration: RegistrationPolicy,
    /// The abuse guard: password guessers, scanners, floods.
    pub guard: GuardConfig,
    /// Server transactions held at most; beyond, new requests get 503.
    pub max_transactions: usize,
    /// Answered calls are ended (and billed) at this length at the latest.
    pub max_call_duration: Duration,
    /// Where the call-record journal lives (local disk of this node).
    pub spool_dir: std::path::PathBuf,
    /// Default Server header for local responses (None: none).
    pub server_header: Option<String>,
    /// Media anchoring: the policy and the relay's ports and addresses.
    pub media: MediaConfig,
}

impl SipConfig {
    /// Settings for one node listening on `udp` and `tcp`.
    pub fn new(
        node_id: &str,
        secret: [u8; 32],
        udp: Vec<std::net::SocketAddr>,
        tcp: Vec<std::net::SocketAddr>,
    ) -> SipConfig {
        SipConfig {
            transports: TransportConfig {
                udp,
                tcp,
                limits: pbx_sip_message::Limits::default(),
                udp_receive_buffer: 8 << 20,
                max_tcp_connections: 10_000,
                tcp_idle_timeout: Duration::from_secs(3900),
                tcp_write_queue: 1024,
                udp_receivers: std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(2)
                    .max(2),
                udp_receive_on: crate::transport::ReceiveOn::Threads,
            },
            advertise: None,
            node_id: node_id.to_owned(),
            secret,
            timers: TimerConfig::default(),
            digest: DigestConfig::default(),
            registration: RegistrationPolicy::default(),
            guard: GuardConfig::default(),
            max_transactions: 200_000,
            max_call_duration: Duration::from_secs(4 * 3600),
            spool_dir: std::path::PathBuf::from("pbx-data/spool"),
            server_header: None,
            media: MediaConfig::default(),
        }
    }
}

/// The node's media settings.
#[derive(Debug, Clone)]
pub struct MediaConfig {
    /// The default when neither the customer nor its reseller chose.
    pub anchor: pbx_store::media::AnchorMode,
    pub relay: pbx_media::RelayConfig,
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            anchor: pbx_store::media::AnchorMode::Nat,
            relay: pbx_media::RelayConfig::default(),
        }
    }
}
