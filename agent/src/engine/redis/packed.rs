//! The packed encodings inside RDB values — listpacks, and the ziplists of
//! RDBs before Redis 7 — decoded into their items. Only a list too large for
//! one RESTORE needs this: its later quicklist nodes are sent as RPUSH items.
//! Integers come back as the decimal text Redis itself would print.
//!
//! A node holding a large item (Redis puts an item of any size up to 1 GB
//! into a listpack node of its own) is read as a stream instead
//! ([`Items`]), so the item need not be held.

use std::io::{self, Read};

/// The items of a listpack.
pub fn listpack(lp: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let mut items = Vec::new();
    let mut at = 6; // total bytes (u32), item count (u16)
    loop {
        let b = byte(lp, at)?;
        let (item, len) = match b {
            0xFF => return Ok(items),
            _ if b & 0x80 == 0 => (int(b & 0x7f), 1),
            _ if b & 0xC0 == 0x80 => {
                let n = usize::from(b & 0x3f);
                (bytes(lp, at + 1, n)?, 1 + n)
            }
            _ if b & 0xE0 == 0xC0 => {
                let raw = (i64::from(b & 0x1f) << 8) | i64::from(byte(lp, at + 1)?);
                (int(signed(raw, 13)), 2)
            }
            _ if b & 0xF0 == 0xE0 => {
                let n = (usize::from(b & 0x0f) << 8) | usize::from(byte(lp, at + 1)?);
                (bytes(lp, at + 2, n)?, 2 + n)
            }
            0xF0 => {
                let n = usize::try_from(u32::from_le_bytes(array(lp, at + 1)?))
                    .map_err(|_| "listpack string too long")?;
                (bytes(lp, at + 5, n)?, 5 + n)
            }
            0xF1 => (int(i16::from_le_bytes(array(lp, at + 1)?)), 3),
            0xF2 => (int(int24(array(lp, at + 1)?)), 4),
            0xF3 => (int(i32::from_le_bytes(array(lp, at + 1)?)), 5),
            0xF4 => (int(i64::from_le_bytes(array(lp, at + 1)?)), 9),
            _ => return Err(format!("unknown listpack encoding {b:#04x}")),
        };
        items.push(item);
        at += len + backlen_size(len);
    }
}

/// Each listpack entry ends with its own length, in 1 to 5 bytes.
fn backlen_size(entry_len: usize) -> usize {
    match entry_len {
        0..=127 => 1,
        128..=16_382 => 2,
        16_383..=2_097_150 => 3,
        2_097_151..=268_435_454 => 4,
        _ => 5,
    }
}

/// The items of a ziplist.
pub fn ziplist(zl: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let mut items = Vec::new();
    let mut at = 10; // total bytes (u32), tail offset (u32), item count (u16)
    loop {
        // Each entry starts with the previous one's length: 1 byte, or 0xFE and 4.
        match byte(zl, at)? {
            0xFF => return Ok(items),
            0xFE => at += 5,
            _ => at += 1,
        }
        let b = byte(zl, at)?;
        let (item, len) = match b >> 6 {
            0 => {
                let n = usize::from(b & 0x3f);
                (bytes(zl, at + 1, n)?, 1 + n)
            }
            1 => {
                let n = (usize::from(b & 0x3f) << 8) | usize::from(byte(zl, at + 1)?);
                (bytes(zl, at + 2, n)?, 2 + n)
            }
            2 => {
                let n = usize::try_from(u32::from_be_bytes(array(zl, at + 1)?))
                    .map_err(|_| "ziplist string too long")?;
                (bytes(zl, at + 5, n)?, 5 + n)
            }
            _ => match b {
                0xC0 => (int(i16::from_le_bytes(array(zl, at + 1)?)), 3),
                0xD0 => (int(i32::from_le_bytes(array(zl, at + 1)?)), 5),
                0xE0 => (int(i64::from_le_bytes(array(zl, at + 1)?)), 9),
                0xF0 => (int(int24(array(zl, at + 1)?)), 4),
                0xFE => (int(i8::from_le_bytes(array(zl, at + 1)?)), 2),
                // 0 to 12, stored in the encoding byte itself.
                0xF1..=0xFD => (int(i64::from(b & 0x0f) - 1), 1),
                _ => return Err(format!("unknown ziplist encoding {b:#04x}")),
            },
        };
        items.push(item);
        at += len;
    }
}

/// One item of a packed list read as a stream.
#[derive(Debug, PartialEq, Eq)]
pub enum Item {
    Small(Vec<u8>),
    /// A string of this many bytes, larger than the bound: the caller reads
    /// them from [`Items::input`] before asking for the next item.
    Large(u64),
}

