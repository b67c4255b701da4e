//! After a backup: metrics in a real Pushgateway, notifications to Slack,
//! PagerDuty and webhook stand-ins and a real SMTP server, and pre/post hooks
//! on PostgreSQL, Redis and HTTP.

use std::path::Path;

use serde_json::{json, Value};
use vertice_tests::http_capture::HttpCapture;
use vertice_tests::ports::free_port;
use vertice_tests::pushgateway::Pushgateway;
use vertice_tests::smtp_sink::SmtpSink;
use vertice_tests::{Agent, Postgres, RedisServer};

const SLACK_TOKEN: &str = "T000-slack-Secret-3f9a";
const ROUTING_KEY: &str = "pd-routing-Secret-77c1";
const WEBHOOK_TOKEN: &str = "webhook-bearer-Secret-5b2e";

fn write_secret(dir: &Path, secret: &str, key: &str, value: &str) {
    std::fs::create_dir_all(dir.join(secret)).expect("mkdir");
    std::fs::write(dir.join(secret).join(key), format!("{value}\n")).expect("write secret");
}

fn secrets_dir(capture: &HttpCapture) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    write_secret(
        dir.path(),
        "alerts",
        "slack",
        &capture.url(&format!("/slack/services/{SLACK_TOKEN}")),
    );
    write_secret(dir.path(), "alerts", "pagerduty", ROUTING_KEY);
    write_secret(dir.path(), "alerts", "webhook", &capture.url("/webhook"));
    write_secret(
        dir.path(),
        "alerts",
        "bearer",
        &format!("Bearer {WEBHOOK_TOKEN}"),
    );
    dir
}

fn notifications(capture: &HttpCapture, smtp: &SmtpSink) -> String {
    json!({
        "slack": {"webhookUrlSecretRef": {"name": "alerts", "key": "slack"}},
        "pagerduty": {"routingKeySecretRef": {"name": "alerts", "key": "pagerduty"}, "url": capture.url("/pagerduty/v2/enqueue"), "severity": "critical"},
        "email": {"smtpHost": "127.0.0.1", "smtpPort": smtp.port, "tls": "None", "from": "vertice@example.com", "to": ["oncall@example.com", "dba@example.com"]},
        "webhook": {"urlSecretRef": {"name": "alerts", "key": "webhook"},
                    "headers": [{"name": "Authorization", "valueSecretRef": {"name": "alerts", "key": "bearer"}}]}
    })
    .to_string()
}

