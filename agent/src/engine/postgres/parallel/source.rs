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
/// The search path is emptied first: nothing a user may create in a
/// schema (an aggregate, an operator) can stand in for the catalog's own.
const SESSION: &str = "SELECT pg_catalog.set_config('search_path', '', false); \
     SET statement_timeout = 0; SET lock_timeout = 0; \
     SET idle_in_transaction_session_timeout = 0; SET DateStyle = ISO; \
     SET IntervalStyle = postgres; SET extra_float_digits = 3; SET row_security = off; \
     SET standard_conforming_strings = on; SET client_encoding = 'UTF8'; \
     SET application_name = 'vertice-backup'";

/// How long the holder waits for its table locks, and pg_dump for its own
/// (`--lock-wait-timeout`): behind a queued `ALTER TABLE` a backup would
/// otherwise wait, and make the application's queries wait, without end.
pub const LOCK_WAIT: &str = "120s";

/// The connection whose transaction the snapshot belongs to: it must stay
/// open until pg_dump and every worker have taken the snapshot up.
pub struct Holder {
    pub conn: Conn,
    pub snapshot: String,
    /// `server_version_num`.
    pub server_version: i32,
}

fn failed<'a>(what: &'a str) -> impl Fn(tokio_postgres::Error) -> Error + 'a {
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
    // Told apart from the workers in pg_stat_activity.
    client
        .batch_execute("SET application_name = 'vertice-backup-snapshot'")
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
    // Every part and pg_dump's archive are written in UTF8 (so table names
    // in pg_dump's patterns mean what they mean to the agent); SQL_ASCII
    // data has no encoding to convert from.
    let encoding: String = client
        .query_one(
            "SELECT pg_catalog.pg_encoding_to_char(encoding)::text FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database()",
            &[],
        )
        .await
        .map_err(failed("reading the database's encoding"))?
        .get(0);
    if encoding == "SQL_ASCII" {
        return Err(Error::usage(
            "--jobs: the database's encoding is SQL_ASCII (bytes without a declared encoding), which a parallel backup cannot carry as UTF8; use --jobs 1",
        ));
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
    // A standby cannot read unlogged tables (pg_dump skips them there too).
    let recovery: bool = holder
        .conn
        .client
        .query_one("SELECT pg_catalog.pg_is_in_recovery()", &[])
        .await
        .map_err(failed("asking whether the server is a standby"))?
        .get(0);
    let persistence = if unlogged && !recovery {
        "('p', 'u')"
    } else {
        "('p')"
    };
    let sql = format!(
        "SELECT n.nspname::text, c.relname::text,
                COALESCE((SELECT pg_catalog.array_agg(a.attname::text ORDER BY a.attnum)
                          FROM pg_catalog.pg_attribute a
                          WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped {generated}),
                         '{{}}'::text[]),
                pg_catalog.pg_table_size(c.oid)::bigint,
                pg_catalog.pg_relation_size(c.oid)::bigint,
                pg_catalog.current_setting('block_size')::bigint
         FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind = 'r' AND c.relpersistence IN {persistence}
           AND n.nspname OPERATOR(pg_catalog.<>) 'information_schema' AND n.nspname OPERATOR(pg_catalog.!~) '^pg_'
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
            // The size with TOAST weighs the table; the heap alone counts
            // its blocks.
            let bytes = u64::try_from(r.get::<_, i64>(3)).unwrap_or(0);
            let heap = u64::try_from(r.get::<_, i64>(4)).unwrap_or(0);
            let block = u64::try_from(r.get::<_, i64>(5)).unwrap_or(8192).max(1);
            TableInfo {
                schema: r.get(0),
                table: r.get(1),
                columns: r.get(2),
                bytes,
                blocks: u32::try_from(heap / block).unwrap_or(u32::MAX),
            }
        })
        .collect())
}

/// Takes ACCESS SHARE locks on the tables the workers copy, held to the
/// end: a concurrent `TRUNCATE`, `DROP` or table rewrite (none of which
/// MVCC hides from a snapshot) waits for the backup instead of emptying a
/// table under it.
pub async fn lock(holder: &Holder, tables: &[(String, String)]) -> Result<()> {
    holder
        .conn
        .client
        .batch_execute(&format!("SET lock_timeout = '{LOCK_WAIT}'"))
        .await
        .map_err(failed("setting the lock timeout"))?;
    for chunk in tables.chunks(500) {
        let names: Vec<String> = chunk
            .iter()
            .map(|(s, t)| format!("{}.{}", super::plan::ident(s), super::plan::ident(t)))
            .collect();
        holder
            .conn
            .client
            .batch_execute(&format!(
                "LOCK TABLE ONLY {} IN ACCESS SHARE MODE",
                names.join(", ")
            ))
            .await
            .map_err(failed(&format!(
                "locking the tables to copy (waited up to {LOCK_WAIT}: another session holds or waits for an exclusive lock)"
            )))?;
    }
    holder
        .conn
        .client
        .batch_execute("SET lock_timeout = 0")
        .await
        .map_err(failed("resetting the lock timeout"))
}

/// Before a worker's first COPY of a table: its own lock, without waiting.
/// Behind an `ALTER TABLE` queued on the holder's lock, waiting would
/// block the backup and the application's queries for good (pg_dump -j
/// does the same).
pub async fn lock_now(client: &Client, schema: &str, table: &str) -> Result<()> {
    let name = format!(
        "{}.{}",
        super::plan::ident(schema),
        super::plan::ident(table)
    );
    client
        .batch_execute(&format!("LOCK TABLE ONLY {name} IN ACCESS SHARE MODE NOWAIT"))
        .await
        .map_err(|e| {
            Error::source(format!(
                "{schema}.{table}: another session waits for an exclusive lock on it (ALTER TABLE, TRUNCATE, VACUUM FULL, DROP); the backup stops rather than make both wait: run it again ({})",
                connect::reason(&e)
            ))
        })
}

/// The holder is still there (a connection cut silently would otherwise
/// look alive for hours): its locks covered every copy.
pub async fn still_held(holder: &Holder) -> bool {
    matches!(
        tokio::time::timeout(
            std::time::Duration::from_secs(30),
            holder.conn.client.simple_query("SELECT 1")
        )
        .await,
        Ok(Ok(_))
    )
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
