//! One worker's side of syncing, as a state machine the host only carries out:
//! on every tick it says which etcd call to send, if any; it takes each answer;
//! it keeps the syncer role (or takes it from a stalled holder), paces cycles by
//! the sync interval, sends a cycle's next call on the tick after the previous
//! answer (never from inside the answer's callback: Kong's engine crashes
//! there, docs/hosts.md), gives up on a call the host lost, and seeds from a
//! worker that does not hold the role.
//!
//! Every call the syncer makes is idempotent (reads, and the create-once seed),
//! so a call that fails on the way to etcd (refused, reset, timed out) is sent
//! again at the next tick, up to `RETRIES` times, before the cycle fails: with
//! several etcd members behind the upstream, the next attempt reaches another.

use std::collections::HashMap;

use super::{elect, Next, SyncError, Syncer};
use crate::directory::developer::{Developer, DeveloperAction};
use crate::directory::replica::{self, Entry};
use crate::directory::{keys, read_record, Found, Record, SharedStore, Status};
use crate::encoding::clock::rfc3339;
use crate::etcd::{self, EtcdError, EtcdRequest};
use crate::events::Change;

/// How often the election and the replica's age are looked at; the sync
/// interval is checked at this granularity.
pub const ELECTION_PERIOD_MS: u64 = 200;

/// How many times one call is sent again after a failure on the way to etcd.
pub const RETRIES: u8 = 2;

pub struct SyncDriver {
    namespace: String,
    worker: u64,
    syncer: Syncer,
    sync_interval_ms: u64,
    timeout_ms: u64,
    in_flight: Option<InFlight>,
    /// The cycle's next call, to send at the next tick; when the cycle began;
    /// how many times this call was already sent.
    next_call: Option<(EtcdRequest, u64, u8)>,
    last_cycle_ms: u64,
    last_election_ms: u64,
    /// The change log (events) is kept this long; the syncer deletes what is
    /// older once an hour (`None`: never, as in tests of syncing alone).
    pruning: Option<Pruning>,
    /// Approvals whose end this worker tried to record, at which revision.
    expiries_tried: HashMap<String, u64>,
    /// A chore's second call (the revoking write after the read), for the next tick.
    next_chore: Option<(EtcdRequest, CallKind)>,
}

struct Pruning {
    key_prefix: String,
    retention_ms: u64,
    last_ms: u64,
}

/// How often the syncer deletes expired change log entries.
pub const PRUNE_PERIOD_MS: u64 = 3_600_000;

/// An ended approval is recorded as revoked this long after its end: every
/// gateway already refuses it by its own clock, and a gateway whose clock is
/// up to this much ahead does not record it before the true end.
pub const EXPIRY_GRACE_MS: u64 = 1000;

#[derive(Clone)]
struct InFlight {
    token: u32,
    /// The call, to send again after a failure on the way; and how often it was.
    request: EtcdRequest,
    retries: u8,
    /// When the cycle began (a full sync of a large directory takes many calls).
    cycle_started_ms: u64,
    /// When this call was sent: the host's timeout applies to it alone.
    call_started_ms: u64,
    /// What the call is for: a cycle's, or one of the chores between cycles.
    kind: CallKind,
}

#[derive(Clone)]
enum CallKind {
    Cycle,
    /// The snapshot writer's call (`sync::snapshot`), between cycles.
    Snapshot,
    /// Deleting expired change log entries.
    Prune,
    /// Reading the document of an approval that has ended.
    ExpiryRead {
        email: String,
    },
    /// Recording an approval's end as a revocation (actor `expiry`).
    Expiry {
        email: String,
        revoked: Box<Developer>,
    },
}

/// What a tick asks the host to do.
pub enum Tick {
    Nothing,
    /// Send this call, then report with `sent` or `not_sent`.
    Send(EtcdRequest),
}

/// How a cycle (or a lone seed) ended, for the host's counters and log.
pub enum Outcome {
    /// Still going: the next call goes out at the next tick.
    Continues,
    Done {
        report: super::CycleReport,
        took_ms: u64,
    },
    Failed(SyncError),
}

impl SyncDriver {
    pub fn new(namespace: &str, worker: u64, syncer: Syncer, sync_interval_ms: u64, timeout_ms: u64) -> SyncDriver {
        SyncDriver {
            namespace: namespace.to_string(),
            worker,
            syncer,
            sync_interval_ms,
            timeout_ms,
            in_flight: None,
            next_call: None,
            last_cycle_ms: 0,
            last_election_ms: 0,
            pruning: None,
            expiries_tried: HashMap::new(),
            next_chore: None,
        }
    }

