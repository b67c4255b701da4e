//! Receives a Redis RDB snapshot over the replication protocol, as a replica
//! would (`redis-cli --rdb`, natively): no access to the Redis pod's disk, no
//! redis-cli in the image. The stream yields exactly the RDB bytes and fails
//! at its end if the snapshot is truncated or its CRC64 does not match.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{
    AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader, ReadBuf,
};
use tokio::net::TcpStream;

use super::target::RedisTarget;
use crate::engine::redis::checksum::Crc64Trailer;
use crate::error::{Error, Result};

pub struct Snapshot {
    pub server_version: Option<String>,
    /// Keys in every database (`INFO keyspace`) just before the snapshot.
    pub keys: Option<u64>,
    pub stream: RdbStream,
}

/// The sum of `keys=` over the `dbN:` lines of `INFO keyspace`.
pub fn keyspace_keys(info: &str) -> u64 {
    info.lines()
        .filter(|l| l.starts_with("db"))
        .filter_map(|l| {
            l.split(',')
                .find_map(|f| f.split_once("keys=").map(|(_, n)| n))
        })
        .filter_map(|n| {
            n.trim()
                .split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// A BGSAVE on a large instance can take minutes before the first byte;
/// the master sends a newline every second meanwhile, so silence this long
/// means it is gone.
const IDLE_TIMEOUT: Duration = Duration::from_secs(120);

pub async fn start(target: &RedisTarget, password: Option<&str>) -> Result<Snapshot> {
    let address = target.address();
    let mut conn = connect(target, password, &address).await?;
    let (server_version, keys) = server_facts(&mut conn, &address).await?;
    request_sync(&mut conn, &address).await?;
    let framing = read_framing(&mut conn, &address).await?;
    Ok(Snapshot {
        server_version,
        keys,
        stream: RdbStream {
            conn,
            framing,
            crc: Crc64Trailer::new(),
            total: 0,
            done: false,
            address,
        },
    })
}

/// Connects and logs in.
async fn connect(
    target: &RedisTarget,
    password: Option<&str>,
    address: &str,
) -> Result<BufReader<TcpStream>> {
    let address = address.to_string();
    let connect = TcpStream::connect((target.host.as_str(), target.port));
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, connect)
        .await
        .map_err(|_| {
            Error::source(format!(
                "connecting to {address}: timed out after {}s",
                CONNECT_TIMEOUT.as_secs()
            ))
        })?
        .map_err(|e| Error::source(format!("connecting to {address}: {e}")))?;
    let _ = stream.set_nodelay(true);
    let mut conn = BufReader::with_capacity(256 * 1024, stream);

    if let Some(password) = password {
        let mut auth = vec!["AUTH".as_bytes()];
        if let Some(user) = &target.username {
            auth.push(user.as_bytes());
        }
        auth.push(password.as_bytes());
        let reply = command(&mut conn, &auth)
            .await
            .map_err(|e| io_failure(&address, e))?;
        if reply.starts_with('-') {
            return Err(Error::usage(format!(
                "{address} rejected the credentials ({}); check REDIS_PASSWORD / --password-file and the user",
                first_word(&reply)
            )));
        }
    } else if target.username.is_some() {
        return Err(Error::usage(format!(
            "{address} names a user but no password was given; set REDIS_PASSWORD or --password-file"
        )));
    }

    Ok(conn)
}

/// The server's version and its key count (`INFO keyspace`).
async fn server_facts(
    conn: &mut BufReader<TcpStream>,
    address: &str,
) -> Result<(Option<String>, Option<u64>)> {
    let info = command(conn, &[b"INFO", b"server"])
        .await
        .map_err(|e| io_failure(address, e))?;
    if info.starts_with("-NOAUTH") {
        return Err(Error::usage(format!(
            "{address} requires a password; set REDIS_PASSWORD or --password-file"
        )));
    }
    if info.starts_with('-') {
        return Err(Error::source(format!("{address}: INFO failed: {info}")));
    }
    // Valkey also reports the Redis version it is compatible with; its own
    // version is the one that tells a user what ran.
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
    };
    let server_version = field("valkey_version:")
        .map(|v| format!("valkey {v}"))
        .or_else(|| field("redis_version:"));

    // Read just before the snapshot: keys written or expiring in between
    // make the two differ slightly, which a drill's tolerance allows for.
    let keyspace = command(conn, &[b"INFO", b"keyspace"])
        .await
        .map_err(|e| io_failure(address, e))?;
    let keys = (!keyspace.starts_with('-')).then(|| keyspace_keys(&keyspace));

    Ok((server_version, keys))
}

/// Asks for a full resynchronisation, as a new replica does.
async fn request_sync(conn: &mut BufReader<TcpStream>, address: &str) -> Result<()> {
    // We accept the EOF-marked (diskless) transfer, so the master need not
    // write the snapshot to its own disk.
    let capa = command(conn, &[b"REPLCONF", b"capa", b"eof", b"capa", b"psync2"])
        .await
        .map_err(|e| io_failure(address, e))?;
    if capa.starts_with('-') {
        return Err(replication_refused(address, &capa));
    }
    let psync = command(conn, &[b"PSYNC", b"?", b"-1"])
        .await
        .map_err(|e| io_failure(address, e))?;
    if !psync.starts_with("+FULLRESYNC") {
        return Err(replication_refused(address, &psync));
    }

    Ok(())
}

/// Waits for the snapshot's header: its length, or the EOF marker of a
/// diskless transfer.
async fn read_framing(conn: &mut BufReader<TcpStream>, address: &str) -> Result<Framing> {
    // Newlines are keep-alives while the master prepares the snapshot.
    let header = loop {
        let mut line = String::new();
        let n = tokio::time::timeout(IDLE_TIMEOUT, conn.read_line(&mut line))
            .await
            .map_err(|_| {
                Error::source(format!(
                    "{address}: no snapshot after {}s of silence",
                    IDLE_TIMEOUT.as_secs()
                ))
            })?
            .map_err(|e| io_failure(address, e))?;
        if n == 0 {
            return Err(Error::source(format!(
                "{address} closed the connection before sending the snapshot"
            )));
        }
        let line = line.trim_end();
        if !line.is_empty() {
            break line.to_string();
        }
    };
    let framing = if let Some(mark) = header.strip_prefix("$EOF:") {
        if mark.len() != 40 {
            return Err(Error::source(format!(
                "{address} sent a malformed EOF marker"
            )));
        }
        Framing::EofMark {
            mark: mark.as_bytes().to_vec(),
            held: Vec::new(),
        }
    } else if let Some(len) = header.strip_prefix('$').and_then(|l| l.parse::<u64>().ok()) {
        Framing::Length { remaining: len }
    } else {
        return Err(Error::source(format!(
            "{address} sent an unexpected reply instead of a snapshot: {}",
            first_word(&header)
        )));
    };
    Ok(framing)
}

fn io_failure(address: &str, e: io::Error) -> Error {
    Error::source(format!("{address}: {e}"))
}

/// Why the server would not replicate: a permission (exit 2: the ACL must
/// change), a replica without its own primary, or anything else.
fn replication_refused(address: &str, reply: &str) -> Error {
    let word = first_word(reply);
    if reply.starts_with("-NOPERM") {
        Error::usage(format!(
            "{address} refused to send a snapshot ({word}): the user lacks a permission; grant +psync +replconf +info (e.g. ACL SETUSER backup +psync +replconf +info +ping)"
        ))
    } else if reply.starts_with("-NOMASTERLINK") {
        Error::source(format!(
            "{address} is a replica that has lost its link to its primary ({word}): it cannot serve a snapshot until it resynchronises; back up the primary or a healthy replica"
        ))
    } else {
        Error::source(format!(
            "{address} refused to send a snapshot ({word}); the user needs the +psync +replconf +info commands (ACL) and replication must not be disabled"
        ))
    }
}

fn first_word(reply: &str) -> String {
    reply
        .lines()
        .next()
        .unwrap_or_default()
        .chars()
        .take(200)
        .collect()
}

/// Sends one command and reads a simple, error or bulk reply as text.
async fn command(conn: &mut BufReader<TcpStream>, args: &[&[u8]]) -> io::Result<String> {
    let mut frame = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        frame.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        frame.extend_from_slice(arg);
        frame.extend_from_slice(b"\r\n");
    }
    conn.get_mut().write_all(&frame).await?;
    let mut line = String::new();
    loop {
        line.clear();
        if conn.read_line(&mut line).await? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed",
            ));
        }
        if !line.trim_end().is_empty() {
            break;
        }
    }
    let line = line.trim_end().to_string();
    if let Some(len) = line.strip_prefix('$').and_then(|l| l.parse::<i64>().ok()) {
        if len < 0 {
            return Ok(String::new());
        }
        let mut body = vec![0u8; len as usize + 2];
        conn.read_exact(&mut body).await?;
        body.truncate(len as usize);
        return Ok(String::from_utf8_lossy(&body).into_owned());
    }
    Ok(line)
}

