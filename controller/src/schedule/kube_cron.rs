//! The cron dialect of Kubernetes CronJobs, rule for rule: the API server
//! validates `spec.schedule` with robfig/cron v3's `ParseStandard` (five
//! fields or a descriptor) and refuses any schedule containing `TZ`
//! (`validateScheduleFormat`). Whatever passes here passes there, so a
//! VerticeBackup never holds a schedule whose CronJob would be refused.
//!
//! Kept faithful on purpose, quirks included: `?` means `*` in every field,
//! `+5` and `05` are numbers (Go's `strconv.Atoi`), empty list items are
//! skipped (`strings.FieldsFunc`), and `*-x` is `*`.

/// A parsed schedule: one bit per allowed value of each field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KubeCron {
    minutes: u64,
    hours: u64,
    days_of_month: u64,
    months: u64,
    days_of_week: u64,
    /// robfig's "star bit": the day field was `*` or `?` (with no step above
    /// 1). When either day field has it, a day must match both fields;
    /// otherwise matching either is enough (classic cron).
    dom_star: bool,
    dow_star: bool,
}

struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    /// Lower-case names, the first worth `min`.
    names: &'static [&'static str],
    /// What the field takes, for messages.
    takes: &'static str,
}

const MINUTE: Field = Field {
    name: "minute",
    min: 0,
    max: 59,
    names: &[],
    takes: "0-59",
};
const HOUR: Field = Field {
    name: "hour",
    min: 0,
    max: 23,
    names: &[],
    takes: "0-23",
};
const DAY_OF_MONTH: Field = Field {
    name: "day-of-month",
    min: 1,
    max: 31,
    names: &[],
    takes: "1-31 (L and W are not supported)",
};
const MONTH: Field = Field {
    name: "month",
    min: 1,
    max: 12,
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
    takes: "1-12 or JAN-DEC",
};
const DAY_OF_WEEK: Field = Field {
    name: "day-of-week",
    min: 0,
    max: 6,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
    takes: "0-6 or SUN-SAT, Sunday is 0 (7, L and # are not supported)",
};

/// The descriptors robfig knows besides `@every`, as five-field schedules.
const DESCRIPTORS: [(&str, &str); 7] = [
    ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
    ("@monthly", "0 0 1 * *"),
    ("@weekly", "0 0 * * 0"),
    ("@daily", "0 0 * * *"),
    ("@midnight", "0 0 * * *"),
    ("@hourly", "0 * * * *"),
];

/// Parses a schedule as the API server would; the error is a sentence
/// saying what to change (the caller names the field).
pub fn parse(spec: &str) -> Result<KubeCron, String> {
    if spec.is_empty() {
        return Err("the schedule is empty".into());
    }
    if spec.contains("TZ") {
        return Err(
            "Kubernetes refuses TZ= and CRON_TZ= in a schedule; set the timeZone field instead"
                .into(),
        );
    }
    if spec.starts_with('@') {
        return descriptor(spec);
    }
    let fields: Vec<&str> = spec
        .split(char::is_whitespace)
        .filter(|f| !f.is_empty())
        .collect();
    let [minute, hour, dom, month, dow] = fields[..] else {
        return Err(format!(
            "expected 5 fields (minute hour day-of-month month day-of-week), found {}; seconds and years are not part of a Kubernetes schedule",
            fields.len()
        ));
    };
    let (minutes, _) = field(minute, &MINUTE)?;
    let (hours, _) = field(hour, &HOUR)?;
    let (days_of_month, dom_star) = field(dom, &DAY_OF_MONTH)?;
    let (months, _) = field(month, &MONTH)?;
    let (days_of_week, dow_star) = field(dow, &DAY_OF_WEEK)?;
    Ok(KubeCron {
        minutes,
        hours,
        days_of_month,
        months,
        days_of_week,
        dom_star,
        dow_star,
    })
}

fn descriptor(spec: &str) -> Result<KubeCron, String> {
    if spec.starts_with("@every ") {
        return Err("@every is not supported: Kubernetes counts its runs from the CronJob's last run, so Vertice could not tell when a backup is overdue; write the interval as a calendar schedule (every 6 hours: \"0 */6 * * *\")".into());
    }
    match DESCRIPTORS.iter().find(|(name, _)| *name == spec) {
        Some((_, five_fields)) => parse(five_fields),
        None => Err(format!(
            "{spec:?} is not a descriptor Kubernetes knows: use @yearly, @annually, @monthly, @weekly, @daily, @midnight or @hourly (lower case, nothing around it), or five fields"
        )),
    }
}

/// A comma-separated list of ranges: the allowed values and the star bit.
fn field(text: &str, f: &Field) -> Result<(u64, bool), String> {
    let mut bits = 0;
    let mut star = false;
    // FieldsFunc: empty items (`1,,2`, a trailing comma) are skipped.
    for item in text.split(',').filter(|i| !i.is_empty()) {
        let (b, s) = range(item, f)
            .map_err(|why| format!("{} field {text:?}: {why}; it takes {}", f.name, f.takes))?;
        bits |= b;
        star |= s;
    }
    Ok((bits, star))
}

