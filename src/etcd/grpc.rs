//! Range reads over etcd's gRPC API (`etcdserverpb.KV/Range`), for Envoy.
//!
//! etcd's JSON gateway costs it about 13 s of CPU to serve a million keys; its
//! gRPC API serves the same reads for about 1.6 s (`bench/GRPC-PROBE.md`), and
//! the answer needs no base64. Only reads use it: a range read is idempotent,
//! so a failed one is simply read again over the gateway. Kong's engine traps
//! on gRPC calls (docs/hosts.md): there, everything stays on the gateway.
//!
//! The protobuf is written and read by hand: three small messages, and the
//! answer is untrusted input, so every read is bounds-checked.

use super::{EtcdError, Kv, RangeAnswer};

pub const SERVICE: &str = "etcdserverpb.KV";
pub const METHOD: &str = "Range";

/// gRPC's status codes the syncer tells apart (the rest are failures of the way).
pub const STATUS_OK: u32 = 0;
pub const STATUS_OUT_OF_RANGE: u32 = 11;

/// A read, as both APIs take it; zero (empty) fields are etcd's defaults.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RangeRead {
    pub key: Vec<u8>,
    pub range_end: Vec<u8>,
    pub limit: u32,
    pub revision: u64,
    pub keys_only: bool,
    pub min_mod_revision: u64,
}

/// `RangeRead` as etcd's `RangeRequest` message.
pub fn range_request(read: &RangeRead) -> Vec<u8> {
    let mut out = Vec::with_capacity(read.key.len() + read.range_end.len() + 32);
    put_bytes(&mut out, 1, &read.key);
    if !read.range_end.is_empty() {
        put_bytes(&mut out, 2, &read.range_end);
    }
    for (field, value) in [
        (3u64, u64::from(read.limit)),
        (4, read.revision),
        (8, u64::from(read.keys_only)),
        (10, read.min_mod_revision),
    ] {
        if value != 0 {
            put_varint(&mut out, field << 3);
            put_varint(&mut out, value);
        }
    }
    out
}

/// Envoy's `GrpcService { envoy_grpc { cluster_name } }`: what Envoy takes as the
/// upstream of a gRPC call. (A bare cluster name works too, unless its bytes
/// happen to parse as that message.)
pub fn envoy_grpc_service(cluster: &str) -> Vec<u8> {
    let mut envoy_grpc = Vec::new();
    put_bytes(&mut envoy_grpc, 1, cluster.as_bytes());
    let mut service = Vec::new();
    put_bytes(&mut service, 1, &envoy_grpc);
    service
}

/// etcd's `RangeResponse`.
pub fn parse_range_response(bytes: &[u8]) -> Result<RangeAnswer, EtcdError> {
    let mut answer = RangeAnswer {
        revision: 0,
        kvs: Vec::new(),
        count: 0,
        more: false,
    };
    let mut has_header = false;
    let mut fields = Fields::new(bytes);
    while let Some((number, value)) = fields.next_field()? {
        match (number, value) {
            (1, Value::Bytes(header)) => {
                has_header = true;
                let mut header = Fields::new(header);
                while let Some((number, value)) = header.next_field()? {
                    if let (3, Value::Varint(revision)) = (number, value) {
                        answer.revision = int64(revision)?;
                    }
                }
            }
            (2, Value::Bytes(kv)) => answer.kvs.push(parse_kv(kv)?),
            (3, Value::Varint(more)) => answer.more = more != 0,
            (4, Value::Varint(count)) => answer.count = int64(count)?,
            (1..=4, _) => return Err(malformed("a field of RangeResponse has the wrong wire type")),
            _ => {}
        }
    }
    // etcd always sends its header; without it there is no revision to trust
    // (an empty message would read as revision 0: etcd restored from a backup).
    if !has_header {
        return Err(malformed("no header"));
    }
    Ok(answer)
}

fn parse_kv(bytes: &[u8]) -> Result<Kv, EtcdError> {
    let mut kv = Kv {
        key: Vec::new(),
        value: Vec::new(),
        create_revision: 0,
        mod_revision: 0,
    };
    let mut fields = Fields::new(bytes);
    while let Some((number, value)) = fields.next_field()? {
        match (number, value) {
            (1, Value::Bytes(key)) => kv.key = key.to_vec(),
            (2, Value::Varint(revision)) => kv.create_revision = int64(revision)?,
            (3, Value::Varint(revision)) => kv.mod_revision = int64(revision)?,
            (5, Value::Bytes(value)) => kv.value = value.to_vec(),
            (1 | 2 | 3 | 5, _) => return Err(malformed("a field of KeyValue has the wrong wire type")),
            _ => {}
        }
    }
    Ok(kv)
}

