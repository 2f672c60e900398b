//! etcd's v3 JSON gateway (`/v3/kv/range`, `/v3/kv/txn`): the requests the filter
//! sends and the parsing of the answers. Keys and values travel base64-encoded,
//! 64-bit numbers as JSON strings. Pure: the host glue sends what this builds.
//!
//! Every change is a transaction conditioned on the key's revision (or on its
//! absence), whose failure branch reads the key back, so a lost race answers
//! with the state that won.

// The in-memory etcd of the unit tests; `bench/sync-profile` drives the syncer with it.
#[cfg(any(test, feature = "fake-etcd"))]
pub mod fake;
pub mod grpc;
pub mod members;

use serde::Deserialize;
use serde_json::{json, Value};

use crate::encoding::base64::{self, Alphabet};

/// Where a directory's etcd is and how the filter talks to it (compiled from
/// the configuration's `directory.etcd`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdConfig {
    /// Envoy: a cluster name (usually one, whose endpoints are the members).
    /// Kong: each member's host:port.
    pub members: members::Members,
    /// Envoy: a cluster speaking HTTP/2 to etcd; the syncer's range reads then
    /// go over etcd's gRPC API (`grpc`). Kong traps on gRPC calls.
    pub grpc_upstream: Option<String>,
    /// The `:authority` of calls to etcd.
    pub authority: String,
    /// Every key of this directory starts with it, e.g. `/devportal/`.
    pub key_prefix: String,
    pub timeout_ms: u64,
    pub sync_interval_ms: u64,
    /// Change log entries (events) older than this are deleted by the syncer.
    pub change_log_retention_ms: u64,
}

/// A POST to the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdRequest {
    pub path: &'static str,
    pub body: String,
    /// A range read's `RangeRequest`, for etcd's gRPC API (`grpc`); none for a
    /// transaction.
    pub grpc_range: Option<Vec<u8>>,
}

pub const RANGE: &str = "/v3/kv/range";
pub const TXN: &str = "/v3/kv/txn";

fn b64(bytes: &[u8]) -> String {
    base64::encode(Alphabet::Standard, bytes)
}

/// The end of the range of keys starting with `prefix` (etcd's `range_end`).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Every byte 0xff: "to the end of the keyspace".
    vec![0]
}

/// One page of the keys in `[start, end)`, in key order. `revision` pins every
/// page of a full read to one snapshot.
pub fn range_span(start: &[u8], end: &[u8], revision: Option<u64>, limit: u32) -> EtcdRequest {
    range(grpc::RangeRead {
        key: start.to_vec(),
        range_end: end.to_vec(),
        limit,
        // Revision 0 means "the latest" to etcd.
        revision: revision.unwrap_or(0),
        ..Default::default()
    })
}

/// The keys (only) in `[start, end)` at `revision`, a page at a time.
pub fn key_page(start: &[u8], end: &[u8], revision: u64, limit: u32) -> EtcdRequest {
    range(grpc::RangeRead {
        key: start.to_vec(),
        range_end: end.to_vec(),
        limit,
        revision,
        keys_only: true,
        ..Default::default()
    })
}

/// The keys in `[start, end)` changed after `revision`; the answer's `count`
/// still counts every key in the range (etcd filters after counting), which is
/// how a deletion shows.
pub fn range_changed_since(start: &[u8], end: &[u8], revision: u64) -> EtcdRequest {
    // A limit of 0 is none, to etcd.
    range_changed_since_at_most(start, end, revision, 0)
}

/// `range_changed_since`, at most `limit` of them (`more` says there were more:
/// etcd filters, then truncates).
pub fn range_changed_since_at_most(start: &[u8], end: &[u8], revision: u64, limit: u32) -> EtcdRequest {
    range(grpc::RangeRead {
        key: start.to_vec(),
        range_end: end.to_vec(),
        limit,
        min_mod_revision: revision + 1,
        ..Default::default()
    })
}

pub fn get(key: &[u8]) -> EtcdRequest {
    range(grpc::RangeRead {
        key: key.to_vec(),
        ..Default::default()
    })
}

/// A range read, in both APIs' terms: the gateway's JSON body and gRPC's message.
fn range(read: grpc::RangeRead) -> EtcdRequest {
    EtcdRequest {
        path: RANGE,
        body: range_body(&read),
        grpc_range: Some(grpc::range_request(&read)),
    }
}

