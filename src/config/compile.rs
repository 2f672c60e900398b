//! Phase 2: the meaning. Validates a parsed shape and builds the immutable
//! values the filter runs on; every error names the offending field.

use std::collections::HashMap;

use super::v1::*;
use super::*;
use crate::admin::AdminConfig;
use crate::directory::expiry::Approvals;
use crate::directory::rules::{valid_domain, DomainMatch, Rule};
use crate::directory::{Directory, Status};
use crate::encoding::clock::parse_duration;
use crate::etcd::members::Members;
use crate::etcd::EtcdConfig;
use crate::request::email::canonical_email;
use crate::request::gate::{Gate, DEVELOPER_EMAIL_HEADER, DEVELOPER_STATUS_HEADER};
use crate::request::identity::IdentitySource;
use crate::request::path;
use crate::request::responses::{BrowserAnswer, DenialStyle, Refusal, Responses};
use crate::request::routes::{Classification, PathMatch, Route, RouteClass, RouteTable, Unmatched};

/// How long approvals last: a default for approvals given without an expiry,
/// and a maximum no expiry may pass.
fn compile_approvals(raw: Option<RawApprovals>) -> Result<Approvals, ConfigError> {
    let Some(raw) = raw else {
        return Ok(Approvals::default());
    };
    let duration = |field: &str, text: Option<String>| -> Result<Option<u64>, ConfigError> {
        text.map(|text| match parse_duration(&text) {
            Ok(0) => Err(ConfigError::new(field, "must be longer than 0")),
            Ok(ms) => Ok(ms),
            Err(why) => Err(ConfigError::new(field, why)),
        })
        .transpose()
    };
    let default_ms = duration("approvals.default_expires_in", raw.default_expires_in)?;
    let max_ms = duration("approvals.max_expires_in", raw.max_expires_in)?;
    if let (Some(default_ms), Some(max_ms)) = (default_ms, max_ms) {
        if default_ms > max_ms {
            return Err(ConfigError::new(
                "approvals.default_expires_in",
                "is longer than approvals.max_expires_in",
            ));
        }
    }
    Ok(Approvals { default_ms, max_ms })
}

