//! How many lines each part of a list holds, in one small key per list
//! (`keys::tab_counts`): the admin API's counts of the four tabs, and the size
//! of Requested Access that bounds self-service registration, are one read
//! instead of a pass over every part (at ten million developers the tabs are
//! some 300 MB, and the worker that reads them serves nothing meanwhile).
//!
//! Shared data has no transaction over two keys, so a writer keeps the counts
//! right this way: it reads the counts (and their CAS) *before* it edits a
//! part, then writes the part's new count with that CAS. If another writer
//! changed the counts meanwhile, it reads them again, then the part as it is
//! now, and writes its count with the CAS it read first, until that holds. The
//! last counts written were then computed from a part read after every part
//! write whose writer had not yet written its counts, so they agree with the
//! parts once every writer is done. What they can miss: a writer whose VM dies
//! between its part and its counts (the next edit of that part, or the next
//! full sync, puts the count right), and two writers that both create the key
//! at once on Envoy (which lets a write without CAS overwrite).
//!
//! The value is the `keys::PARTS` counts in decimal, `;`-separated. A value
//! that is absent or unreadable is rebuilt by counting every part, one at a
//! time.

use std::cell::Cell;

use super::{keys, update, SharedStore, Status, StoreError, WriteError};

/// The counts of one list as read before an edit: `None` when absent or unreadable.
pub struct Before {
    counts: Option<Vec<usize>>,
    cas: Option<u32>,
}

fn parse(value: &[u8]) -> Option<Vec<usize>> {
    let counts: Vec<usize> = std::str::from_utf8(value)
        .ok()?
        .split(';')
        .map(|count| count.parse().ok())
        .collect::<Option<_>>()?;
    (counts.len() == keys::PARTS as usize).then_some(counts)
}

fn encode(counts: &[usize]) -> Vec<u8> {
    let text: Vec<String> = counts.iter().map(usize::to_string).collect();
    text.join(";").into_bytes()
}

/// The lines of a part (each ends in `\n`).
pub fn lines_in(part: &[u8]) -> usize {
    part.iter().filter(|&&b| b == b'\n').count()
}

/// Read before editing parts of `list` (see the module's comment).
pub fn before_edit(store: &dyn SharedStore, namespace: &str, list: Option<Status>) -> Result<Before, WriteError> {
    let key = keys::tab_counts(namespace, list);
    let found = store.get(&key).map_err(|e| WriteError::host(&key, e))?;
    Ok(Before {
        cas: found.as_ref().map(|(_, cas)| *cas),
        counts: found.and_then(|(value, _)| parse(&value)),
    })
}

/// Records the counts of the parts of `list` a writer just wrote (`written`:
/// part and its lines), given what `before_edit` read.
pub fn after_edit(
    store: &dyn SharedStore,
    namespace: &str,
    list: Option<Status>,
    before: Before,
    written: &[(u32, usize)],
) -> Result<(), WriteError> {
    let key = keys::tab_counts(namespace, list);
    // A writer of every part (a full sync) knows every count.
    let every_part = written.len() == keys::PARTS as usize;
    if let Some(mut counts) = before
        .counts
        .or_else(|| every_part.then(|| vec![0; keys::PARTS as usize]))
    {
        for &(part, lines) in written {
            if let Some(count) = counts.get_mut(part as usize) {
                *count = lines;
            }
        }
        match store.set(&key, &encode(&counts), before.cas) {
            Ok(()) => return Ok(()),
            Err(StoreError::CasMismatch) => {}
            Err(error) => return Err(WriteError::host(&key, error)),
        }
    }
    // Another writer got in between (or there were no counts): the parts as
    // they are now, read after the counts' CAS.
    let failed = Cell::new(None);
    update(store, &key, |current| {
        let recount = |part: u32| -> Option<usize> {
            let part_key = keys::tab(namespace, list, part);
            match store.get(&part_key) {
                Ok(found) => Some(found.map_or(0, |(bytes, _)| lines_in(&bytes))),
                Err(error) => {
                    failed.set(Some(WriteError::host(&part_key, error)));
                    None
                }
            }
        };
        let mut counts = match current.and_then(parse) {
            Some(counts) => counts,
            None => (0..keys::PARTS).map(&recount).collect::<Option<_>>()?,
        };
        for &(part, _) in written {
            *counts.get_mut(part as usize)? = recount(part)?;
        }
        Some(encode(&counts))
    })?;
    failed.take().map_or(Ok(()), Err)
}

