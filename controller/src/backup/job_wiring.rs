//! What the backup and drill CronJobs are wired with alike: the agent's
//! environment and the Secret files it reads, collected while a pod is
//! described, and the addresses a PostgreSQL server, a Kafka cluster or an
//! Elasticsearch / OpenSearch cluster is reached by.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, SecretKeySelector as K8sSecretKeySelector};
use vertice_crds::agent_env::{self, SECRETS_MOUNT};
use vertice_crds::backup::{ElasticsearchTarget, KafkaSaslMechanism, KafkaTarget};
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

/// `kafka://[user@]host:port[,host:port…][?mechanism=…]`, `kafkas://` with
/// TLS: the agent's Kafka address. The mechanism is named only when it is
/// not the agent's default, SCRAM-SHA-512; the password is never in it.
pub(super) fn kafka_address(kafka: &KafkaTarget) -> String {
    let scheme = if kafka_tls(kafka) { "kafkas" } else { "kafka" };
    let user = kafka
        .sasl
        .as_ref()
        .map(|s| format!("{}@", encode(&s.username)))
        .unwrap_or_default();
    let servers: Vec<&str> = kafka.bootstrap_servers.iter().map(|s| s.trim()).collect();
    let mut address = format!("{scheme}://{user}{}", servers.join(","));
    if let Some(sasl) = kafka
        .sasl
        .as_ref()
        .filter(|s| s.mechanism != KafkaSaslMechanism::default())
    {
        address.push_str("?mechanism=");
        address.push_str(sasl.mechanism.as_str());
    }
    address
}

/// Whether the agent connects to the brokers with TLS.
fn kafka_tls(kafka: &KafkaTarget) -> bool {
    kafka.tls.as_ref().is_some_and(|t| t.enabled)
}

/// What the backup and the drill alike need to reach a Kafka cluster
/// besides its address: the SASL password and the TLS files. `field` is
/// the spec path errors name.
pub(super) fn wire_kafka_connection(
    kafka: &KafkaTarget,
    field: &str,
    w: &mut Wiring,
) -> Result<(), SpecError> {
    if let Some(sasl) = &kafka.sasl {
        let s = &sasl.password_secret_ref;
        w.secret_env(agent_env::KAFKA_PASSWORD, &s.name, &s.key);
    }
    let Some(tls) = &kafka.tls else {
        return Ok(());
    };
    let files = [
        (agent_env::KAFKA_CA_FILE, &tls.ca_secret_ref),
        (agent_env::KAFKA_CERT_FILE, &tls.cert_secret_ref),
        (agent_env::KAFKA_KEY_FILE, &tls.key_secret_ref),
    ];
    if !tls.enabled && files.iter().any(|(_, s)| s.is_some()) {
        return Err(SpecError(format!(
            "{field}.tls.enabled is false: remove caSecretRef, certSecretRef and keySecretRef, or enable TLS"
        )));
    }
    if tls.cert_secret_ref.is_some() != tls.key_secret_ref.is_some() {
        return Err(SpecError(format!(
            "{field}.tls: set certSecretRef and keySecretRef together: a client certificate needs its key"
        )));
    }
    for (var, selector) in files {
        if let Some(s) = selector {
            let path = w.secret_file(s);
            w.value(var, path);
        }
    }
    Ok(())
}

