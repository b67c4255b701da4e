//! The snapshot repository the agent registers itself when snapshot mode
//! names none: inside the backup store, at
//! `<prefix>/<namespace>/<name>/repository`, so the cluster writes its
//! snapshots where the agent can read them back. Once a snapshot succeeded
//! the agent reads the repository from the store and records every blob
//! the snapshot needs with its size (`inventory`); `verify` and the drill
//! check them (`check_blobs`), so a blob a lifecycle rule or a hand
//! deleted is found before the day of the restore.
//!
//! Only blobs a repository never rewrites are recorded: the snapshot's own
//! `snap-`/`meta-` files, its indices' metadata and the data blobs (`__…`)
//! its shards' files name. The repository's generation files (`index-N`,
//! `index.latest`) change with every snapshot and are only read.

use std::collections::{BTreeMap, HashMap};

use reqwest::Method;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use vertice_crds::StoreLocation;

use super::client::{segment, Client};
use crate::error::{Error, Result};
use crate::manifest::search::{ManagedRepository, RepositoryBlob, SnapshotFacts};
use crate::store::{ObjectMeta, Store};

/// Where the repository lies in a series' part of the store.
const DIRECTORY: &str = crate::manifest::REPOSITORY_DIR;
/// Lucene's codec header and footer around every metadata blob.
const CODEC_MAGIC: u32 = 0x3fd7_6c17;
const FOOTER_LEN: usize = 16;
/// More pieces than any chunk size makes of a Lucene file (a corrupt
/// `part_size` would otherwise list billions).
const MAX_PARTS: u64 = 100_000;

/// The repository of the series `namespace/name` in the store at
/// `location`, as the cluster must be told to register it. `client` names
/// the nodes' configured client (credentials and endpoint) for object
/// stores.
pub fn managed(
    location: &StoreLocation,
    namespace: &str,
    name: &str,
    client: &str,
) -> ManagedRepository {
    let store_path = format!("{namespace}/{name}/{DIRECTORY}");
    let base_path = |prefix: &str| {
        let prefix = prefix.trim_matches('/');
        if prefix.is_empty() {
            store_path.clone()
        } else {
            format!("{prefix}/{store_path}")
        }
    };
    let (kind, mut settings) = match location {
        StoreLocation::File { root } => (
            "fs",
            BTreeMap::from([(
                "location".to_string(),
                root.join(&store_path).display().to_string(),
            )]),
        ),
        StoreLocation::S3 { bucket, prefix } => (
            "s3",
            BTreeMap::from([
                ("bucket".to_string(), bucket.clone()),
                ("base_path".to_string(), base_path(prefix)),
                ("client".to_string(), client.to_string()),
            ]),
        ),
        StoreLocation::Gcs { bucket, prefix } => (
            "gcs",
            BTreeMap::from([
                ("bucket".to_string(), bucket.clone()),
                ("base_path".to_string(), base_path(prefix)),
                ("client".to_string(), client.to_string()),
            ]),
        ),
        StoreLocation::Azure {
            container, prefix, ..
        } => (
            "azure",
            BTreeMap::from([
                ("container".to_string(), container.clone()),
                ("base_path".to_string(), base_path(prefix)),
                ("client".to_string(), client.to_string()),
            ]),
        ),
    };
    // The agent reads the metadata blobs back: they must not be compressed.
    settings.insert("compress".into(), "false".into());
    ManagedRepository {
        kind: kind.into(),
        settings,
        store_path,
    }
}

/// Settings the agent decides itself: where the repository lies, how the
/// nodes reach it, and that its metadata stays readable.
const OWN_SETTINGS: &[&str] = &[
    "location",
    "bucket",
    "base_path",
    "container",
    "client",
    "compress",
    "readonly",
];

