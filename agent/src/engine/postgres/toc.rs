//! Reading a stored archive's beginning until its table of contents is
//! whole (a drill's object checks, a parallel restore's index builds).

use tokio::io::AsyncReadExt;

use super::archive;
use crate::artifact::read_failed;
use crate::engine::common::Stored;
use crate::error::{Error, Result};

/// A table of contents larger than this is refused as implausible.
const MAX_TOC_BYTES: usize = 512 << 20;

/// Reads `backup`'s artifact until `parse` finds its table of contents
/// whole (`Ok(None)`: read more).
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
        match parse(&head) {
            Ok(Some(found)) => return Ok(found),
            Ok(None) if n == 0 => {
                return Err(Error::integrity(
                    "the archive ends inside its table of contents",
                ))
            }
            Ok(None) if head.len() > MAX_TOC_BYTES => {
                return Err(Error::integrity(format!(
                    "the archive's table of contents is larger than {} MiB",
                    MAX_TOC_BYTES >> 20
                )))
            }
            Ok(None) => {}
            Err(e) if e.starts_with(archive::NEWER_FORMAT) => return Err(Error::usage(e)),
            Err(e) => {
                return Err(Error::integrity(format!(
                    "the archive's table of contents: {e}"
                )))
            }
        }
    }
}
