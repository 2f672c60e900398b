//! Keeping the replica (shared data) in step with etcd. One worker per gateway
//! runs a `Syncer`, elected through shared data (`elect`); the rest only read.
//!
//! A cycle is one or a few calls:
//! - full sync (first cycle of a syncer, or when something vanished): every key
//!   under the prefix, paged, each page pinned to the first page's revision so the
//!   whole read is one snapshot; then whatever the replica's lists name and the
//!   snapshot has not is tombstoned;
//! - the change feed, every cycle: the change log entries (`events`) created
//!   since the last revision, read from the last minute of the log (entries
//!   are named by their writer's clock: `FEED_LOOKBACK_MS`), then the current
//!   records of the developers they name. Its cost follows the changes, not the
//!   directory: every change the filter makes (admin API, self-service,
//!   expiry, seed) is logged in its own transaction;
//! - reconciliation, after the feed in every cycle: one part of the key space
//!   (`RECONCILE_PART` known keys; one part for a small directory), its keys
//!   changed since the current pass began. It finds what the log does not tell
//!   (a write straight into etcd by another tool, a writer's clock more than a
//!   minute behind). Its `count` still counts every key of the part, so fewer
//!   keys than the syncer knows there means a deletion: the part's keys are
//!   listed (keys only) to find which, in the same cycle. A cycle's cost stays
//!   bounded whatever the directory's size; a pass takes one cycle per part.
//!
//! A large directory's first sync reads a snapshot instead of every
//! developer, and the syncer writes that snapshot now and then (`snapshot`).
//!
//! The hot path never waits for any of this: it reads the replica.

pub mod driver;
pub mod plan;
pub mod snapshot;

use std::collections::{HashSet, VecDeque};

use crate::directory::developer::Summary;
use crate::directory::replica::{self, Entry, Known, Listed, Parts, SyncState, Tabs, WriteMode};
use crate::directory::{keys, Record, SharedStore, Status, StoreError, WriteError, MAX_CAS_ATTEMPTS};
use crate::etcd::{self, EtcdError, EtcdRequest};

/// Keys per page of a full sync, at least. etcd (3.4) walks the rest of the
/// range on every page to count it, so the pages of a large directory grow
/// (`full_sync_page`): the walks cost about n²/(2·page) steps in all.
pub const FULL_SYNC_PAGE: u32 = 5000;
/// At most: 25,000 developers are about 12 MB of JSON, held by the syncer's
/// worker while it reads them (its memory stays at that high-water mark).
pub const MAX_FULL_SYNC_PAGE: u32 = 25_000;

/// The page size for a full sync of `count` developers: a fortieth of them,
/// within [`FULL_SYNC_PAGE`, `MAX_FULL_SYNC_PAGE`].
pub fn full_sync_page(count: u64) -> u32 {
    page_within(count, (FULL_SYNC_PAGE, MAX_FULL_SYNC_PAGE))
}

fn page_within(count: u64, (least, most): (u32, u32)) -> u32 {
    u32::try_from(count / 40).unwrap_or(u32::MAX).clamp(least, most)
}

/// A full sync of more than this many pages plans the key space first
/// (`plan`): below it, etcd's counting costs less than the plan's transactions.
pub const PLAN_ABOVE_PAGES: u64 = 10;
/// The plan cuts a span of more than this many pages. Paging a span of four
/// walks ten pages' worth of keys in etcd, while the gateway applies the
/// pages; each cut is a transaction the sync waits for (at 1M developers, 2
/// transactions instead of 12 with two pages: 0.25 s sooner).
pub const CUT_ABOVE_PAGES: u64 = 4;
/// The change feed reads log entries written up to this long before the
/// cycle, by their writers' clocks: a later entry of a writer whose clock is
/// further behind is found by the next reconciliation instead.
pub const FEED_LOOKBACK_MS: u64 = 60_000;
/// Developer keys per part of a reconciliation: each cycle reads one part for
/// changes, so a cycle's cost is bounded whatever the directory's size.
pub const RECONCILE_PART: usize = 50_000;
/// Developers read per transaction of the change feed (etcd allows 128 operations).
pub const FEED_CHUNK: usize = 100;

/// Keys per page when listing a part of the directory to find deletions.
pub const KEY_PAGE: u32 = 20_000;

/// What a syncer needs to keep its role during a long step: its worker, the
/// role's stall time, and the host's clock.
#[derive(Clone, Copy)]
pub struct KeepAlive {
    pub worker: u64,
    pub stall_ms: u64,
    pub clock: fn() -> u64,
}

