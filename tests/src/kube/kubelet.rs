//! A local kubelet for the test control plane: registers a Node, binds
//! every unscheduled Pod to it (there is no scheduler), and runs them.
//!
//! A container whose image names the agent runs the agent binary built from
//! this workspace with the pod's command and args, its environment
//! (`value`, `secretKeyRef`, `configMapKeyRef`, `fieldRef`, `envFrom`), its
//! Secret, ConfigMap, emptyDir and PersistentVolumeClaim volumes and its
//! termination-message file, in a mount namespace of its own, as the pod's
//! `runAsUser`. Its status is reported as a kubelet does: Running, then
//! Succeeded or Failed with the exit code and the termination message. Any
//! other container is reported Running and Ready without running anything.
//! A pod being deleted is stopped (SIGTERM, then SIGKILL after its grace
//! period, at most 10 s) and then removed, which is the kubelet's part of a
//! graceful deletion.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use chrono::Utc;
use k8s_openapi::api::core::v1::{
    Binding, ConfigMap, Container, Node, ObjectReference, Pod, Secret,
};
use kube::api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use tokio::sync::Mutex;

pub const NODE_NAME: &str = "vertice-local";
/// How long the kubelet keeps the last lines of a container's output for a
/// `FallbackToLogsOnError` termination message (the real kubelet: 80 lines
/// or 2 KiB).
const FALLBACK_LOG_BYTES: usize = 2048;
const MAX_MESSAGE_BYTES: usize = 4096;

#[derive(Clone)]
pub struct KubeletConfig {
    /// Images containing this string run `agent_bin`.
    pub agent_image_marker: String,
    pub agent_bin: PathBuf,
    /// Extra environment every agent container gets (PATH to the tools).
    pub extra_env: BTreeMap<String, String>,
}

pub struct LocalKubelet {
    task: tokio::task::JoinHandle<()>,
    state: Arc<Mutex<State>>,
    pub dir: PathBuf,
}

struct Running {
    child: tokio::process::Child,
    pgid: i32,
    started: chrono::DateTime<Utc>,
    container: String,
    log: PathBuf,
    termination_log: PathBuf,
    message_policy: String,
    restart_policy: String,
    restarts: i32,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(self.pgid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

#[derive(Default)]
struct State {
    running: HashMap<String, Running>,
    /// Pods this kubelet finished or marked running (by uid), so they are not
    /// started twice.
    handled: HashMap<String, ()>,
    /// When the kubelet started stopping a pod being deleted.
    stopping: HashMap<String, Instant>,
}

impl Drop for LocalKubelet {
    fn drop(&mut self) {
        self.task.abort();
        if let Ok(mut state) = self.state.try_lock() {
            state.running.clear();
        }
    }
}

impl LocalKubelet {
    pub async fn start(client: Client, config: KubeletConfig, dir: &Path) -> LocalKubelet {
        let dir = dir.join("kubelet");
        std::fs::create_dir_all(&dir).expect("kubelet dir");
        register_node(&client).await;
        let state = Arc::new(Mutex::new(State::default()));
        let task = {
            let (state, dir) = (state.clone(), dir.clone());
            tokio::spawn(async move {
                loop {
                    if let Err(e) = sync_once(&client, &config, &dir, &state).await {
                        eprintln!("local kubelet: {e}");
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            })
        };
        LocalKubelet { task, state, dir }
    }

    /// The host directory that backs a PersistentVolumeClaim of this node.
    pub fn claim_dir(&self, namespace: &str, claim: &str) -> PathBuf {
        claim_dir(&self.dir, namespace, claim)
    }

    /// The output of a pod's container (the kubelet's container log).
    pub fn container_log(&self, pod: &Pod) -> String {
        std::fs::read_to_string(self.dir.join(pod_dir_name(pod)).join("container.log"))
            .unwrap_or_default()
    }
}

fn claim_dir(dir: &Path, namespace: &str, claim: &str) -> PathBuf {
    let path = dir.join("claims").join(namespace).join(claim);
    std::fs::create_dir_all(&path).expect("claim dir");
    // The pod's user writes there, as on a volume with fsGroup applied.
    let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777));
    path
}

fn pod_dir_name(pod: &Pod) -> String {
    format!("pod-{}", pod.uid().unwrap_or_default())
}

async fn register_node(client: &Client) {
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": NODE_NAME, "labels": {"kubernetes.io/hostname": NODE_NAME, "kubernetes.io/os": "linux"}},
    }))
    .expect("node");
    nodes
        .patch(
            NODE_NAME,
            &PatchParams::apply("vertice-local-kubelet").force(),
            &Patch::Apply(&node),
        )
        .await
        .expect("register node");
    let now = Utc::now().to_rfc3339();
    let status = json!({"status": {
        "capacity": {"cpu": "16", "memory": "64Gi", "pods": "500"},
        "allocatable": {"cpu": "16", "memory": "64Gi", "pods": "500"},
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
            "message": "vertice local kubelet", "lastHeartbeatTime": now, "lastTransitionTime": now}],
        "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": NODE_NAME}],
        "nodeInfo": {"machineID": "", "systemUUID": "", "bootID": "", "kernelVersion": "", "osImage": "",
            "containerRuntimeVersion": "vertice://local", "kubeletVersion": "v1.37.2",
            "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": "amd64"},
    }});
    nodes
        .patch_status(NODE_NAME, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("node status");
}

