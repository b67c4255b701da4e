//! The command line (clap derive). Every flag also reads a `VERTICE_…`
//! environment variable; secrets are never flags.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use vertice_crds::agent_env;
use vertice_crds::backup::RetentionSpec;
use vertice_crds::drill::DrillChecks;
use vertice_crds::hooks::Hooks;
use vertice_crds::notifications::Notifications;
use vertice_crds::Compression;

use crate::pipeline::progress::ProgressMode;

pub mod probe;
mod settings;

/// The embedded default store: a directory under the working directory.
pub const DEFAULT_STORE: &str = "file://vertice-backups";

#[derive(Debug, Parser)]
#[command(
    name = "vertice-agent",
    version,
    about = "Streams database backups into object stores, and restores them"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// Log format on stderr.
    #[arg(
        long,
        global = true,
        env = agent_env::LOG_FORMAT,
        default_value = "text"
    )]
    pub log_format: LogFormat,

    /// Log filter (tracing syntax), e.g. `info` or `vertice_agent=debug`.
    #[arg(long, global = true, env = "VERTICE_LOG", default_value = "info")]
    pub log_level: String,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Back up a database into a store.
    Backup(Box<BackupArgs>),
    /// Restore a backup into a database or an RDB file.
    Restore(Box<RestoreArgs>),
    /// List the backups in a store, newest first.
    List(ListArgs),
    /// Re-read a stored backup and check it against its manifest.
    Verify(VerifyArgs),
    /// Delete old backups by a retention policy (never the newest good one).
    Prune(PruneArgs),
    /// Prove a backup restores: verify it, restore it into a throwaway
    /// target, run the checks, always remove the target.
    Drill(Box<DrillArgs>),
    /// Health probes: one check by hand, or the runner of VerticeFailover checks.
    Probe(probe::ProbeArgs),
}

#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// S3 endpoint for S3-compatible servers, e.g. http://127.0.0.1:8333.
    #[arg(long, env = agent_env::S3_ENDPOINT)]
    pub s3_endpoint: Option<String>,

    /// S3 region (default: AWS_REGION, else us-east-1).
    #[arg(long, env = agent_env::S3_REGION)]
    pub s3_region: Option<String>,

    /// Force path-style addressing (automatic for IP and localhost endpoints).
    #[arg(
        long,
        env = agent_env::S3_PATH_STYLE,
        num_args = 0..=1,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub s3_path_style: Option<bool>,

    /// Size of the first upload parts, in MiB; parts grow past 1,000 parts.
    #[arg(long, env = "VERTICE_PART_SIZE_MIB", default_value_t = 8, value_parser = clap::value_parser!(u64).range(5..=5120))]
    pub part_size_mib: u64,

    /// Upload parts in flight at once (memory ≈ part size × this).
    #[arg(long, env = "VERTICE_PARTS_IN_FLIGHT", default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub parts_in_flight: u64,

    /// How long the store may keep failing, without any progress, before
    /// the run gives up and reports it unreachable (e.g. 30s, 2m). Each
    /// blip after progress gets the whole allowance again.
    #[arg(long, env = "VERTICE_STORE_RETRY_FOR", default_value = "60s")]
    pub store_retry_for: String,

    /// GCS endpoint override for emulators, e.g. http://127.0.0.1:4443
    /// (also read from STORAGE_EMULATOR_HOST).
    #[arg(long, env = agent_env::GCS_ENDPOINT)]
    pub gcs_endpoint: Option<String>,

    /// Azure Blob endpoint override, e.g. http://127.0.0.1:10000/devstoreaccount1 for
    /// Azurite (default https://ACCOUNT.blob.core.windows.net).
    #[arg(long, env = agent_env::AZURE_ENDPOINT)]
    pub azure_endpoint: Option<String>,

    /// File holding an Azure SAS token (else AZURE_STORAGE_SAS_TOKEN).
    #[arg(long, env = "VERTICE_AZURE_SAS_TOKEN_FILE")]
    pub azure_sas_token_file: Option<PathBuf>,

    /// File holding the Azure storage account key (else AZURE_STORAGE_KEY); the
    /// agent signs a short-lived SAS with it and never sends the key.
    #[arg(long, env = "VERTICE_AZURE_ACCOUNT_KEY_FILE")]
    pub azure_account_key_file: Option<PathBuf>,
}

