//! `monitoring/` proven: the alert rules pass promtool's checks and unit
//! tests; the dashboards type-check against Grafana's published schema; the
//! metric names of both are exactly the ones the code exports and the docs
//! list; and every panel query, variable query and alert expression runs on
//! a real Prometheus that scraped a real Pushgateway fed by real agent
//! runs, the real controller and the real probe runner, and returns data.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{DynamicObject, PostParams};
use kube::Api;
use serde_json::{json, Value};
use vertice_crds::failover::{FailoverPhase, Health};
use vertice_crds::{VerticeBackup, VerticeFailover, VerticeScaler};
use vertice_tests::health_target::HealthTarget;
use vertice_tests::kube::{istio, TestCluster};
use vertice_tests::monitoring::{self, PanelQuery};
use vertice_tests::prometheus::{Exporter, Prometheus, ScrapeJob};
use vertice_tests::pushgateway::Pushgateway;
use vertice_tests::redis_server::RedisServer;
use vertice_tests::wait::wait_for;
use vertice_tests::Agent;

/// The alerts the product promises, and the ones added with them.
const PROMISED_ALERTS: [&str; 21] = [
    "BackupFailed",
    "BackupHighDuration",
    "NoBackupsIn24Hours",
    "BackupOperatorDown",
    "ScalerAtMaxReplicas",
    "ScalerAtMinReplicas",
    "FrequentScaling",
    "ScalerOperatorDown",
    "FailoverTriggered",
    "ServiceDegraded",
    "HealthCheckFailureRate",
    "FailoverOperatorDown",
    "MultipleFailoversIn1Hour",
    "OperatorHighMemory",
    "OperatorHighCPU",
    "OperatorPodRestarting",
    "CRDValidationError",
    "BackupOverdue",
    "BackupNeverSucceeded",
    "ScalerMetricsBroken",
    "FailoverObserversStale",
];

fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(monitoring::monitoring_dir().join("alerts"))
        .output()
        .unwrap_or_else(|e| {
            panic!("promtool is missing ({e}): apt-get install -y prometheus (scripts/install-test-deps)")
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?}:\n{text}");
    text
}

#[test]
fn alert_rules_pass_promtool_and_each_fires_resolves_and_has_a_runbook() {
    promtool(&["check", "rules", "vertice.rules.yaml"]);
    let tested = promtool(&["test", "rules", "vertice.rules.test.yaml"]);
    assert!(tested.contains("SUCCESS"), "{tested}");

    let rules = monitoring::alert_rules();
    let alerts = monitoring::alerts(&rules);
    let names: BTreeSet<&str> = alerts.iter().filter_map(|a| a["alert"].as_str()).collect();
    for promised in PROMISED_ALERTS {
        assert!(names.contains(promised), "alert {promised} is missing");
    }
    let runbook =
        std::fs::read_to_string(monitoring::monitoring_dir().join("RUNBOOK.md")).expect("runbook");
    for a in &alerts {
        let name = a["alert"].as_str().unwrap_or_default();
        let severity = a["labels"]["severity"].as_str().unwrap_or_default();
        assert!(
            ["info", "warning", "critical"].contains(&severity),
            "{name}: severity {severity:?}"
        );
        for annotation in ["summary", "description"] {
            assert!(
                a["annotations"][annotation]
                    .as_str()
                    .is_some_and(|s| s.len() > 10),
                "{name}: annotation {annotation} is missing"
            );
        }
        assert_eq!(
            a["annotations"]["runbook"].as_str(),
            Some(format!("monitoring/RUNBOOK.md#{}", name.to_lowercase()).as_str()),
            "{name}: runbook annotation"
        );
        assert!(
            runbook.contains(&format!("\n### {name}\n")),
            "RUNBOOK.md has no section for {name}"
        );
    }

    // Every alert has a case where it must fire and one where it must not.
    let path = monitoring::monitoring_dir().join("alerts/vertice.rules.test.yaml");
    let cases: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(&path).expect("tests")).expect("YAML");
    let mut fires = BTreeSet::new();
    let mut quiet = BTreeSet::new();
    let mut count = 0;
    for test in cases["tests"].as_array().into_iter().flatten() {
        for case in test["alert_rule_test"].as_array().into_iter().flatten() {
            count += 1;
            let name = case["alertname"].as_str().unwrap_or_default().to_string();
            let expected = case["exp_alerts"].as_array().map_or(0, Vec::len);
            if expected > 0 {
                fires.insert(name);
            } else {
                quiet.insert(name);
            }
        }
    }
    for name in &names {
        assert!(fires.contains(*name), "no promtool case makes {name} fire");
        assert!(
            quiet.contains(*name),
            "no promtool case shows {name} quiet (or resolved)"
        );
    }
    println!(
        "{} alerts; {count} promtool cases ({} alerts fire in some, all are quiet in others)",
        names.len(),
        fires.len()
    );
}