/// A range read as the gateway's JSON body: numbers as strings, zero fields
/// left out (they are etcd's defaults).
pub(crate) fn range_body(read: &grpc::RangeRead) -> String {
    let mut body = serde_json::Map::new();
    body.insert("key".into(), b64(&read.key).into());
    if !read.range_end.is_empty() {
        body.insert("range_end".into(), b64(&read.range_end).into());
    }
    for (name, number) in [
        ("limit", u64::from(read.limit)),
        ("revision", read.revision),
        ("min_mod_revision", read.min_mod_revision),
    ] {
        if number != 0 {
            body.insert(name.into(), number.to_string().into());
        }
    }
    if read.keys_only {
        body.insert("keys_only".into(), true.into());
    }
    Value::Object(body).to_string()
}

fn read_back(key: &[u8]) -> Value {
    json!([{"request_range": {"key": b64(key)}}])
}

/// Puts of other keys that commit with a change, or not at all (the change
/// log's entry, `events::Change::log_entry`).
pub type Also<'a> = &'a [(Vec<u8>, Vec<u8>)];

fn put_op(key: &[u8], value: &[u8]) -> Value {
    json!({"request_put": {"key": b64(key), "value": b64(value)}})
}

/// `first`, then a put of each of `also`.
fn with_also(first: Vec<Value>, also: Also<'_>) -> Value {
    let mut ops = first;
    ops.extend(also.iter().map(|(key, value)| put_op(key, value)));
    Value::Array(ops)
}

/// Writes `value` (and `also`) only if `key` does not exist.
pub fn create(key: &[u8], value: &[u8], also: Also<'_>) -> EtcdRequest {
    let body = json!({
        "compare": [{"key": b64(key), "target": "CREATE", "result": "EQUAL", "create_revision": "0"}],
        "success": with_also(vec![put_op(key, value)], also),
        "failure": read_back(key),
    });
    EtcdRequest {
        path: TXN,
        body: body.to_string(),
        grpc_range: None,
    }
}

/// Deletes `key` if it is still at `mod_revision`, and in the same transaction
/// keeps `archived` (its history, with the deletion) under `archive_key`.
pub fn delete_and_archive(
    key: &[u8],
    mod_revision: u64,
    archive_key: &[u8],
    archived: &[u8],
    also: Also<'_>,
) -> EtcdRequest {
    let success = with_also(
        vec![
            json!({"request_delete_range": {"key": b64(key)}}),
            put_op(archive_key, archived),
        ],
        also,
    );
    let body = json!({
        "compare": [{"key": b64(key), "target": "MOD", "result": "EQUAL", "mod_revision": mod_revision.to_string()}],
        "success": success,
        "failure": read_back(key),
    });
    EtcdRequest {
        path: TXN,
        body: body.to_string(),
        grpc_range: None,
    }
}

/// Replaces `key` with `value` (and writes `also`) only if it is still at `mod_revision`.
pub fn replace(key: &[u8], value: &[u8], mod_revision: u64, also: Also<'_>) -> EtcdRequest {
    let body = json!({
        "compare": [{"key": b64(key), "target": "MOD", "result": "EQUAL", "mod_revision": mod_revision.to_string()}],
        "success": with_also(vec![put_op(key, value)], also),
        "failure": read_back(key),
    });
    EtcdRequest {
        path: TXN,
        body: body.to_string(),
        grpc_range: None,
    }
}

/// Writes `marker` and every absent key of `entries` in one transaction, unless
/// `marker` exists: seeding from configuration happens once per directory.
/// A key to create, its value, and what to write with it (its change log entry).
pub type SeedEntry = (Vec<u8>, Vec<u8>, Vec<(Vec<u8>, Vec<u8>)>);

