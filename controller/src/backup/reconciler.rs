//! The I/O shell of the backup reconciler: observe children, apply the plan
//! with server-side apply, delete CronJobs no longer desired, patch status,
//! record events. Decisions live in `plan`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder};
use kube::{Api, Client, Resource, ResourceExt};
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use vertice_crds::VerticeBackup;

use super::{names, plan, JobDefaults, Observed};
use crate::metrics::Metrics;

pub const FIELD_MANAGER: &str = "vertice-controller";
/// Annotation on the CronJob: a hash of what the controller last applied, to
/// tell "created" and "updated" apart from "unchanged" (for events) without
/// diffing server-defaulted fields.
pub const SPEC_HASH: &str = "vertice.io/spec-hash";
const CONTROLLER: &str = "backup";
const CRON_JOB_CONFLICT: &str = "CronJobConflict";

pub struct Context {
    pub client: Client,
    pub defaults: JobDefaults,
    pub metrics: Metrics,
    pub recorder: Recorder,
    /// Whether this replica holds the leader lease.
    pub leading: watch::Receiver<bool>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{action}: {source}")]
    Kube {
        action: String,
        #[source]
        source: kube::Error,
    },
}

fn kube_err(action: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let action = action.into();
    move |source| Error::Kube { action, source }
}

pub async fn reconcile(backup: Arc<VerticeBackup>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    ctx.metrics
        .reconciles
        .with_label_values(&[CONTROLLER])
        .inc();
    let result = reconcile_inner(&backup, &ctx).await;
    ctx.metrics
        .reconcile_duration
        .with_label_values(&[CONTROLLER])
        .observe(started.elapsed().as_secs_f64());
    result
}

async fn reconcile_inner(backup: &VerticeBackup, ctx: &Context) -> Result<Action, Error> {
    if !*ctx.leading.borrow() {
        // Followers keep watching; they start writing the moment they lead.
        return Ok(Action::requeue(Duration::from_secs(15)));
    }
    if backup.meta().deletion_timestamp.is_some() {
        // Owner references let the garbage collector remove the CronJob.
        if let Some(namespace) = backup.namespace() {
            let labels = [namespace.as_str(), &backup.name_any()];
            let _ = ctx.metrics.backups_overdue.remove_label_values(&labels);
        }
        return Ok(Action::await_change());
    }
    let (Some(namespace), name) = (backup.namespace(), backup.name_any()) else {
        return Ok(Action::await_change());
    };
    let selector = format!(
        "{}={}",
        names::BACKUP_LABEL,
        names::labels(&name)[names::BACKUP_LABEL]
    );
    let list = ListParams::default().labels(&selector);
    let cron_jobs: Api<CronJob> = Api::namespaced(ctx.client.clone(), &namespace);
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &namespace);
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let owned_cron_jobs = cron_jobs
        .list(&list)
        .await
        .map_err(kube_err("list CronJobs"))?
        .items;
    let observed = Observed {
        jobs: jobs.list(&list).await.map_err(kube_err("list Jobs"))?.items,
        pods: pods.list(&list).await.map_err(kube_err("list pods"))?.items,
    };
    let now = Utc::now();
    let plan = plan(backup, &observed, &ctx.defaults, now);
    let uid = backup.uid();
    let mut events = plan.events.clone();

    if let Some(mut desired) = plan.cron_job.clone() {
        let hash = spec_hash(&desired);
        desired
            .annotations_mut()
            .insert(SPEC_HASH.into(), hash.clone());
        let existing = owned_cron_jobs
            .iter()
            .find(|c| c.name_any() == plan.cron_job_name);
        if existing.is_none() {
            // A CronJob of that name that is not ours (no label, another
            // owner) must not be taken over by a forced apply.
            if let Some(foreign) = cron_jobs
                .get_opt(&plan.cron_job_name)
                .await
                .map_err(kube_err(format!("get CronJob {}", plan.cron_job_name)))?
            {
                if !foreign
                    .owner_references()
                    .iter()
                    .any(|o| Some(&o.uid) == uid.as_ref())
                {
                    return conflict(backup, ctx, &namespace, &name, plan, now).await;
                }
            }
        }
        let change = match existing.map(|c| c.annotations().get(SPEC_HASH)) {
            None => Some((
                "CronJobCreated",
                format!("created CronJob {}", plan.cron_job_name),
            )),
            Some(old) if old != Some(&hash) => Some((
                "CronJobUpdated",
                format!("updated CronJob {}", plan.cron_job_name),
            )),
            Some(_) => None,
        };
        // Applied on every reconcile so a hand edit of the CronJob is put
        // back; an apply that changes nothing is not written by the API server.
        cron_jobs
            .patch(
                &plan.cron_job_name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&desired),
            )
            .await
            .map_err(kube_err(format!("apply CronJob {}", plan.cron_job_name)))?;
        if let Some((reason, note)) = change {
            events.push(super::Event {
                warning: false,
                reason,
                note,
            });
        }
        // CronJobs of this backup under another name (a rename of the naming
        // scheme, a manual copy with our owner reference) are not desired.
        for stale in owned_cron_jobs.iter().filter(|c| {
            c.name_any() != plan.cron_job_name
                && c.owner_references()
                    .iter()
                    .any(|o| Some(&o.uid) == uid.as_ref())
        }) {
            cron_jobs
                .delete(&stale.name_any(), &DeleteParams::background())
                .await
                .map_err(kube_err(format!("delete CronJob {}", stale.name_any())))?;
            events.push(super::Event {
                warning: false,
                reason: "CronJobDeleted",
                note: format!(
                    "deleted CronJob {} that is no longer desired",
                    stale.name_any()
                ),
            });
        }
    }

    if let Some(job) = &plan.run_now {
        // The name comes from the token: after a failed status write the
        // retry finds this Job rather than starting another.
        match jobs.create(&PostParams::default(), job).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(kube_err("create the run-now Job")(e)),
        }
    }

    if backup.status.as_ref() != Some(&plan.status) {
        let api: Api<VerticeBackup> = Api::namespaced(ctx.client.clone(), &namespace);
        let patch = serde_json::json!({
            "apiVersion": "vertice.io/v1alpha1",
            "kind": "VerticeBackup",
            "status": plan.status,
        });
        api.patch_status(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
        .map_err(kube_err("patch VerticeBackup status"))?;
    }

    let labels = [namespace.as_str(), name.as_str()];
    ctx.metrics
        .backups_overdue
        .with_label_values(&labels)
        .set(i64::from(plan.overdue_since.is_some()));
    let reference = backup.object_ref(&());
    for event in &events {
        if event.reason == super::status::reason::BACKUP_OVERDUE {
            ctx.metrics
                .overdue_detected
                .with_label_values(&labels)
                .inc();
        }
        let published = ctx
            .recorder
            .publish(
                &KubeEvent {
                    type_: if event.warning {
                        EventType::Warning
                    } else {
                        EventType::Normal
                    },
                    reason: event.reason.into(),
                    note: Some(truncate(&event.note, 1024)),
                    action: "Reconcile".into(),
                    secondary: None,
                },
                &reference,
            )
            .await;
        // An event that cannot be recorded must not undo the reconcile.
        if let Err(e) = published {
            tracing::warn!(%namespace, backup = %name, reason = event.reason, error = %e, "could not record event");
        }
    }
    tracing::debug!(%namespace, backup = %name, requeue = ?plan.requeue_after, "reconciled");
    Ok(Action::requeue(plan.requeue_after))
}