type SyncResult = Result<(), String>;

async fn sync_once(
    client: &Client,
    config: &KubeletConfig,
    dir: &Path,
    state: &Mutex<State>,
) -> SyncResult {
    let all: Api<Pod> = Api::all(client.clone());
    let pods = all
        .list(&ListParams::default())
        .await
        .map_err(|e| format!("list pods: {e}"))?
        .items;
    let mut state = state.lock().await;
    for pod in pods {
        let (Some(namespace), name, Some(uid)) = (pod.namespace(), pod.name_any(), pod.uid())
        else {
            continue;
        };
        let api: Api<Pod> = Api::namespaced(client.clone(), &namespace);
        let spec = pod.spec.clone().unwrap_or_default();
        if spec.node_name.is_none() {
            if pod.metadata.deletion_timestamp.is_none() {
                bind(&api, &name, &uid).await?;
            }
            continue;
        }
        if spec.node_name.as_deref() != Some(NODE_NAME) {
            continue;
        }
        if pod.metadata.deletion_timestamp.is_some() {
            stop_deleted(&api, &pod, &uid, &mut state).await?;
            continue;
        }
        let phase = pod.status.as_ref().and_then(|s| s.phase.clone());
        if matches!(phase.as_deref(), Some("Succeeded" | "Failed")) {
            continue;
        }
        if let Some(running) = state.running.get_mut(&uid) {
            if let Ok(Some(status)) = running.child.try_wait() {
                let code = exit_code(status);
                let restart = running.restart_policy == "Always"
                    || (running.restart_policy == "OnFailure" && code != 0);
                if restart {
                    let restarts = running.restarts + 1;
                    state.running.remove(&uid);
                    state.handled.remove(&uid);
                    start_pod(client, config, dir, &pod, &mut state, restarts).await?;
                } else if let Some(running) = state.running.remove(&uid) {
                    report_terminated(&api, &pod, &running, code).await?;
                }
            }
            continue;
        }
        if !state.handled.contains_key(&uid) {
            start_pod(client, config, dir, &pod, &mut state, 0).await?;
        }
    }
    Ok(())
}

fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

async fn bind(api: &Api<Pod>, name: &str, uid: &str) -> SyncResult {
    let binding = Binding {
        metadata: ObjectMeta {
            name: Some(name.into()),
            uid: Some(uid.into()),
            ..ObjectMeta::default()
        },
        target: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(NODE_NAME.into()),
            ..ObjectReference::default()
        },
    };
    match api
        .create_subresource::<Binding, serde_json::Value>(
            "binding",
            name,
            &PostParams::default(),
            &binding,
        )
        .await
    {
        // A pod deleted or bound meanwhile is not an error.
        Ok(_) | Err(kube::Error::Api(_)) => Ok(()),
        Err(e) => Err(format!("bind {name}: {e}")),
    }
}

