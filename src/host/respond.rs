//! Sending local answers: the gate's (prepared at configuration) and the admin
//! API's (JSON, never cached).

use proxy_wasm::types::Action;

use super::abi;
use crate::admin::ApiResponse;
use crate::request::responses::LocalResponse;

pub fn send(response: &LocalResponse) {
    let headers: Vec<(&str, &str)> = response
        .headers
        .iter()
        .map(|(name, value)| (*name, value.as_str()))
        .collect();
    if let Err(status) = abi::send_local_response(response.status, &headers, &response.body) {
        log::error!("devportal-gate: cannot send the local response: {status}");
    }
}

/// Answers and stops the request.
pub fn respond(response: &LocalResponse) -> Action {
    send(response);
    Action::Pause
}

pub fn respond_api(response: &ApiResponse) -> Action {
    let mut headers = vec![("content-type", "application/json"), ("cache-control", "no-store")];
    if let Some(allow) = response.allow {
        headers.push(("allow", allow));
    }
    if response.status == 401 {
        headers.push(("www-authenticate", "Bearer"));
    }
    if let Err(status) = abi::send_local_response(response.status, &headers, response.body.as_bytes()) {
        log::error!("devportal-gate: cannot send the admin response: {status}");
    }
    Action::Pause
}

/// 503 for a request that reaches a context without a configuration: fail closed.
pub fn unconfigured() -> LocalResponse {
    LocalResponse {
        status: 503,
        headers: vec![("content-type", "application/json".to_string())],
        body: br#"{"message":"devportal-gate is not configured","status":"unavailable"}"#.to_vec(),
    }
}
