//! The open format of a Kafka backup: JSON Lines, one record per line, in
//! offset order within each partition (partitions follow each other,
//! topic by topic). The pipeline compresses (zstd) and may encrypt (age)
//! it, so `age -d … | zstd -d | jq` reads a backup without the agent:
//!
//! ```text
//! {"topic":"orders","partition":0,"offset":42,"timestamp":1733400000000,
//!  "timestamp_type":"create","key":"aGVsbG8=","value":null,
//!  "headers":[["trace","YWJj"],["trace",null]]}
//! ```
//!
//! `key`, `value` and header values are standard base64, `null` when the
//! record has none (a null key is not an empty one; a null value is a
//! tombstone). Headers keep their order, duplicates and nulls.
//!
//! The content hash of a partition (manifest `content_sha256`) is the
//! SHA-256 of every record's [`canonical`] encoding in offset order: it
//! leaves out the topic, partition and offset, which a restore changes, so
//! a drill can compare what it restored with what was backed up.

use std::borrow::Cow;

use base64::display::Base64Display;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

/// The artifact's `format` in the manifest.
pub const FORMAT: &str = "kafka-records-jsonl";

/// How the broker set a record's timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimestampType {
    Create,
    LogAppend,
}

/// A record's headers: names with values (or null), in order.
pub type Headers<'a> = Vec<(Cow<'a, str>, Option<Cow<'a, [u8]>>)>;

/// One record as it appears in a backup: borrowed when written, owned
/// when read back (`Cow`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record<'a> {
    pub topic: Cow<'a, str>,
    pub partition: i32,
    pub offset: i64,
    pub timestamp: Option<i64>,
    pub timestamp_type: Option<TimestampType>,
    #[serde(with = "base64_bytes")]
    pub key: Option<Cow<'a, [u8]>>,
    #[serde(with = "base64_bytes")]
    pub value: Option<Cow<'a, [u8]>>,
    #[serde(with = "base64_headers")]
    pub headers: Headers<'a>,
}

impl Record<'_> {
    /// Appends the record as one JSON line.
    pub fn write_line(&self, out: &mut Vec<u8>) {
        // Serializing plain strings, numbers and byte slices cannot fail.
        if serde_json::to_writer(&mut *out, self).is_ok() {
            out.push(b'\n');
        }
    }

    /// Reads one line (without its newline).
    pub fn parse_line(line: &[u8]) -> Result<Record<'static>, String> {
        serde_json::from_slice::<Record<'_>>(line)
            .map(Record::into_owned)
            .map_err(|e| format!("not a Kafka record line: {e}"))
    }

    fn into_owned(self) -> Record<'static> {
        let own = |b: Option<Cow<'_, [u8]>>| b.map(|b| Cow::Owned(b.into_owned()));
        Record {
            topic: Cow::Owned(self.topic.into_owned()),
            partition: self.partition,
            offset: self.offset,
            timestamp: self.timestamp,
            timestamp_type: self.timestamp_type,
            key: own(self.key),
            value: own(self.value),
            headers: self
                .headers
                .into_iter()
                .map(|(k, v)| (Cow::Owned(k.into_owned()), own(v)))
                .collect(),
        }
    }

    /// The bytes the broker counts against `max.message.bytes`, roughly:
    /// key, value and headers.
    pub fn size(&self) -> u64 {
        let len = |b: &Option<Cow<'_, [u8]>>| b.as_ref().map_or(0, |b| b.len()) as u64;
        len(&self.key)
            + len(&self.value)
            + self
                .headers
                .iter()
                .map(|(k, v)| k.len() as u64 + len(v))
                .sum::<u64>()
    }

    /// Feeds the record's canonical encoding into `hash`: what a restore
    /// keeps (key, value, timestamp, headers), length-prefixed so no two
    /// records encode alike.
    pub fn canonical(&self, hash: &mut Sha256) {
        fn bytes(hash: &mut Sha256, b: Option<&[u8]>) {
            match b {
                None => hash.update([0u8]),
                Some(b) => {
                    hash.update([1u8]);
                    hash.update((b.len() as u64).to_be_bytes());
                    hash.update(b);
                }
            }
        }
        bytes(hash, self.key.as_deref());
        bytes(hash, self.value.as_deref());
        match self.timestamp {
            None => hash.update([0u8]),
            Some(t) => {
                hash.update([1u8]);
                hash.update(t.to_be_bytes());
            }
        }
        hash.update((self.headers.len() as u64).to_be_bytes());
        for (name, value) in &self.headers {
            bytes(hash, Some(name.as_bytes()));
            bytes(hash, value.as_deref());
        }
    }
}

/// A partition's running content hash, count and extent.
#[derive(Debug, Clone, Default)]
pub struct PartitionDigest {
    hash: Sha256,
    pub records: u64,
    pub first_offset: Option<i64>,
    pub last_offset: Option<i64>,
    pub max_record_bytes: u64,
    /// The newest timestamp: the broker deletes a segment by it.
    pub newest_timestamp: Option<i64>,
}

