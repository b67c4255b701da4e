//! The pure CronJob builder over a range of specs, compared with reviewed
//! golden files (`VERTICE_UPDATE_GOLDEN=1` rewrites them), plus the rules
//! every CronJob must keep whatever the spec.

use std::path::{Path, PathBuf};

use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::PodSpec;
use vertice_controller::backup::cron_job::{desired, desired_drill, JobDefaults};
use vertice_crds::{agent_env, VerticeBackup};

fn cases() -> Vec<(String, VerticeBackup)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut cases: Vec<(String, VerticeBackup)> = std::fs::read_dir(&dir)
        .expect("golden dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter_map(|p| {
            let name = p
                .file_name()?
                .to_str()?
                .strip_suffix(".input.yaml")?
                .to_string();
            let text = std::fs::read_to_string(&p).expect("read input");
            Some((
                name,
                serde_saphyr::from_str(&text).expect("input is a VerticeBackup"),
            ))
        })
        .collect();
    cases.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(cases.len() >= 4, "golden inputs missing");
    cases
}

fn defaults() -> JobDefaults {
    JobDefaults {
        agent_image: "ghcr.io/vertice/agent:0.1.0".into(),
        pushgateway_url: Some("http://pushgateway.vertice-system:9091".into()),
    }
}

fn build(backup: &VerticeBackup) -> CronJob {
    desired(backup, &defaults()).expect("valid spec")
}

/// The pod a CronJob's Jobs run.
fn pod_of(cj: CronJob) -> PodSpec {
    cj.spec
        .job_template
        .spec
        .expect("job")
        .template
        .spec
        .expect("pod")
}

#[test]
fn cron_jobs_match_the_golden_files() {
    let update = std::env::var_os("VERTICE_UPDATE_GOLDEN").is_some();
    for (name, backup) in cases() {
        let rendered = serde_saphyr::to_string(&build(&backup)).expect("yaml");
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join(format!("tests/golden/{name}.cronjob.yaml"));
        if update {
            std::fs::write(&path, &rendered).expect("write golden");
            continue;
        }
        let expected = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(expected == rendered, "{name}: CronJob differs from {}; review and rerun with VERTICE_UPDATE_GOLDEN=1\n{rendered}", path.display());
    }
}

#[test]
fn every_cron_job_is_locked_down() {
    for (name, backup) in cases() {
        let cj = build(&backup);
        let spec = &cj.spec;
        assert_eq!(spec.concurrency_policy.as_deref(), Some("Forbid"), "{name}");
        assert!(
            spec.time_zone.is_some() && spec.starting_deadline_seconds.is_some(),
            "{name}"
        );
        assert!(
            spec.successful_jobs_history_limit.is_some()
                && spec.failed_jobs_history_limit.is_some(),
            "{name}"
        );
        let job = spec.job_template.spec.as_ref().expect("job spec");
        assert!(
            job.backoff_limit.is_some() && job.active_deadline_seconds.is_some(),
            "{name}"
        );
        let pod = job.template.spec.as_ref().expect("pod spec");
        let psc = pod.security_context.as_ref().expect("pod security context");
        assert_eq!(psc.run_as_non_root, Some(true), "{name}");
        assert_eq!(
            psc.seccomp_profile.as_ref().map(|s| s.type_.as_str()),
            Some("RuntimeDefault"),
            "{name}"
        );
        assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
        let c = &pod.containers[0];
        let sc = c
            .security_context
            .as_ref()
            .expect("container security context");
        assert_eq!(sc.allow_privilege_escalation, Some(false), "{name}");
        assert_eq!(sc.read_only_root_filesystem, Some(true), "{name}");
        assert_eq!(
            sc.capabilities.as_ref().and_then(|c| c.drop.clone()),
            Some(vec!["ALL".to_string()]),
            "{name}"
        );
        let resources = c.resources.as_ref().expect("resources");
        assert!(
            resources.requests.is_some() && resources.limits.is_some(),
            "{name}"
        );
        // Credentials only by reference: no literal value for a secret-looking variable.
        for env in c.env.iter().flatten() {
            let secretish = ["PASSWORD", "TOKEN", "SECRET", "KEY", "CONNECTION_STRING"]
                .iter()
                .any(|w| env.name.contains(w));
            if secretish && !env.name.ends_with("_FILE") && !env.name.ends_with("_DIR") {
                assert!(
                    env.value.is_none() && env.value_from.is_some(),
                    "{name}: {} carries a literal value",
                    env.name
                );
            }
        }
        let name_len = cj.metadata.name.as_deref().map(str::len).unwrap_or(0);
        assert!(
            (1..=52).contains(&name_len),
            "{name}: CronJob name length {name_len}"
        );
    }
}

