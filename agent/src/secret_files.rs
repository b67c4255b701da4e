//! Secrets referenced by a `SecretKeySelector` in the backup spec, read from
//! where the controller mounts them: `<secrets dir>/<secret>/<key>`.

use std::path::{Path, PathBuf};

use vertice_crds::common::SecretKeySelector;

use crate::error::{Error, Result};

/// The secret's value without a trailing newline. Errors name the reference
/// and the path, never the content.
pub fn read(dir: &Path, selector: &SecretKeySelector) -> Result<String> {
    if selector.name.contains(['/', '\\'])
        || selector.key.contains(['/', '\\'])
        || selector.name == ".."
        || selector.key == ".."
    {
        return Err(Error::usage(format!(
            "secret reference {}/{} is not a plain name",
            selector.name, selector.key
        )));
    }
    let path = dir.join(&selector.name).join(&selector.key);
    let raw = std::fs::read_to_string(&path).map_err(|e| {
        Error::usage(format!(
            "secret {} key {}: cannot read {} ({e}); mount the Secret there or set --secrets-dir",
            selector.name,
            selector.key,
            path.display()
        ))
    })?;
    let value = raw.trim_end_matches(['\n', '\r']).to_string();
    if value.is_empty() {
        return Err(Error::usage(format!(
            "secret {} key {} is empty",
            selector.name, selector.key
        )));
    }
    Ok(value)
}

/// Finds the password for a database: `--password-file` first, then the
/// conventional environment variables. Returns `None` when there is none
/// (trust or peer authentication, or libpq's own `PGPASSFILE`).
pub fn resolve_password(
    password_file: Option<&PathBuf>,
    env_vars: &[&str],
) -> Result<Option<String>> {
    resolve_secret(password_file, "--password-file", env_vars)
}

/// A secret from the file named by `flag` (a mounted Secret), else the first
/// non-empty variable of `env_vars`. Errors name the flag, never the content.
pub fn resolve_secret(
    file: Option<&PathBuf>,
    flag: &str,
    env_vars: &[&str],
) -> Result<Option<String>> {
    if let Some(path) = file {
        let raw = std::fs::read_to_string(path).map_err(|e| {
            Error::usage(format!("{flag} {}: cannot read it ({e})", path.display()))
        })?;
        let secret = raw.trim_end_matches(['\n', '\r']).to_string();
        if secret.is_empty() {
            return Err(Error::usage(format!("{flag} {} is empty", path.display())));
        }
        return Ok(Some(secret));
    }
    Ok(env_vars
        .iter()
        .find_map(|var| std::env::var(var).ok().filter(|v| !v.is_empty())))
}
