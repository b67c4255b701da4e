//! A streaming reader of RDB files that yields each key with its value in the
//! serialized form `RESTORE` takes, its expiry and its eviction hints.
//!
//! Values are not decoded, only delimited: the bytes of a value are copied
//! verbatim into a DUMP payload, so every encoding Redis writes (listpacks,
//! quicklists, intsets, streams, module values) restores exactly.

use std::io::{self, Read};

use super::checksum::payload_crc;
use super::lzf;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RdbEvent {
    SelectDb(u64),
    Entry(Entry),
    /// A function library (Redis 7): its source, for `FUNCTION LOAD`.
    Function(Vec<u8>),
    /// Module auxiliary data, which has no command to restore it.
    SkippedModuleAux,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: Vec<u8>,
    /// Type byte and value, exactly as in the RDB (without version and CRC).
    pub value: Vec<u8>,
    pub expire_at_ms: Option<i64>,
    pub idle_seconds: Option<u64>,
    pub lfu_freq: Option<u8>,
}

impl Entry {
    /// The DUMP payload RESTORE expects: value, RDB version, CRC64.
    pub fn dump_payload(&self, rdb_version: u16) -> Vec<u8> {
        let mut payload = Vec::with_capacity(self.value.len() + 10);
        payload.extend_from_slice(&self.value);
        payload.extend_from_slice(&rdb_version.to_le_bytes());
        let crc = payload_crc(&payload);
        payload.extend_from_slice(&crc.to_le_bytes());
        payload
    }

    pub fn type_name(&self) -> &'static str {
        type_name(self.value.first().copied().unwrap_or(255))
    }
}

pub fn type_name(t: u8) -> &'static str {
    match t {
        0 => "string",
        1 | 10 | 14 | 18 => "list",
        2 | 11 | 20 => "set",
        3 | 5 | 12 | 17 => "zset",
        4 | 9 | 13 | 16 | 22..=25 => "hash",
        6 | 7 => "module",
        15 | 19 | 21 => "stream",
        _ => "unknown",
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RdbError {
    #[error("reading the RDB: {0}")]
    Io(#[from] io::Error),
    #[error("malformed RDB: {0}")]
    Format(String),
    #[error("the RDB holds {0}, which this agent cannot restore into a running instance; restore it as a file (--to file:///data/dump.rdb) instead")]
    Unsupported(String),
}

type Result<T> = std::result::Result<T, RdbError>;

fn bad(msg: impl Into<String>) -> RdbError {
    RdbError::Format(msg.into())
}

/// Copies what is read into `captured` while `capturing` is on.
struct Capture<R> {
    inner: R,
    capturing: bool,
    captured: Vec<u8>,
}

impl<R: Read> Read for Capture<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if self.capturing {
            self.captured.extend_from_slice(&buf[..n]);
        }
        Ok(n)
    }
}

pub struct RdbReader<R> {
    input: Capture<R>,
    version: u16,
    finished: bool,
}

enum Len {
    Plain(u64),
    /// A specially encoded string: 0 int8, 1 int16, 2 int32, 3 LZF.
    Encoded(u8),
}

