#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test code: failing loudly is the point
//! End to end, hostile input against the shipped etcd demo (demo.yaml, real etcd,
//! Envoy `--concurrency 2`): bytes that are not UTF-8 in every place a client
//! controls, over HTTP/1.1 and HTTP/2, on both listeners; then every listener must
//! still answer on every worker, and the syncer must still sync. Also: admin
//! bodies without a Content-Length (chunked HTTP/1.1, HTTP/2) are read, not lost.

mod common;

use std::time::Duration;

use common::demo::{gateway, Gateway};
use common::raw::{http1, http1_status, http2, H2Outcome};
use common::{wait_until, Etcd, Request};
use serde_json::{json, Value};

/// Each hostile request is sent this many times on fresh connections: enough
/// that both workers see it (a panic kills the VM of the worker it ran on).
const REPEAT: usize = 8;

fn http1_request(method: &str, target: &[u8], headers: &[(&[u8], &[u8])], body: &[u8]) -> Vec<u8> {
    let mut raw = Vec::new();
    raw.extend_from_slice(method.as_bytes());
    raw.push(b' ');
    raw.extend_from_slice(target);
    raw.extend_from_slice(b" HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n");
    for (name, value) in headers {
        raw.extend_from_slice(name);
        raw.extend_from_slice(b": ");
        raw.extend_from_slice(value);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(format!("content-length: {}\r\n\r\n", body.len()).as_bytes());
    raw.extend_from_slice(body);
    raw
}

struct Case {
    what: &'static str,
    port: u16,
    method: &'static str,
    target: Vec<u8>,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    body: Option<Vec<u8>>,
    /// The answer the gate must give; `None` where the proxy's own codec may
    /// refuse first (any answer but a 5xx, or a refused stream, is fine).
    expect: Option<u16>,
}

fn cases(gate: &Gateway) -> Vec<Case> {
    let token = format!("Bearer {}", gate.token);
    let h = |name: &[u8], value: &[u8]| (name.to_vec(), value.to_vec());
    let alice = h(b"x-consumer-username", b"alice@example.com");
    let auth = h(b"authorization", token.as_bytes());
    let case =
        |what, port, method, target: &[u8], headers: Vec<(Vec<u8>, Vec<u8>)>, body: Option<&[u8]>, expect| Case {
            what,
            port,
            method,
            target: target.to_vec(),
            headers,
            body: body.map(<[u8]>::to_vec),
            expect,
        };
    let (p, a) = (gate.port, gate.api);
    vec![
        case(
            "identity 0xFF",
            p,
            "GET",
            b"/api/orders",
            vec![h(b"x-consumer-username", b"\xff")],
            None,
            Some(401),
        ),
        case(
            "identity in Latin-1",
            p,
            "GET",
            b"/api/orders",
            vec![h(b"x-consumer-username", b"alic\xe9@example.com")],
            None,
            Some(401),
        ),
        case(
            "identity: valid one, then 0xFF",
            p,
            "GET",
            b"/api/orders",
            vec![alice.clone(), h(b"x-consumer-username", b"\xff")],
            None,
            Some(401),
        ),
        case(
            "other header 0xFF, public",
            p,
            "GET",
            b"/portal/login",
            vec![h(b"x-note", b"caf\xe9 \xff\xfe")],
            None,
            Some(200),
        ),
        case(
            "other header 0xFF, approved",
            p,
            "GET",
            b"/api/orders",
            vec![alice.clone(), h(b"x-note", b"\xff")],
            None,
            Some(200),
        ),
        case(
            "accept 0xFF on a portal page",
            p,
            "GET",
            b"/portal/home",
            vec![
                h(b"x-consumer-username", b"bob@example.com"),
                h(b"accept", b"text/html\xff"),
            ],
            None,
            Some(403),
        ),
        case(
            "spoofed developer header 0xFF",
            p,
            "GET",
            b"/portal/login",
            vec![h(b"x-developer-email", b"\xff@example.com")],
            None,
            Some(400),
        ),
        case(
            "header name 0xFF",
            p,
            "GET",
            b"/portal/login",
            vec![h(b"x-\xff", b"1")],
            None,
            None,
        ),
        case("path 0xFF", p, "GET", b"/api/\xff", vec![alice.clone()], None, None),
        case("path %FF", p, "GET", b"/api/%ff", vec![alice.clone()], None, Some(400)),
        case(
            "query 0xFF",
            p,
            "GET",
            b"/api/orders?q=\xff",
            vec![alice.clone()],
            None,
            None,
        ),
        case(
            "body 0xFF on the gate",
            p,
            "POST",
            b"/api/orders",
            vec![alice.clone()],
            Some(b"\xff\xfe"),
            Some(200),
        ),
        case(
            "admin token 0xFF",
            a,
            "GET",
            b"/_devportal/developers",
            vec![h(b"authorization", b"Bearer \xff")],
            None,
            Some(401),
        ),
        case(
            "admin header 0xFF",
            a,
            "GET",
            b"/_devportal/health",
            vec![h(b"x-note", b"\xff")],
            None,
            Some(200),
        ),
        case(
            "admin body 0xFF",
            a,
            "POST",
            b"/_devportal/developers/bob@example.com/reject",
            vec![auth.clone()],
            Some(b"{\"reason\":\"\xff\"}"),
            Some(400),
        ),
        case(
            "admin path %FF",
            a,
            "GET",
            b"/_devportal/developers/%ff@example.com",
            vec![auth.clone()],
            None,
            Some(400),
        ),
        case(
            "admin query 0xFF",
            a,
            "GET",
            b"/_devportal/developers?status=\xff",
            vec![auth.clone()],
            None,
            None,
        ),
        case(
            "admin header name 0xFF",
            a,
            "GET",
            b"/_devportal/health",
            vec![h(b"\xff", b"1")],
            None,
            None,
        ),
    ]
}

fn send_http1(case: &Case) -> Option<u16> {
    let headers: Vec<(&[u8], &[u8])> = case.headers.iter().map(|(n, v)| (n.as_slice(), v.as_slice())).collect();
    let request = http1_request(
        case.method,
        &case.target,
        &headers,
        case.body.as_deref().unwrap_or_default(),
    );
    http1_status(&http1(case.port, &request).unwrap())
}

fn send_http2(case: &Case) -> H2Outcome {
    let mut headers: Vec<(&[u8], &[u8])> = vec![
        (b":method", case.method.as_bytes()),
        (b":scheme", b"http"),
        (b":authority", b"localhost"),
        (b":path", &case.target),
    ];
    headers.extend(case.headers.iter().map(|(n, v)| (n.as_slice(), v.as_slice())));
    http2(case.port, &headers, case.body.as_deref()).unwrap()
}

#[test]
fn bytes_that_are_not_utf8_never_take_a_worker_down() {
    let etcd = Etcd::start("hostile", common::free_port());
    let gate = gateway("hostile", etcd.port);
    gate.wait_synced();

    for case in cases(&gate) {
        for _ in 0..REPEAT {
            let status = send_http1(&case);
            match case.expect {
                Some(expected) => assert_eq!(status, Some(expected), "HTTP/1.1 {}", case.what),
                None => assert!(status.is_some_and(|s| s < 500), "HTTP/1.1 {}: {status:?}", case.what),
            }
            let outcome = send_http2(&case);
            match (case.expect, &outcome) {
                (Some(expected), H2Outcome::Answered(Some(status))) => {
                    assert_eq!(*status, expected, "HTTP/2 {}", case.what)
                }
                (Some(_), other) => panic!("HTTP/2 {}: {other:?}", case.what),
                (None, H2Outcome::Answered(Some(status))) => assert!(*status < 500, "HTTP/2 {}: {status}", case.what),
                (None, _) => {} // the codec refused the stream itself
            }
        }
    }

    // Every worker still answers on both listeners...
    for _ in 0..20 {
        assert_eq!(gate.api_status("alice@example.com"), 200);
        assert_eq!(gate.api_status("bob@example.com"), 403);
        assert_eq!(Request::get("/_devportal/health").send(gate.api).status, 200);
    }
    // ...bob was never rejected by the garbled body, and the syncer still syncs.
    assert_eq!(gate.developer("bob@example.com")["status"], "requested");
    etcd.put(
        "/devportal/dev/carol@example.com",
        &json!({"status": "approved", "created_ms": 1, "updated_ms": 2}).to_string(),
    );
    wait_until("a direct etcd write reaches the gate", Duration::from_secs(6), || {
        gate.api_status("carol@example.com") == 200
    });
    let log = gate.envoy.log();
    assert!(!log.contains("panic"), "the filter panicked:\n{log}");
}

fn chunked(method: &str, target: &str, token: &str, body: &[u8]) -> Vec<u8> {
    let mut raw = format!(
        "{method} {target} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\nauthorization: Bearer {token}\r\ntransfer-encoding: chunked\r\n\r\n"
    )
    .into_bytes();
    // Two chunks, so the body also arrives in more than one piece.
    let (first, second) = body.split_at(body.len() / 2);
    for part in [first, second] {
        raw.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        raw.extend_from_slice(part);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    raw
}

#[test]
fn admin_bodies_without_a_content_length_are_read() {
    let etcd = Etcd::start("bodies", common::free_port());
    let gate = gateway("bodies", etcd.port);
    gate.wait_synced();
    let revoke = "/_devportal/developers/alice@example.com/revoke";

    // Chunked HTTP/1.1: a dry run stays a dry run.
    let answer = http1(
        gate.api,
        &chunked(
            "POST",
            revoke,
            &gate.token,
            br#"{"dry_run": true, "reason": "chunked dry run"}"#,
        ),
    )
    .unwrap();
    assert_eq!(http1_status(&answer), Some(200), "{}", String::from_utf8_lossy(&answer));
    assert!(
        String::from_utf8_lossy(&answer).contains("\"dry_run\":true"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    assert_eq!(
        gate.api_status("alice@example.com"),
        200,
        "a chunked dry run revoked for real"
    );

    // HTTP/2 without content-length: the same.
    let token = format!("Bearer {}", gate.token);
    let headers: Vec<(&[u8], &[u8])> = vec![
        (b":method", b"POST"),
        (b":scheme", b"http"),
        (b":authority", b"localhost"),
        (b":path", revoke.as_bytes()),
        (b"authorization", token.as_bytes()),
    ];
    let outcome = http2(
        gate.api,
        &headers,
        Some(br#"{"dry_run": true, "reason": "h2 dry run"}"#),
    )
    .unwrap();
    assert_eq!(outcome, H2Outcome::Answered(Some(200)));
    assert_eq!(
        gate.api_status("alice@example.com"),
        200,
        "an HTTP/2 dry run revoked for real"
    );

    // A real chunked revocation keeps its reason.
    let answer = http1(
        gate.api,
        &chunked("POST", revoke, &gate.token, br#"{"reason": "sent chunked"}"#),
    )
    .unwrap();
    assert_eq!(http1_status(&answer), Some(200), "{}", String::from_utf8_lossy(&answer));
    assert_eq!(gate.api_status("alice@example.com"), 403);
    let history = gate.developer("alice@example.com")["history"].clone();
    assert_eq!(
        history.as_array().unwrap().last().unwrap()["reason"],
        "sent chunked",
        "{history}"
    );

    // An oversized chunked body is refused and changes nothing.
    let big = format!(r#"{{"reason": "{}"}}"#, "x".repeat(70 * 1024));
    let reapprove = "/_devportal/developers/alice@example.com/reapprove";
    let answer = http1(gate.api, &chunked("POST", reapprove, &gate.token, big.as_bytes())).unwrap();
    assert_eq!(http1_status(&answer), Some(413), "{}", String::from_utf8_lossy(&answer));
    assert_eq!(gate.api_status("alice@example.com"), 403);

    // A body on a request that takes none is refused, chunked or not.
    let answer = http1(gate.api, &chunked("GET", "/_devportal/developers", &gate.token, b"{}")).unwrap();
    assert_eq!(http1_status(&answer), Some(400), "{}", String::from_utf8_lossy(&answer));
    // And a bodiless GET over HTTP/2 is answered, not held waiting for a body.
    let headers: Vec<(&[u8], &[u8])> = vec![
        (b":method", b"GET"),
        (b":scheme", b"http"),
        (b":authority", b"localhost"),
        (b":path", b"/_devportal/developers/alice@example.com"),
        (b"authorization", token.as_bytes()),
    ];
    assert_eq!(http2(gate.api, &headers, None).unwrap(), H2Outcome::Answered(Some(200)));
}

#[test]
fn look_alike_identities_paths_and_addresses_are_refused() {
    let etcd = Etcd::start("lookalike", common::free_port());
    let gate = gateway("lookalike", etcd.port);
    gate.wait_synced();

    // Only ASCII whitespace is trimmed: Unicode spaces around alice are not alice.
    for spoof in [
        "\u{00A0}alice@example.com",
        "alice@example.com\u{3000}",
        "\u{2003}alice@example.com",
    ] {
        assert_eq!(gate.api_status(spoof), 401, "{spoof:?}");
    }
    assert_eq!(gate.api_status(" alice@example.com\t"), 200);

    // Double-encoded and overlong dot segments never reach an upstream.
    for path in [
        "/portal/assets/%252e%252e/credentials",
        "/portal/assets/%c0%ae%c0%ae/credentials",
        "/portal/assets/%C0%AE%C0%AE/credentials",
        "/portal/assets/%e0%80%ae%e0%80%ae/credentials",
        "/portal/assets/%2525252e/x",
    ] {
        let response = Request::get(path).send(gate.port);
        assert_eq!(response.status, 400, "{path}: {}", response.body);
        assert_eq!(response.json()["status"], "bad_request", "{path}");
    }

    // An address the admin API could not name cannot register itself either.
    for unmanageable in [
        "a/b@example.com",
        "a%2Fb@example.com",
        "j\u{f6}rg@example.com",
        "a?b@example.com",
    ] {
        let response = Request::get("/portal/home").user(unmanageable).send(gate.port);
        assert_eq!(response.status, 401, "{unmanageable:?}: {}", response.body);
    }
    assert!(etcd.get("/devportal/dev/a/b@example.com").is_none());
    // And every address that can register can be managed: one with every
    // accepted special character, through the path, as the API lists it.
    let odd = "o'neil.a+b!c$d&e*f=g_h~i-j@sub-1.example.com";
    assert_eq!(
        Request::get("/portal/home").user(odd).send(gate.port).status,
        403,
        "self-registered as requested"
    );
    wait_until("registration recorded", Duration::from_secs(5), || {
        etcd.get(&format!("/devportal/dev/{odd}")).is_some()
    });
    let accepted = gate.act(odd, "accept");
    assert_eq!(accepted.status, 200, "{}", accepted.body);
    assert_eq!(gate.api_status(odd), 200);
    assert_eq!(gate.developer(odd)["status"], "approved");
    let deleted = gate.act(odd, "delete");
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    assert!(etcd.get(&format!("/devportal/dev/{odd}")).is_none());
}

/// The demo with self-service registration bounded by `limits` (JSON).
fn bounded_gateway(name: &str, etcd_port: u16, limits: &str) -> Gateway {
    common::demo::gateway_with(name, etcd_port, |config| {
        let edited = config.replace(
            r#""unknown_developers": "request","#,
            &format!(r#""unknown_developers": "request", "registration": {limits},"#),
        );
        assert_ne!(edited, config, "demo.yaml enables self-service");
        edited
    })
}

#[test]
fn self_registration_is_bounded_by_rate_and_by_pending_requests() {
    let etcd = Etcd::start("bounded", common::free_port());
    let gate = bounded_gateway("bounded", etcd.port, r#"{"per_minute": 5, "max_pending": 1000}"#);
    gate.wait_synced();
    // Five registrations in this minute, then 429 with retry-after, nothing recorded.
    for i in 0..5 {
        let response = Request::get("/portal/home")
            .user(&format!("new{i}@example.com"))
            .send(gate.port);
        assert_eq!(response.status, 403, "{}", response.body);
        assert_eq!(response.json()["status"], "requested");
    }
    let refused = Request::get("/portal/home").user("new5@example.com").send(gate.port);
    if refused.status == 403 {
        // The minute turned over between the registrations: one more round.
        let again = Request::get("/portal/home").user("new6@example.com").send(gate.port);
        assert_eq!(again.status, 403);
    }
    let mut refused = refused;
    for i in 7..20 {
        if refused.status == 429 {
            break;
        }
        refused = Request::get("/portal/home")
            .user(&format!("new{i}@example.com"))
            .send(gate.port);
    }
    assert_eq!(refused.status, 429, "{}", refused.body);
    assert_eq!(refused.json()["status"], "registration_limited");
    let retry: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry));
    let recorded = (0..20)
        .filter(|i| etcd.get(&format!("/devportal/dev/new{i}@example.com")).is_some())
        .count();
    assert!((5..=10).contains(&recorded), "{recorded} registrations recorded");
    assert!(gate.envoy.counter("wasmcustom.devportal_gate.registration.limited") >= 1);
    drop(gate);

    // The cap: bob waits already; two more fill a cap of 3, then registration closes.
    let etcd = Etcd::start("capped", common::free_port());
    let gate = bounded_gateway("capped", etcd.port, r#"{"per_minute": 100, "max_pending": 3}"#);
    gate.wait_synced();
    for who in ["ann@example.com", "ben@example.com"] {
        assert_eq!(Request::get("/portal/home").user(who).send(gate.port).status, 403);
    }
    wait_until("the Requested tab counts 3", Duration::from_secs(5), || {
        let response = gate.admin("GET", "/developers?status=requested", None);
        response.json()["total"] == 3
    });
    let full = Request::get("/portal/home").user("cat@example.com").send(gate.port);
    assert_eq!(full.status, 429, "{}", full.body);
    assert_eq!(full.json()["status"], "registration_full");
    assert!(etcd.get("/devportal/dev/cat@example.com").is_none());
    assert!(gate.envoy.counter("wasmcustom.devportal_gate.registration.full") >= 1);
    // An admin decision makes room.
    assert_eq!(gate.act("ann@example.com", "accept").status, 200);
    wait_until("room again", Duration::from_secs(5), || {
        Request::get("/portal/home")
            .user("cat@example.com")
            .send(gate.port)
            .status
            == 403
    });
}

#[test]
fn a_write_whose_answer_is_lost_is_read_back_not_reported_as_unchanged() {
    let etcd = Etcd::start("lost-answer", common::free_port());
    let proxy = common::delay_proxy::DelayProxy::start(etcd.port);
    let gate = gateway("lost-answer", proxy.port);
    gate.wait_synced();

    // etcd commits the revocation; its answer arrives after the gateway's 2 s timeout.
    proxy.delay_next_txn(Duration::from_millis(3500));
    let revoked = gate.act("alice@example.com", "revoke");
    // (If the held transaction met a connection etcd had closed, it never
    // arrived; the filter then reads back, finds it unapplied and sends it again,
    // and that one is held instead.)
    assert!(!proxy.armed(), "the revocation went through the proxy");
    assert_eq!(revoked.status, 200, "{}", revoked.body);
    assert_eq!(revoked.json()["confirmed_by_read_back"], true, "{}", revoked.body);
    let operation = revoked.json()["operation"].as_str().unwrap().to_string();
    assert_eq!(gate.api_status("alice@example.com"), 403, "enforced at once");
    let history = gate.developer("alice@example.com")["history"].clone();
    let ours: Vec<&Value> = history
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["operation"] == operation.as_str())
        .collect();
    assert_eq!(ours.len(), 1, "applied exactly once: {history}");

    // The same for a create.
    proxy.delay_next_txn(Duration::from_millis(3500));
    let created = gate.admin(
        "POST",
        "/developers",
        Some(r#"{"email":"late@example.com","status":"approved"}"#),
    );
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.json()["confirmed_by_read_back"], true);
    assert_eq!(gate.api_status("late@example.com"), 200);
}

#[test]
fn a_deleted_developer_comes_back_with_the_past_in_the_history() {
    let etcd = Etcd::start("archive", common::free_port());
    let gate = gateway("archive", etcd.port);
    gate.wait_synced();
    let revoked = gate.admin(
        "POST",
        "/developers/alice@example.com/revoke",
        Some(r#"{"reason":"partner contract ended"}"#),
    );
    assert_eq!(revoked.status, 200, "{}", revoked.body);
    let deleted = gate.admin(
        "POST",
        "/developers/alice@example.com/delete",
        Some(r#"{"reason":"cleanup"}"#),
    );
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    assert!(etcd.get("/devportal/dev/alice@example.com").is_none());
    assert!(etcd.get("/devportal/deleted/alice@example.com").is_some());

    // She registers again: Requested, and the admin deciding sees the past.
    let again = Request::get("/portal/home").user("alice@example.com").send(gate.port);
    assert_eq!(again.status, 403, "{}", again.body);
    let alice = gate.developer("alice@example.com");
    assert_eq!(alice["status"], "requested");
    let history = alice["history"].as_array().unwrap().clone();
    let revocation = history
        .iter()
        .find(|t| t["to"] == "revoked")
        .expect("the revocation is kept");
    assert_eq!(revocation["reason"], "partner contract ended");
    assert_eq!(revocation["actor"], "demo-admin");
    let deletion = history
        .iter()
        .find(|t| t["to"] == "deleted")
        .expect("the deletion is kept");
    assert_eq!(deletion["reason"], "cleanup");
    assert_eq!(history.last().unwrap()["actor"], "self-service");
}
