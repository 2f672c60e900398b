#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test code: failing loudly is the point
//! Registration rules and approvals that expire, end to end: the shipped demo
//! (Envoy + a real etcd) with rules added to the gate's configuration, and two
//! gateways for the expiry.

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::demo::{gateway_with, Gateway};
use common::{wait_until, Etcd, Request};
use serde_json::{json, Value};

/// The demo with registration rules in its gate configuration (the first of
/// its two filter configurations).
fn gateway(name: &str, etcd: &Etcd) -> Gateway {
    let rules = json!({"rules": [
        {"name": "blocked", "match": {"domain": "spam.io", "include_subdomains": true}, "outcome": "rejected"},
        {"name": "partners", "match": {"domain": "partner-x.com", "include_subdomains": true}, "outcome": "approved", "expires_in": "30d"}
    ]});
    let gw = gateway_with(name, etcd.port, move |config| {
        config.replacen(
            "\"directory\": {",
            &format!("\"registration\": {rules}, \"directory\": {{"),
            1,
        )
    });
    gw.wait_synced();
    gw
}

fn portal(gw: &Gateway, email: &str) -> common::Response {
    Request::get("/portal/home").user(email).send(gw.port)
}

#[test]
fn rules_decide_a_registration_and_the_history_names_the_rule() {
    let etcd = Etcd::start("rules", common::free_port());
    let gw = gateway("rules", &etcd);

    // A partner's address: approved at once (the client is sent to ask again,
    // and the new record lets it through).
    for ann in ["ann@partner-x.com", "ann@eu.partner-x.com"] {
        let first = portal(&gw, ann);
        assert_eq!(first.status, 307, "{}", first.body);
        assert_eq!(first.header("location").unwrap(), "/portal/home");
        assert_eq!(portal(&gw, ann).status, 200);
        assert_eq!(Request::get("/api/orders").user(ann).send(gw.port).status, 200);
        let record = gw.developer(ann);
        assert_eq!(record["status"], "approved");
        assert_eq!(record["history"][0]["actor"], "rule:partners");
        assert!(
            record["expires_at"].is_string(),
            "an approval by this rule expires: {record}"
        );
    }
    // Look-alikes and everyone else wait in Requested.
    for other in [
        "bob2@evilpartner-x.com",
        "bob3@partner-x.com.evil.io",
        "carl@example.org",
    ] {
        assert_eq!(portal(&gw, other).status, 403, "{other}");
        let record = gw.developer(other);
        assert_eq!(record["status"], "requested", "{other}");
        assert_eq!(record["history"][0]["actor"], "self-service");
    }
    // A blocked domain: rejected by its rule.
    assert_eq!(portal(&gw, "x@mail.spam.io").status, 307);
    let rejected = portal(&gw, "x@mail.spam.io");
    assert_eq!(rejected.status, 403);
    assert_eq!(rejected.json()["status"], "rejected");
    assert_eq!(gw.developer("x@mail.spam.io")["history"][0]["actor"], "rule:blocked");

    // The admin API lists the rules and dry-runs them, changing nothing.
    let rules = gw.admin("GET", "/rules", None);
    assert_eq!(rules.status, 200, "{}", rules.body);
    let names: Vec<&str> = rules.json()["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string().leak() as &str)
        .collect();
    assert_eq!(names, ["blocked", "partners"]);
    let dry = |email: &str| {
        gw.admin("POST", "/rules/dry-run", Some(&json!({"email": email}).to_string()))
            .json()
    };
    let partner = dry("kim@partner-x.com");
    assert_eq!(
        (partner["status"].as_str(), partner["rule"].as_str()),
        (Some("approved"), Some("partners"))
    );
    assert!(partner["expires_at"].is_string());
    let look_alike = dry("kim@partner-x.com.evil.io");
    assert_eq!(
        (look_alike["status"].as_str(), look_alike["rule"].clone()),
        (Some("requested"), Value::Null)
    );
    assert_eq!(
        gw.admin("GET", "/developers/kim@partner-x.com", None).status,
        404,
        "a dry run records nothing"
    );
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

#[test]
fn an_approval_that_ends_is_refused_everywhere_at_once_and_revoked_once() {
    let etcd = Etcd::start("expiry", common::free_port());
    let a = gateway("expiry-a", &etcd);
    let b = gateway("expiry-b", &etcd);
    let api = |gw: &Gateway, email: &str| Request::get("/api/orders").user(email).send(gw.port);

    // bob's approval ends 3 s from now; carol's too, but she is extended.
    let ends = now_ms() + 3000;
    let at = devportal_gate::encoding::clock::rfc3339(ends);
    for email in ["bob@example.com", "carol@example.com"] {
        let action = if email.starts_with("bob") { "accept" } else { "approve" };
        let answer = a.admin(
            "POST",
            &format!("/developers/{email}/{action}"),
            Some(&json!({"expires_at": at}).to_string()),
        );
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(answer.json()["developer"]["expires_at"], at.as_str());
    }
    wait_until("both gateways allow bob", Duration::from_secs(5), || {
        api(&a, "bob@example.com").status == 200 && api(&b, "bob@example.com").status == 200
    });
    let expiring = a.admin("GET", "/developers?expiring_within=1d", None).json();
    let listed: Vec<&str> = expiring["developers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["email"].as_str().unwrap())
        .collect();
    assert!(
        listed.contains(&"bob@example.com") && listed.contains(&"carol@example.com"),
        "{expiring}"
    );
    let extended = a.admin(
        "POST",
        "/developers/carol@example.com/extend",
        Some(&json!({"expires_in": "1h", "reason": "contract renewed"}).to_string()),
    );
    assert_eq!(extended.status, 200, "{}", extended.body);

    // Until the instant, bob passes on both; from it, both refuse, by their own clocks.
    let mut refused_at = [None, None];
    let deadline = Instant::now() + Duration::from_secs(8);
    while refused_at.iter().any(Option::is_none) && Instant::now() < deadline {
        for (i, gw) in [&a, &b].into_iter().enumerate() {
            // The gate decided between `sent` and `done`, by the same clock.
            let sent = now_ms();
            let answer = api(gw, "bob@example.com");
            let done = now_ms();
            if answer.status == 200 {
                assert!(
                    sent < ends,
                    "gateway {i} let bob through {} ms after his approval ended",
                    sent - ends
                );
            } else if refused_at[i].is_none() {
                assert!(done >= ends, "gateway {i} refused bob before his approval ended");
                assert_eq!(answer.status, 403);
                assert_eq!(answer.json()["status"], "expired", "{}", answer.body);
                assert_eq!(answer.json()["expired_at"], at.as_str());
                refused_at[i] = Some(sent);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let lags: Vec<u64> = refused_at
        .iter()
        .map(|t| t.expect("refused").saturating_sub(ends))
        .collect();
    println!(
        "refused after the end: gateway A {} ms, gateway B {} ms",
        lags[0], lags[1]
    );
    assert!(
        lags.iter().all(|lag| *lag < 1000),
        "both within the same second: {lags:?}"
    );

    // etcd: revoked once, by `expiry`; carol, extended, still passes everywhere.
    wait_until("the revocation recorded in etcd", Duration::from_secs(5), || {
        a.developer("bob@example.com")["status"] == "revoked"
    });
    std::thread::sleep(Duration::from_secs(2));
    let history = a.developer("bob@example.com")["history"].as_array().unwrap().clone();
    let by_expiry: Vec<&Value> = history.iter().filter(|t| t["actor"] == "expiry").collect();
    assert_eq!(by_expiry.len(), 1, "{history:#?}");
    assert_eq!(b.developer("bob@example.com")["status"], "revoked");
    assert_eq!(api(&a, "carol@example.com").status, 200);
    assert_eq!(api(&b, "carol@example.com").status, 200);
    let carol = a.developer("carol@example.com");
    assert_eq!(
        carol["history"].as_array().unwrap().last().unwrap()["reason"],
        "contract renewed"
    );

    // Bad expiries change nothing.
    for body in [
        json!({"expires_at": "2020-01-01T00:00:00Z"}),
        json!({"expires_in": "soon"}),
        json!({"expires_at": at, "expires_in": "1d"}),
    ] {
        let answer = a.admin(
            "POST",
            "/developers/dave@example.com/reapprove",
            Some(&body.to_string()),
        );
        assert_eq!(answer.status, 400, "{body}: {}", answer.body);
    }
    let revoke_with_expiry = a.admin(
        "POST",
        "/developers/carol@example.com/revoke",
        Some(&json!({"expires_in": "1d"}).to_string()),
    );
    assert_eq!(revoke_with_expiry.status, 400);
    assert_eq!(a.developer("dave@example.com")["status"], "revoked");
}
