//! The gateway's replica of the durable directory, in proxy-wasm shared data.
//!
//! Per developer the replica holds only the one-read hot-path record of
//! `directory` (a line in its bucket): status, revision, an approval's end. A
//! developer's document (metadata, history) stays in etcd, where the admin API
//! reads it. Beside the records:
//! - the tabs: each status's e-mails with the time of their last change,
//!   newest first (the order etcd cannot give: the admin API pages through
//!   these), and a list of the keys under the prefix that are not readable
//!   developers; together, every e-mail the replica holds, so a full sync can
//!   find what disappeared (shared data cannot be enumerated). Each is cut in
//!   `keys::PARTS` parts by the e-mail (`keys::tab`): a change edits a part
//!   (and the list's counts, `tab_counts`); a page merges the parts' heads;
//! - `<ns>/sync`: the etcd revision the replica reflects and when it last agreed;
//! - the list of every approval with an end (`keys::expiring`, in parts too),
//!   for the admin API. The syncer
//!   writes it from what it knows, once a cycle (`write_expiring`,
//!   `edit_expiring`), never per record: a full sync of a million approvals
//!   with ends would otherwise rewrite a list of a million lines a million
//!   times. A gateway's own change adds its line at once (`apply`).
//!
//! Writes of one developer are monotonic in the etcd revision: the syncer and an
//! admin request acting on the same developer may race, and the newer revision
//! must win whichever lands last.

use crate::directory::developer::Developer;
use crate::directory::{
    keys, tab_counts, tab_front, update, write_record_unless, Record, SharedStore, Status, WriteError, WriteOutcome,
};

/// What etcd says about one developer.
#[derive(Debug, Clone, Copy)]
pub enum Entry<'a> {
    Present(&'a Developer),
    Deleted,
    /// The stored value cannot be read: the gate fails closed for this developer.
    Unreadable,
}

/// The value at `key`, empty when absent.
fn read_value(store: &dyn SharedStore, key: &str) -> Result<Vec<u8>, WriteError> {
    Ok(store
        .get(key)
        .map_err(|e| WriteError::host(key, e))?
        .map(|(bytes, _)| bytes)
        .unwrap_or_default())
}

/// How `apply_with` treats a replica that holds a newer revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// Keep it: the usual case, where a late answer must not undo a newer change.
    Monotonic,
    /// Replace it: etcd went back in time (restored from a backup, or a new
    /// cluster), so its revisions are lower and still the truth.
    Overwrite,
}

/// Records one developer at `revision`, as this gateway's own change (an
/// admin request, an approval's end): the record, and its line in
/// the list of ends at once. Returns whether anything changed.
pub fn apply(
    store: &dyn SharedStore,
    namespace: &str,
    email: &str,
    revision: u64,
    entry: Entry<'_>,
) -> Result<bool, WriteError> {
    let record = record_of(entry, revision);
    let (written, replaced) = write(store, namespace, email, record, WriteMode::Monotonic)?;
    // The list of ends is read and scanned only when the approval's end changed.
    if written && expiry_of(replaced) != expiry_of(Some(record)) {
        note_expiry(store, namespace, email, expiry_of(Some(record)))?;
    }
    Ok(written)
}

/// Records one developer at `revision`, as the syncer does: the record only
/// (the syncer keeps the list of ends from what it knows). Returns whether
/// anything changed.
pub fn apply_with(
    store: &dyn SharedStore,
    namespace: &str,
    email: &str,
    revision: u64,
    entry: Entry<'_>,
    mode: WriteMode,
) -> Result<bool, WriteError> {
    apply_record(store, namespace, email, record_of(entry, revision), mode)
}

/// Records one developer's `record` as it stands (a snapshot's line), as
/// `apply_with` does.
pub fn apply_record(
    store: &dyn SharedStore,
    namespace: &str,
    email: &str,
    record: Record,
    mode: WriteMode,
) -> Result<bool, WriteError> {
    Ok(write(store, namespace, email, record, mode)?.0)
}

fn record_of(entry: Entry<'_>, revision: u64) -> Record {
    match entry {
        Entry::Present(developer) => Record::present(developer.status, revision, developer.approval_expires_ms),
        Entry::Deleted => Record::Deleted { revision },
        Entry::Unreadable => Record::Unreadable { revision },
    }
}

/// Writes `record` unless it is there, or (`Monotonic`) a newer one is; returns
/// whether it was written and the record it replaced, if one was stored.
fn write(
    store: &dyn SharedStore,
    namespace: &str,
    email: &str,
    record: Record,
    mode: WriteMode,
) -> Result<(bool, Option<Record>), WriteError> {
    let revision = record.revision();
    // What was stored is kept aside (the closure sees it whenever a different
    // record is stored).
    let replaced = std::cell::Cell::new(None);
    let keep = |stored: &Record| {
        replaced.set(Some(*stored));
        mode == WriteMode::Monotonic && stored.revision() > revision
    };
    let written = write_record_unless(store, namespace, email, &record, keep)? == WriteOutcome::Written;
    Ok((written, replaced.get()))
}

fn expiry_of(record: Option<Record>) -> Option<u64> {
    match record {
        Some(Record::Present { expires_ms, .. }) => expires_ms,
        _ => None,
    }
}

/// Keeps the list of ends (`email;ms` lines: every approval with an end) in
/// step with one developer whose end changed. Read first, written only on a
/// change.
fn note_expiry(
    store: &dyn SharedStore,
    namespace: &str,
    email: &str,
    expires_ms: Option<u64>,
) -> Result<(), WriteError> {
    let key = keys::expiring(namespace, keys::part_of(email));
    let mut line = Vec::new();
    if let Some(ms) = expires_ms {
        push_line(&mut line, email, ms);
    }
    update(store, &key, |current| {
        let current = current.unwrap_or_default();
        let lines = current.split_inclusive(|&b| b == b'\n');
        if !line.is_empty() && lines.clone().any(|l| l == line.as_slice()) {
            return None;
        }
        let mut next = Vec::with_capacity(current.len() + line.len());
        for kept in lines.filter(|&l| split_line(l).0 != email.as_bytes()) {
            next.extend_from_slice(kept);
            if !kept.ends_with(b"\n") {
                next.push(b'\n');
            }
        }
        next.extend_from_slice(&line);
        Some(next)
    })?;
    Ok(())
}

/// Every approval with an end: (email, end), soonest first.
pub fn expiring(store: &dyn SharedStore, namespace: &str) -> Result<Vec<(String, u64)>, WriteError> {
    expiring_where(store, namespace, |_, _| true)
}

/// The approvals with an end that `keep(email, end)` takes, soonest first.
/// The parts are read one at a time and only those kept (at ten million
/// developers the list can hold millions).
pub fn expiring_where(
    store: &dyn SharedStore,
    namespace: &str,
    keep: impl Fn(&str, u64) -> bool,
) -> Result<Vec<(String, u64)>, WriteError> {
    let mut kept: Vec<(String, u64)> = Vec::new();
    for part in 0..keys::PARTS {
        let bytes = read_value(store, &keys::expiring(namespace, part))?;
        kept.extend(bytes.split(|&b| b == b'\n').filter_map(|line| {
            match split_line(line) {
                (email, Some(ms)) => std::str::from_utf8(email)
                    .ok()
                    .filter(|email| keep(email, ms))
                    .map(|email| (email.to_string(), ms)),
                (_, None) => None,
            }
        }));
    }
    kept.sort_unstable_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
    Ok(kept)
}

fn expiring_line(text: &mut Vec<u8>, email: &str, listed: &Listed) {
    if let Some(ms) = listed.expires_ms.filter(|_| listed.status == Some(Status::Approved)) {
        push_line(text, email, ms);
    }
}

