//! `restore --search-replace`: restoring over indices that exist, which a
//! restore otherwise refuses. An index cannot be renamed, and neither
//! vendor restores into an open index, so each index that exists is
//! restored and checked under a staging name first; only when every index
//! of the run was restored and checked is anything existing touched. Then,
//! one index at a time: the staging copy is blocked for writes, the
//! existing index is deleted and the copy cloned into its name (a clone
//! hard-links the copy's segments: it takes moments whatever the size),
//! given the deleted index's aliases, unblocked, and the staging copy is
//! deleted.
//!
//! What this cannot make atomic, and says: a writer that creates the index
//! again between the delete and the clone (automatic index creation) makes
//! the clone fail — the message then names the staging copy that holds
//! the restore and the one call that finishes it.

use std::collections::BTreeMap;

use reqwest::Method;
use serde_json::{json, Value};

use super::client::{segment, Client};
use super::restore::check_index_name;
use crate::error::{Error, Result};

/// The existing indices a restore replaces: target name → staging name.
pub type Replaced = BTreeMap<String, String>;

/// The staging name of `target` for backup `backup_id`: derived from both,
/// so a replace killed midway is found again by the next one (and refused
/// until deleted, since it may hold the only copy).
pub fn staging_name(backup_id: &str, target: &str) -> std::result::Result<String, String> {
    // A hidden index's leading dot becomes `_`, which no index name may
    // start with: `.x` and `x` stay apart, and nothing else maps there.
    let target_part = match target.strip_prefix('.') {
        Some(hidden) => format!("_{hidden}"),
        None => target.to_string(),
    };
    let name = format!(
        "vertice-replace-{}-{target_part}",
        backup_id.to_ascii_lowercase()
    );
    check_index_name(&name)
        .map(|()| name)
        .map_err(|why| format!("index {target:?} cannot be replaced: its staging name {why}"))
}

/// Points every index of `names` that exists at its staging name instead;
/// the indices so replaced. A staging index left by an earlier run is
/// refused by name.
pub async fn plan(
    client: &Client,
    backup_id: &str,
    names: &mut BTreeMap<String, String>,
) -> Result<Replaced> {
    let mut replaced = Replaced::new();
    let mut left_over = Vec::new();
    for target in names.values_mut() {
        if !exists(client, target).await? {
            continue;
        }
        if !is_index(client, target).await? {
            return Err(Error::usage(format!(
                "{} {}: {target} is an alias or a data stream, not an index: --search-replace replaces indices; restore under another name with --index-map SOURCE=TARGET",
                client.flag,
                client.address()
            )));
        }
        let staging = staging_name(backup_id, target).map_err(Error::usage)?;
        if exists(client, &staging).await? {
            left_over.push(staging.clone());
        }
        replaced.insert(target.clone(), staging.clone());
        *target = staging;
    }
    if !left_over.is_empty() {
        return Err(Error::usage(format!(
            "{} {}: {} left by an earlier --search-replace of this backup (it may hold the only restored copy of an index it replaced): check it and delete it, then run the restore again",
            client.flag,
            client.address(),
            left_over.join(", ")
        )));
    }
    Ok(replaced)
}

/// Whether `name` is an index itself: `GET <name>/_settings` answers by
/// concrete index, so an alias or data stream answers with other names.
async fn is_index(client: &Client, name: &str) -> Result<bool> {
    let answer = client
        .get(&format!(
            "{}/_settings?filter_path=*.settings.index.uuid",
            segment(name)
        ))
        .await?;
    Ok(answer.get(name).is_some())
}

async fn exists(client: &Client, index: &str) -> Result<bool> {
    let path = segment(index);
    let answer = client.send(Method::HEAD, &path, None).await?;
    match answer.status.as_u16() {
        200 => Ok(true),
        404 => Ok(false),
        _ => Err(client.refused(&Method::HEAD, &path, &answer)),
    }
}

/// After a restore that failed before any swap: the staging copies are
/// deleted (nothing existing was touched); `error` says so.
pub async fn discard(client: &Client, replaced: &Replaced, error: Error) -> Error {
    let left = drop_staging(client, replaced, &[]).await;
    let targets: Vec<&str> = replaced.keys().map(String::as_str).collect();
    error.map_message(|m| {
        let mut text = format!(
            "{m}; the existing indices {} were not touched",
            targets.join(", ")
        );
        text.push_str(&undeleted(&left));
        text
    })
}

/// Swaps each staging copy into its target's name. A signal stops the run
/// between indices, never inside one; what was already replaced is said,
/// and the staging copies of the rest are deleted.
pub async fn swap(client: &Client, replaced: &Replaced) -> Result<()> {
    let mut done: Vec<&str> = Vec::new();
    for (target, staging) in replaced {
        if let Err(e) = client.stopped() {
            let dropped = drop_staging(client, replaced, &done).await;
            return Err(e.map_message(|m| partial_message(m, &done, &dropped)));
        }
        // Inside one index the calls go out whatever signal arrives: a
        // delete left without its clone would lose the index.
        let steady = client.despite_signals();
        if let Err((e, original_deleted)) = swap_one(&steady, target, staging).await {
            let rest: Vec<&str> = replaced
                .keys()
                .map(String::as_str)
                .filter(|t| *t != target && !done.contains(t))
                .collect();
            // The staging copy of an index already deleted is the restore
            // of it: kept (the message says how to finish); any other goes.
            let mut kept = done.clone();
            if original_deleted {
                kept.push(target);
            }
            let dropped = drop_staging(client, replaced, &kept).await;
            return Err(e.map_message(|m| {
                let mut text = partial_message(m, &done, &dropped);
                if !rest.is_empty() {
                    text.push_str(&format!("; not replaced: {}", rest.join(", ")));
                }
                text
            }));
        }
        tracing::info!(index = %target, "replaced by the restored copy");
        done.push(target);
    }
    Ok(())
}

