//! Command line of the controller binary; every flag also reads `VERTICE_…`.

use std::net::SocketAddr;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use vertice_crds::tenancy::{CrossNamespaceAllowance, SecretReferencePolicy};

#[derive(Debug, Parser)]
#[command(
    name = "vertice-controller",
    version,
    about = "Reconciles VerticeBackups into CronJobs and VerticeScalers into /scale changes",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: Config,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Tools for VerticeScalers.
    #[command(subcommand)]
    Scaler(ScalerCommand),
}

#[derive(Debug, Subcommand)]
pub enum ScalerCommand {
    /// Print what the scaler would decide for a case file, with no cluster.
    Simulate {
        /// YAML case: now, scaler, scale, pods, podMetrics, prometheus, history;
        /// `-` reads it from standard input.
        #[arg(long)]
        file: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct Config {
    /// Agent image for backups that do not name one.
    /// Required to run the controller (not for `scaler simulate`).
    #[arg(long, env = "VERTICE_AGENT_IMAGE")]
    pub agent_image: Option<String>,

    /// Pushgateway the agent pushes to when a backup names none.
    #[arg(long, env = "VERTICE_PUSHGATEWAY_URL")]
    pub pushgateway_url: Option<String>,

    /// Watch only this namespace (default: all).
    #[arg(long, env = "VERTICE_WATCH_NAMESPACE")]
    pub watch_namespace: Option<String>,

    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = "VERTICE_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,

    /// Elect a leader through a Lease (turn off only with a single replica).
    #[arg(long, env = "VERTICE_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,

    #[arg(long, env = "VERTICE_LEASE_NAME", default_value = "vertice-controller")]
    pub lease_name: String,

    /// Namespace of the Lease (the controller's own, from the downward API).
    #[arg(long, env = "POD_NAMESPACE", default_value = "vertice-system")]
    pub lease_namespace: String,

    /// This replica's identity in the election (its pod name).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,

    /// Seconds the leader lease lasts without renewal: 2 to 3600.
    #[arg(long, env = "VERTICE_LEASE_SECONDS", default_value_t = 15,
          value_parser = clap::value_parser!(u64).range(2..=3600))]
    pub lease_seconds: u64,

    #[arg(long, env = "VERTICE_LOG_FORMAT", default_value = "json")]
    pub log_format: LogFormat,

    #[arg(long, env = "VERTICE_LOG", default_value = "info")]
    pub log_level: String,

    /// How often every VerticeScaler is evaluated: 1s to 10m (default 15s).
    #[arg(long, env = "VERTICE_SCALER_POLL_INTERVAL", default_value = "15s", value_parser = poll_interval)]
    pub scaler_poll_interval: Duration,

    #[command(flatten)]
    pub tenancy: TenancyArgs,
}

/// What a namespace tenant may make the controller do: the administrator's
/// choices (chart `tenancy.*`). See docs/ARCHITECTURE.md "Threat model".
#[derive(Debug, Args, Clone)]
pub struct TenancyArgs {
    /// Which Secrets a resource may name: `labelled` (only Secrets labelled
    /// vertice.io/allow-reference=true) or `any`.
    #[arg(long, env = "VERTICE_SECRET_REFERENCE_POLICY", default_value = "labelled", value_parser = SecretReferencePolicy::parse)]
    pub secret_reference_policy: SecretReferencePolicy,

    /// Cross-namespace references allowed, as `from:to` pairs separated by
    /// commas (a VerticeFailover in `from` may steer a VirtualService in `to`).
    /// None by default.
    #[arg(long, env = "VERTICE_ALLOW_CROSS_NAMESPACE", default_value = "", value_parser = CrossNamespaceAllowance::parse)]
    pub allow_cross_namespace: CrossNamespaceAllowance,

    /// Images a VerticeBackup's `spec.pod.image` may name besides the
    /// default agent image (comma-separated, exact references). None by default.
    #[arg(long, env = "VERTICE_ALLOWED_AGENT_IMAGES", value_delimiter = ',')]
    pub allowed_agent_images: Vec<String>,

    /// ServiceAccounts a backup or drill pod may run as
    /// (`spec.pod.serviceAccountName`), comma-separated names, the same in
    /// every namespace. None by default: pods run as `default` with no token.
    #[arg(long, env = "VERTICE_ALLOWED_SERVICE_ACCOUNTS", value_delimiter = ',')]
    pub allowed_service_accounts: Vec<String>,

