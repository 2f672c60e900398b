//! The fleet's one deliverer of events, as a state machine the host carries out
//! (like `sync::driver`): each tick says which calls to send, every answer is
//! handed back; calls go out from ticks only (Kong's engine crashes on a call
//! made inside an answer's callback, docs/hosts.md).
//!
//! **The role.** Every worker whose configuration has `events` is a candidate.
//! Once a second each sends one transaction on `<prefix>delivery/holder`: the
//! holder renews its lease (5 s) if the key is still at the revision it wrote;
//! a candidate takes the key if it is absent, or if the lease it last read
//! ended more than `SKEW_MS` ago by its own clock. The same transaction saves
//! the holder's sink positions (so a position is only ever written by the
//! holder of the moment: the compare fences it) and reads the sink records and
//! the newest events, which every candidate publishes for its admin API.
//! A holder stops sending one second before its lease ends unless renewed.
//!
//! **Finding events.** From the lowest position a sink still needs, one
//! transaction reads the change log's entries created after it and the
//! developer keys modified after it, both at one snapshot. A developer key
//! whose `mod_revision` has no log entry was written by another tool: its
//! value before that revision is read (etcd keeps it until compaction) and the
//! change becomes an event with the actor `etcd`.
//!
//! **Delivery.** Each sink has its own queue, position, and one call in flight:
//! events go out in revision order, each until a 2xx; failures back off
//! exponentially (capped, with jitter). A sink that is down holds back only
//! its own queue.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::sign::signature_header;
use super::{Change, Event, EventsConfig, SinkConfig};
use crate::directory::developer::Developer;
use crate::etcd::{self, EtcdError, EtcdRequest, Kv, Order};

pub const ROLE_PERIOD_MS: u64 = 1000;
pub const LEASE_MS: u64 = 5000;
/// How far another gateway's clock may be ahead: a lease is taken over only
/// this long after it ended by the taker's clock.
pub const SKEW_MS: u64 = 2000;
/// A holder stops sending this long before its lease ends, unless renewed.
const LEASE_MARGIN_MS: u64 = 1000;
const FETCH_PERIOD_MS: u64 = 200;
/// A fetch also reads every developer key changed since its position (how a
/// write straight into etcd is found: a scan of the directory in etcd), so at
/// scale fetches are spaced by this many times their own cost (a second at a
/// million developers: one every ten seconds), to leave etcd to the rest.
const FETCH_COST_FACTOR: u64 = 10;
const FETCH_LIMIT: u32 = 100;
/// Developer keys read per fetch; changes beyond wait for the next one.
const CHANGED_LIMIT: u32 = 500;
/// Developer keys changed by other tools looked up per fetch.
const EXTERNAL_LIMIT: usize = 50;
const QUEUE_MAX: usize = 200;
const RECENT: u32 = 20;

/// A call the host is to send.
pub enum Send {
    Etcd(EtcdRequest),
    Sink { sink: usize, request: SinkRequest },
}

pub struct SinkRequest {
    pub upstream: String,
    pub authority: String,
    pub path: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
    pub timeout_ms: u64,
}

/// The holder key's value.
#[derive(Serialize, Deserialize)]
struct Lease {
    holder: String,
    until_ms: u64,
}

/// A sink's record in etcd, written by the holder.
#[derive(Serialize, Deserialize, Default, Clone, PartialEq, Debug)]
struct SinkRecord {
    /// The revision up to which every event of the sink's types was acknowledged.
    position: u64,
    /// The log key of the last event at or before `position` (for the backlog count).
    #[serde(default)]
    position_key: String,
    #[serde(default)]
    last_error: Option<String>,
    #[serde(default)]
    delivered: u64,
    #[serde(default)]
    updated_ms: u64,
}

/// An event in a queue, with its log key (`None`: written by another tool).
#[derive(Clone, Debug)]
struct Queued {
    event: Event,
    key: Option<String>,
}

#[derive(Default)]
struct SinkState {
    record: SinkRecord,
    /// Matching events are queued up to this revision.
    queued_upto: u64,
    /// The log key of the last entry read up to `queued_upto`.
    queued_key: String,
    queue: VecDeque<Queued>,
    in_flight: Option<(u32, u64)>,
    attempts: u32,
    retry_at_ms: u64,
    /// What etcd has of this sink (`record` as last saved).
    saved: Option<SinkRecord>,
    backlog: u64,
}

