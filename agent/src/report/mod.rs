//! After a backup: metrics to the Pushgateway and notifications. Neither
//! can change the outcome of the run: a good backup stays good when the
//! Pushgateway or Slack is down, and they are only logged.

pub mod email;
pub mod http;
pub mod notify;
pub mod pushgateway;

use std::path::Path;

use vertice_crds::notifications::Notifications;
use vertice_crds::run_summary::RunSummary;

/// Pushes a verify run's metrics (when it knows its group); a Pushgateway
/// that cannot be reached never changes the verify result.
pub async fn after_verify(pushgateway_url: Option<&str>, summary: &RunSummary) {
    let (Some(url), Some(namespace), Some(name)) =
        (pushgateway_url, &summary.namespace, &summary.name)
    else {
        return;
    };
    if let Err(e) = pushgateway::push(url, namespace, name, summary).await {
        tracing::warn!(error = %e, "could not push metrics to the Pushgateway; the verify result stands");
    }
}

/// Pushes a drill's metrics to its backup's group; like a verify run's,
/// a Pushgateway that cannot be reached never changes the drill's result.
pub async fn after_drill(pushgateway_url: Option<&str>, summary: &RunSummary) {
    after_verify(pushgateway_url, summary).await;
}

/// Pushes metrics, then notifies. `previous` is what the Pushgateway knew
/// before this run; it tells a recovery from an ordinary success.
pub async fn after_backup(
    pushgateway_url: Option<&str>,
    notifications: Option<&Notifications>,
    secrets_dir: &Path,
    summary: &RunSummary,
) {
    // A run that failed before it knew which backup it was (bad flags) has
    // no group to count in; it is still worth a notification.
    let namespace = summary
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let name = summary.name.clone().unwrap_or_else(|| "unknown".into());
    let mut previous = None;
    if let (Some(url), Some(_)) = (pushgateway_url, &summary.name) {
        match pushgateway::push(url, &namespace, &name, summary).await {
            Ok(before) => previous = before,
            Err(e) => {
                tracing::warn!(error = %e, "could not push metrics to the Pushgateway; the backup result stands")
            }
        }
    }
    if let Some(n) = notifications {
        let previous_failed = previous
            .as_ref()
            .map(pushgateway::GroupState::last_run_failed);
        notify::send_all(n, secrets_dir, &namespace, &name, summary, previous_failed).await;
    }
}
