//! The VerticeFailover controller's loop. No debounce: a probe runner's
//! write is reconciled at once, so detection takes interval × threshold and
//! one reconcile, nothing more.

use std::future::Future;
use std::sync::Arc;

use futures::StreamExt;
use kube::runtime::controller::Controller;
use kube::runtime::reflector::{self, reflector};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Api;
use vertice_crds::VerticeFailover;

use super::reconciler;
use crate::context::Shared;
use crate::shared::{
    became_leader, housekeep, loop_error, require_crd, scoped, AbortOnDrop, Synced,
};
use crate::watches::{recovering, BoundedBackoff};

/// Failovers reconciled at once.
const CONCURRENCY: u16 = 16;

/// The CRD check, all that can fail at start; the future it returns runs
/// the VerticeFailover controller until dropped. Nothing is watched or
/// written before that future is first polled, so the runtime finishes
/// every controller's checks before any controller runs.
pub async fn start(
    namespace: Option<String>,
    shared: Shared,
    ready: Synced,
) -> anyhow::Result<impl Future<Output = ()> + Send + 'static> {
    let failovers: Api<VerticeFailover> = scoped(&shared.client, &namespace);
    require_crd(&failovers, "VerticeFailovers").await?;
    Ok(run(failovers, shared, ready))
}

async fn run(failovers: Api<VerticeFailover>, shared: Shared, ready: Synced) {
    let metrics = shared.metrics.clone();
    let became_leader = became_leader(shared.leading.watch());
    let context = Arc::new(reconciler::Context::new(shared));
    let (reader, writer) = reflector::store();
    let watch = reflector(
        writer,
        recovering(
            "verticefailovers",
            watcher(failovers, watcher::Config::default()),
        ),
    )
    .applied_objects();
    let controller = Controller::for_stream(watch, reader)
        .with_config(kube::runtime::controller::Config::default().concurrency(CONCURRENCY))
        .trigger_backoff(BoundedBackoff::default())
        .reconcile_all_on(became_leader);
    // Aborted with this future, also when it is dropped rather than ended.
    let _housekeeping = AbortOnDrop::spawn(housekeep(controller.store(), ready, move |live| {
        metrics.retain_failovers(live)
    }));
    controller
        .run(reconciler::reconcile, reconciler::error_policy, context)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = loop_error(&e), "failover reconcile loop");
            }
        })
        .await;
}