struct Held {
    mod_revision: u64,
    until_ms: u64,
}

struct Seen {
    mod_revision: u64,
    until_ms: u64,
    holder: String,
}

enum EtcdCall {
    Role {
        until_ms: u64,
        saving: Vec<(usize, SinkRecord)>,
    },
    Fetch {
        from: u64,
    },
    Before {
        events: Vec<Queued>,
        externals: Vec<External>,
        window_end: u64,
        last_key: String,
    },
}

#[derive(Clone, Debug)]
struct External {
    email: String,
    key: Vec<u8>,
    mod_revision: u64,
    now: Option<crate::directory::Status>,
}

pub struct Deliverer {
    key_prefix: String,
    config: EventsConfig,
    me: String,
    rng: u64,
    held: Option<Held>,
    seen: Option<Seen>,
    in_flight: Option<(u32, u64, EtcdCall)>,
    /// A call to send at the next tick (made from an answer).
    next: Option<(EtcdRequest, EtcdCall)>,
    sending: Option<EtcdCall>,
    next_role_ms: u64,
    next_fetch_ms: u64,
    sinks: Vec<SinkState>,
    recent: Vec<Value>,
    timeout_ms: u64,
}

impl Deliverer {
    /// `me` names this candidate in the holder key; `seed` starts the jitter.
    pub fn new(key_prefix: &str, config: EventsConfig, me: String, seed: u64, timeout_ms: u64) -> Deliverer {
        let sinks = config.sinks.iter().map(|_| SinkState::default()).collect();
        Deliverer {
            key_prefix: key_prefix.to_string(),
            config,
            me,
            rng: seed | 1,
            held: None,
            seen: None,
            in_flight: None,
            next: None,
            sending: None,
            next_role_ms: 0,
            next_fetch_ms: 0,
            sinks,
            recent: Vec::new(),
            timeout_ms,
        }
    }

    fn holder_key(&self) -> Vec<u8> {
        format!("{}delivery/holder", self.key_prefix).into_bytes()
    }

    fn sinks_prefix(&self) -> Vec<u8> {
        format!("{}delivery/sinks/", self.key_prefix).into_bytes()
    }

    fn sink_key(&self, name: &str) -> Vec<u8> {
        format!("{}delivery/sinks/{name}", self.key_prefix).into_bytes()
    }

    pub fn delivering(&self, now: u64) -> bool {
        self.held
            .as_ref()
            .is_some_and(|held| now + LEASE_MARGIN_MS < held.until_ms)
    }

    /// Called on every tick: the calls to send now.
    pub fn tick(&mut self, now: u64) -> Vec<Send> {
        let mut sends = Vec::new();
        // An etcd call the host lost (no answer long after its timeout).
        if let Some((_, sent_ms, _)) = &self.in_flight {
            if now.saturating_sub(*sent_ms) > self.timeout_ms.saturating_mul(4) {
                self.in_flight = None;
            }
        }
        if self.in_flight.is_none() && self.sending.is_none() {
            if let Some((request, call)) = self.next.take() {
                self.sending = Some(call);
                sends.push(Send::Etcd(request));
            } else if now >= self.next_role_ms {
                self.next_role_ms = now + ROLE_PERIOD_MS;
                let (request, call) = self.role_call(now);
                self.sending = Some(call);
                sends.push(Send::Etcd(request));
            } else if self.delivering(now) && now >= self.next_fetch_ms {
                self.next_fetch_ms = now + FETCH_PERIOD_MS;
                if let Some(from) = self.fetch_from() {
                    self.sending = Some(EtcdCall::Fetch { from });
                    sends.push(Send::Etcd(self.fetch_call(from)));
                }
            }
        }
        if self.delivering(now) {
            for index in 0..self.sinks.len() {
                if let Some(request) = self.sink_call(index, now) {
                    sends.push(Send::Sink { sink: index, request });
                }
            }
        }
        sends
    }

    /// The host sent the etcd call of the last tick.
    pub fn sent_etcd(&mut self, token: u32, now: u64) {
        if let Some(call) = self.sending.take() {
            self.in_flight = Some((token, now, call));
        }
    }

