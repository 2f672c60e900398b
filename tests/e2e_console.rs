#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test code: failing loudly is the point
//! End to end: the admin console in headless Chromium (over WebDriver), served by
//! the filter in the demo set-up (real Envoy, real etcd). A failing test leaves a
//! screenshot and the browser's log in target/e2e.
//!
//! With DEVPORTAL_SCREENSHOTS=<dir>, the first test also saves a screenshot of
//! each tab there (the README's pictures).

mod common;

use std::time::Duration;

use common::browser::Browser;
use common::demo::{gateway, Gateway};
use common::{adapt_shipped_config, wait_until, Envoy, Etcd, Ports, Request};
use serde_json::json;

const LIVE: Duration = Duration::from_secs(3);

fn console_url(gate: &Gateway) -> String {
    format!("http://127.0.0.1:{}/_devportal/", gate.api)
}

fn sign_in(browser: &Browser, url: &str, token: &str) {
    browser.open(url);
    browser.type_into("#token", token);
    browser.click("#sign-in button[type=submit]");
    browser.wait_for("#console-view");
}

fn row(email: &str) -> String {
    format!("#rows tr[data-email=\"{email}\"]")
}

fn count_is(status: &str, n: usize) -> String {
    format!("return document.querySelector('[data-count=\"{status}\"]').textContent === '{n}';")
}

fn row_present(email: &str, present: bool) -> String {
    format!("return (document.querySelector('#rows tr[data-email=\"{email}\"]') !== null) === {present};")
}

