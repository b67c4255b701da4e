//! Commands in the Redis protocol (RESP), written in pieces: a bulk argument
//! is announced with its length (`$<len>\r\n`) and its bytes may follow in
//! any number of writes, so a RESTORE payload streams from the backup to the
//! socket instead of being assembled first.

/// A whole command.
pub fn command<A: AsRef<[u8]>>(args: &[A]) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(16 + args.iter().map(|a| a.as_ref().len() + 16).sum::<usize>());
    array_head(&mut out, args.len());
    for arg in args {
        bulk(&mut out, arg.as_ref());
    }
    out
}

fn array_head(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(format!("*{n}\r\n").as_bytes());
}

fn bulk_head(out: &mut Vec<u8>, len: u64) {
    out.extend_from_slice(format!("${len}\r\n").as_bytes());
}

fn bulk(out: &mut Vec<u8>, arg: &[u8]) {
    bulk_head(out, arg.len() as u64);
    out.extend_from_slice(arg);
    out.extend_from_slice(b"\r\n");
}

/// A RESTORE whose payload is written separately, between [`Restore::head`]
/// and [`Restore::tail`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restore<'a> {
    pub key: &'a [u8],
    /// 0 for none; a Unix time in ms with `absttl`.
    pub ttl_ms: i64,
    pub absttl: bool,
    pub replace: bool,
    pub idle_seconds: Option<u64>,
    pub lfu_freq: Option<u8>,
}

impl Restore<'_> {
    /// The options after the payload.
    fn options(&self) -> Vec<Vec<u8>> {
        let mut options = Vec::new();
        if self.replace {
            options.push(b"REPLACE".to_vec());
        }
        if self.absttl {
            options.push(b"ABSTTL".to_vec());
        }
        if let Some(idle) = self.idle_seconds {
            options.push(b"IDLETIME".to_vec());
            options.push(idle.to_string().into_bytes());
        }
        if let Some(freq) = self.lfu_freq {
            options.push(b"FREQ".to_vec());
            options.push(freq.to_string().into_bytes());
        }
        options
    }

    /// Everything before the payload's first byte, for a payload of
    /// `payload_len` bytes.
    pub fn head(&self, payload_len: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.key.len());
        array_head(&mut out, 4 + self.options().len());
        bulk(&mut out, b"RESTORE");
        bulk(&mut out, self.key);
        bulk(&mut out, self.ttl_ms.to_string().as_bytes());
        bulk_head(&mut out, payload_len);
        out
    }

    /// Everything after the payload's last byte.
    pub fn tail(&self) -> Vec<u8> {
        let mut out = b"\r\n".to_vec();
        for option in self.options() {
            bulk(&mut out, &option);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restore_in_pieces_is_the_command_redis_rs_would_send() {
        let payload = b"\x00\x05hello\x0b\x00crc64crc";
        let cases = [
            (
                Restore {
                    key: b"k",
                    ttl_ms: 0,
                    absttl: false,
                    replace: false,
                    idle_seconds: None,
                    lfu_freq: None,
                },
                redis::cmd("RESTORE").arg(b"k").arg(0).arg(payload).clone(),
            ),
            (
                Restore {
                    key: b"a key\r\n",
                    ttl_ms: 1_700_000_000_000,
                    absttl: true,
                    replace: true,
                    idle_seconds: Some(30),
                    lfu_freq: Some(7),
                },
                redis::cmd("RESTORE")
                    .arg(b"a key\r\n")
                    .arg(1_700_000_000_000i64)
                    .arg(payload)
                    .arg("REPLACE")
                    .arg("ABSTTL")
                    .arg("IDLETIME")
                    .arg(30)
                    .arg("FREQ")
                    .arg(7)
                    .clone(),
            ),
        ];
        for (restore, want) in cases {
            let mut got = restore.head(payload.len() as u64);
            got.extend_from_slice(payload);
            got.extend(restore.tail());
            assert_eq!(got, want.get_packed_command());
        }
    }

    #[test]
    fn a_command_is_an_array_of_bulk_strings() {
        assert_eq!(
            command(&[&b"RPUSH"[..], b"k", b"", b"x\r\ny"]),
            redis::cmd("RPUSH")
                .arg("k")
                .arg("")
                .arg("x\r\ny")
                .get_packed_command()
        );
    }
}
