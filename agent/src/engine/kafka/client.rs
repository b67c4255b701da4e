//! Connecting to a Kafka cluster with librdkafka (`rdkafka`): the client
//! configuration every backup, restore and drill shares, and the context
//! that keeps the last error the client reported on its own (a refused
//! SASL login arrives there, not as the failed call's error).

use std::sync::Mutex;

use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use super::target::KafkaTarget;
use crate::engine::settings::KafkaConnection as Connection;
use crate::error::{Error, Result};

/// Keeps the last error librdkafka reported outside a call, so a failed
/// call can say why (wrong password, TLS, brokers down).
#[derive(Default)]
pub struct Watch {
    last: Mutex<Option<(Option<RDKafkaErrorCode>, String)>>,
}

impl Watch {
    fn last(&self) -> Option<(Option<RDKafkaErrorCode>, String)> {
        self.last.lock().ok().and_then(|l| l.clone())
    }
}

impl ClientContext for Watch {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        if (level as i32) <= (RDKafkaLogLevel::Warning as i32) {
            tracing::debug!(facility = fac, "librdkafka: {message}");
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!("librdkafka: {error}: {reason}");
        if let Ok(mut last) = self.last.lock() {
            *last = Some((error.rdkafka_error_code(), reason.to_string()));
        }
    }
}

impl ConsumerContext for Watch {}

impl Watch {
    /// Forgets earlier errors: only those seen during the next call count.
    pub fn clear(&self) {
        if let Ok(mut last) = self.last.lock() {
            *last = None;
        }
    }

    /// Whether librdkafka reported a refused login or handshake.
    pub fn refused(&self) -> bool {
        self.last().is_some_and(|(code, _)| refusal(code))
    }
}

/// The cluster's metadata, asked for in short attempts so that a refused
/// login (reported as an event, served by `poll`) ends the wait at once
/// instead of after the whole timeout.
pub fn metadata(
    consumer: &rdkafka::consumer::BaseConsumer<Watch>,
    timeout: std::time::Duration,
) -> std::result::Result<rdkafka::metadata::Metadata, KafkaError> {
    use rdkafka::consumer::Consumer;
    consumer.context().clear();
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let attempt = consumer.fetch_metadata(None, std::time::Duration::from_millis(500));
        if attempt.is_ok() || std::time::Instant::now() >= deadline {
            return attempt;
        }
        // Serves error events; no partition is assigned, so no message.
        let _ = consumer.poll(std::time::Duration::ZERO);
        if consumer.context().refused() {
            return attempt;
        }
    }
}

fn refusal(code: Option<RDKafkaErrorCode>) -> bool {
    matches!(
        code,
        Some(
            RDKafkaErrorCode::Authentication
                | RDKafkaErrorCode::SaslAuthenticationFailed
                | RDKafkaErrorCode::TopicAuthorizationFailed
                | RDKafkaErrorCode::GroupAuthorizationFailed
                | RDKafkaErrorCode::ClusterAuthorizationFailed
                | RDKafkaErrorCode::SSL
        )
    )
}

/// The client configuration for `target`; `password` is the SASL
/// password, required when the address names a user.
pub fn config(
    target: &KafkaTarget,
    connection: &Connection,
    password: Option<&str>,
    flag: &str,
) -> Result<ClientConfig> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", target.brokers.join(","))
        .set(
            "client.id",
            concat!("vertice-agent/", env!("CARGO_PKG_VERSION")),
        )
        .set("security.protocol", target.security_protocol())
        .set(
            "socket.timeout.ms",
            connection
                .timeout
                .as_millis()
                .clamp(10, 300_000)
                .to_string(),
        )
        // Only the error and log callbacks above; librdkafka's own log
        // lines would go to stderr otherwise.
        .set("log_level", "4");
    if let Some((user, mechanism)) = &target.sasl {
        let password = password.ok_or_else(|| {
            Error::usage(format!(
                "{flag} names the SASL user {user:?}: give its password in KAFKA_PASSWORD or a file named by --password-file"
            ))
        })?;
        config
            .set("sasl.mechanism", mechanism.as_str())
            .set("sasl.username", user)
            .set("sasl.password", password);
    }
    let files = [
        ("ssl.ca.location", &connection.ca_file, "--kafka-ca-file"),
        (
            "ssl.certificate.location",
            &connection.cert_file,
            "--kafka-cert-file",
        ),
        ("ssl.key.location", &connection.key_file, "--kafka-key-file"),
    ];
    for (key, file, file_flag) in files {
        let Some(path) = file else { continue };
        if !target.tls {
            return Err(Error::usage(format!(
                "{file_flag} is for TLS: write the address as kafkas://…"
            )));
        }
        if !path.is_file() {
            return Err(Error::usage(format!(
                "{file_flag} {}: no such file",
                path.display()
            )));
        }
        config.set(key, path.to_string_lossy());
    }
    if connection.cert_file.is_some() != connection.key_file.is_some() {
        return Err(Error::usage(
            "--kafka-cert-file and --kafka-key-file go together (a client certificate and its key)",
        ));
    }
    Ok(config)
}

/// What went wrong talking to the cluster at `address`: a refused login or
/// TLS handshake is a configuration error (exit 2, retrying cannot help);
/// anything else fails the run with `category`'s error (`Error::source`
/// for a backup, `Error::target` for a restore).
pub fn failure(
    watch: &Watch,
    address: &str,
    doing: &str,
    error: &KafkaError,
    category: fn(String) -> Error,
) -> Error {
    let code = error.rdkafka_error_code();
    let last = watch.last();
    let refused = refusal;
    match &last {
        Some((c, reason)) if refused(*c) || refused(code) => Error::usage(format!(
            "{address} refused the agent while {doing}: {}; check the user, the password (KAFKA_PASSWORD or --password-file), the mechanism and the TLS files",
            short(reason)
        )),
        _ if refused(code) => Error::usage(format!(
            "{address} refused the agent while {doing}: {error}; check the user, the password (KAFKA_PASSWORD or --password-file) and the TLS files"
        )),
        Some((_, reason)) => category(format!(
            "{address}: {doing} failed: {error} ({})",
            short(reason)
        )),
        None => category(format!("{address}: {doing} failed: {error}")),
    }
}

/// librdkafka's reasons can be long; the first line, cut, is enough.
fn short(reason: &str) -> String {
    let line = reason.lines().next().unwrap_or_default();
    match line.char_indices().nth(300) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line.to_string(),
    }
}
