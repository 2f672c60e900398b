//! The per-request decision: may this request pass, and if not, what answer?
//! Pure logic; the host glue (src/host/) feeds it headers and a directory lookup
//! and carries out the verdict.

use std::borrow::Cow;

use crate::directory::rules::{first_status, FirstStatus};
use crate::directory::{Lookup, Status};
use crate::encoding::clock::rfc3339;
use crate::request::identity::IdentitySource;
use crate::request::metrics::Counter;
use crate::request::path;
use crate::request::responses::Responses;
use crate::request::responses::{bad_path, bad_request, with_expiry, LocalResponse, Refusal};
use crate::request::routes::RouteTable;
use crate::request::routes::{Classification, RouteClass};

/// Headers the gate sets for the upstream; a request that carries a client copy is refused.
pub const DEVELOPER_EMAIL_HEADER: &str = "x-developer-email";
pub const DEVELOPER_STATUS_HEADER: &str = "x-developer-status";

/// What every HTTP context needs, immutable after configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gate {
    pub namespace: String,
    pub identity: IdentitySource,
    pub routes: RouteTable,
    pub responses: Responses,
    /// Whether any refusal has a browser answer (skips reading `accept` otherwise).
    pub has_browser_answers: bool,
    /// `unknown_developers: request`: an unknown developer opening a portal page
    /// is registered as Requested.
    pub self_service: bool,
    /// How many such registrations are admitted (see `registration`).
    pub registration: crate::directory::registration::Limits,
    /// What a self-registration becomes (`directory::rules`); empty: Requested.
    pub rules: Vec<crate::directory::rules::Rule>,
}

/// What the gate needs to know about a request.
pub trait RequestView {
    /// Every value of `name` (lower-case), in order. Header values are bytes: a
    /// value that is not UTF-8 is `None`, so the caller decides what it means
    /// (for the identity header: no identity).
    fn header_values(&self, name: &str) -> Vec<Option<&str>>;
    /// The first value of `name`, if there is one and it is UTF-8.
    fn header(&self, name: &str) -> Option<&str>;
}

#[derive(Debug, PartialEq, Eq)]
pub enum Action<'g> {
    /// Let the request continue upstream.
    Forward {
        /// The normalized request target, when it differs from what was sent.
        rewrite_target: Option<String>,
        /// The Approved developer, for the `x-developer-*` headers; `None` on
        /// public routes (a request with client copies never gets this far).
        developer: Option<String>,
    },
    /// Answer locally.
    Respond(Cow<'g, LocalResponse>),
    /// Self-service: record this unknown developer with the first status the
    /// registration rules give (Requested without rules), then answer `then`
    /// (the Requested answer; for another status the host asks the client to
    /// come again, so the new record decides).
    Register {
        email: String,
        then: Cow<'g, LocalResponse>,
        first: FirstStatus,
    },
}

#[derive(Debug, PartialEq, Eq)]
pub struct Verdict<'g> {
    pub action: Action<'g>,
    pub counter: Counter,
}

