//! Every key the filter uses, in one table: shared data (per gateway) and etcd
//! (the fleet's truth).
//!
//! Shared data: every key starts with the configuration's `namespace` (Kong
//! gives a namespace its own `shm_kv` zone); developers' records live in
//! buckets named by a hash of the e-mail (`bucket`); every value names its own
//! key (`store::KeyChecked`).
//!
//! | key | holds | written by |
//! |---|---|---|
//! | `<ns>/b/<4 symbols>` | a bucket: the one-read records of the developers whose e-mail hashes to it | seed, syncer, admin |
//! | `<ns>/b/T<code><part>` | a tab in `PARTS` parts: `email;updated_ms` lines, newest change first; `<code>` as in a bucket, `u` for keys under the prefix that are not readable developers | syncer, admin (its own change) |
//! | `<ns>/b/N<code>00` | how many lines each part of that tab holds (`tab_counts`) | whoever edits a part |
//! | `<ns>/b/F<code>00` | a tab's first lines, merged (`tab_front`) | whoever edits a part; a page that merged the parts |
//! | `<ns>/sync` | the etcd revision the replica reflects, when it agreed | syncer |
//! | `<ns>/seed-index` | what the static configuration seeded last | static seed |
//! | `<ns>/syncer` | the syncer role: worker id and heartbeat | election |
//! | `<ns>/workers` | the last worker id handed out | every worker at start |
//! | `<ns>/registrations` | this minute's self-service registrations | self-service |
//! | `<ns>/events` | the event deliverer's view: sinks, backlog, newest events | event candidates |
//! | `<ns>/b/Ea<part>` | every approval with an end, in `PARTS` parts: `email;ms` lines | syncer (once a cycle), admin (its own change) |
//! | `<ns>/rules` | the gate configuration's registration rules, for the admin API | gate configuration at start |
//!
//! etcd, under the configuration's `key_prefix`:
//!
//! | key | holds |
//! |---|---|
//! | `<prefix>dev/<email>` | a developer's stored JSON (`developer::Developer`) |
//! | `<prefix>deleted/<email>` | a deleted developer's last record and history |
//! | `<prefix>seeded` | present once the configuration's developers were created |
//! | `<prefix>events/<time>-<operation>-<email>` | the change log: one entry per change, same transaction |
//! | `<prefix>delivery/holder` | which candidate delivers events, and its lease |
//! | `<prefix>delivery/sinks/<name>` | a sink's position, last error, count delivered |
//! | `<prefix>snapshot/current`, `<prefix>snapshot/parts/<id>/<n>`, `<prefix>snapshot/writer` | the directory's snapshot: what it is, its parts, who writes the next (`sync::snapshot`) |

use super::Status;

/// The bucket that holds `email`'s record.
pub fn bucket(namespace: &str, email: &str) -> String {
    super::bucket::key(namespace, super::bucket::index(email))
}

/// Keys that hold developers' records (buckets: which one a client's address
/// lands in is the client's choice). Every other key is the filter's own, and
/// takes its slot back from a bucket on a host that confuses keys (see
/// `store::KeyChecked`).
pub fn is_per_developer(key: &str) -> bool {
    key.split_once('/')
        .is_some_and(|(_, rest)| super::bucket::is_bucket_key(rest))
}

/// The filter's own fixed keys in `namespace` (for the check that no bucket
/// shares a slot with one on Kong).
pub fn own_keys(namespace: &str) -> Vec<String> {
    let mut own = vec![
        sync_state(namespace),
        seed_index(namespace),
        syncer(namespace),
        workers(namespace),
        registrations(namespace),
        events_view(namespace),
        rules(namespace),
    ];
    for part in 0..PARTS {
        own.extend(lists().map(|list| tab(namespace, list, part)));
        own.push(expiring(namespace, part));
    }
    own.extend(lists().map(|list| tab_counts(namespace, list)));
    own.extend(Status::ALL.iter().map(|&status| tab_front(namespace, status)));
    own
}

pub fn sync_state(namespace: &str) -> String {
    format!("{namespace}/sync")
}

pub fn seed_index(namespace: &str) -> String {
    format!("{namespace}/seed-index")
}

pub fn syncer(namespace: &str) -> String {
    format!("{namespace}/syncer")
}

pub fn workers(namespace: &str) -> String {
    format!("{namespace}/workers")
}

pub fn rules(namespace: &str) -> String {
    format!("{namespace}/rules")
}

/// The tabs and the list of approvals' ends are each cut in this many parts,
/// by the e-mail's bucket: a change rewrites one part, not the whole (at ten
/// million developers a tab is tens of MB, and the worker that rewrites it
/// serves nothing meanwhile).
pub const PARTS: u32 = 64;

/// The part that lists `email`, in every tab and in the list of ends.
pub fn part_of(email: &str) -> u32 {
    super::bucket::index(email) >> (super::bucket::BUCKET_BITS - PARTS.trailing_zeros())
}

/// A part of a list: `<ns>/b/` and four bytes, `kind`, `code` and the part in
/// two hex digits. A bucket's key has the same length and differs only in
/// those four bytes, so no two of these keys nor one and a bucket can share a
/// CRC-32 on Kong (see `bucket`); an upper-case `kind` is no bucket symbol, so
/// none of them is taken for a bucket.
fn list_part(namespace: &str, kind: char, code: char, part: u32) -> String {
    format!("{namespace}/b/{kind}{code}{:02x}", part % PARTS)
}

/// A part of a tab: the developers of `status` (`None`: the keys that are not
/// readable developers).
pub fn tab(namespace: &str, status: Option<Status>, part: u32) -> String {
    list_part(namespace, 'T', list_code(status), part)
}

/// The lines in each part of a tab (`tab_counts`).
pub fn tab_counts(namespace: &str, status: Option<Status>) -> String {
    list_part(namespace, 'N', list_code(status), 0)
}

/// A list's code in its keys: the status's, as in a bucket, or `u`.
fn list_code(status: Option<Status>) -> char {
    status.map_or('u', |status| char::from(super::bucket::status_code(status)))
}

/// A tab's first lines (`tab_front`).
pub fn tab_front(namespace: &str, status: Status) -> String {
    list_part(namespace, 'F', list_code(Some(status)), 0)
}

/// Every list cut in parts with a tab's layout: the four tabs, and (`None`)
/// the keys that are not readable developers.
fn lists() -> impl Iterator<Item = Option<Status>> {
    Status::ALL.into_iter().map(Some).chain([None])
}

/// A part of the list of approvals with an end.
pub fn expiring(namespace: &str, part: u32) -> String {
    list_part(namespace, 'E', 'a', part)
}

pub fn events_view(namespace: &str) -> String {
    format!("{namespace}/events")
}

pub fn registrations(namespace: &str) -> String {
    format!("{namespace}/registrations")
}

/// `<prefix>dev/`: the etcd keys that are developers.
pub fn etcd_developers(key_prefix: &str) -> String {
    format!("{key_prefix}dev/")
}

pub fn etcd_developer(key_prefix: &str, email: &str) -> Vec<u8> {
    format!("{key_prefix}dev/{email}").into_bytes()
}

/// Outside `dev/`, so the syncer never sees it; shown again when the address
/// registers again.
pub fn etcd_archive(key_prefix: &str, email: &str) -> Vec<u8> {
    format!("{key_prefix}deleted/{email}").into_bytes()
}

pub fn etcd_seed_marker(key_prefix: &str) -> Vec<u8> {
    format!("{key_prefix}seeded").into_bytes()
}
