//! Status-change events: what they are, where they come from, how they are
//! signed and delivered.
//!
//! **Where they come from.** Every change the filter writes to etcd (an admin
//! action, a creation, a self-registration, a deletion) also writes one entry of
//! a change log, `<prefix>events/<time>-<operation>-<email>`, in the same transaction:
//! the entry exists if and only if the change committed, and its
//! `create_revision` is the change's revision. A change written straight into
//! etcd by another tool has no log entry; the deliverer finds it as a developer
//! key whose `mod_revision` no entry has, and makes its event from the value
//! before and after (`deliverer`).
//!
//! **What an event is.** A CloudEvents 1.0 structured JSON body whose `id` is
//! `<revision>-<email>`: the same on every gateway for the same change, so a
//! receiver can drop a repeat. Signed as Standard Webhooks 1.0 asks (`sign`).
//!
//! **Retention.** Every gateway's syncer deletes log entries older than
//! `directory.etcd.change_log_retention_hours` (`prunable`), once an hour, so
//! the log stays bounded whether or not anyone delivers it. A sink down for
//! longer than that misses the events that were deleted.

pub mod deliverer;
pub mod sign;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::directory::developer::Developer;
use crate::directory::Status;
use crate::encoding::clock::rfc3339;

/// The configuration's `events`, compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventsConfig {
    /// Every event is signed with each (Standard Webhooks' rotation).
    pub secrets: Vec<sign::Secret>,
    pub sinks: Vec<SinkConfig>,
    pub retry_initial_ms: u64,
    pub retry_max_ms: u64,
}

/// Where one receiver is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkConfig {
    /// Names its position in etcd: `<prefix>delivery/sinks/<name>`.
    pub name: String,
    /// Envoy: a cluster. Kong: host:port.
    pub upstream: String,
    pub authority: String,
    pub path: String,
    /// The event types it gets; empty: all.
    pub types: Vec<String>,
    pub timeout_ms: u64,
}

/// One status change as the log keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub email: String,
    /// `None`: a registration (the developer did not exist).
    pub from: Option<Status>,
    /// `None`: a deletion.
    pub to: Option<Status>,
    pub actor: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub at_ms: u64,
}

impl Change {
    /// The change `developer`'s record was just given: its last history entry
    /// (every write appends one).
    pub fn last_of(developer: &Developer) -> Option<Change> {
        let last = developer.history.last()?;
        Some(Change {
            email: developer.email.clone(),
            from: last.from,
            to: last.to,
            actor: last.actor.clone(),
            reason: last.reason.clone(),
            at_ms: last.at_ms,
        })
    }

    /// The log entry to write with the change: key and value. `operation` is
    /// unique per request (time and 64 random bits) and a bulk action changes
    /// each developer once, so no two writes share a key.
    pub fn log_entry(&self, key_prefix: &str, operation: &str) -> (Vec<u8>, Vec<u8>) {
        let key = log_key(key_prefix, self.at_ms, operation, &self.email);
        (key, serde_json::to_vec(self).unwrap_or_default())
    }
}

/// `<prefix>events/`: the change log.
pub fn log_prefix(key_prefix: &str) -> String {
    format!("{key_prefix}events/")
}

/// Entries are named by time first, so the entries older than an instant are
/// one key range (what `prune` deletes).
pub fn log_key(key_prefix: &str, at_ms: u64, operation: &str, email: &str) -> Vec<u8> {
    format!("{key_prefix}events/{at_ms:016}-{operation}-{email}").into_bytes()
}

/// The range of log entries written before `before_ms`.
pub fn prunable(key_prefix: &str, before_ms: u64) -> (Vec<u8>, Vec<u8>) {
    (
        log_prefix(key_prefix).into_bytes(),
        format!("{key_prefix}events/{before_ms:016}").into_bytes(),
    )
}

/// An event: a change and the etcd revision that committed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub revision: u64,
    pub change: Change,
}

pub const TYPE_PREFIX: &str = "devportal.developer.";

