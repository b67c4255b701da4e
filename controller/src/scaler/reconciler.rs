//! The scaler loop: one loop for every VerticeScaler, at the poll interval,
//! only on the leader. Each poll observes, plans, scales through `/scale`,
//! and writes the status when the decision changed (or as a heartbeat).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::StreamExt;
use kube::runtime::reflector::{self, reflector, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Resource, ResourceExt};
use vertice_crds::redact::redact_urls;
use vertice_crds::scaler::{
    Decision, MetricState, ScaleTargetRef, VerticeScalerStatus, PAUSED_ANNOTATION,
};
use vertice_crds::VerticeScaler;

use super::cache::Caches;
use super::decide::{self, Observed, Plan};
use super::fair::{self, Lanes};
use super::observe::{self, Kinds, TargetError, TargetState};
use super::overlap::{self, Claim, HpaClaim, Overlap, TargetKey};
use super::pods::{PodMetrics, PodView};
use super::prometheus::{DownServers, Prometheus, QueryLimits, Tokens};
use super::selector::Selector;
use super::unobserved::Unobserved;
use crate::context::{Event, Shared};

/// Scalers polled at once in all: each poll may hold one metric answer of
/// up to `--max-metric-response-bytes`, so this bounds that memory (16 ×
/// 4 MiB by default).
const MAX_POLLS: usize = 16;
/// Scalers of one namespace polled at once: what one tenant's slow scalers
/// can take of `MAX_POLLS`, so other namespaces always find room.
const PER_NAMESPACE: usize = 4;
/// The status is rewritten at least this often while nothing changes, so
/// values, ratios and the stabilization history's times stay fresh for a
/// new leader.
const HEARTBEAT: Duration = Duration::from_secs(60);

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub struct ScalerLoop {
    pub shared: Shared,
    pub interval: Duration,
    kinds: Kinds,
    caches: Caches,
    /// For `metrics.k8s.io` only: without kube's retries of 503s, which
    /// back off for minutes — an unavailable metrics API is a broken metric
    /// this poll, not a reason to stall every scaler.
    metrics_client: kube::Client,
    http: reqwest::Client,
    down: DownServers,
    tokens: Tokens,
    /// Shared by every namespace's round (see `fair`).
    polls: Arc<tokio::sync::Semaphore>,
    /// Per scaler (uid): the last status this leader computed and when it
    /// was last written. The in-memory copy is the history while leading:
    /// it is exact even between status writes.
    memory: Mutex<HashMap<String, (VerticeScalerStatus, Instant)>>,
    /// Per scaler (uid): why it must not act on its target, and which
    /// scalers an owner refuses, recomputed every tick from the watch
    /// caches (`overlap.rs`).
    overlap: Mutex<Overlap>,
    /// Per owner (uid): the refused scalers it was last told of, so its
    /// Normal Event comes once per change of that set. In memory: a new
    /// leader tells each owner once more.
    announced: Mutex<HashMap<String, Vec<String>>>,
}

