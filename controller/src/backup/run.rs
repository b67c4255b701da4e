//! The VerticeBackup controller's loop: a kube Controller over stripped
//! backups, owning their CronJobs and watching their Jobs, on the leader;
//! and what the backups' watch cache keeps of each.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use futures::StreamExt;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Controller;
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, ResourceExt};
use vertice_crds::VerticeBackup;

use vertice_crds::backup_status::{DRILL_NOW_ANNOTATION, RUN_NOW_ANNOTATION};

use super::cron_job::JobDefaults;
use super::{names, reconciler};
use crate::config::Config;
use crate::context::Shared;
use crate::shared::{
    became_leader, housekeep, loop_error, require_crd, scoped, AbortOnDrop, Synced,
};
use crate::watches::{recovering, BoundedBackoff};

/// Reconciles in flight at once: each holds a few lists; unbounded, a
/// thousand new backups would be reconciled all at once and hold them all.
const CONCURRENCY: u16 = 8;
/// Events about one object within this window make one reconcile (creating
/// a CronJob, its status and our status patch arrive together).
const DEBOUNCE: Duration = Duration::from_millis(500);
/// VerticeBackups per list page of the initial list and relists.
const BACKUP_PAGE: u32 = 100;

/// Everything that can fail at start (the CRD check, `--agent-image`); the
/// future it returns runs the VerticeBackup controller until `stop`
/// resolves (then it takes no new work and ends once the reconciles in
/// flight are done). Nothing is watched or written before that future is
/// first polled, so the runtime finishes every controller's checks before
/// any controller runs.
pub async fn start(
    config: &Config,
    shared: Shared,
    ready: Synced,
    stop: impl Future<Output = ()> + Send + Sync + 'static,
) -> anyhow::Result<impl Future<Output = ()>> {
    let client = shared.client.clone();
    let backups: Api<VerticeBackup> = scoped(&client, &config.watch_namespace);
    require_crd(&backups, "VerticeBackups").await?;
    let metrics = shared.metrics.clone();
    let became_leader = became_leader(shared.leading.watch());
    let context = Arc::new(context(config, shared)?);
    let controller = controller(&client, &config.watch_namespace, backups)
        // A new leader looks at everything at once instead of waiting for
        // the followers' requeue.
        .reconcile_all_on(became_leader)
        // Stops taking new work on SIGTERM; the caller bounds the drain.
        .graceful_shutdown_on(stop);
    Ok(async move {
        // Aborted with this future, also when it is dropped rather than ended.
        let _housekeeping = AbortOnDrop::spawn(housekeep(controller.store(), ready, move |live| {
            metrics.retain_backups(live)
        }));
        controller
            .run(reconciler::reconcile, reconciler::error_policy, context)
            .for_each(|result| async move {
                if let Err(e) = result {
                    tracing::debug!(error = loop_error(&e), "reconcile loop");
                }
            })
            .await;
    })
}

/// The controller over its three watches: the backups (the cache), the
/// CronJobs it owns and the Jobs that name a backup.
fn controller(
    client: &Client,
    namespace: &Option<String>,
    backups: Api<VerticeBackup>,
) -> Controller<VerticeBackup> {
    let ours = watcher::Config::default().labels(&format!(
        "app.kubernetes.io/managed-by={}",
        names::MANAGED_BY
    ));
    // The cache holds stripped backups; CronJobs and Jobs are watched as
    // metadata only (owner references and annotations are all the triggers
    // read), so neither a list page nor a watch event carries pod templates.
    let (reader, writer) = reflector::store();
    // Pages of 100: a list page is deserialized whole before the cache
    // takes its objects, and 500 backups at once were the heap's peak.
    // Each watch backs off on its own, bounded (`watches.rs`): an error of
    // one must not pause the others for long.
    let backup_stream = recovering(
        "verticebackups",
        watcher(backups, watcher::Config::default().page_size(BACKUP_PAGE)),
    )
    .modify(strip_backup)
    .reflect(writer)
    .applied_objects();
    let cron_jobs = recovering(
        "cronjobs",
        watcher(
            scoped::<PartialObjectMeta<CronJob>>(client, namespace),
            ours.clone(),
        ),
    )
    .touched_objects();
    let jobs = recovering(
        "jobs",
        watcher(scoped::<PartialObjectMeta<Job>>(client, namespace), ours),
    )
    .touched_objects();
    Controller::for_stream(backup_stream, reader)
        .owns_stream(cron_jobs)
        .watches_stream(jobs, |job: PartialObjectMeta<Job>| {
            let name = job
                .annotations()
                .get(names::BACKUP_NAME_ANNOTATION)?
                .clone();
            Some(ObjectRef::<VerticeBackup>::new(&name).within(&job.namespace()?))
        })
        .with_config(
            kube::runtime::controller::Config::default()
                .concurrency(CONCURRENCY)
                .debounce(DEBOUNCE),
        )
        // The triggers' errors pause all three watches together; kube's
        // default pause grows to a minute and was the minutes-long stall
        // after an API-server restart.
        .trigger_backoff(BoundedBackoff::default())
}

