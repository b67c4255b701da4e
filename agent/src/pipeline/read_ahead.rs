//! Decouples a producer (a dump tool writing into a pipe) from the consumer
//! (compression and upload): a separate task keeps draining the source into
//! a bounded in-memory pipe, so the dump never waits while a chunk is being
//! compressed. One fixed buffer, so memory neither grows nor churns.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf, ReadHalf, SimplexStream};
use tokio::sync::oneshot;

pub struct ReadAhead {
    pipe: ReadHalf<SimplexStream>,
    /// How the source ended: a clean end, or the error to report at the end.
    outcome: oneshot::Receiver<io::Result<()>>,
    finished: bool,
}

pub fn read_ahead<R>(mut source: R, capacity: usize) -> ReadAhead
where
    R: AsyncRead + Send + Unpin + 'static,
{
    let (pipe, mut writer) = tokio::io::simplex(capacity);
    let (done, outcome) = oneshot::channel();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        let result = loop {
            match source.read(&mut buf).await {
                Ok(0) => break Ok(()),
                Ok(n) => {
                    if writer.write_all(&buf[..n]).await.is_err() {
                        return; // the consumer gave up (e.g. the upload failed)
                    }
                }
                Err(e) => break Err(e),
            }
        };
        // The outcome first: the reader looks for it once the pipe ends.
        let _ = done.send(result);
        let _ = writer.shutdown().await;
    });
    ReadAhead {
        pipe,
        outcome,
        finished: false,
    }
}

impl AsyncRead for ReadAhead {
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
        match Pin::new(&mut this.pipe).poll_read(cx, buf) {
            Poll::Ready(Ok(())) if buf.filled().len() == before => {
                this.finished = true;
                match Pin::new(&mut this.outcome).poll(cx) {
                    Poll::Pending => {
                        this.finished = false;
                        Poll::Pending
                    }
                    Poll::Ready(Ok(result)) => Poll::Ready(result),
                    Poll::Ready(Err(_)) => {
                        Poll::Ready(Err(io::Error::other("the read-ahead task stopped")))
                    }
                }
            }
            other => other,
        }
    }
}

use std::future::Future;

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn passes_every_byte_and_the_final_error() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let mut out = Vec::new();
        read_ahead(std::io::Cursor::new(data.clone()), 4096)
            .read_to_end(&mut out)
            .await
            .expect("read");
        assert_eq!(out, data);

        struct FailsAtEnd(usize);
        impl AsyncRead for FailsAtEnd {
            fn poll_read(
                mut self: std::pin::Pin<&mut Self>,
                _: &mut std::task::Context<'_>,
                buf: &mut tokio::io::ReadBuf<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                if self.0 == 0 {
                    return std::task::Poll::Ready(Err(std::io::Error::other(
                        "pg_dump failed (exit code 1)",
                    )));
                }
                self.0 -= 1;
                buf.put_slice(b"abc");
                std::task::Poll::Ready(Ok(()))
            }
        }
        let mut out = Vec::new();
        let err = read_ahead(FailsAtEnd(3), 16)
            .read_to_end(&mut out)
            .await
            .expect_err("error passes through");
        assert!(err.to_string().contains("pg_dump failed"), "{err}");
        assert_eq!(out, b"abcabcabc");
    }
}
