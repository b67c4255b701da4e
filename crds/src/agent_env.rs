//! The environment the controller gives the agent in a backup or drill Job:
//! one constant per name, written by the controller (`backup::cron_job`,
//! `backup::drill_job`) and read by the agent's command line (clap's
//! `env = …`), so both sides spell a name once. The agent's unit test
//! `every_name_the_controller_sets_is_read_by_a_flag` checks that each name
//! in [`ALL`] is the `env` of some argument, and the controller's that its
//! CronJobs set no other name than [`ALL`] and [`CREDENTIALS`]: a typo fails
//! a unit test instead of the real-cluster suite.

/// Where the controller mounts referenced Secrets, `<dir>/<secret>/<key>`;
/// the default of the agent's `--secrets-dir`.
pub const SECRETS_MOUNT: &str = "/var/run/secrets/vertice.io";

// Every run.
pub const NAMESPACE: &str = "VERTICE_NAMESPACE";
pub const BACKUP_NAME: &str = "VERTICE_BACKUP_NAME";
pub const LOG_FORMAT: &str = "VERTICE_LOG_FORMAT";
pub const PROGRESS: &str = "VERTICE_PROGRESS";
pub const SECRETS_DIR: &str = "VERTICE_SECRETS_DIR";
pub const PUSHGATEWAY_URL: &str = "VERTICE_PUSHGATEWAY_URL";

// The store.
pub const STORE: &str = "VERTICE_STORE";
pub const S3_ENDPOINT: &str = "VERTICE_S3_ENDPOINT";
pub const S3_REGION: &str = "VERTICE_S3_REGION";
pub const S3_PATH_STYLE: &str = "VERTICE_S3_PATH_STYLE";
pub const GCS_ENDPOINT: &str = "VERTICE_GCS_ENDPOINT";
pub const AZURE_ENDPOINT: &str = "VERTICE_AZURE_ENDPOINT";

// The backup's source.
pub const SOURCE: &str = "VERTICE_SOURCE";
pub const SOURCE_KIND: &str = "VERTICE_SOURCE_KIND";
pub const PG_DUMP_ARGS: &str = "VERTICE_PG_DUMP_ARGS";
/// Parallel workers of a PostgreSQL backup, restore or drill (`--jobs`).
pub const PG_JOBS: &str = "VERTICE_PG_JOBS";
pub const VAULT_CACERT: &str = "VERTICE_VAULT_CACERT";
pub const VAULT_NAMESPACE: &str = "VERTICE_VAULT_NAMESPACE";
pub const VAULT_K8S_ROLE: &str = "VERTICE_VAULT_K8S_ROLE";
pub const VAULT_K8S_MOUNT: &str = "VERTICE_VAULT_K8S_MOUNT";
pub const KAFKA_TOPICS: &str = "VERTICE_KAFKA_TOPICS";
pub const KAFKA_TOPIC_REGEX: &str = "VERTICE_KAFKA_TOPIC_REGEX";
pub const KAFKA_INCLUDE_INTERNAL: &str = "VERTICE_KAFKA_INCLUDE_INTERNAL";
pub const KAFKA_GROUPS: &str = "VERTICE_KAFKA_GROUPS";
pub const KAFKA_INCREMENTAL: &str = "VERTICE_KAFKA_INCREMENTAL";
pub const KAFKA_FULL_EVERY: &str = "VERTICE_KAFKA_FULL_EVERY";
pub const KAFKA_CA_FILE: &str = "VERTICE_KAFKA_CA_FILE";
pub const KAFKA_CERT_FILE: &str = "VERTICE_KAFKA_CERT_FILE";
pub const KAFKA_KEY_FILE: &str = "VERTICE_KAFKA_KEY_FILE";
pub const SEARCH_INDICES: &str = "VERTICE_SEARCH_INDICES";
pub const SEARCH_CA_FILE: &str = "VERTICE_SEARCH_CA_FILE";
pub const SEARCH_API_KEY_FILE: &str = "VERTICE_SEARCH_API_KEY_FILE";
pub const SEARCH_MODE: &str = "VERTICE_SEARCH_MODE";
pub const SEARCH_FLAVOUR: &str = "VERTICE_SEARCH_FLAVOUR";
pub const SEARCH_REPOSITORY: &str = "VERTICE_SEARCH_REPOSITORY";
pub const SEARCH_REPOSITORY_CLIENT: &str = "VERTICE_SEARCH_REPOSITORY_CLIENT";
pub const SEARCH_REPOSITORY_SETTINGS: &str = "VERTICE_SEARCH_REPOSITORY_SETTINGS";

// What only a backup run uses.
pub const COMPRESSION: &str = "VERTICE_COMPRESSION";
pub const COMPRESSION_LEVEL: &str = "VERTICE_COMPRESSION_LEVEL";
pub const ENCRYPT_TO: &str = "VERTICE_ENCRYPT_TO";
pub const HOOKS: &str = "VERTICE_HOOKS";
pub const NOTIFICATIONS: &str = "VERTICE_NOTIFICATIONS";

