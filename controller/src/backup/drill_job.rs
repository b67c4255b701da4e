//! What the drill CronJob's agent is told: which backup, where to restore
//! it, what to check, and the credentials for exactly that. The rest of the
//! pod (store, security context, volumes) is the backup's, built by
//! `cron_job`.

use vertice_crds::backup::BackupTarget;
use vertice_crds::drill_spec::DrillSpec;

use super::cron_job::{encode, host, SpecError, Wiring};

pub(super) fn wire(
    drill: &DrillSpec,
    target: &BackupTarget,
    encrypted: bool,
    w: &mut Wiring,
) -> Result<(), SpecError> {
    w.value("VERTICE_DRILL_BACKUP", drill.backup.trim());
    match (&target.postgres, &drill.target) {
        (Some(_), Some(t)) => {
            let pg = &t.postgres;
            let mut url = format!(
                "postgres://{}@{}:{}/{}",
                encode(&pg.user),
                host(&pg.host),
                pg.port,
                encode(&pg.database)
            );
            if let Some(mode) = &pg.ssl_mode {
                url.push_str(&format!("?sslmode={mode}"));
            }
            w.value("VERTICE_DRILL_RESTORE_TO", url);
            if let Some(s) = &pg.password_secret_ref {
                w.secret_env("PGPASSWORD", &s.name, &s.key);
            }
            if let Some(prefix) = &pg.scratch_prefix {
                w.value("VERTICE_DRILL_SCRATCH_PREFIX", prefix);
            }
        }
        (Some(_), None) => {
            return Err(SpecError(
                "spec.drill.target.postgres: a PostgreSQL drill needs a server to create its scratch database on".into(),
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
