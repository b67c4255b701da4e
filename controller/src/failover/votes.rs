//! From every vantage's observations to one health per replica.
//!
//! A vantage votes a replica down after `failureThreshold` failures in a row
//! and up after `successThreshold` successes. Only *heard* vantages vote:
//! fresh by the controller's own clock (`freshness`), and not blind. A
//! vantage that fails every replica while another fresh vantage sees one
//! up has lost its own network; when every fresh vantage fails everything,
//! they agree, and that is a total outage, not blindness.
//!
//! How many must be heard, and agree, is [`Quorum`]: the observers may act
//! only while a majority of all expected vantages is heard, so the two
//! sides of a partition can never both act; within that, a replica's
//! health changes when `policy.quorum` of the heard vantages agree, or all
//! of them when fewer are heard (a majority that is still reachable acts).

use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use vertice_crds::failover::{
    FailoverReplica, Health, ReplicaHealth, VantageObservation, VerticeFailoverSpec,
};

use super::freshness::{self, Sighting, Verdict};

#[derive(Debug, Clone, PartialEq)]
pub struct Votes {
    /// Health per replica, in spec order.
    pub health: Vec<ReplicaHealth>,
    /// Vantages whose votes counted.
    pub heard: Vec<String>,
    /// Why too few vantages are heard, when they are (and waiting longer
    /// cannot help).
    pub blind: Option<String>,
    /// Too few vantages heard *yet*: some are within their grace (a new
    /// failover, or a controller that just started). Held, not alarmed.
    pub waiting: Option<String>,
    /// Enough vantages are alive, but too few remain once those failing
    /// every replica while a peer sees one up are set aside. At the onset
    /// of a total outage vantages fail everything a moment apart, so this
    /// is held quietly for one staleness period before it counts as blind
    /// (`plan` keeps the time in the `ObserversReady` condition).
    pub disagree: Option<String>,
    /// Who is heard and who is not, and why: a sentence for conditions.
    pub summary: String,
    /// The earliest time a vantage's standing changes without a new write
    /// (a heard one turns stale, a grace ends).
    pub next_change_at: Option<DateTime<Utc>>,
}

/// How old, by the controller's clock, a vantage's last write may be.
pub fn stale_after(spec: &VerticeFailoverSpec) -> Duration {
    let check = &spec.check;
    let default = 3 * i64::from(check.period_seconds) + i64::from(check.timeout_seconds) + 5;
    Duration::seconds(
        spec.policy
            .observer_stale_after_seconds
            .map_or(default, i64::from),
    )
}

/// `policy.vantages` (each once), or the vantages that reported.
pub fn expected(spec: &VerticeFailoverSpec, observations: &[VantageObservation]) -> Vec<String> {
    let named: Vec<&String> = match &spec.policy.vantages {
        Some(v) => v.iter().collect(),
        None => observations.iter().map(|o| &o.vantage).collect(),
    };
    let mut vantages: Vec<String> = Vec::new();
    for v in named {
        if !vantages.contains(v) {
            vantages.push(v.clone());
        }
    }
    vantages
}

/// The expected vantages and the numbers that decide with them.
#[derive(Debug, Clone, PartialEq)]
pub struct Quorum {
    /// `policy.vantages` (each once), or the vantages that reported.
    pub vantages: Vec<String>,
    /// `policy.quorum`, default a majority of `vantages`.
    pub quorum: usize,
    /// Whether `vantages` came from the spec.
    pub listed: bool,
}

impl Quorum {
    pub fn of(
        spec: &VerticeFailoverSpec,
        observations: &[VantageObservation],
    ) -> Result<Self, String> {
        let listed = spec.policy.vantages.is_some();
        let vantages = expected(spec, observations);
        let majority = vantages.len() / 2 + 1;
        let quorum = spec.policy.quorum.map_or(majority, |q| q as usize).max(1);
        if quorum > vantages.len() && !vantages.is_empty() {
            // The API server refuses this when the vantages are listed;
            // without a list the vantages are those that reported.
            let whence = if listed {
                "spec.policy.vantages lists"
            } else {
                "spec.policy.vantages is not set and the vantages that reported are"
            };
            return Err(format!(
                "spec.policy.quorum is {quorum} but {whence} only {} ({}): no decision can \
                 ever reach it; lower spec.policy.quorum or list every vantage in spec.policy.vantages",
                vantages.len(),
                vantages.join(", ")
            ));
        }
        Ok(Self {
            vantages,
            quorum,
            listed,
        })
    }

