//! The newest lines of each tab, in order, in one small key per tab
//! (`keys::tab_front`): a page within them (the console's pages, the API's
//! first pages) is one read instead of a merge of every part (a tab's whole
//! bytes: tens of MB at ten million developers, and the console asks every
//! second).
//!
//! The front is always the first lines of the merged tab, `complete` when it
//! is the whole tab; it may be shorter than `FRONT`. What keeps that true:
//! - an edit of a part (after the part is written) makes the same change to
//!   the front: the developers that leave go; one that enters goes in where it
//!   sorts, if that is inside the front (or the front is complete), and the
//!   front is cut back to `FRONT`. Removals and insertions of distinct
//!   developers commute, and each is idempotent, so edits racing on the
//!   front's CAS may land in any order;
//! - a rebuild of some parts (a cycle with many moves) empties the front; a
//!   rebuild of every part (a full sync) writes it whole;
//! - a page the front cannot serve merges the parts, and then writes the front
//!   it found with the CAS it read *before* reading the parts: if any edit
//!   reached the front meanwhile, that write fails and the next page tries
//!   again.
//!
//! What can leave it wrong, as with the counts (`tab_counts`): a writer whose
//! VM dies between its part and the front; the next full sync rewrites it.
//!
//! Every write of the front changes it (its generation goes up), so every
//! edit moves its CAS on either host, even one that leaves its lines as they
//! were: an edit the front cannot place (past a partial front's end) must
//! still fail a rebuild from parts read before it.
//!
//! The value: `c` (complete) or `p` (partial), the generation, a newline,
//! then the tab's `email;updated_ms` lines.

use super::replica::{push_line, split_line, tab_order};
use super::{keys, update, SharedStore, Status, StoreError, WriteError};

/// The most lines a front holds: twenty of the console's pages of 50, two of
/// the API's largest. (Unit tests use a short front, so their small
/// directories go past it: cut back, partial, rebuilt.)
pub const FRONT: usize = if cfg!(test) { 8 } else { 1000 };

/// A tab's first lines, newest change first, ties by e-mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Front {
    /// Whether these are all of the tab's lines.
    pub complete: bool,
    pub lines: Vec<(String, u64)>,
    /// Counts the writes: each changes the value.
    generation: u64,
}

impl Front {
    /// Whether it holds the page that ends at line `end`.
    pub fn serves(&self, end: usize) -> bool {
        self.complete || self.lines.len() >= end
    }
}

fn parse(value: &[u8]) -> Option<Front> {
    let newline = value.iter().position(|&b| b == b'\n')?;
    let (header, rest) = (value.get(..newline)?, value.get(newline + 1..)?);
    let (flag, generation) = header.split_first()?;
    let complete = match flag {
        b'c' => true,
        b'p' => false,
        _ => return None,
    };
    let generation = std::str::from_utf8(generation).ok()?.parse().ok()?;
    let lines = rest
        .split(|&b| b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| match split_line(line) {
            (email, Some(ms)) => std::str::from_utf8(email).ok().map(|email| (email.to_string(), ms)),
            (_, None) => None,
        })
        .collect::<Option<Vec<_>>>()?;
    Some(Front {
        complete,
        lines,
        generation,
    })
}

fn encode(front: &Front) -> Vec<u8> {
    let mut value = Vec::with_capacity(24 + front.lines.len() * 32);
    value.push(if front.complete { b'c' } else { b'p' });
    value.extend_from_slice(front.generation.to_string().as_bytes());
    value.push(b'\n');
    for (email, ms) in &front.lines {
        push_line(&mut value, email, *ms);
    }
    value
}

/// The front of `status`'s tab (`None` when absent or unreadable) and its
/// CAS (for `rebuilt`; `None` when absent).
pub fn read(
    store: &dyn SharedStore,
    namespace: &str,
    status: Status,
) -> Result<(Option<Front>, Option<u32>), WriteError> {
    let key = keys::tab_front(namespace, status);
    let found = store.get(&key).map_err(|e| WriteError::host(&key, e))?;
    let cas = found.as_ref().map(|(_, cas)| *cas);
    Ok((found.and_then(|(value, _)| parse(&value)), cas))
}

