//! `file:///path`: the embedded default store, for a laptop, the demo, or a
//! mounted volume.

use std::io;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWriteExt};

use super::{BoxedReader, ObjectMeta, Store, StoreError};

pub struct FileStore {
    root: PathBuf,
}

impl FileStore {
    pub fn new(root: PathBuf) -> Self {
        FileStore { root }
    }

    fn path_of(&self, key: &str) -> Result<PathBuf, StoreError> {
        super::key_prefix::check_key(key, false)?;
        Ok(self.root.join(key))
    }

    fn name(&self) -> String {
        self.describe()
    }

    /// A sibling name that no reader treats as an object: a crash mid-write
    /// leaves only `.partial-…` files, never a truncated object.
    fn temp_path(path: &Path) -> PathBuf {
        let mut suffix = [0u8; 4];
        let _ = getrandom::fill(&mut suffix);
        let mut name = path
            .file_name()
            .map(|n| n.to_os_string())
            .unwrap_or_default();
        name.push(format!(".partial-{}", hex::encode(suffix)));
        path.with_file_name(name)
    }

    /// Writes `body` to a temporary sibling, makes it durable, then publishes
    /// it under `key` without ever replacing an existing object. Every write
    /// error is surfaced (tokio's `File` reports a failed write only on the
    /// next operation, so the file is flushed before it is synced), and the
    /// directory is synced so the new name survives a crash.
    async fn write_new(
        &self,
        key: &str,
        body: &mut (dyn AsyncRead + Send + Unpin),
    ) -> Result<u64, StoreError> {
        let path = self.path_of(key)?;
        if tokio::fs::try_exists(&path).await.unwrap_or(false) {
            return Err(StoreError::AlreadyExists {
                store: self.name(),
                key: key.to_string(),
            });
        }
        let dir = path.parent().unwrap_or(&self.root).to_path_buf();
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| StoreError::io(format!("creating {}", dir.display()), e))?;
        let temp = TempFile(Self::temp_path(&path));
        let mut file = tokio::fs::File::create(&temp.0)
            .await
            .map_err(|e| StoreError::io(format!("creating {}", temp.0.display()), e))?;
        let written = copy_body(body, &mut file).await?;
        let disk_error = |what: &str, e| StoreError::io(format!("{what} {}", temp.0.display()), e);
        file.flush().await.map_err(|e| disk_error("writing", e))?;
        file.sync_all()
            .await
            .map_err(|e| disk_error("syncing", e))?;
        drop(file);
        // Hard-link then unlink: unlike rename, linking fails if the target
        // appeared meanwhile, so an object is never overwritten.
        tokio::fs::hard_link(&temp.0, &path).await.map_err(|e| {
            if e.kind() == io::ErrorKind::AlreadyExists {
                StoreError::AlreadyExists {
                    store: self.name(),
                    key: key.to_string(),
                }
            } else {
                StoreError::io(format!("publishing {}", path.display()), e)
            }
        })?;
        drop(temp);
        sync_dir(&dir)
            .await
            .map_err(|e| StoreError::io(format!("syncing the directory {}", dir.display()), e))?;
        Ok(written)
    }
}

/// A temporary file removed when dropped: on success (after it was linked),
/// on error, and when the write is abandoned (a signal cut the run short).
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

async fn sync_dir(dir: &Path) -> io::Result<()> {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || std::fs::File::open(&dir)?.sync_all())
        .await
        .map_err(io::Error::other)?
}

/// Copies the body into the file; errors from the body (a failed dump) keep
/// their own message, errors from the disk say which file.
async fn copy_body(
    body: &mut (dyn AsyncRead + Send + Unpin),
    file: &mut tokio::fs::File,
) -> Result<u64, StoreError> {
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = body.read(&mut buf).await.map_err(StoreError::from_body)?;
        if n == 0 {
            return Ok(total);
        }
        file.write_all(&buf[..n])
            .await
            .map_err(|e| StoreError::io("writing to the file store", e))?;
        total += n as u64;
    }
}

#[async_trait]
impl Store for FileStore {
    fn describe(&self) -> String {
        // Percent-encoded where a URL must be, so a message's store URL can
        // be passed back to --from as it is.
        vertice_crds::StoreLocation::File {
            root: self.root.clone(),
        }
        .to_string()
    }

    async fn check_access(&self) -> Result<(), StoreError> {
        tokio::fs::create_dir_all(&self.root).await.map_err(|e| {
            StoreError::Config(format!(
                "{}: cannot create the store directory: {e}",
                self.name()
            ))
        })
    }

    async fn put_stream(
        &self,
        key: &str,
        body: &mut (dyn AsyncRead + Send + Unpin),
    ) -> Result<u64, StoreError> {
        self.write_new(key, body).await
    }

