//! What an RDB holds, counted in one streaming pass: keys per database,
//! keys still alive at a few given times (expiries are kept only as counts,
//! so memory stays bounded whatever the size), and the types of the keys a
//! drill asks about.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;

use super::rdb::{RdbError, RdbEvent, RdbReader};

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Census {
    pub rdb_version: u16,
    /// Keys per database number, expired or not.
    pub keys_per_db: BTreeMap<u64, u64>,
    /// For each of the times asked about (ms since the epoch), how many keys
    /// have no expiry or expire after it.
    pub alive_at: Vec<(i64, u64)>,
    /// The type of each asked-about `(db, key)` that is present.
    pub found: HashMap<(u64, Vec<u8>), &'static str>,
}

impl Census {
    pub fn total(&self) -> u64 {
        self.keys_per_db.values().sum()
    }

    pub fn alive(&self, at_ms: i64) -> Option<u64> {
        self.alive_at
            .iter()
            .find(|(t, _)| *t == at_ms)
            .map(|(_, n)| *n)
    }

    pub fn highest_db(&self) -> u64 {
        self.keys_per_db.keys().next_back().copied().unwrap_or(0)
    }
}

/// Reads the whole RDB to its end marker: a truncated or garbled file fails.
pub fn take<R: Read>(
    input: R,
    times_ms: &[i64],
    wanted: &[(u64, Vec<u8>)],
) -> Result<Census, RdbError> {
    let mut reader = RdbReader::new(input)?;
    let mut census = Census {
        rdb_version: reader.version(),
        alive_at: times_ms.iter().map(|t| (*t, 0)).collect(),
        ..Census::default()
    };
    let mut db = 0u64;
    while let Some(event) = reader.next_event()? {
        match event {
            RdbEvent::SelectDb(n) => db = n,
            RdbEvent::Key(head) => {
                // Only the type byte is needed: the value is skipped, never held.
                reader.skip_value(&head)?;
                *census.keys_per_db.entry(db).or_default() += 1;
                for (t, n) in &mut census.alive_at {
                    if head.expire_at_ms.is_none_or(|e| e > *t) {
                        *n += 1;
                    }
                }
                let kind = head.type_name();
                let id = (db, head.key);
                if wanted.contains(&id) {
                    census.found.insert(id, kind);
                }
            }
            RdbEvent::Function(_) | RdbEvent::SkippedModuleAux => {}
        }
    }
    Ok(census)
}

/// Whether `restored` is within `tolerance_percent` of `recorded`.
pub fn within_tolerance(recorded: u64, restored: u64, tolerance_percent: f64) -> bool {
    let allowed = (recorded as f64 * tolerance_percent / 100.0).ceil();
    (restored as f64 - recorded as f64).abs() <= allowed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tolerance_is_a_share_of_the_recorded_count() {
        assert!(within_tolerance(100, 95, 5.0));
        assert!(!within_tolerance(100, 94, 5.0));
        assert!(within_tolerance(0, 0, 0.0));
        assert!(!within_tolerance(0, 1, 5.0));
        assert!(
            within_tolerance(3, 4, 5.0),
            "a fraction of a key rounds up to one"
        );
    }

    #[test]
    fn a_truncated_rdb_fails() {
        assert!(take(&b"REDIS0011\xfa"[..], &[], &[]).is_err());
        assert!(take(&b"NOTREDIS"[..], &[], &[]).is_err());
    }
}
