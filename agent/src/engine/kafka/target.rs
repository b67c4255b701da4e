//! `kafka://[USER@]HOST:PORT[,HOST:PORT…][?mechanism=…]` (plaintext) or
//! `kafkas://…` (TLS): the bootstrap servers, and a SASL user when one is
//! named. The password never appears here: it comes from KAFKA_PASSWORD or
//! `--password-file`.

use crate::error::{Error, Result};

/// Where the SASL password comes from when no `--password-file` is given.
pub const PASSWORD_ENV: &[&str] = &[vertice_crds::agent_env::KAFKA_PASSWORD];

/// The SASL mechanisms the agent speaks (librdkafka's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    Plain,
    ScramSha256,
    ScramSha512,
}

impl Mechanism {
    pub fn as_str(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }

    fn parse(raw: &str) -> Option<Mechanism> {
        match raw.to_ascii_uppercase().as_str() {
            "PLAIN" => Some(Mechanism::Plain),
            "SCRAM-SHA-256" => Some(Mechanism::ScramSha256),
            "SCRAM-SHA-512" => Some(Mechanism::ScramSha512),
            _ => None,
        }
    }
}

/// A Kafka cluster, as the agent reaches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaTarget {
    /// `host:port` of each bootstrap server, as given.
    pub brokers: Vec<String>,
    pub tls: bool,
    /// The SASL user and mechanism; `None`: no SASL.
    pub sasl: Option<(String, Mechanism)>,
}

impl KafkaTarget {
    /// The address as written in manifests and logs (no password: the URL
    /// never holds one).
    pub fn address(&self) -> String {
        let scheme = if self.tls { "kafkas" } else { "kafka" };
        let user = self
            .sasl
            .as_ref()
            .map(|(u, _)| format!("{u}@"))
            .unwrap_or_default();
        format!("{scheme}://{user}{}", self.brokers.join(","))
    }

    /// librdkafka's `security.protocol`.
    pub fn security_protocol(&self) -> &'static str {
        match (self.tls, self.sasl.is_some()) {
            (false, false) => "plaintext",
            (true, false) => "ssl",
            (false, true) => "sasl_plaintext",
            (true, true) => "sasl_ssl",
        }
    }
}

/// True for the schemes this engine owns.
pub fn is_kafka(raw: &str) -> bool {
    raw.starts_with("kafka://") || raw.starts_with("kafkas://")
}

/// Reads a Kafka address. A URL parser cannot take a list of hosts, so the
/// address is read by hand; `flag` names the flag in errors.
pub fn parse(raw: &str, flag: &str) -> Result<KafkaTarget> {
    let (tls, rest) = match raw.split_once("://") {
        Some(("kafka", rest)) => (false, rest),
        Some(("kafkas", rest)) => (true, rest),
        _ => {
            return Err(Error::usage(format!(
                "{flag}: expected kafka://HOST:PORT[,HOST:PORT…] (or kafkas:// for TLS)"
            )))
        }
    };
    let (authority, query) = match rest.split_once('?') {
        Some((a, q)) => (a, Some(q)),
        None => (rest, None),
    };
    let authority = authority.trim_end_matches('/');
    if authority.contains('/') {
        return Err(Error::usage(format!(
            "{flag}: a Kafka address has no path; write kafka://HOST:PORT[,HOST:PORT…]"
        )));
    }
    let (user, hosts) = match authority.rsplit_once('@') {
        Some((user, hosts)) => (Some(user), hosts),
        None => (None, authority),
    };
    if let Some(user) = user {
        if user.contains(':') {
            return Err(Error::usage(format!(
                "{flag} must not contain a password: put it in KAFKA_PASSWORD or a file named by --password-file"
            )));
        }
        if user.is_empty() {
            return Err(Error::usage(format!(
                "{flag}: the SASL user before '@' is empty"
            )));
        }
    }
    let brokers = hosts
        .split(',')
        .map(|h| broker(h.trim(), flag))
        .collect::<Result<Vec<_>>>()?;
    let mechanism = mechanism(query, user.is_some(), flag)?;
    let sasl = user.map(|u| (crate::engine::common::percent_decode(u), mechanism));
    Ok(KafkaTarget { brokers, tls, sasl })
}

