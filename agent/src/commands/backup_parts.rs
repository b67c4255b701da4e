//! The parts of a backup beside its main stream (a parallel PostgreSQL
//! backup's table data): each through the same pipeline as the main
//! stream — meters, compression, encryption, hashes — into an object of
//! its own, as many at once as the engine runs workers. What was stored is
//! remembered, so a run that fails removes every part it wrote.

use std::sync::{Arc, Mutex};

use futures::FutureExt;
use tokio::io::BufReader;
use tokio_util::sync::CancellationToken;

use crate::engine::{PartRequest, PartSink};
use crate::error::{Error, ErrorCategory, Result};
use crate::interrupt::Interruptible;
use crate::manifest::{Artifact, Encryption, Producer};
use crate::pipeline::codec::compressing;
use crate::pipeline::codec::BoxRead;
use crate::pipeline::encryption;
use crate::pipeline::meter::{Meter, MeteredReader};
use crate::pipeline::read_ahead::read_ahead;
use crate::pipeline::redact::Redactor;
use crate::store::{Store, StoreError};
use vertice_crds::Compression;

/// How every artifact of the run is sealed.
#[derive(Clone)]
pub struct Seal {
    pub compression: Compression,
    pub level: Option<i32>,
    pub recipients: Vec<encryption::x25519::Recipient>,
}

impl Seal {
    /// The artifact's name: the stem and the suffixes of what was applied.
    pub fn name(&self, stem: &str) -> String {
        format!(
            "{stem}{}{}",
            self.compression.file_suffix(),
            if self.recipients.is_empty() {
                ""
            } else {
                ".age"
            }
        )
    }

    pub fn encryption(&self) -> Option<Encryption> {
        (!self.recipients.is_empty()).then(|| Encryption {
            scheme: encryption::SCHEME.to_string(),
            recipient_fingerprints: self
                .recipients
                .iter()
                .map(encryption::fingerprint)
                .collect(),
        })
    }

    /// The way into the store: `stream` read ahead by its own task (so it
    /// never waits on compression) up to `ahead` bytes, metered raw,
    /// compressed, encrypted, metered as stored.
    pub fn body(
        &self,
        stream: BoxRead,
        raw: &Arc<Meter>,
        stored: &Arc<Meter>,
        ahead: usize,
    ) -> Result<MeteredReader<BoxRead>> {
        let source = read_ahead(MeteredReader::new(stream, Arc::clone(raw)), ahead);
        let compressed = compressing(
            self.compression,
            self.level,
            BufReader::with_capacity(READ_CHUNK, source),
        );
        let sealed = if self.recipients.is_empty() {
            compressed
        } else {
            encryption::encrypting(&self.recipients, compressed)
                .map_err(|e| Error::encryption(format!("starting encryption: {e}")))?
        };
        Ok(MeteredReader::new(sealed, Arc::clone(stored)))
    }

    /// The manifest's entry for an artifact stored through [`Seal::body`].
    pub fn artifact(
        &self,
        name: String,
        format: &str,
        (raw, stored): (&Meter, &Meter),
        producer: Producer,
    ) -> Artifact {
        Artifact {
            name,
            format: format.to_string(),
            stored_bytes: stored.bytes(),
            raw_bytes: raw.bytes(),
            stored_sha256: stored.sha256_hex(),
            raw_sha256: raw.sha256_hex(),
            compression: self.compression,
            encryption: self.encryption(),
            producer,
        }
    }
}

/// The parts stored so far, and what stops them.
pub struct Parts {
    pub cancel: CancellationToken,
    stored: Arc<Mutex<Vec<(String, Artifact)>>>,
}

impl Parts {
    /// The sink the engine's workers upload through.
    pub fn start(
        store: Arc<dyn Store>,
        dir: String,
        seal: Seal,
        redactor: Redactor,
    ) -> (Parts, PartSink) {
        let cancel = crate::interrupt::child_token();
        let stored: Arc<Mutex<Vec<(String, Artifact)>>> = Arc::default();
        let parts = Parts {
            cancel: cancel.clone(),
            stored: Arc::clone(&stored),
        };
        let token = cancel.clone();
        let put = Arc::new(move |request: PartRequest| {
            let (store, dir, seal, stored, token, redactor) = (
                Arc::clone(&store),
                dir.clone(),
                seal.clone(),
                Arc::clone(&stored),
                token.clone(),
                redactor.clone(),
            );
            async move {
                let name = seal.name(&request.stem);
                let key = format!("{dir}/{name}");
                let artifact = put_part(store.as_ref(), &key, &name, &seal, request, token)
                    .await
                    .map_err(|e| e.map_message(|m| redactor.redact(&m)))?;
                if let Ok(mut list) = stored.lock() {
                    list.push((key, artifact));
                }
                Ok(name)
            }
            .boxed()
        });
        (parts, PartSink { put, cancel })
    }

    /// The stored parts' artifacts, by name.
    pub fn artifacts(&self) -> Vec<Artifact> {
        let mut list: Vec<Artifact> = self
            .stored
            .lock()
            .map(|l| l.iter().map(|(_, a)| a.clone()).collect())
            .unwrap_or_default();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        list
    }

    /// Keys of every part stored so far.
    pub fn keys(&self) -> Vec<String> {
        self.stored
            .lock()
            .map(|l| l.iter().map(|(k, _)| k.clone()).collect())
            .unwrap_or_default()
    }
}

/// Buffer between compression and its input.
const READ_CHUNK: usize = 64 * 1024;
/// How far a part's source may run ahead of its compression.
const READ_AHEAD: usize = 1 << 20;

async fn put_part(
    store: &dyn Store,
    key: &str,
    name: &str,
    seal: &Seal,
    request: PartRequest,
    cancel: CancellationToken,
) -> Result<Artifact> {
    let (raw, stored) = (Meter::new(), Meter::new());
    // A sibling's failure (or a signal) fails this read, so the store
    // aborts its upload as for any failed stream.
    let stream = Box::new(Interruptible::until(request.stream, cancel));
    let mut body = seal.body(stream, &raw, &stored, READ_AHEAD)?;
    let size = match store.put_stream(key, &mut body).await {
        Ok(size) => size,
        Err(StoreError::Body(e)) => return Err(Error::source(e.to_string())),
        Err(e) => return Err(Error::Store(e)),
    };
    if size != stored.bytes() {
        // Not ours to keep: the store holds something else than was made.
        if let Err(e) = store.delete(key).await {
            tracing::warn!(key, error = %e, "could not remove a part this failed run created");
        }
        return Err(Error::run(
            ErrorCategory::Store,
            format!(
                "the store took {size} bytes of {name} but the pipeline produced {}; nothing was stored",
                stored.bytes()
            ),
        ));
    }
    Ok(seal.artifact(
        name.to_string(),
        request.format,
        (&raw, &stored),
        request.producer,
    ))
}