/// `http(s)://[user@]host[:port][/path]`: the agent's address of an
/// Elasticsearch / OpenSearch cluster, the user percent-encoded into it.
/// The password is never in it (the agent reads it from a Secret-backed
/// env var). The CRD's pattern already refuses a user, query or fragment
/// in `url`; refused here too, for objects stored before that pattern.
pub(super) fn elasticsearch_url(
    target: &ElasticsearchTarget,
    field: &str,
) -> Result<String, SpecError> {
    // Errors do not repeat the URL: one that slipped past the CRD's
    // pattern may hold a password, and errors end up in status and Events.
    let mut url = url::Url::parse(target.url.trim()).map_err(|e| {
        SpecError(format!(
            "{field}.url: not a URL ({e}); write http(s)://HOST:PORT, e.g. https://logs-es-http.logging.svc:9200"
        ))
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(SpecError(format!(
            "{field}.url: not an http:// or https:// address with a host; write http(s)://HOST:PORT"
        )));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(SpecError(format!(
            "{field}.url: remove the user and password from the URL; set {field}.username and passwordSecretRef instead"
        )));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(SpecError(format!(
            "{field}.url: remove the ?query or #fragment; credentials go in passwordSecretRef or apiKeySecretRef"
        )));
    }
    if let Some(user) = &target.username {
        // `set_username` percent-encodes what a URL user cannot hold as it
        // is (`@`, `:`, `/`, space, …); the agent decodes it again.
        url.set_username(user).map_err(|()| {
            SpecError(format!(
                "{field}.username: {user:?} cannot be put into the URL {field}.url names"
            ))
        })?;
    }
    // `Url` writes an empty path as `/`; the agent takes either, and the
    // address reads as written without it.
    Ok(url.as_str().trim_end_matches('/').to_string())
}

/// What the backup and the drill alike need to reach an Elasticsearch /
/// OpenSearch cluster besides its address: the password or API key (as
/// `secretKeyRef`s) and the CA file. `field` is the spec path errors name.
pub(super) fn wire_elasticsearch_connection(
    target: &ElasticsearchTarget,
    field: &str,
    w: &mut Wiring,
) -> Result<(), SpecError> {
    // The CRD's rules, again for objects stored before them: the agent
    // would refuse either on every run.
    if target.username.is_some() != target.password_secret_ref.is_some() {
        return Err(SpecError(format!(
            "{field}: set username and passwordSecretRef together: basic auth needs the user and its password"
        )));
    }
    if target.username.is_some() && target.api_key_secret_ref.is_some() {
        return Err(SpecError(format!(
            "{field}: use basic auth (username and passwordSecretRef) or an API key (apiKeySecretRef), not both"
        )));
    }
    if let Some(flavour) = target.flavour {
        w.value(agent_env::SEARCH_FLAVOUR, flavour.as_str());
    }
    if let Some(s) = &target.password_secret_ref {
        w.secret_env(agent_env::ELASTICSEARCH_PASSWORD, &s.name, &s.key);
    }
    if let Some(s) = &target.api_key_secret_ref {
        w.secret_env(agent_env::ELASTICSEARCH_API_KEY, &s.name, &s.key);
    }
    if let Some(ca) = &target.ca_secret_ref {
        let path = w.secret_file(ca);
        w.value(agent_env::SEARCH_CA_FILE, path);
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn kafka(v: serde_json::Value) -> KafkaTarget {
        serde_json::from_value(v).expect("kafka target")
    }

    fn elasticsearch(v: serde_json::Value) -> ElasticsearchTarget {
        serde_json::from_value(v).expect("elasticsearch target")
    }

    #[test]
    fn elasticsearch_urls_carry_the_encoded_user_and_keep_a_path_prefix() {
        let pw = json!({"name": "es", "key": "password"});
        for (target, want) in [
            (json!({"url": "https://es:9200"}), "https://es:9200"),
            (
                json!({"url": "http://es.logging.svc:9200/"}),
                "http://es.logging.svc:9200",
            ),
            (
                json!({"url": "https://es:9200", "username": "backup", "passwordSecretRef": pw}),
                "https://backup@es:9200",
            ),
            // '@' and ':' would end the user part: encoded.
            (
                json!({"url": "https://es:9200", "username": "svc@corp:ro", "passwordSecretRef": pw}),
                "https://svc%40corp%3Aro@es:9200",
            ),
            (
                json!({"url": "https://proxy.example/es/a", "username": "back up", "passwordSecretRef": pw}),
                "https://back%20up@proxy.example/es/a",
            ),
            (
                json!({"url": "https://[fd00::1]:9200/es/", "username": "u", "passwordSecretRef": pw}),
                "https://u@[fd00::1]:9200/es",
            ),
            // An API key is not in the URL.
            (
                json!({"url": "https://es:9200", "apiKeySecretRef": {"name": "es", "key": "api-key"}}),
                "https://es:9200",
            ),
        ] {
            assert_eq!(
                elasticsearch_url(&elasticsearch(target.clone()), "spec.target.elasticsearch")
                    .as_deref(),
                Ok(want),
                "{target}"
            );
        }
    }

    #[test]
    fn an_elasticsearch_url_with_credentials_or_a_query_is_refused() {
        for (url, needle) in [
            (
                "https://elastic:changeme@es:9200",
                "remove the user and password",
            ),
            ("https://backup@es:9200", "remove the user and password"),
            ("https://es:9200/?api_key=x", "remove the ?query"),
            ("ftp://es:21", "not an http:// or https://"),
            ("es:9200", "not an http:// or https://"),
            ("not a url", "not a URL"),
            ("https://elastic:changeme@es:99999", "not a URL"),
        ] {
            let err = elasticsearch_url(
                &elasticsearch(json!({"url": url})),
                "spec.target.elasticsearch",
            )
            .expect_err(url);
            assert!(
                err.0.starts_with("spec.target.elasticsearch.url: ") && err.0.contains(needle),
                "{url}: {err}"
            );
            // The refusal never repeats a password.
            assert!(!err.0.contains("changeme"), "{err}");
        }
    }

    #[test]
    fn elasticsearch_connection_takes_secrets_by_reference_and_mounts_the_ca() {
        let target = elasticsearch(json!({"url": "https://es:9200", "username": "backup",
            "flavour": "opensearch",
            "passwordSecretRef": {"name": "es-user", "key": "password"},
            "caSecretRef": {"name": "es-ca", "key": "ca.crt"}}));
        let mut w = Wiring::default();
        wire_elasticsearch_connection(&target, "spec.target.elasticsearch", &mut w).expect("valid");
        let env: Vec<(String, Option<String>)> = w
            .env
            .iter()
            .map(|e| (e.name.clone(), e.value.clone()))
            .collect();
        assert_eq!(
            env,
            [
                (
                    agent_env::SEARCH_FLAVOUR.to_string(),
                    Some("opensearch".to_string())
                ),
                (agent_env::ELASTICSEARCH_PASSWORD.to_string(), None),
                (
                    agent_env::SEARCH_CA_FILE.to_string(),
                    Some(format!("{SECRETS_MOUNT}/es-ca/ca.crt"))
                ),
            ]
        );
        let password = w.env[1]
            .value_from
            .as_ref()
            .and_then(|v| v.secret_key_ref.as_ref());
        assert_eq!(
            password.map(|s| (s.name.as_str(), s.key.as_str())),
            Some(("es-user", "password"))
        );
        assert_eq!(
            w.files,
            BTreeMap::from([("es-ca".to_string(), vec!["ca.crt".to_string()])])
        );

        let api_key = elasticsearch(json!({"url": "https://es:9200",
            "apiKeySecretRef": {"name": "es-key", "key": "api-key"}}));
        let mut w = Wiring::default();
        wire_elasticsearch_connection(&api_key, "spec.target.elasticsearch", &mut w)
            .expect("valid");
        assert_eq!(w.env.len(), 1);
        assert_eq!(w.env[0].name, agent_env::ELASTICSEARCH_API_KEY);
        assert_eq!(w.env[0].value, None);
        assert!(w.files.is_empty());
    }

    #[test]
    fn elasticsearch_credentials_that_do_not_fit_together_are_refused() {
        let pw = json!({"name": "es", "key": "password"});
        let key = json!({"name": "es", "key": "api-key"});
        for (target, needle) in [
            (
                json!({"url": "https://es:9200", "username": "backup"}),
                "set username and passwordSecretRef together",
            ),
            (
                json!({"url": "https://es:9200", "passwordSecretRef": pw}),
                "set username and passwordSecretRef together",
            ),
            (
                json!({"url": "https://es:9200", "username": "backup", "passwordSecretRef": pw, "apiKeySecretRef": key}),
                "not both",
            ),
        ] {
            let err = wire_elasticsearch_connection(
                &elasticsearch(target.clone()),
                "spec.target.elasticsearch",
                &mut Wiring::default(),
            )
            .expect_err("refused");
            assert!(
                err.0.starts_with("spec.target.elasticsearch: ") && err.0.contains(needle),
                "{target}: {err}"
            );
        }
    }

    #[test]
    fn kafka_addresses_carry_tls_user_and_a_mechanism_other_than_the_default() {
        let pw = json!({"name": "kafka", "key": "password"});
        for (target, want) in [
            (json!({"bootstrapServers": ["b0:9092"]}), "kafka://b0:9092"),
            (
                json!({"bootstrapServers": ["b0:9092", "b1.kafka.svc:9092", "[fd00::1]:9092"]}),
                "kafka://b0:9092,b1.kafka.svc:9092,[fd00::1]:9092",
            ),
            // TLS is on once `tls` is given, whether or not with a CA.
            (
                json!({"bootstrapServers": ["b0:9093"], "tls": {}}),
                "kafkas://b0:9093",
            ),
            (
                json!({"bootstrapServers": ["b0:9093"], "tls": {"enabled": false}}),
                "kafka://b0:9093",
            ),
            // SCRAM-SHA-512, the agent's default too, is not written.
            (
                json!({"bootstrapServers": ["b0:9092"], "sasl": {"username": "backup", "passwordSecretRef": pw}}),
                "kafka://backup@b0:9092",
            ),
            (
                json!({"bootstrapServers": ["b0:9092"],
                       "sasl": {"mechanism": "SCRAM-SHA-512", "username": "backup", "passwordSecretRef": pw}}),
                "kafka://backup@b0:9092",
            ),
            (
                json!({"bootstrapServers": ["b0:9093", "b1:9093"], "tls": {"enabled": true},
                       "sasl": {"mechanism": "SCRAM-SHA-256", "username": "backup", "passwordSecretRef": pw}}),
                "kafkas://backup@b0:9093,b1:9093?mechanism=SCRAM-SHA-256",
            ),
            (
                json!({"bootstrapServers": ["b0:9093"], "tls": {},
                       "sasl": {"mechanism": "PLAIN", "username": "svc backup", "passwordSecretRef": pw}}),
                "kafkas://svc%20backup@b0:9093?mechanism=PLAIN",
            ),
        ] {
            assert_eq!(kafka_address(&kafka(target.clone())), want, "{target}");
        }
    }

    #[test]
    fn kafka_connection_mounts_the_tls_files_and_takes_the_password_by_reference() {
        let target = kafka(json!({"bootstrapServers": ["b0:9093"],
            "tls": {"caSecretRef": {"name": "kafka-tls", "key": "ca.crt"},
                    "certSecretRef": {"name": "kafka-client", "key": "tls.crt"},
                    "keySecretRef": {"name": "kafka-client", "key": "tls.key"}},
            "sasl": {"username": "backup", "passwordSecretRef": {"name": "kafka", "key": "password"}}}));
        let mut w = Wiring::default();
        wire_kafka_connection(&target, "spec.target.kafka", &mut w).expect("valid");
        let env: Vec<(String, Option<String>)> = w
            .env
            .iter()
            .map(|e| (e.name.clone(), e.value.clone()))
            .collect();
        assert_eq!(
            env,
            [
                (agent_env::KAFKA_PASSWORD.to_string(), None),
                (
                    agent_env::KAFKA_CA_FILE.to_string(),
                    Some(format!("{SECRETS_MOUNT}/kafka-tls/ca.crt"))
                ),
                (
                    agent_env::KAFKA_CERT_FILE.to_string(),
                    Some(format!("{SECRETS_MOUNT}/kafka-client/tls.crt"))
                ),
                (
                    agent_env::KAFKA_KEY_FILE.to_string(),
                    Some(format!("{SECRETS_MOUNT}/kafka-client/tls.key"))
                ),
            ]
        );
        let password = w.env[0]
            .value_from
            .as_ref()
            .and_then(|v| v.secret_key_ref.as_ref());
        assert_eq!(
            password.map(|s| (s.name.as_str(), s.key.as_str())),
            Some(("kafka", "password"))
        );
        assert_eq!(
            w.files,
            BTreeMap::from([
                (
                    "kafka-client".to_string(),
                    vec!["tls.crt".to_string(), "tls.key".to_string()]
                ),
                ("kafka-tls".to_string(), vec!["ca.crt".to_string()]),
            ])
        );
    }

    #[test]
    fn kafka_tls_files_without_tls_or_a_certificate_without_its_key_are_refused() {
        let ca = json!({"name": "kafka-tls", "key": "ca.crt"});
        for (tls, needle) in [
            (
                json!({"enabled": false, "caSecretRef": ca}),
                "spec.target.kafka.tls.enabled is false",
            ),
            (
                json!({"certSecretRef": ca}),
                "spec.target.kafka.tls: set certSecretRef and keySecretRef together",
            ),
        ] {
            let target = kafka(json!({"bootstrapServers": ["b0:9093"], "tls": tls}));
            let err = wire_kafka_connection(&target, "spec.target.kafka", &mut Wiring::default())
                .expect_err("refused");
            assert!(err.0.starts_with(needle), "{err}");
        }
    }
}
