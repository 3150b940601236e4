//! Who may call out, and on which trunk: this node's accounting of calls to
//! the public network. At call setup a call is admitted against its
//! customer's and its reseller's [`Ledger`] (limits on calls at once,
//! attempts per minute, spend per day with reservations, destination
//! classes); each trunk it is sent to takes one of the trunk's channels. When
//! the call ends (its `call_ended` event) the channels and reservations are
//! given back and its real cost, at the customer's retail rate, is counted
//! against the day.
//!
//! It also knows which extensions are in a call on this node (calling, or
//! answered): ring groups pass busy members over.
//!
//! Everything here is per node: a platform of several proxy nodes limits
//! each node on its own.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use pbx_store::limits::{Hold, Ledger, Refusal};
use pbx_store::numbering::Class;
use pbx_store::rating::{self, RateRule};
use pbx_store::{CustomerId, ExtensionId, Millis, ResellerId, TrunkId};

use crate::directory::Tenant;

/// A call: its Call-ID and the caller's From tag.
pub type CallKey = (String, String);

/// What an admitted call holds until it ends.
#[derive(Debug)]
struct Outbound {
    customer: CustomerId,
    reseller: ResellerId,
    customer_hold: Hold,
    reseller_hold: Hold,
    /// The customer's retail rate for the destination (its cost at the end).
    rate: Option<RateRule>,
    trunk: Option<TrunkId>,
}

/// A call admitted at setup, not yet opened (see [`Admission::open`]).
#[derive(Debug)]
#[must_use = "an admitted call holds capacity until it is opened and ended, or given back"]
pub struct Admitted {
    outbound: Outbound,
}

/// A call this node set up and has not seen end.
#[derive(Debug)]
struct Call {
    began_at: Millis,
    answered_at: Option<Millis>,
    /// The extensions in it (the caller's, the one that answered).
    extensions: Vec<ExtensionId>,
    /// Set once the call goes to the public network.
    outbound: Option<Outbound>,
}

#[derive(Default)]
pub struct Admission {
    customers: Mutex<HashMap<CustomerId, Ledger>>,
    resellers: Mutex<HashMap<ResellerId, Ledger>>,
    channels: Mutex<HashMap<TrunkId, u32>>,
    calls: Mutex<HashMap<CallKey, Call>>,
    /// Calls each extension is in.
    busy: Mutex<HashMap<ExtensionId, u32>>,
}

/// Calls never answered are given up after this long (a safety net: their
/// end event comes first).
const STUCK_SETUP_MS: Millis = 10 * 60_000;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A day number in `tz` (days since the common era), for the ledgers.
fn day_index(at: Millis, tz: chrono_tz::Tz) -> i64 {
    use chrono::Datelike;
    i64::from(rating::local_day(at, tz).num_days_from_ce())
}

impl Admission {
    /// Admits a call of `tenant` to a destination of `class` at `now`, or
    /// says which limit refuses it. Emergency calls are always admitted.
    pub fn admit(
        &self,
        tenant: &Tenant,
        class: Class,
        e164: &str,
        now: Millis,
    ) -> Result<Admitted, Refusal> {
        let rate = rating::best_rate(&tenant.retail_rates, e164).cloned();
        let spend_limited = tenant.limits.max_spend_per_day_micros.is_some()
            || tenant.reseller_limits.max_spend_per_day_micros.is_some();
        if rate.is_none() && spend_limited && class != Class::Emergency {
            // A destination without a price cannot be held against a
            // spending limit: it would cost nothing, without end.
            return Err(Refusal::Spend);
        }
        let minute = rate.as_ref().map_or(0, |r| r.minute_micros);
        let day = day_index(now, tenant.reseller_time_zone);
        let customer_hold = lock(&self.customers)
            .entry(tenant.customer)
            .or_default()
            .admit(&tenant.limits, class, minute, now, day)?;
        let reseller_hold = lock(&self.resellers)
            .entry(tenant.reseller)
            .or_default()
            .admit(&tenant.reseller_limits, class, minute, now, day);
        let reseller_hold = match reseller_hold {
            Ok(hold) => hold,
            Err(refusal) => {
                if let Some(l) = lock(&self.customers).get_mut(&tenant.customer) {
                    l.release(customer_hold, 0);
                }
                return Err(refusal);
            }
        };
        Ok(Admitted {
            outbound: Outbound {
                customer: tenant.customer,
                reseller: tenant.reseller,
                customer_hold,
                reseller_hold,
                rate,
                trunk: None,
            },
        })
    }

