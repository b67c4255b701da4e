//! `/healthz`, `/readyz` and `/metrics` of the controller binary.

use tokio::sync::watch;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use tower::ServiceExt;
use vertice_controller::health::{router, Health};
use vertice_controller::metrics::Metrics;

async fn get(health: &Health, path: &str) -> (StatusCode, String) {
    let response = router(health.clone())
        .oneshot(Request::get(path).body(Body::empty()).expect("request"))
        .await
        .expect("response");
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("body");
    (status, String::from_utf8_lossy(&bytes).to_string())
}

#[tokio::test]
async fn ready_only_after_the_watches_can_start() {
    let (synced, ready) = watch::channel(false);
    let health = Health {
        ready,
        metrics: Metrics::new().expect("metrics"),
        election: None,
    };
    assert_eq!(get(&health, "/healthz").await.0, StatusCode::OK);
    assert_eq!(
        get(&health, "/readyz").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    synced.send_replace(true);
    assert_eq!(get(&health, "/readyz").await.0, StatusCode::OK);
}

#[tokio::test]
async fn metrics_expose_the_reconcile_and_overdue_families() {
    let metrics = Metrics::new().expect("metrics");
    metrics.reconciles.with_label_values(&["backup"]).inc();
    metrics
        .reconcile_errors
        .with_label_values(&["backup", "forbidden"])
        .inc_by(0);
    metrics
        .reconcile_duration
        .with_label_values(&["backup"])
        .observe(0.02);
    metrics
        .backups_overdue
        .with_label_values(&["shop", "orders"])
        .set(1);
    metrics
        .overdue_detected
        .with_label_values(&["shop", "orders"])
        .inc();
    let health = Health {
        ready: watch::channel(true).1,
        metrics,
        election: None,
    };
    let (status, body) = get(&health, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    for family in [
        "vertice_controller_reconcile_total{controller=\"backup\"} 1",
        "vertice_controller_reconcile_errors_total{category=\"forbidden\",controller=\"backup\"} 0",
        "vertice_controller_reconcile_duration_seconds_bucket",
        "vertice_backup_overdue{backup=\"orders\",namespace=\"shop\"} 1",
        "vertice_backup_overdue_total{backup=\"orders\",namespace=\"shop\"} 1",
        "vertice_controller_leader 0",
    ] {
        assert!(body.contains(family), "{family} missing:\n{body}");
    }
}
