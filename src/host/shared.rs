//! What every HTTP context of one filter configuration shares, built once in
//! `on_configure`: the compiled configuration, metric ids, and whether this
//! worker has seen the replica complete a first sync.

use std::cell::Cell;

use super::abi;
use super::etcd_call::now_ms;
use super::store::HostSharedData;
use crate::admin::{AdminConfig, AdminContext};
use crate::directory::Directory;
use crate::request::gate::Gate;
use crate::request::metrics::Counter;

pub struct Shared {
    pub gate: Gate,
    pub admin: Option<AdminConfig>,
    /// An empty admin configuration, for contexts without an admin API
    /// (self-service registration).
    pub no_admin: AdminConfig,
    pub directory: Directory,
    /// Decision counter ids by `Counter::index()`; empty with `"metrics": false`.
    pub counters: Vec<u32>,
    /// Whether this worker has seen the replica complete a first full sync.
    /// Only ever goes from false to true.
    pub synced: Cell<bool>,
    pub approvals: crate::directory::expiry::Approvals,
}

impl Shared {
    pub fn count(&self, counter: Counter) {
        if let Some(&id) = counter.index().and_then(|i| self.counters.get(i)) {
            // A failed increment must not change any decision.
            let _ = abi::increment_metric(id, 1);
        }
    }

    /// The admin API's context; `None` for a configuration without one.
    pub fn admin_context(&self) -> Option<AdminContext<'_>> {
        Some(AdminContext {
            config: self.admin.as_ref()?,
            ..self.registration_context()
        })
    }

    /// The context for the one etcd write a configuration without an admin API
    /// makes: self-service registration.
    pub fn registration_context(&self) -> AdminContext<'_> {
        let now = now_ms();
        AdminContext {
            config: self.admin.as_ref().unwrap_or(&self.no_admin),
            directory: &self.directory,
            namespace: &self.gate.namespace,
            store: &HostSharedData,
            now_ms: now,
            operation: operation_id(now),
            approvals: self.approvals,
        }
    }
}

/// A unique id for one write.
pub use crate::encoding::unique_id as operation_id;
