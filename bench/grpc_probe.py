"""Issue 14 probe: what the full sync's reads cost etcd over its gRPC API
against its JSON gateway (what `directory.etcd.grpc_upstream` changes).

Bulk-loads N developers as bench/scale.py does, then reads them all in pages
of 25,000 (as the full sync does), once through the JSON gateway and once
over gRPC (`etcdserverpb.KV/Range`, the message written by hand as the
filter writes it). Prints; bench/GRPC-PROBE.md keeps a run. Needs grpcio:
    python3 -m venv bench/target/grpc-venv
    bench/target/grpc-venv/bin/pip install grpcio
    ETCD_BIN=/usr/bin/etcd bench/target/grpc-venv/bin/python bench/grpc_probe.py 1000000
"""
import base64
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import grpc  # noqa: E402
import scale  # noqa: E402

PAGE = 25_000


def cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def length_delimited(field, data):
    out, n = bytearray([(field << 3) | 2]), len(data)
    while True:
        out.append((n & 0x7f) | (0x80 if n > 0x7f else 0))
        n >>= 7
        if not n:
            return bytes(out) + data


def measure(etcd, what, pages, read_page):
    c0, t0, size = cpu(etcd.proc.pid), time.time(), 0
    for start, end in pages:
        size += read_page(start, end)
    print(f"| {what} | {time.time() - t0:.2f} s | {cpu(etcd.proc.pid) - c0:.2f} s | {size / 1e6:.0f} MB |", flush=True)


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    etcd = scale.Etcd("grpc-probe")
    try:
        print(f"loaded {n:,} developers in {etcd.load(n):.1f} s", flush=True)
        keys = [(scale.PREFIX + "dev/" + scale.email_of(i)).encode() for i in range(n)]
        end_of_all = (scale.PREFIX + "dev0").encode()  # prefix_end of ".../dev/"
        pages = [(keys[i], keys[i + PAGE] if i + PAGE < n else end_of_all) for i in range(0, n, PAGE)]
        etcd.post("/v3/kv/range", {"key": scale.b64("warm-up")})

        def json_page(start, end):
            body = {"key": base64.b64encode(start).decode(), "range_end": base64.b64encode(end).decode()}
            etcd.conn.request("POST", "/v3/kv/range", json.dumps(body), {"content-type": "application/json"})
            return len(etcd.conn.getresponse().read())

        channel = grpc.insecure_channel(f"127.0.0.1:{scale.ETCD_CLIENT}", options=[("grpc.max_receive_message_length", -1)])
        range_call = channel.unary_unary("/etcdserverpb.KV/Range", request_serializer=None, response_deserializer=None)
        range_call(length_delimited(1, b"warm-up"))

        def grpc_page(start, end):
            return len(range_call(length_delimited(1, start) + length_delimited(2, end)))

        print(f"\n| every developer, {len(pages)} pages of {PAGE:,} | wall | etcd CPU | answers |\n|---|---:|---:|---:|")
        measure(etcd, "JSON gateway (`/v3/kv/range`)", pages, json_page)
        measure(etcd, "gRPC (`etcdserverpb.KV/Range`)", pages, grpc_page)
    finally:
        etcd.stop()


if __name__ == "__main__":
    main()