pub struct Syncer {
    namespace: String,
    /// Set by the driver that elects this syncer (`SyncDriver::with_clock`).
    keep_alive: Option<KeepAlive>,
    /// `<key_prefix>dev/`: the keys that are developers.
    prefix: Vec<u8>,
    /// Developers to create once, from the configuration (etcd mode's demo seed).
    seed: Option<EtcdRequest>,
    /// What the replica holds, as of `revision`; empty until a full sync.
    known: Known,
    revision: Option<u64>,
    /// The full sync in progress replaces newer revisions in the replica: etcd
    /// answered with a lower revision than the replica reflects.
    overwrite: bool,
    /// The page size of the full sync in progress (`full_sync_page`).
    full_page_size: u32,
    /// The least and most a full sync's page may be (tests make them small).
    page_bounds: (u32, u32),
    /// `<key_prefix>events/`: the change log the feed reads.
    log_prefix: Vec<u8>,
    /// When the current cycle began.
    cycle_started_ms: u64,
    /// The revision the last reconciliation (or full sync) started at: the
    /// next one looks at every change after it. The feed moves `revision` on
    /// past writes it does not know of; this one stays.
    reconciled: u64,
    /// The reconciliation in progress, one part per cycle.
    pass: Option<ReconcilePass>,
    /// Known keys per part of a reconciliation (`RECONCILE_PART`).
    part_size: usize,
    /// Tabs edited in place since they were last rebuilt, and the parts of
    /// them edited: rebuilt at the end of each reconciliation pass, so no
    /// drift outlives a pass.
    edited: (Tabs, Parts),
    /// Reading and writing the directory's snapshot (`None`: off).
    snapshots: Option<snapshot::Snapshots>,
    /// This cycle began from a snapshot and has not ended: if it fails, the
    /// next one starts over (the change log since the snapshot is not read yet).
    loading_snapshot: bool,
    /// The next cycle first reads what changed after this revision (the
    /// snapshot's): other tools' writes since it.
    catch_up: Option<u64>,
    /// A cycle ended since the snapshot writer's last call.
    snapshot_step_due: bool,
    phase: Phase,
}

/// A reconciliation: the key space in parts of `RECONCILE_PART` known keys,
/// each read for changes after `since` in a cycle of its own.
struct ReconcilePass {
    since: u64,
    /// The revision when it began: the next pass reads changes after it.
    began_at: u64,
    /// `[start, end)` of the parts still to read, the next first.
    parts: VecDeque<(Vec<u8>, Vec<u8>)>,
}

/// The change feed between calls: the developers the log named, and the
/// chunk of them being read.
struct FeedRead {
    /// The revision of the log read: the replica reflects it once they are applied.
    revision: u64,
    emails: Vec<String>,
    chunk: (usize, usize),
    report: CycleReport,
}

/// A full sync between pages.
struct FullSync {
    /// The snapshot's revision, fixed by the first page.
    revision: Option<u64>,
    seen: Known,
    report: CycleReport,
    /// The end of the range being read, a page at a time.
    end: Vec<u8>,
    /// `[start, end)` of the ranges to read after it, the next first (a plan's).
    reads: VecDeque<(Vec<u8>, Vec<u8>)>,
    /// The last page, while the next one is on its way (`work` applies it).
    pending: Vec<etcd::Kv>,
}

/// A full sync of a large directory after its first page: the key space being
/// planned (`plan`), then read from `resume` on.
struct FullPlan {
    full: FullSync,
    plan: plan::Plan,
    resume: Vec<u8>,
}

enum Phase {
    Idle,
    Seeding,
    /// A worker that is not the syncer seeding on its own (see `seed_only`).
    SeedingOnly,
    Full(FullSync),
    FullPlan(FullPlan),
    /// Reading the change log.
    Feed,
    /// Reading the records the change log named.
    FeedRecords(FeedRead),
    /// Reconciliation: the keys of one part changed since the pass's `since`.
    /// The cycle reflects the feed's revision (a part is not the whole).
    Reconcile {
        feed_revision: u64,
        report: CycleReport,
    },
    /// The part holds fewer keys than known: list its keys (only) at that
    /// revision and tombstone the missing ones.
    Deletions(DeletionScan),
    /// A first sync from the snapshot: its `current` key,
    SnapshotCurrent,
    /// its parts, one by one,
    SnapshotPart(snapshot::Loading),
    /// The cycle after: the developers changed since it.
    SnapshotCatchUp,
}

/// Looking for deletions in one part of the key space, at one revision.
struct DeletionScan {
    revision: u64,
    feed_revision: u64,
    /// `[start, end)` of the part.
    part: (Vec<u8>, Vec<u8>),
    /// Keys seen so far in the part.
    listing: HashSet<String>,
    report: CycleReport,
}

/// What a finished cycle did, for logs and counters.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CycleReport {
    pub full: bool,
    pub changed: usize,
    pub removed: usize,
    pub unreadable: usize,
    /// Developers whose tab or place in it changed.
    pub relisted: usize,
    /// The tabs those changes touched, and their parts.
    pub tabs: Tabs,
    pub parts: Parts,
    /// Who they are, while there are at most `replica::MOVES_BY_EDIT` (the
    /// tabs are then edited, not rebuilt).
    pub moved: Vec<String>,
    /// Developers whose approval's end changed (or went), and who they are
    /// while there are at most `replica::ENDS_BY_EDIT`.
    pub ends_changed: usize,
    pub ends: Vec<String>,
    pub revision: u64,
    /// The first sync, from the snapshot.
    pub from_snapshot: bool,
    /// A full sync's plan of the key space: the transactions that counted it
    /// and the reads it made (0: not planned).
    pub plan: (usize, usize),
}

impl CycleReport {
    /// `email` left the `from` list for the `to` list (or its place in one changed).
    fn relist(&mut self, email: &str, from: Option<Status>, to: Option<Status>) {
        self.relisted += 1;
        self.tabs.add(from);
        self.tabs.add(to);
        if !self.full {
            // (A full sync rebuilds every part: no hash per developer.)
            self.parts.add(email);
        }
        if self.moved.len() <= replica::MOVES_BY_EDIT {
            self.moved.push(email.to_string());
        }
    }

    /// `email`'s approval's end changed, or went.
    fn end_changed(&mut self, email: &str) {
        self.ends_changed += 1;
        if self.ends.len() <= replica::ENDS_BY_EDIT {
            self.ends.push(email.to_string());
        }
    }

