//! Resumable uploads over the JSON API, chunk by chunk, with one chunk in
//! memory until the service has it. Not the Google client's: after a PUT
//! that failed in transit it sends the *next* chunk at the failed one's
//! offset (googleapis/google-cloud-rust#6685, open), so one dropped
//! connection lost a chunk and the backup failed only at read-back, after
//! the whole upload. Here every failure is followed by asking the service
//! what it has (a status query) and sending again from there, within
//! `--store-retry-for`. Our own requests also carry the endpoint's port in
//! `Host`, so emulators that build session URLs from it work on any port.

use bytes::{Bytes, BytesMut};
use reqwest::{Method, StatusCode};
use tokio::io::AsyncRead;

use super::GcsStore;
use crate::store::multipart::{backoff, read_part, with_retries};
use crate::store::retry::{Outage, Verdict};
use crate::store::{Store, StoreError};

/// Non-final chunks must be multiples of this.
pub(super) const QUANTUM: usize = 256 * 1024;

/// What the service says about a session after a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    /// The object exists: the upload is complete.
    Done,
    /// This many bytes from the start are persisted; send the rest.
    Persisted(u64),
}

/// A failed request, and whether asking again can help.
struct Failed {
    error: StoreError,
    transient: bool,
}

/// `Content-Range` of `len` bytes at `offset`; `total` once the size is
/// known (the last chunk). No bytes: a status query (`bytes */*`), or the
/// end of an upload that ended on a chunk boundary (`bytes */TOTAL`).
fn content_range(offset: u64, len: usize, total: Option<u64>) -> String {
    let total = total.map_or_else(|| "*".to_string(), |t| t.to_string());
    match len {
        0 => format!("bytes */{total}"),
        n => format!("bytes {offset}-{}/{total}", offset + n as u64 - 1),
    }
}

/// How much a `308 Resume Incomplete` says is persisted: its `Range:
/// bytes=0-N` means N + 1 bytes; no `Range` means none.
fn persisted(range: Option<&str>) -> Result<u64, String> {
    let Some(range) = range else {
        return Ok(0);
    };
    range
        .strip_prefix("bytes=0-")
        .and_then(|n| n.trim().parse::<u64>().ok())
        .map(|last| last + 1)
        .ok_or_else(|| format!("the service answered with an unreadable Range {range:?}"))
}

impl GcsStore {
    /// Streams `body` into the new object `full_key`; `ifGenerationMatch=0`
    /// makes the service refuse an existing one. Returns the bytes written.
    pub(super) async fn upload_resumable(
        &self,
        key: &str,
        full_key: &str,
        body: &mut (dyn AsyncRead + Send + Unpin),
    ) -> Result<u64, StoreError> {
        let chunk = (self.multipart.base_part_size / QUANTUM).max(1) * QUANTUM;
        let session = self.start_session(key, full_key).await?;
        let outage = Outage::new(self.multipart.retry_for);
        // `pending`: the bytes from `offset` on that the service does not
        // have yet; at most one chunk.
        let (mut offset, mut pending, mut ended) = (0u64, Bytes::new(), false);
        loop {
            if !ended && pending.len() < chunk {
                let more = read_part(body, chunk - pending.len()).await?;
                ended = more.len() < chunk - pending.len();
                pending = if pending.is_empty() {
                    more
                } else {
                    let mut joined = BytesMut::with_capacity(pending.len() + more.len());
                    joined.extend_from_slice(&pending);
                    joined.extend_from_slice(&more);
                    joined.freeze()
                };
            }
            let total = ended.then(|| offset + pending.len() as u64);
            match self
                .exchange(&session, full_key, offset, &pending, total, &outage)
                .await?
            {
                Status::Done if total.is_some() => return Ok(offset + pending.len() as u64),
                Status::Done => {
                    return Err(self.request_error(format!(
                        "uploading {full_key}: the service finished the upload before its end"
                    )))
                }
                Status::Persisted(p) if p < offset || p > offset + pending.len() as u64 => {
                    return Err(self.request_error(format!(
                        "uploading {full_key}: the service reports {p} bytes persisted, {offset} before this chunk of {}",
                        pending.len()
                    )))
                }
                Status::Persisted(p) => {
                    if p > offset {
                        outage.progress();
                    }
                    pending = pending.slice((p - offset) as usize..);
                    offset = p;
                }
            }
        }
    }

