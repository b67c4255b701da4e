//! The CronJob a `VerticeBackup` wants: pure, from the resource and the
//! controller's settings. Credentials reach the agent only as `secretKeyRef`
//! environment variables or files mounted from the referenced Secrets.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{
    CronJob, CronJobSpec, JobSpec, JobTemplateSpec, PodFailurePolicy,
    PodFailurePolicyOnPodConditionsPattern, PodFailurePolicyRule,
};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, EmptyDirVolumeSource, EnvVar, KeyToPath,
    PersistentVolumeClaimVolumeSource, PodSecurityContext, PodSpec, PodTemplateSpec,
    ResourceRequirements, SeccompProfile, SecretVolumeSource, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use vertice_crds::agent_env;
use vertice_crds::backup::{
    AzureStore, BackupTarget, ElasticsearchMode, ElasticsearchTarget, FileStore, GcsStore,
    KafkaTarget, PostgresTarget, RedisTarget, RetentionSpec, S3Store, StoreSpec, VaultTarget,
    VerticeBackupSpec,
};
use vertice_crds::drill_spec::DrillSpec;
use vertice_crds::notifications::Notifications;
use vertice_crds::pg_options::{normalize, Tool};
use vertice_crds::VerticeBackup;

pub use super::job_wiring::SpecError;
use super::job_wiring::{
    elasticsearch_url, encode, host, kafka_address, postgres_url, wire_elasticsearch_connection,
    wire_kafka_connection, Wiring,
};
use super::names;
use super::scheduled_run::RunKind;

/// An evicted, preempted or shut-down pod fails the Job at once with the
/// reason `PodFailurePolicy` naming `DisruptionTarget`: the status can then
/// say "interrupted" even after the pod is gone (a retry would hit the same
/// drain; the next run starts on schedule or with `vertice.io/run-now`).
fn fail_when_disrupted() -> PodFailurePolicy {
    PodFailurePolicy {
        rules: vec![PodFailurePolicyRule {
            action: "FailJob".into(),
            on_pod_conditions: Some(vec![PodFailurePolicyOnPodConditionsPattern {
                type_: "DisruptionTarget".into(),
                status: Some("True".into()),
            }]),
            on_exit_codes: None,
        }],
    }
}

/// Where referenced Secrets are mounted, `<dir>/<secret>/<key>`; the agent's
/// `--secrets-dir` default.
pub const SECRETS_DIR: &str = agent_env::SECRETS_MOUNT;
/// Where a `file` store's claim is mounted.
pub const FILE_STORE_MOUNT: &str = "/var/lib/vertice/backups";
/// Non-root uid of the agent image.
pub const AGENT_UID: i64 = 65532;

/// Settings of the controller that shape every CronJob.
#[derive(Debug, Clone, PartialEq)]
pub struct JobDefaults {
    /// Agent image used unless a backup overrides it.
    pub agent_image: String,
    /// Pushgateway for backups that name none.
    pub pushgateway_url: Option<String>,
}

/// The desired backup CronJob, owned by the backup.
pub fn desired(backup: &VerticeBackup, defaults: &JobDefaults) -> Result<CronJob, SpecError> {
    build(backup, defaults, RunKind::Backup)
}

/// The desired drill CronJob when `spec.drill` is set. It carries only what
/// a drill needs: the store's credentials, the drill target's, the identity;
/// never the source database's. (A Kafka or Elasticsearch drill's target
/// is the backed-up cluster itself: its drill pod reaches it with the
/// source's credentials and TLS files.)
pub fn desired_drill(
    backup: &VerticeBackup,
    defaults: &JobDefaults,
) -> Result<Option<CronJob>, SpecError> {
    if backup.spec.drill.is_none() {
        return Ok(None);
    }
    build(backup, defaults, RunKind::Drill).map(Some)
}

