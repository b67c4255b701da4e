//! LZF decompression, for the compressed strings (keys among them) inside RDB
//! files. Values are passed to RESTORE as they are; a string that must be
//! sent as a command argument instead (an element of an aggregate restored
//! in parts) is decoded, a large one as it streams past ([`Decoder`]).

use std::io::{self, Read};

pub fn decompress(input: &[u8], expected_len: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(expected_len);
    let mut i = 0;
    while i < input.len() {
        let ctrl = input[i] as usize;
        i += 1;
        if ctrl < 32 {
            // A literal run of ctrl + 1 bytes.
            let len = ctrl + 1;
            let run = input
                .get(i..i + len)
                .ok_or("LZF literal runs past the input")?;
            out.extend_from_slice(run);
            i += len;
        } else {
            // A back reference: length in the top 3 bits (7 means one more byte).
            let mut len = ctrl >> 5;
            if len == 7 {
                len += *input.get(i).ok_or("LZF length byte missing")? as usize;
                i += 1;
            }
            len += 2;
            let low = *input.get(i).ok_or("LZF offset byte missing")? as usize;
            i += 1;
            let back = ((ctrl & 0x1f) << 8) + low + 1;
            let start = out
                .len()
                .checked_sub(back)
                .ok_or("LZF reference before the start")?;
            // Byte by byte: references may overlap the bytes they produce.
            for k in 0..len {
                let b = out[start + k];
                out.push(b);
            }
        }
        if out.len() > expected_len {
            return Err("LZF output longer than declared".into());
        }
    }
    if out.len() != expected_len {
        return Err(format!(
            "LZF output is {} bytes, {} declared",
            out.len(),
            expected_len
        ));
    }
    Ok(out)
}

/// How far back an LZF reference reaches: 13 bits of offset, plus one.
const WINDOW: usize = 8192;
/// Decoded bytes made ready per refill.
const FILL: usize = 64 << 10;

/// Decodes an LZF string as it is read, holding only what references can
/// still reach: memory stays near 140 KiB whatever the string's size.
pub struct Decoder<R> {
    /// Exactly the compressed bytes.
    input: R,
    inbuf: Vec<u8>,
    at: usize,
    end: usize,
    /// The last [`WINDOW`] bytes already returned, then those not yet.
    out: Vec<u8>,
    start: usize,
    /// Decoded bytes the header announced and not yet produced.
    left: u64,
}

impl<R: Read> Decoder<R> {
    /// `input` yields the compressed bytes and ends with them; `len` is the
    /// decoded length the string's header announced.
    pub fn new(input: R, len: u64) -> Self {
        Decoder {
            input,
            inbuf: vec![0; FILL],
            at: 0,
            end: 0,
            out: Vec::with_capacity(WINDOW + FILL + 300),
            start: 0,
            left: len,
        }
    }