impl<R: Read> RdbReader<R> {
    pub fn new(input: R) -> Result<Self> {
        let mut reader = RdbReader {
            input: Capture {
                inner: input,
                capturing: false,
                captured: Vec::new(),
            },
            version: 0,
            finished: false,
        };
        let mut magic = [0u8; 9];
        reader.input.read_exact(&mut magic)?;
        if &magic[..5] != b"REDIS" {
            return Err(bad("missing REDIS header"));
        }
        let version: u16 = std::str::from_utf8(&magic[5..])
            .ok()
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| bad("unreadable RDB version"))?;
        if !(1..=12).contains(&version) {
            return Err(RdbError::Unsupported(format!(
                "RDB format version {version}"
            )));
        }
        reader.version = version;
        Ok(reader)
    }

    pub fn version(&self) -> u16 {
        self.version
    }

    /// The next event, or `None` after the EOF opcode.
    pub fn next_event(&mut self) -> Result<Option<RdbEvent>> {
        let mut expire_at_ms = None;
        let mut idle_seconds = None;
        let mut lfu_freq = None;
        loop {
            if self.finished {
                return Ok(None);
            }
            let opcode = self.u8()?;
            match opcode {
                0xFF => {
                    self.finished = true;
                    return Ok(None);
                }
                0xFE => return Ok(Some(RdbEvent::SelectDb(self.plain_len()?))),
                0xFD => expire_at_ms = Some(i64::from(u32::from_le_bytes(self.array()?)) * 1000),
                0xFC => expire_at_ms = Some(i64::from_le_bytes(self.array()?)),
                0xFB => {
                    self.plain_len()?;
                    self.plain_len()?;
                }
                0xFA => {
                    self.skip_string()?;
                    self.skip_string()?;
                }
                0xF9 => lfu_freq = Some(self.u8()?),
                0xF8 => idle_seconds = Some(self.plain_len()?),
                0xF7 => {
                    self.plain_len()?; // module id
                    self.plain_len()?; // when opcode
                    self.plain_len()?; // when
                    self.skip_module_opcodes()?;
                    return Ok(Some(RdbEvent::SkippedModuleAux));
                }
                0xF6 => {
                    return Err(RdbError::Unsupported(
                        "functions saved by a Redis 7.0 release candidate".into(),
                    ))
                }
                0xF5 => return Ok(Some(RdbEvent::Function(self.string()?))),
                0xF4 => {
                    // Slot info (cluster): slot, keys, expiring keys.
                    self.plain_len()?;
                    self.plain_len()?;
                    self.plain_len()?;
                }
                value_type => {
                    let key = self.string()?;
                    self.input.capturing = true;
                    self.input.captured.clear();
                    self.input.captured.push(value_type);
                    let skipped = self.skip_value(value_type);
                    self.input.capturing = false;
                    skipped.map_err(|e| match e {
                        RdbError::Format(m) => {
                            bad(format!("key {}: {m}", String::from_utf8_lossy(&key)))
                        }
                        other => other,
                    })?;
                    let value = std::mem::take(&mut self.input.captured);
                    return Ok(Some(RdbEvent::Entry(Entry {
                        key,
                        value,
                        expire_at_ms,
                        idle_seconds,
                        lfu_freq,
                    })));
                }
            }
        }
    }

    fn skip_value(&mut self, t: u8) -> Result<()> {
        match t {
            0 | 9..=13 | 16 | 17 | 20 | 23 => self.skip_string(),
            1 | 2 | 14 => self.repeat(|r| r.skip_string()),
            3 => self.repeat(|r| {
                r.skip_string()?;
                r.skip_text_double()
            }),
            4 => self.repeat(|r| {
                r.skip_string()?;
                r.skip_string()
            }),
            5 => self.repeat(|r| {
                r.skip_string()?;
                r.skip(8)
            }),
            7 => {
                self.plain_len()?;
                self.skip_module_opcodes()
            }
            18 => self.repeat(|r| {
                r.plain_len()?; // container kind
                r.skip_string()
            }),
            15 | 19 | 21 => self.skip_stream(t),
            22 | 24 => {
                if t == 24 {
                    self.skip(8)?; // earliest field expiry
                }
                self.repeat(|r| {
                    r.plain_len()?; // field TTL
                    r.skip_string()?;
                    r.skip_string()
                })
            }
            25 => {
                self.skip(8)?;
                self.skip_string()
            }
            6 => Err(RdbError::Unsupported(
                "a module value from a Redis 4.0 release candidate".into(),
            )),
            other => Err(RdbError::Unsupported(format!(
                "value type {other} (written by a newer Redis)"
            ))),
        }
    }

    fn skip_stream(&mut self, t: u8) -> Result<()> {
        self.repeat(|r| {
            r.skip_string()?; // master entry id
            r.skip_string() // listpack
        })?;
        self.plain_len()?; // length
        self.plain_len()?; // last id ms
        self.plain_len()?; // last id seq
        if t >= 19 {
            for _ in 0..5 {
                self.plain_len()?; // first id, max deleted id, entries added
            }
        }
        self.repeat(|r| {
            r.skip_string()?; // group name
            r.plain_len()?;
            r.plain_len()?; // last delivered id
            if t >= 19 {
                r.plain_len()?; // entries read
            }
            r.repeat(|r| r.skip(16 + 8).and_then(|_| r.plain_len().map(|_| ())))?; // PEL with delivery info
            r.repeat(|r| {
                r.skip_string()?; // consumer name
                r.skip(8)?; // seen time
                if t >= 21 {
                    r.skip(8)?; // active time
                }
                r.repeat(|r| r.skip(16)) // consumer PEL ids
            })
        })
    }

    fn skip_module_opcodes(&mut self) -> Result<()> {
        loop {
            match self.plain_len()? {
                0 => return Ok(()),
                1 | 2 => {
                    self.plain_len()?;
                }
                3 => self.skip(4)?,
                4 => self.skip(8)?,
                5 => self.skip_string()?,
                other => return Err(bad(format!("unknown module opcode {other}"))),
            }
        }
    }

    fn repeat(&mut self, mut each: impl FnMut(&mut Self) -> Result<()>) -> Result<()> {
        let n = self.plain_len()?;
        for _ in 0..n {
            each(self)?;
        }
        Ok(())
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.array::<1>()?[0])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut buf = [0u8; N];
        self.input.read_exact(&mut buf).map_err(eof_is_truncation)?;
        Ok(buf)
    }

    fn skip(&mut self, n: u64) -> Result<()> {
        let copied = io::copy(&mut (&mut self.input).take(n), &mut io::sink())?;
        if copied != n {
            return Err(bad("truncated"));
        }
        Ok(())
    }

    fn len(&mut self) -> Result<Len> {
        let first = self.u8()?;
        Ok(match first >> 6 {
            0 => Len::Plain(u64::from(first & 0x3f)),
            1 => Len::Plain((u64::from(first & 0x3f) << 8) | u64::from(self.u8()?)),
            2 => match first {
                0x80 => Len::Plain(u64::from(u32::from_be_bytes(self.array()?))),
                0x81 => Len::Plain(u64::from_be_bytes(self.array()?)),
                _ => return Err(bad(format!("invalid length prefix {first:#x}"))),
            },
            _ => Len::Encoded(first & 0x3f),
        })
    }

    fn plain_len(&mut self) -> Result<u64> {
        match self.len()? {
            Len::Plain(n) => Ok(n),
            Len::Encoded(_) => Err(bad("expected a length, found an encoded value")),
        }
    }

    fn skip_string(&mut self) -> Result<()> {
        match self.len()? {
            Len::Plain(n) => self.skip(n),
            Len::Encoded(0) => self.skip(1),
            Len::Encoded(1) => self.skip(2),
            Len::Encoded(2) => self.skip(4),
            Len::Encoded(3) => {
                let compressed = self.plain_len()?;
                self.plain_len()?;
                self.skip(compressed)
            }
            Len::Encoded(e) => Err(bad(format!("unknown string encoding {e}"))),
        }
    }

    fn string(&mut self) -> Result<Vec<u8>> {
        match self.len()? {
            Len::Plain(n) => {
                let mut buf = Vec::new();
                (&mut self.input).take(n).read_to_end(&mut buf)?;
                if buf.len() as u64 != n {
                    return Err(bad("truncated string"));
                }
                Ok(buf)
            }
            Len::Encoded(0) => Ok((self.u8()? as i8).to_string().into_bytes()),
            Len::Encoded(1) => Ok(i16::from_le_bytes(self.array()?).to_string().into_bytes()),
            Len::Encoded(2) => Ok(i32::from_le_bytes(self.array()?).to_string().into_bytes()),
            Len::Encoded(3) => {
                let compressed = self.plain_len()?;
                let plain = self.plain_len()?;
                let mut buf = Vec::new();
                (&mut self.input).take(compressed).read_to_end(&mut buf)?;
                lzf::decompress(
                    &buf,
                    usize::try_from(plain).map_err(|_| bad("string too long"))?,
                )
                .map_err(bad)
            }
            Len::Encoded(e) => Err(bad(format!("unknown string encoding {e}"))),
        }
    }

    /// Scores in the oldest zset encoding: a length byte, then ASCII (253-255
    /// stand for NaN, +inf, -inf).
    fn skip_text_double(&mut self) -> Result<()> {
        let len = self.u8()?;
        if len < 253 {
            self.skip(u64::from(len))?;
        }
        Ok(())
    }
}

