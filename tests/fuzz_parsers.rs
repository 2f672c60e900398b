#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test code: failing loudly is the point
//! Property tests ("fuzz targets") of every parser that takes what a client or
//! an upstream sends: the request path, the identity (header and JWT payload),
//! header maps from the host, admin request bodies, and etcd's answers. Each runs
//! a bounded number of generated cases (`CASES`), so it belongs in `make test`;
//! raise `PROPTEST_CASES` for a longer hunt.

use devportal_gate::admin::AdminConfig;
use devportal_gate::admin::{self, AdminContext, Route, Step};
use devportal_gate::directory::developer::DeveloperAction;
use devportal_gate::directory::Directory;
use devportal_gate::directory::MemoryStore;
use devportal_gate::encoding::header_map::{decode_pairs, encode_pairs};
use devportal_gate::etcd;
use devportal_gate::etcd::EtcdConfig;
use devportal_gate::request::email::canonical_email;
use devportal_gate::request::identity::{encode_base64url, IdentitySource};
use devportal_gate::request::path;
use proptest::prelude::*;

const CASES: u32 = 4000;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(CASES),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Paths built from the characters that matter to normalization.
fn path_like() -> impl Strategy<Value = String> {
    let pieces = prop::sample::select(vec![
        "/", "//", ".", "..", "%2e", "%2E", "%25", "%2f", "%5c", "%00", "%3b", ";", "\\", "%c0%ae", "%C3%A9", "%ff",
        "%41", "%7e", "a", "api", "portal", "assets", "?", "#", "%", "%g1", "\u{e9}", " ", "@", "~",
    ]);
    prop::collection::vec(pieces, 0..16).prop_map(|parts| format!("/{}", parts.concat()))
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn normalized_paths_are_stable_and_unambiguous(target in prop_oneof![path_like(), any::<String>()]) {
        if let Ok(normalized) = path::normalize(&target) {
            let path = normalized.path.to_string();
            prop_assert!(path.starts_with('/'));
            prop_assert!(!path.contains("//"), "{path}");
            prop_assert!(!path.split('/').any(|s| s == "." || s == ".."), "{path}");
            prop_assert!(path.is_ascii(), "{path}");
            prop_assert!(!path.to_ascii_lowercase().contains("%25"), "{path}");
            prop_assert!(!path.to_ascii_lowercase().contains("%2f"), "{path}");
            let again = path::normalize(&path).unwrap();
            prop_assert_eq!(again.path.to_string(), path);
        }
    }

    #[test]
    fn accepted_addresses_are_canonical_and_plain(raw in prop_oneof![
        "[ \t\u{a0}\u{3000}]{0,2}[a-zA-Z0-9.!$&'*+=_~/%?#\u{212a}-]{1,10}@[a-zA-Z0-9.-]{1,10}[ \t\u{a0}]{0,2}",
        any::<String>(),
    ]) {
        if let Ok(email) = canonical_email(&raw) {
            prop_assert_eq!(canonical_email(&email), Ok(email.clone()));
            prop_assert!(email.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b".!$&'*+-=_~@".contains(&b)), "{email}");
            prop_assert_eq!(email.matches('@').count(), 1);
            // Nothing but ASCII whitespace was trimmed.
            prop_assert!(raw.trim_matches(|c: char| c.is_ascii_whitespace()).eq_ignore_ascii_case(&email));
        }
    }

    #[test]
    fn identities_never_panic_and_resolve_to_canonical_addresses(
        values in prop::collection::vec(any::<String>(), 0..3),
        payload in prop_oneof![
            any::<Vec<u8>>(),
            "\\{\"email\":\"[a-z@.\u{a0}]{0,12}\"(,\"email\":\"x@y.z\")?\\}".prop_map(String::into_bytes),
            "\\{\"email\":[0-9\\[\\]{}null]{0,6}\\}".prop_map(String::into_bytes),
        ],
    ) {
        let header = IdentitySource::Header { name: "x-consumer-username".into() };
        let jwt = IdentitySource::JwtPayload { header: "x-jwt-payload".into(), claim: "email".into() };
        let refs: Vec<&str> = values.iter().map(String::as_str).collect();
        if let Ok(email) = header.resolve(&refs) {
            prop_assert_eq!(canonical_email(&email), Ok(email.clone()));
        }
        let encoded = encode_base64url(&payload);
        for value in [encoded.as_str(), values.first().map_or("", String::as_str)] {
            if let Ok(email) = jwt.resolve(&[value]) {
                prop_assert_eq!(canonical_email(&email), Ok(email.clone()));
            }
        }
    }

    #[test]
    fn header_maps_from_the_host_never_panic(
        bytes in any::<Vec<u8>>(),
        pairs in prop::collection::vec((any::<String>(), any::<String>()), 0..6),
    ) {
        let _ = decode_pairs(&bytes);
        let refs: Vec<(&str, &str)> = pairs.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        let encoded = encode_pairs(&refs);
        let decoded = decode_pairs(&encoded).unwrap();
        let expected: Vec<(&[u8], &[u8])> = pairs.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())).collect();
        prop_assert_eq!(decoded, expected);
    }

    #[test]
    fn etcd_answers_never_panic(status in 0u32..600, body in prop_oneof![
        any::<Vec<u8>>(),
        "\\{\"header\":\\{\"revision\":\"[0-9-]{0,4}\"\\},\"kvs\":\\[\\{\"key\":\"[A-Za-z0-9=+/]{0,12}\",\"mod_revision\":\"[0-9a-]{0,3}\",\"value\":\"[A-Za-z0-9=]{0,8}\"\\}\\],\"count\":\"[0-9]{0,3}\"\\}".prop_map(String::into_bytes),
    ]) {
        let _ = etcd::parse_range(status, &body);
        let _ = etcd::parse_txn(status, &body);
        let _ = etcd::parse_txn_reads(status, &body);
    }

    /// A gRPC answer (`etcd::grpc`): fields with RangeResponse's and KeyValue's
    /// tags, lengths and numbers of any size, nested at random.
    #[test]
    fn grpc_range_answers_never_panic(fields in proptest::collection::vec(
        (prop_oneof![Just(0x0au8), Just(0x12), Just(0x18), Just(0x20), Just(0x28), Just(0x2a), any::<u8>()],
         proptest::collection::vec(any::<u8>(), 0..12)),
        0..10,
    )) {
        let body: Vec<u8> = fields.into_iter().flat_map(|(tag, rest)| std::iter::once(tag).chain(rest)).collect();
        let _ = etcd::parse_range(etcd::GRPC_ANSWER, &body);
    }

    #[test]
    fn admin_bodies_get_a_clear_answer(body in prop_oneof![
        any::<Vec<u8>>(),
        "\\{\"(email|emails|reason|dry_run|action|status|metadata)\":(\"[a-z@.,\u{0}]{0,10}\"|true|1|null|\\[\\]|\\{\\})\\}".prop_map(String::into_bytes),
    ]) {
        let admin = AdminConfig {
            prefix: "/_devportal".into(),
            tokens: vec![("ops".into(), "0123456789abcdef".into())],
            registration_url: "https://portal.example.com/register".into(),
            invitation_subject: "s".into(),
            invitation_body: "b {registration_url}".into(),
        };
        let directory = Directory::Etcd(EtcdConfig {
            members: devportal_gate::etcd::members::Members::new(vec!["etcd".into()]),
            grpc_upstream: None,
            authority: "etcd".into(),
            key_prefix: "/dp/".into(),
            timeout_ms: 1000,
            sync_interval_ms: 1000,
            change_log_retention_ms: 3_600_000,
        });
        let store = MemoryStore::default();
        let ctx = AdminContext { config: &admin, directory: &directory, namespace: "ns", store: &store, now_ms: 1, operation: "op".into(), approvals: Default::default() };
        for route in [Route::Create, Route::Bulk, Route::Invite, Route::Act("a@x.io".into(), DeveloperAction::Revoke)] {
            if let Step::Respond(response) = admin::start(&ctx, route, None, &body, "ops") {
                prop_assert!(response.status < 500, "{} for {:?}", response.status, String::from_utf8_lossy(&body));
                prop_assert!(serde_json::from_str::<serde_json::Value>(&response.body).is_ok());
            }
        }
    }
}
