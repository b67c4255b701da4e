//! Retention: which backups to keep, as a pure function of the backups, the
//! policy and the time, so the plan can be printed (`--dry-run`) and tested
//! without a store. Buckets (hour, day, ISO week, month, year) are in UTC.
//!
//! "Newest" is the series order (`catalog::series_time`: the id, which a new
//! backup always takes past the newest one). Besides, the backup whose
//! manifest the store wrote last, by the store's own clock, is always kept:
//! should ids and the store ever disagree (backups written before ids were
//! kept in order, two runs at once on nodes with different clocks), neither
//! candidate for "the last backup" is deleted.

use std::collections::BTreeSet;
use std::fmt;

use chrono::{DateTime, Datelike, Duration, Timelike, Utc};
/// Keep rules; a backup is kept when any rule keeps it. The CRD's type: the
/// flags are its fields, and the controller passes them as they are.
pub use vertice_crds::backup::RetentionSpec as Policy;

/// One backup series member: its id and its place in the series
/// (`catalog::series_time`, UTC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backup {
    pub id: String,
    pub time: DateTime<Utc>,
    /// The store wrote this backup's manifest after every other one of the
    /// series (by the store's clock).
    pub written_last: bool,
    /// An incremental backup: the backup it continues, kept as long as
    /// this one is.
    pub parent: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    Newest,
    WrittenLast,
    InFuture,
    Last(u32),
    Within,
    Bucket {
        rule: &'static str,
        period: String,
    },
    MinKeep,
    /// A kept incremental backup (this id) needs it to restore.
    ParentOf(String),
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Newest => write!(f, "newest backup"),
            Reason::WrittenLast => write!(f, "written last (by the store's clock)"),
            Reason::InFuture => write!(f, "dated after now (clock skew?)"),
            Reason::Last(n) => write!(f, "last {n}"),
            Reason::Within => write!(f, "within --keep-within"),
            Reason::Bucket { rule, period } => write!(f, "{rule} {period}"),
            Reason::MinKeep => write!(f, "--min-keep floor"),
            Reason::ParentOf(id) => write!(f, "needed to restore {id} (incremental)"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub backup: Backup,
    /// Empty means delete.
    pub keep_because: Vec<Reason>,
}

impl Decision {
    pub fn keep(&self) -> bool {
        !self.keep_because.is_empty()
    }
}

type BucketKey = fn(DateTime<Utc>) -> String;

fn hour(t: DateTime<Utc>) -> String {
    format!("{}T{:02}", t.format("%Y-%m-%d"), t.hour())
}
fn day(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d").to_string()
}
fn week(t: DateTime<Utc>) -> String {
    let w = t.iso_week();
    format!("{}-W{:02}", w.year(), w.week())
}
fn month(t: DateTime<Utc>) -> String {
    t.format("%Y-%m").to_string()
}
fn year(t: DateTime<Utc>) -> String {
    t.year().to_string()
}

