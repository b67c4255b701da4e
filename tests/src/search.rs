//! A throwaway single-node OpenSearch 2.19, Elasticsearch 7.17 or
//! OpenSearch 3.8 server on free loopback ports, rebuilt from the jars on
//! Maven Central: the distribution homes (`lib/`, `modules/transport-netty4/`,
//! and for OpenSearch 3.8 `plugins/repository-s3/`) come from
//! `scripts/lib/search-jars` (run by `scripts/install-test-deps`); each run
//! gets its own home in a temporary directory (config, data, logs, a
//! snapshot repository directory) whose `lib`, `modules` (and `plugins`)
//! link to them. OpenSearch 3.8 runs on the Temurin 25 JDK and can write
//! snapshots to S3 ([`SearchServer::start_with_s3`]).
//! Both servers refuse to run as root: as root the harness runs them as
//! [`SEARCH_USER`] (setpriv keeps the PID, so kill and wait still work).
//!
//! Beside the server, blocking fixture helpers over a tiny HTTP client
//! (`crate::http_json`): create indices, bulk-load, count, read every
//! document back with its routing, read mappings and settings.
//!
//! Each server takes about 300 MB and most of a core while it starts: on
//! the 2-core machines the suites run on, never run two at once (hold
//! [`one_at_a_time`] or start them one after the other in one test).

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::http_json;
use crate::ports::free_port;
use crate::process::{is_root, require_binary};

/// The OpenSearch version `scripts/lib/search-jars` lays out.
pub const OPENSEARCH_VERSION: &str = "2.19.6";
/// The Elasticsearch version `scripts/lib/search-jars` lays out.
pub const ELASTICSEARCH_VERSION: &str = "7.17.29";
/// The OpenSearch 3 version `scripts/lib/search-jars` lays out (with the
/// `repository-s3` plugin).
pub const OPENSEARCH3_VERSION: &str = "3.8.0";
/// The Java that runs OpenSearch 3 (it needs 21 or newer; the system Java
/// is 17). `VERTICE_SEARCH_JAVA25` overrides.
pub const TEMURIN25_JAVA: &str = "/usr/lib/jvm/temurin-25-jdk-amd64/bin/java";
/// The unprivileged user the servers run as when the tests run as root
/// (`VERTICE_SEARCH_USER` overrides; the script creates it).
pub const SEARCH_USER: &str = "vertice-search";

const INSTALL: &str = "scripts/install-test-deps";
/// About 6 s on an idle machine; a cold JIT on a busy 2-core one is slower.
const START_TIMEOUT: Duration = Duration::from_secs(90);
/// Both stop within a second of SIGTERM with the module policy
/// `scripts/lib/search-jars` writes (a missing netty permission made
/// OpenSearch hang for 30 s); SIGKILL after this, in case.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// A scroll page: big enough to be quick, small enough to page in tests.
const SCROLL_SIZE: usize = 1000;

/// Which server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// OpenSearch 2.19 (`distribution: opensearch` in `GET /`).
    OpenSearch,
    /// Elasticsearch 7.17 (the OSS build: no x-pack).
    Elasticsearch,
    /// OpenSearch 3.8 on the Temurin 25 JDK, with the `repository-s3`
    /// plugin (see [`SearchServer::start_with_s3`]).
    OpenSearch3,
}

/// The S3 service an OpenSearch 3 server's `repository-s3` plugin talks to
/// (its `default` client): register repositories with
/// `{"type": "s3", "settings": {"bucket": ..., "base_path": ...}}`.
#[derive(Debug, Clone)]
pub struct S3Client {
    /// "127.0.0.1:PORT" (a leading "http://" is tolerated); plain HTTP,
    /// path-style access, region us-east-1.
    pub endpoint: String,
    pub access_key: String,
    pub secret_key: String,
}

