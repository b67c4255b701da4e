//! `VerticeBackup`: what to back up, where to, when, and what to do around it.
//! The controller turns it into a CronJob; the agent in that CronJob's pods
//! reads the hook and notification parts of the very same types.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ResourceRequirements, Toleration};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::agent_env;
use crate::backup_status::VerticeBackupStatus;
use crate::common::SecretKeySelector;
use crate::compression::Compression;
use crate::cron_rules;
use crate::drill_spec::DrillSpec;
use crate::duration::SpecDuration;
use crate::hooks::Hooks;
use crate::notifications::Notifications;

/// A scheduled backup of one PostgreSQL database, Redis instance, Vault
/// cluster, Kafka cluster or Elasticsearch / OpenSearch cluster into an
/// object store, run by the Vertice agent in a CronJob.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "vertice.io",
    version = "v1alpha1",
    kind = "VerticeBackup",
    plural = "verticebackups",
    namespaced,
    status = "VerticeBackupStatus",
    shortname = "vbk",
    shortname = "vb",
    shortname = "vbackup",
    category = "vertice",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Schedule","type":"string","jsonPath":".spec.schedule.cron","priority":1}"#,
    printcolumn = r#"{"name":"Last Success","type":"date","jsonPath":".status.lastSuccessfulBackup.finishedAt"}"#,
    // The age of the newest successful backup is what a restore now would lose.
    printcolumn = r#"{"name":"RPO","type":"date","jsonPath":".status.lastSuccessfulBackup.finishedAt","priority":1}"#,
    printcolumn = r#"{"name":"Verified","type":"date","jsonPath":".status.lastVerifiedBackup.drilledAt"}"#,
    printcolumn = r#"{"name":"Worst RTO","type":"string","jsonPath":".status.worstRecentRto"}"#,
    // A date column shows a future time as <invalid>: the next run is a string.
    printcolumn = r#"{"name":"Next Backup","type":"string","jsonPath":".status.nextBackup"}"#,
    printcolumn = r#"{"name":"Size","type":"integer","jsonPath":".status.lastSuccessfulBackup.storedBytes","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(validation = Rule::new("(!has(self.target.vault) && !has(self.target.kafka) && !has(self.target.elasticsearch)) || !has(self.hooks) || ((!has(self.hooks.pre) || self.hooks.pre.all(h, !has(h.sql))) && (!has(self.hooks.post) || self.hooks.post.all(h, !has(h.sql))))").message("sql hooks run on PostgreSQL and Redis targets; use an http hook with a Vault, Kafka or Elasticsearch target"))]
#[x_kube(validation = Rule::new("!has(self.drill) || !has(self.target.postgres) || has(self.drill.target)").message("drill.target: a PostgreSQL drill restores into drill.target.postgres (a server of yours) or drill.target.ephemeral (a server inside the drill pod)"))]
#[x_kube(validation = Rule::new("!has(self.drill) || !has(self.drill.target) || (has(self.target.postgres) && !has(self.drill.target.elasticsearch)) || (has(self.target.elasticsearch) && has(self.drill.target.elasticsearch))").message("drill.target is for PostgreSQL backups (postgres or ephemeral) and Elasticsearch backups (elasticsearch, another cluster; default the backed-up one); Redis and Vault drills restore inside the drill pod, Kafka drills into scratch topics"))]
#[x_kube(validation = Rule::new("!has(self.drill) || !has(self.encryption) || has(self.drill.identitySecretRef)").message("drill.identitySecretRef: an encrypted backup is drilled with the age identity that decrypts it"))]
#[serde(rename_all = "camelCase")]
pub struct VerticeBackupSpec {
    /// What is backed up.
    pub target: BackupTarget,
    /// When backups run and when a missing one counts as overdue.
    pub schedule: Schedule,
    /// Where backups are stored.
    pub store: StoreSpec,
    /// How artifacts are compressed (default zstd level 1).
    #[serde(default)]
    pub compression: CompressionSpec,
    /// Encrypt every artifact to these age recipients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<EncryptionSpec>,
    /// Which backups to keep; older ones are pruned after each successful backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<RetentionSpec>,
    /// Statements and requests run before and after each backup.
    #[serde(default, skip_serializing_if = "Hooks::is_empty")]
    pub hooks: Hooks,
    /// Who hears about failed, recovered and (optionally) successful backups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notifications: Option<Notifications>,
    /// Where the agent pushes its metrics (overrides the controller's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<MetricsSpec>,
    /// Stop scheduling backups; running ones finish.
    #[serde(default)]
    pub suspend: bool,
    /// Limits of each backup Job.
    #[serde(default)]
    pub job: JobSettings,
    /// Settings of the backup pod.
    #[serde(default)]
    pub pod: PodSettings,
    /// A scheduled restore drill proving the backups restore; runs in its
    /// own CronJob with the same job and pod settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drill: Option<DrillSpec>,
}

