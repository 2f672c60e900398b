//! A TCP proxy that stands for the network between the gateways and one etcd
//! member, and can be cut: while cut, no byte passes either way and new
//! connections are accepted but not carried (as when packets are dropped:
//! nothing is refused, calls just hang until their timeout). Healing lets the
//! held bytes through, as TCP's retransmissions would. Loopback only; its
//! threads end with the test process.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

pub struct CutProxy {
    pub port: u16,
    cut: Arc<AtomicBool>,
}

const POLL: Duration = Duration::from_millis(20);

impl CutProxy {
    pub fn start(target_port: u16) -> CutProxy {
        let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let cut_in = cut.clone();
        thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let cut = cut_in.clone();
                thread::spawn(move || {
                    // A connection made during the cut reaches the member only
                    // once the network is back.
                    while cut.load(Ordering::SeqCst) {
                        thread::sleep(POLL);
                    }
                    let Ok(server) = TcpStream::connect(("127.0.0.1", target_port)) else {
                        return;
                    };
                    let (client_in, server_in) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                    let cut_back = cut.clone();
                    thread::spawn(move || pipe(client_in, server, cut));
                    pipe(server_in, client, cut_back);
                });
            }
        });
        CutProxy { port, cut }
    }

    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
    }

    pub fn heal(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

/// Copies `from` to `to`, holding whatever it read while the network is cut.
fn pipe(mut from: TcpStream, mut to: TcpStream, cut: Arc<AtomicBool>) {
    let _ = from.set_read_timeout(Some(POLL));
    let mut buffer = [0u8; 16 * 1024];
    loop {
        while cut.load(Ordering::SeqCst) {
            thread::sleep(POLL);
        }
        match from.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => {
                while cut.load(Ordering::SeqCst) {
                    thread::sleep(POLL);
                }
                if to.write_all(&buffer[..n]).is_err() {
                    break;
                }
            }
            Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}
