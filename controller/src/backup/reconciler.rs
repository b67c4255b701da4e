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
use vertice_crds::backup_status::BackupPhase;
use vertice_crds::VerticeBackup;

use super::admission::{self, Admission};
use super::children::{self, Change, ChildPlan, SPEC_HASH};
use super::cron_job::JobDefaults;
use super::scheduled_run::RunKind;
use super::status::Observed;
use super::{names, plan, run_now};
use crate::context::{Event, Shared, FIELD_MANAGER};
use crate::error::{kube_err, Error};
use crate::secret_labels::SecretLabelCache;
use crate::shared::set_observed;

pub const CONTROLLER: &str = "backup";
const CRON_JOB_CONFLICT: &str = "CronJobConflict";
const CRON_JOB_REFUSED: &str = "CronJobRefused";
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
    let client = &shared.client;
    let cron_jobs: Api<CronJob> = Api::namespaced(client.clone(), &namespace);
    let (owned, observed) = observe(client, &cron_jobs, &namespace, &name).await?;
    let secrets = read_secrets(ctx, backup, &namespace, &owned).await?;
    let admission = Admission {
        tenancy: &shared.tenancy,
        secrets: &secrets,
    };
    let now = Utc::now();
    let plan = plan(backup, &observed, &ctx.defaults, &admission, now);
    let mut pass = Pass {
        shared,
        cron_jobs: &cron_jobs,
        owned: &owned,
        uid: backup.uid(),
        stored: backup.status.as_ref(),
        status: plan.status.clone(),
        events: plan.events.clone(),
    };
    if let Some((reason, message)) = pass.write_cron_jobs(&plan).await? {
        return not_ready(backup, ctx, plan, now, reason, message).await;
    }
    if plan.refused.is_some() {
        pass.revoke_all().await?;
    } else if plan.backup.cron_job.is_none() {
        // An invalid spec keeps the last good CronJobs, unless they now
        // run what is no longer allowed.
        pass.revoke_disallowed(&namespace, &name, &ctx.defaults, &admission)
            .await?;
    }
    let jobs: Api<Job> = Api::namespaced(client.clone(), &namespace);
    start_on_demand(shared, &jobs, &plan).await?;
    let Pass { status, events, .. } = pass;
    if backup.status.as_ref() != Some(&status) {
        let api: Api<VerticeBackup> = Api::namespaced(client.clone(), &namespace);
        shared
            .apply_status(&api, &name, API_VERSION, KIND, &status)
            .await?;
    }
    report(shared, backup, &plan, &status, &events).await;
    tracing::debug!(%namespace, backup = %name, requeue = ?plan.requeue_after, "reconciled");
    Ok(Action::requeue(plan.requeue_after))
}

/// The CronJobs the backup owns, and its Jobs and pods.
async fn observe(
    client: &kube::Client,
    cron_jobs: &Api<CronJob>,
    namespace: &str,
    name: &str,
) -> Result<(Vec<CronJob>, Observed), Error> {
    let selector = format!(
        "{}={}",
        names::BACKUP_LABEL,
        names::labels(name)[names::BACKUP_LABEL]
    );
    let list = ListParams::default().labels(&selector);
    let jobs: Api<Job> = Api::namespaced(client.clone(), namespace);
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let owned = cron_jobs
        .list(&list)
        .await
        .map_err(kube_err("list CronJobs"))?
        .items;
    let observed = Observed {
        jobs: jobs.list(&list).await.map_err(kube_err("list Jobs"))?.items,
        pods: pods.list(&list).await.map_err(kube_err("list pods"))?.items,
    };
    Ok((owned, observed))
}

