//! A target server older than the backup's source: refused, or (with
//! `--allow-older-server`) let through, warned about and remembered for the
//! caller's report.

use std::sync::{Arc, Mutex};

use super::super::version::Version;
use super::settings::RestoreInto;
use crate::error::Error;

/// An older server psql reached that `--allow-older-server` let through,
/// shared with the caller, which names it (the drill's report); filled as
/// soon as psql answers.
#[derive(Clone, Default)]
pub struct OlderServer(Arc<Mutex<Option<(Version, Version)>>>);

impl OlderServer {
    /// `PostgreSQL 15.8, older than the backup's 17.2 (--allow-older-server)`.
    pub fn describe(&self) -> Option<String> {
        let (source, target) = self.0.lock().ok()?.clone()?;
        Some(format!(
            "PostgreSQL {}, older than the backup's {} (--allow-older-server)",
            target.text, source.text
        ))
    }

    pub(super) fn note(&self, source: &Version, target: &Version) {
        if let Ok(mut seen) = self.0.lock() {
            *seen = Some((source.clone(), target.clone()));
        }
    }
}

/// Says that an older server is being restored into: the override is the
/// user's, but whoever reads the log later must see what it let through.
pub(super) fn warn_older(into: RestoreInto, backup_id: &str, source: &Version, target: &Version) {
    tracing::warn!(
        backup = %backup_id,
        "--allow-older-server: backup {backup_id} was taken from PostgreSQL {} and {} runs PostgreSQL {}, an older major; trying anyway (pg_dump wrote SQL for {}, which {} may not accept; nothing commits unless every statement succeeds)",
        source.text,
        into.server(),
        target.text,
        source.major,
        target.major,
    );
}

/// A server older than the backup's source, naming both versions.
pub(super) fn older_refusal(
    into: RestoreInto,
    id: &str,
    source: &Version,
    target: &Version,
) -> Error {
    Error::usage(format!(
        "{}: backup {id} was taken from PostgreSQL {} and {} runs PostgreSQL {}; restoring into an older major is refused (pg_dump wrote SQL for {}, which {} may not accept): {}; nothing was restored",
        into.flag(),
        source.text,
        into.server(),
        target.text,
        source.major,
        target.major,
        into.older_server_fix(source.major),
    ))
}
