//! A reader of Smile, the binary JSON in which Elasticsearch and
//! OpenSearch write a snapshot repository's metadata blobs (a shard's
//! `snap-<uuid>.dat` names the data blobs the snapshot needs). Only
//! reading, into `serde_json::Value`; binary values and big numbers, which
//! those blobs use only for hashes, become `null`. The format is Jackson's
//! (header `:)\n`, then tokens; keys and short strings may refer back to
//! ones seen earlier).

use serde_json::{Map, Number, Value};

/// Back-reference tables hold at most this many entries, then start over.
const SHARED_TABLE: usize = 1024;
/// Longer value strings are never shared (Jackson's limit).
const SHARED_MAX_BYTES: usize = 65;
/// Nesting beyond this is refused (a blob is not trusted input).
const MAX_DEPTH: usize = 200;

/// Decodes one Smile document (header included).
pub fn decode(bytes: &[u8]) -> Result<Value, String> {
    if bytes.len() < 4 || &bytes[..3] != b":)\n" {
        return Err("not a Smile document (no `:)\\n` header)".into());
    }
    let flags = bytes[3];
    let mut reader = Reader {
        bytes,
        at: 4,
        names: Vec::new(),
        values: Vec::new(),
        share_names: flags & 0x01 != 0,
        share_values: flags & 0x02 != 0,
    };
    reader.value(0)
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    names: Vec<String>,
    values: Vec<String>,
    share_names: bool,
    share_values: bool,
}

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, String> {
        let b = *self
            .bytes
            .get(self.at)
            .ok_or_else(|| format!("Smile document ends early at byte {}", self.at))?;
        self.at += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| format!("Smile document ends early at byte {}", self.at))?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn text(&mut self, n: usize) -> Result<String, String> {
        let at = self.at;
        let raw = self.take(n)?;
        String::from_utf8(raw.to_vec()).map_err(|_| format!("invalid UTF-8 at byte {at}"))
    }

    /// Text up to the end-of-string marker 0xFC.
    fn terminated(&mut self) -> Result<String, String> {
        let rest = &self.bytes[self.at..];
        let len = rest
            .iter()
            .position(|&b| b == 0xFC)
            .ok_or("long Smile string without its end marker")?;
        let s = self.text(len)?;
        self.at += 1;
        Ok(s)
    }

    /// Smile's variable-length unsigned int: 7 bits a byte, the last byte
    /// marked by its high bit and carrying 6.
    fn vint(&mut self) -> Result<u64, String> {
        let mut value: u64 = 0;
        for _ in 0..10 {
            let b = self.byte()?;
            if b & 0x80 != 0 {
                return Ok((value << 6) | u64::from(b & 0x3F));
            }
            value = (value << 7) | u64::from(b);
        }
        Err(format!("Smile number too long at byte {}", self.at))
    }

    fn zigzag(&mut self) -> Result<i64, String> {
        let n = self.vint()?;
        Ok(((n >> 1) as i64) ^ -((n & 1) as i64))
    }

    /// Skips `n` raw bytes encoded 7 bits a byte.
    fn skip_seven_bit(&mut self, n: u64) -> Result<(), String> {
        let n = usize::try_from(n).map_err(|_| "Smile binary too long")?;
        let encoded = (n / 7)
            .checked_mul(8)
            .and_then(|e| e.checked_add(if n % 7 > 0 { n % 7 + 1 } else { 0 }))
            .ok_or("Smile binary too long")?;
        self.take(encoded).map(|_| ())
    }

    fn remember(table: &mut Vec<String>, s: &str) {
        if table.len() >= SHARED_TABLE {
            table.clear();
        }
        table.push(s.to_string());
    }

    fn shared_value(&self, index: usize) -> Result<Value, String> {
        self.values
            .get(index)
            .map(|s| Value::String(s.clone()))
            .ok_or_else(|| format!("Smile refers to shared string {index}, never seen"))
    }

    fn short_string(&mut self, len: usize) -> Result<Value, String> {
        let s = self.text(len)?;
        if self.share_values && len <= SHARED_MAX_BYTES {
            Self::remember(&mut self.values, &s);
        }
        Ok(Value::String(s))
    }

    fn value(&mut self, depth: usize) -> Result<Value, String> {
        if depth > MAX_DEPTH {
            return Err("Smile document nested too deeply".into());
        }
        let at = self.at;
        let b = self.byte()?;
        match b {
            // 0x00 is no token; 0x01–0x1F refer to shared values 0–30.
            0x01..=0x1F => self.shared_value(usize::from(b) - 1),
            0x20 => Ok(Value::String(String::new())),
            0x21 => Ok(Value::Null),
            0x22 => Ok(Value::Bool(false)),
            0x23 => Ok(Value::Bool(true)),
            0x24 | 0x25 => Ok(Value::Number(self.zigzag()?.into())),
            0x26 => {
                let n = self.vint()?;
                self.skip_seven_bit(n)?;
                Ok(Value::Null)
            }
            0x28 => {
                let mut bits: u32 = 0;
                for _ in 0..5 {
                    bits = (bits << 7) | u32::from(self.byte()? & 0x7F);
                }
                Ok(number(f64::from(f32::from_bits(bits))))
            }
            0x29 => {
                let mut bits: u64 = 0;
                for _ in 0..10 {
                    bits = (bits << 7) | u64::from(self.byte()? & 0x7F);
                }
                Ok(number(f64::from_bits(bits)))
            }
            0x2A => {
                self.zigzag()?;
                let n = self.vint()?;
                self.skip_seven_bit(n)?;
                Ok(Value::Null)
            }
            0x40..=0x5F => self.short_string(usize::from(b & 0x1F) + 1),
            0x60..=0x7F => self.short_string(usize::from(b & 0x1F) + 33),
            0x80..=0x9F => self.short_string(usize::from(b & 0x1F) + 2),
            0xA0..=0xBF => self.short_string(usize::from(b & 0x1F) + 34),
            0xC0..=0xDF => {
                let n = i64::from(b & 0x1F);
                Ok(Value::Number(((n >> 1) ^ -(n & 1)).into()))
            }
            0xE0 | 0xE4 => Ok(Value::String(self.terminated()?)),
            0xE8 => {
                let n = self.vint()?;
                self.skip_seven_bit(n)?;
                Ok(Value::Null)
            }
            0xEC..=0xEF => {
                let index = (usize::from(b & 0x03) << 8) | usize::from(self.byte()?);
                self.shared_value(index)
            }
            0xF8 => {
                let mut items = Vec::new();
                loop {
                    if self.bytes.get(self.at) == Some(&0xF9) {
                        self.at += 1;
                        return Ok(Value::Array(items));
                    }
                    items.push(self.value(depth + 1)?);
                }
            }
            0xFA => self.object(depth),
            0xFD => {
                let n = usize::try_from(self.vint()?).map_err(|_| "Smile binary too long")?;
                self.take(n)?;
                Ok(Value::Null)
            }
            _ => Err(format!("unexpected Smile token 0x{b:02X} at byte {at}")),
        }
    }

    fn object(&mut self, depth: usize) -> Result<Value, String> {
        let mut map = Map::new();
        loop {
            let at = self.at;
            let b = self.byte()?;
            let key = match b {
                0xFB => return Ok(Value::Object(map)),
                0x20 => String::new(),
                0x30..=0x33 => {
                    let index = (usize::from(b & 0x03) << 8) | usize::from(self.byte()?);
                    self.shared_name(index)?
                }
                0x34 => {
                    let name = self.terminated()?;
                    self.remember_name(&name);
                    name
                }
                0x40..=0x7F => self.shared_name(usize::from(b & 0x3F))?,
                0x80..=0xBF => {
                    let name = self.text(usize::from(b & 0x3F) + 1)?;
                    self.remember_name(&name);
                    name
                }
                0xC0..=0xF7 => {
                    let name = self.text(usize::from(b & 0x3F) + 2)?;
                    self.remember_name(&name);
                    name
                }
                _ => return Err(format!("unexpected Smile key token 0x{b:02X} at byte {at}")),
            };
            let value = self.value(depth + 1)?;
            map.insert(key, value);
        }
    }

    fn remember_name(&mut self, name: &str) {
        if self.share_names {
            Self::remember(&mut self.names, name);
        }
    }

    fn shared_name(&self, index: usize) -> Result<String, String> {
        self.names
            .get(index)
            .cloned()
            .ok_or_else(|| format!("Smile refers to shared name {index}, never seen"))
    }
}

