//! The syncer against an in-memory etcd that answers the gateway's JSON the way
//! etcd 3.4 does (the end-to-end tests use the real one).

use serde_json::json;

use super::*;
use crate::directory::developer::Developer;
use crate::directory::{lookup, Lookup, MemoryStore, Status};
use crate::etcd::fake::FakeEtcd;

fn developer(status: &str, updated_ms: u64) -> Vec<u8> {
    json!({"status": status, "updated_ms": updated_ms})
        .to_string()
        .into_bytes()
}

/// Runs one whole cycle; returns its report.
fn cycle(syncer: &mut Syncer, etcd: &mut FakeEtcd, store: &dyn SharedStore) -> CycleReport {
    let mut request = syncer.begin(1000);
    for _ in 0..10_000 {
        let (status, body) = etcd.answer(&request);
        match syncer.on_answer(store, status, &body, 1000).unwrap() {
            Next::Call(next) => request = next,
            Next::Done(report) => return report,
        }
    }
    panic!("the cycle never ended");
}

#[test]
fn full_then_incremental_sync_with_changes_and_deletions() {
    let mut etcd = FakeEtcd::default();
    for i in 0..2500 {
        etcd.put(&format!("/dp/dev/user{i}@x.io"), &developer("approved", i));
    }
    etcd.put("/dp/other", b"not a developer");
    let store = MemoryStore::default();
    let mut syncer = Syncer::new("ns", "/dp/", None);
    assert!(replica::read_sync_state(&store, "ns").is_none());

    let report = cycle(&mut syncer, &mut etcd, &store);
    assert!(report.full);
    assert_eq!(report.changed, 2500);
    assert_eq!(lookup(&store, "ns", "user7@x.io"), Lookup::Found(Status::Approved));
    assert_eq!(replica::tab_size(&store, "ns", Status::Approved).unwrap(), 2500);
    assert_eq!(replica::read_sync_state(&store, "ns").unwrap().revision, etcd.revision);

    // Nothing changed: nothing written.
    let report = cycle(&mut syncer, &mut etcd, &store);
    assert!(!report.full);
    assert_eq!(report.changed, 0);

    // A status change and a new developer: incremental.
    etcd.put("/dp/dev/user7@x.io", &developer("revoked", 9999));
    etcd.put("/dp/dev/new@x.io", &developer("requested", 10_000));
    let report = cycle(&mut syncer, &mut etcd, &store);
    assert!(!report.full);
    assert_eq!(report.changed, 2);
    assert_eq!(lookup(&store, "ns", "user7@x.io"), Lookup::Found(Status::Revoked));
    assert_eq!(
        replica::list_page(&store, "ns", Status::Requested, 0, 10, None).unwrap(),
        (1, vec!["new@x.io".to_string()])
    );

    // A deletion shows as a smaller count; the keys alone tell which.
    etcd.delete("/dp/dev/user8@x.io");
    let report = cycle(&mut syncer, &mut etcd, &store);
    assert!(!report.full);
    assert_eq!(report.removed, 1);
    assert_eq!(lookup(&store, "ns", "user8@x.io"), Lookup::Unknown);
    assert_eq!(replica::tab_size(&store, "ns", Status::Approved).unwrap(), 2498);

    // An unreadable value and a key that is not an address: counted, not looping.
    etcd.put("/dp/dev/user9@x.io", b"{oops");
    etcd.put("/dp/dev/Not-Canonical@X.io", &developer("approved", 1));
    cycle(&mut syncer, &mut etcd, &store);
    assert_eq!(lookup(&store, "ns", "user9@x.io"), Lookup::Unavailable);
    assert_eq!(lookup(&store, "ns", "not-canonical@x.io"), Lookup::Unknown);
    let report = cycle(&mut syncer, &mut etcd, &store);
    assert!(!report.full, "a stable directory must not resync fully every cycle");
}

#[test]
fn a_new_syncer_starts_with_a_full_sync_and_removes_what_vanished_meanwhile() {
    let mut etcd = FakeEtcd::default();
    etcd.put("/dp/dev/a@x.io", &developer("approved", 1));
    etcd.put("/dp/dev/b@x.io", &developer("approved", 1));
    let store = MemoryStore::default();
    cycle(&mut Syncer::new("ns", "/dp/", None), &mut etcd, &store);
    etcd.delete("/dp/dev/a@x.io");
    // The first syncer stalled; another worker takes over with empty memory.
    let report = cycle(&mut Syncer::new("ns", "/dp/", None), &mut etcd, &store);
    assert!(report.full);
    assert_eq!(lookup(&store, "ns", "a@x.io"), Lookup::Unknown);
    assert_eq!(lookup(&store, "ns", "b@x.io"), Lookup::Found(Status::Approved));
}

#[test]
fn seeding_happens_before_the_first_sync() {
    let mut etcd = FakeEtcd::default();
    let store = MemoryStore::default();
    let seed = crate::directory::seed::etcd_once("/dp/", &[("a@x.io".into(), Status::Revoked)], 5);
    let mut syncer = Syncer::new("ns", "/dp/", seed);
    cycle(&mut syncer, &mut etcd, &store);
    assert_eq!(lookup(&store, "ns", "a@x.io"), Lookup::Found(Status::Revoked));
    assert!(etcd.kvs.contains_key(b"/dp/seeded".as_slice()));
}

#[test]
fn a_worker_that_is_not_the_syncer_still_seeds() {
    // The syncer's configuration has no seed (an admin-only one, say); another
    // configuration of the namespace has it and seeds without the role.
    let mut etcd = FakeEtcd::default();
    let store = MemoryStore::default();
    let mut syncer = Syncer::new("ns", "/dp/", None);
    let seed = crate::directory::seed::etcd_once("/dp/", &[("a@x.io".into(), Status::Approved)], 5);
    let mut other = Syncer::new("ns", "/dp/", seed);
    let request = other.seed_only().unwrap();
    let (status, body) = etcd.answer(&request);
    assert!(matches!(other.on_answer(&store, status, &body, 1), Ok(Next::Done(_))));
    assert!(other.seed_only().is_none(), "once");
    cycle(&mut syncer, &mut etcd, &store);
    assert_eq!(lookup(&store, "ns", "a@x.io"), Lookup::Found(Status::Approved));
    assert!(syncer.seed_only().is_none());
}

