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
    /// Appends the record as one JSON line: the bytes serde_json writes
    /// for it (see `line`).
    pub fn write_line(&self, out: &mut Vec<u8>) {
        line::write(self, out);
    }

    /// Reads one line (without its newline); the topic and header names
    /// may borrow from it, the decoded bytes from `scratch` (cleared
    /// first), so a reader reusing both allocates little per record.
    pub fn parse_line<'a>(line: &'a [u8], scratch: &'a mut Vec<u8>) -> Result<Record<'a>, String> {
        if let Some(record) = line::read(line, scratch) {
            return Ok(record);
        }
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

/// The hand-written line writer and reader: the same bytes serde_json
/// writes for a [`Record`] (the tests compare them), without its per-byte
/// string escaping of base64 text. Reading takes the layout `write_line`
/// writes and leaves anything else to serde_json, so every line reads as
/// it did.
mod line {
    use std::borrow::Cow;
    use std::ops::Range;

    use super::{Headers, Record, TimestampType};

    pub fn write(record: &Record<'_>, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"topic\":");
        string(out, &record.topic);
        out.extend_from_slice(b",\"partition\":");
        int(out, i64::from(record.partition));
        out.extend_from_slice(b",\"offset\":");
        int(out, record.offset);
        out.extend_from_slice(b",\"timestamp\":");
        match record.timestamp {
            None => out.extend_from_slice(b"null"),
            Some(t) => int(out, t),
        }
        out.extend_from_slice(match record.timestamp_type {
            None => b",\"timestamp_type\":null,\"key\":".as_slice(),
            Some(TimestampType::Create) => b",\"timestamp_type\":\"create\",\"key\":",
            Some(TimestampType::LogAppend) => b",\"timestamp_type\":\"log_append\",\"key\":",
        });
        bytes(out, record.key.as_deref());
        out.extend_from_slice(b",\"value\":");
        bytes(out, record.value.as_deref());
        out.extend_from_slice(b",\"headers\":[");
        for (i, (name, value)) in record.headers.iter().enumerate() {
            out.extend_from_slice(if i == 0 { b"[" } else { b",[" });
            string(out, name);
            out.push(b',');
            bytes(out, value.as_deref());
            out.push(b']');
        }
        out.extend_from_slice(b"]}\n");
    }

    /// A JSON string as serde_json escapes it: only `"`, `\` and control
    /// characters are; those rare strings are left to serde_json itself.
    fn string(out: &mut Vec<u8>, s: &str) {
        if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
            out.push(b'"');
            out.extend_from_slice(s.as_bytes());
            out.push(b'"');
        } else {
            // Writing a string into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *out, s);
        }
    }

    fn int(out: &mut Vec<u8>, n: i64) {
        let mut digits = [0u8; 20];
        let mut at = digits.len();
        let mut rest = n.unsigned_abs();
        loop {
            at -= 1;
            digits[at] = b'0' + (rest % 10) as u8;
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        if n < 0 {
            out.push(b'-');
        }
        out.extend_from_slice(&digits[at..]);
    }

    fn bytes(out: &mut Vec<u8>, b: Option<&[u8]>) {
        match b {
            None => out.extend_from_slice(b"null"),
            Some(b) => {
                out.push(b'"');
                base64_simd::STANDARD.encode_append(b, out);
                out.push(b'"');
            }
        }
    }

    /// Reads a line laid out as `write` writes it; `None` for anything
    /// else (escapes, whitespace, bad base64…), which serde_json then reads
    /// or refuses with its own message.
    pub fn read<'a>(line: &'a [u8], scratch: &'a mut Vec<u8>) -> Option<Record<'a>> {
        scratch.clear();
        let mut c = Cursor {
            s: line,
            at: 0,
            scratch: &mut *scratch,
        };
        c.lit(b"{\"topic\":")?;
        let topic = c.string()?;
        c.lit(b",\"partition\":")?;
        let partition = i32::try_from(c.int()?).ok()?;
        c.lit(b",\"offset\":")?;
        let offset = c.int()?;
        c.lit(b",\"timestamp\":")?;
        let timestamp = if c.lit(b"null").is_some() {
            None
        } else {
            Some(c.int()?)
        };
        c.lit(b",\"timestamp_type\":")?;
        let timestamp_type = if c.lit(b"null").is_some() {
            None
        } else if c.lit(b"\"create\"").is_some() {
            Some(TimestampType::Create)
        } else {
            c.lit(b"\"log_append\"")?;
            Some(TimestampType::LogAppend)
        };
        c.lit(b",\"key\":")?;
        let key = c.bytes()?;
        c.lit(b",\"value\":")?;
        let value = c.bytes()?;
        c.lit(b",\"headers\":[")?;
        let mut names = Vec::new();
        if c.lit(b"]").is_none() {
            loop {
                c.lit(b"[")?;
                let name = c.string()?;
                c.lit(b",")?;
                let value = c.bytes()?;
                c.lit(b"]")?;
                names.push((name, value));
                if c.lit(b"]").is_some() {
                    break;
                }
                c.lit(b",")?;
            }
        }
        c.lit(b"}")?;
        if c.at != line.len() {
            return None;
        }
        let data: &'a [u8] = scratch;
        let part = |r: Option<Range<usize>>| r.and_then(|r| data.get(r)).map(Cow::Borrowed);
        let headers: Headers<'a> = names
            .into_iter()
            .map(|(name, value)| (Cow::Borrowed(name), part(value)))
            .collect();
        Some(Record {
            topic: Cow::Borrowed(topic),
            partition,
            offset,
            timestamp,
            timestamp_type,
            key: part(key),
            value: part(value),
            headers,
        })
    }

    struct Cursor<'a, 's> {
        s: &'a [u8],
        at: usize,
        /// Where base64 text is decoded to.
        scratch: &'s mut Vec<u8>,
    }

    impl<'a> Cursor<'a, '_> {
        fn lit(&mut self, expected: &[u8]) -> Option<()> {
            let rest = self.s.get(self.at..)?;
            if rest.starts_with(expected) {
                self.at += expected.len();
                Some(())
            } else {
                None
            }
        }

        /// The text of a string up to the next quote, unchecked.
        fn raw(&mut self) -> Option<&'a [u8]> {
            self.lit(b"\"")?;
            let rest = self.s.get(self.at..)?;
            let len = memchr::memchr(b'"', rest)?;
            self.at += len + 1;
            rest.get(..len)
        }

        /// A string without escapes.
        fn string(&mut self) -> Option<&'a str> {
            let text = self.raw()?;
            if text.iter().any(|&b| b < 0x20 || b == b'\\') {
                return None;
            }
            std::str::from_utf8(text).ok()
        }

        /// An integer as serde_json reads one into an i64: no leading
        /// zeros, no `-0`, in range.
        fn int(&mut self) -> Option<i64> {
            let negative = self.lit(b"-").is_some();
            let rest = self.s.get(self.at..)?;
            let len = rest.iter().take_while(|b| b.is_ascii_digit()).count();
            let digits = rest.get(..len)?;
            // serde_json reads `-0` as a float, which no field takes.
            if digits.is_empty() || (digits[0] == b'0' && (digits.len() > 1 || negative)) {
                return None;
            }
            let mut n: i64 = 0;
            for &d in digits {
                let d = i64::from(d - b'0');
                n = n.checked_mul(10)?;
                n = if negative {
                    n.checked_sub(d)?
                } else {
                    n.checked_add(d)?
                };
            }
            self.at += len;
            Some(n)
        }

        /// Null, or base64 decoded onto the scratch: where it lies there.
        fn bytes(&mut self) -> Option<Option<Range<usize>>> {
            if self.lit(b"null").is_some() {
                return Some(None);
            }
            // Base64 has no escapes: a backslash or control character is
            // refused by the decoder, and the line goes to serde_json.
            let text = self.raw()?;
            let start = self.scratch.len();
            base64_simd::STANDARD
                .decode_append(text, &mut *self.scratch)
                .ok()?;
            Some(Some(start..self.scratch.len()))
        }
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
        let mut scratch = Vec::new();
        let back = Record::parse_line(&out[..out.len() - 1], &mut scratch).expect("parse");
        assert_eq!(back, sample());
    }

    /// Records serde_json writes with escapes, nulls and every base64
    /// tail; `write_line` must write the very same bytes.
    fn tricky() -> Vec<Record<'static>> {
        let bytes = |n: usize| Some(Cow::Owned((0..n).map(|i| (i * 37 + n) as u8).collect()));
        let mut records = Vec::new();
        for n in 0..70 {
            records.push(Record {
                topic: "t".into(),
                partition: n as i32,
                offset: n as i64,
                timestamp: Some(n as i64 * 1_000_003),
                timestamp_type: Some(TimestampType::LogAppend),
                key: bytes(n),
                value: bytes(n * 7),
                headers: vec![("h".into(), bytes(n))],
            });
        }
        let odd_names = [
            "",
            "tr\"ace",
            "back\\slash",
            "tab\tnew\nline\u{1}\u{1f}",
            "del\u{7f}",
            "ünïcödé ✓ 🦀",
            "/slash",
        ];
        records.push(Record {
            topic: "odd \"topic\"\n ✓".into(),
            partition: -1,
            offset: i64::MAX,
            timestamp: Some(i64::MIN),
            timestamp_type: None,
            key: None,
            value: None,
            headers: odd_names
                .iter()
                .map(|n| {
                    (
                        Cow::Owned(n.to_string()),
                        Some(Cow::Owned(vec![0xff, 0xfe, 0])),
                    )
                })
                .chain([("dup".into(), None), ("dup".into(), None)])
                .collect(),
        });
        records.push(Record {
            topic: "".into(),
            partition: i32::MAX,
            offset: 0,
            timestamp: Some(-1),
            timestamp_type: Some(TimestampType::Create),
            key: Some(Cow::Owned(Vec::new())),
            value: Some(Cow::Owned(Vec::new())),
            headers: Vec::new(),
        });
        records.push(Record {
            timestamp: None,
            timestamp_type: None,
            partition: i32::MIN,
            offset: i64::MIN,
            ..sample()
        });
        records.push(sample());
        records
    }

    #[test]
    fn lines_are_the_bytes_serde_json_writes() {
        for record in tricky() {
            let mut expected = serde_json::to_vec(&record).expect("serde");
            expected.push(b'\n');
            let mut out = b"before".to_vec();
            record.write_line(&mut out);
            assert_eq!(
                String::from_utf8_lossy(&out[6..]),
                String::from_utf8_lossy(&expected)
            );
            assert_eq!(&out[6..], &expected[..]);
        }
    }

    #[test]
    fn lines_read_as_serde_json_reads_them() {
        let serde = |l: &[u8]| serde_json::from_slice::<Record<'_>>(l).map(Record::into_owned);
        let mut lines = Vec::new();
        for record in tricky() {
            let mut out = Vec::new();
            record.write_line(&mut out);
            out.pop();
            let mut scratch = Vec::new();
            let back = Record::parse_line(&out, &mut scratch).expect("parse");
            assert_eq!(back, record);
            lines.push(out);
        }
        // What the agent writes takes the fast way.
        assert!(line::read(&lines[3], &mut Vec::new()).is_some());
        // Escapes, whitespace, other orders, bad numbers and bad base64:
        // the same outcome as serde_json's, whichever way it was read.
        let odd: [&[u8]; 22] = [
            br#"{"topic":"a\u0062","partition":0,"offset":1,"timestamp":null,"timestamp_type":null,"key":"YQ==","value":null,"headers":[]}"#,
            br#"{"topic":"a","partition":0,"offset":1,"timestamp":null,"timestamp_type":null,"key":"Y\u0051==","value":null,"headers":[]}"#,
            br#"{ "topic":"a","partition":0,"offset":1,"timestamp":null,"timestamp_type":null,"key":"YQ==","value":null,"headers":[]}"#,
            br#"{"topic":"a","partition":0,"offset":1,"timestamp":null,"timestamp_type":null,"key":"YQ==","value":null,"headers":[]} "#,
            br#"{"partition":0,"topic":"a","offset":1,"timestamp":null,"timestamp_type":null,"key":"YQ==","value":null,"headers":[]}"#,
            br#"{"topic":"a","partition":00,"offset":1,"timestamp":null,"timestamp_type":null,"key":"YQ==","value":null,"headers":[]}"#,
            br#"{"topic":"a","partition":-0,"offset":-0,"timestamp":-0,"timestamp_type":null,"key":"YQ==","value":null,"headers":[]}"#,
            br#"{"topic":"a","partition":2147483648,"offset":1,"timestamp":null,"timestamp_type":null,"key":"YQ==","value":null,"headers":[]}"#,
            br#"{"topic":"a","partition":0,"offset":9223372036854775808,"timestamp":null,"timestamp_type":null,"key":"YQ==","value":null,"headers":[]}"#,
            br#"{"topic":"a","partition":0,"offset":1.0,"timestamp":null,"timestamp_type":null,"key":"YQ==","value":null,"headers":[]}"#,
            br#"{"topic":"a","partition":0,"offset":1,"timestamp":1e3,"timestamp_type":null,"key":"YQ==","value":null,"headers":[]}"#,
            br#"{"topic":"a","partition":0,"offset":1,"timestamp":null,"timestamp_type":"other","key":"YQ==","value":null,"headers":[]}"#,
            br#"{"topic":"a","partition":0,"offset":1,"timestamp":null,"timestamp_type":null,"key":"YR==","value":null,"headers":[]}"#,
            br#"{"topic":"a","partition":0,"offset":1,"timestamp":null,"timestamp_type":null,"key":"YQ=","value":null,"headers":[]}"#,
            br#"{"topic":"a","partition":0,"offset":1,"timestamp":null,"timestamp_type":null,"key":"YQ","value":null,"headers":[]}"#,
            br#"{"topic":"a","partition":0,"offset":1,"timestamp":null,"timestamp_type":null,"key":"Y===","value":null,"headers":[]}"#,
            br#"{"topic":"a","partition":0,"offset":1,"timestamp":null,"timestamp_type":null,"key":"YQ==YQ==","value":null,"headers":[]}"#,
            br#"{"topic":"a","partition":0,"offset":1,"timestamp":null,"timestamp_type":null,"key":"YWJj\n","value":null,"headers":[]}"#,
            br#"{"topic":"a","partition":0,"offset":1,"timestamp":null,"timestamp_type":null,"key":"YQ==","value":null,"headers":[["x"]]}"#,
            br#"{"topic":"a","partition":0,"offset":1,"timestamp":null,"timestamp_type":null,"key":"YQ==","value":null,"headers":[["x",null],]}"#,
            br#"{"topic":"a","partition":0,"offset":1,"timestamp":null,"timestamp_type":null,"key":"YQ==","value":null,"headers":[["x",null]],"extra":1}"#,
            b"{\"topic\":\"\xff\",\"partition\":0,\"offset\":1,\"timestamp\":null,\"timestamp_type\":null,\"key\":null,\"value\":null,\"headers\":[]}",
        ];
        for l in odd {
            let text = String::from_utf8_lossy(l);
            match (Record::parse_line(l, &mut Vec::new()), serde(l)) {
                (Ok(fast), Ok(slow)) => assert_eq!(fast, slow, "{text}"),
                (Err(fast), Err(slow)) => {
                    assert_eq!(fast, format!("not a Kafka record line: {slow}"), "{text}")
                }
                (fast, slow) => panic!("{text}: {fast:?} but serde_json: {slow:?}"),
            }
        }
        // Cut anywhere, a line reads (or fails) as serde_json has it.
        for l in &lines {
            for end in 0..l.len() {
                let cut = &l[..end];
                assert_eq!(
                    line::read(cut, &mut Vec::new()).is_some(),
                    serde(cut).is_ok()
                );
            }
        }
    }

    #[test]
    fn the_documented_example_reads() {
        let line = br#"{"topic":"orders","partition":0,"offset":42,"timestamp":1733400000000,"timestamp_type":"create","key":"aGVsbG8=","value":null,"headers":[["trace","YWJj"],["trace",null]]}"#;
        let mut scratch = Vec::new();
        let r = Record::parse_line(line, &mut scratch).expect("parse");
        assert_eq!(r.key.as_deref(), Some(&b"hello"[..]));
        assert_eq!(r.headers.len(), 2);
        assert!(Record::parse_line(b"{\"topic\":1}", &mut Vec::new()).is_err());
        assert!(Record::parse_line(br#"{"topic":"t","partition":0,"offset":1,"timestamp":null,"timestamp_type":null,"key":"%%","value":null,"headers":[]}"#, &mut Vec::new()).is_err());
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