/// Decides every backup of one series, newest first. The newest backup is
/// always kept; so are the `min_keep` newest.
pub fn plan(backups: &[Backup], policy: &Policy, now: DateTime<Utc>) -> Vec<Decision> {
    let mut sorted: Vec<Backup> = backups.to_vec();
    sorted.sort_by(|a, b| b.time.cmp(&a.time).then_with(|| b.id.cmp(&a.id)));
    let mut reasons: Vec<Vec<Reason>> = vec![Vec::new(); sorted.len()];

    if !reasons.is_empty() {
        reasons[0].push(Reason::Newest);
    }
    for (i, b) in sorted.iter().enumerate() {
        if b.written_last {
            reasons[i].push(Reason::WrittenLast);
        }
        if b.time > now {
            reasons[i].push(Reason::InFuture);
        }
        // A bad `keep_within` never gets here: the flag refuses it.
        if let Some(Ok(within)) = policy.keep_within.as_ref().map(|w| w.get()) {
            if now - b.time <= within && b.time <= now {
                reasons[i].push(Reason::Within);
            }
        }
    }
    if let Some(n) = policy.keep_last {
        for r in reasons.iter_mut().take(n as usize) {
            r.push(Reason::Last(n));
        }
    }
    let rules: [(Option<u32>, &'static str, BucketKey); 5] = [
        (policy.keep_hourly, "hourly", hour),
        (policy.keep_daily, "daily", day),
        (policy.keep_weekly, "weekly", week),
        (policy.keep_monthly, "monthly", month),
        (policy.keep_yearly, "yearly", year),
    ];
    for (count, rule, key) in rules {
        let Some(count) = count else { continue };
        // The newest backup of each of the `count` most recent periods that
        // have a backup.
        let mut seen: BTreeSet<String> = BTreeSet::new();
        for (i, b) in sorted.iter().enumerate() {
            if seen.len() as u32 >= count {
                break;
            }
            let period = key(b.time);
            if seen.insert(period.clone()) {
                reasons[i].push(Reason::Bucket { rule, period });
            }
        }
    }
    let mut kept = reasons.iter().filter(|r| !r.is_empty()).count() as u32;
    for r in reasons.iter_mut() {
        if kept >= policy.min_keep() {
            break;
        }
        if r.is_empty() {
            r.push(Reason::MinKeep);
            kept += 1;
        }
    }
    keep_parents(&sorted, &mut reasons);
    sorted
        .into_iter()
        .zip(reasons)
        .map(|(backup, keep_because)| Decision {
            backup,
            keep_because,
        })
        .collect()
}

/// Every backup a kept incremental backup continues, up to its full one,
/// is kept: deleting one would make every later backup of the chain
/// unrestorable.
fn keep_parents(sorted: &[Backup], reasons: &mut [Vec<Reason>]) {
    let index: std::collections::HashMap<&str, usize> = sorted
        .iter()
        .enumerate()
        .map(|(i, b)| (b.id.as_str(), i))
        .collect();
    let mut changed = true;
    while changed {
        changed = false;
        for (i, b) in sorted.iter().enumerate() {
            if reasons[i].is_empty() {
                continue;
            }
            let Some(&j) = b.parent.as_deref().and_then(|p| index.get(p)) else {
                continue;
            };
            let why = Reason::ParentOf(b.id.clone());
            if !reasons[j].contains(&why) {
                reasons[j].push(why);
                changed = true;
            }
        }
    }
}

/// Parses a retention span (`36h`, `14d`, `1y`): the one duration syntax of
/// Vertice, shared with the controller.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    vertice_crds::duration::parse(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0)
            .single()
            .expect("valid time")
    }

    fn series(times: &[DateTime<Utc>]) -> Vec<Backup> {
        times
            .iter()
            .map(|t| Backup {
                id: t.format("%Y%m%dT%H%M%SZ-0000").to_string(),
                time: *t,
                written_last: false,
                parent: None,
            })
            .collect()
    }

    fn kept(decisions: &[Decision]) -> Vec<DateTime<Utc>> {
        decisions
            .iter()
            .filter(|d| d.keep())
            .map(|d| d.backup.time)
            .collect()
    }

    fn policy() -> Policy {
        Policy {
            min_keep: Some(1),
            ..Policy::default()
        }
    }

    #[test]
    fn keep_last_keeps_the_newest_n() {
        let times: Vec<_> = (0..10).map(|i| at(2026, 11, 1 + i, 6, 0)).collect();
        let p = Policy {
            keep_last: Some(3),
            ..policy()
        };
        let d = plan(&series(&times), &p, at(2026, 11, 20, 0, 0));
        assert_eq!(kept(&d), vec![times[9], times[8], times[7]]);
        assert_eq!(d[0].keep_because, vec![Reason::Newest, Reason::Last(3)]);
        assert!(d[3..].iter().all(|d| !d.keep()));
    }

    #[test]
    fn a_kept_incremental_backup_keeps_its_whole_chain_and_nothing_else() {
        // Day 1 full, days 2-4 continue it; day 5 full, day 6 continues it.
        let times: Vec<_> = (0..6).map(|i| at(2026, 11, 1 + i, 6, 0)).collect();
        let mut backups = series(&times);
        for (child, parent) in [(1, 0), (2, 1), (3, 2), (5, 4)] {
            backups[child].parent = Some(backups[parent].id.clone());
        }
        let p = Policy {
            keep_last: Some(1),
            ..policy()
        };
        let d = plan(&backups, &p, at(2026, 11, 20, 0, 0));
        assert_eq!(kept(&d), vec![times[5], times[4]]);
        assert_eq!(
            d[1].keep_because,
            vec![Reason::ParentOf(backups[5].id.clone())]
        );
        // Keeping day 3 keeps days 2 and 1 too, never day 4.
        let mut chain = backups.clone();
        chain.truncate(3);
        let d = plan(&chain, &p, at(2026, 11, 20, 0, 0));
        assert_eq!(kept(&d), vec![times[2], times[1], times[0]]);
        assert!(d[2].to_string_reasons().contains("needed to restore"));
    }

    impl Decision {
        fn to_string_reasons(&self) -> String {
            self.keep_because
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        }
    }

    #[test]
    fn daily_keeps_the_newest_of_each_day_across_a_leap_day() {
        // Two backups a day around 29 February 2028.
        let mut times = Vec::new();
        for (mo, d) in [(2, 27), (2, 28), (2, 29), (3, 1)] {
            times.push(at(2028, mo, d, 1, 0));
            times.push(at(2028, mo, d, 23, 30));
        }
        let p = Policy {
            keep_daily: Some(3),
            ..policy()
        };
        let d = plan(&series(&times), &p, at(2028, 3, 2, 0, 0));
        assert_eq!(
            kept(&d),
            vec![
                at(2028, 3, 1, 23, 30),
                at(2028, 2, 29, 23, 30),
                at(2028, 2, 28, 23, 30)
            ]
        );
        assert!(d.iter().any(|d| d.keep_because.contains(&Reason::Bucket {
            rule: "daily",
            period: "2028-02-29".into()
        })));
    }

    #[test]
    fn weekly_uses_iso_weeks_across_the_year_boundary() {
        // 2026-12-28 (Mon) .. 2027-01-03 (Sun) are all ISO week 2026-W53;
        // 2027-01-04 starts 2027-W01.
        let times = vec![
            at(2026, 12, 21, 3, 0), // 2026-W52
            at(2026, 12, 28, 3, 0), // 2026-W53
            at(2027, 1, 3, 3, 0),   // 2026-W53, newer
            at(2027, 1, 4, 3, 0),   // 2027-W01
        ];
        let p = Policy {
            keep_weekly: Some(2),
            ..policy()
        };
        let d = plan(&series(&times), &p, at(2027, 1, 5, 0, 0));
        assert_eq!(kept(&d), vec![at(2027, 1, 4, 3, 0), at(2027, 1, 3, 3, 0)]);
        assert!(d[1].keep_because.contains(&Reason::Bucket {
            rule: "weekly",
            period: "2026-W53".into()
        }));
    }

    #[test]
    fn monthly_and_yearly_buckets_at_boundaries() {
        let times = vec![
            at(2024, 12, 31, 23, 59),
            at(2025, 1, 1, 0, 0),
            at(2025, 1, 31, 23, 59),
            at(2025, 2, 1, 0, 1),
            at(2025, 12, 31, 23, 0),
        ];
        let p = Policy {
            keep_monthly: Some(3),
            keep_yearly: Some(2),
            ..policy()
        };
        let d = plan(&series(&times), &p, at(2026, 1, 1, 0, 0));
        // monthly: 2025-12, 2025-02, 2025-01 (newest of January) ; yearly: 2025, 2024
        assert_eq!(
            kept(&d),
            vec![
                at(2025, 12, 31, 23, 0),
                at(2025, 2, 1, 0, 1),
                at(2025, 1, 31, 23, 59),
                at(2024, 12, 31, 23, 59)
            ]
        );
    }

    #[test]
    fn hourly_and_within() {
        let times: Vec<_> = (0..6)
            .map(|i| at(2026, 11, 27, 10 + i / 3, (i % 3) * 20))
            .collect();
        let p = Policy {
            keep_hourly: Some(1),
            keep_within: Some("30m".parse().expect("duration")),
            ..policy()
        };
        // now 11:45: within 30 min → 11:40 and 11:20; hourly 1 → 11:40.
        let d = plan(&series(&times), &p, at(2026, 11, 27, 11, 45));
        assert_eq!(
            kept(&d),
            vec![at(2026, 11, 27, 11, 40), at(2026, 11, 27, 11, 20)]
        );
    }

    #[test]
    fn the_newest_is_kept_even_when_every_rule_excludes_it() {
        let times = vec![at(2020, 1, 1, 0, 0), at(2020, 6, 1, 0, 0)];
        let p = Policy {
            keep_within: Some("1d".parse().expect("duration")),
            ..policy()
        };
        let d = plan(&series(&times), &p, at(2026, 11, 27, 0, 0));
        assert_eq!(kept(&d), vec![at(2020, 6, 1, 0, 0)]);
        assert_eq!(d[0].keep_because, vec![Reason::Newest]);
    }

    #[test]
    fn min_keep_is_a_floor() {
        let times: Vec<_> = (1..=5).map(|d| at(2026, 11, d, 0, 0)).collect();
        let p = Policy {
            keep_last: Some(1),
            min_keep: Some(3),
            ..Policy::default()
        };
        let d = plan(&series(&times), &p, at(2026, 11, 27, 0, 0));
        assert_eq!(kept(&d).len(), 3);
        assert_eq!(d[2].keep_because, vec![Reason::MinKeep]);
    }

    #[test]
    fn future_backups_are_kept_and_empty_series_is_fine() {
        let times = vec![at(2026, 11, 1, 0, 0), at(2026, 12, 1, 0, 0)];
        let p = Policy {
            keep_last: Some(1),
            ..policy()
        };
        let d = plan(&series(&times), &p, at(2026, 11, 27, 0, 0));
        assert!(d[0].keep_because.contains(&Reason::InFuture));
        assert!(plan(&[], &p, at(2026, 1, 1, 0, 0)).is_empty());
    }

    #[test]
    fn the_backup_written_last_is_kept_whatever_its_id_says() {
        // Two backups whose ids disagree with the order the store wrote
        // them in (taken before ids were kept in order): keep-last 1 keeps
        // the newest id and the one the store wrote last.
        let mut backups = series(&[at(2026, 11, 2, 6, 0), at(2026, 11, 2, 7, 0)]);
        backups[0].written_last = true;
        let p = Policy {
            keep_last: Some(1),
            ..policy()
        };
        let d = plan(&backups, &p, at(2026, 11, 3, 0, 0));
        assert_eq!(kept(&d), vec![at(2026, 11, 2, 7, 0), at(2026, 11, 2, 6, 0)]);
        assert_eq!(d[1].keep_because, vec![Reason::WrittenLast]);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("36h"), Ok(Duration::hours(36)));
        assert_eq!(parse_duration("1d12h"), Ok(Duration::hours(36)));
        assert_eq!(parse_duration("2w"), Ok(Duration::days(14)));
        assert_eq!(parse_duration("1y"), Ok(Duration::days(365)));
        assert_eq!(parse_duration("90m"), Ok(Duration::minutes(90)));
        for bad in ["", "12", "h", "3x", "1.5d", "-1d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