#[test]
fn failures_leave_the_replica_as_it_was() {
    let mut etcd = FakeEtcd::default();
    etcd.put("/dp/dev/a@x.io", &developer("approved", 1));
    let store = MemoryStore::default();
    let mut syncer = Syncer::new("ns", "/dp/", None);
    cycle(&mut syncer, &mut etcd, &store);
    syncer.begin(1000);
    assert!(syncer.on_answer(&store, 503, b"upstream connect error", 2000).is_err());
    assert!(!syncer.in_cycle());
    assert_eq!(lookup(&store, "ns", "a@x.io"), Lookup::Found(Status::Approved));
    assert_eq!(replica::read_sync_state(&store, "ns").unwrap().synced_at_ms, 1000);
}

#[test]
fn one_syncer_at_a_time_and_takeover_after_a_stall() {
    let store = MemoryStore::default();
    let a = claim_worker_id(&store, "ns").unwrap();
    let b = claim_worker_id(&store, "ns").unwrap();
    assert_ne!(a, b);
    assert!(elect(&store, "ns", a, 1000, 3000));
    assert!(!elect(&store, "ns", b, 1500, 3000));
    assert!(elect(&store, "ns", a, 2000, 3000));
    // a stops ticking; b takes over once the heartbeat is older than the stall bound.
    assert!(!elect(&store, "ns", b, 4900, 3000));
    assert!(elect(&store, "ns", b, 5100, 3000));
    assert!(!elect(&store, "ns", a, 5200, 3000));
    assert_eq!(syncer_heartbeat(&store, "ns"), Some((b, 5100)));
}

#[test]
fn tabs_follow_changes_this_gateway_already_applied() {
    let mut etcd = FakeEtcd::default();
    etcd.put("/dp/dev/a@x.io", &developer("requested", 1));
    let store = MemoryStore::default();
    let mut syncer = Syncer::new("ns", "/dp/", None);
    cycle(&mut syncer, &mut etcd, &store);
    // An admin request on this gateway accepts a@x.io and updates the replica
    // itself before the syncer sees the change.
    let accepted = developer("approved", 2);
    etcd.put("/dp/dev/a@x.io", &accepted);
    let parsed = Developer::from_stored("a@x.io", &accepted).unwrap();
    replica::apply(&store, "ns", "a@x.io", etcd.revision, Entry::Present(&parsed)).unwrap();
    let report = cycle(&mut syncer, &mut etcd, &store);
    assert_eq!((report.changed, report.relisted), (0, 1));
    assert_eq!(replica::tab_size(&store, "ns", Status::Approved).unwrap(), 1);
    assert_eq!(replica::tab_size(&store, "ns", Status::Requested).unwrap(), 0);
}

#[test]
fn deletions_in_several_parts_and_an_addition_in_one_cycle() {
    let mut etcd = FakeEtcd::default();
    for i in 0..5000 {
        etcd.put(
            &format!("/dp/dev/u{i:04}@x.io"),
            &developer(["approved", "revoked"][i % 2], i as u64),
        );
    }
    let store = MemoryStore::default();
    let mut syncer = Syncer::new("ns", "/dp/", None);
    cycle(&mut syncer, &mut etcd, &store);
    for gone in ["u0000@x.io", "u2500@x.io", "u2501@x.io", "u4999@x.io"] {
        etcd.delete(&format!("/dp/dev/{gone}"));
    }
    etcd.put("/dp/dev/zz-new@x.io", &developer("approved", 9999));
    let report = cycle(&mut syncer, &mut etcd, &store);
    assert!(!report.full);
    assert_eq!((report.removed, report.changed), (4, 1));
    for gone in ["u0000@x.io", "u2500@x.io", "u2501@x.io", "u4999@x.io"] {
        assert_eq!(lookup(&store, "ns", gone), Lookup::Unknown, "{gone}");
    }
    assert_eq!(lookup(&store, "ns", "u0002@x.io"), Lookup::Found(Status::Approved));
    assert_eq!(lookup(&store, "ns", "zz-new@x.io"), Lookup::Found(Status::Approved));
    assert_eq!(replica::tab_size(&store, "ns", Status::Approved).unwrap(), 2500 - 2 + 1);
    assert_eq!(replica::tab_size(&store, "ns", Status::Revoked).unwrap(), 2500 - 2);
    // And the next cycle finds everything in order.
    assert!(!cycle(&mut syncer, &mut etcd, &store).full);
}

#[test]
fn an_etcd_restored_from_an_older_backup_is_believed() {
    let mut etcd = FakeEtcd::default();
    for i in 0..50 {
        etcd.put("/dp/dev/filler@x.io", &developer("approved", i));
    }
    etcd.put("/dp/dev/a@x.io", &developer("approved", 1));
    etcd.put("/dp/dev/a@x.io", &developer("revoked", 2));
    let store = MemoryStore::default();
    let mut syncer = Syncer::new("ns", "/dp/", None);
    cycle(&mut syncer, &mut etcd, &store);
    assert_eq!(lookup(&store, "ns", "a@x.io"), Lookup::Found(Status::Revoked));

    // Restored from a backup taken before a@x.io was revoked, and before b@x.io
    // existed: lower revisions than the replica holds, but the truth now.
    let mut restored = FakeEtcd::default();
    restored.put("/dp/dev/a@x.io", &developer("approved", 1));
    restored.put("/dp/dev/filler@x.io", &developer("approved", 1));
    let report = cycle(&mut syncer, &mut restored, &store);
    assert!(report.full, "the revision went back: a full sync");
    assert_eq!(lookup(&store, "ns", "a@x.io"), Lookup::Found(Status::Approved));
    // A takeover syncer sees the same from the replica's sync state.
    restored.put("/dp/dev/a@x.io", &developer("rejected", 3));
    let mut fresh = FakeEtcd::default();
    fresh.put("/dp/dev/a@x.io", &developer("requested", 4));
    cycle(&mut Syncer::new("ns", "/dp/", None), &mut fresh, &store);
    assert_eq!(lookup(&store, "ns", "a@x.io"), Lookup::Found(Status::Requested));
    assert_eq!(lookup(&store, "ns", "filler@x.io"), Lookup::Unknown);
}

