//! A full sync's plan of the key space, for a large directory.
//!
//! etcd (3.4) counts the rest of a range on every page it answers. Paging a
//! directory to the end of its prefix therefore costs etcd n²/(2·page) steps:
//! ~4 s of its CPU at 1M developers, minutes at 10M. Before the pages, the
//! plan cuts the key space into spans of a few pages each. It counts them with
//! `count_only` ranges pinned to the sync's revision, one transaction per span
//! it cuts. Each page then walks its own span only.
//!
//! A region is cut into smaller regions that hold exactly its keys, so the
//! regions of a plan always partition the key space it began with: the plan
//! decides how much each read walks, never which keys are read.

use std::collections::VecDeque;

use crate::etcd::{self, EtcdRequest};

/// A region of the key space: the keys that start with `prefix` and then a
/// byte in `lo..=hi` (and `prefix` itself when `lo` is 0), or one key alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Region {
    Bytes { prefix: Vec<u8>, lo: u8, hi: u8 },
    Key(Vec<u8>),
}

/// The most bytes one part of a cut covers outside printable ASCII, where
/// addresses have none. A cut of the whole byte range makes 101 parts: under
/// etcd's default limit of 128 operations in a transaction.
const GROUP: usize = 32;

impl Region {
    /// Every key that starts with `prefix`.
    pub fn under(prefix: &[u8]) -> Region {
        Region::Bytes {
            prefix: prefix.to_vec(),
            lo: 0,
            hi: 0xff,
        }
    }

    /// `[start, end)` of its keys.
    pub fn bounds(&self) -> Bounds {
        match self {
            Region::Key(key) => (key.clone(), [key.as_slice(), &[0]].concat()),
            Region::Bytes { prefix, lo, hi } => {
                let start = match lo {
                    0 => prefix.clone(),
                    lo => [prefix.as_slice(), &[*lo]].concat(),
                };
                let end = match hi.checked_add(1) {
                    Some(next) => [prefix.as_slice(), &[next]].concat(),
                    None => etcd::prefix_end(prefix),
                };
                (start, end)
            }
        }
    }

    /// Smaller regions that hold exactly its keys, in key order (none: it
    /// cannot be cut). A range of bytes is cut into smaller ranges; one byte
    /// into the bytes after it. Either way each cut goes narrower or deeper,
    /// and keys are finite, so cutting always ends.
    pub fn parts(&self) -> Vec<Region> {
        match self {
            Region::Key(_) => Vec::new(),
            Region::Bytes { prefix, lo, hi } if lo < hi => byte_groups(*lo, *hi)
                .into_iter()
                .map(|(lo, hi)| Region::Bytes {
                    prefix: prefix.clone(),
                    lo,
                    hi,
                })
                .collect(),
            Region::Bytes { prefix, lo, .. } => {
                let deeper = [prefix.as_slice(), &[*lo]].concat();
                let mut parts = Vec::with_capacity(GROUP * 4);
                // Byte 0 holds `prefix` itself, which the deeper region does not.
                if *lo == 0 {
                    parts.push(Region::Key(prefix.clone()));
                }
                parts.extend(Region::under(&deeper).parts());
                parts
            }
        }
    }
}

/// The keys under `prefix` as regions along `key`'s path (`key` starts with
/// `prefix`): at each byte of `key` past `prefix`, the keys that branch off
/// below it and above it, and innermost everything under the path's end. When
/// most keys share a long prefix, one transaction over these finds where they
/// are, instead of one cut per shared byte.
pub fn along(prefix: &[u8], key: &[u8]) -> Vec<Region> {
    let mut below = Vec::new();
    let mut above = Vec::new();
    let mut depth = prefix.len();
    let mut innermost = prefix;
    while let (Some(here), Some(&byte)) = (key.get(..depth), key.get(depth)) {
        if below.len() + above.len() + 3 > MOST_PARTS {
            break;
        }
        below.push(match byte.checked_sub(1) {
            Some(hi) => Region::Bytes {
                prefix: here.to_vec(),
                lo: 0,
                hi,
            },
            None => Region::Key(here.to_vec()),
        });
        if let Some(lo) = byte.checked_add(1) {
            above.push(Region::Bytes {
                prefix: here.to_vec(),
                lo,
                hi: 0xff,
            });
        }
        depth += 1;
        innermost = key.get(..depth).unwrap_or(innermost);
    }
    below.push(Region::under(innermost));
    below.extend(above.into_iter().rev());
    below
}

