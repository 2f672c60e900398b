//! The directory's snapshot in etcd: how a new syncer fills a large replica
//! without reading every developer's document.
//!
//! etcd's JSON gateway pays per key-value more than per byte: a full sync of a
//! million developers costs etcd about 15 s of CPU, and the filter as much
//! again parsing the documents (bench/SNAPSHOT-PROBE.md). So a syncer whose
//! replica is complete as of a revision S (a full sync or a reconciliation
//! pass has just ended: every change up to S is in it) writes, at most once
//! every `SNAPSHOT_EVERY_MS` across the fleet, the line per developer a replica
//! needs, in parts of about `PART_BYTES`:
//!
//! | key | holds |
//! |---|---|
//! | `<prefix>snapshot/parts/<id>/<n>` | part `n`: `s1;<id>;<n>`, then `email;<updated_ms>;<record>` lines (`<record>` as in a bucket) and `?<hex>` for a key that is not an address |
//! | `<prefix>snapshot/current` | `Current`: the id, S, how many parts and developers, when |
//! | `<prefix>snapshot/writer` | `Claim`: the gateway writing one, and its heartbeat |
//!
//! One gateway of the fleet writes at a time: it first claims
//! `<prefix>snapshot/writer` (a CAS), and every part it writes moves the
//! claim's heartbeat in the same transaction, which holds only while the claim
//! is still its own; a claim still for `CLAIM_STALE_MS` is free again. One
//! part goes out per sync cycle (a cycle's cost stays bounded). The parts are
//! composed from the replica as it is then: it only moves forward, so each
//! still holds every change up to S. `current` is written last, in a
//! transaction that holds only if `current` did not change since the writer
//! looked and the claim is still its own, and that deletes every other
//! snapshot's parts (a writer that stopped midway leaves some) and the claim.
//!
//! A new syncer's first cycle reads `current` and the parts, then the change
//! log from S on, which names every developer the filter changed since
//! (admin API, self-service, expiry; deletions included); those are read,
//! and the cycle ends with a reconciliation part as any other: the gate
//! opens. The next cycle first reads every developer changed after S (the
//! catch-up: one range of at most `CATCH_UP_LIMIT`), which brings what other
//! tools wrote straight into etcd since; etcd scans every key for it (1.2 s of
//! its CPU at a million), which is why it does not hold the gate closed. A
//! deletion made straight in etcd after S is found by the reconciliation pass
//! the first cycle began, the bound every direct write has. Anything
//! unexpected (no snapshot, one older than the change log reaches back, a
//! part missing or unreadable, too many changes since, etcd behind the
//! replica) means a full sync, as before.

use serde::{Deserialize, Serialize};

use super::{skip_collision, CycleReport, Next, Phase, SyncError, Syncer};
use crate::directory::bucket::{self, Found};
use crate::directory::replica::{self, Known, Listed};
use crate::directory::{read_record, Record, SharedStore};
use crate::etcd::{self, EtcdRequest};

/// A fleet writes a snapshot at most this often.
pub const SNAPSHOT_EVERY_MS: u64 = 10 * 60 * 1000;
/// An older snapshot is not read: a fleet that writes them has one at most
/// about `SNAPSHOT_EVERY_MS` old, and the change log since an old one may be
/// long (a fleet coming back after an outage starts with full syncs).
pub const SNAPSHOT_MAX_AGE_MS: u64 = 60 * 60 * 1000;
/// Smaller directories are read whole: a full sync of 10,000 takes well under a second.
pub const SNAPSHOT_MIN_DEVELOPERS: usize = 10_000;
/// A part's size, about (etcd takes requests up to 1.5 MiB).
pub const PART_BYTES: usize = 768 * 1024;
/// More developers changed since the snapshot than this: a full sync instead.
pub const CATCH_UP_LIMIT: u32 = 10_000;
/// A writer whose claim has not moved for this long has stopped: another may
/// claim. Every part moves it (a part per sync cycle, at most a minute apart).
pub const CLAIM_STALE_MS: u64 = 2 * 60 * 1000;

