//! Turns a store URL plus options into a live [`Store`].

use vertice_crds::StoreLocation;

use super::azure::{AzureSettings, AzureStore};
use super::file::FileStore;
use super::gcs::{GcsSettings, GcsStore};
use super::multipart::MultipartConfig;
use super::s3::{S3Settings, S3Store};
use super::{Store, StoreError};

#[derive(Debug, Clone, Default)]
pub struct StoreOptions {
    pub s3: S3Settings,
    pub azure: AzureSettings,
    pub gcs: GcsSettings,
    pub multipart: MultipartConfig,
}

pub async fn open_store(
    location: &StoreLocation,
    options: &StoreOptions,
) -> Result<Box<dyn Store>, StoreError> {
    match location {
        StoreLocation::File { root } => Ok(Box::new(FileStore::new(root.clone()))),
        StoreLocation::S3 { bucket, prefix } => Ok(Box::new(
            S3Store::connect(
                bucket.clone(),
                prefix.clone(),
                &options.s3,
                options.multipart,
            )
            .await?,
        )),
        StoreLocation::Azure {
            account,
            container,
            prefix,
        } => Ok(Box::new(AzureStore::connect(
            account.clone(),
            container.clone(),
            prefix.clone(),
            &options.azure,
            options.multipart,
        )?)),
        StoreLocation::Gcs { bucket, prefix } => Ok(Box::new(
            GcsStore::connect(
                bucket.clone(),
                prefix.clone(),
                &options.gcs,
                options.multipart,
            )
            .await?,
        )),
    }
}