/// Only the labels of the Secrets the backup names (metadata, never the
/// data): whether their owners opted them in. With the Secrets the
/// CronJobs written earlier mount: an invalid spec keeps them, and they
/// are judged by today's labels too.
async fn read_secrets(
    ctx: &Context,
    backup: &VerticeBackup,
    namespace: &str,
    owned: &[CronJob],
) -> Result<crate::secret_labels::SecretsSeen, Error> {
    let mut uses = admission::secret_uses(&backup.spec);
    for cron_job in owned {
        for name in admission::pod_secrets(cron_job) {
            uses.push(admission::SecretUse {
                field: format!("CronJob {}", cron_job.name_any()),
                name,
            });
        }
    }
    let shared = &ctx.shared;
    ctx.secrets
        .read(
            &shared.client,
            shared.tenancy.secret_reference_policy,
            namespace,
            &uses,
        )
        .await
}

/// One reconcile's writes of CronJobs: what it read, and the status and
/// events it builds on the plan's.
struct Pass<'a> {
    shared: &'a Shared,
    cron_jobs: &'a Api<CronJob>,
    owned: &'a [CronJob],
    uid: Option<String>,
    /// The status as read.
    stored: Option<&'a vertice_crds::VerticeBackupStatus>,
    status: vertice_crds::VerticeBackupStatus,
    events: Vec<Event>,
}

impl Pass<'_> {
    /// Applies the backup's CronJob and, with `spec.drill`, the drill's
    /// (`children::decide`); each other CronJob the backup owns is stale.
    /// `Some((reason, message))` when one cannot be written: another object
    /// holds its name, or the API server refuses it.
    async fn write_cron_jobs(
        &mut self,
        plan: &super::Plan,
    ) -> Result<Option<(&'static str, String)>, Error> {
        let desired: Vec<(RunKind, &CronJob, &str)> = plan
            .runs()
            .into_iter()
            .filter_map(|run| Some((run.kind, run.cron_job.as_ref()?, run.cron_job_name.as_str())))
            .collect();
        let keep: Vec<&str> = desired.iter().map(|(_, _, n)| *n).collect();
        for (i, (kind, cron_job, cron_name)) in desired.iter().enumerate() {
            let mut cron_job = (*cron_job).clone();
            let hash = spec_hash(&cron_job);
            cron_job.annotations_mut().insert(SPEC_HASH.into(), hash);
            let same_name = if children::needs_name_check(cron_name, self.owned) {
                self.cron_jobs
                    .get_opt(cron_name)
                    .await
                    .map_err(kube_err(format!("get CronJob {cron_name}")))?
            } else {
                None
            };
            let applied_generation = self.stored.and_then(|s| kind.applied_generation(s));
            let child = children::decide(
                &cron_job,
                &keep,
                self.owned,
                same_name.as_ref(),
                self.uid.as_deref(),
                applied_generation,
            );
            let ChildPlan::Apply {
                desired: to_apply,
                change,
                write,
                stale,
            } = child
            else {
                let message = format!(
                    "a CronJob named {cron_name} exists and is not owned by this VerticeBackup; rename or delete it"
                );
                return Ok(Some((CRON_JOB_CONFLICT, message)));
            };
            if write {
                if let Some(refused) = self.apply(*kind, cron_name, &to_apply).await? {
                    return Ok(Some((CRON_JOB_REFUSED, refused)));
                }
            }
            let announced = match change {
                Change::Created => Some(("CronJobCreated", "created")),
                Change::Updated => Some(("CronJobUpdated", "updated")),
                Change::Unchanged => None,
            };
            if let Some((reason, verb)) = announced {
                self.events
                    .push(Event::normal(reason, format!("{verb} CronJob {cron_name}")));
            }
            // Stale ones are the same for every pass: delete them once,
            // after the last.
            if i + 1 == desired.len() {
                for old in stale {
                    delete_stale(self.shared, self.cron_jobs, &old, &mut self.events).await?;
                }
            }
        }
        Ok(None)
    }

    /// Server-side applies one CronJob and records the generation applied.
    /// `Some(message)` when the API server refuses it as invalid: retrying
    /// cannot help, the spec must change.
    async fn apply(
        &mut self,
        kind: RunKind,
        cron_name: &str,
        cron_job: &CronJob,
    ) -> Result<Option<String>, Error> {
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let applied = match self
            .shared
            .leading
            .write(
                self.cron_jobs
                    .patch(cron_name, &params, &Patch::Apply(cron_job)),
            )
            .await
        {
            Ok(applied) => applied,
            Err(kube::Error::Api(e)) if e.code == 422 => {
                return Ok(Some(format!(
                    "The API server refused CronJob {cron_name}: {}. Fix the VerticeBackup field it comes from (spec.schedule for the schedule and time zone).",
                    e.message.trim_end_matches('.')
                )));
            }
            Err(e) => return Err(kube_err(format!("apply CronJob {cron_name}"))(e)),
        };
        kind.set_applied_generation(&mut self.status, applied.metadata.generation);
        Ok(None)
    }

    /// A refused backup keeps no CronJob.
    async fn revoke_all(&mut self) -> Result<(), Error> {
        for old in children::revoked(self.owned, self.uid.as_deref()) {
            delete_stale(self.shared, self.cron_jobs, &old, &mut self.events).await?;
        }
        for kind in RunKind::ALL {
            kind.set_applied_generation(&mut self.status, None);
        }
        Ok(())
    }

    /// The CronJobs an invalid spec keeps, less those that now run what is
    /// no longer allowed.
    async fn revoke_disallowed(
        &mut self,
        namespace: &str,
        name: &str,
        defaults: &super::JobDefaults,
        admission: &Admission<'_>,
    ) -> Result<(), Error> {
        for cron_name in children::revoked(self.owned, self.uid.as_deref()) {
            let Some(cron_job) = self.owned.iter().find(|c| c.name_any() == cron_name) else {
                continue;
            };
            if let Err(refusal) =
                admission::check_existing(cron_job, namespace, defaults, admission)
            {
                tracing::info!(%namespace, backup = %name, cron_job = %cron_name, %refusal, "revoking a CronJob of an invalid spec");
                delete_stale(self.shared, self.cron_jobs, &cron_name, &mut self.events).await?;
            }
        }
        Ok(())
    }
}

