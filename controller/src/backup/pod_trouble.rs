//! What a run's Job and pods say when the agent cannot: a pod that cannot
//! start (a missing Secret, an image that cannot be pulled, no node that
//! fits), and why a run stopped from outside (evicted, preempted, past its
//! deadline, out of memory). Pure: from the Job and pod objects.

use chrono::{DateTime, Utc};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// Container waiting reasons that mean the run cannot start until someone
/// acts; the kubelet retries them, so the Job would wait for its deadline.
const CANNOT_START: [(&str, &str); 5] = [
    (
        "CreateContainerConfigError",
        "create the missing Secret or ConfigMap, or fix the reference in the VerticeBackup",
    ),
    (
        "CreateContainerError",
        "see the pod's events; the container runtime refused the container",
    ),
    (
        "ImagePullBackOff",
        "check the image name (spec.pod.image or the controller's --agent-image) and the registry credentials",
    ),
    (
        "ErrImagePull",
        "check the image name (spec.pod.image or the controller's --agent-image) and the registry credentials",
    ),
    (
        "InvalidImageName",
        "fix the image name (spec.pod.image or the controller's --agent-image)",
    ),
];

/// How long a pod may wait for a node, or an image pull may fail before it
/// backs off, before the run counts as blocked: a cluster autoscaler adds a
/// node in about a minute, and a registry hiccup is retried at once. Other
/// reasons (a missing Secret) block at once.
pub const GRACE: chrono::Duration = chrono::Duration::seconds(30);

/// Kubelet messages are short; a registry's answer may not be.
const MAX_MESSAGE: usize = 300;

/// A started run whose pod cannot start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocked {
    pub job: String,
    /// The container's waiting reason (or `Unschedulable`): the condition's
    /// and the Event's reason.
    pub reason: String,
    /// A sentence naming the Job, pod, container, what is wrong (the
    /// kubelet's message: it names the Secret or image, never a value) and
    /// what fixes it.
    pub message: String,
}

/// The first of the unfinished `jobs` whose pod cannot start, as of `now`:
/// an unschedulable pod or a failed image pull only after `GRACE`.
pub fn blocked<'a>(
    jobs: impl IntoIterator<Item = &'a Job>,
    pods: &[Pod],
    now: DateTime<Utc>,
) -> Option<Blocked> {
    jobs.into_iter().find_map(|job| {
        let job_name = job.metadata.name.as_deref()?;
        pods_of(job_name, pods).find_map(|pod| blocked_pod(job_name, pod, now))
    })
}

/// Whether `since` is at least `GRACE` before `now`; an unknown time
/// counts as long ago (nothing says the trouble is new).
fn lasted(since: Option<&Time>, now: DateTime<Utc>) -> bool {
    since.is_none_or(|t| now - crate::shared::t_to_chrono(&t.0) >= GRACE)
}

fn blocked_pod(job: &str, pod: &Pod, now: DateTime<Utc>) -> Option<Blocked> {
    let status = pod.status.as_ref()?;
    if status.phase.as_deref() != Some("Pending") {
        return None;
    }
    let pod_name = pod.metadata.name.as_deref().unwrap_or("?");
    let containers = status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten());
    // The waiting state has no time: a first failed pull counts from the
    // pod's creation. It turns into ImagePullBackOff on the kubelet's retry.
    let created = pod.metadata.creation_timestamp.as_ref();
    for c in containers {
        if let Some((reason, message, fix)) = cannot_start(c) {
            if reason == "ErrImagePull" && !lasted(created, now) {
                continue;
            }
            return Some(Blocked {
                job: job.into(),
                reason: reason.into(),
                message: format!(
                    "Job {job} cannot start: container {} of pod {pod_name} is waiting with {reason}: {}. To fix: {fix}.",
                    c.name,
                    cut(message),
                ),
            });
        }
    }
    // No node takes it (there is no waiting container yet).
    let unschedulable = status.conditions.iter().flatten().find(|c| {
        c.type_ == "PodScheduled"
            && c.status == "False"
            && c.reason.as_deref() == Some("Unschedulable")
    })?;
    if !lasted(unschedulable.last_transition_time.as_ref().or(created), now) {
        return None;
    }
    Some(Blocked {
        job: job.into(),
        reason: "Unschedulable".into(),
        message: format!(
            "Job {job} cannot start: no node can run pod {pod_name}: {}. To fix: lower spec.job.resources or spec.pod's constraints, or add capacity.",
            cut(unschedulable.message.as_deref().unwrap_or("no reason given"))
        ),
    })
}

