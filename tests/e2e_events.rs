#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test code: failing loudly is the point
//! Status-change events end to end: the shipped demo (Envoy + a real etcd) with
//! `events` pointed at a receiver written in the tests, which checks every
//! Standard Webhooks signature with its own code.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::demo::{gateway_with, Gateway};
use common::receiver::{decode_secret, demo_with_events, verify, Receiver};
use common::{wait_until, Etcd, Request};
use serde_json::{json, Value};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const PREFIX: &str = "/devportal/";

/// The demo, with events to `receiver` in both of its filter configurations.
fn gateway(name: &str, etcd: &Etcd, receiver: &Receiver, secret: &str) -> Gateway {
    let events = json!({
        "secrets": [secret],
        "retry_initial_ms": 200,
        "retry_max_ms": 2000,
        "sinks": [{"name": "receiver", "upstream": "events_receiver", "path": "/hooks/devportal", "timeout_ms": 1000}]
    });
    let port = receiver.port;
    let gateway = gateway_with(name, etcd.port, move |config| demo_with_events(config, &events, port));
    gateway.wait_synced();
    gateway
}

/// (type, subject, from, to, actor) of an accepted delivery.
fn summary(delivery: &common::receiver::Delivery) -> (String, String, Value, Value, String) {
    let event = &delivery.event;
    (
        event["type"]
            .as_str()
            .unwrap()
            .trim_start_matches("devportal.developer.")
            .to_string(),
        event["subject"].as_str().unwrap().to_string(),
        event["data"]["from"].clone(),
        event["data"]["to"].clone(),
        event["data"]["actor"].as_str().unwrap().to_string(),
    )
}

/// Accepted deliveries, without the seeding of the demo's developers (which a
/// sink sees or not, depending on whether the gateway seeded before its
/// deliverer started the sink at the present).
fn workflow(receiver: &Receiver) -> Vec<common::receiver::Delivery> {
    receiver
        .accepted()
        .into_iter()
        .filter(|d| d.event["data"]["actor"] != "configuration")
        .collect()
}

fn of(receiver: &Receiver, email: &str) -> Vec<(String, String, Value, Value, String)> {
    workflow(receiver)
        .iter()
        .map(summary)
        .filter(|s| s.1 == email)
        .collect()
}

fn wait_for(receiver: &Receiver, email: &str, count: usize) {
    wait_until(&format!("{count} events of {email}"), Duration::from_secs(15), || {
        of(receiver, email).len() >= count
    });
}

fn owned(t: &str, s: &str, from: Value, to: Value, actor: &str) -> (String, String, Value, Value, String) {
    (t.into(), s.into(), from, to, actor.into())
}

#[test]
fn every_change_is_one_signed_event_in_order() {
    let etcd = Etcd::start("events-workflow", common::free_port());
    let receiver = Receiver::start(SECRET);
    let gw = gateway("events-workflow", &etcd, &receiver, SECRET);
    let ann = "ann@example.com";

    // Registration by self-service, then the admin workflow.
    assert_eq!(Request::get("/portal/home").user(ann).send(gw.port).status, 403);
    for action in ["accept", "revoke", "reapprove", "delete"] {
        assert_eq!(gw.act(ann, action).status, 200, "{action}");
    }
    wait_for(&receiver, ann, 5);
    let events = of(&receiver, ann);
    let admin = events[1].4.clone();
    assert_eq!(
        events,
        vec![
            owned("requested", ann, Value::Null, json!("requested"), "self-service"),
            owned("approved", ann, json!("requested"), json!("approved"), &admin),
            owned("revoked", ann, json!("approved"), json!("revoked"), &admin),
            owned("approved", ann, json!("revoked"), json!("approved"), &admin),
            owned("deleted", ann, json!("approved"), Value::Null, &admin),
        ]
    );

    // A change written straight into etcd by another tool is one event too.
    etcd.put(
        &format!("{PREFIX}dev/bob@example.com"),
        &json!({"status": "approved"}).to_string(),
    );
    wait_for(&receiver, "bob@example.com", 1);
    assert_eq!(
        of(&receiver, "bob@example.com"),
        vec![owned(
            "approved",
            "bob@example.com",
            json!("requested"),
            json!("approved"),
            "etcd"
        )]
    );

    // Nothing twice, every body a CloudEvent, ids from revisions.
    std::thread::sleep(Duration::from_secs(2));
    let accepted = workflow(&receiver);
    assert_eq!(accepted.len(), 6, "{accepted:#?}");
    let mut ids: Vec<&str> = accepted.iter().map(|d| d.id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 6, "ids are unique");
    for delivery in &accepted {
        assert_eq!(delivery.content_type, "application/cloudevents+json");
        assert_eq!(delivery.event["specversion"], "1.0");
        assert_eq!(delivery.event["id"], delivery.id.as_str());
        assert_eq!(delivery.event["source"], PREFIX);
        let revision = delivery.event["data"]["revision"].as_u64().unwrap();
        assert_eq!(
            delivery.id,
            format!("{revision}-{}", delivery.event["subject"].as_str().unwrap())
        );
    }
    assert!(receiver.rejected_signatures().is_empty());

    // The admin API shows the sink and the newest events.
    let view = gw.admin("GET", "/events", None);
    assert_eq!(view.status, 200, "{}", view.body);
    let view = view.json();
    assert_eq!(view["sinks"][0]["name"], "receiver");
    assert_eq!(view["sinks"][0]["last_error"], Value::Null);
    assert!(view["sinks"][0]["delivered"].as_u64().unwrap() >= 6);
    assert!(view["recent"].as_array().unwrap().len() >= 5);
    let health = Request::get("/_devportal/health").send(gw.api).json();
    assert_eq!(health["events"]["backlog"]["receiver"], 0);
}

