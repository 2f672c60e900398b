//! The root context: compiles the configuration, loads the directory's replica
//! (static: seeded from configuration; etcd: kept in sync by the one worker that
//! wins the syncer election), defines the metrics, and hands every HTTP context
//! a shared, immutable view of them.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;

use super::abi::{self, Buffer, MetricKind};
use super::etcd_call::{self, now_ms};
use super::http::GateHttp;
use super::store::HostSharedData;
use crate::admin::AdminConfig;
use crate::config;
use crate::directory::replica;
use crate::directory::Directory;
use crate::etcd::EtcdConfig;
use crate::request::gate::Gate;
use crate::request::metrics::Counter;
use crate::sync::{self, Next, Syncer};

const VERSION: &str = env!("CARGO_PKG_VERSION");
const GIT_SHA: &str = env!("DEVPORTAL_GATE_GIT_SHA");

/// How often every worker ticks. A sync cycle of several etcd calls (pages,
/// deletion scans, the seed) sends each next call from the tick after the
/// previous answer, never from inside the answer's callback: Kong's engine
/// crashes the worker when a root context dispatches there (docs/hosts.md). So
/// the tick is short, and the election runs at its own, slower pace.
const TICK: Duration = Duration::from_millis(20);

/// How often every worker looks at the election and the replica's age. The sync
/// interval is checked at this granularity, so it bounds the extra delay.
const ELECTION_PERIOD_MS: u64 = 200;

/// Everything an HTTP context needs, built once per configuration.
pub struct Shared {
    pub gate: Gate,
    pub admin: Option<AdminConfig>,
    /// An empty admin configuration, for contexts without an admin API
    /// (self-service registration).
    pub no_admin: AdminConfig,
    pub directory: Directory,
    /// Decision counter ids by `Counter::index()`.
    pub counters: Vec<u32>,
    /// Whether this worker has seen the replica complete a first full sync.
    /// Only ever goes from false to true.
    pub synced: Cell<bool>,
}

#[derive(Default)]
pub struct GateRoot {
    shared: Option<Rc<Shared>>,
    sync: Option<SyncDuty>,
    staleness_gauge: Option<u32>,
    last_gauge_ms: u64,
}

/// The etcd side of a worker: a candidate for the syncer role.
struct SyncDuty {
    etcd: EtcdConfig,
    worker: u64,
    syncer: Syncer,
    /// The call in flight, if any.
    in_flight: Option<InFlight>,
    /// The cycle's next call, sent at the next tick; and when the cycle began.
    next_call: Option<(crate::etcd::EtcdRequest, u64)>,
    last_cycle_ms: u64,
    last_election_ms: u64,
    ok_counter: Option<u32>,
    failed_counter: Option<u32>,
}

#[derive(Clone, Copy)]
struct InFlight {
    token: u32,
    /// When the cycle began (a full sync of a large directory takes many calls).
    cycle_started_ms: u64,
    /// When this call was sent: the host's timeout applies to it alone.
    call_started_ms: u64,
}

impl Context for GateRoot {
    fn on_http_call_response(&mut self, token_id: u32, _num_headers: usize, body_size: usize, _num_trailers: usize) {
        let Some(duty) = self.sync.as_mut() else { return };
        let Some(call) = duty.in_flight.filter(|call| call.token == token_id) else {
            return; // An answer to an abandoned call.
        };
        let started = call.cycle_started_ms;
        duty.in_flight = None;
        let now = now_ms();
        let answer = etcd_call::read_answer(body_size);
        let result = match answer {
            Ok((status, body)) => duty.syncer.on_answer(&HostSharedData, status, &body, now),
            Err(error) => {
                duty.syncer.abandon();
                Err(sync::SyncError::Etcd(error))
            }
        };
        match result {
            // Sent from the next tick: never dispatch from inside this callback.
            Ok(Next::Call(request)) => duty.next_call = Some((request, started)),
            Ok(Next::Done(report)) => {
                duty.last_cycle_ms = now;
                bump(duty.ok_counter);
                if report.full || report.changed > 0 || report.removed > 0 {
                    log::info!(
                        "devportal-gate: {} sync to etcd revision {} in {} ms: {} changed, {} removed, {} unreadable",
                        if report.full { "full" } else { "incremental" },
                        report.revision,
                        now.saturating_sub(started),
                        report.changed,
                        report.removed,
                        report.unreadable
                    );
                }
            }
            Err(error) => duty.fail(&error),
        }
    }
}

