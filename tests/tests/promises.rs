//! The README's promises under faults: a full disk, tampered and stray
//! objects in the store, restores that pg_restore would have committed
//! early, and SIGTERM in the middle of a run — each against real servers and
//! the real binary.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use vertice_tests::process::is_root;
use vertice_tests::summary;
use vertice_tests::{write_script, Agent, Postgres, TestStore};

fn backup_ids(agent: &Agent, url: &str) -> Vec<String> {
    let out = agent.run(&["list", "--from", url, "--output", "json"], &[]);
    out.assert_ok();
    let rows: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
    rows.as_array()
        .expect("array")
        .iter()
        .filter(|r| r["status"] == "ok")
        .map(|r| r["id"].as_str().expect("id").to_string())
        .collect()
}

/// A tmpfs of `size` mounted at a fresh directory, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().expect("tempdir");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("mount");
        assert!(status.success(), "mounting a tmpfs needs root");
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Bytes still free.
    fn available(&self) -> u64 {
        let out = Command::new("stat")
            .args(["-f", "-c", "%a %S"])
            .arg(self.path())
            .output()
            .expect("stat");
        let text = String::from_utf8_lossy(&out.stdout);
        let mut parts = text
            .split_whitespace()
            .map(|p| p.parse::<u64>().expect("number"));
        parts.next().expect("blocks") * parts.next().expect("block size")
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.path()).status();
    }
}

#[test]
fn a_full_disk_never_becomes_the_latest_backup() {
    assert!(
        is_root(),
        "this test mounts a tmpfs: run it as root, as CI does"
    );
    let pg = Postgres::start();
    pg.create_database("app");
    pg.psql(
        "app",
        "CREATE TABLE t AS SELECT g, md5(g::text) AS v FROM generate_series(1, 2000) g",
    );
    let disk = Tmpfs::mount("4m");
    let url = format!("file://{}/store", disk.path().display());
    let agent = Agent::new();
    let env = [("PGPASSWORD", pg.password.clone())];
    let first = agent.run(&["backup", "--source", &pg.url("app"), "--to", &url], &env);
    first.assert_ok();
    let good = first.stdout.trim().to_string();
    let artifact = walk_files(disk.path())
        .into_iter()
        .find(|p| p.to_string_lossy().contains("dump.pgdump"))
        .expect("artifact");
    let artifact_size = std::fs::metadata(&artifact).expect("artifact").len();

    // Room for the next artifact (the same data) but not for its manifest.
    let pages = artifact_size.div_ceil(4096) + 1;
    let filler = disk.path().join("filler");
    let fill = disk.available().saturating_sub(pages * 4096);
    std::fs::write(&filler, vec![0u8; fill as usize]).expect("filler");
    let mut failed = None;
    let mut latest = good;
    // The artifact may differ by a few bytes from run to run; shrink the
    // room page by page until the manifest is what no longer fits.
    for _ in 0..4 {
        let before = manifests_under(disk.path());
        let run = agent.run(&["backup", "--source", &pg.url("app"), "--to", &url], &env);
        if run.code != 0 {
            failed = Some((run, before));
            break;
        }
        latest = run.stdout.trim().to_string();
        let grow = std::fs::OpenOptions::new()
            .append(true)
            .open(&filler)
            .expect("filler");
        grow.set_len(grow.metadata().expect("len").len() + 4096)
            .expect("grow");
    }
    let (failed, before) = failed.expect("a backup onto a full disk must fail");
    failed.assert_code(1);
    assert!(
        failed.stderr.to_lowercase().contains("space"),
        "the error should say the disk is full: {}",
        failed.stderr
    );
    // Nothing half-written is left, and latest is still the last good backup.
    assert_eq!(
        manifests_under(disk.path()),
        before,
        "the failed run left a manifest"
    );
    let partial: Vec<_> = walk_files(disk.path())
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(".partial-"))
        .collect();
    assert!(partial.is_empty(), "{partial:?}");
    let ids = backup_ids(&agent, &url);
    assert!(
        ids.first() == Some(&latest),
        "latest must stay {latest}: {ids:?}"
    );
    std::fs::remove_file(&filler).expect("free the disk");
    pg.create_database("copy");
    agent
        .run(&["restore", "--from", &url, "--to", &pg.url("copy")], &env)
        .assert_ok();
    assert_eq!(pg.psql("copy", "SELECT count(*) FROM t"), "2000");
}