impl ScalerLoop {
    pub fn new(
        shared: Shared,
        metrics_client: kube::Client,
        caches: Caches,
        interval: Duration,
    ) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            // A redirect would take the query (and its token) to a server
            // nobody checked against --allowed-prometheus-urls.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(ScalerLoop {
            shared,
            interval,
            kinds: Kinds::default(),
            metrics_client,
            caches,
            http,
            down: DownServers::default(),
            tokens: Tokens::default(),
            polls: Arc::new(tokio::sync::Semaphore::new(MAX_POLLS)),
            memory: Mutex::new(HashMap::new()),
            overlap: Mutex::new(Overlap::default()),
            announced: Mutex::new(HashMap::new()),
        })
    }

    /// Watches VerticeScalers and polls them until the process stops.
    pub async fn run(self: Arc<Self>, api: Api<VerticeScaler>, ready: crate::shared::Synced) {
        let (store, writer) = reflector::store();
        // Bounded back-off and /readyz health: `crate::watches`.
        let watch = crate::watches::recovering(
            "verticescalers",
            reflector(
                writer,
                watcher(api, watcher::Config::default()).modify(super::cache::strip_scaler),
            ),
        )
        .touched_objects()
        .for_each(|event| async move {
            if let Err(e) = event {
                tracing::debug!(error = %e, "VerticeScaler watch");
            }
        });
        // Dropped with this task: the loop below runs until it is aborted.
        let _watching = AbortOnDrop(tokio::spawn(watch));
        if !crate::shared::synced(&store).await || !self.caches.synced().await {
            return;
        }
        ready.mark();
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut was_leading = false;
        // Dropped with this task, which stops every round.
        let mut lanes = Lanes::default();
        // A step-down stops the rounds at once, not at the next tick (the
        // interval may be minutes).
        let mut leadership = self.shared.leading.watch();
        let mut watching = true;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                changed = leadership.changed(), if watching => watching = changed.is_ok(),
            }
            let leading = self.shared.is_leading();
            if leading && !was_leading {
                // A new leader starts from what the status says.
                if let Ok(mut m) = self.memory.lock() {
                    m.clear();
                }
                if let Ok(mut a) = self.announced.lock() {
                    a.clear();
                }
            }
            if !leading {
                if was_leading {
                    // A follower must not go on polling and scaling: the
                    // rounds still running stop now (dropping aborts them).
                    lanes = Lanes::default();
                }
                was_leading = false;
                continue;
            }
            was_leading = true;
            self.start_rounds(&store, &mut lanes);
        }
    }

    /// Starts a round for every namespace whose previous round is over, and
    /// forgets what deleted scalers left. A namespace still polling skips
    /// this tick: its slowness delays nobody else's round.
    fn start_rounds(self: &Arc<Self>, store: &Store<VerticeScaler>, lanes: &mut Lanes) {
        let scalers = store.state();
        let live: HashSet<(String, String)> = scalers
            .iter()
            .filter_map(|s| Some((s.namespace()?, s.name_any())))
            .collect();
        let uids: HashSet<String> = scalers.iter().filter_map(|s| s.uid()).collect();
        if let Ok(mut m) = self.memory.lock() {
            m.retain(|uid, _| uids.contains(uid));
        }
        if let Ok(mut a) = self.announced.lock() {
            a.retain(|uid, _| uids.contains(uid));
        }
        self.shared.metrics.retain_scalers(&live);
        let overlap = overlap::resolve(&claims(&scalers), &hpa_claims(&self.caches));
        if let Ok(mut o) = self.overlap.lock() {
            *o = overlap;
        }
        lanes.prune();
        let rounds = fair::rounds_to_start(
            scalers
                .into_iter()
                .filter_map(|s| Some((s.namespace()?, s))),
            |namespace| lanes.busy(namespace),
        );
        for (namespace, scalers) in rounds {
            let this = self.clone();
            let round =
                fair::run_round(scalers, PER_NAMESPACE, self.polls.clone(), move |scaler| {
                    let this = this.clone();
                    async move { this.poll_bounded(&scaler).await }
                });
            lanes.start(namespace, round);
        }
    }

    /// One poll, cut off at twice the interval (at least 20 s): a safety
    /// net, since every request in it has its own timeout.
    async fn poll_bounded(&self, scaler: &VerticeScaler) {
        let limit = self.interval.max(Duration::from_secs(10)) * 2;
        if tokio::time::timeout(limit, self.poll(scaler))
            .await
            .is_err()
        {
            self.shared
                .metrics
                .reconcile_errors
                .with_label_values(&["scaler", "unavailable"])
                .inc();
            tracing::warn!(namespace = ?scaler.namespace(), scaler = %scaler.name_any(), "poll timed out after {limit:?}");
        }
    }

    async fn poll(&self, scaler: &VerticeScaler) {
        let (Some(namespace), name) = (scaler.namespace(), scaler.name_any()) else {
            return;
        };
        let started = Instant::now();
        let metrics = &self.shared.metrics;
        metrics.reconciles.with_label_values(&["scaler"]).inc();
        let uid = scaler.uid().unwrap_or_default();
        let remembered = self.memory.lock().ok().and_then(|m| m.get(&uid).cloned());
        let history = remembered
            .as_ref()
            .map(|(s, _)| s.clone())
            .or_else(|| scaler.status.clone())
            .unwrap_or_default();
        let observed = self.observe(scaler, &namespace, &uid).await;
        if let Err(e) = &observed {
            metrics
                .reconcile_errors
                .with_label_values(&["scaler", e.category().as_str()])
                .inc();
        }
        let message = observed
            .as_ref()
            .err()
            .map(ToString::to_string)
            .unwrap_or_default();
        let observation = match &observed {
            Ok(o) => Ok(o),
            Err(e) => Err(Unobserved::from_error(e, &message)),
        };
        let now = Utc::now();
        let generation = scaler.meta().generation;
        let mut plan = decide::plan_poll(&scaler.spec, generation, observation, &history, now);
        if plan.scale && !self.scale(&namespace, &name, scaler, &mut plan, now).await {
            return;
        }
        self.report(&namespace, &name, &plan);
        let mut events = plan.events.clone();
        // Ownership is judged on a target that was read; an unread one
        // leaves the owner's announcement for the next poll that reads it.
        let read = plan.current.is_some();
        if read {
            events.extend(self.owner_event(&uid));
        }
        let status = plan.status;
        self.write(
            scaler,
            &namespace,
            &name,
            &uid,
            status,
            remembered.as_ref(),
            &events,
        )
        .await;
        // The duration measures polls that decided, not failed reads.
        if read {
            metrics
                .reconcile_duration
                .with_label_values(&["scaler"])
                .observe(started.elapsed().as_secs_f64());
        }
    }

    /// Patches `/scale` to the plan's count; a failure goes into the plan.
    /// `false`: this replica no longer leads, and must write nothing more.
    async fn scale(
        &self,
        namespace: &str,
        name: &str,
        scaler: &VerticeScaler,
        plan: &mut Plan,
        now: chrono::DateTime<Utc>,
    ) -> bool {
        let metrics = &self.shared.metrics;
        // Only while this replica may write, cut off when it may no
        // longer: a deposed leader's /scale patch must not land.
        let Some(scaled) = self
            .shared
            .leading
            .bounded(observe::set_replicas(
                &self.shared.client,
                &self.kinds,
                namespace,
                &scaler.spec.target_ref,
                plan.desired,
            ))
            .await
        else {
            tracing::debug!(%namespace, scaler = %name, "no longer leading; not scaling");
            return false;
        };
        let from = plan.current.unwrap_or_default();
        match scaled {
            Err(e) => {
                metrics
                    .reconcile_errors
                    .with_label_values(&["scaler", e.category().as_str()])
                    .inc();
                plan.scale_failed(&e.to_string(), now);
            }
            Ok(_) => {
                let direction = crate::metrics::scale_direction(from, plan.desired);
                metrics
                    .scaler_scales
                    .with_label_values(&[namespace, name, direction])
                    .inc();
                tracing::info!(%namespace, scaler = %name, from, to = plan.desired, "scaled");
            }
        }
        true
    }

    async fn observe(
        &self,
        scaler: &VerticeScaler,
        namespace: &str,
        uid: &str,
    ) -> Result<Observed, TargetError> {
        let spec = &scaler.spec;
        let target_ref = &spec.target_ref;
        let target = self.target(namespace, target_ref).await?;
        let needs_resources = spec
            .metrics
            .iter()
            .any(|m| m.cpu.is_some() || m.memory.is_some());
        let (pods, pod_metrics) = self
            .pods(namespace, target.selector.as_deref(), needs_resources)
            .await;
        let prometheus = Prometheus {
            http: &self.http,
            down: &self.down,
            tokens: &self.tokens,
            client: &self.shared.client,
            policy: self.shared.tenancy.secret_reference_policy,
            limits: QueryLimits::new(&self.shared.tenancy),
            allowed_urls: &self.shared.tenancy.allowed_prometheus_urls,
        }
        .run(namespace, spec)
        .await;
        let target_key = TargetKey::new(
            namespace,
            Some(&target_ref.api_version),
            &target_ref.kind,
            &target_ref.name,
        );
        Ok(Observed {
            spec_replicas: target.spec_replicas,
            status_replicas: target.status_replicas,
            pods,
            pod_metrics: if needs_resources {
                pod_metrics.or(Some(Ok(Vec::new())))
            } else {
                None
            },
            prometheus,
            rollout_in_progress: target.rollout_in_progress,
            paused: is_paused(scaler),
            refusal: self
                .overlap
                .lock()
                .ok()
                .and_then(|o| o.verdict(uid, &target_key)),
        })
    }

    /// The target's state: from the watch cache for an `apps/v1`
    /// Deployment or StatefulSet, otherwise through `/scale`.
    async fn target(
        &self,
        namespace: &str,
        target_ref: &ScaleTargetRef,
    ) -> Result<TargetState, TargetError> {
        let cached = (target_ref.api_version == "apps/v1")
            .then(|| {
                self.caches
                    .target(namespace, &target_ref.kind, &target_ref.name)
            })
            .flatten();
        match cached {
            Some(Some(state)) => Ok(state),
            Some(None) => Err(TargetError::NotFound {
                what: format!("{} {namespace}/{}", target_ref.kind, target_ref.name),
            }),
            None => {
                observe::target_by_scale(&self.shared.client, &self.kinds, namespace, target_ref)
                    .await
            }
        }
    }

    /// The pods of the target's selector, and their PodMetrics when a
    /// metric reads CPU or memory; a selector that cannot be used is an
    /// error of those metrics.
    async fn pods(
        &self,
        namespace: &str,
        selector: Option<&str>,
        needs_resources: bool,
    ) -> (Vec<PodView>, Option<Result<Vec<PodMetrics>, String>>) {
        let selector = selector
            .ok_or_else(|| "the target reports no selector: its pods cannot be found".to_string())
            .and_then(|s| Selector::parse(s).map(|parsed| (s, parsed)));
        let (text, parsed) = match selector {
            Err(e) => return (Vec::new(), Some(Err(e))),
            Ok(selector) => selector,
        };
        let pods = self
            .caches
            .pods(namespace, &parsed)
            .iter()
            .map(|p| PodView::from_pod(p))
            .collect();
        if !needs_resources {
            return (pods, None);
        }
        let pod_metrics = observe::pod_metrics(
            &self.metrics_client,
            namespace,
            text,
            self.shared.tenancy.max_metric_response_bytes,
        )
        .await;
        (pods, Some(pod_metrics))
    }

    /// The Normal Event that tells an owner which scalers it refuses, when
    /// that set changed since it was last told.
    fn owner_event(&self, uid: &str) -> Option<Event> {
        let owner = self
            .overlap
            .lock()
            .ok()
            .and_then(|o| o.owners.get(uid).cloned());
        let mut announced = self.announced.lock().ok()?;
        let mut last = announced.remove(uid);
        let event = overlap::owner_event(owner.as_ref(), &mut last);
        if let Some(last) = last {
            announced.insert(uid.to_string(), last);
        }
        event
    }

    fn report(&self, namespace: &str, name: &str, plan: &Plan) {
        let m = &self.shared.metrics;
        let labels = [namespace, name];
        let Some(current) = plan.current else {
            // No count was read: the gauges must not go on showing the
            // last one; the decision counter says why.
            let _ = m.scaler_current.remove_label_values(&labels);
            let _ = m.scaler_desired.remove_label_values(&labels);
            if let Some(d) = &plan.status.last_decision {
                m.scaler_decisions
                    .with_label_values(&[namespace, name, d.direction.as_str(), d.reason.as_str()])
                    .inc();
            }
            return;
        };
        m.scaler_desired
            .with_label_values(&labels)
            .set(i64::from(plan.desired));
        m.scaler_current
            .with_label_values(&labels)
            .set(i64::from(current));
        m.scaler_fallback
            .with_label_values(&labels)
            .set(i64::from(plan.fallback_active));
        // Counters exist at 0 from the first poll, so the first scale or
        // metric error is an increase that rate() and increase() can see.
        for direction in crate::metrics::SCALE_DIRECTIONS {
            m.scaler_scales
                .with_label_values(&[namespace, name, direction]);
        }
        if let Some(d) = &plan.status.last_decision {
            report_decision(m, namespace, name, d);
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn write(
        &self,
        scaler: &VerticeScaler,
        namespace: &str,
        name: &str,
        uid: &str,
        status: VerticeScalerStatus,
        remembered: Option<&(VerticeScalerStatus, Instant)>,
        events: &[Event],
    ) {
        // A tenant's spec.prometheus.url may carry credentials, and errors
        // quote it: nothing leaves the controller unredacted.
        let mut status = status;
        redact_status(&mut status);
        let events: Vec<Event> = events.iter().map(redact_event).collect();
        let written = remembered.map(|(s, at)| (s, *at));
        let last_written = scaler.status.clone().unwrap_or_default();
        let due = match written {
            Some((_, at)) => at.elapsed() >= HEARTBEAT,
            None => true,
        };
        let changed = decision_changed(&last_written, &status);
        let mut at = written.map(|(_, at)| at).unwrap_or_else(Instant::now);
        if changed || due {
            let api: Api<VerticeScaler> = Api::namespaced(self.shared.client.clone(), namespace);
            match self
                .shared
                .apply_status(&api, name, "vertice.io/v1alpha1", "VerticeScaler", &status)
                .await
            {
                Ok(()) => at = Instant::now(),
                Err(e) if crate::leader::refused(&e.source) => {
                    tracing::debug!(%namespace, scaler = %name, "no longer leading; status not written");
                    return;
                }
                Err(e) => {
                    self.shared
                        .metrics
                        .reconcile_errors
                        .with_label_values(&["scaler", e.category.as_str()])
                        .inc();
                    tracing::warn!(%namespace, scaler = %name, error = %e, "could not write VerticeScaler status");
                }
            }
        }
        if let Ok(mut m) = self.memory.lock() {
            m.insert(uid.to_string(), (status, at));
        }
        let reference = scaler.object_ref(&());
        for event in &events {
            self.shared.publish(&reference, event).await;
        }
    }
}

/// The decision's gauges and counters: bounds, the decision, each metric.
fn report_decision(m: &crate::metrics::Metrics, namespace: &str, name: &str, d: &Decision) {
    let labels = [namespace, name];
    for metric in &d.metrics {
        m.scaler_metric_errors
            .with_label_values(&[namespace, name, metric.name.as_str()]);
    }
    m.scaler_min
        .with_label_values(&labels)
        .set(i64::from(d.min_replicas));
    m.scaler_max
        .with_label_values(&labels)
        .set(i64::from(d.max_replicas));
    m.scaler_decisions
        .with_label_values(&[namespace, name, d.direction.as_str(), d.reason.as_str()])
        .inc();
    for metric in &d.metrics {
        let l = [namespace, name, metric.name.as_str()];
        m.scaler_metric_target
            .with_label_values(&l)
            .set(metric.target);
        match metric.value {
            Some(v) if metric.state == MetricState::Ok => {
                m.scaler_metric_value.with_label_values(&l).set(v)
            }
            _ => {
                m.scaler_metric_errors.with_label_values(&l).inc();
            }
        }
    }
}

fn is_paused(scaler: &VerticeScaler) -> bool {
    scaler
        .annotations()
        .get(PAUSED_ANNOTATION)
        .is_some_and(|v| v == "true")
}

/// Each scaler's claim on its target. One whose spec is invalid never
/// scales, so it claims nothing (as a `dryRun` one): it must not hold a
/// target from a scaler that would act.
pub(crate) fn claims(scalers: &[Arc<VerticeScaler>]) -> Vec<Claim> {
    scalers
        .iter()
        .filter_map(|s| {
            let target = &s.spec.target_ref;
            Some(Claim {
                uid: s.uid()?,
                name: s.name_any(),
                created: s
                    .creation_timestamp()
                    .map(|t| crate::shared::t_to_chrono(&t.0)),
                target: TargetKey::new(
                    &s.namespace()?,
                    Some(&target.api_version),
                    &target.kind,
                    &target.name,
                ),
                acts: !s.spec.dry_run && decide::validate(&s.spec).is_ok(),
                paused: is_paused(s),
            })
        })
        .collect()
}

/// Each upstream HPA's target.
fn hpa_claims(caches: &super::cache::Caches) -> Vec<HpaClaim> {
    caches
        .hpas
        .state()
        .iter()
        .filter_map(|h| {
            let target = &h.spec.scale_target_ref;
            Some(HpaClaim {
                name: h.name_any(),
                target: TargetKey::new(
                    &h.namespace()?,
                    target.api_version.as_deref(),
                    &target.kind,
                    &target.name,
                ),
            })
        })
        .collect()
}

/// Hides credentials in every text of the status: condition messages, the
/// decision's message and each metric's error.
pub fn redact_status(status: &mut VerticeScalerStatus) {
    for c in &mut status.conditions {
        c.message = redact_urls(&c.message);
    }
    if let Some(d) = status.last_decision.as_mut() {
        d.message = redact_urls(&d.message);
        for m in &mut d.metrics {
            if let Some(e) = m.error.as_mut() {
                *e = redact_urls(e);
            }
        }
    }
}

fn redact_event(event: &Event) -> Event {
    Event::new(event.warning, event.reason, redact_urls(&event.note))
}

/// Whether `next` says something `last` (what the API server holds) does
/// not: another count, reason, direction, condition (its message too),
/// metric state, proposal or error text, or scale event. Values, ratios
/// and times alone wait for the heartbeat, so every message must be free
/// of per-poll numbers (an age, a duration measured now).
pub fn decision_changed(last: &VerticeScalerStatus, next: &VerticeScalerStatus) -> bool {
    let gist = |s: &VerticeScalerStatus| {
        let conditions: Vec<_> = s
            .conditions
            .iter()
            .map(|c| {
                (
                    c.type_.clone(),
                    c.status,
                    c.reason.clone(),
                    c.message.clone(),
                    c.observed_generation,
                )
            })
            .collect();
        let decision = s.last_decision.as_ref().map(|d| {
            let metrics: Vec<_> = d
                .metrics
                .iter()
                .map(|m| (m.name.clone(), m.state, m.proposal, m.error.clone()))
                .collect();
            (
                d.desired_replicas,
                d.current_replicas,
                d.direction,
                d.reason,
                d.message.clone(),
                d.winner.clone(),
                d.min_replicas,
                d.max_replicas,
                d.open_windows.clone(),
                d.not_acted,
                metrics,
            )
        });
        let recommendations: Vec<i32> = s.recommendations.iter().map(|r| r.replicas).collect();
        (
            s.current_replicas,
            s.desired_replicas,
            s.observed_generation,
            s.scale_events.clone(),
            conditions,
            decision,
            recommendations,
        )
    };
    gist(last) != gist(next)
}
