//! The admin API's reads. A gateway's replica holds only what the gate needs
//! (one record per developer) and the tabs' order; a developer's document
//! (metadata, history) is read from etcd, the directory's truth: one developer,
//! or the developers of one page of a tab, a chunk of `READ_CHUNK` per
//! transaction. While etcd cannot answer, such a read answers 503, like a
//! write. A static directory has no etcd: its developers are read from the
//! records the configuration seeded.

use serde_json::{json, Map, Value};

use crate::encoding::json_object;
use crate::encoding::json_reader::{self, Object};

use super::*;

/// Developers read per etcd transaction: under etcd's default `--max-txn-ops` (128).
pub const READ_CHUNK: usize = 100;

/// A read waiting for etcd: the developers of `emails`, in that order.
pub struct ReadTask {
    pub(super) shape: ReadShape,
    pub(super) emails: Vec<String>,
    /// The chunk in flight: `emails[chunk.0..chunk.1]`.
    pub(super) chunk: (usize, usize),
    pub(super) found: Vec<Value>,
    /// Whether the chunk in flight was already sent again after a failure on the way.
    pub(super) retried: bool,
}

/// What the answer to a read looks like.
pub(super) enum ReadShape {
    /// `{"developer": ...}`; 404 when there is none.
    Developer,
    /// `{"email", "mailto"}`; 404 when there is no such developer.
    Mailto,
    /// A page of a tab: these fields, and `developers`.
    Page(Map<String, Value>),
}

pub(super) fn writable<'c>(ctx: &'c AdminContext<'_>) -> Result<&'c str, ApiResponse> {
    ctx.key_prefix().ok_or_else(|| {
        error(
            403,
            "read_only_directory",
            "the directory is static (the filter configuration's \"developers\"): change it there, or configure directory.source \"etcd\"",
        )
    })
}

/// Starts reading `emails` for an answer shaped as `shape`.
pub(super) fn read_developers(ctx: &AdminContext<'_>, shape: ReadShape, emails: Vec<String>) -> Step {
    let mut task = ReadTask {
        shape,
        emails,
        chunk: (0, 0),
        found: Vec::new(),
        retried: false,
    };
    let Some(prefix) = ctx.key_prefix() else {
        // A static directory: every developer is the configuration's record.
        task.found = task
            .emails
            .iter()
            .filter_map(|email| static_developer(ctx, email))
            .map(|developer| developer.to_api(0))
            .collect();
        return Step::Respond(read_answer(task));
    };
    match chunk_from(prefix, &mut task, 0) {
        Some(call) => Step::Call(call, Box::new(Task::Read(Box::new(task)))),
        None => Step::Respond(read_answer(task)),
    }
}

/// A static directory's developer, as the configuration made it.
fn static_developer(ctx: &AdminContext<'_>, email: &str) -> Option<Developer> {
    match crate::directory::lookup(ctx.store, ctx.namespace, email) {
        crate::directory::Lookup::Found(status) => {
            Some(Developer::register(email, status, Map::new(), "configuration", 0))
        }
        _ => None,
    }
}

/// The transaction that reads the chunk of `task.emails` from `start`; `None`
/// when there is none left.
fn chunk_from(prefix: &str, task: &mut ReadTask, start: usize) -> Option<EtcdRequest> {
    let ops: Vec<Value> = task
        .emails
        .get(start..)?
        .iter()
        .take(READ_CHUNK)
        .map(|email| etcd::op_get(&keys::etcd_developer(prefix, email)))
        .collect();
    if ops.is_empty() {
        return None;
    }
    task.chunk = (start, start + ops.len());
    Some(etcd::txn(vec![], ops, vec![]))
}

