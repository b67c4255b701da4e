//! Backend-neutral machinery for chunked uploads: the one lifecycle
//! ([`ChunkedUpload`], [`upload`]: whole if short, else start, parts,
//! complete, abort on error), how big each part is, how many are in flight,
//! and retrying. S3 multipart uploads and Azure block staging drive it; GCS
//! resumable uploads get the same chunking from the Google client (one chunk
//! of `base_part_size` in memory).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::retry::{Outage, Verdict};
use super::StoreError;

/// S3 allows 10,000 parts of at most 5 GiB; other stores allow as many or more.
pub const MAX_PARTS: u32 = 10_000;
const MAX_PART_SIZE: usize = 5 * 1024 * 1024 * 1024;
/// Every this many parts the part size doubles, so any stream fits in
/// [`MAX_PARTS`] while small and medium dumps keep small parts.
const PARTS_PER_SIZE_STEP: u32 = 1_000;

#[derive(Debug, Clone, Copy)]
pub struct MultipartConfig {
    /// Size of the first parts; it grows as described at [`part_size_for`].
    pub base_part_size: usize,
    /// Parts uploading at once while parts are at their base size.
    pub max_in_flight: usize,
    pub max_attempts: u32,
    /// How long a store may fail without progress before an operation
    /// gives up (`--store-retry-for`, [`super::retry`]).
    pub retry_for: Duration,
}

impl Default for MultipartConfig {
    fn default() -> Self {
        MultipartConfig {
            base_part_size: 8 * 1024 * 1024,
            max_in_flight: 4,
            max_attempts: 5,
            retry_for: super::retry::DEFAULT_RETRY_FOR,
        }
    }
}

impl MultipartConfig {
    /// Size of part `number` (1-based): the base size, doubled every
    /// [`PARTS_PER_SIZE_STEP`] parts, never above the 5 GiB S3 maximum. With
    /// an 8 MiB base the 10,000 parts hold about 8 TB, past S3's 5 TiB object limit.
    pub fn part_size_for(&self, number: u32) -> usize {
        let step = (number.saturating_sub(1) / PARTS_PER_SIZE_STEP).min(20);
        self.base_part_size
            .saturating_mul(1usize << step)
            .min(MAX_PART_SIZE)
    }

    /// Parts in flight for a given part size: the memory budget
    /// (`base × max_in_flight`) stays the same as parts grow, so memory is
    /// flat in the size of the dump.
    pub fn in_flight_for(&self, part_size: usize) -> usize {
        let budget = self.base_part_size.saturating_mul(self.max_in_flight);
        (budget / part_size.max(1)).clamp(1, self.max_in_flight.max(1))
    }
}

/// Fills a buffer of `size` bytes from `body`; a shorter buffer means the
/// stream ended.
pub async fn read_part(
    body: &mut (dyn AsyncRead + Send + Unpin),
    size: usize,
) -> Result<Bytes, StoreError> {
    read_part_into(body, size, BytesMut::new()).await
}

/// [`read_part`] into a recycled buffer (cleared, grown as needed).
async fn read_part_into(
    body: &mut (dyn AsyncRead + Send + Unpin),
    size: usize,
    mut buf: BytesMut,
) -> Result<Bytes, StoreError> {
    buf.clear();
    buf.reserve(size);
    while buf.len() < size {
        let n = (&mut *body)
            .take((size - buf.len()) as u64)
            .read_buf(&mut buf)
            .await
            .map_err(StoreError::from_body)?;
        if n == 0 {
            break;
        }
    }
    Ok(buf.freeze())
}

/// Uploads one part of an open chunked upload.
#[async_trait]
pub trait PartUploader: Send + Sync + 'static {
    /// What the final commit needs to know about a part (an ETag, a block id).
    type Receipt: Send + 'static;
    async fn upload_part(&self, number: u32, data: Bytes) -> Result<Self::Receipt, StoreError>;
}

/// One chunked upload's lifecycle, as a store drives it: a short stream goes
/// up whole; a long one is started, sent in parts, completed without ever
/// replacing an existing object, and aborted on any error.
#[async_trait]
pub trait ChunkedUpload: Send + Sync {
    type Parts: PartUploader;