#[test]
fn a_refusing_sink_gets_the_same_event_again_and_a_down_one_its_backlog_in_order() {
    let etcd = Etcd::start("events-retry", common::free_port());
    let receiver = Receiver::start(SECRET);
    let gw = gateway("events-retry", &etcd, &receiver, SECRET);
    let rita = "rita@example.com";
    assert_eq!(Request::get("/portal/home").user(rita).send(gw.port).status, 403);
    wait_for(&receiver, rita, 1);

    receiver.refuse_next(3, 503);
    assert_eq!(gw.act(rita, "accept").status, 200);
    wait_for(&receiver, rita, 2);
    let tries: Vec<_> = receiver
        .deliveries()
        .into_iter()
        .filter(|d| d.event["subject"] == rita && d.event["type"] == "devportal.developer.approved")
        .collect();
    assert_eq!(tries.len(), 4, "three refusals, then the accepted one: {tries:#?}");
    assert!(tries.iter().all(|d| d.id == tries[0].id), "the same id every time");
    assert_eq!(
        tries.iter().map(|d| d.answered).collect::<Vec<_>>(),
        [503, 503, 503, 200]
    );

    // Down: changes pile up, visible as a backlog; back up: all of them, in order.
    receiver.go_down();
    assert_eq!(gw.act("bob@example.com", "accept").status, 200);
    for round in 0..3 {
        assert_eq!(gw.act("bob@example.com", "revoke").status, 200, "round {round}");
        assert_eq!(gw.act("bob@example.com", "reapprove").status, 200, "round {round}");
    }
    assert_eq!(gw.act("carol@example.com", "delete").status, 200);
    wait_until("a backlog and an error shown", Duration::from_secs(10), || {
        let view = gw.admin("GET", "/events", None).json();
        view["sinks"][0]["backlog"].as_u64().unwrap_or(0) >= 7 && view["sinks"][0]["last_error"].is_string()
    });
    receiver.come_up();
    let after_seed = |email: &str| -> Vec<String> { of(&receiver, email).into_iter().map(|e| e.0).collect() };
    wait_until("bob's backlog", Duration::from_secs(15), || {
        after_seed("bob@example.com").len() >= 7
    });
    assert_eq!(
        after_seed("bob@example.com"),
        ["approved", "revoked", "approved", "revoked", "approved", "revoked", "approved"]
    );
    wait_until("carol's deletion", Duration::from_secs(5), || {
        after_seed("carol@example.com") == ["deleted"]
    });
    wait_until("the backlog drained", Duration::from_secs(5), || {
        Request::get("/_devportal/health").send(gw.api).json()["events"]["backlog"]["receiver"] == 0
    });
    let revisions: Vec<u64> = workflow(&receiver)
        .iter()
        .map(|d| d.event["data"]["revision"].as_u64().unwrap())
        .collect();
    assert!(
        revisions.windows(2).all(|w| w[0] < w[1]),
        "in revision order: {revisions:?}"
    );
}