/// Rewrites the list of ends (each part only if it changed) from what the
/// syncer knows: after a full sync, or a cycle that changed many ends. One
/// pass over `known`.
pub fn write_expiring(store: &dyn SharedStore, namespace: &str, known: &Known) -> Result<(), WriteError> {
    let mut parts: Vec<Vec<u8>> = (0..keys::PARTS).map(|_| Vec::new()).collect();
    for (email, listed) in known.iter() {
        if listed.expires_ms.is_some() {
            if let Some(part) = parts.get_mut(keys::part_of(email) as usize) {
                expiring_line(part, email, &listed);
            }
        }
    }
    for (part, text) in (0..keys::PARTS).zip(&parts) {
        crate::directory::write_if_different(store, &keys::expiring(namespace, part), text)?;
    }
    Ok(())
}

/// The most developers `edit_expiring` edits; a cycle that changed more ends
/// rewrites the list (`write_expiring`).
pub const ENDS_BY_EDIT: usize = 16;

/// Gives the developers in `changed` (at most `ENDS_BY_EDIT`) the line in
/// the list of ends that `known` says, or none: one pass over each part they
/// are in.
pub fn edit_expiring(
    store: &dyn SharedStore,
    namespace: &str,
    known: &Known,
    changed: &[String],
) -> Result<(), WriteError> {
    let mut by_part: Vec<(u32, &str)> = changed
        .iter()
        .map(|email| (keys::part_of(email), email.as_str()))
        .collect();
    by_part.sort_unstable();
    for group in by_part.chunk_by(|a, b| a.0 == b.0) {
        let Some(&(part, _)) = group.first() else { continue };
        let emails: Vec<&str> = group.iter().map(|&(_, email)| email).collect();
        update(store, &keys::expiring(namespace, part), |current| {
            let current = current.unwrap_or_default();
            let mut next = Vec::with_capacity(current.len() + 40 * emails.len());
            for line in current.split_inclusive(|&b| b == b'\n') {
                let (email, _) = split_line(line);
                if !emails.iter().any(|changed| changed.as_bytes() == email) {
                    next.extend_from_slice(line);
                    if !line.ends_with(b"\n") {
                        next.push(b'\n');
                    }
                }
            }
            for email in &emails {
                if let Some(listed) = known.get(email) {
                    expiring_line(&mut next, email, &listed);
                }
            }
            Some(next)
        })?;
    }
    Ok(())
}

/// Every developer key the syncer knows of, by e-mail, with what the tabs need.
///
/// The syncer's worker holds one entry per developer, so the layout is about
/// memory: the e-mails back to back in one string (no allocation each, which
/// cost about 30 bytes apiece), and a sorted vector of 16-byte entries
/// pointing into it (a tree built in key order, as a full sync's pages are,
/// leaves its nodes half full). A full sync appends; a change in between
/// inserts in place (a copy of the tail, milliseconds at a million
/// developers). A removal leaves its bytes behind until they are half the
/// string, which is then rebuilt.
#[derive(Debug, Default, Clone)]
pub struct Known {
    names: String,
    entries: Vec<KnownEntry>,
    /// Bytes of `names` no entry points to.
    garbage: usize,
    /// No approval ends before this (0: not known; `ended_by` finds out).
    soonest_end: u64,
}

#[derive(Debug, Clone, Copy)]
struct KnownEntry {
    updated_ms: u64,
    /// An approval's end, `NO_END` without one.
    expires_ms: u64,
    start: u32,
    /// The name's length, and in the top bits the status (`STATUS_SHIFT`).
    len_and_status: u32,
}

const NO_END: u64 = u64::MAX;

const STATUS_SHIFT: u32 = 28;
const LEN_MASK: u32 = (1 << STATUS_SHIFT) - 1;

impl KnownEntry {
    fn listed(self) -> Listed {
        let code = self.len_and_status >> STATUS_SHIFT;
        Listed {
            status: usize::try_from(code)
                .ok()
                .and_then(|code| code.checked_sub(1))
                .and_then(|i| Status::ALL.get(i).copied()),
            updated_ms: self.updated_ms,
            expires_ms: Some(self.expires_ms).filter(|&ms| ms != NO_END),
        }
    }

    fn set_listed(&mut self, listed: &Listed) {
        let code = listed
            .status
            .and_then(|status| Status::ALL.iter().position(|&s| s == status))
            .map_or(0, |i| i as u32 + 1);
        self.len_and_status = self.len_and_status & LEN_MASK | code << STATUS_SHIFT;
        self.updated_ms = listed.updated_ms;
        self.expires_ms = listed.expires_ms.unwrap_or(NO_END);
    }
}

impl PartialEq for Known {
    fn eq(&self, other: &Known) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for Known {}

impl Known {
    pub fn new() -> Known {
        Known::default()
    }

    /// Room for `n` developers and some growth, if the memory is there (`n`
    /// comes from etcd's answer: an absurd one reserves nothing). Capacity
    /// never written costs no memory; reallocating the whole costs it twice.
    pub fn reserve_for(&mut self, n: usize) {
        let wanted = n
            .saturating_add(n / 8)
            .saturating_add(64)
            .saturating_sub(self.entries.len());
        let _ = self.entries.try_reserve_exact(wanted);
        // About 24 bytes an address.
        let _ = self.names.try_reserve_exact(wanted.saturating_mul(24));
    }

    fn name(&self, entry: &KnownEntry) -> &str {
        let start = entry.start as usize;
        let end = start + (entry.len_and_status & LEN_MASK) as usize;
        self.names.get(start..end).unwrap_or_default()
    }

    fn position(&self, email: &str) -> Result<usize, usize> {
        self.entries.binary_search_by(|entry| self.name(entry).cmp(email))
    }

    /// Records `email`; returns what was known of it before.
    pub fn insert(&mut self, email: impl AsRef<str>, listed: Listed) -> Option<Listed> {
        let email = email.as_ref();
        self.soonest_end = self.soonest_end.min(listed.expires_ms.unwrap_or(NO_END));
        let at = match self.entries.last() {
            Some(last) if self.name(last) >= email => match self.position(email) {
                Ok(found) => {
                    let entry = self.entries.get_mut(found)?;
                    let previous = entry.listed();
                    entry.set_listed(&listed);
                    return Some(previous);
                }
                Err(at) => at,
            },
            _ => self.entries.len(),
        };
        // Names longer than `LEN_MASK` (256 MB) or past 4 GB of names cannot
        // come from etcd (its keys are at most a few MB) nor fit in wasm32.
        let (Ok(start), Ok(len)) = (u32::try_from(self.names.len()), u32::try_from(email.len())) else {
            return None;
        };
        if len > LEN_MASK {
            return None;
        }
        self.names.push_str(email);
        let mut entry = KnownEntry {
            updated_ms: 0,
            expires_ms: NO_END,
            start,
            len_and_status: len,
        };
        entry.set_listed(&listed);
        self.entries.insert(at, entry);
        None
    }

    pub fn remove(&mut self, email: &str) -> Option<Listed> {
        let found = self.position(email).ok()?;
        let entry = self.entries.remove(found);
        self.garbage += (entry.len_and_status & LEN_MASK) as usize;
        if self.garbage > 4096 && self.garbage > self.names.len() / 2 {
            self.compact();
        }
        Some(entry.listed())
    }

    /// Rebuilds `names` without the bytes no entry points to.
    fn compact(&mut self) {
        let mut names = String::with_capacity(self.names.len() - self.garbage);
        for entry in &mut self.entries {
            let start = entry.start as usize;
            let end = start + (entry.len_and_status & LEN_MASK) as usize;
            entry.start = names.len() as u32;
            names.push_str(self.names.get(start..end).unwrap_or_default());
        }
        self.names = names;
        self.garbage = 0;
    }

