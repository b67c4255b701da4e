//! `gs://bucket/prefix`: objects are read through `google-cloud-storage` as
//! a resuming stream, and written with our own resumable uploads over the
//! JSON API, fed chunk by chunk from the pipeline ([`upload`]: why not the
//! client's). Listing and deleting use the JSON API with the same
//! credentials, because the crate offers them only over gRPC, which
//! emulators do not speak.
//!
//! Credentials: Application Default Credentials (GKE workload identity,
//! `GOOGLE_APPLICATION_CREDENTIALS`, the metadata server); anonymous for an
//! emulator endpoint (`--gcs-endpoint` or `STORAGE_EMULATOR_HOST`).
//!
//! Retries stop once the store has failed for `--store-retry-for` without
//! progress; reads use the client's retry loop with a policy that does so
//! (its default allows 5 minutes per operation, counted from its start:
//! minutes to report a dead store, and no retries left for a download that
//! has run longer than that).

mod upload;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use google_cloud_auth::credentials::{anonymous, CacheableResource, Credentials};
use google_cloud_gax::exponential_backoff::{ExponentialBackoff, ExponentialBackoffBuilder};
use google_cloud_gax::retry_policy::RetryPolicy;
use google_cloud_gax::retry_result::RetryResult;
use google_cloud_gax::retry_state::RetryState;
use google_cloud_storage::client::Storage;
use google_cloud_storage::retry_policy::RetryableErrors;
use tokio::io::AsyncRead;

use super::error::ReadFailure;
use super::key_prefix::KeyPrefix;
use super::multipart::{with_retries, MultipartConfig};
use super::retry::{Outage, Verdict};
use super::{BoxedReader, ObjectMeta, Store, StoreError};

const DEFAULT_ENDPOINT: &str = "https://storage.googleapis.com";

#[derive(Debug, Clone, Default)]
pub struct GcsSettings {
    pub endpoint: Option<String>,
}

impl GcsSettings {
    /// The flag, else `STORAGE_EMULATOR_HOST` (which the Google tools read).
    fn emulator_endpoint(&self) -> Option<String> {
        self.endpoint.clone().or_else(|| {
            std::env::var("STORAGE_EMULATOR_HOST")
                .ok()
                .filter(|v| !v.is_empty())
                .map(|v| {
                    if v.contains("://") {
                        v
                    } else {
                        format!("http://{v}")
                    }
                })
        })
    }
}

pub struct GcsStore {
    client: Storage,
    credentials: Credentials,
    http: reqwest::Client,
    endpoint: String,
    bucket: String,
    prefix: KeyPrefix,
    multipart: MultipartConfig,
}

/// The client's retry policy for one operation: the errors Google documents
/// as retryable, for as long as [`Outage`] allows.
#[derive(Debug)]
struct OutagePolicy(Arc<Outage>);

impl RetryPolicy for OutagePolicy {
    fn on_error(&self, state: &RetryState, error: google_cloud_storage::Error) -> RetryResult {
        match RetryableErrors.on_error(state, error) {
            RetryResult::Continue(e) => {
                // The back-off is checked against `remaining_time` by the loop.
                match self
                    .0
                    .failed(tokio::time::Instant::now().into_std(), Duration::ZERO)
                {
                    Verdict::Retry { .. } => RetryResult::Continue(e),
                    Verdict::GiveUp { .. } => RetryResult::Exhausted(e),
                }
            }
            other => other,
        }
    }

    fn remaining_time(&self, _state: &RetryState) -> Option<Duration> {
        self.0.remaining(tokio::time::Instant::now().into_std())
    }
}

/// Like ours elsewhere: 0.5 s doubling to 8 s (the client's default grows
/// to 60 s, longer than a whole allowance).
fn backoff() -> Result<ExponentialBackoff, StoreError> {
    ExponentialBackoffBuilder::new()
        .with_initial_delay(Duration::from_millis(500))
        .with_maximum_delay(Duration::from_secs(8))
        .with_scaling(2.0)
        .build()
        .map_err(|e| StoreError::Config(format!("GCS retry back-off: {e}")))
}

