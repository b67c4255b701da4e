//! A TCP proxy on 127.0.0.1 that cuts connections after a number of bytes
//! from the server, a limited number of times: a network that drops a long
//! download midway. [`DyingProxy`]: a store that dies midway for good.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct FlakyProxy {
    pub port: u16,
    cuts_left: Arc<AtomicU32>,
}

impl FlakyProxy {
    /// Forwards to `upstream`; the first `cuts` connections whose responses
    /// pass `cut_after` bytes are cut there.
    pub fn start(upstream: u16, cut_after: u64, cuts: u32) -> FlakyProxy {
        FlakyProxy::start_to("127.0.0.1", upstream, cut_after, cuts)
    }

    /// [`FlakyProxy::start`] for an upstream on another loopback address.
    pub fn start_to(host: &str, upstream: u16, cut_after: u64, cuts: u32) -> FlakyProxy {
        let host = host.to_string();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let cuts_left = Arc::new(AtomicU32::new(cuts));
        let budget = Arc::clone(&cuts_left);
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect((host.as_str(), upstream)) else {
                    continue;
                };
                let budget = Arc::clone(&budget);
                std::thread::spawn(move || relay(client, server, cut_after, &budget));
            }
        });
        FlakyProxy { port, cuts_left }
    }

    /// Like [`FlakyProxy::start_to`], but counts what the client sends: the
    /// first `cuts` connections whose requests pass `cut_after` bytes are
    /// cut there (an upload that loses its connection midway).
    pub fn start_cutting_requests(
        host: &str,
        upstream: u16,
        cut_after: u64,
        cuts: u32,
    ) -> FlakyProxy {
        let host = host.to_string();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let cuts_left = Arc::new(AtomicU32::new(cuts));
        let budget = Arc::clone(&cuts_left);
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect((host.as_str(), upstream)) else {
                    continue;
                };
                let budget = Arc::clone(&budget);
                // The same relay with the roles of the two ends swapped.
                std::thread::spawn(move || relay(server, client, cut_after, &budget));
            }
        });
        FlakyProxy { port, cuts_left }
    }

    pub fn cuts_made(&self, planned: u32) -> u32 {
        planned - self.cuts_left.load(Ordering::SeqCst)
    }
}

fn relay(client: TcpStream, server: TcpStream, cut_after: u64, budget: &AtomicU32) {
    let (Ok(mut client_in), Ok(mut server_out)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut client_in, &mut server_out);
        let _ = server_out.shutdown(Shutdown::Write);
    });
    let (mut from_server, mut to_client) = (server, client);
    let mut sent = 0u64;
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match from_server.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if to_client.write_all(&buf[..n]).is_err() {
            break;
        }
        sent += n as u64;
        if sent > cut_after
            && budget
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |c| c.checked_sub(1))
                .is_ok()
        {
            break;
        }
    }
    let _ = to_client.shutdown(Shutdown::Both);
    let _ = from_server.shutdown(Shutdown::Both);
}

/// A proxy that forwards until `after` bytes have passed (both ways, over
/// all its connections), then dies like a killed store: every connection is
/// cut at once and new ones are refused (the listener is closed).
pub struct DyingProxy {
    pub port: u16,
    state: Arc<Dying>,
}

struct Dying {
    after: u64,
    /// Freeze instead of dying: connections stay open, new ones are
    /// accepted, and nothing is forwarded any more (a hung store).
    freeze: bool,
    /// Dropped: the accept loop ends and every connection is closed.
    closed: AtomicBool,
    moved: AtomicU64,
    dead: AtomicBool,
    died_at: Mutex<Option<Instant>>,
    streams: Mutex<Vec<TcpStream>>,
}

impl Dying {
    fn die(&self) {
        if self.dead.swap(true, Ordering::SeqCst) {
            return;
        }
        *self.died_at.lock().expect("lock") = Some(Instant::now());
        if self.freeze {
            return;
        }
        self.close();
    }

    fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        for s in self.streams.lock().expect("lock").drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

impl DyingProxy {
    /// Listens on `listen` (host, port; port 0 for any) and forwards to
    /// `upstream` until `after` bytes have passed.
    pub fn start(listen: (&str, u16), upstream: (&str, u16), after: u64) -> DyingProxy {
        DyingProxy::start_with(listen, upstream, after, false)
    }

    /// Like [`DyingProxy::start`], but after `after` bytes the store hangs
    /// rather than dies: connections are accepted and never answered.
    pub fn start_freezing(listen: (&str, u16), upstream: (&str, u16), after: u64) -> DyingProxy {
        DyingProxy::start_with(listen, upstream, after, true)
    }

    fn start_with(
        listen: (&str, u16),
        upstream: (&str, u16),
        after: u64,
        freeze: bool,
    ) -> DyingProxy {
        let listener = TcpListener::bind(listen).expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let state = Arc::new(Dying {
            after,
            freeze,
            closed: AtomicBool::new(false),
            moved: AtomicU64::new(0),
            dead: AtomicBool::new(false),
            died_at: Mutex::new(None),
            streams: Mutex::new(Vec::new()),
        });
        let (host, upstream_port) = (upstream.0.to_string(), upstream.1);
        let shared = Arc::clone(&state);
        std::thread::spawn(move || {
            // Polled, so the listener is closed (and connections refused)
            // as soon as the proxy dies.
            while !shared.closed.load(Ordering::SeqCst) {
                let client = match listener.accept() {
                    Ok((client, _)) => client,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                    Err(_) => continue,
                };
                let _ = client.set_nonblocking(false);
                if shared.dead.load(Ordering::SeqCst) {
                    // Frozen: hold the connection open, answer nothing.
                    shared.streams.lock().expect("lock").push(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect((host.as_str(), upstream_port)) else {
                    continue;
                };
                {
                    let mut streams = shared.streams.lock().expect("lock");
                    for s in [&client, &server] {
                        if let Ok(clone) = s.try_clone() {
                            streams.push(clone);
                        }
                    }
                }
                for (from, to) in [(&client, &server), (&server, &client)] {
                    let (Ok(from), Ok(to)) = (from.try_clone(), to.try_clone()) else {
                        continue;
                    };
                    let state = Arc::clone(&shared);
                    std::thread::spawn(move || pump(from, to, &state));
                }
            }
        });
        DyingProxy { port, state }
    }

    /// When it died, if it has.
    pub fn died_at(&self) -> Option<Instant> {
        *self.state.died_at.lock().expect("lock")
    }
}

impl Drop for DyingProxy {
    fn drop(&mut self) {
        self.state.die();
        self.state.close();
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream, state: &Dying) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if state.dead.load(Ordering::SeqCst) || to.write_all(&buf[..n]).is_err() {
            break;
        }
        if state.moved.fetch_add(n as u64, Ordering::SeqCst) + n as u64 > state.after {
            state.die();
            break;
        }
    }
    if state.freeze && state.dead.load(Ordering::SeqCst) {
        // A hung store: the connection stays open (`streams` holds it) and
        // silent until the proxy is dropped.
        return;
    }
    let _ = to.shutdown(Shutdown::Write);
}