    /// Whether `moved` names every developer relisted.
    fn moves_are_few(&self) -> bool {
        self.moved.len() <= replica::MOVES_BY_EDIT && self.moved.len() == self.relisted
    }
}

pub enum Next {
    Call(EtcdRequest),
    Done(CycleReport),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncError {
    Etcd(EtcdError),
    Replica(WriteError),
}

impl std::fmt::Display for SyncError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SyncError::Etcd(error) => write!(f, "{error}"),
            SyncError::Replica(error) => write!(f, "cannot update the replica: {error}"),
        }
    }
}

impl From<WriteError> for SyncError {
    fn from(error: WriteError) -> SyncError {
        SyncError::Replica(error)
    }
}

impl Syncer {
    pub fn new(namespace: &str, key_prefix: &str, seed: Option<EtcdRequest>) -> Syncer {
        Syncer {
            namespace: namespace.to_string(),
            prefix: keys::etcd_developers(key_prefix).into_bytes(),
            seed,
            known: Known::new(),
            revision: None,
            overwrite: false,
            full_page_size: FULL_SYNC_PAGE,
            page_bounds: (FULL_SYNC_PAGE, MAX_FULL_SYNC_PAGE),
            log_prefix: crate::events::log_prefix(key_prefix).into_bytes(),
            cycle_started_ms: 0,
            reconciled: 0,
            pass: None,
            part_size: RECONCILE_PART,
            edited: Default::default(),
            snapshots: None,
            loading_snapshot: false,
            catch_up: None,
            snapshot_step_due: false,
            phase: Phase::Idle,
            keep_alive: None,
        }
    }

    /// First syncs from the directory's snapshot in etcd, and snapshots
    /// written now and then (`snapshot`); `log_retention_ms` is how long the
    /// change log keeps entries (an older snapshot is of no use).
    pub fn with_snapshots(mut self, key_prefix: &str, log_retention_ms: u64) -> Syncer {
        self.snapshots = Some(snapshot::Snapshots::new(key_prefix, log_retention_ms));
        self
    }

    pub fn in_cycle(&self) -> bool {
        !matches!(self.phase, Phase::Idle)
    }

    /// The seed, for a worker that does not hold the syncer role: every filter
    /// configuration of a namespace competes for that role, and one without the
    /// seed (an admin-only configuration, say) may win it. The seed is
    /// create-once in etcd, so any number of workers may send it.
    pub fn seed_only(&mut self) -> Option<EtcdRequest> {
        let seed = self.seed.clone()?;
        self.phase = Phase::SeedingOnly;
        Some(seed)
    }

    /// Starts a cycle at `now_ms`: the first call to make.
    pub fn begin(&mut self, now_ms: u64) -> EtcdRequest {
        self.cycle_started_ms = now_ms;
        if let Some(seed) = self.seed.clone() {
            self.phase = Phase::Seeding;
            return seed;
        }
        match (self.revision, self.catch_up) {
            (Some(_), Some(since)) => self.begin_catch_up(since),
            (Some(revision), None) => self.begin_feed(revision),
            (None, _) => self.begin_first(),
        }
    }

    /// The change log entries created after `revision`, among those named by a
    /// time from `FEED_LOOKBACK_MS` before the cycle on.
    fn begin_feed(&mut self, revision: u64) -> EtcdRequest {
        self.feed_request(self.cycle_started_ms.saturating_sub(FEED_LOOKBACK_MS), revision)
    }

    /// The change log entries created after `revision`, among those named by
    /// `since_ms` or later.
    fn feed_request(&mut self, since_ms: u64, revision: u64) -> EtcdRequest {
        self.phase = Phase::Feed;
        let mut start = self.log_prefix.clone();
        start.extend_from_slice(format!("{since_ms:016}").as_bytes());
        let end = etcd::prefix_end(&self.log_prefix);
        etcd::txn(vec![], vec![etcd::op_created_since(&start, &end, revision)], vec![])
    }

    /// The next part of the reconciliation (a new pass begins when none is
    /// in progress): its keys changed since the pass's `since`.
    fn begin_reconcile_part(&mut self, feed_revision: u64, report: CycleReport) -> EtcdRequest {
        if self.pass.is_none() {
            self.pass = Some(ReconcilePass {
                since: self.reconciled,
                began_at: feed_revision,
                parts: self.parts().into(),
            });
        }
        let (start, end, since) = match &self.pass {
            Some(pass) => match pass.parts.front() {
                Some((start, end)) => (start.clone(), end.clone(), pass.since),
                None => (self.prefix.clone(), etcd::prefix_end(&self.prefix), pass.since),
            },
            None => (self.prefix.clone(), etcd::prefix_end(&self.prefix), self.reconciled),
        };
        self.phase = Phase::Reconcile { feed_revision, report };
        etcd::range_changed_since(&start, &end, since)
    }

    fn begin_full(&mut self) -> EtcdRequest {
        self.pass = None;
        self.catch_up = None;
        let end = etcd::prefix_end(&self.prefix);
        let first = etcd::range_span(&self.prefix, &end, None, self.page_bounds.0);
        self.phase = Phase::Full(FullSync {
            revision: None,
            seen: Known::new(),
            report: CycleReport {
                full: true,
                ..CycleReport::default()
            },
            end,
            reads: VecDeque::new(),
            pending: Vec::new(),
        });
        first
    }