/// How long backups are kept. Counts keep the newest backup in each of the
/// last N hours / days / ISO weeks / months / years (UTC).
#[derive(Debug, Clone, Default, Args)]
pub struct RetentionArgs {
    // The keep rules: the CRD's `spec.retention`, whose fields are the flags.
    #[command(flatten)]
    pub policy: RetentionSpec,
    /// Remove unfinished uploads (artifacts without a manifest) older than this.
    #[arg(long, env = "VERTICE_UNFINISHED_AFTER", default_value = "24h")]
    pub unfinished_after: String,
}

#[derive(Debug, Clone, Args)]
pub struct NameArgs {
    /// Namespace the backup belongs to (set by the controller in a Job).
    #[arg(long, env = agent_env::NAMESPACE)]
    pub namespace: Option<String>,

    /// Backup name (default for `backup`: the database name, or "redis").
    #[arg(long, env = agent_env::BACKUP_NAME)]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Where to write the one-line JSON run summary (written only if the file
    /// exists, as Kubernetes creates it, or if set explicitly).
    #[arg(long, env = "VERTICE_TERMINATION_LOG")]
    pub termination_log: Option<PathBuf>,

    /// Progress reporting.
    #[arg(long, env = agent_env::PROGRESS, default_value = "auto")]
    pub progress: ProgressMode,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// What to back up: postgres://USER@HOST:PORT/DB, redis://[USER@]HOST:PORT,
    /// vault://HOST:PORT (https; http(s):// with --source-kind vault),
    /// kafka://[USER@]HOST:PORT[,HOST:PORT…] (kafkas:// for TLS), or
    /// http(s)://[USER@]HOST:PORT with --source-kind elasticsearch.
    /// Passwords come from PGPASSWORD / REDIS_PASSWORD / KAFKA_PASSWORD /
    /// ELASTICSEARCH_PASSWORD or --password-file.
    #[arg(long, env = agent_env::SOURCE)]
    pub source: String,

    /// Store URL: s3://bucket/prefix, gs://bucket/prefix,
    /// azblob://account/container/prefix or file:///path (default: ./vertice-backups).
    #[arg(long, env = agent_env::STORE, default_value = DEFAULT_STORE)]
    pub to: String,

    /// File holding the database password (e.g. a mounted Secret).
    #[arg(long, env = "VERTICE_PASSWORD_FILE")]
    pub password_file: Option<PathBuf>,

    #[arg(long, env = agent_env::COMPRESSION, default_value = "zstd")]
    pub compression: Compression,

    /// zstd 1-19 (default 1), gzip 1-9 (default 6).
    #[arg(long, env = agent_env::COMPRESSION_LEVEL)]
    pub compression_level: Option<i32>,

    /// pg_dump executable.
    #[arg(long, env = "VERTICE_PG_DUMP", default_value = "pg_dump")]
    pub pg_dump: PathBuf,

    /// PostgreSQL: parallel workers. Above 1, one exported snapshot is read
    /// by pg_dump (schema, sequences, small tables) and by N sessions that
    /// copy the larger tables, split into block ranges, each part its own
    /// object. 1: one pg_dump stream. auto: half the agent's CPUs (1 to 4)
    /// for a database of 1 GiB or more, else 1.
    #[arg(long, env = agent_env::PG_JOBS, default_value = "auto")]
    pub jobs: crate::engine::settings::Jobs,

