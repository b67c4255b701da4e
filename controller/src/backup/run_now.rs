//! On-demand runs: a new value of the `vertice.io/run-now` annotation starts
//! one Job from the CronJob's template, outside the schedule
//! (`kubectl annotate vbk orders vertice.io/run-now=$(date +%s) --overwrite`).
//! The Job's name is derived from the token, so a retried reconcile finds
//! the Job it already created instead of starting a second one.
//!
//! On-demand runs follow the CronJob's `concurrencyPolicy: Forbid`: while a
//! run of the backup (scheduled or on demand) is active, a new request
//! waits in `status.runNowQueued` and starts when that run ends. The
//! annotation holds one value, so at most one request waits: the newest.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use kube::api::ObjectMeta;
use sha2::{Digest, Sha256};
use vertice_crds::backup_status::{QueuedRun, RunNowRecord, VerticeBackupStatus};
use vertice_crds::VerticeBackup;

use super::scheduled_run::{RunKind, ScheduledRun};
use super::status::{finished, Event, Observed};

/// Annotation on an on-demand Job: the token that asked for it.
pub const TOKEN_ANNOTATION: &str = "vertice.io/run-now-token";
/// Tokens are recorded in status; longer ones are cut.
const MAX_TOKEN: usize = 253;

/// The token of a run of `kind` asked for (`vertice.io/run-now`,
/// `vertice.io/drill-now`) and not yet started, if any.
pub fn pending_token(backup: &VerticeBackup, kind: RunKind) -> Option<String> {
    let done = backup.status.as_ref().and_then(|s| kind.record(s));
    let token = backup
        .metadata
        .annotations
        .as_ref()?
        .get(kind.now_annotation())?;
    let token: String = token.trim().chars().take(MAX_TOKEN).collect();
    if token.is_empty() {
        return None;
    }
    let started = done.is_some_and(|r| r.token == token);
    (!started).then_some(token)
}

/// What becomes of a pending request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnDemand {
    /// Start its Job now.
    Start { token: String },
    /// Its Job exists already (the status recording it was not written or
    /// not yet seen): record it, start nothing.
    Started { token: String, job: String },
    /// A run is active: wait for it.
    Wait { token: String, behind: String },
}

/// Decides a pending request's fate from the Jobs of the same kind (backup
/// or drill runs) that exist: `active` are the unfinished ones, `existing`
/// all of them. Pure.
pub fn decide(
    token: Option<String>,
    cron_job: &str,
    existing: &[String],
    active: &[String],
) -> Option<OnDemand> {
    let token = token?;
    let job = job_name(cron_job, &token);
    if existing.contains(&job) {
        return Some(OnDemand::Started { token, job });
    }
    Some(match active.iter().min() {
        Some(behind) => OnDemand::Wait {
            token,
            behind: behind.clone(),
        },
        None => OnDemand::Start { token },
    })
}

/// The queue entry for a waiting request: the one already recorded when it
/// is the same request (so `queuedAt` keeps the first time), else a new
/// one; `true` when the request is new (worth an Event).
pub fn queued(
    previous: Option<&QueuedRun>,
    token: &str,
    behind: &str,
    now: DateTime<Utc>,
) -> (QueuedRun, bool) {
    match previous {
        Some(q) if q.token == token => (
            QueuedRun {
                waiting_for: behind.into(),
                ..q.clone()
            },
            false,
        ),
        _ => (
            QueuedRun {
                token: token.into(),
                waiting_for: behind.into(),
                queued_at: now,
            },
            true,
        ),
    }
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

/// The scheduled run of `kind` a reconcile makes true: the on-demand Job
/// to start, if any (the status and events say what became of the
/// request), and the desired CronJob, held while an on-demand run is active.
pub fn schedule(
    kind: RunKind,
    backup: &VerticeBackup,
    cron_job: Option<CronJob>,
    observed: &Observed,
    status: &mut VerticeBackupStatus,
    events: &mut Vec<Event>,
    now: DateTime<Utc>,
) -> ScheduledRun {
    let (record, queue) = kind.slots(status);
    let slots = Slots {
        record,
        queue,
        events,
    };
    // A run asked for while the spec is invalid waits until it is fixed.
    let run_now = cron_job
        .as_ref()
        .and_then(|cj| on_demand(kind, backup, cj, observed, slots, now));
    let cron_job = cron_job.map(|cj| hold_while_on_demand(cj, kind, observed, run_now.is_some()));
    let name = backup.metadata.name.as_deref().unwrap_or_default();
    ScheduledRun {
        kind,
        cron_job_name: kind.cron_job_name(name),
        cron_job,
        run_now,
    }
}

/// Suspends the CronJob while an on-demand run of its kind is active (or
/// `starting` now), so a scheduled time that comes meanwhile is treated as
/// `concurrencyPolicy: Forbid` treats one behind a scheduled run: started
/// late within `startingDeadlineSeconds` once the CronJob is resumed, or
/// skipped. The next reconcile after the run ends resumes it.
fn hold_while_on_demand(
    mut cron_job: CronJob,
    kind: RunKind,
    observed: &Observed,
    starting: bool,
) -> CronJob {
    let on_demand_active = observed.jobs.iter().any(|j| {
        RunKind::of(j) == kind
            && finished(j).is_none()
            && j.metadata
                .annotations
                .as_ref()
                .is_some_and(|a| a.contains_key(TOKEN_ANNOTATION))
    });
    if starting || on_demand_active {
        cron_job.spec.suspend = Some(true);
    }
    cron_job
}

/// Whether an Event's reason is one `schedule` gives (a run started or
/// queued): not true of a plan whose CronJob could not be written, as then
/// no Job is created and the request stays as it was.
pub fn is_on_demand_news(reason: &str) -> bool {
    RunKind::ALL
        .iter()
        .any(|k| k.started_reason() == reason || k.queued_reason() == reason)
}

/// Where the status records a kind's last on-demand start and its queue,
/// and where the news goes.
struct Slots<'a> {
    record: &'a mut Option<RunNowRecord>,
    queue: &'a mut Option<QueuedRun>,
    events: &'a mut Vec<Event>,
}

