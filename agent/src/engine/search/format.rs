//! The export's open format: NDJSON, one JSON object per line, readable
//! with `zstd -d | jq` and loadable with any bulk tool.
//!
//! ```text
//! {"vertice_search_export":{"format":1,"flavour":"opensearch","version":"2.19.6"}}
//! {"pipeline":{"id":"…","body":{…}}}              ingest pipelines
//! {"component_template":{"name":"…","body":{…}}}  then index and legacy templates
//! {"index":{"name":"orders","settings":{…},"mappings":{…},"aliases":{…}}}
//! {"_index":"orders","_id":"1","_routing":"eu","_source":{…}}   every document
//! {"index_end":{"name":"orders","documents":2,"content_digest":"…"}}
//! {"end":{"indices":1,"documents":2}}
//! ```
//!
//! Every definition comes before the first document, so a restore creates
//! every index before it loads any; each index's documents are contiguous
//! and closed by its `index_end`, so a restore checks an index complete
//! before it makes it visible. Pure: no I/O.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// The manifest's artifact format.
pub const FORMAT: &str = "search-export-ndjson";
/// The export format's version (the first line's `format`).
pub const VERSION: u32 = 1;

/// What an export cannot carry (the manifest says so).
pub const NOT_KEPT: &[&str] = &[
    "_seq_no, _primary_term and _version (a restore writes every document anew)",
    "fields that are not in _source (stored-only fields, copy_to targets, runtime fields' values)",
    "the indices' shard allocation, ILM / ISM policies and closed indices",
    "data streams as such (their backing indices are not selected by patterns)",
    "security objects (users, roles, API keys) and cluster settings",
];

/// A line that is not a document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Meta {
    VerticeSearchExport(Header),
    Pipeline(Named),
    ComponentTemplate(Named),
    IndexTemplate(Named),
    LegacyTemplate(Named),
    Index(IndexDefinition),
    IndexEnd(IndexEnd),
    End(End),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    pub format: u32,
    pub flavour: String,
    pub version: String,
}

/// A pipeline (`id`) or template (`name`) and its definition as the
/// cluster's GET gave it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Named {
    #[serde(alias = "id")]
    pub name: String,
    pub body: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexDefinition {
    pub name: String,
    /// Flat settings (`index.number_of_shards`), without those the cluster
    /// generates ([`portable_settings`]).
    pub settings: Map<String, Value>,
    pub mappings: Value,
    #[serde(default)]
    pub aliases: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEnd {
    pub name: String,
    pub documents: u64,
    pub content_digest: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct End {
    pub indices: u64,
    pub documents: u64,
}

/// A document line, borrowing its `_source` as exported.
#[derive(Debug, Deserialize)]
pub struct Document<'a> {
    #[serde(rename = "_index")]
    pub index: String,
    #[serde(rename = "_id")]
    pub id: String,
    #[serde(rename = "_routing", default)]
    pub routing: Option<String>,
    #[serde(rename = "_source", borrow)]
    pub source: &'a RawValue,
}

/// One line of an export.
#[derive(Debug)]
pub enum Line<'a> {
    Document(Document<'a>),
    Meta(Meta),
}

/// Reads one line (without its newline).
pub fn parse_line(line: &[u8]) -> std::result::Result<Line<'_>, String> {
    // Documents are nearly every line: they start with `{"_index"`.
    if line.starts_with(b"{\"_index\"") {
        return serde_json::from_slice(line)
            .map(Line::Document)
            .map_err(|e| format!("a document line is not valid: {e}"));
    }
    serde_json::from_slice(line)
        .map(Line::Meta)
        .map_err(|e| format!("a line is neither a document nor a known definition: {e}"))
}

/// Writes a definition line.
pub fn meta_line(meta: &Meta, out: &mut Vec<u8>) {
    // A derived Serialize of plain JSON values cannot fail.
    if serde_json::to_writer(&mut *out, meta).is_ok() {
        out.push(b'\n');
    }
}

