//! `vertice-agent prune` (and the prune after a successful backup): plan with
//! [`crate::retention::plan`], then act. A backup is deleted manifest first,
//! so it stops being a backup in one step; leftovers of an interrupted
//! delete are unfinished uploads, removed by a later run.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use super::store_from_args;
use crate::backup_id::BackupId;
use crate::catalog::{self, Scope};
use crate::cli::{OutputFormat, PruneArgs, RetentionArgs};
use crate::error::{Error, Result};
use crate::manifest::{Manifest, MANIFEST_FILE};
use crate::retention::{self, Backup, Policy};
use crate::store::{ObjectMeta, Store};
use crate::summary::RunSummary;

/// One line of the plan.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedAction {
    pub namespace: String,
    pub name: String,
    pub backup_id: String,
    pub time: Option<DateTime<Utc>>,
    /// `keep`, `delete` or `delete-unfinished`.
    pub action: &'static str,
    pub reasons: Vec<String>,
}

#[derive(Debug, Default, Serialize)]
pub struct PruneReport {
    pub actions: Vec<PlannedAction>,
    pub deleted_backups: u32,
    pub deleted_unfinished: u32,
    pub aborted_uploads: u32,
    pub dry_run: bool,
}

/// Builds the policy from flags; `Ok(None)` when no keep rule is set.
pub fn policy_from_args(args: &RetentionArgs) -> Result<Option<(Policy, Duration)>> {
    let unfinished_after = retention::parse_duration(&args.unfinished_after)
        .map_err(|e| Error::usage(format!("--unfinished-after: {e}")))?;
    if unfinished_after < Duration::hours(1) {
        return Err(Error::usage(
            "--unfinished-after must be at least 1h, or a running backup's upload could be removed",
        ));
    }
    if let Some(Err(e)) = args.policy.keep_within.as_ref().map(|w| w.get()) {
        return Err(Error::usage(format!("--keep-within: {e}")));
    }
    // The CRD's schema refuses 0; a flag or an environment variable can
    // still say it.
    if let Some(rule) = args.policy.counts().iter().find(|r| r.value == Some(0)) {
        return Err(Error::usage(format!(
            "{} 0 keeps nothing; omit the flag instead",
            rule.flag
        )));
    }
    let policy = args.policy.clone();
    Ok(policy.is_configured().then_some((policy, unfinished_after)))
}

pub async fn run(args: &PruneArgs, summary: &mut RunSummary) -> Result<String> {
    let Some((policy, unfinished_after)) = policy_from_args(&args.retention)? else {
        return Err(Error::usage(
            "prune needs a retention policy: set at least one of --keep-last, --keep-hourly, --keep-daily, --keep-weekly, --keep-monthly, --keep-yearly, --keep-within",
        ));
    };
    let scope = super::scope_of(&args.names)?;
    let store = store_from_args(&args.from, "--from", &args.store).await?;
    summary.store = Some(store.describe());
    summary.namespace = args.names.namespace.clone();
    summary.name = args.names.name.clone();
    let report = prune(
        store.as_ref(),
        &scope,
        &policy,
        unfinished_after,
        args.dry_run,
        crate::backup_id::now()?,
        // A prune reaches no source: backups whose data lives there stay.
        None,
    )
    .await?;
    Ok(match args.output {
        OutputFormat::Json => serde_json::to_string_pretty(&report)
            .map_err(|e| Error::target(format!("encoding the plan: {e}")))?,
        OutputFormat::Table => render_table(&report),
    })
}

/// Why a backup retention would delete is kept by a prune that cannot
/// reach where its data lives.
const OUTSIDE_THE_STORE: &str = "its data is a snapshot in the cluster's repository, deleted only through the cluster: the backup's own --keep-* run deletes it";

/// Plans and (unless `dry_run`) applies the policy to every backup series in
/// `scope`, each series on its own.
pub async fn prune(
    store: &dyn Store,
    scope: &Scope,
    policy: &Policy,
    unfinished_after: Duration,
    dry_run: bool,
    now: DateTime<Utc>,
    release: Option<&Release<'_>>,
) -> Result<PruneReport> {
    let objects = store.list(&scope.list_prefix()).await?;
    let dirs = backup_dirs(&objects);
    let manifests = catalog::load(store, scope).await?;
    let series = series_of(&manifests, &objects);
    let mut report = PruneReport {
        dry_run,
        ..PruneReport::default()
    };
    let held: BTreeMap<(String, String, String), &Manifest> = manifests
        .iter()
        .filter(|m| crate::engine::holds_data_outside_the_store(m))
        .map(|m| {
            (
                (m.namespace.clone(), m.name.clone(), m.backup_id.clone()),
                m,
            )
        })
        .collect();
    let plan = Plan {
        store,
        dirs: &dirs,
        dry_run,
        held: &held,
        release,
    };
    plan.apply_policy(&series, policy, now, &mut report).await?;
    let cutoff = now - unfinished_after;
    plan.remove_unfinished(scope, cutoff, &mut report).await?;
    if !dry_run {
        report.aborted_uploads = store
            .abort_stale_uploads(&scope.list_prefix(), cutoff)
            .await?;
    }
    tracing::info!(
        deleted = report.deleted_backups,
        unfinished = report.deleted_unfinished,
        aborted_uploads = report.aborted_uploads,
        dry_run,
        "prune finished"
    );
    Ok(report)
}

