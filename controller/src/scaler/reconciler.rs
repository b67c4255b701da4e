//! The scaler loop: one loop for every VerticeScaler, at the poll interval,
//! only on the leader. Each poll observes, plans, scales through `/scale`,
//! and writes the status when the decision changed (or as a heartbeat).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::StreamExt;
use kube::runtime::reflector::{self, reflector, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Resource, ResourceExt};
use vertice_crds::redact::redact_urls;
use vertice_crds::scaler::{VerticeScalerStatus, PAUSED_ANNOTATION};
use vertice_crds::VerticeScaler;

use super::cache::Caches;
use super::decide::{self, Observed, Plan};
use super::fair::{self, Lanes};
use super::observe::{self, Kinds};
use super::pods::PodView;
use super::prometheus::{DownServers, Prometheus, QueryLimits, Tokens};
use super::selector::Selector;
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
        })
    }

    /// Watches VerticeScalers and polls them until the process stops.
    pub async fn run(self: Arc<Self>, api: Api<VerticeScaler>, ready: Arc<AtomicBool>) {
        let (store, writer) = reflector::store();
        let watch = reflector(
            writer,
            watcher(api, watcher::Config::default()).modify(super::cache::strip_scaler),
        )
        .default_backoff()
        .touched_objects()
        .for_each(|event| async move {
            if let Err(e) = event {
                tracing::debug!(error = %e, "VerticeScaler watch");
            }
        });
        // Dropped with this task: the loop below runs until it is aborted.
        let _watching = AbortOnDrop(tokio::spawn(watch));
        if !crate::runtime::synced(&store).await || !self.caches.synced().await {
            return;
        }
        ready.store(true, Ordering::Relaxed);
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut was_leading = false;
        // Dropped with this task, which stops every round.
        let mut lanes = Lanes::default();
        loop {
            tick.tick().await;
            let leading = self.shared.is_leading();
            if leading && !was_leading {
                // A new leader starts from what the status says.
                if let Ok(mut m) = self.memory.lock() {
                    m.clear();
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
        self.shared.metrics.retain_scalers(&live);
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
        let client = &self.shared.client;
        let spec = &scaler.spec;
        let observed = match self.observe(scaler, &namespace).await {
            Ok(o) => o,
            Err(e) => {
                metrics
                    .reconcile_errors
                    .with_label_values(&["scaler", e.category.as_str()])
                    .inc();
                let mut status = history.clone();
                let message = e.to_string();
                let mut c = vertice_crds::common::Condition::new(
                    "AbleToScale",
                    false,
                    "FailedGetScale",
                    &message,
                    Utc::now(),
                );
                c.observed_generation = scaler.meta().generation;
                vertice_crds::common::set_condition(&mut status.conditions, c);
                self.write(
                    scaler,
                    &namespace,
                    &name,
                    &uid,
                    status,
                    remembered.as_ref(),
                    &[Event {
                        warning: true,
                        reason: "FailedGetScale",
                        note: message,
                    }],
                )
                .await;
                return;
            }
        };
        let now = Utc::now();
        let mut plan = decide::plan(spec, scaler.meta().generation, &observed, &history, now);
        if plan.scale {
            if let Err(e) = observe::set_replicas(
                client,
                &self.kinds,
                &namespace,
                &spec.target_ref,
                plan.desired,
            )
            .await
            {
                metrics
                    .reconcile_errors
                    .with_label_values(&["scaler", e.category.as_str()])
                    .inc();
                plan.scale_failed(&e.to_string(), now);
            } else {
                let direction = if plan.desired > observed.spec_replicas {
                    "Up"
                } else {
                    "Down"
                };
                metrics
                    .scaler_scales
                    .with_label_values(&[&namespace, &name, direction])
                    .inc();
                tracing::info!(%namespace, scaler = %name, from = observed.spec_replicas, to = plan.desired, "scaled");
            }
        }
        self.report(&namespace, &name, &observed, &plan);
        let events = plan.events.clone();
        self.write(
            scaler,
            &namespace,
            &name,
            &uid,
            plan.status,
            remembered.as_ref(),
            &events,
        )
        .await;
        metrics
            .reconcile_duration
            .with_label_values(&["scaler"])
            .observe(started.elapsed().as_secs_f64());
    }

    async fn observe(
        &self,
        scaler: &VerticeScaler,
        namespace: &str,
    ) -> Result<Observed, crate::error::Error> {
        let client = &self.shared.client;
        let spec = &scaler.spec;
        let target_ref = &spec.target_ref;
        let cached = (target_ref.api_version == "apps/v1")
            .then(|| {
                self.caches
                    .target(namespace, &target_ref.kind, &target_ref.name)
            })
            .flatten();
        let target = match cached {
            Some(Some(state)) => state,
            Some(None) => {
                return Err(crate::error::Error {
                    category: crate::error::Category::NotFound,
                    action: format!("find {} {}", target_ref.kind, target_ref.name),
                    source: kube::Error::Api(Box::new(kube::core::Status {
                        code: 404,
                        reason: "NotFound".into(),
                        message: format!(
                            "{} {:?} not found in namespace {namespace}",
                            target_ref.kind, target_ref.name
                        ),
                        ..Default::default()
                    })),
                })
            }
            None => observe::target_by_scale(client, &self.kinds, namespace, target_ref).await?,
        };
        let needs_resources = spec
            .metrics
            .iter()
            .any(|m| m.cpu.is_some() || m.memory.is_some());
        let selector = target
            .selector
            .as_deref()
            .ok_or_else(|| "the target reports no selector: its pods cannot be found".to_string())
            .and_then(|s| Selector::parse(s).map(|parsed| (s, parsed)));
        let (pods, pod_metrics) = match selector {
            Err(e) => (Vec::new(), Some(Err(e))),
            Ok((text, parsed)) => {
                let pods = self
                    .caches
                    .pods(namespace, &parsed)
                    .iter()
                    .map(|p| PodView::from_pod(p))
                    .collect();
                let pm = if needs_resources {
                    Some(
                        observe::pod_metrics(
                            &self.metrics_client,
                            namespace,
                            text,
                            self.shared.tenancy.max_metric_response_bytes,
                        )
                        .await,
                    )
                } else {
                    None
                };
                (pods, pm)
            }
        };
        let prometheus = Prometheus {
            http: &self.http,
            down: &self.down,
            tokens: &self.tokens,
            client,
            policy: self.shared.tenancy.secret_reference_policy,
            limits: QueryLimits::new(&self.shared.tenancy),
            allowed_urls: &self.shared.tenancy.allowed_prometheus_urls,
        }
        .run(namespace, spec)
        .await;
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
            paused: scaler
                .annotations()
                .get(PAUSED_ANNOTATION)
                .is_some_and(|v| v == "true"),
        })
    }

    fn report(&self, namespace: &str, name: &str, observed: &Observed, plan: &Plan) {
        let m = &self.shared.metrics;
        let labels = [namespace, name];
        m.scaler_desired
            .with_label_values(&labels)
            .set(i64::from(plan.desired));
        m.scaler_current
            .with_label_values(&labels)
            .set(i64::from(observed.spec_replicas));
        m.scaler_fallback
            .with_label_values(&labels)
            .set(i64::from(plan.fallback_active));
        // Counters exist at 0 from the first poll, so the first scale or
        // metric error is an increase that rate() and increase() can see.
        for direction in ["Up", "Down"] {
            m.scaler_scales
                .with_label_values(&[namespace, name, direction]);
        }
        if let Some(d) = &plan.status.last_decision {
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
                    Some(v) if metric.state == "Ok" => {
                        m.scaler_metric_value.with_label_values(&l).set(v)
                    }
                    _ => {
                        m.scaler_metric_errors.with_label_values(&l).inc();
                    }
                }
            }
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
    Event {
        note: redact_urls(&event.note),
        ..event.clone()
    }
}

/// Whether `next` says something `last` (what the API server holds) does
/// not: another count, reason, direction, condition, metric state or
/// proposal, or scale event. Values, ratios and times alone wait for the
/// heartbeat.
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
                    c.observed_generation,
                )
            })
            .collect();
        let decision = s.last_decision.as_ref().map(|d| {
            let metrics: Vec<_> = d
                .metrics
                .iter()
                .map(|m| (m.name.clone(), m.state.clone(), m.proposal))
                .collect();
            (
                d.desired_replicas,
                d.current_replicas,
                d.direction.clone(),
                d.reason.clone(),
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
