//! `--jobs auto` (the default): how many sessions a PostgreSQL backup,
//! restore or drill uses when nobody said. Half the CPUs the agent may use
//! (its cgroup's quota counts), 1 to 4: each session's part is compressed,
//! encrypted and hashed on one of the agent's cores while the server reads
//! for it, and more than 4 sessions start to weigh on a production server
//! that also serves its applications. A backup stays one pg_dump stream —
//! the format every earlier agent and stock `pg_restore` read whole —
//! where parallel gains nothing or cannot run: a database under 1 GiB, a
//! `--pg-dump-arg` that chooses tables, a `SQL_ASCII` database, a server
//! older than 9.6.

use crate::engine::postgres::connect;
use crate::engine::postgres::target::PostgresTarget;

/// Below this a parallel backup's extra objects and sessions cost more
/// than they save.
pub const PARALLEL_FROM_BYTES: i64 = 1 << 30;

/// Sessions for `cpus` usable CPUs.
pub fn sessions(cpus: usize) -> u32 {
    (cpus / 2).clamp(1, 4) as u32
}

/// The CPUs this process may use (a container's CPU quota included).
pub fn cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// What `auto` needs to know of the source database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFacts {
    pub bytes: i64,
    pub encoding: String,
    /// `server_version_num`.
    pub version: i32,
}

/// A backup's workers: `sessions(cpus)` for a database parallel suits,
/// else 1; and why, for the log.
pub fn backup_jobs(cpus: usize, source: &SourceFacts) -> (u32, &'static str) {
    if source.version < 90600 {
        (1, "the server is older than 9.6")
    } else if source.encoding == "SQL_ASCII" {
        (1, "the database is SQL_ASCII")
    } else if source.bytes < PARALLEL_FROM_BYTES {
        (1, "the database is under 1 GiB")
    } else if sessions(cpus) == 1 {
        (1, "the agent may use fewer than 4 CPUs")
    } else {
        (sessions(cpus), "half the agent's CPUs, at most 4")
    }
}

/// `--jobs auto` for a backup of `pg`. A source that cannot be asked gets
/// 1: pg_dump then reports what is wrong with it, as it always did.
pub async fn backup_jobs_for(pg: &PostgresTarget, password: Option<&str>, selecting: bool) -> u32 {
    let cpus = cpus();
    if selecting {
        tracing::info!("--jobs auto: 1 (a --pg-dump-arg chooses tables)");
        return 1;
    }
    if sessions(cpus) == 1 {
        tracing::info!(cpus, "--jobs auto: 1 (the agent may use fewer than 4 CPUs)");
        return 1;
    }
    let facts = match probe(pg, password).await {
        Ok(facts) => facts,
        Err(e) => {
            tracing::info!(error = %e, "--jobs auto: 1 (the source could not be sized)");
            return 1;
        }
    };
    let (jobs, why) = backup_jobs(cpus, &facts);
    tracing::info!(
        cpus,
        database_bytes = facts.bytes,
        "--jobs auto: {jobs} ({why})"
    );
    jobs
}

async fn probe(pg: &PostgresTarget, password: Option<&str>) -> crate::error::Result<SourceFacts> {
    let conn = connect::connect(&pg.url, password, "--source").await?;
    let row = conn
        .client
        .query_one(
            "SELECT pg_catalog.pg_database_size(d.oid), pg_catalog.pg_encoding_to_char(d.encoding)::text, \
             pg_catalog.current_setting('server_version_num')::int \
             FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database()",
            &[],
        )
        .await
        .map_err(|e| crate::error::Error::source(connect::reason(&e)))?;
    Ok(SourceFacts {
        bytes: row.get(0),
        encoding: row.get(1),
        version: row.get(2),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(bytes: i64) -> SourceFacts {
        SourceFacts {
            bytes,
            encoding: "UTF8".into(),
            version: 170000,
        }
    }

    #[test]
    fn half_the_cpus_one_to_four() {
        assert_eq!(sessions(1), 1);
        assert_eq!(sessions(2), 1);
        assert_eq!(sessions(3), 1);
        assert_eq!(sessions(4), 2);
        assert_eq!(sessions(8), 4);
        assert_eq!(sessions(64), 4);
    }

    #[test]
    fn a_backup_is_one_stream_where_parallel_gains_nothing_or_cannot_run() {
        let big = 10 * PARALLEL_FROM_BYTES;
        assert_eq!(backup_jobs(8, &facts(big)).0, 4);
        assert_eq!(backup_jobs(4, &facts(big)).0, 2);
        assert_eq!(backup_jobs(2, &facts(big)).0, 1);
        assert_eq!(backup_jobs(8, &facts(PARALLEL_FROM_BYTES - 1)).0, 1);
        let mut ascii = facts(big);
        ascii.encoding = "SQL_ASCII".into();
        assert_eq!(backup_jobs(8, &ascii), (1, "the database is SQL_ASCII"));
        let mut old = facts(big);
        old.version = 90500;
        assert_eq!(backup_jobs(8, &old).0, 1);
    }
}
