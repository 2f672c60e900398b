//! The proxy-wasm ABI's encoding of a header map, as bytes. Pure, so that the
//! decoder, which reads what the host hands over, is tested (and fuzzed) here.

/// A header's name and value, as the bytes the host holds, read in place.
pub type Pair<'a> = (&'a [u8], &'a [u8]);

/// The ABI's map encoding: a `u32` count, a (name size, value size) `u32` pair per
/// entry, then each name and value followed by a NUL. All little-endian.
pub fn encode_pairs(pairs: &[(&str, &str)]) -> Vec<u8> {
    let size = 4 + pairs.iter().map(|(n, v)| n.len() + v.len() + 10).sum::<usize>();
    let mut bytes = Vec::with_capacity(size);
    bytes.extend_from_slice(&len_u32(pairs.len()).to_le_bytes());
    for (name, value) in pairs {
        bytes.extend_from_slice(&len_u32(name.len()).to_le_bytes());
        bytes.extend_from_slice(&len_u32(value.len()).to_le_bytes());
    }
    for (name, value) in pairs {
        bytes.extend_from_slice(name.as_bytes());
        bytes.push(0);
        bytes.extend_from_slice(value.as_bytes());
        bytes.push(0);
    }
    bytes
}

fn len_u32(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

/// Decodes `encode_pairs`' format; `None` if the bytes do not hold together.
pub fn decode_pairs(bytes: &[u8]) -> Option<Vec<Pair<'_>>> {
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let read_u32 = |at: usize| -> Option<usize> {
        let word: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
        usize::try_from(u32::from_le_bytes(word)).ok()
    };
    let count = read_u32(0)?;
    let mut sizes_at = 4usize;
    let mut data_at = count.checked_mul(8)?.checked_add(4)?;
    let mut pairs = Vec::with_capacity(count.min(bytes.len() / 8));
    for _ in 0..count {
        let name_len = read_u32(sizes_at)?;
        let value_len = read_u32(sizes_at + 4)?;
        sizes_at += 8;
        let name_end = data_at.checked_add(name_len)?;
        let name = bytes.get(data_at..name_end)?;
        let value_at = name_end.checked_add(1)?;
        let value_end = value_at.checked_add(value_len)?;
        let value = bytes.get(value_at..value_end)?;
        data_at = value_end.checked_add(1)?;
        pairs.push((name, value));
    }
    Some(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_keeps_bytes_that_are_not_utf8() {
        let encoded = encode_pairs(&[(":path", "/api"), ("x-a", "")]);
        let decoded = decode_pairs(&encoded).unwrap();
        assert_eq!(decoded, vec![(&b":path"[..], &b"/api"[..]), (&b"x-a"[..], &b""[..])]);
        // A value with 0xFF (what a Latin-1 client sends) comes back as bytes.
        let mut raw = encode_pairs(&[("x-b", "a")]);
        let at = raw.len() - 2;
        raw[at] = 0xFF;
        assert_eq!(decode_pairs(&raw).unwrap(), vec![(&b"x-b"[..], &[0xFF][..])]);
        assert_eq!(decode_pairs(&[]).unwrap(), Vec::new());
    }

    #[test]
    fn refuses_truncated_or_lying_encodings_without_panicking() {
        let encoded = encode_pairs(&[("name", "value"), ("n2", "v2")]);
        for cut in 0..encoded.len() {
            let _ = decode_pairs(&encoded[..cut]);
        }
        assert!(decode_pairs(&encoded[..encoded.len() - 3]).is_none());
        assert!(decode_pairs(&[0xFF, 0xFF, 0xFF, 0xFF]).is_none());
        let mut state = 0x1234_5678_u32;
        for _ in 0..20_000 {
            let len = (state % 40) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 17;
                    state ^= state << 5;
                    (state % 7) as u8
                })
                .collect();
            let _ = decode_pairs(&bytes);
        }
    }
}