    /// The call failed or timed out: the cycle ends, the replica keeps what it
    /// has, and the next cycle starts over.
    pub fn abandon(&mut self) {
        self.phase = Phase::Idle;
        if std::mem::take(&mut self.loading_snapshot) {
            self.revision = None;
            self.known = Known::new();
            self.pass = None;
            self.catch_up = None;
        }
    }

    /// Feeds the answer to the last call.
    pub fn on_answer(
        &mut self,
        store: &dyn SharedStore,
        status: u32,
        body: &[u8],
        now_ms: u64,
    ) -> Result<Next, SyncError> {
        let result = self.step(store, status, body, now_ms);
        match result {
            Ok(Next::Call(_)) => {}
            Ok(Next::Done(_)) => self.phase = Phase::Idle,
            Err(_) => self.abandon(),
        }
        result
    }

    fn step(&mut self, store: &dyn SharedStore, status: u32, body: &[u8], now_ms: u64) -> Result<Next, SyncError> {
        match std::mem::replace(&mut self.phase, Phase::Idle) {
            Phase::Idle => Err(SyncError::Etcd(EtcdError::Malformed(
                "an answer arrived outside a sync cycle".into(),
            ))),
            Phase::Seeding => {
                // Created or already seeded earlier: either way, never again.
                etcd::parse_txn(status, body).map_err(SyncError::Etcd)?;
                self.seed = None;
                Ok(Next::Call(self.begin(now_ms)))
            }
            Phase::SeedingOnly => {
                etcd::parse_txn(status, body).map_err(SyncError::Etcd)?;
                self.seed = None;
                Ok(Next::Done(CycleReport::default()))
            }
            Phase::Full(full) => self.full_page(store, status, body, full, now_ms),
            Phase::FullPlan(planning) => self.full_plan(status, body, planning),
            Phase::Feed => self.feed(status, body),
            Phase::FeedRecords(read) => self.feed_records(store, status, body, read),
            Phase::Reconcile { feed_revision, report } => {
                self.reconcile_part(store, status, body, feed_revision, report, now_ms)
            }
            Phase::Deletions(scan) => self.deletions(store, status, body, scan, now_ms),
            Phase::SnapshotCurrent => self.snapshot_current(status, body, now_ms),
            Phase::SnapshotPart(loading) => self.snapshot_part(store, status, body, loading),
            Phase::SnapshotCatchUp => self.snapshot_catch_up(store, status, body),
        }
    }

    fn full_page(
        &mut self,
        store: &dyn SharedStore,
        status: u32,
        body: &[u8],
        mut full: FullSync,
        now_ms: u64,
    ) -> Result<Next, SyncError> {
        // The previous page, unless a tick applied it already (`work`).
        self.apply_pending(store, &mut full)?;
        let pinned = full.revision;
        let answer = match etcd::parse_range(status, body) {
            // The pinned revision was compacted between pages: start over.
            Err(EtcdError::Server {
                code: etcd::CODE_COMPACTED,
                ..
            }) if pinned.is_some() => return Ok(Next::Call(self.begin_full())),
            other => other.map_err(SyncError::Etcd)?,
        };
        if pinned.is_none() {
            full.seen.reserve_for(usize::try_from(answer.count).unwrap_or(0));
            // A replica ahead of etcd means etcd went back in time; its word wins.
            self.overwrite =
                replica::read_sync_state(store, &self.namespace).is_some_and(|state| state.revision > answer.revision);
            // The first page's count is the whole directory's.
            self.full_page_size = page_within(answer.count, self.page_bounds);
        }
        let revision = pinned.unwrap_or(answer.revision);
        full.revision = Some(revision);
        full.report.revision = revision;
        let page = self.full_page_size;
        let resume = answer
            .kvs
            .last()
            .filter(|_| answer.more)
            .map(|kv| [kv.key.as_slice(), &[0]].concat());
        full.pending = answer.kvs;
        let next = match resume {
            // A large directory's first page: the plan of the rest.
            Some(resume) if pinned.is_none() && answer.count > PLAN_ABOVE_PAGES * u64::from(page) => {
                // The first page's last key guides the first cut: the keys
                // after it likely share its prefix.
                let guide = resume.strip_suffix(&[0]).unwrap_or(&resume);
                let cut_above = CUT_ABOVE_PAGES * u64::from(page);
                let mut plan = plan::Plan::new(revision, &self.prefix, answer.count, cut_above, guide);
                match plan.next_cut() {
                    Some(call) => {
                        self.apply_pending(store, &mut full)?;
                        self.phase = Phase::FullPlan(FullPlan { full, plan, resume });
                        return Ok(Next::Call(call));
                    }
                    // Nothing to cut (the whole is above `cut_above`): read on.
                    None => Some(etcd::range_span(&resume, &full.end, Some(revision), page)),
                }
            }
            // More of this range: its next page.
            Some(resume) => Some(etcd::range_span(&resume, &full.end, Some(revision), page)),
            None => full.reads.pop_front().map(|(start, end)| {
                let call = etcd::range_span(&start, &end, Some(revision), page);
                full.end = end;
                call
            }),
        };
        if let Some(call) = next {
            // This page is applied at the next tick, or with the next answer:
            // the next page is on its way meanwhile.
            self.phase = Phase::Full(full);
            return Ok(Next::Call(call));
        }
        self.apply_pending(store, &mut full)?;
        // The snapshot is complete: whatever the replica had and etcd has not is gone.
        let FullSync { seen, mut report, .. } = full;
        self.replace_known(store, seen, revision, &mut report)?;
        self.overwrite = false;
        self.done(store, revision, report, now_ms)
    }