/// The most parts one transaction counts (etcd allows 128 operations).
const MOST_PARTS: usize = 102;

/// `lo..=hi` in ranges: each printable ASCII byte alone, the others in runs of
/// at most `GROUP`.
fn byte_groups(lo: u8, hi: u8) -> Vec<(u8, u8)> {
    let printable = |byte: u8| (0x21..=0x7e).contains(&byte);
    let mut groups: Vec<(u8, u8)> = Vec::new();
    for byte in lo..=hi {
        match groups.last_mut() {
            Some(last) if !printable(byte) && !printable(last.1) && usize::from(byte - last.0) < GROUP => {
                last.1 = byte;
            }
            _ => groups.push((byte, byte)),
        }
    }
    groups
}

/// `[start, end)` of a range of keys.
pub type Bounds = (Vec<u8>, Vec<u8>);

/// A region and how many keys it held at the plan's revision.
#[derive(Debug, Clone)]
struct Span {
    region: Region,
    count: u64,
}

pub struct Plan {
    /// Every count is as of this revision; so is every page read after it.
    pub revision: u64,
    /// Spans few enough to read (or that cannot be cut), in no order.
    ready: Vec<Span>,
    /// Spans still too large, and the parts each is cut into.
    to_cut: Vec<(Span, Vec<Region>)>,
    /// The span whose parts the transaction in flight counts, and the parts.
    cutting: Option<(Span, Vec<Region>)>,
    /// A span with more keys than this is cut.
    cut_above: u64,
}

impl Plan {
    /// A plan of the keys under `prefix`, `count` of them at `revision`; its
    /// first cut goes along `guide`'s path (`along`), a key under `prefix`.
    pub fn new(revision: u64, prefix: &[u8], count: u64, cut_above: u64, guide: &[u8]) -> Plan {
        let mut plan = Plan {
            revision,
            ready: Vec::new(),
            to_cut: Vec::new(),
            cutting: None,
            cut_above,
        };
        let whole = Span {
            region: Region::under(prefix),
            count,
        };
        if count > cut_above && guide.starts_with(prefix) {
            plan.to_cut.push((whole, along(prefix, guide)));
        } else {
            plan.place(whole);
        }
        plan
    }

    fn place(&mut self, span: Span) {
        match span.count {
            0 => {}
            count if count > self.cut_above && !matches!(span.region, Region::Key(_)) => {
                let parts = span.region.parts();
                self.to_cut.push((span, parts));
            }
            _ => self.ready.push(span),
        }
    }

    /// The transaction that counts the parts of the next span to cut, or
    /// `None` when every span is ready.
    pub fn next_cut(&mut self) -> Option<EtcdRequest> {
        let (span, parts) = self.to_cut.pop()?;
        let ranges: Vec<Bounds> = parts.iter().map(Region::bounds).collect();
        self.cutting = Some((span, parts));
        Some(etcd::count_ranges(&ranges, self.revision))
    }

    /// The counts of the parts of the span in flight, in order. Counts that do
    /// not add up to the span's own (which etcd at one revision never gives)
    /// leave the span uncut: it is read whole, as without a plan.
    pub fn take_counts(&mut self, counts: &[u64]) {
        let Some((span, parts)) = self.cutting.take() else {
            return;
        };
        let total = counts.iter().try_fold(0u64, |sum, count| sum.checked_add(*count));
        if counts.len() != parts.len() || total != Some(span.count) {
            self.ready.push(span);
            return;
        }
        for (region, count) in parts.into_iter().zip(counts) {
            self.place(Span { region, count: *count });
        }
    }

    /// No more cuts: every span is read as it stands.
    pub fn give_up(&mut self) {
        self.ready.extend(self.to_cut.drain(..).map(|(span, _)| span));
        self.ready.extend(self.cutting.take().map(|(span, _)| span));
    }