#[test]
fn secrets_referenced_by_hooks_and_notifications_are_mounted_as_files() {
    let (_, backup) = cases()
        .into_iter()
        .find(|(n, _)| n == "postgres-s3")
        .expect("case");
    let pod = pod_of(build(&backup));
    let mounts: Vec<String> = pod.containers[0]
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| m.mount_path.clone())
        .collect();
    for secret in ["alerts", "hc"] {
        assert!(
            mounts.contains(&format!("/var/run/secrets/vertice.io/{secret}")),
            "{secret} not mounted: {mounts:?}"
        );
    }
    let alerts = pod
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == "secret-alerts")
        .expect("volume");
    let keys: Vec<String> = alerts
        .secret
        .as_ref()
        .and_then(|s| s.items.clone())
        .into_iter()
        .flatten()
        .map(|i| i.key)
        .collect();
    assert_eq!(
        keys,
        ["slack", "pagerduty"],
        "only the referenced keys are projected"
    );
}

#[test]
fn an_unusable_spec_names_the_field() {
    let (_, mut backup) = cases()
        .into_iter()
        .find(|(n, _)| n == "postgres-s3")
        .expect("case");
    if let Some(pg) = backup.spec.target.postgres.as_mut() {
        pg.pg_dump_args = vec!["--exclude-table audit".into()];
    }
    let err = desired(&backup, &defaults()).expect_err("whitespace in an argument");
    assert!(
        err.to_string().contains("spec.target.postgres.pgDumpArgs"),
        "{err}"
    );
    // The agent's safe-list applies here too: no abbreviation or bundle
    // takes over the dump's format or output.
    for takeover in ["--fil=/x", "--forma=plain", "-vFp", "otherdb"] {
        if let Some(pg) = backup.spec.target.postgres.as_mut() {
            pg.pg_dump_args = vec![takeover.into()];
        }
        let err = desired(&backup, &defaults()).expect_err(takeover);
        assert!(
            err.to_string().contains("spec.target.postgres.pgDumpArgs"),
            "{takeover}: {err}"
        );
    }
}

#[test]
fn sql_hooks_on_a_vault_target_are_refused() {
    let (_, mut backup) = cases()
        .into_iter()
        .find(|(n, _)| n == "vault-azure")
        .expect("case");
    backup.spec.hooks.pre.push(
        serde_json::from_value(serde_json::json!({"name": "x", "sql": {"statement": "select 1"}}))
            .expect("hook"),
    );
    let err = desired(&backup, &defaults()).expect_err("sql hook on Vault");
    assert!(err.to_string().contains("spec.hooks"), "{err}");
}

#[test]
fn sql_hooks_on_a_kafka_target_are_refused() {
    let (_, mut backup) = cases()
        .into_iter()
        .find(|(n, _)| n == "kafka-s3")
        .expect("case");
    backup.spec.hooks.pre.push(
        serde_json::from_value(serde_json::json!({"name": "x", "sql": {"statement": "select 1"}}))
            .expect("hook"),
    );
    let err = desired(&backup, &defaults()).expect_err("sql hook on Kafka");
    assert!(err.to_string().contains("spec.hooks"), "{err}");
}

/// `(name, literal value or the Secret's name/key)` of each env var.
fn env_of(pod: &PodSpec) -> Vec<(String, String)> {
    pod.containers[0]
        .env
        .iter()
        .flatten()
        .map(|e| {
            let value = match (
                &e.value,
                e.value_from
                    .as_ref()
                    .and_then(|v| v.secret_key_ref.as_ref()),
            ) {
                (Some(v), _) => v.clone(),
                (None, Some(s)) => format!("secret {}/{}", s.name, s.key),
                (None, None) => String::new(),
            };
            (e.name.clone(), value)
        })
        .collect()
}