/// Why a setting may not be given to the agent's own repository: it would
/// carry a secret into the manifest and the logs, point the nodes at
/// another service than the store's, or lay blobs out where the agent
/// does not read them back.
fn refused_setting(key: &str, value: &str) -> Option<&'static str> {
    let lower = key.to_ascii_lowercase();
    let secret = ["secret", "token", "password", "credential"]
        .iter()
        .any(|s| lower.contains(s))
        || lower == "access_key"
        || lower.starts_with("sas");
    if secret {
        return Some("credentials belong in the nodes' keystore client (--search-repository-client), never in repository settings, which the manifest and logs record");
    }
    const ELSEWHERE: &[&str] = &[
        "endpoint",
        "region",
        "protocol",
        "path_style_access",
        "location_mode",
    ];
    if ELSEWHERE.contains(&lower.as_str()) {
        return Some("where the nodes reach the store is their client's setting (--search-repository-client), so the repository cannot point elsewhere than the store the agent reads");
    }
    const LAYOUT: &[&str] = &[
        "remote_store_index_shallow_copy",
        "shallow_snapshot_v2",
        "prefix_mode_verification",
    ];
    if LAYOUT.contains(&lower.as_str())
        || lower.starts_with("crypto_metadata")
        || (lower == "shard_path_type" && !value.eq_ignore_ascii_case("fixed"))
    {
        return Some("it changes where or how blobs are written, and the agent reads the repository back blob by blob (shard_path_type may only be FIXED)");
    }
    None
}

/// `--search-repository-setting KEY=VALUE` pairs, refused by name when
/// malformed or when they would move the repository or hide its metadata.
pub fn extra_settings(pairs: &[String]) -> std::result::Result<BTreeMap<String, String>, String> {
    let mut settings = BTreeMap::new();
    for pair in pairs.iter().map(|p| p.trim()).filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').ok_or_else(|| {
            format!("--search-repository-setting {pair:?}: expected KEY=VALUE (e.g. storage_class=standard_ia)")
        })?;
        let key = key.trim();
        let valid = !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !valid {
            return Err(format!(
                "--search-repository-setting {pair:?}: {key:?} is no repository setting name"
            ));
        }
        if OWN_SETTINGS.contains(&key) {
            return Err(format!(
                "--search-repository-setting {key}: the agent sets it (the repository lies in the backup store, its metadata uncompressed; the client is --search-repository-client)"
            ));
        }
        if let Some(why) = refused_setting(key, value.trim()) {
            return Err(format!("--search-repository-setting {key}: {why}"));
        }
        if settings
            .insert(key.to_string(), value.trim().to_string())
            .is_some()
        {
            return Err(format!("--search-repository-setting {key} is given twice"));
        }
    }
    Ok(settings)
}

/// The settings that say where a repository lies.
const LOCATION_SETTINGS: &[&str] = &["location", "bucket", "base_path", "container"];

/// The name it is registered under: the same for every run of the series
/// on the same store (whatever its other settings: one place, one name,
/// so two registrations never write one repository), distinct for every
/// other place.
pub fn repository_name(repository: &ManagedRepository) -> String {
    let mut hash = Sha256::new();
    hash.update(repository.kind.as_bytes());
    for (key, value) in repository
        .settings
        .iter()
        .filter(|(k, _)| LOCATION_SETTINGS.contains(&k.as_str()))
    {
        hash.update([0]);
        hash.update(key.as_bytes());
        hash.update([0]);
        hash.update(value.as_bytes());
    }
    format!("vertice-{}", &hex::encode(hash.finalize())[..12])
}

/// Whether this run registered the repository (and so may remove it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registration {
    Existing,
    Registered,
}

/// Why the cluster needs the repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A backup: registered with this run's settings (again, when they
    /// changed: another client, `--search-repository-setting`, a read-only
    /// registration a restore left).
    Backup,
    /// Deleting an older snapshot: any registration of the place serves;
    /// a missing one is registered writable with the backup's settings.
    Release,
    /// A restore or drill: any registration of the place serves; a missing
    /// one is registered read-only (two clusters writing one repository
    /// corrupt it).
    Read,
}

/// Registers the repository on the cluster unless it already is, as
/// `purpose` needs it.
pub async fn ensure(
    client: &Client,
    name: &str,
    repository: &ManagedRepository,
    purpose: Purpose,
) -> Result<Registration> {
    let path = format!("_snapshot/{}", segment(name));
    let answer = client.send(Method::GET, &path, None).await?;
    match answer.status.as_u16() {
        200 => {
            let found = &answer.json()[name];
            if let Some(what) = elsewhere(repository, found) {
                return Err(Error::usage(format!(
                    "repository {name} on {} points elsewhere ({what}) than the agent's repository in the store ({}); remove it (DELETE _snapshot/{name}) or name a repository with --search-repository",
                    client.address(),
                    describe(repository)
                )));
            }
            if purpose == Purpose::Backup {
                if let Some(what) = changed(repository, found) {
                    tracing::info!(repository = name, changed = %what, "registering the repository again with this run's settings");
                    register(client, name, repository, purpose).await?;
                }
            }
            Ok(Registration::Existing)
        }
        404 => {
            register(client, name, repository, purpose).await?;
            Ok(Registration::Registered)
        }
        _ => Err(client.refused(&Method::GET, &path, &answer)),
    }
}