/// The items of a listpack or ziplist, read one at a time from `input`
/// (which yields exactly the packed list's bytes).
pub struct Items<R> {
    input: R,
    listpack: bool,
    started: bool,
    done: bool,
    /// Bytes to skip before the next entry: the back length of a listpack
    /// entry whose string the caller read.
    skip: u64,
}

impl<R: Read> Items<R> {
    pub fn new(input: R, listpack: bool) -> Self {
        Items {
            input,
            listpack,
            started: false,
            done: false,
            skip: 0,
        }
    }

    /// Where the bytes of an [`Item::Large`] are read from.
    pub fn input(&mut self) -> &mut R {
        &mut self.input
    }

    /// The next item, or `None` after the end marker (once the input is
    /// used up: a packed list never has bytes after it).
    pub fn next(&mut self, bound: u64) -> io::Result<Option<Item>> {
        if self.done {
            return Ok(None);
        }
        if !self.started {
            self.started = true;
            // Total bytes and item count (and, in a ziplist, the tail offset).
            self.skip = if self.listpack { 6 } else { 10 };
        }
        let skip = std::mem::take(&mut self.skip);
        if io::copy(&mut (&mut self.input).take(skip), &mut io::sink())? != skip {
            return Err(cut_short());
        }
        let item = if self.listpack {
            self.listpack_entry(bound)?
        } else {
            self.ziplist_entry(bound)?
        };
        if item.is_none() {
            self.done = true;
            if self.input.read(&mut [0])? != 0 {
                return Err(invalid("bytes after the end of a packed list".into()));
            }
        }
        Ok(item)
    }

    fn listpack_entry(&mut self, bound: u64) -> io::Result<Option<Item>> {
        let b = self.u8()?;
        // The encoding's size and the string length, or the integer.
        let (head, value) = match b {
            0xFF => return Ok(None),
            _ if b & 0x80 == 0 => (1, Err(i64::from(b & 0x7f))),
            _ if b & 0xC0 == 0x80 => (1, Ok(u64::from(b & 0x3f))),
            _ if b & 0xE0 == 0xC0 => {
                let raw = (i64::from(b & 0x1f) << 8) | i64::from(self.u8()?);
                (2, Err(signed(raw, 13)))
            }
            _ if b & 0xF0 == 0xE0 => (2, Ok((u64::from(b & 0x0f) << 8) | u64::from(self.u8()?))),
            0xF0 => (5, Ok(u64::from(u32::from_le_bytes(self.array()?)))),
            0xF1 => (3, Err(i64::from(i16::from_le_bytes(self.array()?)))),
            0xF2 => (4, Err(int24(self.array()?))),
            0xF3 => (5, Err(i64::from(i32::from_le_bytes(self.array()?)))),
            0xF4 => (9, Err(i64::from_le_bytes(self.array()?))),
            _ => return Err(invalid(format!("unknown listpack encoding {b:#04x}"))),
        };
        let entry = head + value.unwrap_or(0);
        self.skip = backlen_size(usize::try_from(entry).unwrap_or(usize::MAX)) as u64;
        self.item(value, bound).map(Some)
    }

    fn ziplist_entry(&mut self, bound: u64) -> io::Result<Option<Item>> {
        // The previous entry's length: 1 byte, or 0xFE and 4.
        match self.u8()? {
            0xFF => return Ok(None),
            0xFE => {
                self.array::<4>()?;
            }
            _ => {}
        }
        let b = self.u8()?;
        let value = match b >> 6 {
            0 => Ok(u64::from(b & 0x3f)),
            1 => Ok((u64::from(b & 0x3f) << 8) | u64::from(self.u8()?)),
            2 => Ok(u64::from(u32::from_be_bytes(self.array()?))),
            _ => Err(match b {
                0xC0 => i64::from(i16::from_le_bytes(self.array()?)),
                0xD0 => i64::from(i32::from_le_bytes(self.array()?)),
                0xE0 => i64::from_le_bytes(self.array()?),
                0xF0 => int24(self.array()?),
                0xFE => i64::from(i8::from_le_bytes(self.array()?)),
                0xF1..=0xFD => i64::from(b & 0x0f) - 1,
                _ => return Err(invalid(format!("unknown ziplist encoding {b:#04x}"))),
            }),
        };
        self.item(value, bound).map(Some)
    }