    /// Writes a stream shorter than one part in a single request.
    async fn put_whole(&self, data: Bytes) -> Result<(), StoreError>;
    /// Opens the upload (S3: CreateMultipartUpload; Azure: nothing to do).
    async fn start(&self) -> Result<Arc<Self::Parts>, StoreError>;
    /// Makes the object appear from its parts, in order (retried by [`upload`]).
    async fn complete(
        &self,
        parts: &Self::Parts,
        receipts: &[<Self::Parts as PartUploader>::Receipt],
    ) -> Result<(), StoreError>;
    /// Discards what was sent; errors are logged, the upload has failed anyway.
    async fn abort(&self, parts: &Self::Parts);
}

/// Runs the whole lifecycle of [`ChunkedUpload`] over `body`; returns the
/// bytes uploaded. Nothing that looks like an object is left after an error.
pub async fn upload<L: ChunkedUpload>(
    lifecycle: &L,
    body: &mut (dyn AsyncRead + Send + Unpin),
    config: MultipartConfig,
) -> Result<u64, StoreError> {
    let first = read_part(body, config.part_size_for(1)).await?;
    if first.len() < config.part_size_for(1) {
        // Short streams go up in one request: no multipart bookkeeping.
        let len = first.len() as u64;
        lifecycle.put_whole(first).await?;
        return Ok(len);
    }
    let parts = lifecycle.start().await?;
    let result = async {
        let (receipts, total) = upload_parts(Arc::clone(&parts), first, body, config).await?;
        with_retries(&config, 0, || lifecycle.complete(&parts, &receipts)).await?;
        Ok::<u64, StoreError>(total)
    }
    .await;
    if result.is_err() {
        lifecycle.abort(&parts).await;
    }
    result
}

/// Uploads `first` and then the rest of `body` as numbered parts, with at most
/// `in_flight_for(part size)` parts in memory at once (back-pressure: the next
/// part is read only once a slot is free). Returns receipts in part order and
/// the total byte count. The caller commits on success and aborts on error.
pub async fn upload_parts<U: PartUploader>(
    uploader: Arc<U>,
    first: Bytes,
    body: &mut (dyn AsyncRead + Send + Unpin),
    config: MultipartConfig,
) -> Result<(Vec<U::Receipt>, u64), StoreError> {
    let slots = Arc::new(Semaphore::new(config.max_in_flight.max(1)));
    let mut tasks: JoinSet<Result<Finished<U::Receipt>, StoreError>> = JoinSet::new();
    let mut done = Done {
        receipts: Vec::new(),
        buffers: Vec::new(),
    };
    let mut total = 0u64;
    let mut number = 1u32;
    let mut first = Some(first);

    loop {
        let size = config.part_size_for(number);
        // Wider parts take several slots, so memory stays within the budget.
        let weight = (config.max_in_flight / config.in_flight_for(size)).max(1) as u32;
        // The slot is taken before the part is read: that is the back-pressure.
        let permit = acquire(&slots, weight, &mut tasks, &mut done).await?;
        let data = match first.take() {
            Some(data) => data,
            // Reusing finished parts' buffers keeps the allocator from
            // growing the heap part by part: memory stays flat.
            None => read_part_into(body, size, done.buffers.pop().unwrap_or_default()).await?,
        };
        if data.is_empty() {
            break;
        }
        if number > MAX_PARTS {
            return Err(StoreError::Config(format!(
                "stream exceeds {MAX_PARTS} parts; raise --part-size"
            )));
        }
        let full = data.len() >= size;
        total += data.len() as u64;
        let uploader = Arc::clone(&uploader);
        let part_number = number;
        tasks.spawn(async move {
            let receipt = with_retries(&config, part_number, || {
                uploader.upload_part(part_number, data.clone())
            })
            .await;
            drop(permit);
            receipt.map(|receipt| Finished {
                number: part_number,
                receipt,
                data,
            })
        });
        number += 1;
        if !full {
            break;
        }
    }
    while let Some(joined) = tasks.join_next().await {
        done.add(joined_result(joined)?);
    }
    let mut receipts = done.receipts;
    receipts.sort_by_key(|(n, _)| *n);
    Ok((receipts.into_iter().map(|(_, r)| r).collect(), total))
}

/// A part that was uploaded, with its buffer to recycle.
struct Finished<R> {
    number: u32,
    receipt: R,
    data: Bytes,
}

