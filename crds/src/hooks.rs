//! Hooks run by the agent around a backup: a statement on the target (`sql`)
//! or a request to a URL (`http`).

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::SecretKeySelector;

/// Hooks before and after each backup. A failed pre-hook fails the run unless
/// its `onError` is `Continue`; post-hooks always run, after success or failure.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Hooks {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub pre: Vec<Hook>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub post: Vec<Hook>,
}

impl Hooks {
    pub fn is_empty(&self) -> bool {
        self.pre.is_empty() && self.post.is_empty()
    }
}

/// One hook: exactly one of `sql` or `http`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new("has(self.sql) != has(self.http)").message("a hook sets exactly one of sql or http"))]
#[serde(rename_all = "camelCase")]
pub struct Hook {
    /// Name shown in logs and the run summary.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql: Option<SqlHook>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpHook>,
    /// The hook is abandoned (and counts as failed) after this long.
    #[serde(default = "default_timeout")]
    #[schemars(range(min = 1, max = 3600))]
    pub timeout_seconds: u32,
    /// What a failure does: `Fail` the run (default) or `Continue`.
    #[serde(default)]
    pub on_error: OnError,
}

fn default_timeout() -> u32 {
    30
}

/// What a failing hook does to the run.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum OnError {
    #[default]
    Fail,
    Continue,
}

/// A statement run on the backup target with the backup's credentials:
/// SQL for PostgreSQL, a command (`CONFIG SET appendfsync no`) for Redis.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SqlHook {
    #[schemars(length(min = 1, max = 65536))]
    pub statement: String,
}

/// An HTTP request; any 2xx answer is success.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new("has(self.url) != has(self.urlSecretRef)").message("an http hook sets exactly one of url or urlSecretRef"))]
#[serde(rename_all = "camelCase")]
pub struct HttpHook {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^https?://"))]
    pub url: Option<String>,
    /// A URL that carries a token belongs in a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_secret_ref: Option<SecretKeySelector>,
    #[serde(default = "default_method")]
    #[schemars(regex(pattern = r"^(GET|POST|PUT|PATCH|DELETE|HEAD)$"))]
    pub method: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<HttpHeader>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

fn default_method() -> String {
    "POST".into()
}

/// A request header, its value inline or from a Secret.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new("has(self.value) != has(self.valueSecretRef)").message("a header sets exactly one of value or valueSecretRef"))]
#[serde(rename_all = "camelCase")]
pub struct HttpHeader {
    #[schemars(length(min = 1, max = 256))]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_secret_ref: Option<SecretKeySelector>,
}
