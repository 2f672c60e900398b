//! devportal-gate: lets only Approved developers reach APIs, portal pages and
//! credential endpoints, on any proxy-wasm host (Envoy, Istio, Kong Gateway).
//!
//! Layout: everything but `host` is plain Rust that knows nothing of proxy-wasm
//! and is tested with `cargo test` on the build machine:
//! - `config`: parse and validate the filter configuration into a `Gate`;
//! - `path`, `routes`: normalize the request path and classify the request;
//! - `identity`, `email`: who is asking;
//! - `directory`: developer records in shared data, lookups and seeding;
//! - `gate`: the per-request decision; `responses`: the refusal answers;
//! - `metrics`: the decision counters.
//!
//! `host` (wasm32 only) is the thin glue to the proxy-wasm ABI.

pub mod admin;
pub mod base64;
pub mod clock;
pub mod config;
pub mod developer;
pub mod directory;
pub mod email;
pub mod etcd;
#[cfg(test)]
pub mod fake_etcd;
pub mod framing;
pub mod gate;
pub mod header_map;
pub mod identity;
pub mod mailto;
pub mod metrics;
pub mod path;
pub mod registration;
pub mod replica;
pub mod responses;
pub mod routes;
pub mod sync;

#[cfg(target_arch = "wasm32")]
mod host;
