//! Reading a stored artifact back: opened, decrypted and decompressed with
//! meters on both sides, and checked against its manifest. Shared by
//! `verify`, every engine's restore and every drill.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, BufReader};

use crate::error::{Error, Result};
use crate::interrupt::Interruptible;
use crate::manifest::{backup_dir, Artifact, Manifest};
use crate::pipeline::codec::{decompressing, BoxRead};
use crate::pipeline::encryption::{self, x25519};
use crate::pipeline::meter::{Meter, MeteredReader};
use crate::pipeline::progress::{Progress, ProgressMode};
use crate::store::Store;

/// Reads `--identity` (an age identity file), if given.
pub fn load_identities(path: Option<&std::path::Path>) -> Result<Option<Vec<x25519::Identity>>> {
    path.map(|p| encryption::load_identities(p, "--identity").map_err(Error::usage))
        .transpose()
}

/// An artifact opened for reading, decrypted and decompressed, with meters on
/// both sides. Without identities an encrypted artifact is read as stored
/// (`raw_checked` false): only the stored checksum can be verified.
pub struct OpenArtifact {
    pub reader: BoxRead,
    pub stored: Arc<Meter>,
    pub raw: Arc<Meter>,
    pub raw_checked: bool,
}

/// Fails before any data is read when the artifact is encrypted to keys the
/// given identities do not hold.
pub fn check_identities(
    manifest: &Manifest,
    artifact: &Artifact,
    identities: Option<&[x25519::Identity]>,
) -> Result<()> {
    let Some(encryption) = &artifact.encryption else {
        return Ok(());
    };
    let Some(identities) = identities else {
        return Err(Error::usage(format!(
            "backup {} is encrypted (age, recipients {}); pass --identity with a matching age identity file",
            manifest.backup_id,
            encryption.recipient_fingerprints.join(", ")
        )));
    };
    if !encryption::identities_match(identities, &encryption.recipient_fingerprints) {
        return Err(Error::usage(format!(
            "backup {} is encrypted to {}; none of the keys in --identity matches (wrong identity file?)",
            manifest.backup_id,
            encryption.recipient_fingerprints.join(", ")
        )));
    }
    Ok(())
}

pub async fn open_artifact(
    store: &dyn Store,
    manifest: &Manifest,
    artifact: &Artifact,
    identities: Option<&[x25519::Identity]>,
) -> Result<OpenArtifact> {
    let key = format!(
        "{}/{}",
        backup_dir(&manifest.namespace, &manifest.name, &manifest.backup_id),
        artifact.name
    );
    let stored = Meter::new();
    let raw = Meter::new();
    let input = MeteredReader::new(
        Interruptible::new(store.get_stream(&key).await?),
        Arc::clone(&stored),
    );
    let (plain, raw_checked): (BoxRead, bool) = match (&artifact.encryption, identities) {
        (None, _) => (Box::new(input), true),
        (Some(_), None) => {
            return Ok(OpenArtifact {
                reader: Box::new(input),
                stored,
                raw,
                raw_checked: false,
            })
        }
        (Some(_), Some(ids)) => {
            check_identities(manifest, artifact, Some(ids))?;
            let plain = encryption::decrypting(ids, input)
                .await
                .map_err(|e| match e {
                    // A store that failed at the first bytes is the store's
                    // failure, not a backup that cannot be decrypted.
                    encryption::DecryptFailure::Read(e) => read_failed(manifest, artifact, &e),
                    refused => Error::integrity(format!(
                        "backup {} cannot be decrypted: {refused}",
                        manifest.backup_id
                    )),
                })?;
            (plain, true)
        }
    };
    let decompressed = decompressing(
        artifact.compression,
        BufReader::with_capacity(256 * 1024, plain),
    );
    Ok(OpenArtifact {
        reader: Box::new(MeteredReader::new(decompressed, Arc::clone(&raw))),
        stored,
        raw,
        raw_checked,
    })
}

/// Compares what was read against the manifest. Call after the reader hit EOF.
pub fn check_integrity(
    manifest: &Manifest,
    artifact: &Artifact,
    open: &OpenArtifact,
) -> Result<()> {
    let (stored, raw) = (&open.stored, &open.raw);
    let what = format!("backup {} artifact {}", manifest.backup_id, artifact.name);
    let mut problems = Vec::new();
    if stored.bytes() != artifact.stored_bytes {
        problems.push(format!(
            "stored size is {} bytes, manifest says {}",
            stored.bytes(),
            artifact.stored_bytes
        ));
    }
    let stored_sha = stored.sha256_hex();
    if stored_sha != artifact.stored_sha256 {
        problems.push(format!(
            "stored SHA-256 is {stored_sha}, manifest says {}",
            artifact.stored_sha256
        ));
    }
    if open.raw_checked
        && (raw.bytes() != artifact.raw_bytes || raw.sha256_hex() != artifact.raw_sha256)
    {
        problems.push("the decompressed content does not match the manifest".to_string());
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::integrity(format!(
            "{what} is corrupt: {}",
            problems.join("; ")
        )))
    }
}

