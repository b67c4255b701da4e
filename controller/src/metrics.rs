//! The controller's own metrics on `/metrics`.

use prometheus::core::Collector;
use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// The `direction` label of `vertice_scaler_scale_total`, every value of it
/// (dashboards and alerts select on these exact strings).
pub const SCALE_DIRECTIONS: [&str; 2] = ["Up", "Down"];

/// The `direction` label of a scale from `from` to `to` replicas.
pub fn scale_direction(from: i32, to: i32) -> &'static str {
    if to > from {
        SCALE_DIRECTIONS[0]
    } else {
        SCALE_DIRECTIONS[1]
    }
}

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub reconciles: IntCounterVec,
    pub reconcile_errors: IntCounterVec,
    pub reconcile_duration: HistogramVec,
    pub backups_overdue: IntGaugeVec,
    pub backups_unverified: IntGaugeVec,
    pub backups_invalid: IntGaugeVec,
    pub overdue_detected: IntCounterVec,
    pub leader: prometheus::IntGauge,
    pub scaler_desired: IntGaugeVec,
    pub scaler_current: IntGaugeVec,
    pub scaler_fallback: IntGaugeVec,
    pub scaler_min: IntGaugeVec,
    pub scaler_max: IntGaugeVec,
    pub scaler_scales: IntCounterVec,
    pub scaler_metric_value: GaugeVec,
    pub scaler_metric_target: GaugeVec,
    pub scaler_metric_errors: IntCounterVec,
    pub scaler_decisions: IntCounterVec,
    pub failover_phase: IntGaugeVec,
    pub failover_switches: IntCounterVec,
    pub failover_replica_healthy: IntGaugeVec,
    pub failover_success_ratio: GaugeVec,
    pub failover_patch_conflicts: IntCounterVec,
    pub failover_route_weight: IntGaugeVec,
    pub failover_observation_age: GaugeVec,
}

const SCALER: &[&str] = &["namespace", "scaler"];
const SCALER_METRIC: &[&str] = &["namespace", "scaler", "metric"];

