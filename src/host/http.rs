//! The HTTP context: one per request. Requests under the admin prefix go to the
//! admin API (`admin_http.rs`); every other one asks `gate::decide` and carries
//! out the verdict: forward (with the developer headers set and client copies
//! removed), answer locally, or register a self-service developer in etcd first
//! (`self_service.rs`).

use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, MapType};

use super::admin_http::{admin_context, respond_api};
use super::etcd_call;
use super::root::Shared;
use super::self_service::registered;
use super::store::HostSharedData;
use crate::admin::{self, ApiResponse, Route, Task};
use crate::config::{DEVELOPER_EMAIL_HEADER, DEVELOPER_STATUS_HEADER};
use crate::developer::Developer;
use crate::directory::{self, Lookup, Status};
use crate::gate::{self, RequestView};
use crate::path;
use crate::replica;
use crate::responses::LocalResponse;

pub struct GateHttp {
    pub(super) shared: Option<Rc<Shared>>,
    pub(super) waiting: Waiting,
}

/// What a paused request waits for.
pub(super) enum Waiting {
    Nothing,
    /// An admin request's body.
    AdminBody {
        route: Route,
        query: Option<String>,
        actor: String,
    },
    /// An admin request's etcd call.
    AdminCall {
        token: u32,
        task: Box<Task>,
    },
    /// A self-service registration's etcd call; then answer `then`. `target`
    /// is the request's, for asking again if someone else registered them first.
    Registration {
        token: u32,
        developer: Developer,
        then: LocalResponse,
        target: String,
    },
}

impl GateHttp {
    pub fn new(shared: Option<Rc<Shared>>) -> GateHttp {
        GateHttp {
            shared,
            waiting: Waiting::Nothing,
        }
    }
}

impl Context for GateHttp {
    fn on_http_call_response(&mut self, token_id: u32, _num_headers: usize, body_size: usize, _num_trailers: usize) {
        let Some(shared) = self.shared.clone() else { return };
        match std::mem::replace(&mut self.waiting, Waiting::Nothing) {
            Waiting::AdminCall { token, task } if token == token_id => {
                let answer = etcd_call::read_answer(body_size);
                let Some(ctx) = admin_context(&shared) else { return };
                let step = admin::resume(&ctx, *task, answer);
                self.run_admin_step(&shared, step);
            }
            Waiting::Registration {
                token,
                developer,
                then,
                target,
            } if token == token_id => {
                let answer = etcd_call::read_answer(body_size);
                let response = registered(&shared, &developer, then, &target, answer);
                send(&response);
            }
            other => self.waiting = other,
        }
    }
}

impl HttpContext for GateHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let Some(shared) = self.shared.clone() else {
            // Not configured (the host should not even create us): fail closed.
            return respond(&unconfigured());
        };
        // One host call for the whole map: the identity check needs every value
        // of its header anyway (the only portable way to see a header sent twice),
        // and the same copy answers every other question about the request.
        let request = HostRequest {
            headers: hostcalls::get_map(MapType::HttpRequestHeaders).unwrap_or_default(),
        };
        let target = request.pseudo_header(":path");
        let method = request.pseudo_header(":method");
        if let Some(admin) = shared.admin.as_ref() {
            if let Ok(normalized) = path::normalize(&target) {
                let under = normalized.path.strip_prefix(admin.prefix.as_str());
                if under.is_some_and(|rest| rest.is_empty() || rest.starts_with('/')) {
                    let query = normalized.query.strip_prefix('?').filter(|q| !q.is_empty());
                    return self.admin_request(&shared, &request, &method, &normalized.path, query, end_of_stream);
                }
            }
        }
        let gate = &shared.gate;
        let verdict = gate::decide(gate, &target, &method, &request, |email| {
            if !shared.synced.get() {
                // Fail closed until the replica holds a complete first sync.
                if replica::read_sync_state(&HostSharedData, &gate.namespace).is_none() {
                    return Lookup::Unavailable;
                }
                shared.synced.set(true);
            }
            directory::lookup(&HostSharedData, &gate.namespace, email)
        });
        if let Some(&id) = verdict.counter.index().and_then(|i| shared.counters.get(i)) {
            // A failed increment must not change the decision.
            let _ = hostcalls::increment_metric(id, 1);
        }
        match verdict.action {
            gate::Action::Forward {
                rewrite_target,
                developer,
            } => {
                forward(&request, rewrite_target.as_deref(), developer.as_deref());
                Action::Continue
            }
            gate::Action::Respond(response) => respond(&response),
            gate::Action::Register { email, then } => self.register(&shared, &email, then, &target),
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Waiting::AdminBody { .. } = self.waiting else {
            return Action::Continue;
        };
        if body_size > admin::MAX_BODY_BYTES {
            self.waiting = Waiting::Nothing;
            return respond_api(&ApiResponse {
                status: 413,
                body: format!(
                    r#"{{"error":"body_too_large","message":"bodies are limited to {} bytes"}}"#,
                    admin::MAX_BODY_BYTES
                ),
                allow: None,
            });
        }
        if !end_of_stream {
            return Action::Pause; // Envoy buffers until the whole body is in.
        }
        let Some(shared) = self.shared.clone() else {
            return Action::Pause;
        };
        let Waiting::AdminBody { route, query, actor } = std::mem::replace(&mut self.waiting, Waiting::Nothing) else {
            return Action::Pause;
        };
        let body = hostcalls::get_buffer(BufferType::HttpRequestBody, 0, body_size)
            .ok()
            .flatten()
            .unwrap_or_default();
        self.start_admin(&shared, route, query.as_deref(), &body, &actor)
    }
}

/// The request's headers, as the host reported them.
pub(super) struct HostRequest {
    headers: Vec<(String, String)>,
}

impl HostRequest {
    /// Envoy lists pseudo-headers in the map; a host that does not is asked directly.
    fn pseudo_header(&self, name: &str) -> String {
        match self.header(name) {
            Some(value) => value,
            None => hostcalls::get_map_value(MapType::HttpRequestHeaders, name)
                .ok()
                .flatten()
                .unwrap_or_default(),
        }
    }

    pub(super) fn has(&self, name: &str) -> bool {
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
        self.headers
            .iter()
            .find(|(header, _)| header.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.clone())
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
        let _ = hostcalls::add_map_value(
            MapType::HttpRequestHeaders,
            DEVELOPER_STATUS_HEADER,
            Status::Approved.as_str(),
        );
    }
    if let Some(target) = rewrite_target {
        let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, ":path", Some(target));
    }
}

pub(super) fn send(response: &LocalResponse) {
    let headers: Vec<(&str, &str)> = response
        .headers
        .iter()
        .map(|(name, value)| (*name, value.as_str()))
        .collect();
    if let Err(status) = hostcalls::send_http_response(response.status, headers, Some(&response.body)) {
        log::error!("devportal-gate: cannot send the local response: {status:?}");
    }
}

pub(super) fn respond(response: &LocalResponse) -> Action {
    send(response);
    Action::Pause
}

pub(super) fn unconfigured() -> LocalResponse {
    LocalResponse {
        status: 503,
        headers: vec![("content-type", "application/json".to_string())],
        body: br#"{"message":"devportal-gate is not configured","status":"unavailable"}"#.to_vec(),
    }
}
