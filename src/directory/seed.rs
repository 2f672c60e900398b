//! Seeding a static directory (the configuration's `developers`) into shared
//! data, idempotently, on every worker.

use std::collections::BTreeSet;

use super::store::{write_if_different, SharedStore, WriteError, WriteOutcome};
use super::{keys, Record, Status};

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
pub fn seed(
    store: &dyn SharedStore,
    namespace: &str,
    developers: &[(String, Status)],
) -> Result<SeedReport, WriteError> {
    let mut report = SeedReport::default();
    for (email, status) in developers {
        let record = Record::Present {
            status: *status,
            revision: 0,
        };
        match write_if_different(store, &keys::developer(namespace, email), &record.encode())? {
            WriteOutcome::Written => report.written += 1,
            WriteOutcome::AlreadyCurrent => report.unchanged += 1,
        }
    }

    let index_key = keys::seed_index(namespace);
    let previous = match store.get(&index_key).map_err(|e| WriteError::host(&index_key, e))? {
        Some((bytes, _)) => String::from_utf8_lossy(&bytes).into_owned(),
        None => String::new(),
    };
    let current: BTreeSet<&str> = developers.iter().map(|(email, _)| email.as_str()).collect();
    let tombstone = Record::Deleted { revision: 0 }.encode();
    for email in previous
        .lines()
        .filter(|email| !email.is_empty() && !current.contains(email))
    {
        if write_if_different(store, &keys::developer(namespace, email), &tombstone)? == WriteOutcome::Written {
            report.removed += 1;
        }
    }

    let index = current.into_iter().collect::<Vec<_>>().join("\n");
    write_if_different(store, &index_key, index.as_bytes())?;
    Ok(report)
}
