//! Where the filter's CPU goes in a first full sync (issue 14), step by step,
//! natively on the host: the same parsing and replica code the `.wasm` runs,
//! without the host calls (an in-memory store) and without V8. Pages are built
//! as etcd's JSON gateway answers them, with the documents `bench/scale.py`
//! loads. Usage: `cargo run --release [developers]` (default 1,000,000).

use std::time::Instant;

use devportal_gate::directory::developer::Developer;
use devportal_gate::directory::replica::{self, Entry, Known, Listed, Tabs};
use devportal_gate::directory::{KeyChecked, MemoryStore};
use devportal_gate::encoding::base64::{encode, Alphabet};
use devportal_gate::request::email::canonical_email;

const PREFIX: &str = "/scale/dev/";
const PAGE: usize = 25_000;

fn page_body(first: usize, last: usize, n: usize) -> Vec<u8> {
    let kvs: Vec<serde_json::Value> = (first..last)
        .map(|i| {
            let at = 1_700_000_000_000u64 + i as u64;
            let status = ["approved", "requested", "revoked", "rejected"][i % 4];
            let document = serde_json::json!({
                "status": status, "created_ms": at, "updated_ms": at + 1,
                "metadata": {"full_name": format!("Developer {i}")},
                "history": [
                    {"actor": "self-service", "from": null, "to": "requested", "at_ms": at},
                    {"actor": "ops", "from": "requested", "to": status, "at_ms": at + 1},
                ],
            });
            serde_json::json!({
                "key": encode(Alphabet::Standard, format!("{PREFIX}dev{i:08}@example.com").as_bytes()),
                "value": encode(Alphabet::Standard, document.to_string().as_bytes()),
                "create_revision": (i + 2).to_string(),
                "mod_revision": (i + 2).to_string(),
                "version": "1",
            })
        })
        .collect();
    let answer = serde_json::json!({
        "header": {"revision": (n + 2).to_string()},
        "kvs": kvs, "count": (n - first).to_string(), "more": last < n,
    });
    answer.to_string().into_bytes()
}

fn timed<T>(what: &str, step: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let result = step();
    println!("{what}: {:.2} s", started.elapsed().as_secs_f64());
    result
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let bodies: Vec<Vec<u8>> = (0..n)
        .step_by(PAGE)
        .map(|first| page_body(first, (first + PAGE).min(n), n))
        .collect();
    println!(
        "{n} developers, {} pages of {} MB",
        bodies.len(),
        bodies[0].len() / 1_000_000
    );
    let answers = timed("pages: JSON and base64 (etcd::parse_range)", || {
        bodies
            .iter()
            .map(|body| devportal_gate::etcd::parse_range(200, body).expect("a page"))
            .collect::<Vec<_>>()
    });
    let developers = timed("documents: canonical address and Developer::from_stored", || {
        let mut developers = Vec::with_capacity(n);
        for kv in answers.iter().flat_map(|answer| &answer.kvs) {
            let name = String::from_utf8_lossy(&kv.key[PREFIX.len()..]).into_owned();
            assert_eq!(canonical_email(&name).as_deref(), Ok(name.as_str()));
            let developer = Developer::from_stored(&name, &kv.value).expect("a document");
            developers.push((name, developer, kv.mod_revision));
        }
        developers
    });
    let store = KeyChecked(MemoryStore::default());
    timed("records into buckets (replica::apply, in-memory store)", || {
        for (name, developer, revision) in &developers {
            replica::apply(&store, "devportal", name, *revision, Entry::Present(developer)).expect("written");
        }
    });
    let known = timed("the syncer's Known", || {
        let mut known = Known::new();
        known.reserve_for(n);
        for (name, developer, _) in &developers {
            known.insert(
                name.as_str(),
                Listed {
                    status: Some(developer.status),
                    updated_ms: developer.updated_ms,
                },
            );
        }
        known
    });
    timed("the tabs, built whole (replica::write_lists)", || {
        replica::write_lists(&store, "devportal", &known, Tabs::ALL).expect("written")
    });
}
