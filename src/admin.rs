//! The admin API: Kong Manager's "Managing Developers" page as JSON over HTTP.
//!
//! Pure logic: the host glue authenticates with `authenticate`, routes with
//! `route`, and then drives a `Step` machine: `start` answers at once (reads are
//! served from the replica in shared data) or asks for one etcd call; each
//! answer goes to `resume`, which answers or asks for the next call. A write is
//! answered only once etcd committed it and the replica of this gateway holds it.

use std::collections::VecDeque;

use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::clock::rfc3339;
use crate::config::{AdminConfig, Directory};
use crate::developer::{Developer, DeveloperAction};
use crate::directory::{SharedStore, Status};
use crate::email::canonical_email;
use crate::etcd::{self, EtcdError, EtcdRequest};
use crate::mailto::{self, percent_decode};
use crate::replica::{self, Entry};
use crate::sync;

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

/// What an admin route needs besides the request: where things live.
pub struct AdminContext<'a> {
    pub config: &'a AdminConfig,
    pub directory: &'a Directory,
    pub namespace: &'a str,
    pub store: &'a dyn SharedStore,
    pub now_ms: u64,
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
    Create { developer: Developer },
    Act(ActTask),
    Bulk(BulkTask),
}

pub struct ActTask {
    email: String,
    action: DeveloperAction,
    reason: Option<String>,
    actor: String,
    dry_run: bool,
    phase: ActPhase,
}

enum ActPhase {
    /// Reading the developer's current record and revision.
    Read,
    /// The conditional write is out; `to` is `None` for a deletion.
    Write { from: Status, to: Option<Developer> },
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
            let call = etcd::create(
                &sync::developer_etcd_key(prefix, &developer.email),
                &developer.to_stored(),
            );
            Ok(Step::Call(call, Box::new(Task::Create { developer })))
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
                phase: ActPhase::Read,
            };
            Ok(Step::Call(
                etcd::get(&sync::developer_etcd_key(prefix, &task.email)),
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
                phase: ActPhase::Read,
            };
            let call = etcd::get(&sync::developer_etcd_key(prefix, &current.email));
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
        Task::Create { developer } => Step::Respond(created(ctx, developer, etcd_answer)),
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
                        let call = etcd::get(&sync::developer_etcd_key(prefix, &email));
                        bulk.current.email = email;
                        bulk.current.phase = ActPhase::Read;
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
    let key = sync::developer_etcd_key(prefix, &task.email);
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
            let current = match Developer::from_stored(&task.email, &kv.value) {
                Ok(current) => current,
                Err(why) => {
                    return ActOutcome::Done {
                        status: 502,
                        body: json!({"error": "unreadable_record", "message": why}),
                    }
                }
            };
            // The read is fresh: let this gateway's replica have it too.
            let _ = replica::apply(
                ctx.store,
                ctx.namespace,
                &task.email,
                kv.mod_revision,
                Entry::Present(&current),
            );
            let to = match current.after(task.action, &task.actor, task.reason.as_deref(), ctx.now_ms) {
                Ok(to) => to,
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
            let call = etcd::replace(&key, to.as_ref().map(Developer::to_stored).as_deref(), kv.mod_revision);
            task.phase = ActPhase::Write {
                from: current.status,
                to,
            };
            ActOutcome::Call(call)
        }
        ActPhase::Write { from, to } => {
            let txn = match etcd_answer.and_then(|(status, body)| etcd::parse_txn(status, &body)) {
                Ok(txn) => txn,
                // A timeout may hide a commit; the next sync shows the truth either way.
                Err(why) => return unavailable(&why),
            };
            if !txn.succeeded {
                return conflict(ctx, &task.email, txn.current);
            }
            let entry = match &to {
                Some(developer) => Entry::Present(developer),
                None => Entry::Deleted,
            };
            // Enforced here before the answer: the next request through this gateway sees it.
            if let Err(why) = replica::apply(ctx.store, ctx.namespace, &task.email, txn.revision, entry) {
                return ActOutcome::Done {
                    status: 500,
                    body: json!({"error": "replica", "message": format!("committed to etcd, but this gateway's replica could not be updated ({why}); it will be within one sync interval")}),
                };
            }
            // One line per committed change, for the gateway's logs (the history
            // in etcd has the same, with the reason).
            log::info!(
                "devportal-gate admin: {} {} {} ({} -> {}) at etcd revision {}",
                task.actor,
                task.action.as_str(),
                task.email,
                from,
                to.as_ref().map_or("deleted", |d| d.status.as_str()),
                txn.revision
            );
            let body = match to {
                Some(developer) => {
                    json!({"action": task.action.as_str(), "from": from, "developer": developer.to_api(txn.revision)})
                }
                None => json!({"action": "delete", "from": from, "deleted": task.email}),
            };
            ActOutcome::Done { status: 200, body }
        }
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
    match Developer::from_stored(email, &kv.value) {
        Ok(developer) => {
            let _ = replica::apply(
                ctx.store,
                ctx.namespace,
                email,
                kv.mod_revision,
                Entry::Present(&developer),
            );
            ActOutcome::Done {
                status: 409,
                body: json!({
                    "error": "conflict",
                    "message": format!("{email:?} changed meanwhile (now {}); nothing was changed", developer.status),
                    "developer": developer.to_api(kv.mod_revision),
                }),
            }
        }
        Err(why) => ActOutcome::Done {
            status: 409,
            body: json!({"error": "conflict", "message": why}),
        },
    }
}

fn created(
    ctx: &AdminContext<'_>,
    developer: Developer,
    etcd_answer: Result<(u32, Vec<u8>), EtcdError>,
) -> ApiResponse {
    let txn = match etcd_answer.and_then(|(status, body)| etcd::parse_txn(status, &body)) {
        Ok(txn) => txn,
        Err(why) => return error(503, "directory_unavailable", format!("nothing was changed: {why}")),
    };
    if !txn.succeeded {
        let current = txn.current.and_then(|kv| {
            Developer::from_stored(&developer.email, &kv.value)
                .ok()
                .map(|d| d.to_api(kv.mod_revision))
        });
        return answer(
            409,
            json!({"error": "already_exists", "message": format!("{:?} is already registered", developer.email), "developer": current}),
        );
    }
    if let Err(why) = replica::apply(
        ctx.store,
        ctx.namespace,
        &developer.email,
        txn.revision,
        Entry::Present(&developer),
    ) {
        return error(
            500,
            "replica",
            format!("committed, but this gateway's replica could not be updated: {why}"),
        );
    }
    let actor = developer.history.first().map_or("", |t| t.actor.as_str());
    log::info!(
        "devportal-gate admin: {actor} registered {} as {} at etcd revision {}",
        developer.email,
        developer.status,
        txn.revision
    );
    answer(201, json!({"developer": developer.to_api(txn.revision)}))
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
    let unavailable = |why: crate::directory::SeedError| error(503, "directory_unavailable", why.to_string());
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