    /// Extra pg_dump option, repeatable (e.g. --pg-dump-arg=--exclude-table=audit.*).
    #[arg(
        long = "pg-dump-arg",
        env = agent_env::PG_DUMP_ARGS,
        value_delimiter = ' ',
        allow_hyphen_values = true
    )]
    pub pg_dump_args: Vec<String>,

    /// Encrypt to these age recipients: age1… public keys or files of them,
    /// comma-separated or repeated. Restore then needs a matching --identity.
    #[arg(long, env = agent_env::ENCRYPT_TO, value_delimiter = ',')]
    pub encrypt_to: Vec<String>,

    /// What an http(s):// source is: `vault` (a Vault/OpenBao server;
    /// vault:// implies it) or `elasticsearch` (an Elasticsearch or
    /// OpenSearch cluster).
    #[arg(long, env = agent_env::SOURCE_KIND)]
    pub source_kind: Option<SourceKindArg>,

    #[command(flatten)]
    pub vault: VaultArgs,

    #[command(flatten)]
    pub kafka: KafkaBackupArgs,

    #[command(flatten)]
    pub search: SearchBackupArgs,

    /// After a successful backup, prune by this policy (only when a --keep-* is set).
    #[command(flatten)]
    pub retention: RetentionArgs,

    /// Hooks as JSON, in the shape of a VerticeBackup's `spec.hooks`.
    #[arg(long, env = agent_env::HOOKS, value_parser = parse_json::<Hooks>)]
    pub hooks: Option<Hooks>,

    /// Notifications as JSON, in the shape of a VerticeBackup's `spec.notifications`.
    #[arg(long, env = agent_env::NOTIFICATIONS, value_parser = parse_json::<Notifications>)]
    pub notifications: Option<Notifications>,

    /// Prometheus Pushgateway to push the run's metrics to.
    #[arg(long, env = agent_env::PUSHGATEWAY_URL)]
    pub pushgateway_url: Option<String>,

    /// Where Secrets referenced by hooks and notifications are mounted
    /// (`<dir>/<secret>/<key>`).
    #[arg(
        long,
        env = agent_env::SECRETS_DIR,
        default_value = agent_env::SECRETS_MOUNT
    )]
    pub secrets_dir: PathBuf,

    /// psql executable, for sql hooks on PostgreSQL.
    #[arg(long, env = "VERTICE_PSQL", default_value = "psql")]
    pub psql: PathBuf,

    #[command(flatten)]
    pub names: NameArgs,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum SourceKindArg {
    Vault,
    /// An Elasticsearch or OpenSearch cluster.
    #[value(alias = "opensearch")]
    Elasticsearch,
}

impl From<SourceKindArg> for crate::manifest::SourceKind {
    fn from(kind: SourceKindArg) -> Self {
        match kind {
            SourceKindArg::Vault => crate::manifest::SourceKind::Vault,
            SourceKindArg::Elasticsearch => crate::manifest::SourceKind::Elasticsearch,
        }
    }
}

/// How the agent reaches a Kafka cluster (`kafka://`, `kafkas://` for TLS)
/// besides its address; the SASL password comes from KAFKA_PASSWORD or
/// --password-file.
#[derive(Debug, Clone, Args)]
pub struct KafkaConnectionArgs {
    /// Kafka: PEM file of CA certificates to trust for kafkas:// (else the system's).
    #[arg(long, env = agent_env::KAFKA_CA_FILE)]
    pub kafka_ca_file: Option<PathBuf>,
    /// Kafka: client certificate (PEM) for mutual TLS.
    #[arg(long, env = agent_env::KAFKA_CERT_FILE)]
    pub kafka_cert_file: Option<PathBuf>,
    /// Kafka: the client certificate's private key (PEM).
    #[arg(long, env = agent_env::KAFKA_KEY_FILE)]
    pub kafka_key_file: Option<PathBuf>,
    /// Kafka: a cluster that answers nothing for this long fails the run.
    #[arg(long, env = "VERTICE_KAFKA_TIMEOUT", default_value = "30s")]
    pub kafka_timeout: String,
}