fn build(
    backup: &VerticeBackup,
    defaults: &JobDefaults,
    run: RunKind,
) -> Result<CronJob, SpecError> {
    let name = backup
        .metadata
        .name
        .clone()
        .ok_or_else(|| SpecError("metadata.name is missing".into()))?;
    let namespace = backup
        .metadata
        .namespace
        .clone()
        .ok_or_else(|| SpecError("metadata.namespace is missing".into()))?;
    let spec = &backup.spec;
    let mut wiring = Wiring::default();
    wiring.value(agent_env::NAMESPACE, &namespace);
    wiring.value(agent_env::BACKUP_NAME, &name);
    wiring.value(agent_env::LOG_FORMAT, "json");
    wiring.value(agent_env::PROGRESS, "log");
    wiring.value(agent_env::SECRETS_DIR, SECRETS_DIR);
    let drill = spec.drill.as_ref().filter(|_| run == RunKind::Drill);
    let needs_api_token = match drill {
        Some(d) => {
            super::drill_job::wire(d, &spec.target, spec.encryption.is_some(), &mut wiring)?;
            // A drill restores into its own target; it never logs in to Vault.
            false
        }
        None => wire_target(&spec.target, &mut wiring)?,
    };
    let (mut volumes, mut mounts) = scratch_volume(drill);
    wire_store(&spec.store, &mut wiring, &mut volumes, &mut mounts)?;

    if run == RunKind::Backup {
        wire_backup_settings(backup, &mut wiring)?;
    }
    let pushgateway = spec
        .metrics
        .as_ref()
        .map(|m| m.pushgateway_url.clone())
        .or_else(|| defaults.pushgateway_url.clone());
    if let Some(url) = pushgateway {
        wiring.value(agent_env::PUSHGATEWAY_URL, url);
    }

    secret_volumes(&wiring.files, &mut volumes, &mut mounts);

    let mut labels = names::labels(&name);
    if run == RunKind::Drill {
        labels.insert(names::RUN_LABEL.into(), names::RUN_DRILL.into());
    }
    let mut pod_labels = spec.pod.labels.clone();
    pod_labels.extend(labels.clone());
    let container = container(spec, defaults, run, wiring.env, mounts);
    let pod = pod_spec(spec, container, volumes, needs_api_token);
    assemble(backup, name, namespace, drill, labels, pod_labels, pod)
}

/// `/tmp`, the agent's only writable directory: an emptyDir of the drill's
/// `scratchSize` (or the default).
fn scratch_volume(drill: Option<&DrillSpec>) -> (Vec<Volume>, Vec<VolumeMount>) {
    let scratch = drill
        .and_then(|d| d.scratch_size.clone())
        .unwrap_or_else(|| super::drill_job::default_scratch_size(drill).into());
    let volumes = vec![Volume {
        name: "tmp".into(),
        empty_dir: Some(EmptyDirVolumeSource {
            size_limit: Some(Quantity(scratch)),
            ..Default::default()
        }),
        ..Default::default()
    }];
    let mounts = vec![VolumeMount {
        name: "tmp".into(),
        mount_path: "/tmp".into(),
        ..Default::default()
    }];
    (volumes, mounts)
}

/// A read-only volume per Secret the agent reads files of, mounted at
/// `<secrets dir>/<secret>`.
fn secret_volumes(
    files: &BTreeMap<String, Vec<String>>,
    volumes: &mut Vec<Volume>,
    mounts: &mut Vec<VolumeMount>,
) {
    for (secret, keys) in files {
        let volume = names::secret_volume(secret);
        volumes.push(Volume {
            name: volume.clone(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret.clone()),
                items: Some(
                    keys.iter()
                        .map(|k| KeyToPath {
                            key: k.clone(),
                            path: k.clone(),
                            ..Default::default()
                        })
                        .collect(),
                ),
                default_mode: Some(0o440),
                optional: Some(false),
                ..Default::default()
            }),
            ..Default::default()
        });
        mounts.push(VolumeMount {
            name: volume,
            mount_path: format!("{SECRETS_DIR}/{secret}"),
            read_only: Some(true),
            ..Default::default()
        });
    }
}