/// Carries out `decide` for one kind: the Job to create, if any; the status
/// and events say what happened to the request. A request that waited for
/// a run and is still waiting when that run ends while the kind is
/// suspended keeps waiting, for the resume: suspending stops what was
/// queued before. A new request still starts while suspended.
fn on_demand(
    kind: RunKind,
    backup: &VerticeBackup,
    cron_job: &CronJob,
    observed: &Observed,
    slots: Slots<'_>,
    now: DateTime<Utc>,
) -> Option<Job> {
    let cron_name = cron_job.metadata.name.clone().unwrap_or_default();
    let ours = || observed.jobs.iter().filter(|j| RunKind::of(j) == kind);
    let name_of = |j: &Job| j.metadata.name.clone();
    let existing: Vec<String> = ours().filter_map(name_of).collect();
    let active: Vec<String> = ours()
        .filter(|j| j.metadata.deletion_timestamp.is_none() && finished(j).is_none())
        .filter_map(name_of)
        .collect();
    let token = pending_token(backup, kind);
    let Some(decision) = decide(token, &cron_name, &existing, &active) else {
        *slots.queue = None;
        return None;
    };
    match decision {
        OnDemand::Start { token }
            if kind.suspended(backup) && slots.queue.as_ref().is_some_and(|q| q.token == token) =>
        {
            hold_for_resume(kind, &token, slots, now);
            None
        }
        OnDemand::Start { token } => {
            let (job, record) = job_for(cron_job, &token, now);
            slots.events.push(Event::normal(
                kind.started_reason(),
                format!(
                    "Started {} Job {} on request {token}.",
                    kind.what(),
                    record.job
                ),
            ));
            *slots.record = Some(record);
            *slots.queue = None;
            Some(job)
        }
        OnDemand::Started { token, job } => {
            if slots.record.as_ref().is_none_or(|r| r.token != token) {
                *slots.record = Some(RunNowRecord {
                    token,
                    job,
                    started_at: now,
                });
            }
            *slots.queue = None;
            None
        }
        OnDemand::Wait { token, behind } => {
            let (queued, new) = queued(slots.queue.as_ref(), &token, &behind, now);
            if new {
                slots.events.push(Event::normal(kind.queued_reason(), format!(
                        "Request {token} waits for Job {behind} to finish: one {} of a backup runs at a time (concurrencyPolicy Forbid); it starts when that run ends, and a newer request replaces it.",
                        kind.what()
                    )));
            }
            *slots.queue = Some(queued);
            None
        }
    }
}

/// A queued request whose run ended while the kind is suspended: it keeps
/// waiting, now for the resume, and says so once.
fn hold_for_resume(kind: RunKind, token: &str, slots: Slots<'_>, now: DateTime<Utc>) {
    let (queued, _) = queued(slots.queue.as_ref(), token, kind.resume(), now);
    if slots
        .queue
        .as_ref()
        .is_some_and(|q| q.waiting_for != kind.resume())
    {
        slots.events.push(Event::normal(kind.queued_reason(), format!(
                "Request {token} waits for {}: the run it waited for ended while suspended. It starts when resumed; a new request starts a {} now.",
                kind.resume(),
                kind.what()
            )));
    }
    *slots.queue = Some(queued);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use vertice_crds::backup_status::{DRILL_NOW_ANNOTATION, RUN_NOW_ANNOTATION};

    fn pending_token(backup: &VerticeBackup) -> Option<String> {
        super::pending_token(backup, RunKind::Backup)
    }

    fn pending_drill_token(backup: &VerticeBackup) -> Option<String> {
        super::pending_token(backup, RunKind::Drill)
    }

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
    fn a_request_waits_while_a_run_is_active() {
        let mine = job_name("vertice-orders", "t2");
        let decide = |existing: &[&str], active: &[&str]| {
            let owned = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
            decide(
                Some("t2".into()),
                "vertice-orders",
                &owned(existing),
                &owned(active),
            )
        };
        assert_eq!(
            decide(&["vertice-orders-1"], &[]),
            Some(OnDemand::Start { token: "t2".into() })
        );
        assert_eq!(
            decide(&["vertice-orders-1"], &["vertice-orders-1"]),
            Some(OnDemand::Wait {
                token: "t2".into(),
                behind: "vertice-orders-1".into()
            })
        );
        // Its own Job, active or not, means it was started: never twice.
        assert_eq!(
            decide(&[mine.as_str()], &[mine.as_str()]),
            Some(OnDemand::Started {
                token: "t2".into(),
                job: mine.clone()
            })
        );
        assert_eq!(
            super::decide(None, "vertice-orders", &[], &["x".to_string()]),
            None
        );
    }

    #[test]
    fn a_waiting_request_keeps_its_first_time_and_is_announced_once() {
        let t0 = Utc::now();
        let later = t0 + chrono::Duration::seconds(30);
        let (first, new) = queued(None, "t1", "job-a", t0);
        assert!(new);
        let (again, new) = queued(Some(&first), "t1", "job-b", later);
        assert!(!new);
        assert_eq!((again.queued_at, again.waiting_for.as_str()), (t0, "job-b"));
        let (newer, new) = queued(Some(&first), "t2", "job-a", later);
        assert!(new);
        assert_eq!((newer.token.as_str(), newer.queued_at), ("t2", later));
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
