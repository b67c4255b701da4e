//! The catalog of backups in a store: every manifest, newest first, and the
//! choice of one by `latest`, id or `before:TIME`. Backups exist only through
//! their manifests.
//!
//! "Newest" is the order of backup ids ([`series_time`]), not of the clocks
//! of the nodes that took them: a backup's id is always later than every id
//! already in its series (`backup_id::next_id`), so the backup taken
//! last is the newest even when its node's clock was behind.

use std::collections::{BTreeSet, HashMap};
use std::str::FromStr;

use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};

use crate::backup_id::BackupId;
use crate::error::{Error, Result};
use crate::manifest::{backup_dir, Manifest, MANIFEST_FILE};
use crate::store::Store;

/// Which backups a command looks at: all, one namespace, or one backup name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    pub namespace: Option<String>,
    pub name: Option<String>,
}

impl Scope {
    pub fn list_prefix(&self) -> String {
        match (&self.namespace, &self.name) {
            (Some(ns), Some(name)) => format!("{ns}/{name}/"),
            (Some(ns), None) => format!("{ns}/"),
            _ => String::new(),
        }
    }

    fn admits(&self, m: &Manifest) -> bool {
        self.namespace.as_ref().is_none_or(|ns| *ns == m.namespace)
            && self.name.as_ref().is_none_or(|n| *n == m.name)
    }
}

