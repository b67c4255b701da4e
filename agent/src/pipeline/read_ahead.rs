//! Decouples a producer (a dump tool writing into a pipe) from the consumer
//! (compression and upload): a separate task keeps draining the source into
//! a bounded in-memory pipe, so the dump never waits while a chunk is being
//! compressed. One fixed buffer, so memory neither grows nor churns.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadHalf, SimplexStream};
use tokio::sync::oneshot;

use super::checked_end::CheckedEnd;

pub type ReadAhead = CheckedEnd<ReadHalf<SimplexStream>>;

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
        let _ = done.send(result);
        let _ = writer.shutdown().await;
    });
    CheckedEnd::new(pipe, outcome)
}

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