async fn stop_deleted(api: &Api<Pod>, pod: &Pod, uid: &str, state: &mut State) -> SyncResult {
    let name = pod.name_any();
    let grace = Duration::from_secs(
        pod.metadata
            .deletion_grace_period_seconds
            .unwrap_or(30)
            .clamp(0, 10) as u64,
    );
    let since = *state
        .stopping
        .entry(uid.to_string())
        .or_insert_with(Instant::now);
    if let Some(running) = state.running.get_mut(uid) {
        let exited = matches!(running.child.try_wait(), Ok(Some(_)));
        if !exited {
            let signal = if since.elapsed() >= grace {
                nix::sys::signal::Signal::SIGKILL
            } else {
                nix::sys::signal::Signal::SIGTERM
            };
            let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(running.pgid), signal);
            return Ok(());
        }
    }
    state.running.remove(uid);
    state.stopping.remove(uid);
    match api
        .delete(
            &name,
            &DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(kube::api::Preconditions {
                    uid: Some(uid.into()),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            },
        )
        .await
    {
        Ok(_) | Err(kube::Error::Api(_)) => Ok(()),
        Err(e) => Err(format!("delete {name}: {e}")),
    }
}

fn is_agent(container: &Container, config: &KubeletConfig) -> bool {
    container
        .image
        .as_deref()
        .is_some_and(|i| i.contains(&config.agent_image_marker))
}

async fn start_pod(
    client: &Client,
    config: &KubeletConfig,
    dir: &Path,
    pod: &Pod,
    state: &mut State,
    restarts: i32,
) -> SyncResult {
    let (Some(namespace), Some(uid)) = (pod.namespace(), pod.uid()) else {
        return Ok(());
    };
    let api: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let spec = pod.spec.clone().unwrap_or_default();
    let Some(container) = spec
        .containers
        .iter()
        .find(|c| is_agent(c, config))
        .cloned()
    else {
        // Nothing to run: every container is Running and Ready at once.
        let statuses: Vec<_> = spec
            .containers
            .iter()
            .map(|c| running_status(c, Utc::now(), 0))
            .collect();
        patch_status(&api, pod, "Running", true, statuses).await?;
        state.handled.insert(uid, ());
        return Ok(());
    };
    let pod_dir = dir.join(pod_dir_name(pod));
    std::fs::create_dir_all(&pod_dir).map_err(|e| e.to_string())?;
    let prepared = match prepare(client, &namespace, pod, &container, &pod_dir).await {
        Ok(p) => p,
        Err(message) => {
            // What a kubelet reports for a missing Secret or key; it retries.
            let waiting = json!({"name": container.name, "image": container.image, "imageID": "",
                "ready": false, "restartCount": restarts,
                "state": {"waiting": {"reason": "CreateContainerConfigError", "message": message}}});
            patch_status(&api, pod, "Pending", false, vec![waiting]).await?;
            return Ok(());
        }
    };
    let security = spec.security_context.clone().unwrap_or_default();
    let container_security = container.security_context.clone().unwrap_or_default();
    let user = container_security.run_as_user.or(security.run_as_user);
    let group = container_security.run_as_group.or(security.run_as_group);
    let fs_group = security.fs_group;
    for path in &prepared.owned_paths {
        chown_tree(path, user, fs_group.or(group));
    }

    let mut argv: Vec<String> = container.command.clone().unwrap_or_default();
    if argv.is_empty() {
        argv.push(config.agent_bin.display().to_string());
    } else if argv[0].ends_with("vertice-agent") {
        argv[0] = config.agent_bin.display().to_string();
    }
    argv.extend(container.args.clone().unwrap_or_default());

    // A shell builds the pod's mounts inside its own mount namespace, then
    // becomes the pod's user and the container's process.
    let mut script = String::from("set -e; mount --make-rprivate /; ");
    // A mount over a directory holding the kubelet's own files (an emptyDir
    // on /tmp) would hide the sources of the others: it goes last.
    let mut mounts: Vec<&Mount> = prepared.mounts.iter().collect();
    mounts.sort_by_key(|m| pod_dir.starts_with(&m.target));
    for m in mounts {
        let target = shell_quote(&m.target);
        let source = shell_quote(&m.source.display().to_string());
        if m.source.is_dir() {
            script += &format!("mkdir -p {target}; ");
        } else {
            script +=
                &format!("mkdir -p \"$(dirname {target})\"; [ -e {target} ] || touch {target}; ");
        }
        script += &format!("mount --bind {source} {target}; ");
        if m.read_only {
            script += &format!("mount -o remount,bind,ro {target}; ");
        }
    }
    let mut identity = String::new();
    if let Some(u) = user {
        let g = group.unwrap_or(u);
        let groups = fs_group
            .map(|f| format!("--groups={f}"))
            .unwrap_or("--clear-groups".into());
        identity = format!("setpriv --reuid={u} --regid={g} {groups} -- ");
    }
    let workdir = container.working_dir.clone().unwrap_or_else(|| "/".into());
    script += &format!("cd {}; exec {identity}\"$@\"", shell_quote(&workdir));

    let log = pod_dir.join("container.log");
    let out = std::fs::File::create(&log).map_err(|e| e.to_string())?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    let mut command = tokio::process::Command::new("unshare");
    command
        .args(["--mount", "--", "sh", "-c", &script, "sh"])
        .args(&argv)
        .env_clear()
        .envs(&config.extra_env)
        .envs(&prepared.env)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .kill_on_drop(true);
    let child = command
        .spawn()
        .map_err(|e| format!("start container: {e}"))?;
    let pgid = child.id().map(|p| p as i32).unwrap_or(0);
    let started = Utc::now();
    let statuses = vec![running_status(&container, started, restarts)];
    state.running.insert(
        uid.clone(),
        Running {
            child,
            pgid,
            started,
            container: container.name.clone(),
            log,
            termination_log: prepared.termination_log,
            message_policy: container
                .termination_message_policy
                .clone()
                .unwrap_or_else(|| "File".into()),
            restart_policy: spec
                .restart_policy
                .clone()
                .unwrap_or_else(|| "Always".into()),
            restarts,
        },
    );
    state.handled.insert(uid, ());
    patch_status(&api, pod, "Running", true, statuses).await
}