/// The agent's container: unprivileged, read-only root, its command the
/// run's kind.
fn container(
    spec: &VerticeBackupSpec,
    defaults: &JobDefaults,
    run: RunKind,
    env: Vec<EnvVar>,
    mounts: Vec<VolumeMount>,
) -> Container {
    Container {
        name: "agent".into(),
        image: Some(
            spec.pod
                .image
                .clone()
                .unwrap_or_else(|| defaults.agent_image.clone()),
        ),
        image_pull_policy: spec.pod.image_pull_policy.clone(),
        args: Some(vec![run.what().into()]),
        env: Some(env),
        volume_mounts: Some(mounts),
        resources: Some(spec.pod.resources.clone().unwrap_or_else(default_resources)),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                add: None,
            }),
            ..Default::default()
        }),
        termination_message_path: Some("/dev/termination-log".into()),
        termination_message_policy: Some("File".into()),
        ..Default::default()
    }
}

/// The run's pod: the container, the administrator-visible pod settings,
/// non-root with the runtime's seccomp profile.
fn pod_spec(
    spec: &VerticeBackupSpec,
    container: Container,
    volumes: Vec<Volume>,
    needs_api_token: bool,
) -> PodSpec {
    PodSpec {
        containers: vec![container],
        restart_policy: Some("Never".into()),
        service_account_name: spec.pod.service_account_name.clone(),
        // Backups need no API access; only Vault's Kubernetes auth needs the
        // pod's token (workload identity webhooks project their own).
        automount_service_account_token: Some(needs_api_token),
        node_selector: (!spec.pod.node_selector.is_empty()).then(|| spec.pod.node_selector.clone()),
        tolerations: (!spec.pod.tolerations.is_empty()).then(|| spec.pod.tolerations.clone()),
        priority_class_name: spec.pod.priority_class_name.clone(),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(AGENT_UID),
            run_as_group: Some(AGENT_UID),
            fs_group: Some(AGENT_UID),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                localhost_profile: None,
            }),
            ..Default::default()
        }),
        volumes: Some(volumes),
        ..Default::default()
    }
}

/// The CronJob around the pod: the backup's schedule or the drill's,
/// `Forbid` overlapping runs, owned by the backup.
fn assemble(
    backup: &VerticeBackup,
    name: String,
    namespace: String,
    drill: Option<&DrillSpec>,
    labels: BTreeMap<String, String>,
    pod_labels: BTreeMap<String, String>,
    pod: PodSpec,
) -> Result<CronJob, SpecError> {
    let spec = &backup.spec;
    let job = &spec.job;
    let owner = backup
        .controller_owner_ref(&())
        .ok_or_else(|| SpecError("metadata.uid is missing".into()))?;
    let (cron_name, schedule, time_zone, suspend) = match drill {
        Some(d) => (
            names::drill_cron_job(&name),
            d.schedule.cron.trim().to_string(),
            d.schedule.time_zone.clone(),
            spec.suspend || d.suspend,
        ),
        None => (
            names::cron_job(&name),
            spec.schedule.cron.trim().to_string(),
            spec.schedule.time_zone.clone(),
            spec.suspend,
        ),
    };
    Ok(CronJob {
        metadata: ObjectMeta {
            name: Some(cron_name),
            namespace: Some(namespace),
            labels: Some(labels.clone()),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: CronJobSpec {
            schedule,
            time_zone: Some(time_zone.unwrap_or_else(|| "Etc/UTC".into())),
            suspend: Some(suspend),
            concurrency_policy: Some("Forbid".into()),
            starting_deadline_seconds: Some(job.starting_deadline_seconds),
            successful_jobs_history_limit: Some(job.successful_jobs_history_limit),
            failed_jobs_history_limit: Some(job.failed_jobs_history_limit),
            job_template: JobTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    // Labels are cut at 63 characters; the watch maps Jobs back by this.
                    annotations: Some(BTreeMap::from([(
                        names::BACKUP_NAME_ANNOTATION.to_string(),
                        name.clone(),
                    )])),
                    ..Default::default()
                }),
                spec: Some(JobSpec {
                    backoff_limit: Some(job.backoff_limit),
                    active_deadline_seconds: Some(job.active_deadline_seconds),
                    pod_failure_policy: Some(fail_when_disrupted()),
                    template: PodTemplateSpec {
                        metadata: Some(ObjectMeta {
                            labels: Some(pod_labels),
                            annotations: (!spec.pod.annotations.is_empty())
                                .then(|| spec.pod.annotations.clone()),
                            ..Default::default()
                        }),
                        spec: Some(pod),
                    },
                    ..Default::default()
                }),
            },
        },
        status: None,
    })
}

