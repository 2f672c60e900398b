//! The configuration compiler: what it accepts, and that every refusal names its field.

use super::*;
use crate::directory::Directory;
use crate::request::identity::IdentitySource;
use crate::request::routes::Classification;
use serde_json::json;

fn base() -> serde_json::Value {
    json!({
        "config_version": 1,
        "routes": [
            {"exact": "/portal/login", "class": "public"},
            {"prefix": "/portal/", "class": "portal"},
            {"prefix": "/api/", "class": "api"}
        ],
        "developers": [{"email": "Alice@Example.com", "status": "approved"}, {"email": "bob@example.com", "status": 1}]
    })
}

fn compile_value(value: &serde_json::Value) -> Result<Config, ConfigError> {
    compile(value.to_string().as_bytes())
}

fn error_of(value: serde_json::Value) -> ConfigError {
    compile_value(&value).unwrap_err()
}

#[test]
fn minimal_config_compiles_with_defaults() {
    let config = compile_value(&base()).unwrap();
    assert_eq!(config.gate.namespace, "devportal");
    assert_eq!(
        config.gate.identity,
        IdentitySource::Header {
            name: "x-consumer-username".into()
        }
    );
    assert_eq!(
        config.developers,
        vec![
            ("alice@example.com".to_string(), Status::Approved),
            ("bob@example.com".to_string(), Status::Requested)
        ]
    );
    assert_eq!(config.gate.routes.classify("/nowhere", "GET"), Classification::Unrouted);
}

#[test]
fn unknown_fields_are_refused_with_their_path() {
    let mut config = base();
    config["routes"][1]["clas"] = json!("api");
    let error = error_of(config);
    assert_eq!(error.field, "routes[1].clas");
    assert!(error.message.contains("unknown field `clas`"), "{error}");
    let mut config = base();
    config["extra"] = json!(true);
    assert!(error_of(config).message.contains("unknown field `extra`"));
}

#[test]
fn bad_statuses_are_refused() {
    for status in [json!("approve"), json!(4), json!(-1), json!(true), json!("APPROVED")] {
        let mut config = base();
        config["developers"][0]["status"] = status.clone();
        let error = error_of(config);
        assert_eq!(error.field, "developers[0].status", "{status}: {error}");
    }
    let mut config = base();
    config["developers"][0]["status"] = json!("pending");
    assert_eq!(compile_value(&config).unwrap().developers[0].1, Status::Requested);
}

#[test]
fn duplicate_developers_are_refused_case_insensitively() {
    let mut config = base();
    config["developers"] = json!([{"email": "a@x.io", "status": 0}, {"email": " A@X.IO", "status": 3}]);
    let error = error_of(config);
    assert_eq!(error.field, "developers[1].email");
    assert!(error.message.contains("developers[0]"), "{error}");
}

#[test]
fn invalid_emails_are_refused() {
    let mut config = base();
    config["developers"][1]["email"] = json!("not an email");
    assert_eq!(error_of(config).field, "developers[1].email");
}

#[test]
fn invalid_header_names_are_refused() {
    for header in ["bad header", "", "x-consumer:username", "x-developer-email"] {
        let mut config = base();
        config["identity"] = json!({"source": "header", "header": header});
        assert_eq!(error_of(config).field, "identity.header", "{header}");
    }
    let mut config = base();
    config["identity"] = json!({"source": "header", "header": "X-Consumer-Username"});
    assert_eq!(
        compile_value(&config).unwrap().gate.identity,
        IdentitySource::Header {
            name: "x-consumer-username".into()
        }
    );
    let mut config = base();
    config["identity"] = json!({"source": "header", "claim": "email"});
    assert_eq!(error_of(config).field, "identity.claim");
    let mut config = base();
    config["identity"] = json!({"source": "cookie"});
    assert_eq!(error_of(config).field, "identity.source");
}

#[test]
fn jwt_identity_defaults() {
    let mut config = base();
    config["identity"] = json!({"source": "jwt_payload"});
    assert_eq!(
        compile_value(&config).unwrap().gate.identity,
        IdentitySource::JwtPayload {
            header: "x-jwt-payload".into(),
            claim: "email".into()
        }
    );
}

