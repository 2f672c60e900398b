#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test code: failing loudly is the point
//! End to end, on variations of the shipped demo: Kong Enterprise's answer, bad
//! configurations that Envoy must refuse, and a live reconfiguration.

mod common;

use std::time::{Duration, Instant};

use common::{adapt_shipped_config, run_envoy_expecting_exit, Envoy, LdsGateway, Ports, Request, Response};

const DAVE_REVOKED: &str = r#"{ "email": "dave@example.com", "status": "revoked" }"#;

fn demo_with(ports: &Ports, from: &str, to: &str) -> String {
    let config = adapt_shipped_config("filter-config/envoy/static.yaml", ports);
    assert!(config.contains(from), "the demo no longer contains {from:?}");
    config.replace(from, to)
}

#[test]
fn kong_enterprise_answers_for_migrating_users() {
    let ports = Ports::new();
    let config = demo_with(&ports, r#""style": "devportal_gate""#, r#""style": "kong_enterprise""#);
    let envoy = Envoy::start("kong-style", &config, ports.admin, 2);
    for (email, kong_status) in [
        ("bob@example.com", "PENDING"),
        ("carol@example.com", "REJECTED"),
        ("dave@example.com", "REVOKED"),
    ] {
        let response = Request::get("/api/orders").user(email).send(ports.listener);
        assert_eq!(response.status, 401, "{email}");
        assert_eq!(
            response.body,
            format!(r#"{{"message":"Unauthorized: Developer status \"{kong_status}\""}}"#)
        );
    }
    assert_eq!(
        Request::get("/api/orders")
            .user("alice@example.com")
            .send(ports.listener)
            .status,
        200
    );
    drop(envoy);
}

/// A static directory (GitOps): the admin API serves reads and refuses writes.
#[test]
fn the_admin_api_over_a_static_directory_is_read_only() {
    let ports = Ports::new();
    let config = adapt_shipped_config("filter-config/envoy/static.yaml", &ports);
    let envoy = Envoy::start("static-admin", &config, ports.admin, 2);
    let admin = |method: &str, path: &str, body: &str| -> Response {
        Request::new(method, &format!("/_devportal{path}"))
            .header("authorization", "Bearer demo-admin-token-change-me")
            .body(body)
            .send(ports.api)
    };
    let tab = admin("GET", "/developers?status=approved", "");
    assert_eq!(tab.status, 200, "{}", tab.body);
    let tab = tab.json();
    assert_eq!(tab["developers"][0]["email"], "alice@example.com");
    assert_eq!(
        tab["counts"],
        serde_json::json!({"approved": 1, "requested": 1, "rejected": 1, "revoked": 1})
    );
    assert_eq!(
        admin("GET", "/developers/bob@example.com", "").json()["developer"]["status"],
        "requested"
    );
    for (method, path, body) in [
        ("POST", "/developers/bob@example.com/accept", "{}"),
        ("POST", "/developers", r#"{"email":"new@example.com"}"#),
        (
            "POST",
            "/developers/bulk",
            r#"{"action":"revoke","emails":["alice@example.com"]}"#,
        ),
    ] {
        let refused = admin(method, path, body);
        assert_eq!(refused.status, 403, "{path}: {}", refused.body);
        assert_eq!(refused.json()["error"], "read_only_directory");
    }
    assert_eq!(
        Request::get("/api/orders")
            .user("bob@example.com")
            .send(ports.listener)
            .status,
        403,
        "nothing changed"
    );
    assert_eq!(
        Request::get("/_devportal/health").send(ports.api).json()["source"],
        "static"
    );
    drop(envoy);
}

#[test]
fn envoy_refuses_a_bad_configuration_and_logs_the_field() {
    let cases = [
        (
            DAVE_REVOKED,
            r#"{ "email": "ALICE@example.com", "status": "revoked" }"#,
            "developers[3].email",
        ),
        (
            DAVE_REVOKED,
            r#"{ "email": "dave@example.com", "status": "suspended" }"#,
            "developers[3].status",
        ),
        (
            r#""unmatched": "deny""#,
            r#""unmatched": "deny", "colour": "blue""#,
            "colour",
        ),
        (
            r#""header": "x-consumer-username""#,
            r#""header": "x consumer""#,
            "identity.header",
        ),
        (
            r#"{ "prefix": "/api/", "class": "api" }"#,
            r#"{ "prefix": "/api/", "class": "api" }, { "exact": "/api/x", "class": "public" }"#,
            "routes[7]",
        ),
    ];
    for (from, to, field) in cases {
        let config = demo_with(&Ports::new(), from, to);
        let (status, log) = run_envoy_expecting_exit("bad-config", &config);
        assert!(!status.success(), "Envoy exited with success for {field}");
        let line = log
            .lines()
            .find(|l| l.contains("devportal-gate: invalid configuration"))
            .unwrap_or_else(|| panic!("no devportal-gate error in Envoy's log for {field}:\n{log}"));
        assert!(line.contains(&format!("`{field}`")), "{field}: {line}");
    }
}

/// The static demo with its portal listener served over LDS (so a test can change it).
struct DynamicDemo(LdsGateway);

impl DynamicDemo {
    fn start() -> DynamicDemo {
        DynamicDemo(LdsGateway::start(
            "reconfigure",
            "filter-config/envoy/static.yaml",
            &Ports::new(),
            &[],
        ))
    }

    fn status_of(&self, email: &str) -> (u16, String) {
        let response = Request::get("/api/orders").user(email).send(self.0.port);
        let status = if response.status == 200 {
            "passed".to_string()
        } else {
            response.json()["status"].as_str().unwrap().to_string()
        };
        (response.status, status)
    }
}

#[test]
fn a_reconfiguration_that_changes_or_removes_developers_takes_effect() {
    let demo = DynamicDemo::start();
    // The listener comes from LDS: wait until it serves.
    let deadline = Instant::now() + Duration::from_secs(30);
    while Request::get("/portal/login")
        .try_send(demo.0.port)
        .map(|r| r.status)
        .ok()
        != Some(200)
    {
        assert!(Instant::now() < deadline, "the LDS listener never came up");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(demo.status_of("alice@example.com").0, 200);
    assert_eq!(demo.status_of("bob@example.com").1, "requested");

    // alice removed, bob approved, dave from revoked to requested.
    let changed = demo
        .0
        .listener
        .replace(r#"{ "email": "alice@example.com", "status": "approved" },"#, "")
        .replace(
            r#"{ "email": "bob@example.com", "status": "requested" }"#,
            r#"{ "email": "bob@example.com", "status": "approved" }"#,
        )
        .replace(DAVE_REVOKED, r#"{ "email": "dave@example.com", "status": 1 }"#);
    assert_ne!(changed, demo.0.listener);
    demo.0.publish(&changed);

    let deadline = Instant::now() + Duration::from_secs(30);
    while demo.status_of("bob@example.com").0 != 200 {
        assert!(Instant::now() < deadline, "the new configuration never took effect");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Every worker answers from the new directory: ask several times, over new
    // connections, which Envoy spreads across its two workers.
    for _ in 0..10 {
        assert_eq!(demo.status_of("alice@example.com"), (403, "unknown".to_string()));
        assert_eq!(demo.status_of("bob@example.com").0, 200);
        assert_eq!(demo.status_of("dave@example.com"), (403, "requested".to_string()));
        assert_eq!(demo.status_of("carol@example.com"), (403, "rejected".to_string()));
    }
    let log = demo.0.envoy.log();
    assert!(log.contains("1 removed)"), "no worker reports removing alice:\n{log}");
}
