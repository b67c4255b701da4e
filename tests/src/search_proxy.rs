//! A small HTTP/1.1 reverse proxy on 127.0.0.1 in front of a search server
//! (`search.rs`): the jar-built servers have no security plugin, so the
//! proxy plays the cluster's security — it refuses requests without the
//! configured credentials with Elasticsearch's own 401 — and it injects
//! load: a 429 for the first N `_bulk` requests, or a 200 whose items are
//! all rejected for load. Every request's method, path and headers are
//! recorded (a secret must never reach a URL; an API key must reach its
//! header).
//!
//! One thread per client connection, with keep-alive (the agent's client
//! reuses its connections): requests are read one after the other (request
//! line, headers, a `Content-Length` or chunked body) and each is answered
//! before the next is read, over one upstream connection per client
//! connection (reopened when the server closed it). Stopped on drop: no
//! new connections, and every open one is closed.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};

/// Credentials the proxy requires (any one of those configured).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// `Authorization: Basic base64(user:password)`.
    Basic { user: String, password: String },
    /// `Authorization: ApiKey <key>`.
    ApiKey(String),
}

impl Auth {
    fn header(&self) -> String {
        match self {
            Auth::Basic { user, password } => format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
            ),
            Auth::ApiKey(key) => format!("ApiKey {key}"),
        }
    }
}

/// What the proxy does besides forwarding.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// Credentials required of every request (none: no check).
    pub auth: Vec<Auth>,
    /// The first this many requests whose path starts with `/_bulk` are
    /// answered 429 `es_rejected_execution_exception`, not forwarded.
    pub bulk_429: u32,
    /// `Some(k)`: one of every `k` bulk requests (the k-th, 2k-th, … that
    /// reached the forwarding step) is answered 200 with every item
    /// rejected 429, not forwarded.
    pub bulk_items_429_every: Option<u32>,
}

/// A request as the proxy received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// The request target as sent: path and query.
    pub path: String,
    /// Header names lowercased, values as sent.
    pub headers: Vec<(String, String)>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}

pub struct SearchProxy {
    pub port: u16,
    state: Arc<State>,
}

struct State {
    upstream: u16,
    config: Config,
    closed: AtomicBool,
    /// Whole bulk requests answered 429.
    injected: AtomicU32,
    /// Bulk requests answered with every item rejected.
    item_injections: AtomicU32,
    /// Bulk requests that reached the forwarding step (for `every`).
    bulk_seen: AtomicU32,
    /// Requests refused for their credentials.
    refused: AtomicU32,
    requests: Mutex<Vec<Recorded>>,
    streams: Mutex<Vec<TcpStream>>,
}

impl SearchProxy {
    /// Listens on a free loopback port and forwards to 127.0.0.1:`upstream`.
    pub fn start(upstream: u16, config: Config) -> SearchProxy {
        let port = crate::ports::free_port();
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind the search proxy");
        listener.set_nonblocking(true).expect("nonblocking");
        let state = Arc::new(State {
            upstream,
            config,
            closed: AtomicBool::new(false),
            injected: AtomicU32::new(0),
            item_injections: AtomicU32::new(0),
            bulk_seen: AtomicU32::new(0),
            refused: AtomicU32::new(0),
            requests: Mutex::new(Vec::new()),
            streams: Mutex::new(Vec::new()),
        });
        let shared = Arc::clone(&state);
        std::thread::spawn(move || {
            // Polled, so dropping the proxy closes the listener promptly.
            while !shared.closed.load(Ordering::SeqCst) {
                let client = match listener.accept() {
                    Ok((client, _)) => client,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                    Err(_) => continue,
                };
                let _ = client.set_nonblocking(false);
                if let Ok(clone) = client.try_clone() {
                    shared.streams.lock().expect("lock").push(clone);
                }
                let state = Arc::clone(&shared);
                std::thread::spawn(move || serve(client, &state));
            }
        });
        SearchProxy { port, state }
    }

    /// "http://127.0.0.1:PORT".
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// "http://USER@127.0.0.1:PORT".
    pub fn url_with_user(&self, user: &str) -> String {
        format!("http://{user}@127.0.0.1:{}", self.port)
    }

    /// Whole bulk requests answered 429 so far.
    pub fn injected(&self) -> u32 {
        self.state.injected.load(Ordering::SeqCst)
    }

