//! LZF decompression, for the compressed strings (keys among them) inside RDB
//! files. Values are passed to RESTORE as they are; only keys need decoding.

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

#[cfg(test)]
mod tests {
    use super::*;

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
