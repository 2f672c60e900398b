#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test code: failing loudly is the point
//! The shipped configuration files: Envoy accepts every Envoy config, every
//! embedded filter configuration compiles, and Kong's schema agrees with the
//! filter's own validation.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{embedded_filter_configs, envoy_bin, repo_root, wasm_path};
use serde_json::{json, Value};

fn files_under(dir: &str, extension: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![repo_root().join(dir)];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == extension) {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

fn kong_schema() -> jsonschema::Validator {
    let meta: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("filter-config/kong/devportal_gate.meta.json")).unwrap(),
    )
    .unwrap();
    jsonschema::draft4::new(&meta["config_schema"]).expect("meta.json's config_schema is a valid draft-4 schema")
}

#[test]
fn every_envoy_config_passes_envoy_validate() {
    wasm_path(); // the configs reference the built .wasm
    let configs = files_under("filter-config/envoy", "yaml");
    assert!(configs.len() >= 2, "{configs:?}");
    for config in configs {
        let output = Command::new(envoy_bin())
            .args(["--mode", "validate", "--disable-hot-restart", "-c"])
            .arg(&config)
            .current_dir(repo_root())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{} is refused by Envoy:\n{}{}",
            config.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn every_example_filter_configuration_compiles_and_matches_the_schema() {
    let schema = kong_schema();
    let mut checked = 0;
    for file in files_under("filter-config", "yaml")
        .into_iter()
        .chain(files_under("filter-config", "yml"))
    {
        let text = std::fs::read_to_string(&file).unwrap();
        let for_kong = file.starts_with(repo_root().join("filter-config/kong"));
        for config in embedded_filter_configs(&text) {
            // Kong's schema is every host's, but for the Envoy-only
            // `grpc_upstream`, which it refuses (Kong traps on gRPC calls).
            let mut common = config.clone();
            if let Some(etcd) = common
                .pointer_mut("/directory/etcd")
                .and_then(Value::as_object_mut)
                .filter(|_| !for_kong)
            {
                if etcd.remove("grpc_upstream").is_some() {
                    assert!(!schema.is_valid(&config), "Kong's schema refuses grpc_upstream");
                }
            }
            let errors: Vec<String> = schema
                .iter_errors(&common)
                .map(|e| format!("{} at {}", e, e.instance_path()))
                .collect();
            assert!(errors.is_empty(), "{}: schema errors: {errors:#?}", file.display());
            if let Err(error) = devportal_gate::config::compile(config.to_string().as_bytes()) {
                panic!("{}: {error}", file.display());
            }
            checked += 1;
        }
    }
    // demo, jwt, kong, istio
    assert!(checked >= 4, "only {checked} embedded configurations found");
}

#[test]
fn schema_and_filter_refuse_the_same_bad_configurations() {
    let schema = kong_schema();
    let good = json!({
        "config_version": 1,
        "routes": [{"prefix": "/api", "class": "api"}],
        "developers": [{"email": "a@example.com", "status": "approved"}]
    });
    assert!(schema.is_valid(&good));
    assert!(devportal_gate::config::compile(good.to_string().as_bytes()).is_ok());

    type Mutation = Box<dyn Fn(&mut serde_json::Value)>;
    let mutations: Vec<(&str, Mutation)> = vec![
        ("unknown top-level field", Box::new(|c| c["colour"] = json!("blue"))),
        ("wrong version", Box::new(|c| c["config_version"] = json!(2))),
        ("no routes", Box::new(|c| c["routes"] = json!([]))),
        (
            "route without path",
            Box::new(|c| c["routes"] = json!([{"class": "api"}])),
        ),
        (
            "route with both paths",
            Box::new(|c| c["routes"] = json!([{"exact": "/a", "prefix": "/a", "class": "api"}])),
        ),
        ("unknown class", Box::new(|c| c["routes"][0]["class"] = json!("admin"))),
        ("relative path", Box::new(|c| c["routes"][0]["prefix"] = json!("api"))),
        (
            "lower-case method",
            Box::new(|c| c["routes"][0]["methods"] = json!(["get"])),
        ),
        ("empty methods", Box::new(|c| c["routes"][0]["methods"] = json!([]))),
        (
            "unknown status",
            Box::new(|c| c["developers"][0]["status"] = json!("banned")),
        ),
        (
            "status code out of range",
            Box::new(|c| c["developers"][0]["status"] = json!(4)),
        ),
        (
            "email without @",
            Box::new(|c| c["developers"][0]["email"] = json!("alice")),
        ),
        (
            "developer without status",
            Box::new(|c| c["developers"] = json!([{"email": "a@example.com"}])),
        ),
        (
            "bad header name",
            Box::new(|c| c["identity"] = json!({"source": "header", "header": "x bad"})),
        ),
        (
            "unknown identity source",
            Box::new(|c| c["identity"] = json!({"source": "cookie"})),
        ),
        ("bad namespace", Box::new(|c| c["namespace"] = json!("Dev/Portal"))),
        (
            "unknown denial style",
            Box::new(|c| c["denials"] = json!({"style": "nginx"})),
        ),
        (
            "protocol-relative redirect",
            Box::new(|c| c["denials"] = json!({"browser_redirects": {"revoked": "//evil.example"}})),
        ),
        (
            "etcd directory without etcd",
            Box::new(|c| c["directory"] = json!({"source": "etcd"})),
        ),
        (
            "static directory with etcd",
            Box::new(|c| c["directory"] = json!({"source": "static", "etcd": {"upstream": "etcd"}})),
        ),
        (
            "sync interval too short",
            Box::new(|c| {
                c["directory"] = json!({"source": "etcd", "sync_interval_ms": 5, "etcd": {"upstream": "etcd"}})
            }),
        ),
        (
            "etcd key prefix without slashes",
            Box::new(|c| c["directory"] = json!({"source": "etcd", "etcd": {"upstream": "etcd", "key_prefix": "dp"}})),
        ),
        (
            "short admin token",
            Box::new(
                |c| c["admin"] = json!({"prefix": "/_dp", "registration_url": "https://x.io/r", "tokens": [{"name": "a", "token": "short"}]}),
            ),
        ),
        (
            "admin prefix with trailing slash",
            Box::new(
                |c| c["admin"] = json!({"prefix": "/_dp/", "registration_url": "https://x.io/r", "tokens": [{"name": "a", "token": "0123456789abcdef"}]}),
            ),
        ),
        (
            "admin without tokens",
            Box::new(|c| c["admin"] = json!({"prefix": "/_dp", "registration_url": "https://x.io/r", "tokens": []})),
        ),
        (
            "unknown unknown_developers",
            Box::new(|c| c["unknown_developers"] = json!("admit")),
        ),
        ("metrics not a boolean", Box::new(|c| c["metrics"] = json!("off"))),
        (
            "registration rate of zero",
            Box::new(|c| c["registration"] = json!({"per_minute": 0})),
        ),
        (
            "registration with an unknown field",
            Box::new(|c| c["registration"] = json!({"per_hour": 5})),
        ),
        (
            "registration cap too large",
            Box::new(|c| c["registration"] = json!({"max_pending": 2_000_000})),
        ),
        (
            "events without a secret",
            Box::new(|c| c["events"] = json!({"sinks": [{"name": "a", "upstream": "a:1", "path": "/h"}]})),
        ),
        (
            "events to a sink of an unknown type",
            Box::new(
                |c| c["events"] = json!({"secrets": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"], "sinks": [{"name": "a", "upstream": "a:1", "path": "/h", "types": ["devportal.developer.created"]}]}),
            ),
        ),
    ];
    for (what, mutate) in mutations {
        let mut config = good.clone();
        mutate(&mut config);
        assert!(!schema.is_valid(&config), "schema accepts: {what}");
        assert!(
            devportal_gate::config::compile(config.to_string().as_bytes()).is_err(),
            "filter accepts: {what}"
        );
    }
}

/// Kong's ngx_wasm_module refuses to load a module that imports
/// `proxy_get_log_level` (docs/hosts.md); the build must never reference it.
#[test]
fn the_wasm_never_imports_get_log_level() {
    let wasm = std::fs::read(wasm_path()).unwrap();
    let contains = |needle: &[u8]| wasm.windows(needle.len()).any(|w| w == needle);
    // The module's import and export names are stored as plain strings.
    assert!(contains(b"proxy_on_request_headers"), "not a proxy-wasm module?");
    assert!(contains(b"proxy_get_shared_data"));
    assert!(
        !contains(b"proxy_get_log_level"),
        "the .wasm imports proxy_get_log_level: Kong will not load it"
    );
}
