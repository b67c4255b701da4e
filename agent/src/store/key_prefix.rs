//! The path part of a store URL (`s3://bucket/<prefix>`): every key the
//! agent uses is relative to it, on every object store alike, and no key can
//! reach outside it: `..`, `.`, empty segments, backslashes and control
//! characters are refused before any store sees the key.

use super::StoreError;

/// Checks a key (or, with `listing`, a listing prefix, which may be empty or
/// end in `/`) is a plain relative path of safe segments.
pub fn check_key(key: &str, listing: bool) -> Result<(), StoreError> {
    let body = if listing {
        key.strip_suffix('/').unwrap_or(key)
    } else {
        key
    };
    if listing && key.is_empty() {
        return Ok(());
    }
    let bad_segment = |s: &str| s.is_empty() || s == "." || s == "..";
    if body.is_empty()
        || body.split('/').any(bad_segment)
        || body.chars().any(|c| c == '\\' || c.is_control())
    {
        return Err(StoreError::Config(format!(
            "refusing the object key {key:?}: keys are relative paths of names without '.', '..', empty parts or backslashes"
        )));
    }
    Ok(())
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPrefix(String);

impl KeyPrefix {
    pub fn new(prefix: String) -> Self {
        KeyPrefix(prefix.trim_matches('/').to_string())
    }

    /// The object name for `key`, which must stay under the prefix.
    pub fn full(&self, key: &str) -> Result<String, StoreError> {
        check_key(key, false)?;
        Ok(self.join(key))
    }

    /// The object-name prefix for listing keys that start with `prefix`.
    pub fn listing(&self, prefix: &str) -> Result<String, StoreError> {
        check_key(prefix, true)?;
        Ok(if prefix.is_empty() && !self.0.is_empty() {
            format!("{}/", self.0)
        } else {
            self.join(prefix)
        })
    }

    fn join(&self, key: &str) -> String {
        if self.0.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.0)
        }
    }

    /// `key` for an object name under the prefix, `None` for one outside it.
    pub fn relative<'a>(&self, name: &'a str) -> Option<&'a str> {
        if self.0.is_empty() {
            return Some(name);
        }
        name.strip_prefix(self.0.as_str())?.strip_prefix('/')
    }

    /// `base` (e.g. `s3://bucket`) followed by the prefix, for messages.
    pub fn under(&self, base: String) -> String {
        if self.0.is_empty() {
            base
        } else {
            format!("{base}/{}", self.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_under_a_prefix_and_without_one() {
        let p = KeyPrefix::new("team/a/".into());
        assert_eq!(
            p.full("x/manifest.json").expect("key"),
            "team/a/x/manifest.json"
        );
        assert_eq!(p.listing("").expect("root"), "team/a/");
        assert_eq!(p.listing("ns/").expect("ns"), "team/a/ns/");
        assert_eq!(
            p.relative("team/a/x/manifest.json"),
            Some("x/manifest.json")
        );
        assert_eq!(p.relative("team/ab/x"), None);
        assert_eq!(p.under("gs://b".into()), "gs://b/team/a");
        let none = KeyPrefix::new(String::new());
        assert_eq!(none.full("k").expect("key"), "k");
        assert_eq!(none.listing("").expect("root"), "");
        assert_eq!(none.relative("k"), Some("k"));
        assert_eq!(none.under("gs://b".into()), "gs://b");
    }

    #[test]
    fn keys_cannot_leave_the_prefix() {
        let p = KeyPrefix::new("team".into());
        for bad in [
            "",
            "..",
            "../x",
            "ns/../../etc/passwd",
            "/abs",
            "a//b",
            "./a",
            "a\\b",
            "a\nb",
        ] {
            assert!(p.full(bad).is_err(), "{bad:?}");
        }
        for bad in ["../", "..", "/", "a//"] {
            assert!(p.listing(bad).is_err(), "{bad:?}");
        }
        assert!(p.full("ns/db/20261101T000000Z-0001/manifest.json").is_ok());
    }
}
