//! The admin API: Kong Manager's "Managing Developers" page as JSON over HTTP.
//!
//! Pure logic: the host glue authenticates with `authenticate`, routes with
//! `route`, and then drives a `Step` machine: `start` answers at once (reads are
//! served from the replica in shared data) or asks for one etcd call; each
//! answer goes to `resume`, which answers or asks for the next call. A write is
//! answered only once etcd committed it and the replica of this gateway holds it.

pub mod mailto;

use std::collections::VecDeque;

use serde::Deserialize;
use serde_json::{json, Map, Value};

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

fn error(status: u32, code: &str, message: impl Into<String>) -> ApiResponse {
    answer(status, json!({"error": code, "message": message.into()}))
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
}

impl AdminContext<'_> {
    fn key_prefix(&self) -> Option<&str> {
        match self.directory {
            Directory::Etcd(etcd) => Some(&etcd.key_prefix),
            Directory::Static => None,
        }
    }
}

// ---- Authentication ----------------------------------------------------------

/// The name of the token presented as `Authorization: Bearer <token>`. Every
/// configured token is compared in full, so timing tells nothing about which
/// one matched or how much of it.
pub fn authenticate<'c>(config: &'c AdminConfig, authorization: &[String]) -> Result<&'c str, ApiResponse> {
    let refused = || {
        error(
            401,
            "unauthorized",
            "a valid \"Authorization: Bearer <token>\" header is required",
        )
    };
    let [value] = authorization else { return Err(refused()) };
    let Some(presented) = value.strip_prefix("Bearer ").map(str::trim) else {
        return Err(refused());
    };
    let mut found: Option<&str> = None;
    for (name, token) in &config.tokens {
        if constant_time_eq(presented.as_bytes(), token.as_bytes()) {
            found = Some(name);
        }
    }
    found.ok_or_else(refused)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut difference = u8::from(a.len() != b.len());
    for (i, &x) in a.iter().enumerate() {
        // Compare against `b` cyclically so the loop length only depends on `a`.
        let y = if b.is_empty() {
            0
        } else {
            b.get(i % b.len()).copied().unwrap_or(0)
        };
        difference |= x ^ y;
    }
    difference == 0
}

// ---- Routing -------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Health,
    List,
    Create,
    Bulk,
    Get(String),
    Mailto(String),
    Act(String, DeveloperAction),
    Invite,
}

impl Route {
    pub fn needs_token(&self) -> bool {
        *self != Route::Health
    }

    pub fn reads_body(&self) -> bool {
        matches!(self, Route::Create | Route::Bulk | Route::Act(..) | Route::Invite)
    }
}

/// The answer to a body as it arrives, before it is complete: too large for a
/// route that takes one, or any body at all for a route that takes none.
pub fn body_refusal(route: &Route, body_size: usize) -> Option<ApiResponse> {
    if route.reads_body() {
        (body_size > MAX_BODY_BYTES).then(|| {
            error(
                413,
                "body_too_large",
                format!("bodies are limited to {MAX_BODY_BYTES} bytes"),
            )
        })
    } else {
        (body_size > 0).then(|| error(400, "unexpected_body", "this request takes no body"))
    }
}

/// A host that cannot tell whether a body follows (see `request::framing`).
pub fn length_required() -> ApiResponse {
    error(
        411,
        "length_required",
        "this host cannot tell whether a body follows: send Content-Length",
    )
}

/// An etcd call asked for over a static directory: a bug, answered plainly.
pub fn no_etcd() -> ApiResponse {
    error(500, "internal", "an etcd call for a static directory")
}

