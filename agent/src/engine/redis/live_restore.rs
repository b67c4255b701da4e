//! Replays an RDB into a running Redis with RESTORE, keeping each key's TTL
//! and eviction hints. Runs on a blocking thread: the RDB reader is
//! synchronous and the commands are pipelined (see [`super::wire`]).
//!
//! Memory stays a small multiple of one store part whatever the size of a
//! value: a RESTORE payload streams from the backup to the socket (its
//! length is known from the value's header, its CRC64 is computed on the
//! way), and an aggregate whose elements exceed [`SPLIT_ABOVE`] is restored
//! in parts — a RESTORE of its first elements, then RPUSH / SADD / HSET /
//! ZADD of the rest, then its expiry. A single element holding a string
//! above [`STREAM_ABOVE`] is not held either: it streams verbatim into the
//! RESTORE, or decoded into the argument of a command of its own.
//!
//! All or nothing, as far as Redis allows: the target must hold no keys
//! unless `replace` is set. On a standalone Redis or Valkey the restore is
//! staged in scratch databases and swapped in atomically at the end (see
//! [`super::staging`]); where that is impossible (Redis Cluster, `--force`
//! into a non-empty instance) keys go straight in, and a failure removes the
//! keys restored so far while their names fit a bounded record.

use std::io::Read;

use redis::{Connection, ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo};

use super::checksum::{DumpDigest, FOOTER_LEN};
use super::packed;
use super::rdb::{
    self, Body, Element, KeyHead, Large, LargeKind, RdbError, RdbEvent, RdbReader, Shape, Str,
};
use super::resp::{self, Restore};
use super::staging;
use super::target::RedisTarget;
use super::wire::{key_label, one_line, Sent, Wire};

/// An aggregate whose elements take more than this (one store part, the
/// multipart part size) is restored in parts; smaller ones in one RESTORE,
/// byte for byte as they were saved.
pub const SPLIT_ABOVE: usize = 8 << 20;
/// Each later part of a value restored in parts carries at most this many
/// bytes or items.
const PART_BYTES: usize = 1 << 20;
const PART_ITEMS: usize = 1024;
/// A string inside a list, set, hash or zset larger than this (one later
/// part) is never held: it streams from the backup to the server, into the
/// RESTORE or, decoded, into the argument of a command of its own.
const STREAM_ABOVE: u64 = PART_BYTES as u64;
/// A payload streams from the backup to the server in chunks of this size.
const CHUNK: usize = 256 << 10;
const READ_BUFFER: usize = 64 << 10;

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

impl Sink<'_> {
    /// Counts a key this restore created.
    fn record(&mut self, db: u64, key: &[u8]) {
        match self {
            Sink::Staged(stages) => stages.count(db),
            Sink::Direct(written) => written.push(db, key),
        }
    }
}

fn replay<R: Read>(
    conn: &mut Connection,
    rdb: &mut R,
    sink: Sink<'_>,
    replace: bool,
    now_ms: i64,
    stats: &mut RestoreStats,
) -> Result<(), String> {
    // The reader takes a few bytes at a time; each read of the backup
    // stream itself crosses into the async runtime.
    let buffered = std::io::BufReader::with_capacity(READ_BUFFER, rdb);
    let reader = RdbReader::new(buffered).map_err(|e| e.to_string())?;
    let mut replay = Replay {
        reader,
        out: Out {
            wire: Wire::new(conn),
            sink,
            replace,
            db: 0,
            chunk: vec![0; CHUNK],
            no_touch: None,
        },
    };
    let outcome = replay.run(now_ms, stats);
    if outcome.is_err() {
        // Commands already written still get their replies: read them, so
        // the keys they created are counted for the cleanup, and the
        // connection is free for it.
        let _ = replay.out.settle();
    }
    outcome
}

