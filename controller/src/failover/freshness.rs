//! When this controller last heard from each vantage, by its own clock.
//!
//! A runner's `observedAt` is the runner's clock: a runner 60 s behind
//! would look stale forever, one 120 s ahead would look fresh for two
//! minutes after it died. So the runner's timestamps are never compared
//! with ours: a vantage is *heard* at the moment this controller sees its
//! entry in `status.observations` change (a live runner rewrites it at
//! least every two periods, with a new `observedAt`), and it is stale once
//! it has not been heard for `staleAfter`.
//!
//! The record lives in memory only. After a restart or a leader change the
//! controller has not seen anything change yet; every expected vantage then
//! gets one staleness period from this controller's first sight of it (see
//! [`Verdict::Waiting`]).
//!
//! Its times are monotonic ([`Instant`], passed in by the caller): a step of
//! the wall clock (NTP, a VM resumed) neither keeps a frozen vote alive
//! longer (a step back) nor makes every vantage stale at once (a step
//! forward).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use vertice_crds::failover::VantageObservation;

/// Forget a failover not looked at for this long (it was deleted, or it
/// moved out of the watched namespaces).
const FORGET_AFTER: Duration = Duration::from_secs(3600);
/// Look for forgotten failovers at most this often.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// What this controller knows about one vantage of one failover.
#[derive(Clone, Debug, PartialEq)]
pub struct Heard {
    /// When this controller first expected the vantage (with or without an
    /// entry): the start of its grace.
    pub first_seen: Instant,
    /// When this controller last saw the vantage's entry change; None until
    /// it has seen one change.
    pub changed_at: Option<Instant>,
}

/// A vantage's standing at one moment, by the controller's clock.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Verdict {
    /// Heard within `staleAfter`; its votes count until `stale_at`.
    Fresh { stale_at: Instant },
    /// Not heard yet by this controller, but within one staleness period
    /// of its first sight: neither stale nor voting.
    ///
    /// Its entry, if any, does not vote: this controller has not seen it
    /// change, so it may be the frozen word of a runner that died long ago
    /// (a dead region's runner says nothing more). A live runner rewrites
    /// its entry within two periods, well inside the grace, so waiting
    /// costs at most two periods of detection after a restart or leader
    /// change, while trusting could keep a dead runner's votes for a whole
    /// period.
    Waiting { until: Instant },
    /// Not heard for longer than `staleAfter` (or, for a vantage not heard
    /// yet, for longer than its grace).
    Stale,
}

/// The verdict on one vantage at `now`.
pub fn judge(heard: &Heard, stale_after: Duration, now: Instant) -> Verdict {
    match heard.changed_at {
        Some(at) if now.saturating_duration_since(at) <= stale_after => Verdict::Fresh {
            stale_at: at + stale_after,
        },
        Some(_) => Verdict::Stale,
        None if now.saturating_duration_since(heard.first_seen) <= stale_after => {
            Verdict::Waiting {
                until: heard.first_seen + stale_after,
            }
        }
        None => Verdict::Stale,
    }
}

/// What this controller knows of one failover's vantages.
#[derive(Clone, Debug, PartialEq)]
pub struct Sighting {
    /// When this controller first looked at the failover: no earlier than
    /// its creation, by our own clock. Runners get one staleness period
    /// from here to report at all.
    pub since: Instant,
    /// Per expected vantage.
    pub vantages: HashMap<String, Heard>,
}

/// The last entry seen for one vantage, and what was learnt from it.
#[derive(Clone, Debug)]
struct Seen {
    entry: Option<VantageObservation>,
    heard: Heard,
}

#[derive(Debug)]
struct FailoverSeen {
    since: Instant,
    looked_at: Instant,
    vantages: HashMap<String, Seen>,
}

/// Per failover (by uid) and vantage: the last entry seen and when it
/// changed. Fed by the reconciler on every reconcile, leader or not, so a
/// new leader already knows which runners are alive.
#[derive(Debug, Default)]
pub struct Tracker {
    failovers: HashMap<String, FailoverSeen>,
    swept_at: Option<Instant>,
}

