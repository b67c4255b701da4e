//! Reading a stored archive's beginning until its table of contents is
//! whole (a drill's object checks, a parallel restore's index builds).

use tokio::io::AsyncReadExt;

use super::archive;
use crate::artifact::{check_integrity, read_failed};
use crate::engine::common::Stored;
use crate::error::{Error, Result};

/// The table of contents sits at the start of the archive; a database with
/// millions of objects has one of a few hundred MiB at most.
const MAX_TOC_BYTES: usize = 512 << 20;

/// What `parse` makes of the head read so far: `Ok(None)` to read more;
/// `ended`: there is no more.
fn parsed<T>(
    head: &[u8],
    parse: &impl Fn(&[u8]) -> std::result::Result<Option<T>, String>,
    ended: bool,
) -> Result<Option<T>> {
    match parse(head) {
        Ok(Some(found)) => Ok(Some(found)),
        Ok(None) if ended => Err(Error::integrity(
            "the archive ends inside its table of contents",
        )),
        Ok(None) if head.len() > MAX_TOC_BYTES => Err(Error::integrity(format!(
            "the archive's table of contents is larger than {} MiB",
            MAX_TOC_BYTES >> 20
        ))),
        Ok(None) => Ok(None),
        Err(e) if e.starts_with(archive::NEWER_FORMAT) => Err(Error::usage(e)),
        Err(e) => Err(Error::integrity(format!(
            "the archive's table of contents: {e}"
        ))),
    }
}

/// Reads `backup`'s artifact until `parse` finds its table of contents
/// whole.
pub async fn read<T>(
    backup: &Stored<'_>,
    parse: impl Fn(&[u8]) -> std::result::Result<Option<T>, String>,
) -> Result<T> {
    let mut open = backup.open().await?;
    let mut head = Vec::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        // A store that fails midway is not a corrupt archive.
        let n = open.reader.read(&mut buf).await.map_err(|e| {
            read_failed(backup.manifest, backup.artifact, &e)
                .context("reading the archive's table of contents")
        })?;
        head.extend_from_slice(&buf[..n]);
        if let Some(found) = parsed(&head, &parse, n == 0)? {
            return Ok(found);
        }
    }
}

/// Like [`read`], then reads the rest of the artifact and checks it
/// against its manifest: for statements run from the table of contents
/// (a parallel restore's index builds), which must come from the backup
/// as it was written.
pub async fn read_verified<T>(
    backup: &Stored<'_>,
    parse: impl Fn(&[u8]) -> std::result::Result<Option<T>, String>,
) -> Result<T> {
    let mut open = backup.open().await?;
    let mut head = Vec::new();
    let mut found = None;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = open
            .reader
            .read(&mut buf)
            .await
            .map_err(|e| read_failed(backup.manifest, backup.artifact, &e))?;
        if n == 0 {
            break;
        }
        if found.is_none() {
            head.extend_from_slice(&buf[..n]);
            found = parsed(&head, &parse, false)?;
        }
    }
    check_integrity(backup.manifest, backup.artifact, &open)?;
    match found {
        Some(found) => Ok(found),
        None => parsed(&head, &parse, true)?
            .ok_or_else(|| Error::integrity("the archive ends inside its table of contents")),
    }
}
