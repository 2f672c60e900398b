#!/usr/bin/env python3
"""A/B of the allow path's CPU per request, for development (issue 14): the
do-nothing filter and each `.wasm` given run side by side, one Envoy each (all
pinned to core 0, wrk to core 1), and are loaded in turn for short windows,
round after round. Every Envoy is up for the whole run, so a noisy spell of
the machine hits all of them alike; the figure of interest is the median of
each build's per-round difference from the first build given.

`bench/run.py` is the measurement of record (one fresh Envoy per scenario and
round); this one only says whether a change moved the allow path.

Usage: bench/allow_ab.py [--rounds 20] [--window 3] A.wasm [B.wasm ...]
"""
import argparse
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402

USER = "alice@example.com"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--window", type=int, default=3, help="seconds of load per build per round")
    parser.add_argument("wasm", nargs="+")
    args = parser.parse_args()
    builds = [("do-nothing", [run.wasm_filter("noop", run.NOOP_WASM, "")], None)]
    builds += [(wasm, [run.wasm_filter("devportal_gate", wasm, json.dumps(run.gate_config(2)))], USER)
               for wasm in args.wasm]
    envoys = []
    try:
        for i, (name, filters, _) in enumerate(builds):
            run.LISTENER, run.ADMIN = 18100 + 2 * i, 18101 + 2 * i
            proc, _ = run.start_envoy(f"ab-{i}", run.envoy_config(filters))
            envoys.append((run.LISTENER, proc))
        for listener, _ in envoys:
            run.LISTENER = listener
            run.wrk(1, USER)  # warm-up: V8 tiers the hot code up
        cpu_us = {name: [] for name, _, _ in builds}
        for round_no in range(args.rounds):
            # A different first build each round: no build always follows the same one.
            order = list(range(len(builds)))
            order = order[round_no % len(order):] + order[:round_no % len(order)]
            for i in order:
                name, _, user = builds[i]
                listener, proc = envoys[i]
                run.LISTENER = listener
                before = run.proc_cpu_seconds(proc.pid)
                requests, non2xx, _ = run.wrk(args.window, user)
                if non2xx:
                    raise SystemExit(f"{name}: {non2xx} of {requests} answers were not 2xx")
                cpu_us[name].append((run.proc_cpu_seconds(proc.pid) - before) / requests * 1e6)
            print(f"round {round_no + 1}: " + ", ".join(f"{cpu_us[name][-1]:.1f}" for name, _, _ in builds), flush=True)
    finally:
        for _, proc in envoys:
            proc.kill()
            proc.wait()
    first = args.wasm[0]
    print("\nbuild: CPU per request (us), median of rounds [quartiles]; vs the do-nothing filter; median per-round difference from the first build")
    for name, _, _ in builds:
        xs = cpu_us[name]
        q = statistics.quantiles(xs, n=4)
        ratio = statistics.median(x / d for x, d in zip(xs, cpu_us["do-nothing"]))
        diff = statistics.median(x - f for x, f in zip(xs, cpu_us[first])) if name != "do-nothing" else float("nan")
        print(f"{name}: {statistics.median(xs):.2f} [{q[0]:.2f}, {q[2]:.2f}]; {ratio:.2f}x; {diff:+.2f}")


if __name__ == "__main__":
    main()
