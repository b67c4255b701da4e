//! A drill of an export: the backup restored into throwaway indices
//! (`vertice-drill-<backup>-<index>`) on the cluster `--restore-to` names —
//! no aliases, templates or pipelines touched — then checked: every
//! index's documents read back and compared with the manifest (count and
//! content digest: every document, not a sample) and its mappings with the
//! backup's. The throwaway indices are always deleted, also when a step
//! fails or a signal arrives.

use std::collections::BTreeMap;

use reqwest::Method;
use vertice_crds::drill::{DrillReport, SearchAssertion, SearchChecks};

use super::client::{segment, Client, Side};
use super::cluster::{self, Reading};
use super::cursor::View;
use super::format::{self, ContentDigest};
use super::restore::{self, Options};
use super::snapshot;
use super::target::SearchTarget;
use super::witness;
use crate::engine::common::{record_restore, timed, Drilled};
use crate::error::{Error, Result};
use crate::manifest::search::SearchFacts;

pub async fn drill(
    d: &Drilled<'_>,
    target: &SearchTarget,
    checks: &SearchChecks,
    report: &mut DrillReport,
) -> Result<()> {
    let manifest = d.backup.manifest;
    let facts = super::facts(manifest)?;
    let client = Client::new(
        target,
        &d.args.search,
        d.args.password.as_ref(),
        "--restore-to",
        Side::Target,
    )?;
    let identity = cluster::identify(&client).await?;
    let names = scratch_names(&manifest.backup_id, facts)?;
    let assertions = checks
        .assertions
        .iter()
        .map(|a| parse_assertion(a, &names))
        .collect::<Result<Vec<_>>>()?;
    report.target = Some(format!(
        "throwaway indices vertice-drill-{}-* on {} ({})",
        manifest.backup_id.to_ascii_lowercase(),
        client.address(),
        identity.describe()
    ));
    // A drill of the same backup killed before it cleaned up left these.
    delete(&client, &names).await;
    let mut outcome =
        restore_and_check(d, &client, identity.reading(), facts, &names, report).await;
    if outcome.is_ok() {
        outcome = assert_counts(&client, &assertions, report).await;
    }
    let left = delete(&client, &names).await;
    report.cleaned_up = left.is_empty();
    if !left.is_empty() {
        tracing::warn!(indices = %left.join(", "), "throwaway indices could not be deleted");
    }
    outcome
}

async fn restore_and_check(
    d: &Drilled<'_>,
    client: &Client,
    reading: Reading,
    facts: &SearchFacts,
    names: &BTreeMap<String, String>,
    report: &mut DrillReport,
) -> Result<()> {
    if let Some(taken) = &facts.snapshot {
        if taken.managed.is_some() {
            // The store is read before the cluster: a damaged repository is
            // named blob by blob, and nothing is restored from it.
            let blobs = super::repository::check_blobs(d.backup.store, taken).await;
            report.record(
                "repository blobs in the store".to_string(),
                blobs.as_ref().map(|_| ()).map_err(|e| e.to_string()),
            );
            blobs?;
        }
        let restored = timed(report, snapshot::restore(client, facts, names, false)).await;
        let restored = record_restore(report, restored, |_| Ok(()))?;
        for index in &facts.indices {
            let count = restored.get(&index.name).copied().unwrap_or(0);
            report.record(
                format!("documents of {}", index.name),
                snapshot::count_check(index, count),
            );
        }
        return snapshot_content(d, client, facts, names, report).await;
    }
    let options = Options {
        definitions: false,
        finish: false,
    };
    let loaded = timed(
        report,
        restore::load(client, &d.backup, facts, names, options),
    )
    .await;
    let loaded = record_restore(report, loaded, |_| Ok(()))?;
    for index in &facts.indices {
        let scratch = &names[&index.name];
        let read = read_back(client, reading, scratch).await?;
        let documents = if read.documents != index.documents {
            Err(format!(
                "{} documents read back, the backup holds {}",
                read.documents, index.documents
            ))
        } else if read.hex() != index.content_digest {
            Err(format!(
                "the content of its {} documents differs from the backup's",
                index.documents
            ))
        } else {
            Ok(())
        };
        report.record(format!("documents of {}", index.name), documents);
        let mappings = match loaded.definitions.get(&index.name) {
            Some(definition) => same_mappings(client, scratch, &definition.mappings).await?,
            None => Err("the backup defines no mappings for it".into()),
        };
        report.record(format!("mappings of {}", index.name), mappings);
    }
    Ok(())
}

