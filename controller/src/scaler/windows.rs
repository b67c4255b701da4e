//! Schedule windows: cron times in an IANA time zone (DST-correct, the
//! shared schedule parser) that open for a duration, pre-warmed by a lead
//! time, and raise the floor or cap the ceiling while open.

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use croner::Cron;
use vertice_crds::scaler::ScheduleWindow;

use crate::schedule::{parse_cron, parse_time_zone};

#[derive(Debug, Clone)]
pub struct Window {
    pub name: String,
    cron: Cron,
    tz: Tz,
    duration: Duration,
    lead: Duration,
    pub min: Option<i32>,
    pub max: Option<i32>,
}

impl Window {
    /// The window of `spec.schedules[index]`, or an error naming the field.
    pub fn parse(index: usize, w: &ScheduleWindow) -> Result<Self, String> {
        let field = |f: &str| format!("spec.schedules[{index}].{f}");
        let cron =
            parse_cron(&w.cron).map_err(|why| format!("{} {:?}: {why}", field("cron"), w.cron))?;
        let tz = parse_time_zone(w.time_zone.as_deref()).map_err(|name| {
            format!(
                "{} {name:?} is not an IANA time zone (e.g. Europe/Berlin)",
                field("timeZone")
            )
        })?;
        let duration = w.duration.get().map_err(|_| {
            format!(
                "{} {:?}: use a duration such as 9h or 30m",
                field("duration"),
                w.duration.as_str()
            )
        })?;
        let lead = match &w.lead_time {
            None => Duration::zero(),
            Some(d) => d.get().map_err(|_| {
                let text = d.as_str();
                format!("{} {text:?}: use a duration such as 10m", field("leadTime"))
            })?,
        };
        Ok(Window {
            name: w.name.clone(),
            cron,
            tz,
            duration,
            lead,
            min: w.min_replicas,
            max: w.max_replicas,
        })
    }

    /// Open at `now`: some cron time `t` has `t − lead ≤ now < t + duration`.
    /// Only the latest `t ≤ now + lead` needs looking at: every earlier one
    /// closed no later than it.
    pub fn is_open(&self, now: DateTime<Utc>) -> bool {
        let probe = (now + self.lead).with_timezone(&self.tz);
        match self.cron.find_previous_occurrence(&probe, true) {
            Ok(t) => now < t.with_timezone(&Utc) + self.duration,
            Err(_) => false,
        }
    }

    /// When the window next opens or closes after `now`.
    pub fn next_change(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let next_open = self
            .cron
            .find_next_occurrence(&(now + self.lead).with_timezone(&self.tz), false)
            .ok()
            .map(|t| t.with_timezone(&Utc) - self.lead);
        let close = self
            .cron
            .find_previous_occurrence(&(now + self.lead).with_timezone(&self.tz), true)
            .ok()
            .map(|t| t.with_timezone(&Utc) + self.duration)
            .filter(|c| *c > now);
        [next_open, close].into_iter().flatten().min()
    }
}

/// The bounds in force at `now` and the windows that set them.
#[derive(Debug, Clone, PartialEq)]
pub struct Bounds {
    pub min: i32,
    pub max: i32,
    pub open: Vec<String>,
    /// `ScheduleFloor` when an open window raised the floor, `ScheduleCap`
    /// when one lowered the ceiling.
    pub raised_floor: bool,
    pub lowered_cap: bool,
}