#[test]
fn empty_and_contradictory_routes_are_refused() {
    let mut config = base();
    config["routes"] = json!([]);
    assert_eq!(error_of(config).field, "routes");

    let mut config = base();
    config["routes"] = json!([{"class": "api"}]);
    assert_eq!(error_of(config).field, "routes[0]");

    let mut config = base();
    config["routes"] = json!([{"exact": "/a", "prefix": "/a", "class": "api"}]);
    assert_eq!(error_of(config).field, "routes[0]");

    // A public rule after a broader protected rule could never match.
    let mut config = base();
    config["routes"] = json!([{"prefix": "/portal", "class": "portal"}, {"exact": "/portal/login", "class": "public"}]);
    let error = error_of(config);
    assert_eq!(error.field, "routes[1]");
    assert!(error.message.contains("routes[0]"), "{error}");

    // The same rule twice, with and without trailing slash.
    let mut config = base();
    config["routes"] = json!([{"prefix": "/api/", "class": "api"}, {"prefix": "/api", "class": "public"}]);
    assert_eq!(error_of(config).field, "routes[1]");
}

#[test]
fn route_paths_must_be_normalized() {
    for (path, field) in [
        ("/portal/../admin", "routes[0].prefix"),
        ("portal", "routes[0].prefix"),
        ("/a//b", "routes[0].prefix"),
        ("/a;b", "routes[0].prefix"),
        ("/a?b", "routes[0].prefix"),
        ("/%61pi", "routes[0].prefix"),
    ] {
        let mut config = base();
        config["routes"] = json!([{"prefix": path, "class": "api"}]);
        assert_eq!(error_of(config).field, field, "{path}");
    }
}

#[test]
fn methods_are_validated() {
    for (methods, field) in [
        (json!([]), "routes[0].methods"),
        (json!(["get"]), "routes[0].methods[0]"),
        (json!(["POST", "POST"]), "routes[0].methods[1]"),
        (json!(["PO ST"]), "routes[0].methods[0]"),
    ] {
        let mut config = base();
        config["routes"] = json!([{"prefix": "/api", "methods": methods, "class": "api"}]);
        assert_eq!(error_of(config).field, field);
    }
}

#[test]
fn redirects_must_be_public_or_absolute() {
    let mut config = base();
    config["denials"] = json!({"browser_redirects": {"requested": "/portal/pending"}});
    let error = error_of(config);
    assert_eq!(error.field, "denials.browser_redirects.requested");
    assert!(error.message.contains("not a public route"), "{error}");

    let mut config = base();
    config["denials"] =
        json!({"browser_redirects": {"requested": "/portal/login", "revoked": "https://example.com/help"}});
    assert!(compile_value(&config).is_ok());

    for bad in ["javascript:alert(1)", "//evil.example", "/portal/login\r\nx: y", ""] {
        let mut config = base();
        config["denials"] = json!({"browser_redirects": {"revoked": bad}});
        assert_eq!(error_of(config).field, "denials.browser_redirects.revoked", "{bad}");
    }
}

#[test]
fn version_and_namespace_are_checked() {
    let mut config = base();
    config["config_version"] = json!(2);
    assert_eq!(error_of(config).field, "config_version");
    let mut config = base();
    config.as_object_mut().unwrap().remove("config_version");
    assert!(error_of(config).message.contains("config_version"));
    for namespace in ["", "Dev", "a/b", "dev portal"] {
        let mut config = base();
        config["namespace"] = json!(namespace);
        assert_eq!(error_of(config).field, "namespace");
    }
}

#[test]
fn not_json_at_all() {
    assert!(compile(b"").unwrap_err().message.contains("needs a JSON configuration"));
    assert!(compile(b"{").is_err());
    assert!(compile(b"[]").is_err());
    let mut text = base().to_string();
    text.push_str(" {}");
    assert!(compile(text.as_bytes()).is_err());
}

