//! `s3://bucket/prefix` through `aws-sdk-s3`: AWS S3 and S3-compatible servers
//! (SeaweedFS, MinIO, Ceph RGW, R2…).

use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_s3::config::{RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;
use bytes::Bytes;
use tokio::io::AsyncRead;

use super::key_prefix::KeyPrefix;
use super::multipart::{upload, with_retries, ChunkedUpload, MultipartConfig, PartUploader};
use super::resuming_download::{Body, Reopen, Reopener, ResumingDownload};
use super::{BoxedReader, ObjectMeta, Store, StoreError};

/// Settings for reaching an S3-compatible server.
#[derive(Debug, Clone, Default)]
pub struct S3Settings {
    pub endpoint: Option<String>,
    pub region: Option<String>,
    /// `None` decides automatically: path style for IP and `localhost` endpoints.
    pub path_style: Option<bool>,
}

impl S3Settings {
    /// Virtual-host style needs DNS for `bucket.host`, which an IP address or
    /// `localhost` cannot give, so those get path style unless told otherwise.
    pub fn effective_path_style(&self) -> bool {
        if let Some(explicit) = self.path_style {
            return explicit;
        }
        let Some(endpoint) = &self.endpoint else {
            return false;
        };
        match url::Url::parse(endpoint)
            .ok()
            .and_then(|u| u.host().map(|h| h.to_owned()))
        {
            Some(url::Host::Ipv4(_)) | Some(url::Host::Ipv6(_)) => true,
            Some(url::Host::Domain(d)) => d == "localhost" || d.ends_with(".localhost"),
            None => false,
        }
    }
}

pub struct S3Store {
    client: Client,
    bucket: String,
    prefix: KeyPrefix,
    multipart: MultipartConfig,
}

impl S3Store {
    pub async fn connect(
        bucket: String,
        prefix: String,
        settings: &S3Settings,
        multipart: MultipartConfig,
    ) -> Result<Self, StoreError> {
        if let Some(endpoint) = &settings.endpoint {
            url::Url::parse(endpoint).map_err(|e| {
                StoreError::Config(format!(
                    "--s3-endpoint {endpoint:?} is not a URL ({e}); write it as http://HOST:PORT"
                ))
            })?;
        }
        let region = settings
            .region
            .clone()
            .or_else(|| std::env::var("AWS_REGION").ok())
            .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
            .unwrap_or_else(|| "us-east-1".to_string());
        let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(region))
            .load()
            .await;
        // A store that accepts the connection and then answers nothing
        // would otherwise hang the run: no answer's headers within the idle
        // timeout is a failure, retried within --store-retry-for (uploads
        // get more, see `sending`; stalled bodies are `ResumingDownload`'s).
        let timeouts = shared
            .timeout_config()
            .map(|t| t.to_builder())
            .unwrap_or_default()
            .read_timeout(super::retry::idle_timeout(multipart.retry_for))
            .build();
        let mut builder = aws_sdk_s3::config::Builder::from(&shared)
            .timeout_config(timeouts)
            .force_path_style(settings.effective_path_style());
        if let Some(endpoint) = &settings.endpoint {
            // Many S3-compatible servers reject the SDK's newer default
            // checksum headers; our own SHA-256 guards the content anyway.
            builder = builder
                .endpoint_url(endpoint)
                .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
                .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        }
        Ok(S3Store {
            client: Client::from_conf(builder.build()),
            bucket,
            prefix: KeyPrefix::new(prefix),
            multipart,
        })
    }

    fn full_key(&self, key: &str) -> Result<String, StoreError> {
        self.prefix.full(key)
    }

    fn store_name(&self) -> String {
        self.describe()
    }

    fn map_err<E>(
        &self,
        what: &str,
        err: SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
    ) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        map_sdk_error(&self.store_name(), what, err)
    }
}

fn map_sdk_error<E>(
    store: &str,
    what: &str,
    err: SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let status = err.raw_response().map(|r| r.status().as_u16());
    let code = err.code().map(str::to_string);
    let store = store.to_string();
    let detail = format!("{what}: {}", DisplayErrorContext(&err));
    match (&err, code.as_deref(), status) {
        (SdkError::DispatchFailure(_) | SdkError::TimeoutError(_), _, _) => {
            StoreError::Unreachable { store, detail }
        }
        (SdkError::ConstructionFailure(_), _, _) => StoreError::AccessDenied { store, detail },
        (_, Some("NoSuchBucket"), _) => StoreError::NoBucket { store },
        // If-None-Match: * lost the race: the key exists and was not replaced.
        (_, Some("PreconditionFailed"), _) | (_, _, Some(412)) => StoreError::AlreadyExists {
            store,
            key: what.to_string(),
        },
        (_, Some("NoSuchKey"), _) => StoreError::NotFound {
            store,
            what: what.to_string(),
        },
        (
            _,
            Some(
                "AccessDenied"
                | "InvalidAccessKeyId"
                | "SignatureDoesNotMatch"
                | "ExpiredToken"
                | "InvalidToken"
                | "AllAccessDisabled",
            ),
            _,
        )
        | (_, _, Some(401 | 403)) => StoreError::AccessDenied { store, detail },
        _ => StoreError::Request { store, detail },
    }
}