    async fn put_bytes(&self, key: &str, data: Bytes) -> Result<(), StoreError> {
        let mut reader: &[u8] = &data;
        self.write_new(key, &mut reader).await.map(|_| ())
    }

    async fn get_stream(&self, key: &str) -> Result<BoxedReader, StoreError> {
        let path = self.path_of(key)?;
        match tokio::fs::File::open(&path).await {
            Ok(file) => Ok(Box::new(file)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(StoreError::NotFound {
                store: self.name(),
                what: key.to_string(),
            }),
            Err(e) => Err(StoreError::io(format!("opening {}", path.display()), e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        super::key_prefix::check_key(prefix, true)?;
        let root = self.root.clone();
        let prefix = prefix.to_string();
        tokio::task::spawn_blocking(move || list_files(&root, &prefix))
            .await
            .map_err(|e| StoreError::io("listing the file store", io::Error::other(e)))?
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let path = self.path_of(key)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(StoreError::io(format!("deleting {key}"), e)),
        }
        // Object stores have no directories: drop the ones this emptied, up
        // to the store root (remove_dir refuses a non-empty one).
        let mut dir = path.parent();
        while let Some(d) = dir {
            if d == self.root
                || !d.starts_with(&self.root)
                || tokio::fs::remove_dir(d).await.is_err()
            {
                break;
            }
            dir = d.parent();
        }
        Ok(())
    }
}

fn list_files(root: &Path, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
    let mut found = Vec::new();
    if !root.exists() {
        return Ok(found);
    }
    // Start from the deepest directory the prefix names, so listing one
    // backup name does not walk the whole store.
    let start_dir = match prefix.rfind('/') {
        Some(i) => root.join(&prefix[..i]),
        None => root.to_path_buf(),
    };
    let mut stack = vec![start_dir];
    while let Some(dir) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(StoreError::io(format!("listing {}", dir.display()), e)),
        };
        for entry in entries {
            let entry =
                entry.map_err(|e| StoreError::io(format!("listing {}", dir.display()), e))?;
            let path = entry.path();
            let meta = entry
                .metadata()
                .map_err(|e| StoreError::io(format!("reading {}", path.display()), e))?;
            if meta.is_dir() {
                stack.push(path);
                continue;
            }
            let Ok(rel) = path.strip_prefix(root) else {
                continue;
            };
            let key = rel.to_string_lossy().replace('\\', "/");
            if key.starts_with(prefix) {
                found.push(ObjectMeta {
                    key,
                    size: meta.len(),
                    modified: meta
                        .modified()
                        .ok()
                        .map(chrono::DateTime::<chrono::Utc>::from),
                });
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn writes_once_reads_back_and_lists() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = FileStore::new(dir.path().to_path_buf());
        let mut body: &[u8] = b"hello world";
        assert_eq!(
            store.put_stream("a/b/obj", &mut body).await.expect("put"),
            11
        );
        let again = store.put_bytes("a/b/obj", Bytes::from_static(b"x")).await;
        assert!(matches!(again, Err(StoreError::AlreadyExists { .. })));
        let mut read = String::new();
        store
            .get_stream("a/b/obj")
            .await
            .expect("get")
            .read_to_string(&mut read)
            .await
            .expect("read");
        assert_eq!(read, "hello world");
        store
            .put_bytes("a/c", Bytes::from_static(b"yz"))
            .await
            .expect("put");
        let mut listed = store.list("a/").await.expect("list");
        listed.sort_by(|x, y| x.key.cmp(&y.key));
        assert!(listed.iter().all(|o| o.modified.is_some()), "{listed:?}");
        let found: Vec<(&str, u64)> = listed.iter().map(|o| (o.key.as_str(), o.size)).collect();
        assert_eq!(found, vec![("a/b/obj", 11), ("a/c", 2)]);
        assert!(matches!(
            store.get_stream("missing").await,
            Err(StoreError::NotFound { .. })
        ));
    }

    #[tokio::test]
    async fn a_failed_body_leaves_nothing_behind() {
        struct Failing;
        impl AsyncRead for Failing {
            fn poll_read(
                self: std::pin::Pin<&mut Self>,
                _: &mut std::task::Context<'_>,
                _: &mut tokio::io::ReadBuf<'_>,
            ) -> std::task::Poll<io::Result<()>> {
                std::task::Poll::Ready(Err(io::Error::other("dump died")))
            }
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let store = FileStore::new(dir.path().to_path_buf());
        let err = store
            .put_stream("x/y", &mut Failing)
            .await
            .expect_err("must fail");
        assert!(err.to_string().contains("dump died"), "{err}");
        assert!(store.list("").await.expect("list").is_empty());
    }
}
