//! The SIP abuse guard: what keeps password guessers, scanners and floods
//! out, and what tells of them.
//!
//! - **Wrong digests** are counted per source (an IPv4 address or an IPv6
//!   /64; only answers to nonces sent to that very source count, see
//!   [`crate::digest`]) and per account. A stranger reaching the threshold
//!   (5 within 10 minutes by default, a reseller may set its own) is
//!   **banned** for an escalating time (15 min, 1 h, 24 h); its packets are
//!   then dropped before they are parsed. A source a device authenticated
//!   from lately (an office behind NAT) is not banned for one phone with a
//!   wrong password: that account is locked from there instead, and only a
//!   source that keeps failing on several accounts is banned.
//! - **A distributed guess** (many sources, one account) **protects** the
//!   account: for an hour it authenticates only from sources it registered
//!   from before, so its phones keep working and the guessers get nothing.
//! - **Scanners** (by User-Agent) are dropped unanswered and banned, and so
//!   is a stranger that collects challenges without ever answering one
//!   rightly (enumerating extensions); **new requests** beyond a source's
//!   budget (a token bucket) ban it. Trusted
//!   sources are throttled, never banned, by either, since both can be
//!   forged with a spoofed address.
//! - The **allow list**: the operator's blocks are exempt from everything;
//!   a customer's office blocks are never banned for what they do to that
//!   customer's accounts.
//!
//! Everything is decided in memory, on the SIP path, without waiting for
//! the database; decisions are queued as [`Report`]s that the node writes
//! to the store, which carries them to every other node.

mod accounts;
mod bans;
mod sources;
pub mod sync;

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, RwLock};

use pbx_store::abuse::{BanReason, GuardState};
use pbx_store::net::{Block, Source};
use pbx_store::{CustomerId, DeviceId, Millis, ResellerId};

pub use accounts::Protection;
pub use sources::Budget;

use crate::directory::Tenant;
use crate::stats::Stats;

const MINUTE: Millis = 60_000;
const HOUR: Millis = 60 * MINUTE;
const DAY: Millis = 24 * HOUR;
/// Accounts a trusted source may get locked out of before it is banned.
const TRUSTED_LOCKS_BEFORE_BAN: u32 = 3;
/// Addresses a wrong-password run for one account must come from before it
/// counts as a distributed guess.
const PROTECT_AFTER_SOURCES: u32 = 3;
/// Bans held at most (spoofed sources must not exhaust memory or the store).
const MAX_BANS: usize = 100_000;

/// The node's settings (`--sip-guard-…`).
#[derive(Debug, Clone)]
pub struct GuardConfig {
    /// Off: nothing is counted, banned or dropped (benchmarks, tests of
    /// other layers).
    pub enabled: bool,
    /// Wrong digests from one source within `failure_window` before a ban.
    pub auth_failures: u32,
    pub failure_window: Millis,
    /// How long the first, second, … ban of a source lasts (the last repeats).
    pub ban_steps: Vec<Millis>,
    /// Bans within this long make the next one longer.
    pub escalation_window: Millis,
    /// Wrong digests for one account within `account_window` before it is protected.
    pub account_failures: u32,
    pub account_window: Millis,
    /// How long a protection lasts.
    pub protection: Millis,
    /// New requests a source may send.
    pub budget: Budget,
    /// Challenges to requests without credentials a stranger (a source no
    /// device authenticated from) may get within `failure_window` before it
    /// is banned: what enumerating extensions looks like.
    pub challenges: u32,
    /// A source a device authenticated from is trusted this long.
    pub trust: Millis,
    /// A device's known sources are remembered this long.
    pub known_memory: Millis,
    /// User-Agent fragments of scanners (lower case).
    pub scanners: Vec<String>,
    /// Blocks exempt from everything, beside the operator's list in the store.
    pub allow: Vec<Block>,
}

/// Scanner fingerprints dropped by default: the User-Agents of SIPVicious
/// (`friendly-scanner`, `sipvicious`), sipcli, VaxSIP's scanner SDK,
/// sundayddr, iWar, SIPScan/sip-scan, smap and SIVuS.
pub const SCANNERS: &[&str] = &[
    "friendly-scanner",
    "sipvicious",
    "sipcli",
    "vaxsipuseragent",
    "sundayddr",
    "iwar",
    "sipscan",
    "sip-scan",
    "smap",
    "sivus",
];

impl Default for GuardConfig {
    fn default() -> Self {
        GuardConfig {
            enabled: true,
            auth_failures: 5,
            failure_window: 10 * MINUTE,
            ban_steps: vec![15 * MINUTE, HOUR, DAY],
            escalation_window: 7 * DAY,
            account_failures: 10,
            account_window: HOUR,
            protection: HOUR,
            budget: Budget {
                rate: 200,
                burst: 2000,
            },
            challenges: 100,
            trust: DAY,
            known_memory: 30 * DAY,
            scanners: SCANNERS.iter().map(|s| (*s).to_owned()).collect(),
            allow: Vec::new(),
        }
    }
}

/// Keep the request, or drop it without a word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    Pass,
    Drop,
}

