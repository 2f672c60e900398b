//! Decision counters: constant names, defined once per VM.
//!
//! Names are `devportal_gate.<class>.<outcome>`; Envoy exposes them as
//! `envoy_wasmcustom_devportal_gate_<class>_<outcome>` in /stats/prometheus (the
//! demo's `stats_tags` turn class and outcome into labels), Kong as
//! `pw:devportal_gate:...`.

use std::cell::Cell;

use crate::directory::Status;
use crate::request::responses::Refusal;
use crate::request::routes::RouteClass;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    Allowed(RouteClass),
    Refused(RouteClass, Refusal),
    /// No route matched and the default is to deny.
    Unrouted,
    /// The path could not be classified (400).
    BadRequest,
    /// A self-service registration refused by the gateway's rate (429).
    RegistrationLimited,
    /// A self-service registration refused because Requested Access is full (429).
    RegistrationFull,
}

const PROTECTED_REFUSALS: [Refusal; 7] = [
    Refusal::Unauthenticated,
    Refusal::NotApproved(Status::Requested),
    Refusal::NotApproved(Status::Rejected),
    Refusal::NotApproved(Status::Revoked),
    Refusal::UnknownDeveloper,
    Refusal::DirectoryUnavailable,
    Refusal::Expired,
];

impl Counter {
    /// Every counter the filter can increment, in a fixed order.
    pub fn all() -> Vec<Counter> {
        let mut all = vec![Counter::Unrouted, Counter::BadRequest];
        for class in RouteClass::ALL {
            all.push(Counter::Allowed(class));
            if class.is_protected() {
                all.extend(
                    PROTECTED_REFUSALS
                        .iter()
                        .map(|refusal| Counter::Refused(class, *refusal)),
                );
            }
        }
        all.extend([Counter::RegistrationLimited, Counter::RegistrationFull]);
        all
    }

    pub fn name(self) -> String {
        let (class, outcome) = match self {
            Counter::Allowed(class) => (class.as_str(), "allowed"),
            Counter::Refused(class, refusal) => (class.as_str(), refusal.label()),
            Counter::Unrouted => ("unrouted", "denied"),
            Counter::BadRequest => ("invalid", "bad_request"),
            Counter::RegistrationLimited => ("registration", "limited"),
            Counter::RegistrationFull => ("registration", "full"),
        };
        format!("devportal_gate.{class}.{outcome}")
    }

    /// Position in `all()`, computed without allocating (it runs per request);
    /// `None` for combinations that never happen.
    pub fn index(self) -> Option<usize> {
        // Layout of `all()`: Unrouted, BadRequest, then per class its Allowed
        // followed (protected classes only) by its refusals.
        let class_start = |class: RouteClass| match class {
            RouteClass::Public => 2,
            RouteClass::Portal => 3,
            RouteClass::Credentials => 4 + PROTECTED_REFUSALS.len(),
            RouteClass::Api => 5 + 2 * PROTECTED_REFUSALS.len(),
        };
        match self {
            Counter::Unrouted => Some(0),
            Counter::BadRequest => Some(1),
            Counter::Allowed(class) => Some(class_start(class)),
            Counter::Refused(class, refusal) if class.is_protected() => PROTECTED_REFUSALS
                .iter()
                .position(|r| *r == refusal)
                .map(|i| class_start(class) + 1 + i),
            Counter::Refused(..) => None,
            Counter::RegistrationLimited => Some(class_start(RouteClass::Api) + 1 + PROTECTED_REFUSALS.len()),
            Counter::RegistrationFull => Some(class_start(RouteClass::Api) + 2 + PROTECTED_REFUSALS.len()),
        }
    }
}

/// Decisions counted in the VM and handed to the host in batches, at the
/// worker's next tick (every 20 ms) or once a counter has gathered
/// `HAND_OVER_AT`. A host call per request cost the allow path about 2 us of
/// its 30 (`bench/PROFILE.md`: the do-nothing filter with one
/// `increment_metric` per request went from 22.0 to 23.9 us). The host's
/// counters lag the decisions by a tick at most; none is lost while the VM lives.
pub struct Tally {
    counts: Vec<Cell<u32>>,
}

impl Tally {
    /// A counter that gathers this many is handed over at once, ticks or not.
    pub const HAND_OVER_AT: u32 = 256;

    pub fn new(counters: usize) -> Tally {
        Tally {
            counts: (0..counters).map(|_| Cell::new(0)).collect(),
        }
    }

    /// Counts one decision of counter `index`; returns what to hand over now
    /// (its count, reset) once it has gathered `HAND_OVER_AT`.
    pub fn add(&self, index: usize) -> Option<u32> {
        let count = self.counts.get(index)?;
        let gathered = count.get().saturating_add(1);
        if gathered >= Self::HAND_OVER_AT {
            count.set(0);
            return Some(gathered);
        }
        count.set(gathered);
        None
    }

    /// Every counter's count gathered since it was last handed over (those
    /// above zero), reset.
    pub fn drain(&self) -> impl Iterator<Item = (usize, u32)> + '_ {
        self.counts
            .iter()
            .enumerate()
            .filter_map(|(index, count)| Some((index, count.take())).filter(|(_, n)| *n > 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tally_hands_over_every_decision_once() {
        let tally = Tally::new(3);
        let mut handed = [0u64; 3];
        let mut hand = |(index, n): (usize, u32)| handed[index] += u64::from(n);
        for i in 0..1000u32 {
            let index = (i % 3) as usize;
            if let Some(n) = tally.add(index) {
                assert_eq!(n, Tally::HAND_OVER_AT);
                hand((index, n));
            }
            if i % 97 == 0 {
                tally.drain().for_each(&mut hand);
            }
        }
        tally.drain().for_each(&mut hand);
        assert_eq!(handed, [334, 333, 333]);
        // Drained: nothing is handed over twice; an unknown counter is no one's.
        assert_eq!(tally.drain().count(), 0);
        assert_eq!(tally.add(7), None);
        assert_eq!(tally.drain().count(), 0);
        // Without ticks, a counter is handed over every HAND_OVER_AT decisions.
        let untouched = Tally::new(1);
        let handed: u32 = (0..1000).filter_map(|_| untouched.add(0)).sum();
        assert_eq!(handed, 3 * Tally::HAND_OVER_AT);
        assert_eq!(
            untouched.drain().collect::<Vec<_>>(),
            [(0, 1000 - 3 * Tally::HAND_OVER_AT)]
        );
    }

    #[test]
    fn names_are_unique_and_stable() {
        let names: Vec<String> = Counter::all().into_iter().map(Counter::name).collect();
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), names.len());
        assert!(names.contains(&"devportal_gate.api.allowed".to_string()));
        assert!(names.contains(&"devportal_gate.portal.revoked".to_string()));
        for (position, counter) in Counter::all().into_iter().enumerate() {
            assert_eq!(counter.index(), Some(position), "{counter:?}");
        }
        assert_eq!(
            Counter::Refused(RouteClass::Public, Refusal::Unauthenticated).index(),
            None
        );
        assert_eq!(Counter::Refused(RouteClass::Api, Refusal::Unrouted).index(), None);
    }
}
