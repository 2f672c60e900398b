//! Self-service registration (`unknown_developers: request`): an unknown
//! developer opening a portal page is created in etcd as Requested, once, and
//! shown the Requested answer.

use std::borrow::Cow;

use proxy_wasm::types::Action;

use super::etcd_call::{self, now_ms};
use super::http::{respond, unconfigured, GateHttp, Waiting};
use super::root::Shared;
use super::store::HostSharedData;
use crate::config::Directory;
use crate::developer::Developer;
use crate::directory::Status;
use crate::etcd::{self, EtcdError};
use crate::replica::{self, Entry};
use crate::responses::{LocalResponse, Refusal};
use crate::sync;

impl GateHttp {
    /// Create the developer as Requested (only if absent), then show the
    /// pending answer.
    pub(super) fn register(
        &mut self,
        shared: &Shared,
        email: &str,
        then: Cow<'_, LocalResponse>,
        target: &str,
    ) -> Action {
        let Directory::Etcd(etcd) = &shared.directory else {
            return respond(&then);
        };
        let developer = Developer::register(
            email,
            Status::Requested,
            serde_json::Map::new(),
            "self-service",
            now_ms(),
        );
        let request = etcd::create(
            &sync::developer_etcd_key(&etcd.key_prefix, email),
            &developer.to_stored(),
        );
        match etcd_call::dispatch(etcd, &request) {
            Ok(token) => {
                self.waiting = Waiting::Registration {
                    token,
                    developer,
                    then: then.into_owned(),
                    target: target.to_string(),
                };
                Action::Pause
            }
            Err(_) => respond(&directory_unavailable(shared)),
        }
    }
}

/// The answer once etcd took (or refused) a self-service registration.
pub(super) fn registered(
    shared: &Shared,
    developer: &Developer,
    then: LocalResponse,
    target: &str,
    answer: Result<(u32, Vec<u8>), EtcdError>,
) -> LocalResponse {
    let namespace = &shared.gate.namespace;
    let txn = match answer.and_then(|(status, body)| etcd::parse_txn(status, &body)) {
        Ok(txn) => txn,
        Err(error) => {
            log::warn!(
                "devportal-gate: self-service registration of {:?} failed: {error}",
                developer.email
            );
            return directory_unavailable(shared);
        }
    };
    if txn.succeeded {
        let _ = replica::apply(
            &HostSharedData,
            namespace,
            &developer.email,
            txn.revision,
            Entry::Present(developer),
        );
        return then;
    }
    // Registered meanwhile (another gateway, an admin): take etcd's word for it
    // and have the client ask again, decided from that state this time.
    let Some(kv) = txn.current else {
        return directory_unavailable(shared);
    };
    let entry = Developer::from_stored(&developer.email, &kv.value);
    let _ = match &entry {
        Ok(current) => replica::apply(
            &HostSharedData,
            namespace,
            &developer.email,
            kv.mod_revision,
            Entry::Present(current),
        ),
        Err(_) => replica::apply(
            &HostSharedData,
            namespace,
            &developer.email,
            kv.mod_revision,
            Entry::Unreadable,
        ),
    };
    LocalResponse {
        status: 307,
        headers: vec![
            ("location", target.to_string()),
            ("cache-control", "no-store".to_string()),
        ],
        body: Vec::new(),
    }
}

fn directory_unavailable(shared: &Shared) -> LocalResponse {
    shared
        .gate
        .responses
        .for_refusal(Refusal::DirectoryUnavailable, false)
        .cloned()
        .unwrap_or_else(unconfigured)
}