#[test]
fn full_sync_pages_grow_with_the_directory() {
    assert_eq!(super::full_sync_page(0), super::FULL_SYNC_PAGE);
    assert_eq!(super::full_sync_page(100_000), super::FULL_SYNC_PAGE);
    assert_eq!(super::full_sync_page(400_000), 10_000);
    assert_eq!(super::full_sync_page(10_000_000), super::MAX_FULL_SYNC_PAGE);
    assert_eq!(super::full_sync_page(u64::MAX), super::MAX_FULL_SYNC_PAGE);
}

/// A large directory (small pages here) is planned before it is read: every
/// developer arrives, one that etcd no longer has is tombstoned, and etcd
/// counts far fewer keys than paging to the end of the prefix would make it.
#[test]
fn a_large_directory_is_planned_then_read_span_by_span() {
    const N: usize = 5000;
    for grpc in [false, true] {
        let mut etcd = FakeEtcd {
            grpc,
            ..FakeEtcd::default()
        };
        for i in 0..N {
            let status = ["approved", "revoked"][i % 2];
            etcd.put(&format!("/dp/dev/dev{i:08}@example.com"), &developer(status, i as u64));
        }
        etcd.put("/dp/dev/gone@x.io", &developer("approved", 1));
        etcd.put("/dp/dev/Not-Canonical@X.io", &developer("approved", 1));
        etcd.put_bytes(b"/dp/dev/\xff\xfe", b"{}");
        let store = MemoryStore::default();
        cycle(&mut Syncer::new("ns", "/dp/", None), &mut etcd, &store);
        assert_eq!(lookup(&store, "ns", "gone@x.io"), Lookup::Found(Status::Approved));
        etcd.delete("/dp/dev/gone@x.io");

        // Another syncer (a takeover) starts with a full sync, planned.
        let mut syncer = Syncer::new("ns", "/dp/", None);
        syncer.page_bounds = (10, 50);
        etcd.walked = 0;
        let report = cycle(&mut syncer, &mut etcd, &store);
        assert!(report.full);
        assert!(report.plan.0 > 0 && report.plan.1 > 1, "planned: {:?}", report.plan);
        assert_eq!(report.unreadable, 2, "the two keys that are not addresses");
        assert_eq!(lookup(&store, "ns", "gone@x.io"), Lookup::Unknown);
        for i in 0..N {
            let expected = [Status::Approved, Status::Revoked][i % 2];
            let email = format!("dev{i:08}@example.com");
            assert_eq!(lookup(&store, "ns", &email), Lookup::Found(expected), "{email}");
        }
        assert_eq!(replica::tab_size(&store, "ns", Status::Approved).unwrap(), N / 2);
        assert_eq!(replica::tab_size(&store, "ns", Status::Revoked).unwrap(), N / 2);
        // Pages of 50 to the end of the prefix would count N²/100 = 50 N keys.
        assert!(etcd.walked < 15 * N, "etcd counted {} keys", etcd.walked);
        assert!(!cycle(&mut syncer, &mut etcd, &store).full);
    }
}

/// An etcd that refuses the plan's transactions (its `--max-txn-ops` below
/// the plan's 102 operations) gets the rest read without a plan.
#[test]
fn a_refused_plan_reads_on_without_one() {
    let mut etcd = FakeEtcd::default();
    for i in 0..1000 {
        etcd.put(&format!("/dp/dev/dev{i:04}@x.io"), &developer("approved", i));
    }
    let store = MemoryStore::default();
    let mut syncer = Syncer::new("ns", "/dp/", None);
    syncer.page_bounds = (20, 20);
    let mut request = syncer.begin(1000);
    let mut refused = 0;
    let report = loop {
        let (status, body) = if request.path == etcd::TXN {
            refused += 1;
            (
                400,
                br#"{"error":"etcdserver: too many operations in txn request","code":3}"#.to_vec(),
            )
        } else {
            etcd.answer(&request)
        };
        match syncer.on_answer(&store, status, &body, 1000).unwrap() {
            Next::Call(next) => request = next,
            Next::Done(report) => break report,
        }
    };
    assert_eq!(refused, 1);
    assert_eq!(report.changed, 1000);
    assert_eq!(replica::tab_size(&store, "ns", Status::Approved).unwrap(), 1000);
}

/// A full sync's page is applied by `work` (the driver's next tick, after the
/// next page was asked for) or with the next answer, whichever comes first.
#[test]
fn a_page_is_applied_while_the_next_is_on_its_way() {
    let mut etcd = FakeEtcd::default();
    for i in 0..200 {
        etcd.put(&format!("/dp/dev/dev{i:03}@x.io"), &developer("approved", i));
    }
    let store = MemoryStore::default();
    let mut syncer = Syncer::new("ns", "/dp/", None);
    syncer.page_bounds = (50, 50);
    let (status, body) = etcd.answer(&syncer.begin(1000));
    let Next::Call(mut request) = syncer.on_answer(&store, status, &body, 1000).unwrap() else {
        panic!("four pages")
    };
    assert_eq!(lookup(&store, "ns", "dev000@x.io"), Lookup::Unknown, "not yet");
    syncer.work(&store).unwrap();
    assert_eq!(lookup(&store, "ns", "dev049@x.io"), Lookup::Found(Status::Approved));
    assert_eq!(lookup(&store, "ns", "dev050@x.io"), Lookup::Unknown);
    syncer.work(&store).unwrap();
    // No `work` from here on: each answer applies the page before it.
    let report = loop {
        let (status, body) = etcd.answer(&request);
        match syncer.on_answer(&store, status, &body, 1000).unwrap() {
            Next::Call(next) => request = next,
            Next::Done(report) => break report,
        }
    };
    assert_eq!(report.changed, 200);
    for i in 0..200 {
        let email = format!("dev{i:03}@x.io");
        assert_eq!(lookup(&store, "ns", &email), Lookup::Found(Status::Approved), "{email}");
    }
}

