//! The developer directory as it lives in proxy-wasm shared data.
//!
//! One key per developer, `<namespace>/dev/<canonical email>`, so a lookup is one
//! read whatever the directory's size. The namespace is the key's first segment so
//! Kong can give the directory its own `shm_kv` zone. Values are small text records
//! (`1;approved;0`: format version, status, revision); there is no delete call in
//! Envoy, so removal writes a tombstone (`1;deleted;0`) that reads as absent.
//!
//! Every write follows the portable rule from HOSTS.md: read, then write with the
//! CAS that was read (none when absent), retrying a bounded number of times.

use std::collections::BTreeSet;
use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// A developer's status, as in Kong Enterprise's Dev Portal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Status {
    Approved,
    Requested,
    Rejected,
    Revoked,
}

impl Status {
    pub const ALL: [Status; 4] = [Status::Approved, Status::Requested, Status::Rejected, Status::Revoked];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Approved => "approved",
            Status::Requested => "requested",
            Status::Rejected => "rejected",
            Status::Revoked => "revoked",
        }
    }

    /// Kong Enterprise's name, as in its gateway's 401 message.
    pub fn kong_name(self) -> &'static str {
        match self {
            Status::Approved => "APPROVED",
            Status::Requested => "PENDING",
            Status::Rejected => "REJECTED",
            Status::Revoked => "REVOKED",
        }
    }

    /// Kong Enterprise's integer codes: APPROVED=0, PENDING=1, REJECTED=2, REVOKED=3.
    pub fn from_kong_code(code: u64) -> Option<Status> {
        match code {
            0 => Some(Status::Approved),
            1 => Some(Status::Requested),
            2 => Some(Status::Rejected),
            3 => Some(Status::Revoked),
            _ => None,
        }
    }

    pub fn parse(name: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A status as a name (`"approved"`, ..., or Kong's `"pending"`) or Kong's integer.
#[derive(Debug, Clone, Copy)]
pub struct StatusInput(pub Status);

impl<'de> Deserialize<'de> for StatusInput {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StatusVisitor;
        const EXPECTED: &str =
            "one of \"approved\", \"requested\" (or \"pending\"), \"rejected\", \"revoked\", or Kong's code 0-3";
        impl Visitor<'_> for StatusVisitor {
            type Value = StatusInput;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(EXPECTED)
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<StatusInput, E> {
                let status = if value == "pending" {
                    Some(Status::Requested)
                } else {
                    Status::parse(value)
                };
                status
                    .map(StatusInput)
                    .ok_or_else(|| E::custom(format!("unknown status {value:?}: expected {EXPECTED}")))
            }
            fn visit_u64<E: de::Error>(self, value: u64) -> Result<StatusInput, E> {
                Status::from_kong_code(value)
                    .map(StatusInput)
                    .ok_or_else(|| E::custom(format!("unknown status code {value}: expected {EXPECTED}")))
            }
            fn visit_i64<E: de::Error>(self, value: i64) -> Result<StatusInput, E> {
                Err(E::custom(format!("unknown status code {value}: expected {EXPECTED}")))
            }
        }
        deserializer.deserialize_any(StatusVisitor)
    }
}

/// One directory entry as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record {
    Present {
        status: Status,
        revision: u64,
    },
    Deleted {
        revision: u64,
    },
    /// etcd holds a value the filter cannot read: fail closed for this developer.
    Unreadable {
        revision: u64,
    },
}

const RECORD_FORMAT: &str = "1";
const DELETED: &str = "deleted";
const UNREADABLE: &str = "unreadable";

