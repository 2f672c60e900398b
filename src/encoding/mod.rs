//! Encodings the parts share: base64 (etcd) and base64url (JWT), RFC 3339 times,
//! and the proxy-wasm ABI's header-map encoding.

pub mod base64;
pub mod clock;
pub mod header_map;
