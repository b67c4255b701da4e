//! SIGTERM and SIGINT: Kubernetes sends SIGTERM on a deadline, an eviction
//! or a node drain, then SIGKILL after the grace period (30 s by default).
//!
//! A signal cancels one process-wide token. Every data stream of a run (the
//! source being backed up, the artifact being restored) is wrapped in
//! [`Interruptible`], so the signal surfaces as a read error where the run
//! already handles failures: uploads are aborted, partial files removed,
//! restores rolled back, child processes stopped. `run` then records the
//! outcome as `interrupted` and exits with 128 + the signal number.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::OnceLock;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

static SIGNAL: AtomicI32 = AtomicI32::new(0);
static TOKEN: OnceLock<CancellationToken> = OnceLock::new();

fn token() -> &'static CancellationToken {
    TOKEN.get_or_init(CancellationToken::new)
}

/// Starts listening for SIGTERM and SIGINT. Call once, inside the runtime.
pub fn install() {
    use tokio::signal::unix::{signal, SignalKind};
    for (kind, number) in [(SignalKind::terminate(), 15), (SignalKind::interrupt(), 2)] {
        match signal(kind) {
            Ok(mut stream) => {
                tokio::spawn(async move {
                    if stream.recv().await.is_some() {
                        trigger(number);
                    }
                });
            }
            Err(e) => tracing::warn!(error = %e, signal = number, "cannot listen for the signal"),
        }
    }
}

/// Records `number` as the signal that stopped the run and cancels every
/// interruptible stream. The first signal wins.
pub fn trigger(number: i32) {
    if SIGNAL
        .compare_exchange(0, number, Ordering::SeqCst, Ordering::SeqCst)
        .is_ok()
    {
        tracing::warn!(
            signal = signal_name(number),
            "stopping: undoing what this run started"
        );
    }
    token().cancel();
}

/// The signal that stopped the run, if one did.
pub fn received() -> Option<i32> {
    match SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        n => Some(n),
    }
}

/// A token cancelled by a signal and by whoever holds it (the parts of a
/// parallel run stop together when one fails).
pub fn child_token() -> CancellationToken {
    token().child_token()
}

/// Resolves once a signal arrived.
pub async fn cancelled() {
    token().cancelled().await
}

pub fn signal_name(number: i32) -> &'static str {
    match number {
        15 => "SIGTERM",
        2 => "SIGINT",
        _ => "a signal",
    }
}

/// A reader that fails with an "interrupted" error as soon as a signal
/// arrives, even while the inner reader is waiting.
pub struct Interruptible<R> {
    inner: R,
    cancelled: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl<R> Interruptible<R> {
    /// Fails once the process receives SIGTERM or SIGINT.
    pub fn new(inner: R) -> Self {
        Self::until(inner, token().clone())
    }

    /// Fails once `token` is cancelled.
    pub fn until(inner: R, token: CancellationToken) -> Self {
        Interruptible {
            inner,
            cancelled: Box::pin(token.cancelled_owned()),
        }
    }
}

fn interrupted_error() -> io::Error {
    let name = received().map(signal_name).unwrap_or("a signal");
    io::Error::other(format!("interrupted by {name}"))
}

impl<R: AsyncRead + Unpin> AsyncRead for Interruptible<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.cancelled.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(interrupted_error()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn a_signal_fails_a_waiting_read() {
        // A reader that never yields data, like a dump waiting on a lock.
        let (_keep, quiet) = tokio::io::duplex(64);
        let token = CancellationToken::new();
        let mut reader = Interruptible::until(quiet, token.clone());
        let read = tokio::spawn(async move {
            let mut buf = [0u8; 8];
            reader.read(&mut buf).await
        });
        tokio::task::yield_now().await;
        assert!(!read.is_finished());
        token.cancel();
        let err = read.await.expect("join").expect_err("interrupted");
        assert!(err.to_string().contains("interrupted"), "{err}");
    }
}