// Retention (`backup::RetentionSpec`, whose fields are the flags).
pub const KEEP_LAST: &str = "VERTICE_KEEP_LAST";
pub const KEEP_HOURLY: &str = "VERTICE_KEEP_HOURLY";
pub const KEEP_DAILY: &str = "VERTICE_KEEP_DAILY";
pub const KEEP_WEEKLY: &str = "VERTICE_KEEP_WEEKLY";
pub const KEEP_MONTHLY: &str = "VERTICE_KEEP_MONTHLY";
pub const KEEP_YEARLY: &str = "VERTICE_KEEP_YEARLY";
pub const KEEP_WITHIN: &str = "VERTICE_KEEP_WITHIN";
pub const MIN_KEEP: &str = "VERTICE_MIN_KEEP";

// A drill run.
pub const DRILL_BACKUP: &str = "VERTICE_DRILL_BACKUP";
pub const DRILL_RESTORE_TO: &str = "VERTICE_DRILL_RESTORE_TO";
pub const DRILL_SCRATCH_PREFIX: &str = "VERTICE_DRILL_SCRATCH_PREFIX";
pub const DRILL_CHECKS: &str = "VERTICE_DRILL_CHECKS";
pub const IDENTITY_FILE: &str = "VERTICE_IDENTITY_FILE";

/// Every `VERTICE_*` name the controller can set.
pub const ALL: &[&str] = &[
    NAMESPACE,
    BACKUP_NAME,
    LOG_FORMAT,
    PROGRESS,
    SECRETS_DIR,
    PUSHGATEWAY_URL,
    STORE,
    S3_ENDPOINT,
    S3_REGION,
    S3_PATH_STYLE,
    GCS_ENDPOINT,
    AZURE_ENDPOINT,
    SOURCE,
    SOURCE_KIND,
    PG_DUMP_ARGS,
    PG_JOBS,
    VAULT_CACERT,
    VAULT_NAMESPACE,
    VAULT_K8S_ROLE,
    VAULT_K8S_MOUNT,
    KAFKA_TOPICS,
    KAFKA_TOPIC_REGEX,
    KAFKA_INCLUDE_INTERNAL,
    KAFKA_GROUPS,
    KAFKA_INCREMENTAL,
    KAFKA_FULL_EVERY,
    KAFKA_CA_FILE,
    KAFKA_CERT_FILE,
    KAFKA_KEY_FILE,
    SEARCH_INDICES,
    SEARCH_CA_FILE,
    SEARCH_API_KEY_FILE,
    SEARCH_MODE,
    SEARCH_FLAVOUR,
    SEARCH_REPOSITORY,
    SEARCH_REPOSITORY_CLIENT,
    SEARCH_REPOSITORY_SETTINGS,
    COMPRESSION,
    COMPRESSION_LEVEL,
    ENCRYPT_TO,
    HOOKS,
    NOTIFICATIONS,
    KEEP_LAST,
    KEEP_HOURLY,
    KEEP_DAILY,
    KEEP_WEEKLY,
    KEEP_MONTHLY,
    KEEP_YEARLY,
    KEEP_WITHIN,
    MIN_KEEP,
    DRILL_BACKUP,
    DRILL_RESTORE_TO,
    DRILL_SCRATCH_PREFIX,
    DRILL_CHECKS,
    IDENTITY_FILE,
];

// Credentials, from `secretKeyRef`s: the conventional names the database
// clients and store SDKs read, which the agent reads too (not as flags).
pub const PGPASSWORD: &str = "PGPASSWORD";
pub const REDIS_PASSWORD: &str = "REDIS_PASSWORD";
pub const VAULT_TOKEN: &str = "VAULT_TOKEN";
pub const KAFKA_PASSWORD: &str = "KAFKA_PASSWORD";
pub const ELASTICSEARCH_PASSWORD: &str = "ELASTICSEARCH_PASSWORD";
pub const ELASTICSEARCH_API_KEY: &str = "ELASTICSEARCH_API_KEY";
pub const AWS_ACCESS_KEY_ID: &str = "AWS_ACCESS_KEY_ID";
pub const AWS_SECRET_ACCESS_KEY: &str = "AWS_SECRET_ACCESS_KEY";
pub const GOOGLE_APPLICATION_CREDENTIALS: &str = "GOOGLE_APPLICATION_CREDENTIALS";
pub const AZURE_STORAGE_SAS_TOKEN: &str = "AZURE_STORAGE_SAS_TOKEN";
pub const AZURE_STORAGE_KEY: &str = "AZURE_STORAGE_KEY";
pub const AZURE_STORAGE_CONNECTION_STRING: &str = "AZURE_STORAGE_CONNECTION_STRING";

/// Every other name the controller can set: credentials under their
/// conventional names.
pub const CREDENTIALS: &[&str] = &[
    PGPASSWORD,
    REDIS_PASSWORD,
    VAULT_TOKEN,
    KAFKA_PASSWORD,
    ELASTICSEARCH_PASSWORD,
    ELASTICSEARCH_API_KEY,
    AWS_ACCESS_KEY_ID,
    AWS_SECRET_ACCESS_KEY,
    GOOGLE_APPLICATION_CREDENTIALS,
    AZURE_STORAGE_SAS_TOKEN,
    AZURE_STORAGE_KEY,
    AZURE_STORAGE_CONNECTION_STRING,
];

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn names_are_distinct_and_prefixed() {
        let all: BTreeSet<_> = ALL.iter().collect();
        assert_eq!(all.len(), ALL.len());
        assert!(ALL.iter().all(|n| n.starts_with("VERTICE_")));
        assert!(CREDENTIALS.iter().all(|n| !n.starts_with("VERTICE_")));
    }
}
