//! A streaming download that survives a dropped connection: when the body
//! fails midway it asks again for the remaining bytes (a ranged read pinned
//! to the same object version by its ETag), so a long restore does not start
//! over or fail on one network hiccup. Each store supplies the ranged read.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, ReadBuf};

pub type Body = Pin<Box<dyn AsyncRead + Send>>;
pub type Reopen = Pin<Box<dyn Future<Output = io::Result<Body>> + Send>>;

/// Resumes and re-open attempts together: with the backoff (0.25 s doubling
/// to 8 s) a download waits at most about 30 s in all for its store.
const MAX_RESUMES: u32 = 7;

/// Opens the same object again from `offset` to its end.
pub trait Reopener: Send + Unpin {
    fn reopen(&self, offset: u64) -> Reopen;
}

pub struct ResumingDownload<R: Reopener> {
    reopener: R,
    key: String,
    offset: u64,
    resumes: u32,
    state: State,
}

enum State {
    Reading(Body),
    Reopening(Reopen),
}

impl<R: Reopener> ResumingDownload<R> {
    pub fn new(reopener: R, key: String, body: Body) -> Self {
        ResumingDownload {
            reopener,
            key,
            offset: 0,
            resumes: 0,
            state: State::Reading(body),
        }
    }

    fn reopen(&self) -> Reopen {
        let delay = Duration::from_millis(250 * (1 << self.resumes.min(5)));
        let reopen = self.reopener.reopen(self.offset);
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            reopen.await
        })
    }
}

impl<R: Reopener> AsyncRead for ResumingDownload<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let this = &mut *self;
            match &mut this.state {
                State::Reading(body) => {
                    let before = buf.filled().len();
                    match body.as_mut().poll_read(cx, buf) {
                        Poll::Ready(Ok(())) => {
                            this.offset += (buf.filled().len() - before) as u64;
                            return Poll::Ready(Ok(()));
                        }
                        Poll::Ready(Err(e)) if this.resumes < MAX_RESUMES => {
                            this.offset += (buf.filled().len() - before) as u64;
                            tracing::warn!(key = %this.key, offset = this.offset, error = %e, "download interrupted; resuming");
                            let reopen = this.reopen();
                            this.resumes += 1;
                            this.state = State::Reopening(reopen);
                        }
                        other => return other,
                    }
                }
                State::Reopening(fut) => match fut.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(body)) => this.state = State::Reading(body),
                    // A failed re-open (the store still unreachable) is
                    // retried with the same growing backoff, a bounded number
                    // of times in all.
                    Poll::Ready(Err(e)) if this.resumes < MAX_RESUMES => {
                        tracing::warn!(key = %this.key, offset = this.offset, error = %e, "resuming the download failed; retrying");
                        let reopen = this.reopen();
                        this.resumes += 1;
                        this.state = State::Reopening(reopen);
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;
    use tokio::io::AsyncReadExt;

    /// A body that yields `data` and then fails, like a dropped connection.
    fn cut(data: &'static [u8]) -> Body {
        Box::pin(data.chain(Failing))
    }

    struct Failing;
    impl AsyncRead for Failing {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            _: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Poll::Ready(Err(io::Error::other("connection reset")))
        }
    }

    /// Refuses the first `failures` re-opens, then serves the rest.
    struct Flaky {
        failures: u32,
        tries: Arc<AtomicU32>,
    }

    impl Reopener for Flaky {
        fn reopen(&self, offset: u64) -> Reopen {
            let attempt = self.tries.fetch_add(1, Ordering::SeqCst);
            let failures = self.failures;
            Box::pin(async move {
                assert_eq!(offset, 5);
                if attempt < failures {
                    Err(io::Error::other("store unreachable"))
                } else {
                    Ok(Box::pin(&b" world"[..]) as Body)
                }
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn failed_reopens_are_retried_then_given_up() {
        let tries = Arc::new(AtomicU32::new(0));
        let flaky = Flaky {
            failures: 2,
            tries: Arc::clone(&tries),
        };
        let mut download = ResumingDownload::new(flaky, "k".into(), cut(b"hello"));
        let mut out = String::new();
        download.read_to_string(&mut out).await.expect("resumed");
        assert_eq!(out, "hello world");
        assert_eq!(tries.load(Ordering::SeqCst), 3);

        let hopeless = Flaky {
            failures: u32::MAX,
            tries: Arc::new(AtomicU32::new(0)),
        };
        let mut download = ResumingDownload::new(hopeless, "k".into(), cut(b"hello"));
        let err = download
            .read_to_string(&mut String::new())
            .await
            .expect_err("gives up");
        assert!(err.to_string().contains("unreachable"), "{err}");
    }
}
