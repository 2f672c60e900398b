//! The developer directory as it lives in proxy-wasm shared data.
//!
//! One key per developer, `<namespace>/dev/<canonical email>`, so a lookup is one
//! read whatever the directory's size. The namespace is the key's first segment so
//! Kong can give the directory its own `shm_kv` zone. Values are small text records
//! (`1;approved;0`: format version, status, revision); there is no delete call in
//! Envoy, so removal writes a tombstone (`1;deleted;0`) that reads as absent.
//!
//! Around it: `keys` (every key, one table), `store` (shared data, key-checked
//! values, the one write loop), `seed` (a static directory), `replica` (the
//! copy of the etcd directory), `developer` (the stored record and the
//! workflow), `status`, `registration` (self-service bounds).

pub mod developer;
pub mod expiry;
pub mod keys;
pub mod registration;
pub mod replica;
pub mod rules;
pub mod seed;
mod status;
mod store;

pub use seed::SeedReport;
pub use status::{Status, StatusInput};
pub use store::{
    write_if_different, write_unless, KeyChecked, MemoryStore, SharedStore, SlotStore, StoreError, WriteError,
    WriteOutcome, MAX_CAS_ATTEMPTS,
};

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
            Record::Present { status, revision, .. } => (status.as_str(), revision),
            Record::Deleted { revision } => (DELETED, revision),
            Record::Unreadable { revision } => (UNREADABLE, revision),
        };
        match self {
            Record::Present {
                expires_ms: Some(expires_ms),
                ..
            } => format!("{RECORD_FORMAT};{status};{revision};{expires_ms}").into_bytes(),
            _ => format!("{RECORD_FORMAT};{status};{revision}").into_bytes(),
        }
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
        let expires_ms = match fields.next() {
            Some(expires) => Some(expires.parse().ok()?),
            None => None,
        };
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
            expires_ms,
        })
    }
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
    lookup_at(store, namespace, email, 0)
}

/// `lookup` at `now_ms` by this gateway's clock: an approval whose expiry has
/// come is `Expired` at once, without waiting for any sync.
pub fn lookup_at(store: &dyn SharedStore, namespace: &str, email: &str, now_ms: u64) -> Lookup {
    match store.get(&keys::developer(namespace, email)) {
        Ok(None) => Lookup::Unknown,
        Ok(Some((bytes, _))) => match Record::decode(&bytes) {
            Some(Record::Present {
                status: Status::Approved,
                expires_ms: Some(expires_ms),
                ..
            }) if now_ms >= expires_ms => Lookup::Expired(expires_ms),
            Some(Record::Present { status, .. }) => Lookup::Found(status),
            Some(Record::Deleted { .. }) => Lookup::Unknown,
            Some(Record::Unreadable { .. }) | None => Lookup::Unavailable,
        },
        Err(_) => Lookup::Unavailable,
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
        seed::records(&raw, "devportal", &alice).unwrap();
        assert_eq!(
            lookup(&raw, "devportal", "ecila@example.com"),
            Lookup::Found(Status::Approved)
        );

        let store = KeyChecked(SlotStore::new(byte_sum));
        seed::records(&store, "devportal", &alice).unwrap();
        assert_eq!(lookup(&store, "devportal", "ecila@example.com"), Lookup::Unknown);
        assert_eq!(
            lookup(&store, "devportal", "alice@example.com"),
            Lookup::Found(Status::Approved)
        );
        // Writing the colliding developer fails and leaves alice alone.
        let record = Record::Present {
            expires_ms: None,
            status: Status::Requested,
            revision: 9,
        };
        let error = write_if_different(
            &store,
            &keys::developer("devportal", "ecila@example.com"),
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
        assert!(!keys::is_per_developer("devportal/sync"));
        assert!(!keys::is_per_developer("devportal/list/approved"));
        assert!(!keys::is_per_developer("devportal/doc/a@x.io"));
        assert!(keys::is_per_developer(developer));
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
                expires_ms: None,
                status: Status::Approved,
                revision: 0,
            },
            Record::Present {
                expires_ms: None,
                status: Status::Revoked,
                revision: 12345,
            },
            Record::Deleted { revision: 7 },
        ] {
            assert_eq!(Record::decode(&record.encode()), Some(record));
        }
        assert_eq!(
            Record::Present {
                expires_ms: None,
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
            .set(&keys::developer("devportal", "alice@example.com"), b"garbage", None)
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
            expires_ms: None,
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
        assert_eq!(Record::decode(&record.encode()), Some(record));
        assert_eq!(
            Record::decode(b"1;approved;7"),
            Some(Record::Present {
                status: Status::Approved,
                revision: 7,
                expires_ms: None
            })
        );
        assert_eq!(Record::decode(b"1;approved;7;soon"), None);
        store
            .set(&keys::developer("ns", "a@x.io"), &record.encode(), None)
            .unwrap();
        assert_eq!(lookup_at(&store, "ns", "a@x.io", 4999), Lookup::Found(Status::Approved));
        assert_eq!(lookup_at(&store, "ns", "a@x.io", 5000), Lookup::Expired(5000));
        // Only an approval expires.
        let revoked = Record::Present {
            status: Status::Revoked,
            revision: 8,
            expires_ms: Some(5000),
        };
        write_if_different(&store, &keys::developer("ns", "a@x.io"), &revoked.encode()).unwrap();
        assert_eq!(lookup_at(&store, "ns", "a@x.io", 9000), Lookup::Found(Status::Revoked));
    }
}