impl Tracker {
    /// Records the observations as read at `now` and returns what is known
    /// of each `expected` vantage. Entries of vantages not expected (taken
    /// out of `policy.vantages`) are still followed, so one put back later
    /// is judged by what it really did meanwhile; a vantage with neither an
    /// entry nor a place in the spec is forgotten.
    pub fn observe(
        &mut self,
        uid: &str,
        expected: &[String],
        observations: &[VantageObservation],
        now: Instant,
    ) -> Sighting {
        self.sweep(now);
        let known = self.failovers.contains_key(uid);
        let failover = self
            .failovers
            .entry(uid.to_string())
            .or_insert_with(|| FailoverSeen {
                since: now,
                looked_at: now,
                vantages: HashMap::new(),
            });
        failover.looked_at = now;
        let reporting = observations.iter().map(|o| &o.vantage);
        let followed: Vec<&String> =
            expected
                .iter()
                .chain(reporting)
                .fold(Vec::new(), |mut all, v| {
                    if !all.contains(&v) {
                        all.push(v);
                    }
                    all
                });
        failover.vantages.retain(|v, _| followed.contains(&v));
        for vantage in followed {
            let entry = observations.iter().find(|o| &o.vantage == vantage);
            match failover.vantages.get_mut(vantage) {
                Some(seen) => {
                    if entry != seen.entry.as_ref() {
                        seen.entry = entry.cloned();
                        // An entry that appeared or changed is a runner's
                        // write this controller saw; a removed one is not.
                        if entry.is_some() {
                            seen.heard.changed_at = Some(now);
                        }
                    }
                }
                None => {
                    // An entry that appears on a failover this controller
                    // already followed was written while it watched: heard.
                    // One present at first sight (after a restart) was not.
                    let changed_at = (known && entry.is_some()).then_some(now);
                    failover.vantages.insert(
                        vantage.clone(),
                        Seen {
                            entry: entry.cloned(),
                            heard: Heard {
                                first_seen: now,
                                changed_at,
                            },
                        },
                    );
                }
            }
        }
        Sighting {
            since: failover.since,
            vantages: expected
                .iter()
                .filter_map(|v| Some((v.clone(), failover.vantages.get(v)?.heard.clone())))
                .collect(),
        }
    }

    /// How many failovers are remembered.
    pub fn len(&self) -> usize {
        self.failovers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.failovers.is_empty()
    }

