//! A fake API server behind kube's `tower-test` mock: it serves lists from
//! fixed objects, records every request, and fails the test on any request
//! the controller's RBAC (`permissions::REQUIRED`) would not allow.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use http::{Request, Response, StatusCode};
use kube::client::Body;
use kube::Client;
use serde_json::{json, Value};
use vertice_controller::permissions;

#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub body: Value,
}

#[derive(Default)]
pub struct World {
    /// CronJobs the label selector finds.
    pub cron_jobs: Vec<Value>,
    /// CronJobs without our label: only a GET by name finds them.
    pub unlabelled_cron_jobs: Vec<Value>,
    pub jobs: Vec<Value>,
    pub pods: Vec<Value>,
    /// Secrets by name and labels: only their metadata is ever served.
    pub secrets: Vec<(String, Value)>,
    /// The resource being reconciled, returned by status patches.
    pub backup: Value,
    /// When set, applying a CronJob is refused as invalid (422) with this
    /// message, as the API server refuses a schedule it cannot parse.
    pub refuse_cron_jobs: Option<String>,
    pub requests: Vec<Recorded>,
}

pub type Shared = Arc<Mutex<World>>;

/// A client whose requests are answered by `world`.
pub fn client(world: Shared) -> Client {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    tokio::spawn(async move {
        while let Some((request, send)) = handle.next_request().await {
            let (parts, body) = request.into_parts();
            let bytes = body.collect_bytes().await.expect("request body");
            let body: Value = if bytes.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&bytes).expect("JSON body")
            };
            let method = parts.method.to_string();
            let path = parts
                .uri
                .path_and_query()
                .map(|p| p.to_string())
                .unwrap_or_default();
            assert!(
                permissions::is_required(&method, &path),
                "{method} {path} is not in permissions::REQUIRED, so the deployed RBAC would refuse it"
            );
            if path.contains("/secrets") {
                let accept = parts
                    .headers
                    .get("accept")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                assert!(
                    accept.contains("as=PartialObjectMetadata"),
                    "{method} {path} would read a Secret's data (Accept: {accept:?}); only metadata is read"
                );
            }
            let (status, answer) = answer(&world, &method, &path, &body);
            world
                .lock()
                .expect("world")
                .requests
                .push(Recorded { method, path, body });
            let response = Response::builder()
                .status(status)
                .header("content-type", "application/json")
                .body(Body::from(serde_json::to_vec(&answer).expect("json")))
                .expect("response");
            send.send_response(response);
        }
    });
    Client::new(service, "default")
}

fn list(kind: &str, api_version: &str, items: &[Value]) -> Value {
    json!({"apiVersion": api_version, "kind": format!("{kind}List"), "metadata": {"resourceVersion": "1"}, "items": items})
}

fn answer(world: &Shared, method: &str, path: &str, body: &Value) -> (StatusCode, Value) {
    let w = world.lock().expect("world");
    let resource = path.split('?').next().unwrap_or(path);
    match method {
        "GET" if resource.ends_with("/cronjobs") => {
            (StatusCode::OK, list("CronJob", "batch/v1", &w.cron_jobs))
        }
        "GET" if resource.contains("/cronjobs/") => {
            let name = resource.rsplit('/').next().unwrap_or_default();
            match w
                .cron_jobs
                .iter()
                .chain(&w.unlabelled_cron_jobs)
                .find(|c| c["metadata"]["name"] == name)
            {
                Some(found) => (StatusCode::OK, found.clone()),
                None => not_found(),
            }
        }
        "GET" if resource.contains("/secrets/") => {
            let name = resource.rsplit('/').next().unwrap_or_default();
            match w.secrets.iter().find(|(n, _)| n == name) {
                Some((_, labels)) => (
                    StatusCode::OK,
                    json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
                           "metadata": {"name": name, "namespace": "shop", "labels": labels}}),
                ),
                None => not_found(),
            }
        }
        "GET" if resource.ends_with("/jobs") => (StatusCode::OK, list("Job", "batch/v1", &w.jobs)),
        "GET" if resource.ends_with("/pods") => (StatusCode::OK, list("Pod", "v1", &w.pods)),
        "PATCH" if resource.contains("/cronjobs/") && w.refuse_cron_jobs.is_some() => (
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 422,
                   "reason": "Invalid", "message": w.refuse_cron_jobs}),
        ),
        // Server-side apply and status patches answer with the object as applied.
        "PATCH" => {
            let mut object = body.clone();
            object["metadata"]["resourceVersion"] = json!("2");
            if resource.ends_with("/status") {
                let mut backup = w.backup.clone();
                backup["status"] = body["status"].clone();
                object = backup;
            }
            (StatusCode::OK, object)
        }
        "POST" if resource.ends_with("/events") => (StatusCode::CREATED, body.clone()),
        "DELETE" => (
            StatusCode::OK,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}),
        ),
        _ => not_found(),
    }
}

fn not_found() -> (StatusCode, Value) {
    (
        StatusCode::NOT_FOUND,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404, "reason": "NotFound", "message": "not found"}),
    )
}

pub fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A finished Job of the backup and its pod with the agent's summary.
pub fn finished_job(
    backup: &str,
    job: &str,
    succeeded: bool,
    finished: DateTime<Utc>,
    summary: Value,
) -> (Value, Value) {
    let labels =
        json!({"vertice.io/backup": backup, "app.kubernetes.io/managed-by": "vertice-controller"});
    let condition = if succeeded {
        json!({"type": "Complete", "status": "True", "lastTransitionTime": ts(finished)})
    } else {
        json!({"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit", "lastTransitionTime": ts(finished)})
    };
    let job_object = json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": job, "namespace": "shop", "labels": labels,
                     "annotations": {"vertice.io/backup-name": backup}},
        "spec": {"template": {"spec": {"containers": []}}},
        "status": {"conditions": [condition], "startTime": ts(finished - chrono::Duration::minutes(2))}
    });
    let mut pod_labels = labels.clone();
    pod_labels["batch.kubernetes.io/job-name"] = json!(job);
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("{job}-abcde"), "namespace": "shop", "labels": pod_labels},
        "spec": {"containers": []},
        "status": {"containerStatuses": [{
            "name": "agent", "ready": false, "restartCount": 0, "image": "agent", "imageID": "",
            "state": {"terminated": {"exitCode": if succeeded {0} else {1}, "finishedAt": ts(finished),
                                     "message": summary.to_string()}}
        }]}
    });
    (job_object, pod)
}
