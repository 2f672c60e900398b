//! Developers' records, grouped in buckets: the layout of the hot-path records
//! in shared data.
//!
//! One key per developer cost every gateway a hash-table slot, a key and a
//! value on the host's heap for each developer: about 230 bytes in Envoy. A
//! bucket (`<ns>/b/<4 chars>`) holds the records of every developer whose
//! e-mail hashes to it, one line each, so the host keeps one slot, one short
//! key (inside the string itself: 22 bytes fit libc++'s small-string buffer)
//! and one value per bucket. A lookup is still one read: the request's e-mail
//! names its bucket, and its line is found by comparing the whole e-mail.
//!
//! Why a fixed count of 2^20 buckets: below a million developers most buckets
//! hold one (no worse than a key each); at ten million a bucket holds about
//! ten lines, ~400 bytes a request reads. The count never changes, so a
//! bucket's key never moves.
//!
//! Why keys of one length differing only in their last four bytes: Kong's
//! `shm_kv` identifies keys by CRC-32 alone, and two messages of one length
//! that differ only within 32 consecutive bits never share a CRC-32 (their
//! difference, a non-zero polynomial of degree < 32, cannot be a multiple of
//! the degree-32 generator). So no two buckets can collide on Kong, whatever
//! the namespace; the e-mails inside are compared whole. (A bucket may still
//! share a CRC-32 with one of the filter's own keys: `KeyChecked` keeps that
//! from mixing them, and those developers fail closed, logged.)
//!
//! The hash is std's SipHash with fixed keys: anyone can compute which bucket
//! an address lands in. That only lets a client put addresses next to
//! another's; the whole e-mail decides, and self-service registration refuses
//! to fill a bucket past `SELF_SERVICE_LIMIT`, so no one can make another
//! developer's lookups slow.
//!
//! A bucket's value (inside `KeyChecked`'s envelope):
//! `b1` then one line per developer, `<email>;<code><revision>[;<expiry ms>]`,
//! with `<code>` one of `a q j v` (approved, requested, rejected, revoked),
//! `d` (deleted: a tombstone that keeps its revision) or `u` (unreadable in
//! etcd). E-mails are canonical, so they hold neither `;` nor a line break.

use std::hash::Hasher;

use super::{Record, Status};

pub const BUCKET_BITS: u32 = 20;
pub const BUCKETS: u32 = 1 << BUCKET_BITS;

/// Self-service registration refuses an address whose bucket already holds
/// this many developers. At ten million developers a bucket holds about ten;
/// reaching 64 by chance has a probability below 10^-20.
pub const SELF_SERVICE_LIMIT: usize = 64;

const HEADER: &str = "b1";
/// 32 symbols, 5 bits each: four of them name 2^20 buckets.
const SYMBOLS: &[u8; 32] = b"0123456789abcdefghijklmnopqrstuv";

/// The bucket `email` belongs to.
pub fn index(email: &str) -> u32 {
    let mut hasher = std::hash::DefaultHasher::new();
    hasher.write(email.as_bytes());
    (hasher.finish() & u64::from(BUCKETS - 1)) as u32
}

/// `<namespace>/b/` and four symbols: every bucket key of a namespace has one
/// length and differs from the others in its last four bytes only.
pub fn key(namespace: &str, index: u32) -> String {
    let mut key = String::with_capacity(namespace.len() + 7);
    key.push_str(namespace);
    key.push_str("/b/");
    for shift in [15, 10, 5, 0] {
        let symbol = SYMBOLS.get((index >> shift & 31) as usize).copied().unwrap_or(b'0');
        key.push(char::from(symbol));
    }
    key
}

/// Whether `rest` (what follows `<namespace>/`) is a bucket's key.
pub fn is_bucket_key(rest: &str) -> bool {
    rest.strip_prefix("b/")
        .is_some_and(|symbols| symbols.len() == 4 && symbols.bytes().all(|b| SYMBOLS.contains(&b)))
}

/// What a bucket says about one e-mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    Record(Record),
    Absent,
    /// The bucket or the e-mail's line cannot be read: fail closed.
    Garbled,
}

/// Whether `email` can have a line: never empty, and nothing that would end
/// its field or its line. Canonical addresses always can; a name that could
/// not would otherwise write lines of its own choosing.
pub fn storable(email: &str) -> bool {
    !email.is_empty() && !email.bytes().any(|b| b == b';' || b == b'\n')
}

/// The record `bucket` holds for `email`. The hot path: no allocation.
pub fn find(bucket: &[u8], email: &str) -> Found {
    if !storable(email) {
        return Found::Absent;
    }
    let Some(mut lines) = lines(bucket) else {
        return Found::Garbled;
    };
    let wanted = email.as_bytes();
    for line in lines.by_ref() {
        if let Some(rest) = line.strip_prefix(wanted).and_then(|rest| rest.strip_prefix(b";")) {
            return decode(rest).map_or(Found::Garbled, Found::Record);
        }
    }
    Found::Absent
}

