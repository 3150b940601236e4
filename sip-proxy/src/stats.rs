//! Counters of the SIP side, read by `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($name:ident: $help:literal),+ $(,)?) => {
        /// Monotonic counters and gauges of this node's SIP traffic.
        #[derive(Default, Debug)]
        pub struct Stats { $(pub $name: AtomicU64,)+ }

        impl Stats {
            /// (name, help, value) of every counter.
            pub fn snapshot(&self) -> Vec<(&'static str, &'static str, u64)> {
                vec![$((stringify!($name), $help, self.$name.load(Ordering::Relaxed)),)+]
            }
        }
    };
}

counters! {
    received_requests: "SIP requests received.",
    received_responses: "SIP responses received.",
    malformed: "Messages refused as malformed (answered 4xx/5xx or dropped).",
    retransmissions_absorbed: "Request retransmissions answered from transaction state.",
    sent: "SIP messages sent (including retransmissions).",
    send_errors: "SIP messages that could not be sent.",
    shed: "Requests refused with 503 because the node was overloaded.",
    challenges: "Digest challenges sent (401/407).",
    auth_failures: "Requests with credentials that did not verify (wrong passwords among them).",
    guard_dropped: "Packets and requests dropped unanswered from banned sources or locked accounts.",
    guard_bans: "Sources banned (wrong passwords, scanners, floods).",
    guard_scanners: "Requests from SIP scanners (by User-Agent) dropped unanswered.",
    guard_throttled: "New requests beyond a source's budget, dropped unanswered.",
    guard_untracked: "Requests from sources the abuse guard had no room to track.",
    guard_account_locks: "Accounts locked from a trusted source after repeated wrong passwords.",
    guard_protections: "Accounts protected against a password guess from many sources.",
    guard_protected_refusals: "Right passwords of protected accounts from new sources, refused.",
    auth_sha256: "Requests authenticated with SHA-256 digest.",
    auth_md5: "Requests authenticated with MD5 digest (older phones).",
    registrations: "Successful REGISTER requests.",
    calls_started: "INVITEs forwarded to at least one device.",
    calls_answered: "Calls answered (2xx to the initial INVITE).",
    limit_refusals: "Outbound calls refused by a fraud or cost limit (403).",
    fraud_alarms: "Toll-fraud alarms raised (new destination, burst, after hours), blocking or not.",
    trunk_failovers: "Calls moved to the next trunk after a timeout or 5xx.",
    unrouted_calls: "Calls from carriers for numbers nobody holds (404).",
    trunk_registrations: "Registrations with carriers accepted (200), refreshes included.",
    trunk_registration_failures: "Registrations with carriers refused or unanswered.",
}

impl Stats {
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count_auth(&self, algorithm: crate::digest::Algorithm) {
        match algorithm {
            crate::digest::Algorithm::Sha256 => Stats::inc(&self.auth_sha256),
            crate::digest::Algorithm::Md5 => Stats::inc(&self.auth_md5),
        }
    }
}