fn running_status(
    container: &Container,
    started: chrono::DateTime<Utc>,
    restarts: i32,
) -> serde_json::Value {
    json!({"name": container.name, "image": container.image, "imageID": container.image,
        "containerID": format!("vertice://{}", container.name),
        "ready": true, "started": true, "restartCount": restarts,
        "state": {"running": {"startedAt": started.to_rfc3339()}}})
}

async fn report_terminated(api: &Api<Pod>, pod: &Pod, running: &Running, code: i32) -> SyncResult {
    let mut message = read_limited(&running.termination_log, MAX_MESSAGE_BYTES);
    if message.is_empty() && code != 0 && running.message_policy == "FallbackToLogsOnError" {
        let log = std::fs::read(&running.log).unwrap_or_default();
        let start = log.len().saturating_sub(FALLBACK_LOG_BYTES);
        message = String::from_utf8_lossy(&log[start..]).into_owned();
    }
    let status = json!({"name": running.container, "image": "", "imageID": "",
        "containerID": format!("vertice://{}", running.container),
        "ready": false, "started": false, "restartCount": running.restarts,
        "state": {"terminated": {"exitCode": code,
            "reason": if code == 0 { "Completed" } else { "Error" },
            "message": message,
            "startedAt": running.started.to_rfc3339(), "finishedAt": Utc::now().to_rfc3339(),
            "containerID": format!("vertice://{}", running.container)}}});
    let phase = if code == 0 { "Succeeded" } else { "Failed" };
    patch_status(api, pod, phase, false, vec![status]).await
}

fn read_limited(path: &Path, max: usize) -> String {
    let bytes = std::fs::read(path).unwrap_or_default();
    String::from_utf8_lossy(&bytes[..bytes.len().min(max)]).into_owned()
}

async fn patch_status(
    api: &Api<Pod>,
    pod: &Pod,
    phase: &str,
    ready: bool,
    containers: Vec<serde_json::Value>,
) -> SyncResult {
    let now = Utc::now().to_rfc3339();
    let condition = |kind: &str, status: bool| json!({"type": kind, "status": if status { "True" } else { "False" }, "lastTransitionTime": now});
    let patch = json!({"status": {
        "phase": phase,
        "hostIP": "127.0.0.1", "podIP": "127.0.0.1",
        "podIPs": [{"ip": "127.0.0.1"}],
        "startTime": pod.status.as_ref().and_then(|s| s.start_time.clone()).map(|t| t.0.to_string()).unwrap_or(now.clone()),
        "conditions": [condition("PodScheduled", true), condition("Initialized", true),
            condition("ContainersReady", ready), condition("Ready", ready)],
        "containerStatuses": containers,
    }});
    match api
        .patch_status(
            &pod.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) | Err(kube::Error::Api(_)) => Ok(()),
        Err(e) => Err(format!("pod status {}: {e}", pod.name_any())),
    }
}

struct Mount {
    source: PathBuf,
    target: String,
    read_only: bool,
}

struct Prepared {
    env: BTreeMap<String, String>,
    mounts: Vec<Mount>,
    termination_log: PathBuf,
    /// Files the pod's user must own (volumes with fsGroup semantics).
    owned_paths: Vec<PathBuf>,
}

