//! One `VerticeBackup` driven end to end on a real control plane: its
//! status, the annotations a user sets to run or drill it now, the Events
//! about it, the Secrets it references, and the check that a credential
//! shows up nowhere in its namespace.
//!
//! The per-engine suites (`kube_kafka`, `kube_search`) each run one backup
//! and one drill the same way and differ only in the engine; these helpers
//! were copied between them, so they live here, parametrised by the
//! backup's namespace and name instead of each suite's constants.

use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::{json, Value};
use vertice_crds::VerticeBackup;

use super::cluster::{create_secret, TestCluster};

/// The `VerticeBackup` `name` in `namespace` a suite drives, with the
/// client it drives it through (the admin's: these suites test the
/// controller, not RBAC).
pub struct BackupUnderTest {
    pub client: Client,
    pub namespace: String,
    pub name: String,
}

/// Whether [`BackupUnderTest::assert_secret_nowhere`] also searches the
/// namespace's Events (and requires there to be some). Not every suite's
/// leak check covers them, and the shared check keeps each suite's scope.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Events {
    Searched,
    NotSearched,
}

impl BackupUnderTest {
    pub fn new(client: Client, namespace: &str, name: &str) -> BackupUnderTest {
        BackupUnderTest {
            client,
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }

    fn backups(&self) -> Api<VerticeBackup> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// The backup's status as JSON (`Null` while it has none).
    pub async fn status(&self) -> Value {
        let backup = self.backups().get(&self.name).await.expect("get backup");
        serde_json::to_value(backup.status).unwrap_or(Value::Null)
    }

    /// Sets annotation `key` to `token`, as a user does to ask for a run
    /// (`vertice.io/run-now`) or a drill (`vertice.io/drill-now`) now.
    pub async fn annotate(&self, key: &str, token: &str) {
        self.backups()
            .patch(
                &self.name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": {key: token}}})),
            )
            .await
            .expect("annotate");
    }

    /// Waits until the status satisfies `done`; on timeout fails with the
    /// status, the pods (with the agent's output) and the controller's log,
    /// which is what it takes to tell why a run did not finish.
    pub async fn wait_status(
        &self,
        cluster: &TestCluster,
        controller_log: &dyn Fn() -> String,
        what: &str,
        timeout: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let status = self.status().await;
            if done(&status) {
                return status;
            }
            if Instant::now() >= deadline {
                let log = controller_log();
                let tail: Vec<&str> = log.lines().rev().take(60).collect();
                panic!(
                    "timed out after {timeout:?} waiting for {what}\nstatus: {status:#}\n{}\ncontroller log (newest first):\n{}",
                    cluster.describe_pods(&self.namespace).await,
                    tail.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Waits up to 30 s for an Event of `reason` and type `kind` in the
    /// namespace: the controller applies the status first and records its
    /// Events after, so a test that saw the status may not see them yet.
    pub async fn expect_event(&self, reason: &str, kind: &str) {
        let events: Api<Event> = Api::namespaced(self.client.clone(), &self.namespace);
        let found = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                let list = events.list(&ListParams::default()).await.expect("events");
                if list.items.iter().any(|e| {
                    e.reason.as_deref() == Some(reason) && e.type_.as_deref() == Some(kind)
                }) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
        .await;
        if found.is_err() {
            let list = events.list(&ListParams::default()).await.expect("events");
            panic!(
                "no {kind} event {reason} in {}: {:#?}",
                self.namespace, list.items
            );
        }
    }

    /// Creates Secret `name` in the backup's namespace with `string_data`,
    /// opted in for reference (the label the controller requires before a
    /// `VerticeBackup` may use it).
    pub async fn create_secret(&self, name: &str, string_data: Value) {
        create_secret(&self.client, &self.namespace, name, string_data, true).await;
    }

    /// Fails if `secret` appears anywhere in the namespace: the CronJobs,
    /// Jobs and Pods (and the Events, when `events` says so) as the API
    /// server holds them, the `VerticeBackup` with its status, and the
    /// agent's output in every pod. `what_secret` names it in the failure
    /// ("the password"). Also requires that runs happened, so an empty
    /// namespace cannot pass.
    pub async fn assert_secret_nowhere(
        &self,
        cluster: &TestCluster,
        secret: &str,
        what_secret: &str,
        events: Events,
    ) {
        let list = ListParams::default();
        let ns = &self.namespace;
        let cron_jobs = Api::<CronJob>::namespaced(self.client.clone(), ns)
            .list(&list)
            .await
            .expect("cron jobs")
            .items;
        let jobs = Api::<Job>::namespaced(self.client.clone(), ns)
            .list(&list)
            .await
            .expect("jobs")
            .items;
        let pods = Api::<Pod>::namespaced(self.client.clone(), ns)
            .list(&list)
            .await
            .expect("pods")
            .items;
        let event_list = match events {
            Events::Searched => Some(
                Api::<Event>::namespaced(self.client.clone(), ns)
                    .list(&list)
                    .await
                    .expect("events")
                    .items,
            ),
            Events::NotSearched => None,
        };
        let backup = self.backups().get(&self.name).await.expect("backup");
        let mut texts = vec![
            ("CronJobs", serde_json::to_string(&cron_jobs).expect("json")),
            ("Jobs", serde_json::to_string(&jobs).expect("json")),
            ("Pods", serde_json::to_string(&pods).expect("json")),
        ];
        if let Some(event_list) = &event_list {
            texts.push(("Events", serde_json::to_string(event_list).expect("json")));
        }
        texts.push((
            "the VerticeBackup",
            serde_json::to_string(&backup).expect("json"),
        ));
        for (what, text) in texts {
            assert!(
                !text.contains(secret),
                "{what_secret} is in the {what}: {text}"
            );
        }
        assert!(
            !jobs.is_empty()
                && !pods.is_empty()
                && event_list.as_ref().is_none_or(|e| !e.is_empty()),
            "runs happened"
        );
        for pod in &pods {
            let log = cluster.kubelet.container_log(pod);
            assert!(
                !log.contains(secret),
                "{what_secret} is in the output of {:?}: {log}",
                pod.metadata.name
            );
        }
    }
}

/// The container's environment variable `name` of a CronJob's pod template
/// (`Null` when it has none): what the controller hands the agent.
pub fn env_var(cron_job: &Value, name: &str) -> Value {
    cron_job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .and_then(|env| env.iter().find(|e| e["name"] == name).cloned())
        .unwrap_or(Value::Null)
}

/// The Secret and key an environment variable takes its value from
/// (empty strings when it takes none), to check a credential is referenced
/// rather than written into the CronJob.
pub fn secret_ref(var: &Value) -> (&str, &str) {
    let r = &var["valueFrom"]["secretKeyRef"];
    (
        r["name"].as_str().unwrap_or_default(),
        r["key"].as_str().unwrap_or_default(),
    )
}