impl Record {
    pub fn revision(&self) -> u64 {
        match self {
            Record::Present { revision, .. } | Record::Deleted { revision } | Record::Unreadable { revision } => {
                *revision
            }
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let (status, revision) = match self {
            Record::Present { status, revision } => (status.as_str(), revision),
            Record::Deleted { revision } => (DELETED, revision),
            Record::Unreadable { revision } => (UNREADABLE, revision),
        };
        format!("{RECORD_FORMAT};{status};{revision}").into_bytes()
    }

    /// `None` for anything that is not a well-formed record of a known format.
    pub fn decode(bytes: &[u8]) -> Option<Record> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut fields = text.split(';');
        if fields.next()? != RECORD_FORMAT {
            return None;
        }
        let status = fields.next()?;
        let revision = fields.next()?.parse().ok()?;
        if fields.next().is_some() {
            return None;
        }
        if status == DELETED {
            return Some(Record::Deleted { revision });
        }
        if status == UNREADABLE {
            return Some(Record::Unreadable { revision });
        }
        Some(Record::Present {
            status: Status::parse(status)?,
            revision,
        })
    }
}

pub fn developer_key(namespace: &str, email: &str) -> String {
    let mut key = String::with_capacity(namespace.len() + 5 + email.len());
    key.push_str(namespace);
    key.push_str("/dev/");
    key.push_str(email);
    key
}

/// The list of developers the configuration seeded last, so that a
/// reconfiguration can tombstone the ones it removed.
pub fn seed_index_key(namespace: &str) -> String {
    format!("{namespace}/seed-index")
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The value changed since it was read.
    CasMismatch,
    /// Anything else the host reported.
    Host(String),
}

/// The two shared-data calls, with the portable semantics of HOSTS.md.
pub trait SharedStore {
    /// The value and its CAS token, `None` when the key is absent.
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError>;
    /// Writes `value` if the key is unchanged since `cas` was read (`None`: absent).
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError>;
}

/// What the directory says about one developer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    Found(Status),
    Unknown,
    /// The host failed, or the stored value is unreadable: fail closed.
    Unavailable,
}

pub fn lookup(store: &dyn SharedStore, namespace: &str, email: &str) -> Lookup {
    match store.get(&developer_key(namespace, email)) {
        Ok(None) => Lookup::Unknown,
        Ok(Some((bytes, _))) => match Record::decode(&bytes) {
            Some(Record::Present { status, .. }) => Lookup::Found(status),
            Some(Record::Deleted { .. }) => Lookup::Unknown,
            Some(Record::Unreadable { .. }) | None => Lookup::Unavailable,
        },
        Err(_) => Lookup::Unavailable,
    }
}

/// CAS retries before a write is reported as contended. Contention only comes from
/// other workers writing the same directory at the same moment, which settles in
/// a round or two.
pub const MAX_CAS_ATTEMPTS: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    Written,
    AlreadyCurrent,
}

/// Makes `key` hold `desired`, unless it already does.
pub fn write_if_different(store: &dyn SharedStore, key: &str, desired: &[u8]) -> Result<WriteOutcome, SeedError> {
    write_unless(store, key, desired, |_| false)
}