    /// The host's clock, for the syncer to keep its role during a long step
    /// (`Syncer::keep_role`).
    pub fn with_clock(mut self, clock: fn() -> u64) -> SyncDriver {
        let alive = super::KeepAlive {
            worker: self.worker,
            stall_ms: self.stall_ms(),
            clock,
        };
        self.syncer.keep_alive = Some(alive);
        self
    }

    /// Also keep etcd's change log to `retention_ms` (see `events`).
    pub fn with_pruning(mut self, key_prefix: &str, retention_ms: u64) -> SyncDriver {
        self.pruning = Some(Pruning {
            key_prefix: key_prefix.to_string(),
            retention_ms,
            last_ms: 0,
        });
        self
    }

    /// A syncer whose heartbeat is older than this is replaced.
    fn stall_ms(&self) -> u64 {
        (3 * self.sync_interval_ms).max(3000)
    }

    /// Called on every tick. A lost call (no answer long after the host's own
    /// timeout) ends its cycle here, reported as `Some(Outcome::Failed)`.
    pub fn tick(&mut self, store: &dyn SharedStore, now: u64) -> (Tick, Option<Outcome>) {
        let election_due = now.saturating_sub(self.last_election_ms) >= ELECTION_PERIOD_MS;
        if let Some(call) = self.in_flight.as_ref() {
            let mut lost = None;
            let overdue = now.saturating_sub(call.call_started_ms) > self.timeout_ms.saturating_mul(4);
            if overdue && !matches!(call.kind, CallKind::Cycle) {
                // Not a cycle's call: that chore gives up, the sync goes on.
                if let Some(call) = self.in_flight.take() {
                    self.chore_failed(call.kind, EtcdError::Unreachable("a call never answered".into()), now);
                }
            } else if overdue {
                lost = Some(self.fail(
                    SyncError::Etcd(EtcdError::Unreachable("a sync call never answered".into())),
                    now,
                ));
            }
            // Keep the role while the call is out.
            if election_due {
                self.last_election_ms = now;
                elect(store, &self.namespace, self.worker, now, self.stall_ms());
            }
            return (Tick::Nothing, lost);
        }
        if let Some((request, kind)) = self.next_chore.take() {
            return self.send_chore(request, kind, now);
        }
        if let Some((request, cycle_started_ms, retries)) = self.next_call.take() {
            self.in_flight = Some(InFlight {
                token: 0,
                request: request.clone(),
                retries,
                cycle_started_ms,
                call_started_ms: now,
                kind: CallKind::Cycle,
            });
            return (Tick::Send(request), None);
        }
        if !election_due {
            return (Tick::Nothing, None);
        }
        self.last_election_ms = now;
        if !elect(store, &self.namespace, self.worker, now, self.stall_ms()) {
            // Not the syncer: still send this configuration's seed, once.
            return match self.syncer.seed_only() {
                Some(seed) => {
                    self.pending(&seed, now, now);
                    (Tick::Send(seed), None)
                }
                None => (Tick::Nothing, None),
            };
        }
        // Right after a cycle: the snapshot writer's call (`sync::snapshot`),
        // in the pause, so it does not delay the next cycle.
        if let Some(request) = self.syncer.snapshot_chore(store, now) {
            return self.send_chore(request, CallKind::Snapshot, now);
        }
        if now.saturating_sub(self.last_cycle_ms) < self.sync_interval_ms {
            return (Tick::Nothing, None);
        }
        // Between two cycles, once an hour: expired change log entries go.
        if let Some(pruning) = self
            .pruning
            .as_mut()
            .filter(|p| now.saturating_sub(p.last_ms) >= PRUNE_PERIOD_MS)
        {
            pruning.last_ms = now;
            let (start, end) = crate::events::prunable(&pruning.key_prefix, now.saturating_sub(pruning.retention_ms));
            let request = etcd::txn(vec![], vec![etcd::op_delete_range(&start, &end)], vec![]);
            self.pending(&request, now, now);
            if let Some(call) = self.in_flight.as_mut() {
                call.kind = CallKind::Prune;
            }
            return (Tick::Send(request), None);
        }
        // Between two cycles: an approval that has ended is recorded as revoked.
        if let Some((request, kind)) = self.expiry_due(store, now) {
            return self.send_chore(request, kind, now);
        }
        let request = self.syncer.begin(now);
        self.pending(&request, now, now);
        (Tick::Send(request), None)
    }

    /// Sends a call that is not part of a cycle.
    fn send_chore(&mut self, request: EtcdRequest, kind: CallKind, now: u64) -> (Tick, Option<Outcome>) {
        self.pending(&request, now, now);
        if let Some(call) = self.in_flight.as_mut() {
            call.kind = kind;
        }
        (Tick::Send(request), None)
    }