#[test]
fn dashboards_match_grafana_schema_and_house_rules() {
    let check = monitoring::monitoring_dir().join("schema-check");
    assert!(
        check.join("node_modules/@grafana/schema").is_dir(),
        "@grafana/schema is not installed: (cd monitoring/schema-check && npm ci) (scripts/install-test-deps)"
    );
    let out = Command::new("node")
        .arg("check.mjs")
        .current_dir(&check)
        .output()
        .expect("node (scripts/install-test-deps installs Node.js)");
    assert!(
        out.status.success(),
        "dashboards do not match @grafana/schema:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let dashboards = monitoring::dashboards();
    let files: BTreeSet<&str> = dashboards.iter().map(|(f, _)| f.as_str()).collect();
    for want in [
        "vertice-backup.json",
        "vertice-scaler.json",
        "vertice-failover.json",
        "vertice-overview.json",
    ] {
        assert!(files.contains(want), "dashboard {want} is missing");
    }
    let mut uids = BTreeSet::new();
    for (file, d) in &dashboards {
        assert!(uids.insert(d["uid"].to_string()), "{file}: uid reused");
        let vars: BTreeMap<&str, &Value> = d["templating"]["list"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| Some((v["name"].as_str()?, v)))
            .collect();
        assert_eq!(
            vars.get("datasource").map(|v| (&v["type"], &v["query"])),
            Some((&json!("datasource"), &json!("prometheus"))),
            "{file}: a templated Prometheus datasource"
        );
        for name in ["namespace", "name"] {
            assert!(
                vars.contains_key(name),
                "{file}: variable {name} is missing"
            );
        }
        let mut ids = BTreeSet::new();
        for p in monitoring::panels(d) {
            let title = p["title"].as_str().unwrap_or_default();
            assert!(ids.insert(p["id"].to_string()), "{file}: panel id reused");
            let grid = &p["gridPos"];
            let (x, w) = (grid["x"].as_u64(), grid["w"].as_u64());
            assert!(
                x.zip(w).is_some_and(|(x, w)| x + w <= 24),
                "{file}: {title} is off the grid"
            );
            if p["type"] == "row" {
                continue;
            }
            assert_eq!(
                p["datasource"]["uid"], "${datasource}",
                "{file}: {title} must use the datasource variable"
            );
            assert!(
                p["description"].as_str().is_some_and(|s| !s.is_empty()),
                "{file}: {title} has no description"
            );
            let targets = p["targets"].as_array().cloned().unwrap_or_default();
            assert!(!targets.is_empty(), "{file}: {title} has no query");
            for t in targets {
                assert_eq!(t["datasource"]["uid"], "${datasource}", "{file}: {title}");
                assert!(
                    t["expr"].as_str().is_some_and(|e| !e.trim().is_empty()),
                    "{file}: {title}"
                );
            }
        }
    }
}

/// Every metric name a dashboard query, a variable or an alert reads.
fn used_metric_names() -> BTreeMap<String, String> {
    let mut used = BTreeMap::new();
    for (file, d) in monitoring::dashboards() {
        for q in monitoring::panel_queries(&file, &d) {
            for name in monitoring::metric_names(&q.expr) {
                used.entry(name)
                    .or_insert_with(|| format!("{file}: {}", q.panel));
            }
        }
        for v in monitoring::variable_queries(&file, &d) {
            for name in monitoring::metric_names(v.selector.as_deref().unwrap_or_default()) {
                used.entry(name)
                    .or_insert_with(|| format!("{file}: variable {}", v.name));
            }
        }
    }
    let rules = monitoring::alert_rules();
    for a in monitoring::alerts(&rules) {
        for name in monitoring::metric_names(a["expr"].as_str().unwrap_or_default()) {
            used.entry(name)
                .or_insert_with(|| format!("alert {}", a["alert"].as_str().unwrap_or_default()));
        }
    }
    used
}

/// Crate names that look like metric names in tracing filters, the
/// drill's default scratch-database prefix and a parallel restore's
/// staging and replaced databases' prefixes.
const NOT_METRICS: [&str; 7] = [
    "vertice_agent",
    "vertice_drill_",
    "vertice_restore_",
    "vertice_replaced_",
    "vertice_controller",
    "vertice_crds",
    "vertice_tests",
];

#[test]
fn monitoring_reads_only_exported_metrics_and_every_metric_is_documented() {
    let exported: BTreeSet<String> =
        monitoring::exported_metric_names(&["agent/src", "controller/src"])
            .into_iter()
            .filter(|n| !NOT_METRICS.contains(&n.as_str()))
            .collect();
    let documented = monitoring::documented_metric_names();
    for name in &exported {
        assert!(
            documented.contains(name),
            "{name} is exported but not listed in docs/ARCHITECTURE.md \"Metrics\""
        );
    }
    for name in documented.iter().filter(|n| n.starts_with("vertice_")) {
        assert!(
            exported.contains(name),
            "docs/ARCHITECTURE.md lists {name}, which the code does not export"
        );
    }
    for (name, user) in used_metric_names() {
        let family = monitoring::family_of(&name, &exported);
        let known = exported.contains(&family)
            || (!family.starts_with("vertice_") && documented.contains(&family));
        assert!(
            known,
            "{user} reads {name}, which the code does not export (nor do the docs list it)"
        );
    }
}

// ---------------------------------------------------------------------------
// Every query against a real Prometheus.

const NS: &str = "shop";

async fn feed_backups(pushgateway: &Pushgateway, prometheus: &Prometheus) {
    let redis = RedisServer::start(None);
    let store = tempfile::tempdir().expect("store");
    let store_url = format!("file://{}", store.path().display());
    let agent = Agent::new();
    let env = vec![("VERTICE_PUSHGATEWAY_URL", pushgateway.url())];
    let backup = |name: &str, source: &str| {
        agent.run(
            &[
                "backup",
                "--source",
                source,
                "--to",
                &store_url,
                "--namespace",
                NS,
                "--name",
                name,
            ],
            &env,
        )
    };
    // Two successes a scrape apart, so counters move under Prometheus' eyes.
    backup("sessions", &redis.url()).assert_ok();
    wait_for(
        "the first push scraped",
        Duration::from_secs(30),
        || async {
            prometheus
                .value(r#"vertice_backup_total{backup="sessions"}"#)
                .map(|_| ())
        },
    )
    .await;
    backup("sessions", &redis.url()).assert_ok();
    agent
        .run(
            &[
                "verify",
                "--from",
                &store_url,
                "--namespace",
                NS,
                "--name",
                "sessions",
                "--pushgateway-url",
                &pushgateway.url(),
            ],
            &[],
        )
        .assert_ok();
    // A source that refuses: category source.
    let nowhere = format!("redis://127.0.0.1:{}", vertice_tests::ports::free_port());
    backup("carts", &nowhere).assert_code(1);
    // Restore drills: one that passes (the RDB loads into a throwaway
    // server) and one that fails (carts has no backup), each pushed to its group.
    let drill = |name: &str, backup: &str| {
        agent.run(
            &[
                "drill",
                "--from",
                &store_url,
                "--backup",
                backup,
                "--namespace",
                NS,
                "--name",
                name,
            ],
            &env,
        )
    };
    drill("sessions", "latest").assert_ok();
    drill("carts", "latest").assert_code(2);
}

async fn create_overdue_backup(client: &kube::Client) {
    // The Secrets it names, opted in by their owner (a backup naming others
    // is refused before it is scheduled, and is never overdue).
    for (name, data) in [
        ("db", json!({"password": "p"})),
        (
            "s3",
            json!({"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}),
        ),
    ] {
        vertice_tests::kube::cluster::create_secret(client, NS, name, data, true).await;
    }
    let api: Api<VerticeBackup> = Api::namespaced(client.clone(), NS);
    let backup: VerticeBackup = serde_json::from_value(json!({
        "apiVersion": "vertice.io/v1alpha1", "kind": "VerticeBackup",
        "metadata": {"name": "orders", "namespace": NS},
        "spec": {
            "target": {"postgres": {"host": "127.0.0.1", "port": vertice_tests::ports::free_port(),
                                    "database": "shop", "user": "postgres",
                                    "passwordSecretRef": {"name": "db", "key": "password"}}},
            "schedule": {"cron": "0 0 1 1 *", "timeZone": "UTC", "overdueAfter": "1m"},
            "store": {"s3": {"bucket": "backups", "region": "us-east-1", "endpoint": "http://127.0.0.1:1",
                             "forcePathStyle": true, "credentials": {"secretName": "s3"}}}}}))
    .expect("backup");
    api.create(&PostParams::default(), &backup)
        .await
        .expect("create backup");
}

async fn create_scaler(client: &kube::Client, prometheus: &Prometheus) {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NS);
    let d: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": NS},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "app", "image": "shop/web:1.4"}]}}}}))
    .expect("deployment");
    deployments
        .create(&PostParams::default(), &d)
        .await
        .expect("create deployment");
    let scaler: VerticeScaler = serde_json::from_value(json!({
        "apiVersion": "vertice.io/v1alpha1", "kind": "VerticeScaler",
        "metadata": {"name": "web", "namespace": NS},
        "spec": {"targetRef": {"kind": "Deployment", "name": "web"},
                 "minReplicas": 1, "maxReplicas": 4,
                 "prometheus": {"url": prometheus.url()},
                 // 35 queued against 10 each: up to the maximum. The second
                 // metric has no data: an error on every poll.
                 "metrics": [{"name": "queue", "prometheus": {"query": "sum(queue_depth)", "targetValue": 10}},
                             {"name": "missing", "prometheus": {"query": "sum(no_such_series)", "targetValue": 1}}]}}))
    .expect("scaler");
    Api::<VerticeScaler>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &scaler)
        .await
        .expect("create scaler");
}

async fn create_failover(client: &kube::Client, a: &HealthTarget, b: &HealthTarget) {
    let vs: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "pg", "namespace": NS},
        "spec": {"hosts": ["pg.shop.svc.cluster.local"], "http": [{"name": "primary", "route": [
            {"destination": {"host": "pg-a.shop.svc.cluster.local"}, "weight": 100},
            {"destination": {"host": "pg-b.shop.svc.cluster.local"}, "weight": 0}]}]}}))
    .expect("vs");
    istio::virtual_services(client, NS)
        .create(&PostParams::default(), &vs)
        .await
        .expect("create vs");
    let failover: VerticeFailover = serde_json::from_value(json!({
        "apiVersion": "vertice.io/v1alpha1", "kind": "VerticeFailover",
        "metadata": {"name": "pg", "namespace": NS},
        "spec": {"virtualService": {"name": "pg"},
                 "replicas": [
                    {"name": "a", "host": "pg-a.shop.svc.cluster.local", "probeAddress": a.address(), "priority": 10},
                    {"name": "b", "host": "pg-b.shop.svc.cluster.local", "probeAddress": b.address(), "priority": 5}],
                 "check": {"http": {"path": "/healthz"}, "periodSeconds": 1, "timeoutSeconds": 1,
                           "failureThreshold": 2, "successThreshold": 1},
                 "policy": {"vantages": ["test"], "minSwitchIntervalSeconds": 0}}}))
    .expect("failover");
    Api::<VerticeFailover>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &failover)
        .await
        .expect("create failover");
}

