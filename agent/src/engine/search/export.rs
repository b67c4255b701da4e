//! `backup` of a search cluster: the definitions, then every document of
//! every selected index, written as the export format (`format.rs`) into
//! the upload's channel, a page at a time — memory is one page (about
//! `PAGE_BYTES` of documents) and the chunks in flight, whatever the
//! index size. The views are opened before the first document is read and
//! released whatever happens.

use std::collections::VecDeque;
use std::io;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;

use super::client::Client;
use super::cluster::{Identity, Reading};
use super::cursor::{self, View};
use super::definitions::{self, Kind};
use super::format::{self, ContentDigest, End, Header, IndexEnd, Meta, Named};
use super::selection::{self, Selected};
use crate::error::{Error, Result};
use crate::manifest::search::{IndexFacts, SearchFacts};

/// Points in time an export opens at most (a cluster's default limit is
/// 300, shared with every other client).
const MAX_POINTS_IN_TIME: usize = 100;
/// About this many bytes of documents a page asks for.
const PAGE_BYTES: usize = 8 << 20;
/// The first page of an index, before its document size is known.
const FIRST_PAGE: usize = 100;
/// Bytes gathered before they are handed to the upload.
const CHUNK: usize = 256 << 10;

/// What an export reads, taken before any document is.
pub struct Plan {
    pub identity: Identity,
    pub indices: Vec<Selected>,
    pub definitions: Vec<(Kind, Named)>,
    /// How documents are read (the cluster's dialect, or scrolls when
    /// there are more indices than points in time it keeps).
    reading: Reading,
    /// The point-in-time views, opened together (empty for scrolls,
    /// which open as each index is reached).
    views: Vec<View>,
}

/// Identifies the cluster, resolves `--indices`, reads the definitions and
/// opens the views.
pub async fn plan(client: &Client, identity: Identity, patterns: &[String]) -> Result<Plan> {
    let indices = selection::resolve(client, patterns, true).await?;
    let mut defs = Vec::new();
    for kind in Kind::ALL {
        for named in definitions::read(client, kind).await? {
            defs.push((kind, named));
        }
    }
    let mut views = Vec::new();
    // A cluster keeps at most `search.max_open_pit_context` (300 by
    // default) points in time open: more indices are read by scroll, each
    // index consistent on its own, and the manifest says so.
    let reading = match identity.reading() {
        Reading::PointInTime(_) if indices.len() > MAX_POINTS_IN_TIME => {
            tracing::warn!(indices = indices.len(), "more indices than points in time a cluster keeps open by default ({MAX_POINTS_IN_TIME}): each index is read by its own scroll");
            Reading::Scroll
        }
        other => other,
    };
    if let Reading::PointInTime(_) = reading {
        for index in &indices {
            match View::open(client, reading, &index.definition.name, 0).await {
                Ok(view) => views.push(view),
                Err(e) => {
                    for view in views {
                        view.close(client).await;
                    }
                    return Err(e);
                }
            }
        }
    }
    Ok(Plan {
        identity,
        indices,
        definitions: defs,
        views,
        reading,
    })
}

