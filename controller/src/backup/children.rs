//! What to do with the CronJobs of a backup, decided without I/O: apply the
//! desired one (and say whether that creates, updates or changes nothing),
//! delete the ones it owns under another name, or stop at a name conflict.

use k8s_openapi::api::batch::v1::CronJob;
use kube::ResourceExt;

/// Annotation on the CronJob: a hash of what the controller last applied,
/// to tell "created" and "updated" from "unchanged" (for events) without
/// diffing server-defaulted fields.
pub const SPEC_HASH: &str = "vertice.io/spec-hash";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Created,
    Updated,
    Unchanged,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ChildPlan {
    /// Another object holds the name: change nothing, report it.
    Conflict,
    /// Apply `desired` when `write` (created, changed, or edited by hand
    /// since our last apply), then delete `stale`.
    Apply {
        desired: Box<CronJob>,
        change: Change,
        write: bool,
        stale: Vec<String>,
    },
}

/// Whether the shell must look up the desired name: only when none of the
/// owned CronJobs has it (it may be someone else's).
pub fn needs_name_check(desired_name: &str, owned: &[CronJob]) -> bool {
    !owned.iter().any(|c| c.name_any() == desired_name)
}

/// The CronJobs to delete when the backup is refused (a Secret not opted
/// in, a pod setting the administrator does not allow): every one this
/// backup owns. Unlike an invalid spec, which leaves the last good CronJob
/// running, a refusal takes back a right — a Secret's label removed, an
/// image taken off the list — so what was written under it must not run on.
pub fn revoked(owned: &[CronJob], owner_uid: Option<&str>) -> Vec<String> {
    owned
        .iter()
        .filter(|c| {
            owner_uid.is_some()
                && c.owner_references()
                    .iter()
                    .any(|o| Some(o.uid.as_str()) == owner_uid)
        })
        .map(|c| c.name_any())
        .collect()
}

