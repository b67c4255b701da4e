//! The process around the controllers: the client, `/metrics` `/healthz`
//! `/readyz`, leader election, the shared context, and starting the three
//! controllers (each one's `start`: `backup::start`, `scaler::start`,
//! `failover::start`, checks all that can fail and returns the controller's
//! run; what they share is in `shared.rs`). `/readyz` turns
//! ready once every controller signalled its watch caches synced and fails
//! again while any watch fails (`watches.rs`).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use kube::Client;
use tokio::sync::watch;

use crate::config::Config;
use crate::context::Shared;
use crate::events::EventRecorder;
use crate::health::{self, Health};
use crate::leader::{self, Campaign, Election};
use crate::metrics::Metrics;
use crate::shared::{readiness, AbortOnDrop};

/// On SIGTERM, how long reconciles in flight may finish (writing nothing:
/// this replica stopped leading first) before they are cut off and the
/// lease is freed.
const DRAIN: Duration = Duration::from_secs(3);

pub async fn run(config: Config) -> anyhow::Result<()> {
    // kube and the agent's stores share rustls; pick the provider once.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let client = Client::try_default()
        .await
        .context("cannot build a Kubernetes client (in-cluster config or KUBECONFIG)")?;
    let metrics = Metrics::new().context("metrics registry")?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let signalled = signalled();

    let identity = identity(&config);
    let campaign = elect(&client, &config, &identity);
    let leading = campaign.leading();
    report_leadership(leading.watch(), metrics.clone());

    // Ready once all three controllers' caches have synced.
    let ([backups_ready, scalers_ready, failovers_ready], ready) = readiness();
    let health = Health {
        ready,
        metrics: metrics.clone(),
        election: Some(leading.clone()),
    };
    let server = serve_health(&config, health, stop_rx);

    let shared = Shared {
        client: client.clone(),
        recorder: EventRecorder::new(client.clone(), "vertice-controller", &identity),
        leading: leading.clone(),
        metrics: metrics.clone(),
        tenancy: Arc::new(config.tenancy.clone()),
    };
    // Every controller's checks (CRDs, RBAC, clients, --agent-image) run
    // first, one after another in the order they always ran, and only then
    // does any controller start: a missing CRD or RBAC stops the process
    // before any controller wrote a CronJob, a status or an Event.
    let scaler = crate::scaler::start(
        config.watch_namespace.clone(),
        config.scaler_poll_interval,
        shared.clone(),
        scalers_ready,
    )
    .await?;
    let failover = crate::failover::start(
        config.watch_namespace.clone(),
        shared.clone(),
        failovers_ready,
    )
    .await?;
    let backups =
        crate::backup::start(&config, shared, backups_ready, wait_for(signalled.clone())).await?;
    let scaler_task = AbortOnDrop::spawn(scaler);
    let failover_task = AbortOnDrop::spawn(failover);
    // SIGTERM / Ctrl-C: stop writing at once, give the backup controller's
    // reconciles in flight a short drain, then stop everything.
    shut_down_on(wait_for(signalled), || campaign.step_down(), backups, DRAIN).await;
    drop((scaler_task, failover_task));
    // Nothing writes any more: free the lease so that another replica
    // leads within its retry period, not after the lease expires.
    campaign.resign().await;

    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    server
        .await
        .context("health server task")?
        .context("health server")?;
    Ok(())
}

/// This replica's name in the Lease and on its Events: the flag, else the
/// pod's name, else one made from the process id.
fn identity(config: &Config) -> String {
    config
        .identity
        .clone()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| format!("vertice-controller-{}", std::process::id()))
}

/// `/metrics`, `/healthz` and `/readyz` until `stop` turns true.
fn serve_health(
    config: &Config,
    health: Health,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<std::io::Result<()>> {
    tokio::spawn(health::serve(config.listen, health, async move {
        let _ = stop.wait_for(|s| *s).await;
    }))
}

fn elect(client: &Client, config: &Config, identity: &str) -> Campaign {
    if !config.leader_election {
        return leader::always();
    }
    let election = Election {
        lease_name: config.lease_name.clone(),
        namespace: config.lease_namespace.clone(),
        identity: identity.to_string(),
        duration_seconds: config.lease_seconds,
    };
    leader::campaign(client.clone(), &election)
}

/// Flips to true on SIGTERM or Ctrl-C.
fn signalled() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the controller");
                let _ = ctrl_c.await;
            }
        }
        tracing::info!("asked to stop");
        let _ = tx.send(true);
    });
    rx
}

/// Resolves once `signalled` is true (never when its sender is gone first).
async fn wait_for(mut signalled: watch::Receiver<bool>) {
    if signalled.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Runs `work` until it ends, or until `signal`: then `step_down` runs at
/// once (nothing is written from here on), and `work` gets at most `drain`
/// to finish. `None` when it was cut off.
async fn shut_down_on<T>(
    signal: impl std::future::Future<Output = ()>,
    step_down: impl FnOnce(),
    work: impl std::future::Future<Output = T>,
    drain: Duration,
) -> Option<T> {
    tokio::pin!(work);
    tokio::select! {
        done = &mut work => return Some(done),
        _ = signal => {}
    }
    step_down();
    match tokio::time::timeout(drain, work).await {
        Ok(done) => Some(done),
        Err(_) => {
            tracing::info!(
                drain_seconds = drain.as_secs(),
                "reconciles still running after the drain; cut off"
            );
            None
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sigterm_stops_writing_first_and_bounds_the_drain() {
        let campaign = leader::always();
        let leading = campaign.leading();
        let (tx, rx) = watch::channel(false);
        let started = std::time::Instant::now();
        // A reconcile that hangs: the drain must not wait for it.
        let hanging = {
            let leading = leading.clone();
            async move {
                let _ = tx.send(true);
                std::future::pending::<()>().await;
                leading.may_write()
            }
        };
        let out = shut_down_on(
            wait_for(rx),
            || campaign.step_down(),
            hanging,
            Duration::from_millis(200),
        )
        .await;
        assert_eq!(out, None, "cut off after the drain");
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(!leading.may_write() && !leading.is_leading());
    }

    #[tokio::test]
    async fn work_that_ends_in_the_drain_is_waited_for_and_writes_nothing() {
        let campaign = leader::always();
        let leading = campaign.leading();
        let (tx, rx) = watch::channel(false);
        let work = {
            let leading = leading.clone();
            async move {
                let _ = tx.send(true);
                tokio::time::sleep(Duration::from_millis(50)).await;
                // By now SIGTERM was handled: this write would be refused.
                leading.may_write()
            }
        };
        let out = shut_down_on(wait_for(rx), || campaign.step_down(), work, DRAIN).await;
        assert_eq!(out, Some(false));
    }
}
