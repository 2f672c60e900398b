//! The admin API's writes as a step machine: each asks for one etcd call at a
//! time and resumes with its answer. The one write protocol: read the record
//! and its revision, write conditioned on that revision (or on absence), give
//! the result to this gateway's replica before answering; when the answer to a
//! write is lost, read it back and find the write by its operation id (or send
//! the same conditional write once more); a deletion keeps the history in the
//! archive, and a registration starts from it.

use std::collections::VecDeque;

use serde_json::{json, Map, Value};

use super::*;
use crate::directory::rules::FirstStatus;
use crate::events::Change;

pub enum Step {
    Respond(ApiResponse),
    Call(EtcdRequest, Box<Task>),
}

/// A request waiting for etcd.
pub enum Task {
    /// Boxed: a read's envelope makes it the largest.
    Read(Box<ReadTask>),
    Create(CreateTask),
    Act(ActTask),
    Bulk(BulkTask),
}

pub struct CreateTask {
    pub(super) developer: Developer,
    pub(super) operation: String,
    pub(super) phase: CreatePhase,
    /// See `ActTask::read_retried`.
    pub(super) read_retried: bool,
}

pub(super) enum CreatePhase {
    /// Reading the archive of a deleted developer with this address.
    ReadArchive,
    /// The create-if-absent is out; `resent` after a lost answer.
    Write { request: EtcdRequest, resent: bool },
    /// Its answer was lost: reading the key back.
    Verify { request: EtcdRequest, resent: bool },
}

pub struct ActTask {
    pub(super) email: String,
    pub(super) action: DeveloperAction,
    pub(super) reason: Option<String>,
    pub(super) actor: String,
    pub(super) dry_run: bool,
    pub(super) operation: String,
    pub(super) phase: ActPhase,
    /// Whether the current read was already sent again after a failure on the
    /// way to etcd (reads are idempotent: once more reaches another member).
    pub(super) read_retried: bool,
    /// The end of the approval this action gives (approving actions only).
    pub(super) expires_ms: Option<u64>,
}

impl ActTask {
    /// An action on one developer, starting with the read of its record.
    pub(super) fn new(
        email: String,
        action: DeveloperAction,
        reason: Option<String>,
        actor: &str,
        dry_run: bool,
        operation: String,
    ) -> ActTask {
        ActTask {
            email,
            action,
            reason,
            actor: actor.to_string(),
            dry_run,
            operation,
            phase: ActPhase::Read,
            read_retried: false,
            expires_ms: None,
        }
    }

    pub(super) fn with_expiry(mut self, expires_ms: Option<u64>) -> ActTask {
        self.expires_ms = expires_ms;
        self
    }
}

pub(super) enum ActPhase {
    /// Reading the developer's current record and revision.
    Read,
    /// The conditional write is out; `to` is `None` for a deletion.
    Write(Pending),
    /// Its answer was lost: reading the key back.
    Verify(Pending),
}

/// A conditional write, kept whole so it can be sent again: it only applies
/// while the key is at `expected`, so sending it twice changes nothing twice.
pub(super) struct Pending {
    pub(super) from: Status,
    pub(super) to: Option<Developer>,
    pub(super) expected: u64,
    pub(super) request: EtcdRequest,
    pub(super) resent: bool,
}

pub struct BulkTask {
    pub(super) pending: VecDeque<String>,
    pub(super) current: ActTask,
    pub(super) results: Vec<Value>,
}

/// The per-developer outcome of an action.
pub(super) enum ActOutcome {
    Call(EtcdRequest),
    Done { status: u32, body: Value },
}

/// Nothing was sent (or nothing could be), so nothing changed; the operation
/// id is given anyway, so a caller can check that it appears nowhere.
pub(super) fn unavailable(why: &EtcdError, operation: &str) -> ActOutcome {
    ActOutcome::Done {
        status: 503,
        body: json!({"error": "directory_unavailable", "message": format!("nothing was changed: {why}"), "operation": operation}),
    }
}