/// etcd's revisions and counts are int64: one the JSON gateway could not show is refused.
fn int64(value: u64) -> Result<u64, EtcdError> {
    match i64::try_from(value) {
        Ok(_) => Ok(value),
        Err(_) => Err(malformed("a negative revision or count")),
    }
}

fn malformed(why: &str) -> EtcdError {
    EtcdError::Malformed(format!("gRPC range answer: {why}"))
}

/// etcd's side of `range_request` (for the fake etcd).
#[cfg(any(test, feature = "fake-etcd"))]
pub fn parse_range_request(bytes: &[u8]) -> Result<RangeRead, EtcdError> {
    let mut read = RangeRead::default();
    let mut fields = Fields::new(bytes);
    while let Some((number, value)) = fields.next_field()? {
        match (number, value) {
            (1, Value::Bytes(key)) => read.key = key.to_vec(),
            (2, Value::Bytes(end)) => read.range_end = end.to_vec(),
            (3, Value::Varint(limit)) => read.limit = u32::try_from(limit).map_err(|_| malformed("limit"))?,
            (4, Value::Varint(revision)) => read.revision = revision,
            (8, Value::Varint(keys_only)) => read.keys_only = keys_only != 0,
            (10, Value::Varint(revision)) => read.min_mod_revision = revision,
            _ => return Err(malformed("a RangeRequest field this filter never sends")),
        }
    }
    Ok(read)
}

