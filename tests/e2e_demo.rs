#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test code: failing loudly is the point
//! End to end: the shipped demo (filter-config/envoy/static.yaml) in a real Envoy
//! with two workers, the built `.wasm`, and real HTTP requests.

mod common;

use common::{adapt_shipped_config, Envoy, Ports, Request, Response};

struct Demo {
    envoy: Envoy,
    port: u16,
}

fn demo(name: &str) -> Demo {
    let ports = Ports::new();
    let config = adapt_shipped_config("filter-config/envoy/static.yaml", &ports);
    let envoy = Envoy::start(name, &config, ports.admin, 2);
    Demo {
        envoy,
        port: ports.listener,
    }
}

impl Demo {
    fn send(&self, request: Request) -> Response {
        request.send(self.port)
    }
}

const DEVELOPERS: [(&str, &str); 5] = [
    ("alice@example.com", "approved"),
    ("bob@example.com", "requested"),
    ("carol@example.com", "rejected"),
    ("dave@example.com", "revoked"),
    ("eve@example.com", "unknown"),
];

#[test]
fn every_status_against_every_route_class_and_method() {
    let demo = demo("matrix");
    // (method, path, class)
    let routes = [
        ("GET", "/portal/dashboard", "portal"),
        ("POST", "/portal/profile", "portal"),
        ("GET", "/portal/credentials", "credentials"),
        ("POST", "/portal/credentials", "credentials"),
        ("DELETE", "/portal/credentials/key-1", "credentials"),
        ("GET", "/api/orders", "api"),
        ("POST", "/api/orders", "api"),
        ("PUT", "/api/orders/7", "api"),
        ("PATCH", "/api/orders/7", "api"),
        ("DELETE", "/api/orders/7", "api"),
        ("GET", "/portal/login", "public"),
        ("POST", "/portal/register", "public"),
        ("GET", "/portal/assets/app.css", "public"),
    ];
    for (method, path, class) in routes {
        for (email, status) in DEVELOPERS {
            let response = demo.send(Request::new(method, path).user(email).body("{}"));
            let context = format!(
                "{email} ({status}) {method} {path} ({class}): {} {}",
                response.status, response.body
            );
            if class == "public" || status == "approved" {
                assert_eq!(response.status, 200, "{context}");
                assert_eq!(response.upstream_path(), path, "{context}");
                assert_eq!(response.json()["method"], method, "{context}");
            } else {
                assert_eq!(response.status, 403, "{context}");
                assert_eq!(response.json()["status"], status, "{context}");
                assert!(response.json()["message"].as_str().unwrap().len() > 20, "{context}");
                assert_eq!(response.header("content-type"), Some("application/json"), "{context}");
            }
        }
        // No identity at all.
        let response = demo.send(Request::new(method, path));
        if class == "public" {
            assert_eq!(response.status, 200, "anonymous {method} {path}");
        } else {
            assert_eq!(response.status, 401, "anonymous {method} {path}: {}", response.body);
            assert_eq!(response.json()["status"], "unauthenticated");
        }
    }
    // Unmatched paths take the default: deny.
    let response = demo.send(Request::get("/admin").user("alice@example.com"));
    assert_eq!(response.status, 403);
    assert_eq!(response.json()["status"], "unrouted");
}

#[test]
fn approved_requests_carry_the_developer_and_spoofed_headers_are_refused() {
    let demo = demo("headers");
    let response = demo.send(Request::get("/api/orders").user(" Alice@Example.COM "));
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(response.upstream_header("x-developer-email"), ["alice@example.com"]);
    assert_eq!(response.upstream_header("x-developer-status"), ["approved"]);

    // A client copy of a developer header is refused on every route, public ones
    // included, in any case and however many copies: the upstream only ever
    // sees the gate's.
    let spoofs: [&[(&str, &str)]; 4] = [
        &[
            ("x-developer-email", "mallory@example.com"),
            ("x-developer-email", "mallory2@example.com"),
        ],
        &[("X-Developer-Status", "approved")],
        &[("x-developer-email", "")],
        &[
            ("x-developer-email", "mallory@example.com"),
            ("x-developer-status", "approved"),
        ],
    ];
    for headers in spoofs {
        for (path, user) in [("/api/orders", "alice@example.com"), ("/portal/login", "")] {
            let mut request = Request::get(path);
            if !user.is_empty() {
                request = request.user(user);
            }
            for (name, value) in headers {
                request = request.header(name, value);
            }
            let response = demo.send(request);
            assert_eq!(response.status, 400, "{path} {headers:?}: {}", response.body);
            assert_eq!(response.json()["status"], "bad_request");
            assert!(response.json()["message"].as_str().unwrap().contains("x-developer-"));
        }
    }
}

