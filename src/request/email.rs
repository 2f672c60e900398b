//! Developer e-mail addresses: the directory's key.
//!
//! Which addresses are accepted at all: ASCII only, and only characters that every
//! host passes through a URL path unchanged, so every accepted address can be
//! named in `/developers/{email}` on Envoy and on Kong (whose nginx decodes the
//! path before the filter sees it) and in a `mailto:` link:
//! - local part: letters, digits and `. ! $ & ' * + - = _ ~` (RFC 5322's atext
//!   that is also an RFC 3986 path character);
//! - domain: labels of letters, digits and `-`, separated by single dots
//!   (internationalized domains in their `xn--` form).
//!
//! Addresses compare case-insensitively after trimming ASCII whitespace only:
//! Unicode whitespace (U+00A0, U+3000) is not trimmed, so it makes the value no
//! address. Refusing non-ASCII also rules out Unicode look-alikes
//! (`\u{212A}arl@x.io`, KELVIN SIGN, which Unicode lowercases to `karl@x.io`).

use std::fmt;

/// RFC 5321's limit on a forward path; longer values are not addresses.
pub const MAX_EMAIL_LEN: usize = 254;
const MAX_LOCAL_PART_LEN: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmailError {
    Empty,
    TooLong,
    NotOneAt,
    EmptyLocalPart,
    LocalPartTooLong,
    BadDomain,
    ForbiddenCharacter,
}

impl fmt::Display for EmailError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EmailError::Empty => "is empty",
            EmailError::TooLong => "is longer than 254 characters",
            EmailError::NotOneAt => "must contain exactly one '@'",
            EmailError::EmptyLocalPart => "has nothing before the '@'",
            EmailError::LocalPartTooLong => "has more than 64 characters before the '@'",
            EmailError::BadDomain => "has no valid domain after the '@'",
            EmailError::ForbiddenCharacter => {
                "contains a character other than ASCII letters, digits, '@' and . ! $ & ' * + - = _ ~"
            }
        })
    }
}

/// Returns the canonical form of an address (trimmed, ASCII-lowercased), or why the
/// value is not a usable address. Quoted local parts and address lists are refused:
/// they are where parsers disagree, and a gate must not guess.
pub fn canonical_email(raw: &str) -> Result<String, EmailError> {
    let trimmed = raw.trim_matches(|c: char| c.is_ascii_whitespace());
    if trimmed.is_empty() {
        return Err(EmailError::Empty);
    }
    if trimmed.len() > MAX_EMAIL_LEN {
        return Err(EmailError::TooLong);
    }
    if !trimmed.bytes().all(|byte| byte == b'@' || is_local_part_byte(byte)) {
        return Err(EmailError::ForbiddenCharacter);
    }
    let mut parts = trimmed.split('@');
    let (local, domain) = match (parts.next(), parts.next(), parts.next()) {
        (Some(local), Some(domain), None) => (local, domain),
        _ => return Err(EmailError::NotOneAt),
    };
    if local.is_empty() {
        return Err(EmailError::EmptyLocalPart);
    }
    if local.len() > MAX_LOCAL_PART_LEN {
        return Err(EmailError::LocalPartTooLong);
    }

    if !is_plausible_domain(domain) {
        return Err(EmailError::BadDomain);
    }
    Ok(trimmed.to_ascii_lowercase())
}

fn is_local_part_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric()
        || matches!(
            byte,
            b'.' | b'!' | b'$' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'=' | b'_' | b'~'
        )
}

/// Labels of letters, digits and `-`, separated by single dots, none empty.
fn is_plausible_domain(domain: &str) -> bool {
    !domain.is_empty()
        && domain
            .split('.')
            .all(|label| !label.is_empty() && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_and_folds_ascii_case() {
        assert_eq!(canonical_email("  Alice@Example.COM ").unwrap(), "alice@example.com");
    }

    #[test]
    fn refuses_non_ascii_so_nothing_folds_into_another_address() {
        // KELVIN SIGN must not become 'k': it is not accepted at all.
        assert_eq!(
            canonical_email("\u{212A}arl@example.com"),
            Err(EmailError::ForbiddenCharacter)
        );
        assert_eq!(
            canonical_email("J\u{00D6}RG@example.com"),
            Err(EmailError::ForbiddenCharacter)
        );
        assert_eq!(
            canonical_email("jorg@b\u{00FC}cher.de"),
            Err(EmailError::ForbiddenCharacter)
        );
        assert_eq!(
            canonical_email("jorg@xn--bcher-kva.de").unwrap(),
            "jorg@xn--bcher-kva.de"
        );
    }

    #[test]
    fn trims_ascii_whitespace_only() {
        assert_eq!(
            canonical_email("\t alice@example.com\r\n").unwrap(),
            "alice@example.com"
        );
        assert_eq!(
            canonical_email("\u{00A0}alice@example.com"),
            Err(EmailError::ForbiddenCharacter)
        );
        assert_eq!(
            canonical_email("alice@example.com\u{3000}"),
            Err(EmailError::ForbiddenCharacter)
        );
        assert_eq!(
            canonical_email("alice@example.com\u{2028}"),
            Err(EmailError::ForbiddenCharacter)
        );
        assert_eq!(canonical_email("alice@exa_mple.com"), Err(EmailError::BadDomain));
    }

    #[test]
    fn every_accepted_address_is_a_plain_url_path_segment() {
        // Characters that need escaping in a path (and that Kong's nginx decodes
        // before the filter sees the path) are refused.
        for bad in ["a/b", "a%b", "a?b", "a#b", "a{b", "a|b", "a^b", "a`b", "a:b", "a@b@c"] {
            assert!(canonical_email(&format!("{bad}@example.com")).is_err(), "{bad}");
        }
        for good in [
            "a.b", "a+tag", "o'neil", "a!b", "a$b", "a&b", "a*b", "a=b", "a_b", "a~b", "a-b",
        ] {
            let email = canonical_email(&format!("{good}@example.com")).unwrap();
            assert!(email
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"@.!$&'*+-=_~".contains(&b)));
        }
    }

    #[test]
    fn rejects_malformed_addresses() {
        assert_eq!(canonical_email("   "), Err(EmailError::Empty));
        assert_eq!(canonical_email("alice"), Err(EmailError::NotOneAt));
        assert_eq!(canonical_email("a@b@c.com"), Err(EmailError::NotOneAt));
        assert_eq!(canonical_email("@example.com"), Err(EmailError::EmptyLocalPart));
        assert_eq!(canonical_email("alice@"), Err(EmailError::BadDomain));
        assert_eq!(canonical_email("alice@example..com"), Err(EmailError::BadDomain));
        assert_eq!(
            canonical_email("alice@example.com, bob@example.com"),
            Err(EmailError::ForbiddenCharacter)
        );
        assert_eq!(
            canonical_email("al ice@example.com"),
            Err(EmailError::ForbiddenCharacter)
        );
        assert_eq!(
            canonical_email("alice\0@example.com"),
            Err(EmailError::ForbiddenCharacter)
        );
        assert_eq!(
            canonical_email("\"a\"@example.com"),
            Err(EmailError::ForbiddenCharacter)
        );
        let long_local = format!("{}@example.com", "a".repeat(65));
        assert_eq!(canonical_email(&long_local), Err(EmailError::LocalPartTooLong));
        let long = format!("a@{}.com", "b".repeat(260));
        assert_eq!(canonical_email(&long), Err(EmailError::TooLong));
    }
}
