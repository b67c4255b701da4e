//! Forwarding pg_restore's SQL to psql, holding its end back: the final
//! `COMMIT` is the agent's to send (see `commit`).

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

use super::super::psql_text::ObjectLines;

/// How much is read or copied at a time.
pub(super) const CHUNK: usize = 256 * 1024;
/// How much of pg_restore's SQL is held back: its final `COMMIT` and what
/// may follow it (a `--verbose` comment, `\unrestrict`).
const HELD_SQL: usize = 64 * 1024;

/// What [`forward_sql`] leaves for the end: psql's stdin and the held-back
/// tail of pg_restore's SQL.
pub(super) struct Forwarded {
    pub(super) sql_in: tokio::process::ChildStdin,
    pub(super) held: Vec<u8>,
}

/// Copies SQL from pg_restore to psql, always keeping the last
/// [`HELD_SQL`] bytes back; returns them at the end of pg_restore's output.
/// What goes out is noted in `objects`.
pub(super) async fn forward_sql(
    mut from: impl AsyncRead + Unpin,
    mut sql_in: tokio::process::ChildStdin,
    objects: Arc<Mutex<ObjectLines>>,
) -> std::io::Result<Forwarded> {
    let mut held: Vec<u8> = Vec::with_capacity(2 * HELD_SQL);
    let mut buf = vec![0u8; CHUNK];
    // The preamble is a few hundred bytes: it is still held when the first
    // bytes go out (or when the output ends).
    let mut preamble_done = false;
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            if !preamble_done {
                guard_newer_settings(&mut held);
            }
            return Ok(Forwarded { sql_in, held });
        }
        held.extend_from_slice(&buf[..n]);
        if held.len() > HELD_SQL {
            if !preamble_done {
                guard_newer_settings(&mut held);
                preamble_done = true;
            }
            let release = held.len() - HELD_SQL;
            if let Ok(mut objects) = objects.lock() {
                objects.feed(&held[..release]);
            }
            sql_in.write_all(&held[..release]).await?;
            held.drain(..release);
        }
    }
}

/// The forwarder's result; `None` when psql stopped taking SQL.
pub(super) async fn join(
    forward: Option<JoinHandle<std::io::Result<Forwarded>>>,
) -> Option<Forwarded> {
    match forward?.await {
        Ok(Ok(forwarded)) => Some(forwarded),
        _ => None,
    }
}

/// `SET transaction_timeout = 0;` as pg_restore writes it, and what it
/// becomes.
pub(super) const TRANSACTION_TIMEOUT: &[u8] = b"SET transaction_timeout = 0;";
pub(super) const GUARDED_TRANSACTION_TIMEOUT: &[u8] = b"SELECT pg_catalog.set_config('transaction_timeout', '0', false) WHERE pg_catalog.current_setting('server_version_num')::int >= 170000;";

/// pg_restore writing SQL (it has no connection to ask) assumes a server of
/// its own major: pg_restore 17 sets `transaction_timeout`, which servers
/// before 17 refuse, and psql's ON_ERROR_STOP then fails the restore of a
/// good backup into an older server. In the preamble of session settings
/// only, that SET becomes a statement that sets it where the server has it.
pub(super) fn guard_newer_settings(sql: &mut Vec<u8>) {
    let mut at = 0;
    while at < sql.len() {
        let end = sql[at..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(sql.len(), |i| at + i);
        let line = &sql[at..end];
        if line == TRANSACTION_TIMEOUT {
            sql.splice(at..end, GUARDED_TRANSACTION_TIMEOUT.iter().copied());
            return;
        }
        let preamble = line.is_empty()
            || line.starts_with(b"--")
            || line.starts_with(b"SET ")
            || line.starts_with(b"SELECT pg_catalog.set_config(")
            || line == b"BEGIN;"
            // 17.6 and later open with `\restrict <key>`.
            || line.starts_with(b"\\restrict ");
        if !preamble {
            return;
        }
        at = end + 1;
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_newer_pg_restore_s_transaction_timeout_is_set_only_where_the_server_has_it() {
        let preamble = "--\n-- PostgreSQL database dump\n--\n\n\\restrict Yq3k\n\nSET statement_timeout = 0;\nSET lock_timeout = 0;\nSET transaction_timeout = 0;\nSET client_encoding = 'UTF8';\nSELECT pg_catalog.set_config('search_path', '', false);\n\nCREATE TABLE t (v text);\n";
        let mut sql = preamble.as_bytes().to_vec();
        super::guard_newer_settings(&mut sql);
        let text = String::from_utf8(sql).expect("utf-8");
        assert!(!text.contains("SET transaction_timeout"), "{text}");
        assert!(
            text.contains("SELECT pg_catalog.set_config('transaction_timeout', '0', false) WHERE pg_catalog.current_setting('server_version_num')::int >= 170000;\nSET client_encoding"),
            "{text}"
        );
        // Past the preamble, the same text is data or a user's own SQL.
        let later = "SET lock_timeout = 0;\nCREATE FUNCTION f() RETURNS void AS $$\nSET transaction_timeout = 0;\n$$ LANGUAGE sql;\n";
        let mut sql = later.as_bytes().to_vec();
        super::guard_newer_settings(&mut sql);
        assert_eq!(String::from_utf8(sql).expect("utf-8"), later);
        // pg_restore 16 and older write no such line: nothing changes.
        let old = "SET statement_timeout = 0;\nCREATE TABLE t ();\n";
        let mut sql = old.as_bytes().to_vec();
        super::guard_newer_settings(&mut sql);
        assert_eq!(String::from_utf8(sql).expect("utf-8"), old);
    }
}