#[test]
fn metrics_and_notifications_follow_failure_and_recovery() {
    let pushgateway = Pushgateway::start();
    let capture = HttpCapture::start();
    let smtp = SmtpSink::start();
    let redis = RedisServer::start(None);
    let secrets = secrets_dir(&capture);
    let store = tempfile::tempdir().expect("store dir");
    let store_url = format!("file://{}", store.path().display());
    let summary_path = store.path().join("termination-log");
    let agent = Agent::new();
    let env = vec![
        ("VERTICE_PUSHGATEWAY_URL", pushgateway.url()),
        ("VERTICE_NOTIFICATIONS", notifications(&capture, &smtp)),
        ("VERTICE_SECRETS_DIR", secrets.path().display().to_string()),
        (
            "VERTICE_TERMINATION_LOG",
            summary_path.display().to_string(),
        ),
        ("VERTICE_LOG", "debug".to_string()),
    ];
    let backup = |source: &str| {
        agent.run(
            &[
                "backup",
                "--source",
                source,
                "--to",
                &store_url,
                "--namespace",
                "shop",
                "--name",
                "sessions",
            ],
            &env,
        )
    };
    let mut outputs = Vec::new();

    // 1. A success: metrics pushed; nothing to tell except resolving PagerDuty.
    let first = backup(&redis.url());
    first.assert_ok();
    let group = pushgateway.group("shop", "sessions");
    assert_eq!(group.get("vertice_backup_total"), Some(&1.0), "{group:?}");
    assert_eq!(group.get("vertice_backup_success_total"), Some(&1.0));
    assert_eq!(group.get("vertice_backup_failure_total"), Some(&0.0));
    let size = group["vertice_backup_size_bytes"];
    let last_success = group["vertice_backup_last_success_timestamp_seconds"];
    assert!(size > 0.0 && last_success > 1.7e9, "{group:?}");
    assert!(group["vertice_backup_duration_seconds"] > 0.0);
    let scraped = pushgateway.scrape();
    assert!(
        scraped.contains("# TYPE vertice_backup_total counter"),
        "{scraped}"
    );
    assert!(scraped.contains(r#"vertice_backup_success_total{backup="sessions",instance="",job="vertice-backup",namespace="shop"} 1"#), "{scraped}");
    assert!(
        capture.requests_to("/slack").is_empty(),
        "a plain success is not news"
    );
    assert!(capture.requests_to("/webhook").is_empty());
    let resolves = capture.requests_to("/pagerduty");
    assert_eq!(resolves.len(), 1);
    assert_eq!(resolves[0].json()["event_action"], "resolve");
    assert!(smtp.messages().is_empty());
    outputs.push(first);
    capture.clear();

    // 2. A failure: every channel hears it; the last success stays.
    let dead = format!("redis://127.0.0.1:{}", free_port());
    let failed = backup(&dead);
    failed.assert_code(1);
    let group = pushgateway.group("shop", "sessions");
    assert_eq!(group.get("vertice_backup_total"), Some(&2.0), "{group:?}");
    assert_eq!(group.get("vertice_backup_failure_total"), Some(&1.0));
    assert_eq!(group.get("vertice_backup_success_total"), Some(&1.0));
    assert_eq!(
        group["vertice_backup_size_bytes"], size,
        "a failure keeps the last size"
    );
    assert_eq!(
        group["vertice_backup_last_success_timestamp_seconds"],
        last_success
    );
    let slack = capture.requests_to("/slack");
    assert_eq!(slack.len(), 1);
    let text = slack[0].json()["text"].as_str().expect("text").to_string();
    assert!(
        text.contains("shop/sessions") && text.contains("FAILED"),
        "{text}"
    );
    let trigger = capture.requests_to("/pagerduty")[0].json();
    assert_eq!(trigger["event_action"], "trigger");
    assert_eq!(trigger["routing_key"], ROUTING_KEY);
    assert_eq!(trigger["dedup_key"], "vertice-backup/shop/sessions");
    assert_eq!(trigger["payload"]["severity"], "critical");
    let webhook = capture.requests_to("/webhook");
    assert_eq!(
        webhook[0].headers.get("authorization").map(String::as_str),
        Some(format!("Bearer {WEBHOOK_TOKEN}").as_str())
    );
    assert_eq!(webhook[0].json()["event"], "failed");
    assert_eq!(webhook[0].json()["summary"]["outcome"], "failed");
    let mails = smtp.messages();
    assert_eq!(mails.len(), 1, "one message to two recipients");
    assert!(
        mails[0].contains("Subject: Backup shop/sessions FAILED"),
        "{}",
        mails[0]
    );
    assert!(mails[0].contains("oncall@example.com") && mails[0].contains("dba@example.com"));
    outputs.push(failed);
    capture.clear();

    // 3. The next success is a recovery and resolves the same PagerDuty alert.
    let recovered = backup(&redis.url());
    recovered.assert_ok();
    let slack = capture.requests_to("/slack");
    assert_eq!(slack.len(), 1);
    assert!(slack[0].json()["text"]
        .as_str()
        .expect("text")
        .contains("recovered"));
    let resolve = capture.requests_to("/pagerduty")[0].json();
    assert_eq!(
        (
            resolve["event_action"].as_str(),
            resolve["dedup_key"].as_str()
        ),
        (Some("resolve"), Some("vertice-backup/shop/sessions"))
    );
    assert_eq!(
        capture.requests_to("/webhook")[0].json()["event"],
        "recovered"
    );
    assert_eq!(smtp.messages().len(), 2);
    assert_eq!(
        pushgateway
            .group("shop", "sessions")
            .get("vertice_backup_success_total"),
        Some(&2.0)
    );
    outputs.push(recovered);

    // Secrets never reach the output, the debug logs or the summary.
    let summary = std::fs::read_to_string(&summary_path).unwrap_or_default();
    for out in &outputs {
        for secret in [SLACK_TOKEN, ROUTING_KEY, WEBHOOK_TOKEN] {
            assert!(
                !out.all().contains(secret),
                "{secret} leaked:\n{}",
                out.all()
            );
            assert!(!summary.contains(secret));
        }
    }
}

#[test]
fn an_unreachable_pushgateway_or_channel_never_fails_a_good_backup() {
    let redis = RedisServer::start(None);
    let capture = HttpCapture::start();
    capture.respond(&format!("/slack/services/{SLACK_TOKEN}"), 500);
    let secrets = secrets_dir(&capture);
    let store = tempfile::tempdir().expect("store dir");
    let agent = Agent::new();
    let env = vec![
        ("VERTICE_PUSHGATEWAY_URL", format!("http://127.0.0.1:{}", free_port())),
        ("VERTICE_NOTIFICATIONS", json!({"onSuccess": true, "slack": {"webhookUrlSecretRef": {"name": "alerts", "key": "slack"}}}).to_string()),
        ("VERTICE_SECRETS_DIR", secrets.path().display().to_string()),
    ];
    let out = agent.run(
        &[
            "backup",
            "--source",
            &redis.url(),
            "--to",
            &format!("file://{}", store.path().display()),
            "--name",
            "cache",
        ],
        &env,
    );
    out.assert_ok();
    assert!(
        out.stderr.contains("could not push metrics"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("notification failed"), "{}", out.stderr);
    assert_eq!(capture.requests_to("/slack").len(), 1, "Slack was tried");
    assert!(!out.all().contains(SLACK_TOKEN));
    let listed = agent.run(
        &[
            "list",
            "--from",
            &format!("file://{}", store.path().display()),
            "--output",
            "json",
        ],
        &[],
    );
    assert_eq!(
        serde_json::from_str::<Value>(&listed.stdout)
            .expect("json")
            .as_array()
            .map(Vec::len),
        Some(1)
    );
}

#[test]
fn hooks_run_around_a_postgres_backup() {
    let pg = Postgres::start_with_password("pg-Secret-pw-hooks");
    pg.create_database("shop");
    pg.psql(
        "shop",
        "CREATE TABLE hook_log(phase text, at timestamptz default now())",
    );
    let capture = HttpCapture::start();
    let secrets = tempfile::tempdir().expect("secrets");
    write_secret(
        secrets.path(),
        "hc",
        "url",
        &capture.url("/ping/Secret-hc-uuid"),
    );
    let store = tempfile::tempdir().expect("store dir");
    let store_url = format!("file://{}", store.path().display());
    let summary_path = store.path().join("termination-log");
    let agent = Agent::new();
    let run = |hooks: Value| {
        let env = vec![
            ("PGPASSWORD", "pg-Secret-pw-hooks".to_string()),
            ("VERTICE_HOOKS", hooks.to_string()),
            ("VERTICE_SECRETS_DIR", secrets.path().display().to_string()),
            (
                "VERTICE_TERMINATION_LOG",
                summary_path.display().to_string(),
            ),
        ];
        let out = agent.run(
            &[
                "backup",
                "--source",
                &pg.url("shop"),
                "--to",
                &store_url,
                "--name",
                "shop",
            ],
            &env,
        );
        let summary: Value = serde_json::from_str(
            std::fs::read_to_string(&summary_path)
                .expect("summary")
                .trim(),
        )
        .expect("summary JSON");
        (out, summary)
    };
    let backups = || {
        let listed = agent.run(&["list", "--from", &store_url, "--output", "json"], &[]);
        serde_json::from_str::<Value>(&listed.stdout)
            .expect("json")
            .as_array()
            .map(Vec::len)
            .unwrap_or(0)
    };
    let post = json!([{"name": "healthcheck", "http": {"urlSecretRef": {"name": "hc", "key": "url"}, "method": "GET"}}]);

    // Pre-hook SQL runs before the dump, so its row is in the backup; the post-hook pings.
    let (out, summary) = run(json!({
        "pre": [{"name": "mark", "sql": {"statement": "INSERT INTO hook_log(phase) VALUES ('pre')"}}],
        "post": post,
    }));
    out.assert_ok();
    assert_eq!(
        pg.psql("shop", "SELECT count(*) FROM hook_log WHERE phase = 'pre'"),
        "1"
    );
    assert_eq!(capture.requests_to("/ping/").len(), 1);
    assert_eq!(capture.requests_to("/ping/")[0].method, "GET");
    let hooks = summary["hooks"].as_array().expect("hooks in the summary");
    assert_eq!(hooks.len(), 2);
    assert!(hooks.iter().all(|h| h["ok"] == true), "{summary}");
    assert_eq!(backups(), 1);

    // A failing pre-hook stops the run before the dump; the post-hook still runs.
    let (out, summary) = run(json!({
        "pre": [{"name": "broken", "sql": {"statement": "SELECT * FROM no_such_table"}}],
        "post": post,
    }));
    out.assert_code(1);
    assert!(
        out.stderr.contains("pre-hook broken") && out.stderr.contains("no_such_table"),
        "{}",
        out.stderr
    );
    assert_eq!(backups(), 1, "no backup from a run whose pre-hook failed");
    assert_eq!(
        capture.requests_to("/ping/").len(),
        2,
        "post-hooks always run"
    );
    assert_eq!(summary["hooks"][0]["ok"], false);
    assert_eq!(summary["outcome"], "failed");

    // onError: Continue lets the backup go on; a timeout counts as a failure.
    let (out, summary) = run(json!({
        "pre": [{"name": "slow", "sql": {"statement": "SELECT pg_sleep(5)"}, "timeoutSeconds": 1, "onError": "Continue"}],
    }));
    out.assert_ok();
    assert_eq!(backups(), 2);
    assert_eq!(summary["hooks"][0]["ok"], false);
    assert!(
        summary["hooks"][0]["error"]
            .as_str()
            .expect("error")
            .contains("timed out"),
        "{summary}"
    );

    // A failing post-hook fails the run, but the backup it follows stays valid.
    capture.respond("/ping/Secret-hc-uuid", 503);
    let (out, _) = run(json!({"post": post}));
    out.assert_code(1);
    assert!(
        out.stderr.contains("is stored and valid") && out.stderr.contains("503"),
        "{}",
        out.stderr
    );
    assert_eq!(backups(), 3);
    assert!(
        !out.all().contains("Secret-hc-uuid"),
        "the hook URL is a secret: {}",
        out.all()
    );
    assert!(!out.all().contains("pg-Secret-pw-hooks"));
}

#[test]
fn redis_hooks_send_commands() {
    let redis = RedisServer::start(Some("redis-Secret-hooks"));
    let store = tempfile::tempdir().expect("store dir");
    let agent = Agent::new();
    let env = vec![
        ("REDIS_PASSWORD", "redis-Secret-hooks".to_string()),
        ("VERTICE_HOOKS", json!({"pre": [{"name": "mark", "sql": {"statement": "SET 'hook marker' \"ran before\""}}]}).to_string()),
    ];
    agent
        .run(
            &[
                "backup",
                "--source",
                &redis.url(),
                "--to",
                &format!("file://{}", store.path().display()),
                "--name",
                "cache",
            ],
            &env,
        )
        .assert_ok();
    let mut conn = redis.connection();
    let value: String = redis::cmd("GET")
        .arg("hook marker")
        .query(&mut conn)
        .expect("GET");
    assert_eq!(value, "ran before");
}

#[test]
fn malformed_hook_and_notification_settings_are_usage_errors() {
    let agent = Agent::new();
    let store = tempfile::tempdir().expect("store dir");
    let to = format!("file://{}", store.path().display());
    let out = agent.run(
        &["backup", "--source", "redis://127.0.0.1:1", "--to", &to],
        &[("VERTICE_HOOKS", "{\"pre\": [{\"name\": 1}]}".to_string())],
    );
    out.assert_code(2);
    assert!(
        out.stderr.contains("VERTICE_HOOKS") || out.stderr.contains("--hooks"),
        "{}",
        out.stderr
    );
    let out = agent.run(
        &["backup", "--source", "redis://127.0.0.1:1", "--to", &to],
        &[("VERTICE_NOTIFICATIONS", "{\"slack\": {}}".to_string())],
    );
    out.assert_code(2);
    assert!(out.stderr.contains("webhookUrlSecretRef"), "{}", out.stderr);
}
