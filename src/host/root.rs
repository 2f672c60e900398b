//! The root context: compiles the configuration, loads the directory's replica
//! (static: seeded from configuration; etcd: kept in sync by the worker that
//! holds the syncer role, as `sync::driver::SyncDriver` decides), defines the
//! metrics, and hands every HTTP context a shared, immutable view of them.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;

use super::abi::{self, Buffer, MetricKind};
use super::etcd_call::{self, now_ms};
use super::events::EventsDuty;
use super::http::GateHttp;
use super::shared::Shared;
use super::store::HostSharedData;
use crate::admin::AdminConfig;
use crate::config;
use crate::directory::Directory;
use crate::directory::{keys, replica};
use crate::etcd::members::MemberIndex;
use crate::etcd::EtcdConfig;
use crate::events::deliverer::Deliverer;
use crate::request::metrics::Counter;
use crate::sync::driver::{Outcome, SyncDriver, Tick, ELECTION_PERIOD_MS};
use crate::sync::{self, Syncer};

const VERSION: &str = env!("CARGO_PKG_VERSION");
const GIT_SHA: &str = env!("DEVPORTAL_GATE_GIT_SHA");

/// How often every worker ticks: a sync cycle's next call goes out on the tick
/// after the previous answer (see `SyncDriver`), so ticks are short; the
/// election runs at its own, slower pace.
const TICK: Duration = Duration::from_millis(20);
/// One tick this soon, after a full sync's page came over gRPC: the page is
/// applied as soon as the next page's call is on its way (see
/// `on_grpc_call_response`), not up to a tick later.
const SOON: Duration = Duration::from_millis(1);

#[derive(Default)]
pub struct GateRoot {
    shared: Option<Rc<Shared>>,
    sync: Option<SyncDuty>,
    events: Option<EventsDuty>,
    staleness_gauge: Option<u32>,
    last_gauge_ms: u64,
}

/// The etcd side of a worker: its driver, where etcd is, and its counters.
struct SyncDuty {
    driver: SyncDriver,
    etcd: EtcdConfig,
    /// The member the call in flight went to (one call at a time).
    member: MemberIndex,
    /// Range reads over etcd's gRPC API (Envoy with `grpc_upstream`).
    grpc: Option<GrpcReads>,
    /// The call in flight went over gRPC: its answer comes by the other callback.
    in_flight_grpc: bool,
    /// The next tick comes `SOON`; the one after it, `TICK` again.
    soon_tick: bool,
    ok_counter: Option<u32>,
    failed_counter: Option<u32>,
}

/// How this worker reads over etcd's gRPC API.
struct GrpcReads {
    /// The upstream as Envoy takes it (`grpc::envoy_grpc_service`).
    service: String,
    /// After a failed gRPC read, reads go over the gateway until then: a
    /// cluster that is not HTTP/2 costs one failed read a minute, not every one.
    paused_until_ms: u64,
}

const GRPC_PAUSE_MS: u64 = 60_000;

impl Context for GateRoot {
    fn on_http_call_response(&mut self, token_id: u32, _num_headers: usize, body_size: usize, _num_trailers: usize) {
        if let Some(events) = self.events.as_mut().filter(|events| events.owns(token_id)) {
            return events.on_answer(token_id, body_size, now_ms());
        }
        let Some(duty) = self.sync.as_mut().filter(|duty| !duty.in_flight_grpc) else {
            return;
        };
        let answer = etcd_call::read_answer(&duty.etcd, duty.member, body_size);
        if let Some(outcome) = duty.driver.on_answer(&HostSharedData, token_id, answer, now_ms()) {
            duty.report(outcome);
        }
    }

