//! `vertice-agent probe check|serve`: the probes' command line. `check`
//! describes one check with flags and becomes the same CRD check a
//! VerticeFailover holds, so it runs through the same code; `serve`'s flags
//! become the runner's settings.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::PossibleValue;
use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;
use vertice_crds::common::SecretKeySelector;
use vertice_crds::failover::{FailoverReplica, HealthCheck, RequiredRole};
use vertice_crds::tenancy::SecretReferencePolicy;

use crate::probe::check::{Output, FROM_ENV, FROM_FILE};
use crate::probe::serve::{validate_vantage, ServeSettings};
use crate::probe::{address_policy, resolve, AddressPolicy, Limits};

#[derive(Debug, Args)]
pub struct ProbeArgs {
    #[command(subcommand)]
    pub command: ProbeCommand,
}

#[derive(Debug, Subcommand)]
pub enum ProbeCommand {
    /// Run one check once: exit 0 when healthy, 1 when not, 2 on bad flags.
    Check(Box<CheckArgs>),
    /// Run the checks of every VerticeFailover and report them as one vantage.
    Serve(ServeArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Kind {
    Postgres,
    Redis,
    Http,
    Tcp,
    Grpc,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Role {
    Any,
    Primary,
    Replica,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// What to check.
    pub kind: Kind,
    /// `host:port` to check (postgres, redis, tcp, grpc).
    #[arg(long, env = "VERTICE_PROBE_ADDRESS")]
    pub address: Option<String>,
    /// URL to GET (http), e.g. https://api.internal:8443/healthz.
    #[arg(long, env = "VERTICE_PROBE_URL")]
    pub url: Option<url::Url>,
    /// Seconds the whole check may take.
    #[arg(long, env = "VERTICE_PROBE_TIMEOUT", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=600))]
    pub timeout: u32,
    #[arg(long, env = "VERTICE_PROBE_OUTPUT", default_value = "text")]
    pub output: Output,
    /// Database user (postgres) or ACL user (redis).
    #[arg(long, env = "VERTICE_PROBE_USER")]
    pub user: Option<String>,
    /// Database to connect to (postgres; default postgres).
    #[arg(long, env = "VERTICE_PROBE_DATABASE")]
    pub database: Option<String>,
    /// File holding the password (else PGPASSWORD for postgres, REDIS_PASSWORD for redis).
    #[arg(long, env = "VERTICE_PROBE_PASSWORD_FILE")]
    pub password_file: Option<PathBuf>,
    /// Role the server must have (postgres, redis).
    #[arg(long, env = "VERTICE_PROBE_REQUIRE_ROLE", default_value = "any")]
    pub require_role: Role,
    /// A standby replaying more than this many seconds behind fails (postgres).
    #[arg(long, env = "VERTICE_PROBE_MAX_LAG_SECONDS")]
    pub max_lag_seconds: Option<u32>,
    /// disable, prefer or require (postgres).
    #[arg(long, env = "VERTICE_PROBE_SSL_MODE")]
    pub ssl_mode: Option<String>,
    /// Do not fail a replica whose link to its primary is down (redis).
    #[arg(long)]
    pub ignore_replica_link: bool,
    /// Lowest accepted status (http).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u16).range(100..=599))]
    pub min_status: u16,
    /// Highest accepted status (http).
    #[arg(long, default_value_t = 399, value_parser = clap::value_parser!(u16).range(100..=599))]
    pub max_status: u16,
    /// The body must contain this text (http).
    #[arg(long)]
    pub body_contains: Option<String>,
    /// `PATH=VALUE`: the JSON body's field at PATH (dotted) must equal VALUE (http).
    #[arg(long)]
    pub json_field: Option<String>,
    /// `NAME:VALUE` request header, not secret (http; repeatable).
    #[arg(long = "header")]
    pub headers: Vec<String>,
    /// `NAME=FILE`: a request header whose value is read from FILE, e.g. a
    /// token (http; repeatable).
    #[arg(long = "header-file")]
    pub header_files: Vec<String>,
    /// PEM CA bundle to trust besides the system roots (http).
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// Service name for grpc.health.v1 (default: the whole server).
    #[arg(long)]
    pub service: Option<String>,
    /// Connect with TLS (grpc).
    #[arg(long)]
    pub tls: bool,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// This runner's vantage (a cluster or region name); observations are
    /// written under it.
    #[arg(long, env = "VERTICE_VANTAGE")]
    pub vantage: String,
    /// Watch only this namespace (default: all).
    #[arg(long, env = "VERTICE_WATCH_NAMESPACE")]
    pub namespace: Option<String>,
    /// Address of /healthz, /readyz and /metrics.
    #[arg(long, env = "VERTICE_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// Probes in flight at once across all failovers.
    #[arg(long, env = "VERTICE_MAX_CONCURRENT_PROBES", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub max_concurrent_probes: u32,
    /// Probes one namespace may have in flight at once, out of
    /// --max-concurrent-probes, so that no namespace starves the others.
    #[arg(long, env = "VERTICE_MAX_PROBES_PER_NAMESPACE", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub max_probes_per_namespace: u32,
    /// Longest a probe may take, whatever its check's timeoutSeconds
    /// (e.g. 10s, 1m).
    #[arg(long, env = "VERTICE_MAX_PROBE_TIMEOUT", default_value = "10s", value_parser = parse_max_timeout)]
    pub max_probe_timeout: Duration,
    /// HTTP bodies longer than this fail their check (read only for
    /// bodyContains and jsonField).
    #[arg(long, env = "VERTICE_MAX_PROBE_BODY_BYTES", default_value_t = 65536, value_parser = clap::value_parser!(u64).range(1..=16_777_216))]
    pub max_probe_body_bytes: u64,
    /// Networks probes may connect to (comma-separated CIDRs), checked on
    /// every resolved address.
    #[arg(long, env = "VERTICE_PROBE_ALLOWED_CIDRS", default_value = address_policy::DEFAULT_ALLOWED)]
    pub probe_allowed_cidrs: String,
    /// Networks probes never connect to, even if allowed (default: link-local,
    /// where cloud metadata lives, and the unspecified addresses).
    #[arg(long, env = "VERTICE_PROBE_DENIED_CIDRS", default_value = address_policy::DEFAULT_DENIED)]
    pub probe_denied_cidrs: String,
    /// Which Secrets a check may name: `labelled` (only Secrets labelled
    /// vertice.io/allow-reference=true) or `any` (every Secret of the
    /// failover's namespace).
    #[arg(long, env = "VERTICE_SECRET_REFERENCE_POLICY", default_value = "labelled", value_parser = parse_secret_policy)]
    pub secret_reference_policy: SecretReferencePolicy,
}

fn parse_max_timeout(text: &str) -> Result<Duration, String> {
    vertice_crds::duration::parse(text)
        .ok()
        .and_then(|d| d.to_std().ok())
        .filter(|d| *d >= Duration::from_secs(1))
        .ok_or_else(|| format!("{text:?} is not a timeout of at least 1s; write e.g. 10s or 1m"))
}

fn parse_secret_policy(text: &str) -> Result<SecretReferencePolicy, String> {
    SecretReferencePolicy::parse(text)
}

impl ServeArgs {
    /// The runner's settings; errors name the flag.
    pub fn settings(&self) -> Result<ServeSettings, String> {
        validate_vantage(&self.vantage).map_err(|e| format!("--vantage (VERTICE_VANTAGE): {e}"))?;
        Ok(ServeSettings {
            vantage: self.vantage.clone(),
            namespace: self.namespace.clone(),
            listen: self.listen,
            max_concurrent_probes: self.max_concurrent_probes as usize,
            max_probes_per_namespace: self.max_probes_per_namespace as usize,
            limits: self.limits()?,
            secret_policy: self.secret_reference_policy,
        })
    }

    /// The probe limits these flags set; errors name the flag.
    pub fn limits(&self) -> Result<Limits, String> {
        Ok(Limits {
            addresses: std::sync::Arc::new(AddressPolicy::parse(
                &self.probe_allowed_cidrs,
                &self.probe_denied_cidrs,
            )?),
            max_body_bytes: usize::try_from(self.max_probe_body_bytes).unwrap_or(usize::MAX),
            max_timeout: self.max_probe_timeout,
        })
    }
}

impl ValueEnum for Output {
    fn value_variants<'a>() -> &'a [Self] {
        &[Output::Text, Output::Json]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(match self {
            Output::Text => "text",
            Output::Json => "json",
        }))
    }
}

/// The CRD check and replica these flags describe.
pub fn describe(args: &CheckArgs) -> Result<(HealthCheck, FailoverReplica), String> {
    let role = match args.require_role {
        Role::Any => RequiredRole::Any,
        Role::Primary => RequiredRole::Primary,
        Role::Replica => RequiredRole::Replica,
    };
    let password = |env: &str| {
        let selector = match &args.password_file {
            Some(path) => SecretKeySelector::new(FROM_FILE, path.display().to_string()),
            None => SecretKeySelector::new(FROM_ENV, env),
        };
        (args.password_file.is_some() || std::env::var_os(env).is_some()).then_some(selector)
    };
    let (check, address) = match args.kind {
        Kind::Postgres => (
            json!({"postgres": {"user": args.user, "database": args.database,
                "passwordSecretRef": password("PGPASSWORD"), "requireRole": role,
                "maxReplicationLagSeconds": args.max_lag_seconds, "sslMode": args.ssl_mode}}),
            need_address(args)?,
        ),
        Kind::Redis => (
            json!({"redis": {"username": args.user, "passwordSecretRef": password("REDIS_PASSWORD"),
                "requireRole": role, "requireReplicaLink": !args.ignore_replica_link}}),
            need_address(args)?,
        ),
        Kind::Tcp => (json!({"tcp": {}}), need_address(args)?),
        Kind::Grpc => (
            json!({"grpc": {"service": args.service, "tls": args.tls}}),
            need_address(args)?,
        ),
        Kind::Http => http_check(args)?,
    };
    let mut check = check;
    check["timeoutSeconds"] = json!(args.timeout);
    strip_nulls(&mut check);
    let check: HealthCheck =
        serde_json::from_value(check).map_err(|e| format!("check flags: {e}"))?;
    if args.min_status > args.max_status {
        return Err("--min-status must not exceed --max-status".into());
    }
    let host = address
        .rsplit_once(':')
        .map(|(h, _)| h.to_string())
        .unwrap_or_else(|| address.clone());
    let replica = FailoverReplica {
        name: address.clone(),
        host,
        subset: None,
        probe_address: Some(address),
        priority: 0,
    };
    Ok((check, replica))
}

/// The http check `--url` and its companions describe, and its address.
fn http_check(args: &CheckArgs) -> Result<(serde_json::Value, String), String> {
    let url = args
        .url
        .as_ref()
        .ok_or("--url is required for an http check (e.g. --url http://10.0.0.5:8080/healthz)")?;
    let https = match url.scheme() {
        "https" => true,
        "http" => false,
        other => return Err(format!("--url: scheme {other:?} is not http or https")),
    };
    let host = url.host_str().ok_or("--url has no host")?;
    let port = url.port_or_known_default().ok_or("--url has no port")?;
    let mut path = url.path().to_string();
    if let Some(q) = url.query() {
        path = format!("{path}?{q}");
    }
    let mut headers = Vec::new();
    for h in &args.headers {
        let (name, value) = h.split_once(':').ok_or_else(|| {
            format!("--header {h:?} is not NAME:VALUE (put secret values in --header-file)")
        })?;
        headers.push(json!({"name": name.trim(), "value": value.trim()}));
    }
    for h in &args.header_files {
        let (name, file) = h
            .split_once('=')
            .ok_or_else(|| format!("--header-file {h:?} is not NAME=FILE"))?;
        headers.push(json!({"name": name.trim(), "valueFrom": {"name": FROM_FILE, "key": file}}));
    }
    let json_field = match &args.json_field {
        Some(f) => {
            let (path, equals) = f
                .split_once('=')
                .ok_or_else(|| format!("--json-field {f:?} is not PATH=VALUE"))?;
            Some(json!({"path": path, "equals": equals}))
        }
        None => None,
    };
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    Ok((
        json!({"http": {"https": https, "path": path, "minStatus": args.min_status,
            "maxStatus": args.max_status, "bodyContains": args.body_contains,
            "jsonField": json_field, "headers": headers,
            "caBundleSecretRef": args.ca_file.as_ref().map(|p| json!({"name": FROM_FILE, "key": p.display().to_string()}))}}),
        format!("{host}:{port}"),
    ))
}

fn need_address(args: &CheckArgs) -> Result<String, String> {
    let address = args
        .address
        .clone()
        .ok_or("--address host:port is required for this check")?;
    resolve::split_host_port(&address).map_err(|e| format!("--address: {e}"))?;
    Ok(address)
}

fn strip_nulls(value: &mut serde_json::Value) {
    if let serde_json::Value::Object(map) = value {
        map.retain(|_, v| !v.is_null());
        map.values_mut().for_each(strip_nulls);
    } else if let serde_json::Value::Array(items) = value {
        items.iter_mut().for_each(strip_nulls);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Serve {
        #[command(flatten)]
        args: ServeArgs,
    }

    fn serve(extra: &[&str]) -> Result<ServeArgs, String> {
        let mut argv = vec!["serve", "--vantage", "eu"];
        argv.extend_from_slice(extra);
        Serve::try_parse_from(argv)
            .map(|s| s.args)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn runner_limits_default_to_the_safe_values() {
        let args = serve(&[]).expect("defaults");
        assert_eq!(args.max_probes_per_namespace, 16);
        assert_eq!(args.max_probe_timeout, Duration::from_secs(10));
        assert_eq!(
            args.secret_reference_policy,
            SecretReferencePolicy::Labelled
        );
        assert_eq!(args.limits().expect("limits"), Limits::default());
    }

    #[test]
    fn runner_limit_flags_parse_and_errors_name_the_flag() {
        let args = serve(&[
            "--max-probe-timeout",
            "1m",
            "--secret-reference-policy",
            "any",
            "--probe-denied-cidrs",
            "",
            "--max-probe-body-bytes",
            "1024",
        ])
        .expect("flags");
        assert_eq!(args.max_probe_timeout, Duration::from_secs(60));
        assert_eq!(args.secret_reference_policy, SecretReferencePolicy::Any);
        let limits = args.limits().expect("limits");
        assert_eq!(limits.max_body_bytes, 1024);
        assert!(limits.addresses.check([169, 254, 169, 254].into()).is_ok());

        let e = serve(&["--max-probe-timeout", "0s"]).expect_err("too short");
        assert!(e.contains("--max-probe-timeout"), "{e}");
        let e = serve(&["--secret-reference-policy", "all"]).expect_err("unknown");
        assert!(e.contains("--secret-reference-policy"), "{e}");
        let bad = serve(&["--probe-allowed-cidrs", "10.0.0.0/40"]).expect("parsed later");
        let e = bad.limits().expect_err("bad CIDR");
        assert!(e.starts_with("--probe-allowed-cidrs:"), "{e}");
    }
}
