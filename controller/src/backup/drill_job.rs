//! What the drill CronJob's agent is told: which backup, where to restore
//! it, what to check, and the credentials for exactly that. The rest of the
//! pod (store, security context, volumes) is the backup's, built by
//! `cron_job`.

use vertice_crds::agent_env;
use vertice_crds::backup::BackupTarget;
use vertice_crds::drill_spec::{DrillSpec, DrillTarget};

use super::job_wiring::{
    elasticsearch_url, kafka_address, postgres_url, wire_elasticsearch_connection,
    wire_kafka_connection, SpecError, Wiring,
};

/// `/tmp`'s size limit when `spec.drill.scratchSize` is not given: room
/// for a Redis RDB, or, for an ephemeral PostgreSQL, whose data directory
/// lives there, a database of a few GiB (a limit, not a reservation: the
/// pod is evicted above it).
pub(super) fn default_scratch_size(drill: Option<&DrillSpec>) -> &'static str {
    let ephemeral = drill
        .and_then(|d| d.target.as_ref())
        .is_some_and(|t| t.ephemeral.is_some());
    if ephemeral {
        "8Gi"
    } else {
        "256Mi"
    }
}

pub(super) fn wire(
    drill: &DrillSpec,
    target: &BackupTarget,
    encrypted: bool,
    w: &mut Wiring,
) -> Result<(), SpecError> {
    w.value(agent_env::DRILL_BACKUP, drill.backup.trim());
    match (&target.postgres, &drill.target) {
        (Some(_), Some(DrillTarget { postgres: None, ephemeral: Some(_), elasticsearch: None })) => {
            w.value(agent_env::DRILL_RESTORE_TO, "ephemeral");
        }
        (Some(_), Some(DrillTarget { postgres: Some(pg), ephemeral: None, elasticsearch: None })) => {
            let url = postgres_url(&pg.user, &pg.host, pg.port, &pg.database, pg.ssl_mode.as_deref());
            w.value(agent_env::DRILL_RESTORE_TO, url);
            if let Some(s) = &pg.password_secret_ref {
                w.secret_env(agent_env::PGPASSWORD, &s.name, &s.key);
            }
            if let Some(prefix) = &pg.scratch_prefix {
                w.value(agent_env::DRILL_SCRATCH_PREFIX, prefix);
            }
        }
        (Some(_), Some(_)) => {
            return Err(SpecError(
                "spec.drill.target: give exactly one of postgres (a server of yours) or ephemeral (a server inside the drill pod)".into(),
            ))
        }
        (Some(_), None) => {
            return Err(SpecError(
                "spec.drill.target: a PostgreSQL drill restores into drill.target.postgres (a server of yours) or drill.target.ephemeral (a server inside the drill pod)".into(),
            ))
        }
        // An Elasticsearch drill into another cluster: wired below.
        (None, Some(DrillTarget { postgres: None, ephemeral: None, elasticsearch: Some(_) }))
            if target.elasticsearch.is_some() => {}
        (None, Some(_)) => {
            return Err(SpecError(
                "spec.drill.target is for PostgreSQL backups (postgres or ephemeral) and Elasticsearch backups (elasticsearch); Redis and Vault drills restore inside the drill pod, Kafka drills into scratch topics: remove spec.drill.target".into(),
            ))
        }
        (None, None) => {}
    }
    // A PostgreSQL drill restores with as many sessions as the backup
    // dumped with.
    if let Some(jobs) = target.postgres.as_ref().and_then(|pg| pg.jobs) {
        w.value(agent_env::PG_JOBS, jobs.to_string());
    }
    // A Kafka drill restores into scratch topics on the backed-up cluster
    // itself, so it reaches that cluster as the backup does.
    if let Some(kafka) = &target.kafka {
        w.value(agent_env::DRILL_RESTORE_TO, kafka_address(kafka));
        wire_kafka_connection(kafka, "spec.target.kafka", w)?;
    }
    // An Elasticsearch drill restores into throwaway indices on the
    // backed-up cluster, likewise, or on the cluster drill.target names
    // (with that cluster's credentials only). No VERTICE_SOURCE_KIND: the
    // agent reads the kind from the backup's manifest.
    if let Some(es) = &target.elasticsearch {
        let other = drill
            .target
            .as_ref()
            .and_then(|t| t.elasticsearch.as_ref())
            .map(|d| d.as_target());
        let (cluster, field) = match &other {
            Some(other) => (other, "spec.drill.target.elasticsearch"),
            None => (es, "spec.target.elasticsearch"),
        };
        w.value(
            agent_env::DRILL_RESTORE_TO,
            elasticsearch_url(cluster, field)?,
        );
        wire_elasticsearch_connection(cluster, field, w)?;
    }
    match (&drill.identity_secret_ref, encrypted) {
        (Some(identity), _) => {
            let path = w.secret_file(identity);
            w.value(agent_env::IDENTITY_FILE, path);
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
        w.value(agent_env::DRILL_CHECKS, checks);
    }
    if let Some(age) = &drill.max_unverified_age {
        age.get()
            .map_err(|e| SpecError(format!("spec.drill.maxUnverifiedAge: {e}")))?;
    }
    Ok(())
}