/// Writes the export into `tx`; the facts the manifest records once it
/// ended. The views are released however it ends.
pub async fn write(
    client: &Client,
    plan: Plan,
    tx: mpsc::Sender<io::Result<Bytes>>,
) -> Result<SearchFacts> {
    let Plan {
        identity,
        indices,
        definitions,
        views,
        reading,
    } = plan;
    let mut out = Writer {
        tx,
        buffer: Vec::with_capacity(CHUNK * 2),
    };
    let mut views: VecDeque<View> = views.into();
    let mut keeper = Keeper::new();
    let mut facts = Vec::new();
    let mut result = out
        .definitions(&identity, &indices, &definitions)
        .await
        .map_err(|e| e.into_error());
    let mut documents = 0;
    for index in &indices {
        if result.is_err() {
            break;
        }
        let view = match reading {
            Reading::PointInTime(_) => views.pop_front(),
            Reading::Scroll => None,
        };
        let waiting = Waiting {
            views: &mut views,
            keeper: &mut keeper,
        };
        let read = export_index(client, reading, index, view, &mut out, waiting).await;
        match read {
            Ok(digest) => {
                documents += digest.documents;
                facts.push(IndexFacts {
                    name: index.definition.name.clone(),
                    documents: digest.documents,
                    primary_shards: index.primary_shards,
                    content_digest: digest.hex(),
                    documents_after: None,
                    ..Default::default()
                });
            }
            Err(e) => result = Err(e),
        }
    }
    // Views not reached (a failure before them) are released too.
    for view in views {
        view.close(client).await;
    }
    result?;
    format::meta_line(
        &Meta::End(End {
            indices: facts.len() as u64,
            documents,
        }),
        &mut out.buffer,
    );
    out.flush().await.map_err(|e| e.into_error())?;
    Ok(SearchFacts {
        flavour: identity.flavour.as_str().into(),
        version: identity.version_text.clone(),
        cluster_name: identity.name.clone(),
        cluster_uuid: identity.uuid.clone(),
        mode: "export".into(),
        consistency: match reading {
            Reading::PointInTime(_) => "point_in_time".into(),
            Reading::Scroll => "per_index".into(),
        },
        indices: facts,
        not_kept: format::NOT_KEPT.iter().map(|s| s.to_string()).collect(),
        snapshot: None,
    })
}

/// Reads one index's documents into the export; its digest.
async fn export_index(
    client: &Client,
    reading: Reading,
    index: &Selected,
    view: Option<View>,
    out: &mut Writer,
    waiting: Waiting<'_>,
) -> Result<ContentDigest> {
    let name = &index.definition.name;
    let mut size = first_page(index);
    let mut view = match view {
        Some(view) => view,
        None => View::open(client, reading, name, size).await?,
    };
    let read = read_view(client, &mut view, &mut size, out, waiting).await;
    let total = view.total;
    view.close(client).await;
    let digest = read?;
    if digest.documents != total {
        return Err(client.side.error(format!(
            "index {name}: read {} documents, but its view holds {total}; nothing partial is stored",
            digest.documents
        )));
    }
    format::meta_line(
        &Meta::IndexEnd(IndexEnd {
            name: name.clone(),
            documents: digest.documents,
            content_digest: digest.hex(),
        }),
        &mut out.buffer,
    );
    tracing::info!(index = %name, documents = digest.documents, "index exported");
    Ok(digest)
}

async fn read_view(
    client: &Client,
    view: &mut View,
    size: &mut usize,
    out: &mut Writer,
    waiting: Waiting<'_>,
) -> Result<ContentDigest> {
    let mut digest = ContentDigest::default();
    // The next page is asked for before this one is written, so the
    // cluster searches while the agent digests and compresses: one page
    // more in memory, the two sides' time overlapped instead of added.
    let prefetch = |next: cursor::Next| {
        let client = client.clone();
        tokio::spawn(async move { cursor::fetch(&client, next).await })
    };
    let mut coming = prefetch(view.request(*size));
    loop {
        client.stopped()?;
        waiting.keeper.keep_alive(client, waiting.views).await?;
        let answer = coming.await.map_err(|e| {
            client
                .side
                .error(format!("reading index {} stopped: {e}", view.index))
        })??;
        let page = view.advance(client, &answer)?;
        let hits = page.hits.hits.len();
        if hits == 0 {
            return Ok(digest);
        }
        *size = format::next_page_size(*size, answer.len(), hits, PAGE_BYTES);
        coming = prefetch(view.request(*size));
        for hit in &page.hits.hits {
            let Some(raw) = hit.source else {
                return Err(client.side.error(format!(
                    "index {}: document {} came without _source; nothing partial is stored",
                    view.index, hit.id
                )));
            };
            let source = format::source_bytes(raw);
            let routing = hit.routing.as_deref();
            digest.add(&hit.id, routing, &source);
            format::document_line(&view.index, &hit.id, routing, &source, &mut out.buffer);
            // Handed on a chunk at a time, not a page: the compression
            // starts on a page while the rest of it is still digested,
            // and memory holds chunks, not pages, in flight.
            if out.buffer.len() >= CHUNK {
                out.flush().await.map_err(|e| e.into_error())?;
            }
        }
    }
}

