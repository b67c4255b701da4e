//! What the backup and drill CronJobs are wired with alike: the agent's
//! environment and the Secret files it reads, collected while a pod is
//! described, and the URL a PostgreSQL server is reached by.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, SecretKeySelector as K8sSecretKeySelector};
use vertice_crds::agent_env::SECRETS_MOUNT;
use vertice_crds::common::SecretKeySelector;

/// A spec the CRD schema let through but that cannot become a CronJob.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SpecError(pub String);

/// Collects env vars and Secret files while the container is described.
#[derive(Default)]
pub(super) struct Wiring {
    pub(super) env: Vec<EnvVar>,
    /// Secret name → keys mounted as files.
    pub(super) files: BTreeMap<String, Vec<String>>,
}

impl Wiring {
    pub(super) fn value(&mut self, name: &str, value: impl Into<String>) {
        self.env.push(EnvVar {
            name: name.into(),
            value: Some(value.into()),
            value_from: None,
        });
    }

    pub(super) fn secret_env(&mut self, name: &str, secret: &str, key: &str) {
        self.env.push(EnvVar {
            name: name.into(),
            value: None,
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(K8sSecretKeySelector {
                    name: secret.into(),
                    key: key.into(),
                    optional: Some(false),
                }),
                ..Default::default()
            }),
        });
    }

    /// Mounts the key as a file and returns its path in the container.
    pub(super) fn secret_file(&mut self, selector: &SecretKeySelector) -> String {
        let keys = self.files.entry(selector.name.clone()).or_default();
        if !keys.contains(&selector.key) {
            keys.push(selector.key.clone());
        }
        format!("{SECRETS_MOUNT}/{}/{}", selector.name, selector.key)
    }
}

/// `postgres://user@host:port/db[?sslmode=…]`, each part encoded.
pub(super) fn postgres_url(
    user: &str,
    host_name: &str,
    port: u16,
    database: &str,
    ssl_mode: Option<&str>,
) -> String {
    let mut url = format!(
        "postgres://{}@{}:{port}/{}",
        encode(user),
        host(host_name),
        encode(database)
    );
    if let Some(mode) = ssl_mode {
        url.push_str(&format!("?sslmode={mode}"));
    }
    url
}

/// Percent-encodes a URL user or path segment.
pub(super) fn encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// IPv6 literals need brackets in a URL.
pub(super) fn host(h: &str) -> String {
    if h.contains(':') && !h.starts_with('[') {
        format!("[{h}]")
    } else {
        h.to_string()
    }
}