    /// A string of `Ok(len)` bytes (read unless larger than `bound`), or
    /// the integer `Err(value)`.
    fn item(&mut self, value: Result<u64, i64>, bound: u64) -> io::Result<Item> {
        match value {
            Err(n) => Ok(Item::Small(int(n))),
            Ok(len) if len > bound => Ok(Item::Large(len)),
            Ok(len) => {
                let mut s = Vec::new();
                (&mut self.input).take(len).read_to_end(&mut s)?;
                if s.len() as u64 != len {
                    return Err(cut_short());
                }
                Ok(Item::Small(s))
            }
        }
    }

    fn u8(&mut self) -> io::Result<u8> {
        Ok(self.array::<1>()?[0])
    }

    fn array<const N: usize>(&mut self) -> io::Result<[u8; N]> {
        let mut buf = [0; N];
        self.input.read_exact(&mut buf).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                cut_short()
            } else {
                e
            }
        })?;
        Ok(buf)
    }
}

fn cut_short() -> io::Error {
    invalid(truncated())
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

fn int(v: impl Into<i64>) -> Vec<u8> {
    v.into().to_string().into_bytes()
}

/// A two's-complement integer of `bits` bits, held in the low bits of `raw`.
fn signed(raw: i64, bits: u32) -> i64 {
    if raw >= 1 << (bits - 1) {
        raw - (1 << bits)
    } else {
        raw
    }
}

fn int24(b: [u8; 3]) -> i64 {
    signed(i64::from(u32::from_le_bytes([b[0], b[1], b[2], 0])), 24)
}

fn byte(data: &[u8], at: usize) -> Result<u8, String> {
    data.get(at).copied().ok_or_else(truncated)
}

fn bytes(data: &[u8], at: usize, n: usize) -> Result<Vec<u8>, String> {
    at.checked_add(n)
        .and_then(|end| data.get(at..end))
        .map(<[u8]>::to_vec)
        .ok_or_else(truncated)
}

fn array<const N: usize>(data: &[u8], at: usize) -> Result<[u8; N], String> {
    at.checked_add(N)
        .and_then(|end| data.get(at..end))
        .and_then(|s| s.try_into().ok())
        .ok_or_else(truncated)
}

fn truncated() -> String {
    "a packed list ends in the middle of an item".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A listpack of `entries` (encoding and data each), with the back
    /// lengths Redis writes.
    fn lp(entries: &[Vec<u8>]) -> Vec<u8> {
        let mut body = Vec::new();
        for e in entries {
            body.extend_from_slice(e);
            // 7 bits a byte, the first without the continuation bit.
            let l = e.len();
            let n = backlen_size(l);
            for i in (0..n).rev() {
                let group = ((l >> (7 * i)) & 127) as u8;
                body.push(if i == n - 1 { group } else { group | 128 });
            }
        }
        let mut out = ((body.len() + 7) as u32).to_le_bytes().to_vec();
        out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
        out.extend(body);
        out.push(0xFF);
        out
    }

    fn texts(items: &[Vec<u8>]) -> Vec<String> {
        items
            .iter()
            .map(|i| String::from_utf8_lossy(i).into_owned())
            .collect()
    }

    #[test]
    fn listpack_items_of_every_encoding() {
        let long = vec![b'y'; 200];
        let mut str12 = vec![0xE0, 200];
        str12.extend_from_slice(&long);
        let mut str32 = vec![0xF0];
        str32.extend_from_slice(&5000u32.to_le_bytes());
        str32.extend(vec![b'z'; 5000]);
        let items = listpack(&lp(&[
            vec![0x81, b'a'],                   // 6-bit string
            vec![0x05],                         // 7-bit unsigned
            vec![0xDF, 0xFF],                   // 13-bit: -1
            vec![0xC1, 0x2C],                   // 13-bit: 300
            vec![0xF1, 0x78, 0xEC],             // 16-bit: -5000
            vec![0xF2, 0x40, 0x42, 0x0F],       // 24-bit: 1000000
            vec![0xF2, 0x90, 0xEE, 0xFE],       // 24-bit: -70000
            vec![0xF3, 0x00, 0x00, 0x00, 0x80], // 32-bit: i32::MIN
            [&[0xF4][..], &i64::MAX.to_le_bytes()].concat(),
            str12,
            str32,
        ]))
        .expect("listpack");
        let mut want: Vec<String> = [
            "a",
            "5",
            "-1",
            "300",
            "-5000",
            "1000000",
            "-70000",
            "-2147483648",
            "9223372036854775807",
        ]
        .map(String::from)
        .to_vec();
        want.push("y".repeat(200));
        want.push("z".repeat(5000));
        assert_eq!(texts(&items), want);
    }

    #[test]
    fn ziplist_items_of_every_encoding() {
        let mut zl = vec![0; 10];
        let mut entry = |prev_len: usize, e: &[u8]| {
            if prev_len < 254 {
                zl.push(prev_len as u8);
            } else {
                zl.push(0xFE);
                zl.extend_from_slice(&(prev_len as u32).to_le_bytes());
            }
            zl.extend_from_slice(e);
        };
        let long = [&[0x40 | 1, 0x2C][..], &[b'q'; 300]].concat(); // 14-bit: 300
        entry(0, b"\x03abc");
        entry(5, &long);
        entry(300, b"\xf1"); // immediate 0
        entry(2, b"\xfd"); // immediate 12
        entry(2, b"\xfe\x80"); // int8 -128
        entry(3, b"\xc0\x39\x30"); // int16 12345
        entry(4, b"\xf0\xff\xff\xff"); // int24 -1
        entry(5, b"\xd0\x00\x00\x00\x80"); // int32 MIN
        entry(6, &[&[0xE0][..], &(-2i64).to_le_bytes()].concat());
        entry(10, &[&[0x80][..], &3u32.to_be_bytes(), b"xyz"].concat());
        zl.push(0xFF);
        let mut want: Vec<String> = vec!["abc".into(), "q".repeat(300)];
        want.extend(
            ["0", "12", "-128", "12345", "-1", "-2147483648", "-2", "xyz"].map(String::from),
        );
        assert_eq!(texts(&ziplist(&zl).expect("ziplist")), want);
    }

    /// Every item, a large one read from the input as the caller would.
    fn streamed(data: &[u8], listpack: bool, bound: u64) -> io::Result<Vec<Vec<u8>>> {
        let mut items = Items::new(data, listpack);
        let mut out = Vec::new();
        while let Some(item) = items.next(bound)? {
            out.push(match item {
                Item::Small(s) => s,
                Item::Large(n) => {
                    let mut s = vec![0; usize::try_from(n).expect("len")];
                    items.input().read_exact(&mut s)?;
                    s
                }
            });
        }
        Ok(out)
    }

    #[test]
    fn streamed_items_are_the_items_read_whole() {
        let mut big = vec![0xF0];
        big.extend_from_slice(&300_000u32.to_le_bytes());
        big.extend((0..300_000).map(|i| (i % 251) as u8));
        let mut str12 = vec![0xE0, 200];
        str12.extend_from_slice(&[b'y'; 200]);
        let lp = lp(&[
            vec![0x81, b'a'],
            big,
            vec![0xF1, 0x78, 0xEC],
            str12,
            vec![0x05],
        ]);
        let whole = listpack(&lp).expect("listpack");
        for bound in [0, 100, 1 << 20] {
            assert_eq!(
                streamed(&lp, true, bound).expect("streamed"),
                whole,
                "{bound}"
            );
        }
        let mut zl = vec![0; 10];
        zl.extend_from_slice(b"\x00\x03abc");
        zl.extend_from_slice(&[5, 0x80]);
        zl.extend_from_slice(&70_000u32.to_be_bytes());
        zl.extend(vec![b'q'; 70_000]);
        zl.extend_from_slice(&[0xFE, 0x76, 0x11, 0x01, 0x00, 0xF1, 0x06, 0xFE, 0x80, 0xFF]);
        let whole = ziplist(&zl).expect("ziplist");
        assert_eq!(whole.len(), 4);
        for bound in [0, 1 << 20] {
            assert_eq!(
                streamed(&zl, false, bound).expect("streamed"),
                whole,
                "{bound}"
            );
        }
        let mut trailing = lp.clone();
        trailing.push(0);
        assert!(streamed(&trailing, true, 0).is_err(), "bytes after the end");
        assert!(
            streamed(&lp[..lp.len() - 1], true, 0).is_err(),
            "no end marker"
        );
        assert!(
            streamed(&lp[..1000], true, 0).is_err(),
            "cut in a large item"
        );
    }

    #[test]
    fn damaged_packed_lists_fail_instead_of_reading_past_their_end() {
        assert!(listpack(&[0; 6]).is_err(), "no end marker");
        assert!(listpack(&lp(&[vec![0x85, b'a']])[..9]).is_err());
        assert!(listpack(&[0, 0, 0, 0, 0, 0, 0xF0, 0xFF, 0xFF, 0xFF, 0xFF]).is_err());
        assert!(listpack(&[0, 0, 0, 0, 0, 0, 0xF5, 0xFF]).is_err());
        assert!(ziplist(&[0; 10]).is_err());
        assert!(ziplist(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xC5]).is_err());
    }
}