/// `desired` carries the name and the `SPEC_HASH` annotation; `keep` names
/// every CronJob the backup wants (its backup and its drill); `owned` are
/// the CronJobs with the backup's label; `same_name` is the object of the
/// desired name when `needs_name_check` said to look; `owner_uid` is the
/// backup's uid; `applied_generation` the CronJob's generation after our
/// last apply, from the backup's status.
pub fn decide(
    desired: &CronJob,
    keep: &[&str],
    owned: &[CronJob],
    same_name: Option<&CronJob>,
    owner_uid: Option<&str>,
    applied_generation: Option<i64>,
) -> ChildPlan {
    let name = desired.name_any();
    let owned_by_us = |c: &CronJob| {
        c.owner_references()
            .iter()
            .any(|o| Some(o.uid.as_str()) == owner_uid)
    };
    let existing = owned.iter().find(|c| c.name_any() == name);
    if existing.is_none() {
        if let Some(other) = same_name {
            // A forced apply would take over a CronJob that is not ours.
            if !owned_by_us(other) {
                return ChildPlan::Conflict;
            }
        }
    }
    let hash = desired.annotations().get(SPEC_HASH);
    let change = match existing.or(same_name) {
        None => Change::Created,
        Some(c) if c.annotations().get(SPEC_HASH) != hash => Change::Updated,
        Some(_) => Change::Unchanged,
    };
    // A hand edit of the spec bumps the generation: put it back.
    let edited = existing.or(same_name).is_none_or(|c| {
        c.metadata.generation.is_none() || c.metadata.generation != applied_generation
    });
    let write = change != Change::Unchanged || edited;
    let stale = owned
        .iter()
        .filter(|c| {
            c.name_any() != name && !keep.contains(&c.name_any().as_str()) && owned_by_us(c)
        })
        .map(|c| c.name_any())
        .collect();
    ChildPlan::Apply {
        desired: Box::new(desired.clone()),
        change,
        write,
        stale,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cron_job(name: &str, owner: Option<&str>, hash: Option<&str>) -> CronJob {
        let mut v =
            json!({"metadata": {"name": name}, "spec": {"schedule": "@daily", "jobTemplate": {}}});
        if let Some(uid) = owner {
            v["metadata"]["ownerReferences"] = json!([{"apiVersion": "vertice.io/v1alpha1",
                "kind": "VerticeBackup", "name": "b", "uid": uid, "controller": true}]);
        }
        if let Some(h) = hash {
            v["metadata"]["annotations"] = json!({SPEC_HASH: h});
        }
        serde_json::from_value(v).expect("cron job")
    }

    fn apply(plan: ChildPlan) -> (Change, Vec<String>) {
        match plan {
            ChildPlan::Apply { change, stale, .. } => (change, stale),
            ChildPlan::Conflict => panic!("unexpected conflict"),
        }
    }

    fn writes(plan: ChildPlan) -> bool {
        match plan {
            ChildPlan::Apply { write, .. } => write,
            ChildPlan::Conflict => panic!("unexpected conflict"),
        }
    }

    #[test]
    fn a_missing_cron_job_is_created() {
        let desired = cron_job("vertice-orders", Some("u"), Some("h1"));
        assert!(needs_name_check("vertice-orders", &[]));
        assert_eq!(
            apply(decide(&desired, &[], &[], None, Some("u"), None)),
            (Change::Created, vec![])
        );
    }

    #[test]
    fn the_hash_tells_updated_from_unchanged() {
        let desired = cron_job("vertice-orders", Some("u"), Some("h2"));
        let same = [cron_job("vertice-orders", Some("u"), Some("h2"))];
        let old = [cron_job("vertice-orders", Some("u"), Some("h1"))];
        assert!(!needs_name_check("vertice-orders", &same));
        assert_eq!(
            apply(decide(&desired, &[], &same, None, Some("u"), None)).0,
            Change::Unchanged
        );
        assert_eq!(
            apply(decide(&desired, &[], &old, None, Some("u"), None)).0,
            Change::Updated
        );
    }

    #[test]
    fn an_unchanged_cron_job_is_written_only_after_a_hand_edit() {
        let desired = cron_job("vertice-orders", Some("u"), Some("h"));
        let mut same = cron_job("vertice-orders", Some("u"), Some("h"));
        same.metadata.generation = Some(3);
        let owned = [same];
        assert!(!writes(decide(
            &desired,
            &[],
            &owned,
            None,
            Some("u"),
            Some(3)
        )));
        // Edited by hand (generation 4), or never recorded: apply again.
        assert!(writes(decide(
            &desired,
            &[],
            &owned,
            None,
            Some("u"),
            Some(2)
        )));
        assert!(writes(decide(&desired, &[], &owned, None, Some("u"), None)));
        let changed = cron_job("vertice-orders", Some("u"), Some("h2"));
        assert!(writes(decide(
            &changed,
            &[],
            &owned,
            None,
            Some("u"),
            Some(3)
        )));
    }

    #[test]
    fn someone_elses_cron_job_of_that_name_is_a_conflict() {
        let desired = cron_job("vertice-orders", Some("u"), Some("h"));
        let foreign = cron_job("vertice-orders", Some("other"), None);
        assert_eq!(
            decide(&desired, &[], &[], Some(&foreign), Some("u"), None),
            ChildPlan::Conflict
        );
        let unowned = cron_job("vertice-orders", None, None);
        assert_eq!(
            decide(&desired, &[], &[], Some(&unowned), Some("u"), None),
            ChildPlan::Conflict
        );
        // Ours but without our label (an old version's): adopt it quietly.
        let ours = cron_job("vertice-orders", Some("u"), Some("h"));
        assert_eq!(
            apply(decide(&desired, &[], &[], Some(&ours), Some("u"), None)).0,
            Change::Unchanged
        );
    }

    #[test]
    fn owned_cron_jobs_under_other_names_are_stale_unless_not_ours() {
        let desired = cron_job("vertice-orders", Some("u"), Some("h"));
        let owned = [
            cron_job("vertice-orders", Some("u"), Some("h")),
            cron_job("vertice-orders-old", Some("u"), Some("h")),
            cron_job("copy-with-our-label", Some("someone"), None),
        ];
        assert_eq!(
            apply(decide(&desired, &[], &owned, None, Some("u"), None)),
            (Change::Unchanged, vec!["vertice-orders-old".to_string()])
        );
    }

    #[test]
    fn the_drill_cron_job_is_kept_beside_the_backups() {
        let desired = cron_job("vertice-orders", Some("u"), Some("h"));
        let owned = [
            cron_job("vertice-orders", Some("u"), Some("h")),
            cron_job("vertice-drill-orders", Some("u"), Some("h")),
        ];
        let keep = ["vertice-orders", "vertice-drill-orders"];
        assert_eq!(
            apply(decide(&desired, &keep, &owned, None, Some("u"), None)).1,
            Vec::<String>::new()
        );
        // Without a drill in the spec, its CronJob goes.
        assert_eq!(
            apply(decide(&desired, &keep[..1], &owned, None, Some("u"), None)).1,
            vec!["vertice-drill-orders".to_string()]
        );
    }

    #[test]
    fn a_refusal_revokes_only_the_cron_jobs_this_backup_owns() {
        let owned_by = |name: &str, uid: &str| -> CronJob {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "ownerReferences": [{
                    "apiVersion": "vertice.io/v1alpha1", "kind": "VerticeBackup",
                    "name": "orders", "uid": uid}]}}))
            .expect("cron job")
        };
        let owned = [
            owned_by("vertice-orders", "u1"),
            owned_by("vertice-drill-orders", "u1"),
            owned_by("vertice-orders-copy", "someone-else"),
        ];
        assert_eq!(
            revoked(&owned, Some("u1")),
            vec![
                "vertice-orders".to_string(),
                "vertice-drill-orders".to_string()
            ]
        );
        assert!(revoked(&owned, None).is_empty());
    }
}