/// One pass over the RDB, writing into the target. The reader and the
/// writing side are apart so a large string can stream from one to the
/// other.
struct Replay<'c, 's, R> {
    reader: RdbReader<R>,
    out: Out<'c, 's>,
}

/// The writing side of a [`Replay`].
struct Out<'c, 's> {
    wire: Wire<'c>,
    sink: Sink<'s>,
    replace: bool,
    /// The backup database being restored.
    db: u64,
    chunk: Vec<u8>,
    /// Whether the server took `CLIENT NO-TOUCH ON`, once asked.
    no_touch: Option<bool>,
}

/// What the commands after a value's first RESTORE add, in messages.
const LATER: &str = "its later elements";

impl<R: Read> Replay<'_, '_, R> {
    fn run(&mut self, now_ms: i64, stats: &mut RestoreStats) -> Result<(), String> {
        // Staged restores start in database 0's scratch database.
        self.out.select(0)?;
        while let Some(event) = self.reader.next_event().map_err(|e| e.to_string())? {
            match event {
                RdbEvent::SelectDb(n) => self.out.select(n)?,
                RdbEvent::Key(head) => {
                    if head.expire_at_ms.is_some_and(|t| t <= now_ms) {
                        self.reader.skip_value(&head).map_err(|e| e.to_string())?;
                        stats.expired_skipped += 1;
                        continue;
                    }
                    self.key(&head)?;
                    stats.keys += 1;
                }
                RdbEvent::Function(code) => {
                    self.out.settle()?;
                    let mut cmd = redis::cmd("FUNCTION");
                    cmd.arg("LOAD");
                    if self.out.replace {
                        cmd.arg("REPLACE");
                    }
                    cmd.arg(code)
                        .exec(self.out.wire.conn())
                        .map_err(|e| format!("FUNCTION LOAD: {e}"))?;
                    stats.functions += 1;
                }
                RdbEvent::SkippedModuleAux => {
                    stats.module_aux_skipped += 1;
                    tracing::warn!("skipping module auxiliary data: no command restores it");
                }
            }
        }
        self.out.settle()
    }

    fn key(&mut self, head: &KeyHead) -> Result<(), String> {
        let t = head.value_type;
        match rdb::shape(t) {
            Shape::OneString { fixed } => {
                let (string_head, body) = self
                    .reader
                    .string_head(fixed)
                    .map_err(|e| unreadable(head, e))?;
                let args = restore_args(head, self.out.replace, true);
                self.restore(head, &args, &[&[t], &string_head], body)
            }
            Shape::Counted => self.counted(head),
            Shape::Whole => {
                let value = self.reader.value(head).map_err(|e| e.to_string())?;
                let args = restore_args(head, self.out.replace, true);
                self.restore(head, &args, &[&value], 0)
            }
        }
    }

    /// One RESTORE. Its payload is `prefix` (from memory), then `body`
    /// bytes sent verbatim as they are read from the backup, then the DUMP
    /// footer.
    fn restore(
        &mut self,
        head: &KeyHead,
        args: &Restore<'_>,
        prefix: &[&[u8]],
        body: u64,
    ) -> Result<(), String> {
        let out = &mut self.out;
        let payload_len = prefix.iter().map(|p| p.len() as u64).sum::<u64>() + body + FOOTER_LEN;
        out.wire.write(&args.head(payload_len))?;
        let mut digest = DumpDigest::new();
        for part in prefix {
            digest.update(part);
            out.wire.write(part)?;
        }
        let mut left = body;
        let mut unread = None;
        while left > 0 {
            let chunk = &mut out.chunk[..left.min(CHUNK as u64) as usize];
            if let Err(e) = self.reader.body(chunk) {
                unread = Some(e);
                break;
            }
            digest.update(chunk);
            out.wire.write(chunk)?;
            left -= chunk.len() as u64;
        }
        let footer = match unread {
            None => digest.footer(self.reader.version()),
            Some(_) => {
                // The server waits for the announced bytes: complete the
                // command with a payload it refuses, so no key is made and
                // the connection stays usable for the cleanup.
                out.wire.pad(left)?;
                digest.spoiled_footer()
            }
        };
        out.wire.write(&footer)?;
        out.wire.write(&args.tail())?;
        let sent = out.sent_for(head, None);
        match unread {
            None => out.sent(sent, payload_len),
            Some(e) => {
                // The read error is the one to report, not the refusal.
                let _ = out.sent(sent, payload_len);
                Err(unreadable(head, e))
            }
        }
    }

