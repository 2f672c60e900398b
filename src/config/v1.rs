//! Version 1 of the configuration's shape, read from its JSON value
//! (`reader`): every object refuses unknown fields. `compile` gives it
//! meaning. A version 2 is a new module beside this one and a variant of
//! `Versioned`, not branches in here.

use serde_json::Value;

use crate::directory::status::read_status as status;
use crate::directory::StatusInput;
pub(super) use crate::encoding::json_reader::StringOrList;
use crate::encoding::json_reader::{choice, list, map, string_or_list, strings, unsigned, Error, Object};
use crate::request::routes::RouteClass;

#[derive(Debug)]
pub(super) struct RawConfig {
    pub(super) config_version: u64,
    pub(super) namespace: Option<String>,
    pub(super) identity: Option<RawIdentity>,
    pub(super) routes: Vec<RawRoute>,
    pub(super) unmatched: Option<RawUnmatched>,
    pub(super) denials: Option<RawDenials>,
    pub(super) developers: Vec<RawDeveloper>,
    pub(super) directory: Option<RawDirectory>,
    pub(super) admin: Option<RawAdmin>,
    pub(super) unknown_developers: Option<RawUnknownDevelopers>,
    pub(super) metrics: Option<bool>,
    pub(super) registration: Option<RawRegistration>,
    pub(super) events: Option<RawEvents>,
    pub(super) approvals: Option<RawApprovals>,
}

#[derive(Debug)]
pub(super) struct RawEvents {
    pub(super) secrets: Vec<String>,
    pub(super) sinks: Vec<RawSink>,
    pub(super) retry_initial_ms: Option<u64>,
    pub(super) retry_max_ms: Option<u64>,
}

#[derive(Debug)]
pub(super) struct RawSink {
    pub(super) name: String,
    pub(super) upstream: String,
    pub(super) authority: Option<String>,
    pub(super) path: String,
    pub(super) types: Option<Vec<String>>,
    pub(super) timeout_ms: Option<u64>,
}

#[derive(Debug)]
pub(super) struct RawRegistration {
    pub(super) per_minute: Option<u32>,
    pub(super) max_pending: Option<u32>,
    pub(super) rules: Vec<RawRule>,
}

#[derive(Debug)]
pub(super) struct RawRule {
    pub(super) name: String,
    pub(super) matching: RawMatch,
    pub(super) outcome: StatusInput,
    pub(super) expires_in: Option<String>,
}

#[derive(Debug)]
pub(super) struct RawMatch {
    pub(super) domain: Option<String>,
    pub(super) include_subdomains: bool,
    pub(super) claims: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug)]
pub(super) struct RawApprovals {
    pub(super) default_expires_in: Option<String>,
    pub(super) max_expires_in: Option<String>,
}