/// Feeds etcd's answer to a read: the next chunk, or the answer.
pub(super) fn read_more(prefix: &str, mut task: ReadTask, etcd_answer: Result<(u32, Vec<u8>), EtcdError>) -> Step {
    match etcd_answer.and_then(|(status, body)| etcd::parse_txn_reads(status, &body)) {
        Ok(reads) => {
            let developers = keys::etcd_developers(prefix);
            for kv in reads
                .ranges
                .into_iter()
                .filter_map(|range| range.kvs.into_iter().next())
            {
                let Some(email) = kv
                    .key
                    .strip_prefix(developers.as_bytes())
                    .and_then(|suffix| std::str::from_utf8(suffix).ok())
                else {
                    continue;
                };
                // A value that is not a developer is left out of the answer
                // (the gate refuses that developer, see `replica::Entry::Unreadable`).
                if let Ok(developer) = Developer::from_stored(email, &kv.value) {
                    task.found.push(developer.to_api(kv.mod_revision));
                }
            }
        }
        Err(why) if why.transport() && !task.retried => {
            // Reads are idempotent: once more, maybe through another member.
            task.retried = true;
            let again = task.chunk.0;
            if let Some(call) = chunk_from(prefix, &mut task, again) {
                return Step::Call(call, Box::new(Task::Read(Box::new(task))));
            }
        }
        Err(why) => {
            return Step::Respond(error(
                503,
                "directory_unavailable",
                format!("the directory (etcd) cannot be read: {why}"),
            ))
        }
    }
    task.retried = false;
    let next = task.chunk.1;
    match chunk_from(prefix, &mut task, next) {
        Some(call) => Step::Call(call, Box::new(Task::Read(Box::new(task)))),
        None => Step::Respond(read_answer(task)),
    }
}

/// The answer once every developer of a read was read.
fn read_answer(task: ReadTask) -> ApiResponse {
    let ReadTask {
        shape, emails, found, ..
    } = task;
    match shape {
        ReadShape::Developer | ReadShape::Mailto => {
            let email = emails.into_iter().next().unwrap_or_default();
            let Some(developer) = found.into_iter().next() else {
                return error(404, "not_found", format!("no developer {email:?}"));
            };
            match shape {
                ReadShape::Mailto => answer(200, json!({"email": email, "mailto": mailto::to_developer(&email)})),
                _ => answer(200, json!({ "developer": developer })),
            }
        }
        ReadShape::Page(mut fields) => {
            fields.insert("developers".into(), Value::Array(found));
            answer(200, Value::Object(fields))
        }
    }
}

pub(super) fn list(ctx: &AdminContext<'_>, query: Option<&str>) -> Result<Step, ApiResponse> {
    let mut status = None;
    let mut page = 1usize;
    let mut per_page = DEFAULT_PER_PAGE;
    let mut search: Option<String> = None;
    let mut expiring_within: Option<u64> = None;
    for (name, value) in query_params(query)? {
        match name.as_str() {
            // Approvals that end within this long (or already ended, not yet revoked).
            "expiring_within" => {
                expiring_within = Some(
                    crate::encoding::clock::parse_duration(&value)
                        .map_err(|why| error(400, "invalid_expiring_within", why))?,
                )
            }
            // Part of an address, compared as addresses are (ASCII case-insensitively).
            "q" => search = Some(value.trim().to_ascii_lowercase()).filter(|q| !q.is_empty()),
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
                    format!("unknown parameter {other:?}: use status, q, page, per_page, expiring_within"),
                ))
            }
        }
    }
    if let Some(within) = expiring_within {
        if status.is_some_and(|s| s != Status::Approved) {
            return Err(error(
                400,
                "invalid_status",
                "only approvals expire: expiring_within lists approved developers",
            ));
        }
        return list_expiring(ctx, within, search.as_deref(), page, per_page);
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
    let (total, emails) = replica::list_page(ctx.store, ctx.namespace, status, offset, per_page, search.as_deref())
        .map_err(unavailable)?;
    let mut counts = Map::new();
    for tab in Status::ALL {
        let size = if tab == status && search.is_none() {
            total
        } else {
            replica::tab_size(ctx.store, ctx.namespace, tab).map_err(unavailable)?
        };
        counts.insert(tab.as_str().to_string(), json!(size));
    }
    let fields = json!({"status": status, "page": page, "per_page": per_page, "total": total, "counts": counts});
    Ok(read_developers(ctx, page_shape(fields), emails))
}

fn page_shape(fields: Value) -> ReadShape {
    match fields {
        Value::Object(fields) => ReadShape::Page(fields),
        _ => ReadShape::Page(Map::new()),
    }
}