    fn on_grpc_call_response(&mut self, token_id: u32, status_code: u32, response_size: usize) {
        let Some(duty) = self.sync.as_mut().filter(|duty| duty.in_flight_grpc) else {
            return;
        };
        let now = now_ms();
        let answer = etcd_call::read_grpc_answer(status_code, response_size);
        if let Err(error) = &answer {
            if error.transport() {
                duty.pause_grpc(error, now);
            }
        }
        if let Some(outcome) = duty.driver.on_answer(&HostSharedData, token_id, answer, now) {
            duty.report(outcome);
        }
        // A full sync's next page goes out now; the page that just came is
        // applied at a tick that comes `SOON`, while etcd reads the next one.
        // Envoy allows a call from a call's answer (Kong does not, and has no
        // gRPC). Not here and now: the call seems to leave only once this
        // callback returns, so etcd would wait for the page to be applied
        // (tried: the 1M first sync took 0.2-1.2 s longer in each of 5 rounds,
        // bench/first_sync_ab.py).
        if duty.driver.range_read_ready() && duty.grpc_now(now).is_some() {
            duty.send(now);
            duty.soon_tick = abi::set_tick_period(SOON).is_ok();
        }
    }
}

impl SyncDuty {
    fn tick(&mut self, now: u64) {
        self.send(now);
        if let Some(outcome) = self.driver.work(&HostSharedData, now) {
            self.report(outcome);
        }
    }

    /// Whatever the driver has to send now.
    fn send(&mut self, now: u64) {
        let (tick, lost) = self.driver.tick(&HostSharedData, now);
        if let Some(outcome) = lost {
            self.report(outcome);
        }
        if let Tick::Send(request) = tick {
            let (sent, via_grpc) = match (self.grpc_now(now), &request.grpc_range) {
                (Some(grpc), Some(message)) => (
                    etcd_call::dispatch_grpc_range(&grpc.service, message, self.etcd.timeout_ms),
                    true,
                ),
                _ => (
                    etcd_call::dispatch(&self.etcd, &request).map(|(token, member)| {
                        self.member = member;
                        token
                    }),
                    false,
                ),
            };
            match sent {
                Ok(token) => {
                    self.in_flight_grpc = via_grpc;
                    self.driver.sent(token);
                }
                Err(error) => {
                    if via_grpc {
                        self.pause_grpc(&error, now);
                    }
                    let outcome = self.driver.not_sent(error, now);
                    self.report(outcome);
                }
            }
        }
    }

    /// How range reads go over gRPC, unless there is none or it is paused.
    fn grpc_now(&self, now: u64) -> Option<&GrpcReads> {
        self.grpc.as_ref().filter(|grpc| now >= grpc.paused_until_ms)
    }

    /// A gRPC read failed on the way: the next reads go over the gateway (the
    /// driver sends this one again), and gRPC is tried again in a minute.
    fn pause_grpc(&mut self, error: &crate::etcd::EtcdError, now: u64) {
        if let Some(grpc) = self.grpc.as_mut().filter(|grpc| now >= grpc.paused_until_ms) {
            grpc.paused_until_ms = now + GRPC_PAUSE_MS;
            log::warn!(
                "devportal-gate: a read over etcd's gRPC API failed ({error}); reading over the JSON gateway for the next {} s (is `directory.etcd.grpc_upstream` an HTTP/2 cluster?)",
                GRPC_PAUSE_MS / 1000
            );
        }
    }