/// Which topics and consumer groups a Kafka backup takes.
#[derive(Debug, Clone, Args)]
pub struct KafkaBackupArgs {
    /// Kafka: topics to back up, comma-separated (each must exist). With
    /// neither this nor --topic-regex, every topic but internal ones.
    #[arg(long, env = agent_env::KAFKA_TOPICS, value_delimiter = ',')]
    pub topics: Vec<String>,
    /// Kafka: also the topics whose whole name matches this regular expression.
    #[arg(long, env = agent_env::KAFKA_TOPIC_REGEX)]
    pub topic_regex: Option<String>,
    /// Kafka: do not leave out internal topics (__consumer_offsets, …).
    #[arg(long, env = agent_env::KAFKA_INCLUDE_INTERNAL)]
    pub include_internal: bool,
    /// Kafka: consumer groups whose committed offsets are carried, a regular
    /// expression on the whole group id (default: every group).
    #[arg(long, env = agent_env::KAFKA_GROUPS)]
    pub groups: Option<String>,
    /// Kafka: continue each partition from the newest backup of this name
    /// (its manifest names it as the parent; a restore replays the chain).
    /// Refused when records were deleted in between or a topic was created
    /// again, so a chain never has a gap.
    #[arg(long, env = agent_env::KAFKA_INCREMENTAL)]
    pub incremental: bool,
    /// Kafka, with --incremental: a chain holds at most this many backups
    /// (the full one included); the next run is a full backup, so
    /// retention can let old chains go.
    #[arg(long, env = agent_env::KAFKA_FULL_EVERY, default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub full_every: u32,
    #[command(flatten)]
    pub connection: KafkaConnectionArgs,
}

/// Where a Kafka restore puts topics and which groups' offsets follow.
#[derive(Debug, Clone, Args)]
pub struct KafkaRestoreArgs {
    /// Kafka: restore topics under other names, SOURCE=TARGET, comma-separated
    /// or repeated (e.g. orders=orders-restored).
    #[arg(long, env = "VERTICE_KAFKA_TOPIC_MAP", value_delimiter = ',')]
    pub topic_map: Vec<String>,
    /// Kafka: consumer groups whose offsets are translated and committed, a
    /// regular expression on the whole group id (default: every group in the backup).
    #[arg(long = "groups", env = "VERTICE_KAFKA_RESTORE_GROUPS")]
    pub restore_groups: Option<String>,
    /// Kafka: leave the restored topics' retention suspended (retention.ms=-1)
    /// instead of putting their own configs back at the end.
    #[arg(long, env = "VERTICE_KAFKA_KEEP_RETENTION_SUSPENDED")]
    pub kafka_keep_retention_suspended: bool,
    /// Kafka: continue a restore that stopped (broker failure, signal): the
    /// records it wrote are checked against the backup and not written again.
    #[arg(long, env = "VERTICE_KAFKA_RESUME")]
    pub resume: bool,
    #[command(flatten)]
    pub connection: KafkaConnectionArgs,
}

