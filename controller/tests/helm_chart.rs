//! `deploy/helm/vertice` against `deploy/base`: `helm lint` passes, the
//! RBAC rules are generated from the permission lists, the CRDs and alert
//! rules are the repository's own, values.schema.json refuses bad values,
//! and `helm template` renders in substance what Kustomize renders (the
//! same objects, RBAC rules, security contexts, probes and resources).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;
use vertice_controller::permissions::REQUIRED;
use vertice_controller::rbac;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn chart() -> PathBuf {
    repo().join("deploy/helm/vertice")
}

/// helm from scripts/lib/go-tools (or VERTICE_HELM, or PATH).
fn helm() -> Command {
    let bin = std::env::var_os("VERTICE_HELM")
        .map(PathBuf::from)
        .or_else(|| {
            let cached = PathBuf::from("/var/cache/vertice/tools/helm");
            cached.is_file().then_some(cached)
        })
        .unwrap_or_else(|| PathBuf::from("helm"));
    Command::new(bin)
}

fn run(mut cmd: Command, what: &str) -> (bool, String) {
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("{what}: {e}; helm is built by scripts/lib/go-tools (scripts/install-test-deps)")
    });
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn template(extra: &[&str]) -> Vec<Value> {
    let mut cmd = helm();
    cmd.args(["template", "vertice"])
        .arg(chart())
        .args(["--namespace", "vertice-system", "--include-crds"])
        .args(extra);
    let (ok, text) = run(cmd, "helm template");
    assert!(ok, "helm template {extra:?}:\n{text}");
    serde_saphyr::from_multiple::<Value>(&text)
        .expect("rendered YAML")
        .into_iter()
        .filter(|d| !d.is_null())
        .collect()
}

fn kustomize() -> Vec<Value> {
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(repo().join("deploy/base"))
        .output()
        .expect("kubectl (scripts/install-test-deps)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_saphyr::from_multiple(&String::from_utf8_lossy(&out.stdout)).expect("YAML")
}

/// Whole floats as integers, so `10.0` and `10` compare equal.
fn numbers(v: &Value) -> Value {
    match v {
        Value::Number(n) => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Value::from(f as i64),
            _ => v.clone(),
        },
        Value::Array(a) => Value::Array(a.iter().map(numbers).collect()),
        Value::Object(o) => Value::Object(o.iter().map(|(k, v)| (k.clone(), numbers(v))).collect()),
        _ => v.clone(),
    }
}

/// `(group, resource, verb)` of every rule.
fn grants(rules: &Value) -> BTreeSet<(String, String, String)> {
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(str::to_string))
            .collect()
    };
    let mut out = BTreeSet::new();
    for rule in rules.as_array().into_iter().flatten() {
        for g in strings(&rule["apiGroups"]) {
            for r in strings(&rule["resources"]) {
                for v in strings(&rule["verbs"]) {
                    out.insert((g.clone(), r.clone(), v));
                }
            }
        }
    }
    out
}

fn key(d: &Value) -> String {
    format!(
        "{}/{}",
        d["kind"].as_str().unwrap_or_default(),
        d["metadata"]["name"].as_str().unwrap_or_default()
    )
}

#[test]
fn helm_lint_passes() {
    let mut cmd = helm();
    cmd.args(["lint", "--strict"]).arg(chart());
    let (ok, text) = run(cmd, "helm lint");
    assert!(ok, "helm lint:\n{text}");
    // Every optional part on, too.
    let mut cmd = helm();
    cmd.args(["lint", "--strict"]).arg(chart()).args([
        "--set",
        "serviceMonitor.enabled=true,prometheusRule.enabled=true,controller.watchNamespace=shop",
    ]);
    let (ok, text) = run(cmd, "helm lint");
    assert!(ok, "helm lint with every option:\n{text}");
}

#[test]
fn rbac_rules_are_generated_from_the_permission_lists() {
    let path = chart().join("templates/_rbac-rules.tpl");
    let want = rbac::helm_rules_template(REQUIRED, vertice_agent::probe::serve::PERMISSIONS);
    if std::env::var_os("VERTICE_REGENERATE").is_some() {
        std::fs::write(&path, &want).expect("write");
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "{} is not what the permission lists give; regenerate with \
         VERTICE_REGENERATE=1 cargo test -p vertice-controller --test helm_chart",
        path.display()
    );
}

