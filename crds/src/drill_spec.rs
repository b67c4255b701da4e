//! `VerticeBackup.spec.drill`: when and where the backup's restore drill
//! runs. The controller turns it into a second CronJob that runs
//! `vertice-agent drill`; the checks are [`crate::drill::DrillChecks`].

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::SecretKeySelector;
use crate::cron_rules;
use crate::drill::DrillChecks;

/// A scheduled restore drill of this backup's newest (or a chosen) backup.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DrillSpec {
    /// When drills run.
    pub schedule: DrillSchedule,
    /// Stop scheduling drills (backups go on).
    #[serde(default)]
    pub suspend: bool,
    /// Which backup: `latest` (default), a backup id, or `before:RFC3339`.
    #[serde(default = "default_backup")]
    #[schemars(length(min = 1, max = 100))]
    pub backup: String,
    /// How old the newest verified backup may get before the backup counts
    /// as unverified (condition, event, `vertice_backup_unverified`):
    /// `36h`, `8d` (default `8d`, a weekly drill and a day's grace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+[smhdw])+$"))]
    pub max_unverified_age: Option<crate::duration::SpecDuration>,
    /// Where a PostgreSQL backup is restored, or the Elasticsearch /
    /// OpenSearch cluster an Elasticsearch drill restores on (default: the
    /// backed-up cluster) into throwaway indices
    /// `vertice-drill-<backup id>-<index>`. Redis and Vault drills restore
    /// into a throwaway target inside the drill pod; Kafka drills into
    /// scratch topics `vertice-drill-<backup id>-<topic>` on the backed-up
    /// cluster. Drills always delete what they made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<DrillTarget>,
    /// The age identity that decrypts the backups (needed when
    /// `spec.encryption` is set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_secret_ref: Option<SecretKeySelector>,
    /// What is checked after the restore.
    #[serde(default)]
    pub checks: DrillChecks,
    /// Size of the pod's scratch space (`/tmp`), where a Redis drill writes
    /// the RDB it loads and an ephemeral PostgreSQL keeps its data (default
    /// `256Mi`, `8Gi` with `target.ephemeral`; give the restored dataset's
    /// size and more).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(Ki|Mi|Gi|Ti)$"))]
    pub scratch_size: Option<String>,
}

fn default_backup() -> String {
    "latest".into()
}

/// The drill's CronJob schedule.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct DrillSchedule {
    /// Five fields as a Kubernetes CronJob reads them or a macro
    /// (`@weekly`…): the same dialect as `spec.schedule.cron`.
    #[schemars(length(min = 1, max = 200))]
    #[x_kube(
        validation = cron_rules::no_time_zone(),
        validation = cron_rules::no_every(),
        validation = cron_rules::known_macro(),
        validation = cron_rules::five_fields(),
        validation = cron_rules::field_values()
    )]
    pub cron: String,
    /// IANA time zone the schedule is read in (default `Etc/UTC`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
}

/// Where a drill restores. PostgreSQL: a server of yours (`postgres`), or
/// `ephemeral: {}`, a throwaway server the drill starts inside its own pod
/// (the agent image carries the server; give `scratchSize` room for the
/// restored database). Elasticsearch / OpenSearch: another cluster
/// (`elasticsearch`; default: the backed-up cluster).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new("(has(self.postgres) ? 1 : 0) + (has(self.ephemeral) ? 1 : 0) + (has(self.elasticsearch) ? 1 : 0) == 1").message("give exactly one of drill.target.postgres (a server of yours), drill.target.ephemeral (a server inside the drill pod) or drill.target.elasticsearch (a cluster of yours)"))]
#[serde(rename_all = "camelCase")]
pub struct DrillTarget {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<DrillPostgresTarget>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ephemeral: Option<EphemeralPostgresTarget>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elasticsearch: Option<DrillElasticsearchTarget>,
}

/// An Elasticsearch or OpenSearch cluster of yours where the drill restores
/// into throwaway indices `vertice-drill-<backup id>-<index>` and always
/// deletes them, instead of the backed-up cluster: drills then put no load
/// on production. The user (or API key) needs to create, write, read and
/// delete indices `vertice-drill-*`; for a snapshot-mode backup the
/// cluster must reach the repository (the drill registers it read-only
/// when the cluster does not have it, and removes it after).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new("has(self.username) == has(self.passwordSecretRef)").message("set drill.target.elasticsearch.username and passwordSecretRef together: basic auth needs the user and its password"))]
#[x_kube(validation = Rule::new("!(has(self.username) && has(self.apiKeySecretRef))").message("drill.target.elasticsearch: use basic auth (username and passwordSecretRef) or an API key (apiKeySecretRef), not both"))]
#[serde(rename_all = "camelCase")]
pub struct DrillElasticsearchTarget {
    /// The cluster's address, `http(s)://HOST[:PORT][/PATH]`; no user,
    /// password or query.
    #[schemars(
        length(min = 1, max = 2048),
        regex(pattern = r"^https?://[^/?#@\s]+(/[^?#@\s]*)?$")
    )]
    pub url: String,
    /// The vendor the cluster must be (`elasticsearch`, `opensearch`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flavour: Option<crate::backup::ElasticsearchFlavour>,
    /// Basic auth as this user, its password from `passwordSecretRef`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret_ref: Option<SecretKeySelector>,
    /// An API key instead of basic auth (`base64(id:api_key)`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_secret_ref: Option<SecretKeySelector>,
    /// CA certificates (PEM) for an `https://` URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretKeySelector>,
}

impl DrillElasticsearchTarget {
    /// The connection as a backup target's, for wiring shared with it.
    pub fn as_target(&self) -> crate::backup::ElasticsearchTarget {
        crate::backup::ElasticsearchTarget {
            url: self.url.clone(),
            flavour: self.flavour,
            username: self.username.clone(),
            password_secret_ref: self.password_secret_ref.clone(),
            api_key_secret_ref: self.api_key_secret_ref.clone(),
            ca_secret_ref: self.ca_secret_ref.clone(),
            indices: Vec::new(),
            mode: None,
            repository: None,
            repository_client: None,
            repository_settings: None,
        }
    }
}

/// A PostgreSQL server started inside the drill pod on a private socket,
/// with no credentials, and removed with the pod's scratch space. Nothing
/// to configure.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct EphemeralPostgresTarget {}

/// A PostgreSQL server where the drill creates a scratch database, restores
/// into it and always drops it. Give it a server of its own, or at least a
/// user that may create databases and owns nothing else.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DrillPostgresTarget {
    #[schemars(length(min = 1, max = 253))]
    pub host: String,
    #[serde(default = "default_postgres_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: u16,
    /// The database the drill connects to in order to create and drop its
    /// scratch databases (default `postgres`).
    #[serde(default = "default_maintenance_database")]
    #[schemars(length(min = 1, max = 63))]
    pub database: String,
    /// A user with CREATEDB.
    #[schemars(length(min = 1, max = 63))]
    pub user: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret_ref: Option<SecretKeySelector>,
    /// `disable`, `prefer` or `require`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^(disable|prefer|require)$"))]
    pub ssl_mode: Option<String>,
    /// The drill creates `<prefix><time>_<random>` and drops only databases
    /// of exactly that shape (default `vertice_drill_`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z][a-z0-9_]{0,38}_$"))]
    pub scratch_prefix: Option<String>,
}

fn default_postgres_port() -> u16 {
    5432
}

fn default_maintenance_database() -> String {
    "postgres".into()
}

/// `maxUnverifiedAge` when none is given.
pub const DEFAULT_MAX_UNVERIFIED_AGE: &str = "8d";
