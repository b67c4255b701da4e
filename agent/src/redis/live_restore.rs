//! Replays an RDB into a running Redis with RESTORE, keeping each key's TTL
//! and eviction hints. Runs on a blocking thread: the RDB reader is
//! synchronous and the commands are pipelined in batches.
//!
//! All or nothing, as far as Redis allows: the target must hold no keys
//! unless `replace` is set. On a standalone Redis or Valkey the restore is
//! staged in scratch databases and swapped in atomically at the end (see
//! [`super::staging`]); where that is impossible (Redis Cluster, `--force`
//! into a non-empty instance) keys go straight in, and a failure removes the
//! keys restored so far while their names fit a bounded record.

use std::io::Read;

use redis::{Connection, ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo};

use super::rdb::{RdbError, RdbEvent, RdbReader};
use super::staging;
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

/// How a live restore proceeds, decided before anything is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Into scratch databases, swapped in at once: atomic for the target.
    Staged { databases: u64 },
    /// Straight into the target (Redis Cluster, one database, `--force` on a
    /// non-empty instance, SWAPDB not allowed); `why` says which.
    Direct { why: String },
}

/// Checks the target before anything is sent: a replica is refused, a
/// non-empty instance needs `replace`, leftovers of an interrupted staged
/// restore are named. Returns how the restore will proceed.
pub fn preflight(
    conn: &mut Connection,
    address: &str,
    replace: bool,
) -> Result<Mode, LiveRestoreError> {
    let replication: String = redis::cmd("INFO")
        .arg("replication")
        .query(conn)
        .map_err(|e| classify(address, e))?;
    if info_field(&replication, "role").as_deref() == Some("slave") {
        let primary =
            info_field(&replication, "master_host").unwrap_or_else(|| "its primary".into());
        return Err(LiveRestoreError::Usage(format!(
            "{address} is a read-only replica (of {primary}); restore into the primary instead"
        )));
    }
    let occupied: Vec<(u64, u64)> = keyspace(conn)
        .map_err(|e| classify(address, e))?
        .into_iter()
        .filter(|(_, keys)| *keys > 0)
        .collect();
    for (db, _) in &occupied {
        if has_marker(conn, *db) {
            return Err(LiveRestoreError::Usage(format!(
                "{address} db {db} holds the staging area of an interrupted restore (key {}); the target itself was left as it was: empty that database (SELECT {db}; FLUSHDB) and run the restore again",
                staging::MARKER_KEY
            )));
        }
    }
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
    let cluster: String = redis::cmd("INFO")
        .arg("cluster")
        .query(conn)
        .unwrap_or_default();
    if info_field(&cluster, "cluster_enabled").as_deref() == Some("1") {
        return Ok(Mode::Direct {
            why: "Redis Cluster has a single database and no SWAPDB".into(),
        });
    }
    if !occupied.is_empty() {
        return Ok(Mode::Direct {
            why: "--force merges into a non-empty instance".into(),
        });
    }
    let databases = database_count(conn);
    if databases < 2 {
        return Ok(Mode::Direct {
            why: "the target has a single database, none to stage in".into(),
        });
    }
    // SWAPDB of a database with itself changes nothing: it proves the
    // command is there and allowed, from a script as the swap will run it.
    let probe = redis::cmd("EVAL")
        .arg("return redis.call('SWAPDB', 0, 0)")
        .arg(0)
        .exec(conn);
    if let Err(e) = probe {
        return Ok(Mode::Direct {
            why: format!("SWAPDB is not available ({e})"),
        });
    }
    Ok(Mode::Staged { databases })
}

fn info_field(info: &str, name: &str) -> Option<String> {
    info.lines().find_map(|l| {
        l.trim()
            .strip_prefix(name)?
            .strip_prefix(':')
            .map(str::to_string)
    })
}

fn has_marker(conn: &mut Connection, db: u64) -> bool {
    let mut pipe = redis::pipe();
    pipe.cmd("SELECT")
        .arg(db)
        .ignore()
        .cmd("EXISTS")
        .arg(staging::MARKER_KEY);
    let found: Result<(u64,), _> = pipe.query(conn);
    let _ = redis::cmd("SELECT").arg(0).exec(conn);
    matches!(found, Ok((1,)))
}

/// `CONFIG GET databases`, or the default of 16 where CONFIG is not allowed.
fn database_count(conn: &mut Connection) -> u64 {
    let reply: Result<Vec<String>, _> =
        redis::cmd("CONFIG").arg("GET").arg("databases").query(conn);
    reply
        .ok()
        .and_then(|v| v.get(1).and_then(|n| n.parse().ok()))
        .unwrap_or(16)
}

