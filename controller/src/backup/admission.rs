//! What a VerticeBackup may make the controller run on its author's behalf.
//! Anyone with `vertice-edit` in a namespace may write one, but may not
//! create pods, read Secrets or choose an identity there; the CronJobs the
//! controller writes must not give them any of that. Pure: the reconciler
//! reads the named Secrets' labels first (`secret_labels`), `plan` calls
//! [`check`] before any child is described as desired.

use std::fmt;

use k8s_openapi::api::batch::v1::CronJob;
use vertice_crds::backup::VerticeBackupSpec;
use vertice_crds::tenancy::{NOT_ALLOWED_BY_ADMIN, SECRET_NOT_ALLOWED};
use vertice_crds::VerticeBackup;

use super::cron_job::JobDefaults;
use crate::config::TenancyArgs;
pub use crate::secret_labels::SecretUse;
use crate::secret_labels::{self, SecretProblem, SecretsSeen};

const IMAGES_FLAG: &str = "--allowed-agent-images / chart tenancy.allowedAgentImages";
const SERVICE_ACCOUNTS_FLAG: &str =
    "--allowed-service-accounts / chart tenancy.allowedServiceAccounts";
const PRIORITY_CLASSES_FLAG: &str =
    "--allowed-priority-classes / chart tenancy.allowedPriorityClasses";
const POD_METADATA_FLAG: &str =
    "--allowed-pod-metadata-prefixes / chart tenancy.allowedPodMetadataPrefixes";

/// The administrator's limits and the labels of the Secrets the backup
/// names, as the reconciler read them.
#[derive(Debug, Clone, Copy)]
pub struct Admission<'a> {
    pub tenancy: &'a TenancyArgs,
    pub secrets: &'a SecretsSeen,
}

/// Why the controller writes no CronJob or Job for a backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A pod setting the administrator did not allow.
    NotAllowedByAdmin {
        field: &'static str,
        value: String,
        flag: &'static str,
    },
    /// A named Secret that is not opted in (or whose labels the controller
    /// may not see).
    Secret {
        field: String,
        problem: SecretProblem,
    },
}

impl Refusal {
    /// The Ready condition's reason and the Event's.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NotAllowedByAdmin { .. } => NOT_ALLOWED_BY_ADMIN,
            Self::Secret { .. } => SECRET_NOT_ALLOWED,
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotAllowedByAdmin { field, value, flag } => write!(
                f,
                "{field} {value} is not allowed by the administrator ({flag})"
            ),
            Self::Secret { field, problem } => write!(f, "{field}: {problem}"),
        }
    }
}

/// Every Secret a backup names, with its field path: what the reconciler
/// reads the labels of. `check` also refuses any Secret the desired pods
/// mount that is missing here, so an omission fails closed.
pub fn secret_uses(spec: &VerticeBackupSpec) -> Vec<SecretUse> {
    let mut uses = Vec::new();
    let mut add = |field: String, name: &str| {
        uses.push(SecretUse {
            field,
            name: name.to_string(),
        })
    };
    target_secrets(spec, &mut add);
    store_secrets(spec, &mut add);
    hook_secrets(spec, &mut add);
    notification_secrets(spec, &mut add);
    drill_secrets(spec, &mut add);
    uses
}

/// The source's credentials.
fn target_secrets(spec: &VerticeBackupSpec, add: &mut impl FnMut(String, &str)) {
    let t = &spec.target;
    if let Some(s) = t
        .postgres
        .as_ref()
        .and_then(|p| p.password_secret_ref.as_ref())
    {
        add("spec.target.postgres.passwordSecretRef".into(), &s.name);
    }
    if let Some(s) = t
        .redis
        .as_ref()
        .and_then(|r| r.password_secret_ref.as_ref())
    {
        add("spec.target.redis.passwordSecretRef".into(), &s.name);
    }
    if let Some(vault) = &t.vault {
        if let Some(s) = &vault.token_secret_ref {
            add("spec.target.vault.tokenSecretRef".into(), &s.name);
        }
        if let Some(s) = &vault.ca_cert_secret_ref {
            add("spec.target.vault.caCertSecretRef".into(), &s.name);
        }
    }
    // The drill reaches the same cluster with the same Secrets.
    if let Some(kafka) = &t.kafka {
        if let Some(sasl) = &kafka.sasl {
            add(
                "spec.target.kafka.sasl.passwordSecretRef".into(),
                &sasl.password_secret_ref.name,
            );
        }
        if let Some(tls) = &kafka.tls {
            optional_refs(
                "spec.target.kafka.tls",
                [
                    ("caSecretRef", &tls.ca_secret_ref),
                    ("certSecretRef", &tls.cert_secret_ref),
                    ("keySecretRef", &tls.key_secret_ref),
                ],
                add,
            );
        }
    }
    // Likewise: an Elasticsearch drill reaches the backed-up cluster.
    if let Some(es) = &t.elasticsearch {
        search_secrets("spec.target.elasticsearch", es, add);
    }
}