    fn apply_pending(&self, store: &dyn SharedStore, full: &mut FullSync) -> Result<(), SyncError> {
        for kv in std::mem::take(&mut full.pending) {
            self.apply_kv(store, &kv, &mut full.seen, &mut full.report)?;
        }
        Ok(())
    }

    /// Work left between calls: a full sync's page that is not applied yet.
    /// The driver calls it at ticks, after sending the next call.
    pub fn work(&mut self, store: &dyn SharedStore) -> Result<(), SyncError> {
        match std::mem::replace(&mut self.phase, Phase::Idle) {
            Phase::Full(mut full) => {
                let applied = self.apply_pending(store, &mut full);
                self.phase = Phase::Full(full);
                applied
            }
            other => {
                self.phase = other;
                Ok(())
            }
        }
    }

    /// The counts of one span's parts: the next span to cut, or the reads.
    fn full_plan(&mut self, status: u32, body: &[u8], planning: FullPlan) -> Result<Next, SyncError> {
        let FullPlan {
            mut full,
            mut plan,
            resume,
        } = planning;
        match etcd::parse_txn_reads(status, body) {
            Ok(counts) => plan.take_counts(&counts.ranges.iter().map(|range| range.count).collect::<Vec<_>>()),
            Err(EtcdError::Server {
                code: etcd::CODE_COMPACTED,
                ..
            }) => return Ok(Next::Call(self.begin_full())),
            // etcd refused the transaction (an etcd whose `--max-txn-ops` is
            // below 102, say): the rest is read without a plan, as it always can be.
            Err(_) => plan.give_up(),
        }
        full.report.plan.0 += 1;
        if let Some(call) = plan.next_cut() {
            self.phase = Phase::FullPlan(FullPlan { full, plan, resume });
            return Ok(Next::Call(call));
        }
        let revision = plan.revision;
        full.reads = plan.reads(&resume, u64::from(self.full_page_size));
        full.report.plan.1 = full.reads.len();
        // The first page said there was more: whatever the counts said, the
        // rest is read.
        let (start, end) = full
            .reads
            .pop_front()
            .unwrap_or_else(|| (resume, etcd::prefix_end(&self.prefix)));
        let call = etcd::range_span(&start, &end, Some(revision), self.full_page_size);
        full.end = end;
        self.phase = Phase::Full(full);
        Ok(Next::Call(call))
    }

    /// The whole directory as of `revision` is `seen` (a full read, or the
    /// snapshot): whatever the replica's tabs name and `seen` has not is
    /// tombstoned at `revision` (a newer record, from this gateway's admin
    /// API, stays), the tabs are rebuilt, and `seen` is what the syncer knows.
    fn replace_known(
        &mut self,
        store: &dyn SharedStore,
        seen: Known,
        revision: u64,
        report: &mut CycleReport,
    ) -> Result<(), SyncError> {
        // A part of a list at a time: at ten million developers the lists
        // name ten million keys, too many to hold at once beside `seen`.
        for list in Tabs::ALL.lists() {
            for part in 0..keys::PARTS {
                for email in replica::listed_in(store, &self.namespace, list, part)? {
                    if !seen.contains_key(&email)
                        && skip_collision(
                            replica::apply_with(
                                store,
                                &self.namespace,
                                &email,
                                revision,
                                Entry::Deleted,
                                self.write_mode(),
                            ),
                            report,
                        )?
                    {
                        report.removed += 1;
                    }
                }
            }
            self.keep_role(store);
        }
        for list in Tabs::ALL.lists() {
            replica::write_lists(store, &self.namespace, &seen, Tabs::only(list), Parts::ALL)?;
            self.keep_role(store);
        }
        replica::write_expiring(store, &self.namespace, &seen)?;
        self.edited = Default::default();
        self.known = seen;
        Ok(())
    }

    /// Refreshes this worker's hold on the syncer role in the middle of a long
    /// step (`keep_alive`). A step that outlasts the role's stall time (at ten
    /// million developers, the end of a full sync takes seconds) would
    /// otherwise let another worker take the role and start a second full
    /// sync, holding a second copy of the directory in its VM.
    fn keep_role(&self, store: &dyn SharedStore) {
        if let Some(alive) = self.keep_alive {
            elect(store, &self.namespace, alive.worker, (alive.clock)(), alive.stall_ms);
        }
    }

    /// The change log's answer: the developers it names are read next.
    fn feed(&mut self, status: u32, body: &[u8]) -> Result<Next, SyncError> {
        let reads = etcd::parse_txn_reads(status, body).map_err(SyncError::Etcd)?;
        let last = self.revision.unwrap_or(0);
        if reads.revision < last {
            // etcd went back in time (restored from a backup): trust nothing.
            self.revision = None;
            return Ok(Next::Call(self.begin_full()));
        }
        let mut emails: Vec<String> = Vec::new();
        for kv in reads.ranges.into_iter().flat_map(|range| range.kvs) {
            match serde_json::from_slice::<crate::events::Change>(&kv.value) {
                Ok(change) if !emails.contains(&change.email) => emails.push(change.email),
                Ok(_) => {}
                // The next reconciliation finds what it changed.
                Err(_) => log::warn!(
                    "devportal-gate: a change log entry is not readable: {:?}",
                    String::from_utf8_lossy(&kv.key)
                ),
            }
        }
        let read = FeedRead {
            revision: reads.revision,
            emails,
            chunk: (0, 0),
            report: CycleReport {
                revision: reads.revision,
                ..CycleReport::default()
            },
        };
        self.next_feed_chunk(read)
    }

