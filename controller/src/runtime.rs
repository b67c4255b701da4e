//! The wiring every controller shares: the client, `/metrics` `/healthz`
//! `/readyz`, leader election, the shared context, and spawning the
//! controllers. `/readyz` turns ready once every watch cache has synced.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use futures::StreamExt;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Controller;
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, ResourceExt};
use tokio::sync::watch;
use vertice_crds::{VerticeBackup, VerticeFailover, VerticeScaler};

use crate::backup::{names, reconciler, JobDefaults};
use crate::config::Config;
use crate::context::Shared;
use crate::events::EventRecorder;
use crate::health::{self, Health};
use crate::leader::{self, Election};
use crate::metrics::Metrics;
use crate::scaler::reconciler::ScalerLoop;

/// Reconciles in flight at once: each holds a few lists; unbounded, a
/// thousand new backups would be reconciled all at once and hold them all.
const CONCURRENCY: u16 = 8;
/// Events about one object within this window make one reconcile (creating
/// a CronJob, its status and our status patch arrive together).
const DEBOUNCE: Duration = Duration::from_millis(500);
/// VerticeBackups per list page of the initial list and relists.
const BACKUP_PAGE: u32 = 100;
/// How often series of VerticeBackups that are gone are swept.
const SWEEP_INTERVAL: Duration = Duration::from_secs(30);

pub async fn run(config: Config) -> anyhow::Result<()> {
    // kube and the agent's stores share rustls; pick the provider once.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let client = Client::try_default()
        .await
        .context("cannot build a Kubernetes client (in-cluster config or KUBECONFIG)")?;
    let metrics = Metrics::new().context("metrics registry")?;
    let ready = Arc::new(AtomicBool::new(false));
    let (stop_tx, stop_rx) = watch::channel(false);

    let server = {
        let health = Health {
            ready: ready.clone(),
            metrics: metrics.clone(),
        };
        let mut stop = stop_rx.clone();
        tokio::spawn(health::serve(config.listen, health, async move {
            let _ = stop.wait_for(|s| *s).await;
        }))
    };

    let identity = config
        .identity
        .clone()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| format!("vertice-controller-{}", std::process::id()));
    let leading = elect(&client, &config, &identity).await?;
    report_leadership(leading.clone(), metrics.clone());

    let shared = Shared {
        client: client.clone(),
        recorder: EventRecorder::new(client.clone(), "vertice-controller", &identity),
        leading: leading.clone(),
        metrics: metrics.clone(),
        tenancy: Arc::new(config.tenancy.clone()),
    };
    // Ready once both controllers' caches have synced.
    let backups_ready = Arc::new(AtomicBool::new(false));
    let scalers_ready = Arc::new(AtomicBool::new(false));
    let failovers_ready = Arc::new(AtomicBool::new(false));
    {
        let (b, s, f) = (
            backups_ready.clone(),
            scalers_ready.clone(),
            failovers_ready.clone(),
        );
        tokio::spawn(async move {
            while !(b.load(Ordering::Relaxed)
                && s.load(Ordering::Relaxed)
                && f.load(Ordering::Relaxed))
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            ready.store(true, Ordering::Relaxed);
            tracing::info!("watch caches synced; ready");
        });
    }
    let scalers: Api<VerticeScaler> = scoped(&client, &config.watch_namespace);
    scalers
        .list(&kube::api::ListParams::default().limit(1))
        .await
        .context("cannot list VerticeScalers: are the CRDs from deploy/crds installed and the RBAC applied?")?;
    let mut metrics_config = kube::Config::infer()
        .await
        .context("Kubernetes client configuration")?;
    metrics_config.default_retry = false;
    let metrics_client = Client::try_from(metrics_config).context("metrics.k8s.io client")?;
    let (caches, drive_caches) = crate::scaler::cache::start(&client, &config.watch_namespace);
    let caches_task = tokio::spawn(drive_caches);
    let scaler_loop = Arc::new(
        ScalerLoop::new(
            shared.clone(),
            metrics_client,
            caches,
            config.scaler_poll_interval,
        )
        .context("scaler HTTP client")?,
    );
    let scaler_task = tokio::spawn(scaler_loop.run(scalers, scalers_ready));
    let failovers: Api<VerticeFailover> = scoped(&client, &config.watch_namespace);
    failovers
        .list(&kube::api::ListParams::default().limit(1))
        .await
        .context("cannot list VerticeFailovers: are the CRDs from deploy/crds installed and the RBAC applied?")?;
    let failover_task = tokio::spawn(run_failovers(failovers, shared.clone(), failovers_ready));
    // The backup controller stops on SIGTERM / Ctrl-C; the scaler with it.
    run_backups(&config, shared, backups_ready).await?;
    scaler_task.abort();
    failover_task.abort();
    caches_task.abort();

    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    drop(leading);
    server
        .await
        .context("health server task")?
        .context("health server")?;
    Ok(())
}

