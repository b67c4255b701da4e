//! From the command line to the engines' settings (`engine::settings`):
//! every engine's flags are read here, at the edge, once — parsed, checked,
//! their secrets resolved — so `commands/` assembles a run without naming
//! an engine, and nothing below this sees clap.

use super::{
    BackupArgs, DrillArgs, KafkaBackupArgs, KafkaConnectionArgs, KafkaRestoreArgs, RestoreArgs,
    SearchBackupArgs, SearchConnectionArgs, SearchRestoreArgs, VaultArgs,
};
use crate::engine::settings::{
    BackupSettings, DrillSettings, KafkaBackup, KafkaConnection, KafkaRestore, RestoreSettings,
    SearchBackup, SearchConnection, SearchRestore, SnapshotRepository, VaultLogin,
};
use crate::engine::Target;
use crate::error::{Error, Result};
use crate::secret::Secret;
use crate::secret_files::{resolve_password, resolve_secret};

impl BackupArgs {
    /// Refuses flags `target`'s engine cannot use — first thing, before a
    /// name is derived or a secret read.
    pub fn check_for(&self, target: &Target) -> Result<()> {
        target.check_backup(self.kafka.incremental)?;
        if !self.search.indices.is_empty() && !matches!(target, Target::Search(_)) {
            return Err(Error::usage(
                "--indices is for Elasticsearch / OpenSearch sources (--source http(s)://… --source-kind elasticsearch)",
            ));
        }
        Ok(())
    }

    /// The settings a backup of `target` reads its source with; its
    /// password comes from `--password-file`, else the engine's variable.
    pub fn engine_settings(&self, target: &Target) -> Result<BackupSettings> {
        let password = match target.password_env() {
            Some(env) => resolve_password(self.password_file.as_ref(), env)?,
            None => None,
        };
        Ok(BackupSettings {
            password: password.map(Secret::from),
            pg_dump: self.pg_dump.clone(),
            pg_dump_args: self.pg_dump_args.clone(),
            pg_jobs: self.jobs,
            psql: self.psql.clone(),
            vault: self.vault.login(target)?,
            kafka: self.kafka.settings()?,
            search: self.search.settings(target)?,
        })
    }
}

impl RestoreArgs {
    /// The settings a restore into `target` writes with. The password is
    /// read later, once the backup's kind matched `--to`.
    pub fn engine_settings(&self, target: &Target) -> Result<RestoreSettings> {
        Ok(RestoreSettings {
            password: None,
            force: self.force,
            no_owner: self.no_owner,
            allow_older_server: self.allow_older_server,
            pg_restore: self.pg_restore.clone(),
            psql: self.psql.clone(),
            pg_restore_args: self.pg_restore_args.clone(),
            pg_jobs: self.jobs,
            vault: self.vault.login(target)?,
            kafka: self.kafka.settings()?,
            search: self.search.settings(target)?,
            progress: self.run.progress,
        })
    }
}

impl DrillArgs {
    /// The settings a drill's throwaway targets run with, refused if no
    /// engine could use them. The password waits for the backup's engine
    /// (`engine::DrillTarget::password_env`).
    pub fn engine_settings(&self) -> Result<DrillSettings> {
        let stale_after = vertice_crds::duration::parse(&self.stale_after)
            .map_err(|e| Error::usage(format!("--stale-after: {e}")));
        let settings = DrillSettings {
            password: None,
            scratch_prefix: self.scratch_prefix.clone(),
            stale_after: chrono::Duration::zero(),
            with_owner: self.with_owner,
            allow_older_server: self.allow_older_server,
            pg_restore: self.pg_restore.clone(),
            psql: self.psql.clone(),
            postgres_bin: self.postgres_bin.clone(),
            pg_jobs: self.jobs,
            bao_server: self.bao_server.clone(),
            redis_server: self.redis_server.clone(),
            kafka: self.kafka.connection()?,
            // The drill's engine is known only from the backup: the key
            // is read when one is configured at all.
            search: self.search.connection(true)?,
            progress: self.run.progress,
        };
        // A bad scratch prefix is named before a bad --stale-after.
        crate::engine::check_drill_settings(&settings)?;
        Ok(DrillSettings {
            stale_after: stale_after?,
            ..settings
        })
    }
}

impl VaultArgs {
    /// The Vault login of `--vault-*`, the token read here, once: from
    /// `--vault-token-file`, else the engine's variable. Only an engine
    /// that logs in with a token reads it, so another engine's run never
    /// fails on a Vault flag.
    pub fn login(&self, target: &Target) -> Result<VaultLogin> {
        let token = match target.token_env() {
            Some(env) => resolve_secret(self.vault_token_file.as_ref(), "--vault-token-file", env)?,
            None => None,
        };
        Ok(VaultLogin {
            token: token.map(Secret::from),
            k8s_role: self.vault_k8s_role.clone(),
            k8s_mount: self.vault_k8s_mount.clone(),
            k8s_jwt_file: self.vault_k8s_jwt_file.clone(),
            cacert: self.vault_cacert.clone(),
            namespace: self.vault_namespace.clone(),
        })
    }
}

