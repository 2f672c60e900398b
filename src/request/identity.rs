//! Who is asking: the developer's e-mail, from a trusted header or from the verified
//! JWT payload that Envoy's `jwt_authn` forwards.
//!
//! Anything malformed or ambiguous is "no identity", never a match: a header given
//! twice, garbled base64url or JSON, a missing or non-string claim, a claim that
//! appears twice in the payload, a value that is not a single e-mail address.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};

use crate::encoding::base64::{self, Alphabet};
use crate::request::email::{canonical_email, EmailError};

/// Where the identity comes from (compiled from configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentitySource {
    /// The header's value is the e-mail (Kong key-auth's `x-consumer-username`).
    Header { name: String },
    /// The header carries `jwt_authn`'s `forward_payload_header`: unpadded
    /// base64url JSON; `claim` holds the e-mail.
    JwtPayload { header: String, claim: String },
}

impl IdentitySource {
    pub fn header_name(&self) -> &str {
        match self {
            IdentitySource::Header { name } => name,
            IdentitySource::JwtPayload { header, .. } => header,
        }
    }

    /// Resolves the identity from every value the request carries for
    /// `header_name()`, in order.
    pub fn resolve(&self, values: &[&str]) -> Result<String, IdentityError> {
        let value = match values {
            [] => return Err(IdentityError::Missing),
            [value] => *value,
            _ => return Err(IdentityError::Duplicated),
        };
        match self {
            IdentitySource::Header { .. } => canonical_email(value).map_err(IdentityError::BadEmail),
            IdentitySource::JwtPayload { claim, .. } => {
                let payload = decode_base64url(value.trim_matches(|c: char| c.is_ascii_whitespace()))
                    .ok_or(IdentityError::BadBase64)?;
                let email = claim_from_payload(&payload, claim)?;
                canonical_email(&email).map_err(IdentityError::BadEmail)
            }
        }
    }
}

impl IdentitySource {
    /// The token's claims, for registration rules: `None` for a header
    /// identity, a payload that is not a JSON object, or one that names any
    /// claim twice (parsers disagree on which copy wins; no claims, no rule).
    pub fn claims(&self, values: &[&str]) -> Option<serde_json::Map<String, serde_json::Value>> {
        let IdentitySource::JwtPayload { .. } = self else {
            return None;
        };
        let [value] = values else { return None };
        let payload = decode_base64url(value.trim_matches(|c: char| c.is_ascii_whitespace()))?;
        let mut deserializer = serde_json::Deserializer::from_slice(&payload);
        let entries = de::Deserializer::deserialize_map(&mut deserializer, Entries).ok()?;
        deserializer.end().ok()?;
        let mut claims = serde_json::Map::new();
        for (name, value) in entries {
            if claims.insert(name, value).is_some() {
                return None;
            }
        }
        Some(claims)
    }
}

/// Every entry of a JSON object, duplicates kept.
struct Entries;

impl<'de> Visitor<'de> for Entries {
    type Value = Vec<(String, serde_json::Value)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(entry) = map.next_entry::<String, serde_json::Value>()? {
            entries.push(entry);
        }
        Ok(entries)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityError {
    Missing,
    Duplicated,
    BadBase64,
    BadJson,
    MissingClaim,
    ClaimNotAString,
    DuplicatedClaim,
    BadEmail(EmailError),
}

impl IdentityError {
    /// A short, stable reason for logs (never the value itself).
    pub fn reason(self) -> &'static str {
        match self {
            IdentityError::Missing => "no identity header",
            IdentityError::Duplicated => "identity header given more than once",
            IdentityError::BadBase64 => "JWT payload header is not base64url",
            IdentityError::BadJson => "JWT payload is not a JSON object",
            IdentityError::MissingClaim => "JWT payload lacks the configured claim",
            IdentityError::ClaimNotAString => "JWT claim is not a string",
            IdentityError::DuplicatedClaim => "JWT claim appears more than once",
            IdentityError::BadEmail(_) => "identity is not an e-mail address",
        }
    }
}

impl fmt::Display for IdentityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdentityError::BadEmail(why) => write!(f, "{}: it {}", self.reason(), why),
            _ => f.write_str(self.reason()),
        }
    }
}

/// Decodes base64url (RFC 4648 §5); padding optional, `+` and `/` refused.
pub fn decode_base64url(input: &str) -> Option<Vec<u8>> {
    base64::decode(Alphabet::Url, input)
}

/// Unpadded base64url, the inverse of `decode_base64url` (used by tests and
/// tools that mint payloads; the filter itself only decodes).
pub fn encode_base64url(data: &[u8]) -> String {
    base64::encode(Alphabet::Url, data)
}