/// Creates the on-demand Jobs the plan starts. The name comes from the
/// token: after a failed status write the retry finds this Job rather than
/// starting another.
async fn start_on_demand(
    shared: &Shared,
    jobs: &Api<Job>,
    plan: &super::Plan,
) -> Result<(), Error> {
    for run in plan.runs() {
        let Some(job) = &run.run_now else { continue };
        let params = PostParams::default();
        match shared.leading.write(jobs.create(&params, job)).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => {
                return Err(kube_err(format!("create the {} Job", run.kind.request()))(
                    e,
                ))
            }
        }
    }
    Ok(())
}

/// The backup's gauges, and its Events (counting overdue ones).
async fn report(
    shared: &Shared,
    backup: &VerticeBackup,
    plan: &super::Plan,
    status: &vertice_crds::VerticeBackupStatus,
    events: &[Event],
) {
    let (namespace, name) = (backup.namespace().unwrap_or_default(), backup.name_any());
    let labels = [namespace.as_str(), name.as_str()];
    shared
        .metrics
        .backups_overdue
        .with_label_values(&labels)
        .set(i64::from(plan.overdue_since.is_some()));
    shared
        .metrics
        .backups_unverified
        .with_label_values(&labels)
        .set(i64::from(plan.unverified));
    set_invalid(
        shared,
        &namespace,
        &name,
        status.phase == Some(BackupPhase::Invalid),
    );
    let reference = backup.object_ref(&());
    for event in events {
        if event.reason == super::status::reason::BACKUP_OVERDUE {
            shared
                .metrics
                .overdue_detected
                .with_label_values(&labels)
                .inc();
        }
        shared.publish(&reference, event).await;
    }
}

/// Deletes a CronJob the backup owns and no longer wants, and says so.
async fn delete_stale(
    shared: &Shared,
    cron_jobs: &Api<CronJob>,
    old: &str,
    events: &mut Vec<Event>,
) -> Result<(), Error> {
    let params = DeleteParams::background();
    shared
        .leading
        .write(cron_jobs.delete(old, &params))
        .await
        .map_err(kube_err(format!("delete CronJob {old}")))?;
    events.push(Event::normal(
        "CronJobDeleted",
        format!("deleted CronJob {old} that is no longer desired"),
    ));
    Ok(())
}