impl GcsStore {
    pub async fn connect(
        bucket: String,
        prefix: String,
        settings: &GcsSettings,
        multipart: MultipartConfig,
    ) -> Result<Self, StoreError> {
        let emulator = settings.emulator_endpoint();
        let endpoint = emulator
            .clone()
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string())
            .trim_end_matches('/')
            .to_string();
        let parsed = url::Url::parse(&endpoint).map_err(|e| {
            StoreError::Config(format!(
                "--gcs-endpoint {endpoint:?} is not a URL ({e}); write it as http://HOST:PORT"
            ))
        })?;
        parsed.host().ok_or_else(|| {
            StoreError::Config(format!(
                "--gcs-endpoint {endpoint:?} names no host; write it as http://HOST:PORT"
            ))
        })?;
        let credentials = if emulator.is_some() {
            anonymous::Builder::new().build()
        } else {
            google_cloud_auth::credentials::Builder::default()
                .build()
                .map_err(|e| {
                    StoreError::Config(format!(
                        "gs://{bucket}: no Google credentials ({e}); use workload identity or set GOOGLE_APPLICATION_CREDENTIALS"
                    ))
                })?
        };
        let mut builder = Storage::builder().with_credentials(credentials.clone());
        if emulator.is_some() {
            builder = builder.with_endpoint(endpoint.clone());
        }
        let client = builder.build().await.map_err(|e| {
            StoreError::Config(format!("gs://{bucket}: cannot set up the client ({e})"))
        })?;
        let http = reqwest::Client::builder()
            // A store that does not answer a connection is unreachable; the
            // retry allowance decides how long to keep asking.
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| StoreError::Config(format!("gs://{bucket}: HTTP client: {e}")))?;
        Ok(GcsStore {
            client,
            credentials,
            http,
            endpoint,
            bucket,
            prefix: KeyPrefix::new(prefix),
            multipart,
        })
    }

    fn full_key(&self, key: &str) -> Result<String, StoreError> {
        self.prefix.full(key)
    }

    fn bucket_path(&self) -> String {
        format!("projects/_/buckets/{}", self.bucket)
    }

    fn map_err(&self, what: &str, err: google_cloud_storage::Error) -> StoreError {
        let store = self.describe();
        // `exhausted`: the retry loop gave up on errors it deemed transient.
        if err.is_exhausted() {
            let detail = format!(
                "{what}: {err}; gave up retrying (--store-retry-for {})",
                super::retry::describe(self.multipart.retry_for)
            );
            return StoreError::Unreachable { store, detail };
        }
        let detail = format!("{what}: {err}");
        if err.is_connect() || err.is_io() || err.is_timeout() {
            return StoreError::Unreachable { store, detail };
        }
        if err.is_authentication() {
            return StoreError::AccessDenied { store, detail };
        }
        let code = err
            .http_status_code()
            .or_else(|| err.status().map(|s| grpc_to_http(s.code as i32)));
        status_error(store, what, code, detail, false)
    }

    /// A fresh allowance and the retry settings for one operation.
    fn outage(&self) -> Arc<Outage> {
        Arc::new(Outage::new(self.multipart.retry_for))
    }

    /// Refuses an existing key before anything is sent: `ifGenerationMatch=0`
    /// is the guard against a race, this is the guard against a server (or
    /// an emulator) that ignores the precondition.
    async fn ensure_absent(&self, key: &str, full_key: &str) -> Result<(), StoreError> {
        let path = format!(
            "b/{}/o/{}?fields=name",
            urlencode(&self.bucket),
            urlencode(full_key)
        );
        match self
            .json_request(
                reqwest::Method::GET,
                &path,
                &format!("checking {full_key}"),
                false,
            )
            .await
        {
            Ok(_) => Err(StoreError::AlreadyExists {
                store: self.describe(),
                key: key.to_string(),
            }),
            Err(StoreError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn auth_headers(&self) -> Result<http::HeaderMap, StoreError> {
        match self.credentials.headers(http::Extensions::new()).await {
            Ok(CacheableResource::New { data, .. }) => Ok(data),
            Ok(CacheableResource::NotModified) => Ok(http::HeaderMap::new()),
            Err(e) => Err(StoreError::AccessDenied {
                store: self.describe(),
                detail: format!("getting a token: {e}"),
            }),
        }
    }

    /// One JSON API request (reads and deletes, which are idempotent),
    /// retried within the allowance, with its status mapped to a store error.
    async fn json_request(
        &self,
        method: reqwest::Method,
        path_and_query: &str,
        what: &str,
        bucket_request: bool,
    ) -> Result<reqwest::Response, StoreError> {
        with_retries(&self.multipart, 0, || {
            self.json_attempt(method.clone(), path_and_query, what, bucket_request)
        })
        .await
    }

    async fn json_attempt(
        &self,
        method: reqwest::Method,
        path_and_query: &str,
        what: &str,
        bucket_request: bool,
    ) -> Result<reqwest::Response, StoreError> {
        let url = format!("{}/storage/v1/{path_and_query}", self.endpoint);
        let response = self
            .http
            .request(method, url)
            .headers(self.auth_headers().await?)
            // Small requests: no answer within the idle timeout is a hung store.
            .timeout(super::retry::idle_timeout(self.multipart.retry_for))
            .send()
            .await
            .map_err(|e| StoreError::Unreachable {
                store: self.describe(),
                detail: format!("{what}: {e}"),
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response.text().await.unwrap_or_default();
        let detail = format!(
            "{what}: HTTP {status}: {}",
            body.chars().take(300).collect::<String>()
        );
        Err(status_error(
            self.describe(),
            what,
            Some(status.as_u16()),
            detail,
            bucket_request,
        ))
    }
}

fn grpc_to_http(code: i32) -> u16 {
    match code {
        5 => 404,  // NOT_FOUND
        6 => 409,  // ALREADY_EXISTS
        7 => 403,  // PERMISSION_DENIED
        9 => 412,  // FAILED_PRECONDITION
        16 => 401, // UNAUTHENTICATED
        _ => 500,
    }
}

/// Maps an HTTP status. A 404 means the bucket is missing when the request
/// was about the bucket (`bucket_request`: a listing), or when GCS says so;
/// otherwise the object is (bucket names often contain the word "bucket",
/// so the detail text alone cannot decide).
fn status_error(
    store: String,
    what: &str,
    code: Option<u16>,
    detail: String,
    bucket_request: bool,
) -> StoreError {
    let says_no_bucket = detail
        .to_ascii_lowercase()
        .contains("bucket does not exist");
    match code {
        Some(401 | 403) => StoreError::AccessDenied { store, detail },
        Some(404) if bucket_request || says_no_bucket => StoreError::NoBucket { store },
        Some(404) => StoreError::NotFound {
            store,
            what: what.to_string(),
        },
        Some(409 | 412) => StoreError::AlreadyExists {
            store,
            key: what.to_string(),
        },
        _ => StoreError::Request { store, detail },
    }
}

#[async_trait]
impl Store for GcsStore {
    fn describe(&self) -> String {
        self.prefix.under(format!("gs://{}", self.bucket))
    }

    async fn check_access(&self) -> Result<(), StoreError> {
        // Listing needs only object-list rights, which a backup identity has.
        let path = format!(
            "b/{}/o?maxResults=1&fields=nextPageToken",
            urlencode(&self.bucket)
        );
        self.json_request(reqwest::Method::GET, &path, "checking the bucket", true)
            .await
            .map(|_| ())
    }

    async fn put_stream(
        &self,
        key: &str,
        body: &mut (dyn AsyncRead + Send + Unpin),
    ) -> Result<u64, StoreError> {
        let full_key = self.full_key(key)?;
        self.ensure_absent(key, &full_key).await?;
        self.upload_resumable(key, &full_key, body).await
    }

    async fn put_bytes(&self, key: &str, data: Bytes) -> Result<(), StoreError> {
        let full_key = self.full_key(key)?;
        self.ensure_absent(key, &full_key).await?;
        self.upload_resumable(key, &full_key, &mut &data[..])
            .await
            .map(|_| ())
    }

    async fn get_stream(&self, key: &str) -> Result<BoxedReader, StoreError> {
        let full_key = self.full_key(key)?;
        // One allowance for the whole read: the client resumes a cut
        // download with the same policy, and every chunk that arrives is
        // progress.
        let outage = self.outage();
        // The Google client has no idle timeout for reads: a store that
        // answers nothing would hang the run. Opening may use the whole
        // allowance (the client retries within it) plus one silent attempt;
        // a body that sends nothing for the idle timeout is a store failure.
        let idle = super::retry::idle_timeout(self.multipart.retry_for);
        let opening = self
            .client
            .read_object(self.bucket_path(), full_key.clone())
            .with_retry_policy(OutagePolicy(Arc::clone(&outage)))
            .with_backoff_policy(backoff()?)
            .send();
        let response = tokio::time::timeout(self.multipart.retry_for + idle, opening)
            .await
            .map_err(|_| StoreError::Unreachable {
                store: self.describe(),
                detail: format!(
                    "reading {full_key}: no answer within {}",
                    super::retry::describe(self.multipart.retry_for + idle)
                ),
            })?
            .map_err(|e| self.map_err(&full_key, e))?;
        let store = self.describe();
        let stream = futures::stream::unfold(Some(response), move |response| {
            let (store, key, outage) = (store.clone(), full_key.clone(), Arc::clone(&outage));
            async move {
                let mut r = response?;
                match tokio::time::timeout(idle, r.next()).await {
                    Ok(Some(Ok(chunk))) => {
                        outage.progress();
                        Some((Ok(chunk), Some(r)))
                    }
                    Ok(Some(Err(e))) => Some((Err(read_error(&store, &key, e)), Some(r))),
                    Ok(None) => None,
                    Err(_) => {
                        let silent = std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            format!(
                                "reading {key}: the store sent nothing for {}",
                                super::retry::describe(idle)
                            ),
                        );
                        Some((Err(ReadFailure::wrap(&store, silent)), None))
                    }
                }
            }
        });
        Ok(Box::new(tokio_util::io::StreamReader::new(Box::pin(
            stream,
        ))))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        #[derive(serde::Deserialize)]
        struct Page {
            #[serde(default)]
            items: Vec<Item>,
            #[serde(rename = "nextPageToken")]
            next_page_token: Option<String>,
        }
        #[derive(serde::Deserialize)]
        struct Item {
            name: String,
            #[serde(default)]
            size: Option<String>,
            #[serde(default)]
            updated: Option<chrono::DateTime<chrono::Utc>>,
        }
        let full_prefix = self.prefix.listing(prefix)?;
        let mut found = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut path = format!(
                "b/{}/o?prefix={}&fields=items(name,size,updated),nextPageToken",
                urlencode(&self.bucket),
                urlencode(&full_prefix)
            );
            if let Some(t) = &token {
                path.push_str(&format!("&pageToken={}", urlencode(t)));
            }
            let page: Page = self
                .json_request(reqwest::Method::GET, &path, "listing objects", true)
                .await?
                .json()
                .await
                .map_err(|e| StoreError::Request {
                    store: self.describe(),
                    detail: format!("listing objects: {e}"),
                })?;
            for item in page.items {
                if let Some(key) = self.prefix.relative(&item.name) {
                    found.push(ObjectMeta {
                        key: key.to_string(),
                        size: item.size.and_then(|s| s.parse().ok()).unwrap_or(0),
                        modified: item.updated,
                    });
                }
            }
            match page.next_page_token {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => break,
            }
        }
        Ok(found)
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let full_key = self.full_key(key)?;
        let path = format!("b/{}/o/{}", urlencode(&self.bucket), urlencode(&full_key));
        match self
            .json_request(
                reqwest::Method::DELETE,
                &path,
                &format!("deleting {full_key}"),
                false,
            )
            .await
        {
            Ok(_) | Err(StoreError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// A failed read of an object: a checksum that does not match is about the
/// data (the integrity check says so); anything else is the store failing
/// (the client already resumed it as long as the allowance let it).
fn read_error(store: &str, key: &str, e: google_cloud_storage::Error) -> std::io::Error {
    let io = std::io::Error::other(format!("reading {key}: {e}"));
    if e.is_deserialization() {
        io
    } else {
        ReadFailure::wrap(store, io)
    }
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_object_in_a_bucket_named_bucket_is_not_a_missing_bucket() {
        let detail = "deleting x: HTTP 404: No such object: my-bucket/x".to_string();
        let e = status_error("gs://my-bucket".into(), "x", Some(404), detail, false);
        assert!(matches!(e, StoreError::NotFound { .. }), "{e}");
        let e = status_error(
            "gs://b".into(),
            "listing",
            Some(404),
            "HTTP 404".into(),
            true,
        );
        assert!(matches!(e, StoreError::NoBucket { .. }), "{e}");
        let said = "HTTP 404: The specified bucket does not exist.".to_string();
        let e = status_error("gs://b".into(), "reading x", Some(404), said, false);
        assert!(matches!(e, StoreError::NoBucket { .. }), "{e}");
    }
}
