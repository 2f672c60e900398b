//! The answers the gate gives instead of forwarding a request. All but the
//! bad-path answer are rendered once, when the configuration is compiled.

use serde_json::json;

use crate::directory::Status;
use crate::request::path::PathError;

/// A local response, ready to hand to `send_http_response`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalResponse {
    pub status: u32,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

/// Why a request is refused, with the developer's status where there is one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// A protected route without a usable identity.
    Unauthenticated,
    /// The developer's status is not Approved.
    NotApproved(Status),
    /// An identity the directory does not know.
    UnknownDeveloper,
    /// No route matched and the default is to deny.
    Unrouted,
    /// The directory could not be read: fail closed.
    DirectoryUnavailable,
    /// An approval whose expiry has passed (the gate's clock decides).
    Expired,
}

impl Refusal {
    /// The `status` field of the JSON answer and the metric label.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Unauthenticated => "unauthenticated",
            Refusal::NotApproved(status) => status.as_str(),
            Refusal::UnknownDeveloper => "unknown",
            Refusal::Unrouted => "unrouted",
            Refusal::DirectoryUnavailable => "unavailable",
            Refusal::Expired => "expired",
        }
    }

    pub const ALL: [Refusal; 9] = [
        Refusal::Unauthenticated,
        Refusal::NotApproved(Status::Approved),
        Refusal::NotApproved(Status::Requested),
        Refusal::NotApproved(Status::Rejected),
        Refusal::NotApproved(Status::Revoked),
        Refusal::UnknownDeveloper,
        Refusal::Unrouted,
        Refusal::DirectoryUnavailable,
        Refusal::Expired,
    ];

    fn index(self) -> usize {
        Refusal::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }

    fn http_status(self) -> u32 {
        match self {
            Refusal::Unauthenticated => 401,
            Refusal::NotApproved(_) | Refusal::UnknownDeveloper | Refusal::Unrouted | Refusal::Expired => 403,
            Refusal::DirectoryUnavailable => 503,
        }
    }

    fn message(self) -> &'static str {
        match self {
            Refusal::Unauthenticated => {
                "Sign in to the developer portal first: this request carries no valid developer identity."
            }
            Refusal::NotApproved(Status::Requested) => {
                "Your developer account is awaiting approval. You can use the portal and the APIs once an administrator approves your request."
            }
            Refusal::NotApproved(Status::Rejected) => {
                "Your request for developer access was rejected. Contact the portal's administrators if you think this is a mistake."
            }
            Refusal::NotApproved(Status::Revoked) => {
                "Your developer access has been revoked. Contact the portal's administrators to have it restored."
            }
            // Never rendered: Approved developers pass. Kept total for the table.
            Refusal::NotApproved(Status::Approved) => "Your developer account is approved.",
            Refusal::UnknownDeveloper => {
                "No developer account is registered for this identity. Register on the developer portal to request access."
            }
            Refusal::Unrouted => "This path is not published through the developer portal.",
            Refusal::DirectoryUnavailable => {
                "The developer directory is not available right now. Try again in a moment."
            }
            Refusal::Expired => {
                "Your developer approval has expired. Contact the portal's administrators to have it extended."
            }
        }
    }

    fn title(self) -> &'static str {
        match self {
            Refusal::Unauthenticated => "Sign in required",
            Refusal::NotApproved(Status::Requested) => "Awaiting approval",
            Refusal::NotApproved(Status::Rejected) => "Access request rejected",
            Refusal::NotApproved(Status::Revoked) => "Access revoked",
            Refusal::NotApproved(Status::Approved) => "Approved",
            Refusal::UnknownDeveloper => "Not registered",
            Refusal::Unrouted => "Not published",
            Refusal::DirectoryUnavailable => "Temporarily unavailable",
            Refusal::Expired => "Approval expired",
        }
    }
}

/// The JSON answer's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenialStyle {
    /// 401/403/503 with `{"message": ..., "status": ...}`.
    DevportalGate,
    /// Kong Enterprise's answer for developers: 401
    /// `{"message":"Unauthorized: Developer status \"PENDING\""}`.
    KongEnterprise,
}