impl Flavour {
    /// The distribution name `version()` reports: "opensearch" or
    /// "elasticsearch".
    pub fn distribution(self) -> &'static str {
        match self {
            Flavour::OpenSearch | Flavour::OpenSearch3 => "opensearch",
            Flavour::Elasticsearch => "elasticsearch",
        }
    }

    /// The server version the harness runs.
    pub fn version(self) -> &'static str {
        match self {
            Flavour::OpenSearch => OPENSEARCH_VERSION,
            Flavour::Elasticsearch => ELASTICSEARCH_VERSION,
            Flavour::OpenSearch3 => OPENSEARCH3_VERSION,
        }
    }

    /// Its system property prefix ("opensearch" or "es") and main class.
    fn launch(self) -> (&'static str, &'static str) {
        match self {
            Flavour::OpenSearch | Flavour::OpenSearch3 => {
                ("opensearch", "org.opensearch.bootstrap.OpenSearch")
            }
            Flavour::Elasticsearch => ("es", "org.elasticsearch.bootstrap.Elasticsearch"),
        }
    }

    fn config_file(self) -> &'static str {
        match self {
            Flavour::OpenSearch | Flavour::OpenSearch3 => "opensearch.yml",
            Flavour::Elasticsearch => "elasticsearch.yml",
        }
    }

    /// The distribution home: `VERTICE_OPENSEARCH_HOME` /
    /// `VERTICE_ELASTICSEARCH_HOME` / `VERTICE_OPENSEARCH3_HOME`, or the
    /// cache the script fills.
    fn distribution_home(self) -> PathBuf {
        let (var, default) = match self {
            Flavour::OpenSearch => (
                "VERTICE_OPENSEARCH_HOME",
                format!("/var/cache/vertice/opensearch-{OPENSEARCH_VERSION}"),
            ),
            Flavour::Elasticsearch => (
                "VERTICE_ELASTICSEARCH_HOME",
                format!("/var/cache/vertice/elasticsearch-{ELASTICSEARCH_VERSION}"),
            ),
            Flavour::OpenSearch3 => (
                "VERTICE_OPENSEARCH3_HOME",
                format!("/var/cache/vertice/opensearch-{OPENSEARCH3_VERSION}"),
            ),
        };
        std::env::var_os(var)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(default))
    }
}