    fn pending(&mut self, request: &EtcdRequest, cycle_started_ms: u64, now: u64) {
        self.in_flight = Some(InFlight {
            token: 0,
            request: request.clone(),
            retries: 0,
            cycle_started_ms,
            call_started_ms: now,
            kind: CallKind::Cycle,
        });
    }

    /// The first approval in this gateway's replica whose end has come (once
    /// per record revision: a write that lost its race is not tried again until
    /// the record changes), as the read of its document in etcd. The revoking
    /// write follows (`revoke_expired`). Every gateway's syncer may try; that
    /// write is conditioned on the revision read, so the fleet records each
    /// expiry exactly once.
    fn expiry_due(&mut self, store: &dyn SharedStore, now: u64) -> Option<(EtcdRequest, CallKind)> {
        let key_prefix = &self.pruning.as_ref()?.key_prefix;
        // From what the syncer knows: no read of the list of ends (which may be
        // long), and no pass over it unless an end has come.
        let ended = self.syncer.known.ended_by(now.saturating_sub(EXPIRY_GRACE_MS));
        for (email, _) in ended {
            let Found::Record(Record::Present {
                status: Status::Approved,
                revision,
                ..
            }) = read_record(store, &self.namespace, &email)
            else {
                continue;
            };
            if self.expiries_tried.get(&email) == Some(&revision) {
                continue;
            }
            self.expiries_tried.insert(email.clone(), revision);
            let read = etcd::get(&keys::etcd_developer(key_prefix, &email));
            return Some((read, CallKind::ExpiryRead { email }));
        }
        None
    }

    /// The write that records `email`'s ended approval as revoked, from its
    /// document as etcd holds it (`kv`); `None` when it is not an ended approval.
    fn revoke_expired(&self, email: &str, kv: &etcd::Kv, now: u64) -> Option<(EtcdRequest, CallKind)> {
        let key_prefix = &self.pruning.as_ref()?.key_prefix;
        let developer = Developer::from_stored(email, &kv.value).ok()?;
        let ends_ms = developer.approval_expires_ms?;
        if developer.status != Status::Approved || ends_ms + EXPIRY_GRACE_MS > now {
            return None;
        }
        let reason = format!("approval expired at {}", rfc3339(ends_ms));
        let revoked = developer
            .after(DeveloperAction::Revoke, "expiry", Some(&reason), now)
            .ok()??;
        let operation = format!("expiry{now:x}");
        let revoked = revoked.with_operation(&operation);
        let log: Vec<_> = Change::last_of(&revoked)
            .map(|change| change.log_entry(key_prefix, &operation))
            .into_iter()
            .collect();
        let request = etcd::replace(
            &keys::etcd_developer(key_prefix, email),
            &revoked.to_stored(),
            kv.mod_revision,
            &log,
        );
        Some((
            request,
            CallKind::Expiry {
                email: email.to_string(),
                revoked: Box::new(revoked),
            },
        ))
    }

    /// Sends `call` again at the next tick, if it has retries left.
    fn retry(&mut self, call: InFlight) -> bool {
        if call.retries >= RETRIES {
            return false;
        }
        self.next_call = Some((call.request, call.cycle_started_ms, call.retries + 1));
        true
    }

    /// The host sent the call that `tick` asked for.
    pub fn sent(&mut self, token: u32) {
        if let Some(call) = self.in_flight.as_mut() {
            call.token = token;
        }
    }

    /// The host could not send it.
    pub fn not_sent(&mut self, error: EtcdError, now: u64) -> Outcome {
        if let Some(call) = self.in_flight.take() {
            if !matches!(call.kind, CallKind::Cycle) {
                // `retry` would send it again as the cycle's next call.
                self.chore_failed(call.kind, error, now);
                return Outcome::Continues;
            }
            if self.retry(call) {
                return Outcome::Continues;
            }
        }
        self.fail(SyncError::Etcd(error), now)
    }

    /// A call between cycles failed: its answer, or the host could not send it,
    /// or it never answered. Each chore is tried again on its own schedule, and
    /// none of them is a sync that failed.
    fn chore_failed(&mut self, kind: CallKind, error: EtcdError, now: u64) {
        match kind {
            CallKind::Cycle => {}
            CallKind::Snapshot => self.syncer.snapshot_answer(Err(error), now),
            // Tried again at the next hour.
            CallKind::Prune => log::warn!("devportal-gate: could not delete expired change log entries: {error}"),
            // Both tried again between later cycles.
            CallKind::ExpiryRead { email } => {
                self.expiries_tried.remove(&email);
                log::warn!("devportal-gate: could not read {email}, whose approval ended: {error}")
            }
            CallKind::Expiry { email, .. } => {
                // The write is conditional: trying it again is safe.
                self.expiries_tried.remove(&email);
                log::warn!("devportal-gate: could not record the end of {email}'s approval: {error}")
            }
        }
    }

