//! The HTTP context: one per request. Requests under the admin prefix go to the
//! admin API; every other one asks `gate::decide` and carries out the verdict:
//! forward (with the developer headers set and client copies removed), answer
//! locally, or register a self-service developer in etcd first.

use std::borrow::Cow;
use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, MapType};

use super::etcd_call::{self, now_ms};
use super::root::Shared;
use super::store::HostSharedData;
use crate::admin::{self, AdminContext, ApiResponse, Route, Step, Task};
use crate::config::{Directory, DEVELOPER_EMAIL_HEADER, DEVELOPER_STATUS_HEADER};
use crate::developer::Developer;
use crate::directory::{self, Lookup, Status};
use crate::etcd::{self, EtcdError};
use crate::gate::{self, RequestView};
use crate::path;
use crate::replica::{self, Entry};
use crate::responses::{LocalResponse, Refusal};
use crate::sync;

pub struct GateHttp {
    shared: Option<Rc<Shared>>,
    waiting: Waiting,
}

/// What a paused request waits for.
enum Waiting {
    Nothing,
    /// An admin request's body.
    AdminBody { route: Route, query: Option<String>, actor: String },
    /// An admin request's etcd call.
    AdminCall { token: u32, task: Box<Task> },
    /// A self-service registration's etcd call; then answer `then`. `target`
    /// is the request's, for asking again if someone else registered them first.
    Registration { token: u32, developer: Developer, then: LocalResponse, target: String },
}

