//! Commands written straight to the server's socket, their replies read in
//! rounds. Nothing is held but a write buffer and one label per command
//! awaiting its reply, so a value of any size passes through in chunks, and
//! a million small keys cost what a round of 512 of them does.

use std::io::{BufWriter, Write};

use redis::{Connection, Value};

/// Read the replies once this many commands, or commands of this many
/// bytes, await them: errors (OOM, a refused payload) surface within a
/// round, and the server's replies to us stay small.
const ROUND_COMMANDS: usize = 512;
const ROUND_BYTES: u64 = 8 << 20;
const WRITE_BUFFER: usize = 256 << 10;

/// A command written, awaiting its reply: the key it writes, for counting
/// and, only when it fails, for the message.
pub struct Sent {
    pub db: u64,
    pub key: Vec<u8>,
    /// The value's type ("hash").
    pub kind: &'static str,
    /// `None`: the command creates the key (a RESTORE), which counts as
    /// written by this restore once the reply is OK. Otherwise what it adds
    /// to a key created before ("its later elements").
    pub adds: Option<&'static str>,
}

impl Sent {
    fn label(&self) -> String {
        let mut label = key_label(self.kind, &self.key);
        if let Some(adds) = self.adds {
            label.push_str(&format!(" ({adds})"));
        }
        label
    }
}

/// "hash key sessions": a key as error messages name it.
pub fn key_label(kind: &str, key: &[u8]) -> String {
    format!("{kind} key {}", String::from_utf8_lossy(key))
}

/// The connection as a byte sink.
struct Socket<'c>(&'c mut Connection);

impl Write for Socket<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.0
            .send_packed_command(buf)
            .map_err(std::io::Error::other)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub struct Wire<'c> {
    out: BufWriter<Socket<'c>>,
    waiting: Vec<Sent>,
    waiting_bytes: u64,
}

impl<'c> Wire<'c> {
    pub fn new(conn: &'c mut Connection) -> Self {
        Wire {
            out: BufWriter::with_capacity(WRITE_BUFFER, Socket(conn)),
            waiting: Vec::new(),
            waiting_bytes: 0,
        }
    }

    /// Part of a command; [`Self::sent`] marks its end.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), String> {
        match self.out.write_all(bytes) {
            Ok(()) => Ok(()),
            Err(e) => Err(self.why_closed(e)),
        }
    }

    /// A write failed: the server closed the connection, and it often said
    /// why just before (a payload above `proto-max-bulk-len`, a full query
    /// buffer). Its replies are read for that reason, briefly.
    fn why_closed(&mut self, e: std::io::Error) -> String {
        let conn = &mut *self.out.get_mut().0;
        let _ = conn.set_read_timeout(Some(std::time::Duration::from_secs(1)));
        for _ in 0..=self.waiting.len() {
            match conn.recv_response() {
                Ok(Value::ServerError(reason)) => {
                    return with_hint(format!(
                        "the server closed the connection: {}",
                        one_line(&reason.into())
                    ))
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        format!("writing to the server: {e}")
    }

    /// `n` zero bytes: the rest of a payload that could not be read.
    pub fn pad(&mut self, mut n: u64) -> Result<(), String> {
        let zeros = [0u8; 64 << 10];
        while n > 0 {
            let step = n.min(zeros.len() as u64) as usize;
            self.write(&zeros[..step])?;
            n -= step as u64;
        }
        Ok(())
    }

    /// Records a command of `bytes` bytes as written; reads the round's
    /// replies when it is full.
    pub fn sent(
        &mut self,
        sent: Sent,
        bytes: u64,
        created: &mut dyn FnMut(u64, &[u8]),
    ) -> Result<(), String> {
        self.waiting.push(sent);
        self.waiting_bytes += bytes;
        if self.waiting.len() >= ROUND_COMMANDS || self.waiting_bytes >= ROUND_BYTES {
            self.settle(created)?;
        }
        Ok(())
    }

    /// Sends what is buffered and reads every awaited reply. Keys whose
    /// command succeeded are passed to `created`, even when others failed;
    /// then the first failure is returned.
    pub fn settle(&mut self, created: &mut dyn FnMut(u64, &[u8])) -> Result<(), String> {
        self.out
            .flush()
            .map_err(|e| format!("writing to the server: {e}"))?;
        let waiting = std::mem::take(&mut self.waiting);
        self.waiting_bytes = 0;
        let mut failures = Vec::new();
        for sent in &waiting {
            let reply = self
                .out
                .get_mut()
                .0
                .recv_response()
                .and_then(Value::extract_error);
            match reply {
                Ok(_) => {
                    if sent.adds.is_none() {
                        created(sent.db, &sent.key);
                    }
                }
                // Not the server's answer: the connection is gone, no
                // further reply will come.
                Err(e) if e.is_io_error() || e.code().is_none() => {
                    return Err(format!("{}: {e}", sent.label()))
                }
                Err(e) => failures.push((sent, e)),
            }
        }
        match failures.first() {
            None => Ok(()),
            Some((first, e)) => Err(round_error(
                failures.len(),
                waiting.len(),
                waiting.iter().all(|s| s.adds.is_none()),
                &first.label(),
                e,
            )),
        }
    }

    /// The connection, for a command of its own. Call [`Self::settle`] first:
    /// no reply may be outstanding.
    pub fn conn(&mut self) -> &mut Connection {
        debug_assert!(self.waiting.is_empty(), "replies outstanding");
        self.out.get_mut().0
    }
}

fn round_error(
    failures: usize,
    of: usize,
    all_restores: bool,
    first: &str,
    e: &redis::RedisError,
) -> String {
    let message = if all_restores {
        format!(
            "RESTORE failed for {failures} of {of} keys in a batch, first {first}: {}",
            one_line(e)
        )
    } else {
        format!(
            "{failures} of {of} commands in a batch failed, first restoring {first}: {}",
            one_line(e)
        )
    };
    with_hint(message)
}

/// A server error as one short line: its code and message, without the
/// client's wrapping.
pub fn one_line(e: &redis::RedisError) -> String {
    let text = match (e.code(), e.detail()) {
        (Some(code), Some(detail)) => format!("{code} {detail}"),
        _ => e.to_string(),
    };
    text.lines()
        .next()
        .unwrap_or_default()
        .chars()
        .take(200)
        .collect()
}

/// Redis refuses DUMP payloads from a newer RDB format, or runs out of
/// memory; say what to do.
pub fn with_hint(message: String) -> String {
    if message.contains("OOM") || message.contains("maxmemory") {
        format!("{message} (the target reached its maxmemory: give it more memory, or restore as an RDB file)")
    } else if message.contains("payload version") {
        format!("{message} (the target Redis is older than the one backed up: restore into the same or a newer version, or restore as an RDB file)")
    } else if message.contains("bulk length") {
        format!("{message} (a value is larger than the target's proto-max-bulk-len: raise it, or restore as an RDB file)")
    } else {
        message
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_round_says_how_many_failed_and_what_to_do() {
        let oom = redis::RedisError::from((
            redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError),
            "OOM",
            "command not allowed when used memory > 'maxmemory'.".to_string(),
        ));
        let restores = round_error(2, 512, true, "string key a", &oom);
        assert!(
            restores
                .starts_with("RESTORE failed for 2 of 512 keys in a batch, first string key a: "),
            "{restores}"
        );
        assert!(restores.contains("give it more memory"), "{restores}");
        let parts = round_error(1, 3, false, "hash key h (HSET)", &oom);
        assert!(
            parts.starts_with("1 of 3 commands in a batch failed, first restoring hash key h"),
            "{parts}"
        );
    }
}
