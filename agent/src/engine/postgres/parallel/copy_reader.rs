//! `COPY … TO STDOUT` as a reader that hands on every row the server has
//! sent so far in one read: the protocol carries one message per row, and
//! a reader giving one row per read (`StreamReader`) made every layer
//! behind it (read-ahead, meters, compression) work row by row.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use futures::Stream;
use tokio::io::{AsyncRead, ReadBuf};

pub struct CopyReader<S> {
    stream: Pin<Box<S>>,
    pending: Bytes,
    /// An error that came after data already handed on: the next read's.
    failed: Option<io::Error>,
    ended: bool,
}

impl<S> CopyReader<S> {
    pub fn new(stream: S) -> Self {
        CopyReader {
            stream: Box::pin(stream),
            pending: Bytes::new(),
            failed: None,
            ended: false,
        }
    }
}

impl<S> AsyncRead for CopyReader<S>
where
    S: Stream<Item = io::Result<Bytes>>,
{
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let start = buf.filled().len();
        loop {
            if !self.pending.is_empty() {
                let n = self.pending.len().min(buf.remaining());
                buf.put_slice(&self.pending[..n]);
                self.pending.advance(n);
                if buf.remaining() == 0 {
                    return Poll::Ready(Ok(()));
                }
                continue;
            }
            if let Some(e) = self.failed.take() {
                return Poll::Ready(Err(e));
            }
            if self.ended {
                return Poll::Ready(Ok(()));
            }
            let got_some = buf.filled().len() > start;
            match self.stream.as_mut().poll_next(cx) {
                Poll::Ready(Some(Ok(row))) => self.pending = row,
                Poll::Ready(Some(Err(e))) if got_some => {
                    self.failed = Some(e);
                    return Poll::Ready(Ok(()));
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e)),
                Poll::Ready(None) => {
                    self.ended = true;
                    return Poll::Ready(Ok(()));
                }
                Poll::Pending if got_some => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn rows_ready_together_come_in_one_read() {
        let rows: Vec<io::Result<Bytes>> = (0..100)
            .map(|i| Ok(Bytes::from(format!("{i}\trow\n"))))
            .collect();
        let mut reader = CopyReader::new(futures::stream::iter(rows));
        let mut buf = vec![0u8; 64 * 1024];
        let n = reader.read(&mut buf).await.expect("read");
        assert!(n > 500, "one read took {n} bytes");
        let mut rest = Vec::new();
        reader.read_to_end(&mut rest).await.expect("end");
        assert!(rest.is_empty());
        assert!(String::from_utf8_lossy(&buf[..n]).ends_with("99\trow\n"));
    }

    #[tokio::test]
    async fn an_error_after_data_comes_with_the_next_read() {
        let items: Vec<io::Result<Bytes>> = vec![
            Ok(Bytes::from_static(b"1\ta\n")),
            Err(io::Error::other("connection closed")),
        ];
        let mut reader = CopyReader::new(futures::stream::iter(items));
        let mut buf = [0u8; 64];
        assert_eq!(reader.read(&mut buf).await.expect("data first"), 4);
        let err = reader.read(&mut buf).await.expect_err("then the error");
        assert!(err.to_string().contains("connection closed"));
    }

    #[tokio::test]
    async fn small_buffers_get_a_row_in_pieces() {
        let items: Vec<io::Result<Bytes>> = vec![Ok(Bytes::from_static(b"0123456789\n"))];
        let mut reader = CopyReader::new(futures::stream::iter(items));
        let mut out = Vec::new();
        let mut buf = [0u8; 4];
        loop {
            let n = reader.read(&mut buf).await.expect("read");
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        assert_eq!(out, b"0123456789\n");
    }
}