const FORMAT: &str = "s1";

/// `<prefix>snapshot/current`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Current {
    pub id: String,
    /// Every change up to this revision is in the snapshot.
    pub revision: u64,
    pub parts: u32,
    pub developers: u64,
    /// When the writer took S (by its clock): every change after S is logged
    /// under a later time (within the feed's allowance for writers' clocks).
    pub began_ms: u64,
    /// When the last part was written.
    pub written_ms: u64,
}

/// What a syncer knows of snapshots.
pub(super) struct Snapshots {
    /// `<prefix>snapshot/`.
    prefix: Vec<u8>,
    /// The change log's retention: an older snapshot cannot be caught up from.
    log_retention_ms: u64,
    min_developers: usize,
    /// A part's size, about (`PART_BYTES`).
    part_bytes: usize,
    /// When this syncer last found a fresh snapshot or wrote one (0: never).
    fresh_as_of_ms: u64,
    writing: Option<Writing>,
    /// The writer's call out, if one is.
    in_flight: Option<WriteStep>,
}

/// A snapshot being written, one part per cycle.
struct Writing {
    id: String,
    revision: u64,
    /// When it took `revision` (`Current::began_ms`).
    began_ms: u64,
    /// `current`'s mod revision when the writer looked (0: absent).
    expected: u64,
    /// The claim's mod revision when the writer looked (0: absent).
    expected_claim: u64,
    /// The claim's mod revision once this writer holds it.
    claim: Option<u64>,
    parts: u32,
    developers: u64,
    /// The last developer written: the next part starts after it.
    after: Option<String>,
}

/// The writer's call in flight.
pub(super) enum WriteStep {
    Look,
    Claim,
    Part { last: Option<String>, developers: u64 },
    Commit,
}

/// A snapshot being read.
pub(super) struct Loading {
    current: Current,
    next: u32,
    seen: Known,
    report: CycleReport,
}

impl Snapshots {
    pub(super) fn new(key_prefix: &str, log_retention_ms: u64) -> Snapshots {
        Snapshots {
            prefix: format!("{key_prefix}snapshot/").into_bytes(),
            log_retention_ms,
            min_developers: SNAPSHOT_MIN_DEVELOPERS,
            part_bytes: PART_BYTES,
            fresh_as_of_ms: 0,
            writing: None,
            in_flight: None,
        }
    }

    fn current_key(&self) -> Vec<u8> {
        let mut key = self.prefix.clone();
        key.extend_from_slice(b"current");
        key
    }

    /// `<prefix>snapshot/parts/`: every snapshot's parts, and nothing else.
    fn all_parts(&self) -> Vec<u8> {
        let mut key = self.prefix.clone();
        key.extend_from_slice(b"parts/");
        key
    }

    fn parts_prefix(&self, id: &str) -> Vec<u8> {
        let mut key = self.all_parts();
        key.extend_from_slice(id.as_bytes());
        key.push(b'/');
        key
    }

    fn part_key(&self, id: &str, n: u32) -> Vec<u8> {
        let mut key = self.parts_prefix(id);
        key.extend_from_slice(format!("{n:06}").as_bytes());
        key
    }

    /// Whether a snapshot begun at `began_ms` can still be caught up from at
    /// `now_ms`: the change log must reach back past it (with the feed's
    /// allowance for writers' clocks), and the changes since must be few
    /// enough to read in a first cycle (`SNAPSHOT_MAX_AGE_MS`).
    fn usable(&self, began_ms: u64, now_ms: u64) -> bool {
        let age = now_ms.saturating_sub(began_ms);
        age + 2 * super::FEED_LOOKBACK_MS < self.log_retention_ms && age < SNAPSHOT_MAX_AGE_MS
    }
}

/// One line of a part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line<'a> {
    Developer {
        email: &'a str,
        updated_ms: u64,
        record: Record,
    },
    /// A key under the prefix that is not an address: counted, never looked up.
    Other(String),
}