/// How the agent reaches an Elasticsearch / OpenSearch cluster besides its
/// address; the basic-auth password comes from ELASTICSEARCH_PASSWORD or
/// --password-file.
#[derive(Debug, Clone, Args)]
pub struct SearchConnectionArgs {
    /// Elasticsearch / OpenSearch: file holding an API key (else
    /// ELASTICSEARCH_API_KEY), sent as `Authorization: ApiKey …`.
    #[arg(long, env = agent_env::SEARCH_API_KEY_FILE)]
    pub search_api_key_file: Option<PathBuf>,
    /// Elasticsearch / OpenSearch: PEM file of CA certificates to trust for https://.
    #[arg(long, env = agent_env::SEARCH_CA_FILE)]
    pub search_ca_file: Option<PathBuf>,
    /// Elasticsearch / OpenSearch: how long a cluster that fails or answers
    /// 429/503 is retried before the run gives up.
    #[arg(long, env = "VERTICE_SEARCH_TIMEOUT", default_value = "60s")]
    pub search_timeout: String,
    /// Elasticsearch / OpenSearch: the vendor the cluster must be; a
    /// cluster of the other one is refused before anything is read or
    /// written. Default: whichever answers.
    #[arg(long, env = agent_env::SEARCH_FLAVOUR)]
    pub search_flavour: Option<SearchFlavourArg>,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum SearchFlavourArg {
    Elasticsearch,
    Opensearch,
}

/// Which indices an Elasticsearch / OpenSearch backup takes.
#[derive(Debug, Clone, Args)]
pub struct SearchBackupArgs {
    /// Elasticsearch / OpenSearch: indices and wildcard patterns,
    /// comma-separated (e.g. 'logs-*,orders'); each must match an open
    /// index. Default: every open index that is not hidden or a system index.
    #[arg(long, env = agent_env::SEARCH_INDICES, value_delimiter = ',')]
    pub indices: Vec<String>,
    /// Elasticsearch / OpenSearch: `export` (documents, settings and
    /// mappings as open NDJSON through the agent's compression, encryption
    /// and checksums) or `snapshot` (the cluster snapshots the indices into
    /// --search-repository; the agent records and checks it).
    #[arg(long, env = agent_env::SEARCH_MODE, default_value = "export")]
    pub search_mode: SearchModeArg,
    /// Elasticsearch / OpenSearch, snapshot mode: a snapshot repository
    /// registered on the cluster (fs, s3, gcs, azure, …).
    /// Without it, snapshot mode registers the agent's own repository in
    /// the backup store (`<prefix>/<namespace>/<name>/repository`).
    #[arg(long, env = agent_env::SEARCH_REPOSITORY)]
    pub search_repository: Option<String>,
    /// Elasticsearch / OpenSearch, snapshot mode into the agent's own
    /// repository: the nodes' configured client (`s3.client.NAME.*`,
    /// `gcs.client.NAME.*`, `azure.client.NAME.*`) holding the store's
    /// endpoint and credentials. Default: `default`.
    #[arg(long, env = agent_env::SEARCH_REPOSITORY_CLIENT)]
    pub search_repository_client: Option<String>,
    /// Elasticsearch / OpenSearch, snapshot mode into the agent's own
    /// repository: more repository settings, KEY=VALUE, comma-separated or
    /// repeated (e.g. server_side_encryption_type=bucket_default,
    /// storage_class=standard_ia, chunk_size=1gb). Where the repository
    /// lies (bucket, base_path, location, container), its client and
    /// compress are the agent's.
    #[arg(long, env = agent_env::SEARCH_REPOSITORY_SETTINGS, value_delimiter = ',')]
    pub search_repository_setting: Vec<String>,
    #[command(flatten)]
    pub connection: SearchConnectionArgs,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum SearchModeArg {
    Export,
    Snapshot,
}

/// Where an Elasticsearch / OpenSearch restore puts indices.
#[derive(Debug, Clone, Args)]
pub struct SearchRestoreArgs {
    /// Elasticsearch / OpenSearch: restore indices under other names,
    /// SOURCE=TARGET, comma-separated or repeated (e.g. orders=orders-restored).
    #[arg(long, env = "VERTICE_SEARCH_INDEX_MAP", value_delimiter = ',')]
    pub index_map: Vec<String>,
    /// Elasticsearch / OpenSearch: restore over indices that exist (else
    /// refused). Each is restored and checked under a staging name first;
    /// only once every index of the run is, each existing one is deleted
    /// and the copy cloned into its name, with its aliases. Stop writers
    /// to those indices first: what they write meanwhile is lost.
    #[arg(long, env = "VERTICE_SEARCH_REPLACE")]
    pub search_replace: bool,
    #[command(flatten)]
    pub connection: SearchConnectionArgs,
}

/// How the agent logs in to Vault / OpenBao: VAULT_TOKEN, a token file, or
/// Kubernetes auth with the pod's service-account token.
#[derive(Debug, Clone, Args)]
pub struct VaultArgs {
    /// File holding a Vault token (else VAULT_TOKEN).
    #[arg(long, env = "VERTICE_VAULT_TOKEN_FILE")]
    pub vault_token_file: Option<PathBuf>,
    /// Log in with Kubernetes auth as this role (instead of a token).
    #[arg(long, env = agent_env::VAULT_K8S_ROLE)]
    pub vault_k8s_role: Option<String>,
    /// Mount path of the Kubernetes auth method.
    #[arg(long, env = agent_env::VAULT_K8S_MOUNT, default_value = "kubernetes")]
    pub vault_k8s_mount: String,
    /// Service-account token presented to Kubernetes auth.
    #[arg(
        long,
        env = "VERTICE_VAULT_K8S_JWT_FILE",
        default_value = "/var/run/secrets/kubernetes.io/serviceaccount/token"
    )]
    pub vault_k8s_jwt_file: PathBuf,
    /// PEM file of extra CA certificates to trust for https:// (else VAULT_CACERT).
    #[arg(long, env = agent_env::VAULT_CACERT)]
    pub vault_cacert: Option<PathBuf>,
    /// Vault Enterprise / OpenBao namespace.
    #[arg(long, env = agent_env::VAULT_NAMESPACE)]
    pub vault_namespace: Option<String>,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Store URL.
    #[arg(long, env = agent_env::STORE, default_value = DEFAULT_STORE)]
    pub from: String,