    fn byte(&mut self) -> io::Result<Option<u8>> {
        while self.at == self.end {
            match self.input.read(&mut self.inbuf) {
                Ok(0) => return Ok(None),
                Ok(n) => (self.at, self.end) = (0, n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.at += 1;
        Ok(Some(self.inbuf[self.at - 1]))
    }

    fn need(&mut self) -> io::Result<u8> {
        self.byte()?
            .ok_or_else(|| invalid("LZF data ends before its declared length"))
    }

    /// Decodes up to [`FILL`] more bytes; at the end, checks the input is
    /// used up too, so the RDB reader stays aligned.
    fn fill(&mut self) -> io::Result<()> {
        if self.start > WINDOW {
            self.out.drain(..self.start - WINDOW);
            self.start = WINDOW;
        }
        while self.out.len() - self.start < FILL && self.left > 0 {
            let ctrl = usize::from(self.need()?);
            let len = if ctrl < 32 {
                let len = ctrl + 1;
                check_room(len, self.left)?;
                for _ in 0..len {
                    let b = self.need()?;
                    self.out.push(b);
                }
                len
            } else {
                let mut len = ctrl >> 5;
                if len == 7 {
                    len += usize::from(self.need()?);
                }
                len += 2;
                let back = ((ctrl & 0x1f) << 8) + usize::from(self.need()?) + 1;
                check_room(len, self.left)?;
                let from = self
                    .out
                    .len()
                    .checked_sub(back)
                    .ok_or_else(|| invalid("LZF reference before the start"))?;
                // Byte by byte: references may overlap the bytes they produce.
                for k in 0..len {
                    let b = self.out[from + k];
                    self.out.push(b);
                }
                len
            };
            self.left -= len as u64;
        }
        if self.left == 0 && self.byte()?.is_some() {
            return Err(invalid("LZF data longer than its declared length"));
        }
        Ok(())
    }
}

fn check_room(len: usize, left: u64) -> io::Result<()> {
    if len as u64 > left {
        return Err(invalid("LZF output longer than declared"));
    }
    Ok(())
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

impl<R: Read> Read for Decoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.start == self.out.len() {
            self.fill()?;
        }
        let ready = &self.out[self.start..];
        let n = ready.len().min(buf.len());
        buf[..n].copy_from_slice(&ready[..n]);
        self.start += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A random but valid LZF stream of literals and references reaching up
    /// to the whole window back, decoding to at least `len` bytes.
    fn random_lzf(seed: &mut u64, len: usize) -> (Vec<u8>, usize) {
        let mut next = |n: u64| {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            *seed % n
        };
        let mut data = Vec::new();
        let mut produced = 0;
        while produced < len {
            if produced < 32 || next(3) == 0 {
                let run = 1 + next(32) as usize;
                data.push((run - 1) as u8);
                data.extend((0..run).map(|_| next(256) as u8));
                produced += run;
            } else {
                let run = 3 + next(262) as usize;
                let back = 1 + next(produced.min(WINDOW) as u64) as usize;
                let off = back - 1;
                if run - 2 >= 7 {
                    data.push((7 << 5 | (off >> 8)) as u8);
                    data.push((run - 2 - 7) as u8);
                } else {
                    data.push(((run - 2) << 5 | (off >> 8)) as u8);
                }
                data.push(off as u8);
                produced += run;
            }
        }
        (data, produced)
    }

    #[test]
    fn streamed_decoding_matches_whole_decoding() {
        let mut seed = 0x2545_F491_4F6C_DD1D;
        for (len, read_size) in [(10, 1), (70_000, 7), (300_000, 4096), (1 << 20, 65_536)] {
            let (data, plain) = random_lzf(&mut seed, len);
            let whole = decompress(&data, plain).expect("valid");
            let mut decoder = Decoder::new(&data[..], plain as u64);
            let mut got = Vec::new();
            let mut buf = vec![0; read_size];
            loop {
                let n = decoder.read(&mut buf).expect("decodes");
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            assert!(got == whole, "{len} bytes read {read_size} at a time");
            assert!(decoder.out.capacity() < 100 << 10, "only a window is held");
        }
    }

    #[test]
    fn streamed_decoding_rejects_what_whole_decoding_rejects() {
        let mut sink = Vec::new();
        let mut decode = |input: &[u8], len: u64| {
            sink.clear();
            Decoder::new(input, len).read_to_end(&mut sink)
        };
        assert!(decode(&[5, b'a'], 6).is_err(), "literal past the input");
        assert!(decode(&[0x20, 5], 3).is_err(), "reference before the start");
        assert!(decode(&[0, b'a'], 2).is_err(), "shorter than declared");
        assert!(
            decode(&[0, b'a', 0, b'b'], 1).is_err(),
            "longer than declared"
        );
        assert!(decode(&[0, b'a', 7], 1).is_err(), "input left over");
        assert_eq!(
            decode(&[2, b'a', b'b', b'c', 7 << 5, 0, 2], 12).ok(),
            Some(12)
        );
    }

    #[test]
    fn decodes_literals_and_overlapping_references() {
        // "abcabcabcabc": literal "abc", then a 9-byte reference 3 back.
        let input = [2, b'a', b'b', b'c', (7 << 5), 0, 2];
        assert_eq!(decompress(&input, 12).expect("valid"), b"abcabcabcabc");
    }

    #[test]
    fn rejects_corrupt_input() {
        assert!(decompress(&[5, b'a'], 6).is_err());
        assert!(decompress(&[0x20, 5], 3).is_err());
        assert!(decompress(&[0, b'a'], 2).is_err());
    }
}