async fn get_secret(client: &Client, ns: &str, name: &str) -> Result<Option<Secret>, String> {
    Api::<Secret>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .map_err(|e| format!("get secret {name}: {e}"))
}

async fn get_config_map(
    client: &Client,
    ns: &str,
    name: &str,
) -> Result<Option<ConfigMap>, String> {
    Api::<ConfigMap>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .map_err(|e| format!("get configmap {name}: {e}"))
}

fn secret_data(secret: &Secret) -> BTreeMap<String, Vec<u8>> {
    let mut data: BTreeMap<String, Vec<u8>> = secret
        .data
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect();
    for (k, v) in secret.string_data.clone().unwrap_or_default() {
        data.insert(k, v.into_bytes());
    }
    data
}

fn config_map_data(map: &ConfigMap) -> BTreeMap<String, Vec<u8>> {
    let mut data: BTreeMap<String, Vec<u8>> = map
        .data
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.into_bytes()))
        .collect();
    for (k, v) in map.binary_data.clone().unwrap_or_default() {
        data.insert(k, v.0);
    }
    data
}

async fn prepare(
    client: &Client,
    namespace: &str,
    pod: &Pod,
    container: &Container,
    pod_dir: &Path,
) -> Result<Prepared, String> {
    let mut env = BTreeMap::new();
    env.insert("HOSTNAME".to_string(), pod.name_any());
    for from in container.env_from.clone().unwrap_or_default() {
        let prefix = from.prefix.unwrap_or_default();
        let data = if let Some(s) = from.secret_ref {
            match get_secret(client, namespace, &s.name).await? {
                Some(secret) => secret_data(&secret),
                None if s.optional == Some(true) => BTreeMap::new(),
                None => return Err(format!("secret \"{}\" not found", s.name)),
            }
        } else if let Some(c) = from.config_map_ref {
            match get_config_map(client, namespace, &c.name).await? {
                Some(map) => config_map_data(&map),
                None if c.optional == Some(true) => BTreeMap::new(),
                None => return Err(format!("configmap \"{}\" not found", c.name)),
            }
        } else {
            BTreeMap::new()
        };
        for (k, v) in data {
            env.insert(
                format!("{prefix}{k}"),
                String::from_utf8_lossy(&v).into_owned(),
            );
        }
    }
    for var in container.env.clone().unwrap_or_default() {
        if let Some(value) = var.value {
            env.insert(var.name, expand(&value, &env));
            continue;
        }
        let Some(source) = var.value_from else {
            env.insert(var.name, String::new());
            continue;
        };
        let value = if let Some(sel) = source.secret_key_ref {
            let secret = get_secret(client, namespace, &sel.name).await?;
            match secret.and_then(|s| secret_data(&s).remove(&sel.key)) {
                Some(v) => Some(String::from_utf8_lossy(&v).into_owned()),
                None if sel.optional == Some(true) => None,
                None => {
                    return Err(format!(
                        "couldn't find key {} in Secret {namespace}/{}",
                        sel.key, sel.name
                    ))
                }
            }
        } else if let Some(sel) = source.config_map_key_ref {
            let map = get_config_map(client, namespace, &sel.name).await?;
            match map.and_then(|m| config_map_data(&m).remove(&sel.key)) {
                Some(v) => Some(String::from_utf8_lossy(&v).into_owned()),
                None if sel.optional == Some(true) => None,
                None => {
                    return Err(format!(
                        "couldn't find key {} in ConfigMap {namespace}/{}",
                        sel.key, sel.name
                    ))
                }
            }
        } else if let Some(field) = source.field_ref {
            Some(match field.field_path.as_str() {
                "metadata.name" => pod.name_any(),
                "metadata.namespace" => namespace.to_string(),
                "metadata.uid" => pod.uid().unwrap_or_default(),
                "spec.nodeName" => NODE_NAME.to_string(),
                "spec.serviceAccountName" => pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.service_account_name.clone())
                    .unwrap_or_default(),
                "status.podIP" | "status.hostIP" => "127.0.0.1".to_string(),
                other => return Err(format!("unsupported fieldRef {other}")),
            })
        } else {
            None
        };
        if let Some(v) = value {
            env.insert(var.name, v);
        }
    }

    let spec = pod.spec.clone().unwrap_or_default();
    let mut sources: HashMap<String, (PathBuf, bool)> = HashMap::new();
    let mut owned_paths = Vec::new();
    for volume in spec.volumes.clone().unwrap_or_default() {
        let path = pod_dir.join("volumes").join(&volume.name);
        if let Some(s) = &volume.secret {
            let name = s.secret_name.clone().unwrap_or_default();
            let data = match get_secret(client, namespace, &name).await? {
                Some(secret) => secret_data(&secret),
                None if s.optional == Some(true) => BTreeMap::new(),
                None => return Err(format!("secret \"{name}\" not found")),
            };
            write_volume(
                &path,
                data,
                s.items.as_deref(),
                s.default_mode.unwrap_or(0o644),
            )?;
            owned_paths.push(path.clone());
            sources.insert(volume.name.clone(), (path, true));
        } else if let Some(c) = &volume.config_map {
            let name = c.name.clone();
            let data = match get_config_map(client, namespace, &name).await? {
                Some(map) => config_map_data(&map),
                None if c.optional == Some(true) => BTreeMap::new(),
                None => return Err(format!("configmap \"{name}\" not found")),
            };
            write_volume(
                &path,
                data,
                c.items.as_deref(),
                c.default_mode.unwrap_or(0o644),
            )?;
            owned_paths.push(path.clone());
            sources.insert(volume.name.clone(), (path, true));
        } else if volume.empty_dir.is_some() {
            std::fs::create_dir_all(&path).map_err(|e| e.to_string())?;
            let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o1777));
            sources.insert(volume.name.clone(), (path, false));
        } else if let Some(claim) = &volume.persistent_volume_claim {
            let dir = claim_dir(
                pod_dir.parent().unwrap_or(pod_dir),
                namespace,
                &claim.claim_name,
            );
            sources.insert(volume.name.clone(), (dir, claim.read_only == Some(true)));
        }
        // Projected service-account tokens and other kinds are not made.
    }
    let mut mounts = Vec::new();
    for m in container.volume_mounts.clone().unwrap_or_default() {
        let Some((source, read_only)) = sources.get(&m.name) else {
            continue;
        };
        let source = match &m.sub_path {
            Some(sub) if !sub.is_empty() => source.join(sub),
            _ => source.clone(),
        };
        mounts.push(Mount {
            source,
            target: m.mount_path.clone(),
            read_only: *read_only || m.read_only == Some(true),
        });
    }
    let termination_log = pod_dir.join("termination-log");
    std::fs::write(&termination_log, b"").map_err(|e| e.to_string())?;
    let _ = std::fs::set_permissions(&termination_log, std::fs::Permissions::from_mode(0o666));
    mounts.push(Mount {
        source: termination_log.clone(),
        target: container
            .termination_message_path
            .clone()
            .unwrap_or_else(|| "/dev/termination-log".into()),
        read_only: false,
    });
    Ok(Prepared {
        env,
        mounts,
        termination_log,
        owned_paths,
    })
}