/// A decision to write to the store and announce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    Banned {
        source: Source,
        reason: BanReason,
        level: u32,
        at: Millis,
        until: Millis,
        /// Wrong digests that led to it (0 for scanners and floods).
        failures: u32,
        /// Whose accounts were guessed at (the last one), if anyone's.
        reseller: Option<ResellerId>,
        customer: Option<CustomerId>,
    },
    Protected {
        device: DeviceId,
        customer: CustomerId,
        reseller: ResellerId,
        sip_user: String,
        failures: u32,
        sources: u32,
        at: Millis,
        until: Millis,
    },
}

/// The allow lists in force.
#[derive(Debug, Default)]
pub struct AllowLists {
    /// Exempt from everything: the node's configured blocks and the operator's list.
    pub everyone: Vec<Block>,
    /// Each customer's office addresses.
    pub customers: HashMap<CustomerId, Vec<Block>>,
}

impl AllowLists {
    fn exempt(&self, ip: IpAddr) -> bool {
        !self.everyone.is_empty() && self.everyone.iter().any(|b| b.contains(ip))
    }

    fn allowed_anywhere(&self, ip: IpAddr) -> bool {
        self.customers
            .values()
            .any(|blocks| blocks.iter().any(|b| b.contains(ip)))
    }

    fn allows(&self, customer: CustomerId, ip: IpAddr) -> bool {
        self.customers
            .get(&customer)
            .is_some_and(|blocks| blocks.iter().any(|b| b.contains(ip)))
    }
}