/// Part `n` of snapshot `id`: the developers of `known` after `after`, about
/// `max_bytes` of them, with their records as `store` holds them. Returns the
/// part, the last developer in it (`None`: none was left) and how many lines.
pub fn compose_part(
    store: &dyn SharedStore,
    namespace: &str,
    known: &Known,
    after: Option<&str>,
    (id, n): (&str, u32),
    max_bytes: usize,
) -> (Vec<u8>, Option<String>, u64) {
    let mut out = format!("{FORMAT};{id};{n}").into_bytes();
    let mut last = None;
    let mut lines = 0;
    for (email, listed) in known.after(after) {
        if out.len() >= max_bytes {
            break;
        }
        last = Some(email);
        let record = match bucket::storable(email).then(|| read_record(store, namespace, email)) {
            // Deleted here since the syncer listed it (after S: the reader finds
            // it gone too).
            Some(Found::Record(Record::Deleted { .. })) => continue,
            Some(Found::Record(record)) => Some(record),
            _ => None,
        };
        out.push(b'\n');
        match record {
            Some(record) => {
                out.extend_from_slice(email.as_bytes());
                out.extend_from_slice(format!(";{};", listed.updated_ms).as_bytes());
                bucket::encode_into(&record, &mut out);
            }
            None => {
                out.push(b'?');
                for byte in email.bytes() {
                    out.extend_from_slice(format!("{byte:02x}").as_bytes());
                }
            }
        }
        lines += 1;
    }
    (out, last.map(str::to_string), lines)
}

/// Reads part `n` of snapshot `id`, line by line; an error for anything
/// that is not exactly what `compose_part` writes.
pub fn read_part<'a>(part: &'a [u8], id: &str, n: u32, mut each: impl FnMut(Line<'a>)) -> Result<(), String> {
    let text = std::str::from_utf8(part).map_err(|_| "not UTF-8".to_string())?;
    let mut lines = text.split('\n');
    let header = lines.next().unwrap_or_default();
    if header != format!("{FORMAT};{id};{n}") {
        return Err(format!("part {n} begins {header:?}"));
    }
    for line in lines {
        if let Some(hex) = line.strip_prefix('?') {
            each(Line::Other(
                unhex(hex).ok_or_else(|| format!("a bad line in part {n}: {line:?}"))?,
            ));
            continue;
        }
        let bad = || format!("a bad line in part {n}: {line:?}");
        let mut fields = line.splitn(3, ';');
        let (Some(email), Some(updated_ms), Some(record)) = (fields.next(), fields.next(), fields.next()) else {
            return Err(bad());
        };
        let canonical = crate::request::email::canonical_email(email).ok();
        if canonical.as_deref() != Some(email) || !bucket::storable(email) {
            return Err(bad());
        }
        let updated_ms = updated_ms.parse().map_err(|_| bad())?;
        let record = bucket::decode(record.as_bytes())
            .filter(|record| !matches!(record, Record::Deleted { .. }))
            .ok_or_else(bad)?;
        each(Line::Developer {
            email,
            updated_ms,
            record,
        });
    }
    Ok(())
}

fn unhex(hex: &str) -> Option<String> {
    let bytes: Option<Vec<u8>> = hex
        .as_bytes()
        .chunks(2)
        .map(|pair| {
            let pair = std::str::from_utf8(pair)
                .ok()
                .filter(|pair| pair.bytes().all(|b| b.is_ascii_hexdigit()))?;
            u8::from_str_radix(pair, 16).ok()
        })
        .collect();
    let bytes = bytes.filter(|bytes| !bytes.is_empty() && bytes.len() * 2 == hex.len())?;
    String::from_utf8(bytes).ok()
}

// ---- Reading: a new syncer's first cycle ------------------------------------------

impl Syncer {
    /// The first call of a first sync: the snapshot's `current` when snapshots
    /// are on, else the full read.
    pub(super) fn begin_first(&mut self) -> EtcdRequest {
        match &self.snapshots {
            Some(snapshots) => {
                let request = etcd::get(&snapshots.current_key());
                self.phase = Phase::SnapshotCurrent;
                request
            }
            None => self.begin_full(),
        }
    }

