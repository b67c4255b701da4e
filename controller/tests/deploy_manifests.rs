//! `deploy/` as `kubectl kustomize` renders it: the controller's RBAC grants
//! exactly what `permissions::REQUIRED` lists (nothing the controller does not
//! use), the Deployment is locked down, and every example becomes a CronJob.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;
use vertice_controller::backup::cron_job::{desired, JobDefaults};
use vertice_controller::permissions::REQUIRED;
use vertice_crds::VerticeBackup;

fn deploy_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn render(dir: &str) -> Vec<Value> {
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(deploy_dir().join(dir))
        .output()
        .unwrap_or_else(|e| panic!("kubectl is needed to render deploy/ ({e}); install it from https://kubernetes.io/docs/tasks/tools/"));
    assert!(
        out.status.success(),
        "kubectl kustomize {dir}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_saphyr::from_multiple(&String::from_utf8_lossy(&out.stdout)).expect("rendered YAML")
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect()
}

/// `(group, resource, verb)` granted to the controller's service account.
fn controller_grants(docs: &[Value]) -> BTreeSet<(String, String, String)> {
    grants_of(docs, "vertice-controller")
}

/// `(group, resource, verb)` granted to a service account of vertice-system.
fn grants_of(docs: &[Value], account: &str) -> BTreeSet<(String, String, String)> {
    let bound_roles: Vec<(String, String)> = docs
        .iter()
        .filter(|d| {
            matches!(
                d["kind"].as_str(),
                Some("ClusterRoleBinding" | "RoleBinding")
            )
        })
        .filter(|d| {
            d["subjects"].as_array().into_iter().flatten().any(|s| {
                s["kind"] == "ServiceAccount"
                    && s["name"] == account
                    && s["namespace"] == "vertice-system"
            })
        })
        .map(|d| {
            (
                d["roleRef"]["kind"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                d["roleRef"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect();
    assert!(!bound_roles.is_empty(), "no role is bound to {account}");
    let mut grants = BTreeSet::new();
    for (kind, name) in bound_roles {
        let role = docs
            .iter()
            .find(|d| d["kind"] == kind.as_str() && d["metadata"]["name"] == name.as_str())
            .unwrap_or_else(|| panic!("{kind} {name} is bound but not defined"));
        for rule in role["rules"].as_array().into_iter().flatten() {
            assert!(
                rule.get("resourceNames").is_none() || kind == "Role",
                "unexpected resourceNames in {name}"
            );
            for group in strings(&rule["apiGroups"]) {
                for resource in strings(&rule["resources"]) {
                    for verb in strings(&rule["verbs"]) {
                        assert!(
                            group != "*" && resource != "*" && verb != "*",
                            "{name} grants a wildcard"
                        );
                        grants.insert((group.clone(), resource.clone(), verb));
                    }
                }
            }
        }
    }
    grants
}

#[test]
fn rendered_rbac_grants_exactly_what_the_controller_uses() {
    let required: BTreeSet<(String, String, String)> = REQUIRED
        .iter()
        .map(|(g, r, v)| (g.to_string(), r.to_string(), v.to_string()))
        .collect();
    for dir in ["base", "overlays/example"] {
        let granted = controller_grants(&render(dir));
        let extra: Vec<_> = granted.difference(&required).collect();
        let missing: Vec<_> = required.difference(&granted).collect();
        assert!(
            extra.is_empty(),
            "{dir}: RBAC grants what the controller never uses: {extra:?}"
        );
        assert!(
            missing.is_empty(),
            "{dir}: RBAC misses what the controller needs: {missing:?}"
        );
    }
}

#[test]
fn the_probe_runner_is_granted_exactly_what_it_uses() {
    let required: BTreeSet<(String, String, String)> = vertice_agent::probe::serve::PERMISSIONS
        .iter()
        .map(|(g, r, v)| (g.to_string(), r.to_string(), v.to_string()))
        .collect();
    for dir in ["base", "overlays/example"] {
        let docs = render(dir);
        assert_eq!(grants_of(&docs, "vertice-probe"), required, "{dir}");
        let runner = docs
            .iter()
            .find(|d| d["kind"] == "Deployment" && d["metadata"]["name"] == "vertice-probe")
            .expect("the probe runner Deployment");
        let pod = &runner["spec"]["template"]["spec"];
        assert_eq!(pod["serviceAccountName"], "vertice-probe");
        assert_eq!(pod["securityContext"]["runAsUser"], 65532);
        let container = &pod["containers"][0];
        assert_eq!(container["args"], serde_json::json!(["probe", "serve"]));
        assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
        assert_eq!(container["env"][0]["name"], "VERTICE_VANTAGE");
        assert!(
            container["image"]
                .as_str()
                .is_some_and(|i| i.contains("/agent:")),
            "{}",
            container["image"]
        );
    }
}

#[test]
fn leases_are_granted_only_in_the_controller_namespace() {
    let docs = render("base");
    for role in docs.iter().filter(|d| d["kind"] == "ClusterRole") {
        for rule in role["rules"].as_array().into_iter().flatten() {
            assert!(
                !strings(&rule["resources"]).contains(&"leases".to_string()),
                "{} grants leases cluster-wide",
                role["metadata"]["name"]
            );
        }
    }
}

#[test]
fn the_controller_deployment_is_restricted_and_probed() {
    for dir in ["base", "overlays/example"] {
        let docs = render(dir);
        let kinds: BTreeSet<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
        assert!(
            kinds.contains("CustomResourceDefinition") && kinds.contains("Namespace"),
            "{dir}: {kinds:?}"
        );
        let deployment = docs
            .iter()
            .find(|d| d["kind"] == "Deployment")
            .expect("controller Deployment");
        let pod = &deployment["spec"]["template"]["spec"];
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
        assert_eq!(
            pod["securityContext"]["seccompProfile"]["type"],
            "RuntimeDefault"
        );
        let c = &pod["containers"][0];
        assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
        assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
        assert_eq!(
            strings(&c["securityContext"]["capabilities"]["drop"]),
            ["ALL"]
        );
        assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
        assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
        assert!(
            c["resources"]["limits"]["memory"].is_string()
                && c["resources"]["requests"]["cpu"].is_string()
        );
        let env: Vec<String> = c["env"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["name"].as_str().map(str::to_string))
            .collect();
        for needed in ["VERTICE_AGENT_IMAGE", "POD_NAME", "POD_NAMESPACE"] {
            assert!(env.contains(&needed.to_string()), "{dir}: {needed} missing");
        }
        assert!(
            c["image"].as_str().is_some_and(|i| i.contains(':')),
            "{dir}: the image is pinned"
        );
    }
}

#[test]
fn every_example_becomes_a_cron_job_whose_secrets_exist() {
    let dir = deploy_dir().join("examples");
    let defaults = JobDefaults {
        agent_image: "ghcr.io/vertice/agent:0.1.0".into(),
        pushgateway_url: None,
    };
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("examples").flatten() {
        let text = std::fs::read_to_string(entry.path()).expect("read");
        let docs: Vec<Value> = serde_saphyr::from_multiple(&text).expect("yaml");
        let secrets: BTreeSet<(String, String)> = docs
            .iter()
            .filter(|d| d["kind"] == "Secret")
            .flat_map(|d| {
                let name = d["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                d["stringData"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(move |(k, _)| (name.clone(), k.clone()))
            })
            .collect();
        for doc in docs.iter().filter(|d| d["kind"] == "VerticeBackup") {
            let mut doc = doc.clone();
            doc["metadata"]["uid"] = Value::from("00000000-0000-4000-8000-000000000000");
            let backup: VerticeBackup = serde_json::from_value(doc).expect("VerticeBackup");
            let cron_job = desired(&backup, &defaults)
                .unwrap_or_else(|e| panic!("{}: {e}", entry.path().display()));
            let pod = cron_job
                .spec
                .job_template
                .spec
                .expect("job")
                .template
                .spec
                .expect("pod");
            for env in pod.containers[0].env.iter().flatten() {
                if let Some(r) = env
                    .value_from
                    .as_ref()
                    .and_then(|v| v.secret_key_ref.as_ref())
                {
                    assert!(
                        secrets.contains(&(r.name.clone(), r.key.clone())),
                        "{}: {}/{} missing",
                        entry.path().display(),
                        r.name,
                        r.key
                    );
                }
            }
            for volume in pod.volumes.iter().flatten() {
                for item in volume
                    .secret
                    .as_ref()
                    .and_then(|s| s.items.clone())
                    .into_iter()
                    .flatten()
                {
                    let name = volume
                        .secret
                        .as_ref()
                        .and_then(|s| s.secret_name.clone())
                        .unwrap_or_default();
                    assert!(
                        secrets.contains(&(name.clone(), item.key.clone())),
                        "{}: {name}/{} missing",
                        entry.path().display(),
                        item.key
                    );
                }
            }
            seen += 1;
        }
    }
    assert!(seen >= 3);
}