fn manifests_under(root: &Path) -> Vec<std::path::PathBuf> {
    let mut found: Vec<_> = walk_files(root)
        .into_iter()
        .filter(|p| p.ends_with("manifest.json"))
        .collect();
    found.sort();
    found
}

fn walk_files(root: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

/// A backup of a database with a table and a large object, and the key of
/// its artifact.
fn backed_up(pg: &Postgres, store: &TestStore, agent: &Agent) -> (String, String) {
    pg.create_database("app");
    pg.psql(
        "app",
        "CREATE TABLE items AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 5000) g",
    );
    pg.psql(
        "app",
        "SELECT lo_from_bytea(0, decode(repeat('ab', 3000), 'hex'))",
    );
    let env = store.env_with("PGPASSWORD", &pg.password);
    let out = agent.run(
        &[
            "backup",
            "--source",
            &pg.url("app"),
            "--to",
            &store.url(""),
            "--compression",
            "none",
        ],
        &env,
    );
    out.assert_ok();
    let id = out.stdout.trim().to_string();
    let key = store
        .keys("default/app/")
        .into_iter()
        .find(|k| k.contains(&id) && k.contains("dump.pgdump"))
        .expect("artifact");
    (id, key)
}

#[test]
fn nothing_commits_before_the_whole_artifact_matched() {
    let store = TestStore::file();
    let pg = Postgres::start();
    let agent = Agent::new();
    let env = store.env_with("PGPASSWORD", &pg.password);
    let url = store.url("");
    let (_, key) = backed_up(&pg, &store, &agent);
    let original = store.read(&key);

    // 1. Bytes after the archive (here from a pg_dump that writes more than
    //    its archive): pg_restore is done before the agent reaches them, so
    //    damage there is found only after pg_restore finished.
    let tools = tempfile::tempdir().expect("tempdir");
    let trailing = write_script(
        tools.path(),
        "pg_dump",
        &format!(
            "'{}' \"$@\" && head -c 300000 /dev/zero",
            pg.pg_bin("pg_dump").display()
        ),
    );
    let out = agent.run(
        &[
            "backup",
            "--source",
            &pg.url("app"),
            "--to",
            &url,
            "--compression",
            "none",
            "--pg-dump",
            &trailing.display().to_string(),
            "--name",
            "trailing",
        ],
        &env,
    );
    out.assert_ok();
    let trailing_key = store
        .keys("default/trailing/")
        .into_iter()
        .find(|k| k.contains("dump.pgdump"))
        .expect("artifact");
    let mut tampered = store.read(&trailing_key);
    let last = tampered.len() - 10;
    tampered[last] ^= 0x55;
    store.overwrite(&trailing_key, &tampered);
    pg.create_database("t1");
    let out = agent.run(
        &[
            "restore",
            "--from",
            &url,
            "--name",
            "trailing",
            "--to",
            &pg.url("t1"),
        ],
        &env,
    );
    out.assert_code(1);
    assert!(
        out.stderr.contains("nothing was restored"),
        "{}",
        out.stderr
    );
    assert_eq!(pg.public_tables("t1"), "", "a corrupt backup was committed");

    // 2. Damage at the end, with options that make pg_restore stop reading
    //    early: the schema alone must not commit either.
    let mut damaged = original.clone();
    let at = damaged.len() - 100;
    damaged[at] ^= 0x55;
    store.overwrite(&key, &damaged);
    for option in ["--schema-only", "--section=pre-data"] {
        pg.create_database("t2");
        let flag = format!("--pg-restore-arg={option}");
        let out = agent.run(
            &[
                "restore",
                "--from",
                &url,
                "--name",
                "app",
                "--to",
                &pg.url("t2"),
                &flag,
            ],
            &env,
        );
        out.assert_code(1);
        assert!(
            out.stderr.contains("corrupt") && out.stderr.contains("nothing was restored"),
            "{option}: {}",
            out.stderr
        );
        assert_eq!(
            pg.public_tables("t2"),
            "",
            "{option}: the schema was committed"
        );
        pg.psql("postgres", "DROP DATABASE t2");
    }

    // 3. The intact backup restores, schema-only included.
    store.overwrite(&key, &original);
    pg.create_database("t3");
    agent
        .run(
            &[
                "restore",
                "--from",
                &url,
                "--name",
                "app",
                "--to",
                &pg.url("t3"),
                "--pg-restore-arg=--schema-only",
            ],
            &env,
        )
        .assert_ok();
    assert_eq!(pg.public_tables("t3"), "items");
    assert_eq!(pg.psql("t3", "SELECT count(*) FROM items"), "0");
}

#[test]
fn a_failing_pg_restore_stops_the_restore_at_once() {
    let store = TestStore::file();
    let pg = Postgres::start();
    let agent = Agent::new();
    let env = store.env_with("PGPASSWORD", &pg.password);
    let url = store.url("");
    backed_up(&pg, &store, &agent);
    let tools = tempfile::tempdir().expect("tempdir");
    let broken = write_script(
        tools.path(),
        "pg_restore",
        "echo 'pg_restore: error: broken' >&2; exit 1",
    );
    pg.create_database("t");
    let out = agent.run(
        &[
            "restore",
            "--from",
            &url,
            "--to",
            &pg.url("t"),
            "--pg-restore",
            &broken.display().to_string(),
        ],
        &env,
    );
    out.assert_code(1);
    assert!(
        out.stderr.contains("nothing was restored")
            && out.stderr.contains("pg_restore: error: broken")
            // A small backup is read to the end to tell its state.
            && out.stderr.contains("the backup itself is intact"),
        "{}",
        out.stderr
    );
}

#[test]
fn stray_manifests_are_never_selected_or_pruned_by() {
    let store = TestStore::file();
    let pg = Postgres::start();
    pg.create_database("app");
    let agent = Agent::new();
    let env = store.env_with("PGPASSWORD", &pg.password);
    let url = store.url("");
    let mut ids = Vec::new();
    for _ in 0..2 {
        let out = agent.run(&["backup", "--source", &pg.url("app"), "--to", &url], &env);
        out.assert_ok();
        ids.push(out.stdout.trim().to_string());
        std::thread::sleep(Duration::from_millis(1100));
    }
    let newest = ids[1].clone();
    // A copy of the newest manifest under a newer id, and one under another name.
    let manifest = store.read(&format!("default/app/{newest}/manifest.json"));
    store.overwrite("default/app/29991231T000000Z-beef/manifest.json", &manifest);
    store.overwrite(&format!("default/other/{newest}/manifest.json"), &manifest);

    let list = agent.run(&["list", "--from", &url], &[]);
    list.assert_ok();
    assert!(
        list.stdout
            .contains("STRAY default/app/29991231T000000Z-beef"),
        "{}",
        list.stdout
    );
    assert!(
        list.stdout.contains("STRAY default/other/"),
        "{}",
        list.stdout
    );
    let json = agent.run(&["list", "--from", &url, "--output", "json"], &[]);
    let rows: serde_json::Value = serde_json::from_str(&json.stdout).expect("json");
    let strays = rows
        .as_array()
        .expect("rows")
        .iter()
        .filter(|r| r["status"] == "stray")
        .count();
    assert_eq!(strays, 2, "{rows}");

    let stray = agent.run(
        &[
            "verify",
            "--from",
            &url,
            "--backup",
            "29991231T000000Z-beef",
        ],
        &[],
    );
    stray.assert_code(2);
    agent
        .run(
            &[
                "verify", "--from", &url, "--name", "app", "--backup", &newest,
            ],
            &[],
        )
        .assert_ok();
    agent
        .run(
            &[
                "prune",
                "--from",
                &url,
                "--name",
                "app",
                "--namespace",
                "default",
                "--keep-last",
                "1",
            ],
            &[],
        )
        .assert_ok();
    assert!(
        !store.keys(&format!("default/app/{newest}/")).is_empty(),
        "prune deleted the newest real backup"
    );
    assert!(store.keys(&format!("default/app/{}/", ids[0])).is_empty());
    assert_eq!(backup_ids(&agent, &url), vec![newest]);
}

#[test]
fn a_backup_with_a_missing_artifact_is_shown_damaged_and_refused() {
    let store = TestStore::file();
    let pg = Postgres::start();
    let agent = Agent::new();
    let env = store.env_with("PGPASSWORD", &pg.password);
    let url = store.url("");
    let (id, key) = backed_up(&pg, &store, &agent);
    let TestStore::File { dir } = &store else {
        unreachable!()
    };
    std::fs::remove_file(dir.path().join(&key)).expect("remove artifact");
    let list = agent.run(&["list", "--from", &url], &[]);
    list.assert_ok();
    assert!(
        list.stdout.contains(&format!("{id} DAMAGED")),
        "{}",
        list.stdout
    );
    assert!(list.stdout.contains("is missing"), "{}", list.stdout);
    pg.create_database("t");
    let out = agent.run(
        &[
            "restore",
            "--from",
            &url,
            "--backup",
            &id,
            "--to",
            &pg.url("t"),
        ],
        &env,
    );
    out.assert_code(1);
    assert!(out.stderr.contains("damaged"), "{}", out.stderr);
    // The store's only backup is damaged: `latest` names it (exit 1), it
    // does not claim there are no backups (exit 2, "fix your flags").
    let summary = dir.path().join("verify.json");
    let out = agent.run(
        &[
            "verify",
            "--from",
            &url,
            "--termination-log",
            &summary.display().to_string(),
        ],
        &[],
    );
    out.assert_code(1);
    assert!(
        out.stderr.contains(&format!("default/app/{id} is damaged")),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("no backups found"), "{}", out.stderr);
    assert_eq!(summary::read(&summary)["error_category"], "integrity");
}

/// `file://` URLs are percent-encoded: `my%20dir` is the directory
/// "my dir", for backup, list and restore alike.
#[test]
fn a_percent_encoded_file_url_names_the_decoded_directory() {
    let root = tempfile::tempdir().expect("tempdir");
    let pg = Postgres::start();
    pg.create_database("app");
    let agent = Agent::new();
    let url = format!("file://{}/my%20dir", root.path().display());
    let env = [("PGPASSWORD", pg.password.clone())];
    let out = agent.run(&["backup", "--source", &pg.url("app"), "--to", &url], &env);
    out.assert_ok();
    let id = out.stdout.trim().to_string();
    let spaced = root.path().join("my dir").join("default/app").join(&id);
    assert!(
        spaced.join("manifest.json").is_file(),
        "{}",
        spaced.display()
    );
    assert!(!root.path().join("my%20dir").exists());
    assert_eq!(backup_ids(&agent, &url), vec![id]);
    let bad = agent.run(
        &[
            "list",
            "--from",
            &format!("file://{}/100%", root.path().display()),
        ],
        &[],
    );
    bad.assert_code(2);
    assert!(bad.stderr.contains("%25"), "{}", bad.stderr);
}

/// Objects are written once on every store, whatever the server does with
/// the conditional write (S3: `s3_stale_uploads.rs`): an existing key is
/// refused, in one request or in parts, and the object stays as it was.
/// The GCS emulator ignores `ifGenerationMatch=0`, so only the agent's own
/// check stands between a second write and the first object here.
fn uploads_never_overwrite_an_existing_object(store: &TestStore) {
    use vertice_agent::bytes::Bytes;
    use vertice_agent::store::StoreError;
    let key = "default/app/20260101T000000Z-abcd/manifest.json".to_string();
    store.with_agent_store(|s| {
        Box::pin(async move {
            s.put_bytes(&key, Bytes::from_static(b"original"))
                .await
                .expect("first write");
            let again = s.put_bytes(&key, Bytes::from_static(b"replacement")).await;
            assert!(
                matches!(again, Err(StoreError::AlreadyExists { .. })),
                "{again:?}"
            );
            let big = vec![7u8; 12 << 20];
            let streamed = s.put_stream(&key, &mut big.as_slice()).await;
            assert!(
                matches!(streamed, Err(StoreError::AlreadyExists { .. })),
                "{streamed:?}"
            );
            let small = s.put_stream(&key, &mut &b"short"[..]).await;
            assert!(
                matches!(small, Err(StoreError::AlreadyExists { .. })),
                "{small:?}"
            );
            assert_eq!(&s.get_bytes(&key).await.expect("read")[..], b"original");
        })
    });
}

#[test]
fn uploads_never_overwrite_an_existing_object_on_azure() {
    uploads_never_overwrite_an_existing_object(&TestStore::azure());
}

#[test]
fn uploads_never_overwrite_an_existing_object_on_gcs() {
    uploads_never_overwrite_an_existing_object(&TestStore::gcs());
}

#[test]
fn uploads_never_overwrite_an_existing_object_on_file() {
    uploads_never_overwrite_an_existing_object(&TestStore::file());
}

/// Starts the agent, waits until `ready` says the run is under way, sends
/// SIGTERM, and returns the exit code and how long it took to stop.
fn terminate_midway(mut command: Command, ready: impl Fn() -> bool) -> (i32, Duration, String) {
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = command.spawn().expect("spawn agent");
    let started = Instant::now();
    while !ready() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the run never got under way"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let signalled = Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let out = child.wait_with_output().expect("wait");
    (
        out.status.code().unwrap_or(-1),
        signalled.elapsed(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn sigterm_during_backup(store: &TestStore) {
    let pg = Postgres::start();
    pg.create_database("app");
    // Enough incompressible data for a multipart upload to be under way.
    pg.psql(
        "app",
        "CREATE TABLE t AS SELECT g, md5(g::text) || md5((g+1)::text) AS v FROM generate_series(1, 300000) g",
    );
    let tools = tempfile::tempdir().expect("tempdir");
    let started = tools.path().join("started");
    // pg_dump that stalls after its output, as one waiting on a lock does.
    let pg_dump = write_script(
        tools.path(),
        "pg_dump",
        &format!(
            "touch '{}'\n'{}' \"$@\"\nexec sleep 120",
            started.display(),
            pg.pg_bin("pg_dump").display()
        ),
    );
    let log = tools.path().join("termination-log");
    let agent = Agent::new();
    let mut command = agent.command();
    command
        .args([
            "backup",
            "--source",
            &pg.url("app"),
            "--to",
            &store.url(""),
            "--compression",
            "none",
        ])
        .arg("--pg-dump")
        .arg(&pg_dump)
        .arg("--termination-log")
        .arg(&log)
        .envs(store.env_with("PGPASSWORD", &pg.password));
    let (code, took, stderr) = terminate_midway(command, || {
        // The dump is running; give the upload time to get going.
        let running = started.exists();
        if running {
            std::thread::sleep(Duration::from_secs(3));
        }
        running
    });
    assert_eq!(code, 143, "{stderr}");
    assert!(took < Duration::from_secs(20), "took {took:?} to stop");
    let summary = summary::read(&log);
    assert_eq!(summary["outcome"], "interrupted", "{summary}");
    assert_eq!(summary["error_category"], "interrupted", "{summary}");
    assert!(
        store.keys("").iter().all(|k| !k.ends_with("manifest.json")),
        "{:?}",
        store.keys("")
    );
    assert!(
        store.dangling_uploads().is_empty(),
        "{:?}",
        store.dangling_uploads()
    );
    assert!(
        store.keys("").iter().all(|k| !k.contains(".partial-")),
        "{:?}",
        store.keys("")
    );
}

vertice_tests::on_every_store!(sigterm_during_backup);

#[test]
fn sigterm_during_a_restore_rolls_it_back() {
    let store = TestStore::file();
    let pg = Postgres::start();
    let agent = Agent::new();
    let env = store.env_with("PGPASSWORD", &pg.password);
    let url = store.url("");
    backed_up(&pg, &store, &agent);
    pg.create_database("t");
    let tools = tempfile::tempdir().expect("tempdir");
    let started = tools.path().join("started");
    // psql that takes the first SQL, then stalls, as a target waiting on a lock.
    let psql = write_script(
        tools.path(),
        "psql",
        &format!(
            "{{ head -c 50000; touch '{}'; sleep 120; cat; }} | exec '{}' \"$@\"",
            started.display(),
            pg.pg_bin("psql").display()
        ),
    );
    let log = tools.path().join("termination-log");
    let mut command = agent.command();
    command
        .args(["restore", "--from", &url, "--to", &pg.url("t")])
        .arg("--psql")
        .arg(&psql)
        .arg("--termination-log")
        .arg(&log)
        .envs(env);
    let (code, took, stderr) = terminate_midway(command, || started.exists());
    assert_eq!(code, 143, "{stderr}");
    assert!(took < Duration::from_secs(20), "took {took:?} to stop");
    assert!(stderr.contains("nothing was restored"), "{stderr}");
    let summary = summary::read(&log);
    assert_eq!(summary["outcome"], "interrupted", "{summary}");
    // The session is gone; the target holds nothing of the restore.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(pg.public_tables("t"), "");
}