/// Exactly one of `postgres`, `redis`, `vault`, `kafka` or `elasticsearch`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new("[has(self.postgres), has(self.redis), has(self.vault), has(self.kafka), has(self.elasticsearch)].filter(x, x).size() == 1").message("set exactly one of target.postgres, target.redis, target.vault, target.kafka, target.elasticsearch"))]
#[serde(rename_all = "camelCase")]
pub struct BackupTarget {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<PostgresTarget>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<RedisTarget>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault: Option<VaultTarget>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka: Option<KafkaTarget>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elasticsearch: Option<ElasticsearchTarget>,
}

/// One PostgreSQL database, dumped with `pg_dump --format=custom`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PostgresTarget {
    /// Host name, usually a Service (`db.prod.svc`).
    #[schemars(length(min = 1, max = 253))]
    pub host: String,
    #[serde(default = "default_postgres_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: u16,
    #[schemars(length(min = 1, max = 63))]
    pub database: String,
    #[schemars(length(min = 1, max = 63))]
    pub user: String,
    /// The user's password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret_ref: Option<SecretKeySelector>,
    /// libpq `sslmode` (disable, allow, prefer, require, verify-ca, verify-full).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^(disable|allow|prefer|require|verify-ca|verify-full)$"))]
    pub ssl_mode: Option<String>,
    /// Extra pg_dump options such as `--exclude-table=audit.*`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pg_dump_args: Vec<String>,
    /// Parallel workers for the backup (`--jobs`): one exported snapshot,
    /// each worker dumping tables or block ranges of a large table into its
    /// own part under it. Unset: the agent's default, `auto` — half the
    /// CPUs the backup pod may use (its CPU limit), 1 to 4, for a database
    /// of 1 GiB or more; else 1, one pg_dump stream. The drill CronJob
    /// restores with as many sessions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 32))]
    pub jobs: Option<u32>,
}

fn default_postgres_port() -> u16 {
    5432
}

/// One Redis instance, copied over the replication protocol.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RedisTarget {
    #[schemars(length(min = 1, max = 253))]
    pub host: String,
    #[serde(default = "default_redis_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: u16,
    /// ACL user (default: the `default` user).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret_ref: Option<SecretKeySelector>,
}

fn default_redis_port() -> u16 {
    6379
}

/// A Vault or OpenBao cluster on integrated (raft) storage.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new("!(has(self.tokenSecretRef) && has(self.kubernetesAuth))").message("set at most one of vault.tokenSecretRef and vault.kubernetesAuth"))]
#[serde(rename_all = "camelCase")]
pub struct VaultTarget {
    /// `https://vault.vault.svc:8200`.
    #[schemars(regex(pattern = r"^https?://[^/?#@]+/?$"))]
    pub address: String,
    /// A token allowed to read `sys/storage/raft/snapshot`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_secret_ref: Option<SecretKeySelector>,
    /// Log in with the pod's service-account token instead of a stored token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes_auth: Option<VaultKubernetesAuth>,
    /// CA certificate (PEM) that signed the server's certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert_secret_ref: Option<SecretKeySelector>,
    /// Vault Enterprise namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VaultKubernetesAuth {
    /// The Vault role bound to the backup pod's service account.
    #[schemars(length(min = 1))]
    pub role: String,
    /// Mount path of the Kubernetes auth method.
    #[serde(default = "default_vault_k8s_mount")]
    pub mount: String,
}

fn default_vault_k8s_mount() -> String {
    "kubernetes".into()
}

