//! Leader election on a `coordination.k8s.io` Lease, as client-go's
//! leaderelection does it. Every replica watches and keeps its caches warm;
//! only the holder of the Lease writes.
//!
//! - The holder renews every retry period; a renewal that has not succeeded
//!   for the renew deadline (two thirds of the lease) makes it step down:
//!   `leading` turns false, every reconciler stops writing, and the leader
//!   gauge drops, all before the lease expires and another replica may take
//!   it. It campaigns again as soon as the API server answers.
//! - A follower takes the lease once it has seen the same record unchanged
//!   for the record's whole duration by its own clock, never by comparing
//!   the holder's timestamps with its clock, so skewed clocks cannot make
//!   two leaders.
//! - Every write carries the resourceVersion it was decided on: of two
//!   replicas racing for a free lease, one gets a conflict.
//! - [`Campaign::resign`] stops leading, then frees the lease, so the next
//!   replica takes over within its retry period instead of a lease duration.
//! - Every write checks [`Leadership::may_write`] right before it is sent
//!   and is cut off at the validity deadline (the start of the last
//!   successful renewal plus the renew deadline): a reconcile that began
//!   while leading cannot write after another replica may have the lease.

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

/// Settings of the election.
#[derive(Debug, Clone)]
pub struct Election {
    pub lease_name: String,
    pub namespace: String,
    /// This replica's identity (its pod name).
    pub identity: String,
    /// Seconds a lease lasts without renewal.
    pub duration_seconds: u64,
}

/// The election's clocks, derived from the lease duration as client-go's
/// defaults are (15 s lease, 10 s renew deadline, 2 s retry period).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub lease: Duration,
    /// A leader that has not renewed for this long stops leading.
    pub renew_deadline: Duration,
    /// Between two attempts to acquire or renew.
    pub retry: Duration,
}

/// The shortest and longest lease `--lease-seconds` accepts.
pub const LEASE_SECONDS: std::ops::RangeInclusive<u64> = 2..=3600;

impl Timing {
    /// Clamped to [`LEASE_SECONDS`], so nothing here can overflow.
    pub fn for_lease(seconds: u64) -> Timing {
        let seconds = seconds.clamp(*LEASE_SECONDS.start(), *LEASE_SECONDS.end());
        let lease = Duration::from_secs(seconds);
        Timing {
            lease,
            renew_deadline: lease.saturating_mul(2) / 3,
            retry: (lease.saturating_mul(2) / 15)
                .clamp(Duration::from_millis(300), Duration::from_secs(2)),
        }
    }
}

/// Until when this replica may write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Validity {
    Never,
    /// The start of the last successful renewal plus the renew deadline.
    Until(Instant),
    /// No election (a single replica).
    Forever,
}

impl Validity {
    /// After a renewal that started at `started`.
    fn renewed(started: Instant, renew_deadline: Duration) -> Validity {
        started
            .checked_add(renew_deadline)
            .map_or(Validity::Never, Validity::Until)
    }

    fn allows(self, now: Instant) -> bool {
        match self {
            Validity::Never => false,
            Validity::Until(deadline) => now < deadline,
            Validity::Forever => true,
        }
    }
}

/// What the elector and every writer share.
#[derive(Debug)]
struct Standing {
    validity: Validity,
    /// Set on SIGTERM: this replica never leads again.
    stopped: bool,
    /// When the elector last completed a round with the API server (read
    /// the Lease and, if it wanted to, wrote it), or when it started.
    contact: Instant,
    /// Why the last round failed, while rounds fail.
    failing: Option<String>,
}

#[derive(Debug)]
struct State {
    leading: watch::Sender<bool>,
    standing: Mutex<Standing>,
    /// None: no election, nothing to report on.
    lease: Option<Duration>,
}

impl State {
    fn new(validity: Validity, lease: Option<Duration>) -> Arc<State> {
        Arc::new(State {
            leading: watch::channel(validity == Validity::Forever).0,
            standing: Mutex::new(Standing {
                validity,
                stopped: false,
                contact: Instant::now(),
                failing: None,
            }),
            lease,
        })
    }

