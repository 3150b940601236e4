//! Toll-fraud alarms at call setup, on top of the hard limits of
//! [`crate::admission`]: a device calling a country or a premium-rate number
//! it never called before (and nobody approved), a burst of outbound calls
//! from one device, a call abroad or at premium rates while the customer's
//! chosen business-hours rule says closed. Each alarm warns (the call goes
//! on) or blocks (403), as the customer's settings say; emergency calls
//! never raise one.
//!
//! Bursts are counted per node. A destination a call teaches is known here
//! at once and reaches the store (and so every node) through the event bus.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use pbx_store::fraud_alarms::{destination_key, AlarmMode};
use pbx_store::numbering::{Class, Destination};
use pbx_store::{DeviceId, Millis};
use serde::Serialize;

use crate::directory::Tenant;
use crate::sharded::ShardedMap;

/// Calls remembered per device (more than any burst setting counts).
const CALLS_KEPT: usize = 10_000;
/// A destination learnt here is remembered this long: by then the
/// directory has it from the store.
const LEARNT_FOR: Millis = 10 * 60_000;
/// Destinations learnt here held at most.
const MAX_LEARNT: usize = 100_000;

/// Which alarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Alarm {
    NewDestination,
    Burst,
    AfterHours,
}

impl Alarm {
    pub fn as_str(self) -> &'static str {
        match self {
            Alarm::NewDestination => "new_destination",
            Alarm::Burst => "burst",
            Alarm::AfterHours => "after_hours",
        }
    }
}

/// What a call set off.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    pub alarms: Vec<Alarm>,
    /// One of them blocks the call.
    pub block: bool,
    /// A destination the device calls for the first time (to remember).
    pub learn: Option<String>,
}

#[derive(Default)]
pub struct FraudWatch {
    calls: ShardedMap<DeviceId, VecDeque<Millis>>,
    learnt: Mutex<HashMap<(DeviceId, String), Millis>>,
}

impl FraudWatch {
    /// Checks a call of `device` of `tenant` to `destination` at `now`.
    pub fn check(
        &self,
        tenant: &Tenant,
        device: DeviceId,
        destination: &Destination,
        now: Millis,
    ) -> Verdict {
        if destination.class == Class::Emergency {
            return Verdict::default();
        }
        let settings = &tenant.fraud_alarms;
        let mut verdict = Verdict::default();
        let mut raise = |alarm: Alarm, mode: AlarmMode| match mode {
            AlarmMode::Off => {}
            AlarmMode::Warn => verdict.alarms.push(alarm),
            AlarmMode::Block => {
                verdict.alarms.push(alarm);
                verdict.block = true;
            }
        };
        // Bursts: every call to the public network counts.
        let window = i64::from(settings.burst_window_s) * 1000;
        let recent = self
            .calls
            .upsert(device, usize::MAX, VecDeque::new, |calls| {
                while calls.front().is_some_and(|t| now - *t >= window) {
                    calls.pop_front();
                }
                if calls.len() >= CALLS_KEPT {
                    calls.pop_front();
                }
                calls.push_back(now);
                calls.len()
            })
            .unwrap_or(0);
        if recent >= settings.burst_calls as usize {
            raise(Alarm::Burst, settings.burst);
        }
        let key = destination_key(&destination.e164, destination.class);
        let new = key
            .as_deref()
            .is_some_and(|k| !self.knows(tenant, device, k, now));
        // Only calls abroad or at premium rates have a key.
        if key.is_some() {
            if new {
                raise(Alarm::NewDestination, settings.new_destination);
            }
            let closed = settings
                .after_hours_rule_id
                .and_then(|id| tenant.is_open(id, now))
                == Some(false);
            if closed {
                raise(Alarm::AfterHours, settings.after_hours);
            }
        }
        if !verdict.block && new {
            if let Some(key) = key {
                let mut learnt = self.lock();
                if learnt.len() >= MAX_LEARNT {
                    learnt.retain(|_, at| now - *at < LEARNT_FOR);
                }
                if learnt.len() < MAX_LEARNT {
                    learnt.insert((device, key.clone()), now);
                }
                verdict.learn = Some(key);
            }
        }
        verdict
    }