#[test]
fn one_gateway_delivers_and_another_resumes_from_the_stored_position() {
    let etcd = Etcd::start("events-fleet", common::free_port());
    let receiver = Receiver::start(SECRET);
    let a = gateway("events-fleet-a", &etcd, &receiver, SECRET);
    let b = gateway("events-fleet-b", &etcd, &receiver, SECRET);
    std::thread::sleep(Duration::from_secs(2));
    let delivering = |gw: &Gateway| gw.admin("GET", "/events", None).json()["delivering"] == true;
    let (holder, other) = if delivering(&a) { (a, b) } else { (b, a) };
    assert!(
        delivering(&holder) && !delivering(&other),
        "exactly one gateway delivers"
    );

    // Changes through both gateways: each event once.
    for i in 0..5 {
        let email = format!("fleet{i}@example.com");
        let gw = if i % 2 == 0 { &holder } else { &other };
        assert_eq!(Request::get("/portal/home").user(&email).send(gw.port).status, 403);
        assert_eq!(gw.act(&email, "accept").status, 200);
    }
    wait_until("ten events", Duration::from_secs(15), || {
        workflow(&receiver).len() >= 10
    });
    std::thread::sleep(Duration::from_millis(1500));
    let mut seen: HashMap<String, usize> = HashMap::new();
    for delivery in workflow(&receiver) {
        *seen.entry(delivery.id).or_default() += 1;
    }
    assert_eq!(seen.len(), 10);
    assert!(seen.values().all(|n| *n == 1), "each id once: {seen:?}");

    // The delivering gateway dies; changes go on through the other, which takes
    // the role over once the lease ends and resumes from the stored position.
    drop(holder);
    let killed_at = std::time::Instant::now();
    for i in 5..8 {
        let email = format!("fleet{i}@example.com");
        assert_eq!(Request::get("/portal/home").user(&email).send(other.port).status, 403);
    }
    wait_until(
        "the backlog delivered by the other gateway",
        Duration::from_secs(20),
        || workflow(&receiver).len() >= 13,
    );
    println!("the other gateway delivered {:?} after the kill", killed_at.elapsed());
    wait_until("the other gateway shows it delivers", Duration::from_secs(3), || {
        delivering(&other)
    });
    let mut seen: HashMap<String, usize> = HashMap::new();
    for delivery in workflow(&receiver) {
        *seen.entry(delivery.id).or_default() += 1;
    }
    assert_eq!(seen.len(), 13, "nothing lost: {seen:?}");
    assert!(
        seen.values().all(|n| *n == 1),
        "a clean kill after the position was saved repeats nothing: {seen:?}"
    );
}

#[test]
fn a_forged_or_stale_signature_fails_the_receivers_check() {
    let key = decode_secret(SECRET);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let body = br#"{"type":"devportal.developer.approved"}"#;
    let sign = |key: &[u8], id: &str, ts: u64, body: &[u8]| {
        use hmac::Mac;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
        mac.update(format!("{id}.{ts}.").as_bytes());
        mac.update(body);
        format!(
            "v1,{}",
            devportal_gate::encoding::base64::encode(
                devportal_gate::encoding::base64::Alphabet::Standard,
                &mac.finalize().into_bytes()
            )
        )
    };
    let good = sign(&key, "1-a@x.io", now, body);
    assert!(verify(&key, "1-a@x.io", &now.to_string(), &good, body).is_ok());
    // Another body, another id, another key, an old or future timestamp.
    assert!(verify(
        &key,
        "1-a@x.io",
        &now.to_string(),
        &good,
        br#"{"type":"devportal.developer.deleted"}"#
    )
    .is_err());
    assert!(verify(&key, "2-a@x.io", &now.to_string(), &good, body).is_err());
    let forged = sign(&[7u8; 32], "1-a@x.io", now, body);
    assert!(verify(&key, "1-a@x.io", &now.to_string(), &forged, body).is_err());
    let stale = sign(&key, "1-a@x.io", now - 600, body);
    assert!(verify(&key, "1-a@x.io", &(now - 600).to_string(), &stale, body).is_err());
    let future = sign(&key, "1-a@x.io", now + 600, body);
    assert!(verify(&key, "1-a@x.io", &(now + 600).to_string(), &future, body).is_err());

    // End to end: a gateway that signs with another secret is refused, keeps
    // the event, and says why.
    let etcd = Etcd::start("events-forged", common::free_port());
    let receiver = Receiver::start(SECRET);
    let other_secret = format!(
        "whsec_{}",
        devportal_gate::encoding::base64::encode(devportal_gate::encoding::base64::Alphabet::Standard, &[9u8; 32])
    );
    let gw = gateway("events-forged", &etcd, &receiver, &other_secret);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(gw.act("bob@example.com", "accept").status, 200);
    wait_until("the receiver refused the signature", Duration::from_secs(10), || {
        !receiver.rejected_signatures().is_empty()
    });
    assert!(receiver.accepted().is_empty());
    wait_until("the admin API shows the refusal", Duration::from_secs(5), || {
        let view = gw.admin("GET", "/events", None).json();
        view["sinks"][0]["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("401")
    });
}