    fn standing(&self) -> MutexGuard<'_, Standing> {
        // A panic elsewhere while holding the lock leaves usable values.
        self.standing.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Leading (again) after a renewal that started at `started`, unless
    /// this replica stopped.
    fn renewed(&self, started: Instant, renew_deadline: Duration) {
        let mut s = self.standing();
        if s.stopped {
            return;
        }
        s.validity = Validity::renewed(started, renew_deadline);
        // Under the lock: a concurrent stop cannot be undone.
        self.set_leading(true);
    }

    /// Not leading (another holds the lease, or the renew deadline passed).
    fn lost(&self) {
        let mut s = self.standing();
        s.validity = Validity::Never;
        self.set_leading(false);
    }

    /// Stops writing for good; the lease stays held until it is released.
    fn stop(&self) {
        let mut s = self.standing();
        s.stopped = true;
        s.validity = Validity::Never;
        self.set_leading(false);
    }

    fn contact(&self, outcome: Result<(), String>) {
        let mut s = self.standing();
        match outcome {
            Ok(()) => {
                s.contact = Instant::now();
                s.failing = None;
            }
            Err(why) => s.failing = Some(why),
        }
    }

    fn set_leading(&self, now: bool) {
        self.leading.send_if_modified(|was| {
            if *was == now {
                return false;
            }
            *was = now;
            tracing::debug!(leading = now, "leadership changed");
            true
        });
    }
}

/// Whether this replica leads and may write: what every reconciler holds.
#[derive(Debug, Clone)]
pub struct Leadership {
    state: Arc<State>,
}

impl Leadership {
    /// True while this replica leads.
    pub fn is_leading(&self) -> bool {
        *self.state.leading.borrow()
    }

    /// Changes of [`Self::is_leading`].
    pub fn watch(&self) -> watch::Receiver<bool> {
        self.state.leading.subscribe()
    }

    /// Whether a write sent now lands while this replica may write. Cheap:
    /// check it right before every write.
    pub fn may_write(&self) -> bool {
        self.may_write_at(Instant::now())
    }

    fn may_write_at(&self, now: Instant) -> bool {
        self.state.standing().validity.allows(now)
    }

    /// Runs `write` when this replica may write now, cut off at the end of
    /// its validity; `None` when it may not or its validity ended first.
    pub async fn bounded<F: Future>(&self, write: F) -> Option<F::Output> {
        let validity = self.state.standing().validity;
        match validity {
            Validity::Never => None,
            Validity::Forever => Some(write.await),
            Validity::Until(deadline) => {
                if !validity.allows(Instant::now()) {
                    return None;
                }
                let deadline = tokio::time::Instant::from_std(deadline);
                tokio::time::timeout_at(deadline, write).await.ok()
            }
        }
    }

    /// [`Self::bounded`] for a request to the API server: a refused or cut
    /// off write is an error that [`refused`] recognizes.
    pub async fn write<T>(
        &self,
        request: impl Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, kube::Error> {
        self.bounded(request)
            .await
            .unwrap_or_else(|| Err(kube::Error::Service(Box::new(NotLeading))))
    }

    /// Why the election is unhealthy now: no round completed with the API
    /// server for a whole lease (RBAC refuses the Lease, or the API server
    /// does not answer). Then no replica may lead while the watches work.
    pub fn election_problem(&self) -> Option<String> {
        let lease = self.state.lease?;
        let s = self.state.standing();
        election_problem(s.contact, s.failing.as_deref(), lease, Instant::now())
    }
}

fn election_problem(
    contact: Instant,
    failing: Option<&str>,
    lease: Duration,
    now: Instant,
) -> Option<String> {
    let silent = now.saturating_duration_since(contact);
    if silent < lease {
        return None;
    }
    Some(format!(
        "leader election failing for {} s: {}",
        silent.as_secs(),
        failing.unwrap_or("no answer from the API server")
    ))
}

/// A write refused because this replica does not (or no longer) lead.
#[derive(Debug, thiserror::Error)]
#[error("this replica does not hold the leader lease (any more)")]
pub struct NotLeading;

/// Whether `error` is a write [`Leadership::write`] refused or cut off:
/// not a failure, the reconcile ends quietly.
pub fn refused(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Service(e) if e.is::<NotLeading>())
}

