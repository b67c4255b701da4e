//! What a parallel PostgreSQL backup (`--jobs N`, N > 1) records in its
//! manifest (`source.postgres`): the snapshot every part was read under and,
//! per data part, which table (and which block range of it) the part holds
//! and how many rows, so a restore loads each part with the right `COPY` and
//! can tell that every row arrived.
//!
//! The backup's first artifact is a `pg_dump` custom archive of everything
//! but the parts' table data (schema, sequences, large objects, small
//! tables); every other artifact is one part: `COPY … TO STDOUT` text, the
//! format `COPY … FROM STDIN` reads. A leaf: it imports nothing of the agent.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostgresFacts {
    /// `pg_export_snapshot()`'s name: the one instant pg_dump and every
    /// worker read.
    pub snapshot: String,
    /// Workers the backup ran with.
    pub jobs: u32,
    /// The data parts, in artifact order.
    pub parts: Vec<CopyPart>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyPart {
    /// The artifact's name in the backup's directory.
    pub artifact: String,
    pub schema: String,
    pub table: String,
    /// Column names in `COPY` order (generated columns left out, as
    /// pg_dump does); empty for a table without columns.
    pub columns: Vec<String>,
    /// The part holds the rows of these heap blocks only (`ctid` range);
    /// `None`: the whole table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocks: Option<BlockRange>,
    /// Rows in the part (lines of `COPY` text).
    pub rows: u64,
}

/// Heap blocks `from` (inclusive) up to `to` (exclusive); `to: None` runs to
/// the end of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockRange {
    pub from: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<u32>,
}
