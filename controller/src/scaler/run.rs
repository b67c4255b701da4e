//! The VerticeScaler controller's start: the CRD check, the metrics.k8s.io
//! client, the watch caches, then the scaler loop (`reconciler.rs`).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use kube::{Api, Client};
use vertice_crds::VerticeScaler;

use super::reconciler::ScalerLoop;
use crate::context::Shared;
use crate::shared::{require_crd, scoped, AbortOnDrop, Synced};

/// Everything that can fail at start (CRD or RBAC missing, no client for
/// metrics.k8s.io); the future it returns runs the scaler until dropped.
/// Nothing is watched or written before that future is first polled, so the
/// runtime finishes every controller's checks before any controller runs.
pub async fn start(
    namespace: Option<String>,
    poll_interval: Duration,
    shared: Shared,
    ready: Synced,
) -> anyhow::Result<impl Future<Output = ()> + Send + 'static> {
    let scalers: Api<VerticeScaler> = scoped(&shared.client, &namespace);
    require_crd(&scalers, "VerticeScalers").await?;
    let mut metrics_config = kube::Config::infer()
        .await
        .context("Kubernetes client configuration")?;
    metrics_config.default_retry = false;
    let metrics_client = Client::try_from(metrics_config).context("metrics.k8s.io client")?;
    let (caches, drive_caches) = super::cache::start(&shared.client, &namespace);
    let scaler_loop = Arc::new(
        ScalerLoop::new(shared, metrics_client, caches, poll_interval)
            .context("scaler HTTP client")?,
    );
    Ok(async move {
        // The four reflectors (pods, Deployments, StatefulSets, HPAs) run
        // on a task of their own, not inside the scaler loop's task; the
        // guard aborts them once the loop ends or its task is aborted.
        let _caches = AbortOnDrop::spawn(drive_caches);
        scaler_loop.run(scalers, ready).await;
    })
}
