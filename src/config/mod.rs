//! Configuration in two phases: serde parses the shape (unknown fields refused
//! everywhere), then `compile` validates meaning and builds the immutable `Gate`
//! that HTTP contexts share. Every error names the offending field.

use std::collections::HashMap;
use std::fmt;

use serde::Deserialize;

use crate::directory::{Status, StatusInput};
use crate::request::email::canonical_email;
use crate::request::identity::IdentitySource;
use crate::request::path;
use crate::request::responses::{BrowserAnswer, DenialStyle, Refusal, Responses};
use crate::request::routes::{Classification, PathMatch, Route, RouteClass, RouteTable, Unmatched};

/// The schema version this build understands.
pub const CONFIG_VERSION: u64 = 1;

pub const DEFAULT_NAMESPACE: &str = "devportal";
pub const DEFAULT_IDENTITY_HEADER: &str = "x-consumer-username";
pub const DEFAULT_JWT_PAYLOAD_HEADER: &str = "x-jwt-payload";
pub const DEFAULT_JWT_CLAIM: &str = "email";

/// Headers the gate sets for the upstream; client copies are always removed.
pub const DEVELOPER_EMAIL_HEADER: &str = "x-developer-email";
pub const DEVELOPER_STATUS_HEADER: &str = "x-developer-status";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Where in the configuration, e.g. `routes[2].methods[0]`.
    pub field: String,
    pub message: String,
}

impl ConfigError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() || self.field == "." {
            write!(f, "invalid configuration: {}", self.message)
        } else {
            write!(f, "invalid configuration at `{}`: {}", self.field, self.message)
        }
    }
}

