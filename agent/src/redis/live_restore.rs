//! Replays an RDB into a running Redis with RESTORE, keeping each key's TTL
//! and eviction hints. Runs on a blocking thread: the RDB reader is
//! synchronous and the commands are pipelined in batches.
//!
//! All or nothing, as far as Redis allows: the target must hold no keys
//! unless `replace` is set, and if anything fails midway the keys restored so
//! far are removed again.

use std::io::Read;

use redis::{Connection, ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo};

use super::rdb::{RdbError, RdbEvent, RdbReader};
use crate::target::RedisTarget;

/// Flush a pipeline once it holds this many commands or bytes.
const BATCH_COMMANDS: usize = 512;
const BATCH_BYTES: usize = 8 << 20;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RestoreStats {
    pub keys: u64,
    pub expired_skipped: u64,
    pub functions: u64,
    pub module_aux_skipped: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum LiveRestoreError {
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Failed(String),
}

pub fn connect(
    target: &RedisTarget,
    password: Option<&str>,
) -> Result<Connection, LiveRestoreError> {
    let mut settings = RedisConnectionInfo::default().set_skip_set_lib_name();
    if let Some(user) = &target.username {
        settings = settings.set_username(user);
    }
    if let Some(password) = password {
        settings = settings.set_password(password);
    }
    let info = ConnectionAddr::Tcp(target.host.clone(), target.port)
        .into_connection_info()
        .map_err(|e| LiveRestoreError::Usage(format!("--to {}: {e}", target.address())))?
        .set_redis_settings(settings);
    let client = redis::Client::open(info)
        .map_err(|e| LiveRestoreError::Usage(format!("--to {}: {e}", target.address())))?;
    client
        .get_connection_with_timeout(std::time::Duration::from_secs(15))
        .map_err(|e| classify(&target.address(), e))
}

fn classify(address: &str, e: redis::RedisError) -> LiveRestoreError {
    let msg = e.to_string();
    if matches!(e.kind(), redis::ErrorKind::AuthenticationFailed)
        || msg.contains("WRONGPASS")
        || msg.contains("NOAUTH")
    {
        LiveRestoreError::Usage(format!("{address} rejected the credentials; check REDIS_PASSWORD / --password-file and the user"))
    } else {
        LiveRestoreError::Failed(format!("{address}: {msg}"))
    }
}

/// Counts keys per database from INFO keyspace.
pub fn keyspace(conn: &mut Connection) -> redis::RedisResult<Vec<(u64, u64)>> {
    let info: String = redis::cmd("INFO").arg("keyspace").query(conn)?;
    Ok(info
        .lines()
        .filter_map(|l| {
            let (db, rest) = l.strip_prefix("db")?.split_once(':')?;
            let keys = rest.split(',').find_map(|kv| kv.strip_prefix("keys="))?;
            Some((db.parse().ok()?, keys.parse().ok()?))
        })
        .collect())
}

pub fn restore<R: Read>(
    conn: &mut Connection,
    address: &str,
    rdb: R,
    replace: bool,
    now_ms: i64,
) -> Result<RestoreStats, LiveRestoreError> {
    let occupied: Vec<(u64, u64)> = keyspace(conn)
        .map_err(|e| classify(address, e))?
        .into_iter()
        .filter(|(_, keys)| *keys > 0)
        .collect();
    if !occupied.is_empty() && !replace {
        let list: Vec<String> = occupied
            .iter()
            .map(|(db, n)| format!("db{db}: {n} keys"))
            .collect();
        return Err(LiveRestoreError::Usage(format!(
            "{address} is not empty ({}); restore into an empty instance, or pass --force to replace keys of the same name",
            list.join(", ")
        )));
    }
    let mut restored: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut stats = RestoreStats::default();
    let outcome = replay(conn, rdb, replace, now_ms, &mut restored, &mut stats);
    if let Err(e) = outcome {
        let removed = roll_back(conn, &restored, replace);
        let undo = match (replace, removed) {
            (true, _) => "keys already replaced stay replaced (--force)".to_string(),
            (false, Ok(n)) => format!("removed the {n} keys it had restored"),
            (false, Err(r)) => format!("removing the keys it had restored failed too: {r}"),
        };
        return Err(LiveRestoreError::Failed(format!(
            "restore into {address} failed after {} keys: {e}; {undo}",
            stats.keys
        )));
    }
    Ok(stats)
}

fn replay<R: Read>(
    conn: &mut Connection,
    rdb: R,
    replace: bool,
    now_ms: i64,
    restored: &mut Vec<(u64, Vec<u8>)>,
    stats: &mut RestoreStats,
) -> Result<(), String> {
    let mut reader = RdbReader::new(rdb).map_err(|e| e.to_string())?;
    let version = reader.version();
    let mut db = 0u64;
    let mut batch = Batch::default();
    loop {
        let event = match reader.next_event() {
            Ok(Some(event)) => event,
            Ok(None) => break,
            Err(e @ (RdbError::Unsupported(_) | RdbError::Format(_) | RdbError::Io(_))) => {
                return Err(e.to_string())
            }
        };
        match event {
            RdbEvent::SelectDb(n) => {
                batch.flush(conn)?;
                redis::cmd("SELECT")
                    .arg(n)
                    .exec(conn)
                    .map_err(|e| format!("SELECT {n}: {e}"))?;
                db = n;
            }
            RdbEvent::Entry(entry) => {
                if entry.expire_at_ms.is_some_and(|t| t <= now_ms) {
                    stats.expired_skipped += 1;
                    continue;
                }
                let payload = entry.dump_payload(version);
                let mut cmd = redis::cmd("RESTORE");
                cmd.arg(&entry.key)
                    .arg(entry.expire_at_ms.unwrap_or(0))
                    .arg(&payload);
                if replace {
                    cmd.arg("REPLACE");
                }
                if entry.expire_at_ms.is_some() {
                    cmd.arg("ABSTTL");
                }
                if let Some(idle) = entry.idle_seconds {
                    cmd.arg("IDLETIME").arg(idle);
                }
                if let Some(freq) = entry.lfu_freq {
                    cmd.arg("FREQ").arg(freq);
                }
                batch.push(
                    cmd,
                    payload.len() + entry.key.len(),
                    format!(
                        "{} key {}",
                        entry.type_name(),
                        String::from_utf8_lossy(&entry.key)
                    ),
                );
                restored.push((db, entry.key));
                stats.keys += 1;
                if batch.is_full() {
                    batch.flush(conn)?;
                }
            }
            RdbEvent::Function(code) => {
                batch.flush(conn)?;
                let mut cmd = redis::cmd("FUNCTION");
                cmd.arg("LOAD");
                if replace {
                    cmd.arg("REPLACE");
                }
                cmd.arg(code)
                    .exec(conn)
                    .map_err(|e| format!("FUNCTION LOAD: {e}"))?;
                stats.functions += 1;
            }
            RdbEvent::SkippedModuleAux => {
                stats.module_aux_skipped += 1;
                tracing::warn!("skipping module auxiliary data: no command restores it");
            }
        }
    }
    batch.flush(conn)
}

#[derive(Default)]
struct Batch {
    pipe: redis::Pipeline,
    labels: Vec<String>,
    bytes: usize,
}

impl Batch {
    fn push(&mut self, cmd: redis::Cmd, bytes: usize, label: String) {
        self.pipe.add_command(cmd);
        self.labels.push(label);
        self.bytes += bytes;
    }

    fn is_full(&self) -> bool {
        self.labels.len() >= BATCH_COMMANDS || self.bytes >= BATCH_BYTES
    }

    fn flush(&mut self, conn: &mut Connection) -> Result<(), String> {
        if self.labels.is_empty() {
            return Ok(());
        }
        let replies: Vec<redis::Value> = self.pipe.query(conn).map_err(|e| {
            with_hint(format!(
                "RESTORE of a batch starting with {}: {e}",
                self.labels[0]
            ))
        })?;
        for (reply, label) in replies.iter().zip(&self.labels) {
            if let redis::Value::ServerError(e) = reply {
                return Err(with_hint(format!(
                    "RESTORE of {label}: {}",
                    e.details().unwrap_or(e.code())
                )));
            }
        }
        self.pipe.clear();
        self.labels.clear();
        self.bytes = 0;
        Ok(())
    }
}

/// Redis refuses DUMP payloads from a newer RDB format; say what to do.
fn with_hint(message: String) -> String {
    if message.contains("payload version") {
        format!("{message} (the target Redis is older than the one backed up: restore into the same or a newer version, or restore as an RDB file)")
    } else {
        message
    }
}

fn roll_back(
    conn: &mut Connection,
    restored: &[(u64, Vec<u8>)],
    replace: bool,
) -> Result<usize, String> {
    if replace {
        return Ok(0);
    }
    let mut removed = 0;
    let mut by_db: std::collections::BTreeMap<u64, Vec<&Vec<u8>>> = Default::default();
    for (db, key) in restored {
        by_db.entry(*db).or_default().push(key);
    }
    for (db, keys) in by_db {
        redis::cmd("SELECT")
            .arg(db)
            .exec(conn)
            .map_err(|e| e.to_string())?;
        for chunk in keys.chunks(512) {
            let n: usize = redis::cmd("UNLINK")
                .arg(chunk)
                .query(conn)
                .map_err(|e| e.to_string())?;
            removed += n;
        }
    }
    Ok(removed)
}
