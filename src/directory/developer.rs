//! A developer as the durable directory (etcd) stores it, and the workflow that
//! moves developers between statuses.
//!
//! The stored value is JSON. Only `status` is required, so another tool may write
//! `{"status":"revoked"}` directly; fields this build does not know are kept as
//! they are when the filter rewrites a record.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::directory::Status;
use crate::encoding::clock::rfc3339;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Developer {
    /// Filled from the etcd key, which is authoritative.
    #[serde(default)]
    pub email: String,
    pub status: Status,
    #[serde(default)]
    pub created_ms: u64,
    /// When the status last changed: the order of the admin API's tabs.
    #[serde(default)]
    pub updated_ms: u64,
    #[serde(default)]
    pub metadata: Map<String, Value>,
    #[serde(default)]
    pub history: Vec<Transition>,
    /// When an approval ends (Unix ms): from then on the gate refuses, and the
    /// fleet records the revocation once (actor `expiry`). Approved only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_expires_ms: Option<u64>,
    /// Fields written by other tools, preserved.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// One status change. `from` is `None` for a registration, `to` is `None` for a
/// deletion (kept in the archive of deleted developers).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    pub actor: String,
    pub from: Option<Status>,
    pub to: Option<Status>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub at_ms: u64,
    /// The admin request that made the change: when its answer from etcd is
    /// lost, a read-back finds out whether it committed by this id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// The approval's end this change gave (an approval or an extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_ms: Option<u64>,
}

impl Developer {
    /// A new developer, with its registration as the first history entry.
    pub fn register(email: &str, status: Status, metadata: Map<String, Value>, actor: &str, now_ms: u64) -> Developer {
        Developer {
            email: email.to_string(),
            status,
            created_ms: now_ms,
            updated_ms: now_ms,
            metadata,
            history: vec![Transition {
                actor: actor.to_string(),
                from: None,
                to: Some(status),
                reason: None,
                at_ms: now_ms,
                operation: None,
                expires_ms: None,
            }],
            approval_expires_ms: None,
            other: Map::new(),
        }
    }

    /// Reads a stored value; `email` comes from its key.
    pub fn from_stored(email: &str, bytes: &[u8]) -> Result<Developer, String> {
        let mut developer: Developer =
            serde_json::from_slice(bytes).map_err(|error| format!("record of {email:?} is not valid: {error}"))?;
        developer.email = email.to_string();
        Ok(developer)
    }