/// Replays `rdb` into the target. Staged: every database into its scratch
/// database, then `before_commit` (the caller's integrity check, after the
/// whole stream was read), then one atomic swap. Direct: straight in; what
/// was written is removed again on failure, as far as a bounded record of
/// key names allows.
pub fn restore<R: Read>(
    conn: &mut Connection,
    address: &str,
    mut rdb: R,
    mode: &Mode,
    replace: bool,
    now_ms: i64,
    before_commit: impl FnOnce() -> Result<(), String>,
) -> Result<RestoreStats, LiveRestoreError> {
    let mut stats = RestoreStats::default();
    match mode {
        Mode::Staged { databases } => {
            let occupied = Vec::new();
            let mut stages = staging::Allocator::new(*databases, occupied);
            let outcome = replay(
                conn,
                &mut rdb,
                Sink::Staged(&mut stages),
                replace,
                now_ms,
                &mut stats,
            )
            .and_then(|()| drain(&mut rdb))
            .and_then(|()| before_commit())
            .and_then(|()| staging::swap_in(conn, &stages.stages));
            if let Err(e) = outcome {
                let undo = match staging::discard(conn, &stages.stages) {
                    Ok(()) => {
                        "the target was not changed (the staged copy was removed)".to_string()
                    }
                    Err(r) => format!("the target was not changed; {r}"),
                };
                return Err(LiveRestoreError::Failed(format!(
                    "restore into {address} failed after {} keys: {e}; {undo}",
                    stats.keys
                )));
            }
            Ok(stats)
        }
        Mode::Direct { why } => {
            tracing::info!(reason = %why, "restoring straight into the target: not atomic");
            let mut record = Written::default();
            let outcome = replay(
                conn,
                &mut rdb,
                Sink::Direct(&mut record),
                replace,
                now_ms,
                &mut stats,
            )
            .and_then(|()| drain(&mut rdb))
            .and_then(|()| before_commit());
            if let Err(e) = outcome {
                let undo = if replace {
                    "keys already replaced stay replaced (--force)".to_string()
                } else {
                    record.roll_back(conn)
                };
                return Err(LiveRestoreError::Failed(format!(
                    "restore into {address} failed after {} keys: {e}; {undo}",
                    stats.keys
                )));
            }
            Ok(stats)
        }
    }
}

/// Reads what follows the RDB's end, so the caller's checksums cover every
/// stored byte.
fn drain<R: Read>(rdb: &mut R) -> Result<(), String> {
    std::io::copy(rdb, &mut std::io::sink())
        .map(|_| ())
        .map_err(|e| format!("reading the rest of the backup: {e}"))
}

