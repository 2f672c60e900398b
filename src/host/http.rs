//! The HTTP context: one per request. It reads the request once, asks the pure
//! logic what to do, and carries it out: forward (with the developer headers),
//! answer locally, or drive one of the step machines that wait on etcd (an
//! admin request; a self-service registration) through its calls.

use std::borrow::Cow;
use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;

use super::abi::{self, Buffer, Map};
use super::etcd_call;
use super::respond::{respond, respond_api, send, unconfigured};
use super::shared::Shared;
use super::store::HostSharedData;
use crate::admin::{self, ApiResponse, Route, Step, Task};
use crate::directory::registration::{self, Admission};
use crate::directory::replica;
use crate::directory::rules::FirstStatus;
use crate::directory::{self, Directory, Lookup, Status};
use crate::encoding::header_map::{decode_pairs, Pair};
use crate::etcd::members::MemberIndex;
use crate::request::framing::{self, Body, Framing};
use crate::request::gate::{self, RequestView, DEVELOPER_EMAIL_HEADER, DEVELOPER_STATUS_HEADER};
use crate::request::metrics::Counter;
use crate::request::path;
use crate::request::responses::{bad_path, LocalResponse, Refusal};

pub struct GateHttp {
    shared: Option<Rc<Shared>>,
    waiting: Waiting,
}

/// What a paused request waits for.
enum Waiting {
    Nothing,
    /// An admin request's body.
    AdminBody {
        route: Route,
        query: Option<String>,
        actor: String,
    },
    /// The answer to an etcd call of a step machine.
    Etcd {
        token: u32,
        member: MemberIndex,
        task: Box<Task>,
        then: Then,
    },
}

