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
use crate::manifest::{Artifact, Encryption};
use crate::pipeline::codec::compressing;
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
    let source = read_ahead(
        MeteredReader::new(
            Interruptible::until(request.stream, cancel),
            Arc::clone(&raw),
        ),
        READ_AHEAD,
    );
    let compressed = compressing(
        seal.compression,
        seal.level,
        BufReader::with_capacity(READ_CHUNK, source),
    );
    let sealed = if seal.recipients.is_empty() {
        compressed
    } else {
        encryption::encrypting(&seal.recipients, compressed)
            .map_err(|e| Error::encryption(format!("starting encryption: {e}")))?
    };
    let mut body = MeteredReader::new(sealed, Arc::clone(&stored));
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
    Ok(Artifact {
        name: name.to_string(),
        format: request.format.to_string(),
        stored_bytes: stored.bytes(),
        raw_bytes: raw.bytes(),
        stored_sha256: stored.sha256_hex(),
        raw_sha256: raw.sha256_hex(),
        compression: seal.compression,
        encryption: seal.encryption(),
        producer: request.producer,
    })
}
