//! Headless Chromium driven over WebDriver (Debian's `chromium` and
//! `chromium-driver`), with a small client written against the W3C protocol:
//! enough to open pages, find, click and type, run a script, read alerts and
//! take screenshots. A failing test saves a screenshot and the browser's log.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{free_port, repo_root};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Browser {
    driver: Child,
    port: u16,
    session: String,
    name: String,
}

impl Browser {
    pub fn start(name: &str) -> Browser {
        let port = free_port();
        // Its own process group, so the browser it starts goes with it (Drop).
        let driver = Command::new("chromedriver")
            .process_group(0)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian's chromium-driver; make test installs it)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        let mut browser = Browser {
            driver,
            port,
            session: String::new(),
            name: name.to_string(),
        };
        let created = browser.call(
            "POST",
            "/session",
            Some(json!({"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:loggingPrefs": {"browser": "ALL"},
                "goog:chromeOptions": {
                    "binary": "/usr/bin/chromium",
                    "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900"]
                }
            }}})),
        );
        browser.session = created["sessionId"].as_str().expect("a WebDriver session").to_string();
        browser
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, answer) = self.raw(method, path, body);
        assert!(status < 400, "WebDriver {method} {path}: {status} {answer}");
        answer["value"].clone()
    }

    fn raw(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).unwrap();
        // Read to the end of the body by its length (chromedriver may keep the
        // connection open).
        let mut answer = Vec::new();
        let mut chunk = [0u8; 64 * 1024];
        let (head, text) = loop {
            let read = stream.read(&mut chunk).unwrap_or(0);
            answer.extend_from_slice(&chunk[..read]);
            if let Some(split) = answer.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&answer[..split]).to_ascii_lowercase();
                let body = &answer[split + 4..];
                let length = head
                    .split("\r\n")
                    .find_map(|line| line.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok());
                let chunked = head.contains("transfer-encoding: chunked");
                let complete = match length {
                    Some(length) => body.len() >= length,
                    None => !chunked || body.ends_with(b"0\r\n\r\n"),
                };
                if complete || read == 0 {
                    let text = String::from_utf8_lossy(body).to_string();
                    break (head, if chunked { dechunk(&text) } else { text });
                }
            }
            if read == 0 {
                break (String::new(), String::new());
            }
        };
        let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    fn session_path(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    pub fn open(&self, url: &str) {
        self.call("POST", &self.session_path("/url"), Some(json!({ "url": url })));
    }

    pub fn run(&self, script: &str, args: Value) -> Value {
        self.call(
            "POST",
            &self.session_path("/execute/sync"),
            Some(json!({"script": script, "args": args})),
        )
    }

    fn find(&self, css: &str) -> Option<String> {
        let (status, answer) = self.raw(
            "POST",
            &self.session_path("/element"),
            Some(json!({"using": "css selector", "value": css})),
        );
        (status == 200).then(|| answer["value"][ELEMENT].as_str().unwrap_or_default().to_string())
    }

    /// Waits (5 s at most) for `css` to exist and be displayed. The console
    /// re-renders its rows every second, so an element found may be replaced
    /// ("stale") before it is used: every use looks it up again.
    pub fn wait_for(&self, css: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(id) = self.find(css) {
                let (status, answer) = self.raw("GET", &self.session_path(&format!("/element/{id}/displayed")), None);
                if status == 200 && answer["value"] == json!(true) {
                    return id;
                }
            }
            if Instant::now() > deadline {
                self.save_evidence();
                panic!("{css} did not appear");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Does `act` on the element `css`, looking it up again while it goes stale.
    fn on_element(&self, css: &str, act: impl Fn(&str) -> (u16, Value)) -> Value {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let id = self.wait_for(css);
            let (status, answer) = act(&id);
            if status < 400 {
                return answer["value"].clone();
            }
            let stale = answer["value"]["error"] == "stale element reference";
            if !stale || Instant::now() > deadline {
                self.save_evidence();
                panic!("WebDriver on {css}: {status} {answer}");
            }
        }
    }

    /// Waits (`limit` at most) until the script returns true.
    pub fn wait_until(&self, what: &str, limit: Duration, script: &str) -> Duration {
        let started = Instant::now();
        loop {
            if self.run(script, json!([])) == json!(true) {
                return started.elapsed();
            }
            if started.elapsed() > limit {
                self.save_evidence();
                panic!("{what}: not within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn click(&self, css: &str) {
        self.on_element(css, |id| {
            self.raw(
                "POST",
                &self.session_path(&format!("/element/{id}/click")),
                Some(json!({})),
            )
        });
    }

    pub fn type_into(&self, css: &str, text: &str) {
        self.on_element(css, |id| {
            let cleared = self.raw(
                "POST",
                &self.session_path(&format!("/element/{id}/clear")),
                Some(json!({})),
            );
            if cleared.0 >= 400 {
                return cleared;
            }
            self.raw(
                "POST",
                &self.session_path(&format!("/element/{id}/value")),
                Some(json!({ "text": text })),
            )
        });
    }

    pub fn text(&self, css: &str) -> String {
        self.on_element(css, |id| {
            self.raw("GET", &self.session_path(&format!("/element/{id}/text")), None)
        })
        .as_str()
        .unwrap_or_default()
        .to_string()
    }

    /// The text of an open alert, if a script managed to raise one.
    pub fn alert(&self) -> Option<String> {
        let (status, answer) = self.raw("GET", &self.session_path("/alert/text"), None);
        (status == 200).then(|| answer["value"].as_str().unwrap_or_default().to_string())
    }

    /// Answers the page's `window.prompt` with `text` (waits for it first).
    pub fn answer_prompt(&self, text: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while self.alert().is_none() {
            assert!(std::time::Instant::now() < deadline, "no prompt appeared");
            std::thread::sleep(Duration::from_millis(50));
        }
        self.call(
            "POST",
            &self.session_path("/alert/text"),
            Some(serde_json::json!({"text": text})),
        );
        self.call("POST", &self.session_path("/alert/accept"), Some(serde_json::json!({})));
    }

    pub fn screenshot(&self, path: &std::path::Path) {
        let png = self.call("GET", &self.session_path("/screenshot"), None);
        let bytes = devportal_b64_decode(png.as_str().unwrap_or_default());
        std::fs::write(path, bytes).unwrap();
    }

    /// Saves a screenshot and the browser's console log under target/e2e.
    pub fn save_evidence(&self) {
        let dir = repo_root().join("target/e2e");
        let _ = std::fs::create_dir_all(&dir);
        let shot = dir.join(format!("{}-failure.png", self.name));
        let (status, png) = self.raw("GET", &self.session_path("/screenshot"), None);
        if status == 200 {
            let _ = std::fs::write(&shot, devportal_b64_decode(png["value"].as_str().unwrap_or_default()));
        }
        let (_, log) = self.raw("POST", &self.session_path("/se/log"), Some(json!({"type": "browser"})));
        let log_path = dir.join(format!("{}-browser.log", self.name));
        let _ = std::fs::write(&log_path, serde_json::to_string_pretty(&log).unwrap_or_default());
        eprintln!("browser evidence: {} and {}", shot.display(), log_path.display());
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if std::thread::panicking() && !self.session.is_empty() {
            self.save_evidence();
        }
        if !self.session.is_empty() {
            let _ = self.raw("DELETE", &self.session_path(""), None);
        }
        // chromedriver and every Chromium process it started: one process group.
        let _ = Command::new("kill")
            .args(["-TERM", "--", &format!("-{}", self.driver.id())])
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn dechunk(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 || after.len() < size {
            break;
        }
        out.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    out
}

fn devportal_b64_decode(text: &str) -> Vec<u8> {
    devportal_gate::encoding::base64::decode(devportal_gate::encoding::base64::Alphabet::Standard, text)
        .unwrap_or_default()
}
