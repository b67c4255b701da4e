//! CEL rules on a cron field (`spec.schedule.cron`, `spec.drill.schedule.cron`):
//! what the API server accepts in a CronJob's schedule (robfig/cron v3's
//! standard parser, no `TZ`), as far as regular expressions can tell, so a
//! schedule the CronJob would refuse is refused when the VerticeBackup is
//! written. The controller parses the same dialect and reports the rest (a
//! range that ends before it starts, a date that never comes) in the status.

use kube::core::Rule;

/// Five whitespace-separated fields, nothing else.
pub const FIVE_FIELDS: &str = r"^\s*\S+(\s+\S+){4}\s*$";

/// Five fields, each a comma-separated list (empty items are skipped, as
/// upstream does) of `*`, `?`, a number or name, or a range, each with an
/// optional positive step. Numbers are Go's: leading zeros and `+` pass.
pub fn grammar() -> String {
    let field = |value: &str| {
        let item = format!(r"([*?](-[^\s,/]*)?|{value}(-{value})?)(/\+?0*[1-9][0-9]*)?");
        format!(r",*{item}(,+{item})*,*")
    };
    let minute = field(r"\+?0*[1-5]?[0-9]");
    let hour = field(r"\+?0*(2[0-3]|1?[0-9])");
    let day = field(r"\+?0*(3[01]|[12][0-9]|[1-9])");
    let month =
        field(r"(\+?0*(1[0-2]|[1-9])|(?i:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec))");
    let weekday = field(r"(\+?0*[0-6]|(?i:sun|mon|tue|wed|thu|fri|sat))");
    format!(r"^\s*{minute}\s+{hour}\s+{day}\s+{month}\s+{weekday}\s*$")
}

pub fn no_time_zone() -> Rule {
    Rule::new("!self.contains('TZ')")
        .message("set the time zone in timeZone: Kubernetes refuses TZ= and CRON_TZ= in a schedule")
}

pub fn no_every() -> Rule {
    Rule::new("!self.startsWith('@every')").message(
        "@every is not supported (Kubernetes counts its runs from the CronJob's last run, so Vertice could not tell when a backup is overdue); write the interval as a calendar schedule, e.g. '0 */6 * * *' for every 6 hours",
    )
}

pub fn known_macro() -> Rule {
    Rule::new(
        "!self.startsWith('@') || self.startsWith('@every') || self.matches(r'^@(yearly|annually|monthly|weekly|daily|midnight|hourly)$')",
    )
    .message("Kubernetes knows the macros @yearly, @annually, @monthly, @weekly, @daily, @midnight and @hourly (lower case, nothing around them)")
}

pub fn five_fields() -> Rule {
    Rule::new(format!("self.startsWith('@') || self.matches(r'{FIVE_FIELDS}')")).message(
        "use five fields: minute hour day-of-month month day-of-week (seconds and years are not part of a Kubernetes schedule)",
    )
}

pub fn field_values() -> Rule {
    Rule::new(format!(
        "self.startsWith('@') || !self.matches(r'{FIVE_FIELDS}') || self.matches(r'{}')",
        grammar()
    ))
    .message("each field takes *, ?, a number, a range (1-5), a step (*/15) or a list (1,15): minute 0-59, hour 0-23, day of month 1-31, month 1-12 or JAN-DEC, day of week 0-6 or SUN-SAT (Sunday is 0, not 7); L, W and # are not supported")
}

#[cfg(test)]
mod tests {
    use super::{grammar, FIVE_FIELDS};

    /// The CEL rule's expressions (RE2 and the regex crate read them the
    /// same) against upstream's behaviour: what robfig/cron's standard parser
    /// accepts passes; the common mistakes it refuses are caught here, at
    /// admission (the controller's parser catches the rest).
    #[test]
    fn the_cron_rules_follow_kubernetes() {
        let five = regex::Regex::new(FIVE_FIELDS).expect("pattern");
        let fields = regex::Regex::new(&grammar()).expect("pattern");
        let passes = |s: &str| five.is_match(s) && fields.is_match(s);
        for ok in [
            "0 3 * * *",
            "*/15 * * * *",
            "0 0 * * 0",
            "0 0 * * SUN",
            "0 0 * * mon-fri",
            "0 0 1 JAN,jul *",
            "0 0 ? * MON",
            "? ? ? ? ?",
            "5/10 * * * *",
            "1-59/2 * * * *",
            "00 03 * * *",
            "+5 * * * *",
            "1,,2 * * * *",
            "*-5 * * * *",
            "\t0  3 * * *  ",
            "0 0 31 2 *",
            "59 23 31 12 6",
        ] {
            assert!(passes(ok), "{ok:?}");
        }
        for bad in [
            "0 3 * * 7",
            "0 3 L * *",
            "0 3 * * 5#3",
            "0 3 * * 5L",
            "0 3 15W * *",
            "0 0 3 * * *",
            "0 3 * *",
            "60 * * * *",
            "0 24 * * *",
            "0 0 0 * *",
            "0 0 32 * *",
            "0 0 1 13 *",
            "*/0 * * * *",
            "-5 * * * *",
            "0 0 * * MONDAY",
            "TZ=UTC 0 3 * * *",
        ] {
            assert!(!passes(bad), "{bad:?}");
        }
    }
}