/// Overlapping windows take the highest floor and the lowest cap; when a
/// floor and a cap of different windows cross, the floor wins: a window that
/// asks for capacity is the one a user sets for a known peak.
pub fn bounds(min: i32, max: i32, windows: &[Window], now: DateTime<Utc>) -> Bounds {
    let mut b = Bounds {
        min,
        max,
        open: Vec::new(),
        raised_floor: false,
        lowered_cap: false,
    };
    for w in windows.iter().filter(|w| w.is_open(now)) {
        b.open.push(w.name.clone());
        if let Some(floor) = w.min.filter(|f| *f > b.min) {
            b.min = floor.min(max);
            b.raised_floor = true;
        }
        if let Some(cap) = w.max.filter(|c| *c < b.max) {
            b.max = cap;
            b.lowered_cap = true;
        }
    }
    if b.min > b.max {
        b.max = b.min;
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn window(
        cron: &str,
        tz: &str,
        duration: &str,
        lead: Option<&str>,
        min: Option<i32>,
        max: Option<i32>,
    ) -> Window {
        Window::parse(
            0,
            &ScheduleWindow {
                name: format!("{cron}@{tz}"),
                cron: cron.into(),
                time_zone: Some(tz.into()),
                duration: duration.into(),
                lead_time: lead.map(Into::into),
                min_replicas: min,
                max_replicas: max,
            },
        )
        .expect("valid window")
    }

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0)
            .single()
            .expect("valid time")
    }

    #[test]
    fn business_hours_follow_the_local_clock_across_dst() {
        // 09:00–17:00 Berlin, weekdays. Winter: UTC+1, summer: UTC+2.
        let w = window("0 9 * * 1-5", "Europe/Berlin", "8h", None, Some(5), None);
        assert!(!w.is_open(utc(2026, 3, 27, 7, 59))); // Fri 08:59 CET
        assert!(w.is_open(utc(2026, 3, 27, 8, 0))); // Fri 09:00 CET
        assert!(w.is_open(utc(2026, 3, 27, 15, 59)));
        assert!(!w.is_open(utc(2026, 3, 27, 16, 0))); // 17:00 CET
                                                      // After the switch to CEST on Sunday 29 March 2026.
        assert!(!w.is_open(utc(2026, 3, 30, 6, 59)));
        assert!(w.is_open(utc(2026, 3, 30, 7, 0))); // Mon 09:00 CEST
        assert!(!w.is_open(utc(2026, 3, 30, 15, 0))); // 17:00 CEST
        assert!(!w.is_open(utc(2026, 3, 28, 10, 0))); // Saturday
    }

    #[test]
    fn lead_time_prewarms_and_the_window_closes_on_time() {
        let w = window("0 12 * * *", "Etc/UTC", "1h", Some("15m"), Some(8), None);
        assert!(!w.is_open(utc(2026, 6, 1, 11, 44)));
        assert!(w.is_open(utc(2026, 6, 1, 11, 45)));
        assert!(w.is_open(utc(2026, 6, 1, 12, 59)));
        assert!(!w.is_open(utc(2026, 6, 1, 13, 0)));
        assert_eq!(
            w.next_change(utc(2026, 6, 1, 11, 0)),
            Some(utc(2026, 6, 1, 11, 45))
        );
        assert_eq!(
            w.next_change(utc(2026, 6, 1, 12, 0)),
            Some(utc(2026, 6, 1, 13, 0))
        );
    }

    #[test]
    fn overlapping_windows_take_the_highest_floor_and_the_lowest_cap() {
        let a = window("0 8 * * *", "Etc/UTC", "10h", None, Some(4), None);
        let b = window("0 9 * * *", "Etc/UTC", "2h", None, Some(6), Some(20));
        let c = window("0 9 * * *", "Etc/UTC", "1h", None, None, Some(12));
        let all = [a, b, c];
        let at = |h, m| bounds(2, 30, &all, utc(2026, 6, 1, h, m));
        assert_eq!((at(7, 0).min, at(7, 0).max), (2, 30));
        assert_eq!((at(8, 30).min, at(8, 30).max), (4, 30));
        let peak = at(9, 30);
        assert_eq!((peak.min, peak.max), (6, 12));
        assert_eq!(peak.open.len(), 3);
        assert_eq!((at(10, 30).min, at(10, 30).max), (6, 20));
        // A floor above another window's cap wins.
        let high = window("0 9 * * *", "Etc/UTC", "1h", None, Some(15), None);
        let both = [
            high,
            window("0 9 * * *", "Etc/UTC", "1h", None, None, Some(10)),
        ];
        let b = bounds(2, 30, &both, utc(2026, 6, 1, 9, 10));
        assert_eq!((b.min, b.max), (15, 15));
    }

    #[test]
    fn bad_windows_name_their_field() {
        let bad = ScheduleWindow {
            name: "x".into(),
            cron: "0 9 * *".into(),
            time_zone: None,
            duration: "1h".into(),
            lead_time: None,
            min_replicas: Some(1),
            max_replicas: None,
        };
        let err = Window::parse(2, &bad).expect_err("four fields");
        assert!(err.starts_with("spec.schedules[2].cron"), "{err}");
        let err = Window::parse(
            0,
            &ScheduleWindow {
                cron: "0 9 * * *".into(),
                time_zone: Some("Mars/Base".into()),
                ..bad.clone()
            },
        )
        .expect_err("zone");
        assert!(err.contains("timeZone \"Mars/Base\""), "{err}");
    }
}