impl SyncDuty {
    fn fail(&mut self, error: &sync::SyncError) {
        self.syncer.abandon();
        self.in_flight = None;
        self.next_call = None;
        self.last_cycle_ms = now_ms();
        bump(self.failed_counter);
        log::warn!("devportal-gate: directory sync failed (the last known statuses stay enforced): {error}");
    }

    fn tick(&mut self, namespace: &str, now: u64) {
        let election_due = now.saturating_sub(self.last_election_ms) >= ELECTION_PERIOD_MS;
        if let Some(call) = self.in_flight {
            // The host times every call out; one that still has not answered
            // long after that was lost, and must not stop syncing for good.
            if now.saturating_sub(call.call_started_ms) > self.etcd.timeout_ms.saturating_mul(4) {
                self.fail(&sync::SyncError::Etcd(crate::etcd::EtcdError::Unreachable(
                    "a sync call never answered".into(),
                )));
            }
            // Keep the role while the call is out.
            if election_due {
                self.last_election_ms = now;
                sync::elect(&HostSharedData, namespace, self.worker, now, self.stall_ms());
            }
            return;
        }
        if let Some((request, cycle_started_ms)) = self.next_call.take() {
            self.send(&request, cycle_started_ms, now);
            return;
        }
        if !election_due {
            return;
        }
        self.last_election_ms = now;
        if !sync::elect(&HostSharedData, namespace, self.worker, now, self.stall_ms()) {
            // Not the syncer: still send this configuration's seed, once.
            if let Some(seed) = self.syncer.seed_only() {
                self.send(&seed, now, now);
            }
            return;
        }
        if now.saturating_sub(self.last_cycle_ms) < self.etcd.sync_interval_ms {
            return;
        }
        let request = self.syncer.begin();
        self.send(&request, now, now);
    }

    fn send(&mut self, request: &crate::etcd::EtcdRequest, cycle_started_ms: u64, now: u64) {
        match etcd_call::dispatch(&self.etcd, request) {
            Ok(token) => {
                self.in_flight = Some(InFlight {
                    token,
                    cycle_started_ms,
                    call_started_ms: now,
                })
            }
            Err(error) => self.fail(&sync::SyncError::Etcd(error)),
        }
    }

    /// A syncer whose heartbeat is older than this is replaced.
    fn stall_ms(&self) -> u64 {
        (3 * self.etcd.sync_interval_ms).max(3000)
    }
}

fn bump(counter: Option<u32>) {
    if let Some(id) = counter {
        let _ = abi::increment_metric(id, 1);
    }
}

