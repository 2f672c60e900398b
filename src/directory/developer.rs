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

/// Read by a hand-written `Deserialize` (below): a derived one would buffer
/// every record whole for `other`'s `flatten`, and a full sync reads millions.
#[derive(Debug, Clone, PartialEq, Serialize)]
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

/// What `#[derive(Deserialize)]` would accept with the attributes above (every
/// field but `status` defaulted, a known field given twice refused, any other
/// field kept in `other`, the last of a repeated one winning), read in one pass.
/// `tests::reads_what_the_derived_reader_reads` holds it to that.
impl<'de> Deserialize<'de> for Developer {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(DeveloperVisitor)
    }
}

struct DeveloperVisitor;

/// A record's field that `Developer` names.
#[derive(Clone, Copy)]
enum Known {
    Email,
    Status,
    CreatedMs,
    UpdatedMs,
    Metadata,
    History,
    ApprovalExpiresMs,
}

fn known_field(name: &str) -> Option<Known> {
    Some(match name {
        "email" => Known::Email,
        "status" => Known::Status,
        "created_ms" => Known::CreatedMs,
        "updated_ms" => Known::UpdatedMs,
        "metadata" => Known::Metadata,
        "history" => Known::History,
        "approval_expires_ms" => Known::ApprovalExpiresMs,
        _ => return None,
    })
}

/// A record's field name: a known one, or another (kept, for `other`, when
/// `KEEP`), read without allocating for a known one.
struct Field<const KEEP: bool>(Result<Known, Option<String>>);

impl<'de, const KEEP: bool> Deserialize<'de> for Field<KEEP> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FieldVisitor<const KEEP: bool>;
        impl<const KEEP: bool> serde::de::Visitor<'_> for FieldVisitor<KEEP> {
            type Value = Field<KEEP>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<Field<KEEP>, E> {
                Ok(Field(known_field(name).ok_or_else(|| KEEP.then(|| name.to_string()))))
            }
        }
        deserializer.deserialize_identifier(FieldVisitor::<KEEP>)
    }
}

fn once<T, E: serde::de::Error>(slot: &mut Option<T>, value: T, name: &'static str) -> Result<(), E> {
    match slot.replace(value) {
        Some(_) => Err(E::duplicate_field(name)),
        None => Ok(()),
    }
}

impl<'de> serde::de::Visitor<'de> for DeveloperVisitor {
    type Value = Developer;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("struct Developer")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Developer, A::Error> {
        use serde::de::Error;
        let mut email = None;
        let mut status = None;
        let mut created_ms = None;
        let mut updated_ms = None;
        let mut metadata = None;
        let mut history = None;
        let mut approval_expires_ms = None;
        let mut other = Map::new();
        while let Some(Field::<true>(field)) = map.next_key()? {
            match field {
                Ok(Known::Email) => once(&mut email, map.next_value()?, "email")?,
                Ok(Known::Status) => once(&mut status, map.next_value()?, "status")?,
                Ok(Known::CreatedMs) => once(&mut created_ms, map.next_value()?, "created_ms")?,
                Ok(Known::UpdatedMs) => once(&mut updated_ms, map.next_value()?, "updated_ms")?,
                Ok(Known::Metadata) => once(&mut metadata, map.next_value()?, "metadata")?,
                Ok(Known::History) => once(&mut history, map.next_value()?, "history")?,
                Ok(Known::ApprovalExpiresMs) => {
                    once(&mut approval_expires_ms, map.next_value()?, "approval_expires_ms")?
                }
                Err(name) => {
                    other.insert(name.unwrap_or_default(), map.next_value()?);
                }
            }
        }
        Ok(Developer {
            email: email.unwrap_or_default(),
            status: status.ok_or_else(|| A::Error::missing_field("status"))?,
            created_ms: created_ms.unwrap_or_default(),
            updated_ms: updated_ms.unwrap_or_default(),
            metadata: metadata.unwrap_or_default(),
            history: history.unwrap_or_default(),
            approval_expires_ms: approval_expires_ms.unwrap_or_default(),
            other,
        })
    }
}

/// What a full sync needs of a stored record: the hot path's record and the
/// tabs' order. `Summary::from_stored` accepts exactly what
/// `Developer::from_stored` accepts (a test holds it to that), without
/// building the metadata, the other fields or the history's list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub status: Status,
    pub updated_ms: u64,
    pub approval_expires_ms: Option<u64>,
}

impl Summary {
    pub fn from_stored(email: &str, bytes: &[u8]) -> Result<Summary, String> {
        serde_json::from_slice(bytes).map_err(|error| format!("record of {email:?} is not valid: {error}"))
    }
}

