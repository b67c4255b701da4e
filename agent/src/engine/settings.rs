//! The settings of one run, prepared once at the edge (`cli/settings.rs`,
//! from the command line) and handed down whole: plain values, secrets
//! already resolved, no clap types. Each engine reads the fields that are
//! its own. A leaf: it names no engine module, only the manifest's types.

use std::path::PathBuf;

use crate::manifest::kafka::KafkaFacts;
use crate::pipeline::progress::ProgressMode;
use crate::secret::Secret;

/// `--jobs`: PostgreSQL sessions, a number or `auto` (the engine decides:
/// `engine/postgres/parallel/auto.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jobs {
    Auto,
    Fixed(u32),
}

impl std::str::FromStr for Jobs {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Jobs, String> {
        if text == "auto" {
            return Ok(Jobs::Auto);
        }
        match text.parse::<u32>() {
            Ok(n) if (1..=64).contains(&n) => Ok(Jobs::Fixed(n)),
            _ => Err(format!("{text:?}: expected auto or a number from 1 to 64")),
        }
    }
}

/// `backup`: how each engine's source is read.
#[derive(Debug, Clone)]
pub struct BackupSettings {
    /// The source's password (PostgreSQL, Redis), from `--password-file`
    /// or the engine's environment variable.
    pub password: Option<Secret>,
    pub pg_dump: PathBuf,
    /// `--pg-dump-arg`, as given; the PostgreSQL engine checks them.
    pub pg_dump_args: Vec<String>,
    /// `--jobs`: PostgreSQL workers (1: one pg_dump stream).
    pub pg_jobs: Jobs,
    /// psql, for the source's role names and `sql` hooks.
    pub psql: PathBuf,
    pub vault: VaultLogin,
    pub kafka: KafkaBackup,
    pub search: SearchBackup,
}

/// `restore`: how each engine writes into its target.
#[derive(Debug, Clone)]
pub struct RestoreSettings {
    pub password: Option<Secret>,
    /// Replace what is there (a file, keys, a Vault cluster's data).
    pub force: bool,
    pub no_owner: bool,
    pub allow_older_server: bool,
    pub pg_restore: PathBuf,
    pub psql: Option<PathBuf>,
    /// `--pg-restore-arg`, as given; the PostgreSQL engine checks them.
    pub pg_restore_args: Vec<String>,
    /// `--jobs`: sessions loading a parallel PostgreSQL backup.
    pub pg_jobs: Jobs,
    pub vault: VaultLogin,
    pub kafka: KafkaRestore,
    pub search: SearchRestore,
    pub progress: ProgressMode,
}

/// `drill`: where and with what each engine's throwaway target runs.
#[derive(Debug, Clone)]
pub struct DrillSettings {
    /// The password for `--restore-to` (parsed beside these settings, as
    /// an `engine::RestoreTo`, since it names an engine's target type).
    pub password: Option<Secret>,
    pub scratch_prefix: String,
    pub stale_after: chrono::Duration,
    pub with_owner: bool,
    pub allow_older_server: bool,
    pub pg_restore: PathBuf,
    pub psql: Option<PathBuf>,
    pub postgres_bin: Option<PathBuf>,
    /// `--jobs`: sessions loading a parallel PostgreSQL backup.
    pub pg_jobs: Jobs,
    /// `--bao-server`: `auto`, `none` or a path.
    pub bao_server: String,
    /// `--redis-server`: `auto`, `none` or a path.
    pub redis_server: String,
    /// How a Kafka drill reaches the cluster of `--restore-to`.
    pub kafka: KafkaConnection,
    /// How an Elasticsearch / OpenSearch drill reaches `--restore-to`.
    pub search: SearchConnection,
    pub progress: ProgressMode,
}

/// How the agent reaches a Kafka cluster besides its address: TLS files
/// and how long a silent cluster is waited for.
#[derive(Debug, Clone)]
pub struct KafkaConnection {
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// A cluster that answers nothing for this long fails the run.
    pub timeout: std::time::Duration,
}

impl Default for KafkaConnection {
    fn default() -> Self {
        KafkaConnection {
            ca_file: None,
            cert_file: None,
            key_file: None,
            timeout: std::time::Duration::from_secs(30),
        }
    }
}

/// A Kafka backup: which topics and consumer groups it takes.
#[derive(Debug, Clone, Default)]
pub struct KafkaBackup {
    pub connection: KafkaConnection,
    pub topics: Vec<String>,
    pub topic_regex: Option<regex::Regex>,
    pub include_internal: bool,
    /// Groups whose whole id matches; `None`: every group.
    pub groups: Option<regex::Regex>,
    /// `--incremental`: continue from the newest backup of the series.
    pub incremental: bool,
    /// `--full-every`: the longest chain before a full backup.
    pub full_every: u32,
    /// The backup an incremental run continues, found in the store once it
    /// is open (`None`: a full backup).
    pub parent: Option<KafkaParent>,
}

/// The backup an incremental Kafka run continues: its id and what its
/// manifest records of each partition (where this run resumes reading).
#[derive(Debug, Clone)]
pub struct KafkaParent {
    pub backup_id: String,
    pub facts: KafkaFacts,
}

/// A Kafka restore: where topics go and which groups' offsets follow.
#[derive(Debug, Clone, Default)]
pub struct KafkaRestore {
    pub connection: KafkaConnection,
    /// `SOURCE=TARGET` pairs, as given; the engine checks them.
    pub topic_map: Vec<String>,
    pub groups: Option<regex::Regex>,
    pub keep_retention_suspended: bool,
    /// Continue a stopped restore: records already in the target are
    /// checked and not produced again.
    pub resume: bool,
}

