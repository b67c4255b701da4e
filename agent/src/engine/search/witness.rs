//! What a snapshot-mode backup keeps to check a restored copy's content
//! against, since the agent never reads the snapshot's bytes itself: the
//! digest of each index's mappings, and documents drawn at random that
//! were unchanged from just before the snapshot started to just after it
//! ended — the snapshot then holds exactly them, whatever was written
//! meanwhile. A drill compares both with the restored copy.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{json, value::RawValue, Value};
use sha2::{Digest, Sha256};

use super::client::{segment, Client};
use super::format::{source_bytes, ContentDigest};
use super::selection::Selected;
use crate::error::Result;
use crate::manifest::search::WitnessDocument;

/// Documents drawn per index: enough that a restore mixing up documents
/// or shards shows, few enough to cost two small requests.
pub const WITNESSES: usize = 32;

/// What was seen of one index just before the snapshot started.
#[derive(Debug, Default)]
pub struct Glimpse {
    mappings: Option<Value>,
    documents: Vec<Seen>,
}

/// Each index's mappings and witnesses drawn just before the snapshot.
/// Best effort, as is [`after`]: a cluster that refuses the draw (a
/// version without `random_score` on `_seq_no`, say) gives a backup
/// without witnesses, which a drill then says it could not compare.
pub async fn before(client: &Client, indices: &[Selected], seed: u64) -> BTreeMap<String, Glimpse> {
    let mut seen = BTreeMap::new();
    for index in indices {
        let name = &index.definition.name;
        let mappings = mappings(client, name).await;
        let documents = draw(client, name, seed).await;
        if let Err(e) = mappings
            .as_ref()
            .map(|_| ())
            .and(documents.as_ref().map(|_| ()))
        {
            tracing::warn!(index = %name, error = %e, "no documents or mappings to check a drill against could be read");
        }
        seen.insert(
            name.clone(),
            Glimpse {
                mappings: mappings.ok(),
                documents: documents.unwrap_or_default(),
            },
        );
    }
    seen
}

/// After the snapshot: per index, the mappings' digest when they did not
/// change, and the witnesses that did not.
pub async fn after(
    client: &Client,
    before: BTreeMap<String, Glimpse>,
) -> BTreeMap<String, (String, Vec<WitnessDocument>)> {
    let mut kept = BTreeMap::new();
    for (name, glimpse) in before {
        let refs = glimpse
            .documents
            .iter()
            .map(|d| (d.id.as_str(), d.routing.as_deref()));
        let documents = match reread(client, &name, refs).await {
            Ok(again) => unchanged(&glimpse.documents, &again),
            Err(e) => {
                tracing::warn!(index = %name, error = %e, "the drawn documents could not be read again; none is kept to check a drill against");
                Vec::new()
            }
        };
        let mappings = match (glimpse.mappings, mappings(client, &name).await) {
            (Some(a), Ok(b)) if a == b => canonical_digest(&a),
            _ => String::new(),
        };
        kept.insert(name, (mappings, documents));
    }
    kept
}

/// A document as read at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub id: String,
    pub routing: Option<String>,
    /// `_seq_no` and `_primary_term`: a document whose pair did not change
    /// was not written in between (an update that restored the same
    /// content still changes them).
    pub version: Option<(u64, u64)>,
    pub digest: String,
}

#[derive(Deserialize)]
struct Found<'a> {
    #[serde(rename = "_id", borrow)]
    id: std::borrow::Cow<'a, str>,
    #[serde(rename = "_routing", default, borrow)]
    routing: Option<std::borrow::Cow<'a, str>>,
    #[serde(rename = "_seq_no", default)]
    seq_no: Option<u64>,
    #[serde(rename = "_primary_term", default)]
    primary_term: Option<u64>,
    #[serde(rename = "_source", borrow, default)]
    source: Option<&'a RawValue>,
    /// `_mget` only: absent documents come back with `found: false`.
    #[serde(default = "yes")]
    found: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
struct SearchAnswer<'a> {
    #[serde(borrow)]
    hits: SearchHits<'a>,
}

#[derive(Deserialize)]
struct SearchHits<'a> {
    #[serde(borrow)]
    hits: Vec<Found<'a>>,
}

#[derive(Deserialize)]
struct MgetAnswer<'a> {
    #[serde(borrow)]
    docs: Vec<Found<'a>>,
}

impl Found<'_> {
    fn seen(&self) -> Option<Seen> {
        if !self.found {
            return None;
        }
        let source = self.source.map(source_bytes).unwrap_or_default();
        Some(Seen {
            id: self.id.to_string(),
            routing: self.routing.as_ref().map(|r| r.to_string()),
            version: self.seq_no.zip(self.primary_term),
            digest: document_digest(&self.id, self.routing.as_deref(), &source),
        })
    }
}