    /// Reads the next chunk of the developers the log named; once all are
    /// applied, one part of the reconciliation follows.
    fn next_feed_chunk(&mut self, mut read: FeedRead) -> Result<Next, SyncError> {
        let start = read.chunk.1;
        let ops: Vec<serde_json::Value> = read
            .emails
            .get(start..)
            .unwrap_or_default()
            .iter()
            .take(FEED_CHUNK)
            .map(|email| {
                let mut key = self.prefix.clone();
                key.extend_from_slice(email.as_bytes());
                etcd::op_get(&key)
            })
            .collect();
        if !ops.is_empty() {
            read.chunk = (start, start + ops.len());
            self.phase = Phase::FeedRecords(read);
            return Ok(Next::Call(etcd::txn(vec![], ops, vec![])));
        }
        let FeedRead { revision, report, .. } = read;
        Ok(Next::Call(self.begin_reconcile_part(revision, report)))
    }

    /// The records of one chunk of the developers the log named: each is
    /// applied as it is now; one that is gone is tombstoned.
    fn feed_records(
        &mut self,
        store: &dyn SharedStore,
        status: u32,
        body: &[u8],
        mut read: FeedRead,
    ) -> Result<Next, SyncError> {
        let reads = etcd::parse_txn_reads(status, body).map_err(SyncError::Etcd)?;
        let asked = read.emails.get(read.chunk.0..read.chunk.1).unwrap_or_default().to_vec();
        if reads.ranges.len() != asked.len() {
            return Err(SyncError::Etcd(EtcdError::Malformed(
                "fewer answers than developers asked for".into(),
            )));
        }
        for (email, range) in asked.iter().zip(reads.ranges) {
            match range.kvs.first() {
                Some(kv) => {
                    let mut known = std::mem::take(&mut self.known);
                    let applied = self.apply_kv(store, kv, &mut known, &mut read.report);
                    self.known = known;
                    applied?;
                }
                None => self.forget(store, email, reads.revision, &mut read.report)?,
            }
        }
        self.next_feed_chunk(read)
    }

    /// One part of the reconciliation: its changed keys are applied; a count
    /// lower than the keys known in it means a deletion (its keys are listed
    /// next), a higher one that the syncer lost track (a full sync).
    fn reconcile_part(
        &mut self,
        store: &dyn SharedStore,
        status: u32,
        body: &[u8],
        feed_revision: u64,
        mut report: CycleReport,
        now_ms: u64,
    ) -> Result<Next, SyncError> {
        let answer = etcd::parse_range(status, body).map_err(SyncError::Etcd)?;
        if answer.revision < self.revision.unwrap_or(0) {
            // etcd went back in time (restored from a backup): trust nothing.
            self.revision = None;
            return Ok(Next::Call(self.begin_full()));
        }
        let Some((start, end)) = self.pass.as_ref().and_then(|pass| pass.parts.front().cloned()) else {
            return Err(SyncError::Etcd(EtcdError::Malformed("no part being reconciled".into())));
        };
        let mut known = std::mem::take(&mut self.known);
        for kv in &answer.kvs {
            self.apply_kv(store, kv, &mut known, &mut report)?;
        }
        self.known = known;
        let here = self.known_in(&start, &end).count() as u64;
        if answer.count > here {
            // More keys than the syncer knows of cannot happen; trust nothing.
            return Ok(Next::Call(self.begin_full()));
        }
        if answer.count < here {
            let scan = DeletionScan {
                revision: answer.revision,
                feed_revision,
                part: (start.clone(), end),
                listing: HashSet::new(),
                report,
            };
            return Ok(self.list_from(start, scan));
        }
        self.part_done(store, feed_revision, report, now_ms)
    }

    /// A part is reconciled: the pass moves on (and ends after its last part),
    /// the tabs follow, and the cycle ends at the feed's revision.
    fn part_done(
        &mut self,
        store: &dyn SharedStore,
        feed_revision: u64,
        report: CycleReport,
        now_ms: u64,
    ) -> Result<Next, SyncError> {
        let mut rebuild = Default::default();
        if let Some(pass) = self.pass.as_mut() {
            pass.parts.pop_front();
            if pass.parts.is_empty() {
                self.reconciled = pass.began_at;
                self.pass = None;
                rebuild = std::mem::take(&mut self.edited);
            }
        }
        self.follow_in_tabs(store, &report, rebuild)?;
        self.follow_in_expiring(store, &report)?;
        self.done(store, feed_revision, report, now_ms)
    }

    /// The tabs follow the developers `report` relisted: edited in place when
    /// they are few (those parts are rebuilt at the pass's end), the parts
    /// they are in rebuilt now otherwise; the parts in `rebuild` are rebuilt
    /// either way (and then the moves with them).
    fn follow_in_tabs(
        &mut self,
        store: &dyn SharedStore,
        report: &CycleReport,
        rebuild: (Tabs, Parts),
    ) -> Result<(), SyncError> {
        let (mut tabs, mut parts) = rebuild;
        if report.relisted > 0 {
            if report.moves_are_few() && tabs.is_empty() {
                let edited = replica::move_in_lists(store, &self.namespace, &self.known, &report.moved, report.tabs)?;
                self.edited = (self.edited.0.union(report.tabs), self.edited.1.union(edited));
            } else {
                tabs = tabs.union(report.tabs);
                parts = parts.union(report.parts);
            }
        }
        if !tabs.is_empty() {
            replica::write_lists(store, &self.namespace, &self.known, tabs, parts)?;
        }
        Ok(())
    }