    /// Falls back to a full sync, saying why.
    fn snapshot_unusable(&mut self, why: &str) -> Result<Next, SyncError> {
        log::info!("devportal-gate: reading the whole directory: {why}");
        self.loading_snapshot = false;
        Ok(Next::Call(self.begin_full()))
    }

    pub(super) fn snapshot_current(&mut self, status: u32, body: &[u8], now_ms: u64) -> Result<Next, SyncError> {
        let answer = etcd::parse_range(status, body).map_err(SyncError::Etcd)?;
        let Some(kv) = answer.kvs.first() else {
            return self.snapshot_unusable("no snapshot in etcd yet");
        };
        let Ok(current) = serde_json::from_slice::<Current>(&kv.value) else {
            return self.snapshot_unusable("the snapshot's current key is not readable");
        };
        let usable = self
            .snapshots
            .as_ref()
            .is_some_and(|s| s.usable(current.began_ms, now_ms));
        if !usable {
            return self.snapshot_unusable("the snapshot is too old (an hour, or what the change log keeps)");
        }
        if current.parts == 0 {
            return self.snapshot_unusable("the snapshot has no parts");
        }
        let mut seen = Known::new();
        seen.reserve_for(usize::try_from(current.developers).unwrap_or(0));
        self.loading_snapshot = true;
        Ok(self.next_snapshot_part(Loading {
            current,
            next: 0,
            seen,
            report: CycleReport::default(),
        }))
    }

    fn next_snapshot_part(&mut self, loading: Loading) -> Next {
        let key = match &self.snapshots {
            Some(snapshots) => snapshots.part_key(&loading.current.id, loading.next),
            None => Vec::new(),
        };
        self.phase = Phase::SnapshotPart(loading);
        Next::Call(etcd::get(&key))
    }

    pub(super) fn snapshot_part(
        &mut self,
        store: &dyn SharedStore,
        status: u32,
        body: &[u8],
        mut loading: Loading,
    ) -> Result<Next, SyncError> {
        let answer = etcd::parse_range(status, body).map_err(SyncError::Etcd)?;
        let Some(kv) = answer.kvs.first() else {
            return self.snapshot_unusable("a part of the snapshot is gone (a newer one replaced it)");
        };
        let mut lines = Vec::new();
        if let Err(why) = read_part(&kv.value, &loading.current.id, loading.next, |line| lines.push(line)) {
            return self.snapshot_unusable(&format!("the snapshot is not readable: {why}"));
        }
        for line in lines {
            match line {
                Line::Developer {
                    email,
                    updated_ms,
                    record,
                } => {
                    let (status, expires_ms) = match record {
                        Record::Present { status, expires_ms, .. } => (Some(status), expires_ms),
                        _ => {
                            loading.report.unreadable += 1;
                            (None, None)
                        }
                    };
                    let written = replica::apply_record(store, &self.namespace, email, record, self.write_mode());
                    if skip_collision(written, &mut loading.report)? {
                        loading.report.changed += 1;
                    }
                    loading.seen.insert(email, Listed::new(status, updated_ms, expires_ms));
                }
                Line::Other(name) => {
                    loading.report.unreadable += 1;
                    loading.seen.insert(name, Listed::unreadable());
                }
            }
        }
        loading.next += 1;
        if loading.next < loading.current.parts {
            return Ok(self.next_snapshot_part(loading));
        }
        self.snapshot_loaded(store, loading)
    }