/// A Kafka cluster: the records of the chosen topics with their
/// configurations, and the committed offsets of the chosen consumer groups.
/// A drill restores into scratch topics `vertice-drill-<backup id>-<topic>`
/// on this same cluster, with the same credentials, and always deletes them:
/// for a drill the user also needs every operation on topics prefixed
/// `vertice-drill-`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KafkaTarget {
    /// Brokers the agent connects to first, each `HOST:PORT`
    /// (`kafka-0.kafka.svc:9092`, an IPv6 address in brackets:
    /// `[fd00::1]:9092`); it learns the rest of the cluster from them.
    #[schemars(
        length(min = 1, max = 32),
        inner(regex(pattern = r"^([A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\]):[1-9][0-9]{0,4}$"))
    )]
    pub bootstrap_servers: Vec<String>,
    /// Topics backed up by name; each must exist. With neither `topics` nor
    /// `topicRegex`, every topic except Kafka's internal ones.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(regex(pattern = r"^[A-Za-z0-9._-]{1,249}$")))]
    pub topics: Vec<String>,
    /// Also back up every topic whose whole name matches this regular
    /// expression (`orders\..*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub topic_regex: Option<String>,
    /// Also back up Kafka's internal topics (`__consumer_offsets`,
    /// `__transaction_state`, …), which are otherwise left out.
    #[serde(default)]
    pub include_internal: bool,
    /// Consumer groups whose committed offsets are backed up: a regular
    /// expression on the whole group id (`billing-.*`). Default: every group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub groups: Option<String>,
    /// TLS to the brokers: the CA that signed their certificates and, for
    /// mutual TLS, a client certificate and its key, each a key of a Secret
    /// holding PEM. Without `tls`, the connection is plaintext.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<KafkaTls>,
    /// Log in with SASL as this user, its password from a Secret. Without
    /// `sasl`, the agent does not authenticate (or only with its TLS client
    /// certificate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sasl: Option<KafkaSasl>,
    /// Incremental backups: each run reads only what was produced since
    /// the newest backup of this VerticeBackup and names it as its parent;
    /// a restore replays the chain, and retention keeps every backup a kept
    /// one depends on. A run fails (and stores nothing) when records were
    /// deleted since the previous run or a topic was created again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incremental: Option<KafkaIncremental>,
}

/// How incremental Kafka backups chain.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KafkaIncremental {
    /// The most backups a chain holds, its full backup included; the next
    /// run is a full backup, so retention can let old chains go (default 7).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub full_every: Option<u32>,
}

/// TLS to the brokers.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new("has(self.certSecretRef) == has(self.keySecretRef)").message("set tls.certSecretRef and tls.keySecretRef together: a client certificate needs its key"))]
#[x_kube(validation = Rule::new("!has(self.enabled) || self.enabled || !(has(self.caSecretRef) || has(self.certSecretRef) || has(self.keySecretRef))").message("tls.enabled is false: remove tls.caSecretRef, tls.certSecretRef and tls.keySecretRef, or enable TLS"))]
#[serde(rename_all = "camelCase")]
pub struct KafkaTls {
    /// Connect with TLS (default true).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// CA certificates (PEM) that signed the brokers' certificates; default:
    /// the agent image's trusted CAs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretKeySelector>,
    /// Client certificate (PEM) for mutual TLS; needs `keySecretRef`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_secret_ref: Option<SecretKeySelector>,
    /// The client certificate's private key (PEM, unencrypted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_secret_ref: Option<SecretKeySelector>,
}

fn default_true() -> bool {
    true
}