    /// The host could not send the etcd call of the last tick.
    pub fn not_sent_etcd(&mut self, error: &EtcdError) {
        self.sending = None;
        log::warn!("events: a call to etcd was not sent: {error}");
    }

    pub fn sent_sink(&mut self, sink: usize, token: u32, now: u64) {
        if let Some(state) = self.sinks.get_mut(sink) {
            state.in_flight = Some((token, now));
        }
    }

    pub fn not_sent_sink(&mut self, sink: usize, error: String, now: u64) {
        self.sink_failed(sink, error, now);
    }

    pub fn is_sink_call(&self, token: u32) -> bool {
        self.sinks.iter().any(|s| s.in_flight.is_some_and(|(t, _)| t == token))
    }

    /// Whether `token` is one of this deliverer's calls.
    pub fn owns(&self, token: u32) -> bool {
        self.in_flight.as_ref().is_some_and(|(t, ..)| *t == token)
            || self.sinks.iter().any(|s| s.in_flight.is_some_and(|(t, _)| t == token))
    }

    /// An answer: to an etcd call, or from a sink (its status decides).
    pub fn on_answer(&mut self, token: u32, answer: Result<(u32, Vec<u8>), EtcdError>, now: u64) {
        if let Some(sink) = self
            .sinks
            .iter()
            .position(|s| s.in_flight.is_some_and(|(t, _)| t == token))
        {
            return self.on_sink_answer(sink, answer, now);
        }
        let Some((_, sent_ms, call)) = self.in_flight.take_if(|(t, ..)| *t == token) else {
            return;
        };
        if matches!(call, EtcdCall::Fetch { .. }) {
            let spaced = now.saturating_add(FETCH_COST_FACTOR.saturating_mul(now.saturating_sub(sent_ms)));
            self.next_fetch_ms = self.next_fetch_ms.max(spaced);
        }
        let reads = answer.and_then(|(status, body)| etcd::parse_txn_reads(status, &body));
        match (call, reads) {
            (EtcdCall::Role { until_ms, saving }, Ok(reads)) => self.on_role(reads, until_ms, saving, sent_ms),
            (EtcdCall::Fetch { from }, Ok(reads)) => self.on_fetch(from, reads, now),
            (
                EtcdCall::Before {
                    events,
                    externals,
                    window_end,
                    last_key,
                },
                Ok(reads),
            ) => self.on_before(events, externals, window_end, last_key, reads, now),
            (_, Err(error)) => log::warn!("events: etcd answered with an error: {error}"),
        }
    }

    // ---- The role ----------------------------------------------------------------

    fn role_call(&mut self, now: u64) -> (EtcdRequest, EtcdCall) {
        let holder_key = self.holder_key();
        let until_ms = now + LEASE_MS;
        let compare = match (&self.held, &self.seen) {
            (Some(held), _) => etcd::compare_mod_revision(&holder_key, held.mod_revision),
            (None, Some(seen)) if seen.holder == self.me || seen.until_ms + SKEW_MS < now => {
                etcd::compare_mod_revision(&holder_key, seen.mod_revision)
            }
            (None, _) => etcd::compare_absent(&holder_key),
        };
        let lease = serde_json::to_vec(&Lease {
            holder: self.me.clone(),
            until_ms,
        })
        .unwrap_or_default();
        let mut success = vec![etcd::op_put(&holder_key, &lease)];
        let mut saving = Vec::new();
        if self.held.is_some() {
            for (index, sink) in self.sinks.iter().enumerate() {
                let Some(config) = self.config.sinks.get(index) else {
                    continue;
                };
                let mut record = sink.record.clone();
                record.updated_ms = now;
                let unchanged = sink.saved.as_ref().is_some_and(|saved| {
                    saved.position == record.position
                        && saved.last_error == record.last_error
                        && saved.delivered == record.delivered
                });
                if !unchanged {
                    success.push(etcd::op_put(
                        &self.sink_key(&config.name),
                        &serde_json::to_vec(&record).unwrap_or_default(),
                    ));
                    saving.push((index, record));
                }
            }
        }
        let log_prefix = super::log_prefix(&self.key_prefix).into_bytes();
        let reads = |with_holder: bool| {
            let mut ops = Vec::new();
            if with_holder {
                ops.push(etcd::op_get(&holder_key));
            }
            ops.push(etcd::op_range_prefix(&self.sinks_prefix(), Order::Newest, 0));
            ops.push(etcd::op_range_prefix(&log_prefix, Order::Newest, RECENT));
            for sink in &self.sinks {
                let start = if sink.record.position_key.is_empty() {
                    log_prefix.clone()
                } else {
                    sink.record.position_key.clone().into_bytes()
                };
                ops.push(etcd::op_count_from(&log_prefix, &start));
            }
            ops
        };
        success.extend(reads(false));
        let request = etcd::txn(vec![compare], success, reads(true));
        (request, EtcdCall::Role { until_ms, saving })
    }

