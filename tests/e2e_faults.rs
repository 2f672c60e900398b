#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test code: failing loudly is the point
//! End to end: faults in the fleet. A dead etcd member behind the gateway's etcd
//! upstream must not turn admin writes into 503s or stall the replica: a call
//! that could not connect is sent again at once (and reaches the live member).

mod common;

use std::time::{Duration, Instant};

use common::demo::{gateway_with, Gateway};
use common::{free_port, wait_until, Etcd, Request};
use serde_json::json;

/// The demo with a second, dead member in its etcd cluster (round robin sends
/// every other call there).
fn with_dead_member(name: &str, etcd_port: u16) -> Gateway {
    let dead = free_port(); // nothing listens there
    gateway_with(name, etcd_port, move |config| {
        let live = format!("socket_address: {{ address: 127.0.0.1, port_value: {etcd_port} }}");
        assert!(config.contains(&live), "demo.yaml's etcd endpoint");
        let both = format!(
            "{live}\n        - endpoint:\n            address:\n              socket_address: {{ address: 127.0.0.1, port_value: {dead} }}"
        );
        config.replacen(&live, &both, 1)
    })
}

#[test]
fn a_dead_etcd_member_costs_no_write_and_no_sync() {
    let etcd = Etcd::start("dead-member", free_port());
    let gate = with_dead_member("dead-member", etcd.port);
    gate.wait_synced();
    let started = Instant::now();
    let mut failed = Vec::new();
    for round in 0..20 {
        let action = if round % 2 == 0 { "revoke" } else { "reapprove" };
        let answer = gate.act("alice@example.com", action);
        if answer.status != 200 {
            failed.push(format!("{action}: {} {}", answer.status, answer.body));
        }
        let expected = if round % 2 == 0 { 403 } else { 200 };
        assert_eq!(gate.api_status("alice@example.com"), expected, "round {round}");
    }
    println!(
        "20 admin writes with a dead member: {} failed, {:?}",
        failed.len(),
        started.elapsed()
    );
    assert!(failed.is_empty(), "{failed:?}");
    // Registrations go through too, and direct changes keep arriving.
    for i in 0..5 {
        assert_eq!(
            Request::get("/portal/home")
                .user(&format!("reg{i}@example.com"))
                .send(gate.port)
                .status,
            403
        );
        assert!(etcd.get(&format!("/devportal/dev/reg{i}@example.com")).is_some());
    }
    etcd.put(
        "/devportal/dev/carol@example.com",
        &json!({"status": "approved"}).to_string(),
    );
    let took = wait_until("a direct change arrives", Duration::from_secs(4), || {
        gate.api_status("carol@example.com") == 200
    });
    println!("a direct etcd change enforced after {took:?} with a dead member");
    assert_eq!(Request::get("/_devportal/health").send(gate.api).json()["status"], "ok");
}