/// The CronJob cannot be written (another object holds its name, or the
/// API server refuses it): say so in the status (phase Invalid, Ready False
/// with `reason`) and, on the transition, an Event; change nothing, and
/// look again later.
async fn not_ready(
    backup: &VerticeBackup,
    ctx: &Context,
    plan: super::Plan,
    now: chrono::DateTime<Utc>,
    reason: &'static str,
    message: String,
) -> Result<Action, Error> {
    use vertice_crds::backup_status::condition;
    use vertice_crds::common::{find_condition, keep_transition_times, Condition};
    let (Some(namespace), name) = (backup.namespace(), backup.name_any()) else {
        return Ok(Action::await_change());
    };
    let (namespace, name) = (namespace.as_str(), name.as_str());
    let super::Plan {
        mut status,
        events: plan_events,
        ..
    } = plan;
    // Judged against the stored Ready condition, not the one `plan` just
    // set: Ready was False before and still is, so it keeps its transition
    // time and the status equals the stored one (no write on each pass).
    let ready = Condition::new(condition::READY, false, reason, &message, now);
    set_observed(&mut status.conditions, backup.metadata.generation, ready);
    let stored = backup
        .status
        .as_ref()
        .map_or(&[][..], |s| &s.conditions[..]);
    if let Some(ready) = status
        .conditions
        .iter_mut()
        .find(|c| c.type_ == condition::READY)
    {
        keep_transition_times(std::slice::from_mut(ready), stored);
    }
    status.phase = Some(BackupPhase::Invalid);
    // An on-demand run waits until the conflict is resolved.
    for kind in RunKind::ALL {
        kind.keep_on_demand(&mut status, backup.status.as_ref());
    }
    let was_said = backup
        .status
        .as_ref()
        .and_then(|s| find_condition(&s.conditions, condition::READY))
        .is_some_and(|c| c.reason == reason && c.message == message);
    if backup.status.as_ref() != Some(&status) {
        let api: Api<VerticeBackup> = Api::namespaced(ctx.shared.client.clone(), namespace);
        ctx.shared
            .apply_status(&api, name, API_VERSION, KIND, &status)
            .await?;
    }
    set_invalid(&ctx.shared, namespace, name, true);
    // The news `plan` found (finished runs, a blocked run): its records are
    // in the status just written, so this is the only time to say it. Not
    // an on-demand run's start or queueing: neither happened.
    let reference = backup.object_ref(&());
    for event in plan_events
        .iter()
        .filter(|e| !run_now::is_on_demand_news(e.reason))
    {
        ctx.shared.publish(&reference, event).await;
    }
    if !was_said {
        let event = Event::warning(reason, message);
        ctx.shared.publish(&reference, &event).await;
    }
    Ok(Action::requeue(super::MAX_REQUEUE))
}

/// `vertice_backup_invalid`: a backup whose spec cannot run is an alert,
/// not only a phase (nothing new runs, and no overdue deadline exists).
fn set_invalid(shared: &Shared, namespace: &str, name: &str, invalid: bool) {
    shared
        .metrics
        .backups_invalid
        .with_label_values(&[namespace, name])
        .set(i64::from(invalid));
}

/// A failed reconcile is counted, told in a Warning Event and retried in
/// 30 s (a backup's next run is minutes away at the soonest).
pub fn error_policy(backup: Arc<VerticeBackup>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.shared
        .failed_reconcile(CONTROLLER, backup.as_ref(), error, Duration::from_secs(30))
}

fn spec_hash(cron_job: &CronJob) -> String {
    let bytes = serde_json::to_vec(&cron_job.spec).unwrap_or_default();
    hex::encode(&Sha256::digest(&bytes)[..8])
}
