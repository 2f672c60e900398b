//! The developer directory as it lives in proxy-wasm shared data.
//!
//! One key per developer, `<namespace>/dev/<canonical email>`, so a lookup is one
//! read whatever the directory's size. The namespace is the key's first segment so
//! Kong can give the directory its own `shm_kv` zone. Values are small text records
//! (`1;approved;0`: format version, status, revision); there is no delete call in
//! Envoy, so removal writes a tombstone (`1;deleted;0`) that reads as absent.
//!
//! Every write follows the portable rule from docs/hosts.md: read, then write with the
//! CAS that was read (none when absent), retrying a bounded number of times.

pub mod developer;
pub mod registration;
pub mod replica;

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
    /// The host keeps another key's value in this key's slot (Kong's `shm_kv`
    /// identifies keys by CRC-32 alone); names that key.
    Collision(String),
    /// Anything else the host reported.
    Host(String),
}

/// Keys that belong to one developer (`<ns>/dev/<email>`, `<ns>/doc/<email>`):
/// a client chooses their names. Every other key is the filter's own.
pub fn is_per_developer_key(key: &str) -> bool {
    let mut segments = key.splitn(3, '/');
    let _namespace = segments.next();
    matches!(segments.next(), Some("dev" | "doc")) && segments.next().is_some()
}

/// A `SharedStore` whose every value names its own key, checked on every read
/// and write, over a host store that may confuse keys.
///
/// Kong's `shm_kv` identifies a key by its CRC-32 alone, so two keys with the
/// same CRC-32 share one slot, and a crafted e-mail can read (or overwrite) an
/// approved developer's record. Here a value is stored as `<key>\0<value>`:
/// - a read that finds another key's value sees the key as absent (an unknown
///   developer: refused), never the other key's value;
/// - a write never overwrites another developer's value: it fails with
///   `StoreError::Collision` (that developer cannot be stored on this host and
///   stays refused; the condition is logged). The filter's own keys (sync state,
///   tabs, index, election) take their slot back from a developer's value, so a
///   crafted address can deny only itself, never the whole gateway;
/// - a value without the envelope (written by an older build) reads as absent
///   and may be overwritten.
pub struct KeyChecked<S>(pub S);

enum Slot {
    Empty,
    Own(Vec<u8>, u32),
    /// Another key's value (or one without an envelope), and its CAS.
    Foreign(String, u32),
}

impl<S: SharedStore> KeyChecked<S> {
    fn slot(&self, key: &str) -> Result<Slot, StoreError> {
        let Some((stored, cas)) = self.0.get(key)? else {
            return Ok(Slot::Empty);
        };
        let Some(split) = stored.iter().position(|&b| b == 0) else {
            return Ok(Slot::Foreign(String::new(), cas));
        };
        let (holder, value) = stored.split_at(split);
        if holder == key.as_bytes() {
            Ok(Slot::Own(value.get(1..).unwrap_or_default().to_vec(), cas))
        } else {
            Ok(Slot::Foreign(String::from_utf8_lossy(holder).into_owned(), cas))
        }
    }
}

impl<S: SharedStore> SharedStore for KeyChecked<S> {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
        match self.slot(key)? {
            Slot::Own(value, cas) => Ok(Some((value, cas))),
            Slot::Empty | Slot::Foreign(..) => Ok(None),
        }
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        let mut stored = Vec::with_capacity(key.len() + 1 + value.len());
        stored.extend_from_slice(key.as_bytes());
        stored.push(0);
        stored.extend_from_slice(value);
        let cas = match cas {
            Some(cas) => Some(cas),
            // "Absent" as read may be a slot another key holds: look again.
            None => match self.slot(key)? {
                Slot::Empty => None,
                Slot::Own(..) => return Err(StoreError::CasMismatch),
                Slot::Foreign(holder, foreign_cas) => {
                    if holder.is_empty() || !is_per_developer_key(key) {
                        Some(foreign_cas)
                    } else {
                        return Err(StoreError::Collision(holder));
                    }
                }
            },
        };
        self.0.set(key, &stored, cas)
    }
}

/// The two shared-data calls, with the portable semantics of docs/hosts.md.
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
        collision: false,
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedError {
    pub key: String,
    pub reason: String,
    /// The key's slot is held by another key (see `KeyChecked`).
    pub collision: bool,
}