    fn majority(&self) -> usize {
        self.vantages.len() / 2 + 1
    }

    /// The fewest heard vantages that may act: a majority of all expected
    /// vantages, so that both sides of a partition can never act. A
    /// `policy.quorum` below a majority is the operator's explicit choice
    /// to let fewer act, and is honoured.
    pub fn floor(&self) -> usize {
        self.quorum.min(self.majority())
    }

    /// Votes needed to change a replica's health with `heard` vantages
    /// heard: `policy.quorum`, or every heard vantage when fewer are heard,
    /// but never fewer than the floor.
    pub fn needed(&self, heard: usize) -> usize {
        self.quorum.min(heard).max(self.floor())
    }

    /// Why the loss of one vantage (its region, its runner) would stop the
    /// failover from acting, or why a minority may act; None when neither.
    pub fn weakness(&self) -> Option<(&'static str, String)> {
        let n = self.vantages.len();
        if n == 0 {
            return None;
        }
        if n - 1 < self.floor() {
            let advice = if n == 2 {
                "; two vantages cannot tell a partition from an outage, so one alone may not act"
            } else {
                ""
            };
            return Some((
                "LossOfOneVantageBlinds",
                format!(
                    "with {n} vantage(s) ({}) and quorum {}, losing one vantage (a region outage \
                     takes its probe runner with it) leaves {} heard of the {} needed and traffic \
                     stays where it is{advice}: add a vantage in another failure domain (a witness \
                     probe runner with its own --vantage) to spec.policy.vantages",
                    self.vantages.join(", "),
                    self.quorum,
                    n - 1,
                    self.floor()
                ),
            ));
        }
        if self.floor() < self.majority() {
            return Some((
                "MinorityCanAct",
                format!(
                    "spec.policy.quorum {} is less than a majority of the {n} vantages: \
                     vantages cut off from a healthy replica by a partition can move traffic \
                     on their own; raise spec.policy.quorum to {}",
                    self.quorum,
                    self.majority()
                ),
            ));
        }
        None
    }
}

/// Where each expected vantage stands.
#[derive(Default)]
struct Standing<'a> {
    fresh: Vec<&'a VantageObservation>,
    waiting: Vec<String>,
    stale: Vec<String>,
    silent: Vec<String>,
    next_change_at: Option<DateTime<Utc>>,
}

impl Standing<'_> {
    fn wake_at(&mut self, at: DateTime<Utc>) {
        self.next_change_at = Some(self.next_change_at.map_or(at, |n| n.min(at)));
    }
}

/// The monotonic clock read at the same moment as the wall clock, to turn
/// the tracker's instants into times for status and requeues.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    pub now: DateTime<Utc>,
    pub instant: Instant,
}

impl Clock {
    /// The wall-clock time of `at`, counted from `instant` (never before
    /// `now`: only deadlines are converted).
    pub fn wall(&self, at: Instant) -> DateTime<Utc> {
        let ahead = at.saturating_duration_since(self.instant);
        Duration::from_std(ahead)
            .ok()
            .and_then(|d| self.now.checked_add_signed(d))
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }
}

/// The staleness limit as a monotonic duration.
pub fn monotonic(limit: Duration) -> std::time::Duration {
    limit.to_std().unwrap_or_default()
}

