//! The path part of a store URL (`s3://bucket/<prefix>`): every key the
//! agent uses is relative to it, on every object store alike.

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPrefix(String);

impl KeyPrefix {
    pub fn new(prefix: String) -> Self {
        KeyPrefix(prefix.trim_matches('/').to_string())
    }

    /// The object name for `key`.
    pub fn full(&self, key: &str) -> String {
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
        assert_eq!(p.full("x/manifest.json"), "team/a/x/manifest.json");
        assert_eq!(
            p.relative("team/a/x/manifest.json"),
            Some("x/manifest.json")
        );
        assert_eq!(p.relative("team/ab/x"), None);
        assert_eq!(p.under("gs://b".into()), "gs://b/team/a");
        let none = KeyPrefix::new(String::new());
        assert_eq!(none.full("k"), "k");
        assert_eq!(none.relative("k"), Some("k"));
        assert_eq!(none.under("gs://b".into()), "gs://b");
    }
}