#[test]
fn a_kafka_backup_reaches_its_cluster_by_address_password_and_tls_files() {
    let (_, backup) = cases()
        .into_iter()
        .find(|(n, _)| n == "kafka-s3")
        .expect("case");
    let secrets = "/var/run/secrets/vertice.io";
    let pod = pod_of(build(&backup));
    let env = env_of(&pod);
    let get = |name: &str| env.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    let servers = "events-kafka-0.events-kafka.streaming.svc:9093,events-kafka-1.events-kafka.streaming.svc:9093";
    let address = format!("kafkas://vertice-backup@{servers}?mechanism=SCRAM-SHA-256");
    assert_eq!(get(agent_env::SOURCE), Some(address.as_str()));
    assert_eq!(
        get(agent_env::KAFKA_PASSWORD),
        Some("secret events-kafka-backup/password")
    );
    let ca = format!("{secrets}/events-kafka-ca/ca.crt");
    let cert = format!("{secrets}/events-kafka-client/tls.crt");
    let key = format!("{secrets}/events-kafka-client/tls.key");
    assert_eq!(get(agent_env::KAFKA_CA_FILE), Some(ca.as_str()));
    assert_eq!(get(agent_env::KAFKA_CERT_FILE), Some(cert.as_str()));
    assert_eq!(get(agent_env::KAFKA_KEY_FILE), Some(key.as_str()));
    assert_eq!(get(agent_env::KAFKA_TOPICS), Some("orders,payments"));
    assert_eq!(get(agent_env::KAFKA_TOPIC_REGEX), Some("audit\\..*"));
    assert_eq!(get(agent_env::KAFKA_GROUPS), Some("billing-.*"));
    assert_eq!(get(agent_env::KAFKA_INCLUDE_INTERNAL), None);
    assert_eq!(get(agent_env::SOURCE_KIND), None);
    // The TLS Secrets as files, only the referenced keys; no API token.
    let projected: Vec<(String, Vec<String>)> = pod
        .volumes
        .iter()
        .flatten()
        .filter_map(|v| {
            let s = v.secret.as_ref()?;
            let keys = s.items.iter().flatten().map(|i| i.key.clone()).collect();
            Some((s.secret_name.clone()?, keys))
        })
        .collect();
    assert_eq!(
        projected,
        [
            ("events-kafka-ca".to_string(), vec!["ca.crt".to_string()]),
            (
                "events-kafka-client".to_string(),
                vec!["tls.crt".to_string(), "tls.key".to_string()]
            ),
        ]
    );
    assert_eq!(pod.automount_service_account_token, Some(false));
    assert_eq!(pod.service_account_name, None);

    // Plaintext without SASL: the bare address and nothing else to reach it.
    let mut plain = backup.clone();
    if let Some(k) = plain.spec.target.kafka.as_mut() {
        k.tls = None;
        k.sasl = None;
        k.topics.clear();
        k.topic_regex = None;
        k.groups = None;
        k.include_internal = true;
        k.incremental = None;
    }
    let pod = pod_of(build(&plain));
    let env = env_of(&pod);
    let names: Vec<&str> = env.iter().map(|(n, _)| n.as_str()).collect();
    assert!(
        env.contains(&(agent_env::SOURCE.into(), format!("kafka://{servers}"))),
        "{env:?}"
    );
    assert!(
        env.contains(&(agent_env::KAFKA_INCLUDE_INTERNAL.into(), "true".into())),
        "{env:?}"
    );
    for absent in [
        agent_env::KAFKA_PASSWORD,
        agent_env::KAFKA_CA_FILE,
        agent_env::KAFKA_CERT_FILE,
        agent_env::KAFKA_KEY_FILE,
        agent_env::KAFKA_TOPICS,
        agent_env::KAFKA_TOPIC_REGEX,
        agent_env::KAFKA_GROUPS,
        agent_env::KAFKA_INCREMENTAL,
        agent_env::KAFKA_FULL_EVERY,
    ] {
        assert!(!names.contains(&absent), "{absent} set: {env:?}");
    }
}