#[test]
fn etcd_members_for_a_host_without_load_balancing() {
    let mut value = base();
    value["directory"] = json!({"source": "etcd", "etcd": {"upstream": [" 10.0.0.1:2379", "10.0.0.2:2379"]}});
    let config = compile_value(&value).unwrap();
    let Directory::Etcd(etcd) = &config.directory else {
        panic!("etcd expected")
    };
    assert_eq!(etcd.members.names(), ["10.0.0.1:2379", "10.0.0.2:2379"]);
    assert_eq!(etcd.authority, "10.0.0.1:2379", "the first member's address by default");
}

#[test]
fn etcd_directory_admin_and_self_service() {
    let mut value = base();
    value["directory"] = json!({"source": "etcd", "etcd": {"upstream": "etcd"}});
    value["unknown_developers"] = json!("request");
    value["admin"] = json!({"prefix": "/_dp", "registration_url": "https://portal.example.com/register", "tokens": [{"name": "ops", "token": "0123456789abcdef"}]});
    let config = compile_value(&value).unwrap();
    let Directory::Etcd(etcd) = &config.directory else {
        panic!("etcd expected")
    };
    assert_eq!(
        (etcd.authority.as_str(), etcd.key_prefix.as_str(), etcd.sync_interval_ms),
        ("etcd", "/devportal/", 1000)
    );
    assert_eq!(etcd.members.names(), ["etcd"]);
    assert!(config.gate.self_service);
    assert_eq!(
        config.admin.unwrap().tokens,
        vec![("ops".to_string(), "0123456789abcdef".to_string())]
    );

    let cases = [
        (json!({"unknown_developers": "request"}), "unknown_developers"),
        (json!({"directory": {"source": "etcd"}}), "directory.etcd"),
        (
            json!({"directory": {"source": "etcd", "etcd": {"upstream": "etcd", "timeout_ms": 1}}}),
            "directory.etcd.timeout_ms",
        ),
        (
            json!({"directory": {"source": "etcd", "etcd": {"upstream": "etcd", "key_prefix": "/x"}}}),
            "directory.etcd.key_prefix",
        ),
        (
            json!({"directory": {"source": "static", "sync_interval_ms": 500}}),
            "directory.sync_interval_ms",
        ),
        (
            json!({"directory": {"source": "etcd", "etcd": {"upstream": ""}}}),
            "directory.etcd.upstream",
        ),
        (
            json!({"directory": {"source": "etcd", "etcd": {"upstream": []}}}),
            "directory.etcd.upstream",
        ),
        (
            json!({"directory": {"source": "etcd", "etcd": {"upstream": 2379}}}),
            "directory.etcd.upstream",
        ),
        (
            json!({"directory": {"source": "etcd", "etcd": {"upstream": ["a:1", "b:2", "a:1"]}}}),
            "directory.etcd.upstream[2]",
        ),
        (
            json!({"directory": {"source": "etcd", "etcd": {"upstream": ["a:1", "b 2"]}}}),
            "directory.etcd.upstream[1]",
        ),
        (
            json!({"admin": {"prefix": "/_dp", "registration_url": "https://x.io", "tokens": [{"name": "a", "token": "short"}]}}),
            "admin.tokens[0].token",
        ),
        (
            json!({"admin": {"prefix": "/_dp", "registration_url": "ftp://x.io", "tokens": [{"name": "a", "token": "0123456789abcdef"}]}}),
            "admin.registration_url",
        ),
        (
            json!({"admin": {"prefix": "/_dp", "registration_url": "https://x.io", "tokens": [{"name": "a", "token": "0123456789abcdef"}, {"name": "a", "token": "0123456789abcdeg"}]}}),
            "admin.tokens[1].name",
        ),
    ];
    for (patch, field) in cases {
        let mut value = base();
        for (key, entry) in patch.as_object().unwrap() {
            value[key] = entry.clone();
        }
        let error = error_of(value);
        assert_eq!(error.field, field, "{error}");
        assert!(
            !error.to_string().contains("0123456789abcdef"),
            "secrets stay out of errors: {error}"
        );
    }
    let mut admin_only = base();
    admin_only["routes"] = json!([]);
    assert_eq!(error_of(admin_only.clone()).field, "routes");
    admin_only["admin"] = value["admin"].clone();
    assert_eq!(
        error_of(admin_only.clone()).field,
        "developers",
        "a static admin-only config must not seed"
    );
    admin_only.as_object_mut().unwrap().remove("developers");
    let config = compile_value(&admin_only).unwrap();
    assert!(config.admin_only);
}