/// How many developers `bucket` holds.
pub fn len(bucket: &[u8]) -> usize {
    lines(bucket).map_or(0, Iterator::count)
}

/// `bucket` with `email`'s line set to `record` (`email` must be `storable`:
/// `write_record_unless` checks). A line that cannot be read
/// is dropped (it fails closed either way, and the syncer rewrites its
/// developer); a bucket without the header starts afresh.
pub fn with(bucket: &[u8], email: &str, record: &Record) -> Vec<u8> {
    let mut out = Vec::with_capacity(bucket.len() + email.len() + 24);
    out.extend_from_slice(HEADER.as_bytes());
    for line in lines(bucket).into_iter().flatten() {
        let Some(split) = line.iter().position(|&b| b == b';') else {
            continue;
        };
        let (other, rest) = line.split_at(split);
        if other == email.as_bytes() || rest.get(1..).and_then(decode).is_none() {
            continue;
        }
        out.push(b'\n');
        out.extend_from_slice(line);
    }
    out.push(b'\n');
    out.extend_from_slice(email.as_bytes());
    out.push(b';');
    encode_into(record, &mut out);
    out
}

/// The lines after the header; `None` when the header is not this format's.
fn lines(bucket: &[u8]) -> Option<impl Iterator<Item = &[u8]>> {
    let mut lines = bucket.split(|&b| b == b'\n');
    (lines.next()? == HEADER.as_bytes()).then_some(lines)
}

/// A status's one-letter code, in a bucket's lines and the tabs' keys.
pub fn status_code(status: Status) -> u8 {
    match status {
        Status::Approved => b'a',
        Status::Requested => b'q',
        Status::Rejected => b'j',
        Status::Revoked => b'v',
    }
}

fn code(record: &Record) -> u8 {
    match record {
        Record::Present { status, .. } => status_code(*status),
        Record::Deleted { .. } => b'd',
        Record::Unreadable { .. } => b'u',
    }
}

/// `<code><revision>[;<expiry ms>]` (a line's tail; the snapshot's lines end
/// with it too).
pub fn encode_into(record: &Record, out: &mut Vec<u8>) {
    out.push(code(record));
    out.extend_from_slice(record.revision().to_string().as_bytes());
    if let Record::Present {
        expires_ms: Some(expires_ms),
        ..
    } = record
    {
        out.push(b';');
        out.extend_from_slice(expires_ms.to_string().as_bytes());
    }
}

/// `<code><revision>[;<expiry ms>]`; `None` for anything else.
pub fn decode(text: &[u8]) -> Option<Record> {
    let (&code, rest) = text.split_first()?;
    let (revision, expires) = match rest.iter().position(|&b| b == b';') {
        Some(split) => (rest.get(..split)?, Some(rest.get(split + 1..)?)),
        None => (rest, None),
    };
    let revision = number(revision)?;
    let expires_ms = match expires {
        Some(expires) => Some(number(expires)?),
        None => None,
    };
    let status = match code {
        b'a' => Status::Approved,
        b'q' => Status::Requested,
        b'j' => Status::Rejected,
        b'v' => Status::Revoked,
        b'd' if expires_ms.is_none() => return Some(Record::Deleted { revision }),
        b'u' if expires_ms.is_none() => return Some(Record::Unreadable { revision }),
        _ => return None,
    };
    Some(Record::Present {
        status,
        revision,
        expires_ms,
    })
}

