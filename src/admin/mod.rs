//! The admin API: Kong Manager's "Managing Developers" page as JSON over HTTP.
//!
//! Pure logic: the host glue authenticates with `authenticate` (`auth`), routes
//! with `route` (`routes`), and then drives a `Step` machine: `start` answers at
//! once (health, rules, `invitations`) or asks for one etcd call (`reads`: a
//! developer's document is read from etcd; `writes`: the one write protocol);
//! each answer goes to `resume`, which answers or asks for the next call. Bodies are parsed in `bodies`.
//! A write is answered only once etcd committed it and this gateway's replica
//! holds it.

pub mod console;
pub mod mailto;

use std::collections::VecDeque;

use serde_json::{json, Value};

use crate::directory::developer::{Developer, DeveloperAction};
use crate::directory::replica::{self, Entry};
use crate::directory::Directory;
use crate::directory::{keys, SharedStore, Status};
use crate::encoding::clock::rfc3339;
use crate::etcd::{self, EtcdError, EtcdRequest};
use crate::request::email::canonical_email;
use crate::sync;
use mailto::percent_decode;

/// Larger request bodies are refused with 413 before they are parsed.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
pub const MAX_BULK_EMAILS: usize = 100;
pub const MAX_INVITATIONS: usize = 1000;
pub const MAX_PER_PAGE: usize = 500;
pub const DEFAULT_PER_PAGE: usize = 50;
const MAX_METADATA_FIELDS: usize = 32;
const MAX_METADATA_VALUE: usize = 512;
const MAX_REASON: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiResponse {
    pub status: u32,
    pub body: String,
    /// For 405: the methods the path takes.
    pub allow: Option<&'static str>,
}

fn answer(status: u32, body: Value) -> ApiResponse {
    ApiResponse {
        status,
        body: body.to_string(),
        allow: None,
    }
}

/// Every admin error answer: `{"error": "<code>", "message": "..."}` (some add
/// fields, such as the developer's current state on a conflict).
fn error(status: u32, code: &str, message: impl Into<String>) -> ApiResponse {
    answer(status, error_body(code, message))
}

fn error_body(code: &str, message: impl Into<String>) -> Value {
    json!({"error": code, "message": message.into()})
}

/// The admin API's configuration (compiled from the configuration's `admin`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdminConfig {
    /// e.g. `/_devportal`: no trailing slash.
    pub prefix: String,
    /// (name recorded as the actor, secret)
    pub tokens: Vec<(String, String)>,
    pub registration_url: String,
    pub invitation_subject: String,
    /// May contain `{registration_url}`.
    pub invitation_body: String,
}

/// What an admin route needs besides the request: where things live.
pub struct AdminContext<'a> {
    pub config: &'a AdminConfig,
    pub directory: &'a Directory,
    pub namespace: &'a str,
    pub store: &'a dyn SharedStore,
    pub now_ms: u64,
    /// A fresh, unique id for a write this request may start (recorded in the
    /// developer's history; see `Transition::operation`).
    pub operation: String,
    /// How long approvals last (the configuration's `approvals`).
    pub approvals: crate::directory::expiry::Approvals,
}

impl AdminContext<'_> {
    fn key_prefix(&self) -> Option<&str> {
        match self.directory {
            Directory::Etcd(etcd) => Some(&etcd.key_prefix),
            Directory::Static => None,
        }
    }
}

pub fn start(ctx: &AdminContext<'_>, route: Route, query: Option<&str>, body: &[u8], actor: &str) -> Step {
    match start_inner(ctx, route, query, body, actor) {
        Ok(step) => step,
        Err(response) => Step::Respond(response),
    }
}

