//! Snapshot mode: the cluster writes its own snapshot of the selected
//! indices into a repository it already knows (`--search-repository`), the
//! agent follows it to the end and stores only a record of it (the
//! snapshot's name, UUID and state, each index's counts) through the usual
//! pipeline, so `list`, `verify` and retention see it like any backup. A
//! snapshot that is not `SUCCESS` on every shard fails the run and is
//! deleted; so is one a signal interrupted. Restores and drills go through
//! the cluster's restore API, one index at a time (each may be renamed).
//!
//! The bytes of the snapshot bypass the agent's compression, encryption and
//! checksums (the repository's storage encrypts them, if anything does),
//! and the nodes need the repository's plugin and credentials.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use super::client::{reason, segment, Client};
use super::cluster::Identity;
use super::repository::{Purpose, Registration};
use super::selection::Selected;
use super::witness;
use crate::engine::common::Stored;
use crate::error::{Error, Result};
use crate::manifest::search::{IndexFacts, IndexSnapshotStats, SearchFacts, SnapshotFacts};

/// How often a running snapshot or restore is asked how it is doing.
const POLL: Duration = Duration::from_secs(1);

/// How long to wait before asking again how a snapshot is doing, `elapsed`
/// after it started: a fiftieth of that, between 50 ms and [`POLL`], so a
/// snapshot's end is seen within 2% of its time (plus 50 ms) — a fixed
/// second added up to a third to a 3-second snapshot — while a long one
/// is still asked only once a second.
fn poll_after(elapsed: Duration) -> Duration {
    (elapsed / 50).clamp(Duration::from_millis(50), POLL)
}

/// What snapshot mode does not do, said in every manifest.
pub const NOT_KEPT: &[&str] = &[
    "the snapshot's bytes bypass the agent's compression, encryption and SHA-256 (the repository's storage protects them)",
    "the cluster's global state (templates, pipelines, cluster settings) is not in the snapshot",
];

/// The repository's type, or why it cannot be used.
pub async fn repository_type(client: &Client, repository: &str) -> Result<String> {
    let path = format!("_snapshot/{}", segment(repository));
    let answer = client.send(Method::GET, &path, None).await?;
    match answer.status.as_u16() {
        200 => Ok(answer.json()[repository]["type"]
            .as_str()
            .unwrap_or("unknown")
            .to_string()),
        404 => Err(Error::usage(format!(
            "--search-repository {repository:?} is not registered on {}; register it first (PUT _snapshot/{repository}) or back up in export mode",
            client.address()
        ))),
        _ => Err(client.refused(&Method::GET, &path, &answer)),
    }
}

/// A snapshot name of this run: lowercase, unique per run.
pub fn snapshot_name(now_millis: u128, random: u16) -> String {
    format!("vertice-{now_millis}-{random:04x}")
}

