//! `/metrics`, `/healthz` and `/readyz`.
//!
//! Liveness says the process serves requests; readiness says the watch
//! caches have synced, every watch works now (`watches::failing`), and the
//! leader election completed a round with the API server within a lease
//! (a Lease RBAC refuses, or an API server that stopped answering without
//! failing the watches), so a replica that cannot reach the API server is
//! reported unready within seconds but not restarted in a loop.

use std::net::SocketAddr;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;

use crate::metrics::Metrics;

#[derive(Clone)]
pub struct Health {
    /// Turns true once every watch cache has listed the cluster
    /// (`shared::readiness`).
    pub ready: tokio::sync::watch::Receiver<bool>,
    pub metrics: Metrics,
    /// The leader election, when there is one.
    pub election: Option<crate::leader::Leadership>,
}

pub fn router(health: Health) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(health)
}

async fn readyz(State(h): State<Health>) -> (StatusCode, String) {
    let election = h.election.as_ref().and_then(|e| e.election_problem());
    readiness(*h.ready.borrow(), &crate::watches::failing(), election)
}

/// The answer of `/readyz`: the caches have synced, no watch fails now,
/// and the election works.
fn readiness(synced: bool, failing: &[&str], election: Option<String>) -> (StatusCode, String) {
    if let Some(problem) = election {
        (StatusCode::SERVICE_UNAVAILABLE, problem)
    } else if !synced {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "watches not synced yet".into(),
        )
    } else if !failing.is_empty() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("watches failing: {}", failing.join(", ")),
        )
    } else {
        (StatusCode::OK, "ok".into())
    }
}

async fn metrics(
    State(h): State<Health>,
) -> ([(axum::http::header::HeaderName, &'static str); 1], String) {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        h.metrics.render(),
    )
}

/// Serves until `shutdown` resolves.
pub async fn serve(
    addr: SocketAddr,
    health: Health,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "serving /metrics, /healthz, /readyz");
    axum::serve(listener, router(health))
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_synced_and_no_watch_fails() {
        assert_eq!(readiness(true, &[], None).0, StatusCode::OK);
        assert_eq!(
            readiness(false, &[], None).0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        let (code, body) = readiness(true, &["cronjobs", "jobs"], None);
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body, "watches failing: cronjobs, jobs");
    }

    #[test]
    fn unready_while_the_election_fails_even_with_working_watches() {
        let problem = "leader election failing for 15 s: forbidden (403)".to_string();
        let (code, body) = readiness(true, &[], Some(problem.clone()));
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body, problem);
    }
}
