//! The I/O shell of the backup reconciler: observe children, carry out the
//! child plan (`children::decide`) and the run-now Job, apply the status,
//! record events and metrics. Decisions live in `plan` and `children`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};
use sha2::{Digest, Sha256};
use vertice_crds::VerticeBackup;

use super::children::{self, Change, ChildPlan, SPEC_HASH};
use super::{admission, names, plan, Admission, JobDefaults, Observed};
use crate::context::{Event, Shared, FIELD_MANAGER};
use crate::error::{kube_err, Error};
use crate::secret_labels::SecretLabelCache;

pub const CONTROLLER: &str = "backup";
const CRON_JOB_CONFLICT: &str = "CronJobConflict";
const API_VERSION: &str = "vertice.io/v1alpha1";
const KIND: &str = "VerticeBackup";

pub struct Context {
    pub shared: Shared,
    pub defaults: JobDefaults,
    /// Labels of the Secrets backups name, read as metadata, kept briefly.
    pub secrets: SecretLabelCache,
}

pub async fn reconcile(backup: Arc<VerticeBackup>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let metrics = &ctx.shared.metrics;
    metrics.reconciles.with_label_values(&[CONTROLLER]).inc();
    let result = reconcile_inner(&backup, &ctx).await;
    metrics
        .reconcile_duration
        .with_label_values(&[CONTROLLER])
        .observe(started.elapsed().as_secs_f64());
    result
}

