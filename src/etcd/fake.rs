//! An in-memory etcd that answers the gateway's JSON the way etcd 3.4 does, for
//! the unit tests of everything that talks to etcd (the syncer, the admin API's
//! step machine). The end-to-end tests use the real one.
//!
//! Test code (and `bench/sync-profile`'s), never in the `.wasm`: a request it
//! cannot answer is a broken test, so it panics.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::encoding::base64::{self, Alphabet};
use crate::etcd::{self, grpc, EtcdRequest};

/// (value, create_revision, mod_revision)
type Entry = (Vec<u8>, u64, u64);
type Kvs = BTreeMap<Vec<u8>, Entry>;

#[derive(Default)]
pub struct FakeEtcd {
    pub revision: u64,
    /// key -> (value, create_revision, mod_revision), as of `revision`.
    pub kvs: Kvs,
    /// What each overwrite and delete replaced, oldest first: (the write's
    /// revision, the key, the key's state before it). A read pinned to an
    /// older revision undoes the newer ones (a key created since needs no
    /// entry: its create_revision says so), as etcd's MVCC answers it.
    pub undo: Vec<(u64, Vec<u8>, Entry)>,
    /// Reads pinned below this revision fail as etcd's do once it compacted.
    pub compacted: u64,
    /// Range reads go over gRPC, as Envoy with `grpc_upstream` sends them: the
    /// answer is worked out from the protobuf request, and comes as protobuf.
    pub grpc: bool,
    /// Keys counted by range reads so far: etcd (3.4) walks every key of a
    /// range to count it, whatever its limit.
    pub walked: usize,
}

fn b64(bytes: &[u8]) -> String {
    base64::encode(Alphabet::Standard, bytes)
}

fn unb64(value: &Value) -> Vec<u8> {
    base64::decode(Alphabet::Standard, value.as_str().unwrap_or("")).unwrap()
}

fn int(value: &Value) -> u64 {
    value.as_str().map_or(0, |text| text.parse().unwrap())
}

impl FakeEtcd {
    pub fn put(&mut self, key: &str, value: &[u8]) {
        self.put_bytes(key.as_bytes(), value);
    }

    /// `put` of a key that need not be UTF-8.
    pub fn put_bytes(&mut self, key: &[u8], value: &[u8]) {
        self.revision += 1;
        self.write(key.to_vec(), Some(value.to_vec()), self.revision);
    }

    pub fn delete(&mut self, key: &str) {
        self.revision += 1;
        self.write(key.as_bytes().to_vec(), None, self.revision);
    }

    /// Forgets every revision below `revision`, as etcd's compaction does.
    pub fn compact(&mut self, revision: u64) {
        self.compacted = self.compacted.max(revision);
        self.undo.retain(|(at, _, _)| *at > revision);
    }

    /// Puts (`Some`) or deletes `key` at revision `at`, keeping what it replaced.
    /// Returns whether anything changed.
    fn write(&mut self, key: Vec<u8>, value: Option<Vec<u8>>, at: u64) -> bool {
        let put = value.is_some();
        let previous = match value {
            Some(value) => {
                let create = self.kvs.get(&key).map_or(at, |(_, create, _)| *create);
                self.kvs.insert(key.clone(), (value, create, at))
            }
            None => self.kvs.remove(&key),
        };
        let changed = put || previous.is_some();
        if let Some(previous) = previous {
            self.undo.push((at, key, previous));
        }
        changed
    }

