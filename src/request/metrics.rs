//! Decision counters: constant names, defined once per VM.
//!
//! Names are `devportal_gate.<class>.<outcome>`; Envoy exposes them as
//! `envoy_wasmcustom_devportal_gate_<class>_<outcome>` in /stats/prometheus (the
//! demo's `stats_tags` turn class and outcome into labels), Kong as
//! `pw:devportal_gate:...`.

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

#[cfg(test)]
mod tests {
    use super::*;

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
