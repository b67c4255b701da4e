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

const MAX_RESUMES: u32 = 5;

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
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                },
            }
        }
    }
}