pub struct Guard {
    config: GuardConfig,
    stats: Arc<Stats>,
    bans: bans::Bans,
    sources: sources::Sources,
    accounts: accounts::Accounts,
    allow: RwLock<Arc<AllowLists>>,
    reports: Mutex<Vec<Report>>,
    /// Announced already, not stored yet.
    retries: Mutex<Vec<Report>>,
    hasher: std::hash::RandomState,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Whether `user_agent` contains one of `fragments` (lower case, as
/// [`Guard::new`] keeps them), in any case.
fn is_scanner(user_agent: &str, fragments: &[String]) -> bool {
    if fragments.is_empty() {
        return false;
    }
    // Every request is asked: lower-case the User-Agent once, on the stack,
    // and search with `str::contains`. Tools name themselves at the start;
    // a fingerprint hidden behind 256 bytes of padding is a tool that could
    // as well send any other name.
    let mut buf = [0u8; 256];
    let n = user_agent.len().min(buf.len());
    buf[..n].copy_from_slice(&user_agent.as_bytes()[..n]);
    buf[..n].make_ascii_lowercase();
    let text = match std::str::from_utf8(&buf[..n]) {
        Ok(text) => text,
        // Cut inside a character: the whole characters before it.
        Err(e) => std::str::from_utf8(&buf[..e.valid_up_to()]).unwrap_or_default(),
    };
    fragments
        .iter()
        .any(|f| !f.is_empty() && text.contains(f.as_str()))
}

impl Guard {
    pub fn new(mut config: GuardConfig, stats: Arc<Stats>) -> Guard {
        for fragment in &mut config.scanners {
            fragment.make_ascii_lowercase();
        }
        let allow = AllowLists {
            everyone: config.allow.clone(),
            customers: HashMap::new(),
        };
        Guard {
            config,
            stats,
            bans: bans::Bans::default(),
            sources: sources::Sources::default(),
            accounts: accounts::Accounts::default(),
            allow: RwLock::new(Arc::new(allow)),
            reports: Mutex::new(Vec::new()),
            retries: Mutex::new(Vec::new()),
            hasher: std::hash::RandomState::new(),
        }
    }

    pub fn config(&self) -> &GuardConfig {
        &self.config
    }

    fn allow_lists(&self) -> Arc<AllowLists> {
        self.allow
            .read()
            .map(|a| a.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    fn account(&self, customer: CustomerId, user: &str) -> u64 {
        self.hasher.hash_one((customer, user))
    }

    /// Before parsing: whether a packet from `ip` is dropped (a ban; an
    /// allowed address inside a banned IPv6 /64 still passes).
    pub fn drops(&self, ip: IpAddr, now: Millis, carrier: impl FnOnce() -> bool) -> bool {
        if !self.config.enabled || !self.bans.holds(Source::of(ip), now) {
            return false;
        }
        // Asked only of banned sources: a carrier (whose address a spoofer
        // may have got banned) still passes.
        if self.allow_lists().exempt(ip) || carrier() {
            return false;
        }
        Stats::inc(&self.stats.guard_dropped);
        true
    }

    /// A parsed request from `ip`: dropped if it is a scanner's, or a new
    /// request (outside any dialog) beyond the source's budget. `customer`
    /// names the customer the request is for and `carrier` says whether
    /// `ip` is a carrier's, both asked only when a limit is hit: a carrier
    /// is never banned (a spoofer could cut its calls off) nor throttled.
    pub fn screen(
        &self,
        ip: IpAddr,
        user_agent: Option<&str>,
        new_request: bool,
        now: Millis,
        customer: impl FnOnce() -> Option<CustomerId>,
        carrier: impl FnOnce() -> bool,
    ) -> Screen {
        if !self.config.enabled {
            return Screen::Pass;
        }
        let allow = self.allow_lists();
        if allow.exempt(ip) {
            return Screen::Pass;
        }
        let source = Source::of(ip);
        // Scanner names and floods need no answer, so a spoofer can send
        // them in anyone's name: they never ban a trusted source, and never
        // an office on any customer's allow list (whichever customer the
        // request names); they only drop the request.
        let forgiven = |customer: Option<CustomerId>| {
            self.sources.trusted(source, now)
                || customer.is_some_and(|c| allow.allows(c, ip))
                || allow.allowed_anywhere(ip)
        };
        if user_agent.is_some_and(|ua| is_scanner(ua, &self.config.scanners)) {
            Stats::inc(&self.stats.guard_scanners);
            if !forgiven(customer()) && !carrier() {
                self.ban(source, BanReason::Scanner, 0, None, now);
            }
            return Screen::Drop;
        }
        if !new_request {
            return Screen::Pass;
        }
        let taken = self.sources.take(source, now, self.config.budget);
        let spent = matches!(
            taken,
            sources::Taken::Spent { .. } | sources::Taken::Overflowing
        );
        if spent && carrier() {
            return Screen::Pass;
        }
        match taken {
            sources::Taken::Granted => Screen::Pass,
            sources::Taken::Untracked => {
                Stats::inc(&self.stats.guard_untracked);
                Screen::Pass
            }
            // Untracked sources together beyond one source's budget: which
            // of them floods is unknown, so nobody is banned.
            sources::Taken::Overflowing => {
                Stats::inc(&self.stats.guard_untracked);
                Stats::inc(&self.stats.guard_throttled);
                Screen::Drop
            }
            sources::Taken::Spent { trusted } => {
                Stats::inc(&self.stats.guard_throttled);
                if !trusted && !forgiven(customer()) {
                    self.ban(source, BanReason::Flood, 0, None, now);
                }
                Screen::Drop
            }
        }
    }

    /// Before credentials are checked: false when `user` of `tenant` is
    /// locked from this source (a trusted source that kept failing on it).
    pub fn may_try(&self, ip: IpAddr, tenant: &Tenant, user: &str, now: Millis) -> bool {
        if !self.config.enabled {
            return true;
        }
        let locked = self
            .sources
            .locked(Source::of(ip), self.account(tenant.customer, user), now);
        if locked {
            Stats::inc(&self.stats.guard_dropped);
        }
        !locked
    }

    /// A request from `ip` for `tenant` without credentials is about to be
    /// challenged: Drop (and a ban) when a stranger has had too many
    /// challenges it never answered with a right password.
    pub fn challenging(&self, ip: IpAddr, tenant: &Tenant, now: Millis) -> Screen {
        if !self.config.enabled {
            return Screen::Pass;
        }
        let allow = self.allow_lists();
        if allow.exempt(ip) || allow.allows(tenant.customer, ip) || allow.allowed_anywhere(ip) {
            return Screen::Pass;
        }
        let source = Source::of(ip);
        match self
            .sources
            .challenged(source, now, self.config.failure_window, self.config.budget)
        {
            Some((count, false)) if count > self.config.challenges => {
                self.ban(source, BanReason::Enumeration, 0, Some(tenant), now);
                Screen::Drop
            }
            _ => Screen::Pass,
        }
    }

    /// A wrong digest from `ip` for `user` of `tenant` (`device` if such a
    /// device exists): counted; Drop when the source is banned or the
    /// account locked from it by this very failure.
    pub fn wrong_digest(
        &self,
        ip: IpAddr,
        tenant: &Tenant,
        user: &str,
        device: Option<DeviceId>,
        now: Millis,
    ) -> Screen {
        if !self.config.enabled {
            return Screen::Pass;
        }
        let allow = self.allow_lists();
        if allow.exempt(ip) {
            return Screen::Pass;
        }
        let source = Source::of(ip);
        let allowed = allow.allows(tenant.customer, ip);
        let settings = tenant.guard_settings;
        // Accounts that exist only: a guess at a made-up user protects
        // nobody, and must not cost an entry.
        if let (false, Some(device)) = (allowed, device) {
            let counted = self.accounts.fail(
                tenant.customer,
                user,
                source,
                now,
                self.config.account_window,
            );
            let threshold = settings
                .account_failures
                .unwrap_or(self.config.account_failures);
            // One misconfigured phone is not a distributed guess: its own
            // address is banned or locked instead.
            if counted.failures >= threshold && counted.sources >= PROTECT_AFTER_SOURCES {
                self.protect(tenant, device, user, counted, now);
            }
        }
        let account = self.account(tenant.customer, user);
        let Some(failures) = self.sources.fail(
            source,
            account,
            now,
            self.config.failure_window,
            self.config.budget,
        ) else {
            Stats::inc(&self.stats.guard_untracked);
            return Screen::Pass;
        };
        let threshold = settings.auth_failures.unwrap_or(self.config.auth_failures);
        let ban = || {
            self.ban(
                source,
                BanReason::AuthFailures,
                failures.total,
                Some(tenant),
                now,
            )
        };
        if failures.trusted || allowed {
            // Trust is no licence to spray a few guesses at every account.
            if !allowed && failures.total >= threshold * TRUSTED_LOCKS_BEFORE_BAN {
                ban();
                return Screen::Drop;
            }
            if failures.for_account < threshold {
                return Screen::Pass;
            }
            let until = now.saturating_add(
                self.config
                    .ban_steps
                    .first()
                    .copied()
                    .unwrap_or(15 * MINUTE),
            );
            self.sources.lock(source, account, until);
            Stats::inc(&self.stats.guard_account_locks);
            tracing::warn!(customer = %tenant.customer, user, %source,
                "SIP account locked from a trusted source after repeated wrong passwords");
            if !allowed && failures.locked_accounts + 1 >= TRUSTED_LOCKS_BEFORE_BAN {
                ban();
            }
            return Screen::Drop;
        }
        if failures.total >= threshold {
            ban();
            return Screen::Drop;
        }
        Screen::Pass
    }

    /// Whether the right password of `device` from `ip` is refused: its
    /// account is protected and `ip` is not a source it registered from.
    /// The caller then answers and counts it as a wrong one, so that a
    /// guesser cannot tell (not even by a stale nonce).
    pub fn refuses(&self, ip: IpAddr, tenant: &Tenant, device: DeviceId, now: Millis) -> bool {
        if !self.config.enabled {
            return false;
        }
        let source = Source::of(ip);
        if !self.accounts.is_protected(device, now)
            || self
                .accounts
                .knows(device, source, now, self.config.known_memory)
        {
            return false;
        }
        let allow = self.allow_lists();
        if allow.exempt(ip) || allow.allows(tenant.customer, ip) {
            return false;
        }
        Stats::inc(&self.stats.guard_protected_refusals);
        tracing::info!(customer = %tenant.customer, device = %device, %source,
            "right password for a protected account from a new source: refused");
        true
    }

    /// Credentials of `device` verified from `ip`: false when [`Guard::refuses`]
    /// them. Remembers a registering device's source and trusts the source.
    pub fn right_digest(
        &self,
        ip: IpAddr,
        tenant: &Tenant,
        device: DeviceId,
        registering: bool,
        now: Millis,
    ) -> bool {
        if !self.config.enabled {
            return true;
        }
        if self.refuses(ip, tenant, device, now) {
            return false;
        }
        let source = Source::of(ip);
        if registering {
            self.accounts.remember(device, source, now);
        }
        self.sources.trust(
            source,
            now,
            now.saturating_add(self.config.trust),
            self.config.budget,
        );
        true
    }

    /// A binding restored at start: its device registered from `ip`.
    pub fn restored(&self, device: DeviceId, ip: IpAddr, now: Millis) {
        let source = Source::of(ip);
        self.accounts.remember(device, source, now);
        self.sources.trust(
            source,
            now,
            now.saturating_add(self.config.trust),
            self.config.budget,
        );
    }

    fn ban(
        &self,
        source: Source,
        reason: BanReason,
        failures: u32,
        tenant: Option<&Tenant>,
        now: Millis,
    ) {
        if self.bans.holds(source, now) {
            return;
        }
        if self.bans.len() >= MAX_BANS {
            // Its requests are still dropped one by one by the caller.
            tracing::debug!(%source, "SIP ban not recorded: too many bans in force");
            return;
        }
        let ban = self.bans.ban(
            source,
            now,
            &self.config.ban_steps,
            self.config.escalation_window,
        );
        self.sources.reset(source);
        Stats::inc(&self.stats.guard_bans);
        tracing::warn!(%source, reason = %reason, level = ban.level, until = ban.until,
            customer = ?tenant.map(|t| t.customer), "SIP source banned");
        lock(&self.reports).push(Report::Banned {
            source,
            reason,
            level: ban.level,
            at: now,
            until: ban.until,
            failures,
            reseller: tenant.map(|t| t.reseller),
            customer: tenant.map(|t| t.customer),
        });
    }

    fn protect(
        &self,
        tenant: &Tenant,
        device: DeviceId,
        user: &str,
        counted: accounts::Counted,
        now: Millis,
    ) {
        let until = now.saturating_add(self.config.protection);
        let protection = Protection {
            customer: tenant.customer,
            sip_user: user.to_owned(),
            until,
        };
        if !self.accounts.protect(device, protection, now) {
            return;
        }
        Stats::inc(&self.stats.guard_protections);
        tracing::warn!(customer = %tenant.customer, device = %device, user,
            failures = counted.failures, sources = counted.sources,
            "SIP account protected: wrong passwords from many sources");
        lock(&self.reports).push(Report::Protected {
            device,
            customer: tenant.customer,
            reseller: tenant.reseller,
            sip_user: user.to_owned(),
            failures: counted.failures,
            sources: counted.sources,
            at: now,
            until,
        });
    }

    /// Decisions since the last call, to store and announce.
    pub fn take_reports(&self) -> Vec<Report> {
        std::mem::take(&mut *lock(&self.reports))
    }

    /// Decisions announced but not stored, for another try.
    pub fn requeue(&self, reports: Vec<Report>) {
        lock(&self.retries).extend(reports);
    }

    pub fn take_retries(&self) -> Vec<Report> {
        std::mem::take(&mut *lock(&self.retries))
    }

    /// The store holds this node's ban of `source` / protection of `device` now.
    pub fn ban_stored(&self, source: Source) {
        self.bans.stored(source);
    }

    pub fn protection_stored(&self, device: DeviceId) {
        self.accounts.stored(device);
    }

    /// Takes what the store says is in force (another node's bans, an
    /// admin's unban or lifted protection, the allow lists).
    pub fn load(&self, stored: GuardState, now: Millis) {
        let mut allow = AllowLists {
            everyone: self.config.allow.clone(),
            customers: HashMap::new(),
        };
        for (customer, block) in stored.allowed {
            match customer {
                Some(c) => allow.customers.entry(c).or_default().push(block),
                None => allow.everyone.push(block),
            }
        }
        for source in self.bans.replace(&stored.bans, now) {
            self.sources.reset(source);
        }
        // A source allowed meanwhile is not banned any more.
        for ban in &stored.bans {
            if allow.exempt(ban.source.block().network()) {
                self.bans.lift(ban.source);
                self.sources.reset(ban.source);
            }
        }
        let protections = stored
            .protections
            .into_iter()
            .map(|p| {
                (
                    p.device,
                    Protection {
                        customer: p.customer,
                        sip_user: p.sip_user,
                        until: p.until,
                    },
                )
            })
            .collect();
        self.accounts.replace(protections, now);
        if let Ok(mut a) = self.allow.write() {
            *a = Arc::new(allow);
        }
    }

    /// Forgets what ran out; called every second or so.
    pub fn sweep(&self, now: Millis) {
        for source in self.bans.sweep(now, self.config.escalation_window) {
            self.sources.reset(source);
        }
        self.sources
            .sweep(now, self.config.failure_window, self.config.budget);
        self.accounts
            .sweep(now, self.config.account_window, self.config.known_memory);
    }

    /// Sources banned right now on this node.
    pub fn banned(&self) -> usize {
        self.bans.len()
    }

    /// Accounts protected right now.
    pub fn protected(&self) -> usize {
        self.accounts.protected_len()
    }

    /// Sources the guard keeps a record of.
    pub fn tracked(&self) -> usize {
        self.sources.len()
    }

    /// Whether `source` is banned at `now` (for tests and the API's view).
    pub fn is_banned(&self, source: Source, now: Millis) -> bool {
        self.bans.holds(source, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scanners_are_known_by_name_in_any_case_and_any_bytes_do() {
        let fragments: Vec<String> = SCANNERS.iter().map(|s| (*s).to_owned()).collect();
        for ua in [
            "friendly-scanner",
            "VaxSIPUserAgent/3.1",
            "Mozilla SIPVicious 0.3",
            "x sIpScAn",
        ] {
            assert!(is_scanner(ua, &fragments), "{ua}");
        }
        for ua in ["Yealink SIP-T54W 96.86.0.70", "", "Ünïcödé Telefon ✆"] {
            assert!(!is_scanner(ua, &fragments), "{ua}");
        }
        // Cut at 256 bytes inside a character: no panic, the start still counts.
        let long = format!("sipcli {}", "é".repeat(200));
        assert!(is_scanner(&long, &fragments));
        assert!(!is_scanner(
            &format!("{}friendly-scanner", "x".repeat(300)),
            &fragments
        ));
    }
    use crate::directory::tests::tenant;
    use pbx_store::abuse::BanInForce as KnownBan;

    fn guard(config: GuardConfig) -> Guard {
        Guard::new(config, Arc::new(Stats::default()))
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("ip")
    }

    fn banned_reasons(g: &Guard) -> Vec<(String, BanReason, u32)> {
        g.take_reports()
            .into_iter()
            .filter_map(|r| match r {
                Report::Banned {
                    source,
                    reason,
                    level,
                    ..
                } => Some((source.to_string(), reason, level)),
                Report::Protected { .. } => None,
            })
            .collect()
    }

    /// Wrong digests from `who` at `at` until one is dropped; how many were answered.
    fn guesses_answered(g: &Guard, t: &Tenant, who: IpAddr, at: Millis) -> usize {
        (0..100)
            .take_while(|i| g.wrong_digest(who, t, "101", None, at + i) == Screen::Pass)
            .count()
    }

    #[test]
    fn a_stranger_guessing_is_banned_after_five_and_longer_each_time() {
        let g = guard(GuardConfig::default());
        let t = tenant(1, "acme.example");
        let attacker = ip("192.0.2.66");
        assert_eq!(guesses_answered(&g, &t, attacker, 0), 4, "the fifth bans");
        assert!(g.drops(attacker, 1_000, || false));
        assert!(
            !g.drops(ip("192.0.2.67"), 1_000, || false),
            "only that source"
        );
        assert_eq!(
            banned_reasons(&g),
            vec![("192.0.2.66".into(), BanReason::AuthFailures, 1)]
        );
        // 15 minutes from the fifth guess (at 4 ms), then it may try again;
        // the next ban lasts an hour.
        assert!(g.drops(attacker, 15 * MINUTE + 3, || false));
        assert!(!g.drops(attacker, 15 * MINUTE + 4, || false));
        g.sweep(15 * MINUTE);
        assert_eq!(guesses_answered(&g, &t, attacker, 16 * MINUTE), 4);
        assert!(g.drops(attacker, 16 * MINUTE + HOUR - 1, || false));
        assert!(!g.drops(attacker, 16 * MINUTE + HOUR + 10, || false));
        g.sweep(17 * MINUTE + HOUR);
        assert_eq!(guesses_answered(&g, &t, attacker, 2 * HOUR), 4);
        assert!(
            g.drops(attacker, 2 * HOUR + DAY - 1, || false),
            "the third lasts a day"
        );
        assert_eq!(
            banned_reasons(&g).iter().map(|b| b.2).collect::<Vec<_>>(),
            [2, 3]
        );
    }

    #[test]
    fn failures_spread_over_more_than_the_window_never_ban() {
        let g = guard(GuardConfig::default());
        let t = tenant(1, "acme.example");
        let who = ip("192.0.2.66");
        for i in 0..20 {
            assert_eq!(
                g.wrong_digest(who, &t, "101", None, i * 3 * MINUTE),
                Screen::Pass
            );
        }
        assert!(!g.drops(who, HOUR, || false));
    }

    #[test]
    fn ipv6_sources_are_counted_per_slash_64() {
        let g = guard(GuardConfig::default());
        let t = tenant(1, "acme.example");
        for i in 1..5 {
            let addr = ip(&format!("2001:db8:1:2::{i}"));
            assert_eq!(g.wrong_digest(addr, &t, "101", None, i), Screen::Pass);
        }
        assert_eq!(
            g.wrong_digest(ip("2001:db8:1:2:ffff::9"), &t, "101", None, 9),
            Screen::Drop
        );
        assert!(g.drops(ip("2001:db8:1:2::abcd"), 10, || false));
        assert!(!g.drops(ip("2001:db8:1:3::1"), 10, || false));
    }

    #[test]
    fn a_resellers_threshold_overrides_the_nodes() {
        let g = guard(GuardConfig::default());
        let mut t = tenant(1, "acme.example");
        t.guard_settings.auth_failures = Some(3);
        assert_eq!(guesses_answered(&g, &t, ip("192.0.2.66"), 0), 2);
    }

    #[test]
    fn a_trusted_source_spraying_a_few_guesses_at_every_account_is_banned() {
        let g = guard(GuardConfig::default());
        let t = tenant(1, "acme.example");
        let sprayer = ip("198.51.100.20");
        // It owns one account and registered it: trusted.
        assert!(g.right_digest(sprayer, &t, DeviceId(101), true, 0));
        // Four guesses each (one short of a lock) at account after account:
        // the fifteenth guess in all bans it.
        let mut answered = 0;
        'spray: for account in 0..20 {
            for guess in 0..4 {
                let at = 1_000 + account * 10 + guess;
                let user = format!("2{account:02}");
                if g.wrong_digest(sprayer, &t, &user, None, at) == Screen::Drop {
                    break 'spray;
                }
                answered += 1;
            }
        }
        assert_eq!(answered, 14);
        assert!(g.drops(sprayer, 2_000, || false));
    }

    #[test]
    fn one_address_failing_on_an_account_does_not_protect_it() {
        let g = guard(GuardConfig::default());
        let t = tenant(1, "acme.example");
        // Two trusted offices with a stale password saved (locked after
        // five each): ten failures, but from two addresses only.
        for office in ["198.51.100.1", "198.51.100.2"] {
            assert!(g.right_digest(ip(office), &t, DeviceId(1), true, 0));
            for i in 0..5 {
                g.wrong_digest(ip(office), &t, "101", Some(DeviceId(101)), 10 + i);
            }
        }
        assert_eq!(g.protected(), 0);
        // A third address makes it a distributed guess.
        g.wrong_digest(ip("203.0.113.3"), &t, "101", Some(DeviceId(101)), 20);
        assert_eq!(g.protected(), 1);
    }

    #[test]
    fn spoofable_evidence_never_bans_a_carrier_or_an_allowed_office() {
        let g = guard(GuardConfig::default());
        let a = tenant(1, "acme.example");
        let office = ip("198.51.100.10");
        g.load(
            GuardState {
                allowed: vec![(
                    Some(a.customer),
                    Block::parse("198.51.100.0/24").expect("block"),
                )],
                ..GuardState::default()
            },
            0,
        );
        let carrier = ip("192.0.2.50");
        // A scanner's name in a carrier's or the office's name, the office's
        // request naming another customer: dropped, nobody banned.
        for (who, is_carrier) in [(carrier, true), (office, false)] {
            assert_eq!(
                g.screen(
                    who,
                    Some("friendly-scanner"),
                    true,
                    0,
                    || Some(CustomerId(2)),
                    || is_carrier
                ),
                Screen::Drop
            );
        }
        assert!(banned_reasons(&g).is_empty());
        // A flood in the carrier's name is not even throttled.
        for i in 0..3_000 {
            assert_eq!(
                g.screen(carrier, None, true, 0, || None, || true),
                Screen::Pass,
                "{i}"
            );
        }
        // A carrier banned before it was configured still gets through.
        g.screen(
            ip("192.0.2.51"),
            Some("sipvicious"),
            true,
            0,
            || None,
            || false,
        );
        assert!(g.drops(ip("192.0.2.51"), 1, || false));
        assert!(!g.drops(ip("192.0.2.51"), 1, || true));
    }

    #[test]
    fn an_office_with_one_misconfigured_phone_is_not_banned() {
        let g = guard(GuardConfig::default());
        let t = tenant(1, "acme.example");
        let office = ip("198.51.100.10");
        // A phone of the office registered: the source is trusted.
        assert!(g.right_digest(office, &t, DeviceId(101), true, 0));
        // Another phone there has a wrong password: its account is locked
        // from the office after five, nothing else.
        assert_eq!(guesses_answered(&g, &t, office, 1_000), 4);
        assert!(
            !g.drops(office, 2_000, || false),
            "the office is not banned"
        );
        assert!(
            !g.may_try(office, &t, "101", 2_000),
            "that account is locked from there"
        );
        assert!(
            g.may_try(office, &t, "102", 2_000),
            "other accounts are not"
        );
        assert!(
            g.may_try(ip("198.51.100.11"), &t, "101", 2_000),
            "nor other places"
        );
        assert!(
            g.may_try(office, &t, "101", 2_000 + 15 * MINUTE),
            "for the first ban time"
        );
        assert!(banned_reasons(&g).is_empty());
        // A trusted source failing on three accounts is banned after all.
        for user in ["102", "103"] {
            for i in 0..5 {
                g.wrong_digest(office, &t, user, None, 3_000 + i);
            }
        }
        assert!(g.drops(office, 4_000, || false));
    }

    #[test]
    fn a_distributed_guess_protects_the_account_and_its_phones_keep_working() {
        let g = guard(GuardConfig::default());
        let t = tenant(1, "acme.example");
        let device = DeviceId(101);
        let desk = ip("198.51.100.10");
        assert!(g.right_digest(desk, &t, device, true, 0));
        for i in 1..=10u8 {
            let bot = ip(&format!("203.0.113.{i}"));
            assert_eq!(
                g.wrong_digest(bot, &t, "101", Some(device), i64::from(i)),
                Screen::Pass
            );
        }
        let protected: Vec<_> = g
            .take_reports()
            .into_iter()
            .filter(|r| matches!(r, Report::Protected { .. }))
            .collect();
        assert_eq!(protected.len(), 1, "{protected:?}");
        assert_eq!(g.protected(), 1);
        // The guessers found the password: still refused, from anywhere new.
        assert!(!g.right_digest(ip("203.0.113.200"), &t, device, true, 100));
        // The phone on the desk registers and calls as before.
        assert!(g.right_digest(desk, &t, device, true, 100));
        assert!(g.right_digest(desk, &t, device, false, 101));
        // An hour later, anywhere again.
        assert!(g.right_digest(ip("203.0.113.200"), &t, device, true, HOUR + 11));
    }

    #[test]
    fn scanners_are_dropped_and_banned_unless_trusted() {
        let g = guard(GuardConfig::default());
        let scanner = ip("192.0.2.99");
        assert_eq!(
            g.screen(
                scanner,
                Some("friendly-scanner"),
                true,
                0,
                || None,
                || false
            ),
            Screen::Drop
        );
        assert!(g.drops(scanner, 1, || false));
        assert_eq!(
            banned_reasons(&g),
            vec![("192.0.2.99".into(), BanReason::Scanner, 1)]
        );
        assert_eq!(
            g.screen(
                ip("192.0.2.98"),
                Some("SIPVicious 0.3.3"),
                true,
                0,
                || None,
                || false
            ),
            Screen::Drop
        );
        assert_eq!(
            g.screen(
                ip("192.0.2.97"),
                Some("Yealink SIP-T46U"),
                true,
                0,
                || None,
                || false
            ),
            Screen::Pass
        );
        // From an office, a scanner's User-Agent is dropped but bans nobody
        // (anyone can forge a datagram from the office's address).
        let t = tenant(1, "acme.example");
        let office = ip("198.51.100.10");
        g.right_digest(office, &t, DeviceId(101), true, 0);
        g.take_reports();
        assert_eq!(
            g.screen(office, Some("sipcli/v1.8"), true, 1, || None, || false),
            Screen::Drop
        );
        assert!(!g.drops(office, 2, || false));
        assert!(banned_reasons(&g).is_empty());
    }

    #[test]
    fn a_flood_bans_a_stranger_and_throttles_an_office() {
        let config = GuardConfig {
            budget: Budget {
                rate: 10,
                burst: 50,
            },
            ..GuardConfig::default()
        };
        let g = guard(config);
        let flood = ip("192.0.2.1");
        let passed = (0..1000)
            .filter(|_| g.screen(flood, None, true, 0, || None, || false) == Screen::Pass)
            .count();
        assert_eq!(passed, 50);
        assert!(g.drops(flood, 1, || false));
        assert_eq!(
            banned_reasons(&g),
            vec![("192.0.2.1".into(), BanReason::Flood, 1)]
        );
        // In-dialog requests do not count.
        let other = ip("192.0.2.2");
        assert!(
            (0..1000).all(|_| g.screen(other, None, false, 0, || None, || false) == Screen::Pass)
        );
        let t = tenant(1, "acme.example");
        let office = ip("198.51.100.10");
        g.right_digest(office, &t, DeviceId(101), true, 0);
        let passed = (0..100)
            .filter(|_| g.screen(office, None, true, 0, || None, || false) == Screen::Pass)
            .count();
        assert_eq!(passed, 50, "throttled");
        assert!(!g.drops(office, 1, || false), "not banned");
        assert_eq!(
            g.screen(office, None, true, 1_000, || None, || false),
            Screen::Pass,
            "refilled"
        );
    }

    #[test]
    fn allow_lists_exempt_the_operators_blocks_and_spare_a_customers_office() {
        let g = guard(GuardConfig::default());
        let t = tenant(1, "acme.example");
        let monitoring = ip("192.0.2.10");
        let office = ip("198.51.100.10");
        g.load(
            GuardState {
                allowed: vec![
                    (None, Block::parse("192.0.2.0/28").expect("block")),
                    (
                        Some(t.customer),
                        Block::parse("198.51.100.0/24").expect("block"),
                    ),
                ],
                ..GuardState::default()
            },
            0,
        );
        assert_eq!(
            g.screen(monitoring, Some("sipvicious"), true, 0, || None, || false),
            Screen::Pass
        );
        assert_eq!(guesses_answered(&g, &t, monitoring, 0), 100);
        // The office is never banned for guessing at its own customer's
        // accounts, though a wrong account is locked from there.
        assert_eq!(guesses_answered(&g, &t, office, 0), 4);
        assert!(!g.drops(office, 10, || false));
        let other = tenant(2, "other.example");
        assert_eq!(
            guesses_answered(&g, &other, office, 100),
            4,
            "another customer's: banned"
        );
        assert!(g.drops(office, 200, || false));
    }

    #[test]
    fn the_stores_view_brings_other_nodes_bans_and_lifts() {
        let g = guard(GuardConfig::default());
        let t = tenant(1, "acme.example");
        let theirs = Source::of(ip("192.0.2.1"));
        g.load(
            GuardState {
                bans: vec![KnownBan {
                    source: theirs,
                    banned_at: 0,
                    until: HOUR,
                    level: 1,
                }],
                ..GuardState::default()
            },
            0,
        );
        assert!(
            g.drops(ip("192.0.2.1"), 10, || false),
            "another node's ban holds here"
        );
        // This node's own ban, stored, then lifted by an administrator.
        let mine = ip("192.0.2.2");
        guesses_answered(&g, &t, mine, 0);
        assert!(g.drops(mine, 10, || false));
        g.ban_stored(Source::of(mine));
        g.load(GuardState::default(), 20);
        assert!(
            !g.drops(mine, 30, || false) && !g.drops(ip("192.0.2.1"), 30, || false),
            "lifted everywhere"
        );
        assert_eq!(
            guesses_answered(&g, &t, mine, 40),
            4,
            "counting starts afresh"
        );
    }

    #[test]
    fn a_stranger_collecting_challenges_is_banned_an_office_is_not() {
        let g = guard(GuardConfig {
            challenges: 20,
            ..GuardConfig::default()
        });
        let t = tenant(1, "acme.example");
        let scanner = ip("192.0.2.5");
        let answered = (0..100)
            .take_while(|i| g.challenging(scanner, &t, *i) == Screen::Pass)
            .count();
        assert_eq!(answered, 20);
        assert_eq!(
            banned_reasons(&g),
            vec![("192.0.2.5".into(), BanReason::Enumeration, 1)]
        );
        let office = ip("198.51.100.10");
        g.right_digest(office, &t, DeviceId(101), true, 0);
        assert!((0..100).all(|i| g.challenging(office, &t, i) == Screen::Pass));
        // Spread over more than the window, a stranger's challenges are fine.
        let slow = ip("192.0.2.6");
        assert!((0..100).all(|i| g.challenging(slow, &t, i * 30_000) == Screen::Pass));
    }

    #[test]
    fn nothing_happens_when_switched_off() {
        let g = guard(GuardConfig {
            enabled: false,
            ..GuardConfig::default()
        });
        let t = tenant(1, "acme.example");
        assert_eq!(guesses_answered(&g, &t, ip("192.0.2.1"), 0), 100);
        assert_eq!(
            g.screen(
                ip("192.0.2.1"),
                Some("friendly-scanner"),
                true,
                0,
                || None,
                || false
            ),
            Screen::Pass
        );
        assert!(g.take_reports().is_empty());
    }
}