#[test]
fn a_kafka_drill_restores_into_the_backed_up_cluster() {
    let (_, backup) = cases()
        .into_iter()
        .find(|(n, _)| n == "kafka-s3")
        .expect("case");
    let pod = pod_of(
        desired_drill(&backup, &defaults())
            .expect("valid drill")
            .expect("a drill CronJob"),
    );
    assert_eq!(
        pod.containers[0].args.as_deref(),
        Some(&["drill".to_string()][..])
    );
    let env = env_of(&pod);
    let get = |name: &str| env.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    let servers = "events-kafka-0.events-kafka.streaming.svc:9093,events-kafka-1.events-kafka.streaming.svc:9093";
    let address = format!("kafkas://vertice-backup@{servers}?mechanism=SCRAM-SHA-256");
    assert_eq!(get(agent_env::DRILL_RESTORE_TO), Some(address.as_str()));
    assert_eq!(
        get(agent_env::KAFKA_PASSWORD),
        Some("secret events-kafka-backup/password")
    );
    assert_eq!(
        get(agent_env::KAFKA_CA_FILE),
        Some("/var/run/secrets/vertice.io/events-kafka-ca/ca.crt")
    );
    assert!(get(agent_env::KAFKA_CERT_FILE).is_some() && get(agent_env::KAFKA_KEY_FILE).is_some());
    // What only the backup uses stays out of the drill.
    for absent in [
        agent_env::SOURCE,
        agent_env::KAFKA_TOPICS,
        agent_env::KAFKA_GROUPS,
        agent_env::HOOKS,
    ] {
        assert_eq!(get(absent), None, "{absent}");
    }
    assert_eq!(pod.automount_service_account_token, Some(false));
    // Nowhere else to restore to: a drill.target is refused.
    let mut elsewhere = backup.clone();
    if let Some(d) = elsewhere.spec.drill.as_mut() {
        d.target =
            Some(serde_json::from_value(serde_json::json!({"ephemeral": {}})).expect("target"));
    }
    let err = desired_drill(&elsewhere, &defaults()).expect_err("drill.target on Kafka");
    assert!(
        err.to_string().contains("Kafka drills into scratch topics"),
        "{err}"
    );
}

fn elasticsearch_case() -> VerticeBackup {
    cases()
        .into_iter()
        .find(|(n, _)| n == "elasticsearch-s3")
        .map(|(_, b)| b)
        .expect("case")
}

#[test]
fn sql_hooks_on_an_elasticsearch_target_are_refused() {
    let mut backup = elasticsearch_case();
    backup.spec.hooks.pre.push(
        serde_json::from_value(serde_json::json!({"name": "x", "sql": {"statement": "select 1"}}))
            .expect("hook"),
    );
    let err = desired(&backup, &defaults()).expect_err("sql hook on Elasticsearch");
    assert!(
        err.to_string().contains("spec.hooks") && err.to_string().contains("Elasticsearch"),
        "{err}"
    );
}