/// One document's digest, as the content digest of an export sums them.
pub fn document_digest(id: &str, routing: Option<&str>, source: &str) -> String {
    let mut digest = ContentDigest::default();
    digest.add(id, routing, source);
    digest.hex()
}

/// Up to [`WITNESSES`] documents of `index` drawn at random (`seed` makes
/// the draw differ between runs).
pub async fn draw(client: &Client, index: &str, seed: u64) -> Result<Vec<Seen>> {
    let body = json!({
        "size": WITNESSES,
        "seq_no_primary_term": true,
        "query": {"function_score": {
            "query": {"match_all": {}},
            // The server takes an int or long seed, not a u64 past i64.
            "random_score": {"seed": seed & 0x7fff_ffff, "field": "_seq_no"},
            "boost_mode": "replace",
        }},
    });
    let path = format!("{}/_search", segment(index));
    let bytes = post(client, &path, &body).await?;
    let parsed: SearchAnswer = serde_json::from_slice(&bytes).map_err(|e| {
        client
            .side
            .error(format!("{path} answered what is no search result: {e}"))
    })?;
    Ok(parsed.hits.hits.iter().filter_map(Found::seen).collect())
}

/// `POST path` with a JSON body, which must succeed; the answer's bytes
/// (parsed by the caller, borrowing the documents' `_source`).
async fn post(client: &Client, path: &str, body: &Value) -> Result<bytes::Bytes> {
    let method = reqwest::Method::POST;
    let answer = client
        .send(
            method.clone(),
            path,
            Some((body.to_string().into_bytes(), "application/json")),
        )
        .await?;
    if !answer.status.is_success() {
        return Err(client.refused(&method, path, &answer));
    }
    Ok(answer.bytes)
}

/// The same documents, `(id, routing)`, read again from `index` (which
/// may be another name for a restored copy); absent ones are left out.
pub async fn reread<'a>(
    client: &Client,
    index: &str,
    documents: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
) -> Result<Vec<Seen>> {
    let docs: Vec<Value> = documents
        .into_iter()
        .map(|(id, routing)| match routing {
            Some(r) => json!({"_id": id, "routing": r}),
            None => json!({"_id": id}),
        })
        .collect();
    if docs.is_empty() {
        return Ok(Vec::new());
    }
    let path = format!("{}/_mget", segment(index));
    let bytes = post(client, &path, &json!({ "docs": docs })).await?;
    let parsed: MgetAnswer = serde_json::from_slice(&bytes).map_err(|e| {
        client
            .side
            .error(format!("{path} answered what is no multi-get result: {e}"))
    })?;
    Ok(parsed.docs.iter().filter_map(Found::seen).collect())
}

/// The documents seen the same before and after: same sequence number and
/// primary term (when the server reports them) and same content.
pub fn unchanged(before: &[Seen], after: &[Seen]) -> Vec<WitnessDocument> {
    let after: BTreeMap<(&str, Option<&str>), &Seen> = after
        .iter()
        .map(|s| ((s.id.as_str(), s.routing.as_deref()), s))
        .collect();
    before
        .iter()
        .filter(|b| {
            after
                .get(&(b.id.as_str(), b.routing.as_deref()))
                .is_some_and(|a| a.version == b.version && a.digest == b.digest)
        })
        .map(|b| WitnessDocument {
            id: b.id.clone(),
            routing: b.routing.clone(),
            digest: b.digest.clone(),
        })
        .collect()
}

/// A drill's judgement of the witnesses read back from a restored copy.
pub fn compare(expected: &[WitnessDocument], restored: &[Seen]) -> std::result::Result<(), String> {
    let restored: BTreeMap<(&str, Option<&str>), &str> = restored
        .iter()
        .map(|s| ((s.id.as_str(), s.routing.as_deref()), s.digest.as_str()))
        .collect();
    // Counts only: the ids are data, and a drill's report goes to the
    // resource's status and the Pushgateway.
    let (mut missing, mut differing) = (0, 0);
    for w in expected {
        match restored.get(&(w.id.as_str(), w.routing.as_deref())) {
            None => missing += 1,
            Some(d) if *d != w.digest => differing += 1,
            Some(_) => {}
        }
    }
    let mut parts = Vec::new();
    if missing > 0 {
        parts.push(format!(
            "{missing} of {} sampled documents missing",
            expected.len()
        ));
    }
    if differing > 0 {
        parts.push(format!(
            "{differing} of {} sampled documents differ from the snapshot's",
            expected.len()
        ));
    }
    if parts.is_empty() {
        Ok(())
    } else {
        Err(parts.join("; "))
    }
}