/// `answer` as etcd's `RangeResponse` (for the fake etcd's gRPC answers).
#[cfg(any(test, feature = "fake-etcd"))]
pub fn range_response(answer: &RangeAnswer) -> Vec<u8> {
    let mut out = Vec::new();
    let mut header = Vec::new();
    put_varint(&mut header, 3 << 3);
    put_varint(&mut header, answer.revision);
    put_bytes(&mut out, 1, &header);
    for kv in &answer.kvs {
        let mut message = Vec::new();
        put_bytes(&mut message, 1, &kv.key);
        for (field, number) in [(2u64, kv.create_revision), (3, kv.mod_revision)] {
            put_varint(&mut message, field << 3);
            put_varint(&mut message, number);
        }
        put_bytes(&mut message, 5, &kv.value);
        put_bytes(&mut out, 2, &message);
    }
    for (field, number) in [(3u64, u64::from(answer.more)), (4, answer.count)] {
        if number != 0 {
            put_varint(&mut out, field << 3);
            put_varint(&mut out, number);
        }
    }
    out
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn put_bytes(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_varint(out, (u64::from(field) << 3) | 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

/// The fields of one message, in order.
struct Fields<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Fields<'a> {
    fn new(bytes: &'a [u8]) -> Fields<'a> {
        Fields { bytes, at: 0 }
    }

    fn next_field(&mut self) -> Result<Option<(u64, Value<'a>)>, EtcdError> {
        if self.at >= self.bytes.len() {
            return Ok(None);
        }
        let tag = self.varint()?;
        let value = match tag & 7 {
            0 => Value::Varint(self.varint()?),
            1 => self.skip(8)?,
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| malformed("a length beyond the answer"))?;
                let end = self
                    .at
                    .checked_add(len)
                    .ok_or_else(|| malformed("a length beyond the answer"))?;
                let bytes = self
                    .bytes
                    .get(self.at..end)
                    .ok_or_else(|| malformed("a length beyond the answer"))?;
                self.at = end;
                Value::Bytes(bytes)
            }
            5 => self.skip(4)?,
            _ => return Err(malformed("an unknown wire type")),
        };
        Ok(Some((tag >> 3, value)))
    }

    fn skip(&mut self, len: usize) -> Result<Value<'a>, EtcdError> {
        let end = self.at + len;
        if end > self.bytes.len() {
            return Err(malformed("a field cut short"));
        }
        self.at = end;
        Ok(Value::Fixed)
    }

    fn varint(&mut self) -> Result<u64, EtcdError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.bytes.get(self.at).ok_or_else(|| malformed("a number cut short"))?;
            self.at += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Ok(value);
            }
        }
        Err(malformed("a number longer than 64 bits"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A RangeResponse as etcd writes one (field order, its own encoder's choices).
    fn response(revision: u64, kvs: &[(&[u8], &[u8], u64)], more: bool, count: u64) -> Vec<u8> {
        let mut out = Vec::new();
        let mut header = Vec::new();
        for (field, value) in [
            (1u64, 14841639068965178418u64),
            (2, 10276657743932975437),
            (3, revision),
            (4, 2),
        ] {
            put_varint(&mut header, field << 3);
            put_varint(&mut header, value);
        }
        put_bytes(&mut out, 1, &header);
        for (key, value, mod_revision) in kvs {
            let mut kv = Vec::new();
            put_bytes(&mut kv, 1, key);
            for (field, number) in [(2u64, 5u64), (3, *mod_revision), (4, 1)] {
                put_varint(&mut kv, field << 3);
                put_varint(&mut kv, number);
            }
            put_bytes(&mut kv, 5, value);
            put_bytes(&mut out, 2, &kv);
        }
        for (field, value) in [(3u64, u64::from(more)), (4, count)] {
            if value != 0 {
                put_varint(&mut out, field << 3);
                put_varint(&mut out, value);
            }
        }
        out
    }

    #[test]
    fn a_range_answer_reads_as_the_gateway_s_does() {
        let bytes = response(
            907,
            &[
                (b"/dp/dev/a@x.io", b"{\"status\":\"approved\"}", 900),
                (b"/dp/dev/b@x.io", b"", 12),
            ],
            true,
            1_000_000,
        );
        let answer = parse_range_response(&bytes).unwrap();
        assert_eq!(answer.revision, 907);
        assert_eq!(answer.count, 1_000_000);
        assert!(answer.more);
        assert_eq!(answer.kvs.len(), 2);
        assert_eq!(answer.kvs[0].key, b"/dp/dev/a@x.io");
        assert_eq!(answer.kvs[0].value, b"{\"status\":\"approved\"}");
        assert_eq!((answer.kvs[0].create_revision, answer.kvs[0].mod_revision), (5, 900));
        assert_eq!(answer.kvs[1].value, b"");
        // An empty answer (nothing in range) is only a header.
        let empty = parse_range_response(&response(3, &[], false, 0)).unwrap();
        assert_eq!(
            (empty.revision, empty.kvs.len(), empty.count, empty.more),
            (3, 0, 0, false)
        );
    }

    #[test]
    fn a_request_is_etcd_s_encoding() {
        let read = RangeRead {
            key: b"/a".to_vec(),
            range_end: b"/b".to_vec(),
            limit: 300,
            revision: 7,
            keys_only: true,
            min_mod_revision: 0,
        };
        // key, range_end, limit 300 (0xac 0x02), revision 7, keys_only.
        assert_eq!(
            range_request(&read),
            [
                &[0x0a, 2][..],
                b"/a",
                &[0x12, 2],
                b"/b",
                &[0x18, 0xac, 0x02, 0x20, 7, 0x40, 1]
            ]
            .concat()
        );
        assert_eq!(envoy_grpc_service("etcd"), [&[0x0a, 6, 0x0a, 4][..], b"etcd"].concat());
    }

    #[test]
    fn a_damaged_answer_is_refused_not_misread() {
        let good = response(907, &[(b"/dp/dev/a@x.io", b"{}", 900)], false, 1);
        for cut in 1..good.len() {
            // Cut inside a field: refused. (Cut between the top-level fields,
            // it is a shorter answer, which the syncer checks by its count.)
            let _ = parse_range_response(&good[..cut]);
        }
        assert!(parse_range_response(&good[..good.len() - 1]).is_err());
        for bad in [
            vec![0x0a, 0x05, 0x18], // a header longer than the answer
            vec![0x20, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01], // count -1
            vec![0x20, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01], // 11-byte varint
            vec![0x12, 0x02, 0x0b, 0x00], // a KeyValue with a group
            vec![0x10, 0x01],       // kvs as a number
            vec![0x0f],             // wire type 7
        ] {
            assert!(parse_range_response(&bad).is_err(), "{bad:?}");
        }
        // Fields etcd may add later are skipped.
        let mut newer = good.clone();
        newer.extend_from_slice(&[0x78, 0x01, 0x7d, 1, 2, 3, 4, 0x71, 1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(
            parse_range_response(&newer).unwrap(),
            parse_range_response(&good).unwrap()
        );
    }
}