/// A full sync reads every page at the revision of its first answer (etcd's
/// MVCC): changes made between its pages are not half-seen by it, and the next
/// cycle brings them. A revision compacted between its pages starts it over,
/// and it still ends complete.
#[test]
fn a_full_sync_reads_one_revision_and_starts_over_once_it_is_compacted() {
    let now = 10_000_000;
    for grpc in [false, true] {
        let mut etcd = FakeEtcd {
            grpc,
            ..FakeEtcd::default()
        };
        for i in 0..200 {
            etcd.put(&format!("/dp/dev/dev{i:03}@x.io"), &developer("approved", i));
        }
        let store = MemoryStore::default();
        let mut syncer = Syncer::new("ns", "/dp/", None);
        syncer.page_bounds = (50, 50);
        let mut request = syncer.begin(now);
        let mut answers = 0;
        let report = loop {
            let (status, body) = etcd.answer(&request);
            answers += 1;
            if answers == 1 {
                // After the first page: one developer of a later page revoked,
                // one added, one of the first page deleted.
                logged_put(&mut etcd, "dev150@x.io", Some("revoked"), now);
                logged_put(&mut etcd, "dev150a@x.io", Some("approved"), now);
                logged_put(&mut etcd, "dev010@x.io", None, now);
            }
            match syncer.on_answer(&store, status, &body, now).unwrap() {
                Next::Call(next) => request = next,
                Next::Done(report) => break report,
            }
        };
        assert!(report.full);
        assert_eq!(report.changed, 200, "the directory as of the first page");
        assert_eq!(lookup(&store, "ns", "dev150@x.io"), Lookup::Found(Status::Approved));
        assert_eq!(lookup(&store, "ns", "dev150a@x.io"), Lookup::Unknown);
        assert_eq!(lookup(&store, "ns", "dev010@x.io"), Lookup::Found(Status::Approved));
        // The next cycle reads the change log.
        assert!(!cycle_at(&mut syncer, &mut etcd, &store, now).0.full);
        assert_eq!(lookup(&store, "ns", "dev150@x.io"), Lookup::Found(Status::Revoked));
        assert_eq!(lookup(&store, "ns", "dev150a@x.io"), Lookup::Found(Status::Approved));
        assert_eq!(lookup(&store, "ns", "dev010@x.io"), Lookup::Unknown);

        // Another syncer's full sync, and etcd compacts past its revision
        // after its first page.
        let mut syncer = Syncer::new("ns", "/dp/", None);
        syncer.page_bounds = (50, 50);
        let mut request = syncer.begin(now);
        let (mut answers, mut compacted) = (0, 0);
        let report = loop {
            let (status, body) = etcd.answer(&request);
            answers += 1;
            compacted += usize::from(status == 400);
            if answers == 1 {
                logged_put(&mut etcd, "dev020@x.io", Some("rejected"), now);
                etcd.compact(etcd.revision);
            }
            match syncer.on_answer(&store, status, &body, now).unwrap() {
                Next::Call(next) => request = next,
                Next::Done(report) => break report,
            }
        };
        assert_eq!(compacted, 1, "one read refused, then the full sync started over");
        assert!(report.full);
        assert_eq!(lookup(&store, "ns", "dev020@x.io"), Lookup::Found(Status::Rejected));
        assert_eq!(lookup(&store, "ns", "dev199@x.io"), Lookup::Found(Status::Approved));
        assert_eq!(lookup(&store, "ns", "dev010@x.io"), Lookup::Unknown);
    }
}

/// A change as the filter writes it: the developer and its change log entry
/// (one transaction in etcd; two puts here). `at_ms` names the entry.
fn logged_put(etcd: &mut FakeEtcd, email: &str, status: Option<&str>, at_ms: u64) {
    let key = format!("/dp/dev/{email}");
    match status {
        Some(status) => etcd.put(&key, &developer(status, at_ms)),
        None => etcd.delete(&key),
    }
    let change = json!({"email": email, "from": null, "to": status, "actor": "ops", "at_ms": at_ms});
    etcd.put(
        &format!("/dp/events/{at_ms:016}-op{at_ms}-{email}"),
        change.to_string().as_bytes(),
    );
}

/// Runs one whole cycle at `now`, then the snapshot writer's call between
/// cycles if it makes one (as the driver does); returns the cycle's report and
/// the calls the cycle made.
fn cycle_at(syncer: &mut Syncer, etcd: &mut FakeEtcd, store: &MemoryStore, now: u64) -> (CycleReport, usize) {
    let mut request = syncer.begin(now);
    for calls in 1..10_000 {
        let (status, body) = etcd.answer(&request);
        match syncer.on_answer(store, status, &body, now).unwrap() {
            Next::Call(next) => request = next,
            Next::Done(report) => {
                if let Some(chore) = syncer.snapshot_chore(store, now) {
                    let answer = etcd.answer(&chore);
                    syncer.snapshot_answer(Ok(answer), now);
                }
                assert!(syncer.snapshot_chore(store, now).is_none(), "one writer call per cycle");
                return (report, calls);
            }
        }
    }
    panic!("the cycle never ended");
}