/// `path` is the normalized path, `prefix` included.
pub fn route(prefix: &str, method: &str, path: &str) -> Result<Route, ApiResponse> {
    let rest = path.strip_prefix(prefix).unwrap_or("");
    let segments: Vec<&str> = rest.split('/').skip(1).collect();
    let not_allowed = |allow: &'static str| ApiResponse {
        allow: Some(allow),
        ..error(405, "method_not_allowed", format!("{path} takes {allow}"))
    };
    let only = |wanted: &'static str, route: Route| {
        if method == wanted {
            Ok(route)
        } else {
            Err(not_allowed(wanted))
        }
    };
    match segments.as_slice() {
        ["health"] => only("GET", Route::Health),
        ["developers"] => match method {
            "GET" => Ok(Route::List),
            "POST" => Ok(Route::Create),
            _ => Err(not_allowed("GET, POST")),
        },
        ["developers", "bulk"] => only("POST", Route::Bulk),
        ["developers", email] => only("GET", Route::Get(path_email(email)?)),
        ["developers", email, "mailto"] => only("GET", Route::Mailto(path_email(email)?)),
        ["developers", email, action] => {
            let action = DeveloperAction::parse(action).ok_or_else(|| unknown_action(action))?;
            only("POST", Route::Act(path_email(email)?, action))
        }
        ["invitations"] => only("POST", Route::Invite),
        _ => Err(error(404, "not_found", format!("no admin resource at {path:?}"))),
    }
}

fn unknown_action(action: &str) -> ApiResponse {
    let known: Vec<&str> = DeveloperAction::ALL.iter().map(|a| a.as_str()).collect();
    error(
        404,
        "unknown_action",
        format!("{action:?} is not an action; actions are {}", known.join(", ")),
    )
}

fn path_email(segment: &str) -> Result<String, ApiResponse> {
    let decoded = percent_decode(segment)
        .ok_or_else(|| error(400, "invalid_email", "the address is not valid percent-encoding"))?;
    canonical_email(&decoded).map_err(|e| error(400, "invalid_email", format!("{decoded:?} {e}")))
}

fn query_params(query: Option<&str>) -> Result<Vec<(String, String)>, ApiResponse> {
    let mut params = Vec::new();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decode(&value.replace('+', " "))
            .ok_or_else(|| error(400, "invalid_query", format!("{pair:?} is not valid percent-encoding")))?;
        params.push((name.to_string(), value));
    }
    Ok(params)
}

// ---- The step machine ----------------------------------------------------------

pub enum Step {
    Respond(ApiResponse),
    Call(EtcdRequest, Box<Task>),
}

/// A request waiting for etcd.
pub enum Task {
    Create(CreateTask),
    Act(ActTask),
    Bulk(BulkTask),
}

pub struct CreateTask {
    developer: Developer,
    operation: String,
    phase: CreatePhase,
}

enum CreatePhase {
    /// Reading the archive of a deleted developer with this address.
    ReadArchive,
    /// The create-if-absent is out; `resent` after a lost answer.
    Write { request: EtcdRequest, resent: bool },
    /// Its answer was lost: reading the key back.
    Verify { request: EtcdRequest, resent: bool },
}

pub struct ActTask {
    email: String,
    action: DeveloperAction,
    reason: Option<String>,
    actor: String,
    dry_run: bool,
    operation: String,
    phase: ActPhase,
}

enum ActPhase {
    /// Reading the developer's current record and revision.
    Read,
    /// The conditional write is out; `to` is `None` for a deletion.
    Write(Pending),
    /// Its answer was lost: reading the key back.
    Verify(Pending),
}

/// A conditional write, kept whole so it can be sent again: it only applies
/// while the key is at `expected`, so sending it twice changes nothing twice.
struct Pending {
    from: Status,
    to: Option<Developer>,
    expected: u64,
    request: EtcdRequest,
    resent: bool,
}

pub struct BulkTask {
    pending: VecDeque<String>,
    current: ActTask,
    results: Vec<Value>,
}

