//! What each controller's `run` uses the same way: the API scoped to the
//! watched namespace, the CRD check at start, waiting for a cache to sync,
//! the readiness signal, the leader hand-over trigger, sweeping series of
//! deleted objects; and for the decisions, the one way conditions are set
//! and the Kubernetes-to-chrono time conversion.

use std::collections::HashSet;
use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use tokio::sync::watch;
use vertice_crds::common::{set_condition, Condition};

/// How often series of objects that are gone are swept.
const SWEEP_INTERVAL: Duration = Duration::from_secs(30);

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

/// Fails early, with a hint, when `plural`'s CRD is not installed or the
/// RBAC does not let us list it: a controller started without either would
/// otherwise only log watch errors.
pub async fn require_crd<K>(api: &Api<K>, plural: &str) -> anyhow::Result<()>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.list(&kube::api::ListParams::default().limit(1))
        .await
        .map_err(sentence)
        .with_context(|| {
            format!(
                "cannot list {plural}: are the CRDs from deploy/crds installed and the RBAC applied?"
            )
        })?;
    Ok(())
}

/// A spawned task that is aborted when this guard is dropped: a task a
/// controller starts beside its loop ends with that loop, also when the
/// loop's own task is aborted (which drops the loop's future, and this guard
/// with it) rather than left running with nothing reading what it keeps.
#[derive(Debug)]
pub struct AbortOnDrop(tokio::task::AbortHandle);

impl AbortOnDrop {
    pub fn spawn(task: impl std::future::Future<Output = ()> + Send + 'static) -> Self {
        AbortOnDrop(tokio::spawn(task).abort_handle())
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A kube error for the fatal message: the API server's message, not kube's
/// text with the `Status { … }` dump.
pub fn sentence(error: kube::Error) -> anyhow::Error {
    anyhow::anyhow!(crate::error::short(&error))
}

/// One controller's part of readiness: marked once its caches hold the
/// cluster's state.
#[derive(Debug)]
pub struct Synced(watch::Sender<bool>);

impl Synced {
    pub fn mark(&self) {
        self.0.send_replace(true);
    }
}

/// `N` readiness signals and the receiver that turns true once every one
/// of them was marked: a signal, so nothing polls for it.
pub fn readiness<const N: usize>() -> ([Synced; N], watch::Receiver<bool>) {
    let (all_tx, all_rx) = watch::channel(false);
    let channels: [(watch::Sender<bool>, watch::Receiver<bool>); N] =
        std::array::from_fn(|_| watch::channel(false));
    let receivers: Vec<watch::Receiver<bool>> = channels.iter().map(|(_, rx)| rx.clone()).collect();
    let senders = channels.map(|(tx, _)| Synced(tx));
    tokio::spawn(async move {
        for mut part in receivers {
            // A part whose controller ended before syncing never becomes
            // ready, and neither does the whole.
            if part.wait_for(|ready| *ready).await.is_err() {
                return;
            }
        }
        all_tx.send_replace(true);
        tracing::info!("watch caches synced; ready");
    });
    (senders, all_rx)
}

/// Yields once each time this replica starts leading.
pub fn became_leader(leading: watch::Receiver<bool>) -> impl futures::Stream<Item = ()> + Send {
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
pub async fn synced<K>(store: &Store<K>) -> bool
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
pub async fn housekeep<K>(
    store: Store<K>,
    ready: Synced,
    sweep: impl Fn(&HashSet<(String, String)>),
) where
    K: kube::Resource<DynamicType = ()> + Clone + 'static,
{
    if !synced(&store).await {
        return;
    }
    // Ready means the caches hold the cluster's state: a reconcile from
    // here on decides on what is there, not on a half-filled cache.
    ready.mark();
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

/// A controller loop's error as a sentence: a queue error is a watch's,
/// whose kube text embeds a `Status { … }` dump.
pub fn loop_error<E: std::fmt::Display>(
    error: &kube::runtime::controller::Error<E, watcher::Error>,
) -> String {
    use kube::runtime::controller::Error as C;
    match error {
        C::QueueError(e) => crate::error::watch_error(e),
        other => other.to_string(),
    }
}

/// Sets `condition` as observed at `generation` (the resource's
/// `metadata.generation` the decision was made from): how every controller
/// writes its conditions. `set_condition` keeps `lastTransitionTime` while
/// the condition's status stays.
pub fn set_observed(
    conditions: &mut Vec<Condition>,
    generation: Option<i64>,
    condition: Condition,
) {
    set_condition(
        conditions,
        Condition {
            observed_generation: generation,
            ..condition
        },
    );
}

/// A Kubernetes time as chrono's: k8s-openapi's `Time` wraps a
/// `jiff::Timestamp`; the CRDs use chrono. The epoch for a time chrono cannot
/// hold (none the API server writes).
pub fn t_to_chrono(t: &k8s_openapi::jiff::Timestamp) -> DateTime<Utc> {
    DateTime::from_timestamp(t.as_second(), t.subsec_nanosecond().max(0) as u32).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ready_once_every_part_is_marked() {
        let (parts, mut ready) = readiness::<3>();
        parts[0].mark();
        parts[2].mark();
        tokio::task::yield_now().await;
        assert!(!*ready.borrow());
        parts[1].mark();
        let all = tokio::time::timeout(Duration::from_secs(2), ready.wait_for(|r| *r)).await;
        assert!(matches!(all, Ok(Ok(_))));
    }
}
