//! Calls to etcd's JSON gateway with `dispatch_http_call`, and reading the answer.
//! The upstream is a configuration value: an Envoy cluster, or Kong's host:port;
//! with several members, a call that fails on the way moves this worker to the
//! next one (`etcd::members`). In Envoy, the syncer's range reads may go over
//! etcd's gRPC API instead (`dispatch_grpc_range`, `etcd::grpc`).

use std::time::Duration;

use proxy_wasm::hostcalls;

use super::abi::{self, Buffer, Map};
use crate::etcd::members::MemberIndex;
use crate::etcd::EtcdConfig;
use crate::etcd::{self, grpc, EtcdError, EtcdRequest};

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

/// Sends a range read (`EtcdRequest::grpc_range`) over etcd's gRPC API to
/// `service` (`grpc::envoy_grpc_service`); the answer arrives at the calling
/// context's `on_grpc_call_response`. The SDK's wrapper registers the call so
/// that the answer reaches this context; it panics on a status other than the
/// three Envoy returns (Ok, ParseFailure for an unknown cluster,
/// InternalFailure), and only configuration reaches it, never a client.
pub fn dispatch_grpc_range(service: &str, message: &[u8], timeout_ms: u64) -> Result<u32, EtcdError> {
    hostcalls::dispatch_grpc_call(
        service,
        grpc::SERVICE,
        grpc::METHOD,
        vec![],
        Some(message),
        Duration::from_millis(timeout_ms),
    )
    .map_err(|status| EtcdError::NotSent(format!("dispatch_grpc_call failed: {status:?}")))
}

/// The answer of a gRPC range read, as `parse_range` takes it (status
/// `etcd::GRPC_ANSWER`, the `RangeResponse`). etcd's "revision compacted" keeps
/// its code, so the syncer starts over as it does over the gateway; any other
/// failure is one of the way (Envoy reports a refused connection, a timeout or
/// an HTTP/1.1 cluster as gRPC statuses too).
pub fn read_grpc_answer(status_code: u32, size: usize) -> Result<(u32, Vec<u8>), EtcdError> {
    match status_code {
        grpc::STATUS_OK => abi::buffer(Buffer::GrpcReceived, 0, size)
            .map(|body| (etcd::GRPC_ANSWER, body))
            .map_err(|status| EtcdError::Unreachable(format!("cannot read the gRPC answer: {status}"))),
        grpc::STATUS_OUT_OF_RANGE => Err(EtcdError::Server {
            code: etcd::CODE_COMPACTED,
            message: "gRPC status 11 (OUT_OF_RANGE): the revision was compacted".into(),
        }),
        other => Err(EtcdError::Unreachable(format!("gRPC status {other}"))),
    }
}

pub fn now_ms() -> u64 {
    abi::now_ms()
}
