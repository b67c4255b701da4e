//! The stores a suite runs against, behind one type, so each scenario is
//! written once and run on every store.

use crate::seaweedfs::SeaweedFs;

pub enum TestStore {
    S3 { server: SeaweedFs, bucket: String },
    File { dir: tempfile::TempDir },
}

impl TestStore {
    pub fn s3() -> TestStore {
        let server = SeaweedFs::start();
        let bucket = "vertice-backups".to_string();
        server.create_bucket(&bucket);
        TestStore::S3 { server, bucket }
    }

    pub fn file() -> TestStore {
        TestStore::File {
            dir: tempfile::Builder::new()
                .prefix("vertice-store-")
                .tempdir()
                .expect("tempdir"),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            TestStore::S3 { .. } => "s3",
            TestStore::File { .. } => "file",
        }
    }

    /// The store URL, under `prefix`.
    pub fn url(&self, prefix: &str) -> String {
        match self {
            TestStore::S3 { bucket, .. } => format!("s3://{bucket}/{prefix}"),
            TestStore::File { dir } => format!("file://{}/{prefix}", dir.path().display()),
        }
    }

    /// Environment the agent needs to reach the store (credentials, endpoint).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        match self {
            TestStore::S3 { server, .. } => server.env(),
            TestStore::File { .. } => Vec::new(),
        }
    }

    /// [`TestStore::env`] plus one more variable (a database password).
    pub fn env_with(&self, key: &'static str, value: &str) -> Vec<(&'static str, String)> {
        let mut env = self.env();
        env.push((key, value.to_string()));
        env
    }

    /// Every object key under `prefix`, relative to the store root.
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        let mut keys: Vec<String> = match self {
            TestStore::S3 { server, bucket } => server.list_keys(bucket),
            TestStore::File { dir } => walk(dir.path()),
        };
        keys.retain(|k| k.starts_with(prefix));
        keys.sort();
        keys
    }

    /// Reads an object.
    pub fn read(&self, key: &str) -> Vec<u8> {
        match self {
            TestStore::S3 { server, bucket } => {
                let tmp = tempfile::NamedTempFile::new().expect("tmp");
                server.get_object(bucket, key, tmp.path());
                std::fs::read(tmp.path()).expect("read")
            }
            TestStore::File { dir } => std::fs::read(dir.path().join(key)).expect("read"),
        }
    }

    /// Replaces an object's bytes (to simulate damage at rest).
    pub fn overwrite(&self, key: &str, data: &[u8]) {
        match self {
            TestStore::S3 { server, bucket } => {
                let tmp = tempfile::NamedTempFile::new().expect("tmp");
                std::fs::write(tmp.path(), data).expect("write");
                server.put_object(bucket, key, tmp.path());
            }
            TestStore::File { dir } => std::fs::write(dir.path().join(key), data).expect("write"),
        }
    }

    pub fn dangling_uploads(&self) -> Vec<String> {
        match self {
            TestStore::S3 { server, bucket } => server.dangling_uploads(bucket),
            TestStore::File { dir } => walk(dir.path())
                .into_iter()
                .filter(|k| k.contains(".partial-"))
                .collect(),
        }
    }
}

fn walk(root: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(rel) = path.strip_prefix(root) {
                out.push(rel.to_string_lossy().into_owned());
            }
        }
    }
    out
}

/// Runs a scenario `fn(&TestStore)` as one test per store kind, so every
/// store gets the same suite: `on_every_store!(round_trip);` yields the
/// tests `round_trip::s3` and `round_trip::file`.
#[macro_export]
macro_rules! on_every_store {
    ($scenario:ident) => {
        mod $scenario {
            #[test]
            fn s3() {
                super::$scenario(&$crate::TestStore::s3());
            }

            #[test]
            fn file() {
                super::$scenario(&$crate::TestStore::file());
            }
        }
    };
}
