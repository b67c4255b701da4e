//! `vertice-agent probe serve`: one runner per vantage. It watches every
//! VerticeFailover, probes its replicas at the check's period, and applies
//! only its own entry of `status.observations` (server-side apply, field
//! manager `vertice-probe-<vantage>`). No leader: every runner probes,
//! because vantages, not replicas of the runner, are the unit of agreement.
//!
//! A failover's author may be a namespace tenant, so the runner keeps her
//! inside her rights: it uses only Secrets their owners opted in
//! ([`super::secrets`]), connects only to addresses the administrator
//! allows ([`super::address_policy`]), reports categories, never fetched
//! content ([`super::reasons`]), and bounds each namespace's share of the
//! probe permits and every probe's time ([`super::permits`], [`Limits`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, ResourceExt};
use tokio::task::JoinHandle;
use vertice_crds::common::SecretKeySelector;
use vertice_crds::failover::{HealthCheck, VerticeFailover};
use vertice_crds::tenancy::SecretReferencePolicy;

use super::metrics::RunnerMetrics;
use super::permits::Permits;
use super::readiness::{self, Readiness};
use super::resolve::{self, Probe};
use super::secrets::{self, SecretProblem};
use super::tally::Tally;
use super::{Limits, ProbeResult};

/// How often the set of failovers is compared with the running loops.
const RESYNC: Duration = Duration::from_secs(1);
/// Secrets a check refers to are read again after this long.
const SECRET_TTL: Duration = Duration::from_secs(60);

/// Every API call the runner makes, as RBAC sees it `(group, resource,
/// verb)`; deploy/base/probe-runner.yaml grants exactly these.
pub const PERMISSIONS: &[(&str, &str, &str)] = &[
    ("vertice.io", "verticefailovers", "list"),
    ("vertice.io", "verticefailovers", "watch"),
    ("vertice.io", "verticefailovers/status", "patch"),
    ("", "secrets", "get"),
];

pub fn field_manager(vantage: &str) -> String {
    format!("vertice-probe-{vantage}")
}

/// What the runner works with, settled from its flags before it starts.
#[derive(Debug, Clone)]
pub struct ServeSettings {
    /// This runner's vantage; observations are written under it.
    pub vantage: String,
    /// Watch only this namespace (default: all).
    pub namespace: Option<String>,
    /// Address of /healthz, /readyz and /metrics.
    pub listen: SocketAddr,
    /// Probes in flight at once across all failovers.
    pub max_concurrent_probes: usize,
    /// Probes one namespace may have in flight at once.
    pub max_probes_per_namespace: usize,
    /// What bounds every probe, whatever a failover asks.
    pub limits: Limits,
    /// Which Secrets a check may name.
    pub secret_policy: SecretReferencePolicy,
}

/// The exit code: 1 when the runner cannot work.
pub async fn run(settings: ServeSettings) -> i32 {
    if settings.max_probes_per_namespace >= settings.max_concurrent_probes {
        tracing::warn!(
            "--max-probes-per-namespace {} is not below --max-concurrent-probes {}: one \
             namespace can take every probe permit; set --max-probes-per-namespace lower",
            settings.max_probes_per_namespace,
            settings.max_concurrent_probes
        );
    }
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    match serve(settings).await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    }
}

/// A vantage is a label value and part of a field manager name.
pub fn validate_vantage(vantage: &str) -> Result<(), String> {
    let ok = !vantage.is_empty()
        && vantage.len() <= 63
        && vantage
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        && vantage.starts_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{vantage:?} is not a vantage name: 1-63 letters, digits, '-', '_' or '.', e.g. eu-west-1"
        ))
    }
}

async fn serve(settings: ServeSettings) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let client = Client::try_default()
        .await
        .context("cannot build a Kubernetes client (in-cluster config or KUBECONFIG)")?;
    let failovers: Api<VerticeFailover> = match &settings.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    failovers
        .list(&kube::api::ListParams::default().limit(1))
        .await
        .context("cannot list VerticeFailovers: are the CRDs installed and the probe runner's RBAC applied?")?;
    let metrics = RunnerMetrics::new().context("metrics registry")?;
    let synced = Arc::new(AtomicBool::new(false));
    let readiness = Arc::new(Mutex::new(Readiness::default()));
    let server = tokio::spawn(super::metrics::serve(
        settings.listen,
        metrics.clone(),
        synced.clone(),
        readiness.clone(),
    ));

    let (store, writer) = reflector::store();
    let watch = reflector::reflector(
        writer,
        watcher(failovers, watcher::Config::default()).default_backoff(),
    )
    .touched_objects()
    .for_each(|event| async move {
        if let Err(e) = event {
            tracing::warn!(error = %e, "watching VerticeFailovers");
        }
    });
    let watch = tokio::spawn(watch);
    let runner = Runner {
        client,
        vantage: settings.vantage.clone(),
        permits: Arc::new(Permits::new(
            settings.max_concurrent_probes,
            settings.max_probes_per_namespace,
        )),
        limits: Arc::new(settings.limits),
        secret_policy: settings.secret_policy,
        metrics,
        readiness,
    };
    store
        .wait_until_ready()
        .await
        .context("the VerticeFailover watch stopped before it synced")?;
    synced.store(true, Ordering::Relaxed);
    tracing::info!(vantage = %settings.vantage, "probe runner started");
    supervise(&runner, &store).await;
    watch.abort();
    server.abort();
    Ok(())
}