fn standing<'a>(
    quorum: &Quorum,
    observations: &'a [VantageObservation],
    sighting: &Sighting,
    limit: Duration,
    clock: Clock,
) -> Standing<'a> {
    let mut out = Standing::default();
    for vantage in &quorum.vantages {
        let entry = observations.iter().find(|o| &o.vantage == vantage);
        // A vantage the tracker was not told about has no grace to give.
        let verdict = sighting.vantages.get(vantage).map_or(Verdict::Stale, |h| {
            freshness::judge(h, monotonic(limit), clock.instant)
        });
        match (verdict, entry) {
            (Verdict::Fresh { stale_at }, Some(entry)) => {
                out.wake_at(clock.wall(stale_at));
                out.fresh.push(entry);
            }
            (Verdict::Waiting { until }, _) => {
                out.wake_at(clock.wall(until));
                out.waiting.push(vantage.clone());
            }
            (_, Some(_)) => out.stale.push(vantage.clone()),
            (_, None) => out.silent.push(vantage.clone()),
        }
    }
    out
}

fn sees_a_replica_up(spec: &VerticeFailoverSpec, o: &VantageObservation) -> bool {
    spec.replicas
        .iter()
        .any(|s| o.replicas.iter().any(|r| r.name == s.name && r.ok))
}

/// The vantage would vote every replica down. Counted at the failure
/// threshold, not at the first failed probe: vantages probe out of step, so
/// at the start of a total outage one fails everything a round or two
/// before its peers do; it must not look blind (and the observers stale)
/// for that moment.
fn fails_every_replica(spec: &VerticeFailoverSpec, o: &VantageObservation) -> bool {
    spec.replicas.iter().all(|s| {
        o.replicas.iter().any(|r| {
            r.name == s.name && !r.ok && r.consecutive_failures >= spec.check.failure_threshold
        })
    })
}

pub fn tally(
    spec: &VerticeFailoverSpec,
    observations: &[VantageObservation],
    sighting: &Sighting,
    previous: &[ReplicaHealth],
    clock: Clock,
) -> Votes {
    let now = clock.now;
    // Stored before the API server refused it: healthy runners would turn
    // stale between heartbeats, so nothing they say is trusted.
    let quorum = match spec.observer_stale_after_too_short() {
        Some(why) => Err(why),
        None => Quorum::of(spec, observations),
    };
    let quorum = match quorum {
        Ok(q) => q,
        Err(why) => {
            let mut votes = held(spec, previous, now, Some(why.clone()), None, None);
            votes.summary = why;
            return votes;
        }
    };
    let limit = stale_after(spec);
    let mut standing = standing(&quorum, observations, sighting, limit, clock);
    // Blind only against a peer that sees: when every fresh vantage fails
    // everything they agree, and every replica is down.
    let a_peer_sees = standing.fresh.iter().any(|o| sees_a_replica_up(spec, o));
    let (failing_all, voters): (Vec<&VantageObservation>, Vec<&VantageObservation>) = standing
        .fresh
        .iter()
        .partition(|o| a_peer_sees && fails_every_replica(spec, o));
    let heard: Vec<String> = voters.iter().map(|o| o.vantage.clone()).collect();
    if quorum.vantages.is_empty() {
        // Without a list of vantages, a new failover waits one staleness
        // period for any runner at all.
        let until = sighting.since + monotonic(limit);
        if clock.instant <= until {
            standing.wake_at(clock.wall(until));
            standing.waiting.push("any probe runner".into());
        }
    }
    let summary = summary(&quorum, &standing, &failing_all, heard.len(), limit);
    let hearing = hearing(&quorum, &standing, &summary, heard.len(), limit);
    let mut votes = held(
        spec,
        previous,
        now,
        hearing.blind,
        hearing.waiting,
        standing.next_change_at,
    );
    votes.summary = summary;
    votes.disagree = hearing.disagree;
    if votes.blind.is_some() || votes.waiting.is_some() || votes.disagree.is_some() {
        return votes;
    }
    let needed = quorum.needed(heard.len());
    votes.health = spec
        .replicas
        .iter()
        .map(|replica| replica_health(spec, replica, &voters, previous, needed, now))
        .collect();
    votes.heard = heard;
    votes
}

