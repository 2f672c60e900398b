//! Standard Webhooks 1.0 signatures: `webhook-signature` carries
//! `v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">`, one per secret,
//! space-separated (several secrets let a receiver rotate without a gap).
//! Secrets are written `whsec_<base64 of the key>`.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::encoding::base64::{self, Alphabet};

/// A signing key, decoded from its `whsec_` form.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret({} bytes)", self.0.len())
    }
}

/// Keys shorter than this are refused (the specification asks for 24 to 64 bytes).
pub const MIN_KEY_BYTES: usize = 24;
pub const MAX_KEY_BYTES: usize = 64;

impl Secret {
    pub fn parse(text: &str) -> Result<Secret, String> {
        let encoded = text
            .strip_prefix("whsec_")
            .ok_or_else(|| "must start with \"whsec_\" (Standard Webhooks' secret format)".to_string())?;
        let key = base64::decode(Alphabet::Standard, encoded)
            .ok_or_else(|| "the part after \"whsec_\" is not base64".to_string())?;
        if !(MIN_KEY_BYTES..=MAX_KEY_BYTES).contains(&key.len()) {
            return Err(format!(
                "decodes to {} bytes; a key has {MIN_KEY_BYTES} to {MAX_KEY_BYTES}",
                key.len()
            ));
        }
        Ok(Secret(key))
    }

    /// `v1,<signature>` of one message.
    fn sign(&self, id: &str, timestamp: u64, body: &[u8]) -> String {
        // new_from_slice only fails for fixed-size keys; HMAC takes any length.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.0) else {
            return String::new();
        };
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        let tag = mac.finalize().into_bytes();
        format!("v1,{}", base64::encode(Alphabet::Standard, &tag))
    }
}

/// The `webhook-signature` header's value: one signature per secret.
pub fn signature_header(secrets: &[Secret], id: &str, timestamp: u64, body: &[u8]) -> String {
    secrets
        .iter()
        .map(|secret| secret.sign(id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_specifications_example_signature() {
        // Standard Webhooks' published test vector.
        let secret = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            signature_header(&[secret], "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn several_secrets_sign_once_each() {
        let a = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let b = Secret::parse(&format!("whsec_{}", base64::encode(Alphabet::Standard, &[7u8; 32]))).unwrap();
        let header = signature_header(&[a, b], "id", 1, b"{}");
        assert_eq!(header.split(' ').count(), 2);
        assert!(header.split(' ').all(|s| s.starts_with("v1,")));
    }

    #[test]
    fn malformed_secrets_are_refused() {
        assert!(Secret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_err());
        assert!(Secret::parse("whsec_not base64!").is_err());
        assert!(Secret::parse("whsec_c2hvcnQ=").is_err(), "5 bytes is too short");
    }
}
