//! Reads the header of a `pg_dump` custom-format archive, to record the server
//! and `pg_dump` versions in the manifest and to check the stream really is
//! such an archive.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveHeader {
    pub archive_version: (u8, u8, u8),
    pub database: Option<String>,
    pub server_version: Option<String>,
    pub pg_dump_version: Option<String>,
}

pub fn parse_header(head: &[u8]) -> Result<ArchiveHeader, String> {
    let mut r = Cursor { data: head, pos: 0 };
    if r.bytes(5)? != b"PGDMP" {
        return Err("the stream does not start with a pg_dump custom-format header (PGDMP)".into());
    }
    let version = (r.byte()?, r.byte()?, r.byte()?);
    let int_size = r.byte()? as usize;
    let _off_size = r.byte()?;
    let _format = r.byte()?;
    if !(1..=8).contains(&int_size) {
        return Err(format!(
            "archive header has an implausible integer size {int_size}"
        ));
    }
    // Archive 1.15 (PostgreSQL 16) stores the compression algorithm as one
    // byte; older archives store the level as an integer.
    if (version.0, version.1) >= (1, 15) {
        r.byte()?;
    } else {
        r.int(int_size)?;
    }
    for _ in 0..7 {
        r.int(int_size)?; // creation time: sec, min, hour, mday, mon, year, isdst
    }
    let database = r.string(int_size)?;
    let server_version = r.string(int_size)?;
    let pg_dump_version = r.string(int_size)?;
    Ok(ArchiveHeader {
        archive_version: version,
        database,
        server_version,
        pg_dump_version,
    })
}

struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.data.len())
            .ok_or("archive header is truncated")?;
        let out = &self.data[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn byte(&mut self) -> Result<u8, String> {
        Ok(self.bytes(1)?[0])
    }

    /// pg_dump's WriteInt: a sign byte, then `size` bytes little-endian.
    fn int(&mut self, size: usize) -> Result<i64, String> {
        let negative = self.byte()? != 0;
        let mut value: i64 = 0;
        for (i, b) in self.bytes(size)?.iter().enumerate() {
            value |= i64::from(*b) << (8 * i);
        }
        Ok(if negative { -value } else { value })
    }

    fn string(&mut self, int_size: usize) -> Result<Option<String>, String> {
        let len = self.int(int_size)?;
        if len < 0 {
            return Ok(None);
        }
        let bytes = self.bytes(len as usize)?;
        Ok(Some(String::from_utf8_lossy(bytes).into_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn int(v: i64) -> Vec<u8> {
        let mut out = vec![u8::from(v < 0)];
        out.extend_from_slice(&(v.unsigned_abs() as u32).to_le_bytes());
        out
    }

    fn string(s: &str) -> Vec<u8> {
        let mut out = int(s.len() as i64);
        out.extend_from_slice(s.as_bytes());
        out
    }

    fn header(version: (u8, u8, u8)) -> Vec<u8> {
        let mut h = b"PGDMP".to_vec();
        h.extend_from_slice(&[version.0, version.1, version.2, 4, 8, 1]);
        if version.1 >= 15 {
            h.push(0);
        } else {
            h.extend(int(0));
        }
        for v in [5, 4, 3, 27, 10, 126, 0] {
            h.extend(int(v));
        }
        h.extend(string("sales"));
        h.extend(string("15.18 (Debian 15.18-0+deb12u1)"));
        h.extend(string("15.18 (Debian 15.18-0+deb12u1)"));
        h.extend_from_slice(b"rest of the archive");
        h
    }

    #[test]
    fn reads_versions_from_old_and_new_archives() {
        for v in [(1, 14, 0), (1, 16, 0)] {
            let parsed = parse_header(&header(v)).expect("header");
            assert_eq!(parsed.archive_version, v);
            assert_eq!(parsed.database.as_deref(), Some("sales"));
            assert_eq!(
                parsed.server_version.as_deref(),
                Some("15.18 (Debian 15.18-0+deb12u1)")
            );
        }
    }

    #[test]
    fn rejects_other_streams() {
        assert!(parse_header(b"REDIS0011").is_err());
        assert!(parse_header(&header((1, 14, 0))[..20]).is_err());
    }
}