/// Where replayed keys go.
enum Sink<'a> {
    Staged(&'a mut staging::Allocator),
    Direct(&'a mut Written),
}

/// Key names written straight into the target, kept for a rollback up to
/// [`ROLLBACK_BUDGET`] bytes so memory stays flat at any key count; past it a
/// failure can no longer be undone, and the error says so.
#[derive(Default)]
struct Written {
    keys: Vec<(u64, Vec<u8>)>,
    bytes: usize,
    overflowed: bool,
}

/// Key-name bytes kept for a direct restore's rollback.
const ROLLBACK_BUDGET: usize = 32 << 20;

impl Written {
    fn push(&mut self, db: u64, key: &[u8]) {
        if self.overflowed {
            return;
        }
        if self.bytes + key.len() > ROLLBACK_BUDGET {
            self.overflowed = true;
            self.keys = Vec::new();
            tracing::warn!("too many keys to keep for a rollback: a failure from here on leaves the keys restored so far");
            return;
        }
        self.bytes += key.len() + 16;
        self.keys.push((db, key.to_vec()));
    }

    fn roll_back(&self, conn: &mut Connection) -> String {
        if self.overflowed {
            return "the keys restored so far were left in place (too many to track for a rollback; stage the restore on a standalone Redis to make it atomic)".into();
        }
        match roll_back(conn, &self.keys) {
            Ok(n) => format!("removed the {n} keys it had restored"),
            Err(r) => format!("removing the keys it had restored failed too: {r}"),
        }
    }
}

fn replay<R: Read>(
    conn: &mut Connection,
    rdb: &mut R,
    mut sink: Sink<'_>,
    replace: bool,
    now_ms: i64,
    stats: &mut RestoreStats,
) -> Result<(), String> {
    let mut reader = RdbReader::new(rdb).map_err(|e| e.to_string())?;
    let version = reader.version();
    let mut db = 0u64;
    let mut batch = Batch::default();
    // Staged restores start in database 0's scratch database.
    select_for(conn, &mut sink, 0)?;
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
                batch.flush(conn, &mut sink)?;
                select_for(conn, &mut sink, n)?;
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
                let label = format!(
                    "{} key {}",
                    entry.type_name(),
                    String::from_utf8_lossy(&entry.key)
                );
                batch.push(cmd, payload.len() + entry.key.len(), label, db, entry.key);
                stats.keys += 1;
                if batch.is_full() {
                    batch.flush(conn, &mut sink)?;
                }
            }
            RdbEvent::Function(code) => {
                batch.flush(conn, &mut sink)?;
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
    batch.flush(conn, &mut sink)
}

/// Selects where backup database `db` is written: its scratch database
/// (created with its marker key the first time) or the database itself.
fn select_for(conn: &mut Connection, sink: &mut Sink<'_>, db: u64) -> Result<(), String> {
    let Sink::Staged(stages) = sink else {
        return redis::cmd("SELECT")
            .arg(db)
            .exec(conn)
            .map_err(|e| format!("SELECT {db}: {e}"));
    };
    let first = !stages.stages.iter().any(|s| s.target == db);
    let scratch = stages.scratch_for(db)?;
    redis::cmd("SELECT")
        .arg(scratch)
        .exec(conn)
        .map_err(|e| format!("SELECT {scratch}: {e}"))?;
    if first {
        // NX: a scratch database that filled up since the check is not ours.
        let set: Option<String> = redis::cmd("SET")
            .arg(staging::MARKER_KEY)
            .arg(db)
            .arg("NX")
            .query(conn)
            .map_err(|e| format!("marking scratch db {scratch}: {e}"))?;
        if set.is_none() {
            return Err(format!("scratch db {scratch} was taken meanwhile"));
        }
        stages.count(db);
    }
    Ok(())
}

/// RESTORE commands sent as one pipeline. Only keys whose RESTORE succeeded
/// count as written by this restore (a key another client holds fails with
/// BUSYKEY and is never touched again).
#[derive(Default)]
struct Batch {
    pipe: redis::Pipeline,
    labels: Vec<String>,
    keys: Vec<(u64, Vec<u8>)>,
    bytes: usize,
}

impl Batch {
    fn push(&mut self, cmd: redis::Cmd, bytes: usize, label: String, db: u64, key: Vec<u8>) {
        self.pipe.add_command(cmd);
        self.labels.push(label);
        self.keys.push((db, key));
        self.bytes += bytes;
    }

    fn is_full(&self) -> bool {
        self.labels.len() >= BATCH_COMMANDS || self.bytes >= BATCH_BYTES
    }

    fn flush(&mut self, conn: &mut Connection, sink: &mut Sink<'_>) -> Result<(), String> {
        if self.labels.is_empty() {
            return Ok(());
        }
        // Errors come back per command, so the ones that succeeded are known.
        let replies: Vec<redis::RedisResult<redis::Value>> =
            self.pipe.ignore_errors().query(conn).map_err(|e| {
                with_hint(format!(
                    "RESTORE of a batch starting with {}: {e}",
                    self.labels[0]
                ))
            })?;
        let mut failures = 0usize;
        let mut first_error = None;
        for ((reply, label), (db, key)) in replies.iter().zip(&self.labels).zip(&self.keys) {
            match reply {
                Err(e) => {
                    failures += 1;
                    first_error.get_or_insert_with(|| format!("{label}: {}", one_line(e)));
                }
                Ok(_) => match sink {
                    Sink::Staged(stages) => stages.count(*db),
                    Sink::Direct(written) => written.push(*db, key),
                },
            }
        }
        let first_error = first_error.map(|first| {
            with_hint(format!(
                "RESTORE failed for {failures} of {} keys in a batch, first {first}",
                self.labels.len()
            ))
        });
        self.pipe.clear();
        self.labels.clear();
        self.keys.clear();
        self.bytes = 0;
        first_error.map_or(Ok(()), Err)
    }
}

/// A server error as one short line: its code and message, without the
/// client's wrapping.
fn one_line(e: &redis::RedisError) -> String {
    let text = match (e.code(), e.detail()) {
        (Some(code), Some(detail)) => format!("{code} {detail}"),
        _ => e.to_string(),
    };
    text.lines()
        .next()
        .unwrap_or_default()
        .chars()
        .take(200)
        .collect()
}

/// Redis refuses DUMP payloads from a newer RDB format, or runs out of
/// memory; say what to do.
fn with_hint(message: String) -> String {
    if message.contains("OOM") || message.contains("maxmemory") {
        format!("{message} (the target reached its maxmemory: give it more memory, or restore as an RDB file)")
    } else if message.contains("payload version") {
        format!("{message} (the target Redis is older than the one backed up: restore into the same or a newer version, or restore as an RDB file)")
    } else {
        message
    }
}

fn roll_back(conn: &mut Connection, restored: &[(u64, Vec<u8>)]) -> Result<usize, String> {
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
