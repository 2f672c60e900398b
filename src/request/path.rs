//! Request-path normalization, so that classification sees what the upstream will.
//!
//! Equivalent to Envoy's `normalize_path` followed by `merge_slashes`:
//! percent-encoded unreserved characters are decoded, dot-segments are removed
//! (RFC 3986 §5.2.4) and repeated slashes are merged. Query and fragment are not
//! part of the path. The filter forwards the normalized path upstream (see the
//! README), so an upstream can never resolve a path differently from how it was
//! classified.
//!
//! Refused outright, on every route (the classification of such a path cannot be
//! trusted, because upstreams disagree on what it means):
//! - `%2F` and `%5C` (encoded `/` and `\`), `%00` and `%3B` (encoded `;`);
//! - `%25` (an encoded `%`: double encoding, which an upstream that decodes twice
//!   would turn into `/` or `..`), and escapes that do not decode to UTF-8 (`%FF`,
//!   the overlong `%C0%AE` that lenient decoders read as `.`);
//! - invalid percent-encoding (`%`, `%G1`);
//! - a raw `;` (path parameters: Tomcat and Spring resolve `/public/..;/admin` to
//!   `/admin`), a raw `\`, and any byte outside RFC 3986's path characters
//!   (controls, spaces, non-ASCII, `"<>^`{|}`).

use std::borrow::Cow;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// The request target does not start with `/`.
    NotOriginForm,
    /// `%` not followed by two hex digits.
    InvalidPercentEncoding,
    /// `%2F` or `%5C`.
    EncodedSeparator,
    /// `%00`.
    EncodedNul,
    /// A raw or encoded `;`.
    PathParameter,
    /// A raw `\`.
    Backslash,
    /// A byte that RFC 3986 does not allow in a path.
    InvalidCharacter,
    /// `%25`: an encoded `%`, i.e. a double-encoded path (`%252e` is `.` to an
    /// upstream that decodes twice).
    EncodedPercent,
    /// Percent-encoded bytes that do not decode to UTF-8 (`%FF`, the overlong
    /// `%C0%AE` that lenient decoders read as `.`).
    InvalidUtf8,
}

impl PathError {
    pub fn message(self) -> &'static str {
        match self {
            PathError::NotOriginForm => "the request path must start with '/'",
            PathError::InvalidPercentEncoding => "the request path contains invalid percent-encoding",
            PathError::EncodedSeparator => "the request path contains an encoded '/' or '\\' (%2F, %5C)",
            PathError::EncodedNul => "the request path contains an encoded NUL (%00)",
            PathError::PathParameter => "the request path contains ';' (path parameters are not accepted)",
            PathError::Backslash => "the request path contains '\\'",
            PathError::InvalidCharacter => "the request path contains a character that is not allowed in a URL path",
            PathError::EncodedPercent => {
                "the request path contains an encoded '%' (%25): double encoding is not accepted"
            }
            PathError::InvalidUtf8 => "the request path contains percent-encoded bytes that are not UTF-8",
        }
    }
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

/// A request target split into its normalized path and the untouched query.
#[derive(Debug, PartialEq, Eq)]
pub struct NormalizedTarget<'a> {
    /// The normalized path. Borrowed when the request already was normal.
    pub path: Cow<'a, str>,
    /// `?` and what follows, without any fragment; empty when there is none.
    pub query: &'a str,
    /// True when `path` differs from what the client sent (the filter then
    /// rewrites `:path`), or when a fragment was dropped.
    pub changed: bool,
}

impl NormalizedTarget<'_> {
    /// The request target to send upstream.
    pub fn to_request_target(&self) -> String {
        let mut target = String::with_capacity(self.path.len() + self.query.len());
        target.push_str(&self.path);
        target.push_str(self.query);
        target
    }
}

/// Normalizes a `:path` value. Allocation-free when the path is already normal.
pub fn normalize(target: &str) -> Result<NormalizedTarget<'_>, PathError> {
    let path_end = target.find(['?', '#']).unwrap_or(target.len());
    let (raw_path, rest) = target.split_at(path_end);
    let (query, fragment_dropped) = match rest.find('#') {
        Some(hash) => (&rest[..hash], true),
        None => (rest, false),
    };
    if !raw_path.starts_with('/') {
        return Err(PathError::NotOriginForm);
    }

    let mut needs_rewrite = false;
    for &byte in raw_path.as_bytes() {
        match byte {
            b';' => return Err(PathError::PathParameter),
            b'\\' => return Err(PathError::Backslash),
            b'%' => needs_rewrite = true,
            _ if !is_path_char(byte) => return Err(PathError::InvalidCharacter),
            _ => {}
        }
    }
    needs_rewrite = needs_rewrite || raw_path.contains("//") || has_dot_segment(raw_path);

    if !needs_rewrite {
        return Ok(NormalizedTarget {
            path: Cow::Borrowed(raw_path),
            query,
            changed: fragment_dropped,
        });
    }
    let decoded = decode_unreserved(raw_path)?;
    let normalized = merge_slashes(&remove_dot_segments(&decoded));
    let changed = fragment_dropped || normalized != raw_path;
    Ok(NormalizedTarget {
        path: Cow::Owned(normalized),
        query,
        changed,
    })
}