/// The reconciler's context: the shared one, and the settings every
/// CronJob takes from the controller's flags.
fn context(config: &Config, shared: Shared) -> anyhow::Result<reconciler::Context> {
    Ok(reconciler::Context {
        shared,
        defaults: JobDefaults {
            agent_image: config
                .agent_image
                .clone()
                .context("--agent-image (VERTICE_AGENT_IMAGE) is required")?,
            pushgateway_url: config.pushgateway_url.clone(),
        },
        secrets: Default::default(),
    })
}

/// Keeps what a reconcile reads of a VerticeBackup in the watch cache: its
/// managed fields (a tree of every field path, several KiB once the status
/// is applied) and annotations other than the run-now and drill-now tokens
/// (a client-side `kubectl apply` copies the whole object into one) are
/// dropped, so a thousand backups cost a thousand specs and statuses.
pub fn strip_backup(backup: &mut VerticeBackup) {
    backup.metadata.managed_fields = None;
    if let Some(annotations) = backup.metadata.annotations.as_mut() {
        annotations.retain(|k, _| k == RUN_NOW_ANNOTATION || k == DRILL_NOW_ANNOTATION);
    }
}

#[cfg(test)]
mod tests {
    use super::strip_backup;
    use kube::api::ObjectMeta;
    use std::collections::BTreeMap;
    use vertice_crds::backup_status::{DRILL_NOW_ANNOTATION, RUN_NOW_ANNOTATION};
    use vertice_crds::VerticeBackup;

    #[test]
    fn the_cache_keeps_the_tokens_and_drops_managed_fields_and_last_applied() {
        let mut backup: VerticeBackup = serde_json::from_value(serde_json::json!({
            "apiVersion": "vertice.io/v1alpha1", "kind": "VerticeBackup",
            "metadata": {"name": "db", "namespace": "app"},
            "spec": {"target": {"postgres": {"host": "db", "database": "shop", "user": "backup",
                                              "passwordSecretRef": {"name": "db", "key": "password"}}},
                     "schedule": {"cron": "@daily"}, "store": {"s3": {"bucket": "backups"}}},
        }))
        .expect("test value");
        backup.metadata = ObjectMeta {
            name: Some("db".into()),
            annotations: Some(BTreeMap::from([
                (RUN_NOW_ANNOTATION.to_string(), "t1".to_string()),
                (DRILL_NOW_ANNOTATION.to_string(), "t2".to_string()),
                (
                    "kubectl.kubernetes.io/last-applied-configuration".to_string(),
                    "{\"spec\":{}}".to_string(),
                ),
            ])),
            managed_fields: Some(vec![Default::default()]),
            labels: Some(BTreeMap::from([("team".to_string(), "a".to_string())])),
            ..Default::default()
        };
        let spec = serde_json::to_value(&backup.spec).expect("test value");
        strip_backup(&mut backup);
        assert_eq!(backup.metadata.managed_fields, None);
        let kept: Vec<&String> = backup
            .metadata
            .annotations
            .as_ref()
            .expect("test value")
            .keys()
            .collect();
        assert_eq!(kept, [DRILL_NOW_ANNOTATION, RUN_NOW_ANNOTATION]);
        assert_eq!(
            backup.metadata.labels.as_ref().expect("test value")["team"],
            "a"
        );
        assert_eq!(
            serde_json::to_value(&backup.spec).expect("test value"),
            spec
        );
    }
}
