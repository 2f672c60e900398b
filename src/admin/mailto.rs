//! `mailto:` links (RFC 6068): "Email Developer" and the invitation that BCCs
//! every invited address and links to the portal's registration page.

use crate::request::email::canonical_email;

/// Percent-encodes everything but RFC 3986's unreserved characters and `keep`.
fn encode(text: &str, keep: &[u8]) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) || keep.contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Decodes `%XX` escapes; `None` for a broken escape or bytes that are not UTF-8.
pub fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        if byte == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(byte);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// An address in a `to` or `bcc` position: `@` stays, the rest is encoded.
fn address(email: &str) -> String {
    encode(email, b"@")
}

/// RFC 6068 wants line breaks in a body as CRLF.
fn body_text(text: &str) -> String {
    encode(&text.replace("\r\n", "\n").replace('\n', "\r\n"), b"")
}

pub fn to_developer(email: &str) -> String {
    format!("mailto:{}", address(email))
}

pub fn invitation(emails: &[String], subject: &str, body: &str) -> String {
    let bcc: Vec<String> = emails.iter().map(|e| address(e)).collect();
    format!(
        "mailto:?bcc={}&subject={}&body={}",
        bcc.join(","),
        encode(subject, b""),
        body_text(body)
    )
}

/// The addresses of an invitation, split, validated and de-duplicated.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Invitees {
    /// Canonical, in first-seen order.
    pub valid: Vec<String>,
    /// (what was typed, why it is not an address)
    pub invalid: Vec<(String, String)>,
    pub duplicates: usize,
}

pub fn invitees<'a>(inputs: impl Iterator<Item = &'a str>) -> Invitees {
    let mut result = Invitees::default();
    for input in inputs {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            continue;
        }
        match canonical_email(trimmed) {
            Ok(email) if result.valid.contains(&email) => result.duplicates += 1,
            Ok(email) => result.valid.push(email),
            Err(error) => result
                .invalid
                .push((trimmed.to_string(), format!("{trimmed:?} {error}"))),
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(text: &str) -> String {
        percent_decode(text).unwrap()
    }

    #[test]
    fn invitation_round_trips() {
        let link = invitation(
            &["a@x.io".into(), "o'neil+dev@x.io".into()],
            "Join our portal & APIs",
            "Hello,\nregister at https://portal.example.com/register?from=invite",
        );
        let query = link.strip_prefix("mailto:?").unwrap();
        let fields: Vec<(&str, &str)> = query.split('&').map(|kv| kv.split_once('=').unwrap()).collect();
        assert_eq!(fields[0].0, "bcc");
        let bcc: Vec<String> = fields[0].1.split(',').map(decode).collect();
        assert_eq!(bcc, ["a@x.io", "o'neil+dev@x.io"]);
        assert_eq!(decode(fields[1].1), "Join our portal & APIs");
        assert_eq!(
            decode(fields[2].1),
            "Hello,\r\nregister at https://portal.example.com/register?from=invite"
        );
        assert!(!link.contains(' ') && link.matches('&').count() == 2);
    }

    #[test]
    fn invitees_are_validated_and_deduplicated() {
        let result = invitees("a@x.io, A@X.io ,, not-an-address, b@y.io".split(','));
        assert_eq!(result.valid, ["a@x.io", "b@y.io"]);
        assert_eq!(result.duplicates, 1);
        assert_eq!(result.invalid.len(), 1);
        assert_eq!(result.invalid[0].0, "not-an-address");
        assert_eq!(to_developer("a+b@x.io"), "mailto:a%2Bb@x.io");
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%4"), None);
        assert_eq!(percent_decode("%FF"), None);
    }
}