    fn on_role(&mut self, reads: etcd::TxnReads, until_ms: u64, saving: Vec<(usize, SinkRecord)>, sent_ms: u64) {
        let mut ranges = reads.ranges.into_iter();
        if reads.succeeded {
            let taking = self.held.is_none();
            self.held = Some(Held {
                mod_revision: reads.revision,
                until_ms,
            });
            self.seen = None;
            for (index, record) in saving {
                if let Some(sink) = self.sinks.get_mut(index) {
                    sink.saved = Some(record);
                }
            }
            let stored = ranges.next().map(|r| r.kvs).unwrap_or_default();
            if taking {
                log::info!("events: this worker delivers now ({})", self.me);
                self.start_from(&stored, reads.revision, sent_ms);
            }
        } else {
            if self.held.take().is_some() {
                log::warn!("events: the delivery role was taken by another gateway; stopping");
            }
            for sink in &mut self.sinks {
                sink.queue.clear();
                sink.in_flight = None;
            }
            let holder = ranges.next().and_then(|r| r.kvs.into_iter().next());
            self.seen = holder.and_then(|kv| {
                let lease: Lease = serde_json::from_slice(&kv.value).ok()?;
                Some(Seen {
                    mod_revision: kv.mod_revision,
                    until_ms: lease.until_ms,
                    holder: lease.holder,
                })
            });
            let stored = ranges.next().map(|r| r.kvs).unwrap_or_default();
            // A candidate shows what the holder last saved.
            for index in 0..self.sinks.len() {
                if let Some(record) = self.stored_record(&stored, index) {
                    if let Some(sink) = self.sinks.get_mut(index) {
                        sink.record = record;
                    }
                }
            }
        }
        if let Some(recent) = ranges.next() {
            self.recent = recent
                .kvs
                .iter()
                .filter_map(|kv| logged_event(kv).map(|q| q.event.to_api()))
                .collect();
        }
        for sink in &mut self.sinks {
            if let Some(count) = ranges.next() {
                // The count includes the entry at the position itself.
                let at_position = u64::from(!sink.record.position_key.is_empty());
                sink.backlog = count.count.saturating_sub(at_position).max(sink.queue.len() as u64);
            }
        }
    }

    /// A new holder starts every sink where the stored record says; a sink
    /// never delivered to starts at the present.
    fn start_from(&mut self, stored: &[Kv], revision: u64, now: u64) {
        for index in 0..self.sinks.len() {
            let record = self.stored_record(stored, index);
            let Some(sink) = self.sinks.get_mut(index) else {
                continue;
            };
            let record = record.unwrap_or_else(|| SinkRecord {
                position: revision,
                position_key: String::from_utf8_lossy(&super::log_key(&self.key_prefix, now, "", "")).into_owned(),
                ..SinkRecord::default()
            });
            *sink = SinkState {
                queued_upto: record.position,
                queued_key: record.position_key.clone(),
                saved: Some(record.clone()),
                record,
                ..SinkState::default()
            };
        }
    }

    /// Sink `index`'s record among the stored ones, if readable.
    fn stored_record(&self, stored: &[Kv], index: usize) -> Option<SinkRecord> {
        let key = self.sink_key(&self.config.sinks.get(index)?.name);
        let kv = stored.iter().find(|kv| kv.key == key)?;
        serde_json::from_slice(&kv.value).ok()
    }

    // ---- Finding events ---------------------------------------------------------------

    /// The lowest revision a sink with room in its queue has queued up to.
    fn fetch_from(&self) -> Option<u64> {
        self.sinks
            .iter()
            .filter(|s| s.queue.len() < QUEUE_MAX / 2)
            .map(|s| s.queued_upto)
            .min()
    }