/// What the end of a step machine answers.
enum Then {
    /// The admin API's JSON answer.
    Admin,
    /// A self-service registration: `page` (the Requested answer) once the
    /// developer is recorded; `target` to ask again if someone else was first.
    Registration { page: LocalResponse, target: String },
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
            Waiting::Etcd {
                token,
                member,
                task,
                then,
            } if token == token_id => {
                let Directory::Etcd(etcd) = &shared.directory else {
                    return;
                };
                let answer = etcd_call::read_answer(etcd, member, body_size);
                let step = match then {
                    Then::Admin => match shared.admin_context() {
                        Some(ctx) => admin::resume(&ctx, *task, answer),
                        None => return send(&unconfigured()),
                    },
                    Then::Registration { .. } => admin::resume(&shared.registration_context(), *task, answer),
                };
                self.run(&shared, step, then);
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
        // Read in place: the pairs borrow the map's one copy.
        let header_map = abi::header_map_bytes(Map::RequestHeaders).unwrap_or_default();
        let request = HostRequest {
            headers: decode_pairs(&header_map).unwrap_or_default(),
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
            directory::lookup_at(&HostSharedData, &gate.namespace, email, abi::now_ms)
        });
        shared.count(verdict.counter);
        match verdict.action {
            gate::Action::Forward {
                rewrite_target,
                developer,
            } => {
                forward(rewrite_target.as_deref(), developer.as_deref());
                Action::Continue
            }
            gate::Action::Respond(response) => respond(&response),
            gate::Action::Register { email, then, first } => self.register(&shared, &email, then, first, &target),
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Waiting::AdminBody { route, .. } = &self.waiting else {
            return Action::Continue;
        };
        if let Some(refusal) = admin::body_refusal(route, body_size) {
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
        let Some(config) = shared.admin.as_ref() else {
            return respond(&unconfigured());
        };
        if let Some(page) = admin::console::serve(&config.prefix, method, path) {
            return respond(&page);
        }
        let route = match admin::route(&config.prefix, method, path) {
            Ok(route) => route,
            Err(response) => return respond_api(&response),
        };
        let actor = if route.needs_token() {
            // A header value that is not UTF-8 is no token at all.
            let values: Option<Vec<String>> = request
                .header_values("authorization")
                .into_iter()
                .map(|value| value.map(str::to_string))
                .collect();
            match admin::authenticate(config, values.as_deref().unwrap_or_default()) {
                Ok(name) => name.to_string(),
                Err(response) => return respond_api(&response),
            }
        } else {
            String::new()
        };
        // Whether a body follows is the stream's word (see `framing`), never
        // Content-Length alone. Only nginx needs the property read.
        let nginx_protocol = if end_of_stream {
            None
        } else {
            abi::property(&["ngx", "server_protocol"])
                .ok()
                .flatten()
                .and_then(|bytes| String::from_utf8(bytes).ok())
        };
        let body = framing::body(Framing {
            end_of_stream,
            nginx_protocol: nginx_protocol.as_deref(),
            content_length: request.header("content-length"),
            transfer_encoding: request.has("transfer-encoding"),
        });
        if body == Body::Unknown && route.reads_body() {
            return respond_api(&admin::length_required());
        }
        if body == Body::Follows {
            // Envoy turns a pause here into "stop all iteration": the body would
            // never reach `on_http_request_body`. So the headers continue, and the
            // admin listener has Envoy's buffer filter after this one, which holds
            // them from the router until the body is complete; this filter takes
            // the body first and answers (an empty one included).
            self.waiting = Waiting::AdminBody {
                route,
                query: query.map(str::to_string),
                actor,
            };
            return Action::Continue;
        }
        self.start_admin(shared, route, query, b"", &actor)
    }

    fn start_admin(&mut self, shared: &Shared, route: Route, query: Option<&str>, body: &[u8], actor: &str) -> Action {
        let Some(ctx) = shared.admin_context() else {
            return respond(&unconfigured());
        };
        let step = admin::start(&ctx, route, query, body, actor);
        self.run(shared, step, Then::Admin)
    }

    /// Self-service: record the developer as Requested (once, if admitted by the
    /// registration bounds), then show the Requested answer.
    fn register(
        &mut self,
        shared: &Shared,
        email: &str,
        page: Cow<'_, LocalResponse>,
        first: FirstStatus,
        target: &str,
    ) -> Action {
        let ctx = shared.registration_context();
        let admission = registration::admit(ctx.store, ctx.namespace, email, shared.gate.registration, ctx.now_ms);
        if admission != Admission::Admit {
            shared.count(match admission {
                Admission::Full | Admission::Crowded => Counter::RegistrationFull,
                _ => Counter::RegistrationLimited,
            });
            return respond(&registration::refused(admission));
        }
        // Requested: the waiting page. Another first status (a rule's): the
        // client asks again and the new record decides (registration::again).
        let page = if first.status == Status::Requested {
            page.into_owned()
        } else {
            registration::again(target)
        };
        let step = admin::register(&ctx, email, &first);
        let then = Then::Registration {
            page,
            target: target.to_string(),
        };
        self.run(shared, step, then)
    }

    /// Carries a step machine forward: answers, or sends its next etcd call and
    /// waits for the answer.
    fn run(&mut self, shared: &Shared, step: Step, then: Then) -> Action {
        match step {
            Step::Respond(answer) => finish(shared, &answer, then),
            Step::Call(request, task) => {
                let Directory::Etcd(etcd) = &shared.directory else {
                    return finish(shared, &admin::no_etcd(), then);
                };
                match etcd_call::dispatch(etcd, &request) {
                    Ok((token, member)) => {
                        self.waiting = Waiting::Etcd {
                            token,
                            member,
                            task,
                            then,
                        };
                        Action::Pause
                    }
                    // Not sent: the machine hears it as a failed call and says
                    // what that means for its request.
                    Err(error) => {
                        let step = match &then {
                            Then::Admin => match shared.admin_context() {
                                Some(ctx) => admin::resume(&ctx, *task, Err(error)),
                                None => return respond(&unconfigured()),
                            },
                            Then::Registration { .. } => {
                                admin::resume(&shared.registration_context(), *task, Err(error))
                            }
                        };
                        self.run(shared, step, then)
                    }
                }
            }
        }
    }
}

/// The answer at the end of a step machine.
fn finish(shared: &Shared, answer: &ApiResponse, then: Then) -> Action {
    match then {
        Then::Admin => respond_api(answer),
        Then::Registration { page, target } => {
            if answer.status != 201 && answer.status != 409 {
                log::warn!("devportal-gate: self-service registration failed: {}", answer.body);
            }
            let unavailable = shared
                .gate
                .responses
                .for_refusal(Refusal::DirectoryUnavailable, false)
                .cloned()
                .unwrap_or_else(unconfigured);
            respond(&registration::answer(answer.status, page, &target, unavailable))
        }
    }
}

/// The request's headers, as the host reported them: names and values as bytes.
struct HostRequest<'a> {
    headers: Vec<Pair<'a>>,
}

impl<'a> HostRequest<'a> {
    /// Envoy lists pseudo-headers in the map; a host that does not is asked
    /// directly. `None` when the value is not UTF-8.
    fn pseudo_header(&self, name: &str) -> Option<Cow<'a, str>> {
        match self.values(name).next() {
            Some(value) => std::str::from_utf8(value).ok().map(Cow::Borrowed),
            None => match abi::header_value(Map::RequestHeaders, name) {
                Ok(Some(value)) => String::from_utf8(value).ok().map(Cow::Owned),
                _ => Some(Cow::Borrowed("")),
            },
        }
    }

    fn has(&self, name: &str) -> bool {
        self.values(name).next().is_some()
    }

    /// Every value of `name`; names compare case-insensitively (hosts differ in
    /// how they report them), as bytes, so a name that is not UTF-8 never matches.
    fn values<'n>(&self, name: &'n str) -> impl Iterator<Item = &'a [u8]> + use<'a, 'n, '_> {
        self.headers
            .iter()
            .filter(move |(header, _)| header.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, value)| *value)
    }
}

impl RequestView for HostRequest<'_> {
    fn header_values(&self, name: &str) -> Vec<Option<&str>> {
        self.values(name).map(|value| std::str::from_utf8(value).ok()).collect()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.values(name)
            .next()
            .and_then(|value| std::str::from_utf8(value).ok())
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
