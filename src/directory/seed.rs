//! Every seeding of the configuration's `developers`, in one place:
//! - a static directory: `records` (the hot-path records, idempotently, on every
//!   worker) and `static_directory` (those plus the tabs and sync state the
//!   read-only admin API reads);
//! - an etcd directory: `etcd_once`, the transaction that creates them in etcd
//!   once (a marker key records it).

use std::collections::HashSet;

use super::developer::Developer;
use super::replica::{write_lists, write_sync_state, Known, Listed, Parts, SyncState, Tabs};
use super::store::{write_if_different, SharedStore, WriteError, WriteOutcome};
use super::{keys, write_record, Record, Status};
use crate::etcd::{self, EtcdRequest};

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SeedReport {
    pub written: usize,
    pub unchanged: usize,
    pub removed: usize,
}

/// Makes the shared directory hold exactly `developers` (canonical emails, no
/// duplicates: the configuration compiler guarantees both). Idempotent: every
/// worker runs it, and all but the first find the records already current.
///
/// Order matters for a worker that stops half-way: records first, then tombstones
/// for developers the previous seeding had and this one has not, and the index
/// last, so a later run still knows what to remove.
pub fn records(
    store: &dyn SharedStore,
    namespace: &str,
    developers: &[(String, Status)],
) -> Result<SeedReport, WriteError> {
    let mut report = SeedReport::default();
    for (email, status) in developers {
        let record = Record::Present {
            expires_ms: None,
            status: *status,
            revision: 0,
        };
        match write_record(store, namespace, email, &record)? {
            WriteOutcome::Written => report.written += 1,
            WriteOutcome::AlreadyCurrent => report.unchanged += 1,
        }
    }

    let index_key = keys::seed_index(namespace);
    let previous = match store.get(&index_key).map_err(|e| WriteError::host(&index_key, e))? {
        Some((bytes, _)) => String::from_utf8_lossy(&bytes).into_owned(),
        None => String::new(),
    };
    // Membership only: the index keeps the configuration's order (the same on
    // every worker). A sorted set here cost the .wasm a stable sort of its own.
    let current: HashSet<&str> = developers.iter().map(|(email, _)| email.as_str()).collect();
    let tombstone = Record::Deleted { revision: 0 };
    for email in previous
        .lines()
        .filter(|email| !email.is_empty() && !current.contains(email))
    {
        if write_record(store, namespace, email, &tombstone)? == WriteOutcome::Written {
            report.removed += 1;
        }
    }

    let index = developers
        .iter()
        .map(|(email, _)| email.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    write_if_different(store, &index_key, index.as_bytes())?;
    Ok(report)
}

/// A static directory: the configuration's developers become the replica, with
/// tabs for the (read-only) admin API, at revision 0.
pub fn static_directory(
    store: &dyn SharedStore,
    namespace: &str,
    developers: &[(String, Status)],
    now_ms: u64,
) -> Result<SeedReport, WriteError> {
    let report = records(store, namespace, developers)?;
    let mut listed = Known::new();
    for (email, status) in developers {
        listed.insert(email.clone(), Listed::new(Some(*status), 0, None));
    }
    write_lists(store, namespace, &listed, Tabs::ALL, Parts::ALL)?;
    write_sync_state(
        store,
        namespace,
        SyncState {
            revision: 0,
            synced_at_ms: now_ms,
        },
    )?;
    Ok(report)
}

/// The request that seeds `developers` once, `None` when there are none.
pub fn etcd_once(key_prefix: &str, developers: &[(String, Status)], now_ms: u64) -> Option<EtcdRequest> {
    if developers.is_empty() {
        return None;
    }
    // A seeded developer is a registration like any other: one change log
    // entry each (events), under one operation id for the seed.
    let operation = format!("seed{now_ms:x}");
    let entries: Vec<_> = developers
        .iter()
        .map(|(email, status)| {
            let developer = Developer::register(email, *status, serde_json::Map::new(), "configuration", now_ms);
            let log = crate::events::Change::last_of(&developer)
                .map(|change| change.log_entry(key_prefix, &operation))
                .into_iter()
                .collect();
            (keys::etcd_developer(key_prefix, email), developer.to_stored(), log)
        })
        .collect();
    Some(etcd::seed_once(&keys::etcd_seed_marker(key_prefix), &entries))
}