    fn report(&self, outcome: Outcome) {
        match outcome {
            Outcome::Continues => {}
            Outcome::Done { report, took_ms } => {
                bump(self.ok_counter);
                if report.full || report.from_snapshot || report.changed > 0 || report.removed > 0 {
                    log::info!(
                        "devportal-gate: {} sync to etcd revision {} in {took_ms} ms: {} changed, {} removed, {} unreadable",
                        if report.full {
                            "full"
                        } else if report.from_snapshot {
                            "first (from the snapshot)"
                        } else {
                            "incremental"
                        },
                        report.revision,
                        report.changed,
                        report.removed,
                        report.unreadable
                    );
                    if report.plan.0 > 0 {
                        log::info!(
                            "devportal-gate: that full sync counted the key space in {} transactions, then read it in {} ranges",
                            report.plan.0,
                            report.plan.1
                        );
                    }
                }
            }
            Outcome::Failed(error) => {
                bump(self.failed_counter);
                log::warn!("devportal-gate: directory sync failed (the last known statuses stay enforced): {error}");
            }
        }
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
            if duty.soon_tick {
                duty.soon_tick = false;
                if let Err(status) = abi::set_tick_period(TICK) {
                    log::error!("devportal-gate: cannot set the tick period back: {status}");
                }
            }
            duty.tick(now);
        }
        if let Some(events) = self.events.as_mut() {
            events.tick(now);
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
                let report =
                    crate::directory::seed::static_directory(&HostSharedData, &namespace, &config.developers, now_ms())
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
                let seed = crate::directory::seed::etcd_once(&etcd.key_prefix, &config.developers, now_ms());
                let syncer = Syncer::new(&namespace, &etcd.key_prefix, seed)
                    .with_snapshots(&etcd.key_prefix, etcd.change_log_retention_ms);
                self.sync = Some(SyncDuty {
                    driver: SyncDriver::new(&namespace, worker, syncer, etcd.sync_interval_ms, etcd.timeout_ms)
                        .with_pruning(&etcd.key_prefix, etcd.change_log_retention_ms)
                        .with_clock(abi::now_ms),
                    etcd: etcd.clone(),
                    member: 0,
                    grpc: etcd.grpc_upstream.as_deref().map(|cluster| GrpcReads {
                        // ASCII, and at most 120 bytes (configuration): UTF-8.
                        service: String::from_utf8(crate::etcd::grpc::envoy_grpc_service(cluster))
                            .unwrap_or_else(|_| cluster.to_string()),
                        paused_until_ms: 0,
                    }),
                    in_flight_grpc: false,
                    soon_tick: false,
                    ok_counter: define_if(metrics, "devportal_gate.sync.ok", MetricKind::Counter)?,
                    failed_counter: define_if(metrics, "devportal_gate.sync.failed", MetricKind::Counter)?,
                });
                log::info!(
                    "devportal-gate {VERSION} ({GIT_SHA}) configured: etcd directory {:?} at {:?}{}, namespace {namespace:?}, worker {worker}, sync every {} ms",
                    etcd.key_prefix,
                    etcd.members.names(),
                    etcd.grpc_upstream
                        .as_ref()
                        .map(|cluster| format!(" (range reads over gRPC via {cluster:?})"))
                        .unwrap_or_default(),
                    etcd.sync_interval_ms,
                );
                replica::read_sync_state(&HostSharedData, &namespace).is_some()
            }
        };
        // The gate's registration rules, for the admin API (another filter
        // configuration in Envoy) to list and dry-run.
        if !config.admin_only {
            let published: Vec<serde_json::Value> = config.gate.rules.iter().map(|rule| rule.to_api()).collect();
            let bytes = serde_json::to_vec(&published).unwrap_or_default();
            crate::directory::write_if_different(&HostSharedData, &keys::rules(&namespace), &bytes)
                .map_err(|error| format!("cannot publish the registration rules: {error:?}"))?;
        }
        self.events = match (&config.events, &config.directory) {
            (Some(events), Directory::Etcd(etcd)) => {
                let me = format!("{namespace}/{}", super::shared::operation_id(now_ms()));
                let seed = me.bytes().fold(now_ms(), |h, b| h.rotate_left(5) ^ u64::from(b));
                log::info!(
                    "devportal-gate: events to {} sink(s); this worker is a candidate to deliver them ({me})",
                    events.sinks.len()
                );
                Some(EventsDuty::new(
                    Deliverer::new(&etcd.key_prefix, events.clone(), me, seed, etcd.timeout_ms),
                    etcd.clone(),
                    &namespace,
                    define_if(metrics, "devportal_gate.events.backlog", MetricKind::Gauge)?,
                ))
            }
            _ => None,
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
            approvals: config.approvals,
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
