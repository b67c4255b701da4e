//! `scripts/bench-search`'s plain client: generates the documents, loads
//! them, and is the baseline the agent is measured against, doing what the
//! agent does where it matters (see agent/src/engine/search/): a scroll
//! sorted by `_doc` whose page size follows the index's bytes per document
//! (about 8 MiB a page, export.rs `first_page`); `_bulk` requests of at most
//! 8 MiB or 2000 documents, one at a time, into an index created with
//! replicas 0 and refresh -1, refreshed and counted at the end (load.rs,
//! restore.rs). Plain HTTP/1.1 on one keep-alive connection (std only).
//!
//! ```text
//! search-bench-client generate --mb N --out FILE      ~N MB (10^6) of documents as bulk NDJSON
//! search-bench-client bulk --port P --file FILE --index I [--shards N]
//!                                                     create I (replicas 0, refresh -1), load FILE,
//!                                                     put refresh back, refresh, count
//! search-bench-client scroll --port P --index I       read every document into /dev/null
//! search-bench-client count --port P --index I        documents in I
//! search-bench-client settle --port P                 flush, then wait until no merge runs
//! ```
//!
//! Each prints one line of `key=value` pairs: generate and bulk
//! `docs=N bytes=B` (bytes: the documents' `_source`), scroll `docs=N
//! bytes=B pages=P page_size=S` (bytes: the search answers), count `docs=N`,
//! settle `seconds=S`.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::{json, Value};

/// A page asks for about this many bytes of documents (the agent's
/// `PAGE_BYTES`)…
const PAGE_BYTES: u64 = 8 << 20;
/// …and at most this many (the agent's clamp).
const MAX_PAGE: u64 = 5000;
/// A bulk request holds at most this many bytes (the agent's
/// `BATCH_BYTES`)…
const BATCH_BYTES: usize = 8 << 20;
/// …and this many documents (`BATCH_DOCUMENTS`).
const BATCH_DOCUMENTS: usize = 2000;
const KEEP_ALIVE: &str = "10m";
/// A refresh or count after a 1 GB load on a busy 2-core machine is slow.
const IO_TIMEOUT: Duration = Duration::from_secs(600);

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: search-bench-client generate --mb N --out FILE | bulk --port P --file FILE --index I [--shards N] | scroll --port P --index I | count --port P --index I | settle --port P";
    let command = args.first().context(usage)?;
    let flag = |name: &str| -> Result<&str> {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map(String::as_str)
            .with_context(|| format!("{command} needs {name}; {usage}"))
    };
    let port = || -> Result<u16> { flag("--port")?.parse().context("--port") };
    match command.as_str() {
        "generate" => generate(flag("--mb")?.parse().context("--mb")?, flag("--out")?),
        "bulk" => {
            let shards = match flag("--shards") {
                Ok(n) => n.parse().context("--shards")?,
                Err(_) => 1,
            };
            bulk(port()?, flag("--file")?, flag("--index")?, shards)
        }
        "scroll" => scroll(port()?, flag("--index")?),
        "count" => {
            let mut conn = Conn::open(port()?)?;
            println!("docs={}", count(&mut conn, flag("--index")?)?);
            Ok(())
        }
        "settle" => settle(port()?),
        other => bail!("unknown command {other}; {usage}"),
    }
}

// ---------------------------------------------------------------- HTTP

/// One keep-alive HTTP/1.1 connection to 127.0.0.1.
struct Conn {
    port: u16,
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    head: Vec<u8>,
}

impl Conn {
    fn open(port: u16) -> Result<Conn> {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        let writer = stream.try_clone()?;
        Ok(Conn {
            port,
            reader: BufReader::with_capacity(1 << 16, stream),
            writer,
            head: Vec::with_capacity(512),
        })
    }

    /// Sends a request and reads the whole answer into `out` (cleared
    /// first); its status.
    fn send(
        &mut self,
        method: &str,
        path: &str,
        body: Option<(&str, &[u8])>,
        out: &mut Vec<u8>,
    ) -> Result<u16> {
        self.head.clear();
        write!(
            self.head,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAccept: application/json\r\n",
            self.port
        )?;
        match body {
            Some((content_type, bytes)) => write!(
                self.head,
                "Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
                bytes.len()
            )?,
            None => self.head.extend_from_slice(b"Content-Length: 0\r\n\r\n"),
        }
        self.writer.write_all(&self.head)?;
        if let Some((_, bytes)) = body {
            self.writer.write_all(bytes)?;
        }
        self.read_answer(method == "HEAD", out)
            .with_context(|| format!("{method} {path}"))
    }