/// The per-developer outcome of an action.
enum ActOutcome {
    Call(EtcdRequest),
    Done { status: u32, body: Value },
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
        Route::List => list(ctx, query).map(Step::Respond),
        Route::Get(email) => {
            let (revision, developer) = read(ctx, &email)?;
            Ok(Step::Respond(answer(
                200,
                json!({"developer": developer.to_api(revision)}),
            )))
        }
        Route::Mailto(email) => {
            read(ctx, &email)?;
            Ok(Step::Respond(answer(
                200,
                json!({"email": email, "mailto": mailto::to_developer(&email)}),
            )))
        }
        Route::Invite => invite(ctx, body).map(Step::Respond),
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
            let task = ActTask {
                email,
                action,
                reason,
                actor: actor.to_string(),
                dry_run: request.dry_run,
                operation: ctx.operation.clone(),
                phase: ActPhase::Read,
            };
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
            let current = ActTask {
                email: first,
                action,
                reason,
                actor: actor.to_string(),
                dry_run: request.dry_run,
                operation: ctx.operation.clone(),
                phase: ActPhase::Read,
            };
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

fn unavailable(why: &EtcdError) -> ActOutcome {
    ActOutcome::Done {
        status: 503,
        body: json!({"error": "directory_unavailable", "message": format!("nothing was changed: {why}")}),
    }
}

fn act(
    ctx: &AdminContext<'_>,
    prefix: &str,
    task: &mut ActTask,
    etcd_answer: Result<(u32, Vec<u8>), EtcdError>,
) -> ActOutcome {
    let key = keys::etcd_developer(prefix, &task.email);
    match std::mem::replace(&mut task.phase, ActPhase::Read) {
        ActPhase::Read => {
            let range = match etcd_answer.and_then(|(status, body)| etcd::parse_range(status, &body)) {
                Ok(range) => range,
                Err(why) => return unavailable(&why),
            };
            let Some(kv) = range.kvs.into_iter().next() else {
                return ActOutcome::Done {
                    status: 404,
                    body: json!({"error": "not_found", "message": format!("no developer {:?}", task.email)}),
                };
            };
            // The read is fresh: let this gateway's replica have it too.
            let current = match adopt(ctx, &task.email, &kv) {
                Ok(current) => current,
                Err(why) => {
                    return ActOutcome::Done {
                        status: 502,
                        body: json!({"error": "unreadable_record", "message": why}),
                    }
                }
            };
            let to = match current.after(task.action, &task.actor, task.reason.as_deref(), ctx.now_ms) {
                Ok(to) => to.map(|to| to.with_operation(&task.operation)),
                Err(not_offered) => {
                    return ActOutcome::Done {
                        status: 409,
                        body: json!({
                            "error": "action_not_offered",
                            "message": not_offered.to_string(),
                            "status": current.status,
                            "actions": DeveloperAction::offered_by(current.status).iter().map(|a| a.as_str()).collect::<Vec<_>>(),
                        }),
                    }
                }
            };
            if task.dry_run {
                return ActOutcome::Done {
                    status: 200,
                    body: json!({"dry_run": true, "action": task.action.as_str(), "from": current.status, "to": to.as_ref().map(|d| d.status), "deletes": to.is_none()}),
                };
            }
            let request = match &to {
                Some(developer) => etcd::replace(&key, Some(&developer.to_stored()), kv.mod_revision),
                // A deletion keeps the history (with the deletion) in the archive.
                None => {
                    let archived = current
                        .deleted(&task.actor, task.reason.as_deref(), ctx.now_ms)
                        .with_operation(&task.operation);
                    etcd::delete_and_archive(
                        &key,
                        kv.mod_revision,
                        &keys::etcd_archive(prefix, &task.email),
                        &archived.to_stored(),
                    )
                }
            };
            task.phase = ActPhase::Write(Pending {
                from: current.status,
                to,
                expected: kv.mod_revision,
                request: request.clone(),
                resent: false,
            });
            ActOutcome::Call(request)
        }
        ActPhase::Write(pending) => {
            match etcd_answer.and_then(|(status, body)| etcd::parse_txn(status, &body)) {
                Ok(txn) if txn.succeeded => committed(ctx, task, pending.from, pending.to, txn.revision, false),
                Ok(txn) => conflict(ctx, &task.email, txn.current),
                // The write was sent: it may have committed. Never guess; read it back.
                Err(why) => {
                    log::warn!(
                        "devportal-gate admin: the answer to operation {} on {} was lost ({why}); reading it back",
                        task.operation,
                        task.email
                    );
                    task.phase = ActPhase::Verify(pending);
                    ActOutcome::Call(etcd::get(&key))
                }
            }
        }
        ActPhase::Verify(mut pending) => {
            let range = match etcd_answer.and_then(|(status, body)| etcd::parse_range(status, &body)) {
                Ok(range) => range,
                Err(why) => return outcome_unknown(ctx, &task.email, &task.operation, &why),
            };
            let Some(kv) = range.kvs.into_iter().next() else {
                return match pending.to {
                    // Gone, as asked: by this request or by another at the same moment.
                    None => ActOutcome::Done {
                        status: 200,
                        body: json!({"action": "delete", "from": pending.from, "deleted": task.email, "confirmed_by_read_back": true}),
                    },
                    Some(_) => conflict(ctx, &task.email, None),
                };
            };
            if kv.mod_revision == pending.expected {
                // Not applied, and it still can be: send the same conditional write once more.
                if pending.resent {
                    return outcome_unknown(
                        ctx,
                        &task.email,
                        &task.operation,
                        &EtcdError::Unreachable("the write was sent twice and both answers were lost".into()),
                    );
                }
                pending.resent = true;
                let request = pending.request.clone();
                task.phase = ActPhase::Write(pending);
                return ActOutcome::Call(request);
            }
            match Developer::from_stored(&task.email, &kv.value) {
                Ok(found) if found.made_by(&task.operation) => {
                    committed(ctx, task, pending.from, Some(found), kv.mod_revision, true)
                }
                _ => conflict(ctx, &task.email, Some(kv)),
            }
        }
    }
}

/// A change etcd committed (or a read-back found committed): this gateway
/// enforces it before it answers.
fn committed(
    ctx: &AdminContext<'_>,
    task: &ActTask,
    from: Status,
    to: Option<Developer>,
    revision: u64,
    by_read_back: bool,
) -> ActOutcome {
    let entry = match &to {
        Some(developer) => Entry::Present(developer),
        None => Entry::Deleted,
    };
    if let Err(why) = replica::apply(ctx.store, ctx.namespace, &task.email, revision, entry) {
        return ActOutcome::Done {
            status: 500,
            body: json!({"error": "replica", "message": format!("committed to etcd, but this gateway's replica could not be updated ({why}); it will be within one sync interval")}),
        };
    }
    // One line per committed change, for the gateway's logs (the history in
    // etcd has the same, with the reason).
    log::info!(
        "devportal-gate admin: {} {} {} ({} -> {}) at etcd revision {}, operation {}",
        task.actor,
        task.action.as_str(),
        task.email,
        from,
        to.as_ref().map_or("deleted", |d| d.status.as_str()),
        revision,
        task.operation
    );
    let mut body = match to {
        Some(developer) => {
            json!({"action": task.action.as_str(), "from": from, "developer": developer.to_api(revision)})
        }
        None => json!({"action": "delete", "from": from, "deleted": task.email}),
    };
    if let Some(fields) = body.as_object_mut() {
        fields.insert("operation".into(), json!(task.operation));
        if by_read_back {
            fields.insert("confirmed_by_read_back".into(), json!(true));
        }
    }
    ActOutcome::Done { status: 200, body }
}

/// The write went out, its answer was lost, and etcd could not tell either: say
/// so, and how to find out, instead of claiming anything.
fn outcome_unknown(ctx: &AdminContext<'_>, email: &str, operation: &str, why: &EtcdError) -> ActOutcome {
    ActOutcome::Done {
        status: 503,
        body: json!({
            "error": "outcome_unknown",
            "operation": operation,
            "message": format!(
                "the change was sent to etcd but its answer was lost, and reading it back failed ({why}): it may or may not have been applied. GET {}/developers/{email} shows the truth: it was applied if the history has operation {operation:?}",
                ctx.config.prefix
            ),
        }),
    }
}

/// A conditional write lost: answer with the state that won.
fn conflict(ctx: &AdminContext<'_>, email: &str, current: Option<etcd::Kv>) -> ActOutcome {
    let Some(kv) = current else {
        let _ = replica::apply(ctx.store, ctx.namespace, email, 0, Entry::Deleted);
        return ActOutcome::Done {
            status: 409,
            body: json!({"error": "conflict", "message": format!("{email:?} was deleted meanwhile; nothing was changed")}),
        };
    };
    match adopt(ctx, email, &kv) {
        Ok(developer) => ActOutcome::Done {
            status: 409,
            body: json!({
                "error": "conflict",
                "message": format!("{email:?} changed meanwhile (now {}); nothing was changed", developer.status),
                "developer": developer.to_api(kv.mod_revision),
            }),
        },
        Err(why) => ActOutcome::Done {
            status: 409,
            body: json!({"error": "conflict", "message": why}),
        },
    }
}

/// A record etcd just showed: parsed, and given to this gateway's replica
/// (monotonic, so an older read never undoes a newer change).
fn adopt(ctx: &AdminContext<'_>, email: &str, kv: &etcd::Kv) -> Result<Developer, String> {
    let developer = Developer::from_stored(email, &kv.value)?;
    let _ = replica::apply(
        ctx.store,
        ctx.namespace,
        email,
        kv.mod_revision,
        Entry::Present(&developer),
    );
    Ok(developer)
}

/// Starts a create: the archive first, so a developer who was deleted comes
/// back with the past in the history.
fn create_step(ctx: &AdminContext<'_>, prefix: &str, developer: Developer) -> Step {
    let archive = etcd::get(&keys::etcd_archive(prefix, &developer.email));
    Step::Call(
        archive,
        Box::new(Task::Create(CreateTask {
            developer: developer.with_operation(&ctx.operation),
            operation: ctx.operation.clone(),
            phase: CreatePhase::ReadArchive,
        })),
    )
}

/// Self-service registration: `email` becomes Requested, once. The answer is the
/// create's: 201 (registered now), 409 (someone registered them first), 503.
pub fn register(ctx: &AdminContext<'_>, email: &str) -> Step {
    let Some(prefix) = ctx.key_prefix() else {
        return Step::Respond(error(403, "read_only_directory", "the directory is static"));
    };
    let developer = Developer::register(email, Status::Requested, Map::new(), "self-service", ctx.now_ms);
    create_step(ctx, prefix, developer)
}

fn create(
    ctx: &AdminContext<'_>,
    prefix: &str,
    task: &mut CreateTask,
    etcd_answer: Result<(u32, Vec<u8>), EtcdError>,
) -> Result<EtcdRequest, ApiResponse> {
    let key = keys::etcd_developer(prefix, &task.developer.email);
    match std::mem::replace(&mut task.phase, CreatePhase::ReadArchive) {
        CreatePhase::ReadArchive => {
            let range = etcd_answer
                .and_then(|(status, body)| etcd::parse_range(status, &body))
                .map_err(|why| error(503, "directory_unavailable", format!("nothing was changed: {why}")))?;
            // An unreadable archive is not a reason to refuse a registration.
            let archived = range
                .kvs
                .into_iter()
                .next()
                .and_then(|kv| Developer::from_stored(&task.developer.email, &kv.value).ok());
            task.developer = task.developer.clone().after_archive(archived);
            let request = etcd::create(&key, &task.developer.to_stored());
            task.phase = CreatePhase::Write {
                request: request.clone(),
                resent: false,
            };
            Ok(request)
        }
        CreatePhase::Write { request, resent } => {
            match etcd_answer.and_then(|(status, body)| etcd::parse_txn(status, &body)) {
                Ok(txn) if txn.succeeded => Err(registered(ctx, &task.developer, &task.operation, txn.revision, false)),
                Ok(txn) => Err(already_exists(ctx, &task.developer.email, txn.current)),
                Err(why) => {
                    log::warn!(
                        "devportal-gate admin: the answer to operation {} (create {}) was lost ({why}); reading it back",
                        task.operation,
                        task.developer.email
                    );
                    task.phase = CreatePhase::Verify { request, resent };
                    Ok(etcd::get(&key))
                }
            }
        }
        CreatePhase::Verify { request, resent } => {
            let range = etcd_answer
                .and_then(|(status, body)| etcd::parse_range(status, &body))
                .map_err(|why| unknown_create(ctx, task, &why))?;
            let Some(kv) = range.kvs.into_iter().next() else {
                if resent {
                    return Err(unknown_create(
                        ctx,
                        task,
                        &EtcdError::Unreachable("the create was sent twice and both answers were lost".into()),
                    ));
                }
                // Not there: creating is idempotent, send it again.
                task.phase = CreatePhase::Write {
                    request: request.clone(),
                    resent: true,
                };
                return Ok(request);
            };
            match Developer::from_stored(&task.developer.email, &kv.value) {
                Ok(found) if found.made_by(&task.operation) => {
                    Err(registered(ctx, &found, &task.operation, kv.mod_revision, true))
                }
                _ => Err(already_exists(ctx, &task.developer.email, Some(kv))),
            }
        }
    }
}

fn unknown_create(ctx: &AdminContext<'_>, task: &CreateTask, why: &EtcdError) -> ApiResponse {
    match outcome_unknown(ctx, &task.developer.email, &task.operation, why) {
        ActOutcome::Done { status, body } => answer(status, body),
        ActOutcome::Call(_) => error(503, "outcome_unknown", "the outcome is unknown"),
    }
}

fn already_exists(ctx: &AdminContext<'_>, email: &str, current: Option<etcd::Kv>) -> ApiResponse {
    let current = current.and_then(|kv| Some(adopt(ctx, email, &kv).ok()?.to_api(kv.mod_revision)));
    answer(
        409,
        json!({"error": "already_exists", "message": format!("{email:?} is already registered"), "developer": current}),
    )
}

fn registered(
    ctx: &AdminContext<'_>,
    developer: &Developer,
    operation: &str,
    revision: u64,
    by_read_back: bool,
) -> ApiResponse {
    if let Err(why) = replica::apply(
        ctx.store,
        ctx.namespace,
        &developer.email,
        revision,
        Entry::Present(developer),
    ) {
        return error(
            500,
            "replica",
            format!("committed, but this gateway's replica could not be updated: {why}"),
        );
    }
    let actor = developer.history.last().map_or("", |t| t.actor.as_str());
    log::info!(
        "devportal-gate admin: {actor} registered {} as {} at etcd revision {revision}, operation {operation}",
        developer.email,
        developer.status,
    );
    let mut body = json!({"developer": developer.to_api(revision), "operation": operation});
    if let (true, Some(fields)) = (by_read_back, body.as_object_mut()) {
        fields.insert("confirmed_by_read_back".into(), json!(true));
    }
    answer(201, body)
}

fn writable<'c>(ctx: &'c AdminContext<'_>) -> Result<&'c str, ApiResponse> {
    ctx.key_prefix().ok_or_else(|| {
        error(
            403,
            "read_only_directory",
            "the directory is static (the filter configuration's \"developers\"): change it there, or configure directory.source \"etcd\"",
        )
    })
}

fn read(ctx: &AdminContext<'_>, email: &str) -> Result<(u64, Developer), ApiResponse> {
    match replica::read_doc(ctx.store, ctx.namespace, email) {
        Ok(Some(found)) => Ok(found),
        Ok(None) => Err(error(404, "not_found", format!("no developer {email:?}"))),
        Err(why) => Err(error(503, "directory_unavailable", why.to_string())),
    }
}

// ---- Bodies ----------------------------------------------------------------------

fn parse_body<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, ApiResponse> {
    if body.len() > MAX_BODY_BYTES {
        return Err(error(
            413,
            "body_too_large",
            format!("bodies are limited to {MAX_BODY_BYTES} bytes"),
        ));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let at = e.path().to_string();
        let message = if at == "." || at == "?" {
            e.inner().to_string()
        } else {
            format!("at `{at}`: {}", e.inner())
        };
        error(400, "invalid_body", message)
    })?;
    deserializer
        .end()
        .map_err(|e| error(400, "invalid_body", e.to_string()))?;
    Ok(value)
}

