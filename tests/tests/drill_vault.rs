//! `vertice-agent drill` of Vault / OpenBao raft snapshots against a real
//! OpenBao: the snapshot is checked whole and restored into a throwaway
//! server that is gone afterwards, and a corrupted snapshot is refused.

use vertice_tests::drill::{check, left_in, passed};
use vertice_tests::summary;
use vertice_tests::{Agent, OpenBao, TestStore};

#[test]
fn a_vault_snapshot_is_checked_whole_and_corruption_is_refused() {
    let bao = OpenBao::start();
    bao.put_secret("app/db", "password", "s3cret-value");
    let store = TestStore::file();
    let agent = Agent::new();
    let mut env = store.env();
    env.extend(bao.env());
    let url = store.url("vault");
    agent
        .run(
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
        )
        .assert_ok();
    let log = tempfile::NamedTempFile::new().expect("log");
    let log_path = log.path().to_string_lossy().into_owned();
    let tmp = tempfile::tempdir().expect("tmp");
    let ok = agent.run(
        &["drill", "--from", &url, "--termination-log", &log_path],
        &[("TMPDIR", tmp.path().display().to_string())],
    );
    ok.assert_ok();
    let summary = summary::read(log.path());
    // bao is on PATH: the snapshot is installed into a throwaway server.
    passed(
        &summary,
        &[
            "verify",
            "snapshot archive",
            "checksums",
            "metadata",
            "restore",
            "snapshot state installed",
        ],
    );
    let report = &summary["drill"];
    assert!(
        report["target"]
            .as_str()
            .is_some_and(|t| t.starts_with("a throwaway ") && t.ends_with(" on loopback")),
        "{report}"
    );
    assert_eq!(report["cleaned_up"], true, "{report}");
    assert!(
        left_in(tmp.path()).is_empty(),
        "the throwaway server's directory is gone"
    );
    let text = format!("{}{}{summary}", ok.stdout, ok.stderr);
    assert!(
        !text.contains(&bao.root_token) && !text.contains(&bao.unseal_key),
        "the source's token and key appear nowhere"
    );

    // Without a server: the structure alone.
    agent
        .run(
            &[
                "drill",
                "--from",
                &url,
                "--bao-server",
                "none",
                "--termination-log",
                &log_path,
            ],
            &[],
        )
        .assert_ok();
    let summary = summary::read(log.path());
    assert_eq!(
        summary["drill"]["target"], "raft snapshot structure",
        "{summary}"
    );
    assert_eq!(summary["drill"]["checks_passed"], 4, "{summary}");

    let key = store
        .keys("vault/")
        .into_iter()
        .find(|k| !k.ends_with("manifest.json"))
        .expect("artifact");
    let mut bytes = store.read(&key);
    let at = bytes.len() / 3;
    bytes[at] ^= 0x01;
    store.overwrite(&key, &bytes);
    let bad = agent.run(
        &["drill", "--from", &url, "--termination-log", &log_path],
        &[],
    );
    bad.assert_code(1);
    let summary = summary::read(log.path());
    assert_eq!(summary["error_category"], "integrity", "{summary}");
    assert_eq!(check(&summary, "verify")["ok"], false);
}