    /// An answer arrived; `None` when it is not for this driver's call (one
    /// it gave up on).
    pub fn on_answer(
        &mut self,
        store: &dyn SharedStore,
        token: u32,
        answer: Result<(u32, Vec<u8>), EtcdError>,
        now: u64,
    ) -> Option<Outcome> {
        if self.in_flight.as_ref().is_none_or(|call| call.token != token) {
            return None;
        }
        let call = self.in_flight.take()?;
        match call.kind {
            CallKind::Cycle => {}
            CallKind::Snapshot => {
                self.syncer.snapshot_answer(answer, now);
                return Some(Outcome::Continues);
            }
            CallKind::Prune => {
                if let Err(error) = answer.and_then(|(status, body)| etcd::parse_txn_reads(status, &body)) {
                    self.chore_failed(CallKind::Prune, error, now);
                }
                return Some(Outcome::Continues);
            }
            CallKind::ExpiryRead { email } => {
                match answer.and_then(|(status, body)| etcd::parse_range(status, &body)) {
                    Ok(range) => {
                        self.next_chore = range.kvs.first().and_then(|kv| self.revoke_expired(&email, kv, now));
                    }
                    Err(error) => self.chore_failed(CallKind::ExpiryRead { email }, error, now),
                }
                return Some(Outcome::Continues);
            }
            CallKind::Expiry { email, revoked } => {
                match answer.and_then(|(status, body)| etcd::parse_txn(status, &body)) {
                    Ok(txn) if txn.succeeded => {
                        log::info!(
                            "devportal-gate: the approval of {email} ended: recorded as revoked at etcd revision {}",
                            txn.revision
                        );
                        // This gateway knows at once; the others by their sync.
                        if replica::apply(store, &self.namespace, &email, txn.revision, Entry::Present(&revoked))
                            .is_ok()
                        {
                            let _ = replica::retab(
                                store,
                                &self.namespace,
                                &email,
                                Some(Status::Approved),
                                Some((Status::Revoked, revoked.updated_ms)),
                            );
                        }
                    }
                    // Another gateway recorded it, or the record changed: the sync brings it.
                    Ok(_) => {}
                    Err(error) => self.chore_failed(CallKind::Expiry { email, revoked }, error, now),
                }
                return Some(Outcome::Continues);
            }
        }
        let cycle_started_ms = call.cycle_started_ms;
        if answer.as_ref().is_err_and(EtcdError::transport) && self.retry(call) {
            return Some(Outcome::Continues);
        }
        let result = match answer {
            Ok((status, body)) => self.syncer.on_answer(store, status, &body, now),
            Err(error) => Err(SyncError::Etcd(error)),
        };
        Some(match result {
            Ok(Next::Call(request)) => {
                self.next_call = Some((request, cycle_started_ms, 0));
                Outcome::Continues
            }
            Ok(Next::Done(report)) => {
                self.last_cycle_ms = now;
                Outcome::Done {
                    report,
                    took_ms: now.saturating_sub(cycle_started_ms),
                }
            }
            Err(error) => self.fail(error, now),
        })
    }

    /// The cycle's work between calls (a full sync's last page): at ticks,
    /// after the next call went out, so etcd prepares it meanwhile.
    pub fn work(&mut self, store: &dyn SharedStore, now: u64) -> Option<Outcome> {
        match self.syncer.work(store) {
            Ok(()) => None,
            Err(error) => Some(self.fail(error, now)),
        }
    }

    /// The cycle's next call is ready and is a range read, which may go out
    /// over gRPC at once (`host::root`: from gRPC's own callback, which only
    /// Envoy has) instead of at the next tick.
    pub fn range_read_ready(&self) -> bool {
        self.in_flight.is_none()
            && self.next_chore.is_none()
            && self
                .next_call
                .as_ref()
                .is_some_and(|(request, _, _)| request.grpc_range.is_some())
    }