fn compile_registration(
    raw: Option<RawRegistration>,
    self_service: bool,
    identity: &IdentitySource,
    approvals: Approvals,
) -> Result<(crate::directory::registration::Limits, Vec<Rule>), ConfigError> {
    let Some(raw) = raw else {
        return Ok((crate::directory::registration::Limits::default(), Vec::new()));
    };
    if !self_service {
        return Err(ConfigError::new(
            "registration",
            "limits self-service registration, which only happens with \"unknown_developers\": \"request\"",
        ));
    }
    let defaults = crate::directory::registration::Limits::default();
    let per_minute = raw.per_minute.unwrap_or(defaults.per_minute);
    if !(1..=6000).contains(&per_minute) {
        return Err(ConfigError::new(
            "registration.per_minute",
            format!("must be 1 to 6000 (registrations per minute per gateway), got {per_minute}"),
        ));
    }
    let max_pending = raw.max_pending.unwrap_or(defaults.max_pending);
    if !(1..=1_000_000).contains(&max_pending) {
        return Err(ConfigError::new(
            "registration.max_pending",
            format!("must be 1 to 1000000 (developers waiting in Requested Access), got {max_pending}"),
        ));
    }
    let mut rules: Vec<Rule> = Vec::new();
    for (i, raw) in raw.rules.into_iter().enumerate() {
        let field = |name: &str| format!("registration.rules[{i}].{name}");
        let name = raw.name.trim().to_string();
        if name.is_empty() || name.len() > 64 || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return Err(ConfigError::new(
                field("name"),
                "1 to 64 of letters, digits, '-', '_', '.'",
            ));
        }
        if rules.iter().any(|rule| rule.name == name) {
            return Err(ConfigError::new(
                field("name"),
                format!("{name:?} is used by an earlier rule"),
            ));
        }
        let domain = match raw.matching.domain {
            Some(domain) => {
                let domain = domain.trim().to_ascii_lowercase();
                if !valid_domain(&domain) {
                    return Err(ConfigError::new(
                        field("match.domain"),
                        format!("{domain:?} is not a domain (letters, digits, hyphens in dot-separated labels; IDNs as xn--)"),
                    ));
                }
                Some(DomainMatch {
                    domain,
                    subdomains: raw.matching.include_subdomains,
                })
            }
            None if raw.matching.include_subdomains => {
                return Err(ConfigError::new(
                    field("match.include_subdomains"),
                    "needs match.domain",
                ))
            }
            None => None,
        };
        if !raw.matching.claims.is_empty() && !matches!(identity, IdentitySource::JwtPayload { .. }) {
            return Err(ConfigError::new(
                field("match.claims"),
                "needs identity.source \"jwt_payload\": there is no token to read claims from",
            ));
        }
        for (claim, value) in &raw.matching.claims {
            if value.is_object() || value.is_array() || value.is_null() {
                return Err(ConfigError::new(
                    format!("registration.rules[{i}].match.claims.{claim}"),
                    "must be a string, number or boolean",
                ));
            }
        }
        if domain.is_none() && raw.matching.claims.is_empty() {
            return Err(ConfigError::new(
                field("match"),
                "is empty: name a domain, claims, or both (a rule that matches everyone is the default)",
            ));
        }
        let outcome = raw.outcome.0;
        if outcome == Status::Revoked {
            return Err(ConfigError::new(
                field("outcome"),
                "must be approved, requested or rejected",
            ));
        }
        let expires_in_ms = match raw.expires_in {
            None => None,
            Some(_) if outcome != Status::Approved => {
                return Err(ConfigError::new(field("expires_in"), "only an approval expires"))
            }
            Some(text) => {
                let ms = parse_duration(&text).map_err(|why| ConfigError::new(field("expires_in"), why))?;
                if ms == 0 || approvals.max_ms.is_some_and(|max| ms > max) {
                    return Err(ConfigError::new(
                        field("expires_in"),
                        "must be longer than 0 and at most approvals.max_expires_in",
                    ));
                }
                Some(ms)
            }
        };
        rules.push(Rule {
            name,
            domain,
            claims: raw.matching.claims.into_iter().collect(),
            outcome,
            // An approval by rule without its own expiry gets the default.
            expires_in_ms: expires_in_ms.or(if outcome == Status::Approved {
                approvals.default_ms
            } else {
                None
            }),
        });
    }
    Ok((
        crate::directory::registration::Limits {
            per_minute,
            max_pending,
        },
        rules,
    ))
}

pub(super) fn compile_raw(raw: RawConfig) -> Result<Config, ConfigError> {
    if raw.config_version != CONFIG_VERSION {
        return Err(ConfigError::new(
            "config_version",
            format!(
                "this build understands version {CONFIG_VERSION}, got {}",
                raw.config_version
            ),
        ));
    }
    let namespace = compile_namespace(raw.namespace)?;
    let identity = compile_identity(raw.identity)?;
    let directory = compile_directory(raw.directory)?;
    let admin = raw.admin.map(compile_admin).transpose()?;
    if raw.routes.is_empty() && admin.is_none() {
        return Err(ConfigError::new(
            "routes",
            "must list at least one route (only an admin-only configuration may have none)",
        ));
    }
    let admin_only = raw.routes.is_empty();
    if admin_only && directory == Directory::Static && !raw.developers.is_empty() {
        return Err(ConfigError::new(
            "developers",
            "an admin-only configuration (no routes) reads the static directory the gate's configuration seeds; leave \"developers\" out here",
        ));
    }
    let self_service = raw.unknown_developers == Some(RawUnknownDevelopers::Request);
    if self_service && directory == Directory::Static {
        return Err(ConfigError::new(
            "unknown_developers",
            "\"request\" registers developers, which needs directory.source \"etcd\" (a static directory is read-only)",
        ));
    }
    let approvals = compile_approvals(raw.approvals)?;
    let (registration, rules) = compile_registration(raw.registration, self_service, &identity, approvals)?;
    let events = match raw.events {
        None => None,
        Some(_) if !matches!(directory, Directory::Etcd(_)) => {
            return Err(ConfigError::new(
                "events",
                "needs directory.source \"etcd\": events come from etcd's change log",
            ))
        }
        Some(events) => Some(compile_events(events)?),
    };
    let routes = compile_routes(raw.routes, raw.unmatched)?;
    let (responses, has_browser_answers) = compile_denials(raw.denials.unwrap_or_default(), &routes)?;
    let developers = compile_developers(raw.developers)?;
    if matches!(directory, Directory::Etcd(_)) && developers.len() > MAX_ETCD_SEED {
        return Err(ConfigError::new(
            "developers",
            format!("with an etcd directory these only seed it once; more than {MAX_ETCD_SEED} belong in etcd (etcdctl or the admin API)"),
        ));
    }
    Ok(Config {
        gate: Gate {
            namespace,
            identity,
            routes,
            responses,
            has_browser_answers,
            self_service,
            registration,
            rules,
        },
        developers,
        directory,
        admin,
        admin_only,
        metrics: raw.metrics.unwrap_or(true),
        events,
        approvals,
    })
}