/// RFC 3986 `pchar` plus `/`; `%` is checked separately.
fn is_path_char(byte: u8) -> bool {
    byte.is_ascii_alphanumeric()
        || matches!(
            byte,
            b'-' | b'.' | b'_' | b'~' // unreserved
            | b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b'=' // sub-delims but ';'
            | b':' | b'@' | b'/' | b'%'
        )
}

fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

fn has_dot_segment(path: &str) -> bool {
    path.split('/').any(|segment| segment == "." || segment == "..")
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// Decodes `%XX` where XX is an unreserved character; keeps every other escape,
/// with its hex digits upper-cased as RFC 3986 §6.2.2.1 recommends.
fn decode_unreserved(path: &str) -> Result<String, PathError> {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    // The bytes of the current run of consecutive escapes that stay encoded:
    // a multi-byte UTF-8 character is such a run, and each run must be UTF-8.
    let mut run: Vec<u8> = Vec::new();
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        if byte != b'%' {
            check_utf8(&mut run)?;
            out.push(char::from(byte));
            i += 1;
            continue;
        }
        let (Some(&high), Some(&low)) = (bytes.get(i + 1), bytes.get(i + 2)) else {
            return Err(PathError::InvalidPercentEncoding);
        };
        let (Some(high_value), Some(low_value)) = (hex_value(high), hex_value(low)) else {
            return Err(PathError::InvalidPercentEncoding);
        };
        let decoded = high_value * 16 + low_value;
        match decoded {
            b'/' | b'\\' => return Err(PathError::EncodedSeparator),
            0 => return Err(PathError::EncodedNul),
            b';' => return Err(PathError::PathParameter),
            b'%' => return Err(PathError::EncodedPercent),
            _ if is_unreserved(decoded) => {
                check_utf8(&mut run)?;
                out.push(char::from(decoded));
            }
            _ => {
                run.push(decoded);
                out.push('%');
                out.push(char::from(high.to_ascii_uppercase()));
                out.push(char::from(low.to_ascii_uppercase()));
            }
        }
        i += 3;
    }
    check_utf8(&mut run)?;
    Ok(out)
}

/// Ends a run of escaped bytes: they must decode to UTF-8.
fn check_utf8(run: &mut Vec<u8>) -> Result<(), PathError> {
    if std::str::from_utf8(run).is_err() {
        return Err(PathError::InvalidUtf8);
    }
    run.clear();
    Ok(())
}

/// RFC 3986 §5.2.4 on an absolute path. Empty segments count as segments (as in
/// Envoy's normalize_path); `merge_slashes` runs afterwards.
fn remove_dot_segments(path: &str) -> String {
    let mut kept: Vec<&str> = Vec::new();
    let mut ends_with_slash = false;
    // The leading '/' yields an empty first piece; skip it.
    for segment in path.split('/').skip(1) {
        ends_with_slash = false;
        match segment {
            "." => ends_with_slash = true,
            ".." => {
                kept.pop();
                ends_with_slash = true;
            }
            _ => kept.push(segment),
        }
    }
    let mut out = String::with_capacity(path.len());
    for segment in &kept {
        out.push('/');
        out.push_str(segment);
    }
    if ends_with_slash || out.is_empty() {
        out.push('/');
    }
    out
}