fn cannot_start(c: &ContainerStatus) -> Option<(&'static str, &str, &'static str)> {
    let waiting = c.state.as_ref()?.waiting.as_ref()?;
    let reason = waiting.reason.as_deref()?;
    let (reason, fix) = CANNOT_START.iter().find(|(r, _)| *r == reason)?;
    Some((
        reason,
        waiting.message.as_deref().unwrap_or("no message"),
        fix,
    ))
}

/// Why a failed run stopped, when the agent did not say: a category from
/// `vertice_crds::backup_status::BackupRecord::error_category` and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stopped {
    pub category: &'static str,
    pub message: String,
}

/// Pod disruption reasons (the `DisruptionTarget` condition's, the pod's
/// `status.reason`) that mean the run was stopped from outside.
const DISRUPTED: [&str; 8] = [
    "EvictionByEvictionAPI",
    "PreemptionByScheduler",
    "DeletionByTaintManager",
    "TerminationByKubelet",
    "Evicted",
    "Preempting",
    "NodeShutdown",
    "Shutdown",
];

/// From the Job's Failed condition (`reason`, `message`) and its pods.
pub fn stopped(
    job: &Job,
    reason: Option<&str>,
    message: Option<&str>,
    pods: &[Pod],
) -> Option<Stopped> {
    let job_name = job.metadata.name.as_deref()?;
    let interrupted = |how: String| {
        Stopped {
        category: "interrupted",
        message: format!(
            "the run was interrupted: {how}; nothing is wrong with the backup itself, the next run usually succeeds"
        ),
    }
    };
    // The pod failure policy (`cron_job::fail_when_disrupted`) names the
    // condition even after the pod is gone.
    if reason == Some("PodFailurePolicy") && message.is_some_and(|m| m.contains("DisruptionTarget"))
    {
        let how = pods_of(job_name, pods)
            .find_map(disruption)
            .unwrap_or_else(|| "its pod was evicted, preempted or its node shut down".into());
        return Some(interrupted(how));
    }
    if reason == Some("DeadlineExceeded") {
        let seconds = job
            .spec
            .as_ref()
            .and_then(|s| s.active_deadline_seconds)
            .map(|s| format!(" ({s} s)"))
            .unwrap_or_default();
        return Some(Stopped {
            category: "deadline",
            message: format!(
                "the run was stopped after spec.job.activeDeadlineSeconds{seconds}; raise it, or find what slows the run"
            ),
        });
    }
    if let Some(how) = pods_of(job_name, pods).find_map(disruption) {
        return Some(interrupted(how));
    }
    let oom = pods_of(job_name, pods).find_map(|p| {
        p.status
            .as_ref()?
            .container_statuses
            .iter()
            .flatten()
            .find(|c| {
                c.state
                    .as_ref()
                    .and_then(|s| s.terminated.as_ref())
                    .and_then(|t| t.reason.as_deref())
                    == Some("OOMKilled")
            })
            .map(|c| c.name.clone())
    })?;
    Some(Stopped {
        category: "resources",
        message: format!(
            "container {oom} ran out of memory (OOMKilled); raise spec.job.resources.limits.memory"
        ),
    })
}

/// How a pod was disrupted, if it was.
fn disruption(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?;
    let pod_name = pod.metadata.name.as_deref().unwrap_or("?");
    if let Some(c) = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "DisruptionTarget" && c.status == "True")
    {
        let reason = c.reason.as_deref().unwrap_or("DisruptionTarget");
        return Some(format!(
            "pod {pod_name} was stopped ({reason}: {})",
            cut(c.message.as_deref().unwrap_or("no message"))
        ));
    }
    let reason = status.reason.as_deref()?;
    DISRUPTED.contains(&reason).then(|| {
        format!(
            "pod {pod_name} was stopped ({reason}: {})",
            cut(status.message.as_deref().unwrap_or("no message"))
        )
    })
}

