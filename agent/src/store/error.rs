use std::io;

/// What went wrong talking to a store. Configuration problems (a missing bucket,
/// rejected credentials) are told apart from failures worth retrying later.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{store}: {what} does not exist")]
    NotFound { store: String, what: String },
    #[error("{store}: bucket or container does not exist; create it or fix the store URL")]
    NoBucket { store: String },
    #[error("{store}: access denied ({detail}); check the credentials in the environment (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, web identity) and the bucket policy")]
    AccessDenied { store: String, detail: String },
    #[error("{store}: cannot reach the store ({detail}); check --s3-endpoint / the network")]
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

    pub fn category(&self) -> &'static str {
        match self {
            StoreError::NotFound { .. } => "store_not_found",
            StoreError::NoBucket { .. } => "store_no_bucket",
            StoreError::AccessDenied { .. } => "store_access_denied",
            StoreError::Unreachable { .. } => "store_unreachable",
            StoreError::AlreadyExists { .. } => "store_exists",
            StoreError::Request { .. } => "store_request",
            StoreError::Io { .. } => "io",
            StoreError::Config(_) => "store_config",
        }
    }

    /// Errors that come from the body stream we were uploading (the dump failed)
    /// rather than from the store keep their own message.
    pub fn from_body(e: io::Error) -> Self {
        StoreError::Io {
            what: "reading the backup stream".into(),
            source: e,
        }
    }
}
