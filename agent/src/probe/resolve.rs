//! From a VerticeFailover's check and one replica to a runnable [`Probe`]:
//! the address, the port, the secret values looked up by the caller, and
//! the administrator's [`Limits`].

use std::sync::Arc;
use std::time::Duration;

use vertice_crds::common::SecretKeySelector;
use vertice_crds::failover::{FailoverReplica, HealthCheck, HttpCheck, PostgresCheck, RedisCheck};

use super::address_policy::AddressPolicy;
use super::grpc::GrpcProbe;
use super::http::{HeaderSpec, HttpProbe};
use super::postgres::PostgresProbe;
use super::redis::RedisProbe;
use super::tcp::TcpProbe;
use super::{Failed, Limits};

/// One check of one replica, with everything it needs.
#[derive(Debug, Clone)]
pub enum Probe {
    Tcp(TcpProbe),
    Http(Box<HttpProbe>),
    Grpc(GrpcProbe),
    Postgres(Box<PostgresProbe>),
    Redis(Box<RedisProbe>),
}

impl Probe {
    pub async fn check(&self, timeout: Duration) -> Result<(), Failed> {
        match self {
            Self::Tcp(p) => p.check().await,
            Self::Http(p) => p.check().await,
            Self::Grpc(p) => p.check(timeout).await,
            Self::Postgres(p) => p.check(timeout).await,
            Self::Redis(p) => p.check().await,
        }
    }
}

/// Splits `host:port` (`[v6]:port` too) into its parts.
pub fn split_host_port(address: &str) -> Result<(String, u16), String> {
    let bad = || format!("{address:?} is not host:port");
    let (host, port) = address.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(bad());
    }
    Ok((host.to_string(), port))
}

/// Builds the probe of `replica` under the runner's default [`Limits`].
/// `secret` reads one Secret key; its errors name the Secret and key,
/// never a value.
pub fn for_replica(
    check: &HealthCheck,
    replica: &FailoverReplica,
    secret: &dyn Fn(&SecretKeySelector) -> Result<String, String>,
) -> Result<Probe, String> {
    for_replica_within(check, replica, secret, &Limits::default())
}

/// Reads one Secret key for a check; errors name the Secret and key.
type SecretLookup<'a> = dyn Fn(&SecretKeySelector) -> Result<String, String> + 'a;

/// Builds the probe of `replica`, bounded by `limits`: the replica's
/// address, then the one kind of check the spec sets.
pub fn for_replica_within(
    check: &HealthCheck,
    replica: &FailoverReplica,
    secret: &SecretLookup<'_>,
    limits: &Limits,
) -> Result<Probe, String> {
    let target = replica.probe_target(check).ok_or_else(|| {
        format!(
            "replica {:?}: a {} check needs check.port or a probeAddress with a port",
            replica.name,
            check.kind()
        )
    })?;
    let policy = limits.addresses.clone();
    if let Some(pg) = &check.postgres {
        return postgres_probe(pg, &target, secret, policy);
    }
    if let Some(r) = &check.redis {
        return redis_probe(r, &target, secret, policy);
    }
    if let Some(h) = &check.http {
        return http_probe(h, check, replica, &target, secret, limits);
    }
    if let Some(g) = &check.grpc {
        let (host, port) = split_host_port(&target)?;
        return Ok(Probe::Grpc(GrpcProbe {
            host,
            port,
            service: g.service.clone().unwrap_or_default(),
            tls: g.tls,
            policy,
        }));
    }
    if check.tcp.is_some() {
        let (host, port) = split_host_port(&target)?;
        return Ok(Probe::Tcp(TcpProbe { host, port, policy }));
    }
    Err("the check sets none of postgres, redis, http, tcp, grpc".into())
}

/// A password a check names, if it names one.
fn password(
    reference: &Option<SecretKeySelector>,
    secret: &SecretLookup<'_>,
) -> Result<Option<String>, String> {
    reference.as_ref().map(secret).transpose()
}

fn postgres_probe(
    pg: &PostgresCheck,
    target: &str,
    secret: &SecretLookup<'_>,
    policy: Arc<AddressPolicy>,
) -> Result<Probe, String> {
    let (host, port) = split_host_port(target)?;
    let user = pg.user.clone().unwrap_or_else(|| "postgres".into());
    Ok(Probe::Postgres(Box::new(PostgresProbe {
        host,
        port,
        database: pg.database.clone().unwrap_or_else(|| "postgres".into()),
        user,
        password: password(&pg.password_secret_ref, secret)?,
        ssl_mode: super::postgres::ssl_mode(pg.ssl_mode.as_deref())?,
        require_role: pg.require_role,
        max_lag: pg
            .max_replication_lag_seconds
            .map(|s| Duration::from_secs(u64::from(s))),
        policy,
    })))
}