    #[command(flatten)]
    pub retention: RetentionArgs,

    /// Print the plan (keep / delete, with reasons) and delete nothing.
    #[arg(long, env = "VERTICE_PRUNE_DRY_RUN")]
    pub dry_run: bool,

    #[arg(long, env = "VERTICE_OUTPUT", default_value = "table")]
    pub output: OutputFormat,

    #[command(flatten)]
    pub names: NameArgs,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Store URL to restore from.
    #[arg(long, env = agent_env::STORE, default_value = DEFAULT_STORE)]
    pub from: String,

    /// Which backup: latest, an id, or before:RFC3339.
    #[arg(long, env = "VERTICE_RESTORE_BACKUP", default_value = "latest")]
    pub backup: String,

    /// Where to restore: postgres://USER@HOST:PORT/DB (must exist),
    /// redis://HOST:PORT, file:///path/dump.rdb for a fresh Redis, vault://HOST:PORT,
    /// kafka://[USER@]HOST:PORT[,HOST:PORT…] (kafkas:// for TLS), or
    /// http(s)://[USER@]HOST:PORT with --target-kind elasticsearch.
    #[arg(long, env = "VERTICE_RESTORE_TARGET")]
    pub to: String,

    /// File holding the target's password.
    #[arg(long, env = "VERTICE_PASSWORD_FILE")]
    pub password_file: Option<PathBuf>,

    /// Replace: overwrite an existing RDB file, replace same-named keys in a non-empty
    /// Redis, or install a Vault snapshot taken on another cluster (snapshot-force).
    #[arg(long, env = "VERTICE_RESTORE_FORCE")]
    pub force: bool,

    /// PostgreSQL: skip ownership and privileges (restore into a cluster without the original roles).
    #[arg(long, env = "VERTICE_RESTORE_NO_OWNER")]
    pub no_owner: bool,

    /// PostgreSQL: restore into a server of an older major version than the
    /// backup's source, which is refused otherwise.
    #[arg(long, env = "VERTICE_ALLOW_OLDER_SERVER")]
    pub allow_older_server: bool,

    /// pg_restore executable.
    #[arg(long, env = "VERTICE_PG_RESTORE", default_value = "pg_restore")]
    pub pg_restore: PathBuf,

    /// PostgreSQL: sessions that load a parallel backup's parts (a backup
    /// made with --jobs 1 is one stream and loads in one). auto: half the
    /// agent's CPUs, 1 to 4.
    #[arg(long, env = agent_env::PG_JOBS, default_value = "auto")]
    pub jobs: crate::engine::settings::Jobs,

    /// psql executable that runs the restore's SQL (default: the psql beside
    /// --pg-restore when that is a path, else psql on PATH).
    #[arg(long, env = "VERTICE_PSQL")]
    pub psql: Option<PathBuf>,

