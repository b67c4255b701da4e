//! The HTTP plumbing hooks, the Pushgateway and notifications share: one
//! client, one way to send and judge a request, header values from Secrets.

use std::path::Path;
use std::time::Duration;

use vertice_crds::hooks::HttpHeader;

use crate::error::{Error, Result};
use crate::secret_files;

/// One HTTP client for hooks, pushes and notifications: short timeouts, no
/// redirects to follow a token elsewhere.
pub fn http_client() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("vertice-agent/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| Error::target(format!("HTTP client: {e}")))
}

/// Sends `request` to `url` and wants a 2xx answer. Webhook and hook URLs
/// are credentials, so errors name the host only.
pub async fn send(request: reqwest::RequestBuilder, url: &str) -> Result<reqwest::Response> {
    let host = reqwest::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_default();
    let response = request
        .send()
        .await
        .map_err(|e| Error::target(format!("request to {host} failed: {}", e.without_url())))?;
    if response.status().is_success() {
        Ok(response)
    } else {
        Err(Error::target(format!(
            "{host} answered {}",
            response.status()
        )))
    }
}

/// A header's value, inline or from its Secret.
pub fn header_value(header: &HttpHeader, secrets_dir: &Path) -> Result<String> {
    match (&header.value, &header.value_secret_ref) {
        (Some(v), _) => Ok(v.clone()),
        (None, Some(selector)) => secret_files::read(secrets_dir, selector),
        (None, None) => Err(Error::usage(format!(
            "header {}: set value or valueSecretRef",
            header.name
        ))),
    }
}