    /// A list, set, hash or zset: in one RESTORE if its elements fit in
    /// [`SPLIT_ABOVE`] and none holds a string above [`STREAM_ABOVE`], else
    /// in parts.
    fn counted(&mut self, head: &KeyHead) -> Result<(), String> {
        let t = head.value_type;
        let (count_head, count) = self.reader.count().map_err(|e| unreadable(head, e))?;
        let (elements, mut taken, mut large) = self.buffer_elements(head, count)?;
        // A large element whose length is known once its header is read
        // goes into the RESTORE verbatim, its body streamed.
        let verbatim = large
            .as_ref()
            .and_then(|l| Some((l.known_tail(t)?, l)))
            .map(|(tail, l)| (l.raw.as_slice(), l.body.stored() + tail));
        let last = taken + u64::from(verbatim.is_some()) == count;
        if last && (large.is_none() || verbatim.is_some()) {
            let args = restore_args(head, self.out.replace, true);
            let (raw, body) = verbatim.unwrap_or((&[], 0));
            return self.restore(head, &args, &[&[t], &count_head, &elements, raw], body);
        }
        tracing::info!(
            key = %String::from_utf8_lossy(&head.key),
            kind = head.type_name(),
            elements = count,
            "a value larger than {} MiB or holding an element above {} MiB: restored in parts",
            SPLIT_ABOVE >> 20,
            STREAM_ABOVE >> 20
        );
        self.out.keep_eviction_hints(head)?;
        // The first part goes without the expiry: were it to pass between
        // parts, the later parts would make a new key of their own. The
        // expiry is set after the last part.
        let args = restore_args(head, self.out.replace, false);
        let mut placeholder = None;
        if let Some((raw, body)) = verbatim {
            taken += 1;
            let first_count = rdb::encode_len(taken);
            self.restore(head, &args, &[&[t], &first_count, &elements, raw], body)?;
            large = None;
        } else if taken == 0 {
            // A large hash field (or old zset member) first: RESTORE cannot
            // make an empty key, so it makes one with a stand-in element,
            // removed once the large one is in.
            let (stand_in, remove) = stand_in(t, &head.key).ok_or_else(|| {
                // Only hash fields and old zset members are large
                // before their element's end.
                unreadable(
                    head,
                    RdbError::Format("a large element with no stand-in".into()),
                )
            })?;
            self.restore(head, &args, &[&[t], &rdb::encode_len(1), stand_in], 0)?;
            placeholder = Some(remove);
        } else {
            let first_count = rdb::encode_len(taken);
            self.restore(head, &args, &[&[t], &first_count, &elements], 0)?;
        }
        drop(elements);
        // The later parts add to the key, so it must be the one this
        // RESTORE made, not one another client created meanwhile.
        self.out.settle()?;
        let mut part = Part::new(follow_up_verb(t), &head.key);
        if let Some(l) = large {
            self.large(head, &mut part, l)?;
            taken += 1;
        }
        if let Some(remove) = placeholder {
            self.out.send(head, &remove, LATER)?;
        }
        self.later_parts(head, part, count.saturating_sub(taken))
    }

