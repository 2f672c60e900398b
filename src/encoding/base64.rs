//! Base64 (RFC 4648) in its two alphabets: base64url for JWT payloads (§5) and
//! the standard one that etcd's JSON gateway uses for keys and values (§4).
//! Small enough to own; decoding refuses anything not canonical to its alphabet.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alphabet {
    /// `+` and `/`; etcd's gateway pads.
    Standard,
    /// `-` and `_`; JWTs do not pad.
    Url,
}

impl Alphabet {
    fn table(self) -> &'static [u8; 64] {
        match self {
            Alphabet::Standard => b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
            Alphabet::Url => b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
        }
    }

    fn value(self, byte: u8) -> Option<u8> {
        match (self, byte) {
            (_, b'A'..=b'Z') => Some(byte - b'A'),
            (_, b'a'..=b'z') => Some(byte - b'a' + 26),
            (_, b'0'..=b'9') => Some(byte - b'0' + 52),
            (Alphabet::Standard, b'+') | (Alphabet::Url, b'-') => Some(62),
            (Alphabet::Standard, b'/') | (Alphabet::Url, b'_') => Some(63),
            _ => None,
        }
    }
}

/// Padding is optional but must be correct when present.
pub fn decode(alphabet: Alphabet, input: &str) -> Option<Vec<u8>> {
    let unpadded = input.trim_end_matches('=');
    let padding = input.len() - unpadded.len();
    if padding > 0 && (!input.len().is_multiple_of(4) || padding > 2) {
        return None;
    }
    if unpadded.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(unpadded.len() * 3 / 4);
    let mut buffer: u32 = 0;
    let mut bits = 0u32;
    for byte in unpadded.bytes() {
        buffer = (buffer << 6) | u32::from(alphabet.value(byte)?);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// Standard alphabet with padding; URL alphabet without.
pub fn encode(alphabet: Alphabet, data: &[u8]) -> String {
    let table = alphabet.table();
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let byte = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let group = (byte(0) << 16) | (byte(1) << 8) | byte(2);
        for i in 0..=chunk.len() {
            let index = (group >> (18 - 6 * i)) & 63;
            out.extend(table.get(index as usize).map(|&c| char::from(c)));
        }
        if alphabet == Alphabet::Standard {
            for _ in chunk.len()..3 {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_alphabets_round_trip() {
        for data in [
            &b""[..],
            b"f",
            b"fo",
            b"foo",
            b"foob",
            b"\xfb\xff\xfe",
            b"{\"email\":\"a@b.c\"}",
        ] {
            for alphabet in [Alphabet::Standard, Alphabet::Url] {
                assert_eq!(decode(alphabet, &encode(alphabet, data)).unwrap(), data);
            }
        }
        assert_eq!(encode(Alphabet::Standard, b"fo"), "Zm8=");
        assert_eq!(encode(Alphabet::Standard, b"\xfb\xff"), "+/8=");
        assert_eq!(encode(Alphabet::Url, b"\xfb\xff"), "-_8");
        // etcd's own encoding of "/p/dev/a", as its gateway printed it.
        assert_eq!(decode(Alphabet::Standard, "L3AvZGV2L2E=").unwrap(), b"/p/dev/a");
    }

    #[test]
    fn garbage_is_refused() {
        assert!(decode(Alphabet::Url, "Zm+v").is_none());
        assert!(decode(Alphabet::Standard, "Zm-v").is_none());
        for bad in ["Z", "Zm8==", "Zm 9v", "Z===", "Zm8=Zm8="] {
            assert!(decode(Alphabet::Standard, bad).is_none(), "{bad}");
        }
    }
}