    /// The list of ends follows the ends `report` changed: edited when they
    /// are few, rewritten otherwise.
    fn follow_in_expiring(&self, store: &dyn SharedStore, report: &CycleReport) -> Result<(), SyncError> {
        if report.ends_changed == 0 {
            Ok(())
        } else if report.ends.len() == report.ends_changed && report.ends_changed <= replica::ENDS_BY_EDIT {
            Ok(replica::edit_expiring(
                store,
                &self.namespace,
                &self.known,
                &report.ends,
            )?)
        } else {
            Ok(replica::write_expiring(store, &self.namespace, &self.known)?)
        }
    }

    /// A cycle ends: the replica reflects `revision`, as of now. The snapshot
    /// writer may make one call before the next (`snapshot_chore`).
    fn done(
        &mut self,
        store: &dyn SharedStore,
        revision: u64,
        mut report: CycleReport,
        now_ms: u64,
    ) -> Result<Next, SyncError> {
        self.revision = Some(revision);
        if report.full {
            self.reconciled = revision;
        }
        report.from_snapshot = std::mem::take(&mut self.loading_snapshot);
        replica::write_sync_state(
            store,
            &self.namespace,
            SyncState {
                revision,
                synced_at_ms: now_ms,
            },
        )?;
        self.snapshot_step_due = true;
        Ok(Next::Done(report))
    }

    fn write_mode(&self) -> WriteMode {
        if self.overwrite {
            WriteMode::Overwrite
        } else {
            WriteMode::Monotonic
        }
    }

    /// The key space split into parts of `RECONCILE_PART` known keys, as etcd
    /// key ranges covering the whole prefix (one part for a small directory).
    fn parts(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        let per_bucket = self.part_size.max(1);
        let mut starts: Vec<Vec<u8>> = vec![self.prefix.clone()];
        starts.extend(self.known.keys().skip(per_bucket).step_by(per_bucket).map(|email| {
            let mut key = self.prefix.clone();
            key.extend_from_slice(email.as_bytes());
            key
        }));
        let mut ends: Vec<Vec<u8>> = starts.iter().skip(1).cloned().collect();
        ends.push(etcd::prefix_end(&self.prefix));
        starts.into_iter().zip(ends).collect()
    }

    /// The known developers in `[start, end)` (etcd keys).
    fn known_in(&self, start: &[u8], end: &[u8]) -> impl Iterator<Item = &str> {
        let part = |key: &[u8]| {
            String::from_utf8_lossy(key.strip_prefix(self.prefix.as_slice()).unwrap_or_default()).into_owned()
        };
        let from = part(start);
        // An end past the prefix (its `prefix_end`): to the last developer.
        let to = end.starts_with(&self.prefix).then(|| part(end));
        self.known.range(&from, to.as_deref())
    }

    fn deletions(
        &mut self,
        store: &dyn SharedStore,
        status: u32,
        body: &[u8],
        mut scan: DeletionScan,
        now_ms: u64,
    ) -> Result<Next, SyncError> {
        let answer = etcd::parse_range(status, body);
        if is_compacted(&answer) {
            return Ok(Next::Call(self.begin_full()));
        }
        let answer = answer.map_err(SyncError::Etcd)?;
        for kv in &answer.kvs {
            if let Some(suffix) = kv.key.strip_prefix(self.prefix.as_slice()) {
                scan.listing.insert(String::from_utf8_lossy(suffix).into_owned());
            }
        }
        if answer.more {
            if let Some(mut next) = answer.kvs.last().map(|kv| kv.key.clone()) {
                next.push(0);
                return Ok(self.list_from(next, scan));
            }
        }
        // The part is listed: whatever is known in it and absent is gone.
        let DeletionScan {
            revision,
            feed_revision,
            part: (start, end),
            listing,
            mut report,
        } = scan;
        let gone: Vec<String> = self
            .known_in(&start, &end)
            .filter(|email| !listing.contains(*email))
            .map(str::to_string)
            .collect();
        for email in gone {
            self.forget(store, &email, revision, &mut report)?;
        }
        self.part_done(store, feed_revision, report, now_ms)
    }

    /// `email` is gone from etcd (as of `revision`): out of what the syncer
    /// knows and of its tab, and tombstoned in the replica.
    fn forget(
        &mut self,
        store: &dyn SharedStore,
        email: &str,
        revision: u64,
        report: &mut CycleReport,
    ) -> Result<(), SyncError> {
        if let Some(listed) = self.known.remove(email) {
            report.relist(email, listed.status, None);
            if listed.expires_ms.is_some() {
                report.end_changed(email);
            }
        }
        // A name that is not an address was never written (`apply_kv`).
        if !crate::directory::bucket::storable(email) {
            return Ok(());
        }
        let deleted = replica::apply_with(
            store,
            &self.namespace,
            email,
            revision,
            Entry::Deleted,
            WriteMode::Monotonic,
        );
        if skip_collision(deleted, report)? {
            report.removed += 1;
        }
        Ok(())
    }

    /// Lists the part of `scan` (keys only), from key `from` on.
    fn list_from(&mut self, from: Vec<u8>, scan: DeletionScan) -> Next {
        let end = scan.part.1.clone();
        let call = etcd::key_page(&from, &end, scan.revision, KEY_PAGE);
        self.phase = Phase::Deletions(scan);
        Next::Call(call)
    }