    /// Every part is in: the replica is the snapshot's. The cycle goes on with
    /// the change log from the snapshot's revision on (what the filter changed
    /// since, deletions included), then as any cycle; the gate opens at its
    /// end. The developers changed since by other tools are read first thing
    /// in the next cycle (the catch-up).
    fn snapshot_loaded(&mut self, store: &dyn SharedStore, loading: Loading) -> Result<Next, SyncError> {
        let Loading {
            current,
            seen,
            mut report,
            ..
        } = loading;
        let developers = seen.len();
        self.replace_known(store, seen, current.revision, &mut report)?;
        log::info!(
            "devportal-gate: read the snapshot of {developers} developers at etcd revision {} ({} parts)",
            current.revision,
            current.parts,
        );
        self.revision = Some(current.revision);
        self.reconciled = current.revision;
        self.catch_up = Some(current.revision);
        if let Some(snapshots) = self.snapshots.as_mut() {
            // No need to write one soon: it is fresh enough for the fleet.
            snapshots.fresh_as_of_ms = current.written_ms;
        }
        // Every change after S is logged under a time after the writer took S
        // (the parts took a while to write: not after `written_ms`).
        let since_ms = current.began_ms.saturating_sub(super::FEED_LOOKBACK_MS);
        Ok(Next::Call(self.feed_request(since_ms, current.revision)))
    }

    /// The developers changed after the snapshot's revision `since` (other
    /// tools' writes: the change log had the filter's), at most `CATCH_UP_LIMIT`.
    pub(super) fn begin_catch_up(&mut self, since: u64) -> EtcdRequest {
        self.phase = Phase::SnapshotCatchUp;
        let end = etcd::prefix_end(&self.prefix);
        etcd::range_changed_since_at_most(&self.prefix, &end, since, CATCH_UP_LIMIT)
    }

    /// The catch-up's answer: applied (the tabs follow); the cycle goes on
    /// with the change feed. Too many changes, or etcd behind: a full sync.
    pub(super) fn snapshot_catch_up(
        &mut self,
        store: &dyn SharedStore,
        status: u32,
        body: &[u8],
    ) -> Result<Next, SyncError> {
        let answer = etcd::parse_range(status, body).map_err(SyncError::Etcd)?;
        let revision = self.revision.unwrap_or(0);
        self.catch_up = None;
        if answer.more {
            log::info!(
                "devportal-gate: reading the whole directory: more than {CATCH_UP_LIMIT} developers changed since the snapshot"
            );
            return Ok(Next::Call(self.begin_full()));
        }
        if answer.revision < revision {
            // etcd went back in time (restored from a backup): trust nothing.
            self.revision = None;
            return Ok(Next::Call(self.begin_full()));
        }
        let mut report = CycleReport::default();
        let mut known = std::mem::take(&mut self.known);
        let applied: Result<(), SyncError> = answer
            .kvs
            .iter()
            .try_for_each(|kv| self.apply_kv(store, kv, &mut known, &mut report));
        self.known = known;
        applied?;
        self.follow_in_tabs(store, &report, Default::default())?;
        if !answer.kvs.is_empty() {
            log::info!(
                "devportal-gate: caught up with {} developers changed since the snapshot: {} changed",
                answer.kvs.len(),
                report.changed
            );
        }
        Ok(Next::Call(self.begin_feed(revision)))
    }
}

// ---- Writing: at the end of a cycle, one call -------------------------------------

/// `<prefix>snapshot/writer`: the gateway writing a snapshot, so the rest of
/// the fleet does not write one too. Its heartbeat moves with every part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Claim {
    id: String,
    heartbeat_ms: u64,
}

impl Snapshots {
    fn claim_key(&self) -> Vec<u8> {
        let mut key = self.prefix.clone();
        key.extend_from_slice(b"writer");
        key
    }

    /// Put the claim with a fresh heartbeat.
    fn claim_put(&self, id: &str, now_ms: u64) -> serde_json::Value {
        let claim = Claim {
            id: id.to_string(),
            heartbeat_ms: now_ms,
        };
        etcd::op_put(&self.claim_key(), &serde_json::to_vec(&claim).unwrap_or_default())
    }

    /// Look again in `after_ms`.
    fn look_again_in(&mut self, after_ms: u64, now_ms: u64) {
        self.fresh_as_of_ms = now_ms.saturating_sub(SNAPSHOT_EVERY_MS.saturating_sub(after_ms));
    }
}