fn broker(raw: &str, flag: &str) -> Result<String> {
    let bad = || {
        Error::usage(format!(
            "{flag}: {raw:?} is not HOST:PORT; write kafka://HOST:PORT[,HOST:PORT…]"
        ))
    };
    let (host, port) = raw.rsplit_once(':').ok_or_else(bad)?;
    let valid_host = !host.is_empty()
        && (host.starts_with('[') && host.ends_with(']')
            || host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')));
    match port.parse::<u16>() {
        Ok(p) if p > 0 && valid_host => Ok(raw.to_string()),
        _ => Err(bad()),
    }
}

fn mechanism(query: Option<&str>, has_user: bool, flag: &str) -> Result<Mechanism> {
    let mut chosen = None;
    for (key, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match key.as_ref() {
            "mechanism" => {
                chosen = Some(Mechanism::parse(&value).ok_or_else(|| {
                    Error::usage(format!(
                        "{flag}: mechanism={value:?} is not one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512"
                    ))
                })?)
            }
            "password" => {
                return Err(Error::usage(format!(
                    "{flag} must not contain a password: put it in KAFKA_PASSWORD or a file named by --password-file"
                )))
            }
            other => {
                return Err(Error::usage(format!(
                    "{flag}: unknown parameter {other:?}; the only one is mechanism=PLAIN|SCRAM-SHA-256|SCRAM-SHA-512"
                )))
            }
        }
    }
    match (chosen, has_user) {
        (Some(_), false) => Err(Error::usage(format!(
            "{flag}: mechanism= needs a SASL user: kafka://USER@HOST:PORT?mechanism=…"
        ))),
        (Some(m), true) => Ok(m),
        (None, _) => Ok(Mechanism::ScramSha512),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_brokers_tls_and_sasl() {
        let t = parse("kafka://b0:9092,b1:9093", "--source").expect("plain");
        assert_eq!(t.brokers, vec!["b0:9092", "b1:9093"]);
        assert_eq!((t.tls, t.sasl.clone()), (false, None));
        assert_eq!(t.security_protocol(), "plaintext");
        assert_eq!(t.address(), "kafka://b0:9092,b1:9093");

        let t = parse(
            "kafkas://backup@b0:9093?mechanism=scram-sha-256",
            "--source",
        )
        .expect("sasl");
        assert_eq!(t.sasl, Some(("backup".into(), Mechanism::ScramSha256)));
        assert_eq!(t.security_protocol(), "sasl_ssl");
        assert_eq!(t.address(), "kafkas://backup@b0:9093");

        let t = parse("kafka://u@[::1]:9092", "--to").expect("ipv6");
        assert_eq!(t.sasl, Some(("u".into(), Mechanism::ScramSha512)));
        assert_eq!(t.brokers, vec!["[::1]:9092"]);
    }

    #[test]
    fn refuses_passwords_and_malformed_addresses_naming_the_flag() {
        for (raw, needle) in [
            ("kafka://u:hunter2@b0:9092", "must not contain a password"),
            (
                "kafka://u@b0:9092?password=hunter2",
                "must not contain a password",
            ),
            ("kafka://b0", "not HOST:PORT"),
            ("kafka://b0:9092,", "not HOST:PORT"),
            ("kafka://b0:9092/topic", "no path"),
            ("kafka://b0:9092?mechanism=PLAIN", "needs a SASL user"),
            ("kafka://u@b0:9092?mechanism=GSSAPI", "not one of"),
            ("kafka://b0:9092?acks=all", "unknown parameter"),
        ] {
            let err = parse(raw, "--source").expect_err(raw);
            let msg = err.to_string();
            assert!(
                msg.contains("--source") && msg.contains(needle),
                "{raw}: {msg}"
            );
            assert!(!msg.contains("hunter2"), "{msg}");
            assert_eq!(err.exit_code(), 2);
        }
    }
}