fn partial_message(message: String, done: &[&str], dropped: &[String]) -> String {
    let mut text = message;
    if !done.is_empty() {
        text.push_str(&format!(
            "; already replaced by the restore: {}",
            done.join(", ")
        ));
    }
    text.push_str(&undeleted(dropped));
    text
}

/// What a message adds for staging copies left behind (nothing if none).
fn undeleted(left: &[String]) -> String {
    if left.is_empty() {
        String::new()
    } else {
        format!(
            "; staging copies that could not be deleted: {}",
            left.join(", ")
        )
    }
}

/// Deletes the staging copies of indices not in `keep`; the ones it could
/// not delete.
async fn drop_staging(client: &Client, replaced: &Replaced, keep: &[&str]) -> Vec<String> {
    let mut left = Vec::new();
    for (target, staging) in replaced {
        if keep.contains(&target.as_str()) {
            continue;
        }
        match client.send(Method::DELETE, &segment(staging), None).await {
            Ok(a) if a.status.is_success() || a.status.as_u16() == 404 => {}
            _ => left.push(staging.clone()),
        }
    }
    left
}

/// How long a clone's primaries may take to start: a clone hard-links
/// the copy's files on the same nodes, so minutes mean it cannot start
/// (disk watermarks, allocation filters).
const CLONE_START: std::time::Duration = std::time::Duration::from_secs(300);

/// Replaces `target` by `staging`. On failure, whether `target` had been
/// deleted by then (its restore is then only in `staging`, or its clone).
async fn swap_one(
    client: &Client,
    target: &str,
    staging: &str,
) -> std::result::Result<(), (Error, bool)> {
    let before_delete = |e: Error| (e, false);
    let aliases = client
        .get(&format!("{}/_alias", segment(target)))
        .await
        .map_err(before_delete)?
        .get(target)
        .map(|i| i["aliases"].clone())
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}));
    client
        .call(
            Method::PUT,
            &format!("{}/_settings", segment(staging)),
            Some(&json!({"index.blocks.write": true})),
        )
        .await
        .map_err(before_delete)?;
    let deleted = client
        .send(Method::DELETE, &segment(target), None)
        .await
        .map_err(before_delete)?;
    if !(deleted.status.is_success() || deleted.status.as_u16() == 404) {
        return Err((client.refused(&Method::DELETE, target, &deleted), false));
    }
    let by_hand = |m: String| {
        format!(
            "{m}; index {target} was deleted and its restored copy is index {staging} (blocked for writes): finish with POST /{staging}/_clone/{target} {{\"settings\": {{\"index.blocks.write\": null}}}}, then DELETE /{staging}"
        )
    };
    // The deleted index's aliases (a write alias's `is_write_index`
    // included) go to the index that takes its name; the write block the
    // clone would copy from the staging copy is reset.
    let clone_body = json!({
        "settings": {"index.blocks.write": null},
        "aliases": aliases,
    });
    let cloned = client
        .call(
            Method::POST,
            &format!("{}/_clone/{}", segment(staging), segment(target)),
            Some(&clone_body),
        )
        .await;
    if let Err(e) = cloned {
        // An answer lost after the clone was made: it is there.
        if !exists(client, target).await.unwrap_or(false) {
            return Err((e.map_message(by_hand), true));
        }
    }
    let started = tokio::time::timeout(
        CLONE_START,
        super::snapshot::wait_for_primaries(client, target),
    )
    .await;
    let not_started = |m: String| {
        format!(
            "{m}; index {target} is the restored copy cloned from {staging}, but its primary shards did not start: see GET /_cluster/allocation/explain, then DELETE /{staging}"
        )
    };
    match started {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err((e.map_message(not_started), true)),
        Err(_) => {
            return Err((
                Error::target(not_started(format!(
                    "{} {}: the clone of {staging} did not start within {} s",
                    client.flag,
                    client.address(),
                    CLONE_START.as_secs()
                ))),
                true,
            ))
        }
    }
    let dropped = client.send(Method::DELETE, &segment(staging), None).await;
    if !matches!(&dropped, Ok(a) if a.status.is_success() || a.status.as_u16() == 404) {
        tracing::warn!(index = %staging, "the staging copy could not be deleted; delete it by hand");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staging_names_derive_from_the_backup_and_the_index() {
        assert_eq!(
            staging_name("20261206T182341Z-BA4E", "orders").expect("name"),
            "vertice-replace-20261206t182341z-ba4e-orders"
        );
        // A hidden index's dot stays out of the middle of the name.
        assert_eq!(
            staging_name("b", ".hidden").expect("name"),
            "vertice-replace-b-_hidden"
        );
        let long = "x".repeat(250);
        let e = staging_name("b", &long).expect_err("too long");
        assert!(e.contains("cannot be replaced"), "{e}");
    }

    #[test]
    fn what_a_partial_swap_says() {
        let text = partial_message("stopped".into(), &["a"], &["vertice-replace-b-c".into()]);
        assert_eq!(
            text,
            "stopped; already replaced by the restore: a; staging copies that could not be deleted: vertice-replace-b-c"
        );
    }
}