/// The store's credentials.
fn store_secrets(spec: &VerticeBackupSpec, add: &mut impl FnMut(String, &str)) {
    let store = &spec.store;
    if let Some(c) = store.s3.as_ref().and_then(|s| s.credentials.as_ref()) {
        add(
            "spec.store.s3.credentials.secretName".into(),
            &c.secret_name,
        );
    }
    if let Some(s) = store
        .gcs
        .as_ref()
        .and_then(|g| g.credentials_secret_ref.as_ref())
    {
        add("spec.store.gcs.credentialsSecretRef".into(), &s.name);
    }
    if let Some(az) = &store.azure {
        for (field, selector) in [
            ("sasTokenSecretRef", &az.sas_token_secret_ref),
            ("accountKeySecretRef", &az.account_key_secret_ref),
            (
                "connectionStringSecretRef",
                &az.connection_string_secret_ref,
            ),
        ] {
            if let Some(s) = selector {
                add(format!("spec.store.azure.{field}"), &s.name);
            }
        }
    }
}

/// Secrets of the HTTP hooks' URLs and headers.
fn hook_secrets(spec: &VerticeBackupSpec, add: &mut impl FnMut(String, &str)) {
    for (when, hooks) in [("pre", &spec.hooks.pre), ("post", &spec.hooks.post)] {
        for (i, http) in hooks
            .iter()
            .enumerate()
            .filter_map(|(i, h)| Some((i, h.http.as_ref()?)))
        {
            if let Some(s) = &http.url_secret_ref {
                add(format!("spec.hooks.{when}[{i}].http.urlSecretRef"), &s.name);
            }
            for (j, s) in http
                .headers
                .iter()
                .enumerate()
                .filter_map(|(j, h)| Some((j, h.value_secret_ref.as_ref()?)))
            {
                add(
                    format!("spec.hooks.{when}[{i}].http.headers[{j}].valueSecretRef"),
                    &s.name,
                );
            }
        }
    }
}

/// Secrets of the notification channels.
fn notification_secrets(spec: &VerticeBackupSpec, add: &mut impl FnMut(String, &str)) {
    if let Some(n) = &spec.notifications {
        if let Some(s) = &n.slack {
            add(
                "spec.notifications.slack.webhookUrlSecretRef".into(),
                &s.webhook_url_secret_ref.name,
            );
        }
        if let Some(p) = &n.pagerduty {
            add(
                "spec.notifications.pagerduty.routingKeySecretRef".into(),
                &p.routing_key_secret_ref.name,
            );
        }
        if let Some(e) = &n.email {
            if let Some(s) = &e.username_secret_ref {
                add("spec.notifications.email.usernameSecretRef".into(), &s.name);
            }
            if let Some(s) = &e.password_secret_ref {
                add("spec.notifications.email.passwordSecretRef".into(), &s.name);
            }
        }
        if let Some(w) = &n.webhook {
            add(
                "spec.notifications.webhook.urlSecretRef".into(),
                &w.url_secret_ref.name,
            );
            for (j, s) in w
                .headers
                .iter()
                .enumerate()
                .filter_map(|(j, h)| Some((j, h.value_secret_ref.as_ref()?)))
            {
                add(
                    format!("spec.notifications.webhook.headers[{j}].valueSecretRef"),
                    &s.name,
                );
            }
        }
    }
}

/// The Secrets a search cluster's connection names, under `prefix`.
fn search_secrets(
    prefix: &str,
    es: &vertice_crds::backup::ElasticsearchTarget,
    add: &mut impl FnMut(String, &str),
) {
    optional_refs(
        prefix,
        [
            ("passwordSecretRef", &es.password_secret_ref),
            ("apiKeySecretRef", &es.api_key_secret_ref),
            ("caSecretRef", &es.ca_secret_ref),
        ],
        add,
    );
}

/// Each Secret reference that is set, named `prefix.field`.
fn optional_refs<const N: usize>(
    prefix: &str,
    refs: [(&str, &Option<vertice_crds::common::SecretKeySelector>); N],
    add: &mut impl FnMut(String, &str),
) {
    for (field, selector) in refs {
        if let Some(s) = selector {
            add(format!("{prefix}.{field}"), &s.name);
        }
    }
}

