//! The probe runner's `/metrics`, `/healthz` (alive: the watch synced) and
//! `/readyz` (keeping its probes on schedule, see [`super::readiness`]).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};

use super::readiness::Readiness;
use super::ProbeResult;

#[derive(Clone)]
pub struct RunnerMetrics {
    registry: Registry,
    duration: HistogramVec,
    results: IntCounterVec,
    writes: IntCounterVec,
    write_duration: HistogramVec,
    late_rounds: IntCounterVec,
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
        let late_rounds = IntCounterVec::new(
            Opts::new(
                "vertice_failover_probe_late_rounds_total",
                "Probe rounds that fell behind schedule through the runner's load (started \
                 more than a period and the timeout late, or waited longer than a period \
                 for a runner-wide permit), by namespace",
            ),
            &["namespace"],
        )?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(late_rounds.clone()))?;
        registry.register(Box::new(results.clone()))?;
        registry.register(Box::new(writes.clone()))?;
        registry.register(Box::new(write_duration.clone()))?;
        Ok(Self {
            registry,
            duration,
            results,
            writes,
            write_duration,
            late_rounds,
        })
    }

    /// Creates the namespace's late-round series at 0, so the first late
    /// round is an increase `rate()` can see.
    pub fn namespace_seen(&self, namespace: &str) {
        let _ = self.late_rounds.with_label_values(&[namespace]);
    }

    pub fn late_round(&self, namespace: &str) {
        self.late_rounds.with_label_values(&[namespace]).inc();
    }

    /// Drops the series of a namespace without failovers.
    pub fn forget_namespace(&self, namespace: &str) {
        let _ = self.late_rounds.remove_label_values(&[namespace]);
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
    readiness: Arc<Mutex<Readiness>>,
}

pub async fn serve(
    listen: SocketAddr,
    metrics: RunnerMetrics,
    synced: Arc<AtomicBool>,
    readiness: Arc<Mutex<Readiness>>,
) {
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
        .route(
            "/readyz",
            get(|State(s): State<Served>| async move {
                let synced = s.synced.load(Ordering::Relaxed);
                let verdict = s
                    .readiness
                    .lock()
                    .map(|r| r.verdict(synced, Instant::now()))
                    .unwrap_or_else(|_| Err("readiness record unavailable".into()));
                match verdict {
                    Ok(()) => (StatusCode::OK, "ok".to_string()),
                    Err(why) => (StatusCode::SERVICE_UNAVAILABLE, why),
                }
            }),
        )
        .with_state(Served {
            metrics,
            synced,
            readiness,
        });
    match tokio::net::TcpListener::bind(listen).await {
        Ok(listener) => {
            tracing::info!(%listen, "serving /healthz, /readyz and /metrics");
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "health server");
            }
        }
        Err(e) => {
            tracing::error!(%listen, error = %e, "cannot listen for /healthz, /readyz and /metrics")
        }
    }
}
