//! What a vantage remembers about each replica between rounds: results in a
//! row (capped at the thresholds, so a steady state writes nothing new), the
//! last 20 outcomes for a success ratio, and when the status was last
//! written. Pure: the runner feeds results in and asks whether to write.

use std::collections::{BTreeMap, VecDeque};

use chrono::{DateTime, Duration, Utc};
use vertice_crds::failover::{ProbeObservation, VantageObservation};

use super::ProbeResult;

/// Outcomes kept for the success ratio.
pub const RATIO_WINDOW: usize = 20;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReplicaTally {
    pub ok: bool,
    pub failures: u32,
    pub successes: u32,
    pub recent: VecDeque<bool>,
    pub latency_ms: Option<u64>,
    pub reason: Option<String>,
}

impl ReplicaTally {
    /// Counts one result; runs are capped at `cap` (the larger threshold).
    pub fn record(&mut self, result: &ProbeResult, cap: u32) {
        self.ok = result.ok;
        if result.ok {
            self.successes = (self.successes + 1).min(cap);
            self.failures = 0;
        } else {
            self.failures = (self.failures + 1).min(cap);
            self.successes = 0;
        }
        self.recent.push_back(result.ok);
        while self.recent.len() > RATIO_WINDOW {
            self.recent.pop_front();
        }
        self.latency_ms = Some(result.latency_ms);
        self.reason = result.reason.clone();
    }

    pub fn success_ratio(&self) -> f64 {
        if self.recent.is_empty() {
            return 0.0;
        }
        let ok = self.recent.iter().filter(|r| **r).count() as f64;
        (ok / self.recent.len() as f64 * 100.0).round() / 100.0
    }
}

/// One failover's tallies at one vantage.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    pub replicas: BTreeMap<String, ReplicaTally>,
    /// The observation last written (latencies aside) and when.
    written: Option<(VantageObservation, DateTime<Utc>)>,
}

impl Tally {
    /// Starts from what this vantage wrote before (a restarted runner keeps
    /// its counts, so a replica it saw down does not look unsure).
    pub fn resume(previous: Option<&VantageObservation>, cap: u32) -> Self {
        let mut tally = Self::default();
        if let Some(previous) = previous {
            for r in &previous.replicas {
                tally.replicas.insert(
                    r.name.clone(),
                    ReplicaTally {
                        ok: r.ok,
                        failures: r.consecutive_failures.min(cap),
                        successes: r.consecutive_successes.min(cap),
                        ..Default::default()
                    },
                );
            }
        }
        tally
    }

    /// Keeps only the replicas the spec still names.
    pub fn retain(&mut self, names: &[String]) {
        self.replicas.retain(|name, _| names.contains(name));
    }

    pub fn observation(
        &self,
        vantage: &str,
        generation: Option<i64>,
        now: DateTime<Utc>,
    ) -> VantageObservation {
        VantageObservation {
            vantage: vantage.to_string(),
            observed_at: now,
            observed_generation: generation,
            replicas: self
                .replicas
                .iter()
                .map(|(name, t)| ProbeObservation {
                    name: name.clone(),
                    ok: t.ok,
                    consecutive_failures: t.failures,
                    consecutive_successes: t.successes,
                    success_ratio: t.success_ratio(),
                    latency_ms: t.latency_ms,
                    reason: t.reason.clone(),
                })
                .collect(),
        }
    }

    /// Whether `next` must be written: something a decision reads changed,
    /// or the last write is `heartbeat` old (so the controller can tell a
    /// live vantage from a dead one).
    pub fn should_write(
        &self,
        next: &VantageObservation,
        now: DateTime<Utc>,
        heartbeat: Duration,
    ) -> bool {
        match &self.written {
            None => true,
            Some((last, at)) => now - *at >= heartbeat || !same_decision_inputs(last, next),
        }
    }

    pub fn wrote(&mut self, observation: VantageObservation, now: DateTime<Utc>) {
        self.written = Some((observation, now));
    }
}

/// Equal but for times and latencies.
fn same_decision_inputs(a: &VantageObservation, b: &VantageObservation) -> bool {
    let strip = |o: &VantageObservation| {
        let mut o = o.clone();
        o.observed_at = DateTime::<Utc>::UNIX_EPOCH;
        o.replicas.iter_mut().for_each(|r| r.latency_ms = None);
        o
    };
    strip(a) == strip(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(ok: bool) -> ProbeResult {
        ProbeResult {
            ok,
            latency_ms: 7,
            reason: (!ok).then(|| "refused".to_string()),
        }
    }

    #[test]
    fn runs_are_capped_and_reset_by_the_other_outcome() {
        let mut t = ReplicaTally::default();
        for _ in 0..10 {
            t.record(&result(false), 3);
        }
        assert_eq!((t.failures, t.successes, t.ok), (3, 0, false));
        t.record(&result(true), 3);
        assert_eq!((t.failures, t.successes, t.ok), (0, 1, true));
        assert_eq!(t.recent.len(), 11);
        assert_eq!(t.success_ratio(), 0.09);
        for _ in 0..30 {
            t.record(&result(true), 3);
        }
        assert_eq!(t.recent.len(), RATIO_WINDOW);
        assert_eq!(t.success_ratio(), 1.0);
    }

    #[test]
    fn a_steady_state_writes_only_heartbeats() {
        let t0 = DateTime::<Utc>::UNIX_EPOCH + Duration::days(20000);
        let mut tally = Tally::default();
        let mut writes = 0;
        for round in 0..20 {
            let now = t0 + Duration::seconds(5 * round);
            let mut r = result(true);
            r.latency_ms = round as u64; // latency changes every round
            tally.replicas.entry("a".into()).or_default().record(&r, 3);
            let next = tally.observation("eu", Some(1), now);
            if tally.should_write(&next, now, Duration::seconds(10)) {
                tally.wrote(next, now);
                writes += 1;
            }
        }
        // Three while the run climbs to the cap and the ratio settles at 1.0,
        // then a heartbeat every other round.
        assert!(writes <= 3 + 9, "{writes}");
        assert!(writes >= 9, "{writes}");
        // A failure is written at once.
        let now = t0 + Duration::seconds(101);
        tally
            .replicas
            .entry("a".into())
            .or_default()
            .record(&result(false), 3);
        let next = tally.observation("eu", Some(1), now);
        assert!(tally.should_write(&next, now, Duration::seconds(10)));
    }

    #[test]
    fn resume_keeps_counts_within_the_cap() {
        let previous = VantageObservation {
            vantage: "eu".into(),
            observed_at: DateTime::<Utc>::UNIX_EPOCH,
            observed_generation: Some(1),
            replicas: vec![ProbeObservation {
                name: "a".into(),
                ok: false,
                consecutive_failures: 9,
                consecutive_successes: 0,
                success_ratio: 0.0,
                latency_ms: None,
                reason: None,
            }],
        };
        let tally = Tally::resume(Some(&previous), 3);
        assert_eq!(tally.replicas["a"].failures, 3);
    }
}
