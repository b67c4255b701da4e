//! Pre- and post-backup hooks: a statement on the target (`sql`) or an HTTP
//! request (`http`), each bounded by its timeout.

use std::path::Path;
use std::time::{Duration, Instant};

use vertice_crds::hooks::{Hook, HttpHook, OnError};
use vertice_crds::run_summary::HookOutcome;

use crate::error::{Error, Result};
use crate::secret_files;
use crate::target::Target;

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
    match target.target {
        Target::Postgres(pg) => {
            // psql, like pg_dump, honours every libpq setting the URL carries
            // (sslmode, service); the password travels only in its
            // environment, and none of the agent's PG* variables do.
            let mut command = crate::pipeline::process::command(target.psql);
            command
                .args([
                    "--no-psqlrc",
                    "--quiet",
                    "--set=ON_ERROR_STOP=1",
                    "--dbname",
                ])
                .arg(&pg.url)
                .arg("--command")
                .arg(statement)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .kill_on_drop(true);
            crate::source::postgres::set_password(&mut command, target.password);
            let output = command.output().await.map_err(|e| {
                Error::usage(format!(
                    "cannot run {} for a sql hook: {e}",
                    target.psql.display()
                ))
            })?;
            if output.status.success() {
                Ok(())
            } else {
                Err(Error::hook(
                    String::from_utf8_lossy(&output.stderr).trim().to_string(),
                ))
            }
        }
        Target::Redis(redis_target) => {
            let words = split_words(statement)?;
            let redis_target = redis_target.clone();
            let password = target.password.map(str::to_string);
            tokio::task::spawn_blocking(move || -> Result<()> {
                let mut conn =
                    crate::redis::live_restore::connect(&redis_target, password.as_deref())
                        .map_err(|e| Error::hook(e.to_string()))?;
                let mut cmd = redis::cmd(&words[0]);
                for word in &words[1..] {
                    cmd.arg(word);
                }
                cmd.query::<redis::Value>(&mut conn)
                    .map(|_| ())
                    .map_err(|e| Error::hook(e.to_string()))
            })
            .await
            .map_err(|e| Error::hook(format!("sql hook task: {e}")))?
        }
        _ => Err(Error::usage(
            "sql hooks run on PostgreSQL and Redis targets only",
        )),
    }
}

/// Splits a Redis command into words; single or double quotes keep spaces.
fn split_words(statement: &str) -> Result<Vec<String>> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut quote: Option<char> = None;
    let mut in_word = false;
    for c in statement.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => current.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut current));
                    in_word = false;
                }
            }
            (None, c) => {
                current.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err(Error::usage(
            "sql hook: unbalanced quote in the Redis command",
        ));
    }
    if in_word {
        words.push(current);
    }
    if words.is_empty() {
        return Err(Error::usage("sql hook: the statement is empty"));
    }
    Ok(words)
}

async fn run_http(http: &HttpHook, secrets_dir: &Path) -> Result<()> {
    let url = match (&http.url, &http.url_secret_ref) {
        (Some(url), _) => url.clone(),
        (None, Some(selector)) => secret_files::read(secrets_dir, selector)?,
        (None, None) => return Err(Error::usage("http hook: set url or urlSecretRef")),
    };
    let method = reqwest::Method::from_bytes(http.method.as_bytes())
        .map_err(|_| Error::usage(format!("http hook: method {:?} is not valid", http.method)))?;
    let mut request = crate::report::http_client()?.request(method, &url);
    for header in &http.headers {
        request = request.header(
            &header.name,
            crate::report::header_value(header, secrets_dir)?,
        );
    }
    if let Some(body) = &http.body {
        request = request.body(body.clone());
    }
    crate::report::send(request, &url).await.map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_commands_split_like_redis_cli() {
        assert_eq!(
            split_words("CONFIG SET appendfsync no").expect("ok"),
            ["CONFIG", "SET", "appendfsync", "no"]
        );
        assert_eq!(
            split_words("SET k 'a b' \"\"").expect("ok"),
            ["SET", "k", "a b", ""]
        );
        assert!(split_words("SET 'k").is_err());
        assert!(split_words("   ").is_err());
    }
}