fn compile_events(raw: RawEvents) -> Result<crate::events::EventsConfig, ConfigError> {
    use crate::events::{sign::Secret, EventsConfig, SinkConfig, ALL_TYPES};
    if raw.sinks.is_empty() || raw.sinks.len() > 16 {
        return Err(ConfigError::new("events.sinks", "lists 1 to 16 sinks"));
    }
    if raw.secrets.is_empty() {
        return Err(ConfigError::new(
            "events.secrets",
            "is required: every event is signed (Standard Webhooks), so a sink needs at least one \"whsec_...\" secret",
        ));
    }
    let secrets = raw
        .secrets
        .iter()
        .enumerate()
        .map(|(i, text)| {
            Secret::parse(text.trim()).map_err(|why| ConfigError::new(format!("events.secrets[{i}]"), why))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut sinks: Vec<SinkConfig> = Vec::new();
    for (i, sink) in raw.sinks.into_iter().enumerate() {
        let field = |name: &str| format!("events.sinks[{i}].{name}");
        let name = sink.name.trim().to_string();
        let valid_name =
            (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !valid_name {
            return Err(ConfigError::new(
                field("name"),
                "1 to 64 of letters, digits, '-', '_', '.'",
            ));
        }
        if sinks.iter().any(|s| s.name == name) {
            return Err(ConfigError::new(field("name"), format!("{name:?} is used twice")));
        }
        let upstream = sink.upstream.trim().to_string();
        if upstream.is_empty() || upstream.contains(char::is_whitespace) {
            return Err(ConfigError::new(
                field("upstream"),
                "must name the Envoy cluster (or, in Kong, the host:port) of the receiver",
            ));
        }
        let authority = sink.authority.unwrap_or_else(|| upstream.clone());
        if authority.is_empty()
            || !authority
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b))
        {
            return Err(ConfigError::new(
                field("authority"),
                format!("{authority:?} is not a host[:port]"),
            ));
        }
        let path = sink.path;
        if !path.starts_with('/') || !path.bytes().all(|b| b.is_ascii_graphic()) || path.len() > 1024 {
            return Err(ConfigError::new(
                field("path"),
                "must start with '/' and hold printable ASCII only",
            ));
        }
        let types = sink.types.unwrap_or_default();
        for (t, kind) in types.iter().enumerate() {
            if !ALL_TYPES.contains(&kind.as_str()) {
                return Err(ConfigError::new(
                    format!("events.sinks[{i}].types[{t}]"),
                    format!("{kind:?} is not one of {}", ALL_TYPES.join(", ")),
                ));
            }
        }
        let timeout_ms = bounded(&field("timeout_ms"), sink.timeout_ms, 5000, 100, 60_000)?;
        sinks.push(SinkConfig {
            name,
            upstream,
            authority,
            path,
            types,
            timeout_ms,
        });
    }
    let retry_initial_ms = bounded("events.retry_initial_ms", raw.retry_initial_ms, 500, 10, 60_000)?;
    let retry_max_ms = bounded(
        "events.retry_max_ms",
        raw.retry_max_ms,
        60_000,
        retry_initial_ms,
        3_600_000,
    )?;
    Ok(EventsConfig {
        secrets,
        sinks,
        retry_initial_ms,
        retry_max_ms,
    })
}

fn compile_directory(raw: Option<RawDirectory>) -> Result<Directory, ConfigError> {
    let Some(raw) = raw else { return Ok(Directory::Static) };
    match (raw.source, raw.etcd) {
        (RawSource::Static, None) => {
            if raw.sync_interval_ms.is_some() {
                return Err(ConfigError::new(
                    "directory.sync_interval_ms",
                    "only applies to directory.source \"etcd\"",
                ));
            }
            Ok(Directory::Static)
        }
        (RawSource::Static, Some(_)) => Err(ConfigError::new(
            "directory.etcd",
            "only applies to directory.source \"etcd\"",
        )),
        (RawSource::Etcd, None) => Err(ConfigError::new(
            "directory.etcd",
            "is required when directory.source is \"etcd\"",
        )),
        (RawSource::Etcd, Some(etcd)) => {
            let members = compile_members(etcd.upstream)?;
            let authority = etcd.authority.unwrap_or_else(|| members.pick().1.to_string());
            if authority.is_empty()
                || !authority
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b))
            {
                return Err(ConfigError::new(
                    "directory.etcd.authority",
                    format!("{authority:?} is not a host[:port]"),
                ));
            }
            let key_prefix = etcd.key_prefix.unwrap_or_else(|| DEFAULT_ETCD_KEY_PREFIX.to_string());
            let valid_prefix = key_prefix.starts_with('/')
                && key_prefix.ends_with('/')
                && key_prefix.len() <= 128
                && key_prefix.bytes().all(|b| b.is_ascii_graphic());
            if !valid_prefix {
                return Err(ConfigError::new(
                    "directory.etcd.key_prefix",
                    format!("{key_prefix:?} must start and end with '/' and hold printable ASCII only (at most 128)"),
                ));
            }
            let timeout_ms = bounded(
                "directory.etcd.timeout_ms",
                etcd.timeout_ms,
                DEFAULT_ETCD_TIMEOUT_MS,
                100,
                60_000,
            )?;
            let sync_interval_ms = bounded(
                "directory.sync_interval_ms",
                raw.sync_interval_ms,
                DEFAULT_SYNC_INTERVAL_MS,
                100,
                60_000,
            )?;
            let retention_hours = bounded(
                "directory.etcd.change_log_retention_hours",
                etcd.change_log_retention_hours,
                168,
                1,
                24 * 366,
            )?;
            let grpc_upstream = match etcd.grpc_upstream.map(|name| name.trim().to_string()) {
                // One byte of length in the message Envoy is given (`grpc::envoy_grpc_service`).
                Some(name) if name.is_empty() || name.len() > 120 || !name.bytes().all(|b| b.is_ascii_graphic()) => {
                    return Err(ConfigError::new(
                        "directory.etcd.grpc_upstream",
                        "must name an Envoy cluster (printable ASCII, at most 120) that speaks HTTP/2 to etcd",
                    ))
                }
                other => other,
            };
            Ok(Directory::Etcd(EtcdConfig {
                members,
                grpc_upstream,
                authority,
                key_prefix,
                timeout_ms,
                sync_interval_ms,
                change_log_retention_ms: retention_hours * 3_600_000,
            }))
        }
    }
}

