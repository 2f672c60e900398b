//! Fixed-rate HTTP/1.1 load: `loadgen <port> <requests/s> <seconds> <connections> [header: value]`.
//! Each connection sends on its own fixed schedule (rate / connections), and a
//! request's latency counts from when it was due, not when it could be sent, so
//! a stall shows in the percentiles instead of hiding (no coordinated omission).
//! Prints one JSON line: requests, non_2xx, p50_us, p99_us, max_us.
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        eprintln!("usage: loadgen <port> <requests/s> <seconds> <connections> [header: value]");
        std::process::exit(2);
    }
    let port: u16 = args[1].parse().expect("port");
    let rate: f64 = args[2].parse().expect("rate");
    let seconds: f64 = args[3].parse().expect("seconds");
    let connections: usize = args[4].parse().expect("connections");
    let header = args.get(5).map(|h| format!("{h}\r\n")).unwrap_or_default();
    let request = format!("GET /api/orders HTTP/1.1\r\nhost: bench\r\n{header}\r\n").into_bytes();
    let interval = Duration::from_secs_f64(connections as f64 / rate);
    let start = Instant::now() + Duration::from_millis(50);
    let end = start + Duration::from_secs_f64(seconds);
    let workers: Vec<_> = (0..connections)
        .map(|i| {
            let request = request.clone();
            std::thread::spawn(move || {
                let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
                stream.set_nodelay(true).ok();
                let mut latencies = Vec::new();
                let mut non_2xx = 0u64;
                let mut buffer = vec![0u8; 64 * 1024];
                // Spread the connections' schedules over one interval.
                let mut due = start + interval.mul_f64(i as f64 / connections as f64);
                while due < end {
                    let now = Instant::now();
                    if due > now {
                        std::thread::sleep(due - now);
                    }
                    stream.write_all(&request).expect("write");
                    let status = read_response(&mut stream, &mut buffer);
                    latencies.push(due.elapsed().as_micros() as u64);
                    if !(200..300).contains(&status) {
                        non_2xx += 1;
                    }
                    due += interval;
                }
                (latencies, non_2xx)
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut non_2xx = 0;
    for worker in workers {
        let (latencies, errors) = worker.join().expect("worker");
        all.extend(latencies);
        non_2xx += errors;
    }
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    println!(
        "{{\"requests\":{},\"non_2xx\":{},\"p50_us\":{},\"p99_us\":{},\"max_us\":{}}}",
        all.len(),
        non_2xx,
        pct(0.50),
        pct(0.99),
        all.last().copied().unwrap_or(0)
    );
}

/// Reads one response (headers and a Content-Length body); returns its status.
fn read_response(stream: &mut TcpStream, buffer: &mut [u8]) -> u16 {
    let mut filled = 0;
    loop {
        let read = stream.read(&mut buffer[filled..]).expect("read");
        assert!(read > 0, "connection closed");
        filled += read;
        let Some(end) = buffer[..filled].windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buffer[..end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        if filled >= end + 4 + length {
            return head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        }
    }
}