async fn elect(
    client: &Client,
    config: &Config,
    identity: &str,
) -> anyhow::Result<watch::Receiver<bool>> {
    if !config.leader_election {
        return Ok(leader::always());
    }
    let election = Election {
        lease_name: config.lease_name.clone(),
        namespace: config.lease_namespace.clone(),
        identity: identity.to_string(),
        duration_seconds: config.lease_seconds,
    };
    leader::campaign(client.clone(), &election)
        .await
        .context("leader election")
}

fn report_leadership(mut leading: watch::Receiver<bool>, metrics: Metrics) {
    tokio::spawn(async move {
        loop {
            let now = *leading.borrow_and_update();
            metrics.leader.set(i64::from(now));
            tracing::info!(leading = now, "leadership");
            if leading.changed().await.is_err() {
                break;
            }
        }
    });
}

/// All namespaces, or only the watched one.
pub fn scoped<K>(client: &Client, namespace: &Option<String>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Yields once each time this replica starts leading.
fn became_leader(leading: watch::Receiver<bool>) -> impl futures::Stream<Item = ()> + Send {
    futures::stream::unfold((leading, false), |(mut leading, mut was)| async move {
        loop {
            let now = *leading.borrow_and_update();
            if now && !was {
                return Some(((), (leading, true)));
            }
            was = now;
            leading.changed().await.ok()?;
        }
    })
}

/// Waits until `store` holds the cluster's state; false if its writer is
/// gone. kube's readiness is a oneshot behind a lock: with two waiters (a
/// controller's runner and us) only one is woken, so this polls again with
/// a timeout and sees the value the runner memoized.
pub async fn synced<K>(store: &kube::runtime::reflector::Store<K>) -> bool
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    loop {
        match tokio::time::timeout(Duration::from_millis(500), store.wait_until_ready()).await {
            Ok(Ok(())) => return true,
            Ok(Err(_)) => return false,
            Err(_) => continue,
        }
    }
}

/// Marks `ready` once `store` has synced, then every [`SWEEP_INTERVAL`]
/// hands `sweep` the (namespace, name) of every object still there, so the
/// series of objects deleted while no reconcile saw them are dropped.
async fn housekeep<K>(
    store: kube::runtime::reflector::Store<K>,
    ready: Arc<AtomicBool>,
    sweep: impl Fn(&HashSet<(String, String)>),
) where
    K: kube::Resource<DynamicType = ()> + Clone + 'static,
{
    if !synced(&store).await {
        return;
    }
    // Ready means the caches hold the cluster's state: a reconcile from
    // here on decides on what is there, not on a half-filled cache.
    ready.store(true, Ordering::Relaxed);
    loop {
        tokio::time::sleep(SWEEP_INTERVAL).await;
        let live: HashSet<(String, String)> = store
            .state()
            .iter()
            .filter_map(|o| Some((o.namespace()?, o.name_any())))
            .collect();
        sweep(&live);
    }
}