struct S3Parts {
    client: Client,
    retry_for: std::time::Duration,
    bucket: String,
    key: String,
    upload_id: String,
    store: String,
}

#[async_trait]
impl PartUploader for S3Parts {
    type Receipt = CompletedPart;

    async fn upload_part(&self, number: u32, data: Bytes) -> Result<CompletedPart, StoreError> {
        let size = data.len();
        let out = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(&self.upload_id)
            .part_number(number as i32)
            .content_length(data.len() as i64)
            .body(ByteStream::from(data))
            .customize()
            .config_override(sending(self.retry_for, size))
            .send()
            .await
            .map_err(|e| {
                map_sdk_error(
                    &self.store,
                    &format!("uploading part {number} of {}", self.key),
                    e,
                )
            })?;
        Ok(CompletedPart::builder()
            .part_number(number as i32)
            .set_e_tag(out.e_tag().map(str::to_string))
            .build())
    }
}

/// Per-request timeouts for a request sending `bytes`: the client-wide read
/// timeout (time to the answer's headers) is the idle timeout, too short for
/// a large part on a slow link. One attempt: `with_retries` retries within
/// --store-retry-for, and the SDK's own attempts would each wait the whole
/// timeout first, tripling how long a hung store goes unreported.
fn sending(retry_for: std::time::Duration, bytes: usize) -> aws_sdk_s3::config::Builder {
    let limit = super::retry::send_timeout(retry_for, bytes);
    aws_sdk_s3::config::Builder::default()
        .timeout_config(
            // The attempt timeout, not `read_timeout`: read timeouts are part
            // of the connector's settings, so one per part size would give
            // each part a new connection pool instead of reusing one.
            aws_sdk_s3::config::timeout::TimeoutConfig::builder()
                .disable_read_timeout()
                .operation_attempt_timeout(limit)
                .build(),
        )
        .retry_config(aws_sdk_s3::config::retry::RetryConfig::standard().with_max_attempts(1))
}

impl S3Store {
    /// Servers that ignore `If-None-Match` still never get an overwrite
    /// from us: an existing key is refused before the upload starts.
    async fn ensure_absent(&self, key: &str, full_key: &str) -> Result<(), StoreError> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(full_key)
            .send()
            .await
        {
            Ok(_) => Err(StoreError::AlreadyExists {
                store: self.store_name(),
                key: key.to_string(),
            }),
            Err(e) if e.raw_response().map(|r| r.status().as_u16()) == Some(404) => Ok(()),
            Err(e) => Err(self.map_err(&format!("checking {full_key}"), e)),
        }
    }

    /// PutObject with `If-None-Match: *`, after [`S3Store::ensure_absent`].
    async fn put_new(&self, key: &str, full_key: &str, data: Bytes) -> Result<(), StoreError> {
        let attempts = std::sync::atomic::AtomicU32::new(0);
        let written = with_retries(&self.multipart, 1, || {
            attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(full_key)
                .if_none_match("*")
                .content_length(data.len() as i64)
                .body(ByteStream::from(data.clone()))
                .customize()
                .config_override(sending(self.multipart.retry_for, data.len()))
                .send()
                .map_err_async(|e| self.map_err(full_key, e))
        })
        .await;
        match written {
            // A retry of a write whose answer was lost finds its own object.
            Err(StoreError::AlreadyExists { .. })
                if attempts.load(std::sync::atomic::Ordering::Relaxed) > 1
                    && self.get_bytes(key).await.ok().as_ref() == Some(&data) =>
            {
                Ok(())
            }
            other => other.map(|_| ()),
        }
    }
}

/// One S3 multipart upload, driven by [`upload`].
struct S3Upload<'a> {
    store: &'a S3Store,
    key: &'a str,
    full_key: String,
}

