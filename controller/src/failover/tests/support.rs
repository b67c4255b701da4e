//! A small simulator: vantages that see replicas up or down, the route the
//! plan patches, and the status it keeps, stepped through time.

use std::sync::OnceLock;
use std::time::Instant;

use chrono::{DateTime, Duration, TimeZone, Utc};
use vertice_crds::failover::{
    FailoverPhase, ProbeObservation, ReplicaWeight, VantageObservation, VerticeFailoverSpec,
};

use crate::failover::freshness::Tracker;
use crate::failover::state::OwnedStatus;
use crate::failover::votes;
use crate::failover::{plan, Inputs, Plan};

pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0)
        .single()
        .expect("time")
}

/// The monotonic clock at `t0` (an Instant cannot be made up; only the
/// durations from it matter).
pub fn instant0() -> Instant {
    static AT: OnceLock<Instant> = OnceLock::new();
    *AT.get_or_init(Instant::now)
}

fn std_secs(d: Duration) -> std::time::Duration {
    d.to_std().expect("time moves forward")
}

/// Two replicas (a: priority 10, b: 5), period 5 s, thresholds 3/2,
/// failback after 60 s, one step, min switch interval 30 s.
pub fn spec(extra_policy: serde_json::Value) -> VerticeFailoverSpec {
    let mut policy = serde_json::json!({"minSwitchIntervalSeconds": 30, "failbackAfterSeconds": 60,
        "stepIntervalSeconds": 10, "maxSwitches": 3, "flapWindowSeconds": 600});
    if let (Some(p), Some(extra)) = (policy.as_object_mut(), extra_policy.as_object()) {
        for (k, v) in extra {
            p.insert(k.clone(), v.clone());
        }
    }
    serde_json::from_value(serde_json::json!({
        "virtualService": {"name": "db"},
        "replicas": [{"name": "a", "host": "pg-a", "priority": 10}, {"name": "b", "host": "pg-b", "priority": 5}],
        "check": {"tcp": {}, "port": 5432, "periodSeconds": 5, "failureThreshold": 3, "successThreshold": 2},
        "policy": policy,
    }))
    .expect("spec")
}

/// One vantage's counters for one replica.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counter {
    pub failures: u32,
    pub successes: u32,
    pub ok: bool,
}

impl Counter {
    pub fn record(&mut self, ok: bool, cap: u32) {
        self.ok = ok;
        if ok {
            self.successes = (self.successes + 1).min(cap);
            self.failures = 0;
        } else {
            self.failures = (self.failures + 1).min(cap);
            self.successes = 0;
        }
    }
}

/// A vantage: its name, its counter per replica, when it last reported.
pub type Vantage = (String, Vec<(String, Counter)>, DateTime<Utc>);

pub struct Sim {
    pub spec: VerticeFailoverSpec,
    /// The controller's wall clock (status times, events).
    pub now: DateTime<Utc>,
    /// The controller's monotonic clock; moves with `now` unless the wall
    /// clock is stepped (`step_wall_clock`).
    pub instant: Instant,
    pub route: Vec<ReplicaWeight>,
    pub status: OwnedStatus,
    /// vantage → replica name → counter, and when it last reported.
    pub vantages: Vec<Vantage>,
    pub switchover_to: Option<String>,
    /// A refusal of the tenancy rules, as the reconciler would pass it.
    pub refused: Option<crate::failover::Refusal>,
    pub last: Option<Plan>,
    pub patches: Vec<(DateTime<Utc>, Vec<ReplicaWeight>)>,
    /// The controller's memory of when it heard each vantage.
    pub tracker: Tracker,
    /// How far each vantage's clock is off ours (default 0).
    pub skew: Vec<(String, Duration)>,
}

impl Sim {
    pub fn new(spec: VerticeFailoverSpec, vantages: &[&str]) -> Self {
        let names: Vec<String> = spec.replicas.iter().map(|r| r.name.clone()).collect();
        let route = crate::failover::weights::even(
            &names.iter().map(String::as_str).collect::<Vec<_>>(),
            &[names[0].as_str()],
        );
        let mut sim = Self {
            now: t0(),
            instant: instant0(),
            route,
            status: OwnedStatus::default(),
            vantages: vantages
                .iter()
                .map(|v| {
                    (
                        v.to_string(),
                        names
                            .iter()
                            .map(|n| (n.clone(), Counter::default()))
                            .collect(),
                        t0(),
                    )
                })
                .collect(),
            spec,
            switchover_to: None,
            refused: None,
            last: None,
            patches: Vec::new(),
            tracker: Tracker::default(),
            skew: Vec::new(),
        };
        // The controller sees the new failover before any runner writes.
        let expected = sim.expected();
        sim.tracker.observe("sim", &expected, &[], sim.instant);
        sim
    }