/// The VerticeFailover controller. No debounce: a probe runner's write is
/// reconciled at once, so detection takes interval × threshold and one
/// reconcile, nothing more.
async fn run_failovers(failovers: Api<VerticeFailover>, shared: Shared, ready: Arc<AtomicBool>) {
    let metrics = shared.metrics.clone();
    let became_leader = became_leader(shared.leading.clone());
    let context = Arc::new(crate::failover::reconciler::Context::new(shared));
    let controller = Controller::new(failovers, watcher::Config::default())
        .with_config(kube::runtime::controller::Config::default().concurrency(16))
        .reconcile_all_on(became_leader);
    let housekeeping = tokio::spawn(housekeep(controller.store(), ready, move |live| {
        metrics.retain_failovers(live)
    }));
    controller
        .run(
            crate::failover::reconciler::reconcile,
            crate::failover::reconciler::error_policy,
            context,
        )
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "failover reconcile loop");
            }
        })
        .await;
    housekeeping.abort();
}

/// The VerticeBackup controller, until the process is asked to stop.
async fn run_backups(
    config: &Config,
    shared: Shared,
    ready: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let client = shared.client.clone();
    let backups: Api<VerticeBackup> = scoped(&client, &config.watch_namespace);
    // Fail early, with a hint, when the CRD is not installed.
    backups
        .list(&kube::api::ListParams::default().limit(1))
        .await
        .context("cannot list VerticeBackups: are the CRDs from deploy/crds installed and the RBAC applied?")?;
    let ours = watcher::Config::default().labels(&format!(
        "app.kubernetes.io/managed-by={}",
        names::MANAGED_BY
    ));
    let metrics = shared.metrics.clone();
    let became_leader = became_leader(shared.leading.clone());
    let context = Arc::new(reconciler::Context {
        shared,
        defaults: JobDefaults {
            agent_image: config
                .agent_image
                .clone()
                .context("--agent-image (VERTICE_AGENT_IMAGE) is required")?,
            pushgateway_url: config.pushgateway_url.clone(),
        },
        secrets: Default::default(),
    });
    // The cache holds stripped backups; CronJobs and Jobs are watched as
    // metadata only (owner references and annotations are all the triggers
    // read), so neither a list page nor a watch event carries pod templates.
    let (reader, writer) = reflector::store();
    // Pages of 100: a list page is deserialized whole before the cache
    // takes its objects, and 500 backups at once were the heap's peak.
    let backup_stream = watcher(backups, watcher::Config::default().page_size(BACKUP_PAGE))
        .modify(crate::backup::strip_backup)
        .reflect(writer)
        .applied_objects();
    let cron_jobs = watcher(
        scoped::<PartialObjectMeta<CronJob>>(&client, &config.watch_namespace),
        ours.clone(),
    )
    .touched_objects();
    let jobs = watcher(
        scoped::<PartialObjectMeta<Job>>(&client, &config.watch_namespace),
        ours,
    )
    .touched_objects();
    let controller = Controller::for_stream(backup_stream, reader)
        .owns_stream(cron_jobs)
        .watches_stream(jobs, |job: PartialObjectMeta<Job>| {
            let name = job
                .annotations()
                .get(names::BACKUP_NAME_ANNOTATION)?
                .clone();
            Some(ObjectRef::<VerticeBackup>::new(&name).within(&job.namespace()?))
        })
        .with_config(
            kube::runtime::controller::Config::default()
                .concurrency(CONCURRENCY)
                .debounce(DEBOUNCE),
        )
        // A new leader looks at everything at once instead of waiting for
        // the followers' requeue.
        .reconcile_all_on(became_leader)
        .shutdown_on_signal();
    let housekeeping = tokio::spawn(housekeep(controller.store(), ready, move |live| {
        metrics.retain_backups(live)
    }));
    controller
        .run(reconciler::reconcile, reconciler::error_policy, context)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "reconcile loop");
            }
        })
        .await;
    housekeeping.abort();
    Ok(())
}
