//! Names and labels of the objects a backup owns.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

pub const BACKUP_LABEL: &str = "vertice.io/backup";
/// Annotation on Jobs: the owning backup's full name (labels are cut at 63).
pub const BACKUP_NAME_ANNOTATION: &str = "vertice.io/backup-name";
pub const MANAGED_BY: &str = "vertice-controller";

/// CronJob names are limited to 52 characters (the Job controller appends 11);
/// long names keep a readable start and a hash of the whole.
pub fn cron_job(backup: &str) -> String {
    bounded(&format!("vertice-{backup}"), 52)
}

/// The drill CronJob: same limit, its own name.
pub fn drill_cron_job(backup: &str) -> String {
    bounded(&format!("vertice-drill-{backup}"), 52)
}

/// Label on a drill's CronJob, Jobs and pods: their runs are drills, not
/// backups.
pub const RUN_LABEL: &str = "vertice.io/run";
pub const RUN_DRILL: &str = "drill";

/// Volume names are DNS labels (63 characters).
pub fn secret_volume(secret: &str) -> String {
    bounded(&format!("secret-{}", secret.replace('.', "-")), 63)
}

pub fn labels(backup: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "app.kubernetes.io/name".to_string(),
            "vertice-backup".to_string(),
        ),
        (
            "app.kubernetes.io/managed-by".to_string(),
            MANAGED_BY.to_string(),
        ),
        // Label values are limited to 63 characters, like the names they carry.
        (BACKUP_LABEL.to_string(), bounded(backup, 63)),
    ])
}

fn bounded(name: &str, max: usize) -> String {
    if name.len() <= max {
        return name.to_string();
    }
    let hash = hex::encode(&Sha256::digest(name.as_bytes())[..4]);
    let keep = max - hash.len() - 1;
    format!("{}-{hash}", name[..keep].trim_end_matches(['-', '.']))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_names_are_cut_with_a_hash() {
        assert_eq!(cron_job("orders"), "vertice-orders");
        let long = "a".repeat(80);
        let name = cron_job(&long);
        assert_eq!(name.len(), 52);
        assert_ne!(name, cron_job(&"a".repeat(81)));
        assert!(labels(&long)[BACKUP_LABEL].len() <= 63);
    }
}
