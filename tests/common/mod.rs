//! Test harness: a real Envoy running the built `.wasm`, and a raw HTTP/1.1
//! client (raw so that odd request targets reach Envoy exactly as written).
#![allow(dead_code)]

pub mod browser;
pub mod cut_proxy;
pub mod delay_proxy;
pub mod demo;
pub mod etcd_cluster;
pub mod kong;
pub mod raw;
pub mod receiver;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The release `.wasm`, built by `make test` before cargo test runs.
pub fn wasm_path() -> PathBuf {
    let path = std::env::var_os("DEVPORTAL_GATE_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/wasm32-wasip1/release/devportal_gate.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run `make test` (it builds the .wasm first)",
        path.display()
    );
    path
}

pub fn envoy_bin() -> PathBuf {
    let path = std::env::var_os("ENVOY_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv/bin/envoy"));
    assert!(
        path.exists(),
        "{} is missing: run `make test` (it installs Envoy)",
        path.display()
    );
    path
}

/// A port no other test of this process has been given. Asking the kernel for
/// port 0 is not enough: the port is free again once probed, two tests can be
/// handed the same one, and Envoy's listeners set SO_REUSEPORT, so both Envoys
/// would bind it and share its connections.
/// `n` developers for a large directory, as (etcd key, stored JSON) under
/// `<key_prefix>dev/`: `dev000000@example.com` on, approved, requested,
/// revoked and rejected in turn, each changed a millisecond after the last.
pub fn bulk_developers(key_prefix: &str, n: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|i| {
            let status = ["approved", "requested", "revoked", "rejected"][i % 4];
            let at_ms = 1_700_000_000_000u64 + i as u64;
            let value = serde_json::json!({"status": status, "created_ms": at_ms, "updated_ms": at_ms, "metadata": {"full_name": format!("Developer {i}")}});
            (format!("{key_prefix}dev/dev{i:06}@example.com"), value.to_string())
        })
        .collect()
}