    /// Bulk requests answered with every item rejected so far.
    pub fn item_injections(&self) -> u32 {
        self.state.item_injections.load(Ordering::SeqCst)
    }

    /// Requests refused 401 so far.
    pub fn refused(&self) -> u32 {
        self.state.refused.load(Ordering::SeqCst)
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.requests.lock().expect("lock").clone()
    }
}

impl Drop for SearchProxy {
    fn drop(&mut self) {
        self.state.closed.store(true, Ordering::SeqCst);
        for s in self.state.streams.lock().expect("lock").drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

/// A response's head as received, its status and its headers.
type Head = (Vec<u8>, u16, Vec<(String, String)>);

/// A request read off a connection.
struct Request {
    method: String,
    target: String,
    /// The request line and headers as received, up to the blank line.
    head: Vec<u8>,
    headers: Vec<(String, String)>,
    /// The body as received (chunk framing included, if chunked).
    raw_body: Vec<u8>,
    /// The body decoded.
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    fn closes(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn serve(client: TcpStream, state: &State) {
    let Ok(write_half) = client.try_clone() else {
        return;
    };
    let mut to_client = write_half;
    let mut from_client = BufReader::new(client);
    let mut upstream: Option<(BufReader<TcpStream>, TcpStream)> = None;
    loop {
        if state.closed.load(Ordering::SeqCst) {
            break;
        }
        let request = match read_request(&mut from_client) {
            Ok(Some(r)) => r,
            Ok(None) | Err(_) => break,
        };
        state.requests.lock().expect("lock").push(Recorded {
            method: request.method.clone(),
            path: request.target.clone(),
            headers: request.headers.clone(),
        });
        let keep = !request.closes();
        let answered = if !authorized(&request, &state.config.auth) {
            state.refused.fetch_add(1, Ordering::SeqCst);
            let reason = match basic_user(&request) {
                Some(user) => format!(
                    "unable to authenticate user [{user}] for REST request [{}]",
                    request.target
                ),
                None => format!(
                    "missing authentication credentials for REST request [{}]",
                    request.target
                ),
            };
            let body = json!({"error": {"type": "security_exception", "reason": reason,
                "root_cause": [{"type": "security_exception", "reason": reason}]}, "status": 401});
            respond(
                &mut to_client,
                401,
                "Unauthorized",
                &[(
                    "WWW-Authenticate",
                    "Basic realm=\"security\" charset=\"UTF-8\"",
                )],
                &body,
                request.method == "HEAD",
            )
        } else if let Some(body) = injection(&request, state) {
            let (status, text) = if body["status"] == 429 {
                (429, "Too Many Requests")
            } else {
                (200, "OK")
            };
            respond(&mut to_client, status, text, &[], &body, false)
        } else {
            forward(&request, state, &mut upstream, &mut to_client)
        };
        match answered {
            Ok(true) if keep => continue,
            _ => break,
        }
    }
    let _ = to_client.shutdown(Shutdown::Both);
    if let Some((_, up)) = upstream {
        let _ = up.shutdown(Shutdown::Both);
    }
}

fn authorized(request: &Request, required: &[Auth]) -> bool {
    if required.is_empty() {
        return true;
    }
    let Some(sent) = request.header("authorization") else {
        return false;
    };
    required.iter().any(|a| a.header() == sent.trim())
}

/// The user a Basic header names, for the 401's reason.
fn basic_user(request: &Request) -> Option<String> {
    let encoded = request.header("authorization")?.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8_lossy(&decoded).into_owned();
    Some(
        text.split_once(':')
            .map_or(text.clone(), |(u, _)| u.to_string()),
    )
}

/// The answer the proxy makes up instead of forwarding, if any.
fn injection(request: &Request, state: &State) -> Option<Value> {
    let path = request.target.trim_start_matches('/');
    if !path.starts_with("_bulk") {
        return None;
    }
    let take = state
        .injected
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
            (n < state.config.bulk_429).then_some(n + 1)
        });
    if take.is_ok() {
        return Some(json!({"error": {"type": "es_rejected_execution_exception",
            "reason": "rejected execution (injected)",
            "root_cause": [{"type": "es_rejected_execution_exception", "reason": "rejected execution (injected)"}]},
            "status": 429}));
    }
    let every = state.config.bulk_items_429_every?;
    let seen = state.bulk_seen.fetch_add(1, Ordering::SeqCst) + 1;
    if every == 0 || !seen.is_multiple_of(every) {
        return None;
    }
    state.item_injections.fetch_add(1, Ordering::SeqCst);
    Some(json!({"took": 1, "errors": true, "items": rejected_items(&request.body)}))
}

/// Every item of a bulk body, rejected for load.
fn rejected_items(body: &[u8]) -> Vec<Value> {
    let mut items = Vec::new();
    let mut lines = body
        .split(|&b| b == b'\n')
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace));
    while let Some(line) = lines.next() {
        let action: Value = serde_json::from_slice(line).unwrap_or(Value::Null);
        let Some((op, meta)) = action.as_object().and_then(|o| o.iter().next()) else {
            continue;
        };
        if op != "delete" {
            // The document's source line.
            lines.next();
        }
        items.push(
            json!({op.clone(): {"_index": meta["_index"], "_id": meta["_id"], "status": 429,
            "error": {"type": "es_rejected_execution_exception",
                "reason": "rejected execution of coordinating operation (injected)"}}}),
        );
    }
    items
}