    /// A call `key` begins on this node; false if one with that key is in
    /// progress already (the new request must not touch it).
    pub fn begin(&self, key: &CallKey) -> bool {
        let mut calls = lock(&self.calls);
        if calls.contains_key(key) {
            return false;
        }
        calls.insert(
            key.clone(),
            Call {
                began_at: pbx_store::now_ms(),
                answered_at: None,
                extensions: Vec::new(),
                outbound: None,
            },
        );
        true
    }

    /// `extension` takes part in call `key` (places it, or answered it).
    pub fn joined(&self, key: &CallKey, extension: ExtensionId) {
        let mut calls = lock(&self.calls);
        let Some(call) = calls.get_mut(key) else {
            return;
        };
        if !call.extensions.contains(&extension) {
            call.extensions.push(extension);
            *lock(&self.busy).entry(extension).or_default() += 1;
        }
    }

    /// Whether `extension` is in a call on this node.
    pub fn in_call(&self, extension: ExtensionId) -> bool {
        lock(&self.busy).contains_key(&extension)
    }

    /// Call `key` goes to the public network with what `admitted` holds:
    /// from now on its end gives that back.
    pub fn open(&self, key: CallKey, admitted: Admitted) {
        let old = {
            let mut calls = lock(&self.calls);
            let call = calls.entry(key).or_insert_with(|| Call {
                began_at: pbx_store::now_ms(),
                answered_at: None,
                extensions: Vec::new(),
                outbound: None,
            });
            call.outbound.replace(admitted.outbound)
        };
        if let Some(old) = old {
            // Sent out a second time (cannot happen: once in carrier mode a
            // call stays there); the first holds are given back.
            self.give_back(old, 0);
        }
    }

    /// Call `key` does not go out after all (no trunk took it): what it
    /// held is given back now, the call itself stays known until it ends.
    pub fn drop_outbound(&self, key: &CallKey) {
        let outbound = lock(&self.calls)
            .get_mut(key)
            .and_then(|c| c.outbound.take());
        if let Some(outbound) = outbound {
            self.give_back(outbound, 0);
        }
    }

    /// Gives back a call admitted but never opened.
    pub fn abandon(&self, admitted: Admitted) {
        self.give_back(admitted.outbound, 0);
    }

    /// Moves call `key` onto `trunk` if the trunk has a channel free (at
    /// most `max` at once), giving back the trunk it was on. False when the
    /// trunk is full or the call is unknown.
    pub fn use_trunk(&self, key: &CallKey, trunk: TrunkId, max: Option<i64>) -> bool {
        let mut calls = lock(&self.calls);
        let Some(call) = calls.get_mut(key).and_then(|c| c.outbound.as_mut()) else {
            return false;
        };
        if call.trunk == Some(trunk) {
            return true;
        }
        let mut channels = lock(&self.channels);
        let busy = channels.get(&trunk).copied().unwrap_or(0);
        if max.is_some_and(|m| i64::from(busy) >= m) {
            return false;
        }
        if let Some(old) = call.trunk.replace(trunk) {
            release_channel(&mut channels, old);
        }
        *channels.entry(trunk).or_default() += 1;
        true
    }

    pub fn answered(&self, key: &CallKey, at: Millis) {
        if let Some(call) = lock(&self.calls).get_mut(key) {
            call.answered_at.get_or_insert(at);
        }
    }

    /// Call `key` ended at `at`: its channel and reservations are given
    /// back, and what it cost is counted.
    pub fn ended(&self, key: &CallKey, at: Millis) {
        let Some(call) = lock(&self.calls).remove(key) else {
            return;
        };
        self.close(call, at);
    }

