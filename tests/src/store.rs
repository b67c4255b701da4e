//! The stores a suite runs against, behind one type, so each scenario is
//! written once and run on every store.

use crate::azurite::Azurite;
use crate::fake_gcs::FakeGcs;
use crate::seaweedfs::SeaweedFs;

pub enum TestStore {
    S3 { server: SeaweedFs, bucket: String },
    Azure { server: Azurite, container: String },
    Gcs { server: FakeGcs, bucket: String },
    File { dir: tempfile::TempDir },
}

impl TestStore {
    pub fn azure() -> TestStore {
        let server = Azurite::start();
        let container = "vertice-backups".to_string();
        server.create_container(&container);
        TestStore::Azure { server, container }
    }

    pub fn gcs() -> TestStore {
        let server = FakeGcs::start();
        let bucket = "vertice-backups".to_string();
        server.create_bucket(&bucket);
        TestStore::Gcs { server, bucket }
    }

    /// The store as the agent sees it, through its own store code, for
    /// inspecting and damaging objects where no separate client exists
    /// (Azure, GCS), and for testing the store code itself. Keys are
    /// relative to the store root.
    pub fn with_agent_store<T>(
        &self,
        f: impl for<'a> FnOnce(
            &'a dyn vertice_agent::store::Store,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = T> + 'a>>,
    ) -> T {
        use vertice_agent::store::{azure::AzureSettings, gcs::GcsSettings, StoreOptions};
        let options = match self {
            TestStore::Azure { server, .. } => StoreOptions {
                azure: AzureSettings {
                    endpoint: Some(server.endpoint()),
                    account_key: Some(crate::azurite::ACCOUNT_KEY.to_string()),
                    sas_token: None,
                },
                ..StoreOptions::default()
            },
            TestStore::Gcs { server, .. } => StoreOptions {
                gcs: GcsSettings {
                    endpoint: Some(server.endpoint()),
                },
                ..StoreOptions::default()
            },
            _ => StoreOptions::default(),
        };
        let location = self
            .url("")
            .trim_end_matches('/')
            .parse()
            .expect("store url");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let store = vertice_agent::store::open_store(&location, &options)
                .await
                .expect("open store");
            f(store.as_ref()).await
        })
    }
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
            TestStore::Azure { .. } => "azure",
            TestStore::Gcs { .. } => "gcs",
            TestStore::File { .. } => "file",
        }
    }

    /// The store URL, under `prefix`.
    pub fn url(&self, prefix: &str) -> String {
        match self {
            TestStore::S3 { bucket, .. } => format!("s3://{bucket}/{prefix}"),
            TestStore::Azure { container, .. } => {
                format!("azblob://{}/{container}/{prefix}", crate::azurite::ACCOUNT)
            }
            TestStore::Gcs { bucket, .. } => format!("gs://{bucket}/{prefix}"),
            TestStore::File { dir } => format!("file://{}/{prefix}", dir.path().display()),
        }
    }

    /// Environment the agent needs to reach the store (credentials, endpoint).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        match self {
            TestStore::S3 { server, .. } => server.env(),
            TestStore::Azure { server, .. } => server.env(),
            TestStore::Gcs { server, .. } => server.env(),
            TestStore::File { .. } => Vec::new(),
        }
    }

    /// Where the store server listens (host, port); `None` for `file://`.
    pub fn upstream(&self) -> Option<(String, u16)> {
        match self {
            TestStore::S3 { server, .. } => Some(("127.0.0.1".into(), server.s3_port)),
            TestStore::Azure { server, .. } => Some(("127.0.0.1".into(), server.port)),
            TestStore::Gcs { server, .. } => Some((server.address.clone(), 80)),
            TestStore::File { .. } => None,
        }
    }

    /// [`TestStore::env`] with the endpoint moved to a proxy on 127.0.0.1:`port`.
    pub fn env_through(&self, port: u16) -> Vec<(&'static str, String)> {
        self.env_through_at("127.0.0.1", port)
    }

    /// [`TestStore::env`] with the endpoint moved to a proxy on `host:port`
    /// (GCS uploads need port 80: see `fake_gcs.rs`).
    pub fn env_through_at(&self, host: &str, port: u16) -> Vec<(&'static str, String)> {
        let (key, value) = match self {
            TestStore::S3 { .. } => ("VERTICE_S3_ENDPOINT", format!("http://{host}:{port}")),
            TestStore::Azure { .. } => (
                "VERTICE_AZURE_ENDPOINT",
                format!("http://{host}:{port}/{}", crate::azurite::ACCOUNT),
            ),
            TestStore::Gcs { .. } if port == 80 => {
                ("VERTICE_GCS_ENDPOINT", format!("http://{host}"))
            }
            TestStore::Gcs { .. } => ("VERTICE_GCS_ENDPOINT", format!("http://{host}:{port}")),
            TestStore::File { .. } => return self.env(),
        };
        let mut env: Vec<_> = self.env().into_iter().filter(|(k, _)| *k != key).collect();
        env.push((key, value));
        env
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
            _ => self.with_agent_store(|store| {
                Box::pin(async move {
                    store
                        .list("")
                        .await
                        .expect("list")
                        .into_iter()
                        .map(|o| o.key)
                        .collect()
                })
            }),
        };
        keys.retain(|k| k.starts_with(prefix));
        keys.sort();
        keys
    }

    /// The manifests under `prefix` (a series' directory), parsed, oldest
    /// first (backup ids sort in time order).
    pub fn manifests(&self, prefix: &str) -> Vec<serde_json::Value> {
        self.keys(prefix)
            .iter()
            .filter(|k| k.ends_with("manifest.json"))
            .map(|k| serde_json::from_slice(&self.read(k)).expect("manifest json"))
            .collect()
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
            _ => self.with_agent_store(|store| {
                let key = key.to_string();
                Box::pin(async move { store.get_bytes(&key).await.expect("read").to_vec() })
            }),
        }
    }

    /// Writes or replaces an object's bytes (to simulate damage at rest, or
    /// leftovers of a crashed run).
    /// Deletes one object by hand (damage done behind the agent's back).
    pub fn remove(&self, key: &str) {
        match self {
            TestStore::S3 { server, bucket } => server.delete_object(bucket, key),
            TestStore::File { dir } => std::fs::remove_file(dir.path().join(key)).expect("remove"),
            _ => {
                let key = key.to_string();
                self.with_agent_store(|store| {
                    Box::pin(async move { store.delete(&key).await.expect("delete") })
                })
            }
        }
    }

    pub fn overwrite(&self, key: &str, data: &[u8]) {
        match self {
            TestStore::S3 { server, bucket } => {
                let tmp = tempfile::NamedTempFile::new().expect("tmp");
                std::fs::write(tmp.path(), data).expect("write");
                server.put_object(bucket, key, tmp.path());
            }
            TestStore::File { dir } => {
                let path = dir.path().join(key);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).expect("mkdir");
                }
                std::fs::write(path, data).expect("write")
            }
            _ => {
                let data = bytes_of(data);
                let key = key.to_string();
                self.with_agent_store(|store| {
                    Box::pin(async move {
                        // The agent never overwrites; damage takes two steps.
                        store.delete(&key).await.expect("delete");
                        store.put_bytes(&key, data).await.expect("write");
                    })
                })
            }
        }
    }

    pub fn dangling_uploads(&self) -> Vec<String> {
        match self {
            TestStore::S3 { server, bucket } => server.dangling_uploads(bucket),
            TestStore::File { dir } => walk(dir.path())
                .into_iter()
                .filter(|k| k.contains(".partial-"))
                .collect(),
            // Uncommitted Azure blocks and unfinished GCS resumable sessions
            // are invisible and expire on their own; there is nothing to see.
            TestStore::Azure { .. } | TestStore::Gcs { .. } => Vec::new(),
        }
    }
}

fn bytes_of(data: &[u8]) -> vertice_agent::bytes::Bytes {
    vertice_agent::bytes::Bytes::copy_from_slice(data)
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
/// tests `round_trip::s3`, `round_trip::azure`, `round_trip::gcs` and
/// `round_trip::file`.
#[macro_export]
macro_rules! on_every_store {
    ($scenario:ident) => {
        mod $scenario {
            #[test]
            fn s3() {
                super::$scenario(&$crate::TestStore::s3());
            }

            #[test]
            fn azure() {
                super::$scenario(&$crate::TestStore::azure());
            }

            #[test]
            fn gcs() {
                super::$scenario(&$crate::TestStore::gcs());
            }

            #[test]
            fn file() {
                super::$scenario(&$crate::TestStore::file());
            }
        }
    };
}
