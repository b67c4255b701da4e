//! Every kubectl command the documentation prints runs against the real API
//! server: README.md, monitoring/RUNBOOK.md, the Helm NOTES and the alert
//! descriptions. Placeholders (NS, NAME, <name>, `{{ $labels.… }}`) become
//! real objects this test creates; commands that change something run with
//! `--dry-run=server`, so the server still checks them whole. A command the
//! server refuses fails the test with the file and line it came from.

use std::path::Path;
use std::process::Command;

use serde_json::json;
use vertice_tests::kube::cluster::{workspace, CONTROLLER_NAMESPACE};
use vertice_tests::kube::control_plane::kubectl_binary;
use vertice_tests::kube::TestCluster;

/// The documents whose kubectl commands are checked, and whether their
/// commands sit in backticks only (alert texts, NOTES: no code fences).
const DOCUMENTS: &[&str] = &[
    "README.md",
    "monitoring/RUNBOOK.md",
    "deploy/helm/vertice/templates/NOTES.txt",
    "monitoring/alerts/vertice.rules.yaml",
    "deploy/helm/vertice/files/vertice.rules.yaml",
];

/// Commands that need what the harness does not have, with the reason.
const SKIPPED: &[(&str, &str)] = &[
    (
        "kubectl logs",
        "the local kubelet serves no container logs to the API server",
    ),
    (
        "kubectl get pods.metrics.k8s.io",
        "no metrics-server (metrics.k8s.io) behind this API server",
    ),
];

/// One command and where the documentation prints it.
#[derive(Debug, Clone)]
struct DocCommand {
    file: &'static str,
    line: usize,
    text: String,
}

/// `kubectl …` lines of fenced code blocks and `kubectl …` spans in
/// backticks; NOTES.txt prints its commands on indented lines.
fn extract(file: &'static str, text: &str) -> Vec<DocCommand> {
    let mut out = Vec::new();
    let mut fenced = false;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.starts_with("```") {
            fenced = !fenced;
            continue;
        }
        let whole_line = fenced || file.ends_with("NOTES.txt");
        if whole_line && trimmed.starts_with("kubectl ") {
            out.push(DocCommand {
                file,
                line: i + 1,
                text: trimmed.to_string(),
            });
            continue;
        }
        let mut rest = line;
        while let Some(start) = rest.find("`kubectl") {
            let after = &rest[start + 1..];
            let Some(end) = after.find('`') else { break };
            out.push(DocCommand {
                file,
                line: i + 1,
                text: after[..end].to_string(),
            });
            rest = &after[end + 1..];
        }
    }
    out
}

/// The objects placeholders stand for, by the kind a command names.
struct Objects {
    namespace: &'static str,
    name: &'static str,
}

fn objects_for(command: &str) -> Objects {
    let words: Vec<&str> = command.split_whitespace().collect();
    let names = |kinds: &[&str]| words.iter().any(|w| kinds.contains(w));
    if names(&["vsc", "vscaler", "verticescaler", "verticescalers"]) {
        Objects {
            namespace: "shop",
            name: "workers",
        }
    } else if names(&[
        "vfo",
        "vf",
        "vfailover",
        "verticefailover",
        "verticefailovers",
    ]) {
        Objects {
            namespace: "orders",
            name: "orders-db",
        }
    } else {
        Objects {
            namespace: "shop",
            name: "orders",
        }
    }
}

/// The command with its placeholders filled, any `| jq …` tail dropped, a
/// namespace where the docs rely on the current one, and `--dry-run=server`
/// on what would change something.
fn runnable(command: &str, kubeconfig: &Path) -> String {
    let objects = objects_for(command);
    let mut text = command
        .split(" | ")
        .next()
        .unwrap_or(command)
        .replace(
            "--kubeconfig vertice-dev.kubeconfig",
            &format!("--kubeconfig {}", kubeconfig.display()),
        )
        .replace("{{ .Release.Namespace }}", CONTROLLER_NAMESPACE)
        .replace("{{ $labels.namespace }}", objects.namespace)
        .replace("{{ $labels.backup }}", objects.name)
        .replace("{{ $labels.scaler }}", objects.name)
        .replace("{{ $labels.failover }}", objects.name)
        .replace("<ns>", objects.namespace)
        .replace("<name>", objects.name)
        .replace("SELECTOR", "app=orders");
    text = text
        .split(' ')
        .map(|w| match w {
            "NS" => objects.namespace,
            "NAME" => objects.name,
            w => w,
        })
        .collect::<Vec<_>>()
        .join(" ");
    let words: Vec<&str> = text.split_whitespace().collect();
    // The verb: the first word after `kubectl` that is no flag or flag value.
    let verb = words
        .iter()
        .enumerate()
        .skip(1)
        .find(|(i, w)| !w.starts_with('-') && words[i - 1] != "--kubeconfig")
        .map_or("", |(_, w)| *w);
    let mutating = [
        "apply", "annotate", "label", "create", "delete", "patch", "scale", "edit",
    ]
    .contains(&verb);
    let client_only = ["kustomize", "explain", "version"].contains(&verb);
    let mut flags = Vec::new();
    if mutating {
        flags.push("--dry-run=server".to_string());
    }
    // Manifests name their own namespace; other commands rely on the
    // current one, which here is the placeholder objects'.
    let namespaced = words.iter().any(|w| {
        ["-n", "-A", "--all-namespaces", "-f", "-k"].contains(w) || w.starts_with("--namespace")
    });
    if !namespaced && !client_only {
        flags.push(format!("--namespace={}", objects.namespace));
    }
    if flags.is_empty() {
        return text;
    }
    text.replacen(
        &format!(" {verb}"),
        &format!(" {verb} {}", flags.join(" ")),
        1,
    )
}