/// The change feed and the reconciliation, over a directory in three parts:
/// what the log names arrives in the next cycle, in calls that follow the
/// changes; a write or deletion straight into etcd (or logged by a clock more
/// than `FEED_LOOKBACK_MS` behind) arrives when its part's turn comes.
#[test]
fn the_change_feed_finds_logged_changes_and_reconciliation_the_rest() {
    let now = 10_000_000;
    let mut etcd = FakeEtcd::default();
    for i in 0..300 {
        etcd.put(&format!("/dp/dev/user{i:03}@x.io"), &developer("approved", i));
    }
    let store = MemoryStore::default();
    let mut syncer = Syncer::new("ns", "/dp/", None);
    syncer.part_size = 100;
    assert!(cycle_at(&mut syncer, &mut etcd, &store, now).0.full);

    // Nothing logged: the log, then the first part.
    assert_eq!(cycle_at(&mut syncer, &mut etcd, &store, now + 1000).1, 2);

    logged_put(&mut etcd, "user007@x.io", Some("revoked"), now + 1500);
    logged_put(&mut etcd, "user150@x.io", None, now + 1600);
    logged_put(&mut etcd, "new@x.io", Some("requested"), now + 1700);
    etcd.put("/dp/events/garbage", b"not a change");
    // Straight into etcd: in the part already read this pass, and in the last.
    etcd.put("/dp/dev/user010@x.io", &developer("revoked", 1));
    etcd.delete("/dp/dev/user020@x.io");
    etcd.put("/dp/dev/user250@x.io", &developer("revoked", 1));
    // Logged by a writer whose clock is two minutes behind.
    logged_put(&mut etcd, "user280@x.io", Some("revoked"), now + 2000 - 120_000);
    let (report, calls) = cycle_at(&mut syncer, &mut etcd, &store, now + 2000);
    assert_eq!(calls, 3, "the log, the three developers it names, the second part");
    assert_eq!((report.changed, report.removed), (2, 1));
    assert_eq!(lookup(&store, "ns", "user007@x.io"), Lookup::Found(Status::Revoked));
    assert_eq!(lookup(&store, "ns", "user150@x.io"), Lookup::Unknown);
    assert_eq!(lookup(&store, "ns", "new@x.io"), Lookup::Found(Status::Requested));
    assert_eq!(
        replica::list_page(&store, "ns", Status::Requested, 0, 10, None).unwrap(),
        (1, vec!["new@x.io".to_string()])
    );
    assert_eq!(replica::tab_size(&store, "ns", Status::Approved).unwrap(), 298);
    for unlogged in ["user010@x.io", "user250@x.io", "user280@x.io"] {
        assert_eq!(
            lookup(&store, "ns", unlogged),
            Lookup::Found(Status::Approved),
            "{unlogged}"
        );
    }
    assert_eq!(replica::read_sync_state(&store, "ns").unwrap().revision, etcd.revision);

    // The third part: the last two.
    cycle_at(&mut syncer, &mut etcd, &store, now + 3000);
    assert_eq!(lookup(&store, "ns", "user250@x.io"), Lookup::Found(Status::Revoked));
    assert_eq!(lookup(&store, "ns", "user280@x.io"), Lookup::Found(Status::Revoked));
    assert_eq!(lookup(&store, "ns", "user010@x.io"), Lookup::Found(Status::Approved));
    // The next pass, first part: the write and the deletion there.
    let (report, _) = cycle_at(&mut syncer, &mut etcd, &store, now + 4000);
    assert_eq!((report.changed, report.removed), (1, 1));
    assert_eq!(lookup(&store, "ns", "user010@x.io"), Lookup::Found(Status::Revoked));
    assert_eq!(lookup(&store, "ns", "user020@x.io"), Lookup::Unknown);
    assert_eq!(replica::tab_size(&store, "ns", Status::Approved).unwrap(), 294);
}

// ---- The snapshot ------------------------------------------------------------------

const HOUR: u64 = 3_600_000;

/// A syncer with snapshots on, for a directory this small.
fn snapshotting() -> Syncer {
    let mut syncer = Syncer::new("ns", "/dp/", None).with_snapshots("/dp/", HOUR);
    snapshot::set_sizes(&mut syncer, 100, snapshot::PART_BYTES);
    syncer
}

/// The same, in parts of about 2 KB (some 60 developers).
fn snapshotting_in_small_parts() -> Syncer {
    let mut syncer = snapshotting();
    snapshot::set_sizes(&mut syncer, 100, 2048);
    syncer
}

/// The ids of the snapshots whose parts are in etcd.
fn snapshot_ids(etcd: &FakeEtcd) -> std::collections::BTreeSet<String> {
    snapshot_keys(etcd)
        .iter()
        .filter_map(|key| {
            key.strip_prefix("/dp/snapshot/parts/")?
                .split_once('/')
                .map(|(id, _)| id.to_string())
        })
        .collect()
}

fn snapshot_current(etcd: &FakeEtcd) -> Option<snapshot::Current> {
    etcd.kvs
        .get(b"/dp/snapshot/current".as_slice())
        .map(|(value, _, _)| serde_json::from_slice(value).unwrap())
}

fn snapshot_keys(etcd: &FakeEtcd) -> Vec<String> {
    etcd.kvs
        .keys()
        .map(|key| String::from_utf8_lossy(key).into_owned())
        .filter(|key| key.starts_with("/dp/snapshot/"))
        .collect()
}

/// A directory of `n` developers, synced by a syncer that then writes the
/// snapshot (one part per cycle, then `current`).
fn directory_with_snapshot(n: usize, now: u64) -> (FakeEtcd, MemoryStore, Syncer) {
    directory_with_snapshot_over(n, now, false)
}

/// `grpc`: range reads go over etcd's gRPC API.
fn directory_with_snapshot_over(n: usize, now: u64, grpc: bool) -> (FakeEtcd, MemoryStore, Syncer) {
    let mut etcd = FakeEtcd {
        grpc,
        ..FakeEtcd::default()
    };
    for i in 0..n {
        etcd.put(&format!("/dp/dev/user{i:05}@x.io"), &developer("approved", i as u64));
    }
    etcd.put("/dp/dev/Not-An-Address", &developer("approved", 1));
    etcd.put("/dp/dev/broken@x.io", b"{oops");
    let store = MemoryStore::default();
    let mut writer = snapshotting();
    assert!(cycle_at(&mut writer, &mut etcd, &store, now).0.full);
    for i in 1..100 {
        if snapshot_current(&etcd).is_some() {
            return (etcd, store, writer);
        }
        cycle_at(&mut writer, &mut etcd, &store, now + i * 1000);
    }
    panic!("no snapshot written");
}

