//! Command line of the controller binary; every flag also reads `VERTICE_…`.

use std::net::SocketAddr;

use clap::{Parser, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "vertice-controller",
    version,
    about = "Reconciles VerticeBackup resources into CronJobs running the Vertice agent"
)]
pub struct Config {
    /// Agent image for backups that do not name one.
    #[arg(long, env = "VERTICE_AGENT_IMAGE")]
    pub agent_image: String,

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

    #[arg(long, env = "VERTICE_LEASE_SECONDS", default_value_t = 15)]
    pub lease_seconds: u64,

    #[arg(long, env = "VERTICE_LOG_FORMAT", default_value = "json")]
    pub log_format: LogFormat,

    #[arg(long, env = "VERTICE_LOG", default_value = "info")]
    pub log_level: String,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}
