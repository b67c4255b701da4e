//! A stream whose end counts only if its producer says it ended cleanly: a
//! dump tool that exited non-zero, or a source that failed behind a
//! read-ahead, turns the end of the stream into a read error, so an upload
//! is aborted rather than completed.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::oneshot;

pub struct CheckedEnd<R> {
    inner: R,
    /// Sent by the producer before (or after) the stream ends.
    outcome: oneshot::Receiver<io::Result<()>>,
    finished: bool,
}

impl<R> CheckedEnd<R> {
    pub fn new(inner: R, outcome: oneshot::Receiver<io::Result<()>>) -> Self {
        CheckedEnd {
            inner,
            outcome,
            finished: false,
        }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for CheckedEnd<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.finished {
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) if buf.filled().len() == before => {
                match Pin::new(&mut this.outcome).poll(cx) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(outcome) => {
                        this.finished = true;
                        Poll::Ready(outcome.unwrap_or_else(|_| {
                            Err(io::Error::other("the producer of the stream vanished"))
                        }))
                    }
                }
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
    async fn the_end_carries_the_producers_outcome() {
        let (tx, rx) = oneshot::channel();
        tx.send(Ok(())).expect("send");
        let mut out = Vec::new();
        CheckedEnd::new(&b"data"[..], rx)
            .read_to_end(&mut out)
            .await
            .expect("clean end");
        assert_eq!(out, b"data");

        let (tx, rx) = oneshot::channel();
        tx.send(Err(io::Error::other("tool failed"))).expect("send");
        let err = CheckedEnd::new(&b"data"[..], rx)
            .read_to_end(&mut Vec::new())
            .await
            .expect_err("failed end");
        assert!(err.to_string().contains("tool failed"));

        let (tx, rx) = oneshot::channel::<io::Result<()>>();
        drop(tx);
        assert!(CheckedEnd::new(&b""[..], rx)
            .read_to_end(&mut Vec::new())
            .await
            .is_err());
    }
}