impl RootContext for GateRoot {
    fn on_vm_start(&mut self, _vm_configuration_size: usize) -> bool {
        log::info!("devportal-gate {VERSION} ({GIT_SHA}) starting");
        true
    }

    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        match self.configure() {
            Ok(()) => true,
            Err(message) => {
                // Envoy and Kong then refuse the filter; the message names the field.
                log::error!("devportal-gate: {message}");
                false
            }
        }
    }

    fn on_tick(&mut self) {
        let Some(shared) = self.shared.as_ref() else { return };
        let now = now_ms();
        if let Some(duty) = self.sync.as_mut() {
            duty.tick(&shared.gate.namespace, now);
        }
        if now.saturating_sub(self.last_gauge_ms) < ELECTION_PERIOD_MS {
            return;
        }
        self.last_gauge_ms = now;
        if let (Some(gauge), Some(state)) = (
            self.staleness_gauge,
            replica::read_sync_state(&HostSharedData, &shared.gate.namespace),
        ) {
            shared.synced.set(true);
            let staleness = if shared.directory == Directory::Static {
                0
            } else {
                now.saturating_sub(state.synced_at_ms)
            };
            let _ = abi::record_metric(gauge, staleness);
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(GateHttp::new(self.shared.clone())))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

impl GateRoot {
    fn configure(&mut self) -> Result<(), String> {
        let bytes = abi::buffer(Buffer::PluginConfiguration, 0, usize::MAX)
            .map_err(|status| format!("cannot read the plugin configuration: {status}"))?;
        let config = config::compile(&bytes).map_err(|error| error.to_string())?;
        let namespace = config.gate.namespace.clone();
        // `"metrics": false` makes no metric call at all: Kong 3.4-3.7 trap on them.
        let metrics = config.metrics;
        let counters = if metrics { define_counters()? } else { Vec::new() };
        self.staleness_gauge = define_if(metrics, "devportal_gate.directory.staleness_ms", MetricKind::Gauge)?;
        let synced = match &config.directory {
            Directory::Static if config.admin_only => {
                log::info!(
                    "devportal-gate {VERSION} ({GIT_SHA}) configured: admin API over the static directory in namespace {namespace:?} (seeded by the gate's configuration)"
                );
                self.sync = None;
                true
            }
            Directory::Static => {
                let report = replica::seed_static(&HostSharedData, &namespace, &config.developers, now_ms())
                    .map_err(|error| format!("cannot seed the developer directory: {error}"))?;
                log::info!(
                    "devportal-gate {VERSION} ({GIT_SHA}) configured: static directory of {} developers in namespace {namespace:?} ({} written, {} already current, {} removed)",
                    config.developers.len(),
                    report.written,
                    report.unchanged,
                    report.removed,
                );
                self.sync = None;
                true
            }
            Directory::Etcd(etcd) => {
                let worker = sync::claim_worker_id(&HostSharedData, &namespace)
                    .map_err(|error| format!("cannot register this worker in shared data: {error:?}"))?;
                let seed = sync::seed_request(&etcd.key_prefix, &config.developers, now_ms());
                self.sync = Some(SyncDuty {
                    etcd: etcd.clone(),
                    worker,
                    syncer: Syncer::new(&namespace, &etcd.key_prefix, seed),
                    in_flight: None,
                    next_call: None,
                    last_cycle_ms: 0,
                    last_election_ms: 0,
                    ok_counter: define_if(metrics, "devportal_gate.sync.ok", MetricKind::Counter)?,
                    failed_counter: define_if(metrics, "devportal_gate.sync.failed", MetricKind::Counter)?,
                });
                log::info!(
                    "devportal-gate {VERSION} ({GIT_SHA}) configured: etcd directory {:?} at {:?}, namespace {namespace:?}, worker {worker}, sync every {} ms",
                    etcd.key_prefix,
                    etcd.upstream,
                    etcd.sync_interval_ms,
                );
                replica::read_sync_state(&HostSharedData, &namespace).is_some()
            }
        };
        if self.sync.is_some() {
            abi::set_tick_period(TICK).map_err(|status| format!("cannot set the tick period: {status}"))?;
        }
        self.shared = Some(Rc::new(Shared {
            gate: config.gate,
            admin: config.admin,
            no_admin: AdminConfig::default(),
            directory: config.directory,
            counters,
            synced: Cell::new(synced),
        }));
        Ok(())
    }
}

fn define(name: &str, kind: MetricKind) -> Result<u32, String> {
    abi::define_metric(kind, name).map_err(|status| format!("cannot define metric {name}: {status}"))
}

fn define_if(wanted: bool, name: &str, kind: MetricKind) -> Result<Option<u32>, String> {
    if wanted {
        define(name, kind).map(Some)
    } else {
        Ok(None)
    }
}

fn define_counters() -> Result<Vec<u32>, String> {
    Counter::all()
        .into_iter()
        .map(|counter| define(&counter.name(), MetricKind::Counter))
        .collect()
}