fn number(f: f64) -> Value {
    Number::from_f64(f).map_or(Value::Null, Value::Number)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The start of `{"name":"snap","files":[{"name":"__a1","length":300,
    /// "part_size":-3},{"name":"v__b"` as Jackson writes it, shared names on.
    fn sample() -> Vec<u8> {
        let mut b = vec![b':', b')', b'\n', 0x01, 0xFA];
        b.push(0x80 + 3); // key "name" (4 bytes)
        b.extend_from_slice(b"name");
        b.push(0x40 + 3); // "snap": tiny ASCII, 4 bytes
        b.extend_from_slice(b"snap");
        b.push(0x80 + 4); // key "files"
        b.extend_from_slice(b"files");
        b.push(0xF8);
        b.push(0xFA);
        b.push(0x40); // shared name 0: "name"
        b.push(0x40 + 3);
        b.extend_from_slice(b"__a1");
        b.push(0x80 + 5); // key "length"
        b.extend_from_slice(b"length");
        // 300 as a zigzag int: 600 = 0b1001_011000 → 0x09, 0x80|0x18
        b.extend_from_slice(&[0x24, 0x09, 0x98]);
        b.push(0x80 + 8);
        b.extend_from_slice(b"part_size");
        b.push(0xC0 + 5); // small int -3
        b.push(0xFB);
        b.push(0xFA);
        b.push(0x40);
        b.push(0x40 + 3);
        b.extend_from_slice(b"v__b");
        b
    }

    #[test]
    fn reads_objects_arrays_numbers_and_shared_names() {
        let mut b = sample();
        // A raw binary value (a hash) under a new key, then the ends.
        b.push(0x80 + 8);
        b.extend_from_slice(b"meta_hash");
        b.extend_from_slice(&[0xFD, 0x83, 1, 2, 3]);
        b.extend_from_slice(&[0xFB, 0xF9]);
        b.push(0x80 + 1);
        b.extend_from_slice(b"ok");
        b.extend_from_slice(&[0x23, 0xFB]);
        assert_eq!(
            decode(&b).expect("a value"),
            json!({"name": "snap", "files": [
                {"name": "__a1", "length": 300, "part_size": -3},
                {"name": "v__b", "meta_hash": null}
            ], "ok": true})
        );
    }

    #[test]
    fn long_text_unicode_and_shared_values() {
        let mut b = vec![b':', b')', b'\n', 0x03, 0xFA];
        b.push(0x80);
        b.extend_from_slice(b"a");
        b.push(0x80); // tiny Unicode, 2 bytes
        b.extend_from_slice("é".as_bytes());
        b.push(0x80);
        b.extend_from_slice(b"b");
        b.push(0x01); // shared value 0: "é"
        b.push(0x80);
        b.extend_from_slice(b"c");
        b.push(0xE0);
        b.extend_from_slice(&[b'x'; 70]);
        b.push(0xFC);
        b.push(0x41); // shared name 1: "b" … as a key
        b.push(0x21);
        b.push(0xFB);
        assert_eq!(
            decode(&b).expect("a value"),
            json!({"a": "é", "b": null, "c": "x".repeat(70)})
        );
    }

    #[test]
    fn hostile_input_is_an_error_not_a_panic() {
        assert!(decode(b"{}").is_err());
        assert!(decode(b":)\n\x01\xFA\x85ab").is_err());
        assert!(
            decode(b":)\n\x01\xFA\x40\x21\xFB").is_err(),
            "unknown shared name"
        );
        assert!(decode(b":)\n\x01\x05").is_err(), "unknown shared value");
        assert!(decode(b":)\n\x03\x00").is_err(), "0x00 is no token");
        assert!(
            decode(b":)\n\x01\xE8\x3F\x7F\x7F\x7F\x7F\x7F\x7F\x7F\x7F\xBF").is_err(),
            "a binary length near u64::MAX"
        );
        let deep: Vec<u8> = b":)\n\x01"
            .iter()
            .copied()
            .chain(std::iter::repeat_n(0xF8, 500))
            .collect();
        assert!(decode(&deep).is_err());
        assert!(decode(b":)\n\x01\xE0abc").is_err(), "no end marker");
        assert!(decode(b":)\n\x01\xFD\x3F\x3F\x3F\x3F\x3F\x3F\x3F\x3F\x3F\x3F").is_err());
    }
}
