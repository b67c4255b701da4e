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

    /// The same failure, saying that retrying stopped after `lasted` of
    /// failures, and which flag sets that allowance.
    pub fn gave_up_after(self, lasted: std::time::Duration, limit: std::time::Duration) -> Self {
        let note = |detail: String| {
            format!(
                "{detail}; gave up after {} of failures (--store-retry-for {})",
                super::retry::describe(lasted),
                super::retry::describe(limit)
            )
        };
        match self {
            StoreError::Unreachable { store, detail } => StoreError::Unreachable {
                store,
                detail: note(detail),
            },
            StoreError::Request { store, detail } => StoreError::Request {
                store,
                detail: note(detail),
            },
            other => other,
        }
    }
}

/// What a store's download stream fails with when the store, not the data,
/// failed (the connection dropped and could not be resumed in time): the
/// bytes read so far say nothing about the backup, so nobody may call it
/// corrupt. It travels inside an `io::Error` through decompression and
/// decryption; [`store_failure`] finds it again.
#[derive(Debug, thiserror::Error)]
#[error("{detail}")]
pub struct ReadFailure {
    store: String,
    detail: String,
}

impl ReadFailure {
    /// Wraps a stream error of `store` as a store failure.
    pub fn wrap(store: &str, e: io::Error) -> io::Error {
        io::Error::new(
            e.kind(),
            ReadFailure {
                store: store.to_string(),
                detail: e.to_string(),
            },
        )
    }
}

/// The store failure behind a read error, if a store's stream raised it
/// (however many readers it passed through on its way up).
pub fn store_failure(e: &io::Error) -> Option<StoreError> {
    let mut next: Option<&(dyn std::error::Error + 'static)> = e
        .get_ref()
        .map(|inner| inner as &(dyn std::error::Error + 'static));
    while let Some(err) = next {
        if let Some(failure) = err.downcast_ref::<ReadFailure>() {
            return Some(StoreError::Unreachable {
                store: failure.store.clone(),
                detail: format!("reading stopped midway: {}", failure.detail),
            });
        }
        next = match err.downcast_ref::<io::Error>() {
            Some(io) => io
                .get_ref()
                .map(|inner| inner as &(dyn std::error::Error + 'static)),
            None => err.source(),
        };
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_failure_is_found_through_wrapping_readers() {
        let raw = io::Error::new(io::ErrorKind::ConnectionReset, "connection reset");
        let wrapped = ReadFailure::wrap("gs://b", raw);
        // A decompressor or decryptor that wraps what it got.
        let outer = io::Error::other(wrapped);
        let found = store_failure(&outer).expect("found");
        assert!(matches!(found, StoreError::Unreachable { .. }), "{found}");
        assert!(found.to_string().contains("connection reset"), "{found}");
        assert!(store_failure(&io::Error::other("zstd: corrupt block")).is_none());
    }

    #[test]
    fn giving_up_names_the_allowance() {
        let e = StoreError::Unreachable {
            store: "s3://b".into(),
            detail: "connection refused".into(),
        }
        .gave_up_after(
            std::time::Duration::from_secs(61),
            std::time::Duration::from_secs(60),
        );
        assert!(
            e.to_string()
                .contains("gave up after 1m1s of failures (--store-retry-for 1m)"),
            "{e}"
        );
    }
}