/// The bytes a document's `_source` is exported as: the cluster's own
/// bytes (the digest then holds through a restore, which indexes these
/// bytes, and a read back), line breaks made spaces so it fits on one
/// line. JSON allows a raw line break only between tokens, where a space
/// means the same: every value, number and key order stays as it was.
pub fn source_bytes(raw: &RawValue) -> std::borrow::Cow<'_, str> {
    let text = raw.get();
    // memchr: a `contains` of two chars goes a character at a time, and
    // this runs over every byte of every document.
    if memchr::memchr2(b'\n', b'\r', text.as_bytes()).is_none() {
        return std::borrow::Cow::Borrowed(text);
    }
    std::borrow::Cow::Owned(text.replace(['\n', '\r'], " "))
}

/// Writes a document line; `source` as [`source_bytes`] gave it.
pub fn document_line(
    index: &str,
    id: &str,
    routing: Option<&str>,
    source: &str,
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(b"{\"_index\":");
    push_json_string(index, out);
    out.extend_from_slice(b",\"_id\":");
    push_json_string(id, out);
    if let Some(routing) = routing {
        out.extend_from_slice(b",\"_routing\":");
        push_json_string(routing, out);
    }
    out.extend_from_slice(b",\"_source\":");
    out.extend_from_slice(source.as_bytes());
    out.extend_from_slice(b"}\n");
}

fn push_json_string(s: &str, out: &mut Vec<u8>) {
    // Serializing a &str cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// The order-independent digest of a set of documents: each document's
/// SHA-256 added up modulo 2^256, and their count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ContentDigest {
    sum: [u64; 4],
    pub documents: u64,
}

impl ContentDigest {
    pub fn add(&mut self, id: &str, routing: Option<&str>, source: &str) {
        let mut hash = Sha256::new();
        hash.update(id.len().to_be_bytes());
        hash.update(id.as_bytes());
        match routing {
            Some(r) => {
                hash.update([1]);
                hash.update(r.len().to_be_bytes());
                hash.update(r.as_bytes());
            }
            None => hash.update([0]),
        }
        hash.update(source.as_bytes());
        add_modulo(&mut self.sum, &hash.finalize().into());
        self.documents += 1;
    }

    /// The digest of a set that `other` adds to this one.
    pub fn merge(&mut self, other: &ContentDigest) {
        let mut bytes = [0u8; 32];
        for (chunk, limb) in bytes.rchunks_mut(8).zip(other.sum) {
            chunk.copy_from_slice(&limb.to_be_bytes());
        }
        add_modulo(&mut self.sum, &bytes);
        self.documents += other.documents;
    }

    pub fn hex(&self) -> String {
        self.sum.iter().rev().map(|l| format!("{l:016x}")).collect()
    }
}

/// `sum += hash` modulo 2^256; `sum`'s limb 0 is the least significant,
/// `hash` is big-endian.
fn add_modulo(sum: &mut [u64; 4], hash: &[u8; 32]) {
    let mut carry = 0u128;
    for (limb, chunk) in sum.iter_mut().zip(hash.rchunks(8)) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let total = *limb as u128 + u64::from_be_bytes(word) as u128 + carry;
        *limb = total as u64;
        carry = total >> 64;
    }
}

/// Settings the cluster generates or that pin an index to its old home:
/// a restore that set them would fail or lie.
const GENERATED: &[&str] = &[
    "index.uuid",
    "index.creation_date",
    "index.creation_date_string",
    "index.provided_name",
    "index.history.uuid",
    "index.verified_before_close",
    "index.frozen",
    "index.search.throttled",
    "index.replication.type",
];
const GENERATED_PREFIXES: &[&str] = &[
    "index.version.",
    "index.routing.allocation.initial_recovery.",
    "index.resize.source.",
    "index.shrink.source.",
    "index.blocks.",
    // Elasticsearch sets the tier preference on every new index itself;
    // OpenSearch does not know it.
    "index.routing.allocation.include._tier_preference",
    "archived.",
];