const MAX_MEMBERS: usize = 16;

fn compile_members(raw: StringOrList) -> Result<Members, ConfigError> {
    const FIELD: &str = "directory.etcd.upstream";
    let (names, listed) = match raw {
        StringOrList::One(name) => (vec![name], false),
        StringOrList::List(names) => (names, true),
    };
    let field = |i: usize| {
        if listed {
            format!("{FIELD}[{i}]")
        } else {
            FIELD.to_string()
        }
    };
    if names.is_empty() || names.len() > MAX_MEMBERS {
        return Err(ConfigError::new(FIELD, format!("lists 1 to {MAX_MEMBERS} members")));
    }
    let mut compiled: Vec<String> = Vec::with_capacity(names.len());
    for (i, name) in names.into_iter().enumerate() {
        let name = name.trim().to_string();
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(ConfigError::new(
                field(i),
                "must name the Envoy cluster (or, in Kong, the host:port) of etcd's client URL",
            ));
        }
        if compiled.contains(&name) {
            return Err(ConfigError::new(field(i), format!("{name:?} is listed twice")));
        }
        compiled.push(name);
    }
    Ok(Members::new(compiled))
}

fn bounded(field: &str, value: Option<u64>, default: u64, min: u64, max: u64) -> Result<u64, ConfigError> {
    let value = value.unwrap_or(default);
    if !(min..=max).contains(&value) {
        return Err(ConfigError::new(field, format!("{value} is outside {min}..={max}")));
    }
    Ok(value)
}