async fn reconcile_inner(backup: &VerticeBackup, ctx: &Context) -> Result<Action, Error> {
    let shared = &ctx.shared;
    if !shared.is_leading() {
        // Followers keep watching; they start writing the moment they lead.
        return Ok(Action::requeue(Duration::from_secs(15)));
    }
    let (Some(namespace), name) = (backup.namespace(), backup.name_any()) else {
        return Ok(Action::await_change());
    };
    if backup.meta().deletion_timestamp.is_some() {
        // Owner references let the garbage collector remove the CronJob.
        shared.metrics.forget_backup(&namespace, &name);
        return Ok(Action::await_change());
    }
    let selector = format!(
        "{}={}",
        names::BACKUP_LABEL,
        names::labels(&name)[names::BACKUP_LABEL]
    );
    let list = ListParams::default().labels(&selector);
    let client = &shared.client;
    let cron_jobs: Api<CronJob> = Api::namespaced(client.clone(), &namespace);
    let jobs: Api<Job> = Api::namespaced(client.clone(), &namespace);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let owned = cron_jobs
        .list(&list)
        .await
        .map_err(kube_err("list CronJobs"))?
        .items;
    let observed = Observed {
        jobs: jobs.list(&list).await.map_err(kube_err("list Jobs"))?.items,
        pods: pods.list(&list).await.map_err(kube_err("list pods"))?.items,
    };
    // Only the labels of the Secrets the backup names (metadata, never the
    // data): whether their owners opted them in.
    // With the Secrets the CronJobs written earlier mount: an invalid
    // spec keeps them, and they are judged by today's labels too.
    let mut uses = admission::secret_uses(&backup.spec);
    for cron_job in &owned {
        for name in admission::pod_secrets(cron_job) {
            uses.push(admission::SecretUse {
                field: format!("CronJob {}", cron_job.name_any()),
                name,
            });
        }
    }
    let secrets = ctx
        .secrets
        .read(
            client,
            shared.tenancy.secret_reference_policy,
            &namespace,
            &uses,
        )
        .await?;
    let admission = Admission {
        tenancy: &shared.tenancy,
        secrets: &secrets,
    };
    let now = Utc::now();
    let plan = plan(backup, &observed, &ctx.defaults, &admission, now);
    let uid = backup.uid();
    let mut events = plan.events.clone();
    let mut status = plan.status.clone();

    // The backup's CronJob and, with `spec.drill`, the drill's; each other
    // CronJob the backup owns is stale.
    let desired: Vec<(CronJob, String)> = [
        plan.cron_job
            .clone()
            .map(|c| (c, plan.cron_job_name.clone())),
        plan.drill_cron_job
            .clone()
            .map(|c| (c, plan.drill_cron_job_name.clone())),
    ]
    .into_iter()
    .flatten()
    .collect();
    let keep: Vec<&str> = desired.iter().map(|(_, n)| n.as_str()).collect();
    for (cron_job, cron_name) in &desired {
        let (mut cron_job, cron_name) = (cron_job.clone(), cron_name.as_str());
        let is_drill = cron_name == plan.drill_cron_job_name;
        let applied_generation = backup.status.as_ref().and_then(|s| {
            if is_drill {
                s.drill_cron_job_generation
            } else {
                s.cron_job_generation
            }
        });
        let hash = spec_hash(&cron_job);
        cron_job.annotations_mut().insert(SPEC_HASH.into(), hash);
        let same_name = if children::needs_name_check(cron_name, &owned) {
            cron_jobs
                .get_opt(cron_name)
                .await
                .map_err(kube_err(format!("get CronJob {cron_name}")))?
        } else {
            None
        };
        match children::decide(
            &cron_job,
            &keep,
            &owned,
            same_name.as_ref(),
            uid.as_deref(),
            applied_generation,
        ) {
            ChildPlan::Conflict => {
                return conflict(backup, ctx, &namespace, &name, cron_name, plan, now).await
            }
            ChildPlan::Apply {
                desired,
                change,
                write,
                stale,
            } => {
                if write {
                    let applied = cron_jobs
                        .patch(
                            cron_name,
                            &PatchParams::apply(FIELD_MANAGER).force(),
                            &Patch::Apply(&*desired),
                        )
                        .await
                        .map_err(kube_err(format!("apply CronJob {cron_name}")))?;
                    if is_drill {
                        status.drill_cron_job_generation = applied.metadata.generation;
                    } else {
                        status.cron_job_generation = applied.metadata.generation;
                    }
                }
                let announced = match change {
                    Change::Created => Some(("CronJobCreated", "created")),
                    Change::Updated => Some(("CronJobUpdated", "updated")),
                    Change::Unchanged => None,
                };
                if let Some((reason, verb)) = announced {
                    events.push(Event {
                        warning: false,
                        reason,
                        note: format!("{verb} CronJob {cron_name}"),
                    });
                }
                // Stale ones are the same for both passes: delete them once.
                if is_drill || plan.drill_cron_job.is_none() {
                    for old in stale {
                        delete_stale(&cron_jobs, &old, &mut events).await?;
                    }
                }
            }
        }
    }

    if plan.refused.is_some() {
        for old in children::revoked(&owned, uid.as_deref()) {
            delete_stale(&cron_jobs, &old, &mut events).await?;
        }
        status.cron_job_generation = None;
        status.drill_cron_job_generation = None;
    } else if plan.cron_job.is_none() {
        // An invalid spec keeps the last good CronJobs, unless they now
        // run what is no longer allowed.
        for cron_name in children::revoked(&owned, uid.as_deref()) {
            let Some(cron_job) = owned.iter().find(|c| c.name_any() == cron_name) else {
                continue;
            };
            if let Err(refusal) =
                admission::check_existing(cron_job, &namespace, &ctx.defaults, &admission)
            {
                tracing::info!(%namespace, backup = %name, cron_job = %cron_name, %refusal, "revoking a CronJob of an invalid spec");
                delete_stale(&cron_jobs, &cron_name, &mut events).await?;
            }
        }
    }

    for (job, what) in [(&plan.run_now, "run-now"), (&plan.drill_now, "drill-now")] {
        let Some(job) = job else { continue };
        // The name comes from the token: after a failed status write the
        // retry finds this Job rather than starting another.
        match jobs.create(&PostParams::default(), job).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(kube_err(format!("create the {what} Job"))(e)),
        }
    }

    if backup.status.as_ref() != Some(&status) {
        let api: Api<VerticeBackup> = Api::namespaced(client.clone(), &namespace);
        shared
            .apply_status(&api, &name, API_VERSION, KIND, &status)
            .await?;
    }

    shared
        .metrics
        .backups_overdue
        .with_label_values(&[namespace.as_str(), name.as_str()])
        .set(i64::from(plan.overdue_since.is_some()));
    shared
        .metrics
        .backups_unverified
        .with_label_values(&[namespace.as_str(), name.as_str()])
        .set(i64::from(plan.unverified));
    let reference = backup.object_ref(&());
    for event in &events {
        if event.reason == super::status::reason::BACKUP_OVERDUE {
            shared
                .metrics
                .overdue_detected
                .with_label_values(&[namespace.as_str(), name.as_str()])
                .inc();
        }
        shared.publish(&reference, event).await;
    }
    tracing::debug!(%namespace, backup = %name, requeue = ?plan.requeue_after, "reconciled");
    Ok(Action::requeue(plan.requeue_after))
}