/// SASL login to the brokers.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KafkaSasl {
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512` (default). PLAIN sends
    /// the password as it is: use it only with TLS.
    #[serde(default)]
    pub mechanism: KafkaSaslMechanism,
    /// The SASL user name.
    #[schemars(length(min = 1, max = 255), regex(pattern = r"^[^@:/,?]+$"))]
    pub username: String,
    /// The user's password.
    pub password_secret_ref: SecretKeySelector,
}

/// A SASL mechanism, by its Kafka name.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum KafkaSaslMechanism {
    #[serde(rename = "PLAIN")]
    Plain,
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    #[default]
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

impl KafkaSaslMechanism {
    /// The name as the CRD and the agent's `?mechanism=` spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// An Elasticsearch or OpenSearch cluster: the chosen indices (documents,
/// mappings and settings, each read from one consistent view) with the
/// cluster's templates and ingest pipelines. Without credentials the agent
/// does not authenticate. A drill restores into throwaway indices
/// `vertice-drill-<backup id>-<index>` on this same cluster, with the same
/// credentials, and always deletes them: for a drill the user (or API key)
/// also needs to create, write, read and delete indices `vertice-drill-*`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new("has(self.username) == has(self.passwordSecretRef)").message("set elasticsearch.username and elasticsearch.passwordSecretRef together: basic auth needs the user and its password"))]
#[x_kube(validation = Rule::new("!(has(self.username) && has(self.apiKeySecretRef))").message("elasticsearch: use basic auth (username and passwordSecretRef) or an API key (apiKeySecretRef), not both"))]
#[x_kube(validation = Rule::new("!has(self.repository) || (has(self.mode) && self.mode == 'snapshot')").message("elasticsearch: repository is for mode snapshot only (an export needs no repository)"))]
#[x_kube(validation = Rule::new("!(has(self.repositoryClient) || has(self.repositorySettings)) || (has(self.mode) && self.mode == 'snapshot' && !has(self.repository))").message("elasticsearch: repositoryClient and repositorySettings are for mode snapshot into the agent's own repository in the store (without repository)"))]
#[x_kube(validation = Rule::new("!has(self.repositorySettings) || (['location', 'bucket', 'base_path', 'container', 'client', 'compress', 'readonly', 'endpoint', 'region', 'protocol', 'path_style_access', 'access_key', 'secret_key', 'session_token', 'sas_token', 'shard_path_type'].all(k, !(k in self.repositorySettings)) && self.repositorySettings.all(k, !self.repositorySettings[k].contains(',')))").message("elasticsearch.repositorySettings: where the repository lies and how the nodes reach it (endpoint, credentials: the nodes' client), compress, readonly and shard_path_type are the agent's, and values hold no comma"))]
#[serde(rename_all = "camelCase")]
pub struct ElasticsearchTarget {
    /// The cluster's address, `http(s)://HOST[:PORT][/PATH]`
    /// (`https://logs-es-http.logging.svc:9200`; a path when the cluster
    /// sits behind a proxy under one). No user, password or query: the
    /// user goes in `username`, secrets in Secrets.
    #[schemars(
        length(min = 1, max = 2048),
        regex(pattern = r"^https?://[^/?#@\s]+(/[^?#@\s]*)?$")
    )]
    pub url: String,
    /// The vendor the cluster must be, `elasticsearch` or `opensearch`:
    /// a run against a cluster of the other one fails at once (exit 2),
    /// before anything is read or written. Default: whichever answers (the
    /// agent always detects vendor and version and speaks that dialect).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flavour: Option<ElasticsearchFlavour>,
    /// Basic auth as this user, its password from `passwordSecretRef`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub username: Option<String>,
    /// The password of `username`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret_ref: Option<SecretKeySelector>,
    /// An API key instead of basic auth: the encoded value
    /// `base64(id:api_key)` as Elasticsearch returns it, sent as
    /// `Authorization: ApiKey <value>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_secret_ref: Option<SecretKeySelector>,
    /// CA certificates (PEM) that signed the cluster's certificate, for an
    /// `https://` URL (e.g. ECK's `<cluster>-es-http-certs-public` Secret's
    /// `ca.crt`); default: the agent image's trusted CAs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretKeySelector>,
    /// Indices backed up, by name or wildcard pattern (`logs-*`); each must
    /// match an open index. Default: every open index that is neither
    /// hidden nor a system index.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 100),
        inner(regex(pattern = r"^[a-z0-9.*][a-z0-9._*+-]{0,254}$"))
    )]
    pub indices: Vec<String>,
    /// How the indices are backed up: `export` (default) reads every
    /// document through the cluster's search API into the backup (open
    /// NDJSON, compressed, encrypted and checksummed by the agent);
    /// `snapshot` has the cluster snapshot them (into the agent's own
    /// repository in the backup store, or into `repository`) and records
    /// the snapshot (its bytes are the repository's; retention deletes
    /// old snapshots through the cluster's API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<ElasticsearchMode>,
    /// `mode: snapshot`: a snapshot repository already registered on the
    /// cluster (fs, s3, gcs, azure, …) instead of the agent's own. The
    /// drill restores from it too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub repository: Option<String>,
    /// `mode: snapshot` without `repository`: the agent registers a
    /// repository at `<store prefix>/<namespace>/<name>/repository` in the
    /// backup store, and the nodes reach it through their configured
    /// client of this name (`s3.client.NAME.*` and the node's keystore,
    /// with the `repository-s3`, `-gcs` or `-azure` plugin). Default:
    /// `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9_-]{1,63}$"))]
    pub repository_client: Option<String>,
    /// More settings of the agent's own repository (`storage_class`,
    /// `chunk_size`, `server_side_encryption_type`, …, as the repository
    /// plugin reads them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "repository_settings_schema")]
    pub repository_settings: Option<std::collections::BTreeMap<String, String>>,
}

