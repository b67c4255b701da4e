//! Elasticsearch / OpenSearch runs that do not go to plan, on a real
//! OpenSearch 2.19 (one server per test, `one_at_a_time`): credentials the
//! cluster refuses (through `search_proxy`, the jar-built servers having no
//! security plugin) and secrets that must never be echoed or reach a URL;
//! bulk writes rejected for load during a restore; the server killed
//! mid-export; SIGTERM mid-restore; a damaged artifact; a snapshot stopped
//! midway by SIGTERM and by the server's death. Each failing run
//! must leave nothing behind: no backup listed, no restored index.

use std::collections::BTreeMap;
use std::io::Read;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};
use vertice_tests::search::{one_at_a_time, Flavour, SearchServer};
use vertice_tests::search_proxy::{Auth, Config, SearchProxy};
use vertice_tests::{Agent, TestStore};

const USER: &str = "backup";
const PASSWORD: &str = "pw-Search-91x";
const WRONG_PASSWORD: &str = "wrong-Pass-13q";
const API_KEY: &str = "k-Search-77z";
const WRONG_API_KEY: &str = "k-Wrong-40c";

/// A document of about `size` bytes of text that compresses poorly
/// (pseudo-random hex), so the export's bytes are what they seem.
fn text(seed: u64, size: usize) -> String {
    let mut x = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    let mut out = String::with_capacity(size + 16);
    while out.len() < size {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        out.push_str(&format!("{:016x}", x >> 1));
    }
    out.truncate(size);
    out
}

/// Creates `index` (one shard, no replica) holding `count` documents of
/// about `size` bytes each (every seventh routed), loaded in large bulk
/// requests, refreshed.
fn fill(server: &SearchServer, index: &str, count: usize, size: usize) {
    server.put_index(
        index,
        &json!({"settings": {"number_of_shards": 1, "number_of_replicas": 0, "refresh_interval": "-1"},
            "mappings": {"properties": {"n": {"type": "long"}, "kind": {"type": "keyword"},
                "body": {"type": "text", "index": false}}}}),
    );
    let per_request = (4 << 20) / size.max(1);
    let mut start = 0;
    while start < count {
        let end = (start + per_request.max(1)).min(count);
        let mut bulk = String::with_capacity((end - start) * (size + 200));
        for i in start..end {
            let mut action = json!({"index": {"_index": index, "_id": format!("d-{i}")}});
            if i % 7 == 0 {
                action["index"]["routing"] = json!(format!("r{}", i % 5));
            }
            let doc = json!({"n": i, "kind": if i % 3 == 0 { "a" } else { "b" },
                "nested": {"x": i as f64 / 4.0, "tags": ["t", format!("ü-{i}")]},
                "body": text(i as u64, size)});
            bulk.push_str(&format!("{action}\n{doc}\n"));
        }
        server.bulk(&bulk);
        start = end;
    }
    let (status, answer) = server.request(
        "PUT",
        &format!("/{index}/_settings"),
        Some(&json!({"index": {"refresh_interval": null}})),
    );
    assert_eq!(status, 200, "{answer}");
    server.refresh(index);
    assert_eq!(server.count(index), count as u64, "{index} filled");
}

fn backup_args<'a>(source: &'a str, indices: &'a str, url: &'a str) -> Vec<&'a str> {
    vec![
        "backup",
        "--source",
        source,
        "--source-kind",
        "elasticsearch",
        "--indices",
        indices,
        "--name",
        "search",
        "--to",
        url,
    ]
}

fn restore_args<'a>(url: &'a str, target: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "restore",
        "--from",
        url,
        "--name",
        "search",
        "--to",
        target,
        "--target-kind",
        "elasticsearch",
    ];
    args.extend_from_slice(extra);
    args
}

fn env_with(store: &TestStore, extra: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    let mut env = store.env();
    for (k, v) in extra {
        env.push((k, v.to_string()));
    }
    env
}