/// Compression, encryption, retention, hooks and notifications: what only
/// a backup run uses.
fn wire_backup_settings(backup: &VerticeBackup, wiring: &mut Wiring) -> Result<(), SpecError> {
    let spec = &backup.spec;
    wiring.value(
        agent_env::COMPRESSION,
        spec.compression.algorithm.to_string(),
    );
    if let Some(level) = spec.compression.level {
        wiring.value(agent_env::COMPRESSION_LEVEL, level.to_string());
    }
    if let Some(encryption) = &spec.encryption {
        wiring.value(agent_env::ENCRYPT_TO, encryption.recipients.join(","));
    }
    if let Some(r) = &spec.retention {
        wire_retention(r, wiring)?;
    }
    wire_hooks(spec, wiring)?;
    if let Some(n) = &spec.notifications {
        wire_notifications(n, wiring)?;
    }
    Ok(())
}

fn wire_retention(r: &RetentionSpec, wiring: &mut Wiring) -> Result<(), SpecError> {
    // The CRD's pattern lets through what the agent's parse refuses
    // (`0d`, an overflowing count): refused here, under the field's
    // name, rather than by the agent on every run.
    if let Some(within) = &r.keep_within {
        within.get().map_err(|_| {
            SpecError(format!(
                "spec.retention.keepWithin: {:?} is zero, too long or not a duration; write a positive one such as 7d or 12h",
                within.as_str()
            ))
        })?;
    }
    for (var, value) in r.env() {
        wiring.value(var, value);
    }
    Ok(())
}

fn wire_hooks(spec: &VerticeBackupSpec, wiring: &mut Wiring) -> Result<(), SpecError> {
    if (spec.target.vault.is_some()
        || spec.target.kafka.is_some()
        || spec.target.elasticsearch.is_some())
        && spec
            .hooks
            .pre
            .iter()
            .chain(&spec.hooks.post)
            .any(|h| h.sql.is_some())
    {
        return Err(SpecError(
            "spec.hooks: sql hooks run on PostgreSQL and Redis targets; use an http hook with a Vault, Kafka or Elasticsearch target".into(),
        ));
    }
    if spec.hooks.is_empty() {
        return Ok(());
    }
    for header in spec
        .hooks
        .pre
        .iter()
        .chain(&spec.hooks.post)
        .filter_map(|h| h.http.as_ref())
    {
        if let Some(s) = &header.url_secret_ref {
            wiring.secret_file(s);
        }
        for h in header
            .headers
            .iter()
            .filter_map(|h| h.value_secret_ref.as_ref())
        {
            wiring.secret_file(h);
        }
    }
    wiring.value(agent_env::HOOKS, json(&spec.hooks)?);
    Ok(())
}

fn wire_notifications(n: &Notifications, wiring: &mut Wiring) -> Result<(), SpecError> {
    let refs = [
        n.slack.as_ref().map(|s| &s.webhook_url_secret_ref),
        n.pagerduty.as_ref().map(|p| &p.routing_key_secret_ref),
        n.email
            .as_ref()
            .and_then(|e| e.username_secret_ref.as_ref()),
        n.email
            .as_ref()
            .and_then(|e| e.password_secret_ref.as_ref()),
        n.webhook.as_ref().map(|w| &w.url_secret_ref),
    ];
    for selector in refs.into_iter().flatten() {
        wiring.secret_file(selector);
    }
    for h in n
        .webhook
        .iter()
        .flat_map(|w| &w.headers)
        .filter_map(|h| h.value_secret_ref.as_ref())
    {
        wiring.secret_file(h);
    }
    wiring.value(agent_env::NOTIFICATIONS, json(n)?);
    Ok(())
}

