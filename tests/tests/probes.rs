//! The agent's health probes against real servers: HTTP and HTTPS, a TCP
//! listener, a gRPC health server, a PostgreSQL primary with a real
//! streaming standby, and a Redis primary with a real replica.

use std::time::Duration;

use vertice_agent::probe::{self, resolve, ProbeResult};
use vertice_crds::failover::{FailoverReplica, HealthCheck};
use vertice_tests::agent::Agent;
use vertice_tests::health_target::{GrpcHealth, HealthTarget};
use vertice_tests::kube::certs::Pki;
use vertice_tests::postgres::Postgres;
use vertice_tests::redis_server::RedisServer;

/// Runs `check` (CRD JSON) against `address`, secrets from `secret`.
async fn probe_with(
    check: serde_json::Value,
    address: &str,
    secret: &dyn Fn(&str) -> Option<String>,
) -> ProbeResult {
    let check: HealthCheck = serde_json::from_value(check).expect("check");
    let replica: FailoverReplica = serde_json::from_value(serde_json::json!({
        "name": "r", "host": "127.0.0.1", "probeAddress": address}))
    .expect("replica");
    let probe = resolve::for_replica(&check, &replica, &|s| {
        secret(&s.key).ok_or_else(|| format!("Secret {} has no key {}", s.name, s.key))
    })
    .expect("probe");
    probe::run(
        &probe,
        Duration::from_secs(u64::from(check.timeout_seconds)),
    )
    .await
}

async fn probe_at(check: serde_json::Value, address: &str) -> ProbeResult {
    probe_with(check, address, &|_| None).await
}

fn reason(r: &ProbeResult) -> &str {
    r.reason.as_deref().unwrap_or("")
}

#[tokio::test]
async fn http_status_body_and_json_field() {
    let target = HealthTarget::start().await;
    let ok = probe_at(
        serde_json::json!({"http": {"path": "/healthz", "bodyContains": "ok",
        "jsonField": {"path": "status", "equals": "ok"}}}),
        &target.address(),
    )
    .await;
    assert!(ok.ok, "{ok:?}");
    assert!(target
        .last_request()
        .expect("request")
        .starts_with("GET /healthz HTTP/1.1"));

    target.set(503, r#"{"status":"degraded"}"#);
    let down = probe_at(serde_json::json!({"http": {}}), &target.address()).await;
    assert_eq!(reason(&down), "status 503 outside 200-399");
    let wanted_503 = probe_at(
        serde_json::json!({"http": {"minStatus": 500, "maxStatus": 503}}),
        &target.address(),
    )
    .await;
    assert!(wanted_503.ok);

    target.set(200, r#"{"status":"degraded","checks":[{"ok":false}]}"#);
    let field = probe_at(
        serde_json::json!({"http": {"jsonField": {"path": "checks.0.ok", "equals": "true"}}}),
        &target.address(),
    )
    .await;
    // The condition, never the value found.
    assert_eq!(
        reason(&field),
        "JSON field checks.0.ok does not equal the expected value"
    );
    let body = probe_at(
        serde_json::json!({"http": {"bodyContains": "healthy"}}),
        &target.address(),
    )
    .await;
    assert!(reason(&body).contains("does not contain"), "{body:?}");
}

#[tokio::test]
async fn http_headers_from_secrets_are_sent_and_never_reported() {
    let target = HealthTarget::start().await;
    target.set(401, "{}");
    let check = serde_json::json!({"http": {"headers": [
        {"name": "Authorization", "valueFrom": {"name": "probe-token", "key": "token"}},
        {"name": "X-Probe", "value": "vertice"}]}});
    let result = probe_with(check, &target.address(), &|_| {
        Some("Bearer s3cr3t-T0ken".into())
    })
    .await;
    let head = target.last_request().expect("request").to_lowercase();
    assert!(
        head.contains("authorization: bearer s3cr3t-t0ken"),
        "{head}"
    );
    assert!(head.contains("x-probe: vertice"), "{head}");
    assert!(!format!("{result:?}").contains("s3cr3t"), "{result:?}");
    assert!(!result.ok);
}

#[tokio::test]
async fn a_slow_answer_is_a_timeout() {
    let target = HealthTarget::start().await;
    target.set_delay(Duration::from_secs(5));
    let started = std::time::Instant::now();
    let result = probe_at(
        serde_json::json!({"http": {}, "timeoutSeconds": 1}),
        &target.address(),
    )
    .await;
    assert!(!result.ok);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(
        result.latency_ms >= 1000 && result.latency_ms < 2500,
        "{result:?}"
    );
}

#[tokio::test]
async fn https_with_a_ca_bundle() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = tempfile::tempdir().expect("dir");
    let pki = Pki::create(dir.path());
    let target = HealthTarget::start_tls(&pki.server_cert, &pki.server_key).await;
    let ca = std::fs::read_to_string(&pki.ca_cert).expect("ca");
    let check = serde_json::json!({"http": {"https": true, "caBundleSecretRef": {"name": "ca", "key": "ca.crt"}}});
    let trusted = probe_with(check, &target.address(), &|_| Some(ca.clone())).await;
    assert!(trusted.ok, "{trusted:?}");
    let untrusted = probe_at(
        serde_json::json!({"http": {"https": true}}),
        &target.address(),
    )
    .await;
    assert!(!untrusted.ok);
    assert!(
        reason(&untrusted).to_lowercase().contains("certificate"),
        "{untrusted:?}"
    );
}

#[tokio::test]
async fn tcp_connect() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("addr").to_string();
    assert!(probe_at(serde_json::json!({"tcp": {}}), &address).await.ok);
    drop(listener);
    let refused = probe_at(serde_json::json!({"tcp": {}}), &address).await;
    assert!(reason(&refused).contains("refused"), "{refused:?}");
}