/// Decides one request. `lookup` is called at most once, only for a protected
/// route with a well-formed identity.
pub fn decide<'g>(
    gate: &'g Gate,
    target: &str,
    method: &str,
    request: &dyn RequestView,
    lookup: impl FnOnce(&str) -> Lookup,
) -> Verdict<'g> {
    // The developer headers are the gate's to set. A client copy is refused on
    // every route rather than removed: Kong's nginx still forwards a header the
    // filter removed, and replacing a value replaces only its first copy, so
    // removal cannot keep a spoofed copy from the upstream on every host.
    for name in [DEVELOPER_EMAIL_HEADER, DEVELOPER_STATUS_HEADER] {
        if !request.header_values(name).is_empty() {
            return Verdict {
                action: Action::Respond(Cow::Owned(bad_request(&format!(
                    "the {name} header is set by the gateway; a request may not carry it"
                )))),
                counter: Counter::BadRequest,
            };
        }
    }
    let normalized = match path::normalize(target) {
        Ok(normalized) => normalized,
        Err(error) => {
            return Verdict {
                action: Action::Respond(Cow::Owned(bad_path(error))),
                counter: Counter::BadRequest,
            }
        }
    };
    let rewrite_target = normalized.changed.then(|| normalized.to_request_target());

    let class = match gate.routes.classify(&normalized.path, method) {
        Classification::Class(class) => class,
        Classification::Unrouted => return refuse(gate, None, Refusal::Unrouted, request),
    };
    if !class.is_protected() {
        return Verdict {
            action: Action::Forward {
                rewrite_target,
                developer: None,
            },
            counter: Counter::Allowed(class),
        };
    }

    // One value that is not UTF-8 makes the whole identity unusable.
    let values: Option<Vec<&str>> = request.header_values(gate.identity.header_name()).into_iter().collect();
    let email = match values.as_ref().map(|values| gate.identity.resolve(values)) {
        Some(Ok(email)) => email,
        _ => return refuse(gate, Some(class), Refusal::Unauthenticated, request),
    };
    let refusal = match lookup(&email) {
        Lookup::Found(Status::Approved) => {
            return Verdict {
                action: Action::Forward {
                    rewrite_target,
                    developer: Some(email),
                },
                counter: Counter::Allowed(class),
            }
        }
        Lookup::Found(status) => Refusal::NotApproved(status),
        Lookup::Expired(at_ms) => {
            let verdict = refuse(gate, Some(class), Refusal::Expired, request);
            // The JSON answer says when.
            return match &verdict.action {
                Action::Respond(response) => match with_expiry(response, &rfc3339(at_ms)) {
                    Some(dated) => Verdict {
                        action: Action::Respond(Cow::Owned(dated)),
                        counter: verdict.counter,
                    },
                    None => verdict,
                },
                _ => verdict,
            };
        }
        Lookup::Unknown if gate.self_service && class == RouteClass::Portal => {
            let pending = refuse(gate, Some(class), Refusal::NotApproved(Status::Requested), request);
            let then = match pending.action {
                Action::Respond(response) => response,
                _ => Cow::Owned(LocalResponse {
                    status: 403,
                    headers: Vec::new(),
                    body: Vec::new(),
                }),
            };
            // Claims are read only when a rule needs them.
            let claims = gate
                .rules
                .iter()
                .any(|rule| !rule.claims.is_empty())
                .then(|| values.as_ref().and_then(|values| gate.identity.claims(values)))
                .flatten();
            let first = first_status(&gate.rules, &email, claims.as_ref());
            return Verdict {
                action: Action::Register { email, then, first },
                counter: Counter::Refused(class, Refusal::UnknownDeveloper),
            };
        }
        Lookup::Unknown => Refusal::UnknownDeveloper,
        Lookup::Unavailable => Refusal::DirectoryUnavailable,
    };
    refuse(gate, Some(class), refusal, request)
}

fn refuse<'g>(gate: &'g Gate, class: Option<RouteClass>, refusal: Refusal, request: &dyn RequestView) -> Verdict<'g> {
    let browser = class == Some(RouteClass::Portal) && gate.has_browser_answers && accepts_html(request);
    let counter = match class {
        Some(class) => Counter::Refused(class, refusal),
        None => Counter::Unrouted,
    };
    let action = match gate.responses.for_refusal(refusal, browser) {
        Some(response) => Action::Respond(Cow::Borrowed(response)),
        // The table is total over `Refusal`; this arm only keeps the code panic-free.
        None => Action::Respond(Cow::Owned(LocalResponse {
            status: 403,
            headers: Vec::new(),
            body: Vec::new(),
        })),
    };
    Verdict { action, counter }
}

