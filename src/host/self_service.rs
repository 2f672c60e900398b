//! Self-service registration (`unknown_developers: request`): an unknown
//! developer opening a portal page is created in etcd as Requested, once, by the
//! same step machine as the admin API's creates (`admin::register`), and shown
//! the Requested answer.

use std::borrow::Cow;

use proxy_wasm::types::Action;

use super::abi;
use super::admin_http::registration_context;
use super::etcd_call;
use super::http::{respond, unconfigured, GateHttp, Waiting};
use super::root::Shared;
use crate::admin::{self, ApiResponse, Step};
use crate::directory::registration::{self, Admission};
use crate::directory::Directory;
use crate::request::metrics::Counter;
use crate::request::responses::{LocalResponse, Refusal};

impl GateHttp {
    /// Create the developer as Requested (only if absent), then show the
    /// pending answer.
    pub(super) fn register(
        &mut self,
        shared: &Shared,
        email: &str,
        then: Cow<'_, LocalResponse>,
        target: &str,
    ) -> Action {
        let ctx = registration_context(shared);
        let admission = registration::admit(ctx.store, ctx.namespace, shared.gate.registration, ctx.now_ms);
        if admission != Admission::Admit {
            let counter = match admission {
                Admission::Full => Counter::RegistrationFull,
                _ => Counter::RegistrationLimited,
            };
            if let Some(&id) = counter.index().and_then(|i| shared.counters.get(i)) {
                let _ = abi::increment_metric(id, 1);
            }
            return respond(&registration::refused(admission));
        }
        let step = admin::register(&ctx, email);
        self.run_registration(shared, step, then.into_owned(), target.to_string())
    }

    pub(super) fn run_registration(
        &mut self,
        shared: &Shared,
        step: Step,
        then: LocalResponse,
        target: String,
    ) -> Action {
        match step {
            Step::Respond(answer) => respond(&registered(shared, &answer, then, &target)),
            Step::Call(request, task) => {
                let Directory::Etcd(etcd) = &shared.directory else {
                    return respond(&then);
                };
                match etcd_call::dispatch(etcd, &request) {
                    Ok(token) => {
                        self.waiting = Waiting::Registration {
                            token,
                            task,
                            then,
                            target,
                        };
                        Action::Pause
                    }
                    Err(_) => respond(&directory_unavailable(shared)),
                }
            }
        }
    }
}

/// The page once etcd took (or refused) a self-service registration.
fn registered(shared: &Shared, answer: &ApiResponse, then: LocalResponse, target: &str) -> LocalResponse {
    match answer.status {
        201 => then,
        // Registered meanwhile (another gateway, an admin): the replica has
        // etcd's word for it now; have the client ask again, decided from that.
        409 => LocalResponse {
            status: 307,
            headers: vec![
                ("location", target.to_string()),
                ("cache-control", "no-store".to_string()),
            ],
            body: Vec::new(),
        },
        _ => {
            log::warn!("devportal-gate: self-service registration failed: {}", answer.body);
            directory_unavailable(shared)
        }
    }
}

fn directory_unavailable(shared: &Shared) -> LocalResponse {
    shared
        .gate
        .responses
        .for_refusal(Refusal::DirectoryUnavailable, false)
        .cloned()
        .unwrap_or_else(unconfigured)
}