#[derive(Clone)]
struct Runner {
    client: Client,
    vantage: String,
    permits: Arc<Permits>,
    limits: Arc<Limits>,
    secret_policy: SecretReferencePolicy,
    metrics: RunnerMetrics,
    readiness: Arc<Mutex<Readiness>>,
}

impl Runner {
    /// A probe loop fell behind through the runner's load: a warning, the
    /// metric, and `/readyz` answers 503 for a minute.
    fn behind(&self, namespace: &str, name: &str, what: &str) {
        tracing::warn!(%namespace, failover = %name, "probes behind schedule: {what}");
        self.metrics.late_round(namespace);
        if let Ok(mut readiness) = self.readiness.lock() {
            readiness.late(Instant::now(), format!("{namespace}/{name}: {what}"));
        }
    }
}

/// Keeps one probe loop per failover, restarted when its spec changes.
async fn supervise(runner: &Runner, store: &Store<VerticeFailover>) {
    let mut loops: HashMap<(String, String), (Option<i64>, JoinHandle<()>)> = HashMap::new();
    let mut namespaces: HashSet<String> = HashSet::new();
    let mut stop = std::pin::pin!(shutdown());
    loop {
        let mut live = HashMap::new();
        for failover in store.state() {
            let Some(ns) = failover.namespace() else {
                continue;
            };
            live.insert((ns, failover.name_any()), failover);
        }
        // Namespaces without failovers leave no permits or series behind.
        let live_namespaces: HashSet<String> = live.keys().map(|(ns, _)| ns.clone()).collect();
        for gone in namespaces.difference(&live_namespaces) {
            runner.metrics.forget_namespace(gone);
        }
        runner.permits.retain(&live_namespaces);
        namespaces = live_namespaces;
        loops.retain(|key, (generation, task)| {
            let keep = live
                .get(key)
                .is_some_and(|f| f.metadata.generation == *generation && !task.is_finished());
            if !keep {
                task.abort();
            }
            keep
        });
        for (key, failover) in live {
            if loops.contains_key(&key) {
                continue;
            }
            let generation = failover.metadata.generation;
            let task = tokio::spawn(probe_loop(runner.clone(), failover));
            loops.insert(key, (generation, task));
        }
        tokio::select! {
            () = tokio::time::sleep(RESYNC) => {}
            () = &mut stop => break,
        }
    }
    for (_, task) in loops.into_values() {
        task.abort();
    }
    tracing::info!("probe runner stopped");
}

