//! Where the agent reports the outcome of a backup.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::SecretKeySelector;
use crate::hooks::HttpHeader;

/// Channels and the events that reach them. Failures are always reported;
/// a recovery is the first success after a failure.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new("has(self.slack) || has(self.pagerduty) || has(self.email) || has(self.webhook)").message("notifications: configure at least one of slack, pagerduty, email, webhook"))]
#[serde(rename_all = "camelCase")]
pub struct Notifications {
    /// Also report every successful backup.
    #[serde(default)]
    pub on_success: bool,
    /// Report the first success after a failure (default true).
    #[serde(default = "default_true")]
    pub on_recovery: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slack: Option<SlackChannel>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pagerduty: Option<PagerDutyChannel>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<EmailChannel>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookChannel>,
}

fn default_true() -> bool {
    true
}

/// A Slack incoming webhook.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SlackChannel {
    /// The webhook URL (it is a credential).
    pub webhook_url_secret_ref: SecretKeySelector,
}

/// PagerDuty Events API v2. Failures trigger an alert deduplicated per
/// backup; the next success resolves it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PagerDutyChannel {
    /// The integration's routing key.
    pub routing_key_secret_ref: SecretKeySelector,
    /// critical, error, warning or info (default error).
    #[serde(default = "default_severity")]
    #[schemars(regex(pattern = r"^(critical|error|warning|info)$"))]
    pub severity: String,
    /// Events API endpoint (default `https://events.pagerduty.com/v2/enqueue`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^https?://"))]
    pub url: Option<String>,
}

fn default_severity() -> String {
    "error".into()
}

pub const PAGERDUTY_EVENTS_URL: &str = "https://events.pagerduty.com/v2/enqueue";

/// Email over SMTP.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EmailChannel {
    pub smtp_host: String,
    #[serde(default = "default_smtp_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub smtp_port: u16,
    /// `StartTls` (default), `Tls` (implicit, port 465) or `None` (only on a
    /// trusted network).
    #[serde(default)]
    pub tls: SmtpTls,
    #[schemars(length(min = 3))]
    pub from: String,
    #[schemars(length(min = 1, max = 50), inner(length(min = 3)))]
    pub to: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username_secret_ref: Option<SecretKeySelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret_ref: Option<SecretKeySelector>,
}

fn default_smtp_port() -> u16 {
    587
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum SmtpTls {
    #[default]
    StartTls,
    Tls,
    None,
}

/// A JSON POST of the run summary to any URL.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookChannel {
    pub url_secret_ref: SecretKeySelector,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<HttpHeader>,
}
