//! Watch streams that recover within seconds of the API server's return, and
//! a record of which watches are failing now, for `/readyz`.
//!
//! kube's `default_backoff` (client-go's reflector numbers: 0.8 s doubling to
//! 30 s, with jitter up to twice that) is kind to a struggling API server but
//! left the backup controller idle for minutes after a restart: its three
//! watches fed one Controller whose trigger back-off grew with every error
//! of any of them and was reset only by a successful event, so each watch's
//! last stale error after the restart cost another full pause. Every watch
//! here backs off from 250 ms to at most [`BACKOFF_MAX`], with jitter, and
//! the Controllers' trigger back-off is the same.

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt, TryStream};
use kube::runtime::utils::{Backoff, StreamBackoff};

/// The longest pause between two attempts of a failing watch.
pub const BACKOFF_MAX: Duration = Duration::from_secs(4);
const BACKOFF_MIN: Duration = Duration::from_millis(250);
/// A watch whose last error is older than this is working again even when
/// no event has arrived since (a resumed watch of a quiet resource yields
/// nothing): a failing watch errs at least every [`BACKOFF_MAX`] plus jitter.
const QUIET_AFTER_ERROR: Duration = Duration::from_secs(12);

/// Exponential back-off capped at [`BACKOFF_MAX`], each pause between half
/// and all of its step ("equal jitter"), so replicas do not retry in step.
#[derive(Debug, Clone)]
pub struct BoundedBackoff {
    next: Duration,
    seed: u64,
}

impl Default for BoundedBackoff {
    fn default() -> Self {
        BoundedBackoff {
            next: BACKOFF_MIN,
            seed: seed(),
        }
    }
}

/// A seed that differs between processes and between backoffs.
fn seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(Instant::now().elapsed().as_nanos());
    hasher.finish() | 1
}

impl Iterator for BoundedBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        // xorshift: cheap and good enough to spread retries.
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let step = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        let fraction = (self.seed % 1000) as u32;
        Some(step / 2 + step / 2 * fraction / 1000)
    }
}

impl Backoff for BoundedBackoff {
    fn reset(&mut self) {
        self.next = BACKOFF_MIN;
    }
}

/// Whether one watch works, from what it yielded last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WatchState {
    Working,
    FailingSince { last_error: Instant },
}

impl WatchState {
    fn healthy(self, now: Instant) -> bool {
        match self {
            WatchState::Working => true,
            WatchState::FailingSince { last_error } => {
                now.saturating_duration_since(last_error) >= QUIET_AFTER_ERROR
            }
        }
    }
}

/// Every watch of the process by name. One process-wide record: the watches
/// are built in several modules and `/readyz` reads them all.
fn registry() -> &'static Mutex<BTreeMap<&'static str, WatchState>> {
    static WATCHES: OnceLock<Mutex<BTreeMap<&'static str, WatchState>>> = OnceLock::new();
    WATCHES.get_or_init(Default::default)
}

fn record(name: &'static str, ok: bool) {
    let state = if ok {
        WatchState::Working
    } else {
        WatchState::FailingSince {
            last_error: Instant::now(),
        }
    };
    if let Ok(mut watches) = registry().lock() {
        watches.insert(name, state);
    }
}

/// The watches failing now, by name; empty when all work.
pub fn failing() -> Vec<&'static str> {
    let now = Instant::now();
    registry()
        .lock()
        .map(|watches| {
            watches
                .iter()
                .filter(|(_, state)| !state.healthy(now))
                .map(|(name, _)| *name)
                .collect()
        })
        .unwrap_or_default()
}

/// Records each result of `watch` under `name` for `/readyz`, and after an
/// error pauses it with a [`BoundedBackoff`] before the next attempt.
pub fn recovering<S>(
    name: &'static str,
    watch: S,
) -> impl Stream<Item = Result<S::Ok, S::Error>> + Send
where
    S: TryStream<Error = kube::runtime::watcher::Error> + Send,
{
    use futures::TryStreamExt as _;
    record(name, true);
    let stream = watch.into_stream().inspect(move |result| match result {
        Ok(_) => record(name, true),
        Err(e) => {
            let error = crate::error::watch_error(e);
            tracing::debug!(watch = name, %error, "watch failed; retrying");
            record(name, false);
        }
    });
    StreamBackoff::new(stream, BoundedBackoff::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_the_cap_with_jitter_and_resets() {
        let mut backoff = BoundedBackoff::default();
        let pauses: Vec<Duration> = (&mut backoff).take(12).collect();
        assert!(pauses[0] >= BACKOFF_MIN / 2 && pauses[0] <= BACKOFF_MIN);
        assert!(pauses.iter().all(|p| *p <= BACKOFF_MAX), "{pauses:?}");
        assert!(
            pauses[8..].iter().all(|p| *p >= BACKOFF_MAX / 2),
            "{pauses:?}"
        );
        assert!(
            pauses[8..].windows(2).any(|w| w[0] != w[1]),
            "jitter spreads the pauses: {pauses:?}"
        );
        backoff.reset();
        assert!(backoff.next().is_some_and(|p| p <= BACKOFF_MIN));
    }

    #[test]
    fn a_failing_watch_is_unhealthy_until_an_event_or_a_quiet_spell() {
        let now = Instant::now();
        let failing = WatchState::FailingSince { last_error: now };
        assert!(!failing.healthy(now));
        assert!(!failing.healthy(now + BACKOFF_MAX * 2));
        assert!(failing.healthy(now + QUIET_AFTER_ERROR));
        assert!(WatchState::Working.healthy(now));
    }

    #[test]
    fn the_quiet_spell_outlasts_the_longest_retry_pause() {
        // A watch that still fails errs again within BACKOFF_MAX (plus the
        // time a refused request takes); it must not read as healthy
        // between two of its errors.
        assert!(QUIET_AFTER_ERROR >= BACKOFF_MAX * 2);
    }

    #[test]
    fn results_are_recorded_by_name() {
        record("test-watch", false);
        assert!(failing().contains(&"test-watch"));
        record("test-watch", true);
        assert!(!failing().contains(&"test-watch"));
    }
}
