//! `SharedStore` over proxy-wasm shared data.

use proxy_wasm::hostcalls;
use proxy_wasm::types::Status;

use crate::directory::{SharedStore, StoreError};

pub struct HostSharedData;

impl SharedStore for HostSharedData {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
        match hostcalls::get_shared_data(key) {
            Ok((Some(value), Some(cas))) => Ok(Some((value, cas))),
            // A value without a CAS token cannot be written back safely; report
            // it as present with CAS 0 so a write attempt is refused, not blind.
            Ok((Some(value), None)) => Ok(Some((value, 0))),
            Ok((None, _)) => Ok(None),
            Err(Status::NotFound) => Ok(None),
            Err(status) => Err(StoreError::Host(format!("get_shared_data failed: {status:?}"))),
        }
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        match hostcalls::set_shared_data(key, Some(value), cas) {
            Ok(()) => Ok(()),
            Err(Status::CasMismatch) => Err(StoreError::CasMismatch),
            Err(status) => Err(StoreError::Host(format!("set_shared_data failed: {status:?}"))),
        }
    }
}