    fn request_error(&self, detail: String) -> StoreError {
        StoreError::Request {
            store: self.describe(),
            detail,
        }
    }

    /// Opens a session; a retry after a lost answer only opens another one,
    /// which the service drops unused.
    async fn start_session(&self, key: &str, full_key: &str) -> Result<String, StoreError> {
        let url = format!(
            "{}/upload/storage/v1/b/{}/o?uploadType=resumable&ifGenerationMatch=0&name={}",
            self.endpoint,
            super::urlencode(&self.bucket),
            super::urlencode(full_key)
        );
        let what = format!("starting the upload of {full_key}");
        with_retries(&self.multipart, 0, || async {
            let response = self
                .http
                .post(&url)
                .headers(self.auth_headers().await?)
                .header("content-type", "application/json")
                .timeout(super::super::retry::idle_timeout(self.multipart.retry_for))
                .body("{}")
                .send()
                .await
                .map_err(|e| StoreError::Unreachable {
                    store: self.describe(),
                    detail: format!("{what}: {e}"),
                })?;
            let status = response.status();
            if status == StatusCode::PRECONDITION_FAILED {
                return Err(StoreError::AlreadyExists {
                    store: self.describe(),
                    key: key.to_string(),
                });
            }
            if !status.is_success() {
                let body = response.text().await.unwrap_or_default();
                let detail = format!("{what}: HTTP {status}: {}", cut(&body));
                return Err(super::status_error(
                    self.describe(),
                    &what,
                    Some(status.as_u16()),
                    detail,
                    true,
                ));
            }
            response
                .headers()
                .get("location")
                .and_then(|l| l.to_str().ok())
                .map(str::to_string)
                .ok_or_else(|| self.request_error(format!("{what}: no session URL in the answer")))
        })
        .await
    }

    /// Sends the chunk; after a failure asks what the service has, until
    /// one exchange succeeds or the allowance is spent. The caller sends
    /// again whatever the answer says is missing.
    async fn exchange(
        &self,
        session: &str,
        full_key: &str,
        offset: u64,
        data: &Bytes,
        total: Option<u64>,
        outage: &Outage,
    ) -> Result<Status, StoreError> {
        let mut failures = 0u32;
        let mut query = false;
        loop {
            let attempt = if query {
                // After a failure, ask: the chunk may have arrived, in part or whole.
                let range =
                    total.map_or_else(|| "bytes */*".to_string(), |t| format!("bytes */{t}"));
                self.session_put(session, full_key, range, Bytes::new())
                    .await
            } else {
                let range = content_range(offset, data.len(), total);
                self.session_put(session, full_key, range, data.clone())
                    .await
            };
            let failed = match attempt {
                Ok(status) => return Ok(status),
                Err(failed) if !failed.transient => return Err(failed.error),
                Err(failed) => failed.error,
            };
            failures += 1;
            let delay = backoff(failures);
            match outage.failed(tokio::time::Instant::now().into_std(), delay) {
                Verdict::Retry { .. } => {
                    tracing::warn!(key = %full_key, offset, attempt = failures, retry_in_ms = delay.as_millis() as u64, error = %failed, "upload request failed; asking the store what it has, then resuming");
                    tokio::time::sleep(delay).await;
                    query = true;
                }
                Verdict::GiveUp { lasted } => {
                    return Err(failed.gave_up_after(lasted, self.multipart.retry_for))
                }
            }
        }
    }

