//! One worker's side of syncing, as a state machine the host only carries out:
//! on every tick it says which etcd call to send, if any; it takes each answer;
//! it keeps the syncer role (or takes it from a stalled holder), paces cycles by
//! the sync interval, sends a cycle's next call on the tick after the previous
//! answer (never from inside the answer's callback: Kong's engine crashes
//! there, docs/hosts.md), gives up on a call the host lost, and seeds from a
//! worker that does not hold the role.

use super::{elect, Next, SyncError, Syncer};
use crate::directory::SharedStore;
use crate::etcd::{EtcdError, EtcdRequest};

/// How often the election and the replica's age are looked at; the sync
/// interval is checked at this granularity.
pub const ELECTION_PERIOD_MS: u64 = 200;

pub struct SyncDriver {
    namespace: String,
    worker: u64,
    syncer: Syncer,
    sync_interval_ms: u64,
    timeout_ms: u64,
    in_flight: Option<InFlight>,
    /// The cycle's next call, to send at the next tick; and when the cycle began.
    next_call: Option<(EtcdRequest, u64)>,
    last_cycle_ms: u64,
    last_election_ms: u64,
}

#[derive(Clone, Copy)]
struct InFlight {
    token: u32,
    /// When the cycle began (a full sync of a large directory takes many calls).
    cycle_started_ms: u64,
    /// When this call was sent: the host's timeout applies to it alone.
    call_started_ms: u64,
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
        }
    }

    /// A syncer whose heartbeat is older than this is replaced.
    fn stall_ms(&self) -> u64 {
        (3 * self.sync_interval_ms).max(3000)
    }

    /// Called on every tick. A lost call (no answer long after the host's own
    /// timeout) ends its cycle here, reported as `Some(Outcome::Failed)`.
    pub fn tick(&mut self, store: &dyn SharedStore, now: u64) -> (Tick, Option<Outcome>) {
        let election_due = now.saturating_sub(self.last_election_ms) >= ELECTION_PERIOD_MS;
        if let Some(call) = self.in_flight {
            let mut lost = None;
            if now.saturating_sub(call.call_started_ms) > self.timeout_ms.saturating_mul(4) {
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
        if let Some((request, cycle_started_ms)) = self.next_call.take() {
            self.in_flight = Some(InFlight {
                token: 0,
                cycle_started_ms,
                call_started_ms: now,
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
                    self.pending(now, now);
                    (Tick::Send(seed), None)
                }
                None => (Tick::Nothing, None),
            };
        }
        if now.saturating_sub(self.last_cycle_ms) < self.sync_interval_ms {
            return (Tick::Nothing, None);
        }
        let request = self.syncer.begin();
        self.pending(now, now);
        (Tick::Send(request), None)
    }

    fn pending(&mut self, cycle_started_ms: u64, now: u64) {
        self.in_flight = Some(InFlight {
            token: 0,
            cycle_started_ms,
            call_started_ms: now,
        });
    }

    /// The host sent the call that `tick` asked for.
    pub fn sent(&mut self, token: u32) {
        if let Some(call) = self.in_flight.as_mut() {
            call.token = token;
        }
    }

    /// The host could not send it.
    pub fn not_sent(&mut self, error: EtcdError, now: u64) -> Outcome {
        self.fail(SyncError::Etcd(error), now)
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
        let call = self.in_flight.filter(|call| call.token == token)?;
        self.in_flight = None;
        let result = match answer {
            Ok((status, body)) => self.syncer.on_answer(store, status, &body, now),
            Err(error) => Err(SyncError::Etcd(error)),
        };
        Some(match result {
            Ok(Next::Call(request)) => {
                self.next_call = Some((request, call.cycle_started_ms));
                Outcome::Continues
            }
            Ok(Next::Done(report)) => {
                self.last_cycle_ms = now;
                Outcome::Done {
                    report,
                    took_ms: now.saturating_sub(call.cycle_started_ms),
                }
            }
            Err(error) => self.fail(error, now),
        })
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