/// Every object grouped by its backup directory `<ns>/<name>/<id>`: what
/// deleting a backup (or an unfinished upload) removes.
fn backup_dirs(objects: &[ObjectMeta]) -> BTreeMap<String, Vec<String>> {
    let mut dirs: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for o in objects {
        let mut parts = o.key.splitn(4, '/');
        if let (Some(ns), Some(name), Some(id), Some(_)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        {
            dirs.entry(format!("{ns}/{name}/{id}"))
                .or_default()
                .push(o.key.clone());
        }
    }
    dirs
}

/// The backups of each series `(namespace, name)`, as retention sees them,
/// with the one whose manifest the store wrote last marked.
fn series_of(
    manifests: &[Manifest],
    objects: &[ObjectMeta],
) -> BTreeMap<(String, String), Vec<Backup>> {
    let written: BTreeMap<&str, DateTime<Utc>> = objects
        .iter()
        .filter_map(|o| Some((o.key.as_str(), o.modified?)))
        .collect();
    let mut series: BTreeMap<(String, String), Vec<Backup>> = BTreeMap::new();
    for m in manifests {
        series
            .entry((m.namespace.clone(), m.name.clone()))
            .or_default()
            .push(Backup {
                id: m.backup_id.clone(),
                time: catalog::series_time(m),
                written_last: false,
                parent: m.parent.clone(),
            });
    }
    for ((namespace, name), backups) in series.iter_mut() {
        mark_written_last(backups, |id| {
            let key = format!("{namespace}/{name}/{id}/{MANIFEST_FILE}");
            written.get(key.as_str()).copied()
        });
    }
    series
}

/// Deletes what a backup holds outside the store (a search cluster's
/// snapshot, through the cluster's API) before the backup itself goes.
/// Only a run that reaches the source has one (`backup --keep-*`); a
/// `prune` without it keeps such backups.
pub type Release<'r> =
    dyn Fn(&Manifest) -> futures::future::BoxFuture<'r, Result<()>> + Send + Sync + 'r;

/// What one prune acts on: the store, its backup directories, and whether
/// it only plans.
struct Plan<'a, 'r> {
    store: &'a dyn Store,
    dirs: &'a BTreeMap<String, Vec<String>>,
    dry_run: bool,
    /// Backups whose data lives outside the store, by (namespace, name, id).
    held: &'a BTreeMap<(String, String, String), &'a Manifest>,
    release: Option<&'a Release<'r>>,
}

impl Plan<'_, '_> {
    /// The retention policy, series by series: every backup is reported
    /// kept (with why) or deleted.
    async fn apply_policy(
        &self,
        series: &BTreeMap<(String, String), Vec<Backup>>,
        policy: &Policy,
        now: DateTime<Utc>,
        report: &mut PruneReport,
    ) -> Result<()> {
        for ((namespace, name), backups) in series {
            for decision in retention::plan(backups, policy, now) {
                let mut keep = decision.keep();
                let mut reasons: Vec<String> = decision
                    .keep_because
                    .iter()
                    .map(ToString::to_string)
                    .collect();
                let outside =
                    self.held
                        .get(&(namespace.clone(), name.clone(), decision.backup.id.clone()));
                if let (false, Some(_), None) = (keep, outside, self.release) {
                    keep = true;
                    reasons.push(OUTSIDE_THE_STORE.to_string());
                }
                report.actions.push(PlannedAction {
                    namespace: namespace.clone(),
                    name: name.clone(),
                    backup_id: decision.backup.id.clone(),
                    time: Some(decision.backup.time),
                    action: if keep { "keep" } else { "delete" },
                    reasons,
                });
                if keep || self.dry_run {
                    continue;
                }
                if let (Some(manifest), Some(release)) = (outside, self.release) {
                    // The data first: a backup whose snapshot could not be
                    // deleted stays listed (the next run tries again), and
                    // the other backups are pruned all the same.
                    if let Err(e) = release(manifest).await {
                        tracing::warn!(backup = %decision.backup.id, error = %e, "kept: its snapshot could not be deleted through the cluster");
                        if let Some(action) = report.actions.last_mut() {
                            action.action = "keep";
                            action
                                .reasons
                                .push(format!("deleting its snapshot failed: {e}"));
                        }
                        continue;
                    }
                }
                let dir = format!("{namespace}/{name}/{}", decision.backup.id);
                let keys = self.dirs.get(&dir).map(Vec::as_slice).unwrap_or(&[]);
                delete_backup(self.store, &dir, keys).await?;
                report.deleted_backups += 1;
            }
        }
        Ok(())
    }

    /// Unfinished uploads: a directory without any manifest (a readable one
    /// or not: a damaged manifest is never treated as unfinished), started
    /// before `cutoff`.
    async fn remove_unfinished(
        &self,
        scope: &Scope,
        cutoff: DateTime<Utc>,
        report: &mut PruneReport,
    ) -> Result<()> {
        for (dir, keys) in self.dirs {
            if keys
                .iter()
                .any(|k| k.ends_with(&format!("/{MANIFEST_FILE}")))
            {
                continue;
            }
            let Some(action) = unfinished_action(dir, scope, cutoff) else {
                continue;
            };
            report.actions.push(action);
            if self.dry_run {
                continue;
            }
            for key in keys {
                self.store.delete(key).await?;
            }
            report.deleted_unfinished += 1;
        }
        Ok(())
    }
}

/// The plan's line for a directory without a manifest, or `None` when it is
/// not to be removed: outside the scope, not named like a backup, or too
/// recent.
fn unfinished_action(dir: &str, scope: &Scope, cutoff: DateTime<Utc>) -> Option<PlannedAction> {
    let mut parts = dir.splitn(3, '/');
    let (Some(namespace), Some(name), Some(id)) = (parts.next(), parts.next(), parts.next()) else {
        return None;
    };
    // The listing may be wider than the scope (a name without a namespace).
    if scope.namespace.as_deref().is_some_and(|ns| ns != namespace)
        || scope.name.as_deref().is_some_and(|n| n != name)
    {
        return None;
    }
    // Only directories named like our backups, and only old ones: a
    // backup running right now looks exactly like this.
    let started = id.parse::<BackupId>().ok().and_then(|b| b.time())?;
    if started > cutoff {
        return None;
    }
    Some(PlannedAction {
        namespace: namespace.to_string(),
        name: name.to_string(),
        backup_id: id.to_string(),
        time: Some(started),
        action: "delete-unfinished",
        reasons: vec![format!(
            "no manifest, started before {}",
            cutoff.format("%Y-%m-%dT%H:%M:%SZ")
        )],
    })
}

/// Marks the backup whose manifest the store wrote last, when the store
/// told when it wrote each of them (ties: none is marked; the id order
/// decides alone).
fn mark_written_last(backups: &mut [Backup], written: impl Fn(&str) -> Option<DateTime<Utc>>) {
    let times: Vec<Option<DateTime<Utc>>> = backups.iter().map(|b| written(&b.id)).collect();
    let Some(Some(last)) = times.iter().max().copied() else {
        return;
    };
    if times.iter().any(Option::is_none) || times.iter().filter(|t| **t == Some(last)).count() > 1 {
        return;
    }
    if let Some(i) = times.iter().position(|t| *t == Some(last)) {
        backups[i].written_last = true;
    }
}

async fn delete_backup(store: &dyn Store, dir: &str, keys: &[String]) -> Result<()> {
    let manifest = format!("{dir}/{MANIFEST_FILE}");
    store.delete(&manifest).await?;
    for key in keys.iter().filter(|k| **k != manifest) {
        store.delete(key).await?;
    }
    tracing::info!(backup = %dir, "backup deleted");
    Ok(())
}

fn render_table(report: &PruneReport) -> String {
    let mut out = format!("{:<40} {:<26} {:<18} REASONS\n", "BACKUP", "ID", "ACTION");
    for a in &report.actions {
        out.push_str(&format!(
            "{:<40} {:<26} {:<18} {}\n",
            format!("{}/{}", a.namespace, a.name),
            a.backup_id,
            a.action,
            a.reasons.join(", ")
        ));
    }
    let verb = if report.dry_run {
        "would delete"
    } else {
        "deleted"
    };
    let planned = |what: &str| report.actions.iter().filter(|a| a.action == what).count();
    out.push_str(&format!(
        "{verb} {} backup(s) and {} unfinished upload(s); kept {}{}",
        planned("delete"),
        planned("delete-unfinished"),
        planned("keep"),
        if report.aborted_uploads > 0 {
            format!(
                "; aborted {} dangling multipart upload(s)",
                report.aborted_uploads
            )
        } else {
            String::new()
        }
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backups(ids: &[&str]) -> Vec<Backup> {
        ids.iter()
            .map(|id| Backup {
                id: id.to_string(),
                time: Utc::now(),
                written_last: false,
                parent: None,
            })
            .collect()
    }

    #[test]
    fn the_manifest_the_store_wrote_last_is_marked_once() {
        let t = |s: i64| DateTime::from_timestamp(1_800_000_000 + s, 0);
        let mut b = backups(&["a", "b", "c"]);
        mark_written_last(&mut b, |id| match id {
            "a" => t(30),
            "b" => t(10),
            _ => t(20),
        });
        let marked: Vec<&str> = b
            .iter()
            .filter(|b| b.written_last)
            .map(|b| b.id.as_str())
            .collect();
        assert_eq!(marked, ["a"]);

        // A tie, or a store that did not say: the id order decides alone.
        let mut tie = backups(&["a", "b"]);
        mark_written_last(&mut tie, |_| t(10));
        assert!(tie.iter().all(|b| !b.written_last));
        let mut unknown = backups(&["a", "b"]);
        mark_written_last(&mut unknown, |id| if id == "a" { t(10) } else { None });
        assert!(unknown.iter().all(|b| !b.written_last));
    }
}
