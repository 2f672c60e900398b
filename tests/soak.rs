#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test code: failing loudly is the point
//! `make soak`: the fleet under the faults it will meet, on this machine. Three
//! etcd members, two gateways (`--concurrency 2` each, the shipped
//! `etcd-three-node.yaml`), steady traffic, admin actions and self-registrations
//! throughout, and scripted faults: the etcd leader killed and restarted, a
//! follower paused (SIGSTOP) and resumed, gateway B killed and restarted, the
//! network between the gateways and one member cut and healed (a proxy on that
//! path stops passing bytes: calls hang until their timeout, nothing is
//! refused), and gateway B's portal listener reconfigured over LDS (its filter
//! configuration replaced, then put back; the old one drains).
//!
//! The shipped configuration's events go to a receiver in the test; every
//! change after the start must arrive, signed, in order per developer.
//!
//! It prints a table per fault and fails on what must never happen: a wrong
//! decision (an allowed request after a confirmed revocation, on the acting
//! gateway at once or on the other within the bound; a refusal of a developer
//! confirmed approved beyond the bound), a write acknowledged and then lost, or a
//! write reported as failed that committed.
//!
//! `SOAK_SECONDS` sets the length (default 300); `SOAK_REPORT=<file>` writes the
//! table there (bench/SOAK.md). Ignored by `cargo test`: `make soak` runs it for
//! five minutes, `make test` for 60 s (`SOAK_SECONDS=60`).

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::cut_proxy::CutProxy;
use common::etcd_cluster::EtcdCluster;
use common::receiver::Receiver;
use common::{adapt_shipped_config, Envoy, Etcd, LdsGateway, Ports, Request};
use serde_json::Value;

/// The bound the README promises for another gateway: sync interval + 1 s.
const BOUND_MS: u64 = 2000;
const TOKEN: &str = "demo-admin-token-change-me";
/// etcd-three-node.yaml's events secret.
const EVENTS_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

struct Clock(Instant);
impl Clock {
    fn ms(&self) -> u64 {
        self.0.elapsed().as_millis() as u64
    }
}

#[derive(Clone, Debug)]
struct Write {
    developer: &'static str,
    sent: u64,
    done: u64,
    /// The state confirmed by a 200 ("approved" / "revoked").
    confirmed: Option<&'static str>,
    status: u16,
    error: String,
    operation: String,
}

#[derive(Clone, Copy, Debug)]
struct Observation {
    gateway: usize,
    developer: usize,
    sent: u64,
    /// When the answer came back: the gateway decided somewhere in between.
    answered: u64,
    status: u16,
}

#[derive(Clone, Copy, Debug)]
struct Health {
    gateway: usize,
    at: u64,
    staleness: u64,
}

#[derive(Default)]
struct Log {
    writes: Vec<Write>,
    observations: Vec<Observation>,
    health: Vec<Health>,
    registrations: Vec<(u64, u16)>,
}

const DEVELOPERS: [&str; 2] = ["fast@example.com", "slow@example.com"];

/// The member whose network to the gateways is cut (its endpoint in both
/// gateways' etcd cluster is the proxy).
const CUT_MEMBER: usize = 0;

fn gateway_config(cluster: &EtcdCluster, cut: &CutProxy, receiver: &Receiver, ports: &Ports) -> String {
    let mut config = adapt_shipped_config("filter-config/envoy/etcd-three-node.yaml", ports)
        .replace("port_value: 18090", &format!("port_value: {}", receiver.port));
    for (i, (member, shipped)) in cluster.members.iter().zip(["12379", "22379", "32379"]).enumerate() {
        let port = if i == CUT_MEMBER { cut.port } else { member.client };
        config = config.replace(&format!("port_value: {shipped}"), &format!("port_value: {port}"));
    }
    config
}

/// Gateway B: its portal listener over LDS (so the run can reconfigure it), a
/// short drain so a replaced filter configuration goes soon.
fn gateway_b(name: &str, config: &str, ports: &Ports) -> LdsGateway {
    LdsGateway::from_config(name, config, ports, &["--drain-time-s", "2"], true)
}

fn admin(api: u16, method: &str, path: &str, body: &str) -> Option<common::Response> {
    Request::new(method, &format!("/_devportal{path}"))
        .header("authorization", &format!("Bearer {TOKEN}"))
        .body(body)
        .try_send(api)
        .ok()
}