impl GateHttp {
    pub fn new(shared: Option<Rc<Shared>>) -> GateHttp {
        GateHttp { shared, waiting: Waiting::Nothing }
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
            Waiting::Registration { token, developer, then, target } if token == token_id => {
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
        let request = HostRequest { headers: hostcalls::get_map(MapType::HttpRequestHeaders).unwrap_or_default() };
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
            gate::Action::Forward { rewrite_target, developer } => {
                forward(&request, rewrite_target.as_deref(), developer.as_deref());
                Action::Continue
            }
            gate::Action::Respond(response) => respond(&response),
            gate::Action::Register { email, then } => self.register(&shared, &email, then, &target),
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Waiting::AdminBody { .. } = self.waiting else { return Action::Continue };
        if body_size > admin::MAX_BODY_BYTES {
            self.waiting = Waiting::Nothing;
            return respond_api(&ApiResponse {
                status: 413,
                body: format!(r#"{{"error":"body_too_large","message":"bodies are limited to {} bytes"}}"#, admin::MAX_BODY_BYTES),
                allow: None,
            });
        }
        if !end_of_stream {
            return Action::Pause; // Envoy buffers until the whole body is in.
        }
        let Some(shared) = self.shared.clone() else { return Action::Pause };
        let Waiting::AdminBody { route, query, actor } = std::mem::replace(&mut self.waiting, Waiting::Nothing) else {
            return Action::Pause;
        };
        let body = hostcalls::get_buffer(BufferType::HttpRequestBody, 0, body_size).ok().flatten().unwrap_or_default();
        self.start_admin(&shared, route, query.as_deref(), &body, &actor)
    }
}

impl GateHttp {
    fn admin_request(
        &mut self,
        shared: &Shared,
        request: &HostRequest,
        method: &str,
        path: &str,
        query: Option<&str>,
        end_of_stream: bool,
    ) -> Action {
        let Some(config) = shared.admin.as_ref() else { return respond(&unconfigured()) };
        let route = match admin::route(&config.prefix, method, path) {
            Ok(route) => route,
            Err(response) => return respond_api(&response),
        };
        let actor = if route.needs_token() {
            match admin::authenticate(config, &request.header_values("authorization")) {
                Ok(name) => name.to_string(),
                Err(response) => return respond_api(&response),
            }
        } else {
            String::new()
        };
        // Kong reports end_of_stream = false in header callbacks even without a
        // body; a request that declares no body is served right away.
        let declares_body = request.has("content-length") && request.header("content-length").as_deref() != Some("0")
            || request.has("transfer-encoding");
        if route.reads_body() && !end_of_stream && declares_body {
            // Envoy turns a pause here into "stop all iteration": the body would
            // never reach `on_http_request_body`. So the headers continue, and the
            // admin listener has Envoy's buffer filter after this one, which holds
            // them from the router until the body is complete; this filter takes
            // the body first and answers.
            self.waiting = Waiting::AdminBody { route, query: query.map(str::to_string), actor };
            return Action::Continue;
        }
        if !route.reads_body() && !end_of_stream && declares_body {
            return respond_api(&ApiResponse {
                status: 400,
                body: r#"{"error":"unexpected_body","message":"this request takes no body"}"#.into(),
                allow: None,
            });
        }
        self.start_admin(shared, route, query, b"", &actor)
    }

    fn start_admin(&mut self, shared: &Shared, route: Route, query: Option<&str>, body: &[u8], actor: &str) -> Action {
        let Some(ctx) = admin_context(shared) else { return respond(&unconfigured()) };
        let step = admin::start(&ctx, route, query, body, actor);
        self.run_admin_step(shared, step)
    }

    fn run_admin_step(&mut self, shared: &Shared, step: Step) -> Action {
        match step {
            Step::Respond(response) => respond_api(&response),
            Step::Call(request, task) => {
                let Directory::Etcd(etcd) = &shared.directory else {
                    return respond_api(&ApiResponse { status: 500, body: "{}".into(), allow: None });
                };
                match etcd_call::dispatch(etcd, &request) {
                    Ok(token) => {
                        self.waiting = Waiting::AdminCall { token, task };
                        Action::Pause
                    }
                    Err(error) => match admin_context(shared) {
                        Some(ctx) => {
                            let step = admin::resume(&ctx, *task, Err(error));
                            self.run_admin_step(shared, step)
                        }
                        None => respond(&unconfigured()),
                    },
                }
            }
        }
    }

    /// Self-service: create the developer as Requested (only if absent), then
    /// show the pending answer.
    fn register(&mut self, shared: &Shared, email: &str, then: Cow<'_, LocalResponse>, target: &str) -> Action {
        let Directory::Etcd(etcd) = &shared.directory else { return respond(&then) };
        let developer = Developer::register(email, Status::Requested, serde_json::Map::new(), "self-service", now_ms());
        let request = etcd::create(&sync::developer_etcd_key(&etcd.key_prefix, email), &developer.to_stored());
        match etcd_call::dispatch(etcd, &request) {
            Ok(token) => {
                self.waiting = Waiting::Registration { token, developer, then: then.into_owned(), target: target.to_string() };
                Action::Pause
            }
            Err(_) => respond(&directory_unavailable(shared)),
        }
    }
}

fn admin_context(shared: &Shared) -> Option<AdminContext<'_>> {
    Some(AdminContext {
        config: shared.admin.as_ref()?,
        directory: &shared.directory,
        namespace: &shared.gate.namespace,
        store: &HostSharedData,
        now_ms: now_ms(),
    })
}

/// The answer once etcd took (or refused) a self-service registration.
fn registered(
    shared: &Shared,
    developer: &Developer,
    then: LocalResponse,
    target: &str,
    answer: Result<(u32, Vec<u8>), EtcdError>,
) -> LocalResponse {
    let namespace = &shared.gate.namespace;
    let txn = match answer.and_then(|(status, body)| etcd::parse_txn(status, &body)) {
        Ok(txn) => txn,
        Err(error) => {
            log::warn!("devportal-gate: self-service registration of {:?} failed: {error}", developer.email);
            return directory_unavailable(shared);
        }
    };
    if txn.succeeded {
        let _ = replica::apply(&HostSharedData, namespace, &developer.email, txn.revision, Entry::Present(developer));
        return then;
    }
    // Registered meanwhile (another gateway, an admin): take etcd's word for it
    // and have the client ask again, decided from that state this time.
    let Some(kv) = txn.current else { return directory_unavailable(shared) };
    let entry = Developer::from_stored(&developer.email, &kv.value);
    let _ = match &entry {
        Ok(current) => replica::apply(&HostSharedData, namespace, &developer.email, kv.mod_revision, Entry::Present(current)),
        Err(_) => replica::apply(&HostSharedData, namespace, &developer.email, kv.mod_revision, Entry::Unreadable),
    };
    LocalResponse {
        status: 307,
        headers: vec![("location", target.to_string()), ("cache-control", "no-store".to_string())],
        body: Vec::new(),
    }
}

fn directory_unavailable(shared: &Shared) -> LocalResponse {
    shared.gate.responses.for_refusal(Refusal::DirectoryUnavailable, false).cloned().unwrap_or_else(unconfigured)
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

fn send(response: &LocalResponse) {
    let headers: Vec<(&str, &str)> = response.headers.iter().map(|(name, value)| (*name, value.as_str())).collect();
    if let Err(status) = hostcalls::send_http_response(response.status, headers, Some(&response.body)) {
        log::error!("devportal-gate: cannot send the local response: {status:?}");
    }
}

fn respond(response: &LocalResponse) -> Action {
    send(response);
    Action::Pause
}

fn respond_api(response: &ApiResponse) -> Action {
    let mut headers = vec![("content-type", "application/json"), ("cache-control", "no-store")];
    if let Some(allow) = response.allow {
        headers.push(("allow", allow));
    }
    if response.status == 401 {
        headers.push(("www-authenticate", "Bearer"));
    }
    if let Err(status) = hostcalls::send_http_response(response.status, headers, Some(response.body.as_bytes())) {
        log::error!("devportal-gate: cannot send the admin response: {status:?}");
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
