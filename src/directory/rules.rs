//! Registration rules: the first status of a self-registering developer,
//! decided by ordered rules on the e-mail's domain and the identity token's
//! claims instead of always "requested". The first rule that matches wins; none
//! matching means "requested", as without rules.

use serde_json::{json, Map, Value};

use super::Status;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub name: String,
    pub domain: Option<DomainMatch>,
    /// Every one must be present in the token's payload with this exact value.
    pub claims: Vec<(String, Value)>,
    pub outcome: Status,
    /// An approval by this rule expires this long after the registration.
    pub expires_in_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainMatch {
    /// Lower-case, validated (`valid_domain`).
    pub domain: String,
    /// Also `*.domain`.
    pub subdomains: bool,
}

/// What a self-registration becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirstStatus {
    pub status: Status,
    /// `rule:<name>`, or `self-service` when no rule matched.
    pub actor: String,
    pub expires_in_ms: Option<u64>,
}

impl Rule {
    /// `email` is canonical (its domain lower-case); `claims` is the identity
    /// token's payload, when identity comes from one.
    pub fn matches(&self, email: &str, claims: Option<&Map<String, Value>>) -> bool {
        let domain_matches = self.domain.as_ref().is_none_or(|wanted| {
            let Some((_, domain)) = email.rsplit_once('@') else {
                return false;
            };
            let domain = domain.to_ascii_lowercase();
            domain == wanted.domain
                || (wanted.subdomains
                    && domain
                        .strip_suffix(wanted.domain.as_str())
                        .is_some_and(|head| head.len() > 1 && head.ends_with('.')))
        });
        let claims_match = self
            .claims
            .iter()
            .all(|(name, value)| claims.and_then(|claims| claims.get(name)) == Some(value));
        domain_matches && claims_match
    }

    pub fn actor(&self) -> String {
        format!("rule:{}", self.name)
    }

    pub fn to_api(&self) -> Value {
        json!({
            "name": self.name,
            "match": {
                "domain": self.domain.as_ref().map(|d| d.domain.clone()),
                "include_subdomains": self.domain.as_ref().map(|d| d.subdomains),
                "claims": crate::encoding::json_object(self.claims.iter().cloned()),
            },
            "outcome": self.outcome.as_str(),
            "expires_in_ms": self.expires_in_ms,
        })
    }
}

/// The rules as the gate's configuration published them for the admin API
/// (`to_api` of each); `None` when the text is not such a list.
pub fn from_published(bytes: &[u8]) -> Option<Vec<Rule>> {
    let list: Vec<Value> = serde_json::from_slice(bytes).ok()?;
    list.iter().map(Rule::from_api).collect()
}