    /// The ranges to read, in key order, from `resume` on (the keys before it
    /// are read already): neighbouring spans together while their keys fit in
    /// `page` (the empty spans between them hold no key at the revision).
    pub fn reads(mut self, resume: &[u8], page: u64) -> VecDeque<Bounds> {
        self.give_up();
        let mut spans: Vec<(Bounds, u64)> = self
            .ready
            .iter()
            .map(|span| (span.region.bounds(), span.count))
            .collect();
        // The spans are disjoint, so no two share their bounds: an unstable
        // sort orders them as a stable one would (and costs the .wasm less).
        spans.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut reads: VecDeque<Bounds> = VecDeque::new();
        let mut keys_in_last = 0u64;
        for ((start, end), count) in spans {
            if end.as_slice() <= resume {
                continue;
            }
            match reads.back_mut() {
                Some(last) if keys_in_last.saturating_add(count) <= page => {
                    last.1 = end;
                    keys_in_last += count;
                }
                _ => {
                    reads.push_back((start.max(resume.to_vec()), end));
                    keys_in_last = count;
                }
            }
        }
        reads
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::etcd::fake::FakeEtcd;

    /// Regions worth checking: the whole, ranges of bytes, single bytes
    /// (0 holds the prefix itself, 0xff ends where the prefix does), a key.
    fn regions() -> Vec<Region> {
        let bytes = |prefix: &[u8], lo, hi| Region::Bytes {
            prefix: prefix.to_vec(),
            lo,
            hi,
        };
        vec![
            Region::under(b"/p/dev/"),
            Region::under(b"a\xff"),
            bytes(b"/p/dev/", 0, 0),
            bytes(b"/p/dev/", 0, 0x20),
            bytes(b"/p/dev/", b'd', b'd'),
            bytes(b"/p/dev/", 0x7f, 0x9e),
            bytes(b"/p/dev/", 0xff, 0xff),
            bytes(b"/p/dev/\xff", 0xdf, 0xff),
            Region::Key(b"/p/dev/x".to_vec()),
        ]
    }

    fn odd_keys() -> Vec<Vec<u8>> {
        let mut keys = Vec::new();
        for tail in [
            &b""[..],
            b"\0",
            b"\0\0\xff",
            b"\x01",
            b" ",
            b"!",
            b"d",
            b"dev0",
            b"~",
            b"\x7f",
            b"\x80",
            b"\x9e\xff",
            b"\xc3\xa9t\xc3\xa9@x.io",
            b"\xff",
            b"\xff\xff\xff",
            b"a\xff",
        ] {
            keys.push([&b"/p/dev/"[..], tail].concat());
            keys.push([&b"/p/dev/\xff"[..], tail].concat());
            keys.push([&b"a\xff"[..], tail].concat());
        }
        keys
    }

    fn holds(bounds: &Bounds, key: &[u8]) -> bool {
        key >= bounds.0.as_slice() && key < bounds.1.as_slice()
    }

    #[test]
    fn parts_hold_exactly_their_region_s_keys_in_order() {
        let mut cuts: Vec<(Region, Vec<Region>)> = regions().into_iter().map(|r| (r.clone(), r.parts())).collect();
        for key in odd_keys().into_iter().filter(|key| key.starts_with(b"/p/dev/")) {
            cuts.push((Region::under(b"/p/dev/"), along(b"/p/dev/", &key)));
        }
        let long = [&b"/p/dev/"[..], &[b'x'; 300]].concat();
        cuts.push((Region::under(b"/p/dev/"), along(b"/p/dev/", &long)));
        for (region, parts) in cuts {
            let whole = region.bounds();
            let parts: Vec<_> = parts.iter().map(Region::bounds).collect();
            assert!(
                parts.len() <= 102,
                "{region:?}: {} parts, etcd allows 128 operations",
                parts.len()
            );
            if let Region::Key(_) = region {
                assert!(parts.is_empty());
                continue;
            }
            assert_eq!(parts.first().unwrap().0, whole.0, "{region:?}");
            assert_eq!(parts.last().unwrap().1, whole.1, "{region:?}");
            for pair in parts.windows(2) {
                assert_eq!(pair[0].1, pair[1].0, "{region:?}: no gap, no overlap");
            }
            assert!(parts.iter().all(|(start, end)| start < end), "{region:?}");
            for key in odd_keys() {
                let inside = parts.iter().filter(|part| holds(part, &key)).count();
                assert_eq!(inside, usize::from(holds(&whole, &key)), "{region:?} {key:?}");
            }
        }
        assert_eq!(Region::under(b"/p/").parts().len(), 101);
    }

    /// Plans `keys` as the syncer does, against the fake etcd; returns the
    /// reads and the transactions it took.
    fn plan(keys: &[Vec<u8>], cut_above: u64, page: u64, resume: &[u8]) -> (VecDeque<Bounds>, usize) {
        let mut etcd = FakeEtcd::default();
        for key in keys {
            etcd.put_bytes(key, b"{}");
        }
        let guide = keys.iter().min().unwrap();
        let mut plan = Plan::new(etcd.revision, b"/p/dev/", keys.len() as u64, cut_above, guide);
        let mut cuts = 0;
        while let Some(request) = plan.next_cut() {
            assert!(cuts < 10_000, "the plan never ends");
            let (status, body) = etcd.answer(&request);
            let reads = etcd::parse_txn_reads(status, &body).unwrap();
            plan.take_counts(&reads.ranges.iter().map(|r| r.count).collect::<Vec<_>>());
            cuts += 1;
        }
        (plan.reads(resume, page), cuts)
    }

    fn assert_in_order_apart(reads: &VecDeque<Bounds>) {
        for (a, b) in reads.iter().zip(reads.iter().skip(1)) {
            assert!(a.0 < a.1 && a.1 <= b.0, "reads in order, apart: {a:?} {b:?}");
        }
    }

    fn covered<'a>(keys: &'a [Vec<u8>], reads: &VecDeque<Bounds>) -> Vec<&'a Vec<u8>> {
        keys.iter()
            .filter(|key| reads.iter().any(|(start, end)| *key >= start && *key < end))
            .collect()
    }

    #[test]
    fn every_key_is_in_exactly_one_read_and_reads_stay_small() {
        let addresses: Vec<Vec<u8>> = (0..20_000)
            .map(|i| format!("/p/dev/dev{i:08}@example.com").into_bytes())
            .collect();
        let (reads, cuts) = plan(&addresses, 1000, 2500, b"/p/dev/");
        assert_eq!(covered(&addresses, &reads).len(), addresses.len());
        assert_in_order_apart(&reads);
        let sizes: Vec<usize> = reads
            .iter()
            .map(|(start, end)| addresses.iter().filter(|k| *k >= start && *k < end).count())
            .collect();
        println!("{cuts} cuts, reads of {sizes:?}");
        assert!(sizes.iter().all(|size| *size <= 2500), "{sizes:?}");
        assert!(reads.len() <= 10, "{sizes:?}");
        // Along dev00000000's path; then what branches off above it at
        // `dev0000` (9,000 keys, by byte) and `dev000` (10,000: its byte '1',
        // then the bytes after it).
        assert_eq!(cuts, 4);

        // Keys the first page read already are left out.
        let resume = [addresses[4999].clone(), vec![0]].concat();
        let (reads, _) = plan(&addresses, 1000, 2500, &resume);
        assert_eq!(
            covered(&addresses, &reads),
            addresses[5000..].iter().collect::<Vec<_>>()
        );
    }

    #[test]
    fn odd_keys_are_read_too() {
        let mut keys: Vec<Vec<u8>> = (0..3000)
            .map(|i| format!("/p/dev/{}{i}@x.io", ["a", "b", "zz"][i % 3]).into_bytes())
            .collect();
        keys.extend(odd_keys().into_iter().filter(|key| key.starts_with(b"/p/dev/")));
        // Many keys under bytes outside ASCII, and under 0 bytes: cut deeper
        // until they fit, as any other.
        for i in 0..400 {
            keys.push([&b"/p/dev/\xc3\xa9"[..], format!("{i}").as_bytes()].concat());
            keys.push([&b"/p/dev/\0\0"[..], format!("{i}").as_bytes()].concat());
        }
        for (cut_above, page) in [(50, 20), (300, 100), (10_000, 5000)] {
            let (reads, _) = plan(&keys, cut_above, page, b"/p/dev/");
            assert_eq!(covered(&keys, &reads).len(), keys.len(), "cut above {cut_above}");
            assert_in_order_apart(&reads);
        }
    }

    #[test]
    fn counts_that_do_not_add_up_leave_the_span_whole() {
        let whole = Region::under(b"/p/dev/");
        // Three parts along `/p/dev/a`: below `a`, under it, above it.
        for counts in [vec![3, 3, 3], vec![1; 5], vec![u64::MAX, 11, 0]] {
            let mut plan = Plan::new(7, b"/p/dev/", 10, 1, b"/p/dev/a");
            assert!(plan.next_cut().is_some());
            plan.take_counts(&counts);
            assert!(plan.next_cut().is_none());
            assert_eq!(plan.reads(b"", 100), VecDeque::from([whole.bounds()]));
        }
    }
}
