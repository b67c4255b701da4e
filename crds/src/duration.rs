//! The one duration syntax of Vertice specs and flags: a sequence of
//! `<number><unit>` with units `s`, `m` (minutes), `h`, `d`, `w` and `y`
//! (365 days), e.g. `90m`, `36h`, `1d12h`, `2w`. Agent and controller both
//! parse with this, so `overdueAfter`, `keepWithin` and `--keep-within` mean
//! the same thing everywhere. CRD fields narrow the units with a pattern.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use chrono::Duration;
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration as a spec or a flag writes it (`90m`, `1d12h`), parsed once
/// when it is read: a spec is not re-parsed on every poll, and each field
/// keeps its `type: string` schema (with its own pattern).
///
/// Reading a spec never fails on a duration: the API server's pattern lets
/// through what this syntax refuses (`0m`, an overflow), and an object that
/// does not decode would break the controller's whole list. The parse's
/// error is kept instead, for the controller to report under the field's
/// name ([`SpecDuration::get`]). The agent's `--keep-within` keeps it the
/// same way, so the command refuses it with its own message and summary;
/// `FromStr` is the strict parse for whoever wants to refuse at once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecDuration {
    text: String,
    parsed: Result<Duration, String>,
}

impl SpecDuration {
    /// The value (always positive), or what is wrong with the text.
    pub fn get(&self) -> Result<Duration, &str> {
        self.parsed.as_ref().map(|d| *d).map_err(String::as_str)
    }

    /// The text it was written as.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// As a spec holds it: parsed, the error kept.
impl From<String> for SpecDuration {
    fn from(text: String) -> Self {
        SpecDuration {
            parsed: parse(&text),
            text,
        }
    }
}

impl From<&str> for SpecDuration {
    fn from(text: &str) -> Self {
        text.to_string().into()
    }
}

/// As a flag: refused unless it parses.
impl FromStr for SpecDuration {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let d = SpecDuration::from(text);
        d.parsed.clone().map(|_| d)
    }
}

impl fmt::Display for SpecDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for SpecDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for SpecDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(SpecDuration::from)
    }
}

impl JsonSchema for SpecDuration {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        "SpecDuration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "string" })
    }
}

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
    fn a_spec_duration_is_parsed_once_and_written_back_as_read() {
        let d: SpecDuration = serde_json::from_str(r#""1d12h""#).expect("duration");
        assert_eq!(d.get(), Ok(Duration::hours(36)));
        assert_eq!(serde_json::to_string(&d).expect("json"), r#""1d12h""#);
        // A spec with a bad one still reads; the error waits for its field.
        let bad: SpecDuration = serde_json::from_str(r#""0m""#).expect("still a spec");
        let e = bad.get().expect_err("zero");
        assert!(e.contains("units s, m, h, d, w, y"), "{e}");
        assert_eq!(bad.as_str(), "0m");
        // A flag is refused at once.
        assert!("0m".parse::<SpecDuration>().is_err());
        let flag: SpecDuration = "2w".parse().expect("a good flag");
        assert_eq!(flag.get(), Ok(Duration::days(14)));
    }

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