pub async fn verify_artifact(
    store: &dyn Store,
    manifest: &Manifest,
    artifact: &Artifact,
    identities: Option<&[x25519::Identity]>,
    progress: ProgressMode,
) -> Result<()> {
    let mut open = open_artifact(store, manifest, artifact, identities).await?;
    let _progress = Progress::start(progress, "verify", Arc::clone(&open.stored));
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match open.reader.read(&mut buf).await {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => return Err(read_failed(manifest, artifact, &e)),
        }
    }
    check_integrity(manifest, artifact, &open)
}

/// Why reading an artifact stopped before its end: the store failed (the
/// connection was lost and could not be resumed in time: category `store`,
/// nothing is known about the backup), or the bytes themselves did not
/// decode (`integrity`). A store outage must never make an operator
/// distrust a good backup.
pub fn read_failed(manifest: &Manifest, artifact: &Artifact, e: &std::io::Error) -> Error {
    // A signal stops the read too: that says nothing about the backup.
    if let Some(signal) = crate::interrupt::received() {
        return Error::Interrupted {
            signal,
            message: format!(
                "stopped by {} while reading backup {} artifact {}",
                crate::interrupt::signal_name(signal),
                manifest.backup_id,
                artifact.name
            ),
        };
    }
    match crate::store::store_failure(e) {
        Some(failure) => Error::Store(failure).context(format!(
            "backup {} artifact {} could not be read to its end because the store failed, not the backup; run it again once the store answers",
            manifest.backup_id, artifact.name
        )),
        None => Error::integrity(format!(
            "backup {} artifact {} is corrupt or unreadable: {e}",
            manifest.backup_id, artifact.name
        )),
    }
}

/// A store failure that passed through a reader whose consumer turns read
/// errors into text (the Redis replay, Vault's upload body), kept so that
/// the outcome is reported as the store's failure (`store`), not the
/// target's (or, in the Vault drill, a failed check).
#[derive(Clone, Default)]
pub(crate) struct StoreFailed(std::sync::Arc<std::sync::Mutex<Option<std::io::Error>>>);

impl StoreFailed {
    pub(crate) fn error(&self, manifest: &Manifest, artifact: &Artifact) -> Option<Error> {
        let e = self.0.lock().ok()?.take()?;
        Some(read_failed(manifest, artifact, &e))
    }
}

pub(crate) struct NoteStoreFailure<R> {
    inner: R,
    noted: StoreFailed,
}

impl<R> NoteStoreFailure<R> {
    pub(crate) fn wrap(inner: R) -> (Self, StoreFailed) {
        let noted = StoreFailed::default();
        (
            NoteStoreFailure {
                inner,
                noted: noted.clone(),
            },
            noted,
        )
    }
}

impl<R: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for NoteStoreFailure<R> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match std::pin::Pin::new(&mut self.inner).poll_read(cx, buf) {
            std::task::Poll::Ready(Err(e)) if crate::store::store_failure(&e).is_some() => {
                // The consumer gets the same words; the original is kept.
                let shown = std::io::Error::new(e.kind(), e.to_string());
                if let Ok(mut noted) = self.noted.0.lock() {
                    noted.get_or_insert(e);
                }
                std::task::Poll::Ready(Err(shown))
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn a_store_failure_is_kept_whatever_the_consumer_makes_of_it() {
        let cut = crate::store::ReadFailure::wrap(
            "s3://b",
            std::io::Error::new(std::io::ErrorKind::ConnectionReset, "connection reset"),
        );
        let failing = failing_reader(cut);
        let (mut reader, noted) = NoteStoreFailure::wrap(failing);
        let mut buf = [0u8; 8];
        let seen = reader.read(&mut buf).await.expect_err("failed");
        assert!(seen.to_string().contains("connection reset"), "{seen}");
        let kept = noted.0.lock().expect("lock").take().expect("noted");
        assert!(crate::store::store_failure(&kept).is_some());

        // Other errors (a corrupt stream) are not the store's.
        let (mut reader, noted) =
            NoteStoreFailure::wrap(failing_reader(std::io::Error::other("zstd: corrupt")));
        reader.read(&mut buf).await.expect_err("failed");
        assert!(noted.0.lock().expect("lock").is_none());
    }

    /// A reader that fails at once with `e`.
    fn failing_reader(e: std::io::Error) -> impl tokio::io::AsyncRead + Unpin {
        tokio_util::io::StreamReader::new(futures::stream::iter(vec![Err::<
            bytes::Bytes,
            std::io::Error,
        >(e)]))
    }
}
