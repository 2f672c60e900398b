//! The admin console: the seed's "Managing Developers" page, as static assets
//! compiled into the filter and served under the admin prefix (never on a
//! listener without an `admin` section). The page needs no token; every data
//! call it makes carries the admin's bearer token (see `console/app.js`).
//!
//! Every answer forbids framing, sends no referrer, allows only the console's
//! own script and style (no inline script, no `eval`), and only same-origin
//! data calls; the admin API sends no CORS headers at all.

use crate::request::responses::LocalResponse;

const INDEX: &str = include_str!("console/index.html");
const APP_JS: &str = include_str!("console/app.js");
const APP_CSS: &str = include_str!("console/app.css");

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; \
                   form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

/// The console's answer to `method path`, or `None` when the path is not the
/// console's (the admin API routes it).
pub fn serve(prefix: &str, method: &str, path: &str) -> Option<LocalResponse> {
    let rest = path.strip_prefix(prefix)?;
    let (body, content_type) = match rest {
        // The page's relative asset links need the trailing slash.
        "" => return Some(redirect(&format!("{prefix}/"))),
        "/" => (INDEX, "text/html; charset=utf-8"),
        "/console/app.js" => (APP_JS, "text/javascript; charset=utf-8"),
        "/console/app.css" => (APP_CSS, "text/css; charset=utf-8"),
        _ => return None,
    };
    if method != "GET" && method != "HEAD" {
        let mut answer = with_headers(
            405,
            "text/plain; charset=utf-8",
            b"the console is read with GET\n".to_vec(),
        );
        answer.headers.push(("allow", "GET, HEAD".to_string()));
        return Some(answer);
    }
    Some(with_headers(200, content_type, body.as_bytes().to_vec()))
}

fn redirect(location: &str) -> LocalResponse {
    let mut answer = with_headers(308, "text/plain; charset=utf-8", Vec::new());
    answer.headers.push(("location", location.to_string()));
    answer
}

fn with_headers(status: u32, content_type: &str, body: Vec<u8>) -> LocalResponse {
    LocalResponse {
        status,
        headers: vec![
            ("content-type", content_type.to_string()),
            ("content-security-policy", CSP.to_string()),
            ("x-frame-options", "DENY".to_string()),
            ("referrer-policy", "no-referrer".to_string()),
            ("x-content-type-options", "nosniff".to_string()),
            ("cache-control", "no-store".to_string()),
        ],
        body,
    }
}

/// The assets' size, for the `.wasm` budget (at most 80 KB).
pub fn assets_size() -> usize {
    INDEX.len() + APP_JS.len() + APP_CSS.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header<'a>(answer: &'a LocalResponse, name: &str) -> Option<&'a str> {
        answer.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    #[test]
    fn the_page_and_its_assets_under_the_prefix_only() {
        let page = serve("/_dp", "GET", "/_dp/").unwrap();
        assert_eq!(page.status, 200);
        assert!(header(&page, "content-type").unwrap().starts_with("text/html"));
        assert_eq!(serve("/_dp", "GET", "/_dp").unwrap().status, 308);
        assert_eq!(
            header(&serve("/_dp", "GET", "/_dp").unwrap(), "location"),
            Some("/_dp/")
        );
        assert!(
            header(&serve("/_dp", "GET", "/_dp/console/app.js").unwrap(), "content-type")
                .unwrap()
                .starts_with("text/javascript")
        );
        assert_eq!(serve("/_dp", "POST", "/_dp/").unwrap().status, 405);
        assert!(serve("/_dp", "GET", "/_dp/developers").is_none());
        assert!(serve("/_dp", "GET", "/other/").is_none());
    }

    #[test]
    fn every_answer_locks_the_page_down() {
        for path in ["/_dp/", "/_dp/console/app.js", "/_dp/console/app.css"] {
            let answer = serve("/_dp", "GET", path).unwrap();
            let csp = header(&answer, "content-security-policy").unwrap();
            assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe"), "{csp}");
            assert!(csp.contains("frame-ancestors 'none'"));
            assert_eq!(header(&answer, "x-frame-options"), Some("DENY"));
            assert_eq!(header(&answer, "referrer-policy"), Some("no-referrer"));
        }
        // No inline script or style in the page: the CSP would block it anyway.
        assert!(!INDEX.contains("<script>") && !INDEX.contains("style=") && !INDEX.contains("onclick"));
        assert!(
            !APP_JS.contains("innerHTML") && !APP_JS.contains("eval("),
            "text only, no eval"
        );
        assert!(!APP_JS.contains("localStorage") && !APP_JS.contains("document.cookie"));
    }

    #[test]
    fn the_assets_fit_the_budget() {
        assert!(assets_size() < 80 * 1024, "{} bytes", assets_size());
    }
}