/// What a browser (`Accept: text/html`) on a portal route gets for one refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrowserAnswer {
    Html,
    Redirect(String),
}

/// Every refusal's answers, rendered once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Responses {
    json: Vec<LocalResponse>,
    browser: Vec<Option<LocalResponse>>,
}

impl Responses {
    /// `browser_answer` says, per refusal, what portal-route browsers get; `None`
    /// means the JSON answer.
    pub fn render(style: DenialStyle, browser_answer: impl Fn(Refusal) -> Option<BrowserAnswer>) -> Responses {
        let json = Refusal::ALL.iter().map(|r| render_json(*r, style)).collect();
        let browser = Refusal::ALL
            .iter()
            .map(|r| {
                browser_answer(*r).map(|answer| match answer {
                    BrowserAnswer::Html => render_html(*r),
                    BrowserAnswer::Redirect(location) => render_redirect(location),
                })
            })
            .collect();
        Responses { json, browser }
    }

    /// The answer for `refusal`; `browser` is true on a portal route whose client
    /// asked for HTML.
    pub fn for_refusal(&self, refusal: Refusal, browser: bool) -> Option<&LocalResponse> {
        let index = refusal.index();
        if browser {
            if let Some(Some(page)) = self.browser.get(index) {
                return Some(page);
            }
        }
        self.json.get(index)
    }
}

/// The expired answer with the instant it expired: the JSON answer gains
/// `expired_at`; another style or an HTML page or redirect is left as it is.
pub fn with_expiry(response: &LocalResponse, expired_at: &str) -> Option<LocalResponse> {
    let mut body: serde_json::Value = serde_json::from_slice(&response.body).ok()?;
    let fields = body.as_object_mut()?;
    if fields.get("status").and_then(serde_json::Value::as_str) != Some(Refusal::Expired.label()) {
        return None;
    }
    fields.insert("expired_at".into(), expired_at.into());
    Some(LocalResponse {
        status: response.status,
        headers: response.headers.clone(),
        body: body.to_string().into_bytes(),
    })
}

pub fn no_store_headers(content_type: &str) -> Vec<(&'static str, String)> {
    vec![
        ("content-type", content_type.to_string()),
        ("cache-control", "no-store".to_string()),
    ]
}

fn render_json(refusal: Refusal, style: DenialStyle) -> LocalResponse {
    let kong_status = match (style, refusal) {
        (DenialStyle::KongEnterprise, Refusal::NotApproved(status)) => Some(status),
        // Kong has no expiry: it answers as for a revoked developer.
        (DenialStyle::KongEnterprise, Refusal::Expired) => Some(Status::Revoked),
        _ => None,
    };
    let (status, body) = match kong_status {
        Some(status) => (
            401,
            json!({ "message": format!("Unauthorized: Developer status \"{}\"", status.kong_name()) }),
        ),
        None if style == DenialStyle::KongEnterprise && refusal == Refusal::UnknownDeveloper => {
            (401, json!({ "message": "Unauthorized" }))
        }
        None => (
            refusal.http_status(),
            json!({ "message": refusal.message(), "status": refusal.label() }),
        ),
    };
    LocalResponse {
        status,
        headers: no_store_headers("application/json"),
        body: body.to_string().into_bytes(),
    }
}

fn render_html(refusal: Refusal) -> LocalResponse {
    // Every interpolated string is a constant of this file: nothing to escape.
    let body = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"></head>\
         <body style=\"font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem\">\
         <h1>{title}</h1><p>{message}</p><p><small>Developer status: {label}</small></p></body></html>\n",
        title = refusal.title(),
        message = refusal.message(),
        label = refusal.label(),
    );
    LocalResponse {
        status: refusal.http_status(),
        headers: no_store_headers("text/html; charset=utf-8"),
        body: body.into_bytes(),
    }
}