#[test]
fn crds_and_alert_rules_are_the_repository_ones() {
    for entry in std::fs::read_dir(repo().join("deploy/crds")).expect("crds") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .to_string();
        if name == "kustomization.yaml" {
            continue;
        }
        let copy = chart().join("crds").join(&name);
        assert_eq!(
            std::fs::read_to_string(&copy).ok(),
            std::fs::read_to_string(&path).ok(),
            "{} differs from deploy/crds/{name}: `cargo run -p vertice-crds --bin crdgen` writes both",
            copy.display()
        );
    }
    assert_eq!(
        std::fs::read_to_string(chart().join("files/vertice.rules.yaml")).ok(),
        std::fs::read_to_string(repo().join("monitoring/alerts/vertice.rules.yaml")).ok(),
        "deploy/helm/vertice/files/vertice.rules.yaml must be a copy of monitoring/alerts/vertice.rules.yaml"
    );
}

#[test]
fn the_chart_renders_what_kustomize_renders() {
    let helm: BTreeMap<String, Value> = template(&[]).into_iter().map(|d| (key(&d), d)).collect();
    let kustomize: BTreeMap<String, Value> = kustomize()
        .into_iter()
        // The chart installs into the release namespace; it does not own it.
        .filter(|d| d["kind"] != "Namespace")
        .map(|d| (key(&d), d))
        .collect();
    let names = |m: &BTreeMap<String, Value>| m.keys().cloned().collect::<BTreeSet<_>>();
    assert_eq!(names(&helm), names(&kustomize), "the same objects");
    for (k, base) in &kustomize {
        let ours = &helm[k];
        if k.starts_with("CustomResourceDefinition/") {
            // The chart ships deploy/crds byte for byte; kustomize prints
            // `10.0` as `10`.
            assert_eq!(numbers(&ours["spec"]), numbers(&base["spec"]), "{k}");
            continue;
        }
        // The same grants, however they are grouped into rules.
        assert_eq!(grants(&ours["rules"]), grants(&base["rules"]), "{k}: rules");
        for field in ["roleRef", "subjects"] {
            assert_eq!(ours[field], base[field], "{k}: {field}");
        }
        assert_eq!(
            ours["metadata"]["namespace"], base["metadata"]["namespace"],
            "{k}: namespace"
        );
        if ["Deployment", "Service", "PodDisruptionBudget"]
            .contains(&base["kind"].as_str().unwrap_or_default())
        {
            let spec = |d: &Value| {
                let mut s = d["spec"].clone();
                // Images differ by design (the chart's default tag is its
                // appVersion); labels gain Helm's own.
                if let Some(t) = s.pointer_mut("/template/metadata/labels") {
                    *t = Value::Null;
                }
                for c in s
                    .pointer_mut("/template/spec/containers")
                    .and_then(Value::as_array_mut)
                    .into_iter()
                    .flatten()
                {
                    c["imagePullPolicy"] = Value::Null;
                    c["image"] = Value::Null;
                    if let Some(env) = c["env"].as_array_mut() {
                        // The chart states the defaults deploy/base leaves implicit.
                        env.retain(|e| {
                            ![
                                "VERTICE_LOG",
                                "VERTICE_LEADER_ELECTION",
                                "VERTICE_MAX_CONCURRENT_PROBES",
                                "VERTICE_MAX_PROBES_PER_NAMESPACE",
                                "VERTICE_MAX_PROBE_TIMEOUT",
                                "VERTICE_MAX_PROBE_BODY_BYTES",
                                "VERTICE_PROBE_ALLOWED_CIDRS",
                                "VERTICE_PROBE_DENIED_CIDRS",
                                "VERTICE_SECRET_REFERENCE_POLICY",
                                "VERTICE_MAX_METRIC_RESPONSE_BYTES",
                                "VERTICE_MAX_METRIC_QUERY_TIMEOUT",
                            ]
                            .contains(&e["name"].as_str().unwrap_or_default())
                        });
                        for e in env.iter_mut() {
                            if e["name"] == "VERTICE_AGENT_IMAGE" {
                                e["value"] = Value::Null;
                            }
                        }
                    }
                }
                s
            };
            assert_eq!(spec(ours), spec(base), "{k}: spec");
        }
    }
    // The images are the ones the values name.
    let controller = &helm["Deployment/vertice-controller"];
    assert_eq!(
        controller["spec"]["template"]["spec"]["containers"][0]["image"],
        "ghcr.io/vertice/controller:0.1.0"
    );
}

