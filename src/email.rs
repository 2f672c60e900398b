//! Developer e-mail addresses: the directory's key.
//!
//! Addresses compare case-insensitively after trimming, but only ASCII letters are
//! folded. Unicode case folding would let a distinct address collide with an
//! approved one (`\u{212A}arl@x.io` — KELVIN SIGN — lowercases to `karl@x.io`), so
//! non-ASCII characters are compared exactly.

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
                "contains whitespace, a control character or one of , ; < > \" ( ) [ ] \\"
            }
        })
    }
}

/// Returns the canonical form of an address (trimmed, ASCII-lowercased), or why the
/// value is not a usable address. Quoted local parts and address lists are refused:
/// they are where parsers disagree, and a gate must not guess.
pub fn canonical_email(raw: &str) -> Result<String, EmailError> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err(EmailError::Empty);
    }
    if trimmed.len() > MAX_EMAIL_LEN {
        return Err(EmailError::TooLong);
    }
    if trimmed.chars().any(is_forbidden) {
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

fn is_forbidden(c: char) -> bool {
    c.is_whitespace() || c.is_control() || matches!(c, ',' | ';' | '<' | '>' | '"' | '(' | ')' | '[' | ']' | '\\')
}

/// Labels separated by single dots, none empty. Internationalized domains are
/// accepted as written; no DNS rules beyond that are enforced.
fn is_plausible_domain(domain: &str) -> bool {
    !domain.is_empty() && domain.split('.').all(|label| !label.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_and_folds_ascii_case() {
        assert_eq!(canonical_email("  Alice@Example.COM ").unwrap(), "alice@example.com");
    }

    #[test]
    fn does_not_fold_non_ascii() {
        // KELVIN SIGN must not become 'k'.
        let kelvin = canonical_email("\u{212A}arl@example.com").unwrap();
        assert_ne!(kelvin, "karl@example.com");
        assert_eq!(
            canonical_email("J\u{00D6}RG@example.com").unwrap(),
            "j\u{00D6}rg@example.com"
        );
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