impl Metrics {
    /// Every family, each registered as it is made: a table, one entry per
    /// metric (the exposition is sorted by name, so the order is free).
    pub fn new() -> Result<Self, prometheus::Error> {
        let r = Registrar(Registry::new());
        // CPU, memory, file descriptors and start time of the controller
        // process: what OperatorHighMemory and OperatorHighCPU watch.
        #[cfg(target_os = "linux")]
        r.0.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        Ok(Self {
            reconciles: r.counter("vertice_controller_reconcile_total", "Reconciles run, per controller", &["controller"])?,
            reconcile_errors: r.counter("vertice_controller_reconcile_errors_total", "Reconciles that failed, per controller and error category", &["controller", "category"])?,
            reconcile_duration: r.histogram("vertice_controller_reconcile_duration_seconds", "Time per reconcile", &[0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0], &["controller"])?,
            backups_overdue: r.int_gauge("vertice_backup_overdue", "1 while a VerticeBackup has no successful backup within its grace period", &["namespace", "backup"])?,
            backups_unverified: r.int_gauge("vertice_backup_unverified", "1 while a VerticeBackup's newest verified backup is older than drill.maxUnverifiedAge (or none was verified in that long)", &["namespace", "backup"])?,
            backups_invalid: r.int_gauge("vertice_backup_invalid", "1 while a VerticeBackup's phase is Invalid: its spec cannot become a CronJob (a schedule that never fires, a refused Secret, image or CronJob), so nothing new runs", &["namespace", "backup"])?,
            overdue_detected: r.counter("vertice_backup_overdue_total", "Times a VerticeBackup became overdue", &["namespace", "backup"])?,
            leader: r.add(prometheus::IntGauge::new("vertice_controller_leader", "1 while this replica holds the leader lease")?)?,
            scaler_desired: r.int_gauge("vertice_scaler_desired_replicas", "Replicas the scaler decided on, last poll", SCALER)?,
            scaler_current: r.int_gauge("vertice_scaler_current_replicas", "Replicas of the target's /scale, last poll", SCALER)?,
            scaler_fallback: r.int_gauge("vertice_scaler_fallback_active", "1 while a broken metric proposes its fallback replicas", SCALER)?,
            scaler_min: r.int_gauge("vertice_scaler_min_replicas", "The lower bound in force (the spec's, or a schedule window's)", SCALER)?,
            scaler_max: r.int_gauge("vertice_scaler_max_replicas", "The upper bound in force (the spec's, or a schedule window's)", SCALER)?,
            scaler_scales: r.counter("vertice_scaler_scale_total", "Scale changes the controller made, by direction (Up, Down)", &["namespace", "scaler", "direction"])?,
            scaler_metric_value: r.gauge("vertice_scaler_metric_value", "A scaler metric's current value (percent for utilization)", SCALER_METRIC)?,
            scaler_metric_target: r.gauge("vertice_scaler_metric_target", "A scaler metric's target, in the unit of vertice_scaler_metric_value", SCALER_METRIC)?,
            scaler_metric_errors: r.counter("vertice_scaler_metric_errors_total", "Polls on which a metric errored, had no data or was stale", SCALER_METRIC)?,
            scaler_decisions: r.counter("vertice_scaler_decisions_total", "Scaler decisions, by direction and reason", &["namespace", "scaler", "direction", "reason"])?,
            failover_phase: r.int_gauge("vertice_failover_phase", "1 for a VerticeFailover's current phase, 0 for the others", &["namespace", "failover", "phase"])?,
            failover_switches: r.counter("vertice_failover_switches_total", "Switches of traffic started, by reason (Failover, Failback, Switchover)", &["namespace", "failover", "reason"])?,
            failover_replica_healthy: r.int_gauge("vertice_failover_replica_healthy", "1 healthy, 0 unhealthy, -1 unknown: a replica's health across vantages", &["namespace", "failover", "replica"])?,
            failover_success_ratio: r.gauge("vertice_failover_health_check_success_ratio", "Share of a vantage's last 20 probes of a replica that succeeded", &["namespace", "failover", "replica", "vantage"])?,
            failover_patch_conflicts: r.counter("vertice_failover_patch_conflicts_total", "Guarded VirtualService patches refused because the route changed since it was read", &["namespace", "failover"])?,
            failover_route_weight: r.int_gauge("vertice_failover_route_weight", "The weight the controller set for a replica on the VirtualService route", &["namespace", "failover", "replica"])?,
            failover_observation_age: r.gauge("vertice_failover_observation_age_seconds", "Age of a vantage's newest observation when the controller last decided", &["namespace", "failover", "vantage"])?,
            registry: r.0,
        })
    }

    /// Drops every series of a VerticeBackup that is gone.
    pub fn forget_backup(&self, namespace: &str, name: &str) {
        let labels = [namespace, name];
        let _ = self.backups_overdue.remove_label_values(&labels);
        let _ = self.backups_unverified.remove_label_values(&labels);
        let _ = self.backups_invalid.remove_label_values(&labels);
        let _ = self.overdue_detected.remove_label_values(&labels);
    }