    fn expected(&self) -> Vec<String> {
        votes::expected(&self.spec, &self.observations())
    }

    /// The controller restarts (or another takes over): it forgets when it
    /// heard whom.
    pub fn restart_controller(&mut self) {
        self.tracker = Tracker::default();
    }

    /// Time passes: both clocks move.
    pub fn pass(&mut self, d: Duration) {
        self.now += d;
        self.instant += std_secs(d);
    }

    /// The wall clock is stepped (NTP, a VM resumed); the monotonic clock
    /// does not move.
    pub fn step_wall_clock(&mut self, d: Duration) {
        self.now += d;
    }

    /// Only the vantages `reporting` says are alive probe and write.
    pub fn round_where(
        &mut self,
        reporting: impl Fn(&str) -> bool,
        up: impl Fn(&str, &str) -> bool,
    ) -> &Plan {
        let cap = self
            .spec
            .check
            .failure_threshold
            .max(self.spec.check.success_threshold);
        self.pass(Duration::seconds(i64::from(self.spec.check.period_seconds)));
        for (vantage, replicas, at) in &mut self.vantages {
            if !reporting(vantage) {
                continue;
            }
            for (replica, counter) in replicas.iter_mut() {
                counter.record(up(vantage, replica), cap);
            }
            let skew = self
                .skew
                .iter()
                .find(|(v, _)| v == vantage)
                .map_or(Duration::zero(), |(_, s)| *s);
            *at = self.now + skew;
        }
        self.decide()
    }

    /// Every vantage probes once: `up(vantage, replica)`; then time moves a
    /// period and the plan runs.
    pub fn round(&mut self, up: impl Fn(&str, &str) -> bool) -> &Plan {
        self.round_where(|_| true, up)
    }

    /// Time passes, nobody reports.
    pub fn silence(&mut self, seconds: i64) -> &Plan {
        self.pass(Duration::seconds(seconds));
        self.decide()
    }

    pub fn observations(&self) -> Vec<VantageObservation> {
        self.vantages
            .iter()
            .map(|(v, replicas, at)| VantageObservation {
                vantage: v.clone(),
                observed_at: *at,
                observed_generation: Some(1),
                replicas: replicas
                    .iter()
                    .map(|(n, c)| ProbeObservation {
                        name: n.clone(),
                        ok: c.ok,
                        consecutive_failures: c.failures,
                        consecutive_successes: c.successes,
                        success_ratio: 1.0,
                        latency_ms: Some(1),
                        reason: None,
                    })
                    .collect(),
            })
            .collect()
    }

    pub fn decide(&mut self) -> &Plan {
        let observations = self.observations();
        let expected = self.expected();
        let sighting = self
            .tracker
            .observe("sim", &expected, &observations, self.instant);
        let plan = plan(Inputs {
            spec: &self.spec,
            generation: Some(1),
            observations: &observations,
            sighting: &sighting,
            previous: &self.status,
            route: Ok(self.route.clone()),
            switchover_to: self.switchover_to.as_deref(),
            refused: self.refused.as_ref(),
            now: self.now,
            instant: self.instant,
        });
        if let Some(w) = &plan.patch {
            self.route = w.clone();
            self.patches.push((self.now, w.clone()));
        }
        self.status = plan.status.clone();
        self.last = Some(plan);
        self.last.as_ref().expect("plan")
    }

    pub fn weight(&self, replica: &str) -> u32 {
        self.route
            .iter()
            .find(|w| w.replica == replica)
            .map_or(0, |w| w.weight)
    }

    pub fn phase(&self) -> Option<FailoverPhase> {
        self.status.phase
    }

    pub fn events(&self) -> Vec<&'static str> {
        self.last
            .as_ref()
            .map(|p| {
                p.before_patch
                    .iter()
                    .chain(&p.events)
                    .map(|e| e.reason)
                    .collect()
            })
            .unwrap_or_default()
    }
}

pub fn all_up(_: &str, _: &str) -> bool {
    true
}

pub fn a_down(_: &str, replica: &str) -> bool {
    replica != "a"
}