    fn read_answer(&mut self, head_only: bool, out: &mut Vec<u8>) -> Result<u16> {
        out.clear();
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("bad status line {line:?}"))?;
        let (mut length, mut chunked) = (None, false);
        loop {
            line.clear();
            if self.reader.read_line(&mut line)? == 0 {
                bail!("the connection closed in the headers");
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                let value = value.trim();
                if name.eq_ignore_ascii_case("content-length") {
                    length = Some(value.parse::<usize>().context("Content-Length")?);
                } else if name.eq_ignore_ascii_case("transfer-encoding") {
                    chunked = value.eq_ignore_ascii_case("chunked");
                }
            }
        }
        if head_only {
            return Ok(status);
        }
        if chunked {
            loop {
                line.clear();
                self.reader.read_line(&mut line)?;
                let size = usize::from_str_radix(
                    line.trim_end().split(';').next().unwrap_or_default(),
                    16,
                )
                .with_context(|| format!("bad chunk size {line:?}"))?;
                if size == 0 {
                    // Trailers end with an empty line.
                    loop {
                        line.clear();
                        if self.reader.read_line(&mut line)? == 0 || line.trim_end().is_empty() {
                            break;
                        }
                    }
                    break;
                }
                let start = out.len();
                out.resize(start + size, 0);
                self.reader.read_exact(&mut out[start..])?;
                line.clear();
                self.reader.read_line(&mut line)?;
            }
        } else {
            let length = length.context("an answer with neither length nor chunks")?;
            out.resize(length, 0);
            self.reader.read_exact(out)?;
        }
        Ok(status)
    }

    /// A JSON request that must succeed; its answer.
    fn call(&mut self, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
        let bytes = body.map(|b| b.to_string().into_bytes());
        let mut out = Vec::new();
        let status = self.send(
            method,
            path,
            bytes.as_deref().map(|b| ("application/json", b)),
            &mut out,
        )?;
        let answer: Value = serde_json::from_slice(&out).unwrap_or(Value::Null);
        if !(200..300).contains(&status) {
            bail!(
                "{method} {path}: HTTP {status}: {}",
                String::from_utf8_lossy(&out)
            );
        }
        Ok(answer)
    }
}

fn count(conn: &mut Conn, index: &str) -> Result<u64> {
    let answer = conn.call("GET", &format!("/{index}/_count"), None)?;
    answer["count"]
        .as_u64()
        .with_context(|| format!("no count in {answer}"))
}

// --------------------------------------------------------------- scroll

#[derive(Deserialize)]
struct Page {
    #[serde(rename = "_scroll_id")]
    scroll_id: Option<String>,
    #[serde(default)]
    timed_out: bool,
    #[serde(rename = "_shards")]
    shards: Shards,
    hits: Hits,
}

#[derive(Deserialize)]
struct Shards {
    failed: u64,
}

#[derive(Deserialize)]
struct Hits {
    total: Option<Value>,
    hits: Vec<IgnoredAny>,
}

