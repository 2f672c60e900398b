//! A webhook receiver for the event tests: an HTTP/1.1 server on loopback that
//! checks every delivery's Standard Webhooks signature with its own code (not
//! the filter's), records what arrived, and answers as the test scripts it:
//! a number of refusals first, or not listening at all while "down".

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

/// Standard Webhooks' tolerance for the timestamp.
pub const TOLERANCE_S: u64 = 300;

#[derive(Clone, Debug)]
pub struct Delivery {
    pub id: String,
    pub event: Value,
    /// The answer given (2xx: accepted).
    pub answered: u16,
    pub content_type: String,
    pub arrived: std::time::Instant,
}

#[derive(Default)]
struct State {
    deliveries: Vec<Delivery>,
    refusals: VecDeque<u16>,
    rejected_signatures: Vec<String>,
}

pub struct Receiver {
    pub port: u16,
    key: Vec<u8>,
    state: Arc<Mutex<State>>,
    down: Arc<AtomicBool>,
    listening: Arc<Mutex<Option<thread::JoinHandle<()>>>>,
}

impl Receiver {
    /// `secret` in `whsec_` form.
    pub fn start(secret: &str) -> Receiver {
        let key = decode_secret(secret);
        let port = super::free_port();
        let receiver = Receiver {
            port,
            key,
            state: Arc::new(Mutex::new(State::default())),
            down: Arc::new(AtomicBool::new(false)),
            listening: Arc::new(Mutex::new(None)),
        };
        receiver.listen();
        receiver
    }

    fn listen(&self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let (key, state, down) = (self.key.clone(), self.state.clone(), self.down.clone());
        let handle = thread::spawn(move || {
            // Polls, so that going down closes the socket (connections refused).
            while !down.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (key, state, down) = (key.clone(), state.clone(), down.clone());
                        thread::spawn(move || serve(stream, &key, &state, &down));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        *self.listening.lock().unwrap() = Some(handle);
    }

    /// Stops listening: deliveries are refused at the TCP level.
    pub fn go_down(&self) {
        self.down.store(true, Ordering::SeqCst);
        if let Some(handle) = self.listening.lock().unwrap().take() {
            handle.join().unwrap();
        }
    }

    pub fn come_up(&self) {
        self.down.store(false, Ordering::SeqCst);
        self.listen();
    }

    /// The next `n` deliveries are answered `status`.
    pub fn refuse_next(&self, n: usize, status: u16) {
        self.state
            .lock()
            .unwrap()
            .refusals
            .extend(std::iter::repeat_n(status, n));
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        self.state.lock().unwrap().deliveries.clone()
    }

    /// Accepted deliveries, in arrival order.
    pub fn accepted(&self) -> Vec<Delivery> {
        self.deliveries()
            .into_iter()
            .filter(|d| (200..300).contains(&d.answered))
            .collect()
    }

    pub fn rejected_signatures(&self) -> Vec<String> {
        self.state.lock().unwrap().rejected_signatures.clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.down.store(true, Ordering::SeqCst);
    }
}

/// The demo's Envoy configuration (`filter-config/envoy/demo.yaml`) with
/// `events` in both filter configurations and a cluster `events_receiver` that
/// reaches the receiver on `port`.
pub fn demo_with_events(config: String, events: &Value, port: u16) -> String {
    let config = config.replace("\"directory\": {", &format!("\"events\": {events}, \"directory\": {{"));
    assert_eq!(
        config.matches("\"events\":").count(),
        2,
        "events in both filter configurations"
    );
    config.replacen(
        "  clusters:\n",
        &format!(
            "  clusters:\n  - name: events_receiver\n    type: STATIC\n    connect_timeout: 1s\n    load_assignment:\n      cluster_name: events_receiver\n      endpoints:\n      - lb_endpoints:\n        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }} }}\n"
        ),
        1,
    )
}

pub fn decode_secret(secret: &str) -> Vec<u8> {
    devportal_gate::encoding::base64::decode(
        devportal_gate::encoding::base64::Alphabet::Standard,
        secret.strip_prefix("whsec_").expect("whsec_ secret"),
    )
    .expect("base64 secret")
}

fn now_s() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// The Standard Webhooks check, written here from the specification: the
/// signed content is `id.timestamp.body`; any `v1,` signature of the header
/// must equal the HMAC-SHA256 under `key` (compared in constant time); the
/// timestamp must be within `TOLERANCE_S` of now.
pub fn verify(key: &[u8], id: &str, timestamp: &str, signatures: &str, body: &[u8]) -> Result<(), String> {
    let sent: u64 = timestamp
        .parse()
        .map_err(|_| format!("timestamp {timestamp:?} is not a number"))?;
    if sent.abs_diff(now_s()) > TOLERANCE_S {
        return Err(format!("timestamp {sent} is outside the tolerance"));
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    let expected = mac.finalize().into_bytes();
    for signature in signatures.split(' ') {
        let Some(encoded) = signature.strip_prefix("v1,") else {
            continue;
        };
        let Some(given) =
            devportal_gate::encoding::base64::decode(devportal_gate::encoding::base64::Alphabet::Standard, encoded)
        else {
            continue;
        };
        if given.len() == expected.len()
            && given.iter().zip(expected.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
        {
            return Ok(());
        }
    }
    Err("no signature matches".into())
}

fn serve(stream: TcpStream, key: &[u8], state: &Mutex<State>, down: &AtomicBool) {
    stream.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) => return,
            Ok(_) => {}
            Err(_) if !down.load(Ordering::SeqCst) => continue,
            Err(_) => return,
        }
        if line.trim().is_empty() {
            continue;
        }
        let mut headers = Vec::new();
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end().to_string();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
            }
        }
        let get = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let length: usize = get("content-length").parse().unwrap_or(0);
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        if down.load(Ordering::SeqCst) {
            return; // down: the connection closes unanswered
        }
        let id = get("webhook-id");
        let status = match verify(key, &id, &get("webhook-timestamp"), &get("webhook-signature"), &body) {
            Err(why) => {
                state.lock().unwrap().rejected_signatures.push(format!("{id}: {why}"));
                401
            }
            Ok(()) => {
                let mut state = state.lock().unwrap();
                let status = state.refusals.pop_front().unwrap_or(200);
                state.deliveries.push(Delivery {
                    id,
                    event: serde_json::from_slice(&body).unwrap_or(Value::Null),
                    answered: status,
                    content_type: get("content-type"),
                    arrived: std::time::Instant::now(),
                });
                status
            }
        };
        let answer = format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\n\r\n");
        if writer.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}