/// The points in time of indices not read yet, kept alive while another
/// index is read: the cluster drops a view unused for its keep-alive, and a
/// large index can take longer than that to read.
struct Waiting<'a> {
    views: &'a mut VecDeque<View>,
    keeper: &'a mut Keeper,
}

struct Keeper {
    last: Instant,
}

impl Keeper {
    /// Well within the views' keep-alive (10 min, `cursor.rs`).
    const EVERY: Duration = Duration::from_secs(120);

    fn new() -> Keeper {
        Keeper {
            last: Instant::now(),
        }
    }

    async fn keep_alive(&mut self, client: &Client, waiting: &VecDeque<View>) -> Result<()> {
        if self.last.elapsed() < Self::EVERY {
            return Ok(());
        }
        for view in waiting {
            view.touch(client).await?;
        }
        self.last = Instant::now();
        Ok(())
    }
}

/// A scroll's page size is fixed when it opens: guessed from the index's
/// stored bytes per document (stored data is about half the JSON).
fn first_page(index: &Selected) -> usize {
    if index.estimate_documents == 0 {
        return FIRST_PAGE;
    }
    let per_document = (index.estimate_bytes * 2 / index.estimate_documents).max(64) as usize;
    (PAGE_BYTES / per_document).clamp(1, 5000)
}

/// The export's bytes on their way to the upload.
struct Writer {
    tx: mpsc::Sender<io::Result<Bytes>>,
    buffer: Vec<u8>,
}

/// The upload stopped taking bytes: it failed or was interrupted and says
/// why itself.
struct UploadGone;

impl UploadGone {
    fn into_error(self) -> Error {
        Error::source("the upload stopped before the export was written")
    }
}

impl From<UploadGone> for Error {
    fn from(gone: UploadGone) -> Error {
        gone.into_error()
    }
}

impl Writer {
    async fn flush(&mut self) -> std::result::Result<(), UploadGone> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(
            &mut self.buffer,
            Vec::with_capacity(CHUNK * 2),
        ));
        self.tx.send(Ok(chunk)).await.map_err(|_| UploadGone)
    }

    async fn definitions(
        &mut self,
        identity: &Identity,
        indices: &[Selected],
        definitions: &[(Kind, Named)],
    ) -> std::result::Result<(), UploadGone> {
        format::meta_line(
            &Meta::VerticeSearchExport(Header {
                format: format::VERSION,
                flavour: identity.flavour.as_str().into(),
                version: identity.version_text.clone(),
            }),
            &mut self.buffer,
        );
        for (kind, named) in definitions {
            format::meta_line(&kind.meta(named.clone()), &mut self.buffer);
        }
        for index in indices {
            format::meta_line(&Meta::Index(index.definition.clone()), &mut self.buffer);
        }
        self.flush().await
    }
}

#[cfg(test)]
mod tests {
    use super::super::format::IndexDefinition;
    use super::*;

    fn selected(docs: u64, bytes: u64) -> Selected {
        Selected {
            definition: IndexDefinition {
                name: "x".into(),
                settings: Default::default(),
                mappings: serde_json::Value::Null,
                aliases: Default::default(),
            },
            primary_shards: 1,
            estimate_documents: docs,
            estimate_bytes: bytes,
        }
    }

    #[test]
    fn a_scrolls_page_follows_the_indexs_document_size() {
        assert_eq!(first_page(&selected(0, 0)), FIRST_PAGE);
        // 1 KiB stored, 2 KiB of JSON: 4096 a page.
        assert_eq!(first_page(&selected(1000, 1024 * 1000)), 4096);
        // 10 MiB documents: one at a time.
        assert_eq!(first_page(&selected(10, 100 << 20)), 1);
        assert_eq!(first_page(&selected(1_000_000, 10)), 5000);
    }
}
