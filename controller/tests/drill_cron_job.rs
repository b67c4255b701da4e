//! The drill CronJob's wiring (`backup/drill_job.rs`), through the public
//! `cron_job::desired_drill`: outside the crate, so `drill_job` does not
//! depend on `cron_job` even in its tests.

use serde_json::json;
use vertice_controller::backup::cron_job::{desired_drill, JobDefaults};
use vertice_crds::VerticeBackup;

fn backup(drill: serde_json::Value, encrypted: bool) -> VerticeBackup {
    let mut v = json!({
        "apiVersion": "vertice.io/v1alpha1", "kind": "VerticeBackup",
        "metadata": {"name": "orders", "namespace": "shop", "uid": "u1"},
        "spec": {"target": {"postgres": {"host": "db", "database": "shop", "user": "backup",
                                          "passwordSecretRef": {"name": "source-db", "key": "password"}}},
                 "schedule": {"cron": "@daily"}, "store": {"s3": {"bucket": "backups"}},
                 "drill": drill},
    });
    if encrypted {
        v["spec"]["encryption"] = json!({"recipients": ["age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"]});
    }
    serde_json::from_value(v).expect("backup")
}

fn defaults() -> JobDefaults {
    JobDefaults {
        agent_image: "vertice-agent:test".into(),
        pushgateway_url: None,
    }
}

#[test]
fn the_drill_pod_carries_the_drill_targets_credentials_not_the_sources() {
    let b = backup(
        json!({"schedule": {"cron": "0 4 * * 0"},
               "target": {"postgres": {"host": "drill-db", "user": "drill",
                                       "passwordSecretRef": {"name": "drill-db", "key": "pw"}}}}),
        false,
    );
    let cj = desired_drill(&b, &defaults())
        .expect("valid")
        .expect("drill");
    assert_eq!(cj.metadata.name.as_deref(), Some("vertice-drill-orders"));
    assert_eq!(cj.spec.schedule, "0 4 * * 0");
    let text = serde_json::to_string(&cj).expect("json");
    assert!(
        !text.contains("source-db"),
        "the source's Secret stays out: {text}"
    );
    assert!(
        text.contains("postgres://drill@drill-db:5432/postgres"),
        "{text}"
    );
    assert!(text.contains(r#""vertice.io/run":"drill""#), "{text}");
    let pod = cj
        .spec
        .job_template
        .spec
        .and_then(|s| s.template.spec)
        .expect("pod");
    assert_eq!(
        pod.containers[0].args.as_deref(),
        Some(&["drill".to_string()][..])
    );
    assert_eq!(pod.automount_service_account_token, Some(false));
}

#[test]
fn an_ephemeral_drill_gets_room_for_its_data_by_default() {
    let b = backup(
        json!({"schedule": {"cron": "@weekly"}, "target": {"ephemeral": {}}}),
        false,
    );
    let text =
        serde_json::to_string(&desired_drill(&b, &defaults()).expect("valid")).expect("json");
    assert!(text.contains(r#""sizeLimit":"8Gi""#), "{text}");
    let b = backup(
        json!({"schedule": {"cron": "@weekly"},
               "target": {"postgres": {"host": "drill-db", "user": "drill"}}}),
        false,
    );
    let text =
        serde_json::to_string(&desired_drill(&b, &defaults()).expect("valid")).expect("json");
    assert!(text.contains(r#""sizeLimit":"256Mi""#), "{text}");
}

#[test]
fn an_ephemeral_drill_needs_no_server_and_no_password() {
    let b = backup(
        json!({"schedule": {"cron": "@weekly"}, "target": {"ephemeral": {}},
               "scratchSize": "20Gi"}),
        false,
    );
    let cj = desired_drill(&b, &defaults())
        .expect("valid")
        .expect("drill");
    let text = serde_json::to_string(&cj).expect("json");
    assert!(
        text.contains(r#"{"name":"VERTICE_DRILL_RESTORE_TO","value":"ephemeral"}"#),
        "{text}"
    );
    assert!(!text.contains("PGPASSWORD"), "{text}");
    assert!(!text.contains("source-db"), "{text}");
    assert!(text.contains(r#""sizeLimit":"20Gi""#), "{text}");
}

#[test]
fn a_drill_restores_with_as_many_sessions_as_the_backup_dumped_with() {
    let drill = json!({"schedule": {"cron": "@weekly"}, "target": {"ephemeral": {}}});
    let env = r#"{"name":"VERTICE_PG_JOBS","value":"4"}"#;
    let mut b = backup(drill.clone(), false);
    b.spec.target.postgres.as_mut().expect("postgres").jobs = Some(4);
    let text =
        serde_json::to_string(&desired_drill(&b, &defaults()).expect("valid")).expect("json");
    assert!(text.contains(env), "{text}");
    let text =
        serde_json::to_string(&desired_drill(&backup(drill, false), &defaults()).expect("valid"))
            .expect("json");
    assert!(
        !text.contains("VERTICE_PG_JOBS"),
        "unset: the agent's default: {text}"
    );
}

#[test]
fn a_drill_that_cannot_work_is_refused() {
    let no_target = backup(json!({"schedule": {"cron": "@weekly"}}), false);
    let err = desired_drill(&no_target, &defaults()).expect_err("no target");
    assert!(err.0.contains("drill.target.ephemeral"), "{err}");
    let both = backup(
        json!({"schedule": {"cron": "@weekly"},
               "target": {"postgres": {"host": "drill-db", "user": "drill"}, "ephemeral": {}}}),
        false,
    );
    let err = desired_drill(&both, &defaults()).expect_err("both");
    assert!(err.0.contains("exactly one"), "{err}");
    let no_identity = backup(
        json!({"schedule": {"cron": "@weekly"},
               "target": {"postgres": {"host": "drill-db", "user": "drill"}}}),
        true,
    );
    let err = desired_drill(&no_identity, &defaults()).expect_err("no identity");
    assert!(err.0.contains("identitySecretRef"), "{err}");
}