    /// Elements buffered for the first RESTORE: up to [`SPLIT_ABOVE`]
    /// bytes, stopping at one holding a string above [`STREAM_ABOVE`].
    /// Returns them, how many were taken, and the large one.
    fn buffer_elements(
        &mut self,
        head: &KeyHead,
        count: u64,
    ) -> Result<(Vec<u8>, u64, Option<Large>), String> {
        let t = head.value_type;
        let mut elements = Vec::new();
        let mut taken = 0;
        while taken < count && elements.len() <= SPLIT_ABOVE {
            match self
                .reader
                .element(t, STREAM_ABOVE)
                .map_err(|e| unreadable(head, e))?
            {
                // The first element is the buffer: no copy of it.
                Element::Whole(raw) if elements.is_empty() => elements = raw,
                Element::Whole(raw) => elements.extend_from_slice(&raw),
                Element::Large(l) => return Ok((elements, taken, Some(l))),
            }
            taken += 1;
        }
        Ok((elements, taken, None))
    }

    /// The `left` elements after the first RESTORE, added to the key in
    /// parts, then the key's expiry.
    fn later_parts(&mut self, head: &KeyHead, mut part: Part<'_>, left: u64) -> Result<(), String> {
        let t = head.value_type;
        for _ in 0..left {
            match self
                .reader
                .element(t, STREAM_ABOVE)
                .map_err(|e| unreadable(head, e))?
            {
                Element::Whole(raw) => {
                    part.add(rdb::element_args(t, &raw).map_err(|e| unreadable(head, e))?);
                    if part.is_full() {
                        self.out.send(head, &part.take(), LATER)?;
                    }
                }
                Element::Large(l) => self.large(head, &mut part, l)?,
            }
        }
        self.out.flush(head, &mut part)?;
        if let Some(at) = head.expire_at_ms {
            let at = at.to_string();
            let expire = resp::command(&[&b"PEXPIREAT"[..], &head.key, at.as_bytes()]);
            self.out.send(head, &expire, "its expiry")?;
        }
        Ok(())
    }

    /// An element with a string above [`STREAM_ABOVE`], added to a key
    /// restored before: the string streams, decoded, from the backup into
    /// the command's argument (see [`Out::begin_streamed`]).
    fn large(&mut self, head: &KeyHead, part: &mut Part<'_>, large: Large) -> Result<(), String> {
        let t = head.value_type;
        if let LargeKind::Packed { listpack } = large.kind {
            return self.packed(head, part, large.body, listpack);
        }
        self.out.flush(head, part)?;
        let key = head.key.as_slice();
        let (argc, lead): (usize, Vec<&[u8]>) = match &large.kind {
            LargeKind::Field => (4, vec![b"HSET", key]),
            LargeKind::Value { field } => (4, vec![b"HSET", key, field]),
            // ZADD takes the score first, but it follows the member in the
            // RDB: a script takes them the other way round.
            LargeKind::Member => (6, vec![b"EVAL", ZADD_MEMBER_FIRST, b"1", key]),
            _ => (3, vec![follow_up_verb(t), key]),
        };
        self.out.begin_streamed(argc, &lead)?;
        let len = large.body.decoded_len();
        let mut failed = self
            .out
            .bulk_from(len, &mut self.reader.decoded(large.body))?;
        // The rest of the element; the argument count is announced, so an
        // argument that cannot be read is sent empty (and the command
        // discarded).
        match large.kind {
            LargeKind::Field if failed.is_none() => {
                match self.reader.string_bounded(STREAM_ABOVE) {
                    Ok(Str::Small(value)) => self.out.small_arg(&value)?,
                    Ok(Str::Large(body)) => {
                        failed = self
                            .out
                            .bulk_from(body.decoded_len(), &mut self.reader.decoded(body))?
                    }
                    Err(e) => {
                        self.out.small_arg(b"")?;
                        failed = Some(e);
                    }
                }
            }
            LargeKind::Member if failed.is_none() => match self.reader.score(t) {
                Ok(score) => self.out.small_arg(&score)?,
                Err(e) => {
                    self.out.small_arg(b"")?;
                    failed = Some(e);
                }
            },
            LargeKind::Field | LargeKind::Member => self.out.small_arg(b"")?,
            _ => {}
        }
        self.out.end_streamed(head, len, failed)
    }

