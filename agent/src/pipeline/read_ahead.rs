//! Decouples a producer (a dump tool writing into a pipe) from the consumer
//! (compression and upload): a separate task keeps draining the source into a
//! bounded queue, so the dump never waits while a chunk is being compressed.
//! Memory is bounded by `depth × chunk`.

use bytes::{Bytes, BytesMut};
use futures::Stream;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;
use tokio_util::io::StreamReader;

pub fn read_ahead<R>(mut source: R, chunk: usize, depth: usize) -> impl AsyncRead + Send + Unpin
where
    R: AsyncRead + Send + Unpin + 'static,
{
    let (tx, rx) = mpsc::channel::<std::io::Result<Bytes>>(depth.max(1));
    tokio::spawn(async move {
        loop {
            let mut buf = BytesMut::with_capacity(chunk);
            match source.read_buf(&mut buf).await {
                Ok(0) => break,
                Ok(_) => {
                    if tx.send(Ok(buf.freeze())).await.is_err() {
                        break; // the consumer gave up (e.g. the upload failed)
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    break;
                }
            }
        }
    });
    StreamReader::new(receiver_stream(rx))
}

fn receiver_stream(
    rx: mpsc::Receiver<std::io::Result<Bytes>>,
) -> impl Stream<Item = std::io::Result<Bytes>> + Send + Unpin {
    Box::pin(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn passes_every_byte_and_the_final_error() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let mut out = Vec::new();
        read_ahead(std::io::Cursor::new(data.clone()), 4096, 2)
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
        let err = read_ahead(FailsAtEnd(3), 16, 1)
            .read_to_end(&mut out)
            .await
            .expect_err("error passes through");
        assert!(err.to_string().contains("pg_dump failed"), "{err}");
        assert_eq!(out, b"abcabcabc");
    }
}