#[test]
fn a_new_syncer_starts_from_the_snapshot_and_catches_up_with_what_changed_since() {
    starts_from_the_snapshot_and_catches_up(false);
}

/// The same, every range read over gRPC (Envoy with `grpc_upstream`): the full
/// sync's pages, the snapshot, the catch-up and the reconciliation's keys.
#[test]
fn the_same_over_grpc() {
    starts_from_the_snapshot_and_catches_up(true);
}

fn starts_from_the_snapshot_and_catches_up(grpc: bool) {
    let now = 10 * HOUR;
    let (mut etcd, _, _) = directory_with_snapshot_over(30_000, now, grpc);
    let current = snapshot_current(&etcd).unwrap();
    assert_eq!(current.developers, 30_002);
    assert!(current.parts > 1, "{current:?}");
    assert_eq!(
        snapshot_keys(&etcd).len(),
        current.parts as usize + 1,
        "the parts and current, nothing else"
    );

    // After the snapshot: logged changes, a deletion through the filter, and
    // writes straight into etcd (the first in the last part of the key space).
    logged_put(&mut etcd, "user00007@x.io", Some("revoked"), now + 60_000);
    logged_put(&mut etcd, "user20008@x.io", None, now + 61_000);
    logged_put(&mut etcd, "new@x.io", Some("requested"), now + 62_000);
    etcd.put("/dp/dev/user25009@x.io", &developer("rejected", 3));
    etcd.delete("/dp/dev/user00010@x.io");
    etcd.delete("/dp/dev/user29000@x.io");
    etcd.put("/dp/dev/direct@x.io", &developer("approved", 4));

    // Five minutes on: past the feed's usual look back, not the log's retention.
    let later = now + 300_000;
    let store = MemoryStore::default();
    let mut reader = snapshotting();
    reader.part_size = 10_000;
    let (report, calls) = cycle_at(&mut reader, &mut etcd, &store, later);
    assert!(report.from_snapshot && !report.full, "{report:?}");
    // current, the parts, the log, what it names, the first reconciliation
    // part and its keys (they tell the direct deletion there).
    assert_eq!(calls, current.parts as usize + 5);
    assert_eq!(lookup(&store, "ns", "user00001@x.io"), Lookup::Found(Status::Approved));
    assert_eq!(lookup(&store, "ns", "user00007@x.io"), Lookup::Found(Status::Revoked));
    assert_eq!(lookup(&store, "ns", "user20008@x.io"), Lookup::Unknown, "from the log");
    assert_eq!(lookup(&store, "ns", "new@x.io"), Lookup::Found(Status::Requested));
    assert_eq!(lookup(&store, "ns", "broken@x.io"), Lookup::Unavailable);
    assert_eq!(lookup(&store, "ns", "not-an-address"), Lookup::Unknown);
    assert_eq!(replica::read_sync_state(&store, "ns").unwrap().revision, etcd.revision);
    assert_eq!(
        lookup(&store, "ns", "user00010@x.io"),
        Lookup::Unknown,
        "in the first part"
    );
    // Other tools' writes since the snapshot, beyond the first part: the next
    // cycle's catch-up.
    assert_eq!(lookup(&store, "ns", "user25009@x.io"), Lookup::Found(Status::Approved));
    // (direct@x.io sorts into the first part: its reconciliation found it.)
    assert_eq!(lookup(&store, "ns", "direct@x.io"), Lookup::Found(Status::Approved));
    let (report, calls) = cycle_at(&mut reader, &mut etcd, &store, later + 500);
    assert!(!report.from_snapshot);
    assert_eq!(calls, 3, "the catch-up, the log, the second part");
    assert_eq!(lookup(&store, "ns", "user25009@x.io"), Lookup::Found(Status::Rejected));
    assert_eq!(lookup(&store, "ns", "direct@x.io"), Lookup::Found(Status::Approved));
    assert_eq!(
        replica::list_page(&store, "ns", Status::Rejected, 0, 1, None)
            .unwrap()
            .1,
        vec!["user25009@x.io".to_string()],
        "the tabs follow the catch-up"
    );
    // A deletion straight into etcd elsewhere is found within the pass the
    // first cycle began, as any direct write is.
    assert_eq!(lookup(&store, "ns", "user29000@x.io"), Lookup::Found(Status::Approved));
    for i in 1..=3 {
        cycle_at(&mut reader, &mut etcd, &store, later + i * 1000);
    }
    assert_eq!(lookup(&store, "ns", "user29000@x.io"), Lookup::Unknown);
    // The replica is then what a full sync gives.
    let full = MemoryStore::default();
    let mut full_syncer = Syncer::new("ns", "/dp/", None);
    cycle_at(&mut full_syncer, &mut etcd, &full, later + 5000);
    for status in Status::ALL {
        assert_eq!(
            replica::list_page(&store, "ns", status, 0, 100_000, None).unwrap(),
            replica::list_page(&full, "ns", status, 0, 100_000, None).unwrap(),
            "{status:?}"
        );
    }
    assert!(
        reader.known == full_syncer.known,
        "the syncers know the same developers"
    );
    // And the next cycles go on incrementally.
    logged_put(&mut etcd, "user00011@x.io", Some("revoked"), later + 6000);
    let (report, _) = cycle_at(&mut reader, &mut etcd, &store, later + 6000);
    assert!(!report.full && !report.from_snapshot);
    assert_eq!(lookup(&store, "ns", "user00011@x.io"), Lookup::Found(Status::Revoked));
}

