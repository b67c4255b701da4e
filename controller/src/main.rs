//! vertice-controller: watches VerticeBackups and keeps their CronJobs and
//! status true. See `config.rs` for flags.

mod config;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;
use futures::StreamExt;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use kube::runtime::controller::Controller;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use vertice_controller::backup::{names, reconciler, JobDefaults};
use vertice_controller::health::{self, Health};
use vertice_controller::leader::{self, Election};
use vertice_controller::metrics::Metrics;
use vertice_crds::VerticeBackup;

use config::{Config, LogFormat};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    init_logging(&config);
    // kube and the agent's stores share rustls; pick the provider once.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let client = Client::try_default()
        .await
        .context("cannot build a Kubernetes client (in-cluster config or KUBECONFIG)")?;
    let metrics = Metrics::new().context("metrics registry")?;
    let ready = Arc::new(AtomicBool::new(false));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);

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
    let leading = if config.leader_election {
        let election = Election {
            lease_name: config.lease_name.clone(),
            namespace: config.lease_namespace.clone(),
            identity: identity.clone(),
            duration_seconds: config.lease_seconds,
        };
        leader::campaign(client.clone(), &election)
            .await
            .context("leader election")?
    } else {
        leader::always()
    };
    {
        let mut leading = leading.clone();
        let gauge = metrics.leader.clone();
        tokio::spawn(async move {
            loop {
                let now = *leading.borrow_and_update();
                gauge.set(i64::from(now));
                tracing::info!(leading = now, "leadership");
                if leading.changed().await.is_err() {
                    break;
                }
            }
        });
    }

    let backups: Api<VerticeBackup> = match &config.watch_namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let (cron_jobs, jobs): (Api<CronJob>, Api<Job>) = match &config.watch_namespace {
        Some(ns) => (
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
        ),
        None => (Api::all(client.clone()), Api::all(client.clone())),
    };
    // Fail early, with a hint, when the CRD is not installed.
    backups
        .list(&kube::api::ListParams::default().limit(1))
        .await
        .context("cannot list VerticeBackups: are the CRDs from deploy/crds installed and the RBAC applied?")?;
    ready.store(true, Ordering::Relaxed);

    let ours = watcher::Config::default().labels(&format!(
        "app.kubernetes.io/managed-by={}",
        names::MANAGED_BY
    ));
    let context = Arc::new(reconciler::Context {
        client: client.clone(),
        defaults: JobDefaults {
            agent_image: config.agent_image.clone(),
            pushgateway_url: config.pushgateway_url.clone(),
        },
        metrics: metrics.clone(),
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: "vertice-controller".into(),
                instance: Some(identity),
            },
        ),
        leading: leading.clone(),
    });
    Controller::new(backups, watcher::Config::default())
        .owns(cron_jobs, ours.clone())
        .watches(jobs, ours, |job: Job| {
            let name = job
                .annotations()
                .get(names::BACKUP_NAME_ANNOTATION)?
                .clone();
            Some(ObjectRef::<VerticeBackup>::new(&name).within(&job.namespace()?))
        })
        .shutdown_on_signal()
        .run(reconciler::reconcile, reconciler::error_policy, context)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "reconcile loop");
            }
        })
        .await;

    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    drop(leading);
    server
        .await
        .context("health server task")?
        .context("health server")?;
    Ok(())
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    match config.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}
