//! The cluster-wide definitions an export carries beside its indices:
//! ingest pipelines, component, index and legacy templates. Read whole (they
//! are small), written before any index is created on restore — only those
//! the target lacks: a target's own definition of the same name is kept,
//! and said so.

use reqwest::Method;
use serde_json::Value;

use super::client::{segment, Client};
use super::format::{Meta, Named};
use crate::error::Result;

/// One kind of definition and its API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Pipeline,
    ComponentTemplate,
    IndexTemplate,
    LegacyTemplate,
}

impl Kind {
    /// In the order a restore writes them: pipelines before the templates
    /// that name them, components before the index templates made of them.
    pub const ALL: [Kind; 4] = [
        Kind::Pipeline,
        Kind::ComponentTemplate,
        Kind::IndexTemplate,
        Kind::LegacyTemplate,
    ];

    fn path(self) -> &'static str {
        match self {
            Kind::Pipeline => "_ingest/pipeline",
            Kind::ComponentTemplate => "_component_template",
            Kind::IndexTemplate => "_index_template",
            Kind::LegacyTemplate => "_template",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Kind::Pipeline => "ingest pipeline",
            Kind::ComponentTemplate => "component template",
            Kind::IndexTemplate => "index template",
            Kind::LegacyTemplate => "legacy template",
        }
    }

    pub fn meta(self, named: Named) -> Meta {
        match self {
            Kind::Pipeline => Meta::Pipeline(named),
            Kind::ComponentTemplate => Meta::ComponentTemplate(named),
            Kind::IndexTemplate => Meta::IndexTemplate(named),
            Kind::LegacyTemplate => Meta::LegacyTemplate(named),
        }
    }

    pub fn of(meta: &Meta) -> Option<(Kind, &Named)> {
        match meta {
            Meta::Pipeline(n) => Some((Kind::Pipeline, n)),
            Meta::ComponentTemplate(n) => Some((Kind::ComponentTemplate, n)),
            Meta::IndexTemplate(n) => Some((Kind::IndexTemplate, n)),
            Meta::LegacyTemplate(n) => Some((Kind::LegacyTemplate, n)),
            _ => None,
        }
    }

    pub fn url(self, name: &str) -> String {
        format!("{}/{}", self.path(), segment(name))
    }
}

/// Every definition of `kind` the user made: the cluster's own (names
/// starting with '.', or marked `_meta.managed`) are left out.
pub async fn read(client: &Client, kind: Kind) -> Result<Vec<Named>> {
    let answer = client.send(Method::GET, kind.path(), None).await?;
    // No pipeline at all is a 404 on some versions.
    if answer.status.as_u16() == 404 {
        return Ok(Vec::new());
    }
    if !answer.status.is_success() {
        return Err(client.refused(&Method::GET, kind.path(), &answer));
    }
    Ok(user_made(parse(kind, &answer.json())))
}

/// The definitions in a GET's answer, in their PUT shape.
fn parse(kind: Kind, body: &Value) -> Vec<Named> {
    let listed = |key: &str, inner: &str| -> Vec<Named> {
        body[key]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|item| {
                        Some(Named {
                            name: item["name"].as_str()?.to_string(),
                            body: item[inner].clone(),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    match kind {
        Kind::ComponentTemplate => listed("component_templates", "component_template"),
        Kind::IndexTemplate => listed("index_templates", "index_template"),
        Kind::Pipeline | Kind::LegacyTemplate => body
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(name, body)| Named {
                        name: name.clone(),
                        body: body.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }
}

fn user_made(all: Vec<Named>) -> Vec<Named> {
    let mut kept: Vec<Named> = all
        .into_iter()
        .filter(|n| !n.name.starts_with('.') && n.body["_meta"]["managed"] != Value::Bool(true))
        .collect();
    kept.sort_by(|a, b| a.name.cmp(&b.name));
    kept
}

/// Whether the target already has a definition of this name.
pub async fn exists(client: &Client, kind: Kind, name: &str) -> Result<bool> {
    let path = kind.url(name);
    let answer = client.send(Method::GET, &path, None).await?;
    match answer.status.as_u16() {
        404 => Ok(false),
        // Legacy templates answer `{}` for a name they lack on some versions.
        200 => Ok(!matches!(answer.json(), Value::Object(ref m) if m.is_empty())),
        _ => Err(client.refused(&Method::GET, &path, &answer)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn each_apis_list_becomes_named_definitions_without_the_clusters_own() {
        let body = json!({"index_templates": [
            {"name": "logs", "index_template": {"index_patterns": ["logs-*"], "_meta": {"managed": true}}},
            {"name": "orders", "index_template": {"index_patterns": ["orders*"]}}]});
        let got = user_made(parse(Kind::IndexTemplate, &body));
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].name, "orders");
        assert_eq!(got[0].body["index_patterns"][0], "orders*");

        let body = json!({"b": {"processors": []}, "a": {"processors": []}, ".internal": {}});
        let got = user_made(parse(Kind::Pipeline, &body));
        let names: Vec<&str> = got.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);

        let body =
            json!({"component_templates": [{"name": "c", "component_template": {"template": {}}}]});
        assert_eq!(parse(Kind::ComponentTemplate, &body)[0].name, "c");
        assert_eq!(Kind::LegacyTemplate.url("a/b"), "_template/a%2Fb");
    }
}