/// A snapshot-mode drill's look at content, beyond counts: each restored
/// index's mappings against the digest taken around the snapshot, and the
/// witness documents (kept in the backup's record) read back one by one.
/// A backup made before these were recorded has neither; that is said.
async fn snapshot_content(
    d: &Drilled<'_>,
    client: &Client,
    facts: &SearchFacts,
    names: &BTreeMap<String, String>,
    report: &mut DrillReport,
) -> Result<()> {
    let record = snapshot::read_record(&d.backup).await?;
    for index in &facts.indices {
        let scratch = &names[&index.name];
        if !index.mappings_digest.is_empty() {
            let got = witness::mappings(client, scratch).await?;
            let same = if witness::canonical_digest(&got) == index.mappings_digest {
                Ok(())
            } else {
                Err(format!(
                    "the restored mappings differ from the ones the index had while the snapshot ran: {got}"
                ))
            };
            report.record(format!("mappings of {}", index.name), same);
        }
        let expected = record
            .index(&index.name)
            .map(|i| i.witnesses.as_slice())
            .unwrap_or_default();
        if expected.is_empty() {
            tracing::info!(index = %index.name, "the backup recorded no unchanged documents to compare (an empty or busy index, or an older agent)");
            continue;
        }
        let refs = expected
            .iter()
            .map(|w| (w.id.as_str(), w.routing.as_deref()));
        let again = witness::reread(client, scratch, refs).await?;
        report.record(
            format!("sampled documents of {}", index.name),
            witness::compare(expected, &again),
        );
    }
    Ok(())
}

/// Every document of `index`, digested as the export did.
async fn read_back(client: &Client, reading: Reading, index: &str) -> Result<ContentDigest> {
    let mut view = View::open(client, reading, index, 1000).await?;
    let mut digest = ContentDigest::default();
    let mut size = 1000;
    let outcome = async {
        loop {
            client.stopped()?;
            let answer = view.next(client, size).await?;
            let page = view.advance(client, &answer)?;
            if page.hits.hits.is_empty() {
                return Ok(());
            }
            for hit in &page.hits.hits {
                let source = hit.source.map(format::source_bytes).unwrap_or_default();
                digest.add(&hit.id, hit.routing.as_deref(), &source);
            }
            size = format::next_page_size(size, answer.len(), page.hits.hits.len(), 8 << 20);
        }
    }
    .await;
    view.close(client).await;
    outcome.map(|()| digest)
}

async fn same_mappings(
    client: &Client,
    index: &str,
    expected: &serde_json::Value,
) -> Result<std::result::Result<(), String>> {
    let got = &witness::mappings(client, index).await?;
    if got == expected {
        Ok(Ok(()))
    } else {
        Ok(Err(format!(
            "the restored mappings differ from the backup's: {got} against {expected}"
        )))
    }
}

/// A user assertion ready to run: its scratch index and `_count` body.
struct Counting<'a> {
    assertion: &'a SearchAssertion,
    scratch: String,
    body: serde_json::Value,
}

/// Checks an assertion before anything is restored: its index is in the
/// backup and its query is JSON.
fn parse_assertion<'a>(
    assertion: &'a SearchAssertion,
    names: &BTreeMap<String, String>,
) -> Result<Counting<'a>> {
    let scratch = names.get(&assertion.index).cloned().ok_or_else(|| {
        Error::usage(format!(
            "drill check {:?}: the backup holds no index {:?} (it holds {})",
            assertion.name,
            assertion.index,
            names.keys().cloned().collect::<Vec<_>>().join(", ")
        ))
    })?;
    let query = match &assertion.query {
        Some(text) => serde_json::from_str::<serde_json::Value>(text).map_err(|e| {
            Error::usage(format!(
                "drill check {:?}: query is not JSON ({e}); write the query clause, e.g. {{\"term\": {{\"status\": \"paid\"}}}}",
                assertion.name
            ))
        })?,
        None => serde_json::json!({"match_all": {}}),
    };
    Ok(Counting {
        assertion,
        scratch,
        body: serde_json::json!({ "query": query }),
    })
}

