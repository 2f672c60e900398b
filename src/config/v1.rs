//! Version 1 of the configuration's shape, as serde reads it: every object
//! refuses unknown fields. `compile` gives it meaning. A version 2 is a new
//! module beside this one and a variant of `Versioned`, not branches in here.

use serde::Deserialize;

use crate::directory::StatusInput;
pub(super) use crate::encoding::json_path::StringOrList;
use crate::request::routes::RouteClass;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) config_version: u64,
    #[serde(default)]
    pub(super) namespace: Option<String>,
    #[serde(default)]
    pub(super) identity: Option<RawIdentity>,
    pub(super) routes: Vec<RawRoute>,
    #[serde(default)]
    pub(super) unmatched: Option<RawUnmatched>,
    #[serde(default)]
    pub(super) denials: Option<RawDenials>,
    #[serde(default)]
    pub(super) developers: Vec<RawDeveloper>,
    #[serde(default)]
    pub(super) directory: Option<RawDirectory>,
    #[serde(default)]
    pub(super) admin: Option<RawAdmin>,
    #[serde(default)]
    pub(super) unknown_developers: Option<RawUnknownDevelopers>,
    #[serde(default)]
    pub(super) metrics: Option<bool>,
    #[serde(default)]
    pub(super) registration: Option<RawRegistration>,
    #[serde(default)]
    pub(super) events: Option<RawEvents>,
    #[serde(default)]
    pub(super) approvals: Option<RawApprovals>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEvents {
    #[serde(default)]
    pub(super) secrets: Vec<String>,
    pub(super) sinks: Vec<RawSink>,
    #[serde(default)]
    pub(super) retry_initial_ms: Option<u64>,
    #[serde(default)]
    pub(super) retry_max_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSink {
    pub(super) name: String,
    pub(super) upstream: String,
    #[serde(default)]
    pub(super) authority: Option<String>,
    pub(super) path: String,
    #[serde(default)]
    pub(super) types: Option<Vec<String>>,
    #[serde(default)]
    pub(super) timeout_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRegistration {
    #[serde(default)]
    pub(super) per_minute: Option<u32>,
    #[serde(default)]
    pub(super) max_pending: Option<u32>,
    #[serde(default)]
    pub(super) rules: Vec<RawRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRule {
    pub(super) name: String,
    #[serde(rename = "match")]
    pub(super) matching: RawMatch,
    pub(super) outcome: StatusInput,
    #[serde(default)]
    pub(super) expires_in: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMatch {
    #[serde(default)]
    pub(super) domain: Option<String>,
    #[serde(default)]
    pub(super) include_subdomains: bool,
    #[serde(default)]
    pub(super) claims: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawApprovals {
    #[serde(default)]
    pub(super) default_expires_in: Option<String>,
    #[serde(default)]
    pub(super) max_expires_in: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDirectory {
    pub(super) source: RawSource,
    #[serde(default)]
    pub(super) etcd: Option<RawEtcd>,
    #[serde(default)]
    pub(super) sync_interval_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(super) enum RawSource {
    Static,
    Etcd,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEtcd {
    /// One Envoy cluster (or Kong host:port), or several members to fail over
    /// between (what Kong needs, as it has no load balancing of its own).
    pub(super) upstream: StringOrList,
    /// Envoy only: a cluster speaking HTTP/2 to the same etcd, for range reads
    /// over etcd's gRPC API (`etcd::grpc`).
    #[serde(default)]
    pub(super) grpc_upstream: Option<String>,
    #[serde(default)]
    pub(super) authority: Option<String>,
    #[serde(default)]
    pub(super) key_prefix: Option<String>,
    #[serde(default)]
    pub(super) timeout_ms: Option<u64>,
    #[serde(default)]
    pub(super) change_log_retention_hours: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdmin {
    pub(super) prefix: String,
    pub(super) tokens: Vec<RawToken>,
    pub(super) registration_url: String,
    #[serde(default)]
    pub(super) invitation_subject: Option<String>,
    #[serde(default)]
    pub(super) invitation_body: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawToken {
    pub(super) name: String,
    pub(super) token: String,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(super) enum RawUnknownDevelopers {
    Deny,
    Request,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIdentity {
    pub(super) source: IdentityKind,
    #[serde(default)]
    pub(super) header: Option<String>,
    #[serde(default)]
    pub(super) claim: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(super) enum IdentityKind {
    Header,
    JwtPayload,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    #[serde(default)]
    pub(super) exact: Option<String>,
    #[serde(default)]
    pub(super) prefix: Option<String>,
    #[serde(default)]
    pub(super) methods: Option<Vec<String>>,
    pub(super) class: RawClass,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
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

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum RawUnmatched {
    Deny,
    Public,
    Portal,
    Credentials,
    Api,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDenials {
    #[serde(default)]
    pub(super) style: Option<RawStyle>,
    #[serde(default)]
    pub(super) html_for_browsers: Option<bool>,
    #[serde(default)]
    pub(super) browser_redirects: Option<RawRedirects>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum RawStyle {
    DevportalGate,
    KongEnterprise,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRedirects {
    #[serde(default)]
    pub(super) unauthenticated: Option<String>,
    #[serde(default)]
    pub(super) requested: Option<String>,
    #[serde(default)]
    pub(super) rejected: Option<String>,
    #[serde(default)]
    pub(super) revoked: Option<String>,
    #[serde(default)]
    pub(super) unknown: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDeveloper {
    pub(super) email: String,
    pub(super) status: StatusInput,
}
