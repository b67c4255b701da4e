//! The PostgreSQL drill's checks on the restored scratch database: each
//! kind of object the archive's table of contents lists (tables,
//! sequences, large objects) is there, and the user's `sql:` assertions
//! return one true boolean, each read-only with its own timeout.

use std::collections::BTreeSet;
use std::time::Duration;

use tokio_postgres::Client;
use vertice_crds::drill::{DrillReport, SqlAssertion};

use super::archive::Contents;
use super::connect::reason;
use crate::error::{Error, Result};

/// One check per kind of object: tables, sequences, large objects.
pub(super) async fn check_objects(
    client: &Client,
    contents: &Contents,
    report: &mut DrillReport,
) -> Result<()> {
    let rows = client
        .query(
            "SELECT n.nspname, c.relname, c.relkind::text FROM pg_catalog.pg_class c \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'p', 'S')",
            &[],
        )
        .await
        .map_err(|e| Error::target(format!("listing the restored tables: {}", reason(&e))))?;
    let mut tables = BTreeSet::new();
    let mut sequences = BTreeSet::new();
    for row in rows {
        let key = (row.get::<_, String>(0), row.get::<_, String>(1));
        if row.get::<_, String>(2) == "S" {
            sequences.insert(key);
        } else {
            tables.insert(key);
        }
    }
    report.record("tables", missing("table", &contents.tables, &tables));
    report.record(
        "sequences",
        missing("sequence", &contents.sequences, &sequences),
    );
    if !contents.large_objects.is_empty() {
        let rows = client
            .query(
                "SELECT oid::text FROM pg_catalog.pg_largeobject_metadata",
                &[],
            )
            .await
            .map_err(|e| {
                Error::target(format!(
                    "listing the restored large objects: {}",
                    reason(&e)
                ))
            })?;
        let present: BTreeSet<u32> = rows
            .iter()
            .filter_map(|r| r.get::<_, String>(0).parse().ok())
            .collect();
        let absent: Vec<String> = contents
            .large_objects
            .iter()
            .filter(|oid| !present.contains(oid))
            .map(u32::to_string)
            .collect();
        report.record(
            "large objects",
            listed("large object", contents.large_objects.len(), &absent),
        );
    }
    Ok(())
}

pub(super) fn missing(
    what: &str,
    expected: &[(String, String)],
    present: &BTreeSet<(String, String)>,
) -> std::result::Result<(), String> {
    let absent: Vec<String> = expected
        .iter()
        .filter(|k| !present.contains(*k))
        .map(|(schema, name)| format!("{schema}.{name}"))
        .collect();
    listed(what, expected.len(), &absent)
}

pub(super) fn listed(
    what: &str,
    expected: usize,
    absent: &[String],
) -> std::result::Result<(), String> {
    if absent.is_empty() {
        return Ok(());
    }
    let shown: Vec<&str> = absent.iter().take(5).map(String::as_str).collect();
    let more = absent.len().saturating_sub(shown.len());
    Err(format!(
        "{} of {expected} {what}s in the archive are missing after the restore: {}{}",
        absent.len(),
        shown.join(", "),
        if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        }
    ))
}

/// One statement in a read-only transaction with its own timeout; it must
/// return one row whose one column is `true`.
pub(super) async fn run_assertion(
    client: &Client,
    assertion: &SqlAssertion,
    backup_time: &str,
) -> std::result::Result<(), String> {
    let timeout = Duration::from_secs(u64::from(assertion.timeout_seconds));
    let work = async {
        client
            .batch_execute("BEGIN TRANSACTION READ ONLY")
            .await
            .map_err(|e| reason(&e))?;
        client
            .execute(
                "SELECT set_config('statement_timeout', $1, true), set_config('vertice.backup_time', $2, true)",
                &[&format!("{}ms", timeout.as_millis()), &backup_time],
            )
            .await
            .map_err(|e| reason(&e))?;
        // The extended protocol takes exactly one statement.
        let rows = client.query(assertion.sql.as_str(), &[]).await;
        let _ = client.batch_execute("ROLLBACK").await;
        let rows = rows.map_err(|e| reason(&e))?;
        judge(&rows)
    };
    // The server cancels at statement_timeout; this guards a dead server.
    match tokio::time::timeout(timeout + Duration::from_secs(5), work).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {}s", timeout.as_secs())),
    }
}

pub(super) fn judge(rows: &[tokio_postgres::Row]) -> std::result::Result<(), String> {
    let [row] = rows else {
        return Err(format!(
            "returned {} rows; an assertion returns one row with one boolean",
            rows.len()
        ));
    };
    if row.len() != 1 {
        return Err(format!(
            "returned {} columns; an assertion returns one boolean",
            row.len()
        ));
    }
    match row.try_get::<_, Option<bool>>(0) {
        Ok(Some(true)) => Ok(()),
        Ok(Some(false)) => Err("returned false".into()),
        Ok(None) => Err("returned NULL".into()),
        Err(_) => Err(format!(
            "returned a {} where a boolean was expected",
            row.columns()[0].type_().name()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_objects_are_named_and_bounded() {
        let expected: Vec<(String, String)> = (0..8)
            .map(|i| ("public".to_string(), format!("t{i}")))
            .collect();
        let present: BTreeSet<_> = expected[..1].iter().cloned().collect();
        let err = missing("table", &expected, &present).expect_err("missing");
        assert!(err.starts_with("7 of 8 tables"), "{err}");
        assert!(
            err.contains("public.t1") && err.ends_with("and 2 more"),
            "{err}"
        );
        let all: BTreeSet<_> = expected.iter().cloned().collect();
        assert!(missing("table", &expected, &all).is_ok());
    }
}
