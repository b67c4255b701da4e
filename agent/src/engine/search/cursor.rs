//! Reading every document of an index in one consistent view: a point in
//! time paged by `_shard_doc` where the cluster sorts on it, else a scroll
//! (see `cluster::Reading`). A page with a failed shard or a timeout is an
//! error, never a short page: a missing shard's documents would be lost
//! silently otherwise.

use std::borrow::Cow;

use reqwest::Method;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};

use super::client::{segment, Client};
use super::cluster::{Flavour, Reading};
use crate::error::Result;

/// How long the cluster keeps a view between two pages.
const KEEP_ALIVE: &str = "10m";

/// One index's open view.
pub struct View {
    pub index: String,
    kind: Kind,
    /// The documents the view holds, as the view itself counted them.
    pub total: u64,
}

enum Kind {
    PointInTime {
        flavour: Flavour,
        id: String,
        after: Option<Vec<Value>>,
    },
    /// A scroll's id, and its first page, read when it was opened (a
    /// scroll's page size is fixed then).
    Scroll {
        id: Option<String>,
        first: Option<bytes::Bytes>,
    },
}

/// A page of hits, borrowing each document's `_source`.
#[derive(Deserialize)]
pub struct Page<'a> {
    #[serde(default)]
    pit_id: Option<String>,
    #[serde(default, rename = "_scroll_id")]
    scroll_id: Option<String>,
    #[serde(default)]
    timed_out: bool,
    #[serde(default, rename = "_shards")]
    shards: Shards,
    #[serde(borrow)]
    pub hits: Hits<'a>,
}

#[derive(Deserialize, Default)]
struct Shards {
    #[serde(default)]
    failed: u64,
    #[serde(default)]
    failures: Vec<Value>,
}

#[derive(Deserialize)]
pub struct Hits<'a> {
    #[serde(default)]
    total: Option<Value>,
    #[serde(borrow)]
    pub hits: Vec<Hit<'a>>,
}

#[derive(Deserialize)]
pub struct Hit<'a> {
    #[serde(rename = "_id", borrow)]
    pub id: Cow<'a, str>,
    #[serde(rename = "_routing", default, borrow)]
    pub routing: Option<Cow<'a, str>>,
    #[serde(rename = "_source", borrow, default)]
    pub source: Option<&'a RawValue>,
    #[serde(default)]
    sort: Option<Vec<Value>>,
}

impl View {
    /// Opens a view of `index`; `size` is a scroll's page size (fixed for
    /// its life).
    pub async fn open(client: &Client, reading: Reading, index: &str, size: usize) -> Result<View> {
        match reading {
            Reading::PointInTime(flavour) => {
                let path = match flavour {
                    Flavour::Elasticsearch => {
                        format!("{}/_pit?keep_alive={KEEP_ALIVE}", segment(index))
                    }
                    Flavour::OpenSearch => format!(
                        "{}/_search/point_in_time?keep_alive={KEEP_ALIVE}",
                        segment(index)
                    ),
                };
                let opened = client.call(Method::POST, &path, None).await?;
                let id = opened["id"]
                    .as_str()
                    .or_else(|| opened["pit_id"].as_str())
                    .ok_or_else(|| {
                        client.side.error(format!(
                            "{}: opening a point in time on {index} gave no id",
                            client.address()
                        ))
                    })?
                    .to_string();
                let mut view = View {
                    index: index.to_string(),
                    kind: Kind::PointInTime {
                        flavour,
                        id,
                        after: None,
                    },
                    total: 0,
                };
                // The view counts its own documents: the export checks it
                // read exactly these.
                let body = view.search_body(0, true);
                let counted = match send_search(client, "_search", &body).await {
                    Ok(answer) => parse_page(client, index, &answer).map(|p| total_of(&p)),
                    Err(e) => Err(e),
                };
                match counted {
                    Ok(total) => view.total = total,
                    Err(e) => {
                        view.close(client).await;
                        return Err(e);
                    }
                }
                Ok(view)
            }
            Reading::Scroll => {
                let path = format!("{}/_search?scroll={KEEP_ALIVE}", segment(index));
                let body = json!({"size": size, "sort": ["_doc"], "track_total_hits": true});
                let answer = send_search(client, &path, &body).await?;
                let page: Page<'_> = parse_page(client, index, &answer)?;
                let total = total_of(&page);
                let id = page.scroll_id.clone();
                Ok(View {
                    index: index.to_string(),
                    kind: Kind::Scroll {
                        id,
                        first: Some(answer),
                    },
                    total,
                })
            }
        }
    }

    fn search_body(&self, size: usize, count: bool) -> Value {
        match &self.kind {
            Kind::PointInTime { id, after, .. } => {
                let mut body = json!({
                    "size": size,
                    "pit": {"id": id, "keep_alive": KEEP_ALIVE},
                    "sort": [{"_shard_doc": "asc"}],
                    "track_total_hits": count,
                });
                if let Some(after) = after {
                    body["search_after"] = Value::Array(after.clone());
                }
                body
            }
            Kind::Scroll { id, .. } => json!({"scroll": KEEP_ALIVE, "scroll_id": id}),
        }
    }

    /// The next page's raw answer; an exhausted view answers an empty
    /// page, which the caller sees (`page.hits.hits`).
    pub async fn next(&mut self, client: &Client, size: usize) -> Result<bytes::Bytes> {
        fetch(client, self.request(size)).await
    }