/// Another object holds the CronJob's name: say so in the status and an
/// event, change nothing, and look again later.
async fn delete_stale(
    cron_jobs: &Api<CronJob>,
    old: &str,
    events: &mut Vec<Event>,
) -> Result<(), Error> {
    cron_jobs
        .delete(old, &DeleteParams::background())
        .await
        .map_err(kube_err(format!("delete CronJob {old}")))?;
    events.push(Event {
        warning: false,
        reason: "CronJobDeleted",
        note: format!("deleted CronJob {old} that is no longer desired"),
    });
    Ok(())
}

async fn conflict(
    backup: &VerticeBackup,
    ctx: &Context,
    namespace: &str,
    name: &str,
    cron_name: &str,
    plan: super::Plan,
    now: chrono::DateTime<Utc>,
) -> Result<Action, Error> {
    use vertice_crds::backup_status::{condition, BackupPhase};
    use vertice_crds::common::{find_condition, set_condition, Condition};
    let message = format!(
        "a CronJob named {cron_name} exists and is not owned by this VerticeBackup; rename or delete it"
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
    // An on-demand run waits until the conflict is resolved.
    status.run_now = backup.status.as_ref().and_then(|s| s.run_now.clone());
    status.drill_now = backup.status.as_ref().and_then(|s| s.drill_now.clone());
    let was_conflict = backup
        .status
        .as_ref()
        .and_then(|s| find_condition(&s.conditions, condition::READY))
        .is_some_and(|c| c.reason == CRON_JOB_CONFLICT);
    if backup.status.as_ref() != Some(&status) {
        let api: Api<VerticeBackup> = Api::namespaced(ctx.shared.client.clone(), namespace);
        ctx.shared
            .apply_status(&api, name, API_VERSION, KIND, &status)
            .await?;
    }
    if !was_conflict {
        let event = Event {
            warning: true,
            reason: CRON_JOB_CONFLICT,
            note: message,
        };
        ctx.shared.publish(&backup.object_ref(&()), &event).await;
    }
    Ok(Action::requeue(super::MAX_REQUEUE))
}

/// Counts the error by category, records a Warning event with the
/// category's reason, and requeues with a short delay.
pub fn error_policy(backup: Arc<VerticeBackup>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.shared
        .metrics
        .reconcile_errors
        .with_label_values(&[CONTROLLER, error.category.as_str()])
        .inc();
    tracing::warn!(namespace = ?backup.namespace(), backup = %backup.name_any(), category = error.category.as_str(), error = %error, "reconcile failed");
    let event = Event {
        warning: true,
        reason: error.category.event_reason(),
        note: error.to_string(),
    };
    let reference = backup.object_ref(&());
    tokio::spawn(async move { ctx.shared.publish(&reference, &event).await });
    Action::requeue(Duration::from_secs(30))
}

fn spec_hash(cron_job: &CronJob) -> String {
    let bytes = serde_json::to_vec(&cron_job.spec).unwrap_or_default();
    hex::encode(&Sha256::digest(&bytes)[..8])
}