#[test]
fn the_console_manages_developers_end_to_end() {
    let etcd = Etcd::start("console", common::free_port());
    let gate = gateway("console", etcd.port);
    gate.wait_synced();
    let browser = Browser::start("console");
    let url = console_url(&gate);

    // A wrong token is refused; the right one signs in, named as its actor.
    browser.open(&url);
    browser.type_into("#token", "not-the-token-at-all");
    browser.click("#sign-in button[type=submit]");
    browser.wait_until(
        "refusal shown",
        LIVE,
        "return document.querySelector('#sign-in-error').textContent.length > 0;",
    );
    sign_in(&browser, &url, &gate.token);
    assert!(browser.text("#actor").contains("demo-admin"));
    assert_eq!(
        browser.run(
            "return document.cookie + JSON.stringify(Object.keys(localStorage));",
            json!([])
        ),
        json!("[]"),
        "nothing in cookies or local storage"
    );

    // Requested Access: bob; Accept moves him, the counts follow, his API call passes.
    browser.open(&format!("{url}#requested"));
    browser.wait_for(&row("bob@example.com"));
    browser.wait_until("counts", LIVE, &count_is("requested", 1));
    let tabs = ["approved", "requested", "rejected", "revoked"];
    if let Some(dir) = std::env::var_os("DEVPORTAL_SCREENSHOTS") {
        for tab in tabs {
            browser.open(&format!("{url}#{tab}"));
            browser.wait_until("rows", LIVE, "return document.querySelectorAll('#rows tr').length > 0;");
            browser.screenshot(&std::path::Path::new(&dir).join(format!("console-{tab}.png")));
        }
        browser.open(&format!("{url}#requested"));
    }
    assert_eq!(gate.api_status("bob@example.com"), 403);
    browser.click(&format!("{} button[data-action=accept]", row("bob@example.com")));
    browser.wait_until(
        "bob leaves Requested Access",
        LIVE,
        &row_present("bob@example.com", false),
    );
    assert_eq!(gate.api_status("bob@example.com"), 200);
    browser.wait_until("counts change", LIVE, &count_is("requested", 0));
    browser.wait_until("counts change", LIVE, &count_is("approved", 2));
    // Reload: same tab, still signed in (the token lives in this tab).
    browser.open(&format!("{url}#requested"));
    browser.wait_for("#console-view");
    browser.wait_until(
        "the tab survives a reload",
        LIVE,
        "return document.querySelector('a[data-status=requested]').getAttribute('aria-selected') === 'true';",
    );

    // Revoke alice with a reason: refused at the gate, the history says who and why.
    browser.open(&format!("{url}#approved"));
    browser.click(&format!("{} button[data-action=revoke]", row("alice@example.com")));
    browser.type_into("#confirm-reason", "contract ended");
    browser.click("#confirm-ok");
    browser.wait_until("alice leaves Approved", LIVE, &row_present("alice@example.com", false));
    assert_eq!(gate.api_status("alice@example.com"), 403);
    browser.open(&format!("{url}#revoked"));
    browser.click(&format!("{} button.link", row("alice@example.com")));
    browser.wait_for("#detail");
    let history = browser.text("#detail-history");
    assert!(
        history.contains("demo-admin") && history.contains("contract ended"),
        "{history}"
    );
    browser.click("#detail button[type=submit]");
    browser.click(&format!("{} button[data-action=reapprove]", row("alice@example.com")));
    browser.wait_until("alice back in Approved", LIVE, &row_present("alice@example.com", false));
    assert_eq!(gate.api_status("alice@example.com"), 200);

    // Extend alice's approval: the console asks until when, and shows the end.
    browser.open(&format!("{url}#approved"));
    browser.click(&format!("{} button[data-action=extend]", row("alice@example.com")));
    browser.answer_prompt("30d");
    browser.wait_until(
        "alice's approval end shown",
        LIVE,
        &format!(
            "const r = document.querySelector('{}'); return !!r && r.textContent.includes('approval ends');",
            row("alice@example.com")
        ),
    );
    let alice = gate.developer("alice@example.com");
    assert!(alice["expires_at"].is_string(), "{alice}");
    assert_eq!(alice["history"].as_array().unwrap().last().unwrap()["to"], "approved");
    browser.click(&format!("{} button.link", row("alice@example.com")));
    browser.wait_for("#detail");
    assert!(browser.text("#detail-facts").contains("Approval ends"));
    browser.click("#detail button[type=submit]");

    // Invite: the mailto BCCs every valid address and links the registration
    // page; a malformed address is listed as refused.
    browser.open(&format!("{url}#approved"));
    browser.click("#invite-open");
    browser.type_into("#invite-emails", "ann@example.com, not-an-address, ben@example.com");
    browser.click("#invite-send");
    browser.wait_until(
        "invitation link",
        LIVE,
        "return (document.querySelector('#invite-link').getAttribute('href') || '').startsWith('mailto:');",
    );
    let link = browser.run(
        "return document.querySelector('#invite-link').getAttribute('href');",
        json!([]),
    );
    let link = link.as_str().unwrap();
    assert!(
        link.starts_with("mailto:?bcc=ann@example.com,ben@example.com&"),
        "{link}"
    );
    assert!(link.contains("portal%2Fregister"), "{link}");
    assert!(browser.text("#invite-refused").contains("not-an-address"));
    browser.click("#invite button[value=cancel]");

    // Live: a registration made elsewhere shows up without a reload.
    browser.open(&format!("{url}#requested"));
    browser.wait_for("#console-view");
    let response = Request::get("/portal/home")
        .user("newcomer@example.com")
        .send(gate.port);
    assert_eq!(response.status, 403);
    let took = browser.wait_until(
        "the registration appears",
        LIVE,
        &row_present("newcomer@example.com", true),
    );
    println!("a self-registration appeared in the open console after {took:?}");

    // Bulk: three selected, one changed elsewhere meanwhile; the preview says so,
    // and applying moves the other two.
    for who in ["c1@example.com", "c2@example.com", "c3@example.com"] {
        let created = gate.admin("POST", "/developers", Some(&json!({"email": who}).to_string()));
        assert_eq!(created.status, 201, "{}", created.body);
    }
    browser.wait_until("three more rows", LIVE, &row_present("c3@example.com", true));
    for who in ["c1@example.com", "c2@example.com", "c3@example.com"] {
        browser.click(&format!("{} input[type=checkbox]", row(who)));
    }
    assert_eq!(gate.act("c3@example.com", "reject").status, 200);
    browser.run("document.querySelector('#bulk-action').value = 'accept';", json!([]));
    browser.click("#bulk-dry-run");
    browser.wait_for("#bulk-dialog");
    let preview = browser.text("#bulk-results");
    assert!(preview.contains("c3@example.com: cannot change"), "{preview}");
    assert!(preview.contains("c1@example.com: requested → approved"), "{preview}");
    browser.click("#bulk-apply");
    wait_until("the two are accepted", LIVE, || {
        gate.api_status("c1@example.com") == 200 && gate.api_status("c2@example.com") == 200
    });
    assert_eq!(gate.api_status("c3@example.com"), 403);

    // A 409: dan changes while the confirmation is open; the console shows his
    // current state, not an error page.
    assert_eq!(
        gate.admin("POST", "/developers", Some(r#"{"email":"dan@example.com"}"#))
            .status,
        201
    );
    browser.wait_until("dan appears", LIVE, &row_present("dan@example.com", true));
    browser.click(&format!("{} button[data-action=reject]", row("dan@example.com")));
    browser.wait_for("#confirm-reason");
    assert_eq!(gate.act("dan@example.com", "accept").status, 200);
    browser.click("#confirm-ok");
    browser.wait_until(
        "the conflict is explained",
        LIVE,
        "return document.querySelector('#message').textContent.includes('approved');",
    );
    assert_eq!(
        gate.api_status("dan@example.com"),
        200,
        "the other admin's decision stands"
    );

    // Payloads a developer controls are text: no script runs, nothing is injected.
    let evil = r#"<img src=x onerror=alert(1)>"#;
    let refused = gate.admin(
        "POST",
        "/developers",
        Some(&json!({"email": "\"><img src=x onerror=alert(1)>@x.io"}).to_string()),
    );
    assert_eq!(refused.status, 422, "such an address is not even accepted");
    let created = gate.admin(
        "POST",
        "/developers",
        Some(
            &json!({"email": "mallory@example.com", "metadata": {"note": evil, "site": "javascript:alert(2)"}})
                .to_string(),
        ),
    );
    assert_eq!(created.status, 201, "{}", created.body);
    browser.wait_until("mallory appears", LIVE, &row_present("mallory@example.com", true));
    browser.click(&format!("{} button.link", row("mallory@example.com")));
    browser.wait_for("#detail");
    assert!(browser.text("#detail-facts").contains(evil));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(browser.alert(), None, "a script ran");
    assert_eq!(
        browser.run(
            "return document.querySelectorAll('img, [onerror], a[href^=\"javascript\"]').length;",
            json!([])
        ),
        json!(0)
    );

    // No CORS: a preflight from another origin gets no permission.
    let preflight = Request::new("OPTIONS", "/_devportal/developers?status=approved")
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "POST")
        .send(gate.api);
    assert!(
        preflight.header("access-control-allow-origin").is_none(),
        "{preflight:?}"
    );

    // An etcd outage: a banner says so and the actions are disabled.
    browser.click("#detail button[type=submit]");
    let mut etcd = etcd;
    etcd.stop();
    browser.wait_until(
        "the outage banner",
        Duration::from_secs(15),
        "return document.querySelector('#banner').textContent.includes('cannot be reached');",
    );
    assert_eq!(
        browser.run(
            "return [...document.querySelectorAll('#rows button[data-action]')].every(b => b.disabled);",
            json!([])
        ),
        json!(true)
    );
    etcd.restart();
    browser.wait_until(
        "the banner goes once etcd is back",
        Duration::from_secs(15),
        "return document.querySelector('#banner').hidden;",
    );

    // Sign out: the token is gone from the tab.
    browser.click("#sign-out");
    browser.wait_for("#sign-in-view");
    assert_eq!(browser.run("return sessionStorage.length;", json!([])), json!(0));
}

#[test]
fn the_console_is_read_only_over_a_static_directory() {
    let ports = Ports::new();
    let config = adapt_shipped_config("filter-config/envoy/static.yaml", &ports);
    let _envoy = Envoy::start("console-static", &config, ports.admin, 2);
    let browser = Browser::start("console-static");
    let url = format!("http://127.0.0.1:{}/_devportal/", ports.api);
    sign_in(&browser, &url, "demo-admin-token-change-me");
    browser.open(&format!("{url}#approved"));
    browser.wait_for(&row("alice@example.com"));
    assert!(browser.text("#banner").contains("Read-only"));
    assert_eq!(
        browser.run(
            "return [...document.querySelectorAll('#rows button[data-action]')].every(b => b.disabled);",
            json!([])
        ),
        json!(true)
    );
    // The console is never served on the public listener.
    assert_ne!(Request::get("/_devportal/").send(ports.listener).status, 200);

    // It looks again every second while a page is quick to read, and 20 times
    // as long as a page took once pages are slow (here a page made to take
    // 400 ms in the browser: the next look comes after 8 s).
    browser.run(
        r#"window.reads = []; window.delay = 0;
           const fetchOriginal = window.fetch;
           window.fetch = async (...args) => {
             if (String(args[0]).includes("/developers?")) {
               window.reads.push(performance.now());
               if (window.delay) await new Promise((done) => setTimeout(done, window.delay));
             }
             return fetchOriginal(...args);
           };"#,
        json!([]),
    );
    let gaps = |browser: &Browser| -> Vec<f64> {
        let reads = browser.run("return window.reads;", json!([]));
        let reads: Vec<f64> = reads.as_array().unwrap().iter().map(|t| t.as_f64().unwrap()).collect();
        reads.windows(2).map(|pair| pair[1] - pair[0]).collect()
    };
    browser.wait_until(
        "three quick looks",
        Duration::from_secs(10),
        "return window.reads.length >= 3;",
    );
    assert!(gaps(&browser).iter().all(|gap| *gap < 2_500.0), "{:?}", gaps(&browser));
    browser.run("window.delay = 400; window.reads = [];", json!([]));
    browser.wait_until(
        "two slow looks",
        Duration::from_secs(20),
        "return window.reads.length >= 2;",
    );
    let slow = gaps(&browser);
    assert!(slow.iter().all(|gap| *gap >= 7_000.0), "{slow:?}");
}