#[test]
fn a_change_logged_while_the_snapshot_was_being_written_is_read() {
    // Parts take a while to write (a minute at a million developers): the
    // log is read from when the writer took its revision, not from the end.
    let now = 10 * HOUR;
    let mut etcd = FakeEtcd::default();
    for i in 0..200 {
        etcd.put(&format!("/dp/dev/user{i:05}@x.io"), &developer("approved", i));
    }
    let mut writer = snapshotting_in_small_parts();
    let store = MemoryStore::default();
    let mut t = now;
    while snapshot_current(&etcd).is_none() {
        cycle_at(&mut writer, &mut etcd, &store, t);
        if snapshot_ids(&etcd).len() == 1 && etcd.kvs.contains_key(b"/dp/dev/user00050@x.io".as_slice()) {
            // The first part is written (it holds user00050): deleted now.
            logged_put(&mut etcd, "user00050@x.io", None, t + 1000);
        }
        t += 30_000;
        assert!(t < now + 600_000, "no snapshot");
    }
    let current = snapshot_current(&etcd).unwrap();
    assert!(current.written_ms - current.began_ms > FEED_LOOKBACK_MS + 30_000);
    let store = MemoryStore::default();
    let mut reader = snapshotting();
    // (Its first reconciliation part does not reach user00050.)
    reader.part_size = 20;
    assert!(cycle_at(&mut reader, &mut etcd, &store, t).0.from_snapshot);
    assert_eq!(lookup(&store, "ns", "user00050@x.io"), Lookup::Unknown);
    assert_eq!(lookup(&store, "ns", "user00051@x.io"), Lookup::Found(Status::Approved));
}

#[test]
fn a_snapshot_that_cannot_be_trusted_means_a_full_sync() {
    let now = 10 * HOUR;
    // Too old: the change log no longer reaches back to it.
    let (mut etcd, _, _) = directory_with_snapshot(200, now);
    let (report, _) = cycle_at(&mut snapshotting(), &mut etcd, &MemoryStore::default(), now + HOUR);
    assert!(report.full && !report.from_snapshot);
    // A part gone or damaged.
    let (mut etcd, _, _) = directory_with_snapshot(200, now);
    let current = snapshot_current(&etcd).unwrap();
    let part = format!("/dp/snapshot/parts/{}/000000", current.id);
    let mut damaged = etcd.kvs.get(part.as_bytes()).unwrap().0.clone();
    damaged.extend_from_slice(b"\nuser;1;a1");
    etcd.put(&part, &damaged);
    let store = MemoryStore::default();
    let (report, _) = cycle_at(&mut snapshotting(), &mut etcd, &store, now + 60_000);
    assert!(report.full);
    assert_eq!(lookup(&store, "ns", "user00001@x.io"), Lookup::Found(Status::Approved));
    etcd.delete(&part);
    assert!(
        cycle_at(&mut snapshotting(), &mut etcd, &MemoryStore::default(), now + 60_000)
            .0
            .full
    );
    // Too many changes since: the catch-up, in the next cycle, reads everything.
    let (mut etcd, _, _) = directory_with_snapshot(200, now);
    for i in 0..=snapshot::CATCH_UP_LIMIT {
        etcd.put(&format!("/dp/dev/late{i}@x.io"), &developer("approved", 1));
    }
    let mut reader = snapshotting();
    let store = MemoryStore::default();
    assert!(cycle_at(&mut reader, &mut etcd, &store, now + 60_000).0.from_snapshot);
    assert!(cycle_at(&mut reader, &mut etcd, &store, now + 61_000).0.full);
    assert_eq!(lookup(&store, "ns", "late7@x.io"), Lookup::Found(Status::Approved));
}

#[test]
fn a_failed_first_cycle_from_the_snapshot_starts_over() {
    let now = 10 * HOUR;
    let (mut etcd, _, _) = directory_with_snapshot(200, now);
    logged_put(&mut etcd, "user00003@x.io", None, now + 30_000);
    let store = MemoryStore::default();
    let mut reader = snapshotting();
    // The parts and the catch-up are in; the change log's answer is lost.
    let mut request = reader.begin(now + 60_000);
    while !matches!(reader.phase, Phase::Feed) {
        let (status, body) = etcd.answer(&request);
        match reader.on_answer(&store, status, &body, now + 60_000).unwrap() {
            Next::Call(next) => request = next,
            Next::Done(_) => panic!("ended before the change log"),
        }
    }
    reader.abandon();
    assert!(replica::read_sync_state(&store, "ns").is_none(), "still closed");
    // The next cycle reads the snapshot again (and the deletion in the log).
    let (report, _) = cycle_at(&mut reader, &mut etcd, &store, now + 61_000);
    assert!(report.from_snapshot);
    assert_eq!(lookup(&store, "ns", "user00003@x.io"), Lookup::Unknown);
}

