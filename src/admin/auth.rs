//! Who may use the admin API: bearer tokens from the configuration, each with
//! a name recorded as the actor; compared in full, in constant time.

use super::*;

/// The name of the token presented as `Authorization: Bearer <token>`. Every
/// configured token is compared in full, so timing tells nothing about which
/// one matched or how much of it.
pub fn authenticate<'c>(config: &'c AdminConfig, authorization: &[String]) -> Result<&'c str, ApiResponse> {
    let refused = || {
        error(
            401,
            "unauthorized",
            "a valid \"Authorization: Bearer <token>\" header is required",
        )
    };
    let [value] = authorization else { return Err(refused()) };
    let Some(presented) = value.strip_prefix("Bearer ").map(str::trim) else {
        return Err(refused());
    };
    let mut found: Option<&str> = None;
    for (name, token) in &config.tokens {
        if constant_time_eq(presented.as_bytes(), token.as_bytes()) {
            found = Some(name);
        }
    }
    found.ok_or_else(refused)
}

pub(super) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut difference = u8::from(a.len() != b.len());
    for (i, &x) in a.iter().enumerate() {
        // Compare against `b` cyclically so the loop length only depends on `a`.
        let y = if b.is_empty() {
            0
        } else {
            b.get(i % b.len()).copied().unwrap_or(0)
        };
        difference |= x ^ y;
    }
    difference == 0
}