fn percentile(values: &mut [u64], p: f64) -> Option<u64> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    let at = ((values.len() as f64 - 1.0) * p).round() as usize;
    Some(values[at])
}

#[test]
#[ignore = "long: run by `make soak`"]
fn the_fleet_under_faults() {
    let seconds: u64 = std::env::var("SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let mut cluster = EtcdCluster::start("soak");
    let network = CutProxy::start(cluster.members[CUT_MEMBER].client);
    // The shipped configuration's events go to a receiver that checks signatures.
    let receiver = Receiver::start(EVENTS_SECRET);
    let ports = [Ports::new(), Ports::new()];
    let configs = [
        gateway_config(&cluster, &network, &receiver, &ports[0]),
        gateway_config(&cluster, &network, &receiver, &ports[1]),
    ];
    let gateway_a = Envoy::start("soak-a", &configs[0], ports[0].admin, 2);
    let mut gateway_b_now = Some(gateway_b("soak-b", &configs[1], &ports[1]));
    let apis = [ports[0].api, ports[1].api];
    let gates = [ports[0].listener, ports[1].listener];
    for api in apis {
        common::wait_until("first sync", Duration::from_secs(30), || {
            Request::get("/_devportal/health")
                .try_send(api)
                .is_ok_and(|r| r.status == 200)
        });
    }
    for developer in DEVELOPERS {
        let created = admin(
            apis[0],
            "POST",
            "/developers",
            &format!(r#"{{"email":"{developer}","status":"approved"}}"#),
        )
        .unwrap();
        assert_eq!(created.status, 201, "{}", created.body);
    }
    std::thread::sleep(Duration::from_millis(BOUND_MS));
    // Every change after this revision must reach the receiver.
    let (_, events_from) = Etcd::attach(cluster.members[1].client).list("/devportal/events/");

    let clock = Arc::new(Clock(Instant::now()));
    let log = Arc::new(Mutex::new(Log::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let b_down = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();

    // Admin actions through gateway A: fast churn (every 0.2 s) and slow churn
    // (every 3 s, so gateway B's delay can be measured).
    for (developer, pause) in [(DEVELOPERS[0], 200u64), (DEVELOPERS[1], 3000)] {
        let (clock, log, stop) = (clock.clone(), log.clone(), stop.clone());
        let api = apis[0];
        workers.push(thread::spawn(move || {
            let mut revoked = false;
            while !stop.load(Ordering::SeqCst) {
                let action = if revoked { "reapprove" } else { "revoke" };
                let sent = clock.ms();
                let answer = admin(api, "POST", &format!("/developers/{developer}/{action}"), "{}");
                let done = clock.ms();
                let (status, body) = answer.map_or((0, Value::Null), |r| (r.status, r.json()));
                let confirmed = match (status, action) {
                    (200, "revoke") => Some("revoked"),
                    (200, _) => Some("approved"),
                    _ => None,
                };
                // A 409 tells the current state: an earlier unknown write committed.
                let current = body["developer"]["status"].as_str().or(body["status"].as_str());
                match (confirmed, status, current) {
                    (Some(state), ..) => revoked = state == "revoked",
                    (None, 409, Some(state)) => revoked = state == "revoked",
                    _ => {}
                }
                log.lock().unwrap().writes.push(Write {
                    developer,
                    sent,
                    done,
                    confirmed,
                    status,
                    error: body["error"].as_str().unwrap_or_default().to_string(),
                    operation: body["operation"].as_str().unwrap_or_default().to_string(),
                });
                thread::sleep(Duration::from_millis(pause));
            }
        }));
    }
    // Both developers call the API through both gateways.
    for (gateway, &port) in gates.iter().enumerate() {
        let (clock, log, stop, b_down) = (clock.clone(), log.clone(), stop.clone(), b_down.clone());
        workers.push(thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                for (developer, email) in DEVELOPERS.iter().enumerate() {
                    if gateway == 1 && b_down.load(Ordering::SeqCst) {
                        continue;
                    }
                    let sent = clock.ms();
                    if let Ok(response) = Request::get("/api/orders").user(email).try_send(port) {
                        let answered = clock.ms();
                        log.lock().unwrap().observations.push(Observation {
                            gateway,
                            developer,
                            sent,
                            answered,
                            status: response.status,
                        });
                    }
                }
                thread::sleep(Duration::from_millis(40));
            }
        }));
    }
    // Self-registrations, alternating gateways; and health of both.
    {
        let (clock, log, stop) = (clock.clone(), log.clone(), stop.clone());
        workers.push(thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                let port = gates[n % 2];
                if let Ok(response) = Request::get("/portal/home")
                    .user(&format!("soak{n}@example.com"))
                    .try_send(port)
                {
                    log.lock().unwrap().registrations.push((clock.ms(), response.status));
                }
                n += 1;
                for (gateway, &api) in apis.iter().enumerate() {
                    if let Ok(health) = Request::get("/_devportal/health").try_send(api) {
                        if let Some(staleness) = health.json()["staleness_ms"].as_u64() {
                            log.lock().unwrap().health.push(Health {
                                gateway,
                                at: clock.ms(),
                                staleness,
                            });
                        }
                    }
                }
                thread::sleep(Duration::from_millis(250));
            }
        }));
    }

    // The script: (fraction of the run, what happens).
    let phase_at = |fraction: f64| Duration::from_millis((seconds as f64 * 1000.0 * fraction) as u64);
    let mut phases: Vec<(String, u64, u64)> = Vec::new(); // name, start, end-action time
    let wait_until_fraction = |fraction: f64| {
        let target = phase_at(fraction);
        let now = clock.0.elapsed();
        if target > now {
            thread::sleep(target - now);
        }
    };
    wait_until_fraction(0.10);
    let steady_end = clock.ms();
    phases.push(("steady".into(), 0, steady_end));
    let leader = cluster.leader().unwrap_or(0);
    let start = clock.ms();
    cluster.kill(leader);
    wait_until_fraction(0.25);
    cluster.restart(leader);
    phases.push((
        format!("etcd leader (m{}) killed, restarted", leader + 1),
        start,
        clock.ms(),
    ));
    wait_until_fraction(0.35);
    let follower = (cluster.leader().unwrap_or(0) + 1) % 3;
    let start = clock.ms();
    cluster.signal(follower, "-STOP");
    wait_until_fraction(0.45);
    cluster.signal(follower, "-CONT");
    phases.push((
        format!("etcd follower (m{}) paused, resumed", follower + 1),
        start,
        clock.ms(),
    ));
    wait_until_fraction(0.55);
    let start = clock.ms();
    b_down.store(true, Ordering::SeqCst);
    drop(gateway_b_now.take());
    wait_until_fraction(0.60);
    gateway_b_now = Some(gateway_b("soak-b2", &configs[1], &ports[1]));
    b_down.store(false, Ordering::SeqCst);
    let b_down_window = Some((start, clock.ms()));
    phases.push(("gateway B killed, restarted".into(), start, clock.ms()));
    wait_until_fraction(0.70);
    let role = if cluster.leader() == Some(CUT_MEMBER) {
        "leader"
    } else {
        "follower"
    };
    let start = clock.ms();
    network.cut();
    wait_until_fraction(0.80);
    network.heal();
    phases.push((
        format!("network to etcd m{} ({role}) cut, healed", CUT_MEMBER + 1),
        start,
        clock.ms(),
    ));
    wait_until_fraction(0.85);
    let start = clock.ms();
    let b = gateway_b_now.as_ref().unwrap();
    let original = b.listener.clone();
    let changed = original.replace(r#""sync_interval_ms": 1000"#, r#""sync_interval_ms": 900"#);
    assert_ne!(changed, original, "the LDS change must change the filter configuration");
    b.publish(&changed);
    wait_until_fraction(0.90);
    b.publish(&original);
    phases.push(("gateway B reconfigured over LDS, twice".into(), start, clock.ms()));
    wait_until_fraction(1.0);
    stop.store(true, Ordering::SeqCst);
    for worker in workers {
        let _ = worker.join();
    }
    let end = clock.ms();
    let log = log.lock().unwrap();

    // ---- Wrong decisions ---------------------------------------------------------
    let (wrong, fail_closed) = wrong_decisions(&log);

    // ---- Writes: nothing acknowledged lost, nothing reported failed committed -------
    let mut lost = Vec::new();
    let mut failed_but_committed = Vec::new();
    for developer in DEVELOPERS {
        let record = admin(apis[0], "GET", &format!("/developers/{developer}"), "")
            .unwrap()
            .json();
        let history: Vec<String> = record["developer"]["history"]
            .as_array()
            .map(|h| {
                h.iter()
                    .filter_map(|t| t["operation"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        for write in log.writes.iter().filter(|w| w.developer == developer) {
            if write.confirmed.is_some() && !history.contains(&write.operation) {
                lost.push(format!("{write:?}"));
            }
            if write.error == "directory_unavailable"
                && !write.operation.is_empty()
                && history.contains(&write.operation)
            {
                failed_but_committed.push(format!("{write:?}"));
            }
        }
    }

    // ---- Events: every change delivered, in order per developer --------------------
    let (expected, events_missing, events_repeated, events_out_of_order) = {
        // (Every member runs again by now; the cut one is m1.)
        let (log, _) = Etcd::attach(cluster.members[1].client).list("/devportal/events/");
        let expected: Vec<String> = log
            .iter()
            .filter(|(_, _, revision)| *revision > events_from)
            .map(|(_, value, revision)| {
                let change: Value = serde_json::from_str(value).unwrap();
                format!("{revision}-{}", change["email"].as_str().unwrap())
            })
            .collect();
        let received = || -> Vec<String> { receiver.accepted().into_iter().map(|d| d.id).collect() };
        let _ = common::try_wait_until(Duration::from_secs(30), || {
            let got = received();
            expected.iter().all(|id| got.contains(id))
        });
        let got = received();
        let missing: Vec<&String> = expected.iter().filter(|id| !got.contains(id)).collect();
        let mut counts: std::collections::HashMap<&String, usize> = std::collections::HashMap::new();
        for id in &got {
            *counts.entry(id).or_default() += 1;
        }
        let repeated = counts.values().filter(|n| **n > 1).count();
        // Per developer, first arrivals in revision order.
        let mut last: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
        let mut out_of_order = 0;
        let mut first_seen = std::collections::HashSet::new();
        for id in &got {
            if !first_seen.insert(id.clone()) {
                continue;
            }
            let (revision, email) = id.split_once('-').unwrap();
            let revision: u64 = revision.parse().unwrap();
            if last.get(email).is_some_and(|previous| *previous > revision) {
                out_of_order += 1;
            }
            last.insert(email.to_string(), revision);
        }
        (expected.len(), missing.len(), repeated, out_of_order)
    };
    let bad_signatures = receiver.rejected_signatures().len();

    // ---- The table -----------------------------------------------------------------
    let mut table = format!(
        "Soak run: {seconds} s, three etcd members, two gateways (2 workers each); `make soak`.\n\n\
         | fault | writes ok | failed | unknown | conflict | 503 (fail closed) | max staleness A / B | revocation to B p50 / p99 | recovery |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    );
    let mut windows = phases.clone();
    windows.push(("after the faults".into(), phases.last().map_or(0, |p| p.2), end));
    for (i, (name, start, end_action)) in windows.iter().enumerate() {
        let window_end = windows.get(i + 1).map_or(end, |next| next.1);
        let writes: Vec<&Write> = log
            .writes
            .iter()
            .filter(|w| w.sent >= *start && w.sent < window_end)
            .collect();
        let ok = writes.iter().filter(|w| w.status == 200).count();
        let unknown = writes.iter().filter(|w| w.error == "outcome_unknown").count();
        let conflict = writes.iter().filter(|w| w.status == 409).count();
        let failed = writes.len() - ok - unknown - conflict;
        let closed = log
            .observations
            .iter()
            .filter(|o| o.sent >= *start && o.sent < window_end && o.status == 503)
            .count();
        let staleness = |gateway: usize| {
            log.health
                .iter()
                .filter(|h| h.gateway == gateway && h.at >= *start && h.at < window_end)
                .map(|h| h.staleness)
                .max()
                .unwrap_or(0)
        };
        // (Revocations confirmed while gateway B was down are not B's delay.)
        let b_was_down = |t: u64| b_down_window.is_some_and(|(from, to)| t >= from && t <= to);
        let mut delays: Vec<u64> = log
            .writes
            .iter()
            .filter(|w| {
                w.developer == DEVELOPERS[1]
                    && w.confirmed == Some("revoked")
                    && w.done >= *start
                    && w.done < window_end
            })
            .filter(|w| !b_was_down(w.done))
            .filter_map(|w| {
                log.observations
                    .iter()
                    .find(|o| o.gateway == 1 && o.developer == 1 && o.sent >= w.done && o.status == 403)
                    .map(|o| o.sent - w.done)
            })
            .collect();
        let p50 = percentile(&mut delays, 0.5).map_or("-".into(), |v| format!("{:.2} s", v as f64 / 1000.0));
        let p99 = percentile(&mut delays, 0.99).map_or("-".into(), |v| format!("{:.2} s", v as f64 / 1000.0));
        // Recovery: after the fault's last action, the first successful write and
        // both gateways fresh (staleness under 1.5 s) again.
        let recovery = if i == 0 || i + 1 == windows.len() {
            "-".to_string()
        } else {
            let write_ok = log
                .writes
                .iter()
                .find(|w| w.sent >= *end_action && w.status == 200)
                .map(|w| w.done);
            let fresh = |gateway: usize| {
                log.health
                    .iter()
                    .find(|h| h.gateway == gateway && h.at >= *end_action && h.staleness < 1500)
                    .map(|h| h.at)
            };
            match (write_ok, fresh(0), fresh(1)) {
                (Some(a), Some(b), Some(c)) => format!("{:.1} s", (a.max(b).max(c) - end_action) as f64 / 1000.0),
                _ => "not recovered".into(),
            }
        };
        table.push_str(&format!(
            "| {name} | {ok} | {failed} | {unknown} | {conflict} | {closed} | {:.1} s / {:.1} s | {p50} / {p99} | {recovery} |\n",
            staleness(0) as f64 / 1000.0,
            staleness(1) as f64 / 1000.0
        ));
    }
    let registered = log.registrations.iter().filter(|(_, s)| *s == 403).count();
    table.push_str(&format!(
        "\nMust be 0: wrong decisions **{}** (of {} requests judged; {} answered 503, failing closed), writes acknowledged then lost **{}**, writes reported failed but committed **{}**.\n\
         Self-registrations: {} recorded of {} attempts. Writes: {} in all.\n",
        wrong.len(),
        log.observations.len(),
        fail_closed,
        lost.len(),
        failed_but_committed.len(),
        registered,
        log.registrations.len(),
        log.writes.len(),
    ));
    table.push_str(&format!(
        "Events: {expected} changes after the start; missing at the receiver **{events_missing}**, out of order for a developer **{events_out_of_order}**, bad signatures **{bad_signatures}** (must be 0); delivered more than once: {events_repeated} (allowed after a takeover: positions are saved once a second).\n"
    ));
    println!("\n{table}");
    if let Some(path) = std::env::var_os("SOAK_REPORT") {
        let report = format!("# Soak (`make soak`)\n\n{table}\nThe run is described at the top of `tests/soak.rs`. Figures from one run on the build machine (2 cores, shared); rerun with `make soak` (`SOAK_SECONDS` to change the length).\n");
        std::fs::write(path, report).unwrap();
    }
    assert!(wrong.is_empty(), "wrong decisions:\n{}", wrong.join("\n"));
    assert_eq!(events_missing, 0, "events never delivered");
    assert_eq!(events_out_of_order, 0, "events out of order for a developer");
    assert_eq!(bad_signatures, 0, "events whose signature failed");
    assert!(lost.is_empty(), "acknowledged then lost:\n{}", lost.join("\n"));
    assert!(
        failed_but_committed.is_empty(),
        "reported failed, committed:\n{}",
        failed_but_committed.join("\n")
    );
    drop((gateway_a, gateway_b_now));
}

/// The requests decided wrongly, and how many were answered 503 (failing
/// closed, not wrong). A request is judged only where its developer's state was
/// confirmed and held over the whole bound before it (0 on gateway A, which made
/// the changes; `BOUND_MS` on B) and until its answer came back: the gateway
/// decides at some instant between sending and answering, so a write sent
/// meanwhile (on a loaded machine the request may wait in a queue) may already
/// have taken effect.
fn wrong_decisions(log: &Log) -> (Vec<String>, usize) {
    // The state of a developer at time t, from confirmed writes; `None` where an
    // unconfirmed write (failed or unknown) may have changed it since.
    let state_at = |developer: &str, t: u64| -> Option<&'static str> {
        let mut state = Some("approved");
        for write in log.writes.iter().filter(|w| w.developer == developer) {
            if write.sent > t {
                break;
            }
            match write.confirmed {
                // Times are whole milliseconds: a write confirmed in the same
                // millisecond as t may have been confirmed after it.
                Some(confirmed) if write.done < t => state = Some(confirmed),
                // In flight at t, or not confirmed: unknown until the next confirmation.
                _ => state = None,
            }
        }
        state
    };
    let mut wrong = Vec::new();
    let mut fail_closed = 0;
    for observation in &log.observations {
        let developer = DEVELOPERS[observation.developer];
        let bound = if observation.gateway == 0 { 0 } else { BOUND_MS };
        let t = observation.sent;
        let (Some(then), Some(now)) = (state_at(developer, t.saturating_sub(bound)), state_at(developer, t)) else {
            continue;
        };
        let changed_within = log
            .writes
            .iter()
            .any(|w| w.developer == developer && w.done > t.saturating_sub(bound) && w.sent <= observation.answered);
        if then != now || changed_within {
            continue;
        }
        match (now, observation.status) {
            ("revoked", 200) => wrong.push(format!(
                "{observation:?}: allowed after a confirmed revocation; {}",
                writes_near(log, developer, t)
            )),
            ("approved", 403) => wrong.push(format!(
                "{observation:?}: refused although approved; {}",
                writes_near(log, developer, t)
            )),
            (_, 503) => fail_closed += 1,
            _ => {}
        }
    }
    (wrong, fail_closed)
}

/// The developer's writes within 5 s of `t`, to tell what a wrong decision met.
fn writes_near(log: &Log, developer: &str, t: u64) -> String {
    let near: Vec<String> = log
        .writes
        .iter()
        .filter(|w| w.developer == developer && w.done + 5000 >= t && w.sent <= t + 5000)
        .map(|w| format!("{}..{} {} {:?} {}", w.sent, w.done, w.status, w.confirmed, w.operation))
        .collect();
    format!("writes near: [{}]", near.join("; "))
}

/// The evaluator catches what it is there to catch (so a soak run with 0 wrong
/// decisions means something).
#[test]
fn the_evaluator_finds_planted_wrong_decisions() {
    let write = |sent: u64, done: u64, confirmed: Option<&'static str>| Write {
        developer: DEVELOPERS[1],
        sent,
        done,
        confirmed,
        status: if confirmed.is_some() { 200 } else { 503 },
        error: String::new(),
        operation: String::new(),
    };
    let seen = |gateway: usize, sent: u64, status: u16| Observation {
        gateway,
        developer: 1,
        sent,
        answered: sent + 5,
        status,
    };
    let log = Log {
        writes: vec![write(1000, 1100, Some("revoked")), write(9000, 9100, Some("approved"))],
        observations: vec![
            seen(0, 1050, 200), // in flight: not judged
            seen(0, 1200, 200), // A after the confirmed revocation: wrong
            seen(1, 1500, 200), // B within the bound: not judged
            seen(1, 3500, 200), // B beyond the bound: wrong
            seen(1, 4000, 403), // right
            seen(0, 9500, 403), // A after the confirmed approval: wrong
            seen(1, 9500, 403), // B within the bound: not judged
            seen(0, 5000, 503), // failing closed: counted, not wrong
        ],
        ..Log::default()
    };
    let (wrong, closed) = wrong_decisions(&log);
    assert_eq!(wrong.len(), 3, "{wrong:#?}");
    assert_eq!(closed, 1);
    // An unconfirmed write makes its developer's state unknown until the next
    // confirmation: nothing is judged meanwhile.
    let log = Log {
        writes: vec![write(1000, 1100, None), write(5000, 5100, Some("revoked"))],
        observations: vec![seen(0, 2000, 200), seen(0, 3000, 403), seen(0, 5200, 200)],
        ..Log::default()
    };
    assert_eq!(wrong_decisions(&log).0.len(), 1);
    // A write sent while the request waited for its answer may have decided it.
    let slow = Observation {
        answered: 9300,
        ..seen(0, 8950, 403)
    };
    let log = Log {
        writes: vec![write(1000, 1100, Some("approved")), write(9000, 9100, Some("revoked"))],
        observations: vec![slow, seen(0, 8900, 403)],
        ..Log::default()
    };
    let (wrong, _) = wrong_decisions(&log);
    assert_eq!(wrong.len(), 1, "{wrong:#?}");
    assert!(wrong[0].contains("sent: 8900"), "{wrong:#?}");
    // Times are whole milliseconds: a request sent in the millisecond its
    // write was confirmed may have been sent before it; the next one may not.
    let log = Log {
        writes: vec![write(1000, 1100, Some("revoked"))],
        observations: vec![seen(0, 1100, 200), seen(0, 1101, 200)],
        ..Log::default()
    };
    let (wrong, _) = wrong_decisions(&log);
    assert_eq!(wrong.len(), 1, "{wrong:#?}");
    assert!(wrong[0].contains("sent: 1101"), "{wrong:#?}");
}