/// What a store holds in scope. A manifest counts only where its content
/// matches its location (`<namespace>/<name>/<backup-id>/manifest.json`):
/// a copy under another id or name is a stray, never selected and never the
/// basis of a deletion.
#[derive(Debug, Default)]
pub struct Catalog {
    /// Backups whose manifest and artifacts are all present, newest first.
    pub intact: Vec<Manifest>,
    /// Backups whose manifest is valid but whose artifacts are missing or
    /// of the wrong size, newest first, with what is wrong.
    pub damaged: Vec<(Manifest, String)>,
    /// Manifests that cannot be read, or that describe another location.
    pub strays: Vec<Stray>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stray {
    pub key: String,
    pub problem: String,
}

/// Reads every manifest in scope. One damaged backup or stray manifest never
/// hides the others; each is reported for what it is.
pub async fn load_catalog(store: &dyn Store, scope: &Scope) -> Result<Catalog> {
    let objects = store.list(&scope.list_prefix()).await?;
    let sizes: HashMap<&str, u64> = objects.iter().map(|o| (o.key.as_str(), o.size)).collect();
    let keys: Vec<String> = objects
        .iter()
        .map(|o| o.key.clone())
        .filter(|k| is_manifest_key(k))
        .collect();
    let loaded: Vec<(String, std::result::Result<Manifest, String>)> = futures::stream::iter(keys)
        .map(|key| async move {
            let bytes = store.get_bytes(&key).await?;
            let parsed = Manifest::parse(&bytes, &key);
            Ok::<_, Error>((key, parsed))
        })
        .buffer_unordered(16)
        .try_collect()
        .await?;
    let mut catalog = Catalog::default();
    for (key, parsed) in loaded {
        match parsed.and_then(|m| check_location(&m, &key).map(|()| m)) {
            Err(problem) => {
                tracing::warn!(key, problem = %problem, "stray manifest: never selected, never the basis of a deletion");
                catalog.strays.push(Stray { key, problem });
            }
            Ok(m) if !scope.admits(&m) => {}
            Ok(m) => match missing_artifacts(&m, &sizes) {
                None => catalog.intact.push(m),
                Some(problem) => catalog.damaged.push((m, problem)),
            },
        }
    }
    sort_newest_first(&mut catalog.intact);
    catalog.damaged.sort_by(|a, b| newest_first(&a.0, &b.0));
    catalog.strays.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(catalog)
}

/// More than any sensible `--full-every`; guards against a loop.
const LONGEST_CHAIN: usize = 10_000;

/// The manifests of `head`'s chain — the backups an incremental backup
/// continues, followed through their `parent` — the full backup first,
/// `head` last; just `head` for a full backup. Every member must be an
/// earlier backup of the same series and engine.
pub async fn chain(store: &dyn Store, head: &Manifest) -> Result<Vec<Manifest>> {
    let mut chain = vec![head.clone()];
    while let Some(parent) = chain.last().and_then(|m| m.parent.clone()) {
        let child = chain
            .last()
            .map(|m| m.backup_id.clone())
            .unwrap_or_default();
        if chain.len() >= LONGEST_CHAIN {
            return Err(Error::integrity(format!(
                "backup {} has a chain longer than {LONGEST_CHAIN} backups; the store holds a loop or hand-made manifests",
                head.backup_id
            )));
        }
        if parent >= child {
            return Err(Error::integrity(format!(
                "backup {child} names {parent} as its parent, which is not an earlier backup of the series; the chain of {} is broken",
                head.backup_id
            )));
        }
        let key = format!(
            "{}/{MANIFEST_FILE}",
            backup_dir(&head.namespace, &head.name, &parent)
        );
        let bytes = store.get_bytes(&key).await.map_err(|e| match e {
            crate::store::StoreError::NotFound { .. } => Error::integrity(format!(
                "backup {} is incremental and needs backup {parent} (the parent of {child}), which is not in the store: the chain cannot be restored; restore an older full backup, or take a full backup (without --incremental)",
                head.backup_id
            )),
            other => other.into(),
        })?;
        let manifest = Manifest::parse(&bytes, &key).map_err(Error::integrity)?;
        check_location(&manifest, &key).map_err(|problem| {
            Error::integrity(format!(
                "the parent {parent} of {child} is not a backup of this series ({problem}); the chain of {} is broken",
                head.backup_id
            ))
        })?;
        if manifest.backup_id != parent || manifest.source.kind != head.source.kind {
            return Err(Error::integrity(format!(
                "{key} is not the {} backup {parent} that {child} continues; the chain of {} is broken",
                head.source.kind,
                head.backup_id
            )));
        }
        chain.push(manifest);
    }
    chain.reverse();
    Ok(chain)
}

/// The backup an incremental run of `scope`'s series continues: the newest
/// intact one with an id before `before` (the run's own), if its chain
/// still restores; `None` (logged): the run takes a full backup.
pub async fn continuable(
    store: &dyn Store,
    scope: &Scope,
    before: &str,
) -> Result<Option<Manifest>> {
    let intact = load(store, scope).await?;
    let Some(newest) = intact.iter().find(|m| m.backup_id.as_str() < before) else {
        tracing::info!("--incremental: a full backup (no backup of this name to continue)");
        return Ok(None);
    };
    // A chain that no longer restores (a member deleted, or damaged: its
    // artifact missing or of the wrong size) is not continued: the run
    // starts a new one rather than fail every scheduled run.
    let broken = match chain(store, newest).await {
        Err(e) => Some(e.to_string()),
        Ok(chain) => chain
            .iter()
            .find(|m| !intact.iter().any(|i| i.backup_id == m.backup_id))
            .map(|m| format!("backup {} is damaged", m.backup_id)),
    };
    if let Some(why) = broken {
        tracing::warn!(
            "--incremental: a full backup, because the chain of {} cannot be restored: {why}",
            newest.backup_id
        );
        return Ok(None);
    }
    Ok(Some(newest.clone()))
}

/// The intact backups in scope, newest first.
pub async fn load(store: &dyn Store, scope: &Scope) -> Result<Vec<Manifest>> {
    Ok(load_catalog(store, scope).await?.intact)
}

/// A manifest must describe the directory it sits in and name artifacts
/// that are plain file names inside it.
fn check_location(m: &Manifest, key: &str) -> std::result::Result<(), String> {
    let expected = format!(
        "{}/{MANIFEST_FILE}",
        backup_dir(&m.namespace, &m.name, &m.backup_id)
    );
    if expected != key {
        return Err(format!(
            "it describes backup {}/{}/{} but is stored at {key}",
            m.namespace, m.name, m.backup_id
        ));
    }
    let invalid = |name: &str| {
        name.is_empty()
            || name.contains(['/', '\\'])
            || name.starts_with('.')
            || name == MANIFEST_FILE
    };
    if let Some(bad) = m.artifacts.iter().find(|a| invalid(&a.name)) {
        return Err(format!("it names an invalid artifact file {:?}", bad.name));
    }
    if m.artifacts.is_empty() {
        return Err("it lists no artifacts".into());
    }
    Ok(())
}

/// What is wrong with a backup's artifacts in the listing, if anything —
/// and with the objects it holds elsewhere in the store (a search
/// snapshot's blobs in the agent's own repository, listed with the series).
fn missing_artifacts(m: &Manifest, sizes: &HashMap<&str, u64>) -> Option<String> {
    let dir = backup_dir(&m.namespace, &m.name, &m.backup_id);
    let mut problems: Vec<String> = m
        .artifacts
        .iter()
        .filter_map(|a| match sizes.get(format!("{dir}/{}", a.name).as_str()) {
            None => Some(format!("{} is missing", a.name)),
            Some(&size) if size != a.stored_bytes => Some(format!(
                "{} is {size} bytes, the manifest says {}",
                a.name, a.stored_bytes
            )),
            Some(_) => None,
        })
        .collect();
    let held = crate::engine::held_objects(m);
    let damaged: Vec<&str> = held
        .iter()
        .filter(|(key, size)| sizes.get(key.as_str()) != Some(size))
        .map(|(key, _)| key.as_str())
        .collect();
    if !damaged.is_empty() {
        let named = crate::names::first_few(&damaged, 3, ", ");
        problems.push(format!(
            "{} of the {} repository blobs its snapshot needs are missing or of another size: {named}",
            damaged.len(),
            held.len()
        ));
    }
    (!problems.is_empty()).then(|| problems.join("; "))
}

/// Where a backup stands in its series: the time its id carries, or its
/// start time when that is later (ids carry whole seconds). An id moved past
/// a newer one by a clock that was behind thus sorts after it; otherwise
/// this is the start time, as it always was.
pub fn series_time(m: &Manifest) -> DateTime<Utc> {
    m.backup_id
        .parse::<BackupId>()
        .ok()
        .and_then(|id| id.time())
        .map_or(m.started_at, |t| t.max(m.started_at))
}

fn newest_first(a: &Manifest, b: &Manifest) -> std::cmp::Ordering {
    series_time(b)
        .cmp(&series_time(a))
        .then_with(|| b.backup_id.cmp(&a.backup_id))
}

/// The newest id of a backup in one series, intact or damaged: a new
/// backup's id must be later. Manifests are read newest first until one is
/// valid where it is, so a stray (a copy under a made-up id) never pushes
/// the series' ids; usually that is one read.
pub async fn newest_id(store: &dyn Store, namespace: &str, name: &str) -> Result<Option<BackupId>> {
    let scope = Scope {
        namespace: Some(namespace.to_string()),
        name: Some(name.to_string()),
    };
    let mut candidates: Vec<(BackupId, String)> = store
        .list(&scope.list_prefix())
        .await?
        .into_iter()
        .filter(|o| is_manifest_key(&o.key))
        .filter_map(|o| Some((o.key.split('/').nth(2)?.parse::<BackupId>().ok()?, o.key)))
        .collect();
    candidates.sort_by(|a, b| b.0.cmp(&a.0));
    for (id, key) in candidates {
        let bytes = match store.get_bytes(&key).await {
            Ok(bytes) => bytes,
            // Pruned since the listing.
            Err(crate::store::StoreError::NotFound { .. }) => continue,
            Err(e) => return Err(e.into()),
        };
        if Manifest::parse(&bytes, &key)
            .and_then(|m| check_location(&m, &key))
            .is_ok()
        {
            return Ok(Some(id));
        }
    }
    Ok(None)
}

fn is_manifest_key(key: &str) -> bool {
    let parts: Vec<&str> = key.split('/').collect();
    parts.len() == 4 && parts[3] == MANIFEST_FILE && parts[2].parse::<BackupId>().is_ok()
}

pub fn sort_newest_first(manifests: &mut [Manifest]) {
    manifests.sort_by(newest_first);
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    Latest,
    Id(BackupId),
    /// The newest backup that started strictly before this time.
    Before(DateTime<Utc>),
}

impl FromStr for Selector {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        if s == "latest" {
            return Ok(Selector::Latest);
        }
        if let Some(time) = s.strip_prefix("before:") {
            return DateTime::parse_from_rfc3339(time)
                .map(|t| Selector::Before(t.with_timezone(&Utc)))
                .map_err(|e| format!("--backup {s:?}: {time:?} is not an RFC 3339 time ({e}); e.g. before:2026-11-27T06:00:00Z"));
        }
        s.parse::<BackupId>()
            .map(Selector::Id)
            .map_err(|e| format!("--backup: {e}; or use latest, or before:RFC3339"))
    }
}

