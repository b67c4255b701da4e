//! A Redis drill. With a `redis-server` (or `valkey-server`) at hand, the
//! RDB is restored into a file in a private directory and loaded by a
//! throwaway server listening only on a socket there; the checks ask that
//! server. The RDB is also parsed end to end in any case, which is all a
//! drill without a server binary can do: count keys, find the named ones.
//! The directory and the server go away whatever happens.

use std::io::BufReader;
use std::path::{Path, PathBuf};

use chrono::Utc;
use tokio::io::AsyncWriteExt;
use vertice_crds::drill::{DrillReport, RedisChecks};

use super::throwaway::{connect, start_server};
use crate::artifact::{check_integrity, read_failed};
use crate::engine::common::{record_restore, timed, Drilled};
use crate::engine::redis::census::{self, Census};
use crate::engine::redis::rdb::RdbError;
use crate::engine::throwaway::{find_binary, PrivateDir};
use crate::error::{Error, Result};

/// Keys that expire within this long of the census may be gone by the time
/// the server has loaded.
const EXPIRY_SLACK_MS: i64 = 10 * 60 * 1000;

pub async fn drill(d: &Drilled<'_>, checks: &RedisChecks, report: &mut DrillReport) -> Result<()> {
    let server = find_server(&d.args.redis_server)?;
    let now_ms = Utc::now().timestamp_millis();
    let backup_ms = d.backup.manifest.started_at.timestamp_millis();
    let times = [backup_ms, now_ms, now_ms + EXPIRY_SLACK_MS];
    let wanted: Vec<(u64, Vec<u8>)> = checks
        .keys
        .iter()
        .map(|k| (u64::from(k.db), k.key.as_bytes().to_vec()))
        .collect();
    let Some(server) = server else {
        return drill_by_parse(d, checks, times, &wanted, report).await;
    };
    drill_on_server(d, checks, &server, times, &wanted, report).await
}

/// Without a server binary, the streaming parse alone decides.
async fn drill_by_parse(
    d: &Drilled<'_>,
    checks: &RedisChecks,
    times: [i64; 3],
    wanted: &[(u64, Vec<u8>)],
    report: &mut DrillReport,
) -> Result<()> {
    report.target = Some("streaming parse of the RDB (no redis-server)".into());
    let census = timed(report, parse_stream(d, times.to_vec(), wanted.to_vec())).await?;
    record_counts(d, checks, &census, times[0], report);
    for (check, id) in checks.keys.iter().zip(wanted) {
        let found = census.found.get(id).copied();
        report.record(
            key_check_name(check.db, &check.key),
            judge_key(found, check.type_.as_deref()),
        );
    }
    Ok(())
}

/// The RDB written to a private directory, parsed, and loaded by a
/// throwaway server the checks ask.
async fn drill_on_server(
    d: &Drilled<'_>,
    checks: &RedisChecks,
    server: &Path,
    times: [i64; 3],
    wanted: &[(u64, Vec<u8>)],
    report: &mut DrillReport,
) -> Result<()> {
    let dir = PrivateDir::create(None)?;
    report.target = Some(format!(
        "ephemeral {} on a private socket",
        server.display()
    ));
    let rdb = dir.path.join("dump.rdb");
    let loaded = timed(report, async {
        write_rdb(d, &rdb).await?;
        let census = parse_file(&rdb, times.to_vec(), wanted.to_vec()).await?;
        let running = start_server(server, &dir.path, &census).await?;
        Ok((census, running))
    })
    .await;
    // A server that does not load the file is the next check's failure.
    let (census, running) = record_restore(report, loaded, |_| Ok(()))?;
    record_counts(d, checks, &census, times[0], report);
    let mut running = match running {
        Ok(r) => {
            report.record("load into redis-server", Ok(()));
            r
        }
        Err(why) => {
            report.record("load into redis-server", Err(why));
            return Ok(());
        }
    };
    let socket = dir.path.join("redis.sock");
    let asked: Vec<(u32, String)> = checks.keys.iter().map(|k| (k.db, k.key.clone())).collect();
    let dbs = census.highest_db();
    let answers = tokio::task::spawn_blocking(move || ask_server(&socket, dbs, &asked))
        .await
        .map_err(|e| Error::target(format!("redis check task failed: {e}")))?;
    let _ = running.kill().await;
    let (served, types) = match answers {
        Ok(a) => a,
        Err(e) => {
            report.record("query redis-server", Err(e));
            return Ok(());
        }
    };
    record_served(checks, &census, times, served, types, report);
    Ok(())
}

/// What the server holds against the census: the key count within what
/// may have expired meanwhile, and each named key's type.
fn record_served(
    checks: &RedisChecks,
    census: &Census,
    times: [i64; 3],
    served: u64,
    types: Vec<Option<String>>,
    report: &mut DrillReport,
) {
    let (low, high) = (
        census.alive(times[2]).unwrap_or(0),
        census.alive(times[1]).unwrap_or(0),
    );
    report.record(
        "keys loaded",
        if (low..=high).contains(&served) {
            Ok(())
        } else {
            Err(format!(
                "redis-server holds {served} keys after loading; the RDB has {high} unexpired keys"
            ))
        },
    );
    for (check, found) in checks.keys.iter().zip(types) {
        report.record(
            key_check_name(check.db, &check.key),
            judge_key(found.as_deref(), check.type_.as_deref()),
        );
    }
}

