#!/usr/bin/env python3
"""devportal-gate at scale (issue 14): a directory of N developers generated
straight into a fresh etcd by a bulk loader (not through the admin API), then one
Envoy (`--concurrency 1`) with the gate in etcd mode. Per size it measures:

- first sync: from Envoy's start to `/health` answering 200 (the gate fails
  closed until then), and the same with 2 developers (Envoy's own start);
- first sync from the snapshot (10,000 developers and more): the first
  gateway writes the directory's snapshot after its own first sync; once it
  is in etcd (and the revocations below are in, after it), that gateway stops
  and a second one starts: its first sync reads the snapshot, the developers
  changed since, and the change log;
- memory per developer: Envoy's RSS after the first sync (and two more sync
  cycles) at N, minus the same at 2, divided by N;
- revocation delay (sizes in --revocations-at): a developer is revoked the way
  another gateway's admin API does it (the record and its change log entry in
  one etcd transaction), and the gate is asked every 5 ms until it refuses;
  from etcd's acknowledgement to the first 403, over --revocations revocations
  spaced at random within a second. Then --direct-writes revocations written
  straight into etcd by "another tool" (no change log entry): those wait for
  the reconciliation.

Writes bench/SCALE.md. Usage:
  bench/scale.py [--sizes 100000,1000000] [--revocations 50] [--revocations-at 1000000]
"""
import argparse
import base64
import http.client
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENVOY = os.environ.get("ENVOY_BIN", os.path.join(ROOT, ".venv/bin/envoy"))
ETCD = os.environ.get("ETCD_BIN", "/usr/bin/etcd")
GATE_WASM = os.environ.get("DEVPORTAL_GATE_WASM", os.path.join(ROOT, "target/wasm32-wasip1/release/devportal_gate.wasm"))
WORK = os.path.join(ROOT, "bench/target/scale")
LISTENER, ADMIN, ETCD_CLIENT, ETCD_PEER = 18100, 18101, 18179, 18180
PREFIX = "/scale/"
# Puts per bulk transaction (etcd is started with --max-txn-ops above it).
BULK = 5000
STATUSES = ["approved", "requested", "revoked", "rejected"]
# 10M developers take minutes to sync.
FIRST_SYNC_LIMIT_S = 1800
# Below this the filter writes no snapshot (`sync::snapshot::SNAPSHOT_MIN_DEVELOPERS`).
SNAPSHOT_MIN = 10_000
FIRST_SYNC_RUNS = 3
# Admin revocations through the measured gateway (sizes in --revocations-at).
ADMIN_ACTIONS = 20
# Pages of the tabs read through the measured gateway's admin API.
ADMIN_LISTS = 24


def b64(text):
    return base64.b64encode(text.encode()).decode()


def email_of(i):
    return f"dev{i:08d}@example.com"


# Approvals end (issue 13's expiry) in 2100, spread over a day: every approved
# developer has an end, the way a programme whose approvals last a year looks,
# without any of them ending during the measurement.
APPROVAL_ENDS_MS = 4_102_444_800_000


def stored(i, status, at_ms):
    """A developer as the filter stores it: registered, then given `status`;
    an approval has an end."""
    history = [{"actor": "self-service", "from": None, "to": "requested", "at_ms": at_ms}]
    if status != "requested":
        history.append({"actor": "ops", "from": "requested", "to": status, "at_ms": at_ms + 1})
    document = {"status": status, "created_ms": at_ms, "updated_ms": at_ms + 1,
                "metadata": {"full_name": f"Developer {i}"}, "history": history}
    if status == "approved":
        document["approval_expires_ms"] = APPROVAL_ENDS_MS + i % 86_400_000
    return json.dumps(document, separators=(",", ":"))