async fn register(
    client: &Client,
    name: &str,
    repository: &ManagedRepository,
    purpose: Purpose,
) -> Result<()> {
    let readonly = purpose == Purpose::Read;
    let path = format!("_snapshot/{}", segment(name));
    let mut settings: serde_json::Map<String, Value> = repository
        .settings
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    if readonly {
        settings.insert("readonly".into(), Value::String("true".into()));
    }
    let body = json!({"type": repository.kind, "settings": settings});
    let answer = client
        .send(
            Method::PUT,
            &path,
            Some((body.to_string().into_bytes(), "application/json")),
        )
        .await?;
    if !answer.status.is_success() {
        let why = super::client::reason(&answer.json());
        return Err(Error::usage(format!(
            "{} refused to register the snapshot repository {name} ({}): {why}; every node needs the repository type's plugin{} and access to it{}",
            client.address(),
            describe(repository),
            match repository.kind.as_str() {
                "fs" => " (fs: the location under the node's path.repo)".to_string(),
                kind => format!(" (repository-{kind}) with client {:?} configured", repository.settings.get("client").map(String::as_str).unwrap_or("default")),
            },
            match purpose {
                Purpose::Backup => ", or name a repository the cluster has with --search-repository, or back up with --search-mode export",
                Purpose::Release | Purpose::Read => "",
            }
        )));
    }
    tracing::info!(repository = name, kind = %repository.kind, readonly, "snapshot repository registered on the cluster");
    Ok(())
}

/// Removes a registration this run made (the blobs stay: only the
/// cluster's pointer to them goes).
pub async fn unregister(client: &Client, name: &str) {
    let path = format!("_snapshot/{}", segment(name));
    match client.send(Method::DELETE, &path, None).await {
        Ok(answer) if answer.status.is_success() || answer.status.as_u16() == 404 => {}
        Ok(answer) => {
            tracing::warn!(repository = name, status = answer.status.as_u16(), reason = %super::client::reason(&answer.json()), "could not remove the read-only repository registration")
        }
        Err(e) => {
            tracing::warn!(repository = name, error = %e, "could not remove the read-only repository registration")
        }
    }
}

fn describe(repository: &ManagedRepository) -> String {
    let settings: Vec<String> = repository
        .settings
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    format!("{} {}", repository.kind, settings.join(" "))
}

/// A setting's value as a registration holds it (clusters echo strings,
/// or what they were given).
fn setting_text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// Where a registration found lies, if not where the agent's repository
/// does.
fn elsewhere(repository: &ManagedRepository, found: &Value) -> Option<String> {
    let mut what = Vec::new();
    if found["type"].as_str() != Some(repository.kind.as_str()) {
        what.push(format!("type {}", found["type"]));
    }
    for key in LOCATION_SETTINGS {
        let ours = repository.settings.get(*key).cloned();
        let there = setting_text(&found["settings"][*key]);
        if ours != there {
            what.push(format!("{key}={}", there.as_deref().unwrap_or("(none)")));
        }
    }
    (!what.is_empty()).then(|| what.join(", "))
}

/// Which of the agent's other settings a registration found lacks or
/// holds otherwise (a `readonly` one included).
fn changed(repository: &ManagedRepository, found: &Value) -> Option<String> {
    let there: BTreeMap<String, String> = found["settings"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), setting_text(v)?)))
        .collect();
    let normal = |map: &BTreeMap<String, String>, key: &str| {
        map.get(key)
            .cloned()
            .or_else(|| matches!(key, "compress" | "readonly").then(|| "false".to_string()))
    };
    let keys: std::collections::BTreeSet<&String> =
        repository.settings.keys().chain(there.keys()).collect();
    let what: Vec<String> = keys
        .into_iter()
        .filter(|k| normal(&repository.settings, k) != normal(&there, k))
        // Names only: a registration made by hand may hold a secret.
        .map(|k| k.to_string())
        .collect();
    (!what.is_empty()).then(|| what.join(", "))
}

