//! One module per subcommand; each takes its parsed arguments and returns
//! what the run produced, leaving printing of errors and exit codes to `main`.

pub mod backup;
pub mod list;
pub mod restore;
pub mod verify;

use vertice_crds::StoreLocation;

use crate::cli::StoreArgs;
use crate::error::{Error, Result};
use crate::store::multipart::MultipartConfig;
use crate::store::s3::S3Settings;
use crate::store::{open_store, Store, StoreOptions};

pub async fn store_from_args(url: &str, flag: &str, args: &StoreArgs) -> Result<Box<dyn Store>> {
    let location: StoreLocation = url
        .parse()
        .map_err(|e| Error::usage(format!("{flag}: {e}")))?;
    let options = StoreOptions {
        s3: S3Settings {
            endpoint: args.s3_endpoint.clone(),
            region: args.s3_region.clone(),
            path_style: args.s3_path_style,
        },
        multipart: MultipartConfig {
            base_part_size: (args.part_size_mib as usize) << 20,
            max_in_flight: args.parts_in_flight as usize,
            ..MultipartConfig::default()
        },
    };
    Ok(open_store(&location, &options).await?)
}

/// Namespace and backup names become path segments in the store: keep them
/// to what Kubernetes allows for names.
pub fn validate_name(value: &str, flag: &str) -> Result<()> {
    let ok = !value.is_empty()
        && value.len() <= 253
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && value.starts_with(|c: char| c.is_ascii_alphanumeric())
        && value.ends_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(Error::usage(format!(
            "{flag} {value:?} is not a valid name: use lowercase letters, digits, '-' and '.', starting and ending with a letter or digit"
        )))
    }
}

/// A name derived from a database name, made valid (`Sales_DB` → `sales-db`).
pub fn derive_name(raw: &str) -> String {
    let mapped: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let trimmed = mapped.trim_matches('-');
    if trimmed.is_empty() {
        "backup".to_string()
    } else {
        trimmed.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated_and_derived() {
        assert!(validate_name("orders-db", "--name").is_ok());
        assert!(validate_name("a/b", "--name").is_err());
        assert!(validate_name("Caps", "--name")
            .expect_err("caps")
            .to_string()
            .contains("--name"));
        assert_eq!(derive_name("Sales_DB"), "sales-db");
        assert_eq!(derive_name("__"), "backup");
    }
}
