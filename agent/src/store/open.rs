//! Turns a store URL plus options into a live [`Store`].

use vertice_crds::StoreLocation;

use super::file::FileStore;
use super::multipart::MultipartConfig;
use super::s3::{S3Settings, S3Store};
use super::{Store, StoreError};

#[derive(Debug, Clone, Default)]
pub struct StoreOptions {
    pub s3: S3Settings,
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
        StoreLocation::Gcs { .. } | StoreLocation::Azure { .. } => {
            Err(StoreError::Config(format!(
            "{location}: {} stores are not supported by this agent version; use s3:// or file://",
            location.scheme()
        )))
        }
    }
}