enum Framing {
    /// `$<len>`: exactly this many bytes follow.
    Length { remaining: u64 },
    /// `$EOF:<mark>`: bytes until the 40-byte mark; we hold back the last 40
    /// bytes read until we know they are not the mark.
    EofMark { mark: Vec<u8>, held: Vec<u8> },
}

pub struct RdbStream {
    conn: BufReader<TcpStream>,
    framing: Framing,
    crc: Crc64Trailer,
    total: u64,
    done: bool,
    address: String,
}

impl RdbStream {
    fn emit(&mut self, buf: &mut ReadBuf<'_>, data: &[u8]) {
        self.crc.update(data);
        self.total += data.len() as u64;
        buf.put_slice(data);
    }

    /// At the end of the transfer: the snapshot counts only if it is whole.
    fn finish(&mut self) -> io::Result<()> {
        self.done = true;
        self.crc.verify().map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: snapshot rejected: {e}", self.address),
            )
        })
    }
}

impl AsyncRead for RdbStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.done || buf.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            // First hand out what is already known to be snapshot bytes.
            match &mut this.framing {
                Framing::Length { remaining } if *remaining == 0 => {
                    return Poll::Ready(this.finish())
                }
                Framing::EofMark { mark, held } => {
                    if let Some(pos) = find(held, mark) {
                        if pos == 0 {
                            // Whatever follows the mark is the replication stream: not ours.
                            return Poll::Ready(this.finish());
                        }
                        let n = pos.min(buf.remaining());
                        let data: Vec<u8> = held.drain(..n).collect();
                        this.emit(buf, &data);
                        return Poll::Ready(Ok(()));
                    }
                    // All but the last mark-length-minus-one bytes cannot be part of the mark.
                    let safe = held.len().saturating_sub(mark.len() - 1);
                    if safe > 0 {
                        let n = safe.min(buf.remaining());
                        let data: Vec<u8> = held.drain(..n).collect();
                        this.emit(buf, &data);
                        return Poll::Ready(Ok(()));
                    }
                }
                Framing::Length { .. } => {}
            }
            let available = match Pin::new(&mut this.conn).poll_fill_buf(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(data)) => data,
            };
            if available.is_empty() {
                let detail = match &this.framing {
                    Framing::Length { remaining } => {
                        format!("{remaining} bytes before the end of the snapshot")
                    }
                    Framing::EofMark { .. } => "before the end-of-snapshot mark".to_string(),
                };
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("{}: connection closed {detail}", this.address),
                )));
            }
            match &mut this.framing {
                Framing::Length { remaining } => {
                    let take = available
                        .len()
                        .min(buf.remaining())
                        .min(usize::try_from(*remaining).unwrap_or(usize::MAX));
                    let data = available[..take].to_vec();
                    *remaining -= take as u64;
                    Pin::new(&mut this.conn).consume(take);
                    this.emit(buf, &data);
                    return Poll::Ready(Ok(()));
                }
                Framing::EofMark { held, .. } => {
                    let take = available.len();
                    held.extend_from_slice(available);
                    Pin::new(&mut this.conn).consume(take);
                }
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::redis::checksum::CRC64;
    use tokio::net::TcpListener;

    fn rdb() -> Vec<u8> {
        let mut data = b"REDIS0011\xfa\x09redis-ver\x057.2.4\xfe\x00\x00\x01k\x01v".to_vec();
        data.push(0xff);
        let crc = CRC64.checksum(&data);
        data.extend_from_slice(&crc.to_le_bytes());
        data
    }

    /// A fake master: answers the handshake, then sends `payload` as the snapshot.
    async fn master(payload: Vec<u8>) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            let (socket, _) = listener.accept().await.expect("accept");
            let mut conn = BufReader::new(socket);
            let replies = vec![
                {
                    let info = "# Server\r\nredis_version:7.2.4\r\n";
                    format!("${}\r\n{info}\r\n", info.len()).into_bytes()
                },
                {
                    let info = "# Keyspace\r\ndb0:keys=3,expires=0,avg_ttl=0\r\n";
                    format!("${}\r\n{info}\r\n", info.len()).into_bytes()
                },
                b"+OK\r\n".to_vec(),
                b"+FULLRESYNC 8de1787ba490483314a4d30f1c628bc5025eb761 0\r\n".to_vec(),
            ]
            .into_iter();
            // Each command is an array: read its lines and answer.
            for reply in replies {
                let mut line = String::new();
                conn.read_line(&mut line).await.expect("read");
                let args: usize = line.trim()[1..].parse().expect("array");
                for _ in 0..args * 2 {
                    line.clear();
                    conn.read_line(&mut line).await.expect("read");
                }
                conn.get_mut().write_all(&reply).await.expect("write");
            }
            conn.get_mut().write_all(&payload).await.expect("write");
            // Then the replication stream would follow; a PING, as a master sends.
            let _ = conn.get_mut().write_all(b"*1\r\n$4\r\nPING\r\n").await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        });
        port
    }

    fn target(port: u16) -> RedisTarget {
        RedisTarget {
            host: "127.0.0.1".into(),
            port,
            username: None,
            db: None,
        }
    }

    async fn receive(payload: Vec<u8>) -> std::io::Result<(Option<String>, Vec<u8>)> {
        let port = master(payload).await;
        let mut snapshot = start(&target(port), None)
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let mut out = Vec::new();
        snapshot.stream.read_to_end(&mut out).await?;
        Ok((snapshot.server_version, out))
    }

    #[test]
    fn counts_keys_over_every_database() {
        let info = "# Keyspace\r\ndb0:keys=1200,expires=3,avg_ttl=0\r\ndb5:keys=7,expires=0,avg_ttl=0,subexpiry=0\r\n";
        assert_eq!(keyspace_keys(info), 1207);
        assert_eq!(keyspace_keys("# Keyspace\r\n"), 0);
    }

    #[tokio::test]
    async fn receives_a_length_framed_snapshot() {
        let data = rdb();
        let mut payload = b"\n\n".to_vec(); // keep-alives while the master forks
        payload.extend_from_slice(format!("${}\r\n", data.len()).as_bytes());
        payload.extend_from_slice(&data);
        let (version, got) = receive(payload).await.expect("snapshot");
        assert_eq!(version.as_deref(), Some("7.2.4"));
        assert_eq!(got, data);
    }

    #[tokio::test]
    async fn receives_an_eof_marked_snapshot() {
        let data = rdb();
        let mark = "0123456789abcdef0123456789abcdef01234567";
        let mut payload = format!("$EOF:{mark}\r\n").into_bytes();
        payload.extend_from_slice(&data);
        payload.extend_from_slice(mark.as_bytes());
        let (_, got) = receive(payload).await.expect("snapshot");
        assert_eq!(got, data);
    }

    #[tokio::test]
    async fn a_truncated_or_damaged_snapshot_fails() {
        let data = rdb();
        let mut truncated = format!("${}\r\n", data.len() + 100).into_bytes();
        truncated.extend_from_slice(&data);
        let err = receive(truncated).await.expect_err("truncated");
        assert!(err.to_string().contains("connection closed"), "{err}");

        let mut damaged_data = data.clone();
        damaged_data[12] ^= 0x01;
        let mut damaged = format!("${}\r\n", damaged_data.len()).into_bytes();
        damaged.extend_from_slice(&damaged_data);
        let err = receive(damaged).await.expect_err("damaged");
        assert!(err.to_string().contains("checksum mismatch"), "{err}");
    }
}