    fn fetch_call(&self, from: u64) -> EtcdRequest {
        let log_prefix = super::log_prefix(&self.key_prefix).into_bytes();
        let developers = crate::directory::keys::etcd_developers(&self.key_prefix).into_bytes();
        etcd::txn(
            vec![],
            vec![
                etcd::op_range_prefix(&log_prefix, Order::CreatedAfter(from), FETCH_LIMIT),
                etcd::op_range_prefix(&developers, Order::ModifiedAfter(from), CHANGED_LIMIT),
            ],
            vec![],
        )
    }

    fn on_fetch(&mut self, from: u64, reads: etcd::TxnReads, now: u64) {
        let mut ranges = reads.ranges.into_iter();
        let (Some(log), Some(changed)) = (ranges.next(), ranges.next()) else {
            log::warn!("events: etcd's answer to a read of the change log has too few parts");
            return;
        };
        let window_end = window_end(from, reads.revision, &log, &changed);
        let mut events: Vec<Queued> = Vec::new();
        let mut last_key = String::new();
        for kv in log.kvs.iter().filter(|kv| kv.create_revision <= window_end) {
            last_key = String::from_utf8_lossy(&kv.key).into_owned();
            match logged_event(kv) {
                Some(queued) => events.push(queued),
                None => log::warn!("events: a change log entry is not readable; skipped: {last_key:?}"),
            }
        }
        let developers = crate::directory::keys::etcd_developers(&self.key_prefix);
        let mut externals: Vec<External> = changed
            .kvs
            .iter()
            .filter(|kv| kv.mod_revision <= window_end)
            .filter_map(|kv| {
                let email = std::str::from_utf8(kv.key.strip_prefix(developers.as_bytes())?).ok()?;
                let logged = events
                    .iter()
                    .any(|q| q.event.revision == kv.mod_revision && q.event.change.email == email);
                (!logged).then(|| External {
                    email: email.to_string(),
                    key: kv.key.clone(),
                    mod_revision: kv.mod_revision,
                    now: Developer::from_stored(email, &kv.value).ok().map(|d| d.status),
                })
            })
            .collect();
        let mut window_end = window_end;
        if externals.len() > EXTERNAL_LIMIT {
            externals.truncate(EXTERNAL_LIMIT);
            let last = externals.last().map_or(window_end, |e| e.mod_revision);
            // Everything up to the last external looked up, and nothing of its
            // revision's that was left out.
            window_end = last;
            externals.retain(|e| e.mod_revision <= last);
            events.retain(|q| q.event.revision <= last);
        }
        if externals.is_empty() {
            self.queue_events(events, window_end, last_key, now);
            return;
        }
        let before = etcd::txn(
            vec![],
            externals
                .iter()
                .map(|e| etcd::op_get_at(&e.key, e.mod_revision.saturating_sub(1)))
                .collect(),
            vec![],
        );
        self.next = Some((
            before,
            EtcdCall::Before {
                events,
                externals,
                window_end,
                last_key,
            },
        ));
    }

    fn on_before(
        &mut self,
        mut events: Vec<Queued>,
        externals: Vec<External>,
        window_end: u64,
        last_key: String,
        reads: etcd::TxnReads,
        now: u64,
    ) {
        for (external, before) in externals.into_iter().zip(reads.ranges) {
            let from = before
                .kvs
                .first()
                .and_then(|kv| Developer::from_stored(&external.email, &kv.value).ok())
                .map(|d| d.status);
            if from == external.now {
                continue; // not a status change (another field, or rewritten as it was)
            }
            events.push(Queued {
                event: Event {
                    revision: external.mod_revision,
                    change: Change {
                        email: external.email,
                        from,
                        to: external.now,
                        actor: "etcd".into(),
                        reason: None,
                        at_ms: now,
                    },
                },
                key: None,
            });
        }
        events.sort_by_key(|q| q.event.revision);
        self.queue_events(events, window_end, last_key, now);
    }

