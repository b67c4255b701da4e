//! Passwords reach the databases only through the environment: never in
//! output, logs, manifests, summaries or child-process arguments, even when
//! a run fails.

use vertice_tests::fixtures::fill_redis;
use vertice_tests::{write_script, Agent, Postgres, RedisServer, TestStore};

const PG_PASSWORD: &str = "pg-Very-Secret-4b8e91";
const REDIS_PASSWORD: &str = "redis-Very-Secret-c07d2a";

fn assert_absent(haystack: &str, secret: &str, what: &str) {
    assert!(
        !haystack.contains(secret),
        "the password appears in {what}:\n{haystack}"
    );
}

#[test]
fn passwords_never_leak() {
    let store = TestStore::file();
    let TestStore::File { dir: store_dir } = &store else {
        unreachable!()
    };
    let pg = Postgres::start_with_password(PG_PASSWORD);
    pg.create_database("app");
    pg.psql(
        "app",
        "CREATE TABLE t AS SELECT g FROM generate_series(1, 100) g",
    );
    let redis = RedisServer::start(Some(REDIS_PASSWORD));
    fill_redis(&mut redis.connection());

    // Stand-ins that record every argument, then run the real tools.
    let tools = tempfile::tempdir().expect("tempdir");
    let args_log = tools.path().join("args.log");
    let wrap = |name: &str| {
        write_script(
            tools.path(),
            name,
            &format!(
                "echo \"{name} $*\" >> '{}'\nexec '{}' \"$@\"",
                args_log.display(),
                pg.pg_bin(name).display()
            ),
        )
        .to_string_lossy()
        .into_owned()
    };
    let pg_dump = wrap("pg_dump");
    let pg_restore = wrap("pg_restore");
    let password_file = tools.path().join("pgpass");
    std::fs::write(&password_file, format!("{PG_PASSWORD}\n")).expect("password file");
    let password_file = password_file.to_string_lossy().into_owned();
    let summary = tools.path().join("summary");
    let summary_arg = summary.to_string_lossy().into_owned();
    let url = store.url("");
    let agent = Agent::new();
    let debug = ("VERTICE_LOG", "debug".to_string());
    let mut outputs = String::new();
    let mut summaries = String::new();
    let mut record = |out: vertice_tests::agent::RunOutput| {
        outputs.push_str(&out.all());
        summaries.push_str(&std::fs::read_to_string(&summary).unwrap_or_default());
        out
    };

    // Password from the environment.
    record(agent.run(
        &[
            "backup",
            "--source",
            &pg.url("app"),
            "--to",
            &url,
            "--pg-dump",
            &pg_dump,
            "--termination-log",
            &summary_arg,
        ],
        &[("PGPASSWORD", PG_PASSWORD.into()), debug.clone()],
    ))
    .assert_ok();
    // Password from a file, restore.
    pg.create_database("copy");
    record(agent.run(
        &[
            "restore",
            "--from",
            &url,
            "--to",
            &pg.url("copy"),
            "--pg-restore",
            &pg_restore,
            "--password-file",
            &password_file,
            "--termination-log",
            &summary_arg,
        ],
        std::slice::from_ref(&debug),
    ))
    .assert_ok();
    assert_eq!(pg.psql("copy", "SELECT count(*) FROM t"), "100");
    // A failing restore (the target exists, so pg_restore fails) still leaks nothing.
    record(agent.run(
        &[
            "restore",
            "--from",
            &url,
            "--to",
            &pg.url("copy"),
            "--pg-restore",
            &pg_restore,
            "--password-file",
            &password_file,
            "--termination-log",
            &summary_arg,
        ],
        std::slice::from_ref(&debug),
    ))
    .assert_code(1);
    // A wrong password is rejected without echoing it.
    record(agent.run(
        &[
            "backup",
            "--source",
            &pg.url("app"),
            "--to",
            &url,
            "--termination-log",
            &summary_arg,
        ],
        &[
            ("PGPASSWORD", "wrong-Secret-Guess-77".into()),
            debug.clone(),
        ],
    ))
    .assert_code(2);
    // Redis: backup and restore with a password.
    record(agent.run(
        &[
            "backup",
            "--source",
            &redis.url(),
            "--to",
            &url,
            "--termination-log",
            &summary_arg,
        ],
        &[("REDIS_PASSWORD", REDIS_PASSWORD.into()), debug.clone()],
    ))
    .assert_ok();
    let target = RedisServer::start(Some(REDIS_PASSWORD));
    record(agent.run(
        &[
            "restore",
            "--from",
            &url,
            "--name",
            "redis",
            "--to",
            &target.url(),
            "--termination-log",
            &summary_arg,
        ],
        &[("REDISCLI_AUTH", REDIS_PASSWORD.into()), debug],
    ))
    .assert_ok();

    assert!(
        outputs.contains("DEBUG") || outputs.contains("INFO"),
        "logs were captured"
    );
    let child_args = std::fs::read_to_string(&args_log).expect("tools ran");
    assert!(
        child_args.contains("pg_dump --format=custom"),
        "{child_args}"
    );
    let mut stored = String::new();
    for key in store.keys("") {
        stored.push_str(&String::from_utf8_lossy(
            &std::fs::read(store_dir.path().join(&key)).expect("read"),
        ));
    }
    for secret in [PG_PASSWORD, REDIS_PASSWORD, "wrong-Secret-Guess-77"] {
        assert_absent(&outputs, secret, "the agent's output and logs");
        assert_absent(&summaries, secret, "the run summaries");
        assert_absent(&child_args, secret, "child-process arguments");
        assert_absent(&stored, secret, "the stored manifests and artifacts");
    }
}

