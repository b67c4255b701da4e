//! The agent's error type and how errors map to exit codes.
//!
//! Exit codes are part of the command-line contract (DESIGN.md): 1 when the job
//! itself failed, 2 when the input or configuration is wrong and retrying the
//! same command cannot help.

use crate::store::StoreError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A flag, URL or setting is wrong; the message names it and says what would fix it.
    #[error("{0}")]
    Usage(String),
    /// The run itself failed (a dump, a restore, a check).
    #[error("{0}")]
    Failed(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Error {
    pub fn usage(msg: impl Into<String>) -> Self {
        Error::Usage(msg.into())
    }

    pub fn failed(msg: impl Into<String>) -> Self {
        Error::Failed(msg.into())
    }

    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) => 2,
            Error::Failed(_) => 1,
            Error::Store(e) if e.is_configuration() => 2,
            Error::Store(_) => 1,
        }
    }

    /// A short bounded label for metrics and summaries (never the message itself).
    pub fn category(&self) -> &'static str {
        match self {
            Error::Usage(_) => "usage",
            Error::Failed(_) => "failed",
            Error::Store(e) => e.category(),
        }
    }
}
