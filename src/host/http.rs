//! The HTTP context: one per request. It asks `gate::decide` and carries out the
//! verdict: forward (with the developer headers set and client copies removed)
//! or answer locally.

use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, MapType};

use super::root::MetricIds;
use super::store::HostSharedData;
use crate::config::{Gate, DEVELOPER_EMAIL_HEADER, DEVELOPER_STATUS_HEADER};
use crate::directory::{self, Status};
use crate::gate::{self, RequestView};
use crate::responses::LocalResponse;

pub struct GateHttp {
    gate: Option<Rc<Gate>>,
    metrics: MetricIds,
}

impl GateHttp {
    pub fn new(gate: Option<Rc<Gate>>, metrics: MetricIds) -> GateHttp {
        GateHttp { gate, metrics }
    }
}

impl Context for GateHttp {}

impl HttpContext for GateHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(gate) = self.gate.clone() else {
            // Not configured (the host should not even create us): fail closed.
            return respond(&unconfigured());
        };
        // One host call for the whole map: the identity check needs every value
        // of its header anyway (the only portable way to see a header sent twice),
        // and the same copy answers every other question about the request.
        let request = HostRequest { headers: hostcalls::get_map(MapType::HttpRequestHeaders).unwrap_or_default() };
        let target = request.pseudo_header(":path");
        let method = request.pseudo_header(":method");
        let verdict = gate::decide(&gate, &target, &method, &request, |email| {
            directory::lookup(&HostSharedData, &gate.namespace, email)
        });
        if let Some(&id) = verdict.counter.index().and_then(|i| self.metrics.get(i)) {
            // A failed increment must not change the decision.
            let _ = hostcalls::increment_metric(id, 1);
        }
        match verdict.action {
            gate::Action::Forward { rewrite_target, developer } => {
                forward(&request, rewrite_target.as_deref(), developer.as_deref());
                Action::Continue
            }
            gate::Action::Respond(response) => respond(&response),
        }
    }
}

/// The request's headers, as the host reported them.
struct HostRequest {
    headers: Vec<(String, String)>,
}

impl HostRequest {
    /// Envoy lists pseudo-headers in the map; a host that does not is asked directly.
    fn pseudo_header(&self, name: &str) -> String {
        match self.header(name) {
            Some(value) => value,
            None => hostcalls::get_map_value(MapType::HttpRequestHeaders, name).ok().flatten().unwrap_or_default(),
        }
    }

    fn has(&self, name: &str) -> bool {
        self.headers.iter().any(|(header, _)| header.eq_ignore_ascii_case(name))
    }
}

impl RequestView for HostRequest {
    fn header_values(&self, name: &str) -> Vec<String> {
        // Names compare case-insensitively: hosts differ in how they report them.
        self.headers
            .iter()
            .filter(|(header, _)| header.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.clone())
            .collect()
    }

    fn header(&self, name: &str) -> Option<String> {
        self.headers.iter().find(|(header, _)| header.eq_ignore_ascii_case(name)).map(|(_, value)| value.clone())
    }
}

fn forward(request: &HostRequest, rewrite_target: Option<&str>, developer: Option<&str>) {
    // Client copies of the developer headers go first, however many were sent
    // (setting a header replaces only its first copy in Envoy).
    for name in [DEVELOPER_EMAIL_HEADER, DEVELOPER_STATUS_HEADER] {
        if request.has(name) {
            let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, name, None);
        }
    }
    if let Some(email) = developer {
        let _ = hostcalls::add_map_value(MapType::HttpRequestHeaders, DEVELOPER_EMAIL_HEADER, email);
        let _ = hostcalls::add_map_value(MapType::HttpRequestHeaders, DEVELOPER_STATUS_HEADER, Status::Approved.as_str());
    }
    if let Some(target) = rewrite_target {
        let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, ":path", Some(target));
    }
}

fn respond(response: &LocalResponse) -> Action {
    let headers: Vec<(&str, &str)> = response.headers.iter().map(|(name, value)| (*name, value.as_str())).collect();
    if let Err(status) = hostcalls::send_http_response(response.status, headers, Some(&response.body)) {
        log::error!("devportal-gate: cannot send the local response: {status:?}");
    }
    Action::Pause
}

fn unconfigured() -> LocalResponse {
    LocalResponse {
        status: 503,
        headers: vec![("content-type", "application/json".to_string())],
        body: br#"{"message":"devportal-gate is not configured","status":"unavailable"}"#.to_vec(),
    }
}
