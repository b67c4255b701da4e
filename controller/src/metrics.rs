//! The controller's own metrics on `/metrics`.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub reconciles: IntCounterVec,
    pub reconcile_errors: IntCounterVec,
    pub reconcile_duration: HistogramVec,
    pub backups_overdue: IntGaugeVec,
    pub overdue_detected: IntCounterVec,
    pub leader: prometheus::IntGauge,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let reconciles = IntCounterVec::new(
            Opts::new(
                "vertice_controller_reconcile_total",
                "Reconciles run, per controller",
            ),
            &["controller"],
        )?;
        let reconcile_errors = IntCounterVec::new(
            Opts::new(
                "vertice_controller_reconcile_errors_total",
                "Reconciles that failed, per controller and error category",
            ),
            &["controller", "category"],
        )?;
        let reconcile_duration = HistogramVec::new(
            HistogramOpts::new(
                "vertice_controller_reconcile_duration_seconds",
                "Time per reconcile",
            )
            .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
            &["controller"],
        )?;
        let backups_overdue = IntGaugeVec::new(
            Opts::new(
                "vertice_backup_overdue",
                "1 while a VerticeBackup has no successful backup within its grace period",
            ),
            &["namespace", "backup"],
        )?;
        let overdue_detected = IntCounterVec::new(
            Opts::new(
                "vertice_backup_overdue_total",
                "Times a VerticeBackup became overdue",
            ),
            &["namespace", "backup"],
        )?;
        let leader = prometheus::IntGauge::new(
            "vertice_controller_leader",
            "1 while this replica holds the leader lease",
        )?;
        registry.register(Box::new(reconciles.clone()))?;
        registry.register(Box::new(reconcile_errors.clone()))?;
        registry.register(Box::new(reconcile_duration.clone()))?;
        registry.register(Box::new(backups_overdue.clone()))?;
        registry.register(Box::new(overdue_detected.clone()))?;
        registry.register(Box::new(leader.clone()))?;
        Ok(Self {
            registry,
            reconciles,
            reconcile_errors,
            reconcile_duration,
            backups_overdue,
            overdue_detected,
            leader,
        })
    }

    /// Drops every series of a VerticeBackup that is gone.
    pub fn forget_backup(&self, namespace: &str, name: &str) {
        let labels = [namespace, name];
        let _ = self.backups_overdue.remove_label_values(&labels);
        let _ = self.overdue_detected.remove_label_values(&labels);
    }

    /// Drops the series of every VerticeBackup not in `live` (namespace,
    /// name): a backup deleted while no reconcile could see it (it vanished
    /// between two watches) must not keep reporting.
    pub fn retain_backups(&self, live: &std::collections::HashSet<(String, String)>) {
        use prometheus::core::Collector;
        let mut gone = std::collections::BTreeSet::new();
        for family in self
            .backups_overdue
            .collect()
            .into_iter()
            .chain(self.overdue_detected.collect())
        {
            for metric in family.get_metric() {
                let label = |n: &str| {
                    metric
                        .get_label()
                        .iter()
                        .find(|l| l.name() == n)
                        .map(|l| l.value().to_string())
                        .unwrap_or_default()
                };
                let key = (label("namespace"), label("backup"));
                if !live.contains(&key) {
                    gone.insert(key);
                }
            }
        }
        for (namespace, name) in gone {
            self.forget_backup(&namespace, &name);
        }
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buffer) {
            tracing::warn!(error = %e, "could not encode metrics");
        }
        String::from_utf8(buffer).unwrap_or_default()
    }
}