#[test]
fn values_choose_what_renders_and_the_schema_refuses_bad_values() {
    let docs = template(&[
        "--set",
        "probeRunner.enabled=false,userRoles.enabled=false,serviceMonitor.enabled=true,prometheusRule.enabled=true",
        "--set",
        "controller.watchNamespace=shop,controller.pushgatewayUrl=http://pg.monitoring:9091,probeRunner.vantage=eu-west-1",
    ]);
    let keys: BTreeSet<String> = docs.iter().map(key).collect();
    assert!(!keys.contains("Deployment/vertice-probe"), "{keys:?}");
    assert!(!keys.contains("ClusterRole/vertice-edit"), "{keys:?}");
    assert!(
        keys.contains("ServiceMonitor/vertice-controller"),
        "{keys:?}"
    );
    let rule = docs
        .iter()
        .find(|d| d["kind"] == "PrometheusRule")
        .expect("PrometheusRule");
    let alerts: usize = rule["spec"]["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|g| g["rules"].as_array().map_or(0, Vec::len))
        .sum();
    assert!(alerts >= 21, "{rule}");
    // Prometheus' templates stay as they are for Prometheus to expand.
    assert!(rule.to_string().contains("{{ $labels.namespace }}"));
    let controller = docs
        .iter()
        .find(|d| key(d) == "Deployment/vertice-controller")
        .expect("controller");
    let env = controller["spec"]["template"]["spec"]["containers"][0]["env"].to_string();
    assert!(
        env.contains("VERTICE_WATCH_NAMESPACE") && env.contains("\"shop\""),
        "{env}"
    );
    // Watching one namespace, the Secret reads are granted only there.
    let secret_role = docs
        .iter()
        .find(|d| key(d) == "Role/vertice-controller-secrets")
        .expect("a Secret Role in the watched namespace");
    assert_eq!(secret_role["metadata"]["namespace"], "shop");
    assert!(env.contains("http://pg.monitoring:9091"), "{env}");

    // The administrator's tenancy choices reach both processes, and Secret
    // reads can be confined to listed namespaces.
    let docs = template(&[
        "--set",
        "tenancy.crossNamespace.team-a={team-b,team-c},tenancy.allowedServiceAccounts={vault-auth},tenancy.allowedAgentImages={registry.example/agent:1}",
        "--set",
        "rbac.secretNamespaces={team-a},probeRunner.networkPolicy.enabled=true",
    ]);
    let keys: BTreeSet<String> = docs.iter().map(key).collect();
    for k in [
        "Role/vertice-controller-secrets",
        "RoleBinding/vertice-controller-secrets",
        "Role/vertice-probe-secrets",
        "NetworkPolicy/vertice-probe-egress",
    ] {
        assert!(keys.contains(k), "{k} in {keys:?}");
    }
    let secret_role = docs
        .iter()
        .find(|d| key(d) == "Role/vertice-probe-secrets")
        .expect("role");
    assert_eq!(secret_role["metadata"]["namespace"], "team-a");
    for role in [
        "ClusterRole/vertice-controller",
        "ClusterRole/vertice-probe",
    ] {
        let d = docs.iter().find(|d| key(d) == role).expect("cluster role");
        assert!(
            !grants(&d["rules"]).iter().any(|(_, r, _)| r == "secrets"),
            "{role} must not read Secrets cluster-wide: {d}"
        );
    }
    let env = docs
        .iter()
        .find(|d| key(d) == "Deployment/vertice-controller")
        .expect("controller")["spec"]["template"]["spec"]["containers"][0]["env"]
        .to_string();
    for wanted in [
        "team-a:team-b,team-a:team-c",
        "vault-auth",
        "registry.example/agent:1",
        "VERTICE_SECRET_REFERENCE_POLICY",
    ] {
        assert!(env.contains(wanted), "{wanted} in {env}");
    }

    for (bad, field) in [
        ("controller.replicas=0", "replicas"),
        ("probeRunner.vantage=-bad", "vantage"),
        ("controller.logFormat=xml", "logFormat"),
        ("controller.replicaz=2", "replicaz"),
        ("image.agent.pullPolicy=Sometimes", "pullPolicy"),
        (
            "tenancy.secretReferencePolicy=everything",
            "secretReferencePolicy",
        ),
        ("probeRunner.deniedCidrs={metadata}", "deniedCidrs"),
    ] {
        let mut cmd = helm();
        cmd.args(["template", "vertice"])
            .arg(chart())
            .args(["--set", bad]);
        let (ok, text) = run(cmd, "helm template");
        assert!(!ok, "{bad} must be refused");
        assert!(
            text.contains(field),
            "{bad}: the error names {field}:\n{text}"
        );
    }
}
