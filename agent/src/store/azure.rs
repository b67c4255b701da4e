//! `azblob://account/container/prefix` through `azure_storage_blob`: block
//! blobs staged block by block through the shared multipart machinery and
//! committed with a block list. Auth: a SAS token, an account key (from which
//! a short-lived SAS is signed here), else workload identity or managed
//! identity (`azure_identity`).

use std::num::NonZero;
use std::sync::Arc;

use async_trait::async_trait;
use azure_core::credentials::TokenCredential;
use azure_core::http::{
    ClientOptions, Etag, ExponentialRetryOptions, RetryOptions, StatusCode, Url,
};
use azure_storage_blob::models::{
    BlobClientDownloadOptions, BlobContainerClientListBlobsOptions,
    BlockBlobClientCommitBlockListOptions, BlockBlobClientUploadOptions, BlockLookupList,
};
use azure_storage_blob::BlobContainerClient;
use azure_storage_blob::BlobContainerClientOptions;
use bytes::Bytes;
use futures::TryStreamExt;
use tokio::io::AsyncRead;

use super::key_prefix::KeyPrefix;
use super::multipart::{upload, with_retries, ChunkedUpload, MultipartConfig, PartUploader};
use super::resuming_download::{Body, Reopen, Reopener, ResumingDownload};
use super::{azure_sas, BoxedReader, ObjectMeta, Store, StoreError};

/// How the agent proves itself to Azure; secrets arrive from the
/// environment or mounted files, never flags.
#[derive(Clone, Default)]
pub struct AzureSettings {
    /// e.g. `http://127.0.0.1:10000/devstoreaccount1` (Azurite).
    pub endpoint: Option<String>,
    pub sas_token: Option<String>,
    pub account_key: Option<String>,
}