#[test]
fn browsers_get_a_page_or_a_redirect_on_portal_routes() {
    let demo = demo("browser");
    let html = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

    // Configured redirects: requested -> pending page, no identity -> login.
    let response = demo.send(
        Request::get("/portal/dashboard")
            .user("bob@example.com")
            .header("accept", html),
    );
    assert_eq!(response.status, 302);
    assert_eq!(response.header("location"), Some("/portal/pending"));
    let response = demo.send(Request::get("/portal/dashboard").header("accept", html));
    assert_eq!(response.status, 302);
    assert_eq!(response.header("location"), Some("/portal/login"));
    // The redirect targets are public, so the browser is not sent round in a loop.
    assert_eq!(
        demo.send(Request::get("/portal/pending").header("accept", html)).status,
        200
    );

    // Other statuses get a small HTML page that says what happened.
    for (email, words) in [
        ("dave@example.com", "revoked"),
        ("carol@example.com", "rejected"),
        ("eve@example.com", "Register"),
    ] {
        let response = demo.send(Request::get("/portal/dashboard").user(email).header("accept", html));
        assert_eq!(response.status, 403, "{email}");
        assert!(
            response.header("content-type").unwrap().starts_with("text/html"),
            "{email}"
        );
        assert!(
            response.body.contains("<h1>") && response.body.contains(words),
            "{email}: {}",
            response.body
        );
    }

    // APIs and credential endpoints always answer JSON, even to a browser.
    for path in ["/api/orders", "/portal/credentials"] {
        let response = demo.send(Request::get(path).user("dave@example.com").header("accept", html));
        assert_eq!(response.status, 403, "{path}");
        assert_eq!(response.json()["status"], "revoked", "{path}");
    }
}

#[test]
fn missing_garbled_or_duplicated_identity_is_no_identity() {
    let demo = demo("identity");
    let cases: Vec<(&str, Request)> = vec![
        ("missing", Request::get("/api/orders")),
        ("empty", Request::get("/api/orders").user("")),
        (
            "twice, same value",
            Request::get("/api/orders")
                .user("alice@example.com")
                .user("alice@example.com"),
        ),
        (
            "twice, different",
            Request::get("/api/orders")
                .user("dave@example.com")
                .user("alice@example.com"),
        ),
        (
            "a list",
            Request::get("/api/orders").user("alice@example.com, dave@example.com"),
        ),
        ("not an email", Request::get("/api/orders").user("alice")),
        (
            "two at-signs",
            Request::get("/api/orders").user("alice@example.com@evil.example"),
        ),
    ];
    for (what, request) in cases {
        let response = demo.send(request);
        assert_eq!(response.status, 401, "{what}: {}", response.body);
        assert_eq!(response.json()["status"], "unauthenticated", "{what}");
    }
    // Unicode case folding must not turn another address into alice's.
    let response = demo.send(Request::get("/api/orders").user("\u{212A}arol@example.com"));
    assert_ne!(response.status, 200);
    let response = demo.send(Request::get("/api/orders").user("ALICE@EXAMPLE.COM"));
    assert_eq!(response.status, 200);
}

