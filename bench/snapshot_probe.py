"""Issue 14 probe: what would a first sync from a compact snapshot cost etcd?

Bulk-loads N developers (as bench/scale.py does), then times the reads a
snapshot-based first sync would make, against the reads the full sync makes
today. Prints; bench/SNAPSHOT-PROBE.md keeps a run. Usage:
    ETCD_BIN=/usr/bin/etcd python3 bench/snapshot_probe.py 1000000
"""
import json
import os
import sys
import time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import scale

def cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

def timed(etcd, what, body, path="/v3/kv/range"):
    c0, t0 = cpu(etcd.proc.pid), time.time()
    if etcd.conn is None:
        etcd.post("/v3/kv/range", {"key": scale.b64("x")})
    etcd.conn.request("POST", path, json.dumps(body), {"content-type": "application/json"})
    answer = etcd.conn.getresponse(); data = answer.read()
    t1, c1 = time.time(), cpu(etcd.proc.pid)
    parsed = json.loads(data)
    print(f"{what}: {t1-t0:.2f} s wall, etcd CPU {c1-c0:.2f} s, {len(data)/1e6:.1f} MB, kvs {len(parsed.get('kvs', []))}, count {parsed.get('count')}", flush=True)
    return parsed

n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
etcd = scale.Etcd("probe")
try:
    print(f"loaded {n} in {etcd.load(n):.1f} s", flush=True)
    prefix = scale.PREFIX + "dev/"
    key, end = scale.b64(prefix), scale.b64(prefix[:-1] + chr(ord(prefix[-1]) + 1))
    rev = int(timed(etcd, "count only", {"key": key, "range_end": end, "count_only": True})["header"]["revision"])
    timed(etcd, "keys only, all", {"key": key, "range_end": end, "keys_only": True})
    timed(etcd, "changed since now (min_mod_revision), values", {"key": key, "range_end": end, "min_mod_revision": rev + 1})
    timed(etcd, "changed since now, keys only", {"key": key, "range_end": end, "min_mod_revision": rev + 1, "keys_only": True})
    timed(etcd, "all values, one request", {"key": key, "range_end": end})
    # A snapshot: 1M lines of ~40 bytes in parts of 25k lines (~1 MB).
    lines = [f"{scale.email_of(i)};a{i + 10};{1_700_000_000_000 + i}" for i in range(n)]
    for part in range(0, n, 25_000):
        text = "\n".join(lines[part:part + 25_000])
        etcd.post("/v3/kv/put", {"key": scale.b64(f"{scale.PREFIX}snapshot/1/{part // 25_000:04d}"), "value": scale.b64(text)})
    skey, send = scale.b64(scale.PREFIX + "snapshot/1/"), scale.b64(scale.PREFIX + "snapshot/10")
    timed(etcd, "snapshot, all parts in one request", {"key": skey, "range_end": send})
    t0 = time.time(); c0 = cpu(etcd.proc.pid)
    for part in range(0, n, 25_000):
        etcd.post("/v3/kv/range", {"key": scale.b64(f"{scale.PREFIX}snapshot/1/{part // 25_000:04d}")})
    print(f"snapshot, one request per part: {time.time()-t0:.2f} s wall, etcd CPU {cpu(etcd.proc.pid)-c0:.2f} s", flush=True)
finally:
    etcd.stop()
