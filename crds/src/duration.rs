//! The one duration syntax of Vertice specs and flags: a sequence of
//! `<number><unit>` with units `s`, `m` (minutes), `h`, `d`, `w` and `y`
//! (365 days), e.g. `90m`, `36h`, `1d12h`, `2w`. Agent and controller both
//! parse with this, so `overdueAfter`, `keepWithin` and `--keep-within` mean
//! the same thing everywhere. CRD fields narrow the units with a pattern.

use chrono::Duration;

/// Parses a positive duration, or says what is wrong and what would do.
pub fn parse(text: &str) -> Result<Duration, String> {
    let bad = || {
        format!(
            "{text:?} is not a duration; write e.g. 90m, 36h, 14d, 2w, 1y or 1d12h (units s, m, h, d, w, y)"
        )
    };
    let mut total = Duration::zero();
    let mut digits = String::new();
    let mut any = false;
    for c in text.trim().chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let n: i64 = digits.parse().map_err(|_| bad())?;
        digits.clear();
        let part = match c {
            's' => Duration::try_seconds(n),
            'm' => Duration::try_minutes(n),
            'h' => Duration::try_hours(n),
            'd' => Duration::try_days(n),
            'w' => Duration::try_weeks(n),
            'y' => n.checked_mul(365).and_then(Duration::try_days),
            _ => None,
        }
        .ok_or_else(bad)?;
        total = total.checked_add(&part).ok_or_else(bad)?;
        any = true;
    }
    if !digits.is_empty() || !any || total <= Duration::zero() {
        return Err(bad());
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_combinations() {
        assert_eq!(parse("90s"), Ok(Duration::seconds(90)));
        assert_eq!(parse("90m"), Ok(Duration::minutes(90)));
        assert_eq!(parse("36h"), Ok(Duration::hours(36)));
        assert_eq!(parse("1d12h"), Ok(Duration::hours(36)));
        assert_eq!(parse("2w"), Ok(Duration::days(14)));
        assert_eq!(parse("1y"), Ok(Duration::days(365)));
        assert_eq!(parse(" 45m "), Ok(Duration::minutes(45)));
    }

    #[test]
    fn nonsense_zero_and_overflow_are_refused_with_the_syntax() {
        for bad in [
            "",
            "h",
            "12",
            "1x",
            "1.5h",
            "-1h",
            "0m",
            "99999999999999999999y",
            "1 h",
        ] {
            let e = parse(bad).expect_err(bad);
            assert!(e.contains("units s, m, h, d, w, y"), "{bad}: {e}");
        }
    }
}