/// A small map of short strings: bounded, so its CEL rules stay cheap.
fn repository_settings_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "nullable": true,
        "maxProperties": 32,
        "additionalProperties": {"type": "string", "maxLength": 256},
    })
}

/// The vendor of a search cluster.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ElasticsearchFlavour {
    Elasticsearch,
    Opensearch,
}

impl ElasticsearchFlavour {
    pub fn as_str(self) -> &'static str {
        match self {
            ElasticsearchFlavour::Elasticsearch => "elasticsearch",
            ElasticsearchFlavour::Opensearch => "opensearch",
        }
    }
}

/// How an Elasticsearch / OpenSearch backup reads the indices: `export` or
/// `snapshot`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ElasticsearchMode {
    // Documents read through the search API (point in time or scroll).
    // No doc comment: schemars would turn a documented variant into a
    // `oneOf`, where a plain `enum` is what the CRD wants.
    #[default]
    Export,
    // The cluster's own snapshot, into the agent's repository in the store
    // or `repository`.
    Snapshot,
}

/// A Kubernetes CronJob schedule.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Schedule {
    /// Five fields as a Kubernetes CronJob reads them (minute 0-59, hour
    /// 0-23, day of month 1-31, month 1-12 or JAN-DEC, day of week 0-6 or
    /// SUN-SAT with Sunday 0; `*`, `?`, ranges `1-5`, steps `*/15`, lists
    /// `1,15`) or a macro: `@yearly`, `@annually`, `@monthly`, `@weekly`,
    /// `@daily`, `@midnight`, `@hourly`. No seconds, years, `L`, `W`, `#` or
    /// `@every`.
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
    /// How long after a scheduled time a successful backup may take before the
    /// backup counts as overdue: `45m`, `2h`, `1d` (default `1h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+[smhdw])+$"))]
    pub overdue_after: Option<SpecDuration>,
}

/// Exactly one of `s3`, `gcs`, `azure` or `file`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new("[has(self.s3), has(self.gcs), has(self.azure), has(self.file)].filter(x, x).size() == 1").message("set exactly one of store.s3, store.gcs, store.azure, store.file"))]
#[serde(rename_all = "camelCase")]
pub struct StoreSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Store>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gcs: Option<GcsStore>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure: Option<AzureStore>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileStore>,
}

/// Amazon S3 or an S3-compatible server.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct S3Store {
    #[schemars(length(min = 3, max = 63))]
    pub bucket: String,
    /// Key prefix inside the bucket.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub prefix: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Endpoint of an S3-compatible server (`https://minio.storage.svc:9000`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Path-style addressing (most S3-compatible servers need it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force_path_style: Option<bool>,
    /// Static keys from a Secret; omit for IRSA / EKS Pod Identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<S3Credentials>,
}

/// A Secret holding an access key pair.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct S3Credentials {
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,
    #[serde(default = "default_access_key_id_key")]
    pub access_key_id_key: String,
    #[serde(default = "default_secret_access_key_key")]
    pub secret_access_key_key: String,
}

fn default_access_key_id_key() -> String {
    "AWS_ACCESS_KEY_ID".into()
}

fn default_secret_access_key_key() -> String {
    "AWS_SECRET_ACCESS_KEY".into()
}

/// Google Cloud Storage.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GcsStore {
    #[schemars(length(min = 3, max = 222))]
    pub bucket: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub prefix: String,
    /// Endpoint of a GCS emulator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// A service-account JSON key; omit for GKE workload identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<SecretKeySelector>,
}

/// Azure Blob Storage.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new("[has(self.sasTokenSecretRef), has(self.accountKeySecretRef), has(self.connectionStringSecretRef)].filter(x, x).size() <= 1").message("set at most one of azure.sasTokenSecretRef, azure.accountKeySecretRef, azure.connectionStringSecretRef (none means workload identity)"))]
#[serde(rename_all = "camelCase")]
pub struct AzureStore {
    #[schemars(length(min = 3, max = 24))]
    pub account: String,
    #[schemars(length(min = 3, max = 63))]
    pub container: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub prefix: String,
    /// Blob endpoint of an emulator or sovereign cloud.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sas_token_secret_ref: Option<SecretKeySelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_key_secret_ref: Option<SecretKeySelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_string_secret_ref: Option<SecretKeySelector>,
}