/// `3 of 3 vantages heard, 2 needed (…)`: who is heard, who is stale,
/// failing everything, or silent.
fn summary(
    quorum: &Quorum,
    standing: &Standing<'_>,
    failing_all: &[&VantageObservation],
    heard: usize,
    limit: Duration,
) -> String {
    let floor = quorum.floor();
    let n = quorum.vantages.len();
    let mut parts = Vec::new();
    if !standing.stale.is_empty() {
        parts.push(format!(
            "not heard from for more than {}s: {}",
            limit.num_seconds(),
            standing.stale.join(", ")
        ));
    }
    if !failing_all.is_empty() {
        let names: Vec<&str> = failing_all.iter().map(|o| o.vantage.as_str()).collect();
        parts.push(format!(
            "{} failing every replica while another vantage sees one up, its own network \
             the likelier culprit",
            names.join(", ")
        ));
    }
    if !standing.silent.is_empty() {
        parts.push(format!("never reported: {}", standing.silent.join(", ")));
    }
    if n == 0 {
        parts.push("no probe runner has reported".into());
    }
    let mut summary = format!("{heard} of {n} vantages heard, {floor} needed");
    if !parts.is_empty() {
        summary.push_str(&format!(" ({})", parts.join("; ")));
    }
    summary
}

/// Why the votes are not counted, if they are not: at most one is set.
#[derive(Default)]
struct Hearing {
    blind: Option<String>,
    waiting: Option<String>,
    disagree: Option<String>,
}

/// Whether enough vantages are heard; if not, whether more may still be
/// (waiting), whether enough are alive but disagree, or the observers are
/// blind.
fn hearing(
    quorum: &Quorum,
    standing: &Standing<'_>,
    summary: &str,
    heard: usize,
    limit: Duration,
) -> Hearing {
    let floor = quorum.floor();
    let n = quorum.vantages.len();
    let short = heard < floor || n == 0;
    let could_still = heard + standing.waiting.len() >= floor;
    let alive = standing.fresh.len() >= floor && n > 0;
    match (short, could_still) {
        (false, _) => Hearing::default(),
        (true, false) if alive => Hearing {
            disagree: Some(summary.to_string()),
            ..Hearing::default()
        },
        (true, true) => Hearing {
            waiting: Some(format!(
                "waiting for {} to report (one staleness period, {}s, from when this controller \
                 first looked); {heard} of {n} vantages heard, {floor} needed",
                standing.waiting.join(", "),
                limit.num_seconds(),
            )),
            ..Hearing::default()
        },
        (true, false) => {
            let mut why = summary.to_string();
            if let Some(("LossOfOneVantageBlinds", _)) = quorum.weakness() {
                why.push_str(
                    "; with this few vantages the loss of one blinds the failover: add a witness \
                     vantage in another failure domain",
                );
            }
            Hearing {
                blind: Some(why),
                ..Hearing::default()
            }
        }
    }
}

/// One replica's health from the voters: `needed` votes down make it
/// unhealthy, as many up healthy; otherwise it stays as it was.
fn replica_health(
    spec: &VerticeFailoverSpec,
    replica: &FailoverReplica,
    voters: &[&VantageObservation],
    previous: &[ReplicaHealth],
    needed: usize,
    now: DateTime<Utc>,
) -> ReplicaHealth {
    let (mut down, mut up) = (0u32, 0u32);
    for o in voters {
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
    let now_health = if down as usize >= needed {
        Health::Unhealthy
    } else if up as usize >= needed {
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
}

/// Health as it was, nobody's votes counted.
fn held(
    spec: &VerticeFailoverSpec,
    previous: &[ReplicaHealth],
    now: DateTime<Utc>,
    blind: Option<String>,
    waiting: Option<String>,
    next_change_at: Option<DateTime<Utc>>,
) -> Votes {
    let health = spec
        .replicas
        .iter()
        .map(|replica| {
            previous
                .iter()
                .find(|p| p.name == replica.name)
                .cloned()
                .map(|mut p| {
                    p.down_votes = 0;
                    p.up_votes = 0;
                    p
                })
                .unwrap_or(ReplicaHealth {
                    name: replica.name.clone(),
                    health: Health::Unknown,
                    since: now,
                    down_votes: 0,
                    up_votes: 0,
                })
        })
        .collect();
    Votes {
        health,
        heard: Vec::new(),
        blind,
        waiting,
        disagree: None,
        summary: String::new(),
        next_change_at,
    }
}
