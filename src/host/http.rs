//! The HTTP context: one per request. Requests under the admin prefix go to the
//! admin API (`admin_http.rs`); every other one asks `gate::decide` and carries
//! out the verdict: forward (with the developer headers set and client copies
//! removed), answer locally, or register a self-service developer in etcd first
//! (`self_service.rs`).

use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;

use super::abi::{self, Buffer, Map};
use super::admin_http::{admin_context, registration_context, respond_api};
use super::etcd_call;
use super::root::Shared;
use super::store::HostSharedData;
use crate::admin::{self, ApiResponse, Route, Task};
use crate::directory::replica;
use crate::directory::{self, Lookup, Status};
use crate::request::gate::{self, RequestView, DEVELOPER_EMAIL_HEADER, DEVELOPER_STATUS_HEADER};
use crate::request::path;
use crate::request::responses::{bad_path, LocalResponse};

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
        task: Box<Task>,
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
                task,
                then,
                target,
            } if token == token_id => {
                let answer = etcd_call::read_answer(body_size);
                let step = admin::resume(&registration_context(&shared), *task, answer);
                self.run_registration(&shared, step, then, target);
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
            headers: abi::header_pairs(Map::RequestHeaders).unwrap_or_default(),
        };
        // Header values are bytes: a target or method that is not UTF-8 is not a
        // request this gate can classify.
        let (Some(target), Some(method)) = (request.pseudo_header(":path"), request.pseudo_header(":method")) else {
            return respond(&bad_path(path::PathError::InvalidCharacter));
        };
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
            let _ = abi::increment_metric(id, 1);
        }
        match verdict.action {
            gate::Action::Forward {
                rewrite_target,
                developer,
            } => {
                forward(rewrite_target.as_deref(), developer.as_deref());
                Action::Continue
            }
            gate::Action::Respond(response) => respond(&response),
            gate::Action::Register { email, then } => self.register(&shared, &email, then, &target),
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Waiting::AdminBody { route, .. } = &self.waiting else {
            return Action::Continue;
        };
        let too_large = if route.reads_body() {
            (body_size > admin::MAX_BODY_BYTES).then(|| ApiResponse {
                status: 413,
                body: format!(
                    r#"{{"error":"body_too_large","message":"bodies are limited to {} bytes"}}"#,
                    admin::MAX_BODY_BYTES
                ),
                allow: None,
            })
        } else {
            (body_size > 0).then(|| ApiResponse {
                status: 400,
                body: r#"{"error":"unexpected_body","message":"this request takes no body"}"#.into(),
                allow: None,
            })
        };
        if let Some(refusal) = too_large {
            self.waiting = Waiting::Nothing;
            return respond_api(&refusal);
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
        let body = abi::buffer(Buffer::RequestBody, 0, body_size).unwrap_or_default();
        self.start_admin(&shared, route, query.as_deref(), &body, &actor)
    }
}

/// The request's headers, as the host reported them: names and values as bytes.
pub(super) struct HostRequest {
    headers: Vec<crate::encoding::header_map::Pair>,
}

impl HostRequest {
    /// Envoy lists pseudo-headers in the map; a host that does not is asked
    /// directly. `None` when the value is not UTF-8.
    fn pseudo_header(&self, name: &str) -> Option<String> {
        match self.values(name).next() {
            Some(value) => utf8(value),
            None => match abi::header_value(Map::RequestHeaders, name) {
                Ok(Some(value)) => String::from_utf8(value).ok(),
                _ => Some(String::new()),
            },
        }
    }

    pub(super) fn has(&self, name: &str) -> bool {
        self.values(name).next().is_some()
    }

    /// Every value of `name`; names compare case-insensitively (hosts differ in
    /// how they report them), as bytes, so a name that is not UTF-8 never matches.
    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers
            .iter()
            .filter(move |(header, _)| header.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, value)| value.as_slice())
    }
}

fn utf8(value: &[u8]) -> Option<String> {
    std::str::from_utf8(value).ok().map(str::to_string)
}

impl RequestView for HostRequest {
    fn header_values(&self, name: &str) -> Vec<Option<String>> {
        self.values(name).map(utf8).collect()
    }

    fn header(&self, name: &str) -> Option<String> {
        self.values(name).next().and_then(utf8)
    }
}

fn forward(rewrite_target: Option<&str>, developer: Option<&str>) {
    // The request carries no client copy of these headers: the gate refused it
    // otherwise (`gate::decide`), so adding them is all it takes.
    if let Some(email) = developer {
        let _ = abi::add_header(Map::RequestHeaders, DEVELOPER_EMAIL_HEADER, email);
        let _ = abi::add_header(Map::RequestHeaders, DEVELOPER_STATUS_HEADER, Status::Approved.as_str());
    }
    if let Some(target) = rewrite_target {
        let _ = abi::replace_header(Map::RequestHeaders, ":path", target);
    }
}

pub(super) fn send(response: &LocalResponse) {
    let headers: Vec<(&str, &str)> = response
        .headers
        .iter()
        .map(|(name, value)| (*name, value.as_str()))
        .collect();
    if let Err(status) = abi::send_local_response(response.status, &headers, &response.body) {
        log::error!("devportal-gate: cannot send the local response: {status}");
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
