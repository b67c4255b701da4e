//! The backup schedule as Kubernetes reads it: five-field cron (or a macro)
//! in an IANA time zone, plus the grace period after which a missing backup
//! is overdue. Pure: every function takes `now`.

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;
use vertice_crds::backup::Schedule;

pub mod kube_cron;

/// Default grace between a scheduled time and the success that must follow.
pub const DEFAULT_OVERDUE_AFTER: Duration = Duration::hours(1);

/// How far back the overdue check looks for a scheduled time. A schedule that
/// fires less often than yearly is not a backup schedule.
const LOOKBACK: Duration = Duration::days(400);

#[derive(Debug, Clone)]
pub struct ParsedSchedule {
    cron: Cron,
    tz: Tz,
    pub overdue_after: Duration,
}

/// Why a schedule cannot be used, naming the field (`at` is the path of
/// the schedule: `spec.schedule` or `spec.drill.schedule`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("{at}.cron {cron:?} is refused: {why}")]
    Cron {
        at: &'static str,
        cron: String,
        why: String,
    },
    #[error("{at}.timeZone {name:?} is not an IANA time zone (e.g. Europe/Berlin, Etc/UTC)")]
    TimeZone { at: &'static str, name: String },
    #[error("{at}.overdueAfter {text:?}: use a duration such as 45m, 2h or 1d")]
    OverdueAfter { at: &'static str, text: String },
}

impl ParsedSchedule {
    /// The backup's `spec.schedule`.
    pub fn parse(schedule: &Schedule) -> Result<Self, ScheduleError> {
        Self::parse_at(schedule, "spec.schedule")
    }

    /// A schedule at the path `at` (for the messages).
    pub fn parse_at(schedule: &Schedule, at: &'static str) -> Result<Self, ScheduleError> {
        let cron = parse_cron(&schedule.cron).map_err(|why| ScheduleError::Cron {
            at,
            cron: schedule.cron.clone(),
            why,
        })?;
        let tz = parse_time_zone(schedule.time_zone.as_deref())
            .map_err(|name| ScheduleError::TimeZone { at, name })?;
        let overdue_after = match &schedule.overdue_after {
            None => DEFAULT_OVERDUE_AFTER,
            Some(d) => d.get().map_err(|_| ScheduleError::OverdueAfter {
                at,
                text: d.to_string(),
            })?,
        };
        Ok(Self {
            cron,
            tz,
            overdue_after,
        })
    }

    /// The first scheduled time strictly after `now`.
    pub fn next_after(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_next_occurrence(&now.with_timezone(&self.tz), false)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    /// The latest scheduled time at or before `at`, if one is within the lookback.
    pub fn previous_at_or_before(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_previous_occurrence(&at.with_timezone(&self.tz), true)
            .ok()
            .map(|t| t.with_timezone(&Utc))
            .filter(|t| at - *t <= LOOKBACK)
    }

    /// The scheduled run whose backup should have succeeded by `now`: the
    /// latest scheduled time `t` with `t + overdue_after <= now`, not before
    /// `since` (the backup's creation: runs before it were never due).
    pub fn due_run(&self, now: DateTime<Utc>, since: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.previous_at_or_before(now - self.overdue_after)
            .filter(|t| *t >= since)
    }

    /// When the next run becomes due (for requeueing the overdue check).
    pub fn next_deadline(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let first_unchecked = now - self.overdue_after;
        self.next_after(first_unchecked)
            .map(|t| t + self.overdue_after)
    }
}

/// A schedule exactly as the API server accepts a CronJob's
/// (`kube_cron`), that fires at least once a year; the error says what is
/// wrong (the caller names the field).
pub fn parse_cron(expr: &str) -> Result<Cron, String> {
    let cron = kube_cron::parse(expr)?;
    if let Some(why) = cron.never_fires() {
        return Err(format!("this schedule never fires: {why}"));
    }
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
        .parse(&cron.to_croner())
        .map_err(|e| format!("could not be read ({e})"))
}

/// An IANA time zone (UTC when unset); the error is the name given.
pub fn parse_time_zone(name: Option<&str>) -> Result<Tz, String> {
    match name {
        None | Some("") => Ok(Tz::UTC),
        Some(name) => name.parse::<Tz>().map_err(|_| name.to_string()),
    }
}

/// `45m`, `2h`, `1d12h`, `90s`, `1w`: the one duration syntax of Vertice.
pub fn parse_duration(text: &str) -> Option<Duration> {
    vertice_crds::duration::parse(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn schedule(cron: &str, tz: Option<&str>, overdue: Option<&str>) -> Schedule {
        Schedule {
            cron: cron.into(),
            time_zone: tz.map(Into::into),
            overdue_after: overdue.map(Into::into),
        }
    }

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0)
            .single()
            .expect("valid time")
    }

    #[test]
    fn next_run_honours_the_time_zone_across_dst() {
        let s = ParsedSchedule::parse(&schedule("0 3 * * *", Some("Europe/Berlin"), None))
            .expect("valid");
        // Winter: 03:00 CET = 02:00 UTC.
        assert_eq!(
            s.next_after(utc(2026, 1, 10, 12, 0)),
            Some(utc(2026, 1, 11, 2, 0))
        );
        // Summer: 03:00 CEST = 01:00 UTC.
        assert_eq!(
            s.next_after(utc(2026, 7, 10, 12, 0)),
            Some(utc(2026, 7, 11, 1, 0))
        );
    }

    #[test]
    fn due_run_is_the_latest_time_past_its_grace() {
        let s = ParsedSchedule::parse(&schedule("0 3 * * *", None, Some("2h"))).expect("valid");
        let created = utc(2026, 1, 1, 0, 0);
        // 04:00: today's 03:00 run still has an hour; yesterday's is due.
        assert_eq!(
            s.due_run(utc(2026, 1, 10, 4, 0), created),
            Some(utc(2026, 1, 9, 3, 0))
        );
        assert_eq!(
            s.due_run(utc(2026, 1, 10, 5, 0), created),
            Some(utc(2026, 1, 10, 3, 0))
        );
        // A backup created after the last due run has nothing due yet.
        assert_eq!(
            s.due_run(utc(2026, 1, 10, 4, 0), utc(2026, 1, 9, 12, 0)),
            None
        );
        assert_eq!(
            s.next_deadline(utc(2026, 1, 10, 4, 0)),
            Some(utc(2026, 1, 10, 5, 0))
        );
    }

    #[test]
    fn macros_and_bad_expressions() {
        assert!(ParsedSchedule::parse(&schedule("@daily", None, None)).is_ok());
        assert!(ParsedSchedule::parse(&schedule("*/15 * * * *", None, None)).is_ok());
        for (bad, why) in [
            ("0 0 3 * * *", "5 fields"),
            ("@every 1h", "@every"),
            ("61 * * * *", "61"),
            ("0 3 * * 7", "Sunday is 0"),
            ("0 0 31 2 *", "never fires"),
            ("TZ=UTC 0 3 * * *", "timeZone"),
        ] {
            let err = ParsedSchedule::parse(&schedule(bad, None, None))
                .expect_err(bad)
                .to_string();
            assert!(
                err.contains("spec.schedule.cron") && err.contains(why),
                "{bad}: {err}"
            );
        }
        let err =
            ParsedSchedule::parse(&schedule("@daily", Some("Mars/Olympus"), None)).expect_err("tz");
        assert!(err.to_string().contains("spec.schedule.timeZone"));
        let err =
            ParsedSchedule::parse(&schedule("@daily", None, Some("0m"))).expect_err("zero grace");
        assert!(err.to_string().contains("overdueAfter"));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1d12h"), Some(Duration::hours(36)));
        assert_eq!(parse_duration("45m"), Some(Duration::minutes(45)));
        assert_eq!(parse_duration("2"), None);
        assert_eq!(parse_duration("h"), None);
    }
}