/// Every blob the snapshot needs, read back from the store, with its
/// size. Fails when one is missing: the repository the cluster reported
/// done is not what the store holds.
pub async fn inventory(
    store: &dyn Store,
    repository: &ManagedRepository,
    snapshot: &SnapshotFacts,
) -> Result<Vec<RepositoryBlob>> {
    let listed = listing(store, repository).await?;
    let uuid = &snapshot.uuid;
    let generation = listed
        .keys()
        .filter_map(|k| k.strip_prefix("index-")?.parse::<u64>().ok())
        .max()
        .ok_or_else(|| {
            Error::integrity(format!(
                "the repository in the store at {} has no index-N file: the cluster wrote its snapshot elsewhere",
                repository.store_path
            ))
        })?;
    let data = store
        .get_bytes(&format!("{}/index-{generation}", repository.store_path))
        .await?;
    let repository_data: Value = serde_json::from_slice(&data).map_err(|e| {
        Error::integrity(format!(
            "the repository's index-{generation} is not JSON ({e})"
        ))
    })?;
    let mut needed: Vec<(String, Option<u64>)> = vec![
        (format!("snap-{uuid}.dat"), None),
        (format!("meta-{uuid}.dat"), None),
    ];
    for key in index_metadata_blobs(&repository_data, uuid)? {
        needed.push((key, None));
    }
    // Each shard's own file names its data blobs.
    let shard_files: Vec<String> = listed
        .keys()
        .filter(|k| k.starts_with("indices/") && k.ends_with(&format!("/snap-{uuid}.dat")))
        .cloned()
        .collect();
    if shard_files.len() as u64 != snapshot.shards {
        return Err(Error::integrity(format!(
            "the repository in the store holds {} shard files of snapshot {}, the cluster reported {} shards",
            shard_files.len(),
            snapshot.snapshot,
            snapshot.shards
        )));
    }
    for key in shard_files {
        let dir = key.rsplit_once('/').map_or("", |(d, _)| d).to_string();
        let bytes = store
            .get_bytes(&format!("{}/{key}", repository.store_path))
            .await?;
        let files = shard_snapshot_files(&bytes)
            .map_err(|e| Error::integrity(format!("repository blob {key}: {e}")))?;
        needed.push((key, None));
        for (blob, size) in files {
            needed.push((format!("{dir}/{blob}"), Some(size)));
        }
    }
    let mut blobs = Vec::with_capacity(needed.len());
    let mut missing = Vec::new();
    for (key, expected) in needed {
        match listed.get(&key) {
            Some(&size) if expected.is_none_or(|e| e == size) => {
                blobs.push(RepositoryBlob { key, size })
            }
            Some(&size) => missing.push(format!("{key} ({size} bytes, expected {expected:?})")),
            None => missing.push(key),
        }
    }
    if !missing.is_empty() {
        return Err(Error::integrity(format!(
            "the repository in the store lacks what snapshot {} needs right after it succeeded: {}; a data blob an earlier snapshot wrote and someone deleted is reused by every new snapshot — delete the snapshots that need it (the backups `vertice-agent list` shows damaged, through the cluster: DELETE _snapshot/REPOSITORY/SNAPSHOT) so the next one writes the files again",
            snapshot.snapshot,
            summarize(&missing)
        )));
    }
    blobs.sort_by(|a, b| a.key.cmp(&b.key));
    blobs.dedup_by(|a, b| a.key == b.key);
    Ok(blobs)
}

/// Checks that every blob a snapshot-mode backup recorded is still in the
/// store with its size; how many were checked.
pub async fn check_blobs(store: &dyn Store, snapshot: &SnapshotFacts) -> Result<usize> {
    let Some(repository) = &snapshot.managed else {
        return Ok(0);
    };
    let listed = listing(store, repository).await?;
    let problems: Vec<String> = snapshot
        .blobs
        .iter()
        .filter_map(|b| match listed.get(&b.key) {
            None => Some(format!("{} is missing", b.key)),
            Some(&size) if size != b.size => Some(format!(
                "{} is {size} bytes, the manifest says {}",
                b.key, b.size
            )),
            Some(_) => None,
        })
        .collect();
    if !problems.is_empty() {
        return Err(Error::integrity(format!(
            "snapshot {} cannot be restored: its repository in the store ({}) is damaged: {}",
            snapshot.snapshot,
            repository.store_path,
            summarize(&problems)
        )));
    }
    Ok(snapshot.blobs.len())
}