/// Reads every document of `index` with a scroll sorted by `_doc`, each
/// answer parsed (to count its hits and take the scroll id) and written to
/// /dev/null.
fn scroll(port: u16, index: &str) -> Result<()> {
    let mut conn = Conn::open(port)?;
    let mut sink = File::create("/dev/null")?;
    // The agent's first_page: stored bytes are about half the JSON.
    let rows = conn.call(
        "GET",
        &format!("/_cat/indices/{index}?format=json&bytes=b&h=docs.count,pri.store.size"),
        None,
    )?;
    let number = |v: &Value| -> u64 {
        v.as_str()
            .and_then(|s| s.parse().ok())
            .or_else(|| v.as_u64())
            .unwrap_or(0)
    };
    let (estimate_docs, estimate_bytes) = (
        number(&rows[0]["docs.count"]),
        number(&rows[0]["pri.store.size"]),
    );
    let size = match (estimate_bytes * 2).checked_div(estimate_docs) {
        None => 100,
        Some(per_document) => (PAGE_BYTES / per_document.max(64)).clamp(1, MAX_PAGE),
    };
    let open = json!({"size": size, "sort": ["_doc"], "track_total_hits": true}).to_string();
    let mut answer = Vec::with_capacity(16 << 20);
    let mut status = conn.send(
        "POST",
        &format!("/{index}/_search?scroll={KEEP_ALIVE}"),
        Some(("application/json", open.as_bytes())),
        &mut answer,
    )?;
    let (mut docs, mut bytes, mut pages, mut total) = (0u64, 0u64, 0u64, None);
    let mut id: Option<String> = None;
    loop {
        if status != 200 {
            bail!(
                "scrolling {index}: HTTP {status}: {}",
                String::from_utf8_lossy(&answer)
            );
        }
        let page: Page = serde_json::from_slice(&answer).context("a scroll page")?;
        if page.timed_out || page.shards.failed > 0 {
            bail!("scrolling {index}: a page timed out or failed on a shard");
        }
        if total.is_none() {
            total = page.hits.total.as_ref().map(|t| match t {
                Value::Number(n) => n.as_u64().unwrap_or(0),
                v => v["value"].as_u64().unwrap_or(0),
            });
        }
        sink.write_all(&answer)?;
        bytes += answer.len() as u64;
        pages += 1;
        if page.scroll_id.is_some() {
            id = page.scroll_id;
        }
        if page.hits.hits.is_empty() {
            break;
        }
        docs += page.hits.hits.len() as u64;
        let next = json!({"scroll": KEEP_ALIVE, "scroll_id": id}).to_string();
        status = conn.send(
            "POST",
            "/_search/scroll",
            Some(("application/json", next.as_bytes())),
            &mut answer,
        )?;
    }
    if let Some(id) = id {
        conn.call(
            "DELETE",
            "/_search/scroll",
            Some(&json!({"scroll_id": [id]})),
        )?;
    }
    if total != Some(docs) {
        bail!("scrolling {index}: read {docs} documents, the scroll held {total:?}");
    }
    println!("docs={docs} bytes={bytes} pages={pages} page_size={size}");
    Ok(())
}

// ----------------------------------------------------------------- bulk

#[derive(Deserialize)]
struct BulkAnswer {
    errors: bool,
    items: Vec<IgnoredAny>,
}

/// Creates `index` as the agent's restore does (its mappings; replicas 0,
/// refresh off), loads the bulk file into it a request at a time, puts
/// the refresh back, refreshes and counts.
fn bulk(port: u16, file: &str, index: &str, shards: u32) -> Result<()> {
    let mut conn = Conn::open(port)?;
    conn.call(
        "PUT",
        &format!("/{index}"),
        Some(&json!({
            "settings": {
                "index.number_of_shards": shards,
                "index.number_of_replicas": 0,
                "index.refresh_interval": "-1",
            },
            "mappings": mappings(),
        })),
    )?;
    let mut input = BufReader::with_capacity(1 << 20, File::open(file).context("the bulk file")?);
    let path = format!("/{index}/_bulk");
    let mut body = Vec::with_capacity(BATCH_BYTES + (1 << 20));
    let mut answer = Vec::new();
    let (mut docs, mut bytes, mut batch) = (0u64, 0u64, 0usize);
    loop {
        // An action line, then the document's.
        let action = input.read_until(b'\n', &mut body)?;
        let source = if action == 0 {
            0
        } else {
            input.read_until(b'\n', &mut body)?
        };
        if action > 0 {
            if source == 0 {
                bail!("the bulk file ends after an action line");
            }
            batch += 1;
            docs += 1;
            bytes += source as u64 - 1;
        }
        let last = action == 0;
        if batch > 0 && (last || body.len() >= BATCH_BYTES || batch >= BATCH_DOCUMENTS) {
            let status = conn.send(
                "POST",
                &path,
                Some(("application/x-ndjson", &body)),
                &mut answer,
            )?;
            if status != 200 {
                bail!(
                    "bulk into {index}: HTTP {status}: {}",
                    String::from_utf8_lossy(&answer[..answer.len().min(2000)])
                );
            }
            let parsed: BulkAnswer = serde_json::from_slice(&answer).context("a bulk answer")?;
            if parsed.errors || parsed.items.len() != batch {
                let full: Value = serde_json::from_slice(&answer)?;
                let failed = full["items"]
                    .as_array()
                    .and_then(|items| items.iter().find(|i| i["index"]["error"].is_object()))
                    .cloned()
                    .unwrap_or(Value::Null);
                bail!(
                    "bulk into {index}: {} items for {batch} documents, first failure {failed}",
                    parsed.items.len()
                );
            }
            body.clear();
            batch = 0;
        }
        if last {
            break;
        }
    }
    conn.call(
        "PUT",
        &format!("/{index}/_settings"),
        Some(&json!({"index": {"refresh_interval": null}})),
    )?;
    conn.call("POST", &format!("/{index}/_refresh"), None)?;
    let held = count(&mut conn, index)?;
    if held != docs {
        bail!("{index} holds {held} documents after loading {docs}");
    }
    println!("docs={docs} bytes={bytes}");
    Ok(())
}