/// Receipts so far, and buffers free for the next parts.
struct Done<R> {
    receipts: Vec<(u32, R)>,
    buffers: Vec<BytesMut>,
}

impl<R> Done<R> {
    fn add(&mut self, finished: Finished<R>) {
        self.receipts.push((finished.number, finished.receipt));
        // Only if the upload kept no reference to it.
        if let Ok(buffer) = finished.data.try_into_mut() {
            self.buffers.push(buffer);
        }
    }
}

/// Waits for `weight` free slots, collecting finished parts (and failing fast
/// on a failed one) while it waits.
async fn acquire<R>(
    slots: &Arc<Semaphore>,
    weight: u32,
    tasks: &mut JoinSet<Result<Finished<R>, StoreError>>,
    done: &mut Done<R>,
) -> Result<tokio::sync::OwnedSemaphorePermit, StoreError>
where
    R: Send + 'static,
{
    while let Some(joined) = tasks.try_join_next() {
        done.add(joined_result(joined)?);
    }
    loop {
        tokio::select! {
            permit = Arc::clone(slots).acquire_many_owned(weight) => {
                return permit.map_err(|_| StoreError::Config("upload slots closed".into()));
            }
            Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                done.add(joined_result(joined)?);
            }
        }
    }
}

fn joined_result<T>(
    joined: Result<Result<T, StoreError>, tokio::task::JoinError>,
) -> Result<T, StoreError> {
    joined.map_err(|e| StoreError::Request {
        store: "upload".into(),
        detail: format!("part upload task failed: {e}"),
    })?
}

/// Runs `attempt` until it succeeds, `max_attempts` are spent, or the store
/// has failed for `retry_for` ([`super::retry::Outage`]), backing off
/// exponentially (250 ms, 500 ms, … capped at 8 s) with jitter. Configuration
/// errors (missing bucket, denied access) are not retried.
pub async fn with_retries<T, F, Fut>(
    config: &MultipartConfig,
    part: u32,
    mut attempt: F,
) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let outage = Outage::new(config.retry_for);
    let mut tries = 0u32;
    loop {
        tries += 1;
        let e = match attempt().await {
            Ok(v) => return Ok(v),
            Err(e)
                if e.is_configuration()
                    || matches!(e, StoreError::AlreadyExists { .. })
                    || tries >= config.max_attempts.max(1) =>
            {
                return Err(e)
            }
            Err(e) => e,
        };
        let delay = backoff(tries);
        match outage.failed(tokio::time::Instant::now().into_std(), delay) {
            Verdict::Retry { .. } => {
                tracing::warn!(part, attempt = tries, retry_in_ms = delay.as_millis() as u64, error = %e, "store request failed; retrying");
                tokio::time::sleep(delay).await;
            }
            Verdict::GiveUp { lasted } => return Err(e.gave_up_after(lasted, config.retry_for)),
        }
    }
}