/// Source URL and credentials; returns whether the pod needs its API token.
fn wire_target(target: &BackupTarget, w: &mut Wiring) -> Result<bool, SpecError> {
    if let Some(pg) = &target.postgres {
        return wire_postgres(pg, w).map(|()| false);
    }
    if let Some(redis) = &target.redis {
        wire_redis(redis, w);
        return Ok(false);
    }
    if let Some(vault) = &target.vault {
        return wire_vault(vault, w);
    }
    if let Some(kafka) = &target.kafka {
        return wire_kafka(kafka, w).map(|()| false);
    }
    if let Some(es) = &target.elasticsearch {
        return wire_elasticsearch(es, w).map(|()| false);
    }
    Err(SpecError(
        "spec.target: set one of postgres, redis, vault, kafka, elasticsearch".into(),
    ))
}

fn wire_postgres(pg: &PostgresTarget, w: &mut Wiring) -> Result<(), SpecError> {
    let url = postgres_url(
        &pg.user,
        &pg.host,
        pg.port,
        &pg.database,
        pg.ssl_mode.as_deref(),
    );
    w.value(agent_env::SOURCE, url);
    if let Some(s) = &pg.password_secret_ref {
        w.secret_env(agent_env::PGPASSWORD, &s.name, &s.key);
    }
    if let Some(bad) = pg
        .pg_dump_args
        .iter()
        .find(|a| a.contains(char::is_whitespace))
    {
        return Err(SpecError(format!(
            "spec.target.postgres.pgDumpArgs: {bad:?} contains whitespace; give each option as its own item, as --option=value"
        )));
    }
    // The agent's own safe-list, so a spec it would refuse is Invalid now
    // rather than a failing Job at the next schedule.
    let args = normalize(
        &pg.pg_dump_args,
        "spec.target.postgres.pgDumpArgs",
        Tool::PgDump,
    )
    .map_err(SpecError)?;
    if !args.is_empty() {
        w.value(agent_env::PG_DUMP_ARGS, args.join(" "));
    }
    if let Some(jobs) = pg.jobs {
        w.value(agent_env::PG_JOBS, jobs.to_string());
    }
    Ok(())
}

fn wire_redis(redis: &RedisTarget, w: &mut Wiring) {
    let user = redis
        .username
        .as_deref()
        .map(|u| format!("{}@", encode(u)))
        .unwrap_or_default();
    w.value(
        agent_env::SOURCE,
        format!("redis://{user}{}:{}", host(&redis.host), redis.port),
    );
    if let Some(s) = &redis.password_secret_ref {
        w.secret_env(agent_env::REDIS_PASSWORD, &s.name, &s.key);
    }
}

/// Returns whether the pod needs its API token (Kubernetes auth).
fn wire_vault(vault: &VaultTarget, w: &mut Wiring) -> Result<bool, SpecError> {
    w.value(agent_env::SOURCE, vault.address.trim_end_matches('/'));
    w.value(agent_env::SOURCE_KIND, "vault");
    if let Some(s) = &vault.token_secret_ref {
        w.secret_env(agent_env::VAULT_TOKEN, &s.name, &s.key);
    }
    if let Some(ca) = &vault.ca_cert_secret_ref {
        let path = w.secret_file(ca);
        w.value(agent_env::VAULT_CACERT, path);
    }
    if let Some(ns) = &vault.namespace {
        w.value(agent_env::VAULT_NAMESPACE, ns);
    }
    if let Some(k8s) = &vault.kubernetes_auth {
        w.value(agent_env::VAULT_K8S_ROLE, &k8s.role);
        w.value(agent_env::VAULT_K8S_MOUNT, &k8s.mount);
        return Ok(true);
    }
    if vault.token_secret_ref.is_none() {
        return Err(SpecError(
            "spec.target.vault: set tokenSecretRef or kubernetesAuth so the agent can log in"
                .into(),
        ));
    }
    Ok(false)
}