class Etcd:
    def __init__(self, name):
        self.data = os.path.join(WORK, f"etcd-{name}")
        shutil.rmtree(self.data, ignore_errors=True)
        os.makedirs(self.data)
        self.log = open(os.path.join(WORK, f"etcd-{name}.log"), "w")
        self.proc = subprocess.Popen([
            ETCD, "--name", "scale", "--data-dir", self.data,
            "--listen-client-urls", f"http://127.0.0.1:{ETCD_CLIENT}",
            "--advertise-client-urls", f"http://127.0.0.1:{ETCD_CLIENT}",
            "--listen-peer-urls", f"http://127.0.0.1:{ETCD_PEER}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{ETCD_PEER}",
            "--initial-cluster", f"scale=http://127.0.0.1:{ETCD_PEER}",
            # A bulk load of millions of keys: big transactions, a big backend.
            "--max-txn-ops", str(BULK * 2), "--max-request-bytes", str(64 << 20),
            "--quota-backend-bytes", str(32 << 30),
            # Loading speed only: the data is thrown away after the run.
            "--unsafe-no-fsync",
        ], stdout=self.log, stderr=subprocess.STDOUT)
        self.conn = None
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                self.post("/v3/kv/range", {"key": b64("x")})
                return
            except OSError:
                self.conn = None
                time.sleep(0.1)
        raise SystemExit("etcd did not start; see " + self.log.name)

    def post(self, path, body):
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", ETCD_CLIENT, timeout=120)
        self.conn.request("POST", path, json.dumps(body), {"content-type": "application/json"})
        answer = self.conn.getresponse()
        data = answer.read()
        if answer.status != 200:
            raise RuntimeError(f"etcd {path}: {answer.status} {data[:300]!r}")
        return json.loads(data)

    def load(self, n):
        at_ms = 1_700_000_000_000
        started = time.time()
        for first in range(0, n, BULK):
            ops = [{"request_put": {"key": b64(PREFIX + "dev/" + email_of(i)),
                                    "value": b64(stored(i, STATUSES[i % 4], at_ms + i))}}
                   for i in range(first, min(n, first + BULK))]
            self.post("/v3/kv/txn", {"success": ops})
        return time.time() - started

    def delete_snapshot(self):
        """So that the next gateway reads every developer, as the fleet's first does."""
        self.post("/v3/kv/deleterange", {"key": b64(PREFIX + "snapshot/"), "range_end": b64(PREFIX + "snapshot0")})

    def get(self, key):
        kvs = self.post("/v3/kv/range", {"key": b64(key)}).get("kvs") or []
        return base64.b64decode(kvs[0]["value"]) if kvs else None

    def put(self, key, value):
        return int(self.post("/v3/kv/put", {"key": b64(key), "value": b64(value)})["header"]["revision"])

    def revoke_logged(self, email, i, now_ms):
        """What the admin API writes: the record and a change log entry, together."""
        change = json.dumps({"email": email, "from": "approved", "to": "revoked", "actor": "bench", "at_ms": now_ms})
        ops = [{"request_put": {"key": b64(PREFIX + "dev/" + email), "value": b64(stored(i, "revoked", now_ms))}},
               {"request_put": {"key": b64(f"{PREFIX}events/{now_ms:016}-bench{i}-{email}"), "value": b64(change)}}]
        self.post("/v3/kv/txn", {"success": ops})

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.log.close()
        shutil.rmtree(self.data, ignore_errors=True)


# How the syncer reads ranges: "grpc" (etcd's gRPC API through an HTTP/2
# cluster, as filter-config/envoy/demo.yaml ships) or "json" (its JSON gateway
# only, as on Kong). Set by --reads.
READS = "grpc"
SKIP_SNAPSHOT = False


def gate_config():
    etcd = {"upstream": "etcd", "authority": f"127.0.0.1:{ETCD_CLIENT}", "key_prefix": PREFIX, "timeout_ms": 10000}
    if READS == "grpc":
        etcd["grpc_upstream"] = "etcd_grpc"
    return {
        "config_version": 1,
        "namespace": "scale",
        "routes": [{"prefix": "/api/", "class": "api"}],
        "admin": {"prefix": "/_devportal", "tokens": [{"name": "bench", "token": "bench-token-0123456789"}],
                  "registration_url": "http://127.0.0.1/portal/register"},
        "directory": {"source": "etcd", "sync_interval_ms": 1000, "etcd": etcd},
    }


