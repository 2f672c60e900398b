//! The gateway's replica of the durable directory, in proxy-wasm shared data.
//!
//! Per developer the replica holds only the one-read hot-path record of
//! `directory` (a line in its bucket): status, revision, an approval's end. A
//! developer's document (metadata, history) stays in etcd, where the admin API
//! reads it. Beside the records:
//! - `<ns>/list/<status>`: that status's e-mails, newest status change first
//!   (the order etcd cannot give: the admin API pages through these);
//! - `<ns>/unreadable`: keys under the prefix that are not readable developers;
//!   with the tabs, every e-mail the replica holds, so a full sync can find what
//!   disappeared (shared data cannot be enumerated);
//! - `<ns>/sync`: the etcd revision the replica reflects and when it last agreed;
//! - `<ns>/expiring`: every approval with an end, for the admin API. The syncer
//!   writes it from what it knows, once a cycle (`write_expiring`,
//!   `edit_expiring`), never per record: a full sync of a million approvals
//!   with ends would otherwise rewrite a list of a million lines a million
//!   times. A gateway's own change adds its line at once (`apply`).
//!
//! Writes of one developer are monotonic in the etcd revision: the syncer and an
//! admin request acting on the same developer may race, and the newer revision
//! must win whichever lands last.

use crate::directory::developer::Developer;
use crate::directory::{keys, update, write_record_unless, Record, SharedStore, Status, WriteError, WriteOutcome};

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
/// `<ns>/expiring` at once. Returns whether anything changed.
pub fn apply(
    store: &dyn SharedStore,
    namespace: &str,
    email: &str,
    revision: u64,
    entry: Entry<'_>,
) -> Result<bool, WriteError> {
    let record = record_of(entry, revision);
    let (written, replaced) = write(store, namespace, email, record, WriteMode::Monotonic)?;
    // `<ns>/expiring` is read and scanned only when the approval's end changed.
    if written && expiry_of(replaced) != expiry_of(Some(record)) {
        note_expiry(store, namespace, email, expiry_of(Some(record)))?;
    }
    Ok(written)
}

/// Records one developer at `revision`, as the syncer does: the record only
/// (the syncer keeps `<ns>/expiring` from what it knows). Returns whether
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

/// Keeps `<ns>/expiring` (`email;ms` lines: every approval with an end) in
/// step with one developer whose end changed. Read first, written only on a
/// change.
fn note_expiry(
    store: &dyn SharedStore,
    namespace: &str,
    email: &str,
    expires_ms: Option<u64>,
) -> Result<(), WriteError> {
    let key = keys::expiring(namespace, keys::expiring_part_of(email));
    let line = expires_ms.map(|ms| format!("{email};{ms}"));
    let prefix = format!("{email};");
    update(store, &key, |current| {
        let current = current.unwrap_or_default();
        let mut lines = current.split(|&b| b == b'\n').filter(|l| !l.is_empty());
        if lines.clone().any(|l| Some(l) == line.as_deref().map(str::as_bytes)) {
            return None;
        }
        let mut next = Vec::with_capacity(current.len() + prefix.len() + 16);
        for kept in lines.by_ref().filter(|l| !l.starts_with(prefix.as_bytes())) {
            next.extend_from_slice(kept);
            next.push(b'\n');
        }
        if let Some(line) = &line {
            next.extend_from_slice(line.as_bytes());
            next.push(b'\n');
        }
        Some(next)
    })?;
    Ok(())
}

/// Every approval with an end: (email, end), soonest first.
pub fn expiring(store: &dyn SharedStore, namespace: &str) -> Result<Vec<(String, u64)>, WriteError> {
    let mut all: Vec<(String, u64)> = Vec::new();
    for part in 0..keys::EXPIRING_PARTS {
        let bytes = read_value(store, &keys::expiring(namespace, part))?;
        all.extend(String::from_utf8_lossy(&bytes).lines().filter_map(|line| {
            let (email, ms) = line.rsplit_once(';')?;
            Some((email.to_string(), ms.parse().ok()?))
        }));
    }
    all.sort_unstable_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
    Ok(all)
}

