use std::net::TcpListener;
use std::sync::atomic::{AtomicU16, Ordering};

/// Hands out ports that are free now, never the same one twice in a process
/// (tests run in parallel), scanning from a per-process offset so parallel
/// test binaries rarely collide either.
pub fn free_port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    if NEXT.load(Ordering::SeqCst) == 0 {
        let start = 20_000 + (std::process::id() % 400) as u16 * 20;
        let _ = NEXT.compare_exchange(0, start, Ordering::SeqCst, Ordering::SeqCst);
    }
    loop {
        let port = NEXT.fetch_add(1, Ordering::SeqCst);
        assert!(port < 60_000, "ran out of ports");
        if port_is_free(port) {
            return port;
        }
    }
}

pub fn port_is_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}
