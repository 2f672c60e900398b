//! Whether a request body follows its headers: the stream's word, read the way
//! each host can give it.
//!
//! Envoy says it exactly: `end_of_stream` on the headers is true when no body
//! follows, whatever the protocol (a chunked HTTP/1.1 body, whose
//! `transfer-encoding` Envoy removes before filters run, and an HTTP/2 body
//! without `content-length` both arrive with it false).
//!
//! Kong's nginx always reports `end_of_stream` false on the headers and calls the
//! body callback only when there is a body. There, the framing nginx itself used
//! decides: on HTTP/1.x a body follows only with a non-zero `content-length` or a
//! `transfer-encoding`; on HTTP/2 without `content-length` nginx does not tell the
//! filter, so a request that needs its body must declare its length.

/// What the host reported about one request's framing.
#[derive(Debug, Clone, Copy)]
pub struct Framing<'a> {
    pub end_of_stream: bool,
    /// nginx's `$server_protocol` ("HTTP/1.1", "HTTP/2.0"); `None` on hosts that
    /// are not nginx (Envoy), which report `end_of_stream` faithfully.
    pub nginx_protocol: Option<&'a str>,
    pub content_length: Option<&'a str>,
    pub transfer_encoding: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// Nothing follows: act on the headers.
    None,
    /// A body follows (possibly empty): wait for the end of the stream.
    Follows,
    /// The host cannot say (Kong, HTTP/2, no `content-length`).
    Unknown,
}

pub fn body(framing: Framing<'_>) -> Body {
    if framing.end_of_stream {
        return Body::None;
    }
    let Some(protocol) = framing.nginx_protocol else {
        return Body::Follows;
    };
    if let Some(length) = framing.content_length {
        return match length.trim().parse::<u64>() {
            Ok(0) => Body::None,
            Ok(_) => Body::Follows,
            // nginx refuses a malformed length itself; never guess.
            Err(_) => Body::Unknown,
        };
    }
    if framing.transfer_encoding {
        return Body::Follows;
    }
    if protocol.starts_with("HTTP/1.") {
        Body::None // HTTP/1.x without framing headers has no body (RFC 9112 §6.3).
    } else {
        Body::Unknown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framing<'a>(eos: bool, nginx: Option<&'a str>, length: Option<&'a str>, te: bool) -> Framing<'a> {
        Framing {
            end_of_stream: eos,
            nginx_protocol: nginx,
            content_length: length,
            transfer_encoding: te,
        }
    }

    #[test]
    fn envoy_is_believed_and_headers_are_never_asked() {
        assert_eq!(body(framing(true, None, Some("10"), true)), Body::None);
        // Chunked with transfer-encoding removed, or HTTP/2 without a length.
        assert_eq!(body(framing(false, None, None, false)), Body::Follows);
        // Even a lying content-length: 0 does not hide a body the stream has.
        assert_eq!(body(framing(false, None, Some("0"), false)), Body::Follows);
    }

    #[test]
    fn nginx_framing_decides_on_kong() {
        let h1 = Some("HTTP/1.1");
        assert_eq!(body(framing(false, h1, None, false)), Body::None);
        assert_eq!(body(framing(false, h1, Some("0"), false)), Body::None);
        assert_eq!(body(framing(false, h1, Some("12"), false)), Body::Follows);
        assert_eq!(body(framing(false, h1, None, true)), Body::Follows);
        assert_eq!(body(framing(false, h1, Some("x"), false)), Body::Unknown);
        let h2 = Some("HTTP/2.0");
        assert_eq!(body(framing(false, h2, None, false)), Body::Unknown);
        assert_eq!(body(framing(false, h2, Some("3"), false)), Body::Follows);
        assert_eq!(body(framing(true, h2, None, false)), Body::None);
    }
}
