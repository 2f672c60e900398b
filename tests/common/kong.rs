//! Kong's Wasm engine (ngx_wasm_module in nginx, as Kong 3.10 embeds it) from
//! `../shared/kong-engine`, driven through its `run-filter.sh`: the gate on one
//! port, an echo upstream on the next, an optional admin configuration on the
//! third, `worker_processes` as asked. Test files mark their tests
//! `#[cfg_attr(not(kong_engine), ignore = ...)]` (build.rs sets the cfg when the
//! engine is there), so a machine without it reports them as ignored.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use super::{free_port, repo_root, wait_until, wasm_path, Scratch};

pub fn engine_dir() -> PathBuf {
    repo_root().join("../shared/kong-engine")
}

/// Which engine binary: Kong 3.8-3.10's, or the one with Kong 3.4-3.7's metric stubs.
#[derive(Clone, Copy)]
pub enum Engine {
    Current,
    Kong34To37,
}

pub struct Kong {
    scratch: Scratch,
    pub port: u16,
    pub echo: u16,
    pub admin: u16,
    engine: Engine,
    workers: u32,
    extra: Vec<String>,
}

/// Three consecutive free ports (run-filter.sh uses PORT, PORT+1, PORT+2).
fn three_ports() -> u16 {
    loop {
        let first = free_port();
        if free_port() == first + 1 && free_port() == first + 2 {
            return first;
        }
    }
}

impl Kong {
    pub fn start(name: &str, gate: &serde_json::Value, admin: Option<&serde_json::Value>, workers: u32) -> Kong {
        Kong::start_with(name, Engine::Current, gate, admin, workers)
    }

    pub fn start_with(
        name: &str,
        engine: Engine,
        gate: &serde_json::Value,
        admin: Option<&serde_json::Value>,
        workers: u32,
    ) -> Kong {
        Kong::start_args(name, engine, gate, admin, workers, &[])
    }

    /// With more `run-filter.sh` options (e.g. `--upstream-uri`).
    pub fn start_args(
        name: &str,
        engine: Engine,
        gate: &serde_json::Value,
        admin: Option<&serde_json::Value>,
        workers: u32,
        extra: &[&str],
    ) -> Kong {
        let kong = Kong::prepare(name, engine, workers, extra);
        let output = kong.command(gate, admin, &[]).output().expect("run-filter.sh runs");
        assert!(
            output.status.success(),
            "Kong's engine did not start:\n{}\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            kong.error_log()
        );
        kong
    }

    /// Starts in the background, for starts that are meant to fail: the caller
    /// reads the error log (run-filter.sh itself would wait for a port that a
    /// failed worker never answers on).
    pub fn spawn(name: &str, gate: &serde_json::Value, workers: u32) -> (Kong, std::process::Child) {
        let kong = Kong::prepare(name, Engine::Current, workers, &[]);
        let child = kong
            .command(gate, None, &[])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("run-filter.sh runs");
        (kong, child)
    }

    fn prepare(name: &str, engine: Engine, workers: u32, extra: &[&str]) -> Kong {
        let port = three_ports();
        Kong {
            scratch: Scratch::new(&format!("kong-{name}")),
            port,
            echo: port + 1,
            admin: port + 2,
            engine,
            workers,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn run(&self, gate: &serde_json::Value, admin: Option<&serde_json::Value>, extra: &[&str]) -> std::process::Output {
        self.command(gate, admin, extra).output().expect("run-filter.sh runs")
    }

    fn command(&self, gate: &serde_json::Value, admin: Option<&serde_json::Value>, extra: &[&str]) -> Command {
        let mut command = Command::new(engine_dir().join("run-filter.sh"));
        command
            .env("KONG_ENGINE_PORT", self.port.to_string())
            .arg("--prefix")
            .arg(&self.scratch.0)
            .args(["--workers", &self.workers.to_string()]);
        // The zone's size, unless the test sets it (`--shm-kv` in `extra`).
        if !self.extra.iter().any(|arg| arg == "--shm-kv") {
            command.args(["--shm-kv", "devportal:64m"]);
        }
        if let Engine::Kong34To37 = self.engine {
            command.arg("--nginx").arg(engine_dir().join("bin/nginx-kong-3.4-3.7"));
        }
        if let Some(admin) = admin {
            command.args(["--admin-config", &admin.to_string()]);
        }
        command
            .args(&self.extra)
            .args(extra)
            .arg(wasm_path())
            .arg("devportal_gate")
            .arg(gate.to_string());
        command
    }

    /// `nginx -s reload`, as `kong reload` sends it: new workers, new configuration.
    pub fn reload(&self, gate: &serde_json::Value, admin: Option<&serde_json::Value>) {
        let output = self.run(gate, admin, &["--reload"]);
        assert!(output.status.success(), "reload failed:\n{}", self.error_log());
    }

    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.scratch.0.join("logs/error.log")).unwrap_or_default()
    }

