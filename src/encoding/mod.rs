//! Encodings the parts share: base64 (etcd) and base64url (JWT), RFC 3339 times,
//! and the proxy-wasm ABI's header-map encoding.

pub mod base64;
pub mod clock;
pub mod header_map;
pub mod json_path;

/// A unique id for one write (an operation, a snapshot): the time and 64
/// random bits (WASI's random source seeds std's `RandomState`, which both
/// hosts provide).
pub fn unique_id(now_ms: u64) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(now_ms);
    format!("{now_ms:x}-{:016x}", hasher.finish())
}
