//! How long a store may keep failing before an operation gives up
//! (`--store-retry-for`). Every retry loop of every store measures the same
//! thing: the time since the first failure *after the last progress*. A long
//! upload that hits a blip after an hour still gets its full allowance; a
//! store that stopped answering is reported within the allowance (plus the
//! one attempt in flight), not after minutes of nested retries.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Default of `--store-retry-for`: long enough to ride out what stores do
/// on a normal day (a load balancer failing over, throttling bursts, a DNS
/// hiccup: seconds to tens of seconds), short enough that a dead store is
/// reported about a minute after it died, while a CronJob's next run is
/// still far away.
pub const DEFAULT_RETRY_FOR: Duration = Duration::from_secs(60);

/// How long a store request or download may go without a byte before it
/// counts as a failure (and is retried within the same allowance): a store
/// that accepts a connection and then stops answering never fails on its
/// own, so without this a run could hang far past `--store-retry-for`.
/// Half the allowance leaves the other half for reconnecting; 30 s at most
/// because a healthy store sends something far more often than that even
/// when it is slow; 5 s at least so a busy store is not cut off.
pub fn idle_timeout(retry_for: Duration) -> Duration {
    (retry_for / 2).clamp(Duration::from_secs(5), Duration::from_secs(30))
}

/// The slowest upload that still counts as moving: 512 KiB/s (4 Mbit/s).
const SLOWEST_UPLOAD: u64 = 512 * 1024;

/// How long one request that sends `bytes` may take before it counts as
/// hung: the idle timeout plus the time to send them at [`SLOWEST_UPLOAD`].
/// SDKs hand a part to the connection in one piece and then wait for the
/// answer, so "no byte for N s" cannot be seen from here; a deadline that
/// grows with the part is the closest that does not cut off slow links.
pub fn send_timeout(retry_for: Duration, bytes: usize) -> Duration {
    idle_timeout(retry_for) + Duration::from_secs((bytes as u64).div_ceil(SLOWEST_UPLOAD))
}

/// Runs one store request that sends `bytes`, failing it as unreachable if
/// it takes longer than [`send_timeout`]: for clients whose transport cannot
/// be given a timeout per request (the Azure SDK's).
pub async fn bounded<T>(
    retry_for: Duration,
    bytes: usize,
    store: &str,
    what: &str,
    request: impl std::future::Future<Output = Result<T, super::StoreError>>,
) -> Result<T, super::StoreError> {
    let limit = send_timeout(retry_for, bytes);
    tokio::time::timeout(limit, request)
        .await
        .unwrap_or_else(|_| {
            Err(super::StoreError::Unreachable {
                store: store.to_string(),
                detail: format!("{what}: no answer within {}", describe(limit)),
            })
        })
}

/// One operation's failure streak: when it started, if it is running.
#[derive(Debug)]
pub struct Outage {
    limit: Duration,
    since: Mutex<Option<Instant>>,
}

/// What to do after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Try again; this much of the allowance is left.
    Retry { left: Duration },
    /// The store has failed for `lasted` without progress: give up.
    GiveUp { lasted: Duration },
}

impl Outage {
    pub fn new(limit: Duration) -> Self {
        Outage {
            limit,
            since: Mutex::new(None),
        }
    }

    pub fn limit(&self) -> Duration {
        self.limit
    }

    fn since(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        // A poisoned lock only means another thread panicked mid-update of
        // an `Option<Instant>`; the value is still meaningful.
        self.since.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Data moved: whatever failed before is over.
    pub fn progress(&self) {
        *self.since() = None;
    }

    /// Records a failure at `now` and says whether another attempt, after
    /// `delay`, still fits in the allowance.
    pub fn failed(&self, now: Instant, delay: Duration) -> Verdict {
        let since = *self.since().get_or_insert(now);
        let lasted = now.saturating_duration_since(since);
        let spent = lasted + delay;
        if spent < self.limit {
            Verdict::Retry {
                left: self.limit - spent,
            }
        } else {
            Verdict::GiveUp { lasted }
        }
    }

    /// What is left of the allowance at `now`; `None` while nothing fails.
    pub fn remaining(&self, now: Instant) -> Option<Duration> {
        self.since().map(|since| {
            self.limit
                .saturating_sub(now.saturating_duration_since(since))
        })
    }
}

/// Describes a duration for messages: `12s`, `1m30s`.
pub fn describe(d: Duration) -> String {
    let secs = d.as_secs();
    match (secs / 60, secs % 60) {
        (0, s) => format!("{s}s"),
        (m, 0) => format!("{m}m"),
        (m, s) => format!("{m}m{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_streak_gives_up_once_the_allowance_is_spent() {
        let outage = Outage::new(Duration::from_secs(10));
        let t0 = Instant::now();
        let s = Duration::from_secs;
        assert_eq!(outage.remaining(t0), None);
        assert_eq!(outage.failed(t0, s(1)), Verdict::Retry { left: s(9) });
        assert_eq!(outage.remaining(t0 + s(4)), Some(s(6)));
        assert_eq!(
            outage.failed(t0 + s(6), s(2)),
            Verdict::Retry { left: s(2) }
        );
        // A retry whose back-off would end past the allowance is not started.
        assert_eq!(
            outage.failed(t0 + s(9), s(2)),
            Verdict::GiveUp { lasted: s(9) }
        );
    }

    #[test]
    fn progress_starts_a_new_allowance() {
        let outage = Outage::new(Duration::from_secs(10));
        let t0 = Instant::now();
        let s = Duration::from_secs;
        assert!(matches!(outage.failed(t0, s(1)), Verdict::Retry { .. }));
        outage.progress();
        // An hour later, a new blip: the full allowance again.
        assert_eq!(
            outage.failed(t0 + s(3600), s(1)),
            Verdict::Retry { left: s(9) }
        );
    }

    #[test]
    fn durations_read_as_typed() {
        assert_eq!(describe(Duration::from_secs(12)), "12s");
        assert_eq!(describe(Duration::from_secs(60)), "1m");
        assert_eq!(describe(Duration::from_secs(90)), "1m30s");
    }
}