/// Picks one backup from `manifests` (newest first). `latest` and `before:`
/// need the manifests to belong to one backup name; if they do not, the error
/// lists the names so the user can add `--name`.
pub fn select<'a>(
    manifests: &'a [Manifest],
    selector: &Selector,
    store: &str,
) -> Result<&'a Manifest> {
    if manifests.is_empty() {
        return Err(Error::usage(format!(
            "no backups found in {store} (for this --namespace/--name)"
        )));
    }
    if let Selector::Id(id) = selector {
        let found: Vec<&Manifest> = manifests
            .iter()
            .filter(|m| m.backup_id == id.as_str())
            .collect();
        return match found.as_slice() {
            [one] => Ok(one),
            [] => Err(Error::usage(format!("backup {id} does not exist in {store}; `vertice-agent list --from {store}` shows the backups"))),
            _ => Err(Error::usage(format!(
                "backup id {id} exists under several names ({}); add --namespace and --name",
                names(found.iter().copied())
            ))),
        };
    }
    let groups: BTreeSet<(&str, &str)> = manifests
        .iter()
        .map(|m| (m.namespace.as_str(), m.name.as_str()))
        .collect();
    if groups.len() > 1 {
        return Err(Error::usage(format!(
            "{store} holds backups of several names ({}); choose one with --namespace and --name",
            names(manifests.iter())
        )));
    }
    let chosen = match selector {
        Selector::Latest => manifests.first(),
        Selector::Before(t) => manifests.iter().find(|m| m.started_at < *t),
        Selector::Id(_) => None,
    };
    chosen.ok_or_else(|| match selector {
        Selector::Before(t) => Error::usage(format!(
            "no backup in {store} started before {}",
            t.to_rfc3339()
        )),
        _ => Error::usage(format!("no backups found in {store}")),
    })
}