async fn listing(
    store: &dyn Store,
    repository: &ManagedRepository,
) -> Result<HashMap<String, u64>> {
    let prefix = format!("{}/", repository.store_path);
    let objects: Vec<ObjectMeta> = store.list(&prefix).await?;
    Ok(objects
        .into_iter()
        .filter_map(|o| Some((o.key.strip_prefix(&prefix)?.to_string(), o.size)))
        .collect())
}

fn summarize(problems: &[String]) -> String {
    crate::names::first_few(problems, 5, "; ")
}

/// The metadata blobs of the snapshot's indices, from the repository's
/// generation file (`index-N`, JSON): `indices/<id>/meta-<blob>.dat`.
/// Repositories written before index metadata was deduplicated name it
/// after the snapshot's UUID.
fn index_metadata_blobs(repository_data: &Value, uuid: &str) -> Result<Vec<String>> {
    let snapshot = repository_data["snapshots"]
        .as_array()
        .and_then(|all| all.iter().find(|s| s["uuid"] == uuid))
        .ok_or_else(|| {
            Error::integrity(format!(
                "the repository's generation file does not list snapshot {uuid}"
            ))
        })?;
    let mut keys = Vec::new();
    let indices = repository_data["indices"].as_object();
    let ids: Vec<&str> = indices
        .into_iter()
        .flatten()
        .filter(|(_, index)| {
            index["snapshots"]
                .as_array()
                .is_some_and(|s| s.iter().any(|u| u == uuid))
        })
        .filter_map(|(_, index)| index["id"].as_str())
        .collect();
    for id in ids {
        let blob = match snapshot["index_metadata_lookup"][id].as_str() {
            Some(identifier) => repository_data["index_metadata_identifiers"][identifier]
                .as_str()
                .ok_or_else(|| {
                    Error::integrity(format!(
                        "the repository's generation file names index metadata {identifier} without its blob"
                    ))
                })?
                .to_string(),
            None => uuid.to_string(),
        };
        keys.push(format!("indices/{id}/meta-{blob}.dat"));
    }
    Ok(keys)
}

/// The data blobs a shard's snapshot file names, with their sizes: each
/// file's blob, split into `.partN` blobs when it is larger than the
/// repository's chunk size; files small enough to live inside the
/// metadata (`v__…`) have none.
pub fn shard_snapshot_files(blob: &[u8]) -> std::result::Result<Vec<(String, u64)>, String> {
    let body = codec_body(blob)?;
    let document = super::smile::decode(body)?;
    let files = document["files"]
        .as_array()
        .ok_or("no `files` list in the shard's snapshot file")?;
    let mut blobs = Vec::new();
    for file in files {
        let name = file["name"].as_str().ok_or("a file without a name")?;
        if name.starts_with("v__") {
            continue;
        }
        if !name.starts_with("__") || name.contains(['/', '\\']) {
            return Err(format!("unexpected blob name {name:?}"));
        }
        let length = file["length"]
            .as_u64()
            .ok_or_else(|| format!("file {name} without a length"))?;
        let part = file["part_size"].as_u64().filter(|&p| p > 0 && p < length);
        match part {
            None => blobs.push((name.to_string(), length)),
            Some(part) => {
                let parts = length.div_ceil(part);
                if parts > MAX_PARTS {
                    return Err(format!(
                        "file {name} of {length} bytes in {parts} parts: not a repository's chunking"
                    ));
                }
                for i in 0..parts {
                    let size = if i + 1 == parts {
                        length - part * i
                    } else {
                        part
                    };
                    blobs.push((format!("{name}.part{i}"), size));
                }
            }
        }
    }
    Ok(blobs)
}