/// The drill target's credentials and the identity that decrypts.
fn drill_secrets(spec: &VerticeBackupSpec, add: &mut impl FnMut(String, &str)) {
    if let Some(drill) = &spec.drill {
        if let Some(s) = drill
            .target
            .as_ref()
            .and_then(|t| t.postgres.as_ref())
            .and_then(|p| p.password_secret_ref.as_ref())
        {
            add(
                "spec.drill.target.postgres.passwordSecretRef".into(),
                &s.name,
            );
        }
        if let Some(es) = drill.target.as_ref().and_then(|t| t.elasticsearch.as_ref()) {
            search_secrets("spec.drill.target.elasticsearch", &es.as_target(), add);
        }
        if let Some(s) = &drill.identity_secret_ref {
            add("spec.drill.identitySecretRef".into(), &s.name);
        }
    }
}

/// Whether the backup may become `pods` (its desired CronJobs): the pod
/// settings the administrator allows, then every Secret it names and every
/// Secret those pods would mount.
pub fn check<'c>(
    backup: &VerticeBackup,
    defaults: &JobDefaults,
    admission: &Admission<'_>,
    pods: impl IntoIterator<Item = &'c CronJob>,
) -> Result<(), Refusal> {
    check_pod_settings(&backup.spec, defaults, admission.tenancy)?;
    let namespace = backup.metadata.namespace.as_deref().unwrap_or_default();
    let policy = admission.tenancy.secret_reference_policy;
    let uses = secret_uses(&backup.spec);
    let mounted = pods
        .into_iter()
        .flat_map(pod_secrets)
        .map(|name| SecretUse {
            field: "the backup pod".into(),
            name,
        });
    for SecretUse { field, name } in uses.iter().cloned().chain(mounted) {
        secret_labels::check(policy, namespace, &name, admission.secrets)
            .map_err(|problem| Refusal::Secret { field, problem })?;
    }
    Ok(())
}

/// Whether a CronJob written earlier may go on running while the spec is
/// invalid (an invalid spec keeps the last good CronJob rather than stop
/// backups over a typo). It was admitted when written; a right taken back
/// since — a Secret's label removed, an image or ServiceAccount taken off
/// the lists — must stop it all the same, or a tenant could keep it by
/// breaking the spec on purpose.
pub fn check_existing(
    cron_job: &CronJob,
    namespace: &str,
    defaults: &JobDefaults,
    admission: &Admission<'_>,
) -> Result<(), Refusal> {
    let tenancy = admission.tenancy;
    let pod = cron_job
        .spec
        .job_template
        .spec
        .as_ref()
        .and_then(|j| j.template.spec.as_ref());
    if let Some(pod) = pod {
        for image in pod.containers.iter().filter_map(|c| c.image.as_ref()) {
            allowed(
                IMAGE,
                Some(image),
                &tenancy.allowed_agent_images,
                Some(&defaults.agent_image),
            )?;
        }
        allowed(
            SERVICE_ACCOUNT,
            pod.service_account_name.as_ref(),
            &tenancy.allowed_service_accounts,
            None,
        )?;
        allowed(
            PRIORITY_CLASS,
            pod.priority_class_name.as_ref(),
            &tenancy.allowed_priority_classes,
            None,
        )?;
    }
    let policy = tenancy.secret_reference_policy;
    for name in pod_secrets(cron_job) {
        secret_labels::check(policy, namespace, &name, admission.secrets).map_err(|problem| {
            Refusal::Secret {
                field: format!(
                    "CronJob {}",
                    cron_job.metadata.name.as_deref().unwrap_or("?")
                ),
                problem,
            }
        })?;
    }
    Ok(())
}