/// Cloud and Vault credentials: the Azure account key, the SAS the agent
/// signs from it, and a Vault token never show in output, logs or summaries,
/// on success or on failure.
#[test]
fn store_and_vault_credentials_never_leak() {
    use vertice_tests::azurite::ACCOUNT_KEY;
    use vertice_tests::OpenBao;
    let azure = TestStore::azure();
    let bao = OpenBao::start();
    let agent = Agent::new();
    let debug = ("VERTICE_LOG", "debug".to_string());
    let tools = tempfile::tempdir().expect("tempdir");
    let summary = tools.path().join("summary");
    let summary_arg = summary.to_string_lossy().into_owned();
    let url = azure.url("vault");
    let mut env = azure.env();
    env.extend(bao.env());
    env.push(debug.clone());
    let mut outputs = String::new();
    let mut run = |args: &[&str], env: &[(&str, String)]| {
        let mut full: Vec<&str> = args.to_vec();
        full.extend(["--termination-log", &summary_arg]);
        let out = agent.run(&full, env);
        outputs.push_str(&out.all());
        outputs.push_str(&std::fs::read_to_string(&summary).unwrap_or_default());
        out.code
    };
    let source = bao.address();
    let backup = [
        "backup",
        "--source",
        &source,
        "--source-kind",
        "vault",
        "--to",
        &url,
    ];
    assert_eq!(run(&backup, &env), 0);
    assert_eq!(run(&["verify", "--from", &url], &env), 0);
    // A wrong account key and a bogus SAS fail, without echoing either.
    let wrong_key = "V3JvbmdLZXlXcm9uZ0tleVdyb25nS2V5V3JvbmdLZXk=";
    let mut bad = azure.env();
    bad.retain(|(k, _)| *k != "AZURE_STORAGE_KEY");
    bad.extend([("AZURE_STORAGE_KEY", wrong_key.to_string()), debug.clone()]);
    bad.extend(bao.env());
    assert_eq!(run(&backup, &bad), 2);
    let bogus_sas = "sv=2022-11-02&ss=b&srt=co&sp=rl&se=2099-01-01T00:00:00Z&sig=Qm9ndXNTaWduYXR1cmVCb2d1cw%3D%3D";
    let mut sas = azure.env();
    sas.retain(|(k, _)| *k != "AZURE_STORAGE_KEY");
    sas.extend([
        ("AZURE_STORAGE_SAS_TOKEN", bogus_sas.to_string()),
        debug.clone(),
    ]);
    assert_eq!(run(&["list", "--from", &url], &sas), 2);
    // A wrong Vault token.
    let mut wrong_token = azure.env();
    wrong_token.extend([("VAULT_TOKEN", "s.wrongtoken-91f3".to_string()), debug]);
    assert_ne!(run(&backup, &wrong_token), 0);

    let signed = vertice_agent::store::azure_sas::account_sas(
        vertice_tests::azurite::ACCOUNT,
        ACCOUNT_KEY,
        false,
        chrono::Utc::now(),
    )
    .expect("sas");
    let signature = signed.rsplit("sig=").next().expect("sig").to_string();
    assert_absent(&outputs, ACCOUNT_KEY, "output (account key)");
    assert_absent(&outputs, &ACCOUNT_KEY[..20], "output (account key prefix)");
    assert_absent(&outputs, wrong_key, "output (wrong key)");
    assert_absent(
        &outputs,
        "Qm9ndXNTaWduYXR1cmVCb2d1cw",
        "output (SAS signature)",
    );
    assert_absent(&outputs, &signature, "output (signed SAS)");
    // Whatever SAS appears in a message must have its signature redacted.
    for (at, _) in outputs.match_indices("sig=") {
        let value: String = outputs[at + 4..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || "%+/=".contains(*c))
            .collect();
        assert!(
            value.len() < 16 || value.to_uppercase().contains("REDACTED"),
            "a SAS signature appears in the output: sig={value}"
        );
    }
    assert_absent(&outputs, &bao.root_token, "output (Vault token)");
    assert_absent(&outputs, "s.wrongtoken-91f3", "output (wrong Vault token)");
}