#[test]
fn events_are_validated_and_name_the_field() {
    let mut value = base();
    value["directory"] = json!({"source": "etcd", "etcd": {"upstream": "etcd"}});
    let sink = json!({"name": "mailer", "upstream": "mailer:8080", "path": "/hooks"});
    value["events"] = json!({"secrets": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"], "sinks": [sink]});
    let events = compile_value(&value).unwrap().events.unwrap();
    assert_eq!(events.sinks[0].authority, "mailer:8080");
    assert_eq!((events.retry_initial_ms, events.retry_max_ms), (500, 60_000));

    let cases = [
        (json!({"sinks": [sink]}), "events.secrets"),
        (json!({"secrets": ["secret"], "sinks": [sink]}), "events.secrets[0]"),
        (
            json!({"secrets": ["whsec_c2hvcnQ="], "sinks": [sink]}),
            "events.secrets[0]",
        ),
        (
            json!({"secrets": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"], "sinks": []}),
            "events.sinks",
        ),
        (
            json!({"secrets": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"], "sinks": [sink, sink]}),
            "events.sinks[1].name",
        ),
        (
            json!({"secrets": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"], "sinks": [{"name": "a", "upstream": "a", "path": "hooks"}]}),
            "events.sinks[0].path",
        ),
        (
            json!({"secrets": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"], "sinks": [{"name": "a", "upstream": "a", "path": "/h", "types": ["devportal.developer.created"]}]}),
            "events.sinks[0].types[0]",
        ),
    ];
    for (events, field) in cases {
        let mut value = value.clone();
        value["events"] = events;
        assert_eq!(compile_value(&value).unwrap_err().field, field);
    }
    let mut static_directory = value.clone();
    static_directory["directory"] = json!({"source": "static"});
    assert_eq!(compile_value(&static_directory).unwrap_err().field, "events");
}

#[test]
fn registration_rules_are_validated_and_name_the_field() {
    let mut value = base();
    value["directory"] = json!({"source": "etcd", "etcd": {"upstream": "etcd"}});
    value["unknown_developers"] = json!("request");
    let rule = json!({"name": "partners", "match": {"domain": " Partner.COM ", "include_subdomains": true}, "outcome": "approved", "expires_in": "90d"});
    value["registration"] = json!({"rules": [rule]});
    value["approvals"] = json!({"default_expires_in": "30d", "max_expires_in": "365d"});
    let config = compile_value(&value).unwrap();
    let compiled = &config.gate.rules[0];
    assert_eq!(
        compiled.domain.as_ref().unwrap().domain,
        "partner.com",
        "trimmed, lower-case"
    );
    assert_eq!(compiled.expires_in_ms, Some(90 * 86_400_000));
    assert_eq!(config.approvals.max_ms, Some(365 * 86_400_000));

    let cases = [
        (
            json!([{"name": "a", "match": {"domain": "x.io"}, "outcome": "approved", "colour": 1}]),
            "registration.rules[0].colour",
        ),
        (
            json!([{"name": "a", "match": {}, "outcome": "approved"}]),
            "registration.rules[0].match",
        ),
        (
            json!([{"name": "a", "match": {"domain": "partner"}, "outcome": "approved"}]),
            "registration.rules[0].match.domain",
        ),
        (
            json!([{"name": "a", "match": {"domain": "evil..io"}, "outcome": "approved"}]),
            "registration.rules[0].match.domain",
        ),
        (json!([rule, rule]), "registration.rules[1].name"),
        (
            json!([{"name": "a", "match": {"claims": {"org": "x"}}, "outcome": "approved"}]),
            "registration.rules[0].match.claims",
        ),
        (
            json!([{"name": "a", "match": {"domain": "x.io"}, "outcome": "rejected", "expires_in": "1d"}]),
            "registration.rules[0].expires_in",
        ),
        (
            json!([{"name": "a", "match": {"domain": "x.io"}, "outcome": "revoked"}]),
            "registration.rules[0].outcome",
        ),
        (
            json!([{"name": "a", "match": {"domain": "x.io"}, "outcome": "approved", "expires_in": "400d"}]),
            "registration.rules[0].expires_in",
        ),
        (
            json!([{"name": "a", "match": {"include_subdomains": true}, "outcome": "approved"}]),
            "registration.rules[0].match.include_subdomains",
        ),
    ];
    for (rules, field) in cases {
        let mut value = value.clone();
        value["registration"] = json!({"rules": rules});
        let error = compile_value(&value).unwrap_err();
        assert!(error.field.starts_with(field), "{field}: got {error}");
    }
    let mut bad_approvals = value.clone();
    bad_approvals["approvals"] = json!({"default_expires_in": "400d", "max_expires_in": "365d"});
    assert_eq!(
        compile_value(&bad_approvals).unwrap_err().field,
        "approvals.default_expires_in"
    );
    // Claims with a JWT identity are fine.
    let mut jwt = value.clone();
    jwt["identity"] = json!({"source": "jwt_payload"});
    jwt["registration"] =
        json!({"rules": [{"name": "verified", "match": {"claims": {"email_verified": true}}, "outcome": "approved"}]});
    let config = compile_value(&jwt).unwrap();
    assert_eq!(
        config.gate.rules[0].expires_in_ms,
        Some(30 * 86_400_000),
        "the default end for approvals"
    );
}

#[test]
fn the_reader_names_the_field_of_every_shape_error() {
    let text = br#"{"config_version": 1, "routes": [{"prefix": "/api", "class": "api", "class": "public"}]}"#;
    let error = compile(text).unwrap_err();
    assert!(error.message.contains("duplicate field `class`"), "{error}");
    assert!(error.field.starts_with("routes[0]"), "{error}");

    let cases = [
        (
            json!({"metrics": "yes"}),
            "metrics",
            "invalid type: string \"yes\", expected a boolean",
        ),
        (
            json!({"namespace": 7}),
            "namespace",
            "invalid type: integer `7`, expected a string",
        ),
        (
            json!({"identity": []}),
            "identity",
            "invalid type: sequence, expected a map",
        ),
        (
            json!({"registration": {"per_minute": 5_000_000_000u64}}),
            "registration.per_minute",
            "expected u32",
        ),
        (
            json!({"registration": {"max_pending": -1}}),
            "registration.max_pending",
            "invalid value: integer `-1`",
        ),
        (
            json!({"directory": {"source": "etcd", "sync_interval_ms": 1.5}}),
            "directory.sync_interval_ms",
            "floating point `1.5`",
        ),
        (json!({"directory": {}}), "directory", "missing field `source`"),
        (
            json!({"unmatched": "allow"}),
            "unmatched",
            "unknown variant `allow`, expected one of `deny`, `public`",
        ),
        (
            json!({"developers": [{"email": "a@x.io", "status": 1.0}]}),
            "developers[0].status",
            "unknown status code 1.0",
        ),
    ];
    for (patch, field, message) in cases {
        let mut value = base();
        for (key, entry) in patch.as_object().unwrap() {
            value[key] = entry.clone();
        }
        let error = error_of(value);
        assert_eq!(error.field, field, "{error}");
        assert!(error.message.contains(message), "{field}: {error}");
    }
    // A member given as null is absent (serde's derive read null as absent
    // only for options; a list given as null is now an empty one too).
    let mut value = base();
    value["identity"] = json!(null);
    value["denials"] = json!({"style": null});
    value["developers"] = json!(null);
    assert!(compile_value(&value).unwrap().developers.is_empty());
}