fn merge_slashes(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut previous_was_slash = false;
    for c in path.chars() {
        if c == '/' && previous_was_slash {
            continue;
        }
        previous_was_slash = c == '/';
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(target: &str) -> String {
        normalize(target).unwrap().path.into_owned()
    }

    #[test]
    fn leaves_normal_paths_borrowed_and_unchanged() {
        let target = normalize("/api/v1/orders?limit=5").unwrap();
        assert!(matches!(target.path, Cow::Borrowed("/api/v1/orders")));
        assert_eq!(target.query, "?limit=5");
        assert!(!target.changed);
        assert_eq!(target.to_request_target(), "/api/v1/orders?limit=5");
    }

    #[test]
    fn removes_dot_segments() {
        assert_eq!(norm("/portal/assets/../credentials"), "/portal/credentials");
        assert_eq!(norm("/portal/./credentials"), "/portal/credentials");
        assert_eq!(norm("/../../api/x"), "/api/x");
        assert_eq!(norm("/api/.."), "/");
        assert_eq!(norm("/api/."), "/api/");
        assert_eq!(norm("/a/b/../../c/./d/"), "/c/d/");
        // ".well-known" and "..." are names, not dot-segments.
        assert_eq!(norm("/.well-known/x"), "/.well-known/x");
        assert_eq!(norm("/a/.../b"), "/a/.../b");
    }

    #[test]
    fn merges_slashes_after_dot_removal_like_envoy() {
        assert_eq!(norm("//api///v1//x"), "/api/v1/x");
        // Envoy: normalize_path("/a//../b") = "/a/b", then merge_slashes.
        assert_eq!(norm("/a//../b"), "/a/b");
    }

    #[test]
    fn decodes_unreserved_escapes_before_dot_removal() {
        assert_eq!(norm("/portal/assets/%2e%2e/credentials"), "/portal/credentials");
        assert_eq!(norm("/portal/assets/%2E./credentials"), "/portal/credentials");
        assert_eq!(norm("/%61pi/x"), "/api/x");
        assert_eq!(norm("/api/%7euser"), "/api/~user");
        // Reserved characters stay encoded, with upper-case hex.
        assert_eq!(norm("/api/a%3fb"), "/api/a%3Fb");
        assert_eq!(norm("/api/caf%c3%a9"), "/api/caf%C3%A9");
    }

    #[test]
    fn keeps_query_drops_fragment() {
        let target = normalize("/api/../api/x?q=/../&z=1#frag").unwrap();
        assert_eq!(target.path, "/api/x");
        assert_eq!(target.query, "?q=/../&z=1");
        assert!(target.changed);
        let target = normalize("/api/x#frag").unwrap();
        assert_eq!(target.query, "");
        assert!(target.changed);
    }

    #[test]
    fn refuses_ambiguous_paths() {
        assert_eq!(
            normalize("/portal/assets/..%2Fcredentials"),
            Err(PathError::EncodedSeparator)
        );
        assert_eq!(
            normalize("/portal/assets/..%2fcredentials"),
            Err(PathError::EncodedSeparator)
        );
        assert_eq!(
            normalize("/portal/assets/..%5Ccredentials"),
            Err(PathError::EncodedSeparator)
        );
        assert_eq!(normalize("/api/x%00"), Err(PathError::EncodedNul));
        assert_eq!(normalize("/api/x%"), Err(PathError::InvalidPercentEncoding));
        assert_eq!(normalize("/api/x%4"), Err(PathError::InvalidPercentEncoding));
        assert_eq!(normalize("/api/x%G0"), Err(PathError::InvalidPercentEncoding));
        assert_eq!(
            normalize("/portal/assets/..;/credentials"),
            Err(PathError::PathParameter)
        );
        assert_eq!(
            normalize("/portal/assets/..%3b/credentials"),
            Err(PathError::PathParameter)
        );
        assert_eq!(normalize("/portal\\credentials"), Err(PathError::Backslash));
        assert_eq!(normalize("/api/a b"), Err(PathError::InvalidCharacter));
        assert_eq!(normalize("/api/\u{e9}"), Err(PathError::InvalidCharacter));
        assert_eq!(normalize("/api/\t"), Err(PathError::InvalidCharacter));
        assert_eq!(normalize("api/x"), Err(PathError::NotOriginForm));
        assert_eq!(normalize("*"), Err(PathError::NotOriginForm));
        assert_eq!(normalize("http://evil/api"), Err(PathError::NotOriginForm));
        assert_eq!(normalize(""), Err(PathError::NotOriginForm));
    }

    #[test]
    fn refuses_double_encoding_and_escapes_that_are_not_utf8() {
        // What an upstream that decodes twice, or leniently, reads as "..".
        assert_eq!(
            normalize("/portal/assets/%252e%252e/credentials"),
            Err(PathError::EncodedPercent)
        );
        assert_eq!(normalize("/api/%25"), Err(PathError::EncodedPercent));
        assert_eq!(
            normalize("/portal/assets/%c0%ae%c0%ae/credentials"),
            Err(PathError::InvalidUtf8)
        );
        assert_eq!(normalize("/api/%ff"), Err(PathError::InvalidUtf8));
        assert_eq!(
            normalize("/api/%C3"),
            Err(PathError::InvalidUtf8),
            "a truncated character"
        );
        assert_eq!(
            normalize("/api/%C3x%A9"),
            Err(PathError::InvalidUtf8),
            "a character split by a byte"
        );
        assert_eq!(
            normalize("/api/%E0%80%AE"),
            Err(PathError::InvalidUtf8),
            "overlong, three bytes"
        );
        assert_eq!(
            normalize("/api/%ED%A0%80"),
            Err(PathError::InvalidUtf8),
            "a UTF-16 surrogate"
        );
        // Encoded UTF-8 stays accepted, and stays encoded.
        assert_eq!(norm("/api/j%C3%B6rg/%41"), "/api/j%C3%B6rg/A");
        assert_eq!(norm("/api/%E2%82%AC%7B"), "/api/%E2%82%AC%7B");
    }

    #[test]
    fn normalization_is_idempotent() {
        for input in ["/a/./b/../c//d/", "/%2e%2e/x", "/x/%41%7E/..", "/", "/a/b/c"] {
            let once = norm(input);
            assert_eq!(norm(&once), once, "input {input}");
        }
    }
}
