//! The source side of a parallel backup: the connection that exports the
//! snapshot and holds it (and the tables' locks) until every worker has
//! read, the catalog read under it, and a worker's session on it.

use tokio_postgres::Client;

use super::plan::TableInfo;
use crate::engine::postgres::connect::{self, Conn};
use crate::engine::postgres::target::PostgresTarget;
use crate::error::{Error, Result};

/// Session settings every connection of the backup takes, as pg_dump's:
/// no timeout cuts a long read, dates and floats are written so they read
/// back exactly, and row security is off so a table it would filter fails
/// loudly instead of being copied in part.
const SESSION: &str = "SET statement_timeout = 0; SET lock_timeout = 0; \
     SET idle_in_transaction_session_timeout = 0; SET DateStyle = ISO; \
     SET IntervalStyle = postgres; SET extra_float_digits = 3; SET row_security = off; \
     SET application_name = 'vertice-backup'";

/// The connection whose transaction the snapshot belongs to: it must stay
/// open until pg_dump and every worker have taken the snapshot up.
pub struct Holder {
    pub conn: Conn,
    pub snapshot: String,
    /// `server_version_num`.
    pub server_version: i32,
}

fn failed(what: &str) -> impl Fn(tokio_postgres::Error) -> Error + '_ {
    move |e| Error::source(format!("{what}: {}", connect::reason(&e)))
}

/// Opens the holder: a read-only repeatable-read transaction and its
/// exported snapshot.
pub async fn export_snapshot(pg: &PostgresTarget, password: Option<&str>) -> Result<Holder> {
    let conn = connect::connect(&pg.url, password, "--source").await?;
    let client = &conn.client;
    client
        .batch_execute(SESSION)
        .await
        .map_err(failed("preparing the snapshot session"))?;
    let version: i32 = client
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await
        .map_err(failed("reading the server version"))?
        .get(0);
    if version < 90600 {
        return Err(Error::usage(format!(
            "--jobs needs PostgreSQL 9.6 or newer (the server is {version}); use --jobs 1"
        )));
    }
    client
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .await
        .map_err(failed("starting the snapshot transaction"))?;
    let snapshot: String = client
        .query_one("SELECT pg_catalog.pg_export_snapshot()", &[])
        .await
        .map_err(failed("exporting the snapshot"))?
        .get(0);
    Ok(Holder {
        conn,
        snapshot,
        server_version: version,
    })
}

/// The ordinary tables whose data a backup copies: every table pg_dump
/// would dump the data of, but extension members (pg_dump decides what of
/// an extension's configuration tables to keep) and, when asked, unlogged
/// tables. Read in the holder's transaction.
pub async fn tables(holder: &Holder, unlogged: bool) -> Result<Vec<TableInfo>> {
    // attgenerated exists from PostgreSQL 12 on.
    let generated = if holder.server_version >= 120000 {
        "AND a.attgenerated = ''"
    } else {
        ""
    };
    let persistence = if unlogged { "('p', 'u')" } else { "('p')" };
    let sql = format!(
        "SELECT n.nspname::text, c.relname::text,
                COALESCE((SELECT array_agg(a.attname::text ORDER BY a.attnum)
                          FROM pg_catalog.pg_attribute a
                          WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped {generated}),
                         '{{}}'::text[]),
                pg_catalog.pg_relation_size(c.oid)::bigint,
                current_setting('block_size')::bigint
         FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind = 'r' AND c.relpersistence IN {persistence}
           AND n.nspname <> 'information_schema' AND n.nspname !~ '^pg_'
           AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                           WHERE d.classid = 'pg_catalog.pg_class'::regclass
                             AND d.objid = c.oid AND d.deptype = 'e')
         ORDER BY 1, 2"
    );
    let rows = holder
        .conn
        .client
        .query(&sql, &[])
        .await
        .map_err(failed("listing the tables"))?;
    Ok(rows
        .iter()
        .map(|r| {
            let bytes = u64::try_from(r.get::<_, i64>(3)).unwrap_or(0);
            let block = u64::try_from(r.get::<_, i64>(4)).unwrap_or(8192).max(1);
            TableInfo {
                schema: r.get(0),
                table: r.get(1),
                columns: r.get(2),
                bytes,
                blocks: u32::try_from(bytes / block).unwrap_or(u32::MAX),
            }
        })
        .collect())
}

/// Takes ACCESS SHARE locks on the tables the workers copy, held to the
/// end: a concurrent `TRUNCATE`, `DROP` or table rewrite (none of which
/// MVCC hides from a snapshot) waits for the backup instead of emptying a
/// table under it.
pub async fn lock(holder: &Holder, tables: &[(String, String)]) -> Result<()> {
    for chunk in tables.chunks(500) {
        let names: Vec<String> = chunk
            .iter()
            .map(|(s, t)| format!("{}.{}", super::plan::ident(s), super::plan::ident(t)))
            .collect();
        holder
            .conn
            .client
            .batch_execute(&format!(
                "LOCK TABLE {} IN ACCESS SHARE MODE",
                names.join(", ")
            ))
            .await
            .map_err(failed("locking the tables to copy"))?;
    }
    Ok(())
}

/// A worker's session: the same settings, in a transaction on the
/// exported snapshot.
pub async fn worker(pg: &PostgresTarget, password: Option<&str>, snapshot: &str) -> Result<Conn> {
    let conn = connect::connect(&pg.url, password, "--source").await?;
    prepare_worker(&conn.client, snapshot).await?;
    Ok(conn)
}

async fn prepare_worker(client: &Client, snapshot: &str) -> Result<()> {
    client
        .batch_execute(SESSION)
        .await
        .map_err(failed("preparing a worker session"))?;
    // The snapshot's name is the server's own (hex digits and dashes), but
    // it goes into SQL: quote it.
    let quoted = snapshot.replace('\'', "''");
    client
        .batch_execute(&format!(
            "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY; SET TRANSACTION SNAPSHOT '{quoted}'"
        ))
        .await
        .map_err(failed(
            "taking up the backup's snapshot (did its holding connection drop?)",
        ))
}