/// Extracts one string claim from a JSON object without building the whole value,
/// refusing a payload where the claim appears twice (parsers disagree on which
/// copy wins).
pub fn claim_from_payload(payload: &[u8], claim: &str) -> Result<String, IdentityError> {
    // The visitor reports *why* it stopped here; serde errors only carry text.
    let failure = Cell::new(IdentityError::BadJson);
    let mut deserializer = serde_json::Deserializer::from_slice(payload);
    let found = ClaimSeed {
        claim,
        failure: &failure,
    }
    .deserialize(&mut deserializer)
    .map_err(|_| failure.get())?;
    deserializer.end().map_err(|_| IdentityError::BadJson)?;
    found.ok_or(IdentityError::MissingClaim)
}

struct ClaimSeed<'c> {
    claim: &'c str,
    failure: &'c Cell<IdentityError>,
}

impl<'de> DeserializeSeed<'de> for ClaimSeed<'_> {
    type Value = Option<String>;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ClaimSeed<'_> {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found: Option<String> = None;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key != self.claim {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            if found.is_some() {
                self.failure.set(IdentityError::DuplicatedClaim);
                return Err(de::Error::custom("duplicate claim"));
            }
            match map.next_value::<serde_json::Value>()? {
                serde_json::Value::String(s) => found = Some(s),
                _ => {
                    self.failure.set(IdentityError::ClaimNotAString);
                    return Err(de::Error::custom("claim is not a string"));
                }
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64url(data: &[u8]) -> String {
        encode_base64url(data)
    }

    fn jwt_source() -> IdentitySource {
        IdentitySource::JwtPayload {
            header: "x-jwt-payload".into(),
            claim: "email".into(),
        }
    }

    #[test]
    fn header_identity() {
        let source = IdentitySource::Header {
            name: "x-consumer-username".into(),
        };
        assert_eq!(source.resolve(&[" Alice@Example.com "]), Ok("alice@example.com".into()));
        assert_eq!(source.resolve(&[]), Err(IdentityError::Missing));
        assert_eq!(source.resolve(&["a@x.io", "a@x.io"]), Err(IdentityError::Duplicated));
        assert!(matches!(
            source.resolve(&["alice@x.io,bob@x.io"]),
            Err(IdentityError::BadEmail(_))
        ));
        assert!(matches!(source.resolve(&[""]), Err(IdentityError::BadEmail(_))));
    }

    #[test]
    fn base64url_round_trips_and_rejects_garbage() {
        for data in [&b""[..], b"f", b"fo", b"foo", b"foob", b"{\"email\":\"a@b.c\"}"] {
            assert_eq!(decode_base64url(&b64url(data)).unwrap(), data);
        }
        assert_eq!(decode_base64url("Zm8=").unwrap(), b"fo");
        assert_eq!(decode_base64url("Zm9v").unwrap(), b"foo");
        assert!(decode_base64url("Zm8").is_some());
        assert!(decode_base64url("Z").is_none());
        assert!(decode_base64url("Zm+v").is_none());
        assert!(decode_base64url("Zm/v").is_none());
        assert!(decode_base64url("Zm8==").is_none());
        assert!(decode_base64url("Zm 9v").is_none());
        assert!(decode_base64url("Z===").is_none());
    }

    #[test]
    fn jwt_payload_identity() {
        let source = jwt_source();
        let payload = b64url(br#"{"sub":"1","email":"Alice@Example.com","aud":["a","b"],"n":{"email":"x@y.z"}}"#);
        assert_eq!(source.resolve(&[&payload]), Ok("alice@example.com".into()));
    }

    #[test]
    fn jwt_payload_errors() {
        let source = jwt_source();
        let cases: &[(&[u8], IdentityError)] = &[
            (br#"{"sub":"1"}"#, IdentityError::MissingClaim),
            (br#"{"email":42}"#, IdentityError::ClaimNotAString),
            (br#"{"email":null}"#, IdentityError::ClaimNotAString),
            (
                br#"{"email":"a@x.io","email":"b@x.io"}"#,
                IdentityError::DuplicatedClaim,
            ),
            (br#"{"email":"a@x.io""#, IdentityError::BadJson),
            (br#"["a@x.io"]"#, IdentityError::BadJson),
            (br#"{"email":"a@x.io"} trailing"#, IdentityError::BadJson),
            (b"\xff\xfe", IdentityError::BadJson),
        ];
        for (payload, expected) in cases {
            assert_eq!(
                source.resolve(&[&b64url(payload)]),
                Err(*expected),
                "{:?}",
                String::from_utf8_lossy(payload)
            );
        }
        assert_eq!(source.resolve(&["!!!"]), Err(IdentityError::BadBase64));
        assert!(matches!(
            source.resolve(&[&b64url(br#"{"email":"not-an-email"}"#)]),
            Err(IdentityError::BadEmail(_))
        ));
    }
}
