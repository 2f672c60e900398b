#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test code: failing loudly is the point
//! `make bench-events` (part of `make bench`): how fast events leave, and how
//! long after a change its event arrives. One Envoy (the shipped demo, 2
//! workers) with a real etcd and a receiver in the test that checks every
//! signature. Ignored by `cargo test`; `EVENTS_BENCH_N` sets the number of
//! changes (default 300); `EVENTS_REPORT=<file>` writes the table.
//!
//! - lag: a change every 100 ms through the admin API; from the admin API's
//!   answer (the change is committed) to the event's arrival.
//! - rate: the receiver down while the changes pile up, then up: events per
//!   second until the backlog is delivered.

mod common;

use std::time::{Duration, Instant};

use common::demo::gateway_with;
use common::receiver::{demo_with_events, Receiver};
use common::{wait_until, Etcd};
use serde_json::json;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn percentile(values: &mut [f64], p: f64) -> f64 {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap());
    values[((values.len() as f64 - 1.0) * p).round() as usize]
}

#[test]
#[ignore = "a measurement: run by `make bench`"]
fn event_delivery_rate_and_lag() {
    let n: usize = std::env::var("EVENTS_BENCH_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let etcd = Etcd::start("bench-events", common::free_port());
    let receiver = Receiver::start(SECRET);
    let events = json!({
        "secrets": [SECRET],
        "sinks": [{"name": "bench", "upstream": "events_receiver", "path": "/hooks"}]
    });
    let port = receiver.port;
    let gw = gateway_with("bench-events", etcd.port, move |config| {
        demo_with_events(config, &events, port)
    });
    gw.wait_synced();
    std::thread::sleep(Duration::from_secs(2));
    let arrived = |id_prefix: &str| {
        receiver
            .accepted()
            .into_iter()
            .filter(|d| d.event["subject"].as_str().unwrap_or_default().starts_with(id_prefix))
            .count()
    };

    // Lag: one change every 100 ms.
    let mut committed = Vec::new();
    for i in 0..n {
        let email = format!("lag{i}@example.com");
        let created = gw.admin("POST", "/developers", Some(&format!(r#"{{"email":"{email}"}}"#)));
        assert_eq!(created.status, 201, "{}", created.body);
        committed.push((email, Instant::now()));
        std::thread::sleep(Duration::from_millis(100));
    }
    wait_until("every lag event", Duration::from_secs(60), || arrived("lag") >= n);
    let deliveries = receiver.accepted();
    let mut lags: Vec<f64> = committed
        .iter()
        .map(|(email, at)| {
            let delivery = deliveries
                .iter()
                .find(|d| d.event["subject"] == email.as_str())
                .unwrap();
            delivery.arrived.saturating_duration_since(*at).as_secs_f64() * 1000.0
        })
        .collect();
    let (lag50, lag99) = (percentile(&mut lags, 0.5), percentile(&mut lags, 0.99));

    // Rate: a backlog of n, then the receiver comes back.
    receiver.go_down();
    for i in 0..n {
        let email = format!("rate{i}@example.com");
        let created = gw.admin("POST", "/developers", Some(&format!(r#"{{"email":"{email}"}}"#)));
        assert_eq!(created.status, 201, "{}", created.body);
    }
    std::thread::sleep(Duration::from_secs(1));
    receiver.come_up();
    let up = Instant::now();
    let took = wait_until("the backlog", Duration::from_secs(120), || arrived("rate") >= n);
    let arrivals: Vec<Instant> = receiver
        .accepted()
        .iter()
        .filter(|d| d.event["subject"].as_str().unwrap_or_default().starts_with("rate"))
        .map(|d| d.arrived)
        .collect();
    let (first, last) = (*arrivals.iter().min().unwrap(), *arrivals.iter().max().unwrap());
    // From the first arrival: the back-off the sink was in is not the rate.
    let rate = (n - 1) as f64 / last.saturating_duration_since(first).as_secs_f64();
    let table = format!(
        "| measure | value |\n|---|---:|\n\
         | lag, change committed to event received, p50 / p99 ({n} changes, one every 100 ms) | {lag50:.0} / {lag99:.0} ms |\n\
         | delivery rate, backlog of {n} after the receiver came back | {rate:.0} events/s (all in {:.1} s, the first after {:.2} s of back-off) |\n",
        took.as_secs_f64(),
        first.saturating_duration_since(up).as_secs_f64()
    );
    println!("\n{table}");
    assert!(receiver.rejected_signatures().is_empty());
    if let Some(path) = std::env::var_os("EVENTS_REPORT") {
        std::fs::write(
            path,
            format!("# Events: delivery rate and lag (`make bench-events`)\n\n{table}\nOne sink, one event in flight at a time (events go out in revision order), each sent from the next 20 ms tick (Kong's engine forbids a call from inside an answer's callback); the change log is read every 200 ms, 100 entries at a time. Figures from one run on the build machine (2 cores, shared); the whole fleet shares one deliverer, so this is the fleet's rate per sink.\n"),
        )
        .unwrap();
    }
}
