#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test code: failing loudly is the point
//! End to end: identity from the verified JWT payload that Envoy's jwt_authn
//! forwards (filter-config/envoy/jwt.yaml), with tokens minted here.

mod common;

use common::{adapt_shipped_config, Envoy, Ports, Request};
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;

fn b64url(data: &[u8]) -> String {
    devportal_gate::request::identity::encode_base64url(data)
}

fn b64url_decode(text: &str) -> Vec<u8> {
    devportal_gate::request::identity::decode_base64url(text).unwrap()
}

/// The demo key, read from the shipped config so the two cannot drift apart.
fn demo_key() -> Vec<u8> {
    let yaml = std::fs::read_to_string(common::repo_root().join("filter-config/envoy/jwt.yaml")).unwrap();
    let start = yaml.find("\"k\":\"").unwrap() + 5;
    let end = start + yaml[start..].find('"').unwrap();
    b64url_decode(&yaml[start..end])
}

fn mint(key: &[u8], claims: serde_json::Value) -> String {
    let header = b64url(br#"{"alg":"HS256","typ":"JWT","kid":"demo"}"#);
    let payload = b64url(claims.to_string().as_bytes());
    let signing_input = format!("{header}.{payload}");
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(signing_input.as_bytes());
    format!("{signing_input}.{}", b64url(&mac.finalize().into_bytes()))
}

fn claims(email: Option<&str>) -> serde_json::Value {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut claims = json!({"iss": "https://idp.example.com", "aud": "devportal", "sub": "42", "exp": now + 600});
    if let Some(email) = email {
        claims["email"] = json!(email);
    }
    claims
}

#[test]
fn jwt_identity_end_to_end() {
    let ports = Ports::new();
    let config = adapt_shipped_config("filter-config/envoy/jwt.yaml", &ports);
    let envoy = Envoy::start("jwt", &config, ports.admin, 2);
    let port = ports.listener;
    let key = demo_key();
    let bearer = |email: Option<&str>| format!("Bearer {}", mint(&key, claims(email)));

    // Approved developer: passes, and the upstream learns who it is.
    let response = Request::get("/api/orders")
        .header("authorization", &bearer(Some("Alice@Example.com")))
        .send(port);
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(response.upstream_header("x-developer-email"), ["alice@example.com"]);

    // Every other status gets its own answer.
    for (email, status) in [
        ("bob@example.com", "requested"),
        ("carol@example.com", "rejected"),
        ("dave@example.com", "revoked"),
        ("eve@example.com", "unknown"),
    ] {
        let response = Request::get("/api/orders")
            .header("authorization", &bearer(Some(email)))
            .send(port);
        assert_eq!(response.status, 403, "{email}");
        assert_eq!(response.json()["status"], status, "{email}");
    }

    // No token: public routes pass, protected ones are 401 from the gate.
    assert_eq!(Request::get("/portal/login").send(port).status, 200);
    let response = Request::get("/api/orders").send(port);
    assert_eq!(response.status, 401);
    assert_eq!(response.json()["status"], "unauthenticated");

    // A verified token without the email claim is no identity.
    let response = Request::get("/api/orders")
        .header("authorization", &bearer(None))
        .send(port);
    assert_eq!(response.status, 401, "{}", response.body);
    assert_eq!(response.json()["status"], "unauthenticated");

    // A token signed with another key never reaches the gate (jwt_authn: 401).
    let forged = mint(
        b"not-the-demo-key-not-the-demo-key!!",
        claims(Some("alice@example.com")),
    );
    let response = Request::get("/api/orders")
        .header("authorization", &format!("Bearer {forged}"))
        .send(port);
    assert_eq!(response.status, 401);
    assert!(response.body.contains("Jwt verification fails"), "{}", response.body);

    // A client-made payload header is dropped before jwt_authn: no identity...
    let spoofed = b64url(json!({"email": "alice@example.com"}).to_string().as_bytes());
    let response = Request::get("/api/orders").header("x-jwt-payload", &spoofed).send(port);
    assert_eq!(response.status, 401, "{}", response.body);
    // ...and it cannot stand in for the verified one either.
    let response = Request::get("/api/orders")
        .header("x-jwt-payload", &spoofed)
        .header("authorization", &bearer(Some("dave@example.com")))
        .send(port);
    assert_eq!(response.status, 403, "{}", response.body);
    assert_eq!(response.json()["status"], "revoked");
    // Path tricks do not skip verification: the gate classifies the normalized path.
    let response = Request::new("POST", "/portal/assets/../credentials")
        .header("x-jwt-payload", &spoofed)
        .send(port);
    assert_eq!(response.status, 401, "{}", response.body);

    drop(envoy);
}
