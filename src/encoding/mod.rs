//! Encodings the parts share: base64 (etcd) and base64url (JWT), RFC 3339 times,
//! the proxy-wasm ABI's header-map encoding, and JSON objects built by insertion.

pub mod base64;
pub mod clock;
pub mod header_map;
pub mod json_path;
pub mod json_reader;

/// A JSON object from (name, value) pairs, inserted one by one; a repeated
/// name keeps its last value. `collect()` into the map would do the same, but
/// it sorts the pairs first, and every type of pair it sorts costs the .wasm a
/// stable sort of its own (about 9 KB).
pub fn json_object(
    pairs: impl IntoIterator<Item = (String, serde_json::Value)>,
) -> serde_json::Map<String, serde_json::Value> {
    let mut object = serde_json::Map::new();
    for (name, value) in pairs {
        object.insert(name, value);
    }
    object
}

/// A unique id for one write (an operation, a snapshot): the time and 64
/// random bits (WASI's random source seeds std's `RandomState`, which both
/// hosts provide).
pub fn unique_id(now_ms: u64) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(now_ms);
    format!("{now_ms:x}-{:016x}", hasher.finish())
}
