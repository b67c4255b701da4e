//! Hashing and counting bytes as they stream past, without buffering them.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, ReadBuf};

/// SHA-256 and byte count of everything read through a [`MeteredReader`].
/// Shared through an `Arc` so the progress reporter and the final manifest can
/// read it while the reader itself is buried inside codecs.
#[derive(Default)]
pub struct Meter {
    bytes: AtomicU64,
    hasher: Mutex<Sha256>,
    head: Mutex<Vec<u8>>,
    head_limit: usize,
}

impl Meter {
    pub fn new() -> Arc<Self> {
        Arc::new(Meter::default())
    }

    /// A meter that also keeps the first `limit` bytes (to sniff a header).
    pub fn capturing_head(limit: usize) -> Arc<Self> {
        Arc::new(Meter {
            head_limit: limit,
            ..Meter::default()
        })
    }

    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    pub fn sha256_hex(&self) -> String {
        let hasher = self.hasher.lock().map(|h| h.clone()).unwrap_or_default();
        hex::encode(hasher.finalize())
    }

    pub fn head(&self) -> Vec<u8> {
        self.head.lock().map(|h| h.clone()).unwrap_or_default()
    }

    fn record(&self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        self.bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
        if let Ok(mut hasher) = self.hasher.lock() {
            hasher.update(data);
        }
        if self.head_limit > 0 {
            if let Ok(mut head) = self.head.lock() {
                let room = self.head_limit.saturating_sub(head.len());
                head.extend_from_slice(&data[..room.min(data.len())]);
            }
        }
    }
}

pub struct MeteredReader<R> {
    inner: R,
    meter: Arc<Meter>,
}

impl<R> MeteredReader<R> {
    pub fn new(inner: R, meter: Arc<Meter>) -> Self {
        MeteredReader { inner, meter }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for MeteredReader<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                this.meter.record(&buf.filled()[before..]);
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn hashes_counts_and_captures_the_head() {
        let meter = Meter::capturing_head(4);
        let mut reader = MeteredReader::new(&b"hello world"[..], Arc::clone(&meter));
        let mut out = Vec::new();
        reader.read_to_end(&mut out).await.expect("read");
        assert_eq!(meter.bytes(), 11);
        assert_eq!(meter.head(), b"hell");
        assert_eq!(
            meter.sha256_hex(),
            "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
        );
    }
}