fn start_inner(
    ctx: &AdminContext<'_>,
    route: Route,
    query: Option<&str>,
    body: &[u8],
    actor: &str,
) -> Result<Step, ApiResponse> {
    if !route.reads_body() && !body.is_empty() {
        return Err(error(400, "unexpected_body", "this request takes no body"));
    }
    if !matches!(route, Route::List) && query.is_some_and(|q| !q.is_empty()) {
        return Err(error(400, "invalid_query", "this request takes no query parameters"));
    }
    match route {
        Route::Health => Ok(Step::Respond(health(ctx))),
        Route::Session => Ok(Step::Respond(answer(
            200,
            json!({"actor": actor, "writable": ctx.key_prefix().is_some()}),
        ))),
        Route::List => list(ctx, query),
        Route::Get(email) => Ok(read_developers(ctx, ReadShape::Developer, vec![email])),
        Route::Mailto(email) => Ok(read_developers(ctx, ReadShape::Mailto, vec![email])),
        Route::Invite => invite(ctx, body).map(Step::Respond),
        Route::Events => events(ctx).map(Step::Respond),
        Route::Rules => Ok(Step::Respond(answer(
            200,
            json!({"rules": published_rules(ctx)?.iter().map(|r| r.to_api()).collect::<Vec<_>>()}),
        ))),
        Route::RulesDryRun => rules_dry_run(ctx, body).map(Step::Respond),
        Route::Create => {
            let prefix = writable(ctx)?;
            let request: CreateRequest = parse_body(body)?;
            let developer = request.into_developer(actor, ctx.now_ms)?;
            Ok(create_step(ctx, prefix, developer))
        }
        Route::Act(email, action) => {
            let prefix = writable(ctx)?;
            let request: ActRequest = if body.is_empty() {
                ActRequest::default()
            } else {
                parse_body(body)?
            };
            let reason = check_reason(request.reason)?;
            let expires_ms = action_expiry(ctx, action, request.expires_at, request.expires_in)?;
            let task = ActTask::new(email, action, reason, actor, request.dry_run, ctx.operation.clone())
                .with_expiry(expires_ms);
            Ok(Step::Call(
                etcd::get(&keys::etcd_developer(prefix, &task.email)),
                Box::new(Task::Act(task)),
            ))
        }
        Route::Bulk => {
            let prefix = writable(ctx)?;
            let request: BulkRequest = parse_body(body)?;
            let action = DeveloperAction::parse(&request.action).ok_or_else(|| unknown_action(&request.action))?;
            let reason = check_reason(request.reason)?;
            let expires_ms = action_expiry(ctx, action, request.expires_at.clone(), request.expires_in.clone())?;
            if request.emails.is_empty() || request.emails.len() > MAX_BULK_EMAILS {
                return Err(error(
                    422,
                    "invalid_emails",
                    format!("\"emails\" must list 1 to {MAX_BULK_EMAILS} addresses"),
                ));
            }
            let mut pending = VecDeque::new();
            for (i, input) in request.emails.iter().enumerate() {
                let email = canonical_email(input)
                    .map_err(|e| error(422, "invalid_email", format!("emails[{i}]: {input:?} {e}")))?;
                if pending.contains(&email) {
                    return Err(error(
                        422,
                        "duplicate_email",
                        format!("emails[{i}]: {email:?} is listed twice"),
                    ));
                }
                pending.push_back(email);
            }
            let Some(first) = pending.pop_front() else {
                return Err(error(422, "invalid_emails", "no addresses"));
            };
            let current = ActTask::new(first, action, reason, actor, request.dry_run, ctx.operation.clone())
                .with_expiry(expires_ms);
            let call = etcd::get(&keys::etcd_developer(prefix, &current.email));
            Ok(Step::Call(
                call,
                Box::new(Task::Bulk(BulkTask {
                    pending,
                    current,
                    results: Vec::new(),
                })),
            ))
        }
    }
}

/// Feeds etcd's answer (HTTP status and body, or why there is none) to a task.
pub fn resume(ctx: &AdminContext<'_>, task: Task, etcd_answer: Result<(u32, Vec<u8>), EtcdError>) -> Step {
    let Some(prefix) = ctx.key_prefix() else {
        return Step::Respond(error(500, "internal", "an etcd answer arrived for a static directory"));
    };
    match task {
        Task::Read(task) => read_more(prefix, *task, etcd_answer),
        Task::Create(mut task) => match create(ctx, prefix, &mut task, etcd_answer) {
            Ok(call) => Step::Call(call, Box::new(Task::Create(task))),
            Err(response) => Step::Respond(response),
        },
        Task::Act(mut task) => match act(ctx, prefix, &mut task, etcd_answer) {
            ActOutcome::Call(call) => Step::Call(call, Box::new(Task::Act(task))),
            ActOutcome::Done { status, body } => Step::Respond(answer(status, body)),
        },
        Task::Bulk(mut bulk) => match act(ctx, prefix, &mut bulk.current, etcd_answer) {
            ActOutcome::Call(call) => Step::Call(call, Box::new(Task::Bulk(bulk))),
            ActOutcome::Done { status, body } => {
                bulk.results
                    .push(json!({"email": bulk.current.email, "status": status, "result": body}));
                if status == 503 {
                    // etcd is gone: the rest is not attempted, and the answer says which.
                    for email in bulk.pending.drain(..) {
                        bulk.results
                            .push(json!({"email": email, "status": 503, "result": {"error": "not_attempted"}}));
                    }
                    return Step::Respond(bulk_answer(503, bulk.current.dry_run, bulk.results));
                }
                match bulk.pending.pop_front() {
                    Some(email) => {
                        let call = etcd::get(&keys::etcd_developer(prefix, &email));
                        bulk.current.email = email;
                        bulk.current.phase = ActPhase::Read;
                        bulk.current.read_retried = false;
                        // One operation id per developer of the bulk request.
                        bulk.current.operation = format!("{}.{}", ctx.operation, bulk.results.len());
                        Step::Call(call, Box::new(Task::Bulk(bulk)))
                    }
                    None => Step::Respond(bulk_answer(200, bulk.current.dry_run, bulk.results)),
                }
            }
        },
    }
}

fn bulk_answer(status: u32, dry_run: bool, results: Vec<Value>) -> ApiResponse {
    let succeeded = results.iter().filter(|r| r["status"] == 200).count();
    answer(
        status,
        json!({"dry_run": dry_run, "succeeded": succeeded, "failed": results.len() - succeeded, "results": results}),
    )
}

mod auth;
mod bodies;
mod invitations;
mod reads;
mod routes;
mod writes;

pub use auth::authenticate;
use bodies::*;
use invitations::*;
use reads::*;
use routes::*;
pub use routes::{body_refusal, length_required, no_etcd, route, Route};
use writes::*;
pub use writes::{register, Step, Task};

#[cfg(test)]
mod tests;
