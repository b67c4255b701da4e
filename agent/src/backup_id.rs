//! Backup ids: `20261127T060000Z-1a2b`, UTC start time plus 4 random hex
//! digits, so ids sort by time and two runs in one second do not collide.
//!
//! Ids are the order of a series (`latest`, retention), so they must not
//! depend on one node's clock alone: a new id is always later than every id
//! already in its series ([`next_id`]). A clock that went backwards (an
//! NTP step, a node with a skewed clock) gets a warning and an id one second
//! after the newest, never an id that sorts below a backup taken before it.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, Duration, DurationRound, NaiveDateTime, Utc};

const TIME_FORMAT: &str = "%Y%m%dT%H%M%SZ";

/// A testing hook, not a setting: shifts the agent's clock by a signed
/// duration (`-1h`, `+30m`, `90s`), so the integration tests can run a real
/// agent on a node whose clock is wrong. Every use logs a warning.
pub const TESTING_CLOCK_OFFSET_ENV: &str = "VERTICE_TESTING_CLOCK_OFFSET";

/// The wall clock, shifted by [`TESTING_CLOCK_OFFSET_ENV`] when set.
pub fn now() -> crate::error::Result<DateTime<Utc>> {
    let Ok(text) = std::env::var(TESTING_CLOCK_OFFSET_ENV) else {
        return Ok(Utc::now());
    };
    let offset = parse_offset(&text).map_err(|e| {
        crate::error::Error::usage(format!(
            "{TESTING_CLOCK_OFFSET_ENV}={text:?}: {e} (a testing hook; unset it)"
        ))
    })?;
    static WARNED: AtomicBool = AtomicBool::new(false);
    if !WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!(offset = %text, "{TESTING_CLOCK_OFFSET_ENV} is set: this agent's clock is shifted (a testing hook; never set it in production)");
    }
    Ok(Utc::now() + offset)
}

/// `-1h`, `+30m` or `90s`: an optional sign and the one duration syntax.
fn parse_offset(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (negative, magnitude) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let d = vertice_crds::duration::parse(magnitude)?;
    Ok(if negative { -d } else { d })
}

/// A new backup's id, and how far the clock was behind the newest id of
/// its series when that decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextId {
    pub id: BackupId,
    /// `Some` when the clock (to the second) was behind the newest id and
    /// the id was moved past it: by how much.
    pub behind: Option<Duration>,
}

/// The id of a new backup started at `now`, later than `newest` (the newest
/// id of its series): `now` to the second with `random` as its suffix; in
/// the newest one's second, a suffix above the newest's (ids carry whole
/// seconds, and a random suffix could sort below it); with a clock behind
/// the newest, one second after the newest. Ids thus stay at the clock's
/// time unless the clock is behind, and never sort below a backup already
/// taken.
pub fn next_id(now: DateTime<Utc>, newest: Option<&BackupId>, random: u16) -> NextId {
    let at = now.duration_trunc(Duration::seconds(1)).unwrap_or(now);
    let Some((newest, newest_at)) = newest.and_then(|n| Some((n, n.time()?))) else {
        return NextId {
            id: BackupId::with_suffix(at, random),
            behind: None,
        };
    };
    if at > newest_at {
        return NextId {
            id: BackupId::with_suffix(at, random),
            behind: None,
        };
    }
    let behind = (at < newest_at).then(|| newest_at - at);
    match newest
        .suffix()
        .filter(|s| *s < u16::MAX && behind.is_none())
    {
        // The same second: a suffix in (newest's, ffff].
        Some(low) => NextId {
            id: BackupId::with_suffix(at, low + 1 + random % (u16::MAX - low)),
            behind: None,
        },
        None => NextId {
            id: BackupId::with_suffix(newest_at + Duration::seconds(1), random),
            behind: Some(behind.unwrap_or_else(Duration::zero)),
        },
    }
}