    pub fn to_stored(&self) -> Vec<u8> {
        // Serializing plain data to a Vec cannot fail; an empty value would be
        // refused by `from_stored`, so nothing silent can come of it either way.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The record after `action`, or `None` when the action deletes it.
    pub fn after(
        &self,
        action: DeveloperAction,
        actor: &str,
        reason: Option<&str>,
        now_ms: u64,
    ) -> Result<Option<Developer>, NotOffered> {
        let to = action.outcome_from(self.status)?;
        let Some(to) = to else { return Ok(None) };
        let mut next = self.clone();
        next.status = to;
        next.updated_ms = now_ms;
        // Only an approval has an end; `with_expiry` gives a new one.
        next.approval_expires_ms = None;
        next.history.push(Transition {
            actor: actor.to_string(),
            from: Some(self.status),
            to: Some(to),
            reason: reason.map(str::to_string),
            at_ms: now_ms,
            operation: None,
            expires_ms: None,
        });
        Ok(Some(next))
    }

    /// An approval that ends at `expires_ms` (`None`: never), recorded in the
    /// last history entry too. Ignored unless the developer is Approved.
    pub fn with_expiry(mut self, expires_ms: Option<u64>) -> Developer {
        if self.status == Status::Approved {
            self.approval_expires_ms = expires_ms;
            if let Some(last) = self.history.last_mut() {
                last.expires_ms = expires_ms;
            }
        }
        self
    }

    /// What the archive of deleted developers keeps: this record with the
    /// deletion as its last history entry.
    pub fn deleted(&self, actor: &str, reason: Option<&str>, now_ms: u64) -> Developer {
        let mut archived = self.clone();
        archived.updated_ms = now_ms;
        archived.history.push(Transition {
            actor: actor.to_string(),
            from: Some(self.status),
            to: None,
            reason: reason.map(str::to_string),
            at_ms: now_ms,
            operation: None,
            expires_ms: None,
        });
        archived.approval_expires_ms = None;
        archived
    }

    /// Marks the last history entry as made by `operation`.
    pub fn with_operation(mut self, operation: &str) -> Developer {
        if let Some(last) = self.history.last_mut() {
            last.operation = Some(operation.to_string());
        }
        self
    }

    /// Whether `operation` made one of this record's changes.
    pub fn made_by(&self, operation: &str) -> bool {
        self.history.iter().any(|t| t.operation.as_deref() == Some(operation))
    }

    /// A developer registered again after a deletion: the archived history goes
    /// first, so whoever decides on the new request sees the past.
    pub fn after_archive(mut self, archived: Option<Developer>) -> Developer {
        if let Some(archived) = archived {
            let mut history = archived.history;
            history.append(&mut self.history);
            self.history = history;
        }
        self
    }

    /// The admin API's view.
    pub fn to_api(&self, revision: u64) -> Value {
        let history: Vec<Value> = self
            .history
            .iter()
            .map(|t| json!({"actor": t.actor, "from": t.from, "to": t.to.map_or("deleted", Status::as_str), "reason": t.reason, "at": rfc3339(t.at_ms), "operation": t.operation, "expires_at": t.expires_ms.map(rfc3339)}))
            .collect();
        json!({
            "email": self.email,
            "status": self.status,
            "expires_at": self.approval_expires_ms.map(rfc3339),
            "actions": DeveloperAction::offered_by(self.status).iter().map(|a| a.as_str()).collect::<Vec<_>>(),
            "created_at": (self.created_ms > 0).then(|| rfc3339(self.created_ms)),
            "updated_at": (self.updated_ms > 0).then(|| rfc3339(self.updated_ms)),
            "metadata": self.metadata,
            "history": history,
            "revision": revision,
        })
    }
}

/// The actions of Kong Manager's "Managing Developers" tabs, and only those.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeveloperAction {
    Accept,
    Reject,
    Revoke,
    Reapprove,
    Approve,
    Delete,
    /// An approved developer's approval gets a new end (a recorded change).
    Extend,
}

/// `action` is not one the developer's current status offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotOffered {
    pub action: DeveloperAction,
    pub current: Status,
}

impl fmt::Display for NotOffered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let offered: Vec<&str> = DeveloperAction::offered_by(self.current)
            .iter()
            .map(|a| a.as_str())
            .collect();
        write!(
            f,
            "cannot {} a developer whose status is {}; {} developers offer: {}",
            self.action.as_str(),
            self.current,
            self.current,
            offered.join(", ")
        )
    }
}