impl std::fmt::Debug for AzureSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureSettings")
            .field("endpoint", &self.endpoint)
            .field("sas_token", &self.sas_token.as_ref().map(|_| "<redacted>"))
            .field(
                "account_key",
                &self.account_key.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

pub struct AzureStore {
    container: Arc<BlobContainerClient>,
    account: String,
    container_name: String,
    prefix: KeyPrefix,
    multipart: MultipartConfig,
}

impl AzureStore {
    pub fn connect(
        account: String,
        container_name: String,
        prefix: String,
        settings: &AzureSettings,
        multipart: MultipartConfig,
    ) -> Result<Self, StoreError> {
        let endpoint = settings
            .endpoint
            .clone()
            .unwrap_or_else(|| format!("https://{account}.blob.core.windows.net"));
        let mut url = Url::parse(endpoint.trim_end_matches('/')).map_err(|e| {
            StoreError::Config(format!(
                "--azure-endpoint {endpoint:?} is not a URL ({e}); write it as https://ACCOUNT.blob.core.windows.net or http://127.0.0.1:10000/ACCOUNT"
            ))
        })?;
        url.path_segments_mut()
            .map_err(|_| {
                StoreError::Config(format!("--azure-endpoint {endpoint:?} cannot take a path"))
            })?
            .pop_if_empty()
            .push(&container_name);
        let https = url.scheme() == "https";
        let credential: Option<Arc<dyn TokenCredential>> = if let Some(sas) = &settings.sas_token {
            url.set_query(Some(sas.trim().trim_start_matches('?')));
            None
        } else if let Some(key) = &settings.account_key {
            let sas = azure_sas::account_sas(&account, key, https, chrono::Utc::now())
                .map_err(StoreError::Config)?;
            url.set_query(Some(&sas));
            None
        } else {
            if !https {
                return Err(StoreError::Config(format!(
                    "azblob://{account}: Azure AD credentials need an https endpoint; for {endpoint} give a SAS token (AZURE_STORAGE_SAS_TOKEN) or an account key (AZURE_STORAGE_KEY)"
                )));
            }
            Some(token_credential(&account)?)
        };
        // The SDK's default retries run for minutes against an unreachable
        // endpoint; ours retry whole blocks and resume downloads on top,
        // within --store-retry-for, so keep these a fraction of it.
        let sdk_retry_ms = (multipart.retry_for.as_millis() / 4).clamp(1_000, 20_000) as i64;
        let options = BlobContainerClientOptions {
            client_options: ClientOptions {
                retry: RetryOptions::exponential(ExponentialRetryOptions {
                    initial_delay: azure_core::time::Duration::milliseconds(500),
                    max_retries: 4,
                    max_total_elapsed: azure_core::time::Duration::milliseconds(sdk_retry_ms),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let container = BlobContainerClient::new(url, credential, Some(options))
            .map_err(|e| StoreError::Config(format!("azblob://{account}/{container_name}: {e}")))?;
        Ok(AzureStore {
            container: Arc::new(container),
            account,
            container_name,
            prefix: KeyPrefix::new(prefix),
            multipart,
        })
    }

    fn full_key(&self, key: &str) -> Result<String, StoreError> {
        self.prefix.full(key)
    }

    fn map_err(&self, what: &str, err: azure_core::Error) -> StoreError {
        map_azure_error(&self.describe(), what, err)
    }

    /// Refuses an existing key before anything is sent, as the S3 and GCS
    /// stores do: `If-None-Match: *` is the guard against a race, this is
    /// the guard against a server (or emulator) that ignores it.
    async fn ensure_absent(&self, key: &str, full_key: &str) -> Result<(), StoreError> {
        match self
            .container
            .blob_client(full_key)
            .get_properties(None)
            .await
        {
            Ok(_) => Err(StoreError::AlreadyExists {
                store: self.describe(),
                key: key.to_string(),
            }),
            // A HEAD answer has no body, so the error code may be missing.
            Err(e) if e.http_status() == Some(StatusCode::NotFound) => match e.kind() {
                azure_core::error::ErrorKind::HttpResponse {
                    error_code: Some(code),
                    ..
                } if code == "ContainerNotFound" => Err(StoreError::NoBucket {
                    store: self.describe(),
                }),
                _ => Ok(()),
            },
            Err(e) => Err(self.map_err(&format!("checking {full_key}"), e)),
        }
    }

    /// One conditional PutBlob, retried; the caller checked the key is free.
    async fn put_new(&self, full_key: &str, data: Bytes) -> Result<(), StoreError> {
        let blob = self.container.blob_client(full_key).block_blob_client();
        let attempts = std::sync::atomic::AtomicU32::new(0);
        let written = with_retries(&self.multipart, 1, || async {
            attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let options = BlockBlobClientUploadOptions {
                if_none_match: Some(Etag::from("*")),
                ..Default::default()
            };
            let what = format!("writing {full_key}");
            let put = async {
                blob.upload(data.clone().into(), Some(options))
                    .await
                    .map(|_| ())
                    .map_err(|e| self.map_err(&what, e))
            };
            super::retry::bounded(
                self.multipart.retry_for,
                data.len(),
                &self.describe(),
                &what,
                put,
            )
            .await
        })
        .await;
        match written {
            // A retry of a write whose answer was lost finds its own blob
            // (as on S3): not someone else's, so not a refusal.
            Err(StoreError::AlreadyExists { .. })
                if attempts.load(std::sync::atomic::Ordering::Relaxed) > 1
                    && self.read_whole(full_key).await.as_ref() == Some(&data) =>
            {
                Ok(())
            }
            other => other,
        }
    }

    /// A small blob's bytes, or `None` if it cannot be read.
    async fn read_whole(&self, full_key: &str) -> Option<Bytes> {
        let response = self
            .container
            .blob_client(full_key)
            .download(None)
            .await
            .ok()?;
        response.body.collect().await.ok()
    }
}

/// Workload identity when the pod has a federated token (AKS sets
/// AZURE_FEDERATED_TOKEN_FILE), otherwise the managed identity.
fn token_credential(account: &str) -> Result<Arc<dyn TokenCredential>, StoreError> {
    let failed = |e: azure_core::Error| {
        StoreError::Config(format!(
            "azblob://{account}: no Azure credentials ({e}); give AZURE_STORAGE_SAS_TOKEN, AZURE_STORAGE_KEY (or their --azure-*-file flags), workload identity or a managed identity"
        ))
    };
    if std::env::var_os("AZURE_FEDERATED_TOKEN_FILE").is_some() {
        let credential = azure_identity::WorkloadIdentityCredential::new(None).map_err(failed)?;
        Ok(credential)
    } else {
        let credential = azure_identity::ManagedIdentityCredential::new(None).map_err(failed)?;
        Ok(credential)
    }
}

fn map_azure_error(store: &str, what: &str, err: azure_core::Error) -> StoreError {
    use azure_core::error::ErrorKind;
    let store = store.to_string();
    // The error text never holds the SAS: the SDK redacts `sig` in URLs.
    let detail = format!("{what}: {err}");
    match err.kind() {
        ErrorKind::HttpResponse {
            status, error_code, ..
        } => match (error_code.as_deref(), *status) {
            (Some("ContainerNotFound"), _) => StoreError::NoBucket { store },
            (Some("BlobNotFound"), _) | (_, StatusCode::NotFound) => StoreError::NotFound {
                store,
                what: what.to_string(),
            },
            (Some("BlobAlreadyExists"), _)
            | (_, StatusCode::Conflict | StatusCode::PreconditionFailed) => {
                StoreError::AlreadyExists {
                    store,
                    key: what.to_string(),
                }
            }
            (_, StatusCode::Unauthorized | StatusCode::Forbidden) => {
                StoreError::AccessDenied { store, detail }
            }
            _ => StoreError::Request { store, detail },
        },
        ErrorKind::Io | ErrorKind::Connection => StoreError::Unreachable { store, detail },
        ErrorKind::Credential => StoreError::AccessDenied { store, detail },
        _ => StoreError::Request { store, detail },
    }
}

struct AzureBlocks {
    blob: azure_storage_blob::BlockBlobClient,
    retry_for: std::time::Duration,
    store: String,
    key: String,
}

/// Bounded memory: at most `parallel` ranges of `partition_size` in flight.
fn download_options(from: Option<u64>, etag: Option<Etag>) -> BlobClientDownloadOptions<'static> {
    BlobClientDownloadOptions {
        parallel: NonZero::new(2),
        partition_size: NonZero::new(4 << 20),
        range: from.map(|offset| (offset..).into()),
        if_match: etag,
        ..Default::default()
    }
}

fn body_reader(body: azure_core::http::AsyncResponseBody, key: String) -> Body {
    let stream = body.map_err(move |e| std::io::Error::other(format!("reading {key}: {e}")));
    Box::pin(tokio_util::io::StreamReader::new(stream))
}

/// Ranged re-reads of one blob version (pinned by ETag), for
/// [`ResumingDownload`]: the SDK retries requests, not a body cut midway.
struct AzureReopener {
    container: Arc<BlobContainerClient>,
    key: String,
    etag: Option<Etag>,
}

impl Reopener for AzureReopener {
    fn reopen(&self, offset: u64) -> Reopen {
        let container = Arc::clone(&self.container);
        let (key, etag) = (self.key.clone(), self.etag.clone());
        Box::pin(async move {
            let response = container
                .blob_client(&key)
                .download(Some(download_options(Some(offset), etag)))
                .await
                .map_err(|e| {
                    std::io::Error::other(format!("resuming the download of {key}: {e}"))
                })?;
            Ok(body_reader(response.body, key))
        })
    }
}

/// Block ids must all have the same length within a blob.
fn block_id(number: u32) -> Vec<u8> {
    format!("vertice-{number:08}").into_bytes()
}

#[async_trait]
impl PartUploader for AzureBlocks {
    type Receipt = Vec<u8>;

    async fn upload_part(&self, number: u32, data: Bytes) -> Result<Vec<u8>, StoreError> {
        let id = block_id(number);
        let what = format!("staging block {number} of {}", self.key);
        let size = data.len();
        let staged = async {
            self.blob
                .stage_block(&id, size as u64, data.into(), None)
                .await
                .map(|_| ())
                .map_err(|e| map_azure_error(&self.store, &what, e))
        };
        // A store that stops answering mid-block never fails on its own.
        super::retry::bounded(self.retry_for, size, &self.store, &what, staged).await?;
        Ok(id)
    }
}

/// One block-blob upload, driven by [`upload`]: blocks are staged, then
/// committed with a block list. Staged blocks that are never committed are
/// invisible and Azure discards them after a week, so there is nothing to
/// abort: a failed upload leaves nothing that looks like an object.
struct AzureUpload<'a> {
    store: &'a AzureStore,
    full_key: String,
}

#[async_trait]
impl ChunkedUpload for AzureUpload<'_> {
    type Parts = AzureBlocks;

    async fn put_whole(&self, data: Bytes) -> Result<(), StoreError> {
        // put_stream already checked the key is free.
        self.store.put_new(&self.full_key, data).await
    }

    async fn start(&self) -> Result<Arc<AzureBlocks>, StoreError> {
        Ok(Arc::new(AzureBlocks {
            blob: self
                .store
                .container
                .blob_client(&self.full_key)
                .block_blob_client(),
            retry_for: self.store.multipart.retry_for,
            store: self.store.describe(),
            key: self.full_key.clone(),
        }))
    }

    async fn complete(&self, blocks: &AzureBlocks, ids: &[Vec<u8>]) -> Result<(), StoreError> {
        let list = BlockLookupList {
            committed: None,
            latest: Some(ids.to_vec()),
            uncommitted: None,
        };
        let content = list
            .try_into()
            .map_err(|e: azure_core::Error| self.store.map_err("encoding the block list", e))?;
        let options = BlockBlobClientCommitBlockListOptions {
            // Never replace an existing object.
            if_none_match: Some(Etag::from("*")),
            ..Default::default()
        };
        blocks
            .blob
            .commit_block_list(content, Some(options))
            .await
            .map(|_| ())
            .map_err(|e| {
                self.store
                    .map_err(&format!("committing {}", self.full_key), e)
            })
    }

    async fn abort(&self, _blocks: &AzureBlocks) {}
}

#[async_trait]
impl Store for AzureStore {
    fn describe(&self) -> String {
        self.prefix
            .under(format!("azblob://{}/{}", self.account, self.container_name))
    }

    async fn check_access(&self) -> Result<(), StoreError> {
        // Listing one blob proves both that the container exists and that
        // the credentials may list it; `exists` alone needs account rights.
        let options = BlobContainerClientListBlobsOptions {
            maxresults: Some(1),
            prefix: Some(self.prefix.listing("")?),
            ..Default::default()
        };
        let mut pages = self
            .container
            .list_blobs(Some(options))
            .map_err(|e| self.map_err("checking the container", e))?;
        pages
            .try_next()
            .await
            .map_err(|e| self.map_err("checking the container", e))?;
        Ok(())
    }

    async fn put_stream(
        &self,
        key: &str,
        body: &mut (dyn AsyncRead + Send + Unpin),
    ) -> Result<u64, StoreError> {
        let full_key = self.full_key(key)?;
        self.ensure_absent(key, &full_key).await?;
        let lifecycle = AzureUpload {
            store: self,
            full_key,
        };
        upload(&lifecycle, body, self.multipart).await
    }

    async fn put_bytes(&self, key: &str, data: Bytes) -> Result<(), StoreError> {
        let full_key = self.full_key(key)?;
        self.ensure_absent(key, &full_key).await?;
        self.put_new(&full_key, data).await
    }

    async fn get_stream(&self, key: &str) -> Result<BoxedReader, StoreError> {
        let full_key = self.full_key(key)?;
        let response = self
            .container
            .blob_client(&full_key)
            .download(Some(download_options(None, None)))
            .await
            .map_err(|e| self.map_err(&full_key, e))?;
        let reopener = AzureReopener {
            container: Arc::clone(&self.container),
            key: full_key.clone(),
            etag: response.properties.etag.clone(),
        };
        let body = body_reader(response.body, full_key.clone());
        Ok(Box::new(ResumingDownload::new(
            reopener,
            self.describe(),
            full_key,
            body,
            self.multipart.retry_for,
        )))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        let full_prefix = self.prefix.listing(prefix)?;
        let options = BlobContainerClientListBlobsOptions {
            prefix: Some(full_prefix),
            ..Default::default()
        };
        let mut items = self
            .container
            .list_blobs(Some(options))
            .map_err(|e| self.map_err("listing blobs", e))?;
        let mut found = Vec::new();
        while let Some(item) = items
            .try_next()
            .await
            .map_err(|e| self.map_err("listing blobs", e))?
        {
            let Some(name) = item.name else { continue };
            if let Some(key) = self.prefix.relative(&name) {
                let properties = item.properties;
                found.push(ObjectMeta {
                    key: key.to_string(),
                    size: properties
                        .as_ref()
                        .and_then(|p| p.content_length)
                        .unwrap_or(0),
                    modified: properties.and_then(|p| p.last_modified).and_then(|t| {
                        chrono::DateTime::from_timestamp(t.unix_timestamp(), t.nanosecond())
                    }),
                });
            }
        }
        Ok(found)
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let full_key = self.full_key(key)?;
        match self.container.blob_client(&full_key).delete(None).await {
            Ok(_) => Ok(()),
            Err(e) => match self.map_err(&format!("deleting {full_key}"), e) {
                StoreError::NotFound { .. } => Ok(()),
                other => Err(other),
            },
        }
    }
}