fn eof_is_truncation(e: io::Error) -> RdbError {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        bad("the file ends in the middle of a record")
    } else {
        RdbError::Io(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rdb(body: &[u8]) -> Vec<u8> {
        let mut data = b"REDIS0011".to_vec();
        data.extend_from_slice(body);
        data.push(0xFF);
        data.extend_from_slice(&[0; 8]);
        data
    }

    fn events(data: &[u8]) -> Vec<RdbEvent> {
        let mut reader = RdbReader::new(data).expect("header");
        let mut out = Vec::new();
        while let Some(e) = reader.next_event().expect("event") {
            out.push(e);
        }
        out
    }

    #[test]
    fn reads_keys_values_expiries_and_aux_fields() {
        let mut body = Vec::new();
        body.extend_from_slice(b"\xfa\x09redis-ver\x057.2.4");
        body.extend_from_slice(b"\xfe\x00\xfb\x02\x01");
        // A string with an integer-encoded key.
        body.extend_from_slice(b"\x00\xc0\x2a\x05hello");
        // A set (type 2) of two members, expiring at 1000 ms.
        body.extend_from_slice(b"\xfc");
        body.extend_from_slice(&1000i64.to_le_bytes());
        body.extend_from_slice(b"\x02\x03set\x02\x01a\x01b");
        let got = events(&rdb(&body));
        assert_eq!(got[0], RdbEvent::SelectDb(0));
        assert_eq!(
            got[1],
            RdbEvent::Entry(Entry {
                key: b"42".to_vec(),
                value: b"\x00\x05hello".to_vec(),
                expire_at_ms: None,
                idle_seconds: None,
                lfu_freq: None
            })
        );
        let RdbEvent::Entry(set) = &got[2] else {
            panic!("expected an entry")
        };
        assert_eq!(set.key, b"set");
        assert_eq!(set.value, b"\x02\x02\x01a\x01b");
        assert_eq!(set.expire_at_ms, Some(1000));
        assert_eq!(set.type_name(), "set");
        assert_eq!(got.len(), 3);
    }

    #[test]
    fn dump_payload_carries_version_and_crc() {
        let entry = Entry {
            key: b"k".to_vec(),
            value: b"\x00\x01v".to_vec(),
            expire_at_ms: None,
            idle_seconds: None,
            lfu_freq: None,
        };
        let payload = entry.dump_payload(11);
        assert_eq!(&payload[..5], b"\x00\x01v\x0b\x00");
        assert_eq!(
            u64::from_le_bytes(payload[5..].try_into().expect("8 bytes")),
            payload_crc(&payload[..5])
        );
    }

    #[test]
    fn truncated_and_unknown_input_fails_clearly() {
        let mut reader = RdbReader::new(&b"REDIS0011\x00\x03ke"[..]).expect("header");
        assert!(reader.next_event().is_err());
        let mut reader = RdbReader::new(&b"REDIS0011\x63\x01k\x00"[..]).expect("header");
        assert!(matches!(reader.next_event(), Err(RdbError::Unsupported(_))));
        assert!(RdbReader::new(&b"PGDMP0011"[..]).is_err());
    }
}
