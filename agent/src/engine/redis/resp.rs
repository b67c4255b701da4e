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

/// `*<n>\r\n`: a command of `n` arguments follows.
pub fn array_head(out: &mut Vec<u8>, n: usize) {
    out.push(b'*');
    decimal(out, n as u64);
    out.extend_from_slice(b"\r\n");
}

/// `$<len>\r\n`: the argument's bytes follow, then `\r\n`.
pub fn bulk_head(out: &mut Vec<u8>, len: u64) {
    out.push(b'$');
    decimal(out, len);
    out.extend_from_slice(b"\r\n");
}

pub fn bulk(out: &mut Vec<u8>, arg: &[u8]) {
    bulk_head(out, arg.len() as u64);
    out.extend_from_slice(arg);
    out.extend_from_slice(b"\r\n");
}

/// A number as a bulk argument.
fn bulk_number(out: &mut Vec<u8>, n: i64) {
    let mut digits = Vec::with_capacity(20);
    if n < 0 {
        digits.push(b'-');
    }
    decimal(&mut digits, n.unsigned_abs());
    bulk(out, &digits);
}

/// Digits of `n`, without the allocation `format!` makes: a restore writes
/// several numbers per key, for millions of keys.
fn decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
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
    fn option_args(&self) -> usize {
        usize::from(self.replace)
            + usize::from(self.absttl)
            + 2 * usize::from(self.idle_seconds.is_some())
            + 2 * usize::from(self.lfu_freq.is_some())
    }

    /// Everything before the payload's first byte, for a payload of
    /// `payload_len` bytes.
    pub fn head(&self, payload_len: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.key.len());
        array_head(&mut out, 4 + self.option_args());
        bulk(&mut out, b"RESTORE");
        bulk(&mut out, self.key);
        bulk_number(&mut out, self.ttl_ms);
        bulk_head(&mut out, payload_len);
        out
    }

    /// Everything after the payload's last byte: its end, then the options.
    pub fn tail(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(b"\r\n");
        if self.replace {
            bulk(&mut out, b"REPLACE");
        }
        if self.absttl {
            bulk(&mut out, b"ABSTTL");
        }
        if let Some(idle) = self.idle_seconds {
            bulk(&mut out, b"IDLETIME");
            bulk_number(&mut out, i64::try_from(idle).unwrap_or(i64::MAX));
        }
        if let Some(freq) = self.lfu_freq {
            bulk(&mut out, b"FREQ");
            bulk_number(&mut out, i64::from(freq));
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
    fn numbers_are_written_as_redis_rs_writes_them() {
        for n in [
            0,
            7,
            10,
            99,
            1_700_000_000_000,
            -1,
            -450,
            i64::MAX,
            i64::MIN,
        ] {
            let mut out = Vec::new();
            bulk_number(&mut out, n);
            assert_eq!(
                out,
                redis::cmd("X").arg(n).get_packed_command()[11..],
                "{n}"
            );
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
