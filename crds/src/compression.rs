//! Compression algorithms a backup artifact can be stored with.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How an artifact's bytes are compressed before they are hashed and stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    Zstd,
    Gzip,
    None,
}

impl Compression {
    /// The file-name suffix stock tools recognise (`.zst`, `.gz`), empty for none.
    pub fn file_suffix(self) -> &'static str {
        match self {
            Compression::Zstd => ".zst",
            Compression::Gzip => ".gz",
            Compression::None => "",
        }
    }

    /// Accepted levels: zstd 1..=19 (22 with ultra is not worth its memory in a Job),
    /// gzip 1..=9; none takes no level.
    pub fn level_range(self) -> Option<std::ops::RangeInclusive<i32>> {
        match self {
            Compression::Zstd => Some(1..=19),
            Compression::Gzip => Some(1..=9),
            Compression::None => None,
        }
    }

    /// The level used when none is configured: zstd 1, fast enough to keep
    /// up with `pg_dump` on a small pod (3 costs ~20% more CPU for ~5-10%
    /// smaller backups; see scripts/bench-postgres).
    pub fn default_level(self) -> Option<i32> {
        match self {
            Compression::Zstd => Some(1),
            Compression::Gzip => Some(6),
            Compression::None => None,
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Compression::Zstd => "zstd",
            Compression::Gzip => "gzip",
            Compression::None => "none",
        })
    }
}

impl FromStr for Compression {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "zstd" | "zst" => Ok(Compression::Zstd),
            "gzip" | "gz" => Ok(Compression::Gzip),
            "none" | "off" => Ok(Compression::None),
            other => Err(format!(
                "unknown compression {other:?}: use one of zstd, gzip, none"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_aliases() {
        assert_eq!("ZSTD".parse::<Compression>(), Ok(Compression::Zstd));
        assert_eq!("gz".parse::<Compression>(), Ok(Compression::Gzip));
        assert_eq!("none".parse::<Compression>(), Ok(Compression::None));
        let err = "lz4"
            .parse::<Compression>()
            .expect_err("lz4 is not offered");
        assert!(err.contains("zstd, gzip, none"), "{err}");
    }

    #[test]
    fn display_round_trips() {
        for c in [Compression::Zstd, Compression::Gzip, Compression::None] {
            assert_eq!(c.to_string().parse::<Compression>(), Ok(c));
        }
    }
}