    fn close(&self, call: Call, at: Millis) {
        {
            let mut busy = lock(&self.busy);
            for e in &call.extensions {
                if let Some(n) = busy.get_mut(e) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        busy.remove(e);
                    }
                }
            }
        }
        let Some(outbound) = call.outbound else {
            return;
        };
        let cost = match (&outbound.rate, call.answered_at) {
            (Some(rate), Some(answer)) => rating::call_price(rate, at - answer),
            _ => 0,
        };
        self.give_back(outbound, cost);
    }

    /// Gives up calls whose end never came (a response the proxy could not
    /// use, a lost event): unanswered after ten minutes, answered beyond
    /// `max_call_ms` and a minute. Returns how many.
    pub fn sweep(&self, now: Millis, max_call_ms: Millis) -> usize {
        let stale: Vec<(CallKey, Call)> = {
            let mut calls = lock(&self.calls);
            let keys: Vec<CallKey> = calls
                .iter()
                .filter(|(_, c)| match c.answered_at {
                    Some(answer) => now - answer > max_call_ms.saturating_add(60_000),
                    None => now - c.began_at > STUCK_SETUP_MS,
                })
                .map(|(k, _)| k.clone())
                .collect();
            keys.into_iter()
                .filter_map(|k| calls.remove(&k).map(|c| (k, c)))
                .collect()
        };
        let n = stale.len();
        for (key, call) in stale {
            tracing::warn!(call_id = %key.0, "call given up by admission's safety net");
            let end = call
                .answered_at
                .map_or(now, |a| a.saturating_add(max_call_ms));
            self.close(call, end);
        }
        n
    }

    fn give_back(&self, call: Outbound, cost: i64) {
        if let Some(trunk) = call.trunk {
            release_channel(&mut lock(&self.channels), trunk);
        }
        if let Some(l) = lock(&self.customers).get_mut(&call.customer) {
            l.release(call.customer_hold, cost);
        }
        if let Some(l) = lock(&self.resellers).get_mut(&call.reseller) {
            l.release(call.reseller_hold, cost);
        }
    }

    /// Calls on `trunk` now.
    pub fn channels_in_use(&self, trunk: TrunkId) -> u32 {
        lock(&self.channels).get(&trunk).copied().unwrap_or(0)
    }

    /// A customer's outbound calls in progress on this node.
    pub fn active(&self, customer: CustomerId) -> u32 {
        lock(&self.customers)
            .get(&customer)
            .map_or(0, Ledger::active)
    }
}