    /// Drops the series of every VerticeBackup not in `live` (namespace,
    /// name): a backup deleted while no reconcile could see it (it vanished
    /// between two watches) must not keep reporting.
    pub fn retain_backups(&self, live: &std::collections::HashSet<(String, String)>) {
        let mut gone = std::collections::BTreeSet::new();
        for family in self
            .backups_overdue
            .collect()
            .into_iter()
            .chain(self.overdue_detected.collect())
            .chain(self.backups_unverified.collect())
            .chain(self.backups_invalid.collect())
        {
            for metric in family.get_metric() {
                let label = |n: &str| label_value(metric, n).unwrap_or_default();
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

    /// Drops the series of every VerticeScaler not in `live` (namespace, name).
    pub fn retain_scalers(&self, live: &std::collections::HashSet<(String, String)>) {
        let mut gone = std::collections::BTreeSet::new();
        let families = self
            .scaler_desired
            .collect()
            .into_iter()
            .chain(self.scaler_metric_value.collect())
            .chain(self.scaler_metric_errors.collect());
        for family in families {
            for metric in family.get_metric() {
                let label = |n: &str| label_value(metric, n);
                let (Some(namespace), Some(scaler)) = (label("namespace"), label("scaler")) else {
                    continue;
                };
                if !live.contains(&(namespace.clone(), scaler.clone())) {
                    gone.insert((namespace, scaler, label("metric")));
                }
            }
        }
        for family in self.scaler_decisions.collect() {
            for m in family.get_metric() {
                let label = |n: &str| label_value(m, n).unwrap_or_default();
                if !live.contains(&(label("namespace"), label("scaler"))) {
                    let labels = [
                        label("namespace"),
                        label("scaler"),
                        label("direction"),
                        label("reason"),
                    ];
                    let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
                    let _ = self.scaler_decisions.remove_label_values(&labels);
                }
            }
        }
        for (namespace, scaler, metric) in gone {
            match metric {
                None => {
                    let labels = [namespace.as_str(), scaler.as_str()];
                    let _ = self.scaler_desired.remove_label_values(&labels);
                    let _ = self.scaler_current.remove_label_values(&labels);
                    let _ = self.scaler_fallback.remove_label_values(&labels);
                    let _ = self.scaler_min.remove_label_values(&labels);
                    let _ = self.scaler_max.remove_label_values(&labels);
                    for direction in SCALE_DIRECTIONS {
                        let _ = self.scaler_scales.remove_label_values(&[
                            namespace.as_str(),
                            scaler.as_str(),
                            direction,
                        ]);
                    }
                }
                Some(metric) => {
                    let labels = [namespace.as_str(), scaler.as_str(), metric.as_str()];
                    let _ = self.scaler_metric_value.remove_label_values(&labels);
                    let _ = self.scaler_metric_target.remove_label_values(&labels);
                    let _ = self.scaler_metric_errors.remove_label_values(&labels);
                }
            }
        }
    }

    /// Drops every series of VerticeFailovers not in `live` (namespace, name).
    pub fn retain_failovers(&self, live: &std::collections::HashSet<(String, String)>) {
        let keep = |m: &prometheus::proto::Metric| {
            let label = |n: &str| label_value(m, n).unwrap_or_default();
            live.contains(&(label("namespace"), label("failover")))
        };
        macro_rules! sweep {
            ($vec:expr) => {
                for family in $vec.collect() {
                    for m in family.get_metric().iter().filter(|m| !keep(m)) {
                        let labels: std::collections::HashMap<&str, &str> = m
                            .get_label()
                            .iter()
                            .map(|l| (l.name(), l.value()))
                            .collect();
                        let _ = $vec.remove(&labels);
                    }
                }
            };
        }
        sweep!(self.failover_phase);
        sweep!(self.failover_switches);
        sweep!(self.failover_replica_healthy);
        sweep!(self.failover_success_ratio);
        sweep!(self.failover_patch_conflicts);
        sweep!(self.failover_route_weight);
        sweep!(self.failover_observation_age);
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

/// Makes families and registers them in one step.
struct Registrar(Registry);

impl Registrar {
    fn add<C: Collector + Clone + 'static>(&self, c: C) -> Result<C, prometheus::Error> {
        self.0.register(Box::new(c.clone()))?;
        Ok(c)
    }

    fn counter(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> Result<IntCounterVec, prometheus::Error> {
        self.add(IntCounterVec::new(Opts::new(name, help), labels)?)
    }

    fn int_gauge(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> Result<IntGaugeVec, prometheus::Error> {
        self.add(IntGaugeVec::new(Opts::new(name, help), labels)?)
    }

    fn histogram(
        &self,
        name: &str,
        help: &str,
        buckets: &[f64],
        labels: &[&str],
    ) -> Result<HistogramVec, prometheus::Error> {
        let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
        self.add(HistogramVec::new(opts, labels)?)
    }

    fn gauge(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> Result<GaugeVec, prometheus::Error> {
        self.add(GaugeVec::new(Opts::new(name, help), labels)?)
    }
}

/// The value of label `name` of one collected series.
fn label_value(metric: &prometheus::proto::Metric, name: &str) -> Option<String> {
    metric
        .get_label()
        .iter()
        .find(|l| l.name() == name)
        .map(|l| l.value().to_string())
}
