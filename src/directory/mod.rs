//! The developer directory as it lives in proxy-wasm shared data.
//!
//! Each developer has one small record (status, revision, an approval's end),
//! kept in a bucket named by a hash of the canonical e-mail (`bucket`): a
//! lookup is one read whatever the directory's size, and the host holds one
//! entry per bucket instead of one per developer. The namespace is every key's
//! first segment so Kong can give the directory its own `shm_kv` zone. There is
//! no delete call in Envoy, so removal writes a tombstone (a `deleted` record)
//! that reads as absent.
//!
//! Around it: `keys` (every key, one table), `bucket` (the records' layout),
//! `store` (shared data, key-checked values, the one write loop), `seed` (a
//! static directory), `replica` (the copy of the etcd directory; the tabs'
//! counts in `tab_counts`, their first lines in `tab_front`), `developer`
//! (the stored record and the workflow), `status`, `registration`
//! (self-service bounds).

pub mod bucket;
pub mod developer;
pub mod expiry;
pub mod keys;
pub mod registration;
pub mod replica;
pub mod rules;
pub mod seed;
pub mod status;
mod store;
mod tab_counts;
mod tab_front;

pub use bucket::Found;
pub use seed::SeedReport;
pub use status::{Status, StatusInput};
pub use store::{
    update, write_if_different, write_unless, KeyChecked, MemoryStore, SharedStore, Slot, SlotStore, StoreError,
    WriteError, WriteOutcome, MAX_CAS_ATTEMPTS,
};
#[cfg(test)]
pub use store::{CountingStore, Meddling};

/// Where the directory's truth lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Directory {
    /// The configuration's `developers`; the admin API is read-only.
    Static,
    Etcd(crate::etcd::EtcdConfig),
}

/// One directory entry as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record {
    Present {
        status: Status,
        revision: u64,
        /// An approval's end (Unix ms); the gate refuses from then on.
        expires_ms: Option<u64>,
    },
    Deleted {
        revision: u64,
    },
    /// etcd holds a value the filter cannot read: fail closed for this developer.
    Unreadable {
        revision: u64,
    },
}

impl Record {
    /// A developer's record as etcd has it at `revision`: only an approval has an end.
    pub fn present(status: Status, revision: u64, approval_expires_ms: Option<u64>) -> Record {
        Record::Present {
            status,
            revision,
            expires_ms: approval_expires_ms.filter(|_| status == Status::Approved),
        }
    }

    pub fn revision(&self) -> u64 {
        match self {
            Record::Present { revision, .. } | Record::Deleted { revision } | Record::Unreadable { revision } => {
                *revision
            }
        }
    }
}

/// `email`'s record; `Garbled` also when the host failed: fail closed.
pub fn read_record(store: &dyn SharedStore, namespace: &str, email: &str) -> bucket::Found {
    match store.get(&keys::bucket(namespace, email)) {
        Ok(None) => bucket::Found::Absent,
        Ok(Some((bytes, _))) => bucket::find(&bytes, email),
        Err(_) => bucket::Found::Garbled,
    }
}

/// Makes `email`'s record `record` with the read-then-CAS loop on its bucket,
/// unless it already is, or `keep(stored)` says the stored record must stay.
pub fn write_record_unless(
    store: &dyn SharedStore,
    namespace: &str,
    email: &str,
    record: &Record,
    keep: impl Fn(&Record) -> bool,
) -> Result<WriteOutcome, WriteError> {
    let key = keys::bucket(namespace, email);
    if !bucket::storable(email) {
        return Err(WriteError {
            key,
            reason: format!("{email:?} cannot be stored: not an address"),
            collision: false,
        });
    }
    update(store, &key, |current| {
        let current = current.unwrap_or_default();
        match bucket::find(current, email) {
            bucket::Found::Record(stored) if stored == *record || keep(&stored) => None,
            _ => Some(bucket::with(current, email, record)),
        }
    })
}

/// Makes `email`'s record `record`, unless it already is.
pub fn write_record(
    store: &dyn SharedStore,
    namespace: &str,
    email: &str,
    record: &Record,
) -> Result<WriteOutcome, WriteError> {
    write_record_unless(store, namespace, email, record, |_| false)
}