    /// Gives every sink the events after what it has queued, up to `window_end`.
    fn queue_events(&mut self, events: Vec<Queued>, window_end: u64, last_key: String, _now: u64) {
        for (index, sink) in self.sinks.iter_mut().enumerate() {
            let Some(config) = self.config.sinks.get(index) else {
                continue;
            };
            if sink.queued_upto >= window_end {
                continue;
            }
            let mut complete = true;
            let after = sink.queued_upto;
            for queued in events.iter().filter(|q| q.event.revision > after) {
                if sink.queue.len() >= QUEUE_MAX {
                    complete = false;
                    break;
                }
                sink.queued_upto = queued.event.revision;
                if let Some(key) = &queued.key {
                    sink.queued_key = key.clone();
                }
                if config.accepts(queued.event.kind()) {
                    sink.queue.push_back(queued.clone());
                }
            }
            if complete {
                sink.queued_upto = window_end;
                if !last_key.is_empty() {
                    sink.queued_key = last_key.clone();
                }
            }
            sink.caught_up_if_idle();
        }
    }

    // ---- Delivery ---------------------------------------------------------------------

    fn sink_call(&mut self, index: usize, now: u64) -> Option<SinkRequest> {
        let sink = self.sinks.get(index)?;
        if sink.in_flight.is_some() || now < sink.retry_at_ms {
            return None;
        }
        let queued = sink.queue.front()?;
        let config = self.config.sinks.get(index)?;
        let body = queued.event.body(&self.key_prefix);
        let id = queued.event.id();
        let timestamp = now / 1000;
        let signature = signature_header(&self.config.secrets, &id, timestamp, body.as_bytes());
        Some(SinkRequest {
            upstream: config.upstream.clone(),
            authority: config.authority.clone(),
            path: config.path.clone(),
            headers: vec![
                ("content-type", "application/cloudevents+json".into()),
                ("webhook-id", id),
                ("webhook-timestamp", timestamp.to_string()),
                ("webhook-signature", signature),
            ],
            body,
            timeout_ms: config.timeout_ms,
        })
    }

    fn on_sink_answer(&mut self, index: usize, answer: Result<(u32, Vec<u8>), EtcdError>, now: u64) {
        let Some(sink) = self.sinks.get_mut(index) else { return };
        sink.in_flight = None;
        match answer {
            Ok((status, _)) if (200..300).contains(&status) => {
                let Some(done) = sink.queue.pop_front() else { return };
                sink.attempts = 0;
                sink.record.last_error = None;
                sink.record.delivered += 1;
                sink.record.position = done.event.revision;
                if let Some(key) = done.key {
                    sink.record.position_key = key;
                }
                sink.backlog = sink.backlog.saturating_sub(1);
                sink.caught_up_if_idle();
            }
            Ok((status, body)) => {
                let text = String::from_utf8_lossy(body.get(..200).unwrap_or(&body)).into_owned();
                self.sink_failed(index, format!("HTTP {status}: {}", text.trim()), now);
            }
            Err(error) => self.sink_failed(index, error.to_string(), now),
        }
    }