#[tokio::test]
async fn grpc_health_v1() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let server = GrpcHealth::start().await;
    server
        .reporter
        .set_service_status("db", tonic_health::ServingStatus::Serving)
        .await;
    assert!(
        probe_at(serde_json::json!({"grpc": {}}), &server.address())
            .await
            .ok
    );
    assert!(
        probe_at(
            serde_json::json!({"grpc": {"service": "db"}}),
            &server.address()
        )
        .await
        .ok
    );
    server
        .reporter
        .set_service_status("db", tonic_health::ServingStatus::NotServing)
        .await;
    let not = probe_at(
        serde_json::json!({"grpc": {"service": "db"}}),
        &server.address(),
    )
    .await;
    assert_eq!(reason(&not), "service \"db\" is NOT_SERVING");
    let unknown = probe_at(
        serde_json::json!({"grpc": {"service": "nope"}}),
        &server.address(),
    )
    .await;
    assert!(reason(&unknown).contains("NotFound"), "{unknown:?}");
    drop(server);
    let gone = probe_at(
        serde_json::json!({"grpc": {}, "timeoutSeconds": 2}),
        "127.0.0.1:1",
    )
    .await;
    assert!(!gone.ok);
}

#[tokio::test]
async fn postgres_role_and_replication_lag_on_a_real_standby() {
    let mut primary = Postgres::start();
    let standby = primary.start_replica();
    let password = primary.password.clone();
    let pg = |role: &str, lag: Option<u32>| {
        serde_json::json!({"postgres": {"passwordSecretRef": {"name": "pg", "key": "password"},
            "requireRole": role, "maxReplicationLagSeconds": lag, "sslMode": "disable"}})
    };
    let secret = |_: &str| Some(password.clone());
    let p = format!("127.0.0.1:{}", primary.port);
    let s = format!("127.0.0.1:{}", standby.port);
    assert!(probe_with(pg("Primary", None), &p, &secret).await.ok);
    let standby_as_primary = probe_with(pg("Primary", None), &s, &secret).await;
    assert_eq!(
        reason(&standby_as_primary),
        "is a standby (in recovery); a primary is required"
    );
    assert!(probe_with(pg("Replica", Some(5)), &s, &secret).await.ok);
    assert!(!probe_with(pg("Replica", None), &p, &secret).await.ok);

    // Replay paused while the primary keeps writing: the standby falls behind.
    primary.psql("postgres", "CREATE TABLE t AS SELECT 1 AS x");
    vertice_tests::process::wait_until("the standby replays", Duration::from_secs(20), || {
        standby.psql(
            "postgres",
            "SELECT count(*) FROM pg_tables WHERE tablename = 't'",
        ) == "1"
    });
    standby.psql("postgres", "SELECT pg_wal_replay_pause()");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    primary.psql("postgres", "INSERT INTO t VALUES (2)");
    let mut lagging = None;
    for _ in 0..20 {
        let r = probe_with(pg("Replica", Some(1)), &s, &secret).await;
        if !r.ok {
            lagging = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let lagging = lagging.expect("a paused standby lags");
    assert!(
        reason(&lagging).starts_with("replay lag") && reason(&lagging).ends_with("exceeds 1 s"),
        "{lagging:?}"
    );
    standby.psql("postgres", "SELECT pg_wal_replay_resume()");

    // A wrong password is refused, and the reason never carries a password.
    let wrong = probe_with(pg("Any", None), &p, &|_| Some("not-the-password".into())).await;
    assert!(
        reason(&wrong).contains("password authentication failed"),
        "{wrong:?}"
    );
    assert!(!reason(&wrong).contains("not-the-password"));

    primary.stop();
    let down = probe_with(pg("Any", None), &p, &secret).await;
    assert!(!down.ok);
    assert!(!reason(&down).contains(&password));
}

#[tokio::test]
async fn redis_role_and_replica_link_on_a_real_replica() {
    let primary = RedisServer::start(Some("redis-Pw-41"));
    let replica = primary.start_replica();
    let redis = |role: &str| serde_json::json!({"redis": {"passwordSecretRef": {"name": "r", "key": "password"}, "requireRole": role}});
    let secret = |_: &str| Some("redis-Pw-41".to_string());
    let p = format!("127.0.0.1:{}", primary.port);
    let r = format!("127.0.0.1:{}", replica.port);
    assert!(probe_with(redis("Primary"), &p, &secret).await.ok);
    // The replica's link comes up once the initial sync is done.
    let mut up = false;
    for _ in 0..50 {
        if probe_with(redis("Replica"), &r, &secret).await.ok {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(up, "the replica never reported its link up");
    let as_primary = probe_with(redis("Primary"), &r, &secret).await;
    assert_eq!(reason(&as_primary), "is a replica; a primary is required");
    let no_auth = probe_at(serde_json::json!({"redis": {}}), &p).await;
    assert!(!no_auth.ok, "{no_auth:?}");

    drop(primary);
    let mut down = None;
    for _ in 0..50 {
        let result = probe_with(redis("Any"), &r, &secret).await;
        if !result.ok {
            down = Some(result);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        reason(&down.expect("link down")),
        "replica's link to its primary is down"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_check_exits_by_health_prints_json_and_keeps_secrets_out() {
    let target = HealthTarget::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let token = dir.path().join("token");
    std::fs::write(&token, "Bearer cli-S3cret\n").expect("token");
    let url = target.url("/healthz");
    let header = format!("Authorization={}", token.display());
    let run = |args: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            Agent::new().run(&args, &[])
        })
    };
    let args = |extra: &[&str]| {
        let mut a: Vec<String> = [
            "probe",
            "check",
            "http",
            "--url",
            &url,
            "--header-file",
            &header,
            "--output",
            "json",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let ok = run(args(&["--json-field", "status=ok"]))
        .await
        .expect("run");
    ok.assert_code(0);
    let json: serde_json::Value = serde_json::from_str(ok.stdout.trim()).expect("json");
    assert_eq!(
        (json["ok"].clone(), json["kind"].clone()),
        (serde_json::json!(true), serde_json::json!("http"))
    );
    assert!(target
        .last_request()
        .expect("request")
        .contains("cli-S3cret"));

    target.set(500, "{}");
    let failed = run(args(&[])).await.expect("run");
    failed.assert_code(1);
    assert!(failed.stdout.contains("status 500"), "{}", failed.all());
    assert!(!failed.all().contains("cli-S3cret"), "{}", failed.all());

    let usage = run(vec!["probe".into(), "check".into(), "tcp".into()])
        .await
        .expect("run");
    usage.assert_code(2);
    assert!(usage.stderr.contains("--address"), "{}", usage.all());
    let bad_header = run(vec![
        "probe".into(),
        "check".into(),
        "http".into(),
        "--url".into(),
        url.clone(),
        "--header".into(),
        "NoColon".into(),
    ])
    .await
    .expect("run");
    bad_header.assert_code(2);
    assert!(
        bad_header.stderr.contains("NAME:VALUE"),
        "{}",
        bad_header.all()
    );
}
