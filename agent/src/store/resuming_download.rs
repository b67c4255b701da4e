//! A streaming download that survives a dropped connection: when the body
//! fails midway it asks again for the remaining bytes (a ranged read pinned
//! to the same object version by its ETag), so a long restore does not start
//! over or fail on one network hiccup. Each store supplies the ranged read.
//! It gives up once the store has failed for `--store-retry-for` without a
//! byte of progress, with a [`ReadFailure`]: the store failed, not the data.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, ReadBuf};

use super::error::ReadFailure;
use super::retry::{Outage, Verdict};

pub type Body = Pin<Box<dyn AsyncRead + Send>>;
pub type Reopen = Pin<Box<dyn Future<Output = io::Result<Body>> + Send>>;

/// Opens the same object again from `offset` to its end.
pub trait Reopener: Send + Unpin {
    fn reopen(&self, offset: u64) -> Reopen;
}

pub struct ResumingDownload<R: Reopener> {
    reopener: R,
    store: String,
    key: String,
    offset: u64,
    /// Failures since the last byte that arrived: sets the back-off.
    failures: u32,
    outage: Outage,
    /// No byte for this long is a failure: a hung store never errors.
    idle: Duration,
    /// Armed while the body is waiting for data.
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
    state: State,
}

enum State {
    Reading(Body),
    Reopening(Reopen),
}

impl<R: Reopener> ResumingDownload<R> {
    /// `store` names the store in errors; `retry_for` is how long it may
    /// fail without progress.
    pub fn new(reopener: R, store: String, key: String, body: Body, retry_for: Duration) -> Self {
        ResumingDownload {
            reopener,
            store,
            key,
            offset: 0,
            failures: 0,
            outage: Outage::new(retry_for),
            idle: super::retry::idle_timeout(retry_for),
            stalled: None,
            state: State::Reading(body),
        }
    }

    /// After a failure: a re-open after a back-off (0.25 s doubling to 8 s),
    /// or, once the store failed for too long, the error to end with.
    fn after_failure(&mut self, e: io::Error) -> Result<Reopen, io::Error> {
        let delay = Duration::from_millis(250 * (1 << self.failures.min(5)));
        self.failures += 1;
        let now = tokio::time::Instant::now().into_std();
        if let Verdict::GiveUp { lasted } = self.outage.failed(now, delay) {
            let why = io::Error::new(
                e.kind(),
                format!(
                    "{e}; gave up resuming after {} without progress (--store-retry-for {})",
                    super::retry::describe(lasted),
                    super::retry::describe(self.outage.limit())
                ),
            );
            return Err(ReadFailure::wrap(&self.store, why));
        }
        tracing::warn!(key = %self.key, offset = self.offset, error = %e, "download interrupted; resuming");
        self.stalled = None;
        let reopen = self.reopener.reopen(self.offset);
        let idle = self.idle;
        Ok(Box::pin(async move {
            tokio::time::sleep(delay).await;
            // A re-open the store never answers is a failure like a refused one.
            tokio::time::timeout(idle, reopen)
                .await
                .unwrap_or_else(|_| Err(no_answer(idle)))
        }))
    }
}

/// The error for a store that stopped sending: retried like a dropped connection.
fn no_answer(idle: Duration) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!(
            "the store sent nothing for {}",
            super::retry::describe(idle)
        ),
    )
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
                    let polled = body.as_mut().poll_read(cx, buf);
                    let got = (buf.filled().len() - before) as u64;
                    this.offset += got;
                    if got > 0 {
                        this.failures = 0;
                        this.outage.progress();
                        this.stalled = None;
                    }
                    let polled = match polled {
                        Poll::Pending => {
                            let idle = this.idle;
                            let stalled = this
                                .stalled
                                .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                            match stalled.as_mut().poll(cx) {
                                Poll::Ready(()) => Poll::Ready(Err(no_answer(idle))),
                                Poll::Pending => Poll::Pending,
                            }
                        }
                        other => {
                            this.stalled = None;
                            other
                        }
                    };
                    match polled {
                        Poll::Ready(Err(e)) => match this.after_failure(e) {
                            Ok(reopen) => this.state = State::Reopening(reopen),
                            Err(e) => return Poll::Ready(Err(e)),
                        },
                        other => return other,
                    }
                }
                State::Reopening(fut) => match fut.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(body)) => this.state = State::Reading(body),
                    // A failed re-open (the store still unreachable) is
                    // retried with the same growing backoff, within the
                    // same allowance.
                    Poll::Ready(Err(e)) => match this.after_failure(e) {
                        Ok(reopen) => this.state = State::Reopening(reopen),
                        Err(e) => return Poll::Ready(Err(e)),
                    },
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

    const LIMIT: Duration = Duration::from_secs(10);

    #[tokio::test(start_paused = true)]
    async fn failed_reopens_are_retried_then_given_up() {
        let tries = Arc::new(AtomicU32::new(0));
        let flaky = Flaky {
            failures: 2,
            tries: Arc::clone(&tries),
        };
        let mut download =
            ResumingDownload::new(flaky, "s".into(), "k".into(), cut(b"hello"), LIMIT);
        let mut out = String::new();
        download.read_to_string(&mut out).await.expect("resumed");
        assert_eq!(out, "hello world");
        assert_eq!(tries.load(Ordering::SeqCst), 3);

        let hopeless = Flaky {
            failures: u32::MAX,
            tries: Arc::new(AtomicU32::new(0)),
        };
        let mut download =
            ResumingDownload::new(hopeless, "s".into(), "k".into(), cut(b"hello"), LIMIT);
        let started = tokio::time::Instant::now();
        let err = download
            .read_to_string(&mut String::new())
            .await
            .expect_err("gives up");
        assert!(err.to_string().contains("unreachable"), "{err}");
        assert!(err.to_string().contains("--store-retry-for 10s"), "{err}");
        // Within the allowance: a re-open is never started past it.
        assert!(started.elapsed() <= LIMIT, "{:?}", started.elapsed());
        assert!(
            crate::store::store_failure(&err).is_some(),
            "the store failed, not the data: {err}"
        );
    }
}
