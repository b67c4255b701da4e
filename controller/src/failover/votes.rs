//! From every vantage's observations to one health per replica. A vantage
//! votes a replica down after `failureThreshold` failures in a row and up
//! after `successThreshold` successes; a quorum of vantages must agree to
//! change a replica's health. A vantage is not heard when its newest round
//! is stale, or when it fails every replica at once (its own network is the
//! likelier culprit); too few heard vantages make the observers blind.

use chrono::{DateTime, Duration, Utc};
use vertice_crds::failover::{Health, ReplicaHealth, VantageObservation, VerticeFailoverSpec};

#[derive(Debug, Clone, PartialEq)]
pub struct Votes {
    /// Health per replica, in spec order.
    pub health: Vec<ReplicaHealth>,
    /// Vantages whose votes counted.
    pub heard: Vec<String>,
    /// Why too few vantages were heard, when they were.
    pub blind: Option<String>,
    /// The earliest time a heard vantage turns stale without a new write.
    pub next_stale_at: Option<DateTime<Utc>>,
}

/// How old a vantage's newest round may be.
pub fn stale_after(spec: &VerticeFailoverSpec) -> Duration {
    let check = &spec.check;
    let default = 3 * i64::from(check.period_seconds) + i64::from(check.timeout_seconds) + 5;
    Duration::seconds(
        spec.policy
            .observer_stale_after_seconds
            .map_or(default, i64::from),
    )
}

/// The vantages expected to observe, and how many must agree.
pub fn expected(
    spec: &VerticeFailoverSpec,
    observations: &[VantageObservation],
) -> (Vec<String>, usize) {
    let vantages: Vec<String> = match &spec.policy.vantages {
        Some(v) => v.clone(),
        None => observations.iter().map(|o| o.vantage.clone()).collect(),
    };
    let quorum = spec
        .policy
        .quorum
        .map_or(vantages.len() / 2 + 1, |q| q as usize);
    (vantages, quorum.max(1))
}

pub fn tally(
    spec: &VerticeFailoverSpec,
    observations: &[VantageObservation],
    previous: &[ReplicaHealth],
    now: DateTime<Utc>,
) -> Votes {
    let (vantages, quorum) = expected(spec, observations);
    let limit = stale_after(spec);
    let mut heard = Vec::new();
    let mut stale = Vec::new();
    let mut failing_all = Vec::new();
    let mut next_stale_at: Option<DateTime<Utc>> = None;
    for o in observations
        .iter()
        .filter(|o| vantages.contains(&o.vantage))
    {
        if now - o.observed_at > limit {
            stale.push(o.vantage.clone());
            continue;
        }
        let ours: Vec<_> = o
            .replicas
            .iter()
            .filter(|r| spec.replicas.iter().any(|s| s.name == r.name))
            .collect();
        if ours.len() == spec.replicas.len() && ours.iter().all(|r| !r.ok) {
            failing_all.push(o.vantage.clone());
            continue;
        }
        let at = o.observed_at + limit;
        next_stale_at = Some(next_stale_at.map_or(at, |n| n.min(at)));
        heard.push(o.vantage.clone());
    }
    let silent: Vec<&String> = vantages
        .iter()
        .filter(|v| !observations.iter().any(|o| &o.vantage == *v))
        .collect();
    let blind = (heard.len() < quorum).then(|| {
        let mut parts = Vec::new();
        if !stale.is_empty() {
            parts.push(format!("stale: {}", stale.join(", ")));
        }
        if !failing_all.is_empty() {
            parts.push(format!("failing every replica: {}", failing_all.join(", ")));
        }
        if !silent.is_empty() {
            parts.push(format!(
                "never reported: {}",
                silent
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if vantages.is_empty() {
            parts.push("no probe runner has reported".into());
        }
        format!(
            "{} of {} vantages heard, {quorum} needed ({})",
            heard.len(),
            vantages.len(),
            parts.join("; ")
        )
    });

    let health = spec
        .replicas
        .iter()
        .map(|replica| {
            let (mut down, mut up) = (0u32, 0u32);
            for o in observations.iter().filter(|o| heard.contains(&o.vantage)) {
                if let Some(r) = o.replicas.iter().find(|r| r.name == replica.name) {
                    if r.consecutive_failures >= spec.check.failure_threshold {
                        down += 1;
                    } else if r.consecutive_successes >= spec.check.success_threshold {
                        up += 1;
                    }
                }
            }
            let before = previous.iter().find(|p| p.name == replica.name);
            let was = before.map_or(Health::Unknown, |p| p.health);
            let now_health = if blind.is_some() {
                was
            } else if down as usize >= quorum {
                Health::Unhealthy
            } else if up as usize >= quorum {
                Health::Healthy
            } else {
                was
            };
            let since = match before {
                Some(p) if p.health == now_health => p.since,
                _ => now,
            };
            ReplicaHealth {
                name: replica.name.clone(),
                health: now_health,
                since,
                down_votes: down,
                up_votes: up,
            }
        })
        .collect();
    Votes {
        health,
        heard,
        blind,
        next_stale_at,
    }
}