/// The cluster's address and connection, and which topics and groups.
fn wire_kafka(kafka: &KafkaTarget, w: &mut Wiring) -> Result<(), SpecError> {
    w.value(agent_env::SOURCE, kafka_address(kafka));
    wire_kafka_connection(kafka, "spec.target.kafka", w)?;
    if !kafka.topics.is_empty() {
        w.value(agent_env::KAFKA_TOPICS, kafka.topics.join(","));
    }
    if let Some(regex) = &kafka.topic_regex {
        w.value(agent_env::KAFKA_TOPIC_REGEX, regex);
    }
    if kafka.include_internal {
        w.value(agent_env::KAFKA_INCLUDE_INTERNAL, "true");
    }
    if let Some(groups) = &kafka.groups {
        w.value(agent_env::KAFKA_GROUPS, groups);
    }
    if let Some(incremental) = &kafka.incremental {
        w.value(agent_env::KAFKA_INCREMENTAL, "true");
        if let Some(n) = incremental.full_every {
            w.value(agent_env::KAFKA_FULL_EVERY, n.to_string());
        }
    }
    Ok(())
}

/// The cluster's URL (with the user), its kind (an `http(s)://` URL alone
/// does not say it is a search cluster), the connection, which indices.
fn wire_elasticsearch(es: &ElasticsearchTarget, w: &mut Wiring) -> Result<(), SpecError> {
    w.value(
        agent_env::SOURCE,
        elasticsearch_url(es, "spec.target.elasticsearch")?,
    );
    w.value(agent_env::SOURCE_KIND, "elasticsearch");
    wire_elasticsearch_connection(es, "spec.target.elasticsearch", w)?;
    if es.mode == Some(ElasticsearchMode::Snapshot) {
        w.value(agent_env::SEARCH_MODE, "snapshot");
        // Without a repository the agent registers its own in the store.
        if let Some(repository) = &es.repository {
            w.value(agent_env::SEARCH_REPOSITORY, repository);
        } else {
            if let Some(client) = &es.repository_client {
                w.value(agent_env::SEARCH_REPOSITORY_CLIENT, client);
            }
            if let Some(settings) = es.repository_settings.as_ref().filter(|s| !s.is_empty()) {
                let pairs: Vec<String> = settings.iter().map(|(k, v)| format!("{k}={v}")).collect();
                w.value(agent_env::SEARCH_REPOSITORY_SETTINGS, pairs.join(","));
            }
        }
    } else if es.repository.is_some()
        || es.repository_client.is_some()
        || es
            .repository_settings
            .as_ref()
            .is_some_and(|s| !s.is_empty())
    {
        return Err(SpecError(
            "spec.target.elasticsearch: repository, repositoryClient and repositorySettings are for mode snapshot only".into(),
        ));
    }
    if !es.indices.is_empty() {
        w.value(agent_env::SEARCH_INDICES, es.indices.join(","));
    }
    Ok(())
}

fn wire_store(
    store: &StoreSpec,
    w: &mut Wiring,
    volumes: &mut Vec<Volume>,
    mounts: &mut Vec<VolumeMount>,
) -> Result<(), SpecError> {
    if let Some(s3) = &store.s3 {
        wire_s3(s3, w);
    } else if let Some(gcs) = &store.gcs {
        wire_gcs(gcs, w);
    } else if let Some(az) = &store.azure {
        wire_azure(az, w);
    } else if let Some(file) = &store.file {
        wire_file_store(file, w, volumes, mounts)?;
    } else {
        return Err(SpecError(
            "spec.store: set one of s3, gcs, azure, file".into(),
        ));
    }
    Ok(())
}