/// Serializes search servers within a test binary: hold the guard for as
/// long as a server runs. A poisoned lock (a test that panicked holding
/// it) is still a lock.
pub fn one_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running single-node server; stopped on drop (SIGTERM, then SIGKILL
/// after 10 s) and its temporary directory removed.
pub struct SearchServer {
    flavour: Flavour,
    port: u16,
    transport_port: u16,
    java: PathBuf,
    /// `Some(user)` when running as root: the server runs as that user.
    run_as: Option<String>,
    child: Option<Child>,
    /// Where server.log stood when the current process started, so a
    /// failure shows this start's lines only.
    log_from: u64,
    dir: tempfile::TempDir,
}

impl SearchServer {
    /// Lays out a fresh home and starts the server; returns once `GET /`
    /// answers and the cluster is at least yellow. Fails with the install
    /// command when the jars, java or the user are missing.
    pub fn start(flavour: Flavour) -> SearchServer {
        SearchServer::launch(flavour, None)
    }

    /// [`SearchServer::start`] with the `repository-s3` plugin's `default`
    /// client pointed at `s3`: its endpoint, protocol, path-style access
    /// and region in the config, the keys in `config/opensearch.keystore`
    /// (written with the server's own `KeyStoreWrapper`). Only
    /// [`Flavour::OpenSearch3`] has the plugin.
    pub fn start_with_s3(flavour: Flavour, s3: &S3Client) -> SearchServer {
        assert_eq!(
            flavour,
            Flavour::OpenSearch3,
            "only OpenSearch 3 has the repository-s3 plugin"
        );
        SearchServer::launch(flavour, Some(s3))
    }

    fn launch(flavour: Flavour, s3: Option<&S3Client>) -> SearchServer {
        let dist = flavour.distribution_home();
        let server_jar = dist.join("lib").join(format!(
            "{}-{}.jar",
            flavour.distribution(),
            flavour.version()
        ));
        assert!(
            dist.join(".complete").is_file() && server_jar.is_file(),
            "{} {} is not installed in {}; run `{INSTALL}` (or scripts/lib/search-jars)",
            flavour.distribution(),
            flavour.version(),
            dist.display()
        );
        let java = if flavour == Flavour::OpenSearch3 {
            let java = std::env::var_os("VERTICE_SEARCH_JAVA25")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(TEMURIN25_JAVA));
            assert!(
                java.is_file(),
                "{} (the Temurin 25 JDK that runs OpenSearch {OPENSEARCH3_VERSION}) is missing; \
                 install temurin-25-jdk (or set VERTICE_SEARCH_JAVA25), then run `{INSTALL}`",
                java.display()
            );
            java
        } else {
            match std::env::var_os("VERTICE_SEARCH_JAVA") {
                Some(java) => PathBuf::from(java),
                None => require_binary(
                    "java",
                    &[],
                    "apt-get install -y openjdk-17-jre-headless; then scripts/install-test-deps",
                ),
            }
        };
        let run_as = is_root().then(|| {
            let user =
                std::env::var("VERTICE_SEARCH_USER").unwrap_or_else(|_| SEARCH_USER.to_string());
            let known = Command::new("id")
                .arg("-u")
                .arg(&user)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            assert!(
                known,
                "user {user} does not exist (the search servers refuse to run as root); \
                 run `{INSTALL}` (or scripts/lib/search-jars)"
            );
            user
        });
        let dir = tempfile::Builder::new()
            .prefix(&format!("vertice-{}-", flavour.distribution()))
            .tempdir()
            .expect("search server tempdir");
        let home = dir.path().join("home");
        // OpenSearch 3's home has plugins (repository-s3); the others an
        // empty plugins directory.
        let linked: &[&str] = if flavour == Flavour::OpenSearch3 {
            &["lib", "modules", "plugins"]
        } else {
            &["lib", "modules"]
        };
        for sub in ["config", "data", "logs", "tmp", "plugins"] {
            if !linked.contains(&sub) {
                std::fs::create_dir_all(home.join(sub)).expect("create search home");
            }
        }
        std::fs::create_dir_all(dir.path().join("repo")).expect("create snapshot repo dir");
        // The server finds its jars, modules and plugins under its home.
        for sub in linked {
            std::os::unix::fs::symlink(dist.join(sub), home.join(sub))
                .expect("link the distribution into the home");
        }
        let port = free_port();
        let transport_port = free_port();
        let config = home.join("config");
        let mut server_yml = server_config(port, transport_port, &home, &dir.path().join("repo"));
        if let Some(s3) = s3 {
            server_yml.push_str(&s3_config(s3));
            write_keystore(&java, &dist, &config, s3);
        }
        std::fs::write(config.join(flavour.config_file()), server_yml)
            .expect("write the server config");
        std::fs::write(config.join("log4j2.properties"), log4j_properties(flavour))
            .expect("write log4j2.properties");
        // Read (and required to exist) by the launcher scripts only; kept
        // so the home looks like a distribution's.
        std::fs::write(config.join("jvm.options"), "").expect("write jvm.options");
        if let Some(user) = &run_as {
            let status = Command::new("chown")
                .arg("-R")
                .arg(format!("{user}:{user}"))
                .arg(dir.path())
                .status()
                .expect("run chown");
            assert!(status.success(), "chown -R {user} {}", dir.path().display());
        }
        let mut server = SearchServer {
            flavour,
            port,
            transport_port,
            java,
            run_as,
            child: None,
            log_from: 0,
            dir,
        };
        server.spawn_and_wait();
        server
    }

    pub fn flavour(&self) -> Flavour {
        self.flavour
    }

    /// "http://127.0.0.1:PORT".
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The HTTP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory in `path.repo`: register an `fs` snapshot repository
    /// with `location` at (or under) it.
    pub fn repo_path(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    /// The server's log (log4j), for failure messages.
    /// A `file://` backup store under `path.repo` that the agent (root
    /// here) and the node (its own user) both write: the agent's own `fs`
    /// snapshot repository lies inside it. Its root and URL.
    pub fn shared_store(&self) -> (PathBuf, String) {
        let root = self.repo_path().join("store");
        std::fs::create_dir_all(&root).expect("store root");
        std::fs::set_permissions(&root, std::os::unix::fs::PermissionsExt::from_mode(0o777))
            .expect("chmod the store root");
        let url = format!("file://{}", root.display());
        (root, url)
    }

    pub fn log_path(&self) -> PathBuf {
        self.home().join("logs").join("server.log")
    }

    /// The PID of the running server (the JVM itself: setpriv execs it).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the server with SIGKILL (a crash, for fault tests).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same data and ports (stopping it
    /// first if it still runs); returns once it serves requests and the
    /// cluster is at least yellow.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn_and_wait();
    }

    /// Stops the server: SIGTERM, then SIGKILL after 10 s. Reaps it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            crate::process::terminate(&mut child, STOP_TIMEOUT);
        }
    }

    /// Any request with an optional JSON body: (status, JSON body; `Null`
    /// when empty). Panics only when the server cannot be reached.
    pub fn request(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        http_json::request_json(self.port, method, path, body)
            .unwrap_or_else(|e| panic!("{} request failed: {e}; {}", self.name(), self.log_tail()))
    }

    /// Any request with an NDJSON body (`_bulk`, `_msearch`).
    pub fn request_ndjson(&self, method: &str, path: &str, ndjson: &str) -> (u16, Value) {
        http_json::request_ndjson(self.port, method, path, ndjson)
            .unwrap_or_else(|e| panic!("{} request failed: {e}; {}", self.name(), self.log_tail()))
    }

    /// Creates an index (`body`: settings, mappings, aliases); panics
    /// unless acknowledged.
    pub fn put_index(&self, name: &str, body: &Value) {
        let (status, response) = self.request("PUT", &format!("/{name}"), Some(body));
        assert_eq!(status, 200, "creating index {name}: {response}");
    }

    /// Sends a `_bulk` request (NDJSON; a final newline is added if
    /// missing) and panics if any item failed. Returns the response.
    pub fn bulk(&self, ndjson: &str) -> Value {
        let mut body = ndjson.to_string();
        if !body.ends_with('\n') {
            body.push('\n');
        }
        let (status, response) = self.request_ndjson("POST", "/_bulk", &body);
        assert_eq!(status, 200, "bulk: {response}");
        if response["errors"] != Value::Bool(false) {
            let failed: Vec<&Value> = response["items"]
                .as_array()
                .map(|items| {
                    items
                        .iter()
                        .filter_map(|i| i.as_object()?.values().next())
                        .filter(|r| r.get("error").is_some())
                        .take(3)
                        .collect()
                })
                .unwrap_or_default();
            panic!("bulk had failed items, first ones: {failed:?}");
        }
        response
    }

    /// Adds `alias` to `index`.
    pub fn add_alias(&self, index: &str, alias: &str) {
        let actions = serde_json::json!({"actions": [{"add": {"index": index, "alias": alias}}]});
        let (status, answer) = self.request("POST", "/_aliases", Some(&actions));
        assert_eq!(status, 200, "adding alias {alias} to {index}: {answer}");
    }

    /// Makes everything indexed so far searchable.
    pub fn refresh(&self, index: &str) {
        let (status, response) = self.request("POST", &format!("/{index}/_refresh"), None);
        assert_eq!(status, 200, "refreshing {index}: {response}");
    }

    /// The number of (searchable) documents in `index`.
    pub fn count(&self, index: &str) -> u64 {
        let (status, response) = self.request("GET", &format!("/{index}/_count"), None);
        assert_eq!(status, 200, "counting {index}: {response}");
        response["count"]
            .as_u64()
            .unwrap_or_else(|| panic!("no count for {index}: {response}"))
    }

    /// Every document of `index` by `_id`: its `_routing` (if any) and
    /// `_source`. Read with a scroll (sorting on `_id` may be disallowed,
    /// and `_shard_doc` is not sortable on OpenSearch 2.x).
    pub fn all_docs(&self, index: &str) -> BTreeMap<String, (Option<String>, Value)> {
        let mut docs = BTreeMap::new();
        let (status, mut page) = self.request(
            "POST",
            &format!("/{index}/_search?scroll=1m"),
            Some(&json!({"size": SCROLL_SIZE, "sort": ["_doc"]})),
        );
        assert_eq!(status, 200, "scrolling {index}: {page}");
        loop {
            let hits = page["hits"]["hits"].as_array().cloned().unwrap_or_default();
            let scroll_id = page["_scroll_id"].as_str().map(str::to_string);
            for hit in &hits {
                let id = hit["_id"]
                    .as_str()
                    .unwrap_or_else(|| panic!("hit without _id: {hit}"))
                    .to_string();
                let routing = hit["_routing"].as_str().map(str::to_string);
                let previous = docs.insert(id.clone(), (routing, hit["_source"].clone()));
                assert!(previous.is_none(), "{index}: _id {id} read twice");
            }
            let Some(scroll_id) = scroll_id else {
                break;
            };
            if hits.is_empty() {
                let _ = self.request(
                    "DELETE",
                    "/_search/scroll",
                    Some(&json!({"scroll_id": scroll_id})),
                );
                break;
            }
            let (status, next) = self.request(
                "POST",
                "/_search/scroll",
                Some(&json!({"scroll": "1m", "scroll_id": scroll_id})),
            );
            assert_eq!(status, 200, "scrolling {index}: {next}");
            page = next;
        }
        docs
    }

    /// The index's mappings (the `mappings` object of `GET /{index}/_mapping`).
    pub fn mapping(&self, index: &str) -> Value {
        let (status, response) = self.request("GET", &format!("/{index}/_mapping"), None);
        assert_eq!(status, 200, "mapping of {index}: {response}");
        response[index]["mappings"].clone()
    }

    /// The index's settings (the `settings` object of
    /// `GET /{index}/_settings`: `{"index": {...}}`).
    pub fn settings(&self, index: &str) -> Value {
        let (status, response) = self.request("GET", &format!("/{index}/_settings"), None);
        assert_eq!(status, 200, "settings of {index}: {response}");
        response[index]["settings"].clone()
    }

    /// Deletes an index; an index that does not exist is fine.
    pub fn delete_index(&self, name: &str) {
        let (status, response) = self.request("DELETE", &format!("/{name}"), None);
        assert!(
            status == 200 || status == 404,
            "deleting index {name}: {status} {response}"
        );
    }

    /// ("opensearch" or "elasticsearch", version number) from `GET /`.
    pub fn version(&self) -> (String, String) {
        let (status, response) = self.request("GET", "/", None);
        assert_eq!(status, 200, "GET /: {response}");
        let version = &response["version"];
        // Elasticsearch does not name its distribution; OpenSearch does.
        let distribution = version["distribution"]
            .as_str()
            .unwrap_or("elasticsearch")
            .to_string();
        let number = version["number"]
            .as_str()
            .unwrap_or_else(|| panic!("no version number in {response}"))
            .to_string();
        (distribution, number)
    }

    fn name(&self) -> String {
        format!("{} {}", self.flavour.distribution(), self.flavour.version())
    }

    fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    fn stdout_path(&self) -> PathBuf {
        self.home().join("logs").join("stdout.log")
    }

    fn spawn_and_wait(&mut self) {
        let home = self.home();
        self.log_from = std::fs::metadata(self.log_path())
            .map(|m| m.len())
            .unwrap_or(0);
        let stdout = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.stdout_path())
            .expect("open the server's stdout.log");
        let stderr = stdout.try_clone().expect("clone stdout.log");
        let mut command = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("setpriv");
                c.arg(format!("--reuid={user}"))
                    .arg(format!("--regid={user}"))
                    .arg("--init-groups")
                    .arg(&self.java);
                c
            }
            None => Command::new(&self.java),
        };
        let (prefix, main_class) = self.flavour.launch();
        let tmp = home.join("tmp");
        // Java 24 and later refuse to enable a security manager at all, and
        // OpenSearch 3 no longer uses one; the 2.19 and 7.17 servers need it
        // allowed on Java 17. On Java 25 JNA's System::load warns on stderr
        // unless native access is enabled (as OpenSearch 3's jvm.options do).
        let java_flags: &[&str] = if self.flavour == Flavour::OpenSearch3 {
            &["--enable-native-access=ALL-UNNAMED"]
        } else {
            &["-Djava.security.manager=allow"]
        };
        command
            // The recipe's small footprint: one JVM on a 2-core machine.
            .args(["-Xms512m", "-Xmx512m", "-XX:+UseSerialGC"])
            // What the distributions' jvm.options set and the servers
            // rely on (log4j's JMX needs a permission the policy lacks).
            .args([
                "-XX:-OmitStackTraceInFastThrow",
                "-Dfile.encoding=UTF-8",
                "-Djava.awt.headless=true",
                "-Djna.nosys=true",
                "-Dio.netty.noUnsafe=true",
                "-Dio.netty.noKeySetOptimization=true",
                "-Dio.netty.recycler.maxCapacityPerThread=0",
                "-Dlog4j.shutdownHookEnabled=false",
                "-Dlog4j2.disable.jmx=true",
            ])
            .args(java_flags)
            .arg(format!("-D{prefix}.path.home={}", home.display()))
            .arg(format!(
                "-D{prefix}.path.conf={}",
                home.join("config").display()
            ))
            .arg(format!("-D{prefix}.distribution.type=tar"))
            .arg(format!("-D{prefix}.bundled_jdk=false"))
            // Elasticsearch 7 wants its flavour named; these jars are the
            // OSS build (no x-pack modules).
            .args(
                (self.flavour == Flavour::Elasticsearch).then_some("-Des.distribution.flavor=oss"),
            )
            .arg(format!("-Djava.io.tmpdir={}", tmp.display()))
            .arg("-cp")
            .arg(format!("{}/*", home.join("lib").display()))
            .arg(main_class)
            // JNA (Elasticsearch's native checks) unpacks libffi here; the
            // default /tmp may be noexec or not the user's.
            .env("LIBFFI_TMPDIR", &tmp)
            .current_dir(&home)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("starting {} ({command:?}): {e}", self.name()));
        self.child = Some(child);
        let started = Instant::now();
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                panic!(
                    "{} exited with {status} while starting; {}",
                    self.name(),
                    self.log_tail()
                );
            }
            if let Ok(response) = http_json::send(self.port, "GET", "/", None) {
                if response.status == 200 {
                    break;
                }
            }
            if started.elapsed() >= START_TIMEOUT {
                panic!(
                    "{} did not answer GET / within {START_TIMEOUT:?}; {}",
                    self.name(),
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        // After a restart the shards recover in the background: wait for
        // the primaries so counts and searches see every document.
        let left = START_TIMEOUT
            .saturating_sub(started.elapsed())
            .as_secs()
            .max(10);
        let (status, health) = self.request(
            "GET",
            &format!("/_cluster/health?wait_for_status=yellow&timeout={left}s"),
            None,
        );
        assert!(
            status == 200 && health["timed_out"] == Value::Bool(false),
            "{} was not yellow within {left} s: {health}; {}",
            self.name(),
            self.log_tail()
        );
    }

    /// The end of this start's server.log and of stdout (where startup
    /// failures before logging is configured land), for failure messages.
    fn log_tail(&self) -> String {
        let log = tail(&read_from(&self.log_path(), self.log_from), 60);
        let stdout = tail(&read_from(&self.stdout_path(), 0), 30);
        format!(
            "transport port {}; server.log ({}):\n{log}\nstdout/stderr:\n{stdout}",
            self.transport_port,
            self.log_path().display()
        )
    }
}