/// What a replica knows of the Lease: the record and when it last changed
/// by this replica's clock.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Observed {
    holder: Option<String>,
    resource_version: String,
    duration: Duration,
    since: Instant,
}

/// What to do with the Lease as it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Renew,
    Acquire,
    /// Held by another replica whose record is still fresh.
    Wait,
}

fn decide(observed: &Observed, identity: &str, now: Instant) -> Step {
    match observed.holder.as_deref() {
        Some(holder) if holder == identity => Step::Renew,
        None | Some("") => Step::Acquire,
        Some(_) if now.saturating_duration_since(observed.since) >= observed.duration => {
            Step::Acquire
        }
        Some(_) => Step::Wait,
    }
}

/// A running campaign: whether this replica leads, and the way to resign.
pub struct Campaign {
    state: Arc<State>,
    stop: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
}

impl Campaign {
    /// Whether this replica leads and may write.
    pub fn leading(&self) -> Leadership {
        Leadership {
            state: self.state.clone(),
        }
    }

    /// Stops writing at once and for good (SIGTERM); the lease stays held
    /// until [`Self::resign`] frees it.
    pub fn step_down(&self) {
        self.state.stop();
    }

    /// Stops leading at once and frees the lease, waiting at most a few
    /// seconds for the API server to take the release.
    pub async fn resign(self) {
        self.state.stop();
        let Some((stop, task)) = self.stop else {
            return;
        };
        let _ = stop.send(());
        if tokio::time::timeout(Duration::from_secs(3), task)
            .await
            .is_err()
        {
            tracing::warn!("could not release the leader lease in time; it expires on its own");
        }
    }
}

/// A campaign that always leads, for single-replica runs.
pub fn always() -> Campaign {
    Campaign {
        state: State::new(Validity::Forever, None),
        stop: None,
    }
}

/// A campaign that never leads (tests).
pub fn never() -> Campaign {
    Campaign {
        state: State::new(Validity::Never, None),
        stop: None,
    }
}

/// A campaign that still reads as leading but whose validity has ended:
/// a leader deposed while a reconcile runs (tests).
pub fn lapsed() -> Campaign {
    let state = State::new(Validity::Until(Instant::now()), None);
    state.set_leading(true);
    Campaign { state, stop: None }
}

/// Starts campaigning in the background.
pub fn campaign(client: Client, election: &Election) -> Campaign {
    let timing = Timing::for_lease(election.duration_seconds);
    let state = State::new(Validity::Never, Some(timing.lease));
    let (stop, stopped) = oneshot::channel();
    let elector = Elector {
        api: Api::namespaced(client, &election.namespace),
        name: election.lease_name.clone(),
        identity: election.identity.clone(),
        timing,
        observed: None,
        state: state.clone(),
        warned: None,
    };
    let task = tokio::spawn(elector.run(stopped));
    Campaign {
        state,
        stop: Some((stop, task)),
    }
}

struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    timing: Timing,
    observed: Option<Observed>,
    state: Arc<State>,
    /// When a failed attempt was last logged as a warning.
    warned: Option<Instant>,
}

/// Failed election attempts are warned of at most this often.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// Whether a warning last given at `last` may be given again at `now`.
fn warn_due(last: Option<Instant>, now: Instant) -> bool {
    last.is_none_or(|at| now.saturating_duration_since(at) >= WARN_EVERY)
}

