//! Which admin resource a request names, and what it may carry.

use super::*;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Health,
    /// Who the token is, and whether the directory takes writes (the console asks).
    Session,
    List,
    Create,
    Bulk,
    Get(String),
    Mailto(String),
    Act(String, DeveloperAction),
    Invite,
    /// The event deliverer's view: sinks, positions, backlog, newest events.
    Events,
    /// The registration rules, in order.
    Rules,
    /// What the rules would make of a registration.
    RulesDryRun,
}

impl Route {
    pub fn needs_token(&self) -> bool {
        *self != Route::Health
    }

    pub fn reads_body(&self) -> bool {
        matches!(
            self,
            Route::Create | Route::Bulk | Route::Act(..) | Route::Invite | Route::RulesDryRun
        )
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
        ["session"] => only("GET", Route::Session),
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
        ["events"] => only("GET", Route::Events),
        ["rules"] => only("GET", Route::Rules),
        ["rules", "dry-run"] => only("POST", Route::RulesDryRun),
        _ => Err(error(404, "not_found", format!("no admin resource at {path:?}"))),
    }
}

pub(super) fn unknown_action(action: &str) -> ApiResponse {
    let known: Vec<&str> = DeveloperAction::ALL.iter().map(|a| a.as_str()).collect();
    error(
        404,
        "unknown_action",
        format!("{action:?} is not an action; actions are {}", known.join(", ")),
    )
}

pub(super) fn path_email(segment: &str) -> Result<String, ApiResponse> {
    let decoded = percent_decode(segment)
        .ok_or_else(|| error(400, "invalid_email", "the address is not valid percent-encoding"))?;
    canonical_email(&decoded).map_err(|e| error(400, "invalid_email", format!("{decoded:?} {e}")))
}

pub(super) fn query_params(query: Option<&str>) -> Result<Vec<(String, String)>, ApiResponse> {
    let mut params = Vec::new();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decode(&value.replace('+', " "))
            .ok_or_else(|| error(400, "invalid_query", format!("{pair:?} is not valid percent-encoding")))?;
        params.push((name.to_string(), value));
    }
    Ok(params)
}