async fn shutdown() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// Probes one failover's replicas every period until aborted.
async fn probe_loop(runner: Runner, failover: Arc<VerticeFailover>) {
    let Some(failover) = FailoverLoop::new(runner, failover) else {
        return;
    };
    let mut tally = failover.resume_tally();
    let mut cached = CachedProbes::default();
    let mut ticker = tokio::time::interval(failover.period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // When the previous round started and how long it waited for this
    // namespace's own share of the permits.
    let mut previous: Option<(Instant, Duration)> = None;
    loop {
        ticker.tick().await;
        let started = Instant::now();
        if let Some((previous_start, own_wait)) = previous {
            failover.note_lateness(previous_start, started, own_wait);
        }
        let (results, own_wait) = failover.round(&mut cached).await;
        previous = Some((started, own_wait));
        for (replica, result) in results {
            tally
                .replicas
                .entry(replica)
                .or_default()
                .record(&result, failover.cap);
        }
        failover.report(&mut tally).await;
    }
}

/// One failover's loop: what it settles once from the failover it was
/// started for (a changed failover starts a new loop).
struct FailoverLoop {
    runner: Runner,
    failover: Arc<VerticeFailover>,
    namespace: String,
    name: String,
    period: Duration,
    timeout: Duration,
    /// The most consecutive results a replica's tally keeps.
    cap: u32,
    /// Twice the period: the default staleness limit (3 periods + timeout +
    /// 5 s) always sees a heartbeat from a live vantage.
    heartbeat: chrono::Duration,
    /// The replicas' names, in the spec's order.
    names: Vec<String>,
    api: Api<VerticeFailover>,
    secrets: SecretSource,
    manager: String,
}

impl FailoverLoop {
    /// `None` for a failover without a namespace (none is watched).
    fn new(runner: Runner, failover: Arc<VerticeFailover>) -> Option<Self> {
        let namespace = failover.namespace()?;
        let name = failover.name_any();
        let check = &failover.spec.check;
        let period = Duration::from_secs(u64::from(check.period_seconds));
        let timeout = runner.limits.timeout(check);
        let cap = check.failure_threshold.max(check.success_threshold);
        let heartbeat = chrono::Duration::seconds(2 * i64::from(check.period_seconds));
        let names = failover
            .spec
            .replicas
            .iter()
            .map(|r| r.name.clone())
            .collect();
        let api: Api<VerticeFailover> = Api::namespaced(runner.client.clone(), &namespace);
        let secrets = SecretSource {
            api: Api::<Secret>::namespaced(runner.client.clone(), &namespace),
            policy: runner.secret_policy,
            namespace: namespace.clone(),
            failover: name.clone(),
        };
        runner.metrics.namespace_seen(&namespace);
        let manager = field_manager(&runner.vantage);
        Some(FailoverLoop {
            runner,
            failover,
            namespace,
            name,
            period,
            timeout,
            cap,
            heartbeat,
            names,
            api,
            secrets,
            manager,
        })
    }

    /// The tally this vantage wrote last for this generation, so a restarted
    /// runner (or loop) goes on counting instead of starting over.
    fn resume_tally(&self) -> Tally {
        let failover = &self.failover;
        let own = failover.status.as_ref().and_then(|s| {
            s.observations.iter().find(|o| {
                o.vantage == self.runner.vantage
                    && o.observed_generation == failover.metadata.generation
            })
        });
        let mut tally = Tally::resume(own, self.cap);
        tally.retain(&self.names);
        tally
    }

    /// A round that started late through the runner's own load (not the
    /// namespace's wait for its share of permits) makes the runner unready.
    fn note_lateness(&self, previous_start: Instant, started: Instant, own_wait: Duration) {
        if let Some(late) =
            readiness::round_lateness(previous_start, started, self.period, self.timeout, own_wait)
        {
            self.runner.behind(
                &self.namespace,
                &self.name,
                &format!("round started {} s late", late.as_secs()),
            );
        }
    }

    /// One round's result per replica, and how long it waited for the
    /// namespace's own share of the permits.
    async fn round(&self, cached: &mut CachedProbes) -> (Vec<(String, ProbeResult)>, Duration) {
        let spec = &self.failover.spec;
        match cached
            .get(&spec.check, spec, &self.secrets, &self.runner.limits)
            .await
        {
            // A Secret its owner did not opt in: nothing is sent anywhere.
            Round::Refused(reason) => {
                let failed = ProbeResult {
                    ok: false,
                    latency_ms: 0,
                    reason: Some(reason),
                };
                let results = self
                    .names
                    .iter()
                    .map(|n| (n.clone(), failed.clone()))
                    .collect();
                (results, Duration::ZERO)
            }
            Round::Probes(probes) => {
                probe_round(
                    &self.runner,
                    &self.namespace,
                    &self.name,
                    spec,
                    &probes,
                    self.timeout,
                    self.period,
                )
                .await
            }
        }
    }

    /// Writes this vantage's observation (server-side apply of its own
    /// entry) when it changed or the heartbeat is due.
    async fn report(&self, tally: &mut Tally) {
        let now = Utc::now();
        let generation = self.failover.metadata.generation;
        let observation = tally.observation(&self.runner.vantage, generation, now);
        if !tally.should_write(&observation, now, self.heartbeat) {
            return;
        }
        let body = serde_json::json!({
            "apiVersion": "vertice.io/v1alpha1",
            "kind": "VerticeFailover",
            "status": {"observations": [observation]},
        });
        let started = Instant::now();
        let params = PatchParams::apply(&self.manager).force();
        let metrics = &self.runner.metrics;
        match self
            .api
            .patch_status(&self.name, &params, &Patch::Apply(&body))
            .await
        {
            Ok(_) => {
                metrics.status_written(true, started.elapsed());
                tally.wrote(observation, now);
            }
            Err(e) => {
                metrics.status_written(false, started.elapsed());
                let (namespace, name) = (&self.namespace, &self.name);
                tracing::warn!(%namespace, failover = %name, error = %e, "writing observations");
            }
        }
    }
}

/// Probes every replica once, each under a permit; the results, and the
/// longest a probe waited for the namespace's own share.
async fn probe_round(
    runner: &Runner,
    namespace: &str,
    name: &str,
    spec: &vertice_crds::VerticeFailoverSpec,
    probes: &HashMap<String, Result<Probe, String>>,
    timeout: Duration,
    period: Duration,
) -> (Vec<(String, ProbeResult)>, Duration) {
    let kind = spec.check.kind();
    let outcomes = futures::future::join_all(spec.replicas.iter().map(|replica| async move {
        let (result, own_wait) = match probes.get(&replica.name) {
            Some(Ok(probe)) => {
                let permit = runner.permits.acquire(namespace).await;
                if readiness::permit_wait_too_long(permit.global_wait, period) {
                    runner.behind(
                        namespace,
                        name,
                        &format!(
                            "waited {} s for a probe permit (--max-concurrent-probes)",
                            permit.global_wait.as_secs()
                        ),
                    );
                }
                let result = super::run(probe, timeout).await;
                runner.metrics.observe(kind, &result);
                (result, permit.namespace_wait)
            }
            Some(Err(e)) => (not_probed(e), Duration::ZERO),
            None => (not_probed("no probe"), Duration::ZERO),
        };
        ((replica.name.clone(), result), own_wait)
    }))
    .await;
    let own_wait = outcomes.iter().map(|(_, w)| *w).max().unwrap_or_default();
    (outcomes.into_iter().map(|(r, _)| r).collect(), own_wait)
}

fn not_probed(reason: &str) -> ProbeResult {
    ProbeResult {
        ok: false,
        latency_ms: 0,
        reason: Some(super::bounded(reason)),
    }
}

/// Where a failover's Secrets come from, and the rule for using them.
struct SecretSource {
    api: Api<Secret>,
    policy: SecretReferencePolicy,
    namespace: String,
    failover: String,
}

/// What one round does: probe, or refuse because of a Secret.
#[derive(Clone)]
enum Round {
    Refused(String),
    Probes(Arc<HashMap<String, Result<Probe, String>>>),
}

/// The round's plan, rebuilt when the Secrets it uses change (an HTTP
/// client with its TLS roots is not rebuilt every round). Secrets are read
/// at most once a [`SECRET_TTL`], and their labels judged at every read.
#[derive(Default)]
struct CachedProbes {
    secrets: BTreeMap<SecretKeySelector, Result<String, SecretProblem>>,
    fetched: Option<Instant>,
    round: Option<Round>,
}

impl CachedProbes {
    async fn get(
        &mut self,
        check: &HealthCheck,
        spec: &vertice_crds::VerticeFailoverSpec,
        source: &SecretSource,
        limits: &Limits,
    ) -> Round {
        let due = self.fetched.is_none_or(|at| at.elapsed() >= SECRET_TTL);
        if let (false, Some(round)) = (due, &self.round) {
            return round.clone();
        }
        let selectors = secrets::referenced(check);
        let read = secrets::read(&source.api, source.policy, &source.namespace, &selectors).await;
        self.fetched = Some(Instant::now());
        if let Some(refused) = secrets::refusal(&read) {
            tracing::warn!(
                namespace = %source.namespace,
                failover = %source.failover,
                "not probing: {refused}"
            );
            let round = Round::Refused(secrets::refusal_reason(refused));
            self.secrets = read;
            self.round = Some(round.clone());
            return round;
        }
        let stale = !matches!(self.round, Some(Round::Probes(_))) || read != self.secrets;
        if stale {
            self.secrets = read;
            let lookup = |s: &SecretKeySelector| match self.secrets.get(s) {
                Some(Ok(value)) => Ok(value.clone()),
                Some(Err(SecretProblem::Unusable(why))) => Err(why.clone()),
                Some(Err(SecretProblem::Refused(refused))) => Err(secrets::refusal_reason(refused)),
                None => Err(format!("Secret {} key {} was not read", s.name, s.key)),
            };
            let probes = spec
                .replicas
                .iter()
                .map(|r| {
                    let probe = resolve::for_replica_within(check, r, &lookup, limits);
                    (r.name.clone(), probe)
                })
                .collect();
            self.round = Some(Round::Probes(Arc::new(probes)));
        }
        self.round
            .clone()
            .unwrap_or_else(|| Round::Probes(Arc::default()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vantage_names() {
        assert!(validate_vantage("eu-west-1").is_ok());
        assert!(validate_vantage("").is_err());
        assert!(validate_vantage("-x").is_err());
        assert!(validate_vantage("a b").is_err());
        assert!(validate_vantage(&"a".repeat(64)).is_err());
    }
}
