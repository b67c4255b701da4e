//! Which PostgreSQL versions a restore can work with, decided before
//! anything runs (pure): the backup's server (manifest), the target server
//! (asked by psql), the `pg_restore` binary and the archive's format.
//!
//! As pg_dump refuses a server newer than itself, a restore refuses what is
//! known not to work, naming both versions: a target older than the source
//! (pg_dump's SQL uses what the source has; the agent's guard for
//! `transaction_timeout` is no promise for the rest), and a pg_restore too
//! old to read the archive ("unsupported version (1.16) in file header").

use std::fmt;

/// A major version: `(17, 0)` from 10 on, `(9, 6)` before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Major(pub u32, pub u32);

impl Major {
    /// From `server_version_num` (150018 → 15, 90624 → 9.6).
    pub fn from_num(num: u32) -> Major {
        if num >= 100_000 {
            Major(num / 10_000, 0)
        } else {
            Major(num / 10_000, num / 100 % 100)
        }
    }

    /// The lowest `server_version_num` of this major.
    pub fn min_num(self) -> u32 {
        self.0 * 10_000 + self.1 * 100
    }

    /// From a version text: `17.2 (Debian 17.2-1.pgdg)`, `9.6.24`, `18beta1`.
    pub fn parse(text: &str) -> Option<Major> {
        let digits = |s: &str| -> Option<u32> {
            let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
            s[..end].parse().ok()
        };
        let text = text.trim();
        let first = digits(text)?;
        if first >= 10 {
            return Some(Major(first, 0));
        }
        let rest = text.split_once('.')?.1;
        Some(Major(first, digits(rest)?))
    }
}

impl fmt::Display for Major {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 >= 10 {
            write!(f, "{}", self.0)
        } else {
            write!(f, "{}.{}", self.0, self.1)
        }
    }
}

/// A version as a server or tool reports it, with its major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub major: Major,
    /// As reported, e.g. `17.2 (Debian 17.2-1)`; for messages.
    pub text: String,
}

impl Version {
    pub fn parse(text: &str) -> Option<Version> {
        Some(Version {
            major: Major::parse(text)?,
            text: text.trim().to_string(),
        })
    }
}

/// The oldest pg_restore that reads an archive of this format (pg_dump's
/// `K_VERS_*`): 1.14 came with 12 (table access methods), 1.15 with 16
/// (compression algorithm), 1.16 with 17 (`BLOB METADATA`). A format newer
/// than this table needs the pg_restore of the pg_dump that wrote it.
pub fn pg_restore_needed(archive: (u8, u8, u8), pg_dump: Option<Major>) -> Option<Major> {
    match (archive.0, archive.1) {
        (1, 16) => Some(Major(17, 0)),
        (1, 15) => Some(Major(16, 0)),
        (1, 14) => Some(Major(12, 0)),
        (1, 0..=13) => None,
        _ => pg_dump.or(Some(Major(18, 0))),
    }
}

/// What is known before a restore starts; `None` where it could not be
/// found out (an older manifest, a wrapper that prints no version).
#[derive(Debug, Clone, Default)]
pub struct Known {
    pub source: Option<Version>,
    pub target: Option<Version>,
    pub pg_restore: Option<Version>,
    /// The archive header's format version and pg_dump version.
    pub archive: Option<((u8, u8, u8), Option<Version>)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// This pg_restore cannot read the archive.
    Unreadable {
        pg_restore: Version,
        archive: (u8, u8, u8),
        pg_dump: Option<Version>,
        needed: Major,
    },
    /// The target server is of an older major than the backup's source.
    OlderTarget { source: Version, target: Version },
}

/// Refuses what cannot work; `allow_older` lets an older target through
/// (`restore/older_server.rs` warns, naming both versions, once psql names the
/// server). Whatever is unknown is not held against the restore.
pub fn check(known: &Known, allow_older: bool) -> Result<(), Refusal> {
    if let (Some(tool), Some((archive, pg_dump))) = (&known.pg_restore, &known.archive) {
        let dump_major = pg_dump.as_ref().map(|v| v.major);
        if let Some(needed) = pg_restore_needed(*archive, dump_major) {
            if tool.major < needed {
                return Err(Refusal::Unreadable {
                    pg_restore: tool.clone(),
                    archive: *archive,
                    pg_dump: pg_dump.clone(),
                    needed,
                });
            }
        }
    }
    if let (Some(source), Some(target)) = (&known.source, &known.target) {
        if target.major < source.major && !allow_older {
            return Err(Refusal::OlderTarget {
                source: source.clone(),
                target: target.clone(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> Version {
        Version::parse(text).expect("version")
    }

    #[test]
    fn majors_read_from_numbers_and_texts() {
        assert_eq!(Major::from_num(150_018), Major(15, 0));
        assert_eq!(Major::from_num(170_002), Major(17, 0));
        assert_eq!(Major::from_num(90_624), Major(9, 6));
        assert_eq!(
            Major::parse("17.2 (Debian 17.2-1.pgdg120+1)"),
            Some(Major(17, 0))
        );
        assert_eq!(Major::parse("9.6.24"), Some(Major(9, 6)));
        assert_eq!(Major::parse("18beta1"), Some(Major(18, 0)));
        assert_eq!(Major::parse("PostgreSQL"), None);
        assert!(Major(9, 6) < Major(10, 0) && Major(15, 0) < Major(17, 0));
        assert_eq!(Major(9, 6).to_string(), "9.6");
        assert_eq!(
            (Major(17, 0).min_num(), Major(9, 6).min_num()),
            (170_000, 90_600)
        );
    }

    #[test]
    fn an_archive_needs_a_pg_restore_that_knows_its_format() {
        assert_eq!(pg_restore_needed((1, 16, 0), None), Some(Major(17, 0)));
        assert_eq!(pg_restore_needed((1, 15, 0), None), Some(Major(16, 0)));
        assert_eq!(pg_restore_needed((1, 14, 0), None), Some(Major(12, 0)));
        assert_eq!(pg_restore_needed((1, 13, 0), None), None);
        assert_eq!(
            pg_restore_needed((1, 17, 0), Some(Major(19, 0))),
            Some(Major(19, 0)),
            "an unknown format: the pg_dump's own major"
        );
    }

    #[test]
    fn older_targets_and_old_pg_restores_are_refused_newer_targets_pass() {
        let from_17 = Known {
            source: Some(v("17.2")),
            target: Some(v("15.18 (Debian 15.18-0+deb12u1)")),
            pg_restore: Some(v("17.2")),
            archive: Some(((1, 16, 0), Some(v("17.2")))),
        };
        assert_eq!(
            check(&from_17, false),
            Err(Refusal::OlderTarget {
                source: v("17.2"),
                target: v("15.18 (Debian 15.18-0+deb12u1)")
            })
        );
        assert_eq!(check(&from_17, true), Ok(()), "overridden");

        let old_tool = Known {
            pg_restore: Some(v("15.18")),
            target: Some(v("17.2")),
            ..from_17.clone()
        };
        assert!(matches!(
            check(&old_tool, true),
            Err(Refusal::Unreadable {
                needed: Major(17, 0),
                ..
            })
        ));

        let upgrade = Known {
            source: Some(v("15.18")),
            target: Some(v("17.2")),
            pg_restore: Some(v("17.2")),
            archive: Some(((1, 14, 0), Some(v("15.18")))),
        };
        assert_eq!(check(&upgrade, false), Ok(()));
        assert_eq!(check(&Known::default(), false), Ok(()), "nothing known");
    }
}
