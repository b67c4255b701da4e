//! Names of the scratch databases a drill creates, and which of them are
//! leftovers it may drop: pure, so "a drill never touches a database outside
//! its own prefix" is decided in one place and tested directly.

use chrono::{DateTime, Utc};

/// Longest prefix: the name adds `<10-digit seconds>_<8 hex>` within
/// PostgreSQL's 63-byte identifiers.
const MAX_PREFIX: usize = 40;

/// `--scratch-prefix`: a lowercase identifier start, so every name the drill
/// makes needs no quoting surprises and cannot look like a user's database
/// by accident.
pub fn validate_prefix(prefix: &str) -> Result<(), String> {
    let mut chars = prefix.chars();
    let starts_well = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !starts_well || !rest_ok || prefix.len() > MAX_PREFIX {
        return Err(format!(
            "--scratch-prefix {prefix:?}: use 1-{MAX_PREFIX} lowercase letters, digits or `_`, starting with a letter (e.g. vertice_drill_)"
        ));
    }
    if !prefix.ends_with('_') {
        return Err(format!(
            "--scratch-prefix {prefix:?} must end with `_`, so it cannot be the start of another database's name"
        ));
    }
    Ok(())
}

/// `<prefix><unix seconds>_<8 hex>`.
pub fn name(prefix: &str, now: DateTime<Utc>, random: u32) -> String {
    format!("{prefix}{}_{random:08x}", now.timestamp())
}

/// When the drill that made `name` started, if `name` is exactly of the
/// shape [`name`] makes with this prefix; anything else is not ours.
pub fn created_at(prefix: &str, name: &str) -> Option<DateTime<Utc>> {
    let rest = name.strip_prefix(prefix)?;
    let (seconds, random) = rest.split_once('_')?;
    let digits = |s: &str, n: std::ops::RangeInclusive<usize>| {
        n.contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
    };
    if !digits(seconds, 1..=12)
        || random.len() != 8
        || !random
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    DateTime::from_timestamp(seconds.parse().ok()?, 0)
}

/// The scratch databases of an earlier, killed drill: ours by shape and
/// older than `stale_after`. A younger one may belong to a drill running now.
pub fn leftovers<'a>(
    prefix: &str,
    databases: &'a [String],
    now: DateTime<Utc>,
    stale_after: chrono::Duration,
) -> Vec<&'a str> {
    databases
        .iter()
        .filter(|d| created_at(prefix, d).is_some_and(|t| now - t > stale_after))
        .map(String::as_str)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(s, 0).expect("time")
    }

    #[test]
    fn prefixes_are_plain_identifiers_ending_in_underscore() {
        assert!(validate_prefix("vertice_drill_").is_ok());
        for bad in [
            "",
            "Vertice_",
            "1drill_",
            "drill",
            "dri-ll_",
            "drill;_",
            &"a_".repeat(30),
        ] {
            assert!(validate_prefix(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn names_fit_an_identifier_and_read_back() {
        let prefix = format!("{}_", "a".repeat(MAX_PREFIX - 1));
        let n = name(&prefix, at(1_900_000_000), 0xdead_beef);
        assert!(n.len() <= 63, "{n}");
        assert_eq!(created_at(&prefix, &n), Some(at(1_900_000_000)));
    }

    #[test]
    fn only_our_shape_and_only_old_ones_are_leftovers() {
        let p = "vertice_drill_";
        let dbs: Vec<String> = [
            "vertice_drill_1000_0000abcd", // ours, old
            "vertice_drill_9000_0000abcd", // ours, recent: a drill running now
            "vertice_drill_orders",        // a user's database with our prefix
            "vertice_drill_1000_0000ABCD", // not our shape
            "vertice_drill_1000_abcd",     // not our shape
            "vertice_drill_1000_0000abcd_x",
            "postgres",
            "shop",
        ]
        .map(String::from)
        .to_vec();
        let found = leftovers(p, &dbs, at(10_000), chrono::Duration::hours(2));
        assert_eq!(found, vec!["vertice_drill_1000_0000abcd"]);
    }
}