    fn apply_kv(
        &self,
        store: &dyn SharedStore,
        kv: &etcd::Kv,
        into: &mut Known,
        report: &mut CycleReport,
    ) -> Result<(), SyncError> {
        let Some(suffix) = kv.key.strip_prefix(self.prefix.as_slice()) else {
            return Ok(());
        };
        let name = String::from_utf8_lossy(suffix).into_owned();
        // A key that is not a canonical address is never looked up: count it
        // (etcd does) but leave the replica alone.
        if crate::request::email::canonical_email(&name).ok().as_deref() != Some(name.as_str())
            || name.as_bytes() != suffix
        {
            report.unreadable += 1;
            into.insert(name, Listed::unreadable());
            return Ok(());
        }
        // Only what the replica and the tabs keep is read out of the record.
        let (listed, changed) = match Summary::from_stored(&name, &kv.value) {
            Ok(developer) => (
                Listed::new(
                    Some(developer.status),
                    developer.updated_ms,
                    developer.approval_expires_ms,
                ),
                skip_collision(
                    replica::apply_record(
                        store,
                        &self.namespace,
                        &name,
                        Record::present(developer.status, kv.mod_revision, developer.approval_expires_ms),
                        self.write_mode(),
                    ),
                    report,
                )?,
            ),
            Err(_) => {
                report.unreadable += 1;
                let changed = skip_collision(
                    replica::apply_with(
                        store,
                        &self.namespace,
                        &name,
                        kv.mod_revision,
                        Entry::Unreadable,
                        self.write_mode(),
                    ),
                    report,
                )?;
                (Listed::unreadable(), changed)
            }
        };
        // The tabs change with the listing, whoever wrote the replica first (an
        // admin request on this gateway usually has).
        let previous = into.insert(&name, listed);
        if !previous.is_some_and(|previous| previous.same_place(&listed)) {
            report.relist(&name, previous.and_then(|previous| previous.status), listed.status);
        }
        if previous.and_then(|previous| previous.expires_ms) != listed.expires_ms {
            report.end_changed(&name);
        }
        if changed {
            report.changed += 1;
        }
        Ok(())
    }
}

/// The revision a read was pinned to has been compacted away.
fn is_compacted<T>(result: &Result<T, EtcdError>) -> bool {
    matches!(
        result,
        Err(EtcdError::Server {
            code: etcd::CODE_COMPACTED,
            ..
        })
    )
}

/// A developer whose key shares its slot with another key on this host (Kong's
/// CRC-32 keys, see `directory::KeyChecked`) is skipped and counted as
/// unreadable, not a failed sync: one crafted address must not stop the whole
/// directory from syncing. That developer stays refused on this host.
fn skip_collision(result: Result<bool, WriteError>, report: &mut CycleReport) -> Result<bool, WriteError> {
    match result {
        Err(error) if error.collision => {
            log::warn!("devportal-gate: developer skipped: {error}");
            report.unreadable += 1;
            Ok(false)
        }
        other => other,
    }
}

// ---- Which worker syncs ------------------------------------------------------

/// A number no other worker of this gateway has: a CAS-incremented counter.
pub fn claim_worker_id(store: &dyn SharedStore, namespace: &str) -> Result<u64, StoreError> {
    let key = keys::workers(namespace);
    for _ in 0..MAX_CAS_ATTEMPTS {
        let (next, cas) = match store.get(&key)? {
            Some((bytes, cas)) => {
                let current: u64 = std::str::from_utf8(&bytes)
                    .ok()
                    .and_then(|t| t.parse().ok())
                    .unwrap_or(0);
                (current + 1, Some(cas))
            }
            None => (1, None),
        };
        match store.set(&key, next.to_string().as_bytes(), cas) {
            Ok(()) => return Ok(next),
            Err(StoreError::CasMismatch) => continue,
            Err(error) => return Err(error),
        }
    }
    Err(StoreError::CasMismatch)
}

/// Whether worker `me` is the syncer now: it keeps the role by refreshing its
/// heartbeat, and takes it when the holder's heartbeat is older than `stall_ms`.
pub fn elect(store: &dyn SharedStore, namespace: &str, me: u64, now_ms: u64, stall_ms: u64) -> bool {
    let key = keys::syncer(namespace);
    let Ok(current) = store.get(&key) else { return false };
    let cas = match &current {
        Some((bytes, cas)) => {
            let text = String::from_utf8_lossy(bytes);
            let mut fields = text.split(';');
            let holder: Option<u64> = fields.next().and_then(|f| f.parse().ok());
            let heartbeat: u64 = fields.next().and_then(|f| f.parse().ok()).unwrap_or(0);
            let stalled = now_ms.saturating_sub(heartbeat) > stall_ms;
            if holder != Some(me) && !stalled {
                return false;
            }
            Some(*cas)
        }
        None => None,
    };
    // Losing this CAS means another worker just refreshed or took the role.
    store.set(&key, format!("{me};{now_ms}").as_bytes(), cas).is_ok()
}

/// Which worker holds the syncer role and its last heartbeat, for the health page.
pub fn syncer_heartbeat(store: &dyn SharedStore, namespace: &str) -> Option<(u64, u64)> {
    let (bytes, _) = store.get(&keys::syncer(namespace)).ok()??;
    let text = String::from_utf8(bytes).ok()?;
    let (holder, heartbeat) = text.split_once(';')?;
    Some((holder.parse().ok()?, heartbeat.parse().ok()?))
}

#[cfg(test)]
mod tests;