/// Makes the change a part's edit made: `leaving` leave the front, `entering`
/// (e-mail, time of the change) enter it where they sort.
pub fn edit(
    store: &dyn SharedStore,
    namespace: &str,
    status: Status,
    leaving: &[&str],
    entering: &[(&str, u64)],
) -> Result<(), WriteError> {
    update(store, &keys::tab_front(namespace, status), |current| {
        // Absent or unreadable: nothing to keep right; a page rebuilds it.
        let mut front = parse(current?)?;
        front.lines.retain(|(email, _)| {
            !leaving.contains(&email.as_str()) && !entering.iter().any(|(entering, _)| entering == email)
        });
        for &(email, ms) in entering {
            let at = front
                .lines
                .partition_point(|(other, other_ms)| tab_order((other, *other_ms), (email, ms)).is_lt());
            // Past the last line of a partial front, it may not be among the
            // tab's first lines: left out.
            if front.complete || at < front.lines.len() {
                front.lines.insert(at, (email.to_string(), ms));
            }
        }
        if front.lines.len() > FRONT {
            front.lines.truncate(FRONT);
            front.complete = false;
        }
        front.generation = front.generation.wrapping_add(1);
        Some(encode(&front))
    })?;
    Ok(())
}

/// Writes the front whole: `first` the tab's first lines in order (at most
/// `FRONT` are kept), `complete` whether they are the whole tab.
pub fn write(
    store: &dyn SharedStore,
    namespace: &str,
    status: Status,
    first: &[(&str, u64)],
    complete: bool,
) -> Result<(), WriteError> {
    let front = front_of(first, complete);
    update(store, &keys::tab_front(namespace, status), |current| {
        Some(encode(&Front {
            generation: next_generation(current.and_then(parse)),
            ..front.clone()
        }))
    })?;
    Ok(())
}

fn next_generation(current: Option<Front>) -> u64 {
    current.map_or(0, |front| front.generation.wrapping_add(1))
}

/// Empties the front (partial, no lines): after a rebuild of some parts.
pub fn clear(store: &dyn SharedStore, namespace: &str, status: Status) -> Result<(), WriteError> {
    write(store, namespace, status, &[], false)
}

/// Writes the front a page found by merging the parts, unless it changed
/// since `cas` was read (before the parts were): then an edit got in, and
/// the next page tries again.
pub fn rebuilt(
    store: &dyn SharedStore,
    namespace: &str,
    status: Status,
    (read, cas): (Option<Front>, u32),
    first: &[(&str, u64)],
    complete: bool,
) -> Result<(), WriteError> {
    let key = keys::tab_front(namespace, status);
    let front = Front {
        generation: next_generation(read),
        ..front_of(first, complete)
    };
    match store.set(&key, &encode(&front), Some(cas)) {
        Ok(()) | Err(StoreError::CasMismatch) => Ok(()),
        Err(error) => Err(WriteError::host(&key, error)),
    }
}

