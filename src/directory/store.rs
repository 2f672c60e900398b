//! Shared data as the filter uses it: the two calls (`SharedStore`), the
//! key-checked envelope every value wears (`KeyChecked`), the one bounded
//! read-then-CAS write loop, and in-memory stores for tests.
//!
//! Every write follows the portable rule from docs/hosts.md: read, then write
//! with the CAS that was read (none when absent), retrying a bounded number of
//! times.

use std::fmt;

use super::keys;

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

/// A `SharedStore` whose every value names its own key, checked on every read
/// and write, over a host store that may confuse keys.
///
/// Kong's `shm_kv` identifies a key by its CRC-32 alone, so two keys with the
/// same CRC-32 share one slot. Buckets never collide with each other (see
/// `bucket`), but one may with one of the filter's own keys, and records
/// must never be read from another key's value. Here a value is stored as
/// `<key>\0<value>`:
/// - a read that finds another key's value sees the key as absent (an unknown
///   developer: refused), never the other key's value;
/// - a bucket's write never overwrites another key's value: it fails with
///   `StoreError::Collision` (those developers cannot be stored on this host
///   and stay refused; the condition is logged). The filter's own keys (sync
///   state, tabs, election) take their slot back from a bucket, so the
///   directory's contents can never deny the whole gateway;
/// - a value without the envelope (written by an older build) reads as absent
///   and may be overwritten.
pub struct KeyChecked<S>(pub S);

/// What a key's slot holds, as `SharedStore::read_slot` reads it for a write.
#[derive(Debug, PartialEq, Eq)]
pub enum Slot {
    Empty,
    /// The key's own value, and its CAS.
    Own(Vec<u8>, u32),
    /// Another key's value (or one without an envelope), and its CAS.
    Foreign(String, u32),
}

impl Slot {
    /// The value `get` would give.
    pub fn value(&self) -> Option<&[u8]> {
        match self {
            Slot::Own(value, _) => Some(value),
            Slot::Empty | Slot::Foreign(..) => None,
        }
    }
}

impl<S: SharedStore> KeyChecked<S> {
    fn slot(&self, key: &str) -> Result<Slot, StoreError> {
        let Some((mut stored, cas)) = self.0.get(key)? else {
            return Ok(Slot::Empty);
        };
        let Some(split) = stored.iter().position(|&b| b == 0) else {
            return Ok(Slot::Foreign(String::new(), cas));
        };
        if stored.get(..split) == Some(key.as_bytes()) {
            // The hot path: drop the envelope in place, no second allocation.
            stored.drain(..=split);
            Ok(Slot::Own(stored, cas))
        } else {
            let holder = String::from_utf8_lossy(stored.get(..split).unwrap_or_default()).into_owned();
            Ok(Slot::Foreign(holder, cas))
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
        match cas {
            Some(cas) => self.0.set(key, &enveloped(key, value), Some(cas)),
            // "Absent" as `get` read it may be a slot another key holds: look again.
            None => match self.slot(key)? {
                Slot::Own(..) => Err(StoreError::CasMismatch),
                slot => self.write_slot(key, value, &slot),
            },
        }
    }

    fn read_slot(&self, key: &str) -> Result<Slot, StoreError> {
        self.slot(key)
    }

    fn write_slot(&self, key: &str, value: &[u8], slot: &Slot) -> Result<(), StoreError> {
        let cas = match slot {
            // Kong refuses this write if another worker inserted the key since
            // it was read (`update` then retries); Envoy inserts whatever the
            // CAS and overwrites it. Reading the slot again here would only
            // narrow that window, at the price of a host call.
            Slot::Empty => None,
            Slot::Own(_, cas) => Some(*cas),
            // A value without an envelope, or a bucket in a slot one of the
            // filter's own keys needs, is taken over; a bucket never takes
            // another key's slot.
            Slot::Foreign(holder, cas) if holder.is_empty() || !keys::is_per_developer(key) => Some(*cas),
            Slot::Foreign(holder, _) => return Err(StoreError::Collision(holder.clone())),
        };
        self.0.set(key, &enveloped(key, value), cas)
    }
}

/// `<key>\0<value>`: the envelope `KeyChecked` stores.
fn enveloped(key: &str, value: &[u8]) -> Vec<u8> {
    let mut stored = Vec::with_capacity(key.len() + 1 + value.len());
    stored.extend_from_slice(key.as_bytes());
    stored.push(0);
    stored.extend_from_slice(value);
    stored
}

/// The two shared-data calls, with the portable semantics of docs/hosts.md.
pub trait SharedStore {
    /// The value and its CAS token, `None` when the key is absent.
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError>;
    /// Writes `value` if the key is unchanged since `cas` was read (`None`: absent).
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError>;

    /// Reads `key` for `write_slot`: what `get` reads, and what a write must
    /// know of the slot. `KeyChecked` tells a slot another key holds from a
    /// free one here, so that its write need not read the slot again (one
    /// host call less for every key written for the first time).
    fn read_slot(&self, key: &str) -> Result<Slot, StoreError> {
        Ok(match self.get(key)? {
            Some((value, cas)) => Slot::Own(value, cas),
            None => Slot::Empty,
        })
    }