    /// A quicklist node holding a large item: its items read as the node
    /// streams past, small ones into parts, large ones streamed on.
    fn packed(
        &mut self,
        head: &KeyHead,
        part: &mut Part<'_>,
        body: Body,
        listpack: bool,
    ) -> Result<(), String> {
        let out = &mut self.out;
        let mut items = packed::Items::new(self.reader.decoded(body), listpack);
        let failed = |e| unreadable(head, rdb::read_error(e));
        while let Some(item) = items.next(STREAM_ABOVE).map_err(failed)? {
            match item {
                packed::Item::Small(item) => {
                    part.add(vec![item]);
                    if part.is_full() {
                        out.send(head, &part.take(), LATER)?;
                    }
                }
                packed::Item::Large(len) => {
                    out.flush(head, part)?;
                    out.begin_streamed(3, &[b"RPUSH", &head.key])?;
                    let unread = out.bulk_from(len, items.input())?;
                    out.end_streamed(head, len, unread)?;
                }
            }
        }
        Ok(())
    }
}

/// `EVAL` script adding a zset member with its score, taking them in the
/// order the RDB has them.
const ZADD_MEMBER_FIRST: &[u8] = b"return redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])";

/// For a value whose first element has a large string before its end (a
/// hash field, a member of a zset of the oldest format): a stand-in element
/// for the first RESTORE, and the command removing it. Its field or member
/// is empty, which the large one is not; an empty one later in the value is
/// added after the removal.
fn stand_in(t: u8, key: &[u8]) -> Option<(&'static [u8], Vec<u8>)> {
    match t {
        4 => Some((b"\x00\x00", resp::command(&[&b"HDEL"[..], key, b""]))),
        3 => Some((b"\x00\x010", resp::command(&[&b"ZREM"[..], key, b""]))),
        _ => None,
    }
}

impl Out<'_, '_> {
    fn settle(&mut self) -> Result<(), String> {
        let sink = &mut self.sink;
        self.wire.settle(&mut |db, key| sink.record(db, key))
    }

    fn sent(&mut self, sent: Sent, bytes: u64) -> Result<(), String> {
        let sink = &mut self.sink;
        self.wire
            .sent(sent, bytes, &mut |db, key| sink.record(db, key))
    }

    fn select(&mut self, db: u64) -> Result<(), String> {
        self.settle()?;
        select_for(self.wire.conn(), &mut self.sink, db)?;
        self.db = db;
        Ok(())
    }

    /// A command adding to the key of `head`, restored before.
    fn send(&mut self, head: &KeyHead, command: &[u8], adds: &'static str) -> Result<(), String> {
        self.wire.write(command)?;
        let sent = self.sent_for(head, Some(adds));
        self.sent(sent, command.len() as u64)
    }

    /// Sends the elements gathered in `part`, if any.
    fn flush(&mut self, head: &KeyHead, part: &mut Part<'_>) -> Result<(), String> {
        if part.args.is_empty() {
            return Ok(());
        }
        self.send(head, &part.take(), LATER)
    }

    /// Starts a command of `argc` arguments, the first ones `lead`, whose
    /// next argument streams from the backup. It goes inside MULTI … EXEC:
    /// its length is announced before its bytes are read, so if reading
    /// fails halfway the command can only be completed with filler — and
    /// DISCARD then drops it, where the server would otherwise run it.
    fn begin_streamed(&mut self, argc: usize, lead: &[&[u8]]) -> Result<(), String> {
        let mut start = resp::command(&[b"MULTI"]);
        resp::array_head(&mut start, argc);
        for arg in lead {
            resp::bulk(&mut start, arg);
        }
        self.wire.write(&start)
    }