/// Takes the snapshot and follows it to its end; the facts a manifest
/// records. A snapshot that failed or was interrupted is deleted.
pub async fn take(
    client: &Client,
    identity: &Identity,
    repository: &str,
    indices: &[Selected],
    name: &str,
) -> Result<SearchFacts> {
    let repository_type = repository_type(client, repository).await?;
    let before = counts(client, indices).await?;
    let witnessed_before = witness::before(client, indices, seed_of(name)).await;
    let path = format!("_snapshot/{}/{}", segment(repository), segment(name));
    let names: Vec<&str> = indices.iter().map(|i| i.definition.name.as_str()).collect();
    let body = json!({
        "indices": names.join(","),
        "ignore_unavailable": false,
        "include_global_state": false,
        "partial": false,
        "metadata": {"taken_by": "vertice-agent"},
    });
    // Sent once. A refusal made nothing (and a name that already exists
    // is not this run's to delete); only when the answer was lost may the
    // snapshot have started, and then it is deleted.
    match client
        .send_once(
            Method::PUT,
            &path,
            Some((body.to_string().into_bytes(), "application/json")),
        )
        .await
    {
        Ok(answer) if answer.status.is_success() => {}
        Ok(answer) => return Err(client.refused(&Method::PUT, &path, &answer)),
        Err(e) => {
            let _ = client.send(Method::DELETE, &path, None).await;
            return Err(e);
        }
    }
    tracing::info!(
        repository,
        snapshot = name,
        indices = names.len(),
        "snapshot started; following it"
    );
    let finished = match follow(client, &path).await {
        Ok(snapshot) => counts(client, indices).await.map(|after| (snapshot, after)),
        Err(e) => Err(e),
    };
    let mut witnessed = match &finished {
        Ok(_) => witness::after(client, witnessed_before).await,
        Err(_) => BTreeMap::new(),
    };
    let stats = match &finished {
        Ok(_) => index_stats(client, &path).await,
        Err(_) => BTreeMap::new(),
    };
    let (snapshot, after) = match finished {
        Ok(done) => done,
        Err(e) => {
            // Deleting a running snapshot aborts it.
            let _ = client.send(Method::DELETE, &path, None).await;
            return Err(e.map_message(|m| format!("{m}; snapshot {name} was deleted")));
        }
    };
    Ok(SearchFacts {
        flavour: identity.flavour.as_str().into(),
        version: identity.version_text.clone(),
        cluster_name: identity.name.clone(),
        cluster_uuid: identity.uuid.clone(),
        mode: "snapshot".into(),
        consistency: "snapshot".into(),
        indices: indices
            .iter()
            .map(|i| {
                let name = &i.definition.name;
                let (mappings_digest, witnesses) = witnessed.remove(name).unwrap_or_default();
                IndexFacts {
                    name: name.clone(),
                    documents: before[name],
                    primary_shards: i.primary_shards,
                    content_digest: String::new(),
                    documents_after: Some(after[name]),
                    snapshot: stats.get(name).cloned(),
                    mappings_digest,
                    witnesses,
                }
            })
            .collect(),
        not_kept: NOT_KEPT.iter().map(|s| s.to_string()).collect(),
        snapshot: Some(SnapshotFacts {
            repository: repository.to_string(),
            repository_type,
            snapshot: name.to_string(),
            uuid: snapshot["uuid"].as_str().unwrap_or_default().to_string(),
            state: "SUCCESS".into(),
            shards: snapshot["shards"]["total"].as_u64().unwrap_or(0),
            managed: None,
            blobs: Vec::new(),
        }),
    })
}

/// The most a snapshot's record may hold: it is a few kilobytes per index.
const RECORD_LIMIT: u64 = 64 << 20;

/// The record a snapshot-mode backup stored — the manifest's facts and the
/// witness documents kept out of the manifest — read whole and checked
/// against the manifest's checksums.
pub async fn read_record(backup: &Stored<'_>) -> Result<SearchFacts> {
    use tokio::io::AsyncReadExt;
    let (manifest, artifact) = (backup.manifest, backup.artifact);
    let mut open = backup.open().await?;
    let mut bytes = Vec::new();
    (&mut open.reader)
        .take(RECORD_LIMIT + 1)
        .read_to_end(&mut bytes)
        .await
        .map_err(|e| crate::artifact::read_failed(manifest, artifact, &e))?;
    if bytes.len() as u64 > RECORD_LIMIT {
        return Err(Error::integrity(format!(
            "backup {} artifact {} is larger than any snapshot record ({} MiB): it is not one",
            manifest.backup_id,
            artifact.name,
            RECORD_LIMIT >> 20
        )));
    }
    crate::artifact::check_integrity(manifest, artifact, &open)?;
    serde_json::from_slice(&bytes).map_err(|e| {
        Error::integrity(format!(
            "backup {} artifact {} is no snapshot record: {e}",
            manifest.backup_id, artifact.name
        ))
    })
}