fn front_of(first: &[(&str, u64)], complete: bool) -> Front {
    Front {
        complete: complete && first.len() <= FRONT,
        lines: first
            .iter()
            .take(FRONT)
            .map(|&(email, ms)| (email.to_string(), ms))
            .collect(),
        generation: 0,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::directory::replica::{self, list_page, retab, write_lists, Known, Parts, Tabs};
    use crate::directory::{CountingStore, Meddling, MemoryStore};

    fn requested(n: u64) -> Known {
        replica::numbered(Status::Requested, n)
    }

    fn emails(range: impl DoubleEndedIterator<Item = u64>) -> Vec<String> {
        range.rev().map(|i| format!("dev{i:05}@example.com")).collect()
    }

    #[test]
    fn a_page_within_the_front_is_one_read_and_the_size_another() {
        let store = CountingStore::of("ns/b/");
        write_lists(&store, "ns", &requested(6400), Tabs::ALL, Parts::ALL).unwrap();
        store.reads.set(0);
        let (total, page) = list_page(&store, "ns", Status::Requested, 2, 5, None).unwrap();
        assert_eq!((total, page), (6400, emails(6393..6398)));
        assert_eq!(store.reads.get(), 2, "the front and the counts, no part");
        // Past the front: the parts are merged.
        store.reads.set(0);
        let (_, page) = list_page(&store, "ns", Status::Requested, FRONT, 3, None).unwrap();
        assert_eq!(page, emails(6400 - FRONT as u64 - 3..6400 - FRONT as u64));
        assert!(store.reads.get() > keys::PARTS as usize);
    }

    #[test]
    fn a_front_cleared_by_a_rebuild_of_some_parts_is_rebuilt_by_the_next_page() {
        let store = MemoryStore::default();
        let known = requested(300);
        write_lists(&store, "ns", &known, Tabs::ALL, Parts::ALL).unwrap();
        write_lists(&store, "ns", &known, Tabs::ALL, Parts::one(3)).unwrap();
        let cleared = read(&store, "ns", Status::Requested).unwrap().0.unwrap();
        assert!(!cleared.complete && cleared.lines.is_empty());
        let (_, page) = list_page(&store, "ns", Status::Requested, 0, 4, None).unwrap();
        assert_eq!(page, emails(296..300));
        let front = read(&store, "ns", Status::Requested).unwrap().0.unwrap();
        assert_eq!(front.lines.len(), FRONT);
        assert!(!front.complete);
    }

    #[test]
    fn a_rebuild_that_an_edit_overtook_is_not_written() {
        let last = keys::PARTS - 1;
        let store = Meddling::before_read(&keys::tab("ns", Some(Status::Requested), last));
        write_lists(&store, "ns", &requested(300), Tabs::ALL, Parts::ALL).unwrap();
        clear(&store, "ns", Status::Requested).unwrap();
        // While the page merges the parts, after it read the new developer's
        // part and before the last, a developer registers: the page misses
        // it, and its edit of the (empty) front changes no line.
        let new = (0..)
            .map(|i| format!("new{i}@example.com"))
            .find(|email| keys::part_of(email) < last)
            .unwrap();
        let registers = new.clone();
        store.meddle(move |inner: &MemoryStore| {
            retab(inner, "ns", &registers, None, Some((Status::Requested, 5000))).unwrap()
        });
        let (_, page) = list_page(&store, "ns", Status::Requested, 0, 2, None).unwrap();
        assert!(store.meddled());
        assert_eq!(page, emails(298..300), "read before the registration");
        // That page's front was not written: the next page sees the registration.
        let (_, page) = list_page(&store, "ns", Status::Requested, 0, 2, None).unwrap();
        assert_eq!(page.first(), Some(&new), "{page:?}");
    }

    #[test]
    fn edits_keep_the_front_the_tabs_first_lines() {
        let store = MemoryStore::default();
        write_lists(&store, "ns", &requested(20), Tabs::ALL, Parts::ALL).unwrap();
        let front = || read(&store, "ns", Status::Requested).unwrap().0.unwrap();
        assert_eq!(front().lines.len(), FRONT);
        // An older change than the front's last line stays out of a partial front.
        retab(&store, "ns", "old@example.com", None, Some((Status::Requested, 1))).unwrap();
        assert!(!front().lines.iter().any(|(email, _)| email == "old@example.com"));
        // The newest enters first; the front is cut back.
        retab(&store, "ns", "new@example.com", None, Some((Status::Requested, 99))).unwrap();
        assert_eq!(front().lines.first().unwrap().0, "new@example.com");
        assert_eq!(front().lines.len(), FRONT);
        // Leaving shortens it; it stays the first lines.
        retab(
            &store,
            "ns",
            "new@example.com",
            Some(Status::Requested),
            Some((Status::Approved, 100)),
        )
        .unwrap();
        assert_eq!(front().lines.len(), FRONT - 1);
        assert_eq!(front().lines.first().unwrap().0, "dev00019@example.com");
        // A complete front (a short tab) takes any line.
        assert!(front_of(&[("a@x.io", 5)], true).complete);
        let approved = read(&store, "ns", Status::Approved).unwrap().0.unwrap();
        assert!(approved.complete);
        retab(&store, "ns", "late@example.com", None, Some((Status::Approved, 0))).unwrap();
        let approved = read(&store, "ns", Status::Approved).unwrap().0.unwrap();
        assert_eq!(approved.lines.last().unwrap().0, "late@example.com");
    }

    #[test]
    fn unreadable_fronts_read_as_absent() {
        for value in [&b""[..], b"x\n", b"c\n", b"c1\nno-time\n", b"p1"] {
            assert_eq!(parse(value), None, "{value:?}");
        }
        let front = Front {
            complete: false,
            lines: vec![("a;b@x.io".into(), 7), ("c@x.io".into(), 6)],
            generation: 41,
        };
        assert_eq!(parse(&encode(&front)), Some(front));
    }
}