impl Elector {
    async fn run(mut self, mut stopped: oneshot::Receiver<()>) {
        let mut renewed_at: Option<Instant> = None;
        loop {
            // A leader's attempt may take only what is left of its renew
            // deadline: a hanging API server must not keep it leading.
            let budget = self
                .left_to_renew(renewed_at)
                .unwrap_or(self.timing.retry * 2)
                .max(Duration::from_millis(100));
            // The lease is renewed no earlier than this: counting the
            // deadline from here keeps it inside what the others allow.
            let started = Instant::now();
            let attempt = tokio::select! {
                _ = &mut stopped => break,
                a = tokio::time::timeout(budget, self.try_acquire_or_renew()) => a,
            };
            match attempt {
                Ok(Ok(true)) => {
                    renewed_at = Some(started);
                    self.state.contact(Ok(()));
                    self.state.renewed(started, self.timing.renew_deadline);
                }
                Ok(Ok(false)) => {
                    self.state.contact(Ok(()));
                    self.state.lost();
                }
                Ok(Err(e)) => self.failed(crate::error::short(&e), renewed_at),
                Err(_) => self.failed("the API server did not answer in time".into(), renewed_at),
            }
            // A failing leader tries again at its deadline at the latest,
            // so that it steps down in time.
            let pause = self
                .left_to_renew(renewed_at)
                .map_or(jittered(self.timing.retry), |left| {
                    left.min(jittered(self.timing.retry))
                });
            tokio::select! {
                _ = &mut stopped => break,
                _ = tokio::time::sleep(pause) => {}
            }
        }
        self.release().await;
    }

    /// While leading: how long until the renew deadline.
    fn left_to_renew(&self, renewed_at: Option<Instant>) -> Option<Duration> {
        let at = renewed_at.filter(|_| *self.state.leading.borrow())?;
        Some(self.timing.renew_deadline.saturating_sub(at.elapsed()))
    }

    /// A failed attempt: a leader past its renew deadline stops leading.
    fn failed(&mut self, why: String, renewed_at: Option<Instant>) {
        let leading = *self.state.leading.borrow();
        let overdue = renewed_at.is_none_or(|at| at.elapsed() >= self.timing.renew_deadline);
        if leading && overdue {
            tracing::warn!(
                reason = why,
                deadline_seconds = self.timing.renew_deadline.as_secs_f64(),
                "could not renew the leader lease within the renew deadline; stepping down"
            );
            self.state.lost();
        } else if warn_due(self.warned, Instant::now()) {
            // A Lease that RBAC refuses fails every attempt: no replica
            // would ever lead, so this must not stay at debug.
            self.warned = Some(Instant::now());
            tracing::warn!(reason = why, lease = %self.name, namespace = ?self.api.namespace(), "leader election attempt failed (said at most once a minute)");
        } else {
            tracing::debug!(reason = why, "leader election attempt failed");
        }
        self.state.contact(Err(why));
    }

    /// One round: read the Lease and take or renew it when this replica may.
    async fn try_acquire_or_renew(&mut self) -> Result<bool, kube::Error> {
        let Some(lease) = self.api.get_opt(&self.name).await? else {
            return self.create().await;
        };
        let now = Instant::now();
        let observed = self.observe(&lease, now);
        let step = decide(&observed, &self.identity, now);
        let held_by = observed.holder.clone();
        self.observed = Some(observed);
        let acquiring = match step {
            Step::Wait => return Ok(false),
            Step::Renew => false,
            Step::Acquire => true,
        };
        let spec = lease.spec.unwrap_or_default();
        let mut fields = json!({
            "holderIdentity": self.identity,
            "leaseDurationSeconds": self.timing.lease.as_secs(),
            "renewTime": micro_time_now(),
        });
        if acquiring {
            fields["acquireTime"] = json!(micro_time_now());
            fields["leaseTransitions"] = json!(spec.lease_transitions.unwrap_or(0) + 1);
            tracing::info!(
                previous = holder_name(held_by.as_deref()),
                "taking the leader lease"
            );
        }
        let patch = json!({
            // The precondition: the Lease as it was decided on.
            "metadata": {"resourceVersion": lease.metadata.resource_version},
            "spec": fields,
        });
        match self
            .api
            .patch(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn create(&self) -> Result<bool, kube::Error> {
        let lease: Lease = serde_json::from_value(json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": self.name},
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": self.timing.lease.as_secs(),
                "acquireTime": micro_time_now(),
                "renewTime": micro_time_now(),
                "leaseTransitions": 0,
            },
        }))
        .map_err(kube::Error::SerdeError)?;
        match self.api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The record as read, remembering when it last changed.
    fn observe(&self, lease: &Lease, now: Instant) -> Observed {
        let spec = lease.spec.clone().unwrap_or_default();
        let resource_version = lease.metadata.resource_version.clone().unwrap_or_default();
        let since = match &self.observed {
            Some(o) if o.resource_version == resource_version => o.since,
            _ => now,
        };
        Observed {
            holder: spec.holder_identity,
            resource_version,
            duration: spec
                .lease_duration_seconds
                .and_then(|s| u64::try_from(s).ok())
                .map_or(self.timing.lease, Duration::from_secs),
            since,
        }
    }