fn release_channel(channels: &mut HashMap<TrunkId, u32>, trunk: TrunkId) {
    if let Some(n) = channels.get_mut(&trunk) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            channels.remove(&trunk);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::Tenant;
    use pbx_store::limits::Limits;

    fn tenant(limits: Limits) -> Tenant {
        let mut t = Tenant::build(
            CustomerId(1),
            ResellerId(1),
            "a.example",
            &[("101", &[("101", "pw")])],
        );
        t.limits = limits;
        t.retail_rates = std::sync::Arc::new(vec![RateRule {
            prefix: "49".into(),
            description: "Germany".into(),
            minute_micros: 60_000,
            connection_micros: 0,
            first_increment_s: 1,
            next_increment_s: 1,
            minimum_micros: 0,
        }]);
        t
    }

    fn key(n: u32) -> CallKey {
        (format!("call-{n}"), "tag".into())
    }

    #[test]
    fn the_next_call_beyond_the_limit_is_refused_and_emergency_still_passes() {
        let a = Admission::default();
        let t = tenant(Limits {
            max_concurrent_outbound: Some(2),
            ..Limits::default()
        });
        for n in 0..2 {
            let admitted = a.admit(&t, Class::National, "4930123", 1_000).unwrap();
            a.open(key(n), admitted);
        }
        assert_eq!(
            a.admit(&t, Class::National, "4930123", 1_000).err(),
            Some(Refusal::Concurrent)
        );
        let emergency = a.admit(&t, Class::Emergency, "49112", 1_000).unwrap();
        a.open(key(9), emergency);
        a.ended(&key(0), 2_000);
        a.ended(&key(9), 2_000);
        assert_eq!(a.active(t.customer), 1);
        let admitted = a.admit(&t, Class::National, "4930123", 3_000).unwrap();
        a.abandon(admitted);
        assert_eq!(a.active(t.customer), 1);
    }

    #[test]
    fn a_second_call_with_the_same_key_is_refused_and_unpriced_numbers_are_not_limited_for_free() {
        let a = Admission::default();
        let t = tenant(Limits {
            max_spend_per_day_micros: Some(1_000_000),
            allow_international: true,
            ..Limits::default()
        });
        assert!(a.begin(&key(1)));
        assert!(!a.begin(&key(1)), "merged request");
        a.ended(&key(1), 5);
        assert!(a.begin(&key(1)), "free again once it ended");
        // No rate for +44 in the plan: with a spending limit, refused.
        assert_eq!(
            a.admit(&t, Class::International, "442079460000", 0).err(),
            Some(Refusal::Spend)
        );
        assert!(a.admit(&t, Class::Emergency, "49112", 0).is_ok());
        let unlimited = tenant(Limits {
            allow_international: true,
            ..Limits::default()
        });
        let admitted = a.admit(&unlimited, Class::International, "442079460000", 0);
        assert!(admitted.is_ok(), "no spending limit: nothing to hold");
        if let Ok(admitted) = admitted {
            a.abandon(admitted);
        }
    }

    #[test]
    fn extensions_in_a_call_are_busy_until_it_ends() {
        let a = Admission::default();
        let (caller, callee) = (ExtensionId(1), ExtensionId(2));
        assert!(a.begin(&key(1)));
        a.joined(&key(1), caller);
        a.joined(&key(1), caller);
        assert!(a.in_call(caller) && !a.in_call(callee));
        a.joined(&key(1), callee);
        assert!(a.begin(&key(2)));
        a.joined(&key(2), callee);
        a.ended(&key(1), 10);
        assert!(!a.in_call(caller));
        assert!(a.in_call(callee), "still in its second call");
        a.ended(&key(2), 10);
        assert!(!a.in_call(callee));
        a.joined(&key(3), caller);
        assert!(!a.in_call(caller), "no such call");
    }

    #[test]
    fn a_call_whose_end_never_comes_is_given_up() {
        let a = Admission::default();
        let t = tenant(Limits {
            max_concurrent_outbound: Some(1),
            ..Limits::default()
        });
        assert!(a.begin(&key(1)));
        a.open(key(1), a.admit(&t, Class::National, "4930", 0).unwrap());
        assert!(a.admit(&t, Class::National, "4930", 0).is_err());
        let began = pbx_store::now_ms();
        assert_eq!(a.sweep(began + 60_000, 3_600_000), 0, "still setting up");
        assert_eq!(a.sweep(began + 11 * 60_000, 3_600_000), 1);
        assert_eq!(a.active(t.customer), 0);
    }

    #[test]
    fn trunk_channels_are_taken_moved_and_given_back() {
        let a = Admission::default();
        let t = tenant(Limits::default());
        let (one, two) = (TrunkId(1), TrunkId(2));
        a.open(key(1), a.admit(&t, Class::National, "4930", 0).unwrap());
        a.open(key(2), a.admit(&t, Class::National, "4930", 0).unwrap());
        assert!(a.use_trunk(&key(1), one, Some(1)));
        assert!(a.use_trunk(&key(1), one, Some(1)), "the same trunk again");
        assert_eq!(a.channels_in_use(one), 1);
        assert!(!a.use_trunk(&key(2), one, Some(1)), "full");
        assert!(a.use_trunk(&key(2), two, None));
        // Failover moves call 1 to trunk two: trunk one is free again.
        assert!(a.use_trunk(&key(1), two, None));
        assert_eq!(a.channels_in_use(one), 0);
        assert_eq!(a.channels_in_use(two), 2);
        a.ended(&key(1), 10);
        a.ended(&key(2), 10);
        assert_eq!(a.channels_in_use(two), 0);
    }

    #[test]
    fn an_answered_call_is_paid_and_its_reservation_given_back() {
        let a = Admission::default();
        // One euro a day; six cents a minute reserves sixty cents per call.
        let t = tenant(Limits {
            max_spend_per_day_micros: Some(1_000_000),
            ..Limits::default()
        });
        let now = 1_800_000_000_000;
        a.open(key(1), a.admit(&t, Class::National, "4930", now).unwrap());
        a.answered(&key(1), now);
        // Ten minutes talked: 60 ct spent.
        a.ended(&key(1), now + 600_000);
        a.open(
            key(2),
            a.admit(&t, Class::National, "4930", now + 600_000).unwrap(),
        );
        // 60 ct spent and 60 ct held for the call in progress: a third
        // call's first minute no longer fits in the euro.
        assert_eq!(
            a.admit(&t, Class::National, "4930", now + 600_000).err(),
            Some(Refusal::Spend)
        );
    }
}
