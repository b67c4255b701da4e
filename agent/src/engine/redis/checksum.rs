//! RDB files end with the CRC64 (Jones polynomial, as Redis computes it) of
//! everything before it; DUMP payloads carry one too.

use crc::{Crc, Table, CRC_64_REDIS};

pub static CRC64: Crc<u64, Table<16>> = Crc::<u64, Table<16>>::new(&CRC_64_REDIS);

/// Checks a whole RDB as it streams past: the `REDIS` header and the
/// trailing CRC64 over everything before it.
pub struct Crc64Trailer {
    digest: crc::Digest<'static, u64, Table<16>>,
    /// The last 8 bytes seen: not yet known whether they are data or the trailer.
    pending: Vec<u8>,
    head: Vec<u8>,
    total: u64,
}

impl Default for Crc64Trailer {
    fn default() -> Self {
        Self::new()
    }
}

impl Crc64Trailer {
    pub fn new() -> Self {
        Crc64Trailer {
            digest: CRC64.digest(),
            pending: Vec::with_capacity(16),
            head: Vec::new(),
            total: 0,
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        self.total += data.len() as u64;
        if self.head.len() < 9 {
            let room = 9 - self.head.len();
            self.head.extend_from_slice(&data[..room.min(data.len())]);
        }
        if data.len() >= 8 {
            self.digest.update(&self.pending);
            self.digest.update(&data[..data.len() - 8]);
            self.pending.clear();
            self.pending.extend_from_slice(&data[data.len() - 8..]);
        } else {
            self.pending.extend_from_slice(data);
            if self.pending.len() > 8 {
                let cut = self.pending.len() - 8;
                self.digest.update(&self.pending[..cut]);
                self.pending.drain(..cut);
            }
        }
    }

    /// Call at the end of the stream: the RDB counts only if this passes.
    pub fn verify(&self) -> Result<(), String> {
        if self.total < 18 || !self.head.starts_with(b"REDIS") {
            return Err(format!(
                "not an RDB file ({} bytes, no REDIS header)",
                self.total
            ));
        }
        let stored = u64::from_le_bytes(
            self.pending
                .as_slice()
                .try_into()
                .map_err(|_| "RDB is truncated".to_string())?,
        );
        if stored == 0 {
            // rdbchecksum no: Redis itself accepts such files; so do we, loudly.
            tracing::warn!("the RDB carries no checksum (rdbchecksum no on the server); its integrity rests on the transfer alone");
            return Ok(());
        }
        let computed = self.digest.clone().finalize();
        if computed != stored {
            return Err(format!(
                "RDB checksum mismatch: file says {stored:016x}, content hashes to {computed:016x}"
            ));
        }
        Ok(())
    }
}

/// The footer of a DUMP payload — RDB version, then the CRC64 of the value
/// and the version — computed as the value streams past, so a value of any
/// size is sent to RESTORE without being held.
pub struct DumpDigest(crc::Digest<'static, u64, Table<16>>);

/// Bytes in a DUMP payload's footer.
pub const FOOTER_LEN: u64 = 10;

impl Default for DumpDigest {
    fn default() -> Self {
        Self::new()
    }
}

impl DumpDigest {
    pub fn new() -> Self {
        DumpDigest(CRC64.digest())
    }

    pub fn update(&mut self, value_bytes: &[u8]) {
        self.0.update(value_bytes);
    }

    pub fn footer(mut self, rdb_version: u16) -> [u8; 10] {
        let version = rdb_version.to_le_bytes();
        self.0.update(&version);
        let crc = self.0.finalize().to_le_bytes();
        let mut footer = [0; 10];
        footer[..2].copy_from_slice(&version);
        footer[2..].copy_from_slice(&crc);
        footer
    }

    /// A footer every server refuses (a version from the future, a wrong
    /// CRC): it ends a payload that could not be read to its end, so the
    /// command is complete, the connection stays usable, and no key is made.
    pub fn spoiled_footer(self) -> [u8; 10] {
        let mut footer = self.footer(u16::MAX);
        footer[2] ^= 0xFF;
        footer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rdb_with_crc(body: &[u8]) -> Vec<u8> {
        let mut data = body.to_vec();
        let crc = CRC64.checksum(&data);
        data.extend_from_slice(&crc.to_le_bytes());
        data
    }

    #[test]
    fn redis_crc64_check_value() {
        // The check value of the Jones CRC64 Redis uses (from its crc64.c test).
        assert_eq!(CRC64.checksum(b"123456789"), 0xe9c6_d914_c4b8_d9ca);
    }

    #[test]
    fn a_dump_footer_over_chunks_is_the_footer_over_the_whole() {
        let value = b"\x00\x0bhello world";
        let mut whole = value.to_vec();
        whole.extend_from_slice(&11u16.to_le_bytes());
        let crc = CRC64.checksum(&whole);
        let mut want = 11u16.to_le_bytes().to_vec();
        want.extend_from_slice(&crc.to_le_bytes());
        for chunk in [1, 2, 5, 64] {
            let mut digest = DumpDigest::new();
            value.chunks(chunk).for_each(|c| digest.update(c));
            assert_eq!(digest.footer(11).to_vec(), want, "chunk {chunk}");
        }
        let mut digest = DumpDigest::new();
        digest.update(value);
        let spoiled = digest.spoiled_footer();
        assert_eq!(spoiled[..2], [0xFF, 0xFF], "a version no server knows");
        let mut digest = DumpDigest::new();
        digest.update(value);
        assert_ne!(
            spoiled[2..],
            digest.footer(u16::MAX)[2..],
            "and a wrong CRC"
        );
    }

    #[test]
    fn accepts_a_whole_file_in_any_chunking_and_rejects_damage() {
        let file = rdb_with_crc(b"REDIS0010\xfa\x09redis-ver\x067.0.15\xff");
        for chunk in [1, 3, 7, 8, 9, 64] {
            let mut t = Crc64Trailer::new();
            file.chunks(chunk).for_each(|c| t.update(c));
            assert_eq!(t.verify(), Ok(()), "chunk {chunk}");
        }
        let mut damaged = file.clone();
        damaged[12] ^= 1;
        let mut t = Crc64Trailer::new();
        t.update(&damaged);
        assert!(t.verify().expect_err("damaged").contains("mismatch"));
        let mut t = Crc64Trailer::new();
        t.update(b"hello world, this is not redis");
        assert!(t.verify().is_err());
    }
}