/// An Azure connection string (what the portal and Azurite hand out) is
/// enough on its own, and neither it nor its key is ever echoed.
#[test]
fn azure_connection_string_works_and_stays_secret() {
    use vertice_tests::azurite::{ACCOUNT, ACCOUNT_KEY};
    let azure = TestStore::azure();
    let TestStore::Azure { server, .. } = &azure else {
        unreachable!()
    };
    let redis = RedisServer::start(Some(REDIS_PASSWORD));
    fill_redis(&mut redis.connection());
    let agent = Agent::new();
    let connection = format!(
        "DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};BlobEndpoint={};",
        server.endpoint()
    );
    let env = vec![
        ("AZURE_STORAGE_CONNECTION_STRING", connection.clone()),
        ("REDIS_PASSWORD", REDIS_PASSWORD.to_string()),
        ("VERTICE_LOG", "debug".to_string()),
    ];
    let url = azure.url("cs");
    let backup = agent.run(&["backup", "--source", &redis.url(), "--to", &url], &env);
    backup.assert_ok();
    let listed = agent.run(&["list", "--from", &url], &env);
    listed.assert_ok();
    assert!(listed.stdout.contains("redis"), "{}", listed.stdout);
    // The string is for another account than the URL names.
    let other = azure.url("cs").replace(ACCOUNT, "someoneelse");
    let refused = agent.run(&["list", "--from", &other], &env);
    refused.assert_code(2);
    assert!(
        refused.stderr.contains("AZURE_STORAGE_CONNECTION_STRING"),
        "{}",
        refused.stderr
    );
    for out in [&backup, &listed, &refused] {
        assert_absent(&out.all(), ACCOUNT_KEY, "output (connection string key)");
        assert_absent(&out.all(), &ACCOUNT_KEY[..24], "output (key prefix)");
    }
}
