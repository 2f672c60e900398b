//! devportal-gate: lets only Approved developers reach APIs, portal pages and
//! credential endpoints, on any proxy-wasm host (Envoy, Istio, Kong Gateway).
//!
//! Everything but `host` is plain Rust that knows nothing of proxy-wasm and is
//! tested with `cargo test` on the build machine. The parts, in the order a
//! request meets them:
//! - `config`: the filter configuration, parsed (per version) and compiled into
//!   the immutable values below; a bad one names its field and refuses to start.
//! - `request`: one request's way through the gate: normalize the path,
//!   classify it, identify the developer, decide, answer, count.
//! - `directory`: who the developers are: their status, every shared-data key,
//!   the one-read record the gate looks up, the replica of the etcd directory,
//!   the stored JSON record and the workflow's actions, registration bounds.
//! - `etcd`: requests to etcd's v3 JSON gateway and its answers (and, for unit
//!   tests, an in-memory etcd).
//! - `sync`: keeping a gateway's replica in step with etcd; the syncer election.
//! - `events`: status-change events: the change log written with every
//!   change, CloudEvents bodies, Standard Webhooks signatures, and the
//!   fleet's one deliverer.
//! - `admin`: the admin API: authentication, routes, reads, the step machine of
//!   writes (shared with self-service registration), mailto links.
//! - `encoding`: base64, RFC 3339 times, the ABI's header-map encoding, and
//!   the JSON reader of the configuration and the admin API's bodies.
//! - `host` (wasm32 only): the thin glue to the proxy-wasm ABI, over our own
//!   no-panic layer (`host::abi`). What it relies on in Envoy and Kong is in
//!   docs/hosts.md.

pub mod admin;
pub mod config;
pub mod directory;
pub mod encoding;
pub mod etcd;
pub mod events;
pub mod request;
pub mod sync;

#[cfg(target_arch = "wasm32")]
mod host;