/// A seed for drawing witness documents, different for every snapshot.
fn seed_of(name: &str) -> u64 {
    // FNV-1a: the draw needs variety, not secrecy.
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Each index's shard and file statistics from the snapshot's status,
/// for the manifest. Best effort: a cluster that cannot say leaves them
/// out, and the backup is still the snapshot it followed to `SUCCESS`.
async fn index_stats(client: &Client, path: &str) -> BTreeMap<String, IndexSnapshotStats> {
    match client.get(&format!("{path}/_status")).await {
        Ok(status) => parse_index_stats(&status["snapshots"][0]),
        Err(e) => {
            tracing::warn!(error = %e, "the snapshot's status could not be read; the manifest lists no per-index sizes");
            BTreeMap::new()
        }
    }
}

fn parse_index_stats(snapshot: &Value) -> BTreeMap<String, IndexSnapshotStats> {
    let Some(indices) = snapshot["indices"].as_object() else {
        return BTreeMap::new();
    };
    indices
        .iter()
        .map(|(name, index)| {
            let n = |v: &Value| v.as_u64().unwrap_or(0);
            let stats = &index["stats"];
            (
                name.clone(),
                IndexSnapshotStats {
                    shards: n(&index["shards_stats"]["total"]),
                    shards_failed: n(&index["shards_stats"]["failed"]),
                    files: n(&stats["total"]["file_count"]),
                    bytes: n(&stats["total"]["size_in_bytes"]),
                    new_files: n(&stats["incremental"]["file_count"]),
                    new_bytes: n(&stats["incremental"]["size_in_bytes"]),
                },
            )
        })
        .collect()
}

/// Polls the snapshot until it ended; its description once `SUCCESS`.
async fn follow(client: &Client, path: &str) -> Result<Value> {
    let started = std::time::Instant::now();
    loop {
        client.stopped()?;
        let answer = client.get(path).await?;
        let snapshot = answer["snapshots"][0].clone();
        match verdict(&snapshot) {
            Verdict::Running => tokio::time::sleep(poll_after(started.elapsed())).await,
            Verdict::Done => return Ok(snapshot),
            Verdict::Failed(why) => {
                return Err(client.side.error(format!("{}: {why}", client.address())))
            }
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Running,
    Done,
    Failed(String),
}

/// What a snapshot's description says: still running, `SUCCESS` on every
/// shard, or anything less (named by index).
fn verdict(snapshot: &Value) -> Verdict {
    let state = snapshot["state"].as_str().unwrap_or("(none)");
    match state {
        "IN_PROGRESS" | "STARTED" | "INIT" => Verdict::Running,
        "SUCCESS" if snapshot["shards"]["failed"].as_u64().unwrap_or(0) == 0 => Verdict::Done,
        _ => {
            let failed: Vec<String> = snapshot["failures"]
                .as_array()
                .map(|f| {
                    f.iter()
                        .map(|x| {
                            format!(
                                "{} shard {} ({})",
                                x["index"].as_str().unwrap_or("?"),
                                x["shard_id"],
                                x["reason"].as_str().unwrap_or("no reason given")
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            Verdict::Failed(format!(
                "snapshot {} ended {state}{}; a backup is only made of a SUCCESS snapshot",
                snapshot["snapshot"].as_str().unwrap_or("?"),
                if failed.is_empty() {
                    String::new()
                } else {
                    format!(": failed {}", failed.join("; "))
                }
            ))
        }
    }
}

/// Deletes a backup's snapshot through the cluster's API; one already gone
/// is fine.
pub async fn delete(client: &Client, snapshot: &SnapshotFacts) -> Result<()> {
    reach(client, snapshot, Purpose::Release).await?;
    let path = format!(
        "_snapshot/{}/{}",
        segment(&snapshot.repository),
        segment(&snapshot.snapshot)
    );
    let answer = client.send(Method::DELETE, &path, None).await?;
    match answer.status.as_u16() {
        200..=299 | 404 => Ok(()),
        _ => Err(client.refused(&Method::DELETE, &path, &answer)),
    }
}

/// Each index's document count now.
async fn counts(client: &Client, indices: &[Selected]) -> Result<BTreeMap<String, u64>> {
    let mut counts = BTreeMap::new();
    for index in indices {
        let name = &index.definition.name;
        let answer = client.get(&format!("{}/_count", segment(name))).await?;
        counts.insert(name.clone(), answer["count"].as_u64().unwrap_or(0));
    }
    Ok(counts)
}

/// Restores each backed-up index under the name `names` gives it (all
/// absent, checked by the caller); `aliases` restores the aliases of
/// indices keeping their names. Stops at the first failure, deleting what
/// it restored; the restored indices' document counts.
pub async fn restore(
    client: &Client,
    facts: &SearchFacts,
    names: &BTreeMap<String, String>,
    aliases: bool,
) -> Result<BTreeMap<String, u64>> {
    let snapshot = facts.snapshot.as_ref().ok_or_else(|| {
        Error::integrity("a snapshot-mode backup whose manifest names no snapshot")
    })?;
    let registration = reach(client, snapshot, Purpose::Read).await?;
    let restored = restore_all(client, snapshot, names, aliases).await;
    if registration == Registration::Registered {
        super::repository::unregister(client, &snapshot.repository).await;
    }
    restored
}

/// Makes sure the cluster knows the snapshot's repository: the agent's
/// own is registered again where it is missing (read-only for a cluster
/// that only reads it: two clusters writing one repository corrupt it); a
/// repository the user named must be there.
pub async fn reach(
    client: &Client,
    snapshot: &SnapshotFacts,
    purpose: Purpose,
) -> Result<Registration> {
    match &snapshot.managed {
        Some(managed) => {
            super::repository::ensure(client, &snapshot.repository, managed, purpose).await
        }
        None => repository_type(client, &snapshot.repository)
            .await
            .map(|_| Registration::Existing),
    }
}

async fn restore_all(
    client: &Client,
    snapshot: &SnapshotFacts,
    names: &BTreeMap<String, String>,
    aliases: bool,
) -> Result<BTreeMap<String, u64>> {
    let mut done: Vec<String> = Vec::new();
    let mut counts = BTreeMap::new();
    for (source, target) in names {
        let outcome = restore_one(
            client,
            snapshot,
            source,
            target,
            aliases && source == target,
        )
        .await;
        match outcome {
            Ok(count) => {
                done.push(target.clone());
                counts.insert(source.clone(), count);
            }
            Err(e) => {
                // The failed index is the run's only if the cluster
                // started restoring it (it did not exist: checked first).
                if !e.to_string().contains("already exists") {
                    done.push(target.clone());
                }
                let mut left = Vec::new();
                for index in &done {
                    match client.send(Method::DELETE, &segment(index), None).await {
                        Ok(a) if a.status.is_success() || a.status.as_u16() == 404 => {}
                        _ => left.push(index.clone()),
                    }
                }
                return Err(e.map_message(|m| {
                    if left.is_empty() {
                        format!("{m}; the restore was taken back: nothing it created is left on {}", client.address())
                    } else {
                        format!("{m}; taking the restore back failed, these are left on {} and must be deleted by hand: {}", client.address(), left.join(", "))
                    }
                }));
            }
        }
    }
    Ok(counts)
}

async fn restore_one(
    client: &Client,
    snapshot: &SnapshotFacts,
    source: &str,
    target: &str,
    aliases: bool,
) -> Result<u64> {
    if target.contains('$') || target.contains('\\') {
        return Err(Error::usage(format!(
            "--index-map: {target:?} cannot be a snapshot restore's new name ($ and \\ are the rename replacement's syntax)"
        )));
    }
    let path = format!(
        "_snapshot/{}/{}/_restore",
        segment(&snapshot.repository),
        segment(&snapshot.snapshot)
    );
    let body = json!({
        "indices": source,
        "include_global_state": false,
        "include_aliases": aliases,
        "rename_pattern": format!("^{}$", regex::escape(source)),
        "rename_replacement": target,
    });
    // Sent once: a restore is not idempotent (a second one of the same
    // index is refused while the first runs). Followed by polling, so a
    // restore of any size is waited for, not one HTTP call's worth.
    let answer = client
        .send_once(
            Method::POST,
            &path,
            Some((body.to_string().into_bytes(), "application/json")),
        )
        .await?;
    if !answer.status.is_success() {
        return Err(client.side.error(format!(
            "{}: restoring {source} from snapshot {} of repository {} was refused (HTTP {}: {})",
            client.address(),
            snapshot.snapshot,
            snapshot.repository,
            answer.status.as_u16(),
            reason(&answer.json())
        )));
    }
    wait_for_primaries(client, target).await.map_err(|e| {
        e.map_message(|m| {
            format!(
                "restoring {source} from snapshot {} of repository {}: {m}",
                snapshot.snapshot, snapshot.repository
            )
        })
    })?;
    client
        .call(Method::POST, &format!("{}/_refresh", segment(target)), None)
        .await?;
    let counted = client.get(&format!("{}/_count", segment(target))).await?;
    Ok(counted["count"].as_u64().unwrap_or(0))
}

/// Waits until every primary shard of a restoring index started; a primary
/// the cluster gave up allocating (the snapshot's files could not be read)
/// fails the restore.
pub(super) async fn wait_for_primaries(client: &Client, index: &str) -> Result<()> {
    let path = format!(
        "_cat/shards/{}?format=json&h=prirep,state,unassigned.reason",
        segment(index)
    );
    loop {
        client.stopped()?;
        let answer = client.send(Method::GET, &path, None).await?;
        let rows = match answer.status.as_u16() {
            200 => answer.json().as_array().cloned().unwrap_or_default(),
            // The index is not there yet.
            404 => Vec::new(),
            _ => return Err(client.refused(&Method::GET, &path, &answer)),
        };
        match primaries(&rows) {
            Primaries::Started => return Ok(()),
            Primaries::Failed(n) => {
                return Err(client.side.error(format!(
                    "{} of its primary shards could not be restored on {} (allocation failed): the repository may be damaged",
                    n,
                    client.address()
                )))
            }
            Primaries::Restoring => tokio::time::sleep(POLL).await,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Primaries {
    Restoring,
    Started,
    Failed(usize),
}

/// Where a restoring index's primary shards stand, from `_cat/shards`.
fn primaries(rows: &[Value]) -> Primaries {
    let primary: Vec<&Value> = rows.iter().filter(|r| r["prirep"] == "p").collect();
    let failed = primary
        .iter()
        .filter(|r| r["state"] == "UNASSIGNED" && r["unassigned.reason"] == "ALLOCATION_FAILED")
        .count();
    if failed > 0 {
        Primaries::Failed(failed)
    } else if !primary.is_empty() && primary.iter().all(|r| r["state"] == "STARTED") {
        Primaries::Started
    } else {
        Primaries::Restoring
    }
}

/// A drill's judgement of a restored count: exact when nobody wrote to the
/// index while the snapshot ran, else within the counts before and after.
pub fn count_check(index: &IndexFacts, restored: u64) -> std::result::Result<(), String> {
    let after = index.documents_after.unwrap_or(index.documents);
    let (low, high) = (index.documents.min(after), index.documents.max(after));
    if (low..=high).contains(&restored) {
        return Ok(());
    }
    if low == high {
        Err(format!(
            "{restored} documents restored, the snapshot holds {low}"
        ))
    } else {
        Err(format!(
            "{restored} documents restored, outside the {low}–{high} the index held while the snapshot ran"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_is_polled_often_at_first_then_once_a_second() {
        assert_eq!(poll_after(Duration::ZERO), Duration::from_millis(50));
        assert_eq!(
            poll_after(Duration::from_secs(5)),
            Duration::from_millis(100)
        );
        assert_eq!(poll_after(Duration::from_secs(3600)), POLL);
    }

    #[test]
    fn only_a_success_on_every_shard_is_a_backup() {
        assert_eq!(verdict(&json!({"state": "IN_PROGRESS"})), Verdict::Running);
        assert_eq!(
            verdict(&json!({"state": "SUCCESS", "shards": {"total": 3, "failed": 0}})),
            Verdict::Done
        );
        let partial = json!({"snapshot": "vertice-1", "state": "PARTIAL", "shards": {"total": 3, "failed": 1},
            "failures": [{"index": "orders", "shard_id": 2, "reason": "IndexShardSnapshotFailedException"}]});
        match verdict(&partial) {
            Verdict::Failed(why) => {
                assert!(
                    why.contains("ended PARTIAL") && why.contains("orders shard 2"),
                    "{why}"
                )
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            verdict(&json!({"state": "FAILED"})),
            Verdict::Failed(_)
        ));
        assert!(matches!(
            verdict(&json!({"state": "SUCCESS", "shards": {"failed": 1}})),
            Verdict::Failed(_)
        ));
    }

    #[test]
    fn counts_are_exact_for_a_quiet_index_and_bounded_for_a_busy_one() {
        let quiet = IndexFacts {
            name: "a".into(),
            documents: 10,
            primary_shards: 1,
            content_digest: String::new(),
            documents_after: Some(10),
            ..Default::default()
        };
        assert!(count_check(&quiet, 10).is_ok());
        assert!(count_check(&quiet, 9)
            .expect_err("short")
            .contains("holds 10"));
        let busy = IndexFacts {
            documents_after: Some(14),
            ..quiet
        };
        assert!(count_check(&busy, 12).is_ok());
        assert!(count_check(&busy, 15).expect_err("long").contains("10–14"));
    }

    #[test]
    fn a_restore_is_done_when_every_primary_started_and_failed_when_one_cannot_be() {
        let row = |p: &str, state: &str, why: &str| json!({"prirep": p, "state": state, "unassigned.reason": why});
        assert_eq!(primaries(&[]), Primaries::Restoring);
        assert_eq!(
            primaries(&[row("p", "INITIALIZING", ""), row("p", "STARTED", "")]),
            Primaries::Restoring
        );
        assert_eq!(
            primaries(&[
                row("p", "STARTED", ""),
                row("r", "UNASSIGNED", "NEW_INDEX_RESTORED")
            ]),
            Primaries::Started
        );
        assert_eq!(
            primaries(&[
                row("p", "UNASSIGNED", "ALLOCATION_FAILED"),
                row("p", "STARTED", "")
            ]),
            Primaries::Failed(1)
        );
    }

    #[test]
    fn each_index_gets_its_shards_files_and_bytes_from_the_status() {
        let status = json!({"indices": {
            "logs": {"shards_stats": {"done": 2, "failed": 0, "total": 2},
                     "stats": {"incremental": {"file_count": 3, "size_in_bytes": 300},
                               "total": {"file_count": 10, "size_in_bytes": 1000}}},
            "odd": {}
        }});
        let stats = parse_index_stats(&status);
        assert_eq!(
            stats["logs"],
            IndexSnapshotStats {
                shards: 2,
                shards_failed: 0,
                files: 10,
                bytes: 1000,
                new_files: 3,
                new_bytes: 300
            }
        );
        assert_eq!(stats["odd"].bytes, 0);
        assert!(parse_index_stats(&json!({})).is_empty());
    }

    #[test]
    fn snapshot_names_are_lowercase_and_distinct() {
        assert_eq!(
            snapshot_name(1_765_000_000_000, 0xab),
            "vertice-1765000000000-00ab"
        );
        assert_ne!(snapshot_name(1, 1), snapshot_name(1, 2));
    }
}
