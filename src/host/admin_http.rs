//! Admin API requests in the HTTP context: route and authenticate, take the body
//! when there is one, then drive `admin::start`/`admin::resume` through the etcd
//! calls they ask for.

use proxy_wasm::types::Action;

use super::abi;
use super::etcd_call::{self, now_ms};
use super::http::{respond, unconfigured, GateHttp, HostRequest, Waiting};
use super::root::Shared;
use super::store::HostSharedData;
use crate::admin::{self, AdminContext, ApiResponse, Route, Step};
use crate::directory::Directory;
use crate::request::framing::{self, Body, Framing};
use crate::request::gate::RequestView;

impl GateHttp {
    pub(super) fn admin_request(
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
        let route = match admin::route(&config.prefix, method, path) {
            Ok(route) => route,
            Err(response) => return respond_api(&response),
        };
        let actor = if route.needs_token() {
            // A header value that is not UTF-8 is no token at all.
            let values: Option<Vec<String>> = request.header_values("authorization").into_iter().collect();
            match admin::authenticate(config, values.as_deref().unwrap_or_default()) {
                Ok(name) => name.to_string(),
                Err(response) => return respond_api(&response),
            }
        } else {
            String::new()
        };
        // Whether a body follows is the stream's word (see `framing`): never
        // Content-Length alone, which a chunked HTTP/1.1 body (Envoy drops
        // `transfer-encoding` before filters see it) or an HTTP/2 body lacks.
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
            content_length: request.header("content-length").as_deref(),
            transfer_encoding: request.has("transfer-encoding"),
        });
        if body == Body::Unknown && route.reads_body() {
            return respond_api(&ApiResponse {
                status: 411,
                body: r#"{"error":"length_required","message":"this host cannot tell whether a body follows: send Content-Length"}"#.into(),
                allow: None,
            });
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

    pub(super) fn start_admin(
        &mut self,
        shared: &Shared,
        route: Route,
        query: Option<&str>,
        body: &[u8],
        actor: &str,
    ) -> Action {
        let Some(ctx) = admin_context(shared) else {
            return respond(&unconfigured());
        };
        let step = admin::start(&ctx, route, query, body, actor);
        self.run_admin_step(shared, step)
    }

    pub(super) fn run_admin_step(&mut self, shared: &Shared, step: Step) -> Action {
        match step {
            Step::Respond(response) => respond_api(&response),
            Step::Call(request, task) => {
                let Directory::Etcd(etcd) = &shared.directory else {
                    return respond_api(&ApiResponse {
                        status: 500,
                        body: "{}".into(),
                        allow: None,
                    });
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
}

pub(super) fn admin_context(shared: &Shared) -> Option<AdminContext<'_>> {
    Some(AdminContext {
        config: shared.admin.as_ref()?,
        ..registration_context(shared)
    })
}

/// The context for the one etcd write a gate configuration without an admin
/// API makes: self-service registration.
pub(super) fn registration_context(shared: &Shared) -> AdminContext<'_> {
    let now = now_ms();
    AdminContext {
        config: &shared.no_admin,
        directory: &shared.directory,
        namespace: &shared.gate.namespace,
        store: &HostSharedData,
        now_ms: now,
        operation: operation_id(now),
    }
}

/// A unique id for one write: the time and 64 random bits (WASI's random
/// source seeds std's `RandomState`, which both hosts provide).
fn operation_id(now_ms: u64) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(now_ms);
    format!("{now_ms:x}-{:016x}", hasher.finish())
}

/// Sends an admin API answer (JSON, never cached).
pub(super) fn respond_api(response: &ApiResponse) -> Action {
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
