//! Calls to etcd's JSON gateway with `dispatch_http_call`, and reading the answer.
//! The upstream is a configuration value: an Envoy cluster, or Kong's host:port;
//! with several members, a call that fails on the way moves this worker to the
//! next one (`etcd::members`).

use std::time::Duration;

use proxy_wasm::hostcalls;

use super::abi::{self, Buffer, Map};
use crate::etcd::members::MemberIndex;
use crate::etcd::EtcdConfig;
use crate::etcd::{self, EtcdError, EtcdRequest};

/// Sends `request` to this worker's current member; the answer arrives at the
/// calling context's `on_http_call_response` with the returned token, and is
/// read with `read_answer` and the returned member. (The SDK's wrapper is used
/// here on purpose: see `abi`'s module comment.)
pub fn dispatch(etcd: &EtcdConfig, request: &EtcdRequest) -> Result<(u32, MemberIndex), EtcdError> {
    let (member, upstream) = etcd.members.pick();
    let headers = vec![
        (":method", "POST"),
        (":path", request.path),
        (":authority", etcd.authority.as_str()),
        ("content-type", "application/json"),
    ];
    hostcalls::dispatch_http_call(
        upstream,
        headers,
        Some(request.body.as_bytes()),
        vec![],
        Duration::from_millis(etcd.timeout_ms),
    )
    .map(|token| (token, member))
    .map_err(|status| {
        etcd.members.failed(member);
        EtcdError::NotSent(format!("dispatch_http_call to {upstream:?} failed: {status:?}"))
    })
}

/// The HTTP status and body of the call to `member` that just answered. A
/// call that failed (refused, reset, timed out) arrives without a `:status`
/// (or with the proxy's own 503/504); the next call then goes to another
/// member.
pub fn read_answer(etcd: &EtcdConfig, member: MemberIndex, body_size: usize) -> Result<(u32, Vec<u8>), EtcdError> {
    let answer = read_call_response(body_size);
    if let Err(EtcdError::NotSent(_) | EtcdError::Unreachable(_)) = &answer {
        etcd.members.failed(member);
    }
    answer
}

/// The `:status` of the call that just answered; none: it failed on the way.
pub fn call_status() -> Result<u32, EtcdError> {
    abi::header_value(Map::CallResponseHeaders, ":status")
        .ok()
        .flatten()
        .and_then(|status| std::str::from_utf8(&status).ok()?.parse::<u32>().ok())
        .ok_or_else(|| EtcdError::Unreachable("no answer (connection failed or timed out)".to_string()))
}

fn read_call_response(body_size: usize) -> Result<(u32, Vec<u8>), EtcdError> {
    let status = call_status()?;
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