/// `GET <prefix>/developers?expiring_within=30d`: approvals that end within
/// that long (or have ended and are not revoked yet), soonest first.
fn list_expiring(
    ctx: &AdminContext<'_>,
    within_ms: u64,
    search: Option<&str>,
    page: usize,
    per_page: usize,
) -> Result<Step, ApiResponse> {
    let unavailable = |why: crate::directory::WriteError| error(503, "directory_unavailable", why.to_string());
    let until = ctx.now_ms.saturating_add(within_ms);
    let due = replica::expiring_where(ctx.store, ctx.namespace, |email, ms| {
        ms <= until && search.is_none_or(|part| email.contains(part))
    })
    .map_err(unavailable)?;
    let emails: Vec<String> = due
        .iter()
        .skip((page - 1).saturating_mul(per_page))
        .take(per_page)
        .map(|(email, _)| email.clone())
        .collect();
    let fields = json!({"status": "approved", "expiring_before": rfc3339(until), "page": page, "per_page": per_page, "total": due.len()});
    Ok(read_developers(ctx, page_shape(fields), emails))
}

/// Served without a token: it tells whether the replica is loaded and how old it is.
pub(super) fn health(ctx: &AdminContext<'_>) -> ApiResponse {
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
            "events": events_view(ctx).map(|view| json!({
                "delivering_here": view.get("delivering"),
                "backlog": view.get("sinks").and_then(Value::as_array).map(|sinks| json_object(sinks.iter().map(|sink| (
                    sink.get("name").and_then(Value::as_str).unwrap_or_default().to_string(),
                    sink.get("backlog").cloned().unwrap_or_default(),
                )))),
            })),
        }),
    )
}

/// What this gateway's event candidates last published (none: no
/// configuration on this gateway has `events`).
fn events_view(ctx: &AdminContext<'_>) -> Option<Value> {
    let (bytes, _) = ctx.store.get(&keys::events_view(ctx.namespace)).ok()??;
    serde_json::from_slice(&bytes).ok()
}

/// The registration rules the gate's configuration published.
pub(super) fn published_rules(ctx: &AdminContext<'_>) -> Result<Vec<crate::directory::rules::Rule>, ApiResponse> {
    let stored = ctx
        .store
        .get(&keys::rules(ctx.namespace))
        .map_err(|why| error(503, "directory_unavailable", format!("{why:?}")))?;
    match stored {
        None => Ok(Vec::new()),
        Some((bytes, _)) => crate::directory::rules::from_published(&bytes)
            .ok_or_else(|| error(500, "internal", "the published registration rules are not readable")),
    }
}

/// `POST <prefix>/rules/dry-run` `{"email": ..., "claims": {...}}`: the first
/// status a self-registration would get, and by which rule. Changes nothing.
pub(super) fn rules_dry_run(ctx: &AdminContext<'_>, body: &[u8]) -> Result<ApiResponse, ApiResponse> {
    struct DryRun {
        email: String,
        claims: Option<Map<String, Value>>,
    }
    impl Body for DryRun {
        fn read(value: &Value) -> Result<DryRun, json_reader::Error> {
            let object = Object::new(value, "", &["email", "claims"])?;
            Ok(DryRun {
                email: object.required_string("email")?,
                claims: object.optional("claims", json_reader::map)?,
            })
        }
    }
    let request: DryRun = parse_body(body)?;
    let email = canonical_email(&request.email).map_err(|why| error(422, "invalid_email", why.to_string()))?;
    let rules = published_rules(ctx)?;
    let first = crate::directory::rules::first_status(&rules, &email, request.claims.as_ref());
    let rule = first.actor.strip_prefix("rule:").map(str::to_string);
    Ok(answer(
        200,
        json!({
            "email": email,
            "status": first.status,
            "actor": first.actor,
            "rule": rule,
            "expires_at": first.expires_in_ms.map(|ms| rfc3339(ctx.now_ms.saturating_add(ms))),
        }),
    ))
}

/// `GET <prefix>/events`: each sink's position, backlog and last error, and
/// the newest events of the change log.
pub(super) fn events(ctx: &AdminContext<'_>) -> Result<ApiResponse, ApiResponse> {
    let mut view = events_view(ctx).ok_or_else(|| {
        error(
            404,
            "events_not_configured",
            "no configuration on this gateway has \"events\"",
        )
    })?;
    if let (Some(at), Some(fields)) = (view.get("at_ms").and_then(Value::as_u64), view.as_object_mut()) {
        fields.insert("as_of".into(), rfc3339(at).into());
    }
    Ok(answer(200, view))
}