/// The settings an export keeps of an index's flat settings.
pub fn portable_settings(flat: &Map<String, Value>) -> Map<String, Value> {
    flat.iter()
        .filter(|(key, _)| {
            !GENERATED.contains(&key.as_str())
                && !GENERATED_PREFIXES.iter().any(|p| key.starts_with(p))
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Settings a restore holds back while it loads and puts back after:
/// replicas (every document would be written twice), refresh (each
/// refresh makes segments), the ingest pipelines (the documents were
/// processed already) and write blocks.
pub const HELD_BACK: &[(&str, &str)] = &[
    ("index.number_of_replicas", "0"),
    ("index.refresh_interval", "-1"),
    ("index.default_pipeline", "_none"),
    ("index.final_pipeline", "_none"),
];

/// Why an index's settings make its `_source` synthetic (rebuilt from
/// doc values, arrays sorted and deduplicated): `index.mode` logsdb or
/// time_series, or `index.mapping.source.mode` other than stored.
pub fn settings_source_problem(flat: &Map<String, Value>) -> Option<String> {
    let text = |key: &str| flat.get(key).and_then(Value::as_str);
    if let Some(mode @ ("logsdb" | "time_series")) = text("index.mode") {
        return Some(format!(
            "its index.mode is {mode}, whose _source is synthetic (rebuilt, not the documents as written)"
        ));
    }
    match text("index.mapping.source.mode") {
        Some(mode) if mode != "stored" => Some(format!(
            "its index.mapping.source.mode is {mode}: the documents as written are not stored"
        )),
        _ => None,
    }
}

/// Why `mappings` keep a backup from holding every document's content:
/// `_source` disabled or filtered. `None`: the export is faithful.
pub fn source_problem(mappings: &Value) -> Option<String> {
    let source = &mappings["_source"];
    if source["enabled"] == Value::Bool(false) {
        return Some("its mapping disables _source, so its documents cannot be read back".into());
    }
    for key in ["includes", "excludes"] {
        if source[key].as_array().is_some_and(|a| !a.is_empty()) {
            return Some(format!(
                "its mapping filters _source ({key}), so the documents' full content cannot be read back"
            ));
        }
    }
    if source["mode"].as_str().is_some_and(|m| m != "stored") {
        return Some("its _source is synthetic or disabled (mode), not stored".into());
    }
    None
}

/// How many documents the next page asks for: about `target_bytes` of
/// documents, from what the last page's documents weighed, within what a
/// search allows.
pub fn next_page_size(
    current: usize,
    page_bytes: usize,
    hits: usize,
    target_bytes: usize,
) -> usize {
    const MAX: usize = 5000;
    if hits == 0 {
        return current.clamp(1, MAX);
    }
    let per_document = (page_bytes / hits).max(1);
    // Grow at most 4× a page, so one small page cannot ask for a huge one.
    (target_bytes / per_document).clamp(1, (current * 4).clamp(1, MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lines_round_trip_and_documents_keep_their_bytes() {
        let mut out = Vec::new();
        meta_line(
            &Meta::IndexEnd(IndexEnd {
                name: "orders".into(),
                documents: 2,
                content_digest: "ab".into(),
            }),
            &mut out,
        );
        document_line(
            "orders",
            "1\"x",
            Some("eu"),
            r#"{"a": 1.10, "t":"é"}"#,
            &mut out,
        );
        let text = String::from_utf8(out).expect("utf8");
        let mut lines = text.lines();
        match parse_line(lines.next().expect("meta").as_bytes()).expect("parse") {
            Line::Meta(Meta::IndexEnd(end)) => assert_eq!(end.documents, 2),
            other => panic!("{other:?}"),
        }
        let doc_line = lines.next().expect("doc");
        match parse_line(doc_line.as_bytes()).expect("parse") {
            Line::Document(d) => {
                assert_eq!((d.index.as_str(), d.id.as_str()), ("orders", "1\"x"));
                assert_eq!(d.routing.as_deref(), Some("eu"));
                assert_eq!(d.source.get(), r#"{"a": 1.10, "t":"é"}"#);
            }
            other => panic!("{other:?}"),
        }
        assert!(parse_line(b"{\"nonsense\":1}").is_err());
    }

    #[test]
    fn a_source_over_several_lines_is_compacted_onto_one() {
        let raw = RawValue::from_string(
            "{\r\n  \"b\": 1,\n  \"a\": 123456789012345678901234567890\n}".into(),
        )
        .expect("raw");
        // Key order and a number past 64 bits stay as they were.
        assert_eq!(
            source_bytes(&raw),
            r#"{    "b": 1,   "a": 123456789012345678901234567890 }"#
        );
        let raw = RawValue::from_string(r#"{"a": 1}"#.into()).expect("raw");
        assert!(matches!(source_bytes(&raw), std::borrow::Cow::Borrowed(_)));
    }

    #[test]
    fn the_digest_ignores_order_but_not_content() {
        let docs = [
            ("1", None, "{}"),
            ("2", Some("r"), r#"{"x":1}"#),
            ("3", None, "[]"),
        ];
        let mut forward = ContentDigest::default();
        for (id, r, s) in docs {
            forward.add(id, r, s);
        }
        let mut backward = ContentDigest::default();
        for (id, r, s) in docs.iter().rev() {
            backward.add(id, *r, s);
        }
        assert_eq!(forward, backward);
        assert_eq!(forward.hex().len(), 64);
        let mut changed = ContentDigest::default();
        changed.add("1", None, "{}");
        changed.add("2", None, r#"{"x":1}"#); // routing lost
        changed.add("3", None, "[]");
        assert_ne!(forward.hex(), changed.hex());
        let mut fewer = ContentDigest::default();
        fewer.add("1", None, "{}");
        assert_ne!(fewer.hex(), forward.hex());
    }

    #[test]
    fn the_sum_carries_between_limbs_and_wraps() {
        let mut one = [0u8; 32];
        one[31] = 1;
        let mut sum = [u64::MAX, u64::MAX, u64::MAX, 0];
        add_modulo(&mut sum, &one);
        assert_eq!(sum, [0, 0, 0, 1]);
        let mut sum = [u64::MAX; 4];
        add_modulo(&mut sum, &one);
        assert_eq!(sum, [0; 4]);
        let mut a = ContentDigest::default();
        a.add("1", None, "{}");
        let mut b = ContentDigest::default();
        b.add("2", None, "{}");
        let mut both = ContentDigest::default();
        both.add("2", None, "{}");
        both.add("1", None, "{}");
        a.merge(&b);
        assert_eq!(a, both);
    }

    #[test]
    fn generated_settings_are_left_out() {
        let flat = json!({
            "index.number_of_shards": "3", "index.uuid": "u", "index.creation_date": "1",
            "index.version.created": "7", "index.provided_name": "x",
            "index.routing.allocation.include._tier_preference": "data_content",
            "index.analysis.analyzer.folded.type": "custom", "index.blocks.write": "true",
        });
        let kept = portable_settings(flat.as_object().expect("map"));
        let keys: Vec<&str> = kept.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            vec![
                "index.analysis.analyzer.folded.type",
                "index.number_of_shards"
            ]
        );
    }

    #[test]
    fn disabled_or_filtered_source_is_named() {
        assert!(source_problem(&json!({"_source": {"enabled": false}})).is_some());
        assert!(source_problem(&json!({"_source": {"excludes": ["secret"]}})).is_some());
        assert!(source_problem(&json!({"_source": {"mode": "synthetic"}})).is_some());
        assert!(source_problem(&json!({"properties": {}})).is_none());
        assert!(source_problem(&json!({"_source": {"includes": []}})).is_none());
    }

    #[test]
    fn synthetic_source_by_setting_is_named() {
        let flat = |k: &str, v: &str| json!({ k: v }).as_object().cloned().expect("map");
        assert!(settings_source_problem(&flat("index.mode", "logsdb")).is_some());
        assert!(settings_source_problem(&flat("index.mode", "time_series")).is_some());
        assert!(settings_source_problem(&flat("index.mode", "standard")).is_none());
        assert!(settings_source_problem(&flat("index.mapping.source.mode", "synthetic")).is_some());
        assert!(settings_source_problem(&flat("index.mapping.source.mode", "stored")).is_none());
    }

    #[test]
    fn pages_follow_document_size() {
        let mib = 1 << 20;
        // 1 KiB documents: grow toward 8 MiB, at most 4× at a time.
        assert_eq!(next_page_size(100, 100 * 1024, 100, 8 * mib), 400);
        assert_eq!(next_page_size(4000, 4000 * 1024, 4000, 8 * mib), 5000);
        // 4 MiB documents: two a page.
        assert_eq!(next_page_size(100, 400 * mib, 100, 8 * mib), 2);
        // 20 MiB documents: one at a time.
        assert_eq!(next_page_size(2, 40 * mib, 2, 8 * mib), 1);
        assert_eq!(next_page_size(7, 0, 0, 8 * mib), 7);
    }
}