    /// The approvals whose end is at or before `by_ms`, soonest first. A pass
    /// over every developer, made only once the soonest end has come.
    pub fn ended_by(&mut self, by_ms: u64) -> Vec<(String, u64)> {
        if by_ms < self.soonest_end {
            return Vec::new();
        }
        let mut soonest = NO_END;
        let mut ended = Vec::new();
        for entry in &self.entries {
            let listed = entry.listed();
            let Some(ms) = listed.expires_ms.filter(|_| listed.status == Some(Status::Approved)) else {
                continue;
            };
            soonest = soonest.min(ms);
            if ms <= by_ms {
                ended.push((self.name(entry).to_string(), ms));
            }
        }
        self.soonest_end = soonest;
        ended.sort_unstable_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
        ended
    }

    pub fn contains_key(&self, email: &str) -> bool {
        self.position(email).is_ok()
    }

    pub fn get(&self, email: &str) -> Option<Listed> {
        let found = self.position(email).ok()?;
        self.entries.get(found).map(|entry| entry.listed())
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, Listed)> {
        self.entries.iter().map(|entry| (self.name(entry), entry.listed()))
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|entry| self.name(entry))
    }

    /// The developers after `after` (all of them for `None`), in order.
    pub fn after(&self, after: Option<&str>) -> impl Iterator<Item = (&str, Listed)> {
        let start = after.map_or(0, |after| {
            self.entries.partition_point(|entry| self.name(entry) <= after)
        });
        self.entries
            .get(start..)
            .unwrap_or_default()
            .iter()
            .map(|entry| (self.name(entry), entry.listed()))
    }

    /// The e-mails in `[from, to)` (`to` `None`: to the end); none when the
    /// range is reversed.
    pub fn range(&self, from: &str, to: Option<&str>) -> impl Iterator<Item = &str> {
        let start = self.entries.partition_point(|entry| self.name(entry) < from);
        let end = to.map_or(self.entries.len(), |to| {
            self.entries.partition_point(|entry| self.name(entry) < to)
        });
        self.entries
            .get(start..end.max(start))
            .unwrap_or_default()
            .iter()
            .map(|entry| self.name(entry))
    }
}

/// `n` developers of `status`, `dev00000@example.com` and on, the later the
/// newer (updated at `i` ms): for tests of the tabs.
#[cfg(test)]
pub fn numbered(status: Status, n: u64) -> Known {
    let mut known = Known::new();
    for i in 0..n {
        known.insert(format!("dev{i:05}@example.com"), Listed::new(Some(status), i, None));
    }
    known
}

/// What the syncer knows of a developer: its place in the tabs, and an
/// approval's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listed {
    /// `None`: a key under the prefix that is not a readable developer. It is
    /// counted (etcd counts it) but listed in no tab.
    pub status: Option<Status>,
    pub updated_ms: u64,
    /// When an approval ends (Unix ms): only approvals have one. Not a tab's
    /// concern: the list of ends has them (`write_expiring`).
    pub expires_ms: Option<u64>,
}

impl Listed {
    pub fn new(status: Option<Status>, updated_ms: u64, expires_ms: Option<u64>) -> Listed {
        Listed {
            status,
            updated_ms,
            expires_ms: expires_ms.filter(|_| status == Some(Status::Approved)),
        }
    }

    /// A key that is not a readable developer.
    pub fn unreadable() -> Listed {
        Listed::new(None, 0, None)
    }

    /// Whether `other` puts the developer in the same place in the tabs.
    pub fn same_place(&self, other: &Listed) -> bool {
        self.status == other.status && self.updated_ms == other.updated_ms
    }
}

/// A set of lists to rewrite: one bit per status (in `Status::ALL` order), and
/// one for the keys that are not readable developers.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tabs(u8);

const UNREADABLE_BIT: u8 = 1 << 4;

impl Tabs {
    pub const ALL: Tabs = Tabs(0b1_1111);

    fn bit(status: Option<Status>) -> u8 {
        match status.and_then(|s| Status::ALL.iter().position(|&t| t == s)) {
            Some(position) => 1 << position,
            None => UNREADABLE_BIT,
        }
    }

    pub fn add(&mut self, status: Option<Status>) {
        self.0 |= Tabs::bit(status);
    }

    pub fn contains(self, status: Option<Status>) -> bool {
        self.0 & Tabs::bit(status) != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn union(self, other: Tabs) -> Tabs {
        Tabs(self.0 | other.0)
    }

    pub fn only(status: Option<Status>) -> Tabs {
        Tabs(Tabs::bit(status))
    }

    /// The lists these tabs name: `Some(status)` a tab, `None` the unreadable list.
    pub fn lists(self) -> impl Iterator<Item = Option<Status>> {
        Status::ALL
            .into_iter()
            .map(Some)
            .chain([None])
            .filter(move |&status| self.contains(status))
    }
}

/// A set of the `keys::PARTS` parts of the lists, one bit each.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Parts(u64);

// One bit per part.
const _: () = assert!(keys::PARTS == u64::BITS);

impl Parts {
    pub const ALL: Parts = Parts(u64::MAX);

    pub fn one(part: u32) -> Parts {
        Parts(1u64.checked_shl(part).unwrap_or(0))
    }

    /// Adds the part that lists `email`.
    pub fn add(&mut self, email: &str) {
        *self = self.union(Parts::one(keys::part_of(email)));
    }

    pub fn contains(self, part: u32) -> bool {
        self.0 & Parts::one(part).0 != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn union(self, other: Parts) -> Parts {
        Parts(self.0 | other.0)
    }
}

/// Appends the line `email;ms`: a tab's (`ms` the last status change) or the
/// list of ends' (`ms` the end).
pub(super) fn push_line(out: &mut Vec<u8>, email: &str, ms: u64) {
    out.extend_from_slice(email.as_bytes());
    out.push(b';');
    out.extend_from_slice(ms.to_string().as_bytes());
    out.push(b'\n');
}

/// A line's e-mail and number (`None` if it is not one), split at the last
/// `;` (a key that is not a readable developer may hold one).
pub(super) fn split_line(line: &[u8]) -> (&[u8], Option<u64>) {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let email = line_email(line);
    let ms = line
        .get(email.len() + 1..)
        .and_then(|ms| std::str::from_utf8(ms).ok())
        .and_then(|ms| ms.parse().ok());
    (email, ms)
}

/// A line's e-mail alone (what `split_line` gives, without reading the number).
fn line_email(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    match line.iter().rposition(|&b| b == b';') {
        Some(at) => line.get(..at).unwrap_or_default(),
        None => line,
    }
}

/// A part's lines: (e-mail, time; 0 for a line without one).
fn lines_of(part: &[u8]) -> impl Iterator<Item = (&[u8], u64)> {
    part.split(|&b| b == b'\n')
        .filter(|line| !line.is_empty())
        .map(split_line)
        .map(|(email, ms)| (email, ms.unwrap_or(0)))
}

/// Moves `email` from the `from` tab to the front of the `to` tab, given the
/// time of its change (either may be `None`: a registration, a deletion), so a
/// change this gateway made shows in its tabs at once instead of after the
/// next sync. Only the part that lists `email` is edited. The syncer's next
/// edit of the tabs agrees with it (or, if it raced, restores the move a cycle
/// later).
pub fn retab(
    store: &dyn SharedStore,
    namespace: &str,
    email: &str,
    from: Option<Status>,
    to: Option<(Status, u64)>,
) -> Result<(), WriteError> {
    let part = keys::part_of(email);
    if let Some(from) = from.filter(|&from| Some(from) != to.map(|(to, _)| to)) {
        let leaving = Moves {
            leaving: &[email],
            entering: &[],
        };
        edit_part(store, namespace, Some(from), part, leaving, |tab| {
            Some(without_lines(tab?, &[email]))
        })?;
    }
    if let Some((to, updated_ms)) = to {
        let entering = Moves {
            leaving: &[],
            entering: &[(email, updated_ms)],
        };
        edit_part(store, namespace, Some(to), part, entering, |tab| {
            Some(in_front(
                &[(email, updated_ms)],
                &without_lines(tab.unwrap_or_default(), &[email]),
            ))
        })?;
    }
    Ok(())
}

/// Who an edit of a part moves: the developers that leave the list, and those
/// that enter it (e-mail, time of the change).
struct Moves<'a> {
    leaving: &'a [&'a str],
    entering: &'a [(&'a str, u64)],
}