impl Syncer {
    /// Between two cycles, at most once after each: the writer's next call,
    /// if one is due. Not part of a cycle, so it does not delay the next one
    /// (nor what the next one brings). The answer goes to `snapshot_answer`.
    pub fn snapshot_chore(&mut self, store: &dyn SharedStore, now_ms: u64) -> Option<EtcdRequest> {
        if self.in_cycle() || !std::mem::take(&mut self.snapshot_step_due) {
            return None;
        }
        let (request, step) = self.snapshot_step(store, now_ms)?;
        if let Some(snapshots) = self.snapshots.as_mut() {
            snapshots.in_flight = Some(step);
        }
        Some(request)
    }

    /// The answer to the writer's call, or why there was none.
    pub fn snapshot_answer(&mut self, answer: Result<(u32, Vec<u8>), crate::etcd::EtcdError>, now_ms: u64) {
        let Some(step) = self.snapshots.as_mut().and_then(|snapshots| snapshots.in_flight.take()) else {
            return;
        };
        match answer {
            Ok((status, body)) => self.snapshot_written(status, &body, step, now_ms),
            Err(error) => self.snapshot_call_failed(&error, now_ms),
        }
    }

    /// The writer's next call, if one is due: look at `current` and the
    /// claim, claim, write the next part, or commit.
    fn snapshot_step(&mut self, store: &dyn SharedStore, now_ms: u64) -> Option<(EtcdRequest, WriteStep)> {
        let snapshots = self.snapshots.as_ref()?;
        let Some(writing) = &snapshots.writing else {
            let due = self.known.len() >= snapshots.min_developers
                && self.reconciled > 0
                && now_ms.saturating_sub(snapshots.fresh_as_of_ms) >= SNAPSHOT_EVERY_MS;
            let look = || {
                let reads = vec![
                    etcd::op_get(&snapshots.current_key()),
                    etcd::op_get(&snapshots.claim_key()),
                ];
                (etcd::txn(vec![], reads, vec![]), WriteStep::Look)
            };
            return due.then(look);
        };
        let claim_key = snapshots.claim_key();
        let Some(claim) = writing.claim else {
            // Claim it, unless another gateway did since the look.
            let compare = match writing.expected_claim {
                0 => etcd::compare_absent(&claim_key),
                expected => etcd::compare_mod_revision(&claim_key, expected),
            };
            let request = etcd::txn(vec![compare], vec![snapshots.claim_put(&writing.id, now_ms)], vec![]);
            return Some((request, WriteStep::Claim));
        };
        let (part, last, developers) = compose_part(
            store,
            &self.namespace,
            &self.known,
            writing.after.as_deref(),
            (&writing.id, writing.parts),
            snapshots.part_bytes,
        );
        let still_mine = etcd::compare_mod_revision(&claim_key, claim);
        if last.is_some() {
            let key = snapshots.part_key(&writing.id, writing.parts);
            let request = etcd::txn(
                vec![still_mine],
                vec![etcd::op_put(&key, &part), snapshots.claim_put(&writing.id, now_ms)],
                vec![],
            );
            return Some((request, WriteStep::Part { last, developers }));
        }
        // Every part is out: `current` names this snapshot, unless another
        // gateway's won meanwhile; the other snapshots' parts go, and the claim.
        let current_key = snapshots.current_key();
        let current_unchanged = match writing.expected {
            0 => etcd::compare_absent(&current_key),
            expected => etcd::compare_mod_revision(&current_key, expected),
        };
        let current = Current {
            id: writing.id.clone(),
            revision: writing.revision,
            parts: writing.parts,
            developers: writing.developers,
            began_ms: writing.began_ms,
            written_ms: now_ms,
        };
        let mine = snapshots.parts_prefix(&writing.id);
        let request = etcd::txn(
            vec![current_unchanged, still_mine.clone()],
            vec![
                etcd::op_put(&current_key, &serde_json::to_vec(&current).unwrap_or_default()),
                etcd::op_delete_range(&snapshots.all_parts(), &mine),
                etcd::op_delete_range(&etcd::prefix_end(&mine), &etcd::prefix_end(&snapshots.all_parts())),
                etcd::op_delete_range(&claim_key, &etcd::prefix_end(&claim_key)),
            ],
            vec![
                etcd::op_delete_range(&mine, &etcd::prefix_end(&mine)),
                etcd::op_txn(
                    vec![still_mine],
                    vec![etcd::op_delete_range(&claim_key, &etcd::prefix_end(&claim_key))],
                ),
            ],
        );
        Some((request, WriteStep::Commit))
    }

