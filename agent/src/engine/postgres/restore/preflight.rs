//! What is checked before the target is touched: the archive's header and
//! the versions known without the target (can this pg_restore read it, is
//! the backup's source newer than allowed).

use tokio::io::AsyncReadExt;

use super::super::archive as pg_archive;
use super::super::dump as postgres;
use super::super::version::{self as pg_version, Known, Refusal, Version};
use super::older_server::older_refusal;
use super::settings::PgRestoreSettings;
use crate::artifact::{read_failed, OpenArtifact};
use crate::error::{Error, Result};
use crate::manifest::{Artifact, Manifest};

/// At most this much of the archive's start is read for its header.
const HEAD_LIMIT: usize = 64 * 1024;

/// Reads the archive's head and refuses what cannot work before psql or
/// pg_restore start; returns the head (fed to pg_restore first) and the
/// versions known so far.
pub(super) async fn preflight(
    settings: &PgRestoreSettings,
    open: &mut OpenArtifact,
    manifest: &Manifest,
    artifact: &Artifact,
) -> Result<(Vec<u8>, Known)> {
    let head = read_head(open, manifest, artifact).await?;
    let known = known_versions(settings, manifest, &head).await;
    if let Err(refusal) = pg_version::check(&known, settings.allow_older_server) {
        return Err(refused(&refusal, settings, manifest));
    }
    Ok((head, known))
}

/// The start of the archive, enough for its header (fed to pg_restore
/// first). Short or not an archive: pg_restore and the checksums say so.
async fn read_head(
    open: &mut OpenArtifact,
    manifest: &Manifest,
    artifact: &Artifact,
) -> Result<Vec<u8>> {
    let mut head = Vec::new();
    let mut buf = vec![0u8; 8 * 1024];
    while head.len() < HEAD_LIMIT {
        let n = open
            .reader
            .read(&mut buf)
            .await
            .map_err(|e| read_failed(manifest, artifact, &e))?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
        if !matches!(pg_archive::parse_header_prefix(&head), Ok(None)) {
            break;
        }
    }
    Ok(head)
}

/// What is known of the versions before the target answers: the backup's
/// source server, this pg_restore, and the archive's format.
async fn known_versions(settings: &PgRestoreSettings, manifest: &Manifest, head: &[u8]) -> Known {
    Known {
        source: manifest
            .source
            .server_version
            .as_deref()
            .and_then(Version::parse),
        target: None,
        pg_restore: postgres::tool_version(&settings.pg_restore).await,
        archive: pg_archive::parse_header_prefix(head)
            .ok()
            .flatten()
            .map(|h| {
                let pg_dump = h.pg_dump_version.as_deref().and_then(Version::parse);
                (h.archive_version, pg_dump)
            }),
    }
}

/// A refusal before anything started, naming both versions and the flag.
fn refused(refusal: &Refusal, settings: &PgRestoreSettings, manifest: &Manifest) -> Error {
    let id = &manifest.backup_id;
    match refusal {
        Refusal::Unreadable {
            pg_restore,
            archive,
            pg_dump,
            needed,
        } => Error::usage(format!(
            "--pg-restore {}: pg_restore {} cannot read backup {id}: its archive (format {}.{}) was written by pg_dump {} and needs pg_restore {needed} or newer; give --pg-restore the path of one (e.g. /usr/lib/postgresql/{needed}/bin/pg_restore); nothing was restored",
            settings.pg_restore.display(),
            pg_restore.text,
            archive.0,
            archive.1,
            pg_dump.as_ref().map_or("(unknown)", |v| v.text.as_str()),
        )),
        Refusal::OlderTarget { source, target } => {
            older_refusal(settings.into, id, source, target)
        }
    }
}