#[test]
fn path_tricks_cannot_slip_past_the_classification() {
    let demo = demo("paths");
    // Paths that look public but resolve to protected routes: without identity
    // they are refused, with alice's they reach the upstream normalized.
    let resolves_to_protected = [
        ("/portal/assets/../credentials", "/portal/credentials"),
        ("/portal/assets/%2e%2e/credentials", "/portal/credentials"),
        ("/portal/assets/%2E%2E/%2e%2E/api/keys", "/api/keys"),
        ("/portal/login/../../api/orders", "/api/orders"),
        ("/portal/assets/./../../api/orders", "/api/orders"),
        ("//portal//credentials", "/portal/credentials"),
        (
            "/portal/assets/../credentials?next=/portal/login",
            "/portal/credentials?next=/portal/login",
        ),
        ("/%70ortal/credentials", "/portal/credentials"),
        ("/portal/login/", "/portal/login/"),
    ];
    for (target, upstream) in resolves_to_protected {
        let anonymous = demo.send(Request::new("POST", target));
        assert_eq!(anonymous.status, 401, "{target}: {}", anonymous.body);
        let revoked = demo.send(Request::new("POST", target).user("dave@example.com"));
        assert_eq!(revoked.status, 403, "{target}");
        let approved = demo.send(Request::new("POST", target).user("alice@example.com"));
        assert_eq!(approved.status, 200, "{target}: {}", approved.body);
        assert_eq!(approved.upstream_path(), upstream, "{target}");
    }
    // Like Envoy's normalize_path, ".." removes an empty segment first, then
    // slashes merge: this one stays inside the public assets, and the upstream is
    // sent exactly that normalized path.
    let response = demo.send(Request::get("//portal//assets//..//..//api//orders"));
    assert_eq!(response.status, 200);
    assert_eq!(response.upstream_path(), "/portal/assets/api/orders");

    // Paths whose meaning upstreams disagree on are refused outright.
    for target in [
        "/portal/assets/..%2Fcredentials",
        "/portal/assets/..%2fcredentials",
        "/portal/assets/..%5Ccredentials",
        "/portal/assets/..;/credentials",
        "/portal/assets/..%3B/credentials",
        "/portal/assets/app.css%00",
        "/portal/assets/%zz",
        "/portal/assets/%",
    ] {
        let response = demo.send(Request::get(target).user("alice@example.com"));
        assert_eq!(response.status, 400, "{target}: {}", response.body);
        assert_eq!(response.json()["status"], "bad_request", "{target}");
    }
    // A raw backslash never reaches the upstream as a public path (Envoy's codec
    // or the gate refuses it).
    let response = demo.send(Request::get("/portal/assets/..\\credentials"));
    assert_eq!(response.status, 400, "{}", response.body);
    // Case variants of protected paths are not public: unrouted, denied.
    let response = demo.send(Request::get("/API/orders"));
    assert_eq!(response.status, 403);
    assert_eq!(response.json()["status"], "unrouted");
    // Public prefixes match whole segments.
    let response = demo.send(Request::get("/portal/assets-admin/x"));
    assert_eq!(response.status, 401);
}

#[test]
fn decisions_are_counted_and_exposed_to_prometheus() {
    let demo = demo("counters");
    let envoy = &demo.envoy;
    let before_allowed = envoy.counter("wasmcustom.devportal_gate.api.allowed");
    let before_revoked = envoy.counter("wasmcustom.devportal_gate.credentials.revoked");
    let before_anonymous = envoy.counter("wasmcustom.devportal_gate.portal.unauthenticated");
    let before_bad = envoy.counter("wasmcustom.devportal_gate.invalid.bad_request");
    for _ in 0..3 {
        assert_eq!(
            demo.send(Request::get("/api/orders").user("alice@example.com")).status,
            200
        );
    }
    assert_eq!(
        demo.send(Request::new("POST", "/portal/credentials").user("dave@example.com"))
            .status,
        403
    );
    assert_eq!(demo.send(Request::get("/portal/x")).status, 401);
    assert_eq!(demo.send(Request::get("/api/%2F")).status, 400);
    assert_eq!(
        envoy.counter("wasmcustom.devportal_gate.api.allowed"),
        before_allowed + 3
    );
    assert_eq!(
        envoy.counter("wasmcustom.devportal_gate.credentials.revoked"),
        before_revoked + 1
    );
    assert_eq!(
        envoy.counter("wasmcustom.devportal_gate.portal.unauthenticated"),
        before_anonymous + 1
    );
    assert_eq!(
        envoy.counter("wasmcustom.devportal_gate.invalid.bad_request"),
        before_bad + 1
    );

    let prometheus = Request::get("/stats/prometheus").send(envoy.admin).body;
    let line = prometheus
        .lines()
        .find(|l| l.starts_with("devportal_gate{devportal_class=\"api\",devportal_outcome=\"allowed\"}"))
        .unwrap_or_else(|| panic!("no labelled api/allowed counter in:\n{prometheus}"));
    assert!(line.ends_with(&format!(" {}", before_allowed + 3)), "{line}");
}

#[test]
fn every_worker_configured_the_filter_and_seeded_once() {
    let demo = demo("workers");
    let log = demo.envoy.log();
    // The gate's configuration seeds; the admin listener's only reads.
    let configured: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("devportal-gate") && l.contains("configured: static directory of"))
        .collect();
    // Main thread plus two workers.
    assert!(configured.len() >= 3, "{configured:#?}");
    let writers = configured.iter().filter(|l| l.contains("(4 written")).count();
    let idle = configured
        .iter()
        .filter(|l| l.contains("(0 written, 4 already current"))
        .count();
    assert_eq!((writers, idle), (1, configured.len() - 1), "{configured:#?}");
}
