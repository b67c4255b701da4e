//! A tiny blocking HTTP/1.1 client over `std::net::TcpStream`, enough for
//! test fixtures against loopback servers (the search servers in `search`):
//! any method, a JSON or NDJSON body, `Content-Length` or chunked responses.
//! One connection per request (`Connection: close`): fixtures are few, and
//! no connection state can leak between them. The tests crate has no async
//! HTTP client of its own, and fixtures must not depend on the agent's.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::Value;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Generous: a bulk load or a refresh on a busy 2-core machine can be slow.
const IO_TIMEOUT: Duration = Duration::from_secs(120);

/// A response: status code, headers (names lowercased) and the decoded body.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The body as JSON: `Null` when empty, a JSON string holding the text
    /// when it is not JSON (an error page, a `_cat` table).
    pub fn json(&self) -> Value {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Value::Null;
        }
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&self.body).into_owned()))
    }
}

/// Sends one request to 127.0.0.1:`port` and reads the whole response.
/// `body` is (content type, bytes). Errors are I/O or protocol errors as text
/// (a refused connection while a server starts is one).
pub fn send(
    port: u16,
    method: &str,
    path: &str,
    body: Option<(&str, &[u8])>,
) -> Result<Response, String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)
        .map_err(|e| format!("connecting to {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(IO_TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(IO_TIMEOUT)))
        .map_err(|e| format!("socket timeouts: {e}"))?;
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\
         Accept: application/json\r\n"
    );
    if let Some((content_type, bytes)) = body {
        request.push_str(&format!(
            "Content-Type: {content_type}\r\nContent-Length: {}\r\n",
            bytes.len()
        ));
    } else if matches!(method, "PUT" | "POST") {
        // Some servers want a length on every request that may have a body.
        request.push_str("Content-Length: 0\r\n");
    }
    request.push_str("\r\n");
    let mut out = request.into_bytes();
    if let Some((_, bytes)) = body {
        out.extend_from_slice(bytes);
    }
    stream
        .write_all(&out)
        .map_err(|e| format!("{method} {path}: writing the request: {e}"))?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .map_err(|e| format!("{method} {path}: reading the response: {e}"))?;
    parse_response(&raw, method == "HEAD").map_err(|e| format!("{method} {path}: {e}"))
}

/// Like [`send`] with an optional JSON body; returns (status, JSON body).
pub fn request_json(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<(u16, Value), String> {
    let bytes = body.map(|b| serde_json::to_vec(b).expect("serialize JSON body"));
    let response = send(
        port,
        method,
        path,
        bytes.as_deref().map(|b| ("application/json", b)),
    )?;
    Ok((response.status, response.json()))
}

/// Like [`send`] with an NDJSON body (`_bulk`, `_msearch`); returns
/// (status, JSON body).
pub fn request_ndjson(
    port: u16,
    method: &str,
    path: &str,
    ndjson: &str,
) -> Result<(u16, Value), String> {
    let response = send(
        port,
        method,
        path,
        Some(("application/x-ndjson", ndjson.as_bytes())),
    )?;
    Ok((response.status, response.json()))
}

fn parse_response(raw: &[u8], head: bool) -> Result<Response, String> {
    let end = find(raw, b"\r\n\r\n").ok_or("no end of headers in the response")?;
    let head_text = std::str::from_utf8(&raw[..end]).map_err(|_| "headers are not UTF-8")?;
    let mut lines = head_text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let rest = &raw[end + 4..];
    let body = if head {
        Vec::new()
    } else if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        dechunk(rest)?
    } else if let Some(length) = header("content-length") {
        let length: usize = length
            .parse()
            .map_err(|_| format!("bad Content-Length {length:?}"))?;
        if rest.len() < length {
            return Err(format!("body cut short: {} of {length} bytes", rest.len()));
        }
        rest[..length].to_vec()
    } else {
        // Connection: close delimits the body.
        rest.to_vec()
    };
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// Decodes a chunked body (chunk extensions and trailers ignored).
fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let line_end = find(data, b"\r\n").ok_or("chunk size line without CRLF")?;
        let size_text = std::str::from_utf8(&data[..line_end]).map_err(|_| "bad chunk size")?;
        let size_hex = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        if data.len() < size + 2 {
            return Err("chunked body cut short".to_string());
        }
        body.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_content_length_and_chunked_bodies() {
        let plain = b"HTTP/1.1 201 Created\r\nContent-Length: 7\r\n\r\n{\"a\":1}";
        let r = parse_response(plain, false).expect("plain");
        assert_eq!((r.status, r.json()), (201, serde_json::json!({"a": 1})));
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                        4\r\n{\"b\"\r\n3;x=y\r\n:2}\r\n0\r\n\r\n";
        let r = parse_response(chunked, false).expect("chunked");
        assert_eq!((r.status, r.json()), (200, serde_json::json!({"b": 2})));
        let empty = b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n";
        let r = parse_response(empty, false).expect("empty");
        assert_eq!((r.status, r.json()), (404, Value::Null));
    }
}