def envoy_config():
    wasm = {"name": "devportal_gate", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
        "config": {"name": "devportal_gate", "root_id": "devportal_gate",
                   "vm_config": {"vm_id": "devportal_gate", "runtime": "envoy.wasm.runtime.v8",
                                 "code": {"local": {"filename": GATE_WASM}}},
                   "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue",
                                     "value": json.dumps(gate_config())}}}}
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "scale",
        "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
            {"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": {"inline_string": "ok\n"}}}]}]},
        # As demo.yaml's admin listener: the buffer filter holds an admin request's
        # headers from the router until the filter has read the body.
        "http_filters": [wasm, {"name": "envoy.filters.http.buffer", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer", "max_request_bytes": 65536}},
                         {"name": "envoy.filters.http.router", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}],
    }
    def etcd_cluster(name, http2=False):
        cluster = {"name": name, "type": "STATIC", "connect_timeout": "1s",
                   "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
                       {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": ETCD_CLIENT}}}}]}]}}
        if http2:
            cluster["typed_extension_protocol_options"] = {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}}}}
        return cluster
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": ADMIN}}},
        "static_resources": {
            "listeners": [{"name": "scale", "address": {"socket_address": {"address": "127.0.0.1", "port_value": LISTENER}},
                           "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}]}],
            "clusters": [etcd_cluster("etcd"), etcd_cluster("etcd_grpc", http2=True)]},
    }


def status_of(path, headers=None):
    request = urllib.request.Request(f"http://127.0.0.1:{LISTENER}{path}", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return None


def envoy_heap_bytes():
    """Envoy's own heap (tcmalloc's allocated bytes): shared data lives there; the
    wasm VMs' linear memories are outside it."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{ADMIN}/memory", timeout=10) as answer:
            return int(json.load(answer)["allocated"])
    except (OSError, ValueError, KeyError):
        return 0


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class Envoy:
    def __init__(self, name):
        path = os.path.join(WORK, f"envoy-{name}.json")
        with open(path, "w") as f:
            json.dump(envoy_config(), f)
        self.log_path = os.path.join(WORK, f"envoy-{name}.log")
        self.log = open(self.log_path, "w")
        self.started = time.time()
        # The filter's own lines (how it synced) at info; Envoy's at warn.
        self.proc = subprocess.Popen([ENVOY, "-c", path, "--concurrency", "1", "--disable-hot-restart",
                                      "--log-level", "warn", "--component-log-level", "wasm:info"],
                                     stdout=self.log, stderr=subprocess.STDOUT)

    def wait_synced(self, limit_s):
        while time.time() - self.started < limit_s:
            if self.proc.poll() is not None:
                raise SystemExit("Envoy exited; see " + self.log.name)
            if status_of("/_devportal/health") == 200:
                return time.time() - self.started
            time.sleep(0.05)
        raise SystemExit(f"no first sync within {limit_s} s; see {self.log.name}")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.log.close()


def gate(email):
    return status_of("/api/orders", {"x-consumer-username": email})


def timed_gate(email, answers):
    """`gate(email)`, its answer time appended to `answers` (s): a request that
    waits behind the syncer's work on the worker shows it."""
    started = time.perf_counter()
    status = gate(email)
    answers.append(time.perf_counter() - started)
    return status


def admin_revocations(n, count, first):
    """Revokes `count` approved developers through this gateway's admin API,
    one at a time; the time each request takes (its etcd calls, and the
    acting gateway's own edit of its tabs, which it makes at once)."""
    times = []
    for k in range(count):
        i = (first // 4 + 13 * k) * 4 % n  # approved (every fourth), spread over the buckets by the hash
        email = email_of(i)
        request = urllib.request.Request(
            f"http://127.0.0.1:{LISTENER}/_devportal/developers/{email}/revoke", data=b"{}", method="POST",
            headers={"authorization": "Bearer bench-token-0123456789", "content-type": "application/json"})
        started = time.perf_counter()
        try:
            with urllib.request.urlopen(request, timeout=60) as answer:
                body = answer.read()
        except urllib.error.HTTPError as error:
            raise SystemExit(f"admin revocation of {email}: {error.code} {error.read()[:300]!r}")
        assert b'"revoked"' in body, (email, body[:300])
        times.append(time.perf_counter() - started)
        assert gate(email) == 403, email
    return times


def admin_lists(count):
    """`count` pages of the tabs through this gateway's admin API, as the
    console asks for them (a page of 50 with the four tabs' counts): the first
    and a deep page of each tab in turn, and a search. Returns each request's
    kind (0 first page, 1 page 200, 2 search) and time, and the gate's answer times meanwhile (a thread asks every 5 ms: on
    the one worker, a request waits behind the listing)."""
    import threading
    answers, stop = [], threading.Event()

    def poll():
        while not stop.is_set():
            timed_gate(email_of(0), answers)
            time.sleep(0.005)

    poller = threading.Thread(target=poll)
    poller.start()
    times = []
    try:
        for k in range(count):
            tab = STATUSES[k % 4]
            query = [f"status={tab}&per_page=50", f"status={tab}&per_page=50&page=200",
                     f"status={tab}&per_page=50&q=dev0001"][k // 4 % 3]
            request = urllib.request.Request(f"http://127.0.0.1:{LISTENER}/_devportal/developers?{query}",
                                             headers={"authorization": "Bearer bench-token-0123456789"})
            started = time.perf_counter()
            with urllib.request.urlopen(request, timeout=60) as answer:
                body = json.load(answer)
            times.append((k // 4 % 3, time.perf_counter() - started))
            assert body["counts"][tab] > 0 and len(body["developers"]) > 0, (query, str(body)[:300])
            time.sleep(0.05)
    finally:
        stop.set()
        poller.join()
    return times, answers


def revocation_delays(etcd, n, count, first, logged, answers):
    """Revokes `count` approved developers (every fourth is approved), spread
    over the key space; the delay of each from etcd's acknowledgement to the
    gate's first 403. Every poll's answer time goes to `answers`."""
    delays = []
    for k in range(count):
        i = ((first + k * (n // max(1, count))) // 4) * 4 % n
        email = email_of(i)
        assert gate(email) == 200, email
        time.sleep(random.random())
        if logged:
            etcd.revoke_logged(email, i, int(time.time() * 1000))
        else:
            etcd.put(PREFIX + "dev/" + email, stored(i, "revoked", 1_800_000_000_000))
        acknowledged = time.time()
        while timed_gate(email, answers) != 403:
            if time.time() - acknowledged > 300:
                raise SystemExit(f"revocation of {email} not enforced within 300 s")
            time.sleep(0.005)
        delays.append(time.time() - acknowledged)
    return delays


def measure(n, revocations, direct_writes):
    print(f"== {n:,} developers", flush=True)
    etcd = Etcd(str(n))
    try:
        load_s = etcd.load(n)
        print(f"   loaded into etcd in {load_s:.1f} s", flush=True)
        # The fleet's first gateway, FIRST_SYNC_RUNS times (one sample varied by
        # a second at 1M; the first read after the bulk load is the slowest):
        # the median is reported, every run listed. The last gateway stays for
        # the rest of the measurements.
        runs = []
        for run in range(FIRST_SYNC_RUNS_NOW):
            etcd.delete_snapshot()
            etcd_cpu = cpu_seconds(etcd.proc.pid)
            envoy = Envoy(str(n))
            try:
                synced_s = envoy.wait_synced(FIRST_SYNC_LIMIT_S)
            except BaseException:
                envoy.stop()
                raise
            runs.append((synced_s, (cpu_seconds(envoy.proc.pid), cpu_seconds(etcd.proc.pid) - etcd_cpu)))
            print(f"   first sync after {synced_s:.2f} s (CPU: Envoy {runs[-1][1][0]:.1f} s, etcd {runs[-1][1][1]:.1f} s)", flush=True)
            if run + 1 < FIRST_SYNC_RUNS_NOW:
                envoy.stop()
        first_sync_s, cpu = sorted(runs)[len(runs) // 2]
        try:
            assert gate(email_of(0)) == 200 and gate(email_of(1)) == 403, "the gate decides from the synced directory"
            # Settle: two more sync cycles, then the resident set.
            time.sleep(2.5)
            rss = rss_bytes(envoy.proc.pid)
            heap = envoy_heap_bytes()
            print(f"   Envoy RSS {rss / 2**20:.0f} MiB, of which Envoy's heap {heap / 2**20:.0f} MiB", flush=True)
            answers = []
            delays = revocation_delays(etcd, n, revocations, 0, logged=True, answers=answers)
            direct = revocation_delays(etcd, n, direct_writes, 1000, logged=False, answers=answers)
            admin = admin_revocations(n, ADMIN_ACTIONS if revocations else 0, 2000)
            rss_before_lists = rss_bytes(envoy.proc.pid)
            lists, list_answers = admin_lists(ADMIN_LISTS if revocations else 0)
            rss_after_lists = rss_bytes(envoy.proc.pid) - rss_before_lists
            result = {"n": n, "load_s": load_s, "first_sync_s": first_sync_s, "first_sync_runs": [r[0] for r in runs],
                      "rss": rss, "heap": heap, "delays": delays, "direct": direct, "cpu": cpu, "snapshot": None,
                      "answers": answers, "admin": admin, "lists": lists, "list_answers": list_answers,
                      "rss_growth_lists": rss_after_lists}
            if n >= SNAPSHOT_MIN and not SKIP_SNAPSHOT:
                while etcd.get(PREFIX + "snapshot/current") is None:
                    if time.time() - envoy.started > FIRST_SYNC_LIMIT_S * 2:
                        raise SystemExit("no snapshot written; see " + envoy.log_path)
                    time.sleep(0.5)
                current = json.loads(etcd.get(PREFIX + "snapshot/current"))
                written_after_s = time.time() - envoy.started - first_sync_s
                print(f"   snapshot in etcd {written_after_s:.0f} s after the first sync: {current['parts']} parts", flush=True)
                # Changes after the snapshot: the second gateway must catch up with them.
                for k in range(5):
                    etcd.revoke_logged(email_of(4 * (k + 7)), 4 * (k + 7), int(time.time() * 1000))
        finally:
            envoy.stop()
        if result["snapshot"] is None and n >= SNAPSHOT_MIN and not SKIP_SNAPSHOT:
            etcd_cpu = cpu_seconds(etcd.proc.pid)
            second = Envoy(f"{n}-second")
            try:
                sync_s = second.wait_synced(FIRST_SYNC_LIMIT_S)
                second_cpu = (cpu_seconds(second.proc.pid), cpu_seconds(etcd.proc.pid) - etcd_cpu)
                with open(second.log_path) as f:
                    from_snapshot = "first (from the snapshot) sync" in f.read()
                if not from_snapshot:
                    raise SystemExit("the second gateway did not start from the snapshot; see " + second.log_path)
                assert gate(email_of(4)) == 200 and gate(email_of(28)) == 403, "caught up with the changes after the snapshot"
                print(f"   second gateway: first sync from the snapshot after {sync_s:.2f} s "
                      f"(CPU: Envoy {second_cpu[0]:.1f} s, etcd {second_cpu[1]:.1f} s)", flush=True)
                result["snapshot"] = {"first_sync_s": sync_s, "cpu": second_cpu, "parts": current["parts"],
                                      "written_after_s": written_after_s}
            finally:
                second.stop()
        return result
    finally:
        etcd.stop()


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--revocations", type=int, default=50)
    parser.add_argument("--revocations-at", default="1000000")
    parser.add_argument("--direct-writes", type=int, default=5)
    parser.add_argument("--report", default=os.path.join(ROOT, "bench/SCALE.md"))
    parser.add_argument("--reads", choices=["grpc", "json"], default="grpc",
                        help="range reads over etcd's gRPC API (as demo.yaml ships) or its JSON gateway only (as on Kong)")
    parser.add_argument("--first-sync-runs", type=int, default=FIRST_SYNC_RUNS,
                        help="times the fleet's first sync (median reported); 1 for a quick look")
    parser.add_argument("--skip-snapshot", action="store_true",
                        help="no second gateway from the snapshot (a quick look: at 10M the snapshot takes 12 minutes)")
    args = parser.parse_args()
    global READS, FIRST_SYNC_RUNS_NOW, SKIP_SNAPSHOT
    SKIP_SNAPSHOT = args.skip_snapshot
    READS = args.reads
    FIRST_SYNC_RUNS_NOW = args.first_sync_runs
    os.makedirs(WORK, exist_ok=True)
    revocations_at = {int(s) for s in args.revocations_at.split(",") if s}
    baseline = measure(2, 0, 0)
    results = [measure(int(s), *((args.revocations, args.direct_writes) if int(s) in revocations_at else (0, 0)))
               for s in args.sizes.split(",")]
    envoy_version = subprocess.run([ENVOY, "--version"], capture_output=True, text=True).stdout.strip().split()[-1]
    rows = []
    for r in results:
        per_dev = (r["rss"] - baseline["rss"]) / r["n"]
        heap_per_dev = (r["heap"] - baseline["heap"]) / r["n"]
        delays = r["delays"]
        revocation = (f"{statistics.median(delays) * 1000:.0f} / {percentile(delays, 99) * 1000:.0f} ({len(delays)})"
                      if delays else "not measured")
        direct = (f"{statistics.median(r['direct']) * 1000:.0f} / {max(r['direct']) * 1000:.0f} ({len(r['direct'])})"
                  if r["direct"] else "not measured")
        answers = r["answers"]
        stalls = (f"{percentile(answers, 99) * 1000:.0f} / {max(answers) * 1000:.0f} ({len(answers)})"
                  if answers else "not measured")
        admin = (f"{statistics.median(r['admin']) * 1000:.0f} / {max(r['admin']) * 1000:.0f} ({len(r['admin'])})"
                 if r["admin"] else "not measured")
        by_kind = [[t for kind, t in r["lists"] if kind == k] for k in range(3)]
        lists = (" / ".join(f"{statistics.median(times) * 1000:.0f}" for times in by_kind)
                 + f"; max {max(t for _, t in r['lists']) * 1000:.0f} ({len(r['lists'])}); "
                 f"gate {percentile(r['list_answers'], 99) * 1000:.0f} / {max(r['list_answers']) * 1000:.0f} "
                 f"({len(r['list_answers'])}); RSS +{r['rss_growth_lists'] / 2**20:,.0f} MiB"
                 if r["lists"] else "not measured")
        snap = r["snapshot"]
        from_snapshot = (f"{snap['first_sync_s'] - baseline['first_sync_s']:.2f} ({snap['cpu'][0]:.1f} / {snap['cpu'][1]:.1f}; "
                         f"{snap['parts']} parts, written in {snap['written_after_s']:.0f} s)" if snap else "-")
        runs = " / ".join(f"{t - baseline['first_sync_s']:.2f}" for t in r["first_sync_runs"])
        rows.append(f"| {r['n']:,} | {r['load_s']:.1f} | {r['first_sync_s']:.2f} | "
                    f"{r['first_sync_s'] - baseline['first_sync_s']:.2f} ({runs}) | {r['cpu'][0]:.1f} / {r['cpu'][1]:.1f} | {from_snapshot} | {r['rss'] / 2**20:,.0f} | {per_dev:,.0f} | {heap_per_dev:,.0f} | {revocation} | {direct} | {stalls} | {admin} | {lists} |")
    report = "\n".join([
        "# devportal-gate at scale",
        "",
        f"- when: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"- machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        f"- Envoy {envoy_version}, `--concurrency 1`; etcd {subprocess.run([ETCD, '--version'], capture_output=True, text=True).stdout.split()[2]}, one member on loopback",
        f"- `.wasm`: {os.path.getsize(GATE_WASM):,} bytes; the syncer's range reads: "
        + ("etcd's gRPC API (`grpc_upstream`, as demo.yaml ships)" if READS == "grpc" else "etcd's JSON gateway only (as on Kong)"),
        f"- command: `make bench-scale` (`bench/scale.py {' '.join(sys.argv[1:])}`)",
        f"- baseline (2 developers): first sync {baseline['first_sync_s']:.2f} s after Envoy's start, RSS {baseline['rss'] / 2**20:.0f} MiB",
        "",
        "| developers in etcd | bulk load (s) | Envoy start to first sync (s) | first sync, net of Envoy's start (s): median (each run) | CPU in it: Envoy / etcd (s) | a second gateway's first sync from the snapshot, net (s) (CPU Envoy / etcd) | Envoy RSS (MiB) | RSS per developer (B) | of which Envoy's heap (B) | revocation delay p50 / p99 (ms) (count) | direct etcd write delay p50 / max (ms) (count) | the gate's answer while they arrive, p99 / max (ms) (requests) | an admin revocation on this gateway, p50 / max (ms) (count) | a page of a tab on this gateway, p50 of the first page / page 200 / a search, and max (ms) (count); the gate's answer meanwhile, p99 / max (ms) (requests); Envoy's RSS after them |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
        "Each developer is stored as the filter stores one (status, times, a name, a",
        "two-entry history: about 260 bytes of JSON); every approval (a quarter of them)",
        "has an end, in 2100, so the list of ends has a quarter of the directory. RSS per developer is (RSS at N",
        "minus RSS at 2) / N, after the first sync and two more sync cycles. \"Envoy's",
        "heap\" is the part in Envoy's own allocator (shared data: the records and the",
        "tabs); the rest is the wasm VMs' memory (the syncer's working set). The",
        "revocation delay runs from etcd's acknowledgement of a revocation written as",
        "another gateway's admin API writes it (record and change log entry in one",
        "transaction) to the first 403 from the gate, polled every 5 ms; the gateway",
        "that acts enforces at once, so this is what every other gateway sees. A",
        "direct etcd write is a revocation written by another tool, without a change",
        "log entry: the change feed does not see it, the reconciliation does.",
        "The gate's answer time is each of those polls' (a request that waits",
        "behind the syncer applying the changes on the gateway's one worker shows",
        f"it). Then {ADMIN_ACTIONS} developers are revoked through this gateway's admin API, one",
        "at a time: the request's time is its etcd calls and the gateway's own",
        "edit of its tabs, which it makes before it answers.",
        f"Then {ADMIN_LISTS} pages of the tabs are read through the admin API as the console",
        "reads them (50 developers with the four tabs' counts): the first page, page 200",
        "and a search (`q=dev0001`) of each tab in turn, while the gate is asked",
        "every 5 ms; Envoy's RSS after them minus before (a wasm VM's memory only grows).",
        f"The first gateway reads every developer (there is no snapshot yet), {FIRST_SYNC_RUNS} times over (a new",
        "Envoy each time, the snapshot deleted in between; the median is the figure); it then",
        "writes the snapshot, a part per sync cycle, while the revocations are",
        "measured. The second gateway starts once the snapshot and five revocations",
        "after it are in etcd, the first stopped.",
        "",
    ])
    with open(args.report, "w") as f:
        f.write(report)
    print(report)
    # For bench/RESULTS.md's comparison with issue 14's goals (bench/run.py).
    figures = {"when": time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()), "reads": READS, "sizes": {}}
    for r in results:
        figures["sizes"][str(r["n"])] = {
            "first_sync_s": r["first_sync_s"] - baseline["first_sync_s"],
            "first_sync_runs_s": [t - baseline["first_sync_s"] for t in r["first_sync_runs"]],
            "snapshot_first_sync_s": (r["snapshot"]["first_sync_s"] - baseline["first_sync_s"]) if r["snapshot"] else None,
            "rss_per_developer": (r["rss"] - baseline["rss"]) / r["n"],
            "rss_bytes": r["rss"],
            "revocation_p50_ms": statistics.median(r["delays"]) * 1000 if r["delays"] else None,
            "revocation_p99_ms": percentile(r["delays"], 99) * 1000 if r["delays"] else None,
            "revocations": len(r["delays"]),
            "answer_p99_ms": percentile(r["answers"], 99) * 1000 if r["answers"] else None,
            "answer_max_ms": max(r["answers"]) * 1000 if r["answers"] else None,
            "admin_revocation_p50_ms": statistics.median(r["admin"]) * 1000 if r["admin"] else None,
            "admin_revocation_max_ms": max(r["admin"]) * 1000 if r["admin"] else None,
            "admin_page_p50_ms": [statistics.median(t for kind, t in r["lists"] if kind == k) * 1000
                                  for k in range(3)] if r["lists"] else None,
            "admin_page_max_ms": max(t for _, t in r["lists"]) * 1000 if r["lists"] else None,
            "admin_page_gate_p99_ms": percentile(r["list_answers"], 99) * 1000 if r["lists"] else None,
            "rss_growth_after_pages": r["rss_growth_lists"] if r["lists"] else None,
        }
    with open(os.path.splitext(args.report)[0] + ".json", "w") as f:
        json.dump(figures, f, indent=1)


if __name__ == "__main__":
    main()