/// The mappings of `index` as the cluster reports them.
pub async fn mappings(client: &Client, index: &str) -> Result<Value> {
    let got = client.get(&format!("{}/_mapping", segment(index))).await?;
    // Keyed by the index's own name (a pattern could name others).
    Ok(got
        .get(index)
        .map(|i| i["mappings"].clone())
        .unwrap_or(Value::Null))
}

/// SHA-256 of `value` as canonical JSON: object keys sorted at every
/// level, so two equal mappings digest alike whatever order the cluster
/// gives their keys in.
pub fn canonical_digest(value: &Value) -> String {
    let mut out = Vec::new();
    canonical(value, &mut out);
    hex::encode(Sha256::digest(&out))
}

fn canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(Value::String(key.clone()).to_string().as_bytes());
                out.push(b':');
                canonical(&map[key], out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical(item, out);
            }
            out.push(b']');
        }
        scalar => out.extend_from_slice(scalar.to_string().as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(id: &str, version: u64, digest: &str) -> Seen {
        Seen {
            id: id.into(),
            routing: None,
            version: Some((version, 1)),
            digest: digest.into(),
        }
    }

    #[test]
    fn only_documents_untouched_while_the_snapshot_ran_are_witnesses() {
        let before = [
            seen("a", 1, "x"),
            seen("b", 2, "y"),
            seen("c", 3, "z"),
            seen("d", 4, "w"),
        ];
        // b updated to the same content (its version moved), c changed,
        // d deleted: only a is certainly in the snapshot as read.
        let after = [seen("a", 1, "x"), seen("b", 9, "y"), seen("c", 7, "q")];
        let kept = unchanged(&before, &after);
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].id, "a");
        assert_eq!(kept[0].digest, "x");
    }

    #[test]
    fn routing_tells_documents_of_the_same_id_apart() {
        let mut routed = seen("a", 1, "x");
        routed.routing = Some("r1".into());
        let mut other = seen("a", 1, "x");
        other.routing = Some("r2".into());
        assert!(unchanged(&[routed], &[other]).is_empty());
    }

    #[test]
    fn a_drill_names_missing_and_different_documents() {
        let expected = vec![
            WitnessDocument {
                id: "a".into(),
                routing: None,
                digest: "x".into(),
            },
            WitnessDocument {
                id: "b".into(),
                routing: None,
                digest: "y".into(),
            },
            WitnessDocument {
                id: "c".into(),
                routing: None,
                digest: "z".into(),
            },
        ];
        assert_eq!(
            compare(
                &expected,
                &[seen("a", 5, "x"), seen("b", 1, "y"), seen("c", 1, "z")]
            ),
            Ok(())
        );
        let e =
            compare(&expected, &[seen("a", 1, "x"), seen("c", 1, "changed")]).expect_err("differs");
        assert_eq!(
            e,
            "1 of 3 sampled documents missing; 1 of 3 sampled documents differ from the snapshot's"
        );
    }

    #[test]
    fn mappings_digest_alike_whatever_the_key_order() {
        let a: Value = serde_json::from_str(r#"{"properties":{"b":{"type":"keyword"},"a":{"type":"text","fields":{"k":{"type":"keyword"}}}}}"#).expect("json");
        let b: Value = serde_json::from_str(r#"{"properties":{"a":{"fields":{"k":{"type":"keyword"}},"type":"text"},"b":{"type":"keyword"}}}"#).expect("json");
        let c: Value =
            serde_json::from_str(r#"{"properties":{"a":{"type":"text"},"b":{"type":"keyword"}}}"#)
                .expect("json");
        assert_eq!(canonical_digest(&a), canonical_digest(&b));
        assert_ne!(canonical_digest(&a), canonical_digest(&c));
        let mut out = Vec::new();
        canonical(&b, &mut out);
        assert_eq!(
            String::from_utf8(out).expect("utf8"),
            r#"{"properties":{"a":{"fields":{"k":{"type":"keyword"}},"type":"text"},"b":{"type":"keyword"}}}"#
        );
    }

    #[test]
    fn a_document_digest_is_the_one_an_export_sums() {
        let mut sum = ContentDigest::default();
        sum.add("id 1", Some("r"), r#"{"x":1}"#);
        assert_eq!(document_digest("id 1", Some("r"), r#"{"x":1}"#), sum.hex());
    }
}
