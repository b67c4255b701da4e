//! On-demand runs: a new value of the `vertice.io/run-now` annotation starts
//! one Job from the CronJob's template, outside the schedule
//! (`kubectl annotate vbk orders vertice.io/run-now=$(date +%s) --overwrite`).
//! The Job's name is derived from the token, so a retried reconcile finds
//! the Job it already created instead of starting a second one.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use kube::api::ObjectMeta;
use sha2::{Digest, Sha256};
use vertice_crds::backup_status::{RunNowRecord, DRILL_NOW_ANNOTATION, RUN_NOW_ANNOTATION};
use vertice_crds::VerticeBackup;

/// Annotation on an on-demand Job: the token that asked for it.
pub const TOKEN_ANNOTATION: &str = "vertice.io/run-now-token";
/// Tokens are recorded in status; longer ones are cut.
const MAX_TOKEN: usize = 253;

/// The token of a backup asked for and not yet started, if any.
pub fn pending_token(backup: &VerticeBackup) -> Option<String> {
    let done = backup.status.as_ref().and_then(|s| s.run_now.as_ref());
    pending(backup, RUN_NOW_ANNOTATION, done)
}

/// The token of a drill asked for (`vertice.io/drill-now`) and not yet started.
pub fn pending_drill_token(backup: &VerticeBackup) -> Option<String> {
    let done = backup.status.as_ref().and_then(|s| s.drill_now.as_ref());
    pending(backup, DRILL_NOW_ANNOTATION, done)
}

fn pending(
    backup: &VerticeBackup,
    annotation: &str,
    done: Option<&RunNowRecord>,
) -> Option<String> {
    let token = backup.metadata.annotations.as_ref()?.get(annotation)?;
    let token: String = token.trim().chars().take(MAX_TOKEN).collect();
    if token.is_empty() {
        return None;
    }
    let started = done.is_some_and(|r| r.token == token);
    (!started).then_some(token)
}

/// The Job name for a token: the CronJob's name (cut to leave room), `-now-`
/// and a hash of the token; at most 63 characters.
pub fn job_name(cron_job: &str, token: &str) -> String {
    let hash = hex::encode(&Sha256::digest(token.as_bytes())[..4]);
    let keep: String = cron_job.chars().take(63 - 5 - hash.len()).collect();
    format!("{}-now-{hash}", keep.trim_end_matches(['-', '.']))
}

/// The Job to create for `token`, from the desired CronJob's template, owned
/// by the backup (so deleting the backup removes it), and the status record.
pub fn job_for(cron_job: &CronJob, token: &str, now: DateTime<Utc>) -> (Job, RunNowRecord) {
    let cron_name = cron_job.metadata.name.clone().unwrap_or_default();
    let name = job_name(&cron_name, token);
    let template = cron_job.spec.job_template.clone();
    let template_meta = template.metadata.unwrap_or_default();
    let mut annotations: BTreeMap<String, String> = template_meta.annotations.unwrap_or_default();
    annotations.insert(TOKEN_ANNOTATION.into(), token.into());
    // What `kubectl create job --from=cronjob/...` marks, for tools that look.
    annotations.insert("cronjob.kubernetes.io/instantiate".into(), "manual".into());
    let job = Job {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: cron_job.metadata.namespace.clone(),
            labels: template_meta.labels,
            annotations: Some(annotations),
            owner_references: cron_job.metadata.owner_references.clone(),
            ..ObjectMeta::default()
        },
        spec: template.spec,
        status: None,
    };
    let record = RunNowRecord {
        token: token.into(),
        job: name,
        started_at: now,
    };
    (job, record)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn backup(annotation: Option<&str>, done: Option<&str>) -> VerticeBackup {
        let mut value = json!({
            "apiVersion": "vertice.io/v1alpha1", "kind": "VerticeBackup",
            "metadata": {"name": "orders", "namespace": "shop"},
            "spec": {"target": {"redis": {"host": "r"}}, "schedule": {"cron": "@daily"},
                     "store": {"s3": {"bucket": "b"}}},
        });
        if let Some(a) = annotation {
            value["metadata"]["annotations"] = json!({RUN_NOW_ANNOTATION: a});
        }
        if let Some(d) = done {
            value["status"] =
                json!({"runNow": {"token": d, "job": "x", "startedAt": "2026-01-01T00:00:00Z"}});
        }
        serde_json::from_value(value).expect("backup")
    }

    #[test]
    fn a_new_token_is_pending_once() {
        assert_eq!(pending_token(&backup(None, None)), None);
        assert_eq!(pending_token(&backup(Some("  "), None)), None);
        assert_eq!(
            pending_token(&backup(Some("t1"), None)).as_deref(),
            Some("t1")
        );
        assert_eq!(pending_token(&backup(Some("t1"), Some("t1"))), None);
        assert_eq!(
            pending_token(&backup(Some("t2"), Some("t1"))).as_deref(),
            Some("t2")
        );
        // The drill's annotation is its own.
        assert_eq!(pending_drill_token(&backup(Some("t1"), None)), None);
        let mut drill = backup(None, None);
        drill.metadata.annotations =
            Some([(DRILL_NOW_ANNOTATION.to_string(), "d1".to_string())].into());
        assert_eq!(pending_drill_token(&drill).as_deref(), Some("d1"));
        assert_eq!(pending_token(&drill), None);
    }

    #[test]
    fn job_names_are_stable_bounded_and_differ_by_token() {
        assert_eq!(
            job_name("vertice-orders", "a"),
            job_name("vertice-orders", "a")
        );
        assert_ne!(
            job_name("vertice-orders", "a"),
            job_name("vertice-orders", "b")
        );
        let long = "v".repeat(52);
        assert!(job_name(&long, "a").len() <= 63);
        assert!(job_name("vertice-orders", "a").starts_with("vertice-orders-now-"));
    }

    #[test]
    fn the_job_is_the_cron_jobs_template_owned_like_it() {
        let cron: CronJob = serde_json::from_value(json!({
            "metadata": {"name": "vertice-orders", "namespace": "shop",
                         "ownerReferences": [{"apiVersion": "vertice.io/v1alpha1", "kind": "VerticeBackup",
                                              "name": "orders", "uid": "u1", "controller": true}]},
            "spec": {"schedule": "@daily", "jobTemplate": {
                "metadata": {"labels": {"vertice.io/backup": "orders"}, "annotations": {"a": "b"}},
                "spec": {"backoffLimit": 2, "template": {"spec": {"containers": []}}}}},
        }))
        .expect("cron job");
        let now = Utc::now();
        let (job, record) = job_for(&cron, "t1", now);
        assert_eq!(record.job, job.metadata.name.clone().unwrap_or_default());
        assert_eq!(record.started_at, now);
        let labels = job.metadata.labels.clone().unwrap_or_default();
        assert_eq!(labels["vertice.io/backup"], "orders");
        let annotations = job.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(annotations[TOKEN_ANNOTATION], "t1");
        assert_eq!(annotations["a"], "b");
        assert_eq!(
            job.metadata.owner_references.unwrap_or_default()[0].uid,
            "u1"
        );
        assert_eq!(job.spec.and_then(|s| s.backoff_limit), Some(2));
    }
}
