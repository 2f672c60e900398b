//! The shipped etcd-backed demo (filter-config/envoy/demo.yaml) as a test gateway:
//! one Envoy pointed at a test etcd, with helpers for the gate and the admin API.

use std::time::Duration;

use serde_json::Value;

use super::{adapt_shipped_config, embedded_filter_configs, repo_root, wait_until, Envoy, Ports, Request, Response};

pub struct Gateway {
    pub envoy: Envoy,
    pub port: u16,
    pub api: u16,
    pub token: String,
}

pub fn demo_token() -> String {
    let yaml = std::fs::read_to_string(repo_root().join("filter-config/envoy/demo.yaml")).unwrap();
    let configs = embedded_filter_configs(&yaml);
    let admin = configs
        .iter()
        .find(|c| c.get("admin").is_some())
        .expect("demo.yaml has an admin configuration");
    admin["admin"]["tokens"][0]["token"].as_str().unwrap().to_string()
}

pub fn gateway(name: &str, etcd_port: u16) -> Gateway {
    gateway_with(name, etcd_port, |config| config)
}

/// The demo with its Envoy configuration text changed by `edit` first.
pub fn gateway_with(name: &str, etcd_port: u16, edit: impl Fn(String) -> String) -> Gateway {
    let mut ports = Ports::new();
    ports.etcd = etcd_port;
    let config = edit(adapt_shipped_config("filter-config/envoy/demo.yaml", &ports));
    let envoy = Envoy::start(name, &config, ports.admin, 2);
    Gateway {
        envoy,
        port: ports.listener,
        api: ports.api,
        token: demo_token(),
    }
}

impl Gateway {
    /// The status an API call of `email` gets.
    pub fn api_status(&self, email: &str) -> u16 {
        Request::get("/api/orders").user(email).send(self.port).status
    }

    pub fn admin(&self, method: &str, path: &str, body: Option<&str>) -> Response {
        let mut request = Request::new(method, &format!("/_devportal{path}"))
            .header("authorization", &format!("Bearer {}", self.token));
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body);
        }
        request.send(self.api)
    }

    pub fn act(&self, email: &str, action: &str) -> Response {
        self.admin(
            "POST",
            &format!("/developers/{email}/{action}"),
            Some(r#"{"reason":"e2e"}"#),
        )
    }

    pub fn developer(&self, email: &str) -> Value {
        let response = self.admin("GET", &format!("/developers/{email}"), None);
        assert_eq!(response.status, 200, "{}", response.body);
        response.json()["developer"].clone()
    }

    pub fn wait_synced(&self) {
        wait_until("first sync", Duration::from_secs(20), || {
            Request::get("/_devportal/health").send(self.api).status == 200
        });
    }
}