/// A directory on a PersistentVolumeClaim.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FileStore {
    #[schemars(length(min = 1, max = 253))]
    pub claim_name: String,
    /// Directory inside the volume.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(regex(pattern = r"^[^.][^:]*$"))]
    pub path: String,
}

/// Compression algorithm and level.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[x_kube(validation = Rule::new("!has(self.level) || (self.algorithm == 'gzip' ? self.level <= 9 : self.algorithm != 'none')").message("compression.level: zstd takes 1-19, gzip 1-9, none takes no level"))]
#[serde(rename_all = "camelCase")]
pub struct CompressionSpec {
    #[serde(default)]
    pub algorithm: Compression,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 19))]
    pub level: Option<i32>,
}

/// age encryption of every artifact.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EncryptionSpec {
    /// age X25519 public keys (`age1…`). Restores need a matching identity.
    #[schemars(
        length(min = 1, max = 20),
        inner(regex(pattern = r"^age1[02-9ac-hj-np-z]{58}$"))
    )]
    pub recipients: Vec<String>,
}

// The one shape of a retention policy: the CRD field, the agent's `--keep-*`
// flags (derived here, each reading its `agent_env` name, which is also what
// `RetentionSpec::env` gives the controller to set) and the policy the
// agent's `retention::plan` applies. A new keep rule is a field here with
// its flag, a line in `RetentionSpec::counts` or in the plan, and the CEL
// rule below. (Not a doc comment: that is the CRD's description.)
/// Which backups to keep, per backup (see `vertice-agent prune --help`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema, clap::Args)]
#[x_kube(validation = Rule::new("has(self.keepLast) || has(self.keepHourly) || has(self.keepDaily) || has(self.keepWeekly) || has(self.keepMonthly) || has(self.keepYearly) || has(self.keepWithin)").message("retention: set at least one keep rule"))]
#[serde(rename_all = "camelCase")]
pub struct RetentionSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    #[arg(long, env = agent_env::KEEP_LAST, help = "Keep the N newest backups")]
    pub keep_last: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    #[arg(long, env = agent_env::KEEP_HOURLY)]
    pub keep_hourly: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    #[arg(long, env = agent_env::KEEP_DAILY)]
    pub keep_daily: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    #[arg(long, env = agent_env::KEEP_WEEKLY)]
    pub keep_weekly: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    #[arg(long, env = agent_env::KEEP_MONTHLY)]
    pub keep_monthly: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    #[arg(long, env = agent_env::KEEP_YEARLY)]
    pub keep_yearly: Option<u32>,
    /// Keep everything newer than this: `36h`, `14d`, `2w`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+[hdwmy])+$"))]
    #[arg(
        long,
        env = agent_env::KEEP_WITHIN,
        // Keeps a bad value with its error: the agent's command refuses it
        // (`--keep-within: …`, exit 2) so the run summary is written and a
        // backup still notifies, which clap refusing the flag would skip.
        value_parser = |s: &str| Ok::<_, String>(SpecDuration::from(s)),
        help = "Keep every backup younger than this, e.g. 36h, 14d, 2w, 1y"
    )]
    pub keep_within: Option<SpecDuration>,
    /// Never keep fewer than this many backups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    #[arg(
        long,
        env = agent_env::MIN_KEEP,
        default_value = "1",
        value_parser = clap::value_parser!(u32).range(1..),
        help = "Never keep fewer than this many backups, whatever the policy says"
    )]
    pub min_keep: Option<u32>,
}

/// A count rule of a retention policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CountRule {
    /// The flag, e.g. `--keep-last`.
    pub flag: &'static str,
    /// The environment name the controller sets it by.
    pub env: &'static str,
    pub value: Option<u32>,
}

impl RetentionSpec {
    /// The count rules, in the order the controller passes them.
    pub fn counts(&self) -> [CountRule; 6] {
        let rule = |flag, env, value| CountRule { flag, env, value };
        [
            rule("--keep-last", agent_env::KEEP_LAST, self.keep_last),
            rule("--keep-hourly", agent_env::KEEP_HOURLY, self.keep_hourly),
            rule("--keep-daily", agent_env::KEEP_DAILY, self.keep_daily),
            rule("--keep-weekly", agent_env::KEEP_WEEKLY, self.keep_weekly),
            rule("--keep-monthly", agent_env::KEEP_MONTHLY, self.keep_monthly),
            rule("--keep-yearly", agent_env::KEEP_YEARLY, self.keep_yearly),
        ]
    }