/// The CloudEvents `type` of a change to `to` (`None`: deleted).
pub fn event_type(to: Option<Status>) -> &'static str {
    match to {
        Some(Status::Requested) => "devportal.developer.requested",
        Some(Status::Approved) => "devportal.developer.approved",
        Some(Status::Rejected) => "devportal.developer.rejected",
        Some(Status::Revoked) => "devportal.developer.revoked",
        None => "devportal.developer.deleted",
    }
}

pub const ALL_TYPES: [&str; 5] = [
    "devportal.developer.requested",
    "devportal.developer.approved",
    "devportal.developer.rejected",
    "devportal.developer.revoked",
    "devportal.developer.deleted",
];

impl Event {
    /// Stable across retries and gateways: the revision that committed the
    /// change, and whose change it was.
    pub fn id(&self) -> String {
        format!("{}-{}", self.revision, self.change.email)
    }

    pub fn kind(&self) -> &'static str {
        event_type(self.change.to)
    }

    /// The CloudEvents 1.0 structured-mode body. `source` is the directory's
    /// key prefix.
    pub fn body(&self, source: &str) -> String {
        let change = &self.change;
        json!({
            "specversion": "1.0",
            "id": self.id(),
            "source": source,
            "type": self.kind(),
            "subject": change.email,
            "time": rfc3339(change.at_ms),
            "datacontenttype": "application/json",
            "data": {
                "email": change.email,
                "from": change.from.map(Status::as_str),
                "to": change.to.map(Status::as_str),
                "actor": change.actor,
                "reason": change.reason,
                "revision": self.revision,
            },
        })
        .to_string()
    }

    /// How the admin API lists it.
    pub fn to_api(&self) -> serde_json::Value {
        json!({
            "id": self.id(),
            "type": self.kind(),
            "email": self.change.email,
            "from": self.change.from.map(Status::as_str),
            "to": self.change.to.map(Status::as_str),
            "actor": self.change.actor,
            "reason": self.change.reason,
            "time": rfc3339(self.change.at_ms),
            "revision": self.revision,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(to: Option<Status>) -> Event {
        Event {
            revision: 42,
            change: Change {
                email: "bob@example.com".into(),
                from: Some(Status::Requested),
                to,
                actor: "ops".into(),
                reason: Some("ok".into()),
                at_ms: 1_700_000_000_000,
            },
        }
    }

    #[test]
    fn an_event_is_a_cloudevent_with_a_stable_id() {
        let body: serde_json::Value = serde_json::from_str(&event(Some(Status::Approved)).body("/devportal/")).unwrap();
        assert_eq!(body["specversion"], "1.0");
        assert_eq!(body["id"], "42-bob@example.com");
        assert_eq!(body["source"], "/devportal/");
        assert_eq!(body["type"], "devportal.developer.approved");
        assert_eq!(body["subject"], "bob@example.com");
        assert_eq!(body["time"], "2023-11-14T22:13:20.000Z");
        assert_eq!(body["data"]["from"], "requested");
        assert_eq!(body["data"]["to"], "approved");
        assert_eq!(body["data"]["actor"], "ops");
        assert_eq!(body["data"]["revision"], 42);
        assert_eq!(event(None).kind(), "devportal.developer.deleted");
    }

    #[test]
    fn log_entries_sort_by_time_and_prune_as_one_range() {
        let change = event(None).change;
        let (key, value) = change.log_entry("/p/", "op-1");
        assert_eq!(key, b"/p/events/0001700000000000-op-1-bob@example.com");
        assert_eq!(serde_json::from_slice::<Change>(&value).unwrap(), change);
        let (start, end) = prunable("/p/", 1_700_000_000_001);
        assert!(start.as_slice() <= key.as_slice() && key.as_slice() < end.as_slice());
        let (_, end) = prunable("/p/", 1_700_000_000_000);
        assert!(
            key.as_slice() >= end.as_slice(),
            "an entry of the cut-off instant stays"
        );
    }
}