/// The lines of `list` in all: one read, or (no counts yet) a pass over every
/// part, one at a time.
pub fn size(store: &dyn SharedStore, namespace: &str, list: Option<Status>) -> Result<usize, WriteError> {
    if let Some(counts) = before_edit(store, namespace, list)?.counts {
        return Ok(counts.iter().sum());
    }
    let mut total = 0;
    for part in 0..keys::PARTS {
        let key = keys::tab(namespace, list, part);
        if let Some((bytes, _)) = store.get(&key).map_err(|e| WriteError::host(&key, e))? {
            total += lines_in(&bytes);
        }
    }
    Ok(total)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::directory::replica::{self, write_lists, Known, Parts, Tabs};
    use crate::directory::{CountingStore, Meddling, MemoryStore};

    /// Lines of `list` as its parts hold them.
    fn real_size(store: &dyn SharedStore, list: Option<Status>) -> usize {
        (0..keys::PARTS)
            .filter_map(|part| store.get(&keys::tab("ns", list, part)).unwrap())
            .map(|(bytes, _)| lines_in(&bytes))
            .sum()
    }

    fn approved(n: u64) -> Known {
        replica::numbered(Status::Approved, n)
    }

    #[test]
    fn a_writer_whose_counts_changed_meanwhile_counts_its_part_again() {
        // Two e-mails of one part, so both writers edit the same part.
        let first = "a0@example.com";
        let second = (1..)
            .map(|i| format!("a{i}@example.com"))
            .find(|email| keys::part_of(email) == keys::part_of(first))
            .unwrap();
        let store = Meddling::after_write(&keys::tab("ns", Some(Status::Approved), keys::part_of(first)));
        write_lists(&store, "ns", &approved(300), Tabs::ALL, Parts::ALL).unwrap();
        // This writer has read the counts and written its part; before it
        // writes its count, another adds a line to the same part, counts and all.
        store.meddle(|inner: &MemoryStore| {
            replica::retab(inner, "ns", &second, None, Some((Status::Approved, 2000))).unwrap()
        });
        replica::retab(&store, "ns", first, None, Some((Status::Approved, 1000))).unwrap();
        assert!(store.meddled(), "the other writer got in between");
        assert_eq!(real_size(&store, Some(Status::Approved)), 302);
        assert_eq!(size(&store, "ns", Some(Status::Approved)).unwrap(), 302);
    }

    #[test]
    fn counts_that_are_absent_or_unreadable_are_counted_from_the_parts() {
        let store = MemoryStore::default();
        write_lists(&store, "ns", &approved(500), Tabs::ALL, Parts::ALL).unwrap();
        let key = keys::tab_counts("ns", Some(Status::Approved));
        for broken in [&b"12;x"[..], b"", &[b'7'; 3]] {
            let cas = store.get(&key).unwrap().map(|(_, cas)| cas);
            store.set(&key, broken, cas).unwrap();
            assert_eq!(size(&store, "ns", Some(Status::Approved)).unwrap(), 500);
            // The next edit writes them whole again.
            replica::retab(&store, "ns", "new@example.com", None, Some((Status::Approved, 9000))).unwrap();
            replica::retab(&store, "ns", "new@example.com", Some(Status::Approved), None).unwrap();
            assert!(parse(&store.get(&key).unwrap().unwrap().0).is_some());
            assert_eq!(size(&store, "ns", Some(Status::Approved)).unwrap(), 500);
        }
        assert_eq!(size(&store, "ns", Some(Status::Revoked)).unwrap(), 0);
    }

    #[test]
    fn a_tabs_size_is_one_read_whatever_its_length() {
        let store = CountingStore::of("ns/b/");
        write_lists(&store, "ns", &approved(6400), Tabs::ALL, Parts::ALL).unwrap();
        store.reads.set(0);
        assert_eq!(size(&store, "ns", Some(Status::Approved)).unwrap(), 6400);
        assert_eq!(store.reads.get(), 1);
        assert_eq!(replica::tab_size(&store, "ns", Status::Requested).unwrap(), 0);
        assert_eq!(store.reads.get(), 2);
    }
}