/// Makes `key` hold `desired` with the portable read-then-CAS loop, unless it
/// already does or `keep(current)` says the stored value must stay.
pub fn write_unless(
    store: &dyn SharedStore,
    key: &str,
    desired: &[u8],
    keep: impl Fn(&[u8]) -> bool,
) -> Result<WriteOutcome, SeedError> {
    for _ in 0..MAX_CAS_ATTEMPTS {
        let cas = match store.get(key).map_err(|e| SeedError::host(key, e))? {
            Some((current, _)) if current == desired || keep(&current) => return Ok(WriteOutcome::AlreadyCurrent),
            Some((_, cas)) => Some(cas),
            None => None,
        };
        match store.set(key, desired, cas) {
            Ok(()) => return Ok(WriteOutcome::Written),
            Err(StoreError::CasMismatch) => continue,
            Err(error) => return Err(SeedError::host(key, error)),
        }
    }
    Err(SeedError {
        key: key.to_string(),
        reason: format!("still contended after {MAX_CAS_ATTEMPTS} CAS attempts"),
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedError {
    pub key: String,
    pub reason: String,
}

impl SeedError {
    pub fn host(key: &str, error: StoreError) -> SeedError {
        let reason = match error {
            StoreError::CasMismatch => "CAS mismatch".to_string(),
            StoreError::Host(reason) => reason,
        };
        SeedError {
            key: key.to_string(),
            reason,
        }
    }
}

impl fmt::Display for SeedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "shared data key {:?}: {}", self.key, self.reason)
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SeedReport {
    pub written: usize,
    pub unchanged: usize,
    pub removed: usize,
}

/// Makes the shared directory hold exactly `developers` (canonical emails, no
/// duplicates: the configuration compiler guarantees both). Idempotent: every
/// worker runs it, and all but the first find the records already current.
///
/// Order matters for a worker that stops half-way: records first, then tombstones
/// for developers the previous seeding had and this one has not, and the index
/// last, so a later run still knows what to remove.
pub fn seed(
    store: &dyn SharedStore,
    namespace: &str,
    developers: &[(String, Status)],
) -> Result<SeedReport, SeedError> {
    let mut report = SeedReport::default();
    for (email, status) in developers {
        let record = Record::Present {
            status: *status,
            revision: 0,
        };
        match write_if_different(store, &developer_key(namespace, email), &record.encode())? {
            WriteOutcome::Written => report.written += 1,
            WriteOutcome::AlreadyCurrent => report.unchanged += 1,
        }
    }

    let index_key = seed_index_key(namespace);
    let previous = match store.get(&index_key).map_err(|e| SeedError::host(&index_key, e))? {
        Some((bytes, _)) => String::from_utf8_lossy(&bytes).into_owned(),
        None => String::new(),
    };
    let current: BTreeSet<&str> = developers.iter().map(|(email, _)| email.as_str()).collect();
    let tombstone = Record::Deleted { revision: 0 }.encode();
    for email in previous
        .lines()
        .filter(|email| !email.is_empty() && !current.contains(email))
    {
        if write_if_different(store, &developer_key(namespace, email), &tombstone)? == WriteOutcome::Written {
            report.removed += 1;
        }
    }

    let index = current.into_iter().collect::<Vec<_>>().join("\n");
    write_if_different(store, &index_key, index.as_bytes())?;
    Ok(report)
}

/// An in-memory store with Kong's stricter semantics (a CAS of 0/None on a
/// present key is refused), for tests here and in the host-side test suites.
#[derive(Default)]
pub struct MemoryStore {
    entries: std::cell::RefCell<std::collections::HashMap<String, (Vec<u8>, u32)>>,
}

impl MemoryStore {
    pub fn len(&self) -> usize {
        self.entries.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.borrow().is_empty()
    }
}

impl SharedStore for MemoryStore {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
        Ok(self.entries.borrow().get(key).cloned())
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        let mut entries = self.entries.borrow_mut();
        let next_cas = match (entries.get(key), cas) {
            (None, None) => 1,
            (Some((_, current)), Some(cas)) if *current == cas => current + 1,
            _ => return Err(StoreError::CasMismatch),
        };
        entries.insert(key.to_string(), (value.to_vec(), next_cas));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    fn devs(list: &[(&str, Status)]) -> Vec<(String, Status)> {
        list.iter().map(|(e, s)| (e.to_string(), *s)).collect()
    }

    #[test]
    fn record_round_trip_and_rejects_garbage() {
        for record in [
            Record::Present {
                status: Status::Approved,
                revision: 0,
            },
            Record::Present {
                status: Status::Revoked,
                revision: 12345,
            },
            Record::Deleted { revision: 7 },
        ] {
            assert_eq!(Record::decode(&record.encode()), Some(record));
        }
        assert_eq!(
            Record::Present {
                status: Status::Requested,
                revision: 3
            }
            .encode(),
            b"1;requested;3"
        );
        for garbage in [
            &b""[..],
            b"1;approved",
            b"2;approved;0",
            b"1;APPROVED;0",
            b"1;approved;x",
            b"1;approved;0;x",
            b"\xff",
        ] {
            assert_eq!(Record::decode(garbage), None, "{garbage:?}");
        }
    }

    #[test]
    fn kong_codes() {
        assert_eq!(Status::from_kong_code(0), Some(Status::Approved));
        assert_eq!(Status::from_kong_code(1), Some(Status::Requested));
        assert_eq!(Status::from_kong_code(2), Some(Status::Rejected));
        assert_eq!(Status::from_kong_code(3), Some(Status::Revoked));
        assert_eq!(Status::from_kong_code(4), None);
        assert_eq!(Status::Requested.kong_name(), "PENDING");
    }

    #[test]
    fn seeding_is_idempotent_and_lookups_see_it() {
        let store = MemoryStore::default();
        let list = devs(&[
            ("alice@example.com", Status::Approved),
            ("bob@example.com", Status::Requested),
        ]);
        let first = seed(&store, "devportal", &list).unwrap();
        assert_eq!(
            first,
            SeedReport {
                written: 2,
                unchanged: 0,
                removed: 0
            }
        );
        // A second worker with the same configuration writes nothing.
        let second = seed(&store, "devportal", &list).unwrap();
        assert_eq!(
            second,
            SeedReport {
                written: 0,
                unchanged: 2,
                removed: 0
            }
        );
        assert_eq!(
            lookup(&store, "devportal", "alice@example.com"),
            Lookup::Found(Status::Approved)
        );
        assert_eq!(
            lookup(&store, "devportal", "bob@example.com"),
            Lookup::Found(Status::Requested)
        );
        assert_eq!(lookup(&store, "devportal", "eve@example.com"), Lookup::Unknown);
        assert_eq!(lookup(&store, "other", "alice@example.com"), Lookup::Unknown);
    }

    #[test]
    fn reconfiguration_changes_and_removes_developers() {
        let store = MemoryStore::default();
        seed(
            &store,
            "devportal",
            &devs(&[
                ("alice@example.com", Status::Approved),
                ("bob@example.com", Status::Approved),
            ]),
        )
        .unwrap();
        let report = seed(&store, "devportal", &devs(&[("alice@example.com", Status::Revoked)])).unwrap();
        assert_eq!(
            report,
            SeedReport {
                written: 1,
                unchanged: 0,
                removed: 1
            }
        );
        assert_eq!(
            lookup(&store, "devportal", "alice@example.com"),
            Lookup::Found(Status::Revoked)
        );
        assert_eq!(lookup(&store, "devportal", "bob@example.com"), Lookup::Unknown);
        // Re-adding a removed developer overwrites the tombstone.
        seed(&store, "devportal", &devs(&[("bob@example.com", Status::Rejected)])).unwrap();
        assert_eq!(
            lookup(&store, "devportal", "bob@example.com"),
            Lookup::Found(Status::Rejected)
        );
        assert_eq!(lookup(&store, "devportal", "alice@example.com"), Lookup::Unknown);
    }

    #[test]
    fn unreadable_record_fails_closed() {
        let store = MemoryStore::default();
        store
            .set(&developer_key("devportal", "alice@example.com"), b"garbage", None)
            .unwrap();
        assert_eq!(lookup(&store, "devportal", "alice@example.com"), Lookup::Unavailable);
    }

    /// A store whose every write first loses a race `races` times.
    struct RacingStore {
        inner: MemoryStore,
        races: Cell<usize>,
    }

    impl SharedStore for RacingStore {
        fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
            self.inner.get(key)
        }
        fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
            if self.races.get() > 0 {
                self.races.set(self.races.get() - 1);
                // Another worker writes something else in between.
                let (_, other_cas) = self.inner.get(key)?.map_or((vec![], None), |(v, c)| (v, Some(c)));
                self.inner.set(key, b"1;requested;0", other_cas)?;
                return Err(StoreError::CasMismatch);
            }
            self.inner.set(key, value, cas)
        }
    }

    #[test]
    fn cas_retries_are_bounded() {
        let store = RacingStore {
            inner: MemoryStore::default(),
            races: Cell::new(3),
        };
        let desired = Record::Present {
            status: Status::Approved,
            revision: 0,
        }
        .encode();
        assert_eq!(
            write_if_different(&store, "devportal/dev/a@x.io", &desired),
            Ok(WriteOutcome::Written)
        );
        let store = RacingStore {
            inner: MemoryStore::default(),
            races: Cell::new(100),
        };
        let error = write_if_different(&store, "devportal/dev/a@x.io", &desired).unwrap_err();
        assert!(error.reason.contains("contended"), "{error}");
    }
}