/// The count recorded at backup time against the keys alive then.
fn record_counts(
    d: &Drilled<'_>,
    checks: &RedisChecks,
    census: &Census,
    backup_ms: i64,
    report: &mut DrillReport,
) {
    let Some(recorded) = d.backup.manifest.source.keys else {
        tracing::info!("the backup recorded no key count (made by an older agent); the key count check is skipped");
        return;
    };
    let restored = census.alive(backup_ms).unwrap_or(0);
    let tolerance = checks.key_count_tolerance_percent;
    report.record(
        "key count",
        if census::within_tolerance(recorded, restored, tolerance) {
            Ok(())
        } else {
            Err(format!(
                "the backup holds {restored} keys; {recorded} were counted at backup time (tolerance {tolerance}%)"
            ))
        },
    );
}

fn key_check_name(db: u32, key: &str) -> String {
    let shown: String = key.chars().take(64).collect();
    format!("key db{db}/{shown}")
}

fn judge_key(found: Option<&str>, want: Option<&str>) -> std::result::Result<(), String> {
    match (found, want) {
        (None, _) => Err("missing".into()),
        (Some(t), Some(w)) if t != w => Err(format!("is a {t}, expected a {w}")),
        _ => Ok(()),
    }
}

/// `auto`: redis-server, else valkey-server, on PATH; `none`; or a path.
fn find_server(setting: &str) -> Result<Option<PathBuf>> {
    find_binary(
        setting,
        "--redis-server",
        &["redis-server", "valkey-server"],
    )
}

async fn parse_stream(
    d: &Drilled<'_>,
    times: Vec<i64>,
    wanted: Vec<(u64, Vec<u8>)>,
) -> Result<Census> {
    let open = d.backup.open().await?;
    let reader = tokio_util::io::SyncIoBridge::new(open.reader);
    let census = tokio::task::spawn_blocking(move || {
        census::take(
            BufReader::with_capacity(256 * 1024, reader),
            &times,
            &wanted,
        )
    })
    .await
    .map_err(|e| Error::target(format!("RDB parse task failed: {e}")))?
    .map_err(|e| match e {
        // The store failed midway: nothing is known about the RDB.
        RdbError::Io(io) if crate::store::store_failure(&io).is_some() => {
            read_failed(d.backup.manifest, d.backup.artifact, &io)
        }
        e => Error::integrity(format!("the RDB cannot be read to its end: {e}")),
    })?;
    Ok(census)
}

async fn parse_file(path: &Path, times: Vec<i64>, wanted: Vec<(u64, Vec<u8>)>) -> Result<Census> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let file = std::fs::File::open(&path)
            .map_err(|e| Error::target(format!("{}: {e}", path.display())))?;
        census::take(BufReader::with_capacity(256 * 1024, file), &times, &wanted)
            .map_err(|e| Error::integrity(format!("the RDB cannot be read to its end: {e}")))
    })
    .await
    .map_err(|e| Error::target(format!("RDB parse task failed: {e}")))?
}

/// The artifact into `path`, checked against the manifest.
async fn write_rdb(d: &Drilled<'_>, path: &Path) -> Result<()> {
    let mut open = d.backup.open().await?;
    let mut file = tokio::fs::File::create(path)
        .await
        .map_err(|e| Error::target(format!("creating {}: {e}", path.display())))?;
    tokio::io::copy(&mut open.reader, &mut file)
        .await
        .map_err(|e| match crate::store::store_failure(&e) {
            Some(_) => read_failed(d.backup.manifest, d.backup.artifact, &e),
            None => Error::target(format!("writing {}: {e}", path.display())),
        })?;
    file.flush()
        .await
        .map_err(|e| Error::target(format!("writing {}: {e}", path.display())))?;
    check_integrity(d.backup.manifest, d.backup.artifact, &open)
}

/// The total key count and the type of each asked key (`None`: absent).
fn ask_server(
    socket: &Path,
    highest_db: u64,
    keys: &[(u32, String)],
) -> std::result::Result<(u64, Vec<Option<String>>), String> {
    let mut conn = connect(socket).map_err(|e| e.to_string())?;
    let mut total = 0u64;
    for db in 0..=highest_db {
        redis::cmd("SELECT")
            .arg(db)
            .query::<()>(&mut conn)
            .map_err(|e| e.to_string())?;
        total += redis::cmd("DBSIZE")
            .query::<u64>(&mut conn)
            .map_err(|e| e.to_string())?;
    }
    let mut types = Vec::new();
    for (db, key) in keys {
        let found = redis::cmd("SELECT")
            .arg(*db)
            .query::<()>(&mut conn)
            .and_then(|()| redis::cmd("TYPE").arg(key).query::<String>(&mut conn));
        types.push(match found {
            Ok(t) if t == "none" => None,
            Ok(t) => Some(t),
            // A database beyond the backup's highest does not exist: absent.
            Err(_) => None,
        });
    }
    Ok((total, types))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_checks_name_the_type_they_found() {
        assert!(judge_key(Some("hash"), Some("hash")).is_ok());
        assert!(judge_key(Some("hash"), None).is_ok());
        assert_eq!(
            judge_key(Some("list"), Some("hash")).expect_err("wrong type"),
            "is a list, expected a hash"
        );
        assert_eq!(judge_key(None, None).expect_err("missing"), "missing");
    }
}