    /// True when at least one keep rule is set: without one, pruning would
    /// keep only the newest backup, which is never what anyone meant.
    pub fn is_configured(&self) -> bool {
        self.counts().iter().any(|r| r.value.is_some()) || self.keep_within.is_some()
    }

    /// The floor: never fewer than this many (newest first), whatever the
    /// rules say; at least 1.
    pub fn min_keep(&self) -> u32 {
        self.min_keep.unwrap_or(1).max(1)
    }

    /// The environment that gives this policy to the agent's flags, for the
    /// controller to set.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let mut env: Vec<(&'static str, String)> = self
            .counts()
            .into_iter()
            .filter_map(|r| Some((r.env, r.value?.to_string())))
            .collect();
        if let Some(n) = self.min_keep {
            env.push((agent_env::MIN_KEEP, n.to_string()));
        }
        if let Some(within) = &self.keep_within {
            env.push((agent_env::KEEP_WITHIN, within.to_string()));
        }
        env
    }
}

/// Metrics destination.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricsSpec {
    /// Prometheus Pushgateway base URL (`http://pushgateway.monitoring:9091`).
    #[schemars(regex(pattern = r"^https?://"))]
    pub pushgateway_url: String,
}

/// Limits of each backup Job.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobSettings {
    /// A run is killed after this long.
    #[serde(default = "default_active_deadline")]
    #[schemars(range(min = 60))]
    pub active_deadline_seconds: i64,
    /// Retries of a failed run (each retry is a new backup).
    #[serde(default = "default_backoff_limit")]
    #[schemars(range(min = 0, max = 10))]
    pub backoff_limit: i32,
    /// A run that could not start within this long after its time is skipped.
    #[serde(default = "default_starting_deadline")]
    #[schemars(range(min = 10))]
    pub starting_deadline_seconds: i64,
    #[serde(default = "default_history")]
    #[schemars(range(min = 0, max = 100))]
    pub successful_jobs_history_limit: i32,
    #[serde(default = "default_history")]
    #[schemars(range(min = 0, max = 100))]
    pub failed_jobs_history_limit: i32,
}

impl Default for JobSettings {
    fn default() -> Self {
        Self {
            active_deadline_seconds: default_active_deadline(),
            backoff_limit: default_backoff_limit(),
            starting_deadline_seconds: default_starting_deadline(),
            successful_jobs_history_limit: default_history(),
            failed_jobs_history_limit: default_history(),
        }
    }
}

fn default_active_deadline() -> i64 {
    6 * 3600
}

fn default_backoff_limit() -> i32 {
    1
}

fn default_starting_deadline() -> i64 {
    300
}

fn default_history() -> i32 {
    3
}

/// Settings of the backup pod.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodSettings {
    /// Agent image (default: the controller's `--agent-image`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^(Always|IfNotPresent|Never)$"))]
    pub image_pull_policy: Option<String>,
    /// Requests and limits (default 100m CPU / 128Mi requested, 512Mi limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Service account of the pod; needed for workload identity and Vault
    /// Kubernetes auth. Without one, no API token is mounted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
    /// Extra pod labels (e.g. `azure.workload.identity/use: "true"`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Extra pod annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[cfg(test)]
mod tests {
    use kube::CustomResourceExt;
    use serde_json::{json, Value};

    use super::*;

    /// The schema of `spec.target.elasticsearch` as the CRD carries it.
    fn elasticsearch_schema() -> Value {
        let crd = serde_json::to_value(VerticeBackup::crd()).expect("crd");
        crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
            ["target"]["properties"]["elasticsearch"]
            .clone()
    }

    fn pattern(schema: &Value) -> regex::Regex {
        regex::Regex::new(schema["pattern"].as_str().expect("a pattern")).expect("valid pattern")
    }