/// Each entry's `also` (its change log entry) is written with it, only if it is.
pub fn seed_once(marker: &[u8], entries: &[SeedEntry]) -> EtcdRequest {
    let mut success = vec![json!({"request_put": {"key": b64(marker), "value": b64(b"1")}})];
    for (key, value, also) in entries {
        success.push(json!({"request_txn": {
            "compare": [{"key": b64(key), "target": "CREATE", "result": "EQUAL", "create_revision": "0"}],
            "success": with_also(vec![put_op(key, value)], also),
        }}));
    }
    let body = json!({
        "compare": [{"key": b64(marker), "target": "CREATE", "result": "EQUAL", "create_revision": "0"}],
        "success": success,
    });
    EtcdRequest {
        path: TXN,
        body: body.to_string(),
        grpc_range: None,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kv {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub create_revision: u64,
    pub mod_revision: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeAnswer {
    /// The store's revision the read saw.
    pub revision: u64,
    pub kvs: Vec<Kv>,
    /// Every key in the range, before `min_mod_revision` filtering and `limit`.
    pub count: u64,
    pub more: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnAnswer {
    /// The store's revision after the transaction: a put's new `mod_revision`.
    pub revision: u64,
    pub succeeded: bool,
    /// On failure, the key as it is now (`None`: absent).
    pub current: Option<Kv>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EtcdError {
    /// The call never reached etcd (no connection could be made to any member):
    /// nothing was sent, so it may be sent again, to another member.
    NotSent(String),
    /// No answer: a timeout, a reset, or a host that does not say which; a write
    /// may or may not have been applied.
    Unreachable(String),
    /// etcd answered with an error (e.g. a compacted revision).
    Server { code: i64, message: String },
    /// The answer is not what the gateway sends.
    Malformed(String),
}

impl std::fmt::Display for EtcdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EtcdError::NotSent(why) => write!(f, "etcd not reached: {why}"),
            EtcdError::Unreachable(why) => write!(f, "etcd unreachable: {why}"),
            EtcdError::Server { code, message } => write!(f, "etcd error {code}: {message}"),
            EtcdError::Malformed(why) => write!(f, "unexpected answer from etcd: {why}"),
        }
    }
}

impl EtcdError {
    /// Whether a call that failed this way was certainly never applied.
    pub fn not_sent(&self) -> bool {
        matches!(self, EtcdError::NotSent(_))
    }

    /// A failure of the way to etcd (not an answer of etcd's), after which an
    /// idempotent call (a read) may simply be sent again.
    pub fn transport(&self) -> bool {
        matches!(self, EtcdError::NotSent(_) | EtcdError::Unreachable(_))
    }
}

/// What the proxy itself answered instead of etcd, if anything: Envoy's local
/// replies to a call (503 "upstream connect error ... connection failure" or "no
/// healthy upstream": nothing was sent; 504 "upstream request timeout": sent,
/// outcome unknown). etcd's own errors are JSON and are left to the parsers.
pub fn proxy_failure(status: u32, body: &[u8]) -> Option<EtcdError> {
    let text = String::from_utf8_lossy(body);
    match status {
        503 if text.contains("connection failure") || text.contains("no healthy upstream") => {
            Some(EtcdError::NotSent(text.trim().to_string()))
        }
        503 | 504 if !text.trim_start().starts_with('{') => Some(EtcdError::Unreachable(format!(
            "HTTP status {status} from the proxy: {}",
            text.trim()
        ))),
        _ => None,
    }
}

/// gRPC's OUT_OF_RANGE: the pinned revision was compacted away.
pub const CODE_COMPACTED: i64 = 11;

/// An int64 as the gateway writes it: a string, or absent for zero.
#[derive(Debug, Default, Clone, Copy)]
struct Int(u64);

impl<'de> Deserialize<'de> for Int {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Int, D::Error> {
        match Value::deserialize(deserializer)? {
            Value::String(text) => text.parse().map(Int).map_err(serde::de::Error::custom),
            Value::Number(number) => number
                .as_u64()
                .map(Int)
                .ok_or_else(|| serde::de::Error::custom("negative")),
            other => Err(serde::de::Error::custom(format!("expected an integer, got {other}"))),
        }
    }
}

#[derive(Deserialize)]
struct RawHeader {
    #[serde(default)]
    revision: Int,
}

#[derive(Deserialize)]
struct RawKv {
    key: String,
    #[serde(default)]
    value: String,
    #[serde(default)]
    create_revision: Int,
    #[serde(default)]
    mod_revision: Int,
}

#[derive(Deserialize)]
struct RawRange {
    header: RawHeader,
    #[serde(default)]
    kvs: Vec<RawKv>,
    #[serde(default)]
    count: Int,
    #[serde(default)]
    more: bool,
}

#[derive(Deserialize)]
struct RawTxn {
    header: RawHeader,
    #[serde(default)]
    succeeded: bool,
    #[serde(default)]
    responses: Vec<RawOpResponse>,
}

#[derive(Deserialize)]
struct RawOpResponse {
    #[serde(default)]
    response_range: Option<RawRangeInTxn>,
}

#[derive(Deserialize)]
struct RawRangeInTxn {
    #[serde(default)]
    kvs: Vec<RawKv>,
    #[serde(default)]
    count: Int,
    #[serde(default)]
    more: bool,
}

#[derive(Deserialize)]
struct RawError {
    #[serde(default)]
    code: i64,
    #[serde(default)]
    message: String,
}

fn decode_kv(raw: RawKv) -> Result<Kv, EtcdError> {
    let key =
        base64::decode(Alphabet::Standard, &raw.key).ok_or_else(|| EtcdError::Malformed("key is not base64".into()))?;
    let value = base64::decode(Alphabet::Standard, &raw.value)
        .ok_or_else(|| EtcdError::Malformed("value is not base64".into()))?;
    Ok(Kv {
        key,
        value,
        create_revision: raw.create_revision.0,
        mod_revision: raw.mod_revision.0,
    })
}

/// Checks the HTTP status and turns an error body into `EtcdError::Server`.
fn answer_body(status: u32, body: &[u8]) -> Result<&[u8], EtcdError> {
    if status == 200 {
        return Ok(body);
    }
    match serde_json::from_slice::<RawError>(body) {
        Ok(error) if !error.message.is_empty() => Err(EtcdError::Server {
            code: error.code,
            message: error.message,
        }),
        _ => Err(EtcdError::Malformed(format!("HTTP status {status}"))),
    }
}

/// The status slot of an answer that came over gRPC (`grpc`): its body is a
/// `RangeResponse`. No HTTP answer has status 0.
pub const GRPC_ANSWER: u32 = 0;

pub fn parse_range(status: u32, body: &[u8]) -> Result<RangeAnswer, EtcdError> {
    if status == GRPC_ANSWER {
        return grpc::parse_range_response(body);
    }
    let raw: RawRange =
        serde_json::from_slice(answer_body(status, body)?).map_err(|e| EtcdError::Malformed(e.to_string()))?;
    let kvs = raw.kvs.into_iter().map(decode_kv).collect::<Result<Vec<_>, _>>()?;
    Ok(RangeAnswer {
        revision: raw.header.revision.0,
        kvs,
        count: raw.count.0,
        more: raw.more,
    })
}

pub fn parse_txn(status: u32, body: &[u8]) -> Result<TxnAnswer, EtcdError> {
    let raw: RawTxn =
        serde_json::from_slice(answer_body(status, body)?).map_err(|e| EtcdError::Malformed(e.to_string()))?;
    let current = if raw.succeeded {
        None
    } else {
        let read = raw.responses.into_iter().find_map(|r| r.response_range);
        match read.and_then(|r| r.kvs.into_iter().next()) {
            Some(kv) => Some(decode_kv(kv)?),
            None => None,
        }
    };
    Ok(TxnAnswer {
        revision: raw.header.revision.0,
        succeeded: raw.succeeded,
        current,
    })
}

// ---- General transactions (the event deliverer's) -------------------------------

/// A transaction of `compare`, `success` and `failure` operations.
pub fn txn(compare: Vec<Value>, success: Vec<Value>, failure: Vec<Value>) -> EtcdRequest {
    EtcdRequest {
        path: TXN,
        body: json!({"compare": compare, "success": success, "failure": failure}).to_string(),
        grpc_range: None,
    }
}

pub fn compare_mod_revision(key: &[u8], mod_revision: u64) -> Value {
    json!({"key": b64(key), "target": "MOD", "result": "EQUAL", "mod_revision": mod_revision.to_string()})
}

pub fn compare_absent(key: &[u8]) -> Value {
    json!({"key": b64(key), "target": "CREATE", "result": "EQUAL", "create_revision": "0"})
}

pub fn op_put(key: &[u8], value: &[u8]) -> Value {
    put_op(key, value)
}

pub fn op_get(key: &[u8]) -> Value {
    json!({"request_range": {"key": b64(key)}})
}

/// `key` as it was at `revision` (etcd keeps old revisions until compaction).
pub fn op_get_at(key: &[u8], revision: u64) -> Value {
    json!({"request_range": {"key": b64(key), "revision": revision.to_string()}})
}

/// A transaction nested in another (etcd 3.3 and later).
pub fn op_txn(compare: Vec<Value>, success: Vec<Value>) -> Value {
    json!({"request_txn": {"compare": compare, "success": success}})
}

pub fn op_delete_range(start: &[u8], end: &[u8]) -> Value {
    json!({"request_delete_range": {"key": b64(start), "range_end": b64(end)}})
}

/// The keys in `[start, end)` created after `revision`, in key order (the
/// change feed: entries of the change log, which are named by time).
pub fn op_created_since(start: &[u8], end: &[u8], revision: u64) -> Value {
    json!({"request_range": {"key": b64(start), "range_end": b64(end), "min_create_revision": (revision + 1).to_string()}})
}

/// Which keys under a prefix a range reads, in which order.
pub enum Order {
    /// Created after a revision, oldest first.
    CreatedAfter(u64),
    /// Last modified after a revision, oldest change first.
    ModifiedAfter(u64),
    /// Newest first (by creation).
    Newest,
}

/// Up to `limit` keys under `prefix`. etcd sorts before it applies the limit.
pub fn op_range_prefix(prefix: &[u8], order: Order, limit: u32) -> Value {
    let (target, ascending, filter) = match order {
        Order::CreatedAfter(revision) => ("CREATE", true, Some(("min_create_revision", revision + 1))),
        Order::ModifiedAfter(revision) => ("MOD", true, Some(("min_mod_revision", revision + 1))),
        Order::Newest => ("CREATE", false, None),
    };
    let mut range = serde_json::Map::new();
    range.insert("key".into(), b64(prefix).into());
    range.insert("range_end".into(), b64(&prefix_end(prefix)).into());
    range.insert("limit".into(), limit.to_string().into());
    range.insert("sort_target".into(), target.into());
    range.insert(
        "sort_order".into(),
        (if ascending { "ASCEND" } else { "DESCEND" }).into(),
    );
    if let Some((field, revision)) = filter {
        range.insert(field.into(), revision.to_string().into());
    }
    json!({ "request_range": range })
}

/// How many keys are in `[start, end of prefix)` (etcd's `count`, before any
/// revision filter).
pub fn op_count_from(prefix: &[u8], start: &[u8]) -> Value {
    json!({"request_range": {"key": b64(start), "range_end": b64(&prefix_end(prefix)), "count_only": true}})
}

/// How many keys each of `ranges` (`[start, end)`) held at `revision`, in one
/// transaction of `count_only` ranges (etcd walks its index; no value is read).
pub fn count_ranges(ranges: &[(Vec<u8>, Vec<u8>)], revision: u64) -> EtcdRequest {
    let success = ranges
        .iter()
        .map(|(start, end)| {
            json!({"request_range": {"key": b64(start), "range_end": b64(end), "revision": revision.to_string(), "count_only": true}})
        })
        .collect();
    txn(Vec::new(), success, Vec::new())
}

/// A transaction's outcome and the answers of its range operations, in order.
#[derive(Debug)]
pub struct TxnReads {
    pub revision: u64,
    pub succeeded: bool,
    pub ranges: Vec<RangeAnswer>,
}

pub fn parse_txn_reads(status: u32, body: &[u8]) -> Result<TxnReads, EtcdError> {
    let raw: RawTxn =
        serde_json::from_slice(answer_body(status, body)?).map_err(|e| EtcdError::Malformed(e.to_string()))?;
    let revision = raw.header.revision.0;
    let ranges = raw
        .responses
        .into_iter()
        .filter_map(|r| r.response_range)
        .map(|range| {
            Ok(RangeAnswer {
                revision,
                kvs: range.kvs.into_iter().map(decode_kv).collect::<Result<Vec<_>, _>>()?,
                count: range.count.0,
                more: range.more,
            })
        })
        .collect::<Result<Vec<_>, EtcdError>>()?;
    Ok(TxnReads {
        revision,
        succeeded: raw.succeeded,
        ranges,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_proxy_s_own_failures_are_told_apart() {
        let refused = b"upstream connect error or disconnect/reset before headers. reset reason: remote connection failure, transport failure reason: delayed connect error: Connection refused";
        assert!(proxy_failure(503, refused).unwrap().not_sent());
        assert!(proxy_failure(503, b"no healthy upstream").unwrap().not_sent());
        let timeout = proxy_failure(504, b"upstream request timeout").unwrap();
        assert!(!timeout.not_sent() && timeout.transport());
        let reset = b"upstream connect error or disconnect/reset before headers. reset reason: connection termination";
        assert!(!proxy_failure(503, reset).unwrap().not_sent(), "may have been sent");
        assert!(proxy_failure(503, br#"{"error":"etcdserver: leader changed","code":14}"#).is_none());
        assert!(proxy_failure(200, b"{}").is_none());
    }

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"/p/dev/"), b"/p/dev0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), b"\0");
    }

    // The bodies below are what etcd 3.4's gateway answered to curl.
    #[test]
    fn parses_ranges() {
        let body = br#"{"header":{"cluster_id":"1","member_id":"2","revision":"4","raft_term":"2"},"kvs":[{"key":"L3AvZGV2L2E=","create_revision":"2","mod_revision":"2","version":"1","value":"dmE="}],"more":true,"count":"3"}"#;
        let answer = parse_range(200, body).unwrap();
        assert_eq!(answer.revision, 4);
        assert_eq!(answer.count, 3);
        assert!(answer.more);
        assert_eq!(
            answer.kvs,
            vec![Kv {
                key: b"/p/dev/a".to_vec(),
                value: b"va".to_vec(),
                create_revision: 2,
                mod_revision: 2
            }]
        );
        let empty = br#"{"header":{"cluster_id":"1","member_id":"2","revision":"6","raft_term":"2"}}"#;
        assert_eq!(
            parse_range(200, empty).unwrap(),
            RangeAnswer {
                revision: 6,
                kvs: vec![],
                count: 0,
                more: false
            }
        );
    }

    #[test]
    fn parses_transactions() {
        let won = br#"{"header":{"revision":"5"},"succeeded":true,"responses":[{"response_put":{"header":{"revision":"5"}}}]}"#;
        assert_eq!(
            parse_txn(200, won).unwrap(),
            TxnAnswer {
                revision: 5,
                succeeded: true,
                current: None
            }
        );
        let lost = br#"{"header":{"revision":"4"},"responses":[{"response_range":{"header":{"revision":"4"},"kvs":[{"key":"L3AvZGV2L2E=","create_revision":"2","mod_revision":"3","version":"2","value":"dmE="}],"count":"1"}}]}"#;
        let answer = parse_txn(200, lost).unwrap();
        assert!(!answer.succeeded);
        assert_eq!(answer.current.unwrap().mod_revision, 3);
        let gone = br#"{"header":{"revision":"4"},"responses":[{"response_range":{"header":{"revision":"4"}}}]}"#;
        assert_eq!(parse_txn(200, gone).unwrap().current, None);
    }

    #[test]
    fn errors_are_named() {
        let compacted = br#"{"error":"etcdserver: mvcc: required revision has been compacted","message":"etcdserver: mvcc: required revision has been compacted","code":11}"#;
        assert!(matches!(
            parse_range(400, compacted),
            Err(EtcdError::Server {
                code: CODE_COMPACTED,
                ..
            })
        ));
        assert!(matches!(
            parse_range(503, b"upstream connect error"),
            Err(EtcdError::Malformed(_))
        ));
        assert!(matches!(parse_range(200, b"{}"), Err(EtcdError::Malformed(_))));
        assert!(matches!(
            parse_range(200, br#"{"header":{},"kvs":[{"key":"!!"}]}"#),
            Err(EtcdError::Malformed(_))
        ));
        assert!(matches!(
            parse_range(200, br#"{"header":{"revision":"-1"}}"#),
            Err(EtcdError::Malformed(_))
        ));
    }

    #[test]
    fn requests_carry_conditions() {
        let request = replace(b"/p/dev/a", b"v", 7, &[(b"/p/events/1".to_vec(), b"e".to_vec())]);
        assert_eq!(request.path, TXN);
        let body: Value = serde_json::from_str(&request.body).unwrap();
        assert_eq!(body["compare"][0]["mod_revision"], "7");
        assert_eq!(body["compare"][0]["target"], "MOD");
        assert!(
            request.body.contains(&b64(b"/p/events/1")),
            "the log entry commits with the change"
        );
        let body: Value = serde_json::from_str(&range_changed_since(b"/p/dev/", b"/p/dev0", 10).body).unwrap();
        assert_eq!(body["min_mod_revision"], "11");
    }
}
