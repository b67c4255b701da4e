//! Health endpoints for probe tests: an HTTP(S) server whose answer the test
//! sets (status, body, delay) and which can really stop listening and come
//! back on the same port; and a gRPC server with the standard health service.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

#[derive(Clone)]
struct Answer {
    status: u16,
    body: String,
    delay: Duration,
}

#[derive(Default)]
struct Seen {
    /// Request heads received, oldest first.
    requests: Vec<String>,
}

pub struct HealthTarget {
    pub port: u16,
    answer: Arc<Mutex<Answer>>,
    seen: Arc<Mutex<Seen>>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    task: Option<JoinHandle<()>>,
}

impl Drop for HealthTarget {
    fn drop(&mut self) {
        self.stop();
    }
}

impl HealthTarget {
    /// Plain HTTP on 127.0.0.1, answering 200 `{"status":"ok"}`.
    pub async fn start() -> HealthTarget {
        Self::start_with(None).await
    }

    /// HTTPS with a certificate for 127.0.0.1 signed by `pki`'s CA.
    pub async fn start_tls(cert: &std::path::Path, key: &std::path::Path) -> HealthTarget {
        Self::start_with(Some(crate::kube::certs::tls_acceptor(cert, key))).await
    }

    async fn start_with(tls: Option<tokio_rustls::TlsAcceptor>) -> HealthTarget {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let mut target = HealthTarget {
            port,
            answer: Arc::new(Mutex::new(Answer {
                status: 200,
                body: r#"{"status":"ok"}"#.into(),
                delay: Duration::ZERO,
            })),
            seen: Arc::default(),
            tls,
            task: None,
        };
        target.serve(listener);
        target
    }

    fn serve(&mut self, listener: TcpListener) {
        let (answer, seen, tls) = (self.answer.clone(), self.seen.clone(), self.tls.clone());
        self.task = Some(tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (answer, seen, tls) = (answer.clone(), seen.clone(), tls.clone());
                tokio::spawn(async move {
                    match tls {
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(tcp).await {
                                respond(stream, &answer, &seen).await;
                            }
                        }
                        None => respond(tcp, &answer, &seen).await,
                    }
                });
            }
        }));
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn url(&self, path: &str) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}{path}", self.port)
    }

    pub fn set(&self, status: u16, body: &str) {
        let mut a = self.answer.lock().expect("answer");
        a.status = status;
        a.body = body.to_string();
    }

    pub fn set_delay(&self, delay: Duration) {
        self.answer.lock().expect("answer").delay = delay;
    }

    /// The newest request head received.
    pub fn last_request(&self) -> Option<String> {
        self.seen.lock().expect("seen").requests.last().cloned()
    }

    pub fn requests(&self) -> usize {
        self.seen.lock().expect("seen").requests.len()
    }

    /// Stops listening: connections are refused, as when the server died.
    pub fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }

    /// Listens again on the same port.
    pub async fn resume(&mut self) {
        self.stop();
        let address: SocketAddr = self.address().parse().expect("address");
        let mut tries = 0;
        let listener = loop {
            match TcpListener::bind(address).await {
                Ok(l) => break l,
                Err(e) if tries < 50 => {
                    tries += 1;
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("rebinding {address}: {e}"),
            }
        };
        self.serve(listener);
    }
}

async fn respond<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    answer: &Mutex<Answer>,
    seen: &Mutex<Seen>,
) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    seen.lock()
        .expect("seen")
        .requests
        .push(String::from_utf8_lossy(&head).into_owned());
    let a = answer.lock().expect("answer").clone();
    tokio::time::sleep(a.delay).await;
    let response = format!(
        "HTTP/1.1 {} Status\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{}",
        a.status,
        a.body.len(),
        a.body
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// A gRPC server with `grpc.health.v1.Health`, on 127.0.0.1.
pub struct GrpcHealth {
    pub port: u16,
    pub reporter: tonic_health::server::HealthReporter,
    task: JoinHandle<()>,
}

impl Drop for GrpcHealth {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl GrpcHealth {
    /// The whole server SERVING; named services as the test sets them.
    pub async fn start() -> GrpcHealth {
        let (reporter, service) = tonic_health::server::health_reporter();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        let task = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(incoming)
                .await;
        });
        GrpcHealth {
            port,
            reporter,
            task,
        }
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}