/// `$(VAR)` references to earlier variables, as Kubernetes expands them.
fn expand(value: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = value.to_string();
    for (k, v) in env {
        out = out.replace(&format!("$({k})"), v);
    }
    out
}

fn write_volume(
    dir: &Path,
    data: BTreeMap<String, Vec<u8>>,
    items: Option<&[k8s_openapi::api::core::v1::KeyToPath]>,
    default_mode: i32,
) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let files: Vec<(String, Vec<u8>, i32)> = match items {
        Some(items) => items
            .iter()
            .map(|i| {
                data.get(&i.key)
                    .map(|v| (i.path.clone(), v.clone(), i.mode.unwrap_or(default_mode)))
                    .ok_or_else(|| format!("key {} is not in the volume's source", i.key))
            })
            .collect::<Result<_, _>>()?,
        None => data
            .into_iter()
            .map(|(k, v)| (k, v, default_mode))
            .collect(),
    };
    for (path, bytes, mode) in files {
        let file = dir.join(&path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
        }
        std::fs::write(&file, bytes).map_err(|e| e.to_string())?;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode as u32))
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn chown_tree(path: &Path, user: Option<i64>, group: Option<i64>) {
    let (Some(u), g) = (user, group) else {
        return;
    };
    let _ = std::process::Command::new("chown")
        .arg("-R")
        .arg(format!("{u}:{}", g.unwrap_or(u)))
        .arg(path)
        .status();
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Base64 of bytes, for Secret manifests in tests.
pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