    /// Extra pg_restore option, repeatable (e.g. --pg-restore-arg=--no-comments).
    #[arg(
        long = "pg-restore-arg",
        env = "VERTICE_PG_RESTORE_ARGS",
        value_delimiter = ' ',
        allow_hyphen_values = true
    )]
    pub pg_restore_args: Vec<String>,

    /// age identity file (AGE-SECRET-KEY-…) for encrypted backups.
    #[arg(long, env = agent_env::IDENTITY_FILE)]
    pub identity: Option<PathBuf>,

    /// What an http(s):// target is: `vault` (a Vault/OpenBao server;
    /// vault:// implies it) or `elasticsearch` (an Elasticsearch or
    /// OpenSearch cluster).
    #[arg(long, env = "VERTICE_TARGET_KIND")]
    pub target_kind: Option<SourceKindArg>,

    #[command(flatten)]
    pub vault: VaultArgs,

    #[command(flatten)]
    pub kafka: KafkaRestoreArgs,

    #[command(flatten)]
    pub search: SearchRestoreArgs,

    #[command(flatten)]
    pub names: NameArgs,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Store URL.
    #[arg(long, env = agent_env::STORE, default_value = DEFAULT_STORE)]
    pub from: String,

    #[arg(long, env = "VERTICE_OUTPUT", default_value = "table")]
    pub output: OutputFormat,

    #[command(flatten)]
    pub names: NameArgs,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum OutputFormat {
    Table,
    Json,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Store URL.
    #[arg(long, env = agent_env::STORE, default_value = DEFAULT_STORE)]
    pub from: String,

    /// Which backup: latest, an id, or before:RFC3339.
    #[arg(long, env = "VERTICE_VERIFY_BACKUP", default_value = "latest")]
    pub backup: String,

    /// age identity file for encrypted backups; without it only the stored
    /// bytes are checked.
    #[arg(long, env = agent_env::IDENTITY_FILE)]
    pub identity: Option<PathBuf>,

    /// Prometheus Pushgateway to push the verify result to (the backup's
    /// group: `vertice_backup_last_verified_timestamp_seconds`).
    #[arg(long, env = agent_env::PUSHGATEWAY_URL)]
    pub pushgateway_url: Option<String>,

    #[command(flatten)]
    pub names: NameArgs,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Args)]
pub struct DrillArgs {
    /// Store URL to drill from.
    #[arg(long, env = agent_env::STORE, default_value = DEFAULT_STORE)]
    pub from: String,

    /// Which backup: latest, an id, or before:RFC3339.
    #[arg(long, env = agent_env::DRILL_BACKUP, default_value = "latest")]
    pub backup: String,

    /// PostgreSQL: postgres://USER@HOST:PORT/DB, a server where the drill
    /// creates a scratch database (named by --scratch-prefix) and always drops
    /// it; DB is the database it connects to for that (e.g. postgres). Or
    /// `ephemeral`: a throwaway server the drill starts on a private socket
    /// (needs initdb and postgres, see --postgres-bin) and removes after.
    /// Kafka: kafka://HOST:PORT, a cluster where the drill creates scratch
    /// topics (vertice-drill-<backup>-<topic>) and always deletes them.
    /// Elasticsearch / OpenSearch: http(s)://HOST:PORT, a cluster where the
    /// drill creates throwaway indices (vertice-drill-<backup>-<index>) and
    /// always deletes them.
    /// Redis and Vault drills need no target.
    #[arg(long, env = agent_env::DRILL_RESTORE_TO)]
    pub restore_to: Option<String>,