/// How the agent reaches an Elasticsearch / OpenSearch cluster besides its
/// address and basic-auth password.
#[derive(Debug, Clone)]
pub struct SearchConnection {
    /// `--search-api-key-file` (else ELASTICSEARCH_API_KEY): sent as
    /// `Authorization: ApiKey …`, read only for a search cluster.
    pub api_key: Option<Secret>,
    /// Extra CA certificates for https://.
    pub ca_file: Option<PathBuf>,
    /// How long transient failures (connection lost, 429, 503) are retried.
    pub timeout: std::time::Duration,
    /// `--search-flavour`: the vendor the cluster must be
    /// (`elasticsearch`, `opensearch`); `None`: whichever answers.
    pub flavour: Option<&'static str>,
}

impl Default for SearchConnection {
    fn default() -> Self {
        SearchConnection {
            api_key: None,
            ca_file: None,
            timeout: std::time::Duration::from_secs(60),
            flavour: None,
        }
    }
}

/// An Elasticsearch / OpenSearch export: which indices it takes.
#[derive(Debug, Clone, Default)]
pub struct SearchBackup {
    pub connection: SearchConnection,
    /// Index names and wildcard patterns, as given (`--indices`); empty:
    /// every open index that is neither hidden nor a system index.
    pub indices: Vec<String>,
    /// Snapshot mode and into which repository; `None`: export mode.
    pub snapshot: Option<SnapshotRepository>,
}

impl SearchBackup {
    /// Places the agent's own snapshot repository (if this backup uses
    /// it) in the store at `location`, under the series' directory.
    pub fn place_repository(
        &mut self,
        location: &vertice_crds::StoreLocation,
        namespace: &str,
        name: &str,
    ) -> crate::error::Result<()> {
        let Some(SnapshotRepository::Managed {
            client,
            settings,
            place,
        }) = &mut self.snapshot
        else {
            return Ok(());
        };
        // The nodes resolve an fs location themselves: it must be absolute.
        let location = match location {
            vertice_crds::StoreLocation::File { root } => vertice_crds::StoreLocation::File {
                root: std::path::absolute(root).map_err(|e| {
                    crate::error::Error::usage(format!(
                        "--to {}: cannot make the path absolute for the cluster's repository: {e}",
                        root.display()
                    ))
                })?,
            },
            other => other.clone(),
        };
        let mut repository =
            crate::engine::search::repository::managed(&location, namespace, name, client);
        repository.settings.extend(settings.clone());
        *place = Some(repository);
        Ok(())
    }
}

/// Where a snapshot-mode backup's snapshot goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotRepository {
    /// `--search-repository`: one the cluster already has.
    Named(String),
    /// The agent's own repository inside the store, reached by the nodes
    /// through their client `client` (`--search-repository-client`);
    /// `place` is filled once the backup knows its store and series.
    Managed {
        client: String,
        /// `--search-repository-setting`: more settings of the repository.
        settings: std::collections::BTreeMap<String, String>,
        place: Option<crate::manifest::search::ManagedRepository>,
    },
}

/// An Elasticsearch / OpenSearch restore: where indices go.
#[derive(Debug, Clone, Default)]
pub struct SearchRestore {
    pub connection: SearchConnection,
    /// `SOURCE=TARGET` pairs, as given; the engine checks them.
    pub index_map: Vec<String>,
    /// `--search-replace`: indices that exist are replaced (`replace.rs`).
    pub replace: bool,
}

/// How the agent logs in to Vault / OpenBao; `cli/settings.rs` builds it
/// from the command line.
#[derive(Debug, Clone, Default)]
pub struct VaultLogin {
    /// The token, read at the edge from `--vault-token-file` (else
    /// VAULT_TOKEN); `None`: log in with Kubernetes auth, if configured.
    pub token: Option<Secret>,
    /// Kubernetes auth as this role, when no token is given.
    pub k8s_role: Option<String>,
    pub k8s_mount: String,
    pub k8s_jwt_file: std::path::PathBuf,
    /// Extra CA certificates (else VAULT_CACERT).
    pub cacert: Option<std::path::PathBuf>,
    pub namespace: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_a_password_or_token() {
        let settings = BackupSettings {
            password: Some(Secret::from("pw-hunter2".to_string())),
            pg_dump: "pg_dump".into(),
            pg_dump_args: Vec::new(),
            pg_jobs: Jobs::Fixed(1),
            psql: "psql".into(),
            vault: VaultLogin {
                token: Some(Secret::from("tok-hunter3".to_string())),
                ..VaultLogin::default()
            },
            kafka: KafkaBackup::default(),
            search: SearchBackup {
                connection: SearchConnection {
                    api_key: Some(Secret::from("key-hunter4".to_string())),
                    ..SearchConnection::default()
                },
                ..SearchBackup::default()
            },
        };
        let shown = format!("{settings:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("hunter3"), "{shown}");
        assert!(!shown.contains("hunter4"), "{shown}");
        assert!(shown.contains("Secret(***)"), "{shown}");
    }

    #[test]
    fn jobs_are_auto_or_one_to_sixty_four() {
        assert_eq!("auto".parse::<Jobs>(), Ok(Jobs::Auto));
        assert_eq!("1".parse::<Jobs>(), Ok(Jobs::Fixed(1)));
        assert_eq!("64".parse::<Jobs>(), Ok(Jobs::Fixed(64)));
        for bad in ["0", "65", "-1", "four", "Auto", ""] {
            let e = bad.parse::<Jobs>().expect_err(bad);
            assert!(e.contains("expected auto or a number from 1 to 64"), "{e}");
        }
    }
}
