//! Configuration in two phases: the JSON is read into the shape of the
//! configuration's version (`v1`, by `encoding::json_reader`; unknown fields refused
//! everywhere), then `compile` validates
//! its meaning and builds the immutable values the filter runs on: the
//! `request::gate::Gate` every HTTP context shares, the `directory::Directory`,
//! the `admin::AdminConfig`. Every error names the offending field.

use std::fmt;

use crate::admin::AdminConfig;
use crate::directory::{Directory, Status};
use crate::request::gate::Gate;

/// The newest schema version this build understands.
pub const CONFIG_VERSION: u64 = 1;

pub const DEFAULT_NAMESPACE: &str = "devportal";
pub const DEFAULT_IDENTITY_HEADER: &str = "x-consumer-username";
pub const DEFAULT_JWT_PAYLOAD_HEADER: &str = "x-jwt-payload";
pub const DEFAULT_JWT_CLAIM: &str = "email";

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

/// A shape error (`encoding::json_reader`): the field it names, and why.
impl From<crate::encoding::json_path::Located> for ConfigError {
    fn from(located: crate::encoding::json_path::Located) -> ConfigError {
        ConfigError::new(located.path, located.message)
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

pub const DEFAULT_ETCD_KEY_PREFIX: &str = "/devportal/";
pub const DEFAULT_ETCD_TIMEOUT_MS: u64 = 2000;
pub const DEFAULT_SYNC_INTERVAL_MS: u64 = 1000;
/// More than this many developers in configuration belong in etcd directly.
pub const MAX_ETCD_SEED: usize = 100;
pub const MIN_TOKEN_LEN: usize = 16;

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
    /// Status-change events: this worker is a candidate to deliver them.
    pub events: Option<crate::events::EventsConfig>,
    /// How long approvals last (admin API; registration rules).
    pub approvals: crate::directory::expiry::Approvals,
}

/// Parses and validates a configuration.
pub fn compile(bytes: &[u8]) -> Result<Config, ConfigError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ConfigError::new(
            "",
            "the filter needs a JSON configuration (see filter-config/ for examples), got none",
        ));
    }
    let value = crate::encoding::json_reader::parse(bytes)?;
    match Versioned::parse(&value)? {
        Versioned::V1(raw) => compile::compile_raw(raw),
    }
}

/// Every configuration version this build reads, each with its own shape. A
/// new version is a new variant (and module), converted or compiled on its own.
enum Versioned {
    V1(v1::RawConfig),
}

impl Versioned {
    fn parse(value: &serde_json::Value) -> Result<Versioned, ConfigError> {
        let version = match value.get("config_version") {
            None => {
                return Err(ConfigError::new(
                    "config_version",
                    "missing field `config_version` (this build reads version 1)",
                ))
            }
            Some(version) => version.as_u64().ok_or_else(|| {
                ConfigError::new("config_version", format!("must be a version number, got {version}"))
            })?,
        };
        match version {
            1 => Ok(Versioned::V1(v1::RawConfig::read(value)?)),
            other => Err(ConfigError::new(
                "config_version",
                format!("this build understands version {CONFIG_VERSION}, got {other}"),
            )),
        }
    }
}

mod compile;
#[cfg(test)]
mod tests;
mod v1;