/// Runs one panel query as Grafana would: instant, or over the last
/// two minutes. The series it returned, or why it failed.
fn run(prometheus: &Prometheus, q: &PanelQuery) -> Result<usize, String> {
    let expr = monitoring::substitute(&q.expr);
    let encoded: String = url::form_urlencoded::byte_serialize(expr.as_bytes()).collect();
    let now = chrono::Utc::now().timestamp();
    let path = if q.instant {
        format!("/api/v1/query?query={encoded}")
    } else {
        format!(
            "/api/v1/query_range?query={encoded}&start={}&end={now}&step=5",
            now - 120
        )
    };
    let answer = prometheus
        .api(&path)
        .ok_or_else(|| "no answer from Prometheus".to_string())?;
    if answer["status"] != "success" {
        return Err(format!("{}: {}", answer["errorType"], answer["error"]));
    }
    Ok(answer["data"]["result"].as_array().map_or(0, Vec::len))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_panel_and_alert_query_runs_on_real_metrics_and_returns_data() {
    let cluster = TestCluster::start().await;
    istio::install_virtual_service_crd(&cluster);
    let client = cluster.admin().await;
    cluster.plane.create_namespace(NS).await;
    let pushgateway = Pushgateway::start();
    let exporter = Exporter::start();
    exporter.set("queue_depth", 35.0);
    let a = HealthTarget::start().await;
    let mut b_target = HealthTarget::start().await;
    let controller = cluster
        .start_controller("monitoring", &["--scaler-poll-interval=1s"])
        .await;
    let runner = cluster.start_probe_runner("test").await;
    let rules = monitoring::monitoring_dir().join("alerts/vertice.rules.yaml");
    let prometheus = Prometheus::start_jobs_with_rules(
        &[
            ScrapeJob {
                name: "pushgateway",
                targets: vec![format!("127.0.0.1:{}", pushgateway.port)],
                honor_labels: true,
            },
            ScrapeJob {
                name: "vertice-controller",
                targets: vec![format!("127.0.0.1:{}", controller.port)],
                honor_labels: false,
            },
            ScrapeJob {
                name: "vertice-probe",
                targets: vec![format!("127.0.0.1:{}", runner.port)],
                honor_labels: false,
            },
            ScrapeJob {
                name: "app",
                targets: vec![format!("127.0.0.1:{}", exporter.port)],
                honor_labels: false,
            },
        ],
        Some(&rules),
    );

    create_overdue_backup(&client).await;
    create_scaler(&client, &prometheus).await;
    // Replica b is down from the start and a is stopped later: one
    // failover (a → b) after b comes back.
    b_target.stop();
    create_failover(&client, &a, &b_target).await;
    feed_backups(&pushgateway, &prometheus).await;
    b_target.resume().await;
    wait_for("failover healthy on a", Duration::from_secs(60), || async {
        let f = Api::<VerticeFailover>::namespaced(client.clone(), NS)
            .get("pg")
            .await
            .ok()?;
        let s = f.status?;
        (s.phase == Some(FailoverPhase::Healthy)
            && s.health.iter().all(|h| h.health == Health::Healthy))
        .then_some(())
    })
    .await;
    let mut a = a;
    a.stop();
    wait_for(
        "a failover and a scale-up in the controller's metrics",
        Duration::from_secs(90),
        || async {
            let m = controller.metrics().await;
            (m.contains("vertice_failover_switches_total{")
                && m.contains("vertice_scaler_scale_total{")
                && m.contains("vertice_scaler_metric_errors_total{"))
            .then_some(())
        },
    )
    .await;

    // Every query parses and, once Prometheus has scraped it all, has data.
    let mut queries = Vec::new();
    let mut variables = Vec::new();
    for (file, d) in monitoring::dashboards() {
        queries.extend(monitoring::panel_queries(&file, &d));
        variables.extend(monitoring::variable_queries(&file, &d));
    }
    let deadline = Instant::now() + Duration::from_secs(90);
    let empty = loop {
        let mut problems = Vec::new();
        for q in &queries {
            match run(&prometheus, q) {
                Ok(0) => problems.push(format!(
                    "{} / {}: no data: {}",
                    q.dashboard, q.panel, q.expr
                )),
                Ok(_) => {}
                Err(e) => panic!("{} / {}: {e}\n{}", q.dashboard, q.panel, q.expr),
            }
        }
        for v in &variables {
            let mut path = format!("/api/v1/label/{}/values", v.label);
            if let Some(selector) = &v.selector {
                let selector = monitoring::substitute(selector);
                let encoded: String =
                    url::form_urlencoded::byte_serialize(selector.as_bytes()).collect();
                path.push_str(&format!("?match[]={encoded}"));
            }
            let values = prometheus
                .api(&path)
                .and_then(|a| a["data"].as_array().map(Vec::len))
                .unwrap_or(0);
            if values == 0 {
                problems.push(format!("{} variable {}: no values", v.dashboard, v.name));
            }
        }
        if problems.is_empty() || Instant::now() > deadline {
            break problems;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    assert!(
        empty.is_empty(),
        "queries without data:\n{}\n\ncontroller metrics:\n{}",
        empty.join("\n"),
        controller.metrics().await
    );

    // Every rule evaluates on these series without error, and what the
    // real series make true is active: the failing backup, the failover.
    let active = |rules: &[Value]| -> BTreeSet<String> {
        rules
            .iter()
            .flat_map(|r| r["alerts"].as_array().cloned().unwrap_or_default())
            .filter_map(|a| a["labels"]["alertname"].as_str().map(str::to_string))
            .collect()
    };
    let evaluated = wait_for(
        "every rule evaluated, BackupFailed and FailoverTriggered active",
        Duration::from_secs(30),
        || async {
            let answer = prometheus.api("/api/v1/rules")?;
            let rules: Vec<Value> = answer["data"]["groups"]
                .as_array()?
                .iter()
                .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
                .collect();
            let all_evaluated = rules.iter().all(|r| {
                r["lastEvaluation"]
                    .as_str()
                    .is_some_and(|t| !t.starts_with("0001"))
            });
            let firing = active(&rules);
            (all_evaluated
                && firing.contains("BackupFailed")
                && firing.contains("FailoverTriggered"))
            .then_some(rules)
        },
    )
    .await;
    for r in &evaluated {
        assert_eq!(
            r["health"], "ok",
            "alert {} does not evaluate: {}",
            r["name"], r["lastError"]
        );
    }
    let firing = active(&evaluated);
    // One failover happened: not "multiple", even on a counter born a
    // few seconds ago (increase() extrapolates).
    assert!(
        !firing.contains("MultipleFailoversIn1Hour"),
        "one failover is not several: {firing:?}"
    );
    println!(
        "{} panel queries and {} variable queries returned data; {} rules evaluated; active: {firing:?}",
        queries.len(),
        variables.len(),
        evaluated.len()
    );
    drop(runner);
}