/// The document inside Lucene's codec header and footer.
fn codec_body(blob: &[u8]) -> std::result::Result<&[u8], String> {
    if blob.len() < 4 + FOOTER_LEN
        || u32::from_be_bytes([blob[0], blob[1], blob[2], blob[3]]) != CODEC_MAGIC
    {
        return Err("not a repository metadata blob (no codec header)".into());
    }
    let body = &blob[4..blob.len() - FOOTER_LEN];
    // The codec's name and version, then the document; compressed
    // metadata (`DFL\0`, `LZ4\0`) is not read.
    let window = &body[..body.len().min(128)];
    let start = window
        .windows(3)
        .position(|w| w == b":)\n")
        .ok_or_else(|| {
            if window.windows(4).any(|w| w == b"DFL\0" || w == b"LZ4\0") {
                "the metadata is compressed (the repository must be registered with compress: false)".to_string()
            } else {
                "no Smile document after the codec header".to_string()
            }
        })?;
    Ok(&body[start..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_repository_lies_under_the_series_in_the_store() {
        let s3 = StoreLocation::S3 {
            bucket: "b".into(),
            prefix: "team/x".into(),
        };
        let m = managed(&s3, "shop", "search", "default");
        assert_eq!(m.kind, "s3");
        assert_eq!(m.settings["base_path"], "team/x/shop/search/repository");
        assert_eq!(m.settings["bucket"], "b");
        assert_eq!(m.settings["compress"], "false");
        assert_eq!(m.store_path, "shop/search/repository");
        let bare = StoreLocation::S3 {
            bucket: "b".into(),
            prefix: String::new(),
        };
        assert_eq!(
            managed(&bare, "shop", "search", "default").settings["base_path"],
            "shop/search/repository"
        );
        let file = StoreLocation::File {
            root: "/backups".into(),
        };
        let f = managed(&file, "shop", "search", "default");
        assert_eq!(f.kind, "fs");
        assert_eq!(f.settings["location"], "/backups/shop/search/repository");
        assert!(!f.settings.contains_key("client"));
        let azure = StoreLocation::Azure {
            account: "acct".into(),
            container: "c".into(),
            prefix: "p".into(),
        };
        assert_eq!(managed(&azure, "a", "b", "main").settings["container"], "c");
        // Names: stable per place, distinct between places.
        assert_eq!(repository_name(&m), repository_name(&m.clone()));
        assert_ne!(repository_name(&m), repository_name(&f));
        assert_ne!(
            repository_name(&m),
            repository_name(&managed(&s3, "shop", "other", "default"))
        );
        assert!(repository_name(&m).starts_with("vertice-"));
    }

    #[test]
    fn extra_settings_never_move_the_repository() {
        let ok = extra_settings(&[
            "server_side_encryption_type=bucket_default".into(),
            " chunk_size = 1gb ".into(),
        ])
        .expect("a value");
        assert_eq!(ok["server_side_encryption_type"], "bucket_default");
        assert_eq!(ok["chunk_size"], "1gb");
        for bad in [
            "bucket=other",
            "base_path=x",
            "compress=true",
            "client=x",
            "novalue",
            "a b=c",
            "secret_key=s3cr3t",
            "access_key=AK",
            "sas_token=x",
            "endpoint=elsewhere:9000",
            "shard_path_type=HASHED_PREFIX",
            "crypto_metadata.key_provider_name=x",
        ] {
            let e = extra_settings(&[bad.into()]).expect_err("an error");
            assert!(e.contains("--search-repository-setting"), "{e}");
        }
        assert!(extra_settings(&["a=1".into(), "a=2".into()]).is_err());
        assert!(extra_settings(&["shard_path_type=fixed".into()]).is_ok());
        let secret = extra_settings(&["secret_key=s3cr3t".into()]).expect_err("an error");
        assert!(
            !secret.contains("s3cr3t"),
            "the value is never echoed: {secret}"
        );
    }

    #[test]
    fn a_registration_elsewhere_is_refused_and_other_settings_are_updated() {
        let m = managed(
            &StoreLocation::S3 {
                bucket: "b".into(),
                prefix: String::new(),
            },
            "n",
            "x",
            "default",
        );
        let same = json!({"type": "s3", "settings": {"bucket": "b", "base_path": "n/x/repository", "client": "default"}});
        assert_eq!(elsewhere(&m, &same), None);
        assert_eq!(changed(&m, &same), None, "compress=false is the default");
        let other = json!({"type": "s3", "settings": {"bucket": "c", "base_path": "n/x/repository", "client": "default"}});
        assert!(elsewhere(&m, &other).expect("a value").contains("bucket=c"));
        let readonly = json!({"type": "s3", "settings": {"bucket": "b", "base_path": "n/x/repository", "client": "default", "compress": "false", "readonly": "true"}});
        assert_eq!(elsewhere(&m, &readonly), None);
        assert!(changed(&m, &readonly)
            .expect("a value")
            .contains("readonly"));
        let client = json!({"type": "s3", "settings": {"bucket": "b", "base_path": "n/x/repository", "client": "other", "chunk_size": "1gb"}});
        let what = changed(&m, &client).expect("a value");
        assert!(
            what.contains("client") && what.contains("chunk_size"),
            "{what}"
        );
        let by_hand = json!({"type": "s3", "settings": {"bucket": "b", "base_path": "n/x/repository", "client": "default", "secret_key": "s3cr3t"}});
        assert!(!changed(&m, &by_hand).expect("a value").contains("s3cr3t"));
        // One place, one name, whatever the other settings.
        let mut throttled = m.clone();
        throttled
            .settings
            .insert("max_snapshot_bytes_per_sec".into(), "1mb".into());
        assert_eq!(repository_name(&m), repository_name(&throttled));
    }

    #[test]
    fn index_metadata_is_found_through_the_lookup_or_the_snapshot_uuid() {
        let data = json!({
            "snapshots": [{"name": "s1", "uuid": "U1", "index_metadata_lookup": {"ID1": "ident-1"}},
                          {"name": "s0", "uuid": "U0"}],
            "indices": {"orders": {"id": "ID1", "snapshots": ["U1", "U0"]},
                        "other": {"id": "ID2", "snapshots": ["U0"]}},
            "index_metadata_identifiers": {"ident-1": "BLOB1"}
        });
        assert_eq!(
            index_metadata_blobs(&data, "U1").expect("a value"),
            vec!["indices/ID1/meta-BLOB1.dat"]
        );
        let mut old = index_metadata_blobs(&data, "U0").expect("a value");
        old.sort();
        assert_eq!(
            old,
            vec!["indices/ID1/meta-U0.dat", "indices/ID2/meta-U0.dat"]
        );
        assert!(index_metadata_blobs(&data, "U9").is_err());
    }

    fn shard_blob(smile: &[u8]) -> Vec<u8> {
        let mut b = CODEC_MAGIC.to_be_bytes().to_vec();
        b.push(8);
        b.extend_from_slice(b"snapshot");
        b.extend_from_slice(&1u32.to_be_bytes());
        b.extend_from_slice(smile);
        b.extend_from_slice(&[0u8; FOOTER_LEN]);
        b
    }

    /// `{"files":[{"name":N,"length":L[,"part_size":P]}…]}` in Smile.
    fn files(entries: &[(&str, u64, Option<u64>)]) -> Vec<u8> {
        let mut b = vec![b':', b')', b'\n', 0x00, 0xFA, 0x80 + 4];
        b.extend_from_slice(b"files");
        b.push(0xF8);
        for (name, length, part) in entries {
            b.push(0xFA);
            b.push(0x80 + 3);
            b.extend_from_slice(b"name");
            b.push(0x40 + name.len() as u8 - 1);
            b.extend_from_slice(name.as_bytes());
            b.push(0x80 + 5);
            b.extend_from_slice(b"length");
            push_long(&mut b, *length);
            if let Some(p) = part {
                b.push(0x80 + 8);
                b.extend_from_slice(b"part_size");
                push_long(&mut b, *p);
            }
            b.push(0xFB);
        }
        b.extend_from_slice(&[0xF9, 0xFB]);
        b
    }

    fn push_long(b: &mut Vec<u8>, n: u64) {
        let z = n << 1;
        let mut groups = vec![0x80 | (z & 0x3F) as u8];
        let mut rest = z >> 6;
        while rest > 0 {
            groups.push((rest & 0x7F) as u8);
            rest >>= 7;
        }
        groups.reverse();
        b.push(0x25);
        b.extend_from_slice(&groups);
    }

    #[test]
    fn a_shards_file_names_its_blobs_and_parts() {
        let blob = shard_blob(&files(&[
            ("__aa", 1_000, None),
            ("v__bb", 12, None),
            ("__cc", 2_500, Some(1_000)),
            ("__dd", 700, Some(1_000)),
        ]));
        assert_eq!(
            shard_snapshot_files(&blob).expect("a value"),
            vec![
                ("__aa".to_string(), 1_000),
                ("__cc.part0".to_string(), 1_000),
                ("__cc.part1".to_string(), 1_000),
                ("__cc.part2".to_string(), 500),
                ("__dd".to_string(), 700),
            ]
        );
        assert!(shard_snapshot_files(b"garbage").is_err());
        let absurd = shard_blob(&files(&[("__ee", 1 << 40, Some(1))]));
        assert!(shard_snapshot_files(&absurd)
            .expect_err("an error")
            .contains("parts"));
        assert!(shard_snapshot_files(&shard_blob(&files(&[("../x", 1, None)]))).is_err());
    }
}