fn compile_admin(raw: RawAdmin) -> Result<AdminConfig, ConfigError> {
    let prefix = compile_route_path("admin.prefix", raw.prefix)?;
    if prefix == "/" || prefix.ends_with('/') {
        return Err(ConfigError::new(
            "admin.prefix",
            format!("{prefix:?} must be a path like \"/_devportal\", without a trailing '/'"),
        ));
    }
    if raw.tokens.is_empty() {
        return Err(ConfigError::new("admin.tokens", "must list at least one token"));
    }
    let mut tokens: Vec<(String, String)> = Vec::with_capacity(raw.tokens.len());
    for (i, token) in raw.tokens.into_iter().enumerate() {
        let name = token.name.trim().to_string();
        if name.is_empty() || name.len() > 64 || name.contains(char::is_control) {
            return Err(ConfigError::new(
                format!("admin.tokens[{i}].name"),
                "must be 1-64 printable characters (it is recorded as the actor)",
            ));
        }
        // The secret itself never appears in an error or a log.
        if token.token.len() < MIN_TOKEN_LEN || !token.token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ConfigError::new(
                format!("admin.tokens[{i}].token"),
                format!("must be at least {MIN_TOKEN_LEN} printable ASCII characters without spaces"),
            ));
        }
        if tokens.iter().any(|(other, _)| *other == name) {
            return Err(ConfigError::new(
                format!("admin.tokens[{i}].name"),
                format!("{name:?} is used twice"),
            ));
        }
        if tokens.iter().any(|(_, other)| *other == token.token) {
            return Err(ConfigError::new(
                format!("admin.tokens[{i}].token"),
                "is the same as another token's",
            ));
        }
        tokens.push((name, token.token));
    }
    let url = raw.registration_url;
    if !(url.starts_with("https://") || url.starts_with("http://"))
        || url.contains(|c: char| c.is_whitespace() || c.is_control())
    {
        return Err(ConfigError::new(
            "admin.registration_url",
            format!("{url:?} must be an absolute http(s) URL without spaces"),
        ));
    }
    Ok(AdminConfig {
        prefix,
        tokens,
        registration_url: url,
        invitation_subject: raw
            .invitation_subject
            .unwrap_or_else(|| DEFAULT_INVITATION_SUBJECT.to_string()),
        invitation_body: raw
            .invitation_body
            .unwrap_or_else(|| DEFAULT_INVITATION_BODY.to_string()),
    })
}

fn compile_namespace(namespace: Option<String>) -> Result<String, ConfigError> {
    let namespace = namespace.unwrap_or_else(|| DEFAULT_NAMESPACE.to_string());
    let valid = !namespace.is_empty()
        && namespace.len() <= 64
        && namespace
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if !valid {
        return Err(ConfigError::new(
            "namespace",
            format!("{namespace:?} must be 1-64 characters of a-z, 0-9, '_' or '-' (it names Kong's shm_kv zone)"),
        ));
    }
    Ok(namespace)
}