    /// What fetching the next page takes — the view already moved past the
    /// last page read (`advance`), so the request can be sent while that
    /// page is still being written.
    pub fn request(&mut self, size: usize) -> Next {
        if let Kind::Scroll { first, .. } = &mut self.kind {
            if let Some(first) = first.take() {
                return Next::Ready(first);
            }
        }
        let path = match self.kind {
            Kind::PointInTime { .. } => "_search",
            Kind::Scroll { .. } => "_search/scroll",
        };
        Next::Search {
            path,
            body: self.search_body(size, false),
        }
    }

    /// Reads a page and moves the view past it.
    pub fn advance<'a>(&mut self, client: &Client, answer: &'a [u8]) -> Result<Page<'a>> {
        let page = parse_page(client, &self.index, answer)?;
        match &mut self.kind {
            Kind::PointInTime { id, after, .. } => {
                if let Some(newer) = &page.pit_id {
                    id.clone_from(newer);
                }
                if let Some(last) = page.hits.hits.last() {
                    *after = last.sort.clone();
                    if after.is_none() {
                        return Err(client.side.error(format!("{}: a page of {} came without sort values, so the next page cannot follow it", client.address(), self.index)));
                    }
                }
            }
            Kind::Scroll { id, .. } => {
                if page.scroll_id.is_some() {
                    id.clone_from(&page.scroll_id);
                }
            }
        }
        Ok(page)
    }

    /// Extends a view's keep-alive without reading from it (a point in
    /// time waiting for its turn).
    pub async fn touch(&self, client: &Client) -> Result<()> {
        if let Kind::PointInTime { .. } = self.kind {
            let body = self.search_body(0, false);
            send_search(client, "_search", &body).await?;
        }
        Ok(())
    }

    /// Releases the view on the cluster; a failure only costs the cluster
    /// memory until the keep-alive ends, so it is logged, not raised.
    pub async fn close(self, client: &Client) {
        let (path, body) = match &self.kind {
            Kind::PointInTime {
                flavour: Flavour::Elasticsearch,
                id,
                ..
            } => ("_pit", json!({"id": id})),
            Kind::PointInTime {
                flavour: Flavour::OpenSearch,
                id,
                ..
            } => ("_search/point_in_time", json!({"pit_id": [id]})),
            Kind::Scroll { id: Some(id), .. } => ("_search/scroll", json!({"scroll_id": [id]})),
            Kind::Scroll { id: None, .. } => return,
        };
        if let Err(e) = client.call(Method::DELETE, path, Some(&body)).await {
            tracing::warn!(index = %self.index, error = %e, "could not release the read view; the cluster drops it after {KEEP_ALIVE}");
        }
    }
}

/// The next page of a view: already read (a scroll's first), or a search
/// to send.
pub enum Next {
    Ready(bytes::Bytes),
    Search { path: &'static str, body: Value },
}

/// Fetches a page [`View::request`] described.
pub async fn fetch(client: &Client, next: Next) -> Result<bytes::Bytes> {
    match next {
        Next::Ready(page) => Ok(page),
        Next::Search { path, body } => send_search(client, path, &body).await,
    }
}

async fn send_search(client: &Client, path: &str, body: &Value) -> Result<bytes::Bytes> {
    let answer = client
        .send(
            Method::POST,
            path,
            Some((body.to_string().into_bytes(), "application/json")),
        )
        .await?;
    if !answer.status.is_success() {
        return Err(client.refused(&Method::POST, path, &answer));
    }
    Ok(answer.bytes)
}

fn parse_page<'a>(client: &Client, index: &str, answer: &'a [u8]) -> Result<Page<'a>> {
    let page: Page<'a> = serde_json::from_slice(answer).map_err(|e| {
        client.side.error(format!(
            "{}: a page of {index} is not a search answer ({e})",
            client.address()
        ))
    })?;
    if page.timed_out || page.shards.failed > 0 {
        let why = page
            .shards
            .failures
            .first()
            .map(|f| super::client::reason(&json!({"error": f["reason"].clone()})))
            .unwrap_or_else(|| "timed out".into());
        return Err(client.side.error(format!(
            "{}: reading {index} failed on {} shard(s) ({why}); nothing partial is stored",
            client.address(),
            page.shards.failed.max(1)
        )));
    }
    Ok(page)
}

/// `hits.total` as a number (`{"value": n}` since 7.0).
fn total_of(page: &Page<'_>) -> u64 {
    match &page.hits.total {
        Some(Value::Number(n)) => n.as_u64().unwrap_or(0),
        Some(v) => v["value"].as_u64().unwrap_or(0),
        None => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_borrows_sources_and_counts() {
        let raw =
            br#"{"pit_id":"p2","timed_out":false,"_shards":{"total":2,"successful":2,"failed":0},
            "hits":{"total":{"value":2,"relation":"eq"},"hits":[
            {"_index":"a","_id":"1","_routing":"r","_source":{"x":"\u00e9"},"sort":[0,5]},
            {"_index":"a","_id":"2","_source":{"y":[1,2]},"sort":[1,9]}]}}"#;
        let page: Page<'_> = serde_json::from_slice(raw).expect("page");
        assert_eq!(total_of(&page), 2);
        assert_eq!(
            page.hits.hits[0].source.expect("source").get(),
            r#"{"x":"\u00e9"}"#
        );
        assert_eq!(page.hits.hits[0].routing.as_deref(), Some("r"));
        assert_eq!(page.hits.hits[1].sort, Some(vec![json!(1), json!(9)]));
    }
}