    /// The scratch databases the drill creates are named PREFIX<time>_<random>;
    /// it drops only those, and ones an earlier drill left behind more than
    /// --stale-after ago. Lowercase letters, digits and `_`.
    #[arg(
        long,
        env = agent_env::DRILL_SCRATCH_PREFIX,
        default_value = "vertice_drill_"
    )]
    pub scratch_prefix: String,

    /// Scratch databases of this prefix older than this are leftovers of a
    /// killed drill and are dropped (e.g. 6h, 1d).
    #[arg(long, env = "VERTICE_DRILL_STALE_AFTER", default_value = "6h")]
    pub stale_after: String,

    /// Checks as a JSON file in the shape of `spec.drill.checks`.
    #[arg(
        long,
        env = "VERTICE_DRILL_CHECKS_FILE",
        conflicts_with = "checks_json"
    )]
    pub checks: Option<PathBuf>,

    /// Checks as JSON (how the controller passes `spec.drill.checks`).
    #[arg(long, env = agent_env::DRILL_CHECKS, value_parser = parse_json::<DrillChecks>)]
    pub checks_json: Option<DrillChecks>,

    /// File holding the PostgreSQL target's password (else PGPASSWORD).
    #[arg(long, env = "VERTICE_PASSWORD_FILE")]
    pub password_file: Option<PathBuf>,

    /// PostgreSQL: restore ownership and privileges too (the roles must exist
    /// on the drill server); by default they are skipped.
    #[arg(long, env = "VERTICE_DRILL_WITH_OWNER")]
    pub with_owner: bool,

    /// PostgreSQL: drill on a server of an older major version than the
    /// backup's source, which is refused otherwise.
    #[arg(long, env = "VERTICE_ALLOW_OLDER_SERVER")]
    pub allow_older_server: bool,

    /// pg_restore executable.
    #[arg(long, env = "VERTICE_PG_RESTORE", default_value = "pg_restore")]
    pub pg_restore: PathBuf,

    /// PostgreSQL: sessions that load a parallel backup's parts (a backup
    /// made with --jobs 1 is one stream and loads in one). auto: half the
    /// agent's CPUs, 1 to 4.
    #[arg(long, env = agent_env::PG_JOBS, default_value = "auto")]
    pub jobs: crate::engine::settings::Jobs,

    /// psql executable (default: the one beside --pg-restore, else on PATH).
    #[arg(long, env = "VERTICE_PSQL")]
    pub psql: Option<PathBuf>,

    /// `--restore-to ephemeral`: the directory of initdb and postgres
    /// (default: beside --pg-restore, else the newest
    /// /usr/lib/postgresql/<major>/bin, else PATH).
    #[arg(long, env = "VERTICE_DRILL_POSTGRES_BIN")]
    pub postgres_bin: Option<PathBuf>,

    /// Vault / OpenBao: a `bao` (or `vault`) binary to restore the snapshot
    /// into, a throwaway single-node server on loopback; `auto` finds one on
    /// PATH, `none` checks the snapshot's structure only.
    #[arg(long, env = "VERTICE_DRILL_BAO_SERVER", default_value = "auto")]
    pub bao_server: String,

    /// Redis: a redis-server (or valkey-server) to load the RDB into, in a
    /// throwaway instance on a private socket; `auto` finds one on PATH,
    /// `none` checks by parsing the RDB only.
    #[arg(long, env = "VERTICE_DRILL_REDIS_SERVER", default_value = "auto")]
    pub redis_server: String,

    /// age identity file for encrypted backups.
    #[arg(long, env = agent_env::IDENTITY_FILE)]
    pub identity: Option<PathBuf>,

    #[command(flatten)]
    pub kafka: KafkaConnectionArgs,

    #[command(flatten)]
    pub search: SearchConnectionArgs,

    /// Prometheus Pushgateway to push the drill's metrics to (the backup's group).
    #[arg(long, env = agent_env::PUSHGATEWAY_URL)]
    pub pushgateway_url: Option<String>,

    #[command(flatten)]
    pub names: NameArgs,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub run: RunArgs,
}

/// Parses a JSON flag into a spec type shared with the controller; the error
/// names the field serde stopped at.
fn parse_json<T: serde::de::DeserializeOwned>(raw: &str) -> Result<T, String> {
    serde_json::from_str(raw).map_err(|e| format!("not valid JSON for this setting: {e}"))
}

/// `--progress`' values. The mode itself is a plain type, so the pipeline
/// that reports progress does not depend on the command line.
impl ValueEnum for ProgressMode {
    fn value_variants<'a>() -> &'a [Self] {
        &[ProgressMode::Auto, ProgressMode::Log, ProgressMode::Off]
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        let (name, help) = match self {
            ProgressMode::Auto => ("auto", "A live line on a terminal, log lines otherwise"),
            ProgressMode::Log => ("log", "Log lines every few seconds"),
            ProgressMode::Off => ("off", "Nothing"),
        };
        Some(clap::builder::PossibleValue::new(name).help(help))
    }
}