fn respond(
    to: &mut TcpStream,
    status: u16,
    text: &str,
    extra: &[(&str, &str)],
    body: &Value,
    head: bool,
) -> std::io::Result<bool> {
    let body = body.to_string();
    let mut out = format!(
        "HTTP/1.1 {status} {text}\r\ncontent-type: application/json; charset=UTF-8\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in extra {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    if !head {
        out.push_str(&body);
    }
    to.write_all(out.as_bytes())?;
    to.flush()?;
    Ok(true)
}

/// Sends the request upstream and relays the answer; whether the client
/// connection may carry another request.
fn forward(
    request: &Request,
    state: &State,
    upstream: &mut Option<(BufReader<TcpStream>, TcpStream)>,
    to_client: &mut TcpStream,
) -> std::io::Result<bool> {
    // A kept-alive upstream connection the server closed meanwhile fails
    // on the first write or read: open a fresh one once, before anything
    // went to the client.
    for attempt in 0..2 {
        if upstream.is_none() {
            let stream = TcpStream::connect(("127.0.0.1", state.upstream))?;
            if let Ok(clone) = stream.try_clone() {
                state.streams.lock().expect("lock").push(clone);
            }
            let write = stream.try_clone()?;
            *upstream = Some((BufReader::new(stream), write));
        }
        let (reader, writer) = upstream.as_mut().expect("upstream");
        let sent = writer
            .write_all(&request.head)
            .and_then(|()| writer.write_all(&request.raw_body))
            .and_then(|()| writer.flush());
        let head = sent.and_then(|()| read_head(reader));
        match head {
            Ok(Some(head)) => {
                let (client_open, upstream_open) = relay(request, head, reader, to_client)?;
                if !upstream_open {
                    *upstream = None;
                }
                return Ok(client_open);
            }
            Ok(None) | Err(_) if attempt == 0 => {
                *upstream = None;
            }
            Ok(None) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Err(e) => return Err(e),
        }
    }
    Err(std::io::ErrorKind::UnexpectedEof.into())
}