    /// Writes `value` if `key`'s slot is still as `read_slot` read it.
    fn write_slot(&self, key: &str, value: &[u8], slot: &Slot) -> Result<(), StoreError> {
        let cas = match slot {
            Slot::Empty => None,
            Slot::Own(_, cas) | Slot::Foreign(_, cas) => Some(*cas),
        };
        self.set(key, value, cas)
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
pub fn write_if_different(store: &dyn SharedStore, key: &str, desired: &[u8]) -> Result<WriteOutcome, WriteError> {
    write_unless(store, key, desired, |_| false)
}

/// Makes `key` hold `desired` with the portable read-then-CAS loop, unless it
/// already does or `keep(current)` says the stored value must stay.
pub fn write_unless(
    store: &dyn SharedStore,
    key: &str,
    desired: &[u8],
    keep: impl Fn(&[u8]) -> bool,
) -> Result<WriteOutcome, WriteError> {
    update(store, key, |current| {
        if current.is_some_and(&keep) {
            None
        } else {
            Some(desired.to_vec())
        }
    })
}

/// The one read-then-CAS loop every write goes through: `change(current)`
/// (`None`: the key is absent) gives the value to store, or `None` to leave the
/// key as it is; a value equal to the current one is not written either.
/// Retried a bounded number of times when another writer got in between.
pub fn update(
    store: &dyn SharedStore,
    key: &str,
    change: impl Fn(Option<&[u8]>) -> Option<Vec<u8>>,
) -> Result<WriteOutcome, WriteError> {
    for _ in 0..MAX_CAS_ATTEMPTS {
        let slot = store.read_slot(key).map_err(|e| WriteError::host(key, e))?;
        let current = slot.value();
        let next = match change(current) {
            Some(next) if Some(next.as_slice()) != current => next,
            _ => return Ok(WriteOutcome::AlreadyCurrent),
        };
        match store.write_slot(key, &next, &slot) {
            Ok(()) => return Ok(WriteOutcome::Written),
            Err(StoreError::CasMismatch) => continue,
            Err(error) => return Err(WriteError::host(key, error)),
        }
    }
    Err(WriteError::contended(key))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteError {
    pub key: String,
    pub reason: String,
    /// The key's slot is held by another key (see `KeyChecked`).
    pub collision: bool,
}

impl WriteError {
    pub fn contended(key: &str) -> WriteError {
        WriteError {
            key: key.to_string(),
            reason: format!("still contended after {MAX_CAS_ATTEMPTS} CAS attempts"),
            collision: false,
        }
    }

    pub fn host(key: &str, error: StoreError) -> WriteError {
        let (reason, collision) = match error {
            StoreError::CasMismatch => ("CAS mismatch".to_string(), false),
            StoreError::Collision(holder) => (
                format!("the host keeps {holder:?} in the same slot (Kong's shm_kv identifies keys by CRC-32); this key cannot be stored here"),
                true,
            ),
            StoreError::Host(reason) => (reason, false),
        };
        WriteError {
            key: key.to_string(),
            reason,
            collision,
        }
    }
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "shared data key {:?}: {}", self.key, self.reason)
    }
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

/// A `MemoryStore` that counts the reads and the writes of the keys starting
/// with `prefix`: for tests of how often a list is touched.
#[cfg(test)]
#[derive(Default)]
pub struct CountingStore {
    pub inner: MemoryStore,
    pub prefix: &'static str,
    pub reads: std::cell::Cell<usize>,
    pub writes: std::cell::Cell<usize>,
    /// The bytes of those reads and writes.
    pub bytes: std::cell::Cell<usize>,
}

#[cfg(test)]
impl CountingStore {
    pub fn of(prefix: &'static str) -> CountingStore {
        CountingStore {
            prefix,
            ..CountingStore::default()
        }
    }
}

#[cfg(test)]
impl SharedStore for CountingStore {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
        let value = self.inner.get(key);
        if key.starts_with(self.prefix) {
            self.reads.set(self.reads.get() + 1);
            let read = value
                .as_ref()
                .map_or(0, |value| value.as_ref().map_or(0, |(bytes, _)| bytes.len()));
            self.bytes.set(self.bytes.get() + read);
        }
        value
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        if key.starts_with(self.prefix) {
            self.writes.set(self.writes.get() + 1);
            self.bytes.set(self.bytes.get() + value.len());
        }
        self.inner.set(key, value, cas)
    }
}

/// Another writer's edit (`Meddling`).
#[cfg(test)]
type Edit<'a> = Box<dyn FnOnce(&MemoryStore) + 'a>;

/// A `MemoryStore` where another writer gets in once, at a chosen moment: just
/// after the first write of `key`, or (`before_read`) just before its first
/// read. For tests of writers that race.
#[cfg(test)]
pub struct Meddling<'a> {
    pub inner: MemoryStore,
    key: String,
    before_read: bool,
    meddle: std::cell::RefCell<Option<Edit<'a>>>,
    done: std::cell::Cell<bool>,
}

#[cfg(test)]
impl<'a> Meddling<'a> {
    pub fn after_write(key: &str) -> Meddling<'a> {
        Meddling {
            inner: MemoryStore::default(),
            key: key.to_string(),
            before_read: false,
            meddle: std::cell::RefCell::new(None),
            done: std::cell::Cell::new(false),
        }
    }

    pub fn before_read(key: &str) -> Meddling<'a> {
        Meddling {
            before_read: true,
            ..Meddling::after_write(key)
        }
    }

    /// Arms the other writer's edit.
    pub fn meddle(&self, edit: impl FnOnce(&MemoryStore) + 'a) {
        *self.meddle.borrow_mut() = Some(Box::new(edit));
    }

    /// Whether the edit was made.
    pub fn meddled(&self) -> bool {
        self.done.get()
    }

    fn at(&self, key: &str) {
        if key == self.key {
            let edit = self.meddle.borrow_mut().take();
            if let Some(edit) = edit {
                edit(&self.inner);
                self.done.set(true);
            }
        }
    }
}

#[cfg(test)]
impl SharedStore for Meddling<'_> {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
        if self.before_read {
            self.at(key);
        }
        self.inner.get(key)
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        self.inner.set(key, value, cas)?;
        if !self.before_read {
            self.at(key);
        }
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
