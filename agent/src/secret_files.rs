//! Secrets referenced by a `SecretKeySelector` in the backup spec, read from
//! where the controller mounts them: `<secrets dir>/<secret>/<key>`.

use std::path::Path;

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