impl DeveloperAction {
    pub const ALL: [DeveloperAction; 7] = [
        DeveloperAction::Accept,
        DeveloperAction::Reject,
        DeveloperAction::Revoke,
        DeveloperAction::Reapprove,
        DeveloperAction::Approve,
        DeveloperAction::Delete,
        DeveloperAction::Extend,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeveloperAction::Accept => "accept",
            DeveloperAction::Reject => "reject",
            DeveloperAction::Revoke => "revoke",
            DeveloperAction::Reapprove => "reapprove",
            DeveloperAction::Approve => "approve",
            DeveloperAction::Delete => "delete",
            DeveloperAction::Extend => "extend",
        }
    }

    pub fn parse(name: &str) -> Option<DeveloperAction> {
        DeveloperAction::ALL.into_iter().find(|a| a.as_str() == name)
    }

    /// Requested: accept or reject. Approved: revoke, delete, or extend its
    /// approval. Revoked: reapprove or delete. Rejected: approve or delete.
    pub fn offered_by(status: Status) -> &'static [DeveloperAction] {
        match status {
            Status::Requested => &[DeveloperAction::Accept, DeveloperAction::Reject],
            Status::Approved => &[
                DeveloperAction::Revoke,
                DeveloperAction::Delete,
                DeveloperAction::Extend,
            ],
            Status::Revoked => &[DeveloperAction::Reapprove, DeveloperAction::Delete],
            Status::Rejected => &[DeveloperAction::Approve, DeveloperAction::Delete],
        }
    }

    /// The status `self` leads to from `current`; `Ok(None)` deletes.
    pub fn outcome_from(self, current: Status) -> Result<Option<Status>, NotOffered> {
        if !DeveloperAction::offered_by(current).contains(&self) {
            return Err(NotOffered { action: self, current });
        }
        Ok(match self {
            DeveloperAction::Accept
            | DeveloperAction::Reapprove
            | DeveloperAction::Approve
            | DeveloperAction::Extend => Some(Status::Approved),
            DeveloperAction::Reject => Some(Status::Rejected),
            DeveloperAction::Revoke => Some(Status::Revoked),
            DeveloperAction::Delete => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_from_every_status() {
        use DeveloperAction::*;
        use Status::*;
        let expected = [
            (Requested, Accept, Some(Some(Approved))),
            (Requested, Reject, Some(Some(Rejected))),
            (Approved, Revoke, Some(Some(Revoked))),
            (Approved, Delete, Some(None)),
            (Approved, Extend, Some(Some(Approved))),
            (Revoked, Reapprove, Some(Some(Approved))),
            (Revoked, Delete, Some(None)),
            (Rejected, Approve, Some(Some(Approved))),
            (Rejected, Delete, Some(None)),
        ];
        for status in Status::ALL {
            for action in DeveloperAction::ALL {
                let want = expected
                    .iter()
                    .find(|(s, a, _)| *s == status && *a == action)
                    .and_then(|(_, _, o)| *o);
                assert_eq!(action.outcome_from(status).ok(), want, "{status} {action:?}");
            }
        }
        let error = Accept.outcome_from(Approved).unwrap_err();
        assert_eq!(
            error.to_string(),
            "cannot accept a developer whose status is approved; approved developers offer: revoke, delete, extend"
        );
    }

    #[test]
    fn transitions_append_history_and_keep_foreign_fields() {
        let stored = br#"{"status":1,"created_ms":5,"team":"blue","metadata":{"full_name":"Bob"}}"#;
        let bob = Developer::from_stored("bob@x.io", stored).unwrap();
        assert_eq!(bob.status, Status::Requested);
        assert_eq!(bob.email, "bob@x.io");
        let next = bob
            .after(DeveloperAction::Accept, "ops", Some("verified"), 99)
            .unwrap()
            .unwrap();
        assert_eq!(next.status, Status::Approved);
        assert_eq!(next.updated_ms, 99);
        assert_eq!(next.history.len(), 1);
        assert_eq!(next.history[0].from, Some(Status::Requested));
        let round: Value = serde_json::from_slice(&next.to_stored()).unwrap();
        assert_eq!(round["team"], "blue");
        assert_eq!(round["status"], "approved");
        assert_eq!(Developer::from_stored("bob@x.io", &next.to_stored()).unwrap(), next);
        assert!(bob.after(DeveloperAction::Delete, "ops", None, 1).is_err());
    }

    #[test]
    fn unreadable_records_are_errors() {
        for bad in [
            &b"{}"[..],
            b"{\"status\":\"gone\"}",
            b"{\"status\":9}",
            b"[]",
            b"not json",
            b"{\"status\":\"approved\",\"history\":5}",
        ] {
            assert!(
                Developer::from_stored("a@x.io", bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
