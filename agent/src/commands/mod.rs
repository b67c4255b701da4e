//! One module per subcommand; each takes its parsed arguments and returns
//! what the run produced, leaving printing of errors and exit codes to `main`.
//! Engine-agnostic assembly: select, open the store, run the pipeline, write
//! the manifest, report. What an engine knows is behind `engine::Target`;
//! its settings come ready from the edge (`cli/settings.rs`).

pub mod backup;
mod backup_parts;
pub mod drill;
pub mod list;
pub mod probe;
pub mod prune;
pub mod restore;
pub mod verify;

use vertice_crds::{agent_env, StoreLocation};

use crate::catalog::{self, Selector};
use crate::cli::{NameArgs, StoreArgs};
use crate::error::{Error, Result};
use crate::manifest::Manifest;
use crate::secret_files::resolve_secret;
use crate::store::azure::AzureSettings;
use crate::store::azure_connection;
use crate::store::gcs::GcsSettings;
use crate::store::multipart::MultipartConfig;
use crate::store::s3::S3Settings;
use crate::store::{open_store, Store, StoreOptions};
use crate::summary::RunSummary;

/// The part of the store `--namespace` / `--name` select, validated.
pub fn scope_of(names: &NameArgs) -> Result<catalog::Scope> {
    crate::names::scope(names.namespace.as_deref(), names.name.as_deref())
}

pub async fn store_from_args(url: &str, flag: &str, args: &StoreArgs) -> Result<Box<dyn Store>> {
    let location: StoreLocation = url
        .parse()
        .map_err(|e| Error::usage(format!("{flag}: {e}")))?;
    // Only read the secrets of the store kind in use.
    let azure = match &location {
        StoreLocation::Azure { account, .. } => azure_settings(args, account)?,
        _ => AzureSettings::default(),
    };
    let options = StoreOptions {
        azure,
        gcs: GcsSettings {
            endpoint: args.gcs_endpoint.clone(),
        },
        s3: S3Settings {
            endpoint: args.s3_endpoint.clone(),
            region: args.s3_region.clone(),
            path_style: args.s3_path_style,
        },
        multipart: MultipartConfig {
            base_part_size: (args.part_size_mib as usize) << 20,
            max_in_flight: args.parts_in_flight as usize,
            retry_for: retry_for(&args.store_retry_for)?,
            ..MultipartConfig::default()
        },
    };
    Ok(open_store(&location, &options).await?)
}

/// `--store-retry-for`, in the one duration syntax (`30s`, `2m`).
fn retry_for(text: &str) -> Result<std::time::Duration> {
    vertice_crds::duration::parse(text)
        .ok()
        .and_then(|d| d.to_std().ok())
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            Error::usage(format!(
                "--store-retry-for {text:?} is not a duration; write e.g. 30s, 2m or 1h (at least 1s)"
            ))
        })
}

/// Azure credentials, first match wins: a SAS token, an account key (file
/// or environment), then a connection string; with none of them the store
/// falls back to workload / managed identity. Only read for azblob:// URLs.
fn azure_settings(args: &StoreArgs, account: &str) -> Result<AzureSettings> {
    let mut settings = AzureSettings {
        endpoint: args.azure_endpoint.clone(),
        sas_token: resolve_secret(
            args.azure_sas_token_file.as_ref(),
            "--azure-sas-token-file",
            &[agent_env::AZURE_STORAGE_SAS_TOKEN],
        )?,
        account_key: resolve_secret(
            args.azure_account_key_file.as_ref(),
            "--azure-account-key-file",
            &[agent_env::AZURE_STORAGE_KEY],
        )?,
    };
    if settings.sas_token.is_some() || settings.account_key.is_some() {
        return Ok(settings);
    }
    let Some(text) = resolve_secret(None, "", &[agent_env::AZURE_STORAGE_CONNECTION_STRING])?
    else {
        return Ok(settings);
    };
    let connection = azure_connection::parse(&text).map_err(Error::usage)?;
    if let Some(named) = &connection.account {
        if named != account {
            return Err(Error::usage(format!(
                "AZURE_STORAGE_CONNECTION_STRING is for account {named:?}, but the store URL names {account:?}"
            )));
        }
    }
    settings.endpoint = settings.endpoint.or(connection.endpoint);
    settings.sas_token = connection.sas_token;
    settings.account_key = connection.account_key;
    Ok(settings)
}

/// Opens the store and picks the backup `--backup` names (within `--namespace`
/// / `--name`), recording what was chosen in the run summary.
pub async fn choose_backup(
    from: &str,
    backup: &str,
    names: &NameArgs,
    store_args: &StoreArgs,
    summary: &mut RunSummary,
) -> Result<(Box<dyn Store>, Manifest)> {
    let selector: Selector = backup.parse().map_err(Error::usage)?;
    let scope = scope_of(names)?;
    let store = store_from_args(from, "--from", store_args).await?;
    summary.store = Some(store.describe());
    let found = catalog::load_catalog(store.as_ref(), &scope).await?;
    let manifest = catalog::choose(&found, &selector, &store.describe())?.clone();
    for (newer, problem) in found.damaged.iter().filter(|(m, _)| {
        m.namespace == manifest.namespace
            && m.name == manifest.name
            && catalog::series_time(m) > catalog::series_time(&manifest)
    }) {
        tracing::warn!(damaged = %newer.backup_id, problem = %problem, chosen = %manifest.backup_id, "a newer backup is damaged and was passed over");
    }
    summary.backup_id = Some(manifest.backup_id.clone());
    summary.namespace = Some(manifest.namespace.clone());
    summary.name = Some(manifest.name.clone());
    summary.source_kind = Some(manifest.source.kind.to_string());
    Ok((store, manifest))
}
