//! Notifications: Slack, PagerDuty Events v2, email, a generic webhook.
//! Failures always go out; successes when asked; a recovery (the first
//! success after a failure) when `onRecovery` is set. PagerDuty alerts are
//! deduplicated per backup and resolved by the next success.

use std::path::Path;

use serde_json::json;
use vertice_crds::notifications::{Notifications, PAGERDUTY_EVENTS_URL};
use vertice_crds::run_summary::RunSummary;

use crate::error::Result;
use crate::secret_files;

/// What this run is worth telling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum News {
    Failed,
    Recovered,
    Succeeded,
}

/// Pure: which news, if any, to send. `previous_failed` is `None` when the
/// previous outcome is unknown (no Pushgateway).
pub fn news(n: &Notifications, succeeded: bool, previous_failed: Option<bool>) -> Option<News> {
    match (succeeded, previous_failed) {
        (false, _) => Some(News::Failed),
        (true, Some(true)) if n.on_recovery => Some(News::Recovered),
        (true, _) if n.on_success => Some(News::Succeeded),
        _ => None,
    }
}

pub fn headline(news: News, namespace: &str, name: &str, summary: &RunSummary) -> String {
    match news {
        News::Failed => format!(
            "Backup {namespace}/{name} FAILED: {}",
            summary.error.as_deref().unwrap_or("see the Job's logs")
        ),
        News::Recovered => format!("Backup {namespace}/{name} recovered: {}", detail(summary)),
        News::Succeeded => format!("Backup {namespace}/{name} succeeded: {}", detail(summary)),
    }
}

fn detail(summary: &RunSummary) -> String {
    format!(
        "{} stored {} in {:.0}s",
        summary.backup_id.as_deref().unwrap_or("?"),
        crate::pipeline::progress::human_bytes(summary.stored_bytes.unwrap_or(0)),
        summary.duration_seconds.unwrap_or(0.0)
    )
}

/// Sends to every configured channel; each failure is logged, none is fatal.
pub async fn send_all(
    n: &Notifications,
    secrets_dir: &Path,
    namespace: &str,
    name: &str,
    summary: &RunSummary,
    previous_failed: Option<bool>,
) {
    let news = news(n, summary.succeeded(), previous_failed);
    let text = news.map(|news| headline(news, namespace, name, summary));
    if let (Some(slack), Some(text)) = (&n.slack, &text) {
        report(
            "slack",
            slack_send(&slack.webhook_url_secret_ref, secrets_dir, text).await,
        );
    }
    if let Some(pd) = &n.pagerduty {
        // Every success resolves (PagerDuty ignores a resolve with nothing open).
        if news == Some(News::Failed) || summary.succeeded() {
            report(
                "pagerduty",
                pagerduty_send(pd, secrets_dir, namespace, name, summary, text.as_deref()).await,
            );
        }
    }
    if let (Some(email), Some(text)) = (&n.email, &text) {
        report(
            "email",
            super::email::send(email, secrets_dir, text, summary).await,
        );
    }
    if let (Some(webhook), Some(news)) = (&n.webhook, news) {
        report(
            "webhook",
            webhook_send(
                webhook,
                secrets_dir,
                news,
                text.as_deref().unwrap_or_default(),
                summary,
            )
            .await,
        );
    }
}

fn report(channel: &str, result: Result<()>) {
    match result {
        Ok(()) => tracing::info!(channel, "notification sent"),
        Err(e) => tracing::warn!(channel, error = %e, "notification failed"),
    }
}

async fn post_json(
    url: &str,
    body: &serde_json::Value,
    headers: &[(String, String)],
) -> Result<()> {
    let mut request = super::http::http_client()?.post(url).json(body);
    for (k, v) in headers {
        request = request.header(k, v);
    }
    super::http::send(request, url).await.map(drop)
}

async fn slack_send(
    url_ref: &vertice_crds::common::SecretKeySelector,
    dir: &Path,
    text: &str,
) -> Result<()> {
    let url = secret_files::read(dir, url_ref)?;
    post_json(&url, &json!({ "text": text }), &[]).await
}

/// The dedup key ties a failure's alert to the success that resolves it.
pub fn dedup_key(namespace: &str, name: &str) -> String {
    format!("vertice-backup/{namespace}/{name}")
}

async fn pagerduty_send(
    pd: &vertice_crds::notifications::PagerDutyChannel,
    dir: &Path,
    namespace: &str,
    name: &str,
    summary: &RunSummary,
    text: Option<&str>,
) -> Result<()> {
    let routing_key = secret_files::read(dir, &pd.routing_key_secret_ref)?;
    let url = pd.url.as_deref().unwrap_or(PAGERDUTY_EVENTS_URL);
    let body = if summary.succeeded() {
        json!({"routing_key": routing_key, "event_action": "resolve", "dedup_key": dedup_key(namespace, name)})
    } else {
        json!({
            "routing_key": routing_key,
            "event_action": "trigger",
            "dedup_key": dedup_key(namespace, name),
            "payload": {
                "summary": text.unwrap_or("backup failed"),
                "source": format!("vertice-agent {namespace}/{name}"),
                "severity": pd.severity,
                "component": name,
                "group": namespace,
                "class": "backup",
                "custom_details": summary,
            }
        })
    };
    post_json(url, &body, &[]).await
}

async fn webhook_send(
    webhook: &vertice_crds::notifications::WebhookChannel,
    dir: &Path,
    news: News,
    text: &str,
    summary: &RunSummary,
) -> Result<()> {
    let url = secret_files::read(dir, &webhook.url_secret_ref)?;
    let headers = webhook
        .headers
        .iter()
        .map(|h| Ok((h.name.clone(), super::http::header_value(h, dir)?)))
        .collect::<Result<Vec<_>>>()?;
    let event = match news {
        News::Failed => "failed",
        News::Recovered => "recovered",
        News::Succeeded => "succeeded",
    };
    post_json(
        &url,
        &json!({"event": event, "text": text, "summary": summary}),
        &headers,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channels(on_success: bool, on_recovery: bool) -> Notifications {
        Notifications {
            on_success,
            on_recovery,
            slack: None,
            pagerduty: None,
            email: None,
            webhook: None,
        }
    }

    #[test]
    fn which_runs_are_news() {
        let n = channels(false, true);
        assert_eq!(news(&n, false, None), Some(News::Failed));
        assert_eq!(news(&n, true, Some(true)), Some(News::Recovered));
        assert_eq!(news(&n, true, Some(false)), None);
        assert_eq!(news(&n, true, None), None);
        assert_eq!(
            news(&channels(true, false), true, Some(true)),
            Some(News::Succeeded)
        );
        assert_eq!(news(&channels(false, false), true, Some(true)), None);
    }
}