// ---- Phase 1: the shape ----------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    config_version: u64,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    identity: Option<RawIdentity>,
    routes: Vec<RawRoute>,
    #[serde(default)]
    unmatched: Option<RawUnmatched>,
    #[serde(default)]
    denials: Option<RawDenials>,
    #[serde(default)]
    developers: Vec<RawDeveloper>,
    #[serde(default)]
    directory: Option<RawDirectory>,
    #[serde(default)]
    admin: Option<RawAdmin>,
    #[serde(default)]
    unknown_developers: Option<RawUnknownDevelopers>,
    #[serde(default)]
    metrics: Option<bool>,
    #[serde(default)]
    registration: Option<RawRegistration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegistration {
    #[serde(default)]
    per_minute: Option<u32>,
    #[serde(default)]
    max_pending: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDirectory {
    source: RawSource,
    #[serde(default)]
    etcd: Option<RawEtcd>,
    #[serde(default)]
    sync_interval_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum RawSource {
    Static,
    Etcd,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEtcd {
    upstream: String,
    #[serde(default)]
    authority: Option<String>,
    #[serde(default)]
    key_prefix: Option<String>,
    #[serde(default)]
    timeout_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    prefix: String,
    tokens: Vec<RawToken>,
    registration_url: String,
    #[serde(default)]
    invitation_subject: Option<String>,
    #[serde(default)]
    invitation_body: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToken {
    name: String,
    token: String,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum RawUnknownDevelopers {
    Deny,
    Request,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIdentity {
    source: IdentityKind,
    #[serde(default)]
    header: Option<String>,
    #[serde(default)]
    claim: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum IdentityKind {
    Header,
    JwtPayload,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    #[serde(default)]
    exact: Option<String>,
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    methods: Option<Vec<String>>,
    class: RawClass,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum RawClass {
    Public,
    Portal,
    Credentials,
    Api,
}

impl From<RawClass> for RouteClass {
    fn from(raw: RawClass) -> RouteClass {
        match raw {
            RawClass::Public => RouteClass::Public,
            RawClass::Portal => RouteClass::Portal,
            RawClass::Credentials => RouteClass::Credentials,
            RawClass::Api => RouteClass::Api,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum RawUnmatched {
    Deny,
    Public,
    Portal,
    Credentials,
    Api,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDenials {
    #[serde(default)]
    style: Option<RawStyle>,
    #[serde(default)]
    html_for_browsers: Option<bool>,
    #[serde(default)]
    browser_redirects: Option<RawRedirects>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum RawStyle {
    DevportalGate,
    KongEnterprise,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRedirects {
    #[serde(default)]
    unauthenticated: Option<String>,
    #[serde(default)]
    requested: Option<String>,
    #[serde(default)]
    rejected: Option<String>,
    #[serde(default)]
    revoked: Option<String>,
    #[serde(default)]
    unknown: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDeveloper {
    email: String,
    status: StatusInput,
}

// ---- Phase 2: the meaning --------------------------------------------------

/// What every HTTP context needs, immutable after configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gate {
    pub namespace: String,
    pub identity: IdentitySource,
    pub routes: RouteTable,
    pub responses: Responses,
    /// Whether any refusal has a browser answer (skips reading `accept` otherwise).
    pub has_browser_answers: bool,
    /// `unknown_developers: request`: an unknown developer opening a portal page
    /// is registered as Requested.
    pub self_service: bool,
    /// How many such registrations are admitted (see `registration`).
    pub registration: crate::directory::registration::Limits,
}

/// Where the directory's truth lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Directory {
    /// The configuration's `developers`; the admin API is read-only.
    Static,
    Etcd(EtcdConfig),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdConfig {
    /// Envoy: a cluster name. Kong: host:port.
    pub upstream: String,
    /// The `:authority` of calls to etcd.
    pub authority: String,
    /// Every key of this directory starts with it, e.g. `/devportal/`.
    pub key_prefix: String,
    pub timeout_ms: u64,
    pub sync_interval_ms: u64,
}

pub const DEFAULT_ETCD_KEY_PREFIX: &str = "/devportal/";
pub const DEFAULT_ETCD_TIMEOUT_MS: u64 = 2000;
pub const DEFAULT_SYNC_INTERVAL_MS: u64 = 1000;
/// More than this many developers in configuration belong in etcd directly.
pub const MAX_ETCD_SEED: usize = 100;
pub const MIN_TOKEN_LEN: usize = 16;

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

pub const DEFAULT_INVITATION_SUBJECT: &str = "You are invited to our developer portal";
pub const DEFAULT_INVITATION_BODY: &str =
    "Hello,\n\nYou are invited to register on our developer portal: {registration_url}\n\nOnce an administrator approves your request, you can create credentials and call our APIs.";

/// A compiled configuration: the gate and the developers to seed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub gate: Gate,
    /// Canonical e-mails, unique. Static: the directory. etcd: created once.
    pub developers: Vec<(String, Status)>,
    pub directory: Directory,
    pub admin: Option<AdminConfig>,
    /// No routes: this configuration only serves the admin API. With a static
    /// directory it reads what the gate's configuration seeded and seeds nothing
    /// (seeding an empty list would remove every developer).
    pub admin_only: bool,
    /// Define and update the decision counters and sync metrics. Off for Kong
    /// 3.4-3.7, whose engine traps on every metric call.
    pub metrics: bool,
}

/// Parses and validates a configuration.
pub fn compile(bytes: &[u8]) -> Result<Config, ConfigError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ConfigError::new(
            "",
            "the filter needs a JSON configuration (see filter-config/ for examples), got none",
        ));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let raw: RawConfig = serde_path_to_error::deserialize(&mut deserializer)
        .map_err(|error| ConfigError::new(error.path().to_string(), error.inner().to_string()))?;
    deserializer
        .end()
        .map_err(|error| ConfigError::new("", error.to_string()))?;
    compile_raw(raw)
}

fn compile_registration(
    raw: Option<RawRegistration>,
    self_service: bool,
) -> Result<crate::directory::registration::Limits, ConfigError> {
    let Some(raw) = raw else {
        return Ok(crate::directory::registration::Limits::default());
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
    Ok(crate::directory::registration::Limits {
        per_minute,
        max_pending,
    })
}

fn compile_raw(raw: RawConfig) -> Result<Config, ConfigError> {
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
    let registration = compile_registration(raw.registration, self_service)?;
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
        },
        developers,
        directory,
        admin,
        admin_only,
        metrics: raw.metrics.unwrap_or(true),
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
            let upstream = etcd.upstream.trim().to_string();
            if upstream.is_empty() || upstream.contains(char::is_whitespace) {
                return Err(ConfigError::new(
                    "directory.etcd.upstream",
                    "must name the Envoy cluster (or, in Kong, the host:port) of etcd's client URL",
                ));
            }
            let authority = etcd.authority.unwrap_or_else(|| upstream.clone());
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
            Ok(Directory::Etcd(EtcdConfig {
                upstream,
                authority,
                key_prefix,
                timeout_ms,
                sync_interval_ms,
            }))
        }
    }
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
            Refusal::Unauthenticated | Refusal::NotApproved(_) | Refusal::UnknownDeveloper
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn base() -> serde_json::Value {
        json!({
            "config_version": 1,
            "routes": [
                {"exact": "/portal/login", "class": "public"},
                {"prefix": "/portal/", "class": "portal"},
                {"prefix": "/api/", "class": "api"}
            ],
            "developers": [{"email": "Alice@Example.com", "status": "approved"}, {"email": "bob@example.com", "status": 1}]
        })
    }

    fn compile_value(value: &serde_json::Value) -> Result<Config, ConfigError> {
        compile(value.to_string().as_bytes())
    }

    fn error_of(value: serde_json::Value) -> ConfigError {
        compile_value(&value).unwrap_err()
    }

    #[test]
    fn minimal_config_compiles_with_defaults() {
        let config = compile_value(&base()).unwrap();
        assert_eq!(config.gate.namespace, "devportal");
        assert_eq!(
            config.gate.identity,
            IdentitySource::Header {
                name: "x-consumer-username".into()
            }
        );
        assert_eq!(
            config.developers,
            vec![
                ("alice@example.com".to_string(), Status::Approved),
                ("bob@example.com".to_string(), Status::Requested)
            ]
        );
        assert_eq!(config.gate.routes.classify("/nowhere", "GET"), Classification::Unrouted);
    }

    #[test]
    fn unknown_fields_are_refused_with_their_path() {
        let mut config = base();
        config["routes"][1]["clas"] = json!("api");
        let error = error_of(config);
        assert_eq!(error.field, "routes[1].clas");
        assert!(error.message.contains("unknown field `clas`"), "{error}");
        let mut config = base();
        config["extra"] = json!(true);
        assert!(error_of(config).message.contains("unknown field `extra`"));
    }

    #[test]
    fn bad_statuses_are_refused() {
        for status in [json!("approve"), json!(4), json!(-1), json!(true), json!("APPROVED")] {
            let mut config = base();
            config["developers"][0]["status"] = status.clone();
            let error = error_of(config);
            assert_eq!(error.field, "developers[0].status", "{status}: {error}");
        }
        let mut config = base();
        config["developers"][0]["status"] = json!("pending");
        assert_eq!(compile_value(&config).unwrap().developers[0].1, Status::Requested);
    }

    #[test]
    fn duplicate_developers_are_refused_case_insensitively() {
        let mut config = base();
        config["developers"] = json!([{"email": "a@x.io", "status": 0}, {"email": " A@X.IO", "status": 3}]);
        let error = error_of(config);
        assert_eq!(error.field, "developers[1].email");
        assert!(error.message.contains("developers[0]"), "{error}");
    }

    #[test]
    fn invalid_emails_are_refused() {
        let mut config = base();
        config["developers"][1]["email"] = json!("not an email");
        assert_eq!(error_of(config).field, "developers[1].email");
    }

    #[test]
    fn invalid_header_names_are_refused() {
        for header in ["bad header", "", "x-consumer:username", "x-developer-email"] {
            let mut config = base();
            config["identity"] = json!({"source": "header", "header": header});
            assert_eq!(error_of(config).field, "identity.header", "{header}");
        }
        let mut config = base();
        config["identity"] = json!({"source": "header", "header": "X-Consumer-Username"});
        assert_eq!(
            compile_value(&config).unwrap().gate.identity,
            IdentitySource::Header {
                name: "x-consumer-username".into()
            }
        );
        let mut config = base();
        config["identity"] = json!({"source": "header", "claim": "email"});
        assert_eq!(error_of(config).field, "identity.claim");
        let mut config = base();
        config["identity"] = json!({"source": "cookie"});
        assert_eq!(error_of(config).field, "identity.source");
    }

    #[test]
    fn jwt_identity_defaults() {
        let mut config = base();
        config["identity"] = json!({"source": "jwt_payload"});
        assert_eq!(
            compile_value(&config).unwrap().gate.identity,
            IdentitySource::JwtPayload {
                header: "x-jwt-payload".into(),
                claim: "email".into()
            }
        );
    }

    #[test]
    fn empty_and_contradictory_routes_are_refused() {
        let mut config = base();
        config["routes"] = json!([]);
        assert_eq!(error_of(config).field, "routes");

        let mut config = base();
        config["routes"] = json!([{"class": "api"}]);
        assert_eq!(error_of(config).field, "routes[0]");

        let mut config = base();
        config["routes"] = json!([{"exact": "/a", "prefix": "/a", "class": "api"}]);
        assert_eq!(error_of(config).field, "routes[0]");

        // A public rule after a broader protected rule could never match.
        let mut config = base();
        config["routes"] =
            json!([{"prefix": "/portal", "class": "portal"}, {"exact": "/portal/login", "class": "public"}]);
        let error = error_of(config);
        assert_eq!(error.field, "routes[1]");
        assert!(error.message.contains("routes[0]"), "{error}");

        // The same rule twice, with and without trailing slash.
        let mut config = base();
        config["routes"] = json!([{"prefix": "/api/", "class": "api"}, {"prefix": "/api", "class": "public"}]);
        assert_eq!(error_of(config).field, "routes[1]");
    }

    #[test]
    fn route_paths_must_be_normalized() {
        for (path, field) in [
            ("/portal/../admin", "routes[0].prefix"),
            ("portal", "routes[0].prefix"),
            ("/a//b", "routes[0].prefix"),
            ("/a;b", "routes[0].prefix"),
            ("/a?b", "routes[0].prefix"),
            ("/%61pi", "routes[0].prefix"),
        ] {
            let mut config = base();
            config["routes"] = json!([{"prefix": path, "class": "api"}]);
            assert_eq!(error_of(config).field, field, "{path}");
        }
    }

    #[test]
    fn methods_are_validated() {
        for (methods, field) in [
            (json!([]), "routes[0].methods"),
            (json!(["get"]), "routes[0].methods[0]"),
            (json!(["POST", "POST"]), "routes[0].methods[1]"),
            (json!(["PO ST"]), "routes[0].methods[0]"),
        ] {
            let mut config = base();
            config["routes"] = json!([{"prefix": "/api", "methods": methods, "class": "api"}]);
            assert_eq!(error_of(config).field, field);
        }
    }

    #[test]
    fn redirects_must_be_public_or_absolute() {
        let mut config = base();
        config["denials"] = json!({"browser_redirects": {"requested": "/portal/pending"}});
        let error = error_of(config);
        assert_eq!(error.field, "denials.browser_redirects.requested");
        assert!(error.message.contains("not a public route"), "{error}");

        let mut config = base();
        config["denials"] =
            json!({"browser_redirects": {"requested": "/portal/login", "revoked": "https://example.com/help"}});
        assert!(compile_value(&config).is_ok());

        for bad in ["javascript:alert(1)", "//evil.example", "/portal/login\r\nx: y", ""] {
            let mut config = base();
            config["denials"] = json!({"browser_redirects": {"revoked": bad}});
            assert_eq!(error_of(config).field, "denials.browser_redirects.revoked", "{bad}");
        }
    }

    #[test]
    fn version_and_namespace_are_checked() {
        let mut config = base();
        config["config_version"] = json!(2);
        assert_eq!(error_of(config).field, "config_version");
        let mut config = base();
        config.as_object_mut().unwrap().remove("config_version");
        assert!(error_of(config).message.contains("config_version"));
        for namespace in ["", "Dev", "a/b", "dev portal"] {
            let mut config = base();
            config["namespace"] = json!(namespace);
            assert_eq!(error_of(config).field, "namespace");
        }
    }

    #[test]
    fn not_json_at_all() {
        assert!(compile(b"").unwrap_err().message.contains("needs a JSON configuration"));
        assert!(compile(b"{").is_err());
        assert!(compile(b"[]").is_err());
        let mut text = base().to_string();
        text.push_str(" {}");
        assert!(compile(text.as_bytes()).is_err());
    }

    #[test]
    fn etcd_directory_admin_and_self_service() {
        let mut value = base();
        value["directory"] = json!({"source": "etcd", "etcd": {"upstream": "etcd"}});
        value["unknown_developers"] = json!("request");
        value["admin"] = json!({"prefix": "/_dp", "registration_url": "https://portal.example.com/register", "tokens": [{"name": "ops", "token": "0123456789abcdef"}]});
        let config = compile_value(&value).unwrap();
        let Directory::Etcd(etcd) = &config.directory else {
            panic!("etcd expected")
        };
        assert_eq!(
            (etcd.authority.as_str(), etcd.key_prefix.as_str(), etcd.sync_interval_ms),
            ("etcd", "/devportal/", 1000)
        );
        assert!(config.gate.self_service);
        assert_eq!(
            config.admin.unwrap().tokens,
            vec![("ops".to_string(), "0123456789abcdef".to_string())]
        );

        let cases = [
            (json!({"unknown_developers": "request"}), "unknown_developers"),
            (json!({"directory": {"source": "etcd"}}), "directory.etcd"),
            (
                json!({"directory": {"source": "etcd", "etcd": {"upstream": "etcd", "timeout_ms": 1}}}),
                "directory.etcd.timeout_ms",
            ),
            (
                json!({"directory": {"source": "etcd", "etcd": {"upstream": "etcd", "key_prefix": "/x"}}}),
                "directory.etcd.key_prefix",
            ),
            (
                json!({"directory": {"source": "static", "sync_interval_ms": 500}}),
                "directory.sync_interval_ms",
            ),
            (
                json!({"admin": {"prefix": "/_dp", "registration_url": "https://x.io", "tokens": [{"name": "a", "token": "short"}]}}),
                "admin.tokens[0].token",
            ),
            (
                json!({"admin": {"prefix": "/_dp", "registration_url": "ftp://x.io", "tokens": [{"name": "a", "token": "0123456789abcdef"}]}}),
                "admin.registration_url",
            ),
            (
                json!({"admin": {"prefix": "/_dp", "registration_url": "https://x.io", "tokens": [{"name": "a", "token": "0123456789abcdef"}, {"name": "a", "token": "0123456789abcdeg"}]}}),
                "admin.tokens[1].name",
            ),
        ];
        for (patch, field) in cases {
            let mut value = base();
            for (key, entry) in patch.as_object().unwrap() {
                value[key] = entry.clone();
            }
            let error = error_of(value);
            assert_eq!(error.field, field, "{error}");
            assert!(
                !error.to_string().contains("0123456789abcdef"),
                "secrets stay out of errors: {error}"
            );
        }
        let mut admin_only = base();
        admin_only["routes"] = json!([]);
        assert_eq!(error_of(admin_only.clone()).field, "routes");
        admin_only["admin"] = value["admin"].clone();
        assert_eq!(
            error_of(admin_only.clone()).field,
            "developers",
            "a static admin-only config must not seed"
        );
        admin_only.as_object_mut().unwrap().remove("developers");
        let config = compile_value(&admin_only).unwrap();
        assert!(config.admin_only);
    }
}