#[test]
fn one_gateway_of_the_fleet_writes_the_snapshot_at_a_time() {
    let now = 10 * HOUR;
    let mut etcd = FakeEtcd::default();
    for i in 0..200 {
        etcd.put(&format!("/dp/dev/user{i:05}@x.io"), &developer("approved", i));
    }
    let stores = [MemoryStore::default(), MemoryStore::default()];
    let mut writers = [snapshotting_in_small_parts(), snapshotting_in_small_parts()];
    // Both sync and look at the same moment: neither finds a snapshot nor a
    // claim; the first to claim writes, the other does not write a part.
    for i in 0..12 {
        for (writer, store) in writers.iter_mut().zip(&stores) {
            cycle_at(writer, &mut etcd, store, now + i * 1000);
        }
        assert!(snapshot_ids(&etcd).len() <= 1, "{:?}", snapshot_keys(&etcd));
    }
    let current = snapshot_current(&etcd).expect("a snapshot");
    assert!(current.parts >= 3, "{current:?}");
    assert_eq!(
        snapshot_keys(&etcd).len(),
        current.parts as usize + 1,
        "its parts and current; the claim is gone"
    );
    // A reader gets the whole directory from it.
    let store = MemoryStore::default();
    let (report, _) = cycle_at(&mut snapshotting(), &mut etcd, &store, now + 20_000);
    assert!(report.from_snapshot);
    assert_eq!(replica::tab_size(&store, "ns", Status::Approved).unwrap(), 200);

    // Ten minutes on, one writes the next; the first stops midway (its
    // gateway went away): its claim holds the others off for two minutes, then
    // the other takes over, and the parts the first left go with its commit.
    let later = now + snapshot::SNAPSHOT_EVERY_MS + 60_000;
    let mut t = later;
    while snapshot_ids(&etcd).len() < 2 {
        cycle_at(&mut writers[0], &mut etcd, &stores[0], t);
        t += 1000;
        assert!(t < later + 20_000, "the first never began the next snapshot");
    }
    cycle_at(&mut writers[0], &mut etcd, &stores[0], t);
    let abandoned: Vec<String> = snapshot_ids(&etcd).into_iter().filter(|id| *id != current.id).collect();
    for i in 0..30 {
        cycle_at(&mut writers[1], &mut etcd, &stores[1], t + 5000 + i * 1000);
    }
    assert_eq!(snapshot_current(&etcd).unwrap().id, current.id, "held off by the claim");
    let mut t = t + snapshot::CLAIM_STALE_MS + 1000;
    while snapshot_current(&etcd).unwrap().id == current.id {
        cycle_at(&mut writers[1], &mut etcd, &stores[1], t);
        t += 1000;
        assert!(t < later + 3 * snapshot::CLAIM_STALE_MS, "the other never took over");
    }
    let next = snapshot_current(&etcd).unwrap();
    assert!(!abandoned.contains(&next.id));
    assert_eq!(
        snapshot_ids(&etcd).into_iter().collect::<Vec<_>>(),
        vec![next.id.clone()]
    );
    assert_eq!(snapshot_keys(&etcd).len(), next.parts as usize + 1);
    // The first comes back: its claim is gone, so its next part is refused
    // and it writes nothing more.
    cycle_at(&mut writers[0], &mut etcd, &stores[0], t);
    assert_eq!(snapshot_ids(&etcd).len(), 1);

    // A syncer of a small directory writes none.
    let mut small = FakeEtcd::default();
    small.put("/dp/dev/a@x.io", &developer("approved", 1));
    let mut syncer = Syncer::new("ns", "/dp/", None).with_snapshots("/dp/", HOUR);
    for i in 0..5 {
        cycle_at(&mut syncer, &mut small, &MemoryStore::default(), now + i * 1000);
    }
    assert!(snapshot_keys(&small).is_empty());
}

fn approved_until(ends_ms: u64) -> Vec<u8> {
    json!({"status": "approved", "updated_ms": 1, "approval_expires_ms": ends_ms})
        .to_string()
        .into_bytes()
}

/// The list of ends (`keys::expiring`) names every approval with an end. The syncer writes it once
/// a cycle from what it knows, never once a developer: a full sync of a
/// million such approvals rewrote a list of a million lines a million times.
/// (In parts: a change rewrites the part it is in.)
#[test]
fn the_expiring_list_is_written_once_a_cycle_not_once_a_developer() {
    let mut etcd = FakeEtcd::default();
    for i in 0..3000 {
        etcd.put(&format!("/dp/dev/user{i}@x.io"), &approved_until(5_000_000 + i));
    }
    // An end on a status other than approved is no approval's end.
    etcd.put(
        "/dp/dev/asked@x.io",
        json!({"status": "requested", "approval_expires_ms": 1})
            .to_string()
            .as_bytes(),
    );
    let store = crate::directory::CountingStore::of("ns/b/E");
    let mut syncer = Syncer::new("ns", "/dp/", None);
    let expiring = |store: &crate::directory::CountingStore| replica::expiring(store, "ns").unwrap();
    assert!(cycle(&mut syncer, &mut etcd, &store).full);
    let parts = keys::PARTS as usize;
    assert_eq!(
        store.writes.get(),
        parts,
        "the full sync writes each part of the list once"
    );
    let list = expiring(&store);
    assert_eq!(list.len(), 3000);
    assert_eq!(list[0], ("user0@x.io".to_string(), 5_000_000));
    assert_eq!(list[2999], ("user2999@x.io".to_string(), 5_002_999));

    // An end moved, an approval revoked, one with an end added, one deleted:
    // one edit.
    etcd.put("/dp/dev/user1@x.io", &approved_until(4_000_000));
    etcd.put("/dp/dev/user2@x.io", &developer("revoked", 2));
    etcd.put("/dp/dev/new@x.io", &approved_until(6_000_000));
    etcd.delete("/dp/dev/user3@x.io");
    // (A deletion is found by the next cycle's count.)
    cycle(&mut syncer, &mut etcd, &store);
    cycle(&mut syncer, &mut etcd, &store);
    let edits = store.writes.get() - parts;
    assert!(
        (1..=4).contains(&edits),
        "one edit of the parts those four are in, not {edits}"
    );
    let list = expiring(&store);
    assert_eq!(list.len(), 2999);
    assert_eq!(list[0], ("user1@x.io".to_string(), 4_000_000));
    assert_eq!(list.last().unwrap(), &("new@x.io".to_string(), 6_000_000));
    for gone in ["user2@x.io", "user3@x.io", "asked@x.io"] {
        assert!(list.iter().all(|(email, _)| email != gone), "{gone}");
    }

    // Many ends at once: the list is rewritten, once.
    for i in 100..140 {
        etcd.put(&format!("/dp/dev/user{i}@x.io"), &approved_until(1_000 + i));
    }
    let before = store.writes.get();
    cycle(&mut syncer, &mut etcd, &store);
    let rewritten = store.writes.get() - before;
    assert!(
        (1..=parts).contains(&rewritten),
        "each part at most once, not {rewritten}"
    );
    let list = expiring(&store);
    assert_eq!(list.len(), 2999);
    assert_eq!(list[0], ("user100@x.io".to_string(), 1_100));

    // What the syncer knows is what the list says.
    let rebuilt = MemoryStore::default();
    replica::write_expiring(&rebuilt, "ns", &syncer.known).unwrap();
    assert_eq!(replica::expiring(&rebuilt, "ns").unwrap(), list);
}