/// The image, ServiceAccount and priority class of the backup and drill
/// pods: each must be one the administrator allowed.
pub fn check_pod_settings(
    spec: &VerticeBackupSpec,
    defaults: &JobDefaults,
    tenancy: &TenancyArgs,
) -> Result<(), Refusal> {
    let pod = &spec.pod;
    // The image runs with the backup's credentials mounted: an arbitrary
    // one would be arbitrary code with them.
    allowed(
        IMAGE,
        pod.image.as_ref(),
        &tenancy.allowed_agent_images,
        Some(&defaults.agent_image),
    )?;
    // A ServiceAccount is an identity (workload identity, Vault roles),
    // whether or not its token is mounted.
    allowed(
        SERVICE_ACCOUNT,
        pod.service_account_name.as_ref(),
        &tenancy.allowed_service_accounts,
        None,
    )?;
    match &pod.service_account_name {
        // Vault's Kubernetes auth sends the pod's token to the address the
        // spec names: without a ServiceAccount that would be `default`'s.
        None if needs_api_token(spec)
            && !tenancy
                .allowed_service_accounts
                .iter()
                .any(|a| a == "default") =>
        {
            return Err(Refusal::NotAllowedByAdmin {
                field: SERVICE_ACCOUNT.0,
                value: "default (unset, and spec.target.vault.kubernetesAuth sends the pod's token to Vault)".into(),
                flag: SERVICE_ACCOUNT.1,
            });
        }
        _ => {}
    }
    // Prefixed label and annotation keys are read by other controllers and
    // webhooks, some of which hand out identities (kube2iam's
    // `iam.amazonaws.com/role`, Vault's agent injector): only prefixes the
    // administrator allowed.
    for (field, map) in [
        ("spec.pod.labels", &pod.labels),
        ("spec.pod.annotations", &pod.annotations),
    ] {
        if let Some(key) = map
            .keys()
            .find(|k| !metadata_key_allowed(k, &tenancy.allowed_pod_metadata_prefixes))
        {
            return Err(Refusal::NotAllowedByAdmin {
                field,
                value: key.clone(),
                flag: POD_METADATA_FLAG,
            });
        }
    }
    // A priority class can preempt other tenants' pods.
    allowed(
        PRIORITY_CLASS,
        pod.priority_class_name.as_ref(),
        &tenancy.allowed_priority_classes,
        None,
    )
}

/// A pod setting: its field and the flag that allows values of it.
type Setting = (&'static str, &'static str);
const IMAGE: Setting = ("spec.pod.image", IMAGES_FLAG);
const SERVICE_ACCOUNT: Setting = ("spec.pod.serviceAccountName", SERVICE_ACCOUNTS_FLAG);
const PRIORITY_CLASS: Setting = ("spec.pod.priorityClassName", PRIORITY_CLASSES_FLAG);

/// `value` passes when unset, equal to `default`, or in the administrator's
/// `list`; otherwise the refusal names the field, the value and the flag.
fn allowed(
    (field, flag): Setting,
    value: Option<&String>,
    list: &[String],
    default: Option<&String>,
) -> Result<(), Refusal> {
    match value {
        Some(v) if Some(v) != default && !list.contains(v) => Err(Refusal::NotAllowedByAdmin {
            field,
            value: v.clone(),
            flag,
        }),
        _ => Ok(()),
    }
}

/// A key without a prefix (`team`) is the tenant's own; `prefix/name` needs
/// the prefix in `allowed`.
fn metadata_key_allowed(key: &str, allowed: &[String]) -> bool {
    match key.rsplit_once('/') {
        None => true,
        Some((prefix, _)) => allowed.iter().any(|a| a == prefix),
    }
}

/// Only Vault's Kubernetes auth needs the pod's API token (the backup pod's;
/// a drill never logs in to Vault).
pub fn needs_api_token(spec: &VerticeBackupSpec) -> bool {
    spec.target
        .vault
        .as_ref()
        .is_some_and(|v| v.kubernetes_auth.is_some())
}