    fn small_arg(&mut self, arg: &[u8]) -> Result<(), String> {
        let mut bulk = Vec::with_capacity(arg.len() + 16);
        resp::bulk(&mut bulk, arg);
        self.wire.write(&bulk)
    }

    /// `len` bytes from `src` as one argument, in chunks. A failed read is
    /// returned (the outer error is the server's); the argument is then
    /// padded with zeros, so the command stays well-formed.
    fn bulk_from(&mut self, len: u64, src: &mut impl Read) -> Result<Option<RdbError>, String> {
        let mut head = Vec::with_capacity(24);
        resp::bulk_head(&mut head, len);
        self.wire.write(&head)?;
        let mut left = len;
        while left > 0 {
            let chunk = &mut self.chunk[..left.min(CHUNK as u64) as usize];
            if let Err(e) = src.read_exact(chunk) {
                self.wire.pad(left)?;
                self.wire.write(b"\r\n")?;
                return Ok(Some(rdb::read_error(e)));
            }
            self.wire.write(chunk)?;
            left -= chunk.len() as u64;
        }
        self.wire.write(b"\r\n")?;
        Ok(None)
    }

    /// Ends a command begun with [`Self::begin_streamed`]: EXEC, or DISCARD
    /// if part of it could not be read (that error is then returned).
    fn end_streamed(
        &mut self,
        head: &KeyHead,
        bytes: u64,
        unread: Option<RdbError>,
    ) -> Result<(), String> {
        let end: &[u8] = if unread.is_none() {
            b"EXEC"
        } else {
            b"DISCARD"
        };
        self.wire.write(&resp::command(&[end]))?;
        // Three replies: MULTI's, the command's (QUEUED), EXEC's.
        let mut sent = Ok(());
        for bytes in [0, 0, bytes] {
            let one = self.sent_for(head, Some(LATER));
            sent = sent.and(self.sent(one, bytes));
        }
        match unread {
            None => sent,
            // The read error is the one to report.
            Some(e) => Err(unreadable(head, e)),
        }
    }

    fn sent_for(&self, head: &KeyHead, adds: Option<&'static str>) -> Sent {
        Sent {
            db: self.db,
            key: head.key.clone(),
            kind: head.type_name(),
            adds,
        }
    }

    /// A key restored in parts is written to after its RESTORE, which would
    /// reset the LRU idle time or LFU counter RESTORE gave it. `CLIENT
    /// NO-TOUCH` (Redis 7.2, Valkey) keeps them; older servers give such
    /// keys fresh hints, as any write would.
    fn keep_eviction_hints(&mut self, head: &KeyHead) -> Result<(), String> {
        if self.no_touch.is_some() || (head.idle_seconds.is_none() && head.lfu_freq.is_none()) {
            return Ok(());
        }
        self.settle()?;
        let on = redis::cmd("CLIENT")
            .arg("NO-TOUCH")
            .arg("ON")
            .exec(self.wire.conn());
        if let Err(e) = &on {
            tracing::warn!(
                reply = %one_line(e),
                "the target has no CLIENT NO-TOUCH: values restored in parts get fresh LRU/LFU eviction hints"
            );
        }
        self.no_touch = Some(on.is_ok());
        Ok(())
    }
}

/// A value that could not be read, named.
fn unreadable(head: &KeyHead, e: RdbError) -> String {
    format!("{}: {e}", key_label(head.type_name(), &head.key))
}

/// RESTORE's arguments for `head`. A value restored in parts gets its
/// expiry after the last part instead.
fn restore_args(head: &KeyHead, replace: bool, whole: bool) -> Restore<'_> {
    let ttl = head.expire_at_ms.filter(|_| whole);
    Restore {
        key: &head.key,
        ttl_ms: ttl.unwrap_or(0),
        absttl: ttl.is_some(),
        replace,
        idle_seconds: head.idle_seconds,
        lfu_freq: head.lfu_freq,
    }
}