/// Two random bytes for an id's suffix; without randomness the sub-second
/// clock, still unique enough.
pub fn random_suffix(now: DateTime<Utc>) -> u16 {
    let mut bytes = [0u8; 2];
    match getrandom::fill(&mut bytes) {
        Ok(()) => u16::from_le_bytes(bytes),
        Err(_) => now.timestamp_subsec_micros() as u16,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BackupId(String);

impl BackupId {
    pub fn generate(at: DateTime<Utc>) -> Self {
        BackupId::with_suffix(at, random_suffix(at))
    }

    fn with_suffix(at: DateTime<Utc>, suffix: u16) -> Self {
        BackupId(format!("{}-{suffix:04x}", at.format(TIME_FORMAT)))
    }

    /// The 4 hex digits after the time.
    fn suffix(&self) -> Option<u16> {
        u16::from_str_radix(self.0.rsplit('-').next()?, 16).ok()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The start time encoded in the id.
    pub fn time(&self) -> Option<DateTime<Utc>> {
        let stamp = self.0.split('-').next()?;
        NaiveDateTime::parse_from_str(stamp, TIME_FORMAT)
            .ok()
            .map(|t| t.and_utc())
    }
}

impl fmt::Display for BackupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for BackupId {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let valid = s.len() == 21
            && s.as_bytes()[16] == b'-'
            && s[17..]
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
            && NaiveDateTime::parse_from_str(&s[..16], TIME_FORMAT).is_ok();
        if valid {
            Ok(BackupId(s.to_string()))
        } else {
            Err(format!(
                "{s:?} is not a backup id (expected e.g. 20261127T060000Z-1a2b)"
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn generated_ids_parse_sort_and_carry_their_time() {
        let t = Utc
            .with_ymd_and_hms(2026, 11, 27, 6, 0, 0)
            .single()
            .expect("valid time");
        let id = BackupId::generate(t);
        assert!(id.as_str().starts_with("20261127T060000Z-"), "{id}");
        assert_eq!(id.as_str().parse::<BackupId>(), Ok(id.clone()));
        assert_eq!(id.time(), Some(t));
        let later = BackupId::generate(t + chrono::Duration::seconds(1));
        assert!(later > id);
    }

    #[test]
    fn a_new_id_is_always_later_than_the_newest_of_its_series() {
        let t = |s: &str| {
            DateTime::parse_from_rfc3339(s)
                .expect("time")
                .with_timezone(&Utc)
        };
        let id = |s: &str| s.parse::<BackupId>().expect("id");
        let newest = id("20261127T060000Z-8000");
        // The clock is fine: its own second.
        assert_eq!(
            next_id(t("2026-11-27T06:00:05.7Z"), Some(&newest), 0x1234),
            NextId {
                id: id("20261127T060005Z-1234"),
                behind: None
            }
        );
        // The clock stepped back an hour: one second after the newest.
        assert_eq!(
            next_id(t("2026-11-27T05:00:00.2Z"), Some(&newest), 0x1234),
            NextId {
                id: id("20261127T060001Z-1234"),
                behind: Some(Duration::hours(1))
            }
        );
        // The same second: a suffix above the newest's, whatever the random.
        for random in [0, 0x1234, 0x7fff, 0x8000, u16::MAX] {
            let same = next_id(t("2026-11-27T06:00:00.9Z"), Some(&newest), random);
            assert!(same.id > newest, "{random:x}: {}", same.id);
            assert_eq!(same.id.time(), newest.time());
            assert_eq!(same.behind, None);
        }
        // …and the next second when no suffix is above it.
        let full = id("20261127T060000Z-ffff");
        let next = next_id(t("2026-11-27T06:00:00.9Z"), Some(&full), 0);
        assert_eq!(next.id, id("20261127T060001Z-0000"));
        assert_eq!(next.behind, Some(Duration::zero()));
        // A first backup.
        assert_eq!(
            next_id(t("2026-11-27T06:00:00.9Z"), None, 0xbeef).id,
            id("20261127T060000Z-beef")
        );
    }

    #[test]
    fn the_testing_clock_offset_takes_a_sign() {
        assert_eq!(parse_offset("-1h"), Ok(-Duration::hours(1)));
        assert_eq!(parse_offset("+30m"), Ok(Duration::minutes(30)));
        assert_eq!(parse_offset("90s"), Ok(Duration::seconds(90)));
        assert!(parse_offset("-").is_err());
        assert!(parse_offset("yesterday").is_err());
    }

    #[test]
    fn rejects_malformed_ids() {
        for bad in [
            "latest",
            "20261127T060000Z",
            "20261327T060000Z-1a2b",
            "20261127T060000Z-1A2B",
            "x0261127T060000Z-1a2b",
        ] {
            assert!(bad.parse::<BackupId>().is_err(), "{bad}");
        }
    }
}