/// Edits one part of a list as `update` does (`change` gives the part's new
/// bytes, or `None` to leave it), and keeps what is kept beside the parts
/// right: the list's counts, and a tab's front (the same `moves`).
fn edit_part(
    store: &dyn SharedStore,
    namespace: &str,
    list: Option<Status>,
    part: u32,
    moves: Moves<'_>,
    change: impl Fn(Option<&[u8]>) -> Option<Vec<u8>>,
) -> Result<(), WriteError> {
    let before = tab_counts::before_edit(store, namespace, list)?;
    // The lines of what the last attempt stored.
    let lines = std::cell::Cell::new(None);
    update(store, &keys::tab(namespace, list, part), |current| {
        let next = change(current);
        lines.set(next.as_deref().map(tab_counts::lines_in));
        next
    })?;
    let Some(lines) = lines.get() else {
        return Ok(());
    };
    tab_counts::after_edit(store, namespace, list, before, &[(part, lines)])?;
    match list {
        Some(status) => tab_front::edit(store, namespace, status, moves.leaving, moves.entering),
        None => Ok(()),
    }
}

/// `tab` (lines, each ending in `\n`) without the lines of `emails`. One pass
/// over the part.
fn without_lines(tab: &[u8], emails: &[&str]) -> Vec<u8> {
    let mut kept = Vec::with_capacity(tab.len());
    for line in tab.split_inclusive(|&b| b == b'\n') {
        let (name, _) = split_line(line);
        if !emails.iter().any(|email| email.as_bytes() == name) {
            kept.extend_from_slice(line);
        }
    }
    kept
}

/// `first` (a line each), then `rest`.
fn in_front(first: &[(&str, u64)], rest: &[u8]) -> Vec<u8> {
    let mut next = Vec::with_capacity(first.iter().map(|(email, _)| email.len() + 16).sum::<usize>() + rest.len());
    for &(email, ms) in first {
        push_line(&mut next, email, ms);
    }
    next.extend_from_slice(rest);
    next
}

/// The most developers `move_in_lists` moves by editing; a cycle that changed
/// more rebuilds the parts it touched.
pub const MOVES_BY_EDIT: usize = 16;

/// Moves `moved` (developers whose listing changed, at most `MOVES_BY_EDIT`)
/// within the lists of `tabs`: each leaves every one of them and enters the one
/// `known` now gives it, at the front of its part. That is what `write_lists`
/// would build as long as they all sort ahead of the part's first line (a
/// change is usually the newest); a part where one would not is rebuilt.
/// Returns the parts edited.
///
/// Why: rebuilding sorts, and even an edit is a pass over the bytes, during
/// which the syncer's worker serves nothing; a part is a 64th of a tab.
pub fn move_in_lists(
    store: &dyn SharedStore,
    namespace: &str,
    known: &Known,
    moved: &[String],
    tabs: Tabs,
) -> Result<Parts, WriteError> {
    let mut by_part: Vec<(u32, &str)> = moved
        .iter()
        .map(|email| (keys::part_of(email), email.as_str()))
        .collect();
    by_part.sort_unstable();
    by_part.dedup();
    let mut edited = Parts::default();
    for group in by_part.chunk_by(|a, b| a.0 == b.0) {
        let Some(&(part, _)) = group.first() else { continue };
        edited = edited.union(Parts::one(part));
        let leaving: Vec<&str> = group.iter().map(|&(_, email)| email).collect();
        for status in tabs.lists() {
            let mut entering: Vec<(&str, u64)> = leaving
                .iter()
                .filter_map(|&email| {
                    let listed = known.get(email)?;
                    (listed.status == status).then_some((email, listed.updated_ms))
                })
                .collect();
            entering.sort_unstable_by(|a, b| tab_order(*a, *b));
            let refused = std::cell::Cell::new(false);
            let moves = Moves {
                leaving: &leaving,
                entering: &entering,
            };
            edit_part(store, namespace, status, part, moves, |tab| {
                if tab.is_none() && entering.is_empty() {
                    return None;
                }
                let rest = without_lines(tab.unwrap_or_default(), &leaving);
                // The last to enter must still sort ahead of the first that stays.
                if let (Some(&last), Some(first)) = (entering.last(), rest.split(|&b| b == b'\n').next()) {
                    let ahead = first.is_empty()
                        || match split_line(first) {
                            (email, Some(ms)) => std::str::from_utf8(email)
                                .is_ok_and(|email| tab_order(last, (email, ms)) == std::cmp::Ordering::Less),
                            (_, None) => false,
                        };
                    if !ahead {
                        refused.set(true);
                        return None;
                    }
                }
                Some(in_front(&entering, &rest))
            })?;
            if refused.get() {
                write_lists(store, namespace, known, Tabs::only(status), Parts::one(part))?;
            }
        }
    }
    Ok(edited)
}

/// A tab's order: newest status change first, ties by e-mail.
pub(super) fn tab_order(a: (&str, u64), b: (&str, u64)) -> std::cmp::Ordering {
    b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0))
}

/// Rewrites the `parts` of the lists of `tabs` (each only if it changed):
/// newest status change first, ties by e-mail. Building a part sorts it, so
/// only the parts a change touched are rebuilt.
///
/// Together the lists name every developer key the replica holds a record for
/// (the unreadable ones in the `None` list): a full sync tombstones whatever
/// they name and etcd no longer has (shared data cannot be enumerated).
pub fn write_lists(
    store: &dyn SharedStore,
    namespace: &str,
    developers: &Known,
    tabs: Tabs,
    parts: Parts,
) -> Result<(), WriteError> {
    for status in tabs.lists() {
        let before = tab_counts::before_edit(store, namespace, status)?;
        let mut written = Vec::new();
        // With every part: each part's first lines, for the front.
        let mut first = Vec::new();
        let mut lines: Vec<Vec<(&str, u64)>> = (0..keys::PARTS).map(|_| Vec::new()).collect();
        for (email, listed) in developers.iter().filter(|(_, listed)| listed.status == status) {
            let part = keys::part_of(email);
            if let Some(lines) = lines.get_mut(part as usize).filter(|_| parts.contains(part)) {
                lines.push((email, listed.updated_ms));
            }
        }
        for (part, mut tab) in (0..keys::PARTS).zip(lines) {
            if !parts.contains(part) {
                continue;
            }
            tab.sort_unstable_by(|a, b| tab_order(*a, *b));
            let mut text = Vec::with_capacity(tab.len() * 40);
            written.push((part, tab.len()));
            if parts == Parts::ALL {
                first.extend(tab.iter().take(tab_front::FRONT).copied());
            }
            for (email, ms) in tab {
                push_line(&mut text, email, ms);
            }
            crate::directory::write_if_different(store, &keys::tab(namespace, status, part), &text)?;
        }
        // Every part written above, even those that were already right: a
        // count a writer that died left wrong is put right here.
        tab_counts::after_edit(store, namespace, status, before, &written)?;
        if let Some(status) = status {
            if parts == Parts::ALL {
                let lines: usize = written.iter().map(|&(_, lines)| lines).sum();
                first.sort_unstable_by(|a, b| tab_order(*a, *b));
                tab_front::write(store, namespace, status, &first, lines <= tab_front::FRONT)?;
            } else {
                tab_front::clear(store, namespace, status)?;
            }
        }
    }
    Ok(())
}