    /// PriorityClasses a backup pod may use (`spec.pod.priorityClassName`),
    /// comma-separated. None by default.
    #[arg(long, env = "VERTICE_ALLOWED_PRIORITY_CLASSES", value_delimiter = ',')]
    pub allowed_priority_classes: Vec<String>,

    /// Label and annotation key prefixes (the part before `/`) a backup's
    /// `spec.pod.labels` / `.annotations` may use, comma-separated; keys
    /// without a prefix are always allowed. Prefixed keys can choose an
    /// identity (kube2iam's `iam.amazonaws.com/role`, Vault's agent
    /// injector; Azure's workload identity webhook projects a token for the
    /// pod's ServiceAccount, `default` included), so only these are allowed.
    /// None by default.
    #[arg(
        long,
        env = "VERTICE_ALLOWED_POD_METADATA_PREFIXES",
        value_delimiter = ',',
        default_value = "azure.workload.identity"
    )]
    pub allowed_pod_metadata_prefixes: Vec<String>,

    /// Prometheus servers a VerticeScaler may query (base URLs, comma-
    /// separated; a scaler's `spec.prometheus.url` must have the same
    /// scheme, host and port and a path under one). Empty: any server.
    #[arg(long, env = "VERTICE_ALLOWED_PROMETHEUS_URLS", value_delimiter = ',')]
    pub allowed_prometheus_urls: Vec<String>,

    /// Largest answer read from Prometheus or the metrics API, in bytes; a
    /// larger one is an error of that scaler's metric only.
    #[arg(long, env = "VERTICE_MAX_METRIC_RESPONSE_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub max_metric_response_bytes: usize,

    /// Longest a Prometheus query may take (1s to 5s; the scaler's own limit is 5s).
    #[arg(long, env = "VERTICE_MAX_METRIC_QUERY_TIMEOUT", default_value = "5s", value_parser = query_timeout)]
    pub max_metric_query_timeout: Duration,
}

impl Default for TenancyArgs {
    /// The defaults of the flags: what a cluster gets when the admin sets nothing.
    fn default() -> Self {
        Self {
            secret_reference_policy: SecretReferencePolicy::Labelled,
            allow_cross_namespace: CrossNamespaceAllowance::default(),
            allowed_agent_images: Vec::new(),
            allowed_service_accounts: Vec::new(),
            allowed_priority_classes: Vec::new(),
            allowed_pod_metadata_prefixes: Vec::new(),
            allowed_prometheus_urls: Vec::new(),
            max_metric_response_bytes: 4 * 1024 * 1024,
            max_metric_query_timeout: Duration::from_secs(5),
        }
    }
}

fn query_timeout(text: &str) -> Result<Duration, String> {
    let d = vertice_crds::duration::parse(text)
        .map_err(|e| format!("{e}; use a duration such as 10s"))?;
    let d = d
        .to_std()
        .map_err(|_| "the timeout must be positive".to_string())?;
    if d < Duration::from_secs(1) || d > Duration::from_secs(5) {
        return Err("the timeout must be between 1s and 5s".into());
    }
    Ok(d)
}

fn poll_interval(text: &str) -> Result<Duration, String> {
    let d = vertice_crds::duration::parse(text)
        .map_err(|e| format!("{e}; use a duration such as 15s or 1m"))?;
    let d = d
        .to_std()
        .map_err(|_| "the interval must be positive".to_string())?;
    if d < Duration::from_secs(1) || d > Duration::from_secs(600) {
        return Err("the interval must be between 1s and 10m".into());
    }
    Ok(d)
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(seconds: &str) -> Result<u64, clap::Error> {
        Cli::try_parse_from(["vertice-controller", "--lease-seconds", seconds])
            .map(|cli| cli.run.lease_seconds)
    }

    #[test]
    fn the_lease_has_a_range() {
        assert_eq!(lease("2").ok(), Some(2));
        assert_eq!(lease("3600").ok(), Some(3600));
        for bad in ["0", "1", "3601", "18446744073709551615"] {
            assert!(lease(bad).is_err(), "{bad}");
        }
        // The parser and the elector's clamp agree.
        assert_eq!(
            crate::leader::LEASE_SECONDS,
            2..=3600,
            "keep --lease-seconds' range in step"
        );
    }
}