/// The backups `list` shows, newest first.
fn listed(agent: &Agent, url: &str, env: &[(&str, String)]) -> Vec<Value> {
    let out = agent.run(&["list", "--from", url, "--output", "json"], env);
    out.assert_ok();
    serde_json::from_str::<Value>(&out.stdout)
        .unwrap_or_else(|e| panic!("list --output json: {e}: {}", out.stdout))
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn exists(server: &SearchServer, index: &str) -> bool {
    let (status, _) = server.request("HEAD", &format!("/{index}"), None);
    assert!(status == 200 || status == 404, "HEAD /{index}: {status}");
    status == 200
}

/// Every index of the cluster that is not a dot-index.
fn indices(server: &SearchServer) -> Vec<String> {
    let (status, rows) = server.request("GET", "/_cat/indices?format=json", None);
    assert_eq!(status, 200, "{rows}");
    let mut names: Vec<String> = rows
        .as_array()
        .map(|r| {
            r.iter()
                .filter_map(|i| i["index"].as_str().map(String::from))
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// A spawned agent with its output collected by threads.
struct Running {
    child: Child,
    stdout: std::thread::JoinHandle<String>,
    stderr: std::thread::JoinHandle<String>,
    started: Instant,
}

impl Running {
    fn spawn(agent: &Agent, args: &[&str], env: &[(&str, String)]) -> Running {
        let mut command = agent.command();
        command
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("spawn agent");
        let collect = |mut r: Box<dyn Read + Send>| {
            std::thread::spawn(move || {
                let mut text = String::new();
                let _ = r.read_to_string(&mut text);
                text
            })
        };
        let stdout = collect(Box::new(child.stdout.take().expect("stdout")));
        let stderr = collect(Box::new(child.stderr.take().expect("stderr")));
        Running {
            child,
            stdout,
            stderr,
            started: Instant::now(),
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn has_exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Exit code, stdout, stderr.
    fn wait(mut self) -> (i32, String, String) {
        let deadline = Instant::now() + Duration::from_secs(180);
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("the agent did not end within 180 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let stdout = self.stdout.join().expect("stdout reader");
        let stderr = self.stderr.join().expect("stderr reader");
        (status.code().unwrap_or(-1), stdout, stderr)
    }
}

/// Bytes `pid` has written so far: `wchar` of `/proc/<pid>/io` (file and
/// pipe writes; socket reads and writes are not counted there). A backup
/// to a `file://` store writes its artifact as it goes.
fn bytes_written(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/io"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("wchar:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Documents indexed into `index` so far, searchable or not (a restore
/// loads with refresh off).
fn indexed(server: &SearchServer, index: &str) -> u64 {
    let (status, stats) = server.request("GET", &format!("/{index}/_stats/indexing"), None);
    if status != 200 {
        return 0;
    }
    stats["indices"][index]["primaries"]["indexing"]["index_total"]
        .as_u64()
        .unwrap_or(0)
}

#[test]
fn refused_credentials_fail_at_once_and_secrets_are_never_echoed() {
    let _one = one_at_a_time();
    let server = SearchServer::start(Flavour::OpenSearch);
    fill(&server, "docs", 50, 200);
    let agent = Agent::new();

    // Basic authentication: the proxy wants backup / PASSWORD.
    let proxy = SearchProxy::start(
        server.port(),
        Config {
            auth: vec![Auth::Basic {
                user: USER.into(),
                password: PASSWORD.into(),
            }],
            ..Config::default()
        },
    );
    let store = TestStore::file();
    let url = store.url("search");
    let source = proxy.url_with_user(USER);

    let wrong = agent.run(
        &backup_args(&source, "docs", &url),
        &env_with(&store, &[("ELASTICSEARCH_PASSWORD", WRONG_PASSWORD)]),
    );
    wrong.assert_code(2);
    assert!(
        wrong.stderr.contains("refused the credentials")
            && wrong.stderr.contains("ELASTICSEARCH_PASSWORD"),
        "names the credentials problem: {}",
        wrong.all()
    );
    assert!(wrong.stderr.contains("HTTP 401"), "{}", wrong.all());
    for secret in [WRONG_PASSWORD, PASSWORD] {
        assert!(
            !wrong.all().contains(secret),
            "{secret} echoed: {}",
            wrong.all()
        );
    }
    assert!(proxy.refused() >= 1, "the proxy refused it");
    assert!(
        store.keys("").is_empty(),
        "nothing stored: {:?}",
        store.keys("")
    );

    // No password at all for a named user: refused before any request.
    let before = proxy.requests().len();
    let none = agent.run(&backup_args(&source, "docs", &url), &store.env());
    none.assert_code(2);
    assert!(
        none.stderr.contains("ELASTICSEARCH_PASSWORD"),
        "{}",
        none.all()
    );
    assert_eq!(proxy.requests().len(), before, "no request was sent");

    // A password in the URL: refused, not echoed, nothing sent.
    let in_url = format!("http://{USER}:{PASSWORD}@127.0.0.1:{}", proxy.port);
    let refused = agent.run(&backup_args(&in_url, "docs", &url), &store.env());
    refused.assert_code(2);
    assert!(
        refused.stderr.contains("ELASTICSEARCH_PASSWORD"),
        "{}",
        refused.all()
    );
    assert!(!refused.all().contains(PASSWORD), "{}", refused.all());
    assert_eq!(proxy.requests().len(), before, "no request was sent");

    // The right password: the backup runs; the password is nowhere.
    let refused_so_far = proxy.refused();
    let right = agent.run(
        &backup_args(&source, "docs", &url),
        &env_with(&store, &[("ELASTICSEARCH_PASSWORD", PASSWORD)]),
    );
    right.assert_ok();
    assert!(!right.all().contains(PASSWORD), "{}", right.all());
    let manifests: Vec<String> = store
        .keys("")
        .into_iter()
        .filter(|k| k.ends_with("manifest.json"))
        .collect();
    assert_eq!(manifests.len(), 1, "{:?}", store.keys(""));
    let manifest = String::from_utf8_lossy(&store.read(&manifests[0])).into_owned();
    assert!(!manifest.contains(PASSWORD), "{manifest}");
    let parsed: Value = serde_json::from_str(&manifest).expect("manifest json");
    assert_eq!(
        parsed["source"]["search"]["indices"][0]["documents"], 50,
        "{manifest}"
    );
    let requests = proxy.requests();
    assert!(requests.len() > before, "the backup went through the proxy");
    for r in &requests {
        assert!(
            !r.path.contains(PASSWORD) && !r.path.contains(WRONG_PASSWORD),
            "a secret in a URL: {} {}",
            r.method,
            r.path
        );
    }
    // Every request of the good run carried the credentials.
    assert_eq!(
        proxy.refused(),
        refused_so_far,
        "the good run had a request refused"
    );
    assert!(
        requests[before..].iter().all(|r| r
            .header("authorization")
            .is_some_and(|a| a.starts_with("Basic "))),
        "{:?}",
        &requests[before..]
    );
    drop(proxy);

    // An API key: sent as `Authorization: ApiKey <key>`, never echoed.
    let proxy = SearchProxy::start(
        server.port(),
        Config {
            auth: vec![Auth::ApiKey(API_KEY.into())],
            ..Config::default()
        },
    );
    let keyed = TestStore::file();
    let keyed_url = keyed.url("search");
    let ok = agent.run(
        &backup_args(&proxy.url(), "docs", &keyed_url),
        &env_with(&keyed, &[("ELASTICSEARCH_API_KEY", API_KEY)]),
    );
    ok.assert_ok();
    assert!(!ok.all().contains(API_KEY), "{}", ok.all());
    let requests = proxy.requests();
    assert!(!requests.is_empty());
    let expected = format!("ApiKey {API_KEY}");
    for r in &requests {
        assert_eq!(
            r.header("authorization"),
            Some(expected.as_str()),
            "{} {}",
            r.method,
            r.path
        );
        assert!(!r.path.contains(API_KEY), "{}", r.path);
    }
    assert_eq!(proxy.refused(), 0);
    let bad = agent.run(
        &backup_args(&proxy.url(), "docs", &keyed_url),
        &env_with(&keyed, &[("ELASTICSEARCH_API_KEY", WRONG_API_KEY)]),
    );
    bad.assert_code(2);
    assert!(
        bad.stderr.contains("refused the credentials")
            && bad.stderr.contains("ELASTICSEARCH_API_KEY"),
        "{}",
        bad.all()
    );
    for secret in [API_KEY, WRONG_API_KEY] {
        assert!(
            !bad.all().contains(secret),
            "{secret} echoed: {}",
            bad.all()
        );
    }
    assert_eq!(listed(&agent, &keyed_url, &keyed.env()).len(), 1);
    // A restore with the wrong key creates nothing.
    let restore = agent.run(
        &restore_args(&keyed_url, &proxy.url(), &["--index-map", "docs=docs-copy"]),
        &env_with(&keyed, &[("ELASTICSEARCH_API_KEY", WRONG_API_KEY)]),
    );
    restore.assert_code(2);
    assert!(!restore.all().contains(WRONG_API_KEY), "{}", restore.all());
    assert!(!exists(&server, "docs-copy"));
}

#[test]
fn bulk_writes_rejected_for_load_are_sent_again_until_every_document_is_in() {
    let _one = one_at_a_time();
    let server = SearchServer::start(Flavour::OpenSearch);
    fill(&server, "events", 2000, 300);
    fill(&server, "orders", 3000, 300);
    let before: BTreeMap<&str, _> = ["events", "orders"]
        .into_iter()
        .map(|i| (i, server.all_docs(i)))
        .collect();
    let (agent, store) = (Agent::new(), TestStore::file());
    let (env, url) = (store.env(), store.url("search"));
    agent
        .run(&backup_args(&server.url(), "events,orders", &url), &env)
        .assert_ok();

    // The first three bulk requests answered 429 as a whole.
    let proxy = SearchProxy::start(
        server.port(),
        Config {
            bulk_429: 3,
            ..Config::default()
        },
    );
    let started = Instant::now();
    let restore = agent.run(
        &restore_args(
            &url,
            &proxy.url(),
            &["--index-map", "events=events-a,orders=orders-a"],
        ),
        &env,
    );
    restore.assert_ok();
    eprintln!("restore through three 429s: {:?}", started.elapsed());
    assert_eq!(proxy.injected(), 3, "three bulk requests were refused");
    let bulks = proxy
        .requests()
        .iter()
        .filter(|r| r.path.starts_with("/_bulk"))
        .count();
    assert!(
        bulks > 3,
        "the refused documents were sent again ({bulks} bulk requests)"
    );
    for (from, to) in [("events", "events-a"), ("orders", "orders-a")] {
        let after = server.all_docs(to);
        assert_eq!(after.len(), before[from].len(), "{to}: document count");
        assert!(
            after == before[from],
            "{to}: documents differ from {from}'s"
        );
    }
    drop(proxy);

    // One bulk request in two answered 200 with every item rejected 429.
    let proxy = SearchProxy::start(
        server.port(),
        Config {
            bulk_items_429_every: Some(2),
            ..Config::default()
        },
    );
    let restore = agent.run(
        &restore_args(
            &url,
            &proxy.url(),
            &["--index-map", "events=events-b,orders=orders-b"],
        ),
        &env,
    );
    restore.assert_ok();
    assert!(
        proxy.item_injections() >= 1,
        "no bulk answer had its items rejected"
    );
    for (from, to) in [("events", "events-b"), ("orders", "orders-b")] {
        assert!(
            server.all_docs(to) == before[from],
            "{to}: documents differ from {from}'s"
        );
    }
}

/// Waits until the running agent has written `bytes` (its artifact is
/// stored as it is read: mid-export, however fast the machine).
fn wait_until_stored(mut running: Running, bytes: u64) -> Running {
    let deadline = Instant::now() + Duration::from_secs(120);
    while bytes_written(running.pid()) <= bytes {
        if running.has_exited() {
            let (code, out, err) = running.wait();
            panic!("the backup ended ({code}) before it stored {bytes} bytes:\n{out}\n{err}");
        }
        assert!(
            Instant::now() < deadline,
            "the backup never stored {bytes} bytes"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    running
}

#[test]
fn sigterm_or_a_server_killed_mid_export_is_no_backup_and_the_previous_stays_latest() {
    let _one = one_at_a_time();
    let mut server = SearchServer::start(Flavour::OpenSearch);
    fill(&server, "big", 40_000, 1000);
    let (agent, store) = (Agent::new(), TestStore::file());
    let (env, url) = (store.env(), store.url("search"));
    let address = server.url();

    let started = Instant::now();
    agent
        .run(&backup_args(&address, "big", &url), &env)
        .assert_ok();
    let full_run = started.elapsed();
    let good = listed(&agent, &url, &env);
    assert_eq!(good.len(), 1);
    let good_id = good[0]["id"].as_str().expect("id").to_string();

    // SIGTERM mid-export: exit 143, no backup, no upload left behind, and
    // the cluster's read views (scroll contexts) released.
    let running = wait_until_stored(
        Running::spawn(&agent, &backup_args(&address, "big", &url), &env),
        6 << 20,
    );
    kill(Pid::from_raw(running.pid() as i32), Signal::SIGTERM).expect("SIGTERM");
    let (code, stdout, stderr) = running.wait();
    assert_eq!(code, 143, "{stdout}\n{stderr}");
    assert_eq!(listed(&agent, &url, &env).len(), 1, "{stderr}");
    assert_eq!(store.manifests("").len(), 1);
    assert!(
        store.dangling_uploads().is_empty(),
        "partial uploads left: {:?}",
        store.dangling_uploads()
    );
    let (_, stats) = server.request("GET", "/_nodes/stats/indices/search", None);
    let open: u64 = stats["nodes"]
        .as_object()
        .map(|nodes| {
            nodes
                .values()
                .map(|n| {
                    n["indices"]["search"]["open_contexts"]
                        .as_u64()
                        .unwrap_or(0)
                })
                .sum()
        })
        .unwrap_or(u64::MAX);
    assert_eq!(open, 0, "read views left open after SIGTERM: {stats}");

    let mut args = backup_args(&address, "big", &url);
    args.extend(["--search-timeout", "3s"]);
    // Killed once the agent has stored 6 MB of the ~20 MB artifact (the
    // export is compressed as it is read): mid-export, however fast the
    // machine.
    let running = wait_until_stored(Running::spawn(&agent, &args, &env), 6 << 20);
    let killed_after = running.started.elapsed();
    server.kill();
    let (code, stdout, stderr) = running.wait();
    eprintln!(
        "full backup {full_run:?}; server killed after {killed_after:?}; the failed run took {:?}",
        started.elapsed() - full_run
    );
    eprintln!("{}", stderr.lines().last().unwrap_or_default());
    assert_ne!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(code, 1, "a source failure: {stdout}\n{stderr}");
    assert!(
        stderr.contains(&address),
        "names the cluster {address}: {stderr}"
    );
    let now = listed(&agent, &url, &env);
    assert_eq!(now.len(), 1, "no new backup listed: {now:?}");
    assert_eq!(now[0]["id"], good_id.as_str(), "the good backup is latest");
    assert_eq!(store.manifests("").len(), 1);
    assert!(
        store.dangling_uploads().is_empty(),
        "partial uploads left: {:?}",
        store.dangling_uploads()
    );
}

#[test]
fn sigterm_mid_restore_takes_every_created_index_back() {
    let _one = one_at_a_time();
    let server = SearchServer::start(Flavour::OpenSearch);
    fill(&server, "big", 40_000, 1000);
    fill(&server, "small", 100, 100);
    let (agent, store) = (Agent::new(), TestStore::file());
    let (env, url) = (store.env(), store.url("search"));
    agent
        .run(&backup_args(&server.url(), "big,small", &url), &env)
        .assert_ok();
    let before = indices(&server);

    let address = server.url();
    let args = restore_args(
        &url,
        &address,
        &["--index-map", "big=big-copy,small=small-copy"],
    );
    let mut running = Running::spawn(&agent, &args, &env);
    // Every index is created before the first document; SIGTERM once
    // two bulk requests' worth of documents are in: mid-load.
    let deadline = Instant::now() + Duration::from_secs(120);
    while !exists(&server, "big-copy") || indexed(&server, "big-copy") < 4000 {
        if running.has_exited() {
            let (code, out, err) = running.wait();
            panic!("the restore ended ({code}) before big-copy was loading:\n{out}\n{err}");
        }
        assert!(Instant::now() < deadline, "big-copy never filled");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(exists(&server, "small-copy"), "every index exists first");
    let signalled_after = running.started.elapsed();
    let loaded = indexed(&server, "big-copy");
    kill(Pid::from_raw(running.pid() as i32), Signal::SIGTERM).expect("SIGTERM");
    let (code, stdout, stderr) = running.wait();
    eprintln!("SIGTERM after {signalled_after:?}, {loaded} documents into big-copy");
    eprintln!("{}", stderr.lines().last().unwrap_or_default());
    assert_eq!(code, 143, "{stdout}\n{stderr}");
    assert!(
        stderr.contains("the restore was taken back"),
        "says it was taken back: {stderr}"
    );
    assert!(
        !stderr.contains("corrupt"),
        "a signal is no damage to the backup: {stderr}"
    );
    assert!(!exists(&server, "big-copy"), "big-copy left: {stderr}");
    assert!(!exists(&server, "small-copy"), "small-copy left: {stderr}");
    assert_eq!(indices(&server), before, "{stderr}");
}

#[test]
fn a_damaged_artifact_fails_the_restore_and_leaves_no_index() {
    let _one = one_at_a_time();
    let server = SearchServer::start(Flavour::OpenSearch);
    fill(&server, "docs", 5000, 500);
    let (agent, store) = (Agent::new(), TestStore::file());
    let (env, url) = (store.env(), store.url("search"));
    let address = server.url();
    agent
        .run(&backup_args(&address, "docs", &url), &env)
        .assert_ok();
    let before = indices(&server);

    let artifact = store
        .keys("search/")
        .into_iter()
        .find(|k| k.contains("search.ndjson"))
        .unwrap_or_else(|| panic!("no artifact in {:?}", store.keys("")));
    let mut bytes = store.read(&artifact);
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    store.overwrite(&artifact, &bytes);

    let restore = agent.run(
        &restore_args(&url, &address, &["--index-map", "docs=docs-copy"]),
        &env,
    );
    eprintln!("{}", restore.stderr.lines().last().unwrap_or_default());
    assert_ne!(restore.code, 0, "{}", restore.all());
    let text = restore.stderr.to_lowercase();
    assert!(
        ["corrupt", "integrity", "damaged", "checksum"]
            .iter()
            .any(|w| text.contains(w)),
        "names the damage: {}",
        restore.all()
    );
    assert!(!exists(&server, "docs-copy"), "{}", restore.all());
    assert_eq!(indices(&server), before);

    let drill = agent.run(
        &[
            "drill",
            "--from",
            &url,
            "--name",
            "search",
            "--restore-to",
            &address,
        ],
        &env,
    );
    eprintln!("{}", drill.stderr.lines().last().unwrap_or_default());
    assert_ne!(drill.code, 0, "{}", drill.all());
    assert_eq!(indices(&server), before, "{}", drill.all());
}

/// The snapshot of `repository` the cluster is writing now, if any.
fn running_snapshot(server: &SearchServer, repository: &str) -> Option<String> {
    let (status, answer) =
        server.request("GET", &format!("/_snapshot/{repository}/_current"), None);
    if status != 200 {
        return None;
    }
    answer["snapshots"][0]["snapshot"]
        .as_str()
        .map(String::from)
}

fn snapshots(server: &SearchServer, repository: &str) -> Vec<String> {
    let (status, answer) = server.request("GET", &format!("/_snapshot/{repository}/_all"), None);
    assert_eq!(status, 200, "{answer}");
    answer["snapshots"]
        .as_array()
        .expect("snapshots")
        .iter()
        .filter_map(|s| s["snapshot"].as_str().map(String::from))
        .collect()
}

/// Snapshot mode stopped midway — the agent by SIGTERM, then the server
/// killed — is no backup: the earlier one stays latest, the interrupted
/// snapshot is deleted where the cluster can still be asked, and the
/// agent's repository in the store stays usable. The snapshot is slowed
/// to 1 MB/s by a repository setting, so "midway" is certain.
#[test]
fn a_snapshot_stopped_by_sigterm_or_a_dead_server_is_no_backup() {
    let _one = one_at_a_time();
    let mut server = SearchServer::start(Flavour::OpenSearch);
    fill(&server, "big", 12_000, 1000);
    fill(&server, "small", 100, 100);
    let agent = Agent::new();
    let (root, url) = server.shared_store();
    let env: Vec<(&str, String)> = Vec::new();
    let address = server.url();
    // The good backup takes only the small index: a snapshot of the big
    // one must upload all of it (a snapshot reuses what an earlier one
    // uploaded), slowly.
    let mut args = backup_args(&address, "small", &url);
    args.extend(["--search-mode", "snapshot"]);
    agent.run(&args, &env).assert_ok();
    let good = listed(&agent, &url, &env);
    assert_eq!(good.len(), 1);
    let good_id = good[0]["id"].as_str().expect("id").to_string();
    let repository = {
        let mut found = Vec::new();
        for entry in walk(&root) {
            if entry.ends_with("manifest.json") {
                let m: Value =
                    serde_json::from_slice(&std::fs::read(&entry).expect("read")).expect("json");
                found.push(m["source"]["search"]["snapshot"]["repository"].clone());
            }
        }
        found[0].as_str().expect("repository").to_string()
    };
    let mut big = backup_args(&address, "big", &url);
    big.extend(["--search-mode", "snapshot"]);
    let mut slow = big.clone();
    slow.extend([
        "--search-repository-setting",
        "max_snapshot_bytes_per_sec=1mb",
        "--search-timeout",
        "3s",
    ]);
    let wait_running = |running: &mut Running| {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(name) = running_snapshot(&server, &repository) {
                return name;
            }
            if running.has_exited() {
                panic!("the backup ended before its snapshot was seen running");
            }
            assert!(Instant::now() < deadline, "no snapshot ever ran");
            std::thread::sleep(Duration::from_millis(50));
        }
    };

    let mut running = Running::spawn(&agent, &slow, &env);
    let interrupted = wait_running(&mut running);
    std::thread::sleep(Duration::from_millis(500));
    kill(Pid::from_raw(running.pid() as i32), Signal::SIGTERM).expect("SIGTERM");
    let (code, stdout, stderr) = running.wait();
    assert_eq!(code, 143, "{stdout}\n{stderr}");
    assert!(
        stderr.contains(&format!("snapshot {interrupted} was deleted")),
        "{stderr}"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while snapshots(&server, &repository).contains(&interrupted) {
        assert!(Instant::now() < deadline, "{interrupted} still listed");
        std::thread::sleep(Duration::from_millis(100));
    }
    let now = listed(&agent, &url, &env);
    assert_eq!(now.len(), 1, "{now:?}");
    assert_eq!(now[0]["id"], good_id.as_str());

    let mut running = Running::spawn(&agent, &slow, &env);
    wait_running(&mut running);
    server.kill();
    let (code, stdout, stderr) = running.wait();
    assert_eq!(code, 1, "a source failure: {stdout}\n{stderr}");
    assert!(stderr.contains(&address), "names the cluster: {stderr}");
    let now = listed(&agent, &url, &env);
    assert_eq!(now.len(), 1, "{now:?}");
    assert_eq!(now[0]["id"], good_id.as_str(), "the good backup is latest");

    // The repository outlives both: the next run (its setting dropped:
    // registered again) succeeds and verifies, blob by blob.
    server.restart();
    agent.run(&big, &env).assert_ok();
    assert_eq!(listed(&agent, &url, &env).len(), 2);
    agent.run(&["verify", "--from", &url], &env).assert_ok();
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(walk(&path));
        } else {
            found.push(path);
        }
    }
    found
}