impl Rule {
    fn from_api(value: &Value) -> Option<Rule> {
        let matching = value.get("match")?;
        let domain = matching
            .get("domain")
            .and_then(Value::as_str)
            .map(|domain| DomainMatch {
                domain: domain.to_string(),
                subdomains: matching
                    .get("include_subdomains")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
            });
        Some(Rule {
            name: value.get("name")?.as_str()?.to_string(),
            domain,
            claims: matching
                .get("claims")
                .and_then(Value::as_object)
                .map(|claims| claims.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default(),
            outcome: Status::parse(value.get("outcome")?.as_str()?)?,
            expires_in_ms: value.get("expires_in_ms").and_then(Value::as_u64),
        })
    }
}

/// The first status of a self-registration under `rules`.
pub fn first_status(rules: &[Rule], email: &str, claims: Option<&Map<String, Value>>) -> FirstStatus {
    match rules.iter().find(|rule| rule.matches(email, claims)) {
        Some(rule) => FirstStatus {
            status: rule.outcome,
            actor: rule.actor(),
            expires_in_ms: rule.expires_in_ms.filter(|_| rule.outcome == Status::Approved),
        },
        None => FirstStatus {
            status: Status::Requested,
            actor: "self-service".into(),
            expires_in_ms: None,
        },
    }
}

/// A domain as e-mail addresses have them: ASCII letters, digits and hyphens
/// in dot-separated labels of 1 to 63 (IDNs as `xn--`), at least two labels.
pub fn valid_domain(domain: &str) -> bool {
    let labels: Vec<&str> = domain.split('.').collect();
    domain.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(|label| {
            (1..=63).contains(&label.len())
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(domain: &str, subdomains: bool) -> Rule {
        Rule {
            name: "partners".into(),
            domain: Some(DomainMatch {
                domain: domain.into(),
                subdomains,
            }),
            claims: Vec::new(),
            outcome: Status::Approved,
            expires_in_ms: Some(1000),
        }
    }

    #[test]
    fn domains_match_exactly_or_as_a_parent_and_never_a_look_alike() {
        let exact = rule("partner.com", false);
        let family = rule("partner.com", true);
        assert!(exact.matches("ann@partner.com", None));
        assert!(
            exact.matches("ann@PARTNER.com", None),
            "domains compare case-insensitively"
        );
        assert!(!exact.matches("ann@eu.partner.com", None));
        assert!(family.matches("ann@eu.partner.com", None));
        assert!(family.matches("ann@partner.com", None));
        for look_alike in [
            "ann@evilpartner.com",
            "ann@partner.com.evil.io",
            "ann@partner.co",
            "ann@partnercom",
            "partner.com@evil.io",
            "ann@.partner.com",
            "ann@xpartner.com",
        ] {
            assert!(!family.matches(look_alike, None), "{look_alike}");
            assert!(!exact.matches(look_alike, None), "{look_alike}");
        }
    }

    #[test]
    fn claims_must_all_be_there_with_the_same_value() {
        let mut verified = rule("partner.com", false);
        verified.domain = None;
        verified.claims = vec![
            ("email_verified".into(), json!(true)),
            ("org".into(), json!("partner-x")),
        ];
        let claims = |value: Value| value.as_object().cloned();
        assert!(verified.matches(
            "a@x.io",
            claims(json!({"email_verified": true, "org": "partner-x", "x": 1})).as_ref()
        ));
        assert!(!verified.matches(
            "a@x.io",
            claims(json!({"email_verified": "true", "org": "partner-x"})).as_ref()
        ));
        assert!(!verified.matches("a@x.io", claims(json!({"org": "partner-x"})).as_ref()));
        assert!(!verified.matches("a@x.io", None), "no token, no claims");
    }

    #[test]
    fn the_first_matching_rule_decides_and_none_means_requested() {
        let mut blocked = rule("spam.io", true);
        blocked.name = "blocked".into();
        blocked.outcome = Status::Rejected;
        let rules = [blocked, rule("partner.com", true)];
        let partner = first_status(&rules, "ann@partner.com", None);
        assert_eq!(
            (partner.status, partner.actor.as_str(), partner.expires_in_ms),
            (Status::Approved, "rule:partners", Some(1000))
        );
        let spam = first_status(&rules, "x@a.spam.io", None);
        assert_eq!((spam.status, spam.expires_in_ms), (Status::Rejected, None));
        let other = first_status(&rules, "bob@example.com", None);
        assert_eq!(
            (other.status, other.actor.as_str()),
            (Status::Requested, "self-service")
        );
    }

    #[test]
    fn published_rules_read_back_the_same() {
        let mut both = rule("partner.com", true);
        both.claims = vec![("org".into(), json!("partner-x"))];
        let rules = vec![both, rule("other.org", false)];
        let published = serde_json::to_vec(&rules.iter().map(Rule::to_api).collect::<Vec<_>>()).unwrap();
        assert_eq!(from_published(&published), Some(rules));
        assert_eq!(from_published(b"[{}]"), None);
    }

    #[test]
    fn domains_are_validated() {
        for good in ["partner.com", "eu.partner-x.co.uk", "xn--jrg-5qa.de"] {
            assert!(valid_domain(good), "{good}");
        }
        for bad in [
            "partner",
            "-partner.com",
            "partner..com",
            "part ner.com",
            "partnér.com",
            ".com",
            "a.com.",
        ] {
            assert!(!valid_domain(bad), "{bad}");
        }
    }
}
