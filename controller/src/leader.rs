//! Leader election on a `coordination.k8s.io` Lease. Every replica watches
//! and keeps its caches warm; only the holder of the Lease writes.

use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;
use tokio::sync::watch;

/// Settings of the election.
#[derive(Debug, Clone)]
pub struct Election {
    pub lease_name: String,
    pub namespace: String,
    /// This replica's identity (its pod name).
    pub identity: String,
    /// Seconds a lease lasts without renewal.
    pub duration_seconds: u64,
}

/// Starts campaigning; the receiver says whether this replica leads now.
/// Dropping every receiver releases the lease (on graceful shutdown), so the
/// next leader takes over at once rather than after the lease expires.
pub async fn campaign(
    client: Client,
    election: &Election,
) -> Result<watch::Receiver<bool>, kube_lease_manager::LeaseManagerError> {
    let manager = LeaseManagerBuilder::new(client, &election.lease_name)
        .with_namespace(&election.namespace)
        .with_identity(&election.identity)
        .with_duration(election.duration_seconds)
        .with_grace(election.duration_seconds.div_ceil(3).max(2))
        .with_field_manager(format!("vertice-controller-{}", election.identity))
        .build()
        .await?;
    let (leading, task) = manager.watch().await;
    tokio::spawn(async move {
        match task.await {
            Ok(Ok(_)) => tracing::info!("leader election stopped"),
            Ok(Err(e)) => tracing::error!(error = %e, "leader election failed"),
            Err(e) => tracing::error!(error = %e, "leader election task panicked"),
        }
    });
    Ok(leading)
}

/// A receiver that always says "leading", for single-replica runs. The
/// sender is dropped: the value stays readable and never changes.
pub fn always() -> watch::Receiver<bool> {
    watch::channel(true).1
}