#[async_trait]
impl ChunkedUpload for S3Upload<'_> {
    type Parts = S3Parts;

    async fn put_whole(&self, data: Bytes) -> Result<(), StoreError> {
        // put_stream already checked the key is free.
        self.store.put_new(self.key, &self.full_key, data).await
    }

    async fn start(&self) -> Result<Arc<S3Parts>, StoreError> {
        let store = self.store;
        let created = store
            .client
            .create_multipart_upload()
            .bucket(&store.bucket)
            .key(&self.full_key)
            .send()
            .await
            .map_err(|e| store.map_err(&format!("starting upload of {}", self.full_key), e))?;
        let upload_id = created
            .upload_id()
            .ok_or_else(|| StoreError::Request {
                store: store.store_name(),
                detail: "server returned no upload id".into(),
            })?
            .to_string();
        Ok(Arc::new(S3Parts {
            client: store.client.clone(),
            retry_for: store.multipart.retry_for,
            bucket: store.bucket.clone(),
            key: self.full_key.clone(),
            upload_id,
            store: store.store_name(),
        }))
    }

    async fn complete(
        &self,
        parts: &S3Parts,
        receipts: &[CompletedPart],
    ) -> Result<(), StoreError> {
        let completed = CompletedMultipartUpload::builder()
            .set_parts(Some(receipts.to_vec()))
            .build();
        self.store
            .client
            .complete_multipart_upload()
            .bucket(&parts.bucket)
            .key(&parts.key)
            .upload_id(&parts.upload_id)
            // Never replace an existing object.
            .if_none_match("*")
            .multipart_upload(completed)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| {
                self.store
                    .map_err(&format!("completing upload of {}", parts.key), e)
            })
    }

    async fn abort(&self, parts: &S3Parts) {
        // Never leave a dangling upload: it costs money and looks like data.
        if let Err(e) = self
            .store
            .client
            .abort_multipart_upload()
            .bucket(&parts.bucket)
            .key(&parts.key)
            .upload_id(&parts.upload_id)
            .send()
            .await
        {
            tracing::warn!(key = %parts.key, error = %DisplayErrorContext(&e), "aborting the failed multipart upload failed");
        }
    }
}

#[async_trait]
impl Store for S3Store {
    fn describe(&self) -> String {
        self.prefix.under(format!("s3://{}", self.bucket))
    }

    async fn check_access(&self) -> Result<(), StoreError> {
        match self.client.head_bucket().bucket(&self.bucket).send().await {
            Ok(_) => Ok(()),
            Err(e) => match e.raw_response().map(|r| r.status().as_u16()) {
                Some(404) => Err(StoreError::NoBucket {
                    store: self.store_name(),
                }),
                Some(301) => Err(StoreError::Config(format!(
                    "{}: the bucket is in another region; set --s3-region",
                    self.store_name()
                ))),
                _ => Err(self.map_err("checking the bucket", e)),
            },
        }
    }

    async fn put_stream(
        &self,
        key: &str,
        body: &mut (dyn AsyncRead + Send + Unpin),
    ) -> Result<u64, StoreError> {
        let full_key = self.full_key(key)?;
        self.ensure_absent(key, &full_key).await?;
        let lifecycle = S3Upload {
            store: self,
            key,
            full_key,
        };
        upload(&lifecycle, body, self.multipart).await
    }

    async fn put_bytes(&self, key: &str, data: Bytes) -> Result<(), StoreError> {
        let full_key = self.full_key(key)?;
        self.ensure_absent(key, &full_key).await?;
        self.put_new(key, &full_key, data).await
    }

    async fn get_stream(&self, key: &str) -> Result<BoxedReader, StoreError> {
        let full_key = self.full_key(key)?;
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&full_key)
            .send()
            .await
            .map_err(|e| self.map_err(&full_key, e))?;
        let etag = out.e_tag().map(str::to_string);
        let reopener = S3Reopener {
            client: self.client.clone(),
            bucket: self.bucket.clone(),
            key: full_key.clone(),
            etag,
        };
        Ok(Box::new(ResumingDownload::new(
            reopener,
            self.store_name(),
            full_key,
            Box::pin(out.body.into_async_read()),
            self.multipart.retry_for,
        )))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        let full_prefix = self.prefix.listing(prefix)?;
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&full_prefix)
            .into_paginator()
            .send();
        let mut found = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.map_err("listing objects", e))?;
            for object in page.contents() {
                let Some(key) = object.key() else { continue };
                if let Some(key) = self.prefix.relative(key) {
                    found.push(ObjectMeta {
                        key: key.to_string(),
                        size: object.size().unwrap_or(0).max(0) as u64,
                        modified: object.last_modified().and_then(|t| {
                            chrono::DateTime::from_timestamp(t.secs(), t.subsec_nanos())
                        }),
                    });
                }
            }
        }
        Ok(found)
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let full_key = self.full_key(key)?;
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(&full_key)
            .send()
            .await
            .map_err(|e| self.map_err(&format!("deleting {full_key}"), e))?;
        Ok(())
    }

    async fn abort_stale_uploads(
        &self,
        prefix: &str,
        cutoff: chrono::DateTime<chrono::Utc>,
    ) -> Result<u32, StoreError> {
        self.abort_old_multipart_uploads(prefix, cutoff).await
    }
}

