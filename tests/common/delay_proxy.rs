//! A TCP proxy in front of etcd that can hold back the answer to the next etcd
//! transaction (`POST /v3/kv/txn`) past the gateway's timeout: etcd commits the
//! write, the gateway never hears back. HTTP/1.1 only, loopback only, and it
//! stops with the test process.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

pub struct DelayProxy {
    pub port: u16,
    armed: Arc<AtomicBool>,
    delay_ms: Arc<AtomicU64>,
}

impl DelayProxy {
    pub fn start(target_port: u16) -> DelayProxy {
        let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let armed = Arc::new(AtomicBool::new(false));
        let delay_ms = Arc::new(AtomicU64::new(0));
        let (armed_in, delay_in) = (armed.clone(), delay_ms.clone());
        thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(("127.0.0.1", target_port)) else {
                    continue;
                };
                let hold = Arc::new(AtomicU64::new(0));
                pipe(
                    client.try_clone().unwrap(),
                    server.try_clone().unwrap(),
                    Some((armed_in.clone(), delay_in.clone(), hold.clone())),
                    None,
                );
                pipe(server, client, None, Some((hold, armed_in.clone())));
            }
        });
        DelayProxy { port, armed, delay_ms }
    }

    /// Holds the answer to the next transaction back by `delay`.
    pub fn delay_next_txn(&self, delay: Duration) {
        self.delay_ms.store(delay.as_millis() as u64, Ordering::SeqCst);
        self.armed.store(true, Ordering::SeqCst);
    }

    pub fn armed(&self) -> bool {
        self.armed.load(Ordering::SeqCst)
    }
}

/// Copies `from` to `to`. Requests: when armed and a transaction passes, the
/// connection's answers are held (`hold`). Answers: wait out the hold first.
fn pipe(
    mut from: TcpStream,
    mut to: TcpStream,
    watch: Option<(Arc<AtomicBool>, Arc<AtomicU64>, Arc<AtomicU64>)>,
    hold: Option<(Arc<AtomicU64>, Arc<AtomicBool>)>,
) {
    thread::spawn(move || {
        let mut buffer = [0u8; 64 * 1024];
        loop {
            let read = match from.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(read) => read,
            };
            let chunk = &buffer[..read];
            let mut holding = false;
            if let Some((armed, delay, hold)) = &watch {
                let is_txn = chunk.windows(15).any(|w| w == b"POST /v3/kv/txn");
                if is_txn && armed.swap(false, Ordering::SeqCst) {
                    hold.store(delay.load(Ordering::SeqCst), Ordering::SeqCst);
                    holding = true;
                }
            }
            if let Some((hold, _)) = &hold {
                let ms = hold.swap(0, Ordering::SeqCst);
                if ms > 0 {
                    thread::sleep(Duration::from_millis(ms));
                }
            }
            if to.write_all(chunk).is_err() {
                // The transaction never reached etcd (a connection etcd had
                // closed): hold the next one instead.
                if let (true, Some((armed, _, hold))) = (holding, &watch) {
                    hold.store(0, Ordering::SeqCst);
                    armed.store(true, Ordering::SeqCst);
                }
                break;
            }
        }
        // etcd closed the connection before answering a held transaction: it
        // may never have arrived, so hold the next one instead.
        if let Some((hold, armed)) = &hold {
            if hold.swap(0, Ordering::SeqCst) > 0 {
                armed.store(true, Ordering::SeqCst);
            }
        }
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}