/// `*`, `?`, `N`, `N-M`, each with an optional `/step`.
fn range(item: &str, f: &Field) -> Result<(u64, bool), String> {
    let (range, step) = match item.split('/').collect::<Vec<_>>()[..] {
        [range] => (range, None),
        [range, step] => (range, Some(step)),
        _ => return Err(format!("{item:?} has more than one /")),
    };
    let low_high: Vec<&str> = range.split('-').collect();
    let (start, mut end, mut star) = if low_high[0] == "*" || low_high[0] == "?" {
        (f.min, f.max, true)
    } else {
        let start = number_or_name(low_high[0], f)?;
        match low_high[..] {
            [_] => (start, start, false),
            [_, high] => (start, number_or_name(high, f)?, false),
            _ => return Err(format!("{item:?} has more than one -")),
        }
    };
    let step = match step {
        None => 1,
        Some(step) => {
            let step = go_atoi(step)?;
            // "N/step" means "N-max/step".
            if low_high.len() == 1 {
                end = f.max;
            }
            if step > 1 {
                star = false;
            }
            step
        }
    };
    if start < f.min {
        return Err(format!("{start} is below the minimum {}", f.min));
    }
    if end > f.max {
        return Err(format!("{end} is above the maximum {}", f.max));
    }
    if start > end {
        return Err(format!("the range {item:?} starts after it ends"));
    }
    if step == 0 {
        return Err(format!("the step in {item:?} must be positive"));
    }
    let bits = (start..=end)
        .step_by(step.min(64) as usize)
        .fold(0u64, |b, v| b | (1 << v));
    Ok((bits, star))
}

fn number_or_name(text: &str, f: &Field) -> Result<u32, String> {
    let lower = text.to_ascii_lowercase();
    if let Some(i) = f.names.iter().position(|n| *n == lower) {
        return Ok(f.min + i as u32);
    }
    let n = go_atoi(text)?;
    // Larger than any field's maximum; the range check says so.
    Ok(u32::try_from(n).unwrap_or(u32::MAX))
}

/// Go's `strconv.Atoi` (an optional sign, decimal digits, within int64),
/// refusing negatives as robfig does.
fn go_atoi(text: &str) -> Result<u64, String> {
    let (negative, digits) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{text:?} is not a number"));
    }
    let n: i64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is out of range"))?;
    if negative && n != 0 {
        return Err(format!("{text:?} is negative"));
    }
    Ok(n.unsigned_abs())
}

/// Days in each month, February in a leap year.
const MONTH_DAYS: [u32; 12] = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

impl KubeCron {
    /// Why the schedule never fires at least once a year, if it does not:
    /// the CronJob would be accepted and never run (robfig gives up after
    /// five years), and the overdue check looks back one year.
    pub fn never_fires(&self) -> Option<String> {
        if self.minutes == 0 || self.hours == 0 || self.months == 0 {
            return Some("a field lists no value".into());
        }
        if self.days_of_month == 0 && self.days_of_week == 0 {
            return Some("the day fields list no value".into());
        }
        // Classic cron: with both day fields restricted, either may match,
        // and every weekday comes round each month.
        let weekdays_decide = !self.dom_star && !self.dow_star && self.days_of_week != 0;
        // With `*` in the day of month, the day of week alone decides.
        let dom_is_any = self.dom_star && self.days_of_week != 0;
        if weekdays_decide || dom_is_any {
            return None;
        }
        let dom_allows = |day: u32| self.days_of_month & (1 << day) != 0;
        let month_allows = |m: usize| self.months & (1 << (m + 1)) != 0;
        let yearly = (0..12).any(|m| {
            let days = if m == 1 { 28 } else { MONTH_DAYS[m] };
            month_allows(m) && (1..=days).any(dom_allows)
        });
        if yearly {
            return None;
        }
        let leap_only = month_allows(1) && dom_allows(29);
        Some(if leap_only {
            "it fires only on 29 February, once in four years; a backup schedule must fire at least once a year".into()
        } else {
            "no month has the day it names (30 and 31 February, 31 April, June, September, November never come)".into()
        })
    }