impl<'de> Deserialize<'de> for Summary {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SummaryVisitor;
        impl<'de> serde::de::Visitor<'de> for SummaryVisitor {
            type Value = Summary;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("struct Developer")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Summary, A::Error> {
                use serde::de::Error;
                // As `DeveloperVisitor`, field by field; what is not kept is
                // still read as its type, so it fails where that would.
                let (mut email, mut created_ms, mut metadata, mut history) = (None, None, None, None);
                let (mut status, mut updated_ms, mut approval_expires_ms) = (None, None, None);
                while let Some(Field::<false>(field)) = map.next_key()? {
                    match field {
                        Ok(Known::Email) => once(&mut email, map.next_value::<check::Str>()?, "email")?,
                        Ok(Known::Status) => once(&mut status, map.next_value::<Status>()?, "status")?,
                        Ok(Known::CreatedMs) => once(&mut created_ms, map.next_value::<u64>()?, "created_ms")?,
                        Ok(Known::UpdatedMs) => once(&mut updated_ms, map.next_value::<u64>()?, "updated_ms")?,
                        Ok(Known::Metadata) => once(&mut metadata, map.next_value::<check::Map>()?, "metadata")?,
                        Ok(Known::History) => {
                            once(&mut history, map.next_value::<check::Seq<Transition>>()?, "history")?
                        }
                        Ok(Known::ApprovalExpiresMs) => once(
                            &mut approval_expires_ms,
                            map.next_value::<Option<u64>>()?,
                            "approval_expires_ms",
                        )?,
                        Err(_) => {
                            map.next_value::<check::Any>()?;
                        }
                    }
                }
                Ok(Summary {
                    status: status.ok_or_else(|| A::Error::missing_field("status"))?,
                    updated_ms: updated_ms.unwrap_or_default(),
                    approval_expires_ms: approval_expires_ms.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_map(SummaryVisitor)
    }
}

/// Readers that accept what a type accepts and keep nothing: a `String`, a
/// `serde_json::Map`, a `serde_json::Value` (visited as serde_json's own
/// visitors do), a `Vec` of `T` (each read whole and dropped).
mod check {
    use std::fmt;
    use std::marker::PhantomData;

    use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

    pub struct Str;
    pub struct Map;
    pub struct Any;
    pub struct Seq<T>(PhantomData<T>);

    impl<'de> Deserialize<'de> for Str {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            struct StrVisitor;
            impl Visitor<'_> for StrVisitor {
                type Value = Str;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a string")
                }
                fn visit_str<E>(self, _: &str) -> Result<Str, E> {
                    Ok(Str)
                }
            }
            deserializer.deserialize_string(StrVisitor)
        }
    }

