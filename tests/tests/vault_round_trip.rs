//! Vault (OpenBao with raft storage): snapshot backup and restore on every
//! store, into the same cluster and into a new one.

use vertice_tests::{Agent, OpenBao, TestStore};

fn round_trip(store: &TestStore) {
    let bao = OpenBao::start();
    bao.put_secret("app/db", "password", "before-backup");
    let agent = Agent::new();
    let mut env = store.env();
    env.extend(bao.env());
    let url = store.url("vault");

    let backup = agent.run(
        &[
            "backup",
            "--source",
            &bao.address(),
            "--source-kind",
            "vault",
            "--to",
            &url,
        ],
        &env,
    );
    backup.assert_ok();
    let listed = agent.run(&["list", "--from", &url, "--output", "json"], &env);
    let rows: serde_json::Value = serde_json::from_str(&listed.stdout).expect("json");
    assert_eq!(rows[0]["source_kind"], "vault", "{rows}");
    assert_eq!(rows[0]["name"], "vault", "{rows}");
    agent.run(&["verify", "--from", &url], &env).assert_ok();

    // Changed after the backup, then rolled back by the restore.
    bao.put_secret("app/db", "password", "after-backup");
    bao.put_secret("app/new", "k", "v");
    agent
        .run(
            &[
                "restore",
                "--from",
                &url,
                "--to",
                &bao.address(),
                "--target-kind",
                "vault",
            ],
            &env,
        )
        .assert_ok();
    bao.unseal();
    assert_eq!(
        bao.get_secret("app/db", "password").as_deref(),
        Some("before-backup")
    );
    assert_eq!(bao.get_secret("app/new", "k"), None);

    // Into another cluster: refused without --force, installed with it; the
    // new cluster then answers to the old cluster's token and keys.
    let mut other = OpenBao::start();
    let mut other_env = store.env();
    other_env.extend(other.env());
    let refused = agent.run(
        &[
            "restore",
            "--from",
            &url,
            "--to",
            &other.address(),
            "--target-kind",
            "vault",
        ],
        &other_env,
    );
    assert_ne!(refused.code, 0, "{}", refused.all());
    agent
        .run(
            &[
                "restore",
                "--from",
                &url,
                "--to",
                &other.address(),
                "--target-kind",
                "vault",
                "--force",
            ],
            &other_env,
        )
        .assert_ok();
    other.root_token = bao.root_token.clone();
    other.unseal_key = bao.unseal_key.clone();
    other.unseal();
    assert_eq!(
        other.get_secret("app/db", "password").as_deref(),
        Some("before-backup")
    );
}

vertice_tests::on_every_store!(round_trip);

#[test]
fn vault_errors_name_the_fix() {
    let bao = OpenBao::start();
    let store = TestStore::file();
    let agent = Agent::new();
    let url = store.url("v");
    // No token at all.
    let out = agent.run(
        &[
            "backup",
            "--source",
            &bao.address(),
            "--source-kind",
            "vault",
            "--to",
            &url,
        ],
        &[],
    );
    out.assert_code(2);
    assert!(out.stderr.contains("VAULT_TOKEN"), "{}", out.stderr);
    // A wrong token: refused, named, and never echoed.
    let wrong = "s.wrong-token-7d1f";
    let out = agent.run(
        &[
            "backup",
            "--source",
            &bao.address(),
            "--source-kind",
            "vault",
            "--to",
            &url,
        ],
        &[("VAULT_TOKEN", wrong.to_string())],
    );
    assert_ne!(out.code, 0);
    assert!(!out.all().contains(wrong), "{}", out.all());
    // http:// without the kind.
    let out = agent.run(
        &["backup", "--source", &bao.address(), "--to", &url],
        &bao.env(),
    );
    out.assert_code(2);
    assert!(out.stderr.contains("--source-kind vault"), "{}", out.stderr);
    // Sealed: said so, with the fix, not "is the server using raft storage?".
    bao.call("PUT", "/v1/sys/seal", None);
    let source = bao.address();
    let args = [
        "backup",
        "--source",
        &source,
        "--source-kind",
        "vault",
        "--to",
        &url,
    ];
    let out = agent.run(&args, &bao.env());
    out.assert_code(1);
    assert!(
        out.stderr.contains("is sealed") && out.stderr.contains("unseal it"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("raft storage"), "{}", out.stderr);
    assert!(store.keys("").iter().all(|k| !k.ends_with("manifest.json")));
}

/// Kubernetes auth: the pod's service-account token is exchanged for a Vault
/// token (real OpenBao; only the Kubernetes TokenReview it calls is a
/// stand-in), and a token for another service account is refused.
#[test]
fn kubernetes_auth_backs_up_without_a_vault_token() {
    use vertice_tests::token_review::{service_account_jwt, TokenReview};
    let bao = OpenBao::start();
    let review = TokenReview::start("db", "backup", "uid-1");
    bao.enable_kubernetes_auth(&review.url(), "vertice-backup", "db", "backup");
    let store = TestStore::file();
    let agent = Agent::new();
    let url = store.url("k8s");
    let dir = tempfile::tempdir().expect("tempdir");
    let jwt_file = dir.path().join("token");
    let jwt = service_account_jwt("db", "backup", "uid-1");
    std::fs::write(&jwt_file, &jwt).expect("jwt");
    let jwt_arg = jwt_file.display().to_string();
    let source = bao.address();
    let args = [
        "backup",
        "--source",
        &source,
        "--source-kind",
        "vault",
        "--to",
        &url,
        "--vault-k8s-role",
        "vertice-backup",
        "--vault-k8s-jwt-file",
        &jwt_arg,
    ];
    let ok = agent.run(&args, &[("VERTICE_LOG", "debug".to_string())]);
    ok.assert_ok();
    assert!(
        !ok.all().contains(&jwt),
        "the service-account token must not be logged"
    );

    // Another service account's token: the role does not admit it.
    std::fs::write(&jwt_file, service_account_jwt("db", "intruder", "uid-1")).expect("jwt");
    let refused = agent.run(&args, &[]);
    refused.assert_code(2);
    assert!(
        refused.stderr.contains("Kubernetes login"),
        "{}",
        refused.stderr
    );
    assert_eq!(
        store
            .keys("k8s/")
            .iter()
            .filter(|k| k.ends_with("manifest.json"))
            .count(),
        1
    );
}