fn expiring_line(text: &mut Vec<u8>, email: &str, listed: &Listed) {
    if let Some(ms) = listed.expires_ms.filter(|_| listed.status == Some(Status::Approved)) {
        text.extend_from_slice(email.as_bytes());
        text.push(b';');
        text.extend_from_slice(ms.to_string().as_bytes());
        text.push(b'\n');
    }
}

/// Rewrites `<ns>/expiring` (each part only if it changed) from what the
/// syncer knows: after a full sync, or a cycle that changed many ends. One
/// pass over `known`.
pub fn write_expiring(store: &dyn SharedStore, namespace: &str, known: &Known) -> Result<(), WriteError> {
    let mut parts: Vec<Vec<u8>> = (0..keys::EXPIRING_PARTS).map(|_| Vec::new()).collect();
    for (email, listed) in known.iter() {
        if listed.expires_ms.is_some() {
            if let Some(part) = parts.get_mut(keys::expiring_part_of(email) as usize) {
                expiring_line(part, email, &listed);
            }
        }
    }
    for (part, text) in (0..keys::EXPIRING_PARTS).zip(&parts) {
        crate::directory::write_if_different(store, &keys::expiring(namespace, part), text)?;
    }
    Ok(())
}

/// The most developers `edit_expiring` edits; a cycle that changed more ends
/// rewrites the list (`write_expiring`).
pub const ENDS_BY_EDIT: usize = 16;