/// What the directory says about one developer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    Found(Status),
    /// Approved until this instant (Unix ms), which has passed.
    Expired(u64),
    Unknown,
    /// The host failed, or the stored value is unreadable: fail closed.
    Unavailable,
}

pub fn lookup(store: &dyn SharedStore, namespace: &str, email: &str) -> Lookup {
    lookup_at(store, namespace, email, || 0)
}

/// `lookup` at `now_ms()` by this gateway's clock: an approval whose expiry has
/// come is `Expired` at once, without waiting for any sync. The clock is read
/// only for an approval that has an end (on the hot path it is a host call).
pub fn lookup_at(store: &dyn SharedStore, namespace: &str, email: &str, now_ms: impl FnOnce() -> u64) -> Lookup {
    match read_record(store, namespace, email) {
        Found::Record(Record::Present {
            status: Status::Approved,
            expires_ms: Some(expires_ms),
            ..
        }) => match now_ms() >= expires_ms {
            true => Lookup::Expired(expires_ms),
            false => Lookup::Found(Status::Approved),
        },
        Found::Record(Record::Present { status, .. }) => Lookup::Found(status),
        Found::Absent | Found::Record(Record::Deleted { .. }) => Lookup::Unknown,
        Found::Record(Record::Unreadable { .. }) | Found::Garbled => Lookup::Unavailable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    fn devs(list: &[(&str, Status)]) -> Vec<(String, Status)> {
        list.iter().map(|(e, s)| (e.to_string(), *s)).collect()
    }

    fn approved(revision: u64) -> Record {
        Record::Present {
            expires_ms: None,
            status: Status::Approved,
            revision,
        }
    }

    /// Another address in `email`'s bucket, found by trying.
    fn bucket_mate(email: &str) -> String {
        let wanted = bucket::index(email);
        (0..)
            .map(|i| format!("mate{i}@example.com"))
            .find(|candidate| bucket::index(candidate) == wanted)
            .unwrap()
    }

    #[test]
    fn addresses_in_one_bucket_are_told_apart_by_the_whole_email() {
        let store = KeyChecked(MemoryStore::default());
        let mate = bucket_mate("alice@example.com");
        assert_eq!(
            keys::bucket("devportal", &mate),
            keys::bucket("devportal", "alice@example.com")
        );
        seed::records(&store, "devportal", &devs(&[("alice@example.com", Status::Approved)])).unwrap();
        assert_eq!(lookup(&store, "devportal", &mate), Lookup::Unknown);
        write_record(&store, "devportal", &mate, &Record::Deleted { revision: 3 }).unwrap();
        write_record(&store, "devportal", &mate, &approved(4)).unwrap();
        assert_eq!(lookup(&store, "devportal", &mate), Lookup::Found(Status::Approved));
        let revoked = Record::Present {
            expires_ms: None,
            status: Status::Revoked,
            revision: 5,
        };
        write_record(&store, "devportal", "alice@example.com", &revoked).unwrap();
        assert_eq!(lookup(&store, "devportal", &mate), Lookup::Found(Status::Approved));
        assert_eq!(
            lookup(&store, "devportal", "alice@example.com"),
            Lookup::Found(Status::Revoked)
        );
    }

    #[test]
    fn a_colliding_key_never_reads_or_overwrites_another_bucket() {
        // A host that confuses every bucket with every other: the worst case.
        fn buckets_share_a_slot(key: &str) -> u64 {
            if key.contains("/b/") {
                0
            } else {
                key.len() as u64
            }
        }
        let alice = devs(&[("alice@example.com", Status::Approved)]);
        // Without the check, one bucket's value ends up in another's slot.
        let raw = SlotStore::new(buckets_share_a_slot);
        seed::records(&raw, "devportal", &alice).unwrap();
        write_record(&raw, "devportal", "bob@example.com", &approved(1)).unwrap();
        let (mixed, _) = raw
            .get(&keys::bucket("devportal", "alice@example.com"))
            .unwrap()
            .unwrap();
        assert!(String::from_utf8_lossy(&mixed).contains("bob@example.com"));

        let store = KeyChecked(SlotStore::new(buckets_share_a_slot));
        seed::records(&store, "devportal", &alice).unwrap();
        assert_eq!(lookup(&store, "devportal", "bob@example.com"), Lookup::Unknown);
        let error = write_record(&store, "devportal", "bob@example.com", &approved(9)).unwrap_err();
        assert!(error.collision, "{error}");
        assert!(
            error
                .to_string()
                .contains(&keys::bucket("devportal", "alice@example.com")),
            "{error}"
        );
        assert_eq!(
            lookup(&store, "devportal", "alice@example.com"),
            Lookup::Found(Status::Approved)
        );
        assert_eq!(lookup(&store, "devportal", "bob@example.com"), Lookup::Unknown);
    }

    #[test]
    fn a_first_write_reads_its_bucket_once_and_a_racing_writer_keeps_its_line() {
        let store = KeyChecked(CountingStore::of("devportal/b/"));
        write_record(&store, "devportal", "alice@example.com", &approved(1)).unwrap();
        assert_eq!(
            (store.0.reads.get(), store.0.writes.get()),
            (1, 1),
            "one read and one write for a new bucket"
        );
        write_record(&store, "devportal", "alice@example.com", &approved(2)).unwrap();
        assert_eq!((store.0.reads.get(), store.0.writes.get()), (2, 2));

        // Another worker creates the bucket between this write's read and its
        // write: the write is refused (Kong's rule, as MemoryStore keeps it),
        // read again, and both lines stay.
        let mate = bucket_mate("bob@example.com");
        let key = keys::bucket("devportal", "bob@example.com");
        let store = KeyChecked(MemoryStore::default());
        let racing = store.read_slot(&key).unwrap();
        assert_eq!(racing, Slot::Empty);
        write_record(&store, "devportal", &mate, &approved(3)).unwrap();
        assert_eq!(store.write_slot(&key, b"b1", &racing), Err(StoreError::CasMismatch));
        write_record(&store, "devportal", "bob@example.com", &approved(4)).unwrap();
        assert_eq!(lookup(&store, "devportal", &mate), Lookup::Found(Status::Approved));
        assert_eq!(
            lookup(&store, "devportal", "bob@example.com"),
            Lookup::Found(Status::Approved)
        );
    }

    #[test]
    fn a_name_that_is_not_an_address_is_never_written() {
        let store = MemoryStore::default();
        let forged = "x\nalice@example.com;a1\nz";
        assert!(write_record(&store, "devportal", forged, &approved(1)).is_err());
        assert!(store.is_empty());
        assert_eq!(lookup(&store, "devportal", "alice@example.com"), Lookup::Unknown);
    }

    #[test]
    fn the_filters_own_keys_take_their_slot_back_from_a_bucket() {
        let store = KeyChecked(SlotStore::new(|_| 0));
        let system = "devportal/sync";
        write_record(&store, "devportal", "a@x.io", &approved(1)).unwrap();
        assert_eq!(store.get(system).unwrap(), None, "a bucket is not the sync state");
        write_if_different(&store, system, b"7;0").unwrap();
        assert_eq!(store.get(system).unwrap().map(|(v, _)| v), Some(b"7;0".to_vec()));
        assert_eq!(
            lookup(&store, "devportal", "a@x.io"),
            Lookup::Unknown,
            "now absent: refused"
        );
        // ...while a bucket never takes a slot from the filter's own key.
        assert!(
            write_record(&store, "devportal", "a@x.io", &approved(2))
                .unwrap_err()
                .collision
        );
        assert!(!keys::is_per_developer("devportal/sync"));
        assert!(!keys::is_per_developer(&keys::tab(
            "devportal",
            Some(Status::Approved),
            7
        )));
        assert!(!keys::is_per_developer(&keys::expiring("devportal", 7)));
        assert!(!keys::is_per_developer("devportal/dev/a@x.io"));
        assert!(keys::is_per_developer(&keys::bucket("devportal", "a@x.io")));
        for own in keys::own_keys("devportal") {
            assert!(!keys::is_per_developer(&own), "{own}");
        }
    }

    #[test]
    fn values_without_the_envelope_read_as_absent_and_are_replaced() {
        let inner = MemoryStore::default();
        inner
            .set(&keys::bucket("devportal", "a@x.io"), b"b1\na@x.io;a0", None)
            .unwrap();
        let store = KeyChecked(inner);
        assert_eq!(lookup(&store, "devportal", "a@x.io"), Lookup::Unknown);
        let revoked = Record::Present {
            expires_ms: None,
            status: Status::Revoked,
            revision: 0,
        };
        write_record(&store, "devportal", "a@x.io", &revoked).unwrap();
        assert_eq!(lookup(&store, "devportal", "a@x.io"), Lookup::Found(Status::Revoked));
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
        let first = seed::records(&store, "devportal", &list).unwrap();
        assert_eq!(
            first,
            SeedReport {
                written: 2,
                unchanged: 0,
                removed: 0
            }
        );
        // A second worker with the same configuration writes nothing.
        let second = seed::records(&store, "devportal", &list).unwrap();
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
        seed::records(
            &store,
            "devportal",
            &devs(&[
                ("alice@example.com", Status::Approved),
                ("bob@example.com", Status::Approved),
            ]),
        )
        .unwrap();
        let report = seed::records(&store, "devportal", &devs(&[("alice@example.com", Status::Revoked)])).unwrap();
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
        seed::records(&store, "devportal", &devs(&[("bob@example.com", Status::Rejected)])).unwrap();
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
            .set(&keys::bucket("devportal", "alice@example.com"), b"garbage", None)
            .unwrap();
        assert_eq!(lookup(&store, "devportal", "alice@example.com"), Lookup::Unavailable);
        // One garbled line fails closed for its developer only.
        let store = MemoryStore::default();
        let mate = bucket_mate("bob@example.com");
        let bucket = format!("b1\n{mate};a3\nbob@example.com;a");
        store
            .set(&keys::bucket("devportal", &mate), bucket.as_bytes(), None)
            .unwrap();
        assert_eq!(lookup(&store, "devportal", "bob@example.com"), Lookup::Unavailable);
        assert_eq!(lookup(&store, "devportal", &mate), Lookup::Found(Status::Approved));
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
        let desired = approved(0);
        assert_eq!(
            write_record(&store, "devportal", "a@x.io", &desired),
            Ok(WriteOutcome::Written)
        );
        assert_eq!(lookup(&store, "devportal", "a@x.io"), Lookup::Found(Status::Approved));
        let store = RacingStore {
            inner: MemoryStore::default(),
            races: Cell::new(100),
        };
        let error = write_record(&store, "devportal", "a@x.io", &desired).unwrap_err();
        assert!(error.reason.contains("contended"), "{error}");
    }
}

#[cfg(test)]
mod expiry_tests {
    use super::*;

    #[test]
    fn an_approval_with_an_end_is_expired_from_that_instant_on() {
        let store = MemoryStore::default();
        let record = Record::Present {
            status: Status::Approved,
            revision: 7,
            expires_ms: Some(5000),
        };
        write_record(&store, "ns", "a@x.io", &record).unwrap();
        assert_eq!(
            lookup_at(&store, "ns", "a@x.io", || 4999),
            Lookup::Found(Status::Approved)
        );
        assert_eq!(lookup_at(&store, "ns", "a@x.io", || 5000), Lookup::Expired(5000));
        // Only an approval expires.
        let revoked = Record::Present {
            status: Status::Revoked,
            revision: 8,
            expires_ms: Some(5000),
        };
        write_record(&store, "ns", "a@x.io", &revoked).unwrap();
        assert_eq!(
            lookup_at(&store, "ns", "a@x.io", || 9000),
            Lookup::Found(Status::Revoked)
        );
    }

    #[test]
    fn the_clock_is_read_only_for_an_approval_with_an_end() {
        let store = MemoryStore::default();
        let reads = std::cell::Cell::new(0);
        let clock = || {
            reads.set(reads.get() + 1);
            1
        };
        for (email, expires_ms) in [("a@x.io", None), ("b@x.io", Some(5000))] {
            let record = Record::Present {
                status: Status::Approved,
                revision: 7,
                expires_ms,
            };
            write_record(&store, "ns", email, &record).unwrap();
        }
        assert_eq!(
            lookup_at(&store, "ns", "a@x.io", clock),
            Lookup::Found(Status::Approved)
        );
        assert_eq!(lookup_at(&store, "ns", "nobody@x.io", clock), Lookup::Unknown);
        assert_eq!(reads.get(), 0);
        assert_eq!(
            lookup_at(&store, "ns", "b@x.io", clock),
            Lookup::Found(Status::Approved)
        );
        assert_eq!(reads.get(), 1);
    }
}
