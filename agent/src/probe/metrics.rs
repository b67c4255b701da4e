//! The probe runner's `/metrics` and `/healthz`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};

use super::ProbeResult;

#[derive(Clone)]
pub struct RunnerMetrics {
    registry: Registry,
    duration: HistogramVec,
    results: IntCounterVec,
    writes: IntCounterVec,
    write_duration: HistogramVec,
}

impl RunnerMetrics {
    pub fn new() -> prometheus::Result<Self> {
        let registry = Registry::new();
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "vertice_failover_probe_duration_seconds",
                "Time one health probe took, by check kind",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["kind"],
        )?;
        let results = IntCounterVec::new(
            Opts::new(
                "vertice_failover_probe_results_total",
                "Health probes run, by check kind and result (success, failure)",
            ),
            &["kind", "result"],
        )?;
        let writes = IntCounterVec::new(
            Opts::new(
                "vertice_failover_probe_status_writes_total",
                "Observation writes to VerticeFailover status, by result (success, failure)",
            ),
            &["result"],
        )?;
        let write_duration = HistogramVec::new(
            HistogramOpts::new(
                "vertice_failover_probe_status_write_seconds",
                "Time one observation write took",
            ),
            &[],
        )?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(results.clone()))?;
        registry.register(Box::new(writes.clone()))?;
        registry.register(Box::new(write_duration.clone()))?;
        Ok(Self {
            registry,
            duration,
            results,
            writes,
            write_duration,
        })
    }

    pub fn observe(&self, kind: &str, result: &ProbeResult) {
        self.duration
            .with_label_values(&[kind])
            .observe(result.latency_ms as f64 / 1000.0);
        let outcome = if result.ok { "success" } else { "failure" };
        self.results.with_label_values(&[kind, outcome]).inc();
    }

    pub fn status_written(&self, ok: bool, took: Duration) {
        let outcome = if ok { "success" } else { "failure" };
        self.writes.with_label_values(&[outcome]).inc();
        self.write_duration
            .with_label_values(&[] as &[&str])
            .observe(took.as_secs_f64());
    }

    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        // Encoding our own registry into memory cannot fail in practice; an
        // empty page is the honest answer if it ever does.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buffer);
        String::from_utf8(buffer).unwrap_or_default()
    }
}

#[derive(Clone)]
struct Served {
    metrics: RunnerMetrics,
    synced: Arc<AtomicBool>,
}

pub async fn serve(listen: SocketAddr, metrics: RunnerMetrics, synced: Arc<AtomicBool>) {
    let app = Router::new()
        .route(
            "/metrics",
            get(|State(s): State<Served>| async move { s.metrics.render() }),
        )
        .route(
            "/healthz",
            get(|State(s): State<Served>| async move {
                if s.synced.load(Ordering::Relaxed) {
                    (StatusCode::OK, "ok")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "watch not synced")
                }
            }),
        )
        .with_state(Served { metrics, synced });
    match tokio::net::TcpListener::bind(listen).await {
        Ok(listener) => {
            tracing::info!(%listen, "serving /healthz and /metrics");
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "health server");
            }
        }
        Err(e) => tracing::error!(%listen, error = %e, "cannot listen for /healthz and /metrics"),
    }
}