/// Flushes every index, then waits until no merge runs (at most 10
/// minutes), so a load's merges do not run into the next measurement.
fn settle(port: u16) -> Result<()> {
    let started = Instant::now();
    let mut conn = Conn::open(port)?;
    conn.call("POST", "/_flush", None)?;
    let mut quiet = 0;
    while quiet < 3 && started.elapsed() < Duration::from_secs(600) {
        let stats = conn.call("GET", "/_nodes/stats/indices/merge", None)?;
        let running: u64 = stats["nodes"]
            .as_object()
            .map(|nodes| {
                nodes
                    .values()
                    .map(|n| n["indices"]["merges"]["current"].as_u64().unwrap_or(0))
                    .sum()
            })
            .unwrap_or(0);
        quiet = if running == 0 { quiet + 1 } else { 0 };
        std::thread::sleep(Duration::from_millis(500));
    }
    println!("seconds={:.1}", started.elapsed().as_secs_f64());
    Ok(())
}

/// The source index's mappings: ECS-like log events (strings keyword by
/// default, the free text `text`) and long documents with nested sections.
fn mappings() -> Value {
    let text = json!({"type": "text"});
    json!({
        "dynamic_templates": [{"strings": {
            "match_mapping_type": "string",
            "mapping": {"type": "keyword", "ignore_above": 1024}
        }}],
        "properties": {
            "@timestamp": {"type": "date"},
            "message": text,
            "event": {"properties": {"duration": {"type": "long"}}},
            "host": {"properties": {"ip": {"type": "ip"}}},
            "client": {"properties": {
                "ip": {"type": "ip"},
                "geo": {"properties": {"location": {"type": "geo_point"}}}
            }},
            "http": {"properties": {
                "request": {"properties": {"bytes": {"type": "long"}}},
                "response": {"properties": {"bytes": {"type": "long"}, "status_code": {"type": "short"}}}
            }},
            "user_agent": {"properties": {"original": {
                "type": "text",
                "fields": {"keyword": {"type": "keyword", "ignore_above": 256}}
            }}},
            "error": {"properties": {"message": text, "stack_trace": {"type": "text", "index": false}}},
            "document": {"properties": {
                "title": text,
                "summary": text,
                "body": text,
                "sections": {"type": "nested", "properties": {"heading": text, "text": text}}
            }}
        }
    })
}

// ------------------------------------------------------------- generate

/// SplitMix64: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }

    fn hex(&mut self, out: &mut String, digits: usize) {
        while out.len() < digits {
            out.push_str(&format!("{:016x}", self.next_u64()));
        }
        out.truncate(digits);
    }
}

