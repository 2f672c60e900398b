#!/usr/bin/env bash
# A three-member etcd cluster on loopback, for trying the directory's failover
# (filter-config/envoy/etcd-three-node.yaml points Envoy at it). Data goes to
# ./.run/etcd-{1,2,3}. Stop with Ctrl-C. In production, run the members on
# separate machines and list their client URLs in the Envoy cluster (or, in Kong,
# put a load balancer's host:port in directory.etcd.upstream).
set -euo pipefail
cluster="m1=http://127.0.0.1:12380,m2=http://127.0.0.1:22380,m3=http://127.0.0.1:32380"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null' EXIT INT TERM
for i in 1 2 3; do
  mkdir -p ".run/etcd-$i"
  etcd --name "m$i" --data-dir ".run/etcd-$i" \
    --listen-client-urls "http://127.0.0.1:${i}2379" --advertise-client-urls "http://127.0.0.1:${i}2379" \
    --listen-peer-urls "http://127.0.0.1:${i}2380" --initial-advertise-peer-urls "http://127.0.0.1:${i}2380" \
    --initial-cluster "$cluster" --initial-cluster-state new --initial-cluster-token devportal-demo \
    > ".run/etcd-$i.log" 2>&1 &
  pids+=($!)
done
echo "etcd members on 127.0.0.1:12379, :22379, :32379 (logs in .run/etcd-*.log)"
wait