/// Another object holds the CronJob's name: say so in the status and an
/// event, change nothing, and look again later.
async fn conflict(
    backup: &VerticeBackup,
    ctx: &Context,
    namespace: &str,
    name: &str,
    plan: super::Plan,
    now: chrono::DateTime<Utc>,
) -> Result<Action, Error> {
    use vertice_crds::backup_status::{condition, BackupPhase};
    use vertice_crds::common::{find_condition, set_condition, Condition};
    let message = format!(
        "a CronJob named {} exists and is not owned by this VerticeBackup; rename or delete it",
        plan.cron_job_name
    );
    let mut status = plan.status;
    set_condition(
        &mut status.conditions,
        Condition {
            observed_generation: backup.metadata.generation,
            ..Condition::new(condition::READY, false, CRON_JOB_CONFLICT, &message, now)
        },
    );
    status.phase = Some(BackupPhase::Invalid);
    let was_conflict = backup
        .status
        .as_ref()
        .and_then(|s| find_condition(&s.conditions, condition::READY))
        .is_some_and(|c| c.reason == CRON_JOB_CONFLICT);
    if backup.status.as_ref() != Some(&status) {
        let api: Api<VerticeBackup> = Api::namespaced(ctx.client.clone(), namespace);
        let patch = serde_json::json!({"apiVersion": "vertice.io/v1alpha1", "kind": "VerticeBackup", "status": status});
        api.patch_status(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
        .map_err(kube_err("patch VerticeBackup status"))?;
    }
    if !was_conflict {
        let event = KubeEvent {
            type_: EventType::Warning,
            reason: CRON_JOB_CONFLICT.into(),
            note: Some(message),
            action: "Reconcile".into(),
            secondary: None,
        };
        if let Err(e) = ctx.recorder.publish(&event, &backup.object_ref(&())).await {
            tracing::warn!(%namespace, backup = %name, error = %e, "could not record event");
        }
    }
    Ok(Action::requeue(super::MAX_REQUEUE))
}

/// Requeue with a short delay, and count the error.
pub fn error_policy(backup: Arc<VerticeBackup>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics
        .reconcile_errors
        .with_label_values(&[CONTROLLER])
        .inc();
    tracing::warn!(namespace = ?backup.namespace(), backup = %backup.name_any(), error = %error, "reconcile failed");
    Action::requeue(Duration::from_secs(30))
}

fn spec_hash(cron_job: &CronJob) -> String {
    let bytes = serde_json::to_vec(&cron_job.spec).unwrap_or_default();
    hex::encode(&Sha256::digest(&bytes)[..8])
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let cut = (0..=max)
        .rev()
        .find(|i| s.is_char_boundary(*i))
        .unwrap_or(0);
    format!("{}…", &s[..cut])
}