impl KafkaConnectionArgs {
    /// How the run reaches a Kafka cluster, from its flags.
    pub fn connection(&self) -> Result<KafkaConnection> {
        let timeout = vertice_crds::duration::parse(&self.kafka_timeout)
            .ok()
            .and_then(|d| d.to_std().ok())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                Error::usage(format!(
                    "--kafka-timeout {:?}: expected a duration such as 30s or 2m",
                    self.kafka_timeout
                ))
            })?;
        Ok(KafkaConnection {
            ca_file: self.kafka_ca_file.clone(),
            cert_file: self.kafka_cert_file.clone(),
            key_file: self.kafka_key_file.clone(),
            timeout,
        })
    }
}

impl KafkaBackupArgs {
    /// A Kafka backup's topics and groups, from its flags.
    pub fn settings(&self) -> Result<KafkaBackup> {
        Ok(KafkaBackup {
            connection: self.connection.connection()?,
            topics: self
                .topics
                .iter()
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty())
                .collect(),
            topic_regex: kafka_pattern(self.topic_regex.as_ref(), "--topic-regex")?,
            include_internal: self.include_internal,
            groups: kafka_pattern(self.groups.as_ref(), "--groups")?,
            incremental: self.incremental,
            full_every: self.full_every,
            // Found once the store is open (`commands/backup.rs`).
            parent: None,
        })
    }
}

impl KafkaRestoreArgs {
    /// A Kafka restore's mapping and groups, from its flags.
    pub fn settings(&self) -> Result<KafkaRestore> {
        Ok(KafkaRestore {
            connection: self.connection.connection()?,
            topic_map: self.topic_map.clone(),
            groups: kafka_pattern(self.restore_groups.as_ref(), "--groups")?,
            keep_retention_suspended: self.kafka_keep_retention_suspended,
            resume: self.resume,
        })
    }
}

/// A `--topic-regex` / `--groups` pattern, which must match a whole name.
fn kafka_pattern(pattern: Option<&String>, flag: &str) -> Result<Option<regex::Regex>> {
    pattern
        .map(|p| crate::engine::kafka::selection::whole_match(p, flag))
        .transpose()
}

impl SearchConnectionArgs {
    /// How the run reaches a search cluster; the API key is read only when
    /// `reads_key` (the run's target is a search cluster), so another
    /// engine's run never fails on it.
    pub fn connection(&self, reads_key: bool) -> Result<SearchConnection> {
        let timeout = vertice_crds::duration::parse(&self.search_timeout)
            .ok()
            .and_then(|d| d.to_std().ok())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                Error::usage(format!(
                    "--search-timeout {:?}: expected a duration such as 60s or 5m",
                    self.search_timeout
                ))
            })?;
        let api_key = if reads_key {
            resolve_secret(
                self.search_api_key_file.as_ref(),
                "--search-api-key-file",
                crate::engine::search::target::API_KEY_ENV,
            )?
        } else {
            None
        };
        Ok(SearchConnection {
            api_key: api_key.map(Secret::from),
            ca_file: self.search_ca_file.clone(),
            timeout,
            flavour: self.search_flavour.map(|f| match f {
                crate::cli::SearchFlavourArg::Elasticsearch => "elasticsearch",
                crate::cli::SearchFlavourArg::Opensearch => "opensearch",
            }),
        })
    }
}

impl SearchBackupArgs {
    /// A search backup's indices, from its flags.
    pub fn settings(&self, target: &Target) -> Result<SearchBackup> {
        let searching = matches!(target, Target::Search(_));
        let named = self
            .search_repository
            .as_deref()
            .map(str::trim)
            .filter(|r| !r.is_empty());
        let client = self
            .search_repository_client
            .as_deref()
            .map(str::trim)
            .filter(|c| !c.is_empty());
        let own = client.is_some() || !self.search_repository_setting.is_empty();
        let snapshot = match (self.search_mode, named) {
            _ if !searching => None,
            (super::SearchModeArg::Export, None) if !own => None,
            (super::SearchModeArg::Export, _) => {
                return Err(Error::usage(
                    "--search-repository, --search-repository-client and --search-repository-setting are for --search-mode snapshot; an export needs no repository",
                ))
            }
            (super::SearchModeArg::Snapshot, Some(_)) if own => {
                return Err(Error::usage(
                    "--search-repository-client and --search-repository-setting are for the agent's own repository in the store; a repository named with --search-repository is configured on the cluster",
                ))
            }
            (super::SearchModeArg::Snapshot, Some(r)) => Some(SnapshotRepository::Named(r.to_string())),
            (super::SearchModeArg::Snapshot, None) => Some(SnapshotRepository::Managed {
                client: client.unwrap_or("default").to_string(),
                settings: crate::engine::search::repository::extra_settings(
                    &self.search_repository_setting,
                )
                .map_err(Error::usage)?,
                place: None,
            }),
        };
        Ok(SearchBackup {
            snapshot,
            connection: self
                .connection
                .connection(matches!(target, Target::Search(_)))?,
            indices: self
                .indices
                .iter()
                .map(|i| i.trim().to_string())
                .filter(|i| !i.is_empty())
                .collect(),
        })
    }
}

impl SearchRestoreArgs {
    /// A search restore's index map, from its flags.
    pub fn settings(&self, target: &Target) -> Result<SearchRestore> {
        Ok(SearchRestore {
            connection: self
                .connection
                .connection(matches!(target, Target::Search(_)))?,
            index_map: self.index_map.clone(),
            replace: self.search_replace,
        })
    }
}