#[rustfmt::skip]
const WORDS: &[&str] = &[
    "order", "payment", "customer", "request", "timeout", "retry", "connection", "database",
    "cache", "miss", "hit", "upstream", "latency", "user", "session", "token", "expired",
    "invalid", "queue", "worker", "job", "completed", "failed", "started", "shipping", "address",
    "inventory", "reserved", "released", "the", "a", "of", "to", "in", "for", "with", "on",
    "after", "before", "while", "because", "cannot", "could", "not", "was", "is", "has", "been",
    "price", "discount", "coupon", "applied", "checkout", "cart", "item", "items", "warehouse",
    "carrier", "label", "printed", "refund", "issued", "authorised", "declined", "fraud",
    "score", "threshold", "exceeded", "region", "replica", "primary", "leader", "election",
    "snapshot", "backup", "restore", "index", "shard", "segment", "merge", "flush", "commit",
    "rollback", "transaction", "lock", "acquired", "contention", "deadlock", "detected",
    "certificate", "rotation", "scheduled", "deployment", "rollout", "canary", "healthy",
    "degraded", "recovered", "café", "Zürich", "naïve", "façade", "東京", "Straße", "résumé",
    "São", "Paulo", "Kraków", "Malmö", "quarterly", "report", "revenue", "forecast", "growth",
    "margin", "supplier", "contract", "renewal", "agreement", "policy", "compliance", "audit",
];
const SERVICES: &[&str] = &[
    "checkout",
    "payments",
    "catalog",
    "search",
    "inventory",
    "shipping",
    "accounts",
    "gateway",
];
const METHODS: &[&str] = &[
    "GET", "GET", "GET", "POST", "POST", "PUT", "DELETE", "PATCH",
];
const LEVELS: &[&str] = &[
    "info", "info", "info", "info", "info", "debug", "warn", "error",
];
const COUNTRIES: &[(&str, &str, f64, f64)] = &[
    ("DE", "Hamburg", 53.55, 9.99),
    ("FR", "Lyon", 45.76, 4.83),
    ("US", "Seattle", 47.61, -122.33),
    ("BR", "São Paulo", -23.55, -46.63),
    ("JP", "東京", 35.68, 139.69),
    ("PL", "Kraków", 50.06, 19.94),
    ("CH", "Zürich", 47.37, 8.54),
];
const AGENTS: &[&str] = &[
    "Mozilla/5.0 (X11; Linux x86_64; rv:131.0) Gecko/20100101 Firefox/131.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
    "okhttp/4.12.0",
    "curl/8.5.0",
];

fn words(rng: &mut Rng, out: &mut String, n: u64) {
    for i in 0..n {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(rng.pick(WORDS));
    }
}

fn timestamp(out: &mut String, n: u64) {
    // One event every ~10 ms from 2026-11-01.
    let ms = n * 10;
    let (s, ms) = (ms / 1000, ms % 1000);
    let (day, s) = (s / 86400, s % 86400);
    out.push_str(&format!(
        "2026-11-{:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        1 + day % 28,
        s / 3600,
        s / 60 % 60,
        s % 60
    ));
}

/// A log event of about 600 bytes.
fn event(rng: &mut Rng, n: u64, out: &mut String) {
    let service = rng.pick(SERVICES);
    let level = rng.pick(LEVELS);
    let (country, city, lat, lon) = COUNTRIES[rng.below(COUNTRIES.len() as u64) as usize];
    let status = match rng.below(20) {
        0 => 500,
        1 | 2 => 404,
        3 => 201,
        _ => 200,
    };
    let mut trace = String::new();
    rng.hex(&mut trace, 32);
    out.push_str("{\"@timestamp\":\"");
    timestamp(out, n);
    out.push_str(&format!(
        "\",\"event\":{{\"kind\":\"event\",\"outcome\":\"{}\",\"duration\":{}}}",
        if status >= 500 { "failure" } else { "success" },
        rng.below(2_000_000_000)
    ));
    out.push_str(&format!(
        ",\"service\":{{\"name\":\"{service}\",\"version\":\"3.{}\"}}",
        rng.below(20)
    ));
    out.push_str(&format!(
        ",\"host\":{{\"name\":\"{service}-{:x}\",\"ip\":\"10.4.{}.{}\"}}",
        rng.below(1 << 20),
        rng.below(256),
        rng.below(256)
    ));
    out.push_str(&format!(
        ",\"http\":{{\"request\":{{\"method\":\"{}\",\"bytes\":{}}},\"response\":{{\"status_code\":{status},\"bytes\":{}}}}}",
        rng.pick(METHODS),
        rng.below(4000),
        rng.below(100_000)
    ));
    out.push_str(&format!(
        ",\"url\":{{\"path\":\"/api/v2/{service}/{}/items\"}}",
        rng.below(1_000_000)
    ));
    out.push_str(&format!(
        ",\"client\":{{\"ip\":\"203.0.{}.{}\",\"geo\":{{\"country_iso_code\":\"{country}\",\"city_name\":\"{city}\",\"location\":{{\"lat\":{lat},\"lon\":{lon}}}}}}}",
        rng.below(256),
        rng.below(256)
    ));
    if rng.below(3) == 0 {
        out.push_str(&format!(
            ",\"user_agent\":{{\"original\":\"{}\"}}",
            rng.pick(AGENTS)
        ));
    }
    out.push_str(&format!(
        ",\"user\":{{\"id\":\"u-{:07}\"}}",
        rng.below(10_000_000)
    ));
    out.push_str(&format!(
        ",\"trace\":{{\"id\":\"{trace}\"}},\"log\":{{\"level\":\"{level}\"}},\"message\":\""
    ));
    let n_words = 4 + rng.below(9);
    words(rng, out, n_words);
    if rng.below(10) == 0 {
        // An escaped quotation, as in real messages.
        out.push_str(" \\\"");
        words(rng, out, 2);
        out.push_str("\\\"");
    }
    out.push('"');
    if level == "error" {
        out.push_str(",\"error\":{\"message\":\"");
        words(rng, out, 6);
        out.push_str("\"}");
    }
    out.push('}');
}