/// The Secrets a CronJob's pods would read: environment `secretKeyRef`s and
/// Secret volumes.
pub fn pod_secrets(cron_job: &CronJob) -> Vec<String> {
    let Some(pod) = cron_job
        .spec
        .job_template
        .spec
        .as_ref()
        .and_then(|j| j.template.spec.as_ref())
    else {
        return Vec::new();
    };
    let from_env = pod
        .containers
        .iter()
        .chain(pod.init_containers.iter().flatten())
        .flat_map(|c| c.env.iter().flatten())
        .filter_map(|e| e.value_from.as_ref()?.secret_key_ref.as_ref())
        .map(|s| s.name.clone());
    let from_volumes = pod
        .volumes
        .iter()
        .flatten()
        .filter_map(|v| v.secret.as_ref()?.secret_name.clone());
    let mut names: Vec<String> = from_env.chain(from_volumes).collect();
    names.sort();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use serde_json::json;
    use vertice_crds::tenancy::{SecretReferencePolicy, ALLOW_REFERENCE_LABEL};

    use super::super::cron_job::{desired, desired_drill};
    use super::*;
    use crate::secret_labels::SecretMeta;

    fn defaults() -> JobDefaults {
        JobDefaults {
            agent_image: "ghcr.io/vertice/agent:1".into(),
            pushgateway_url: None,
        }
    }

    fn backup(patch: serde_json::Value) -> VerticeBackup {
        let mut v = json!({
            "apiVersion": "vertice.io/v1alpha1", "kind": "VerticeBackup",
            "metadata": {"name": "orders", "namespace": "team-a", "uid": "u1"},
            "spec": {"target": {"redis": {"host": "cache"}},
                     "schedule": {"cron": "@daily"}, "store": {"s3": {"bucket": "backups"}}},
        });
        if let (Some(spec), Some(patch)) = (v["spec"].as_object_mut(), patch.as_object()) {
            for (k, value) in patch {
                spec.insert(k.clone(), value.clone());
            }
        }
        serde_json::from_value(v).expect("backup")
    }

    /// A spec naming a Secret in every field that can name one.
    fn every_secret() -> VerticeBackup {
        let sel = |n: &str| json!({"name": n, "key": "k"});
        let header = |n: &str| json!([{"name": "Authorization", "valueSecretRef": sel(n)}]);
        backup(json!({
            "target": {"postgres": {"host": "db", "database": "d", "user": "u",
                                    "passwordSecretRef": sel("pg")}},
            "store": {"s3": {"bucket": "backups", "credentials": {"secretName": "s3"}}},
            "encryption": {"recipients": ["age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"]},
            "hooks": {"pre": [{"name": "h", "http": {"urlSecretRef": sel("hook-url"), "headers": header("hook-header")}}],
                      "post": [{"name": "s", "sql": {"statement": "select 1"}},
                               {"name": "p", "http": {"url": "https://x", "headers": header("post-header")}}]},
            "notifications": {"slack": {"webhookUrlSecretRef": sel("slack")},
                              "pagerduty": {"routingKeySecretRef": sel("pd")},
                              "email": {"smtpHost": "mail", "from": "a@b", "to": ["c@d"],
                                        "usernameSecretRef": sel("mail-user"), "passwordSecretRef": sel("mail-pw")},
                              "webhook": {"urlSecretRef": sel("wh"), "headers": header("wh-header")}},
            "drill": {"schedule": {"cron": "@weekly"}, "identitySecretRef": sel("age"),
                      "target": {"postgres": {"host": "drill", "user": "d", "passwordSecretRef": sel("drill-pg")}}},
        }))
    }

    fn tenancy() -> TenancyArgs {
        TenancyArgs::default()
    }

    fn labelled(names: &[&str]) -> SecretsSeen {
        SecretsSeen(
            names
                .iter()
                .map(|n| {
                    let labels =
                        BTreeMap::from([(ALLOW_REFERENCE_LABEL.to_string(), "true".to_string())]);
                    (n.to_string(), SecretMeta::Labels(labels))
                })
                .collect(),
        )
    }

    fn run(b: &VerticeBackup, tenancy: &TenancyArgs, secrets: &SecretsSeen) -> Result<(), Refusal> {
        let pods: Vec<CronJob> = [
            desired(b, &defaults()).ok(),
            desired_drill(b, &defaults()).ok().flatten(),
        ]
        .into_iter()
        .flatten()
        .collect();
        check(b, &defaults(), &Admission { tenancy, secrets }, &pods)
    }

    #[test]
    fn every_secret_the_pods_mount_is_named_with_its_field() {
        let b = every_secret();
        let uses = secret_uses(&b.spec);
        let named: BTreeSet<&str> = uses.iter().map(|u| u.name.as_str()).collect();
        let mounted: BTreeSet<String> = [
            desired(&b, &defaults()).expect("backup"),
            desired_drill(&b, &defaults())
                .expect("drill")
                .expect("drill"),
        ]
        .iter()
        .flat_map(pod_secrets)
        .collect();
        // Both ways: nothing mounted unnamed, nothing named left unchecked.
        assert_eq!(
            mounted.iter().map(String::as_str).collect::<BTreeSet<_>>(),
            named
        );
        assert_eq!(uses.len(), 13, "{uses:#?}");
        assert!(uses.contains(&SecretUse {
            field: "spec.hooks.post[1].http.headers[0].valueSecretRef".into(),
            name: "post-header".into()
        }));
        // Vault's two.
        let vault = backup(json!({"target": {"vault": {"address": "https://v:8200",
            "tokenSecretRef": {"name": "vt", "key": "t"}, "caCertSecretRef": {"name": "vca", "key": "ca"}}}}));
        let fields: Vec<String> = secret_uses(&vault.spec)
            .into_iter()
            .map(|u| u.field)
            .collect();
        assert_eq!(
            fields,
            [
                "spec.target.vault.tokenSecretRef",
                "spec.target.vault.caCertSecretRef"
            ]
        );
        // Kafka's four, which its drill mounts too.
        let kafka = backup(json!({
            "target": {"kafka": {"bootstrapServers": ["b0:9093"],
                "sasl": {"username": "backup", "passwordSecretRef": {"name": "kpw", "key": "password"}},
                "tls": {"caSecretRef": {"name": "kca", "key": "ca.crt"},
                        "certSecretRef": {"name": "kcert", "key": "tls.crt"},
                        "keySecretRef": {"name": "kkey", "key": "tls.key"}}}},
            "drill": {"schedule": {"cron": "@weekly"}}}));
        let uses = secret_uses(&kafka.spec);
        let fields: Vec<(&str, &str)> = uses
            .iter()
            .map(|u| (u.field.as_str(), u.name.as_str()))
            .collect();
        assert_eq!(
            fields,
            [
                ("spec.target.kafka.sasl.passwordSecretRef", "kpw"),
                ("spec.target.kafka.tls.caSecretRef", "kca"),
                ("spec.target.kafka.tls.certSecretRef", "kcert"),
                ("spec.target.kafka.tls.keySecretRef", "kkey"),
            ]
        );
        let named: BTreeSet<&str> = uses.iter().map(|u| u.name.as_str()).collect();
        for cj in [
            desired(&kafka, &defaults()).expect("backup"),
            desired_drill(&kafka, &defaults())
                .expect("drill")
                .expect("drill"),
        ] {
            let mounted = pod_secrets(&cj);
            assert_eq!(
                mounted.iter().map(String::as_str).collect::<BTreeSet<_>>(),
                named,
                "{:?}",
                cj.metadata.name
            );
        }
    }

    #[test]
    fn a_drill_on_another_search_cluster_names_its_secrets() {
        let b = backup(json!({
            "target": {"elasticsearch": {"url": "https://es:9200"}},
            "drill": {"schedule": {"cron": "@weekly"}, "target": {"elasticsearch": {
                "url": "https://drills:9200",
                "apiKeySecretRef": {"name": "drillkey", "key": "api-key"},
                "caSecretRef": {"name": "drillca", "key": "ca.crt"}}}}}));
        let uses = secret_uses(&b.spec);
        let fields: Vec<(&str, &str)> = uses
            .iter()
            .map(|u| (u.field.as_str(), u.name.as_str()))
            .collect();
        assert_eq!(
            fields,
            [
                (
                    "spec.drill.target.elasticsearch.apiKeySecretRef",
                    "drillkey"
                ),
                ("spec.drill.target.elasticsearch.caSecretRef", "drillca"),
            ]
        );
        let drill = desired_drill(&b, &defaults())
            .expect("drill")
            .expect("drill");
        let mounted = pod_secrets(&drill);
        assert_eq!(
            mounted.iter().map(String::as_str).collect::<BTreeSet<_>>(),
            BTreeSet::from(["drillkey", "drillca"])
        );
    }

    #[test]
    fn an_elasticsearch_backup_names_its_three_secrets_which_both_pods_mount() {
        // Basic auth and the CA; the API key in a second spec, as the CRD
        // takes one or the other.
        let basic = backup(json!({
            "target": {"elasticsearch": {"url": "https://es:9200", "username": "backup",
                "passwordSecretRef": {"name": "espw", "key": "password"},
                "caSecretRef": {"name": "esca", "key": "ca.crt"}}},
            "drill": {"schedule": {"cron": "@weekly"}}}));
        let api_key = backup(json!({
            "target": {"elasticsearch": {"url": "https://es:9200",
                "apiKeySecretRef": {"name": "eskey", "key": "api-key"},
                "caSecretRef": {"name": "esca", "key": "ca.crt"}}},
            "drill": {"schedule": {"cron": "@weekly"}}}));
        for (b, want) in [
            (
                &basic,
                [
                    ("spec.target.elasticsearch.passwordSecretRef", "espw"),
                    ("spec.target.elasticsearch.caSecretRef", "esca"),
                ],
            ),
            (
                &api_key,
                [
                    ("spec.target.elasticsearch.apiKeySecretRef", "eskey"),
                    ("spec.target.elasticsearch.caSecretRef", "esca"),
                ],
            ),
        ] {
            let uses = secret_uses(&b.spec);
            let fields: Vec<(&str, &str)> = uses
                .iter()
                .map(|u| (u.field.as_str(), u.name.as_str()))
                .collect();
            assert_eq!(fields, want);
            let named: BTreeSet<&str> = uses.iter().map(|u| u.name.as_str()).collect();
            for cj in [
                desired(b, &defaults()).expect("backup"),
                desired_drill(b, &defaults())
                    .expect("drill")
                    .expect("drill"),
            ] {
                let mounted = pod_secrets(&cj);
                assert_eq!(
                    mounted.iter().map(String::as_str).collect::<BTreeSet<_>>(),
                    named,
                    "{:?}",
                    cj.metadata.name
                );
            }
            // Unlabelled, each is refused under its field.
            let refusal = run(b, &tenancy(), &labelled(&["esca"])).expect_err("unlabelled");
            assert_eq!(refusal.reason(), "SecretNotAllowed");
            assert!(refusal.to_string().starts_with(want[0].0), "{refusal}");
            assert_eq!(
                run(
                    b,
                    &tenancy(),
                    &labelled(&named.iter().copied().collect::<Vec<_>>())
                ),
                Ok(())
            );
        }
    }

    #[test]
    fn an_unlabelled_secret_is_refused_with_its_field_and_the_rule() {
        let b = every_secret();
        let all = [
            "pg",
            "s3",
            "hook-url",
            "hook-header",
            "post-header",
            "slack",
            "pd",
            "mail-user",
            "mail-pw",
            "wh",
            "wh-header",
            "age",
            "drill-pg",
        ];
        assert_eq!(run(&b, &tenancy(), &labelled(&all)), Ok(()));
        let some: Vec<&str> = all.iter().copied().filter(|n| *n != "pd").collect();
        let refusal = run(&b, &tenancy(), &labelled(&some)).expect_err("pd is not labelled");
        assert_eq!(refusal.reason(), "SecretNotAllowed");
        let text = refusal.to_string();
        assert!(text.starts_with("spec.notifications.pagerduty.routingKeySecretRef: Secret team-a/pd is not labelled vertice.io/allow-reference=true"), "{text}");
        // The policy `any` takes every Secret of the namespace.
        let any = TenancyArgs {
            secret_reference_policy: SecretReferencePolicy::Any,
            ..tenancy()
        };
        assert_eq!(run(&b, &any, &SecretsSeen::default()), Ok(()));
        // A Secret that does not exist is refused like an unlabelled one.
        let mut missing = labelled(&some);
        missing.0.insert("pd".into(), SecretMeta::NotFound);
        let refusal = run(&b, &tenancy(), &missing).expect_err("missing");
        assert_eq!(refusal.reason(), "SecretNotAllowed");
    }

    #[test]
    fn a_mounted_secret_nobody_looked_up_is_refused() {
        let b = backup(
            json!({"target": {"redis": {"host": "c", "passwordSecretRef": {"name": "r", "key": "p"}}}}),
        );
        let refusal = run(&b, &tenancy(), &SecretsSeen::default()).expect_err("unchecked");
        assert_eq!(refusal.reason(), "SecretNotAllowed");
    }

    #[test]
    fn images_service_accounts_and_priority_classes_need_the_administrators_allowance() {
        let none = SecretsSeen::default();
        assert_eq!(run(&backup(json!({})), &tenancy(), &none), Ok(()));
        let own = backup(json!({"pod": {"image": "ghcr.io/vertice/agent:1"}}));
        assert_eq!(run(&own, &tenancy(), &none), Ok(()));

        let image = backup(json!({"pod": {"image": "evil/miner:latest"}}));
        let e = run(&image, &tenancy(), &none).expect_err("image");
        assert_eq!(e.reason(), "NotAllowedByAdmin");
        assert_eq!(
            e.to_string(),
            "spec.pod.image evil/miner:latest is not allowed by the administrator (--allowed-agent-images / chart tenancy.allowedAgentImages)"
        );
        let sa = backup(json!({"pod": {"serviceAccountName": "vault-auth"}}));
        assert_eq!(
            run(&sa, &tenancy(), &none).expect_err("sa").to_string(),
            "spec.pod.serviceAccountName vault-auth is not allowed by the administrator (--allowed-service-accounts / chart tenancy.allowedServiceAccounts)"
        );
        let pc = backup(json!({"pod": {"priorityClassName": "system-node-critical"}}));
        assert_eq!(
            run(&pc, &tenancy(), &none).expect_err("pc").to_string(),
            "spec.pod.priorityClassName system-node-critical is not allowed by the administrator (--allowed-priority-classes / chart tenancy.allowedPriorityClasses)"
        );

        let allowed = TenancyArgs {
            allowed_agent_images: vec!["evil/miner:latest".into()],
            allowed_service_accounts: vec!["vault-auth".into()],
            allowed_priority_classes: vec!["system-node-critical".into()],
            ..tenancy()
        };
        for b in [&image, &sa, &pc] {
            assert_eq!(run(b, &allowed, &none), Ok(()));
        }
    }

    #[test]
    fn a_cron_job_written_earlier_is_judged_by_todays_rights() {
        let b = backup(
            json!({"target": {"redis": {"host": "c", "passwordSecretRef": {"name": "r", "key": "p"}}},
                   "pod": {"serviceAccountName": "vault-auth"}}),
        );
        let cj = desired(&b, &defaults()).expect("cron job");
        let allowed = TenancyArgs {
            allowed_service_accounts: vec!["vault-auth".into()],
            ..tenancy()
        };
        let check = |tenancy: &TenancyArgs, secrets: &SecretsSeen| {
            check_existing(&cj, "team-a", &defaults(), &Admission { tenancy, secrets })
        };
        assert_eq!(check(&allowed, &labelled(&["r"])), Ok(()));
        // The label was removed since.
        let e = check(&allowed, &labelled(&[])).expect_err("label removed");
        assert_eq!(e.reason(), "SecretNotAllowed");
        // The ServiceAccount was taken off the list since.
        let e = check(&tenancy(), &labelled(&["r"])).expect_err("account removed");
        assert_eq!(e.reason(), "NotAllowedByAdmin");
        assert!(e.to_string().contains("vault-auth"), "{e}");
    }

    #[test]
    fn prefixed_pod_labels_and_annotations_need_the_administrators_allowance() {
        let none = SecretsSeen::default();
        let plain = backup(json!({"pod": {"labels": {"team": "shop"},
                                          "annotations": {"owner": "a"}}}));
        assert_eq!(run(&plain, &tenancy(), &none), Ok(()));
        // Azure's webhook would project a token for the pod's account, so
        // even its label needs the administrator's allowance.
        let azure = backup(json!({"pod": {"labels": {"azure.workload.identity/use": "true"}}}));
        assert!(run(&azure, &tenancy(), &none).is_err());
        let kube2iam = backup(json!({"pod": {"annotations": {"iam.amazonaws.com/role": "admin"}}}));
        let e = run(&kube2iam, &tenancy(), &none).expect_err("kube2iam");
        assert_eq!(e.reason(), "NotAllowedByAdmin");
        assert_eq!(
            e.to_string(),
            "spec.pod.annotations iam.amazonaws.com/role is not allowed by the administrator (--allowed-pod-metadata-prefixes / chart tenancy.allowedPodMetadataPrefixes)"
        );
        let injector =
            backup(json!({"pod": {"labels": {"vault.hashicorp.com/agent-inject": "true"}}}));
        assert!(run(&injector, &tenancy(), &none).is_err());
        let allowed = TenancyArgs {
            allowed_pod_metadata_prefixes: vec![
                "iam.amazonaws.com".into(),
                "azure.workload.identity".into(),
            ],
            ..tenancy()
        };
        assert_eq!(run(&kube2iam, &allowed, &none), Ok(()));
        assert_eq!(run(&azure, &allowed, &none), Ok(()));
    }

    #[test]
    fn vault_kubernetes_auth_without_a_service_account_would_send_defaults_token() {
        let vault = |pod: serde_json::Value| {
            backup(json!({"target": {"vault": {"address": "https://v:8200",
                                               "kubernetesAuth": {"role": "backup"}}},
                          "pod": pod}))
        };
        let e = run(&vault(json!({})), &tenancy(), &SecretsSeen::default()).expect_err("default");
        assert!(
            e.to_string()
                .starts_with("spec.pod.serviceAccountName default (unset"),
            "{e}"
        );
        let allowed = TenancyArgs {
            allowed_service_accounts: vec!["vault-auth".into()],
            ..tenancy()
        };
        let b = vault(json!({"serviceAccountName": "vault-auth"}));
        assert_eq!(run(&b, &allowed, &SecretsSeen::default()), Ok(()));
        let pod = desired(&b, &defaults())
            .expect("valid")
            .spec
            .job_template
            .spec
            .and_then(|j| j.template.spec)
            .expect("pod");
        assert_eq!(pod.automount_service_account_token, Some(true));
    }

    #[test]
    fn no_other_pod_mounts_an_api_token() {
        let b = every_secret();
        for cj in [
            desired(&b, &defaults()).expect("backup"),
            desired_drill(&b, &defaults())
                .expect("drill")
                .expect("drill"),
        ] {
            let pod = cj
                .spec
                .job_template
                .spec
                .and_then(|j| j.template.spec)
                .expect("pod");
            assert_eq!(pod.automount_service_account_token, Some(false));
            assert_eq!(pod.service_account_name, None);
        }
        // A Vault drill does not log in to Vault: no token either.
        let vault = backup(json!({"target": {"vault": {"address": "https://v:8200",
                                                       "kubernetesAuth": {"role": "backup"}}},
                                  "pod": {"serviceAccountName": "vault-auth"},
                                  "drill": {"schedule": {"cron": "@weekly"}}}));
        let drill = desired_drill(&vault, &defaults())
            .expect("valid")
            .expect("drill")
            .spec
            .job_template
            .spec
            .and_then(|j| j.template.spec)
            .expect("pod");
        assert_eq!(drill.automount_service_account_token, Some(false));
    }
}
