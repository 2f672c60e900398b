//! Where the filter's CPU goes in the fleet's first full sync (issue 14),
//! natively on the host: the real `Syncer` (its plan, its range reads over
//! gRPC, the records into buckets, the tabs) against the in-memory etcd, with
//! the directory `bench/scale.py` loads. Only the syncer's own calls are
//! timed (not the fake etcd answering), and the host calls are an in-memory
//! store's, not V8's: compare builds, do not read it as Envoy's time.
//!
//! Usage: `cargo run --release [developers]` (default 1,000,000); under
//! `perf record -g` it shows which functions the time goes to.

use std::time::{Duration, Instant};

use devportal_gate::directory::{KeyChecked, MemoryStore};
use devportal_gate::etcd::fake::FakeEtcd;
use devportal_gate::sync::{Next, Syncer};

const PREFIX: &str = "/scale/";
const APPROVAL_ENDS_MS: u64 = 4_102_444_800_000;

/// A developer as `bench/scale.py` stores one.
fn stored(i: u64, status: &str, at_ms: u64) -> String {
    let mut history =
        vec![serde_json::json!({"actor": "self-service", "from": null, "to": "requested", "at_ms": at_ms})];
    if status != "requested" {
        history.push(serde_json::json!({"actor": "ops", "from": "requested", "to": status, "at_ms": at_ms + 1}));
    }
    let mut document = serde_json::json!({
        "status": status, "created_ms": at_ms, "updated_ms": at_ms + 1,
        "metadata": {"full_name": format!("Developer {i}")}, "history": history,
    });
    if status == "approved" {
        document["approval_expires_ms"] = (APPROVAL_ENDS_MS + i % 86_400_000).into();
    }
    document.to_string()
}

/// The fake etcd's answers to one whole first sync, in order: they depend
/// only on the directory, and the syncer asks the same calls again when given
/// the same answers (`replay` checks that it ends where the recording did).
#[inline(never)]
fn record(n: u64) -> Vec<(u32, Vec<u8>)> {
    let mut etcd = FakeEtcd {
        grpc: true,
        ..FakeEtcd::default()
    };
    let statuses = ["approved", "requested", "revoked", "rejected"];
    for i in 0..n {
        let status = statuses[(i % 4) as usize];
        let key = format!("{PREFIX}dev/dev{i:08}@example.com");
        etcd.put(&key, stored(i, status, 1_700_000_000_000 + i).as_bytes());
    }
    let store = KeyChecked(MemoryStore::default());
    let mut syncer = Syncer::new("scale", PREFIX, None);
    let mut answers = Vec::new();
    let mut request = syncer.begin(1000);
    loop {
        let (status, body) = etcd.answer(&request);
        let next = syncer
            .on_answer(&store, status, &body, 1000)
            .expect("the cycle goes on");
        answers.push((status, body));
        match next {
            Next::Call(next) => request = next,
            Next::Done(_) => return answers,
        }
    }
}

/// The syncer alone, fed the recorded answers: the time in its calls.
#[inline(never)]
fn replay(answers: &[(u32, Vec<u8>)]) -> (Duration, usize) {
    let store = KeyChecked(MemoryStore::default());
    let mut syncer = Syncer::new("scale", PREFIX, None);
    let started = Instant::now();
    let _ = syncer.begin(1000);
    for (i, (status, body)) in answers.iter().enumerate() {
        match syncer
            .on_answer(&store, *status, body, 1000)
            .expect("the cycle goes on")
        {
            Next::Call(_) => assert!(i + 1 < answers.len(), "the syncer asks for more than it did"),
            Next::Done(report) => {
                assert_eq!(i + 1, answers.len(), "the syncer ended early");
                return (started.elapsed(), report.changed);
            }
        }
    }
    panic!("the answers ran out")
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(3);
    let answers = record(n);
    println!("{n} developers; {} answers recorded", answers.len());
    for _ in 0..rounds {
        let (took, changed) = replay(&answers);
        println!(
            "the syncer's first sync: {:.2} s ({changed} changed)",
            took.as_secs_f64()
        );
    }
}