impl S3Store {
    /// Whether an upload's key is one the agent writes (`<ns>/<name>/<id>/…`),
    /// not a search cluster's in its snapshot repository
    /// (`<ns>/<name>/repository/…`), whose uploads are the cluster's to
    /// finish or abort.
    fn is_ours(&self, key: &str) -> bool {
        let relative = self.prefix.relative(key).unwrap_or(key);
        relative.split('/').nth(2) != Some(crate::manifest::REPOSITORY_DIR)
    }

    /// Dangling multipart uploads under `prefix` started before `cutoff`
    /// (a crashed agent cannot abort its own), aborted one by one.
    async fn abort_old_multipart_uploads(
        &self,
        prefix: &str,
        cutoff: chrono::DateTime<chrono::Utc>,
    ) -> Result<u32, StoreError> {
        let full_prefix = self.prefix.listing(prefix)?;
        let mut aborted = 0;
        let (mut key_marker, mut id_marker) = (None::<String>, None::<String>);
        loop {
            let page = self
                .client
                .list_multipart_uploads()
                .bucket(&self.bucket)
                .prefix(&full_prefix)
                .set_key_marker(key_marker.clone())
                .set_upload_id_marker(id_marker.clone())
                .send()
                .await
                .map_err(|e| self.map_err("listing multipart uploads", e))?;
            for upload in page.uploads() {
                let (Some(key), Some(id)) = (upload.key(), upload.upload_id()) else {
                    continue;
                };
                let started = upload
                    .initiated()
                    .and_then(|t| chrono::DateTime::from_timestamp(t.secs(), 0));
                if started.is_none_or(|t| t > cutoff) || !self.is_ours(key) {
                    continue;
                }
                self.client
                    .abort_multipart_upload()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(id)
                    .send()
                    .await
                    .map_err(|e| self.map_err(&format!("aborting the upload of {key}"), e))?;
                tracing::info!(key, "aborted a dangling multipart upload");
                aborted += 1;
            }
            if page.is_truncated() != Some(true) {
                break;
            }
            key_marker = page.next_key_marker().map(str::to_string);
            id_marker = page.next_upload_id_marker().map(str::to_string);
            if key_marker.is_none() {
                break;
            }
        }
        Ok(aborted)
    }
}

/// Ranged re-reads of one object version, for [`ResumingDownload`].
struct S3Reopener {
    client: Client,
    bucket: String,
    key: String,
    etag: Option<String>,
}

impl Reopener for S3Reopener {
    fn reopen(&self, offset: u64) -> Reopen {
        let request = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&self.key)
            .range(format!("bytes={offset}-"))
            .set_if_match(self.etag.clone());
        Box::pin(async move {
            let out = request.send().await.map_err(|e| {
                std::io::Error::other(format!(
                    "resuming the download: {}",
                    DisplayErrorContext(&e)
                ))
            })?;
            Ok(Box::pin(out.body.into_async_read()) as Body)
        })
    }
}

/// `fut.map_err_async(f)`: maps the error of a request future, so retry loops
/// stay one expression.
trait MapErrAsync<T, E>: std::future::Future<Output = Result<T, E>> + Sized {
    fn map_err_async<F, E2>(self, f: F) -> impl std::future::Future<Output = Result<T, E2>>
    where
        F: FnOnce(E) -> E2,
    {
        async move { self.await.map_err(f) }
    }
}

impl<T, E, Fut: std::future::Future<Output = Result<T, E>>> MapErrAsync<T, E> for Fut {}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(endpoint: Option<&str>, path_style: Option<bool>) -> S3Settings {
        S3Settings {
            endpoint: endpoint.map(str::to_string),
            region: None,
            path_style,
        }
    }

    #[test]
    fn path_style_is_automatic_for_ip_and_localhost_endpoints() {
        assert!(settings(Some("http://127.0.0.1:8333"), None).effective_path_style());
        assert!(settings(Some("http://[::1]:8333"), None).effective_path_style());
        assert!(settings(Some("http://localhost:9000"), None).effective_path_style());
        assert!(!settings(Some("https://s3.eu-west-1.amazonaws.com"), None).effective_path_style());
        assert!(!settings(None, None).effective_path_style());
        assert!(!settings(Some("http://127.0.0.1:8333"), Some(false)).effective_path_style());
        assert!(settings(Some("https://minio.example"), Some(true)).effective_path_style());
    }
}