/// A long document of 5 to 20 KB with nested sections.
fn document(rng: &mut Rng, n: u64, out: &mut String) {
    let target = out.len() + 5000 + rng.below(15_000) as usize;
    let mut id = String::new();
    rng.hex(&mut id, 12);
    out.push_str("{\"@timestamp\":\"");
    timestamp(out, n);
    out.push_str(&format!(
        "\",\"event\":{{\"dataset\":\"cms.article\",\"kind\":\"document\"}},\"service\":{{\"name\":\"{}\"}}",
        rng.pick(SERVICES)
    ));
    out.push_str(&format!(
        ",\"document\":{{\"id\":\"doc-{id}\",\"language\":\"{}\",\"author\":{{\"id\":\"a-{}\",\"name\":\"",
        rng.pick(&["en", "de", "fr", "ja", "pl"]),
        rng.below(5000)
    ));
    words(rng, out, 2);
    out.push_str("\"},\"title\":\"");
    words(rng, out, 8);
    out.push_str("\",\"summary\":\"");
    words(rng, out, 40);
    out.push_str("\",\"body\":\"");
    let body_end = out.len() + target.saturating_sub(out.len()) / 2;
    while out.len() < body_end {
        words(rng, out, 12);
        out.push_str(". ");
    }
    out.push_str("\",\"sections\":[");
    let mut first = true;
    while out.len() < target {
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str("{\"heading\":\"");
        words(rng, out, 4);
        out.push_str("\",\"text\":\"");
        let count = 80 + rng.below(120);
        words(rng, out, count);
        out.push_str("\"}");
    }
    out.push_str("],\"tags\":[\"");
    out.push_str(rng.pick(WORDS));
    out.push_str("\",\"");
    out.push_str(rng.pick(WORDS));
    out.push_str("\"]}}");
}

/// ~`mb` × 10^6 bytes of documents as bulk NDJSON (action lines with an
/// `_id` only: the index is named by the request's path); one in fifty is
/// a long document.
fn generate(mb: u64, path: &str) -> Result<()> {
    let want = mb * 1_000_000;
    let mut out = BufWriter::with_capacity(1 << 20, File::create(path).context("the bulk file")?);
    let mut rng = Rng(0x5EED_5EA2_C4B3_4C11);
    let (mut docs, mut bytes) = (0u64, 0u64);
    let mut source = String::with_capacity(32 << 10);
    let mut id = String::with_capacity(32);
    while bytes < want {
        source.clear();
        id.clear();
        if rng.below(50) == 0 {
            document(&mut rng, docs, &mut source);
        } else {
            event(&mut rng, docs, &mut source);
        }
        rng.hex(&mut id, 20);
        writeln!(out, "{{\"index\":{{\"_id\":\"{id}\"}}}}")?;
        out.write_all(source.as_bytes())?;
        out.write_all(b"\n")?;
        docs += 1;
        bytes += source.len() as u64;
    }
    out.flush()?;
    println!("docs={docs} bytes={bytes}");
    Ok(())
}
