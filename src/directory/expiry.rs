//! Approvals that expire: the configuration's bounds, and the expiry an action
//! asks for turned into an instant.

use crate::encoding::clock::{parse_duration, parse_rfc3339};

/// The configuration's `approvals`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Approvals {
    /// Given to an approval that names no expiry; `None`: it never expires.
    pub default_ms: Option<u64>,
    /// No expiry may be further away than this.
    pub max_ms: Option<u64>,
}

/// What an action's body asked for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Requested {
    pub expires_at: Option<String>,
    pub expires_in: Option<String>,
}

impl Approvals {
    /// The instant an approval given at `now_ms` expires, or `None` (never);
    /// `Err` names what is wrong with the request.
    pub fn resolve(&self, requested: &Requested, now_ms: u64) -> Result<Option<u64>, String> {
        let at = match (&requested.expires_at, &requested.expires_in) {
            (Some(_), Some(_)) => return Err("give expires_at or expires_in, not both".into()),
            (Some(at), None) => parse_rfc3339(at)?,
            (None, Some(within)) => now_ms.saturating_add(parse_duration(within)?),
            (None, None) => return Ok(self.default_ms.map(|ms| now_ms.saturating_add(ms))),
        };
        if at <= now_ms {
            return Err("the expiry is not in the future".into());
        }
        if let Some(max) = self.max_ms {
            if at - now_ms > max {
                return Err(format!(
                    "the expiry is further away than approvals.max_expires_in allows ({} days)",
                    max / 86_400_000
                ));
            }
        }
        Ok(Some(at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000_000;
    const DAY: u64 = 86_400_000;

    fn ask(at: Option<&str>, within: Option<&str>) -> Requested {
        Requested {
            expires_at: at.map(str::to_string),
            expires_in: within.map(str::to_string),
        }
    }

    #[test]
    fn an_expiry_is_an_instant_or_a_duration_within_the_bounds() {
        let open = Approvals::default();
        assert_eq!(
            open.resolve(&ask(None, None), NOW),
            Ok(None),
            "no default: never expires"
        );
        assert_eq!(open.resolve(&ask(None, Some("90d")), NOW), Ok(Some(NOW + 90 * DAY)));
        assert_eq!(
            open.resolve(&ask(Some("2027-03-31T00:00:00Z"), None), NOW),
            Ok(Some(1_806_451_200_000))
        );
        let bounded = Approvals {
            default_ms: Some(30 * DAY),
            max_ms: Some(365 * DAY),
        };
        assert_eq!(bounded.resolve(&ask(None, None), NOW), Ok(Some(NOW + 30 * DAY)));
        assert!(bounded.resolve(&ask(None, Some("400d")), NOW).is_err());
        assert!(
            open.resolve(&ask(Some("2020-01-01T00:00:00Z"), None), NOW).is_err(),
            "the past"
        );
        assert!(open
            .resolve(&ask(Some("2027-03-31T00:00:00Z"), Some("1d")), NOW)
            .is_err());
        assert!(open.resolve(&ask(None, Some("soon")), NOW).is_err());
    }
}