fn redis_probe(
    r: &RedisCheck,
    target: &str,
    secret: &SecretLookup<'_>,
    policy: Arc<AddressPolicy>,
) -> Result<Probe, String> {
    let (host, port) = split_host_port(target)?;
    Ok(Probe::Redis(Box::new(RedisProbe {
        host,
        port,
        username: r.username.clone(),
        password: password(&r.password_secret_ref, secret)?,
        require_role: r.require_role,
        require_replica_link: r.require_replica_link,
        policy,
    })))
}

fn http_probe(
    h: &HttpCheck,
    check: &HealthCheck,
    replica: &FailoverReplica,
    target: &str,
    secret: &SecretLookup<'_>,
    limits: &Limits,
) -> Result<Probe, String> {
    let scheme = if h.https { "https" } else { "http" };
    let url = url::Url::parse(&format!("{scheme}://{target}{}", h.path)).map_err(|e| {
        format!(
            "replica {:?}: URL from {target:?} and path {:?}: {e}",
            replica.name, h.path
        )
    })?;
    let specs = header_specs(h, secret)?;
    let ca = h.ca_bundle_secret_ref.as_ref().map(secret).transpose()?;
    let policy = limits.addresses.clone();
    let timeout = limits.timeout(check);
    Ok(Probe::Http(Box::new(HttpProbe {
        url,
        client: super::http::client(ca.as_deref().map(str::as_bytes), timeout, &policy)?,
        min_status: h.min_status,
        max_status: h.max_status,
        body_contains: h.body_contains.clone(),
        json_field: h
            .json_field
            .as_ref()
            .map(|j| (j.path.clone(), j.equals.clone())),
        headers: super::http::headers(&specs)?,
        max_body: limits.max_body_bytes,
        policy,
    })))
}

/// The check's headers, each a value or a Secret's (marked, so it is never
/// shown).
fn header_specs(h: &HttpCheck, secret: &SecretLookup<'_>) -> Result<Vec<HeaderSpec>, String> {
    let mut specs = Vec::new();
    for header in &h.headers {
        let (value, secret_value) = match (&header.value, &header.value_from) {
            (Some(v), _) => (v.clone(), false),
            (None, Some(r)) => (secret(r)?, true),
            (None, None) => {
                return Err(format!(
                    "header {:?} has neither value nor valueFrom",
                    header.name
                ))
            }
        };
        specs.push(HeaderSpec {
            name: header.name.clone(),
            value,
            secret: secret_value,
        });
    }
    Ok(specs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_ports() {
        assert_eq!(split_host_port("db:5432"), Ok(("db".into(), 5432)));
        assert_eq!(split_host_port("[::1]:6379"), Ok(("::1".into(), 6379)));
        assert!(split_host_port("db").is_err());
        assert!(split_host_port(":80").is_err());
        assert!(split_host_port("db:http").is_err());
    }

    fn replica() -> FailoverReplica {
        serde_json::from_value(serde_json::json!({"name": "a", "host": "pg-a"})).expect("replica")
    }

    #[test]
    fn secrets_are_looked_up_and_their_errors_kept() {
        let check: HealthCheck = serde_json::from_value(serde_json::json!({
            "postgres": {"passwordSecretRef": {"name": "pg", "key": "password"}}}))
        .expect("check");
        let found = for_replica(&check, &replica(), &|r| Ok(format!("value-of-{}", r.key)));
        match found {
            Ok(Probe::Postgres(p)) => {
                assert_eq!(p.password.as_deref(), Some("value-of-password"));
                assert!(!format!("{p:?}").contains("value-of-password"), "{p:?}");
                assert_eq!((p.host.as_str(), p.port), ("pg-a", 5432));
            }
            other => panic!("{other:?}"),
        }
        let missing = for_replica(&check, &replica(), &|r| {
            Err(format!("Secret {} has no key {}", r.name, r.key))
        });
        assert_eq!(
            missing.expect_err("must fail"),
            "Secret pg has no key password"
        );
    }

    #[test]
    fn http_urls_and_header_secrets() {
        let check: HealthCheck = serde_json::from_value(serde_json::json!({
            "http": {"https": true, "path": "/healthz", "headers": [
                {"name": "Authorization", "valueFrom": {"name": "tok", "key": "t"}}]}}))
        .expect("check");
        match for_replica(&check, &replica(), &|_| Ok("Bearer x".into())) {
            Ok(Probe::Http(p)) => {
                assert_eq!(p.url.as_str(), "https://pg-a/healthz");
                assert!(p
                    .headers
                    .get("authorization")
                    .expect("header")
                    .is_sensitive());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn tcp_without_a_port_names_the_replica() {
        let check: HealthCheck =
            serde_json::from_value(serde_json::json!({"tcp": {}})).expect("check");
        let e = for_replica(&check, &replica(), &|_| Ok(String::new())).expect_err("must fail");
        assert!(
            e.contains("replica \"a\"") && e.contains("check.port"),
            "{e}"
        );
    }
}