    /// The writer's call failed.
    fn snapshot_call_failed(&mut self, error: &crate::etcd::EtcdError, now_ms: u64) {
        log::warn!("devportal-gate: could not write the directory's snapshot: {error}");
        if let Some(snapshots) = self.snapshots.as_mut() {
            snapshots.writing = None;
            snapshots.look_again_in(CLAIM_STALE_MS, now_ms);
        }
    }

    /// The answer to the writer's call. A failure ends this snapshot (the
    /// next successful one deletes what it left).
    fn snapshot_written(&mut self, status: u32, body: &[u8], step: WriteStep, now_ms: u64) {
        let reconciled = self.reconciled;
        let Some(snapshots) = self.snapshots.as_mut() else {
            return;
        };
        let answer = match etcd::parse_txn_reads(status, body) {
            Ok(answer) => answer,
            Err(error) => {
                log::warn!("devportal-gate: the directory's snapshot: {error}");
                snapshots.writing = None;
                snapshots.look_again_in(CLAIM_STALE_MS, now_ms);
                return;
            }
        };
        let read = |i: usize| answer.ranges.get(i).and_then(|range| range.kvs.first());
        match step {
            WriteStep::Look => {
                let current = read(0).and_then(|kv| serde_json::from_slice::<Current>(&kv.value).ok());
                let claim = read(1).and_then(|kv| serde_json::from_slice::<Claim>(&kv.value).ok());
                match (current, claim) {
                    // Nothing newer to write.
                    (Some(current), _) if current.revision >= reconciled => snapshots.fresh_as_of_ms = now_ms,
                    (Some(current), _) if now_ms.saturating_sub(current.written_ms) < SNAPSHOT_EVERY_MS => {
                        snapshots.fresh_as_of_ms = current.written_ms.min(now_ms);
                    }
                    // Another gateway is writing one.
                    (_, Some(claim)) if now_ms.saturating_sub(claim.heartbeat_ms) < CLAIM_STALE_MS => {
                        snapshots.look_again_in(CLAIM_STALE_MS, now_ms)
                    }
                    _ => {
                        snapshots.writing = Some(Writing {
                            id: crate::encoding::unique_id(now_ms),
                            revision: reconciled,
                            began_ms: now_ms,
                            expected: read(0).map_or(0, |kv| kv.mod_revision),
                            expected_claim: read(1).map_or(0, |kv| kv.mod_revision),
                            claim: None,
                            parts: 0,
                            developers: 0,
                            after: None,
                        })
                    }
                }
            }
            WriteStep::Claim => match &mut snapshots.writing {
                Some(writing) if answer.succeeded => writing.claim = Some(answer.revision),
                _ => {
                    snapshots.writing = None;
                    snapshots.look_again_in(CLAIM_STALE_MS, now_ms);
                }
            },
            WriteStep::Part { last, developers } => match &mut snapshots.writing {
                Some(writing) if answer.succeeded => {
                    writing.claim = Some(answer.revision);
                    writing.parts += 1;
                    writing.developers += developers;
                    writing.after = last;
                }
                _ => {
                    log::info!("devportal-gate: another gateway took over writing the directory's snapshot");
                    snapshots.writing = None;
                    snapshots.look_again_in(CLAIM_STALE_MS, now_ms);
                }
            },
            WriteStep::Commit => {
                let writing = snapshots.writing.take();
                snapshots.fresh_as_of_ms = now_ms;
                match writing {
                    Some(writing) if answer.succeeded => log::info!(
                        "devportal-gate: wrote the directory's snapshot: {} developers at etcd revision {} in {} parts",
                        writing.developers,
                        writing.revision,
                        writing.parts
                    ),
                    _ => log::info!("devportal-gate: another gateway wrote the directory's snapshot first"),
                }
            }
        }
    }
}

