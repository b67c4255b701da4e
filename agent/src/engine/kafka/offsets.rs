//! Where restored records landed, and what a consumer group's committed
//! offset becomes on the target. Kafka gives a restored record a new
//! offset (compaction and transaction markers left gaps the target does
//! not have), so each partition's source→target map is kept as runs of
//! consecutive offsets: one entry per gap, not per record.

use std::collections::BTreeMap;

/// One run: source offsets `source..source + len` became target offsets
/// `target..target + len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    pub source: i64,
    pub target: i64,
    pub len: i64,
}

/// A partition's source→target offsets, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OffsetMap {
    runs: Vec<Run>,
}

impl OffsetMap {
    /// Records that the record at `source` landed at `target`; calls come
    /// in offset order.
    pub fn push(&mut self, source: i64, target: i64) {
        if let Some(last) = self.runs.last_mut() {
            if last.source + last.len == source && last.target + last.len == target {
                last.len += 1;
                return;
            }
        }
        self.runs.push(Run {
            source,
            target,
            len: 1,
        });
    }

    pub fn runs(&self) -> &[Run] {
        &self.runs
    }

    /// Records restored.
    pub fn records(&self) -> i64 {
        self.runs.iter().map(|r| r.len).sum()
    }

    /// The target offset a group committed at `committed` (the next record
    /// it would read) resumes from: that of the first restored record at or
    /// after it, or `end` (the target's end after the restore) when the
    /// group had read everything restored.
    pub fn translate(&self, committed: i64, end: i64) -> i64 {
        // The first run that ends after `committed`.
        let i = self.runs.partition_point(|r| r.source + r.len <= committed);
        match self.runs.get(i) {
            None => end,
            Some(r) if committed <= r.source => r.target,
            Some(r) => r.target + (committed - r.source),
        }
    }
}

/// `--topic-map orders=orders-restored,…`: the target topic of each source
/// topic (unnamed topics keep their names). Refuses a map naming a topic
/// the backup does not hold, or sending two topics to one.
pub fn topic_map(pairs: &[String], backed_up: &[&str]) -> Result<BTreeMap<String, String>, String> {
    let mut map: BTreeMap<String, String> = backed_up
        .iter()
        .map(|t| (t.to_string(), t.to_string()))
        .collect();
    for pair in pairs {
        let Some((from, to)) = pair.split_once('=') else {
            return Err(format!(
                "--topic-map {pair:?}: write SOURCE=TARGET (for example orders=orders-restored)"
            ));
        };
        let (from, to) = (from.trim(), to.trim());
        if !backed_up.contains(&from) {
            return Err(format!(
                "--topic-map {pair:?}: the backup holds no topic {from:?} (it holds {})",
                backed_up.join(", ")
            ));
        }
        if to.is_empty()
            || to.len() > 249
            || !to
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err(format!(
                "--topic-map {pair:?}: {to:?} is not a valid topic name (ASCII letters, digits, '.', '_', '-'; at most 249)"
            ));
        }
        map.insert(from.to_string(), to.to_string());
    }
    let mut seen = BTreeMap::new();
    for (from, to) in &map {
        if let Some(other) = seen.insert(to.clone(), from.clone()) {
            return Err(format!(
                "--topic-map: topics {other:?} and {from:?} would both be restored into {to:?}"
            ));
        }
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(i64, i64)]) -> OffsetMap {
        let mut m = OffsetMap::default();
        for &(s, t) in pairs {
            m.push(s, t);
        }
        m
    }

    #[test]
    fn consecutive_offsets_make_one_run_and_gaps_start_new_ones() {
        let m = map(&[(10, 0), (11, 1), (12, 2), (15, 3), (16, 4), (20, 5)]);
        assert_eq!(
            m.runs(),
            [
                Run {
                    source: 10,
                    target: 0,
                    len: 3
                },
                Run {
                    source: 15,
                    target: 3,
                    len: 2
                },
                Run {
                    source: 20,
                    target: 5,
                    len: 1
                },
            ]
        );
        assert_eq!(m.records(), 6);
    }

    #[test]
    fn a_committed_offset_becomes_the_first_restored_record_at_or_after_it() {
        let m = map(&[(10, 0), (11, 1), (12, 2), (15, 3), (16, 4), (20, 5)]);
        let end = 6;
        for (committed, expected) in [
            (0, 0),  // before everything: from the start
            (10, 0), // the first record
            (12, 2), // inside a run
            (13, 3), // in a gap: the next restored record
            (14, 3),
            (16, 4),
            (17, 5),
            (20, 5),
            (21, end), // read everything: the new end
            (99, end),
        ] {
            assert_eq!(
                m.translate(committed, end),
                expected,
                "committed {committed}"
            );
        }
        assert_eq!(
            OffsetMap::default().translate(5, 0),
            0,
            "an empty partition"
        );
    }

    #[test]
    fn topic_maps_rename_and_refuse_what_cannot_be() {
        let backed = ["orders", "payments"];
        let m = topic_map(&["orders=orders-restored".into()], &backed).expect("map");
        assert_eq!(m["orders"], "orders-restored");
        assert_eq!(m["payments"], "payments");
        for (pair, needle) in [
            ("orders", "SOURCE=TARGET"),
            ("nope=x", "holds no topic"),
            ("orders=bad name", "not a valid topic name"),
            ("orders=payments", "both be restored into"),
        ] {
            let err = topic_map(&[pair.into()], &backed).expect_err(pair);
            assert!(
                err.contains("--topic-map") && err.contains(needle),
                "{pair}: {err}"
            );
        }
    }
}