    /// One line per request the echo upstream received.
    pub fn upstream_log(&self) -> String {
        std::fs::read_to_string(self.scratch.0.join("logs/upstream.log")).unwrap_or_default()
    }

    /// Fails the test if a worker crashed or the filter panicked.
    pub fn assert_no_crash(&self) {
        let log = self.error_log();
        for sign in ["exited on signal", "panicked", "panic", "wasm trap", "[emerg]"] {
            assert!(!log.contains(sign), "{sign:?} in Kong's error log:\n{log}");
        }
    }

    pub fn wait_log(&self, what: &str, needle: &str) {
        wait_until(what, Duration::from_secs(10), || self.error_log().contains(needle));
    }
}

impl Drop for Kong {
    fn drop(&mut self) {
        let _ = Command::new(engine_dir().join("run-filter.sh"))
            .arg("--stop")
            .arg("--prefix")
            .arg(&self.scratch.0)
            .output();
        if std::thread::panicking() {
            eprintln!("----- Kong's error log -----\n{}\n----- end -----", self.error_log());
        }
    }
}

/// Another address whose record lives in `victim`'s bucket: the same entry in
/// Kong's `shm_kv`, found by trying.
pub fn bucket_mate(victim: &str) -> String {
    use devportal_gate::directory::bucket::index;
    let wanted = index(victim);
    (0u64..)
        .map(|i| format!("mate{i}@example.net"))
        .find(|candidate| index(candidate) == wanted)
        .unwrap()
}

/// An address whose per-developer key (`<namespace>/dev/<address>`, the layout
/// before buckets) has the same
/// CRC-32 as `victim`'s: the key Kong's engine would confuse with it. CRC-32 is
/// affine over GF(2), so 48 letters that are each `a` or `c` give enough
/// independent bit flips to hit any value; solved by Gaussian elimination.
pub fn colliding_address(namespace: &str, victim: &str, local_prefix: &str, domain: &str) -> String {
    let key_prefix = format!("{namespace}/dev/");
    let target = crc32(format!("{key_prefix}{victim}").as_bytes());
    const CHOICES: usize = 48;
    let message = |bits: u64| -> String {
        let choices: String = (0..CHOICES)
            .map(|i| if bits >> i & 1 == 1 { 'c' } else { 'a' })
            .collect();
        format!("{key_prefix}{local_prefix}{choices}@{domain}")
    };
    let base = crc32(message(0).as_bytes());
    // Basis over GF(2)^32: pivot bit -> (vector, which choices make it).
    let mut basis: [(u32, u64); 32] = [(0, 0); 32];
    for i in 0..CHOICES {
        let mut vector = crc32(message(1 << i).as_bytes()) ^ base;
        let mut combination = 1u64 << i;
        for bit in (0..32).rev() {
            if vector >> bit & 1 == 0 {
                continue;
            }
            if basis[bit].0 == 0 {
                basis[bit] = (vector, combination);
                break;
            }
            vector ^= basis[bit].0;
            combination ^= basis[bit].1;
        }
    }
    let (mut want, mut bits) = (base ^ target, 0u64);
    for bit in (0..32).rev() {
        if want >> bit & 1 == 1 {
            assert_ne!(basis[bit].0, 0, "the choices do not span bit {bit}");
            want ^= basis[bit].0;
            bits ^= basis[bit].1;
        }
    }
    let address = message(bits);
    assert_eq!(crc32(address.as_bytes()), target);
    address[key_prefix.len()..].to_string()
}

/// CRC-32 (IEEE 802.3, as zlib and nginx's `ngx_crc32_long`).
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