impl PartitionDigest {
    pub fn add(&mut self, record: &Record<'_>) {
        record.canonical(&mut self.hash);
        self.records += 1;
        self.first_offset.get_or_insert(record.offset);
        self.last_offset = Some(record.offset);
        self.max_record_bytes = self.max_record_bytes.max(record.size());
        if let Some(t) = record.timestamp {
            self.newest_timestamp = Some(self.newest_timestamp.map_or(t, |n| n.max(t)));
        }
    }

    pub fn hex(&self) -> String {
        hex::encode(self.hash.clone().finalize())
    }
}

mod base64_bytes {
    use super::*;

    pub fn serialize<S: Serializer>(v: &Option<Cow<'_, [u8]>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            None => s.serialize_none(),
            Some(b) => s.collect_str(&Base64Display::new(b, &STANDARD)),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Cow<'static, [u8]>>, D::Error> {
        let text: Option<Cow<'de, str>> = Option::deserialize(d)?;
        text.map(|t| {
            STANDARD
                .decode(t.as_bytes())
                .map(Cow::Owned)
                .map_err(serde::de::Error::custom)
        })
        .transpose()
    }
}

mod base64_headers {
    use super::*;

    #[derive(Serialize, Deserialize)]
    struct Header<'a>(
        #[serde(borrow)] Cow<'a, str>,
        #[serde(with = "base64_bytes")] Option<Cow<'a, [u8]>>,
    );

    pub fn serialize<S: Serializer>(v: &Headers<'_>, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|(k, v)| Header(Cow::Borrowed(k), v.clone())))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Headers<'static>, D::Error> {
        let headers: Vec<Header<'de>> = Vec::deserialize(d)?;
        Ok(headers
            .into_iter()
            .map(|Header(k, v)| {
                (
                    Cow::Owned(k.into_owned()),
                    v.map(|v| Cow::Owned(v.into_owned())),
                )
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Record<'static> {
        Record {
            topic: "orders".into(),
            partition: 2,
            offset: 42,
            timestamp: Some(1_733_400_000_000),
            timestamp_type: Some(TimestampType::Create),
            key: Some(Cow::Owned(Vec::new())),
            value: None,
            headers: vec![
                ("trace".into(), Some(Cow::Owned(b"abc".to_vec()))),
                ("trace".into(), None),
                ("".into(), Some(Cow::Owned(vec![0, 255]))),
            ],
        }
    }

    #[test]
    fn a_line_round_trips_with_null_empty_and_duplicate_fields() {
        let mut out = Vec::new();
        sample().write_line(&mut out);
        assert_eq!(out.last(), Some(&b'\n'));
        let text = std::str::from_utf8(&out).expect("utf8");
        assert!(
            text.contains(r#""key":"""#) && text.contains(r#""value":null"#),
            "{text}"
        );
        assert!(
            text.contains(r#"["trace","YWJj"],["trace",null]"#),
            "{text}"
        );
        let back = Record::parse_line(&out[..out.len() - 1]).expect("parse");
        assert_eq!(back, sample());
    }

    #[test]
    fn the_documented_example_reads() {
        let line = br#"{"topic":"orders","partition":0,"offset":42,"timestamp":1733400000000,"timestamp_type":"create","key":"aGVsbG8=","value":null,"headers":[["trace","YWJj"],["trace",null]]}"#;
        let r = Record::parse_line(line).expect("parse");
        assert_eq!(r.key.as_deref(), Some(&b"hello"[..]));
        assert_eq!(r.headers.len(), 2);
        assert!(Record::parse_line(b"{\"topic\":1}").is_err());
        assert!(Record::parse_line(br#"{"topic":"t","partition":0,"offset":1,"timestamp":null,"timestamp_type":null,"key":"%%","value":null,"headers":[]}"#).is_err());
    }

    #[test]
    fn the_content_hash_ignores_place_but_not_content() {
        let digest = |records: &[Record<'_>]| {
            let mut d = PartitionDigest::default();
            records.iter().for_each(|r| d.add(r));
            d.hex()
        };
        let a = sample();
        let mut moved = sample();
        moved.topic = "elsewhere".into();
        moved.offset = 7;
        moved.partition = 0;
        assert_eq!(digest(std::slice::from_ref(&a)), digest(&[moved]));
        let mut null_key = sample();
        null_key.key = None;
        assert_ne!(digest(std::slice::from_ref(&a)), digest(&[null_key]));
        let mut one_header = sample();
        one_header.headers.pop();
        assert_ne!(digest(std::slice::from_ref(&a)), digest(&[one_header]));
        let mut later = sample();
        later.timestamp = Some(1);
        assert_ne!(digest(std::slice::from_ref(&a)), digest(&[later]));
        let mut b = sample();
        b.value = Some(Cow::Owned(b"x".to_vec()));
        assert_ne!(digest(&[a.clone(), b.clone()]), digest(&[b, a]));
    }
}
