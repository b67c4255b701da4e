//! Which cluster the agent talks to: Elasticsearch or OpenSearch, and its
//! version, from `GET /` — and so which dialect of the APIs it speaks (the
//! point-in-time calls differ by vendor, `_shard_doc` by version).

use serde_json::Value;

use super::client::Client;
use crate::error::Result;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    Elasticsearch,
    OpenSearch,
}

impl Flavour {
    pub fn as_str(self) -> &'static str {
        match self {
            Flavour::Elasticsearch => "elasticsearch",
            Flavour::OpenSearch => "opensearch",
        }
    }
}

/// A cluster's identity as `GET /` gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub flavour: Flavour,
    /// `major.minor.patch`, numbers only.
    pub version: (u32, u32, u32),
    pub version_text: String,
    pub name: String,
    pub uuid: String,
}

/// How documents are read in one consistent view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    /// A point in time per index, opened together before any document is
    /// read, paged by `_shard_doc` (Elasticsearch ≥ 7.12: `POST
    /// /<index>/_pit`; OpenSearch ≥ 3.3: `POST
    /// /<index>/_search/point_in_time`).
    PointInTime(Flavour),
    /// A scroll per index (each a consistent view of its index), where
    /// `_shard_doc` cannot be sorted on (OpenSearch 1.x–3.2, Elasticsearch
    /// before 7.12).
    Scroll,
}

impl Identity {
    /// Reads the identity out of `GET /`'s answer.
    pub fn from_root(root: &Value) -> std::result::Result<Identity, String> {
        let version = &root["version"];
        let number = version["number"].as_str().ok_or(
            "GET / gave no version.number: is this an Elasticsearch or OpenSearch cluster?",
        )?;
        let flavour = match version["distribution"].as_str() {
            Some("opensearch") => Flavour::OpenSearch,
            Some(other) => {
                return Err(format!(
                    "GET / names the distribution {other:?}, neither Elasticsearch nor OpenSearch"
                ))
            }
            None => Flavour::Elasticsearch,
        };
        let parsed = parse_version(number)
            .ok_or_else(|| format!("version {number:?} is not MAJOR.MINOR.PATCH"))?;
        Ok(Identity {
            flavour,
            version: parsed,
            version_text: number.to_string(),
            name: root["cluster_name"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            uuid: root["cluster_uuid"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        })
    }

    /// Versions before these lack the APIs an export needs (composable
    /// templates, `flat_settings` of today's shape).
    pub fn supported(&self) -> std::result::Result<(), String> {
        let oldest = match self.flavour {
            Flavour::Elasticsearch => (7, 10, 0),
            Flavour::OpenSearch => (1, 0, 0),
        };
        if self.version < oldest {
            return Err(format!(
                "{} {} is older than the oldest supported ({}.{}.{})",
                self.flavour.as_str(),
                self.version_text,
                oldest.0,
                oldest.1,
                oldest.2
            ));
        }
        Ok(())
    }

    pub fn reading(&self) -> Reading {
        let shard_doc = match self.flavour {
            Flavour::Elasticsearch => self.version >= (7, 12, 0),
            Flavour::OpenSearch => self.version >= (3, 3, 0),
        };
        if shard_doc {
            Reading::PointInTime(self.flavour)
        } else {
            Reading::Scroll
        }
    }

    pub fn describe(&self) -> String {
        format!("{} {}", self.flavour.as_str(), self.version_text)
    }
}

fn parse_version(number: &str) -> Option<(u32, u32, u32)> {
    // "8.11.0-SNAPSHOT", "2.19.6": the numbers before any suffix.
    let core = number.split(['-', '+']).next()?;
    let mut parts = core.split('.').map(|p| p.parse::<u32>().ok());
    Some((
        parts.next()??,
        parts.next()??,
        parts.next().flatten().unwrap_or(0),
    ))
}

/// Asks the cluster who it is; refuses versions the agent cannot read.
pub async fn identify(client: &Client) -> Result<Identity> {
    let root = client.get("/").await?;
    let identity = Identity::from_root(&root)
        .and_then(|i| i.supported().map(|()| i))
        .map_err(|e| {
            client
                .side
                .error(format!("{} {}: {e}", client.flag, client.address()))
        })?;
    if let Some(expected) = client.expected_flavour {
        if identity.flavour.as_str() != expected {
            return Err(crate::error::Error::usage(format!(
                "{} {}: the cluster is {}, not {expected} as --search-flavour (a VerticeBackup's flavour) says: point at the intended cluster, or drop the flavour",
                client.flag,
                client.address(),
                identity.describe()
            )));
        }
    }
    Ok(identity)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn root(number: &str, distribution: Option<&str>) -> Value {
        let mut v = json!({"name": "n1", "cluster_name": "search", "cluster_uuid": "u-1",
            "version": {"number": number}});
        if let Some(d) = distribution {
            v["version"]["distribution"] = json!(d);
        }
        v
    }

    #[test]
    fn the_dialect_follows_vendor_and_version() {
        let os2 = Identity::from_root(&root("2.19.6", Some("opensearch"))).expect("os2");
        assert_eq!(os2.flavour, Flavour::OpenSearch);
        assert_eq!(os2.reading(), Reading::Scroll);
        let os3 = Identity::from_root(&root("3.8.0", Some("opensearch"))).expect("os3");
        assert_eq!(os3.reading(), Reading::PointInTime(Flavour::OpenSearch));
        let es7 = Identity::from_root(&root("7.17.29", None)).expect("es7");
        assert_eq!(es7.reading(), Reading::PointInTime(Flavour::Elasticsearch));
        assert_eq!((es7.name.as_str(), es7.uuid.as_str()), ("search", "u-1"));
        let es710 = Identity::from_root(&root("7.10.2", None)).expect("es7.10");
        assert_eq!(es710.reading(), Reading::Scroll);
        let es8 = Identity::from_root(&root("8.11.0-SNAPSHOT", None)).expect("es8");
        assert_eq!(es8.version, (8, 11, 0));
    }

    #[test]
    fn strangers_and_old_versions_are_refused() {
        assert!(Identity::from_root(&json!({"tagline": "x"})).is_err());
        assert!(Identity::from_root(&root("2.0", Some("other"))).is_err());
        let old = Identity::from_root(&root("6.8.23", None)).expect("parse");
        assert!(old.supported().expect_err("old").contains("6.8.23"));
    }
}