    /// Stops leading, then frees the lease if this replica still holds it.
    async fn release(self) {
        self.state.stop();
        let Ok(Some(lease)) = self.api.get_opt(&self.name).await else {
            return;
        };
        let holder = lease
            .spec
            .as_ref()
            .and_then(|s| s.holder_identity.as_deref());
        if holder != Some(self.identity.as_str()) {
            return;
        }
        let patch = json!({
            // Only the record read here: a fresher one may be another's.
            "metadata": {"resourceVersion": lease.metadata.resource_version},
            "spec": {
                "holderIdentity": null,
                "leaseDurationSeconds": 1,
                "renewTime": micro_time_now(),
            },
        });
        match self
            .api
            .patch(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => tracing::info!("released the leader lease"),
            Err(e) => {
                let error = crate::error::short(&e);
                tracing::warn!(%error, "could not release the leader lease; it expires on its own")
            }
        }
    }
}

/// The holder as logged: its plain name, `none` for a free lease.
fn holder_name(holder: Option<&str>) -> &str {
    match holder {
        Some(name) if !name.is_empty() => name,
        _ => "none",
    }
}

/// The Lease's MicroTime format.
fn micro_time_now() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

/// `base` plus up to a fifth more, so replicas do not poll in step.
fn jittered(base: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(Instant::now().elapsed().as_nanos());
    let fraction = u32::try_from(hasher.finish() % 1000).unwrap_or(0);
    base + base / 5 * fraction / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observed(holder: Option<&str>, since: Instant) -> Observed {
        Observed {
            holder: holder.map(String::from),
            resource_version: "1".into(),
            duration: Duration::from_secs(15),
            since,
        }
    }

    #[test]
    fn timing_follows_client_go_for_the_default_lease() {
        let t = Timing::for_lease(15);
        assert_eq!(t.renew_deadline, Duration::from_secs(10));
        assert_eq!(t.retry, Duration::from_secs(2));
        // Stepping down must come before anyone else may take the lease.
        for seconds in [2, 6, 15, 60] {
            let t = Timing::for_lease(seconds);
            assert!(t.renew_deadline < t.lease, "{seconds}");
            assert!(t.retry * 2 <= t.renew_deadline, "{seconds}");
        }
    }

    #[test]
    fn timing_never_overflows() {
        for seconds in [0, 1, 3600, 3601, u64::MAX] {
            let t = Timing::for_lease(seconds);
            assert!(t.lease >= Duration::from_secs(2) && t.lease <= Duration::from_secs(3600));
            assert!(t.renew_deadline < t.lease, "{seconds}");
        }
    }

    fn leadership(validity: Validity) -> Leadership {
        Leadership {
            state: State::new(validity, Some(Duration::from_secs(15))),
        }
    }

    #[test]
    fn writes_are_allowed_until_the_renew_deadline_after_the_renewal_started() {
        let started = Instant::now();
        let deadline = Duration::from_secs(10);
        assert_eq!(
            Validity::renewed(started, deadline),
            Validity::Until(started + deadline)
        );
        let l = leadership(Validity::renewed(started, deadline));
        assert!(l.may_write_at(started));
        assert!(l.may_write_at(started + Duration::from_millis(9_999)));
        assert!(!l.may_write_at(started + deadline));
        assert!(!l.may_write_at(started + Duration::from_secs(60)));
        assert!(!leadership(Validity::Never).may_write());
        assert!(leadership(Validity::Forever).may_write());
    }

    #[tokio::test]
    async fn a_write_past_the_deadline_is_refused_and_one_in_flight_is_cut_off() {
        let expired = leadership(Validity::Until(Instant::now()));
        let sent = std::sync::atomic::AtomicBool::new(false);
        let result = expired
            .write(async {
                sent.store(true, std::sync::atomic::Ordering::SeqCst);
                Ok::<_, kube::Error>(())
            })
            .await;
        assert!(result.as_ref().is_err_and(refused), "{result:?}");
        assert!(!sent.load(std::sync::atomic::Ordering::SeqCst));

        let soon = leadership(Validity::Until(Instant::now() + Duration::from_millis(100)));
        let started = Instant::now();
        let hanging = soon
            .write(std::future::pending::<Result<(), kube::Error>>())
            .await;
        assert!(hanging.as_ref().is_err_and(refused), "{hanging:?}");
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(
            leadership(Validity::Forever).bounded(async { 7 }).await,
            Some(7)
        );
        let api_error = kube::Error::Api(Box::new(
            kube::core::Status::failure("x", "y").with_code(503),
        ));
        assert!(!refused(&api_error));
    }

    #[test]
    fn a_stopped_campaign_never_writes_again_even_after_a_late_renewal() {
        let state = State::new(Validity::Never, Some(Duration::from_secs(15)));
        let campaign = Campaign {
            state: state.clone(),
            stop: None,
        };
        let l = campaign.leading();
        state.renewed(Instant::now(), Duration::from_secs(10));
        assert!(l.is_leading() && l.may_write());
        campaign.step_down();
        assert!(!l.is_leading() && !l.may_write());
        // A renewal in flight when SIGTERM came.
        state.renewed(Instant::now(), Duration::from_secs(10));
        assert!(!l.is_leading() && !l.may_write());
        state.lost();
        assert!(!l.may_write());
    }

    #[test]
    fn failed_attempts_are_warned_of_once_a_minute() {
        let now = Instant::now();
        assert!(warn_due(None, now));
        assert!(!warn_due(Some(now), now + Duration::from_secs(59)));
        assert!(warn_due(Some(now), now + WARN_EVERY));
    }

    #[test]
    fn an_election_without_a_completed_round_for_a_lease_is_a_problem() {
        let contact = Instant::now();
        let lease = Duration::from_secs(15);
        assert_eq!(election_problem(contact, None, lease, contact), None);
        assert_eq!(
            election_problem(contact, Some("forbidden (403)"), lease, contact + lease / 2),
            None
        );
        let problem = election_problem(contact, Some("forbidden (403)"), lease, contact + lease)
            .expect("a problem");
        assert!(problem.contains("forbidden (403)"), "{problem}");
        assert!(election_problem(contact, None, lease, contact + lease * 2)
            .is_some_and(|p| p.contains("no answer")));
        // No election: nothing to report.
        assert_eq!(always().leading().election_problem(), None);
        let state = State::new(Validity::Never, Some(lease));
        state.contact(Ok(()));
        assert_eq!(Leadership { state }.election_problem(), None);
    }

    #[test]
    fn the_previous_holder_is_logged_by_its_plain_name() {
        assert_eq!(holder_name(Some("replica-a")), "replica-a");
        assert_eq!(holder_name(None), "none");
        assert_eq!(holder_name(Some("")), "none");
    }

    #[test]
    fn a_holder_renews_and_a_free_lease_is_taken() {
        let now = Instant::now();
        assert_eq!(decide(&observed(Some("a"), now), "a", now), Step::Renew);
        assert_eq!(decide(&observed(None, now), "a", now), Step::Acquire);
        assert_eq!(decide(&observed(Some(""), now), "a", now), Step::Acquire);
    }

    #[test]
    fn another_holder_is_waited_for_until_its_record_went_unchanged_a_whole_lease() {
        let since = Instant::now();
        let other = observed(Some("b"), since);
        assert_eq!(decide(&other, "a", since), Step::Wait);
        assert_eq!(
            decide(&other, "a", since + Duration::from_secs(14)),
            Step::Wait
        );
        assert_eq!(
            decide(&other, "a", since + Duration::from_secs(15)),
            Step::Acquire
        );
    }
}