fn skipped(command: &str) -> Option<&'static str> {
    SKIPPED
        .iter()
        .find(|(prefix, _)| command.starts_with(prefix))
        .map(|(_, why)| *why)
}

#[test]
fn extraction_finds_fenced_lines_and_backtick_spans() {
    let text = "see `kubectl get vbk -A` and `kubectl describe vsc`\n```\nkubectl get vfo -n x # c\n```\nkubectl in prose\n";
    let found: Vec<String> = extract("README.md", text)
        .into_iter()
        .map(|c| c.text)
        .collect();
    assert_eq!(
        found,
        [
            "kubectl get vbk -A",
            "kubectl describe vsc",
            "kubectl get vfo -n x # c"
        ]
    );
}

#[test]
fn placeholders_become_objects_and_writes_dry_runs() {
    let kubeconfig = Path::new("/k");
    assert_eq!(
        runnable("kubectl annotate vbk NAME vertice.io/run-now=1", kubeconfig),
        "kubectl annotate --dry-run=server --namespace=shop vbk orders vertice.io/run-now=1"
    );
    assert_eq!(
        runnable(
            "kubectl get vfo -n {{ $labels.namespace }} {{ $labels.failover }} -o yaml",
            kubeconfig
        ),
        "kubectl get vfo -n orders orders-db -o yaml"
    );
    assert_eq!(
        runnable(
            "kubectl get vsc -n shop workers -o jsonpath='{.status.lastDecision}' | jq   # why",
            kubeconfig
        ),
        "kubectl get vsc -n shop workers -o jsonpath='{.status.lastDecision}'"
    );
    assert_eq!(
        runnable(
            "kubectl --kubeconfig vertice-dev.kubeconfig get vbk -A",
            kubeconfig
        ),
        "kubectl --kubeconfig /k get vbk -A"
    );
    assert_eq!(
        runnable("kubectl apply -f deploy/examples/x.yaml", kubeconfig),
        "kubectl apply --dry-run=server -f deploy/examples/x.yaml"
    );
}

/// The objects the documentation's commands name: the README's examples
/// (backup shop/orders, scaler shop/workers, failover orders/orders-db and
/// its VirtualService), plus a Secret and a Deployment named as the
/// placeholders are filled.
fn create_objects(cluster: &TestCluster) {
    vertice_tests::kube::istio::install_virtual_service_crd(cluster);
    let manifests = [
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}),
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "orders"}}),
        json!({"apiVersion": "v1", "kind": "Secret",
               "metadata": {"name": "orders", "namespace": "shop"},
               "stringData": {"password": "x"}}),
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "orders", "namespace": "shop"},
               "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "orders"}},
                        "template": {"metadata": {"labels": {"app": "orders"}},
                                     "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}),
    ];
    let list = json!({"apiVersion": "v1", "kind": "List", "items": manifests});
    let path = cluster.plane.dir.path().join("doc-objects.json");
    std::fs::write(&path, list.to_string()).expect("write objects");
    cluster.kubectl(&["apply", "--server-side", "-f", &path.display().to_string()]);
    for example in [
        "deploy/examples/postgres-to-s3.yaml",
        "deploy/examples/scaler-business-hours.yaml",
        "deploy/examples/failover-postgres-two-regions.yaml",
    ] {
        let file = workspace().join(example);
        cluster.kubectl(&["apply", "--server-side", "-f", &file.display().to_string()]);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_kubectl_command_in_the_docs_runs_against_the_api_server() {
    let cluster = TestCluster::start().await;
    create_objects(&cluster);
    // The controller holds the Lease the runbook reads.
    let _controller = cluster.start_controller("docs", &[]).await;

    // `kubectl` on PATH is the harness's, KUBECONFIG the admin's; the
    // commands run from the workspace, as the docs' relative paths expect.
    let bin_dir = tempfile::tempdir().expect("tempdir");
    std::os::unix::fs::symlink(kubectl_binary(), bin_dir.path().join("kubectl"))
        .expect("link kubectl");
    let path = format!(
        "{}:{}",
        bin_dir.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let kubeconfig = cluster.plane.admin_kubeconfig().to_path_buf();

    let mut commands = Vec::new();
    for file in DOCUMENTS {
        let text = std::fs::read_to_string(workspace().join(file))
            .unwrap_or_else(|e| panic!("read {file}: {e}"));
        commands.extend(extract(file, &text));
    }
    assert!(commands.len() > 30, "too few commands found: {commands:#?}");

    let mut refused = Vec::new();
    let (mut ran, mut skips) = (0, Vec::new());
    for command in &commands {
        if let Some(why) = skipped(&command.text) {
            skips.push(format!(
                "{}:{} `{}`: {why}",
                command.file, command.line, command.text
            ));
            continue;
        }
        let run = runnable(&command.text, &kubeconfig);
        let out = Command::new("sh")
            .arg("-c")
            .arg(&run)
            .current_dir(workspace())
            .env("PATH", &path)
            .env("KUBECONFIG", &kubeconfig)
            .output()
            .expect("sh");
        ran += 1;
        if !out.status.success() {
            refused.push(format!(
                "{}:{}: `{}`\n  ran: {run}\n  {}",
                command.file,
                command.line,
                command.text,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    eprintln!(
        "ran {ran} documented kubectl commands; skipped {}:\n{}",
        skips.len(),
        skips.join("\n")
    );
    assert!(
        refused.is_empty(),
        "documented kubectl commands the API server refused:\n{}",
        refused.join("\n")
    );
}