fn check_reason(reason: Option<String>) -> Result<Option<String>, ApiResponse> {
    match reason {
        Some(reason) if reason.len() > MAX_REASON || reason.contains(char::is_control) => Err(error(
            422,
            "invalid_reason",
            format!("\"reason\" must be at most {MAX_REASON} bytes without control characters"),
        )),
        other => Ok(other.filter(|r| !r.trim().is_empty())),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateRequest {
    email: String,
    #[serde(default)]
    status: Option<Status>,
    #[serde(default)]
    metadata: Map<String, Value>,
}

impl CreateRequest {
    fn into_developer(self, actor: &str, now_ms: u64) -> Result<Developer, ApiResponse> {
        let email =
            canonical_email(&self.email).map_err(|e| error(422, "invalid_email", format!("{:?} {e}", self.email)))?;
        let status = self.status.unwrap_or(Status::Requested);
        if !matches!(status, Status::Requested | Status::Approved) {
            return Err(error(
                422,
                "invalid_status",
                "a new developer is \"requested\" or, created by an admin, \"approved\"",
            ));
        }
        if self.metadata.len() > MAX_METADATA_FIELDS {
            return Err(error(
                422,
                "invalid_metadata",
                format!("at most {MAX_METADATA_FIELDS} metadata fields"),
            ));
        }
        for (name, value) in &self.metadata {
            let ok = name.len() <= 64
                && value
                    .as_str()
                    .is_some_and(|v| v.len() <= MAX_METADATA_VALUE && !v.contains(char::is_control));
            if !ok {
                return Err(error(
                    422,
                    "invalid_metadata",
                    format!(
                        "metadata.{name}: values are strings of at most {MAX_METADATA_VALUE} bytes, names at most 64"
                    ),
                ));
            }
        }
        Ok(Developer::register(&email, status, self.metadata, actor, now_ms))
    }
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ActRequest {
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    dry_run: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BulkRequest {
    action: String,
    emails: Vec<String>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    dry_run: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InviteRequest {
    emails: EmailList,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum EmailList {
    Text(String),
    List(Vec<String>),
}

// ---- Reads ------------------------------------------------------------------------

fn list(ctx: &AdminContext<'_>, query: Option<&str>) -> Result<ApiResponse, ApiResponse> {
    let mut status = None;
    let mut page = 1usize;
    let mut per_page = DEFAULT_PER_PAGE;
    for (name, value) in query_params(query)? {
        match name.as_str() {
            "status" => {
                status = Some(Status::parse(&value).ok_or_else(|| {
                    error(
                        400,
                        "invalid_status",
                        format!("{value:?}: status is one of requested, approved, revoked, rejected"),
                    )
                })?)
            }
            "page" => {
                page = value
                    .parse()
                    .ok()
                    .filter(|p| *p >= 1)
                    .ok_or_else(|| error(400, "invalid_page", "page is a number from 1"))?
            }
            "per_page" => {
                per_page = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_PER_PAGE).contains(n))
                    .ok_or_else(|| {
                        error(
                            400,
                            "invalid_per_page",
                            format!("per_page is a number from 1 to {MAX_PER_PAGE}"),
                        )
                    })?
            }
            other => {
                return Err(error(
                    400,
                    "invalid_query",
                    format!("unknown parameter {other:?}: use status, page, per_page"),
                ))
            }
        }
    }
    let status = status.ok_or_else(|| {
        error(
            400,
            "invalid_status",
            "status=requested|approved|revoked|rejected is required",
        )
    })?;
    let unavailable = |why: crate::directory::WriteError| error(503, "directory_unavailable", why.to_string());
    let offset = (page - 1).saturating_mul(per_page);
    let (total, emails) =
        replica::list_page(ctx.store, ctx.namespace, status, offset, per_page).map_err(unavailable)?;
    let mut counts = Map::new();
    for tab in Status::ALL {
        let size = if tab == status {
            total
        } else {
            replica::tab_size(ctx.store, ctx.namespace, tab).map_err(unavailable)?
        };
        counts.insert(tab.as_str().to_string(), json!(size));
    }
    let developers: Vec<Value> = emails
        .iter()
        .filter_map(|email| replica::read_doc(ctx.store, ctx.namespace, email).ok().flatten())
        .map(|(revision, developer)| developer.to_api(revision))
        .collect();
    Ok(answer(
        200,
        json!({"status": status, "page": page, "per_page": per_page, "total": total, "counts": counts, "developers": developers}),
    ))
}

fn invite(ctx: &AdminContext<'_>, body: &[u8]) -> Result<ApiResponse, ApiResponse> {
    let request: InviteRequest = parse_body(body)?;
    let invitees = match &request.emails {
        EmailList::Text(text) => mailto::invitees(text.split(',')),
        EmailList::List(list) => mailto::invitees(list.iter().map(String::as_str)),
    };
    if invitees.valid.len() > MAX_INVITATIONS {
        return Err(error(
            422,
            "too_many",
            format!("at most {MAX_INVITATIONS} addresses per invitation"),
        ));
    }
    let invalid: Vec<Value> = invitees
        .invalid
        .iter()
        .map(|(input, reason)| json!({"input": input, "reason": reason}))
        .collect();
    if invitees.valid.is_empty() {
        return Err(answer(
            422,
            json!({"error": "no_valid_addresses", "message": "no valid address to invite", "invalid": invalid}),
        ));
    }
    let body_text = ctx
        .config
        .invitation_body
        .replace("{registration_url}", &ctx.config.registration_url);
    let link = mailto::invitation(&invitees.valid, &ctx.config.invitation_subject, &body_text);
    Ok(answer(
        200,
        json!({"mailto": link, "invited": invitees.valid, "invalid": invalid, "duplicates": invitees.duplicates, "registration_url": ctx.config.registration_url}),
    ))
}

/// Served without a token: it tells whether the replica is loaded and how old it is.
fn health(ctx: &AdminContext<'_>) -> ApiResponse {
    let state = replica::read_sync_state(ctx.store, ctx.namespace);
    let syncer = sync::syncer_heartbeat(ctx.store, ctx.namespace);
    let source = match ctx.directory {
        Directory::Static => "static",
        Directory::Etcd(_) => "etcd",
    };
    let Some(state) = state else {
        return answer(
            503,
            json!({"status": "loading", "source": source, "message": "the first full sync has not completed: protected routes answer 503"}),
        );
    };
    // A static directory is never stale: the configuration is the truth.
    let (staleness_ms, fresh) = match ctx.directory {
        Directory::Static => (0, true),
        Directory::Etcd(etcd) => {
            let staleness_ms = ctx.now_ms.saturating_sub(state.synced_at_ms);
            (staleness_ms, staleness_ms <= etcd.sync_interval_ms + 1000)
        }
    };
    answer(
        200,
        json!({
            "status": if fresh { "ok" } else { "stale" },
            "source": source,
            "revision": state.revision,
            "synced_at": rfc3339(state.synced_at_ms),
            "staleness_ms": staleness_ms,
            "syncer": syncer.map(|(worker, heartbeat)| json!({"worker": worker, "heartbeat": rfc3339(heartbeat)})),
        }),
    )
}

#[cfg(test)]
mod tests;
