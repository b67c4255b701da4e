//! The agent's error type, how errors map to exit codes, and the bounded
//! category every failure carries into the run summary, logs and metrics.
//!
//! Exit codes are part of the command-line contract (docs/ARCHITECTURE.md,
//! "Exit codes and categories"): 1 when the job itself failed, 2 when the
//! input or configuration is wrong and retrying the same command cannot
//! help, 128 + N when signal N interrupted the run.

use crate::store::StoreError;
pub use vertice_crds::run_summary::ErrorCategory;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A flag, URL or setting is wrong; the message names it and says what would fix it.
    #[error("{0}")]
    Usage(String),
    /// The run failed for a reason of the given category.
    #[error("{message}")]
    Run {
        category: ErrorCategory,
        message: String,
    },
    /// A signal stopped the run; the message says what was undone.
    #[error("{message}")]
    Interrupted { signal: i32, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Error {
    pub fn usage(msg: impl Into<String>) -> Self {
        Error::Usage(msg.into())
    }

    /// A failure of the run with its category.
    pub fn run(category: ErrorCategory, msg: impl Into<String>) -> Self {
        Error::Run {
            category,
            message: msg.into(),
        }
    }

    pub fn source(msg: impl Into<String>) -> Self {
        Error::run(ErrorCategory::Source, msg)
    }

    pub fn target(msg: impl Into<String>) -> Self {
        Error::run(ErrorCategory::Target, msg)
    }

    pub fn integrity(msg: impl Into<String>) -> Self {
        Error::run(ErrorCategory::Integrity, msg)
    }

    pub fn encryption(msg: impl Into<String>) -> Self {
        Error::run(ErrorCategory::Encryption, msg)
    }

    pub fn hook(msg: impl Into<String>) -> Self {
        Error::run(ErrorCategory::Hook, msg)
    }

    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) => 2,
            Error::Run { .. } => 1,
            Error::Interrupted { signal, .. } => 128 + signal,
            Error::Store(e) if e.is_configuration() => 2,
            Error::Store(_) => 1,
        }
    }

    /// A short bounded label for metrics and summaries (never the message itself).
    pub fn category(&self) -> ErrorCategory {
        match self {
            Error::Usage(_) => ErrorCategory::Config,
            Error::Run { category, .. } => *category,
            Error::Interrupted { .. } => ErrorCategory::Interrupted,
            Error::Store(e) if e.is_configuration() => ErrorCategory::Config,
            Error::Store(StoreError::Body(_)) => ErrorCategory::Source,
            Error::Store(_) => ErrorCategory::Store,
        }
    }

    /// The same error with `context` said first, keeping its category.
    pub fn context(self, context: impl std::fmt::Display) -> Self {
        self.map_message(|m| format!("{context}: {m}"))
    }

    /// The same error, its message rewritten, keeping its category.
    pub fn map_message(self, f: impl FnOnce(String) -> String) -> Self {
        match self {
            Error::Usage(m) => Error::Usage(f(m)),
            Error::Run { category, message } => Error::Run {
                category,
                message: f(message),
            },
            Error::Interrupted { signal, message } => Error::Interrupted {
                signal,
                message: f(message),
            },
            Error::Store(e) if e.is_configuration() => Error::Usage(f(e.to_string())),
            Error::Store(StoreError::Body(e)) => Error::source(f(e.to_string())),
            Error::Store(e) => Error::run(ErrorCategory::Store, f(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories_and_exit_codes() {
        assert_eq!(Error::usage("x").exit_code(), 2);
        assert_eq!(Error::usage("x").category(), ErrorCategory::Config);
        assert_eq!(Error::integrity("x").exit_code(), 1);
        assert_eq!(Error::integrity("x").category().as_str(), "integrity");
        let stopped = Error::Interrupted {
            signal: 15,
            message: "m".into(),
        };
        assert_eq!(stopped.exit_code(), 143);
        assert_eq!(stopped.category().as_str(), "interrupted");
        let store = Error::Store(StoreError::Config("bad".into()));
        assert_eq!(
            (store.exit_code(), store.category()),
            (2, ErrorCategory::Config)
        );
        let ctx = Error::target("boom").context("restoring");
        assert_eq!(ctx.to_string(), "restoring: boom");
        assert_eq!(ctx.category(), ErrorCategory::Target);
    }
}
