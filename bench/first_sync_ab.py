#!/usr/bin/env python3
"""A/B of the fleet's first gateway's full sync (issue 14), for development:
one etcd loaded once with N developers as `bench/scale.py` loads them, then
Envoy started again and again, alternating the `.wasm` files given, each run
from Envoy's start to `/health` answering 200. The snapshot keys are deleted
before every run, so each one reads every developer. One line per run (and
the medians at the end); `make bench-scale` is the measurement of record.

Usage: bench/first_sync_ab.py [--developers 1000000] [--rounds 3] A.wasm [B.wasm ...]
"""
import argparse
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import scale  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--developers", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("wasm", nargs="+")
    args = parser.parse_args()
    os.makedirs(scale.WORK, exist_ok=True)
    etcd = scale.Etcd("ab")
    try:
        print(f"{args.developers:,} developers loaded in {etcd.load(args.developers):.1f} s", flush=True)
        times = {wasm: [] for wasm in args.wasm}
        # Envoy's idle time in the sync (wall minus its CPU): steadier than the
        # wall time on a noisy machine, and what a change in how pages are
        # scheduled moves (bench/SYNC-PROFILE.md).
        idle = {wasm: [] for wasm in args.wasm}
        for _ in range(args.rounds):
            for wasm in args.wasm:
                scale.GATE_WASM = wasm
                etcd.delete_snapshot()
                etcd_cpu = scale.cpu_seconds(etcd.proc.pid)
                envoy = scale.Envoy("ab")
                try:
                    synced = envoy.wait_synced(scale.FIRST_SYNC_LIMIT_S)
                    cpu = (scale.cpu_seconds(envoy.proc.pid), scale.cpu_seconds(etcd.proc.pid) - etcd_cpu)
                    assert scale.gate(scale.email_of(0)) == 200 and scale.gate(scale.email_of(1)) == 403
                finally:
                    envoy.stop()
                times[wasm].append(synced)
                idle[wasm].append(synced - cpu[0])
                print(f"{wasm}: first sync {synced:.2f} s after Envoy's start "
                      f"(CPU: Envoy {cpu[0]:.2f} s, etcd {cpu[1]:.2f} s; Envoy idle {synced - cpu[0]:.2f} s)", flush=True)
        for wasm, runs in times.items():
            print(f"median {statistics.median(runs):.2f} s, Envoy idle {statistics.median(idle[wasm]):.2f} s: {wasm}")
    finally:
        etcd.stop()


if __name__ == "__main__":
    main()