/// `base/prefix`, or `base` when the prefix is empty.
fn with_prefix(base: String, prefix: &str) -> String {
    let prefix = prefix.trim_matches('/');
    if prefix.is_empty() {
        base
    } else {
        format!("{base}/{prefix}")
    }
}

fn wire_s3(s3: &S3Store, w: &mut Wiring) {
    w.value(
        agent_env::STORE,
        with_prefix(format!("s3://{}", s3.bucket), &s3.prefix),
    );
    if let Some(endpoint) = &s3.endpoint {
        w.value(agent_env::S3_ENDPOINT, endpoint);
    }
    if let Some(region) = &s3.region {
        w.value(agent_env::S3_REGION, region);
    }
    if let Some(path_style) = s3.force_path_style {
        w.value(agent_env::S3_PATH_STYLE, path_style.to_string());
    }
    if let Some(c) = &s3.credentials {
        w.secret_env(
            agent_env::AWS_ACCESS_KEY_ID,
            &c.secret_name,
            &c.access_key_id_key,
        );
        w.secret_env(
            agent_env::AWS_SECRET_ACCESS_KEY,
            &c.secret_name,
            &c.secret_access_key_key,
        );
    }
}

fn wire_gcs(gcs: &GcsStore, w: &mut Wiring) {
    w.value(
        agent_env::STORE,
        with_prefix(format!("gs://{}", gcs.bucket), &gcs.prefix),
    );
    if let Some(endpoint) = &gcs.endpoint {
        w.value(agent_env::GCS_ENDPOINT, endpoint);
    }
    if let Some(key) = &gcs.credentials_secret_ref {
        let path = w.secret_file(key);
        w.value(agent_env::GOOGLE_APPLICATION_CREDENTIALS, path);
    }
}

fn wire_azure(az: &AzureStore, w: &mut Wiring) {
    w.value(
        agent_env::STORE,
        with_prefix(
            format!("azblob://{}/{}", az.account, az.container),
            &az.prefix,
        ),
    );
    if let Some(endpoint) = &az.endpoint {
        w.value(agent_env::AZURE_ENDPOINT, endpoint);
    }
    for (var, selector) in [
        (agent_env::AZURE_STORAGE_SAS_TOKEN, &az.sas_token_secret_ref),
        (agent_env::AZURE_STORAGE_KEY, &az.account_key_secret_ref),
        (
            agent_env::AZURE_STORAGE_CONNECTION_STRING,
            &az.connection_string_secret_ref,
        ),
    ] {
        if let Some(s) = selector {
            w.secret_env(var, &s.name, &s.key);
        }
    }
}

/// A `file` store: the claim mounted at [`FILE_STORE_MOUNT`].
fn wire_file_store(
    file: &FileStore,
    w: &mut Wiring,
    volumes: &mut Vec<Volume>,
    mounts: &mut Vec<VolumeMount>,
) -> Result<(), SpecError> {
    if file.path.split('/').any(|part| part == "..") {
        return Err(SpecError(
            "spec.store.file.path must stay inside the volume (no ..)".into(),
        ));
    }
    w.value(
        agent_env::STORE,
        with_prefix(format!("file://{FILE_STORE_MOUNT}"), &file.path),
    );
    volumes.push(Volume {
        name: "backups".into(),
        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
            claim_name: file.claim_name.clone(),
            read_only: Some(false),
        }),
        ..Default::default()
    });
    mounts.push(VolumeMount {
        name: "backups".into(),
        mount_path: FILE_STORE_MOUNT.into(),
        ..Default::default()
    });
    Ok(())
}

fn default_resources() -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_string(), Quantity("100m".into())),
            ("memory".to_string(), Quantity("128Mi".into())),
        ])),
        limits: Some(BTreeMap::from([(
            "memory".to_string(),
            Quantity("512Mi".into()),
        )])),
        claims: None,
    }
}

fn json<T: serde::Serialize>(value: &T) -> Result<String, SpecError> {
    serde_json::to_string(value)
        .map_err(|e| SpecError(format!("cannot encode the agent configuration: {e}")))
}