    /// One PUT to the session URL, its answer as a [`Status`].
    async fn session_put(
        &self,
        session: &str,
        full_key: &str,
        range: String,
        data: Bytes,
    ) -> Result<Status, Failed> {
        let what = format!("uploading {full_key}");
        let transient = |error| Failed {
            error,
            transient: true,
        };
        let headers = self.auth_headers().await.map_err(|error| Failed {
            error,
            transient: false,
        })?;
        let response = self
            .http
            .request(Method::PUT, session)
            .headers(headers)
            .header("content-range", range)
            // A store that stops answering mid-chunk never fails on its own.
            .timeout(super::super::retry::send_timeout(
                self.multipart.retry_for,
                data.len(),
            ))
            .body(data)
            .send()
            .await
            .map_err(|e| {
                // Without the URL: a session URL lets anyone holding it upload.
                transient(StoreError::Unreachable {
                    store: self.describe(),
                    detail: format!("{what}: {}", e.without_url()),
                })
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(Status::Done);
        }
        if status.as_u16() == 308 {
            let range = response
                .headers()
                .get("range")
                .and_then(|r| r.to_str().ok());
            return persisted(range).map(Status::Persisted).map_err(|e| Failed {
                error: self.request_error(format!("{what}: {e}")),
                transient: false,
            });
        }
        let body = response.text().await.unwrap_or_default();
        let detail = format!("{what}: HTTP {status}: {}", cut(&body));
        let store = self.describe();
        Err(match status.as_u16() {
            // The session is gone (the service restarted, or it expired):
            // the store failed, nothing was stored; not a configuration error.
            404 | 410 => Failed {
                error: StoreError::Request {
                    store,
                    detail: format!(
                        "{what}: the store lost the resumable upload session (HTTP {status}: restarted, or the session expired); nothing was stored"
                    ),
                },
                transient: false,
            },
            412 => Failed {
                error: StoreError::AlreadyExists {
                    store,
                    key: full_key.to_string(),
                },
                transient: false,
            },
            408 | 429 | 500..=599 => transient(StoreError::Request { store, detail }),
            code => Failed {
                error: super::status_error(store, &what, Some(code), detail, false),
                transient: false,
            },
        })
    }
}

/// A service's error text, short enough for a message.
fn cut(body: &str) -> String {
    body.chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges_say_what_is_sent_and_whether_it_is_the_end() {
        let mib = 1 << 20;
        assert_eq!(content_range(0, mib, None), "bytes 0-1048575/*");
        assert_eq!(
            content_range(mib as u64, 10, Some(mib as u64 + 10)),
            "bytes 1048576-1048585/1048586"
        );
        assert_eq!(content_range(8, 0, Some(8)), "bytes */8");
        assert_eq!(content_range(8, 0, None), "bytes */*");
    }

    #[test]
    fn a_308_says_how_much_is_persisted() {
        assert_eq!(persisted(Some("bytes=0-262143")), Ok(262_144));
        assert_eq!(persisted(None), Ok(0));
        assert!(persisted(Some("bytes=5-9")).is_err());
    }

    /// The resumable-upload protocol as GCS documents it, strictly: a chunk
    /// must start where the persisted bytes end, a status query
    /// (`bytes */…`, no body) answers 308 with what is persisted. The
    /// emulator of the integration tests finalizes the object on a status
    /// query instead, so the resume path is proven here.
    mod fake_service {
        use std::sync::{Arc, Mutex};

        use axum::body::Bytes;
        use axum::extract::State;
        use axum::http::{HeaderMap, StatusCode};
        use axum::response::{IntoResponse, Response};
        use axum::routing::{post, put};
        use axum::Router;

        #[derive(Default)]
        pub struct Session {
            pub data: Vec<u8>,
            pub done: bool,
            /// Chunks that failed on purpose after keeping this many bytes.
            pub fail_once_keeping: Option<usize>,
            pub queries: u32,
            pub bad_requests: u32,
        }

        type Shared = Arc<Mutex<Session>>;

        pub async fn serve(session: Shared) -> String {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let address = format!("http://{}", listener.local_addr().expect("addr"));
            let location = format!("{address}/session");
            let app = Router::new()
                .route(
                    "/upload/storage/v1/b/{bucket}/o",
                    post(move || async move { (StatusCode::OK, [("location", location)]) }),
                )
                .route("/session", put(chunk))
                .with_state(session);
            tokio::spawn(async move { axum::serve(listener, app).await });
            address
        }

        fn incomplete(persisted: usize) -> Response {
            let mut response = StatusCode::PERMANENT_REDIRECT.into_response();
            if persisted > 0 {
                let range = format!("bytes=0-{}", persisted - 1);
                response
                    .headers_mut()
                    .insert("range", range.parse().expect("header"));
            }
            response
        }

        async fn chunk(State(s): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
            let mut s = s.lock().expect("lock");
            let range = headers
                .get("content-range")
                .and_then(|r| r.to_str().ok())
                .unwrap_or_default()
                .trim_start_matches("bytes ")
                .to_string();
            let Some((span, total)) = range.split_once('/') else {
                s.bad_requests += 1;
                return StatusCode::BAD_REQUEST.into_response();
            };
            let total: Option<usize> = total.parse().ok();
            if span == "*" {
                if !body.is_empty() {
                    s.bad_requests += 1;
                    return StatusCode::BAD_REQUEST.into_response();
                }
                if total == Some(s.data.len()) {
                    s.done = true;
                }
                if s.done {
                    return StatusCode::OK.into_response();
                }
                s.queries += 1;
                return incomplete(s.data.len());
            }
            let start: usize = span
                .split_once('-')
                .and_then(|(a, _)| a.parse().ok())
                .unwrap_or(usize::MAX);
            if start != s.data.len() {
                s.bad_requests += 1;
                return StatusCode::BAD_REQUEST.into_response();
            }
            if let Some(keep) = s.fail_once_keeping.take() {
                s.data.extend_from_slice(&body[..keep.min(body.len())]);
                return StatusCode::SERVICE_UNAVAILABLE.into_response();
            }
            s.data.extend_from_slice(&body);
            if total == Some(s.data.len()) {
                s.done = true;
                return StatusCode::OK.into_response();
            }
            incomplete(s.data.len())
        }
    }

    #[tokio::test]
    async fn a_failed_chunk_resumes_from_what_the_service_persisted() {
        use std::sync::{Arc, Mutex};
        let session = Arc::new(Mutex::new(fake_service::Session::default()));
        let endpoint = fake_service::serve(Arc::clone(&session)).await;
        let multipart = crate::store::multipart::MultipartConfig {
            base_part_size: 2 * QUANTUM,
            ..Default::default()
        };
        let store = GcsStore::connect(
            "b".into(),
            String::new(),
            &super::super::GcsSettings {
                endpoint: Some(endpoint),
            },
            multipart,
        )
        .await
        .expect("store");
        let data: Vec<u8> = (0..5 * QUANTUM + 1000).map(|i| (i % 253) as u8).collect();
        // The second chunk (offset 2 × QUANTUM) fails once, after the
        // service kept half of it.
        let failing = Arc::clone(&session);
        let mut body = FailSecondChunk {
            data: &data,
            at: 0,
            armed: Some(failing),
        };
        let written = store
            .upload_resumable("k", "k", &mut body)
            .await
            .expect("upload");
        assert_eq!(written, data.len() as u64);
        let s = session.lock().expect("lock");
        assert!(s.done);
        assert_eq!(s.data, data, "every byte once, in order");
        assert_eq!(s.queries, 1, "asked once what the service had");
        assert_eq!(s.bad_requests, 0);
    }

    /// Hands out `data`; once the first chunk was read, arms the service to
    /// fail the next one after keeping one quantum.
    struct FailSecondChunk<'a> {
        data: &'a [u8],
        at: usize,
        armed: Option<std::sync::Arc<std::sync::Mutex<fake_service::Session>>>,
    }

    impl tokio::io::AsyncRead for FailSecondChunk<'_> {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            if self.at >= 2 * QUANTUM {
                if let Some(session) = self.armed.take() {
                    session.lock().expect("lock").fail_once_keeping = Some(QUANTUM);
                }
            }
            let n = buf.remaining().min(self.data.len() - self.at);
            let at = self.at;
            buf.put_slice(&self.data[at..at + n]);
            self.at += n;
            std::task::Poll::Ready(Ok(()))
        }
    }
}