fn compile_identity(raw: Option<RawIdentity>) -> Result<IdentitySource, ConfigError> {
    let raw = raw.unwrap_or(RawIdentity {
        source: IdentityKind::Header,
        header: None,
        claim: None,
    });
    match raw.source {
        IdentityKind::Header => {
            if raw.claim.is_some() {
                return Err(ConfigError::new(
                    "identity.claim",
                    "only applies when identity.source is \"jwt_payload\"",
                ));
            }
            let name = compile_header_name("identity.header", raw.header, DEFAULT_IDENTITY_HEADER)?;
            Ok(IdentitySource::Header { name })
        }
        IdentityKind::JwtPayload => {
            let header = compile_header_name("identity.header", raw.header, DEFAULT_JWT_PAYLOAD_HEADER)?;
            let claim = raw.claim.unwrap_or_else(|| DEFAULT_JWT_CLAIM.to_string());
            if claim.is_empty() {
                return Err(ConfigError::new("identity.claim", "must not be empty"));
            }
            Ok(IdentitySource::JwtPayload { header, claim })
        }
    }
}

fn compile_header_name(field: &str, name: Option<String>, default: &str) -> Result<String, ConfigError> {
    let name = name.unwrap_or_else(|| default.to_string()).to_ascii_lowercase();
    let is_token = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !is_token {
        return Err(ConfigError::new(
            field,
            format!("{name:?} is not a valid HTTP header name"),
        ));
    }
    if name == DEVELOPER_EMAIL_HEADER || name == DEVELOPER_STATUS_HEADER {
        return Err(ConfigError::new(
            field,
            format!("{name:?} is the header the gate itself sets for the upstream; identity must come from another"),
        ));
    }
    Ok(name)
}

fn compile_routes(raw_routes: Vec<RawRoute>, unmatched: Option<RawUnmatched>) -> Result<RouteTable, ConfigError> {
    let mut routes: Vec<Route> = Vec::with_capacity(raw_routes.len());
    for (i, raw) in raw_routes.into_iter().enumerate() {
        let field = format!("routes[{i}]");
        let path = match (raw.exact, raw.prefix) {
            (Some(exact), None) => PathMatch::Exact(compile_route_path(&format!("{field}.exact"), exact)?),
            (None, Some(prefix)) => PathMatch::prefix(&compile_route_path(&format!("{field}.prefix"), prefix)?),
            _ => return Err(ConfigError::new(field, "needs exactly one of \"exact\" or \"prefix\"")),
        };
        let methods = raw
            .methods
            .map(|methods| compile_methods(&format!("{field}.methods"), methods))
            .transpose()?;
        let route = Route {
            path,
            methods,
            class: raw.class.into(),
        };
        if let Some(earlier) = routes.iter().position(|earlier| earlier.shadows(&route)) {
            return Err(ConfigError::new(
                field,
                format!("can never match: routes[{earlier}] comes first and takes every request it would"),
            ));
        }
        routes.push(route);
    }
    let unmatched = match unmatched.unwrap_or(RawUnmatched::Deny) {
        RawUnmatched::Deny => Unmatched::Deny,
        RawUnmatched::Public => Unmatched::Treat(RouteClass::Public),
        RawUnmatched::Portal => Unmatched::Treat(RouteClass::Portal),
        RawUnmatched::Credentials => Unmatched::Treat(RouteClass::Credentials),
        RawUnmatched::Api => Unmatched::Treat(RouteClass::Api),
    };
    Ok(RouteTable::new(routes, unmatched))
}

/// A route path must be what normalization produces, or it could never match.
fn compile_route_path(field: &str, path: String) -> Result<String, ConfigError> {
    if path.contains(['?', '#']) {
        return Err(ConfigError::new(
            field,
            format!("{path:?} must be a path without query or fragment"),
        ));
    }
    let normalized = path::normalize(&path).map_err(|e| ConfigError::new(field, format!("{path:?}: {e}")))?;
    if normalized.path != path.as_str() {
        return Err(ConfigError::new(
            field,
            format!(
                "{path:?} is not in normalized form, so no request could match it; write {:?}",
                normalized.path
            ),
        ));
    }
    Ok(path)
}