/// Picks one backup as [`select`] does, from the whole catalog: a damaged
/// backup asked for by id is refused as damaged, and when nothing in scope
/// is intact, the damaged and unreadable backups there are named (exit 1)
/// instead of "no backups found" (exit 2), which would send an operator
/// looking for a wrong flag while their only backup is broken.
pub fn choose<'a>(catalog: &'a Catalog, selector: &Selector, store: &str) -> Result<&'a Manifest> {
    if let Selector::Id(id) = selector {
        if let Some((_, problem)) = catalog
            .damaged
            .iter()
            .find(|(m, _)| m.backup_id == id.as_str())
        {
            return Err(Error::integrity(format!(
                "backup {id} is damaged ({problem}); it cannot be used. `vertice-agent list` shows the intact backups"
            )));
        }
    }
    match select(&catalog.intact, selector, store) {
        Err(e) if catalog.intact.is_empty() && !matches!(selector, Selector::Id(_)) => {
            Err(nothing_intact(catalog, store).unwrap_or(e))
        }
        other => other,
    }
}

/// Names what is in scope when none of it is intact; `None` when nothing is.
fn nothing_intact(catalog: &Catalog, store: &str) -> Option<Error> {
    const SHOWN: usize = 3;
    let found: Vec<String> = catalog
        .damaged
        .iter()
        .map(|(m, problem)| {
            format!(
                "backup {}/{}/{} is damaged ({problem})",
                m.namespace, m.name, m.backup_id
            )
        })
        .chain(
            catalog
                .strays
                .iter()
                .map(|s| format!("{} cannot be used ({})", s.key, s.problem)),
        )
        .collect();
    if found.is_empty() {
        return None;
    }
    let more = match found.len().saturating_sub(SHOWN) {
        0 => String::new(),
        n => format!("; and {n} more"),
    };
    Some(Error::integrity(format!(
        "no intact backup in {store}: {}{more}. `vertice-agent list --from {store}` shows them",
        found[..found.len().min(SHOWN)].join("; ")
    )))
}