#[test]
fn an_elasticsearch_backup_reaches_its_cluster_by_url_password_and_ca_file() {
    let backup = elasticsearch_case();
    let pod = pod_of(build(&backup));
    let env = env_of(&pod);
    let get = |name: &str| env.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    assert_eq!(
        get(agent_env::SOURCE),
        Some("https://vertice-backup@logs-es-http.logging.svc:9200")
    );
    assert_eq!(get(agent_env::SOURCE_KIND), Some("elasticsearch"));
    assert_eq!(
        get(agent_env::ELASTICSEARCH_PASSWORD),
        Some("secret logs-es-backup/password")
    );
    assert_eq!(
        get(agent_env::SEARCH_CA_FILE),
        Some("/var/run/secrets/vertice.io/logs-es-http-certs-public/ca.crt")
    );
    assert_eq!(get(agent_env::SEARCH_INDICES), Some("logs-*,orders"));
    assert_eq!(get(agent_env::ELASTICSEARCH_API_KEY), None);
    // Export mode is the agent's default: nothing to pass.
    assert_eq!(get(agent_env::SEARCH_MODE), None);
    assert_eq!(get(agent_env::SEARCH_REPOSITORY), None);
    let mut snapshot = backup.clone();
    if let Some(es) = snapshot.spec.target.elasticsearch.as_mut() {
        es.mode = Some(vertice_crds::backup::ElasticsearchMode::Snapshot);
        es.repository = Some("nightly-s3".into());
    }
    let snapshot_env = env_of(&pod_of(build(&snapshot)));
    let snap = |name: &str| {
        snapshot_env
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(snap(agent_env::SEARCH_MODE).as_deref(), Some("snapshot"));
    assert_eq!(
        snap(agent_env::SEARCH_REPOSITORY).as_deref(),
        Some("nightly-s3")
    );
    assert_eq!(snap(agent_env::SEARCH_REPOSITORY_CLIENT), None);
    // Without a repository: the agent's own in the store, through the
    // nodes' client named here.
    let mut own = snapshot.clone();
    if let Some(es) = own.spec.target.elasticsearch.as_mut() {
        es.repository = None;
        es.repository_client = Some("vertice".into());
        es.repository_settings = Some(
            [("storage_class".to_string(), "standard_ia".to_string())]
                .into_iter()
                .collect(),
        );
    }
    let own_env = env_of(&pod_of(build(&own)));
    let own_value = |name: &str| {
        own_env
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(
        own_value(agent_env::SEARCH_MODE).as_deref(),
        Some("snapshot")
    );
    assert_eq!(own_value(agent_env::SEARCH_REPOSITORY), None);
    assert_eq!(
        own_value(agent_env::SEARCH_REPOSITORY_CLIENT).as_deref(),
        Some("vertice")
    );
    assert_eq!(
        own_value(agent_env::SEARCH_REPOSITORY_SETTINGS).as_deref(),
        Some("storage_class=standard_ia")
    );
    // The CA Secret as a file, only its referenced key; no API token.
    let projected: Vec<(String, Vec<String>)> = pod
        .volumes
        .iter()
        .flatten()
        .filter_map(|v| {
            let s = v.secret.as_ref()?;
            let keys = s.items.iter().flatten().map(|i| i.key.clone()).collect();
            Some((s.secret_name.clone()?, keys))
        })
        .collect();
    assert_eq!(
        projected,
        [(
            "logs-es-http-certs-public".to_string(),
            vec!["ca.crt".to_string()]
        )]
    );
    assert_eq!(pod.automount_service_account_token, Some(false));

    // An API key instead, over plain http, every index: the key by
    // reference, nothing else to reach the cluster.
    let mut api_key = backup.clone();
    if let Some(es) = api_key.spec.target.elasticsearch.as_mut() {
        es.url = "http://search.example:9200/es/".into();
        es.username = None;
        es.password_secret_ref = None;
        es.ca_secret_ref = None;
        es.indices.clear();
        es.api_key_secret_ref = Some(
            serde_json::from_value(serde_json::json!({"name": "es-key", "key": "api-key"}))
                .expect("selector"),
        );
    }
    let pod = pod_of(build(&api_key));
    let env = env_of(&pod);
    let names: Vec<&str> = env.iter().map(|(n, _)| n.as_str()).collect();
    assert!(
        env.contains(&(
            agent_env::SOURCE.into(),
            "http://search.example:9200/es".into()
        )),
        "{env:?}"
    );
    assert!(
        env.contains(&(
            agent_env::ELASTICSEARCH_API_KEY.into(),
            "secret es-key/api-key".into()
        )),
        "{env:?}"
    );
    for absent in [
        agent_env::ELASTICSEARCH_PASSWORD,
        agent_env::SEARCH_CA_FILE,
        agent_env::SEARCH_INDICES,
    ] {
        assert!(!names.contains(&absent), "{absent} set: {env:?}");
    }

    // A user without its password: refused naming both fields (the CRD's
    // rule, again for objects stored before it).
    let mut no_password = backup.clone();
    if let Some(es) = no_password.spec.target.elasticsearch.as_mut() {
        es.password_secret_ref = None;
    }
    let err = desired(&no_password, &defaults()).expect_err("user without password");
    assert!(
        err.to_string().contains("spec.target.elasticsearch")
            && err.to_string().contains("passwordSecretRef"),
        "{err}"
    );
}

#[test]
fn an_elasticsearch_drill_restores_into_the_backed_up_cluster() {
    let backup = elasticsearch_case();
    let pod = pod_of(
        desired_drill(&backup, &defaults())
            .expect("valid drill")
            .expect("a drill CronJob"),
    );
    assert_eq!(
        pod.containers[0].args.as_deref(),
        Some(&["drill".to_string()][..])
    );
    let env = env_of(&pod);
    let get = |name: &str| env.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    assert_eq!(
        get(agent_env::DRILL_RESTORE_TO),
        Some("https://vertice-backup@logs-es-http.logging.svc:9200")
    );
    assert_eq!(
        get(agent_env::ELASTICSEARCH_PASSWORD),
        Some("secret logs-es-backup/password")
    );
    assert_eq!(
        get(agent_env::SEARCH_CA_FILE),
        Some("/var/run/secrets/vertice.io/logs-es-http-certs-public/ca.crt")
    );
    // The drill reads the kind from the manifest; what only the backup
    // uses stays out.
    for absent in [
        agent_env::SOURCE,
        agent_env::SOURCE_KIND,
        agent_env::SEARCH_INDICES,
        agent_env::HOOKS,
    ] {
        assert_eq!(get(absent), None, "{absent}");
    }
    assert_eq!(pod.automount_service_account_token, Some(false));
    // A PostgreSQL drill target is refused.
    let with_target = |target: serde_json::Value| {
        let mut b = backup.clone();
        if let Some(d) = b.spec.drill.as_mut() {
            d.target = Some(serde_json::from_value(target).expect("target"));
        }
        desired_drill(&b, &defaults())
    };
    let err = with_target(serde_json::json!({"ephemeral": {}}))
        .expect_err("drill.target.ephemeral on Elasticsearch");
    assert!(
        err.to_string()
            .contains("Elasticsearch backups (elasticsearch)"),
        "{err}"
    );
    // Another cluster: the drill reaches it with its own credentials only,
    // none of the backed-up cluster's.
    let pod = pod_of(
        with_target(serde_json::json!({"elasticsearch": {
            "url": "https://drills.example:9200", "username": "drill",
            "flavour": "opensearch",
            "passwordSecretRef": {"name": "drill-es", "key": "password"}}}))
        .expect("valid drill")
        .expect("a drill CronJob"),
    );
    let env = env_of(&pod);
    let get = |name: &str| env.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    assert_eq!(
        get(agent_env::DRILL_RESTORE_TO),
        Some("https://drill@drills.example:9200")
    );
    assert_eq!(
        get(agent_env::ELASTICSEARCH_PASSWORD),
        Some("secret drill-es/password")
    );
    assert_eq!(get(agent_env::SEARCH_FLAVOUR), Some("opensearch"));
    assert_eq!(get(agent_env::SEARCH_CA_FILE), None);
    assert!(
        !format!("{env:?}").contains("logs-es"),
        "the backed-up cluster's Secrets stay out: {env:?}"
    );
}

#[test]
fn a_keep_within_the_agent_would_refuse_is_refused_naming_the_field() {
    let (_, mut backup) = cases()
        .into_iter()
        .find(|(n, _)| n == "postgres-s3")
        .expect("case");
    // Both match the CRD's pattern `^([0-9]+[hdwmy])+$`; neither parses.
    for bad in ["0d", "99999999999999999999y"] {
        backup.spec.retention = Some(
            serde_json::from_value(serde_json::json!({"keepWithin": bad})).expect("retention"),
        );
        let err = desired(&backup, &defaults()).expect_err(bad).to_string();
        assert!(err.contains("spec.retention.keepWithin"), "{bad}: {err}");
        assert!(err.contains("7d") && err.contains(bad), "{bad}: {err}");
    }
    backup.spec.retention =
        Some(serde_json::from_value(serde_json::json!({"keepWithin": "7d"})).expect("retention"));
    let cron_job = desired(&backup, &defaults()).expect("7d is kept within");
    let env = serde_json::to_string(&cron_job).expect("json");
    assert!(env.contains(agent_env::KEEP_WITHIN), "{env}");
}

/// Every environment name a CronJob sets is in the contract with the agent:
/// one of `agent_env::ALL`, which the agent's `env_contract` test finds
/// among its flags, or a credential under its conventional name.
#[test]
fn every_env_name_is_in_the_agent_contract() {
    let mut jobs: Vec<(String, CronJob)> = cases()
        .into_iter()
        .map(|(name, backup)| (name, build(&backup)))
        .collect();
    let (_, base) = cases()
        .into_iter()
        .find(|(n, _)| n == "postgres-s3")
        .expect("case");
    let identity = serde_json::json!({"name": "age", "key": "identity"});
    let checks =
        serde_json::json!({"postgres": {"assertions": [{"name": "rows", "sql": "select true"}]}});
    for target in [
        serde_json::json!({"postgres": {"host": "drill-db", "user": "drill", "scratchPrefix": "d_",
                                        "passwordSecretRef": {"name": "drill-db", "key": "pw"}}}),
        serde_json::json!({"ephemeral": {}}),
    ] {
        let mut backup = base.clone();
        backup.spec.drill = Some(
            serde_json::from_value(serde_json::json!({"schedule": {"cron": "@weekly"},
                "target": target, "identitySecretRef": identity, "checks": checks}))
            .expect("drill"),
        );
        let drill = desired_drill(&backup, &defaults())
            .expect("valid drill")
            .expect("a drill CronJob");
        jobs.push(("postgres-s3 drill".into(), drill));
    }
    for (name, backup) in cases() {
        if let Some(drill) = desired_drill(&backup, &defaults()).expect("valid drill") {
            jobs.push((format!("{name} drill"), drill));
        }
    }
    for (name, cj) in jobs {
        let pod = pod_of(cj);
        for env in pod.containers.iter().flat_map(|c| c.env.iter().flatten()) {
            let name_of = env.name.as_str();
            assert!(
                agent_env::ALL.contains(&name_of) || agent_env::CREDENTIALS.contains(&name_of),
                "{name}: {name_of} is not in vertice_crds::agent_env"
            );
        }
    }
}
