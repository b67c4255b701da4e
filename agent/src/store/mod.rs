//! Object stores: one trait that every backend (file, S3, GCS, Azure Blob)
//! implements, so the pipeline, catalog, restore and retention never care
//! where the bytes live.

pub mod azure;
pub mod azure_connection;
pub mod azure_sas;
mod error;
pub mod file;
pub mod gcs;
mod key_prefix;
pub mod multipart;
pub mod open;
mod resuming_download;
pub mod retry;
pub mod s3;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::io::AsyncRead;

pub use error::{store_failure, ReadFailure, StoreError};
pub use open::{open_store, StoreOptions};

pub type BoxedReader = Box<dyn AsyncRead + Send + Unpin>;

/// One object found by [`Store::list`]; `key` is relative to the store's prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub key: String,
    pub size: u64,
    /// When the store last wrote it, by the store's own clock (the file
    /// store: the file's modification time); `None` if the store did not say.
    pub modified: Option<chrono::DateTime<chrono::Utc>>,
}

#[async_trait]
pub trait Store: Send + Sync {
    /// The store URL, for messages (store URLs never carry secrets).
    fn describe(&self) -> String;

    /// Fails early, before any data moves, when the bucket is missing or the
    /// credentials are rejected.
    async fn check_access(&self) -> Result<(), StoreError>;

    /// Streams everything `body` yields into a new object `key` with bounded
    /// memory. On any error nothing is left that looks complete: multipart
    /// uploads are aborted, partial files removed. Returns the bytes written.
    async fn put_stream(
        &self,
        key: &str,
        body: &mut (dyn AsyncRead + Send + Unpin),
    ) -> Result<u64, StoreError>;

    /// Writes a small object (a manifest) in one request. Like
    /// [`Store::put_stream`], it never replaces an existing object: every
    /// store checks first, whatever the server's conditional write does.
    async fn put_bytes(&self, key: &str, data: Bytes) -> Result<(), StoreError>;

    /// Opens an object for streaming reads. A read that fails because the
    /// store failed (not because of the bytes) fails with a [`ReadFailure`].
    async fn get_stream(&self, key: &str) -> Result<BoxedReader, StoreError>;

    /// Reads a small object whole.
    async fn get_bytes(&self, key: &str) -> Result<Bytes, StoreError> {
        use tokio::io::AsyncReadExt;
        let mut reader = self.get_stream(key).await?;
        let mut buf = Vec::new();
        reader
            .read_to_end(&mut buf)
            .await
            .map_err(|e| StoreError::io(format!("reading {key}"), e))?;
        Ok(Bytes::from(buf))
    }

    /// Every object whose key starts with `prefix`, in no particular order.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError>;

    /// Removes one object; removing a missing object is not an error.
    async fn delete(&self, key: &str) -> Result<(), StoreError>;

    /// Aborts uploads under `prefix` that were started before `cutoff` and
    /// never finished (S3 multipart uploads, leftover temporary files).
    /// Stores whose unfinished uploads expire on their own (Azure
    /// uncommitted blocks, GCS resumable sessions) have nothing to do.
    async fn abort_stale_uploads(
        &self,
        _prefix: &str,
        _cutoff: chrono::DateTime<chrono::Utc>,
    ) -> Result<u32, StoreError> {
        Ok(0)
    }
}
