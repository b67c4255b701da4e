//! `vertice-agent probe serve`: one runner per vantage. It watches every
//! VerticeFailover, probes its replicas at the check's period, and applies
//! only its own entry of `status.observations` (server-side apply, field
//! manager `vertice-probe-<vantage>`). No leader: every runner probes,
//! because vantages, not replicas of the runner, are the unit of agreement.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, ResourceExt};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use vertice_crds::common::SecretKeySelector;
use vertice_crds::failover::{HealthCheck, VerticeFailover};

use super::cli::ServeArgs;
use super::metrics::RunnerMetrics;
use super::resolve::{self, Probe};
use super::tally::Tally;

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

/// The exit code: 2 on bad configuration, 1 when the runner cannot work.
pub async fn run(args: ServeArgs) -> i32 {
    if let Err(e) = validate_vantage(&args.vantage) {
        eprintln!("error: --vantage (VERTICE_VANTAGE): {e}");
        return 2;
    }
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    match serve(args).await {
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

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let client = Client::try_default()
        .await
        .context("cannot build a Kubernetes client (in-cluster config or KUBECONFIG)")?;
    let failovers: Api<VerticeFailover> = match &args.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    failovers
        .list(&kube::api::ListParams::default().limit(1))
        .await
        .context("cannot list VerticeFailovers: are the CRDs installed and the probe runner's RBAC applied?")?;
    let metrics = RunnerMetrics::new().context("metrics registry")?;
    let synced = Arc::new(AtomicBool::new(false));
    let server = tokio::spawn(super::metrics::serve(
        args.listen,
        metrics.clone(),
        synced.clone(),
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
        vantage: args.vantage.clone(),
        permits: Arc::new(Semaphore::new(args.max_concurrent_probes as usize)),
        metrics,
    };
    store
        .wait_until_ready()
        .await
        .context("the VerticeFailover watch stopped before it synced")?;
    synced.store(true, Ordering::Relaxed);
    tracing::info!(vantage = %args.vantage, "probe runner started");
    supervise(&runner, &store).await;
    watch.abort();
    server.abort();
    Ok(())
}

#[derive(Clone)]
struct Runner {
    client: Client,
    vantage: String,
    permits: Arc<Semaphore>,
    metrics: RunnerMetrics,
}

/// Keeps one probe loop per failover, restarted when its spec changes.
async fn supervise(runner: &Runner, store: &Store<VerticeFailover>) {
    let mut loops: HashMap<(String, String), (Option<i64>, JoinHandle<()>)> = HashMap::new();
    let mut stop = std::pin::pin!(shutdown());
    loop {
        let mut live = HashMap::new();
        for failover in store.state() {
            let Some(ns) = failover.namespace() else {
                continue;
            };
            live.insert((ns, failover.name_any()), failover);
        }
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
    let Some(namespace) = failover.namespace() else {
        return;
    };
    let name = failover.name_any();
    let spec = &failover.spec;
    let check = &spec.check;
    let period = Duration::from_secs(u64::from(check.period_seconds));
    let timeout = Duration::from_secs(u64::from(check.timeout_seconds));
    let cap = check.failure_threshold.max(check.success_threshold);
    // Twice the period: the default staleness limit (3 periods + timeout +
    // 5 s) always sees a heartbeat from a live vantage.
    let heartbeat = chrono::Duration::seconds(2 * i64::from(check.period_seconds));
    let own = failover.status.as_ref().and_then(|s| {
        s.observations.iter().find(|o| {
            o.vantage == runner.vantage && o.observed_generation == failover.metadata.generation
        })
    });
    let mut tally = Tally::resume(own, cap);
    let names: Vec<String> = spec.replicas.iter().map(|r| r.name.clone()).collect();
    tally.retain(&names);
    let api: Api<VerticeFailover> = Api::namespaced(runner.client.clone(), &namespace);
    let secrets = Api::<Secret>::namespaced(runner.client.clone(), &namespace);
    let mut cached = CachedProbes::default();
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let manager = field_manager(&runner.vantage);
    loop {
        ticker.tick().await;
        let probes = cached.get(check, spec, &secrets).await;
        let results = futures::future::join_all(spec.replicas.iter().map(|replica| {
            let runner = &runner;
            let probe = probes.get(&replica.name).cloned();
            async move {
                let result = match probe {
                    Some(Ok(probe)) => {
                        let _permit = runner.permits.acquire().await;
                        super::run(&probe, timeout).await
                    }
                    Some(Err(e)) => super::ProbeResult {
                        ok: false,
                        latency_ms: 0,
                        reason: Some(super::bounded(&e)),
                    },
                    None => super::ProbeResult {
                        ok: false,
                        latency_ms: 0,
                        reason: Some("no probe".into()),
                    },
                };
                runner.metrics.observe(check.kind(), &result);
                (replica.name.clone(), result)
            }
        }))
        .await;
        for (replica, result) in results {
            tally
                .replicas
                .entry(replica)
                .or_default()
                .record(&result, cap);
        }
        let now = Utc::now();
        let observation = tally.observation(&runner.vantage, failover.metadata.generation, now);
        if !tally.should_write(&observation, now, heartbeat) {
            continue;
        }
        let body = serde_json::json!({
            "apiVersion": "vertice.io/v1alpha1",
            "kind": "VerticeFailover",
            "status": {"observations": [observation]},
        });
        let started = Instant::now();
        match api
            .patch_status(
                &name,
                &PatchParams::apply(&manager).force(),
                &Patch::Apply(&body),
            )
            .await
        {
            Ok(_) => {
                runner.metrics.status_written(true, started.elapsed());
                tally.wrote(observation, now);
            }
            Err(e) => {
                runner.metrics.status_written(false, started.elapsed());
                tracing::warn!(%namespace, failover = %name, error = %e, "writing observations");
            }
        }
    }
}

/// Probes per replica, rebuilt when the secrets they use change (an HTTP
/// client with its TLS roots is not rebuilt every round).
#[derive(Default)]
struct CachedProbes {
    secrets: BTreeMap<SecretKeySelector, Result<String, String>>,
    fetched: Option<Instant>,
    probes: Arc<HashMap<String, Result<Probe, String>>>,
}

impl CachedProbes {
    async fn get(
        &mut self,
        check: &HealthCheck,
        spec: &vertice_crds::VerticeFailoverSpec,
        api: &Api<Secret>,
    ) -> Arc<HashMap<String, Result<Probe, String>>> {
        let due = self.fetched.is_none_or(|at| at.elapsed() >= SECRET_TTL);
        if !due {
            return self.probes.clone();
        }
        let mut secrets = BTreeMap::new();
        for selector in referenced_secrets(check) {
            let value = read_secret(api, &selector).await;
            secrets.insert(selector, value);
        }
        self.fetched = Some(Instant::now());
        if self.probes.is_empty() || secrets != self.secrets {
            self.secrets = secrets;
            let lookup = |s: &SecretKeySelector| {
                self.secrets
                    .get(s)
                    .cloned()
                    .unwrap_or_else(|| Err(format!("Secret {} key {} was not read", s.name, s.key)))
            };
            self.probes = Arc::new(
                spec.replicas
                    .iter()
                    .map(|r| (r.name.clone(), resolve::for_replica(check, r, &lookup)))
                    .collect(),
            );
        }
        self.probes.clone()
    }
}

fn referenced_secrets(check: &HealthCheck) -> Vec<SecretKeySelector> {
    let mut refs = Vec::new();
    if let Some(pg) = &check.postgres {
        refs.extend(pg.password_secret_ref.clone());
    }
    if let Some(r) = &check.redis {
        refs.extend(r.password_secret_ref.clone());
    }
    if let Some(h) = &check.http {
        refs.extend(h.headers.iter().filter_map(|h| h.value_from.clone()));
        refs.extend(h.ca_bundle_secret_ref.clone());
    }
    refs
}

/// A Secret key's value; errors name the Secret and key, never a value.
async fn read_secret(api: &Api<Secret>, selector: &SecretKeySelector) -> Result<String, String> {
    let secret = api
        .get(&selector.name)
        .await
        .map_err(|e| format!("cannot read Secret {}: {}", selector.name, short(&e)))?;
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get(&selector.key))
        .ok_or_else(|| format!("Secret {} has no key {}", selector.name, selector.key))?;
    String::from_utf8(bytes.0.clone())
        .map(|s| s.trim_end_matches(['\r', '\n']).to_string())
        .map_err(|_| {
            format!(
                "Secret {} key {} is not UTF-8 text",
                selector.name, selector.key
            )
        })
}

fn short(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(status) => format!("{} ({})", status.reason, status.code),
        other => other.to_string(),
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

    #[test]
    fn every_secret_a_check_refers_to_is_read() {
        let check: HealthCheck = serde_json::from_value(serde_json::json!({"http": {
            "headers": [{"name": "a", "valueFrom": {"name": "s", "key": "t"}}, {"name": "b", "value": "v"}],
            "caBundleSecretRef": {"name": "ca", "key": "ca.crt"}}})).expect("check");
        assert_eq!(
            referenced_secrets(&check),
            vec![
                SecretKeySelector::new("s", "t"),
                SecretKeySelector::new("ca", "ca.crt")
            ]
        );
    }
}
