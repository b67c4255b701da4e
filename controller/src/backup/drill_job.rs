//! What the drill CronJob's agent is told: which backup, where to restore
//! it, what to check, and the credentials for exactly that. The rest of the
//! pod (store, security context, volumes) is the backup's, built by
//! `cron_job`.

use vertice_crds::backup::BackupTarget;
use vertice_crds::drill_spec::{DrillSpec, DrillTarget};

use super::cron_job::{postgres_url, SpecError, Wiring};

/// `/tmp`'s size limit when `spec.drill.scratchSize` is not given: room
/// for a Redis RDB, or, for an ephemeral PostgreSQL, whose data directory
/// lives there, a database of a few GiB (a limit, not a reservation: the
/// pod is evicted above it).
pub(super) fn default_scratch_size(drill: Option<&DrillSpec>) -> &'static str {
    let ephemeral = drill
        .and_then(|d| d.target.as_ref())
        .is_some_and(|t| t.ephemeral.is_some());
    if ephemeral {
        "8Gi"
    } else {
        "256Mi"
    }
}

pub(super) fn wire(
    drill: &DrillSpec,
    target: &BackupTarget,
    encrypted: bool,
    w: &mut Wiring,
) -> Result<(), SpecError> {
    w.value("VERTICE_DRILL_BACKUP", drill.backup.trim());
    match (&target.postgres, &drill.target) {
        (Some(_), Some(DrillTarget { postgres: None, ephemeral: Some(_) })) => {
            w.value("VERTICE_DRILL_RESTORE_TO", "ephemeral");
        }
        (Some(_), Some(DrillTarget { postgres: Some(pg), ephemeral: None })) => {
            let url = postgres_url(&pg.user, &pg.host, pg.port, &pg.database, pg.ssl_mode.as_deref());
            w.value("VERTICE_DRILL_RESTORE_TO", url);
            if let Some(s) = &pg.password_secret_ref {
                w.secret_env("PGPASSWORD", &s.name, &s.key);
            }
            if let Some(prefix) = &pg.scratch_prefix {
                w.value("VERTICE_DRILL_SCRATCH_PREFIX", prefix);
            }
        }
        (Some(_), Some(_)) => {
            return Err(SpecError(
                "spec.drill.target: give exactly one of postgres (a server of yours) or ephemeral (a server inside the drill pod)".into(),
            ))
        }
        (Some(_), None) => {
            return Err(SpecError(
                "spec.drill.target: a PostgreSQL drill restores into drill.target.postgres (a server of yours) or drill.target.ephemeral (a server inside the drill pod)".into(),
            ))
        }
        (None, Some(_)) => {
            return Err(SpecError(
                "spec.drill.target is for PostgreSQL backups; Redis and Vault drills restore inside the drill pod".into(),
            ))
        }
        (None, None) => {}
    }
    match (&drill.identity_secret_ref, encrypted) {
        (Some(identity), _) => {
            let path = w.secret_file(identity);
            w.value("VERTICE_IDENTITY_FILE", path);
        }
        (None, true) => {
            return Err(SpecError(
                "spec.drill.identitySecretRef: an encrypted backup is drilled with the age identity that decrypts it".into(),
            ))
        }
        (None, false) => {}
    }
    if drill.checks != Default::default() {
        let checks = serde_json::to_string(&drill.checks)
            .map_err(|e| SpecError(format!("spec.drill.checks: {e}")))?;
        w.value("VERTICE_DRILL_CHECKS", checks);
    }
    if let Some(age) = &drill.max_unverified_age {
        vertice_crds::duration::parse(age)
            .map_err(|e| SpecError(format!("spec.drill.maxUnverifiedAge: {e}")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::cron_job::{desired_drill, JobDefaults};
    use serde_json::json;
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
}
