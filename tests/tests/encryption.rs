//! Client-side encryption with age: the backing-up side holds only public
//! keys; restore needs the identity, refuses a wrong one before touching the
//! target, and stock `age -d | zstd -d | pg_restore` restores the artifact.

use std::process::Command;

use vertice_tests::process::require_binary;
use vertice_tests::{Agent, Postgres, TestStore};

use vertice_tests::fixtures::age_keypair as keypair;

fn encrypted_backup(store: &TestStore) {
    let keys = tempfile::tempdir().expect("tempdir");
    let (ops_key, ops_public) = keypair(keys.path(), "ops.txt");
    let (dr_key, dr_public) = keypair(keys.path(), "dr.txt");
    let (stranger_key, _) = keypair(keys.path(), "stranger.txt");
    let recipients = keys.path().join("recipients.txt");
    std::fs::write(&recipients, format!("# disaster recovery\n{dr_public}\n")).expect("write");

    let pg = Postgres::start();
    pg.create_database("app");
    pg.psql(
        "app",
        "CREATE TABLE t (v text); INSERT INTO t SELECT 'row ' || g FROM generate_series(1, 5000) g",
    );
    let agent = Agent::new();
    let env = store.env_with("PGPASSWORD", &pg.password);
    let url = store.url("enc");
    let recipients_arg = format!("{ops_public},{}", recipients.display());
    let backup = agent.run(
        &[
            "backup",
            "--source",
            &pg.url("app"),
            "--to",
            &url,
            "--encrypt-to",
            &recipients_arg,
        ],
        &env,
    );
    backup.assert_ok();
    let id = backup.stdout.trim().to_string();

    let artifact = format!("enc/default/app/{id}/dump.pgdump.zst.age");
    let stored = store.read(&artifact);
    assert!(
        stored.starts_with(b"age-encryption.org/v1\n"),
        "stored as an age file"
    );
    let manifest = String::from_utf8(store.read(&format!("enc/default/app/{id}/manifest.json")))
        .expect("utf8");
    let parsed: serde_json::Value = serde_json::from_str(&manifest).expect("json");
    let encryption = &parsed["artifacts"][0]["encryption"];
    assert_eq!(encryption["scheme"], "age-x25519", "{manifest}");
    assert_eq!(
        encryption["recipient_fingerprints"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    for key_file in [&ops_key, &dr_key] {
        let secret = std::fs::read_to_string(key_file).expect("key");
        let secret = secret
            .lines()
            .find(|l| l.starts_with("AGE-SECRET-KEY-"))
            .expect("secret");
        assert!(!manifest.contains(secret) && !backup.all().contains(secret));
    }

    let listed = agent.run(&["list", "--from", &url, "--output", "json"], &env);
    let rows: serde_json::Value = serde_json::from_str(&listed.stdout).expect("json");
    assert_eq!(
        rows[0]["encrypted_to"].as_array().map(Vec::len),
        Some(2),
        "{rows}"
    );

    // verify without a key checks what it can; with a key, everything.
    agent.run(&["verify", "--from", &url], &env).assert_ok();
    let ops_key_arg = ops_key.display().to_string();
    agent
        .run(
            &["verify", "--from", &url, "--identity", &ops_key_arg],
            &env,
        )
        .assert_ok();

    // Restores: no key, the wrong key → refused before the target is touched.
    pg.create_database("target");
    let no_key = agent.run(
        &["restore", "--from", &url, "--to", &pg.url("target")],
        &env,
    );
    no_key.assert_code(2);
    assert!(no_key.stderr.contains("--identity"), "{}", no_key.stderr);
    let stranger_arg = stranger_key.display().to_string();
    let wrong = agent.run(
        &[
            "restore",
            "--from",
            &url,
            "--to",
            &pg.url("target"),
            "--identity",
            &stranger_arg,
        ],
        &env,
    );
    wrong.assert_code(2);
    assert!(
        wrong.stderr.contains("none of the keys"),
        "{}",
        wrong.stderr
    );
    assert_eq!(
        pg.psql(
            "target",
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        ),
        "0"
    );

    // Either recipient's key restores it.
    let dr_key_arg = dr_key.display().to_string();
    agent
        .run(
            &[
                "restore",
                "--from",
                &url,
                "--to",
                &pg.url("target"),
                "--identity",
                &dr_key_arg,
            ],
            &env,
        )
        .assert_ok();
    assert_eq!(pg.psql("target", "SELECT count(*) FROM t"), "5000");

    // No lock-in: age -d | zstd -d | pg_restore.
    require_binary("age", &[], "apt-get install age");
    let local = keys.path().join("artifact.age");
    std::fs::write(&local, &stored).expect("write");
    pg.create_database("stock");
    let script = format!(
        "age -d -i '{}' '{}' | zstd -dc | '{}' --single-transaction -h 127.0.0.1 -p {} -U postgres -d stock",
        ops_key.display(),
        local.display(),
        pg.pg_bin("pg_restore").display(),
        pg.port
    );
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .env("PGPASSWORD", &pg.password)
        .output()
        .expect("sh");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(pg.psql("stock", "SELECT count(*) FROM t"), "5000");

    // Damage in the encrypted bytes is caught by verify and restore.
    let mut damaged = stored.clone();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0x40;
    store.overwrite(&artifact, &damaged);
    let verify = agent.run(
        &["verify", "--from", &url, "--identity", &ops_key_arg],
        &env,
    );
    verify.assert_code(1);
}

vertice_tests::on_every_store!(encrypted_backup);

#[test]
fn bad_recipients_and_identities_are_named() {
    let store = TestStore::file();
    let agent = Agent::new();
    let url = store.url("");
    let out = agent.run(
        &[
            "backup",
            "--source",
            "postgres://u@127.0.0.1:1/db",
            "--to",
            &url,
            "--encrypt-to",
            "age1nope",
        ],
        &[],
    );
    out.assert_code(2);
    assert!(out.stderr.contains("--encrypt-to"), "{}", out.stderr);
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = "AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ";
    let out = agent.run(
        &[
            "backup",
            "--source",
            "postgres://u@127.0.0.1:1/db",
            "--to",
            &url,
            "--encrypt-to",
            secret,
        ],
        &[],
    );
    out.assert_code(2);
    assert!(
        !out.all().contains(&secret[16..]),
        "a secret key is never echoed: {}",
        out.all()
    );
    let bad = dir.path().join("key.txt");
    std::fs::write(&bad, "AGE-SECRET-KEY-1NOTVALIDBUTSECRET\n").expect("write");
    let out = agent.run(
        &[
            "verify",
            "--from",
            &url,
            "--identity",
            &bad.display().to_string(),
        ],
        &[],
    );
    out.assert_code(2);
    assert!(
        out.stderr.contains("--identity") && !out.all().contains("NOTVALIDBUTSECRET"),
        "{}",
        out.all()
    );
}