/// The command adding elements of a value of RDB type `t` (a counted
/// type: lists are 1, 14 and 18).
fn follow_up_verb(t: u8) -> &'static [u8] {
    match t {
        2 => b"SADD",
        3 | 5 => b"ZADD",
        4 => b"HSET",
        _ => b"RPUSH",
    }
}

/// One later part of a value restored in parts: the verb, the key and as
/// many elements as fit.
struct Part<'k> {
    verb: &'static [u8],
    key: &'k [u8],
    args: Vec<Vec<u8>>,
    bytes: usize,
}

impl<'k> Part<'k> {
    fn new(verb: &'static [u8], key: &'k [u8]) -> Self {
        Part {
            verb,
            key,
            args: Vec::new(),
            bytes: 0,
        }
    }

    /// The arguments of one element, which never straddle two parts (a
    /// field and its value, a score and its member).
    fn add(&mut self, element: Vec<Vec<u8>>) {
        self.bytes += element.iter().map(Vec::len).sum::<usize>();
        self.args.extend(element);
    }

    fn is_full(&self) -> bool {
        self.bytes >= PART_BYTES || self.args.len() >= PART_ITEMS
    }

    /// The command, leaving the part empty.
    fn take(&mut self) -> Vec<u8> {
        let mut all: Vec<&[u8]> = vec![self.verb, self.key];
        all.extend(self.args.iter().map(Vec::as_slice));
        let command = resp::command(&all);
        self.args.clear();
        self.bytes = 0;
        command
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn head(expire_at_ms: Option<i64>) -> KeyHead {
        KeyHead {
            key: b"k".to_vec(),
            value_type: 4,
            expire_at_ms,
            idle_seconds: Some(30),
            lfu_freq: None,
        }
    }

    #[test]
    fn a_value_in_parts_gets_its_expiry_after_the_last_part() {
        let h = head(Some(1_700_000_000_000));
        let whole = restore_args(&h, false, true);
        assert_eq!((whole.ttl_ms, whole.absttl), (1_700_000_000_000, true));
        let first = restore_args(&h, true, false);
        assert_eq!(
            (first.ttl_ms, first.absttl, first.replace),
            (0, false, true)
        );
        assert_eq!(first.idle_seconds, Some(30), "eviction hints go with it");
        let no_expiry = head(None);
        let forever = restore_args(&no_expiry, false, true);
        assert_eq!((forever.ttl_ms, forever.absttl), (0, false));
    }

    #[test]
    fn every_aggregate_has_a_command_to_add_its_elements() {
        let verbs: Vec<(u8, &[u8])> = (0..=255)
            .filter(|t| rdb::shape(*t) == Shape::Counted)
            .map(|t| (t, follow_up_verb(t)))
            .collect();
        assert_eq!(
            verbs,
            [
                (1, &b"RPUSH"[..]),
                (2, b"SADD"),
                (3, b"ZADD"),
                (4, b"HSET"),
                (5, b"ZADD"),
                (14, b"RPUSH"),
                (18, b"RPUSH"),
            ]
        );
    }

    #[test]
    fn a_part_holds_whole_elements_up_to_its_bound() {
        let mut part = Part::new(b"HSET", b"h");
        let mut pairs = 0;
        while !part.is_full() {
            part.add(vec![b"field".to_vec(), b"value".to_vec()]);
            pairs += 1;
        }
        assert_eq!(pairs * 2, PART_ITEMS, "fields and values stay paired");
        let command = part.take();
        let mut want: Vec<&[u8]> = vec![b"HSET", b"h"];
        for _ in 0..pairs {
            want.extend([&b"field"[..], b"value"]);
        }
        assert_eq!(command, resp::command(&want));
        assert!(part.args.is_empty() && !part.is_full());
        part.add(vec![vec![0; PART_BYTES]]);
        assert!(part.is_full(), "one large item fills a part");
    }
}