/// Decimal digits only (no sign, no spaces), within u64.
fn number(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn present(status: Status, revision: u64, expires_ms: Option<u64>) -> Record {
        Record::Present {
            status,
            revision,
            expires_ms,
        }
    }

    #[test]
    fn lines_round_trip_and_only_the_whole_email_matches() {
        let records = [
            ("alice@example.com", present(Status::Approved, 7, None)),
            ("bob@example.com", present(Status::Requested, 12345, None)),
            (
                "carol@example.com",
                present(Status::Approved, 8, Some(1_700_000_000_000)),
            ),
            ("dave@example.com", Record::Deleted { revision: 3 }),
            ("erin@example.com", Record::Unreadable { revision: 4 }),
            ("frank@example.com", present(Status::Rejected, 0, None)),
            ("gina@example.com", present(Status::Revoked, u64::MAX, None)),
        ];
        let mut bucket = Vec::new();
        for (email, record) in &records {
            bucket = with(&bucket, email, record);
        }
        assert_eq!(len(&bucket), records.len());
        for (email, record) in &records {
            assert_eq!(find(&bucket, email), Found::Record(*record), "{email}");
        }
        for stranger in ["lice@example.com", "alice@example.co", "alice@example.comx", "", "a"] {
            assert_eq!(find(&bucket, stranger), Found::Absent, "{stranger:?}");
        }
        // Replacing a line keeps the others and the count.
        let bucket = with(&bucket, "bob@example.com", &present(Status::Approved, 12346, None));
        assert_eq!(len(&bucket), records.len());
        assert_eq!(
            find(&bucket, "bob@example.com"),
            Found::Record(present(Status::Approved, 12346, None))
        );
        assert_eq!(
            find(&bucket, "alice@example.com"),
            Found::Record(present(Status::Approved, 7, None))
        );
        assert!(
            bucket.starts_with(b"b1\nalice@example.com;a7\n"),
            "{:?}",
            String::from_utf8_lossy(&bucket)
        );
    }

    #[test]
    fn garbage_fails_closed_and_is_dropped_on_the_next_write() {
        for garbled in [
            &b"b1\na@x.io;"[..],
            b"b1\na@x.io;a",
            b"b1\na@x.io;x7",
            b"b1\na@x.io;a7;soon",
            b"b1\na@x.io;a-7",
            b"b1\na@x.io;a 7",
            b"b1\na@x.io;d7;5",
            b"b1\na@x.io;a99999999999999999999999",
        ] {
            assert_eq!(find(garbled, "a@x.io"), Found::Garbled, "{garbled:?}");
            let rewritten = with(garbled, "b@x.io", &present(Status::Approved, 1, None));
            assert_eq!(find(&rewritten, "a@x.io"), Found::Absent, "{garbled:?}");
            assert_eq!(len(&rewritten), 1);
        }
        for unknown_format in [&b""[..], b"b2\na@x.io;a7", b"1;approved;7", b"\xff\xfe"] {
            assert_eq!(find(unknown_format, "a@x.io"), Found::Garbled, "{unknown_format:?}");
            let rewritten = with(unknown_format, "a@x.io", &present(Status::Revoked, 9, None));
            assert_eq!(
                find(&rewritten, "a@x.io"),
                Found::Record(present(Status::Revoked, 9, None))
            );
        }
    }

    #[test]
    fn names_that_would_write_their_own_lines_are_not_storable() {
        for name in ["", "x\nalice@example.com;a1\nz", "a;b@x.io", "a@x.io\n"] {
            assert!(!storable(name), "{name:?}");
            let bucket = with(b"", "zed@x.io", &present(Status::Approved, 1, None));
            assert_eq!(find(&bucket, name), Found::Absent, "{name:?}");
        }
        assert!(storable("alice@example.com"));
    }

    #[test]
    fn keys_have_one_length_and_are_recognised() {
        assert_eq!(key("devportal", 0), "devportal/b/0000");
        assert_eq!(key("devportal", BUCKETS - 1), "devportal/b/vvvv");
        assert_eq!(key("devportal", 0x12345), "devportal/b/28q5");
        assert!(is_bucket_key("b/28q5"));
        for not_a_bucket in ["b/28q", "b/28q55", "b/28Q5", "b/28w5", "list/approved", "sync", "b/"] {
            assert!(!is_bucket_key(not_a_bucket), "{not_a_bucket}");
        }
        let spread: std::collections::BTreeSet<u32> =
            (0..1000).map(|i| index(&format!("dev{i:06}@example.com"))).collect();
        assert!(spread.len() > 990, "the hash spreads addresses: {}", spread.len());
        assert!(spread.iter().all(|&i| i < BUCKETS));
    }

    /// CRC-32 as Kong's `shm_kv` computes it (reflected, polynomial 0xEDB88320).
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &byte in bytes {
            crc ^= u32::from(byte);
            for _ in 0..8 {
                crc = if crc & 1 == 1 { crc >> 1 ^ 0xEDB8_8320 } else { crc >> 1 };
            }
        }
        !crc
    }

    #[test]
    fn no_two_buckets_share_a_crc32_nor_one_with_the_filters_own_keys() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        for namespace in ["devportal", "x"] {
            let mut seen = vec![0u8; 1 << 32 >> 3];
            let mut mark = |crc: u32| {
                let (byte, bit) = ((crc >> 3) as usize, 1u8 << (crc & 7));
                let slot = seen.get_mut(byte).expect("in range");
                let fresh = *slot & bit == 0;
                *slot |= bit;
                fresh
            };
            for i in 0..BUCKETS {
                assert!(mark(crc32(key(namespace, i).as_bytes())), "bucket {i} of {namespace}");
            }
            if namespace != "devportal" {
                continue;
            }
            // The default namespace's own keys, checked once here.
            for own in super::super::keys::own_keys(namespace) {
                assert!(mark(crc32(own.as_bytes())), "{own} shares a slot with a bucket");
            }
        }
    }
}