/// A browser navigation: `Accept` names `text/html` (any case, any parameters).
fn accepts_html(request: &dyn RequestView) -> bool {
    request.header("accept").is_some_and(|accept| {
        accept.split(',').any(|item| {
            let media = item.split(';').next().unwrap_or("").trim();
            media.eq_ignore_ascii_case("text/html")
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::compile;
    use crate::directory::{lookup, MemoryStore};
    use serde_json::json;

    struct Headers(Vec<(&'static str, &'static str)>);

    impl RequestView for Headers {
        fn header_values(&self, name: &str) -> Vec<Option<&str>> {
            self.0
                .iter()
                .filter(|(n, _)| *n == name)
                .map(|(_, v)| Some(*v))
                .collect()
        }
        fn header(&self, name: &str) -> Option<&str> {
            self.header_values(name).into_iter().next().flatten()
        }
    }

    fn demo() -> (Gate, MemoryStore) {
        let config = compile(
            json!({
                "config_version": 1,
                "routes": [
                    {"exact": "/portal/login", "class": "public"},
                    {"prefix": "/portal/assets", "class": "public"},
                    {"prefix": "/portal/credentials", "class": "credentials"},
                    {"prefix": "/portal", "class": "portal"},
                    {"prefix": "/api", "class": "api"}
                ],
                "denials": {"browser_redirects": {"requested": "/portal/login"}},
                "developers": [
                    {"email": "alice@example.com", "status": "approved"},
                    {"email": "bob@example.com", "status": "requested"},
                    {"email": "carol@example.com", "status": "rejected"},
                    {"email": "dave@example.com", "status": "revoked"}
                ]
            })
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        let store = MemoryStore::default();
        crate::directory::seed::records(&store, &config.gate.namespace, &config.developers).unwrap();
        (config.gate, store)
    }

    fn run<'g>(gate: &'g Gate, store: &MemoryStore, target: &str, method: &str, headers: Headers) -> Verdict<'g> {
        decide(gate, target, method, &headers, |email| {
            lookup(store, &gate.namespace, email)
        })
    }

    fn status_of(verdict: &Verdict) -> u32 {
        match &verdict.action {
            Action::Respond(response) => response.status,
            Action::Forward { .. } => 200,
            Action::Register { .. } => 0,
        }
    }

    #[test]
    fn self_service_registers_unknown_developers_on_portal_pages_only() {
        let (mut gate, store) = demo();
        gate.self_service = true;
        let eve = || Headers(vec![("x-consumer-username", "Eve@example.com")]);
        let verdict = run(&gate, &store, "/portal/dashboard", "GET", eve());
        let Action::Register { email, then, .. } = verdict.action else {
            panic!("expected a registration")
        };
        assert_eq!(email, "eve@example.com");
        assert_eq!(then.status, 403);
        assert!(String::from_utf8_lossy(&then.body).contains("requested"));
        // Not on APIs or credentials, and never for known developers.
        assert_eq!(status_of(&run(&gate, &store, "/api/orders", "GET", eve())), 403);
        assert_eq!(status_of(&run(&gate, &store, "/portal/credentials", "GET", eve())), 403);
        let bob = Headers(vec![("x-consumer-username", "bob@example.com")]);
        assert_eq!(status_of(&run(&gate, &store, "/portal/dashboard", "GET", bob)), 403);
    }

    #[test]
    fn only_approved_developers_pass_protected_routes() {
        let (gate, store) = demo();
        for (user, expected) in [
            ("alice@example.com", 200),
            ("ALICE@example.com", 200),
            ("bob@example.com", 403),
            ("carol@example.com", 403),
            ("dave@example.com", 403),
            ("eve@example.com", 403),
        ] {
            for target in ["/api/orders", "/portal/dashboard", "/portal/credentials"] {
                let verdict = run(
                    &gate,
                    &store,
                    target,
                    "POST",
                    Headers(vec![("x-consumer-username", user)]),
                );
                assert_eq!(status_of(&verdict), expected, "{user} {target}");
            }
        }
        let verdict = run(
            &gate,
            &store,
            "/api/x",
            "GET",
            Headers(vec![("x-consumer-username", "alice@example.com")]),
        );
        assert_eq!(
            verdict.action,
            Action::Forward {
                rewrite_target: None,
                developer: Some("alice@example.com".into())
            }
        );
        assert_eq!(verdict.counter, Counter::Allowed(RouteClass::Api));
    }

    #[test]
    fn public_routes_pass_without_identity() {
        let (gate, store) = demo();
        let verdict = run(&gate, &store, "/portal/login?next=/api", "GET", Headers(vec![]));
        assert_eq!(
            verdict.action,
            Action::Forward {
                rewrite_target: None,
                developer: None
            }
        );
    }

    #[test]
    fn missing_duplicated_or_garbled_identity_is_401() {
        let (gate, store) = demo();
        for headers in [
            vec![],
            vec![
                ("x-consumer-username", "alice@example.com"),
                ("x-consumer-username", "alice@example.com"),
            ],
            vec![("x-consumer-username", "alice@example.com, bob@example.com")],
            vec![("x-consumer-username", "")],
        ] {
            let verdict = run(&gate, &store, "/api/x", "GET", Headers(headers));
            assert_eq!(status_of(&verdict), 401);
            assert_eq!(
                verdict.counter,
                Counter::Refused(RouteClass::Api, Refusal::Unauthenticated)
            );
        }
    }

    #[test]
    fn path_tricks_cannot_reach_protected_routes_as_public() {
        let (gate, store) = demo();
        for target in [
            "/portal/assets/../credentials",
            "/portal/assets/%2e%2e/credentials",
            "/portal/login/../../api/x",
            "//portal/assets/..//api/x",
        ] {
            let verdict = run(&gate, &store, target, "POST", Headers(vec![]));
            assert_eq!(status_of(&verdict), 401, "{target}");
        }
        for target in [
            "/portal/assets/..%2Fcredentials",
            "/portal/assets/..;/credentials",
            "/portal/assets/..\\credentials",
        ] {
            let verdict = run(&gate, &store, target, "POST", Headers(vec![]));
            assert_eq!(status_of(&verdict), 400, "{target}");
            assert_eq!(verdict.counter, Counter::BadRequest);
        }
        // An approved developer's request is forwarded with the normalized path.
        let verdict = run(
            &gate,
            &store,
            "/portal/assets/../../api/x?y=1",
            "GET",
            Headers(vec![("x-consumer-username", "alice@example.com")]),
        );
        assert_eq!(
            verdict.action,
            Action::Forward {
                rewrite_target: Some("/api/x?y=1".into()),
                developer: Some("alice@example.com".into())
            }
        );
    }

    #[test]
    fn browsers_on_portal_routes_get_pages_or_redirects() {
        let (gate, store) = demo();
        let html = "text/html,application/xhtml+xml;q=0.9";
        let verdict = run(
            &gate,
            &store,
            "/portal/x",
            "GET",
            Headers(vec![("x-consumer-username", "bob@example.com"), ("accept", html)]),
        );
        assert_eq!(status_of(&verdict), 302);
        let verdict = run(
            &gate,
            &store,
            "/portal/x",
            "GET",
            Headers(vec![("x-consumer-username", "dave@example.com"), ("accept", html)]),
        );
        let Action::Respond(page) = verdict.action else {
            panic!("expected a page")
        };
        assert!(page
            .headers
            .iter()
            .any(|(n, v)| *n == "content-type" && v.starts_with("text/html")));
        // The API never answers with HTML.
        let verdict = run(
            &gate,
            &store,
            "/api/x",
            "GET",
            Headers(vec![("x-consumer-username", "dave@example.com"), ("accept", html)]),
        );
        let Action::Respond(json) = verdict.action else {
            panic!("expected JSON")
        };
        assert!(json
            .headers
            .iter()
            .any(|(n, v)| *n == "content-type" && v == "application/json"));
    }

    #[test]
    fn unrouted_and_unavailable() {
        let (gate, store) = demo();
        let verdict = run(&gate, &store, "/elsewhere", "GET", Headers(vec![]));
        assert_eq!(status_of(&verdict), 403);
        assert_eq!(verdict.counter, Counter::Unrouted);
        let verdict = decide(
            &gate,
            "/api/x",
            "GET",
            &Headers(vec![("x-consumer-username", "alice@example.com")]),
            |_| Lookup::Unavailable,
        );
        assert_eq!(status_of(&verdict), 503);
    }

    #[test]
    fn accept_parsing() {
        assert!(accepts_html(&Headers(vec![("accept", "TEXT/HTML; q=1")])));
        assert!(!accepts_html(&Headers(vec![("accept", "application/json")])));
        assert!(!accepts_html(&Headers(vec![("accept", "text/htmlx")])));
        assert!(!accepts_html(&Headers(vec![])));
    }
}
