//! A streaming S3 download that survives a dropped connection: when the body
//! fails midway it asks again for the remaining bytes (`Range`), pinned to the
//! same object version by its ETag, so a long restore does not start over or
//! fail on one network hiccup.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::Client;
use tokio::io::{AsyncRead, ReadBuf};

type Body = Pin<Box<dyn AsyncRead + Send>>;
type Reopen = Pin<Box<dyn Future<Output = io::Result<Body>> + Send>>;

const MAX_RESUMES: u32 = 5;

pub struct ResumingDownload {
    client: Client,
    bucket: String,
    key: String,
    etag: Option<String>,
    offset: u64,
    resumes: u32,
    state: State,
}

enum State {
    Reading(Body),
    Reopening(Reopen),
}

impl ResumingDownload {
    pub fn new(
        client: Client,
        bucket: String,
        key: String,
        etag: Option<String>,
        body: Body,
    ) -> Self {
        ResumingDownload {
            client,
            bucket,
            key,
            etag,
            offset: 0,
            resumes: 0,
            state: State::Reading(body),
        }
    }

    fn reopen(&self) -> Reopen {
        let request = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&self.key)
            .range(format!("bytes={}-", self.offset))
            .set_if_match(self.etag.clone());
        let delay = Duration::from_millis(250 * (1 << self.resumes.min(5)));
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            let out = request.send().await.map_err(|e| {
                io::Error::other(format!(
                    "resuming the download: {}",
                    DisplayErrorContext(&e)
                ))
            })?;
            Ok(Box::pin(out.body.into_async_read()) as Body)
        })
    }
}

impl AsyncRead for ResumingDownload {
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