    fn sweep(&mut self, now: Instant) {
        if self
            .swept_at
            .is_some_and(|at| now.saturating_duration_since(at) < SWEEP_EVERY)
        {
            return;
        }
        self.swept_at = Some(now);
        self.failovers
            .retain(|_, f| now.saturating_duration_since(f.looked_at) < FORGET_AFTER);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use chrono::{DateTime, TimeZone, Utc};
    use vertice_crds::failover::ProbeObservation;

    use super::*;

    /// The monotonic clock at the start of every test (an Instant cannot be
    /// built from nothing; only durations from it matter).
    fn t0() -> Instant {
        static T0: OnceLock<Instant> = OnceLock::new();
        *T0.get_or_init(Instant::now)
    }

    /// The runner's wall-clock stamp for a moment of the test (its own
    /// clock, `skew` off ours).
    fn stamp(at: Instant, skew: i64) -> DateTime<Utc> {
        let base = Utc
            .with_ymd_and_hms(2026, 12, 1, 12, 0, 0)
            .single()
            .expect("time");
        let since = chrono::Duration::from_std(at - t0()).expect("short");
        base + since + chrono::Duration::seconds(skew)
    }

    fn entry(vantage: &str, at: Instant, skew: i64) -> VantageObservation {
        VantageObservation {
            vantage: vantage.into(),
            observed_at: stamp(at, skew),
            observed_generation: Some(1),
            replicas: vec![ProbeObservation {
                name: "a".into(),
                ok: true,
                consecutive_failures: 0,
                consecutive_successes: 2,
                success_ratio: 1.0,
                latency_ms: Some(1),
                reason: None,
            }],
        }
    }

    const LIMIT: u64 = 23;

    fn verdict(tracker: &mut Tracker, obs: &[VantageObservation], now: Instant) -> Verdict {
        let heard = tracker.observe("uid", &["eu".to_string()], obs, now);
        judge(&heard.vantages["eu"], secs(LIMIT), now)
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn a_live_runner_60_s_behind_stays_fresh() {
        let mut tracker = Tracker::default();
        let skew = -60;
        let mut now = t0();
        assert!(matches!(
            verdict(&mut tracker, &[], now),
            Verdict::Waiting { .. }
        ));
        for _ in 0..50 {
            // The runner writes every 10 s, stamped by its own slow clock.
            now += secs(10);
            let v = verdict(&mut tracker, &[entry("eu", now, skew)], now);
            assert_eq!(
                v,
                Verdict::Fresh {
                    stale_at: now + secs(LIMIT)
                }
            );
        }
    }

    #[test]
    fn a_runner_120_s_ahead_that_dies_is_stale_after_the_limit() {
        let mut tracker = Tracker::default();
        let skew = 120;
        let mut now = t0();
        verdict(&mut tracker, &[], now);
        let mut last = entry("eu", now, 0);
        for _ in 0..5 {
            now += secs(10);
            last = entry("eu", now, skew);
            verdict(&mut tracker, std::slice::from_ref(&last), now);
        }
        let died = now;
        // Its last entry stays in status, unchanged.
        now += secs(LIMIT);
        assert!(matches!(
            verdict(&mut tracker, std::slice::from_ref(&last), now),
            Verdict::Fresh { .. }
        ));
        now += secs(1);
        assert_eq!(
            verdict(&mut tracker, std::slice::from_ref(&last), now),
            Verdict::Stale
        );
        assert_eq!(now - died, secs(LIMIT + 1), "not 120 s later");
    }

    #[test]
    fn an_entry_present_at_first_sight_waits_one_period_and_never_votes_unchanged() {
        // After a restart: an old entry of a runner that died long ago.
        let mut tracker = Tracker::default();
        let now = t0();
        let frozen = [entry("eu", now, -3600)];
        assert_eq!(
            verdict(&mut tracker, &frozen, now),
            Verdict::Waiting {
                until: now + secs(LIMIT)
            }
        );
        assert!(matches!(
            verdict(&mut tracker, &frozen, now + secs(LIMIT)),
            Verdict::Waiting { .. }
        ));
        assert_eq!(
            verdict(&mut tracker, &frozen, now + secs(LIMIT + 1)),
            Verdict::Stale
        );
        // A live runner's next write makes it fresh at once.
        let later = now + secs(LIMIT + 5);
        assert!(matches!(
            verdict(&mut tracker, &[entry("eu", later, 0)], later),
            Verdict::Fresh { .. }
        ));
    }

    #[test]
    fn an_entry_written_while_watching_is_heard_at_once() {
        let mut tracker = Tracker::default();
        let now = t0();
        assert!(matches!(
            verdict(&mut tracker, &[], now),
            Verdict::Waiting { .. }
        ));
        // Never reported: stale one period after first sight.
        assert_eq!(
            verdict(&mut tracker, &[], now + secs(LIMIT + 1)),
            Verdict::Stale
        );
        let later = now + secs(30);
        assert!(matches!(
            verdict(&mut tracker, &[entry("eu", later, 0)], later),
            Verdict::Fresh { .. }
        ));
    }

    #[test]
    fn a_vantage_taken_out_of_the_spec_and_put_back_is_judged_by_its_writes() {
        let mut tracker = Tracker::default();
        let now = t0();
        let e = [entry("eu", now, 0)];
        let eu = ["eu".to_string()];
        tracker.observe("uid", &eu, &[], now);
        tracker.observe("uid", &eu, &e, now + secs(1));
        assert!(tracker
            .observe("uid", &[], &e, now + secs(2))
            .vantages
            .is_empty());
        // Put back 100 s later, its entry unchanged since: stale at once.
        let back = tracker.observe("uid", &eu, &e, now + secs(100)).vantages;
        assert_eq!(back["eu"].changed_at, Some(now + secs(1)));
        assert_eq!(
            judge(&back["eu"], secs(LIMIT), now + secs(100)),
            Verdict::Stale
        );
        // Taken out and its entry removed: forgotten, a new grace later.
        tracker.observe("uid", &[], &[], now + secs(101));
        let again = tracker.observe("uid", &eu, &[], now + secs(102)).vantages;
        assert_eq!(
            again["eu"],
            Heard {
                first_seen: now + secs(102),
                changed_at: None
            }
        );
    }

    #[test]
    fn failovers_not_looked_at_for_an_hour_are_forgotten() {
        let mut tracker = Tracker::default();
        let now = t0();
        tracker.observe("old", &["eu".to_string()], &[], now);
        tracker.observe("new", &["eu".to_string()], &[], now + secs(3599));
        assert_eq!(tracker.len(), 2);
        // Looked for at most once a minute.
        tracker.observe("new", &["eu".to_string()], &[], now + secs(3601));
        assert_eq!(tracker.len(), 2);
        tracker.observe("new", &["eu".to_string()], &[], now + secs(3660));
        assert_eq!(tracker.len(), 1);
    }
}