/// A port for a test's listener, free when checked. Taken from 20000-32767,
/// below Linux's ephemeral range (32768-60999): there, any outgoing
/// connection (a client's, Envoy's to etcd) may take the port between this
/// check and the listener's bind, which once failed CI with "Address already
/// in use". Each test process starts at its own place in the range.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    const FIRST: u16 = 20_000;
    const END: u16 = 32_768;
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let _ = NEXT.compare_exchange(
        0,
        FIRST + (std::process::id() % u32::from(END - FIRST)) as u16,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    loop {
        let port = NEXT.fetch_add(1, Ordering::SeqCst);
        if !(FIRST..END).contains(&port) {
            NEXT.store(FIRST, Ordering::SeqCst);
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A fresh scratch directory under target/, removed when dropped.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        let dir = repo_root()
            .join("target/e2e")
            .join(format!("{name}-{}-{}", std::process::id(), free_port()));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !std::thread::panicking() && !self.0.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

pub struct Ports {
    pub listener: u16,
    /// Envoy's own admin interface.
    pub admin: u16,
    pub echo: u16,
    /// The devportal admin API listener (demo.yaml).
    pub api: u16,
    /// etcd's client port (demo.yaml).
    pub etcd: u16,
}

impl Ports {
    pub fn new() -> Ports {
        Ports {
            listener: free_port(),
            admin: free_port(),
            echo: free_port(),
            api: free_port(),
            etcd: free_port(),
        }
    }
}

/// Takes a shipped Envoy config and points it at fresh ports and the built `.wasm`.
pub fn adapt_shipped_config(file: &str, ports: &Ports) -> String {
    let text = std::fs::read_to_string(repo_root().join(file)).unwrap();
    let adapted = text
        // etcd's port first: the ports handed out (20000 and up) may begin with
        // "2379", which a later replacement would then lengthen into nonsense.
        .replace("port_value: 2379", &format!("port_value: {}", ports.etcd))
        .replace("127.0.0.1:2379", &format!("127.0.0.1:{}", ports.etcd))
        .replace("port_value: 10000", &format!("port_value: {}", ports.listener))
        .replace("port_value: 9901", &format!("port_value: {}", ports.admin))
        .replace("port_value: 10002", &format!("port_value: {}", ports.echo))
        .replace("port_value: 10001", &format!("port_value: {}", ports.api))
        .replace(
            "target/wasm32-wasip1/release/devportal_gate.wasm",
            wasm_path().to_str().unwrap(),
        );
    assert_ne!(adapted, text, "{file}: nothing to adapt");
    adapted
}

pub fn etcd_bin() -> PathBuf {
    let path = std::env::var_os("ETCD_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/etcd"));
    assert!(
        path.exists(),
        "{} is missing: run `make test` (it installs etcd-server)",
        path.display()
    );
    path
}

/// A real etcd on loopback with its data in a scratch directory; stopped when dropped.
pub struct Etcd {
    child: Option<Child>,
    pub port: u16,
    peer: u16,
    scratch: Scratch,
}

impl Etcd {
    pub fn start(name: &str, port: u16) -> Etcd {
        let mut etcd = Etcd {
            child: None,
            port,
            peer: free_port(),
            scratch: Scratch::new(&format!("etcd-{name}")),
        };
        etcd.run();
        etcd
    }

    /// A handle on a member this test did not start (one of an `EtcdCluster`):
    /// its client API only; dropping it stops nothing.
    pub fn attach(port: u16) -> Etcd {
        Etcd {
            child: None,
            port,
            peer: 0,
            scratch: Scratch::new("etcd-attached"),
        }
    }

    fn run(&mut self) {
        let client = format!("http://127.0.0.1:{}", self.port);
        let peer = format!("http://127.0.0.1:{}", self.peer);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.scratch.0.join("etcd.log"))
            .unwrap();
        let child = Command::new(etcd_bin())
            .args(["--name", "test", "--data-dir"])
            .arg(self.scratch.0.join("data"))
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("test={peer}")])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(response) = Request::new("POST", "/v3/kv/range")
                .body(r#"{"key":"AA=="}"#)
                .try_send(self.port)
            {
                if response.status == 200 {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "etcd did not start; its log:\n{}",
            std::fs::read_to_string(self.scratch.0.join("etcd.log")).unwrap_or_default()
        );
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts again on the same data and port.
    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }

    fn call(&self, path: &str, body: serde_json::Value) -> serde_json::Value {
        let response = Request::new("POST", path).body(&body.to_string()).send(self.port);
        assert_eq!(response.status, 200, "etcd {path}: {}", response.body);
        response.json()
    }

    pub fn put(&self, key: &str, value: &str) {
        self.call(
            "/v3/kv/put",
            serde_json::json!({"key": b64(key.as_bytes()), "value": b64(value.as_bytes())}),
        );
    }

    pub fn delete(&self, key: &str) {
        self.call("/v3/kv/deleterange", serde_json::json!({"key": b64(key.as_bytes())}));
    }

    /// Every key under `prefix`: (key, value, create_revision), and the store's revision.
    pub fn list(&self, prefix: &str) -> (Vec<(String, String, u64)>, u64) {
        let mut end = prefix.as_bytes().to_vec();
        *end.last_mut().unwrap() += 1;
        let answer = self.call(
            "/v3/kv/range",
            serde_json::json!({"key": b64(prefix.as_bytes()), "range_end": b64(&end)}),
        );
        let decode = |text: &serde_json::Value| {
            let bytes = devportal_gate::encoding::base64::decode(
                devportal_gate::encoding::base64::Alphabet::Standard,
                text.as_str().unwrap_or_default(),
            )
            .unwrap_or_default();
            String::from_utf8(bytes).unwrap()
        };
        let kvs = answer["kvs"]
            .as_array()
            .map(|kvs| {
                kvs.iter()
                    .map(|kv| {
                        (
                            decode(&kv["key"]),
                            decode(&kv["value"]),
                            kv["create_revision"].as_str().unwrap().parse().unwrap(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        (kvs, answer["header"]["revision"].as_str().unwrap().parse().unwrap())
    }

    /// The value at `key` and its mod_revision.
    pub fn get(&self, key: &str) -> Option<(String, u64)> {
        let answer = self.call("/v3/kv/range", serde_json::json!({"key": b64(key.as_bytes())}));
        let kv = answer["kvs"].get(0)?;
        let value = devportal_gate::encoding::base64::decode(
            devportal_gate::encoding::base64::Alphabet::Standard,
            kv["value"].as_str()?,
        )?;
        Some((
            String::from_utf8(value).ok()?,
            kv["mod_revision"].as_str()?.parse().ok()?,
        ))
    }

    /// Writes many keys, 128 per transaction (etcd's default limit).
    pub fn put_many(&self, entries: &[(String, String)]) {
        for chunk in entries.chunks(128) {
            let ops: Vec<serde_json::Value> = chunk
                .iter()
                .map(
                    |(k, v)| serde_json::json!({"request_put": {"key": b64(k.as_bytes()), "value": b64(v.as_bytes())}}),
                )
                .collect();
            self.call("/v3/kv/txn", serde_json::json!({"success": ops}));
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn b64(bytes: &[u8]) -> String {
    devportal_gate::encoding::base64::encode(devportal_gate::encoding::base64::Alphabet::Standard, bytes)
}

/// Polls `check` every 20 ms until it holds; returns how long that took, or
/// panics with `what` after `limit`.
pub fn wait_until(what: &str, limit: Duration, mut check: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    loop {
        if check() {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `check` until it holds or `limit` passes; whether it held.
pub fn try_wait_until(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    check()
}

/// A shipped configuration split in two: its portal listener served over LDS from
/// a file (so a test can replace it), the rest static. Its admin listener, if
/// any, is left out (`start`) or kept static (`from_config` with `keep_admin`).
pub struct LdsGateway {
    pub envoy: Envoy,
    pub port: u16,
    /// The portal listener as published first (an LDS resource).
    pub listener: String,
    lds_dir: PathBuf,
}

impl LdsGateway {
    pub fn start(name: &str, file: &str, ports: &Ports, extra: &[&str]) -> LdsGateway {
        let config = adapt_shipped_config(file, ports);
        LdsGateway::from_config(name, &config, ports, extra, false)
    }

    /// `config` is a whole Envoy configuration laid out as the shipped ones:
    /// listeners `portal`, then `devportal_admin` (optional), then `echo`.
    pub fn from_config(name: &str, config: &str, ports: &Ports, extra: &[&str], keep_admin: bool) -> LdsGateway {
        let start = config.find("  - name: portal\n").unwrap();
        let end = config.find("  - name: echo\n").unwrap();
        let portal_end = config.find("  - name: devportal_admin\n").unwrap_or(end);
        let listener = config[start..portal_end]
            .lines()
            .map(|line| line.strip_prefix("  ").unwrap_or(line))
            .collect::<Vec<_>>()
            .join("\n")
            .replacen(
                "- name: portal",
                "- \"@type\": type.googleapis.com/envoy.config.listener.v3.Listener\n  name: portal",
                1,
            );
        let admin = if keep_admin { &config[portal_end..end] } else { "" };
        let scratch = Scratch::new(name);
        let lds_dir = scratch.0.join("lds");
        std::fs::create_dir_all(&lds_dir).unwrap();
        let bootstrap = format!(
            "node: {{ id: test, cluster: test }}\n\
             dynamic_resources:\n  lds_config:\n    resource_api_version: V3\n    path_config_source:\n      \
             path: {lds}/lds.yaml\n      watched_directory: {{ path: {lds} }}\n{before}{admin}{after}",
            lds = lds_dir.display(),
            before = &config[..start],
            after = &config[end..],
        );
        let gateway = LdsGateway {
            envoy: Envoy::placeholder(),
            port: ports.listener,
            listener,
            lds_dir,
        };
        gateway.publish(&gateway.listener);
        let bootstrap_path = scratch.0.join("bootstrap.yaml");
        std::fs::write(&bootstrap_path, bootstrap).unwrap();
        let envoy = Envoy::start_file_with(scratch, &bootstrap_path, ports.admin, 2, extra);
        LdsGateway { envoy, ..gateway }
    }

    /// Atomically replaces the listener file; Envoy watches the directory.
    pub fn publish(&self, listener: &str) {
        let staging = self.lds_dir.join("lds.yaml.tmp");
        std::fs::write(&staging, format!("resources:\n{listener}\n")).unwrap();
        std::fs::rename(&staging, self.lds_dir.join("lds.yaml")).unwrap();
    }
}

pub struct Envoy {
    child: Option<Child>,
    pub admin: u16,
    pub log_path: PathBuf,
    _scratch: Scratch,
}

impl Envoy {
    /// Starts Envoy with `config` (YAML or JSON) and waits until it is ready.
    pub fn start(name: &str, config: &str, admin: u16, concurrency: u32) -> Envoy {
        let scratch = Scratch::new(name);
        let config_path = scratch.0.join("envoy.yaml");
        std::fs::write(&config_path, config).unwrap();
        Envoy::start_file(scratch, &config_path, admin, concurrency)
    }

    pub fn start_file(scratch: Scratch, config_path: &Path, admin: u16, concurrency: u32) -> Envoy {
        Envoy::start_file_with(scratch, config_path, admin, concurrency, &[])
    }

    /// `start_file` with extra command-line arguments.
    pub fn start_file_with(
        scratch: Scratch,
        config_path: &Path,
        admin: u16,
        concurrency: u32,
        extra: &[&str],
    ) -> Envoy {
        let log_path = scratch.0.join("envoy.log");
        let child = spawn_envoy(config_path, &log_path, concurrency, extra);
        let mut envoy = Envoy {
            child: Some(child),
            admin,
            log_path,
            _scratch: scratch,
        };
        envoy.wait_ready();
        envoy
    }

    /// An Envoy that is not running (for struct update syntax in tests).
    pub fn placeholder() -> Envoy {
        Envoy {
            child: None,
            admin: 0,
            log_path: PathBuf::new(),
            _scratch: Scratch(PathBuf::new()),
        }
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!("Envoy exited during start-up ({status}); its log:\n{}", self.log());
            }
            if let Ok(response) = Request::get("/ready").try_send(self.admin) {
                if response.status == 200 {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("Envoy was not ready within 60 s; its log:\n{}", self.log());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Envoy's resident memory (VmRSS), in bytes.
    pub fn rss_bytes(&self) -> u64 {
        let pid = self.child.as_ref().expect("a running Envoy").id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let kib: u64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .expect("VmRSS in /proc/<pid>/status");
        kib * 1024
    }

    /// The value of one counter from the admin interface (0 when not yet defined).
    pub fn counter(&self, name: &str) -> u64 {
        let stats = Request::get(&format!("/stats?filter=^{}$", name.replace('.', "\\."))).send(self.admin);
        stats
            .body
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{name}: ")))
            .map(|value| value.trim().parse().unwrap())
            .unwrap_or(0)
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() && !self.log_path.as_os_str().is_empty() {
            eprintln!(
                "----- Envoy log ({}) -----\n{}\n----- end of Envoy log -----",
                self.log_path.display(),
                self.log()
            );
        }
    }
}

pub fn spawn_envoy(config_path: &Path, log_path: &Path, concurrency: u32, extra: &[&str]) -> Child {
    let log = std::fs::File::create(log_path).unwrap();
    Command::new(envoy_bin())
        .arg("-c")
        .arg(config_path)
        .args([
            "--concurrency",
            &concurrency.to_string(),
            "--log-level",
            "info",
            "--disable-hot-restart",
        ])
        .args(extra)
        .current_dir(repo_root())
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap()
}

/// Runs Envoy on a config that must be refused; returns its exit status and log.
pub fn run_envoy_expecting_exit(name: &str, config: &str) -> (std::process::ExitStatus, String) {
    let scratch = Scratch::new(name);
    let config_path = scratch.0.join("envoy.yaml");
    std::fs::write(&config_path, config).unwrap();
    let log_path = scratch.0.join("envoy.log");
    let mut child = spawn_envoy(&config_path, &log_path, 1, &[]);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (status, std::fs::read_to_string(&log_path).unwrap_or_default());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "Envoy accepted a configuration it should refuse; its log:\n{}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[derive(Debug, Clone)]
pub struct Request {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    pub fn new(method: &str, target: &str) -> Request {
        Request {
            method: method.into(),
            target: target.into(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn get(target: &str) -> Request {
        Request::new("GET", target)
    }

    pub fn header(mut self, name: &str, value: &str) -> Request {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn user(self, email: &str) -> Request {
        self.header("x-consumer-username", email)
    }

    pub fn body(mut self, body: &str) -> Request {
        self.body = body.as_bytes().to_vec();
        self
    }

    pub fn send(&self, port: u16) -> Response {
        self.try_send(port)
            .unwrap_or_else(|e| panic!("{} {} on port {port}: {e}", self.method, self.target))
    }

    pub fn try_send(&self, port: u16) -> std::io::Result<Response> {
        let mut stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut raw = format!(
            "{} {} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n",
            self.method, self.target
        );
        for (name, value) in &self.headers {
            raw.push_str(&format!("{name}: {value}\r\n"));
        }
        raw.push_str(&format!("content-length: {}\r\n\r\n", self.body.len()));
        // One write: a body arriving after Envoy has answered locally and closed
        // would make the kernel reset the connection and drop the answer.
        let mut bytes = raw.into_bytes();
        bytes.extend_from_slice(&self.body);
        stream.write_all(&bytes)?;
        // Stop at the end of a Content-Length body instead of waiting for the
        // close: Envoy delays closing after a local answer (delayed_close_timeout).
        let mut answer = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        loop {
            if Response::is_complete(&answer) {
                break;
            }
            let read = stream.read(&mut chunk)?;
            if read == 0 {
                break;
            }
            answer.extend_from_slice(&chunk[..read]);
        }
        Response::parse(&answer)
    }
}

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    /// Whether `bytes` hold a whole answer with a Content-Length body.
    pub fn is_complete(bytes: &[u8]) -> bool {
        let Some(split) = bytes.windows(4).position(|w| w == b"\r\n\r\n") else {
            return false;
        };
        let head = String::from_utf8_lossy(&bytes[..split]).to_ascii_lowercase();
        let length = head
            .split("\r\n")
            .find_map(|line| line.strip_prefix("content-length:"))
            .and_then(|value| value.trim().parse::<usize>().ok());
        match length {
            Some(length) => bytes.len() >= split + 4 + length,
            None => false,
        }
    }

    fn parse(bytes: &[u8]) -> std::io::Result<Response> {
        let invalid = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
        let split = bytes
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| invalid("no header end"))?;
        let head = String::from_utf8_lossy(&bytes[..split]).into_owned();
        let mut body = bytes[split + 4..].to_vec();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().ok_or_else(|| invalid("no status line"))?;
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| invalid(status_line))?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        if headers
            .iter()
            .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"))
        {
            body = dechunk(&body);
        }
        Ok(Response {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// For echo answers: every value the upstream received for `name`.
    pub fn upstream_header(&self, name: &str) -> Vec<String> {
        let echo = self.json();
        assert_eq!(echo["upstream"], "echo", "not an upstream answer: {}", self.body);
        echo["headers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|pair| pair[0] == name)
            .map(|pair| pair[1].as_str().unwrap().to_string())
            .collect()
    }

    pub fn upstream_path(&self) -> String {
        self.json()["path"].as_str().unwrap().to_string()
    }
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = body.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&body[..line_end]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = line_end + 2;
        out.extend_from_slice(&body[start..start + size]);
        body = &body[start + size + 2..];
    }
    out
}

/// The JSON configuration blocks embedded in a YAML file: the lines indented
/// under a line ending in `value: |` (Envoy) or `config:` / `pluginConfig:` (Kong,
/// Istio), which this project writes as JSON so tests can read them.
pub fn embedded_filter_configs(yaml: &str) -> Vec<serde_json::Value> {
    let lines: Vec<&str> = yaml.lines().collect();
    let mut configs = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim_end();
        let opens =
            trimmed.ends_with("value: |") || trimmed.ends_with(" config:") || trimmed.ends_with("pluginConfig:");
        if !opens || trimmed.trim_start().starts_with('#') {
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        let block: Vec<&str> = lines[i + 1..]
            .iter()
            .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > indent)
            .copied()
            .collect();
        let text = block.join("\n");
        if text.trim_start().starts_with('{') {
            configs.push(
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("embedded config is not JSON ({e}):\n{text}")),
            );
        }
    }
    configs
}
