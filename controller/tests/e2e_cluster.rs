//! End-to-end against a real cluster, run only when `VERTICE_E2E_KUBECONFIG`
//! names a kubeconfig (there is no API server on the CI machine).
//!
//! It installs the CRDs, runs the controller binary against the cluster in a
//! fresh namespace, and checks what a user would see: the CronJob, the status,
//! suspend, and garbage collection. With `VERTICE_E2E_AGENT_IMAGE` it also runs
//! one real backup of a Redis in the namespace onto a PersistentVolumeClaim and
//! waits for the status to report it.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::{CronJob, Job, JobSpec};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, CustomResourceExt, ResourceExt};
use serde_json::json;
use vertice_crds::{VerticeBackup, VerticeFailover, VerticeScaler};

struct ControllerProcess(Child);

impl Drop for ControllerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

#[tokio::test]
async fn backups_on_a_real_cluster() {
    let Some(kubeconfig) = std::env::var_os("VERTICE_E2E_KUBECONFIG") else {
        eprintln!(
            "skipped: set VERTICE_E2E_KUBECONFIG to a kubeconfig to run the end-to-end suite"
        );
        return;
    };
    let agent_image = std::env::var("VERTICE_E2E_AGENT_IMAGE").ok();
    let config = kube::Config::from_custom_kubeconfig(
        Kubeconfig::read_from(&kubeconfig).expect("read kubeconfig"),
        &KubeConfigOptions::default(),
    )
    .await
    .expect("kubeconfig");
    let client = Client::try_from(config).expect("client");

    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in [
        VerticeBackup::crd(),
        VerticeScaler::crd(),
        VerticeFailover::crd(),
    ] {
        crds.patch(
            &crd.name_any(),
            &PatchParams::apply("vertice-e2e").force(),
            &Patch::Apply(&crd),
        )
        .await
        .expect("apply CRD");
    }
    for name in ["verticebackups.vertice.io"] {
        wait_for("CRD established", Duration::from_secs(60), || {
            let crds = crds.clone();
            async move {
                let crd = crds.get(name).await.ok()?;
                crd.status?
                    .conditions?
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
                    .then_some(())
            }
        })
        .await;
    }

    let ns = format!(
        "vertice-e2e-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    );
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": ns}})).expect("ns"),
        )
        .await
        .expect("create namespace");

    let _controller = ControllerProcess(
        Command::new(env!("CARGO_BIN_EXE_vertice-controller"))
            .args([
                "--watch-namespace",
                &ns,
                "--lease-namespace",
                &ns,
                "--listen",
                "127.0.0.1:0",
                "--log-format",
                "text",
            ])
            .arg("--agent-image")
            .arg(
                agent_image
                    .clone()
                    .unwrap_or_else(|| "ghcr.io/vertice/agent:0.1.0".into()),
            )
            .env("KUBECONFIG", &kubeconfig)
            .env("POD_NAME", "e2e")
            .spawn()
            .expect("start controller"),
    );

    let backups: Api<VerticeBackup> = Api::namespaced(client.clone(), &ns);
    let cron_jobs: Api<CronJob> = Api::namespaced(client.clone(), &ns);
    let store = if agent_image.is_some() {
        json!({"file": {"claimName": "backups"}})
    } else {
        json!({"s3": {"bucket": "not-used-in-this-run"}})
    };
    if agent_image.is_some() {
        deploy_redis_and_claim(&client, &ns).await;
    }
    let backup: VerticeBackup = serde_json::from_value(json!({
        "apiVersion": "vertice.io/v1alpha1", "kind": "VerticeBackup",
        "metadata": {"name": "cache", "namespace": ns},
        "spec": {"target": {"redis": {"host": "redis"}}, "schedule": {"cron": "0 3 * * *"}, "store": store}
    }))
    .expect("backup");
    backups
        .create(&PostParams::default(), &backup)
        .await
        .expect("create VerticeBackup");

    let cron_job = wait_for("the CronJob", Duration::from_secs(60), || {
        let cron_jobs = cron_jobs.clone();
        async move { cron_jobs.get_opt("vertice-cache").await.ok().flatten() }
    })
    .await;
    assert_eq!(cron_job.owner_references()[0].kind, "VerticeBackup");
    wait_for("status Scheduled", Duration::from_secs(60), || {
        let backups = backups.clone();
        async move {
            let b = backups.get("cache").await.ok()?;
            (b.status?.phase? == vertice_crds::backup_status::BackupPhase::Scheduled).then_some(())
        }
    })
    .await;

    if agent_image.is_some() {
        // Run the CronJob now, as `kubectl create job --from=cronjob/…` does.
        let jobs: Api<Job> = Api::namespaced(client.clone(), &ns);
        let template = cron_job.spec.job_template.clone();
        let job = Job {
            metadata: kube::api::ObjectMeta {
                name: Some("vertice-cache-manual".into()),
                labels: template.metadata.as_ref().and_then(|m| m.labels.clone()),
                annotations: template
                    .metadata
                    .as_ref()
                    .and_then(|m| m.annotations.clone()),
                ..Default::default()
            },
            spec: Some(JobSpec {
                ..template.spec.expect("job spec")
            }),
            status: None,
        };
        jobs.create(&PostParams::default(), &job)
            .await
            .expect("create Job");
        let record = wait_for(
            "a successful backup in the status",
            Duration::from_secs(300),
            || {
                let backups = backups.clone();
                async move {
                    backups
                        .get("cache")
                        .await
                        .ok()?
                        .status?
                        .last_successful_backup
                }
            },
        )
        .await;
        assert!(
            record.backup_id.is_some() && record.stored_bytes.unwrap_or(0) > 0,
            "{record:?}"
        );
    }

    backups
        .patch(
            "cache",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"suspend": true}})),
        )
        .await
        .expect("suspend");
    wait_for("the CronJob suspended", Duration::from_secs(60), || {
        let cron_jobs = cron_jobs.clone();
        async move {
            (cron_jobs.get("vertice-cache").await.ok()?.spec.suspend == Some(true)).then_some(())
        }
    })
    .await;

    backups
        .delete("cache", &DeleteParams::foreground())
        .await
        .expect("delete");
    wait_for(
        "the CronJob garbage-collected",
        Duration::from_secs(120),
        || {
            let cron_jobs = cron_jobs.clone();
            async move {
                cron_jobs
                    .get_opt("vertice-cache")
                    .await
                    .ok()?
                    .is_none()
                    .then_some(())
            }
        },
    )
    .await;
    namespaces
        .delete(&ns, &DeleteParams::default())
        .await
        .expect("delete namespace");
}

async fn deploy_redis_and_claim(client: &Client, ns: &str) {
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Service};
    let pp = PostParams::default();
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "redis"},
        "spec": {"selector": {"matchLabels": {"app": "redis"}},
                 "template": {"metadata": {"labels": {"app": "redis"}},
                              "spec": {"containers": [{"name": "redis", "image": "redis:7-alpine", "ports": [{"containerPort": 6379}]}]}}}
    }))
    .expect("deployment");
    Api::<Deployment>::namespaced(client.clone(), ns)
        .create(&pp, &deployment)
        .await
        .expect("redis");
    let service: Service = serde_json::from_value(json!({
        "metadata": {"name": "redis"}, "spec": {"selector": {"app": "redis"}, "ports": [{"port": 6379}]}
    }))
    .expect("service");
    Api::<Service>::namespaced(client.clone(), ns)
        .create(&pp, &service)
        .await
        .expect("service");
    let claim: PersistentVolumeClaim = serde_json::from_value(json!({
        "metadata": {"name": "backups"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
    }))
    .expect("claim");
    Api::<PersistentVolumeClaim>::namespaced(client.clone(), ns)
        .create(&pp, &claim)
        .await
        .expect("claim");
}