fn names<'a>(manifests: impl Iterator<Item = &'a Manifest>) -> String {
    let set: BTreeSet<String> = manifests
        .map(|m| format!("{}/{}", m.namespace, m.name))
        .collect();
    set.into_iter().collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{SourceInfo, SourceKind};

    fn manifest(ns: &str, name: &str, id: &str) -> Manifest {
        let id: BackupId = id.parse().expect("id");
        let t = id.time().expect("time");
        Manifest {
            format_version: 1,
            backup_id: id.to_string(),
            namespace: ns.into(),
            name: name.into(),
            source: SourceInfo {
                kind: SourceKind::Redis,
                address: "redis://h:6379".into(),
                server_version: None,
                database: None,
                keys: None,
                roles: Vec::new(),
                kafka: None,
                search: None,
                postgres: None,
            },
            started_at: t,
            finished_at: t,
            agent_version: "t".into(),
            parent: None,
            artifacts: vec![],
        }
    }

    fn sorted(mut v: Vec<Manifest>) -> Vec<Manifest> {
        sort_newest_first(&mut v);
        v
    }

    #[test]
    fn parses_selectors() {
        assert_eq!("latest".parse(), Ok(Selector::Latest));
        assert!(
            matches!("before:2026-11-27T06:00:00+01:00".parse::<Selector>(), Ok(Selector::Before(t)) if t.to_rfc3339() == "2026-11-27T05:00:00+00:00")
        );
        assert!(matches!(
            "20261127T060000Z-1a2b".parse::<Selector>(),
            Ok(Selector::Id(_))
        ));
        assert!("yesterday".parse::<Selector>().is_err());
        assert!("before:noon"
            .parse::<Selector>()
            .expect_err("bad time")
            .contains("RFC 3339"));
    }

    #[test]
    fn selects_latest_id_and_before() {
        let all = sorted(vec![
            manifest("ns", "db", "20261101T000000Z-0001"),
            manifest("ns", "db", "20261103T000000Z-0003"),
            manifest("ns", "db", "20261102T000000Z-0002"),
        ]);
        let pick = |s: &str| {
            select(&all, &s.parse().expect("selector"), "store").map(|m| m.backup_id.clone())
        };
        assert_eq!(pick("latest").expect("latest"), "20261103T000000Z-0003");
        assert_eq!(
            pick("20261101T000000Z-0001").expect("id"),
            "20261101T000000Z-0001"
        );
        assert_eq!(
            pick("before:2026-11-03T00:00:00Z").expect("before"),
            "20261102T000000Z-0002"
        );
        assert!(pick("before:2026-11-01T00:00:00Z").is_err());
        let missing = pick("20261104T000000Z-0004").expect_err("missing id");
        assert_eq!(missing.exit_code(), 2);
        assert!(missing.to_string().contains("does not exist"), "{missing}");
    }

    #[test]
    fn latest_over_several_names_asks_for_a_name() {
        let all = sorted(vec![
            manifest("ns", "a", "20261101T000000Z-0001"),
            manifest("ns", "b", "20261102T000000Z-0002"),
        ]);
        let err = select(&all, &Selector::Latest, "store").expect_err("ambiguous");
        assert!(err.to_string().contains("ns/a, ns/b"), "{err}");
        assert!(select(&[], &Selector::Latest, "store").is_err());
    }

    #[test]
    fn a_store_with_only_damaged_backups_names_them() {
        let catalog = Catalog {
            intact: vec![],
            damaged: vec![(
                manifest("ns", "db", "20261101T000000Z-0001"),
                "dump.pgdump.zst is missing".into(),
            )],
            strays: vec![],
        };
        let err = choose(&catalog, &Selector::Latest, "store").expect_err("damaged");
        assert_eq!(err.exit_code(), 1, "{err}");
        assert_eq!(err.category(), crate::error::ErrorCategory::Integrity);
        assert!(
            err.to_string()
                .contains("ns/db/20261101T000000Z-0001 is damaged (dump.pgdump.zst is missing)"),
            "{err}"
        );
        // Nothing at all is still "no backups", a usage error.
        let empty = choose(&Catalog::default(), &Selector::Latest, "store").expect_err("empty");
        assert_eq!(empty.exit_code(), 2, "{empty}");
    }

    #[test]
    fn an_id_moved_past_a_newer_one_sorts_newest() {
        // The node's clock was an hour behind: its backup started "05:00"
        // but took an id one second after the newest.
        let mut behind = manifest("ns", "db", "20261101T060001Z-0002");
        behind.started_at -= chrono::Duration::hours(1);
        let all = sorted(vec![manifest("ns", "db", "20261101T060000Z-ffff"), behind]);
        assert_eq!(all[0].backup_id, "20261101T060001Z-0002");
        let latest = select(&all, &Selector::Latest, "store").expect("latest");
        assert_eq!(latest.backup_id, "20261101T060001Z-0002");
    }

    #[test]
    fn only_manifest_keys_at_the_right_depth_count() {
        assert!(is_manifest_key("ns/db/20261101T000000Z-0001/manifest.json"));
        assert!(!is_manifest_key(
            "ns/db/20261101T000000Z-0001/dump.pgdump.zst"
        ));
        assert!(!is_manifest_key("ns/db/junk/manifest.json"));
        assert!(!is_manifest_key(
            "x/ns/db/20261101T000000Z-0001/manifest.json"
        ));
    }
}
