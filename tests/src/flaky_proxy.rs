//! A TCP proxy on 127.0.0.1 that cuts connections after a number of bytes
//! from the server, a limited number of times: a network that drops a long
//! download midway.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

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