/// One page of a tab, newest change first, and the tab's size (of the
/// developers whose e-mail holds `containing`, if given): the parts merged.
///
/// A page takes at most its first `offset + limit` lines from each part, so
/// the parts are read one at a time and only those lines kept: what is held
/// at once is one part and the heads, not the tab (tens of MB at ten million
/// developers). Without a search, nothing past the heads is looked at and the
/// size is the tab's counts; a search tests every line.
pub fn list_page(
    store: &dyn SharedStore,
    namespace: &str,
    status: Status,
    offset: usize,
    limit: usize,
    containing: Option<&str>,
) -> Result<(usize, Vec<String>), WriteError> {
    use std::cmp::Reverse;
    let wanted = offset.saturating_add(limit);
    // Without a search, a page within the tab's front is one read (and the
    // size, the counts' one).
    let mut rebuild = None;
    if containing.is_none() {
        match tab_front::read(store, namespace, status)? {
            (Some(front), _) if front.serves(wanted) => {
                let page = front.lines.into_iter().skip(offset).take(limit).map(|(email, _)| email);
                return Ok((tab_counts::size(store, namespace, Some(status))?, page.collect()));
            }
            // A front that is there (so the tabs were written) but too short:
            // the merge below writes it again, if nothing edited it meanwhile.
            (front, Some(cas)) if wanted <= tab_front::FRONT => rebuild = Some((front, cas)),
            _ => {}
        }
    }
    // The lines the merge goes through: the page's, or the front's.
    let through = if rebuild.is_some() { tab_front::FRONT } else { wanted };
    let mut heads = Vec::with_capacity(keys::PARTS as usize);
    let mut total = 0;
    for part in 0..keys::PARTS {
        let bytes = read_value(store, &keys::tab(namespace, Some(status), part))?;
        let (head, matched) = head_of(bytes, containing, through);
        heads.push(head);
        total += matched;
    }
    if containing.is_none() {
        total = tab_counts::size(store, namespace, Some(status))?;
    }
    let mut cursors: Vec<_> = heads.iter().map(|head| lines_of(head)).collect();
    // Each part's head; the heap's greatest is the newest, ties by e-mail.
    let mut next = std::collections::BinaryHeap::new();
    for (at, cursor) in cursors.iter_mut().enumerate() {
        if let Some((email, ms)) = cursor.next() {
            next.push((ms, Reverse(email), at));
        }
    }
    let mut merged = Vec::with_capacity(through.min(total));
    while merged.len() < through {
        let Some((ms, Reverse(email), at)) = next.pop() else {
            break;
        };
        merged.push((String::from_utf8_lossy(email), ms));
        if let Some((email, ms)) = cursors.get_mut(at).and_then(Iterator::next) {
            next.push((ms, Reverse(email), at));
        }
    }
    if let Some(read) = rebuild {
        let first: Vec<(&str, u64)> = merged.iter().map(|(email, ms)| (email.as_ref(), *ms)).collect();
        tab_front::rebuilt(store, namespace, status, read, &first, merged.len() < through)?;
    }
    let page = merged
        .into_iter()
        .skip(offset)
        .take(limit)
        .map(|(email, _)| email.into_owned())
        .collect();
    Ok((total, page))
}

/// The first `keep` lines of `part` whose e-mail holds `containing` (any
/// line for `None`), and how many lines hold it in all (for `None`: not
/// counted, 0).
fn head_of(mut part: Vec<u8>, containing: Option<&str>, keep: usize) -> (Vec<u8>, usize) {
    let Some(wanted) = containing else {
        let end = part
            .iter()
            .enumerate()
            .filter(|&(_, &b)| b == b'\n')
            .nth(keep.saturating_sub(1))
            .map_or(part.len(), |(at, _)| at + 1);
        part.truncate(if keep == 0 { 0 } else { end });
        part.shrink_to_fit();
        return (part, 0);
    };
    let mut head = Vec::new();
    let mut matched = 0;
    let mut take = |line: &[u8]| {
        if matched < keep {
            head.extend_from_slice(line);
        }
        matched += 1;
    };
    match std::str::from_utf8(&part) {
        // One searcher over the whole part, from match to match: most lines
        // do not match, and a searcher per line (as `str::contains` makes)
        // cost a tenth of a second per 2.5M lines. No line holds a newline.
        Ok(text) if !wanted.is_empty() && !wanted.contains('\n') => {
            let mut done_to = 0;
            for (at, _) in text.match_indices(wanted) {
                if at < done_to {
                    continue;
                }
                let start = text
                    .get(..at)
                    .and_then(|before| before.rfind('\n'))
                    .map_or(0, |nl| nl + 1);
                let end = text
                    .get(at..)
                    .and_then(|after| after.find('\n'))
                    .map_or(text.len(), |nl| at + nl + 1);
                done_to = end;
                let line = part.get(start..end).unwrap_or_default();
                // The line's first match: if it is not inside the e-mail, none is.
                if at + wanted.len() <= start + line_email(line).len() {
                    take(line);
                }
            }
        }
        _ => {
            for line in part.split_inclusive(|&b| b == b'\n') {
                if std::str::from_utf8(line_email(line)).is_ok_and(|email| email.contains(wanted)) {
                    take(line);
                }
            }
        }
    }
    (head, matched)
}

/// The developers in the `status` tab: the counts' one read.
pub fn tab_size(store: &dyn SharedStore, namespace: &str, status: Status) -> Result<usize, WriteError> {
    tab_counts::size(store, namespace, Some(status))
}

/// The developer keys one part of a list names (`write_lists`: together, the
/// lists name every key the replica holds a record for).
pub fn listed_in(
    store: &dyn SharedStore,
    namespace: &str,
    list: Option<Status>,
    part: u32,
) -> Result<Vec<String>, WriteError> {
    let bytes = read_value(store, &keys::tab(namespace, list, part))?;
    Ok(lines_of(&bytes)
        .map(|(email, _)| String::from_utf8_lossy(email).into_owned())
        .collect())
}

/// The etcd revision the replica reflects and when that was last confirmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncState {
    pub revision: u64,
    pub synced_at_ms: u64,
}

impl SyncState {
    fn encode(&self) -> Vec<u8> {
        format!("1;{};{}", self.revision, self.synced_at_ms).into_bytes()
    }

    fn decode(bytes: &[u8]) -> Option<SyncState> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut fields = text.split(';');
        if fields.next()? != "1" {
            return None;
        }
        let state = SyncState {
            revision: fields.next()?.parse().ok()?,
            synced_at_ms: fields.next()?.parse().ok()?,
        };
        fields.next().is_none().then_some(state)
    }
}

/// `None` until a first full sync completed (or a static directory was seeded).
pub fn read_sync_state(store: &dyn SharedStore, namespace: &str) -> Option<SyncState> {
    let (bytes, _) = store.get(&keys::sync_state(namespace)).ok()??;
    SyncState::decode(&bytes)
}