    fn sink_failed(&mut self, index: usize, error: String, now: u64) {
        let jitter = self.next_random();
        let (initial, max) = (self.config.retry_initial_ms, self.config.retry_max_ms);
        let Some(sink) = self.sinks.get_mut(index) else { return };
        sink.in_flight = None;
        sink.attempts = sink.attempts.saturating_add(1);
        sink.retry_at_ms = now + backoff_ms(sink.attempts, initial, max, jitter);
        if let Some(name) = self.config.sinks.get(index).map(|s| &s.name) {
            log::warn!(
                "events: sink {name:?} failed (attempt {}): {error}; next try in {} ms",
                sink.attempts,
                sink.retry_at_ms - now
            );
        }
        sink.record.last_error = Some(error);
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64: jitter only, not secrets.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    // ---- What the admin API shows ---------------------------------------------------

    /// This candidate's view: whether it delivers, each sink's position and
    /// backlog (live on the holder, as last saved elsewhere), the newest events.
    pub fn view(&self, now: u64) -> Value {
        let sinks: Vec<Value> = self
            .config
            .sinks
            .iter()
            .zip(&self.sinks)
            .map(|(config, sink)| {
                json!({
                    "name": config.name,
                    "types": config.types,
                    "position": sink.record.position,
                    "backlog": sink.backlog,
                    "delivered": sink.record.delivered,
                    "last_error": sink.record.last_error,
                    "attempts": sink.attempts,
                    "retry_in_ms": sink.retry_at_ms.saturating_sub(now),
                })
            })
            .collect();
        json!({
            "at_ms": now,
            "delivering": self.delivering(now),
            "holder": self.seen.as_ref().map(|s| s.holder.clone()).or_else(|| self.held.as_ref().map(|_| self.me.clone())),
            "sinks": sinks,
            "recent": self.recent,
        })
    }

    /// The backlog over every sink (the gauge).
    pub fn backlog(&self) -> u64 {
        self.sinks.iter().map(|s| s.backlog).sum()
    }
}

impl SinkState {
    /// Nothing queued nor in flight: every matching event up to `queued_upto`
    /// was acknowledged, so the position moves there.
    fn caught_up_if_idle(&mut self) {
        if self.queue.is_empty() && self.in_flight.is_none() && self.record.position < self.queued_upto {
            self.record.position = self.queued_upto;
            self.record.position_key = self.queued_key.clone();
        }
    }
}

impl SinkConfig {
    fn accepts(&self, kind: &str) -> bool {
        self.types.is_empty() || self.types.iter().any(|t| t == kind)
    }
}

/// A log entry as an event: its revision is the entry's creation.
fn logged_event(kv: &Kv) -> Option<Queued> {
    let change: Change = serde_json::from_slice(&kv.value).ok()?;
    Some(Queued {
        event: Event {
            revision: kv.create_revision,
            change,
        },
        key: Some(String::from_utf8_lossy(&kv.key).into_owned()),
    })
}

/// How far one fetch may go: to the snapshot's revision, unless a read was
/// cut by its limit. Then up to the last revision read in full: a cut list of
/// developer keys may have left out others of its last revision, so that
/// revision waits for the next fetch, unless it is the only one (a transaction
/// that changed more keys than one read holds), which is then taken as read.
pub fn window_end(from: u64, snapshot: u64, log: &etcd::RangeAnswer, changed: &etcd::RangeAnswer) -> u64 {
    let mut end = snapshot;
    if log.more {
        if let Some(last) = log.kvs.last() {
            end = end.min(last.create_revision);
        }
    }
    if changed.more {
        if let Some(last) = changed.kvs.last() {
            let whole = last.mod_revision.saturating_sub(1);
            end = end.min(if whole > from { whole } else { last.mod_revision });
        }
    }
    end
}

/// Exponential back-off: `initial` doubled per attempt, capped at `max`, then
/// a random half of it dropped (jitter), so sinks retried together spread out.
pub fn backoff_ms(attempts: u32, initial: u64, max: u64, random: u64) -> u64 {
    let exponent = attempts.saturating_sub(1).min(30);
    let delay = initial.saturating_mul(1u64 << exponent).min(max);
    let half = delay / 2;
    half + random % (half + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::etcd::RangeAnswer;

    fn kv(create: u64, modified: u64) -> Kv {
        Kv {
            key: Vec::new(),
            value: Vec::new(),
            create_revision: create,
            mod_revision: modified,
        }
    }

    fn range(kvs: Vec<Kv>, more: bool) -> RangeAnswer {
        RangeAnswer {
            revision: 0,
            kvs,
            count: 0,
            more,
        }
    }

    #[test]
    fn a_window_stops_where_a_read_was_cut() {
        let none = range(vec![], false);
        assert_eq!(window_end(10, 50, &none, &none), 50);
        assert_eq!(
            window_end(10, 50, &range(vec![kv(20, 20), kv(30, 30)], true), &none),
            30
        );
        // The developer keys' last revision may be incomplete: it waits.
        assert_eq!(window_end(10, 50, &none, &range(vec![kv(1, 15), kv(1, 40)], true)), 39);
        // Unless it is the only one after `from`.
        assert_eq!(window_end(10, 50, &none, &range(vec![kv(1, 11), kv(1, 11)], true)), 11);
    }

    #[test]
    fn back_off_doubles_is_capped_and_jittered() {
        assert_eq!(backoff_ms(1, 500, 60_000, 0), 250);
        assert_eq!(backoff_ms(1, 500, 60_000, 250), 500);
        assert_eq!(backoff_ms(3, 500, 60_000, 0), 1000);
        assert_eq!(backoff_ms(40, 500, 60_000, u64::MAX), 30_000 + u64::MAX % 30_001);
        for random in [0, 1, 12345, u64::MAX] {
            let delay = backoff_ms(5, 500, 60_000, random);
            assert!((4000..=8000).contains(&delay), "{delay}");
        }
    }
}