    impl<'de> Deserialize<'de> for Map {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            struct MapVisitor;
            impl<'de> Visitor<'de> for MapVisitor {
                type Value = Map;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a map")
                }
                fn visit_unit<E>(self) -> Result<Map, E> {
                    Ok(Map)
                }
                fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Map, A::Error> {
                    while map.next_entry::<Str, Any>()?.is_some() {}
                    Ok(Map)
                }
            }
            deserializer.deserialize_map(MapVisitor)
        }
    }

    impl<'de> Deserialize<'de> for Any {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            struct AnyVisitor;
            impl<'de> Visitor<'de> for AnyVisitor {
                type Value = Any;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("any valid JSON value")
                }
                fn visit_bool<E>(self, _: bool) -> Result<Any, E> {
                    Ok(Any)
                }
                fn visit_i64<E>(self, _: i64) -> Result<Any, E> {
                    Ok(Any)
                }
                fn visit_u64<E>(self, _: u64) -> Result<Any, E> {
                    Ok(Any)
                }
                fn visit_f64<E>(self, _: f64) -> Result<Any, E> {
                    Ok(Any)
                }
                fn visit_str<E>(self, _: &str) -> Result<Any, E> {
                    Ok(Any)
                }
                fn visit_none<E>(self) -> Result<Any, E> {
                    Ok(Any)
                }
                fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Any, D::Error> {
                    Any::deserialize(deserializer)
                }
                fn visit_unit<E>(self) -> Result<Any, E> {
                    Ok(Any)
                }
                fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Any, A::Error> {
                    while seq.next_element::<Any>()?.is_some() {}
                    Ok(Any)
                }
                fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Any, A::Error> {
                    while map.next_entry::<Str, Any>()?.is_some() {}
                    Ok(Any)
                }
            }
            deserializer.deserialize_any(AnyVisitor)
        }
    }

    impl<'de, T: Deserialize<'de>> Deserialize<'de> for Seq<T> {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            struct SeqVisitor<T>(PhantomData<T>);
            impl<'de, T: Deserialize<'de>> Visitor<'de> for SeqVisitor<T> {
                type Value = Seq<T>;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a sequence")
                }
                fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Seq<T>, A::Error> {
                    while seq.next_element::<T>()?.is_some() {}
                    Ok(Seq(PhantomData))
                }
            }
            deserializer.deserialize_seq(SeqVisitor(PhantomData))
        }
    }
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

    /// The reader `#[derive(Deserialize)]` gives `Developer`'s fields and
    /// attributes, which the hand-written one replaces.
    #[derive(Debug, Deserialize)]
    struct Derived {
        #[serde(default)]
        email: String,
        status: Status,
        #[serde(default)]
        created_ms: u64,
        #[serde(default)]
        updated_ms: u64,
        #[serde(default)]
        metadata: Map<String, Value>,
        #[serde(default)]
        history: Vec<Transition>,
        #[serde(default)]
        approval_expires_ms: Option<u64>,
        #[serde(flatten)]
        other: Map<String, Value>,
    }

    #[test]
    fn reads_what_the_derived_reader_reads() {
        let fields = [
            r#""status":"approved""#,
            r#""status":2"#,
            r#""status":"gone""#,
            r#""status":null"#,
            r#""email":"x@y.io""#,
            r#""email":7"#,
            r#""created_ms":5"#,
            r#""created_ms":-5"#,
            r#""updated_ms":1.5"#,
            r#""updated_ms":"9""#,
            r#""metadata":{"full_name":"A"}"#,
            r#""metadata":[]"#,
            r#""history":[{"actor":"a","from":null,"to":"approved","at_ms":1}]"#,
            r#""history":[{"actor":"a"}]"#,
            r#""history":5"#,
            r#""approval_expires_ms":null"#,
            r#""approval_expires_ms":77"#,
            r#""approval_expires_ms":"77""#,
            r#""team":"blue""#,
            r#""team":{"a":[1,2,{"b":null}]}"#,
            r#""st\u0061tus":"revoked""#,
            r#""metadata":null"#,
            r#""metadata":{"a":1e400}"#,
            r#""team":1e400"#,
            r#""team":[1,-2,3.5e10,true,null,"\u00e9\n",{"x":{}}]"#,
            r#""history":[["ops",null,"approved",null,5]]"#,
            r#""history":[["ops",null,"approved"]]"#,
            r#""history":[{"actor":"a","to":"revoked","at_ms":2,"extra":[1]}]"#,
            r#""history":null"#,
            r#""email":"\u0041@b.c""#,
            r#""email":null"#,
            r#""created_ms":18446744073709551616"#,
        ];
        let mut checked = 0;
        // Every pair of fields in both orders (a field twice included), alone
        // and after a status.
        for first in fields {
            for second in fields {
                for lead in ["", r#""status":"requested","#] {
                    let text = format!("{{{lead}{first},{second}}}");
                    let ours = Developer::from_stored("a@x.io", text.as_bytes());
                    let derived = serde_json::from_str::<Derived>(&text);
                    // What the full sync reads: the same verdict, the same fields.
                    match (&ours, Summary::from_stored("a@x.io", text.as_bytes())) {
                        (Ok(ours), Ok(summary)) => assert_eq!(
                            (ours.status, ours.updated_ms, ours.approval_expires_ms),
                            (summary.status, summary.updated_ms, summary.approval_expires_ms),
                            "{text}"
                        ),
                        (Err(_), Err(_)) => {}
                        (ours, summary) => panic!("{text}: record {ours:?}, summary {summary:?}"),
                    }
                    match (ours, derived) {
                        (Ok(ours), Ok(derived)) => {
                            assert_eq!(ours.status, derived.status, "{text}");
                            assert_eq!(
                                (ours.created_ms, ours.updated_ms, ours.approval_expires_ms),
                                (derived.created_ms, derived.updated_ms, derived.approval_expires_ms),
                                "{text}"
                            );
                            assert_eq!(ours.metadata, derived.metadata, "{text}");
                            assert_eq!(ours.history, derived.history, "{text}");
                            assert_eq!(ours.other, derived.other, "{text}");
                            // The key names the developer, whatever the record says.
                            assert_eq!(ours.email, "a@x.io");
                            let _ = derived.email;
                        }
                        (Err(_), Err(_)) => {}
                        (ours, derived) => panic!("{text}: ours {ours:?}, derived {derived:?}"),
                    }
                    checked += 1;
                }
            }
        }
        for text in [
            "",
            "[]",
            "null",
            "5",
            "{}",
            "{\"status\":\"approved\"} x",
            "{\"status\":\"approved\"",
        ] {
            assert!(Developer::from_stored("a@x.io", text.as_bytes()).is_err(), "{text}");
            assert!(Summary::from_stored("a@x.io", text.as_bytes()).is_err(), "{text}");
            assert!(serde_json::from_str::<Derived>(text).is_err(), "{text}");
        }
        assert_eq!(checked, fields.len() * fields.len() * 2);
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