impl Drop for SearchServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn server_config(port: u16, transport_port: u16, home: &Path, repo: &Path) -> String {
    format!(
        "cluster.name: vertice-test
node.name: node-1
network.host: 127.0.0.1
http.port: {port}
transport.port: {transport_port}
discovery.type: single-node
path.data: {data}
path.logs: {logs}
path.repo: [\"{repo}\"]
cluster.routing.allocation.disk.threshold_enabled: false
action.auto_create_index: true
",
        data = home.join("data").display(),
        logs = home.join("logs").display(),
        repo = repo.display(),
    )
}

/// The `repository-s3` plugin's `default` client (keys go to the keystore).
fn s3_config(s3: &S3Client) -> String {
    let endpoint = s3.endpoint.trim_start_matches("http://");
    format!(
        "s3.client.default.endpoint: \"{endpoint}\"
s3.client.default.protocol: http
s3.client.default.path_style_access: true
s3.client.default.region: us-east-1
"
    )
}

/// Creates `config/opensearch.keystore` (no password) with the S3 keys,
/// with the writer `scripts/lib/search-jars` puts in the distribution home,
/// run by Java's single-file source launcher against the server's jars.
/// Runs as the test's user: the home is chowned to the server's afterwards.
fn write_keystore(java: &Path, dist: &Path, config: &Path, s3: &S3Client) {
    let writer = dist.join("tools").join("WriteKeystore.java");
    let output = Command::new(java)
        .arg("-cp")
        .arg(format!("{}/*", dist.join("lib").display()))
        .arg(&writer)
        .arg(config)
        .arg(format!("s3.client.default.access_key={}", s3.access_key))
        .arg(format!("s3.client.default.secret_key={}", s3.secret_key))
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {} {}: {e}", java.display(), writer.display()));
    assert!(
        output.status.success() && config.join("opensearch.keystore").is_file(),
        "writing the keystore with {} failed ({}): {}{}",
        writer.display(),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// One file appender, `<path.logs>/server.log` (each server exposes its
/// logs directory to log4j under its own property prefix).
fn log4j_properties(flavour: Flavour) -> String {
    let (prefix, _) = flavour.launch();
    format!(
        "status = error
appender.file.type = File
appender.file.name = file
appender.file.fileName = ${{sys:{prefix}.logs.base_path}}${{sys:file.separator}}server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d{{ISO8601}}][%-5p][%-25c{{1.}}] %marker%m%n
rootLogger.level = info
rootLogger.appenderRef.file.ref = file
"
    )
}

fn read_from(path: &Path, from: u64) -> String {
    let mut bytes = Vec::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        if f.seek(SeekFrom::Start(from)).is_ok() {
            let _ = f.read_to_end(&mut bytes);
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
