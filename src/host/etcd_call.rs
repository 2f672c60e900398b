//! Calls to etcd's JSON gateway with `dispatch_http_call`, and reading the answer.
//! The upstream is a configuration value: an Envoy cluster, or Kong's host:port.

use std::time::Duration;

use proxy_wasm::hostcalls;

use super::abi::{self, Buffer, Map};
use crate::etcd::EtcdConfig;
use crate::etcd::{self, EtcdError, EtcdRequest};

/// Sends `request`; the answer arrives at the calling context's
/// `on_http_call_response` with the returned token. (The SDK's wrapper is used
/// here on purpose: see `abi`'s module comment.)
pub fn dispatch(etcd: &EtcdConfig, request: &EtcdRequest) -> Result<u32, EtcdError> {
    let headers = vec![
        (":method", "POST"),
        (":path", request.path),
        (":authority", etcd.authority.as_str()),
        ("content-type", "application/json"),
    ];
    hostcalls::dispatch_http_call(
        &etcd.upstream,
        headers,
        Some(request.body.as_bytes()),
        vec![],
        Duration::from_millis(etcd.timeout_ms),
    )
    .map_err(|status| EtcdError::NotSent(format!("dispatch_http_call to {:?} failed: {status:?}", etcd.upstream)))
}

/// The HTTP status and body of the call that just answered. A call that failed
/// (refused, reset, timed out) arrives without a `:status`.
pub fn read_answer(body_size: usize) -> Result<(u32, Vec<u8>), EtcdError> {
    let status = abi::header_value(Map::CallResponseHeaders, ":status")
        .ok()
        .flatten()
        .and_then(|status| std::str::from_utf8(&status).ok()?.parse::<u32>().ok())
        .ok_or_else(|| EtcdError::Unreachable("no answer (connection failed or timed out)".to_string()))?;
    let body = abi::buffer(Buffer::CallResponseBody, 0, body_size)
        .map_err(|status| EtcdError::Unreachable(format!("cannot read the answer: {status}")))?;
    // The proxy's own answer (a refused connection, a timeout) is not etcd's.
    match etcd::proxy_failure(status, &body) {
        Some(failure) => Err(failure),
        None => Ok((status, body)),
    }
}

pub fn now_ms() -> u64 {
    abi::now_ms()
}