    fn knows(&self, tenant: &Tenant, device: DeviceId, key: &str, now: Millis) -> bool {
        tenant.knows_destination(device, key)
            || self
                .lock()
                .get(&(device, key.to_owned()))
                .is_some_and(|at| now - *at < LEARNT_FOR)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(DeviceId, String), Millis>> {
        self.learnt.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets calls and destinations that no longer matter.
    pub fn sweep(&self, now: Millis) {
        // No burst window is longer than a day.
        self.calls
            .retain_quietly(|calls| calls.back().is_some_and(|t| now - *t < 86_400_000));
        self.lock().retain(|_, at| now - *at < LEARNT_FOR);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::tests::tenant;
    use pbx_store::fraud_alarms::FraudAlarms;

    fn to(e164: &str, class: Class) -> Destination {
        Destination {
            e164: e164.into(),
            class,
            emergency_code: None,
        }
    }

    #[test]
    fn a_new_country_warns_once_then_is_known() {
        let w = FraudWatch::default();
        let t = tenant(1, "acme.example");
        let d = DeviceId(101);
        let uk = to("442071234567", Class::International);
        let first = w.check(&t, d, &uk, 0);
        assert_eq!(first.alarms, vec![Alarm::NewDestination]);
        assert!(!first.block);
        assert_eq!(first.learn.as_deref(), Some("44"));
        let again = w.check(&t, d, &to("441611234567", Class::International), 1_000);
        assert_eq!(
            again,
            Verdict::default(),
            "another UK number: the country is known"
        );
        assert_eq!(
            w.check(&t, DeviceId(102), &uk, 2_000).alarms,
            vec![Alarm::NewDestination],
            "per device"
        );
        assert_eq!(
            w.check(&t, d, &to("4930123456", Class::National), 3_000),
            Verdict::default()
        );
        assert_eq!(
            w.check(&t, d, &to("49112", Class::Emergency), 3_000),
            Verdict::default()
        );
        // Each premium-rate number is a destination of its own.
        assert_eq!(
            w.check(&t, d, &to("4990012345", Class::Premium), 4_000)
                .learn
                .as_deref(),
            Some("4990012345")
        );
        assert_eq!(
            w.check(&t, d, &to("4990099999", Class::Premium), 5_000)
                .alarms,
            vec![Alarm::NewDestination]
        );
    }

    #[test]
    fn blocking_alarms_refuse_and_learn_nothing_until_approved() {
        let w = FraudWatch::default();
        let mut t = tenant(1, "acme.example");
        t.fraud_alarms.new_destination = AlarmMode::Block;
        let d = DeviceId(101);
        let call = to("8801712345678", Class::International);
        let v = w.check(&t, d, &call, 0);
        assert!(v.block && v.learn.is_none());
        assert!(w.check(&t, d, &call, 1).block, "still blocked");
        t.set_known_destinations(d, vec!["880".into()]);
        assert_eq!(w.check(&t, d, &call, 2), Verdict::default(), "approved");
    }

    #[test]
    fn bursts_count_per_device_within_the_window() {
        let w = FraudWatch::default();
        let mut t = tenant(1, "acme.example");
        t.fraud_alarms = FraudAlarms {
            burst_calls: 3,
            burst_window_s: 60,
            ..FraudAlarms::default()
        };
        let d = DeviceId(101);
        let call = to("4930123456", Class::National);
        assert!(w.check(&t, d, &call, 0).alarms.is_empty());
        assert!(w.check(&t, d, &call, 10_000).alarms.is_empty());
        assert_eq!(w.check(&t, d, &call, 20_000).alarms, vec![Alarm::Burst]);
        assert!(
            w.check(&t, d, &call, 75_000).alarms.is_empty(),
            "the first two fell out"
        );
        t.fraud_alarms.burst = AlarmMode::Off;
        assert!(w.check(&t, d, &call, 76_000).alarms.is_empty());
    }
}