impl SeedError {
    pub fn host(key: &str, error: StoreError) -> SeedError {
        let (reason, collision) = match error {
            StoreError::CasMismatch => ("CAS mismatch".to_string(), false),
            StoreError::Collision(holder) => (
                format!("the host keeps {holder:?} in the same slot (Kong's shm_kv identifies keys by CRC-32); this key cannot be stored here"),
                true,
            ),
            StoreError::Host(reason) => (reason, false),
        };
        SeedError {
            key: key.to_string(),
            reason,
            collision,
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

/// A store that keeps one value per *slot*, where `slot(key)` may give two keys
/// the same slot, as Kong's `shm_kv` does with CRC-32; with Kong's CAS rules.
/// For tests of `KeyChecked`.
pub struct SlotStore {
    pub slot: fn(&str) -> u64,
    entries: std::cell::RefCell<std::collections::HashMap<u64, (Vec<u8>, u32)>>,
}

impl SlotStore {
    pub fn new(slot: fn(&str) -> u64) -> SlotStore {
        SlotStore {
            slot,
            entries: Default::default(),
        }
    }
}

impl SharedStore for SlotStore {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
        Ok(self.entries.borrow().get(&(self.slot)(key)).cloned())
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        let slot = (self.slot)(key);
        let mut entries = self.entries.borrow_mut();
        let next_cas = match (entries.get(&slot), cas) {
            (None, None) => 1,
            (Some((_, current)), Some(cas)) if *current == cas => current + 1,
            _ => return Err(StoreError::CasMismatch),
        };
        entries.insert(slot, (value.to_vec(), next_cas));
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

    /// Anagrams share a slot: collisions without having to forge a CRC.
    fn byte_sum(key: &str) -> u64 {
        key.bytes().map(u64::from).sum()
    }

    #[test]
    fn a_colliding_key_never_reads_or_overwrites_another_developer() {
        let alice = devs(&[("alice@example.com", Status::Approved)]);
        // Without the check, the host's confusion decides access.
        let raw = SlotStore::new(byte_sum);
        seed(&raw, "devportal", &alice).unwrap();
        assert_eq!(
            lookup(&raw, "devportal", "ecila@example.com"),
            Lookup::Found(Status::Approved)
        );

        let store = KeyChecked(SlotStore::new(byte_sum));
        seed(&store, "devportal", &alice).unwrap();
        assert_eq!(lookup(&store, "devportal", "ecila@example.com"), Lookup::Unknown);
        assert_eq!(
            lookup(&store, "devportal", "alice@example.com"),
            Lookup::Found(Status::Approved)
        );
        // Writing the colliding developer fails and leaves alice alone.
        let record = Record::Present {
            status: Status::Requested,
            revision: 9,
        };
        let error = write_if_different(
            &store,
            &developer_key("devportal", "ecila@example.com"),
            &record.encode(),
        )
        .unwrap_err();
        assert!(error.collision, "{error}");
        assert!(error.to_string().contains("alice@example.com"), "{error}");
        assert_eq!(
            lookup(&store, "devportal", "alice@example.com"),
            Lookup::Found(Status::Approved)
        );
    }

    #[test]
    fn the_filters_own_keys_take_their_slot_back_from_a_developer() {
        // Keys of one length share a slot: "devportal/index" and "devportal/dev/a".
        let store = KeyChecked(SlotStore::new(|key| key.len() as u64));
        let (system, developer) = ("devportal/index", "devportal/dev/a");
        write_if_different(&store, developer, b"1;approved;1").unwrap();
        assert_eq!(store.get(system).unwrap(), None, "a developer's value is not the index");
        write_if_different(&store, system, b"a@x.io").unwrap();
        assert_eq!(store.get(system).unwrap().map(|(v, _)| v), Some(b"a@x.io".to_vec()));
        assert_eq!(
            store.get(developer).unwrap(),
            None,
            "the developer is now absent: refused"
        );
        // ...while a developer never takes a slot from the filter's own key.
        assert!(
            write_if_different(&store, developer, b"1;approved;2")
                .unwrap_err()
                .collision
        );
        assert!(!is_per_developer_key("devportal/sync"));
        assert!(!is_per_developer_key("devportal/list/approved"));
        assert!(is_per_developer_key("devportal/doc/a@x.io"));
        assert!(is_per_developer_key(developer));
    }

    #[test]
    fn values_without_the_envelope_read_as_absent_and_are_replaced() {
        let inner = MemoryStore::default();
        inner.set("devportal/dev/a@x.io", b"1;approved;0", None).unwrap();
        let store = KeyChecked(inner);
        assert_eq!(lookup(&store, "devportal", "a@x.io"), Lookup::Unknown);
        write_if_different(&store, "devportal/dev/a@x.io", b"1;revoked;0").unwrap();
        assert_eq!(lookup(&store, "devportal", "a@x.io"), Lookup::Found(Status::Revoked));
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