pub(super) fn backoff(tries: u32) -> Duration {
    let base = 250u64
        .saturating_mul(1 << tries.saturating_sub(1).min(5))
        .min(8_000);
    let mut jitter = [0u8; 2];
    let jitter_ms = match getrandom::fill(&mut jitter) {
        Ok(()) => u64::from(u16::from_le_bytes(jitter)) % (base / 4 + 1),
        Err(_) => 0,
    };
    Duration::from_millis(base + jitter_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    #[test]
    fn part_size_doubles_every_thousand_parts_and_caps() {
        let c = MultipartConfig {
            base_part_size: 8 << 20,
            max_in_flight: 4,
            max_attempts: 3,
            retry_for: Duration::from_secs(60),
        };
        assert_eq!(c.part_size_for(1), 8 << 20);
        assert_eq!(c.part_size_for(1000), 8 << 20);
        assert_eq!(c.part_size_for(1001), 16 << 20);
        assert_eq!(c.part_size_for(10_000), 4096 << 20);
        let capacity: u64 = (1..=MAX_PARTS).map(|n| c.part_size_for(n) as u64).sum();
        assert!(
            capacity > 5 * (1u64 << 40),
            "10,000 parts must hold a 5 TiB object, hold {capacity}"
        );
        let huge = MultipartConfig {
            base_part_size: 1 << 30,
            ..c
        };
        assert_eq!(huge.part_size_for(9_000), MAX_PART_SIZE);
    }

    #[test]
    fn in_flight_shrinks_as_parts_grow() {
        let c = MultipartConfig {
            base_part_size: 8 << 20,
            max_in_flight: 4,
            max_attempts: 3,
            retry_for: Duration::from_secs(60),
        };
        assert_eq!(c.in_flight_for(8 << 20), 4);
        assert_eq!(c.in_flight_for(16 << 20), 2);
        assert_eq!(c.in_flight_for(64 << 20), 1);
    }

    struct Recorder {
        parts: Mutex<Vec<(u32, usize)>>,
        failures_left: AtomicUsize,
        concurrent: AtomicUsize,
        max_concurrent: AtomicUsize,
    }

    #[async_trait]
    impl PartUploader for Recorder {
        type Receipt = u32;
        async fn upload_part(&self, number: u32, data: Bytes) -> Result<u32, StoreError> {
            let now = self.concurrent.fetch_add(1, Ordering::SeqCst) + 1;
            self.max_concurrent.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(5)).await;
            self.concurrent.fetch_sub(1, Ordering::SeqCst);
            if self.failures_left.load(Ordering::SeqCst) > 0 {
                self.failures_left.fetch_sub(1, Ordering::SeqCst);
                return Err(StoreError::Request {
                    store: "test".into(),
                    detail: "flaky".into(),
                });
            }
            self.parts.lock().expect("lock").push((number, data.len()));
            Ok(number)
        }
    }

    fn recorder(failures: usize) -> Arc<Recorder> {
        Arc::new(Recorder {
            parts: Mutex::new(Vec::new()),
            failures_left: AtomicUsize::new(failures),
            concurrent: AtomicUsize::new(0),
            max_concurrent: AtomicUsize::new(0),
        })
    }

    #[tokio::test(start_paused = true)]
    async fn uploads_every_byte_in_order_with_bounded_concurrency_and_retries() {
        let config = MultipartConfig {
            base_part_size: 1000,
            max_in_flight: 3,
            max_attempts: 5,
            retry_for: Duration::from_secs(60),
        };
        let data: Vec<u8> = (0..10_500u32).map(|i| (i % 251) as u8).collect();
        let mut body: &[u8] = &data;
        let first = read_part(&mut body, 1000).await.expect("first part");
        let rec = recorder(2);
        let (receipts, total) = upload_parts(Arc::clone(&rec), first, &mut body, config)
            .await
            .expect("upload");
        assert_eq!(total, 10_500);
        assert_eq!(receipts, (1..=11).collect::<Vec<u32>>());
        let mut parts = rec.parts.lock().expect("lock").clone();
        parts.sort();
        assert_eq!(parts.last(), Some(&(11, 500)));
        assert!(rec.max_concurrent.load(Ordering::SeqCst) <= 3);
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_max_attempts() {
        let config = MultipartConfig {
            base_part_size: 100,
            max_in_flight: 2,
            max_attempts: 2,
            retry_for: Duration::from_secs(60),
        };
        let data = vec![7u8; 450];
        let mut body: &[u8] = &data;
        let first = read_part(&mut body, 100).await.expect("first part");
        let rec = recorder(usize::MAX);
        let err = upload_parts(rec, first, &mut body, config)
            .await
            .expect_err("must fail");
        assert!(err.to_string().contains("flaky"), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_dead_store_is_given_up_on_within_the_allowance() {
        let config = MultipartConfig {
            max_attempts: 1_000,
            retry_for: Duration::from_secs(10),
            ..MultipartConfig::default()
        };
        let started = tokio::time::Instant::now();
        let err = with_retries(&config, 1, || async {
            Err::<(), _>(StoreError::Unreachable {
                store: "s3://b".into(),
                detail: "connection refused".into(),
            })
        })
        .await
        .expect_err("gives up");
        assert!(
            started.elapsed() <= Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
        assert!(err.to_string().contains("--store-retry-for 10s"), "{err}");
        assert!(
            !err.is_configuration(),
            "a store failure, not a configuration error"
        );
    }

    #[tokio::test]
    async fn body_errors_abort_the_upload() {
        struct Broken;
        impl AsyncRead for Broken {
            fn poll_read(
                self: std::pin::Pin<&mut Self>,
                _: &mut std::task::Context<'_>,
                _: &mut tokio::io::ReadBuf<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::task::Poll::Ready(Err(std::io::Error::other("pg_dump exited with status 1")))
            }
        }
        let config = MultipartConfig {
            base_part_size: 100,
            max_in_flight: 2,
            max_attempts: 2,
            retry_for: Duration::from_secs(60),
        };
        let err = upload_parts(
            recorder(0),
            Bytes::from(vec![1u8; 100]),
            &mut Broken,
            config,
        )
        .await
        .expect_err("a broken body fails the upload");
        assert!(err.to_string().contains("pg_dump exited"), "{err}");
    }

    /// Records the lifecycle calls; `complete` fails `complete_failures` times.
    struct Lifecycle {
        parts: Arc<Recorder>,
        calls: Mutex<Vec<String>>,
        complete_failures: AtomicUsize,
    }

    #[async_trait]
    impl ChunkedUpload for Lifecycle {
        type Parts = Recorder;
        async fn put_whole(&self, data: Bytes) -> Result<(), StoreError> {
            self.calls
                .lock()
                .expect("lock")
                .push(format!("whole {}", data.len()));
            Ok(())
        }
        async fn start(&self) -> Result<Arc<Recorder>, StoreError> {
            self.calls.lock().expect("lock").push("start".into());
            Ok(Arc::clone(&self.parts))
        }
        async fn complete(&self, _: &Recorder, receipts: &[u32]) -> Result<(), StoreError> {
            self.calls
                .lock()
                .expect("lock")
                .push(format!("complete {receipts:?}"));
            if self.complete_failures.load(Ordering::SeqCst) > 0 {
                self.complete_failures.fetch_sub(1, Ordering::SeqCst);
                return Err(StoreError::Request {
                    store: "test".into(),
                    detail: "flaky".into(),
                });
            }
            Ok(())
        }
        async fn abort(&self, _: &Recorder) {
            self.calls.lock().expect("lock").push("abort".into());
        }
    }

    fn lifecycle(complete_failures: usize) -> Lifecycle {
        Lifecycle {
            parts: recorder(0),
            calls: Mutex::new(Vec::new()),
            complete_failures: AtomicUsize::new(complete_failures),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_lifecycle_puts_short_streams_whole_and_aborts_on_any_error() {
        let config = MultipartConfig {
            base_part_size: 10,
            max_in_flight: 2,
            max_attempts: 2,
            retry_for: Duration::from_secs(60),
        };
        let calls = |l: &Lifecycle| l.calls.lock().expect("lock").clone();

        let short = lifecycle(0);
        assert_eq!(
            upload(&short, &mut &b"abc"[..], config)
                .await
                .expect("short"),
            3
        );
        assert_eq!(calls(&short), ["whole 3"]);

        let long = lifecycle(1);
        let data = vec![1u8; 25];
        assert_eq!(
            upload(&long, &mut data.as_slice(), config)
                .await
                .expect("long"),
            25
        );
        assert_eq!(
            calls(&long),
            ["start", "complete [1, 2, 3]", "complete [1, 2, 3]"],
            "a failed complete is retried"
        );

        let hopeless = lifecycle(5);
        assert!(upload(&hopeless, &mut data.as_slice(), config)
            .await
            .is_err());
        assert_eq!(calls(&hopeless).last().map(String::as_str), Some("abort"));

        struct Dies(usize);
        impl AsyncRead for Dies {
            fn poll_read(
                mut self: std::pin::Pin<&mut Self>,
                _: &mut std::task::Context<'_>,
                buf: &mut tokio::io::ReadBuf<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                if self.0 == 0 {
                    return std::task::Poll::Ready(Err(std::io::Error::other("dump died")));
                }
                let n = self.0.min(buf.remaining());
                buf.put_slice(&vec![0u8; n]);
                self.0 -= n;
                std::task::Poll::Ready(Ok(()))
            }
        }
        let broken = lifecycle(0);
        let err = upload(&broken, &mut Dies(15), config)
            .await
            .expect_err("body error");
        assert!(err.to_string().contains("dump died"), "{err}");
        assert_eq!(calls(&broken), ["start", "abort"]);
    }
}