    /// The URL carries neither a user nor a secret nor a query: the user
    /// has its own field, the agent refuses a query, and a password in the
    /// spec would be readable by anyone who can read the VerticeBackup.
    #[test]
    fn an_elasticsearch_url_is_scheme_host_port_and_an_optional_path() {
        let url = pattern(&elasticsearch_schema()["properties"]["url"]);
        for ok in [
            "https://logs-es-http.logging.svc:9200",
            "http://127.0.0.1:9200/",
            "https://[fd00::1]:9200",
            "https://search.example.com",
            "https://proxy.example:443/es/cluster-a",
        ] {
            assert!(url.is_match(ok), "{ok}");
        }
        for bad in [
            "https://elastic:changeme@es:9200",
            "https://backup@es:9200",
            "https://es:9200/?api_key=x",
            "https://es:9200/#x",
            "es:9200",
            "ftp://es:21",
            "https://es 9200",
            "https://",
        ] {
            assert!(!url.is_match(bad), "{bad}");
        }
    }

    #[test]
    fn elasticsearch_indices_are_lowercase_names_or_patterns() {
        let schema = elasticsearch_schema();
        let indices = &schema["properties"]["indices"];
        assert_eq!(indices["maxItems"], 100);
        let index = pattern(&indices["items"]);
        for ok in [
            "orders",
            "logs-*",
            ".kibana_1",
            "*",
            "metrics-2026.12.06",
            "a+b",
        ] {
            assert!(index.is_match(ok), "{ok}");
        }
        let too_long = "a".repeat(256);
        for bad in [
            "Orders",
            "_internal",
            "-logs",
            "logs,orders",
            "a b",
            "",
            too_long.as_str(),
        ] {
            assert!(!index.is_match(bad), "{bad}");
        }
    }

    #[test]
    fn elasticsearch_credentials_are_basic_auth_or_an_api_key() {
        let schema = elasticsearch_schema();
        let rules: Vec<(&str, &str)> = schema["x-kubernetes-validations"]
            .as_array()
            .expect("rules")
            .iter()
            .map(|r| {
                (
                    r["rule"].as_str().unwrap_or_default(),
                    r["message"].as_str().unwrap_or_default(),
                )
            })
            .collect();
        let (_, together) = rules
            .iter()
            .find(|(rule, _)| *rule == "has(self.username) == has(self.passwordSecretRef)")
            .expect("username and password together");
        assert!(
            together.contains("elasticsearch.username")
                && together.contains("elasticsearch.passwordSecretRef"),
            "{together}"
        );
        let (_, either) = rules
            .iter()
            .find(|(rule, _)| *rule == "!(has(self.username) && has(self.apiKeySecretRef))")
            .expect("not both");
        assert!(either.contains("not both"), "{either}");
        assert_eq!(schema["required"], json!(["url"]));
        assert_eq!(schema["properties"]["mode"]["enum"][0], "export");
    }

    #[test]
    fn exactly_one_target_counts_elasticsearch() {
        let crd = serde_json::to_value(VerticeBackup::crd()).expect("crd");
        let target = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
            ["properties"]["target"];
        let rule = &target["x-kubernetes-validations"][0];
        assert!(
            rule["rule"]
                .as_str()
                .is_some_and(|r| r.contains("has(self.elasticsearch)")),
            "{rule}"
        );
        assert!(
            rule["message"]
                .as_str()
                .is_some_and(|m| m.ends_with("target.elasticsearch")),
            "{rule}"
        );
        // And the spec-level rule refusing sql hooks names it too.
        let spec_rules = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
            ["spec"]["x-kubernetes-validations"]
            .as_array()
            .expect("spec rules")
            .clone();
        assert!(spec_rules.iter().any(|r| {
            r["rule"].as_str().is_some_and(|r| {
                r.contains("!has(self.target.elasticsearch)") && r.contains("h.sql")
            })
        }));
    }

    #[test]
    fn an_elasticsearch_target_reads_with_export_as_the_only_mode() {
        let t: ElasticsearchTarget = serde_json::from_value(json!({
            "url": "https://es:9200",
            "username": "backup",
            "passwordSecretRef": {"name": "es", "key": "password"},
            "indices": ["logs-*", "orders"],
            "mode": "export",
        }))
        .expect("target");
        assert_eq!(t.mode, Some(ElasticsearchMode::Export));
        assert_eq!(t.indices, ["logs-*", "orders"]);
        let snapshot: ElasticsearchTarget = serde_json::from_value(
            json!({"url": "https://es:9200", "mode": "snapshot", "repository": "backups"}),
        )
        .expect("snapshot");
        assert_eq!(snapshot.mode, Some(ElasticsearchMode::Snapshot));
        let refused = serde_json::from_value::<ElasticsearchTarget>(
            json!({"url": "https://es:9200", "mode": "copy"}),
        );
        assert!(refused.is_err());
    }
}
