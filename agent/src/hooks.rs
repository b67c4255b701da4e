//! Pre- and post-backup hooks: a statement on the target (`sql`) or an HTTP
//! request (`http`), each bounded by its timeout.

use std::path::Path;
use std::time::{Duration, Instant};

use vertice_crds::hooks::{Hook, HttpHook, OnError};
use vertice_crds::run_summary::HookOutcome;

use crate::engine::Target;
use crate::error::{Error, Result};
use crate::secret_files;

/// What a hook needs to reach the target.
pub struct HookTarget<'a> {
    pub target: &'a Target,
    pub password: Option<&'a str>,
    pub psql: &'a Path,
}

/// Runs `hooks` in order. Returns the outcomes and, for a failing hook whose
/// `onError` is `Fail`, the error that stops the run (later hooks of the
/// phase are skipped, as a shell `set -e` would).
pub async fn run_phase(
    phase: &str,
    hooks: &[Hook],
    target: &HookTarget<'_>,
    secrets_dir: &Path,
) -> (Vec<HookOutcome>, Option<Error>) {
    let mut outcomes = Vec::new();
    for hook in hooks {
        let started = Instant::now();
        let timeout = Duration::from_secs(u64::from(hook.timeout_seconds));
        let result = match tokio::time::timeout(timeout, run_one(hook, target, secrets_dir)).await {
            Ok(r) => r,
            Err(_) => Err(Error::hook(format!(
                "timed out after {}s",
                hook.timeout_seconds
            ))),
        };
        let ok = result.is_ok();
        let error = result.err().map(|e| e.to_string());
        match &error {
            None => tracing::info!(hook = %hook.name, phase, "hook succeeded"),
            Some(e) => tracing::warn!(hook = %hook.name, phase, error = %e, "hook failed"),
        }
        outcomes.push(HookOutcome {
            name: hook.name.clone(),
            phase: phase.to_string(),
            ok,
            duration_seconds: started.elapsed().as_secs_f64(),
            error: error.clone(),
        });
        if let Some(e) = error {
            if hook.on_error == OnError::Fail {
                return (
                    outcomes,
                    Some(Error::hook(format!("{phase}-hook {}: {e}", hook.name))),
                );
            }
        }
    }
    (outcomes, None)
}

async fn run_one(hook: &Hook, target: &HookTarget<'_>, secrets_dir: &Path) -> Result<()> {
    match (&hook.sql, &hook.http) {
        (Some(sql), None) => run_statement(&sql.statement, target).await,
        (None, Some(http)) => run_http(http, secrets_dir).await,
        _ => Err(Error::usage(format!(
            "hook {}: set exactly one of sql or http",
            hook.name
        ))),
    }
}

async fn run_statement(statement: &str, target: &HookTarget<'_>) -> Result<()> {
    target
        .target
        .run_statement(statement, target.password, target.psql)
        .await
}

async fn run_http(http: &HttpHook, secrets_dir: &Path) -> Result<()> {
    let url = match (&http.url, &http.url_secret_ref) {
        (Some(url), _) => url.clone(),
        (None, Some(selector)) => secret_files::read(secrets_dir, selector)?,
        (None, None) => return Err(Error::usage("http hook: set url or urlSecretRef")),
    };
    let method = reqwest::Method::from_bytes(http.method.as_bytes())
        .map_err(|_| Error::usage(format!("http hook: method {:?} is not valid", http.method)))?;
    let mut request = crate::report::http::http_client()?.request(method, &url);
    for header in &http.headers {
        request = request.header(
            &header.name,
            crate::report::http::header_value(header, secrets_dir)?,
        );
    }
    if let Some(body) = &http.body {
        request = request.body(body.clone());
    }
    crate::report::http::send(request, &url).await.map(drop)
}