    /// The same schedule in croner's syntax: explicit value lists, and `*`
    /// exactly where robfig has the star bit, so the day fields combine the
    /// same way (croner also ORs two restricted day fields).
    pub fn to_croner(&self) -> String {
        let list = |bits: u64, min: u32, max: u32| -> String {
            (min..=max)
                .filter(|v| bits & (1 << v) != 0)
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        let day = |star: bool, bits: u64, min: u32, max: u32| {
            if star {
                "*".to_string()
            } else {
                list(bits, min, max)
            }
        };
        format!(
            "{} {} {} {} {}",
            list(self.minutes, 0, 59),
            list(self.hours, 0, 23),
            day(self.dom_star, self.days_of_month, 1, 31),
            list(self.months, 1, 12),
            day(self.dow_star, self.days_of_week, 0, 6),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Upstream's behaviour (robfig/cron v3 `ParseStandard` plus the API
    /// server's TZ rule): schedules it accepts.
    const ACCEPTED: &[&str] = &[
        "0 3 * * *",
        "*/15 * * * *",
        "0 0 * * 0",
        "0 0 * * 6",
        "0 0 * * SUN",
        "0 0 * * mon-fri",
        "0 0 1 JAN,jul *",
        "0 0 ? * MON",
        "0 0 1 * ?",
        "? ? ? ? ?",
        "5/10 * * * *",
        "1-59/2 * * * *",
        "0 0-23/6 * * *",
        "00 03 * * *",
        "+5 * * * *",
        "1,,2 * * * *",
        "*-5 * * * *",
        "\t0  3 * * *  ",
        "0 0 31 * *",
        "0 0 29 2 *",
        "0 0 31 2 1",
        "@yearly",
        "@annually",
        "@monthly",
        "@weekly",
        "@daily",
        "@midnight",
        "@hourly",
    ];

    /// Schedules upstream refuses (and `@every`, which Vertice refuses: see
    /// `descriptor`), each with a word the message must contain.
    const REFUSED: &[(&str, &str)] = &[
        ("0 3 * * 7", "above the maximum 6"),
        ("0 3 L * *", "not a number"),
        ("0 3 * * 5#3", "not a number"),
        ("0 3 * * 5L", "not a number"),
        ("0 3 15W * *", "not a number"),
        ("0 0 3 * * *", "found 6"),
        ("0 0 3 * * * 2026", "found 7"),
        ("0 3 * *", "found 4"),
        ("60 * * * *", "above the maximum 59"),
        ("0 24 * * *", "above the maximum 23"),
        ("0 0 0 * *", "below the minimum 1"),
        ("0 0 32 * *", "above the maximum 31"),
        ("0 0 1 13 *", "above the maximum 12"),
        ("0 0 1 0 *", "below the minimum 1"),
        ("30-10 * * * *", "starts after it ends"),
        ("*/0 * * * *", "must be positive"),
        ("1-2-3 * * * *", "more than one -"),
        ("*/5/2 * * * *", "more than one /"),
        ("-5 * * * *", "not a number"),
        ("0 0 * * MONDAY", "not a number"),
        ("0 0 * * FRI-MON", "starts after it ends"),
        ("TZ=UTC 0 3 * * *", "timeZone"),
        ("CRON_TZ=Europe/Berlin 0 3 * * *", "timeZone"),
        ("@every 1h", "@every"),
        ("@DAILY", "lower case"),
        ("@daily ", "lower case"),
        (" @daily", "found 1"),
        ("@reboot", "lower case"),
        ("", "empty"),
    ];

    #[test]
    fn accepts_what_kubernetes_accepts() {
        for spec in ACCEPTED {
            assert!(parse(spec).is_ok(), "{spec:?}: {:?}", parse(spec));
        }
    }

    #[test]
    fn refuses_what_kubernetes_refuses_saying_why() {
        for (spec, why) in REFUSED {
            let err = parse(spec).expect_err(spec);
            assert!(err.contains(why), "{spec:?}: {err}");
        }
        let err = parse("0 3 * * 7").expect_err("day 7");
        assert!(
            err.contains("day-of-week") && err.contains("Sunday is 0"),
            "{err}"
        );
    }

    #[test]
    fn day_fields_combine_as_in_robfig() {
        let croner = |s: &str| parse(s).expect(s).to_croner();
        // `*/1` keeps the star bit, `*/2` drops it (and so restricts).
        assert_eq!(croner("0 0 */1 * 1"), "0 0 * 1,2,3,4,5,6,7,8,9,10,11,12 1");
        assert!(croner("0 0 */2 * 1").starts_with("0 0 1,3,5"));
        assert_eq!(croner("0 0 ? * sun"), "0 0 * 1,2,3,4,5,6,7,8,9,10,11,12 0");
        assert_eq!(croner("@weekly"), "0 0 * 1,2,3,4,5,6,7,8,9,10,11,12 0");
        assert_eq!(croner("+5 * * * *").split(' ').next(), Some("5"));
    }

    #[test]
    fn impossible_dates_never_fire() {
        for (spec, why) in [
            ("0 0 31 2 *", "never come"),
            ("0 0 30 2 *", "never come"),
            ("0 0 31 4,6 *", "never come"),
            ("0 0 29 2 *", "once in four years"),
            (", * * * *", "no value"),
        ] {
            let cron = parse(spec).expect(spec);
            let err = cron.never_fires().expect(spec);
            assert!(err.contains(why), "{spec}: {err}");
        }
        for spec in [
            "0 0 31 * *",
            "0 0 31 2 1",
            "0 0 28 2 *",
            "0 0 29 2,3 *",
            "@yearly",
        ] {
            assert_eq!(parse(spec).expect(spec).never_fires(), None, "{spec}");
        }
    }
}