/// For tests of small directories: snapshots from `min` developers on, in
/// parts of `part_bytes`.
#[cfg(test)]
pub(super) fn set_sizes(syncer: &mut Syncer, min: usize, part_bytes: usize) {
    if let Some(snapshots) = syncer.snapshots.as_mut() {
        snapshots.min_developers = min;
        snapshots.part_bytes = part_bytes;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::{MemoryStore, Status};

    #[test]
    fn a_part_reads_back_as_written() {
        let store = MemoryStore::default();
        let mut known = Known::new();
        let approved = Record::Present {
            status: Status::Approved,
            revision: 7,
            expires_ms: Some(99),
        };
        crate::directory::write_record(&store, "ns", "a@x.io", &approved).unwrap();
        known.insert(
            "a@x.io",
            Listed {
                status: Some(Status::Approved),
                updated_ms: 5,
                expires_ms: None,
            },
        );
        let unreadable = Record::Unreadable { revision: 8 };
        crate::directory::write_record(&store, "ns", "b@x.io", &unreadable).unwrap();
        known.insert(
            "b@x.io",
            Listed {
                status: None,
                updated_ms: 0,
                expires_ms: None,
            },
        );
        crate::directory::write_record(&store, "ns", "c@x.io", &Record::Deleted { revision: 9 }).unwrap();
        known.insert(
            "c@x.io",
            Listed {
                status: Some(Status::Revoked),
                updated_ms: 1,
                expires_ms: None,
            },
        );
        known.insert(
            "Not An Address;\n",
            Listed {
                status: None,
                updated_ms: 0,
                expires_ms: None,
            },
        );
        let (part, last, lines) = compose_part(&store, "ns", &known, None, ("id1", 0), PART_BYTES);
        assert_eq!(last.as_deref(), Some("c@x.io"));
        assert_eq!(lines, 3, "the deleted one is left out");
        let mut read = Vec::new();
        read_part(&part, "id1", 0, |line| read.push(line)).unwrap();
        assert_eq!(
            read,
            vec![
                Line::Other("Not An Address;\n".into()),
                Line::Developer {
                    email: "a@x.io",
                    updated_ms: 5,
                    record: approved
                },
                Line::Developer {
                    email: "b@x.io",
                    updated_ms: 0,
                    record: unreadable
                },
            ]
        );
        // Nothing after the last: an empty part says the snapshot is complete.
        let (_, last, lines) = compose_part(&store, "ns", &known, Some("c@x.io"), ("id1", 1), PART_BYTES);
        assert_eq!((last, lines), (None, 0));
    }

    #[test]
    fn a_part_that_is_not_exactly_as_written_is_refused() {
        let ok = b"s1;id;0\na@x.io;5;a7";
        assert!(read_part(ok, "id", 0, |_| {}).is_ok());
        for bad in [
            &b"s1;id;1\na@x.io;5;a7"[..], // another part
            b"s1;other;0\na@x.io;5;a7",   // another snapshot
            b"s2;id;0\na@x.io;5;a7",      // another format
            b"s1;id;0\nA@x.io;5;a7",      // not canonical
            b"s1;id;0\na@x.io;x;a7",      // a bad time
            b"s1;id;0\na@x.io;5;z7",      // a bad record
            b"s1;id;0\na@x.io;5;d7",      // a tombstone is never written
            b"s1;id;0\na@x.io;5",         // too few fields
            b"s1;id;0\n?4",               // odd hex
            b"s1;id;0\n?zz",              // not hex
            b"s1;id;0\n?",                // empty name
            b"s1;id;0\na@x.io;5;a7\n",    // a trailing empty line
            b"s1;id;0\n\xff@x.io;5;a7",   // not UTF-8
        ] {
            assert!(
                read_part(bad, "id", 0, |_| {}).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
