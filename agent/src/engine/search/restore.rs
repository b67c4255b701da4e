//! `restore --to http(s)://… --target-kind elasticsearch` of an export:
//! every target index checked absent first; then the definitions the
//! target lacks, the indices (replicas 0, refresh off, no pipelines while
//! loading), every document by bulk, and per index its count and content
//! digest checked before its own settings and aliases are put back.
//!
//! All or nothing: when anything fails — the cluster, a refused document,
//! a digest, the artifact's checksum at its end, a signal — every index
//! and definition this run created is deleted again, and the message says
//! what is left. A concurrent reader can see an index filling up during
//! the load; after SIGKILL the half-loaded indices stay (their names are
//! in the log) and a new restore refuses them until they are deleted.

use std::collections::{BTreeMap, BTreeSet};

use reqwest::Method;
use serde_json::{json, Map, Value};
use tokio::io::AsyncBufReadExt;

use super::client::{reason, segment, Client};
use super::definitions::{self, Kind};
use super::format::{self, ContentDigest, IndexDefinition, Line, Meta, Named};
use super::load::Loader;
use crate::engine::common::Stored;
use crate::error::{Error, Result};
use crate::manifest::search::SearchFacts;

/// What a restore writes besides the documents.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Pipelines and templates the target lacks (not in a drill).
    pub definitions: bool,
    /// The indices' held-back settings and aliases put back (not in a
    /// drill, whose indices are throwaway copies under other names).
    pub finish: bool,
}

