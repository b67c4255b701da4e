//! The streaming pipeline: meters that hash and count bytes as they pass,
//! compression codecs, child processes as byte streams, and progress reports.

pub mod checked_end;
pub mod codec;
pub mod encryption;
pub mod meter;
pub mod process;
pub mod progress;
pub mod read_ahead;
pub mod redact;