/// Runs the user's count assertions on the restored indices.
async fn assert_counts(
    client: &Client,
    assertions: &[Counting<'_>],
    report: &mut DrillReport,
) -> Result<()> {
    for counting in assertions {
        let path = format!("{}/_count", segment(&counting.scratch));
        let answer = client
            .send(
                Method::POST,
                &path,
                Some((counting.body.to_string().into_bytes(), "application/json")),
            )
            .await?;
        let a = counting.assertion;
        let outcome = if answer.status.is_success() {
            let count = answer.json()["count"].as_u64().unwrap_or(0);
            if count >= a.min_count {
                Ok(())
            } else {
                Err(format!(
                    "{count} documents of {} match, at least {} expected",
                    a.index, a.min_count
                ))
            }
        } else {
            Err(format!(
                "the query was refused (HTTP {}: {})",
                answer.status.as_u16(),
                super::client::reason(&answer.json())
            ))
        };
        report.record(a.name.clone(), outcome);
    }
    Ok(())
}

/// `vertice-drill-<backup id>-<index>` for each index, within the limits
/// of an index name.
fn scratch_names(backup_id: &str, facts: &SearchFacts) -> Result<BTreeMap<String, String>> {
    let mut names = BTreeMap::new();
    for index in &facts.indices {
        let name = format!(
            "vertice-drill-{}-{}",
            backup_id.to_ascii_lowercase(),
            index.name.trim_start_matches('.')
        );
        restore::check_index_name(&name).map_err(|why| {
            Error::usage(format!(
                "index {} cannot be drilled under a throwaway name: {why}",
                index.name
            ))
        })?;
        if names.values().any(|n| *n == name) {
            return Err(Error::usage(format!(
                "indices {} and another of this backup meet in one throwaway name ({name}); restore one of them with `restore --index-map` instead",
                index.name
            )));
        }
        names.insert(index.name.clone(), name);
    }
    Ok(names)
}

/// Deletes the throwaway indices; those that could not be.
async fn delete(client: &Client, names: &BTreeMap<String, String>) -> Vec<String> {
    let mut left = Vec::new();
    for name in names.values() {
        match client.send(Method::DELETE, &segment(name), None).await {
            Ok(a) if a.status.is_success() || a.status.as_u16() == 404 => {}
            _ => left.push(name.clone()),
        }
    }
    left
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::search::IndexFacts;

    #[test]
    fn assertions_name_a_backed_up_index_and_carry_json() {
        let names = BTreeMap::from([("orders".to_string(), "vertice-drill-x-orders".to_string())]);
        let ok = SearchAssertion {
            name: "paid".into(),
            index: "orders".into(),
            query: Some(r#"{"term": {"status": "paid"}}"#.into()),
            min_count: 3,
        };
        let counting = parse_assertion(&ok, &names).expect("valid");
        assert_eq!(counting.scratch, "vertice-drill-x-orders");
        assert_eq!(counting.body["query"]["term"]["status"], "paid");
        let all = SearchAssertion {
            query: None,
            ..ok.clone()
        };
        assert!(parse_assertion(&all, &names).expect("all").body["query"]["match_all"].is_object());
        let elsewhere = SearchAssertion {
            index: "nope".into(),
            ..ok.clone()
        };
        let err = parse_assertion(&elsewhere, &names)
            .err()
            .expect("unknown index");
        assert!(err.to_string().contains("holds no index \"nope\""), "{err}");
        let broken = SearchAssertion {
            query: Some("{term".into()),
            ..ok
        };
        let err = parse_assertion(&broken, &names).err().expect("not json");
        assert!(err.to_string().contains("query is not JSON"), "{err}");
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn throwaway_names_are_valid_index_names() {
        let facts = SearchFacts {
            flavour: "elasticsearch".into(),
            version: "7.17.29".into(),
            cluster_name: "c".into(),
            cluster_uuid: "u".into(),
            mode: "export".into(),
            consistency: "point_in_time".into(),
            indices: vec![IndexFacts {
                name: ".hidden-orders".into(),
                documents: 0,
                primary_shards: 1,
                content_digest: String::new(),
                documents_after: None,
                ..Default::default()
            }],
            not_kept: Vec::new(),
            snapshot: None,
        };
        let names = scratch_names("20261206T083000Z-AB12", &facts).expect("names");
        assert_eq!(
            names[".hidden-orders"],
            "vertice-drill-20261206t083000z-ab12-hidden-orders"
        );
        let mut long = facts.clone();
        long.indices[0].name = "x".repeat(250);
        assert!(scratch_names("id", &long).is_err());
    }
}
