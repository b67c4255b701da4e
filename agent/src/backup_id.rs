//! Backup ids: `20261127T060000Z-1a2b`, UTC start time plus 4 random hex
//! digits, so ids sort by time and two runs in one second do not collide.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, NaiveDateTime, Utc};

const TIME_FORMAT: &str = "%Y%m%dT%H%M%SZ";

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BackupId(String);

impl BackupId {
    pub fn generate(at: DateTime<Utc>) -> Self {
        let mut suffix = [0u8; 2];
        // Without randomness fall back to the sub-second clock: still unique enough.
        if getrandom::fill(&mut suffix).is_err() {
            suffix = (at.timestamp_subsec_micros() as u16).to_le_bytes();
        }
        BackupId(format!(
            "{}-{}",
            at.format(TIME_FORMAT),
            hex::encode(suffix)
        ))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The start time encoded in the id.
    pub fn time(&self) -> Option<DateTime<Utc>> {
        let stamp = self.0.split('-').next()?;
        NaiveDateTime::parse_from_str(stamp, TIME_FORMAT)
            .ok()
            .map(|t| t.and_utc())
    }
}

impl fmt::Display for BackupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for BackupId {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let valid = s.len() == 21
            && s.as_bytes()[16] == b'-'
            && s[17..]
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
            && NaiveDateTime::parse_from_str(&s[..16], TIME_FORMAT).is_ok();
        if valid {
            Ok(BackupId(s.to_string()))
        } else {
            Err(format!(
                "{s:?} is not a backup id (expected e.g. 20261127T060000Z-1a2b)"
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn generated_ids_parse_sort_and_carry_their_time() {
        let t = Utc
            .with_ymd_and_hms(2026, 11, 27, 6, 0, 0)
            .single()
            .expect("valid time");
        let id = BackupId::generate(t);
        assert!(id.as_str().starts_with("20261127T060000Z-"), "{id}");
        assert_eq!(id.as_str().parse::<BackupId>(), Ok(id.clone()));
        assert_eq!(id.time(), Some(t));
        let later = BackupId::generate(t + chrono::Duration::seconds(1));
        assert!(later > id);
    }

    #[test]
    fn rejects_malformed_ids() {
        for bad in [
            "latest",
            "20261127T060000Z",
            "20261327T060000Z-1a2b",
            "20261127T060000Z-1A2B",
            "x0261127T060000Z-1a2b",
        ] {
            assert!(bad.parse::<BackupId>().is_err(), "{bad}");
        }
    }
}
