//! Carries out the event deliverer (`events::deliverer`) of a worker whose
//! configuration has `events`: sends what each tick asks for, hands every
//! answer back, and publishes the deliverer's view in shared data for this
//! gateway's admin API and health.

use std::time::Duration;

use proxy_wasm::hostcalls;

use super::abi::{self, Buffer};
use super::etcd_call;
use super::store::HostSharedData;
use crate::directory::keys;
use crate::directory::write_unless;
use crate::etcd::members::MemberIndex;
use crate::etcd::{EtcdConfig, EtcdError};
use crate::events::deliverer::{Deliverer, Send, SinkRequest};

/// A holder's view stays shown this long over a candidate's.
const HOLDER_VIEW_MS: u64 = 3000;

pub struct EventsDuty {
    pub deliverer: Deliverer,
    pub etcd: EtcdConfig,
    pub namespace: String,
    /// The member the etcd call in flight went to.
    member: MemberIndex,
    backlog_gauge: Option<u32>,
    last_view_ms: u64,
}

impl EventsDuty {
    pub fn new(deliverer: Deliverer, etcd: EtcdConfig, namespace: &str, backlog_gauge: Option<u32>) -> EventsDuty {
        EventsDuty {
            deliverer,
            etcd,
            namespace: namespace.to_string(),
            member: 0,
            backlog_gauge,
            last_view_ms: 0,
        }
    }

    pub fn tick(&mut self, now: u64) {
        for send in self.deliverer.tick(now) {
            match send {
                Send::Etcd(request) => match etcd_call::dispatch(&self.etcd, &request) {
                    Ok((token, member)) => {
                        self.member = member;
                        self.deliverer.sent_etcd(token, now);
                    }
                    Err(error) => self.deliverer.not_sent_etcd(&error),
                },
                Send::Sink { sink, request } => match dispatch_to_sink(&request) {
                    Ok(token) => self.deliverer.sent_sink(sink, token, now),
                    Err(error) => self.deliverer.not_sent_sink(sink, error, now),
                },
            }
        }
        if now.saturating_sub(self.last_view_ms) >= 500 {
            self.last_view_ms = now;
            self.publish(now);
        }
    }

    pub fn owns(&self, token: u32) -> bool {
        self.deliverer.owns(token)
    }

    pub fn on_answer(&mut self, token: u32, body_size: usize, now: u64) {
        let answer = if self.deliverer.is_sink_call(token) {
            read_sink_answer(body_size)
        } else {
            etcd_call::read_answer(&self.etcd, self.member, body_size)
        };
        self.deliverer.on_answer(token, answer, now);
    }

    fn publish(&self, now: u64) {
        let delivering = self.deliverer.delivering(now);
        let view = self.deliverer.view(now);
        let Ok(bytes) = serde_json::to_vec(&view) else { return };
        let key = keys::events_view(&self.namespace);
        // A candidate does not hide a holder's fresh view (the holder's is live).
        let result = write_unless(&HostSharedData, &key, &bytes, |current| {
            !delivering
                && serde_json::from_slice::<serde_json::Value>(current).is_ok_and(|shown| {
                    shown.get("delivering") == Some(&serde_json::Value::Bool(true))
                        && now.saturating_sub(shown.get("at_ms").and_then(serde_json::Value::as_u64).unwrap_or(0))
                            < HOLDER_VIEW_MS
                })
        });
        if let Err(error) = result {
            log::warn!("events: cannot publish the delivery view: {error:?}");
        }
        if let Some(gauge) = self.backlog_gauge {
            if delivering {
                let _ = abi::record_metric(gauge, self.deliverer.backlog());
            }
        }
    }
}

fn dispatch_to_sink(request: &SinkRequest) -> Result<u32, String> {
    let mut headers: Vec<(&str, &str)> = vec![
        (":method", "POST"),
        (":path", request.path.as_str()),
        (":authority", request.authority.as_str()),
    ];
    headers.extend(request.headers.iter().map(|(name, value)| (*name, value.as_str())));
    hostcalls::dispatch_http_call(
        &request.upstream,
        headers,
        Some(request.body.as_bytes()),
        vec![],
        Duration::from_millis(request.timeout_ms),
    )
    .map_err(|status| format!("dispatch_http_call to {:?} failed: {status:?}", request.upstream))
}

/// A receiver's status and the start of its body; none: no answer.
fn read_sink_answer(body_size: usize) -> Result<(u32, Vec<u8>), EtcdError> {
    let status = etcd_call::call_status()?;
    let body = abi::buffer(Buffer::CallResponseBody, 0, body_size.min(512)).unwrap_or_default();
    Ok((status, body))
}