pub(super) fn act(
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
                Err(why) if why.transport() && !task.read_retried => {
                    task.read_retried = true;
                    return ActOutcome::Call(etcd::get(&key));
                }
                Err(why) => return unavailable(&why, &task.operation),
            };
            let Some(kv) = range.kvs.into_iter().next() else {
                return refused(404, "not_found", format!("no developer {:?}", task.email));
            };
            // The read is fresh: let this gateway's replica have it too.
            let current = match adopt(ctx, &task.email, &kv) {
                Ok(current) => current,
                Err(why) => return refused(502, "unreadable_record", why),
            };
            let to = match current.after(task.action, &task.actor, task.reason.as_deref(), ctx.now_ms) {
                Ok(to) => to.map(|to| to.with_expiry(task.expires_ms).with_operation(&task.operation)),
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
                    body: json!({"dry_run": true, "action": task.action.as_str(), "from": current.status, "to": to.as_ref().map(|d| d.status), "deletes": to.is_none(), "expires_at": task.expires_ms.map(rfc3339)}),
                };
            }
            // Every change commits with its entry in the change log (events).
            let log = |developer: &Developer| {
                Change::last_of(developer)
                    .map(|change| change.log_entry(prefix, &task.operation))
                    .into_iter()
                    .collect::<Vec<_>>()
            };
            let request = match &to {
                Some(developer) => etcd::replace(&key, &developer.to_stored(), kv.mod_revision, &log(developer)),
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
                        &log(&archived),
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
                // Never sent (no member could be reached): send it again, once;
                // the next attempt reaches another member.
                Err(why) if why.not_sent() && !pending.resent => {
                    let request = pending.request.clone();
                    task.phase = ActPhase::Write(Pending {
                        resent: true,
                        ..pending
                    });
                    ActOutcome::Call(request)
                }
                // The write may have been sent: it may have committed. Never
                // guess; read it back.
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
pub(super) fn committed(
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
        return refused(500, "replica", format!("committed to etcd, but this gateway's replica could not be updated ({why}); it will be within one sync interval"));
    }
    // Shown in this gateway's tabs at once (the syncer agrees later).
    let _ = replica::retab(
        ctx.store,
        ctx.namespace,
        &task.email,
        Some(from),
        to.as_ref().map(|d| (d.status, d.updated_ms)),
    );
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
pub(super) fn outcome_unknown(ctx: &AdminContext<'_>, email: &str, operation: &str, why: &EtcdError) -> ActOutcome {
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
pub(super) fn conflict(ctx: &AdminContext<'_>, email: &str, current: Option<etcd::Kv>) -> ActOutcome {
    let Some(kv) = current else {
        let _ = replica::apply(ctx.store, ctx.namespace, email, 0, Entry::Deleted);
        return refused(
            409,
            "conflict",
            format!("{email:?} was deleted meanwhile; nothing was changed"),
        );
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
        Err(why) => refused(409, "conflict", why),
    }
}

/// A record etcd just showed: parsed, and given to this gateway's replica
/// (monotonic, so an older read never undoes a newer change).
pub(super) fn adopt(ctx: &AdminContext<'_>, email: &str, kv: &etcd::Kv) -> Result<Developer, String> {
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
pub(super) fn create_step(ctx: &AdminContext<'_>, prefix: &str, developer: Developer) -> Step {
    let archive = etcd::get(&keys::etcd_archive(prefix, &developer.email));
    Step::Call(
        archive,
        Box::new(Task::Create(CreateTask {
            developer: developer.with_operation(&ctx.operation),
            operation: ctx.operation.clone(),
            phase: CreatePhase::ReadArchive,
            read_retried: false,
        })),
    )
}

/// Self-service registration: `email` gets its first status (Requested, or a
/// registration rule's, with the rule as the actor), once. The answer is the
/// create's: 201 (registered now), 409 (someone registered them first), 503.
pub fn register(ctx: &AdminContext<'_>, email: &str, first: &FirstStatus) -> Step {
    let Some(prefix) = ctx.key_prefix() else {
        return Step::Respond(error(403, "read_only_directory", "the directory is static"));
    };
    let expires_ms = first.expires_in_ms.map(|ms| ctx.now_ms.saturating_add(ms));
    let developer =
        Developer::register(email, first.status, Map::new(), &first.actor, ctx.now_ms).with_expiry(expires_ms);
    create_step(ctx, prefix, developer)
}

pub(super) fn create(
    ctx: &AdminContext<'_>,
    prefix: &str,
    task: &mut CreateTask,
    etcd_answer: Result<(u32, Vec<u8>), EtcdError>,
) -> Result<EtcdRequest, ApiResponse> {
    let key = keys::etcd_developer(prefix, &task.developer.email);
    match std::mem::replace(&mut task.phase, CreatePhase::ReadArchive) {
        CreatePhase::ReadArchive => {
            let range = match etcd_answer.and_then(|(status, body)| etcd::parse_range(status, &body)) {
                Ok(range) => range,
                Err(why) if why.transport() && !task.read_retried => {
                    task.read_retried = true;
                    return Ok(etcd::get(&keys::etcd_archive(prefix, &task.developer.email)));
                }
                Err(why) => {
                    return Err(error(
                        503,
                        "directory_unavailable",
                        format!("nothing was changed: {why}"),
                    ))
                }
            };
            // An unreadable archive is not a reason to refuse a registration.
            let archived = range
                .kvs
                .into_iter()
                .next()
                .and_then(|kv| Developer::from_stored(&task.developer.email, &kv.value).ok());
            task.developer = task.developer.clone().after_archive(archived);
            let log: Vec<_> = Change::last_of(&task.developer)
                .map(|change| change.log_entry(prefix, &task.operation))
                .into_iter()
                .collect();
            let request = etcd::create(&key, &task.developer.to_stored(), &log);
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
                Err(why) if why.not_sent() && !resent => {
                    task.phase = CreatePhase::Write {
                        request: request.clone(),
                        resent: true,
                    };
                    Ok(request)
                }
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

pub(super) fn unknown_create(ctx: &AdminContext<'_>, task: &CreateTask, why: &EtcdError) -> ApiResponse {
    match outcome_unknown(ctx, &task.developer.email, &task.operation, why) {
        ActOutcome::Done { status, body } => answer(status, body),
        ActOutcome::Call(_) => error(503, "outcome_unknown", "the outcome is unknown"),
    }
}

pub(super) fn already_exists(ctx: &AdminContext<'_>, email: &str, current: Option<etcd::Kv>) -> ApiResponse {
    let current = current.and_then(|kv| Some(adopt(ctx, email, &kv).ok()?.to_api(kv.mod_revision)));
    answer(
        409,
        json!({"error": "already_exists", "message": format!("{email:?} is already registered"), "developer": current}),
    )
}

pub(super) fn registered(
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
    let _ = replica::retab(
        ctx.store,
        ctx.namespace,
        &developer.email,
        None,
        Some((developer.status, developer.updated_ms)),
    );
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

/// A per-developer outcome that is an error answer, shaped like every other
/// admin error (`super::error`).
pub(super) fn refused(status: u32, code: &str, message: impl Into<String>) -> ActOutcome {
    ActOutcome::Done {
        status,
        body: error_body(code, message),
    }
}
