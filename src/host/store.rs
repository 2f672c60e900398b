//! `SharedStore` over proxy-wasm shared data: every value names its own key
//! (`directory::KeyChecked`), because Kong's `shm_kv` confuses keys with the
//! same CRC-32.

use super::abi::{self, HostError};
use crate::directory::{KeyChecked, SharedStore, Slot, StoreError};

/// The shared data the filter uses, key-checked.
pub struct HostSharedData;

impl SharedStore for HostSharedData {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
        KeyChecked(RawSharedData).get(key)
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        KeyChecked(RawSharedData).set(key, value, cas)
    }

    fn read_slot(&self, key: &str) -> Result<Slot, StoreError> {
        KeyChecked(RawSharedData).read_slot(key)
    }

    fn write_slot(&self, key: &str, value: &[u8], slot: &Slot) -> Result<(), StoreError> {
        KeyChecked(RawSharedData).write_slot(key, value, slot)
    }
}

/// The host's calls as they are.
struct RawSharedData;

impl SharedStore for RawSharedData {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
        // A value without a CAS token (0) is reported as present with CAS 0, so
        // a later write attempt is refused by the host rather than blind.
        abi::shared_data(key).map_err(|status| StoreError::Host(format!("get_shared_data failed: {status}")))
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        match abi::set_shared_data(key, value, cas.unwrap_or(0)) {
            Ok(()) => Ok(()),
            Err(HostError::CAS_MISMATCH) => Err(StoreError::CasMismatch),
            Err(status) => Err(StoreError::Host(format!("set_shared_data failed: {status}"))),
        }
    }
}