fn pods_of<'a>(job: &'a str, pods: &'a [Pod]) -> impl Iterator<Item = &'a Pod> + 'a {
    pods.iter().filter(move |p| {
        p.metadata.labels.as_ref().and_then(|l| {
            l.get("batch.kubernetes.io/job-name")
                .or_else(|| l.get("job-name"))
        }) == Some(&job.to_string())
    })
}

fn cut(text: &str) -> String {
    let text = text.trim().trim_end_matches('.');
    if text.chars().count() <= MAX_MESSAGE {
        return text.to_string();
    }
    let mut short: String = text.chars().take(MAX_MESSAGE).collect();
    short.push('…');
    short
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job(name: &str) -> Job {
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"activeDeadlineSeconds": 21600, "template": {"spec": {"containers": []}}},
        }))
        .expect("job")
    }

    fn now() -> DateTime<Utc> {
        "2026-11-30T03:00:00Z".parse().expect("time")
    }

    fn pod(job: &str, status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": format!("{job}-x1"), "labels": {"batch.kubernetes.io/job-name": job}},
            "status": status,
        }))
        .expect("pod")
    }

    #[test]
    fn a_missing_secret_blocks_the_run_and_is_named() {
        let pods = [pod(
            "orders-1",
            json!({"phase": "Pending", "containerStatuses": [{
                "name": "agent", "image": "agent", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": "CreateContainerConfigError",
                                      "message": "secret \"db\" not found"}}}]}),
        )];
        let b = blocked([&job("orders-1")], &pods, now()).expect("blocked");
        assert_eq!(b.reason, "CreateContainerConfigError");
        assert!(
            b.message.contains("secret \"db\" not found"),
            "{}",
            b.message
        );
        assert!(
            b.message.contains("Job orders-1") && b.message.contains("create the missing Secret"),
            "{}",
            b.message
        );
        // Another Job's pod does not block this one.
        assert_eq!(blocked([&job("orders-2")], &pods, now()), None);
    }

    #[test]
    fn image_pulls_and_unschedulable_pods_block_running_pods_do_not() {
        for reason in [
            "ImagePullBackOff",
            "ErrImagePull",
            "InvalidImageName",
            "CreateContainerError",
        ] {
            let pods = [pod(
                "j",
                json!({"phase": "Pending", "initContainerStatuses": [{
                    "name": "init", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
                    "state": {"waiting": {"reason": reason, "message": "Back-off pulling image \"x\""}}}]}),
            )];
            assert_eq!(
                blocked([&job("j")], &pods, now()).map(|b| b.reason),
                Some(reason.to_string())
            );
        }
        let pending = [pod(
            "j",
            json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
                   "reason": "Unschedulable", "message": "0/3 nodes are available: 3 Insufficient memory."}]}),
        )];
        let b = blocked([&job("j")], &pending, now()).expect("unschedulable");
        assert!(b.message.contains("Insufficient memory"), "{}", b.message);
        let starting = [pod(
            "j",
            json!({"phase": "Pending", "containerStatuses": [{
                "name": "agent", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": "ContainerCreating"}}}]}),
        )];
        assert_eq!(blocked([&job("j")], &starting, now()), None);
        let running = [pod("j", json!({"phase": "Running"}))];
        assert_eq!(blocked([&job("j")], &running, now()), None);
    }

    #[test]
    fn an_evicted_run_is_interrupted_with_or_without_its_pod() {
        let policy =
            Some("Pod ns/j-x1 has condition DisruptionTarget matching FailJob rule at index 0");
        let gone = stopped(&job("j"), Some("PodFailurePolicy"), policy, &[]).expect("interrupted");
        assert_eq!(gone.category, "interrupted");
        let evicted = [pod(
            "j",
            json!({"phase": "Failed", "conditions": [{"type": "DisruptionTarget", "status": "True",
                   "reason": "EvictionByEvictionAPI", "message": "Eviction API: evicting"}]}),
        )];
        let s =
            stopped(&job("j"), Some("PodFailurePolicy"), policy, &evicted).expect("interrupted");
        assert!(s.message.contains("EvictionByEvictionAPI"), "{}", s.message);
        // Without the policy (a Job written by an older controller): the pod.
        let s =
            stopped(&job("j"), Some("BackoffLimitExceeded"), None, &evicted).expect("interrupted");
        assert_eq!(s.category, "interrupted");
        let kubelet = [pod(
            "j",
            json!({"phase": "Failed", "reason": "Evicted",
                                        "message": "The node was low on resource: memory."}),
        )];
        let s = stopped(&job("j"), Some("BackoffLimitExceeded"), None, &kubelet).expect("evicted");
        assert!(s.message.contains("low on resource"), "{}", s.message);
    }

    #[test]
    fn deadlines_and_oom_have_their_own_categories() {
        let s = stopped(
            &job("j"),
            Some("DeadlineExceeded"),
            Some("Job was active longer than specified deadline"),
            &[],
        )
        .expect("deadline");
        assert_eq!(s.category, "deadline");
        assert!(s.message.contains("21600"), "{}", s.message);
        let oom = [pod(
            "j",
            json!({"phase": "Failed", "containerStatuses": [{
            "name": "agent", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]}),
        )];
        let s = stopped(&job("j"), Some("BackoffLimitExceeded"), None, &oom).expect("oom");
        assert_eq!(s.category, "resources");
        // An ordinary failure is left to the agent's summary.
        assert_eq!(
            stopped(&job("j"), Some("BackoffLimitExceeded"), None, &[]),
            None
        );
    }

    #[test]
    fn a_pod_waiting_for_a_node_or_a_first_pull_is_not_blocked_yet() {
        let created = |ago: i64| {
            let mut p = pod(
                "j",
                json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
                       "reason": "Unschedulable", "message": "0/3 nodes are available: 3 Insufficient cpu.",
                       "lastTransitionTime": (now() - chrono::Duration::seconds(ago)).to_rfc3339()}]}),
            );
            p.metadata.creation_timestamp = Some(Time(
                (now() - chrono::Duration::seconds(ago))
                    .to_rfc3339()
                    .parse()
                    .expect("time"),
            ));
            p
        };
        // A cluster autoscaler is adding a node: no alarm for 30 s.
        assert_eq!(blocked([&job("j")], &[created(10)], now()), None);
        let b = blocked([&job("j")], &[created(30)], now()).expect("unschedulable");
        assert_eq!(b.reason, "Unschedulable");

        let pulling = |reason: &str, ago: i64| {
            let mut p = pod(
                "j",
                json!({"phase": "Pending", "containerStatuses": [{
                    "name": "agent", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
                    "state": {"waiting": {"reason": reason, "message": "rpc error: pull failed"}}}]}),
            );
            p.metadata.creation_timestamp = Some(Time(
                (now() - chrono::Duration::seconds(ago))
                    .to_rfc3339()
                    .parse()
                    .expect("time"),
            ));
            p
        };
        // A first failed pull may be a registry hiccup the retry gets past.
        assert_eq!(
            blocked([&job("j")], &[pulling("ErrImagePull", 5)], now()),
            None
        );
        // It lasted, or the kubelet backs off: blocked.
        for (reason, ago) in [("ErrImagePull", 40), ("ImagePullBackOff", 5)] {
            assert_eq!(
                blocked([&job("j")], &[pulling(reason, ago)], now()).map(|b| b.reason),
                Some(reason.to_string())
            );
        }
        // A missing Secret or key blocks at once.
        assert_eq!(
            blocked(
                [&job("j")],
                &[pulling("CreateContainerConfigError", 1)],
                now()
            )
            .map(|b| b.reason),
            Some("CreateContainerConfigError".to_string())
        );
    }
}