#[derive(Debug)]
pub(super) struct RawDirectory {
    pub(super) source: RawSource,
    pub(super) etcd: Option<RawEtcd>,
    pub(super) sync_interval_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RawSource {
    Static,
    Etcd,
}

#[derive(Debug)]
pub(super) struct RawEtcd {
    /// One Envoy cluster (or Kong host:port), or several members to fail over
    /// between (what Kong needs, as it has no load balancing of its own).
    pub(super) upstream: StringOrList,
    /// Envoy only: a cluster speaking HTTP/2 to the same etcd, for range reads
    /// over etcd's gRPC API (`etcd::grpc`).
    pub(super) grpc_upstream: Option<String>,
    pub(super) authority: Option<String>,
    pub(super) key_prefix: Option<String>,
    pub(super) timeout_ms: Option<u64>,
    pub(super) change_log_retention_hours: Option<u64>,
}

#[derive(Debug)]
pub(super) struct RawAdmin {
    pub(super) prefix: String,
    pub(super) tokens: Vec<RawToken>,
    pub(super) registration_url: String,
    pub(super) invitation_subject: Option<String>,
    pub(super) invitation_body: Option<String>,
}

#[derive(Debug)]
pub(super) struct RawToken {
    pub(super) name: String,
    pub(super) token: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RawUnknownDevelopers {
    Deny,
    Request,
}

#[derive(Debug)]
pub(super) struct RawIdentity {
    pub(super) source: IdentityKind,
    pub(super) header: Option<String>,
    pub(super) claim: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum IdentityKind {
    Header,
    JwtPayload,
}

#[derive(Debug)]
pub(super) struct RawRoute {
    pub(super) exact: Option<String>,
    pub(super) prefix: Option<String>,
    pub(super) methods: Option<Vec<String>>,
    pub(super) class: RawClass,
}

#[derive(Debug, Clone, Copy)]
pub(super) enum RawClass {
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

#[derive(Debug, Clone, Copy)]
pub(super) enum RawUnmatched {
    Deny,
    Public,
    Portal,
    Credentials,
    Api,
}

#[derive(Debug, Default)]
pub(super) struct RawDenials {
    pub(super) style: Option<RawStyle>,
    pub(super) html_for_browsers: Option<bool>,
    pub(super) browser_redirects: Option<RawRedirects>,
}

#[derive(Debug, Clone, Copy)]
pub(super) enum RawStyle {
    DevportalGate,
    KongEnterprise,
}

#[derive(Debug, Default)]
pub(super) struct RawRedirects {
    pub(super) unauthenticated: Option<String>,
    pub(super) requested: Option<String>,
    pub(super) rejected: Option<String>,
    pub(super) revoked: Option<String>,
    pub(super) unknown: Option<String>,
}

#[derive(Debug)]
pub(super) struct RawDeveloper {
    pub(super) email: String,
    pub(super) status: StatusInput,
}

impl RawConfig {
    pub(super) fn read(value: &Value) -> Result<RawConfig, Error> {
        let object = Object::new(
            value,
            "",
            &[
                "config_version",
                "namespace",
                "identity",
                "routes",
                "unmatched",
                "denials",
                "developers",
                "directory",
                "admin",
                "unknown_developers",
                "metrics",
                "registration",
                "events",
                "approvals",
            ],
        )?;
        Ok(RawConfig {
            config_version: object.required("config_version", unsigned)?,
            namespace: object.string("namespace")?,
            identity: object.optional("identity", RawIdentity::read)?,
            routes: object.required("routes", |value, path| list(value, path, RawRoute::read))?,
            unmatched: object.choice(
                "unmatched",
                &[
                    ("deny", RawUnmatched::Deny),
                    ("public", RawUnmatched::Public),
                    ("portal", RawUnmatched::Portal),
                    ("credentials", RawUnmatched::Credentials),
                    ("api", RawUnmatched::Api),
                ],
            )?,
            denials: object.optional("denials", RawDenials::read)?,
            developers: object
                .optional("developers", |value, path| list(value, path, RawDeveloper::read))?
                .unwrap_or_default(),
            directory: object.optional("directory", RawDirectory::read)?,
            admin: object.optional("admin", RawAdmin::read)?,
            unknown_developers: object.choice(
                "unknown_developers",
                &[
                    ("deny", RawUnknownDevelopers::Deny),
                    ("request", RawUnknownDevelopers::Request),
                ],
            )?,
            metrics: object.bool("metrics")?,
            registration: object.optional("registration", RawRegistration::read)?,
            events: object.optional("events", RawEvents::read)?,
            approvals: object.optional("approvals", RawApprovals::read)?,
        })
    }
}

impl RawEvents {
    fn read(value: &Value, path: &str) -> Result<RawEvents, Error> {
        let object = Object::new(value, path, &["secrets", "sinks", "retry_initial_ms", "retry_max_ms"])?;
        Ok(RawEvents {
            secrets: object.optional("secrets", strings)?.unwrap_or_default(),
            sinks: object.required("sinks", |value, path| list(value, path, RawSink::read))?,
            retry_initial_ms: object.u64("retry_initial_ms")?,
            retry_max_ms: object.u64("retry_max_ms")?,
        })
    }
}

impl RawSink {
    fn read(value: &Value, path: &str) -> Result<RawSink, Error> {
        let object = Object::new(
            value,
            path,
            &["name", "upstream", "authority", "path", "types", "timeout_ms"],
        )?;
        Ok(RawSink {
            name: object.required_string("name")?,
            upstream: object.required_string("upstream")?,
            authority: object.string("authority")?,
            path: object.required_string("path")?,
            types: object.optional("types", strings)?,
            timeout_ms: object.u64("timeout_ms")?,
        })
    }
}

impl RawRegistration {
    fn read(value: &Value, path: &str) -> Result<RawRegistration, Error> {
        let object = Object::new(value, path, &["per_minute", "max_pending", "rules"])?;
        Ok(RawRegistration {
            per_minute: object.u32("per_minute")?,
            max_pending: object.u32("max_pending")?,
            rules: object
                .optional("rules", |value, path| list(value, path, RawRule::read))?
                .unwrap_or_default(),
        })
    }
}

impl RawRule {
    fn read(value: &Value, path: &str) -> Result<RawRule, Error> {
        let object = Object::new(value, path, &["name", "match", "outcome", "expires_in"])?;
        Ok(RawRule {
            name: object.required_string("name")?,
            matching: object.required("match", RawMatch::read)?,
            outcome: object.required("outcome", status)?,
            expires_in: object.string("expires_in")?,
        })
    }
}

impl RawMatch {
    fn read(value: &Value, path: &str) -> Result<RawMatch, Error> {
        let object = Object::new(value, path, &["domain", "include_subdomains", "claims"])?;
        Ok(RawMatch {
            domain: object.string("domain")?,
            include_subdomains: object.bool("include_subdomains")?.unwrap_or_default(),
            claims: object.optional("claims", map)?.unwrap_or_default(),
        })
    }
}

impl RawApprovals {
    fn read(value: &Value, path: &str) -> Result<RawApprovals, Error> {
        let object = Object::new(value, path, &["default_expires_in", "max_expires_in"])?;
        Ok(RawApprovals {
            default_expires_in: object.string("default_expires_in")?,
            max_expires_in: object.string("max_expires_in")?,
        })
    }
}

impl RawDirectory {
    fn read(value: &Value, path: &str) -> Result<RawDirectory, Error> {
        let object = Object::new(value, path, &["source", "etcd", "sync_interval_ms"])?;
        Ok(RawDirectory {
            source: object.required("source", |value, path| {
                choice(value, path, &[("static", RawSource::Static), ("etcd", RawSource::Etcd)])
            })?,
            etcd: object.optional("etcd", RawEtcd::read)?,
            sync_interval_ms: object.u64("sync_interval_ms")?,
        })
    }
}

impl RawEtcd {
    fn read(value: &Value, path: &str) -> Result<RawEtcd, Error> {
        let object = Object::new(
            value,
            path,
            &[
                "upstream",
                "grpc_upstream",
                "authority",
                "key_prefix",
                "timeout_ms",
                "change_log_retention_hours",
            ],
        )?;
        Ok(RawEtcd {
            upstream: object.required("upstream", string_or_list)?,
            grpc_upstream: object.string("grpc_upstream")?,
            authority: object.string("authority")?,
            key_prefix: object.string("key_prefix")?,
            timeout_ms: object.u64("timeout_ms")?,
            change_log_retention_hours: object.u64("change_log_retention_hours")?,
        })
    }
}

impl RawAdmin {
    fn read(value: &Value, path: &str) -> Result<RawAdmin, Error> {
        let object = Object::new(
            value,
            path,
            &[
                "prefix",
                "tokens",
                "registration_url",
                "invitation_subject",
                "invitation_body",
            ],
        )?;
        Ok(RawAdmin {
            prefix: object.required_string("prefix")?,
            tokens: object.required("tokens", |value, path| list(value, path, RawToken::read))?,
            registration_url: object.required_string("registration_url")?,
            invitation_subject: object.string("invitation_subject")?,
            invitation_body: object.string("invitation_body")?,
        })
    }
}

impl RawToken {
    fn read(value: &Value, path: &str) -> Result<RawToken, Error> {
        let object = Object::new(value, path, &["name", "token"])?;
        Ok(RawToken {
            name: object.required_string("name")?,
            token: object.required_string("token")?,
        })
    }
}

impl RawIdentity {
    fn read(value: &Value, path: &str) -> Result<RawIdentity, Error> {
        let object = Object::new(value, path, &["source", "header", "claim"])?;
        Ok(RawIdentity {
            source: object.required("source", |value, path| {
                choice(
                    value,
                    path,
                    &[
                        ("header", IdentityKind::Header),
                        ("jwt_payload", IdentityKind::JwtPayload),
                    ],
                )
            })?,
            header: object.string("header")?,
            claim: object.string("claim")?,
        })
    }
}

impl RawRoute {
    fn read(value: &Value, path: &str) -> Result<RawRoute, Error> {
        let object = Object::new(value, path, &["exact", "prefix", "methods", "class"])?;
        Ok(RawRoute {
            exact: object.string("exact")?,
            prefix: object.string("prefix")?,
            methods: object.optional("methods", strings)?,
            class: object.required("class", |value, path| {
                choice(
                    value,
                    path,
                    &[
                        ("public", RawClass::Public),
                        ("portal", RawClass::Portal),
                        ("credentials", RawClass::Credentials),
                        ("api", RawClass::Api),
                    ],
                )
            })?,
        })
    }
}

impl RawDenials {
    fn read(value: &Value, path: &str) -> Result<RawDenials, Error> {
        let object = Object::new(value, path, &["style", "html_for_browsers", "browser_redirects"])?;
        Ok(RawDenials {
            style: object.choice(
                "style",
                &[
                    ("devportal_gate", RawStyle::DevportalGate),
                    ("kong_enterprise", RawStyle::KongEnterprise),
                ],
            )?,
            html_for_browsers: object.bool("html_for_browsers")?,
            browser_redirects: object.optional("browser_redirects", RawRedirects::read)?,
        })
    }
}

impl RawRedirects {
    fn read(value: &Value, path: &str) -> Result<RawRedirects, Error> {
        let object = Object::new(
            value,
            path,
            &["unauthenticated", "requested", "rejected", "revoked", "unknown"],
        )?;
        Ok(RawRedirects {
            unauthenticated: object.string("unauthenticated")?,
            requested: object.string("requested")?,
            rejected: object.string("rejected")?,
            revoked: object.string("revoked")?,
            unknown: object.string("unknown")?,
        })
    }
}

impl RawDeveloper {
    fn read(value: &Value, path: &str) -> Result<RawDeveloper, Error> {
        let object = Object::new(value, path, &["email", "status"])?;
        Ok(RawDeveloper {
            email: object.required_string("email")?,
            status: object.required("status", status)?,
        })
    }
}