/// Gives the developers in `changed` (at most `ENDS_BY_EDIT`) the line in
/// `<ns>/expiring` that `known` says, or none: one pass over each part they
/// are in.
pub fn edit_expiring(
    store: &dyn SharedStore,
    namespace: &str,
    known: &Known,
    changed: &[String],
) -> Result<(), WriteError> {
    let mut by_part: Vec<(u32, &str)> = changed
        .iter()
        .map(|email| (keys::expiring_part_of(email), email.as_str()))
        .collect();
    by_part.sort_unstable();
    for group in by_part.chunk_by(|a, b| a.0 == b.0) {
        let Some(&(part, _)) = group.first() else { continue };
        let emails: Vec<&str> = group.iter().map(|&(_, email)| email).collect();
        update(store, &keys::expiring(namespace, part), |current| {
            let current = current.unwrap_or_default();
            let mut next = Vec::with_capacity(current.len() + 40 * emails.len());
            for line in current.split_inclusive(|&b| b == b'\n') {
                let email = line.rsplitn(2, |&b| b == b';').nth(1).unwrap_or(line);
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

/// What the syncer knows of a developer: its place in the tabs, and an
/// approval's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listed {
    /// `None`: a key under the prefix that is not a readable developer. It is
    /// counted (etcd counts it) but listed in no tab.
    pub status: Option<Status>,
    pub updated_ms: u64,
    /// When an approval ends (Unix ms): only approvals have one. Not a tab's
    /// concern: `<ns>/expiring` lists them (`write_expiring`).
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

    pub fn minus(self, other: Tabs) -> Tabs {
        Tabs(self.0 & !other.0)
    }

    fn only(status: Option<Status>) -> Tabs {
        Tabs(Tabs::bit(status))
    }

    /// The lists these tabs name: `Some(status)` a tab, `None` the unreadable list.
    fn lists(self) -> impl Iterator<Item = Option<Status>> {
        Status::ALL
            .into_iter()
            .map(Some)
            .chain([None])
            .filter(move |&status| self.contains(status))
    }
}

/// Moves `email` from the `from` tab to the front of the `to` tab (either may be
/// `None`: a registration, a deletion), so a change this gateway made shows in
/// its tabs at once instead of after the next sync. The syncer's next edit of
/// the tabs agrees with it (or, if it raced, restores the move a cycle later).
pub fn retab(
    store: &dyn SharedStore,
    namespace: &str,
    email: &str,
    from: Option<Status>,
    to: Option<Status>,
) -> Result<(), WriteError> {
    if let Some(from) = from.filter(|&from| Some(from) != to) {
        update(store, &keys::list(namespace, from), |tab| {
            Some(without_lines(tab?, &[email]))
        })?;
    }
    if let Some(to) = to {
        update(store, &keys::list(namespace, to), |tab| {
            Some(in_front(&[email], &without_lines(tab.unwrap_or_default(), &[email])))
        })?;
    }
    Ok(())
}

/// `tab` (lines, each ending in `\n`) without the lines that are one of `emails`.
/// One pass over the tab: at ten million developers a tab is tens of MB.
fn without_lines(tab: &[u8], emails: &[&str]) -> Vec<u8> {
    let mut kept = Vec::with_capacity(tab.len());
    for line in tab.split_inclusive(|&b| b == b'\n') {
        let name = line.strip_suffix(b"\n").unwrap_or(line);
        if !emails.iter().any(|email| email.as_bytes() == name) {
            kept.extend_from_slice(line);
        }
    }
    kept
}

/// `first` (one line each), then `rest`.
fn in_front(first: &[&str], rest: &[u8]) -> Vec<u8> {
    let mut next = Vec::with_capacity(first.iter().map(|email| email.len() + 1).sum::<usize>() + rest.len());
    for email in first {
        next.extend_from_slice(email.as_bytes());
        next.push(b'\n');
    }
    next.extend_from_slice(rest);
    next
}

/// The most developers `move_in_lists` moves by editing; a cycle that changed
/// more rebuilds the tabs it touched.
pub const MOVES_BY_EDIT: usize = 16;

/// Moves `moved` (developers whose listing changed, at most `MOVES_BY_EDIT`)
/// within the lists of `tabs`: each leaves every one of them and enters the one
/// `known` now gives it, at the front. That is what `write_lists` would build
/// as long as they all sort ahead of the list's first line (a change is
/// usually the newest); a list where one would not is rebuilt whole.
///
/// Why: rebuilding sorts the whole tab, about a second at ten million
/// developers, during which the syncer's worker serves nothing; an edit is a
/// pass over the tab's bytes.
pub fn move_in_lists(
    store: &dyn SharedStore,
    namespace: &str,
    known: &Known,
    moved: &[String],
    tabs: Tabs,
) -> Result<(), WriteError> {
    let leaving: Vec<&str> = moved.iter().map(String::as_str).collect();
    for status in tabs.lists() {
        let mut entering: Vec<(&str, u64)> = leaving
            .iter()
            .filter_map(|&email| {
                let listed = known.get(email)?;
                (listed.status == status).then_some((email, listed.updated_ms))
            })
            .collect();
        entering.sort_unstable_by(|a, b| tab_order(*a, *b));
        entering.dedup_by(|a, b| a.0 == b.0);
        let last_entering = entering.last().copied();
        let entering: Vec<&str> = entering.into_iter().map(|(email, _)| email).collect();
        let refused = std::cell::Cell::new(false);
        update(store, &list_key(namespace, status), |tab| {
            if tab.is_none() && entering.is_empty() {
                return None;
            }
            let rest = without_lines(tab.unwrap_or_default(), &leaving);
            // The last to enter must still sort ahead of the first that stays.
            if let (Some(last), Some(first)) = (last_entering, rest.split(|&b| b == b'\n').next()) {
                let ahead = first.is_empty()
                    || std::str::from_utf8(first)
                        .ok()
                        .and_then(|first| Some((first, known.get(first)?.updated_ms)))
                        .is_some_and(|first| tab_order(last, first) == std::cmp::Ordering::Less);
                if !ahead {
                    refused.set(true);
                    return None;
                }
            }
            Some(in_front(&entering, &rest))
        })?;
        if refused.get() {
            write_lists(store, namespace, known, Tabs::only(status))?;
        }
    }
    Ok(())
}

/// A tab's order: newest status change first, ties by e-mail.
fn tab_order(a: (&str, u64), b: (&str, u64)) -> std::cmp::Ordering {
    b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0))
}

fn list_key(namespace: &str, status: Option<Status>) -> String {
    match status {
        Some(status) => keys::list(namespace, status),
        None => keys::unreadable(namespace),
    }
}

/// Rewrites the tab lists of `tabs` (each only if it changed): newest status
/// change first, ties by e-mail. Building a tab sorts it, so only the tabs a
/// change touched are rebuilt (at 1M developers each costs a noticeable time).
///
/// Together the lists name every developer key the replica holds a record for
/// (the unreadable ones in `<ns>/unreadable`): a full sync tombstones whatever
/// they name and etcd no longer has (shared data cannot be enumerated).
pub fn write_lists(store: &dyn SharedStore, namespace: &str, developers: &Known, tabs: Tabs) -> Result<(), WriteError> {
    for status in tabs.lists() {
        let mut tab: Vec<(&str, u64)> = developers
            .iter()
            .filter(|(_, listed)| listed.status == status)
            .map(|(email, listed)| (email, listed.updated_ms))
            .collect();
        tab.sort_unstable_by(|a, b| tab_order(*a, *b));
        let mut text = String::with_capacity(tab.len() * 24);
        for (email, _) in tab {
            text.push_str(email);
            text.push('\n');
        }
        crate::directory::write_if_different(store, &list_key(namespace, status), text.as_bytes())?;
    }
    Ok(())
}

/// One page of a tab and the tab's size.
pub fn list_page(
    store: &dyn SharedStore,
    namespace: &str,
    status: Status,
    offset: usize,
    limit: usize,
    containing: Option<&str>,
) -> Result<(usize, Vec<String>), WriteError> {
    let bytes = read_value(store, &keys::list(namespace, status))?;
    let text = String::from_utf8_lossy(&bytes);
    let mut total = 0;
    let mut page = Vec::with_capacity(limit);
    let matches = |email: &str| containing.is_none_or(|part| email.contains(part));
    for email in text.lines().filter(|line| !line.is_empty() && matches(line)) {
        if total >= offset && page.len() < limit {
            page.push(email.to_string());
        }
        total += 1;
    }
    Ok((total, page))
}

pub fn tab_size(store: &dyn SharedStore, namespace: &str, status: Status) -> Result<usize, WriteError> {
    let bytes = read_value(store, &keys::list(namespace, status))?;
    Ok(bytes.iter().filter(|&&b| b == b'\n').count())
}

/// Every developer key the lists name (see `write_lists`), unsorted.
pub fn listed_emails(store: &dyn SharedStore, namespace: &str) -> Result<Vec<String>, WriteError> {
    let mut keys: Vec<String> = Status::ALL
        .iter()
        .map(|&status| keys::list(namespace, status))
        .collect();
    keys.push(keys::unreadable(namespace));
    let mut emails = Vec::new();
    for key in keys {
        let bytes = read_value(store, &key)?;
        emails.extend(
            String::from_utf8_lossy(&bytes)
                .lines()
                .filter(|l| !l.is_empty())
                .map(str::to_string),
        );
    }
    Ok(emails)
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
        write_lists(&edited, "ns", &known, Tabs::ALL).unwrap();
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
            move_in_lists(&edited, "ns", &known, &moved, tabs).unwrap();
            write_lists(&rebuilt, "ns", &known, Tabs::ALL).unwrap();
            for status in statuses {
                let key = list_key("ns", status);
                let value = |store: &MemoryStore| store.get(&key).unwrap().map(|(v, _)| v).unwrap_or_default();
                assert_eq!(
                    String::from_utf8_lossy(&value(&edited)),
                    String::from_utf8_lossy(&value(&rebuilt)),
                    "round {round}, {status:?}, moved {moved:?}"
                );
            }
        }
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
        let store = crate::directory::CountingStore::of("ns/expiring/");
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
        write_lists(&store, "ns", &listed, Tabs::ALL).unwrap();
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
        // A change made here moves between tabs at once.
        retab(&store, "ns", "c@x.io", Some(Status::Requested), Some(Status::Approved)).unwrap();
        assert_eq!(
            list_page(&store, "ns", Status::Approved, 0, 5, None).unwrap().1[0],
            "c@x.io"
        );
        assert_eq!(tab_size(&store, "ns", Status::Requested).unwrap(), 3);
        retab(&store, "ns", "c@x.io", Some(Status::Approved), Some(Status::Requested)).unwrap();
        retab(&store, "ns", "new@x.io", None, Some(Status::Requested)).unwrap();
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