pub fn write_sync_state(store: &dyn SharedStore, namespace: &str, state: SyncState) -> Result<(), WriteError> {
    crate::directory::write_if_different(store, &keys::sync_state(namespace), &state.encode()).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::{lookup, Lookup, MemoryStore};

    fn dev(email: &str, status: Status, updated_ms: u64) -> Developer {
        let mut developer = Developer::register(email, status, serde_json::Map::new(), "t", 1);
        developer.updated_ms = updated_ms;
        developer
    }

    #[test]
    fn newer_revisions_win_whatever_the_order() {
        let store = MemoryStore::default();
        let approved = dev("a@x.io", Status::Approved, 1);
        let revoked = dev("a@x.io", Status::Revoked, 2);
        assert!(apply(&store, "ns", "a@x.io", 7, Entry::Present(&revoked)).unwrap());
        // The older state arrives late (e.g. a sync page read before the revoke).
        assert!(!apply(&store, "ns", "a@x.io", 5, Entry::Present(&approved)).unwrap());
        assert_eq!(lookup(&store, "ns", "a@x.io"), Lookup::Found(Status::Revoked));
        // Same revision, same content: nothing to write.
        assert!(!apply(&store, "ns", "a@x.io", 7, Entry::Present(&revoked)).unwrap());
        assert!(apply(&store, "ns", "a@x.io", 9, Entry::Deleted).unwrap());
        assert_eq!(lookup(&store, "ns", "a@x.io"), Lookup::Unknown);
        assert!(apply(&store, "ns", "a@x.io", 10, Entry::Unreadable).unwrap());
        assert_eq!(lookup(&store, "ns", "a@x.io"), Lookup::Unavailable);
    }

    #[test]
    fn known_stays_sorted_whatever_the_order() {
        let listed = |ms| Listed {
            status: Some(Status::Approved),
            updated_ms: ms,
            expires_ms: None,
        };
        let mut known = Known::new();
        known.reserve_for(usize::MAX);
        known.reserve_for(3);
        let unreadable = Listed {
            status: None,
            updated_ms: 9,
            expires_ms: None,
        };
        assert_eq!(known.insert("e/odd", unreadable), None);
        assert_eq!(known.remove("e/odd"), Some(unreadable));
        for (email, ms) in [("b@x.io", 1), ("d@x.io", 2), ("a@x.io", 3), ("c@x.io", 4)] {
            assert_eq!(known.insert(email, listed(ms)), None);
        }
        assert_eq!(known.insert("c@x.io", listed(5)), Some(listed(4)));
        assert_eq!(
            known.keys().collect::<Vec<_>>(),
            ["a@x.io", "b@x.io", "c@x.io", "d@x.io"]
        );
        assert_eq!(known.range("b", Some("d")).collect::<Vec<_>>(), ["b@x.io", "c@x.io"]);
        assert_eq!(known.range("c", None).collect::<Vec<_>>(), ["c@x.io", "d@x.io"]);
        assert_eq!(known.range("d", Some("b")).count(), 0, "a reversed range is empty");
        assert_eq!(known.remove("b@x.io"), Some(listed(1)));
        assert_eq!(known.remove("b@x.io"), None);
        assert!(known.contains_key("a@x.io") && !known.contains_key("b@x.io"));
        assert_eq!(known.len(), 3);
        for status in Status::ALL {
            let listed = Listed {
                status: Some(status),
                updated_ms: u64::MAX,
                expires_ms: None,
            };
            known.insert("a@x.io", listed);
            assert_eq!(known.iter().next(), Some(("a@x.io", listed)));
        }
    }

    #[test]
    fn moving_in_the_lists_builds_what_a_rebuild_would() {
        let mut random = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |bound: u64| {
            random ^= random << 13;
            random ^= random >> 7;
            random ^= random << 17;
            random % bound
        };
        let statuses = [
            None,
            Some(Status::Approved),
            Some(Status::Requested),
            Some(Status::Rejected),
            Some(Status::Revoked),
        ];
        let (edited, rebuilt) = (MemoryStore::default(), MemoryStore::default());
        let mut known = Known::new();
        for i in 0..200 {
            let listed = Listed {
                status: statuses[next(5) as usize],
                updated_ms: next(50),
                expires_ms: None,
            };
            known.insert(format!("d{i:03}@x.io"), listed);
        }
        write_lists(&edited, "ns", &known, Tabs::ALL, Parts::ALL).unwrap();
        let mut now = 100;
        for round in 0..400 {
            let (mut moved, mut tabs) = (Vec::new(), Tabs::default());
            for _ in 0..1 + next(MOVES_BY_EDIT as u64) {
                let email = format!("d{:03}@x.io", next(230));
                if let Some(previous) = known.get(&email) {
                    tabs.add(previous.status);
                }
                if next(8) == 0 {
                    known.remove(&email);
                } else {
                    // Now and then a change that is not the newest.
                    now += 1;
                    let updated_ms = if next(6) == 0 { next(now) } else { now };
                    let listed = Listed {
                        status: statuses[next(5) as usize],
                        updated_ms,
                        expires_ms: None,
                    };
                    known.insert(&email, listed);
                    tabs.add(listed.status);
                }
                moved.push(email);
            }
            let parts = move_in_lists(&edited, "ns", &known, &moved, tabs).unwrap();
            let mut touched = Parts::default();
            moved.iter().for_each(|email| touched.add(email));
            assert_eq!(parts, touched, "the parts edited are those of the developers moved");
            write_lists(&rebuilt, "ns", &known, Tabs::ALL, Parts::ALL).unwrap();
            for status in statuses {
                for part in 0..keys::PARTS {
                    let key = keys::tab("ns", status, part);
                    let value = |store: &MemoryStore| store.get(&key).unwrap().map(|(v, _)| v).unwrap_or_default();
                    assert_eq!(
                        String::from_utf8_lossy(&value(&edited)),
                        String::from_utf8_lossy(&value(&rebuilt)),
                        "round {round}, {status:?}, part {part}, moved {moved:?}"
                    );
                }
                let lines = known.iter().filter(|(_, listed)| listed.status == status).count();
                assert_eq!(
                    tab_counts::size(&edited, "ns", status).unwrap(),
                    lines,
                    "round {round}: the counts of {status:?} as edited"
                );
                // Pages, from the front or merged, are the tab's order.
                let Some(status) = status else { continue };
                let mut tab: Vec<(&str, u64)> = known
                    .iter()
                    .filter(|(_, listed)| listed.status == Some(status))
                    .map(|(email, listed)| (email, listed.updated_ms))
                    .collect();
                tab.sort_unstable_by(|a, b| tab_order(*a, *b));
                for (offset, limit) in [(0, 3), (2, 6), (0, tab_front::FRONT), (7, 4), (0, 500)] {
                    let expected: Vec<&str> = tab.iter().skip(offset).take(limit).map(|(email, _)| *email).collect();
                    assert_eq!(
                        list_page(&edited, "ns", status, offset, limit, None).unwrap(),
                        (lines, expected.iter().map(|email| email.to_string()).collect()),
                        "round {round}, {status:?}, offset {offset}, limit {limit}"
                    );
                }
                if let (Some(front), _) = tab_front::read(&edited, "ns", status).unwrap() {
                    let first: Vec<(&str, u64)> = front.lines.iter().map(|(email, ms)| (email.as_str(), *ms)).collect();
                    assert_eq!(
                        first.as_slice(),
                        tab.get(..first.len()).unwrap(),
                        "round {round}, {status:?}: the front"
                    );
                    assert!(
                        !front.complete || first.len() == tab.len(),
                        "round {round}, {status:?}: complete"
                    );
                }
            }
        }
    }

    /// At ten million developers a tab is tens of MB: a change must not read
    /// and write a whole one (the worker serves nothing meanwhile).
    #[test]
    fn a_change_reads_and_writes_a_part_of_each_tab_it_touches_not_the_tab() {
        let store = crate::directory::CountingStore::of("ns/b/T");
        let mut known = numbered(Status::Approved, 6400);
        write_lists(&store, "ns", &known, Tabs::ALL, Parts::ALL).unwrap();
        let tab_bytes: usize = (0..keys::PARTS)
            .map(|part| {
                read_value(&store, &keys::tab("ns", Some(Status::Approved), part))
                    .unwrap()
                    .len()
            })
            .sum();
        assert!(tab_bytes > 6400 * 20, "{tab_bytes}");
        let moved = |store: &crate::directory::CountingStore, change: &dyn Fn()| {
            store.bytes.set(0);
            change();
            store.bytes.get()
        };
        // This gateway's own change (the admin API).
        let email = "dev00042@example.com";
        let by_admin = moved(&store, &|| {
            retab(
                &store,
                "ns",
                email,
                Some(Status::Approved),
                Some((Status::Revoked, 9000)),
            )
            .unwrap()
        });
        // The syncer's edit, of another gateway's change.
        let other = "dev04242@example.com";
        known.insert(other, Listed::new(Some(Status::Revoked), 9001, None));
        let mut tabs = Tabs::default();
        tabs.add(Some(Status::Approved));
        tabs.add(Some(Status::Revoked));
        let by_syncer = moved(&store, &|| {
            move_in_lists(&store, "ns", &known, &[other.to_string()], tabs).unwrap();
        });
        // A part is a 64th of the tab; read and written, in two tabs: about a
        // 16th of the tab's bytes, well under an eighth.
        for (who, bytes) in [("admin", by_admin), ("syncer", by_syncer)] {
            assert!(bytes < tab_bytes / 8, "{who}: {bytes} bytes of a {tab_bytes}-byte tab");
        }
        assert_eq!(
            list_page(&store, "ns", Status::Revoked, 0, 5, None).unwrap(),
            (2, vec![other.to_string(), email.to_string()])
        );
        assert_eq!(tab_size(&store, "ns", Status::Approved).unwrap(), 6398);
    }

    #[test]
    fn the_ended_approvals_are_found_soonest_first_and_only_once_one_has_ended() {
        let mut known = Known::new();
        let approved = |ms| Listed::new(Some(Status::Approved), 1, Some(ms));
        known.insert("b@x.io", approved(3000));
        known.insert("a@x.io", approved(3000));
        known.insert("c@x.io", approved(1000));
        // An end on another status is no approval's end.
        known.insert("d@x.io", Listed::new(Some(Status::Revoked), 1, Some(10)));
        assert_eq!(Listed::new(Some(Status::Revoked), 1, Some(10)).expires_ms, None);
        assert_eq!(known.ended_by(999), []);
        assert_eq!(known.soonest_end, 1000, "the pass found the soonest end");
        assert_eq!(
            known.ended_by(3000),
            [
                ("c@x.io".to_string(), 1000),
                ("a@x.io".to_string(), 3000),
                ("b@x.io".to_string(), 3000)
            ]
        );
        // An earlier end, recorded after the pass, is still found.
        known.insert("e@x.io", approved(500));
        assert_eq!(known.ended_by(600), [("e@x.io".to_string(), 500)]);
        // Revoked: no longer an approval that ends.
        known.insert("e@x.io", Listed::new(Some(Status::Revoked), 2, None));
        assert_eq!(known.ended_by(600), []);
    }

    #[test]
    fn the_expiring_list_is_read_only_when_an_end_changes() {
        let store = crate::directory::CountingStore::of("ns/b/E");
        for i in 0..50 {
            let email = format!("d{i}@x.io");
            apply(
                &store,
                "ns",
                &email,
                i,
                Entry::Present(&dev(&email, Status::Approved, 1)),
            )
            .unwrap();
            apply(
                &store,
                "ns",
                &email,
                100 + i,
                Entry::Present(&dev(&email, Status::Revoked, 2)),
            )
            .unwrap();
        }
        apply(&store, "ns", "d1@x.io", 200, Entry::Deleted).unwrap();
        assert_eq!(store.reads.get(), 0, "no end ever: the list is never read");

        let mut ending = dev("e@x.io", Status::Approved, 1);
        ending.approval_expires_ms = Some(5000);
        apply(&store, "ns", "e@x.io", 300, Entry::Present(&ending)).unwrap();
        assert_eq!(expiring(&store, "ns").unwrap(), [("e@x.io".to_string(), 5000)]);
        // Another revision with the same end: the list is not touched.
        let reads = store.reads.get();
        apply(&store, "ns", "e@x.io", 301, Entry::Present(&ending)).unwrap();
        assert_eq!(store.reads.get(), reads);
        // Revoked: the end no longer applies and leaves the list.
        apply(
            &store,
            "ns",
            "e@x.io",
            302,
            Entry::Present(&dev("e@x.io", Status::Revoked, 2)),
        )
        .unwrap();
        assert_eq!(expiring(&store, "ns").unwrap(), []);
        apply(&store, "ns", "e@x.io", 303, Entry::Present(&ending)).unwrap();
        apply(&store, "ns", "e@x.io", 304, Entry::Deleted).unwrap();
        assert_eq!(expiring(&store, "ns").unwrap(), []);
    }

    #[test]
    fn known_rebuilds_its_names_once_removals_leave_half_of_them_unused() {
        let listed = Listed {
            status: Some(Status::Requested),
            updated_ms: 1,
            expires_ms: None,
        };
        let mut known = Known::new();
        let mut copy = Known::new();
        for i in 0..2000 {
            known.insert(format!("d{i:05}@x.io"), listed);
            if i % 3 == 0 {
                copy.insert(format!("d{i:05}@x.io"), listed);
            }
        }
        let full = known.names.len();
        for i in (0..2000).filter(|i| i % 3 != 0) {
            assert_eq!(known.remove(&format!("d{i:05}@x.io")), Some(listed));
        }
        assert!(
            known.names.len() < full / 2 + 4096,
            "rebuilt: {} of {full}",
            known.names.len()
        );
        assert_eq!(known, copy);
        assert!(known.contains_key("d01998@x.io") && !known.contains_key("d01999@x.io"));
        assert_eq!(
            known.range("d00003", Some("d00010")).collect::<Vec<_>>(),
            ["d00003@x.io", "d00006@x.io", "d00009@x.io"]
        );
    }

    #[test]
    fn tabs_are_newest_first_and_paginate() {
        let store = MemoryStore::default();
        let mut listed = Known::new();
        for (i, email) in ["a@x.io", "b@x.io", "c@x.io", "d@x.io"].iter().enumerate() {
            listed.insert(
                email,
                Listed {
                    status: Some(Status::Requested),
                    updated_ms: i as u64,
                    expires_ms: None,
                },
            );
        }
        listed.insert(
            "e@x.io",
            Listed {
                status: Some(Status::Approved),
                updated_ms: 0,
                expires_ms: None,
            },
        );
        write_lists(&store, "ns", &listed, Tabs::ALL, Parts::ALL).unwrap();
        assert_eq!(
            list_page(&store, "ns", Status::Requested, 0, 2, None).unwrap(),
            (4, vec!["d@x.io".into(), "c@x.io".into()])
        );
        assert_eq!(
            list_page(&store, "ns", Status::Requested, 2, 5, None).unwrap(),
            (4, vec!["b@x.io".into(), "a@x.io".into()])
        );
        assert_eq!(
            list_page(&store, "ns", Status::Requested, 9, 5, None).unwrap(),
            (4, vec![])
        );
        let retab = |email, from, to| retab(&store, "ns", email, from, to).unwrap();
        // A change made here moves between tabs at once.
        retab("c@x.io", Some(Status::Requested), Some((Status::Approved, 10)));
        assert_eq!(
            list_page(&store, "ns", Status::Approved, 0, 5, None).unwrap().1[0],
            "c@x.io"
        );
        assert_eq!(tab_size(&store, "ns", Status::Requested).unwrap(), 3);
        retab("c@x.io", Some(Status::Approved), Some((Status::Requested, 11)));
        retab("new@x.io", None, Some((Status::Requested, 12)));
        assert_eq!(
            list_page(&store, "ns", Status::Requested, 0, 2, None).unwrap(),
            (5, vec!["new@x.io".into(), "c@x.io".into()])
        );
        // Search: the matches only, counted and paged among themselves.
        assert_eq!(
            list_page(&store, "ns", Status::Requested, 0, 5, Some("c@")).unwrap(),
            (1, vec!["c@x.io".into()])
        );
        assert_eq!(
            list_page(&store, "ns", Status::Requested, 0, 5, Some("zz")).unwrap(),
            (0, vec![])
        );
        assert_eq!(tab_size(&store, "ns", Status::Approved).unwrap(), 1);
        assert_eq!(tab_size(&store, "ns", Status::Revoked).unwrap(), 0);
    }

    #[test]
    fn lines_round_trip_their_e_mail_and_time() {
        for ms in [0, 1, 15, 16, 1_764_460_800_123, u64::MAX] {
            let mut line = Vec::new();
            push_line(&mut line, "a;b@x.io", ms);
            assert_eq!(split_line(&line), (&b"a;b@x.io"[..], Some(ms)), "{ms}");
        }
        let mut line = Vec::new();
        push_line(&mut line, "a@x.io", 1_764_460_800_123);
        assert_eq!(line, b"a@x.io;1764460800123\n");
        assert_eq!(split_line(b"a@x.io"), (&b"a@x.io"[..], None));
        assert_eq!(split_line(b"a@x.io;zz"), (&b"a@x.io"[..], None));
    }

    /// The search over the whole part finds what a test of each line's
    /// e-mail finds, whatever the needle (one that spans the `;`, a newline,
    /// the time's digits, empty).
    #[test]
    fn a_search_finds_what_each_lines_e_mail_holds() {
        let mut part = Vec::new();
        for (i, email) in ["ab@x.io", "b;a@x.io", "abab@x.io", "x@ab.io", "zz@x.io", "ab@x.io"]
            .iter()
            .enumerate()
        {
            push_line(&mut part, email, 1017 + i as u64);
        }
        part.extend_from_slice(b"no-time-ab\n");
        let by_line = |wanted: &str, keep: usize| {
            let lines: Vec<&[u8]> = part
                .split_inclusive(|&b| b == b'\n')
                .filter(|line| std::str::from_utf8(line_email(line)).is_ok_and(|e| e.contains(wanted)))
                .collect();
            (
                lines
                    .iter()
                    .take(keep)
                    .flat_map(|line| line.iter().copied())
                    .collect::<Vec<u8>>(),
                lines.len(),
            )
        };
        for wanted in [
            "ab", "a", "@x.io", "io;10", ";", "10", "1017", "\n", "", "b;a", "x@ab", "zz@x.io", "time-ab", "q",
        ] {
            for keep in [0, 1, 2, 9] {
                assert_eq!(
                    head_of(part.clone(), Some(wanted), keep),
                    by_line(wanted, keep),
                    "{wanted:?} keep {keep}"
                );
            }
        }
    }

    #[test]
    fn the_list_of_ends_gives_only_what_is_asked_soonest_first() {
        let store = MemoryStore::default();
        let mut known = Known::new();
        for i in 0..300u64 {
            known.insert(
                format!("d{i}@x.io"),
                Listed::new(Some(Status::Approved), 1, Some(10_000 - i)),
            );
        }
        write_expiring(&store, "ns", &known).unwrap();
        let due = expiring_where(&store, "ns", |email, ms| ms <= 9_800 && email.contains('5')).unwrap();
        let expected: Vec<(String, u64)> = (200..300u64)
            .rev()
            .map(|i| (format!("d{i}@x.io"), 10_000 - i))
            .filter(|(email, _)| email.contains('5'))
            .collect();
        assert_eq!(due, expected);
        assert_eq!(expiring(&store, "ns").unwrap().len(), 300);
    }

    /// A page keeps from each part only the lines it may take: the first
    /// `offset + limit` (that match a search; those are all counted).
    #[test]
    fn a_page_keeps_only_the_head_of_each_part() {
        let part = b"a1@x.io;9\nb2@x.io;8\na3@x.io;7\nb4@x.io;6\n".to_vec();
        assert_eq!(head_of(part.clone(), None, 2), (b"a1@x.io;9\nb2@x.io;8\n".to_vec(), 0));
        assert_eq!(head_of(part.clone(), None, 9), (part.clone(), 0));
        assert_eq!(head_of(part.clone(), None, 0), (Vec::new(), 0));
        assert_eq!(head_of(part.clone(), Some("a"), 1), (b"a1@x.io;9\n".to_vec(), 2));
        assert_eq!(
            head_of(part.clone(), Some("x.io;"), 9),
            (Vec::new(), 0),
            "the time is not searched"
        );
        assert_eq!(head_of(Vec::new(), Some("a"), 9), (Vec::new(), 0));
    }

    /// A page merges the tab's parts: the whole tab, paged, is every
    /// developer of the status, newest change first, ties by e-mail.
    #[test]
    fn pages_merge_the_parts_in_the_tabs_order() {
        let store = MemoryStore::default();
        let mut known = Known::new();
        let mut expected = Vec::new();
        for i in 0..700u64 {
            let email = format!("u{i}@x.io");
            let ms = i * 7919 % 97;
            known.insert(&email, Listed::new(Some(Status::Rejected), ms, None));
            expected.push((email, ms));
        }
        known.insert("approved@x.io", Listed::new(Some(Status::Approved), 50, None));
        write_lists(&store, "ns", &known, Tabs::ALL, Parts::ALL).unwrap();
        expected.sort_by(|a, b| tab_order((&a.0, a.1), (&b.0, b.1)));
        let expected: Vec<String> = expected.into_iter().map(|(email, _)| email).collect();
        let mut paged = Vec::new();
        for offset in (0..720).step_by(9) {
            let (total, page) = list_page(&store, "ns", Status::Rejected, offset, 9, None).unwrap();
            assert_eq!(total, 700);
            paged.extend(page);
        }
        assert_eq!(paged, expected);
        let (total, page) = list_page(&store, "ns", Status::Rejected, 3, 4, Some("u1")).unwrap();
        let matching: Vec<&String> = expected.iter().filter(|email| email.contains("u1")).collect();
        assert_eq!(total, matching.len());
        assert_eq!(page.iter().collect::<Vec<_>>(), matching[3..7].to_vec());
    }

    #[test]
    fn sync_state_round_trips() {
        let store = MemoryStore::default();
        assert_eq!(read_sync_state(&store, "ns"), None);
        write_sync_state(
            &store,
            "ns",
            SyncState {
                revision: 12,
                synced_at_ms: 34,
            },
        )
        .unwrap();
        assert_eq!(
            read_sync_state(&store, "ns"),
            Some(SyncState {
                revision: 12,
                synced_at_ms: 34
            })
        );
    }

    #[test]
    fn static_seed_serves_the_admin_reads() {
        let store = MemoryStore::default();
        crate::directory::seed::static_directory(
            &store,
            "ns",
            &[
                ("a@x.io".into(), Status::Approved),
                ("b@x.io".into(), Status::Requested),
            ],
            5,
        )
        .unwrap();
        assert_eq!(lookup(&store, "ns", "a@x.io"), Lookup::Found(Status::Approved));
        assert_eq!(tab_size(&store, "ns", Status::Requested).unwrap(), 1);
        assert!(read_sync_state(&store, "ns").is_some());
    }
}