/// `SOURCE=TARGET` pairs into the name each backed-up index gets; every
/// source must be in the backup, no two indices may meet in one name.
pub fn index_map(pairs: &[String], facts: &SearchFacts) -> Result<BTreeMap<String, String>> {
    let mut map: BTreeMap<String, String> = facts
        .indices
        .iter()
        .map(|i| (i.name.clone(), i.name.clone()))
        .collect();
    for pair in pairs {
        let (from, to) = pair.split_once('=').ok_or_else(|| {
            Error::usage(format!(
                "--index-map {pair:?}: expected SOURCE=TARGET, e.g. orders=orders-restored"
            ))
        })?;
        let (from, to) = (from.trim(), to.trim());
        if !map.contains_key(from) {
            return Err(Error::usage(format!(
                "--index-map {pair:?}: the backup holds no index {from:?} (it holds {})",
                facts
                    .indices
                    .iter()
                    .map(|i| i.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        check_index_name(to).map_err(|why| Error::usage(format!("--index-map {pair:?}: {why}")))?;
        map.insert(from.to_string(), to.to_string());
    }
    // A manifest is input too: every name it makes the restore write must
    // be an index name (no pattern, no list, no path).
    for to in map.values() {
        check_index_name(to.trim_start_matches('.')).map_err(|why| {
            Error::integrity(format!(
                "the backup names an index the restore cannot write: {why}"
            ))
        })?;
    }
    let mut seen = BTreeSet::new();
    for to in map.values() {
        if !seen.insert(to) {
            return Err(Error::usage(format!(
                "--index-map: two indices would be restored into {to:?}; map one of them elsewhere"
            )));
        }
    }
    Ok(map)
}

/// The rules both vendors put on a new index's name.
pub fn check_index_name(name: &str) -> std::result::Result<(), String> {
    if name.is_empty() || name.len() > 255 {
        return Err(format!("{name:?} is not an index name (1 to 255 bytes)"));
    }
    if name != name.to_lowercase() {
        return Err(format!("{name:?} is not an index name (lowercase only)"));
    }
    if name.starts_with(['-', '_', '+']) || name == "." || name == ".." {
        return Err(format!(
            "{name:?} is not an index name (it may not start with -, _ or +)"
        ));
    }
    if name.contains(['\\', '/', '*', '?', '"', '<', '>', '|', ' ', ',', '#', ':']) {
        return Err(format!(
            "{name:?} is not an index name (no \\ / * ? \" < > | space , # :)"
        ));
    }
    Ok(())
}

/// A finished load: per backed-up index its documents and definition.
pub struct Loaded {
    pub counts: BTreeMap<String, u64>,
    pub definitions: BTreeMap<String, IndexDefinition>,
}

/// What a restore created so far, to delete again if it fails.
#[derive(Default)]
struct Created {
    definitions: Vec<(Kind, String)>,
    indices: Vec<String>,
    /// Indices complete and checked.
    complete: Vec<String>,
}

/// Loads `backup` into the cluster; `names` maps each backed-up index to
/// the index it becomes (all absent on the target, checked by the caller).
pub async fn load(
    client: &Client,
    backup: &Stored<'_>,
    facts: &SearchFacts,
    names: &BTreeMap<String, String>,
    options: Options,
) -> Result<Loaded> {
    let mut created = Created::default();
    let outcome = load_all(client, backup, facts, names, options, &mut created).await;
    match outcome {
        Ok(counts) => Ok(counts),
        Err(e) => {
            let left = roll_back(client, &created).await;
            Err(e.map_message(|m| {
                if left.is_empty() {
                    format!("{m}; the restore was taken back: nothing it created is left on {}", client.address())
                } else {
                    format!("{m}; taking the restore back failed, these are left on {} and must be deleted by hand: {}", client.address(), left.join(", "))
                }
            }))
        }
    }
}

/// Every target index must be absent.
pub async fn check_absent(
    client: &Client,
    names: &BTreeMap<String, String>,
    flag_hint: &str,
) -> Result<()> {
    let mut present = Vec::new();
    for target in names.values() {
        let path = segment(target);
        let answer = client.send(Method::HEAD, &path, None).await?;
        match answer.status.as_u16() {
            404 => {}
            200 => present.push(target.clone()),
            _ => return Err(client.refused(&Method::HEAD, &path, &answer)),
        }
    }
    if present.is_empty() {
        return Ok(());
    }
    Err(Error::usage(format!(
        "{} {}: {} already exist{} ({}); a restore never writes into an existing index: delete {}, or {flag_hint}",
        client.flag,
        client.address(),
        present.join(", "),
        if present.len() == 1 { "s" } else { "" },
        if present.len() == 1 { "it holds data or a half-finished restore" } else { "they hold data or a half-finished restore" },
        if present.len() == 1 { "it" } else { "them" },
    )))
}

async fn load_all(
    client: &Client,
    backup: &Stored<'_>,
    facts: &SearchFacts,
    names: &BTreeMap<String, String>,
    options: Options,
    created: &mut Created,
) -> Result<Loaded> {
    let mut open = backup.open().await?;
    let (manifest, artifact) = (backup.manifest, backup.artifact);
    let read_failed = |e: &std::io::Error| crate::artifact::read_failed(manifest, artifact, e);
    let mut reader = tokio::io::BufReader::with_capacity(1 << 20, &mut open.reader);
    let mut line = Vec::with_capacity(1 << 16);
    let mut defs: Vec<(Kind, Named)> = Vec::new();
    let mut indices: BTreeMap<String, IndexDefinition> = BTreeMap::new();
    let mut ready = false;
    let mut loader = Loader::new(client);
    let mut digests: BTreeMap<String, ContentDigest> = BTreeMap::new();
    let mut counts = BTreeMap::new();
    let mut ended = false;
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .await
            .map_err(|e| read_failed(&e))?;
        if n == 0 {
            break;
        }
        if ended {
            return Err(corrupt(backup, "holds lines after its end"));
        }
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        match format::parse_line(text).map_err(|e| corrupt(backup, &e))? {
            Line::Document(doc) => {
                if !ready {
                    prepare(client, &defs, &indices, names, options, created).await?;
                    ready = true;
                }
                if counts.contains_key(&doc.index) {
                    return Err(corrupt(
                        backup,
                        &format!("holds a document of {} after that index ended", doc.index),
                    ));
                }
                let target = names.get(&doc.index).ok_or_else(|| {
                    corrupt(
                        backup,
                        &format!(
                            "holds a document of {}, an index it does not define",
                            doc.index
                        ),
                    )
                })?;
                let source = doc.source.get();
                digests.entry(doc.index.clone()).or_default().add(
                    &doc.id,
                    doc.routing.as_deref(),
                    source,
                );
                if loader.push(target, &doc.id, doc.routing.as_deref(), source) {
                    loader.flush().await?;
                }
            }
            Line::Meta(Meta::VerticeSearchExport(header)) => {
                if header.format > format::VERSION {
                    return Err(Error::usage(format!(
                        "backup {} is export format {}, newer than this agent reads ({}); restore it with a newer vertice-agent",
                        manifest.backup_id, header.format, format::VERSION
                    )));
                }
            }
            Line::Meta(Meta::Index(definition)) => {
                indices.insert(definition.name.clone(), definition);
            }
            Line::Meta(Meta::IndexEnd(end)) => {
                if !ready {
                    prepare(client, &defs, &indices, names, options, created).await?;
                    ready = true;
                }
                loader.flush().await?;
                let digest = digests.remove(&end.name).unwrap_or_default();
                check_digest(backup, facts, &end, &digest)?;
                let target = &names[&end.name];
                let definition = indices.get(&end.name).ok_or_else(|| {
                    corrupt(
                        backup,
                        &format!("ends index {}, which it never defined", end.name),
                    )
                })?;
                finish_index(client, target, definition, end.documents, options).await?;
                created.complete.push(target.clone());
                counts.insert(end.name.clone(), end.documents);
                tracing::info!(index = %end.name, into = %target, documents = end.documents, "index restored");
            }
            Line::Meta(Meta::End(_)) => ended = true,
            Line::Meta(meta) => {
                if let Some((kind, named)) = Kind::of(&meta) {
                    defs.push((kind, named.clone()));
                }
            }
        }
    }
    drop(reader);
    // The artifact's own checksum, known only now, before the restore
    // counts as done.
    crate::artifact::check_integrity(manifest, artifact, &open)?;
    if !ended || counts.len() != facts.indices.len() {
        return Err(corrupt(backup, "ends before all its indices did"));
    }
    Ok(Loaded {
        counts,
        definitions: indices,
    })
}

fn corrupt(backup: &Stored<'_>, what: &str) -> Error {
    Error::integrity(format!(
        "backup {} artifact {} {what}: it is no complete export",
        backup.manifest.backup_id, backup.artifact.name
    ))
}

fn check_digest(
    backup: &Stored<'_>,
    facts: &SearchFacts,
    end: &format::IndexEnd,
    digest: &ContentDigest,
) -> Result<()> {
    let recorded = facts.index(&end.name);
    let matches = digest.documents == end.documents
        && digest.hex() == end.content_digest
        && recorded.is_some_and(|r| {
            r.documents == end.documents && r.content_digest == end.content_digest
        });
    if matches {
        return Ok(());
    }
    Err(Error::integrity(format!(
        "backup {}: index {}'s documents do not match the manifest ({} read, {} recorded): the backup is damaged",
        backup.manifest.backup_id,
        end.name,
        digest.documents,
        recorded.map_or(0, |r| r.documents)
    )))
}

/// Creates the definitions the target lacks, then every index, before the
/// first document.
async fn prepare(
    client: &Client,
    defs: &[(Kind, Named)],
    indices: &BTreeMap<String, IndexDefinition>,
    names: &BTreeMap<String, String>,
    options: Options,
    created: &mut Created,
) -> Result<()> {
    if options.definitions {
        for (kind, named) in defs {
            if definitions::exists(client, *kind, &named.name).await? {
                tracing::info!(kind = kind.describe(), name = %named.name, "the target has its own definition of this name; kept it");
                continue;
            }
            // Templates are created only if still absent (`create=true`):
            // one made meanwhile by someone else is neither overwritten
            // nor, on a rollback, deleted.
            let path = match kind {
                Kind::Pipeline => kind.url(&named.name),
                _ => format!("{}?create=true", kind.url(&named.name)),
            };
            let body = (named.body.to_string().into_bytes(), "application/json");
            let answer = client.send(Method::PUT, &path, Some(body)).await?;
            if !answer.status.is_success() {
                return Err(client
                    .refused(&Method::PUT, &path, &answer)
                    .map_message(|m| format!("creating {} {}: {m}", kind.describe(), named.name)));
            }
            created.definitions.push((*kind, named.name.clone()));
        }
    }
    for (source, target) in names {
        let definition = indices.get(source).ok_or_else(|| {
            Error::integrity(format!(
                "the export defines no index {source}, which its manifest names"
            ))
        })?;
        let body = json!({
            "settings": loading_settings(&definition.settings),
            "mappings": definition.mappings,
        });
        let path = segment(target);
        let sent = client
            .send(
                Method::PUT,
                &path,
                Some((body.to_string().into_bytes(), "application/json")),
            )
            .await;
        match sent {
            Ok(answer) if answer.status.is_success() => created.indices.push(target.clone()),
            // Someone else made it since the check: theirs, never deleted.
            Ok(answer)
                if reason(&answer.json()).starts_with("resource_already_exists_exception") =>
            {
                return Err(Error::usage(format!(
                    "index {target} was created on {} by someone else while the restore started; it is left as it is — delete it or restore under another name with --index-map",
                    client.address()
                )));
            }
            Ok(answer) => {
                return Err(client
                    .refused(&Method::PUT, &path, &answer)
                    .map_message(|m| format!("creating index {target}: {m}")))
            }
            Err(e) => {
                // The create may have happened before the answer was lost.
                created.indices.push(target.clone());
                return Err(e.map_message(|m| format!("creating index {target}: {m}")));
            }
        }
    }
    Ok(())
}

/// The settings an index is created with for the load.
pub fn loading_settings(settings: &Map<String, Value>) -> Map<String, Value> {
    let mut loading = settings.clone();
    for (key, value) in format::HELD_BACK {
        loading.insert(key.to_string(), Value::String(value.to_string()));
    }
    loading
}

/// The settings put back once an index is loaded: its own values of what
/// was held back (a default where it had none).
pub fn finishing_settings(settings: &Map<String, Value>) -> Map<String, Value> {
    let mut finishing = Map::new();
    for (key, _) in format::HELD_BACK {
        let value = settings.get(*key).cloned().unwrap_or(match *key {
            "index.number_of_replicas" => Value::String("1".into()),
            // `null` resets to the cluster's default.
            _ => Value::Null,
        });
        finishing.insert(key.to_string(), value);
    }
    finishing
}

/// An index loaded: made searchable, checked by count, its own settings
/// and aliases put back.
async fn finish_index(
    client: &Client,
    target: &str,
    definition: &IndexDefinition,
    documents: u64,
    options: Options,
) -> Result<()> {
    let index = segment(target);
    client
        .call(Method::POST, &format!("{index}/_refresh"), None)
        .await?;
    let counted = client.get(&format!("{index}/_count")).await?;
    let held = counted["count"].as_u64().unwrap_or(u64::MAX);
    if held != documents {
        return Err(Error::target(format!(
            "index {target} holds {held} documents after the load, the backup {documents}"
        )));
    }
    if !options.finish {
        return Ok(());
    }
    let settings = finishing_settings(&definition.settings);
    client
        .call(
            Method::PUT,
            &format!("{index}/_settings"),
            Some(&json!({"index": strip_index_prefix(&settings)})),
        )
        .await
        .map_err(|e| e.map_message(|m| format!("putting index {target}'s settings back: {m}")))?;
    if !definition.aliases.is_empty() && definition.name != target {
        // The aliases point at the original index, which may still be
        // there: a renamed copy joining them would answer its searches.
        tracing::info!(index = %definition.name, into = %target, aliases = %definition.aliases.keys().cloned().collect::<Vec<_>>().join(", "), "a renamed index does not take its source's aliases");
        return Ok(());
    }
    if !definition.aliases.is_empty() {
        let actions: Vec<Value> = definition
            .aliases
            .iter()
            .map(|(alias, body)| {
                let mut add = body.as_object().cloned().unwrap_or_default();
                add.insert("index".into(), json!(target));
                add.insert("alias".into(), json!(alias));
                json!({"add": add})
            })
            .collect();
        client
            .call(Method::POST, "_aliases", Some(&json!({"actions": actions})))
            .await
            .map_err(|e| e.map_message(|m| format!("adding index {target}'s aliases: {m}")))?;
    }
    Ok(())
}

/// `index.x` keys as `x` under `{"index": …}` (how `_settings` takes them).
fn strip_index_prefix(settings: &Map<String, Value>) -> Map<String, Value> {
    settings
        .iter()
        .map(|(k, v)| (k.strip_prefix("index.").unwrap_or(k).to_string(), v.clone()))
        .collect()
}

/// Deletes what a failed restore created; what could not be deleted.
async fn roll_back(client: &Client, created: &Created) -> Vec<String> {
    let mut left = Vec::new();
    for index in created.indices.iter().rev() {
        let path = segment(index);
        match client.send(Method::DELETE, &path, None).await {
            Ok(a) if a.status.is_success() || a.status.as_u16() == 404 => {}
            _ => left.push(format!("index {index}")),
        }
    }
    for (kind, name) in created.definitions.iter().rev() {
        match client.send(Method::DELETE, &kind.url(name), None).await {
            Ok(a) if a.status.is_success() || a.status.as_u16() == 404 => {}
            _ => left.push(format!("{} {name}", kind.describe())),
        }
    }
    left
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::search::IndexFacts;

    fn facts(names: &[&str]) -> SearchFacts {
        SearchFacts {
            flavour: "opensearch".into(),
            version: "2.19.6".into(),
            cluster_name: "c".into(),
            cluster_uuid: "u".into(),
            mode: "export".into(),
            consistency: "per_index".into(),
            indices: names
                .iter()
                .map(|n| IndexFacts {
                    name: n.to_string(),
                    documents: 1,
                    primary_shards: 1,
                    content_digest: String::new(),
                    documents_after: None,
                    ..Default::default()
                })
                .collect(),
            not_kept: Vec::new(),
            snapshot: None,
        }
    }

    #[test]
    fn the_index_map_renames_known_indices_into_distinct_valid_names() {
        let f = facts(&["orders", "logs"]);
        let map = index_map(&["orders=orders-restored".into()], &f).expect("map");
        assert_eq!(map["orders"], "orders-restored");
        assert_eq!(map["logs"], "logs");
        for (pairs, needle) in [
            (vec!["nope=x"], "holds no index \"nope\""),
            (vec!["orders"], "SOURCE=TARGET"),
            (vec!["orders=Orders"], "lowercase"),
            (vec!["orders=_x"], "may not start"),
            (vec!["orders=logs"], "two indices"),
            (vec!["orders=a/b"], "no \\"),
        ] {
            let pairs: Vec<String> = pairs.into_iter().map(String::from).collect();
            let err = index_map(&pairs, &f).expect_err(needle);
            assert!(err.to_string().contains(needle), "{err}");
            assert!(err.to_string().contains("--index-map"), "{err}");
            assert_eq!(err.exit_code(), 2);
        }
    }

    #[test]
    fn held_back_settings_are_set_for_the_load_and_put_back_after() {
        let own = serde_json::json!({"index.number_of_replicas": "2", "index.default_pipeline": "enrich",
            "index.number_of_shards": "3"});
        let own = own.as_object().expect("map");
        let loading = loading_settings(own);
        assert_eq!(loading["index.number_of_replicas"], "0");
        assert_eq!(loading["index.refresh_interval"], "-1");
        assert_eq!(loading["index.default_pipeline"], "_none");
        assert_eq!(loading["index.number_of_shards"], "3");
        let back = finishing_settings(own);
        assert_eq!(back["index.number_of_replicas"], "2");
        assert_eq!(back["index.default_pipeline"], "enrich");
        assert_eq!(back["index.refresh_interval"], Value::Null);
        assert_eq!(back["index.final_pipeline"], Value::Null);
        assert_eq!(strip_index_prefix(&back)["number_of_replicas"], "2");
    }
}
