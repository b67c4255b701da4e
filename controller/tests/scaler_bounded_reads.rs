//! The scaler's Prometheus reads against a hostile server on loopback: an
//! endless body, a huge announced one, one that trickles. Each must end in
//! an error of that metric, quickly, having read no more than the limit.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use vertice_controller::scaler::decide::PromResult;
use vertice_controller::scaler::prometheus::{query, QueryLimits};
use vertice_crds::scaler::PrometheusServer;

const LIMIT: usize = 1024 * 1024;

#[derive(Clone, Copy)]
enum Answer {
    /// Chunked, never ending.
    Endless,
    /// Content-Length of 700 MiB, then data until the client goes.
    Announced,
    /// One byte a second.
    Trickle,
    /// A proper answer, its length given.
    Small,
}

/// Serves `answer` to every connection; counts the body bytes it got out.
async fn serve(answer: Answer) -> (String, Arc<AtomicU64>, Arc<std::sync::Mutex<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!(
        "http://alice:hunter2@{}",
        listener.local_addr().expect("addr")
    );
    let sent = Arc::new(AtomicU64::new(0));
    let request_line = Arc::new(std::sync::Mutex::new(String::new()));
    let (count, seen) = (sent.clone(), request_line.clone());
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let (count, seen) = (count.clone(), seen.clone());
            tokio::spawn(async move {
                let mut head = vec![0u8; 8192];
                let n = socket.read(&mut head).await.unwrap_or(0);
                let text = String::from_utf8_lossy(&head[..n]).to_string();
                if let Ok(mut s) = seen.lock() {
                    *s = text.lines().next().unwrap_or_default().to_string();
                }
                let chunk = vec![b' '; 64 * 1024];
                let result: std::io::Result<()> = async {
                    match answer {
                        Answer::Endless => {
                            socket
                                .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
                                .await?;
                            loop {
                                socket
                                    .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                                    .await?;
                                socket.write_all(&chunk).await?;
                                socket.write_all(b"\r\n").await?;
                                count.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                            }
                        }
                        Answer::Announced => {
                            socket
                                .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 734003200\r\n\r\n")
                                .await?;
                            loop {
                                socket.write_all(&chunk).await?;
                                count.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                            }
                        }
                        Answer::Trickle => {
                            socket
                                .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n")
                                .await?;
                            loop {
                                socket.write_all(b" ").await?;
                                count.fetch_add(1, Ordering::Relaxed);
                                tokio::time::sleep(Duration::from_secs(1)).await;
                            }
                        }
                        Answer::Small => {
                            let body = br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1764669600,"42"]}]}}"#;
                            socket
                                .write_all(format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes())
                                .await?;
                            socket.write_all(body).await?;
                            count.fetch_add(body.len() as u64, Ordering::Relaxed);
                            Ok(())
                        }
                    }
                }
                .await;
                drop(result);
            });
        }
    });
    (url, sent, request_line)
}

fn limits() -> QueryLimits {
    QueryLimits {
        max_bytes: LIMIT,
        timeout: Duration::from_secs(2),
    }
}

async fn ask(url: &str) -> Result<PromResult, String> {
    let server = PrometheusServer {
        url: url.to_string(),
        bearer_token_secret_ref: None,
    };
    let http = reqwest::Client::new();
    query(&http, &server, Some("tok"), "sum(up)", limits()).await
}

#[tokio::test]
async fn an_endless_body_is_cut_at_the_limit() {
    let (url, sent, _) = serve(Answer::Endless).await;
    // The limit ends it, not the timeout: the error says which.
    let result = ask(&url).await;
    match result {
        Ok(PromResult::Error(e)) => assert_eq!(
            e,
            "Prometheus answer exceeds 1048576 bytes (the administrator's \
             --max-metric-response-bytes); make the query return fewer series, e.g. sum() it"
        ),
        other => panic!("{other:?}"),
    }
    // The client stopped reading: what the server got out is the limit
    // plus what socket buffers hold, nowhere near an endless answer.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let out = sent.load(Ordering::Relaxed);
    assert!(out < 64 * 1024 * 1024, "{out} bytes sent");
}

#[tokio::test]
async fn a_huge_announced_length_is_refused_unread() {
    let (url, _, _) = serve(Answer::Announced).await;
    match ask(&url).await {
        Ok(PromResult::Error(e)) => {
            assert!(
                e.starts_with("Prometheus answer exceeds 1048576 bytes"),
                "{e}"
            )
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_trickling_body_ends_at_the_timeout_without_credentials_in_the_error() {
    let (url, _, _) = serve(Answer::Trickle).await;
    let started = Instant::now();
    let result = ask(&url).await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(4),
        "{took:?}"
    );
    let e = result.expect_err("a transport failure");
    assert!(e.contains("no complete answer within 2s"), "{e}");
    assert!(!e.contains("hunter2") && !e.contains("alice:"), "{e}");
    assert!(e.contains("http://***@127.0.0.1:"), "{e}");
}

#[tokio::test]
async fn a_small_answer_is_read_and_the_timeout_is_passed_on() {
    let (url, _, request_line) = serve(Answer::Small).await;
    match ask(&url).await {
        Ok(PromResult::Value { value, .. }) => assert_eq!(value, 42.0),
        other => panic!("{other:?}"),
    }
    let line = request_line.lock().expect("lock").clone();
    assert!(
        line.starts_with("GET /api/v1/query?query=sum%28up%29&timeout=2s "),
        "{line}"
    );
}
