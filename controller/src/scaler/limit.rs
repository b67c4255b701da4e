//! Bounded reads of metric answers. A tenant chooses the Prometheus server
//! and the query, so an answer's size is theirs to choose too: one 700 MiB
//! answer once took the controller from 19 MiB to 1.45 GiB. Every answer is
//! therefore read chunk by chunk into a buffer that never grows past the
//! administrator's limit (`--max-metric-response-bytes`), and the read stops
//! at the first chunk that would pass it.

use std::fmt;

/// Why a bounded read failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadError {
    /// The answer is (or says it is) larger than the limit.
    TooLarge { source: &'static str, limit: usize },
    /// The connection failed or timed out while the body was read.
    Transport(String),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::TooLarge { source, limit } => write!(
                f,
                "{source} answer exceeds {limit} bytes (the administrator's \
                 --max-metric-response-bytes); {}",
                hint(source)
            ),
            ReadError::Transport(e) => f.write_str(e),
        }
    }
}

/// What would make the answer fit.
fn hint(source: &str) -> &'static str {
    if source == "Prometheus" {
        "make the query return fewer series, e.g. sum() it"
    } else {
        "the target has more pods than the limit allows for; the administrator may raise it"
    }
}

/// A body being collected under a byte limit. Pure: the readers below feed
/// it, the tests feed it directly.
#[derive(Debug)]
pub struct Limited {
    source: &'static str,
    limit: usize,
    buf: Vec<u8>,
}

impl Limited {
    /// `source` names the answer in the error ("Prometheus", "metrics.k8s.io").
    pub fn new(source: &'static str, limit: usize) -> Self {
        Limited {
            source,
            limit,
            buf: Vec::new(),
        }
    }

    fn too_large(&self) -> ReadError {
        ReadError::TooLarge {
            source: self.source,
            limit: self.limit,
        }
    }

    /// Refuses a body whose announced length is over the limit before a
    /// byte of it is read; reserves exactly what a fitting one needs.
    pub fn announce(&mut self, content_length: Option<u64>) -> Result<(), ReadError> {
        match content_length {
            Some(n) if n > self.limit as u64 => Err(self.too_large()),
            Some(n) => {
                // n <= limit, so it fits in usize.
                self.buf.reserve_exact(n as usize);
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Adds one chunk, or fails without keeping it when it would pass the
    /// limit. The buffer's capacity never exceeds the limit either: growth
    /// doubles as usual but is clipped at the limit.
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), ReadError> {
        let needed = self.buf.len().saturating_add(chunk.len());
        if needed > self.limit {
            self.buf = Vec::new();
            return Err(self.too_large());
        }
        if needed > self.buf.capacity() {
            let target = needed.max(self.buf.capacity() * 2).min(self.limit);
            self.buf.reserve_exact(target - self.buf.len());
        }
        self.buf.extend_from_slice(chunk);
        Ok(())
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }
}

/// Reads a reqwest response's body under `limit`. Its Content-Length is
/// checked first; the request's own timeout covers the body too.
pub async fn read_response(
    mut response: reqwest::Response,
    source: &'static str,
    limit: usize,
) -> Result<Vec<u8>, ReadError> {
    let mut body = Limited::new(source, limit);
    body.announce(response.content_length())?;
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => body.push(&chunk)?,
            Ok(None) => return Ok(body.into_bytes()),
            // Without the URL: it may carry the tenant's credentials.
            Err(e) => {
                return Err(ReadError::Transport(format!(
                    "{source}: reading the answer: {}",
                    crate::error::with_causes(&e.without_url())
                )))
            }
        }
    }
}

/// Reads a byte stream (kube's `request_stream`) under `limit`, 16 KiB at a time.
pub async fn read_stream<R>(
    reader: R,
    source: &'static str,
    limit: usize,
) -> Result<Vec<u8>, ReadError>
where
    R: futures::AsyncRead,
{
    use futures::AsyncReadExt;
    let mut reader = std::pin::pin!(reader);
    let mut body = Limited::new(source, limit);
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        let n = reader.read(&mut chunk).await.map_err(|e| {
            ReadError::Transport(format!(
                "{source}: reading the answer: {}",
                crate::error::with_causes(&e)
            ))
        })?;
        if n == 0 {
            return Ok(body.into_bytes());
        }
        body.push(&chunk[..n])?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_announced_length_over_the_limit_is_refused_before_reading() {
        let mut body = Limited::new("Prometheus", 10);
        let e = body.announce(Some(11)).expect_err("over");
        assert_eq!(
            e,
            ReadError::TooLarge {
                source: "Prometheus",
                limit: 10
            }
        );
        assert!(e.to_string().starts_with(
            "Prometheus answer exceeds 10 bytes (the administrator's --max-metric-response-bytes)"
        ));
        assert!(Limited::new("Prometheus", 10).announce(Some(10)).is_ok());
        assert!(Limited::new("Prometheus", 10).announce(None).is_ok());
    }

    #[test]
    fn chunks_past_the_limit_stop_the_read_and_free_the_buffer() {
        let mut body = Limited::new("Prometheus", 10);
        body.push(b"12345").expect("fits");
        body.push(b"6789").expect("fits");
        assert!(body.push(b"ab").is_err(), "11 bytes");
        assert_eq!(body.buf.capacity(), 0, "nothing kept after the refusal");
    }

    #[test]
    fn a_body_exactly_at_the_limit_is_read_whole() {
        let mut body = Limited::new("Prometheus", 10);
        body.announce(Some(10)).expect("announced");
        body.push(b"12345").expect("fits");
        body.push(b"67890").expect("fits");
        body.push(b"").expect("an empty chunk fits");
        assert_eq!(body.into_bytes(), b"1234567890");
    }

    #[test]
    fn the_buffer_never_grows_past_the_limit() {
        let limit = 1000;
        let mut body = Limited::new("metrics.k8s.io", limit);
        for _ in 0..(limit / 7) {
            body.push(&[0u8; 7]).expect("fits");
            assert!(body.buf.capacity() <= limit, "{}", body.buf.capacity());
        }
        body.push(&[0u8; 6]).expect("exactly at the limit");
        assert!(body.push(&[0u8; 1]).is_err());
    }

    #[tokio::test]
    async fn a_stream_over_the_limit_errors() {
        let big = vec![b'x'; 100_000];
        let e = read_stream(&big[..], "metrics.k8s.io", 50_000)
            .await
            .expect_err("over");
        assert!(e
            .to_string()
            .contains("metrics.k8s.io answer exceeds 50000 bytes"));
        let read = read_stream(&big[..], "metrics.k8s.io", 100_000)
            .await
            .expect("at the limit");
        assert_eq!(read.len(), 100_000);
    }
}