/// Relays one response whose head is read; its body by Content-Length,
/// chunks or the end of the connection. Whether the client's and the
/// upstream connection stay open.
fn relay(
    request: &Request,
    head: Head,
    reader: &mut BufReader<TcpStream>,
    to_client: &mut TcpStream,
) -> std::io::Result<(bool, bool)> {
    let (raw_head, status, headers) = head;
    to_client.write_all(&raw_head)?;
    let no_body =
        request.method == "HEAD" || status == 204 || status == 304 || (100..200).contains(&status);
    let upstream_closes =
        header(&headers, "connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
    if no_body {
    } else if header(&headers, "transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        let (raw, _) = read_chunked(reader)?;
        to_client.write_all(&raw)?;
    } else if let Some(length) = header(&headers, "content-length") {
        let length: u64 = length
            .trim()
            .parse()
            .map_err(|_| std::io::Error::other("bad content-length"))?;
        let copied = std::io::copy(&mut reader.by_ref().take(length), to_client)?;
        if copied != length {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    } else {
        // Delimited by the end of the connection: so is the client's.
        std::io::copy(reader, to_client)?;
        to_client.flush()?;
        return Ok((false, false));
    }
    to_client.flush()?;
    Ok((true, !upstream_closes))
}

/// Reads one request; `None` at a clean end of the connection.
fn read_request(from: &mut BufReader<TcpStream>) -> std::io::Result<Option<Request>> {
    let mut head = Vec::new();
    let mut line = Vec::new();
    // The request line (blank lines before it are tolerated).
    loop {
        line.clear();
        if from.read_until(b'\n', &mut line)? == 0 {
            return Ok(None);
        }
        if !line.iter().all(u8::is_ascii_whitespace) {
            break;
        }
    }
    head.extend_from_slice(&line);
    let request_line = String::from_utf8_lossy(&line).trim().to_string();
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let target = parts.next().unwrap_or_default().to_string();
    let headers = read_headers(from, &mut head)?;
    let (raw_body, body) = if header(&headers, "transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        read_chunked(from)?
    } else if let Some(length) = header(&headers, "content-length") {
        let length: usize = length
            .trim()
            .parse()
            .map_err(|_| std::io::Error::other("bad content-length"))?;
        let mut body = vec![0; length];
        from.read_exact(&mut body)?;
        (body.clone(), body)
    } else {
        (Vec::new(), Vec::new())
    };
    Ok(Some(Request {
        method,
        target,
        head,
        headers,
        raw_body,
        body,
    }))
}

/// Reads a response's status line and headers; `None` when the server
/// closed the connection before answering.
fn read_head(from: &mut BufReader<TcpStream>) -> std::io::Result<Option<Head>> {
    let mut head = Vec::new();
    let mut line = Vec::new();
    if from.read_until(b'\n', &mut line)? == 0 {
        return Ok(None);
    }
    head.extend_from_slice(&line);
    let status = String::from_utf8_lossy(&line)
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| std::io::Error::other("bad status line"))?;
    let headers = read_headers(from, &mut head)?;
    Ok(Some((head, status, headers)))
}

/// Header lines up to the blank one, appended raw to `head`; names
/// lowercased.
fn read_headers(
    from: &mut BufReader<TcpStream>,
    head: &mut Vec<u8>,
) -> std::io::Result<Vec<(String, String)>> {
    let mut headers = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        if from.read_until(b'\n', &mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        head.extend_from_slice(&line);
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\r', '\n']);
        if text.is_empty() {
            return Ok(headers);
        }
        if let Some((k, v)) = text.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
}

/// A chunked body: (as received, decoded).
fn read_chunked(from: &mut BufReader<TcpStream>) -> std::io::Result<(Vec<u8>, Vec<u8>)> {
    let (mut raw, mut body) = (Vec::new(), Vec::new());
    let mut line = Vec::new();
    loop {
        line.clear();
        if from.read_until(b'\n', &mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        raw.extend_from_slice(&line);
        let text = String::from_utf8_lossy(&line);
        let size_hex = text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16)
            .map_err(|_| std::io::Error::other("bad chunk size"))?;
        if size == 0 {
            // Trailers, up to the blank line.
            loop {
                line.clear();
                if from.read_until(b'\n', &mut line)? == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                raw.extend_from_slice(&line);
                if line.iter().all(u8::is_ascii_whitespace) {
                    return Ok((raw, body));
                }
            }
        }
        let mut chunk = vec![0; size + 2];
        from.read_exact(&mut chunk)?;
        raw.extend_from_slice(&chunk);
        body.extend_from_slice(&chunk[..size]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bulk_item_is_rejected_in_order() {
        let body = b"{\"index\":{\"_index\":\"a\",\"_id\":\"1\"}}\n{\"x\":1}\n\
                     {\"delete\":{\"_index\":\"a\",\"_id\":\"2\"}}\n\
                     {\"index\":{\"_index\":\"b\",\"_id\":\"3\"}}\n{\"y\":2}\n";
        let items = rejected_items(body);
        assert_eq!(items.len(), 3);
        assert_eq!(items[0]["index"]["_id"], "1");
        assert_eq!(items[1]["delete"]["_id"], "2");
        assert_eq!(items[2]["index"]["_index"], "b");
        assert_eq!(items[2]["index"]["status"], 429);
    }

    #[test]
    fn credentials_are_compared_as_their_header() {
        let basic = Auth::Basic {
            user: "u".into(),
            password: "p".into(),
        };
        assert_eq!(basic.header(), "Basic dTpw");
        assert_eq!(Auth::ApiKey("k".into()).header(), "ApiKey k");
    }
}