fn render_redirect(location: String) -> LocalResponse {
    let mut headers = no_store_headers("text/plain; charset=utf-8");
    headers.push(("location", location));
    LocalResponse {
        status: 302,
        headers,
        body: Vec::new(),
    }
}

/// The 400 answer for a path the gate will not classify (rendered per request:
/// rare, and it names the reason).
pub fn bad_path(error: PathError) -> LocalResponse {
    bad_request(error.message())
}

/// 400 `{"status":"bad_request"}` with `message`.
pub fn bad_request(message: &str) -> LocalResponse {
    let body = json!({ "message": message, "status": "bad_request" });
    LocalResponse {
        status: 400,
        headers: no_store_headers("application/json"),
        body: body.to_string().into_bytes(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body_json(response: &LocalResponse) -> serde_json::Value {
        serde_json::from_slice(&response.body).unwrap()
    }

    #[test]
    fn json_answers_name_the_status() {
        let responses = Responses::render(DenialStyle::DevportalGate, |_| None);
        let revoked = responses
            .for_refusal(Refusal::NotApproved(Status::Revoked), true)
            .unwrap();
        assert_eq!(revoked.status, 403);
        assert_eq!(body_json(revoked)["status"], "revoked");
        assert!(body_json(revoked)["message"].as_str().unwrap().contains("revoked"));
        let anonymous = responses.for_refusal(Refusal::Unauthenticated, false).unwrap();
        assert_eq!(anonymous.status, 401);
        assert_eq!(body_json(anonymous)["status"], "unauthenticated");
        assert_eq!(
            responses
                .for_refusal(Refusal::DirectoryUnavailable, false)
                .unwrap()
                .status,
            503
        );
    }

    #[test]
    fn kong_enterprise_answer_is_byte_exact() {
        let responses = Responses::render(DenialStyle::KongEnterprise, |_| None);
        let pending = responses
            .for_refusal(Refusal::NotApproved(Status::Requested), false)
            .unwrap();
        assert_eq!(pending.status, 401);
        assert_eq!(
            pending.body,
            br#"{"message":"Unauthorized: Developer status \"PENDING\""}"#
        );
        let revoked = responses
            .for_refusal(Refusal::NotApproved(Status::Revoked), false)
            .unwrap();
        assert_eq!(
            revoked.body,
            br#"{"message":"Unauthorized: Developer status \"REVOKED\""}"#
        );
    }

    #[test]
    fn browsers_get_pages_or_redirects_only_where_configured() {
        let responses = Responses::render(DenialStyle::DevportalGate, |refusal| match refusal {
            Refusal::NotApproved(Status::Requested) => Some(BrowserAnswer::Redirect("/portal/pending".into())),
            Refusal::NotApproved(_) => Some(BrowserAnswer::Html),
            _ => None,
        });
        let pending = responses
            .for_refusal(Refusal::NotApproved(Status::Requested), true)
            .unwrap();
        assert_eq!(pending.status, 302);
        assert!(pending.headers.contains(&("location", "/portal/pending".to_string())));
        let revoked = responses
            .for_refusal(Refusal::NotApproved(Status::Revoked), true)
            .unwrap();
        assert_eq!(revoked.status, 403);
        assert!(String::from_utf8_lossy(&revoked.body).contains("<h1>Access revoked</h1>"));
        // Not a browser: JSON.
        let revoked_api = responses
            .for_refusal(Refusal::NotApproved(Status::Revoked), false)
            .unwrap();
        assert_eq!(body_json(revoked_api)["status"], "revoked");
        // No browser answer configured: JSON.
        let unknown = responses.for_refusal(Refusal::UnknownDeveloper, true).unwrap();
        assert_eq!(body_json(unknown)["status"], "unknown");
    }

    #[test]
    fn bad_path_names_the_reason() {
        let response = bad_path(PathError::EncodedSeparator);
        assert_eq!(response.status, 400);
        assert!(body_json(&response)["message"].as_str().unwrap().contains("%2F"));
    }
}
