//! A minimal HTTP/1.1 authorization service for Envoy's `ext_authz` (HTTP mode):
//! 200 with `x-developer-email` for an approved developer, 403 otherwise, from an
//! in-memory map. Std only, a thread per connection (Envoy keeps a few
//! connections open and reuses them), keep-alive, no request bodies.
//!
//! Usage: authz-service <port> <developers> — developers are `dev<i>@bench.example`
//! (status i % 4, 0 = approved) plus alice@example.com (approved) and
//! dave@example.com (revoked), as in the gate's benchmark configuration.
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;

fn main() {
    let mut args = std::env::args().skip(1);
    let port: u16 = args
        .next()
        .and_then(|p| p.parse().ok())
        .expect("usage: authz-service <port> <developers>");
    let size: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(2);
    let mut directory: HashMap<String, bool> = HashMap::with_capacity(size);
    directory.insert("alice@example.com".into(), true);
    directory.insert("dave@example.com".into(), false);
    for i in 0..size.saturating_sub(2) {
        directory.insert(format!("dev{i}@bench.example"), i % 4 == 0);
    }
    let directory = Arc::new(directory);
    let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind");
    println!("ready");
    for stream in listener.incoming().flatten() {
        let directory = Arc::clone(&directory);
        std::thread::spawn(move || serve(stream, &directory));
    }
}

fn serve(stream: TcpStream, directory: &HashMap<String, bool>) {
    let _ = stream.set_nodelay(true);
    let mut writer = match stream.try_clone() {
        Ok(writer) => writer,
        Err(_) => return,
    };
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    loop {
        // Request line, then headers up to the blank line.
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut developer: Option<String> = None;
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("x-consumer-username") {
                    developer = Some(value.trim().to_ascii_lowercase());
                }
            }
        }
        let approved = developer
            .as_ref()
            .and_then(|d| directory.get(d))
            .copied()
            .unwrap_or(false);
        let answer = match (approved, developer) {
            (true, Some(email)) => format!(
                "HTTP/1.1 200 OK\r\nx-developer-email: {email}\r\nx-developer-status: approved\r\ncontent-length: 0\r\n\r\n"
            ),
            _ => "HTTP/1.1 403 Forbidden\r\ncontent-type: application/json\r\ncontent-length: 21\r\n\r\n{\"status\":\"refused\"}\n".to_string(),
        };
        if writer.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}
