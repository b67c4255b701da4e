use std::io;

/// What went wrong talking to a store. Configuration problems (a missing bucket,
/// rejected credentials) are told apart from failures worth retrying later.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{store}: {what} does not exist")]
    NotFound { store: String, what: String },
    #[error("{store}: bucket or container does not exist; create it or fix the store URL")]
    NoBucket { store: String },
    #[error("{store}: access denied ({detail}); {}", credentials_hint(store))]
    AccessDenied { store: String, detail: String },
    #[error(
        "{store}: cannot reach the store ({detail}); check {} and the network",
        endpoint_flag(store)
    )]
    Unreachable { store: String, detail: String },
    #[error("{store}: refusing to overwrite existing object {key}")]
    AlreadyExists { store: String, key: String },
    #[error("{store}: {detail}")]
    Request { store: String, detail: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("invalid store configuration: {0}")]
    Config(String),
    /// The stream being uploaded failed (the dump died, a signal arrived):
    /// not the store's fault, and its message is the source's own.
    #[error("{0}")]
    Body(#[source] io::Error),
}

/// Where each store kind takes its credentials from, for error messages.
fn credentials_hint(store: &str) -> &'static str {
    if store.starts_with("gs://") {
        "check the Google credentials (workload identity or GOOGLE_APPLICATION_CREDENTIALS) and the bucket's IAM roles"
    } else if store.starts_with("azblob://") {
        "check AZURE_STORAGE_SAS_TOKEN / AZURE_STORAGE_KEY (or their --azure-*-file flags), or the workload / managed identity's role on the container"
    } else {
        "check the credentials in the environment (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, web identity) and the bucket policy"
    }
}

fn endpoint_flag(store: &str) -> &'static str {
    if store.starts_with("gs://") {
        "--gcs-endpoint"
    } else if store.starts_with("azblob://") {
        "--azure-endpoint"
    } else {
        "--s3-endpoint"
    }
}

impl StoreError {
    pub fn io(what: impl Into<String>, source: io::Error) -> Self {
        StoreError::Io {
            what: what.into(),
            source,
        }
    }

    /// True when retrying the same command cannot help (exit code 2).
    pub fn is_configuration(&self) -> bool {
        matches!(
            self,
            StoreError::NoBucket { .. }
                | StoreError::AccessDenied { .. }
                | StoreError::Config(_)
                | StoreError::NotFound { .. }
        )
    }

    /// Errors that come from the body stream we were uploading (the dump failed)
    /// rather than from the store keep their own message.
    pub fn from_body(e: io::Error) -> Self {
        StoreError::Body(e)
    }
}