    fn fail(&mut self, error: SyncError, now: u64) -> Outcome {
        self.syncer.abandon();
        self.in_flight = None;
        self.next_call = None;
        self.last_cycle_ms = now;
        Outcome::Failed(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::{lookup, Lookup, MemoryStore, Status};
    use crate::etcd::fake::FakeEtcd;
    use crate::sync::claim_worker_id;

    /// Clock readings are milliseconds since the epoch: far from 0.
    const T: u64 = 1_000_000;

    fn driver(store: &MemoryStore, seed: bool) -> SyncDriver {
        let worker = claim_worker_id(store, "ns").unwrap();
        let seed = seed
            .then(|| crate::directory::seed::etcd_once("/dp/", &[("a@x.io".into(), Status::Approved)], 1))
            .flatten();
        SyncDriver::new("ns", worker, Syncer::new("ns", "/dp/", seed), 1000, 2000)
    }

    /// Ticks every 20 ms until `until`, answering each call from `etcd` at once;
    /// returns how many calls went out.
    fn run(driver: &mut SyncDriver, store: &MemoryStore, etcd: &mut FakeEtcd, from: u64, until: u64) -> usize {
        let mut calls = 0;
        let mut now = from;
        while now < until {
            if let (Tick::Send(request), _) = driver.tick(store, now) {
                calls += 1;
                driver.sent(calls as u32);
                let answer = etcd.answer(&request);
                // Never a call from inside the answer: only ticks send.
                driver.on_answer(store, calls as u32, Ok(answer), now);
            }
            now += 20;
        }
        calls
    }

    /// The end of a full sync takes seconds at ten million developers, with no
    /// tick in between: the syncer refreshes its role meanwhile, by the host's
    /// clock, so another worker does not take it and start a second full sync.
    #[test]
    fn a_long_end_of_a_full_sync_keeps_the_role() {
        thread_local! {
            static CLOCK: std::cell::Cell<u64> = const { std::cell::Cell::new(T) };
        }
        // Every reading is a second later: each step of the end takes one.
        fn slow_clock() -> u64 {
            CLOCK.with(|clock| {
                clock.set(clock.get() + 1000);
                clock.get()
            })
        }
        let store = MemoryStore::default();
        let mut etcd = FakeEtcd::default();
        for i in 0..50 {
            let developer = Developer::register(
                &format!("d{i}@x.io"),
                Status::Approved,
                serde_json::Map::new(),
                "ops",
                T,
            );
            etcd.put(&format!("/dp/dev/d{i}@x.io"), &developer.to_stored());
        }
        let mut first = driver(&store, false).with_clock(slow_clock);
        let other = claim_worker_id(&store, "ns").unwrap();
        run(&mut first, &store, &mut etcd, T, T + 200);
        assert!(
            crate::directory::replica::read_sync_state(&store, "ns").is_some(),
            "synced"
        );
        let (holder, heartbeat) = super::super::syncer_heartbeat(&store, "ns").unwrap();
        assert_eq!(holder, first.worker);
        // Ten steps (the lists read, the lists written), a second each.
        assert!(heartbeat >= T + 10_000, "the heartbeat stayed at {heartbeat}");
        // Three seconds after the last tick, the role is still held.
        assert!(!elect(&store, "ns", other, T + 200 + 3_500, first.stall_ms()));
    }

    /// Two gateways' syncers over one etcd, the second's clock `skew_ms`
    /// ahead; returns the etcd record of a developer whose approval ends 5 s in.
    /// Also: whether etcd said revoked 400 ms before the end, by the true time.
    fn expire_with_two_gateways(skew_ms: u64) -> (Developer, bool, Vec<MemoryStore>) {
        let mut etcd = FakeEtcd::default();
        let start = 10 * PRUNE_PERIOD_MS;
        let ends = start + 5000;
        let approved = Developer::register("a@x.io", Status::Approved, serde_json::Map::new(), "ops", start)
            .with_expiry(Some(ends));
        etcd.put("/dp/dev/a@x.io", &approved.to_stored());
        let mut gateways: Vec<(MemoryStore, SyncDriver, u64)> = [0, skew_ms]
            .into_iter()
            .map(|skew| {
                let store = MemoryStore::default();
                let driver = driver(&store, false).with_pruning("/dp/", 10 * PRUNE_PERIOD_MS);
                (store, driver, skew)
            })
            .collect();
        let read =
            |etcd: &FakeEtcd| Developer::from_stored("a@x.io", &etcd.kvs[&b"/dp/dev/a@x.io".to_vec()].0).unwrap();
        let mut revoked_early = false;
        let mut now = start;
        while now < ends + 4000 {
            for (store, driver, skew) in &mut gateways {
                run(driver, store, &mut etcd, now + *skew, now + *skew + 200);
            }
            now += 200;
            if now == ends - 400 {
                revoked_early = read(&etcd).status == Status::Revoked;
            }
        }
        assert_eq!(
            etcd.kvs.keys().filter(|k| k.starts_with(b"/dp/events/")).count(),
            1,
            "one event"
        );
        (
            read(&etcd),
            revoked_early,
            gateways.into_iter().map(|(store, ..)| store).collect(),
        )
    }

    #[test]
    fn an_ended_approval_is_recorded_as_revoked_once_in_the_fleet() {
        let (stored, revoked_early, stores) = expire_with_two_gateways(0);
        assert!(!revoked_early);
        assert_eq!(stored.status, Status::Revoked);
        let by_expiry: Vec<_> = stored.history.iter().filter(|t| t.actor == "expiry").collect();
        assert_eq!(by_expiry.len(), 1, "{:?}", stored.history);
        assert!(by_expiry[0]
            .reason
            .as_deref()
            .unwrap()
            .starts_with("approval expired at"));
        for store in &stores {
            assert_eq!(lookup(store, "ns", "a@x.io"), Lookup::Found(Status::Revoked));
        }
    }

    /// Clock skew: every gateway's gate refuses by its own clock (a gateway a
    /// second ahead refuses a second early), but the revocation is recorded
    /// `EXPIRY_GRACE_MS` after the end, so a clock up to that much ahead does
    /// not record it before the true end, and it is recorded once.
    #[test]
    fn with_a_clock_a_second_ahead_the_end_is_recorded_once_and_not_early() {
        let (stored, revoked_early, _) = expire_with_two_gateways(EXPIRY_GRACE_MS);
        let by_expiry: Vec<_> = stored.history.iter().filter(|t| t.actor == "expiry").collect();
        assert_eq!(by_expiry.len(), 1, "{:?}", stored.history);
        assert!(!revoked_early, "not recorded before the true end");
        // Sweeps run between cycles, once per sync interval (1 s here): a clock
        // 2 s further ahead than the grace records at least a second early.
        let (_, revoked_early, _) = expire_with_two_gateways(EXPIRY_GRACE_MS + 2000);
        assert!(revoked_early, "a clock further ahead than the grace does record early");
    }

    #[test]
    fn the_syncer_deletes_expired_change_log_entries_once_an_hour() {
        let store = MemoryStore::default();
        let mut etcd = FakeEtcd::default();
        let now = 10 * PRUNE_PERIOD_MS;
        let old = crate::events::log_key("/dp/", now - 3 * PRUNE_PERIOD_MS, "op", "a@x.io");
        let recent = crate::events::log_key("/dp/", now - PRUNE_PERIOD_MS / 2, "op", "b@x.io");
        for key in [&old, &recent] {
            etcd.put(std::str::from_utf8(key).unwrap(), b"{}");
        }
        let mut driver = driver(&store, false).with_pruning("/dp/", 2 * PRUNE_PERIOD_MS);
        run(&mut driver, &store, &mut etcd, now, now + 3000);
        assert!(!etcd.kvs.contains_key(&old), "older than the retention: deleted");
        assert!(etcd.kvs.contains_key(&recent), "within the retention: kept");
        // And the cycles went on.
        assert!(crate::directory::replica::read_sync_state(&store, "ns").is_some());
        let expired = crate::events::log_key("/dp/", now - 3 * PRUNE_PERIOD_MS, "op2", "c@x.io");
        etcd.put(std::str::from_utf8(&expired).unwrap(), b"{}");
        run(&mut driver, &store, &mut etcd, now + 3000, now + 6000);
        assert!(etcd.kvs.contains_key(&expired), "not pruned again within the hour");
        let next_hour = now + PRUNE_PERIOD_MS;
        run(&mut driver, &store, &mut etcd, next_hour, next_hour + 3000);
        assert!(!etcd.kvs.contains_key(&expired), "pruned the next hour");
    }

    /// `run`, except that the host cannot send the calls `refuse` picks;
    /// returns how many it refused. Fails on any failed sync.
    fn run_refusing(
        driver: &mut SyncDriver,
        store: &MemoryStore,
        etcd: &mut FakeEtcd,
        (from, until): (u64, u64),
        refuse: impl Fn(&EtcdRequest) -> bool,
    ) -> usize {
        let (mut calls, mut refused) = (0, 0);
        let mut now = from;
        while now < until {
            let (tick, lost) = driver.tick(store, now);
            assert!(lost.is_none(), "a call was lost at {now}");
            if let Tick::Send(request) = tick {
                let outcome = if refuse(&request) {
                    refused += 1;
                    Some(driver.not_sent(EtcdError::NotSent("no route".into()), now))
                } else {
                    calls += 1;
                    driver.sent(calls);
                    driver.on_answer(store, calls, Ok(etcd.answer(&request)), now)
                };
                assert!(!matches!(outcome, Some(Outcome::Failed(_))), "a sync failed at {now}");
            }
            now += 20;
        }
        refused
    }

    /// A chore's call is not a cycle's: if the host cannot send it, it is not
    /// sent again as the cycle's next call (whose answer the syncer would take
    /// for its own), and no sync failed. Each chore comes back on its own.
    #[test]
    fn a_chore_the_host_could_not_send_comes_back_on_its_own_schedule() {
        let store = MemoryStore::default();
        let mut etcd = FakeEtcd::default();
        let now = 10 * PRUNE_PERIOD_MS;
        let approved = Developer::register("a@x.io", Status::Approved, serde_json::Map::new(), "ops", now - 60_000)
            .with_expiry(Some(now - 30_000));
        etcd.put("/dp/dev/a@x.io", &approved.to_stored());
        let mut driver = driver(&store, false).with_pruning("/dp/", 2 * PRUNE_PERIOD_MS);
        let prune = |request: &EtcdRequest| request.body.contains("request_delete_range");
        let read_a = etcd::get(&keys::etcd_developer("/dp/", "a@x.io"));
        let refused = run_refusing(&mut driver, &store, &mut etcd, (now, now + 5000), |request| {
            prune(request) || *request == read_a
        });
        // The prune once (not again this hour); the read of a@x.io's document once
        // per sweep until it is recorded: it never is here.
        assert!(refused >= 3, "{refused} calls refused");
        // Still approved in etcd; the gate refuses it by its own clock.
        let at = || now + 5000;
        assert_eq!(
            crate::directory::lookup_at(&store, "ns", "a@x.io", at),
            Lookup::Expired(now - 30_000)
        );
        assert!(crate::directory::replica::read_sync_state(&store, "ns").is_some());
        // Once the host can send it, the end is recorded.
        let refused = run_refusing(&mut driver, &store, &mut etcd, (now + 5000, now + 8000), prune);
        assert_eq!(refused, 0, "the prune waits for the next hour");
        let stored = Developer::from_stored("a@x.io", &etcd.kvs[&b"/dp/dev/a@x.io".to_vec()].0).unwrap();
        assert_eq!(stored.status, Status::Revoked);
        let refused = run_refusing(
            &mut driver,
            &store,
            &mut etcd,
            (now + PRUNE_PERIOD_MS, now + PRUNE_PERIOD_MS + 3000),
            prune,
        );
        assert_eq!(refused, 1, "and the prune comes back the next hour");
    }

    #[test]
    fn a_chore_that_never_answers_is_given_up_without_failing_a_sync() {
        let store = MemoryStore::default();
        let mut etcd = FakeEtcd::default();
        let now = 10 * PRUNE_PERIOD_MS;
        let mut driver = driver(&store, false).with_pruning("/dp/", 2 * PRUNE_PERIOD_MS);
        let (Tick::Send(prune), None) = driver.tick(&store, now) else {
            panic!("the first tick sends the hour's prune")
        };
        assert!(prune.body.contains("request_delete_range"));
        driver.sent(1);
        // Lost past four timeouts (2 s each here): given up, and no sync failed.
        let (tick, lost) = driver.tick(&store, now + 8020);
        assert!(matches!(tick, Tick::Nothing) && lost.is_none());
        // The first cycle starts at once, and nothing fails after it.
        assert_eq!(
            run_refusing(&mut driver, &store, &mut etcd, (now + 8040, now + 9000), |_| false),
            0
        );
        assert!(crate::directory::replica::read_sync_state(&store, "ns").is_some());
    }

    #[test]
    fn the_snapshot_writer_calls_between_cycles_and_the_cycles_keep_their_pace() {
        let calls_in_a_minute = |snapshots: bool| {
            let store = MemoryStore::default();
            let mut etcd = FakeEtcd::default();
            for i in 0..12_000 {
                etcd.put(&format!("/dp/dev/d{i:05}@x.io"), br#"{"status":"approved"}"#);
            }
            let worker = claim_worker_id(&store, "ns").unwrap();
            let mut syncer = Syncer::new("ns", "/dp/", None);
            if snapshots {
                syncer = syncer.with_snapshots("/dp/", 3_600_000);
            }
            let mut driver = SyncDriver::new("ns", worker, syncer, 1000, 2000);
            let calls = run(&mut driver, &store, &mut etcd, T, T + 60_000);
            (calls, etcd.kvs.contains_key(b"/dp/snapshot/current".as_slice()))
        };
        let (without, _) = calls_in_a_minute(false);
        let (with, written) = calls_in_a_minute(true);
        assert!(written, "12,000 developers: a snapshot");
        // The first sync's look for a snapshot, then the writer's look, claim,
        // one part and the commit: the cycles themselves are as many.
        assert_eq!(with, without + 5);
    }

    #[test]
    fn each_call_of_a_cycle_goes_out_from_a_tick_and_cycles_keep_their_interval() {
        let store = MemoryStore::default();
        let mut etcd = FakeEtcd::default();
        // More than two full-sync pages.
        for i in 0..12_000 {
            etcd.put(&format!("/dp/dev/d{i:05}@x.io"), br#"{"status":"approved"}"#);
        }
        let mut driver = driver(&store, true);
        // Seed, then three pages of the first full sync: one call per tick.
        let calls = run(&mut driver, &store, &mut etcd, T + 200, T + 300);
        assert_eq!(calls, 4, "seed + 3 pages, each on its own tick");
        assert_eq!(lookup(&store, "ns", "a@x.io"), Lookup::Found(Status::Approved));
        assert_eq!(lookup(&store, "ns", "d11999@x.io"), Lookup::Found(Status::Approved));
        // Then one incremental cycle per second, not more.
        let calls = run(&mut driver, &store, &mut etcd, T + 300, T + 2500);
        assert_eq!(calls, 2);
    }

    #[test]
    fn a_call_the_host_lost_ends_its_cycle_and_the_next_one_starts() {
        let store = MemoryStore::default();
        let mut etcd = FakeEtcd::default();
        let mut driver = driver(&store, false);
        let (Tick::Send(_), None) = driver.tick(&store, T + 200) else {
            panic!("first tick sends")
        };
        driver.sent(7);
        assert!(matches!(driver.tick(&store, T + 5000).0, Tick::Nothing));
        let (_, lost) = driver.tick(&store, T + 8300);
        assert!(matches!(lost, Some(Outcome::Failed(_))));
        // The late answer is ignored; syncing goes on.
        assert!(driver
            .on_answer(&store, 7, Err(EtcdError::Unreachable("late".into())), T + 8400)
            .is_none());
        assert!(run(&mut driver, &store, &mut etcd, T + 9400, T + 9700) >= 1);
    }

    #[test]
    fn a_call_that_fails_on_the_way_is_sent_again_before_the_cycle_fails() {
        let store = MemoryStore::default();
        let mut etcd = FakeEtcd::default();
        etcd.put("/dp/dev/a@x.io", br#"{"status":"approved"}"#);
        let mut driver = driver(&store, false);
        // Two failures on the way (say, two dead members), then an answer.
        let mut failures = 2;
        let mut calls = 0;
        let mut now = T + 200;
        while lookup(&store, "ns", "a@x.io") != Lookup::Found(Status::Approved) && now < T + 1000 {
            if let (Tick::Send(request), _) = driver.tick(&store, now) {
                calls += 1;
                driver.sent(calls);
                let answer = if failures > 0 {
                    failures -= 1;
                    Err(EtcdError::NotSent("connection refused".into()))
                } else {
                    Ok(etcd.answer(&request))
                };
                assert!(!matches!(
                    driver.on_answer(&store, calls, answer, now),
                    Some(Outcome::Failed(_))
                ));
            }
            now += 20;
        }
        assert_eq!(calls, 3, "the same read, sent three times");
        assert!(now < T + 300, "at once: on the next ticks, not the next cycle");
        // Past the retries, the cycle fails (and the next one starts later).
        let store = MemoryStore::default();
        let mut driver = super::tests::driver(&store, false);
        let mut outcomes = Vec::new();
        for i in 0..10 {
            if let (Tick::Send(_), _) = driver.tick(&store, T + 2000 + i * 20) {
                driver.sent(100 + i as u32);
                outcomes.push(driver.on_answer(
                    &store,
                    100 + i as u32,
                    Err(EtcdError::NotSent("down".into())),
                    T + 2000 + i * 20,
                ));
            }
        }
        assert_eq!(outcomes.len(), 3);
        assert!(matches!(outcomes.last(), Some(Some(Outcome::Failed(_)))));
    }

    #[test]
    fn a_worker_without_the_role_sends_only_its_seed() {
        let store = MemoryStore::default();
        let mut etcd = FakeEtcd::default();
        let mut holder = driver(&store, false);
        let mut other = driver(&store, true);
        assert!(matches!(holder.tick(&store, T + 200).0, Tick::Send(_)));
        let calls = run(&mut other, &store, &mut etcd, T + 200, T + 2000);
        assert_eq!(calls, 1, "the seed, once");
        assert!(etcd.kvs.contains_key(b"/dp/seeded".as_slice()));
    }
}
