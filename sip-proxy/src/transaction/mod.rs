//! The RFC 3261 §17 transaction layer: client and server state machines for
//! INVITE and non-INVITE requests (with the RFC 6026 Accepted state), their
//! timers, and the keys that match messages to them (§17.1.3, §17.2.3).
//!
//! The machines here do no I/O and read no clock: they are told what happened
//! and answer with what to send and which timers to arm. The handlers run
//! them under a lock per call (a `core` context each); the dispatcher fires
//! the timers.

mod client;
mod key;
mod server;

pub use client::{ClientOutcome, ClientState, ClientTransaction};
pub use key::{ClientKey, ServerKey};
pub use server::{ServerOutcome, ServerState, ServerTransaction};

use std::time::Duration;

/// RFC 3261 timer base values (Table 4).
#[derive(Debug, Clone, Copy)]
pub struct TimerConfig {
    /// RTT estimate, 500 ms.
    pub t1: Duration,
    /// Longest retransmit interval for non-INVITE requests and INVITE responses, 4 s.
    pub t2: Duration,
    /// Longest time a message stays in the network, 5 s.
    pub t4: Duration,
    /// Proxy INVITE transaction timeout (Timer C), more than 3 minutes.
    pub timer_c: Duration,
}

impl Default for TimerConfig {
    fn default() -> Self {
        TimerConfig {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            timer_c: Duration::from_secs(181),
        }
    }
}

impl TimerConfig {
    /// 64*T1: Timers B, F, H, J (unreliable), L and M.
    pub fn t1x64(&self) -> Duration {
        self.t1 * 64
    }
}

/// The named timers of RFC 3261 §17 and RFC 6026.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimerKind {
    /// INVITE client: retransmit request.
    A,
    /// INVITE client: transaction timeout.
    B,
    /// Proxy: no final response for too long on one branch.
    C,
    /// INVITE client: wait for response retransmissions after a non-2xx.
    D,
    /// Non-INVITE client: retransmit request.
    E,
    /// Non-INVITE client: transaction timeout.
    F,
    /// INVITE server: retransmit final non-2xx response.
    G,
    /// INVITE server: wait for ACK.
    H,
    /// INVITE server: wait for ACK retransmissions.
    I,
    /// Non-INVITE server: wait for request retransmissions.
    J,
    /// Non-INVITE client: wait for response retransmissions.
    K,
    /// INVITE server (RFC 6026): absorb INVITE retransmissions after a 2xx.
    L,
    /// INVITE client (RFC 6026): forward 2xx retransmissions.
    M,
}
