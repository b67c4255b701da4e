//! Whether the runner keeps its probes on schedule, for `/readyz`. A runner
//! whose rounds fall behind writes stale observations, and the controller
//! sees ObserversStale; `/healthz` (alive) would not show it, `/readyz`
//! does. Delays a namespace causes itself (waiting for its own share of
//! the permits) are not the runner's and do not count: otherwise one
//! tenant's slow targets could make the runner look unready. Pure: the
//! probe loops report, the HTTP server asks.

use std::time::{Duration, Instant};

/// A late round keeps the runner unready for this long.
pub const LATE_MEMORY: Duration = Duration::from_secs(60);

/// How much later than allowed a round started, if it was. A round is due
/// one `period` after the previous one started, and may start up to one
/// more period plus the (capped) `timeout` after that; `own_wait` is the
/// time the previous round waited for its namespace's own share, which
/// does not count against the runner.
pub fn round_lateness(
    previous_start: Instant,
    start: Instant,
    period: Duration,
    timeout: Duration,
    own_wait: Duration,
) -> Option<Duration> {
    let due = previous_start + period;
    let late = start
        .saturating_duration_since(due)
        .saturating_sub(own_wait);
    (late > period + timeout).then_some(late)
}

/// Whether a wait for a runner-wide permit means the runner is too busy:
/// a wait longer than the loop's period misses a round.
pub fn permit_wait_too_long(global_wait: Duration, period: Duration) -> bool {
    global_wait > period
}

/// The runner's schedule record: the latest lateness seen, and when.
#[derive(Debug, Clone, Default)]
pub struct Readiness {
    last_late: Option<(Instant, String)>,
}

impl Readiness {
    /// Records that a probe loop fell behind; `what` is a short sentence
    /// naming the failover (`team-a/pg: round started 31 s late`).
    pub fn late(&mut self, at: Instant, what: String) {
        self.last_late = Some((at, what));
    }

    /// Ready when the watch has synced and no loop fell behind within
    /// [`LATE_MEMORY`]; else the reason, for a 503's body.
    pub fn verdict(&self, synced: bool, now: Instant) -> Result<(), String> {
        if !synced {
            return Err("watch not synced".into());
        }
        match &self.last_late {
            Some((at, what)) if now.saturating_duration_since(*at) < LATE_MEMORY => {
                Err(format!("probes behind schedule: {what}"))
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn rounds_are_late_only_beyond_a_period_and_the_timeout() {
        let t0 = Instant::now();
        let period = 10 * S;
        let timeout = 3 * S;
        // On time, a little late, and late within the allowance.
        assert_eq!(
            round_lateness(t0, t0 + 10 * S, period, timeout, Duration::ZERO),
            None
        );
        assert_eq!(
            round_lateness(t0, t0 + 14 * S, period, timeout, Duration::ZERO),
            None
        );
        assert_eq!(
            round_lateness(t0, t0 + 23 * S, period, timeout, Duration::ZERO),
            None
        );
        assert_eq!(
            round_lateness(t0, t0 + 24 * S, period, timeout, Duration::ZERO),
            Some(14 * S)
        );
        // The namespace's own waiting is not the runner's lateness.
        assert_eq!(
            round_lateness(t0, t0 + 40 * S, period, timeout, 20 * S),
            None
        );
        // A round that started early (a restarted loop) is not late.
        assert_eq!(
            round_lateness(t0 + 5 * S, t0, period, timeout, Duration::ZERO),
            None
        );
    }

    #[test]
    fn permit_waits_longer_than_a_period_are_too_long() {
        assert!(!permit_wait_too_long(5 * S, 10 * S));
        assert!(permit_wait_too_long(11 * S, 10 * S));
    }

    #[test]
    fn ready_after_sync_and_a_minute_after_the_last_late_round() {
        let t0 = Instant::now();
        let mut r = Readiness::default();
        assert_eq!(r.verdict(false, t0), Err("watch not synced".into()));
        assert_eq!(r.verdict(true, t0), Ok(()));
        r.late(t0, "team-b/pg: round started 31 s late".into());
        assert_eq!(
            r.verdict(true, t0 + 59 * S),
            Err("probes behind schedule: team-b/pg: round started 31 s late".into())
        );
        assert_eq!(r.verdict(true, t0 + 60 * S), Ok(()));
        assert_eq!(r.verdict(false, t0 + 5 * S), Err("watch not synced".into()));
    }
}