    /// The keys as of `pinned` (0: now).
    fn at(&self, pinned: u64) -> Cow<'_, Kvs> {
        if pinned == 0 || pinned >= self.revision {
            return Cow::Borrowed(&self.kvs);
        }
        let mut kvs = self.kvs.clone();
        kvs.retain(|_, (_, create, _)| *create <= pinned);
        for (at, key, previous) in self.undo.iter().rev() {
            if *at <= pinned {
                break;
            }
            kvs.insert(key.clone(), previous.clone());
        }
        Cow::Owned(kvs)
    }

    /// etcd's answer to a read pinned to a compacted revision.
    fn compacted_answer() -> (u32, Vec<u8>) {
        let message = "etcdserver: mvcc: required revision has been compacted";
        (
            400,
            json!({"error": message, "message": message, "code": etcd::CODE_COMPACTED})
                .to_string()
                .into_bytes(),
        )
    }

    fn is_compacted(&self, pinned: u64) -> bool {
        pinned != 0 && pinned < self.compacted
    }

    pub fn answer(&mut self, request: &EtcdRequest) -> (u32, Vec<u8>) {
        if let Some(message) = request.grpc_range.as_ref().filter(|_| self.grpc) {
            // Worked out from the protobuf alone: a field it lacks is missing here too.
            let read = grpc::parse_range_request(message).unwrap();
            let body: Value = serde_json::from_str(&etcd::range_body(&read)).unwrap();
            let (status, body) = self.answer_json(etcd::RANGE, &body);
            if status != 200 {
                // As the host reports gRPC's OUT_OF_RANGE (`host::etcd_call`).
                return (status, body);
            }
            let answer = etcd::parse_range(status, &body).unwrap();
            return (etcd::GRPC_ANSWER, grpc::range_response(&answer));
        }
        let body: Value = serde_json::from_str(&request.body).unwrap();
        self.answer_json(request.path, &body)
    }

    fn answer_json(&mut self, path: &str, body: &Value) -> (u32, Vec<u8>) {
        if path == etcd::TXN {
            // A read pinned to a compacted revision fails the whole transaction.
            let pinned_reads = ["success", "failure"]
                .iter()
                .flat_map(|branch| body[*branch].as_array().into_iter().flatten())
                .filter_map(|op| op.get("request_range"));
            if pinned_reads
                .map(|range| int(&range["revision"]))
                .any(|pinned| self.is_compacted(pinned))
            {
                return FakeEtcd::compacted_answer();
            }
            let (succeeded, responses, wrote) = self.txn(body);
            if wrote {
                self.revision += 1;
            }
            return (
                200,
                json!({"header": {"revision": self.revision.to_string()}, "succeeded": succeeded, "responses": responses})
                    .to_string()
                    .into_bytes(),
            );
        }
        let start = unb64(&body["key"]);
        let pinned = int(&body["revision"]);
        if self.is_compacted(pinned) {
            return FakeEtcd::compacted_answer();
        }
        if body.get("range_end").is_none() {
            assert_eq!(pinned, 0, "a single-key read pinned to a revision is not faked");
            return self.get(&start);
        }
        let end = unb64(&body["range_end"]);
        let min_mod = int(&body["min_mod_revision"]);
        let limit = int(&body["limit"]) as usize;
        let keys_only = body["keys_only"] == true;
        let (kvs, count, more) = {
            let kvs_at = self.at(pinned);
            let in_range: Vec<_> = kvs_at.range(start..end).collect();
            let filtered: Vec<_> = in_range.iter().filter(|(_, (_, _, m))| *m >= min_mod).collect();
            let shown = if limit > 0 {
                filtered.iter().take(limit).collect::<Vec<_>>()
            } else {
                filtered.iter().collect()
            };
            let kvs: Vec<Value> = shown
                .iter()
                .map(|(k, (v, c, m))| {
                    let value = if keys_only { String::new() } else { b64(v) };
                    json!({"key": b64(k), "value": value, "create_revision": c.to_string(), "mod_revision": m.to_string()})
                })
                .collect();
            (kvs, in_range.len(), limit > 0 && filtered.len() > limit)
        };
        self.walked += count;
        (200, json!({"header": {"revision": self.revision.to_string()}, "kvs": kvs, "count": count.to_string(), "more": more}).to_string().into_bytes())
    }

    /// A single-key range, as `etcd::get` asks.
    fn get(&self, key: &[u8]) -> (u32, Vec<u8>) {
        let kvs: Vec<Value> = self.kv_json(key).into_iter().collect();
        let count = kvs.len();
        (
            200,
            json!({"header": {"revision": self.revision.to_string()}, "kvs": kvs, "count": count.to_string()})
                .to_string()
                .into_bytes(),
        )
    }

    fn kv_json(&self, key: &[u8]) -> Option<Value> {
        self.kvs.get(key).map(|(v, c, m)| {
            json!({"key": b64(key), "value": b64(v), "create_revision": c.to_string(), "mod_revision": m.to_string()})
        })
    }

    /// A transaction (compares on MOD or CREATE revision, EQUAL; puts, deletes,
    /// ranges and nested transactions), applied as etcd does: every write of the
    /// chosen branches at the one next revision. Returns (succeeded, responses,
    /// whether anything was written).
    fn txn(&mut self, body: &Value) -> (bool, Vec<Value>, bool) {
        let at = self.revision + 1;
        let holds = body["compare"].as_array().into_iter().flatten().all(|compare| {
            let key = unb64(&compare["key"]);
            assert_eq!(compare["result"], "EQUAL");
            let (create, modified) = self.kvs.get(&key).map_or((0, 0), |(_, c, m)| (*c, *m));
            match compare["target"].as_str().unwrap() {
                "MOD" => modified == int(&compare["mod_revision"]),
                "CREATE" => create == int(&compare["create_revision"]),
                other => panic!("compare target {other} not faked"),
            }
        });
        let branch = if holds { &body["success"] } else { &body["failure"] };
        let mut responses = Vec::new();
        let mut wrote = false;
        for op in branch.as_array().into_iter().flatten() {
            if let Some(put) = op.get("request_put") {
                wrote |= self.write(unb64(&put["key"]), Some(unb64(&put["value"])), at);
                responses.push(json!({"response_put": {}}));
            } else if let Some(delete) = op.get("request_delete_range") {
                let start = unb64(&delete["key"]);
                let doomed: Vec<Vec<u8>> = match delete.get("range_end") {
                    Some(end) => self.kvs.range(start..unb64(end)).map(|(k, _)| k.clone()).collect(),
                    None => vec![start],
                };
                for key in doomed {
                    wrote |= self.write(key, None, at);
                }
                responses.push(json!({"response_delete_range": {}}));
            } else if let Some(range) = op.get("request_range") {
                let pinned = int(&range["revision"]);
                if range["count_only"] == true {
                    let count = self
                        .at(pinned)
                        .range(unb64(&range["key"])..unb64(&range["range_end"]))
                        .count();
                    self.walked += count;
                    responses.push(json!({"response_range": {"count": count.to_string()}}));
                } else if range.get("range_end").is_some() {
                    // A range filtered by creation (the change feed); no sort, no limit.
                    let min_create = int(&range["min_create_revision"]);
                    let kvs: Vec<Value> = self
                        .at(pinned)
                        .range(unb64(&range["key"])..unb64(&range["range_end"]))
                        .filter(|(_, (_, c, _))| *c >= min_create)
                        .map(|(k, (v, c, m))| json!({"key": b64(k), "value": b64(v), "create_revision": c.to_string(), "mod_revision": m.to_string()}))
                        .collect();
                    responses.push(json!({"response_range": {"kvs": kvs, "count": kvs.len().to_string()}}));
                } else {
                    let kvs: Vec<Value> = self.kv_json(&unb64(&range["key"])).into_iter().collect();
                    responses.push(json!({"response_range": {"kvs": kvs}}));
                }
            } else if let Some(nested) = op.get("request_txn") {
                let (succeeded, nested_responses, nested_wrote) = self.txn(nested);
                wrote |= nested_wrote;
                responses.push(json!({"response_txn": {"succeeded": succeeded, "responses": nested_responses}}));
            }
        }
        (holds, responses, wrote)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_at(etcd: &mut FakeEtcd, revision: u64) -> (u32, Vec<(String, String)>) {
        let body = json!({"key": b64(b"/k/"), "range_end": b64(b"/k0"), "revision": revision.to_string()});
        let (status, answer) = etcd.answer_json(etcd::RANGE, &body);
        let answer: Value = serde_json::from_slice(&answer).unwrap();
        let kvs = answer["kvs"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|kv| {
                let text = |field: &str| String::from_utf8(unb64(&kv[field])).unwrap();
                (text("key"), text("value"))
            })
            .collect();
        (status, kvs)
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn a_pinned_read_sees_the_keys_as_they_were() {
        let mut etcd = FakeEtcd::default();
        etcd.put("/k/a", b"a1"); // 1
        etcd.put("/k/b", b"b1"); // 2
        etcd.put("/k/a", b"a3"); // 3
        etcd.delete("/k/b"); // 4
        etcd.put("/k/c", b"c5"); // 5
        etcd.put("/k/b", b"b6"); // 6, created again
        assert_eq!(read_at(&mut etcd, 2).1, pairs(&[("/k/a", "a1"), ("/k/b", "b1")]));
        assert_eq!(read_at(&mut etcd, 3).1, pairs(&[("/k/a", "a3"), ("/k/b", "b1")]));
        assert_eq!(read_at(&mut etcd, 4).1, pairs(&[("/k/a", "a3")]));
        assert_eq!(read_at(&mut etcd, 5).1, pairs(&[("/k/a", "a3"), ("/k/c", "c5")]));
        let now = pairs(&[("/k/a", "a3"), ("/k/b", "b6"), ("/k/c", "c5")]);
        assert_eq!(read_at(&mut etcd, 0).1, now);
        assert_eq!(read_at(&mut etcd, 6).1, now);
        etcd.compact(4);
        assert_eq!(read_at(&mut etcd, 3).0, 400, "compacted");
        assert_eq!(read_at(&mut etcd, 4).1, pairs(&[("/k/a", "a3")]));
        assert!(matches!(
            etcd::parse_range(400, &FakeEtcd::compacted_answer().1),
            Err(etcd::EtcdError::Server {
                code: etcd::CODE_COMPACTED,
                ..
            })
        ));
    }
}