fn compile_methods(field: &str, methods: Vec<String>) -> Result<Vec<String>, ConfigError> {
    if methods.is_empty() {
        return Err(ConfigError::new(
            field,
            "must not be empty: leave \"methods\" out to match every method",
        ));
    }
    for (i, method) in methods.iter().enumerate() {
        if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase() || b == b'-' || b == b'_') {
            return Err(ConfigError::new(
                format!("{field}[{i}]"),
                format!("{method:?} is not an upper-case HTTP method (methods are case-sensitive)"),
            ));
        }
        if methods.iter().take(i).any(|m| m == method) {
            return Err(ConfigError::new(
                format!("{field}[{i}]"),
                format!("{method:?} is listed twice"),
            ));
        }
    }
    Ok(methods)
}

fn compile_denials(raw: RawDenials, routes: &RouteTable) -> Result<(Responses, bool), ConfigError> {
    let style = match raw.style.unwrap_or(RawStyle::DevportalGate) {
        RawStyle::DevportalGate => DenialStyle::DevportalGate,
        RawStyle::KongEnterprise => DenialStyle::KongEnterprise,
    };
    let html = raw.html_for_browsers.unwrap_or(true);
    let redirects = raw.browser_redirects.unwrap_or_default();
    let mut redirect_for: HashMap<Refusal, String> = HashMap::new();
    for (name, refusal, target) in [
        ("unauthenticated", Refusal::Unauthenticated, redirects.unauthenticated),
        (
            "requested",
            Refusal::NotApproved(Status::Requested),
            redirects.requested,
        ),
        ("rejected", Refusal::NotApproved(Status::Rejected), redirects.rejected),
        ("revoked", Refusal::NotApproved(Status::Revoked), redirects.revoked),
        ("unknown", Refusal::UnknownDeveloper, redirects.unknown),
    ] {
        if let Some(target) = target {
            let field = format!("denials.browser_redirects.{name}");
            redirect_for.insert(refusal, compile_redirect(&field, target, routes)?);
        }
    }
    let has_browser_answers = html || !redirect_for.is_empty();
    let responses = Responses::render(style, |refusal| {
        if let Some(location) = redirect_for.get(&refusal) {
            return Some(BrowserAnswer::Redirect(location.clone()));
        }
        let developer_facing = matches!(
            refusal,
            Refusal::Unauthenticated | Refusal::NotApproved(_) | Refusal::UnknownDeveloper | Refusal::Expired
        );
        (html && developer_facing).then_some(BrowserAnswer::Html)
    });
    Ok((responses, has_browser_answers))
}

/// A redirect goes to an absolute http(s) URL, or to a local path that is public
/// (a protected target would send the browser round in a loop).
fn compile_redirect(field: &str, target: String, routes: &RouteTable) -> Result<String, ConfigError> {
    if target.is_empty() || target.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ConfigError::new(
            field,
            format!("{target:?} must be a URL without spaces or control characters"),
        ));
    }
    if target.starts_with("https://") || target.starts_with("http://") {
        return Ok(target);
    }
    if !target.starts_with('/') || target.starts_with("//") {
        return Err(ConfigError::new(
            field,
            format!("{target:?} must be an absolute http(s) URL or a path starting with '/'"),
        ));
    }
    let normalized = path::normalize(&target).map_err(|e| ConfigError::new(field, format!("{target:?}: {e}")))?;
    if routes.classify(&normalized.path, "GET") != Classification::Class(RouteClass::Public) {
        return Err(ConfigError::new(
            field,
            format!("{target:?} is not a public route, so the redirect would be refused in turn; make it public"),
        ));
    }
    Ok(target)
}

fn compile_developers(raw: Vec<RawDeveloper>) -> Result<Vec<(String, Status)>, ConfigError> {
    let mut seen: HashMap<String, usize> = HashMap::with_capacity(raw.len());
    let mut developers = Vec::with_capacity(raw.len());
    for (i, developer) in raw.into_iter().enumerate() {
        let email = canonical_email(&developer.email)
            .map_err(|e| ConfigError::new(format!("developers[{i}].email"), format!("{:?} {e}", developer.email)))?;
        if let Some(first) = seen.insert(email.clone(), i) {
            return Err(ConfigError::new(
                format!("developers[{i}].email"),
                format!("{email:?} is already listed at developers[{first}] (addresses compare case-insensitively)"),
            ));
        }
        developers.push((email, developer.status.0));
    }
    Ok(developers)
}
