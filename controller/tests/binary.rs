//! The controller binary's edges: flags and a clear error without a cluster.

use std::process::Command;

fn controller() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vertice-controller"))
}

#[test]
fn help_lists_the_flags() {
    let out = controller().arg("--help").output().expect("run");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--agent-image",
        "--pushgateway-url",
        "--leader-election",
        "--listen",
        "--watch-namespace",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help");
    }
}

#[test]
fn the_agent_image_is_required() {
    let out = controller()
        .env_remove("VERTICE_AGENT_IMAGE")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--agent-image"));
}

#[test]
fn without_a_cluster_it_fails_with_a_hint() {
    let home = tempfile::tempdir().expect("tempdir");
    let out = controller()
        .args(["--agent-image", "agent:1", "--listen", "127.0.0.1:0"])
        .env("HOME", home.path())
        .env("KUBECONFIG", home.path().join("missing"))
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .expect("run");
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Kubernetes client"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
